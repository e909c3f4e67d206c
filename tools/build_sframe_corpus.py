#!/usr/bin/env python3
"""Regenerate the SFrame fixture corpus in tests/data/sframe/ with the real GNU toolchains.

Three toolchains, three SFrame versions (see tests/data/sframe/README.md for exact versions):

* ``v3-binutils-2.47``: the Debian sid chroot (``tools/sid-toolchain /work/toolchains/sid``):
  gcc 16 and binutils 2.47 (native x86-64 and aarch64-linux-gnu);
* ``v2-binutils-2.44``: a Debian trixie chroot (``tools/sframe_trixie_toolchain.sh
  /work/toolchains/trixie``): binutils 2.44 (as, ld, objdump, libsframe) and gcc 14 (only as
  the driver that links the glibc PIE);
* ``v1-binutils-2.40``: this Debian 12 host: binutils 2.40 (``binutils`` and
  ``binutils-aarch64-linux-gnu``), gcc 12 (driver for the glibc PIE); libsframe 2.40 comes from
  bookworm's ``binutils-dev`` package, unpacked (not installed) with ``apt-get download``.

All C is compiled once, to assembly, by sid's gcc 16 (``-S``); every toolchain then assembles
that assembly and the hand-written ``.S`` files with its own ``as --gsframe`` and links with its
own ``ld``.  So the three versions describe the same machine code wherever their assemblers
accept the CFI.  (binutils < 2.45 does not know gcc 16's AArch64 build-attribute directives
``.aeabi_subsection`` / ``.aeabi_attribute``; they are removed for v1/v2: they only describe
BTI/PAC/GCS feature bits and change neither code nor CFI.)

For every fixture the script records, next to it:

* ``NAME.objdump-<ver>.txt``: stdout of ``objdump --sframe NAME`` of binutils <ver> (2.47, 2.44,
  2.40; ``aarch64-linux-gnu-objdump`` for AArch64 files), and ``NAME.objdump-<ver>.err`` with
  the exit status and stderr when objdump failed or complained;
* for AArch64 ``.o`` files also ``NAME.objdump-2.47-generic.txt``: the native x86-64 objdump
  (BFD target ``elf64-little``), which does not apply AArch64 relocations;
* ``NAME.libsframe-<ver>.txt.xz``: the output of ``tools/libsframe_oracle.c`` built against
  the libsframe of the same binutils (see ORACLES), for linked files (libsframe needs a sorted, relocated section): every PC of
  every FDE, gap PCs and PCs just outside.

and ``manifest.json`` listing all of it (``discarded``: a v3 x86-64 link with
``--discard-sframe``, whose ``.sframe`` is empty).  Binaries over 32 KiB are stored xz-compressed.

Everything is reproducible: each source is compiled separately (no random temporary object
names), links use ``--build-id=none``, work directories have fixed names, and xz output is
deterministic; running the script twice gives byte-identical files.

Usage (as root, from the repository; needs pyelftools, i.e. the project venv):
    .venv/bin/python tools/build_sframe_corpus.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "tests/data/sframe/src"
ORACLE_SRC = REPO / "tools/libsframe_oracle.c"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WORK_NAME = "sframe-corpus"
COMPRESS_ABOVE = 32 * 1024

#: a64 = AArch64 little-endian, a64be = AArch64 big-endian (SFrame ABI 1, the whole section
#: big-endian; same sources, gcc -mbig-endian, as/ld -EB), x64 = x86-64, s390x (SFrame ABI 4,
#: big-endian; binutils writes SFrame for it from 2.45, so v3 only)
ARCHES = ("a64", "a64be", "x64", "s390x")
GCC = {"a64": "aarch64-linux-gnu-gcc", "a64be": "aarch64-linux-gnu-gcc -mbig-endian",
       "x64": "gcc", "s390x": "s390x-linux-gnu-gcc"}
AS = {"a64": "aarch64-linux-gnu-as", "a64be": "aarch64-linux-gnu-as -EB", "x64": "as",
      "s390x": "s390x-linux-gnu-as"}
LD = {"a64": "aarch64-linux-gnu-ld", "a64be": "aarch64-linux-gnu-ld -EB", "x64": "ld",
      "s390x": "s390x-linux-gnu-ld"}
OBJDUMP = {"a64": "aarch64-linux-gnu-objdump", "a64be": "aarch64-linux-gnu-objdump",
           "x64": "objdump", "s390x": "s390x-linux-gnu-objdump"}
#: hand-written sources per arch (a64be shares the AArch64 ones)
ASM_SRC = {"a64": "a64", "a64be": "a64", "x64": "x64", "s390x": "s390x"}
#: packages the sid chroot needs beyond tools/sid-toolchain's list (s390x)
SID_EXTRA = "binutils-s390x-linux-gnu gcc-s390x-linux-gnu"
COPY_FLAGS = "-O2 -ffreestanding -fno-stack-protector"
#: C variants of mini.c: name suffix -> extra gcc flags
VARIANTS = {
    "a64": {
        "": "",
        "-fp": "-fno-omit-frame-pointer -mno-omit-leaf-frame-pointer",
        "-pac": "-mbranch-protection=pac-ret",
        "-pacb": "-mbranch-protection=pac-ret+leaf+b-key",
    },
    "a64be": {
        "": "",
        "-pacb": "-mbranch-protection=pac-ret+leaf+b-key",
    },
    "x64": {
        "": "",
        "-fp": "-fno-omit-frame-pointer",
    },
    "s390x": {
        "": "",
        "-fp": "-fno-omit-frame-pointer",
    },
}
#: which libsframe answers for which SFrame version.  2.47 cannot decode v1; for v2 written by
#: 2.44 (no FUNC_START_PCREL flag) 2.47 decodes but looks up at the wrong addresses (it treats
#: every start as PC-relative): recorded to document that, the reference for v2 is 2.44; 2.44
#: aborts (assertion in sframe_fre_start_addr_size) on some v1 sections.
ORACLES = {3: ("2.47",), 2: ("2.44", "2.47"), 1: ("2.40",)}
LINK_STATIC = "-static --build-id=none -z noseparate-code"
LINK_PIE = "-pie --no-dynamic-linker --build-id=none -z noseparate-code -z text"


@dataclass
class Toolchain:
    name: str  # directory name under tests/data/sframe
    sframe_version: int
    binutils: str  # objdump/libsframe version label
    root: Path | None  # chroot directory, None = the host
    glibc_pie_arches: tuple[str, ...]
    arches: tuple[str, ...] = ("a64", "a64be", "x64")
    work_dir: Path | None = None  # default: <root>/tmp/sframe-corpus-<name>

    @property
    def work(self) -> Path:
        if self.work_dir is not None:
            return self.work_dir
        base = self.root / "tmp" if self.root else Path("/tmp")
        return base / f"{WORK_NAME}-{self.name}"

    def inside(self, path: Path) -> str:
        if self.root is None:
            return str(path)
        return "/" + str(path.relative_to(self.root))

    def run(self, command: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        script = f"cd {self.inside(cwd)} && {command}"
        if self.root is None:
            argv = ["/usr/bin/env", "-i", "HOME=/root", "LANG=C.UTF-8", "LC_ALL=C.UTF-8",
                    f"PATH={CHROOT_PATH}", "/bin/bash", "-c", script]
        else:
            argv = ["chroot", str(self.root), "/usr/bin/env", "-i", "HOME=/root", "LANG=C.UTF-8",
                    "LC_ALL=C.UTF-8", f"PATH={CHROOT_PATH}", "/bin/bash", "-c", script]
        proc = subprocess.run(argv, capture_output=True)
        if check and proc.returncode != 0:
            sys.stderr.write(proc.stderr.decode(errors="replace"))
            raise SystemExit(f"{self.name}: command failed: {command}")
        return proc


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9)


def host_libsframe_240() -> str:
    """Unpack bookworm's binutils-dev (libsframe 2.40) once; return the -I/-L flags."""
    cache = Path("/tmp") / f"{WORK_NAME}-binutils-dev-2.40"
    if not (cache / "usr/include/sframe-api.h").exists():
        fresh_dir(cache)
        debs = cache / "debs"
        debs.mkdir()
        subprocess.run(["apt-get", "-q", "download", "binutils-dev"], cwd=debs, check=True,
                       capture_output=True)
        (deb,) = debs.glob("binutils-dev_*.deb")
        subprocess.run(["dpkg", "-x", str(deb), str(cache)], check=True)
    return f"-I{cache}/usr/include -L{cache}/usr/lib/x86_64-linux-gnu"


