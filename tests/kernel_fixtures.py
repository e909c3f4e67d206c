"""Shared access to the linux-7.2.13-cloud-arm64 vmcore fixtures (tests/data/...)."""

from __future__ import annotations

import functools
import json
import lzma
from pathlib import Path

DATA = Path(__file__).parent / "data" / "linux-7.2.13-cloud-arm64"
VMLINUX = DATA / "vmlinux.debug.xz"
DUMPS = [
    "nokaslr/irq-in-fault", "nokaslr/el1-abort", "nokaslr/softirq-irqstack",
    "nokaslr/nested-irq", "nokaslr/hrtimer-plus8", "nokaslr/hrtimer-plus12",
    "kaslr/irq-in-fault", "kaslr/el1-abort",
]
BOOTS = ["nokaslr", "kaslr"]


def vmcore(name: str) -> Path:
    return DATA / f"{name}.vmcore.xz"


@functools.cache
def drgn_reference(name: str) -> dict:
    """drgn 0.3.0's reference output for dump *name* (see the fixture README)."""
    with lzma.open(DATA / f"{name}.drgn.json.xz") as f:
        return json.load(f)


@functools.cache
def program(name: str):
    from sfunwind.kernel.program import KernelProgram

    return KernelProgram.open(vmcore(name), VMLINUX)


@functools.cache
def symbols():
    from sfunwind.kernel.symbols import Symbolizer

    return Symbolizer.from_vmlinux(VMLINUX)


def hexint(value: str | None) -> int | None:
    return None if value is None else int(value, 16)
