"""The SFrame format model: constants and the header / FDE / FRE / section objects.

The objects mirror the on-disk layout (like pyelftools' structures) while resolving what a
reader needs: absolute function addresses, the FDE's FRE list, the V3 attribute record folded
into the FDE.  Every field the encoder needs to reproduce GNU as/ld bytes exactly is kept
(the original FRE sub-section offsets, FRE address width, per-FRE data-word size, raw info
bytes).  Objects built by hand may leave those ``None``; the encoder then chooses them the
way gas does (:meth:`SFrameSection.build`).

Layout facts are in ``shared/design/sframe-format.md`` (§3-§6).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

MAGIC = 0xDEE2
PREAMBLE_HEADER_SIZE = 28  # preamble (4) + header (24), identical in V1/V2/V3

VERSION_1 = 1
VERSION_2 = 2
VERSION_3 = 3
SUPPORTED_VERSIONS = (VERSION_1, VERSION_2, VERSION_3)

#: FDE (V1/V2) or FDE index entry (V3) size per version.
FDE_SIZE = {VERSION_1: 17, VERSION_2: 20, VERSION_3: 16}
#: V3 per-FDE attribute record (u16 num_fres, u8 info, u8 info2, u8 rep_size).
V3_ATTR_SIZE = 5

#: libsframe (sframe-api.h MAX_NUM_DATAWORDS): the largest data-word count it accepts.
MAX_DATA_WORDS = 6
#: gas drops an FDE with more FREs than a V3 attribute record can count.
V3_MAX_FRES_PER_FDE = 0xFFFF


class Flag(enum.IntFlag):
    NONE = 0
    FDE_SORTED = 0x1
    FRAME_POINTER = 0x2  # V1/V2 only
    FDE_FUNC_START_PCREL = 0x4  # V2 errata 1 (2.45) and V3


#: Flag bits a version may carry (libsframe rejects any other bit).
VALID_FLAGS = {VERSION_1: 0x7, VERSION_2: 0x7, VERSION_3: 0x5}


class ABI(enum.IntEnum):
    AARCH64_BE = 1
    AARCH64_LE = 2
    AMD64_LE = 3
    S390X_BE = 4

    @property
    def big_endian(self) -> bool:
        return self in (ABI.AARCH64_BE, ABI.S390X_BE)

    @property
    def is_aarch64(self) -> bool:
        return self in (ABI.AARCH64_BE, ABI.AARCH64_LE)

    @property
    def byte_order(self) -> str:
        return "big" if self.big_endian else "little"


class FDEType(enum.IntEnum):
    """How FRE start offsets are read (V3 calls it the "PC type")."""

    PCINC = 0  # offset from the function start
    PCMASK = 1  # offset within a block of rep_size bytes that repeats (PLT entries)


class FDEKind(enum.IntEnum):
    """V3 ``sfda_func_info2`` bits 0-4: how the FRE data words are laid out."""

    DEFAULT = 0
    FLEX = 1


class BaseReg(enum.IntEnum):
    FP = 0
    SP = 1


#: FRE type (FDE info bits 0-3) <-> width of each FRE start offset.
FRE_TYPE_TO_WIDTH = {0: 1, 1: 2, 2: 4}
WIDTH_TO_FRE_TYPE = {1: 0, 2: 1, 4: 2}
#: FRE info bits 5-6 <-> data-word size.
WORD_CODE_TO_SIZE = {0: 1, 1: 2, 2: 4}
WORD_SIZE_TO_CODE = {1: 0, 2: 1, 4: 2}

#: DWARF register numbers (SP, FP, RA) per ABI, used by FLEX control words.
DWARF_SP = {ABI.AARCH64_BE: 31, ABI.AARCH64_LE: 31, ABI.AMD64_LE: 7, ABI.S390X_BE: 15}
DWARF_FP = {ABI.AARCH64_BE: 29, ABI.AARCH64_LE: 29, ABI.AMD64_LE: 6, ABI.S390X_BE: 11}
DWARF_RA = {ABI.AARCH64_BE: 30, ABI.AARCH64_LE: 30, ABI.AMD64_LE: 16, ABI.S390X_BE: 14}

#: s390x: CFA words are stored as (cfa_offset - 160) / 8 (SFRAME_S390X_CFA_OFFSET_*).
S390X_CFA_OFFSET_ADJUSTMENT = -160
S390X_CFA_OFFSET_ALIGNMENT_FACTOR = 8
S390X_SP_VAL_OFFSET = -160


def s390x_cfa_decode(word: int) -> int:
    return word * S390X_CFA_OFFSET_ALIGNMENT_FACTOR - S390X_CFA_OFFSET_ADJUSTMENT


def s390x_cfa_encode(cfa_offset: int) -> int:
    return (cfa_offset + S390X_CFA_OFFSET_ADJUSTMENT) // S390X_CFA_OFFSET_ALIGNMENT_FACTOR


def fde_info(fre_type: int, fde_type: int, pauth_key: int, signal: bool = False) -> int:
    return ((int(signal) & 1) << 7) | ((pauth_key & 1) << 5) | ((fde_type & 1) << 4) | (fre_type & 0xF)


def fre_info(base_reg: int, count: int, word_size_code: int, mangled_ra: bool) -> int:
    return ((int(mangled_ra) & 1) << 7) | ((word_size_code & 3) << 5) | ((count & 0xF) << 1) | (base_reg & 1)


def signed_fits(value: int, size: int) -> bool:
    bits = 8 * size
    return -(1 << (bits - 1)) <= value < (1 << (bits - 1))


def unsigned_fits(value: int, size: int) -> bool:
    return 0 <= value < (1 << (8 * size))


# ---------------------------------------------------------------------------------------------
# FLEX control words (V3): bit 0 reg_p, bit 1 deref_p, bits 3+ DWARF register number.


def flex_control(regnum: int | None, deref: bool) -> int:
    """A FLEX control word: ``regnum`` None means CFA-relative (reg_p = 0)."""
    if regnum is None:
        return 2 if deref else 0
    return (regnum << 3) | (2 if deref else 0) | 1


def flex_control_fields(control: int) -> tuple[bool, bool, int]:
    """``(reg_p, deref_p, regnum)`` of a FLEX control word."""
    return bool(control & 1), bool(control & 2), control >> 3


def flex_layout(count: int, ra_control: int | None) -> tuple[int | None, int | None]:
    """Where the RA and FP (control, offset) pairs start in a FLEX FRE's data words.

    Words: CFA pair at 0-1; then either an RA pair at 2-3, or a single padding word 0 at 2
    when only the FP is described; FP pair after that.  Returns ``(ra_index, fp_index)``,
    ``None`` for an absent pair; ``ra_index`` 2 with padding is reported as ``None`` too (the
    caller sees the padding as word 2 == 0).
    """
    if count < 3:
        return None, None
    if ra_control == 0:  # padding: no RA rule, FP pair follows
        return None, (3 if count >= 5 else None)
    return 2, (4 if count >= 6 else None)


def flex_control_indices(count: int, words: list[int] | tuple[int, ...]) -> frozenset[int]:
    """Indices of the (unsigned) control words among a FLEX FRE's data words."""
    idx = {0} if count >= 1 else set()
    if count >= 3:
        idx.add(2)
        ra_ctrl = words[2] & 0xFFFFFFFF
        if ra_ctrl == 0:
            if count >= 4:
                idx.add(3)
        elif count >= 5:
            idx.add(4)
    return frozenset(idx)


# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SFrameHeader:
    """The 28-byte preamble + header (plus the raw auxiliary header bytes)."""

    version: int
    flags: int
    abi: ABI | int
    cfa_fixed_fp_offset: int = 0
    cfa_fixed_ra_offset: int = 0
    auxhdr_len: int = 0
    num_fdes: int = 0
    num_fres: int = 0
    fre_len: int = 0
    fdeoff: int = 0
    freoff: int = 0
    big_endian: bool = False
    aux_header: bytes = b""

    @property
    def size(self) -> int:
        """Header end: where the FDE sub-section offsets count from."""
        return PREAMBLE_HEADER_SIZE + self.auxhdr_len

    @property
    def sorted(self) -> bool:
        return bool(self.flags & Flag.FDE_SORTED)

    @property
    def pcrel(self) -> bool:
        return bool(self.flags & Flag.FDE_FUNC_START_PCREL)

    @property
    def byte_order(self) -> str:
        return "big" if self.big_endian else "little"


@dataclass(slots=True)
class SFrameFRE:
    """One Frame Row Entry.

    ``words`` holds the data words as stored: signed for DEFAULT FDEs; for FLEX FDEs the
    control words are unsigned and the offsets signed (``flex_control_indices``).  s390x CFA
    words are kept encoded (see :meth:`cfa_offset`).  ``word_size`` None lets the encoder
    pick the smallest size like gas.  ``offset`` is where the FRE was read (section offset),
    None for built FREs.
    """

    start: int
    base_reg: BaseReg | int = BaseReg.SP
    words: list[int] = field(default_factory=list)
    word_size: int | None = None
    mangled_ra: bool = False
    offset: int | None = None
    #: The raw fre_info byte as read (kept so odd bits round-trip); None for built FREs.
    info: int | None = None

    @property
    def is_outermost(self) -> bool:
        """Zero data words: RA undefined, the stack ends here (V2 errata 2 / V3)."""
        return len(self.words) == 0

    @property
    def cfa_base_is_sp(self) -> bool:
        return int(self.base_reg) == BaseReg.SP

    def size(self, address_width: int, flex: bool = False) -> int:
        """Encoded size in bytes (the word size gas would pick when ``word_size`` is None)."""
        ws = self.word_size
        if ws is None:
            try:
                ws = auto_word_size(self.words, flex) if self.words else 1
            except ValueError:  # does not fit any size: encode() will refuse it
                ws = 4
        return address_width + 1 + len(self.words) * ws

    def info_byte(self, word_size: int, flex: bool = False) -> int:
        """The fre_info byte: as read when it still describes this FRE exactly (odd but
        legal bits such as a base bit in a FLEX or RA-undefined FRE round-trip), else
        composed the way gas composes it."""
        if self.info is not None and len(self.words) <= 15:
            literal = fre_info(int(self.base_reg), len(self.words),
                               WORD_SIZE_TO_CODE[word_size], self.mangled_ra)
            if self.info == literal:
                return literal
        if not self.words:
            # gas writes 0x00 exactly for an RA-undefined FRE (keep the mangled bit if asked)
            return fre_info(0, 0, 0, self.mangled_ra)
        # gas writes base 0 in FLEX FDEs (the CFA register is in the control word).
        return fre_info(0 if flex else int(self.base_reg), len(self.words),
                        WORD_SIZE_TO_CODE[word_size], self.mangled_ra)


