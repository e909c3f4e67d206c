"""Text output of livepatch transition checks: per-task table, blockers, comparison."""

from __future__ import annotations

from sfunwind.livepatch.patch import RangePlan
from sfunwind.livepatch.transition import Comparison, TaskDecision, TransitionResult


def _task_cells(d: TaskDecision) -> list[str]:
    t = d.task
    comm = t.comm + (" *" if d.is_current else "")
    cpu = "-" if t.cpu is None else str(t.cpu)
    kind = f"idle/{t.idle_cpu}" if t.idle_cpu is not None else t.state
    return [str(t.pid), comm, cpu, kind]


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    out = []
    for r in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)] + [r[-1]]
        out.append("  ".join(cells).rstrip())
    return out


def format_plan(plan: RangePlan) -> str:
    lines = [f"{plan.direction}: {len(plan.ranges)} range(s) searched "
             "(klp_check_stack_func)"]
    lines += ["  " + s for s in plan.describe()]
    return "\n".join(lines) + "\n"


def format_result(result: TransitionResult, *, verbose: bool = False) -> str:
    """The per-task table, then the blockers with their reasons, then the verdict."""
    header = ["PID", "COMM", "CPU", "STATE", "VERDICT", "ERRNO", "WHY"]
    rows = [[*_task_cells(d), d.verdict.label, d.verdict.errno_name, d.why]
            for d in result.decisions if verbose or not d.switches]
    lines = [f"== {result.mode.value} unwinder: {len(result.decisions)} tasks "
             f"({'all' if verbose else 'blocking ones'} shown; * = current)"]
    if rows:
        lines += _table(rows, header)
    else:
        lines.append("(no task blocks)")
    blockers = result.blockers
    if blockers:
        lines.append("")
        lines.append("kernel messages (pr_debug):")
        lines += ["  " + d.message for d in blockers]
    funcs = result.blocking_functions()
    if funcs:
        lines.append("")
        lines.append("tasks sleeping on patched functions: "
                     + ", ".join(f"{n} ({c})" for n, c in funcs.most_common()))
    running = [d for d in result.decisions if d.shadow_hits and d.verdict.label == "running"]
    for d in running:
        lines.append(f"note: {d.task.name} is running with {d.shadow_hits[0].describe()} on "
                     "its stack: the transition waits for it to leave")
    lines += [f"note: {n}" for n in result.notes]
    lines.append("")
    lines.append(result.summary())
    return "\n".join(lines) + "\n"


def format_comparison(cmp: Comparison) -> str:
    header = ["PID", "COMM", "CPU", "STATE", cmp.before.mode.value.upper(),
              cmp.after.mode.value.upper(), "CHANGE / WHY"]
    rows = []
    for c in cmp.changes:
        if c.kind == "same" and c.before.switches:
            continue
        why = c.after.why
        if c.kind == "same" and c.before.why != c.after.why:
            why = f"{c.before.mode.value}: {c.before.why} | {c.after.mode.value}: {c.after.why}"
        rows.append([*_task_cells(c.after), c.before.verdict.label, c.after.verdict.label, f"{c.kind}: {why}"])
    lines = [f"== what the SFrame unwinder changes ({cmp.before.mode.value} -> "
             f"{cmp.after.mode.value}), tasks that block in either mode"]
    lines += _table(rows, header) if rows else ["(no task blocks in either mode)"]
    lines.append("")
    lines.append(cmp.before.summary())
    lines.append(cmp.after.summary())
    lines.append(cmp.summary())
    return "\n".join(lines) + "\n"
