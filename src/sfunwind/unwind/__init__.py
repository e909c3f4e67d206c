"""Unwinding: FP and SFrame steps, the arm64 kernel state machine, reliability verdicts."""
