"""ELF: sections, segments, symbols, notes, build IDs, relocations — over pyelftools.

A thin, typed layer so the rest of sfunwind never sees pyelftools' exceptions or its
ad-hoc containers.  Every malformed or truncated input raises
:class:`~sfunwind.errors.ElfFormatError` naming the file and, where known, the offset.

pyelftools does the parsing (headers, section/segment tables, symbol tables, notes,
relocation entries); this module only adds what it lacks: the GNU SFrame section/segment
type numbers, file-offset-checked reads, a virtual-address reader over PT_LOAD segments, and
relocation *application* for the few PC-relative/absolute types SFrame and CFI need.

    >>> with ElfFile.open("/bin/true") as elf:        # doctest: +SKIP
    ...     sec = elf.section(".sframe")
    ...     print(elf.machine, hex(sec.address), len(sec.data()))
"""

from __future__ import annotations

import io
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from elftools.common.exceptions import ELFError, ELFParseError, ELFRelocationError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import NoteSection, SymbolTableSection

from sfunwind.errors import ElfFormatError

#: GNU SFrame numbers (binutils 2.45+); pyelftools 0.33 does not know them.
SHT_GNU_SFRAME = 0x6FFFFFF4
PT_GNU_SFRAME = 0x6474E554
PT_GNU_EH_FRAME = 0x6474E550
PT_LOAD = 1
SHT_NOBITS = 8
ET_REL = 1
ET_EXEC = 2
ET_DYN = 3
ET_CORE = 4

_PARSE_ERRORS = (ELFError, ELFParseError, ELFRelocationError, struct.error, ValueError,
                 KeyError, IndexError, TypeError, AssertionError, OverflowError, EOFError)

#: Relocation types that the SFrame/CFI readers apply: type -> (size, pc_relative).
RELOC_TYPES: dict[str, dict[int, tuple[int, bool]]] = {
    "EM_X86_64": {1: (8, False), 2: (4, True), 10: (4, False), 11: (4, False), 24: (8, True)},
    "EM_AARCH64": {257: (8, False), 258: (4, False), 260: (8, True), 261: (4, True)},
    "EM_S390": {4: (4, False), 5: (4, True), 22: (8, False), 23: (8, True)},
}


@dataclass(frozen=True, slots=True)
class Section:
    """One section header (``data()`` reads its bytes on demand)."""

    index: int
    name: str
    type: int
    flags: int
    address: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int
    _elf: ElfFile

    @property
    def is_nobits(self) -> bool:
        return self.type == SHT_NOBITS

    def data(self) -> bytes:
        if self.is_nobits or self.size == 0:
            return b""
        return self._elf.read_file(self.offset, self.size, what=f"section {self.name}")


@dataclass(frozen=True, slots=True)
class Segment:
    index: int
    type: int
    flags: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int
    align: int


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    value: int
    size: int
    type: str  # STT_FUNC, STT_OBJECT, STT_SECTION, ...
    bind: str  # STB_LOCAL, STB_GLOBAL, STB_WEAK
    section_index: int | str  # a section number or SHN_UNDEF/SHN_ABS/...


@dataclass(frozen=True, slots=True)
class Note:
    name: str
    type: int | str
    desc: bytes


@dataclass(frozen=True, slots=True)
class Relocation:
    offset: int
    type: int
    symbol_index: int
    addend: int | None  # None for SHT_REL (implicit addend in place)
    symbol: Symbol | None


