"""``sfunwind truth``: interrupt the truth image everywhere and compare unwinders."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from sfunwind.cli.main import command_group
from sfunwind.errors import ExitCode, UsageError

BUILDS = ("sibcall", "nosibcall", "sibcall-v6cfi")
#: --all interrupts every ALL_STRIDE-th instruction of the ~43 M-instruction timeline on top of
#: the first execution of every instruction: ~190,000 points, ~10 min per image on one core.
ALL_STRIDE = 250


def default_image_dir() -> Path:
    env = os.environ.get("SFUNWIND_TRUTH_IMAGES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "tests" / "data" / "truth"


def _images(args: argparse.Namespace) -> list[Path]:
    if args.image:
        return [Path(p) for p in args.image]
    builds = BUILDS if args.build == "all" else (args.build,)
    paths = [default_image_dir() / f"truth-{b}.elf" for b in builds]
    for p in paths:
        if not p.exists():
            raise UsageError(f"truth image {p} not found (use --image ELF or set "
                             "SFUNWIND_TRUTH_IMAGES)")
    return paths


def register(subparsers: argparse._SubParsersAction) -> None:
    group = command_group(subparsers, "truth", "ground truth: interrupt real compiled code "
                          "under emulation and check the unwinders")
    p = group.add_parser("run", help="interrupt the truth image(s) and print the table",
                         description="Interrupt the truth image at the first execution of "
                         "every instruction plus every STRIDE-th instruction (--all: every "
                         f"{ALL_STRIDE}th, about 250,000 points per image) or a random sample (--points "
                         "N), and compare every unwinder mode with the exact shadow-stack "
                         "truth.  Workload code the task never executes is interrupted by "
                         "steering conditional branches into it (--no-steer: don't).  Exit 1 when sframe mode is ever reliable but wrong, or "
                         "where SFrame has no row is not unreliable for that reason "
                         "(sframe-no-row).  Exactness where rows exist is reported.")
    p.add_argument("--image", action="append", metavar="ELF", help="a truth image (repeatable)")
    p.add_argument("--build", choices=(*BUILDS, "all"), default="all")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--points", type=int, metavar="N", help="a random sample of N points")
    how.add_argument("--all", action="store_true", help=f"first executions + every {ALL_STRIDE}th")
    how.add_argument("--stride", type=int, metavar="K", help="first executions + every K-th")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--irq-stack", choices=("above", "below"), default="above",
                   help="place the IRQ stack above (the image's own) or below the task stack")
    p.add_argument("--no-pac", action="store_true", help="do not sign return addresses")
    p.add_argument("--no-steer", action="store_true",
                   help="do not steer branches into workload code the task never executes")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.add_argument("--keep-wrong", metavar="DIR",
                   help="write snapshots of points where sframe mode was wrong into DIR")
    p.set_defaults(func=cmd_run)

    s = group.add_parser("snapshot", help="write the snapshot of one interruption point",
                         description="Run the image to a timeline position (or the first "
                         "execution of SYMBOL+OFFSET), take the IRQ there and write the "
                         "snapshot (JSON, .xz to compress) with its truth.")
    s.add_argument("--image", metavar="ELF")
    s.add_argument("--build", choices=BUILDS, default="sibcall")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--position", type=int, metavar="N", help="instruction N of the timeline")
    where.add_argument("--at", metavar="SYMBOL+OFF", help="first execution of this PC")
    s.add_argument("--start", choices=("caller", "regs"), default="caller",
                   help="caller: take the IRQ and stop at the snapshot point (default); "
                   "regs: the stopped CPU's registers at that instruction, as a debugger "
                   "would dump them (no IRQ)")
    s.add_argument("--no-pac", action="store_true")
    s.add_argument("-o", "--output", required=True, metavar="FILE")
    s.set_defaults(func=cmd_snapshot)

    c = group.add_parser("coverage", help="which instructions the task's timeline never "
                         "executes (so never interrupts)",
                         description="Run the image once (the reference run of `truth run`) "
                         "and list, per function, the instructions its timeline never "
                         "executes: the workload (third-party zlib/LZ4/xxHash) first, then "
                         "the harness's own code.  (`truth run` reaches the workload's by "
                         "steering branches.)  Exit 1 when a workload instruction is never "
                         "executed.")
    c.add_argument("--image", metavar="ELF")
    c.add_argument("--build", choices=BUILDS, default="sibcall")
    c.add_argument("--details", action="store_true", help="list the missing offsets")
    c.add_argument("--lines", metavar="DEBUG_ELF",
                   help="map missing instructions to source lines with the DWARF of the same "
                   "image built with -g (tools/build_truth_image.py --debug)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_coverage)


def cmd_run(args: argparse.Namespace) -> int:
    from sfunwind.truth.compare import format_table, run

    if args.points is not None and args.points < 1:
        raise UsageError("--points must be positive")
    if args.stride is not None and args.stride < 1:
        raise UsageError("--stride must be positive")
    stride = args.stride or (ALL_STRIDE if args.all or args.points is None else None)
    failed = False
    docs = []
    for path in _images(args):
        keep = 50 if args.keep_wrong else 0
        summary, kept = run(path, stride=stride if args.points is None else None,
                            sample=args.points, pac=not args.no_pac, seed=args.seed, keep=keep,
                            irq_stack=args.irq_stack, explore=not args.no_steer)
        doc = summary.to_json()
        t = doc["sframe_targets"]
        wrong = sum(r["reliable_wrong"] for r in doc["table"] if r["mode"] == "sframe")
        # the safety property (never reliable and wrong) and the right reason where SFrame
        # has no rows decide the exit code; exactness where rows exist is reported
        ok = wrong == 0 and t["without_rows_unreliable_no_row"] == t["without_rows"]
        doc["sframe_ok"] = ok
        doc["sframe_exact_with_rows"] = t["with_rows_exact_reliable"] == t["with_rows"]
        failed |= not ok
        docs.append(doc)
        if args.keep_wrong:
            out = Path(args.keep_wrong)
            out.mkdir(parents=True, exist_ok=True)
            for snap in kept:
                snap.save(out / f"{path.stem}-{snap.truth['position']}.json.xz")  # type: ignore[index]
        if not args.json:
            print(format_table(summary))
            rate = summary.points / summary.harness_seconds if summary.harness_seconds else 0
            urate = summary.unwinds / summary.unwind_seconds if summary.unwind_seconds else 0
            print(f"harness {rate:.0f} points/s; unwinder {urate:.0f} unwinds/s; "
                  f"sframe: {'never reliable-but-wrong' if ok else 'FAILED'}\n")
    if args.json:
        print(json.dumps(docs, indent=1))
    return ExitCode.FINDINGS if failed else ExitCode.OK


def cmd_snapshot(args: argparse.Namespace) -> int:
    from sfunwind.truth.compare import _drive, capture_snapshot, reference, work_positions
    from sfunwind.truth.emulator import Machine
    from sfunwind.truth.image import TruthImage

    path = Path(args.image) if args.image else default_image_dir() / f"truth-{args.build}.elf"
    image = TruthImage(path)
    works = work_positions()
    if args.position is not None:
        position = args.position
        if position < 1:
            raise UsageError("--position must be at least 1")
    else:
        ref = reference(image)
        works = ref.work_positions
        name, _, off = args.at.partition("+")
        try:
            pc = image.symbol(name).address + (int(off, 0) if off else 0)
        except ValueError:
            raise UsageError(f"bad --at {args.at!r} (SYMBOL or SYMBOL+0xOFF)") from None
        import numpy as np

        hits = np.flatnonzero(ref.pcs == np.uint64(pc))
        if not len(hits):
            raise UsageError(f"{args.at} ({pc:#x}) is never executed")
        position = int(hits[0])
    machine = Machine(image)
    snaps = []

    def on_point(p: int) -> None:
        if image.point_class(machine.pc) == "entry":
            raise UsageError(f"position {p} is in entry code ({image.format_pc(machine.pc)}): "
                             "exceptions are never taken there")
        cap = machine.interrupt(p) if args.start == "caller" else machine.stopped_cpu(p)
        snaps.append(capture_snapshot(cap, image, pac=not args.no_pac))

    _drive(machine, sorted([(w, 2) for w in works] + [(position, 1)]), on_point, finish=False)
    if not snaps:
        raise UsageError(f"--position {position} is past the end of the task")
    snaps[0].save(args.output)
    truth = snaps[0].truth or {}
    print(f"{args.output}: interrupted at {image.format_pc(int(truth['interrupted_pc'], 16))} "
          f"[{truth.get('class')}, {truth.get('context')}], "
          f"{len(truth.get('frames', []))} expected frames")
    return ExitCode.OK


def cmd_coverage(args: argparse.Namespace) -> int:
    from sfunwind.truth.compare import coverage, format_coverage, reference, source_lines
    from sfunwind.truth.image import TruthImage

    path = Path(args.image) if args.image else default_image_dir() / f"truth-{args.build}.elf"
    ref = reference(TruthImage(path))
    cov = coverage(ref)
    if args.json:
        print(json.dumps([{"function": c.name, "part": c.part, "instructions": c.instructions,
                           "executed": c.executed, "missing": list(c.missing)} for c in cov],
                         indent=1))
    else:
        lines = source_lines(args.lines) if args.lines else None
        print(f"timeline: {ref.length} instructions; task failures: {ref.failures}")
        print(format_coverage(cov, details=args.details, lines=lines))
    incomplete = any(c.missing for c in cov if c.part == "workload") or ref.failures
    return ExitCode.FINDINGS if incomplete else ExitCode.OK
