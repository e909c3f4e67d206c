"""The truth image: an arm64 ELF (``tests/data/truth/truth-*.elf``) as the harness sees it.

Loads segments and symbols with pyelftools, decodes every instruction word of ``.text`` once
(numpy bit tests for the few control transfers the shadow stack needs; capstone for the
per-instruction point classes), and labels every instruction with a *point class*:

``prologue``  C function with a frame record, before its frame record is linked
              (PC at or before ``mov x29, sp``: the return address is still in x30)
``body``      C function, frame record built
``epilogue``  after ``ldp x29, x30`` up to and including the ``ret``
``tail-call`` the same window when it ends in ``b other_function`` (a sibling call)
``leaf``      C function without a frame record (RA in x30 throughout); its ``b`` to
              another function is ``tail-call``
``asm-cfi``   hand-written asm with CFI (SYM_LEAF_FUNC-style, ``call_on_irq_stack``)
``asm-nocfi`` hand-written asm without CFI (memset/memcpy-like)
``entry``     vectors and exception entry/exit code (exceptions are never taken there)

The labels are derived from the instructions alone (a linear scan; see ``_label_function``),
never from the SFrame or CFI that is under test.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from sfunwind.errors import ElfFormatError

#: Instruction kinds that move the shadow call stack.
KIND_OTHER, KIND_BL, KIND_BLR, KIND_RET, KIND_ERET, KIND_B = range(6)

POINT_CLASSES = ("prologue", "body", "epilogue", "tail-call", "leaf", "asm-cfi", "asm-nocfi",
                 "entry")
CLASS_INDEX = {name: i for i, name in enumerate(POINT_CLASSES)}

#: Hand-written functions of tools/truth-image/entry.S, by how they are annotated.
ASM_WITH_CFI = frozenset({"call_on_irq_stack", "memmove", "memcmp", "strlen",
                          "truth_leaf_checksum"})
ASM_WITHOUT_CFI = frozenset({"memset", "__memset_generic", "memcpy"})
ENTRY_CODE = frozenset({"vectors", "el1h_64_sync", "el1h_64_irq", "ret_to_kernel",
                        "ret_from_fork", "truth_snapshot_point"})


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    address: int
    size: int


@dataclass(frozen=True, slots=True)
class Segment:
    address: int
    data: bytes  # file bytes, zero-extended to memsz
    writable: bool
    executable: bool


def _classify_words(words: np.ndarray) -> np.ndarray:
    """Kind of every instruction word (BL, BLR, RET, ERET, B; the PAC variants included)."""
    kinds = np.full(words.shape, KIND_OTHER, dtype=np.uint8)
    kinds[(words & 0xFC000000) == 0x94000000] = KIND_BL
    kinds[(words & 0xFC000000) == 0x14000000] = KIND_B
    kinds[(words & 0xFFFFFC1F) == 0xD63F0000] = KIND_BLR
    kinds[(words & 0xFEFFF800) == 0xD63F0800] = KIND_BLR  # blraa/blrab/blraaz/blrabz
    kinds[(words & 0xFFFFFC1F) == 0xD65F0000] = KIND_RET
    kinds[(words == 0xD65F0BFF) | (words == 0xD65F0FFF)] = KIND_RET  # retaa/retab
    kinds[words == 0xD69F03E0] = KIND_ERET
    return kinds


def _conditional_targets(words: np.ndarray) -> np.ndarray:
    """The instruction index of the taken target of every conditional branch (B.cond,
    CBZ/CBNZ, TBZ/TBNZ), else -1."""
    index = np.arange(len(words), dtype=np.int64)
    out = np.full(words.shape, -1, dtype=np.int64)
    w = words.astype(np.int64)
    imm19 = (w >> 5) & 0x7FFFF
    imm19 = np.where(imm19 & 0x40000, imm19 - 0x80000, imm19)
    imm14 = (w >> 5) & 0x3FFF
    imm14 = np.where(imm14 & 0x2000, imm14 - 0x4000, imm14)
    bcond = (words & 0xFF000010) == 0x54000000
    cb = (words & 0x7E000000) == 0x34000000
    tb = (words & 0x7E000000) == 0x36000000
    out[bcond | cb] = index[bcond | cb] + imm19[bcond | cb]
    out[tb] = index[tb] + imm14[tb]
    out[(out < 0) | (out >= len(words))] = -1
    return out


class TruthImage:
    """A loaded truth image (or any static arm64 kernel-like ELF)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
            with open(self.path, "rb") as fh:
                elf = ELFFile(fh)
                if elf["e_machine"] != "EM_AARCH64":
                    raise ElfFormatError(f"not an AArch64 ELF ({elf['e_machine']})",
                                         path=str(self.path))
                self.entry = elf["e_entry"]
                self.segments = self._segments(elf)
                self.symbols = self._symbols(elf)
                text = elf.get_section_by_name(".text")
                sframe = elf.get_section_by_name(".sframe")
                if text is None:
                    raise ElfFormatError("no .text section", path=str(self.path))
                self.text_address = text["sh_addr"]
                text_bytes = text.data()
                self.sframe_address = sframe["sh_addr"] if sframe is not None else None
                self.sframe_data = sframe.data() if sframe is not None else None
        except ELFError as exc:
            raise ElfFormatError(str(exc), path=str(self.path)) from None
        except OSError as exc:
            raise ElfFormatError(f"cannot read: {exc.strerror}", path=str(self.path)) from None
        self.text_end = self.text_address + len(text_bytes)
        n = len(text_bytes) // 4
        self.words = np.frombuffer(text_bytes[: n * 4], dtype="<u4")
        self.kinds = _classify_words(self.words)
        #: the taken target (an index) of each conditional branch, -1 if not one: the
        #: harness steers these to interrupt compiled code no input reaches (Machine.explore)
        self.branch_targets = _conditional_targets(self.words)
        self._starts = [s.address for s in self.symbols]
        self.by_name = {s.name: s for s in self.symbols}
        self.classes = np.full(n, CLASS_INDEX["entry"], dtype=np.uint8)
        #: whether x30 holds a PAC-signed value when an instruction is about to execute
        #: (hardware with pointer authentication; unicorn runs paciasp/autiasp as no-ops)
        self.x30_signed = np.zeros(n, dtype=bool)
        self.function_of = np.full(n, -1, dtype=np.int32)
        self._label_all()

    # -- loading ------------------------------------------------------------------------
    def _segments(self, elf: ELFFile) -> list[Segment]:
        out = []
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            data = seg.data()
            data = data + bytes(seg["p_memsz"] - len(data))
            out.append(Segment(seg["p_vaddr"], data, bool(seg["p_flags"] & 2),
                               bool(seg["p_flags"] & 1)))
        if not out:
            raise ElfFormatError("no PT_LOAD segments", path=str(self.path))
        return out

    def _symbols(self, elf: ELFFile) -> list[Symbol]:
        symtab = elf.get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            raise ElfFormatError("no .symtab (the truth image must not be stripped)",
                                 path=str(self.path))
        seen: dict[int, Symbol] = {}
        self.markers: dict[str, int] = {}  # linker-script symbols (NOTYPE), e.g. the workload span
        for sym in symtab.iter_symbols():
            if sym.name.startswith("__workload_text_"):
                self.markers[sym.name] = sym["st_value"]
            if sym["st_info"]["type"] not in ("STT_FUNC", "STT_OBJECT") or not sym.name:
                continue
            s = Symbol(sym.name, sym["st_value"], sym["st_size"])
            if s.address not in seen or (seen[s.address].size == 0 and s.size):
                seen[s.address] = s
        return sorted(seen.values(), key=lambda s: s.address)

    # -- queries ------------------------------------------------------------------------
    def symbol(self, name: str) -> Symbol:
        try:
            return self.by_name[name]
        except KeyError:
            raise ElfFormatError(f"symbol {name!r} missing", path=str(self.path)) from None

    def symbolize(self, pc: int) -> tuple[str, int, int | None] | None:
        i = bisect.bisect_right(self._starts, pc) - 1
        if i < 0:
            return None
        s = self.symbols[i]
        if s.size and pc >= s.address + s.size:
            return None
        return s.name, pc - s.address, s.size or None

    def format_pc(self, pc: int) -> str:
        sym = self.symbolize(pc)
        return f"{sym[0]}+{sym[1]:#x}" if sym else f"{pc:#x}"

    def is_text(self, pc: int) -> bool:
        return self.text_address <= pc < self.text_end

    def index(self, pc: int) -> int:
        return (pc - self.text_address) >> 2

    def functions(self) -> list[Symbol]:
        """Function symbols inside .text (with a size)."""
        return [s for s in self.symbols if self.is_text(s.address) and s.size]

    def workload_functions(self) -> list[Symbol]:
        """The functions of the real third-party code (zlib, LZ4, xxHash): the linker script
        places them between ``__workload_text_start`` and ``__workload_text_end``.  An image
        without those symbols counts every function but the entry code."""
        span = self._workload_span()
        if span is None:
            return [s for s in self.functions() if s.name not in ENTRY_CODE]
        lo, hi = span
        return [s for s in self.functions() if lo <= s.address < hi]

    def harness_functions(self) -> list[Symbol]:
        """The image's own code an interrupt can be taken in: the drivers, the C handlers
        and the asm routines (not the entry code, not the workload)."""
        span = self._workload_span()
        if span is None:
            return []
        lo, hi = span
        return [s for s in self.functions()
                if s.name not in ENTRY_CODE and not lo <= s.address < hi]

    def _workload_span(self) -> tuple[int, int] | None:
        lo = self.markers.get("__workload_text_start")
        hi = self.markers.get("__workload_text_end")
        return (lo, hi) if lo is not None and hi is not None else None

    def branch_successors(self, pc: int) -> tuple[int, int] | None:
        """(taken target, fall-through) of the conditional branch at *pc*, else None."""
        t = int(self.branch_targets[self.index(pc)])
        return (self.text_address + 4 * t, pc + 4) if t >= 0 else None

    def point_class(self, pc: int) -> str:
        return POINT_CLASSES[self.classes[self.index(pc)]]

    # -- labelling ----------------------------------------------------------------------
    def _label_all(self) -> None:
        from capstone import CS_ARCH_ARM64, CS_MODE_ARM, Cs  # capstone 5 names

        cs = Cs(CS_ARCH_ARM64, CS_MODE_ARM)
        for fi, sym in enumerate(self.symbols):
            if not (self.is_text(sym.address) and sym.size):
                continue
            lo = self.index(sym.address)
            hi = min(self.index(sym.address + sym.size), len(self.words))
            self.function_of[lo:hi] = fi
            if sym.name in ENTRY_CODE:
                continue
            if sym.name in ASM_WITH_CFI:
                self.classes[lo:hi] = CLASS_INDEX["asm-cfi"]
                continue
            if sym.name in ASM_WITHOUT_CFI:
                self.classes[lo:hi] = CLASS_INDEX["asm-nocfi"]
                continue
            code = self.words[lo:hi].tobytes()
            insns = [(m, ops) for _a, _n, m, ops in cs.disasm_lite(code, sym.address)]
            labels = _label_function(insns, self.kinds[lo:hi], self.words[lo:hi],
                                     sym.address, sym.address + sym.size)
            self.classes[lo:lo + len(labels)] = labels
            self.x30_signed[lo:hi] = _x30_signed(insns, self.kinds[lo:hi], self.words[lo:hi])


