"""Decode SFrame V1/V2/V3 section bytes into the format model.

Every read is bounds-checked against the section; every loop is bounded by counts that were
first checked against the bytes available, so hostile input ends in
:class:`~sfunwind.errors.SFrameFormatError` (with the section offset and the reason), never
in another exception or a long loop.

The decoder is deliberately lenient where libsframe is lenient or where the data is still
unambiguous (unknown flag bits, FRE counts that disagree with the header, data-word counts
above libsframe's limit of 6): those are reported by :func:`sfunwind.sframe.validate`
instead, so a damaged section can still be dumped and inspected.  It refuses what it cannot
interpret: a bad magic, an unknown version or ABI, an invalid data-word size, or any
structure that points outside the section.
"""

from __future__ import annotations

import struct

from sfunwind.errors import SFrameFormatError
from sfunwind.sframe.format import (
    ABI,
    FDE_SIZE,
    FRE_TYPE_TO_WIDTH,
    MAGIC,
    PREAMBLE_HEADER_SIZE,
    SUPPORTED_VERSIONS,
    V3_ATTR_SIZE,
    VERSION_2,
    VERSION_3,
    WORD_CODE_TO_SIZE,
    BaseReg,
    FDEKind,
    FDEType,
    Flag,
    SFrameFDE,
    SFrameFRE,
    SFrameHeader,
    SFrameSection,
    flex_control_indices,
)

_MASK64 = (1 << 64) - 1


def _fail(reason: str, offset: int | None, path: str | None) -> SFrameFormatError:
    return SFrameFormatError(reason, offset=offset, path=path)


def decode_header(data: bytes, *, path: str | None = None) -> SFrameHeader:
    """Decode and sanity-check the preamble and header (libsframe's header checks)."""
    if len(data) < PREAMBLE_HEADER_SIZE:
        if len(data) == 0:
            raise _fail("empty SFrame section (size 0; e.g. after ld --discard-sframe)", 0, path)
        raise _fail(f"section too small for the SFrame header ({len(data)} < "
                    f"{PREAMBLE_HEADER_SIZE} bytes)", 0, path)
    if data[0] == 0xE2 and data[1] == 0xDE:
        big = False
    elif data[0] == 0xDE and data[1] == 0xE2:
        big = True
    else:
        raise _fail(f"bad magic {data[0]:02x} {data[1]:02x} (expected {MAGIC:#06x})", 0, path)
    bo = ">" if big else "<"
    version, flags, abi_raw, fixed_fp, fixed_ra, auxhdr_len = struct.unpack_from(
        bo + "BBBbbB", data, 2)
    num_fdes, num_fres, fre_len, fdeoff, freoff = struct.unpack_from(bo + "5I", data, 8)
    if version not in SUPPORTED_VERSIONS:
        raise _fail(f"unsupported SFrame version {version}", 2, path)
    try:
        abi = ABI(abi_raw)
    except ValueError:
        raise _fail(f"unknown ABI/arch {abi_raw}", 4, path) from None
    if abi.big_endian != big:
        raise _fail(f"ABI {abi.name} does not match the section's byte order "
                    f"({'big' if big else 'little'} endian magic)", 4, path)
    hdr_end = PREAMBLE_HEADER_SIZE + auxhdr_len
    if hdr_end > len(data):
        raise _fail(f"auxiliary header ({auxhdr_len} bytes) runs past the section end "
                    f"({len(data)} bytes)", 7, path)
    if fdeoff > freoff:
        raise _fail(f"FDE sub-section offset {fdeoff:#x} is beyond the FRE sub-section "
                    f"offset {freoff:#x}", 0x14, path)
    return SFrameHeader(version=version, flags=flags, abi=abi, cfa_fixed_fp_offset=fixed_fp,
                        cfa_fixed_ra_offset=fixed_ra, auxhdr_len=auxhdr_len,
                        num_fdes=num_fdes, num_fres=num_fres, fre_len=fre_len,
                        fdeoff=fdeoff, freoff=freoff, big_endian=big,
                        aux_header=bytes(data[PREAMBLE_HEADER_SIZE:hdr_end]))


def section_size_from_header(header: SFrameHeader) -> int:
    """The section's size as its header says (trust this over a segment's p_memsz)."""
    return header.size + header.freoff + header.fre_len


