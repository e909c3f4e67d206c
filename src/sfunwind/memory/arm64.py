"""arm64 kernel virtual memory of a vmcore: kernel image, linear map, page-table walk.

Three ways a kernel (TTBR1) virtual address becomes physical (``arch/arm64/include/asm/memory.h``):

* **kernel image** (text, rodata, data, bss, ``swapper_pg_dir``): ``pa = va - kimage_voffset``.
  Used for ``[image_start, image_end)`` when the caller knows the image bounds (from vmlinux
  symbols ``_text``/``_end`` + KASLR offset); otherwise the page tables translate it too.
* **linear map** ``[_PAGE_OFFSET(vabits_actual), PAGE_END)``: ``pa = (va & ~PAGE_OFFSET) +
  PHYS_OFFSET`` (mod 2^64), with ``PAGE_OFFSET = -(1 << VA_BITS)`` (the configured size),
  ``PAGE_END = -(1 << (vabits_actual - 1))`` and PHYS_OFFSET = ``memstart_addr``, which a
  52-bit kernel on a 48-bit CPU lowers so the formula still holds.
* everything else (vmalloc'd task stacks with ``VMAP_STACK``, IRQ stacks, the per-cpu chunks,
  fixmap, modules): a walk of the translation tables rooted at ``swapper_pg_dir``.

The walk supports the 4 KiB, 16 KiB and 64 KiB granules at any depth the VA size implies (the
Debian 7.2 kernel runs 52-bit VA, 4 KiB, 5 levels, with the top level indexing VA[51:48]).
With FEAT_LPA2 (52-bit VA on 4K/16K granules, ``TCR_EL1.DS = 1``) output-address bits [51:50]
sit in descriptor bits [9:8]; with the 64K granule and FEAT_LPA bits [51:48] sit in [15:12].
Block (section) descriptors are accepted at every level above the last.

Translations are cached per page (a software TLB), so repeated reads of a stack or a
task_struct cost one dict lookup.
"""

from __future__ import annotations

import struct

from sfunwind.errors import MemoryFault, VmcoreFormatError
from sfunwind.memory.base import MAX_READ, AddressSpace
from sfunwind.memory.elfcore import ElfCore, VmcoreInfo

MASK64 = (1 << 64) - 1
_U64 = struct.Struct("<Q")


