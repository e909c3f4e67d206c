"""Loaded kernel modules: their text ranges and their kallsyms, as the kernel sees them.

``kernel_text_address()`` accepts module text, and ``%pS`` prints module symbols as
``name+0x10/0x60 [module]``; the unwinder needs both for traces that pass through modules.
Everything comes from the dump: the ``modules`` list of ``struct module`` (BTF layouts),
``mod->mem[MOD_TEXT]`` / ``mod->mem[MOD_INIT_TEXT]`` and ``mod->kallsyms`` (an ELF symbol
table and string table the module loader keeps).

Lookups follow ``find_kallsyms_symbol()`` (kernel/module/kallsyms.c): the closest preceding
named, non-mapping, defined symbol; its size is the distance to the next such symbol (at
worst the end of the text region).  Names are read lazily and only for the symbols that can
decide the answer, so a dump missing some of the string table pages still symbolizes what
it can (and raises :class:`~sfunwind.errors.MemoryFault` for what it cannot decide).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sfunwind.errors import VmcoreFormatError
from sfunwind.kernel.symbols import SymbolInfo

#: Bounds on untrusted module data.
MAX_MODULES = 1 << 14
MAX_MODULE_SYMBOLS = 1 << 20
SHN_UNDEF = 0
_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                 ("value", "<u8"), ("size", "<u8")])


def _is_mapping_symbol(name: str) -> bool:
    """``is_mapping_symbol()`` (include/linux/module_symbol.h): ``$x``/``$d``-style mapping
    symbols and assembler locals (``.L…``, ``L0``)."""
    return name.startswith(("$", ".L", "L0"))


@dataclass
class Module:
    """One loaded module: ``name``, ``address`` of its ``struct module``, text regions and
    symbol table location.  ``symbols`` are loaded on first lookup."""

    name: str
    address: int
    state: int
    text: tuple[int, int]  # MOD_TEXT [base, base + size)
    init_text: tuple[int, int] | None  # MOD_INIT_TEXT, None once freed (size 0)
    symtab: int
    num_symtab: int
    strtab: int
    _syms: np.ndarray | None = field(default=None, repr=False)
    _names: dict[int, str] = field(default_factory=dict, repr=False)

    def contains_text(self, address: int) -> bool:
        return any(r is not None and r[0] <= address < r[1] for r in (self.text, self.init_text))


class ModuleTable:
    """The ``modules`` list of a :class:`~sfunwind.kernel.program.KernelProgram`."""

    def __init__(self, prog) -> None:
        self.prog = prog
        self.modules: list[Module] = self._walk()

    def _walk(self) -> list[Module]:
        prog = self.prog
        head = prog.symbols.get("modules")
        if head is None:
            return []
        t = prog.types
        link = t.offsetof("struct module", "list")
        name_m = t.member("struct module", "name")
        state_off = t.offsetof("struct module", "state")
        kallsyms_off = t.offsetof("struct module", "kallsyms")
        enum = t.enum("enum mod_mem_type")
        mem = {k: (t.offsetof("struct module", f"mem[{enum[k]}].base"),
                   t.offsetof("struct module", f"mem[{enum[k]}].size"))
               for k in ("MOD_TEXT", "MOD_INIT_TEXT")}
        ks_symtab = t.offsetof("struct mod_kallsyms", "symtab")
        ks_num = t.offsetof("struct mod_kallsyms", "num_symtab")
        ks_strtab = t.offsetof("struct mod_kallsyms", "strtab")
        unformed = t.enum("enum module_state").get("MODULE_STATE_UNFORMED", 3)
        out = []
        for addr in prog._list(head, link, "modules", limit=MAX_MODULES):
            state = prog.memory.read_u32(addr + state_off)
            if state == unformed:
                continue  # still being loaded: the kernel skips these too
            raw = prog.memory.read(addr + name_m.offset, name_m.size)
            name = raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")

            def region(key: str, addr: int = addr) -> tuple[int, int] | None:
                base = prog.read_u64(addr + mem[key][0])
                size = prog.memory.read_u32(addr + mem[key][1])
                return (base, base + size) if base and size else None

            text = region("MOD_TEXT") or (0, 0)
            ks = prog.read_u64(addr + kallsyms_off)
            symtab = num = strtab = 0
            if ks:
                symtab = prog.read_u64(ks + ks_symtab)
                num = prog.memory.read_u32(ks + ks_num)
                strtab = prog.read_u64(ks + ks_strtab)
                if num > MAX_MODULE_SYMBOLS:
                    raise VmcoreFormatError(f"module {name}: {num} symbols")
            out.append(Module(name, addr, state, text, region("MOD_INIT_TEXT"), symtab, num,
                              strtab))
        return out

    def module_of(self, address: int) -> Module | None:
        """The module whose text contains *address*."""
        for mod in self.modules:
            if mod.contains_text(address):
                return mod
        return None

    # -- symbols ---------------------------------------------------------------------------
    def _symbols(self, mod: Module) -> np.ndarray:
        if mod._syms is None:
            raw = self.prog.memory.read(mod.symtab, _SYM.itemsize * mod.num_symtab)
            mod._syms = np.frombuffer(raw, dtype=_SYM)
        return mod._syms

    def _name(self, mod: Module, index: int) -> str:
        name = mod._names.get(index)
        if name is None:
            off = int(self._symbols(mod)["name"][index])
            data = b""
            for _ in range(64):  # names are < KSYM_NAME_LEN (512): 64 chunks of 8 bytes
                chunk = self.prog.memory.read(mod.strtab + off + len(data), 8)
                data += chunk
                if b"\0" in chunk:
                    break
            name = data.split(b"\0", 1)[0].decode("utf-8", errors="replace")
            mod._names[index] = name
        return name

    def _usable(self, mod: Module, index: int) -> bool:
        name = self._name(mod, index)
        return bool(name) and not _is_mapping_symbol(name)

    def lookup(self, address: int) -> SymbolInfo | None:
        """``find_kallsyms_symbol()``: the module symbol containing *address*, or None when
        *address* is not module text (or no symbol precedes it)."""
        mod = self.module_of(address)
        if mod is None or not mod.num_symtab:
            return None
        region = mod.text if mod.text[0] <= address < mod.text[1] else mod.init_text
        syms = self._symbols(mod)
        values = syms["value"]
        defined = syms["shndx"] != SHN_UNDEF
        defined[0] = False  # ELF symbol 0 is the null symbol
        below = np.flatnonzero(defined & (values <= address))
        above = np.flatnonzero(defined & (values > address) & (values < region[1]))
        best = None
        # nearest first; among aliases the lowest index, as the kernel's strict ">" scan
        for i in below[np.lexsort((below, ~values[below]))].tolist():
            if self._usable(mod, i):
                best = i
                break
        if best is None:
            return None
        nextval = region[1]
        for i in above[np.argsort(values[above], kind="stable")].tolist():
            if self._usable(mod, i):
                nextval = int(values[i])
                break
        start = int(values[best])
        return SymbolInfo(self._name(mod, best), start, nextval - start, address - start,
                          int(syms["size"][best]), module=mod.name)