@dataclass(slots=True)
class SFrameFDE:
    """One Function Descriptor Entry with its FREs.

    ``start`` is the function's start address: absolute when the section address was known
    (``SFrameSection.section_address``), else relative to the section start (address 0).
    ``raw_start`` is the stored field (section- or field-relative per version/flags).
    """

    start: int
    size: int
    fres: list[SFrameFRE] = field(default_factory=list)
    fde_type: FDEType | int = FDEType.PCINC
    kind: FDEKind | int = FDEKind.DEFAULT
    rep_size: int = 0
    pauth_key: int = 0  # 0 = A, 1 = B (AArch64)
    signal: bool = False
    #: Width (1/2/4) of FRE start offsets; None = the smallest gas would pick.
    fre_address_width: int | None = None
    #: Offset of this FDE's data (V3: its attribute record) in the FRE sub-section, as read.
    fre_offset: int | None = None
    raw_start: int | None = None
    #: In a relocatable file: the start field as stored, before relocation (objdump
    #: 2.40-2.44 print that).
    unrelocated_start: int | None = None
    #: Declared FRE count (may disagree with len(fres) only in hand-made invalid data).
    num_fres: int | None = None
    #: Raw info / info2 bytes as read (bits beyond the known fields round-trip).
    info: int | None = None
    info2: int | None = None
    #: Section offset of the FDE (index entry), None for built FDEs.
    offset: int | None = None
    index: int | None = None

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def fre_type(self) -> int:
        return WIDTH_TO_FRE_TYPE[self.fre_address_width or self.auto_address_width()]

    @property
    def is_pcmask(self) -> bool:
        return int(self.fde_type) == FDEType.PCMASK

    @property
    def is_flex(self) -> bool:
        return int(self.kind) == FDEKind.FLEX

    def auto_address_width(self) -> int:
        """gas (sframe-opt.c): ADDR1 if the function is < 0x100 bytes, ADDR2 if < 0x10000.

        Widened further when an FRE start would not fit (hand-built PCMASK FDEs).
        """
        top = max([self.size] + [f.start for f in self.fres])
        if top < 0x100:
            return 1
        if top < 0x10000:
            return 2
        return 4

    def contains(self, pc: int) -> bool:
        return self.start <= pc < self.start + self.size


