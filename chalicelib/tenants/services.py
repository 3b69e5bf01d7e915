"""Tenant writes: clinics, groups, staff users (Argon2id, TOTP), facilities, providers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from chalicelib.core import clock
from chalicelib.core.errors import AlreadyExists, InvalidInput, NotFound, UnknownClinic
from chalicelib.core.ids import new_id, require_id
from chalicelib.store import db, keys
from chalicelib.store.db import Tx, TxFailed, clinic_scoped
from chalicelib.store.models import (
    ClinicItem,
    FacilityItem,
    GroupItem,
    ProviderItem,
    StaffUserItem,
    UniqueItem,
)
from chalicelib.tenants.groups import settings_parse

ROLES = frozenset({"admin", "billing", "front_desk", "read_only"})
PROVIDER_ROLES = frozenset({"billing", "rendering", "referring"})
_hasher = PasswordHasher()  # argon2-cffi defaults: Argon2id, RFC 9106 low-memory profile


def _put_new(item: Any, what: str) -> None:
    if not db.put_new(item):
        raise AlreadyExists(f"{what} already exists")


def clinic_create(*, name: str, time_zone: str, phone: str | None = None,
                  clinic_id: str | None = None) -> str:
    """Create a clinic (tenant) and return its id. ``time_zone`` is an IANA name.

    Raises InvalidInput (name, time zone, id) or AlreadyExists.
    """
    if not name.strip():
        raise InvalidInput("clinic name is required")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {time_zone!r}") from None
    cid = require_id(clinic_id, field="clinic_id") if clinic_id else new_id("c")
    item = ClinicItem(keys.clinic_pk(cid), keys.CLINIC, clinic_id=cid, name=name.strip(),
                      time_zone=time_zone, phone=phone, created_at=clock.now(),
                      gsi1pk=keys.OPERATOR_CLINICS, gsi1sk=cid)
    _put_new(item, f"clinic {cid}")
    return cid


@clinic_scoped
def group_create(*, clinic_id: str, name: str, settings: dict[str, Any] | None = None,
                 is_default: bool = False, group_id: str | None = None) -> str:
    """Create a portal group with validated settings (contrast checked); return its id."""
    parsed = settings_parse(settings or {})
    gid = require_id(group_id, field="group_id") if group_id else new_id("grp")
    if not name.strip():
        raise InvalidInput("group name is required")
    item = GroupItem(keys.clinic_pk(clinic_id), keys.group_sk(gid), group_id=gid,
                     name=name.strip(), settings_json=parsed.to_json(), is_default=is_default)
    _put_new(item, f"group {gid}")
    return gid


@clinic_scoped
def group_update(*, clinic_id: str, group_id: str, settings: dict[str, Any]) -> None:
    """Replace a group's settings after validation; conditioned on the version read."""
    parsed = settings_parse(settings)
    try:
        item = GroupItem.get(keys.clinic_pk(clinic_id), keys.group_sk(group_id),
                             consistent_read=True)
    except GroupItem.DoesNotExist:
        raise NotFound(f"group {group_id} not found") from None
    item.update(actions=[GroupItem.settings_json.set(parsed.to_json())])


@dataclass(frozen=True)
class StaffEnrollment:
    """A new staff user's id and TOTP provisioning URI (show once as a QR code)."""

    user_id: str
    totp_uri: str


