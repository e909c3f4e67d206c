"""The unwinder on a :class:`~sfunwind.kernel.program.KernelProgram` (a vmcore + vmlinux).

    >>> prog = open_program("nested-irq.vmcore.xz", "vmlinux.debug.xz")
    >>> ctx = context_for(prog)                     # SFrame rows, symbols, PAC mask, ...
    >>> trace_cpu(prog, 1, Mode.SFRAME, ctx=ctx)     # what CPU 1 was running, from PRSTATUS
    >>> trace_task(prog, prog.find_task(113), Mode.UPSTREAM, ctx=ctx)
    >>> trace_all(prog, Mode.SFRAME, ctx=ctx)        # every thread (running ones from regs)

SFrame rows come from, in order: an explicit SFrame file (``sframe_path``), the vmlinux's own
``.sframe``, or SFrame converted from its ``.debug_frame`` by :mod:`sfunwind.cfi` (cached by
build ID).  Row addresses are link-time; lookups subtract the KASLR offset.

A return-site table (:mod:`sfunwind.unwind.returnsites`) is built from the vmlinux when it
holds code, or read from ``return_sites_path``.
"""

from __future__ import annotations

from pathlib import Path

from sfunwind.errors import MemoryFault, SfunwindError, UsageError
from sfunwind.rules import UnwindRow
from sfunwind.unwind.arm64 import (
    FgraphEntry,
    KretprobeInstance,
    PtRegsLayout,
    Regs,
    StackInfo,
    TaskStacks,
    UnwindContext,
    start_from_regs,
    start_from_task,
    unwind,
)
from sfunwind.unwind.returnsites import ReturnSites
from sfunwind.unwind.trace import Frame, Mode, Reason, Source, Trace

#: Bound on kretprobe instances followed per task.
MAX_KRETPROBE_INSTANCES = 4096


def open_program(vmcore: str | Path, vmlinux: str | Path):  # -> KernelProgram
    from sfunwind.kernel.program import KernelProgram

    return KernelProgram.open(vmcore, vmlinux)


def _vmlinux_path(program) -> str | None:
    src = getattr(program.symbols, "source", None)
    return str(src) if src else None


def sframe_rows(program, *, sframe_path: str | Path | None = None,
                cache_dir: str | Path | None = None):
    """``find_row(runtime_pc) -> UnwindRow | None`` for the kernel image, or None when no
    SFrame can be had (then the ``sframe`` modes fall back as without CONFIG SFrame)."""
    from sfunwind.sframe import SFrameTable, load

    if sframe_path is not None:
        table = SFrameTable(load(sframe_path))
    else:
        vmlinux = _vmlinux_path(program)
        if vmlinux is None:
            return None
        from sfunwind.memory.files import materialize

        try:
            table = SFrameTable(load(materialize(vmlinux)))  # the vmlinux's own .sframe
        except SfunwindError:
            from sfunwind.cfi import kernel_sframe_table

            table = kernel_sframe_table(vmlinux, cache_dir)  # from .debug_frame, cached
    offset = program.kaslr_offset
    if not offset:
        return table.find

    def find_row(pc: int) -> UnwindRow | None:
        return table.find(pc - offset)

    return find_row


def return_sites_for(program, path: str | Path | None = None, *,
                     cache_dir: str | Path | None = None) -> ReturnSites | None:
    """The return-site table: from *path*, else built from the vmlinux when it has code
    (cached by build ID next to the converted SFrame), else None (checks not done)."""
    table = None
    if path is not None:
        table = ReturnSites.load(path)
    else:
        vmlinux = _vmlinux_path(program)
        if vmlinux is not None:
            table = _cached_return_sites(program, vmlinux, cache_dir)
    if table is None:
        return None
    if table.build_id and program.build_id and table.build_id != program.build_id:
        raise UsageError(f"return-site table is for build ID {table.build_id}, the vmcore is "
                         f"{program.build_id}")
    return table.relocated(program.kaslr_offset)


