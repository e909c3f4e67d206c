#!/usr/bin/env python3
"""Benchmark: open a vmcore + vmlinux and list every task with its stack bounds.

sfunwind (``KernelProgram.open`` + ``threads()`` + per-CPU stacks) against drgn 0.3.0 doing the
same (``Program.set_core_dump`` + ``load_debug_info`` + ``for_each_task`` + idle tasks +
``irq_stack_ptr``), in one run on the same (already decompressed) vmcore.  sfunwind is timed
twice: with the fixtures' reduced ``vmlinux.debug`` and with the same full vmlinux drgn gets.  drgn needs the full
debug vmlinux (DWARF) from ``linux-image-7.2.13+deb14-cloud-arm64-dbg``; it is fetched into
``$SFUNWIND_DBG_CACHE`` (default ``/work/cache``, outside the repository) by
``tools/kernel-dumps/fetch-vmlinux-dbg.sh`` when missing.  sfunwind uses the reduced
``vmlinux.debug`` fixture (``.symtab`` + ``.BTF``).

    .venv/bin/python benchmarks/vmcore_open.py [--dump kaslr/irq-in-fault] [--repeat 5]

Prints both medians and the ratio drgn / sfunwind (> 1: sfunwind is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "linux-7.2.13-cloud-arm64"
KREL = "7.2.13+deb14-cloud-arm64"


def full_vmlinux() -> Path:
    cache = Path(os.environ.get("SFUNWIND_DBG_CACHE", "/work/cache"))
    path = cache / "vmlinux-7.2.13" / "vmlinux"
    if not path.is_file():
        print(f"fetching the -dbg vmlinux into {path.parent} ...", file=sys.stderr)
        subprocess.run([str(ROOT / "tools" / "kernel-dumps" / "fetch-vmlinux-dbg.sh"),
                        str(path.parent)], check=True)
    return path


def run_sfunwind(vmcore: Path, vmlinux: Path) -> int:
    from sfunwind.kernel.program import KernelProgram, clear_caches

    clear_caches()  # a cold open every time: the vmlinux is parsed again, as drgn does
    prog = KernelProgram.open(vmcore, vmlinux)
    size = prog.layout.thread_size
    rows = []
    for t in prog.threads():
        rows.append((t.pid, t.comm, t.state, t.cpu, t.on_cpu, t.stack, t.stack + size))
    for cpu in prog.cpus():
        rows.append((cpu.index, cpu.irq_stack.low, cpu.irq_stack.high))
    prog.close()
    return len(rows)


def run_drgn(vmcore: Path, vmlinux: Path) -> int:
    import drgn
    from drgn.helpers.linux.cpumask import for_each_online_cpu
    from drgn.helpers.linux.percpu import per_cpu, per_cpu_ptr
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.sched import task_state_to_char

    prog = drgn.Program()
    prog.set_core_dump(str(vmcore))
    prog.load_debug_info([str(vmlinux)])
    # THREAD_SIZE is a macro, not in DWARF: take it from the linker's init stack bounds
    size = prog.symbol("__end_init_stack").address - prog.symbol("__start_init_stack").address
    rows = []
    tasks = list(for_each_task(prog))
    for cpu in for_each_online_cpu(prog):
        tasks.append(per_cpu(prog["runqueues"], cpu).idle)
    seen = set()
    for t in tasks:
        if t.value_() in seen:
            continue
        seen.add(t.value_())
        stack = t.stack.value_()
        rows.append((t.pid.value_(), t.comm.string_().decode(), task_state_to_char(t),
                     t.thread_info.cpu.value_(), t.on_cpu.value_(), stack, stack + size))
    for cpu in for_each_online_cpu(prog):
        irq = per_cpu_ptr(prog["irq_stack_ptr"].address_of_(), cpu)[0].value_()
        rows.append((cpu, irq, irq + size))
    return len(rows)


def timed(fn, *args, repeat: int) -> tuple[float, int]:
    times = []
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dump", default="kaslr/irq-in-fault",
                    choices=sorted(str(p.relative_to(DATA))[:-len(".vmcore.xz")]
                                   for p in DATA.glob("*/*.vmcore.xz")),
                    help="a dump of the linux-7.2.13-cloud-arm64 fixtures")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from sfunwind.memory.files import materialize

    vmcore = materialize(DATA / f"{args.dump}.vmcore.xz")
    small = materialize(DATA / "vmlinux.debug.xz")
    try:
        import drgn  # noqa: F401
    except ImportError:
        print("drgn is not installed: pip install 'drgn>=0.3,<0.4' (the bench extra)",
              file=sys.stderr)
        return 6
    big = full_vmlinux()
    ours, n_ours = timed(run_sfunwind, vmcore, small, repeat=args.repeat)
    ours_big, n_big = timed(run_sfunwind, vmcore, big, repeat=args.repeat)
    theirs, n_theirs = timed(run_drgn, vmcore, big, repeat=args.repeat)
    print(f"dump {args.dump}: {n_ours}/{n_big} rows (sfunwind), {n_theirs} rows (drgn)")
    print(f"sfunwind, vmlinux.debug (27 MB): {ours * 1000:8.1f} ms (median of {args.repeat})")
    print(f"sfunwind, full vmlinux (411 MB): {ours_big * 1000:8.1f} ms")
    print(f"drgn,     full vmlinux (411 MB): {theirs * 1000:8.1f} ms")
    print(f"ratio drgn/sfunwind: {theirs / ours:.2f}x (same full vmlinux: "
          f"{theirs / ours_big:.2f}x)")
    return 0 if n_ours == n_theirs == n_big else 1


if __name__ == "__main__":
    sys.exit(main())
