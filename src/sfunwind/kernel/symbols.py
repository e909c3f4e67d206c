"""Kernel symbols, looked up and printed the way the kernel's kallsyms does.

Why the kernel prints ``__switch_to+0x180/0x348`` where the ELF symbol table says the function
is 0x31c bytes long: kallsyms stores no sizes.  ``kallsyms_lookup_size_offset()`` →
``get_symbol_pos()`` takes a symbol's size to be the distance to the *next kallsyms symbol with
a higher address* (the last one ends at ``_end`` with ``CONFIG_KALLSYMS_ALL``, else at
``_etext``/``_einittext``).  Functions are aligned, so the padding after a function counts
towards its size.  :class:`Symbolizer` reproduces that: it keeps exactly the symbols
``scripts/mksysmap`` + ``scripts/kallsyms`` keep (no mapping symbols ``$x``/``$d``, no ``.L``
labels, no local absolutes, no debugging or undefined symbols, no EFI-stub/nVHE/PI-namespace
locals, no thunks or CFI type ids), orders aliases like ``kallsyms.c``'s ``compare_symbols()``
(strong before weak, real symbols before linker-script ``__start_``/``_end`` markers, fewer
leading underscores first, then ``nm -n`` order), and derives sizes from the next address.

Sources: a vmlinux ``.symtab`` (:meth:`Symbolizer.from_vmlinux`, addresses moved by the KASLR
offset), or the kallsyms tables inside the dump (:meth:`Symbolizer.from_kallsyms`) when there is
no vmlinux.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sfunwind.errors import ElfFormatError, FormatError, MemoryFault
from sfunwind.memory.base import AddressSpace

SHN_UNDEF = 0
SHN_ABS = 0xFFF1
SHF_ALLOC = 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE, STT_TLS = 0, 1, 2, 3, 4, 6
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2

_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                 ("value", "<u8"), ("size", "<u8")])

#: Name patterns ``scripts/mksysmap`` (and ``kallsyms.c``'s ``is_ignored_symbol``) drop.
_IGNORED = re.compile(
    r"^(\$|\.L|__efistub_|__pi_(\$|\.L)|__kvm_nvhe_(\$|\.L)|__kcfi_typeid_|"
    r"__kvm_nvhe___kcfi_typeid_|__pi___kcfi_typeid_|__crc_|__kstrtab_|__kstrtabns_)"
    r"|__[A-Za-z0-9]*Thunk_|^L0$|^_SDA2?_BASE_$|^__compound_literal\.\d+$"
)
#: kallsyms' own tables differ between link passes and are left out of themselves.
_KALLSYMS_OWN = {"kallsyms_offsets", "kallsyms_relative_base", "kallsyms_num_syms",
                 "kallsyms_names", "kallsyms_markers", "kallsyms_token_table",
                 "kallsyms_token_index", "kallsyms_seqs_of_names", "kallsyms_addresses"}

KSYM_NAME_LEN = 512
#: Most symbols accepted from kallsyms tables in a dump (bounds the decoder).
MAX_KALLSYMS = 1 << 22


def _linker_provided(name: str) -> bool:
    """``may_be_linker_script_provide_symbol()`` of scripts/kallsyms.c."""
    if len(name) < 4 or name[0] != "_" or name[1] != "_":
        # only __start_ / __stop_ / __end_ markers and *_start / *_end / *_stop
        return name.endswith(("_start", "_end", "_stop")) and name.startswith("_")
    if name.startswith(("__start_", "__stop_", "__end_")):
        return True
    return name.endswith(("_start", "_end", "_stop"))


@dataclass(frozen=True)
class SymbolInfo:
    """A symbol hit: ``name``, runtime ``address``, kallsyms-style ``size`` and the
    ``offset`` of the looked-up address inside it."""

    name: str
    address: int
    size: int
    offset: int
    elf_size: int | None = None  # st_size from .symtab, when known
    module: str | None = None  # the module's name for a module symbol (``[name]`` in %pS)

    def __iter__(self):  # lets callers unpack ``name, offset, size = lookup(a)``
        return iter((self.name, self.offset, self.size))


class Symbolizer:
    """Sorted kallsyms-equivalent symbols of one kernel; lookups are ``bisect`` on a list.

    ``addresses`` are runtime addresses (KASLR applied).  ``sizes`` follow kallsyms (distance
    to the next higher address).  Text ranges decide :meth:`is_kernel_text`.
    """

    def __init__(self, names: Sequence[str], addresses: np.ndarray, *, end: int,
                 text_ranges: list[tuple[int, int]], elf_sizes: np.ndarray | None = None,
                 kaslr_offset: int = 0, source: str = "") -> None:
        self.names = names
        self.addresses = addresses.astype(np.uint64)
        self.kaslr_offset = kaslr_offset
        self.source = source
        self.elf_sizes = elf_sizes
        self._addr_list = self.addresses.tolist()
        self.text_ranges = sorted(text_ranges)
        self._by_name: dict[str, int] | None = None
        self._set_end(end)

    def relocated(self, kaslr_offset: int) -> Symbolizer:
        """The same symbols at another KASLR offset (names, sizes and indexes are shared)."""
        delta = (kaslr_offset - self.kaslr_offset) & ((1 << 64) - 1)
        new = object.__new__(Symbolizer)
        new.names = self.names
        new.addresses = self.addresses + np.uint64(delta)  # uint64 arithmetic wraps
        new.kaslr_offset = kaslr_offset
        new.source = self.source
        new.elf_sizes = self.elf_sizes
        new._addr_list = new.addresses.tolist()
        new.text_ranges = [((lo + delta) & ((1 << 64) - 1), (hi + delta) & ((1 << 64) - 1))
                           for lo, hi in self.text_ranges]
        new._by_name = self._by_name
        new.end = (self.end + delta) & ((1 << 64) - 1)
        new.sizes = self.sizes
        return new

    def _set_end(self, end: int) -> None:
        """kallsyms sizes: distance to the next strictly higher address (aliases share it);
        the last symbol ends at *end*."""
        a = self.addresses
        if len(a) and np.any(a[1:] < a[:-1]):
            raise FormatError("symbol addresses are not sorted")
        self.end = end
        first = np.concatenate(([True], a[1:] != a[:-1])) if len(a) else np.zeros(0, bool)
        uniq = a[first]
        nxt = np.searchsorted(uniq, a, side="right")
        ends = np.where(nxt < len(uniq), uniq[np.minimum(nxt, max(len(uniq) - 1, 0))],
                        np.uint64(max(end, 0)))
        self.sizes = np.where(ends > a, ends - a, 0).astype(np.uint64)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_vmlinux(cls, path: str | Path, *, kaslr_offset: int = 0,
                     headers: dict[str, dict] | None = None,
                     all_symbols: bool = True) -> Symbolizer:
        """The kallsyms-equivalent symbols of a vmlinux ``.symtab``, moved by
        *kaslr_offset*.  Parsed once per file and process (a KASLR offset is a cheap
        relocated view), so opening many dumps of one kernel costs one parse.

        ``all_symbols`` mirrors ``CONFIG_KALLSYMS_ALL`` (set by Debian, Fedora, Ubuntu and
        this project's fixtures): without it kallsyms holds only text symbols
        (``[_stext, _etext]`` and ``[_sinittext, _einittext]``), which changes the size of
        a function followed by data."""
        from sfunwind.memory.files import materialize

        real = materialize(path)
        st = Path(real).stat()
        base = _vmlinux_symbols(str(Path(real).resolve()), st.st_size, st.st_mtime_ns,
                                str(path), all_symbols)
        return base.relocated(kaslr_offset)  # a fresh view: callers may set .source

    @classmethod
    def _parse_vmlinux(cls, real: str, display: str,
                       headers: dict[str, dict] | None = None,
                       kaslr_offset: int = 0, all_symbols: bool = True) -> Symbolizer:
        from sfunwind.kernel.elfsections import read_section, section_headers

        headers = headers or section_headers(real, display=display)
        symtab, symoff = read_section(real, ".symtab", display=display, headers=headers)
        if len(symtab) % _SYM.itemsize:
            raise ElfFormatError(".symtab size is not a multiple of 24", offset=symoff,
                                 path=display)
        strtab_name = headers["__sections__"]["list"][headers[".symtab"]["link"]]["name"]
        strtab, _ = read_section(real, strtab_name, display=display, headers=headers)
        syms = np.frombuffer(symtab, dtype=_SYM)
        sections = headers["__sections__"]["list"]
        alloc = np.zeros(0x10000, dtype=bool)
        for sec in sections:
            # a section with an address is loaded in the running kernel even where a debug
            # file lost SHF_ALLOC (objcopy --set-section-flags .BTF=contents,readonly)
            alloc[sec["index"]] = bool(sec["flags"] & SHF_ALLOC) or sec["addr"] != 0
        stype = syms["info"] & 0xF
        bind = syms["info"] >> 4
        shndx = syms["shndx"]
        keep = (syms["name"] != 0) & (shndx != SHN_UNDEF)
        keep &= np.isin(stype, (STT_NOTYPE, STT_OBJECT, STT_FUNC))
        # absolute symbols (nm 'a'/'A': PECOFF_FILE_ALIGNMENT, ...) are not kallsyms:
        # kallsyms stores offsets from _text and is_ignored_symbol() drops type 'A'
        keep &= shndx != SHN_ABS
        # debugging symbols (nm 'N'): defined in a non-allocated section
        keep &= (shndx >= 0xFF00) | alloc[shndx]
        idx = np.flatnonzero(keep)
        if len(strtab) == 0:
            raise ElfFormatError("empty string table", path=display)
        name_offs = syms["name"][idx].astype(np.int64)
        if int(name_offs.max(initial=0)) >= len(strtab):
            raise ElfFormatError(".symtab name offset outside the string table",
                                 offset=symoff, path=display)
        ignored = _ignored_by_prefix(strtab, name_offs)
        sel = idx[~ignored]
        name_offs = name_offs[~ignored]
        values = syms["value"][sel]
        weak = (bind[sel] == STB_WEAK)
        elf_sizes = syms["size"][sel]
        # nm -n order: by address, ties by name; then kallsyms' compare_symbols() for aliases
        order = _kallsyms_order(values, name_offs, weak, strtab)
        name_offs = name_offs[order]
        values = values[order] + np.uint64(kaslr_offset & ((1 << 64) - 1))
        elf_sizes = elf_sizes[order]
        names = _LazyNames(strtab, name_offs)
        sym = cls(names, values, end=0, text_ranges=[], elf_sizes=elf_sizes,
                  kaslr_offset=kaslr_offset, source=display)
        marks = {n: sym.get(n) for n in ("_stext", "_etext", "_sinittext", "_einittext",
                                          "_end")}
        if marks["_stext"] is not None and marks["_etext"] is not None:
            sym.text_ranges.append((marks["_stext"], marks["_etext"]))
        if marks["_sinittext"] is not None and marks["_einittext"] is not None:
            sym.text_ranges.append((marks["_sinittext"], marks["_einittext"]))
        sym.text_ranges.sort()
        if not all_symbols and sym.text_ranges:
            # scripts/kallsyms.c symbol_valid() without --all-symbols: text ranges, end
            # inclusive, minus other symbols sitting exactly at _etext / _einittext
            keep = np.zeros(len(values), dtype=bool)
            for lo, hi in sym.text_ranges:
                keep |= (values >= np.uint64(lo)) & (values <= np.uint64(hi))
            for end_name in ("_etext", "_einittext"):
                at = marks[end_name]
                if at is not None:
                    for i in np.flatnonzero(keep & (values == np.uint64(at))).tolist():
                        keep[i] = names[i] == end_name
            ranges = sym.text_ranges
            sym = cls(_LazyNames(strtab, name_offs[keep]), values[keep], end=0,
                      text_ranges=ranges, elf_sizes=elf_sizes[keep],
                      kaslr_offset=kaslr_offset, source=display)
            sym._set_end(max(hi for _, hi in ranges))
            return sym
        sym._set_end(marks["_end"] if marks["_end"] is not None else
                     int(values.max(initial=0)))
        return sym

    @classmethod
    def from_kallsyms(cls, memory: AddressSpace, vmcoreinfo, *,
                      kaslr_offset: int | None = None) -> Symbolizer:
        """Decode the kallsyms tables of the running kernel (addresses from VMCOREINFO).

        Layout (``kernel/kallsyms.c``, 6.x+): ``kallsyms_num_syms`` (u32); ``kallsyms_names``:
        per symbol a length (one byte, or two when the high bit is set: ``(b0 & 0x7f) |
        b1 << 7``) then that many token indices; ``kallsyms_token_index`` (u16 × 256) into
        ``kallsyms_token_table`` (NUL-terminated strings); ``kallsyms_offsets`` (u32, offsets
        from ``kallsyms_relative_base`` when VMCOREINFO gives it, else from ``_text``, anchored
        at ``SYMBOL(_stext)``).  The first character of each name is nm's type letter.
        """
        try:
            num_at = vmcoreinfo.symbol("kallsyms_num_syms")
            names_at = vmcoreinfo.symbol("kallsyms_names")
            token_table_at = vmcoreinfo.symbol("kallsyms_token_table")
            token_index_at = vmcoreinfo.symbol("kallsyms_token_index")
            offsets_at = vmcoreinfo.symbol("kallsyms_offsets")
        except FormatError as exc:
            raise FormatError(f"no kallsyms tables in VMCOREINFO ({exc.message})") from None
        count = memory.read_u32(num_at)
        if not 0 < count <= MAX_KALLSYMS:
            raise FormatError(f"kallsyms_num_syms = {count} is implausible")
        token_index = np.frombuffer(memory.read(token_index_at, 512), dtype="<u2")
        table_size = int(token_index.max()) + 256
        token_blob = _read_upto(memory, token_table_at, table_size)
        tokens = []
        for off in token_index.tolist():
            end = token_blob.find(b"\0", off)
            if end < 0:
                raise FormatError(f"kallsyms token at {token_table_at + off:#x} unterminated")
            tokens.append(token_blob[off:end].decode("latin-1"))
        offsets = np.frombuffer(memory.read(offsets_at, 4 * count), dtype="<u4").astype(
            np.uint64)
        names: list[str] = []
        types: list[str] = []
        pos = names_at
        chunk = b""
        chunk_at = pos
        for _ in range(count):
            if pos + 2 > chunk_at + len(chunk):
                chunk_at = pos
                chunk = _read_upto(memory, pos, 1 << 16)
            rel = pos - chunk_at
            length = chunk[rel]
            head = 1
            if length & 0x80:
                length = (length & 0x7F) | (chunk[rel + 1] << 7)
                head = 2
            if length == 0 or length > KSYM_NAME_LEN:
                raise FormatError(f"kallsyms name at {pos:#x} has length {length}")
            if rel + head + length > len(chunk):
                chunk_at = pos
                chunk = _read_upto(memory, pos, max(1 << 16, head + length))
                rel = 0
            text = "".join(tokens[b] for b in chunk[rel + head:rel + head + length])
            types.append(text[:1])
            names.append(text[1:])
            pos += head + length
        if "NUMBER(kallsyms_relative_base)" in vmcoreinfo or \
                "SYMBOL(kallsyms_relative_base)" in vmcoreinfo:
            base = memory.read_u64(vmcoreinfo.symbol("kallsyms_relative_base"))
        else:
            try:
                stext_index = names.index("_stext")
            except ValueError:
                raise FormatError("kallsyms has no _stext to anchor its offsets") from None
            base = vmcoreinfo.symbol("_stext") - int(offsets[stext_index])
        addresses = (offsets + np.uint64(base)).astype(np.uint64)
        order = np.argsort(addresses, kind="stable")
        names = [names[i] for i in order]
        addresses = addresses[order]
        by = dict(zip(names, addresses.tolist(), strict=True))
        text_ranges = []
        if "_stext" in by and "_etext" in by:
            text_ranges.append((by["_stext"], by["_etext"]))
        if "_sinittext" in by and "_einittext" in by:
            text_ranges.append((by["_sinittext"], by["_einittext"]))
        end = by.get("_end", int(addresses[-1]))
        koff = vmcoreinfo.kernel_offset if kaslr_offset is None else kaslr_offset
        return cls(names, addresses, end=end, text_ranges=text_ranges, kaslr_offset=koff,
                   source="kallsyms")

    # -- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def lookup(self, address: int) -> SymbolInfo | None:
        """The kallsyms symbol containing *address*, or None (before the first symbol or past
        ``_end``).  Of several symbols at one address, the one kallsyms would print."""
        i = bisect.bisect_right(self._addr_list, address) - 1
        if i < 0:
            return None
        start = self._addr_list[i]
        while i > 0 and self._addr_list[i - 1] == start:  # first alias, as get_symbol_pos()
            i -= 1
        size = int(self.sizes[i])
        if address >= start + size:
            return None
        elf = None if self.elf_sizes is None else int(self.elf_sizes[i])
        return SymbolInfo(self.names[i], start, size, address - start, elf)

    def is_kernel_text(self, address: int) -> bool:
        """In ``[_stext, _etext)`` or ``[_sinittext, _einittext)`` (the kernel's
        ``is_kernel_text()`` / ``is_kernel_inittext()``)."""
        return any(lo <= address < hi for lo, hi in self.text_ranges)

    def _name_index(self) -> dict[str, int]:
        """name -> first index (built once; for a vmlinux source only on demand)."""
        if self._by_name is None:
            by: dict[str, int] = {}
            for i in range(len(self.names) - 1, -1, -1):  # the first occurrence wins
                by[self.names[i]] = i
            self._by_name = by
        return self._by_name

    def index_of(self, name: str) -> int | None:
        if self._by_name is None and isinstance(self.names, _LazyNames):
            return self.names.find(name)
        return self._name_index().get(name)

    def addresses_of(self, name: str) -> list[int]:
        """Runtime addresses of every symbol called *name* (static functions of one name
        in several files: ``__flush_tlb_range.constprop.0.isra.0``), in address order."""
        if isinstance(self.names, _LazyNames):
            return [self._addr_list[i] for i in self.names.find_all(name)]
        return [self._addr_list[i] for i, n in enumerate(self.names) if n == name]

    def address_of(self, name: str) -> int:
        """Runtime address of *name* (KeyError if absent); the first of duplicates."""
        i = self.index_of(name)
        if i is None:
            raise KeyError(name)
        return self._addr_list[i]

    def get(self, name: str) -> int | None:
        i = self.index_of(name)
        return None if i is None else self._addr_list[i]

    def __contains__(self, name: str) -> bool:
        return self.index_of(name) is not None

    def format(self, address: int, *, backtrace: bool = False) -> str:
        """``%pS`` (``name+0x10/0x60``), or ``%pB`` with ``backtrace=True``: the symbol of
        ``address - 1`` (a return address may point past its call's function), printed
        with the offset of ``address``.  Unknown addresses print as ``0x…`` like the kernel."""
        info = self.lookup(address - 1 if backtrace else address)
        if info is None:
            return f"{address:#x}"
        offset = address - info.address
        return f"{info.name}+{offset:#x}/{info.size:#x}"


@functools.lru_cache(maxsize=4)
def _vmlinux_symbols(real: str, size: int, mtime_ns: int, display: str,
                     all_symbols: bool = True) -> Symbolizer:
    """Parse cache of :meth:`Symbolizer.from_vmlinux`, keyed by file identity."""
    return Symbolizer._parse_vmlinux(real, display, all_symbols=all_symbols)


class _LazyNames(Sequence[str]):
    """Symbol names as offsets into a string table, decoded when asked for.

    Decoding all ~150k vmlinux names costs more than everything else at open time, and a
    trace needs a few dozen of them.  The string table is tail-merged (a name may start in
    the middle of a longer one), so names are cut at the next NUL from their own offset.
    """

    def __init__(self, strtab: bytes, offsets: np.ndarray) -> None:
        self.strtab = strtab
        self.offsets = offsets
        self._cache: dict[int, str] = {}
        self._index: dict[bytes, int] | None = None
        self._dups: dict[bytes, list[int]] = {}

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        name = self._cache.get(i)
        if name is None:
            off = int(self.offsets[i])
            end = self.strtab.find(b"\0", off)
            if end < 0:
                raise ElfFormatError(f"unterminated string at strtab offset {off:#x}")
            name = self.strtab[off:end].decode("utf-8", errors="replace")
            self._cache[i] = name
        return name

    def find(self, name: str) -> int | None:
        """Index of the first symbol (in kallsyms order) called *name*, or None."""
        if self._index is None:
            # one pass: every name ends at the next NUL; slicing ~150k names into a dict
            # costs about what two linear searches of the 4 MB string table cost
            table = np.frombuffer(self.strtab, dtype=np.uint8)
            nuls = np.flatnonzero(table == 0)
            ends = nuls[np.minimum(np.searchsorted(nuls, self.offsets), len(nuls) - 1)]
            strtab = self.strtab
            index: dict[bytes, int] = {}
            dups: dict[bytes, list[int]] = {}
            for i, (a, b) in enumerate(zip(self.offsets.tolist(), ends.tolist(), strict=True)):
                key = strtab[a:b]
                first = index.setdefault(key, i)
                if first != i:  # static functions of the same name in several files
                    dups.setdefault(key, [first]).append(i)
            self._index = index
            self._dups = dups
        return self._index.get(name.encode())

    def find_all(self, name: str) -> list[int]:
        """Indices of every symbol called *name*, in kallsyms order."""
        first = self.find(name)
        if first is None:
            return []
        return list(self._dups.get(name.encode(), [first]))


_PREFIXES = (b"$", b".L", b"__efistub_", b"__pi_$", b"__pi_.L", b"__kvm_nvhe_$",
             b"__kvm_nvhe_.L", b"__kcfi_typeid_", b"__kvm_nvhe___kcfi_typeid_",
             b"__pi___kcfi_typeid_", b"__crc_", b"__kstrtab_", b"__kstrtabns_",
             b"__compound_literal.", b"L0\0", b"_SDA_BASE_\0", b"_SDA2_BASE_\0")
_PREFIX_WORDS = 4  # prefixes up to 32 bytes


def _ignored_by_prefix(strtab: bytes, offsets: np.ndarray) -> np.ndarray:
    """Which names (by string-table offset) mksysmap/kallsyms drop.

    Vectorised: the first 32 bytes of every name are gathered as four little-endian u64
    words (from eight byte-shifted u64 views of the string table, one per alignment) and
    compared with each prefix under a mask; decoding every name would dominate load time.
    """
    pad = b"\0" * (8 * (_PREFIX_WORDS + 2))
    blob = strtab + pad
    n_words = (len(strtab) + 8 * (_PREFIX_WORDS + 1)) // 8
    shifted = np.stack([np.frombuffer(blob, dtype="<u8", count=n_words, offset=r)
                        for r in range(8)])
    rows, cols = offsets % 8, offsets // 8
    first = shifted[rows, cols]
    # every ignored prefix starts with one of these bytes: gather the rest only for those
    lead = (first & np.uint64(0xFF)).astype(np.uint8)
    cand = np.flatnonzero(np.isin(lead, np.frombuffer(b"$._Lk", dtype=np.uint8)))
    words = [first[cand]] + [shifted[rows[cand], cols[cand] + j]
                             for j in range(1, _PREFIX_WORDS)]
    hit = np.zeros(len(cand), dtype=bool)
    for prefix in _PREFIXES + tuple(n.encode() + b"\0" for n in sorted(_KALLSYMS_OWN)):
        match = np.ones(len(cand), dtype=bool)
        for j in range(0, len(prefix), 8):
            chunk = prefix[j:j + 8]
            value = int.from_bytes(chunk, "little")
            mask = (1 << (8 * len(chunk))) - 1
            match &= (words[j // 8] & np.uint64(mask)) == np.uint64(value)
        hit |= match
    bad = np.zeros(len(offsets), dtype=bool)
    bad[cand[hit]] = True
    # ld/lld veneers ("__<alnum>*Thunk_"): only strings that contain "Thunk_" are decoded
    pos = strtab.find(b"Thunk_")
    while pos >= 0:
        start = strtab.rfind(b"\0", 0, pos) + 1
        for i in np.flatnonzero((offsets >= start) & (offsets < pos)).tolist():
            off = int(offsets[i])
            name = strtab[off:strtab.find(b"\0", off)].decode("utf-8", errors="replace")
            if _IGNORED.search(name):
                bad[i] = True
        pos = strtab.find(b"Thunk_", pos + 1)
    return bad


def _kallsyms_order(values: np.ndarray, name_offs: np.ndarray, weak: np.ndarray,
                    strtab: bytes) -> np.ndarray:
    """Indices in the order kallsyms lists symbols (see module docstring).  Names are only
    decoded for symbols that share an address with another."""
    order = np.argsort(values)  # ties are fully ordered below, stability is not needed
    sv = values[order]
    same = np.flatnonzero(sv[1:] == sv[:-1])
    if len(same) == 0:
        return order
    order = order.copy()

    def name(i: int) -> str:
        off = int(name_offs[i])
        return strtab[off:strtab.find(b"\0", off)].decode("utf-8", errors="replace")

    starts = same[np.concatenate(([True], np.diff(same) > 1))]
    for s in starts.tolist():
        e = s + 1
        while e < len(sv) and sv[e] == sv[s]:
            e += 1
        group = [(i, name(i)) for i in order[s:e].tolist()]
        group.sort(key=lambda g: (bool(weak[g[0]]), _linker_provided(g[1]),
                                  len(g[1]) - len(g[1].lstrip("_")), g[1]))
        order[s:e] = [g[0] for g in group]
    return order


def _read_upto(memory: AddressSpace, address: int, size: int) -> bytes:
    """Up to *size* bytes at *address*, stopping early where memory ends (the fault says
    where); a fault at *address* itself propagates."""
    try:
        return memory.read(address, size)
    except MemoryFault as fault:
        if not address < fault.address < address + size:
            raise
        return memory.read(address, fault.address - address)
