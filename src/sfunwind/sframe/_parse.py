"""Vectorised walking of FRE chains (shared by the table builder and the decoder).

An FRE's length depends on its own info byte, so the FREs of one FDE must be walked in
order; the FDEs are independent, so all chains advance in lock step: step j handles the
j-th FRE of every FDE that has more than j.  Every position is checked against the FRE
sub-section before it is read, with the same errors as the scalar decoder.
"""

from __future__ import annotations

import numpy as np

from sfunwind.errors import SFrameFormatError


def fre_positions(data: bytes, buf: np.ndarray, fres_at: np.ndarray, width: np.ndarray,
                  nfres: np.ndarray, fre_end: int, path: str | None) -> np.ndarray:
    """Section offsets of every FRE, FDE by FDE in the given order (flat, FDE-major)."""
    n = len(nfres)
    first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(nfres, out=first[1:])
    fre_pos = np.empty(int(first[-1]), dtype=np.int64)
    by_count = np.argsort(-nfres, kind="stable")
    counts_sorted = nfres[by_count]
    pos = fres_at[by_count].astype(np.int64)
    w_by = width[by_count]
    first_by = first[:-1][by_count]
    max_n = int(counts_sorted[0]) if n else 0
    active = n
    for j in range(max_n):
        while active and counts_sorted[active - 1] <= j:
            active -= 1
        if active <= 2 and max_n - j > 64:
            # A few long FRE chains left: walking them in Python beats thousands of tiny
            # numpy steps (a V2 FDE may declare millions of FREs).
            for a in range(active):
                _walk_chain(data, int(pos[a]), int(w_by[a]), j, int(counts_sorted[a]),
                            fre_end, fre_pos, int(first_by[a]), path)
            break
        p = pos[:active]
        ip = p + w_by[:active]
        if ip.size and int(ip.max()) >= fre_end:
            i = int(np.nonzero(ip >= fre_end)[0][0])
            raise SFrameFormatError("FRE runs past the FRE sub-section end",
                                    offset=int(p[i]), path=path)
        finfo = buf[ip].astype(np.int64)
        code = (finfo >> 5) & 3
        if (code == 3).any():
            i = int(np.nonzero(code == 3)[0][0])
            raise SFrameFormatError("FRE with invalid data-word size code 3",
                                    offset=int(ip[i]), path=path)
        nxt = ip + 1 + ((finfo >> 1) & 0xF) * np.left_shift(1, code)
        if nxt.size and int(nxt.max()) > fre_end:
            i = int(np.nonzero(nxt > fre_end)[0][0])
            raise SFrameFormatError("FRE data words run past the FRE sub-section end",
                                    offset=int(p[i]), path=path)
        fre_pos[first_by[:active] + j] = p
        pos[:active] = nxt
    return fre_pos


def _walk_chain(data: bytes, p: int, width: int, j0: int, n: int, fre_end: int,
                fre_pos: np.ndarray, first: int, path: str | None) -> None:
    """Positions of FREs ``j0..n-1`` of one FDE, starting at ``p`` (checked like decode)."""
    out = []
    for _ in range(j0, n):
        ip = p + width
        if ip >= fre_end:
            raise SFrameFormatError("FRE runs past the FRE sub-section end", offset=p, path=path)
        finfo = data[ip]
        code = (finfo >> 5) & 3
        if code == 3:
            raise SFrameFormatError("FRE with invalid data-word size code 3", offset=ip,
                                    path=path)
        nxt = ip + 1 + ((finfo >> 1) & 0xF) * (1 << code)
        if nxt > fre_end:
            raise SFrameFormatError("FRE data words run past the FRE sub-section end",
                                    offset=p, path=path)
        out.append(p)
        p = nxt
    fre_pos[first + j0:first + n] = out


def read_uint(buf: np.ndarray, pos: np.ndarray, width: np.ndarray, big: bool) -> np.ndarray:
    """Unsigned integers of per-element width 1/2/4 at ``pos`` (buf padded by >= 4 bytes)."""
    b0 = buf[pos].astype(np.int64)
    b1 = buf[pos + 1].astype(np.int64)
    b2 = buf[pos + 2].astype(np.int64)
    b3 = buf[pos + 3].astype(np.int64)
    if big:
        v2 = (b0 << 8) | b1
        v4 = (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    else:
        v2 = b0 | (b1 << 8)
        v4 = b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)
    return np.where(width == 1, b0, np.where(width == 2, v2, v4))