@dataclass(slots=True)
class SFrameSection:
    """A decoded (or built) SFrame section."""

    header: SFrameHeader
    fdes: list[SFrameFDE]
    section_address: int = 0
    path: str | None = None
    #: The bytes this section was decoded from (None when built).
    data: bytes | None = None
    #: From a relocatable (.o) file: function starts are offsets in their own text
    #: sections (relocations applied with every section at 0), so they may coincide.
    relocatable: bool = False
    #: Bytes after the size the header accounts for (gas pads s390x objects' sections);
    #: the encoder writes them back so such sections round-trip.
    trailing: bytes = b""
    #: (FDE count, FRE count) when decoded: tells the dumper the header still describes
    #: the objects (objdump prints the header's counts, even inconsistent ones).
    decoded_counts: tuple[int, int] | None = None

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def abi(self) -> ABI | int:
        return self.header.abi

    @property
    def big_endian(self) -> bool:
        return self.header.big_endian

    @property
    def byte_order(self) -> str:
        return self.header.byte_order

    @property
    def flags(self) -> int:
        return self.header.flags

    @property
    def num_fres(self) -> int:
        return sum(len(f.fres) for f in self.fdes)

    @classmethod
    def build(cls, abi: ABI | int, fdes: list[SFrameFDE], *, version: int = VERSION_3,
              section_address: int = 0, sort: bool = True, pcrel: bool = True,
              cfa_fixed_fp_offset: int = 0, cfa_fixed_ra_offset: int | None = None,
              ) -> SFrameSection:
        """A new section laid out the way GNU tools would (the encoder picks widths).

        ``fdes`` carry absolute function starts (in the address space where the section
        sits at ``section_address``).  ``sort`` orders the index by start and sets
        ``SFRAME_F_FDE_SORTED`` (what ld does; gas keeps source order, unsorted).  The FRE
        sub-section is laid out in the order of ``fdes`` as given (gas's order), whatever
        the index order.  AMD64 gets the fixed RA offset -8 unless told otherwise; V2+
        sections get ``SFRAME_F_FDE_FUNC_START_PCREL`` (``pcrel``) like gas >= 2.45.
        """
        from sfunwind.sframe.encode import assign_fre_offsets

        abi = ABI(abi)
        if cfa_fixed_ra_offset is None:
            cfa_fixed_ra_offset = -8 if abi is ABI.AMD64_LE else 0
        flags = Flag.NONE
        if sort:
            flags |= Flag.FDE_SORTED
        if pcrel and version >= VERSION_2:
            flags |= Flag.FDE_FUNC_START_PCREL
        header = SFrameHeader(version=version, flags=int(flags), abi=abi,
                              cfa_fixed_fp_offset=cfa_fixed_fp_offset,
                              cfa_fixed_ra_offset=cfa_fixed_ra_offset,
                              big_endian=abi.big_endian)
        for fde in fdes:
            fde.raw_start = None
            fde.unrelocated_start = None
            fde.num_fres = None
            fde.offset = None
            fde.info = None
            fde.info2 = None
            for fre in fde.fres:
                fre.info = None
                fre.offset = None
        assign_fre_offsets(list(fdes), version)
        ordered = sorted(fdes, key=lambda f: f.start) if sort else list(fdes)
        for i, fde in enumerate(ordered):
            fde.index = i
        return cls(header=header, fdes=ordered, section_address=section_address)


def auto_word_size(words: list[int] | tuple[int, ...], flex: bool) -> int:
    """The smallest data-word size (1/2/4) for an FRE's words, as gas picks it.

    Offsets must fit signed; FLEX control words must fit unsigned.  Raises ValueError when
    nothing up to 4 bytes fits (gas: "SFrame unsupported FRE data word size").
    """
    controls = flex_control_indices(len(words), words) if flex else frozenset()
    for size in (1, 2, 4):
        if all(unsigned_fits(w, size) if i in controls else signed_fits(w, size)
               for i, w in enumerate(words)):
            return size
    raise ValueError(f"FRE data words {list(words)} do not fit in 4 bytes")
