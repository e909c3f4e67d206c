"""``sfunwind sframe dump | validate | find``."""

from __future__ import annotations

import argparse
import json
import sys

from sfunwind.cli.main import command_group
from sfunwind.errors import ExitCode, UsageError
from sfunwind.sframe.dump import dump_json, dump_text
from sfunwind.sframe.loader import load
from sfunwind.sframe.lookup import SFrameTable
from sfunwind.sframe.validate import validate


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "sframe", "SFrame sections: dump, validate, look up",
                          "Read .sframe sections of ELF files (or raw section dumps).")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("file", help="ELF file (section or PT_GNU_SFRAME) or raw .sframe dump")
    common.add_argument("--section", default=".sframe", help="section name (default .sframe)")
    common.add_argument("--section-address", type=_int, default=None, metavar="ADDR",
                        help="address of a raw section dump (default 0), or override sh_addr")

    p = group.add_parser("dump", parents=[common], help="objdump --sframe compatible text",
                         description="Print the section exactly as `objdump --sframe` does.")
    p.add_argument("--objdump-compat", default="2.47", choices=("2.47", "2.44", "2.40"),
                   help="objdump version whose format to reproduce (default 2.47)")
    p.add_argument("--json", action="store_true", help="the same content as JSON")
    p.add_argument("--file-format", default=None,
                   help="BFD name objdump prints (e.g. elf64-little for a generic objdump)")
    p.add_argument("--generic-objdump", action="store_true",
                   help="as a non-native objdump prints it: elf64-little, .o relocations "
                        "not applied")
    p.set_defaults(func=_dump)

    p = group.add_parser("validate", parents=[common], help="consistency checks (exit 1 on problems)",
                         description="Check the section (the kernel's SFRAME_VALIDATION and "
                                     "more); print each problem with its section offset.")
    p.add_argument("--kernel", action="store_true",
                   help="also require what the kernel's V3 reader requires")
    p.set_defaults(func=_validate)

    p = group.add_parser("find", parents=[common], help="the unwind row of each PC",
                         description="Look PCs up with libsframe's semantics.")
    p.add_argument("pcs", nargs="+", type=_int, metavar="PC")
    p.set_defaults(func=_find)


def _dump(args: argparse.Namespace) -> int:
    section = load(args.file, section=args.section, section_address=args.section_address)
    if args.json:
        json.dump(dump_json(section), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return ExitCode.OK
    file_format = args.file_format or ("elf64-little" if args.generic_objdump else None)
    text = dump_text(section, compat=args.objdump_compat, filename=args.file,
                     file_format=file_format, section_name=args.section,
                     relocations=not args.generic_objdump)
    sys.stdout.write(text)
    return ExitCode.OK


def _validate(args: argparse.Namespace) -> int:
    section = load(args.file, section=args.section, section_address=args.section_address)
    problems = validate(section, kernel=args.kernel)
    for p in problems:
        print(f"{args.file}: {p}")
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)", file=sys.stderr)
        return ExitCode.FINDINGS
    print(f"{args.file}: OK ({len(section.fdes)} FDEs, {section.num_fres} FREs)")
    return ExitCode.OK


def _find(args: argparse.Namespace) -> int:
    section = load(args.file, section=args.section, section_address=args.section_address)
    table = SFrameTable(section)
    missing = 0
    for pc in args.pcs:
        if pc < 0:
            raise UsageError(f"negative PC {pc}")
        row = table.find(pc)
        if row is None:
            print(f"{pc:#x}: not found")
            missing += 1
            continue
        rng = f"[{row.start:#x}, {row.end:#x})" if row.start is not None else ""
        print(f"{pc:#x}: {rng} {row.describe()}")
    return ExitCode.FINDINGS if missing else ExitCode.OK
