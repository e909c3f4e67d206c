"""sfunwind: reliable stack unwinding with frame pointers and SFrame.

Packages, data flowing one way:
``sframe`` (format) · ``cfi`` (DWARF CFI rows, conversion) · ``elf`` · ``memory`` (address
spaces) · ``kernel`` (Linux object model) · ``unwind`` (rule model use, FP/SFrame steps, the
arm64 kernel state machine, reliability) · ``livepatch`` · ``truth`` (emulation harness) ·
``report`` · ``cli``.  The shared row model is :mod:`sfunwind.rules`; the typed errors are
:mod:`sfunwind.errors`.
"""

__version__ = "0.1.0"
