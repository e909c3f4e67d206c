"""Unit tests of the SFrame codec on hand-built sections, the binutils vectors and the corpus.

Hand-built sections check each format feature in isolation (every FDE/FRE kind, both byte
orders, every ABI); the simple-frame-rs vectors (real gas/ld output with the real objdump
text, binutils 2.40/2.46) and the real-toolchain corpus (tests/data/sframe) check byte
exactness.
"""

from __future__ import annotations

import json
import lzma
import struct
from pathlib import Path

import numpy as np
import pytest

from sfunwind.cli.main import main as cli_main
from sfunwind.elf import ElfFile
from sfunwind.errors import SFrameFormatError, UsageError
from sfunwind.rules import CfaKind, PAuthKey, RuleKind
from sfunwind.sframe import (
    ABI,
    BaseReg,
    EncodeError,
    FDEKind,
    FDEType,
    SFrameFDE,
    SFrameFRE,
    SFrameSection,
    SFrameTable,
    decode,
    dump_json,
    dump_text,
    encode,
    flex_control,
    load,
    validate,
)

DATA = Path(__file__).parent / "data"
VECTORS = sorted((DATA / "sframe-vectors").glob("*.json"))
CORPUS = DATA / "sframe"


def fre(start: int, *words: int, sp: bool = True, mangled: bool = False) -> SFrameFRE:
    return SFrameFRE(start=start, base_reg=BaseReg.SP if sp else BaseReg.FP, words=list(words),
                     mangled_ra=mangled)


def corpus_files() -> list[Path]:
    if not (CORPUS / "manifest.json").exists():
        return []
    man = json.loads((CORPUS / "manifest.json").read_text())
    return [CORPUS / f["toolchain"] / f["file"] for f in man["fixtures"]]


def materialise(path: Path, tmp_path: Path) -> Path:
    if path.suffix == ".xz":
        out = tmp_path / path.stem
        out.write_bytes(lzma.decompress(path.read_bytes()))
        return out
    return path


def raw_section(path: Path) -> tuple[bytes, int]:
    with ElfFile.open(path) as elf:
        sec = elf.section(".sframe")
        assert sec is not None
        return sec.data(), sec.address


# ---------------------------------------------------------------------------------------------
# Byte-exact vectors (jiegec/simple-frame-rs, binutils gas testsuite programs)


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_vector_dump_and_round_trip(path: Path) -> None:
    v = json.loads(path.read_text())
    data = bytes(v["content"])
    gt = v["groundtruth"]
    first = gt.split("\n")[1]
    filename, _, bfd = first.partition(":     file format ")
    compat = "2.40" if path.stem.endswith("-2.40") else \
        "2.44" if path.stem.endswith("-2.44") else "2.47"
    section = decode(data, section_address=v["section_base"])
    assert dump_text(section, compat=compat, filename=filename, file_format=bfd) == gt
    assert encode(section) == data
    assert validate(section) == []


# ---------------------------------------------------------------------------------------------
# The real-toolchain corpus: round trip of every section, table constructors agree


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_round_trip_and_tables(path: Path, tmp_path: Path) -> None:
    f = materialise(path, tmp_path)
    raw, addr = raw_section(f)
    section = decode(raw, section_address=addr)
    assert encode(section, keep_trailing=True) == raw
    raw = raw[:len(raw) - len(section.trailing)]
    assert not any(section.trailing) and len(section.trailing) < 8  # alignment padding only
    assert encode(section) == raw
    if section.relocatable or path.name.endswith(".o"):
        return
    # Re-building the linked section from its FDEs (FRE blobs in their recorded order, the
    # index sorted, widths chosen by the encoder) gives ld's bytes: gas's width choice.
    fdes = sorted(section.fdes, key=lambda fd: fd.fre_offset)
    rebuilt_fdes = [SFrameFDE(start=fd.start, size=fd.size, fde_type=fd.fde_type, kind=fd.kind,
                              rep_size=fd.rep_size, pauth_key=fd.pauth_key, signal=fd.signal,
                              fres=[SFrameFRE(start=x.start, base_reg=x.base_reg,
                                              words=list(x.words), mangled_ra=x.mangled_ra)
                                    for x in fd.fres])
                    for fd in fdes]
    widths = {fd.fre_address_width for fd in section.fdes}
    if section.version >= 2 and not any(fd.is_pcmask for fd in section.fdes):
        built = SFrameSection.build(section.abi, rebuilt_fdes, version=section.version,
                                    section_address=addr, pcrel=section.header.pcrel)
        assert encode(built) == raw, f"widths {widths}"
    # Both table constructors give the same answers for every byte of every function.
    t1 = SFrameTable(section)
    t2 = SFrameTable.from_bytes(raw, section_address=addr)
    lo = min(fd.start for fd in section.fdes) - 4
    hi = max(fd.end for fd in section.fdes) + 4
    pcs = np.arange(lo, hi, dtype=np.uint64)
    r1, r2 = t1.find_many(pcs), t2.find_many(pcs)
    for name in ("found", "fde", "fre", "cfa_kind", "cfa_offset", "ra_kind", "ra_offset",
                 "fp_kind", "fp_offset", "ra_signed", "outermost", "start", "end"):
        assert np.array_equal(getattr(r1, name)[r1.found], getattr(r2, name)[r2.found]), name
    assert np.array_equal(r1.found, r2.found)
    # find() agrees with find_many() PC by PC.
    for k in range(0, len(pcs), 7):
        row = t1.find(int(pcs[k]))
        assert (row is not None) == bool(r1.found[k])
        if row is not None:
            assert row.start == int(r1.start[k]) and row.end == int(r1.end[k])
            assert row.cfa.offset == int(r1.cfa_offset[k]) or row.outermost


