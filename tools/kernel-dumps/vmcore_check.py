#!/usr/bin/env python3
"""vmcore_check.py VMCORE LAYOUT.json [--list-tasks]

Independent check (no drgn, no DWARF) that a possibly trimmed vmcore holds
what an arm64 unwinder needs: it walks the task list from init_task (and each
thread group's threads, and each CPU's idle task), reads every task_struct and
whole task stack, each CPU's runqueue, IRQ stack and static per-cpu area, and
the kernel .data/.bss, translating every address through the page tables from
swapper_pg_dir.  Exit status 0 if everything is present.
"""
import json
import os
import pathlib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmcore_lib import Core, KernelMemory, MissingMemory, NotMapped, kernel_walk


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    core = Core(argv[1])
    layout = json.loads(pathlib.Path(argv[2]).read_text())
    km = KernelMemory(core)
    name = os.path.basename(argv[1])
    if core.vmcoreinfo.get("BUILD-ID") != layout["kernel"]["build_id"]:
        print(f"{name}: BUILD-ID {core.vmcoreinfo.get('BUILD-ID')} does not match the layout")
        return 1
    try:
        s = kernel_walk(core, layout)
    except (MissingMemory, NotMapped) as e:
        print(f"{name}: FAILED: {type(e).__name__}: {e}")
        return 1
    print(f"{name}: OK: {len(s['tasks'])} tasks, {len(s['cpus'])} CPUs, {len(core.touched)} pages read, "
          f"{km.va_bits}-bit VA ({km.levels}-level tables), KASLR offset {km.kaslr_offset:#x}, "
          f"PAC mask {km.pac_mask:#x}")
    if "--list-tasks" in argv:
        for c in s["cpus"]:
            print(f"  cpu{c['cpu']}: per_cpu_offset {c['per_cpu_offset']:#x} curr {c['curr']:#x} "
                  f"idle {c['idle']:#x} irq_stack {c['irq_stack']:#x}")
        for t in s["tasks"]:
            print(f"  pid {t['pid']:5d} tgid {t['tgid']:5d} {t['comm']:16s} task {t['task']:#x} "
                  f"stack {t['stack']:#x} cpu {t['cpu']} on_cpu {t['on_cpu']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
