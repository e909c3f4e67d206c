"""SFrame format: decode, encode, dump, validate, lookup (V1, V2, V3; all ABIs).

Public API::

    section = load("vmlinux")                  # or decode(data, section_address=...)
    print(dump_text(section))                  # objdump --sframe text (binutils 2.47)
    problems = validate(section)               # [Problem(offset, code, message)]
    table = SFrameTable(section)               # or .from_bytes(data, ...) / .from_file(path)
    row = table.find(pc)                       # sfunwind.rules.UnwindRow | None
    res = table.find_many(np.array(pcs))       # vectorised
    data = encode(section)                     # byte-identical for gas/ld output

New sections: ``SFrameSection.build(abi, [SFrameFDE(start, size, fres=[SFrameFRE(...)])])``
then ``encode``; the encoder picks FRE start widths and data-word sizes as gas does.
"""

from sfunwind.errors import SFrameFormatError
from sfunwind.sframe.decode import decode, decode_header, section_size_from_header
from sfunwind.sframe.dump import dump_json, dump_text, fre_cells
from sfunwind.sframe.encode import EncodeError, encode
from sfunwind.sframe.format import (
    ABI,
    MAX_DATA_WORDS,
    BaseReg,
    FDEKind,
    FDEType,
    Flag,
    SFrameFDE,
    SFrameFRE,
    SFrameHeader,
    SFrameSection,
    flex_control,
    flex_control_fields,
)
from sfunwind.sframe.loader import SectionBytes, find_section, load
from sfunwind.sframe.lookup import FindManyResult, SFrameTable
from sfunwind.sframe.validate import Problem, validate

__all__ = [
    "ABI", "MAX_DATA_WORDS", "BaseReg", "EncodeError", "FDEKind", "FDEType", "FindManyResult",
    "Flag", "Problem", "SFrameFDE", "SFrameFRE", "SFrameFormatError", "SFrameHeader",
    "SFrameSection", "SFrameTable", "SectionBytes", "decode", "decode_header", "dump_json", "dump_text",
    "encode", "find_section", "flex_control", "flex_control_fields", "fre_cells", "load",
    "section_size_from_header", "validate",
]
