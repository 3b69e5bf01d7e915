"""Guarantors, patients, providers and facilities found or created for imported files (writes).

A person read from a file gets a stable *external key*: the member id with the folded name
(``member:<id>:<last>:<first>``: one sample reuses a member id for two subscribers), a FHIR
resource id (``fhir:Patient/<id>``) or a roster id (``csv:<id>``); without any id, the folded
name (``name:<last>:<first>``, weak: such claims are flagged for review by the caller). The key's
digest is the sort key of an :class:`ExternalRefItem` in the clinic collection, claimed by a
conditional put *before* the guarantor is created, so the same person from an 837 and then an
835 (or a re-run after a crash) resolves to the same guarantor, never check-then-write:

1. put ``UQ#GREF#<digest>`` -> new guarantor id (attribute_not_exists); on conflict read it;
2. ``accounts.guarantor_create`` with that id (AlreadyExists means a crashed run created it);
3. set ``ready``. Patients the same way under ``UQ#PREF#``.

A person carrying the practice's account number (a roster row) has it stored on the
guarantor's profile, created with it or, for a guarantor found, set when it differs
(``accounts.guarantor_account_number_set``, which writes only a change). Files without one
(837, 835, FHIR) leave the profile's number as it is.

Subscribers become guarantors (DATA-FORMATS.md §3: a subscriber who is the patient is their
own guarantor; a dependent's guarantor is the subscriber). Providers and facilities are keyed
by NPI (``npi-<NPI>``, public identifiers, not PHI) and created once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from pynamodb.exceptions import PutError

from chalicelib.accounts import services as accounts
from chalicelib.core.errors import AlreadyExists, InvalidInput
from chalicelib.core.ids import new_id
from chalicelib.imports.model import Person, Provider
from chalicelib.store import db, keys
from chalicelib.store.models_imports import ExternalRefItem
from chalicelib.tenants import services as tenants

_NON_ALNUM = re.compile(r"[^0-9A-Z]")


def normalize_id(value: str) -> str:
    """Upper-case letters and digits only: ``" ypb-1234 "`` -> ``"YPB1234"`` (ids and claim ids)."""
    return _NON_ALNUM.sub("", value.upper())


def digest(value: str) -> str:
    """A short, stable, non-reversible key for a value that may be PHI (40 hex characters)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:40]


def name_key(person: Person) -> str:
    """``<last>:<first>`` folded (case and accents) for matching people across files."""
    return f"{keys.fold_name(person.last)}:{keys.fold_name(person.first)}"


def person_key(person: Person) -> str:
    """The external key of a person as guarantor (see the module docstring)."""
    if person.external_key:
        return person.external_key
    member = normalize_id(person.member_id)
    if member:
        return f"member:{member}:{name_key(person)}"
    return f"name:{name_key(person)}"


def has_name(person: Person | None) -> bool:
    """True when the person has at least a last name (a guarantor cannot be created without)."""
    return person is not None and bool(person.last.strip())


