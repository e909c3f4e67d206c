"""The one row model shared by SFrame, DWARF CFI and the unwinder.

An :class:`UnwindRow` says, for the PCs it covers, how to find the caller's frame:

* the **CFA** (canonical frame address: the SP value just before the call) as a base register
  plus an offset, optionally dereferenced;
* where the **return address** is (``ra``) and where the caller's **frame pointer** is
  (``fp``), each as a :class:`Rule`;
* whether the RA is PAC-signed at this PC (``ra_signed``, AArch64 ``.cfi_negate_ra_state``)
  and with which key;
* whether this is an **outermost** row (RA undefined: the stack ends here) or a **signal**
  frame.

The rule kinds follow the kernel's generic unwind model (``include/linux/unwind_types.h`` of
the arm64 SFrame series: ``UNWIND_RULE_RETAIN``, ``CFA_OFFSET``, ``CFA_OFFSET_DEREF``,
``REG_OFFSET``, ``REG_OFFSET_DEREF``), extended with the two DWARF outcomes SFrame cannot
express (``UNDEFINED`` and ``UNREPRESENTABLE``) so the CFI reader can use the same rows.

SFrame cell text -> rule (AArch64):  ``u`` RA -> RETAIN (still in LR/x30); ``c-8`` ->
CFA_OFFSET_DEREF(-8); ``u`` FP -> RETAIN (x29 unchanged).  x86-64's fixed RA (``f``) ->
CFA_OFFSET_DEREF(-8).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

#: DWARF register numbers used by the rules.
AARCH64_FP = 29
AARCH64_LR = 30
AARCH64_SP = 31
X86_64_FP = 6  # rbp
X86_64_SP = 7  # rsp
X86_64_RA = 16  # rip (return-address column)


class CfaKind(enum.Enum):
    """How the CFA is computed."""

    SP_OFFSET = "sp"  # CFA = SP + offset
    FP_OFFSET = "fp"  # CFA = FP + offset
    REG_OFFSET = "reg"  # CFA = REG[regnum] + offset
    REG_OFFSET_DEREF = "*reg"  # CFA = *(REG[regnum] + offset)
    UNREPRESENTABLE = "expr"  # a DWARF expression or anything else no SFrame can express


class RuleKind(enum.Enum):
    """How a register (RA or FP) of the caller is recovered."""

    RETAIN = "retain"  # unchanged: still in its own register (RA in LR on arm64)
    CFA_OFFSET = "cfa+off"  # value = CFA + offset (DWARF val_offset)
    CFA_OFFSET_DEREF = "*(cfa+off)"  # saved on the stack at CFA + offset
    REG_OFFSET = "reg+off"  # value = REG[regnum] + offset (offset 0: DWARF "register")
    REG_OFFSET_DEREF = "*(reg+off)"
    UNDEFINED = "undefined"  # DWARF undefined: no value (RA undefined = outermost)
    UNREPRESENTABLE = "expr"  # DWARF expression / val_expression / architecture specific


@dataclass(frozen=True, slots=True)
class CfaRule:
    kind: CfaKind
    offset: int = 0
    regnum: int | None = None

    def __str__(self) -> str:
        if self.kind is CfaKind.SP_OFFSET:
            return f"sp{self.offset:+d}"
        if self.kind is CfaKind.FP_OFFSET:
            return f"fp{self.offset:+d}"
        if self.kind is CfaKind.REG_OFFSET:
            return f"r{self.regnum}{self.offset:+d}"
        if self.kind is CfaKind.REG_OFFSET_DEREF:
            return f"*(r{self.regnum}{self.offset:+d})"
        return "expr"


@dataclass(frozen=True, slots=True)
class Rule:
    kind: RuleKind
    offset: int = 0
    regnum: int | None = None

    def __str__(self) -> str:
        k = self.kind
        if k is RuleKind.RETAIN:
            return "same"
        if k is RuleKind.CFA_OFFSET_DEREF:
            return f"c{self.offset:+d}"
        if k is RuleKind.CFA_OFFSET:
            return f"v(c{self.offset:+d})"
        if k is RuleKind.REG_OFFSET:
            return f"r{self.regnum}" + (f"{self.offset:+d}" if self.offset else "")
        if k is RuleKind.REG_OFFSET_DEREF:
            return f"*(r{self.regnum}{self.offset:+d})"
        if k is RuleKind.UNDEFINED:
            return "undef"
        return "expr"


RETAIN = Rule(RuleKind.RETAIN)
UNDEFINED = Rule(RuleKind.UNDEFINED)


class PAuthKey(enum.Enum):
    A = "A"
    B = "B"


class UnwindRow(NamedTuple):
    """How to unwind one frame at the PCs ``[start, end)`` (absolute addresses when known).

    ``outermost`` is True when the RA is undefined (the frame is the last one: SFrame's
    zero-word FRE, DWARF ``DW_CFA_undefined`` of the RA column); such a row carries no usable
    CFA/RA/FP rules.

    A named tuple rather than a frozen dataclass: rows are built on every cold lookup, and a
    frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) costs ~1.1 µs
    against ~0.3 µs here; immutability, hashing and equality are the same.
    """

    cfa: CfaRule
    ra: Rule
    fp: Rule
    ra_signed: bool = False
    pauth_key: PAuthKey = PAuthKey.A
    outermost: bool = False
    signal: bool = False
    start: int | None = None
    end: int | None = None

    def describe(self) -> str:
        """A one-line, SFrame-dump-like description (``sp+16 fp=c-16 ra=c-8[s]``)."""
        if self.outermost:
            return "RA undefined"
        s = f"cfa={self.cfa} fp={self.fp} ra={self.ra}"
        if self.ra_signed:
            s += f"[s:{self.pauth_key.value}]"
        if self.signal:
            s += " signal"
        return s

    def same_rules(self, other: UnwindRow) -> bool:
        """True when both rows unwind identically (PC range ignored)."""
        return (
            self.cfa == other.cfa
            and self.ra == other.ra
            and self.fp == other.fp
            and self.ra_signed == other.ra_signed
            and (not self.ra_signed or self.pauth_key == other.pauth_key)
            and self.outermost == other.outermost
            and self.signal == other.signal
        )


def outermost_row(start: int | None = None, end: int | None = None, *,
                  signal: bool = False) -> UnwindRow:
    """The row for "RA undefined: the stack ends here"."""
    return UnwindRow(CfaRule(CfaKind.UNREPRESENTABLE), UNDEFINED, UNDEFINED,
                     outermost=True, signal=signal, start=start, end=end)
