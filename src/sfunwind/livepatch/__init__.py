"""Livepatch transition analysis, offline: would ``klp_try_switch_task()`` switch every task?

    >>> from sfunwind.livepatch import DumpInputs, PatchSpec, FuncSpec, build_ranges
    >>> from sfunwind.livepatch import try_complete_transition, compare
    >>> inputs = DumpInputs.open("hrtimer-plus8.vmcore.xz", "vmlinux.debug.xz")
    >>> plan = build_ranges(PatchSpec([FuncSpec.parse("do_wait")]), inputs)
    >>> res = try_complete_transition(inputs.tasks(), plan.ranges, inputs.trace, Mode.SFRAME)
    >>> res.complete, [d.message for d in res.blockers]

* :mod:`.transition` — the decision (plain inputs: :class:`TaskInfo` list, a trace provider
  ``(TaskInfo, Mode) -> Trace``, :class:`FuncRange` list), results, mode comparison;
* :mod:`.patch` — what is patched (``--func``/``--range``/.ko) → ranges, with livepatch's
  patching / unpatching / stacked-patch rules;
* :mod:`.kallsyms` — kallsyms (sympos order, kallsyms sizes) from a vmlinux or a module;
* :mod:`.ko` — a livepatch module's klp tables (static ``klp_patch`` or klp-build's
  ``.init.klp_objects``);
* :mod:`.dump` — those inputs from a vmcore; :mod:`.render`, :mod:`.cli` — output, command.
"""

from sfunwind.livepatch.dump import DumpInputs
from sfunwind.livepatch.kallsyms import Kallsyms, KSymbol
from sfunwind.livepatch.ko import LivepatchModule, read_livepatch_module
from sfunwind.livepatch.patch import (
    PATCHING,
    UNPATCHING,
    FuncSpec,
    PatchSpec,
    RangePlan,
    build_ranges,
)
from sfunwind.livepatch.transition import (
    MAX_STACK_ENTRIES,
    Comparison,
    FuncRange,
    TaskDecision,
    TaskInfo,
    TransitionResult,
    Verdict,
    compare,
    decide_task,
    try_complete_transition,
)

__all__ = [
    "MAX_STACK_ENTRIES", "PATCHING", "UNPATCHING", "Comparison", "DumpInputs", "FuncRange",
    "FuncSpec", "KSymbol", "Kallsyms", "LivepatchModule", "PatchSpec", "RangePlan",
    "TaskDecision", "TaskInfo", "TransitionResult", "Verdict", "build_ranges", "compare",
    "decide_task", "read_livepatch_module", "try_complete_transition",
]
