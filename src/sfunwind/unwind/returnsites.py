"""Return sites: the addresses right after a call instruction in kernel text.

A return address that a reliable trace reports must be one: the CPU only ever stores
``address of BL/BLR + 4`` in x30.  The kernel's unwinder does not check this (the livepatch
document recommends ``__kernel_text_address()``; §4.2 "identify unwindable code" asks for
more), but a corrupted saved LR that still points into kernel text is otherwise
indistinguishable from a real one.  This table is build-time metadata in the spirit of §3 of
``Documentation/livepatch/reliable-stacktrace.rst``: computed once from the vmlinux's code.

Call instructions recognised (A64): ``BL imm26``, ``BLR Xn``, ``BLRAA/BLRAB Xn, Xm`` and
``BLRAAZ/BLRABZ Xn``.  Data words inside text that happen to decode as calls only make the
check more permissive, never reject a real return address.

File format (``.rsites``, xz-compressed): the line ``sfunwind-return-sites 1``, one JSON line
``{"build_id":..., "sections": [[name, link_address, size], ...]}``, then for each section a
bitmap with one bit per 4-byte slot (little-endian bit order) of "the slot after is a return
site", i.e. bit *i* set when the instruction at ``address + 4*i - 4`` is a call.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import numpy as np

from sfunwind.errors import FormatError, UsageError

MAGIC = b"sfunwind-return-sites 1\n"
#: Upper bound on the text covered (a corrupt header must not allocate gigabytes).
MAX_TEXT = 1 << 30


class ReturnSiteFormatError(FormatError):
    kind = "return sites"


def call_mask(words: np.ndarray) -> np.ndarray:
    """For little-endian A64 instruction words: True where the word is a call."""
    w = words.astype(np.uint32, copy=False)
    bl = (w & 0xFC000000) == 0x94000000
    blr = (w & 0xFFFFFC1F) == 0xD63F0000
    blraz = (w & 0xFFFFF81F) == 0xD63F081F  # BLRAAZ / BLRABZ Xn
    blra = (w & 0xFFFFF800) == 0xD73F0800  # BLRAA / BLRAB Xn, Xm
    return bl | blr | blraz | blra


class ReturnSites:
    """``ReturnSites(...)(pc)`` -> True when *pc* (runtime address) follows a call."""

    def __init__(self, sections: list[tuple[str, int, int, np.ndarray]], *,
                 build_id: str | None = None, kaslr_offset: int = 0) -> None:
        # (name, link address, size, bool array of return-site slots)
        self.sections = sorted(sections, key=lambda s: s[1])
        self.build_id = build_id
        self.kaslr_offset = kaslr_offset

    def relocated(self, kaslr_offset: int) -> ReturnSites:
        return ReturnSites(self.sections, build_id=self.build_id, kaslr_offset=kaslr_offset)

    def __call__(self, pc: int) -> bool:
        link = pc - self.kaslr_offset
        if link & 3:
            return False
        for _name, addr, size, sites in self.sections:
            if addr <= link < addr + size:
                return bool(sites[(link - addr) >> 2])
        return False

    def count(self) -> int:
        return int(sum(int(s[3].sum()) for s in self.sections))

    # -- building ----------------------------------------------------------------------
    @classmethod
    def from_code(cls, sections: list[tuple[str, int, bytes]], *,
                  build_id: str | None = None) -> ReturnSites:
        out = []
        for name, addr, data in sections:
            if addr & 3:
                raise UsageError(f"text section {name} at {addr:#x} is not 4-byte aligned")
            n = len(data) // 4
            words = np.frombuffer(data[:n * 4], dtype="<u4")
            sites = np.zeros(n, dtype=bool)
            sites[1:] = call_mask(words[:-1]) if n else sites[1:]
            out.append((name, addr, n * 4, sites))
        return cls(out, build_id=build_id)

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
                    if sec.name == ".notes" or sec["sh_type"] == "SHT_NOTE":
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
        except ELFError as exc:
            raise ReturnSiteFormatError(str(exc), path=str(path)) from None
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        if not sections:
            return None
        return cls.from_code(sections, build_id=build_id)

    # -- files -------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        head = {"build_id": self.build_id,
                "sections": [[n, a, s] for n, a, s, _ in self.sections]}
        body = MAGIC + json.dumps(head).encode() + b"\n"
        body += b"".join(np.packbits(bits, bitorder="little").tobytes()
                         for _, _, _, bits in self.sections)
        Path(path).write_bytes(lzma.compress(body, preset=9))

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
            raise ReturnSiteFormatError("bad magic", offset=0, path=p)
        nl = raw.find(b"\n", len(MAGIC))
        if nl < 0:
            raise ReturnSiteFormatError("no header line", offset=len(MAGIC), path=p)
        try:
            head = json.loads(raw[len(MAGIC):nl])
            specs = [(str(n), int(a), int(s)) for n, a, s in head["sections"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ReturnSiteFormatError(f"bad header: {exc}", offset=len(MAGIC), path=p) from None
        pos = nl + 1
        sections = []
        for name, addr, size in specs:
            if not 0 <= size <= MAX_TEXT or size & 3:
                raise ReturnSiteFormatError(f"section {name}: bad size {size}", offset=pos, path=p)
            n = size // 4
            nbytes = (n + 7) // 8
            if pos + nbytes > len(raw):
                raise ReturnSiteFormatError(f"section {name}: bitmap truncated", offset=pos,
                                            path=p)
            bits = np.unpackbits(np.frombuffer(raw, np.uint8, nbytes, pos), count=n,
                                 bitorder="little").astype(bool)
            sections.append((name, addr, size, bits))
            pos += nbytes
        return cls(sections, build_id=head.get("build_id"))


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
    print(f"{args.out}: {table.count()} return sites, build ID {table.build_id}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
