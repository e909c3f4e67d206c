"""Finding CFI (and an existing ``.sframe``) in ELF files, including relocatable objects.

Executables and shared objects are read as they are.  For a relocatable object (``.o``) we
lay the allocated sections out one after another (as a linker with no other input would),
apply the RELA relocations of ``.eh_frame``, ``.debug_frame`` and ``.sframe`` against that
layout, and then read all three like linked sections — so the gas ``.sframe`` of a ``.o``
and our conversion of its ``.eh_frame`` can be compared byte for byte.

pyelftools is used for the ELF structure (headers, symbols, relocations): those are small.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from sfunwind.cfi.arch import EM_AARCH64, EM_X86_64, Arch, arch_for_elf
from sfunwind.cfi.parser import FrameSection, parse_eh_frame_hdr, parse_frame_section
from sfunwind.errors import CFIFormatError, ElfFormatError, UsageError

#: Start of the synthetic layout of a ``.o`` (non-zero so PC-relative values are visible).
OBJECT_LAYOUT_BASE = 0x10000

# (machine, type) -> (size, pc-relative)
_RELOCS = {
    (EM_X86_64, 1): (8, False),  # R_X86_64_64
    (EM_X86_64, 2): (4, True),  # R_X86_64_PC32
    (EM_X86_64, 10): (4, False),  # R_X86_64_32
    (EM_X86_64, 11): (4, False),  # R_X86_64_32S
    (EM_X86_64, 24): (8, True),  # R_X86_64_PC64
    (EM_AARCH64, 257): (8, False),  # R_AARCH64_ABS64
    (EM_AARCH64, 258): (4, False),  # R_AARCH64_ABS32
    (EM_AARCH64, 260): (8, True),  # R_AARCH64_PREL64
    (EM_AARCH64, 261): (4, True),  # R_AARCH64_PREL32
}


@dataclass(slots=True)
class SectionInfo:
    name: str
    index: int
    address: int
    size: int
    alloc: bool
    executable: bool


@dataclass(slots=True)
class ElfCFI:
    """What sfunwind needs from one ELF file to convert or check its CFI."""

    path: str
    arch: Arch
    relocatable: bool
    build_id: str | None
    sections: list[SectionInfo]
    raw: dict[str, bytes] = field(default_factory=dict)  # relocated section contents
    addresses: dict[str, int] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.raw

    def frames(self, which: str | None = None) -> FrameSection:
        """Parse ``.eh_frame`` or ``.debug_frame`` (default: ``.eh_frame`` if present)."""
        if which is None:
            which = ".eh_frame" if ".eh_frame" in self.raw else ".debug_frame"
        if which not in self.raw:
            raise CFIFormatError(f"no {which} section", path=self.path)
        hdr = self.raw.get(".eh_frame_hdr")
        datarel = self.addresses.get(".eh_frame_hdr") if hdr is not None else None
        got = self.addresses.get(".got")
        return parse_frame_section(
            self.raw[which], eh_frame=which == ".eh_frame", address=self.addresses[which],
            address_size=self.arch.address_size, big_endian=self.arch.big_endian,
            name=which, path=self.path, datarel_base=got if got is not None else datarel,
            read_memory=self.read_memory)

    def eh_frame_hdr(self):
        if ".eh_frame_hdr" not in self.raw:
            return None
        return parse_eh_frame_hdr(self.raw[".eh_frame_hdr"],
                                  address=self.addresses[".eh_frame_hdr"],
                                  address_size=self.arch.address_size,
                                  big_endian=self.arch.big_endian, path=self.path,
                                  read_memory=self.read_memory)

    def read_memory(self, address: int, size: int) -> bytes:
        """Bytes of loaded sections we hold (for indirect pointers)."""
        for name, data in self.raw.items():
            base = self.addresses.get(name, 0)
            if base and base <= address and address + size <= base + len(data):
                return data[address - base:address - base + size]
        raise CFIFormatError(f"indirect pointer to {address:#x}: not in a section read",
                             path=self.path)

    def text_end(self) -> int:
        """Just past the last allocated section (the default place for a new ``.sframe``)."""
        end = 0
        for s in self.sections:
            if s.alloc:
                end = max(end, s.address + s.size)
        return end

    def executable_bytes(self) -> int:
        return sum(s.size for s in self.sections if s.alloc and s.executable)


_WANTED = (".eh_frame", ".eh_frame_hdr", ".debug_frame", ".sframe", ".got")


def load_elf_cfi(path: str | Path) -> ElfCFI:
    """Read the CFI-related sections of *path* (relocated against a layout for ``.o``)."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            arch = arch_for_elf(elf["e_machine"] if isinstance(elf["e_machine"], int)
                                else _machine_number(elf["e_machine"]),
                                not elf.little_endian, elf.elfclass)
            relocatable = elf["e_type"] == "ET_REL"
            sections: list[SectionInfo] = []
            addresses: dict[int, int] = {}
            cursor = OBJECT_LAYOUT_BASE
            for i, sec in enumerate(elf.iter_sections()):
                alloc = bool(sec["sh_flags"] & SH_FLAGS.SHF_ALLOC)
                addr = sec["sh_addr"]
                if relocatable and alloc:
                    align = max(1, sec["sh_addralign"])
                    cursor = (cursor + align - 1) // align * align
                    addr = cursor
                    cursor += sec["sh_size"]
                addresses[i] = addr
                sections.append(SectionInfo(sec.name, i, addr, sec["sh_size"], alloc,
                                            bool(sec["sh_flags"] & SH_FLAGS.SHF_EXECINSTR)))
            out = ElfCFI(path, arch, relocatable, _build_id(elf), sections)
            for i, sec in enumerate(elf.iter_sections()):
                if sec.name in _WANTED and sec["sh_type"] != "SHT_NOBITS":
                    out.raw[sec.name] = _section_bytes(f, sec, arch, path)
                    out.addresses[sec.name] = addresses[i]
            if relocatable:
                _apply_relocations(elf, out, addresses, arch)
            elif ".eh_frame" not in out.raw:
                _eh_frame_from_segments(elf, out)
    except ELFError as exc:
        raise ElfFormatError(str(exc), path=path) from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    return out


