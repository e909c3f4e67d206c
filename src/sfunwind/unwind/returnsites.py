"""Return sites and call targets: build-time call-site metadata for reliability verdicts.

A return address that a reliable trace reports must follow a call: the CPU only ever puts
``address of BL/BLR + 4`` in x30.  And the function the call went to must be able to lead to
the callee frame the trace shows: a direct ``BL T`` reaches the callee F when ``T == F``, or
through tail calls (``B``/``BR`` out of T, or T falling through into the next function).
When T is *closed* — it can leave only by returning — and ``T != F``, the trace skipped
frames or a saved return address was corrupted into another return site.

The kernel's unwinder checks neither (the livepatch document recommends
``__kernel_text_address()``; its §4.2 "identify unwindable code" and §3 "compile-time
analysis" ask for more).  This table is that compile-time metadata, computed once from the
vmlinux's code.

Recognised (A64): calls ``BL``, ``BLR``, ``BLRAA/BLRAB``, ``BLRAAZ/BLRABZ``; leaving a
function other than by return: ``B``, ``B.cond``, ``CBZ/CBNZ``, ``TBZ/TBNZ`` to outside it,
``BR``, ``BRAA/BRAB``, ``BRAAZ/BRABZ``, or a last instruction that is not ``RET``,
``RETAA/RETAB``, ``B`` (inside) or ``BRK`` (falls through).  Code patched at run time
(ftrace's call at a function's entry NOPs) is seen as on disk: conservative (unreliable).

File format (xz-compressed): the line ``sfunwind-return-sites 2``, one JSON line
``{"build_id":..., "base": B, "sections": [[name, link_address, size, n_sites], ...]}``,
then per section a bitmap with one bit per 4-byte slot (little-endian bit order; bit *i*
set when the instruction at ``address + 4*i - 4`` is a call), then per section ``n_sites``
little-endian int32 in site order: the target of the call as a word index from ``B``
(target = B + 4*value) when it is a direct ``BL`` to a *closed* function, else -1 (indirect
calls and calls to functions that may tail-call are not checked).
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import numpy as np

from sfunwind.errors import FormatError, UsageError

MAGIC = b"sfunwind-return-sites 2\n"
#: Upper bound on the text covered (a corrupt header must not allocate gigabytes).
MAX_TEXT = 1 << 30


class ReturnSiteFormatError(FormatError):
    kind = "return sites"


def _sext26(w: np.ndarray) -> np.ndarray:
    imm = (w & 0x3FFFFFF).astype(np.int64)
    return np.where(imm & (1 << 25), imm - (1 << 26), imm)


def call_mask(words: np.ndarray) -> np.ndarray:
    """For little-endian A64 instruction words: True where the word is a call."""
    w = words.astype(np.uint32, copy=False)
    bl = (w & 0xFC000000) == 0x94000000
    blr = (w & 0xFFFFFC1F) == 0xD63F0000
    blraz = (w & 0xFFFFF81F) == 0xD63F081F  # BLRAAZ / BLRABZ Xn
    blra = (w & 0xFFFFF800) == 0xD73F0800  # BLRAA / BLRAB Xn, Xm
    return bl | blr | blraz | blra


def _closed(words: np.ndarray) -> bool:
    """Can this function's code leave it only by returning (or trapping)?  (Offsets are
    relative to the function's start.)"""
    if not len(words):
        return False
    w = words.astype(np.uint32)
    n = len(w)
    pcs = 4 * np.arange(n, dtype=np.int64)
    start, end = 0, 4 * n

    def outside(targets: np.ndarray) -> bool:
        return bool(np.any((targets < start) | (targets >= end)))

    b = (w & 0xFC000000) == 0x14000000
    if b.any() and outside(pcs[b] + 4 * _sext26(w[b])):
        return False
    bcond = (w & 0xFF000010) == 0x54000000
    cb = (w & 0x7E000000) == 0x34000000
    for mask in (bcond, cb):
        if mask.any():
            imm = ((w[mask] >> 5) & 0x7FFFF).astype(np.int64)
            imm = np.where(imm & (1 << 18), imm - (1 << 19), imm)
            if outside(pcs[mask] + 4 * imm):
                return False
    tb = (w & 0x7E000000) == 0x36000000
    if tb.any():
        imm = ((w[tb] >> 5) & 0x3FFF).astype(np.int64)
        imm = np.where(imm & (1 << 13), imm - (1 << 14), imm)
        if outside(pcs[tb] + 4 * imm):
            return False
    indirect = (((w & 0xFFFFFC1F) == 0xD61F0000) | ((w & 0xFFFFF800) == 0xD71F0800)
                | ((w & 0xFFFFF81F) == 0xD61F081F))
    if indirect.any():
        return False
    last = int(w[-1])
    return ((last & 0xFFFFFC1F) == 0xD65F0000 or last in (0xD65F0BFF, 0xD65F0FFF)
            or (last & 0xFC000000) == 0x14000000 or (last & 0xFFE0001F) == 0xD4200000)


