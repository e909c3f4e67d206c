#!/usr/bin/env python3
"""Benchmark: the truth harness (interruption points per second) and the unwinder on its
snapshots (unwinds per second), on tests/data/truth/truth-sibcall.elf.

In one run:

* **timeline**: the whole task (~13 M instructions) with the harness's shadow call stack
  kept by a ``UC_HOOK_BLOCK`` hook, against the peer design — the same shadow stack kept by
  a per-instruction ``UC_HOOK_CODE`` hook (what the proof of concept in environment.md §8.1
  used); prints instructions/s of both and the ratio;
* **interruption points/s**: a sample of points (IRQ injected, entry code and handlers run to
  the snapshot point, registers and both stacks captured, state restored), no unwinding;
* **unwinds/s** of each mode (sframe, upstream, fp, sframe-v6) over those captures, with the
  snapshot-to-inputs conversion included.  No external unwinder reads these snapshots
  (drgn needs a vmcore), so the modes are compared with each other.

    .venv/bin/python benchmarks/truth.py [--points 3000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sfunwind.truth.compare import (  # noqa: E402
    _drive,
    capture_snapshot,
    plan,
    reference,
    unwind_snapshot,
)
from sfunwind.truth.emulator import Machine  # noqa: E402
from sfunwind.truth.image import KIND_BL, KIND_BLR, KIND_RET, TruthImage  # noqa: E402
from sfunwind.unwind.trace import Mode  # noqa: E402

IMAGE = ROOT / "tests" / "data" / "truth" / "truth-sibcall.elf"


class PerInstructionShadow:
    """The peer: a shadow call stack from a per-instruction code hook."""

    def __init__(self, machine: Machine) -> None:
        import unicorn

        self.stack: list[int] = []
        self.max_depth = 0
        image = machine.image
        kinds, text = image.kinds, image.text_address

        def on_insn(uc, address, size, _user):  # type: ignore[no-untyped-def]
            k = kinds[(address - text) >> 2]
            if k in (KIND_BL, KIND_BLR):
                self.stack.append(address + 4)
                self.max_depth = max(self.max_depth, len(self.stack))
            elif k == KIND_RET and self.stack:
                self.stack.pop()

        machine.uc.hook_del(machine.block_hook)  # only the per-instruction hook runs
        machine.uc.hook_add(unicorn.UC_HOOK_CODE, on_insn)


def timeline(image: TruthImage, *, peer: bool) -> tuple[float, int]:
    m = Machine(image)
    if peer:
        PerInstructionShadow(m)
    t = time.perf_counter()
    _drive(m, [], lambda _p: None)
    elapsed = time.perf_counter() - t
    return elapsed, m.stats.instructions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=3000)
    args = parser.parse_args()
    image = TruthImage(IMAGE)
    ref = reference(image)
    n = ref.length
    ours, _ = timeline(image, peer=False)
    theirs, _ = timeline(image, peer=True)
    print(f"timeline of {n} instructions: block-hook shadow stack {n / ours / 1e6:.2f} M insn/s, "
          f"per-instruction hook (peer) {n / theirs / 1e6:.2f} M insn/s, "
          f"ratio {theirs / ours:.1f}x")

    positions = plan(ref, sample=args.points, seed=3)
    machine = Machine(image)
    captures = []
    in_interrupt = 0.0

    def on_point(p: int) -> None:
        nonlocal in_interrupt
        t = time.perf_counter()
        captures.append(machine.interrupt(p))
        in_interrupt += time.perf_counter() - t

    t = time.perf_counter()
    _drive(machine, sorted([(w, 2) for w in ref.work_positions] + [(p, 1) for p in positions]),
           on_point)
    harness = time.perf_counter() - t
    print(f"{len(captures)} interruption points in {harness:.2f} s including the whole "
          f"timeline between them ({len(captures) / harness:.0f} points/s); the interrupts "
          f"alone (IRQ, entry code and handlers to the snapshot point, capture, restore): "
          f"{len(captures) / in_interrupt:.0f} points/s")

    snaps = [capture_snapshot(c, image) for c in captures]
    unwind_snapshot(snaps[0], Mode.SFRAME)  # load the image's symbols and SFrame table once
    rates = {}
    for mode in (Mode.SFRAME, Mode.UPSTREAM, Mode.FP_ONLY, Mode.FP_CHAIN, Mode.SFRAME_V6):
        t = time.perf_counter()
        for s in snaps:
            unwind_snapshot(s, mode)
        rates[mode] = len(snaps) / (time.perf_counter() - t)
    print("unwinds/s: " + ", ".join(f"{m.value} {r:.0f}" for m, r in rates.items()))
    print(f"ratio sframe / fp (the cost of the SFrame boundary step): "
          f"{rates[Mode.FP_ONLY] / rates[Mode.SFRAME]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
