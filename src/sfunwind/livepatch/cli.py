"""``sfunwind livepatch``: would a livepatch transition complete on this dump, and if not,
which tasks block it and why."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sfunwind.errors import ExitCode, UsageError
from sfunwind.unwind.trace import Mode

DESCRIPTION = """\
Decide, for every thread and every CPU's idle task of an arm64 vmcore, what livepatch's
klp_try_switch_task() would do at the dump's instant (kernel/livepatch/transition.c):

  running      -EBUSY       the task is its CPU's rq->curr (and not --current)
  unreliable   -EINVAL      arch_stack_walk_reliable() fails (reasons from the unwinder),
                            or the walk fills livepatch's 100-entry buffer
  in-use       -EADDRINUSE  a reliable trace has an entry in a patched function's range
  switch       0            the task switches to the target patch state

Ranges follow klp_check_stack_func(): the original function (kallsyms size) when patching,
the patch's new function when unpatching (--unpatch), the previous patch's new function for
a function an earlier patch already replaced (--stacked OLD=NEW).  The transition completes
only when no task blocks; the exit status is 1 when it would stall with the --mode unwinder
(also with --compare).  Objects (modules) not loaded in the dump are not patched yet and are
skipped, as klp_check_stack() does.

--compare decides with both the upstream (Linux 7.2) and the SFrame unwinder and lists,
task by task, what the SFrame series changes on this dump.
"""

EPILOG = """\
examples:
  sfunwind livepatch dump.vmcore -s vmlinux --func do_wait --func chacha_block_generic --compare
  sfunwind livepatch dump.vmcore -s vmlinux --func load_elf_binary,1 --json
  sfunwind livepatch dump.vmcore -s vmlinux --ko livepatch-fix.ko --mode upstream
  sfunwind livepatch dump.vmcore -s vmlinux --range ffff8000802111c8-ffff8000802114f8
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "livepatch", help="which tasks would block a livepatch transition, and why",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dump_arguments(p)
    add_patch_arguments(p)
    p.add_argument("--mode", default="sframe",
                   choices=[m.value for m in (Mode.SFRAME, Mode.UPSTREAM, Mode.SFRAME_V6,
                                              Mode.FP_ONLY)],
                   help="the unwinder whose reliable walk livepatch uses (default sframe)")
    p.add_argument("--compare", action="store_true",
                   help="decide with the upstream and the sframe unwinder; show what changes")
    p.add_argument("--all", action="store_true", help="list every task, not only blockers")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.add_argument("--traces", action="store_true",
                   help="with --json: include every task's full trace")
    p.set_defaults(func=run)


def add_dump_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("vmcore", help="ELF vmcore (.xz accepted)")
    p.add_argument("-s", "--vmlinux", required=True, help="the matching vmlinux (symbols, CFI)")
    p.add_argument("--sframe", metavar="FILE", help="SFrame section to use for the sframe mode")
    p.add_argument("--cache-dir", metavar="DIR", help="where converted SFrame is cached")


def add_patch_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    g = p.add_argument_group("what is patched" + (" (at least one)" if required else ""))
    g.add_argument("--func", action="append", default=[], dest="funcs",
                   metavar="[OBJ:]NAME[,SYMPOS]",
                   help="a function to patch (repeatable); OBJ is a module name, SYMPOS the "
                        "1-based position among symbols of that name (old_sympos)")
    g.add_argument("--range", action="append", default=[], metavar="START-END",
                   help="an address range searched as is (hex, END exclusive; repeatable)")
    g.add_argument("--ko", metavar="FILE", help="a livepatch module: its klp_object/klp_func "
                   "tables give the functions")
    g.add_argument("--unpatch", action="store_true",
                   help="check the unpatching transition (ranges of the new functions: "
                        "--ko's replacements, or the --func functions themselves)")
    g.add_argument("--stacked", action="append", default=[], metavar="OLD=NEW",
                   help="OLD ([OBJ:]NAME[,SYMPOS]) was already patched by an earlier patch "
                        "whose new function is NEW ([OBJ:]NAME[,SYMPOS] or START-END)")
    g.add_argument("--current", type=int, metavar="PID",
                   help="treat PID as the task running the transition: not -EBUSY; its stack "
                        "is checked as it is at the dump's instant (from its CPU's registers)")


