"""The kernel's kallsyms, rebuilt from a vmlinux symbol table.

Livepatch resolves and sizes functions through kallsyms, not through ELF: ``old_func`` is
found with ``kallsyms_on_each_match_symbol()`` (the ``sympos``-th symbol of that name, in
address order) and ``old_size`` comes from ``kallsyms_lookup_size_offset()``, which is the
distance to the *next kallsyms symbol at a higher address* — not ``st_size``.  On the Debian
7.2.13 kernel ``__switch_to`` has ``st_size`` 0x31c but kallsyms size 0x348 (the padding up to
the next symbol belongs to it).  A return address in that padding is inside the function for
livepatch, so the range must be the kallsyms one.

The symbol list is what ``scripts/link-vmlinux.sh`` feeds to ``scripts/kallsyms``:
``nm -n vmlinux`` filtered by ``scripts/mksysmap``, then ``scripts/kallsyms``'s own
``is_ignored_symbol()``; with ``CONFIG_KALLSYMS_ALL=n`` only symbols in
``[_stext, _etext]`` and ``[_sinittext, _einittext]`` are kept.

The table is read with numpy straight from ``.symtab`` (a vmlinux has ~150k symbols; going
through pyelftools' per-symbol objects costs seconds).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sfunwind.errors import ElfFormatError, UsageError

#: ``scripts/mksysmap`` prefixes (after the symbol's leading space) that are dropped.
_MKSYSMAP_PREFIXES = (
    "$", ".L", "__efistub_", "__pi_$", "__pi_.L", "__kvm_nvhe_$", "__kvm_nvhe_.L",
    "__kcfi_typeid_", "__kvm_nvhe___kcfi_typeid_", "__pi___kcfi_typeid_", "__crc_",
    "__kstrtab_", "__kstrtabns_", "__mod_device_table__",
)
_MKSYSMAP_SUFFIXES = ("_from_arm", "_from_thumb", "_veneer")
_MKSYSMAP_EXACT = ("L0", "_SDA_BASE_", "_SDA2_BASE_")
#: ``scripts/kallsyms.c`` ``is_ignored_symbol()`` exact names.
_KALLSYMS_EXACT = (
    "kallsyms_addresses", "kallsyms_offsets", "kallsyms_relative_base", "kallsyms_num_syms",
    "kallsyms_names", "kallsyms_markers", "kallsyms_token_table", "kallsyms_token_index",
)

_ELF64_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                       ("value", "<u8"), ("size", "<u8")])
_STT_SECTION, _STT_FILE = 3, 4
_STB_LOCAL, _STB_WEAK = 0, 2
_SHN_UNDEF, _SHN_ABS = 0, 0xFFF1
MAX_SYMBOL_NAME = 512  # KSYM_NAME_LEN


def _kept_by_mksysmap(name: str) -> bool:
    if not name or name.startswith(_MKSYSMAP_PREFIXES) or name.endswith(_MKSYSMAP_SUFFIXES):
        return False
    if name in _MKSYSMAP_EXACT or name in _KALLSYMS_EXACT:
        return False
    if "__" in name and "Thunk_" in name:  # lld thunks: " __[[:alnum:]]*Thunk_"
        head = name.split("Thunk_", 1)[0]
        if head.startswith("__") and head[2:].isalnum():
            return False
    if name.startswith("__UNIQUE_ID_modinfo_") and name[len("__UNIQUE_ID_modinfo_"):].isdigit():
        return False
    return ".long_branch." not in name and ".plt_branch." not in name


@dataclass(frozen=True, slots=True)
class KSymbol:
    """One kallsyms entry: runtime address and kallsyms size (to the next higher symbol)."""

    name: str
    address: int
    size: int

    def contains(self, address: int) -> bool:
        return self.address <= address < self.address + self.size


class Kallsyms:
    """Address-sorted kallsyms of one object (vmlinux or one module), at runtime addresses."""

    def __init__(self, entries: Iterable[tuple[int, str]], *, end: int,
                 object_name: str = "vmlinux", text: tuple[int, int] | None = None) -> None:
        """*entries*: (address, name) pairs in the order the kernel enumerates them when it
        counts ``sympos`` (vmlinux: by address; a module: its symbol table order); *end*:
        the address that closes the last symbol (``_end``/``_etext`` for vmlinux, the end of
        a module's text).  *text*: a module's ``MOD_TEXT`` ``[base, end)``: a function in it
        ends at the next symbol or at ``end``, whichever is lower (``find_kallsyms_symbol``),
        even when a data symbol elsewhere lies higher."""
        given = list(entries)
        self._text = text
        pairs = sorted(given)
        self.object_name = object_name
        self._addresses = [a for a, _ in pairs]
        self._names = [n for _, n in pairs]
        self._end = end
        self._by_name: dict[str, list[int]] = {}
        for a, n in given:
            self._by_name.setdefault(n, []).append(a)
        # Distinct addresses, for the "next non-aliased symbol" rule.
        self._distinct = sorted(set(self._addresses))

    def __len__(self) -> int:
        return len(self._names)

    def _size_at(self, address: int) -> int:
        """``kallsyms_lookup_size_offset``'s size for a symbol starting at *address*."""
        j = bisect.bisect_right(self._distinct, address)
        nxt = self._distinct[j] if j < len(self._distinct) else self._end
        if self._text is not None and self._text[0] <= address < self._text[1]:
            nxt = min(nxt, self._text[1])
        return max(nxt - address, 0)

    def positions(self, name: str) -> list[int]:
        """Addresses of every symbol called *name*, in the order ``sympos`` counts them."""
        return list(self._by_name.get(name, ()))

    def find(self, name: str, sympos: int = 0) -> KSymbol:
        """``klp_find_object_symbol()``: the *sympos*-th *name* (1-based), or the unique one
        when *sympos* is 0; the kernel's error text when that fails."""
        if sympos < 0:
            raise UsageError(f"symbol position {sympos} for symbol '{name}' is negative")
        hits = self.positions(name)
        where = self.object_name
        if not hits:
            raise UsageError(f"symbol '{name}' not found in symbol table ({where})")
        if sympos == 0 and len(hits) > 1:
            listed = ", ".join(f"{i + 1}: {a:#x}" for i, a in enumerate(hits))
            raise UsageError(f"unresolvable ambiguity for symbol '{name}' in object '{where}' "
                             f"({len(hits)} symbols: {listed}; add ,SYMPOS)")
        if sympos > len(hits):
            raise UsageError(f"symbol position {sympos} for symbol '{name}' in object "
                             f"'{where}' not found ({len(hits)} symbols of that name)")
        address = hits[(sympos or 1) - 1]
        return KSymbol(name, address, self._size_at(address))

    def lookup(self, address: int) -> KSymbol | None:
        """The symbol containing *address* (first alias name, like ``%pS``), or None."""
        j = bisect.bisect_right(self._addresses, address) - 1
        if j < 0:
            return None
        start = self._addresses[j]
        while j > 0 and self._addresses[j - 1] == start:
            j -= 1
        sym = KSymbol(self._names[j], start, self._size_at(start))
        return sym if sym.contains(address) else None

    def names(self) -> Sequence[str]:
        return self._names

    @classmethod
    def from_elf(cls, path: str | Path, *, offset: int = 0, all_symbols: bool = True) -> Kallsyms:
        """kallsyms of a vmlinux (or vmlinux.debug), relocated by the KASLR *offset*.

        *all_symbols* mirrors ``CONFIG_KALLSYMS_ALL`` (on in Debian's kernels).
        """
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        path = Path(path)
        try:
            with path.open("rb") as f:
                elf = ELFFile(f)
                symtab = elf.get_section_by_name(".symtab")
                if symtab is None:
                    raise ElfFormatError("no .symtab: kallsyms cannot be rebuilt", path=str(path))
                if symtab["sh_entsize"] != _ELF64_SYM.itemsize or elf.elfclass != 64:
                    raise ElfFormatError("not an ELF64 symbol table",
                                         offset=symtab["sh_offset"], path=str(path))
                raw = symtab.data()
                strtab = elf.get_section(symtab["sh_link"]).data()
        except ELFError as exc:
            raise ElfFormatError(str(exc), path=str(path)) from exc
        if len(raw) % _ELF64_SYM.itemsize:
            raise ElfFormatError(".symtab size is not a multiple of 24", path=str(path))
        syms = np.frombuffer(raw, dtype=_ELF64_SYM)
        stype = syms["info"] & 0xF
        bind = syms["info"] >> 4
        keep = ((syms["shndx"] != _SHN_UNDEF) & (stype != _STT_SECTION) & (stype != _STT_FILE)
                & ~((syms["shndx"] == _SHN_ABS) & (bind == _STB_LOCAL))  # nm 'a'
                & ~((bind == _STB_WEAK) & (syms["shndx"] == _SHN_UNDEF)))
        entries: list[tuple[int, str]] = []
        special: dict[str, int] = {}
        for idx in np.nonzero(keep)[0]:
            start = int(syms["name"][idx])
            if start >= len(strtab):
                raise ElfFormatError(f"symbol {idx}: name offset {start:#x} outside .strtab",
                                     path=str(path))
            stop = strtab.find(b"\0", start, start + MAX_SYMBOL_NAME * 4)
            if stop < 0:
                raise ElfFormatError(f"symbol {idx}: unterminated name", path=str(path))
            name = strtab[start:stop].decode("utf-8", "replace")
            value = int(syms["value"][idx])
            if name in ("_stext", "_etext", "_sinittext", "_einittext", "_end"):
                special[name] = value
            if _kept_by_mksysmap(name) and not (syms["shndx"][idx] == _SHN_ABS
                                                 and name not in ("__gp",)):
                entries.append((value, name))
        if not all_symbols:
            ranges = [(special.get("_stext"), special.get("_etext")),
                      (special.get("_sinittext"), special.get("_einittext"))]
            ranges = [(lo, hi) for lo, hi in ranges if lo is not None and hi is not None]
            entries = [(a, n) for a, n in entries
                       if any(lo <= a <= hi for lo, hi in ranges)]
        end_key = "_end" if all_symbols else "_etext"
        end = special.get(end_key) or (max(a for a, _ in entries) if entries else 0)
        # vmlinux: kallsyms_on_each_match_symbol() visits equal names by address
        return cls(sorted((a + offset, n) for a, n in entries), end=end + offset)

    @classmethod
    def from_symbolizer(cls, symbols) -> Kallsyms:  # symbols: sfunwind.kernel.symbols.Symbolizer
        """The same table from the kernel model's kallsyms-exact :class:`Symbolizer`."""
        names = symbols.names
        addresses = symbols.addresses.tolist()
        return cls(sorted(zip(addresses, (names[i] for i in range(len(addresses))),
                              strict=True)), end=int(symbols.end))
