"""Corrupt vmcores: seeded byte flips in headers, notes, page tables and task structs give
typed errors (or a degraded but bounded answer), never a traceback or a hang."""

from __future__ import annotations

import random
import zlib

import pytest

from kernel_fixtures import VMLINUX, core_notes, core_pages, vmcore, write_core
from sfunwind.errors import SfunwindError
from sfunwind.kernel.program import KernelProgram
from sfunwind.memory.elfcore import open_core
from sfunwind.memory.files import materialize


def _exercise(path) -> None:
    prog = KernelProgram.open(path, VMLINUX)
    for task in prog.threads():
        task.start_state()
        prog.memory.read(task.final_record, 24)
    for cpu in prog.cpus():
        cpu.as_dict()


def test_header_and_note_flips(tmp_path):
    raw = materialize(vmcore("nokaslr/el1-abort")).read_bytes()
    rng = random.Random(0x5EED)
    outcomes = {"ok": 0, "error": 0}
    for i in range(120):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(0, 0x2000)  # ELF header, program headers, the note segment
            data[pos] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flip{i}.vmcore"
        path.write_bytes(data)
        try:
            _exercise(path)
            outcomes["ok"] += 1
        except SfunwindError:
            outcomes["error"] += 1
        path.unlink()
    assert outcomes["error"] > 10 and outcomes["ok"] > 10, outcomes


@pytest.mark.parametrize("target", ["page_tables", "task_structs"])
def test_memory_flips(tmp_path, target):
    core = open_core(vmcore("nokaslr/el1-abort"))
    prog = KernelProgram.open(vmcore("nokaslr/el1-abort"), VMLINUX)
    tr = prog.memory.tr
    if target == "page_tables":
        # the table pages the walk of every task stack visits
        pfns = set()
        for task in prog.threads():
            for va in (task.stack, task.stack + 0x3000):
                table = tr.pgd_phys
                shift = tr.page_shift + tr.bits_per_level * (tr.levels - 1)
                bits = tr.va_bits - shift
                for _level in range(tr.levels):
                    pfns.add(table // 4096)
                    idx = (va >> shift) & ((1 << bits) - 1)
                    desc = int.from_bytes(core.read_physical(table + 8 * idx, 8), "little")
                    if desc & 3 != 3:
                        break
                    table = tr.output_address(desc)
                    shift -= tr.bits_per_level
                    bits = tr.bits_per_level
    else:
        # the pointers the task walk follows: tasks.next, stack, signal, thread_node.next
        lay = prog.layout
        fields = [lay.task_tasks, lay.task_stack, lay.task_signal, lay.task_thread_node]
        spots = [prog.memory.translate(t.address + f) for t in prog.threads() for f in fields]
        pfns = {pa // 4096 for pa in spots}
    pfns = sorted(pfns)
    base = core_pages(core)
    notes = core_notes(core)
    rng = random.Random(zlib.crc32(target.encode()))
    errors = 0
    for i in range(25):
        pages = dict(base)
        for _ in range(8):
            if target == "task_structs":
                pa = rng.choice(spots) + rng.randrange(2, 6)  # a bit of address bits 16..47
                pfn, pos = divmod(pa, 4096)
            else:
                pfn = rng.choice(pfns)
                pos = rng.randrange(0, 4096)
            page = bytearray(pages[pfn])
            page[pos] ^= 1 << rng.randrange(8)
            pages[pfn] = bytes(page)
        path = tmp_path / f"mem{i}.vmcore"
        write_core(path, notes, pages)
        try:
            _exercise(path)
        except SfunwindError:
            errors += 1
        path.unlink()
    assert errors > 0
