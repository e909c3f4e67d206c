"""Shared access to the linux-7.2.13-cloud-arm64 vmcore fixtures (tests/data/...)."""

from __future__ import annotations

import functools
import json
import lzma
from pathlib import Path

DATA = Path(__file__).parent / "data" / "linux-7.2.13-cloud-arm64"
VMLINUX = DATA / "vmlinux.debug.xz"
#: The generic arm64 flavour with 16 KiB pages (52-bit VA, LPA2, 4 levels): dumps "16k/NAME".
DATA16 = Path(__file__).parent / "data" / "linux-7.2.13-arm64-16k"
VMLINUX16 = DATA16 / "vmlinux.debug.xz"
DUMPS = [
    "nokaslr/irq-in-fault", "nokaslr/el1-abort", "nokaslr/softirq-irqstack",
    "nokaslr/nested-irq", "nokaslr/hrtimer-plus8", "nokaslr/hrtimer-plus12",
    "kaslr/irq-in-fault", "kaslr/el1-abort",
    "va48/el1-abort", "va48/irq-in-fault",  # -cpu max,lpa2=off: 48-bit VA, 4 levels
    "16k/el1-abort", "16k/irq-in-fault",  # another build: 16 KiB pages, 52-bit VA, 4 levels
]
BOOTS = ["nokaslr", "kaslr", "va48", "16k"]
#: Threads per boot (init_task's list with threads, plus the idle task of CPU 1).
TASK_COUNT = {"nokaslr": 72, "kaslr": 73, "va48": 74, "16k": 70}


def _where(name: str) -> tuple[Path, str, Path]:
    """(fixture directory, dump path inside it, vmlinux) of a dump name."""
    if name.startswith("16k/"):
        return DATA16, "nokaslr/" + name[4:], VMLINUX16
    return DATA, name, VMLINUX


def vmlinux_for(name: str) -> Path:
    return _where(name)[2]


def boot_dir(boot: str) -> Path:
    """The directory of a boot's files (sysrq-t.txt, console.log.xz, ...)."""
    return DATA16 / "nokaslr" if boot == "16k" else DATA / boot


def vmcore(name: str) -> Path:
    data, rel, _ = _where(name)
    return data / f"{rel}.vmcore.xz"


@functools.cache
def drgn_reference(name: str) -> dict:
    """drgn 0.3.0's reference output for dump *name* (see the fixture README)."""
    data, rel, _ = _where(name)
    with lzma.open(data / f"{rel}.drgn.json.xz") as f:
        return json.load(f)


@functools.cache
def program(name: str):
    from sfunwind.kernel.program import KernelProgram

    return KernelProgram.open(vmcore(name), vmlinux_for(name))


@functools.cache
def symbols(vmlinux: Path = VMLINUX):
    from sfunwind.kernel.symbols import Symbolizer

    return Symbolizer.from_vmlinux(vmlinux)


def hexint(value: str | None) -> int | None:
    return None if value is None else int(value, 16)


def write_core(path: Path, notes: bytes, pages: dict[int, bytes], page_size: int = 4096) -> None:
    """An aarch64 ELF core with one PT_NOTE (*notes*, raw) and one PT_LOAD per run of
    consecutive physical pages (*pages*: page frame number -> page_size bytes)."""
    import struct

    runs: list[tuple[int, bytearray]] = []
    for pfn in sorted(pages):
        if runs and runs[-1][0] + len(runs[-1][1]) // page_size == pfn:
            runs[-1][1].extend(pages[pfn])
        else:
            runs.append((pfn, bytearray(pages[pfn])))
    phnum = 1 + len(runs)
    data_at = 64 + 56 * phnum
    note_at = data_at
    load_at = note_at + len(notes)
    load_at += -load_at % page_size
    phdrs = [struct.pack("<IIQQQQQQ", 4, 0, note_at, 0, 0, len(notes), len(notes), 4)]
    offset = load_at
    for pfn, blob in runs:
        pa = pfn * page_size
        phdrs.append(struct.pack("<IIQQQQQQ", 1, 7, offset, pa, pa, len(blob), len(blob), 0))
        offset += len(blob)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\0" * 9, 4, 183, 1, 0,
                       64, 0, 0, 64, 56, phnum, 64, 0, 0)
    with open(path, "wb") as f:
        f.write(ehdr + b"".join(phdrs))
        f.write(notes)
        f.write(b"\0" * (load_at - note_at - len(notes)))
        for _, blob in runs:
            f.write(blob)


def core_pages(core) -> dict[int, bytes]:
    """Every page of an ElfCore, by page frame number."""
    out = {}
    for seg in core.segments:
        for off in range(0, seg.size, 4096):
            out[(seg.paddr + off) // 4096] = core.read_physical(seg.paddr + off, 4096)
    return out


def core_notes(core) -> bytes:
    """The raw bytes of the core's PT_NOTE segment."""
    import struct

    out = bytearray()
    for note in core.notes:
        name = note.name.encode() + b"\0"
        out += struct.pack("<III", len(name), len(note.desc), note.type)
        out += name + b"\0" * (-len(name) % 4)
        out += note.desc + b"\0" * (-len(note.desc) % 4)
    return bytes(out)
