"""Access to the Debian sid toolchain chroot (gcc 16, binutils 2.47, libsframe, qemu-user).

Built by ``tools/sid-toolchain DIR``; CI builds it (``.ci/run``).  Tests that need it use the
``sid`` fixture from ``conftest.py``.  Locally, when the chroot is absent, those tests are
skipped with that reason; with ``SFUNWIND_REQUIRE_TOOLCHAIN=1`` (set by CI) its absence is a
failure instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

DEFAULT_ROOTS = ("/work/toolchains/sid", "/var/cache/sfunwind/sid")
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sid_root() -> Path | None:
    """The chroot directory, or None when no usable chroot exists."""
    env = os.environ.get("SFUNWIND_SID_ROOT")
    candidates = (env,) if env else DEFAULT_ROOTS
    for c in candidates:
        if c and Path(c, "usr/bin/aarch64-linux-gnu-gcc").exists():
            return Path(c)
    return None


class Sid:
    """Runs commands inside the chroot, with a scratch directory shared with the host."""

    def __init__(self, root: Path):
        self.root = root

    def scratch(self) -> Path:
        """A fresh directory visible in the chroot; its path inside is ``self.inside(p)``."""
        base = self.root / "tmp"
        base.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="sfunwind-", dir=base))

    def inside(self, host_path: Path) -> str:
        return "/" + str(Path(host_path).resolve().relative_to(self.root.resolve()))

    def run(self, command: str, *, cwd: Path | None = None, check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        script = command if cwd is None else f"cd {self.inside(cwd)} && {command}"
        return subprocess.run(
            ["chroot", str(self.root), "/usr/bin/env", "-i", "HOME=/root", "LANG=C.UTF-8",
             f"PATH={CHROOT_PATH}", "/bin/bash", "-c", script],
            check=check, capture_output=True, text=True, timeout=timeout)

    def cleanup(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
