"""``objdump --sframe`` text (binutils 2.47, 2.44 and 2.40 formats) and a JSON form.

The text follows libsframe's ``sframe-dump.c`` printf formats byte for byte, including the
trailing spaces of every row (columns are padded) — see ``sframe-format.md`` §11.  The
version differences that matter:

* **2.47** (same as 2.46): V2 and V3; flag names one per line; ``CFA fixed … offset`` lines;
  ``f`` for a fixed RA; ``U`` for an RA padding word; ``RA undefined`` rows; ``attr = "SF"``;
  FLEX cells; function starts honour ``SFRAME_F_FDE_FUNC_START_PCREL``.
* **2.44** (2.41-2.44): V2 only; one flag name (a ``strcpy`` bug keeps only the last one);
  function starts always section-relative; no ``RA undefined``/attr/FLEX forms; a V1
  section prints its header and "SFrame version not supported".
* **2.40**: V1 only; like 2.44 but without the ``CFA fixed`` lines and with ``u`` where the
  RA is fixed.

libsframe 2.46+ cannot decode V1; ``compat="2.47"`` still renders a V1 section in the 2.47
layout (objdump itself would only report a decode failure).
"""

from __future__ import annotations

from typing import Any

from sfunwind.errors import UsageError
from sfunwind.sframe.format import (
    ABI,
    DWARF_FP,
    DWARF_SP,
    VERSION_1,
    VERSION_2,
    VERSION_3,
    Flag,
    SFrameFDE,
    SFrameFRE,
    SFrameSection,
    flex_control_fields,
    s390x_cfa_decode,
)

COMPATS = ("2.47", "2.46", "2.45", "2.44", "2.40")

#: objdump's BFD target names by ABI (as printed by the matching objdump of that target).
BFD_NAMES = {
    ABI.AARCH64_LE: "elf64-littleaarch64",
    ABI.AARCH64_BE: "elf64-bigaarch64",
    ABI.AMD64_LE: "elf64-x86-64",
    ABI.S390X_BE: "elf64-s390",
}

_MASK64 = (1 << 64) - 1


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _norm_compat(compat: str) -> str:
    if compat in ("2.47", "2.46", "2.45"):
        return "2.47"
    if compat in ("2.44", "2.43", "2.42", "2.41"):
        return "2.44"
    if compat == "2.40":
        return "2.40"
    raise UsageError(f"unknown objdump compatibility {compat!r} (choose 2.47, 2.44 or 2.40)")


def dump_text(section: SFrameSection, *, compat: str = "2.47", filename: str | None = None,
              file_format: str | None = None, section_name: str = ".sframe",
              file_header: bool = True, relocations: bool = True) -> str:
    """The text ``objdump --sframe`` prints for this section.

    With ``file_header`` the output starts like objdump's
    (``\\n<filename>:     file format <bfd>\\n\\n``); ``filename`` defaults to the section's
    path.  ``file_format`` overrides the BFD name (a generic objdump reading an aarch64 file
    prints ``elf64-little``).  ``relocations=False`` shows a ``.o``'s start fields as
    stored, as an objdump that does not know the target's relocations does (the native
    x86-64 objdump reading an aarch64 object).
    """
    mode = _norm_compat(compat)
    ver = section.version
    if mode == "2.44" and ver == VERSION_3:
        raise UsageError("objdump 2.44 cannot decode SFrame V3 (use --objdump-compat 2.47)")
    if mode == "2.40" and ver != VERSION_1:
        raise UsageError(f"objdump 2.40 decodes only SFrame V1, this is V{ver}")
    out: list[str] = []
    if file_header:
        name = filename if filename is not None else (section.path or "<sframe>")
        bfd = file_format or BFD_NAMES.get(section.abi, "elf64-little")  # type: ignore[call-overload]
        out.append(f"\n{name}:     file format {bfd}\n\n")
    out.append(f"Contents of the SFrame section {section_name}:")
    out.append(_header_text(section, mode))
    if mode == "2.44" and ver == VERSION_1:
        out.append("\n No further information can be displayed.  SFrame version not supported\n")
        return "".join(out)
    out.append("\n  Function Index :\n")
    for i, fde in enumerate(section.fdes):
        out.append(_fde_text(section, fde, i, mode, relocations))
        out.append("\n")
    return "".join(out)


