#!/usr/bin/env python3
"""Rebuild the truth images (tests/data/truth/truth-*.elf) with the sid cross toolchain.

The image is a miniature arm64 "kernel" (tools/truth-image/): exception vectors and entry
code saving a 320-byte pt_regs with a PT_REGS frame record, call_on_irq_stack with the CFI
of the 2026 SFrame series, leaf and unannotated asm, a task stack ending in a FINAL record,
and workloads of real third-party C (zlib, LZ4, xxHash; tools/truth-image/third_party/).

Three builds: ``sibcall`` (-foptimize-sibling-calls, tail calls as ``b``), ``nosibcall``,
and ``sibcall-v6cfi`` (call_on_irq_stack with v6 3/9's CFI as posted, to show its defect).
Linked with --gc-sections from per-function sections: only reachable code is in the image.
Every source is compiled separately (gcc embeds random temporary object names otherwise),
with relative paths; rebuilds are byte-identical (the script prints sha256 sums).

Usage: tools/build_truth_image.py [--sid DIR] [--out DIR] [--check]
  --check  rebuild into a temporary directory and compare with the committed images.

Byte-identical rebuilds are promised for the toolchain recorded in toolchain.txt (written
next to the images); a newer sid gcc/binutils may generate different code.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "tools" / "truth-image"
DEFAULT_OUT = REPO / "tests" / "data" / "truth"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SID_ROOTS = ("/work/toolchains/sid", "/var/cache/sfunwind/sid")

#: Kernel-like code generation: frame records everywhere, PAC-signed return addresses,
#: no FP/SIMD registers, patchable function entries (2 NOPs, as ftrace), SFrame v3.
COMMON_FLAGS = [
    "-O2", "-fno-omit-frame-pointer", "-mbranch-protection=pac-ret",
    "-ffreestanding", "-fno-stack-protector", "-fno-pic", "-fno-pie", "-mgeneral-regs-only",
    "-fno-common", "-fno-strict-aliasing", "-fpatchable-function-entry=2",
    # one section per function/object and --gc-sections at link time: the image holds only
    # the code the workload can reach (no unused zlib/LZ4/xxHash API), so "every workload
    # instruction interrupted" measures the code that runs, not dead library surface
    "-ffunction-sections", "-fdata-sections",
    "-Wa,--gsframe",
    "-I.", "-Ithird_party/zlib", "-Ithird_party/lz4", "-Ithird_party/xxhash",
    "-DZ_SOLO", "-DNO_GZIP",
    "-DLZ4_FREESTANDING=1", "-DLZ4_memcpy=__builtin_memcpy", "-DLZ4_memset=__builtin_memset",
    "-DLZ4_memmove=__builtin_memmove",
    "-DXXH_NO_STDLIB", "-DXXH_VECTOR=0",
]
VARIANTS = {
    "sibcall": ["-foptimize-sibling-calls"],
    "nosibcall": ["-fno-optimize-sibling-calls"],
    # call_on_irq_stack with v6 3/9's CFI exactly as posted (CFA not updated after the
    # pre-indexed stp): kept to demonstrate that defect; the other builds use the fix
    "sibcall-v6cfi": ["-foptimize-sibling-calls", "-DTRUTH_V6_CFI"],
}
OBJECTS = [
    "entry.S", "handlers.c", "workload.c",
    "drive_zlib.c", "drive_lz4_compress.c", "drive_lz4_decompress.c", "drive_xxhash.c",
    "third_party/zlib/adler32.c", "third_party/zlib/deflate.c", "third_party/zlib/trees.c",
    "third_party/zlib/inflate.c", "third_party/zlib/inftrees.c", "third_party/zlib/inffast.c",
    "third_party/zlib/zutil.c",
    "third_party/lz4/lz4.c",
    "third_party/xxhash/xxhash.c",
]


def find_sid(explicit: str | None) -> Path:
    for candidate in ((explicit,) if explicit else SID_ROOTS):
        if candidate and Path(candidate, "usr/bin/aarch64-linux-gnu-gcc").exists():
            return Path(candidate)
    sys.exit("build_truth_image: no sid toolchain chroot (build one with tools/sid-toolchain)")


def in_chroot(root: Path, script: str) -> None:
    result = subprocess.run(
        ["chroot", str(root), "/usr/bin/env", "-i", "HOME=/root", "LANG=C.UTF-8",
         f"PATH={CHROOT_PATH}", "/bin/bash", "-ec", script],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"build_truth_image: build failed:\n{result.stdout}{result.stderr}")


def toolchain_versions(root: Path) -> str:
    """The first line of ``--version`` of the cross gcc, as and ld (recorded with the images:
    byte-identical rebuilds are promised for the same toolchain only)."""
    lines = []
    for tool in ("aarch64-linux-gnu-gcc", "aarch64-linux-gnu-as", "aarch64-linux-gnu-ld"):
        result = subprocess.run(
            ["chroot", str(root), "/usr/bin/env", "-i", f"PATH={CHROOT_PATH}", tool,
             "--version"], capture_output=True, text=True, check=False)
        lines.append(result.stdout.splitlines()[0] if result.stdout else f"{tool}: ?")
    return "\n".join(lines) + "\n"


def build(root: Path, out: Path, *, variants: list[str] | None = None,
          debug: bool = False) -> dict[str, str]:
    """Build *variants* (default: all) into *out*; *debug* adds ``-g`` (gcc's code does not
    depend on it: the text is identical, the ELF gains DWARF for addr2line)."""
    chosen = {v: VARIANTS[v] for v in (variants or VARIANTS)}
    work = Path(tempfile.mkdtemp(prefix="truth-image-", dir=root / "tmp"))
    try:
        src = work / "src"
        shutil.copytree(SOURCES, src)
        inside = "/" + str(src.relative_to(root))
        # Relative source paths: the objects then name only "deflate.c" etc. (no debug info
        # is generated), so the scratch directory's name cannot leak into the images.
        lines = [f"cd {inside}"]
        for variant, flags in chosen.items():
            cflags = " ".join(COMMON_FLAGS + flags + (["-g"] if debug else []))
            objs = []
            for source in OBJECTS:
                obj = f"build-{variant}/" + source.replace("/", "_").rsplit(".", 1)[0] + ".o"
                objs.append(obj)
                lines.append(f"mkdir -p build-{variant}")
                lines.append(f"aarch64-linux-gnu-gcc {cflags} -c {source} -o {obj}")
            lines.append(
                f"aarch64-linux-gnu-gcc -nostdlib -static -Wl,--build-id=none "
                f"-Wl,-z,noseparate-code -Wl,-z,norelro -Wl,--gc-sections -T truth.lds {' '.join(objs)} -lgcc "
                f"-o truth-{variant}.elf")
        in_chroot(root, "\n".join(lines))
        out.mkdir(parents=True, exist_ok=True)
        sums = {}
        for variant in chosen:
            data = (src / f"truth-{variant}.elf").read_bytes()
            (out / f"truth-{variant}.elf").write_bytes(data)
            sums[variant] = hashlib.sha256(data).hexdigest()
        (out / "toolchain.txt").write_text(toolchain_versions(root))
        return sums
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sid", help="the sid toolchain chroot directory")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true",
                        help="rebuild into a temporary directory and compare with --out")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS),
                        help="build only this variant (repeatable; default: all)")
    parser.add_argument("--debug", action="store_true",
                        help="add -g (same code; for mapping PCs to source lines with "
                             "addr2line); never commit such images")
    args = parser.parse_args()
    root = find_sid(args.sid)
    if args.debug and args.out == DEFAULT_OUT:
        parser.error("--debug images are for analysis: give --out elsewhere")
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            sums = build(root, Path(tmp))
            found = (Path(tmp) / "toolchain.txt").read_text()
            bad = [v for v, s in sums.items()
                   if hashlib.sha256((args.out / f"truth-{v}.elf").read_bytes()).hexdigest() != s]
        for variant, digest in sums.items():
            print(f"{digest}  truth-{variant}.elf")
        recorded = (args.out / "toolchain.txt").read_text() \
            if (args.out / "toolchain.txt").exists() else ""
        if bad:
            print(f"differs from {args.out}: {', '.join(bad)}", file=sys.stderr)
            if found != recorded:
                print(f"(the toolchain differs: recorded\n{recorded}found\n{found})",
                      file=sys.stderr)
            return 1
        return 0
    for variant, digest in build(root, args.out, variants=args.variant,
                                 debug=args.debug).items():
        print(f"{digest}  truth-{variant}.elf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
