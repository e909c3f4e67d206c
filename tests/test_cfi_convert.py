"""CFI -> SFrame v3 exactly as GNU as 2.47 does it.

* Corpus (tests/data/cfi/corpus.tar.xz, built by tools/build_cfi_corpus.py with the sid
  toolchain): for every object, the conversion of its ``.eh_frame`` is BYTE-IDENTICAL to
  gas's ``.sframe`` (both relocated against the same section layout), and the FDEs we
  refuse are exactly those gas warned about, with gas's text, in order.
* A linked executable (sid toolchain): ld sorts the FDE index, so there the comparison is
  ROW BY ROW for every PC.
* The whole arm64 vmlinux ``.debug_frame``; the fast translation path equals the reference
  state machine on every distinct program in it.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from sfunwind.cfi import AARCH64, X86_64, load_elf_cfi, unwind_rows
from sfunwind.cfi import to_sframe as T
from sfunwind.cfi.check import check_frames
from sfunwind.cfi.cli import default_sframe_address
from sfunwind.cfi.ops import decode_program
from sfunwind.cfi.to_sframe import convert_frame_section, encode_fre, translate_program
from sfunwind.cli.main import main as cli_main
from sfunwind.sframe import SFrameTable, decode, load

DATA = Path(__file__).parent / "data"
CORPUS = DATA / "cfi" / "corpus.tar.xz"
VMLINUX_XZ = DATA / "linux-7.2.13-cloud-arm64" / "vmlinux.debug.xz"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cfi-corpus")
    with tarfile.open(CORPUS) as tar:
        tar.extractall(out, filter="data")
    return out, json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def vmlinux_debug(tmp_path_factory) -> Path:
    from sfunwind.cfi import _materialize

    return _materialize(VMLINUX_XZ, tmp_path_factory.mktemp("vmlinux"))


def test_corpus_is_what_the_issue_asks_for(corpus):
    _, manifest = corpus
    objs = manifest["objects"]
    sources = {o["source"] for o in objs.values()}
    c_sources = {s for s in sources if s.endswith(".c")}
    assert len(c_sources) >= 20
    assert {s.split(":")[0] for s in sources} >= {"own", "zlib", "bzip2", "lua5.4"}
    variants = {n.split("/")[0] + "/" + n.split("/")[1] for n in objs}
    assert {"aarch64/O2", "aarch64/O2-fp", "aarch64/O2-pac", "aarch64/O2-fp-pacb",
            "aarch64_be/O2-pac", "aarch64_be/O2-fp-pacb", "x86_64/O2", "x86_64/O2-fp"} <= variants
    assert all("-Wa,--gsframe-3" in o["command"] for o in objs.values())
    assert any("2.47" in line for line in manifest["toolchain"])


def test_corpus_byte_identical_to_gas(corpus):
    root, manifest = corpus
    total_fdes = total_fres = 0
    flex = bkey = lsdas = 0
    augmentations: set[str] = set()
    failures = []
    for name, info in sorted(manifest["objects"].items()):
        elf = load_elf_cfi(root / name)
        gas = elf.raw[".sframe"]
        conv = convert_frame_section(elf.frames(".eh_frame"), elf.arch, path=name)
        ours = conv.encode(elf.addresses[".sframe"])
        warnings = [f"no SFrame FDE emitted; {r.reason}" for r in conv.refusals]
        if ours != gas:
            failures.append(f"{name}: bytes differ")
        if warnings != info["sframe_warnings"]:
            failures.append(f"{name}: refusals {warnings} != gas {info['sframe_warnings']}")
        frames = elf.frames(".eh_frame")
        augmentations.update(c.augmentation for c in frames.cies.values())
        lsdas += len(frames.fde_lsda)
        total_fdes += conv.num_fdes
        total_fres += conv.num_fres
        flex += sum(b[3] == 1 for b in conv.blocks)
        bkey += sum(bool(b[2] & 0x20) for b in conv.blocks)
    assert failures == []
    # The corpus exercises what it should: thousands of FDEs, FLEX FDEs (x86 DRAP), B key.
    assert total_fdes > 5000 and total_fres > 25000
    assert flex >= 5 and bkey > 100
    # ... and CIE augmentations "zR", "zPLR" (personality + LSDA, -fexceptions), "zRB"
    assert {"zR", "zPLR"} <= augmentations and any("B" in a for a in augmentations)
    assert lsdas >= 10


def test_refusals_cover_gas_reasons(corpus):
    """Every refusal kind in the corpus comes with gas's exact words (checked above); here:
    which kinds the corpus contains, so the rules are really exercised."""
    _, manifest = corpus
    reasons = {w for o in manifest["objects"].values() for w in o["sframe_warnings"]}
    expected = {
        "no SFrame FDE emitted; RA register 30 in .cfi_register",
        "no SFrame FDE emitted; non-SP/FP register 9 in .cfi_def_cfa_register",
        "no SFrame FDE emitted; .cfi_escape with op (0xf)",
        "no SFrame FDE emitted; FP without RA on stack",
        "no SFrame FDE emitted; .cfi_val_offset with FP reg 29",
        "no SFrame FDE emitted; FP reg 29 in .cfi_undefined",
        "no SFrame FDE emitted; .cfi_negate_ra_state_with_pc",
        "no SFrame FDE emitted; .cfi_window_save",
        "no SFrame FDE emitted; .cfi_escape with op (0x2e)",
        "no SFrame FDE emitted; SP register 7 in .cfi_register",
    }
    assert reasons == expected


def test_signal_frame_refused_but_emitted_without_fres(corpus):
    root, _ = corpus
    elf = load_elf_cfi(root / "aarch64/O2/own-asm_cfi.o")
    conv = convert_frame_section(elf.frames(".eh_frame"), elf.arch)
    sig = [b for b in conv.blocks if b[2] & 0x80]
    assert sig == [b"\x00\x00\x80\x00\x00"]


def test_check_agrees_on_corpus_and_finds_corruption(corpus):
    root, _ = corpus
    for name in ("aarch64/O2-pac/zlib-deflate.o", "x86_64/O2/own-aligned.o",
                 "aarch64/O2-fp-pacb/lua5.4-lvm.o", "x86_64/O2-fp/bzip2-compress.o"):
        elf = load_elf_cfi(root / name)
        table = SFrameTable.from_bytes(elf.raw[".sframe"], section_address=elf.addresses[".sframe"])
        rep = check_frames(elf.frames(), table, elf.arch)
        assert rep.disagreements == [], name
        assert rep.covered == rep.fdes > 0
    # Flip the mangled-RA bit of one FRE: check must say "signed" differs at that PC.
    elf = load_elf_cfi(root / "aarch64/O2-pac/zlib-deflate.o")
    raw = bytearray(elf.raw[".sframe"])
    at = raw.index(b"\x87\x10\xf8\xf0", 28)  # an FRE: mangled, 3 words: sp+16, RA c-8, FP c-16
    raw[at] = 0x07
    table = SFrameTable.from_bytes(bytes(raw), section_address=elf.addresses[".sframe"])
    rep = check_frames(elf.frames(), table, elf.arch)
    assert len(rep.disagreements) == 1 and rep.disagreements[0].fields == ("signed",)


def test_cli_from_cfi_raw_and_elf(corpus, tmp_path, capsys):
    root, _ = corpus
    obj = root / "aarch64/O2-pac/zlib-inflate.o"
    elf = load_elf_cfi(obj)
    out = tmp_path / "inflate.sframe"
    assert cli_main(["sframe", "from-cfi", str(obj), "-o", str(out)]) == 0
    assert out.read_bytes() == elf.raw[".sframe"]  # default --at: the existing .sframe
    assert "0 refused" in capsys.readouterr().err
    out2 = tmp_path / "at.sframe"
    assert cli_main(["sframe", "from-cfi", str(obj), "-o", str(out2), "--at", "0x40000"]) == 0
    sec = decode(out2.read_bytes(), section_address=0x40000)
    ref = decode(elf.raw[".sframe"], section_address=elf.addresses[".sframe"])
    assert [f.start for f in sec.fdes] == [f.start for f in ref.fdes]
    # --elf on an executable-like file: the vmlinux-free path, a .o copy with a new section
    copy = tmp_path / "with.o"
    assert cli_main(["sframe", "from-cfi", str(obj), "-o", str(copy), "--elf",
                     "--at", "0x40000"]) == 0
    got = load(copy, relocate=False)
    assert got.header.num_fdes == ref.header.num_fdes


def test_cli_check_exit_codes(corpus, capsys):
    root, _ = corpus
    assert cli_main(["sframe", "check", str(root / "aarch64/O2-fp/zlib-trees.o")]) == 0
    assert "0 disagreements" in capsys.readouterr().err
    rc = cli_main(["sframe", "check", str(root / "aarch64/O2/own-asm_cfi.o")])
    text = capsys.readouterr()
    assert rc == 0 and "not in .sframe" in text.out and "RA register 30" in text.out


def test_gas_rules_on_handwritten_programs():
    """Individual rules (operand order: kind, a, b, opcode, start, end)."""
    from sfunwind.cfi import ops as O

    def op(kind, a=0, b=0, opcode=0):
        return (kind, a, b, opcode, 0, 0)

    cie = [op(O.K_DEF_CFA, 31, 0)]
    # State changes without an advance merge into one FRE; an unchanged advance adds none.
    tr = translate_program([*cie, op(O.K_ADVANCE, 4), op(O.K_ADVANCE, 4), op(O.K_DEF_CFA_OFFSET, 16), op(O.K_DEF_CFA_OFFSET, 32)],
                           AARCH64, 30)
    assert [s for s, _ in tr.rows] == [0, 8]
    assert tr.rows[1][1][1] == 32
    # Setting the same value again still makes a new FRE (gas tracks "changed", not values).
    tr = translate_program([*cie, op(O.K_ADVANCE, 4), op(O.K_DEF_CFA, 31, 0)], AARCH64, 30)
    assert [s for s, _ in tr.rows] == [0, 4]
    # Trailing advance with nothing after it: the scratch row is always committed.
    tr = translate_program([*cie, op(O.K_ADVANCE, 4)], AARCH64, 30)
    assert [s for s, _ in tr.rows] == [0, 4]
    # Non-default return column.
    assert translate_program(cie, AARCH64, 29).reason == "non-default RA register 29"
    # Offsets beyond int32 (PR gas/33277).
    assert translate_program([op(O.K_DEF_CFA, 31, 2**31)], AARCH64, 30).reason == \
        ".cfi_def_cfa with unsupported offset value"
    # x86-64: .cfi_offset rip at -8 keeps a DEFAULT FDE; elsewhere makes it FLEX.
    x86 = [op(O.K_DEF_CFA, 7, 8), op(O.K_OFFSET, 16, -8)]
    assert not translate_program(x86, X86_64, 16).flex
    assert translate_program([*x86, op(O.K_ADVANCE, 1), op(O.K_OFFSET, 16, -16)],
                             X86_64, 16).flex


def test_fre_encoding_widths():
    # 1-byte words: -128..127 (gas 2.47 uses (int8_t) range checks).
    row = (0, 31, 127, False, 2, None, -128, True, 2, None, -120, True, True, False)
    assert encode_fre(row, AARCH64, False, 1) == bytes([0, 0x87, 127, 0x88, 0x80])
    row = (300, 31, 128, False, 0, None, 0, False, 0, None, 0, False, False, False)
    assert encode_fre(row, AARCH64, False, 2) == bytes([0x2C, 0x01, 0x23, 0x80, 0x00])
    row = (0, 29, 70000, False, 0, None, 0, False, 0, None, 0, False, False, False)
    assert encode_fre(row, AARCH64, False, 4) == bytes([0, 0, 0, 0, 0x42]) + (70000).to_bytes(4, "little")
    undefined = (4, 31, 16, False, 0, None, 0, False, 0, None, 0, False, True, True)
    assert encode_fre(undefined, AARCH64, False, 1) == b"\x04\x00"


def test_vmlinux_whole_conversion(vmlinux_debug):
    elf = load_elf_cfi(vmlinux_debug)
    frames = elf.frames()
    conv = convert_frame_section(frames, elf.arch)
    assert conv.source_fdes == 57921
    assert conv.num_fdes == 57921 and conv.refusals == []
    assert conv.num_fres == 351768
    assert conv.covered_bytes() == sum(frames.fde_pc_range) == 17421264
    at = default_sframe_address(elf)
    data = conv.encode(at)
    table = SFrameTable.from_bytes(data, section_address=at)
    # hrtimer_interrupt: 2 NOPs, paciasp (+8), stp x29, x30, [sp, #-112]! (+12)
    h = 0xFFFF8000802111C8
    got = {off: table.find(h + off) for off in (0, 4, 8, 12, 16, 0x1EC)}
    assert got[0].start == h and got[0].end == h + 12 and not got[0].ra_signed
    assert got[8].describe() == "cfa=sp+0 fp=same ra=same"
    assert got[12].describe() == "cfa=sp+0 fp=same ra=same[s:A]"
    assert got[16].describe() == "cfa=sp+112 fp=c-112 ra=c-104[s:A]"
    # ... and they are what the CFI says (every row of the FDE, at every PC).
    i = frames.fde_pc_begin.index(h)
    for row in unwind_rows(frames, i, AARCH64):
        for pc in range(row.start, row.end, 4):
            s = table.find(pc)
            assert (s.cfa, s.ra, s.fp, s.ra_signed) == (row.cfa, row.ra, row.fp, row.ra_signed)
    # Whole-kernel agreement at every FRE start, vectorised.
    pcs = np.array(sorted({frames.fde_pc_begin[k] for k in range(0, len(frames), 97)}),
                   dtype=np.uint64)
    assert table.find_many(pcs).found.all()


def test_vmlinux_sframe_agrees_with_debug_frame_at_every_pc(vmlinux_debug):
    """The converted kernel section, read back by the SFrame codec's lookup, gives the row
    the (independent) DWARF evaluator gives, on every PC range of every function."""
    elf = load_elf_cfi(vmlinux_debug)
    frames = elf.frames()
    at = default_sframe_address(elf)
    table = SFrameTable.from_bytes(convert_frame_section(frames, elf.arch).encode(at),
                                   section_address=at)
    rep = check_frames(frames, table, elf.arch)
    assert (rep.fdes, rep.covered, rep.uncovered) == (57921, 57921, [])
    assert rep.pcs_compared > 450000
    assert rep.disagreements == []


def test_fast_path_equals_reference_state_machine(vmlinux_debug):
    elf = load_elf_cfi(vmlinux_debug)
    fs = elf.frames()
    seen = set()
    checked = 0
    cie_prog = {}
    for i in range(len(fs)):
        body = fs.data[fs.fde_ins_start[i]:fs.fde_ins_end[i]]
        cie = fs.cies[fs.fde_cie[i]]
        key = (cie.key, body)
        if key in seen:
            continue
        seen.add(key)
        if cie.key not in cie_prog:
            prog = decode_program(fs.data, cie.instructions_start, cie.instructions_end,
                                  cie.code_align, cie.data_align)
            cie_prog[cie.key] = (prog, T._cie_initial_row(prog, AARCH64, cie.ra_register))
        prog, init = cie_prog[cie.key]
        fast = T._fast_translate(fs.data, fs.fde_ins_start[i], fs.fde_ins_end[i],
                                 (init[1], init[0]), AARCH64, cie.code_align, cie.data_align)
        ref = translate_program(prog + decode_program(
            fs.data, fs.fde_ins_start[i], fs.fde_ins_end[i], cie.code_align, cie.data_align),
            AARCH64, cie.ra_register)
        if fast is None:
            continue
        assert ref.reason is None and (fast[0], fast[1]) == (ref.rows, ref.flex), i
        checked += 1
    assert checked > 29000


def test_templates_and_numpy_assembly_equal_reference_path(vmlinux_debug):
    """The whole kernel: shape templates + vectorised assembly == the reference state machine
    run on every distinct program, byte for byte."""
    elf = load_elf_cfi(vmlinux_debug)
    frames = elf.frames()
    fast = convert_frame_section(frames, elf.arch).encode(0xFFFF800090000000)
    slow = convert_frame_section(frames, elf.arch, fast=False).encode(0xFFFF800090000000)
    assert fast == slow


def test_kernel_sframe_cached(tmp_path):
    import time

    from sfunwind.cfi import kernel_sframe_bytes, kernel_sframe_table

    t0 = time.perf_counter()
    data, addr, meta = kernel_sframe_bytes(VMLINUX_XZ, tmp_path)
    first = time.perf_counter() - t0
    assert meta["build_id"] == "2fd286f94bd367f15622983529e421b16aa9cd20"
    assert (meta["sframe_fdes"], meta["refused"], meta["fres"]) == (57921, 0, 351768)
    assert list(tmp_path.glob("2fd286f94bd367f15622983529e421b16aa9cd20.debug_frame.v*.sframe"))
    t0 = time.perf_counter()
    data2, addr2, _ = kernel_sframe_bytes(VMLINUX_XZ, tmp_path)
    assert (data2, addr2) == (data, addr)
    assert time.perf_counter() - t0 < first
    table = kernel_sframe_table(VMLINUX_XZ, tmp_path)
    assert table.find(0xFFFF8000802111C8 + 16).describe() == "cfa=sp+112 fp=c-112 ra=c-104[s:A]"


@pytest.mark.toolchain
def test_linked_executable_row_by_row(sid, corpus):
    """ld sorts the FDE index (and merges .o sections), so a linked file is compared row by
    row: our .eh_frame conversion and ld's .sframe give the same row at every PC."""
    work = sid.scratch()
    try:
        src = Path(__file__).parent / "data/cfi/src"
        for f in ("frames.c", "signals.c", "aligned.c"):
            (work / f).write_bytes((src / f).read_bytes())
        (work / "main.c").write_text(
            "#include <stddef.h>\nvoid consume(void *p, size_t n) { (void)p; (void)n; }\n"
            "int external(int x) { return x * 3; }\nint main(void) { return 0; }\n")
        for cc, tag in (("aarch64-linux-gnu-gcc", "a64"), ("gcc", "x64")):
            sid.run(f"{cc} -O2 -mbranch-protection=pac-ret -Wa,--gsframe-3 -o {tag} "
                    "main.c frames.c signals.c aligned.c" if tag == "a64" else
                    f"{cc} -O2 -Wa,--gsframe-3 -o {tag} main.c frames.c signals.c aligned.c",
                    cwd=work)
            elf = load_elf_cfi(work / tag)
            frames = elf.frames(".eh_frame")
            ld_table = SFrameTable.from_bytes(elf.raw[".sframe"],
                                              section_address=elf.addresses[".sframe"])
            conv = convert_frame_section(frames, elf.arch)
            ours = conv.encode(elf.addresses[".sframe"])
            our_table = SFrameTable.from_bytes(ours, section_address=elf.addresses[".sframe"])
            step = 4 if elf.arch is AARCH64 else 1
            compared = 0
            not_in_ld = 0
            plt = [(sec.address, sec.address + sec.size) for sec in elf.sections
                   if sec.name.startswith(".plt")]

            def in_plt(pc, plt=plt):
                return any(a <= pc < b for a, b in plt)

            for k in range(conv.num_fdes):
                start = int(conv.starts[k])
                if in_plt(start):
                    continue  # ld writes both the .eh_frame and the .sframe of its PLTs
                if ld_table.find(start) is None:
                    # crt*.o / libc_nonshared code: Debian builds them without --gsframe
                    not_in_ld += 1
                    continue
                for pc in range(start, start + int(conv.sizes[k]), step):
                    a, b = our_table.find(pc), ld_table.find(pc)
                    assert a is not None and b is not None, hex(pc)
                    assert a.same_rules(b), hex(pc)
                    compared += 1
            assert not_in_ld <= 8  # _start, crtbegin.o helpers
            ld_starts = {f.start for f in decode(elf.raw[".sframe"],
                                                 section_address=elf.addresses[".sframe"]).fdes
                         if not in_plt(f.start)}
            our_starts = {int(x) for x in conv.starts if not in_plt(int(x))}
            assert ld_starts <= our_starts and len(our_starts - ld_starts) == not_in_ld
            assert compared > 500
            # and the file's own .sframe agrees with its CFI everywhere it has rows
            rep = check_frames(frames, ld_table, elf.arch)
            # Only ld's own .plt.got rows disagree (x86-64: ld 2.47 writes sp+16 for the
            # `jmp *GOT` entries, its own .eh_frame says sp+8, which is right at a jmp).
            assert all(in_plt(d.pc) for d in rep.disagreements), rep.disagreements
            assert len(rep.uncovered) == not_in_ld
            assert all(reason is None for _, _, reason in rep.uncovered)
    finally:
        sid.cleanup(work)


