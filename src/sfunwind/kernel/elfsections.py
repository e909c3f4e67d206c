"""Section access for vmlinux files (full or ``--only-keep-debug``), via pyelftools headers.

pyelftools parses the section headers; the bulk contents (``.symtab``, ``.BTF``) are read
straight from the file so numpy can view them without per-entry Python objects.
"""

from __future__ import annotations

from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from sfunwind.errors import ElfFormatError

SHT_NOBITS = 8


class SectionMissing(ElfFormatError):
    """A section the caller needs is absent (or has no contents)."""


def _open(path: Path, display: str) -> tuple[object, ELFFile]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the caller (pyelftools reads lazily)
    except OSError as exc:
        raise ElfFormatError(f"cannot open: {exc.strerror}", path=display) from None
    try:
        return f, ELFFile(f)
    except (ELFError, ValueError, OSError) as exc:
        f.close()
        raise ElfFormatError(f"not a valid ELF file: {exc}", offset=0, path=display) from None


def section_headers(path: str | Path, *, display: str | None = None) -> dict[str, dict]:
    """``{name: {"offset", "size", "addr", "type", "flags", "link", "entsize", "index"}}``.

    Two extra keys: ``"__sections__"`` (``{"list": [...]}``, every section by index) and
    ``"__machine__"`` (ELF header facts).
    """
    display = display or str(path)
    f, elf = _open(Path(path), display)
    try:
        out: dict[str, dict] = {}
        by_index = []
        for index, sec in enumerate(elf.iter_sections()):
            h = sec.header
            entry = {"name": sec.name, "offset": h.sh_offset, "size": h.sh_size,
                     "addr": h.sh_addr, "type": h.sh_type, "flags": h.sh_flags,
                     "link": h.sh_link, "entsize": h.sh_entsize, "index": index}
            by_index.append(entry)
            out.setdefault(sec.name, entry)
        out["__sections__"] = {"list": by_index}
        out["__machine__"] = {"e_machine": elf.header.e_machine, "e_type": elf.header.e_type,
                              "little_endian": elf.little_endian, "elfclass": elf.elfclass}
        return out
    except (ELFError, ValueError, OSError) as exc:
        raise ElfFormatError(f"bad section headers: {exc}", path=display) from None
    finally:
        f.close()


def read_section(path: str | Path, name: str, *, display: str | None = None,
                 headers: dict[str, dict] | None = None) -> tuple[bytes, int]:
    """Contents and file offset of section *name* (by name; flags do not matter)."""
    display = display or str(path)
    headers = headers or section_headers(path, display=display)
    h = headers.get(name)
    if h is None:
        raise SectionMissing(f"no {name} section", path=display)
    if h["type"] == "SHT_NOBITS" or h["type"] == SHT_NOBITS:
        raise SectionMissing(f"{name} has no contents (SHT_NOBITS)", path=display)
    with open(path, "rb") as f:
        f.seek(0, 2)
        if h["offset"] + h["size"] > f.tell():
            raise ElfFormatError(f"{name} ({h['size']:#x} bytes) runs past the end of the file",
                                 offset=h["offset"], path=display)
        f.seek(h["offset"])
        return f.read(h["size"]), h["offset"]


def gnu_build_id(path: str | Path, headers: dict[str, dict], *,
                 display: str | None = None) -> str | None:
    """The NT_GNU_BUILD_ID of the file's note sections, as lowercase hex (or None)."""
    import struct

    for name, h in headers.items():
        if name.startswith("__") or (not name.startswith(".note") and name != ".notes"):
            continue
        if h["type"] in ("SHT_NOBITS", SHT_NOBITS):
            continue
        data, off = read_section(path, name, display=display, headers=headers)
        pos = 0
        for _ in range(4096):
            if pos + 12 > len(data):
                break
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            name_at = pos + 12
            desc_at = name_at + ((namesz + 3) & ~3)
            if desc_at + descsz > len(data):
                raise ElfFormatError(f"note overruns {name}", offset=off + pos, path=display)
            owner = data[name_at:name_at + namesz].rstrip(b"\0")
            if owner == b"GNU" and ntype == 3:
                return data[desc_at:desc_at + descsz].hex()
            pos = desc_at + ((descsz + 3) & ~3)
    return None