def test_gas_object_rebuilt_like_gas(tmp_path: Path) -> None:
    """A .o rebuilt with build(sort=False) from its rows equals gas's bytes (V3)."""
    path = CORPUS / "v3-binutils-2.47" / "mini-a64.o"
    assert path.exists(), "corpus fixture missing (tools/build_sframe_corpus.py)"
    raw, addr = raw_section(path)
    section = decode(raw, section_address=addr)
    fdes = [SFrameFDE(start=fd.start, size=fd.size, pauth_key=fd.pauth_key, signal=fd.signal,
                      fres=[SFrameFRE(x.start, x.base_reg, list(x.words),
                                      mangled_ra=x.mangled_ra) for x in fd.fres])
            for fd in section.fdes]
    built = SFrameSection.build(ABI.AARCH64_LE, fdes, sort=False)
    assert encode(built) == raw


# ---------------------------------------------------------------------------------------------
# Hand-built sections: layout details


def test_v3_x86_worked_example() -> None:
    """sframe-format.md §9.3: cfi-sframe-x86_64-1 linked by 2.46 at 0x402000."""
    fd = SFrameFDE(start=0x401000, size=25, fres=[fre(0, 8), fre(1, 16, -16), fre(4, 16, -16, sp=False),
                                                  fre(0x18, 8, -16)])
    s = SFrameSection.build(ABI.AMD64_LE, [fd], section_address=0x402000)
    data = encode(s)
    assert data.hex() == (
        "e2de0305" "0300f800" "01000000" "04000000" "14000000" "00000000" "10000000"
        "e4efffffffffffff" "19000000" "00000000"
        "0400" "00" "00" "00" "000308" "010510f0" "040410f0" "180508f0")
    back = decode(data, section_address=0x402000)
    assert back.fdes[0].start == 0x401000
    text = dump_text(back, filename="x")
    assert "    CFA fixed RA offset: -8\n" in text
    assert "    0000000000401004  fp+16     c-16      f            \n" in text
    # The same function in V2 (2.45) is 63 bytes with a 20-byte FDE.
    v2 = encode(s, version=2)
    assert len(v2) == 63 and v2[:4] == bytes.fromhex("e2de0205")
    assert v2[28:48].hex() == "e4efffff190000000000000004000000" "00000000"
    assert decode(v2, section_address=0x402000).fdes[0].start == 0x401000
    # V1 (2.40): section-relative start, 17-byte FDE.
    v1 = decode(encode(s, version=1), section_address=0x402000)
    assert v1.version == 1 and v1.fdes[0].start == 0x401000
    assert [f.words for f in v1.fdes[0].fres] == [[8], [16, -16], [16, -16], [8, -16]]


def test_word_and_address_widths_chosen_like_gas() -> None:
    small = SFrameFDE(start=0x1000, size=0xFF, fres=[fre(0, 0), fre(4, 16, -8, -16)])
    mid = SFrameFDE(start=0x2000, size=0x100, fres=[fre(0, 0), fre(0x80, 300, -8, -16)])
    big = SFrameFDE(start=0x20000, size=0x10000, fres=[fre(0, 0), fre(0xFFFF, 70016, -70008, -128)])
    s = SFrameSection.build(ABI.AARCH64_LE, [small, mid, big])
    back = decode(encode(s))
    widths = [f.fre_address_width for f in back.fdes]
    assert widths == [1, 2, 4]
    assert [x.word_size for x in back.fdes[0].fres] == [1, 1]
    assert [x.word_size for x in back.fdes[1].fres] == [1, 2]
    assert [x.word_size for x in back.fdes[2].fres] == [1, 4]
    assert back.fdes[2].fres[1].words == [70016, -70008, -128]
    # -128 and 127 fit one byte, 128 does not.
    edge = SFrameSection.build(ABI.AARCH64_LE, [SFrameFDE(0, 8, fres=[fre(0, 127, -128), fre(4, 128)])])
    e = decode(encode(edge))
    assert [x.word_size for x in e.fdes[0].fres] == [1, 2]


def test_fre_blobs_keep_input_order_while_index_is_sorted() -> None:
    a = SFrameFDE(start=0x3000, size=8, fres=[fre(0, 16)])
    b = SFrameFDE(start=0x1000, size=8, fres=[fre(0, 32), fre(4, 48)])
    s = SFrameSection.build(ABI.AARCH64_LE, [a, b])
    data = encode(s)
    back = decode(data)
    assert [f.start for f in back.fdes] == [0x1000, 0x3000]
    assert [f.fre_offset for f in back.fdes] == [5 + 3, 0]  # a's blob first (input order)
    assert encode(back) == data
    # Editing a decoded section re-packs the blobs in their recorded order.
    back.fdes[1].fres.append(fre(4, 64))
    again = decode(encode(back))
    assert again.fdes[1].fre_offset == 0
    assert [x.words for x in again.fdes[1].fres] == [[16], [64]]
    assert validate(again) == []


