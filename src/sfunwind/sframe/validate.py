"""Consistency checks of an SFrame section (a superset of the kernel's SFRAME_VALIDATION).

``validate(section)`` returns every problem found, each with the section offset it concerns
(the FDE's index entry, the FRE, or the header field) and a stable ``code``:

=================== ==========================================================================
code                meaning
=================== ==========================================================================
flags               flag bits the version does not define (libsframe refuses the section)
num-fdes            (kernel) no FDE at all
num-fres            the header's FRE count differs from the FDEs' counts (or is 0: kernel)
fre-len             the header's FRE sub-section length differs from the data the FDEs use
fde-unsorted        SFRAME_F_FDE_SORTED is set (or required) but starts are not increasing
fde-overlap         two functions' ranges overlap (lookups become ambiguous)
fde-duplicate       (kernel) two FDEs start at the same address
fde-kind            a V3 FDE type other than DEFAULT/FLEX
rep-size            a PCMASK FDE with rep_size 0, or a FRE start beyond rep_size
fre-overlap         two FDEs' FRE data overlap in the FRE sub-section
fre-order           FRE starts of one FDE are not strictly increasing (kernel: -EFAULT)
fre-start           a PCINC FRE starting beyond the function's size
fre-word-count      more data words than libsframe accepts (6), or a count/layout the ABI
                    and FDE type do not allow (kernel: leftover words -> -EFAULT)
flex-cfa            a FLEX CFA control word without reg_p (kernel: -EINVAL)
version             (kernel) not SFrame V3
pcrel               (kernel) SFRAME_F_FDE_FUNC_START_PCREL missing
sorted              (kernel, vmlinux) SFRAME_F_FDE_SORTED missing
auxhdr              (kernel) a non-empty auxiliary header
fde-text            an FDE starting outside the given text ranges (the kernel's
                    ``sframe_func_start_addr_valid``: .text, init text, .exit.text, ...)
=================== ==========================================================================

``kernel=True`` adds the header requirements of the kernel's V3 reader
(``sframe_read_header``: V3, PCREL, SORTED, no aux header, non-zero counts);
``text_ranges`` (``[(start, end), ...]``) checks every function start like the kernel does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from sfunwind.sframe.format import (
    ABI,
    MAX_DATA_WORDS,
    PREAMBLE_HEADER_SIZE,
    V3_ATTR_SIZE,
    VALID_FLAGS,
    VERSION_1,
    VERSION_3,
    FDEKind,
    Flag,
    SFrameSection,
)


@dataclass(frozen=True, slots=True)
class Problem:
    offset: int | None
    code: str
    message: str

    def __str__(self) -> str:
        where = f"{self.offset:#x}" if self.offset is not None else "-"
        return f"{where}: {self.code}: {self.message}"


def _default_word_counts(section: SFrameSection) -> set[int]:
    h = section.header
    if h.cfa_fixed_ra_offset:
        return {0, 1, 2} if not h.cfa_fixed_fp_offset else {0, 1}
    if h.cfa_fixed_fp_offset:
        return {0, 1, 2}
    return {0, 1, 2, 3}


def validate(section: SFrameSection, *, kernel: bool = False,
             text_ranges: list[tuple[int, int]] | None = None) -> list[Problem]:
    """Every problem of ``section`` (empty list when it is consistent)."""
    probs: list[Problem] = []
    h = section.header
    ver = h.version
    add = probs.append
    flags = int(h.flags)
    if flags & ~VALID_FLAGS.get(ver, 0):
        add(Problem(3, "flags", f"flag bits {flags & ~VALID_FLAGS.get(ver, 0):#x} are not "
                                f"defined for SFrame V{ver}"))
    if kernel:
        if ver != VERSION_3:
            add(Problem(2, "version", f"the kernel reads only SFrame V3, this is V{ver}"))
        if not flags & Flag.FDE_FUNC_START_PCREL:
            add(Problem(3, "pcrel", "SFRAME_F_FDE_FUNC_START_PCREL is not set"))
        if not flags & Flag.FDE_SORTED:
            add(Problem(3, "sorted", "SFRAME_F_FDE_SORTED is not set"))
        if h.auxhdr_len:
            add(Problem(7, "auxhdr", f"auxiliary header of {h.auxhdr_len} bytes"))
        if not section.fdes:
            add(Problem(8, "num-fdes", "no FDEs"))
    decoded = section.data is not None
    total = section.num_fres
    if decoded and h.num_fres != total:
        add(Problem(0xC, "num-fres", f"header counts {h.num_fres} FREs, the FDEs hold {total}"))
    elif kernel and total == 0:
        add(Problem(0xC, "num-fres", "no FREs"))

    hdr_end = PREAMBLE_HEADER_SIZE + h.auxhdr_len
    fre_sub = hdr_end + h.freoff

    # FDE order and overlap.
    fdes = section.fdes
    sorted_flag = bool(flags & Flag.FDE_SORTED) or kernel
    # In a .o every function's start is an offset in its own section: no address checks.
    check_addresses = not section.relocatable
    for i in range(1, len(fdes) if check_addresses else 0):
        a, b = fdes[i - 1], fdes[i]
        if sorted_flag and b.start < a.start:
            add(Problem(b.offset, "fde-unsorted",
                        f"FDE {i} starts at {b.start:#x}, before FDE {i - 1} ({a.start:#x})"))
        elif kernel and b.start == a.start:
            add(Problem(b.offset, "fde-duplicate",
                        f"FDE {i} starts at {b.start:#x} like FDE {i - 1}"))
    by_start = sorted(range(len(fdes)), key=lambda k: fdes[k].start)
    for x, y in itertools.pairwise(by_start if check_addresses else []):
        a, b = fdes[x], fdes[y]
        if a.size and b.size and b.start < a.start + a.size and (b.start, b.size) != (a.start, 0):
            add(Problem(b.offset, "fde-overlap",
                        f"FDE {y} [{b.start:#x}, {b.start + b.size:#x}) overlaps FDE {x} "
                        f"[{a.start:#x}, {a.start + a.size:#x})"))

    # FRE data placement.
    spans: list[tuple[int, int, int]] = []
    used_end = 0
    for i, fde in enumerate(fdes):
        if fde.fre_offset is None:
            continue
        width = fde.fre_address_width or fde.auto_address_width()
        size = sum(f.size(width, fde.is_flex) for f in fde.fres)
        if ver == VERSION_3:
            size += V3_ATTR_SIZE
        spans.append((fde.fre_offset, fde.fre_offset + size, i))
        used_end = max(used_end, fde.fre_offset + size)
    spans.sort()
    for (s0, e0, i0), (s1, e1, i1) in itertools.pairwise(spans):
        if s1 < e0 and (s0, e0) != (s1, e1):
            add(Problem(fre_sub + s1, "fre-overlap",
                        f"FRE data of FDE {i1} [{s1:#x}, {e1:#x}) overlaps FDE {i0}'s "
                        f"[{s0:#x}, {e0:#x})"))
    if decoded and spans and used_end != h.fre_len:
        add(Problem(0x10, "fre-len", f"header FRE sub-section length {h.fre_len:#x}, the FDEs "
                                     f"use {used_end:#x} bytes"))

    if text_ranges is not None:
        for i, fde in enumerate(fdes):
            if not any(lo <= fde.start < hi for lo, hi in text_ranges):
                add(Problem(fde.offset, "fde-text", f"FDE {i} starts at {fde.start:#x}, outside "
                                                    f"the text ranges"))

    allowed_default = _default_word_counts(section)
    abi = section.abi
    for i, fde in enumerate(fdes):
        where = fde.offset
        kind = int(fde.kind)
        if kind not in (FDEKind.DEFAULT, FDEKind.FLEX):
            add(Problem(where, "fde-kind", f"FDE {i}: unknown FDE type {kind}"))
            continue
        if fde.is_pcmask and fde.rep_size == 0 and ver != VERSION_1:
            add(Problem(where, "rep-size", f"FDE {i}: PCMASK FDE with rep_size 0"))
        prev = None
        for j, fre in enumerate(fde.fres):
            at = fre.offset if fre.offset is not None else where
            if prev is not None and fre.start <= prev:
                add(Problem(at, "fre-order", f"FDE {i} FRE {j}: start {fre.start:#x} does not "
                                             f"follow {prev:#x}"))
            prev = fre.start
            if fde.is_pcmask:
                if ver != VERSION_1 and fde.rep_size and fre.start >= fde.rep_size:
                    add(Problem(at, "rep-size", f"FDE {i} FRE {j}: start {fre.start:#x} beyond "
                                                f"rep_size {fde.rep_size}"))
            elif fre.start > fde.size:
                add(Problem(at, "fre-start", f"FDE {i} FRE {j}: start {fre.start:#x} beyond the "
                                             f"function size {fde.size:#x}"))
            n = len(fre.words)
            if n > MAX_DATA_WORDS:
                add(Problem(at, "fre-word-count", f"FDE {i} FRE {j}: {n} data words (libsframe "
                                                  f"accepts at most {MAX_DATA_WORDS})"))
                continue
            if fde.is_flex:
                if n == 0:
                    continue
                ok = n in (2, 4, 5, 6)
                if n >= 3:
                    pad = fre.words[2] == 0
                    ok = ok and (n == 5 if pad else n in (4, 6))
                if not ok:
                    add(Problem(at, "fre-word-count",
                                f"FDE {i} FRE {j}: {n} data words is not a FLEX layout"))
                if not fre.words[0] & 1:
                    add(Problem(at, "flex-cfa", f"FDE {i} FRE {j}: CFA control word "
                                                f"{fre.words[0]:#x} has no base register"))
            elif n not in allowed_default:
                add(Problem(at, "fre-word-count",
                            f"FDE {i} FRE {j}: {n} data words (at most "
                            f"{max(allowed_default)} for {ABI(abi).name} with these header "
                            f"fixed offsets)"))
    return probs
