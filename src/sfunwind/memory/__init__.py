"""Address spaces: ELF cores, vmcores, page tables, snapshots."""

from sfunwind.memory.base import AddressSpace, SparseMemory

__all__ = ["AddressSpace", "SparseMemory"]