def test_big_endian_aarch64_and_s390x() -> None:
    fd = SFrameFDE(start=0x400000, size=16, pauth_key=1,
                   fres=[fre(0, 0), fre(4, 16, -8, -16, mangled=True)])
    s = SFrameSection.build(ABI.AARCH64_BE, [fd], section_address=0x500000)
    data = encode(s)
    assert data[:2] == b"\xde\xe2" and data[4] == 1
    back = decode(data, section_address=0x500000)
    assert back.big_endian and back.fdes[0].start == 0x400000
    assert back.fdes[0].fres[1].words == [16, -8, -16]
    text = dump_text(back, filename="be")
    assert "file format elf64-bigaarch64" in text and ", pauth = B key" in text
    assert "  sp+16     c-16      c-8[s]       " in text
    row = SFrameTable(back).find(0x400005)
    assert row is not None and row.ra_signed and row.pauth_key is PAuthKey.B
    assert row.ra.kind is RuleKind.CFA_OFFSET_DEREF and row.ra.offset == -8

    # s390x: CFA words stored as (cfa - 160) / 8; RA 0 = padding (FP saved, RA not).
    sfd = SFrameFDE(start=0x1000, size=64, fres=[fre(0, 0), fre(6, 20, 0, -72), fre(20, 20, -48, -72)])
    s2 = SFrameSection.build(ABI.S390X_BE, [sfd], section_address=0x2000)
    b2 = decode(encode(s2), section_address=0x2000)
    text = dump_text(b2, filename="s")
    assert "file format elf64-s390" in text
    assert "  sp+160    u         u            " in text
    assert "  sp+320    c-72      U            " in text
    assert "  sp+320    c-72      c-48         " in text
    t = SFrameTable(b2)
    r = t.find(0x1006)
    assert r is not None and r.cfa.offset == 320 and r.ra.kind is RuleKind.RETAIN
    assert r.fp.kind is RuleKind.CFA_OFFSET_DEREF and r.fp.offset == -72
    # V2 s390x: an odd RA/FP word is a DWARF register number (reg << 1 | 1).
    s3 = SFrameSection.build(ABI.S390X_BE, [SFrameFDE(0x1000, 8, fres=[fre(0, 0, (16 << 1) | 1)])],
                             version=2)
    b3 = decode(encode(s3))
    assert "  sp+160    u         r16          " in dump_text(b3, filename="s")
    r3 = SFrameTable(b3).find(0x1000)
    assert r3 is not None and r3.ra.kind is RuleKind.REG_OFFSET and r3.ra.regnum == 16


def test_flex_fde_cells_and_rules() -> None:
    """Example C of sframe-format.md §11.6 (gas esc-expr-1, DRAP)."""
    sp, r10, fp = 7, 10, 6
    fd = SFrameFDE(start=0x401000, size=95, kind=FDEKind.FLEX, fres=[
        fre(0, flex_control(sp, False), 8),
        fre(9, flex_control(r10, False), 0),
        fre(0x18, flex_control(r10, False), 0, 0, flex_control(fp, True), 0),
        fre(0x1A, flex_control(fp, True), -8, 0, flex_control(fp, True), 0),
    ])
    s = SFrameSection.build(ABI.AMD64_LE, [fd])
    data = encode(s)
    back = decode(data)
    assert back.fdes[0].fres[3].words == [0x33, -8, 0, 0x33, 0]
    assert data[-7:] == bytes.fromhex("1a0a33f8003300")
    text = dump_text(back, filename="f")
    assert 'size = 95 bytes, attr = "F"' in text
    for line in ("0000000000401000  sp+8      u         f            ",
                 "0000000000401009  r10+0     u         f            ",
                 "0000000000401018  r10+0     (fp+0)    U            ",
                 "000000000040101a  (fp-8)    (fp+0)    U            "):
        assert f"    {line}\n" in text
    t = SFrameTable(back)
    r = t.find(0x40101B)
    assert r is not None
    assert r.cfa.kind is CfaKind.REG_OFFSET_DEREF and r.cfa.regnum == fp and r.cfa.offset == -8
    assert r.ra.kind is RuleKind.CFA_OFFSET_DEREF and r.ra.offset == -8  # fixed RA (padding)
    assert r.fp.kind is RuleKind.REG_OFFSET_DEREF and r.fp.regnum == fp
    r = t.find(0x401009)
    assert r is not None and r.cfa.kind is CfaKind.REG_OFFSET and r.cfa.regnum == r10
    # RA held in a register (x86 .cfi_register rip, rcx): control 0x11, offset 0.
    reg_ra = SFrameSection.build(ABI.AMD64_LE, [SFrameFDE(0x10, 4, kind=FDEKind.FLEX, fres=[
        fre(0, flex_control(sp, False), 8, flex_control(2, False), 0)])])
    rr = SFrameTable(decode(encode(reg_ra))).find(0x10)
    assert rr is not None and rr.ra.kind is RuleKind.REG_OFFSET and rr.ra.regnum == 2
    # A control word needing more than one unsigned byte widens the words.
    wide = SFrameSection.build(ABI.AMD64_LE, [SFrameFDE(0, 4, kind=FDEKind.FLEX, fres=[
        fre(0, flex_control(40, True), 8)])])
    assert decode(encode(wide)).fdes[0].fres[0].word_size == 2
    with pytest.raises(EncodeError):
        encode(s, version=2)