class ReturnSites:
    """``table(pc)`` -> True when *pc* (runtime address) follows a call;
    ``table.closed_call_target(pc)`` -> the target of the direct call before *pc* when that
    target is a closed function (runtime address), else None."""

    def __init__(self, sections: list[tuple[str, int, int, np.ndarray, np.ndarray]], *,
                 base: int = 0, build_id: str | None = None, kaslr_offset: int = 0) -> None:
        # (name, link address, size, bool array of return-site slots, closed call target
        # (word index from base, -1 if none) of each site in slot order)
        self.sections = sorted(sections, key=lambda s: s[1])
        self.base = base
        self.build_id = build_id
        self.kaslr_offset = kaslr_offset
        self._rank: dict[int, np.ndarray] = {}

    def relocated(self, kaslr_offset: int) -> ReturnSites:
        return ReturnSites(self.sections, base=self.base, build_id=self.build_id,
                           kaslr_offset=kaslr_offset)

    def _slot(self, pc: int) -> tuple[int, int] | None:
        link = pc - self.kaslr_offset
        if link & 3:
            return None
        for i, (_name, addr, size, _sites, _targets) in enumerate(self.sections):
            if addr <= link < addr + size:
                return i, (link - addr) >> 2
        return None

    def __call__(self, pc: int) -> bool | None:
        """True/False inside the code the table covers; None elsewhere (module text, say:
        not known, not checked)."""
        where = self._slot(pc)
        if where is None:
            return None if pc & 3 == 0 or not self.covers(pc) else False
        return bool(self.sections[where[0]][3][where[1]])

    def covers(self, pc: int) -> bool:
        link = pc - self.kaslr_offset
        return any(addr <= link < addr + size for _n, addr, size, _s, _t in self.sections)

    def closed_call_target(self, pc: int) -> int | None:
        where = self._slot(pc)
        if where is None:
            return None
        i, slot = where
        _name, _addr, _size, sites, targets = self.sections[i]
        if not sites[slot]:
            return None
        rank = self._rank.get(i)
        if rank is None:
            rank = np.cumsum(sites, dtype=np.int64)
            self._rank[i] = rank
        value = int(targets[int(rank[slot]) - 1])
        if value < 0:
            return None
        return self.base + 4 * value + self.kaslr_offset

    def count(self) -> int:
        return int(sum(int(s[3].sum()) for s in self.sections))

    def count_checked(self) -> int:
        return int(sum(int((s[4] >= 0).sum()) for s in self.sections))

    # -- building ----------------------------------------------------------------------
    @classmethod
    def from_code(cls, sections: list[tuple[str, int, bytes]], *,
                  functions: list[tuple[int, int]] = (), build_id: str | None = None
                  ) -> ReturnSites:
        """*sections*: (name, link address, code); *functions*: (start, size) of every
        function symbol (for the closed-function test)."""
        if not sections:
            raise UsageError("no code sections")
        base = min(addr for _, addr, _ in sections)
        parsed = []
        for name, addr, data in sections:
            if addr & 3:
                raise UsageError(f"text section {name} at {addr:#x} is not 4-byte aligned")
            n = len(data) // 4
            parsed.append((name, addr, np.frombuffer(data[:n * 4], dtype="<u4")))
        closed: set[int] = set()  # word indexes from base
        for start, size in functions:
            if size <= 0 or start & 3:
                continue
            for _name, addr, words in parsed:
                if addr <= start and start + size <= addr + 4 * len(words):
                    first = (start - addr) >> 2
                    if _closed(words[first:first + size // 4]):
                        closed.add((start - base) >> 2)
                    break
        closed_arr = np.array(sorted(closed), dtype=np.int64)
        out = []
        for name, addr, words in parsed:
            n = len(words)
            calls = call_mask(words)
            sites = np.zeros(n, dtype=bool)
            sites[1:] = calls[:-1]
            call_idx = np.nonzero(calls[:-1])[0].astype(np.int64) if n else np.zeros(0, np.int64)
            callw = words[call_idx]
            direct = (callw & 0xFC000000) == 0x94000000
            target = ((addr - base) >> 2) + call_idx + _sext26(callw)
            is_closed = np.isin(target, closed_arr) & direct
            out.append((name, addr, n * 4, sites, np.where(is_closed, target, -1)
                        .astype(np.int32)))
        return cls(out, base=base, build_id=build_id)

    @classmethod
    def from_elf(cls, path: str | Path) -> ReturnSites | None:
        """From the executable sections of a vmlinux that has its code (``None`` when the
        file is a debug-only ELF whose code sections are NOBITS)."""
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        try:
            with open(path, "rb") as f:
                elf = ELFFile(f)
                if elf["e_machine"] != "EM_AARCH64":
                    raise UsageError(f"{path}: not an arm64 ELF")
                build_id = None
                sections = []
                for sec in elf.iter_sections():
                    if sec["sh_type"] == "SHT_NOTE":
                        for note in sec.iter_notes():
                            if note["n_type"] == "NT_GNU_BUILD_ID":
                                build_id = note["n_desc"]
                    if not sec["sh_flags"] & 0x4:  # SHF_EXECINSTR
                        continue
                    if sec["sh_type"] != "SHT_PROGBITS" or not sec["sh_size"]:
                        continue
                    if sec["sh_size"] > MAX_TEXT:
                        raise ReturnSiteFormatError(f"section {sec.name} is too large",
                                                    path=str(path))
                    sections.append((sec.name, sec["sh_addr"], sec.data()))
                if not sections:
                    return None
                functions = []
                symtab = elf.get_section_by_name(".symtab")
                if symtab is not None:
                    functions = [(s["st_value"], s["st_size"]) for s in symtab.iter_symbols()
                                 if s["st_info"]["type"] == "STT_FUNC"]
        except ELFError as exc:
            raise ReturnSiteFormatError(str(exc), path=str(path)) from None
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        return cls.from_code(sections, functions=functions, build_id=build_id)

    # -- files -------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        head = {"build_id": self.build_id, "base": self.base,
                "sections": [[n, a, s, int(bits.sum())] for n, a, s, bits, _ in self.sections]}
        body = [MAGIC, json.dumps(head).encode(), b"\n"]
        body += [np.packbits(bits, bitorder="little").tobytes()
                 for _, _, _, bits, _ in self.sections]
        body += [targets.astype("<i4").tobytes() for _, _, _, _, targets in self.sections]
        Path(path).write_bytes(lzma.compress(b"".join(body), preset=9))

    @classmethod
    def load(cls, path: str | Path) -> ReturnSites:
        p = str(path)
        try:
            raw = lzma.decompress(Path(p).read_bytes())
        except lzma.LZMAError as exc:
            raise ReturnSiteFormatError(f"not xz data: {exc}", offset=0, path=p) from None
        except OSError as exc:
            raise UsageError(f"cannot read {p}: {exc.strerror}") from None
        if not raw.startswith(MAGIC):
            raise ReturnSiteFormatError("bad magic (not a version-2 return-site table)",
                                        offset=0, path=p)
        nl = raw.find(b"\n", len(MAGIC))
        if nl < 0:
            raise ReturnSiteFormatError("no header line", offset=len(MAGIC), path=p)
        try:
            head = json.loads(raw[len(MAGIC):nl])
            specs = [(str(n), int(a), int(s), int(c)) for n, a, s, c in head["sections"]]
            base = int(head["base"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ReturnSiteFormatError(f"bad header: {exc}", offset=len(MAGIC),
                                        path=p) from None
        pos = nl + 1

        def take(nbytes: int, what: str) -> int:
            nonlocal pos
            if nbytes < 0 or pos + nbytes > len(raw):
                raise ReturnSiteFormatError(f"{what} truncated", offset=pos, path=p)
            at = pos
            pos += nbytes
            return at

        bitmaps = []
        for name, addr, size, count in specs:
            if not 0 <= size <= MAX_TEXT or size & 3:
                raise ReturnSiteFormatError(f"section {name}: bad size {size}", offset=pos,
                                            path=p)
            n = size // 4
            at = take((n + 7) // 8, f"section {name} bitmap")
            bits = np.unpackbits(np.frombuffer(raw, np.uint8, (n + 7) // 8, at), count=n,
                                 bitorder="little").astype(bool)
            if int(bits.sum()) != count:
                raise ReturnSiteFormatError(f"section {name}: {int(bits.sum())} sites, "
                                            f"header says {count}", offset=at, path=p)
            bitmaps.append((name, addr, size, bits))
        sections = []
        for name, addr, size, bits in bitmaps:
            count = int(bits.sum())
            at = take(4 * count, f"section {name} call targets")
            sections.append((name, addr, size, bits,
                             np.frombuffer(raw, "<i4", count, at).astype(np.int32)))
        return cls(sections, base=base, build_id=head.get("build_id"))


def main(argv: list[str] | None = None) -> int:
    """``python -m sfunwind.unwind.returnsites VMLINUX OUT.rsites``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sfunwind.unwind.returnsites",
                                 description="Write the return-site table of a vmlinux.")
    ap.add_argument("vmlinux")
    ap.add_argument("out")
    args = ap.parse_args(argv)
    table = ReturnSites.from_elf(args.vmlinux)
    if table is None:
        raise SystemExit(f"{args.vmlinux} has no code (a debug-only vmlinux?)")
    table.save(args.out)
    print(f"{args.out}: {table.count()} return sites, {table.count_checked()} of them calls "
          f"to closed functions, build ID {table.build_id}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
