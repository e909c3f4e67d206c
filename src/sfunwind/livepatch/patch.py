"""What a livepatch patches, and the address ranges livepatch searches stacks for.

A patch is a list of ``klp_object``s (``name`` NULL for vmlinux, else a module), each with
``klp_func``s (``old_name``, ``new_func``, ``old_sympos``).  It comes from the command line
(``--func [OBJ:]NAME[,SYMPOS]``), from a livepatch module's tables
(:mod:`sfunwind.livepatch.ko`), or as raw ranges (``--range START-END``).

:func:`build_ranges` turns it into :class:`~sfunwind.livepatch.transition.FuncRange`s with
``klp_check_stack_func()``'s rules:

* unpatching (``klp_target_state == KLP_TRANSITION_UNPATCHED``): the func itself,
  ``[new_func, new_func + new_size)``;
* patching, ``func_stack`` singular (no earlier patch of that function):
  ``[old_func, old_func + old_size)``;
* patching over an earlier patch (``func_stack`` has more entries): the previous patch's
  new function, ``prev = list_next_entry(func, stack_node)``,
  ``[prev->new_func, prev->new_func + prev->new_size)``.

Sizes are kallsyms sizes (``kallsyms_lookup_size_offset``), as the kernel's
``klp_find_object_symbol``/``klp_init_object_loaded`` compute them.  Objects whose module is
not loaded are not patched (``obj->patched`` false) and ``klp_check_stack()`` skips them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sfunwind.errors import UsageError
from sfunwind.livepatch.kallsyms import Kallsyms, KSymbol
from sfunwind.livepatch.transition import FuncRange

PATCHING = "patching"
UNPATCHING = "unpatching"

_NAME_RE = re.compile(r"^(?:(?P<obj>[A-Za-z0-9_\-]+):)?(?P<name>[^\s:,]+)(?:,(?P<pos>\d+))?$")
_RANGE_RE = re.compile(r"^(?:0x)?(?P<start>[0-9a-fA-F]+)\s*-\s*(?:0x)?(?P<end>[0-9a-fA-F]+)$")
MAX_SYMPOS = 1 << 32


@dataclass(frozen=True, slots=True)
class FuncSpec:
    """One ``klp_func``: ``old_name`` in object ``object`` (None: vmlinux), ``old_sympos``,
    and (from a .ko) the replacement's symbol name ``new_name``."""

    old_name: str
    object: str | None = None
    sympos: int = 0
    new_name: str | None = None

    @classmethod
    def parse(cls, text: str) -> FuncSpec:
        """``[OBJ:]NAME[,SYMPOS]`` (``vmlinux:`` is the same as no prefix)."""
        m = _NAME_RE.match(text.strip())
        if not m:
            raise UsageError(f"--func {text!r}: expected [OBJECT:]NAME[,SYMPOS]")
        obj = m.group("obj")
        pos = int(m.group("pos") or 0)
        if pos >= MAX_SYMPOS:
            raise UsageError(f"--func {text!r}: sympos {pos} is out of range")
        return cls(m.group("name"), None if obj in (None, "vmlinux") else obj.replace("-", "_"),
                   pos)

    @property
    def object_name(self) -> str:
        return self.object or "vmlinux"

    def __str__(self) -> str:
        text = (f"{self.object}:" if self.object else "") + self.old_name
        return text + (f",{self.sympos}" if self.sympos else "")


@dataclass(slots=True)
class PatchSpec:
    """A livepatch: its module name (when known) and its funcs, in klp object order."""

    funcs: list[FuncSpec]
    module: str | None = None
    replace: bool = False
    source: str = "command line"

    def objects(self) -> list[tuple[str | None, list[FuncSpec]]]:
        """``klp_for_each_object``: objects in first-appearance order with their funcs."""
        out: dict[str | None, list[FuncSpec]] = {}
        for f in self.funcs:
            out.setdefault(f.object, []).append(f)
        return list(out.items())


def parse_range(text: str) -> tuple[int, int]:
    """``START-END`` (hex, ``0x`` optional) → (start, end), end exclusive."""
    m = _RANGE_RE.match(text.strip())
    if not m:
        raise UsageError(f"--range {text!r}: expected START-END in hex")
    start, end = int(m.group("start"), 16), int(m.group("end"), 16)
    if end <= start or end > (1 << 64):
        raise UsageError(f"--range {text!r}: END must be above START (and fit 64 bits)")
    return start, end


class SymbolSource(Protocol):
    """kallsyms per object of the dumped kernel."""

    def kallsyms(self, object_name: str | None) -> Kallsyms | None:
        """vmlinux's (object None) or a loaded module's kallsyms; None if not loaded."""


@dataclass(slots=True)
class RangePlan:
    """The ranges to search, and what was left out and why."""

    direction: str
    ranges: list[FuncRange]
    skipped: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        lines = [f"{r.old_name} [{r.object or 'vmlinux'}] {r.kind} "
                 f"{r.start:#x}-{r.end:#x} ({r.size:#x} bytes){' = ' + r.label if r.label and r.label != r.old_name else ''}"
                 for r in self.ranges]
        return lines + [f"skipped: {s}" for s in self.skipped]