def has_patch(args: argparse.Namespace) -> bool:
    return bool(args.funcs or args.range or args.ko)


def plan_from_args(args: argparse.Namespace, inputs) -> tuple[Any, Any]:
    """(RangePlan, LivepatchModule | None) for the patch options."""
    from sfunwind.livepatch.ko import read_livepatch_module
    from sfunwind.livepatch.patch import (
        PATCHING,
        UNPATCHING,
        PatchSpec,
        build_ranges,
        funcs_from_args,
        parse_range,
    )

    module = None
    spec = PatchSpec(funcs_from_args(args.funcs))
    if args.ko:
        module = read_livepatch_module(args.ko)
        ko_spec = module.spec()
        spec = PatchSpec(ko_spec.funcs + spec.funcs, module=ko_spec.module, source=args.ko)
    stacked = {}
    for item in args.stacked:
        if "=" not in item:
            raise UsageError(f"--stacked {item!r}: expected OLD=NEW")
        old, new = item.split("=", 1)
        stacked[old] = new
    raw = [parse_range(r) for r in args.range]
    plan = build_ranges(spec, inputs, direction=UNPATCHING if args.unpatch else PATCHING,
                        stacked=stacked, raw_ranges=raw)
    return plan, module


def run(args: argparse.Namespace) -> int:
    from sfunwind.livepatch.dump import DumpInputs
    from sfunwind.livepatch.render import format_comparison, format_plan, format_result
    from sfunwind.livepatch.transition import compare, try_complete_transition

    if not has_patch(args):
        raise UsageError("say what is patched: --func, --range or --ko")
    inputs = DumpInputs.open(args.vmcore, args.vmlinux, sframe_path=args.sframe,
                             cache_dir=args.cache_dir)
    plan, module = plan_from_args(args, inputs)
    tasks = inputs.tasks()
    mode = Mode(args.mode)
    modes = [Mode.UPSTREAM, Mode.SFRAME] if args.compare else [mode]
    if args.compare and mode not in modes:
        modes.append(mode)
    results = {m: try_complete_transition(tasks, plan.ranges, inputs.trace, m,
                                          direction=plan.direction, current=args.current)
               for m in modes}
    for m, r in results.items():
        r.notes.extend(plan.skipped)
        if m in (Mode.SFRAME, Mode.SFRAME_V6) and not inputs.has_sframe(m):
            r.notes.append("no SFrame data for this kernel (no .sframe, no usable "
                           ".debug_frame, no --sframe): every exception boundary is "
                           "unreliable in this mode too")
    main = results[mode]
    out = sys.stdout
    if args.json:
        doc: dict[str, Any] = {
            "vmcore": args.vmcore, "vmlinux": args.vmlinux,
            "build_id": inputs.program.build_id,
            "patch": module.to_json() if module else None,
            "direction": plan.direction,
            "ranges": [r.to_json() for r in plan.ranges], "skipped": plan.skipped,
            "mode": mode.value, "complete": main.complete,
            "results": {m.value: r.to_json(traces=args.traces) for m, r in results.items()},
        }
        if args.compare:
            doc["comparison"] = compare(results[Mode.UPSTREAM], results[Mode.SFRAME]).to_json()
        json.dump(doc, out, indent=1)
        out.write("\n")
    else:
        if module is not None:
            out.write(f"livepatch module {module.module} ({args.ko}): "
                      f"{sum(len(o.funcs) for o in module.objects)} funcs in "
                      f"{len(module.objects)} objects\n")
        out.write(format_plan(plan))
        out.write("\n")
        if args.compare:
            out.write(format_comparison(compare(results[Mode.UPSTREAM], results[Mode.SFRAME])))
            if args.all:
                for r in results.values():
                    out.write("\n" + format_result(r, verbose=True))
        else:
            out.write(format_result(main, verbose=args.all))
    return ExitCode.OK if main.complete else ExitCode.FINDINGS