def _cached_return_sites(program, vmlinux: str, cache_dir) -> ReturnSites | None:
    from sfunwind.cfi import cache_directory
    from sfunwind.memory.files import materialize

    build_id = getattr(program, "vmlinux_build_id", None)
    cached = cache_directory(cache_dir) / f"{build_id}.rsites" if build_id else None
    if cached is not None:
        if cached.exists():
            return ReturnSites.load(cached)
        if (cached.with_suffix(".nocode")).exists():
            return None
    table = ReturnSites.from_elf(materialize(vmlinux))
    if cached is not None:
        if table is None:
            cached.with_suffix(".nocode").touch()
        else:
            tmp = cached.with_suffix(".tmp")
            table.save(tmp)
            tmp.replace(cached)
    return table


def _symbol_range(program, name: str) -> tuple[int, int] | None:
    """``(address, kallsyms size)`` of a kernel symbol, None when the kernel lacks it."""
    address = program.symbols.get(name)
    if address is None:
        return None
    info = program.symbols.lookup(address)
    return address, (info.size if info is not None else 4)


#: Bound on modules followed on the ``modules`` list.
MAX_MODULES = 1 << 14


def module_text_ranges(program) -> list[tuple[int, int]]:
    """``[base, base + size)`` of every loaded module's ``mem[MOD_TEXT]`` (what
    ``is_module_text_address()`` accepts); [] when the dump or BTF lacks them."""
    types = program.types
    head = program.symbols.get("modules")
    if head is None:
        return []
    try:
        list_off = types.offsetof("struct module", "list")
        mem_off = types.offsetof("struct module", "mem")  # mem[MOD_TEXT], MOD_TEXT == 0
        base_m = types.member("struct module_memory", "base")
        size_m = types.member("struct module_memory", "size")
        out = []
        node = program.memory.read_u64(head)
        seen = {head}
        while node != head and node not in seen and len(seen) <= MAX_MODULES:
            seen.add(node)
            mod = node - list_off
            base = program.memory.read_u64(mod + mem_off + base_m.offset)
            size = int.from_bytes(program.memory.read(mod + mem_off + size_m.offset,
                                                      size_m.size), "little")
            if base and size:
                out.append((base, base + size))
            node = program.memory.read_u64(node)
        return out
    except (KeyError, SfunwindError):
        return []


def context_for(program, *, sframe_path: str | Path | None = None,
                cache_dir: str | Path | None = None, need_rows: bool = True,
                return_sites_path: str | Path | None = None,
                use_return_sites: bool = True) -> UnwindContext:
    """The :class:`UnwindContext` of a kernel program."""
    lay = program.layout
    layout = PtRegsLayout(size=lay.pt_regs_size, regs=lay.pt_regs_regs, sp=lay.pt_regs_sp,
                          pc=lay.pt_regs_pc, pstate=lay.pt_regs_pstate,
                          stackframe=lay.pt_regs_stackframe)
    find_row = sframe_rows(program, sframe_path=sframe_path, cache_dir=cache_dir) \
        if need_rows else None
    symbols = program.symbols
    sites = return_sites_for(program, return_sites_path, cache_dir=cache_dir) \
        if use_return_sites else None
    modules = module_text_ranges(program)

    def is_kernel_text(pc: int) -> bool:
        """``__kernel_text_address()``: core and init text, or a module's text."""
        return symbols.is_kernel_text(pc) or any(lo <= pc < hi for lo, hi in modules)

    return UnwindContext(
        memory=program.memory, find_row=find_row, symbolize=symbols.lookup,
        is_kernel_text=is_kernel_text, pac_mask=program.pac_mask, pt_regs=layout,
        return_to_handler=_symbol_range(program, "return_to_handler"),
        kretprobe_trampoline=_symbol_range(program, "__kretprobe_trampoline"),
        is_return_site=sites,
        closed_call_target=sites.closed_call_target if sites is not None else None)


def _stack(s) -> StackInfo:
    return StackInfo(s.name, s.low, s.high)