def test_signal_outermost_and_pcmask_dump_and_lookup() -> None:
    plt = SFrameFDE(start=0x1020, size=64, fde_type=FDEType.PCMASK, rep_size=16,
                    fres=[fre(0, 8), fre(11, 16)])
    start = SFrameFDE(start=0x1100, size=12, fres=[SFrameFRE(0)])
    sig = SFrameFDE(start=0x1110, size=8, signal=True)
    s = SFrameSection.build(ABI.AMD64_LE, [plt, start, sig], section_address=0x3000)
    back = decode(encode(s), section_address=0x3000)
    assert back.fdes[1].fres[0].is_outermost and back.fdes[1].fres[0].info == 0
    text = dump_text(back, filename="p")
    assert "    STARTPC[m]      CFA       FP        RA           \n" in text
    assert "    000000000000000b  sp+16     u         f            \n" in text
    assert "    0000000000001100  RA undefined\n" in text
    assert 'func idx [2]: pc = 0x1110, size = 8 bytes, attr = "S"\n' in text
    t = SFrameTable(back)
    # PCMASK: offset modulo rep_size; row range is inside the repeated block.
    r = t.find(0x1020 + 16 * 2 + 12)
    assert r is not None and r.cfa.offset == 16 and (r.start, r.end) == (0x1020 + 32 + 11, 0x1040 + 16)
    r = t.find(0x1020 + 16 * 3 + 3)
    assert r is not None and r.cfa.offset == 8
    o = t.find(0x1105)
    assert o is not None and o.outermost and o.ra.kind is RuleKind.UNDEFINED
    assert t.find(0x1112) is None  # signal FDE without FREs: libsframe finds nothing
    assert t.find_fde(0x1112) == 2
    assert t.find(0x1060) is None and t.find(0x10FF) is None  # gap
    res = t.find_many(np.array([0x1020 + 44, 0x1105, 0x1112, 0x1060], dtype=np.uint64))
    assert res.found.tolist() == [True, True, False, False]
    assert res.outermost.tolist()[:2] == [False, True]
    j = dump_json(back)
    assert j["fdes"][0]["type"] == "PCMASK" and j["fdes"][2]["signal"] is True
    assert j["fdes"][1]["fres"][0]["outermost"] is True


def test_aarch64_rules_and_fre_semantics() -> None:
    fd = SFrameFDE(start=0x4000, size=0x40, fres=[
        fre(0, 0), fre(4, 0, mangled=True), fre(8, 32, -24, -32, mangled=True),
        fre(0x10, 32, -24, -32, sp=False, mangled=True), fre(0x3C, 0)])
    t = SFrameTable(SFrameSection.build(ABI.AARCH64_LE, [fd]))
    r = t.find(0x4000)
    assert r is not None and r.ra.kind is RuleKind.RETAIN and r.fp.kind is RuleKind.RETAIN
    assert r.cfa.kind is CfaKind.SP_OFFSET and not r.ra_signed and (r.start, r.end) == (0x4000, 0x4004)
    r = t.find(0x4009)
    assert r is not None and r.ra_signed and r.ra.kind is RuleKind.CFA_OFFSET_DEREF
    assert (r.ra.offset, r.fp.offset) == (-24, -32)
    r = t.find(0x4020)
    assert r is not None and r.cfa.kind is CfaKind.FP_OFFSET and r.cfa.offset == 32
    r = t.find(0x403F)
    assert r is not None and (r.start, r.end) == (0x403C, 0x4040)
    assert t.find(0x4040) is None


def test_irregular_fre_order_uses_libsframe_walk() -> None:
    # FRE starts 0, 8, 4: libsframe walks in order: FRE0 covers [0, 7], FRE1 [8, 3] is empty,
    # FRE2 covers [4, 15] but is reached only for offsets >= 8 (FRE0 answers 4..7 first).
    fd = SFrameFDE(start=0x100, size=16, fres=[fre(0, 8), fre(8, 16), fre(4, 24)])
    s = decode(encode(SFrameSection.build(ABI.AMD64_LE, [fd])))
    t = SFrameTable(s)
    assert [c.code for c in validate(s)] == ["fre-order"]
    answers = [t.find(0x100 + k) for k in range(16)]
    cfas = [a.cfa.offset if a else None for a in answers]
    assert cfas == [8] * 8 + [24] * 8
    many = t.find_many(np.arange(0x100, 0x110, dtype=np.uint64))
    assert many.found.tolist() == [a is not None for a in answers]


