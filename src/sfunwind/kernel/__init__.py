"""The Linux kernel object model: VMCOREINFO, BTF layouts, symbols, tasks, CPUs, stacks.

Entry point: :class:`sfunwind.kernel.program.KernelProgram`::

    from sfunwind.kernel.program import KernelProgram

    prog = KernelProgram.open("dump.vmcore.xz", "vmlinux.debug.xz")  # MismatchError if wrong
    prog.memory.read(va, n)          # kernel virtual memory (sfunwind.memory.AddressSpace)
    prog.symbols.lookup(pc)          # SymbolInfo(name, address, size, offset) | None
    prog.symbols.format(ra, backtrace=True)   # "name+0x10/0x60" exactly like the kernel's %pB
    prog.types.offsetof("struct pt_regs", "stackframe")       # BTF
    prog.layout                      # KernelLayout: every offset/size the unwinder uses
    for task in prog.threads():      # Task: pid, tgid, comm, state, cpu, on_cpu, stack, ...
        task.start_state()           # StartState: "task" (cpu_context) / "regs" / "user"
        task.stacks()                # [StackInfo("task", low, high), irq, overflow, ...]
    for cpu in prog.cpus():          # Cpu: prstatus, curr, idle, irq/overflow/SDEI stacks
        ...
    prog.strip_pac(lr)               # lr | KERNELPACMASK

Modules: :mod:`.program` (tasks, CPUs, stacks, layout), :mod:`.symbols` (kallsyms-exact
symbolization from ``.symtab`` or from the dump's kallsyms tables), :mod:`.btf` (``.BTF``
parser), :mod:`.elfsections` (section access), :mod:`.cli` (``sfunwind kernel info|tasks``).
Constants the kernel only has as ``#define``: ``program.FRAME_META_TYPE_*``,
``program.TASK_*``.
"""