def _kretprobe_instances(program, task) -> tuple[KretprobeInstance, ...]:
    """``task->kretprobe_instances`` (an llist, newest first), decoded with BTF offsets; empty
    when BTF lacks them (then a kretprobe trampoline on the stack is unrecoverable, which is
    the safe answer)."""
    first = task.kretprobe_instances
    if not first:
        return ()
    types = program.types
    try:
        node_off = types.offsetof("struct kretprobe_instance", "llist")
        ret_off = types.offsetof("struct kretprobe_instance", "ret_addr")
        fp_off = types.offsetof("struct kretprobe_instance", "fp")
    except (KeyError, SfunwindError):
        return ()
    out = []
    node = first
    seen = set()
    while node and node not in seen and len(out) < MAX_KRETPROBE_INSTANCES:
        seen.add(node)
        ri = node - node_off
        try:
            out.append(KretprobeInstance(program.memory.read_u64(ri + ret_off),
                                         program.memory.read_u64(ri + fp_off)))
            node = program.memory.read_u64(node)
        except MemoryFault:
            break
    return tuple(out)


#: ``kernel/trace/fgraph.c``: each word of ``task->ret_stack`` carries, in its low
#: ``FGRAPH_FRAME_OFFSET_BITS`` (10) bits, the distance in words back to the start of its
#: ``struct ftrace_ret_stack``; ``SHADOW_STACK_SIZE`` is 4096 bytes.
FGRAPH_FRAME_OFFSET_MASK = (1 << 10) - 1
SHADOW_STACK_WORDS = 4096 // 8


def fgraph_entries(memory, ret_stack: int, curr_ret_stack: int, ret_off: int,
                   retp_off: int) -> tuple[FgraphEntry, ...]:
    """The fgraph return stack, newest first, walked as ``get_ret_stack()`` does: from
    ``curr_ret_stack`` down, each frame found through the offset in the word below it.
    A malformed word ends the walk (the kernel WARNs and stops there too)."""
    out = []
    i = min(curr_ret_stack, SHADOW_STACK_WORDS)
    for _ in range(SHADOW_STACK_WORDS):
        if i <= 0:
            break
        try:
            offs = memory.read_u64(ret_stack + 8 * (i - 1)) & FGRAPH_FRAME_OFFSET_MASK
            if offs <= 0 or offs > i - 1:
                break
            i = i - 1 - offs
            frame = ret_stack + 8 * i
            out.append(FgraphEntry(memory.read_u64(frame + ret_off),
                                   memory.read_u64(frame + retp_off)))
        except MemoryFault:
            break
    return tuple(out)


def _fgraph(program, task) -> tuple[bool, tuple[FgraphEntry, ...]]:
    rs = task.ret_stack
    if not rs or not rs[0]:
        return False, ()
    try:
        ret_off = program.types.offsetof("struct ftrace_ret_stack", "ret")
        retp_off = program.types.offsetof("struct ftrace_ret_stack", "retp")
    except (KeyError, SfunwindError):
        return True, ()  # no layout: every return_to_handler is unrecoverable (safe)
    return True, fgraph_entries(program.memory, rs[0], rs[1], ret_off, retp_off)


def task_stacks(program, task, *, running_cpu: int | None = None) -> TaskStacks:
    """The :class:`TaskStacks` of *task* (per-CPU stacks only when it runs on that CPU)."""
    stacks = tuple(_stack(s) for s in task.stacks(running_cpu=running_cpu))
    has_ret_stack, ret_stack = _fgraph(program, task)
    return TaskStacks(stacks=stacks, final_record=task.final_record,
                      ret_stack=ret_stack, has_ret_stack=has_ret_stack,
                      kretprobe_instances=_kretprobe_instances(program, task),
                      is_current=running_cpu is not None)


def _label(trace: Trace, task, cpu: int | None) -> Trace:
    trace.pid, trace.tgid, trace.comm = task.pid, task.tgid, task.comm
    trace.task = task.address
    trace.cpu = cpu if cpu is not None else task.cpu
    return trace


