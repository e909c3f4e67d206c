"""Struct layouts from DWARF (``.debug_info``), for kernels built without BTF.

The same queries as :class:`sfunwind.kernel.btf.BTF` (``member``, ``offsetof``, ``size_of``,
``enum``, ``var_size``), answered from the DWARF of a full vmlinux with pyelftools.  This is
the slow path (a full kernel has hundreds of MB of DWARF): only the top-level DIEs of
compilation units are looked at, the CUs most likely to define the kernel types the task
model needs are searched first (``arch/arm64/kernel/stacktrace.c``, ``kernel/sched/core.c``),
and the search stops as soon as every requested name is found.  Use BTF when the kernel has
it (``CONFIG_DEBUG_INFO_BTF``, the default in distributions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import DWARFError, ELFError
from elftools.elf.elffile import ELFFile

from sfunwind.errors import ElfFormatError, FormatError
from sfunwind.kernel.btf import Member

#: CUs searched first: between them they define every type :class:`KernelLayout` uses.
PREFERRED_CUS = ("arch/arm64/kernel/stacktrace.c", "kernel/sched/core.c")
_QUALIFIERS = {"DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
               "DW_TAG_restrict_type", "DW_TAG_atomic_type"}
_KIND_TAG = {"struct": "DW_TAG_structure_type", "union": "DW_TAG_union_type",
             "enum": "DW_TAG_enumeration_type"}
_SIGNED = {0x05, 0x06, 0x0D}  # DW_ATE_signed, signed_char, signed_fixed
MAX_CHAIN = 64
_PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")


class DwarfFormatError(FormatError):
    kind = "DWARF"


@dataclass
class _Found:
    die: object


class DwarfTypes:
    """Named struct/union/enum/typedef/variable types of a DWARF file, found on demand."""

    def __init__(self, path: str | Path, *, display: str | None = None) -> None:
        self.path = display or str(path)
        try:
            self._file = open(path, "rb")  # noqa: SIM115 - pyelftools reads it lazily
            self._elf = ELFFile(self._file)
            if not self._elf.has_dwarf_info() or self._elf.get_section_by_name(
                    ".debug_info") is None:
                raise ElfFormatError("neither .BTF nor DWARF (.debug_info): no struct layouts "
                                     "(a vmlinux of a CONFIG_DEBUG_INFO_BTF kernel, or its "
                                     "-dbg vmlinux, is needed)", path=self.path)
            self._dwarf = self._elf.get_dwarf_info()
        except (ELFError, DWARFError, ValueError) as exc:
            raise DwarfFormatError(f"cannot read DWARF: {exc}", path=self.path) from None
        self._index: dict[tuple[str, str], object] = {}
        self._scanned: set[int] = set()
        self._cu_names: list[tuple[int, str]] | None = None

    def close(self) -> None:
        self._file.close()

    # -- finding types ---------------------------------------------------------------------
    def _key(self, cname: str) -> tuple[str, str]:
        words = cname.split()
        if len(words) == 2 and words[0] in _KIND_TAG:
            return _KIND_TAG[words[0]], words[1]
        if len(words) == 1:
            return "DW_TAG_typedef", words[0]
        raise KeyError(cname)

    def _scan_cu(self, cu) -> None:
        if cu.cu_offset in self._scanned:
            return
        self._scanned.add(cu.cu_offset)
        try:
            for die in cu.get_top_DIE().iter_children():
                name = die.attributes.get("DW_AT_name")
                if name is None or "DW_AT_declaration" in die.attributes:
                    continue
                tag = die.tag
                if tag in ("DW_TAG_structure_type", "DW_TAG_union_type",
                           "DW_TAG_enumeration_type", "DW_TAG_typedef", "DW_TAG_base_type",
                           "DW_TAG_variable"):
                    key = (tag, name.value.decode("utf-8", errors="replace"))
                    self._index.setdefault(key, die)
        except (DWARFError, ValueError, KeyError) as exc:
            raise DwarfFormatError(f"bad DIE in CU at {cu.cu_offset:#x}: {exc}",
                                   offset=cu.cu_offset, path=self.path) from None

    def _cus(self):
        try:
            yield from self._dwarf.iter_CUs()
        except (DWARFError, ValueError) as exc:
            raise DwarfFormatError(f"bad compilation unit: {exc}", path=self.path) from None

    def preload(self, cnames: list[str]) -> None:
        """Find all of *cnames* in one pass: the preferred CUs first, then every CU in order
        until none is missing."""
        keys = {self._key(c) for c in cnames}
        missing = keys - self._index.keys()
        if not missing:
            return
        later = []
        for cu in self._cus():
            top = cu.get_top_DIE()
            name = top.attributes.get("DW_AT_name")
            text = name.value.decode("utf-8", errors="replace") if name else ""
            if text in PREFERRED_CUS:
                self._scan_cu(cu)
                missing -= self._index.keys()
                if not missing:
                    return
            else:
                later.append(cu.cu_offset)
        for offset in later:
            self._scan_cu(self._dwarf.get_CU_at(offset))
            missing -= self._index.keys()
            if not missing:
                return

    def _find_die(self, cname: str):
        key = self._key(cname)
        if key not in self._index:
            self.preload([cname])
        die = self._index.get(key)
        if die is None and key[0] == "DW_TAG_typedef":
            die = self._index.get(("DW_TAG_base_type", key[1]))
        if die is None:
            raise KeyError(cname)
        return die

    def has_type(self, cname: str) -> bool:
        try:
            self._find_die(cname)
        except KeyError:
            return False
        return True

    # -- type structure --------------------------------------------------------------------
    @staticmethod
    def _type_of(die):
        if "DW_AT_type" not in die.attributes:
            return None
        return die.get_DIE_from_attribute("DW_AT_type")

    def _resolve(self, die):
        for _ in range(MAX_CHAIN):
            if die is None or die.tag not in _QUALIFIERS:
                return die
            die = self._type_of(die)
        raise DwarfFormatError("typedef/qualifier chain too long", offset=die.offset,
                               path=self.path)

    def _sizeof(self, die) -> int:
        count = 1
        for _ in range(MAX_CHAIN):
            die = self._resolve(die)
            if die is None:
                return 0
            if die.tag == "DW_TAG_array_type":
                for sub in die.iter_children():
                    if sub.tag == "DW_TAG_subrange_type":
                        count *= self._array_len(sub)
                die = self._type_of(die)
                continue
            if die.tag == "DW_TAG_pointer_type":
                return 8 * count
            size = die.attributes.get("DW_AT_byte_size")
            if size is None:
                raise KeyError(f"DIE at {die.offset:#x} ({die.tag}) has no size")
            return int(size.value) * count
        raise DwarfFormatError("array chain too long", path=self.path)

    @staticmethod
    def _array_len(sub) -> int:
        if "DW_AT_count" in sub.attributes:
            return int(sub.attributes["DW_AT_count"].value)
        if "DW_AT_upper_bound" in sub.attributes:
            return int(sub.attributes["DW_AT_upper_bound"].value) + 1
        return 0  # flexible array

    def _signed(self, die) -> bool:
        die = self._resolve(die)
        if die is None:
            return False
        enc = die.attributes.get("DW_AT_encoding")
        return die.tag == "DW_TAG_base_type" and enc is not None and enc.value in _SIGNED

    @staticmethod
    def _member_location(m) -> tuple[int, int, int]:
        """(bit offset, bit size, storage bytes) of a DW_TAG_member."""
        bit_size = int(m.attributes["DW_AT_bit_size"].value) \
            if "DW_AT_bit_size" in m.attributes else 0
        if "DW_AT_data_bit_offset" in m.attributes:
            return int(m.attributes["DW_AT_data_bit_offset"].value), bit_size, 0
        loc = m.attributes.get("DW_AT_data_member_location")
        if loc is None:
            return 0, bit_size, 0  # union members
        value = loc.value
        if isinstance(value, list):  # DWARF 2 expression: DW_OP_plus_uconst N
            if len(value) >= 2 and value[0] == 0x23:
                n, shift = 0, 0
                for b in value[1:]:
                    n |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                value = n
            else:
                raise KeyError(f"unsupported member location expression {value}")
        return int(value) * 8, bit_size, 0

    def _find_member(self, die, name: str, depth: int = 0):
        if depth > MAX_CHAIN:
            raise DwarfFormatError("anonymous member nesting too deep", path=self.path)
        die = self._resolve(die)
        for m in die.iter_children():
            if m.tag != "DW_TAG_member":
                continue
            bits, bit_size, _ = self._member_location(m)
            mname = m.attributes.get("DW_AT_name")
            if mname is not None and mname.value.decode() == name:
                return self._type_of(m), bits, bit_size
            if mname is None:
                inner_type = self._resolve(self._type_of(m))
                if inner_type is not None and inner_type.tag in ("DW_TAG_structure_type",
                                                                 "DW_TAG_union_type"):
                    inner = self._find_member(inner_type, name, depth + 1)
                    if inner is not None:
                        return inner[0], bits + inner[1], inner[2]
        return None

    def _dims(self, arr) -> list[int]:
        return [self._array_len(sub) for sub in arr.iter_children()
                if sub.tag == "DW_TAG_subrange_type"]

    def member(self, type_name: str, path: str) -> Member:
        """Where ``path`` (``"thread.cpu_context.fp"``, ``"regs[29]"``, ``"m[1][2]"``) is.

        DWARF describes ``T a[3][5]`` as one array type with two subranges (BTF: an array
        of arrays), so indexing keeps the dimensions not yet consumed: ``a[1]`` is a
        ``T[5]`` of 5 * sizeof(T) bytes.
        """
        die = self._find_die(type_name)
        dims: list[int] = []  # remaining dimensions when *die* is an array's element type
        bits = 0
        bit_size = 0
        for part in path.split("."):
            m = _PATH_PART.match(part)
            if not m:
                raise KeyError(f"bad member path {path!r}")
            if dims:
                raise KeyError(f"{path}: member of an array")
            found = self._find_member(die, m.group(1))
            if found is None:
                raise KeyError(f"{type_name} has no member {m.group(1)!r} ({path})")
            die, off, bit_size = found
            bits += off
            for index in re.findall(r"\[(\d+)\]", m.group(2)):
                if not dims:
                    arr = self._resolve(die)
                    if arr is None or arr.tag != "DW_TAG_array_type":
                        raise KeyError(f"{path}: not an array")
                    dims = self._dims(arr)
                    die = self._type_of(arr)
                if int(index) >= dims[0] > 0:
                    raise KeyError(f"{path}: index {index} out of bounds ({dims[0]})")
                stride = self._sizeof(die)
                for d in dims[1:]:
                    stride *= d
                bits += int(index) * stride * 8
                dims = dims[1:]
        size = self._sizeof(die)
        for d in dims:
            size *= d
        signed = False if dims else self._signed(die)
        if bit_size:
            return Member(path, bits // 8, size, die.offset, bits % 8, bit_size, signed)
        return Member(path, bits // 8, size, die.offset, 0, 0, signed)

    def offsetof(self, type_name: str, path: str) -> int:
        return self.member(type_name, path).offset

    def size_of(self, type_name: str) -> int:
        return self._sizeof(self._find_die(type_name))

    def enum(self, cname: str) -> dict[str, int]:
        die = self._find_die(cname if cname.startswith("enum ") else f"enum {cname}")
        out = {}
        for e in die.iter_children():
            if e.tag == "DW_TAG_enumerator":
                out[e.attributes["DW_AT_name"].value.decode()] = \
                    int(e.attributes["DW_AT_const_value"].value)
        return out

    def var_size(self, name: str) -> int | None:
        """Size of global variable *name*'s type (searched in the CUs already scanned)."""
        die = self._index.get(("DW_TAG_variable", name))
        return None if die is None else self._sizeof(self._type_of(die))
