"""The ``sfunwind`` command: one subcommand group per package.

Each package that offers commands has a ``cli`` module with ``register(subparsers)``; the
handlers return an exit code (:class:`sfunwind.errors.ExitCode`).  Errors of the typed
hierarchy become one line on stderr and their class's exit code — never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sfunwind import __version__
from sfunwind.errors import ExitCode, SfunwindError

#: Modules that register commands, in the order ``--help`` lists their groups.  A module may
#: add commands to a group another module created (``command_group``).
COMMAND_MODULES = (
    "sfunwind.sframe.cli",  # sframe dump / validate
    "sfunwind.cfi.cli",  # cfi dump; sframe from-cfi / check
    "sfunwind.kernel.cli",  # kernel info / tasks
    "sfunwind.unwind.cli",  # kernel trace
    "sfunwind.livepatch.cli",  # livepatch
    "sfunwind.truth.cli",  # truth ...
    "sfunwind.report.cli",  # report
)


def command_group(subparsers: argparse._SubParsersAction, name: str,
                  help: str, description: str | None = None) -> argparse._SubParsersAction:
    """The sub-command table of group *name* (``sfunwind NAME ...``), created on first use.

    Lets several packages contribute commands to one group (``sframe from-cfi`` lives in the
    ``cfi`` package, ``kernel trace`` in ``unwind``).
    """
    # kept on the table itself: a registry keyed by id() would hand a new parser the groups
    # of a collected one that happened to live at the same address
    groups: dict[str, argparse._SubParsersAction] = subparsers.__dict__.setdefault(
        "_sfunwind_groups", {})
    if name not in groups:
        parser = subparsers.add_parser(
            name, help=help, description=description or help,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        groups[name] = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
        parser.set_defaults(func=lambda args, p=parser: (p.print_help(sys.stderr), ExitCode.USAGE)[1])
    return groups[name]

EPILOG = """\
exit codes:
  0  success                     3  bad input (corrupt ELF/SFrame/CFI/vmcore)
  1  ran, answer is negative     4  memory fault (address not in the dump)
     (problems found, unreliable 5  mismatched inputs (vmcore vs vmlinux build ID)
      trace, stalled transition) 6  missing optional tool or package
  2  usage error                70  internal error (a bug: please report it)

examples:
  sfunwind sframe dump /bin/true                 objdump --sframe compatible text
  sfunwind sframe from-cfi vmlinux -o v.sframe   SFrame v3 from DWARF CFI, as gas would
  sfunwind kernel trace vmcore -s vmlinux --all  every task and CPU, with verdicts
  sfunwind livepatch vmcore -s vmlinux --func schedule --compare
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfunwind",
        description="Reliable stack unwinding with frame pointers and SFrame.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sfunwind {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that command group is not part of this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    try:
        return int(func(args) or 0)
    except SfunwindError as exc:
        print(f"sfunwind: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return ExitCode.OK
    except KeyboardInterrupt:
        print("sfunwind: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