def trace_cpu(program, cpu: int, mode: Mode, *, ctx: UnwindContext | None = None,
              max_entries: int = 100) -> Trace:
    """What CPU *cpu* was running, unwound from its PRSTATUS registers (``kunwind_init_from_
    regs`` semantics: the first frame is the exact pc, marked (P))."""
    cpus = {c.index: c for c in program.cpus()}
    if cpu not in cpus:
        raise UsageError(f"no CPU {cpu} in this dump (CPUs: {sorted(cpus)})")
    c = cpus[cpu]
    if c.prstatus is None:
        raise UsageError(f"CPU {cpu} has no NT_PRSTATUS registers in this dump")
    ctx = ctx or context_for(program, need_rows=mode in (Mode.SFRAME, Mode.SFRAME_V6))
    task = c.curr_task
    pr = c.prstatus
    if not pr.in_kernel:
        frame = Frame(pc=pr.pc, source=Source.REGS_PC, raw_pc=pr.pc, fp=pr.fp)
        trace = Trace(frames=[frame], mode=mode, reliable=False, start="cpu",
                      reasons=[Reason("user-mode", "the CPU was running user code (EL0): "
                                      "no kernel frames; the task switches at kernel exit",
                                      0, pr.pc)])
        return _label(trace, task, cpu)
    stacks = task_stacks(program, task, running_cpu=cpu)
    regs = Regs(pc=pr.pc, sp=pr.sp, fp=pr.fp, lr=pr.lr)
    trace = unwind(ctx, stacks, start_from_regs(regs), mode, max_entries=max_entries)
    trace.start = "cpu"
    return _label(trace, task, cpu)


def trace_task(program, task, mode: Mode, *, ctx: UnwindContext | None = None,
               max_entries: int = 100) -> Trace:
    """*task* (a :class:`~sfunwind.kernel.program.Task`): from its CPU's registers when it
    is running there, else from ``thread.cpu_context`` (marker T)."""
    ctx = ctx or context_for(program, need_rows=mode in (Mode.SFRAME, Mode.SFRAME_V6))
    for c in program.cpus():
        if c.curr == task.address and c.prstatus is not None:
            return trace_cpu(program, c.index, mode, ctx=ctx, max_entries=max_entries)
    cc = task.cpu_context
    stacks = task_stacks(program, task)
    trace = unwind(ctx, stacks, start_from_task(cc.pc, cc.fp, cc.sp), mode,
                   max_entries=max_entries)
    return _label(trace, task, None)


def trace_pid(program, pid: int, mode: Mode, *, ctx: UnwindContext | None = None,
              max_entries: int = 100) -> Trace:
    task = program.find_task(pid)
    if task is None:
        raise UsageError(f"no task with pid {pid} in this dump")
    return trace_task(program, task, mode, ctx=ctx, max_entries=max_entries)


def trace_all(program, mode: Mode, *, ctx: UnwindContext | None = None,
              max_entries: int = 100) -> list[Trace]:
    """Every thread (idle tasks included); running ones from their CPU's registers, so every
    CPU is covered too."""
    ctx = ctx or context_for(program, need_rows=mode in (Mode.SFRAME, Mode.SFRAME_V6))
    threads = program.threads()
    traces = [trace_task(program, t, mode, ctx=ctx, max_entries=max_entries) for t in threads]
    covered = {t.address for t in threads}
    for c in program.cpus():  # a CPU running a task no list holds (exiting, say)
        if c.curr not in covered and c.prstatus is not None:
            traces.append(trace_cpu(program, c.index, mode, ctx=ctx, max_entries=max_entries))
    return traces


def trace_snapshot(path: str | Path, mode: Mode, *, image: str | Path | None = None,
                   max_entries: int = 100) -> Trace:
    """A stopped CPU state saved as a snapshot (``sfunwind.truth.snapshot``: registers,
    memory, stack bounds, the image ELF with .symtab/.sframe; *image* overrides that ELF)."""
    from sfunwind.truth.snapshot import trace_snapshot_file

    trace = trace_snapshot_file(path, mode, image=image, max_entries=max_entries)
    trace.start = "snapshot"
    return trace
