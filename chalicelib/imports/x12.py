"""A small, tolerant, streaming X12 tokenizer with envelope checks (DATA-FORMATS.md §1).

Why our own and not pyx12 (or another library): DESIGN.md's stack table and PERFORMANCE.md S4
measured pyx12 4.0's ``X12Reader`` at 0.06 of a bare ``str.split`` of the same bytes, and it
refuses unknown ISA versions (the de-identified samples carry ``99999``) and a UTF-8 BOM (the
oopfactory samples start with one). edi-835-parser (0.04 of bare split) hard-codes ``:`` as the
component separator and asserts one payer per transaction (DATA-FORMATS.md §5 items 1, 4). The
target is ≥ 0.25 of bare split with peak memory independent of file size, so this reader splits
decoded chunks with ``str.split`` (C speed) and never holds more than one chunk plus one
segment; everything version-specific is left to the transaction readers.

What it tolerates, each from a sample in ../shared/data (DATA-FORMATS.md §1 table):

- delimiters read from the ISA, never assumed: the element separator is the character after
  ``ISA``; the ISA is read by counting 16 element separators, so an unpadded ISA works; ISA16
  is the component separator; the segment terminator is the character after ISA16. When that
  character is whitespace and the next visible one is punctuation (``\\n~GS|...``), the
  punctuation is the terminator and the newline is layout; otherwise a newline is the
  terminator. ISA11 is the repetition separator only from version 00402 on (ISA12), and only
  when it is punctuation (``U`` is the 4010 standards id, issue 12 of §5);
- a UTF-8 BOM, UTF-16 LE/BE with or without BOM, leading whitespace, CR/LF and indentation
  around segments, empty segments;
- several ISA..IEA per file (each ISA may declare new delimiters), several GS per ISA and ST
  per GS; odd GS08 versions (``5010``, ``999999X999X9``);
- control numbers and counts (IEA01/02, GE01/02, SE01/02) checked and reported as warnings, or
  as rejections when ``strict`` (§1 "make strictness configurable"; issue 25 of §5).

What it refuses (:class:`~chalicelib.imports.errors.ImportRejected` with the segment number
and id): no ISA at the start (there are no delimiters to read: ``x12-837/imsweb__x12_no_isa_line.txt``),
an ISA whose delimiters collide or are letters, segments outside their envelopes, a file that
ends inside an envelope (truncated), segment ids that are not X12 ids.

Amounts: :func:`cents` parses X12 decimal amounts into integer cents on a fast path for plain
decimals and hands anything else to :func:`chalicelib.core.money.parse_cents`, so fractions of
a cent are refused by one rule.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from chalicelib.core.errors import InvalidAmount
from chalicelib.core.money import MAX_DOLLARS, parse_cents
from chalicelib.imports.errors import ImportRejected, Warnings

CHUNK = 1 << 20
MAX_CENTS = int(MAX_DOLLARS) * 100
#: Interchange versions (ISA12) this reader has seen in the wild; others are a warning.
KNOWN_ISA_VERSIONS = frozenset({"00200", "00300", "00400", "00401", "00402", "00403", "00501", "00502",
                                "00503", "00504", "00505", "00600", "00601", "00700", "00801"})
ENVELOPE = frozenset({"ISA", "GS", "ST", "SE", "GE", "IEA", "TA1"})
_TAG = re.compile(r"[A-Z][A-Z0-9]{1,2}")
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

OUTSIDE, IN_ISA, IN_GS, IN_ST = 0, 1, 2, 3
#: Amount texts already parsed (fee schedules repeat): bounded, so memory does not grow with the file.
CENTS_CACHE = 4096
_CENTS: dict[str, int] = {}


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The separators of one interchange: element, component (ISA16), repetition (ISA11 from
    00402 on, else None) and segment terminator (``\\n`` for newline-terminated files)."""

    element: str
    component: str
    repetition: str | None
    segment: str


