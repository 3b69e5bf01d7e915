"""Models of statement profiles, statement runs, issued statements and clinic API keys
(``chalicelib.statements``; API keys are checked by ``chalicelib.tenants.api_keys``).

Discriminator values are permanent. Attribute names avoid ``kind`` and ``count`` (the base
discriminator attribute and ``Model.count``).
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)

from chalicelib.store.attributes import CentsAttribute
from chalicelib.store.models import Item, StatementItem


class StatementProfileItem(Item, discriminator="statement_profile"):
    """A statement profile (REFERENCE-PORTAL.md §3.2, K1): pk ``C#<c>``, sk ``STPROF#<id>``.

    ``settings_json`` holds the validated :class:`chalicelib.statements.profiles.StatementProfile`.
    ``notification_schedule_id`` is kept as its own attribute too, so the notifications package can
    read a statement's reminder schedule with one GetItem (a statement names its ``profile_id``).
    """

    profile_id = UnicodeAttribute()
    settings_json = UnicodeAttribute()
    is_default = BooleanAttribute(default=False)
    hold = BooleanAttribute(default=False)
    notification_schedule_id = UnicodeAttribute(default="default")
    version = VersionAttribute()


class StatementSettingsItem(Item, discriminator="statement_settings"):
    """The clinic's statement settings: which profile is the default (sk ``STSET``)."""

    default_profile_id = UnicodeAttribute(null=True)
    version = VersionAttribute()


class StatementAssignItem(Item, discriminator="statement_assign"):
    """A profile assigned at provider (clinic collection), patient or encounter (guarantor
    collection) level: sk ``STPA#<PRV|PAT|ENC>#<id>``."""

    level = UnicodeAttribute()
    ref_id = UnicodeAttribute()
    profile_id = UnicodeAttribute()


class StatementRecordItem(StatementItem, discriminator="statement_record"):
    """A statement issued by a run or pushed by the practice-management system.

    A :class:`StatementItem` (so every reader of statements sees it) with what was printed:
    ``statement_balance`` / ``amount_due`` are the guarantor's figures of PRODUCT.md §2 as the
    ledger snapshots them; ``account_balance`` is what this statement's account owes (the
    patient's share for a per-patient statement, else the statement balance). Names, addresses
    and lines live only in the PDF and ``lines``; never log them.
    """

    guarantor_id = UnicodeAttribute()
    run_id = UnicodeAttribute(null=True)
    source = UnicodeAttribute(default="run")  # run | pm
    profile_id = UnicodeAttribute(null=True)
    account_kind = UnicodeAttribute(default="guarantor")  # guarantor | patient
    patient_ids = ListAttribute[str](of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    account_balance = CentsAttribute(default=0)
    new_cents = CentsAttribute(default=0)
    previously_billed_cents = CentsAttribute(default=0)
    unapplied_cents = CentsAttribute(default=0)
    verification_code = UnicodeAttribute(null=True)
    pdf_key = UnicodeAttribute(null=True)
    delivery_channel = UnicodeAttribute(default="paper")  # paper | electronic | pm
    delivery_status = UnicodeAttribute(default="not_yet_mailed")  # not_yet_mailed | mailed | e_delivered | error
    dunning_count = NumberAttribute(default=0)
    pm_figures = MapAttribute[str, Any](null=True)


class StatementRunItem(Item, discriminator="statement_run"):
    """A statement run: pk ``C#<c>``, sk ``STRUN#<run date>`` (one per clinic and local date,
    created by conditional put). Enumeration is resumable from ``cursor``; ``pages_done`` rises in
    the same transaction that closes a page, so a redelivered page counts once."""

    run_id = UnicodeAttribute()
    run_date = UnicodeAttribute()
    status = UnicodeAttribute(default="enumerating")  # enumerating | processing | done
    cursor = UnicodeAttribute(null=True)
    pages_total = NumberAttribute(default=0)
    pages_done = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute()
    finished_at = UTCDateTimeAttribute(null=True)
    version = VersionAttribute()


class StatementRunPageItem(Item, discriminator="statement_run_page"):
    """One page of a run (pk ``C#<c>#STRUN#<run>``, sk ``P#<n>``): its guarantor ids, and once
    done what became of each (``results``: guarantor id -> ``created:<statement ids>``,
    ``skipped:<reason>`` or ``error:<reason>``; reasons are codes, never PHI)."""

    page = NumberAttribute()
    guarantor_ids = ListAttribute[str](of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    status = UnicodeAttribute(default="pending")  # pending | done
    results = MapAttribute[str, Any](null=True)
    done_at = UTCDateTimeAttribute(null=True)


class StatementRunMarkerItem(Item, discriminator="statement_run_marker"):
    """In the guarantor's collection, sk ``STRUN#<run>``: the run billed (or failed) this guarantor.
    Put in the snapshot's own transaction, so a run never makes two statements for a guarantor."""

    run_id = UnicodeAttribute()
    status = UnicodeAttribute()  # created | error
    reason = UnicodeAttribute(null=True)
    statement_ids = ListAttribute[str](of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    created_at = UTCDateTimeAttribute()


class StatementRefItem(Item, discriminator="statement_ref"):
    """``C#<c>#STMT#<statement id>`` / ``STREF``: the guarantor a statement number belongs to."""

    statement_id = UnicodeAttribute()
    guarantor_id = UnicodeAttribute()


class StatementVerifyItem(Item, discriminator="statement_verify"):
    """``C#<c>#STVERIFY#<code>`` / ``STVERIFY#<statement id>``: what a verification code confirms
    (PRODUCT.md §11): a statement of this practice dated ``statement_date``; no names, amounts or
    health data."""

    statement_id = UnicodeAttribute()
    statement_date = UnicodeAttribute()


class ApiKeyItem(Item, discriminator="api_key"):
    """A clinic API key (pk ``C#<c>``, sk ``APIKEY#<sha256 of the key>``); the key itself is shown
    once and never stored."""

    key_id = UnicodeAttribute()
    label = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    revoked_at = UTCDateTimeAttribute(null=True)
