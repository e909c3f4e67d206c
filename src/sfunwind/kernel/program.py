"""A crashed/dumped arm64 Linux kernel as objects: tasks, CPUs, stacks, registers.

    >>> prog = KernelProgram.open("irq-in-fault.vmcore.xz", "vmlinux.debug.xz")
    >>> prog.vmcoreinfo.osrelease, hex(prog.kaslr_offset)
    >>> for task in prog.threads():
    ...     print(task.pid, task.comm, task.state, task.cpu, task.on_cpu, task.stack_info)
    >>> for cpu in prog.cpus():
    ...     print(cpu.index, cpu.curr_task.comm, hex(cpu.prstatus.pc), cpu.irq_stack)
    >>> prog.symbols.format(pc)            # "hrtimer_interrupt+0x8/0x340"
    >>> prog.memory.read(address, size)     # kernel virtual memory (MemoryFault if absent)

Everything layout-dependent comes from the vmlinux BTF (``prog.types``) and its symbol table
(``prog.symbols``): struct offsets, sizes of ``pt_regs`` and the per-cpu stacks, enum values.
Kernel ``#define`` values that no debug format records (``FRAME_META_TYPE_*``, task state
bits) are the documented constants below, with the kernel header they come from.

Stack bounds follow ``arch/arm64/kernel/stacktrace.c``: ``[low, high)`` per stack, and an
object ``[sp, sp + size)`` is on a stack iff ``low <= sp`` and ``sp + size <= high``
(:meth:`StackInfo.contains`).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sfunwind.errors import (
    FormatError,
    MemoryFault,
    MismatchError,
    UsageError,
    VmcoreFormatError,
)
from sfunwind.kernel.btf import BTF
from sfunwind.kernel.symbols import Symbolizer
from sfunwind.memory.arm64 import Arm64Translation, KernelAddressSpace
from sfunwind.memory.elfcore import ElfCore, PrStatus, VmcoreInfo

#: ``arch/arm64/include/asm/stacktrace/frame.h`` (``#define``s: not in BTF or DWARF).
FRAME_META_TYPE_NONE = 0
FRAME_META_TYPE_FINAL = 1
FRAME_META_TYPE_PT_REGS = 2

#: ``include/linux/sched.h`` task state bits (``#define``s), as used by
#: ``__task_state_index()`` / ``task_state_to_char()``.
TASK_RUNNING = 0x0000
TASK_INTERRUPTIBLE = 0x0001
TASK_UNINTERRUPTIBLE = 0x0002
TASK_REPORT = 0x007F
TASK_NOLOAD = 0x0400
TASK_IDLE = TASK_UNINTERRUPTIBLE | TASK_NOLOAD
TASK_RTLOCK_WAIT = 0x1000
TASK_FROZEN = 0x8000
TASK_REPORT_IDLE = TASK_REPORT + 1
#: ``fs/proc/array.c`` task_state_array, one letter per report index.
TASK_STATE_CHARS = "RSDTtXZPI"

#: arm64 ``OVERFLOW_STACK_SIZE`` (``SZ_4K``) when the per-cpu array's type is unknown.
OVERFLOW_STACK_SIZE_DEFAULT = 4096

#: Bounds for walking kernel lists (a corrupt list must not loop forever).
MAX_TASKS = 1 << 20
MAX_CPUS = 1 << 13


class MissingKernelData(FormatError, KeyError):
    """A symbol, type or member the kernel model needs is not in the vmlinux (or dump).

    Also a :class:`KeyError`, so ``prog.symbol(name)`` can be probed with ``except KeyError``.
    """

    kind = "vmlinux"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


def clear_caches() -> None:
    """Forget the per-process parse caches of vmlinux symbols and BTF (benchmarks use it
    to time cold opens)."""
    from sfunwind.kernel import btf, symbols

    symbols._vmlinux_symbols.cache_clear()
    btf._btf_of_file.cache_clear()


def task_state_char(state: int, exit_state: int = 0) -> str:
    """The ``ps``/sysrq letter of a task state (``__task_state_index()`` in sched.h)."""
    report = (state | exit_state) & TASK_REPORT
    if (state & TASK_IDLE) == TASK_IDLE:
        report = TASK_REPORT_IDLE
    if state & (TASK_RTLOCK_WAIT | TASK_FROZEN):
        report = TASK_UNINTERRUPTIBLE
    return TASK_STATE_CHARS[report.bit_length()]


@dataclass(frozen=True)
class StackInfo:
    """One stack a task may run on: ``[low, high)``.  ``cpu`` is set for per-CPU stacks."""

    name: str  # "task", "irq", "overflow", "sdei_normal", "sdei_critical", "efi"
    low: int
    high: int
    cpu: int | None = None

    def contains(self, sp: int, size: int = 1) -> bool:
        """``stackinfo_on_stack()``: ``[sp, sp + size)`` lies within this stack."""
        return self.low != 0 and self.low <= sp and sp + size <= self.high

    @property
    def size(self) -> int:
        return self.high - self.low

    def __str__(self) -> str:
        return f"{self.name}[{self.low:#x}-{self.high:#x})"


@dataclass(frozen=True)
class CpuContext:
    """``task->thread.cpu_context``: what ``cpu_switch_to`` saved (callee-saved x19–x28,
    fp = x29, sp, and pc = the return address into ``__switch_to``'s caller path)."""

    x19_x28: tuple[int, ...]
    fp: int
    sp: int
    pc: int

    def as_dict(self) -> dict[str, int]:
        out = {f"x{19 + i}": v for i, v in enumerate(self.x19_x28)}
        out.update(fp=self.fp, sp=self.sp, pc=self.pc)
        return out


@dataclass(frozen=True)
class StartState:
    """Where an unwind of a task starts (``kunwind_init_from_task`` / ``_from_regs``).

    ``kind``:

    * ``"task"`` — blocked (not ``rq->curr`` of a CPU): ``thread.cpu_context`` saved by
      ``cpu_switch_to``; ``pc`` is ``cpu_context.pc`` (in ``__switch_to``'s caller path),
      the kernel prints the first frame with ``(T)``;
    * ``"regs"`` — running in the kernel on ``cpu``: the CPU's ``NT_PRSTATUS`` registers
      (``lr`` may be PAC-signed; strip with :meth:`KernelProgram.strip_pac`);
    * ``"user"`` — running at EL0 on ``cpu``: there is no kernel stack to unwind beyond the
      EL0 ``pt_regs`` (``pc``/``sp`` are user addresses).
    """

    kind: str
    pc: int
    fp: int
    sp: int
    lr: int | None
    cpu: int | None
    regs: dict[str, int]


@dataclass(frozen=True)
class PtRegs:
    """A ``struct pt_regs`` read from memory (the exception frame entry code saved).

    ``meta_fp``/``meta_lr``/``meta_type`` are its embedded ``stackframe``
    (``struct frame_record_meta``): a meta record iff ``meta_fp == meta_lr == 0``; ``type``
    is ``FRAME_META_TYPE_FINAL`` (1) for the EL0 entry at the top of every task stack and
    ``FRAME_META_TYPE_PT_REGS`` (2) for an exception taken at EL1.
    """

    address: int
    regs: tuple[int, ...]  # x0..x30 (x29 = fp, x30 = lr, possibly PAC-signed)
    sp: int
    pc: int
    pstate: int
    meta_fp: int
    meta_lr: int
    meta_type: int

    @property
    def fp(self) -> int:
        return self.regs[29]

    @property
    def lr(self) -> int:
        return self.regs[30]

    @property
    def from_user(self) -> bool:
        """The exception was taken from EL0 (PSTATE.M[3:2] == 0)."""
        return (self.pstate >> 2) & 3 == 0


@dataclass(frozen=True)
class KernelLayout:
    """Every offset and size the task model and the unwinder use, from BTF.

    Offsets are bytes from the start of the named struct.
    """

    task_struct_size: int
    task_stack: int
    task_state: int
    task_state_size: int
    task_exit_state: int | None
    task_on_cpu: int
    task_on_cpu_size: int
    task_cpu: int
    task_cpu_size: int
    task_tasks: int
    task_pid: int
    task_tgid: int
    task_comm: int
    task_comm_size: int
    task_signal: int
    task_thread_node: int | None
    task_flags: int | None
    task_cpu_context: int
    task_ret_stack: int | None
    task_curr_ret_stack: int | None
    task_kretprobe_instances: int | None
    signal_thread_head: int | None
    cpu_context_fp: int
    cpu_context_sp: int
    cpu_context_pc: int
    cpu_context_x19: int
    rq_curr: int
    rq_idle: int
    pt_regs_size: int
    pt_regs_regs: int
    pt_regs_sp: int
    pt_regs_pc: int
    pt_regs_pstate: int
    pt_regs_stackframe: int
    frame_record_meta_size: int
    frame_record_meta_type: int
    frame_record_fp: int
    frame_record_lr: int
    thread_size: int
    irq_stack_size: int
    overflow_stack_size: int
    kunwind_source: dict[str, int] = field(default_factory=dict)
    #: ``FRAME_META_TYPE_*``: from the type information if a kernel ever makes them an enum,
    #: else the ``#define`` values of ``asm/stacktrace/frame.h``.
    frame_meta_types: dict[str, int] = field(default_factory=lambda: {
        "FRAME_META_TYPE_NONE": FRAME_META_TYPE_NONE,
        "FRAME_META_TYPE_FINAL": FRAME_META_TYPE_FINAL,
        "FRAME_META_TYPE_PT_REGS": FRAME_META_TYPE_PT_REGS})

    @property
    def meta_final(self) -> int:
        return self.frame_meta_types["FRAME_META_TYPE_FINAL"]

    @property
    def meta_pt_regs(self) -> int:
        return self.frame_meta_types["FRAME_META_TYPE_PT_REGS"]

    #: The types :meth:`from_types` reads (a DWARF source preloads them in one pass).
    TYPES = ("struct task_struct", "struct thread_info", "struct cpu_context",
             "struct thread_struct", "struct signal_struct", "struct rq", "struct pt_regs",
             "struct frame_record", "struct frame_record_meta", "enum kunwind_source")

    @classmethod
    def from_types(cls, btf, thread_size: int,
                   symbols: Symbolizer | None = None) -> KernelLayout:
        """From any type source with ``member``/``offsetof``/``size_of``/``enum``/
        ``var_size`` (:class:`~sfunwind.kernel.btf.BTF` or
        :class:`~sfunwind.kernel.dwarf.DwarfTypes`)."""
        t = "struct task_struct"

        def off(type_name: str, path: str) -> int:
            return btf.offsetof(type_name, path)

        def opt(type_name: str, path: str) -> int | None:
            try:
                return btf.offsetof(type_name, path)
            except KeyError:
                return None

        try:
            cpu_member = btf.member(t, "thread_info.cpu")
        except KeyError:
            cpu_member = btf.member(t, "cpu")  # !THREAD_INFO_IN_TASK kernels
        state = btf.member(t, "__state") if opt(t, "__state") is not None else \
            btf.member(t, "state")
        on_cpu = btf.member(t, "on_cpu")
        comm = btf.member(t, "comm")
        try:
            ks = btf.enum("enum kunwind_source")
        except KeyError:
            ks = {}
        meta = {"FRAME_META_TYPE_NONE": FRAME_META_TYPE_NONE,
                "FRAME_META_TYPE_FINAL": FRAME_META_TYPE_FINAL,
                "FRAME_META_TYPE_PT_REGS": FRAME_META_TYPE_PT_REGS}
        enumerator = getattr(btf, "enumerator", None)
        if enumerator is not None:
            for name in meta:
                with contextlib.suppress(KeyError):
                    meta[name] = enumerator(name)
        overflow = btf.var_size("overflow_stack")
        if overflow is None and symbols is not None and "overflow_stack" in symbols:
            info = symbols.lookup(symbols.address_of("overflow_stack"))
            overflow = info.elf_size if info is not None else None
        if not overflow:
            overflow = OVERFLOW_STACK_SIZE_DEFAULT
        return cls(
            task_struct_size=btf.size_of(t), task_stack=off(t, "stack"),
            task_state=state.offset, task_state_size=state.size,
            task_exit_state=opt(t, "exit_state"),
            task_on_cpu=on_cpu.offset, task_on_cpu_size=on_cpu.size,
            task_cpu=cpu_member.offset, task_cpu_size=cpu_member.size,
            task_tasks=off(t, "tasks"), task_pid=off(t, "pid"), task_tgid=off(t, "tgid"),
            task_comm=comm.offset, task_comm_size=comm.size, task_signal=off(t, "signal"),
            task_thread_node=opt(t, "thread_node"), task_flags=opt(t, "flags"),
            task_cpu_context=off(t, "thread.cpu_context"),
            task_ret_stack=opt(t, "ret_stack"), task_curr_ret_stack=opt(t, "curr_ret_stack"),
            task_kretprobe_instances=opt(t, "kretprobe_instances"),
            signal_thread_head=opt("struct signal_struct", "thread_head"),
            cpu_context_fp=off("struct cpu_context", "fp"),
            cpu_context_sp=off("struct cpu_context", "sp"),
            cpu_context_pc=off("struct cpu_context", "pc"),
            cpu_context_x19=off("struct cpu_context", "x19"),
            rq_curr=off("struct rq", "curr"), rq_idle=off("struct rq", "idle"),
            pt_regs_size=btf.size_of("struct pt_regs"), pt_regs_regs=off("struct pt_regs", "regs"),
            pt_regs_sp=off("struct pt_regs", "sp"), pt_regs_pc=off("struct pt_regs", "pc"),
            pt_regs_pstate=off("struct pt_regs", "pstate"),
            pt_regs_stackframe=off("struct pt_regs", "stackframe"),
            frame_record_meta_size=btf.size_of("struct frame_record_meta"),
            frame_record_meta_type=off("struct frame_record_meta", "type"),
            frame_record_fp=off("struct frame_record", "fp"),
            frame_record_lr=off("struct frame_record", "lr"),
            thread_size=thread_size, irq_stack_size=thread_size,
            overflow_stack_size=overflow, kunwind_source=ks, frame_meta_types=meta,
        )

    @property
    def final_record_offset(self) -> int:
        """Where the FINAL meta record of every task sits, from the stack base
        (``THREAD_SIZE - sizeof(pt_regs) + offsetof(pt_regs, stackframe)``)."""
        return self.thread_size - self.pt_regs_size + self.pt_regs_stackframe


class Task:
    """One thread (``struct task_struct``), decoded from a single read of the struct."""

    __slots__ = ("_raw", "address", "comm", "cpu", "exit_state", "flags", "idle_of_cpu",
                 "on_cpu", "pid", "prog", "stack", "state_raw", "tgid")

    def __init__(self, prog: KernelProgram, address: int, raw: bytes) -> None:
        lay = prog.layout
        self.prog = prog
        self.address = address
        self._raw = raw

        def u(off: int, size: int, signed: bool = False) -> int:
            return int.from_bytes(raw[off:off + size], "little", signed=signed)

        self.pid = u(lay.task_pid, 4, True)
        self.tgid = u(lay.task_tgid, 4, True)
        comm = raw[lay.task_comm:lay.task_comm + lay.task_comm_size]
        self.comm = comm.split(b"\0", 1)[0].decode("utf-8", errors="replace")
        self.state_raw = u(lay.task_state, lay.task_state_size)
        self.exit_state = 0 if lay.task_exit_state is None else u(lay.task_exit_state, 4)
        self.cpu = u(lay.task_cpu, lay.task_cpu_size)
        self.on_cpu = u(lay.task_on_cpu, lay.task_on_cpu_size)
        self.stack = u(lay.task_stack, 8)
        self.flags = 0 if lay.task_flags is None else u(lay.task_flags, 4)
        self.idle_of_cpu: int | None = None

    def __repr__(self) -> str:
        return (f"Task(pid={self.pid}, comm={self.comm!r}, state={self.state!r}, "
                f"cpu={self.cpu}, address={self.address:#x})")

    @property
    def state(self) -> str:
        """ps/sysrq letter (``R``, ``S``, ``D``, ``I``, …), like drgn's ``task_state_to_char``."""
        return task_state_char(self.state_raw, self.exit_state)

    @property
    def is_running(self) -> bool:
        """This task is ``rq->curr`` of its CPU (its registers are that CPU's PRSTATUS)."""
        cpus = self.prog._cpu_index()
        cpu = cpus.get(self.cpu)
        return cpu is not None and cpu.curr == self.address

    @property
    def stack_info(self) -> StackInfo:
        return StackInfo("task", self.stack, self.stack + self.prog.layout.thread_size)

    @property
    def cpu_context(self) -> CpuContext:
        lay = self.prog.layout
        base = lay.task_cpu_context
        regs = struct.unpack_from("<10Q", self._raw, base + lay.cpu_context_x19)
        fp, sp, pc = (struct.unpack_from("<Q", self._raw, base + o)[0]
                      for o in (lay.cpu_context_fp, lay.cpu_context_sp, lay.cpu_context_pc))
        return CpuContext(regs, fp, sp, pc)

    @property
    def pt_regs(self) -> int:
        """``task_pt_regs(task)``: address of the ``struct pt_regs`` at the top of the stack."""
        lay = self.prog.layout
        return self.stack + lay.thread_size - lay.pt_regs_size

    @property
    def final_record(self) -> int:
        """Address of the FINAL ``frame_record_meta`` every task stack ends with."""
        return self.pt_regs + self.prog.layout.pt_regs_stackframe

    @property
    def ret_stack(self) -> tuple[int, int] | None:
        """``(task->ret_stack, task->curr_ret_stack)`` for function-graph tracing, or None
        when the kernel lacks CONFIG_FUNCTION_GRAPH_TRACER."""
        lay = self.prog.layout
        if lay.task_ret_stack is None or lay.task_curr_ret_stack is None:
            return None
        ptr = struct.unpack_from("<Q", self._raw, lay.task_ret_stack)[0]
        cur = struct.unpack_from("<i", self._raw, lay.task_curr_ret_stack)[0]
        return ptr, cur

    @property
    def kretprobe_instances(self) -> int | None:
        """``task->kretprobe_instances.first`` (an ``llist_node *``; 0 when empty)."""
        off = self.prog.layout.task_kretprobe_instances
        return None if off is None else struct.unpack_from("<Q", self._raw, off)[0]

    def start_state(self) -> StartState:
        """The registers an unwind of this task starts from (see :class:`StartState`)."""
        cpu = self.prog._cpu_index().get(self.cpu)
        if cpu is not None and cpu.curr == self.address and cpu.prstatus is not None:
            pr = cpu.prstatus
            return StartState("regs" if pr.in_kernel else "user", pr.pc, pr.fp, pr.sp, pr.lr,
                              cpu.index, pr.as_dict())
        ctx = self.cpu_context
        return StartState("task", ctx.pc, ctx.fp, ctx.sp, None, None, ctx.as_dict())

    def stacks(self, *, running_cpu: int | None = None) -> list[StackInfo]:
        """The stacks the unwinder may use for this task, in the kernel's order.

        A blocked task only has its task stack; the task running on a CPU (pass
        ``running_cpu``, or it is derived from ``rq->curr``) may also be on that CPU's IRQ,
        overflow and SDEI stacks, and on the EFI runtime stack while it is inside an EFI
        call (:meth:`KernelProgram.efi_rt_stack`).
        """
        out = [self.stack_info]
        if running_cpu is None and self.is_running:
            running_cpu = self.cpu
        if running_cpu is not None:
            cpu = self.prog._cpu_index().get(running_cpu)
            if cpu is not None:
                out.extend(s for s in cpu.stacks() if s is not None)
            # STACKINFO_EFI: the current task inside an EFI runtime call (current_in_efi())
            efi = self.prog.efi_rt_stack()
            if efi is not None and self.stack_info.contains(efi[1]):
                out.append(efi[0])
        return out

    def as_dict(self) -> dict:
        d = {"pid": self.pid, "tgid": self.tgid, "comm": self.comm, "state": self.state,
             "state_raw": self.state_raw, "exit_state": self.exit_state, "cpu": self.cpu,
             "on_cpu": self.on_cpu, "running": self.is_running, "task": f"{self.address:#x}",
             "stack": f"{self.stack:#x}",
             "stack_high": f"{self.stack + self.prog.layout.thread_size:#x}",
             "stacks": [{"name": s.name, "low": f"{s.low:#x}", "high": f"{s.high:#x}"}
                        for s in self.stacks()]}
        if self.idle_of_cpu is not None:
            d["idle_of_cpu"] = self.idle_of_cpu
        return d


@dataclass
class Cpu:
    """One CPU: its PRSTATUS registers, per-cpu area, runqueue and per-CPU stacks."""

    prog: KernelProgram
    index: int
    per_cpu_offset: int
    prstatus: PrStatus | None
    curr: int  # rq->curr
    idle: int  # rq->idle
    irq_stack: StackInfo | None
    overflow_stack: StackInfo | None
    sdei_normal_stack: StackInfo | None
    sdei_critical_stack: StackInfo | None

    @property
    def curr_task(self) -> Task:
        return self.prog.task(self.curr)

    @property
    def idle_task(self) -> Task:
        return self.prog.task(self.idle)

    def stacks(self) -> list[StackInfo]:
        """IRQ, overflow, SDEI normal, SDEI critical (the order of ``kunwind_stack_walk``)."""
        return [s for s in (self.irq_stack, self.overflow_stack, self.sdei_normal_stack,
                            self.sdei_critical_stack) if s is not None]

    def as_dict(self) -> dict:
        def st(s: StackInfo | None):
            return None if s is None else [f"{s.low:#x}", f"{s.high:#x}"]

        d = {"cpu": self.index, "per_cpu_offset": f"{self.per_cpu_offset:#x}",
             "curr_task": f"{self.curr:#x}", "idle_task": f"{self.idle:#x}",
             "irq_stack": st(self.irq_stack), "overflow_stack": st(self.overflow_stack),
             "sdei_normal_stack": st(self.sdei_normal_stack),
             "sdei_critical_stack": st(self.sdei_critical_stack)}
        try:
            t = self.curr_task
            d.update(curr_pid=t.pid, curr_comm=t.comm)
        except MemoryFault:
            pass
        if self.prstatus is not None:
            d["prstatus"] = {k: f"{v:#x}" for k, v in self.prstatus.as_dict().items()}
        return d


class KernelProgram:
    """A vmcore with its vmlinux.  Open with :meth:`open`; everything else is lazy.

    Attributes: ``core`` (:class:`ElfCore`), ``vmcoreinfo``, ``memory``
    (:class:`KernelAddressSpace`), ``symbols`` (:class:`Symbolizer`), ``types`` (:class:`BTF`
    or :class:`~sfunwind.kernel.dwarf.DwarfTypes`), ``layout`` (:class:`KernelLayout`),
    ``kaslr_offset``, ``pac_mask``, ``build_id``, ``vmlinux_path`` (None without vmlinux).
    """

    def __init__(self, core: ElfCore, symbols: Symbolizer, types, *,
                 vmlinux_build_id: str | None = None, check_build_id: bool = True) -> None:
        self.core = core
        self.vmcoreinfo: VmcoreInfo = core.vmcoreinfo
        self.symbols = symbols
        self.types = types
        self.kaslr_offset = self.vmcoreinfo.kernel_offset
        self.build_id = self.vmcoreinfo.build_id
        self.vmlinux_build_id = vmlinux_build_id
        #: The vmlinux as the user named it (``.xz`` possibly), None when opened without
        #: one (symbols from kallsyms, types from the dump's BTF).
        self.vmlinux_path: str | None = None
        if check_build_id:
            self._check_match()
        translation = Arm64Translation(self.vmcoreinfo)
        image = (symbols.get("_text"), symbols.get("_end"))
        init = (symbols.get("__init_begin"), symbols.get("__init_end"))
        self.memory = KernelAddressSpace(
            core, translation,
            image_range=(image[0], image[1]) if None not in image else None,
            image_holes=[(init[0], init[1])] if None not in init else None)
        self.pac_mask = translation.pac_mask
        try:
            self.layout = KernelLayout.from_types(types, self._thread_size(), symbols)
        except KeyError as exc:
            raise MissingKernelData(f"the type information lacks what the task model needs: "
                                    f"{exc.args[0] if exc.args else exc}",
                                    path=self.symbols.source or None) from None
        self._tasks_cache: dict[int, Task] = {}
        self._cpus: list[Cpu] | None = None
        self._cpu_map: dict[int, Cpu] | None = None
        self._threads: list[Task] | None = None
        #: Inconsistencies found while walking kernel lists (see :meth:`_list`).
        self.warnings: list[str] = []

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, vmcore: str | Path, vmlinux: str | Path | None = None, *,
             check_build_id: bool = True) -> KernelProgram:
        """Open *vmcore* (ELF; ``.xz`` accepted) with *vmlinux* (full or debug-only ELF with
        ``.symtab`` and ``.BTF``; ``.xz`` accepted).  Refuses a vmlinux whose build ID differs
        from the vmcore's (:class:`MismatchError`).

        Without a vmlinux, symbols come from the kallsyms tables and types from the BTF
        inside the dump (``__start_BTF``..``__stop_BTF``), which needs those pages present.
        """
        from sfunwind.kernel.elfsections import SectionMissing, gnu_build_id, section_headers
        from sfunwind.memory.elfcore import open_core
        from sfunwind.memory.files import materialize

        core = open_core(vmcore)
        info = core.vmcoreinfo
        if not info.raw:
            raise VmcoreFormatError("no VMCOREINFO note (QEMU needs -device vmcoreinfo and "
                                    "the guest's qemu_fw_cfg module)", path=str(vmcore))
        if vmlinux is None:
            kaslr = info.kernel_offset
            tr = Arm64Translation(info)
            mem = KernelAddressSpace(core, tr)
            try:
                symbols = Symbolizer.from_kallsyms(mem, info, kaslr_offset=kaslr)
            except MemoryFault as fault:
                raise MemoryFault(fault.address, "the kallsyms tables are not in the dump "
                                  "(pass the vmlinux with -s)", physical=fault.physical) from None
            start, stop = symbols.get("__start_BTF"), symbols.get("__stop_BTF")
            if start is None or stop is None or not 0 < stop - start < 1 << 28:
                raise UsageError("no vmlinux given and no BTF in the dump's kallsyms")
            types = BTF(mem.read(start, stop - start), path=f"{vmcore}:BTF")
            return cls(core, symbols, types, check_build_id=False)
        real = materialize(vmlinux)
        headers = section_headers(real, display=str(vmlinux))
        machine = headers["__machine__"]
        if machine["e_machine"] != "EM_AARCH64":
            raise MismatchError(f"{vmlinux} is {machine['e_machine']}, the vmcore is arm64")
        vm_build_id = gnu_build_id(real, headers, display=str(vmlinux))
        if check_build_id and info.build_id and vm_build_id and vm_build_id != info.build_id:
            raise MismatchError(
                f"{vmlinux} (build ID {vm_build_id}) is not the kernel of {vmcore} "
                f"(VMCOREINFO BUILD-ID {info.build_id}, OSRELEASE {info.osrelease})")
        symbols = Symbolizer.from_vmlinux(real, kaslr_offset=info.kernel_offset,
                                          headers=headers)
        symbols.source = str(vmlinux)
        try:
            types = BTF.from_file(real)
        except SectionMissing:  # a kernel without CONFIG_DEBUG_INFO_BTF: the DWARF
            from sfunwind.kernel.dwarf import DwarfTypes

            types = DwarfTypes(real, display=str(vmlinux))
            types.preload(list(KernelLayout.TYPES))
        prog = cls(core, symbols, types, vmlinux_build_id=vm_build_id,
                   check_build_id=check_build_id)
        prog.vmlinux_path = str(vmlinux)
        return prog

    def _check_match(self) -> None:
        """Second line of defence after the build ID: the runtime addresses VMCOREINFO gives
        must be the vmlinux's plus the KASLR offset."""
        info = self.vmcoreinfo
        for name in ("_stext", "swapper_pg_dir"):
            key = f"SYMBOL({name})"
            if key not in info:
                continue
            want = info.symbol(name)
            have = self.symbols.get(name)
            if have is not None and have != want:
                raise MismatchError(
                    f"vmlinux symbol {name} is at {have:#x} after the KASLR offset "
                    f"{self.kaslr_offset:#x}, the vmcore says {want:#x}: wrong vmlinux "
                    f"({self.symbols.source}) for this vmcore")

    def _thread_size(self) -> int:
        start, end = self.symbols.get("__start_init_stack"), self.symbols.get("__end_init_stack")
        if start is not None and end is not None and 0 < end - start <= 1 << 20:
            return end - start
        raise VmcoreFormatError("cannot determine THREAD_SIZE: no __start_init_stack/"
                                "__end_init_stack symbols")

    def close(self) -> None:
        self.core.close()

    def __enter__(self) -> KernelProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- symbols and per-cpu data ----------------------------------------------------------
    def symbol(self, name: str) -> int:
        """Runtime address of a kernel symbol (:class:`MissingKernelData`, a KeyError, when
        absent)."""
        try:
            return self.symbols.address_of(name)
        except KeyError:
            raise MissingKernelData(f"no symbol {name!r}",
                                    path=self.symbols.source or None) from None

    def read_u64(self, address: int) -> int:
        return self.memory.read_u64(address)

    def strip_pac(self, address: int) -> int:
        """A kernel return address without its PAC (``address | KERNELPACMASK``)."""
        return self.memory.strip_pac(address)

    @cached_property
    def per_cpu_offsets(self) -> list[int]:
        """``__per_cpu_offset[cpu]`` of every CPU in :attr:`cpu_ids`."""
        base = self.symbol("__per_cpu_offset")
        return [self.read_u64(base + 8 * cpu) for cpu in self.cpu_ids]

    def per_cpu(self, name: str, cpu: int) -> int:
        """Address of CPU *cpu*'s copy of per-cpu variable *name*."""
        return (self.symbol(name) + self.read_u64(self.symbol("__per_cpu_offset") + 8 * cpu)) \
            & ((1 << 64) - 1)

    @cached_property
    def cpu_ids(self) -> list[int]:
        """Online CPUs (``__cpu_online_mask``); if that is unreadable, one per PRSTATUS."""
        try:
            nr = self.memory.read_u32(self.symbol("nr_cpu_ids"))
            if not 0 < nr <= MAX_CPUS:
                raise VmcoreFormatError(f"nr_cpu_ids = {nr}")
            mask = self.memory.read(self.symbol("__cpu_online_mask"), (nr + 7) // 8)
            ids = [c for c in range(nr) if mask[c // 8] >> (c % 8) & 1]
            if ids:
                return ids
        except (KeyError, MemoryFault):
            pass
        return list(range(len(self.core.prstatus)))

    # -- tasks -----------------------------------------------------------------------------
    def task(self, address: int) -> Task:
        """The task_struct at *address* (cached)."""
        t = self._tasks_cache.get(address)
        if t is None:
            raw = self.memory.read(address, self.layout.task_struct_size)
            t = Task(self, address, raw)
            self._tasks_cache[address] = t
        return t

    def _list(self, head: int, link_offset: int, what: str, *,
              limit: int = MAX_TASKS) -> Iterator[int]:
        """Entries of a ``list_head`` list (container addresses), bounded and cycle-checked.

        Each step also checks ``next->prev == node`` (what CONFIG_DEBUG_LIST checks); a
        mismatch means a corrupt list or one caught mid-update on another CPU, so it is
        recorded in :attr:`warnings` rather than fatal: the walk may have skipped entries.
        """
        seen = {head}
        prev = head
        node = self.read_u64(head)
        for _ in range(limit):
            back = self.read_u64(node + 8)
            if back != prev:
                self.warnings.append(f"{what} list at {head:#x}: {node:#x}->prev is {back:#x}, "
                                     f"not {prev:#x} (corrupt or mid-update: entries may be "
                                     "missing)")
            if node == head:
                return
            if node in seen:
                raise VmcoreFormatError(f"{what} list at {head:#x} loops at {node:#x}")
            seen.add(node)
            yield node - link_offset
            prev = node
            node = self.read_u64(node)
        raise VmcoreFormatError(f"{what} list at {head:#x} longer than {limit}")

    def threads(self) -> list[Task]:
        """Every thread: each thread group on ``init_task.tasks`` with its threads
        (``signal->thread_head``), then each CPU's idle task (``rq->idle``; ``swapper/0`` is
        ``init_task`` itself, the other idle tasks are on no list).  Computed once."""
        if self._threads is None:
            self._threads = self._walk_threads()
        return list(self._threads)

    def _walk_threads(self) -> list[Task]:
        lay = self.layout
        init = self.symbol("init_task")
        out: list[Task] = []
        seen: set[int] = set()
        for leader_addr in self._list(init + lay.task_tasks, lay.task_tasks, "init_task.tasks"):
            leader = self.task(leader_addr)
            members = [leader_addr]
            if lay.signal_thread_head is not None and lay.task_thread_node is not None:
                signal = struct.unpack_from("<Q", leader._raw, lay.task_signal)[0]
                if signal:
                    members = list(self._list(signal + lay.signal_thread_head,
                                              lay.task_thread_node, "signal->thread_head"))
                    if leader_addr not in members:
                        members.insert(0, leader_addr)
            for addr in members:
                if addr not in seen:
                    seen.add(addr)
                    out.append(self.task(addr))
        for cpu in self.cpus():
            if cpu.idle and cpu.idle not in seen:
                seen.add(cpu.idle)
                t = self.task(cpu.idle)
                out.append(t)
            if cpu.idle:
                self.task(cpu.idle).idle_of_cpu = cpu.index
        return out

    def find_task(self, pid: int) -> Task | None:
        """The thread with *pid* (not an idle task: they all have pid 0), or None."""
        for t in self.threads():
            if t.pid == pid and t.idle_of_cpu is None:
                return t
        return None

    # -- CPUs ------------------------------------------------------------------------------
    def _prstatus_for(self, cpus: list[int], currs: list[int]) -> list[PrStatus | None]:
        """Which ``NT_PRSTATUS`` note holds each online CPU's registers.

        QEMU writes one note per vCPU, in vCPU order, with ``pr_pid`` = index + 1 (offline
        vCPUs included): CPU n is the note with ``pr_pid == n + 1``.  kdump writes one per
        CPU it stopped, with ``pr_pid`` = the pid running there: match it with
        ``rq->curr``'s pid, and fall back to note order when that is ambiguous (pid 0 on
        several idle CPUs).
        """
        notes = self.core.prstatus
        if notes and [p.pr_pid for p in notes] == list(range(1, len(notes) + 1)):
            by_index = {p.pr_pid - 1: p for p in notes}
            return [by_index.get(c) for c in cpus]
        out: list[PrStatus | None] = []
        unused = list(notes)
        for n, curr in enumerate(currs):
            try:
                pid = self.task(curr).pid
            except MemoryFault:
                pid = None
            match = [p for p in unused if p.pr_pid == pid]
            pick = match[0] if len(match) == 1 else (notes[n] if n < len(notes) else None)
            if pick is not None and pick in unused:
                unused.remove(pick)
            out.append(pick)
        return out

    def efi_rt_stack(self) -> tuple[StackInfo, int] | None:
        """The EFI runtime-services stack and the SP saved at its top, or None.

        ``arm64_efi_rt_init()`` allocates one ``THREAD_SIZE`` stack for EFI runtime calls
        (``efi_rt_stack_top``); ``__efi_rt_asm_wrapper`` stores the caller's SP at
        ``efi_rt_stack_top[-1]`` before switching to it.  The kernel's ``current_in_efi()``
        is "that saved SP lies on the current task's stack" (:meth:`Task.stacks`).  None when
        the kernel has no EFI runtime stack, it was never allocated, or the dump lacks those
        words (a trimmed dump): the stack then stays inaccessible, as the kernel treats it
        outside an EFI call — a trace through it is unreliable, never wrongly reliable.
        """
        addr = self.symbols.get("efi_rt_stack_top")
        if addr is None:
            return None
        try:
            top = self.read_u64(addr)
            if not top:
                return None
            saved_sp = self.read_u64((top - 8) & ((1 << 64) - 1))
        except MemoryFault:
            return None
        size = self.layout.thread_size
        return StackInfo("efi", (top - size) & ((1 << 64) - 1), top), saved_sp

    def cpus(self) -> list[Cpu]:
        """Every online CPU with its ``NT_PRSTATUS`` registers (see :meth:`_prstatus_for`),
        runqueue and per-CPU stacks."""
        if self._cpus is None:
            lay = self.layout
            rq_sym = self.symbol("runqueues")
            out = []
            rqs = [(rq_sym + off) & ((1 << 64) - 1) for off in self.per_cpu_offsets]
            currs = [self.read_u64(rq + lay.rq_curr) for rq in rqs]
            notes = self._prstatus_for(self.cpu_ids, currs)
            for cpu, off, rq, curr, prstatus in zip(self.cpu_ids, self.per_cpu_offsets, rqs,
                                                    currs, notes, strict=True):
                idle = self.read_u64(rq + lay.rq_idle)
                out.append(Cpu(self, cpu, off, prstatus, curr, idle,
                               self._percpu_stack("irq_stack_ptr", "irq", cpu, off,
                                                  lay.irq_stack_size),
                               self._percpu_array_stack("overflow_stack", "overflow", cpu, off,
                                                        lay.overflow_stack_size),
                               self._percpu_stack("sdei_stack_normal_ptr", "sdei_normal", cpu,
                                                  off, lay.irq_stack_size),
                               self._percpu_stack("sdei_stack_critical_ptr", "sdei_critical",
                                                  cpu, off, lay.irq_stack_size)))
            self._cpus = out
        return self._cpus

    def _cpu_index(self) -> dict[int, Cpu]:
        if self._cpu_map is None:
            self._cpu_map = {c.index: c for c in self.cpus()}
        return self._cpu_map

    def cpu(self, index: int) -> Cpu:
        """CPU *index* (KeyError if it is not online)."""
        return self._cpu_index()[index]

    def _percpu_stack(self, var: str, name: str, cpu: int, off: int,
                      size: int) -> StackInfo | None:
        """A per-cpu *pointer* to a stack base (irq_stack_ptr, sdei_stack_*_ptr); None when
        the kernel lacks it or it was never allocated (NULL)."""
        addr = self.symbols.get(var)
        if addr is None:
            return None
        base = self.read_u64((addr + off) & ((1 << 64) - 1))
        return StackInfo(name, base, base + size, cpu) if base else None

    def _percpu_array_stack(self, var: str, name: str, cpu: int, off: int,
                            size: int) -> StackInfo | None:
        """A per-cpu *array* used as a stack (overflow_stack)."""
        addr = self.symbols.get(var)
        if addr is None:
            return None
        base = (addr + off) & ((1 << 64) - 1)
        return StackInfo(name, base, base + size, cpu)

    # -- records on stacks ----------------------------------------------------------------
    def pt_regs(self, address: int) -> PtRegs:
        """The ``struct pt_regs`` at *address* (one bounded read; MemoryFault if absent)."""
        lay = self.layout
        raw = self.memory.read(address, lay.pt_regs_size)
        regs = struct.unpack_from("<31Q", raw, lay.pt_regs_regs)
        sp, pc, pstate = (struct.unpack_from("<Q", raw, off)[0]
                          for off in (lay.pt_regs_sp, lay.pt_regs_pc, lay.pt_regs_pstate))
        meta = lay.pt_regs_stackframe
        fp_, lr_ = struct.unpack_from("<QQ", raw, meta + lay.frame_record_fp)
        mtype = struct.unpack_from("<Q", raw, meta + lay.frame_record_meta_type)[0]
        return PtRegs(address, regs, sp, pc, pstate, fp_, lr_, mtype)

    def pt_regs_of_meta(self, meta_address: int) -> PtRegs:
        """``container_of(meta, struct pt_regs, stackframe)``: the pt_regs around a
        PT_REGS meta record found at *meta_address* (an fp value)."""
        return self.pt_regs(meta_address - self.layout.pt_regs_stackframe)

    def frame_record(self, address: int) -> tuple[int, int]:
        """``(fp, lr)`` of the AAPCS64 frame record at *address* (lr may be PAC-signed)."""
        raw = self.memory.read(address, 16)
        return struct.unpack_from("<QQ", raw, 0)

    def frame_record_meta_type(self, address: int) -> int:
        """``type`` of the ``frame_record_meta`` at *address* (meaningful only when its
        record is ``{0, 0}``)."""
        return self.read_u64(address + self.layout.frame_record_meta_type)

    def kretprobe_instances(self, task: Task) -> list[tuple[int, int]]:
        """``(ret_addr, fp)`` of each ``struct kretprobe_instance`` on the task's
        ``kretprobe_instances`` llist, most recent first: the real return address a
        ``__kretprobe_trampoline`` frame stands for, and the frame pointer it belongs to
        (``kretprobe_find_ret_addr()``).  Empty when no kretprobe is active or the kernel
        lacks CONFIG_KRETPROBES."""
        first = task.kretprobe_instances
        if not first:
            return []
        t = self.types
        link = t.offsetof("struct kretprobe_instance", "llist")
        next_off = t.offsetof("struct llist_node", "next")
        ret_off = t.offsetof("struct kretprobe_instance", "ret_addr")
        fp_off = t.offsetof("struct kretprobe_instance", "fp")
        out = []
        seen = set()
        node = first
        for _ in range(MAX_TASKS):
            if not node:
                return out
            if node in seen:
                raise VmcoreFormatError(f"kretprobe_instances of task {task.address:#x} loops "
                                        f"at {node:#x}")
            seen.add(node)
            inst = node - link
            out.append((self.read_u64(inst + ret_off), self.read_u64(inst + fp_off)))
            node = self.read_u64(node + next_off)
        raise VmcoreFormatError(f"kretprobe_instances of task {task.address:#x} too long")

    # -- code addresses the unwinder needs -------------------------------------------------
    @cached_property
    def entry_text_ranges(self) -> list[tuple[str, int, int]]:
        """``(name, start, end)`` of the entry/irqentry/softirqentry text sections."""
        out = []
        for name, lo, hi in (("entry", "__entry_text_start", "__entry_text_end"),
                             ("irqentry", "__irqentry_text_start", "__irqentry_text_end"),
                             ("softirqentry", "__softirqentry_text_start",
                              "__softirqentry_text_end")):
            a, b = self.symbols.get(lo), self.symbols.get(hi)
            if a is not None and b is not None:
                out.append((name, a, b))
        return out

    @cached_property
    def system_state(self) -> int | None:
        """``system_state`` (``enum system_states``: 3 = SYSTEM_RUNNING), or None when the
        dump lacks it."""
        addr = self.symbols.get("system_state")
        if addr is None:
            return None
        try:
            return self.memory.read_u32(addr)
        except MemoryFault:
            return None

    @cached_property
    def init_text_freed(self) -> bool:
        """``system_state >= SYSTEM_FREEING_INITMEM``: ``.init.text`` is gone (the kernel's
        ``kernel_text_address()`` stops accepting it; its pages are unmapped and reused).
        Unknown state counts as freed, the conservative answer for a running system."""
        state = self.system_state
        if state is None:
            return True
        try:
            freeing = self.types.enum("enum system_states")["SYSTEM_FREEING_INITMEM"]
        except KeyError:
            freeing = 2  # include/linux/kernel.h, stable since v4.13
        return state >= freeing

    @cached_property
    def modules(self):
        """The loaded modules (:class:`~sfunwind.kernel.modules.ModuleTable`)."""
        from sfunwind.kernel.modules import ModuleTable

        return ModuleTable(self)

    def lookup_symbol(self, address: int):
        """The symbol containing *address*: vmlinux (kallsyms-exact) or a module's
        (``SymbolInfo.module`` set), or None."""
        if self.symbols.is_kernel_text(address) or not self.modules.modules:
            return self.symbols.lookup(address)
        return self.modules.lookup(address) or self.symbols.lookup(address)

    def format_symbol(self, address: int, *, backtrace: bool = False) -> str:
        """``%pS`` / ``%pB`` text including module symbols: ``name+0x10/0x60 [module]``."""
        info = self.lookup_symbol(address - 1 if backtrace else address)
        if info is None:
            return f"{address:#x}"
        text = f"{info.name}+{address - info.address:#x}/{info.size:#x}"
        return f"{text} [{info.module}]" if info.module else text

    def is_kernel_text(self, address: int) -> bool:
        """The kernel's ``kernel_text_address()``: image ``[_stext, _etext)``, plus
        ``[_sinittext, _einittext)`` while init memory was not yet freed, plus loaded
        modules' text.  (BPF and ftrace trampolines are not modelled: False.)"""
        if not self.symbols.is_kernel_text(address):
            try:
                return self.modules.module_of(address) is not None
            except MemoryFault:
                return False
        if self.init_text_freed:
            lo, hi = self.symbols.get("_sinittext"), self.symbols.get("_einittext")
            if lo is not None and hi is not None and lo <= address < hi:
                return False
        return True

    @property
    def return_to_handler(self) -> int | None:
        """The function-graph return trampoline (CONFIG_FUNCTION_GRAPH_TRACER)."""
        return self.symbols.get("return_to_handler")

    @property
    def kretprobe_trampoline(self) -> int | None:
        return self.symbols.get("__kretprobe_trampoline")

    def describe(self) -> dict:
        """A summary for ``sfunwind kernel info``."""
        info = self.vmcoreinfo
        tr = self.memory.tr
        lay = self.layout
        return {
            "vmcore": self.core.path, "osrelease": info.osrelease, "build_id": self.build_id,
            "vmlinux_build_id": self.vmlinux_build_id,
            "kaslr_offset": f"{self.kaslr_offset:#x}", "page_size": tr.page_size,
            "va_bits": tr.va_bits, "levels": tr.levels, "lpa2": tr.lpa2,
            "kimage_voffset": f"{tr.kimage_voffset:#x}",
            "phys_offset": f"{tr.phys_offset:#x}",
            "swapper_pg_dir": f"{tr.swapper_pg_dir:#x}", "pac_mask": f"{self.pac_mask:#x}",
            "thread_size": lay.thread_size, "irq_stack_size": lay.irq_stack_size,
            "overflow_stack_size": lay.overflow_stack_size, "pt_regs_size": lay.pt_regs_size,
            "pt_regs_stackframe": lay.pt_regs_stackframe,
            "frame_record_meta_size": lay.frame_record_meta_size,
            "segments": len(self.core.segments), "truncated": self.core.truncated,
            "cpus": len(self.cpu_ids), "symbols": len(self.symbols),
            "types": (f"BTF, {self.types.count - 1} types" if isinstance(self.types, BTF)
                      else "DWARF"),
        }