def _eh_frame_from_segments(elf: ELFFile, out: ElfCFI) -> None:
    """Section headers stripped: find ``.eh_frame_hdr`` by ``PT_GNU_EH_FRAME`` and
    ``.eh_frame`` by the header's ``eh_frame_ptr``; the section runs to its zero terminator
    inside the ``PT_LOAD`` segment that holds it."""
    hdr_seg = next((seg for seg in elf.iter_segments() if seg["p_type"] == "PT_GNU_EH_FRAME"),
                   None)
    if hdr_seg is None:
        return
    hdr_data = bytes(hdr_seg.data())
    hdr = parse_eh_frame_hdr(hdr_data, address=hdr_seg["p_vaddr"],
                             address_size=out.arch.address_size,
                             big_endian=out.arch.big_endian, path=out.path)
    ptr = hdr.eh_frame_ptr
    if ptr is None:
        return
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= ptr < seg["p_vaddr"] + seg["p_filesz"]:
            data = bytes(seg.data())[ptr - seg["p_vaddr"]:]
            out.raw[".eh_frame_hdr"] = hdr_data
            out.addresses[".eh_frame_hdr"] = hdr_seg["p_vaddr"]
            out.raw[".eh_frame"] = data
            out.addresses[".eh_frame"] = ptr
            if not out.sections:
                out.sections = [SectionInfo(f"PT_LOAD[{i}]", i, sg["p_vaddr"], sg["p_memsz"],
                                            True, bool(sg["p_flags"] & 1))
                                for i, sg in enumerate(elf.iter_segments())
                                if sg["p_type"] == "PT_LOAD"]
            return
    raise CFIFormatError(f".eh_frame_hdr points at {ptr:#x}, outside every PT_LOAD segment",
                         path=out.path)


SHF_COMPRESSED = 0x800
ELFCOMPRESS_ZLIB = 1
ELFCOMPRESS_ZSTD = 2


#: A compressed section may claim at most this many bytes (the header is untrusted input).
MAX_DECOMPRESSED = 1 << 30