def cents(text: str, element: str, position: int, segment_id: str) -> int:
    """Parse an X12 amount (``"34"``, ``"34.00"``, ``"-9"``, ``".5"``) into integer cents.

    Raises ImportRejected(position, segment_id, "<element> is not a decimal amount") for an
    empty or non-numeric value, "... has fractions of a cent" for ``"1.005"`` and "... is too
    large" from 10^12 dollars on (DATA-FORMATS.md §2.4 "use decimals, never floats";
    core.money.parse_cents and its MAX_DOLLARS; DynamoDB numbers hold 38 digits).
    """
    cached = _CENTS.get(text)
    if cached is not None:
        return cached
    whole, _, frac = text.partition(".")
    if len(frac) == 2 and whole.isdigit() and frac.isdigit() and text.isascii():  # "123.45": one int()
        value = int(whole + frac)
        if value >= MAX_CENTS:
            raise ImportRejected(position, segment_id, f"{element} is too large")
        if len(_CENTS) < CENTS_CACHE:
            _CENTS[text] = value
        return value
    if text.isascii():
        whole, _, frac = text.partition(".")
        negative = whole[:1] == "-"
        if negative:
            whole = whole[1:]
        if (whole.isdigit() or (not whole and frac)) and (not frac or frac.isdigit()):
            places = len(frac)
            if places == 2:
                value = int(whole or "0") * 100 + int(frac)
            elif places == 0:
                value = int(whole) * 100
            elif places == 1:
                value = int(whole or "0") * 100 + int(frac) * 10
            elif frac[2:].strip("0"):
                raise ImportRejected(position, segment_id, f"{element} has fractions of a cent")
            else:
                value = int(whole or "0") * 100 + int(frac[:2])
            if value >= MAX_CENTS:
                raise ImportRejected(position, segment_id, f"{element} is too large")
            if negative:
                value = -value
            if len(_CENTS) < CENTS_CACHE:
                _CENTS[text] = value
            return value
    if _NUMERIC.fullmatch(text.strip()):
        try:
            return parse_cents(text, field=element)
        except InvalidAmount:
            raise ImportRejected(position, segment_id, f"{element} has fractions of a cent") from None
    raise ImportRejected(position, segment_id, f"{element} is not a decimal amount")


def element(els: list[str], n: int) -> str:
    """Element ``n`` (1-based, as in ``CLP04``) of a split segment, ``""`` when absent."""
    return els[n] if n < len(els) else ""