def test_dump_compat_formats() -> None:
    fd = SFrameFDE(start=0x401000, size=8, fres=[fre(0, 8), fre(1, 16, -16)])
    s = SFrameSection.build(ABI.AMD64_LE, [fd], version=2, section_address=0x402000,
                            pcrel=False)
    back = decode(encode(s), section_address=0x402000)
    t44 = dump_text(back, compat="2.44", filename="a")
    t47 = dump_text(back, compat="2.47", filename="a")
    assert t44 == t47  # no PCREL, V2: both formats agree
    assert "    Flags: SFRAME_F_FDE_SORTED\n" in t44
    both = decode(encode(SFrameSection.build(ABI.AMD64_LE, [fd], version=2)))
    t47 = dump_text(both, filename="a")
    assert "    Flags: SFRAME_F_FDE_SORTED,\n           SFRAME_F_FDE_FUNC_START_PCREL\n" in t47
    # 2.44 does not know PCREL: prints only SORTED and the start without the field offset.
    t44 = dump_text(both, compat="2.44", filename="a")
    assert "    Flags: SFRAME_F_FDE_SORTED\n" in t44
    assert "pc = 0x401000" in t47 and "pc = 0x400fe4" in t44
    none = decode(encode(SFrameSection.build(ABI.AARCH64_LE, [fd], version=2, sort=False,
                                             pcrel=False)))
    assert "    Flags: NONE\n" in dump_text(none, filename="a")
    # 2.40: V1 only, fixed RA shown as u, no CFA-fixed lines.
    v1 = decode(encode(s, version=1), section_address=0x402000)
    t40 = dump_text(v1, compat="2.40", filename="a")
    assert "CFA fixed" not in t40 and "  sp+16     c-16      u            \n" in t40
    assert dump_text(v1, compat="2.44", filename="a").endswith(
        "    Num FREs: 2\n\n No further information can be displayed.  SFrame version not "
        "supported\n")
    with pytest.raises(UsageError):
        dump_text(both, compat="2.40")
    v3 = decode(encode(s, version=3))
    with pytest.raises(UsageError):
        dump_text(v3, compat="2.44")
    # Fixed FP offset in the header (never written by GNU tools, but legal).
    fixed = SFrameSection.build(ABI.AARCH64_LE, [SFrameFDE(0x10, 4, fres=[fre(0, 16)])],
                                cfa_fixed_fp_offset=-16)
    t = dump_text(decode(encode(fixed)), file_header=False)
    assert t.startswith("Contents of the SFrame section .sframe:\n  Header :")
    assert "    CFA fixed FP offset: -16\n" in t and "  sp+16     c-16      u            " in t


# ---------------------------------------------------------------------------------------------
# Errors and validation


def _one_fde_v3() -> bytes:
    return encode(SFrameSection.build(ABI.AARCH64_LE, [SFrameFDE(0x1000, 16, fres=[
        fre(0, 0), fre(4, 16, -8, -16)])]))


@pytest.mark.parametrize("mutate,where", [
    (lambda d: d[:10], 0),
    (lambda d: b"", 0),
    (lambda d: b"\x00\x00" + d[2:], 0),
    (lambda d: d[:2] + b"\x07" + d[3:], 2),
    (lambda d: d[:4] + b"\x09" + d[5:], 4),
    (lambda d: d[:4] + b"\x01" + d[5:], 4),  # big-endian ABI in a little-endian section
    (lambda d: d[:8] + struct.pack("<I", 1000) + d[12:], 8),
    (lambda d: d[:16] + struct.pack("<I", 1000) + d[20:], 16),
    (lambda d: d[:-3], None),
    (lambda d: d[:-4] + bytes([0x67]) + d[-3:], None),  # word size code 3
])
def test_decode_errors_are_typed_with_offsets(mutate, where) -> None:  # type: ignore[no-untyped-def]
    bad = mutate(_one_fde_v3())
    with pytest.raises(SFrameFormatError) as exc:
        decode(bad, path="x.sframe")
    assert exc.value.offset is not None
    if where is not None:
        assert exc.value.offset == where
    assert "x.sframe" in str(exc.value)
    with pytest.raises(SFrameFormatError):
        SFrameTable.from_bytes(bad)


def _codes(section: SFrameSection, **kw: bool) -> list[str]:
    return sorted({p.code for p in validate(section, **kw)})


