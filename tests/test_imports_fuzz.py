"""Fuzzing the 835 import with Hypothesis: byte flips, dropped and duplicated segments, delimiter
swaps, huge counts and amounts, truncation, applied to the 835 samples and a generated file.

The property: the import never raises anything but a typed result. A file is either read (with
warnings) or rejected with a segment number, a segment id and a message; and, against DynamoDB
Local, a rejected file writes nothing but its import record (no partial import), an imported
one leaves ledger-verify clean. Parsing precedes writing, so most cases are parse-only
(``import_check``); a smaller set goes through the database.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.imports import generator, services
from chalicelib.imports.files import Source
from chalicelib.ledger.verify import ledger_verify
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import GuarantorItem
from chalicelib.tenants import services as tenants

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "x12-835"
SAMPLES = [p.read_bytes() for p in sorted(DATA.iterdir()) if p.stat().st_size < 40_000]
_out = io.StringIO()
generator.write_835(_out, claims=8, seed=3, newline=False)
SAMPLES.append(_out.getvalue().encode())
TERMINATORS = b"~\n_|"
DELIMITERS = b"*|~:^>_\n"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "drop", "duplicate", "swap", "huge", "repeat", "truncate", "delete"]))
        if not data:
            break
        if kind == "flip":
            at = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "truncate":
            del data[draw(st.integers(min_value=0, max_value=len(data) - 1)):]
        elif kind == "delete":
            at = draw(st.integers(min_value=0, max_value=len(data) - 1))
            del data[at:at + draw(st.integers(min_value=1, max_value=40))]
        elif kind == "swap":  # one delimiter becomes another, in a stretch or everywhere
            old, new = draw(st.sampled_from(list(DELIMITERS))), draw(st.sampled_from(list(DELIMITERS)))
            if draw(st.booleans()):
                data = bytearray(bytes(data).replace(bytes([old]), bytes([new])))
            else:
                at = draw(st.integers(min_value=0, max_value=len(data) - 1))
                chunk = bytes(data[at:at + 200]).replace(bytes([old]), bytes([new]))
                data[at:at + 200] = chunk
        else:
            term = next((t for t in TERMINATORS if bytes([t]) in data[100:]), ord("~"))
            segments = bytes(data).split(bytes([term]))
            i = draw(st.integers(min_value=0, max_value=len(segments) - 1))
            if kind == "drop":
                del segments[i]
            elif kind == "duplicate":
                segments.insert(i, segments[i])
            elif kind == "repeat":  # a huge number of one segment
                segments[i:i + 1] = [segments[i]] * draw(st.integers(min_value=2, max_value=3000))
            else:  # huge counts and amounts in a numeric element
                sep = segments[0][3:4] or b"*"
                els = segments[i].split(sep)
                numeric = [j for j, e in enumerate(els) if e.replace(b".", b"").replace(b"-", b"").isdigit()]
                if numeric:
                    j = draw(st.sampled_from(numeric))
                    els[j] = draw(st.sampled_from([b"9" * 40, b"-" + b"9" * 25 + b".99", b"99999999999",
                                                   b"1" + b"0" * 300, b"0.0000001"]))
                    segments[i] = sep.join(els)
            data = bytearray(bytes([term]).join(segments))
    return bytes(data)


def _check(result: services.ImportResult) -> None:
    # a dry run (import_check) says valid, never imported: nothing was written
    assert result.status in (("valid", "rejected") if result.dry_run else ("imported", "rejected"))
    if result.status == "rejected":
        assert result.error is not None and isinstance(result.error["segment"], int)
        assert isinstance(result.error["segment_id"], str) and result.error["message"]
    else:
        assert result.claims >= 0 and result.transactions >= 1


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_835s_are_read_or_rejected_never_crash(data):
    _check(services.import_check(source=Source(data=data, name="fuzz.835"), file_format="835"))
    _check(services.import_check(source=Source(data=data, name="fuzz.835"), file_format="835", strict=True))


@pytest.mark.usefixtures("dynamodb_endpoint")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                 HealthCheck.function_scoped_fixture])
@given(mutated())
def test_mutated_835s_never_import_partially(data):
    clinic_id = tenants.clinic_create(name="Fuzz Clinic", time_zone="America/New_York")
    result = services.import_file(clinic_id=clinic_id, source=Source(data=data, name="fuzz.835"), file_format="835")
    _check(result)
    if result.status == "rejected":
        with clinic_scope(clinic_id):
            assert list(GuarantorItem.gsi1.query(keys.guarantors_gsi1pk(clinic_id), limit=1)) == []
    report = ledger_verify(clinic_id=clinic_id)
    assert report.ok, report.mismatches[:3]
