"""Corrupt and random CFI never crashes: every failure is a CFIFormatError (hypothesis),
plus the atheris target's entry point on the same inputs."""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfunwind.cfi import AARCH64, X86_64, load_elf_cfi
from sfunwind.cfi.parser import parse_frame_section
from sfunwind.cfi.rows import evaluate_fde
from sfunwind.cfi.to_sframe import convert_frame_section
from sfunwind.errors import CFIFormatError

CORPUS = Path(__file__).parent / "data/cfi/corpus.tar.xz"
FUZZ = Path(__file__).parent.parent / "fuzz/cfi_fuzz.py"


def _sections():
    out = []
    with tarfile.open(CORPUS) as tar:
        for name in ("aarch64/O2-fp-pacb/zlib-inflate.o", "x86_64/O2/own-aligned.o",
                     "aarch64/O2/own-asm_cfi.o", "x86_64/O2/own-asm_cfi_x86.o"):
            out.append((name, tar.extractfile(name).read()))  # type: ignore[union-attr]
    return out


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    d = tmp_path_factory.mktemp("seeds")
    result = []
    for name, blob in _sections():
        p = d / name.replace("/", "_")
        p.write_bytes(blob)
        elf = load_elf_cfi(p)
        result.append((elf.arch, elf.raw[".eh_frame"]))
    return result


def _exercise(data: bytes, arch, eh: bool) -> None:
    try:
        fs = parse_frame_section(data, eh_frame=eh, address=0x10000,
                                 big_endian=arch.big_endian)
        for i in range(min(len(fs), 32)):
            evaluate_fde(fs, i, arch)
        convert_frame_section(fs, arch).encode(0x20000)
    except CFIFormatError as exc:
        assert exc.offset is not None or "pointer" in str(exc) or "SFrame" in str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_real_sections(seeds, data):
    arch, section = data.draw(st.sampled_from(seeds))
    buf = bytearray(section)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    _exercise(bytes(buf[:cut]), arch, True)


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=256), eh=st.booleans(), x86=st.booleans())
def test_random_bytes(blob, eh, x86):
    _exercise(blob, X86_64 if x86 else AARCH64, eh)


def test_atheris_target_entry_point(seeds):
    spec = importlib.util.spec_from_file_location("cfi_fuzz", FUZZ)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    for arch, section in seeds:
        mode = {"aarch64": 0, "x86_64": 2}[arch.name] | 1
        mod.one_input(bytes([mode]) + section)
        mod.one_input(bytes([mode | 0x80]) + section[: len(section) // 3])
    mod.one_input(b"")
    mod.one_input(b"\x00\xff\xff\xff\xff")


def test_advance_past_function_end_is_refused_not_crashing():
    import struct

    cie = struct.pack("<IIB", 12, 0xFFFFFFFF, 1) + b"\0" + bytes([4, 0x78, 30, 0x0C, 31, 0])
    cie = struct.pack("<I", len(cie) - 4) + cie[4:]
    fde_body = struct.pack("<IQQ", 0, 0x1000, 0x10) + bytes([0x02, 0xFF, 0x0E, 16])
    fde = struct.pack("<I", len(fde_body)) + fde_body
    fs = parse_frame_section(cie + fde, eh_frame=False)
    conv = convert_frame_section(fs, AARCH64)
    assert conv.num_fdes == 0
    assert conv.refusals[0].reason.startswith("CFA program advances past the end")


@pytest.mark.parametrize("case", sorted((Path(__file__).parent / "data/cfi/fuzz-regressions")
                                        .glob("*.bin")), ids=lambda p: p.stem)
def test_fuzz_regressions(case):
    """Inputs atheris once crashed on (first byte: mode, see fuzz/cfi_fuzz.py)."""
    spec = importlib.util.spec_from_file_location("cfi_fuzz", FUZZ)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    mod.one_input(case.read_bytes())
