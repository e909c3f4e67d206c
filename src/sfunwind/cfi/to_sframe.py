"""DWARF CFI -> SFrame v3, following GNU as (``gas/gen-sframe.c``, binutils 2.46/2.47) exactly.

gas translates the ``.cfi_*`` directive list of each ``.cfi_startproc``/``.cfi_endproc``
pair; that list is exactly the CIE's initial instructions followed by the FDE's
instructions, so decoding both and replaying them through the same state machine gives the
same FREs.  The rules reproduced here (see ``translate_program``):

* A scratch row (``cur``) collects changes.  Every state-changing instruction clears its
  *merge candidate* flag, even when the value written is the same.  At each
  ``DW_CFA_advance_loc*`` a changed scratch row is committed as an FRE starting at the
  location where it began; an unchanged one is dropped (the previous FRE grows).  The
  scratch row present at the end is always committed.
* ``remember_state`` snapshots the scratch row; ``restore_state`` copies it back (and
  requires an unchanged scratch row, else gas asserts).  ``restore`` of FP/RA takes the
  first FRE's value ("CIE state").  ``negate_ra_state`` toggles the sticky mangled-RA bit;
  RA-undefined is sticky until RA gets a rule again and is encoded as an FRE with no data
  words (``fre_info`` 0).
* Refusals (the FDE is dropped, with gas's warning text): non-SP/FP CFA on AArch64,
  ``val_offset`` of FP/RA/SP, ``register`` of RA/FP/SP without FLEX, ``undefined`` FP/SP,
  ``negate_ra_state_with_pc``, unsupported ``.cfi_escape`` shapes (seen here as
  ``def_cfa_expression``/``expression``/``val_expression``/``GNU_args_size`` etc.),
  out-of-range CFA offsets, a non-default return column, more than 65535 FREs, and on
  AArch64 any FRE with FP saved but RA not.  A signal-frame FDE that fails is still
  emitted, with no FREs.
* Widths: FRE start offsets are 1/2/4 bytes for functions < 0x100 / < 0x10000 / larger;
  each FRE's data words take the smallest of 1/2/4 bytes that holds all its (signed)
  offsets — and, in FLEX FDEs, its (unsigned) control words — as gas computes them.
* Layout: V3, flags ``SFRAME_F_FDE_FUNC_START_PCREL`` only, FDEs and FRE blocks both in
  DWARF FDE order, ``freoff = 16 * num_fdes``.

Known differences that cannot be recovered from encoded CFI (both still refuse the FDE):
``.cfi_val_encoded_addr`` and ``.cfi_label`` are seen as ``DW_CFA_val_expression`` / nothing,
and an escaped ``DW_CFA_val_offset`` is reported as ``.cfi_val_offset``.

Speed (a vmlinux: 57,921 FDEs, 29,459 distinct programs): programs are keyed by their bytes
with every ``DW_CFA_advance_loc`` opcode folded to one value (10,823 distinct shapes); each
shape is translated once by a fused decoder/state machine (:func:`_fast_translate`, checked
against the reference :func:`translate_program` by the tests) which also records where the
advance amounts sit; the FRE start offsets of all FDEs are then computed with numpy from
those bytes and patched into per-shape FRE blocks.  Anything unusual takes the reference
path.  The whole kernel converts in about 1.5x the CPU time ``readelf`` needs to print it.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from sfunwind.cfi import ops as O
from sfunwind.cfi.arch import Arch
from sfunwind.cfi.ops import decode_program
from sfunwind.cfi.parser import FrameSection, read_sleb
from sfunwind.errors import CFIFormatError

SFRAME_MAGIC = 0xDEE2
SFRAME_VERSION_3 = 3
SFRAME_F_FDE_FUNC_START_PCREL = 0x4
SFRAME_HEADER_SIZE = 28
SFRAME_V3_FDE_INDEX_SIZE = 16
SFRAME_V3_FDE_ATTR_SIZE = 5
MAX_FRES = 0xFFFF
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

LOC_NONE, LOC_REG, LOC_STACK = 0, 1, 2
DW_OP_breg6 = 0x76
DW_OP_deref = 0x06


class _Row:
    """gas ``struct sframe_row_entry`` (the fields that reach the output)."""

    __slots__ = ("begin", "cfa_deref", "cfa_offset", "cfa_reg", "fp_deref", "fp_loc",
                 "fp_offset", "fp_reg", "mangled", "merge", "ra_deref", "ra_loc", "ra_offset",
                 "ra_reg", "ra_undefined")

    def __init__(self, begin: int = 0) -> None:
        self.begin = begin
        self.cfa_reg: int | None = None  # None = SFRAME_FRE_REG_INVALID
        self.cfa_offset = 0
        self.cfa_deref = False
        self.fp_loc = LOC_NONE
        self.fp_reg: int | None = None
        self.fp_offset = 0
        self.fp_deref = False
        self.ra_loc = LOC_NONE
        self.ra_reg: int | None = None
        self.ra_offset = 0
        self.ra_deref = False
        self.mangled = False
        self.ra_undefined = False
        self.merge = True

    def copy_from(self, o: _Row) -> None:
        """gas ``sframe_row_entry_initialize``: everything but the PC range and merge flag."""
        self.cfa_reg = o.cfa_reg
        self.cfa_offset = o.cfa_offset
        self.cfa_deref = o.cfa_deref
        self.fp_loc = o.fp_loc
        self.fp_reg = o.fp_reg
        self.fp_offset = o.fp_offset
        self.fp_deref = o.fp_deref
        self.ra_loc = o.ra_loc
        self.ra_reg = o.ra_reg
        self.ra_offset = o.ra_offset
        self.ra_deref = o.ra_deref
        self.mangled = o.mangled
        self.ra_undefined = o.ra_undefined

    def key(self) -> tuple:
        return (self.begin, self.cfa_reg, self.cfa_offset, self.cfa_deref, self.fp_loc,
                self.fp_reg, self.fp_offset, self.fp_deref, self.ra_loc, self.ra_reg,
                self.ra_offset, self.ra_deref, self.mangled, self.ra_undefined)


@dataclass(frozen=True, slots=True)
class GasFRE:
    """One FRE as gas builds it (before encoding); ``start`` is relative to the function."""

    start: int
    cfa_reg: int | None
    cfa_offset: int
    cfa_deref: bool
    fp_loc: int
    fp_reg: int | None
    fp_offset: int
    fp_deref: bool
    ra_loc: int
    ra_reg: int | None
    ra_offset: int
    ra_deref: bool
    mangled: bool
    ra_undefined: bool

    def as_row(self) -> tuple:
        return (self.start, self.cfa_reg, self.cfa_offset, self.cfa_deref, self.fp_loc,
                self.fp_reg, self.fp_offset, self.fp_deref, self.ra_loc, self.ra_reg,
                self.ra_offset, self.ra_deref, self.mangled, self.ra_undefined)


@dataclass(frozen=True, slots=True)
class Translation:
    """The outcome of one FDE: FRE rows, or a refusal (``reason`` set, no rows).

    ``rows`` are ``(start, state)`` pairs, *state* a plain tuple of the other :class:`GasFRE`
    fields in order (cheap to build and to use as a cache key); :attr:`fres` gives the named
    view.
    """

    rows: tuple[tuple, ...]
    flex: bool
    reason: str | None = None

    @property
    def fres(self) -> tuple[GasFRE, ...]:
        return tuple(GasFRE(start, *state) for start, state in self.rows)


class _Refuse(Exception):
    pass


def _name(arch: Arch, reg: int) -> str:
    if reg == arch.sp:
        return "SP"
    if reg == arch.fp:
        return "FP"
    if reg == arch.ra:
        return "RA"
    return "(null)"


def _bound(v: int) -> bool:
    return INT32_MIN <= v <= INT32_MAX


def translate_program(program: list, arch: Arch, return_column: int) -> Translation:
    """Replay one function's CFI (CIE initial + FDE instructions) through gas's state machine."""
    if return_column != arch.ra:
        return Translation((), False, f"non-default RA register {return_column}")
    try:
        return _translate(program, arch)
    except _Refuse as exc:
        return Translation((), False, str(exc))


def _translate(program: list, arch: Arch) -> Translation:
    sp, fp, ra = arch.sp, arch.fp, arch.ra
    tracking = arch.ra_tracking
    flex_ok = arch.flex
    flex = False
    committed: list[_Row] = []
    cur: _Row | None = None
    remembered: _Row | None = None
    loc = 0
    for kind, a, b, opcode, _s, _e in program:
        if kind == O.K_ADVANCE:
            loc += a
            if cur is not None:
                if not cur.merge:
                    committed.append(cur)
                    last = cur
                    cur = _Row()
                    cur.copy_from(last)
                # else: the previous FRE simply grows; cur is reused.
            else:
                cur = _Row()
            cur.begin = loc
            continue
        if kind == O.K_NOP:
            continue  # padding: never part of gas's directive list
        if kind == O.K_DEF_CFA:
            if cur is None:
                cur = _Row(0)
            if not _bound(b):
                raise _Refuse(".cfi_def_cfa with unsupported offset value")
            if a != sp and a != fp:
                if not flex_ok:
                    raise _Refuse(f"non-SP/FP register {a} in .cfi_def_cfa")
                flex = True
            cur.cfa_reg = a
            cur.cfa_offset = b
            cur.cfa_deref = False
            cur.merge = False
            continue
        if cur is None:
            # gas would assert here (its CIE always starts with .cfi_def_cfa).
            raise _Refuse(f"{O.opcode_name(opcode)} before any CFA rule")
        if kind == O.K_DEF_CFA_OFFSET:
            if cur.cfa_reg == sp or cur.cfa_reg == fp:
                if not _bound(a):
                    raise _Refuse(".cfi_def_cfa_offset with unsupported offset value")
                cur.cfa_offset = a
                cur.merge = False
            else:
                raise _Refuse(".cfi_def_cfa_offset without CFA base register in effect")
        elif kind == O.K_OFFSET:
            if not flex_ok and not tracking and a == ra and b != arch.cfa_ra_offset:
                raise _Refuse(f"RA register {a} in .cfi_offset")
            if a == fp:
                cur.fp_loc = LOC_STACK
                cur.fp_offset = b
                cur.fp_reg = None
                cur.fp_deref = True
                cur.merge = False
            elif a == ra:
                if not tracking and b == arch.cfa_ra_offset:
                    cur.ra_reg = None
                    cur.ra_loc = LOC_NONE
                    cur.ra_deref = False
                    cur.merge = False
                else:
                    cur.ra_loc = LOC_STACK
                    cur.ra_offset = b
                    cur.ra_undefined = False
                    cur.ra_reg = None
                    cur.ra_deref = True
                    cur.merge = False
                    if not tracking and flex_ok:
                        flex = True
        elif kind == O.K_RESTORE:
            cie = committed[0] if committed else cur
            if a == fp:
                cur.fp_loc = cie.fp_loc
                cur.fp_offset = cie.fp_offset
                cur.merge = False
            elif tracking and a == ra:
                cur.ra_loc = cie.ra_loc
                cur.ra_offset = cie.ra_offset
                cur.ra_undefined = cie.ra_undefined
                cur.merge = False
        elif kind == O.K_NEGATE_RA_STATE:
            if arch.name.startswith("aarch64"):
                cur.mangled = not cur.mangled
                cur.merge = False
            else:
                raise _Refuse(".cfi_window_save")
        elif kind == O.K_REMEMBER_STATE:
            if remembered is None:
                remembered = _Row()
            remembered.copy_from(cur)
        elif kind == O.K_RESTORE_STATE:
            if remembered is None or not cur.merge:
                # gas_assert (xlate_ctx->remember_fre) / (cur_fre->merge_candidate)
                raise _Refuse(".cfi_restore_state without a matching .cfi_remember_state "
                              "at an instruction boundary (gas would abort)")
            cur.copy_from(remembered)
            cur.merge = False
        elif kind == O.K_DEF_CFA_REGISTER:
            if a != sp and a != fp:
                if not flex_ok:
                    raise _Refuse(f"non-SP/FP register {a} in .cfi_def_cfa_register")
                flex = True
            cur.cfa_reg = a
            if committed:
                cur.cfa_offset = committed[-1].cfa_offset
            cur.cfa_deref = False
            cur.merge = False
        elif kind == O.K_VAL_OFFSET:
            if a == fp or (tracking and a == ra) or (a == sp and b != 0):
                raise _Refuse(f".cfi_val_offset with {_name(arch, a)} reg {a}")
        elif kind == O.K_REGISTER:
            if flex_ok and a == fp:
                cur.fp_loc = LOC_REG
                cur.fp_offset = 0
                cur.fp_reg = b
                cur.fp_deref = False
                cur.merge = False
                flex = True
            elif flex_ok and a == ra:
                cur.ra_loc = LOC_REG
                cur.ra_offset = 0
                cur.ra_undefined = False
                cur.ra_reg = b
                cur.ra_deref = False
                cur.merge = False
                flex = True
            elif a in (ra, sp, fp):
                raise _Refuse(f"{_name(arch, a)} register {a} in .cfi_register")
        elif kind == O.K_UNDEFINED:
            if a in (fp, sp):
                raise _Refuse(f"{_name(arch, a)} reg {a} in .cfi_undefined")
            if a == ra:
                cur.ra_undefined = True
                cur.merge = False
        elif kind == O.K_SAME_VALUE:
            if tracking and a == ra:
                cur.ra_loc = LOC_NONE
                cur.ra_offset = 0
                cur.ra_undefined = False
                cur.merge = False
            elif a == fp:
                cur.fp_loc = LOC_NONE
                cur.fp_offset = 0
                cur.merge = False
        elif kind == O.K_NEGATE_RA_STATE_WITH_PC:
            raise _Refuse(".cfi_negate_ra_state_with_pc")
        elif kind == O.K_DEF_CFA_EXPRESSION:
            flex = _escape_cfa_expression(cur, a, arch) or flex
        elif kind == O.K_EXPRESSION:
            flex = _escape_expression(cur, a, b, arch, opcode) or flex
        elif kind == O.K_ARGS_SIZE:
            if not (a == 0 or cur.cfa_reg == fp) or a > 0x7F:
                raise _Refuse(f".cfi_escape with op ({opcode:#x})")
        elif kind == O.K_SET_LOC or kind == O.K_VAL_EXPRESSION:
            raise _Refuse(f".cfi_escape with op ({opcode:#x})")
        else:  # pragma: no cover - every kind is handled above
            raise _Refuse(f"CFI insn {O.opcode_name(opcode)} ({opcode:#x})")
    if cur is not None:
        committed.append(cur)
    if len(committed) > MAX_FRES:
        raise _Refuse("Number of FREs exceeds UINT16_MAX")
    if tracking:
        for row in committed:
            if row.ra_loc != LOC_STACK and row.fp_loc == LOC_STACK:
                raise _Refuse("FP without RA on stack")
    return Translation(tuple((r.begin, r.key()[1:]) for r in committed), flex)


def _escape_cfa_expression(cur: _Row, expr: bytes, arch: Arch) -> bool:
    """``.cfi_escape DW_CFA_def_cfa_expression`` as gas accepts it (x86-64 DRAP only)."""
    if len(expr) == 3 and arch.flex and arch.name == "x86_64" and expr[0] == DW_OP_breg6 \
            and expr[2] == DW_OP_deref and expr[1] < 0x80:
        offset, _ = read_sleb(expr, 1, 2)
        cur.cfa_reg = arch.fp
        cur.cfa_offset = offset
        cur.cfa_deref = True
        cur.merge = False
        return True
    raise _Refuse(f".cfi_escape with op ({O.DW_CFA_def_cfa_expression:#x})")


def _escape_expression(cur: _Row, reg: int, expr: bytes, arch: Arch, opcode: int) -> bool:
    """``.cfi_escape DW_CFA_expression reg, 2, op, offset`` as gas accepts it."""
    if reg >= 0x80 or len(expr) != 2 or expr[1] >= 0x80:
        raise _Refuse(f".cfi_escape with op ({opcode:#x})")
    offset, _ = read_sleb(expr, 1, 2)
    if reg == arch.fp:
        if arch.flex and arch.name == "x86_64" and expr[0] == DW_OP_breg6:
            cur.fp_loc = LOC_REG
            cur.fp_offset = offset
            cur.fp_reg = arch.fp
            cur.fp_deref = True
            cur.merge = False
            return True
        # gas would emit a FLEX FDE with an invalid FP register here; refuse instead.
        raise _Refuse(f".cfi_escape DW_CFA_expression with FP reg {reg} (gas emits a "
                      "malformed FLEX FDE for this)")
    if reg == arch.sp or (arch.ra_tracking and reg == arch.ra) or reg == cur.cfa_reg:
        raise _Refuse(f".cfi_escape DW_CFA_expression with {_name(arch, reg)} reg {reg}")
    return False


# ---------------------------------------------------------------------------------------
# Encoding (gas output_sframe_row_entry / output_sframe_func_desc_attr).


def _sized(value: int) -> int:
    if -0x80 <= value <= 0x7F:
        return 1
    if -0x8000 <= value <= 0x7FFF:
        return 2
    if INT32_MIN <= value <= INT32_MAX:
        return 4
    return 8


def _usized(value: int) -> int:
    if value <= 0xFF:
        return 1
    if value <= 0xFFFF:
        return 2
    return 4


def _ctrl(reg: int | None, deref: bool, reg_p: bool) -> int:
    # SFRAME_V3_FLEX_FDE_CTRLWORD_ENCODE; an invalid register (gas: (unsigned) -1) is only
    # ever used with reg_p = 0 in practice.
    r = 0 if reg is None else reg
    return ((r << 3) | (int(deref) << 1) | int(reg_p)) & 0xFFFFFFFF


def encode_fre_body(state: tuple, arch: Arch, flex: bool) -> bytes:
    """``fre_info`` and data words of one FRE (*state*: GasFRE fields after ``start``)."""
    (cfa_reg, cfa_offset, cfa_deref, fp_loc, fp_reg, fp_offset, fp_deref, ra_loc,
     ra_reg, ra_offset, ra_deref, mangled, ra_undefined) = state
    if ra_undefined:
        return b"\x00"
    base = 0 if (flex or cfa_reg == arch.fp) else 1
    # Word count (get_fre_dataword_count).
    per = 2 if flex else 1
    count = per
    if flex:
        if ra_loc != LOC_NONE:
            count += per
        elif fp_loc != LOC_NONE:
            count += 1
    elif arch.ra_tracking and ra_loc != LOC_NONE:
        count += 1
    if fp_loc != LOC_NONE:
        count += per
    # Word size (sframe_get_fre_dataword_size).
    size = _sized(cfa_offset)
    if fp_loc == LOC_STACK:
        size = max(size, _sized(fp_offset))
    if arch.ra_tracking and ra_loc == LOC_STACK:
        size = max(size, _sized(ra_offset))
    if flex:
        size = max(size, _usized(_ctrl(cfa_reg, cfa_deref, cfa_reg is not None)))
        if ra_loc == LOC_REG:
            size = max(size, _usized(_ctrl(ra_reg, ra_deref, True)))
        if fp_loc == LOC_REG:
            size = max(size, _usized(_ctrl(fp_reg, fp_deref, True)))
    if size == 8:
        raise CFIFormatError("SFrame unsupported FRE data word size (an offset needs 8 bytes)")
    code = {1: 0, 2: 1, 4: 2}[size]
    info = (int(mangled) << 7) | (code << 5) | ((count & 0xF) << 1) | base
    words: list[int] = []
    if flex:
        words += [_ctrl(cfa_reg, cfa_deref, True), cfa_offset]
        if ra_loc != LOC_NONE:
            reg_p = ra_loc == LOC_REG
            words += [_ctrl(ra_reg if reg_p else 0, ra_deref, reg_p), ra_offset]
        elif fp_loc != LOC_NONE:
            words.append(0)
        if fp_loc != LOC_NONE:
            reg_p = fp_loc == LOC_REG
            words += [_ctrl(fp_reg if reg_p else 0, fp_deref, reg_p), fp_offset]
    else:
        words.append(cfa_offset)
        if arch.ra_tracking and ra_loc == LOC_STACK:
            words.append(ra_offset)
        if fp_loc == LOC_STACK:
            words.append(fp_offset)
    mask = (1 << (8 * size)) - 1
    fmt = (">" if arch.big_endian else "<") + {1: "B", 2: "H", 4: "I"}[size] * len(words)
    return bytes((info,)) + struct.pack(fmt, *[w & mask for w in words])


def encode_fre(f: GasFRE | tuple, arch: Arch, flex: bool, addr_size: int) -> bytes:
    """The bytes of one FRE (start offset of *addr_size* bytes, info, data words)."""
    row = f if isinstance(f, tuple) else f.as_row()
    start = row[0].to_bytes(addr_size, "big" if arch.big_endian else "little")
    return start + encode_fre_body(row[1:], arch, flex)


def fre_addr_size(func_size: int) -> int:
    """FRE start-offset width gas picks for a function of *func_size* bytes (sframe-opt.c)."""
    if func_size < 0x100:
        return 1
    if func_size < 0x10000:
        return 2
    return 4


_FRE_TYPE = {1: 0, 2: 1, 4: 2}


# ---------------------------------------------------------------------------------------
# Whole sections.


@dataclass(slots=True)
class Refusal:
    """An FDE gas would not translate."""

    fde_offset: int
    pc_begin: int
    pc_range: int
    reason: str


@dataclass(slots=True)
class Conversion:
    """The result of converting one CFI section: the SFrame FDEs in order, plus refusals.

    ``fre_data`` is the whole FRE sub-section (each FDE's 5-byte attribute record followed by
    its FREs), ``fre_offsets[i]`` where FDE *i*'s record starts in it.
    """

    arch: Arch
    starts: np.ndarray  # int64 absolute function start addresses
    sizes: np.ndarray  # uint32
    fre_data: bytes
    fre_offsets: np.ndarray  # int64
    num_fres: int
    refusals: list[Refusal] = field(default_factory=list)
    source_fdes: int = 0
    fde_offsets: list[int] = field(default_factory=list)  # CFI offset of each SFrame FDE

    @property
    def num_fdes(self) -> int:
        return len(self.fre_offsets)

    @property
    def blocks(self) -> list[bytes]:
        """Per FDE: its attribute record and FREs."""
        ends = [*self.fre_offsets[1:].tolist(), len(self.fre_data)]
        return [self.fre_data[a:b] for a, b in zip(self.fre_offsets.tolist(), ends, strict=True)]

    def refusal_reasons(self) -> Counter:
        return Counter(r.reason for r in self.refusals)

    def covered_bytes(self) -> int:
        return int(self.sizes.astype(np.int64).sum())

    def encode(self, sframe_address: int) -> bytes:
        """The ``.sframe`` section bytes as gas lays them out, placed at *sframe_address*."""
        n = self.num_fdes
        e = ">" if self.arch.big_endian else "<"
        header = struct.pack(e + "HBBBbbBIIIII", SFRAME_MAGIC, SFRAME_VERSION_3,
                             SFRAME_F_FDE_FUNC_START_PCREL, self.arch.sframe_abi, 0,
                             self.arch.cfa_ra_offset, 0, n, self.num_fres, len(self.fre_data),
                             0, SFRAME_V3_FDE_INDEX_SIZE * n)
        index = np.zeros(n, dtype=np.dtype([("start", e + "i8"), ("size", e + "u4"),
                                            ("fre_off", e + "u4")]))
        field_addr = (np.uint64(sframe_address & 0xFFFFFFFFFFFFFFFF)
                      + np.uint64(SFRAME_HEADER_SIZE)
                      + np.arange(n, dtype=np.uint64) * np.uint64(SFRAME_V3_FDE_INDEX_SIZE))
        index["start"] = (self.starts.astype(np.uint64) - field_addr).view(np.int64)
        index["size"] = self.sizes
        index["fre_off"] = self.fre_offsets
        return header + index.tobytes() + self.fre_data


def _cie_initial_row(prog: list, arch: Arch, return_column: int) -> tuple | None:
    """The scratch row after a CIE's initial instructions, when the fast path can use it.

    Only for the common shape: no advance, a ``def_cfa`` (so the row is already "changed"),
    and no refusal.  Returns (row tuple, flex) or None.
    """
    if any(op[0] == O.K_ADVANCE or op[0] == O.K_SET_LOC for op in prog):
        return None
    if not any(op[0] == O.K_DEF_CFA for op in prog):
        return None
    tr = translate_program(prog, arch, return_column)
    if tr.reason is not None or len(tr.rows) != 1:
        return None
    return tr.rows[0][1], tr.flex


def _fast_translate(data: bytes, pos: int, end: int, init: tuple, arch: Arch, caf: int,
                    daf: int) -> tuple[tuple, bool, tuple] | None:
    """gas's translation of one FDE's instruction bytes, for the common opcodes.

    Same state machine as :func:`_translate`, fused with decoding and kept in local
    variables (the bulk of a vmlinux).  Returns None whenever anything unusual appears
    (another opcode, a refusal, truncation): the caller then runs the reference path, which
    produces the exact reason or error.  ``tests/test_cfi_convert.py`` checks that both
    paths agree on every program of the kernel fixture.

    Also returns a *recording* that makes the result a template for every program with the
    same bytes except the advance amounts: ``(delta_pos, delta_mask, delta_mul, delta_op,
    n_advances, operand_pos, fre_advances)`` — positions (relative to *pos*) of the bytes
    that hold advance amounts, of the operand bytes in 0x40..0x7f (which the canonical form
    used as cache key folds together, so they must be compared), and for each FRE the
    number of advances before its start.
    """
    (flex_init, state0) = init
    (cfa_reg, cfa_off, cfa_deref, fp_loc, fp_reg, fp_off, fp_deref, ra_loc, ra_reg,
     ra_off, ra_deref, mangled, undef) = state0
    flex = flex_init
    sp, fp, ra = arch.sp, arch.fp, arch.ra
    tracking = arch.ra_tracking
    flex_ok = arch.flex
    cfa_ra = arch.cfa_ra_offset
    aarch64 = arch.ra_tracking
    merge = False
    begin = 0
    begin_nadv = 0
    loc = 0
    nadv = 0
    base = pos
    committed: list[tuple] = []
    fre_nadv: list[int] = []
    d_pos: list[int] = []
    d_mask: list[int] = []
    d_mul: list[int] = []
    d_op: list[int] = []
    oper: list[int] = []
    remembered: tuple | None = None
    big = arch.big_endian
    try:
        while pos < end:
            op = data[pos]
            pos += 1
            # Dispatch ordered by frequency in real CFI (restore, offset, advance_loc, ...).
            if op >= 0xC0:  # DW_CFA_restore
                reg = op & 0x3F
                if reg == fp:
                    if committed:
                        fp_loc = committed[0][1][3]
                        fp_off = committed[0][1][5]
                    merge = False
                elif tracking and reg == ra:
                    if committed:
                        ra_loc = committed[0][1][7]
                        ra_off = committed[0][1][9]
                        undef = committed[0][1][12]
                    merge = False
            elif op >= 0x80:  # DW_CFA_offset
                reg = op & 0x3F
                v = data[pos]
                pos += 1
                if v >= 0x80:
                    v &= 0x7F
                    shift = 7
                    while True:
                        b = data[pos]
                        pos += 1
                        v |= (b & 0x7F) << shift
                        if b < 0x80:
                            break
                        shift += 7
                        if shift > 63:
                            return None
                    if b >= 0x40:
                        oper.append(pos - 1 - base)
                elif v >= 0x40:
                    oper.append(pos - 1 - base)
                off = v * daf
                if reg == fp:
                    fp_loc = LOC_STACK
                    fp_off = off
                    fp_reg = None
                    fp_deref = True
                    merge = False
                elif reg == ra:
                    if not tracking:
                        if off == cfa_ra:
                            ra_reg = None
                            ra_loc = LOC_NONE
                            ra_deref = False
                            merge = False
                            continue
                        if not flex_ok:
                            return None
                        flex = True
                    ra_loc = LOC_STACK
                    ra_off = off
                    undef = False
                    ra_reg = None
                    ra_deref = True
                    merge = False
            elif op >= 0x40:  # DW_CFA_advance_loc
                loc += (op & 0x3F) * caf
                d_pos.append(pos - 1 - base)
                d_mask.append(0x3F)
                d_mul.append(1)
                d_op.append(nadv)
                nadv += 1
                if not merge:
                    committed.append((begin, (cfa_reg, cfa_off, cfa_deref, fp_loc, fp_reg,
                                              fp_off, fp_deref, ra_loc, ra_reg, ra_off,
                                              ra_deref, mangled, undef)))
                    fre_nadv.append(begin_nadv)
                    merge = True
                begin = loc
                begin_nadv = nadv
            elif op == 0x0E:  # DW_CFA_def_cfa_offset
                v = data[pos]
                pos += 1
                if v >= 0x80:
                    v &= 0x7F
                    shift = 7
                    while True:
                        b = data[pos]
                        pos += 1
                        v |= (b & 0x7F) << shift
                        if b < 0x80:
                            break
                        shift += 7
                        if shift > 63:
                            return None
                    if b >= 0x40:
                        oper.append(pos - 1 - base)
                elif v >= 0x40:
                    oper.append(pos - 1 - base)
                if (cfa_reg != sp and cfa_reg != fp) or v > INT32_MAX:
                    return None
                cfa_off = v
                merge = False
            elif op == 0x2D:  # DW_CFA_AARCH64_negate_ra_state
                if not aarch64:
                    return None
                mangled = not mangled
                merge = False
            elif op == 0x00:  # DW_CFA_nop
                pass
            elif op == 0x0A:  # DW_CFA_remember_state
                remembered = (cfa_reg, cfa_off, cfa_deref, fp_loc, fp_reg, fp_off, fp_deref,
                              ra_loc, ra_reg, ra_off, ra_deref, mangled, undef)
            elif op == 0x0B:  # DW_CFA_restore_state
                if remembered is None or not merge:
                    return None
                (cfa_reg, cfa_off, cfa_deref, fp_loc, fp_reg, fp_off, fp_deref, ra_loc,
                 ra_reg, ra_off, ra_deref, mangled, undef) = remembered
                merge = False
            elif 0x02 <= op <= 0x04:  # DW_CFA_advance_loc1/2/4
                n = 1 << (op - 2)
                if pos + n > end:
                    return None
                loc += int.from_bytes(data[pos:pos + n], "big" if big else "little") * caf
                for k in range(n):
                    d_pos.append(pos + k - base)
                    d_mask.append(0xFF)
                    d_mul.append(1 << (8 * (n - 1 - k if big else k)))
                    d_op.append(nadv)
                pos += n
                nadv += 1
                if not merge:
                    committed.append((begin, (cfa_reg, cfa_off, cfa_deref, fp_loc, fp_reg,
                                              fp_off, fp_deref, ra_loc, ra_reg, ra_off,
                                              ra_deref, mangled, undef)))
                    fre_nadv.append(begin_nadv)
                    merge = True
                begin = loc
                begin_nadv = nadv
            else:
                return None  # anything else: the reference path
        if pos != end:
            return None
    except IndexError:
        return None
    committed.append((begin, (cfa_reg, cfa_off, cfa_deref, fp_loc, fp_reg, fp_off, fp_deref,
                              ra_loc, ra_reg, ra_off, ra_deref, mangled, undef)))
    fre_nadv.append(begin_nadv)
    if len(committed) > MAX_FRES:
        return None
    if tracking:
        for _start, st in committed:
            if st[7] != LOC_STACK and st[3] == LOC_STACK:
                return None
    return tuple(committed), flex, (d_pos, d_mask, d_mul, d_op, nadv, oper, fre_nadv)


class _ExactOnly:
    exact = True


_EXACT_ONLY = _ExactOnly()

#: Folds every DW_CFA_advance_loc opcode (0x40..0x7f) to 0x40: the cache key of templates.
_CANON = bytes(0x40 if 0x40 <= b <= 0x7F else b for b in range(256))


class _Template:
    """The translation of every program with one canonical form (see _fast_translate)."""

    __slots__ = ("exact", "flex", "id", "oper_get", "oper_vals", "reason")

    def __init__(self) -> None:
        self.id = -1
        self.exact = False  # True: usable only for the very bytes it was made from
        self.flex = False
        self.oper_get = None
        self.oper_vals = None
        self.reason: str | None = None


class _Tables:
    """Concatenated per-template arrays for the vectorised assembly."""

    def __init__(self) -> None:
        self.d_pos: list[int] = []
        self.d_mask: list[int] = []
        self.d_mul: list[int] = []
        self.d_op: list[int] = []
        self.d_off: list[int] = []  # per template: first delta entry
        self.d_len: list[int] = []
        self.n_adv: list[int] = []
        self.f_nadv: list[int] = []
        self.f_const: list[int] = []
        self.f_body: list[int] = []
        self.f_bcum: list[int] = []  # per FRE: bytes of the template's earlier FRE bodies
        self.f_off: list[int] = []
        self.f_len: list[int] = []
        self.flex: list[int] = []
        self.bodies: dict[tuple, int] = {}  # FRE state -> body id (DEFAULT FDEs)
        self.bodies_flex: dict[tuple, int] = {}  # (FLEX FDEs)
        self.body_bytes: list[bytes] = []
        self.body_len: list[int] = []

    def add(self, rows, flex: bool, rec: tuple | None, arch: Arch) -> int:
        tid = len(self.f_off)
        if rec is None:
            d_pos = d_mask = d_mul = d_op = ()
            n_adv = 0
            f_nadv = [0] * len(rows)
            # (clamped: a start past 2**62 is past any function, and refused as such later)
            f_const = [min(start, 1 << 62) for start, _ in rows]
        else:
            d_pos, d_mask, d_mul, d_op, n_adv, _oper, f_nadv = rec
            f_const = [0] * len(rows)
        self.d_off.append(len(self.d_pos))
        self.d_len.append(len(d_pos))
        self.d_pos += d_pos
        self.d_mask += d_mask
        self.d_mul += d_mul
        self.d_op += d_op
        self.n_adv.append(n_adv)
        self.f_off.append(len(self.f_body))
        self.f_len.append(len(rows))
        self.f_nadv += f_nadv
        self.f_const += f_const
        bodies = self.bodies_flex if flex else self.bodies
        body_bytes = self.body_bytes
        body_len = self.body_len
        f_body = self.f_body
        f_bcum = self.f_bcum
        cum = 0
        for _start, state in rows:
            bid = bodies.get(state)
            if bid is None:
                bid = len(body_bytes)
                bodies[state] = bid
                body = encode_fre_body(state, arch, flex)
                body_bytes.append(body)
                body_len.append(len(body))
            f_body.append(bid)
            f_bcum.append(cum)
            cum += body_len[bid]
        self.flex.append(1 if flex else 0)
        return tid

    def blob(self, tid: int, asz: int, info: int, big: bool) -> bytes:
        """Attribute record + FREs of template *tid* with zeroed start offsets."""
        first, n = self.f_off[tid], self.f_len[tid]
        hole = bytes(asz)
        parts = [struct.pack(">HBBB" if big else "<HBBB", n, info, self.flex[tid], 0)]
        for bid in self.f_body[first:first + n]:
            parts.append(hole)
            parts.append(self.body_bytes[bid])
        return b"".join(parts)


def _ragged(lengths: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments (offset, length): (index into the concatenation of the segments' source
    ranges, segment number of each element)."""
    total = int(lengths.sum())
    seg = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    starts_out = np.cumsum(lengths) - lengths
    within = np.arange(total, dtype=np.int64) - starts_out[seg]
    return offsets[seg] + within, seg


