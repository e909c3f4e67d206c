#!/usr/bin/env python3
"""Build the CFI -> SFrame proof corpus (tests/data/cfi/corpus.tar.xz) in the sid chroot.

Compiles real C sources — our own (tests/data/cfi/src/) and real-world code from Debian
source packages (zlib, bzip2, lua5.4; fetched with ``apt-get source --download-only``) —
with the sid toolchain (gcc 16, binutils 2.47) and ``-O2 -Wa,--gsframe-3``, for aarch64 and
x86-64, with and without frame pointers and pac-ret, and records for every object gas's
warnings (``no SFrame FDE emitted; <reason>``).  Output: one ``.tar.xz`` holding the objects
and ``manifest.json`` (commands, warnings, toolchain versions).

Usage (as root, chroot built by tools/sid-toolchain):
    tools/build_cfi_corpus.py [--sid /work/toolchains/sid] [--out tests/data/cfi/corpus.tar.xz]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OWN = REPO / "tests/data/cfi/src"
SOURCES_LIST = REPO / "tests/data/cfi/sources.txt"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

VARIANTS = {
    "aarch64": {
        "O2": "-O2",
        "O2-fp": "-O2 -fno-omit-frame-pointer",
        "O2-pac": "-O2 -mbranch-protection=pac-ret",
        "O2-fp-pacb": "-O2 -fno-omit-frame-pointer -mbranch-protection=pac-ret+b-key",
        "O2-std": "-O2 -mbranch-protection=standard",
    },
    "aarch64_be": {
        "O2-pac": "-O2 -mbranch-protection=pac-ret",
        "O2-fp-pacb": "-O2 -fno-omit-frame-pointer -mbranch-protection=pac-ret+b-key",
    },
    "x86_64": {
        "O2": "-O2",
        "O2-fp": "-O2 -fno-omit-frame-pointer",
    },
}
#: Defines a package's own build would pass (what its configure script decides).
EXTRA_FLAGS = {"zlib": "-DHAVE_UNISTD_H -DHAVE_STDARG_H -D_LARGEFILE64_SOURCE=1",
               "bzip2": "-D_FILE_OFFSET_BITS=64", "lua5.4": "-DLUA_COMPAT_5_3 -DLUA_USE_POSIX"}
#: Flags one source needs (-fexceptions: cleanup handlers -> personality + LSDA in the CFI).
SOURCE_FLAGS = {"cleanup.c": "-fexceptions"}
COMPILERS = {"aarch64": "aarch64-linux-gnu-gcc", "x86_64": "x86_64-linux-gnu-gcc",
             # Big-endian code from the same cross compiler; Debian has no lp64_be libc, so
             # an empty gnu/stubs-lp64_be.h stands in (only the CFI of the objects matters).
             "aarch64_be": "aarch64-linux-gnu-gcc -mbig-endian -I{work}/beinc"}


def run(sid: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(sid), "/usr/bin/env", "-i", "HOME=/root", "LANG=C.UTF-8",
         f"PATH={CHROOT_PATH}", "/bin/bash", "-c", script],
        capture_output=True, text=True, check=False)


def sources() -> list[tuple[str, str, str]]:
    """(package, relative path, archs) from tests/data/cfi/sources.txt."""
    out = []
    for line in SOURCES_LIST.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        package, path, *rest = line.split()
        out.append((package, path, rest[0] if rest else "aarch64,aarch64_be,x86_64"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sid", type=Path, default=Path("/work/toolchains/sid"))
    ap.add_argument("--out", type=Path, default=REPO / "tests/data/cfi/corpus.tar.xz")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cfi-corpus-", dir=args.sid / "tmp"))
    inside = "/" + str(work.relative_to(args.sid))
    try:
        src = work / "src"
        src.mkdir()
        packages = sorted({p for p, _, _ in sources() if p != "own"})
        r = run(args.sid, f"cd {inside}/src && apt-get source --download-only "
                f"{' '.join(packages)} >/dev/null 2>&1; "
                "for f in *.orig.tar.*; do tar xf $f; done; ls")
        dirs = {p: next((d for d in r.stdout.split() if d.startswith(p.replace("5.4", "-5.4"))
                         or d.startswith(p)), None) for p in packages}
        shutil.copytree(OWN, src / "own")
        (work / "beinc/gnu").mkdir(parents=True)
        (work / "beinc/gnu/stubs-lp64_be.h").write_text("/* empty: see COMPILERS */\n")
        versions = run(args.sid, "gcc --version | head -1; as --version | head -1; "
                       "aarch64-linux-gnu-gcc --version | head -1").stdout.splitlines()
        manifest: dict = {"toolchain": versions, "objects": {}}
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz", preset=9) as tar:
            for package, rel, archs in sources():
                pdir = "own" if package == "own" else dirs.get(package)
                if pdir is None:
                    print(f"missing source package {package}", file=sys.stderr)
                    return 1
                for arch in archs.split(","):
                    for variant, flags in VARIANTS[arch].items():
                        name = f"{arch}/{variant}/{package}-{Path(rel).stem}.o"
                        out = work / "obj" / name
                        out.parent.mkdir(parents=True, exist_ok=True)
                        cmd = (f"{COMPILERS[arch].format(work=inside)} {flags} {EXTRA_FLAGS.get(package, '')} "
                               f"{SOURCE_FLAGS.get(Path(rel).name, '')} "
                               "-Wa,--gsframe-3 -c "
                               f"{Path(rel).name} -o {inside}/obj/{name}")
                        incdir = f"{inside}/src/{pdir}/{Path(rel).parent}"
                        res = run(args.sid, f"cd {incdir} && {cmd}")
                        if res.returncode != 0:
                            print(f"{name}: {res.stderr}", file=sys.stderr)
                            return 1
                        warnings = [ln.split("Warning: ", 1)[1] for ln in
                                    res.stderr.splitlines() if "Warning: " in ln
                                    and "SFrame" in ln]
                        manifest["objects"][name] = {"command": cmd, "source": f"{package}:{rel}",
                                                     "sframe_warnings": warnings}
                        tar.add(out, arcname=name)
            data = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        args.out.write_bytes(buf.getvalue())
        print(f"{args.out}: {len(manifest['objects'])} objects, {len(buf.getvalue())} bytes")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