def decode(data: bytes | bytearray | memoryview, *, section_address: int = 0,
           path: str | None = None) -> SFrameSection:
    """Decode a whole ``.sframe`` section.

    ``section_address`` is the section's address (``sh_addr``): function starts come out
    absolute.  Bytes after the size computed from the header are ignored (PT_GNU_SFRAME may
    be larger than the section, binutils 2.47 on x86-64 PIEs).
    """
    data = bytes(data)
    header = decode_header(data, path=path)
    ver = header.version
    big = header.big_endian
    bo = ">" if big else "<"
    hdr_end = header.size
    fde_size = FDE_SIZE[ver]
    fde_sub = hdr_end + header.fdeoff
    fre_sub = hdr_end + header.freoff
    fre_end = fre_sub + header.fre_len
    if header.num_fdes > (len(data) - min(fde_sub, len(data))) // fde_size:
        raise _fail(f"{header.num_fdes} FDEs of {fde_size} bytes do not fit in the section "
                    f"({len(data)} bytes, FDEs at {fde_sub:#x})", 8, path)
    fde_end = fde_sub + header.num_fdes * fde_size
    if fde_end > fre_sub and header.num_fdes:
        raise _fail(f"FDE sub-section [{fde_sub:#x}, {fde_end:#x}) overlaps the FRE "
                    f"sub-section at {fre_sub:#x}", 0x18, path)
    if fre_end > len(data):
        raise _fail(f"FRE sub-section [{fre_sub:#x}, {fre_end:#x}) runs past the section end "
                    f"({len(data):#x})", 0x10, path)
    pcrel = bool(header.flags & Flag.FDE_FUNC_START_PCREL)

    if ver == VERSION_3:
        idx_struct = struct.Struct(bo + "qII")
    elif ver == VERSION_2:
        idx_struct = struct.Struct(bo + "iIIIBBH")
    else:
        idx_struct = struct.Struct(bo + "iIIIB")
    attr_struct = struct.Struct(bo + "HBBB")
    u16 = struct.Struct(bo + "H")
    u32 = struct.Struct(bo + "I")
    # One precompiled struct per (word count, word size): a single unpack per FRE.
    word_structs = {(n, sz): struct.Struct(bo + f"{n}{c}")
                    for sz, c in ((1, "b"), (2, "h"), (4, "i")) for n in range(16)}
    uword_structs = {1: struct.Struct(bo + "B"), 2: struct.Struct(bo + "H"),
                     4: struct.Struct(bo + "I")}
    base_regs = (BaseReg.FP, BaseReg.SP)

    fdes: list[SFrameFDE] = []
    # FDEs may point at overlapping FRE data; bound the total work by what the bytes can
    # hold (every FRE is at least 2 bytes), so a small hostile section cannot make the
    # decoder walk the same FREs for every one of thousands of FDEs.
    fre_budget = header.fre_len // 2 + 1
    for i in range(header.num_fdes):
        foff = fde_sub + i * fde_size
        info2 = 0
        if ver == VERSION_3:
            raw_start, fsize, fre_off = idx_struct.unpack_from(data, foff)
            attr_off = fre_sub + fre_off
            if fre_off > header.fre_len or attr_off + V3_ATTR_SIZE > fre_end:
                raise _fail(f"FDE {i}: attribute record at FRE offset {fre_off:#x} is outside "
                            f"the FRE sub-section ({header.fre_len:#x} bytes)", foff + 12, path)
            nfres, info, info2, rep = attr_struct.unpack_from(data, attr_off)
            fres_at = attr_off + V3_ATTR_SIZE
        elif ver == VERSION_2:
            raw_start, fsize, fre_off, nfres, info, rep, _pad = idx_struct.unpack_from(data, foff)
            fres_at = fre_sub + fre_off
        else:
            raw_start, fsize, fre_off, nfres, info = idx_struct.unpack_from(data, foff)
            rep = 0
            fres_at = fre_sub + fre_off
        if fre_off > header.fre_len:
            raise _fail(f"FDE {i}: FRE offset {fre_off:#x} is beyond the FRE sub-section "
                        f"({header.fre_len:#x} bytes)", foff + 8, path)
        fre_type = info & 0xF
        width = FRE_TYPE_TO_WIDTH.get(fre_type)
        if width is None:
            raise _fail(f"FDE {i}: invalid FRE type {fre_type}", foff, path)
        # Every FRE is at least width + 1 bytes: bound the count before looping.
        if nfres and nfres > (fre_end - fres_at) // (width + 1):
            raise _fail(f"FDE {i}: {nfres} FREs cannot fit in the {max(fre_end - fres_at, 0)} "
                        f"bytes left in the FRE sub-section", foff, path)
        fre_budget -= nfres
        if fre_budget < 0:
            raise _fail(f"the FDEs declare more FREs than the {header.fre_len}-byte FRE "
                        f"sub-section can hold", foff, path)
        fde_type = (info >> 4) & 1
        kind = info2 & 0x1F
        flex = kind == FDEKind.FLEX
        if pcrel:
            field_off = foff
            start = (section_address + field_off + raw_start) & _MASK64
        else:
            start = (section_address + raw_start) & _MASK64
        fres: list[SFrameFRE] = []
        pos = fres_at
        for _j in range(nfres):
            if pos + width + 1 > fre_end:
                raise _fail(f"FDE {i}: FRE runs past the FRE sub-section end", pos, path)
            if width == 1:
                fstart = data[pos]
            elif width == 2:
                fstart = u16.unpack_from(data, pos)[0]
            else:
                fstart = u32.unpack_from(data, pos)[0]
            finfo = data[pos + width]
            count = (finfo >> 1) & 0xF
            code = (finfo >> 5) & 3
            wsize = WORD_CODE_TO_SIZE.get(code)
            if wsize is None:
                raise _fail(f"FDE {i}: FRE with invalid data-word size code 3", pos + width, path)
            wpos = pos + width + 1
            end = wpos + count * wsize
            if end > fre_end:
                raise _fail(f"FDE {i}: FRE data words run past the FRE sub-section end",
                            pos, path)
            words = list(word_structs[count, wsize].unpack_from(data, wpos))
            if flex and count:
                uws = uword_structs[wsize]
                for k in flex_control_indices(count, [w & 0xFFFFFFFF for w in words]):
                    words[k] = uws.unpack_from(data, wpos + k * wsize)[0]
            fres.append(SFrameFRE(fstart, base_regs[finfo & 1], words, wsize,
                                  finfo >= 0x80, pos, finfo))
            pos = end
        fdes.append(SFrameFDE(
            start=start, size=fsize, fres=fres, fde_type=FDEType(fde_type),
            kind=FDEKind(kind) if kind in (0, 1) else kind, rep_size=rep,
            pauth_key=(info >> 5) & 1, signal=bool(info & 0x80) if ver == VERSION_3 else False,
            fre_address_width=width, fre_offset=fre_off, raw_start=raw_start,
            num_fres=nfres, info=info, info2=info2, offset=foff, index=i))
    return SFrameSection(header=header, fdes=fdes, section_address=section_address, path=path,
                         data=data, trailing=data[fre_end:],
                         decoded_counts=(len(fdes), sum(len(f.fres) for f in fdes)))
