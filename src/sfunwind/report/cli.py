"""``sfunwind report``: one self-contained HTML page for a vmcore."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sfunwind.errors import ExitCode, UsageError

DESCRIPTION = """\
Write one self-contained HTML page (inline CSS and SVG, no external assets, no script) for an
arm64 vmcore: every task's and CPU's trace in the upstream and the SFrame unwinder (exception
boundaries and markers highlighted), the reliability table of both, the livepatch picture
(with --func/--range/--ko: that transition in both modes; without: what any patch would
meet), and a chart of where unreliable verdicts come from.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from sfunwind.livepatch.cli import add_dump_arguments, add_patch_arguments

    p = subparsers.add_parser("report", help="self-contained HTML report of a vmcore",
                              description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dump_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the HTML file to write ('-' for stdout)")
    p.add_argument("--title", help="page title (default: the vmcore's file name)")
    add_patch_arguments(p, required=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sfunwind.livepatch.cli import has_patch, plan_from_args
    from sfunwind.livepatch.dump import DumpInputs
    from sfunwind.report.html import collect, render

    inputs = DumpInputs.open(args.vmcore, args.vmlinux, sframe_path=args.sframe,
                             cache_dir=args.cache_dir)
    plan = plan_from_args(args, inputs)[0] if has_patch(args) else None
    if plan is None and (args.unpatch or args.stacked or args.current is not None):
        raise UsageError("--unpatch/--stacked/--current need --func, --range or --ko")
    title = args.title or f"{Path(args.vmcore).name}"
    page = render(collect(inputs, title=title, plan=plan, current=args.current))
    if args.output == "-":
        sys.stdout.write(page)
    else:
        out = Path(args.output)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        try:
            tmp.write_text(page, encoding="utf-8")
            tmp.replace(out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise UsageError(f"cannot write {out}: {exc.strerror}") from None
        print(f"wrote {out} ({len(page.encode()):,} bytes)", file=sys.stderr)
    return ExitCode.OK
