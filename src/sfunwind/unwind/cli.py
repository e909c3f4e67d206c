"""``sfunwind kernel trace``: unwind tasks and CPUs of a vmcore (or a snapshot) the way the
arm64 kernel does, with reliability verdicts."""

from __future__ import annotations

import argparse
import json
import sys

from sfunwind.errors import ExitCode, UsageError
from sfunwind.unwind.format import format_trace, reliability_table
from sfunwind.unwind.trace import Mode, Trace

DESCRIPTION = """\
Unwind kernel stacks of an arm64 vmcore the way Linux does, and say whether each trace is
reliable (livepatch's Documentation/livepatch/reliable-stacktrace.rst) and why not.

modes:
  sframe     the 2026 SFrame exception-boundary series, corrected (default)
  upstream   Linux 7.2 as shipped: a reliable walk fails at any exception boundary
  sframe-v6  the v6 series exactly as posted (its defects kept)
  fp         a naive frame-pointer walk (baseline)

Text output is the kernel's dump_backtrace format (name+0x10/0x60 (P)) with the stack each
frame was found on, a line at every exception boundary and stack switch, and the verdict.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from sfunwind.cli.main import command_group

    group = command_group(subparsers, "kernel", "Linux kernel dumps: tasks, CPUs, traces")
    p = group.add_parser("trace", help="unwind tasks/CPUs of a vmcore with verdicts",
                         description=DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("vmcore", nargs="?", help="ELF vmcore (or use --snapshot)")
    p.add_argument("-s", "--vmlinux", help="the matching vmlinux (symbols, CFI)")
    p.add_argument("--mode", default="sframe", choices=[m.value for m in Mode])
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--pid", type=int, action="append", metavar="N", help="a task (repeatable)")
    sel.add_argument("--cpu", type=int, action="append", metavar="N",
                     help="what CPU N was running, from its registers (repeatable)")
    sel.add_argument("--all", action="store_true", help="every task and every CPU (default)")
    p.add_argument("--json", action="store_true", help="print a JSON list of traces")
    p.add_argument("--sframe", metavar="FILE",
                   help="SFrame section to use instead of the vmlinux's (.sframe or from "
                        ".debug_frame)")
    p.add_argument("--snapshot", metavar="FILE",
                   help="unwind a snapshot (sfunwind.truth.snapshot) instead of a vmcore; "
                        "-s overrides its image ELF")
    p.add_argument("--cache-dir", metavar="DIR", help="where converted SFrame is cached")
    p.add_argument("--return-sites", metavar="FILE",
                   help="return-site table (python -m sfunwind.unwind.returnsites); made "
                        "from the vmlinux when it has code")
    p.add_argument("--max-entries", type=int, default=100,
                   help="livepatch's buffer size (MAX_STACK_ENTRIES, default 100)")
    p.add_argument("--table", action="store_true",
                   help="one line per task: reliable in upstream vs sframe, and why not")
    p.add_argument("--require-reliable", action="store_true",
                   help="exit 1 if any requested trace is unreliable")
    p.set_defaults(func=run)


def _traces(args: argparse.Namespace) -> list[Trace]:
    mode = Mode(args.mode)
    if args.snapshot:
        from sfunwind.unwind.kernel import trace_snapshot

        return [trace_snapshot(args.snapshot, mode, image=args.vmlinux,
                               max_entries=args.max_entries)]
    if not args.vmcore or not args.vmlinux:
        raise UsageError("kernel trace needs VMCORE and -s VMLINUX (or --snapshot FILE)")
    from sfunwind.unwind import kernel as k

    program = k.open_program(args.vmcore, args.vmlinux)
    ctx = k.context_for(program, sframe_path=args.sframe, cache_dir=args.cache_dir,
                        need_rows=mode in (Mode.SFRAME, Mode.SFRAME_V6),
                        return_sites_path=args.return_sites)
    if args.pid:
        return [k.trace_pid(program, pid, mode, ctx=ctx, max_entries=args.max_entries)
                for pid in args.pid]
    if args.cpu:
        return [k.trace_cpu(program, cpu, mode, ctx=ctx, max_entries=args.max_entries)
                for cpu in args.cpu]
    return k.trace_all(program, mode, ctx=ctx, max_entries=args.max_entries)


def _table(args: argparse.Namespace) -> int:
    if args.snapshot or not args.vmcore or not args.vmlinux:
        raise UsageError("--table needs VMCORE and -s VMLINUX")
    from sfunwind.unwind import kernel as k

    program = k.open_program(args.vmcore, args.vmlinux)
    up_ctx = k.context_for(program, need_rows=False, return_sites_path=args.return_sites)
    sf_ctx = k.context_for(program, sframe_path=args.sframe, cache_dir=args.cache_dir,
                           return_sites_path=args.return_sites)
    if args.pid:
        tasks = [program.find_task(pid) for pid in args.pid]
        if None in tasks:
            raise UsageError(f"no task with pid {args.pid[tasks.index(None)]} in this dump")
    else:
        tasks = program.threads()
    rows = [(f"{t.pid} {t.comm}",
             k.trace_task(program, t, Mode.UPSTREAM, ctx=up_ctx, max_entries=args.max_entries),
             k.trace_task(program, t, Mode.SFRAME, ctx=sf_ctx, max_entries=args.max_entries))
            for t in tasks]
    sys.stdout.write(reliability_table(rows))
    if args.require_reliable and not all(r[2].reliable for r in rows):
        return ExitCode.FINDINGS
    return ExitCode.OK


def run(args: argparse.Namespace) -> int:
    if args.table:
        return _table(args)
    traces = _traces(args)
    out = sys.stdout
    if args.json:
        json.dump([t.to_json() for t in traces], out, indent=1)
        out.write("\n")
    else:
        for i, trace in enumerate(traces):
            if i:
                out.write("\n")
            out.write(format_trace(trace))
        n_ok = sum(t.reliable for t in traces)
        out.write(f"\n{len(traces)} trace{'s' if len(traces) != 1 else ''}: {n_ok} reliable, "
                  f"{len(traces) - n_ok} unreliable (mode {args.mode})\n")
    if args.require_reliable and not all(t.reliable for t in traces):
        return ExitCode.FINDINGS
    return ExitCode.OK