def _header_text(section: SFrameSection, mode: str) -> str:
    h = section.header
    ver = h.version
    names = {VERSION_1: "SFRAME_VERSION_1", VERSION_2: "SFRAME_VERSION_2",
             VERSION_3: "SFRAME_VERSION_3"}
    known = {"2.40": (VERSION_1,), "2.44": (VERSION_1, VERSION_2),
             "2.47": (VERSION_1, VERSION_2, VERSION_3)}[mode]
    ver_str = names[ver] if ver in known else "(null)"
    lines = ["\n  Header :\n\n", f"    Version: {ver_str}\n"]
    flags = int(h.flags)
    if mode == "2.47":
        if flags == 0:
            lines.append("    Flags: NONE\n")
        else:
            parts: list[str] = []
            if flags & Flag.FDE_SORTED:
                parts.append("SFRAME_F_FDE_SORTED")
            if flags & Flag.FRAME_POINTER and ver != VERSION_3:
                parts.append("SFRAME_F_FRAME_POINTER")
            if flags & Flag.FDE_FUNC_START_PCREL:
                parts.append("SFRAME_F_FDE_FUNC_START_PCREL")
            known_bits = 0x5 if ver == VERSION_3 else 0x7
            rest = flags & ~known_bits & 0xFF
            items: list[str] = parts + ([str(rest)] if rest else [])
            for k, item in enumerate(items):
                prefix = "Flags: " if k == 0 else " "
                comma = "," if k + 1 < len(items) else ""
                lines.append(f"{prefix:>11}{item}{comma}\n")
    else:
        # 2.40-2.44: strcpy() overwrote the buffer, so only the last known name survives.
        text = ""
        if flags:
            if flags & Flag.FDE_SORTED:
                text = "SFRAME_F_FDE_SORTED"
            if flags & Flag.FRAME_POINTER:
                text = "SFRAME_F_FRAME_POINTER"
        else:
            text = "NONE"
        lines.append(f"    Flags: {text}\n")
    if mode != "2.40":
        if h.cfa_fixed_fp_offset:
            lines.append(f"    CFA fixed FP offset: {h.cfa_fixed_fp_offset}\n")
        if h.cfa_fixed_ra_offset:
            lines.append(f"    CFA fixed RA offset: {h.cfa_fixed_ra_offset}\n")
    # objdump prints the header's counts; they are this section's as long as it was decoded
    # and its FDE/FRE counts were not changed since (else print the current ones).
    num_fdes = len(section.fdes)
    num_fres = section.num_fres
    if section.decoded_counts == (num_fdes, num_fres):
        num_fdes, num_fres = h.num_fdes, h.num_fres
    lines.append(f"    Num FDEs: {_s32(num_fdes)}\n")
    lines.append(f"    Num FREs: {_s32(num_fres)}\n")
    return "".join(lines)


def _fde_pc(section: SFrameSection, fde: SFrameFDE, mode: str, relocations: bool) -> int:
    if mode == "2.47" and (relocations or fde.unrelocated_start is None):
        return fde.start & _MASK64
    if mode == "2.47":
        pcrel = fde.offset if section.header.pcrel and fde.offset is not None else 0
        return (section.section_address + pcrel + fde.unrelocated_start) & _MASK64
    if fde.raw_start is None:
        return fde.start & _MASK64
    # 2.40-2.44: int32 start + section address, no PC-relative adjustment, and (in a .o)
    # no relocation.
    raw = fde.unrelocated_start if fde.unrelocated_start is not None else fde.raw_start
    return (section.section_address + _s32(raw)) & _MASK64


def _fde_text(section: SFrameSection, fde: SFrameFDE, idx: int, mode: str,
              relocations: bool = True) -> str:
    abi = section.abi
    pc = _fde_pc(section, fde, mode, relocations)
    s = [f"\n    func idx [{idx}]: pc = 0x{pc:x}, size = {_s32(fde.size)} bytes"]
    if mode == "2.47":
        attrs = ("S" if fde.signal and section.version == VERSION_3 else "") + \
                ("F" if fde.is_flex and section.version == VERSION_3 else "")
        if attrs:
            s.append(f', attr = "{attrs}"')
    if isinstance(abi, ABI) and abi.is_aarch64 and fde.pauth_key == 1:
        s.append(", pauth = B key")
    marker = "[m]" if fde.is_pcmask else "   "
    s.append(f"\n    {'STARTPC':<7}{marker:<8} {'CFA':<10}{'FP':<10}{'RA':<13}")
    for fre in fde.fres:
        vma = fre.start if fde.is_pcmask else (pc + fre.start) & _MASK64
        s.append(f"\n    {vma:016x}")
        if mode == "2.47" and fre.is_outermost:
            s.append("  RA undefined")
            continue
        cfa, fp, ra = fre_cells(section, fde, fre, mode)
        s.append(f"  {cfa:<10}{fp:<10}{ra:<13}")
    return "".join(s)


def _disp(abi: ABI | int, control: int, offset: int) -> str:
    reg_p, deref_p, regnum = flex_control_fields(control)
    if not reg_p:
        name = "c"
    elif regnum == DWARF_SP.get(abi):  # type: ignore[call-overload]
        name = "sp"
    elif regnum == DWARF_FP.get(abi):  # type: ignore[call-overload]
        name = "fp"
    else:
        name = f"r{regnum}"
    if reg_p and deref_p:
        return f"({name}{offset:+d})"
    return f"{name}{offset:+d}"