def decoder_for(head: bytes) -> tuple[str, int]:
    """(codec name, BOM length) from the first bytes: UTF-8 (BOM optional) or UTF-16 LE/BE."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    if len(head) >= 4 and head[1] == 0 and head[3] == 0 and head[0] != 0:
        return "utf-16-le", 0
    if len(head) >= 4 and head[0] == 0 and head[2] == 0 and head[1] != 0:
        return "utf-16-be", 0
    return "utf-8", 0


def read_isa(text: str, position: int) -> tuple[Delimiters, list[str], int]:
    """Read the ISA at the start of ``text``: (delimiters, its 17 elements, its length).

    ``text`` starts with ``ISA``; ``position`` is its segment number. Raises ImportRejected when the ISA has fewer
    than 16 element separators, or its delimiters are letters, digits or collide.
    """
    if len(text) < 4:
        raise ImportRejected(position, "ISA", "the ISA segment is truncated")
    sep = text[3]
    if sep.isalnum() or sep.isspace():
        raise ImportRejected(position, "ISA", "the element separator after ISA is a letter, digit or space")
    at = 3
    for _ in range(15):
        at = text.find(sep, at + 1)
        if at < 0:
            raise ImportRejected(position, "ISA", "the ISA segment has fewer than 16 elements")
    sixteenth = at  # the separator before ISA16
    if sixteenth + 1 >= len(text):
        raise ImportRejected(position, "ISA", "the ISA segment has no ISA16")
    component = text[sixteenth + 1]
    end = sixteenth + 2
    following = text[end] if end < len(text) else ""
    if not following:
        raise ImportRejected(position, "ISA", "the file ends after the ISA segment")
    if following.isspace():
        nxt = end
        while nxt < len(text) and text[nxt].isspace():
            nxt += 1
        visible = text[nxt] if nxt < len(text) else ""
        if visible and not visible.isalnum() and visible != sep:
            terminator, end = visible, nxt + 1
        else:
            terminator, end = "\n", end + 1
    else:
        terminator, end = following, end + 1
    if terminator in "\r\n":
        terminator = "\n"
    elements = text[:sixteenth + 2].split(sep)
    if component.isalnum() or component.isspace() or len({sep, component, terminator}) < 3:
        raise ImportRejected(position, "ISA",
                             "the ISA delimiters (element, ISA16, terminator) are not distinct punctuation")
    version = elements[12].strip()
    repetition = elements[11].strip()
    rep: str | None = None
    if (version >= "00402" and len(repetition) == 1 and not repetition.isalnum()
            and repetition not in (sep, component, terminator)):
        rep = repetition
    return Delimiters(sep, component, rep, terminator), elements, end


class X12Reader:
    """Read the segments of an X12 byte stream as lists of element strings.

    Two ways to read. ``for els in reader`` yields ``["CLP", "A1", "1", ...]`` for every
    segment, envelopes included, checking the envelopes as it goes; ``reader.position`` is the
    1-based number of the segment last yielded (what rejections cite). Or, in hot loops (the
    835 reader), ``reader.batches()`` yields lists of segment texts (one list per chunk read;
    ``reader.base`` segments came before it, so the i-th segment of a batch is number
    ``base + i + 1``); the caller splits them, passes every envelope segment (ISA, GS, ST, SE, GE, IEA,
    TA1) to ``reader.envelope(els, position)``, refuses other segments outside ST..SE, and
    calls ``reader.finish()`` at the end.

    ``reader.delimiters`` are the current interchange's separators, ``reader.version`` the
    current GS08, ``reader.transaction`` the current ST01; counts of interchanges, groups and
    transaction sets are kept. ``on_bytes(chunk)`` sees every raw chunk read (to hash the file
    in the same pass). ``strict``: count and control-number mismatches are rejections instead of
    warnings. Memory: one chunk (``chunk_size`` bytes) plus one batch of segments, whatever the
    file size. Raises ImportRejected as described in the module docstring.
    """

    def __init__(self, stream: BinaryIO, *, warnings: Warnings, strict: bool = False,
                 chunk_size: int = CHUNK, on_bytes: Callable[[bytes], None] | None = None) -> None:
        self._stream = stream
        self._warnings = warnings
        self._strict = strict
        self._chunk_size = chunk_size
        self._on_bytes = on_bytes
        self.position = 0
        self.base = 0
        self.delimiters: Delimiters | None = None
        self.version = ""
        self.functional_id = ""
        self.transaction = ""
        self.interchanges = 0
        self.groups = 0
        self.transactions = 0
        self._state = OUTSIDE
        self._isa13 = self._gs06 = self._st02 = ""
        self._st_at = 0
        self._in_group = self._in_interchange = 0  # ST sets in the open GS, GS groups in the open ISA

    # --- raw text ---------------------------------------------------------------------------

    def _chunks(self) -> Iterator[str]:
        read = self._stream.read
        first = read(max(self._chunk_size, 4))
        if self._on_bytes is not None:
            self._on_bytes(first)
        codec, bom = decoder_for(first[:4])
        decoder = codecs.getincrementaldecoder(codec)(errors="replace")
        yield decoder.decode(first[bom:])
        while True:
            raw = read(self._chunk_size)
            if not raw:
                break
            if self._on_bytes is not None:
                self._on_bytes(raw)
            yield decoder.decode(raw)
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def _start(self) -> tuple[str, Iterator[str]]:
        chunks = self._chunks()
        buf = ""
        for text in chunks:
            buf += text
            if len(buf.lstrip()) >= 200:
                break
        buf = buf.lstrip()
        if not buf:
            raise ImportRejected(0, "", "the file is empty")
        if not buf.startswith("ISA"):
            head = _TAG.match(buf[:3])
            if head and head.group(0) in ("ST", "GS"):
                raise ImportRejected(1, head.group(0), "no ISA interchange header: the delimiters cannot be read")
            raise ImportRejected(1, "", "not an X12 file: it does not start with an ISA segment")
        return buf, chunks

    # --- segments ---------------------------------------------------------------------------

    def batches(self) -> Iterator[list[str]]:
        """Lists of segment texts, one list per chunk read; layout whitespace and empty segments
        are dropped. The caller splits each on ``reader.delimiters.element`` (short-lived lists:
        holding a chunk's worth of split segments costs more in garbage collection than the
        split itself). Envelopes are not checked here (see the class docstring)."""
        pending, chunks = self._start()
        delims = read_isa(pending, 1)[0]
        count = 0
        eof = False
        while True:
            term = delims.segment
            if term == "\n":
                pending = pending.replace("\r", "\n")
                strip = True
            else:  # CR/LF next to another terminator is layout: drop it at C speed, not per segment
                if "\n" in pending or "\r" in pending:
                    pending = (pending.replace(term + "\r\n", term).replace(term + "\n", term)
                               .replace("\r\n" + term, term).replace("\n" + term, term))
                pending = pending.lstrip()  # a segment never starts with whitespace
                strip = ("\n" in pending or "\r" in pending or "\t" in pending or (term + " ") in pending
                         or (" " + term) in pending)
            change = self._next_interchange(pending, delims, eof, count)
            if isinstance(change, str):  # the next ISA is cut by the chunk end: read more first
                text = next(chunks, None)
                if text is None:
                    eof = True
                else:
                    pending += text
                continue
            new: Delimiters | None = None
            if change is not None:
                cut, start, new = change
                head, pending = pending[:cut], pending[start:]
                parts = head.split(term)
            else:
                parts = pending.split(term)
                pending = "" if eof else parts.pop()
            if strip:
                batch = [q for p in parts if (q := p.strip())]
            else:
                batch = [p for p in parts if p] if "" in parts else parts
            if batch:
                self.base = count
                self.delimiters = delims
                count += len(batch)
                yield batch
            if new is not None:
                delims = new
                continue
            if eof:
                break
            text = next(chunks, None)
            if text is None:
                eof = True
                if not pending.strip():
                    break
            else:
                pending += text
        self.base = count

    def _next_interchange(self, pending: str, delims: Delimiters, eof: bool,
                          count: int) -> tuple[int, int, Delimiters] | str | None:
        """Where a later ISA in ``pending`` declares other delimiters: (end of the text before
        it, start of the ISA, its delimiters); ``"more"`` when that ISA is cut by the chunk end;
        else None. ``pending`` may itself start with that ISA (its terminator came before)."""
        term = delims.segment
        layout = " \t\r\n".replace(term, "")
        at = pending.find("ISA")
        while at >= 0:
            before = at - 1
            while before >= 0 and pending[before] in layout:
                before -= 1
            if before < 0 or pending[before] == term:  # at a segment start
                if count == 0 and before < 0:  # the file's first ISA: these are its delimiters
                    at = pending.find("ISA", at + 3)
                    continue
                if not eof and len(pending) - at < 512:
                    return "more"
                new = read_isa(pending[at:], count + pending.count(term, 0, at) + 1)[0]
                if new != delims:
                    return max(before, 0), at, new
            at = pending.find("ISA", at + 3)
        return None

    def envelope(self, els: list[str], position: int) -> None:
        """Check one envelope segment (ISA, GS, ST, SE, GE, IEA, TA1) at ``position``: order,
        control numbers and counts. Raises ImportRejected for segments out of order; count and
        control-number mismatches are warnings (rejections when ``strict``)."""
        tag = els[0]
        state = self._state
        self.position = position
        if tag == "ST":
            if state != IN_GS:
                raise ImportRejected(position, tag, "ST inside an open transaction set (SE missing)"
                                     if state == IN_ST else "ST outside a functional group (GS missing)")
            self._st02, self._st_at, self._state = element(els, 2).strip(), position, IN_ST
            self.transaction = element(els, 1)
        elif tag == "SE":
            if state != IN_ST:
                raise ImportRejected(position, tag, "SE without ST")
            self._trailer(els, position, position - self._st_at + 1, "segments", "transaction set", self._st02,
                          "ST02")
            self._in_group += 1
            self.transactions += 1
            self._state = IN_GS
        elif tag == "ISA":
            if state != OUTSIDE:
                raise ImportRejected(position, tag, "ISA inside an open interchange (IEA missing)")
            version = element(els, 12).strip()
            if version not in KNOWN_ISA_VERSIONS:
                self._warnings.add(f"segment {position} (ISA): ISA12 interchange version {version[:5]!r} is not known")
            self._isa13, self._in_interchange, self._state = element(els, 13).strip(), 0, IN_ISA
        elif tag == "GS":
            if state != IN_ISA:
                raise ImportRejected(position, tag, "GS outside an interchange (ISA missing)"
                                     if state == OUTSIDE else "GS inside an open group (GE missing)")
            self._gs06, self._in_group, self._state = element(els, 6).strip(), 0, IN_GS
            self.version, self.functional_id = element(els, 8).strip(), element(els, 1)
        elif tag == "GE":
            if state != IN_GS:
                raise ImportRejected(position, tag, "GE inside an open transaction set (SE missing)"
                                     if state == IN_ST else "GE without GS")
            self._trailer(els, position, self._in_group, "transaction sets", "group", self._gs06, "GS06")
            self._in_interchange += 1
            self.groups += 1
            self._state = IN_ISA
        elif tag == "IEA":
            if state != IN_ISA:
                raise ImportRejected(position, tag, "IEA without ISA" if state == OUTSIDE
                                     else "IEA inside an open group (GE missing)")
            self._trailer(els, position, self._in_interchange, "groups", "interchange", self._isa13, "ISA13")
            self.interchanges += 1
            self._state = OUTSIDE
        elif state != IN_ISA:  # TA1 acknowledges an interchange, between ISA and GS
            raise ImportRejected(position, tag, "TA1 outside an interchange header")

    def outside(self, els: list[str], position: int) -> None:
        """Refuse a non-envelope segment read outside ST..SE (or one that is no segment id)."""
        tag = els[0]
        if not _TAG.fullmatch(tag):
            raise ImportRejected(position, "", "not an X12 segment id")
        raise ImportRejected(position, tag, "segment outside a transaction set (ST missing)")

    @property
    def inside(self) -> bool:
        """True between ST and SE."""
        return self._state == IN_ST

    def finish(self) -> None:
        """End of file: refuse an empty or truncated file (an envelope left open)."""
        position = self.base
        self.position = position
        if position == 0:
            raise ImportRejected(0, "", "the file holds no segments")
        if self._state != OUTSIDE:
            missing = {IN_ST: "SE", IN_GS: "GE", IN_ISA: "IEA"}[self._state]
            raise ImportRejected(position, "", f"the file is truncated: it ends before the {missing} segment")

    def _trailer(self, els: list[str], position: int, count: int, what: str, envelope: str, control: str,
                 control_name: str) -> None:
        """SE/GE/IEA: element 1 counts what the envelope holds, element 2 repeats its control number."""
        tag = els[0]
        said = element(els, 1).strip()
        if said != str(count):
            said = repr(said[:10]) if said.isdigit() else "no number"  # echo counts only, never other values
            self._mismatch(f"{tag}01 says {said} {what}, the {envelope} has {count}", tag, position)
        if element(els, 2).strip() != control:
            self._mismatch(f"{tag}02 differs from {control_name}", tag, position)

    def _mismatch(self, what: str, segment_id: str, position: int) -> None:
        if self._strict:
            raise ImportRejected(position, segment_id, what)
        self._warnings.add(f"segment {position} ({segment_id}): {what}")

    def __iter__(self) -> Iterator[list[str]]:
        """Every segment in order, envelopes checked (see the class docstring)."""
        position = 0
        envelope = self.envelope
        for batch in self.batches():
            assert self.delimiters is not None
            sep = self.delimiters.element
            for segment in batch:
                els = segment.split(sep)
                position += 1
                self.position = position
                if els[0] in ENVELOPE:
                    envelope(els, position)
                elif self._state != IN_ST:
                    self.outside(els, position)
                yield els
        self.finish()


def tag_ok(tag: str) -> bool:
    """True when ``tag`` looks like an X12 segment id (2-3 upper-case letters and digits)."""
    return _TAG.fullmatch(tag) is not None
