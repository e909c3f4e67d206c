"""Ground truth: interrupt real compiled code under emulation and compare unwinders."""
