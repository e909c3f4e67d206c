"""Differential test against the real GNU toolchain (binutils 2.47 in the sid chroot).

Random but reproducible CFI programs (aarch64, x86-64, s390x) are assembled with
``as --gsframe`` and linked with ``ld``; for the object and the executable, sfunwind's dump
must equal the target's ``objdump --sframe`` byte for byte, decode -> encode must give the
section's bytes, validate must find nothing, and every PC must look up like the dump says.
The generator mixes every CFI construct gas turns into SFrame: CFA offset changes (up to
4-byte data words), FP/RA saves and restores, FP-based CFAs, remember/restore state, PAC
(negate_ra_state, B key), RA undefined, signal frames, register-held RA (FLEX on x86-64 and
s390x; a dropped FDE on aarch64), and functions above 256 bytes and 64 KiB (FRE start widths).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from sfunwind.elf import ElfFile
from sfunwind.sframe import SFrameTable, decode, dump_text, encode, load, validate

ARCHES = {
    "aarch64": "aarch64-linux-gnu-",
    "aarch64_be": "aarch64-linux-gnu-",
    "x86_64": "x86_64-linux-gnu-",
    "s390x": "s390x-linux-gnu-",
}
ENDIAN_FLAGS = {"aarch64_be": "-EB"}


def _nops(arch: str, n: int, rnd: random.Random) -> str:
    if rnd.random() < 0.03:
        return "\t.skip 300\n"  # FRE starts beyond 255: 2-byte starts
    if arch == "x86_64":
        return "".join("\tnop\n" if rnd.random() < 0.5 else "\tpushq %rax\n" for _ in range(n))
    if arch == "s390x":
        return "\tnopr\n" * n
    return "\tnop\n" * n


def gen_function(arch: str, name: str, rnd: random.Random) -> str:
    arch = "aarch64" if arch == "aarch64_be" else arch
    lines = [f"\t.globl {name}\n\t.type {name}, @function\n{name}:\n\t.cfi_startproc\n"]
    if arch == "aarch64" and rnd.random() < 0.2:
        lines.append("\t.cfi_b_key_frame\n")
    if arch != "aarch64" and rnd.random() < 0.1:
        lines.append("\t.cfi_signal_frame\n")
    big = rnd.random() < 0.05
    depth = 0
    cfa = {"aarch64": 0, "x86_64": 8, "s390x": 160}[arch]
    for _ in range(rnd.randint(1, 9)):
        lines.append(_nops(arch, rnd.randint(1, 6), rnd))
        if big:
            lines.append("\t.skip 70000\n")
            big = False
        op = rnd.random()
        if arch == "aarch64":
            if op < 0.3:
                cfa = rnd.choice([16, 32, 48, 96, 384, 4096, 70016])
                lines.append(f"\t.cfi_def_cfa_offset {cfa}\n")
            elif op < 0.5:
                lines.append(f"\t.cfi_offset 29, -{cfa or 16}\n\t.cfi_offset 30, -{(cfa or 16) - 8}\n")
            elif op < 0.6:
                lines.append(f"\t.cfi_def_cfa 29, {cfa or 16}\n")
            elif op < 0.7:
                lines.append("\t.cfi_negate_ra_state\n")
            elif op < 0.78:
                lines.append("\t.cfi_restore 29\n\t.cfi_restore 30\n")
            elif op < 0.86:
                lines.append("\t.cfi_remember_state\n")
                depth += 1
            elif op < 0.94 and depth:
                lines.append("\t.cfi_restore_state\n")
                depth -= 1
            elif op < 0.97:
                lines.append("\t.cfi_undefined 30\n")
            else:
                lines.append("\t.cfi_register 30, 9\n")  # gas drops this FDE (no FLEX)
        elif arch == "x86_64":
            if op < 0.35:
                cfa = rnd.choice([16, 24, 32, 136, 4104, 70008])
                lines.append(f"\t.cfi_def_cfa_offset {cfa}\n")
            elif op < 0.5:
                lines.append(f"\t.cfi_offset %rbp, -{max(cfa, 16)}\n")
            elif op < 0.6:
                lines.append("\t.cfi_def_cfa_register %rbp\n")
            elif op < 0.68:
                lines.append("\t.cfi_def_cfa %r10, 0\n")  # DRAP: FLEX FDE
            elif op < 0.74:
                lines.append("\t.cfi_def_cfa %rsp, 8\n\t.cfi_restore %rbp\n")
            elif op < 0.82:
                lines.append("\t.cfi_remember_state\n")
                depth += 1
            elif op < 0.9 and depth:
                lines.append("\t.cfi_restore_state\n")
                depth -= 1
            elif op < 0.95:
                lines.append("\t.cfi_undefined %rip\n")
            else:
                lines.append("\t.cfi_register %rip, %rcx\n")  # FLEX: RA in a register
        else:
            if op < 0.35:
                cfa = rnd.choice([160, 168, 320, 4256, 70160])
                lines.append(f"\t.cfi_def_cfa_offset {cfa}\n")
            elif op < 0.55:
                lines.append(f"\t.cfi_offset %r14, -{rnd.choice([48, 56, 112])}\n")
            elif op < 0.7:
                lines.append(f"\t.cfi_offset %r11, -{rnd.choice([72, 64])}\n")
            elif op < 0.8:
                lines.append("\t.cfi_def_cfa_register %r11\n")
            elif op < 0.88:
                lines.append("\t.cfi_restore %r14\n\t.cfi_restore %r11\n")
            else:
                lines.append("\t.cfi_register %r14, %r1\n")  # FLEX
    lines.append(_nops(arch, rnd.randint(1, 3), rnd))
    lines.append(f"\t.cfi_endproc\n\t.size {name}, .-{name}\n")
    return "".join(lines)


def gen_program(arch: str, seed: int, n: int) -> str:
    rnd = random.Random(seed)
    body = "".join(gen_function(arch, f"f{i}", rnd) for i in range(n))
    return "\t.text\n" + body


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_random_cfi_programs_match_gas_and_objdump(sid, arch: str) -> None:  # type: ignore[no-untyped-def]
    prefix = ARCHES[arch]
    eb = ENDIAN_FLAGS.get(arch, "")
    assert (sid.root / "usr" / "bin" / f"{prefix}as").exists(), \
        f"{prefix}as not in the chroot (tools/sid-toolchain installs it)"
    work = sid.scratch()
    try:
        checked_rows = 0
        for seed in range(6):
            (work / "t.s").write_text(gen_program(arch, 1000 * seed + len(arch), 80))
            res = sid.run(f"{prefix}as {eb} --gsframe -o t.o t.s && "
                          f"{prefix}ld {eb} -static --build-id=none -e f0 -o t t.o && "
                          f"{prefix}objdump --sframe t.o > t.o.txt && "
                          f"{prefix}objdump --sframe t > t.txt", cwd=work, check=False)
            assert res.returncode == 0, res.stderr[-2000:]
            for name in ("t.o", "t"):
                path = work / name
                section = load(path)
                expected = (work / f"{name}.txt").read_text()
                assert dump_text(section, filename=name) == expected, (arch, seed, name)
                with ElfFile.open(path) as elf:
                    sec = elf.section(".sframe")
                    assert sec is not None
                    raw = sec.data()
                assert encode(decode(raw, section_address=sec.address)) == \
                    raw[:len(raw) - len(section.trailing)]
                assert validate(section) == [], (arch, seed, name)
                assert section.big_endian == (arch in ("aarch64_be", "s390x"))
                if name == "t":
                    checked_rows += _check_rows_against_dump(section, expected)
        assert checked_rows > 100
    finally:
        sid.cleanup(work)


def _check_rows_against_dump(section, text: str) -> int:  # type: ignore[no-untyped-def]
    """Every FRE row's start PC, looked up, gives the row objdump printed for it."""
    table = SFrameTable(section)
    rows = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or len(parts[0]) != 16 or parts[0].startswith("STARTPC"):
            continue
        try:
            pc = int(parts[0], 16)
        except ValueError:
            continue
        if pc < 0x1000:  # a PCMASK row prints an offset, not an address
            continue
        row = table.find(pc)
        assert row is not None and row.start == pc, line
        if parts[1] == "RA":
            assert row.outermost
        else:
            cfa = parts[1]
            if not cfa.startswith(("(", "r")):
                assert row.cfa.offset == int(cfa.split("+", 1)[1]), line
        many = table.find_many(np.array([pc], dtype=np.uint64))
        assert many.found[0] and int(many.start[0]) == pc
        rows += 1
    return rows


