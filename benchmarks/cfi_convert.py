"""DWARF CFI -> SFrame v3 on a whole vmlinux: sfunwind vs readelf and pyelftools.

Input: the Debian 7.2.13 cloud arm64 vmlinux (tests/data/linux-7.2.13-cloud-arm64/
vmlinux.debug.xz, 57,921 FDEs in .debug_frame), decompressed once into the cache directory.
In one run it times:

* sfunwind: open the ELF, parse ``.debug_frame``, translate every FDE the way gas does, and
  encode the ``.sframe`` section (no cache; best of 3, wall and CPU time, in a fresh child
  process so its peak RSS is its own);
* ``readelf --debug-dump=frames-interp`` on the same file (binutils, C; output discarded;
  best of 3) — target: sfunwind within 2x;
* pyelftools: ``get_dwarf_info().CFI_entries()`` plus ``get_decoded()`` of every entry —
  target: sfunwind at least 20x faster.  (Slow: ~30 s; ``--quick`` leaves it out.)
* the cached path: ``sfunwind.cfi.kernel_sframe_bytes`` a second time (build-ID cache hit).

Peak memory target: under 1 GB.  Run: ``.venv/bin/python benchmarks/cfi_convert.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VMLINUX_XZ = ROOT / "tests/data/linux-7.2.13-cloud-arm64/vmlinux.debug.xz"
SID = Path("/work/toolchains/sid")

CHILD = r"""
import json, resource, sys, time
i0 = time.perf_counter()
from sfunwind.cfi.elfsource import load_elf_cfi
from sfunwind.cfi.to_sframe import convert_frame_section
t0 = time.perf_counter(); c0 = time.process_time()
elf = load_elf_cfi(sys.argv[1])
frames = elf.frames(".debug_frame")
conv = convert_frame_section(frames, elf.arch)
data = conv.encode((elf.text_end() + 7) & ~7)
t1 = time.perf_counter(); c1 = time.process_time()
print(json.dumps({"wall": t1 - t0, "cpu": c1 - c0, "imports": t0 - i0, "fdes": conv.source_fdes,
                  "sframe_fdes": conv.num_fdes, "fres": conv.num_fres,
                  "refused": len(conv.refusals), "bytes": len(data),
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def ours(path: Path) -> dict:
    """One conversion in a fresh interpreter (timed after the imports, reported apart)."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def readelf_cmd() -> list[str] | None:
    if shutil.which("readelf"):
        return ["readelf"]
    if (SID / "usr/bin/readelf").exists() and os.geteuid() == 0:
        return ["chroot", str(SID), "/usr/bin/readelf"]
    return None


def time_readelf(cmd: list[str], path: Path) -> tuple[float, float]:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([*cmd, "--debug-dump=frames-interp", str(path)], stdout=subprocess.DEVNULL,
                   check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)


def time_pyelftools(path: Path) -> dict:
    import elftools
    from elftools.elf.elffile import ELFFile

    t0 = time.perf_counter()
    c0 = time.process_time()
    with open(path, "rb") as f:
        entries = ELFFile(f).get_dwarf_info().CFI_entries()
        rows = 0
        for e in entries:
            if hasattr(e, "get_decoded"):
                rows += len(e.get_decoded().table)
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "entries": len(entries), "rows": rows,
            "version": elftools.__version__}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vmlinux", type=Path, default=VMLINUX_XZ)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="skip the ~30 s pyelftools run")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from sfunwind.cfi import _materialize, cache_directory, kernel_sframe_bytes, load_elf_cfi

    cache = cache_directory(args.cache_dir)
    path = _materialize(args.vmlinux, cache)
    build_id = load_elf_cfi(path).build_id
    print(f"input: {path} (build ID {build_id})")

    runs = [ours(path) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["wall"])
    print(f"sfunwind from-cfi: {best['fdes']} FDEs -> {best['sframe_fdes']} SFrame FDEs, "
          f"{best['refused']} refused, {best['fres']} FREs, {best['bytes']} bytes")
    print(f"  wall {best['wall']:.3f} s  cpu {min(r['cpu'] for r in runs):.3f} s  "
          f"(+ {best['imports']:.3f} s interpreter imports)  peak RSS {max(r['maxrss_kb'] for r in runs) / 1024:.0f} MB (target < 1024 MB)")

    cmd = readelf_cmd()
    if cmd is None:
        print("readelf: not available (skipped)")
    else:
        version = subprocess.run([*cmd, "--version"], capture_output=True, text=True).stdout
        times = [time_readelf(cmd, path) for _ in range(args.repeat)]
        rw = min(t[0] for t in times)
        rc = min(t[1] for t in times)
        print(f"readelf --debug-dump=frames-interp ({version.splitlines()[0]}): "
              f"wall {rw:.3f} s  cpu {rc:.3f} s")
        print(f"  ratio sfunwind/readelf: wall {best['wall'] / rw:.2f}x  "
              f"cpu {min(r['cpu'] for r in runs) / rc:.2f}x  (target <= 2x)")

    with tempfile.TemporaryDirectory() as tmp:
        kernel_sframe_bytes(path, tmp)
        t0 = time.perf_counter()
        kernel_sframe_bytes(path, tmp)
        print(f"cached second run (kernel_sframe_bytes, build-ID hit): "
              f"{time.perf_counter() - t0:.3f} s")

    import elftools

    # The peer is measured in this run, every run (never a remembered number); --quick
    # leaves it out and prints no ratio against it.
    if args.quick:
        print("pyelftools: not measured (--quick)")
        return 0
    pe = time_pyelftools(path)
    note = f" (pyelftools {elftools.__version__})"
    print(f"pyelftools {pe['version']} CFI_entries + get_decoded: {pe['seconds']:.1f} s "
          f"({pe['entries']} entries, {pe['rows']} rows){note}")
    ours_cpu = min(r["cpu"] for r in runs)
    print(f"  ratio pyelftools/sfunwind: wall {pe['seconds'] / best['wall']:.1f}x  "
          f"cpu {pe.get('cpu', pe['seconds']) / ours_cpu:.1f}x  (target >= 20x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
