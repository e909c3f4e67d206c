"""``sfunwind cfi dump``: the unwind table as ``readelf --debug-dump=frames-interp`` prints it.

Same layout as readelf (record header lines, ``LOC CFA <regs> ra`` columns, cells ``u``
``s`` ``c-16`` ``v+8`` ``r9`` ``exp`` ``vexp``), plus on AArch64 a final ``ras`` column with
the return-address signing state (``-`` plain, ``s`` signed with key A, ``b`` with key B),
which readelf does not show.
"""

from __future__ import annotations

from collections.abc import Iterator

from sfunwind.cfi.arch import Arch
from sfunwind.cfi.parser import CIE, FrameSection
from sfunwind.cfi.rows import CFIRow, cie_initial_state, evaluate_fde


def _cell(rule) -> str:
    if rule is None:
        return "u"
    kind, value = rule
    if kind == "u":
        return "u"
    if kind == "s":
        return "s"
    if kind == "o":
        return f"c{value:+d}"
    if kind == "v":
        return f"v{value:+d}"
    if kind == "r":
        return f"r{value}"
    if kind == "e":
        return "exp"
    return "vexp"


def _cfa(cfa: tuple, arch: Arch) -> str:
    if cfa[0] == "reg":
        return f"{arch.reg_name(cfa[1])}{cfa[2]:+d}"
    return "exp"


def _reg_header(reg: int, cie: CIE, arch: Arch) -> str:
    return "ra" if reg == cie.ra_register else arch.reg_name(reg)


def _table(rows: list[CFIRow], regs: list[int], cie: CIE, arch: Arch,
           addr_width: int) -> Iterator[str]:
    head = "   LOC" + " " * (addr_width - 5) + "CFA      "
    head += "".join(f"{_reg_header(r, cie, arch):<5} " for r in regs)
    if arch.ra_tracking:
        head += "ras"
    yield head
    for row in rows:
        line = f"{row.loc:0{addr_width}x} {_cfa(row.cfa, arch):<8} "
        line += "".join(f"{_cell(row.regs.get(r)):<5} " for r in regs)
        if arch.ra_tracking:
            line += ("b" if cie.pauth_b_key else "s") if row.ra_signed else "-"
        yield line


def _order(regs: set[int], cie: CIE) -> list[int]:
    out = sorted(r for r in regs if r != cie.ra_register)
    if cie.ra_register in regs:
        out.append(cie.ra_register)
    return out


def dump_frames(frames: FrameSection, arch: Arch, *, pc: int | None = None) -> Iterator[str]:
    """Lines of the frames-interp dump (only the FDE covering *pc* when given)."""
    width = 16 if frames.address_size == 8 else 8
    yield f"Contents of the {frames.name} section:"
    yield ""
    cie_first = {}
    for off in sorted(frames.cies):
        cie_first[off] = True
    entries = [(off, "cie") for off in frames.cies] + [
        (frames.fde_offsets[i], i) for i in range(len(frames))]
    entries.sort(key=lambda e: e[0])
    for off, what in entries:
        if what == "cie":
            if pc is not None:
                continue
            cie = frames.cies[off]
            length = cie.instructions_end - off - (12 if cie.is_64bit else 4)
            cie_id = 0 if frames.is_eh_frame else (
                0xFFFFFFFFFFFFFFFF if cie.is_64bit else 0xFFFFFFFF)
            yield ""
            yield (f"{off:08x} {length:0{width}x} {cie_id:08x} CIE \"{cie.augmentation}\" "
                   f"cf={cie.code_align} df={cie.data_align} ra={cie.ra_register}")
            referenced: set[int] = set()
            state = cie_initial_state(frames, cie, arch, referenced)
            row = CFIRow(0, 0, state.cfa, state.regs, state.signed)
            yield from _table([row], _order(referenced, cie), cie, arch, width)
            continue
        i = what
        begin = frames.fde_pc_begin[i]
        end = begin + frames.fde_pc_range[i]
        if pc is not None and not begin <= pc < end:
            continue
        cie = frames.cies[frames.fde_cie[i]]
        length = frames.fde_ins_end[i] - off - (12 if cie.is_64bit else 4)
        cie_ptr = (off + 4 - frames.fde_cie[i]) if frames.is_eh_frame else frames.fde_cie[i]
        yield ""
        yield (f"{off:08x} {length:0{width}x} {cie_ptr:08x} FDE cie={frames.fde_cie[i]:08x} "
               f"pc={begin:0{width}x}..{end:0{width}x}")
        body = frames.data[frames.fde_ins_start[i]:frames.fde_ins_end[i]]
        if not body.strip(b"\0"):
            continue  # readelf prints no table for an FDE of only DW_CFA_nop
        referenced = set()
        rows = evaluate_fde(frames, i, arch, referenced=referenced)
        yield from _table(rows, _order(referenced, cie), cie, arch, width)
    if frames.terminator is not None and pc is None:
        yield ""
        yield f"{frames.terminator:08x} ZERO terminator"
        yield ""
    yield ""
