"""``klp_try_switch_task()``, offline: would each task switch to the target patch state now?

This is ``kernel/livepatch/transition.c`` (Linux 7.2) restated over plain inputs, so it runs
on a vmcore, on a snapshot or on synthetic traces alike:

* a list of :class:`TaskInfo` (every thread in ``for_each_process_thread`` order, then every
  possible CPU's idle task),
* a trace provider ``provider(task, mode) -> Trace`` (the reliable walk
  ``arch_stack_walk_reliable`` would do, as the unwinder reports it), and
* the address ranges ``klp_check_stack_func()`` searches (:class:`FuncRange`, built by
  :mod:`sfunwind.livepatch.patch` with livepatch's rules for patching, unpatching and stacked
  patches).

Per task, in the kernel's order (``klp_try_switch_task`` → ``task_call_func`` →
``klp_check_and_switch_task`` → ``klp_check_stack`` → ``klp_check_stack_func``):

1. an offline CPU's idle task is switched immediately (``klp_try_complete_transition``);
2. ``task_curr(task) && task != current`` → **-EBUSY** "is running";
3. ``stack_trace_save_tsk_reliable()``: no stack (a zombie) → reliably empty (0 entries);
   otherwise the reliable walk into a ``MAX_STACK_ENTRIES`` (100) buffer: an unreliable walk,
   or a walk that fills the buffer (its consumer then returns false, which arm64 turns into
   -EINVAL), → **-EINVAL** "has an unreliable stack";
4. for each patched object, each func, in order: any entry in the func's range
   (``address >= func_addr && address < func_addr + func_size``: raw return addresses, no
   ``-4``; a ``(P)`` entry is the exact interrupted PC) → **-EADDRINUSE** "is sleeping on
   function %s" with ``func->old_name`` (the first func that matches, not the first frame);
5. otherwise the task switches.

The messages are the kernel's ``pr_debug`` texts.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sfunwind.errors import SfunwindError
from sfunwind.unwind.trace import Frame, Mode, Reason, Trace

#: ``kernel/livepatch/transition.c``: the size of ``klp_stack_entries``.
MAX_STACK_ENTRIES = 100

EBUSY = 16
EINVAL = 22
EADDRINUSE = 98


class Verdict(enum.Enum):
    """What ``klp_check_and_switch_task()`` returns for one task."""

    SWITCHED = 0  # the task switches to the target state
    BUSY = -EBUSY  # running on a CPU and not current
    UNRELIABLE = -EINVAL  # stack_trace_save_tsk_reliable() failed
    IN_USE = -EADDRINUSE  # sleeping on a to-be-(un)patched function
    OFFLINE_IDLE = 1  # an offline CPU's idle task: switched without a check

    @property
    def errno_name(self) -> str:
        return {Verdict.SWITCHED: "0", Verdict.BUSY: "-EBUSY", Verdict.UNRELIABLE: "-EINVAL",
                Verdict.IN_USE: "-EADDRINUSE", Verdict.OFFLINE_IDLE: "0"}[self]

    @property
    def switches(self) -> bool:
        return self in (Verdict.SWITCHED, Verdict.OFFLINE_IDLE)

    @property
    def label(self) -> str:
        return {Verdict.SWITCHED: "switch", Verdict.BUSY: "running",
                Verdict.UNRELIABLE: "unreliable", Verdict.IN_USE: "in-use",
                Verdict.OFFLINE_IDLE: "offline-idle"}[self]


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """The facts about one task that ``klp_try_switch_task()`` looks at.

    ``running`` is ``task_curr(task)`` (the task is its CPU's ``rq->curr``), which is what
    -EBUSY tests — not ``on_cpu``.  ``idle_cpu`` is set for CPU *n*'s idle task
    (``idle_task(n)``); ``cpu_online`` only matters for those.  ``has_stack`` is
    ``try_get_task_stack()`` (false once a dead task's stack is freed).
    """

    pid: int
    comm: str
    task: int = 0
    tgid: int | None = None
    cpu: int | None = None
    state: str = "?"
    running: bool = False
    idle_cpu: int | None = None
    cpu_online: bool = True
    has_stack: bool = True

    @property
    def name(self) -> str:
        """``comm:pid`` as the kernel prints it."""
        return f"{self.comm}:{self.pid}"

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "tgid": self.tgid, "comm": self.comm, "task": self.task,
                "cpu": self.cpu, "state": self.state, "running": self.running,
                "idle_cpu": self.idle_cpu, "cpu_online": self.cpu_online,
                "has_stack": self.has_stack}


@dataclass(frozen=True, slots=True)
class FuncRange:
    """One ``klp_func`` as ``klp_check_stack_func()`` sees it: the range it searches.

    ``old_name`` is what the kernel reports ("is sleeping on function %s").  ``kind``:
    ``old`` (patching, the original function: ``func_stack`` is singular), ``previous``
    (patching a function an earlier patch already replaced: that patch's new function),
    ``new`` (unpatching: this patch's new function), ``range`` (an address range given
    directly).  ``label`` names what the range is (symbol, object) for people.
    """

    old_name: str
    start: int
    size: int
    kind: str = "old"
    object: str | None = None  # None: vmlinux
    label: str = ""

    @property
    def end(self) -> int:
        return self.start + self.size

    def contains(self, address: int) -> bool:
        return self.start <= address < self.start + self.size

    def to_json(self) -> dict[str, Any]:
        return {"old_name": self.old_name, "object": self.object or "vmlinux",
                "start": self.start, "end": self.end, "size": self.size, "kind": self.kind,
                "label": self.label or self.old_name}


@dataclass(slots=True)
class Hit:
    """Where a task's reliable trace enters a patched range."""

    func: FuncRange
    index: int  # entry index in the trace (0 = innermost)
    frame: Frame

    def to_json(self) -> dict[str, Any]:
        return {"function": self.func.old_name, "object": self.func.object or "vmlinux",
                "range_kind": self.func.kind, "index": self.index, "pc": self.frame.pc,
                "marker": self.frame.marker, "frame": self.frame.format()}

    def describe(self) -> str:
        m = self.frame.marker
        return (f"{self.func.old_name} at #{self.index} {self.frame.format_symbol()}"
                + (f" ({m})" if m else ""))


@dataclass(slots=True)
class TaskDecision:
    """``klp_try_switch_task()``'s answer for one task, with the evidence."""

    task: TaskInfo
    mode: Mode
    verdict: Verdict
    trace: Trace | None = None
    reasons: list[Reason] = field(default_factory=list)
    hit: Hit | None = None
    #: Patched ranges the *unreliable* or running task's trace enters (for people only:
    #: the kernel never looks at them): what it is doing in patched code.
    shadow_hits: list[Hit] = field(default_factory=list)
    is_current: bool = False
    entries: int = 0  # entries stack_trace_save_tsk_reliable() stored
    note: str = ""

    @property
    def switches(self) -> bool:
        return self.verdict.switches

    @property
    def message(self) -> str:
        """The kernel's ``pr_debug`` text for this task (``klp_try_switch_task``)."""
        who = self.task.name
        if self.verdict is Verdict.BUSY:
            return f"klp_try_switch_task: {who} is running"
        if self.verdict is Verdict.UNRELIABLE:
            return f"klp_try_switch_task: {who} has an unreliable stack"
        if self.verdict is Verdict.IN_USE:
            assert self.hit is not None
            return f"klp_try_switch_task: {who} is sleeping on function {self.hit.func.old_name}"
        if self.verdict is Verdict.OFFLINE_IDLE:
            return f"{who}: offline CPU {self.task.idle_cpu}'s idle task switches immediately"
        return f"{who} switches"

    @property
    def why(self) -> str:
        """One line for a table: the blocking fact."""
        if self.verdict is Verdict.BUSY:
            text = f"running on CPU {self.task.cpu}" if self.task.cpu is not None else "running"
            if self.shadow_hits:
                text += "; its stack holds " + self.shadow_hits[0].describe()
            return text
        if self.verdict is Verdict.UNRELIABLE:
            first = self.reasons[0] if self.reasons else None
            text = f"{first.code}: {first.message}" if first else "unreliable"
            if first is not None and first.index is not None:
                text = f"#{first.index} " + text
            if self.shadow_hits:
                text += "; its (unreliable) trace shows " + self.shadow_hits[0].describe()
            return text
        if self.verdict is Verdict.IN_USE:
            assert self.hit is not None
            return "sleeping on " + self.hit.describe()
        return self.note or f"{self.entries} entries, none patched"

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task.to_json(),
            "mode": self.mode.value,
            "verdict": self.verdict.label,
            "errno": self.verdict.errno_name,
            "switches": self.switches,
            "message": self.message,
            "current": self.is_current,
            "entries": self.entries,
            "reasons": [r.to_json() for r in self.reasons],
            "hit": self.hit.to_json() if self.hit else None,
            "shadow_hits": [h.to_json() for h in self.shadow_hits],
            "note": self.note,
            "trace": self.trace.to_json() if self.trace is not None else None,
        }


TraceProvider = Callable[[TaskInfo, Mode], Trace]


def find_hit(entries: Sequence[Frame], ranges: Iterable[FuncRange]) -> Hit | None:
    """``klp_check_stack()``'s loop: funcs in order, the first func any entry falls in."""
    for func in ranges:
        for i, frame in enumerate(entries):
            if func.contains(frame.pc):
                return Hit(func, i, frame)
    return None


def _all_hits(entries: Sequence[Frame], ranges: Iterable[FuncRange]) -> list[Hit]:
    hits = []
    for i, frame in enumerate(entries):
        for func in ranges:
            if func.contains(frame.pc):
                hits.append(Hit(func, i, frame))
                break
    return hits


def _trace_failure(exc: SfunwindError) -> Reason:
    return Reason("analysis-error", f"the dump cannot answer: {exc}")


def decide_task(task: TaskInfo, ranges: Sequence[FuncRange], provider: TraceProvider,
                mode: Mode, *, current: bool = False,
                max_entries: int = MAX_STACK_ENTRIES) -> TaskDecision:
    """``klp_try_switch_task(task)`` for one task (the task has not switched yet)."""
    if task.idle_cpu is not None and not task.cpu_online:
        return TaskDecision(task, mode, Verdict.OFFLINE_IDLE,
                            note=f"CPU {task.idle_cpu} is offline")
    if task.running and not current:
        decision = TaskDecision(task, mode, Verdict.BUSY)
        # The kernel stops here; the trace is still worth showing (what it is running).
        try:
            decision.trace = provider(task, mode)
            decision.shadow_hits = _all_hits(decision.trace.frames, ranges)
        except SfunwindError as exc:
            decision.note = f"no trace: {exc}"
        return decision
    if not task.has_stack:
        return TaskDecision(task, mode, Verdict.SWITCHED, is_current=current,
                            note="no task stack (reliably empty)")
    try:
        trace = provider(task, mode)
    except SfunwindError as exc:
        return TaskDecision(task, mode, Verdict.UNRELIABLE, reasons=[_trace_failure(exc)],
                            is_current=current)
    reasons = list(trace.reasons)
    if not trace.reliable and not reasons:
        reasons.append(Reason("unreliable", "the unwinder marked the walk unreliable"))
    if len(trace.frames) >= max_entries and not any(r.code == "too-many-entries"
                                                    for r in reasons):
        reasons.append(Reason("too-many-entries", f"{len(trace.frames)} entries: livepatch's "
                              f"buffer of {max_entries} fills and its consumer stops the walk",
                              max_entries - 1))
    if reasons:
        reasons.sort(key=lambda r: (r.index if r.index is not None else 1 << 30))
        return TaskDecision(task, mode, Verdict.UNRELIABLE, trace=trace, reasons=reasons,
                            shadow_hits=_all_hits(trace.frames, ranges), is_current=current,
                            entries=min(len(trace.frames), max_entries))
    hit = find_hit(trace.frames, ranges)
    verdict = Verdict.IN_USE if hit else Verdict.SWITCHED
    return TaskDecision(task, mode, verdict, trace=trace, hit=hit, is_current=current,
                        entries=len(trace.frames),
                        shadow_hits=_all_hits(trace.frames, ranges) if hit else [])


@dataclass(slots=True)
class TransitionResult:
    """``klp_try_complete_transition()`` at the dump's instant, in one unwinder mode."""

    mode: Mode
    direction: str
    ranges: list[FuncRange]
    decisions: list[TaskDecision]
    current: int | None = None  # pid treated as ``current``
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Would ``klp_try_complete_transition()`` call ``klp_complete_transition()``?"""
        return all(d.switches for d in self.decisions)

    @property
    def blockers(self) -> list[TaskDecision]:
        return [d for d in self.decisions if not d.switches]

    def counts(self) -> Counter[str]:
        return Counter(d.verdict.label for d in self.decisions)

    def blocking_functions(self) -> Counter[str]:
        """old_name → number of tasks sleeping on it."""
        return Counter(d.hit.func.old_name for d in self.decisions if d.hit is not None)

    def summary(self) -> str:
        c = self.counts()
        n = len(self.decisions)
        head = (f"{self.direction} transition, {self.mode.value} unwinder: "
                + ("COMPLETES at this instant" if self.complete else
                   f"STALLS: {len(self.blockers)} of {n} tasks cannot switch"))
        parts = [f"{c.get(k, 0)} {k}" for k in ("switch", "running", "unreliable", "in-use",
                                                 "offline-idle") if c.get(k, 0)]
        return head + " (" + ", ".join(parts) + ")"

    def to_json(self, *, traces: bool = True) -> dict[str, Any]:
        decisions = []
        for d in self.decisions:
            j = d.to_json()
            if not traces:
                j.pop("trace")
            decisions.append(j)
        return {
            "mode": self.mode.value,
            "direction": self.direction,
            "complete": self.complete,
            "current": self.current,
            "counts": dict(self.counts()),
            "blocking_functions": dict(self.blocking_functions()),
            "ranges": [r.to_json() for r in self.ranges],
            "blockers": [{"pid": d.task.pid, "comm": d.task.comm, "verdict": d.verdict.label,
                          "errno": d.verdict.errno_name, "why": d.why,
                          "message": d.message} for d in self.blockers],
            "notes": self.notes,
            "tasks": decisions,
        }


def _is_current(task: TaskInfo, current: int | None) -> bool:
    return current is not None and ((task.pid == current and task.idle_cpu is None)
                                    or task.task == current)


def try_complete_transition(tasks: Sequence[TaskInfo], ranges: Sequence[FuncRange],
                            provider: TraceProvider, mode: Mode, *,
                            direction: str = "patching", current: int | None = None,
                            max_entries: int = MAX_STACK_ENTRIES) -> TransitionResult:
    """Decide every task, threads first and idle tasks last, as the kernel's loop does.

    *current* (a pid, or a task_struct address) names the task that runs the transition:
    it is not -EBUSY even though it is running, and its own stack is checked.  Everything
    else running on a CPU at the dump's instant is -EBUSY.
    """
    ordered = [t for t in tasks if t.idle_cpu is None] + sorted(
        (t for t in tasks if t.idle_cpu is not None), key=lambda t: t.idle_cpu or 0)
    decisions = [decide_task(t, ranges, provider, mode, current=_is_current(t, current),
                             max_entries=max_entries) for t in ordered]
    result = TransitionResult(mode, direction, list(ranges), decisions, current)
    if current is not None and not any(d.is_current for d in decisions):
        result.notes.append(f"--current {current}: no such task in the dump")
    return result


@dataclass(slots=True)
class TaskChange:
    """One task across the two unwinder modes."""

    task: TaskInfo
    before: TaskDecision  # upstream
    after: TaskDecision  # sframe

    @property
    def kind(self) -> str:
        b, a = self.before.verdict, self.after.verdict
        if b is a:
            return "same"
        if not b.switches and a.switches:
            return "unblocked"
        if b is Verdict.UNRELIABLE and a is Verdict.IN_USE:
            return "revealed"  # the blocker is now known: it really sits in patched code
        if b.switches and not a.switches:
            return "regressed"
        return "changed"


@dataclass(slots=True)
class Comparison:
    """The same transition decided with two unwinders: what the SFrame series buys."""

    before: TransitionResult
    after: TransitionResult
    changes: list[TaskChange]

    def by_kind(self) -> dict[str, list[TaskChange]]:
        out: dict[str, list[TaskChange]] = {}
        for c in self.changes:
            out.setdefault(c.kind, []).append(c)
        return out

    def summary(self) -> str:
        k = self.by_kind()
        parts = [f"{len(k.get(x, []))} {x}" for x in ("unblocked", "revealed", "regressed",
                                                      "changed")]
        return (f"{self.before.mode.value} -> {self.after.mode.value}: "
                f"{len(self.before.blockers)} -> {len(self.after.blockers)} blocking tasks; "
                + ", ".join(parts))

    def to_json(self) -> dict[str, Any]:
        return {
            "before": self.before.mode.value,
            "after": self.after.mode.value,
            "complete": {self.before.mode.value: self.before.complete,
                         self.after.mode.value: self.after.complete},
            "blockers": {self.before.mode.value: len(self.before.blockers),
                         self.after.mode.value: len(self.after.blockers)},
            "changes": [{"pid": c.task.pid, "comm": c.task.comm, "kind": c.kind,
                         "before": c.before.verdict.label, "after": c.after.verdict.label,
                         "before_why": c.before.why, "after_why": c.after.why}
                        for c in self.changes if c.kind != "same"],
        }


def compare(before: TransitionResult, after: TransitionResult) -> Comparison:
    """Pair the decisions of two runs over the same tasks (matched by task address+pid)."""
    index = {(d.task.task, d.task.pid, d.task.idle_cpu): d for d in after.decisions}
    changes = []
    for d in before.decisions:
        other = index.get((d.task.task, d.task.pid, d.task.idle_cpu))
        if other is not None:
            changes.append(TaskChange(d.task, d, other))
    return Comparison(before, after, changes)
