"""Import writes: ``import_file`` (and ``import_resume``), exactly once per file and per claim.

The order (PRODUCT.md §3 "Bad input", SERVERLESS.md 2.9):

1. The file's SHA-256 names its import record ``IMP#<sha256>`` in the clinic collection. A
   record already ``imported`` answers ``duplicate`` at once (an S3 event delivered twice,
   R1; an operator re-run): nothing is read or posted again.
2. The validation pass reads the whole file (:func:`files.validate`) before the first write.
   A rejection writes the import record with status ``rejected`` and the error (segment
   number, segment id, message) and nothing else.
3. The record is claimed by a conditional put (``attribute_not_exists``, DESIGN.md rule 3)
   with status ``in_progress``; a record left ``in_progress`` or ``failed`` by a crash is
   resumed from its ``next_ordinal`` instead (R3).
4. The write pass posts unit by unit (claim, visit, roster row) in small transactions keyed by
   the business fact (:mod:`~chalicelib.imports.posting`): a unit is never posted twice, so
   a re-run over claims done after the last checkpoint finds their markers and moves on.
   Every ``CHECKPOINT_EVERY`` units the record's ``next_ordinal``, outcome counts and warnings
   are saved.
5. The record becomes ``imported`` (conditioned on ``in_progress``).

An unexpected error marks the record ``failed`` (with the exception's type only, never file
values) and is raised again, so the S3 handler fails and Lambda retries it (R8).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from pynamodb.exceptions import PutError, UpdateError

from chalicelib.core import clock
from chalicelib.core.errors import InvalidInput, TryAgainLater
from chalicelib.core.ids import require_id
from chalicelib.imports import posting
from chalicelib.imports.errors import ImportRejected, Warnings
from chalicelib.imports.fhir import CoverageUnit, Unit
from chalicelib.imports.files import FORMATS, ImportResult, Source, detect, units, validate
from chalicelib.imports.model import FileFacts, NoteUnit, PersonUnit, RemitClaim, Visit
from chalicelib.imports.people import People
from chalicelib.store import keys
from chalicelib.store.db import clinic_scoped
from chalicelib.store.models_imports import ImportItem

CHECKPOINT_EVERY = 50
#: Called after each unit is written, with its ordinal (a test seam: crash injection, R3).
UnitHook = Callable[[int], None]


def _format_of(source: Source, file_format: str) -> str:
    if file_format == "auto":
        return detect(source)
    if file_format not in FORMATS:
        raise InvalidInput(f"format must be auto or one of {', '.join(FORMATS)}")
    return file_format


def import_check(*, source: Source, file_format: str = "auto", strict: bool = False) -> ImportResult:
    """Dry run: detect and validate the file, report what an import would read; writes nothing.

    The result's status is ``valid`` (an import would read it as reported) or ``rejected``, with
    ``dry_run`` (never ``imported``: nothing was).
    """
    warnings = Warnings()
    sha = source.sha256()
    fmt = "unknown"
    try:
        fmt = _format_of(source, file_format)
        facts = validate(source, fmt, warnings, strict=strict)
    except ImportRejected as exc:
        result = ImportResult(path=source.name, file_format=fmt, status="rejected", sha256=sha,
                              warnings=warnings.as_list(), error=exc.as_json(), dry_run=True)
        return result
    result = ImportResult.of(source, facts, "valid", sha, warnings.as_list())
    result.dry_run = True
    return result


@clinic_scoped
def import_file(*, clinic_id: str, source: Source, file_format: str = "auto", strict: bool = False,
                on_unit: UnitHook | None = None) -> ImportResult:
    """Import one file into the clinic (see the module docstring); returns its result.

    ``file_format``: ``auto`` (detected), ``835``, ``837``, ``fhir`` or ``csv``. ``strict``:
    envelope count and control-number mismatches, and composites that disagree with ISA16,
    reject the file instead of warning. Raises InvalidInput for a bad clinic id or format,
    TryAgainLater when DynamoDB is busy; a file problem is a ``rejected`` result, not an error.
    """
    require_id(clinic_id, field="clinic_id")
    sha = source.sha256()
    pk, sk = keys.clinic_pk(clinic_id), keys.import_sk(sha)
    try:
        existing: ImportItem | None = ImportItem.get(pk, sk, consistent_read=True)
    except ImportItem.DoesNotExist:
        existing = None
    if existing is not None and existing.status == "imported":
        return _duplicate(source, existing)
    fmt = "unknown"
    try:
        return _import(clinic_id, source, sha, file_format, strict, on_unit, existing)
    except (ImportRejected, InvalidInput, TryAgainLater):
        raise
    except Exception as exc:
        _mark_failed(clinic_id, sha, source, fmt, exc)
        raise


@clinic_scoped
def import_resume(*, clinic_id: str, source: Source, on_unit: UnitHook | None = None) -> ImportResult:
    """Finish an import left ``in_progress`` or ``failed`` (same file bytes), from its last
    checkpoint; a finished one answers ``duplicate``. Raises InvalidInput when the file was
    never started here."""
    sha = source.sha256()
    try:
        record = ImportItem.get(keys.clinic_pk(clinic_id), keys.import_sk(sha), consistent_read=True)
    except ImportItem.DoesNotExist:
        raise InvalidInput("this file has no import to resume") from None
    return import_file(clinic_id=clinic_id, source=source, file_format=record.file_format,
                       strict=bool(record.strict), on_unit=on_unit)


def _import(clinic_id: str, source: Source, sha: str, file_format: str, strict: bool,
            on_unit: UnitHook | None, existing: ImportItem | None) -> ImportResult:
    warnings = Warnings()
    fmt = existing.file_format if existing is not None and file_format == "auto" else "unknown"
    try:
        fmt = _format_of(source, file_format) if fmt == "unknown" else fmt
        facts = validate(source, fmt, warnings, strict=strict)
    except ImportRejected as exc:
        return _reject(clinic_id, source, sha, fmt, exc, warnings, strict)
    state, record = _claim(clinic_id, source, sha, facts, warnings, strict)
    if state == "duplicate":
        return _duplicate(source, record)
    started_at = record.created_at
    if state == "resume":
        warnings = Warnings()
        warnings.items = list(record.warnings or [])
        warnings.total = int(record.warnings_total or len(warnings.items))
    outcomes: Counter[str] = Counter({k: int(v) for k, v in (record.outcomes or {}).items()})
    start = int(record.next_ordinal or 1)
    ctx = posting.Context(clinic_id=clinic_id, sha256=sha, started_at=started_at, people=People(clinic_id),
                          warnings=warnings)
    since_checkpoint = 0
    next_ordinal = start
    for unit in units(source, fmt, strict=strict):
        if unit.ordinal < start:
            continue
        outcome = _post_unit(ctx, unit)
        outcomes[outcome.outcome] += 1
        if outcome.outcome in ("held", "parked", "already_posted") or outcome.review:
            warnings.add(f"{_what(unit)} {unit.ordinal} (segment {unit.position}): {outcome.outcome}"
                         + (f": {outcome.review}" if outcome.review else ""))
        next_ordinal = unit.ordinal + 1
        if on_unit is not None:
            on_unit(unit.ordinal)
        since_checkpoint += 1
        if since_checkpoint >= CHECKPOINT_EVERY:
            _checkpoint(record, next_ordinal, outcomes, warnings, final=False)
            since_checkpoint = 0
    _checkpoint(record, next_ordinal, outcomes, warnings, final=True)
    result = ImportResult.of(source, facts, "imported", sha, warnings.as_list())
    result.outcomes = dict(outcomes)
    return result


def _what(unit: Unit) -> str:
    if isinstance(unit, RemitClaim | Visit):
        return "claim"
    return "row" if isinstance(unit, PersonUnit) and unit.guarantor.external_key.startswith("csv:") else "entry"


def _post_unit(ctx: posting.Context, unit: Unit) -> posting.Outcome:
    if isinstance(unit, RemitClaim):
        return posting.post_remit(ctx, unit)
    if isinstance(unit, Visit):
        return posting.post_visit(ctx, unit)
    if isinstance(unit, PersonUnit):
        return posting.post_person(ctx, unit)
    if isinstance(unit, CoverageUnit):
        return posting.post_coverage(ctx, unit)
    assert isinstance(unit, NoteUnit)
    return posting.post_note(ctx, unit)


# --- the import record ------------------------------------------------------------------------


def _record(clinic_id: str, source: Source, sha: str, facts: FileFacts, warnings: Warnings, strict: bool,
            status: str) -> ImportItem:
    now = clock.now()
    return ImportItem(
        keys.clinic_pk(clinic_id), keys.import_sk(sha), sha256=sha, source=source.name[:500],
        file_format=facts.file_format, status=status, strict=strict, created_at=now, updated_at=now,
        transactions=facts.transactions, claims=facts.claims, service_lines=facts.service_lines,
        insurance_paid_cents=facts.insurance_paid_cents,
        patient_responsibility_cents=facts.patient_responsibility_cents, plb_cents=facts.plb_cents,
        charge_cents=facts.charge_cents, next_ordinal=1, outcomes={}, warnings=warnings.as_list(),
        warnings_total=warnings.total, payments=facts.payments, plbs=facts.plbs,
        gsi1pk=keys.imports_gsi1pk(clinic_id), gsi1sk=f"{now.isoformat()}#{sha}",
    )


def _conditional_failed(exc: PutError | UpdateError) -> bool:
    return exc.cause_response_code == "ConditionalCheckFailedException"


def _claim(clinic_id: str, source: Source, sha: str, facts: FileFacts, warnings: Warnings,
           strict: bool) -> tuple[str, ImportItem]:
    """("new" | "resume" | "duplicate", record): claim the record by conditional put."""
    item = _record(clinic_id, source, sha, facts, warnings, strict, "in_progress")
    for _ in range(3):
        try:
            item.save(condition=ImportItem.pk.does_not_exist())
            return "new", item
        except PutError as exc:
            if not _conditional_failed(exc):
                raise
        existing = ImportItem.get(item.pk, item.sk, consistent_read=True)
        if existing.status == "imported":
            return "duplicate", existing
        if existing.status in ("in_progress", "failed"):
            existing.update(actions=[ImportItem.status.set("in_progress"),
                                     ImportItem.attempts.set(int(existing.attempts or 1) + 1),
                                     ImportItem.updated_at.set(clock.now())])
            return "resume", existing
        try:  # rejected before (an older reader): this one accepts the file
            item.save(condition=ImportItem.status == "rejected")
            return "new", item
        except PutError as exc:
            if not _conditional_failed(exc):
                raise
    raise TryAgainLater("the import record keeps changing; try again")


def _checkpoint(record: ImportItem, next_ordinal: int, outcomes: Counter[str], warnings: Warnings, *,
                final: bool) -> None:
    now = clock.now()
    actions: list[Any] = [ImportItem.next_ordinal.set(next_ordinal), ImportItem.outcomes.set(dict(outcomes)),
                          ImportItem.warnings.set(warnings.as_list()), ImportItem.warnings_total.set(warnings.total),
                          ImportItem.updated_at.set(now)]
    if final:
        actions += [ImportItem.status.set("imported"), ImportItem.completed_at.set(now)]
    try:
        record.update(actions=actions, condition=ImportItem.status == "in_progress")
    except UpdateError as exc:  # another run of the same file finished first: its record stands
        if not _conditional_failed(exc):
            raise


def _reject(clinic_id: str, source: Source, sha: str, fmt: str, exc: ImportRejected, warnings: Warnings,
            strict: bool) -> ImportResult:
    facts = FileFacts(fmt)
    item = _record(clinic_id, source, sha, facts, warnings, strict, "rejected")
    item.error = exc.as_json()
    try:
        item.save(condition=ImportItem.pk.does_not_exist() | ImportItem.status.is_in("rejected", "failed"))
    except PutError as err:
        if not _conditional_failed(err):
            raise
    return ImportResult(path=source.name, file_format=fmt, status="rejected", sha256=sha,
                        warnings=warnings.as_list(), error=exc.as_json())


def _duplicate(source: Source, record: ImportItem) -> ImportResult:
    return ImportResult(
        path=source.name, file_format=record.file_format, status="duplicate", sha256=record.sha256,
        transactions=int(record.transactions), claims=int(record.claims), service_lines=int(record.service_lines),
        insurance_paid_cents=int(record.insurance_paid_cents),
        patient_responsibility_cents=int(record.patient_responsibility_cents), plb_cents=int(record.plb_cents),
        charge_cents=int(record.charge_cents),
        warnings=[f"this file was imported before ({record.created_at.date().isoformat()}); nothing was posted"],
        outcomes={},
    )


def _mark_failed(clinic_id: str, sha: str, source: Source, fmt: str, exc: Exception) -> None:
    """Best effort: record the failure (exception type only) so staff and R8 see a status item."""
    error = {"segment": 0, "segment_id": "", "message": f"internal error ({type(exc).__name__}); the import "
                                                          "will be retried"}
    pk, sk = keys.clinic_pk(clinic_id), keys.import_sk(sha)
    try:
        ImportItem(pk, sk).update(actions=[ImportItem.status.set("failed"), ImportItem.error.set(error),
                                           ImportItem.updated_at.set(clock.now())],
                                  condition=ImportItem.status == "in_progress")
        return
    except UpdateError:
        pass
    except Exception:
        return
    try:
        item = _record(clinic_id, source, sha, FileFacts(fmt), Warnings(), False, "failed")
        item.error = error
        item.save(condition=ImportItem.pk.does_not_exist())
    except Exception:  # noqa: S110 - best effort; the original error is re-raised
        pass