def convert_frame_section(frames: FrameSection, arch: Arch, *, path: str | None = None,
                          fast: bool = True) -> Conversion:
    """Translate every FDE of *frames* the way gas would, in FDE order.

    Each distinct program shape (its bytes with the advance amounts folded, see
    :func:`_fast_translate`) is translated once; FRE starts and the FRE sub-section are then
    computed for all FDEs at once with numpy.  ``fast=False`` runs every distinct program
    through the reference state machine instead (for cross-checking; same output).
    """
    data = frames.data
    big = arch.big_endian
    cies = frames.cies
    fde_cie = frames.fde_cie
    ins_start = frames.fde_ins_start
    ins_end = frames.fde_ins_end
    pc_range = frames.fde_pc_range
    offsets = frames.fde_offsets
    section = frames.name
    cie_class: dict[int, int] = {}  # CIE offset -> small id of its content class
    class_of_key: dict[tuple, int] = {}
    class_info: list[tuple] = []  # per class: (program, initial row, cie)
    templates: dict[tuple, _Template] = {}
    exact: dict[tuple, _Template] = {}
    tables = _Tables()
    signal_empty: dict[int, int] = {}
    kept: list[int] = []
    kept_tid: list[int] = []
    blobs: list[bytes] = []
    blob_cache: dict[tuple, bytes] = {}
    refusals: list[Refusal] = []
    canon = _CANON

    def reference(cid: int, s: int, e: int) -> Translation:
        prog, _init, cie = class_info[cid]
        fprog = decode_program(data, s, e, cie.code_align, cie.data_align,
                               address_size=cie.address_size, big_endian=big,
                               section=section, path=path)
        return translate_program(prog + fprog, arch, cie.ra_register)

    def new_class(cie_off: int) -> int:
        cie = cies[cie_off]
        cid = class_of_key.get(cie.key)
        if cid is None:
            cid = len(class_info)
            class_of_key[cie.key] = cid
            prog = decode_program(data, cie.instructions_start, cie.instructions_end,
                                  cie.code_align, cie.data_align,
                                  address_size=cie.address_size, big_endian=big,
                                  section=section, path=path)
            init = (_cie_initial_row(prog, arch, cie.ra_register)
                    if cie.ra_register == arch.ra else None)
            class_info.append((prog, init, cie))
        if not 0 < cie.code_align <= 0x10000:
            # Not something gas writes (1 on x86-64, 4 on AArch64); keeps the numpy start
            # arithmetic within int64.
            raise CFIFormatError(f"{section}: CIE code alignment factor {cie.code_align} "
                                 "not supported", offset=cie_off, path=path)
        cie_class[cie_off] = cid
        return cid

    # (class, canonical bytes, start width) -> (operand getter, operand values, template id,
    # blob): the common case costs a slice, a translate and one dict lookup per FDE.
    hot: dict[tuple, tuple] = {}
    kept_append, tid_append, blob_append = kept.append, kept_tid.append, blobs.append
    for i, cie_off, s, e, size in zip(range(len(offsets)), fde_cie, ins_start, ins_end,
                                      pc_range, strict=True):
        cid = cie_class.get(cie_off)
        if cid is None:
            cid = new_class(cie_off)
        body = data[s:e]
        asz = 1 if size < 0x100 else 2 if size < 0x10000 else 4
        hkey = (cid, body.translate(canon), asz) if fast else None
        ent = hot.get(hkey)
        if ent is not None and (ent[0] is None or ent[0](body) == ent[1]):
            kept_append(i)
            tid_append(ent[2])
            blob_append(ent[3])
            continue
        t = templates.get(hkey[:2]) if fast else _EXACT_ONLY
        if t is None:
            t = _Template()
            _prog, init, cie = class_info[cid]
            quick = None
            if init is not None:
                quick = _fast_translate(data, s, e, (init[1], init[0]), arch, cie.code_align,
                                        cie.data_align)
            if quick is None:
                t.exact = True
            else:
                rows, flex, rec = quick
                t.flex = flex
                oper = rec[5]
                if oper:
                    t.oper_get = itemgetter(*oper)
                    t.oper_vals = t.oper_get(body)
                t.id = tables.add(rows, flex, rec, arch)
            templates[hkey[:2]] = t
        shared = not t.exact and (t.oper_get is None or t.oper_get(body) == t.oper_vals)
        if not shared:
            key = (cid, body)
            t = exact.get(key)
            if t is None:
                t = _Template()
                t.exact = True
                _prog, init, cie = class_info[cid]
                quick = None
                if init is not None and fast:
                    quick = _fast_translate(data, s, e, (init[1], init[0]), arch,
                                            cie.code_align, cie.data_align)
                if quick is not None:
                    t.flex = quick[1]
                    t.id = tables.add(quick[0], quick[1], quick[2], arch)
                else:
                    tr = reference(cid, s, e)
                    if tr.reason is not None:
                        t.reason = tr.reason
                    else:
                        t.flex = tr.flex
                        t.id = tables.add(tr.rows, tr.flex, None, arch)
                exact[key] = t
        if t.reason is not None:
            refusals.append(Refusal(offsets[i], frames.fde_pc_begin[i], size, t.reason))
            if not class_info[cid][2].signal_frame:
                continue
            # gas still emits a signal frame's FDE, with no FREs.
            tid = signal_empty.get(0)
            if tid is None:
                tid = signal_empty[0] = tables.add((), False, None, arch)
        else:
            tid = t.id
        bkey = (tid, asz, cid)
        blob = blob_cache.get(bkey)
        if blob is None:
            cie = class_info[cid][2]
            info = _FRE_TYPE[asz] | (int(cie.pauth_b_key) << 5) | (int(cie.signal_frame) << 7)
            blob = blob_cache[bkey] = tables.blob(tid, asz, info, big)
        if shared and t.reason is None:
            hot[hkey] = (t.oper_get, t.oper_vals, tid, blob)
        kept_append(i)
        tid_append(tid)
        blob_append(blob)
    return _assemble(frames, arch, kept, kept_tid, blobs, tables, refusals)


