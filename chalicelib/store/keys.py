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


# --- payments ---

ATTEMPT_PREFIX = "PA#"
RECEIPT_PREFIX = "R#"
REFUND_PREFIX = "RF#"
CARD_PREFIX = "CARD#"
BATCH_PREFIX = "B#"
PAYMENT_HOLDS = "PAYHOLD"
PAYMENTS_CONFIG = "PAYCFG"
EVENT = "EVT"
ONLINE_BATCH_PREFIX = "online-"
#: Stands in for the clinic of a processor event no clinic claims (R20); never a clinic id.
UNMATCHED_CLINIC = "!unmatched"


def attempt_sk(attempt_key: str) -> str:
    """A payment attempt in the guarantor's collection, keyed by the browser's attempt key."""
    return f"{ATTEMPT_PREFIX}{attempt_key}"


def attempt_history_sk(attempt_key: str, at: str, status: str) -> str:
    """One transition of an attempt: ``PA#<key>#H#<UTC ISO time>#<new status>``."""
    return f"{ATTEMPT_PREFIX}{attempt_key}#H#{at}#{status}"


def attempts_pending_gsi1pk(clinic_id: str) -> str:
    """gsi1: the clinic's attempts not yet terminal (created, processing, requires action)."""
    return f"C#{clinic_id}#ATTEMPTS#PENDING"


def receipt_sk(receipt_id: str) -> str:
    return f"{RECEIPT_PREFIX}{receipt_id}"


def refund_sk(refund_key: str) -> str:
    return f"{REFUND_PREFIX}{refund_key}"


def card_sk(card_id: str) -> str:
    return f"{CARD_PREFIX}{card_id}"


def processor_customer_sk(processor: str, account_id: str) -> str:
    """The guarantor's customer object at a processor's merchant account (stored cards)."""
    return f"CUST#{processor}#{account_id}"


def online_batch_id(business_date: str) -> str:
    """The id of a clinic's online reference batch for a local business date ``YYYY-MM-DD``."""
    return f"{ONLINE_BATCH_PREFIX}{business_date}"


def batch_sk(batch_id: str) -> str:
    """``B#<date>#online`` for the day's online batch (one conditional put per clinic and day),
    ``B#<id>`` for a staff batch; both in the clinic collection ``C#<clinic>``."""
    if batch_id.startswith(ONLINE_BATCH_PREFIX):
        return f"{BATCH_PREFIX}{batch_id[len(ONLINE_BATCH_PREFIX):]}#online"
    return f"{BATCH_PREFIX}{batch_id}"


def staff_open_batch_sk(user_id: str) -> str:
    """Points at the one batch a staff user has open (office and mail payments go there)."""
    return f"UB#{user_id}"


def batch_receipts_gsi3pk(clinic_id: str, batch_id: str) -> str:
    """gsi3: receipts by reference batch; gsi3sk is ``<posted_at>#<receipt id>``."""
    return f"C#{clinic_id}#B#{batch_id}"


def processor_event_pk(clinic_id: str, processor: str, event_id: str) -> str:
    """A processor event in the webhook inbox, keyed by the processor's event id (sk ``EVT``)."""
    return f"C#{clinic_id}#EVT#{processor}#{event_id}"


# --- notify ---

MESSAGE_PREFIX = "M#"
NOTIFY_SETTINGS = "NOTIFY#SETTINGS"
NOTIFY_SWEEP = "NOTIFY#SWEEP"
CONTACT_STATE = "CP"
CONSENT_EVENT_PREFIX = "CE#"
SEND_CAP_PREFIX = "NCAP#"
#: Shards of the "messages due by hour" index: one hour is never one hot partition (anti-pattern 9).
DUE_SHARDS = 8


def message_sk(message_id: str) -> str:
    """A message (outbox row) in its owner's collection: ``M#<message id>``."""
    return f"{MESSAGE_PREFIX}{message_id}"


def message_owner_pk(clinic_id: str, owner: str) -> str:
    """The collection a message lives in: ``C#<c>#G#<g>`` (a guarantor's) or
    ``C#<c>#CP#<channel>#<hash>`` (a contact point's: codes and keyword replies)."""
    return f"C#{clinic_id}#{owner}"