def test_corpus_tarball_lists_every_object(corpus):
    _, manifest = corpus
    with tarfile.open(CORPUS) as tar:
        names = {m.name for m in tar.getmembers() if m.name.endswith(".o")}
    assert names == set(manifest["objects"])
    assert io  # keep the import used when the corpus is rebuilt differently


_PROGRAM = r"""
#include <stdio.h>
__attribute__((noinline)) static int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
int main(int argc, char **argv) { printf("fib %d\n", fib(argc + 20)); return 0; }
"""


def test_elf_output_is_loaded_through_pt_gnu_sframe(sid, capsys):
    """`sframe from-cfi --elf` on executables without SFrame (dynamic PIE and static-pie
    x86-64, static aarch64): the section is loaded by a new PT_LOAD and found through
    PT_GNU_SFRAME, the programs still run (the kernel, ld.so and qemu accept the moved
    program-header table), readelf/objdump read it, and sfunwind finds it without section
    headers."""
    import struct

    from sfunwind.cfi.elfwrite import add_section, sframe_segment_address
    from sfunwind.errors import ElfFormatError

    work = sid.scratch()
    try:
        (work / "fib.c").write_text(_PROGRAM)
        sid.run("gcc -O2 -o x64-pie fib.c && gcc -O2 -static-pie -o x64-spie fib.c && "
                "aarch64-linux-gnu-gcc -O2 -static -o a64 fib.c", cwd=work)
        runs = {"x64-pie": "./{}", "x64-spie": "./{}", "a64": "qemu-aarch64 ./{}"}
        for name, how in runs.items():
            src, out = work / name, work / f"{name}.sf"
            assert cli_main(["sframe", "from-cfi", str(src), "--elf", "-o", str(out)]) == 0
            capsys.readouterr()
            out.chmod(0o755)
            ran = sid.run(how.format(out.name), cwd=work)
            assert ran.stdout == sid.run(how.format(name), cwd=work).stdout == "fib 10946\n"
            phdrs = sid.run(f"readelf -lW {out.name}", cwd=work).stdout
            sframe_line = next(x for x in phdrs.splitlines() if "GNU_SFRAME" in x).split()
            at = sframe_segment_address(src)
            assert int(sframe_line[2], 16) == at
            assert sid.run(f"objdump --sframe {out.name}", cwd=work).returncode == 0
            section = load(out)
            assert section.header.num_fdes > 3
            # without section headers: found through PT_GNU_SFRAME, the same bytes
            raw = bytearray(out.read_bytes())
            struct.pack_into("<Q", raw, 0x28, 0)
            struct.pack_into("<HHH", raw, 0x3A, 64, 0, 0)
            bare = work / f"{name}.bare"
            bare.write_bytes(bytes(raw))
            found = load(bare)
            assert found.data == section.data and found.section_address == at
            # the section is encoded for its load address: --at elsewhere is refused
            with pytest.raises(ElfFormatError, match="encoded for"):
                add_section(src, work / "x", section.data or b"", at + 8, segment=True)
            # twice: the copy already has PT_GNU_SFRAME
            with pytest.raises(ElfFormatError, match="already has a PT_GNU_SFRAME"):
                sframe_segment_address(out)
        sid.run("gcc -O2 -c -o fib.o fib.c", cwd=work)
        with pytest.raises(ElfFormatError, match="no program headers"):
            sframe_segment_address(work / "fib.o")
    finally:
        sid.cleanup(work)
