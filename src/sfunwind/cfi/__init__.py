"""DWARF CFI: ``.eh_frame``/``.debug_frame`` parsing, CFA program evaluation, and SFrame v3
generation exactly as GNU as does it.

Public API::

    from sfunwind.cfi import load_elf_cfi, convert_frame_section, kernel_sframe

    elf = load_elf_cfi("vmlinux")                 # sections, arch, build ID (.o: relocated)
    frames = elf.frames()                         # FrameSection (.eh_frame, else .debug_frame)
    rows = unwind_rows(frames, i, elf.arch)       # [sfunwind.rules.UnwindRow] of FDE i
    conv = convert_frame_section(frames, elf.arch)  # gas's translation; conv.refusals
    data = conv.encode(sframe_address)            # .sframe bytes, gas layout

    section = kernel_sframe("vmlinux")            # cached SFrameSection for a vmlinux
    table = kernel_sframe_table("vmlinux")        # cached SFrameTable (table.find(pc))

``kernel_sframe(vmlinux_path, cache_dir=None)`` converts the vmlinux's ``.debug_frame`` (or
``.eh_frame``) to SFrame v3 placed just past the last allocated section (8-aligned), and
caches the bytes by GNU build ID (falling back to a hash of the CFI bytes) under
``cache_dir`` or ``$XDG_CACHE_HOME/sfunwind`` (default ``~/.cache/sfunwind``): a second call
only reads the cache file.  ``vmlinux_path`` may be ``.xz`` compressed; it is then
decompressed once into the cache directory.  The returned section's FDEs carry absolute
function addresses (``section.fdes[i].start``).

Command line: ``sfunwind cfi dump``, ``sfunwind sframe from-cfi``, ``sfunwind sframe check``.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
from pathlib import Path

from sfunwind.cfi.arch import AARCH64, AARCH64_BE, X86_64, Arch, arch_by_name, arch_for_elf
from sfunwind.cfi.elfsource import ElfCFI, load_elf_cfi
from sfunwind.cfi.parser import (
    CIE,
    FDE,
    EhFrameHdr,
    FrameSection,
    parse_eh_frame_hdr,
    parse_frame_section,
)
from sfunwind.cfi.rows import CFIRow, evaluate_fde, to_unwind_row, unwind_rows
from sfunwind.cfi.to_sframe import (
    Conversion,
    GasFRE,
    Refusal,
    Translation,
    convert_frame_section,
    translate_fde,
)

#: Bumped whenever the converter's output could change (invalidates cached sections).
CONVERTER_VERSION = 1


def cache_directory(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    if cache_dir is not None:
        d = Path(cache_dir)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        d = Path(base) / "sfunwind"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _materialize(path: Path, cache: Path) -> Path:
    """An uncompressed copy of an ``.xz`` file (made once), else *path* itself."""
    if path.suffix != ".xz":
        return path
    st = path.stat()
    out = cache / f"{path.stem}.{st.st_size}.{int(st.st_mtime)}"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        with lzma.open(path) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.replace(out)
    return out


def kernel_sframe_bytes(vmlinux_path: str | os.PathLike[str],
                        cache_dir: str | os.PathLike[str] | None = None) -> tuple[bytes, int, dict]:
    """(section bytes, section address, conversion summary) for a vmlinux, cached."""
    cache = cache_directory(cache_dir)
    path = _materialize(Path(vmlinux_path), cache)
    elf = load_elf_cfi(path)
    which = ".debug_frame" if ".debug_frame" in elf.raw else ".eh_frame"
    key = elf.build_id or hashlib.sha256(elf.raw.get(which, b"")).hexdigest()[:40]
    stem = cache / f"{key}{which}.v{CONVERTER_VERSION}"
    data_file, meta_file = stem.with_suffix(stem.suffix + ".sframe"), stem.with_suffix(
        stem.suffix + ".json")
    if data_file.exists() and meta_file.exists():
        meta = json.loads(meta_file.read_text())
        return data_file.read_bytes(), int(meta["address"]), meta
    frames = elf.frames(which)
    conv = convert_frame_section(frames, elf.arch, path=str(path))
    address = (elf.text_end() + 7) & ~7
    data = conv.encode(address)
    meta = {"address": address, "build_id": elf.build_id, "section": which,
            "cfi_fdes": conv.source_fdes, "sframe_fdes": conv.num_fdes,
            "fres": conv.num_fres, "refused": len(conv.refusals),
            "refusal_reasons": dict(conv.refusal_reasons()),
            "covered_bytes": conv.covered_bytes(), "cfi_bytes": int(sum(frames.fde_pc_range)),
            "text_bytes": elf.executable_bytes()}
    tmp = data_file.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(data_file)
    meta_file.write_text(json.dumps(meta, indent=1, sort_keys=True))
    return data, address, meta


def kernel_sframe(vmlinux_path: str | os.PathLike[str],
                  cache_dir: str | os.PathLike[str] | None = None):
    """The vmlinux's CFI as an :class:`sfunwind.sframe.SFrameSection` (cached by build ID)."""
    from sfunwind.sframe import decode

    data, address, _ = kernel_sframe_bytes(vmlinux_path, cache_dir)
    return decode(data, section_address=address, path=str(vmlinux_path))


def kernel_sframe_table(vmlinux_path: str | os.PathLike[str],
                        cache_dir: str | os.PathLike[str] | None = None):
    """The vmlinux's CFI as an :class:`sfunwind.sframe.SFrameTable` (``find(pc)``), cached."""
    from sfunwind.sframe import SFrameTable

    data, address, _ = kernel_sframe_bytes(vmlinux_path, cache_dir)
    return SFrameTable.from_bytes(data, section_address=address, path=str(vmlinux_path))


__all__ = [
    "AARCH64", "AARCH64_BE", "CIE", "CONVERTER_VERSION", "FDE", "X86_64", "Arch", "CFIRow", "Conversion",
    "EhFrameHdr", "ElfCFI", "FrameSection", "GasFRE", "Refusal", "Translation",
    "arch_by_name", "arch_for_elf", "cache_directory", "convert_frame_section",
    "evaluate_fde", "kernel_sframe", "kernel_sframe_bytes", "kernel_sframe_table",
    "load_elf_cfi", "parse_eh_frame_hdr", "parse_frame_section", "to_unwind_row",
    "translate_fde", "unwind_rows",
]
