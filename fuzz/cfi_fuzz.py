#!/usr/bin/env python3
"""atheris fuzz target: the CFI reader, row evaluation and the gas converter on arbitrary bytes.

Any input must either parse, evaluate and convert, or raise CFIFormatError — never another
exception, never hang.  Run (``pip install atheris``)::

    python fuzz/cfi_fuzz.py -max_total_time=600 fuzz/corpus-cfi/

Seeds: ``python fuzz/cfi_fuzz.py --make-seeds fuzz/corpus-cfi`` writes the .eh_frame and
.debug_frame sections of the committed corpus objects (tests/data/cfi/corpus.tar.xz).
The first input byte picks the section kind, the architecture and the byte order.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import contextlib

from sfunwind.cfi import AARCH64, AARCH64_BE, X86_64
from sfunwind.cfi.parser import parse_eh_frame_hdr, parse_frame_section
from sfunwind.cfi.rows import evaluate_fde
from sfunwind.cfi.to_sframe import convert_frame_section
from sfunwind.errors import CFIFormatError

ARCHES = (AARCH64, X86_64, AARCH64_BE)


def one_input(data: bytes) -> None:
    if not data:
        return
    mode = data[0]
    body = data[1:]
    arch = ARCHES[(mode >> 1) % 3]
    eh = bool(mode & 1)
    try:
        fs = parse_frame_section(body, eh_frame=eh, address=0x10000, big_endian=arch.big_endian,
                                 datarel_base=0x20000, textrel_base=0x30000)
        for i in range(min(len(fs), 64)):
            evaluate_fde(fs, i, arch)
        conv = convert_frame_section(fs, arch)
        conv.encode(0x40000)
    except CFIFormatError:
        pass
    if mode & 0x80:
        with contextlib.suppress(CFIFormatError):
            parse_eh_frame_hdr(body, address=0x10000)


def make_seeds(out: Path) -> None:

    import tarfile

    from sfunwind.cfi.elfsource import load_elf_cfi

    out.mkdir(parents=True, exist_ok=True)
    corpus = Path(__file__).resolve().parent.parent / "tests/data/cfi/corpus.tar.xz"
    with tarfile.open(corpus) as tar:
        for m in tar.getmembers():
            if not m.name.endswith(".o"):
                continue
            tmp = out / "obj.tmp"
            tmp.write_bytes(tar.extractfile(m).read())  # type: ignore[union-attr]
            elf = load_elf_cfi(tmp)
            arch_bits = {"aarch64": 0, "x86_64": 2, "aarch64_be": 4}[elf.arch.name]
            seed = bytes([arch_bits | 1]) + elf.raw[".eh_frame"]
            (out / m.name.replace("/", "_")).write_bytes(seed)
            tmp.unlink()



def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--make-seeds":
        make_seeds(Path(sys.argv[2]))
        return
    import importlib

    import atheris

    # Coverage feedback: re-import the code under test with atheris's instrumentation.
    with atheris.instrument_imports(include=["sfunwind"]):
        for name in ("sfunwind.cfi.parser", "sfunwind.cfi.ops", "sfunwind.cfi.rows",
                     "sfunwind.cfi.to_sframe"):
            importlib.reload(sys.modules[name])
    global parse_eh_frame_hdr, parse_frame_section, evaluate_fde, convert_frame_section
    from sfunwind.cfi.parser import parse_eh_frame_hdr, parse_frame_section
    from sfunwind.cfi.rows import evaluate_fde
    from sfunwind.cfi.to_sframe import convert_frame_section

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