@clinic_scoped
def staff_user_create(*, clinic_id: str, email: str, name: str, password: str,
                      roles: Iterable[str]) -> StaffEnrollment:
    """Create a staff user with an Argon2id password hash and a TOTP secret (pyotp).

    The email is unique per clinic (a uniqueness item in the same transaction). Raises
    InvalidInput (email, password shorter than 12, unknown role) or AlreadyExists.
    """
    email_norm = email.strip().lower()
    if "@" not in email_norm or len(email_norm) > 254:
        raise InvalidInput("staff email is not an email address")
    if len(password) < 12:
        raise InvalidInput("staff password must be at least 12 characters")
    role_set = set(roles)
    if not role_set or not role_set <= ROLES:
        raise InvalidInput(f"roles must be some of {sorted(ROLES)}")
    uid = new_id("u")
    secret = pyotp.random_base32()
    pk = keys.clinic_pk(clinic_id)
    user = StaffUserItem(pk, keys.user_sk(uid), user_id=uid, email=email_norm, name=name,
                         password_hash=_hasher.hash(password), totp_secret=secret,
                         roles=role_set, created_at=clock.now(),
                         gsi1pk=keys.user_email_gsi1pk(clinic_id, email_norm), gsi1sk=uid)
    unique = UniqueItem(pk, keys.unique_sk("USER", email_norm), owner_sk=user.sk)
    tx = Tx()
    tx.put(user, condition=StaffUserItem.pk.does_not_exist())
    tx.put(unique, condition=UniqueItem.pk.does_not_exist())
    try:
        tx.commit()
    except TxFailed as exc:
        if unique.sk in exc.reasons:
            raise AlreadyExists("a staff user with this email exists") from exc
        raise
    uri = pyotp.TOTP(secret).provisioning_uri(name=email_norm, issuer_name="Frontdesk")
    return StaffEnrollment(user_id=uid, totp_uri=uri)


@clinic_scoped
def staff_login_check(*, clinic_id: str, email: str, password: str, totp_code: str) -> str:
    """Return the user id when email, password and TOTP code all match; else raise NotFound.

    The same error for every failure, so a response never tells which part was wrong.
    """
    email_norm = email.strip().lower()
    users = [u for u in StaffUserItem.gsi1.query(keys.user_email_gsi1pk(clinic_id, email_norm))
             if isinstance(u, StaffUserItem)]
    refused = NotFound("email, password or code is not right")
    if len(users) != 1 or not users[0].active:
        raise refused
    user = StaffUserItem.get(users[0].pk, users[0].sk, consistent_read=True)
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise refused from None
    if not user.totp_secret or not pyotp.TOTP(user.totp_secret).verify(totp_code, valid_window=1):
        raise refused
    return user.user_id


@clinic_scoped
def facility_create(*, clinic_id: str, name: str, nickname: str | None = None,
                    tax_id: str | None = None, npi: str | None = None,
                    address: dict[str, str] | None = None, facility_id: str | None = None) -> str:
    """Create a facility (tax id, nickname) and return its id."""
    fid = require_id(facility_id, field="facility_id") if facility_id else new_id("f")
    _clinic_exists(clinic_id)
    _put_new(FacilityItem(keys.clinic_pk(clinic_id), keys.facility_sk(fid), facility_id=fid,
                          name=name, nickname=nickname, tax_id=tax_id, npi=npi, address=address),
             f"facility {fid}")
    return fid


@clinic_scoped
def provider_create(*, clinic_id: str, last_name: str, first_name: str | None = None,
                    npi: str | None = None, roles: Iterable[str] = ("rendering",),
                    provider_id: str | None = None) -> str:
    """Create a provider (NPI; billing/rendering/referring roles) and return its id."""
    role_set = set(roles)
    if not role_set or not role_set <= PROVIDER_ROLES:
        raise InvalidInput(f"provider roles must be some of {sorted(PROVIDER_ROLES)}")
    if npi is not None and not (len(npi) == 10 and npi.isdigit()):
        raise InvalidInput("provider NPI must be 10 digits")
    pid = require_id(provider_id, field="provider_id") if provider_id else new_id("p")
    _clinic_exists(clinic_id)
    _put_new(ProviderItem(keys.clinic_pk(clinic_id), keys.provider_sk(pid), provider_id=pid,
                          first_name=first_name, last_name=last_name, npi=npi, roles=role_set),
             f"provider {pid}")
    return pid


def _clinic_exists(clinic_id: str) -> None:
    require_id(clinic_id, field="clinic_id")
    try:
        ClinicItem.get(keys.clinic_pk(clinic_id), keys.CLINIC)
    except ClinicItem.DoesNotExist:
        raise UnknownClinic(f"clinic {clinic_id} not found") from None
