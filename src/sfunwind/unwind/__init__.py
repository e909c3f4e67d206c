"""Unwinding: the arm64 kernel state machine, reliability verdicts, their inputs and outputs.

* :mod:`sfunwind.unwind.trace` — ``Trace`` / ``Frame`` / ``Reason`` / ``Event`` / ``Mode`` /
  ``Source``: what every unwind returns (shared contract).
* :mod:`sfunwind.unwind.arm64` — ``unwind(ctx, task, start, mode)``: the kernel's
  ``arch/arm64/kernel/stacktrace.c`` walk in modes ``upstream``, ``sframe``, ``sframe-v6`` and
  ``fp``, over any address space (``UnwindContext``, ``TaskStacks``, ``start_from_task`` /
  ``start_from_regs`` / ``start_from_caller``).
* :mod:`sfunwind.unwind.kernel` — the same on a vmcore: ``trace_task`` / ``trace_cpu`` /
  ``trace_pid`` / ``trace_all`` / ``trace_snapshot``, ``context_for(program)``.
* :mod:`sfunwind.unwind.returnsites` — build-time call-site metadata for the verdict.
* :mod:`sfunwind.unwind.format` — the kernel's dump format, boundaries, verdicts, tables.
* :mod:`sfunwind.unwind.synthetic` — exact synthetic kernel stacks for tests.
"""
