"""Proof 4: corrupted stacks.  Random bit flips, random words and zeroed words in the real
stacks of the 7.2.13 fixture dumps (task stacks of every thread; IRQ stacks of the running
ones), thousands of trials: the unwinder always terminates, never raises, and a trace it
calls reliable (mode sframe) is the unmodified one, or differs from it only where the stack
itself consistently says something else: a saved return address overwritten by another
return site of the same function, or ``pt_regs::pc`` by another pc of the same function
(no metadata can refute those; the set of functions on the stack is unchanged).
"""

from __future__ import annotations

import dataclasses
import random
from functools import cache

import pytest

from sfunwind.memory.base import SparseMemory
from sfunwind.unwind.arm64 import MAX_FRAMES, Regs, start_from_regs, start_from_task, unwind
from sfunwind.unwind.trace import EventKind, Mode, Source
from test_trace_fixtures import context, k, program

TRIALS = 3000


@cache
def cases(boot: str, name: str):
    prog = program(boot, name)
    out = []
    for task in prog.threads():
        cpu = next((c for c in prog.cpus() if c.curr == task.address), None)
        if cpu is not None and not cpu.prstatus.in_kernel:
            continue
        stacks = k.task_stacks(prog, task, running_cpu=None if cpu is None else cpu.index)
        chunks = []
        for s in stacks.stacks:
            try:
                chunks.append((s.low, prog.memory.read(s.low, s.high - s.low)))
            except Exception:  # a per-CPU stack the trimmed dump does not hold
                continue
        if cpu is not None:
            pr = cpu.prstatus
            start = start_from_regs(Regs(pc=pr.pc, sp=pr.sp, fp=pr.fp, lr=pr.lr))
        else:
            cc = task.cpu_context
            start = start_from_task(cc.pc, cc.fp)
        out.append((task, stacks, chunks, start))
    return out


def _explained(orig, new, mutated: tuple[int, int], ctx) -> bool:
    """Every difference is one the stack itself states consistently: a saved LR slot
    overwritten with another return site of the same function (calling the same kind of
    callee), or ``pt_regs::pc`` overwritten with another pc of the same function."""
    if len(orig.frames) != len(new.frames):
        return False
    lo, hi = mutated
    boundaries = {e.index: e.address for e in new.events
                  if e.kind is EventKind.EXCEPTION_BOUNDARY}
    for i, (a, b) in enumerate(zip(orig.frames, new.frames, strict=True)):
        if a.pc == b.pc:
            continue
        if a.symbol != b.symbol or b.symbol is None:
            return False
        if b.source is Source.FRAME and i:
            slot = new.frames[i - 1].fp + 8  # the record this pc came from, its LR half
            if not ctx.is_return_site(b.pc):
                return False
        elif b.source is Source.REGS_PC and i in boundaries:
            slot = boundaries[i] + ctx.pt_regs.pc
        else:
            return False
        if not (lo < slot + 8 and slot < hi):
            return False
    return True


@pytest.mark.parametrize("boot,name,seed", [("nokaslr", "nested-irq", 1),
                                            ("nokaslr", "hrtimer-plus12", 2),
                                            ("kaslr", "irq-in-fault", 3)])
def test_random_corruption(boot, name, seed):
    base = context(boot, name, True)
    assert base.find_row is not None and base.is_return_site is not None
    rng = random.Random(seed)
    all_cases = cases(boot, name)
    originals = {}
    stats: dict[str, int] = {}
    for _ in range(TRIALS):
        n = rng.randrange(len(all_cases))
        task, stacks, chunks, start = all_cases[n]
        clean = dataclasses.replace(base, memory=SparseMemory(chunks), _pages={})
        if n not in originals:
            originals[n] = {m: unwind(clean, stacks, start, m) for m in (Mode.UPSTREAM,
                                                                        Mode.SFRAME)}
        which = rng.randrange(len(chunks))
        low, data = chunks[which]
        # aim at the live part of the stack (where the records are) and a little below
        used = [f.fp for f in originals[n][Mode.SFRAME].frames if low <= (f.fp or 0) < low +
                len(data)]
        first = max(0, (min(used) - low - 64) & ~7) if used else 0
        buf = bytearray(data)
        kind = rng.choice(("bit", "bit", "word", "zero"))
        off = rng.randrange(first, len(data) - 8, 8)
        if kind == "bit":
            off += rng.randrange(8)
            buf[off] ^= 1 << rng.randrange(8)
            mutated = (low + off, low + off + 1)
        else:
            buf[off:off + 8] = rng.getrandbits(64).to_bytes(8, "little") if kind == "word" \
                else bytes(8)
            mutated = (low + off, low + off + 8)
        chunks2 = list(chunks)
        chunks2[which] = (low, bytes(buf))
        ctx = dataclasses.replace(base, memory=SparseMemory(chunks2), _pages={})
        for mode in (Mode.UPSTREAM, Mode.SFRAME):
            trace = unwind(ctx, stacks, start, mode)  # must not raise
            orig = originals[n][mode]
            assert len(trace.frames) <= MAX_FRAMES
            assert trace.reliable == (not trace.reasons)
            if not trace.reliable:
                key = f"{mode.value} unreliable"
            elif trace.pcs == orig.pcs:
                key = f"{mode.value} reliable, unchanged"
            else:
                key = f"{mode.value} reliable, changed"
                if mode is Mode.SFRAME:
                    assert _explained(orig, trace, mutated, ctx), "\n".join(
                        [f"pid {task.pid}: {kind} at {mutated[0]:#x}"]
                        + [f"{a.format():<50} {b.format():<50} fp={b.fp:#x}"
                           for a, b in zip(orig.frames, trace.frames, strict=False)])
            stats[key] = stats.get(key, 0) + 1
    print(f"\n{boot}/{name}: {TRIALS} trials: {dict(sorted(stats.items()))}")
    assert stats.get("sframe unreliable", 0) > TRIALS // 50  # the mutations do bite
