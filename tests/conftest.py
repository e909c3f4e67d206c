from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from toolchain import Sid, sid_root

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def sid() -> Sid:
    """The sid toolchain chroot (see tests/toolchain.py)."""
    root = sid_root()
    if root is None:
        if os.environ.get("SFUNWIND_REQUIRE_TOOLCHAIN") == "1":
            pytest.fail("SFUNWIND_REQUIRE_TOOLCHAIN=1 but no sid chroot (tools/sid-toolchain)")
        pytest.skip("sid toolchain chroot not built (run: tools/sid-toolchain /var/cache/sfunwind/sid)")
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    return Sid(root)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
