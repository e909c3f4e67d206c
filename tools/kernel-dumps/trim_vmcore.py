#!/usr/bin/env python3
"""trim_vmcore.py FULL_CORE OUT_CORE [--strace LOG]... [--layout LAYOUT.json] [--info OUT.json]

Write a small ELF vmcore that keeps the ELF header and the notes (NT_PRSTATUS
per vCPU, VMCOREINFO, ...) of FULL_CORE and only these physical pages:

  --strace LOG      every page a traced program read from FULL_CORE
                    (strace -f -y -s 0 -e trace=pread64 -o LOG drgn ...)
  --layout L.json   every page vmcore_lib.kernel_walk() reads: all task_structs
                    and whole task stacks (init_task list, threads, idle tasks),
                    each CPU's runqueue, IRQ stack and static per-cpu area,
                    the kernel image .data/.bss, and the translation-table
                    pages needed to reach all of them from swapper_pg_dir

Pages are 4 KiB; each run of adjacent pages becomes one PT_LOAD with
p_paddr == p_vaddr == physical address (like QEMU's own dumps).  Data starts
page-aligned in the file.  Reading anything else from the trimmed core fails.
"""
import json
import os
import pathlib
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmcore_lib import PAGE, Core, kernel_walk

TAIL = re.compile(r', (\d+), (\d+)\) = (\d+)\s*$')  # ..., count, offset) = bytes read


def pages_from_strace(log, core_path, core):
    """Physical page numbers read from core_path according to an strace log."""
    want = os.path.realpath(core_path)
    pending = {}
    pages = set()
    n = 0

    def add(off, count):
        for base, size, foff in core.loads:
            if foff <= off < foff + size:
                a0 = base + off - foff
                a1 = min(a0 + count, base + size)
                pages.update(range(a0 // PAGE, (a1 + PAGE - 1) // PAGE))
                return

    for line in pathlib.Path(log).read_text(errors="replace").splitlines():
        parts = line.split(None, 1)
        body = parts[1] if parts and parts[0].isdigit() and len(parts) > 1 else line
        pid = parts[0] if parts and parts[0].isdigit() else "0"
        if body.startswith("pread64("):
            m = re.match(r'pread64\(\d+<([^>]*)>,', body)
            if not m:
                continue
            path = m.group(1)
            if "<unfinished ...>" in body:
                pending[pid] = path
                continue
            t = TAIL.search(body)
            if t and os.path.realpath(path) == want:
                add(int(t.group(2)), int(t.group(3)))
                n += 1
        elif body.startswith("<... pread64 resumed>"):
            path = pending.pop(pid, None)
            t = TAIL.search(body)
            if path and t and os.path.realpath(path) == want:
                add(int(t.group(2)), int(t.group(3)))
                n += 1
    return pages, n


def write_core(core, pages, out):
    runs = []
    for pg in sorted(pages):
        if runs and runs[-1][1] == pg:
            runs[-1][1] = pg + 1
        else:
            runs.append([pg, pg + 1])
    notes = [p for p in core.phdrs if p[0] == 4]
    load_flags = next((p[1] for p in core.phdrs if p[0] == 1), 7)
    core.f.seek(0)
    eh = bytearray(core.f.read(64))
    nph = len(notes) + len(runs)
    struct.pack_into("<Q", eh, 32, 64)        # e_phoff
    struct.pack_into("<Q", eh, 40, 0)         # e_shoff
    struct.pack_into("<HHHH", eh, 54, 56, nph, 0, 0)  # e_phentsize, e_phnum, e_shentsize, e_shnum
    struct.pack_into("<H", eh, 62, 0)         # e_shstrndx
    off = 64 + 56 * nph
    ph = []
    blobs = []
    for p in notes:
        core.f.seek(p[2])
        blob = core.f.read(p[5])
        ph.append(struct.pack("<IIQQQQQQ", 4, 0, off, 0, 0, len(blob), len(blob), 0))
        blobs.append(blob)
        off += len(blob)
    pad = (-off) % PAGE
    blobs.append(b"\0" * pad)
    off += pad
    for a, b in runs:
        pa0, n = a * PAGE, (b - a) * PAGE
        blob = core.read_phys(pa0, n)
        ph.append(struct.pack("<IIQQQQQQ", 1, load_flags, off, pa0, pa0, n, n, 0))
        blobs.append(blob)
        off += n
    with open(out, "wb") as o:
        o.write(eh)
        o.write(b"".join(ph))
        for blob in blobs:
            o.write(blob)
    return runs, off


def main(argv):
    args = argv[1:]
    straces, layout, info = [], None, None
    pos = []
    i = 0
    while i < len(args):
        if args[i] == "--strace":
            straces.append(args[i + 1])
            i += 2
        elif args[i] == "--layout":
            layout = args[i + 1]
            i += 2
        elif args[i] == "--info":
            info = args[i + 1]
            i += 2
        else:
            pos.append(args[i])
            i += 1
    if len(pos) != 2 or not (straces or layout):
        print(__doc__)
        return 2
    full, out = pos
    core = Core(full)
    pages = set()
    stats = {}
    for log in straces:
        p, n = pages_from_strace(log, full, core)
        stats[f"strace:{os.path.basename(log)}"] = {"preads": n, "pages": len(p)}
        pages |= p
    if layout:
        walk_core = Core(full)
        summary = kernel_walk(walk_core, json.loads(pathlib.Path(layout).read_text()))
        stats["kernel_walk"] = {"pages": len(walk_core.touched), "tasks": len(summary["tasks"])}
        pages |= walk_core.touched
    runs, size = write_core(core, pages, out)
    stats.update(pages=len(pages), pt_load_runs=len(runs), bytes=size)
    print(f"{os.path.basename(out)}: {len(pages)} pages in {len(runs)} PT_LOADs, {size} bytes "
          f"({', '.join(f'{k} {v}' for k, v in stats.items() if isinstance(v, dict))})")
    if info:
        with open(info, "w") as f:
            json.dump(stats, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
