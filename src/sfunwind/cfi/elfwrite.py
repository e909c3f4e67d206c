"""Writing a copy of an ELF file with an ``.sframe`` section added (or replaced).

The new section's bytes and a new section-header table (and, when the name is new, a new
``.shstrtab``) are appended to the end of the file; nothing existing moves, so every
offset in the original stays valid.  The section is ``SHT_GNU_SFRAME``/``SHF_ALLOC``.

With ``segment=True`` (an executable or shared object, as ``ld`` would lay it out) the
section is also *loaded*: the program-header table moves to a new page at the end of the
file (as patchelf does; ``PT_PHDR`` follows it), and gains a read-only ``PT_LOAD`` above
every existing segment that maps the table and the section, and a ``PT_GNU_SFRAME`` that
points at the section — what runtime consumers (a stack tracer reading the process image)
look for.  The SFrame data must be encoded for the address :func:`sframe_segment_address`
returns.
"""

from __future__ import annotations

import struct
from pathlib import Path

from sfunwind.errors import ElfFormatError

SHT_GNU_SFRAME = 0x6FFFFFF4
SHF_ALLOC = 0x2
_SHDR = "IIQQQQIIQQ"
_PHDR = "IIQQQQQQ"
PT_LOAD, PT_PHDR, PT_GNU_SFRAME = 1, 6, 0x6474E554
PF_R = 4
ET_EXEC, ET_DYN = 2, 3


def _align(x: int, to: int) -> int:
    return (x + to - 1) // to * to


def _segment_layout(raw: bytes, path: str) -> tuple[int, int, int, int, list[list[int]]]:
    """(page, table offset, data offset, table address, program headers) for the loaded
    ``.sframe`` of :func:`add_section`."""
    if raw[:4] != b"\x7fELF" or raw[4] != 2:
        raise ElfFormatError("not a 64-bit ELF file", path=path)
    e = "<" if raw[5] == 1 else ">"
    e_type, = struct.unpack_from(e + "H", raw, 0x10)
    phoff, = struct.unpack_from(e + "Q", raw, 0x20)
    phentsize, phnum = struct.unpack_from(e + "HH", raw, 0x36)
    if e_type not in (ET_EXEC, ET_DYN) or phnum == 0:
        raise ElfFormatError("no program headers to add a segment to (not an executable or "
                             "shared object)", path=path, offset=0x10)
    if phentsize != 56 or phnum >= 0xFFFF or phoff + phnum * 56 > len(raw):
        raise ElfFormatError("program header table not usable", path=path, offset=0x20)
    phdrs = [list(struct.unpack_from(e + _PHDR, raw, phoff + 56 * i)) for i in range(phnum)]
    if any(p[0] == PT_GNU_SFRAME for p in phdrs):
        raise ElfFormatError("already has a PT_GNU_SFRAME segment", path=path, offset=phoff)
    loads = [p for p in phdrs if p[0] == PT_LOAD]
    if not loads:
        raise ElfFormatError("no PT_LOAD segment", path=path, offset=phoff)
    # the largest alignment of the existing loads (64 KiB pages on arm64 kernels' builds)
    page = max(4096, min(65536, max(p[7] for p in loads)))
    table_off = _align(len(raw), page)
    table_size = 56 * (phnum + 2)
    data_off = table_off + _align(table_size, 16)
    table_addr = _align(max(p[3] + p[6] for p in loads), page)
    return page, table_off, data_off, table_addr, phdrs


def elf_has_program_headers(src: str | Path) -> bool:
    """An executable or shared object (64-bit) with program headers."""
    head = Path(src).read_bytes()[:64]
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:
        return False
    e = "<" if head[5] == 1 else ">"
    e_type, = struct.unpack_from(e + "H", head, 0x10)
    phnum, = struct.unpack_from(e + "H", head, 0x38)
    return e_type in (ET_EXEC, ET_DYN) and phnum > 0


def sframe_segment_address(src: str | Path) -> int:
    """Where ``add_section(..., segment=True)`` will load the section of *src*."""
    raw = Path(src).read_bytes()
    _page, table_off, data_off, table_addr, _ = _segment_layout(raw, str(src))
    return table_addr + (data_off - table_off)


def add_section(src: str | Path, dst: str | Path, data: bytes, address: int, *,
                name: str = ".sframe", sh_type: int = SHT_GNU_SFRAME,
                flags: int = SHF_ALLOC, align: int = 8, segment: bool = False) -> None:
    """Write *dst*: *src* with section *name* holding *data* at *address* (with *segment*:
    loaded by a new ``PT_LOAD`` and found through ``PT_GNU_SFRAME``; *address* must be
    :func:`sframe_segment_address`)."""
    raw = bytearray(Path(src).read_bytes())
    path = str(src)
    layout = _segment_layout(bytes(raw), path) if segment else None
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
    if layout is not None:
        page, table_off, data_off, table_addr, phdrs = layout
        if address != table_addr + (data_off - table_off):
            raise ElfFormatError(f"the loaded section must be encoded for "
                                 f"{table_addr + data_off - table_off:#x}, not {address:#x}",
                                 path=path)
        table_size = 56 * (len(phdrs) + 2)
        load = [PT_LOAD, PF_R, table_off, table_addr, table_addr,
                data_off - table_off + len(data), data_off - table_off + len(data), page]
        sframe = [PT_GNU_SFRAME, PF_R, data_off, address, address, len(data), len(data), 8]
        for p in phdrs:
            if p[0] == PT_PHDR:  # the table's own entry follows it
                p[2], p[3], p[4], p[5], p[6] = (table_off, table_addr, table_addr,
                                                table_size, table_size)
        last_load = max(i for i, p in enumerate(phdrs) if p[0] == PT_LOAD)
        phdrs = [*phdrs[:last_load + 1], load, *phdrs[last_load + 1:], sframe]
        pad(page)
        for p in phdrs:
            raw += struct.pack(e + _PHDR, *p)
        raw += bytes(data_off - len(raw))
        struct.pack_into(e + "Q", raw, 0x20, table_off)
        struct.pack_into(e + "H", raw, 0x38, len(phdrs))
    else:
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