def guarantor_owner(guarantor_id: str) -> str:
    return f"G#{guarantor_id}"


def contact_owner(channel: str, destination_hash: str) -> str:
    return f"CP#{channel}#{destination_hash}"


def contact_pk(clinic_id: str, channel: str, destination_hash: str) -> str:
    """A contact point (an email or mobile, by keyed hash): suppression state and consent log."""
    return message_owner_pk(clinic_id, contact_owner(channel, destination_hash))


def consent_event_sk(recorded_at: str, event_id: str) -> str:
    return f"{CONSENT_EVENT_PREFIX}{recorded_at}#{event_id}"


def due_shard(message_id: str) -> int:
    """The shard of a message in the due index (its id is a hex digest)."""
    return int(message_id[:8], 16) % DUE_SHARDS


def due_gsi3pk(clinic_id: str, hour: str, shard: int) -> str:
    """``C#<c>#DUE#<yyyy-mm-ddThh>#<shard>``: messages of a clinic due (or whose send lease
    ends) in that UTC hour."""
    return f"C#{clinic_id}#DUE#{hour}#{shard}"


def due_gsi3sk(due_at: str, message_id: str) -> str:
    return f"{due_at}#{message_id}"


def reminder_schedule_sk(schedule_id: str) -> str:
    return f"NOTIFY#SCHED#{schedule_id}"


def send_cap_sk(channel: str, week: str) -> str:
    """A guarantor's automated sends on one channel in one ISO week (frequency caps)."""
    return f"{SEND_CAP_PREFIX}{channel}#{week}"


def provider_ref_pk(clinic_id: str, provider_message_id: str) -> str:
    """Maps a provider's message id (SNS) back to our message."""
    return f"C#{clinic_id}#PREF#{provider_message_id}"


def inbound_pk(clinic_id: str, inbound_id: str) -> str:
    """One inbound SMS, so a redelivered keyword is answered once."""
    return f"C#{clinic_id}#INBOUND#{inbound_id}"


def notify_stats_pk(clinic_id: str, day: str, shard: int) -> str:
    """Daily email outcome counters (deliveries, bounces, complaints), sharded."""
    return f"C#{clinic_id}#NSTAT#{day}#{shard}"


def review_gsi3pk(clinic_id: str) -> str:
    """Messages whose outcome is ``unknown`` (a claim that may have sent), for staff review."""
    return f"C#{clinic_id}#NREVIEW"


# --- imports ---

IMPORT_PREFIX = "IMP#"
IMPORT_CLAIM_PREFIX = "CLM#"
BALANCE_NOTICE = "NOTICE#BALANCE"


def import_sk(sha256: str) -> str:
    """An import record in the clinic collection ``C#<clinic>``, keyed by the file's SHA-256."""
    return f"{IMPORT_PREFIX}{sha256}"


def imports_gsi1pk(clinic_id: str) -> str:
    """gsi1: a clinic's import records; gsi1sk is ``<created_at>#<sha256>`` (newest last)."""
    return f"C#{clinic_id}#IMPORTS"


def import_pk(clinic_id: str, sha256: str) -> str:
    """The collection of one imported file's claim markers (``CLM#<ordinal>``)."""
    return f"C#{clinic_id}#IMP#{sha256}"


def import_claim_sk(ordinal: int) -> str:
    """The marker of claim (or unit) number ``ordinal`` of an imported file."""
    return f"{IMPORT_CLAIM_PREFIX}{ordinal:08d}"


def import_review_gsi1pk(clinic_id: str) -> str:
    """gsi1: imported claims flagged for staff review; gsi1sk ``<at>#<sha256[:16]>#<ordinal>``."""
    return f"C#{clinic_id}#IMPORTS#REVIEW"


def claim_refs_pk(clinic_id: str) -> str:
    """Submitted claims (837 CLM01, FHIR Claim id) by normalized claim id, for 835 matching."""
    return f"C#{clinic_id}#CLAIMS"


def claim_ref_sk(claim_key: str, patient_digest: str, guarantor_id: str, encounter: str) -> str:
    """``<normalized claim id>#<patient digest>#<guarantor>#<encounter>``: a claim id is not
    unique (DATA-FORMATS.md §2.2), so a remittance reads the claims of its id and patient."""
    return f"{claim_key}#{patient_digest}#{guarantor_id}#{encounter}"


