"""Address spaces: the one interface every memory reader implements.

The unwinder, the kernel object model and the emulation harness only ever see an
:class:`AddressSpace`: ``read(address, size) -> bytes`` that either returns exactly ``size``
bytes or raises :class:`~sfunwind.errors.MemoryFault` naming the address.  (framehop's model:
memory access as a callback, logic apart from I/O.)
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable

from sfunwind.errors import MemoryFault, UsageError

#: Largest single read any caller may ask for; bounds every read of untrusted sizes.
MAX_READ = 64 << 20

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class AddressSpace:
    """Base class: subclasses implement :meth:`read`; the typed helpers come for free."""

    little_endian: bool = True

    def read(self, address: int, size: int) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def read_u64(self, address: int) -> int:
        data = self.read(address, 8)
        return int.from_bytes(data, "little" if self.little_endian else "big")

    def read_u32(self, address: int) -> int:
        data = self.read(address, 4)
        return int.from_bytes(data, "little" if self.little_endian else "big")

    def read_u8(self, address: int) -> int:
        return self.read(address, 1)[0]

    def is_mapped(self, address: int, size: int = 1) -> bool:
        try:
            self.read(address, size)
        except MemoryFault:
            return False
        return True


class SparseMemory(AddressSpace):
    """Memory made of non-overlapping ``(address, bytes)`` chunks (snapshots, tests).

    Reads may span adjacent chunks; any byte not covered raises :class:`MemoryFault`.
    """

    def __init__(self, chunks: Iterable[tuple[int, bytes]] = (), *, little_endian: bool = True):
        self.little_endian = little_endian
        self._starts: list[int] = []
        self._data: list[bytes] = []
        for addr, data in sorted(chunks, key=lambda c: c[0]):
            self.add(addr, data)

    def add(self, address: int, data: bytes) -> None:
        if address < 0 or address + len(data) > 1 << 64:
            raise UsageError(f"chunk at {address:#x}+{len(data):#x} outside the 64-bit space")
        i = bisect.bisect_right(self._starts, address)
        if i > 0 and self._starts[i - 1] + len(self._data[i - 1]) > address:
            raise UsageError(f"chunk at {address:#x} overlaps the chunk at {self._starts[i - 1]:#x}")
        if i < len(self._starts) and address + len(data) > self._starts[i]:
            raise UsageError(f"chunk at {address:#x} overlaps the chunk at {self._starts[i]:#x}")
        self._starts.insert(i, address)
        self._data.insert(i, bytes(data))

    def chunks(self) -> list[tuple[int, bytes]]:
        return list(zip(self._starts, self._data, strict=True))

    def read(self, address: int, size: int) -> bytes:
        if size < 0 or size > MAX_READ:
            raise MemoryFault(address, f"read size {size:#x} out of range")
        out = bytearray()
        addr = address
        end = address + size
        while addr < end:
            i = bisect.bisect_right(self._starts, addr) - 1
            if i < 0:
                raise MemoryFault(addr, "not present")
            base = self._starts[i]
            data = self._data[i]
            if addr >= base + len(data):
                raise MemoryFault(addr, "not present")
            take = min(end, base + len(data)) - addr
            out += data[addr - base: addr - base + take]
            addr += take
        return bytes(out)
