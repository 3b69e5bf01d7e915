"""CSV roster of guarantors and patients, with contact details and notification consent.

The documented column set (header row required; names are case-insensitive, any order; UTF-8,
a BOM is fine; comma-separated, RFC 4180 quoting). One row per patient; a guarantor with
several patients repeats the guarantor columns on each row (the first row of a guarantor wins;
later rows that differ get a warning). A row with no patient columns makes the guarantor their
own patient.

| column | required | meaning |
|---|---|---|
| ``guarantor_id`` | yes | the clinic's own account number of the guarantor (1-64 characters) |
| ``guarantor_first_name``, ``guarantor_last_name`` | yes | |
| ``guarantor_date_of_birth`` | no | ``YYYY-MM-DD`` or ``MM/DD/YYYY`` |
| ``member_id`` | no | the guarantor's insurance member id, as claims and remittances carry it |
| | | (837/835 NM1*IL09): the roster's guarantor is then the same guarantor as that subscriber |
| ``email`` | no | one address |
| ``mobile`` | no | E.164 (``+15555550123``) or 10 US digits in any layout |
| ``language`` | no | ``en`` (default) or ``es`` |
| ``consent_email``, ``consent_sms`` | no | notification consent: yes/no, true/false, y/n, 1/0; blank = no |
| ``address_line1``, ``address_line2``, ``city``, ``state``, ``postal_code`` | no | mailing address |
| ``patient_id`` | no | the clinic's patient id (MRN) |
| ``patient_first_name``, ``patient_last_name`` | no | both or neither |
| ``patient_date_of_birth`` | no | as above |
| ``patient_sex`` | no | ``F``, ``M`` or ``U`` |
| ``relationship`` | no | the patient's relationship to the guarantor: ``self``, ``child``, ``spouse``, |
| | | ``other`` (default ``self`` when the patient columns are blank or repeat the guarantor's name, |
| | | else ``other``) |

At most :data:`MAX_ROWS` data rows per file. Unknown columns are ignored with one warning.
A value that breaks the rules above rejects the
file (ImportRejected with the row number, header = row 1, and the column name); nothing is
written. Guarantors are keyed ``csv:<guarantor_id>``, so importing a roster again finds the
same guarantors; existing guarantors' profiles are not overwritten, except the account number:
``guarantor_id`` as the roster spells it (stripped; its letters and digits only when it holds a
character that does not print) is stored as the guarantor's
``account_number``, what statements and receipts print, and a roster giving a guarantor another
one (a member-id-keyed guarantor, a new spelling) replaces it. With ``member_id`` the
guarantor is keyed as a subscriber is (``member:<id>:<last>:<first>``, people.py) and the
patients by name, so a roster imported before the practice's 837 and 835 files gives the
guarantors those files bill their contact details and consent (the patient id stays an alias).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime

from chalicelib.imports.errors import ImportRejected, Warnings
from chalicelib.imports.model import Person, PersonUnit
from chalicelib.imports.people import normalize_id

COLUMNS = (
    "guarantor_id", "guarantor_first_name", "guarantor_last_name", "guarantor_date_of_birth", "member_id",
    "email", "mobile",
    "language", "consent_email", "consent_sms", "address_line1", "address_line2", "city", "state", "postal_code",
    "patient_id", "patient_first_name", "patient_last_name", "patient_date_of_birth", "patient_sex",
    "relationship",
)
REQUIRED = ("guarantor_id", "guarantor_first_name", "guarantor_last_name")
#: Rows per roster file. A roster is read whole and checked before anything is written, so
#: memory grows with it (~1 KB a row): 100,000 rows stay far inside the import Lambda's memory
#: (a 190 MB roster of 10 million rows needed 12 GB). Bigger rosters are split by the sender.
MAX_ROWS = 100_000
TRUE = {"yes", "y", "true", "1"}
FALSE = {"no", "n", "false", "0", ""}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass
class Roster:
    """The rows of a roster as person units, with the number of data rows."""

    units: list[PersonUnit] = field(default_factory=list)
    rows: int = 0


def looks_like_roster(head: str) -> bool:
    """True when the first line is a header naming ``guarantor_id`` (format detection)."""
    first = head.lstrip("\ufeff").splitlines()[0] if head.strip() else ""
    return "guarantor_id" in first.lower().replace(" ", "")


def _date(value: str, row: int, column: str) -> str | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            parsed = datetime.strptime(value, fmt).date()
        except ValueError:
            continue
        if parsed > date.today():
            raise ImportRejected(row, column, "the date is in the future")
        return parsed.isoformat()
    raise ImportRejected(row, column, "not a date (YYYY-MM-DD or MM/DD/YYYY)")


def _mobile(value: str, row: int) -> str | None:
    if not value:
        return None
    digits = re.sub(r"\D", "", value)
    if value.strip().startswith("+") and 8 <= len(digits) <= 15:
        return f"+{digits}"
    if len(digits) == 10:
        return f"+1{digits}"
    if len(digits) == 11 and digits.startswith("1"):
        return f"+{digits}"
    raise ImportRejected(row, "mobile", "not a mobile number (E.164 or 10 US digits)")


def _flag(value: str, row: int, column: str) -> bool:
    low = value.strip().lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise ImportRejected(row, column, "consent must be yes or no")


def read_roster(data: bytes, warnings: Warnings) -> Roster:
    """Read and validate a whole roster; raises ImportRejected(row, column, message)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRejected(0, "", "the roster is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower().replace(" ", "_") for h in next(reader)]
    except StopIteration:
        raise ImportRejected(0, "", "the roster is empty") from None
    except csv.Error:
        raise ImportRejected(1, "", "the header row is not valid CSV") from None
    for column in REQUIRED:
        if column not in header:
            raise ImportRejected(1, column, "required column is missing")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        warnings.add(f"row 1: {len(unknown)} unknown columns are ignored")
    roster = Roster()
    seen: dict[str, tuple[int, tuple[str, ...], Person]] = {}
    row_number = 1
    try:
        for values in reader:
            row_number += 1
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                raise ImportRejected(row_number, "", "more values than columns")
            row = {h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header)}
            roster.rows += 1
            if roster.rows > MAX_ROWS:
                raise ImportRejected(row_number, "", f"more than {MAX_ROWS:,} rows: split the roster into "
                                                     "several files")
            roster.units.append(_unit(row, row_number, len(roster.units) + 1, seen, warnings))
    except csv.Error:
        raise ImportRejected(row_number, "", "the row is not valid CSV") from None
    return roster


