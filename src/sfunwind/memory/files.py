"""Input files that may be xz-compressed (the test fixtures are).

:func:`materialize` returns a path to the uncompressed file: plain files are returned as they
are; ``*.xz`` files are decompressed once into a cache directory, keyed by the SHA-256 of the
compressed bytes, so every later open is an ``mmap`` of the cached copy.

Cache directory: ``$SFUNWIND_CACHE``, else ``$XDG_CACHE_HOME/sfunwind``, else
``~/.cache/sfunwind``; when that is not writable, ``$TMPDIR/sfunwind-<uid>``.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import tempfile
from pathlib import Path

from sfunwind.errors import FormatError, UsageError

#: Largest decompressed size accepted (an xz "bomb" must not fill the disk).
MAX_DECOMPRESSED = 64 << 30
_CHUNK = 1 << 20


class CompressedFormatError(FormatError):
    kind = "xz"


def cache_dir() -> Path:
    env = os.environ.get("SFUNWIND_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "sfunwind"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def materialize(path: str | os.PathLike[str]) -> Path:
    """The uncompressed form of *path* (decompressing ``.xz`` into the cache once)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if path.suffix != ".xz":
        return path
    try:
        digest = _digest(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    name = f"{digest[:24]}-{path.stem}"
    for out_dir in (cache_dir() / "xz",
                    Path(tempfile.gettempdir()) / f"sfunwind-{os.getuid()}" / "xz"):
        target = out_dir / name
        if target.is_file():
            return target
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".partial-")
            break
        except OSError:
            continue  # an unwritable cache (read-only home): try the temporary directory
    else:
        raise UsageError(f"{path}: no writable cache directory to decompress into "
                         f"(set SFUNWIND_CACHE)")
    try:
        total = 0
        with os.fdopen(fd, "wb") as out, lzma.open(path, "rb") as src:
            while chunk := src.read(_CHUNK):
                total += len(chunk)
                if total > MAX_DECOMPRESSED:
                    raise CompressedFormatError(
                        f"decompresses to more than {MAX_DECOMPRESSED} bytes", path=str(path))
                out.write(chunk)
        os.replace(tmp, target)
    except (lzma.LZMAError, EOFError) as exc:
        raise CompressedFormatError(f"corrupt xz data: {exc}", path=str(path)) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot decompress into {target.parent}: "
                         f"{exc.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
