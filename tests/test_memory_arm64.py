"""arm64 translation: real 52-bit LPA2 and 48-bit dumps, synthetic cores for other geometries."""

from __future__ import annotations

import struct

import pytest

from kernel_fixtures import DUMPS, program
from sfunwind.errors import MemoryFault, VmcoreFormatError
from sfunwind.memory.arm64 import Arm64Translation, KernelAddressSpace
from sfunwind.memory.elfcore import ElfCore


@pytest.mark.parametrize("dump,geometry", [
    ("nokaslr/irq-in-fault", (52, 5, True, 4096)),
    ("kaslr/el1-abort", (52, 5, True, 4096)),
    # a 52-bit kernel on a CPU without LPA2: 48-bit VA, 4 levels, and memstart_addr lowered
    # so that the linear map arithmetic with the configured PAGE_OFFSET still holds
    ("va48/el1-abort", (48, 4, False, 4096)),
    # the generic 16 KiB-page build: 52-bit VA with LPA2 in 4 levels (top level: VA[51:47])
    ("16k/irq-in-fault", (52, 4, True, 16384)),
])
def test_page_walk_agrees_with_linear_and_image_arithmetic(dump, geometry):
    prog = program(dump)
    mem = prog.memory
    tr = mem.tr
    assert (tr.va_bits, tr.levels, tr.lpa2, tr.page_size) == geometry
    assert tr.config_va_bits == 52
    image = [prog.symbol("init_task"), prog.symbol("__per_cpu_offset"),
             prog.symbol("swapper_pg_dir")]
    for va in image:
        assert mem.walk(va) == va - tr.kimage_voffset
    linear = [t.address for t in prog.threads() if tr.is_linear(t.address)]
    assert len(linear) > 60
    for va in linear:
        assert mem.walk(va) == tr.linear_to_phys(va)
        assert mem.walk(va) == va - tr.linear_start + 0x40000000  # RAM starts at 1 GiB
    # vmalloc'd stacks only translate through the tables; they must hold data
    for t in prog.threads():
        if not tr.is_linear(t.stack) and not prog.symbols.is_kernel_text(t.stack):
            pa = mem.translate(t.stack + 0x3FE8)
            assert prog.core.has_physical(pa, 24)


def test_reads_across_pages_and_tlb():
    prog = program(DUMPS[0])
    t = prog.threads()[5]
    whole = prog.memory.read(t.stack, 0x4000)
    assert whole[0x3FE8:0x3FE8 + 24] == bytes(16) + (1).to_bytes(8, "little")
    assert prog.memory.read(t.stack + 0xFF8, 16) == whole[0xFF8:0x1008]
    walks = prog.memory.walks
    prog.memory.read(t.stack, 0x4000)
    assert prog.memory.walks == walks  # all four pages cached


# -- synthetic cores -------------------------------------------------------------------------

def _core_file(path, vmcoreinfo: str, segments: list[tuple[int, bytes]]) -> ElfCore:
    """A minimal aarch64 ELF core: one PT_NOTE (VMCOREINFO) and PT_LOADs at physical addrs."""
    desc = vmcoreinfo.encode()
    name = b"VMCOREINFO\0\0"
    note = struct.pack("<III", 11, len(desc), 0) + name + desc + b"\0" * (-len(desc) % 4)
    phnum = 1 + len(segments)
    off = 64 + 56 * phnum
    phdrs = [struct.pack("<IIQQQQQQ", 4, 0, off, 0, 0, len(note), len(note), 4)]
    data = note
    pos = off + len(note)
    for paddr, blob in segments:
        pad = -pos % 4096
        data += b"\0" * pad
        pos += pad
        phdrs.append(struct.pack("<IIQQQQQQ", 1, 6, pos, paddr, paddr, len(blob), len(blob),
                                 4096))
        data += blob
        pos += len(blob)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\0" * 9, 4, 183, 1, 0,
                       64, 0, 0, 64, 56, phnum, 64, 0, 0)
    path.write_bytes(ehdr + b"".join(phdrs) + data)
    return ElfCore.open(path)


