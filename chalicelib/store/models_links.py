"""Models of payment links, patient sessions and one-time codes (``chalicelib.links``).

Every secret is stored only as a hash (SECURITY.md R16, R25); every item carries
``expires_at`` (checked on each read, R14) and the TTL attribute (tidying only).
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)

from chalicelib.store import schema
from chalicelib.store.models import Item


class LinkItem(Item, discriminator="link"):
    """A payment link: pk ``C#<c>#LINK#<sha256 hex>``; gsi1 lists a guarantor's links."""

    guarantor_id = UnicodeAttribute()
    group_id = UnicodeAttribute()
    link_kind = UnicodeAttribute()  # email, text, statement_qr, statement_url, office_qr, website, scheduling
    purpose = UnicodeAttribute(default="pay")
    statement_id = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute()
    revoked_at = UTCDateTimeAttribute(null=True)
    expires_at_epoch = NumberAttribute(attr_name=schema.TTL)


class SessionItem(Item, discriminator="patient_session"):
    """A patient session (QuickPay or one-time code) and its usage log (PRODUCT.md §6).

    pk ``C#<c>#SESSION#<sha256 hex>``; gsi1 ``C#<c>#SESSIONS#<yyyy-mm-dd>`` for the Session
    Usage report. ``guarantor_ids`` holds the accounts a shared contact may switch between.
    """

    guarantor_id = UnicodeAttribute()
    guarantor_ids = UnicodeSetAttribute(null=True)
    group_id = UnicodeAttribute()
    method = UnicodeAttribute()  # quickpay | code
    origin = UnicodeAttribute()
    purpose = UnicodeAttribute(null=True)
    language = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    last_seen_at = UTCDateTimeAttribute()
    idle_minutes = NumberAttribute()
    expires_at = UTCDateTimeAttribute()
    ended_at = UTCDateTimeAttribute(null=True)
    pages = ListAttribute[str](of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    payment = MapAttribute[str, Any](null=True)
    expires_at_epoch = NumberAttribute(attr_name=schema.TTL)


class CodeItem(Item, discriminator="one_time_code"):
    """The current one-time code for a sign-in request (R16-R19).

    pk ``C#<c>#CODE#<request id>``: one item per sign-in request, so a code is bound to the
    request that asked for it. ``code_hash`` is HMAC-SHA256(pepper, code ‖ request id).
    """

    destination_hash = UnicodeAttribute()
    channel = UnicodeAttribute()  # email | sms
    guarantor_ids = UnicodeSetAttribute()
    group_id = UnicodeAttribute()
    code_hash = UnicodeAttribute()
    attempts = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute()
    used_at = UTCDateTimeAttribute(null=True)
    expires_at_epoch = NumberAttribute(attr_name=schema.TTL)


class RateItem(Item, discriminator="rate_counter"):
    """A fixed-window counter (sends per destination, lookups per address): pk names the
    subject and window; ``used`` rises by conditional update, never past ``limit``."""

    used = NumberAttribute(default=0)
    expires_at_epoch = NumberAttribute(attr_name=schema.TTL)


class CodeCurrentItem(Item, discriminator="code_current"):
    """The live sign-in request for one destination: pk ``C#<c>#CODEDEST#<keyed hash>``.
    A newer request replaces it, which retires every earlier code for that contact (R18)."""

    request_id = UnicodeAttribute()
    expires_at_epoch = NumberAttribute(attr_name=schema.TTL)
