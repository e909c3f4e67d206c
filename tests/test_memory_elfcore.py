"""ELF core reader: headers, notes, PRSTATUS, VMCOREINFO, and typed errors on bad input."""

from __future__ import annotations

import struct

import pytest

from kernel_fixtures import DUMPS, drgn_reference, vmcore
from sfunwind.errors import FormatError, MemoryFault, UsageError, VmcoreFormatError
from sfunwind.memory.elfcore import ElfCore, VmcoreInfo, open_core
from sfunwind.memory.files import materialize


@pytest.mark.parametrize("dump", DUMPS)
def test_prstatus_and_vmcoreinfo(dump):
    core = open_core(vmcore(dump))
    ref = drgn_reference(dump)
    assert len(core.prstatus) == 2
    for pr, cpu in zip(core.prstatus, ref["cpus"], strict=True):
        assert pr.pr_pid == cpu["prstatus_pr_pid"] == pr.cpu + 1  # QEMU: vCPU index + 1
        assert pr.as_dict() == {k: int(v, 16) for k, v in cpu["prstatus"].items()}
    info = core.vmcoreinfo
    assert info.page_size == (16384 if dump.startswith("16k") else 4096)
    assert info.number("VA_BITS") == 52  # the configured size
    assert info.va_bits == (48 if dump.startswith("va48") else 52)  # what the CPU runs
    assert info.number("kimage_voffset") == int(ref["vmcoreinfo"]["NUMBER(kimage_voffset)"], 16)
    assert info.kernel_offset == int(ref["kaslr_offset"], 16)
    assert info.build_id == ref["build_id"]
    assert all(s.paddr % 4096 == 0 and s.size == s.declared_size for s in core.segments)
    assert not core.truncated
    assert {n.name for n in core.notes} >= {"CORE", "LINUX", "VMCOREINFO"}


def test_el_and_kernel_mode():
    core = open_core(vmcore("kaslr/irq-in-fault"))
    assert [p.el for p in core.prstatus] == [0, 1]  # md5sum in user mode; CPU1 in the kernel
    assert not core.prstatus[0].in_kernel and core.prstatus[1].in_kernel


def test_physical_reads_and_faults():
    core = open_core(vmcore("nokaslr/el1-abort"))
    seg = core.segments[0]
    assert core.read_physical(seg.paddr, 16) == core.physical.read(seg.paddr, 16)
    with pytest.raises(MemoryFault) as fault:
        core.read_physical(0x1000, 8)  # below RAM
    assert fault.value.physical == 0x1000 and "not in the dump" in str(fault.value)
    # a read spanning two adjacent segments, if any are adjacent
    for a, b in zip(core.segments, core.segments[1:], strict=False):
        if a.end == b.paddr:
            assert core.read_physical(a.end - 4, 8) == \
                core.read_physical(a.end - 4, 4) + core.read_physical(b.paddr, 4)
            break


def test_vmcoreinfo_number_formats():
    info = VmcoreInfo.parse(b"NUMBER(a)=0x10\nNUMBER(b)=-5\nSYMBOL(c)=ffff0000\n"
                            b"KERNELOFFSET=1b1385c00000\nOFFSET(x.y)=24\nSIZE(z)=8\n"
                            b"NUMBER(bad)=zz\n\0junk")
    assert info.number("a") == 16 and info.number("b") == -5
    assert info.symbol("c") == 0xFFFF0000 and info.kernel_offset == 0x1B1385C00000
    assert info.member_offset("x.y") == 24 and info.size("z") == 8
    with pytest.raises(VmcoreFormatError, match="not a number"):
        info.number("bad")
    with pytest.raises(VmcoreFormatError, match="missing"):
        info.number("absent")


def _mutate(tmp_path, name: str, fn) -> str:
    raw = bytearray(materialize(vmcore("nokaslr/el1-abort")).read_bytes())
    fn(raw)
    path = tmp_path / name
    path.write_bytes(raw)
    return str(path)


