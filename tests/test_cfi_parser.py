"""The CFI reader: real sections (vmlinux .debug_frame, host .eh_frame + .eh_frame_hdr),
synthetic records for every augmentation / encoding / DWARF format, and bad input."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from sfunwind.cfi import AARCH64, X86_64, load_elf_cfi, parse_frame_section, unwind_rows
from sfunwind.cfi.dump import dump_frames
from sfunwind.cfi.ops import K_ADVANCE, K_DEF_CFA, K_NEGATE_RA_STATE, K_OFFSET, decode_program
from sfunwind.cfi.parser import read_sleb, read_uleb
from sfunwind.cfi.rows import evaluate_fde
from sfunwind.errors import CFIFormatError, ElfFormatError
from sfunwind.rules import CfaKind, RuleKind

VMLINUX_XZ = Path(__file__).parent / "data/linux-7.2.13-cloud-arm64/vmlinux.debug.xz"
HOST_BINARIES = [Path(p) for p in ("/bin/true", "/usr/bin/env", "/bin/ls")]


@pytest.fixture(scope="module")
def vmlinux_debug(tmp_path_factory) -> Path:
    from sfunwind.cfi import _materialize

    return _materialize(VMLINUX_XZ, tmp_path_factory.mktemp("vmlinux"))


# ---------------------------------------------------------------------------------------
# A small independent CFI writer for synthetic sections.

def uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def sleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        done = (v == 0 and not b & 0x40) or (v == -1 and b & 0x40)
        out.append(b | (0 if done else 0x80))
        if done:
            return bytes(out)


def record(body: bytes, e: str = "<", dwarf64: bool = False) -> bytes:
    if dwarf64:
        return struct.pack(e + "IQ", 0xFFFFFFFF, len(body)) + body
    return struct.pack(e + "I", len(body)) + body


def test_leb128_roundtrip():
    for v in (0, 1, 63, 64, 127, 128, 300, 2**32, 2**63 - 1):
        assert read_uleb(uleb(v), 0, 20) == (v, len(uleb(v)))
    for v in (0, 1, -1, 63, -64, -65, 64, 1000, -1000, -(2**40)):
        assert read_sleb(sleb(v), 0, 20) == (v, len(sleb(v)))


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("dwarf64", [False, True])
@pytest.mark.parametrize("version", [1, 3, 4])
def test_debug_frame_versions_formats_and_byte_orders(big, dwarf64, version):
    e = ">" if big else "<"
    cie_id = struct.pack(e + ("Q" if dwarf64 else "I"), 2**64 - 1 if dwarf64 else 0xFFFFFFFF)
    ra = bytes([30]) if version == 1 else uleb(30)
    extra = bytes([8, 0]) if version == 4 else b""
    initial = bytes([0x0C]) + uleb(31) + uleb(0)  # def_cfa sp, 0
    cie = record(cie_id + bytes([version]) + b"\0" + extra + uleb(4) + sleb(-8) + ra + initial,
                 e, dwarf64)
    prog = bytes([0x2D, 0x41, 0x0E]) + uleb(16) + bytes([0x9D, 2, 0x9E, 1])
    fde_cie = struct.pack(e + ("Q" if dwarf64 else "I"), 0)
    fde = record(fde_cie + struct.pack(e + "QQ", 0xFFFF800080001000, 0x40) + prog, e, dwarf64)
    fs = parse_frame_section(cie + fde, eh_frame=False, big_endian=big)
    assert len(fs) == 1 and list(fs.cies) == [0]
    c = fs.cies[0]
    assert (c.version, c.code_align, c.data_align, c.ra_register) == (version, 4, -8, 30)
    assert c.is_64bit == dwarf64
    f = fs.fde(0)
    assert (f.pc_begin, f.pc_range) == (0xFFFF800080001000, 0x40)
    arch = AARCH64
    rows = unwind_rows(fs, 0, arch)
    assert [r.start - f.pc_begin for r in rows] == [0, 4]
    assert rows[0].ra_signed and rows[1].ra_signed
    assert rows[1].cfa.kind is CfaKind.SP_OFFSET and rows[1].cfa.offset == 16
    assert rows[1].fp.kind is RuleKind.CFA_OFFSET_DEREF and rows[1].fp.offset == -16
    assert rows[1].ra.offset == -8


def test_eh_frame_augmentations_and_encodings():
    """zPLRSB with pcrel|sdata4 FDE pointers, an indirect personality and an LSDA."""
    base = 0x400000
    mem = {0x600000: struct.pack("<Q", 0xDEADBEEF000)}

    def read_memory(addr, size):
        return mem[addr][:size]

    def build():
        out = bytearray()
        # CIE at 0: "zPLRSB"
        aug_data = bytes([0x9B])  # personality: indirect|pcrel|sdata4
        cie_body_head = struct.pack("<I", 0) + bytes([1]) + b"zPLRSB\0" + uleb(4) + sleb(-8) \
            + bytes([30])
        pers_field_off = 4 + len(cie_body_head) + 1 + 1  # length, head, aug len, enc byte
        pers = 0x600000 - (base + pers_field_off)
        aug_data += struct.pack("<i", pers) + bytes([0x1B]) + bytes([0x1B])  # L, R: pcrel sdata4
        body = cie_body_head + uleb(len(aug_data)) + aug_data + bytes([0x0C, 31, 0])
        body += b"\0" * (-(len(body) + 4) % 8)
        out += record(body)
        # FDE
        fde_off = len(out)
        cie_ptr = fde_off + 4  # back to offset 0
        pc_field = fde_off + 8
        pc = 0x401000 - (base + pc_field)
        lsda_field = pc_field + 8 + 1
        lsda = 0x500000 - (base + lsda_field)
        body = struct.pack("<Iii", cie_ptr, pc, 0x20) + uleb(4) + struct.pack("<i", lsda) \
            + bytes([0x2D, 0x41, 0x0E, 16])
        body += b"\0" * (-(len(body) + 4) % 8)
        out += record(body)
        out += b"\0\0\0\0"  # terminator
        return bytes(out)

    fs = parse_frame_section(build(), eh_frame=True, address=base, read_memory=read_memory)
    c = fs.cies[0]
    assert c.augmentation == "zPLRSB"
    assert c.signal_frame and c.pauth_b_key
    assert c.personality == 0xDEADBEEF000 and not c.personality_indirect
    f = fs.fde(0)
    assert (f.pc_begin, f.pc_range, f.lsda) == (0x401000, 0x20, 0x500000)
    rows = unwind_rows(fs, 0, AARCH64)
    assert rows[-1].signal and rows[-1].pauth_key.value == "B" and rows[-1].ra_signed


def test_datarel_pointer_needs_and_uses_a_base():
    cie = record(struct.pack("<I", 0) + bytes([1]) + b"zR\0" + uleb(1) + sleb(-8) + bytes([16])
                 + uleb(1) + bytes([0x33]) + bytes([0x0C, 7, 8, 0x90, 1]))
    fde = record(struct.pack("<III", len(cie) + 4, 0x100, 0x10) + uleb(0))
    data = cie + fde
    with pytest.raises(CFIFormatError, match="datarel"):
        parse_frame_section(data, eh_frame=True, address=0x1000)
    fs = parse_frame_section(data, eh_frame=True, address=0x1000, datarel_base=0x2000)
    assert fs.fde(0).pc_begin == 0x2100


def test_vmlinux_debug_frame(vmlinux_debug):
    elf = load_elf_cfi(vmlinux_debug)
    fs = elf.frames()
    assert fs.name == ".debug_frame"
    assert len(fs) == 57921
    assert len(fs.cies) == 2619
    # First FDE as readelf shows it: 00000010 ... FDE cie=00000000 pc=ffff800080029008..5c
    f = fs.fde(0)
    assert (f.offset, f.cie.offset, f.pc_begin, f.pc_end) == (
        0x10, 0, 0xFFFF800080029008, 0xFFFF80008002905C)
    ops = decode_program(fs.data, f.instructions_start, f.instructions_end, 4, -8)
    kinds = [o[0] for o in ops]
    assert kinds[:4] == [K_ADVANCE, K_NEGATE_RA_STATE, K_ADVANCE, 4]  # def_cfa_offset
    assert K_DEF_CFA not in kinds and K_OFFSET in kinds


def test_hrtimer_interrupt_rows_from_cfi(vmlinux_debug):
    """paciasp at +8 (after 2 patchable-entry NOPs), stp x29, x30 at +12: rows at 0, 12, 16."""
    elf = load_elf_cfi(vmlinux_debug)
    fs = elf.frames()
    pc = 0xFFFF8000802111C8  # hrtimer_interrupt (symbol table)
    i = next(i for i in range(len(fs)) if fs.fde_pc_begin[i] == pc)
    assert fs.fde_pc_range[i] == 816
    rows = unwind_rows(fs, i, AARCH64)
    assert [r.start - pc for r in rows[:3]] == [0, 12, 16]
    r0, r12, r16 = rows[:3]
    assert r0.cfa.offset == 0 and r0.ra.kind is RuleKind.RETAIN and not r0.ra_signed
    assert r12.cfa.offset == 0 and r12.ra.kind is RuleKind.RETAIN and r12.ra_signed
    assert (r16.cfa.kind, r16.cfa.offset) == (CfaKind.SP_OFFSET, 112)
    assert (r16.fp.offset, r16.ra.offset, r16.ra_signed) == (-112, -104, True)


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf not installed")
def test_dump_matches_readelf_frames_interp_on_vmlinux(vmlinux_debug):
    """Our dump without the RA-signing column is readelf's frames-interp text, line for line."""
    elf = load_elf_cfi(vmlinux_debug)
    ours = [ln.rstrip() for ln in dump_frames(elf.frames(), elf.arch)]
    ours = [re.sub(r" +(ras|[-sb])$", "", ln) for ln in ours]
    ref = subprocess.run(["readelf", "--debug-dump=frames-interp", str(vmlinux_debug)],
                         capture_output=True, text=True, check=True).stdout
    ref_lines = [ln.rstrip() for ln in ref.splitlines()]
    assert len(ours) == len(ref_lines)
    mismatches = [(a, b) for a, b in zip(ours, ref_lines, strict=True) if a != b]
    assert mismatches == []


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf not installed")
@pytest.mark.parametrize("binary", [b for b in HOST_BINARIES if b.exists()],
                         ids=lambda p: p.name)
