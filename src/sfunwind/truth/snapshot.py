"""Snapshots: a stopped arm64 kernel CPU state that ``sfunwind kernel trace --snapshot``
unwinds.  Anyone can write one (from a debugger, QEMU's gdbstub, another emulator); the
truth harness writes one per interruption point on request.

Format (JSON; the file may be xz-compressed, name ``*.json.xz``).  Integers that can exceed
2**53 are hex strings (``"0xffff800080001234"``); sizes and offsets are JSON numbers::

    {
      "format": "sfunwind-snapshot",          required
      "version": 1,                           required
      "arch": "aarch64",                      required (the only one supported)
      "image": "truth-sibcall.elf",           ELF with .symtab and .sframe; relative to the
                                              snapshot's directory, or absolute; optional
      "image_sha256": "…",                    optional; checked when present
      "registers": {"x0": "0x…", … "x30", "sp", "pc", "pstate"},   required: x29 x30 sp pc
      "start": "caller" | "regs",            how to begin the walk (default "regs"):
                                              caller: pc = x30, fp = x29 (the state is at a
                                              function's first instruction, as
                                              kunwind_init_from_caller); regs: the first
                                              frame is pc (P), fp = x29, and the step after it
                                              may use SFrame with sp/x29/x30
      "stacks": [{"name": "task", "low": "0x…", "high": "0x…"}, …],  required, the kernel's
                                              order (task, irq, overflow, sdei…)
      "final_record": "0x…",                  &task_pt_regs(task)->stackframe; default:
                                              task high - pt_regs.size + pt_regs.stackframe
      "pt_regs": {"size": 320, "stackframe": 296, "sp": 248, "pc": 256, "pstate": 264},
      "pac_mask": "0xffff000000000000",       kernel PAC mask (0: no PAC); default 0
      "memory": [{"address": "0x…", "data": "<base64>"}, …],   required, non-overlapping
      "truth": {                              optional (the harness knows it)
        "frames": ["0x…", …],                 the exact return-address chain, PAC-stripped
        "interrupted_pc": "0x…", "class": "body", "context": "task"
      }
    }

:func:`load_snapshot` validates everything and raises :class:`SnapshotFormatError` naming
the file and the offending field; :func:`unwind_inputs` turns a snapshot into the
unwinder's ``(UnwindContext, TaskStacks, Start)``.
"""

from __future__ import annotations

import base64
import json
import lzma
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfunwind.errors import SfunwindError, SnapshotFormatError
from sfunwind.memory.base import SparseMemory

FORMAT = "sfunwind-snapshot"
VERSION = 1
REQUIRED_REGISTERS = ("x29", "x30", "sp", "pc")
MAX_MEMORY_CHUNKS = 4096
MAX_STACKS = 16


@dataclass(frozen=True, slots=True)
class StackBounds:
    name: str
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class PtRegsOffsets:
    size: int = 320
    stackframe: int = 296
    sp: int = 248
    pc: int = 256
    pstate: int = 264


@dataclass(slots=True)
class Snapshot:
    registers: dict[str, int]
    stacks: list[StackBounds]
    memory: list[tuple[int, bytes]]
    start: str = "regs"
    pt_regs: PtRegsOffsets = field(default_factory=PtRegsOffsets)
    final_record: int | None = None
    pac_mask: int = 0
    image: Path | None = None
    image_sha256: str | None = None
    truth: dict[str, Any] | None = None
    path: Path | None = None

    @property
    def final(self) -> int:
        if self.final_record is not None:
            return self.final_record
        task = self.stacks[0]
        return task.high - self.pt_regs.size + self.pt_regs.stackframe

    def expected_frames(self) -> list[int] | None:
        if not self.truth or "frames" not in self.truth:
            return None
        return [int(x, 16) for x in self.truth["frames"]]

    # -- writing ------------------------------------------------------------------------
    def to_json(self, base: Path | None = None) -> dict[str, Any]:
        image = None
        if self.image is not None:
            image = str(self.image)
            if base is not None:
                try:
                    image = str(Path(self.image).resolve().relative_to(base.resolve()))
                except ValueError:
                    image = str(Path(self.image).resolve())
        doc: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "arch": "aarch64",
            "image": image, "image_sha256": self.image_sha256,
            "registers": {k: hex(v) for k, v in self.registers.items()},
            "start": self.start,
            "stacks": [{"name": s.name, "low": hex(s.low), "high": hex(s.high)}
                       for s in self.stacks],
            "final_record": hex(self.final),
            "pt_regs": {"size": self.pt_regs.size, "stackframe": self.pt_regs.stackframe,
                        "sp": self.pt_regs.sp, "pc": self.pt_regs.pc,
                        "pstate": self.pt_regs.pstate},
            "pac_mask": hex(self.pac_mask),
            "memory": [{"address": hex(a), "data": base64.b64encode(d).decode("ascii")}
                       for a, d in self.memory],
        }
        if self.truth is not None:
            doc["truth"] = self.truth
        return doc

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = json.dumps(self.to_json(path.parent), indent=1).encode()
        if path.suffix == ".xz":
            text = lzma.compress(text, preset=6)
        path.write_bytes(text)


