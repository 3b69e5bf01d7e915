"""Tenant reads: clinic profile, groups, facilities and providers, as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.core.errors import NotFound, UnknownClinic
from chalicelib.core.ids import require_id
from chalicelib.store import keys
from chalicelib.store.db import clinic_scoped
from chalicelib.store.models import ClinicItem, FacilityItem, GroupItem, ProviderItem
from chalicelib.tenants.groups import GroupSettings, settings_load


@dataclass(frozen=True)
class Clinic:
    clinic_id: str
    name: str
    time_zone: str
    phone: str | None
    status: str


@dataclass(frozen=True)
class Group:
    group_id: str
    name: str
    is_default: bool
    settings: GroupSettings


@clinic_scoped
def clinic_get(*, clinic_id: str) -> Clinic:
    """The clinic's profile. Raises UnknownClinic."""
    require_id(clinic_id, field="clinic_id")
    try:
        c = ClinicItem.get(keys.clinic_pk(clinic_id), keys.CLINIC)
    except ClinicItem.DoesNotExist:
        raise UnknownClinic(f"clinic {clinic_id} not found") from None
    return Clinic(c.clinic_id, c.name, c.time_zone, c.phone, c.status)


@clinic_scoped
def group_get(*, clinic_id: str, group_id: str) -> Group:
    """One group with parsed settings. Raises NotFound, InvalidInput (a malformed id)."""
    require_id(clinic_id, field="clinic_id")
    require_id(group_id, field="group_id")
    try:
        g = GroupItem.get(keys.clinic_pk(clinic_id), keys.group_sk(group_id))
    except GroupItem.DoesNotExist:
        raise NotFound(f"group {group_id} not found") from None
    return Group(g.group_id, g.name, bool(g.is_default), settings_load(g.settings_json))


@clinic_scoped
def groups_list(*, clinic_id: str) -> list[Group]:
    """The clinic's groups (one Query)."""
    return [Group(g.group_id, g.name, bool(g.is_default), settings_load(g.settings_json))
            for g in GroupItem.query(keys.clinic_pk(clinic_id), GroupItem.sk.startswith("GRP#"))]


@clinic_scoped
def facility_names(*, clinic_id: str) -> dict[str, str]:
    """Facility id -> nickname (or name)."""
    return {f.facility_id: f.nickname or f.name
            for f in FacilityItem.query(keys.clinic_pk(clinic_id), FacilityItem.sk.startswith("FAC#"))}


@clinic_scoped
def provider_names(*, clinic_id: str) -> dict[str, str]:
    """Provider id -> display name."""
    return {p.provider_id: " ".join(x for x in (p.first_name, p.last_name) if x)
            for p in ProviderItem.query(keys.clinic_pk(clinic_id), ProviderItem.sk.startswith("PRV#"))}