def _resolve(symbols: SymbolSource, obj: str | None, name: str, sympos: int,
             what: str) -> KSymbol | None:
    table = symbols.kallsyms(obj)
    if table is None:
        return None
    try:
        return table.find(name, sympos)
    except UsageError as exc:
        raise UsageError(f"{what}: {exc}") from None


def _parse_target(text: str) -> FuncSpec | tuple[int, int]:
    if _RANGE_RE.match(text.strip()):
        return parse_range(text)
    return FuncSpec.parse(text)


def build_ranges(spec: PatchSpec, symbols: SymbolSource, *, direction: str = PATCHING,
                 stacked: Mapping[str, str] | None = None,
                 raw_ranges: Sequence[tuple[int, int]] = ()) -> RangePlan:
    """``klp_check_stack_func()``'s ranges for every func of *spec*, plus *raw_ranges*.

    *stacked* maps a func (``[OBJ:]NAME[,SYMPOS]`` as written in *spec*) to the earlier
    patch's replacement of it (``[OBJ:]NAME[,SYMPOS]`` or ``START-END``): when patching,
    that is the range searched instead of the original.
    """
    if direction not in (PATCHING, UNPATCHING):
        raise UsageError(f"unknown direction {direction!r}")
    stacked = dict(stacked or {})
    known = {str(f) for f in spec.funcs}
    for key in stacked:
        if str(FuncSpec.parse(key)) not in known:
            raise UsageError(f"--stacked {key}: not one of the patched functions "
                             f"({', '.join(sorted(known)) or 'none'})")
    stacked = {str(FuncSpec.parse(k)): v for k, v in stacked.items()}
    plan = RangePlan(direction, [])
    for obj, funcs in spec.objects():
        if symbols.kallsyms(obj) is None:
            plan.skipped.append(f"object {obj}: module not loaded in the dump, so not patched "
                                "(klp_check_stack() skips it until klp_module_coming())")
            continue
        for f in funcs:
            plan.ranges.append(_range_for(f, spec, symbols, direction, stacked.get(str(f))))
    for start, end in raw_ranges:
        plan.ranges.append(FuncRange(f"{start:#x}-{end:#x}", start, end - start, kind="range",
                                     label=_label(symbols, start)))
    if not plan.ranges:
        raise UsageError("nothing to check: no function of the patch is loaded in the dump"
                         if plan.skipped else "no function or range to check")
    return plan


def _label(symbols: SymbolSource, address: int) -> str:
    table = symbols.kallsyms(None)
    sym = table.lookup(address) if table is not None else None
    return f"{sym.name}+{address - sym.address:#x}" if sym else ""


def _range_for(f: FuncSpec, spec: PatchSpec, symbols: SymbolSource, direction: str,
               previous: str | None) -> FuncRange:
    old = _resolve(symbols, f.object, f.old_name, f.sympos, f"--func {f}")
    if old is None:  # object loaded was checked by the caller
        raise UsageError(f"--func {f}: object {f.object_name} is not loaded")
    if direction == UNPATCHING:
        # [new_func, new_func + new_size): the replacement, which lives in the patch module.
        if f.new_name is not None:
            if spec.module is None:
                raise UsageError(f"{f}: the patch module's name is unknown, cannot find "
                                 f"its new function {f.new_name}")
            new = _resolve(symbols, spec.module, f.new_name, 0, f"new function of {f}")
            if new is None:
                raise UsageError(f"unpatching {f}: livepatch module {spec.module} is not "
                                 "loaded in the dump, so its new functions have no address")
            return FuncRange(f.old_name, new.address, new.size, kind="new", object=f.object,
                             label=f"{new.name} [{spec.module}]")
        # From the command line the function named IS the one being removed.
        return FuncRange(f.old_name, old.address, old.size, kind="new", object=f.object,
                         label=f"{old.name} [{f.object_name}]")
    if previous is not None:
        target = _parse_target(previous)
        if isinstance(target, tuple):
            start, end = target
            return FuncRange(f.old_name, start, end - start, kind="previous", object=f.object,
                             label=f"previous patch {start:#x}-{end:#x}")
        prev = _resolve(symbols, target.object, target.old_name, target.sympos,
                        f"--stacked {f}={previous}")
        if prev is None:
            raise UsageError(f"--stacked {f}={previous}: object {target.object_name} "
                             "is not loaded")
        return FuncRange(f.old_name, prev.address, prev.size, kind="previous", object=f.object,
                         label=f"{prev.name} [{target.object_name}] (previous patch)")
    return FuncRange(f.old_name, old.address, old.size, kind="old", object=f.object,
                     label=f"{old.name}" + (f",{f.sympos}" if f.sympos else ""))


def funcs_from_args(items: Iterable[str]) -> list[FuncSpec]:
    return [FuncSpec.parse(x) for x in items]
