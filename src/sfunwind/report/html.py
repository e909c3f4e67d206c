"""One self-contained HTML page per dump: traces, reliability in both unwinder modes, the
livepatch picture and a chart of where unreliable verdicts come from.

Self-contained means: inline CSS, inline SVG, no script, no external reference of any kind
(fonts, images, styles), so the file can be mailed or attached to a bug as is.  Collapsible
parts use ``<details>``.

:func:`collect` gathers everything from a :class:`~sfunwind.livepatch.dump.DumpInputs`;
:func:`render` turns it into the page.  Both are separate so the page can be tested on
synthetic data.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field

from sfunwind.livepatch.patch import RangePlan
from sfunwind.livepatch.transition import (
    Comparison,
    FuncRange,
    TaskInfo,
    TransitionResult,
    compare,
    try_complete_transition,
)
from sfunwind.unwind.trace import EventKind, Mode, Trace

MODES = (Mode.UPSTREAM, Mode.SFRAME)
#: At most this many categories in the chart (the rest are summed as "other").
CHART_CATEGORIES = 12
#: At most this many functions in the "would block a patch of" list.
TOP_FUNCTIONS = 20


@dataclass(slots=True)
class CpuLine:
    cpu: int
    pid: int
    comm: str
    where: str  # symbol of the PRSTATUS pc


@dataclass(slots=True)
class DumpReport:
    title: str
    facts: list[tuple[str, str]]
    cpus: list[CpuLine]
    tasks: list[TaskInfo]
    traces: dict[Mode, dict[int, Trace]]  # mode -> task address -> trace
    errors: dict[Mode, dict[int, str]] = field(default_factory=dict)
    plan: RangePlan | None = None
    results: dict[Mode, TransitionResult] = field(default_factory=dict)

    def trace(self, mode: Mode, task: TaskInfo) -> Trace | None:
        return self.traces.get(mode, {}).get(task.task)


def collect(inputs, *, title: str, plan: RangePlan | None = None,
            current: int | None = None) -> DumpReport:
    """Everything the page shows, from a vmcore (``inputs``: DumpInputs)."""
    from sfunwind.errors import SfunwindError

    prog = inputs.program
    tasks = inputs.tasks()
    traces: dict[Mode, dict[int, Trace]] = {m: {} for m in MODES}
    errors: dict[Mode, dict[int, str]] = {m: {} for m in MODES}
    for m in MODES:
        for t in tasks:
            try:
                traces[m][t.task] = inputs.trace(t, m)
            except SfunwindError as exc:
                errors[m][t.task] = str(exc)
    cpus = []
    for c in prog.cpus():
        try:
            cur = c.curr_task
            pid, comm = cur.pid, cur.comm
        except SfunwindError:
            pid, comm = -1, "?"
        pr = c.prstatus
        if pr is None:
            where = "? (no NT_PRSTATUS)"
        elif getattr(pr, "in_kernel", True):
            where = prog.symbols.format(pr.pc)
        else:
            where = f"user mode, pc {pr.pc:#x}"
        cpus.append(CpuLine(c.index, pid, comm, where))
    vi = prog.vmcoreinfo
    facts = [("kernel", getattr(vi, "osrelease", "") or "?"),
             ("build ID", prog.build_id or "?"),
             ("KASLR offset", f"{prog.kaslr_offset:#x}"),
             ("tasks", str(len(tasks))), ("CPUs", str(len(cpus)))]
    report = DumpReport(title, facts, cpus, tasks, traces, errors, plan)
    if plan is not None:
        for m in MODES:
            report.results[m] = try_complete_transition(
                tasks, plan.ranges, inputs.trace, m, direction=plan.direction, current=current)
            report.results[m].notes.extend(plan.skipped)
    return report


# -- analysis shared by the sections ----------------------------------------------------------

def first_reason_category(trace: Trace) -> tuple[str, str]:
    """(reason code, where) of the first reason of an unreliable trace."""
    if not trace.reasons:
        return "unreliable", ""
    r = min(trace.reasons, key=lambda x: x.index if x.index is not None else 1 << 30)
    where = ""
    # the frame the reason is about: the one at its address (e.g. the interrupted pc that
    # has no SFrame row), else the frame at its index
    at = [f for f in trace.frames if r.address is not None and f.pc == r.address]
    if not at and r.index is not None and 0 <= r.index < len(trace.frames):
        at = [trace.frames[r.index]]
    if at:
        where = at[0].symbol or f"{at[0].pc:#x}"
    return r.code, where


def unreliable_sources(report: DumpReport) -> dict[str, Counter[str]]:
    """category ("code at function") -> count per mode, for tasks that are not running."""
    out: dict[str, Counter[str]] = {}
    for m in MODES:
        for t in report.tasks:
            tr = report.trace(m, t)
            if tr is None or tr.reliable or t.running:
                continue
            code, where = first_reason_category(tr)
            label = f"{code} at {where}" if where else code
            out.setdefault(label, Counter())[m.value] += 1
    return out


def blocking_candidates(report: DumpReport, mode: Mode) -> Counter[str]:
    """function -> number of sleeping tasks whose *reliable* trace holds it: patching it now
    would find those tasks -EADDRINUSE."""
    c: Counter[str] = Counter()
    for t in report.tasks:
        tr = report.trace(mode, t)
        if tr is None or not tr.reliable or t.running:
            continue
        c.update({f.symbol for f in tr.frames if f.symbol})
    return c


# -- rendering -----------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1c2329;
background:#f6f7f9}
header{background:#1f2d3a;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}
header .sub{opacity:.8;margin-top:4px}
main{padding:10px 28px 40px;max-width:1500px}
section{background:#fff;border:1px solid #dde2e7;border-radius:8px;margin:18px 0;padding:14px 18px}
h2{font-size:18px;margin:2px 0 10px}
table{border-collapse:collapse;width:100%}
th,td{padding:3px 8px;text-align:left;border-bottom:1px solid #edf0f2;vertical-align:top}
th{background:#f0f3f6;font-weight:600}
.mono,td.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:12.5px}
.facts td:first-child{color:#5b6770;width:140px}
.cards{display:flex;gap:14px;flex-wrap:wrap}
.card{flex:1 1 220px;border-radius:8px;padding:12px 14px;border:1px solid #dde2e7}
.card .n{font-size:26px;font-weight:700}
.ok{color:#1e7d32}.bad{color:#b3261e}.warn{color:#9a6400}
.v{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600}
.v-switch,.v-reliable,.v-offline-idle{background:#e3f4e6;color:#1e7d32}
.v-unreliable{background:#fde4e1;color:#b3261e}
.v-in-use{background:#fff0cc;color:#8a5a00}
.v-running{background:#e4ecfb;color:#1d4fa8}
.m{display:inline-block;min-width:18px;text-align:center;border-radius:4px;font-weight:700;
font-size:11.5px;padding:0 3px;margin-left:4px}
.m-P{background:#b3261e;color:#fff}.m-L{background:#7b3fb5;color:#fff}
.m-T{background:#1d4fa8;color:#fff}.m-C{background:#1d4fa8;color:#fff}
.m-U{background:#444;color:#fff}.m-F,.m-PF,.m-LF,.m-K{background:#9a6400;color:#fff}
tr.ev td{background:#f3f0fa;color:#4a2a7a;font-style:italic;font-size:12px}
tr.ev.boundary td{background:#fdecea;color:#8c1d18;font-weight:600;font-style:normal}
tr.ev.final td{background:#e8f5e9;color:#1e7d32}
tr.ev.error td{background:#fde4e1;color:#8c1d18}
tr.patched td{background:#fff4d6}
tr.cause td:first-child{box-shadow:inset 4px 0 #b3261e}
tr.cause td{background:#fdf1ef}
details{border-top:1px solid #edf0f2;padding:4px 0}
summary{cursor:pointer;padding:3px 0}
.pair{display:flex;gap:16px}.pair>div{flex:1 1 0;min-width:0}
.reasons{margin:6px 0 0;padding-left:18px;color:#8c1d18;font-size:12.5px}
.legend span{margin-right:14px}
.small{font-size:12px;color:#5b6770}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _badge(label: str) -> str:
    return f'<span class="v v-{_e(label)}">{_e(label)}</span>'


def _marker(marker: str) -> str:
    return f'<span class="m m-{_e(marker)}">{_e(marker)}</span>' if marker else ""


def _verdict_of(trace: Trace | None) -> str:
    if trace is None:
        return "unreliable"
    return "reliable" if trace.reliable else "unreliable"


def _section_overview(r: DumpReport) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td class='mono'>{_e(v)}</td></tr>" for k, v in r.facts)
    cpus = "".join(f"<tr><td>CPU {c.cpu}</td><td class='mono'>{_e(c.comm)}:{c.pid} at "
                   f"{_e(c.where)}</td></tr>" for c in r.cpus)
    cards = []
    sleeping = [t for t in r.tasks if not t.running]
    for m in MODES:
        ok = sum(1 for t in sleeping if (tr := r.trace(m, t)) is not None and tr.reliable)
        cls = "ok" if ok == len(sleeping) else "warn"
        cards.append(f"<div class='card'><div class='small'>{_e(m.value)} unwinder: reliable "
                     f"traces of tasks not running</div><div class='n {cls}'>{ok} / "
                     f"{len(sleeping)}</div></div>")
    if r.results:
        for m, res in r.results.items():
            cls = "ok" if res.complete else "bad"
            text = "completes" if res.complete else f"stalls ({len(res.blockers)} tasks)"
            cards.append(f"<div class='card'><div class='small'>livepatch transition, "
                         f"{_e(m.value)}</div><div class='n {cls}'>{_e(text)}</div></div>")
    return (f"<section id='overview'><h2>Dump</h2><table class='facts'>{rows}{cpus}</table>"
            f"<div class='cards' style='margin-top:12px'>{''.join(cards)}</div></section>")


def _section_chart(r: DumpReport) -> str:
    data = unreliable_sources(r)
    items = sorted(data.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    if len(items) > CHART_CATEGORIES:
        other: Counter[str] = Counter()
        for _, c in items[CHART_CATEGORIES - 1:]:
            other.update(c)
        items = [*items[:CHART_CATEGORIES - 1], ("other", other)]
    if not items:
        return ("<section id='chart'><h2>Where unreliable verdicts come from</h2>"
                "<p>Every trace of a task that is not running is reliable in both modes.</p>"
                "</section>")
    colors = {Mode.UPSTREAM.value: "#c0392b", Mode.SFRAME.value: "#2e86c1"}
    bar_h, gap, label_w, chart_w = 14, 10, 380, 420
    top = 30
    height = top + len(items) * (2 * bar_h + gap) + 10
    peak = max(max(c.values()) for _, c in items) or 1
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + chart_w + 60}' "
             f"height='{height}' role='img' aria-label='unreliable verdicts by cause'>",
             "<style>text{font:12px system-ui,sans-serif;fill:#1c2329}</style>"]
    x = label_w
    for i, m in enumerate(MODES):
        parts.append(f"<rect x='{x + i * 150}' y='6' width='12' height='12' "
                     f"fill='{colors[m.value]}'/><text x='{x + i * 150 + 18}' y='16'>"
                     f"{_e(m.value)}</text>")
    y = top
    for label, counts in items:
        shown = label if len(label) <= 58 else label[:55] + "..."
        parts.append(f"<text x='{label_w - 8}' y='{y + bar_h + 4}' text-anchor='end'>"
                     f"<title>{_e(label)}</title>{_e(shown)}</text>")
        for j, m in enumerate(MODES):
            n = counts.get(m.value, 0)
            w = round(chart_w * n / peak)
            yy = y + j * bar_h
            parts.append(f"<rect x='{x}' y='{yy}' width='{max(w, 1 if n else 0)}' "
                         f"height='{bar_h - 2}' fill='{colors[m.value]}'><title>{_e(m.value)}: "
                         f"{n}</title></rect><text x='{x + w + 5}' y='{yy + bar_h - 3}'>{n}</text>")
        y += 2 * bar_h + gap
    parts.append("</svg>")
    return ("<section id='chart'><h2>Where unreliable verdicts come from</h2>"
            "<p class='small'>Tasks that are not running, by the first reason of their "
            "unreliable trace and the function at that frame, per unwinder.</p>"
            + "".join(parts) + "</section>")


def _section_reliability(r: DumpReport) -> str:
    rows = []
    for t in r.tasks:
        cells = [f"<td>{t.pid}</td><td class='mono'>{_e(t.comm)}</td>"
                 f"<td>{'-' if t.cpu is None else t.cpu}</td>"
                 f"<td>{_e(f'idle/{t.idle_cpu}' if t.idle_cpu is not None else t.state)}"
                 f"{' (running)' if t.running else ''}</td>"]
        for m in MODES:
            tr = r.trace(m, t)
            err = r.errors.get(m, {}).get(t.task)
            if tr is None:
                cells.append(f"<td>{_badge('unreliable')}</td><td class='small'>{_e(err)}</td>")
                continue
            why = ""
            if not tr.reliable:
                code, where = first_reason_category(tr)
                why = code + (f" at {where}" if where else "")
            cells.append(f"<td>{_badge(_verdict_of(tr))} <span class='small'>"
                         f"{len(tr.frames)} frames</span></td><td class='small'>{_e(why)}</td>")
        rows.append(f"<tr><td><a href='#t{t.task:x}'>#</a></td>{''.join(cells)}</tr>")
    head = ("<tr><th></th><th>PID</th><th>COMM</th><th>CPU</th><th>STATE</th>"
            + "".join(f"<th>{_e(m.value)}</th><th>why</th>" for m in MODES) + "</tr>")
    return (f"<section id='reliability'><h2>Reliability, both unwinders</h2>"
            f"<table>{head}{''.join(rows)}</table></section>")


def _section_livepatch(r: DumpReport) -> str:
    out = ["<section id='livepatch'><h2>Livepatch</h2>"]
    if r.plan is not None and r.results:
        up, sf = r.results[Mode.UPSTREAM], r.results[Mode.SFRAME]
        cmp: Comparison = compare(up, sf)
        out.append("<p>Functions searched (<span class='mono'>klp_check_stack_func</span>, "
                   f"{_e(r.plan.direction)}):</p><ul>")
        out += [f"<li class='mono'>{_e(line)}</li>" for line in r.plan.describe()]
        out.append("</ul>")
        out.append(f"<p><b>{_e(up.summary())}</b><br><b>{_e(sf.summary())}</b><br>"
                   f"{_e(cmp.summary())}</p>")
        rows = []
        for c in cmp.changes:
            if c.kind == "same" and c.before.switches:
                continue
            rows.append(f"<tr><td>{c.task.pid}</td><td class='mono'>{_e(c.task.comm)}</td>"
                        f"<td>{_badge(c.before.verdict.label)}</td><td class='small'>"
                        f"{_e(c.before.why)}</td><td>{_badge(c.after.verdict.label)}</td>"
                        f"<td class='small'>{_e(c.after.why)}</td><td>{_e(c.kind)}</td></tr>")
        out.append("<table><tr><th>PID</th><th>COMM</th><th>upstream</th><th>why</th>"
                   "<th>sframe</th><th>why</th><th>change</th></tr>" + "".join(rows)
                   + "</table>")
        notes = sorted(set(up.notes + sf.notes))
        if notes:
            out.append("<ul class='small'>" + "".join(f"<li>{_e(n)}</li>" for n in notes)
                       + "</ul>")
    else:
        out.append("<p>No patch given (<span class='mono'>--func/--range/--ko</span>): what "
                   "any patch would meet at this instant.</p>")
    for m in MODES:
        running = [t for t in r.tasks if t.running]
        unrel = [t for t in r.tasks if not t.running
                 and ((tr := r.trace(m, t)) is None or not tr.reliable)]
        cands = blocking_candidates(r, m).most_common(TOP_FUNCTIONS)
        out.append(f"<h3>{_e(m.value)} unwinder</h3><p>Whatever is patched, "
                   f"{len(running)} running task(s) are -EBUSY "
                   f"({_e(', '.join(f'{t.comm}:{t.pid}' for t in running)) or 'none'}) and "
                   f"{len(unrel)} task(s) are -EINVAL "
                   f"({_e(', '.join(f'{t.comm}:{t.pid}' for t in unrel)) or 'none'}).</p>")
        if cands:
            items = "".join(f"<tr><td class='mono'>{_e(name)}</td><td>{n}</td></tr>"
                            for name, n in cands)
            out.append("<details><summary>Functions on reliable sleeping stacks (patching one "
                       "finds that many tasks -EADDRINUSE)</summary><table><tr><th>function"
                       f"</th><th>tasks</th></tr>{items}</table></details>")
    out.append("</section>")
    return "".join(out)


def _frames_table(trace: Trace, ranges: list[FuncRange]) -> str:
    events: dict[int, list[str]] = {}
    for ev in trace.events:
        cls = {EventKind.EXCEPTION_BOUNDARY: "boundary", EventKind.STACK_SWITCH: "switch",
               EventKind.FINAL: "final", EventKind.ERROR: "error"}[ev.kind]
        text = {"boundary": "exception boundary", "switch": "stack switch",
                "final": "end: FINAL record", "error": "stopped"}[cls]
        detail = f": {ev.detail}" if ev.detail and cls != "final" else ""
        events.setdefault(ev.index, []).append(
            f"<tr class='ev {cls}'><td colspan='3'>---- {_e(text + detail)} ----</td></tr>")
    causes = {x.index for x in trace.reasons if x.index is not None}
    rows = []
    for i, f in enumerate(trace.frames):
        rows += events.pop(i, [])
        cls = []
        if any(rg.contains(f.pc) for rg in ranges):
            cls.append("patched")
        if i in causes and not trace.reliable:
            cls.append("cause")
        rows.append(f"<tr class='{' '.join(cls)}'><td class='small'>#{i}</td><td class='mono'>"
                    f"{_e(f.format_symbol())}{_marker(f.marker)}</td><td class='small'>"
                    f"{_e(f.stack or 'regs')}</td></tr>")
    for idx in sorted(events):
        rows += events[idx]
    reasons = ""
    if not trace.reliable:
        reasons = "<ul class='reasons'>" + "".join(
            f"<li>{_e(x.code)}: {_e(x.message)}"
            f"{'' if x.index is None else f' [frame {x.index}]'}</li>" for x in trace.reasons
        ) + "</ul>"
    return f"<table>{''.join(rows)}</table>{reasons}"


def _section_traces(r: DumpReport) -> str:
    ranges = r.plan.ranges if r.plan is not None else []
    out = ["<section id='traces'><h2>Traces</h2><p class='legend small'>"
           f"{_marker('P')} pt_regs::pc (exact) {_marker('L')} LR at an exception boundary "
           f"(SFrame) {_marker('T')} sleeping task's saved pc {_marker('C')} caller &nbsp;"
           "<span style='background:#fff4d6'>&nbsp;patched range&nbsp;</span> "
           "<span style='box-shadow:inset 4px 0 #b3261e'>&nbsp;where the walk became "
           "unreliable</span></p>"]
    for t in r.tasks:
        verdicts = " ".join(f"{_e(m.value)} {_badge(_verdict_of(r.trace(m, t)))}" for m in MODES)
        who = f"{t.comm}:{t.pid}" + (f" idle/{t.idle_cpu}" if t.idle_cpu is not None else "")
        cols = []
        for m in MODES:
            tr = r.trace(m, t)
            body = (_frames_table(tr, ranges) if tr is not None
                    else f"<p class='bad'>{_e(r.errors.get(m, {}).get(t.task, 'no trace'))}</p>")
            cols.append(f"<div><div class='small'><b>{_e(m.value)}</b></div>{body}</div>")
        # open what deserves a look: unreliable in some mode, or blocking the transition
        blocking = any(not d.switches for res in r.results.values() for d in res.decisions
                       if d.task.task == t.task and d.task.idle_cpu == t.idle_cpu)
        interesting = blocking or any((tr := r.trace(m, t)) is None or not tr.reliable
                                      for m in MODES)
        out.append(f"<details id='t{t.task:x}'{' open' if interesting else ''}><summary><span class='mono'>{_e(who)}</span> "
                   f"<span class='small'>{_e(t.state)}{' running on CPU ' + str(t.cpu) if t.running else ''}"
                   f"</span> &nbsp; {verdicts}</summary><div class='pair'>{''.join(cols)}"
                   "</div></details>")
    out.append("</section>")
    return "".join(out)


def render(report: DumpReport) -> str:
    """The page, as a string."""
    body = (_section_overview(report) + _section_chart(report) + _section_livepatch(report)
            + _section_reliability(report) + _section_traces(report))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width'><title>{_e(report.title)}"
            f"</title><style>{CSS}</style></head><body><header><h1>{_e(report.title)}</h1>"
            "<div class='sub'>sfunwind: arm64 kernel stack traces, upstream vs SFrame "
            "unwinder, and what livepatch would decide</div></header><main>"
            f"{body}</main></body></html>\n")