def test_host_eh_frame_and_hdr(binary):
    """A linked x86-64 binary: .eh_frame_hdr's table points at exactly our FDEs, and the
    dump equals readelf's."""
    elf = load_elf_cfi(binary)
    assert elf.arch is X86_64 and ".eh_frame_hdr" in elf.raw, \
        f"{binary}: the host's binaries are x86-64 with .eh_frame_hdr"
    fs = elf.frames(".eh_frame")
    hdr = elf.eh_frame_hdr()
    assert hdr.eh_frame_ptr == elf.addresses[".eh_frame"]
    assert hdr.fde_count == len(fs) == len(hdr.table)
    by_addr = {fs.address + fs.fde_offsets[i]: fs.fde_pc_begin[i] for i in range(len(fs))}
    assert {fde: loc for loc, fde in hdr.table} == by_addr
    some = fs.fde_pc_begin[len(fs) // 2] + 1
    assert hdr.lookup(some) == fs.address + fs.fde_offsets[len(fs) // 2]
    ours = [ln.rstrip() for ln in dump_frames(fs, elf.arch)]
    ref = subprocess.run(["readelf", "--debug-dump=frames-interp", str(binary)],
                         capture_output=True, text=True, check=True).stdout
    assert ours == [ln.rstrip() for ln in ref.splitlines()]


# ---------------------------------------------------------------------------------------
# Bad input.

def _kernel_head(vmlinux_debug):
    """The first records of the kernel's .debug_frame, cut at a record boundary."""
    data = load_elf_cfi(vmlinux_debug).raw[".debug_frame"]
    return data[:0x138]  # the CIE at 0 and the FDEs at 0x10 ... 0x120 (readelf)


def test_truncated_section_names_offset(vmlinux_debug):
    data = _kernel_head(vmlinux_debug)
    # cut inside the FDE at 0x58 (length 0x2c): the record runs past the end
    with pytest.raises(CFIFormatError) as ei:
        parse_frame_section(data[:0x60], eh_frame=False, path="vmlinux")
    assert ei.value.offset == 0x58
    assert "vmlinux" in str(ei.value) and ".debug_frame" in str(ei.value)


def test_bad_cie_pointer_and_version(vmlinux_debug):
    data = bytearray(_kernel_head(vmlinux_debug))
    bad = bytearray(data)
    struct.pack_into("<I", bad, 0x14, 0x8)  # FDE at 0x10 names CIE at 8 (not a CIE)
    with pytest.raises(CFIFormatError, match="not a CIE") as ei:
        parse_frame_section(bytes(bad), eh_frame=False)
    assert ei.value.offset == 0x10
    bad = bytearray(data)
    bad[8] = 9  # CIE version
    with pytest.raises(CFIFormatError, match="version 9") as ei:
        parse_frame_section(bytes(bad), eh_frame=False)
    assert ei.value.offset == 0


def test_bad_instruction_names_offset(vmlinux_debug):
    data = bytearray(_kernel_head(vmlinux_debug))
    fs = parse_frame_section(bytes(data), eh_frame=False)
    start = fs.fde_ins_start[0]
    data[start] = 0x3F  # not a DW_CFA opcode
    fs = parse_frame_section(bytes(data), eh_frame=False)
    with pytest.raises(CFIFormatError, match="unknown call frame instruction") as ei:
        evaluate_fde(fs, 0, AARCH64)
    assert ei.value.offset == start
    data[start] = 0x0C  # def_cfa whose operands run off the end of the record
    data[start + 1:fs.fde_ins_end[0]] = b"\xff" * (fs.fde_ins_end[0] - start - 1)
    fs = parse_frame_section(bytes(data), eh_frame=False)
    with pytest.raises(CFIFormatError, match="runs past"):
        evaluate_fde(fs, 0, AARCH64)


def test_restore_state_without_remember():
    cie = record(struct.pack("<I", 0xFFFFFFFF) + bytes([1]) + b"\0" + uleb(4) + sleb(-8)
                 + bytes([30, 0x0C, 31, 0]))
    fde = record(struct.pack("<IQQ", 0, 0x1000, 8) + bytes([0x41, 0x0B]))
    fs = parse_frame_section(cie + fde, eh_frame=False)
    with pytest.raises(CFIFormatError, match="without DW_CFA_remember_state"):
        evaluate_fde(fs, 0, AARCH64)


def test_expression_rules_map_to_the_shared_model(tmp_path):
    """x86-64 DRAP (hand-written .cfi_escape): CFA = *(rbp-8) -> REG_OFFSET_DEREF; an
    expression the model cannot hold -> UNREPRESENTABLE; val_offset; register."""
    import tarfile

    with tarfile.open(Path(__file__).parent / "data/cfi/corpus.tar.xz") as tar:
        blob = tar.extractfile("x86_64/O2/own-asm_cfi_x86.o").read()  # type: ignore[union-attr]
    obj = tmp_path / "x.o"
    obj.write_bytes(blob)
    elf = load_elf_cfi(obj)
    fs = elf.frames()
    drap = unwind_rows(fs, 0, X86_64)  # first function: drap
    kinds = [r.cfa.kind for r in drap]
    assert CfaKind.REG_OFFSET in kinds  # CFA = r10 + 0 (DRAP register)
    deref = [r for r in drap if r.cfa.kind is CfaKind.REG_OFFSET_DEREF]
    assert deref and (deref[0].cfa.regnum, deref[0].cfa.offset) == (6, -8)
    assert deref[0].fp.kind is RuleKind.REG_OFFSET_DEREF and deref[0].fp.regnum == 6
    rip_in_reg = unwind_rows(fs, 1, X86_64)
    assert any(r.ra.kind is RuleKind.REG_OFFSET and r.ra.regnum == 2 for r in rip_in_reg)
    # aarch64 .cfi_escape DW_CFA_def_cfa_expression (DW_OP_breg31 16; DW_OP_deref)
    with tarfile.open(Path(__file__).parent / "data/cfi/corpus.tar.xz") as tar:
        blob = tar.extractfile("aarch64/O2/own-asm_cfi.o").read()  # type: ignore[union-attr]
    obj.write_bytes(blob)
    fs = load_elf_cfi(obj).frames()
    escape = unwind_rows(fs, 3, AARCH64)  # escape_expr: .cfi_escape 0x0f,3,0x8f,0x10,0x06
    assert any(r.cfa.kind is CfaKind.REG_OFFSET_DEREF and r.cfa.regnum == 31 for r in escape)
    outer = unwind_rows(fs, 6, AARCH64)  # outermost: .cfi_undefined 30
    assert all(r.outermost for r in outer)


def test_complex_expressions_are_unrepresentable():
    cie = record(struct.pack("<I", 0xFFFFFFFF) + bytes([1]) + b"\0" + uleb(4) + sleb(-8)
                 + bytes([30, 0x0C, 31, 0]))
    # def_cfa_expression (DW_OP_lit0); expression x29 (DW_OP_breg31 8; DW_OP_lit1; DW_OP_plus);
    # val_expression x30 (DW_OP_breg31 0)
    prog = bytes([0x41, 0x0F, 1, 0x30, 0x10, 29, 4, 0x8F, 8, 0x31, 0x22, 0x16, 30, 2, 0x8F, 0])
    fde = record(struct.pack("<IQQ", 0, 0x1000, 8) + prog)
    fs = parse_frame_section(cie + fde, eh_frame=False)
    last = unwind_rows(fs, 0, AARCH64)[-1]
    assert last.cfa.kind is CfaKind.UNREPRESENTABLE
    assert last.fp.kind is RuleKind.UNREPRESENTABLE
    assert last.ra.kind is RuleKind.UNREPRESENTABLE
    # and gas's rules refuse such a function
    from sfunwind.cfi.to_sframe import convert_frame_section

    assert convert_frame_section(fs, AARCH64).refusals[0].reason == ".cfi_escape with op (0xf)"


def test_compressed_debug_frame(vmlinux_debug, tmp_path):
    """SHF_COMPRESSED .debug_frame, zlib and zstd (objcopy --compress-debug-sections=...);
    corrupt, truncated and lying headers are typed errors naming the section."""
    import zlib

    import zstandard

    from sfunwind.cfi.elfwrite import add_section

    plain = load_elf_cfi(vmlinux_debug).raw[".debug_frame"]

    def with_section(name: str, ch_type: int, size: int, payload: bytes) -> Path:
        out = tmp_path / f"vmlinux.{name}"
        add_section(vmlinux_debug, out, struct.pack("<IIQQ", ch_type, 0, size, 8) + payload,
                    0, name=".debug_frame", sh_type=1, flags=0x800)
        return out

    zl = zlib.compress(plain)
    zs = zstandard.ZstdCompressor(level=3).compress(plain)
    for name, ch_type, payload in (("zlib", 1, zl), ("zstd", 2, zs)):
        assert load_elf_cfi(with_section(name, ch_type, len(plain), payload)) \
            .raw[".debug_frame"] == plain
        for bad, size, data, needle in (
                ("trunc", len(plain), payload[: len(payload) // 2], "decompressed to|corrupt"),
                ("garbage", len(plain), bytes(64), "corrupt"),
                ("short", len(plain) - 1, payload, r"decompressed to \d+\+ bytes"),
                ("huge", 1 << 40, payload, "claims")):
            with pytest.raises(ElfFormatError, match=needle) as err:
                load_elf_cfi(with_section(f"{name}-{bad}", ch_type, size, data))
            assert ".debug_frame" in str(err.value)
    with pytest.raises(ElfFormatError, match="unknown compression type 7"):
        load_elf_cfi(with_section("type7", 7, len(plain), zl))


def test_objcopy_zstd_compressed_debug_frame(sid, vmlinux_debug):
    """A real zstd-compressed .debug_frame from the sid toolchain's objcopy."""
    work = sid.scratch()
    try:
        src = work / "vmlinux"
        src.write_bytes(vmlinux_debug.read_bytes())
        sid.run(f"aarch64-linux-gnu-objcopy --compress-debug-sections=zstd "
                f"{sid.inside(src)} {sid.inside(work / 'vmlinux.zst')}")
        plain = load_elf_cfi(vmlinux_debug)
        packed = load_elf_cfi(work / "vmlinux.zst")
        assert packed.raw[".debug_frame"] == plain.raw[".debug_frame"]
        assert len(packed.frames(".debug_frame")) == len(plain.frames(".debug_frame")) > 1000
    finally:
        sid.cleanup(work)


@pytest.mark.parametrize("binary", [b for b in HOST_BINARIES[:1] if b.exists()],
                         ids=lambda p: p.name)
def test_eh_frame_found_through_pt_gnu_eh_frame_without_section_headers(binary, tmp_path):
    raw = bytearray(binary.read_bytes())
    struct.pack_into("<Q", raw, 0x28, 0)  # e_shoff
    struct.pack_into("<HHH", raw, 0x3A, 64, 0, 0)  # e_shentsize, e_shnum, e_shstrndx
    stripped = tmp_path / "stripped"
    stripped.write_bytes(bytes(raw))
    full = load_elf_cfi(binary).frames(".eh_frame")
    got = load_elf_cfi(stripped).frames(".eh_frame")
    assert got.fde_pc_begin == full.fde_pc_begin and got.fde_pc_range == full.fde_pc_range
    assert len(got) > 10


def test_cli_cfi_dump_pc(vmlinux_debug, capsys):
    from sfunwind.cli.main import main as cli_main

    assert cli_main(["cfi", "dump", str(vmlinux_debug), "--pc", "0xffff8000802111d8"]) == 0
    out = capsys.readouterr().out.splitlines()
    fde = [ln for ln in out if " FDE " in ln]
    assert fde == ["0006f600 000000000000004c 0006edb8 FDE cie=0006edb8 "
                   "pc=ffff8000802111c8..ffff8000802114f8"]
    rows = [ln.split() for ln in out if ln.startswith("ffff8000802111")]
    # LOC, CFA, x19..x28, x29, ra, ras: unsigned at entry, signed after paciasp (+12)
    assert [(r[0][-3:], r[1], r[-3], r[-2], r[-1]) for r in rows[:3]] == [
        ("1c8", "sp+0", "u", "u", "-"), ("1d4", "sp+0", "u", "u", "s"),
        ("1d8", "sp+112", "c-112", "c-104", "s")]
    assert cli_main(["cfi", "dump", str(vmlinux_debug), "--section", ".eh_frame"]) == 3