def _fail(path: Path, where: str, reason: str) -> SnapshotFormatError:
    return SnapshotFormatError(f"{where}: {reason}", path=str(path))


def _int(path: Path, where: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _fail(path, where, "expected an integer")
    if isinstance(value, int):
        out = value
    elif isinstance(value, str):
        try:
            out = int(value, 0)
        except ValueError:
            raise _fail(path, where, f"not an integer: {value[:40]!r}") from None
    else:
        raise _fail(path, where, "expected an integer or a hex string")
    if not 0 <= out < 1 << 64:
        raise _fail(path, where, f"{out:#x} is not a 64-bit unsigned value")
    return out


def load_snapshot(path: str | Path) -> Snapshot:
    """Read and validate a snapshot file (JSON, or xz-compressed JSON)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SnapshotFormatError(f"cannot read: {exc.strerror}", path=str(path)) from None
    if raw[:6] == b"\xfd7zXZ\x00":
        try:
            raw = lzma.decompress(raw)
        except lzma.LZMAError as exc:
            raise SnapshotFormatError(f"bad xz data: {exc}", path=str(path)) from None
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        offset = getattr(exc, "pos", None)
        raise SnapshotFormatError(f"not JSON: {exc}", offset=offset, path=str(path)) from None
    if not isinstance(doc, dict):
        raise _fail(path, "top level", "expected an object")
    if doc.get("format") != FORMAT:
        raise _fail(path, "format", f"expected {FORMAT!r}, got {doc.get('format')!r}")
    if doc.get("version") != VERSION:
        raise _fail(path, "version", f"unsupported version {doc.get('version')!r}")
    if doc.get("arch") != "aarch64":
        raise _fail(path, "arch", f"unsupported architecture {doc.get('arch')!r}")

    regs_doc = doc.get("registers")
    if not isinstance(regs_doc, dict):
        raise _fail(path, "registers", "expected an object")
    registers = {str(k): _int(path, f"registers.{k}", v) for k, v in regs_doc.items()}
    for name in REQUIRED_REGISTERS:
        if name not in registers:
            raise _fail(path, "registers", f"missing {name}")

    start = doc.get("start", "regs")
    if start not in ("regs", "caller"):
        raise _fail(path, "start", f"expected 'regs' or 'caller', got {start!r}")

    stacks_doc = doc.get("stacks")
    if not isinstance(stacks_doc, list) or not stacks_doc or len(stacks_doc) > MAX_STACKS:
        raise _fail(path, "stacks", f"expected a list of 1..{MAX_STACKS} stacks")
    stacks = []
    for i, s in enumerate(stacks_doc):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            raise _fail(path, f"stacks[{i}]", "expected {name, low, high}")
        low = _int(path, f"stacks[{i}].low", s.get("low"))
        high = _int(path, f"stacks[{i}].high", s.get("high"))
        if low >= high:
            raise _fail(path, f"stacks[{i}]", f"low {low:#x} is not below high {high:#x}")
        stacks.append(StackBounds(s["name"], low, high))

    layout_doc = doc.get("pt_regs", {})
    if not isinstance(layout_doc, dict):
        raise _fail(path, "pt_regs", "expected an object")
    defaults = PtRegsOffsets()
    values = {}
    for key in ("size", "stackframe", "sp", "pc", "pstate"):
        v = layout_doc.get(key, getattr(defaults, key))
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 4096:
            raise _fail(path, f"pt_regs.{key}", f"bad offset {v!r}")
        values[key] = v
    layout = PtRegsOffsets(**values)
    if layout.stackframe + 24 > layout.size or layout.pc + 8 > layout.size:
        raise _fail(path, "pt_regs", "offsets outside the structure")

    mem_doc = doc.get("memory")
    if not isinstance(mem_doc, list) or len(mem_doc) > MAX_MEMORY_CHUNKS:
        raise _fail(path, "memory", f"expected a list of at most {MAX_MEMORY_CHUNKS} chunks")
    memory = []
    for i, m in enumerate(mem_doc):
        if not isinstance(m, dict) or not isinstance(m.get("data"), str):
            raise _fail(path, f"memory[{i}]", "expected {address, data}")
        address = _int(path, f"memory[{i}].address", m.get("address"))
        try:
            data = base64.b64decode(m["data"], validate=True)
        except ValueError:
            raise _fail(path, f"memory[{i}].data", "bad base64") from None
        if address + len(data) > 1 << 64:
            raise _fail(path, f"memory[{i}]", "runs past the end of the address space")
        memory.append((address, data))
    try:
        SparseMemory(memory)
    except SfunwindError as exc:
        raise _fail(path, "memory", str(exc)) from None

    image = doc.get("image")
    image_path = None
    if image is not None:
        if not isinstance(image, str):
            raise _fail(path, "image", "expected a path")
        image_path = Path(image)
        if not image_path.is_absolute():
            image_path = path.parent / image_path
    sha = doc.get("image_sha256")
    truth = doc.get("truth")
    if truth is not None:
        if not isinstance(truth, dict) or not isinstance(truth.get("frames", []), list):
            raise _fail(path, "truth", "expected an object with a frames list")
        for i, f in enumerate(truth.get("frames", [])):
            _int(path, f"truth.frames[{i}]", f)
    snap = Snapshot(
        registers=registers, stacks=stacks, memory=memory, start=start, pt_regs=layout,
        final_record=(_int(path, "final_record", doc["final_record"])
                      if doc.get("final_record") is not None else None),
        pac_mask=_int(path, "pac_mask", doc.get("pac_mask", 0)),
        image=image_path, image_sha256=sha if isinstance(sha, str) else None,
        truth=truth, path=path)
    return snap


_IMAGES: dict[tuple[str, int, int], Any] = {}


def _image_and_table(image: Path, sha: str | None, where: Path | None):  # type: ignore[no-untyped-def]
    """The loaded image and its SFrame table, cached per (path, size, mtime)."""
    from sfunwind.sframe.lookup import SFrameTable
    from sfunwind.truth.image import TruthImage

    try:
        st = Path(image).stat()
    except OSError as exc:
        raise SnapshotFormatError(f"image {image}: {exc.strerror}",
                                  path=str(where) if where else None) from None
    key = (str(Path(image).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _IMAGES:
        img = TruthImage(image)
        table = None
        if img.sframe_data is not None:
            table = SFrameTable.from_bytes(img.sframe_data, section_address=img.sframe_address,
                                           path=str(image))
        _IMAGES[key] = (img, table)
    img, table = _IMAGES[key]
    if sha is not None and img.sha256 != sha:
        raise SnapshotFormatError(f"image {image} does not match image_sha256",
                                  path=str(where) if where else None)
    return img, table


def unwind_inputs(snapshot: Snapshot, *, image: str | Path | None = None):  # type: ignore[no-untyped-def]
    """The unwinder's inputs for *snapshot*: ``(UnwindContext, TaskStacks, Start)``.

    The ELF (``image`` argument, else the snapshot's) supplies the SFrame rows, symbols and
    the kernel-text test; without one the unwinder runs with memory and registers only.
    """
    from sfunwind.unwind.arm64 import (
        PtRegsLayout,
        Regs,
        StackInfo,
        TaskStacks,
        UnwindContext,
        start_from_caller,
        start_from_regs,
    )

    memory = SparseMemory(snapshot.memory)
    layout = PtRegsLayout(size=snapshot.pt_regs.size, sp=snapshot.pt_regs.sp,
                          pc=snapshot.pt_regs.pc, pstate=snapshot.pt_regs.pstate,
                          stackframe=snapshot.pt_regs.stackframe)
    elf = Path(image) if image is not None else snapshot.image
    find_row = symbolize = is_text = None
    if elf is not None:
        img, table = _image_and_table(elf, snapshot.image_sha256 if image is None else None,
                                       snapshot.path)
        find_row = table.find if table is not None else None
        symbolize, is_text = img.symbolize, img.is_text
    ctx = UnwindContext(memory=memory, find_row=find_row, symbolize=symbolize,
                        is_kernel_text=is_text, pac_mask=snapshot.pac_mask, pt_regs=layout)
    task = TaskStacks(stacks=tuple(StackInfo(s.name, s.low, s.high) for s in snapshot.stacks),
                      final_record=snapshot.final, is_current=True)
    r = snapshot.registers
    if snapshot.start == "caller":
        start = start_from_caller(r["x30"], r["x29"])
    else:
        start = start_from_regs(Regs(pc=r["pc"], sp=r["sp"], fp=r["x29"], lr=r["x30"]))
    return ctx, task, start


def trace_snapshot_file(path: str | Path, mode, *, image: str | Path | None = None,  # type: ignore[no-untyped-def]
                        max_entries: int = 100):
    """Load *path* and unwind it in *mode*: the ``Trace`` (``sfunwind kernel trace
    --snapshot``).  *image* overrides the snapshot's ELF (SFrame rows and symbols)."""
    from sfunwind.unwind.arm64 import unwind

    snap = load_snapshot(path)
    ctx, task, start = unwind_inputs(snap, image=image)
    return unwind(ctx, task, start, mode, max_entries=max_entries)
