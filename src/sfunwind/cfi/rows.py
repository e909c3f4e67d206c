"""Evaluation of CFA programs into rows (the DWARF unwind table), per DWARF 5 §6.4.

A :class:`CFIRow` holds the full table row (CFA rule, every register's rule, and the
AArch64 return-address signing state toggled by ``DW_CFA_AARCH64_negate_ra_state``, which
is part of the remembered state like in libgcc).  :func:`to_unwind_row` maps it onto the
shared :class:`sfunwind.rules.UnwindRow` model.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfunwind.cfi import ops as O
from sfunwind.cfi.arch import Arch
from sfunwind.cfi.ops import decode_program
from sfunwind.cfi.parser import CIE, FrameSection, read_sleb
from sfunwind.errors import CFIFormatError
from sfunwind.rules import (
    RETAIN,
    UNDEFINED,
    CfaKind,
    CfaRule,
    PAuthKey,
    Rule,
    RuleKind,
    UnwindRow,
    outermost_row,
)

#: Register rules: (kind, value).  kind: "u" undefined, "s" same value, "o" offset(N),
#: "v" val_offset(N), "r" register(R), "e" expression(bytes), "x" val_expression(bytes).
RegRule = tuple[str, object]

MAX_STATE_STACK = 10_000


@dataclass(slots=True)
class CFIRow:
    """One row of the unwind table: valid for ``[loc, end)``."""

    loc: int
    end: int
    cfa: tuple  # ("reg", regnum, offset) or ("expr", bytes)
    regs: dict[int, RegRule]
    ra_signed: bool


class _State:
    __slots__ = ("cfa", "regs", "signed")

    def __init__(self, cfa: tuple, regs: dict[int, RegRule], signed: bool) -> None:
        self.cfa = cfa
        self.regs = regs
        self.signed = signed

    def copy(self) -> _State:
        return _State(self.cfa, dict(self.regs), self.signed)


def _run(program: list, state: _State, initial: dict[int, RegRule] | None, loc: int,
         rows: list[CFIRow] | None, arch: Arch, section: str, path: str | None,
         referenced: set[int] | None) -> int:
    stack: list[_State] = []
    for kind, a, b, _opcode, start, _end in program:
        if kind == O.K_ADVANCE or kind == O.K_SET_LOC:
            new = loc + a if kind == O.K_ADVANCE else a
            if rows is not None:
                rows.append(CFIRow(loc, new, state.cfa, dict(state.regs), state.signed))
            loc = new
        elif kind == O.K_DEF_CFA:
            state.cfa = ("reg", a, b)
        elif kind == O.K_DEF_CFA_REGISTER:
            off = state.cfa[2] if state.cfa[0] == "reg" else 0
            state.cfa = ("reg", a, off)
        elif kind == O.K_DEF_CFA_OFFSET:
            reg = state.cfa[1] if state.cfa[0] == "reg" else arch.sp
            state.cfa = ("reg", reg, a)
        elif kind == O.K_DEF_CFA_EXPRESSION:
            state.cfa = ("expr", a)
        elif kind == O.K_OFFSET:
            state.regs[a] = ("o", b)
        elif kind == O.K_VAL_OFFSET:
            state.regs[a] = ("v", b)
        elif kind == O.K_REGISTER:
            state.regs[a] = ("r", b)
        elif kind == O.K_EXPRESSION:
            state.regs[a] = ("e", b)
        elif kind == O.K_VAL_EXPRESSION:
            state.regs[a] = ("x", b)
        elif kind == O.K_UNDEFINED:
            state.regs[a] = ("u", None)
        elif kind == O.K_SAME_VALUE:
            state.regs[a] = ("s", None)
        elif kind == O.K_RESTORE:
            if initial is not None and a in initial:
                state.regs[a] = initial[a]
            else:
                state.regs.pop(a, None)
        elif kind == O.K_REMEMBER_STATE:
            if len(stack) >= MAX_STATE_STACK:
                raise CFIFormatError(f"{section}: DW_CFA_remember_state nested too deeply",
                                     offset=start, path=path)
            stack.append(state.copy())
        elif kind == O.K_RESTORE_STATE:
            if not stack:
                raise CFIFormatError(f"{section}: DW_CFA_restore_state without "
                                     "DW_CFA_remember_state", offset=start, path=path)
            saved = stack.pop()
            state.cfa, state.regs, state.signed = saved.cfa, saved.regs, saved.signed
        elif kind == O.K_NEGATE_RA_STATE or kind == O.K_NEGATE_RA_STATE_WITH_PC:
            state.signed = not state.signed
        # K_ARGS_SIZE, K_NOP: no effect on the table.
        if referenced is not None and kind in _REG_KINDS:
            referenced.add(a)
    return loc


_REG_KINDS = frozenset((O.K_OFFSET, O.K_VAL_OFFSET, O.K_REGISTER, O.K_EXPRESSION,
                        O.K_VAL_EXPRESSION, O.K_UNDEFINED, O.K_SAME_VALUE, O.K_RESTORE))


def cie_initial_state(frames: FrameSection, cie: CIE, arch: Arch,
                      referenced: set[int] | None = None) -> _State:
    prog = decode_program(frames.data, cie.instructions_start, cie.instructions_end,
                          cie.code_align, cie.data_align, address_size=cie.address_size,
                          big_endian=frames.big_endian, section=frames.name)
    state = _State(("reg", arch.sp, 0), {}, False)
    _run(prog, state, None, 0, None, arch, frames.name, None, referenced)
    return state


def evaluate_fde(frames: FrameSection, index: int, arch: Arch, *,
                 referenced: set[int] | None = None,
                 with_trailing: bool = True) -> list[CFIRow]:
    """The rows of FDE *index* (absolute locations), in order, covering its whole range."""
    cie = frames.cies[frames.fde_cie[index]]
    init = cie_initial_state(frames, cie, arch, referenced)
    state = init.copy()
    prog = decode_program(frames.data, frames.fde_ins_start[index], frames.fde_ins_end[index],
                          cie.code_align, cie.data_align, address_size=cie.address_size,
                          big_endian=frames.big_endian, section=frames.name)
    rows: list[CFIRow] = []
    begin = frames.fde_pc_begin[index]
    end = begin + frames.fde_pc_range[index]
    loc = _run(prog, state, dict(init.regs), begin, rows, arch, frames.name, None, referenced)
    if with_trailing:
        rows.append(CFIRow(loc, max(end, loc), state.cfa, dict(state.regs), state.signed))
    return rows


# ---------------------------------------------------------------------------------------
# Mapping to the shared row model.


def _simple_expr(expr: bytes) -> tuple[int, int, bool] | None:
    """``DW_OP_bregN off [; DW_OP_deref]`` -> (N, off, deref), else None."""
    if not expr or not 0x70 <= expr[0] <= 0x8F:
        return None
    try:
        off, pos = read_sleb(expr, 1, len(expr))
    except (IndexError, ValueError):
        return None
    if pos == len(expr):
        return expr[0] - 0x70, off, False
    if pos + 1 == len(expr) and expr[pos] == 0x06:  # DW_OP_deref
        return expr[0] - 0x70, off, True
    return None


def _cfa_rule(cfa: tuple, arch: Arch) -> CfaRule:
    if cfa[0] == "reg":
        _, reg, off = cfa
        if reg == arch.sp:
            return CfaRule(CfaKind.SP_OFFSET, off)
        if reg == arch.fp:
            return CfaRule(CfaKind.FP_OFFSET, off)
        return CfaRule(CfaKind.REG_OFFSET, off, reg)
    simple = _simple_expr(cfa[1])
    if simple is not None:
        reg, off, deref = simple
        return CfaRule(CfaKind.REG_OFFSET_DEREF if deref else CfaKind.REG_OFFSET, off, reg)
    return CfaRule(CfaKind.UNREPRESENTABLE)


def _reg_rule(rule: RegRule | None) -> Rule:
    if rule is None or rule[0] == "s":
        return RETAIN
    kind, value = rule
    if kind == "o":
        return Rule(RuleKind.CFA_OFFSET_DEREF, value)  # type: ignore[arg-type]
    if kind == "v":
        return Rule(RuleKind.CFA_OFFSET, value)  # type: ignore[arg-type]
    if kind == "r":
        return Rule(RuleKind.REG_OFFSET, 0, value)  # type: ignore[arg-type]
    if kind == "u":
        return UNDEFINED
    if kind == "e":
        simple = _simple_expr(value)  # type: ignore[arg-type]
        if simple is not None and not simple[2]:
            return Rule(RuleKind.REG_OFFSET_DEREF, simple[1], simple[0])
    return Rule(RuleKind.UNREPRESENTABLE)


def to_unwind_row(row: CFIRow, arch: Arch, cie: CIE) -> UnwindRow:
    """The shared-model view of *row*: CFA, RA and FP rules, signing state, outermost."""
    ra_rule = row.regs.get(cie.ra_register)
    if ra_rule is not None and ra_rule[0] == "u":
        return outermost_row(row.loc, row.end, signal=cie.signal_frame)
    return UnwindRow(
        cfa=_cfa_rule(row.cfa, arch),
        ra=_reg_rule(ra_rule),
        fp=_reg_rule(row.regs.get(arch.fp)),
        ra_signed=row.ra_signed,
        pauth_key=PAuthKey.B if cie.pauth_b_key else PAuthKey.A,
        signal=cie.signal_frame,
        start=row.loc,
        end=row.end,
    )


def unwind_rows(frames: FrameSection, index: int, arch: Arch) -> list[UnwindRow]:
    """:func:`evaluate_fde` mapped to :class:`UnwindRow`, empty ranges dropped."""
    cie = frames.cies[frames.fde_cie[index]]
    return [to_unwind_row(r, arch, cie) for r in evaluate_fde(frames, index, arch)
            if r.end > r.loc]


__all__ = ["CFIRow", "cie_initial_state", "evaluate_fde", "to_unwind_row", "unwind_rows"]