def test_validate_catches_each_corruption_class() -> None:
    good = decode(_one_fde_v3())
    assert validate(good) == [] and validate(good, kernel=True) == []

    def v3(fdes: list[SFrameFDE], **kw) -> SFrameSection:  # type: ignore[no-untyped-def]
        return decode(encode(SFrameSection.build(ABI.AARCH64_LE, fdes, **kw)))

    # unsorted index with the SORTED flag
    s = v3([SFrameFDE(0x2000, 8, fres=[fre(0, 0)]), SFrameFDE(0x1000, 8, fres=[fre(0, 0)])],
           sort=False)
    s.header.flags |= 1
    assert _codes(s) == ["fde-unsorted"]
    # overlap
    assert _codes(v3([SFrameFDE(0x1000, 16, fres=[fre(0, 0)]),
                      SFrameFDE(0x1008, 16, fres=[fre(0, 0)])])) == ["fde-overlap"]
    # duplicate start (kernel), FRE order, FRE start beyond function, word counts, FLEX CFA
    dup = v3([SFrameFDE(0x1000, 0, fres=[fre(0, 0)]), SFrameFDE(0x1000, 8, fres=[fre(0, 0)])])
    assert "fde-duplicate" in _codes(dup, kernel=True)
    assert _codes(v3([SFrameFDE(0x1000, 16, fres=[fre(0, 0), fre(0, 16)])])) == ["fre-order"]
    assert _codes(v3([SFrameFDE(0x1000, 8, fres=[fre(0, 0), fre(9, 16)])])) == ["fre-start"]
    assert _codes(v3([SFrameFDE(0x1000, 8, fres=[fre(0, 1, 2, 3, 4)])])) == ["fre-word-count"]
    x86 = decode(encode(SFrameSection.build(ABI.AMD64_LE, [SFrameFDE(0, 8, fres=[fre(0, 8, -16, -24)])])))
    assert _codes(x86) == ["fre-word-count"]
    seven = SFrameSection.build(ABI.AARCH64_LE, [SFrameFDE(0, 8, fres=[fre(0, *range(7))])])
    assert "fre-word-count" in _codes(decode(encode(seven)))
    flex = SFrameSection.build(ABI.AMD64_LE, [SFrameFDE(0, 8, kind=FDEKind.FLEX, fres=[
        fre(0, 0x02, 8), fre(2, flex_control(7, False), 8, 0x11)])])
    assert _codes(decode(encode(flex))) == ["flex-cfa", "fre-word-count"]
    # PCMASK rep 0 and FRE starts beyond rep_size
    pm = v3([SFrameFDE(0, 32, fde_type=FDEType.PCMASK, rep_size=0, fres=[fre(0, 8)]),
             SFrameFDE(32, 32, fde_type=FDEType.PCMASK, rep_size=8, fres=[fre(0, 8), fre(9, 16)])])
    assert _codes(pm) == ["rep-size"]
    # header counts / lengths
    raw = bytearray(_one_fde_v3())
    raw[12] = 7  # num_fres
    assert _codes(decode(bytes(raw))) == ["num-fres"]
    raw = bytearray(_one_fde_v3())
    raw[16] += 4  # fre_len beyond the data the FDEs use
    raw += b"\0" * 4
    assert _codes(decode(bytes(raw))) == ["fre-len"]
    # two FDEs whose FRE data overlap
    raw = bytearray(encode(SFrameSection.build(ABI.AARCH64_LE, [
        SFrameFDE(0x1000, 8, fres=[fre(0, 0), fre(4, 16)]), SFrameFDE(0x2000, 8, fres=[fre(0, 0)])])))
    struct.pack_into("<I", raw, 28 + 16 + 12, 3)
    assert "fre-overlap" in _codes(decode(bytes(raw)))
    # flags and the kernel's header requirements
    v2 = decode(encode(SFrameSection.build(ABI.AARCH64_LE, [SFrameFDE(0, 8, fres=[fre(0, 0)])],
                                           version=2, sort=False, pcrel=False)))
    v2.header.flags |= 0x8
    assert _codes(v2, kernel=True) == ["flags", "pcrel", "sorted", "version"]
    texty = v3([SFrameFDE(0x1000, 8, fres=[fre(0, 0)]), SFrameFDE(0x9000, 8, fres=[fre(0, 0)])])
    assert validate(texty, text_ranges=[(0x1000, 0x2000), (0x9000, 0x9008)]) == []
    assert [p.code for p in validate(texty, text_ranges=[(0x1000, 0x2000)])] == ["fde-text"]
    empty = decode(encode(SFrameSection.build(ABI.AARCH64_LE, [])))
    assert _codes(empty, kernel=True) == ["num-fdes", "num-fres"]
    for p in validate(v2, kernel=True):
        assert p.offset is not None and str(p).startswith(f"{p.offset:#x}: {p.code}: ")


def test_malformed_row_raises_typed_error_on_lookup() -> None:
    bad = SFrameSection.build(ABI.AMD64_LE, [SFrameFDE(0x10, 8, kind=FDEKind.FLEX, fres=[
        fre(0, 0x02, 8)])])
    t = SFrameTable(decode(encode(bad)))
    with pytest.raises(SFrameFormatError):
        t.find(0x10)
    r = t.find_many(np.array([0x10], dtype=np.uint64))
    assert not r.found[0] and r.invalid[0]


# ---------------------------------------------------------------------------------------------
# load(): sections, PT_GNU_SFRAME, .o relocations, raw dumps; the CLI


def _fixture(name: str, tc: str = "v3-binutils-2.47") -> Path:
    p = CORPUS / tc / name
    assert p.exists(), f"corpus fixture {tc}/{name} missing (tools/build_sframe_corpus.py)"
    return p


def test_load_from_segment_when_section_headers_are_stripped(tmp_path: Path) -> None:
    path = _fixture("pie-x64")
    data = bytearray(path.read_bytes())
    with ElfFile.open(path) as elf:
        sec = elf.section(".sframe")
        seg = elf.segment(0x6474E554)
        assert seg is not None
        assert sec is not None
        # binutils 2.47 quirk: the segment is larger than the section
        assert seg.filesz >= sec.size
    struct.pack_into("<QHHH", data, 0x28, 0, 0, 0, 0)  # e_shoff, ..., e_shnum
    struct.pack_into("<HH", data, 0x3C, 0, 0)  # e_shnum, e_shstrndx
    stripped = tmp_path / "stripped"
    stripped.write_bytes(bytes(data))
    a = load(path)
    b = load(stripped)
    assert encode(a) == encode(b) and b.section_address == a.section_address
    assert dump_text(a, filename="x") == dump_text(b, filename="x")


