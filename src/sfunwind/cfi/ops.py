"""Decoding of DWARF call-frame instructions (``DW_CFA_*``) into normalised tuples.

Each instruction becomes ``(kind, a, b, opcode, start, end)``: *kind* one of the ``K_*``
constants below, operands already scaled (offsets in bytes, advances in bytes), *opcode* the
raw DW_CFA byte (for messages), ``[start, end)`` its bytes in the section (for consumers that
must look at the exact encoding, e.g. the gas ``.cfi_escape`` rules).

Tuples rather than objects: a vmlinux has ~1.5 million instructions; building one small
tuple per instruction is the cheapest representation CPython offers.
"""

from __future__ import annotations

import struct

from sfunwind.cfi.parser import read_sleb, read_uleb
from sfunwind.errors import CFIFormatError

# DW_CFA opcodes.
DW_CFA_advance_loc = 0x40
DW_CFA_offset = 0x80
DW_CFA_restore = 0xC0
DW_CFA_nop = 0x00
DW_CFA_set_loc = 0x01
DW_CFA_advance_loc1 = 0x02
DW_CFA_advance_loc2 = 0x03
DW_CFA_advance_loc4 = 0x04
DW_CFA_offset_extended = 0x05
DW_CFA_restore_extended = 0x06
DW_CFA_undefined = 0x07
DW_CFA_same_value = 0x08
DW_CFA_register = 0x09
DW_CFA_remember_state = 0x0A
DW_CFA_restore_state = 0x0B
DW_CFA_def_cfa = 0x0C
DW_CFA_def_cfa_register = 0x0D
DW_CFA_def_cfa_offset = 0x0E
DW_CFA_def_cfa_expression = 0x0F
DW_CFA_expression = 0x10
DW_CFA_offset_extended_sf = 0x11
DW_CFA_def_cfa_sf = 0x12
DW_CFA_def_cfa_offset_sf = 0x13
DW_CFA_val_offset = 0x14
DW_CFA_val_offset_sf = 0x15
DW_CFA_val_expression = 0x16
DW_CFA_MIPS_advance_loc8 = 0x1D
DW_CFA_GNU_window_save = 0x2D  # == DW_CFA_AARCH64_negate_ra_state
DW_CFA_AARCH64_negate_ra_state_with_pc = 0x2C
DW_CFA_GNU_args_size = 0x2E
DW_CFA_GNU_negative_offset_extended = 0x2F

# Normalised kinds.
K_ADVANCE = 0  # a = delta in bytes
K_SET_LOC = 1  # a = new location (absolute)
K_DEF_CFA = 2  # a = reg, b = offset
K_DEF_CFA_REGISTER = 3  # a = reg
K_DEF_CFA_OFFSET = 4  # a = offset
K_DEF_CFA_EXPRESSION = 5  # a = expression bytes
K_OFFSET = 6  # a = reg, b = offset from CFA (saved at CFA+b)
K_VAL_OFFSET = 7  # a = reg, b = offset (value = CFA+b)
K_RESTORE = 8  # a = reg
K_UNDEFINED = 9  # a = reg
K_SAME_VALUE = 10  # a = reg
K_REGISTER = 11  # a = reg, b = reg2
K_REMEMBER_STATE = 12
K_RESTORE_STATE = 13
K_EXPRESSION = 14  # a = reg, b = expression bytes
K_VAL_EXPRESSION = 15  # a = reg, b = expression bytes
K_NEGATE_RA_STATE = 16  # DW_CFA_GNU_window_save / DW_CFA_AARCH64_negate_ra_state
K_NEGATE_RA_STATE_WITH_PC = 17
K_ARGS_SIZE = 18  # a = size
K_NOP = 19