def toolchains() -> list[Toolchain]:
    sid = Path(os.environ.get("SFUNWIND_SID_ROOT", "/work/toolchains/sid"))
    trixie = Path(os.environ.get("SFUNWIND_TRIXIE_ROOT", "/work/toolchains/trixie"))
    for root, how in ((sid, "tools/sid-toolchain"), (trixie, "tools/sframe_trixie_toolchain.sh")):
        if not (root / "usr/bin/aarch64-linux-gnu-as").exists():
            raise SystemExit(f"no toolchain chroot at {root} (build it with {how} {root})")
    if not (sid / "usr/bin/s390x-linux-gnu-gcc").exists():
        raise SystemExit(f"the sid chroot lacks the s390x cross tools: EXTRA='{SID_EXTRA}' "
                         f"tools/sid-toolchain {sid}")
    return [
        Toolchain("v3-binutils-2.47", 3, "2.47", sid, ("a64", "x64"), ARCHES),
        Toolchain("v2-binutils-2.44", 2, "2.44", trixie, ("x64",)),
        Toolchain("v1-binutils-2.40", 1, "2.40", None, ("x64",)),
    ]


def generate_assembly(sid: Toolchain, arches: tuple[str, ...] = ARCHES) -> Path:
    """gcc 16 -S for every C variant, cpp for every .S: the assembly all toolchains assemble."""
    gen = fresh_dir(sid.work / "gen")
    for src in sorted(SRC.iterdir()):
        shutil.copy(src, gen / src.name)
    for arch in arches:
        for suffix, flags in VARIANTS[arch].items():
            sid.run(f"{GCC[arch]} {COPY_FLAGS} {flags} -S mini.c -o mini-{arch}{suffix}.s", gen)
        if arch in ("a64", "x64"):  # no big-endian glibc here
            sid.run(f"{GCC[arch]} -O2 -S pie.c -o pie-{arch}.s", gen)
        for stem in ("start", "asm", "big"):
            sid.run(f"{GCC[arch]} -E -P {stem}-{ASM_SRC[arch]}.S -o {stem}-{arch}.s", gen)
    return gen