class ElfFile:
    """An ELF file opened for reading (use as a context manager, or call :meth:`close`)."""

    def __init__(self, stream: BinaryIO, *, path: str | None = None) -> None:
        self.path = path
        self._stream = stream
        try:
            stream.seek(0, os.SEEK_END)
            self.file_size = stream.tell()
            stream.seek(0)
            magic = stream.read(4)
        except OSError as exc:
            raise ElfFormatError(f"cannot read: {exc}", path=path) from None
        if magic != b"\x7fELF":
            raise ElfFormatError("not an ELF file (bad magic)", offset=0, path=path)
        try:
            self.elf = ELFFile(stream)
            self._sections = [self._section(i, s) for i, s in enumerate(self.elf.iter_sections())]
        except _PARSE_ERRORS as exc:
            raise ElfFormatError(f"corrupt or truncated ELF: {exc}", path=path) from None
        self._by_name: dict[str, Section] = {}
        for s in self._sections:
            self._by_name.setdefault(s.name, s)
        self._symbols: list[Symbol] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> ElfFile:
        p = str(path)
        try:
            f = open(p, "rb")  # noqa: SIM115 - kept open for the object's lifetime
        except OSError as exc:
            raise ElfFormatError(f"cannot open: {exc.strerror}", path=p) from None
        try:
            size = os.fstat(f.fileno()).st_size
            stream: BinaryIO = f
            if size:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                stream = _MmapStream(mm, f)
            return cls(stream, path=p)
        except BaseException:
            f.close()
            raise

    @classmethod
    def from_bytes(cls, data: bytes, *, path: str | None = None) -> ElfFile:
        return cls(io.BytesIO(data), path=path)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> ElfFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------
    @property
    def machine(self) -> str:
        return str(self.elf["e_machine"])

    @property
    def elf_type(self) -> int:
        t = self.elf["e_type"]
        return {"ET_REL": ET_REL, "ET_EXEC": ET_EXEC, "ET_DYN": ET_DYN,
                "ET_CORE": ET_CORE}.get(t, t if isinstance(t, int) else 0)

    @property
    def is_relocatable(self) -> bool:
        return self.elf_type == ET_REL

    @property
    def little_endian(self) -> bool:
        return bool(self.elf.little_endian)

    @property
    def elfclass(self) -> int:
        return int(self.elf.elfclass)

    @property
    def entry(self) -> int:
        return int(self.elf["e_entry"])

    def read_file(self, offset: int, size: int, *, what: str = "data") -> bytes:
        """``size`` bytes at file ``offset`` (ElfFormatError when the file is shorter)."""
        if offset < 0 or size < 0 or offset + size > self.file_size:
            raise ElfFormatError(f"{what} [{offset:#x}, {offset + size:#x}) lies beyond the end "
                                 f"of the file ({self.file_size:#x} bytes)", offset=offset,
                                 path=self.path)
        self._stream.seek(offset)
        return self._stream.read(size)

    # ---------------------------------------------------------------------------------
    def _section(self, index: int, s: Any) -> Section:
        h = s.header
        stype = h["sh_type"]
        if isinstance(stype, str):
            from elftools.elf.enums import ENUM_SH_TYPE_BASE
            stype = ENUM_SH_TYPE_BASE.get(stype, 0)
        return Section(index=index, name=s.name, type=int(stype), flags=int(h["sh_flags"]),
                       address=int(h["sh_addr"]), offset=int(h["sh_offset"]),
                       size=int(h["sh_size"]), link=int(h["sh_link"]), info=int(h["sh_info"]),
                       entsize=int(h["sh_entsize"]), _elf=self)

    def sections(self) -> list[Section]:
        return list(self._sections)

    def section(self, name: str) -> Section | None:
        return self._by_name.get(name)

    def section_by_index(self, index: int) -> Section | None:
        return self._sections[index] if 0 <= index < len(self._sections) else None

    def segments(self) -> list[Segment]:
        out = []
        try:
            for i, seg in enumerate(self.elf.iter_segments()):
                h = seg.header
                ptype = h["p_type"]
                if isinstance(ptype, str):
                    from elftools.elf.enums import ENUM_P_TYPE_BASE
                    ptype = ENUM_P_TYPE_BASE.get(ptype, 0)
                out.append(Segment(i, int(ptype), int(h["p_flags"]), int(h["p_offset"]),
                                   int(h["p_vaddr"]), int(h["p_paddr"]), int(h["p_filesz"]),
                                   int(h["p_memsz"]), int(h["p_align"])))
        except _PARSE_ERRORS as exc:
            raise ElfFormatError(f"corrupt program headers: {exc}", path=self.path) from None
        return out

    def segment(self, p_type: int) -> Segment | None:
        for s in self.segments():
            if s.type == p_type:
                return s
        return None

    def read_vaddr(self, address: int, size: int) -> bytes:
        """Bytes at a virtual address, from the file-backed part of a PT_LOAD segment."""
        for s in self.segments():
            if s.type == PT_LOAD and s.vaddr <= address and address + size <= s.vaddr + s.filesz:
                return self.read_file(s.offset + address - s.vaddr, size, what="segment data")
        raise ElfFormatError(f"address {address:#x} (+{size:#x}) is not file-backed by a "
                             f"PT_LOAD segment", path=self.path)

    # ---------------------------------------------------------------------------------
    def symbols(self) -> list[Symbol]:
        """``.symtab`` symbols, else ``.dynsym`` (index order; index 0 included)."""
        if self._symbols is None:
            self._symbols = self._read_symbols(".symtab") or self._read_symbols(".dynsym")
        return self._symbols

    def _read_symbols(self, name: str) -> list[Symbol]:
        try:
            sec = self.elf.get_section_by_name(name)
            if not isinstance(sec, SymbolTableSection):
                return []
            return [_symbol(s) for s in sec.iter_symbols()]
        except _PARSE_ERRORS as exc:
            raise ElfFormatError(f"corrupt symbol table {name}: {exc}", path=self.path) from None

    def symbol(self, name: str) -> Symbol | None:
        for s in self.symbols():
            if s.name == name:
                return s
        return None

    def notes(self) -> Iterator[Note]:
        try:
            for sec in self.elf.iter_sections():
                if isinstance(sec, NoteSection):
                    for n in sec.iter_notes():
                        desc = n["n_desc"]
                        if isinstance(desc, str):  # pyelftools decodes known notes to hex text
                            desc = bytes.fromhex(desc)
                        elif not isinstance(desc, bytes | bytearray):
                            desc = b""
                        yield Note(n["n_name"], n["n_type"], bytes(desc))
        except _PARSE_ERRORS as exc:
            raise ElfFormatError(f"corrupt note: {exc}", path=self.path) from None

    def build_id(self) -> bytes | None:
        """The GNU build ID (NT_GNU_BUILD_ID) or None."""
        for n in self.notes():
            if n.name == "GNU" and n.type in ("NT_GNU_BUILD_ID", 3):
                return n.desc
        return None

    # ---------------------------------------------------------------------------------
    def relocations_for(self, section_name: str) -> list[Relocation]:
        """The relocations that apply to ``section_name`` (``.rela<name>`` / ``.rel<name>``)."""
        target = self.section(section_name)
        out: list[Relocation] = []
        try:
            syms_cache: dict[int, list[Symbol]] = {}
            for sec in self.elf.iter_sections():
                if not isinstance(sec, RelocationSection):
                    continue
                if target is not None and sec.header["sh_info"] != target.index and \
                        sec.name not in (".rela" + section_name, ".rel" + section_name):
                    continue
                if target is None and sec.name not in (".rela" + section_name,
                                                       ".rel" + section_name):
                    continue
                link = sec.header["sh_link"]
                if link not in syms_cache:
                    symsec = self.elf.get_section(link)
                    syms_cache[link] = ([_symbol(s) for s in symsec.iter_symbols()]
                                        if isinstance(symsec, SymbolTableSection) else [])
                syms = syms_cache[link]
                rela = sec.is_RELA()
                for r in sec.iter_relocations():
                    si = int(r["r_info_sym"])
                    out.append(Relocation(int(r["r_offset"]), int(r["r_info_type"]), si,
                                          int(r["r_addend"]) if rela else None,
                                          syms[si] if 0 <= si < len(syms) else None))
        except _PARSE_ERRORS as exc:
            raise ElfFormatError(f"corrupt relocations for {section_name}: {exc}",
                                 path=self.path) from None
        return out

    def apply_relocations(self, section_name: str, data: bytes | None = None, *,
                          section_base: int = 0, pc_relative: bool = True) -> bytes:
        """``section_name``'s bytes with its relocations applied (ET_REL files).

        Sections are taken at address 0 except the relocated one (``section_base``), as
        objdump does for relocatable files: a PC-relative field then holds
        ``symbol offset in its section + addend - field position``.  With
        ``pc_relative=False`` PC-relative types are resolved as ``S + A`` (for formats whose
        field is section-relative although the assembler used a PC-relative relocation, like
        SFrame V1/V2 without SFRAME_F_FDE_FUNC_START_PCREL).  Unknown relocation types raise
        ElfFormatError.
        """
        sec = self.section(section_name)
        if sec is None:
            raise ElfFormatError(f"no section {section_name}", path=self.path)
        buf = bytearray(sec.data() if data is None else data)
        kinds = RELOC_TYPES.get(self.machine, {})
        order = "little" if self.little_endian else "big"
        for r in self.relocations_for(section_name):
            kind = kinds.get(r.type)
            if kind is None:
                raise ElfFormatError(f"unsupported relocation type {r.type} ({self.machine}) "
                                     f"in {section_name} at {r.offset:#x}", offset=sec.offset + r.offset,
                                     path=self.path)
            size, pcrel = kind
            if r.offset < 0 or r.offset + size > len(buf):
                raise ElfFormatError(f"relocation at {r.offset:#x} outside {section_name}",
                                     offset=sec.offset, path=self.path)
            addend = r.addend
            if addend is None:
                addend = int.from_bytes(buf[r.offset:r.offset + size], order, signed=True)
            s_val = r.symbol.value if r.symbol is not None else 0
            value = s_val + addend - ((section_base + r.offset) if pcrel and pc_relative else 0)
            value &= (1 << (8 * size)) - 1
            buf[r.offset:r.offset + size] = value.to_bytes(size, order)
        return bytes(buf)


def _symbol(s: Any) -> Symbol:
    e = s.entry
    info = e["st_info"]
    shndx = e["st_shndx"]
    return Symbol(s.name, int(e["st_value"]), int(e["st_size"]), str(info["type"]),
                  str(info["bind"]), shndx if isinstance(shndx, str) else int(shndx))


class _MmapStream(io.RawIOBase):
    """A seekable read-only stream over an mmap (pyelftools reads many small pieces)."""

    def __init__(self, mm: mmap.mmap, f: BinaryIO) -> None:
        self._mm = mm
        self._f = f
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = pos
        elif whence == 1:
            self._pos += pos
        else:
            self._pos = len(self._mm) + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = len(self._mm) - self._pos
        start = max(self._pos, 0)
        data = self._mm[start:start + size]
        self._pos = start + len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            self._mm.close()
            self._f.close()
        super().close()


def is_elf(path: str | os.PathLike[str]) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


__all__ = [
    "ET_REL",
    "PT_GNU_EH_FRAME",
    "PT_GNU_SFRAME",
    "PT_LOAD",
    "SHT_GNU_SFRAME",
    "ElfFile",
    "Note",
    "Relocation",
    "Section",
    "Segment",
    "Symbol",
    "is_elf",
]
