"""Writing a copy of an ELF file with an ``.sframe`` section added (or replaced).

The new section's bytes and a new section-header table (and, when the name is new, a new
``.shstrtab``) are appended to the end of the file; nothing existing moves, so every
offset in the original stays valid.  The section is ``SHT_GNU_SFRAME``/``SHF_ALLOC`` at the
given address; no program header is added (a loader would not map it — tools that read
section headers, like ``objdump --sframe`` and sfunwind, see it).
"""

from __future__ import annotations

import struct
from pathlib import Path

from sfunwind.errors import ElfFormatError

SHT_GNU_SFRAME = 0x6FFFFFF4
SHF_ALLOC = 0x2
_SHDR = "IIQQQQIIQQ"


def add_section(src: str | Path, dst: str | Path, data: bytes, address: int, *,
                name: str = ".sframe", sh_type: int = SHT_GNU_SFRAME,
                flags: int = SHF_ALLOC, align: int = 8) -> None:
    """Write *dst*: *src* with section *name* holding *data* at *address*."""
    raw = bytearray(Path(src).read_bytes())
    path = str(src)
    if raw[:4] != b"\x7fELF" or raw[4] != 2:
        raise ElfFormatError("not a 64-bit ELF file", path=path)
    e = "<" if raw[5] == 1 else ">"
    shoff, = struct.unpack_from(e + "Q", raw, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", raw, 0x3A)
    if shentsize != 64 or shnum == 0 or shnum >= 0xFF00 or shstrndx >= shnum:
        raise ElfFormatError("section header table not usable (extended numbering?)",
                             path=path, offset=0x3A)
    if shoff + shnum * 64 > len(raw):
        raise ElfFormatError("section header table past the end of the file", path=path,
                             offset=0x28)
    headers = [list(struct.unpack_from(e + _SHDR, raw, shoff + 64 * i)) for i in range(shnum)]
    strtab_hdr = headers[shstrndx]
    strtab = bytes(raw[strtab_hdr[4]:strtab_hdr[4] + strtab_hdr[5]])

    def pad(to: int) -> None:
        while len(raw) % to:
            raw.append(0)

    existing = None
    for i, h in enumerate(headers):
        end = strtab.find(b"\0", h[0])
        if h[0] < len(strtab) and strtab[h[0]:end] == name.encode():
            existing = i
    pad(align)
    data_off = len(raw)
    raw += data
    if existing is not None:
        h = headers[existing]
        h[1], h[2], h[3], h[4], h[5], h[8] = sh_type, flags, address, data_off, len(data), align
    else:
        new_strtab_off = len(raw)
        name_off = len(strtab)
        raw += strtab + name.encode() + b"\0"
        strtab_hdr[4] = new_strtab_off
        strtab_hdr[5] = len(strtab) + len(name) + 1
        headers.append([name_off, sh_type, flags, address, data_off, len(data), 0, 0, align, 0])
    pad(8)
    new_shoff = len(raw)
    for h in headers:
        raw += struct.pack(e + _SHDR, *h)
    struct.pack_into(e + "Q", raw, 0x28, new_shoff)
    struct.pack_into(e + "H", raw, 0x3C, len(headers))
    Path(dst).write_bytes(bytes(raw))