class People:
    """Resolves people and providers for one import run, with a cache per run.

    ``guarantor(person)`` and ``patient(...)`` return ids, creating what is missing; they raise
    InvalidInput when the file gives no last name. Providers and facilities: ``provider(p)``,
    ``facility(p)`` return ``npi-<NPI>`` ids or None when the NPI is not 10 digits.
    """

    def __init__(self, clinic_id: str) -> None:
        self.clinic_id = clinic_id
        self._guarantors: dict[str, str] = {}
        self._patients: dict[str, tuple[str, str]] = {}
        self._providers: dict[str, str | None] = {}
        self._facilities: dict[str, str | None] = {}
        self.created_guarantors = 0
        self.created_patients = 0

    def _claim(self, sk: str, guarantor_id: str | None, patient_prefix: bool) -> ExternalRefItem:
        pk = keys.clinic_pk(self.clinic_id)
        try:
            return ExternalRefItem.get(pk, sk, consistent_read=True)
        except ExternalRefItem.DoesNotExist:
            pass
        item = ExternalRefItem(pk, sk, guarantor_id=guarantor_id or new_id("g"),
                               patient_id=new_id("pt") if patient_prefix else None, ready=False)
        try:
            item.save(condition=ExternalRefItem.pk.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            item = ExternalRefItem.get(pk, sk, consistent_read=True)
        return item

    def guarantor(self, person: Person, key: str | None = None) -> str:
        """The guarantor id for ``person`` (created with its profile if new)."""
        key = key or person_key(person)
        if key in self._guarantors:
            return self._guarantors[key]
        if not has_name(person):
            raise InvalidInput("the person has no last name")
        ref = self._claim(keys.unique_sk("GREF", digest(key)), None, False)
        created = False
        if not ref.ready:
            try:
                accounts.guarantor_create(
                    clinic_id=self.clinic_id, guarantor_id=ref.guarantor_id, first_name=person.first.strip() or "-",
                    last_name=person.last.strip(), date_of_birth=person.date_of_birth, email=person.email,
                    mobile=person.mobile, language=person.language or "en", address=person.address,
                    consent=person.consent, external_id=(normalize_id(person.member_id) or None),
                    account_number=person.account_number or None,
                )
                self.created_guarantors += 1
                created = True
            except AlreadyExists:
                pass
            ref.update(actions=[ExternalRefItem.ready.set(True)])
        if person.account_number and not created:
            accounts.guarantor_account_number_set(clinic_id=self.clinic_id, guarantor_id=ref.guarantor_id,
                                                  account_number=person.account_number)
        self._guarantors[key] = ref.guarantor_id
        return ref.guarantor_id

    def patient(self, guarantor_id: str, guarantor_key: str, person: Person, relationship: str) -> str:
        """The patient id for ``person`` linked to ``guarantor_id`` (linked if new)."""
        key = f"{guarantor_key}|{person.external_key or name_key(person)}"
        cached = self._patients.get(key)
        if cached is not None and cached[0] == guarantor_id:
            return cached[1]
        if not has_name(person):
            raise InvalidInput("the patient has no last name")
        ref = self._claim(keys.unique_sk("PREF", digest(key)), guarantor_id, True)
        assert ref.patient_id is not None
        if not ref.ready:
            try:
                accounts.patient_link(
                    clinic_id=self.clinic_id, guarantor_id=ref.guarantor_id, patient_id=ref.patient_id,
                    first_name=person.first.strip() or "-", last_name=person.last.strip(),
                    relationship=relationship, date_of_birth=person.date_of_birth,
                    sex=person.sex if person.sex in ("F", "M", "U") else None,
                )
                self.created_patients += 1
            except AlreadyExists:
                pass
            ref.update(actions=[ExternalRefItem.ready.set(True)])
        self._patients[key] = (ref.guarantor_id, ref.patient_id)
        return ref.patient_id

    def known_guarantor(self, key: str) -> str | None:
        """The guarantor id already holding ``key`` (a FHIR id, a roster id), or None."""
        if key in self._guarantors:
            return self._guarantors[key]
        try:
            ref = ExternalRefItem.get(keys.clinic_pk(self.clinic_id), keys.unique_sk("GREF", digest(key)),
                                      consistent_read=True)
        except ExternalRefItem.DoesNotExist:
            return None
        return ref.guarantor_id if ref.ready else None

    def known_patient(self, key: str) -> tuple[str, str] | None:
        """(guarantor id, patient id) of the patient registered under the alias ``key``, or None."""
        try:
            ref = ExternalRefItem.get(keys.clinic_pk(self.clinic_id), keys.unique_sk("PALIAS", digest(key)),
                                      consistent_read=True)
        except ExternalRefItem.DoesNotExist:
            return None
        if not ref.ready or ref.patient_id is None:
            return None
        return ref.guarantor_id, ref.patient_id

    def alias_guarantor(self, key: str, guarantor_id: str) -> None:
        """Register ``key`` (a roster's ``csv:<account number>``) for an existing guarantor, so a
        later file naming only that key finds them; first one wins."""
        db.put_new(ExternalRefItem(keys.clinic_pk(self.clinic_id), keys.unique_sk("GREF", digest(key)),
                                   guarantor_id=guarantor_id, ready=True))
        self._guarantors.setdefault(key, guarantor_id)

    def alias_patient(self, key: str, guarantor_id: str, patient_id: str) -> None:
        """Register ``key`` (e.g. ``fhir:Patient/<id>``) for an existing patient; first one wins."""
        db.put_new(ExternalRefItem(keys.clinic_pk(self.clinic_id), keys.unique_sk("PALIAS", digest(key)),
                                   guarantor_id=guarantor_id, patient_id=patient_id, ready=True))

    def provider(self, provider: Provider | None, roles: tuple[str, ...]) -> str | None:
        """``npi-<NPI>`` for a provider with a valid NPI (created once), else None."""
        return self._by_npi(self._providers, provider, lambda pid, p: tenants.provider_create(
            clinic_id=self.clinic_id, provider_id=pid, last_name=p.name or "-", first_name=p.first or None,
            npi=p.npi, roles=roles))

    def facility(self, provider: Provider | None) -> str | None:
        """``npi-<NPI>`` for a facility (or a billing provider standing in for one), else None."""
        return self._by_npi(self._facilities, provider, lambda fid, p: tenants.facility_create(
            clinic_id=self.clinic_id, facility_id=fid, name=p.name or "-", npi=p.npi, tax_id=p.tax_id or None))

    @staticmethod
    def _by_npi(cache: dict[str, str | None], provider: Provider | None,
                create: Callable[[str, Provider], object]) -> str | None:
        if provider is None or not (len(provider.npi) == 10 and provider.npi.isdigit()):
            return None
        if provider.npi not in cache:
            item_id = f"npi-{provider.npi}"
            try:
                create(item_id, provider)
            except AlreadyExists:
                pass
            cache[provider.npi] = item_id
        return cache[provider.npi]