@pytest.mark.parametrize("case,pattern", [
    ("magic", "bad magic"),
    ("class", "little-endian ELF64"),
    ("type", "not a core file"),
    ("machine", "EM_AARCH64"),
    ("phoff", "program headers"),
    ("note_overrun", "overruns"),
    ("prstatus_short", "overruns"),  # a shorter desc misaligns every later note
])
def test_bad_headers_are_typed_errors(tmp_path, case, pattern):
    def fn(raw: bytearray) -> None:
        phoff = struct.unpack_from("<Q", raw, 32)[0]
        note_off = struct.unpack_from("<Q", raw, phoff + 8)[0]  # first phdr is the PT_NOTE
        if case == "magic":
            raw[1] = ord("X")
        elif case == "class":
            raw[4] = 1
        elif case == "type":
            struct.pack_into("<H", raw, 16, 2)
        elif case == "machine":
            struct.pack_into("<H", raw, 18, 62)
        elif case == "phoff":
            struct.pack_into("<Q", raw, 32, len(raw) - 8)
        elif case == "note_overrun":
            struct.pack_into("<I", raw, note_off + 4, 1 << 30)  # descsz of the first note
        elif case == "prstatus_short":
            struct.pack_into("<I", raw, note_off + 4, 64)
    path = _mutate(tmp_path, case, fn)
    with pytest.raises(VmcoreFormatError, match=pattern) as err:
        ElfCore.open(path)
    assert path in str(err.value)
    assert err.value.offset is not None


def test_missing_file_and_bad_xz(tmp_path):
    with pytest.raises(UsageError):
        open_core(tmp_path / "nope.vmcore")
    bad = tmp_path / "bad.vmcore.xz"
    bad.write_bytes(b"\xfd7zXZ\0garbage")
    with pytest.raises(FormatError) as err:
        open_core(bad)
    assert "xz" in str(err.value) and str(bad) in str(err.value)


def _raw_core(path, loads: list[tuple[int, bytes, int]]) -> ElfCore:
    """An aarch64 ELF core with PT_LOADs (paddr, file bytes, p_memsz), no notes."""
    phnum = len(loads)
    pos = 64 + 56 * phnum
    phdrs, blobs = [], []
    for paddr, blob, memsz in loads:
        phdrs.append(struct.pack("<IIQQQQQQ", 1, 6, pos, 0xFFFF000000000000 | paddr, paddr,
                                 len(blob), memsz, 4096))
        blobs.append(blob)
        pos += len(blob)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\0" * 9, 4, 183, 1, 0,
                       64, 0, 0, 64, 56, phnum, 64, 0, 0)
    path.write_bytes(ehdr + b"".join(phdrs) + b"".join(blobs))
    return ElfCore.open(path)


def test_overlapping_loads_like_kdump(tmp_path):
    """kexec-tools adds a kernel-image PT_LOAD inside the System RAM one: both hold the same
    memory; reads anywhere in either work and the layout becomes disjoint."""
    ram = bytes(range(256)) * 64  # 16 KiB at 0x40000000
    image = ram[0x1000:0x3000]  # the same bytes, as a second segment
    tail = b"\xaa" * 0x2000  # overlaps the end of RAM and extends it
    core = _raw_core(tmp_path / "c", [(0x40001000, image, len(image)),
                                      (0x40000000, ram, len(ram)),
                                      (0x40003000, ram[0x3000:] + tail[0x1000:], 0x2000)])
    assert [(s.paddr, s.mem_size) for s in core.segments] == [(0x40000000, 0x4000),
                                                              (0x40004000, 0x1000)]
    assert core.read_physical(0x40001000, 0x2000) == image
    assert core.read_physical(0x40003FF0, 0x20) == ram[-0x10:] + b"\xaa" * 0x10
    with pytest.raises(MemoryFault):
        core.read_physical(0x40005000, 1)


def test_memsz_beyond_filesz_reads_zeros(tmp_path):
    core = _raw_core(tmp_path / "z", [(0x80000000, b"\x11" * 0x1000, 0x3000)])
    assert core.read_physical(0x80000FF8, 0x10) == b"\x11" * 8 + bytes(8)
    assert core.read_physical(0x80002000, 0x1000) == bytes(0x1000)
    with pytest.raises(MemoryFault, match="not in the dump"):
        core.read_physical(0x80003000, 1)
    assert not core.truncated


def test_xz_cache_location_and_fallback(tmp_path, monkeypatch):
    import lzma
    import os
    import tempfile

    from sfunwind.memory import files

    blob = bytes(range(256)) * 100
    src = tmp_path / "data.bin.xz"
    src.write_bytes(lzma.compress(blob))
    monkeypatch.setenv("SFUNWIND_CACHE", str(tmp_path / "cache"))
    out = files.materialize(src)
    assert out.read_bytes() == blob and out.parent == tmp_path / "cache" / "xz"
    assert files.materialize(src) == out  # keyed by content: reused
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    assert files.materialize(plain) == plain
    # an unusable cache (a file where the directory should be: fails even for root)
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    monkeypatch.setenv("SFUNWIND_CACHE", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    fallback = files.materialize(src)
    assert fallback.read_bytes() == blob
    assert fallback.parent == tmp_path / "tmp" / f"sfunwind-{os.getuid()}" / "xz"
