"""``sfunwind kernel info`` and ``sfunwind kernel tasks`` (``kernel trace`` lives in
``sfunwind.unwind.cli`` and joins the same group)."""

from __future__ import annotations

import argparse
import json
import sys

from sfunwind.cli.main import command_group
from sfunwind.errors import ExitCode, MemoryFault

KERNEL_HELP = "arm64 Linux vmcores: kernel info, tasks, traces"


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """VMCORE and ``-s VMLINUX`` (shared with ``kernel trace``)."""
    parser.add_argument("vmcore", metavar="VMCORE",
                        help="ELF vmcore (QEMU dump-guest-memory, kdump ELF); .xz accepted")
    parser.add_argument("-s", "--symbols", "--vmlinux", dest="vmlinux", metavar="VMLINUX",
                        help="the kernel's vmlinux (or its debug file with .symtab and .BTF); "
                             ".xz accepted. Without it: kallsyms and BTF from the dump")
    parser.add_argument("--no-build-id-check", action="store_true",
                        help="open even if the vmlinux build ID differs (dangerous)")


def open_program(args: argparse.Namespace):
    from sfunwind.kernel.program import KernelProgram

    return KernelProgram.open(args.vmcore, args.vmlinux,
                              check_build_id=not args.no_build_id_check)


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "kernel", KERNEL_HELP)
    info = group.add_parser("info", help="what the vmcore is: release, build ID, KASLR, "
                            "translation, layout, CPUs",
                            description="Describe a vmcore and its kernel.")
    add_input_arguments(info)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)

    tasks = group.add_parser("tasks", help="every thread with state, CPU and stack bounds",
                             description="List every thread (init_task's list, thread "
                             "groups, idle tasks) like ps, with stack bounds.")
    add_input_arguments(tasks)
    tasks.add_argument("--json", action="store_true",
                       help="a JSON list: pid, tgid, comm, state, cpu, on_cpu, running, "
                            "task, stack, stack_high, stacks (task stack; a running task "
                            "also its CPU's irq and overflow stacks) per thread")
    tasks.set_defaults(func=cmd_tasks)


def cmd_info(args: argparse.Namespace) -> int:
    prog = open_program(args)
    d = prog.describe()
    d["cpu_list"] = [c.as_dict() for c in prog.cpus()]
    try:
        d["modules"] = [{"name": m.name, "text": [f"{m.text[0]:#x}", f"{m.text[1]:#x}"]}
                        for m in prog.modules.modules]
    except MemoryFault as fault:
        d["modules"] = f"unreadable: {fault}"
    if args.json:
        json.dump(d, sys.stdout, indent=1)
        print()
        return ExitCode.OK
    out = sys.stdout
    for key in ("vmcore", "osrelease", "build_id", "kaslr_offset", "page_size", "va_bits",
                "levels", "lpa2", "kimage_voffset", "phys_offset", "swapper_pg_dir",
                "pac_mask", "thread_size", "irq_stack_size", "overflow_stack_size",
                "pt_regs_size", "pt_regs_stackframe", "frame_record_meta_size", "segments",
                "truncated", "symbols", "types", "cpus"):
        print(f"{key:22} {d[key]}", file=out)
    for c in prog.cpus():
        regs = c.prstatus
        where = "?"
        if regs is not None:
            if regs.in_kernel:
                where = f"EL{regs.el} pc {prog.symbols.format(regs.pc)}"
            else:
                where = f"EL0 pc {regs.pc:#x}"
        try:
            curr = c.curr_task
            who = f"{curr.comm}[{curr.pid}]"
        except MemoryFault:  # a missing page only degrades this line
            who = f"task {c.curr:#x}"
        irq = c.irq_stack or "-"
        print(f"cpu{c.index}: {who} {where}; irq stack {irq}", file=out)
    if isinstance(d["modules"], str):
        print(f"modules: {d['modules']}", file=out)
    for m in d["modules"] if isinstance(d["modules"], list) else []:
        print(f"module {m['name']}: text [{m['text'][0]}-{m['text'][1]})", file=out)
    return ExitCode.OK


def cmd_tasks(args: argparse.Namespace) -> int:
    prog = open_program(args)
    tasks = prog.threads()
    for warning in prog.warnings:
        print(f"sfunwind: warning: {warning}", file=sys.stderr)
    if args.json:
        json.dump([t.as_dict() for t in tasks], sys.stdout, indent=None)
        print()
        return ExitCode.OK
    print(f"{'PID':>7} {'TGID':>7} {'ST':2} {'CPU':>3} {'ONCPU':>5} {'TASK':18} "
          f"{'STACK':37} COMM")
    for t in tasks:
        mark = "*" if t.is_running else " "
        stack = f"[{t.stack:#x}-{t.stack + prog.layout.thread_size:#x})"
        print(f"{t.pid:>7} {t.tgid:>7} {t.state:2} {t.cpu:>3} {t.on_cpu:>4}{mark} "
              f"{t.address:#018x} {stack:37} {t.comm}")
    return ExitCode.OK