class Arm64Translation:
    """Translation parameters of a running arm64 kernel, from its VMCOREINFO.

    ``lpa2`` defaults to "52-bit VA with a 4K or 16K granule" (the only way such a kernel can
    run); pass it explicitly for a 48-bit VA kernel that enabled LPA2 for 52-bit PA.
    """

    def __init__(self, info: VmcoreInfo, *, lpa2: bool | None = None) -> None:
        self.info = info
        self.page_size = info.page_size
        if self.page_size not in (4096, 16384, 65536):
            raise VmcoreFormatError(f"VMCOREINFO: PAGESIZE={self.page_size} is not an arm64 "
                                    "granule", offset=info.offset, path=info.path)
        self.page_shift = self.page_size.bit_length() - 1
        self.va_bits = info.va_bits
        if self.va_bits <= self.page_shift:
            raise VmcoreFormatError(f"VMCOREINFO: VA size {self.va_bits} too small",
                                    offset=info.offset, path=info.path)
        self.bits_per_level = self.page_shift - 3
        self.levels = -(-(self.va_bits - self.page_shift) // self.bits_per_level)
        self.lpa2 = (self.va_bits == 52 and self.page_size != 65536) if lpa2 is None else lpa2
        self.kimage_voffset = info.number("kimage_voffset")
        self.phys_offset = info.number("PHYS_OFFSET")
        self.kernel_offset = info.kernel_offset
        self.pac_mask = info.pac_mask
        self.swapper_pg_dir = info.symbol("swapper_pg_dir")
        self.pgd_phys = (self.swapper_pg_dir - self.kimage_voffset) & MASK64
        # PAGE_OFFSET is a compile-time constant of the *configured* VA size; a 52-bit
        # kernel on a 48-bit CPU maps its linear map at _PAGE_OFFSET(48) and compensates by
        # lowering memstart_addr (PHYS_OFFSET) by _PAGE_OFFSET(48) - _PAGE_OFFSET(52), so
        # ``pa = (va & ~PAGE_OFFSET) + PHYS_OFFSET`` (mod 2^64) holds either way.  PAGE_END
        # follows the VA size the kernel runs with (vabits_actual).
        self.config_va_bits = info.number("VA_BITS", self.va_bits)
        if not self.va_bits <= self.config_va_bits <= 52:
            raise VmcoreFormatError(f"VMCOREINFO: VA_BITS={self.config_va_bits} with "
                                    f"TCR_EL1_T1SZ giving {self.va_bits}",
                                    offset=info.offset, path=info.path)
        self.page_offset = (-(1 << self.config_va_bits)) & MASK64
        self.page_end = (-(1 << (self.va_bits - 1))) & MASK64
        #: Lowest linear-map address actually in use (``_PAGE_OFFSET(vabits_actual)``).
        self.linear_start = (-(1 << self.va_bits)) & MASK64
        # Output-address mask of a table/page descriptor.
        if self.lpa2:
            self._oa_mask = ((1 << 50) - 1) & ~(self.page_size - 1)
        else:
            self._oa_mask = ((1 << 48) - 1) & ~(self.page_size - 1)

    def output_address(self, desc: int) -> int:
        oa = desc & self._oa_mask
        if self.lpa2:
            oa |= ((desc >> 8) & 3) << 50
        elif self.page_size == 65536:
            oa |= ((desc >> 12) & 0xF) << 48
        return oa

    def is_kernel_va(self, va: int) -> bool:
        """A TTBR1 address: every bit above the VA size set."""
        return (va >> self.va_bits) == (1 << (64 - self.va_bits)) - 1

    def is_linear(self, va: int) -> bool:
        """In the linear map as it is used: ``[_PAGE_OFFSET(vabits_actual), PAGE_END)``."""
        return self.linear_start <= va < self.page_end

    def linear_to_phys(self, va: int) -> int:
        """``__lm_to_phys()``: ``(va & ~PAGE_OFFSET) + PHYS_OFFSET``, modulo 2^64."""
        return ((va & ~self.page_offset & MASK64) + self.phys_offset) & MASK64


class KernelAddressSpace(AddressSpace):
    """Kernel virtual memory of a vmcore: ``read(vaddr, size)`` or :class:`MemoryFault`.

    Faults name the virtual address and, when the translation got that far, the physical
    address that is missing from the dump (or the table entry that was invalid).
    """

    def __init__(self, core: ElfCore, translation: Arm64Translation | None = None, *,
                 image_range: tuple[int, int] | None = None,
                 image_holes: list[tuple[int, int]] | None = None) -> None:
        self.core = core
        self.tr = translation or Arm64Translation(core.vmcoreinfo)
        self.page_size = self.tr.page_size
        self._page_mask = self.page_size - 1
        self._tlb: dict[int, int] = {}
        self.image_range = image_range
        #: Parts of the image the kernel unmapped (``free_initmem()`` vunmaps
        #: ``[__init_begin, __init_end)``): translated by the page tables, never by arithmetic.
        self.image_holes = list(image_holes or [])
        self.walks = 0  # page-table walks done (statistics for tests/benchmarks)

    @property
    def pac_mask(self) -> int:
        return self.tr.pac_mask

    def strip_pac(self, address: int) -> int:
        """A kernel return address without its pointer-authentication code.

        Kernel addresses have all top bits set, so OR-ing KERNELPACMASK restores them.
        """
        return address | self.tr.pac_mask if address >> 63 else address

    def set_image_range(self, start: int, end: int) -> None:
        self.image_range = (start, end)
        self._tlb.clear()

    # -- translation -----------------------------------------------------------------------
    def translate(self, va: int) -> int:
        """Physical address of kernel virtual address *va* (walking tables if needed)."""
        va &= MASK64
        page = va & ~self._page_mask
        pa = self._tlb.get(page)
        if pa is None:
            pa = self._translate_page(page)
            self._tlb[page] = pa
        return pa | (va & self._page_mask)

    def _translate_page(self, va: int) -> int:
        tr = self.tr
        if self.image_range is not None and self.image_range[0] <= va < self.image_range[1] \
                and not any(lo <= va < hi for lo, hi in self.image_holes):
            return (va - tr.kimage_voffset) & MASK64
        if tr.is_linear(va):
            return tr.linear_to_phys(va)
        return self.walk(va)

    def walk(self, va: int) -> int:
        """Translate *va* through ``swapper_pg_dir`` (no fast paths, no cache)."""
        tr = self.tr
        if not tr.is_kernel_va(va):
            raise MemoryFault(va, f"not a kernel address for {tr.va_bits}-bit VA")
        self.walks += 1
        table = tr.pgd_phys
        shift = tr.page_shift + tr.bits_per_level * (tr.levels - 1)
        index_bits = tr.va_bits - shift  # the top level may be narrower than the others
        first_level = 4 - tr.levels
        for level in range(first_level, 4):
            index = (va >> shift) & ((1 << index_bits) - 1)
            entry_pa = table + 8 * index
            try:
                desc = _U64.unpack(self.core.read_physical(entry_pa, 8))[0]
            except MemoryFault:
                raise MemoryFault(va, f"level {level} translation table not in the dump",
                                  physical=entry_pa) from None
            if not desc & 1:
                raise MemoryFault(va, f"not mapped (invalid level {level} descriptor "
                                  f"{desc:#x})", physical=entry_pa)
            if level == 3:
                if not desc & 2:
                    raise MemoryFault(va, f"reserved level 3 descriptor {desc:#x}",
                                      physical=entry_pa)
                return tr.output_address(desc) | (va & self._page_mask)
            if not desc & 2:  # block descriptor: maps 1 << shift bytes
                block = 1 << shift
                return (tr.output_address(desc) & ~(block - 1)) | (va & (block - 1))
            table = tr.output_address(desc)
            shift -= tr.bits_per_level
            index_bits = tr.bits_per_level
        raise AssertionError("unreachable")  # pragma: no cover

    # -- reads -----------------------------------------------------------------------------
    def read(self, address: int, size: int) -> bytes:
        address &= MASK64  # per-cpu arithmetic wraps around
        if size < 0 or size > MAX_READ:
            raise MemoryFault(address, f"read size {size:#x} out of range")
        offset = address & self._page_mask
        if offset + size <= self.page_size:  # the common case: one page
            pa = self.translate(address)
            return self.core.read_physical(pa, size, vaddr=address)
        out = bytearray()
        va, end = address, address + size
        while va < end:
            take = min(end - va, self.page_size - (va & self._page_mask))
            pa = self.translate(va)
            out += self.core.read_physical(pa, take, vaddr=va)
            va += take
        return bytes(out)

    def read_u64(self, address: int) -> int:
        return _U64.unpack(self.read(address, 8))[0]
