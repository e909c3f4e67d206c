"""The typed error hierarchy.

Every failure that a user can cause (a bad file, a missing page, a wrong vmlinux, a bad
command line) is a subclass of :class:`SfunwindError`.  The CLI turns these into one-line
messages and the exit code carried by the class; anything else escaping is a bug.

Format errors always say *where*: the file (when known) and the byte offset inside it, or the
address for memory faults.
"""

from __future__ import annotations


class ExitCode:
    """Process exit codes of the ``sfunwind`` command (documented in the README)."""

    OK = 0
    #: The command ran, and its answer is negative: problems found by ``validate``/``check``,
    #: an unreliable trace with ``--require-reliable``, a livepatch transition that would stall.
    FINDINGS = 1
    USAGE = 2
    BAD_INPUT = 3
    MEMORY_FAULT = 4
    MISMATCH = 5
    MISSING_TOOL = 6
    INTERNAL = 70


class SfunwindError(Exception):
    """Base class of every error sfunwind raises on purpose."""

    exit_code: int = ExitCode.BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(SfunwindError):
    """A command-line or API argument that makes no sense."""

    exit_code = ExitCode.USAGE


class MissingToolError(SfunwindError):
    """An optional external tool or package (objdump, libsframe, drgn, unicorn) is absent."""

    exit_code = ExitCode.MISSING_TOOL


class FormatError(SfunwindError):
    """Malformed input data: names the file (if known), the byte offset and the reason."""

    kind = "data"

    def __init__(self, reason: str, *, offset: int | None = None, path: str | None = None) -> None:
        self.reason = reason
        self.offset = offset
        self.path = path
        where = []
        if path:
            where.append(str(path))
        if offset is not None:
            where.append(f"offset {offset:#x}")
        prefix = f"{self.kind}: " + (", ".join(where) + ": " if where else "")
        super().__init__(prefix + reason)

    def with_path(self, path: str) -> FormatError:
        """The same error, naming *path* (used where the decoder did not know the file)."""
        if self.path:
            return self
        return type(self)(self.reason, offset=self.offset, path=path)


class ElfFormatError(FormatError):
    kind = "ELF"


class SFrameFormatError(FormatError):
    kind = "SFrame"


class CFIFormatError(FormatError):
    kind = "CFI"


class BTFFormatError(FormatError):
    kind = "BTF"


class VmcoreFormatError(FormatError):
    kind = "vmcore"


class SnapshotFormatError(FormatError):
    kind = "snapshot"


class MemoryFault(SfunwindError):
    """A read of memory that the address space does not have (or cannot translate)."""

    exit_code = ExitCode.MEMORY_FAULT

    def __init__(self, address: int, reason: str = "not present", *,
                 physical: int | None = None, size: int | None = None) -> None:
        self.address = address
        self.physical = physical
        self.size = size
        text = f"memory fault at {address:#x}"
        if size is not None:
            text += f" (+{size:#x})"
        if physical is not None:
            text += f" [phys {physical:#x}]"
        super().__init__(f"{text}: {reason}")


class MismatchError(SfunwindError):
    """Two inputs that must belong together do not (vmcore BUILD-ID vs vmlinux)."""

    exit_code = ExitCode.MISMATCH
