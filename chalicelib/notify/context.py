"""A clinic's notification context (profile, settings, default group), cached per process for
60 s so a batch of sends does not re-read clinic configuration per message (B7). Configuration
only: consent, suppression and balances are read fresh on every send. Internal to notify.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from chalicelib.notify import config
from chalicelib.notify.settings import NotifySettings, settings_load
from chalicelib.notify.templates import sms_practice_name
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models_notify import NotifySettingsItem
from chalicelib.tenants import selectors as tenant_selectors
from chalicelib.tenants.selectors import Group

TTL_SECONDS = 60.0


@dataclass(frozen=True)
class ClinicContext:
    """What a send needs to know about its clinic. ``group`` is the default portal group
    (payment links open it, with its link lifetimes), ``None`` when the clinic has no group yet."""

    clinic_id: str
    name: str
    time_zone: str
    phone: str | None
    settings: NotifySettings
    group: Group | None

    @property
    def group_id(self) -> str | None:
        return self.group.group_id if self.group else None

    @property
    def include_new_charges(self) -> bool:
        return self.group.settings.include_new_charges if self.group else False

    @property
    def sms_name(self) -> str:
        return self.settings.sms_name or sms_practice_name(self.name)

    @property
    def sender_email(self) -> str:
        return self.settings.sender_email or config.settings().sender_email

    @property
    def origination_number(self) -> str | None:
        return self.settings.sms_origination_number or config.settings().sms_origination_number


_lock = threading.Lock()
_cache: dict[str, tuple[float, ClinicContext]] = {}


def settings_read(clinic_id: str) -> NotifySettings:
    """The clinic's stored settings, or the defaults."""
    try:
        item = NotifySettingsItem.get(keys.clinic_pk(clinic_id), keys.NOTIFY_SETTINGS, consistent_read=True)
    except NotifySettingsItem.DoesNotExist:
        return NotifySettings()
    return settings_load(item.settings_json)


def clinic_context(clinic_id: str) -> ClinicContext:
    """The cached context of ``clinic_id``. Raises UnknownClinic."""
    now = time.monotonic()
    hit = _cache.get(clinic_id)
    if hit is not None and now - hit[0] < TTL_SECONDS:
        return hit[1]
    with clinic_scope(clinic_id):
        clinic = tenant_selectors.clinic_get(clinic_id=clinic_id)
        groups = tenant_selectors.groups_list(clinic_id=clinic_id)
        settings = settings_read(clinic_id)
    group = next((g for g in groups if g.is_default), groups[0] if groups else None)
    ctx = ClinicContext(clinic_id=clinic_id, name=clinic.name, time_zone=clinic.time_zone, phone=clinic.phone,
                        settings=settings, group=group)
    with _lock:
        _cache[clinic_id] = (now, ctx)
    return ctx


def invalidate(clinic_id: str | None = None) -> None:
    """Forget a clinic's cached context (after its settings change), or every clinic's."""
    with _lock:
        if clinic_id is None:
            _cache.clear()
        else:
            _cache.pop(clinic_id, None)