def build(tc: Toolchain, gen: Path) -> dict[str, Path]:
    """Assemble and link every fixture with *tc*; returns name -> built file."""
    work = fresh_dir(tc.work / "build")
    for s in sorted(gen.glob("*.s")):
        text = s.read_text()
        if tc.sframe_version < 3:
            text = "".join(line for line in text.splitlines(keepends=True)
                           if not line.lstrip().startswith((".aeabi_subsection", ".aeabi_attribute")))
        (work / s.name).write_text(text)
    out: dict[str, Path] = {}
    for arch in tc.arches:
        objs = ["start", "asm", "big"] + [f"mini{sfx}" for sfx in VARIANTS[arch]]
        if arch in tc.glibc_pie_arches:
            objs.append("pie")
        for stem in objs:
            s = f"{stem}-{arch}.s" if not stem.startswith("mini") else f"mini-{arch}{stem[4:]}.s"
            tc.run(f"{AS[arch]} --gsframe -o {s[:-2]}.o {s}", work)
        for sfx in VARIANTS[arch]:
            name = f"mini-{arch}{sfx}"
            tc.run(f"{LD[arch]} {LINK_STATIC} -o {name} start-{arch}.o {name}.o asm-{arch}.o", work)
            out[name] = work / name
        name = f"mini-{arch}-pie"
        page = " -z max-page-size=4096" if arch != "x64" else ""  # not 64 KiB of padding
        tc.run(f"{LD[arch]} {LINK_PIE}{page} -o {name} start-{arch}.o mini-{arch}.o asm-{arch}.o", work)
        out[name] = work / name
        if tc.sframe_version == 3 and arch == "x64":
            # ld 2.46+ --discard-sframe: a size-0 .sframe section and no PT_GNU_SFRAME
            name = f"mini-{arch}-discarded"
            tc.run(f"{LD[arch]} {LINK_STATIC} --discard-sframe -o {name} start-{arch}.o "
                   f"mini-{arch}.o asm-{arch}.o", work)
            out[name] = work / name
        tc.run(f"{LD[arch]} {LINK_STATIC} -o big-{arch} big-{arch}.o", work)
        out[f"big-{arch}"] = work / f"big-{arch}"
        if arch in tc.glibc_pie_arches:
            extra = " -Wl,-z,max-page-size=4096" if arch == "a64" else ""
            tc.run(f"{GCC[arch]} -pie -Wl,--build-id=none -Wl,-z,noseparate-code{extra}"
                   f" -o pie-{arch} pie-{arch}.o", work)
            out[f"pie-{arch}"] = work / f"pie-{arch}"
            if arch == "x64":
                # IBT-enabled PLT: a second PLT (.plt.sec) with its own PCMASK FDE
                tc.run(f"{GCC[arch]} -pie -Wl,--build-id=none -Wl,-z,noseparate-code"
                       f" -Wl,-z,ibtplt -o pie-{arch}-ibtplt pie-{arch}.o", work)
                out[f"pie-{arch}-ibtplt"] = work / f"pie-{arch}-ibtplt"
        if tc.sframe_version == 3:
            # a relocatable link: ld merges the inputs' SFrame into one element
            tc.run(f"{LD[arch]} -r -o mini-{arch}-r.o start-{arch}.o mini-{arch}.o "
                   f"asm-{arch}.o", work)
            out[f"mini-{arch}-r.o"] = work / f"mini-{arch}-r.o"
        out[f"mini-{arch}.o"] = work / f"mini-{arch}.o"
        out[f"asm-{arch}.o"] = work / f"asm-{arch}.o"
    return out


