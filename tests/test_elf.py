"""sfunwind.elf on real files from the SFrame corpus: sections, segments, symbols, notes,
relocations, and typed errors for truncated or corrupt input."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from sfunwind.elf import PT_GNU_SFRAME, PT_LOAD, SHT_GNU_SFRAME, ElfFile, is_elf
from sfunwind.errors import ElfFormatError

CORPUS = Path(__file__).parent / "data" / "sframe"


def fixture(name: str, tc: str = "v3-binutils-2.47") -> Path:
    p = CORPUS / tc / name
    assert p.exists(), f"corpus fixture {tc}/{name} missing (tools/build_sframe_corpus.py)"
    return p


def test_sections_segments_and_types() -> None:
    with ElfFile.open(fixture("mini-x64")) as elf:
        assert elf.machine == "EM_X86_64" and elf.little_endian and elf.elfclass == 64
        sec = elf.section(".sframe")
        assert sec is not None and sec.type == SHT_GNU_SFRAME  # binutils >= 2.45
        data = sec.data()
        assert len(data) == sec.size and data[:2] == b"\xe2\xde"
        seg = elf.segment(PT_GNU_SFRAME)
        assert seg is not None and seg.vaddr == sec.address
        assert elf.read_vaddr(sec.address, 4) == data[:4]
        assert any(s.type == PT_LOAD for s in elf.segments())
        assert elf.section(".nothing") is None
        text = elf.section(".text")
        assert text is not None and elf.section_by_index(text.index) == text
    with ElfFile.open(fixture("mini-a64", "v2-binutils-2.44")) as elf:
        sec = elf.section(".sframe")
        assert sec is not None and sec.type == 1  # SHT_PROGBITS before 2.45
        assert elf.machine == "EM_AARCH64"


def test_symbols_and_build_id(tmp_path: Path) -> None:
    with ElfFile.open(fixture("mini-a64")) as elf:
        leaf = elf.symbol("leaf")
        assert leaf is not None and leaf.type == "STT_FUNC" and leaf.size > 0
        text = elf.section(".text")
        assert text is not None and text.address <= leaf.value < text.address + text.size
        assert elf.build_id() is None  # built with --build-id=none
    # The notes of a glibc-linked PIE (ABI tag, GNU property) are read.
    with ElfFile.open(fixture("pie-x64")) as elf:
        notes = list(elf.notes())
        assert any(n.name == "GNU" and n.type == "NT_GNU_ABI_TAG" for n in notes)


def test_build_id_matches_readelf() -> None:
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf not installed")
    # Debian links every packaged binary with --build-id; coreutils' true is always there
    target = Path(os.path.realpath("/bin/true"))
    out = subprocess.run([readelf, "-n", str(target)], capture_output=True, text=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert m is not None, f"readelf shows no build ID in {target}"
    with ElfFile.open(target) as elf:
        bid = elf.build_id()
        assert bid is not None and bid.hex() == m.group(1)


def test_relocations_of_an_object() -> None:
    with ElfFile.open(fixture("mini-a64.o")) as elf:
        assert elf.is_relocatable
        relocs = elf.relocations_for(".sframe")
        assert relocs and all(r.type == 260 for r in relocs)  # R_AARCH64_PREL64 (V3)
        raw = elf.section(".sframe").data()  # type: ignore[union-attr]
        fixed = elf.apply_relocations(".sframe")
        for r in relocs:
            assert raw[r.offset:r.offset + 8] == bytes(8)  # RELA: zeros in place
            value = int.from_bytes(fixed[r.offset:r.offset + 8], "little", signed=True)
            assert r.symbol is not None
            assert value == r.symbol.value + (r.addend or 0) - r.offset
    with ElfFile.open(fixture("mini-x64.o", "v2-binutils-2.44")) as elf:
        relocs = elf.relocations_for(".sframe")
        assert relocs and {r.type for r in relocs} == {2}  # R_X86_64_PC32 (V2)


def test_truncated_and_corrupt_files(tmp_path: Path) -> None:
    good = fixture("mini-x64").read_bytes()
    cases = {
        "empty": b"",
        "not-elf": b"hello world",
        "header-only": good[:40],
        "no-sections": good[:0x100],
    }
    bad = bytearray(good)
    struct.pack_into("<Q", bad, 0x28, len(good) + 0x1000)  # e_shoff past the end
    cases["shoff"] = bytes(bad)
    bad = bytearray(good)
    struct.pack_into("<H", bad, 0x3A, 3)  # e_shentsize nonsense
    cases["shentsize"] = bytes(bad)
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ElfFormatError) as exc, ElfFile.open(p) as elf:
            for s in elf.sections():
                s.data()
            elf.segments()
            elf.symbols()
        assert str(p) in str(exc.value), name
    with pytest.raises(ElfFormatError, match="cannot open"):
        ElfFile.open(tmp_path / "missing")
    assert not is_elf(tmp_path / "not-elf") and is_elf(fixture("mini-x64"))
    # A section whose data lies past the end of the file is refused when read.
    with ElfFile.open(fixture("mini-x64")) as elf:
        sec = elf.section(".sframe")
        assert sec is not None
        cut = good[:sec.offset + 4]
    (tmp_path / "cut").write_bytes(cut)
    with pytest.raises(ElfFormatError), ElfFile.open(tmp_path / "cut") as elf:
        s = elf.section(".sframe")
        assert s is not None
        s.data()


def test_mutated_elf_files_only_raise_typed_errors(tmp_path: Path) -> None:
    """load() / ElfFile on damaged ELF headers, section and program header tables: only
    ElfFormatError or SFrameFormatError come out."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from sfunwind.errors import SFrameFormatError
    from sfunwind.sframe import load

    good = fixture("mini-a64").read_bytes()
    obj = fixture("mini-x64.o").read_bytes()
    with ElfFile.open(fixture("mini-a64")) as elf:
        shoff = elf.elf["e_shoff"]
        phoff = elf.elf["e_phoff"]
    hot = list(range(0, 64)) + list(range(phoff, phoff + 56 * 4)) + \
        list(range(shoff, min(len(good), shoff + 64 * 12)))
    target = tmp_path / "m"

    @settings(max_examples=250, deadline=3000, suppress_health_check=[HealthCheck.too_slow,
              HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(["exe", "obj"]),
           st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1,
                    max_size=6),
           st.integers(0, 100))
    def run(which: str, edits: list[tuple[int, int]], cut: int) -> None:
        data = bytearray(good if which == "exe" else obj)
        for where, value in edits:
            pos = hot[where % len(hot)] if which == "exe" else where % len(data)
            if pos < len(data):
                data[pos] = value
        if cut > 90:
            data = data[:len(data) * (cut - 90) // 10]
        target.write_bytes(bytes(data))
        try:
            with ElfFile.open(target) as elf:
                for s in elf.sections():
                    s.data()
                elf.segments()
                elf.symbols()
                list(elf.notes())
                elf.relocations_for(".sframe")
            load(target)
        except (ElfFormatError, SFrameFormatError):
            pass

    run()
