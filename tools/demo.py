"""`make demo`: the arm64 kernel unwinder on the embedded Debian 7.2.13 vmcore.

The dump ``nokaslr/nested-irq`` stopped CPU 1 at ``hrtimer_interrupt+0`` in a hard IRQ that
nested inside a softirq already running on the IRQ stack, which itself interrupted an EL1
data abort taken in a ``getrandom()`` system call: three exception boundaries and a switch
from the IRQ stack to the task stack.  The demo unwinds that CPU twice:

* ``--mode upstream`` (Linux 7.2 as shipped): every boundary shows the interrupted pc (P),
  the caller that was only in LR is skipped, and the trace is unreliable at the first (P);
* ``--mode sframe`` (the 2026 SFrame series, corrected): SFrame made from the vmlinux's
  ``.debug_frame`` tells, at each boundary, whether the return address was still in LR —
  those callers appear as (L) — and the verdict names the one boundary that stays
  unreliable (``__arch_copy_to_user`` has no CFI).

Then it prints the per-dump reliability table (every task, both modes).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sfunwind.cli.main import main
from sfunwind.unwind import kernel as k
from sfunwind.unwind.format import reliability_table
from sfunwind.unwind.trace import Mode

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "data" / "linux-7.2.13-cloud-arm64"
VMCORE = FIX / "nokaslr" / "nested-irq.vmcore.xz"
VMLINUX = FIX / "vmlinux.debug.xz"
RSITES = ROOT / "tests" / "data" / "unwind" / "linux-7.2.13-cloud-arm64.rsites"


def banner(text: str) -> None:
    print(f"\n{'=' * 100}\n{text}\n{'=' * 100}", flush=True)


def run() -> int:
    for mode in ("upstream", "sframe"):
        banner(f"$ sfunwind kernel trace {VMCORE.relative_to(ROOT)} -s "
               f"{VMLINUX.relative_to(ROOT)} --cpu 1 --mode {mode} --return-sites "
               f"{RSITES.relative_to(ROOT)}")
        t0 = time.perf_counter()
        rc = main(["kernel", "trace", str(VMCORE), "-s", str(VMLINUX), "--cpu", "1",
                   "--mode", mode, "--return-sites", str(RSITES)])
        note = "; the first sframe run converts .debug_frame and caches it" \
            if mode == "sframe" else ""
        print(f"({time.perf_counter() - t0:.2f} s{note})", flush=True)
        if rc:
            return rc
    banner("every task of the dump: reliable in upstream vs sframe, and why not")
    prog = k.open_program(VMCORE, VMLINUX)
    up_ctx = k.context_for(prog, need_rows=False, return_sites_path=RSITES)
    sf_ctx = k.context_for(prog, return_sites_path=RSITES)
    rows = [(f"{t.pid} {t.comm}", k.trace_task(prog, t, Mode.UPSTREAM, ctx=up_ctx),
             k.trace_task(prog, t, Mode.SFRAME, ctx=sf_ctx)) for t in prog.threads()]
    table = reliability_table(rows)
    lines = table.splitlines()
    # the sleeping kernel threads are all alike: show the header, the rest, and the total
    print("\n".join(line for i, line in enumerate(lines)
                    if i == 0 or i == len(lines) - 1 or "no" in line.split()[2:4]))
    print(f"({sum(1 for r in rows if r[1].reliable and r[2].reliable)} more tasks are "
          "reliable in both modes)")
    return 0


if __name__ == "__main__":
    sys.exit(run())
