"""BPF Type Format (``.BTF``): struct layouts, member sizes and enum values of a kernel build.

The kernel's BTF (``CONFIG_DEBUG_INFO_BTF``) describes every type of the build in ~5 MB.  It
gives the offsets the unwinder needs (``task_struct.thread.cpu_context.fp``, ``pt_regs`` and
its ``stackframe``, ``rq.curr`` …) for *any* kernel build, with no hand-written tables.

Reading is lazy: opening scans the type section once (one header per type, to know where each
type starts) into numpy arrays; members and enumerators are decoded only for the types asked
for.  Names are found through the (deduplicated) string section, so a lookup by name is a
``bytes.find`` plus a vectorised compare.

In ``vmlinux`` the section is named ``.BTF``; in a debug file made with ``objcopy
--only-keep-debug`` it is not ``SHF_ALLOC`` any more (or is ``SHT_NOBITS``), so it is found by
name, never through program headers.

Format: ``include/uapi/linux/btf.h`` / Documentation/bpf/btf.rst.
"""

from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from sfunwind.errors import BTFFormatError

BTF_MAGIC = 0xEB9F

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD = 1, 2, 3, 4, 5, 6, 7
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_FUNC_PROTO = 8, 9, 10, 11, 12, 13
KIND_VAR, KIND_DATASEC, KIND_FLOAT, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 14, 15, 16, 17, 18, 19

KIND_NAMES = {1: "int", 2: "ptr", 3: "array", 4: "struct", 5: "union", 6: "enum", 7: "fwd",
              8: "typedef", 9: "volatile", 10: "const", 11: "restrict", 12: "func",
              13: "func_proto", 14: "var", 15: "datasec", 16: "float", 17: "decl_tag",
              18: "type_tag", 19: "enum64"}
_QUALIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)

#: Bytes of kind-specific data after the 12-byte ``struct btf_type``: (fixed, per vlen item).
_EXTRA = {KIND_INT: (4, 0), KIND_ARRAY: (12, 0), KIND_STRUCT: (0, 12), KIND_UNION: (0, 12),
          KIND_ENUM: (0, 8), KIND_FUNC_PROTO: (0, 8), KIND_VAR: (4, 0), KIND_DATASEC: (0, 12),
          KIND_DECL_TAG: (4, 0), KIND_ENUM64: (0, 12)}
for _k in (KIND_PTR, KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT,
           KIND_FUNC, KIND_FLOAT, KIND_TYPE_TAG):
    _EXTRA[_k] = (0, 0)

_HDR = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")
#: Deepest chain of typedef/qualifier/array links followed (bounds loops on corrupt data).
MAX_CHAIN = 64


@dataclass(frozen=True)
class Member:
    """A (possibly nested) struct member: where it is and what it is."""

    path: str
    offset: int  # bytes from the start of the outer struct
    size: int  # bytes (for a bit-field: the storage unit's size)
    type_id: int
    bit_offset: int = 0  # within the byte at ``offset`` (bit-fields only)
    bit_size: int = 0  # 0 unless a bit-field
    signed: bool = False


