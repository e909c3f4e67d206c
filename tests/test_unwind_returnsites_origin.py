"""The committed return-site table is exactly what the real vmlinux's code gives.

Runs when the fixture kernel's full debug vmlinux is present (CI fetches it:
``tools/kernel-dumps/fetch-vmlinux-dbg.sh``; ``SFUNWIND_FULL_VMLINUX`` names it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sfunwind.unwind.returnsites import main as build_table

COMMITTED = Path(__file__).parent / "data" / "unwind" / "linux-7.2.13-cloud-arm64.rsites"


def _full_vmlinux() -> Path | None:
    env = os.environ.get("SFUNWIND_FULL_VMLINUX")
    path = Path(env) if env else Path("/work/cache/vmlinux-7.2.13/vmlinux")
    return path if path.is_file() else None


@pytest.mark.skipif(_full_vmlinux() is None,
                    reason="full debug vmlinux not fetched "
                           "(tools/kernel-dumps/fetch-vmlinux-dbg.sh; SFUNWIND_FULL_VMLINUX)")
def test_committed_table_regenerates_byte_identically(tmp_path: Path) -> None:
    out = tmp_path / "vmlinux.rsites"
    assert build_table([str(_full_vmlinux()), str(out)]) == 0
    assert out.read_bytes() == COMMITTED.read_bytes()