def _assemble(frames: FrameSection, arch: Arch, kept: list[int], kept_tid: list[int],
              blobs: list[bytes], tables: _Tables, refusals: list[Refusal]) -> Conversion:
    """FRE start offsets for all FDEs at once (numpy), patched into the joined blobs."""
    big = arch.big_endian
    n = len(kept)
    kept_a = np.array(kept, dtype=np.int64)
    tid = np.array(kept_tid, dtype=np.int64)
    pc_begin = np.array(frames.fde_pc_begin, dtype=np.uint64)[kept_a]
    size = np.array(frames.fde_pc_range, dtype=np.uint64)[kept_a]
    ins = np.array(frames.fde_ins_start, dtype=np.int64)[kept_a]
    caf_by_cie = {off: c.code_align for off, c in frames.cies.items()}
    if len(set(caf_by_cie.values())) <= 1:  # one code alignment factor (always, in practice)
        caf = np.full(n, next(iter(caf_by_cie.values()), 1), dtype=np.int64)
    else:
        fde_cie = frames.fde_cie
        caf = np.fromiter((caf_by_cie[fde_cie[i]] for i in kept), dtype=np.int64, count=n)

    d_pos = np.array(tables.d_pos, dtype=np.int64)
    d_mask = np.array(tables.d_mask, dtype=np.int64)
    d_mul = np.array(tables.d_mul, dtype=np.int64)
    d_op = np.array(tables.d_op, dtype=np.int64)
    t_doff = np.array(tables.d_off, dtype=np.int64)
    t_dlen = np.array(tables.d_len, dtype=np.int64)
    t_nadv = np.array(tables.n_adv, dtype=np.int64)
    f_nadv = np.array(tables.f_nadv, dtype=np.int64)
    f_const = np.array(tables.f_const, dtype=np.int64)
    f_bcum = np.array(tables.f_bcum, dtype=np.int64)
    t_foff = np.array(tables.f_off, dtype=np.int64)
    t_flen = np.array(tables.f_len, dtype=np.int64)
    section = np.frombuffer(frames.data, dtype=np.uint8)

    # Advance amounts: each FDE's delta bytes, summed per advance op, then prefix sums.
    src, seg = _ragged(t_dlen[tid], t_doff[tid])
    nops = t_nadv[tid]
    op_base = np.cumsum(nops) - nops
    vals = (section[ins[seg] + d_pos[src]].astype(np.int64) & d_mask[src]) * d_mul[src]
    flat = op_base[seg] + d_op[src]
    total_ops = int(nops.sum())
    if len(vals) and (d_mul[src] != 1).any():  # multi-byte advances: sum their bytes
        op_delta = np.bincount(flat, weights=vals, minlength=total_ops).astype(np.int64)
    else:  # one byte per advance op (the common case): a plain scatter
        op_delta = np.zeros(total_ops, dtype=np.int64)
        op_delta[flat] = vals
    cum = np.concatenate(([0], np.cumsum(op_delta)))  # cum[k] = sum of the first k ops

    # FREs: start = const + code_align * (advances before it).
    fsrc, fseg = _ragged(t_flen[tid], t_foff[tid])
    starts = f_const[fsrc] + caf[fseg] * (cum[op_base[fseg] + f_nadv[fsrc]] - cum[op_base[fseg]])
    nfre = t_flen[tid]

    # FREs past the end of their function: refuse those FDEs (not something gas can make).
    bad_fre = starts > size[fseg].astype(np.int64)
    too_big = size > np.uint64(0xFFFFFFFF)
    if bad_fre.any() or too_big.any():
        bad = np.zeros(n, dtype=bool)
        bad[fseg[bad_fre]] = True
        bad |= too_big
        for j in np.nonzero(bad)[0].tolist():
            i = kept[j]
            last = int(starts[fseg == j].max()) if nfre[j] else 0
            reason = (f"function size {frames.fde_pc_range[i]:#x} does not fit in 32 bits"
                      if too_big[j] else
                      f"CFA program advances past the end of the function (FRE at "
                      f"+{last:#x}, size {frames.fde_pc_range[i]:#x})")
            refusals.append(Refusal(frames.fde_offsets[i], frames.fde_pc_begin[i],
                                    frames.fde_pc_range[i], reason))
        refusals.sort(key=lambda r: r.fde_offset)
        keep = np.nonzero(~bad)[0].tolist()
        return _assemble(frames, arch, [kept[j] for j in keep], [kept_tid[j] for j in keep],
                         [blobs[j] for j in keep], tables, refusals)

    block_len = np.fromiter(map(len, blobs), dtype=np.int64, count=n)
    block_off = np.cumsum(block_len) - block_len
    out = np.frombuffer(b"".join(blobs), dtype=np.uint8).copy()
    asz = np.where(size < 0x100, 1, np.where(size < 0x10000, 2, 4)).astype(np.int64)
    fre_asz = asz[fseg]
    k = fsrc - t_foff[tid][fseg]  # FRE index inside its function
    fre_pos = block_off[fseg] + 5 + k * fre_asz + f_bcum[fsrc]
    for b in range(4):
        m = fre_asz > b
        if not m.any():
            continue
        shift = 8 * ((fre_asz[m] - 1 - b) if big else b)
        out[fre_pos[m] + b] = (starts[m] >> shift) & 0xFF
    return Conversion(arch, pc_begin.view(np.int64), size.astype(np.uint32), out.tobytes(),
                      block_off, int(nfre.sum()), refusals, len(frames.fde_offsets),
                      [frames.fde_offsets[i] for i in kept])


def translate_fde(frames: FrameSection, index: int, arch: Arch) -> Translation:
    """gas's translation of one FDE (uncached; for tools and tests)."""
    cie = frames.cies[frames.fde_cie[index]]
    big = arch.big_endian
    prog = decode_program(frames.data, cie.instructions_start, cie.instructions_end,
                          cie.code_align, cie.data_align, address_size=cie.address_size,
                          big_endian=big, section=frames.name)
    prog += decode_program(frames.data, frames.fde_ins_start[index], frames.fde_ins_end[index],
                           cie.code_align, cie.data_align, address_size=cie.address_size,
                           big_endian=big, section=frames.name)
    return translate_program(prog, arch, cie.ra_register)