def fre_cells(section: SFrameSection, fde: SFrameFDE, fre: SFrameFRE,
              compat: str = "2.47") -> tuple[str, str, str]:
    """The CFA, FP and RA cells of one FRE row (without padding)."""
    mode = _norm_compat(compat)
    h = section.header
    abi = section.abi
    w = fre.words
    n = len(w)
    s390x = abi == ABI.S390X_BE
    suffix = "[s]" if fre.mangled_ra else "   "
    if fde.is_flex and mode == "2.47":
        cfa_off = w[1] if n > 1 else 0
        if s390x:
            cfa_off = s390x_cfa_decode(cfa_off)
        cfa = _disp(abi, w[0] if n else 0, cfa_off)
        ra_ctrl = w[2] if n > 2 else None
        if ra_ctrl is None:
            ra = "f" if h.cfa_fixed_ra_offset else "u"
            fp_at = None
        elif ra_ctrl == 0:
            ra = "U"
            fp_at = 3
        else:
            ra = _disp(abi, ra_ctrl, w[3]) if n > 3 else "u"
            fp_at = 4
        if fp_at is not None and n > fp_at + 1:
            fp = _disp(abi, w[fp_at], w[fp_at + 1])
        elif h.cfa_fixed_fp_offset:
            fp = f"c{h.cfa_fixed_fp_offset:+d}"
        else:
            fp = "u"
        return cfa, fp, ra + suffix

    base = "sp" if fre.cfa_base_is_sp else "fp"
    cfa_off = w[0] if n else 0
    if s390x:
        cfa_off = s390x_cfa_decode(cfa_off)
    cfa = f"{base}+{_s32(cfa_off)}"
    regnum_trick = s390x and section.version == VERSION_2 and mode == "2.47"
    # FP
    fp_idx = 1 if h.cfa_fixed_ra_offset else 2
    if h.cfa_fixed_fp_offset and not (mode == "2.47" and fre.is_outermost):
        fp = f"c{h.cfa_fixed_fp_offset:+d}"
    elif n > fp_idx:
        fpw = w[fp_idx]
        fp = f"r{fpw >> 1}" if regnum_trick and fpw & 1 else f"c{fpw:+d}"
    else:
        fp = "u"
    # RA
    if h.cfa_fixed_ra_offset and mode != "2.40":
        ra = "f"
    elif not h.cfa_fixed_ra_offset and n > 1:
        raw = w[1]
        if raw == 0 and mode == "2.47":
            ra = "U"
        elif regnum_trick and raw & 1:
            ra = f"r{raw >> 1}"
        else:
            ra = f"c{raw:+d}"
    else:
        ra = "u"
    return cfa, fp, ra + suffix


def dump_json(section: SFrameSection) -> dict[str, Any]:
    """The section as plain data (what ``sfunwind sframe dump --json`` prints)."""
    h = section.header
    abi = section.abi
    fdes = []
    for i, fde in enumerate(section.fdes):
        fres = []
        for fre in fde.fres:
            cfa, fp, ra = fre_cells(section, fde, fre)
            fres.append({
                "start": fre.start,
                "address": fre.start if fde.is_pcmask else fde.start + fre.start,
                "base_reg": "sp" if fre.cfa_base_is_sp else "fp",
                "words": list(fre.words),
                "word_size": fre.word_size,
                "mangled_ra": fre.mangled_ra,
                "outermost": fre.is_outermost,
                "cfa": None if fre.is_outermost else cfa,
                "fp": None if fre.is_outermost else fp,
                "ra": None if fre.is_outermost else ra.rstrip().removesuffix("[s]"),
                "offset": fre.offset,
            })
        fdes.append({
            "index": i,
            "start": fde.start,
            "size": fde.size,
            "end": fde.start + fde.size,
            "type": "PCMASK" if fde.is_pcmask else "PCINC",
            "kind": "FLEX" if fde.is_flex else "DEFAULT",
            "rep_size": fde.rep_size,
            "pauth_key": "B" if fde.pauth_key else "A",
            "signal": fde.signal,
            "fre_address_width": fde.fre_address_width,
            "fre_offset": fde.fre_offset,
            "offset": fde.offset,
            "fres": fres,
        })
    flags = int(h.flags)
    return {
        "path": section.path,
        "section_address": section.section_address,
        "version": h.version,
        "flags": flags,
        "flag_names": [f.name for f in Flag if f.value and flags & f.value],
        "abi": abi.name if isinstance(abi, ABI) else int(abi),
        "byte_order": section.byte_order,
        "cfa_fixed_fp_offset": h.cfa_fixed_fp_offset,
        "cfa_fixed_ra_offset": h.cfa_fixed_ra_offset,
        "auxhdr_len": h.auxhdr_len,
        "num_fdes": len(section.fdes),
        "num_fres": section.num_fres,
        "fdes": fdes,
    }