def test_load_raw_dump_and_empty_section(tmp_path: Path) -> None:
    path = _fixture("mini-a64")
    raw, addr = raw_section(path)
    dump = tmp_path / "sframe.bin"
    dump.write_bytes(raw)
    assert dump_text(load(dump, section_address=addr), filename="f") == \
        dump_text(load(path), filename="f")
    # A zero-size .sframe (ld --discard-sframe): a clear error naming the cause.
    data = bytearray(path.read_bytes())
    with ElfFile.open(path) as elf:
        sec = elf.section(".sframe")
        shoff = elf.elf["e_shoff"]
        shentsize = elf.elf["e_shentsize"]
        assert sec is not None
    struct.pack_into("<Q", data, shoff + sec.index * shentsize + 0x20, 0)  # sh_size = 0
    empty = tmp_path / "empty"
    empty.write_bytes(bytes(data))
    with pytest.raises(SFrameFormatError, match="empty"):
        load(empty)
    assert cli_main(["sframe", "dump", str(empty)]) == 3


def test_object_relocations_give_section_offsets() -> None:
    path = _fixture("mini-x64.o")
    s = load(path)
    assert s.relocatable
    with ElfFile.open(path) as elf:
        funcs = {sym.value for sym in elf.symbols() if sym.type == "STT_FUNC"}
    assert {fd.start for fd in s.fdes} <= funcs | {0}
    assert validate(s) == []