def arch_of(name: str) -> str:
    for arch in ("a64be", "a64", "s390x"):
        if f"-{arch}" in name:
            return arch
    return "x64"


def objdumps(tcs: list[Toolchain], name: str, data: bytes) -> dict[str, tuple[bytes, bytes | None]]:
    """objdump --sframe of every binutils version: label -> (stdout, err-record or None)."""
    arch = arch_of(name)
    runs = [(tc.binutils, tc, OBJDUMP[arch]) for tc in tcs]
    if arch != "x64" and name.endswith(".o"):
        runs.append(("2.47-generic", tcs[0], "objdump"))
    result = {}
    for label, tc, tool in runs:
        d = fresh_dir(tc.work / "dump")
        (d / name).write_bytes(data)
        proc = tc.run(f"{tool} --sframe {name}", d, check=False)
        err = None
        if proc.returncode != 0 or proc.stderr:
            err = f"exit={proc.returncode}\n".encode() + proc.stderr
        result[label] = (proc.stdout, err)
    return result


def sframe_section(data: bytes) -> tuple[bytes, int] | None:
    import io
    elf = ELFFile(io.BytesIO(data))
    sec = elf.get_section_by_name(".sframe")
    if sec is None:
        return None
    return sec.data(), sec["sh_addr"]


def build_oracles(tcs: list[Toolchain]) -> None:
    for tc in tcs:
        d = fresh_dir(tc.work / "oracle")
        shutil.copy(ORACLE_SRC, d / ORACLE_SRC.name)
        flags = host_libsframe_240() if tc.root is None else ""
        tc.run(f"gcc -O2 -Wall -o libsframe_oracle {flags} libsframe_oracle.c -l:libsframe.a", d)


