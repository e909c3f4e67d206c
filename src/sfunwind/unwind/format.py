"""Text output of traces: the kernel's own ``dump_backtrace`` lines, plus where each frame
was found, a line at every exception boundary and stack switch, and the verdict."""

from __future__ import annotations

from collections.abc import Iterable

from sfunwind.unwind.trace import EventKind, Trace

#: Column at which the stack name is printed after a kernel-format line.
_STACK_COLUMN = 56


def trace_header(trace: Trace) -> str:
    who = []
    if trace.pid is not None:
        who.append(f"pid {trace.pid}")
    if trace.comm is not None:
        who.append(f"({trace.comm})")
    if trace.cpu is not None:
        who.append(f"CPU {trace.cpu}")
    if trace.task is not None:
        who.append(f"task {trace.task:#x}")
    start = {"task": "sleeping task (thread.cpu_context)", "regs": "registers",
             "cpu": "CPU registers (PRSTATUS)", "caller": "caller",
             "snapshot": "snapshot registers"}.get(trace.start, trace.start)
    return f"{' '.join(who) or 'trace'}: mode {trace.mode.value}, from {start}"


def format_trace(trace: Trace) -> str:
    """The whole trace as text (ends with a newline)."""
    lines = [trace_header(trace), "Call trace:"]
    events_at: dict[int, list[str]] = {}
    for event in trace.events:
        if event.kind is EventKind.EXCEPTION_BOUNDARY:
            text = f" ---- exception boundary: {event.detail} ----"
        elif event.kind is EventKind.STACK_SWITCH:
            text = f" ---- stack switch: {event.detail} ----"
        elif event.kind is EventKind.FINAL:
            at = f" at {event.address:#x}" if event.address is not None else ""
            text = f" ---- end: FINAL record{at} ----"
        else:
            text = f" ---- stopped: {event.detail} ----"
        events_at.setdefault(event.index, []).append(text)
    for i, frame in enumerate(trace.frames):
        lines.extend(events_at.pop(i, ()))
        line = " " + frame.format()
        where = frame.stack or "regs"
        lines.append(f"{line:<{_STACK_COLUMN}} [{where}]")
    for index in sorted(events_at):
        lines.extend(events_at[index])
    if trace.reliable:
        lines.append("verdict: reliable")
    else:
        lines.append(f"verdict: UNRELIABLE ({len(trace.reasons)} reason"
                     f"{'' if len(trace.reasons) == 1 else 's'})")
        for reason in trace.reasons:
            at = f" [frame {reason.index}]" if reason.index is not None else ""
            lines.append(f"  {reason.code}: {reason.message}{at}")
    return "\n".join(lines) + "\n"


def reliability_table(rows: Iterable[tuple[str, Trace, Trace]]) -> str:
    """One line per task: ``name``, reliable in upstream / sframe, and the reasons of the rest.

    *rows* are ``(label, upstream_trace, sframe_trace)``.
    """
    out = [f"{'task':<28} {'upstream':<10} {'sframe':<10} reasons"]
    n = up_ok = sf_ok = 0
    for label, up, sf in rows:
        n += 1
        up_ok += up.reliable
        sf_ok += sf.reliable
        why = ", ".join(sorted({r.code for r in sf.reasons}))
        why_up = ", ".join(sorted({r.code for r in up.reasons}))
        reasons = " | ".join(f"{mode}: {why}" for mode, why in (("sframe", why),
                                                                  ("upstream", why_up)) if why)
        out.append(f"{label:<28} {'yes' if up.reliable else 'no':<10} "
                   f"{'yes' if sf.reliable else 'no':<10} {reasons}")
    out.append(f"{'total ' + str(n):<28} {up_ok:<10} {sf_ok:<10}")
    return "\n".join(out) + "\n"