def _unit(row: dict[str, str], n: int, ordinal: int, seen: dict[str, tuple[int, tuple[str, ...], Person]],
          warnings: Warnings) -> PersonUnit:
    for column in REQUIRED:
        if not row.get(column):
            raise ImportRejected(n, column, "required value is empty")
    gid = normalize_id(row["guarantor_id"])
    if not gid or len(row["guarantor_id"]) > 64:
        raise ImportRejected(n, "guarantor_id", "must be 1-64 letters or digits")
    email = row.get("email") or None
    if email and not _EMAIL.fullmatch(email):
        raise ImportRejected(n, "email", "not an email address")
    language = (row.get("language") or "en").lower()
    if language not in ("en", "es"):
        raise ImportRejected(n, "language", "must be en or es")
    address = None
    if any(row.get(c) for c in ("address_line1", "city", "state", "postal_code")):
        address = {"line1": row.get("address_line1", ""), "line2": row.get("address_line2", ""),
                   "city": row.get("city", ""), "state": row.get("state", ""),
                   "postal_code": row.get("postal_code", "")}
    member = normalize_id(row.get("member_id", ""))
    if row.get("member_id") and (not member or len(row["member_id"]) > 80):
        raise ImportRejected(n, "member_id", "must be 1-80 letters or digits")
    guarantor = Person(
        last=row["guarantor_last_name"], first=row["guarantor_first_name"], member_id=member,
        external_key="" if member else f"csv:{gid}",
        account_number=row["guarantor_id"] if row["guarantor_id"].isprintable() else gid,
        date_of_birth=_date(row.get("guarantor_date_of_birth", ""), n, "guarantor_date_of_birth"),
        email=email, mobile=_mobile(row.get("mobile", ""), n), language=language, address=address,
        consent={"email": _flag(row.get("consent_email", ""), n, "consent_email"),
                 "sms": _flag(row.get("consent_sms", ""), n, "consent_sms")},
    )
    fingerprint = tuple(row.get(c, "") for c in COLUMNS[:15])
    if gid in seen:
        if seen[gid][1] != fingerprint:
            warnings.add(f"row {n}: guarantor columns differ from row {seen[gid][0]}; the first row is used")
        guarantor = seen[gid][2]  # one guarantor per account number, as the first row names them
    seen.setdefault(gid, (n, fingerprint, guarantor))
    first, last = row.get("patient_first_name", ""), row.get("patient_last_name", "")
    if bool(first) != bool(last):
        raise ImportRejected(n, "patient_last_name" if first else "patient_first_name",
                             "patient first and last name go together")
    relationship = (row.get("relationship") or "").lower()
    if relationship and relationship not in ("self", "child", "spouse", "other"):
        raise ImportRejected(n, "relationship", "must be self, child, spouse or other")
    sex = (row.get("patient_sex") or "").upper() or None
    if sex and sex not in ("F", "M", "U"):
        raise ImportRejected(n, "patient_sex", "must be F, M or U")
    dob = _date(row.get("patient_date_of_birth", ""), n, "patient_date_of_birth")
    same = not first or (first.casefold(), last.casefold()) == (guarantor.first.casefold(), guarantor.last.casefold())
    if same and relationship in ("", "self"):
        if dob and not guarantor.date_of_birth:
            guarantor.date_of_birth = dob
        guarantor.sex = sex
        return PersonUnit(ordinal, n, guarantor, None, "self", guarantor_alias=f"csv:{gid}" if member else "")
    pid = normalize_id(row.get("patient_id", ""))
    alias = f"csv:{gid}:{pid}" if pid else ""
    patient = Person(last=last or guarantor.last, first=first or guarantor.first,
                     external_key="" if member else alias, date_of_birth=dob, sex=sex)
    return PersonUnit(ordinal, n, guarantor, patient, relationship if relationship not in ("", "self") else "other",
                      patient_alias=alias if member else "", guarantor_alias=f"csv:{gid}" if member else "")
