#!/usr/bin/env python3
"""package_fixture.py -- turn make_dumps.py output into a tests/data fixture directory.

usage: package_fixture.py --dest tests/data/NAME --vmlinux-debug vmlinux.debug.xz
                          --config CONFIG [--readme README.md] BOOT=OUT_DIR ...

Each BOOT=OUT_DIR (e.g. nokaslr=OUT, kaslr=OUT-kaslr) is a make_dumps.py output directory;
it becomes DEST/BOOT/ with:

  NAME.vmcore.xz                copied (already xz -9e)
  NAME.drgn.json.xz / .txt.xz   drgn's reference, xz -9e (the tests read them compressed)
  console.log.xz                the boot's serial console, xz -9e
  sysrq-t.txt, sysrq-l.txt, qemu-cmdline.txt, gdb-cmds.gdb, summary.json   copied

and DEST/ gets vmlinux.debug.xz, layout.json (from the first boot), the kernel config,
guest-init.sh (this directory's init.sh), the README and SHA256SUMS of every file.
Only the Python standard library and the xz command are used.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
COPY = ("sysrq-t.txt", "sysrq-l.txt", "qemu-cmdline.txt", "gdb-cmds.gdb", "summary.json")


def xz(src: pathlib.Path, dst: pathlib.Path) -> None:
    with open(dst, "wb") as out:
        subprocess.run(["xz", "-9e", "-T1", "-c", str(src)], stdout=out, check=True)


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", required=True, type=pathlib.Path)
    ap.add_argument("--vmlinux-debug", required=True, type=pathlib.Path,
                    help="vmlinux.debug.xz made by reduce_vmlinux.sh")
    ap.add_argument("--config", required=True, type=pathlib.Path, help="the kernel's config")
    ap.add_argument("--readme", type=pathlib.Path, help="README.md for the fixture")
    ap.add_argument("boots", nargs="+", metavar="BOOT=OUT_DIR")
    a = ap.parse_args(argv)
    if a.dest.exists() and any(a.dest.iterdir()):
        print(f"{a.dest} exists and is not empty", file=sys.stderr)
        return 2
    a.dest.mkdir(parents=True, exist_ok=True)
    layout = None
    for spec in a.boots:
        boot, _, out = spec.partition("=")
        src = pathlib.Path(out)
        if not boot or not src.is_dir():
            print(f"bad BOOT=OUT_DIR: {spec}", file=sys.stderr)
            return 2
        dst = a.dest / boot
        dst.mkdir()
        for vmcore in sorted(src.glob("*.vmcore.xz")):
            name = vmcore.name[:-len(".vmcore.xz")]
            shutil.copyfile(vmcore, dst / vmcore.name)
            for ext in ("drgn.json", "drgn.txt"):
                xz(src / f"{name}.{ext}", dst / f"{name}.{ext}.xz")
        xz(src / "console.log", dst / "console.log.xz")
        for name in COPY:
            if (src / name).exists():
                shutil.copyfile(src / name, dst / name)
        if layout is None and (src / "layout.json").exists():
            layout = src / "layout.json"
    if layout is not None:
        shutil.copyfile(layout, a.dest / "layout.json")
    shutil.copyfile(a.vmlinux_debug, a.dest / "vmlinux.debug.xz")
    shutil.copyfile(a.config, a.dest / a.config.name)
    shutil.copyfile(HERE / "init.sh", a.dest / "guest-init.sh")
    if a.readme:
        shutil.copyfile(a.readme, a.dest / "README.md")
    files = sorted(p for p in a.dest.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    lines = [f"{sha256(p)}  {p.relative_to(a.dest)}" for p in files]
    (a.dest / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    total = sum(p.stat().st_size for p in files)
    print(f"{a.dest}: {len(files)} files, {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
