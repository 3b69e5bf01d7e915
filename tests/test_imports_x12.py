"""The X12 tokenizer and the 835/837 readers, without storage (DATA-FORMATS.md §1, §2, §5).

Every sample is read from ../shared/data (never copied into the repository); synthetic inputs
are built here, small enough to read.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.imports import generator
from chalicelib.imports.errors import ImportRejected, Warnings
from chalicelib.imports.x12 import X12Reader, cents, read_isa
from chalicelib.imports.x835 import read_835, summarize_835
from chalicelib.imports.x837 import read_837

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def segments(data: bytes, chunk_size: int = 1 << 20, strict: bool = False) -> tuple[list[list[str]], Warnings]:
    warnings = Warnings()
    return list(X12Reader(io.BytesIO(data), warnings=warnings, chunk_size=chunk_size, strict=strict)), warnings


def file(name: str) -> bytes:
    return (DATA / name).read_bytes()


def small_835(**kwargs: object) -> bytes:
    out = io.StringIO()
    generator.write_835(out, claims=6, seed=5, **kwargs)  # type: ignore[arg-type]
    return out.getvalue().encode()


# --- delimiters (§1 table) ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "element", "component", "terminator", "repetition"), [
    ("x12-835/badx12__X221-secondary-payments.edi", "*", ":", "~", ">"),  # no newlines at all
    ("x12-835/oopfactory__5010_Example1.txt", "*", ":", "~", None),  # BOM, CRLF, indentation; 4010 ISA11 U
    ("x12-835/tigershark__835-example.txt", "|", "^", "~", None),  # newline then a stray ~ per line
    ("x12-835/tigershark__5010-835-example-1.txt", "*", "|", "~", "^"),  # | as the component separator
    ("x12-837/imsweb__x12_valid_different_separators.txt", "~", "^", "_", None),  # ~ element, _ terminator
    ("x12-837/staedi__sample837-original.edi", "*", ">", "\n", "`"),  # newline terminator, backquote ISA11
    ("x12-837/tigershark__837-example.txt", "*", ":", "~", None),  # unpadded ISA (78 characters)
])
def test_delimiters_come_from_the_interchange(name, element, component, terminator, repetition):
    reader = X12Reader(io.BytesIO(file(name)), warnings=Warnings())
    tags = [els[0] for els in reader]
    assert reader.delimiters is not None
    assert (reader.delimiters.element, reader.delimiters.component) == (element, component)
    assert (reader.delimiters.segment, reader.delimiters.repetition) == (terminator, repetition)
    assert tags[0] == "ISA" and tags[-1] == "IEA" and all(t == t.strip() and t.isalnum() for t in tags)


def test_isa11_u_is_no_repetition_separator_even_in_5010():
    """§5 issue 12: ``U`` is the 4010 standards id; a value containing U is never split on it."""
    delims, _, _ = read_isa(file("x12-837/imsweb__x12_valid_different_separators.txt").decode(), 1)
    assert delims.repetition is None


def test_utf16_without_bom_is_read_and_its_truncation_rejected():
    with pytest.raises(ImportRejected) as rejected:
        segments(file("x12-837/oopfactory__5010_UnicodeExample.txt"))
    assert rejected.value.position == 5 and "truncated" in rejected.value.message


def test_utf16_with_bom_and_utf8_bom_read_like_the_plain_file():
    plain = small_835()
    expected, _ = segments(plain)
    assert segments(b"\xef\xbb\xbf" + plain)[0] == expected
    assert segments("\ufeff".encode("utf-16-le") + plain.decode().encode("utf-16-le"))[0] == expected
    assert segments(plain.decode().encode("utf-16-be"))[0] == expected


@pytest.mark.parametrize("name", ["x12-835/edi835parser__blue_cross_nc_sample.txt",
                                  "x12-837/imsweb__x12_no_isa_line.txt"])
def test_a_file_without_isa_is_rejected_at_its_first_segment(name):
    with pytest.raises(ImportRejected) as rejected:
        segments(file(name))
    assert rejected.value.position == 1 and rejected.value.segment_id in ("ST", "GS")
    assert "no ISA" in rejected.value.message


def test_several_interchanges_each_with_its_own_delimiters():
    """§5 issues 3 and 16: several ISA per file; here each declares other delimiters."""
    parts, totals = [], []
    for seed, kwargs in ((1, {}), (2, {"element": "|", "component": "^", "terminator": "\n", "newline": False}),
                         (3, {"element": "~", "component": ">", "terminator": "_"})):
        out = io.StringIO()
        totals.append(generator.write_835(out, claims=5, seed=seed, **kwargs))  # type: ignore[arg-type]
        parts.append(out.getvalue())
    data = "\r\n".join(parts).encode()
    for chunk_size in (1, 7, 333, 1 << 20):
        summary = summarize_835(io.BytesIO(data), Warnings(), chunk_size=chunk_size)
        assert summary.claims == sum(t.claims for t in totals)
        assert summary.insurance_paid_cents == sum(t.paid for t in totals)


def test_multiple_interchange_sample_and_six_st_in_one_gs():
    reader = X12Reader(io.BytesIO(file("x12-835/oopfactory__5010_835_WithMultipleInterchanges.txt")),
                       warnings=Warnings())
    list(reader)
    assert (reader.interchanges, reader.groups, reader.transactions) == (3, 3, 3)
    reader = X12Reader(io.BytesIO(file("x12-835/oopfactory__4010_835_DeIdent_02.dat")), warnings=Warnings())
    list(reader)
    assert (reader.interchanges, reader.groups, reader.transactions) == (1, 1, 6)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=4096))
def test_any_chunk_size_reads_the_same_segments(chunk_size):
    """Streaming: where the chunks end never changes what is read (CRLF and BOM included)."""
    data = file("x12-835/oopfactory__5010_Example1.txt")
    assert segments(data, chunk_size)[0] == segments(data)[0]


# --- envelopes and counts ------------------------------------------------------------------------


def test_wrong_se01_is_a_warning_by_default_and_a_rejection_when_strict():
    data = small_835().replace(b"SE*", b"SE*9", 1)
    _, warnings = segments(data)
    assert any("SE01" in w for w in warnings.items)
    with pytest.raises(ImportRejected) as rejected:
        segments(data, strict=True)
    assert rejected.value.segment_id == "SE" and "SE01" in rejected.value.message


def test_control_number_mismatches_are_reported():
    data = small_835().replace(b"IEA*1*000005005", b"IEA*1*000000001").replace(b"GE*1*5005", b"GE*2*5006")
    _, warnings = segments(data)
    assert {"IEA02 differs from ISA13", "GE02 differs from GS06"} <= {w.split(": ", 1)[1] for w in warnings.items}
    assert any("GE01 says '2'" in w for w in warnings.items)


@pytest.mark.parametrize(("cut", "missing"), [(b"SE*", "SE"), (b"GE*", "GE"), (b"IEA*", "IEA")])
def test_truncated_files_are_rejected(cut, missing):
    data = small_835()
    with pytest.raises(ImportRejected) as rejected:
        segments(data[:data.index(cut)])
    assert f"before the {missing} segment" in rejected.value.message


@pytest.mark.parametrize(("data", "segment_id", "message"), [
    (b"", "", "empty"),
    (b"hello world", "", "not an X12 file"),
    (b"ISA*00*", "ISA", "fewer than 16"),
    (b"ISA*00*          *00*          *ZZ*A              *ZZ*B              *260301*1200*^*00501*000000001*0*P*"
     b"**GS*HP~", "ISA", "not distinct"),
])
def test_broken_headers_are_typed_rejections(data, segment_id, message):
    with pytest.raises(ImportRejected) as rejected:
        segments(data)
    assert rejected.value.segment_id == segment_id and message in rejected.value.message


def test_segments_outside_their_envelopes_are_rejected():
    data = small_835()
    st = data.index(b"ST*")
    with pytest.raises(ImportRejected) as rejected:
        segments(data[:st] + b"REF*EV*1~" + data[st:])
    assert rejected.value.segment_id == "REF" and "outside a transaction set" in rejected.value.message
    with pytest.raises(ImportRejected) as rejected:
        list(read_835(X12Reader(io.BytesIO(data.replace(b"CLP*", b"CLQ*", 1)), warnings=Warnings()), Warnings()))
    assert rejected.value.segment_id == "CLQ" and "not a segment of an 835" in rejected.value.message


# --- amounts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("34", 3400), ("34.00", 3400), ("-9", -900), (".5", 50), ("-.5", -50), ("100.5", 10050), ("0", 0),
    ("12.", 1200), ("1.230", 123), ("1E2", 10000), ("+5", 500),
])
def test_amounts_parse_to_cents(text, expected):
    assert cents(text, "CLP04", 7, "CLP") == expected


@pytest.mark.parametrize("text", ["", "-", ".", "X", "1.2.3", "1-2", "1_000", "12,50", "١٢", "nan", "inf"])
def test_non_numeric_amounts_are_rejected_with_their_position(text):
    with pytest.raises(ImportRejected) as rejected:
        cents(text, "CLP04", 7, "CLP")
    assert (rejected.value.position, rejected.value.segment_id) == (7, "CLP")
    assert rejected.value.message == "CLP04 is not a decimal amount"


def test_fractions_of_a_cent_are_rejected():
    with pytest.raises(ImportRejected, match="fractions of a cent"):
        cents("1.005", "SVC02", 3, "SVC")


@pytest.mark.parametrize("text", ["9" * 40, "9" * 40 + ".00", "-" + "9" * 40, "1000000000000", "1e40"])
def test_amounts_of_a_trillion_dollars_or_more_are_rejected(text):
    """Regression (fuzz): ``CAS*CO*A2*<40 nines>`` was accepted and failed the write (DynamoDB
    numbers hold 38 digits) instead of rejecting the file before it."""
    with pytest.raises(ImportRejected) as rejected:
        cents(text, "CAS03", 9, "CAS")
    assert (rejected.value.position, rejected.value.segment_id) == (9, "CAS")
    assert cents("999999999999.99", "CAS03", 9, "CAS") == 99999999999999


def test_a_non_numeric_amount_in_a_file_names_segment_and_element_but_no_value():
    data = small_835()
    clp = data.index(b"CLP*")
    start = data.index(b"*", data.index(b"*", clp + 4) + 1) + 1  # CLP03
    bad = data[:start] + b"SMITH" + data[data.index(b"*", start):]
    with pytest.raises(ImportRejected) as rejected:
        summarize_835(io.BytesIO(bad), Warnings())
    assert rejected.value.segment_id == "CLP" and "SMITH" not in str(rejected.value)
    assert rejected.value.message == "CLP03 is not a decimal amount"


# --- 835 reading ---------------------------------------------------------------------------------


def test_all_six_cas_triplets_and_the_svc_composite():
    data = small_835().replace(b"CAS*CO*45*", b"CAS*CO*45*1**2*1**3*1**4*1**5*1**6*", 1)
    claims = [c for c in read_835(X12Reader(io.BytesIO(data), warnings=Warnings()), Warnings()) if hasattr(c, "lines")]
    adjusted = [a for c in claims for ln in c.lines for a in ln.adjustments if a.group == "CO"]
    assert [a.reason for a in adjusted[:6]] == ["45", "2", "3", "4", "5", "6"]
    assert all(a.cents == 100 for a in adjusted[:5])  # the sixth keeps the file's amount
    data = file("x12-835/badx12__X221-secondary-payments.edi")
    [_, claim] = [c for c in read_835(X12Reader(io.BytesIO(data), warnings=Warnings()), Warnings())
                  if hasattr(c, "lines")]
    line = claim.lines[1]
    assert (line.qualifier, line.code, line.modifiers) == ("HC", "66543", ("26",))
    assert [(a.group, a.reason, a.cents) for a in line.adjustments] == [("PR", "1", 15000), ("PR", "2", 7000),
                                                                        ("CO", "42", 8500)]


def test_component_separator_disagreeing_with_isa16_warns_or_rejects_when_strict():
    data = file("x12-835/lfh__secondary-payment.835")
    warnings = Warnings()
    summary = summarize_835(io.BytesIO(data), warnings)
    assert summary.claims == 2 and any("SVC01 uses '>'" in w for w in warnings.items)
    with pytest.raises(ImportRejected) as rejected:
        summarize_835(io.BytesIO(data), Warnings(), strict=True)
    assert (rejected.value.position, rejected.value.segment_id) == (29, "SVC")


def test_svc_without_procedure_code_rejects_the_tertiary_sample():
    with pytest.raises(ImportRejected) as rejected:
        summarize_835(io.BytesIO(file("x12-835/lfh__tertiary-payment.835")), Warnings())
    assert (rejected.value.position, rejected.value.segment_id) == (20, "SVC")


def test_balancing_is_checked_and_reported_as_warnings():
    warnings = Warnings()
    summarize_835(io.BytesIO(file("x12-835/tigershark__835-example-2.txt")), warnings)
    assert any("BPR02" in w and "does not balance" in w for w in warnings.items)
    warnings = Warnings()
    summarize_835(io.BytesIO(file("x12-835/badx12__X221-dollars-and-data-sent-together.edi")), warnings)
    assert not any("balance" in w for w in warnings.items)  # 150000 = 149998.73 − (−1.27)


def test_unknown_code_values_are_warnings_not_rejections():
    data = small_835().replace(b"CLP*PCN05", b"CLP*PCN05", 1).replace(b"*1*", b"*77*", 0)
    clp = data.index(b"CLP*")
    status_at = data.index(b"*", clp + 4) + 1
    data = data[:status_at] + b"77" + data[data.index(b"*", status_at):]
    data = data.replace(b"CAS*CO*", b"CAS*ZZ*", 1).replace(b"BPR*I*", b"BPR*Q*", 1)
    warnings = Warnings()
    summarize_835(io.BytesIO(data), warnings)
    text = " ".join(warnings.items)
    assert "unknown CLP02" in text and "unknown CAS01" in text and "unknown BPR01" in text


def test_generated_835_totals_match_the_generator():
    out = io.StringIO()
    totals = generator.write_835(out, claims=400, seed=9, claims_per_transaction=150)
    warnings = Warnings()
    summary = summarize_835(io.BytesIO(out.getvalue().encode()), warnings)
    assert (summary.transactions, summary.claims) == (totals.transactions, totals.claims)
    assert (summary.insurance_paid_cents, summary.patient_responsibility_cents, summary.plb_cents) == (
        totals.paid, totals.patient, totals.plb)
    assert warnings.total == 0 and totals.reversals and totals.denials


# --- 837 reading ---------------------------------------------------------------------------------


def test_837_subscriber_patient_providers_and_lines():
    warnings = Warnings()
    [visit] = read_837(X12Reader(io.BytesIO(file("x12-837/lfh__demo.cob.example3.A.837")), warnings=warnings),
                       warnings)
    assert visit.claim_id == "26407789" and visit.charge_cents == 7904
    assert visit.subscriber is not None and visit.patient is not None
    assert (visit.subscriber.member_id, visit.subscriber.date_of_birth) == ("111223333", "1943-05-01")
    assert visit.subscriber.address is None  # the N3/N4 after NM1*PR are the payer's address
    assert visit.patient.address and visit.patient.address["line1"] == "236 N MAIN ST"
    assert (visit.relationship, visit.patient.date_of_birth) == ("child", "1973-05-01")
    assert [ln.code for ln in visit.lines] == ["99213", "90782", "J3301"]
    assert visit.billing and visit.billing.npi == "1999996666" and visit.facility and visit.facility.npi == "1581234567"


def test_837i_revenue_codes_and_hl_ids_reused_across_transaction_sets():
    warnings = Warnings()
    [visit] = read_837(X12Reader(io.BytesIO(file("x12-837i/lfh__institutional-claim.837i")), warnings=warnings),
                       warnings)
    assert [(ln.revenue_code, ln.code, ln.units) for ln in visit.lines] == [("0305", "85025", 1), ("0730", "93005", 3)]
    data = file("x12-837/oopfactory__5010_Example1_2_And_3_Combined.txt")
    visits = list(read_837(X12Reader(io.BytesIO(data), warnings=Warnings()), Warnings()))
    assert len(visits) == 3 and all(v.subscriber is not None for v in visits)


def test_837_from_the_generator_reads_every_claim():
    out = io.StringIO()
    generator.write_837(out, claims=120, seed=4, claims_per_transaction=50)
    warnings = Warnings()
    visits = list(read_837(X12Reader(io.BytesIO(out.getvalue().encode()), warnings=warnings), warnings))
    expected = list(generator.claims(4, 120))
    assert [v.claim_id for v in visits] == [c.claim_id for c in expected]
    assert [v.charge_cents for v in visits] == [c.charge for c in expected]
    assert warnings.total == 0
