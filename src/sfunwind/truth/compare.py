"""Interrupt the truth image everywhere and compare every unwinder mode with the truth.

1. **Reference run** (:func:`reference`): the task runs uninterrupted except for the
   scheduled "work" IRQs and its own WARN trap, recording every block; the timeline
   (position -> PC) and the task's result come out of it.
2. **Plan** (:func:`plan`): interruption positions = the first execution of every
   instruction outside the entry code, plus every ``stride``-th instruction (or a random
   sample of ``points``).
3. **Run** (:func:`run`): the same timeline again; at each planned position the harness
   checks that the PC is the one the reference saw there, takes an IRQ, captures at the
   snapshot point and unwinds the capture in every mode.  The task's final result must equal
   the reference's (the interrupts were transparent).

Each point is labelled with the class of the interrupted instruction
(:mod:`sfunwind.truth.image`) and its context (``task``, ``sync``: inside the WARN handler,
``irq``: inside an IRQ's work on the IRQ stack, i.e. a nested IRQ).  Per mode and class the
summary counts exact traces, traces claimed reliable, and traces **claimed reliable but
wrong** (with the first differing frame).  For ``sframe`` mode it also checks the targets:
exact and reliable wherever every interrupted PC of the trace has an SFrame row, and
otherwise unreliable with reason ``sframe-no-row``.

**PAC.**  Unicorn runs ``paciasp``/``autiasp`` as no-ops, so by default the harness signs
return addresses itself: every stack word that holds a live return address (the shadow
stack says which values are live) gets a fake PAC in bits 63..48 (bit 55 kept: a kernel
pointer), and the snapshot carries the kernel PAC mask ``0xffff000000000000`` that strips
it (``ptrauth_strip_kernel_insn_pac``: OR the mask in).  ``pt_regs::pc`` is never signed;
``pt_regs::regs[30]`` is signed exactly where the interrupted pac-ret function had a signed
x30 (between ``paciasp`` and ``autiasp``, not after a BL: ``TruthImage.x30_signed``), which
gives the prologue cases of the kernel (``+8``: raw x30, ``+12``: signed x30 not yet stored).
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sfunwind.truth.emulator import (
    PT_REGS_SIZE,
    S_STACKFRAME,
    THREAD_SIZE,
    Capture,
    ExceptionMarker,
    HarnessError,
    Machine,
)
from sfunwind.truth.image import CLASS_INDEX, POINT_CLASSES, TruthImage
from sfunwind.truth.snapshot import PtRegsOffsets, Snapshot, StackBounds, unwind_inputs
from sfunwind.unwind.trace import Mode, Trace

KERNEL_PAC_MASK = 0xFFFF000000000000
#: Work IRQs (handlers that run interruptible work on the IRQ stack) every this many
#: instructions of the task's timeline, starting at WORK_IRQ_FIRST.
WORK_IRQ_EVERY = 700_000
WORK_IRQ_FIRST = 250_001
MODES = (Mode.SFRAME, Mode.UPSTREAM, Mode.FP_ONLY, Mode.FP_CHAIN, Mode.SFRAME_V6)
CONTEXTS = ("task", "sync", "irq")


@dataclass(slots=True)
class Reference:
    image: TruthImage
    result: int
    pcs: np.ndarray  # position -> PC (uint64)
    work_positions: list[int]
    failures: int = 0  # the task's failed round trips (truth_failures; must be 0)
    _first: tuple[np.ndarray, np.ndarray] | None = None

    def first_executions(self) -> tuple[np.ndarray, np.ndarray]:
        """(every executed PC, sorted; the position of its first execution): one pass over
        the ~56 M-entry timeline, shared by the plan, the explorer and the coverage."""
        if self._first is None:
            self._first = np.unique(self.pcs, return_index=True)
        return self._first

    def executed(self) -> set[int]:
        return set(self.first_executions()[0].tolist())

    @property
    def length(self) -> int:
        return len(self.pcs)


def work_positions(limit: int = 200_000_000) -> list[int]:
    """Where the timeline takes its work IRQs (positions past the task's end never fire)."""
    return list(range(WORK_IRQ_FIRST, limit, WORK_IRQ_EVERY))


EVENT_EXPLORE, EVENT_POINT, EVENT_WORK = 0, 1, 2


def _drive(machine: Machine, events: list[tuple[int, int]], on_point,  # type: ignore[no-untyped-def]
           *, finish: bool = True, on_explore=None) -> None:  # type: ignore[no-untyped-def]
    """Run the timeline: events are (position, EVENT_*), sorted (at one position: explore,
    then the point, then the work IRQ); then run the task to its end unless *finish* is
    False."""
    position = 0
    for at, kind in events:
        if not machine.advance(at - position):
            break
        position = at
        if kind == EVENT_WORK:
            machine.inject_work_irq()
        elif kind == EVENT_EXPLORE:
            if on_explore is not None:
                on_explore(position)
        else:
            on_point(position)
    while finish and machine.advance(5_000_000):
        pass


def reference(image: TruthImage, *, irq_stack: str = "above") -> Reference:
    """Run once without interrupts (work IRQs and the WARN included); map the timeline."""
    m = Machine(image, record=True, irq_stack=irq_stack)
    works = work_positions()
    # the work IRQ positions beyond the end never fire; run until done
    _drive(m, [(w, 2) for w in works], lambda _p: None)
    assert m.block_addrs is not None
    addrs = np.frombuffer(m.block_addrs, dtype=np.uint64)
    sizes = np.frombuffer(m.block_sizes, dtype=np.uint32).astype(np.int64) // 4
    # a stop in the middle of a block: that block ran only up to the stop PC
    for n_blocks, pc in m.stops:
        i = n_blocks - 1
        if 0 <= i < len(addrs):
            # Python ints: uint64 + int64 would silently become float64 in numpy
            start, n = int(addrs[i]), int(sizes[i])
            if start <= pc < start + 4 * n:
                sizes[i] = (pc - start) // 4
    starts = np.repeat(addrs, sizes)
    offsets = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(sizes) - sizes, sizes)
    pcs = starts + (offsets * 4).astype(np.uint64)
    length = len(pcs)
    return Reference(image, m.result(), pcs, [w for w in works if w < length], m.failures())