def _tables(granule: int, va_bits: int, lpa2: bool, va: int, target_pa: int, root_pa: int,
            *, block_level: int | None = None) -> list[tuple[int, bytes]]:
    """Translation tables mapping page *va* to *target_pa*, tables allocated after root."""
    shift_page = granule.bit_length() - 1
    per = shift_page - 3
    levels = -(-(va_bits - shift_page) // per)

    def desc(oa: int, kind: int) -> int:
        d = (oa & ((1 << 50) - 1) & ~(granule - 1)) | kind | (1 << 10)
        if lpa2:
            d |= ((oa >> 50) & 3) << 8
        elif granule == 65536:
            d |= ((oa >> 48) & 0xF) << 12
        return d

    segs = []
    table = root_pa
    for i, level in enumerate(range(4 - levels, 4)):
        shift = shift_page + per * (3 - level)
        bits = va_bits - shift if i == 0 else per
        index = (va >> shift) & ((1 << bits) - 1)
        blob = bytearray(granule)
        if level == block_level:
            struct.pack_into("<Q", blob, 8 * index, desc(target_pa & ~((1 << shift) - 1), 1))
            segs.append((table, bytes(blob)))
            return segs
        if level == 3:
            struct.pack_into("<Q", blob, 8 * index, desc(target_pa, 3))
        else:
            nxt = table + granule
            struct.pack_into("<Q", blob, 8 * index, desc(nxt, 3))
        segs.append((table, bytes(blob)))
        table += granule
    return segs


GEOMETRIES = [  # granule, T1SZ (VA bits = 64 - T1SZ), lpa2, block level
    (4096, 16, False, None),  # 48-bit, 4 levels (the common arm64 kernel)
    (4096, 25, False, None),  # 39-bit, 3 levels
    (4096, 12, True, None),  # 52-bit LPA2, 5 levels (these fixtures)
    (4096, 16, False, 2),  # 2 MiB block at level 2
    (4096, 12, True, 1),  # 1 GiB block at level 1 under LPA2
    (16384, 17, False, None),  # 16K, 47-bit, 3 levels
    (65536, 22, False, None),  # 64K, 42-bit, 2 levels
    (65536, 12, False, None),  # 64K, 52-bit (LVA), 3 levels
]


@pytest.mark.parametrize("granule,t1sz,lpa2,block", GEOMETRIES)
def test_walk_geometries(tmp_path, granule, t1sz, lpa2, block):
    va_bits = 64 - t1sz
    kimage_voffset = 0xFFFF800000000000 - 0x40000000
    root_pa = 0x40000000
    va = ((-(1 << (va_bits - 1))) & ((1 << 64) - 1)) + 0x12345 * granule + 0x18
    target = 0x48000000 + 7 * granule
    payload = bytes(range(256)) * (granule // 256)
    tables = _tables(granule, va_bits, lpa2, va & ~(granule - 1), target, root_pa,
                     block_level=block)
    if block is not None:  # the block covers target's whole region: place data accordingly
        shift = (granule.bit_length() - 1) + (granule.bit_length() - 4) * (3 - block)
        target = (target & ~((1 << shift) - 1)) | (va & ((1 << shift) - 1) & ~(granule - 1))
    info = "\n".join([f"PAGESIZE={granule}", f"NUMBER(TCR_EL1_T1SZ)={t1sz}",
                      f"NUMBER(kimage_voffset)={kimage_voffset:#x}",
                      "NUMBER(PHYS_OFFSET)=0x40000000", "KERNELOFFSET=0",
                      f"SYMBOL(swapper_pg_dir)={root_pa + kimage_voffset:x}", ""])
    core = _core_file(tmp_path / "core", info, [*tables, (target, payload)])
    tr = Arm64Translation(core.vmcoreinfo)
    assert tr.va_bits == va_bits and tr.lpa2 == lpa2
    mem = KernelAddressSpace(core, tr)
    assert mem.walk(va & ~(granule - 1)) == target
    assert mem.read(va, 8) == payload[0x18:0x20]
    # a neighbouring page is unmapped (invalid descriptor) or its table page is absent
    with pytest.raises(MemoryFault) as fault:
        mem.read(va + (64 << 30 if block == 1 else granule * (1 if block is None else 4096)), 8)
    assert fault.value.physical is not None
    # linear map arithmetic
    linear_va = (-(1 << va_bits)) & ((1 << 64) - 1)
    assert mem.translate(linear_va + 0x1000) == 0x40001000


def test_lpa2_output_address_bits():
    from sfunwind.memory.elfcore import VmcoreInfo

    info = VmcoreInfo.parse(b"PAGESIZE=4096\nNUMBER(TCR_EL1_T1SZ)=0xc\n"
                            b"NUMBER(kimage_voffset)=0x0\nNUMBER(PHYS_OFFSET)=0\n"
                            b"SYMBOL(swapper_pg_dir)=0\n")
    tr = Arm64Translation(info)
    assert tr.output_address(0x0003_0000_4000_0703 | (3 << 8)) == (3 << 50) | 0x0003_0000_4000_0000


def test_bad_vmcoreinfo_is_typed(tmp_path):
    core = _core_file(tmp_path / "c", "PAGESIZE=8192\nNUMBER(TCR_EL1_T1SZ)=16\n", [])
    with pytest.raises(VmcoreFormatError, match="PAGESIZE"):
        Arm64Translation(core.vmcoreinfo)
    core = _core_file(tmp_path / "d", "PAGESIZE=4096\nNUMBER(TCR_EL1_T1SZ)=16\n", [])
    with pytest.raises(VmcoreFormatError, match="kimage_voffset"):
        Arm64Translation(core.vmcoreinfo)


def test_freed_init_text_is_not_translated_by_arithmetic():
    """free_initmem() unmaps [__init_begin, __init_end) from the image mapping: a read there
    must go through the page tables (and fault), not land on whatever reuses the pages."""
    prog = program("nokaslr/el1-abort")
    start = prog.symbol("start_kernel")  # .init.text
    assert prog.symbol("__init_begin") <= start < prog.symbol("__init_end")
    with pytest.raises(MemoryFault) as fault:
        prog.memory.read(start, 4)
    assert "not mapped" in str(fault.value) or "translation table" in str(fault.value)
    # the rest of the image still uses the kimage_voffset arithmetic
    assert prog.memory.translate(prog.symbol("init_task")) == \
        prog.symbol("init_task") - prog.memory.tr.kimage_voffset
