"""atheris (libFuzzer) target: SFrame decode / validate / dump / lookup.

Only :class:`sfunwind.errors.SFrameFormatError` may escape; anything else is a finding.
atheris is optional and not part of CI (``pip install atheris``).  Run::

    .venv/bin/python fuzz/sframe_decode.py -max_total_time=600 fuzz/corpus/

Seed the corpus with real sections, e.g. ``sfunwind`` can write them::

    mkdir -p fuzz/corpus && .venv/bin/python fuzz/sframe_decode.py --seed fuzz/corpus
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

with_atheris = True
try:
    import atheris
except ImportError:  # pragma: no cover - optional
    with_atheris = False

if with_atheris:
    with atheris.instrument_imports():
        from sfunwind.errors import SFrameFormatError
        from sfunwind.sframe import SFrameTable, decode, dump_json, dump_text, encode, validate
else:
    from sfunwind.errors import SFrameFormatError
    from sfunwind.sframe import SFrameTable, decode, dump_json, dump_text, encode, validate


def test_one_input(data: bytes) -> None:
    try:
        section = decode(data, section_address=0x400000)
    except SFrameFormatError:
        try:
            SFrameTable.from_bytes(data, section_address=0x400000)
        except SFrameFormatError:
            return
        raise AssertionError("from_bytes accepted a section decode refused") from None
    validate(section, kernel=True)
    dump_text(section, filename="fuzz")
    dump_json(section)
    decode(encode(section), section_address=0x400000)
    t1 = SFrameTable(section)
    t2 = SFrameTable.from_bytes(data, section_address=0x400000)
    if section.fdes:
        lo = min(f.start for f in section.fdes)
        pcs = np.arange(lo, lo + 512, dtype=np.uint64)
        r1, r2 = t1.find_many(pcs), t2.find_many(pcs)
        assert np.array_equal(r1.found, r2.found)
        for pc in pcs[::17].tolist():
            with contextlib.suppress(SFrameFormatError):  # a malformed FRE may be hit
                t1.find(pc)


def write_seeds(out: Path) -> None:
    """Real sections from the test corpus as seed inputs."""
    from sfunwind.elf import ElfFile

    out.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[1] / "tests" / "data" / "sframe"
    n = 0
    for f in sorted(root.glob("v*/*")):
        if f.suffix or not f.is_file():
            continue
        with ElfFile.open(f) as elf:
            sec = elf.section(".sframe")
            if sec is not None and sec.size:
                (out / f"{f.parent.name}-{f.name}.sframe").write_bytes(sec.data())
                n += 1
    print(f"wrote {n} seeds to {out}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seed":
        write_seeds(Path(sys.argv[2]))
        return
    if not with_atheris:
        sys.exit("atheris is not installed (pip install atheris); it is optional")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