def never_executed(ref: Reference) -> set[int]:
    """The workload instructions the timeline never executes (compiled code no input
    reaches: the explorer steers branches into it)."""
    executed = ref.executed()
    return {a for s in ref.image.workload_functions()
            for a in range(s.address, s.address + s.size, 4) if a not in executed}


def plan_explore(ref: Reference, dead: set[int]) -> list[int]:
    """Positions where exploration starts: the first execution of every conditional branch
    with a never-executed successor (sorted)."""
    image = ref.image
    pcs, first = ref.first_executions()
    out = []
    for pc, position in zip(pcs.tolist(), first.tolist(), strict=True):
        if not image.is_text(pc):
            continue
        succ = image.branch_successors(pc)
        if succ is not None and (succ[0] in dead or succ[1] in dead):
            out.append(position)
    return sorted(out)


def plan(ref: Reference, *, stride: int | None = None, sample: int | None = None,
         seed: int = 1) -> list[int]:
    """Positions to interrupt at (sorted): first execution of every instruction outside the
    entry code, plus every *stride*-th position or a random *sample* of positions."""
    image = ref.image
    idx = ((ref.pcs - np.uint64(image.text_address)) >> np.uint64(2)).astype(np.int64)
    interruptible = image.classes[idx] != CLASS_INDEX["entry"]
    _, first = ref.first_executions()
    chosen = set(int(p) for p in first if interruptible[p])
    if stride:
        chosen.update(int(p) for p in range(stride // 2, ref.length, stride) if interruptible[p])
    if sample:
        rng = random.Random(seed)
        pool = np.flatnonzero(interruptible)
        chosen = set(rng.sample(sorted(chosen), min(sample // 2, len(chosen))))
        chosen.update(int(pool[i]) for i in rng.sample(range(len(pool)),
                                                        min(sample - len(chosen), len(pool))))
    chosen.discard(0)
    return sorted(chosen)


# -- one point ------------------------------------------------------------------------------

def sign_return_addresses(capture: Capture, image: TruthImage, mask: int = KERNEL_PAC_MASK,
                          seed: int = 0) -> dict[str, tuple[int, bytes]]:
    """The capture's stacks with a fake PAC in every word holding a live return address,
    except in ``pt_regs`` slots: ``pc`` is never signed, and ``regs[30]`` only where the
    interrupted function had signed x30 (after ``paciasp``, before ``autiasp``)."""
    live = {e for e in capture.shadow if isinstance(e, int)}
    markers = [e for e in capture.shadow if isinstance(e, ExceptionMarker)]
    pc_slots = {e.pt_regs + 256 for e in markers}
    pc_slots |= {e.pt_regs + 240 for e in markers
                 if not (image.is_text(e.elr) and image.x30_signed[image.index(e.elr)])}
    out = {}
    for name, (low, data) in capture.stacks.items():
        words = np.frombuffer(data, dtype="<u8").copy()
        hits = np.flatnonzero(np.isin(words, np.array(sorted(live), dtype=np.uint64)))
        for i in hits:
            address = low + 8 * int(i)
            if address in pc_slots:
                continue
            words[i] = _fake_pac(int(words[i]), address + seed, mask)
        out[name] = (low, words.tobytes())
    return out


def _fake_pac(value: int, salt: int, mask: int = KERNEL_PAC_MASK) -> int:
    """*value* with a deterministic fake PAC in the *mask* bits (bit 55 kept set)."""
    pac = ((value * 0x9E3779B97F4A7C15 + salt) & 0xFF7F000000000000) | (1 << 55)
    return (value & ~mask & ((1 << 64) - 1)) | (pac & mask)


def capture_snapshot(capture: Capture, image: TruthImage, *, pac: bool = True) -> Snapshot:
    """A :class:`Snapshot` of a capture, with the truth attached."""
    stacks = sign_return_addresses(capture, image) if pac else capture.stacks
    registers = dict(capture.regs)
    if pac and capture.start == "regs" and image.is_text(capture.pc) and \
            image.x30_signed[image.index(capture.pc)]:
        registers["x30"] = _fake_pac(registers["x30"], 0)
    order = ("task", "irq")
    bounds = [StackBounds(n, stacks[n][0], stacks[n][0] + THREAD_SIZE) for n in order]
    task_low = stacks["task"][0]
    return Snapshot(
        registers=registers,
        stacks=bounds,
        memory=[(low, data) for low, data in (stacks[n] for n in order)],
        start=capture.start,
        pt_regs=PtRegsOffsets(size=PT_REGS_SIZE, stackframe=S_STACKFRAME),
        final_record=task_low + THREAD_SIZE - PT_REGS_SIZE + S_STACKFRAME,
        pac_mask=KERNEL_PAC_MASK if pac else 0,
        image=image.path,
        image_sha256=image.sha256,
        truth={"frames": [hex(x) for x in capture.expected()],
               "interrupted_pc": hex(capture.pc),
               "class": image.point_class(capture.pc),
               "context": capture.context,
               "position": capture.position,
               **({"forced": True} if capture.forced else {})},
    )


@dataclass(slots=True)
class ModeResult:
    exact: bool
    reliable: bool
    first_diff: int | None  # index of the first differing frame (None when exact)
    got: int | None
    want: int | None
    reasons: tuple[str, ...]


def compare_trace(trace: Trace, expected: list[int]) -> ModeResult:
    got = trace.pcs
    exact = got == expected
    diff = None
    g = w = None
    if not exact:
        diff = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                    min(len(got), len(expected)))
        g = got[diff] if diff < len(got) else None
        w = expected[diff] if diff < len(expected) else None
    return ModeResult(exact, trace.reliable, diff, g, w, tuple(r.code for r in trace.reasons))


def unwind_snapshot(snapshot: Snapshot, mode: Mode) -> Trace:
    from sfunwind.unwind.arm64 import unwind

    ctx, task, start = unwind_inputs(snapshot)
    return unwind(ctx, task, start, mode)


# -- the whole run ---------------------------------------------------------------------------

@dataclass(slots=True)
class Cell:
    points: int = 0
    exact: int = 0
    reliable: int = 0
    reliable_wrong: int = 0
    examples: list[str] = field(default_factory=list)
    #: where wrong traces first differ, relative to the interrupted PC's (P) frame:
    #: "P+1" = the frame after the boundary (the LR-only caller), "P-2" = above it
    first_diff: Counter = field(default_factory=Counter)


@dataclass(slots=True)
class Summary:
    image: str
    irq_stack: str = "above"
    points: int = 0
    instructions: int = 0
    result_ok: bool = False
    pc_mismatches: int = 0
    harness_seconds: float = 0.0
    unwind_seconds: float = 0.0
    unwinds: int = 0
    executed_pcs: int = 0
    interrupted_pcs: int = 0
    workload_instructions: int = 0
    workload_functions: int = 0
    #: function -> (instructions interrupted, static instructions), for functions with
    #: instructions never interrupted
    not_interrupted: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: points on steered paths (compiled code no input executes) and their workload PCs
    forced_points: int = 0
    forced_pcs: int = 0
    sampled: bool = False  # a random sample of points (not every first execution)
    #: the same for the harness's own code (drivers, handlers, asm routines)
    harness_not_interrupted: dict[str, tuple[int, int]] = field(default_factory=dict)
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    contexts: Counter = field(default_factory=Counter)
    sframe_with_rows: int = 0
    sframe_with_rows_exact: int = 0
    sframe_with_rows_failures: Counter = field(default_factory=Counter)
    sframe_without_rows: int = 0
    sframe_without_rows_right_reason: int = 0

    def cell(self, mode: str, cls: str) -> Cell:
        return self.cells.setdefault((mode, cls), Cell())

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image, "irq_stack": self.irq_stack, "points": self.points,
            "instructions": self.instructions,
            "result_ok": self.result_ok, "pc_mismatches": self.pc_mismatches,
            "harness_seconds": round(self.harness_seconds, 3),
            "unwind_seconds": round(self.unwind_seconds, 3), "unwinds": self.unwinds,
            "executed_pcs": self.executed_pcs, "interrupted_pcs": self.interrupted_pcs,
            "forced_points": self.forced_points, "forced_pcs": self.forced_pcs,
            "workload_instructions": self.workload_instructions,
            "workload_functions": self.workload_functions,
            "not_interrupted": {k: list(v) for k, v in sorted(self.not_interrupted.items())},
            "harness_not_interrupted": {k: list(v) for k, v in
                                        sorted(self.harness_not_interrupted.items())},
            "contexts": dict(self.contexts),
            "sframe_targets": {
                "with_rows": self.sframe_with_rows,
                "with_rows_exact_reliable": self.sframe_with_rows_exact,
                "with_rows_failures": dict(self.sframe_with_rows_failures),
                "without_rows": self.sframe_without_rows,
                "without_rows_unreliable_no_row": self.sframe_without_rows_right_reason,
            },
            "table": [{"mode": m, "class": c, "points": x.points, "exact": x.exact,
                       "reliable": x.reliable, "reliable_wrong": x.reliable_wrong,
                       "first_diff": dict(x.first_diff.most_common()), "examples": x.examples}
                      for (m, c), x in sorted(self.cells.items())],
        }


def run(image_path: str | Path, *, stride: int | None = 100, sample: int | None = None,
        modes: tuple[Mode, ...] = MODES, pac: bool = True, seed: int = 1,
        keep: int = 0, ref: Reference | None = None,
        irq_stack: str = "above", explore: bool = True) -> tuple[Summary, list[Snapshot]]:
    """Interrupt the image at the planned points and compare every mode with the truth.

    With *explore*, also interrupt every workload instruction the task never executes,
    reached by steering conditional branches from their first execution
    (:meth:`Machine.explore`).

    Returns the summary and up to *keep* snapshots of points where some mode was wrong.
    *ref* reuses a reference run of the same image.  *irq_stack*: the IRQ stack lies
    ``above`` the task stack in memory (the image's own) or ``below`` it.
    """
    t0 = time.perf_counter()
    if ref is None:
        image = TruthImage(image_path)
        ref = reference(image, irq_stack=irq_stack)
    image = ref.image
    positions = plan(ref, stride=stride, sample=sample, seed=seed)
    summary = Summary(image=str(image_path), instructions=ref.length, irq_stack=irq_stack,
                      sampled=bool(sample))
    kept: list[Snapshot] = []
    table = None
    from sfunwind.truth.snapshot import _image_and_table

    _img, table = _image_and_table(image.path, None, None)
    machine = Machine(image, irq_stack=irq_stack)
    dead = never_executed(ref) if explore else set()
    explore_at = plan_explore(ref, dead) if explore else []
    events = sorted([(w, EVENT_WORK) for w in ref.work_positions]
                    + [(p, EVENT_POINT) for p in positions]
                    + [(p, EVENT_EXPLORE) for p in explore_at])
    unwind_time = 0.0

    def on_point(position: int) -> None:
        if machine.pc != int(ref.pcs[position]):
            summary.pc_mismatches += 1
            return
        evaluate(machine.interrupt(position))

    def on_explore(position: int) -> None:
        if machine.pc != int(ref.pcs[position]):
            summary.pc_mismatches += 1
            return
        machine.explore(position, dead, evaluate)

    def evaluate(capture: Capture) -> None:
        nonlocal unwind_time
        t = time.perf_counter()
        summary.forced_points += capture.forced
        snap = capture_snapshot(capture, image, pac=pac)
        expected = capture.expected()
        cls = image.point_class(capture.pc)
        summary.points += 1
        summary.contexts[capture.context] += 1
        boundaries = [e.elr for e in capture.shadow if isinstance(e, ExceptionMarker)]
        boundary_index = next(i for i, e in enumerate(capture.shadow)
                              if isinstance(e, ExceptionMarker))
        with_rows = table is not None and all(table.find(pc) is not None for pc in boundaries)
        wrong_any = False
        for mode in modes:
            trace = unwind_snapshot(snap, mode)
            summary.unwinds += 1
            res = compare_trace(trace, expected)
            cell = summary.cell(mode.value, cls)
            cell.points += 1
            cell.exact += res.exact
            cell.reliable += res.reliable
            if res.reliable and not res.exact:
                cell.reliable_wrong += 1
            if not res.exact:
                assert res.first_diff is not None
                cell.first_diff[f"P{res.first_diff - boundary_index:+d}"] += 1
                wrong_any = wrong_any or mode is Mode.SFRAME
                if len(cell.examples) < 3 and res.reliable:
                    cell.examples.append(_describe(image, capture, res))
            if mode is Mode.SFRAME:
                if with_rows:
                    summary.sframe_with_rows += 1
                    if res.exact and res.reliable:
                        summary.sframe_with_rows_exact += 1
                    else:
                        key = ",".join(res.reasons) or "inexact"
                        summary.sframe_with_rows_failures[
                            f"{image.format_pc(capture.pc)} [{cls}, {capture.context}]: "
                            f"{'reliable' if res.reliable else 'unreliable'} {key}"] += 1
                else:
                    summary.sframe_without_rows += 1
                    if not res.reliable and "sframe-no-row" in res.reasons:
                        summary.sframe_without_rows_right_reason += 1
        if wrong_any and len(kept) < keep:
            kept.append(snap)
        unwind_time += time.perf_counter() - t

    _drive(machine, events, on_point, on_explore=on_explore)
    total = time.perf_counter() - t0
    if summary.pc_mismatches:
        raise HarnessError(f"{image_path}: at {summary.pc_mismatches} planned positions the pc "
                           "differed from the reference run's: the timeline is not "
                           "deterministic (a harness bug)")
    summary.result_ok = machine.done and machine.result() == ref.result
    if machine.done and machine.failures():
        raise HarnessError(f"{image_path}: {machine.failures()} workload round trips failed")
    if not summary.result_ok:
        raise HarnessError(f"{image_path}: the interrupted run's result differs from the "
                           "reference run: the interrupts were not transparent")
    summary.unwind_seconds = unwind_time
    summary.harness_seconds = total - unwind_time
    executed = ref.executed()
    workload = [s for s in image.workload_functions()]
    in_workload = {a for s in workload for a in range(s.address, s.address + s.size, 4)}
    summary.workload_instructions = len(in_workload)
    summary.executed_pcs = len(executed & in_workload)
    interrupted = machine.stats.covered | machine.stats.forced_covered
    summary.interrupted_pcs = len(interrupted & in_workload)
    summary.forced_pcs = len((machine.stats.forced_covered - machine.stats.covered)
                             & in_workload)
    summary.workload_functions = len(workload)
    for sym in workload:
        pcs = range(sym.address, sym.address + sym.size, 4)
        hit = sum(1 for a in pcs if a in interrupted)
        if hit < len(pcs):
            summary.not_interrupted[sym.name] = (hit, len(pcs))
    for sym in image.harness_functions():
        pcs = range(sym.address, sym.address + sym.size, 4)
        hit = sum(1 for a in pcs if a in machine.stats.covered)
        if hit < len(pcs):
            summary.harness_not_interrupted[sym.name] = (hit, len(pcs))
    return summary, kept


def _describe(image: TruthImage, capture: Capture, res: ModeResult) -> str:
    def f(x: int | None) -> str:
        return image.format_pc(x) if x is not None else "(end)"
    return (f"at {image.format_pc(capture.pc)} [{capture.context}]: frame {res.first_diff} "
            f"is {f(res.got)}, truth {f(res.want)}")


def format_table(summary: Summary) -> str:
    """The per-mode, per-class table (percentages of points)."""
    lines = [f"image {summary.image} (IRQ stack {summary.irq_stack} the task stack): "
             f"{summary.points} interruption points "
             f"({', '.join(f'{k} {v}' for k, v in sorted(summary.contexts.items()))}); "
             f"timeline {summary.instructions} instructions",
             f"workload: {summary.workload_functions} functions "
             f"({summary.workload_functions - len(summary.not_interrupted)} interrupted at "
             f"every instruction); instructions: {summary.workload_instructions} static, "
             f"{summary.executed_pcs} executed, {summary.interrupted_pcs} interrupted "
             f"at least once ({summary.forced_pcs} never executed by the task, reached by "
             f"steering branches: {summary.forced_points} points)",
             *(f"    not every instruction interrupted: {name} {hit}/{total}"
               for name, (hit, total) in sorted(summary.not_interrupted.items(),
                                                key=lambda kv: kv[1][0] - kv[1][1])),
             *(f"    harness code not interrupted everywhere: {name} {hit}/{total}"
               for name, (hit, total) in sorted(summary.harness_not_interrupted.items())
               if not summary.sampled),
             "",
             f"{'mode':<10} {'class':<10} {'points':>7} {'exact%':>7} {'reliable%':>9} "
             f"{'rel+wrong':>9}  first differing frame of wrong traces (P = the interrupted pc)"]
    by_mode: dict[str, list[tuple[str, Cell]]] = defaultdict(list)
    for (mode, cls), cell in summary.cells.items():
        by_mode[mode].append((cls, cell))
    for mode in [m.value for m in MODES if m.value in by_mode]:
        total = Cell()
        for cls in POINT_CLASSES:
            cell = next((c for k, c in by_mode[mode] if k == cls), None)
            if cell is None:
                continue
            total.points += cell.points
            total.exact += cell.exact
            total.reliable += cell.reliable
            total.reliable_wrong += cell.reliable_wrong
            total.first_diff.update(cell.first_diff)
            lines.append(_row(mode, cls, cell))
        lines.append(_row(mode, "ALL", total))
        for cls, cell in by_mode[mode]:
            for ex in cell.examples:
                lines.append(f"    reliable but wrong ({cls}) {ex}")
        lines.append("")
    t = summary.to_json()["sframe_targets"]
    lines.append(f"sframe targets: {t['with_rows_exact_reliable']}/{t['with_rows']} points "
                 f"with SFrame rows exact and reliable; {t['without_rows_unreliable_no_row']}/"
                 f"{t['without_rows']} points without rows unreliable (sframe-no-row)")
    split: Counter = Counter()
    for k, v in sorted(t["with_rows_failures"].items()):
        split[_failure_kind(k)] += v
        lines.append(f"    with rows, not exact+reliable: {k}: {v}  [{_failure_kind(k)}]")
    lines.append(f"sframe points with rows: {t['with_rows']} = "
                 f"{t['with_rows_exact_reliable']} exact+reliable"
                 + "".join(f" + {v} {k}" for k, v in sorted(split.items())))
    return "\n".join(lines)


#: Why sframe mode may be exact-but-unreliable where rows exist (test_truth's KNOWN_WINDOWS).
FP_BELOW_SP_RULE = ("unreliable with the right reason: the mandated FP >= SP rule "
                    "(x29 on the task stack, SP on the IRQ stack)")
V6_CFI_DEFECT = ("FINDING v6 3/9 CFI: CFA not updated after the pre-indexed stp "
                 "(CFA = SP+0 at call_on_irq_stack+0xc, really SP+16)")


def _failure_kind(key: str) -> str:
    if "call_on_irq_stack+0xc " in key and key.endswith("unreliable frame-shape"):
        return V6_CFI_DEFECT
    if key.startswith("call_on_irq_stack+") and key.endswith("unreliable sframe-fp-below-sp"):
        return FP_BELOW_SP_RULE
    return "UNEXPECTED"



def _row(mode: str, cls: str, c: Cell) -> str:
    def pct(x: int) -> str:
        return f"{100.0 * x / c.points:.1f}" if c.points else "-"
    diffs = ", ".join(f"{k} {v}" for k, v in c.first_diff.most_common(3))
    return (f"{mode:<10} {cls:<10} {c.points:>7} {pct(c.exact):>7} {pct(c.reliable):>9} "
            f"{c.reliable_wrong:>9}  {diffs}").rstrip()


@dataclass(frozen=True, slots=True)
class FunctionCoverage:
    """How much of one function the timeline executes (= interrupts: the plan interrupts
    the first execution of every executed instruction)."""

    name: str
    address: int
    instructions: int
    executed: int
    missing: tuple[int, ...]  # offsets of the instructions never executed
    part: str = "workload"  # "workload" (third-party code) or "harness" (the image's own)


def coverage(ref: Reference) -> list[FunctionCoverage]:
    """Per function (workload, then harness), its static instructions and those the
    timeline executes."""
    executed = ref.executed()
    out = []
    for part, symbols in (("workload", ref.image.workload_functions()),
                          ("harness", ref.image.harness_functions())):
        for sym in symbols:
            offsets = range(0, sym.size, 4)
            missing = tuple(o for o in offsets if sym.address + o not in executed)
            out.append(FunctionCoverage(sym.name, sym.address, len(offsets),
                                        len(offsets) - len(missing), missing, part))
    return out


def format_coverage(cov: list[FunctionCoverage], *, details: bool = False,
                    lines: dict[int, str] | None = None) -> str:
    """The coverage summary: totals per part, then every function with unexecuted
    instructions (*details*: their offsets, or with *lines* (pc -> "file:line") the source
    lines of each run of missing instructions)."""
    out = []
    for part in ("workload", "harness"):
        cs = [c for c in cov if c.part == part]
        if not cs:
            continue
        static = sum(c.instructions for c in cs)
        done = sum(c.executed for c in cs)
        full = sum(1 for c in cs if not c.missing)
        out.append(f"{part} functions: {len(cs)} ({full} fully executed); instructions: "
                   f"{done}/{static} executed")
        for c in sorted(cs, key=lambda c: -len(c.missing)):
            if not c.missing:
                continue
            out.append(f"  {c.name}: {c.executed}/{c.instructions}, "
                       f"{len(c.missing)} never executed")
            if lines is not None:
                for lo, hi in _runs(c.missing):
                    where = sorted({lines.get(c.address + o, "?")
                                    for o in range(lo, hi + 4, 4)})
                    out.append(f"    +{lo:#x}..+{hi:#x}: {' '.join(where)}")
            elif details:
                out.append("    " + " ".join(f"+{o:#x}" for o in c.missing))
    return "\n".join(out)


def _runs(offsets: tuple[int, ...]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for o in offsets:
        if runs and runs[-1][1] + 4 == o:
            runs[-1] = (runs[-1][0], o)
        else:
            runs.append((o, o))
    return runs


def source_lines(elf_path: str | Path) -> dict[int, str]:
    """pc -> "file:line" from the DWARF line table of an image built with ``-g`` (for
    ``truth coverage --lines``: the same code, with debug info)."""
    from elftools.elf.elffile import ELFFile

    from sfunwind.errors import ElfFormatError

    out: dict[int, str] = {}
    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        if not elf.has_dwarf_info():
            raise ElfFormatError("no DWARF line table (build it with "
                                 "tools/build_truth_image.py --debug)", path=str(elf_path))
        dwarf = elf.get_dwarf_info()
        for cu in dwarf.iter_CUs():
            lp = dwarf.line_program_for_CU(cu)
            if lp is None:
                continue
            names = [e.name.decode(errors="replace") for e in lp["file_entry"]]
            base = 1 if lp["version"] < 5 else 0
            rows = [e.state for e in lp.get_entries() if e.state is not None]
            for a, b in itertools.pairwise(rows):
                if a.end_sequence:
                    continue
                i = a.file - base
                name = names[i].rsplit("/", 1)[-1] if 0 <= i < len(names) else "?"
                for pc in range(a.address, b.address, 4):
                    out.setdefault(pc, f"{name}:{a.line}")
    return out