def visit_gsi1pk(clinic_id: str, patient_day_digest: str) -> str:
    """gsi1: submitted claims by patient name and date of service (the fuzzy 835 match)."""
    return f"C#{clinic_id}#VISIT#{patient_day_digest}"


def remit_refs_pk(clinic_id: str) -> str:
    """Posted remittance claims by payer claim id (CLP07) and CLP01, to find a reversal's original."""
    return f"C#{clinic_id}#REMITS"


def remit_ref_sk(payer_claim_key: str, claim_key: str, remit_key: str) -> str:
    return f"{payer_claim_key}#{claim_key}#{remit_key}"


def notices_due_gsi1pk(clinic_id: str) -> str:
    """gsi1: guarantors due a balance notice; gsi1sk ``<due_at>#<guarantor>``."""
    return f"C#{clinic_id}#NOTICE#DUE"


COVERAGE_PREFIX = "COV#"


def coverage_sk(coverage_digest: str) -> str:
    """A patient's insurance coverage (FHIR Coverage) in its guarantor's collection
    ``C#<clinic>#G#<guarantor>``, keyed by the digest of patient, payer and member id (never
    the member id itself: it is PHI-adjacent)."""
    return f"{COVERAGE_PREFIX}{coverage_digest}"


# --- statements ---

STATEMENT_PROFILE_PREFIX = "STPROF#"
STATEMENT_ASSIGN_PREFIX = "STPA#"
STATEMENT_RUN_PREFIX = "STRUN#"
STATEMENT_RUN_PAGE_PREFIX = "P#"
STATEMENT_SETTINGS = "STSET"
STATEMENT_REF = "STREF"
STATEMENT_VERIFY = "STVERIFY"
API_KEY_PREFIX = "APIKEY#"


def statement_profile_sk(profile_id: str) -> str:
    """A statement profile in the clinic collection ``C#<clinic>``: ``STPROF#<profile id>``."""
    return f"{STATEMENT_PROFILE_PREFIX}{profile_id}"


def statement_assign_sk(level: str, ref_id: str) -> str:
    """A profile assignment: ``STPA#PRV#<provider>`` in the clinic collection, ``STPA#PAT#<patient>``
    and ``STPA#ENC#<encounter>`` in the guarantor's collection (REFERENCE-PORTAL.md K1)."""
    return f"{STATEMENT_ASSIGN_PREFIX}{level}#{ref_id}"


def statement_run_sk(run_id: str) -> str:
    """A statement run in the clinic collection; the run id is the clinic's local run date."""
    return f"{STATEMENT_RUN_PREFIX}{run_id}"


def statement_run_pk(clinic_id: str, run_id: str) -> str:
    """The collection of a run's pages (``P#<n>``): which guarantors, and what became of them."""
    return f"C#{clinic_id}#STRUN#{run_id}"


def statement_run_page_sk(page: int) -> str:
    return f"{STATEMENT_RUN_PAGE_PREFIX}{page:06d}"


def statement_run_marker_sk(run_id: str) -> str:
    """In the guarantor's collection: this run has billed (or failed) this guarantor, once."""
    return f"{STATEMENT_RUN_PREFIX}{run_id}"


def statement_ref_pk(clinic_id: str, statement_id: str) -> str:
    """Statement id -> guarantor (sk ``STREF``): makes statement ids unique per clinic and lets a
    statement be found by its number alone (PM print runs)."""
    return f"C#{clinic_id}#STMT#{statement_id}"


def statement_verify_pk(clinic_id: str, code: str) -> str:
    """A printed verification code's partition: one item per statement carrying it (a 40-bit
    code is not unique among a large clinic's statements), with its date and no health data."""
    return f"C#{clinic_id}#STVERIFY#{code}"


def statement_verify_sk(statement_id: str) -> str:
    return f"{STATEMENT_VERIFY}#{statement_id}"


def api_key_sk(key_hash: str) -> str:
    """A clinic API key in the clinic collection, by the SHA-256 of the key (never the key)."""
    return f"{API_KEY_PREFIX}{key_hash}"