OPCODE_NAMES = {
    DW_CFA_nop: "DW_CFA_nop", DW_CFA_set_loc: "DW_CFA_set_loc",
    DW_CFA_advance_loc1: "DW_CFA_advance_loc1", DW_CFA_advance_loc2: "DW_CFA_advance_loc2",
    DW_CFA_advance_loc4: "DW_CFA_advance_loc4",
    DW_CFA_offset_extended: "DW_CFA_offset_extended",
    DW_CFA_restore_extended: "DW_CFA_restore_extended", DW_CFA_undefined: "DW_CFA_undefined",
    DW_CFA_same_value: "DW_CFA_same_value", DW_CFA_register: "DW_CFA_register",
    DW_CFA_remember_state: "DW_CFA_remember_state",
    DW_CFA_restore_state: "DW_CFA_restore_state", DW_CFA_def_cfa: "DW_CFA_def_cfa",
    DW_CFA_def_cfa_register: "DW_CFA_def_cfa_register",
    DW_CFA_def_cfa_offset: "DW_CFA_def_cfa_offset",
    DW_CFA_def_cfa_expression: "DW_CFA_def_cfa_expression",
    DW_CFA_expression: "DW_CFA_expression",
    DW_CFA_offset_extended_sf: "DW_CFA_offset_extended_sf",
    DW_CFA_def_cfa_sf: "DW_CFA_def_cfa_sf", DW_CFA_def_cfa_offset_sf: "DW_CFA_def_cfa_offset_sf",
    DW_CFA_val_offset: "DW_CFA_val_offset", DW_CFA_val_offset_sf: "DW_CFA_val_offset_sf",
    DW_CFA_val_expression: "DW_CFA_val_expression",
    DW_CFA_MIPS_advance_loc8: "DW_CFA_MIPS_advance_loc8",
    DW_CFA_GNU_window_save: "DW_CFA_AARCH64_negate_ra_state",
    DW_CFA_AARCH64_negate_ra_state_with_pc: "DW_CFA_AARCH64_negate_ra_state_with_pc",
    DW_CFA_GNU_args_size: "DW_CFA_GNU_args_size",
    DW_CFA_GNU_negative_offset_extended: "DW_CFA_GNU_negative_offset_extended",
    DW_CFA_advance_loc: "DW_CFA_advance_loc", DW_CFA_offset: "DW_CFA_offset",
    DW_CFA_restore: "DW_CFA_restore",
}


def opcode_name(op: int) -> str:
    if op >= 0x40:
        op &= 0xC0
    return OPCODE_NAMES.get(op, f"DW_CFA_{op:#x}")


Op = tuple  # (kind, a, b, opcode, start, end)