def test_generator_is_deterministic(tmp_path: Path) -> None:
    assert gen_program("aarch64", 1, 5) == gen_program("aarch64", 1, 5)
    assert gen_program("x86_64", 1, 5) != gen_program("x86_64", 2, 5)


def _built_section(abi, version: int, n: int = 400,  # type: ignore[no-untyped-def]
                   sizes: tuple[int, ...] = (8, 40, 200, 300, 4000, 70000),
                   first_size: int | None = None):
    """A varied section made by the encoder alone (no assembler involved)."""
    from sfunwind.sframe import (
        ABI,
        FDEKind,
        FDEType,
        SFrameFDE,
        SFrameFRE,
        SFrameSection,
        flex_control,
    )

    rnd = random.Random(int(abi) * 10 + version)
    flex_ok = version == 3 and abi in (ABI.AMD64_LE, ABI.S390X_BE)
    fdes = []
    addr = 0x10000
    for k in range(n):
        size = first_size if k == 0 and first_size else rnd.choice(sizes)
        kind = rnd.random()
        if kind < 0.1 and flex_ok:
            sp, fp = (7, 6) if abi is ABI.AMD64_LE else (15, 11)
            fres = [SFrameFRE(0, words=[flex_control(sp, False), 8 if sp == 7 else 0]),
                    SFrameFRE(4, words=[flex_control(10, False), 0, 0, flex_control(fp, True), 0]),
                    SFrameFRE(6, words=[flex_control(fp, True), -8, flex_control(3, False), 0,
                                        0x02, -16])]
            fdes.append(SFrameFDE(addr, size, kind=FDEKind.FLEX, fres=fres))
        elif kind < 0.15 and version >= 2 and abi is ABI.AMD64_LE:
            size = 64  # four 16-byte PLT entries
            fdes.append(SFrameFDE(addr, size, fde_type=FDEType.PCMASK, rep_size=16,
                                  fres=[SFrameFRE(0, words=[8]), SFrameFRE(11, words=[16])]))
        elif kind < 0.18 and version == 3:
            fdes.append(SFrameFDE(addr, size, signal=True))
        else:
            nrows = rnd.randint(1, 12)
            starts = sorted(rnd.sample(range(1, size), min(nrows, size - 1)))
            fres = [SFrameFRE(0, words=[0 if abi is not ABI.AMD64_LE else 8])]
            for st in starts:
                frame = rnd.choice([16, 32, 128, 4096, 70016])
                if abi is ABI.AMD64_LE:
                    words = rnd.choice([[frame], [frame, -16]])
                elif abi is ABI.S390X_BE:
                    words = rnd.choice([[frame // 8], [frame // 8, -48], [frame // 8, 0, -72],
                                        [frame // 8, -48, -72]])
                else:
                    words = rnd.choice([[frame], [frame, -frame + 8], [frame, -frame + 8, -frame]])
                if rnd.random() < 0.05:
                    words = []  # RA undefined
                fres.append(SFrameFRE(st, base_reg=rnd.choice([0, 1]), words=words,
                                      mangled_ra=abi in (ABI.AARCH64_LE, ABI.AARCH64_BE)
                                      and rnd.random() < 0.3))
            fdes.append(SFrameFDE(addr, size, pauth_key=rnd.choice([0, 1])
                                  if abi in (ABI.AARCH64_LE, ABI.AARCH64_BE) else 0, fres=fres))
        addr += size + rnd.choice([0, 0, 4, 64])
    rnd.shuffle(fdes)  # FRE blobs in a different order than the sorted index, like ld
    section = SFrameSection.build(abi, fdes, version=version)
    assert validate(section) == []
    return section


@pytest.mark.parametrize("fixture,prefix,abi", [
    ("mini-a64", "aarch64-linux-gnu-", "AARCH64_LE"),
    ("mini-a64be", "aarch64-linux-gnu-", "AARCH64_BE"),
    ("mini-x64", "x86_64-linux-gnu-", "AMD64_LE"),
    ("mini-s390x", "s390x-linux-gnu-", "S390X_BE"),
])
def test_encoder_output_reads_the_same_in_objdump(sid, fixture: str, prefix: str,  # type: ignore[no-untyped-def]
                                                  abi: str) -> None:
    """Sections written by the encoder (V3, and V2 for objdump 2.47's V2 reader) put into a
    real ELF with objcopy: objdump --sframe prints what sfunwind prints."""
    from sfunwind.sframe import ABI

    src = Path(__file__).parent / "data" / "sframe" / "v3-binutils-2.47" / fixture
    assert src.exists(), f"corpus fixture {fixture} missing"
    assert (sid.root / "usr" / "bin" / f"{prefix}objcopy").exists(), \
        f"{prefix}objcopy not in the chroot (tools/sid-toolchain installs it)"
    work = sid.scratch()
    try:
        for version in (3, 2):
            section = _built_section(ABI[abi], version)
            (work / "sec.bin").write_bytes(encode(section))
            (work / "in").write_bytes(src.read_bytes())
            res = sid.run(f"{prefix}objcopy --remove-section .sframe --add-section "
                          f".sframe=sec.bin --set-section-flags .sframe=alloc,readonly,data "
                          f"in out 2>/dev/null && {prefix}objdump --sframe out > out.txt",
                          cwd=work, check=False)
            assert res.returncode == 0, res.stderr
            loaded = load(work / "out")
            assert len(loaded.fdes) == 400 and loaded.version == version
            assert dump_text(loaded, filename="out") == (work / "out.txt").read_text(), version
    finally:
        sid.cleanup(work)


@pytest.mark.parametrize("abi", ["AARCH64_LE", "AARCH64_BE", "AMD64_LE", "S390X_BE"])
def test_lookup_of_encoder_sections_agrees_with_libsframe(sid, abi: str) -> None:  # type: ignore[no-untyped-def]
    """libsframe 2.47's sframe_find_fre (tools/libsframe_oracle.c) on sections the encoder
    wrote: same hit/miss, FRE, CFA offset and signed-RA bit for every PC of every FDE, the
    gaps, and around the ends (FLEX rows: hit/miss and FRE only; their getters differ)."""
    from sfunwind.sframe import ABI

    oracle_src = Path(__file__).parent.parent / "tools" / "libsframe_oracle.c"
    assert oracle_src.exists(), "tools/libsframe_oracle.c missing"
    # one function over 64 KiB (4-byte FRE starts), the others small (the oracle examines
    # every byte)
    section = _built_section(ABI[abi], 3, n=150, sizes=(8, 40, 200, 300, 1200),
                             first_size=66000)
    data = encode(section)
    work = sid.scratch()
    try:
        (work / "oracle.c").write_text(oracle_src.read_text())
        (work / "sec.bin").write_bytes(data)
        out = sid.run("gcc -O2 -o oracle oracle.c -l:libsframe.a && ./oracle sec.bin 0",
                      cwd=work).stdout
    finally:
        sid.cleanup(work)
    table = SFrameTable(decode(data))
    pcs, lines = [], []
    for line in out.splitlines():
        if line.startswith(("#", "fde ")):
            continue
        parts = line.split()
        pcs.append(int(parts[0], 16))
        lines.append(parts[1:])
    res = table.find_many(np.array(pcs, dtype=np.uint64))
    checked = 0
    for k, (pc, parts) in enumerate(zip(pcs, lines, strict=True)):
        if parts[0] == "miss":
            assert not res.found[k], hex(pc)
            continue
        kv = dict(x.split("=", 1) for x in parts[1:])
        assert res.found[k], (hex(pc), parts)
        r = int(res.row[k])
        assert int(kv["fre"], 16) == int(table.fre_start[r]), hex(pc)
        assert int(kv["mangled"]) == int(res.ra_signed[k]), hex(pc)
        flex = table.fde_kind[res.fde[k]] == 1
        if kv["cfa"] != "none" and not flex and not res.outermost[k]:
            assert int(kv["cfa"]) == int(res.cfa_offset[k]), (hex(pc), parts)
        if kv["ra"] == "undef":
            assert res.outermost[k]
        checked += 1
    assert checked > 10_000
