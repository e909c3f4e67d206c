"""``sfunwind cfi dump`` and ``sfunwind sframe from-cfi | check``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sfunwind.cfi.check import check_frames
from sfunwind.cfi.dump import dump_frames
from sfunwind.cfi.elfsource import load_elf_cfi
from sfunwind.cfi.elfwrite import add_section, elf_has_program_headers, sframe_segment_address
from sfunwind.cfi.to_sframe import convert_frame_section
from sfunwind.cli.main import command_group
from sfunwind.errors import ExitCode, UsageError


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    cfi = command_group(subparsers, "cfi", "DWARF CFI (.eh_frame, .debug_frame) tables",
                        "Read DWARF call frame information.")
    p = cfi.add_parser("dump", help="unwind table, like readelf --debug-dump=frames-interp",
                       description="Print every CIE/FDE and its rows like `readelf "
                                   "--debug-dump=frames-interp`, plus the AArch64 "
                                   "return-address signing state (column 'ras').")
    p.add_argument("file", help="ELF file")
    p.add_argument("--section", choices=(".eh_frame", ".debug_frame"), default=None,
                   help="which CFI section (default: .eh_frame if present)")
    p.add_argument("--pc", type=_int, default=None, help="only the FDE covering this address")
    p.set_defaults(func=_dump)

    sf = command_group(subparsers, "sframe", "SFrame sections: dump, validate, look up")
    p = sf.add_parser("from-cfi", help="SFrame v3 from DWARF CFI, exactly as GNU as",
                      description="Convert the file's .eh_frame (or .debug_frame) to an "
                                  "SFrame v3 section the way GNU as 2.47 translates .cfi_* "
                                  "directives.  FDEs gas refuses are dropped with gas's "
                                  "warning text.  For a relocatable .o the allocated sections "
                                  "are laid out from 0x10000 in section-header order and "
                                  "relocations applied (so the output equals gas's .sframe "
                                  "relocated the same way).")
    p.add_argument("file", help="ELF file (executable, vmlinux, shared object or .o)")
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument("--at", type=_int, default=None, metavar="ADDR",
                   help="address the section is laid out for (default: the file's existing "
                        ".sframe, else just past the last allocated section)")
    p.add_argument("--elf", action="store_true",
                   help="write a copy of the ELF file with the section added instead of raw "
                        "section bytes; an executable or shared object without SFrame (and "
                        "no --at) gets it loaded: a new read-only PT_LOAD above its segments "
                        "and a PT_GNU_SFRAME, as ld lays it out (the program still runs)")
    p.add_argument("--section", choices=(".eh_frame", ".debug_frame"), default=None,
                   help="CFI source section (default: .eh_frame if present)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-FDE warnings")
    p.set_defaults(func=_from_cfi)

    p = sf.add_parser("check", help="compare .sframe with the file's own CFI, PC by PC",
                      description="Compare the file's .sframe with its DWARF CFI at every PC "
                                  "and report each disagreement on CFA, RA (incl. PAC state) "
                                  "or FP.  Exit 1 if any.")
    p.add_argument("file", help="ELF file with .sframe and .eh_frame/.debug_frame")
    p.add_argument("--section", choices=(".eh_frame", ".debug_frame"), default=None)
    p.add_argument("--limit", type=int, default=None, help="stop after N disagreements")
    p.add_argument("--require-coverage", action="store_true",
                   help="also exit 1 when a function gas would translate has no SFrame FDE")
    p.set_defaults(func=_check)


def _dump(args: argparse.Namespace) -> int:
    elf = load_elf_cfi(args.file)
    frames = elf.frames(args.section)
    out = sys.stdout
    for line in dump_frames(frames, elf.arch, pc=args.pc):
        out.write(line + "\n")
    return ExitCode.OK


def default_sframe_address(elf) -> int:
    if ".sframe" in elf.addresses:
        return elf.addresses[".sframe"]
    return (elf.text_end() + 7) & ~7


def _from_cfi(args: argparse.Namespace) -> int:
    elf = load_elf_cfi(args.file)
    frames = elf.frames(args.section)
    conv = convert_frame_section(frames, elf.arch, path=args.file)
    # --elf on an executable or shared object without SFrame: a loaded section of its own
    # (PT_LOAD + PT_GNU_SFRAME), encoded for the address it will be loaded at
    segment = bool(args.elf and args.at is None and ".sframe" not in elf.addresses
                   and elf_has_program_headers(args.file))
    if segment:
        at = sframe_segment_address(args.file)
    else:
        at = args.at if args.at is not None else default_sframe_address(elf)
    data = conv.encode(at)
    if not args.quiet:
        for r in conv.refusals:
            print(f"{args.file}: Warning: no SFrame FDE emitted; {r.reason} "
                  f"(FDE at {frames.name}+{r.fde_offset:#x}, pc {r.pc_begin:#x}"
                  f"..{r.pc_begin + r.pc_range:#x})", file=sys.stderr)
    if args.elf:
        if Path(args.output).resolve() == Path(args.file).resolve():
            raise UsageError("--elf output must not overwrite the input")
        add_section(args.file, args.output, data, at, segment=segment)
    else:
        Path(args.output).write_bytes(data)
    total = sum(frames.fde_pc_range)
    text = elf.executable_bytes()
    print(f"{args.file}: {frames.name}: {conv.source_fdes} FDEs -> {conv.num_fdes} SFrame FDEs "
          f"({len(conv.refusals)} refused), {conv.num_fres} FREs; covered: "
          f"{conv.covered_bytes()} bytes = {100 * conv.covered_bytes() / max(total, 1):.1f}% "
          f"of the {total} bytes with CFI, {100 * conv.covered_bytes() / max(text, 1):.1f}% of "
          f"the {text} bytes of executable sections; "
          f"{len(data)} bytes at {at:#x} -> {args.output}", file=sys.stderr)
    for reason, n in sorted(conv.refusal_reasons().items(), key=lambda kv: -kv[1]):
        print(f"  refused {n:6d}  {reason}", file=sys.stderr)
    return ExitCode.OK


def _check(args: argparse.Namespace) -> int:
    from sfunwind.sframe import SFrameTable

    elf = load_elf_cfi(args.file)
    if ".sframe" not in elf.raw:
        raise UsageError(f"{args.file}: no .sframe section to check")
    frames = elf.frames(args.section)
    table = SFrameTable.from_bytes(elf.raw[".sframe"], section_address=elf.addresses[".sframe"],
                                   path=args.file)
    rep = check_frames(frames, table, elf.arch, limit=args.limit)
    for d in rep.disagreements:
        print(d.describe())
    for begin, size, reason in rep.uncovered:
        why = f"gas: {reason}" if reason else "gas would have emitted it"
        print(f"not in .sframe: {begin:#x}..{begin + size:#x} ({why})")
    print(f"{args.file}: {rep.fdes} FDEs in {frames.name}, {rep.covered} covered by .sframe, "
          f"{len(rep.uncovered)} not; {rep.pcs_compared} PC ranges compared, "
          f"{len(rep.disagreements)} disagreements", file=sys.stderr)
    gaps = [u for u in rep.uncovered if u[2] is None]
    if rep.disagreements or (args.require_coverage and gaps):
        return ExitCode.FINDINGS
    return ExitCode.OK