def run_oracle(tc: Toolchain, section: bytes, vma: int) -> bytes:
    d = tc.work / "oracle"
    (d / "section.bin").write_bytes(section)
    proc = tc.run(f"./libsframe_oracle section.bin {vma:#x}", d, check=False)
    if proc.returncode not in (0, 2):
        raise SystemExit(f"{tc.name}: libsframe_oracle crashed ({proc.returncode}): "
                         f"{proc.stderr.decode(errors='replace')}")
    return proc.stdout


def tool_versions(tcs: list[Toolchain]) -> dict[str, dict[str, str]]:
    out = {}
    for tc in tcs:
        cmds = {"as": "as --version | head -n1",
                "aarch64-linux-gnu-as": "aarch64-linux-gnu-as --version | head -n1",
                "gcc-driver": "gcc --version | head -n1"}
        if tc.sframe_version == 3:
            cmds["aarch64-linux-gnu-gcc"] = "aarch64-linux-gnu-gcc --version | head -n1"
        if "s390x" in tc.arches:
            cmds["s390x-linux-gnu-gcc"] = "s390x-linux-gnu-gcc --version | head -n1"
            cmds["s390x-linux-gnu-as"] = "s390x-linux-gnu-as --version | head -n1"
        out[tc.name] = {k: tc.run(v, Path(tc.root or "/")).stdout.decode().strip()
                        for k, v in cmds.items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests/data/sframe",
                    help="output directory (default: tests/data/sframe)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (chroot)")
    tcs = toolchains()
    out_root: Path = args.out
    out_root.mkdir(parents=True, exist_ok=True)
    if out_root.resolve() != (REPO / "tests/data/sframe").resolve():
        fresh_dir(out_root / "src")
        for f in SRC.iterdir():
            shutil.copy(f, out_root / "src" / f.name)

    gen = generate_assembly(tcs[0])
    build_oracles(tcs)
    manifest: dict = {"toolchains": tool_versions(tcs), "fixtures": [], "discarded": []}
    for tc in tcs:
        dest = out_root / tc.name
        fresh_dir(dest)
        built = build(tc, gen)
        for name in sorted(built):
            data = built[name].read_bytes()
            entry: dict = {"toolchain": tc.name, "name": name, "arch": arch_of(name),
                           "sframe_version": tc.sframe_version,
                           "kind": "obj" if name.endswith(".o") else
                                   ("glibc-pie" if name.startswith("pie-") else
                                    "pie" if name.endswith("-pie") else "static"),
                           "size": len(data)}
            if len(data) > COMPRESS_ABOVE:
                entry["file"] = f"{name}.xz"
                (dest / entry["file"]).write_bytes(xz(data))
            else:
                entry["file"] = name
                (dest / name).write_bytes(data)
            entry["objdump"] = {}
            for label, (stdout, err) in objdumps(tcs, name, data).items():
                rec = {"stdout": f"{name}.objdump-{label}.txt", "ok": err is None}
                (dest / rec["stdout"]).write_bytes(stdout)
                if err is not None:
                    rec["err"] = f"{name}.objdump-{label}.err"
                    (dest / rec["err"]).write_bytes(err)
                entry["objdump"][label] = rec
            if name.endswith("-discarded"):
                manifest["discarded"].append(entry)
                continue
            entry["libsframe"] = {}
            sec = sframe_section(data)
            if sec is not None and entry["kind"] != "obj":
                section, vma = sec
                entry["sframe_vma"] = vma
                entry["sframe_size"] = len(section)
                for otc in tcs:
                    if otc.binutils not in ORACLES[tc.sframe_version]:
                        continue
                    text = run_oracle(otc, section, vma)
                    fname = f"{name}.libsframe-{otc.binutils}.txt.xz"
                    (dest / fname).write_bytes(xz(text))
                    entry["libsframe"][otc.binutils] = {
                        "file": fname, "decoded": not text.startswith(b"# decode-error")}
            manifest["fixtures"].append(entry)
            print(f"{tc.name}/{name}: {len(data)} bytes", file=sys.stderr)
    (out_root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
