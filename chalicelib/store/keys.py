"""Key strings for every item. The one place that spells them; names are permanent.

Every partition key starts with ``C#<clinic>`` so one clinic can never address another's items
(SECURITY.md R16). Ids are checked by :func:`chalicelib.core.ids.require_id` before they get here.
"""

from __future__ import annotations

import unicodedata

OPERATOR_CLINICS = "OPERATOR#CLINICS"

CLINIC = "CLINIC"
PROFILE = "PROFILE"
BALANCE = "BAL"
ENTRY_PREFIX = "E#"
LINE_PREFIX = "SL#"
PATIENT_PREFIX = "PAT#"
STATEMENT_PREFIX = "ST#"
POSTING_KEY_PREFIX = "PK#"


def clinic_pk(clinic_id: str) -> str:
    """``C#<clinic>``: the clinic-level collection (profile, groups, staff, facilities)."""
    return f"C#{clinic_id}"


def clinic_prefix(clinic_id: str) -> str:
    """What every key of this clinic starts with (after the exact ``C#<clinic>``)."""
    return f"C#{clinic_id}#"


def guarantor_pk(clinic_id: str, guarantor_id: str) -> str:
    """``C#<clinic>#G#<guarantor>``: the guarantor's item collection."""
    return f"C#{clinic_id}#G#{guarantor_id}"


def group_sk(group_id: str) -> str:
    return f"GRP#{group_id}"


def user_sk(user_id: str) -> str:
    return f"USR#{user_id}"


def unique_sk(kind: str, value: str) -> str:
    """A uniqueness item's sort key: the unique value is the key (SERVERLESS.md 2.1)."""
    return f"UQ#{kind}#{value}"


def facility_sk(facility_id: str) -> str:
    return f"FAC#{facility_id}"


def provider_sk(provider_id: str) -> str:
    return f"PRV#{provider_id}"


def patient_sk(patient_id: str) -> str:
    return f"{PATIENT_PREFIX}{patient_id}"


def service_line_id(encounter_number: str, line_number: int) -> str:
    """The Service ID of PRODUCT.md §2: encounter number and line number, e.g. ``67563-4``."""
    return f"{encounter_number}-{line_number}"


def line_sk(line_id: str) -> str:
    return f"{LINE_PREFIX}{line_id}"


def entry_sk(seq: int) -> str:
    """Entries sort by their per-guarantor sequence number (gapless, from the balance item)."""
    return f"{ENTRY_PREFIX}{seq:012d}"


def posting_key_sk(source_key: str) -> str:
    return f"{POSTING_KEY_PREFIX}{source_key}"


def statement_sk(statement_id: str) -> str:
    return f"{STATEMENT_PREFIX}{statement_id}"


def guarantors_gsi1pk(clinic_id: str) -> str:
    return f"C#{clinic_id}#GUARANTORS"


def user_email_gsi1pk(clinic_id: str, email: str) -> str:
    return f"C#{clinic_id}#USER#{email.strip().lower()}"


def fold_name(name: str) -> str:
    """Case- and accent-insensitive form of a name for sign-in matching (PRODUCT.md §6)."""
    decomposed = unicodedata.normalize("NFKD", name.strip().casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).replace("#", "")


def last_name_gsi2pk(clinic_id: str, last_name: str) -> str:
    return f"C#{clinic_id}#LN#{fold_name(last_name)}"


# --- links ---


def link_pk(clinic_id: str, token_hash: str) -> str:
    """A payment link's own partition, by the SHA-256 of its secret (R25)."""
    return f"C#{clinic_id}#LINK#{token_hash}"


def guarantor_links_gsi1pk(clinic_id: str, guarantor_id: str) -> str:
    return f"C#{clinic_id}#G#{guarantor_id}#LINKS"


def session_pk(clinic_id: str, session_hash: str) -> str:
    return f"C#{clinic_id}#SESSION#{session_hash}"


def sessions_by_day_gsi1pk(clinic_id: str, day: str) -> str:
    return f"C#{clinic_id}#SESSIONS#{day}"


def code_pk(clinic_id: str, request_id: str) -> str:
    return f"C#{clinic_id}#CODE#{request_id}"


def rate_pk(clinic_id: str, subject: str, window: str) -> str:
    """A rate counter: ``subject`` is a hash (destination, address), never a raw value."""
    return f"C#{clinic_id}#RATE#{subject}#{window}"


SINGLE = "ITEM"


def code_destination_pk(clinic_id: str, destination_hash: str) -> str:
    return f"C#{clinic_id}#CODEDEST#{destination_hash}"
