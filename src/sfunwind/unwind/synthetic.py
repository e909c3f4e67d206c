"""Synthetic arm64 kernel stacks for tests: lay out frame records, ``pt_regs`` with their
metadata records and FINAL records exactly as the entry code and ``copy_thread`` do, then
unwind them with :mod:`sfunwind.unwind.arm64`.

Used by the unwinder's own tests (``kernel-unwinder.md`` §25) and by other packages that
need a small, exact kernel stack (livepatch checker tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sfunwind.errors import UsageError
from sfunwind.memory.base import SparseMemory
from sfunwind.unwind.arm64 import (
    FRAME_META_TYPE_FINAL,
    FRAME_META_TYPE_PT_REGS,
    PtRegsLayout,
    Regs,
    StackInfo,
)


@dataclass
class SyntheticStack:
    """One stack ``[low, low + size)`` being filled (zero-initialised)."""

    name: str
    low: int
    size: int = 0x4000
    data: bytearray = field(init=False)

    def __post_init__(self) -> None:
        if self.low & 0xF or self.size <= 0:
            raise UsageError(f"stack {self.name} at {self.low:#x} must be 16-byte aligned")
        self.data = bytearray(self.size)

    @property
    def high(self) -> int:
        return self.low + self.size

    @property
    def info(self) -> StackInfo:
        return StackInfo(self.name, self.low, self.high)

    def put(self, address: int, value: int) -> None:
        off = address - self.low
        if not 0 <= off <= self.size - 8:
            raise UsageError(f"{address:#x} is not on stack {self.name}")
        self.data[off:off + 8] = (value & ((1 << 64) - 1)).to_bytes(8, "little")

    def record(self, address: int, fp: int, lr: int) -> int:
        """A frame record {fp, lr} at *address*; returns the address (the callee's x29)."""
        self.put(address, fp)
        self.put(address + 8, lr)
        return address

    def pt_regs(self, address: int, *, pc: int, sp: int, fp: int, lr: int,
                meta_type: int = FRAME_META_TYPE_PT_REGS,
                layout: PtRegsLayout | None = None) -> Regs:
        """A ``pt_regs`` at *address* with its zeroed meta record of *meta_type*."""
        layout = layout or PtRegsLayout()
        self.put(address + layout.reg(29), fp)
        self.put(address + layout.reg(30), lr)
        self.put(address + layout.sp, sp)
        self.put(address + layout.pc, pc)
        meta = address + layout.stackframe
        self.put(meta, 0)
        self.put(meta + 8, 0)
        self.put(meta + 16, meta_type)
        return Regs(pc=pc, sp=sp, fp=fp, lr=lr, address=address)

    def final_regs(self, layout: PtRegsLayout | None = None) -> int:
        """The task's FINAL record inside ``task_pt_regs`` at the top; returns its address."""
        layout = layout or PtRegsLayout()
        regs = self.high - layout.size
        self.pt_regs(regs, pc=0, sp=0, fp=0, lr=0, meta_type=FRAME_META_TYPE_FINAL,
                     layout=layout)
        return regs + layout.stackframe


def memory_of(*stacks: SyntheticStack) -> SparseMemory:
    """A :class:`SparseMemory` holding exactly these stacks."""
    return SparseMemory((s.low, bytes(s.data)) for s in stacks)