class BTF:
    """A parsed ``.BTF`` blob.  Use :meth:`from_file` for an ELF (vmlinux) or raw blob."""

    def __init__(self, blob: bytes, *, path: str | None = None, base_offset: int = 0) -> None:
        self.path = path
        self._base = base_offset  # file offset of the blob, for error messages
        if len(blob) < _HDR.size:
            raise self._error("section shorter than the BTF header", 0)
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            _HDR.unpack_from(blob, 0)
        if magic != BTF_MAGIC:
            if magic == 0x9FEB:
                raise self._error("big-endian BTF is not supported", 0)
            raise self._error(f"bad magic {magic:#x}", 0)
        if version != 1:
            raise self._error(f"unsupported BTF version {version}", 2)
        t0, s0 = hdr_len + type_off, hdr_len + str_off
        if hdr_len < _HDR.size or t0 + type_len > len(blob) or s0 + str_len > len(blob):
            raise self._error("type or string section outside the blob", 4)
        self._blob = blob
        self._types = memoryview(blob)[t0:t0 + type_len]
        self._types_at = t0
        self.strings = bytes(blob[s0:s0 + str_len])
        self._scan()

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> BTF:
        """``.BTF`` of an ELF file (found by section name), or a raw BTF blob.  Parsed once
        per file and process (BTF objects are immutable)."""
        from sfunwind.memory.files import materialize

        real = Path(materialize(path))
        st = real.stat()
        return _btf_of_file(str(real.resolve()), st.st_size, st.st_mtime_ns, str(path))

    @classmethod
    def _parse_file(cls, real: str, path: str) -> BTF:
        with open(real, "rb") as f:
            head = f.read(4)
            if head[:2] == b"\x9f\xeb":
                return cls(head + f.read(), path=str(path))
        from sfunwind.kernel.elfsections import read_section

        data, offset = read_section(real, ".BTF", display=str(path))
        return cls(data, path=str(path), base_offset=offset)

    def _error(self, reason: str, offset: int | None) -> BTFFormatError:
        return BTFFormatError(reason, offset=None if offset is None else self._base + offset,
                              path=self.path)

    def _scan(self) -> None:
        """One pass over the type headers: where each type starts, its kind, name, vlen.

        Every BTF record is a multiple of 4 bytes, so the section is viewed as u32 words;
        the sequential part (a record's length depends on its kind and vlen) runs over a
        plain list, the per-type fields are then gathered with numpy in one go.
        """
        if len(self._types) % 4:
            raise self._error("type section length is not a multiple of 4", self._types_at)
        words = np.frombuffer(self._types, dtype="<u4")
        info_words = words.tolist()
        # record length in words, by kind: fixed words + words per vlen item; an unknown
        # kind gets a length that overshoots the end, caught after the loop
        fixed = [1 << 40] * 32
        per = [0] * 32
        for k, (f, p) in _EXTRA.items():
            fixed[k], per[k] = 3 + f // 4, p // 4
        starts: list[int] = []
        append = starts.append
        w, end = 0, len(info_words) - 2
        while w < end:
            inf = info_words[w + 1]
            kind = (inf >> 24) & 0x1F
            append(w)
            w += fixed[kind] + per[kind] * (inf & 0xFFFF)
        if w != len(info_words):
            last = starts[-1] if starts else 0
            kind = (info_words[last + 1] >> 24) & 0x1F if last + 1 < len(info_words) else 0
            if fixed[kind] == 1 << 40:
                raise self._error(f"type {len(starts)} has unknown kind {kind}",
                                  self._types_at + 4 * last)
            raise self._error(f"type {len(starts)} runs past the type section",
                              self._types_at + 4 * last)
        idx = np.asarray(starts, dtype=np.int64)
        self.count = len(starts) + 1  # including void (id 0)
        self._starts = np.concatenate(([-12], idx * 4))
        self._info = np.concatenate(([0], words[idx + 1])).astype(np.uint32)
        self._kind = ((self._info >> 24) & 0x1F).astype(np.uint8)
        self._name_off = np.concatenate(([0], words[idx])).astype(np.uint32)
        self._size_type = np.concatenate(([0], words[idx + 2])).astype(np.uint32)

    # -- strings and names -----------------------------------------------------------------
    def string(self, offset: int) -> str:
        if offset >= len(self.strings):
            raise self._error(f"string offset {offset:#x} outside the string section", None)
        end = self.strings.find(b"\0", offset)
        if end < 0:
            raise self._error(f"unterminated string at {offset:#x}", None)
        return self.strings[offset:end].decode("utf-8", errors="replace")

    def _string_offset(self, name: str) -> int | None:
        needle = b"\0" + name.encode() + b"\0"
        at = self.strings.find(needle)
        return None if at < 0 else at + 1

    def kind(self, tid: int) -> int:
        return int(self._kind[tid])

    def name(self, tid: int) -> str:
        return self.string(int(self._name_off[tid])) if tid else "void"

    def vlen(self, tid: int) -> int:
        return int(self._info[tid]) & 0xFFFF

    def kflag(self, tid: int) -> bool:
        return bool(int(self._info[tid]) >> 31)

    def _check_id(self, tid: int) -> int:
        if not 0 <= tid < self.count:
            raise self._error(f"type id {tid} out of range (have {self.count})", None)
        return tid

    def ids_named(self, name: str, kinds: tuple[int, ...] | None = None) -> list[int]:
        off = self._string_offset(name)
        if off is None:
            return []
        mask = self._name_off == off
        if kinds is not None:
            mask &= np.isin(self._kind, kinds)
        return [int(x) for x in np.flatnonzero(mask)]

    def find(self, cname: str) -> int:
        """Type id of ``"struct task_struct"``, ``"union x"``, ``"enum y"`` or a typedef/base
        type name.  A complete definition wins over a forward declaration."""
        words = cname.split()
        kinds: tuple[int, ...]
        if len(words) == 2 and words[0] in ("struct", "union", "enum"):
            kinds = {"struct": (KIND_STRUCT,), "union": (KIND_UNION,),
                     "enum": (KIND_ENUM, KIND_ENUM64)}[words[0]]
            name = words[1]
        elif len(words) == 1:
            kinds = (KIND_TYPEDEF, KIND_INT, KIND_FLOAT)
            name = words[0]
        else:
            raise KeyError(cname)
        ids = self.ids_named(name, kinds)
        if not ids:
            raise KeyError(cname)
        return ids[0]

    def has_type(self, cname: str) -> bool:
        try:
            self.find(cname)
        except KeyError:
            return False
        return True

    # -- type structure --------------------------------------------------------------------
    def _extra_at(self, tid: int) -> int:
        return int(self._starts[tid]) + 12

    def resolve(self, tid: int) -> int:
        """Skip typedefs and qualifiers."""
        for _ in range(MAX_CHAIN):
            if self._kind[self._check_id(tid)] not in _QUALIFIERS:
                return tid
            tid = int(self._size_type[tid])
        raise self._error(f"typedef/qualifier chain longer than {MAX_CHAIN}", None)

    def array_info(self, tid: int) -> tuple[int, int]:
        """``(element type id, number of elements)`` of an array type."""
        tid = self.resolve(tid)
        if self._kind[tid] != KIND_ARRAY:
            raise KeyError(f"type {tid} is not an array")
        elem, _index, nelems = struct.unpack_from("<III", self._types, self._extra_at(tid))
        return elem, nelems

    def sizeof(self, tid: int) -> int:
        count = 1
        for _ in range(MAX_CHAIN):
            tid = self.resolve(tid)
            kind = self._kind[tid]
            if kind == KIND_ARRAY:
                elem, n = self.array_info(tid)
                count *= n
                tid = elem
                continue
            if kind == KIND_PTR:
                return 8 * count
            if kind in (KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_FLOAT,
                        KIND_DATASEC):
                return int(self._size_type[tid]) * count
            if tid == 0:
                return 0
            raise KeyError(f"type {tid} ({KIND_NAMES.get(int(kind), kind)}) has no size")
        raise self._error(f"array chain longer than {MAX_CHAIN}", None)

    def is_signed(self, tid: int) -> bool:
        tid = self.resolve(tid)
        kind = self._kind[tid]
        if kind == KIND_INT:
            enc = struct.unpack_from("<I", self._types, self._extra_at(tid))[0]
            return bool((enc >> 24) & 1)
        if kind in (KIND_ENUM, KIND_ENUM64):
            return self.kflag(tid)
        return False

    def members(self, tid: int) -> list[tuple[str, int, int, int]]:
        """``(name, type id, bit offset, bit-field size)`` of each member of a struct/union."""
        tid = self.resolve(tid)
        if self._kind[tid] not in (KIND_STRUCT, KIND_UNION):
            raise KeyError(f"type {tid} ({self.name(tid)}) is not a struct or union")
        kflag = self.kflag(tid)
        at = self._extra_at(tid)
        out = []
        for i in range(self.vlen(tid)):
            name_off, mtype, moff = struct.unpack_from("<III", self._types, at + 12 * i)
            if kflag:
                out.append((self.string(name_off), mtype, moff & 0xFFFFFF, moff >> 24))
            else:
                out.append((self.string(name_off), mtype, moff, 0))
        return out

    def _find_member(self, tid: int, name: str, depth: int = 0) -> tuple[int, int, int] | None:
        """``(type id, bit offset, bit size)`` of *name*, looking inside anonymous members."""
        if depth > MAX_CHAIN:
            raise self._error("anonymous member nesting too deep", None)
        for mname, mtype, bit_off, bit_size in self.members(tid):
            if mname == name:
                return mtype, bit_off, bit_size
            if not mname and self._kind[self.resolve(mtype)] in (KIND_STRUCT, KIND_UNION):
                inner = self._find_member(mtype, name, depth + 1)
                if inner is not None:
                    return inner[0], bit_off + inner[1], inner[2]
        return None

    def member(self, type_name: str | int, path: str) -> Member:
        """Where ``path`` (``"thread.cpu_context.fp"``, ``"regs[29]"``) is in a type."""
        tid = self.find(type_name) if isinstance(type_name, str) else type_name
        bits = 0
        bit_size = 0
        for part in path.split("."):
            m = _PATH_PART.match(part)
            if not m:
                raise KeyError(f"bad member path {path!r}")
            found = self._find_member(tid, m.group(1))
            if found is None:
                raise KeyError(f"{self.name(self.resolve(tid))} has no member "
                               f"{m.group(1)!r} ({path})")
            tid, bit_off, bit_size = found
            bits += bit_off
            for index in re.findall(r"\[(\d+)\]", m.group(2)):
                elem, n = self.array_info(tid)
                if int(index) >= n:
                    raise KeyError(f"{path}: index {index} out of bounds ({n})")
                bits += int(index) * self.sizeof(elem) * 8
                tid = elem
        size = self.sizeof(tid)
        if bit_size:
            return Member(path, bits // 8, size, tid, bits % 8, bit_size, self.is_signed(tid))
        if bits % 8:
            raise KeyError(f"{path} is not byte-aligned")
        return Member(path, bits // 8, size, tid, 0, 0, self.is_signed(tid))

    def offsetof(self, type_name: str | int, path: str) -> int:
        return self.member(type_name, path).offset

    def size_of(self, type_name: str) -> int:
        return self.sizeof(self.find(type_name))

    def enum(self, cname: str) -> dict[str, int]:
        """Enumerators of ``"enum kunwind_source"``."""
        return self.enumerators(self.find(cname if cname.startswith("enum ") else
                                          f"enum {cname}"))

    def enumerators(self, tid: int) -> dict[str, int]:
        tid = self.resolve(tid)
        kind = self._kind[tid]
        at = self._extra_at(tid)
        out: dict[str, int] = {}
        signed = self.kflag(tid)
        for i in range(self.vlen(tid)):
            if kind == KIND_ENUM:
                name_off, val = struct.unpack_from("<Ii" if signed else "<II", self._types,
                                                   at + 8 * i)
            elif kind == KIND_ENUM64:
                name_off, lo, hi = struct.unpack_from("<III", self._types, at + 12 * i)
                val = lo | hi << 32
                if signed and val >> 63:
                    val -= 1 << 64
            else:
                raise KeyError(f"type {tid} is not an enum")
            out[self.string(name_off)] = val
        return out

    def var_size(self, name: str) -> int | None:
        """Size of the type of global/per-cpu variable *name* (a ``VAR`` in BTF), or None."""
        for var in self.ids_named(name, (KIND_VAR,)):
            return self.sizeof(int(self._size_type[var]))
        return None

    @cached_property
    def _enumerator_index(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for tid in np.flatnonzero(np.isin(self._kind, (KIND_ENUM, KIND_ENUM64))):
            for k, v in self.enumerators(int(tid)).items():
                out.setdefault(k, v)
        return out

    def enumerator(self, name: str) -> int:
        """Value of an enumerator of any enum (``"KUNWIND_SOURCE_TASK"``)."""
        off = self._string_offset(name)
        if off is None:
            raise KeyError(name)
        return self._enumerator_index[name]


@functools.lru_cache(maxsize=4)
def _btf_of_file(real: str, size: int, mtime_ns: int, display: str) -> BTF:
    """Parse cache of :meth:`BTF.from_file`, keyed by file identity."""
    return BTF._parse_file(real, display)