def _section_bytes(f, sec, arch: Arch, path: str) -> bytes:
    """A section's contents, decompressed when SHF_COMPRESSED (zlib or zstd, as
    ``objcopy --compress-debug-sections=zlib|zstd`` and ``ld --compress-debug-sections``
    write them) — pyelftools handles only zlib.  Output is bounded by the header's size."""
    if not sec["sh_flags"] & SHF_COMPRESSED:
        return bytes(sec.data())
    f.seek(sec["sh_offset"])
    raw = f.read(sec["sh_size"])
    e = ">" if arch.big_endian else "<"
    elf64 = arch.address_size == 8
    header = 24 if elf64 else 12
    if len(raw) < header:
        raise ElfFormatError(f"{sec.name}: compressed section shorter than its header",
                             path=path, offset=sec["sh_offset"])
    if elf64:
        ch_type, _reserved, ch_size = struct.unpack_from(e + "IIQ", raw, 0)
    else:
        ch_type, ch_size = struct.unpack_from(e + "II", raw, 0)
    payload = raw[header:]
    if ch_size > MAX_DECOMPRESSED:
        raise ElfFormatError(f"{sec.name}: claims {ch_size} bytes uncompressed (more than "
                             f"{MAX_DECOMPRESSED})", path=path, offset=sec["sh_offset"])
    try:
        if ch_type == ELFCOMPRESS_ZLIB:
            data = zlib.decompressobj().decompress(payload, ch_size + 1)
        elif ch_type == ELFCOMPRESS_ZSTD:
            data = _zstd_decompress(payload, ch_size + 1)
        else:
            raise ElfFormatError(f"{sec.name}: unknown compression type {ch_type}", path=path,
                                 offset=sec["sh_offset"])
    except (zlib.error, _CorruptStream) as exc:
        raise ElfFormatError(f"{sec.name}: corrupt compressed data ({exc})", path=path,
                             offset=sec["sh_offset"]) from None
    if len(data) != ch_size:
        more = "+" if len(data) > ch_size else ""
        raise ElfFormatError(f"{sec.name}: decompressed to {len(data)}{more} bytes, header "
                             f"says {ch_size}", path=path, offset=sec["sh_offset"])
    return data


class _CorruptStream(Exception):
    """A compressed stream the decompressor rejects."""


def _zstd_decompress(payload: bytes, limit: int) -> bytes:
    """At most *limit* bytes of a zstd stream (imported here: only compressed debug
    sections need it)."""
    import zstandard

    try:
        with zstandard.ZstdDecompressor().stream_reader(payload) as reader:
            return reader.read(limit)
    except zstandard.ZstdError as exc:
        raise _CorruptStream(str(exc)) from None


def _machine_number(name: str) -> int:
    return {"EM_X86_64": EM_X86_64, "EM_AARCH64": EM_AARCH64}.get(name, -1)


def _build_id(elf: ELFFile) -> str | None:
    for sec in elf.iter_sections():
        if sec["sh_type"] != "SHT_NOTE":
            continue
        for note in sec.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return note["n_desc"]
    return None


def _apply_relocations(elf: ELFFile, out: ElfCFI, addresses: dict[int, int],
                       arch: Arch) -> None:
    machine = EM_AARCH64 if arch.name.startswith("aarch64") else EM_X86_64
    fmt = ">" if arch.big_endian else "<"
    symtab = elf.get_section_by_name(".symtab")
    for sec in elf.iter_sections():
        if not isinstance(sec, RelocationSection):
            continue
        target = elf.get_section(sec["sh_info"])
        if target.name not in out.raw:
            continue
        if not sec.is_RELA():
            raise ElfFormatError(f"{sec.name}: REL relocations are not supported",
                                 path=out.path)
        buf = bytearray(out.raw[target.name])
        base = out.addresses[target.name]
        syms = elf.get_section(sec["sh_link"]) if sec["sh_link"] else symtab
        for rel in sec.iter_relocations():
            rtype = rel["r_info_type"]
            spec = _RELOCS.get((machine, rtype))
            offset = rel["r_offset"]
            if spec is None:
                raise ElfFormatError(f"{sec.name}: relocation type {rtype} at {offset:#x} "
                                     "not supported", path=out.path)
            size, pcrel = spec
            sym = syms.get_symbol(rel["r_info_sym"])
            shndx = sym["st_shndx"]
            if shndx == "SHN_UNDEF":
                s_value = 0
            elif shndx == "SHN_ABS":
                s_value = sym["st_value"]
            else:
                s_value = addresses.get(shndx, 0) + sym["st_value"]
            value = s_value + rel["r_addend"]
            if pcrel:
                value -= base + offset
            if offset + size > len(buf):
                raise ElfFormatError(f"{sec.name}: relocation at {offset:#x} past the section",
                                     path=out.path)
            code = "Q" if size == 8 else "I"
            struct.pack_into(fmt + code, buf, offset, value & ((1 << (8 * size)) - 1))
        out.raw[target.name] = bytes(buf)
