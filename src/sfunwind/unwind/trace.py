"""What an unwind produces: frames, the events between them, and a reliability verdict.

These objects are the contract between the unwinder and everything that consumes traces
(the CLI and reports, the livepatch checker, the truth harness).  They are plain data:
building them never touches memory.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Source(enum.Enum):
    """Where a frame's PC came from (``enum kunwind_source``), with its print letter."""

    UNKNOWN = "U"
    FRAME = ""  # a frame record's LR: printed without a marker
    CALLER = "C"
    TASK = "T"  # a sleeping task's thread.cpu_context.pc
    REGS_PC = "P"  # pt_regs::pc at an exception boundary: exact
    REGS_LR = "L"  # pt_regs::regs[30]: SFrame said the RA was still in LR

    @property
    def letter(self) -> str:
        return self.value


class Mode(enum.Enum):
    UPSTREAM = "upstream"  # Linux 7.2 as shipped: a reliable walk fails at any pt_regs
    SFRAME = "sframe"  # the 2026 arm64 SFrame series, with its defects fixed
    FP_ONLY = "fp"  # naive frame-pointer chain, no boundary knowledge (a baseline)
    SFRAME_V6 = "sframe-v6"  # the v6 series exactly as posted (its defects kept, §16)
    #: naive frame-pointer chain through exception boundaries, as arm64 walked before
    #: frame-record metadata (the pt_regs record was {x29, ELR}): trusted blindly (a baseline)
    FP_CHAIN = "fp-chain"


@dataclass(slots=True)
class Frame:
    """One reported entry of a trace.

    ``pc`` is the PAC-stripped value that is reported (and symbolised); ``raw_pc`` the value
    as found in memory/registers.  ``fgraph``/``kretprobe`` say the PC was recovered from a
    rewritten return address (markers F and K).  ``stack`` names the stack the frame record
    (or pt_regs) that produced this PC lies on: ``task``, ``irq``, ``overflow``,
    ``sdei_normal``, ``sdei_critical``, ``efi`` or ``None`` when it came from registers.
    """

    pc: int
    source: Source
    raw_pc: int | None = None
    fp: int | None = None
    stack: str | None = None
    fgraph: bool = False
    kretprobe: bool = False
    symbol: str | None = None
    offset: int | None = None
    size: int | None = None
    module: str | None = None

    @property
    def marker(self) -> str:
        """The kernel's annotation: ``P``, ``PF``, ``L``, ``T``, ``K`` … or ``""``."""
        return self.source.letter + ("F" if self.fgraph else "") + ("K" if self.kretprobe else "")

    def format_symbol(self) -> str:
        """``%pSb``: ``name+0x10/0x60`` (``0x...`` raw address when unknown)."""
        if self.symbol is None or self.offset is None:
            return f"0x{self.pc:x}"
        text = f"{self.symbol}+{self.offset:#x}"
        if self.size is not None:
            text += f"/{self.size:#x}"
        if self.module:
            text += f" [{self.module}]"
        return text

    def format(self) -> str:
        """The kernel's ``dump_backtrace_entry`` line (without the log-level prefix)."""
        m = self.marker
        return f"{self.format_symbol()}" + (f" ({m})" if m else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "pc": self.pc,
            "raw_pc": self.raw_pc if self.raw_pc is not None else self.pc,
            "symbol": self.symbol,
            "offset": self.offset,
            "size": self.size,
            "marker": self.marker,
            "source": self.source.name,
            "stack": self.stack,
            "fp": self.fp,
        }


class EventKind(enum.Enum):
    EXCEPTION_BOUNDARY = "exception"  # a PT_REGS metadata record was entered
    STACK_SWITCH = "stack-switch"  # the walk moved from one stack to another
    FINAL = "final"  # the task's FINAL record was reached
    ERROR = "error"  # the walk stopped on an error


@dataclass(slots=True)
class Event:
    """Something that happened between frames ``index - 1`` and ``index``."""

    kind: EventKind
    index: int
    detail: str = ""
    address: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "index": self.index, "detail": self.detail,
                "address": self.address}


@dataclass(slots=True)
class Reason:
    """Why a trace is not reliable (``code`` is stable, ``message`` for people)."""

    code: str
    message: str
    index: int | None = None  # frame index the reason is attached to, if any
    address: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "index": self.index,
                "address": self.address}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(slots=True)
class Trace:
    """A stack trace with its verdict.  ``reliable`` is True only when ``reasons`` is empty
    and the walk ended at the task's FINAL record."""

    frames: list[Frame]
    mode: Mode
    reliable: bool
    reasons: list[Reason] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    pid: int | None = None
    tgid: int | None = None
    comm: str | None = None
    cpu: int | None = None
    task: int | None = None  # task_struct address
    start: str = ""  # "task", "cpu", "regs", "snapshot"

    @property
    def pcs(self) -> list[int]:
        return [f.pc for f in self.frames]

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "tgid": self.tgid,
            "comm": self.comm,
            "cpu": self.cpu,
            "task": self.task,
            "start": self.start,
            "mode": self.mode.value,
            "reliable": self.reliable,
            "reasons": [r.to_json() for r in self.reasons],
            "events": [e.to_json() for e in self.events],
            "frames": [f.to_json() for f in self.frames],
        }
