"""Per-architecture constants for CFI evaluation and SFrame generation."""

from __future__ import annotations

from dataclasses import dataclass

from sfunwind.errors import UsageError

EM_X86_64 = 62
EM_AARCH64 = 183

SFRAME_ABI_AARCH64_ENDIAN_BIG = 1
SFRAME_ABI_AARCH64_ENDIAN_LITTLE = 2
SFRAME_ABI_AMD64_ENDIAN_LITTLE = 3


@dataclass(frozen=True, slots=True)
class Arch:
    """DWARF register numbers and gas's SFrame target hooks for one ABI."""

    name: str
    sp: int
    fp: int
    ra: int  # DWARF2_DEFAULT_RETURN_COLUMN
    #: gas ``sframe_ra_tracking_p()``: the RA location is recorded per FRE (AArch64).
    ra_tracking: bool
    #: gas ``sframe_support_flex_fde_p()``: FLEX FDEs may be emitted (x86-64 only here).
    flex: bool
    #: gas ``sframe_cfa_ra_offset()``: the fixed RA offset from the CFA (x86-64: -8).
    cfa_ra_offset: int
    sframe_abi: int
    big_endian: bool = False
    address_size: int = 8
    register_names: tuple[str, ...] = ()

    def reg_name(self, reg: int) -> str:
        if reg < len(self.register_names):
            return self.register_names[reg]
        return f"r{reg}"


_AARCH64_NAMES = tuple([f"x{i}" for i in range(31)] + ["sp"])
_X86_64_NAMES = ("rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10",
                 "r11", "r12", "r13", "r14", "r15", "rip")

AARCH64 = Arch("aarch64", sp=31, fp=29, ra=30, ra_tracking=True, flex=False,
               cfa_ra_offset=0, sframe_abi=SFRAME_ABI_AARCH64_ENDIAN_LITTLE,
               register_names=_AARCH64_NAMES)
AARCH64_BE = Arch("aarch64_be", sp=31, fp=29, ra=30, ra_tracking=True, flex=False,
                  cfa_ra_offset=0, sframe_abi=SFRAME_ABI_AARCH64_ENDIAN_BIG, big_endian=True,
                  register_names=_AARCH64_NAMES)
X86_64 = Arch("x86_64", sp=7, fp=6, ra=16, ra_tracking=False, flex=True, cfa_ra_offset=-8,
              sframe_abi=SFRAME_ABI_AMD64_ENDIAN_LITTLE, register_names=_X86_64_NAMES)

ARCHES = {"aarch64": AARCH64, "arm64": AARCH64, "aarch64_be": AARCH64_BE, "x86_64": X86_64,
          "x86-64": X86_64, "amd64": X86_64}


def arch_for_elf(e_machine: int, big_endian: bool, elfclass: int = 64) -> Arch:
    """The :class:`Arch` of an ELF file (``e_machine``, byte order, class)."""
    if elfclass != 64:
        raise UsageError(f"{elfclass}-bit ELF: SFrame generation supports only 64-bit "
                         "AArch64 and x86-64")
    if e_machine == EM_AARCH64:
        return AARCH64_BE if big_endian else AARCH64
    if e_machine == EM_X86_64:
        return X86_64
    raise UsageError(f"ELF machine {e_machine}: only AArch64 and x86-64 are supported")


def arch_by_name(name: str) -> Arch:
    try:
        return ARCHES[name.lower()]
    except KeyError:
        raise UsageError(f"unknown architecture {name!r} (aarch64, aarch64_be, x86_64)") from None
