"""PC lookup with libsframe's semantics, for one PC or a numpy array of PCs.

Semantics (``sframe_find_fre`` of libsframe 2.46, ``sframe-format.md`` §10.1):

* the FDE is the one whose ``[start, start + size)`` contains the PC — a PC in a gap
  between functions is a miss, never "the previous function";
* the offset into the function is taken modulo ``rep_size`` for PCMASK FDEs (PLT stubs);
* the FRE is the last one whose start is <= that offset (FREs of one FDE are walked in
  order; an FDE whose FRE starts go *down* is answered by the literal libsframe walk);
* an FDE without FREs gives no answer (``find`` returns None), as in libsframe.

The table is a set of numpy arrays (one entry per FDE sorted by start, one per FRE), so
``find_many`` answers a whole array of PCs with a few vectorised passes, and the rules of
every FRE are resolved once at build time.  :meth:`SFrameTable.from_bytes` builds it
straight from the section bytes without creating Python objects per FRE (the fast path for
kernel-sized sections); ``SFrameTable(section)`` builds it from a decoded/built model;
:meth:`SFrameTable.from_file` finds the section in a file and takes the fast path.

``find`` (one PC) uses plain Python sequences built on its first call: a bucket index over
the FREs' absolute starts (one short bisect per lookup when FDEs are sorted and disjoint,
the general FDE-then-FRE search otherwise), and one rule prototype per distinct rule
combination; the rows of the last 65536 FREs looked up are kept (rows are immutable).

V1 PCMASK FDEs have no rep_size; their FRE starts are taken as offsets from the function
start (libsframe 2.40's 8-bit-mask comparison never matched real PLTs).

Rule mapping (``sfunwind.rules``; the kernel's ``unwind_types.h`` model): AArch64 ``u`` RA
-> RETAIN (still in x30), ``c-8`` -> CFA_OFFSET_DEREF(-8); the x86-64 fixed RA ->
CFA_OFFSET_DEREF(-8); an RA/FP offset word of 0 (s390x padding) -> RETAIN; s390x V2 odd
words -> REG_OFFSET(word >> 1); FLEX control/offset pairs per the V3 spec.  A zero-word FRE
is an outermost row.
"""

from __future__ import annotations

import array
import bisect
from dataclasses import dataclass

import numpy as np

from sfunwind.errors import SFrameFormatError
from sfunwind.rules import (
    CfaKind,
    CfaRule,
    PAuthKey,
    Rule,
    RuleKind,
    UnwindRow,
    outermost_row,
)
from sfunwind.sframe._parse import fre_positions, read_uint
from sfunwind.sframe.decode import decode_header
from sfunwind.sframe.format import (
    ABI,
    DWARF_FP,
    DWARF_SP,
    FDE_SIZE,
    MAX_DATA_WORDS,
    V3_ATTR_SIZE,
    VERSION_2,
    VERSION_3,
    FDEKind,
    Flag,
    SFrameSection,
)

# Small integer codes of the rule kinds in the per-FRE arrays.
CFA_KINDS = (CfaKind.SP_OFFSET, CfaKind.FP_OFFSET, CfaKind.REG_OFFSET,
             CfaKind.REG_OFFSET_DEREF, CfaKind.UNREPRESENTABLE)
CFA_SP, CFA_FP, CFA_REG, CFA_REG_DEREF, CFA_NONE = range(5)
RULE_KINDS = (RuleKind.RETAIN, RuleKind.CFA_OFFSET, RuleKind.CFA_OFFSET_DEREF,
              RuleKind.REG_OFFSET, RuleKind.REG_OFFSET_DEREF, RuleKind.UNDEFINED)
R_RETAIN, R_CFA, R_CFA_DEREF, R_REG, R_REG_DEREF, R_UNDEF = range(6)

_U64 = np.uint64
_ROW_CACHE_SIZE = 1 << 16
#: Largest exact bucket index (entries of 4 bytes: 64 MiB), e.g. 18 MB of AArch64 text -> 4.6M.
_EXACT_BUCKETS_MAX = 1 << 24


def _int_array(a: np.ndarray, code: str = "q") -> array.array:
    dtype = np.uint64 if code == "Q" else np.int64
    return array.array(code, np.ascontiguousarray(a, dtype=dtype).tobytes())


def _row_hash(columns: tuple[np.ndarray, ...], n: int) -> np.ndarray:
    """A 64-bit multiply-xorshift hash of each row across ``columns`` (not collision-free:
    callers verify)."""
    hashed = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k, col in enumerate(columns):
            mult = np.uint64((0x9E3779B97F4A7C15 ^ (k * 0xBF58476D1CE4E5B9)) & (2**64 - 1) | 1)
            hashed += col.astype(np.int64).astype(np.uint64) * mult
            hashed ^= hashed >> np.uint64(29)
    return hashed


@dataclass(slots=True)
class FindManyResult:
    """Per-PC answers of :meth:`SFrameTable.find_many` (arrays of the input's length).

    ``found`` is False for a miss (no FDE, gap, FDE without FREs, offset before the first
    FRE) and for a malformed FRE (``invalid`` True).  ``fde`` indexes the table's sorted FDE
    order (``SFrameTable.fde_order[fde]`` is the section's own FDE index); ``fre`` is the
    FRE's index inside its FDE; ``row`` its index in the table's flat FRE arrays (use
    :meth:`SFrameTable.row`).  Rule fields are valid where ``found``.
    """

    found: np.ndarray
    invalid: np.ndarray
    fde: np.ndarray
    fre: np.ndarray
    row: np.ndarray
    cfa_kind: np.ndarray
    cfa_reg: np.ndarray
    cfa_offset: np.ndarray
    ra_kind: np.ndarray
    ra_reg: np.ndarray
    ra_offset: np.ndarray
    fp_kind: np.ndarray
    fp_reg: np.ndarray
    fp_offset: np.ndarray
    ra_signed: np.ndarray
    outermost: np.ndarray
    signal: np.ndarray
    start: np.ndarray
    end: np.ndarray


