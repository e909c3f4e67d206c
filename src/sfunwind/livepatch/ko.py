"""Read a livepatch module's ``klp_patch`` / ``klp_object`` / ``klp_func`` tables from its .ko.

A livepatch module (``samples/livepatch/livepatch-sample.c`` style, or kpatch-build output)
is an ELF relocatable object.  Its tables are static data whose pointers are not filled in
the file: every pointer is a relocation (``R_AARCH64_ABS64`` / ``R_X86_64_64``) against a
symbol or section plus an addend.  So the tables are read through the relocations of their
section:

* ``struct klp_patch`` is found by its first two fields: ``.mod = THIS_MODULE`` (a relocation
  against ``__this_module``) followed by ``.objs`` (a relocation into writable data);
* ``klp_object``: ``name`` (a string, or NULL for vmlinux) at +0, ``funcs`` at +8; the array
  ends at the entry whose ``funcs`` and ``name`` are both NULL (``klp_for_each_object_static``);
* ``klp_func``: ``old_name`` at +0, ``new_func`` at +8, ``old_sympos`` (a plain integer) at +16;
  the array ends at the entry with all three zero (``klp_for_each_func_static``).

Modules made by ``scripts/livepatch/klp-build`` (6.19+) have no static ``klp_patch``: their
``.init.klp_objects`` section is an array of ``struct klp_object_ext`` (``name``, ``funcs``,
``callbacks``, ``nr_funcs``) pointing at ``nr_funcs`` ``struct klp_func_ext`` (``old_name``,
``new_func``, ``sympos``), from which the module's init builds the patch; those layouts are
fixed by ``include/linux/livepatch_external.h``.

Those external fields have had these offsets since the API's first version; the struct
*sizes* (the array strides) change between kernels (152/168 bytes for ``klp_func`` /
``klp_object`` on 7.2).  They are inferred per array from the symbol's ``st_size`` and the
positions of its relocations (each candidate stride must put a relocation at +0 and +8 of
every func, +8 of every object, and nothing in the all-zero terminator), and must agree
across arrays.

Every count is bounded by section sizes; anything malformed is an
:class:`~sfunwind.errors.ElfFormatError` naming the file and the offset.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sfunwind.errors import ElfFormatError
from sfunwind.livepatch.patch import FuncSpec, PatchSpec

#: ABS64 relocation types per machine.
_ABS64 = {"EM_AARCH64": 257, "EM_X86_64": 1, "EM_PPC64": 38, "EM_S390": 22, "EM_RISCV": 2,
          "EM_LOONGARCH": 2}
MAX_FUNCS = 100_000
#: What pyelftools raises on corrupt files besides ELFError (it parses with construct).
_MALFORMED = (struct.error, ValueError, IndexError, KeyError, EOFError, OverflowError)
MAX_NAME = 512  # KSYM_NAME_LEN
MAX_MODULE_SIZE = 1 << 30


@dataclass(frozen=True, slots=True)
class _Reloc:
    offset: int
    symbol: str  # symbol name ('' for a section symbol)
    section: int | None  # section index the symbol is defined in (None: undefined)
    value: int  # symbol value
    addend: int

    @property
    def target(self) -> int:
        return self.value + self.addend


@dataclass(slots=True)
class KoFunc:
    old_name: str
    new_func: str  # symbol name of the replacement in the module
    old_sympos: int
    offset: int  # file offset of the klp_func entry

    def to_json(self) -> dict[str, object]:
        return {"old_name": self.old_name, "new_func": self.new_func,
                "old_sympos": self.old_sympos, "offset": self.offset}


@dataclass(slots=True)
class KoObject:
    name: str | None  # None: vmlinux
    funcs: list[KoFunc]
    offset: int

    def to_json(self) -> dict[str, object]:
        return {"name": self.name or "vmlinux", "funcs": [f.to_json() for f in self.funcs],
                "offset": self.offset}


@dataclass(slots=True)
class LivepatchModule:
    """What ``klp_enable_patch()`` would be handed, read from the file."""

    path: str
    module: str  # the module's name (.modinfo name=, dashes as underscores)
    objects: list[KoObject]
    func_size: int
    object_size: int
    livepatch_tag: bool  # .modinfo livepatch=Y
    modinfo: dict[str, str] = field(default_factory=dict)
    #: ``klp_patch``: a static struct klp_patch (samples/livepatch, kpatch-build);
    #: ``klp_object_ext``: klp-build's ``.init.klp_objects`` tables (the init code builds the
    #: klp_patch at load time, with ``replace`` on unless built with KLP_NO_REPLACE).
    layout: str = "klp_patch"

    def spec(self) -> PatchSpec:
        funcs = [FuncSpec(f.old_name, o.name, f.old_sympos, f.new_func)
                 for o in self.objects for f in o.funcs]
        return PatchSpec(funcs, module=self.module, source=self.path)

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "module": self.module, "livepatch": self.livepatch_tag,
                "layout": self.layout,
                "sizeof_klp_func": self.func_size, "sizeof_klp_object": self.object_size,
                "objects": [o.to_json() for o in self.objects]}


class _Ko:
    def __init__(self, path: Path) -> None:
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile
        from elftools.elf.relocation import RelocationSection
        from elftools.elf.sections import SymbolTableSection

        self.path = str(path)
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise ElfFormatError(f"cannot open: {exc.strerror}", path=self.path) from None
        if len(blob) > MAX_MODULE_SIZE:
            raise ElfFormatError(f"{len(blob)} bytes: larger than any module "
                                 f"({MAX_MODULE_SIZE})", path=self.path)
        # In memory: a corrupt offset then fails as a short read, never as a huge one.
        self._file = io.BytesIO(blob)
        try:
            self.elf = ELFFile(self._file)
            if self.elf["e_type"] != "ET_REL":
                raise self.error(f"not a kernel module (ELF type {self.elf['e_type']}, "
                                 "expected ET_REL)")
            machine = self.elf["e_machine"]
            if machine not in _ABS64 or self.elf.elfclass != 64:
                raise self.error(f"unsupported module machine {machine} / ELF{self.elf.elfclass}")
            self.abs64 = _ABS64[machine]
            self.little = self.elf.little_endian
            self.sections = list(self.elf.iter_sections())
            for i, sec in enumerate(self.sections):
                if (sec["sh_type"] != "SHT_NOBITS"
                        and sec["sh_offset"] + sec["sh_size"] > len(blob)):
                    raise self.error(f"section {i} ({sec.name}) runs past the end of the file",
                                     self.elf["e_shoff"] + i * self.elf["e_shentsize"])
            self.symtab = self.elf.get_section_by_name(".symtab")
            if not isinstance(self.symtab, SymbolTableSection):
                raise self.error("no .symtab symbol table (a module always has one)")
            self.symbols = list(self.symtab.iter_symbols())
            self.data: dict[int, bytes] = {}
            self.relocs: dict[int, dict[int, _Reloc]] = {}
            for sec in self.sections:
                if isinstance(sec, RelocationSection) and sec["sh_type"] == "SHT_RELA":
                    target = sec["sh_info"]
                    table = self.relocs.setdefault(target, {})
                    for r in sec.iter_relocations():
                        if r["r_info_type"] != self.abs64:
                            continue
                        idx = r["r_info_sym"]
                        if idx >= len(self.symbols):
                            raise self.error(f"relocation at {r['r_offset']:#x} names symbol "
                                             f"{idx} of {len(self.symbols)}",
                                             sec["sh_offset"])
                        sym = self.symbols[idx]
                        shndx = sym["st_shndx"]
                        table[r["r_offset"]] = _Reloc(
                            r["r_offset"], sym.name, shndx if isinstance(shndx, int) else None,
                            sym["st_value"], r["r_addend"])
        except ELFError as exc:
            self._file.close()
            raise ElfFormatError(str(exc), path=self.path) from None
        except BaseException:
            self._file.close()
            raise

    def close(self) -> None:
        self._file.close()

    def error(self, reason: str, offset: int | None = None) -> ElfFormatError:
        return ElfFormatError(reason, offset=offset, path=self.path)

    def section_data(self, index: int) -> bytes:
        if index not in self.data:
            sec = self.sections[index]
            self.data[index] = b"" if sec["sh_type"] == "SHT_NOBITS" else sec.data()
        return self.data[index]

    def file_offset(self, section: int, offset: int) -> int:
        return self.sections[section]["sh_offset"] + offset

    def u64(self, section: int, offset: int) -> int:
        data = self.section_data(section)
        if offset < 0 or offset + 8 > len(data):
            raise self.error(f"read of 8 bytes at {offset:#x} beyond section "
                             f"{self.sections[section].name}", self.file_offset(section, 0))
        return struct.unpack_from("<Q" if self.little else ">Q", data, offset)[0]

    def string_at(self, reloc: _Reloc) -> str:
        if reloc.section is None or reloc.section >= len(self.sections):
            raise self.error(f"string pointer at {reloc.offset:#x} is against undefined symbol "
                             f"{reloc.symbol!r}")
        data = self.section_data(reloc.section)
        start = reloc.target
        end = data.find(b"\0", start, start + MAX_NAME + 1) if 0 <= start < len(data) else -1
        if end < 0:
            raise self.error(f"no NUL-terminated name at {self.sections[reloc.section].name}"
                             f"+{start:#x}", self.file_offset(reloc.section, max(start, 0)))
        return data[start:end].decode("utf-8", "replace")

    def function_name(self, reloc: _Reloc) -> str:
        """The function a ``new_func`` relocation points at (section symbol + addend too)."""
        if reloc.section is None:
            return reloc.symbol  # an external function: named by the relocation itself
        if reloc.symbol and reloc.addend == 0:
            return reloc.symbol
        for sym in self.symbols:
            if (sym["st_shndx"] == reloc.section and sym["st_info"]["type"] == "STT_FUNC"
                    and sym["st_value"] == reloc.target):
                return sym.name
        return f"{self.sections[reloc.section].name}+{reloc.target:#x}"

    def object_symbol(self, section: int, offset: int) -> tuple[int, int] | None:
        """(start, st_size) of the OBJECT symbol at *offset* in *section*, if any."""
        for sym in self.symbols:
            if (sym["st_shndx"] == section and sym["st_info"]["type"] == "STT_OBJECT"
                    and sym["st_value"] == offset and sym["st_size"]):
                return sym["st_value"], sym["st_size"]
        return None

    def relocs_in(self, section: int, start: int, end: int) -> list[_Reloc]:
        return sorted((r for off, r in self.relocs.get(section, {}).items()
                       if start <= off < end), key=lambda r: r.offset)


def _stride(ko: _Ko, section: int, start: int, size: int, required: tuple[int, ...],
            minimum: int, what: str) -> int:
    """The element size of a zero-terminated array of *size* bytes at *start*."""
    relocs = ko.relocs_in(section, start, start + size)
    data = ko.section_data(section)
    for stride in range(minimum, size + 1, 8):
        if size % stride:
            continue
        n = size // stride
        if n < 1:
            continue
        ok = True
        for k in range(n - 1):
            base = start + k * stride
            if not all((base + r) in ko.relocs.get(section, {}) for r in required):
                ok = False
                break
        term = start + (n - 1) * stride
        if ok and any(term <= r.offset < term + stride for r in relocs):
            ok = False
        if ok and data[term:term + stride].strip(b"\0"):
            ok = False
        if ok:
            return stride
    raise ko.error(f"cannot find the element size of the {what} array ({size} bytes at "
                   f"{ko.sections[section].name}+{start:#x})", ko.file_offset(section, start))


def _is_patch_candidate(ko: _Ko, table: dict[int, _Reloc], mod: _Reloc) -> bool:
    """``.mod = THIS_MODULE`` followed by a pointer into writable, non-code data (``.objs``);
    rules out e.g. ``file_operations.owner`` followed by a function pointer."""
    objs = table.get(mod.offset + 8)
    if mod.symbol != "__this_module" or objs is None or objs.section is None:
        return False
    flags = ko.sections[objs.section]["sh_flags"]
    return bool(flags & 0x1) and not flags & 0x4  # SHF_WRITE, not SHF_EXECINSTR


def _find_patch(ko: _Ko) -> tuple[int, _Reloc]:
    """(section of struct klp_patch, its ``objs`` relocation)."""
    candidates = []
    for section, table in ko.relocs.items():
        for r in table.values():
            if r.symbol == "__this_module" and _is_patch_candidate(ko, table, r):
                candidates.append((section, table[r.offset + 8]))
    if not candidates:
        raise ko.error("no struct klp_patch (a `.mod = THIS_MODULE, .objs = ...` pair) found: "
                       "not a livepatch module")
    if len(candidates) > 1:
        raise ko.error(f"{len(candidates)} candidate struct klp_patch found; expected one")
    return candidates[0]


def _array(ko: _Ko, reloc: _Reloc, required: tuple[int, ...], minimum: int,
           what: str) -> tuple[int, int, int]:
    """(section, start, stride) of the array a pointer relocation points at."""
    if reloc.section is None:
        raise ko.error(f"{what} pointer at {reloc.offset:#x} is against undefined symbol "
                       f"{reloc.symbol!r}")
    start = reloc.target
    sym = ko.object_symbol(reloc.section, start)
    if sym is None:
        raise ko.error(f"the {what} array at {ko.sections[reloc.section].name}+{start:#x} has no "
                       "sized symbol (stripped module?): its element size cannot be inferred",
                       ko.file_offset(reloc.section, start))
    size = sym[1]
    if size > len(ko.section_data(reloc.section)) - start:
        raise ko.error(f"the {what} array runs past its section",
                       ko.file_offset(reloc.section, start))
    return reloc.section, start, _stride(ko, reloc.section, start, size, required, minimum, what)


def _objects(ko: _Ko, objs: _Reloc) -> tuple[list[KoObject], int, int]:
    section, start, ostride = _array(ko, objs, (8,), 16, "klp_object")
    table = ko.relocs.get(section, {})
    objects: list[KoObject] = []
    func_stride = 0
    data_len = len(ko.section_data(section))
    for k in range(data_len // ostride + 1):
        base = start + k * ostride
        name_r, funcs_r = table.get(base), table.get(base + 8)
        if name_r is None and funcs_r is None:
            break  # klp_for_each_object_static's terminator
        if funcs_r is None:
            raise ko.error(f"klp_object {k} has a name but no funcs",
                           ko.file_offset(section, base))
        name = ko.string_at(name_r) if name_r is not None else None
        fsec, fstart, fstride = _array(ko, funcs_r, (0, 8), 24, "klp_func")
        if func_stride and fstride != func_stride:
            raise ko.error(f"klp_func arrays disagree on sizeof(struct klp_func): "
                           f"{func_stride} vs {fstride}", ko.file_offset(fsec, fstart))
        func_stride = fstride
        objects.append(KoObject(name, list(_funcs(ko, fsec, fstart, fstride)),
                                ko.file_offset(section, base)))
    return objects, ostride, func_stride


def _funcs(ko: _Ko, section: int, start: int, stride: int) -> Iterator[KoFunc]:
    table = ko.relocs.get(section, {})
    data_len = len(ko.section_data(section))
    for k in range(min(MAX_FUNCS, data_len // stride + 1)):
        base = start + k * stride
        old_r, new_r = table.get(base), table.get(base + 8)
        sympos = ko.u64(section, base + 16) if base + 24 <= data_len else 0
        if old_r is None and new_r is None and sympos == 0:
            return  # klp_for_each_func_static's terminator
        if old_r is None or new_r is None:
            raise ko.error(f"klp_func {k} lacks {'old_name' if old_r is None else 'new_func'}",
                           ko.file_offset(section, base))
        yield KoFunc(ko.string_at(old_r), ko.function_name(new_r), sympos,
                     ko.file_offset(section, base))
    raise ko.error("klp_func array without terminator", ko.file_offset(section, start))


#: ``include/linux/livepatch_external.h`` on 64-bit: klp_object_ext is name, funcs,
#: callbacks (four pointers and a bool: 40 bytes), nr_funcs; klp_func_ext is old_name,
#: new_func, sympos.  (pahole on the fixture module: 64 and 24 bytes.)
KLP_OBJECT_EXT_SIZE = 64
KLP_OBJECT_EXT_NR_FUNCS = 56
KLP_FUNC_EXT_SIZE = 24
KLP_OBJECTS_SECTION = ".init.klp_objects"


def _ext_objects(ko: _Ko, section: int) -> list[KoObject]:
    """klp-build's tables: an array of klp_object_ext filling ``.init.klp_objects``."""
    data = ko.section_data(section)
    if len(data) % KLP_OBJECT_EXT_SIZE:
        raise ko.error(f"{KLP_OBJECTS_SECTION} is {len(data)} bytes, not a multiple of "
                       f"sizeof(struct klp_object_ext) = {KLP_OBJECT_EXT_SIZE}",
                       ko.file_offset(section, 0))
    table = ko.relocs.get(section, {})
    objects = []
    for k in range(len(data) // KLP_OBJECT_EXT_SIZE):
        base = k * KLP_OBJECT_EXT_SIZE
        name_r, funcs_r = table.get(base), table.get(base + 8)
        nr = struct.unpack_from("<I" if ko.little else ">I", data,
                                base + KLP_OBJECT_EXT_NR_FUNCS)[0]
        if funcs_r is None or funcs_r.section is None:
            raise ko.error(f"klp_object_ext {k} has no funcs pointer",
                           ko.file_offset(section, base))
        fdata_len = len(ko.section_data(funcs_r.section))
        if nr == 0 or funcs_r.target + nr * KLP_FUNC_EXT_SIZE > fdata_len:
            raise ko.error(f"klp_object_ext {k}: {nr} klp_func_ext at "
                           f"{ko.sections[funcs_r.section].name}+{funcs_r.target:#x} do not "
                           "fit their section", ko.file_offset(section, base))
        ftable = ko.relocs.get(funcs_r.section, {})
        funcs = []
        for j in range(nr):
            fb = funcs_r.target + j * KLP_FUNC_EXT_SIZE
            old_r, new_r = ftable.get(fb), ftable.get(fb + 8)
            if old_r is None or new_r is None:
                raise ko.error(f"klp_func_ext {j} of object {k} lacks "
                               f"{'old_name' if old_r is None else 'new_func'}",
                               ko.file_offset(funcs_r.section, fb))
            funcs.append(KoFunc(ko.string_at(old_r), ko.function_name(new_r),
                                ko.u64(funcs_r.section, fb + 16),
                                ko.file_offset(funcs_r.section, fb)))
        objects.append(KoObject(ko.string_at(name_r) if name_r is not None else None, funcs,
                                ko.file_offset(section, base)))
    return objects


def _modinfo(ko: _Ko) -> dict[str, str]:
    for i, sec in enumerate(ko.sections):
        if sec.name == ".modinfo":
            out: dict[str, str] = {}
            for item in ko.section_data(i).split(b"\0"):
                if b"=" in item:
                    k, v = item.decode("utf-8", "replace").split("=", 1)
                    out.setdefault(k, v)
            return out
    return {}


def read_livepatch_module(path: str | Path) -> LivepatchModule:
    """Parse *path*'s klp tables (what ``klp_enable_patch(&patch)`` registers)."""
    from elftools.common.exceptions import ELFError

    try:
        ko = _Ko(Path(path))
    except _MALFORMED as exc:
        raise ElfFormatError(f"malformed ELF: {exc}", path=str(path)) from None
    try:
        ext = next((i for i, sec in enumerate(ko.sections)
                    if sec.name == KLP_OBJECTS_SECTION), None)
        layout = "klp_patch"
        has_patch = any(_is_patch_candidate(ko, t, r)
                        for t in ko.relocs.values() for r in t.values())
        if ext is not None and not has_patch:
            objects = _ext_objects(ko, ext)
            ostride, fstride, layout = KLP_OBJECT_EXT_SIZE, KLP_FUNC_EXT_SIZE, "klp_object_ext"
        else:
            _section, objs = _find_patch(ko)
            objects, ostride, fstride = _objects(ko, objs)
        if not objects:
            raise ko.error("the module describes no klp objects")
        info = _modinfo(ko)
        name = info.get("name") or Path(path).name.removesuffix(".ko")
        return LivepatchModule(str(path), name.replace("-", "_"), objects, fstride, ostride,
                               info.get("livepatch") == "Y", info, layout)
    except (*_MALFORMED, ELFError) as exc:  # pyelftools' exceptions on corrupt data
        raise ElfFormatError(f"malformed ELF: {exc}", path=str(path)) from None
    finally:
        ko.close()
