"""The Linux kernel object model: VMCOREINFO, BTF layouts, symbols, tasks, CPUs, stacks.

Entry point: :class:`sfunwind.kernel.program.KernelProgram`::

    from sfunwind.kernel.program import KernelProgram

    prog = KernelProgram.open("dump.vmcore.xz", "vmlinux.debug.xz")  # MismatchError if wrong
    prog.memory.read(va, n)          # kernel virtual memory (sfunwind.memory.AddressSpace)
    prog.symbols.lookup(pc)          # SymbolInfo(name, address, size, offset) | None
    prog.symbols.format(ra, backtrace=True)   # "name+0x10/0x60" exactly like the kernel's %pB
    prog.is_kernel_text(pc)          # kernel_text_address() for the image (init text freed)
    prog.types.offsetof("struct pt_regs", "stackframe")       # BTF (DWARF as a fallback)
    prog.layout                      # KernelLayout: every offset/size the unwinder uses
    for task in prog.threads():      # Task: pid, tgid, comm, state, cpu, on_cpu, stack, ...
        task.start_state()           # StartState: "task" (cpu_context) / "regs" / "user"
        task.stacks()                # [StackInfo("task", low, high), irq, overflow, ...]
        task.final_record            # where the FINAL frame_record_meta must be
        prog.kretprobe_instances(task)   # [(ret_addr, fp), ...]
    for cpu in prog.cpus():          # Cpu: prstatus, curr, idle, irq/overflow/SDEI stacks
        ...
    prog.pt_regs(addr)               # PtRegs: regs, sp, pc, pstate, stackframe meta
    prog.frame_record(fp)            # (fp, lr)
    prog.strip_pac(lr)               # lr | KERNELPACMASK

Modules: :mod:`.program` (tasks, CPUs, stacks, layout), :mod:`.symbols` (kallsyms-exact
symbolization from ``.symtab`` or from the dump's kallsyms tables), :mod:`.btf` (``.BTF``
parser), :mod:`.dwarf` (the same queries from DWARF, for kernels without BTF),
:mod:`.elfsections` (section access), :mod:`.cli` (``sfunwind kernel info|tasks``).
Constants the kernel only has as ``#define``: ``program.FRAME_META_TYPE_*``,
``program.TASK_*``.  A symbol or type the model needs but the inputs lack raises
``program.MissingKernelData`` (a typed error that is also a ``KeyError``).
"""
