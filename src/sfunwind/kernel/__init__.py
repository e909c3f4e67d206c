"""The Linux kernel object model: VMCOREINFO, BTF layouts, symbols, tasks, CPUs, stacks."""