def test_cli_dump_validate_find(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _fixture("mini-a64-pac")
    expected = (path.parent / "mini-a64-pac.objdump-2.47.txt").read_text()
    assert cli_main(["sframe", "dump", str(path)]) == 0
    out = capsys.readouterr().out
    assert out == expected.replace("mini-a64-pac:", f"{path}:", 1)
    assert cli_main(["sframe", "dump", "--json", str(path)]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["version"] == 3 and j["num_fdes"] == len(load(path).fdes)
    assert cli_main(["sframe", "validate", str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    s = load(path)
    pc = s.fdes[2].start + 4
    assert cli_main(["sframe", "find", str(path), hex(pc), "0x10"]) == 1
    out = capsys.readouterr().out
    assert f"{pc:#x}: [" in out and "0x10: not found" in out
    bad = tmp_path / "bad.sframe"
    raw = bytearray(encode(s))
    struct.pack_into("<I", raw, 12, 999)
    bad.write_bytes(bytes(raw))
    assert cli_main(["sframe", "validate", "--section-address", hex(s.section_address), str(bad)]) == 1
    assert "num-fres" in capsys.readouterr().out
    bad.write_bytes(b"\xe2\xde\x03")
    assert cli_main(["sframe", "dump", str(bad)]) == 3
    assert "offset 0x0" in capsys.readouterr().err


def test_find_many_random_order_equals_find() -> None:
    """Large unsorted PC arrays take the sort-and-scatter path: answers stay in input order."""
    fdes = [SFrameFDE(0x10000 + 0x100 * k, 0xC0, fres=[fre(0, 0), fre(4, 16 * (k % 5 + 1), -8, -16),
                                                       fre(0xB8, 0)])
            for k in range(200)]
    fdes.append(SFrameFDE(0x30000, 0x40, fde_type=FDEType.PCMASK, rep_size=16,
                          fres=[fre(0, 8), fre(6, 16)]))
    t = SFrameTable(decode(encode(SFrameSection.build(ABI.AARCH64_LE, fdes))))
    rng = np.random.default_rng(5)
    pcs = rng.integers(0xFF00, 0x30050, 20_000).astype(np.uint64)
    res = t.find_many(pcs)
    for k in range(0, len(pcs), 11):
        row = t.find(int(pcs[k]))
        assert (row is not None) == bool(res.found[k])
        if row is not None:
            assert (row.start, row.end, row.cfa.offset) == \
                (int(res.start[k]), int(res.end[k]), int(res.cfa_offset[k]))
            assert t.row(int(res.row[k]), int(pcs[k])) == row


def test_hostile_shared_fre_data_is_refused_quickly() -> None:
    """Thousands of FDEs pointing at one long FRE list: bounded work, a typed error."""
    fres = [fre(k, 8) for k in range(0, 3000)]
    one = SFrameSection.build(ABI.AMD64_LE, [SFrameFDE(0x1000, 4000, fres=fres)], version=2)
    data = bytearray(encode(one))
    # Re-point: 4000 FDEs (copies of FDE 0) all sharing the single FRE list.
    fde0 = bytes(data[28:48])
    n = 4000
    out = bytearray(data[:28]) + fde0 * n + data[48:]
    struct.pack_into("<I", out, 8, n)
    struct.pack_into("<I", out, 24, 20 * n)
    with pytest.raises(SFrameFormatError, match="declare"):
        decode(bytes(out))
    with pytest.raises(SFrameFormatError, match="declare"):
        SFrameTable.from_bytes(bytes(out))


def test_one_fde_with_a_very_long_fre_list() -> None:
    """A V2 FDE may hold millions of FREs; both table builders stay linear and agree."""
    n = 100_000
    fd = SFrameFDE(0x100000, 4 * n, fres=[fre(4 * k, 16 + (k % 4) * 16) for k in range(n)])
    short = SFrameFDE(0x10, 8, fres=[fre(0, 8)])
    data = encode(SFrameSection.build(ABI.AMD64_LE, [short, fd], version=2))
    t = SFrameTable.from_bytes(data)
    assert t.num_fres == n + 1
    pcs = np.array([0x100000 + 4 * k + 2 for k in range(0, n, 997)], dtype=np.uint64)
    res = t.find_many(pcs)
    assert res.found.all()
    assert res.cfa_offset.tolist() == [16 + (k % 4) * 16 for k in range(0, n, 997)]
    t2 = SFrameTable(decode(data))
    assert np.array_equal(t2.find_many(pcs).cfa_offset, res.cfa_offset)


@pytest.mark.parametrize("tc,name,flags,txt", [
    ("v2-binutils-2.44", "mini-x64", ["--objdump-compat", "2.44"], "mini-x64.objdump-2.44.txt"),
    ("v1-binutils-2.40", "mini-a64", ["--objdump-compat", "2.40"], "mini-a64.objdump-2.40.txt"),
    ("v3-binutils-2.47", "mini-a64.o", ["--generic-objdump"], "mini-a64.o.objdump-2.47-generic.txt"),
    ("v3-binutils-2.47", "mini-x64.o", [], "mini-x64.o.objdump-2.47.txt"),
])
def test_cli_dump_compat_modes(tc: str, name: str, flags: list[str], txt: str,
                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = _fixture(name, tc)
    expected = (path.parent / txt).read_text()
    monkeypatch.chdir(path.parent)  # objdump ran in the fixture's directory
    assert cli_main(["sframe", "dump", *flags, name]) == 0
    assert capsys.readouterr().out == expected


def test_tables_of_an_unsorted_section_agree() -> None:
    """gas output is not sorted: both table builders sort it the same way."""
    fdes = [SFrameFDE(0x3000 - 0x100 * k, 0x80, fres=[fre(0, 0), fre(4 + k, 16 * (k + 1), -8, -16)])
            for k in range(12)]
    s = decode(encode(SFrameSection.build(ABI.AARCH64_LE, fdes, sort=False)))
    assert [f.start for f in s.fdes] == [0x3000 - 0x100 * k for k in range(12)]
    t1, t2 = SFrameTable(s), SFrameTable.from_bytes(encode(s))
    pcs = np.arange(0x2000, 0x3100, dtype=np.uint64)
    r1, r2 = t1.find_many(pcs), t2.find_many(pcs)
    assert np.array_equal(r1.found, r2.found) and r1.found.sum() == 12 * 0x80
    assert np.array_equal(r1.cfa_offset, r2.cfa_offset) and np.array_equal(r1.start, r2.start)
    assert t1.fde_order.tolist() == list(range(11, -1, -1))
    row = t1.find(0x3000 - 0x100 * 5 + 9)
    assert row is not None and row.cfa.offset == 16 * 6 and row.start == 0x3000 - 0x500 + 9


def test_table_from_file_equals_table_of_loaded_section(tmp_path: Path) -> None:
    for tc, name in (("v3-binutils-2.47", "pie-x64"), ("v2-binutils-2.44", "mini-a64"),
                     ("v3-binutils-2.47", "mini-x64.o")):
        path = _fixture(name, tc)
        t1 = SFrameTable(load(path))
        t2 = SFrameTable.from_file(str(path))
        assert np.array_equal(t1.fde_start, t2.fde_start)
        assert np.array_equal(t1.fre_cfa_offset, t2.fre_cfa_offset)
        assert np.array_equal(t1.fre_abs_end, t2.fre_abs_end)
    bad = tmp_path / "bad"
    data = bytearray(_fixture("mini-a64").read_bytes())
    with ElfFile.open(_fixture("mini-a64")) as elf:
        sec = elf.section(".sframe")
        assert sec is not None
    data[sec.offset + 2] = 9  # version 9
    bad.write_bytes(bytes(data))
    with pytest.raises(SFrameFormatError) as exc:
        SFrameTable.from_file(str(bad))
    assert exc.value.offset == sec.offset + 2 and "section offset 0x2" in str(exc.value)
    with pytest.raises(SFrameFormatError) as exc2:
        load(bad)
    assert exc2.value.offset == sec.offset + 2


def test_edits_of_decoded_fres_are_encoded() -> None:
    """Changing a decoded FRE's fields changes the bytes (the kept info byte is not reused)."""
    s = decode(_one_fde_v3())
    f = s.fdes[0].fres[1]
    f.mangled_ra = True
    f.base_reg = BaseReg.FP
    back = decode(encode(s))
    g = back.fdes[0].fres[1]
    assert g.mangled_ra and g.base_reg == BaseReg.FP and g.words == [16, -8, -16]
    f.words = [16, -8]
    assert decode(encode(s)).fdes[0].fres[1].words == [16, -8]
    # Values that outgrow the recorded widths widen them (as gas would have chosen).
    f.words = [70016, -70008]
    f.start = 0x1234
    s.fdes[0].size = 0x2000
    again = decode(encode(s))
    g = again.fdes[0]
    assert g.fre_address_width == 2 and g.fres[1].start == 0x1234
    assert g.fres[1].word_size == 4 and g.fres[1].words == [70016, -70008]
    assert validate(again) == []
    s.fdes[0].fres.append(fre(0x1F00, 16))
    assert "    Num FREs: 3\n" in dump_text(s, filename="x")
