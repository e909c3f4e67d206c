"""Encode the SFrame model into section bytes (V3, V2 and V1).

Re-encoding a section that GNU as or ld produced gives the identical bytes:

* the FDE index keeps the list order (sorted, stably, when ``SFRAME_F_FDE_SORTED`` is set);
* the FRE sub-section keeps the blob order recorded in ``SFrameFDE.fre_offset`` (ld keeps
  input order while sorting the index, so blob order and index order differ);
* FRE start widths and data-word sizes are the recorded ones; where ``None`` (built
  objects) the encoder picks the minimum exactly as gas does.

Objects built with :meth:`SFrameSection.build` get gas's layout: blobs in the given FDE
order, minimal widths.
"""

from __future__ import annotations

import struct

from sfunwind.errors import UsageError
from sfunwind.sframe.format import (
    FDE_SIZE,
    PREAMBLE_HEADER_SIZE,
    SUPPORTED_VERSIONS,
    V3_ATTR_SIZE,
    V3_MAX_FRES_PER_FDE,
    VERSION_1,
    VERSION_2,
    VERSION_3,
    WIDTH_TO_FRE_TYPE,
    WORD_SIZE_TO_CODE,
    Flag,
    SFrameFDE,
    SFrameFRE,
    SFrameSection,
    auto_word_size,
    flex_control_indices,
    signed_fits,
    unsigned_fits,
)


class EncodeError(UsageError):
    """The model cannot be encoded (a value does not fit its field, a V3-only feature in V2)."""


def _words_fit(words: list[int], size: int, flex: bool) -> bool:
    controls = flex_control_indices(len(words), words) if flex else frozenset()
    return all(unsigned_fits(w, size) if k in controls else signed_fits(w, size)
               for k, w in enumerate(words))


def _fre_word_size(fre: SFrameFRE, flex: bool) -> int:
    """The recorded word size while the words still fit it, else gas's choice."""
    if fre.word_size is not None:
        if fre.word_size not in WORD_SIZE_TO_CODE:
            raise EncodeError(f"invalid FRE data-word size {fre.word_size}")
        if _words_fit(fre.words, fre.word_size, flex):
            return fre.word_size
    if not fre.words:
        return 1
    try:
        return auto_word_size(fre.words, flex)
    except ValueError as exc:
        raise EncodeError(str(exc)) from None


def _address_width(fde: SFrameFDE, index: int) -> int:
    """The recorded FRE start width while every start still fits it, else gas's choice."""
    width = fde.fre_address_width
    if width is not None:
        if width not in WIDTH_TO_FRE_TYPE:
            raise EncodeError(f"FDE {index}: invalid FRE start width {width}")
        if all(unsigned_fits(f.start, width) for f in fde.fres):
            return width
    return fde.auto_address_width()


def fre_size(fre: SFrameFRE, width: int, flex: bool) -> int:
    return width + 1 + len(fre.words) * _fre_word_size(fre, flex)


def fde_blob_size(fde: SFrameFDE, version: int) -> int:
    width = _address_width(fde, 0)
    n = sum(fre_size(f, width, fde.is_flex) for f in fde.fres)
    return n + (V3_ATTR_SIZE if version == VERSION_3 else 0)


def assign_fre_offsets(fdes_in_blob_order: list[SFrameFDE], version: int) -> None:
    """Lay the FDEs' data out contiguously in the given order (gas: FDE/source order)."""
    off = 0
    for fde in fdes_in_blob_order:
        fde.fre_offset = off
        off += fde_blob_size(fde, version)


def _encode_fre(out: bytearray, fre: SFrameFRE, width: int, flex: bool, bo: str,
                fde_index: int) -> None:
    if not unsigned_fits(fre.start, width):
        raise EncodeError(f"FDE {fde_index}: FRE start {fre.start:#x} does not fit in "
                          f"{width} bytes")
    if len(fre.words) > 15:
        raise EncodeError(f"FDE {fde_index}: {len(fre.words)} data words (at most 15)")
    ws = _fre_word_size(fre, flex)
    out += fre.start.to_bytes(width, bo)
    out.append(fre.info_byte(ws, flex))
    mask = (1 << (8 * ws)) - 1
    for w in fre.words:
        out += (w & mask).to_bytes(ws, bo)


def _fde_info(fde: SFrameFDE, version: int, width: int) -> int:
    known = 0xBF if version == VERSION_3 else 0x3F
    info = (WIDTH_TO_FRE_TYPE[width] | ((int(fde.fde_type) & 1) << 4)
            | ((fde.pauth_key & 1) << 5))
    if version == VERSION_3 and fde.signal:
        info |= 0x80
    if fde.info is not None:
        info |= fde.info & ~known & 0xFF
    return info


