"""Purpose-made bad SFrame sections: one per corruption class.

Each is a small, hand-assembled v3 section (built here with struct, independently of
sfunwind's encoder) with exactly one defect.  sfunwind must either decode it and have
``validate`` report the defect at the byte offset of the offending structure, or refuse it in
``decode`` with an SFrameFormatError that carries such an offset.  Nothing else may escape
from decode, validate, SFrameTable or find (checked for every case, for truncation at every
byte of real sections, and for seeded random byte corruption of real sections).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

import pytest

from sframe_corpus import Fixture, fixtures
from sfunwind.errors import SFrameFormatError
from sfunwind.sframe import SFrameTable, decode, validate

VMA = 0x20000
HDR = 28
IDX = 16  # v3 FDE index entry
ATTR = 5  # v3 FDE attribute record
SORTED, PCREL = 0x1, 0x4
ABI_AARCH64_LE = 2


@dataclass
class Fre:
    start: int
    words: tuple[int, ...] = (0,)
    base_sp: bool = True
    word_size_code: int | None = None  # None: 1-byte words
    count: int | None = None  # None: len(words)


@dataclass
class Fde:
    start: int  # absolute
    size: int
    fres: list[Fre]
    num_fres: int | None = None  # None: len(fres)
    fre_type: int = 0  # ADDR1
    info2: int = 0
    pcmask: bool = False
    rep: int = 0
    fre_off: int | None = None  # None: where its blob lands


@dataclass
class Built:
    data: bytes
    fde_entry: list[int] = field(default_factory=list)  # offset of each FDE index entry
    fde_attr: list[int] = field(default_factory=list)  # offset of each attribute record
    fre_at: list[list[int]] = field(default_factory=list)  # offset of each FRE
    fre_sub: int = 0


def build(fdes: list[Fde], *, magic: int = 0xDEE2, version: int = 3,
          flags: int = SORTED | PCREL, num_fdes: int | None = None, num_fres: int | None = None,
          fre_len_delta: int = 0) -> Built:
    """A v3 section (little-endian AArch64) laid out the way gas/ld lay it out."""
    fre_sub = HDR + IDX * len(fdes)
    blobs = bytearray()
    out = Built(b"", fre_sub=fre_sub)
    offs = []
    for fde in fdes:
        offs.append(len(blobs))
        out.fde_attr.append(fre_sub + len(blobs))
        info = fde.fre_type | (0x10 if fde.pcmask else 0)
        n = len(fde.fres) if fde.num_fres is None else fde.num_fres
        blobs += struct.pack("<HBBB", n, info, fde.info2, fde.rep)
        width = (1, 2, 4)[fde.fre_type] if fde.fre_type < 3 else 1
        at = []
        for fre in fde.fres:
            at.append(fre_sub + len(blobs))
            code = 0 if fre.word_size_code is None else fre.word_size_code
            count = len(fre.words) if fre.count is None else fre.count
            blobs += fre.start.to_bytes(width, "little")
            blobs.append((code << 5) | ((count & 0xF) << 1) | int(fre.base_sp))
            size = (1, 2, 4, 1)[code]
            for w in fre.words:
                blobs += w.to_bytes(size, "little", signed=True)
        out.fre_at.append(at)
    idx = bytearray()
    for i, fde in enumerate(fdes):
        entry = HDR + IDX * i
        out.fde_entry.append(entry)
        fre_off = offs[i] if fde.fre_off is None else fde.fre_off
        idx += struct.pack("<qII", fde.start - (VMA + entry), fde.size, fre_off)
    total_fres = sum(len(f.fres) for f in fdes)
    header = struct.pack("<HBBBbbBIIIII", magic, version, flags, ABI_AARCH64_LE, 0, 0, 0,
                         len(fdes) if num_fdes is None else num_fdes,
                         total_fres if num_fres is None else num_fres,
                         len(blobs) + fre_len_delta, 0, IDX * len(fdes))
    out.data = bytes(header + idx + blobs)
    return out


def good_fdes() -> list[Fde]:
    return [
        Fde(0x1000, 0x40, [Fre(0), Fre(4, (16, -8, -16)), Fre(0x3C)]),
        Fde(0x1040, 0x20, [Fre(0), Fre(8, (32, -24, -32))]),
        Fde(0x1080, 0x10, [Fre(0)]),
    ]


def outcome(data: bytes) -> list[tuple[int | None, str]]:
    """What sfunwind says about ``data``: [(offset, problem code)], ("decode" / "find" for
    errors raised there).  Any exception other than SFrameFormatError propagates (= a bug)."""
    try:
        section = decode(data, section_address=VMA)
    except SFrameFormatError as exc:
        return [(exc.offset, "decode")]
    found = [(p.offset, p.code) for p in validate(section)]
    try:
        table = SFrameTable(section)
    except SFrameFormatError as exc:
        return [*found, (exc.offset, "table")]
    lo = min((f.start for f in section.fdes), default=VMA) - 4
    hi = max((f.start + f.size for f in section.fdes), default=VMA) + 4
    for pc in range(max(lo, 0), min(hi, lo + 0x400)):
        try:
            table.find(pc)
        except SFrameFormatError as exc:
            found.append((exc.offset, "find"))
    return found


def assert_reported(data: bytes, lo: int, hi: int,
                    *more: tuple[int, int]) -> list[tuple[int | None, str]]:
    """Some report names an offset in [lo, hi) (or in one of the ``more`` ranges: a defect
    that is an inconsistency between two fields may be reported at either)."""
    got = outcome(data)
    assert got, "the defect went unnoticed"
    assert all(off is not None for off, _ in got), f"a report without an offset: {got}"
    ranges = [(lo, hi), *more]
    assert any(a <= off < b for off, _ in got for a, b in ranges), \
        f"no report in {[(hex(a), hex(b)) for a, b in ranges]}: {[(hex(o), c) for o, c in got]}"
    return got


def test_builder_makes_a_clean_section() -> None:
    """The base section is valid (so each case below has exactly its own defect)."""
    b = build(good_fdes())
    assert outcome(b.data) == []
    table = SFrameTable(decode(b.data, section_address=VMA))
    assert table.find(0x1004).cfa.offset == 16
    assert table.find(0x1060) is None  # gap


def test_unsorted_fdes() -> None:
    fdes = good_fdes()
    fdes[1].start = 0x1100  # after FDE 2 while SORTED is set
    b = build(fdes)
    assert_reported(b.data, b.fde_entry[1], b.fde_entry[2] + IDX)


def test_overlapping_fdes() -> None:
    fdes = good_fdes()
    fdes[1].start = 0x1030  # FDE 0 covers [0x1000, 0x1040)
    b = build(fdes)
    assert_reported(b.data, b.fde_entry[0], b.fde_entry[1] + IDX)


def test_non_increasing_fre_starts() -> None:
    fdes = good_fdes()
    fdes[0].fres[2].start = 4  # equal to the previous FRE's start
    b = build(fdes)
    assert_reported(b.data, b.fre_at[0][1], b.fre_at[0][2] + 2)
    fdes[0].fres[2].start = 2  # decreasing
    b = build(fdes)
    assert_reported(b.data, b.fre_at[0][1], b.fre_at[0][2] + 2)


def test_fre_start_beyond_function() -> None:
    fdes = good_fdes()
    fdes[2].fres.append(Fre(0x30))  # function is 0x10 bytes
    b = build(fdes)
    assert_reported(b.data, b.fre_at[2][1], b.fre_at[2][1] + 3)


def test_fre_offset_outside_section() -> None:
    fdes = good_fdes()
    fdes[2].fre_off = 0x200
    b = build(fdes)
    assert_reported(b.data, b.fde_entry[2], b.fde_entry[2] + IDX)


def test_header_fre_count_inconsistent() -> None:
    b = build(good_fdes(), num_fres=7)  # the FDEs hold 6
    assert_reported(b.data, 0x0C, 0x10)


def test_header_fde_count_too_large() -> None:
    """num_fdes disagrees with freoff (the FDE index would run into the FREs)."""
    b = build(good_fdes(), num_fdes=4)
    assert_reported(b.data, 0x08, 0x0C, (0x18, 0x1C))
    b = build(good_fdes(), num_fdes=0x10000000)
    assert_reported(b.data, 0x08, 0x0C, (0x18, 0x1C))


def test_attribute_fre_count_inconsistent() -> None:
    fdes = good_fdes()
    fdes[1].num_fres = 5  # only 2 FREs follow before FDE 2's record
    b = build(fdes)
    assert_reported(b.data, b.fde_attr[1], b.fde_attr[2] + ATTR + 3)


def test_fre_len_too_short() -> None:
    """The last FDE's FREs run past the FRE sub-section: blame fre_len, or that FDE."""
    b = build(good_fdes(), fre_len_delta=-4)
    assert_reported(b.data, 0x10, 0x14, (b.fde_entry[2], b.fde_entry[2] + IDX),
                    (b.fde_attr[2], len(b.data)))