def decode_program(data: bytes, start: int, end: int, code_align: int, data_align: int,
                   *, address_size: int = 8, big_endian: bool = False,
                   section: str = ".debug_frame", path: str | None = None) -> list[Op]:
    """Decode the instructions in ``data[start:end]``; raises CFIFormatError when corrupt."""
    ops: list[Op] = []
    append = ops.append
    pos = start
    fmt = ">" if big_endian else "<"
    try:
        while pos < end:
            op_start = pos
            op = data[pos]
            pos += 1
            hi = op & 0xC0
            if hi == DW_CFA_advance_loc:
                append((K_ADVANCE, (op & 0x3F) * code_align, 0, op, op_start, pos))
                continue
            if hi == DW_CFA_offset:
                v, pos = read_uleb(data, pos, end)
                append((K_OFFSET, op & 0x3F, v * data_align, op, op_start, pos))
                continue
            if hi == DW_CFA_restore:
                append((K_RESTORE, op & 0x3F, 0, op, op_start, pos))
                continue
            if op == DW_CFA_def_cfa_offset:
                v, pos = read_uleb(data, pos, end)
                append((K_DEF_CFA_OFFSET, v, 0, op, op_start, pos))
            elif op == DW_CFA_nop:
                append((K_NOP, 0, 0, op, op_start, pos))
            elif op == DW_CFA_remember_state:
                append((K_REMEMBER_STATE, 0, 0, op, op_start, pos))
            elif op == DW_CFA_restore_state:
                append((K_RESTORE_STATE, 0, 0, op, op_start, pos))
            elif op == DW_CFA_GNU_window_save:
                append((K_NEGATE_RA_STATE, 0, 0, op, op_start, pos))
            elif op == DW_CFA_advance_loc1:
                if pos + 1 > end:
                    raise IndexError(pos)
                append((K_ADVANCE, data[pos] * code_align, 0, op, op_start, pos + 1))
                pos += 1
            elif op == DW_CFA_advance_loc2:
                if pos + 2 > end:
                    raise IndexError(pos)
                (v,) = struct.unpack_from(fmt + "H", data, pos)
                pos += 2
                append((K_ADVANCE, v * code_align, 0, op, op_start, pos))
            elif op == DW_CFA_advance_loc4:
                if pos + 4 > end:
                    raise IndexError(pos)
                (v,) = struct.unpack_from(fmt + "I", data, pos)
                pos += 4
                append((K_ADVANCE, v * code_align, 0, op, op_start, pos))
            elif op == DW_CFA_MIPS_advance_loc8:
                if pos + 8 > end:
                    raise IndexError(pos)
                (v,) = struct.unpack_from(fmt + "Q", data, pos)
                pos += 8
                append((K_ADVANCE, v * code_align, 0, op, op_start, pos))
            elif op == DW_CFA_def_cfa:
                r, pos = read_uleb(data, pos, end)
                v, pos = read_uleb(data, pos, end)
                append((K_DEF_CFA, r, v, op, op_start, pos))
            elif op == DW_CFA_def_cfa_sf:
                r, pos = read_uleb(data, pos, end)
                v, pos = read_sleb(data, pos, end)
                append((K_DEF_CFA, r, v * data_align, op, op_start, pos))
            elif op == DW_CFA_def_cfa_register:
                r, pos = read_uleb(data, pos, end)
                append((K_DEF_CFA_REGISTER, r, 0, op, op_start, pos))
            elif op == DW_CFA_def_cfa_offset_sf:
                v, pos = read_sleb(data, pos, end)
                append((K_DEF_CFA_OFFSET, v * data_align, 0, op, op_start, pos))
            elif op == DW_CFA_offset_extended:
                r, pos = read_uleb(data, pos, end)
                v, pos = read_uleb(data, pos, end)
                append((K_OFFSET, r, v * data_align, op, op_start, pos))
            elif op == DW_CFA_offset_extended_sf:
                r, pos = read_uleb(data, pos, end)
                v, pos = read_sleb(data, pos, end)
                append((K_OFFSET, r, v * data_align, op, op_start, pos))
            elif op == DW_CFA_GNU_negative_offset_extended:
                r, pos = read_uleb(data, pos, end)
                v, pos = read_uleb(data, pos, end)
                append((K_OFFSET, r, -v * data_align, op, op_start, pos))
            elif op == DW_CFA_val_offset:
                r, pos = read_uleb(data, pos, end)
                v, pos = read_uleb(data, pos, end)
                append((K_VAL_OFFSET, r, v * data_align, op, op_start, pos))
            elif op == DW_CFA_val_offset_sf:
                r, pos = read_uleb(data, pos, end)
                v, pos = read_sleb(data, pos, end)
                append((K_VAL_OFFSET, r, v * data_align, op, op_start, pos))
            elif op == DW_CFA_restore_extended:
                r, pos = read_uleb(data, pos, end)
                append((K_RESTORE, r, 0, op, op_start, pos))
            elif op == DW_CFA_undefined:
                r, pos = read_uleb(data, pos, end)
                append((K_UNDEFINED, r, 0, op, op_start, pos))
            elif op == DW_CFA_same_value:
                r, pos = read_uleb(data, pos, end)
                append((K_SAME_VALUE, r, 0, op, op_start, pos))
            elif op == DW_CFA_register:
                r, pos = read_uleb(data, pos, end)
                r2, pos = read_uleb(data, pos, end)
                append((K_REGISTER, r, r2, op, op_start, pos))
            elif op == DW_CFA_def_cfa_expression:
                n, pos = read_uleb(data, pos, end)
                if pos + n > end:
                    raise IndexError(pos)
                append((K_DEF_CFA_EXPRESSION, bytes(data[pos:pos + n]), 0, op, op_start,
                        pos + n))
                pos += n
            elif op in (DW_CFA_expression, DW_CFA_val_expression):
                r, pos = read_uleb(data, pos, end)
                n, pos = read_uleb(data, pos, end)
                if pos + n > end:
                    raise IndexError(pos)
                kind = K_EXPRESSION if op == DW_CFA_expression else K_VAL_EXPRESSION
                append((kind, r, bytes(data[pos:pos + n]), op, op_start, pos + n))
                pos += n
            elif op == DW_CFA_set_loc:
                if pos + address_size > end:
                    raise IndexError(pos)
                code = "Q" if address_size == 8 else "I"
                (v,) = struct.unpack_from(fmt + code, data, pos)
                pos += address_size
                append((K_SET_LOC, v, 0, op, op_start, pos))
            elif op == DW_CFA_GNU_args_size:
                v, pos = read_uleb(data, pos, end)
                append((K_ARGS_SIZE, v, 0, op, op_start, pos))
            elif op == DW_CFA_AARCH64_negate_ra_state_with_pc:
                append((K_NEGATE_RA_STATE_WITH_PC, 0, 0, op, op_start, pos))
            else:
                raise CFIFormatError(f"{section}: unknown call frame instruction {op:#04x}",
                                     offset=op_start, path=path)
    except (IndexError, ValueError, struct.error) as exc:
        if isinstance(exc, CFIFormatError):
            raise
        raise CFIFormatError(f"{section}: call frame instruction runs past the end of its "
                             "record", offset=pos, path=path) from None
    return ops