def encode(section: SFrameSection, *, version: int | None = None,
           keep_trailing: bool = False) -> bytes:
    """The section's bytes, in ``version`` (default: the section's own version).

    The SFrame data only: bytes a decoded section had after the size its header accounts for
    (gas pads s390x objects' ``.sframe`` to 8 bytes) are written back with ``keep_trailing``.

    Converting to another version recomputes the function-start fields from the absolute
    starts; V3-only features (FLEX FDEs, the signal bit) cannot go to V2/V1.
    """
    header = section.header
    src_ver = header.version
    ver = src_ver if version is None else version
    if ver not in SUPPORTED_VERSIONS:
        raise EncodeError(f"cannot encode SFrame version {ver}")
    big = header.big_endian
    bo = "big" if big else "little"
    sbo = ">" if big else "<"
    flags = int(header.flags)
    if ver != src_ver:
        if ver == VERSION_3:
            flags = (flags & ~int(Flag.FRAME_POINTER)) | int(Flag.FDE_FUNC_START_PCREL)
        elif ver == VERSION_1:
            flags &= ~int(Flag.FDE_FUNC_START_PCREL)
    pcrel = bool(flags & Flag.FDE_FUNC_START_PCREL)

    fdes = list(section.fdes)
    if flags & Flag.FDE_SORTED:
        fdes.sort(key=lambda f: f.start)  # stable: ties keep their order
    if ver != VERSION_3:
        for i, fde in enumerate(fdes):
            if fde.is_flex:
                raise EncodeError(f"FDE {i} is a FLEX FDE: only SFrame V3 has them")
            if fde.signal:
                raise EncodeError(f"FDE {i} has the signal-frame bit: only SFrame V3 has it")
            if ver == VERSION_1 and fde.rep_size:
                raise EncodeError(f"FDE {i} has rep_size {fde.rep_size}: V1 has no such field")

    # FRE sub-section: blobs in recorded order (built/unrecorded ones after, in list order).
    order = sorted(range(len(fdes)),
                   key=lambda i: (fdes[i].fre_offset is None, fdes[i].fre_offset or 0, i))
    fre_sub = bytearray()
    blob_offsets: dict[int, int] = {}
    shared: dict[tuple[int, bytes], int] = {}
    total_fres = 0
    for i in order:
        fde = fdes[i]
        width = _address_width(fde, i)
        blob = bytearray()
        if ver == VERSION_3:
            if len(fde.fres) > V3_MAX_FRES_PER_FDE:
                raise EncodeError(f"FDE {i}: {len(fde.fres)} FREs (V3 allows at most 65535)")
            info2 = int(fde.kind) & 0x1F
            if fde.info2 is not None:
                info2 |= fde.info2 & 0xE0
            if not 0 <= fde.rep_size <= 0xFF:
                raise EncodeError(f"FDE {i}: rep_size {fde.rep_size} does not fit a byte")
            blob += struct.pack(sbo + "HBBB", len(fde.fres), _fde_info(fde, ver, width), info2,
                                fde.rep_size)
        for fre in fde.fres:
            _encode_fre(blob, fre, width, fde.is_flex, bo, i)
        total_fres += len(fde.fres)
        key = (fde.fre_offset, bytes(blob)) if fde.fre_offset is not None else None
        if key is not None and key in shared:
            blob_offsets[i] = shared[key]  # two FDEs sharing one FRE blob stay shared
            continue
        blob_offsets[i] = len(fre_sub)
        if key is not None:
            shared[key] = len(fre_sub)
        fre_sub += blob

    aux = bytes(header.aux_header)
    if len(aux) > 0xFF:
        raise EncodeError("auxiliary header longer than 255 bytes")
    hdr_end = PREAMBLE_HEADER_SIZE + len(aux)
    fde_size = FDE_SIZE[ver]
    fdes_sub = bytearray()
    for i, fde in enumerate(fdes):
        field_off = hdr_end + i * fde_size
        raw = fde.start - section.section_address - (field_off if pcrel else 0)
        if ver == VERSION_3:
            raw = _wrap_signed(raw, 64)
        elif not signed_fits(raw, 4):
            wrapped = _wrap_signed(raw, 32)
            # Accept addresses that only fit once wrapped modulo 2^32 (32-bit targets).
            if not signed_fits(wrapped, 4):
                raise EncodeError(f"FDE {i}: function start {fde.start:#x} is out of the "
                                  f"±2 GiB range of a V{ver} FDE")
            raw = wrapped
        if not unsigned_fits(fde.size, 4):
            raise EncodeError(f"FDE {i}: function size {fde.size:#x} does not fit 32 bits")
        width = _address_width(fde, i)
        if ver == VERSION_3:
            fdes_sub += struct.pack(sbo + "qII", raw, fde.size, blob_offsets[i])
        elif ver == VERSION_2:
            if not 0 <= fde.rep_size <= 0xFF:
                raise EncodeError(f"FDE {i}: rep_size {fde.rep_size} does not fit a byte")
            fdes_sub += struct.pack(sbo + "iIIIBBH", raw, fde.size, blob_offsets[i],
                                    len(fde.fres), _fde_info(fde, ver, width), fde.rep_size, 0)
        else:
            fdes_sub += struct.pack(sbo + "iIIIB", raw, fde.size, blob_offsets[i],
                                    len(fde.fres), _fde_info(fde, ver, width))

    magic = b"\xde\xe2" if big else b"\xe2\xde"
    out = bytearray(magic)
    abi = int(header.abi)
    out += struct.pack(sbo + "BBBbbB", ver, flags & 0xFF, abi, header.cfa_fixed_fp_offset,
                       header.cfa_fixed_ra_offset, len(aux))
    out += struct.pack(sbo + "5I", len(fdes), total_fres, len(fre_sub), 0, len(fdes_sub))
    out += aux
    out += fdes_sub
    out += fre_sub
    if keep_trailing:
        out += section.trailing
    return bytes(out)


def _wrap_signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value

