"""Ground truth: interrupt real compiled code under emulation and compare unwinders.

* :mod:`sfunwind.truth.image` — the truth image (tests/data/truth/truth-*.elf): segments,
  symbols, instruction kinds and point classes.
* :mod:`sfunwind.truth.emulator` — :class:`~sfunwind.truth.emulator.Machine`: unicorn at EL1,
  exact shadow call stack from block hooks, IRQ injection, captures.
* :mod:`sfunwind.truth.compare` — reference timeline, point planning, PAC signing, the
  comparison of every unwinder mode with the truth and its table.
* :mod:`sfunwind.truth.snapshot` — the documented snapshot format: ``load_snapshot``,
  ``unwind_inputs`` (-> UnwindContext, TaskStacks, Start), ``trace_snapshot_file``.
* :mod:`sfunwind.truth.cli` — ``sfunwind truth run`` / ``sfunwind truth snapshot``.
"""
