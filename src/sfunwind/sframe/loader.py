"""Find an SFrame section: in an ELF file (section or PT_GNU_SFRAME) or a raw dump."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sfunwind.elf import PT_GNU_SFRAME, ElfFile, is_elf
from sfunwind.errors import SFrameFormatError
from sfunwind.sframe.decode import decode, decode_header, section_size_from_header
from sfunwind.sframe.format import PREAMBLE_HEADER_SIZE, SFrameSection


@dataclass(frozen=True, slots=True)
class SectionBytes:
    """An SFrame section's bytes as found in a file."""

    data: bytes  # relocated in a .o (see load())
    address: int  # section address (sh_addr / p_vaddr / the caller's)
    file_offset: int  # where the section starts in the file (0 for a raw dump)
    path: str
    relocatable: bool = False
    #: The bytes as stored, before relocation (a .o with .rela.sframe), else None.
    unrelocated: bytes | None = None


def find_section(path: str | os.PathLike[str], *, section: str = ".sframe",
                 section_address: int | None = None, relocate: bool = True) -> SectionBytes:
    """Locate the SFrame bytes of ``path`` without decoding them (see :func:`load`)."""
    p = str(path)
    if not is_elf(p):
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise SFrameFormatError(f"cannot read: {exc.strerror}", path=p) from None
        return SectionBytes(data, section_address or 0, 0, p)
    with ElfFile.open(p) as elf:
        sec = elf.section(section)
        if sec is not None:
            if sec.size == 0 or sec.is_nobits:
                raise SFrameFormatError(
                    f"section {section} is empty (size 0; e.g. linked with --discard-sframe)",
                    offset=sec.offset, path=p)
            raw = sec.data()
            addr = sec.address if section_address is None else section_address
            if elf.is_relocatable and relocate and elf.relocations_for(section):
                # Relocated as a linker would (S + A - P for the PC-relative types gas
                # uses, also in V1/V2 whose start field is section-relative: objdump 2.47
                # shows exactly that), every section at address 0.
                return SectionBytes(elf.apply_relocations(section, raw), addr, sec.offset, p,
                                    relocatable=True, unrelocated=raw)
            return SectionBytes(raw, addr, sec.offset, p, relocatable=elf.is_relocatable)
        seg = elf.segment(PT_GNU_SFRAME)
        if seg is None:
            raise SFrameFormatError(f"no {section} section and no PT_GNU_SFRAME segment",
                                    path=p)
        if seg.filesz < PREAMBLE_HEADER_SIZE:
            raise SFrameFormatError(f"PT_GNU_SFRAME segment too small ({seg.filesz} bytes)",
                                    offset=seg.offset, path=p)
        head = elf.read_file(seg.offset, PREAMBLE_HEADER_SIZE, what="PT_GNU_SFRAME")
        try:
            header = decode_header(head + b"\0" * 0x100, path=p)
        except SFrameFormatError as exc:
            raise _shift(exc, seg.offset, p) from None
        # Trust the SFrame header's own size over p_filesz/p_memsz (binutils 2.47 makes
        # the segment larger than the section on x86-64 PIEs).
        size = section_size_from_header(header)
        avail = min(seg.filesz, elf.file_size - seg.offset)
        if size > avail:
            raise SFrameFormatError(f"SFrame header says {size:#x} bytes, PT_GNU_SFRAME holds "
                                    f"{avail:#x}", offset=seg.offset, path=p)
        data = elf.read_file(seg.offset, size, what="PT_GNU_SFRAME")
        addr = seg.vaddr if section_address is None else section_address
        return SectionBytes(data, addr, seg.offset, p)


def load(path: str | os.PathLike[str], *, section: str = ".sframe",
         section_address: int | None = None, relocate: bool = True) -> SFrameSection:
    """The SFrame section of ``path``.

    * ELF with a section header named ``section``: that section (``sh_addr`` is the section
      address).  In a relocatable ``.o`` the ``.rela.sframe`` relocations are applied first
      (``relocate``), sections taken at address 0, as objdump does — function starts then
      read as offsets into their own text section.
    * ELF without it (stripped section headers): the ``PT_GNU_SFRAME`` segment; the size
      comes from the SFrame header, not ``p_filesz``/``p_memsz`` (binutils 2.47 makes the
      segment larger than the section on x86-64 PIEs).
    * Anything else is a raw section dump; ``section_address`` says where it was loaded.

    A size-0 section (``ld --discard-sframe``) raises SFrameFormatError saying so.  Errors
    inside the section name the file offset (and the section offset).
    """
    found = find_section(path, section=section, section_address=section_address,
                         relocate=relocate)
    try:
        result = decode(found.data, section_address=found.address, path=found.path)
        if found.unrelocated is not None:
            # Keep the stored (unrelocated) start fields: objdump 2.40-2.44 print them.
            unrelocated = decode(found.unrelocated, section_address=found.address,
                                 path=found.path)
            for fde, orig in zip(result.fdes, unrelocated.fdes, strict=True):
                fde.unrelocated_start = orig.raw_start
    except SFrameFormatError as exc:
        if found.file_offset == 0:
            raise
        raise _shift(exc, found.file_offset, found.path) from None
    result.relocatable = found.relocatable
    return result


def _shift(exc: SFrameFormatError, base: int, path: str) -> SFrameFormatError:
    """The error with its section offset turned into a file offset (message says both)."""
    if exc.offset is None:
        return SFrameFormatError(exc.reason, path=path)
    return SFrameFormatError(f"{exc.reason} (section offset {exc.offset:#x})",
                             offset=base + exc.offset, path=path)