def test_bad_word_size() -> None:
    fdes = good_fdes()
    fdes[0].fres[1].word_size_code = 3  # 3 is not a size
    b = build(fdes)
    assert_reported(b.data, b.fre_at[0][1], b.fre_at[0][1] + 2)


def test_word_count_above_six() -> None:
    fdes = good_fdes()
    fdes[1].fres[1] = Fre(8, (32, -24, -32, 0, 0, 0, 0))  # 7 words (libsframe's max is 6)
    b = build(fdes)
    assert_reported(b.data, b.fre_at[1][1], b.fre_at[1][1] + 2)


def test_bad_fde_type() -> None:
    fdes = good_fdes()
    fdes[1].info2 = 7
    b = build(fdes)
    # the FDE (its index entry) or, more precisely, the attribute record holding info2
    assert_reported(b.data, b.fde_attr[1], b.fde_attr[1] + ATTR,
                    (b.fde_entry[1], b.fde_entry[1] + IDX))


def test_bad_fre_address_type() -> None:
    fdes = good_fdes()
    fdes[1].fre_type = 3
    b = build(fdes)
    assert_reported(b.data, b.fde_entry[1], b.fde_attr[1] + ATTR)


def test_pcmask_without_rep_size() -> None:
    fdes = good_fdes()
    fdes[2].pcmask = True  # rep_size stays 0
    b = build(fdes)
    assert_reported(b.data, b.fde_entry[2], b.fde_attr[2] + ATTR)


