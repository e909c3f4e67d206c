"""``sframe check``: compare a file's ``.sframe`` with its own DWARF CFI, PC by PC.

For every CFI FDE, the rows of the DWARF table and the rows the SFrame lookup (libsframe
semantics, :class:`sfunwind.sframe.SFrameTable`) returns are compared on every PC range
where either side changes — which is every PC.  A disagreement on the CFA rule, the RA rule
(including the PAC-signed state on AArch64) or the FP rule is reported with its address.
FDEs the SFrame section does not cover at all are listed separately, with the reason gas
gives for not translating them, or none when gas would have (typically objects assembled
without ``--gsframe``, like Debian's ``crt1.o``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sfunwind.cfi.arch import Arch
from sfunwind.cfi.parser import FrameSection
from sfunwind.cfi.rows import unwind_rows
from sfunwind.cfi.to_sframe import translate_fde
from sfunwind.rules import RETAIN, UnwindRow


@dataclass(slots=True)
class Disagreement:
    pc: int
    end: int
    fields: tuple[str, ...]  # "cfa", "ra", "fp", "signed", "outermost", "missing"
    cfi: UnwindRow | None
    sframe: UnwindRow | None

    def describe(self) -> str:
        c = self.cfi.describe() if self.cfi else "-"
        s = self.sframe.describe() if self.sframe else "no SFrame row"
        return (f"{self.pc:#x}..{self.end:#x}: {','.join(self.fields)} differ: "
                f"CFI {c} | SFrame {s}")


@dataclass(slots=True)
class CheckReport:
    fdes: int = 0
    covered: int = 0
    uncovered: list[tuple[int, int, str | None]] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    pcs_compared: int = 0


def _fields(c: UnwindRow, s: UnwindRow, arch: Arch) -> tuple[str, ...]:
    out = []
    if c.outermost or s.outermost:
        if c.outermost != s.outermost:
            out.append("outermost")
        return tuple(out)
    if c.cfa != s.cfa:
        out.append("cfa")
    if c.ra != s.ra:
        out.append("ra")
    # DWARF "undefined" FP (no value to restore) reads as "unchanged" in SFrame terms.
    fp_c = c.fp if c.fp.kind.value != "undefined" else RETAIN
    if fp_c != s.fp:
        out.append("fp")
    if arch.ra_tracking and (c.ra_signed != s.ra_signed
                             or (c.ra_signed and c.pauth_key != s.pauth_key)):
        out.append("signed")
    return tuple(out)


def check_frames(frames: FrameSection, table, arch: Arch, *,
                 limit: int | None = None) -> CheckReport:
    """Compare *frames* (CFI) against *table* (an ``SFrameTable``) on every PC."""
    rep = CheckReport()
    step = 4 if arch.ra_tracking else 1
    for i in range(len(frames)):
        begin = frames.fde_pc_begin[i]
        size = frames.fde_pc_range[i]
        if size == 0:
            continue
        rep.fdes += 1
        rows = unwind_rows(frames, i, arch)
        probe = table.find(begin)
        if probe is None and table.find(begin + size - step if size > step else begin) is None:
            tr = translate_fde(frames, i, arch)
            rep.uncovered.append((begin, size, tr.reason))
            continue
        rep.covered += 1
        for row in rows:
            pc = row.start
            end = min(row.end, begin + size)
            while pc < end:
                s = table.find(pc)
                seg_end = end
                if s is not None and s.end is not None:
                    seg_end = min(end, max(s.end, pc + 1))
                rep.pcs_compared += 1
                if s is None:
                    rep.disagreements.append(Disagreement(pc, seg_end, ("missing",), row, None))
                else:
                    f = _fields(row, s, arch)
                    if f:
                        rep.disagreements.append(Disagreement(pc, seg_end, f, row, s))
                if limit is not None and len(rep.disagreements) >= limit:
                    return rep
                pc = seg_end
    return rep
