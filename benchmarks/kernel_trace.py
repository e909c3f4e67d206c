#!/usr/bin/env python3
"""Benchmark: unwind every task and CPU of a vmcore, sfunwind against drgn.

Three runs on the same (decompressed) vmcore, end to end (open the dump, load what the
unwinder needs, unwind every thread; running threads from their CPU's registers):

* sfunwind, SFrame cache **cold**: the vmlinux's ``.debug_frame`` is converted to SFrame
  (into a fresh cache directory), then every thread is unwound in mode ``sframe``;
* sfunwind, SFrame cache **warm**: the same with the converted SFrame already cached;
* drgn 0.3.0: ``set_core_dump`` + ``load_debug_info`` (the full debug vmlinux: DWARF) +
  ``stack_trace(task)`` for every thread, reading every frame's pc.

sfunwind uses the reduced ``vmlinux.debug`` fixture (``.symtab``, ``.BTF``, ``.debug_frame``);
drgn needs the full debug vmlinux from ``linux-image-7.2.13+deb14-cloud-arm64-dbg`` (fetched
into ``$SFUNWIND_DBG_CACHE``, default ``/work/cache``, when missing; see vmcore_open.py).

    .venv/bin/python benchmarks/kernel_trace.py [--dump nokaslr/nested-irq] [--repeat 3]

Prints frames per second of each and the ratios drgn time / sfunwind time (> 1: sfunwind
is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "linux-7.2.13-cloud-arm64"
sys.path.insert(0, str(ROOT / "benchmarks"))


def run_sfunwind(vmcore: Path, vmlinux: Path, cache_dir: Path) -> tuple[int, int]:
    from sfunwind.unwind import kernel as k
    from sfunwind.unwind.trace import Mode

    prog = k.open_program(vmcore, vmlinux)
    ctx = k.context_for(prog, cache_dir=cache_dir)
    traces = k.trace_all(prog, Mode.SFRAME, ctx=ctx)
    prog.close()
    return len(traces), sum(len(t.frames) for t in traces)


def run_drgn(vmcore: Path, vmlinux: Path) -> tuple[int, int]:
    import drgn
    from drgn.helpers.linux.cpumask import for_each_online_cpu
    from drgn.helpers.linux.percpu import per_cpu
    from drgn.helpers.linux.pid import for_each_task

    prog = drgn.Program()
    prog.set_core_dump(str(vmcore))
    prog.load_debug_info([str(vmlinux)])
    tasks = list(for_each_task(prog))
    for cpu in for_each_online_cpu(prog):
        tasks.append(per_cpu(prog["runqueues"], cpu).idle)
    seen = set()
    n_traces = n_frames = 0
    for t in tasks:
        if t.value_() in seen:
            continue
        seen.add(t.value_())
        try:
            trace = prog.stack_trace(t)
        except (drgn.FaultError, ValueError):
            continue
        n_traces += 1
        n_frames += sum(1 for f in trace if f.pc and not f.is_inline)
    return n_traces, n_frames


def timed(fn, *args, repeat: int, setup=None) -> tuple[float, tuple[int, int]]:
    times = []
    result = (0, 0)
    for _ in range(repeat):
        extra = setup() if setup else ()
        t0 = time.perf_counter()
        result = fn(*args, *extra)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dump", default="nokaslr/nested-irq")
    ap.add_argument("--repeat", type=int, default=3)
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
    from vmcore_open import full_vmlinux

    big = full_vmlinux()
    with tempfile.TemporaryDirectory(prefix="sfunwind-bench-") as tmp:
        counter = iter(range(1 << 30))

        def fresh_cache() -> tuple[Path]:
            d = Path(tmp) / f"cold{next(counter)}"
            d.mkdir()
            return (d,)

        cold, (n_cold, f_cold) = timed(run_sfunwind, vmcore, small, repeat=args.repeat,
                                       setup=fresh_cache)
        warm_dir = Path(tmp) / "warm"
        warm_dir.mkdir()
        run_sfunwind(vmcore, small, warm_dir)  # fill the cache
        warm, (n_warm, f_warm) = timed(run_sfunwind, vmcore, small, warm_dir,
                                       repeat=args.repeat)
    theirs, (n_drgn, f_drgn) = timed(run_drgn, vmcore, big, repeat=args.repeat)
    print(f"dump {args.dump}: sfunwind {n_warm} traces / {f_warm} frames; "
          f"drgn {n_drgn} traces / {f_drgn} frames")
    for label, t, frames in (("sfunwind, SFrame cache cold", cold, f_cold),
                             ("sfunwind, SFrame cache warm", warm, f_warm),
                             ("drgn stack_trace (DWARF)", theirs, f_drgn)):
        print(f"{label:<30} {t * 1000:9.1f} ms  {frames / t:10.0f} frames/s "
              f"(median of {args.repeat})")
    print(f"ratio drgn/sfunwind: warm {theirs / warm:.2f}x, cold {theirs / cold:.2f}x")
    return 0 if n_warm == n_drgn and n_cold == n_warm else 1


if __name__ == "__main__":
    sys.exit(main())