@pytest.mark.parametrize("magic", [0xDEE3, 0xDEE1, 0x0000])  # (0xE2DE is big-endian 0xDEE2)
def test_bad_magic(magic: int) -> None:
    b = build(good_fdes(), magic=magic)
    assert_reported(b.data, 0, 2)


@pytest.mark.parametrize("version", [0, 4, 0xFF])
def test_bad_version(version: int) -> None:
    b = build(good_fdes(), version=version)
    assert_reported(b.data, 2, 3)


@pytest.mark.parametrize("flags", [SORTED | PCREL | 0x2, SORTED | PCREL | 0x8, 0x80])
def test_bad_flags(flags: int) -> None:
    """0x2 (FRAME_POINTER) exists only in v1/v2; 0x8 and up are undefined."""
    b = build(good_fdes(), flags=flags)
    assert_reported(b.data, 3, 4)


def _real_sections() -> list:
    wanted = {(3, "mini-a64-pac"), (3, "pie-x64"), (2, "mini-x64"), (1, "mini-a64")}
    return [pytest.param(f, id=f.id) for f in fixtures()
            if (f.sframe_version, f.name) in wanted]


@pytest.mark.parametrize("fx", _real_sections())
def test_truncated_at_every_byte(fx: Fixture) -> None:
    raw, vma = fx.section()
    assert decode(raw, section_address=vma)  # the whole section is fine
    for n in range(len(raw)):
        with pytest.raises(SFrameFormatError) as info:
            decode(raw[:n], section_address=vma)
        assert info.value.offset is not None and 0 <= info.value.offset <= max(n, 0x1B), \
            (n, info.value)


@pytest.mark.parametrize("fx", _real_sections())
def test_random_corruption_only_raises_format_errors(fx: Fixture) -> None:
    """Seeded byte flips of real sections: decode/validate/find either work or raise
    SFrameFormatError with an offset; nothing else, no hang."""
    raw, vma = fx.section()
    rng = random.Random(f"sframe-corruption-{fx.id}")
    for _ in range(300):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            section = decode(bytes(data), section_address=vma)
        except SFrameFormatError as exc:
            assert exc.offset is not None
            continue
        validate(section)
        try:
            table = SFrameTable(section)
        except SFrameFormatError as exc:
            assert exc.offset is not None
            continue
        for f in section.fdes[:64]:
            for pc in (f.start - 1, f.start, f.start + f.size // 2, f.start + f.size):
                try:
                    table.find(pc & (2**64 - 1))
                except SFrameFormatError as exc:
                    assert exc.offset is not None