class SFrameTable:
    """A lookup table over one SFrame section."""

    def __init__(self, section: SFrameSection) -> None:
        h = section.header
        fdes = section.fdes
        n = len(fdes)
        starts = np.fromiter((f.start & 0xFFFFFFFFFFFFFFFF for f in fdes), dtype=_U64, count=n)
        sizes = np.fromiter((f.size for f in fdes), dtype=np.uint64, count=n)
        nfres = np.fromiter((len(f.fres) for f in fdes), dtype=np.int64, count=n)
        pcmask = np.fromiter((f.is_pcmask for f in fdes), dtype=bool, count=n)
        rep = np.fromiter((f.rep_size for f in fdes), dtype=np.uint64, count=n)
        pauth = np.fromiter((f.pauth_key for f in fdes), dtype=np.uint8, count=n)
        signal = np.fromiter((f.signal for f in fdes), dtype=bool, count=n)
        kind = np.fromiter((int(f.kind) for f in fdes), dtype=np.int64, count=n)
        total = int(nfres.sum())
        # Flat Python lists first (comprehensions), then one conversion per column: setting
        # numpy elements one at a time would cost ~100 ns per element.
        fres = [fre for f in fdes for fre in f.fres]
        fre_start = np.fromiter((x.start for x in fres), dtype=np.int64, count=total)
        fre_count = np.fromiter((len(x.words) for x in fres), dtype=np.int64, count=total)
        fre_mangled = np.fromiter((x.mangled_ra for x in fres), dtype=bool, count=total)
        fre_base_sp = np.fromiter((int(x.base_reg) == 1 for x in fres), dtype=bool, count=total)
        fre_offsets = np.fromiter((-1 if x.offset is None else x.offset for x in fres),
                                  dtype=np.int64, count=total)
        flat = np.fromiter((w for x in fres for w in x.words), dtype=np.int64,
                           count=int(fre_count.sum()))
        rows = np.repeat(np.arange(total, dtype=np.int64), fre_count)
        firsts = np.zeros(total, dtype=np.int64)
        np.cumsum(fre_count[:-1], out=firsts[1:])
        cols = np.arange(len(flat), dtype=np.int64) - np.repeat(firsts, fre_count)
        keep = cols < MAX_DATA_WORDS
        words = np.zeros((total, MAX_DATA_WORDS), dtype=np.int64)
        words[rows[keep], cols[keep]] = flat[keep]
        self._build(section.header.version, section.abi, h.cfa_fixed_fp_offset,
                    h.cfa_fixed_ra_offset, bool(h.flags & Flag.FDE_SORTED), starts, sizes,
                    nfres, pcmask, rep, pauth, signal, kind, fre_start, fre_count, fre_mangled,
                    fre_base_sp, words, words, fre_offsets, path=section.path)

    # -----------------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, section_address: int = 0,
                   path: str | None = None) -> SFrameTable:
        """Build the table directly from section bytes (vectorised; no per-FRE objects).

        Applies the same structural checks as :func:`sfunwind.sframe.decode` and raises
        :class:`SFrameFormatError` where it would.
        """
        data = bytes(data)
        h = decode_header(data, path=path)
        big = h.big_endian
        e = ">" if big else "<"
        ver = h.version
        fde_size = FDE_SIZE[ver]
        hdr_end = h.size
        fde_sub = hdr_end + h.fdeoff
        fre_sub = hdr_end + h.freoff
        fre_end = fre_sub + h.fre_len
        n = h.num_fdes
        if n > (len(data) - min(fde_sub, len(data))) // fde_size:
            raise SFrameFormatError(f"{n} FDEs of {fde_size} bytes do not fit in the section",
                                    offset=8, path=path)
        if fde_sub + n * fde_size > fre_sub and n:
            raise SFrameFormatError("FDE sub-section overlaps the FRE sub-section",
                                    offset=0x18, path=path)
        if fre_end > len(data):
            raise SFrameFormatError("FRE sub-section runs past the section end",
                                    offset=0x10, path=path)
        buf = np.frombuffer(data, dtype=np.uint8)
        if ver == VERSION_3:
            dt = np.dtype({"names": ["start", "size", "freoff"],
                           "formats": [e + "i8", e + "u4", e + "u4"],
                           "offsets": [0, 8, 12], "itemsize": 16})
        elif ver == VERSION_2:
            dt = np.dtype({"names": ["start", "size", "freoff", "nfres", "info", "rep"],
                           "formats": [e + "i4", e + "u4", e + "u4", e + "u4", "u1", "u1"],
                           "offsets": [0, 4, 8, 12, 16, 17], "itemsize": 20})
        else:
            dt = np.dtype({"names": ["start", "size", "freoff", "nfres", "info"],
                           "formats": [e + "i4", e + "u4", e + "u4", e + "u4", "u1"],
                           "offsets": [0, 4, 8, 12, 16], "itemsize": 17})
        tbl = np.frombuffer(data, dtype=dt, count=n, offset=fde_sub) if n else np.zeros(0, dt)
        raw_start = tbl["start"].astype(np.int64)
        sizes = tbl["size"].astype(np.uint64)
        freoff = tbl["freoff"].astype(np.int64)
        field_off = fde_sub + np.arange(n, dtype=np.int64) * fde_size
        bad = np.nonzero(freoff > h.fre_len)[0]
        if bad.size:
            i = int(bad[0])
            raise SFrameFormatError(f"FDE {i}: FRE offset {int(freoff[i]):#x} is beyond the "
                                    f"FRE sub-section", offset=int(field_off[i]) + 8, path=path)
        if ver == VERSION_3:
            attr = fre_sub + freoff
            bad = np.nonzero(attr + V3_ATTR_SIZE > fre_end)[0]
            if bad.size:
                i = int(bad[0])
                raise SFrameFormatError(f"FDE {i}: attribute record outside the FRE "
                                        f"sub-section", offset=int(field_off[i]) + 12, path=path)
            b0 = buf[attr].astype(np.int64)
            b1 = buf[attr + 1].astype(np.int64)
            nfres = (b0 << 8 | b1) if big else (b1 << 8 | b0)
            info = buf[attr + 2].astype(np.int64)
            info2 = buf[attr + 3].astype(np.int64)
            rep = buf[attr + 4].astype(np.uint64)
            fres_at = attr + V3_ATTR_SIZE
        else:
            nfres = tbl["nfres"].astype(np.int64)
            info = tbl["info"].astype(np.int64)
            info2 = np.zeros(n, dtype=np.int64)
            rep = tbl["rep"].astype(np.uint64) if ver == VERSION_2 else np.zeros(n, np.uint64)
            fres_at = fre_sub + freoff
        fre_type = info & 0xF
        bad = np.nonzero(fre_type > 2)[0]
        if bad.size:
            i = int(bad[0])
            raise SFrameFormatError(f"FDE {i}: invalid FRE type {int(fre_type[i])}",
                                    offset=int(field_off[i]), path=path)
        width = np.array([1, 2, 4], dtype=np.int64)[fre_type]
        too_many = nfres > (fre_end - fres_at) // (width + 1)
        bad = np.nonzero(too_many & (nfres > 0))[0]
        if bad.size:
            i = int(bad[0])
            raise SFrameFormatError(f"FDE {i}: {int(nfres[i])} FREs cannot fit in the FRE "
                                    f"sub-section", offset=int(field_off[i]), path=path)
        declared = int(nfres.sum())
        if declared > h.fre_len // 2 + 1:
            raise SFrameFormatError(f"the FDEs declare {declared} FREs, more than the "
                                    f"{h.fre_len}-byte FRE sub-section can hold",
                                    offset=0x10, path=path)
        pcrel = bool(h.flags & Flag.FDE_FUNC_START_PCREL)
        base = section_address & 0xFFFFFFFFFFFFFFFF
        starts = raw_start.view(_U64) + _U64(base)
        if pcrel:
            starts = starts + field_off.astype(_U64)

        # Sorted FDE order; FRE arrays are laid out in that order.
        order = np.argsort(starts, kind="stable")
        nfres_s = nfres[order]
        first = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(nfres_s, out=first[1:])
        total = int(first[-1])
        fre_pos = fre_positions(data, buf, fres_at[order], width[order], nfres_s, fre_end, path)
        # Decode every FRE at once.
        fde_of_fre = np.repeat(np.arange(n, dtype=np.int64), nfres_s)
        fw = width[order][fde_of_fre]
        padded = np.concatenate([buf, np.zeros(8, dtype=np.uint8)])
        fre_start = read_uint(padded, fre_pos, fw, big)
        finfo = padded[fre_pos + fw].astype(np.int64)
        count = (finfo >> 1) & 0xF
        wsz = np.left_shift(1, (finfo >> 5) & 3)
        words_s = np.zeros((total, MAX_DATA_WORDS), dtype=np.int64)
        words_u = np.zeros((total, MAX_DATA_WORDS), dtype=np.int64)
        wbase = fre_pos + fw + 1
        for k in range(MAX_DATA_WORDS):
            has = count > k
            if not has.any():
                break
            u = read_uint(padded, np.where(has, wbase + k * wsz, 0), wsz, big)
            u = np.where(has, u, 0)
            sign = np.left_shift(1, 8 * wsz - 1)
            s = np.where(u >= sign, u - 2 * sign, u)
            words_u[:, k] = u
            words_s[:, k] = s
        table = cls.__new__(cls)
        table._build(ver, ABI(h.abi), h.cfa_fixed_fp_offset, h.cfa_fixed_ra_offset,
                     bool(h.flags & Flag.FDE_SORTED), starts[order], sizes[order],
                     nfres_s, ((info >> 4) & 1)[order].astype(bool), rep[order],
                     ((info >> 5) & 1)[order].astype(np.uint8),
                     (((info >> 7) & 1).astype(bool) & (ver == VERSION_3))[order],
                     (info2 & 0x1F)[order], fre_start, count, (finfo & 0x80).astype(bool),
                     (finfo & 1).astype(bool), words_s, words_u, fre_pos, path=path,
                     presorted_order=order)
        return table

    @classmethod
    def from_file(cls, path: str, *, section: str = ".sframe",
                  section_address: int | None = None) -> SFrameTable:
        """The table of a file's SFrame section, built straight from its bytes (the fast
        path: no object model; same section search as :func:`sfunwind.sframe.load`)."""
        from sfunwind.sframe.loader import _shift, find_section

        found = find_section(path, section=section, section_address=section_address)
        try:
            return cls.from_bytes(found.data, section_address=found.address, path=found.path)
        except SFrameFormatError as exc:
            if found.file_offset == 0:
                raise
            raise _shift(exc, found.file_offset, found.path) from None

    # -----------------------------------------------------------------------------------
    def _build(self, version: int, abi: ABI | int, fixed_fp: int, fixed_ra: int, sorted_flag: bool,
               starts: np.ndarray, sizes: np.ndarray, nfres: np.ndarray, pcmask: np.ndarray,
               rep: np.ndarray, pauth: np.ndarray, signal: np.ndarray, kind: np.ndarray,
               fre_start: np.ndarray, count: np.ndarray, mangled: np.ndarray,
               base_sp: np.ndarray, words_s: np.ndarray, words_u: np.ndarray,
               fre_offsets: np.ndarray, *, path: str | None,
               presorted_order: np.ndarray | None = None) -> None:
        abi = ABI(abi)
        self.path = path
        self.version = version
        self.abi = abi
        self.sorted_flag = sorted_flag
        n = len(starts)
        if presorted_order is None:
            order = np.argsort(starts, kind="stable")
            first = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(nfres, out=first[1:])
            # FRE rows regrouped in sorted-FDE order: row j of sorted FDE k comes from
            # first[order[k]] + j.
            counts = nfres[order].astype(np.int64)
            new_first = np.zeros(n, dtype=np.int64)
            if n:
                np.cumsum(counts[:-1], out=new_first[1:])
            idx = np.repeat(first[:-1][order] - new_first, counts) + \
                np.arange(int(counts.sum()), dtype=np.int64)
            starts, sizes, nfres, pcmask, rep, pauth, signal, kind = (
                a[order] for a in (starts, sizes, nfres, pcmask, rep, pauth, signal, kind))
            fre_start, count, mangled, base_sp, words_s, words_u, fre_offsets = (
                a[idx] for a in (fre_start, count, mangled, base_sp, words_s, words_u,
                                 fre_offsets))
        else:
            order = presorted_order
        #: ``fde_order[i]``: the section's FDE index of the table's i-th (sorted) FDE.
        self.fde_order = np.asarray(order, dtype=np.int64)
        self.fde_start = starts.astype(_U64)
        self.fde_size = sizes.astype(_U64)
        self.fde_end = self.fde_start + self.fde_size
        self.fde_nfres = nfres.astype(np.int64)
        self.fde_first = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.fde_nfres, out=self.fde_first[1:])
        self.fde_pcmask = pcmask.astype(bool)
        self.fde_rep = rep.astype(_U64)
        self.fde_pauth = pauth.astype(np.uint8)
        self.fde_signal = signal.astype(bool)
        self.fde_kind = kind.astype(np.int64)
        total = len(fre_start)
        fde_of_fre = np.repeat(np.arange(n, dtype=np.int64), self.fde_nfres)
        self.fre_fde = fde_of_fre
        self.fre_start = fre_start.astype(np.int64)
        self.fre_count = count.astype(np.int64)
        self.fre_mangled = mangled.astype(bool)
        self.fre_offset = fre_offsets.astype(np.int64)
        # FDEs whose FRE starts go down need the literal libsframe walk.
        self.fde_irregular = np.zeros(n, dtype=bool)
        if total > 1:
            down = np.nonzero((np.diff(self.fre_start) < 0) & (fde_of_fre[1:] == fde_of_fre[:-1]))[0]
            self.fde_irregular[fde_of_fre[down + 1]] = True
        self._resolve_rules(version, abi, fixed_fp, fixed_ra, base_sp, words_s, words_u,
                            self.fde_kind[fde_of_fre] if total else np.zeros(0, np.int64))
        self.fre_signal = self.fde_signal[fde_of_fre] if total else np.zeros(0, bool)
        self.fre_pauth = self.fde_pauth[fde_of_fre] if total else np.zeros(0, np.uint8)
        # Search keys: (sorted FDE rank << 32) | FRE start — monotonic except in irregular
        # FDEs, which the scalar path answers.
        self.fre_key = (fde_of_fre.astype(_U64) << _U64(32)) | (
            self.fre_start.astype(_U64) & _U64(0xFFFFFFFF))
        # Each FRE's PC range [start, end) for PCINC FDEs (PCMASK rows depend on the PC).
        if total:
            last = np.zeros(total, dtype=bool)
            last[self.fde_first[1:][self.fde_nfres > 0] - 1] = True
            nxt = np.empty(total, dtype=np.int64)
            nxt[:-1] = self.fre_start[1:]
            fsize = self.fde_size[fde_of_fre].astype(np.int64)
            nxt = np.minimum(np.where(last, fsize, np.maximum(nxt, 0)), fsize)
            fstart = self.fde_start[fde_of_fre]
            self.fre_abs_start = fstart + self.fre_start.astype(_U64)
            self.fre_abs_end = fstart + nxt.astype(_U64)
        else:
            self.fre_abs_start = np.zeros(0, dtype=_U64)
            self.fre_abs_end = np.zeros(0, dtype=_U64)
        self._scalar_ready = False

    def _resolve_rules(self, version: int, abi: ABI, fixed_fp: int, fixed_ra: int,
                       base_sp: np.ndarray, ws: np.ndarray, wu: np.ndarray,
                       kind: np.ndarray) -> None:
        total = len(base_sp)
        cnt = self.fre_count
        sp_reg = DWARF_SP[abi]
        fp_reg = DWARF_FP[abi]
        s390x = abi is ABI.S390X_BE
        cfa_kind = np.where(base_sp, CFA_SP, CFA_FP).astype(np.int64)
        cfa_reg = np.where(base_sp, sp_reg, fp_reg).astype(np.int64)
        cfa_off = ws[:, 0].copy() if total else np.zeros(0, np.int64)
        ra_kind = np.full(total, R_RETAIN, dtype=np.int64)
        ra_reg = np.full(total, -1, dtype=np.int64)
        ra_off = np.zeros(total, dtype=np.int64)
        fp_kind = np.full(total, R_RETAIN, dtype=np.int64)
        fp_reg_a = np.full(total, -1, dtype=np.int64)
        fp_off = np.zeros(total, dtype=np.int64)
        invalid = (cnt > MAX_DATA_WORDS) | ((kind != FDEKind.DEFAULT) & (kind != FDEKind.FLEX))
        regnum_trick = s390x and version == VERSION_2

        def offset_rule(mask: np.ndarray, word: np.ndarray, kind_a: np.ndarray,
                        reg_a: np.ndarray, off_a: np.ndarray) -> None:
            # DEFAULT FDE RA/FP word: 0 -> retain (s390x padding / kernel rule),
            # s390x V2 odd -> register, else saved at CFA + word.
            zero = mask & (word == 0)
            if regnum_trick:
                reg = mask & ((word & 1) == 1)
                kind_a[reg] = R_REG
                reg_a[reg] = word[reg] >> 1
                off_a[reg] = 0
                mask = mask & ~reg
            stack = mask & ~zero
            kind_a[stack] = R_CFA_DEREF
            off_a[stack] = word[stack]
            kind_a[zero] = R_RETAIN

        default = kind == FDEKind.DEFAULT
        if total:
            w1 = ws[:, 1]
            w2 = ws[:, 2]
            if fixed_ra:
                m = default & (cnt > 0)
                ra_kind[m] = R_CFA_DEREF
                ra_off[m] = fixed_ra
                fp_idx_word, fp_present = w1, default & (cnt > 1)
                invalid |= default & (cnt > 2)
            else:
                offset_rule(default & (cnt > 1), w1, ra_kind, ra_reg, ra_off)
                fp_idx_word, fp_present = w2, default & (cnt > 2)
                invalid |= default & (cnt > 3)
            if fixed_fp:
                m = default & (cnt > 0)
                fp_kind[m] = R_CFA_DEREF
                fp_off[m] = fixed_fp
            else:
                offset_rule(fp_present, fp_idx_word, fp_kind, fp_reg_a, fp_off)

            # FLEX FDEs (V3): (control, offset) pairs CFA, RA (or one padding word), FP.
            flex = (kind == FDEKind.FLEX) & (cnt > 0)
            if flex.any():
                c0 = wu[:, 0]
                reg_p = (c0 & 1) == 1
                deref = (c0 & 2) == 2
                regn = c0 >> 3
                invalid |= flex & ((cnt < 2) | ~reg_p)
                fk = np.where(deref, CFA_REG_DEREF,
                              np.where(regn == sp_reg, CFA_SP,
                                       np.where(regn == fp_reg, CFA_FP, CFA_REG)))
                cfa_kind = np.where(flex, fk, cfa_kind)
                cfa_reg = np.where(flex, regn, cfa_reg)
                cfa_off = np.where(flex, ws[:, 1], cfa_off)
                ra_ctrl = wu[:, 2]
                has_ra = flex & (cnt > 2) & (ra_ctrl != 0)
                pad = flex & (cnt > 2) & (ra_ctrl == 0)
                invalid |= has_ra & (cnt < 4)
                invalid |= pad & (cnt != 5)
                invalid |= has_ra & (cnt != 4) & (cnt != 6)
                invalid |= flex & (cnt == 3) & ~pad & ~has_ra
                no_ra = flex & ~has_ra
                if fixed_ra:
                    ra_kind[no_ra] = R_CFA_DEREF
                    ra_off[no_ra] = fixed_ra
                else:
                    ra_kind[no_ra] = R_RETAIN
                    ra_off[no_ra] = 0
                _flex_rule(has_ra, ra_ctrl, ws[:, 3], ra_kind, ra_reg, ra_off)
                fp_pad = pad & (cnt >= 5)
                fp_pair = has_ra & (cnt >= 6)
                fp_ctrl = np.where(fp_pad, wu[:, 3], wu[:, 4])
                fp_word = np.where(fp_pad, ws[:, 4], ws[:, 5])
                no_fp = flex & ~fp_pad & ~fp_pair
                if fixed_fp:
                    fp_kind[no_fp] = R_CFA_DEREF
                    fp_off[no_fp] = fixed_fp
                else:
                    fp_kind[no_fp] = R_RETAIN
                    fp_off[no_fp] = 0
                _flex_rule(fp_pad | fp_pair, fp_ctrl, fp_word, fp_kind, fp_reg_a, fp_off)
            if s390x:
                cfa_off = cfa_off * 8 + 160
        outer = cnt == 0
        cfa_kind[outer] = CFA_NONE
        ra_kind[outer] = R_UNDEF
        fp_kind[outer] = R_UNDEF
        cfa_off[outer] = 0
        ra_off[outer] = 0
        fp_off[outer] = 0
        self.fre_cfa_kind = cfa_kind.astype(np.int8)
        self.fre_cfa_reg = cfa_reg.astype(np.int16)
        self.fre_cfa_offset = cfa_off.astype(np.int64)
        self.fre_ra_kind = ra_kind.astype(np.int8)
        self.fre_ra_reg = ra_reg.astype(np.int16)
        self.fre_ra_offset = ra_off.astype(np.int64)
        self.fre_fp_kind = fp_kind.astype(np.int8)
        self.fre_fp_reg = fp_reg_a.astype(np.int16)
        self.fre_fp_offset = fp_off.astype(np.int64)
        self.fre_outermost = outer
        self.fre_invalid = invalid.astype(bool)

    # -----------------------------------------------------------------------------------
    @property
    def num_fdes(self) -> int:
        return len(self.fde_start)

    @property
    def num_fres(self) -> int:
        return len(self.fre_start)

    def find_fde(self, pc: int) -> int | None:
        """The table (sorted) index of the FDE containing ``pc``, or None (gap/outside)."""
        self._prepare_scalar()
        i = bisect.bisect_right(self._starts_list, pc) - 1
        if i < 0 or pc - self._starts_list[i] >= self._sizes_list[i]:
            return None
        return i

    def _find_row(self, pc: int) -> tuple[int, int] | None:
        self._prepare_scalar()
        starts = self._starts_list
        i = bisect.bisect_right(starts, pc) - 1
        if i < 0:
            return None
        off = pc - starts[i]
        if off >= self._sizes_list[i]:
            return None
        n = self._nfres_list[i]
        if not n:
            return None
        if self._pcmask_list[i]:
            rep = self._rep_list[i]
            if rep:
                off %= rep
        first = self._first_list[i]
        if self._irregular_list[i]:
            r = self._walk(i, off)
            return None if r is None else (i, r)
        r = bisect.bisect_right(self._keys_list, (i << 32) | off, first, first + n) - 1
        if r < first:
            return None
        return i, r

    def _walk(self, i: int, off: int) -> int | None:
        """libsframe's in-order FRE walk (used for FDEs with decreasing FRE starts)."""
        first = self._first_list[i]
        n = self._nfres_list[i]
        starts = self._fre_start_list
        size = self._sizes_list[i]
        for k in range(first, first + n):
            s = starts[k]
            end = (starts[k + 1] - 1) if k + 1 < first + n else size - 1
            if s > off:
                return None
            if s <= off <= end:
                return k
        return None

    def find(self, pc: int) -> UnwindRow | None:
        """The unwind row for ``pc`` (libsframe semantics), or None for a miss.

        Raises :class:`SFrameFormatError` when the matching FRE is malformed (a data-word
        layout the format does not allow)."""
        if not self._scalar_ready:
            self._prepare_scalar()
        return self._find(pc)

    def _general_find(self, pc: int) -> UnwindRow | None:
        hit = self._find_row(pc)
        if hit is None:
            return None
        i, r = hit
        if self._pcmask_list[i]:
            return self._make_row(r, pc)
        row = self._row_cache.get(r)
        if row is None:
            row = self._make_row(r, None)
            if len(self._row_cache) >= _ROW_CACHE_SIZE:
                self._row_cache.clear()
            self._row_cache[r] = row
        return row

    def _fast_finder(self):  # type: ignore[no-untyped-def]
        """``find`` for regular tables as a closure: every table it reads is a local.

        Rows of PCMASK FDEs have the end 0 in ``ends`` so that one comparison sends them,
        and only them (and any true miss), off the fast path."""
        base = self._abs_base
        span = self._abs_span
        shift = self._abs_shift
        buckets = self._abs_buckets
        starts = self._abs_starts_list
        # One interleaved table, 4 words a row — (end for the fast path, start, end,
        # signature) — so that a cold lookup touches one cache line instead of four arrays.
        # PCMASK rows have fast-path end 0: one comparison sends them (and only them, and any
        # true miss) off to the general path.
        info = np.empty((len(self.fre_abs_end), 4), dtype=_U64)
        info[:, 0] = np.where(self.fde_pcmask[self.fre_fde], _U64(0), self.fre_abs_end)
        info[:, 1] = self.fre_abs_start
        info[:, 2] = self.fre_abs_end
        info[:, 3] = np.asarray(self._sig, dtype=_U64)
        rowinfo = _int_array(info.ravel(), "Q")
        general = self._general_find
        bisect_right = bisect.bisect_right
        protos = self._protos
        heads = self._heads
        prototype = self._prototype
        make_row = self._make_row
        tuple_new = tuple.__new__

        def build(r: int, i: int) -> UnwindRow:
            # _make_row for a PCINC row, inlined (this is the whole cost of a cold lookup)
            proto = protos[rowinfo[i + 3]]
            if proto is None:
                proto = prototype(r)
            if proto[0]:
                return make_row(r, None)  # raises the malformed-FRE error
            if proto[1]:
                return outermost_row(rowinfo[i + 1], rowinfo[i + 2], signal=proto[7])
            # tuple.__new__ straight from the prototype's leading fields: skips the named
            # tuple's Python-level __new__
            return tuple_new(UnwindRow, proto[8] + (rowinfo[i + 1], rowinfo[i + 2]))

        # Rows are immutable: a plain dict of the rows built so far serves repeated lookups
        # (cheaper than functools.lru_cache on a miss; emptied when it reaches its bound).
        cache: dict[int, UnwindRow] = self._row_cache
        cache_get = cache.get
        limit = _ROW_CACHE_SIZE

        if self._abs_exact:
            def find(pc: int) -> UnwindRow | None:
                x = pc - base
                if x < 0 or x >= span:
                    return None
                r = buckets[x >> shift]
                i = r << 2
                end = rowinfo[i]
                if pc >= end:
                    return general(pc) if end == 0 else None
                row = cache_get(r)
                if row is not None:
                    return row
                head = heads[rowinfo[i + 3]]
                if head is None:
                    row = build(r, i)  # first row of its kind, malformed, or outermost
                else:  # build(), inlined: this is the whole cost of a cold lookup
                    row = tuple_new(UnwindRow, head + (rowinfo[i + 1], end))  # noqa: RUF005 (faster than unpacking: one C concat, measured)
                if len(cache) >= limit:
                    cache.clear()
                cache[r] = row
                return row

            return find

        def find(pc: int) -> UnwindRow | None:
            x = pc - base
            if x < 0 or x >= span:
                return None
            k = x >> shift
            r = bisect_right(starts, x, buckets[k], buckets[k + 1] + 1) - 1
            i = r << 2
            end = rowinfo[i]
            if pc >= end:
                return general(pc) if end == 0 else None
            row = cache_get(r)
            if row is None:
                row = build(r, i)
                if len(cache) >= limit:
                    cache.clear()
                cache[r] = row
            return row

        return find

    def clear_cache(self) -> None:
        """Forget the rows built so far (up to 65536 are kept for repeated lookups)."""
        if self._scalar_ready:
            self._row_cache.clear()

    def find_index(self, pc: int) -> tuple[int, int] | None:
        """``(sorted FDE index, flat FRE row)`` for ``pc``, or None."""
        return self._find_row(pc)

    def row(self, r: int, pc: int | None = None) -> UnwindRow:
        """The :class:`UnwindRow` of flat FRE row ``r`` (``pc`` places a PCMASK row)."""
        self._prepare_scalar()
        return self._make_row(int(r), pc)

    def _prepare_scalar(self) -> None:
        """Plain Python sequences for the one-PC path (built on first use, so the index
        build stays vectorised): reading numpy scalars one by one costs ~100 ns each.

        ``array.array`` rather than lists where no bisect runs: it is no GC container, so a
        10^6-entry table does not slow every garbage collection down.
        """
        if self._scalar_ready:
            return
        self._starts_list = self.fde_start.tolist()
        self._sizes_list = _int_array(self.fde_size, "Q")
        self._keys_list = self.fre_key.tolist()
        self._first_list = _int_array(self.fde_first)
        self._nfres_list = _int_array(self.fde_nfres)
        self._pcmask_list = _int_array(self.fde_pcmask)
        self._rep_list = _int_array(self.fde_rep, "Q")
        self._irregular_list = _int_array(self.fde_irregular)
        self._fre_start_list = _int_array(self.fre_start)
        # Fast path: when FDEs are sorted and disjoint and every FRE start increases, the
        # FREs' absolute starts are sorted across the whole table, so one bisect finds the
        # candidate row and its end decides hit or miss (PCMASK rows take the general path).
        n = self.num_fres
        regular = not self.fde_irregular.any()
        if regular and self.num_fdes > 1:
            regular = bool((self.fde_start[1:] >= self.fde_end[:-1]).all())
        if regular and n > 1:
            regular = bool((self.fre_abs_start[1:] >= self.fre_abs_start[:-1]).all())
        self._abs_starts_list = None
        self._abs_exact = False
        if regular and n and (
                int(self.fre_abs_end.max()) - int(self.fre_abs_start[0]) >= 1 << 62
                or bool((self.fre_abs_end < self.fre_abs_start).any())):
            regular = False  # offsets beyond int64, or ranges wrapping past 2^64 (hostile)
        if regular and n:
            # Offsets from the first FRE (small ints compare faster than 64-bit addresses)
            # and a bucket index over them: bucket k holds the rows that can contain a PC
            # in [k << shift, (k + 1) << shift), so a lookup bisects a handful of entries
            # instead of the whole table (each bisect probe of a 10^6-entry list is a cache
            # miss).
            self._abs_base = int(self.fre_abs_start[0])
            offs = (self.fre_abs_start - _U64(self._abs_base)).astype(np.int64)
            span = int(self.fre_abs_end.max() - _U64(self._abs_base))
            # When every row boundary is a multiple of 2^g (4 on AArch64) and the table
            # is not too sparse, buckets of 2^g bytes hold exactly one candidate row: the
            # bucket *is* the answer and no bisect runs ("exact" buckets, 4 bytes each).
            ends_rel = (self.fre_abs_end - _U64(self._abs_base)).astype(np.int64)
            bits = int(np.bitwise_or.reduce(offs)) | int(np.bitwise_or.reduce(ends_rel))
            g = (bits & -bits).bit_length() - 1 if bits else 0
            exact = (span >> g) + 2 <= _EXACT_BUCKETS_MAX and n < 1 << 31
            if exact:
                shift = g
            else:
                shift = 4
                while (span >> shift) > 2 * n + 1024:
                    shift += 1
            self._abs_shift = shift
            self._abs_span = span
            self._abs_exact = exact
            if exact:
                # granule k -> the last row starting at or before k << shift: row r owns the
                # granules from its start to the next row's start (np.repeat, no search)
                granules = (span >> shift) + 2
                counts = np.diff(np.append(offs >> shift, granules))
                bucket = np.repeat(np.arange(n, dtype=np.int32), counts)
                self._abs_buckets = array.array("i", bucket.tobytes())
            else:
                edges = np.arange(0, (span >> shift) + 2, dtype=np.int64) << shift
                bucket = np.searchsorted(offs, edges, side="right") - 1
                self._abs_buckets = _int_array(np.maximum(bucket, 0))
            self._abs_starts_list = offs.tolist()
        self._lists_abs_end = _int_array(self.fre_abs_end, "Q")
        self._abs_start_arr = _int_array(self.fre_abs_start, "Q")
        self._fre_pcmask = _int_array(self.fde_pcmask[self.fre_fde]) if n else array.array("q")
        self._prepare_signatures()
        self._row_cache: dict[int, UnwindRow] = {}
        self._find = self._fast_finder() if self._abs_starts_list is not None \
            else self._general_find
        self._scalar_ready = True
        # From now on ``table.find`` is the closure itself: no method frame per lookup.
        self.find = self._find  # type: ignore[method-assign]

    def _prepare_signatures(self) -> None:
        """Give every FRE the id of its rule combination (typically a few hundred distinct
        ones), so building a row reads one small prototype instead of 15 arrays."""
        n = self.num_fres
        columns = (self.fre_cfa_kind, self.fre_cfa_reg, self.fre_cfa_offset, self.fre_ra_kind,
                   self.fre_ra_reg, self.fre_ra_offset, self.fre_fp_kind, self.fre_fp_reg,
                   self.fre_fp_offset, self.fre_mangled, self.fre_pauth, self.fre_signal,
                   self.fre_outermost, self.fre_invalid)
        # One 64-bit hash a row, column by column, then np.unique on plain integers: ~10x
        # faster than unique over 14-column records.  A hash collision is detected (rows
        # sharing an id must be equal in every column) and then exact record keys are used.
        _, first, inverse = np.unique(_row_hash(columns, n), return_index=True,
                                      return_inverse=True)
        inverse = inverse.ravel()
        if n and not all(np.array_equal(col[first[inverse]], col) for col in columns):
            cols = np.stack([c.astype(np.int64) for c in columns], axis=1)
            key = np.ascontiguousarray(cols).view(np.dtype((np.void, cols.shape[1] * 8))).ravel()
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        self._sig = _int_array(inverse.ravel())
        self._sig_first = first.tolist()
        self._protos: list[tuple | None] = [None] * len(first)
        # per signature: the row's leading fields when it is an ordinary row (not malformed,
        # not outermost), else None — one test on the cold-lookup path
        self._heads: list[tuple | None] = [None] * len(first)

    def _row_range(self, r: int, pc: int | None, i: int) -> tuple[int, int]:
        fstart = self._starts_list[i]
        size = self._sizes_list[i]
        last = r + 1 >= self._first_list[i] + self._nfres_list[i]
        s = self._fre_start_list[r]
        nxt = None if last else self._fre_start_list[r + 1]
        if self._pcmask_list[i] and self._rep_list[i]:
            rep = self._rep_list[i]
            blk = fstart + ((pc - fstart) // rep) * rep if pc is not None else fstart
            end = blk + (nxt if nxt is not None else rep)
            return blk + s, min(end, fstart + size)
        end = fstart + (nxt if nxt is not None else size)
        return fstart + s, min(end, fstart + size)

    def _prototype(self, r: int) -> tuple:
        """``(invalid, outermost, cfa, ra, fp, ra_signed, pauth_key, signal)`` of row r."""
        g = self._sig[r]
        proto = self._protos[g]
        if proto is not None:
            return proto
        q = self._sig_first[g]
        outer = bool(self.fre_outermost[q])
        ck = int(self.fre_cfa_kind[q])
        cfa = CfaRule(CFA_KINDS[ck], int(self.fre_cfa_offset[q]),
                      None if ck in (CFA_SP, CFA_FP) else int(self.fre_cfa_reg[q]))
        ra = _rule(int(self.fre_ra_kind[q]), int(self.fre_ra_offset[q]), int(self.fre_ra_reg[q]))
        fp = _rule(int(self.fre_fp_kind[q]), int(self.fre_fp_offset[q]), int(self.fre_fp_reg[q]))
        signed = bool(self.fre_mangled[q])
        key = PAuthKey.B if self.fre_pauth[q] else PAuthKey.A
        signal = bool(self.fre_signal[q])
        # [8]: the row's leading fields (all but start/end), ready to be extended
        proto = (bool(self.fre_invalid[q]), outer, cfa, ra, fp, signed, key, signal,
                 (cfa, ra, fp, signed, key, False, signal))
        self._protos[g] = proto
        if not proto[0] and not outer:
            self._heads[g] = proto[8]
        return proto

    def _make_row(self, r: int, pc: int | None) -> UnwindRow:
        invalid, outer, cfa, ra, fp, signed, key, signal, _ = self._prototype(r)
        if invalid:
            off = int(self.fre_offset[r])
            raise SFrameFormatError(
                f"malformed FRE: {int(self.fre_count[r])} data words do not form a valid "
                f"{'FLEX' if self.fde_kind[self.fre_fde[r]] == FDEKind.FLEX else 'DEFAULT'} "
                f"row for {self.abi.name}", offset=off if off >= 0 else None, path=self.path)
        if self._fre_pcmask[r]:
            start, end = self._row_range(r, pc, int(self.fre_fde[r]))
        else:
            start, end = self._abs_start_arr[r], self._lists_abs_end[r]
        if outer:
            return outermost_row(start, end, signal=signal)
        return UnwindRow(cfa, ra, fp, signed, key, False, signal, start, end)

    # -----------------------------------------------------------------------------------
    def find_many(self, pcs: np.ndarray | list[int]) -> FindManyResult:
        """Vectorised :meth:`find` over an array of PCs (uint64); results in input order."""
        pcs = np.asarray(pcs, dtype=_U64).ravel()
        if len(pcs) > 4096 and bool((pcs[1:] < pcs[:-1]).any()):
            # Binary searches with sorted needles walk the tables in order (cache-friendly,
            # and numpy narrows each search with the previous result): sorting first and
            # scattering the answers back is several times faster for random PCs.
            order = np.argsort(pcs, kind="stable")
            res = self._find_many(pcs[order])
            for name in FindManyResult.__slots__:
                sorted_values = getattr(res, name)
                values = np.empty_like(sorted_values)
                values[order] = sorted_values
                setattr(res, name, values)
            return res
        return self._find_many(pcs)

    def _find_many(self, pcs: np.ndarray) -> FindManyResult:
        m = len(pcs)
        nf = self.num_fdes
        i = np.searchsorted(self.fde_start, pcs, side="right").astype(np.int64) - 1
        ok = i >= 0
        ic = np.where(ok, i, 0)
        if nf == 0:
            ok[:] = False
            ic = np.zeros(m, dtype=np.int64)
        else:
            off = pcs - self.fde_start[ic]
            ok &= off < self.fde_size[ic]
            ok &= self.fde_nfres[ic] > 0
            rep = self.fde_rep[ic]
            mask_fde = self.fde_pcmask[ic] & (rep > 0)
            off = np.where(mask_fde, off % np.where(rep > 0, rep, _U64(1)), off)
        if nf and len(self.fre_key):
            key = (ic.astype(_U64) << _U64(32)) | (off & _U64(0xFFFFFFFF))
            r = np.searchsorted(self.fre_key, key, side="right").astype(np.int64) - 1
            ok &= r >= self.fde_first[ic]
            ok &= r >= 0
            irregular = ok & self.fde_irregular[ic] if self.fde_irregular.any() else None
            r = np.where(ok, r, 0)
        else:
            ok[:] = False
            r = np.zeros(m, dtype=np.int64)
            irregular = None
        if irregular is not None and irregular.any():
            self._prepare_scalar()
            for k in np.nonzero(irregular)[0]:
                hit = self._walk(int(ic[k]), int(off[k]))
                if hit is None:
                    ok[k] = False
                else:
                    r[k] = hit
        if len(self.fre_key):
            invalid = ok & self.fre_invalid[r]
        else:
            invalid = np.zeros(m, dtype=bool)
        found = ok & ~invalid
        rr = r
        fde = np.where(ok, ic, -1)
        fre_in = np.where(ok, r - self.fde_first[ic], -1)
        # row ranges
        if len(self.fre_key):
            fstart = self.fde_start[ic]
            last = r + 1 >= self.fde_first[ic + 1]
            nxt = np.where(last, self.fde_size[ic].astype(np.int64),
                           self.fre_start[np.minimum(r + 1, len(self.fre_start) - 1)])
            rep = self.fde_rep[ic]
            pm = self.fde_pcmask[ic] & (rep > 0)
            blk = np.where(pm, fstart + ((pcs - fstart) // np.where(rep > 0, rep, _U64(1))) * rep,
                           fstart)
            nxt = np.where(pm & last, rep.astype(np.int64), nxt)
            start = blk + self.fre_start[rr].astype(_U64)
            end = np.minimum(blk + nxt.astype(_U64), fstart + self.fde_size[ic])

            def get(a: np.ndarray) -> np.ndarray:
                return a[rr]
        else:
            start = np.zeros(m, dtype=_U64)
            end = np.zeros(m, dtype=_U64)

            def get(a: np.ndarray) -> np.ndarray:
                return np.zeros(m, dtype=a.dtype)
        return FindManyResult(
            found=found, invalid=invalid, fde=fde, fre=fre_in, row=np.where(ok, rr, -1),
            cfa_kind=get(self.fre_cfa_kind), cfa_reg=get(self.fre_cfa_reg),
            cfa_offset=get(self.fre_cfa_offset), ra_kind=get(self.fre_ra_kind),
            ra_reg=get(self.fre_ra_reg), ra_offset=get(self.fre_ra_offset),
            fp_kind=get(self.fre_fp_kind), fp_reg=get(self.fre_fp_reg),
            fp_offset=get(self.fre_fp_offset), ra_signed=get(self.fre_mangled),
            outermost=get(self.fre_outermost), signal=get(self.fre_signal),
            start=start, end=end)


def _flex_rule(mask: np.ndarray, ctrl: np.ndarray, off: np.ndarray, kind_a: np.ndarray,
               reg_a: np.ndarray, off_a: np.ndarray) -> None:
    reg_p = (ctrl & 1) == 1
    deref = (ctrl & 2) == 2
    regn = ctrl >> 3
    k = np.where(reg_p, np.where(deref, R_REG_DEREF, R_REG),
                 np.where(deref, R_CFA_DEREF, np.where((ctrl == 0) & (off == 0), R_RETAIN, R_CFA)))
    kind_a[mask] = k[mask]
    reg_a[mask] = np.where(reg_p, regn, -1)[mask]
    off_a[mask] = off[mask]


def _rule(kind: int, offset: int, reg: int) -> Rule:
    k = RULE_KINDS[kind]
    if k is RuleKind.RETAIN:
        return Rule(RuleKind.RETAIN)
    if k is RuleKind.UNDEFINED:
        return Rule(RuleKind.UNDEFINED)
    if k in (RuleKind.REG_OFFSET, RuleKind.REG_OFFSET_DEREF):
        return Rule(k, offset, reg)
    return Rule(k, offset)
