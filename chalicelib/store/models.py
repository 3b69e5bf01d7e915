"""PynamoDB models of the single table. Discriminator values are permanent (never rename).

Services write these; selectors read them and return frozen dataclasses. Money attributes are
integer cents (:class:`CentsAttribute`); times are aware UTC datetimes.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    DiscriminatorAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.connection import Connection
from pynamodb.connection.table import TableConnection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.store import schema
from chalicelib.store.attributes import CentsAttribute, CentsMapAttribute, CentsTableAttribute


class _Gsi1(GlobalSecondaryIndex["Item"]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class _Gsi2(GlobalSecondaryIndex["Item"]):
    class Meta:
        index_name = "gsi2"
        projection = AllProjection()

    gsi2pk = UnicodeAttribute(hash_key=True)
    gsi2sk = UnicodeAttribute(range_key=True)


class _Gsi3(GlobalSecondaryIndex["Item"]):
    class Meta:
        index_name = "gsi3"
        projection = AllProjection()

    gsi3pk = UnicodeAttribute(hash_key=True)
    gsi3sk = UnicodeAttribute(range_key=True)


class Item(Model):
    """Base of every item; ``pk`` always starts with ``C#<clinic>`` (R16).

    Table name, host and timeouts are set at run time by :func:`chalicelib.store.db.bind`.
    """

    class Meta:
        table_name = "frontdesk"
        region = "us-east-1"
        billing_mode = "PAY_PER_REQUEST"
        connect_timeout_seconds = 1
        read_timeout_seconds = 2
        max_retry_attempts = 2
        max_pool_connections = 64

    pk = UnicodeAttribute(hash_key=True, attr_name=schema.PK)
    sk = UnicodeAttribute(range_key=True, attr_name=schema.SK)
    item_kind = DiscriminatorAttribute(attr_name="_kind")  # stored name "_kind" is permanent
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = UnicodeAttribute(null=True)
    gsi3pk = UnicodeAttribute(null=True)
    gsi3sk = UnicodeAttribute(null=True)

    gsi1 = _Gsi1()
    gsi2 = _Gsi2()
    gsi3 = _Gsi3()

    @classmethod
    def _get_connection(cls) -> TableConnection:
        """PynamoDB's per-class connection, re-pointed at the one shared connection (db.bind)."""
        table_connection = super()._get_connection()
        if SHARED.connection is not None and table_connection.connection is not SHARED.connection:
            table_connection.connection = SHARED.connection
        return table_connection


class _Shared:
    """The connection every model uses once :func:`chalicelib.store.db.bind` has run."""

    connection: Connection | None = None


SHARED = _Shared()


# --- clinic level ---------------------------------------------------------------------------


class ClinicItem(Item, discriminator="clinic"):
    """A subscribing clinic (tenant). gsi1 lists clinics for operator tools and schedules."""

    clinic_id = UnicodeAttribute()
    name = UnicodeAttribute()
    time_zone = UnicodeAttribute()
    phone = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default="active")
    created_at = UTCDateTimeAttribute()


class UniqueItem(Item, discriminator="unique"):
    """Holds a unique value (staff email, ...) for its owner; put with attribute_not_exists."""

    owner_sk = UnicodeAttribute()


class GroupItem(Item, discriminator="group"):
    """A portal group: branding and options of PRODUCT.md §7, stored as validated JSON."""

    group_id = UnicodeAttribute()
    name = UnicodeAttribute()
    settings_json = UnicodeAttribute()
    is_default = BooleanAttribute(default=False)
    version = VersionAttribute()


class StaffUserItem(Item, discriminator="staff_user"):
    """A staff user; the password is an Argon2id hash, TOTP secret for pyotp."""

    user_id = UnicodeAttribute()
    email = UnicodeAttribute()
    name = UnicodeAttribute()
    password_hash = UnicodeAttribute()
    totp_secret = UnicodeAttribute(null=True)
    totp_confirmed = BooleanAttribute(default=False)
    roles = UnicodeSetAttribute()
    active = BooleanAttribute(default=True)
    created_at = UTCDateTimeAttribute()


class FacilityItem(Item, discriminator="facility"):
    facility_id = UnicodeAttribute()
    name = UnicodeAttribute()
    nickname = UnicodeAttribute(null=True)
    tax_id = UnicodeAttribute(null=True)
    npi = UnicodeAttribute(null=True)
    address = MapAttribute[str, Any](null=True)


class ProviderItem(Item, discriminator="provider"):
    provider_id = UnicodeAttribute()
    first_name = UnicodeAttribute(null=True)
    last_name = UnicodeAttribute()
    npi = UnicodeAttribute(null=True)
    roles = UnicodeSetAttribute()


# --- guarantor collection ---------------------------------------------------------------------


