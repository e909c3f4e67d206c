"""Address spaces: ELF cores, vmcores, page tables, snapshots.

* :mod:`sfunwind.memory.base` — :class:`AddressSpace` (``read(address, size)`` or
  :class:`~sfunwind.errors.MemoryFault`), :class:`SparseMemory`.
* :mod:`sfunwind.memory.elfcore` — ELF vmcores: physical ``PT_LOAD``s, ``NT_PRSTATUS`` per CPU,
  ``VMCOREINFO``.
* :mod:`sfunwind.memory.arm64` — arm64 kernel virtual memory (image, linear map, page-table
  walk incl. 52-bit LPA2): :class:`~sfunwind.memory.arm64.KernelAddressSpace`.
* :mod:`sfunwind.memory.files` — transparent ``.xz`` inputs (decompressed once into a cache).
"""

from sfunwind.memory.base import AddressSpace, SparseMemory

__all__ = ["AddressSpace", "SparseMemory"]
