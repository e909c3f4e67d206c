"""ELF core files (vmcores): physical memory, per-CPU registers and VMCOREINFO.

A vmcore as written by QEMU's ``dump-guest-memory`` or by kdump/makedumpfile in ELF format is an
``ET_CORE`` file whose ``PT_LOAD`` segments hold *physical* memory (``p_paddr``) and whose
``PT_NOTE`` segment holds one ``NT_PRSTATUS`` per CPU and a ``VMCOREINFO`` note (``KEY=value``
lines the kernel writes for dump tools).

Everything read from the file is bounded and checked: a malformed header or note raises
:class:`~sfunwind.errors.VmcoreFormatError` naming the file and the byte offset; a read of
physical memory the file does not hold raises :class:`~sfunwind.errors.MemoryFault` naming the
physical address.  A file cut short (an interrupted copy) still opens: segments are clipped to
what is present and reads past the end fault with a reason that says so.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sfunwind.errors import MemoryFault, VmcoreFormatError
from sfunwind.memory.base import MAX_READ, AddressSpace

EM_AARCH64 = 183
ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
NT_PRSTATUS = 1

#: Most program headers / notes accepted: bounds every loop over the file's own counts.
MAX_PHDRS = 1 << 20
MAX_NOTES = 1 << 16

#: ``struct elf_prstatus`` on aarch64: ``pr_pid`` at 32, ``pr_reg`` (34 u64) at 112.
PRSTATUS_PID_OFFSET = 32
PRSTATUS_REG_OFFSET = 112
PRSTATUS_MIN_SIZE = PRSTATUS_REG_OFFSET + 34 * 8

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_NHDR = struct.Struct("<III")


@dataclass(frozen=True)
class Note:
    """One ELF note: owner name, type, descriptor bytes and its file offset."""

    name: str
    type: int
    desc: bytes
    offset: int


@dataclass(frozen=True)
class Segment:
    """A ``PT_LOAD``: physical ``[paddr, paddr + mem_size)``, the first ``declared_size``
    bytes stored at file ``offset``.

    ``size`` is what the file really holds (``p_filesz`` clipped to the file's end: less
    only in a truncated file); ``declared_size`` is ``p_filesz``; ``mem_size`` is
    ``p_memsz``: bytes past ``p_filesz`` read as zeros (ELF semantics; makedumpfile's ELF
    output leaves excluded trailing zero pages out that way).
    """

    paddr: int
    vaddr: int
    size: int
    offset: int
    declared_size: int
    mem_size: int = -1

    def __post_init__(self) -> None:
        if self.mem_size < self.declared_size:
            object.__setattr__(self, "mem_size", self.declared_size)

    @property
    def end(self) -> int:
        return self.paddr + self.size

    @property
    def mem_end(self) -> int:
        return self.paddr + self.mem_size


@dataclass(frozen=True)
class PrStatus:
    """The registers of one CPU from its ``NT_PRSTATUS`` note (aarch64 ``user_pt_regs``).

    ``pr_pid`` is what the dumper wrote: QEMU puts the vCPU index + 1 there, kdump the Linux
    pid of the task that was running.  ``cpu`` is the note's position (CPU n = n-th note).
    """

    cpu: int
    pr_pid: int
    regs: tuple[int, ...]  # x0..x30
    sp: int
    pc: int
    pstate: int
    offset: int  # file offset of the note's descriptor

    @property
    def fp(self) -> int:
        return self.regs[29]

    @property
    def lr(self) -> int:
        return self.regs[30]

    @property
    def el(self) -> int:
        """Exception level the CPU was at (PSTATE.M[3:2])."""
        return (self.pstate >> 2) & 3

    @property
    def in_kernel(self) -> bool:
        return self.el >= 1

    def as_dict(self) -> dict[str, int]:
        """``{"x0": .., "x30": .., "sp": .., "pc": .., "pstate": ..}`` (drgn's naming)."""
        out = {f"x{i}": v for i, v in enumerate(self.regs)}
        out.update(sp=self.sp, pc=self.pc, pstate=self.pstate)
        return out


def _parse_number(text: str) -> int:
    text = text.strip()
    if text.lower().startswith(("0x", "-0x")):
        return int(text, 16)
    return int(text, 10)


@dataclass
class VmcoreInfo:
    """The ``VMCOREINFO`` note: ``KEY=value`` lines, with typed accessors for what arm64 needs.

    Formats follow ``kernel/vmcore_info.c``: ``SYMBOL(x)`` and ``KERNELOFFSET`` are bare hex,
    ``NUMBER(x)`` is decimal unless written with ``0x`` (arm64 writes its own as ``0x%llx``),
    ``SIZE``/``OFFSET``/``LENGTH``/``PAGESIZE`` are decimal.
    """

    raw: dict[str, str] = field(default_factory=dict)
    offset: int | None = None  # file offset of the note descriptor
    path: str | None = None

    @classmethod
    def parse(cls, data: bytes, *, offset: int | None = None,
              path: str | None = None) -> VmcoreInfo:
        text = data.split(b"\0", 1)[0].decode("utf-8", errors="replace")
        raw: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                raw[key.strip()] = value.strip()
        return cls(raw, offset, path)

    def __contains__(self, key: str) -> bool:
        return key in self.raw

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.raw.get(key, default)

    def _fail(self, reason: str) -> VmcoreFormatError:
        return VmcoreFormatError(f"VMCOREINFO: {reason}", offset=self.offset, path=self.path)

    def _int(self, key: str, parse, default: int | None) -> int:
        value = self.raw.get(key)
        if value is None:
            if default is None:
                raise self._fail(f"{key} missing")
            return default
        try:
            return parse(value)
        except ValueError:
            raise self._fail(f"{key}={value!r} is not a number") from None

    def number(self, name: str, default: int | None = None) -> int:
        return self._int(f"NUMBER({name})", _parse_number, default)

    def symbol(self, name: str, default: int | None = None) -> int:
        return self._int(f"SYMBOL({name})", lambda v: int(v, 16), default)

    def size(self, name: str, default: int | None = None) -> int:
        return self._int(f"SIZE({name})", lambda v: int(v, 10), default)

    def member_offset(self, name: str, default: int | None = None) -> int:
        return self._int(f"OFFSET({name})", lambda v: int(v, 10), default)

    @property
    def osrelease(self) -> str | None:
        return self.raw.get("OSRELEASE")

    @property
    def build_id(self) -> str | None:
        value = self.raw.get("BUILD-ID")
        return value.lower() if value else None

    @property
    def page_size(self) -> int:
        return self._int("PAGESIZE", lambda v: int(v, 10), 4096)

    @property
    def kernel_offset(self) -> int:
        """KASLR displacement of the kernel image (0 when booted with ``nokaslr``)."""
        return self._int("KERNELOFFSET", lambda v: int(v, 16), 0)

    @property
    def pac_mask(self) -> int:
        """``NUMBER(KERNELPACMASK)``: OR it into a signed kernel pointer to strip its PAC."""
        return self.number("KERNELPACMASK", 0)

    @property
    def va_bits(self) -> int:
        """The VA size the kernel *runs* with: from ``TCR_EL1_T1SZ`` when present.

        ``NUMBER(VA_BITS)`` is the configured maximum; a 52-bit kernel on a CPU without
        LPA2/LVA falls back to 48 bits, which only T1SZ reveals.
        """
        if "NUMBER(TCR_EL1_T1SZ)" in self.raw:
            t1sz = self.number("TCR_EL1_T1SZ")
            if not 12 <= t1sz <= 48:
                raise self._fail(f"TCR_EL1_T1SZ={t1sz} out of range")
            return 64 - t1sz
        bits = self.number("VA_BITS", 48)
        if not 16 <= bits <= 52:
            raise self._fail(f"VA_BITS={bits} out of range")
        return bits


def _disjoint(segments: list[Segment]) -> list[Segment]:
    """Segments sorted by address with overlaps removed, the earlier (then larger) one
    winning.  kdump cores overlap on purpose: kexec-tools adds a PT_LOAD for the kernel
    image on top of the System RAM ones (both hold the same physical memory)."""
    out: list[Segment] = []
    covered = 0
    for seg in sorted(segments, key=lambda s: (s.paddr, -s.mem_size)):
        if seg.mem_end <= covered:
            continue  # entirely inside what is already mapped
        if seg.paddr < covered:
            cut = covered - seg.paddr
            seg = Segment(covered, seg.vaddr + cut, max(0, seg.size - cut), seg.offset + cut,
                          max(0, seg.declared_size - cut), seg.mem_size - cut)
        out.append(seg)
        covered = seg.mem_end
    return out


class ElfCore:
    """An ELF core file opened read-only through ``mmap``.

    ``ElfCore.open(path)`` parses headers and notes eagerly (a few KiB); memory is read on
    demand.  ``physical`` is an :class:`AddressSpace` over physical addresses.
    """

    def __init__(self, path: str | os.PathLike[str], data: mmap.mmap | bytes,
                 file_size: int) -> None:
        self.path = str(path)
        self._data = data
        self.file_size = file_size
        self.segments: list[Segment] = []
        self.notes: list[Note] = []
        self.prstatus: list[PrStatus] = []
        self.vmcoreinfo = VmcoreInfo(path=self.path)
        #: True when a segment or note extends past the end of the file.
        self.truncated = False
        self._parse()
        self._starts = [s.paddr for s in self.segments]
        self.physical = PhysicalMemory(self)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, display: str | None = None) -> ElfCore:
        """Open *path*; messages name *display* (the user's name for it) when given."""
        shown = display or str(path)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < _EHDR.size:
                    raise VmcoreFormatError(f"file too short for an ELF header ({size} bytes)",
                                            offset=0, path=shown)
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise VmcoreFormatError(f"cannot open: {exc.strerror}", path=shown) from None
        return cls(shown, data, size)

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()

    def __enter__(self) -> ElfCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- parsing ---------------------------------------------------------------------------
    def _fail(self, reason: str, offset: int | None) -> VmcoreFormatError:
        return VmcoreFormatError(reason, offset=offset, path=self.path)

    def _parse(self) -> None:
        d = self._data
        (ident, e_type, e_machine, _ver, _entry, phoff, _shoff, _flags, _ehsize, phentsize,
         phnum, _shentsize, _shnum, _shstrndx) = _EHDR.unpack_from(d, 0)
        if ident[:4] != b"\x7fELF":
            raise self._fail("not an ELF file (bad magic)", 0)
        if ident[4] != 2 or ident[5] != 1:
            raise self._fail("only little-endian ELF64 cores are supported", 4)
        if e_type != ET_CORE:
            raise self._fail(f"not a core file (e_type {e_type}, want ET_CORE)", 16)
        if e_machine != EM_AARCH64:
            raise self._fail(f"e_machine {e_machine} is not EM_AARCH64 ({EM_AARCH64})", 18)
        if phnum == 0xFFFF or phnum > MAX_PHDRS:
            raise self._fail(f"unsupported program header count {phnum}", 56)
        if phentsize < _PHDR.size:
            raise self._fail(f"e_phentsize {phentsize} < {_PHDR.size}", 54)
        if phoff + phnum * phentsize > self.file_size:
            raise self._fail(f"{phnum} program headers at {phoff:#x} run past the end of the "
                             f"file ({self.file_size:#x} bytes)", phoff)
        for i in range(phnum):
            off = phoff + i * phentsize
            p_type, _pf, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _align = \
                _PHDR.unpack_from(d, off)
            if p_type == PT_LOAD and (p_filesz or p_memsz):
                if p_paddr + max(p_filesz, p_memsz) > 1 << 64:
                    raise self._fail(f"PT_LOAD {i} wraps the physical address space", off)
                present = max(0, min(p_filesz, self.file_size - p_offset))
                if present < p_filesz:
                    self.truncated = True
                self.segments.append(Segment(p_paddr, p_vaddr, present, p_offset, p_filesz,
                                             p_memsz))
            elif p_type == PT_NOTE:
                if p_offset + p_filesz > self.file_size:
                    raise self._fail(f"PT_NOTE {i} ({p_filesz:#x} bytes at {p_offset:#x}) runs "
                                     "past the end of the file", off)
                self._parse_notes(p_offset, p_filesz)
        self.segments = _disjoint(self.segments)
        for note in self.notes:
            if note.name == "CORE" and note.type == NT_PRSTATUS:
                self.prstatus.append(self._parse_prstatus(note, len(self.prstatus)))
            elif note.name == "VMCOREINFO":
                self.vmcoreinfo = VmcoreInfo.parse(note.desc, offset=note.offset, path=self.path)

    def _parse_notes(self, start: int, size: int) -> None:
        d = self._data
        pos, end = start, start + size
        while pos + _NHDR.size <= end:
            if len(self.notes) >= MAX_NOTES:
                raise self._fail(f"more than {MAX_NOTES} notes", pos)
            namesz, descsz, ntype = _NHDR.unpack_from(d, pos)
            name_at = pos + _NHDR.size
            desc_at = name_at + ((namesz + 3) & ~3)
            next_at = desc_at + ((descsz + 3) & ~3)
            if desc_at + descsz > end:
                raise self._fail(f"note (namesz {namesz}, descsz {descsz}) overruns its "
                                 "PT_NOTE segment", pos)
            name = bytes(d[name_at:name_at + namesz]).split(b"\0", 1)[0]
            self.notes.append(Note(name.decode("ascii", errors="replace"), ntype,
                                   bytes(d[desc_at:desc_at + descsz]), desc_at))
            pos = next_at

    def _parse_prstatus(self, note: Note, cpu: int) -> PrStatus:
        if len(note.desc) < PRSTATUS_MIN_SIZE:
            raise self._fail(f"NT_PRSTATUS of {len(note.desc)} bytes, aarch64 needs "
                             f"{PRSTATUS_MIN_SIZE}", note.offset)
        pr_pid = struct.unpack_from("<i", note.desc, PRSTATUS_PID_OFFSET)[0]
        regs = struct.unpack_from("<34Q", note.desc, PRSTATUS_REG_OFFSET)
        return PrStatus(cpu, pr_pid, regs[:31], regs[31], regs[32], regs[33], note.offset)

    # -- physical memory -------------------------------------------------------------------
    def segment_of(self, paddr: int) -> Segment | None:
        i = bisect.bisect_right(self._starts, paddr) - 1
        if i >= 0:
            seg = self.segments[i]
            if paddr < seg.mem_end:
                return seg
        return None

    def read_physical(self, paddr: int, size: int, *, vaddr: int | None = None) -> bytes:
        """``size`` bytes of physical memory at ``paddr``; may span adjacent segments.

        ``vaddr`` only improves the fault message (the virtual address being read).
        """
        if size < 0 or size > MAX_READ:
            raise MemoryFault(paddr if vaddr is None else vaddr,
                              f"read size {size:#x} out of range", physical=paddr)
        i = bisect.bisect_right(self._starts, paddr) - 1
        if i >= 0:  # fast path: inside one segment
            seg = self.segments[i]
            if paddr + size <= seg.paddr + seg.size:
                off = seg.offset + paddr - seg.paddr
                return self._data[off:off + size]
        out = bytearray()
        pa, end = paddr, paddr + size
        while pa < end:
            seg = self.segment_of(pa)
            va = None if vaddr is None else vaddr + (pa - paddr)
            if seg is None:
                raise MemoryFault(pa if va is None else va, "not in the dump", physical=pa)
            file_end = seg.paddr + seg.declared_size
            if seg.end <= pa < file_end:
                raise MemoryFault(pa if va is None else va,
                                  "beyond the end of the truncated dump file", physical=pa)
            if pa >= file_end:  # p_memsz beyond p_filesz: zeros
                take = min(end, seg.mem_end) - pa
                out += bytes(take)
            else:
                take = min(end, seg.end) - pa
                off = seg.offset + pa - seg.paddr
                out += self._data[off:off + take]
            pa += take
        return bytes(out)

    def has_physical(self, paddr: int, size: int = 1) -> bool:
        try:
            self.read_physical(paddr, size)
        except MemoryFault:
            return False
        return True

    def iter_segments(self) -> Iterator[Segment]:
        return iter(self.segments)


class PhysicalMemory(AddressSpace):
    """The physical address space of an :class:`ElfCore`."""

    def __init__(self, core: ElfCore) -> None:
        self.core = core

    def read(self, address: int, size: int) -> bytes:
        return self.core.read_physical(address, size)


def open_core(path: str | os.PathLike[str]) -> ElfCore:
    """Open an ELF vmcore (``.xz`` accepted: decompressed once into the cache)."""
    from sfunwind.memory.files import materialize

    return ElfCore.open(materialize(Path(path)), display=str(path))