class GuarantorItem(Item, discriminator="guarantor"):
    """The guarantor's profile. gsi1 lists a clinic's guarantors; gsi2 finds them by last name."""

    guarantor_id = UnicodeAttribute()
    first_name = UnicodeAttribute()
    last_name = UnicodeAttribute()
    preferred_name = UnicodeAttribute(null=True)
    date_of_birth = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)
    mobile = UnicodeAttribute(null=True)
    language = UnicodeAttribute(default="en")
    time_zone = UnicodeAttribute(null=True)
    address = MapAttribute[str, Any](null=True)
    consent = MapAttribute[str, Any](null=True)
    # A pending email/mobile change awaiting its one-time code (accounts.contact_change_*).
    contact_change = MapAttribute[str, Any](null=True)
    dunning_count = NumberAttribute(default=0)
    statement_profile_id = UnicodeAttribute(null=True)
    external_id = UnicodeAttribute(null=True)
    # The practice's own account number (a roster's guarantor_id), printed as "Account number";
    # display only, never a key (lookups use guarantor_id). None: the practice gave none.
    account_number = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()


class PatientItem(Item, discriminator="patient"):
    """A patient linked to this guarantor, with the relationship (self, child, spouse, other)."""

    patient_id = UnicodeAttribute()
    first_name = UnicodeAttribute()
    last_name = UnicodeAttribute()
    preferred_name = UnicodeAttribute(null=True)
    date_of_birth = UnicodeAttribute(null=True)
    sex = UnicodeAttribute(null=True)
    relationship = UnicodeAttribute(default="self")


class ServiceLineItem(Item, discriminator="service_line"):
    """One service line of an encounter with its stored money parts (cents).

    The descriptive fields are written by accounts; the money fields only by the ledger's
    posting transaction, which also moves the guarantor's balance item.
    """

    line_id = UnicodeAttribute()
    encounter_number = UnicodeAttribute()
    line_number = NumberAttribute()
    patient_id = UnicodeAttribute()
    facility_id = UnicodeAttribute(null=True)
    billing_provider_id = UnicodeAttribute(null=True)
    rendering_provider_id = UnicodeAttribute(null=True)
    referring_provider_id = UnicodeAttribute(null=True)
    date_of_service = UnicodeAttribute()
    responsibility_date = UnicodeAttribute(null=True)
    procedure_code = UnicodeAttribute()
    modifiers = ListAttribute[str](of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    units = NumberAttribute(default=1)
    description = UnicodeAttribute(null=True)
    part = UnicodeAttribute()
    collections_agency = UnicodeAttribute(null=True)
    money = CentsMapAttribute(default=dict)


class BalanceItem(Item, discriminator="balance"):
    """The guarantor's stored balances, moved in the same transaction as every entry.

    ``totals`` and each row of ``parts`` (keyed ``facility|provider|patient``) hold the figures
    of :mod:`chalicelib.ledger.accounts`; ``last_seq`` numbers entries; ``version`` guards races.
    """

    last_seq = NumberAttribute(default=0)
    totals = CentsMapAttribute(default=dict)
    parts = CentsTableAttribute(default=dict)
    statement_id = UnicodeAttribute(null=True)
    statement_seq = NumberAttribute(default=0)
    version = VersionAttribute()


class EntryLineMap(MapAttribute[str, Any]):
    """One line of an entry: account, signed cents (debit > 0), optional service line id."""

    account = UnicodeAttribute()
    cents = CentsAttribute()
    line_id = UnicodeAttribute(null=True)
    kind = UnicodeAttribute(null=True)


class EntryItem(Item, discriminator="entry"):
    """An append-only ledger entry; its lines sum to zero. Never updated or deleted."""

    seq = NumberAttribute()
    code = UnicodeAttribute()
    lines = ListAttribute[EntryLineMap](of=EntryLineMap)
    source_key = UnicodeAttribute()
    posted_at = UTCDateTimeAttribute()
    reverses = NumberAttribute(null=True)
    meta = MapAttribute[str, Any](null=True)


class PostingKeyItem(Item, discriminator="posting_key"):
    """Proves a business fact (source key) was posted once, by the entry ``entry_seq``."""

    entry_seq = NumberAttribute()


class StatementItem(Item, discriminator="statement"):
    """A statement snapshot: figures as printed, never recomputed (PRODUCT.md §2)."""

    statement_id = UnicodeAttribute()
    statement_date = UnicodeAttribute()
    due_date = UnicodeAttribute()
    account_number = UnicodeAttribute()
    statement_balance = CentsAttribute()
    amount_due = CentsAttribute()
    as_of_seq = NumberAttribute()
    lines = ListAttribute[MapAttribute[str, Any]](of=MapAttribute, default=list)
    status = UnicodeAttribute(default="created")
    created_at = UTCDateTimeAttribute()



def all_models() -> list[type[Item]]:
    """Item and every subclass defined so far (model modules of other packages included)."""
    found: list[type[Item]] = [Item]
    for cls in found:
        found.extend(c for c in cls.__subclasses__() if c not in found)
    return found