def _label_function(insns: list[tuple[str, str]], kinds: np.ndarray, words: np.ndarray, start: int, end: int) -> list[int]:
    """Point classes of one compiled C function, by a linear scan of its instructions.

    Frame state along the linear order: ``prologue`` until the instruction that links the
    frame record (``mov x29, sp`` / ``add x29, sp, #n``, itself still prologue), ``body``
    after it, ``epilogue`` after an ``ldp x29, x30`` that restores the caller's record,
    through the next ``ret`` (or ``tail-call`` when that window ends in ``b`` to another
    function).  Code placed after a ``ret`` is body again (it is reached by branches from
    the body).  A function that never links a frame record is ``leaf``.
    """
    norm = insns
    links = [k for k, (m, ops) in enumerate(norm)
             if (m == "mov" and ops.replace(" ", "") == "x29,sp")
             or (m == "add" and ops.replace(" ", "").startswith("x29,sp,"))]
    if not links:
        # no frame record: a sibling call out of it (b other_function) is the tail-call point
        return [CLASS_INDEX["tail-call"] if kinds[k] == KIND_B
                and not start <= start + 4 * k + _branch_offset(int(words[k])) < end
                else CLASS_INDEX["leaf"] for k in range(len(norm))]
    labels: list[int] = []
    state = "prologue"
    window: list[int] = []  # indices of the current epilogue window
    for k, (m, ops) in enumerate(norm):
        flat = ops.replace(" ", "")
        if state == "epilogue":
            window.append(k)
            labels.append(CLASS_INDEX["epilogue"])
            if kinds[k] in (KIND_RET, KIND_B) or m in ("br", "braa", "brab"):
                if kinds[k] == KIND_B:
                    target = start + 4 * k + _branch_offset(int(words[k]))
                    if not start <= target < end:
                        for j in window:
                            labels[j] = CLASS_INDEX["tail-call"]
                state = "body"
                window = []
            continue
        if state == "prologue":
            labels.append(CLASS_INDEX["prologue"])
            if k == links[0]:
                state = "body"
            continue
        labels.append(CLASS_INDEX["body"])
        if m == "ldp" and flat.startswith("x29,x30,"):
            state = "epilogue"
            window = []
    return labels


PACIASP = 0xD503233F
AUTIASP = 0xD50323BF


def _x30_signed(insns: list[tuple[str, str]], kinds: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Per instruction of a pac-ret function (linear scan): is x30 signed *before* it runs?

    Signed after ``paciasp`` and after an ``ldp x29, x30`` that reloads the saved (signed)
    value; raw after ``autiasp`` and after any BL/BLR (x30 = a fresh return address).
    """
    out = np.zeros(len(words), dtype=bool)
    if not np.any(words == PACIASP):
        return out  # leaf or non-pac-ret: x30 is never signed
    signed = False
    for k, (m, ops) in enumerate(insns[: len(words)]):
        out[k] = signed
        w = int(words[k])
        if w == PACIASP:
            signed = True
        elif w == AUTIASP or kinds[k] in (KIND_BL, KIND_BLR):
            signed = False
        elif m == "ldp" and ops.replace(" ", "").startswith("x29,x30,"):
            signed = True
    return out


def _branch_offset(word: int) -> int:
    imm = word & 0x03FFFFFF
    if imm & 0x02000000:
        imm -= 1 << 26
    return imm * 4
