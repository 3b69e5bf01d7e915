"""X12 835 (Health Care Claim Payment/Advice) reader: segments to :class:`RemitClaim` objects.

Reads 4010 (004010X091A1) and 5010 (005010X221A1) structurally, without version-specific
schemas (DATA-FORMATS.md §2.7 "prefer structural parsing"): per transaction set the payment
(BPR01 handling, BPR02 amount, BPR16 date), the trace (TRN02/TRN03), payer (N1*PR) and payee
(N1*PE); per claim CLP01-09, NM1*QC/IL/74/82/TT, claim CAS, DTM*232/233/050, AMT; per service
line SVC01 (qualifier, code, up to four modifiers, split on ISA16), SVC02-07, DTM*472/150/151,
line CAS with all six triplets, REF*6R, AMT*B6, LQ*HE; PLB pairs at the transaction.

Streaming: :func:`read_835` yields each claim when its loop ends and each transaction at its SE,
holding one claim at a time, so memory does not grow with the file (PERFORMANCE.md S4).

Rejections (ImportRejected, position and segment id, no values): an amount that is not a
decimal or has fractions of a cent (CLP03/04/05, SVC02/03, CAS, AMT, BPR02, PLB), a claim
without CLP01/CLP02, an SVC01 without a procedure code, CAS/SVC/PLB outside their loops, a
segment id that is not an 835 segment. With ``strict``, an SVC01 composite that uses another
separator than ISA16 is a rejection too.

Warnings (never rejections): unknown CLP02, CAS01 and BPR01 codes; a claim that does not
balance (CLP03 − Σ claim and line CAS ≠ CLP04), a line that does not (SVC02 − Σ line CAS ≠
SVC03), CLP05 ≠ Σ PR; a transaction that does not balance (BPR02 ≠ ΣCLP04 − ΣPLB, §2.4);
a corrected patient (NM1*74); an SVC01 composite written with another separator than ISA16
(read with the separator it uses, ``lfh__secondary-payment.835``); dates that are not dates.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from itertools import count
from typing import Any, BinaryIO

from chalicelib.core.money import format_cents
from chalicelib.imports.errors import ImportRejected, Warnings
from chalicelib.imports.model import (
    CAS_GROUPS,
    CLAIM_STATUSES,
    PATIENT_GROUP,
    PREDETERMINATION,
    Adjustment,
    FileFacts,
    Person,
    Plb,
    RemitClaim,
    RemitLine,
    RemitTransaction,
)
from chalicelib.imports.x12 import _CENTS, CHUNK, ENVELOPE, X12Reader, cents

#: Segment ids of the 4010 and 5010 835 guides. Anything else inside ST..SE is refused: it is
#: not an unknown code value but a corrupted or foreign segment (a flipped ``CLP`` would
#: otherwise hand a claim's lines to the claim before it).
SEGMENTS = frozenset({"BPR", "NTE", "TRN", "CUR", "REF", "DTM", "N1", "N2", "N3", "N4", "PER", "RDM", "LX",
                      "TS3", "TS2", "CLP", "CAS", "NM1", "MIA", "MOA", "AMT", "QTY", "SVC", "LQ", "PLB"})
HANDLING_CODES = frozenset({"C", "D", "H", "I", "P", "U", "X"})
#: Segments whose content the import does not use (their presence is still checked).
PASSIVE = frozenset({"N2", "N3", "N4", "PER", "RDM", "NTE", "CUR", "MIA", "MOA", "QTY", "TS3", "TS2"})
#: What a repeated segment meant the first time (memo of the reader: remittances repeat dates,
#: adjustments and allowed amounts; bounded, cleared when the delimiters change).
CAS_HIT, LQ_HIT, SVC_HIT, RENDERING_HIT, PASSIVE_HIT_KIND = "CAS", "LQ", "SVC", "NM1*82", "-"
AMT_LINE, AMT_CLAIM = "AMT*B6", "AMT"
#: What a DTM qualifier sets: service dates of the line, dates of the claim, the production date.
SERVICE_DAY, SERVICE_FROM, SERVICE_TO = "DTM*472", "DTM*150", "DTM*151"
CLAIM_FROM, CLAIM_TO, PRODUCTION, OTHER_DAY = "DTM*232", "DTM*233", "DTM*405", PASSIVE_HIT_KIND
DTM_ACTIONS = {"472": SERVICE_DAY, "150": SERVICE_FROM, "151": SERVICE_TO, "232": CLAIM_FROM, "233": CLAIM_TO,
               "405": PRODUCTION}
PASSIVE_HIT = (PASSIVE_HIT_KIND,)
#: Segments that end the open claim (and its open service line).
CLOSERS = frozenset({"CLP", "LX", "SE", "PLB"})
MEMO = 8192
_SEPARATOR_GUESSES = ":>^|<\\!`{}~+"


_DATES: dict[str, str | None] = {}
MISSING = object()


def iso_date(raw: str) -> str | None:
    """``CCYYMMDD`` -> ``YYYY-MM-DD``; None when ``raw`` is not a calendar date (remembered:
    a remittance repeats a few hundred dates; the memory is bounded)."""
    if len(raw) != 8 or not raw.isdigit() or not raw.isascii():
        value = None
    else:
        try:
            value = date(int(raw[:4]), int(raw[4:6]), int(raw[6:])).isoformat()
        except ValueError:
            value = None
    if len(_DATES) < 8192:
        _DATES[raw] = value
    return value


def _composite(raw: str, component: str, position: int, seg: str, name: str, warnings: Warnings,
               strict: bool, required: bool) -> list[str]:
    """Split a composite (SVC01, SVC06) on ISA16; recover one written with another separator."""
    parts = raw.split(component)
    if len(parts) == 1 and len(raw) > 2:
        for guess in _SEPARATOR_GUESSES:
            if guess != component and guess in raw:
                alt = raw.split(guess)
                if len(alt[0]) == 2 and alt[0].isalpha() and alt[1]:
                    what = f"{name} uses {guess!r} as component separator but ISA16 declares {component!r}"
                    if strict:
                        raise ImportRejected(position, seg, what)
                    warnings.add(f"segment {position} ({seg}): {what}; read with {guess!r}")
                    parts = alt
                    break
    if required and (len(parts) < 2 or not parts[1].strip()):
        raise ImportRejected(position, seg, f"{name} has no procedure code")
    return parts


def read_835(reader: X12Reader, warnings: Warnings, *, strict: bool = False,
             claims: bool = True) -> Iterator[RemitClaim | RemitTransaction]:
    """Yield every claim of the file (in order) and every transaction set at its SE; with
    ``claims=False`` only the transaction sets (their totals count every claim; the claims and
    their lines are still built and checked, then dropped).

    Transactions that are not 835s (ST01 ≠ 835) are refused. Raises ImportRejected; adds
    warnings as listed in the module docstring.

    Speed (PERFORMANCE.md S4 asks for ≥ 0.25 of a bare split): one loop over the reader's
    batches, no generator or function call per segment; a segment text seen before inside a
    transaction set is not split again but looked up in ``memo`` (what it meant the first time:
    remittances repeat dates, adjustments, fee-schedule lines); the open service line and the
    claim's running totals live in local variables (``l_*``, ``c_*``) and become one
    :class:`RemitLine` per SVC loop when it ends, so no attribute is written per segment.
    """
    tx: RemitTransaction | None = None
    claim: RemitClaim | None = None
    claim_ordinal = tx_ordinal = 0
    in_claims = False
    add_warning = warnings.add
    envelope = reader.envelope
    new_tuple = tuple.__new__
    dates = _DATES
    cached = _CENTS.get
    memo: dict[str, tuple[Any, ...]] = {}
    memo_get = memo.get
    last_delims = None
    # the claim's running totals and lists (claim-level CAS, Σ CAS, Σ group PR, its lines)
    c_adj: tuple[Adjustment, ...] = ()
    c_adjusted = c_pr = 0
    c_lines: list[RemitLine] = []
    c_unbalanced = False  # a line of the claim does not balance
    c_charge = c_paid = 0  # CLP03, CLP04
    c_resp: int | None = None  # CLP05
    # the open service line: the RemitLine fields its SVC gave (None when no line is open), then
    # what the segments after it add
    l_svc: tuple[Any, ...] | None = None
    l_pos = l_adjusted = 0
    l_from: str | None = None
    l_to: str | None = None
    l_control = ""
    l_adj: tuple[Adjustment, ...] = ()
    l_allowed: int | None = None
    l_remarks: tuple[str, ...] = ()
    for batch in reader.batches():
        delims = reader.delimiters
        assert delims is not None
        if delims != last_delims:
            memo.clear()
            last_delims = delims
        component, sep = delims.component, delims.element
        # the memo is looked up by ``map`` (at C speed, as each segment comes: misses before it are in)
        for position, segment, hit in zip(count(reader.base + 1), batch, map(memo_get, batch)):
            if hit is None or tx is None:  # outside ST..SE every segment is checked by the reader
                els = segment.split(sep)
                tag = els[0]
                if tx is None:  # between transaction sets: envelopes only
                    if tag not in ENVELOPE:
                        reader.outside(els, position)
                    envelope(els, position)
                    if tag == "ST":
                        st01 = els[1] if len(els) > 1 else ""
                        if st01 != "835":
                            raise ImportRejected(position, tag, f"transaction set {st01[:3]!r} is not an 835")
                        tx_ordinal += 1
                        tx = RemitTransaction(ordinal=tx_ordinal, position=position,
                                              control=els[2] if len(els) > 2 else "", version=reader.version)
                        in_claims = False
                    continue
                n = len(els)
                if tag == "REF":
                    if l_svc is not None:
                        if n > 2 and els[1] == "6R":
                            l_control = els[2]
                    elif claim is None and n > 2 and els[1] == "2U" and not tx.payer_id:
                        tx.payer_id = els[2]
                    continue
                if tag == "NM1":
                    if claim is None:
                        continue
                    entity = els[1] if n > 1 else ""
                    if entity == "QC" or entity == "IL":
                        person = Person(els[3] if n > 3 else "", els[4] if n > 4 else "", els[5] if n > 5 else "",
                                        (els[9] if n > 9 else "").strip())
                        if entity == "QC":
                            claim.patient = person
                        else:
                            claim.subscriber = person
                    elif entity == "74":
                        claim.corrected = True
                        add_warning(f"segment {position} (NM1): claim {claim.ordinal} carries a corrected patient "
                                    "name or id (NM1*74): check the demographics")
                    elif entity == "82":
                        claim.rendering_npi = els[9] if n > 9 and els[8] == "XX" else ""
                        if len(memo) < MEMO:
                            memo[segment] = (RENDERING_HIT, claim.rendering_npi)
                    elif entity == "TT":
                        claim.crossover = True
                    continue
                if tag in CLOSERS:  # CLP, LX, SE, PLB end the open claim
                    if tag == "SE":
                        envelope(els, position)
                    if claim is not None:
                        if l_svc is not None:
                            c_lines.append(new_tuple(RemitLine, (l_pos, *l_svc, l_from, l_to, l_control, l_adj,
                                                                 l_allowed, l_remarks, l_adjusted)))
                            if l_svc[3] - l_adjusted != l_svc[4]:
                                c_unbalanced = True
                            l_svc = None
                        claim.adjustments = c_adj
                        claim.adjusted_cents, claim.pr_cents = c_adjusted, c_pr
                        tx.service_lines += len(c_lines)
                        tx.patient_cents += c_pr
                        if (c_unbalanced or c_charge - c_adjusted != c_paid or claim.patient is None
                                or (c_resp is not None and c_pr != c_resp)):
                            _check(claim, warnings)
                        if claims:
                            yield claim
                        claim = None
                    if tag == "CLP":
                        in_claims = True
                        control = els[1].strip() if n > 1 else ""
                        status = els[2].strip() if n > 2 else ""
                        if not control:
                            raise ImportRejected(position, tag, "CLP01 (patient control number) is empty")
                        if not status:
                            raise ImportRejected(position, tag, "CLP02 (claim status) is empty")
                        if status not in CLAIM_STATUSES:
                            add_warning(f"segment {position} (CLP): unknown CLP02 claim status {status[:3]!r}; "
                                        "the claim is held for review")
                        claim_ordinal += 1
                        tx.claims += 1
                        charge_text = els[3] if n > 3 else ""
                        charge = cached(charge_text)
                        if charge is None:
                            charge = cents(charge_text, "CLP03", position, tag)
                        paid_text = els[4] if n > 4 else ""
                        paid = cached(paid_text)
                        if paid is None:
                            paid = cents(paid_text, "CLP04", position, tag)
                        patient_text = els[5] if n > 5 else ""
                        patient_resp = cached(patient_text) if patient_text else None
                        if patient_resp is None and patient_text:
                            patient_resp = cents(patient_text, "CLP05", position, tag)
                        c_adj, c_adjusted, c_pr, c_lines, c_unbalanced = (), 0, 0, [], False
                        c_charge, c_paid, c_resp = charge, paid, patient_resp
                        claim = RemitClaim(
                            claim_ordinal, position, tx, control, status, charge, paid, patient_resp,
                            els[6] if n > 6 else "", (els[7] if n > 7 else "").strip(), els[8] if n > 8 else "",
                            els[9] if n > 9 else "", lines=c_lines, ordinal_in_transaction=tx.claims,
                        )
                        tx.claims_paid_cents += paid
                    elif tag == "SE":
                        _balance(tx, warnings)
                        yield tx
                        tx = None
                    elif tag == "PLB":
                        provider = els[1] if n > 1 else ""
                        fiscal = iso_date(els[2]) if n > 2 else None
                        for k in range(3, 15, 2):
                            composite = els[k] if k < n else ""
                            amount = els[k + 1] if k + 1 < n else ""
                            if not composite and not amount:
                                continue
                            reason, _, reference = composite.partition(component)
                            plb = Plb(position, provider, fiscal, reason, reference,
                                      cents(amount, f"PLB{k + 1:02d}", position, tag))
                            tx.plbs.append(plb)
                            tx.plb_cents += plb.cents
                    continue
                if tag == "BPR":
                    if in_claims:
                        raise ImportRejected(position, tag, "BPR after the first claim")
                    handling = els[1] if n > 1 else ""
                    if handling not in HANDLING_CODES:
                        add_warning(f"segment {position} (BPR): unknown BPR01 handling code {handling[:2]!r}")
                    tx.handling = handling
                    tx.amount_cents = cents(els[2] if n > 2 else "", "BPR02", position, tag)
                    tx.credit_debit = els[3] if n > 3 else ""
                    tx.method = els[4] if n > 4 else ""
                    tx.payment_date = iso_date(els[16]) if n > 16 else None
                    continue
                if tag == "TRN":
                    if not tx.trace:
                        tx.trace = els[2] if n > 2 else ""
                        tx.payer_trn_id = els[3] if n > 3 else ""
                    continue
                if tag == "N1":
                    if claim is None:
                        entity = els[1] if n > 1 else ""
                        if entity == "PR" and not tx.payer_name:
                            tx.payer_name = els[2] if n > 2 else ""
                            if n > 4 and not tx.payer_id:
                                tx.payer_id = els[4]
                        elif entity == "PE" and not tx.payee_name:
                            tx.payee_name = els[2] if n > 2 else ""
                            tx.payee_id_qualifier = els[3] if n > 3 else ""
                            tx.payee_id = els[4] if n > 4 else ""
                    continue
                if tag == "DTM":
                    qualifier = els[1] if n > 1 else ""
                    raw = els[2] if n > 2 else ""
                    day = dates.get(raw, MISSING)
                    if day is MISSING:
                        day = iso_date(raw)
                    hit = (DTM_ACTIONS.get(qualifier, OTHER_DAY), day)
                    if day is None and qualifier:
                        add_warning(f"segment {position} (DTM): DTM02 is not a date")
                    elif len(memo) < MEMO:
                        memo[segment] = hit
                elif tag == "SVC":
                    raw = els[1] if n > 1 else ""
                    proc = raw.split(component)
                    recovered = len(proc) < 2 or not proc[1]
                    if recovered:
                        proc = _composite(raw, component, position, tag, "SVC01", warnings, strict, True)
                    modifiers = tuple(m for m in proc[2:6] if m) if len(proc) > 2 else ()
                    charge_text = els[2] if n > 2 else ""
                    paid_text = els[3] if n > 3 else ""
                    charge = cached(charge_text)
                    if charge is None:
                        charge = cents(charge_text, "SVC02", position, tag)
                    paid = cached(paid_text)
                    if paid is None:
                        paid = cents(paid_text, "SVC03", position, tag)
                    hit = (SVC_HIT, (proc[0], proc[1].strip(), modifiers, charge, paid, els[4] if n > 4 else "",
                                     els[5] if n > 5 else "", els[6] if n > 6 else ""))
                    if not recovered and len(memo) < MEMO:
                        memo[segment] = hit
                elif tag == "CAS":
                    if claim is None:
                        raise ImportRejected(position, tag, "CAS outside a claim")
                    group = els[1] if n > 1 else ""
                    total = 0
                    adjustments = []
                    for k in range(2, min(n, 20), 3):  # six triplets: CAS02-04 ... CAS17-19
                        reason = els[k]
                        amount = els[k + 1] if k + 1 < n else ""
                        if not reason:
                            if not amount:
                                continue
                            raise ImportRejected(position, tag, f"CAS{k + 2:02d} has an amount without a reason code")
                        value = cached(amount)
                        if value is None:
                            value = cents(amount, f"CAS{k + 2:02d}", position, tag)
                        total += value
                        quantity = els[k + 2] if k + 2 < n else ""
                        adjustments.append(new_tuple(Adjustment, (group, reason, value, quantity)))
                    if n > 20:
                        raise ImportRejected(position, tag, "CAS has more than six adjustment triplets")
                    hit = (CAS_HIT, group, tuple(adjustments), total)
                    if group not in CAS_GROUPS:
                        add_warning(f"segment {position} (CAS): unknown CAS01 group code {group[:3]!r}")
                    elif len(memo) < MEMO:
                        memo[segment] = hit
                elif tag == "AMT":
                    amount = els[2] if n > 2 else ""
                    value = cached(amount)
                    if value is None:
                        value = cents(amount, "AMT02", position, tag)
                    qualifier = els[1] if n > 1 else ""
                    hit = (AMT_LINE if qualifier == "B6" else AMT_CLAIM, value, qualifier)
                    if len(memo) < MEMO:
                        memo[segment] = hit
                elif tag == "LQ":
                    hit = (LQ_HIT, els[2] if n > 2 else "")
                    if len(memo) < MEMO:
                        memo[segment] = hit
                elif tag in PASSIVE:
                    if len(memo) < MEMO:
                        memo[segment] = PASSIVE_HIT
                    continue
                else:
                    if tag in ENVELOPE:
                        envelope(els, position)  # ST/GS/GE/IEA/ISA inside a transaction set: refused
                        raise ImportRejected(position, tag, "envelope inside a transaction set")  # pragma: no cover
                    if tag in SEGMENTS:
                        continue
                    raise ImportRejected(position, tag[:3], "not a segment of an 835 transaction set")
            # what the segment means (a memo hit, or the miss path above): in order of frequency
            kind = hit[0]
            if kind is CAS_HIT:
                if l_svc is not None:
                    l_adj += hit[2]
                    l_adjusted += hit[3]
                elif claim is not None:
                    c_adj += hit[2]
                else:
                    raise ImportRejected(position, "CAS", "CAS outside a claim")
                c_adjusted += hit[3]
                if hit[1] == PATIENT_GROUP:
                    c_pr += hit[3]
            elif kind is SERVICE_DAY:
                if l_svc is not None:
                    l_from = l_to = hit[1]
            elif kind is AMT_LINE:
                if l_svc is not None:
                    l_allowed = hit[1]
                elif claim is not None:
                    claim.amounts["B6"] = claim.amounts.get("B6", 0) + hit[1]
            elif kind is SVC_HIT:
                if claim is None:
                    raise ImportRejected(position, "SVC", "SVC outside a claim")
                if l_svc is not None:
                    c_lines.append(new_tuple(RemitLine, (l_pos, *l_svc, l_from, l_to, l_control, l_adj, l_allowed,
                                                         l_remarks, l_adjusted)))
                    if l_svc[3] - l_adjusted != l_svc[4]:
                        c_unbalanced = True
                l_svc, l_pos, l_from, l_to, l_control, l_adj, l_allowed, l_remarks, l_adjusted = (
                    hit[1], position, None, None, "", (), None, (), 0)
            elif kind is CLAIM_FROM:
                if l_svc is None and claim is not None:
                    claim.date_from = hit[1]
            elif kind is CLAIM_TO:
                if l_svc is None and claim is not None:
                    claim.date_to = hit[1]
            elif kind is RENDERING_HIT:
                if claim is not None:
                    claim.rendering_npi = hit[1]
            elif kind is AMT_CLAIM:
                if l_svc is None and claim is not None:
                    claim.amounts[hit[2]] = claim.amounts.get(hit[2], 0) + hit[1]
            elif kind is PASSIVE_HIT_KIND:
                pass
            elif kind is SERVICE_FROM:
                if l_svc is not None:
                    l_from = hit[1]
            elif kind is SERVICE_TO:
                if l_svc is not None:
                    l_to = hit[1]
            elif kind is PRODUCTION:
                if claim is None:
                    tx.production_date = hit[1]
            elif kind is LQ_HIT:
                if l_svc is not None:
                    l_remarks += (hit[1],)
    reader.finish()


def _check(claim: RemitClaim, warnings: Warnings) -> None:
    """Balancing checks of one claim read to its end (DATA-FORMATS.md §2.4), as warnings: no
    patient, a line or the claim that does not balance, CLP05 ≠ Σ group PR (predeterminations
    are only checked for their patient)."""
    if claim.patient is None:
        warnings.add(f"segment {claim.position} (CLP): claim {claim.ordinal} has no patient (NM1*QC); "
                     "it is held for review")
    if claim.status == PREDETERMINATION:
        return
    for line in claim.lines:
        if line.charge_cents - line.adjusted_cents != line.paid_cents:
            warnings.add(f"segment {line.position} (SVC): line does not balance: SVC02 − ΣCAS − SVC03 = "
                         f"{format_cents(line.charge_cents - line.adjusted_cents - line.paid_cents)}")
    if claim.charge_cents - claim.adjusted_cents != claim.paid_cents:
        warnings.add(f"segment {claim.position} (CLP): claim {claim.ordinal} does not balance: CLP03 − ΣCAS − "
                     f"CLP04 = {format_cents(claim.charge_cents - claim.adjusted_cents - claim.paid_cents)}")
    if claim.patient_resp_cents is not None and claim.pr_cents != claim.patient_resp_cents:
        warnings.add(f"segment {claim.position} (CLP): claim {claim.ordinal}: CLP05 differs from the "
                     f"group-PR adjustments by {format_cents(claim.patient_resp_cents - claim.pr_cents)}")


def _balance(tx: RemitTransaction, warnings: Warnings) -> None:
    expected = tx.claims_paid_cents - tx.plb_cents
    paid = -tx.amount_cents if tx.credit_debit == "D" else tx.amount_cents
    if expected != paid:
        warnings.add(f"segment {tx.position} (ST): transaction {tx.ordinal} does not balance: BPR02 "
                     f"{format_cents(paid)} ≠ ΣCLP04 − ΣPLB {format_cents(expected)}")


def balanced(tx: RemitTransaction) -> bool:
    """BPR02 = ΣCLP04 − ΣPLB for a transaction read to its SE."""
    paid = -tx.amount_cents if tx.credit_debit == "D" else tx.amount_cents
    return tx.claims_paid_cents - tx.plb_cents == paid


def summarize_835(stream: BinaryIO, warnings: Warnings, *, strict: bool = False,
                  chunk_size: int = CHUNK, reader: X12Reader | None = None) -> FileFacts:
    """Read a whole 835 and return its counts and totals (``FileFacts``: ΣCLP04, Σ CAS group PR,
    ΣPLB, one payment row per transaction set, the first 100 PLB pairs); raises ImportRejected on
    the first fatal error.

    This is the validation pass of an import: it reads everything before anything is written.
    """
    if reader is None:
        reader = X12Reader(stream, warnings=warnings, strict=strict, chunk_size=chunk_size)
    summary = FileFacts("835")
    for item in read_835(reader, warnings, strict=strict, claims=False):
        if isinstance(item, RemitTransaction):
            summary.transactions += 1
            summary.claims += item.claims
            summary.service_lines += item.service_lines
            summary.insurance_paid_cents += item.claims_paid_cents
            summary.patient_responsibility_cents += item.patient_cents
            summary.plb_cents += item.plb_cents
            if len(summary.payments) < 500:
                summary.payments.append({
                    "transaction": item.ordinal, "handling": item.handling, "amount_cents": item.amount_cents,
                    "credit_debit": item.credit_debit, "method": item.method, "date": item.payment_date,
                    "trace": item.trace[:50], "payer_id": item.payer_trn_id[:30], "payer": item.payer_name[:60],
                    "claims": item.claims, "claims_paid_cents": item.claims_paid_cents,
                    "plb_cents": item.plb_cents, "balanced": balanced(item),
                    "deposit": item.handling != "H" and item.amount_cents != 0,
                })
            for plb in item.plbs:
                if len(summary.plbs) < 100:
                    summary.plbs.append({"transaction": item.ordinal, "segment": plb.position,
                                         "provider_id": plb.provider_id[:30], "fiscal_date": plb.fiscal_date,
                                         "reason": plb.reason[:4], "reference": plb.reference[:50],
                                         "cents": plb.cents})
    return summary

