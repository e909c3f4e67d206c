"""The arm64 kernel unwinder ("kunwind"), as a small explicit state machine.

This mirrors ``arch/arm64/kernel/stacktrace.c`` (Linux 7.2) and the 2026 SFrame
exception-boundary series with its defects fixed (``kernel-unwinder.md`` §9-§16).  The core
depends only on small interfaces, so it runs on a vmcore, a snapshot or synthetic memory:

* :class:`UnwindContext` — what is true for the whole kernel: an
  :class:`~sfunwind.memory.AddressSpace`, a row lookup ``find_row(pc) -> UnwindRow | None``
  (SFrame; ``None`` = no SFrame at all), a symboliser ``symbolize(pc) -> (name, off, size)``,
  ``is_kernel_text(pc)``, the PAC mask (VMCOREINFO ``KERNELPACMASK``), the ``pt_regs``
  layout (:class:`PtRegsLayout`) and the trampolines (``return_to_handler``, the kretprobe
  trampoline).
* :class:`TaskStacks` — what is true for one task: its accessible stacks in the kernel's
  order (task, irq, overflow, sdei normal, sdei critical, efi; an inaccessible stack is simply
  absent or has ``low == 0``), the address of its FINAL record
  (``&task_pt_regs(task)->stackframe``), its fgraph ``ret_stack`` and kretprobe instances.
* A start: :func:`start_from_task` (``thread.cpu_context``: marker ``T``),
  :func:`start_from_regs` (a ``pt_regs``/PRSTATUS register set: the first frame is the
  exact PC, marker ``P``; the next step may use SFrame with those registers), or
  :func:`start_from_caller` (marker ``C``).

``unwind(ctx, task, start, mode) -> Trace`` walks and returns every frame (what
``dump_backtrace`` prints) and the verdict of the *reliable* walk
(``arch_stack_walk_reliable`` as consumed by livepatch) with its reasons:

``Mode.UPSTREAM``
    Linux 7.2 as shipped: at a ``PT_REGS`` meta record report ``pt_regs::pc`` (P) and
    continue from ``regs[29]``; the reliable walk fails at the first (P).
``Mode.SFRAME``
    The series corrected (§16): after (P) look the interrupted PC up; CFA from SP or FP
    (FP >= SP), ``cfa & 0xf`` must be 0; RA retained -> LR reported as (L) with x29 kept; RA
    at CFA+off -> read FP (no consume) then RA (consume through it).  Anything else -> the
    FP step is taken for display and the trace is unreliable.  Walk errors always make it
    unreliable.
``Mode.SFRAME_V6``
    The v6 series exactly as posted (``cfa & 0x15``; walk errors ignored by the verdict):
    kept to show its defects.
``Mode.FP_ONLY``
    A naive frame-pointer walk that knows nothing of meta records: it stops at the first
    zero record; reliable only if that is the task's FINAL record (so never across an
    exception).
``Mode.FP_CHAIN``
    The naive walker of arm64 before frame-record metadata, whose ``pt_regs`` record held
    ``{x29, ELR}``: report ``pt_regs::pc`` and continue from ``regs[29]`` exactly like
    ``UPSTREAM``, but trust the result (no exception-boundary veto).  A baseline that shows
    what the veto and the SFrame step are for: wherever the return address is still in LR
    (prologues, epilogues, leaf functions, tail-call windows) it is reliable and wrong.

Reliability (``Documentation/livepatch/reliable-stacktrace.rst``) on top of the kernel's
rules, in every mode but ``sframe-v6``: every reported PC must be kernel text (and, when a
return-site table is given, every return address must follow a call instruction, and a
direct call to a function that can only return must be a call to the frame below:
:mod:`sfunwind.unwind.returnsites`); in ``sframe`` mode every frame must also sit where its
function's CFI at the call says (a frame record saved, the caller's record at or above the
callee's CFA — exactly at callee CFA + frame size for an SP-based CFA row); the walk must
end at the task's FINAL record; livepatch's buffer holds ``max_entries`` (100) addresses and
its consumer stops the walk when the buffer becomes full, which arm64 turns into -EINVAL, so
a trace of ``max_entries`` or more entries is unreliable; ``return_to_handler`` and the
kretprobe trampoline must be recovered; a PC *inside* ``return_to_handler`` (its transient
window, §19) is unreliable.

Every loop is bounded: each step consumes stack (objects strictly above what was consumed,
a stack once left is never re-entered), and there is a hard cap of :data:`MAX_FRAMES`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sfunwind.errors import MemoryFault, UsageError
from sfunwind.memory.base import AddressSpace
from sfunwind.rules import CfaKind, RuleKind, UnwindRow
from sfunwind.unwind.trace import Event, EventKind, Frame, Mode, Reason, Source, Trace

#: livepatch's ``MAX_STACK_ENTRIES``: the size of the buffer a reliable walk fills.
MAX_STACK_ENTRIES = 100
#: Hard cap on reported frames of one walk (the consume rules already bound it; this is
#: the belt to those braces).
MAX_FRAMES = 4096
#: ``FRAME_META_TYPE_*`` (``asm/stacktrace/frame.h``).
FRAME_META_TYPE_NONE = 0
FRAME_META_TYPE_FINAL = 1
FRAME_META_TYPE_PT_REGS = 2
#: ``sizeof(struct frame_record)`` and ``sizeof(struct frame_record_meta)``.
FRAME_RECORD_SIZE = 16
FRAME_RECORD_META_SIZE = 24

_MASK64 = (1 << 64) - 1
_PAGE = 4096


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StackInfo:
    """``struct stack_info`` with a name: ``[low, high)``; ``low == 0`` means unknown."""

    name: str
    low: int
    high: int

    def on_stack(self, sp: int, size: int) -> bool:
        """``stackinfo_on_stack``: known, no wrap, ``[sp, sp+size)`` inside ``[low, high)``."""
        # invariant: an unknown stack (low == 0) never matches
        if not self.low:
            return False
        end = sp + size
        return sp >= self.low and end >= sp and end <= self.high and end <= _MASK64 + 1


@dataclass(frozen=True, slots=True)
class PtRegsLayout:
    """``struct pt_regs`` offsets (320 bytes on Debian 7.2.13, 336 upstream with lockdep)."""

    size: int = 320
    regs: int = 0  # regs[0]; regs[n] at regs + 8 * n
    sp: int = 248
    pc: int = 256
    pstate: int = 264
    stackframe: int = 296  # struct frame_record_meta; its type at stackframe + 16

    def reg(self, n: int) -> int:
        return self.regs + 8 * n


@dataclass(frozen=True, slots=True)
class FgraphEntry:
    """One ``struct ftrace_ret_stack``: the original return address and its key ``retp``
    (the frame pointer the unwinder passes to ``ftrace_graph_ret_addr``)."""

    ret: int
    retp: int


@dataclass(frozen=True, slots=True)
class KretprobeInstance:
    """One ``struct kretprobe_instance`` on ``task->kretprobe_instances``."""

    ret_addr: int
    fp: int


@dataclass(frozen=True, slots=True)
class TaskStacks:
    """The task being unwound.

    ``stacks`` are the accessible stacks in the kernel's order (for a task that is not
    running on a CPU only the task stack is accessible).  ``final_record`` is
    ``&task_pt_regs(task)->stackframe`` (task stack top - sizeof(pt_regs) + offsetof
    stackframe).  ``ret_stack`` is newest first; ``kretprobe_instances`` in list order.
    ``has_ret_stack``: ``task->ret_stack != NULL`` (fgraph recovery is only tried then).
    """

    stacks: tuple[StackInfo, ...]
    final_record: int
    ret_stack: tuple[FgraphEntry, ...] = ()
    has_ret_stack: bool = False
    kretprobe_instances: tuple[KretprobeInstance, ...] = ()
    is_current: bool = False

    @staticmethod
    def for_task_stack(low: int, high: int, pt_regs: PtRegsLayout | None = None,
                       extra: Sequence[StackInfo] = (), **kw: object) -> TaskStacks:
        """A task whose stack is ``[low, high)`` with its FINAL record where the kernel puts
        it (``task_pt_regs`` at the top of the stack)."""
        layout = pt_regs or PtRegsLayout()
        stacks = (StackInfo("task", low, high), *extra)
        return TaskStacks(stacks, high - layout.size + layout.stackframe, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Regs:
    """Registers of an exception/PRSTATUS start: ``pc``, ``sp``, ``x29``, ``x30``.

    ``address`` is the ``pt_regs`` address when the registers live in memory (for display);
    ``None`` for PRSTATUS registers of a vCPU.
    """

    pc: int
    sp: int
    fp: int
    lr: int
    address: int | None = None


class StartKind(enum.Enum):
    TASK = "task"
    REGS = "regs"
    CALLER = "caller"


@dataclass(frozen=True, slots=True)
class Start:
    kind: StartKind
    pc: int
    fp: int
    regs: Regs | None = None
    sp: int | None = None  # the SP at the call the first frame is suspended in, if known


def start_from_task(cpu_context_pc: int, cpu_context_fp: int,
                    cpu_context_sp: int | None = None) -> Start:
    """``kunwind_init_from_task``: a task blocked in ``cpu_switch_to``.  The saved SP (the
    SP of ``__switch_to`` at its call to ``cpu_switch_to``) lets the ``sframe`` verdict
    check where ``__switch_to``'s frame record is; the walk itself never uses it."""
    return Start(StartKind.TASK, cpu_context_pc & _MASK64, cpu_context_fp & _MASK64,
                 sp=None if cpu_context_sp is None else cpu_context_sp & _MASK64)


def start_from_regs(regs: Regs) -> Start:
    """``kunwind_init_from_regs``: the first frame is ``regs->pc`` (P), fp = ``regs[29]``."""
    return Start(StartKind.REGS, regs.pc & _MASK64, regs.fp & _MASK64, regs)


def start_from_caller(pc: int, fp: int) -> Start:
    """``kunwind_init_from_caller``: a return address and the caller's frame record."""
    return Start(StartKind.CALLER, pc & _MASK64, fp & _MASK64)


RowLookup = Callable[[int], UnwindRow | None]
Symbolizer = Callable[[int], "tuple[str, int, int | None] | None"]


@dataclass(slots=True)
class UnwindContext:
    """Everything about the kernel image and memory the unwinder needs (see module doc).

    ``return_to_handler`` / ``kretprobe_trampoline`` are ``(address, size)`` or ``None``
    (not configured).  Reads are cached by page: a vmcore does not change under us.
    """

    memory: AddressSpace
    find_row: RowLookup | None = None
    symbolize: Symbolizer | None = None
    is_kernel_text: Callable[[int], bool] | None = None
    pac_mask: int = 0
    pt_regs: PtRegsLayout = field(default_factory=PtRegsLayout)
    return_to_handler: tuple[int, int] | None = None
    kretprobe_trampoline: tuple[int, int] | None = None
    #: ``is_return_site(pc)``: does pc follow a call?  None = not known (not checked)
    is_return_site: Callable[[int], bool | None] | None = None
    #: ``closed_call_target(return address)``: the target of the direct call before it when
    #: that function can only return (:mod:`sfunwind.unwind.returnsites`), else None
    closed_call_target: Callable[[int], int | None] | None = None
    check_frame_shape: bool = True
    cache_pages: bool = True
    _pages: dict[int, bytes | MemoryFault] = field(default_factory=dict, repr=False)

    def read_u64(self, address: int) -> int:
        """One little-endian u64; :class:`MemoryFault` when the dump lacks it."""
        if not self.cache_pages or address & 7:
            return self.memory.read_u64(address)
        page = address & ~(_PAGE - 1)
        data = self._pages.get(page)
        if data is None:
            try:
                data = self.memory.read(page, _PAGE)
            except MemoryFault as exc:
                # a partly present page (snapshots): fall back to exact reads
                data = exc
            self._pages[page] = data
        if isinstance(data, MemoryFault):
            return self.memory.read_u64(address)
        off = address - page
        return int.from_bytes(data[off:off + 8], "little")

    def strip_pac(self, pc: int) -> int:
        """``ptrauth_strip_kernel_insn_pac``: OR the kernel PAC mask into the pointer."""
        return (pc | self.pac_mask) & _MASK64


# --------------------------------------------------------------------------------------
# The state machine
# --------------------------------------------------------------------------------------

class UnwindError(Exception):
    """A step failed (-EINVAL in the kernel).  Internal: becomes a :class:`Reason`."""

    def __init__(self, code: str, message: str, address: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.address = address


class _Final(Exception):
    pass


@dataclass(slots=True)
class _State:
    """``struct kunwind_state`` (+ the common ``unwind_state``)."""

    fp: int
    pc: int
    source: Source
    stack: StackInfo  # the stack being unwound; starts unknown
    stacks: list[StackInfo]  # accessible stacks; an entry is blanked once consumed
    regs: Regs | None = None
    regs_stack: str | None = None  # the stack the pt_regs lie on (for display)
    raw_pc: int = 0  # pc as found, before PAC stripping and return-address recovery
    fgraph: bool = False
    kretprobe: bool = False
    graph_idx: int = 0
    kr_cur: int = 0
    found_on: str | None = None  # the stack of the object that produced pc
    unreliable: list[UnwindError] = field(default_factory=list)  # set by a fallback step
    # the CFA of the function whose frame record fp points at, from its CFI at the call it
    # is suspended in; its caller's record must lie at or above that CFA
    frame_cfa: int | None = None
    # the CFA of the frame below (the callee of the frame being noted): the SP at the call
    # in the caller, so a caller with an SP-based CFA row has its record at an exact place
    callee_cfa: int | None = None


_UNKNOWN = StackInfo("unknown", 0, 0)
#: Sources whose pc is a return address (the CPU put it in x30 with a BL/BLR); (P) is an
#: exact interrupted pc and (T) comes from the task_struct, not from the stack.
_RETURN_ADDRESS_SOURCES = (Source.FRAME, Source.REGS_LR, Source.CALLER)


class _Walker:
    """One walk: the kernel's functions, named for what each consumes."""

    def __init__(self, ctx: UnwindContext, task: TaskStacks, mode: Mode) -> None:
        self.ctx = ctx
        self.task = task
        self.mode = mode
        self.events: list[Event] = []
        # the CFI frame-shape check strengthens the sframe verdict (see note_frame_cfa)
        self.check_shape = mode is Mode.SFRAME and ctx.check_frame_shape

    # -- stacks (common.h) -------------------------------------------------------------

    def find_stack(self, st: _State, sp: int, size: int) -> int | None:
        """``unwind_find_stack``: the current stack first, then the array; index or -1."""
        if st.stack.on_stack(sp, size):
            return -1
        for i, info in enumerate(st.stacks):
            if info.on_stack(sp, size):
                return i
        return None

    def consume_stack(self, st: _State, which: int, sp: int, size: int) -> None:
        """``unwind_consume_stack``: later objects must lie at or above ``sp + size``; a
        stack left behind is blanked so it can never be found again."""
        if which >= 0:
            info = st.stacks[which]
            st.stacks[which] = _UNKNOWN
            if st.stack.low and st.stack.name != info.name:
                self.events.append(Event(EventKind.STACK_SWITCH, -1,
                                         f"{st.stack.name} -> {info.name}", sp))
            st.stack = info
        # invariant: the consumed region only ever grows upwards
        st.stack = StackInfo(st.stack.name, sp + size, st.stack.high)

    def stack_name(self, st: _State, which: int) -> str:
        return st.stack.name if which < 0 else st.stacks[which].name

    # -- reads -------------------------------------------------------------------------

    def read(self, address: int) -> int:
        try:
            return self.ctx.read_u64(address)
        except MemoryFault as exc:
            raise UnwindError("memory-fault", str(exc), address) from None

    # -- kunwind_next_frame_record and friends -----------------------------------------

    def next_frame_record(self, st: _State) -> None:
        """Consume one 16-byte frame record at fp (or dispatch to its metadata)."""
        fp = st.fp
        # invariant: records are 8-byte aligned (the kernel checks 8, not 16)
        if fp & 0x7:
            raise UnwindError("fp-misaligned", f"frame pointer {fp:#x} is not 8-byte aligned", fp)
        which = self.find_stack(st, fp, FRAME_RECORD_SIZE)
        if which is None:
            raise UnwindError("record-off-stack",
                              f"frame record {fp:#x} is not on an accessible stack above "
                              f"what was already unwound", fp)
        new_fp = self.read(fp)
        new_pc = self.read(fp + 8)
        name = self.stack_name(st, which)
        st.callee_cfa = st.frame_cfa
        if st.frame_cfa is not None:
            self.check_caller_record(st, name, fp, new_fp, new_pc)
        if not new_fp and not new_pc:
            # nothing consumed yet: a meta record is 24 bytes
            return self.next_frame_record_meta(st)
        self.consume_stack(st, which, fp, FRAME_RECORD_SIZE)
        st.fp, st.pc, st.source, st.found_on = new_fp, new_pc, Source.FRAME, name
        return None

    # -- frame-shape verification (sframe mode; verdict only, the walk is unchanged) -----

    def note_frame_cfa(self, st: _State) -> None:
        """pc is a return address into function C and fp is C's frame record: C's CFI row at
        the call instruction (pc - 4) says where C's CFA is relative to that record."""
        st.frame_cfa = None
        find_row = self.ctx.find_row
        if find_row is None or not self.check_shape or st.source is Source.REGS_PC:
            st.callee_cfa = None
            return
        row = find_row(st.pc - 4)
        if row is None:
            st.callee_cfa = None
            return  # no CFI for C (entry asm): nothing to verify
        fp_rule, ra_rule = row.fp, row.ra
        # invariant: a function suspended in a call has saved {x29, x30} as a frame record
        if (row.outermost or fp_rule.kind is not RuleKind.CFA_OFFSET_DEREF
                or ra_rule.kind is not RuleKind.CFA_OFFSET_DEREF
                or ra_rule.offset != fp_rule.offset + 8):
            st.unreliable.append(UnwindError(
                "frame-shape", f"return address {st.pc:#x}: the CFI at the call ({row.describe()}) "
                "has no saved frame record", st.pc))
            st.callee_cfa = None
            return
        callee_cfa, st.callee_cfa = st.callee_cfa, None
        if callee_cfa is not None and self.same_stack(callee_cfa - 1, st.fp):
            # SP at the call = the callee's CFA; an SP-based CFA pins the record exactly
            if row.cfa.kind is CfaKind.SP_OFFSET:
                expected = (callee_cfa + row.cfa.offset + fp_rule.offset) & _MASK64
                if st.fp != expected:
                    st.unreliable.append(UnwindError(
                        "frame-shape", f"frame record of the caller at {st.fp:#x}, but its CFI "
                        f"({row.describe()}) above the callee's CFA {callee_cfa:#x} puts it at "
                        f"{expected:#x}", st.fp))
            elif st.fp < callee_cfa:
                st.unreliable.append(UnwindError(
                    "frame-shape", f"frame record of the caller at {st.fp:#x}, below the "
                    f"callee's CFA {callee_cfa:#x}", st.fp))
        st.frame_cfa = (st.fp - fp_rule.offset) & _MASK64

    def same_stack(self, a: int, b: int) -> bool:
        """Both addresses on one of the task's stacks (its original bounds)."""
        return any(s.low and s.low <= a < s.high and s.low <= b < s.high
                   for s in self.task.stacks)

    def check_caller_record(self, st: _State, name: str, fp: int, new_fp: int,
                            new_pc: int) -> None:
        """The record at fp belongs to the function noted by :meth:`note_frame_cfa`."""
        cfa = st.frame_cfa or 0
        st.frame_cfa = None
        info = st.stack if st.stack.on_stack(fp, FRAME_RECORD_SIZE) else None
        high = info.high if info is not None else max(
            (s.high for s in st.stacks if s.on_stack(fp, FRAME_RECORD_SIZE)), default=0)
        if not new_fp and not new_pc:
            problem = "is a metadata record, which only entry code points at"
        elif cfa > high:
            problem = f"gives a CFA {cfa:#x} beyond the end of its stack ({high:#x})"
        elif new_fp and fp < new_fp < cfa:
            problem = f"links to {new_fp:#x}, below that function's CFA {cfa:#x}"
        else:
            return
        st.unreliable.append(UnwindError(
            "frame-shape", f"frame record {fp:#x} {problem}", fp))

    def next_frame_record_meta(self, st: _State) -> None:
        """A zero record: FINAL ends the walk (only at the task's own), PT_REGS enters."""
        fp = st.fp
        which = self.find_stack(st, fp, FRAME_RECORD_META_SIZE)
        if which is None:
            raise UnwindError("meta-off-stack", f"metadata record {fp:#x} is not on an "
                              "accessible stack", fp)
        if self.mode is Mode.FP_ONLY:
            # the naive walker knows no metadata: a zero record just ends the chain
            if fp == self.task.final_record:
                raise _Final
            raise UnwindError("chain-ended", f"the frame-pointer chain ended at {fp:#x}, "
                              "not at the task's FINAL record (exception boundary?)", fp)
        meta_type = self.read(fp + 16)
        if meta_type == FRAME_META_TYPE_FINAL:
            if fp == self.task.final_record:
                raise _Final
            raise UnwindError("final-misplaced", f"FINAL record at {fp:#x}, expected "
                              f"{self.task.final_record:#x} (task_pt_regs)", fp)
        if meta_type == FRAME_META_TYPE_PT_REGS:
            return self.next_regs_pc(st)
        raise UnwindError("meta-type", f"metadata record {fp:#x} has unknown type "
                          f"{meta_type:#x}", fp)

    def next_regs_pc(self, st: _State) -> None:
        """Consume the whole ``pt_regs`` containing the record; report ``pt_regs::pc`` (P)."""
        layout = self.ctx.pt_regs
        regs_addr = st.fp - layout.stackframe
        which = self.find_stack(st, regs_addr, layout.size)
        if which is None:
            raise UnwindError("pt-regs-off-stack", f"pt_regs {regs_addr:#x} does not lie "
                              "on one accessible stack", regs_addr)
        name = self.stack_name(st, which)
        self.consume_stack(st, which, regs_addr, layout.size)
        regs = Regs(pc=self.read(regs_addr + layout.pc), sp=self.read(regs_addr + layout.sp),
                    fp=self.read(regs_addr + layout.reg(29)),
                    lr=self.read(regs_addr + layout.reg(30)), address=regs_addr)
        self.events.append(Event(EventKind.EXCEPTION_BOUNDARY, -1,
                                 f"pt_regs at {regs_addr:#x} on the {name} stack", regs_addr))
        st.regs, st.regs_stack = regs, name
        st.pc, st.fp, st.source, st.found_on = regs.pc, regs.fp, Source.REGS_PC, name

    # -- the SFrame exception-boundary step (§15 with the §16 fixes) ---------------------

    def get_word(self, st: _State, address: int) -> tuple[int, int]:
        """Bounds-check one word against the accessible stacks and read it (no consume)."""
        which = self.find_stack(st, address, 8)
        if which is None:
            raise UnwindError("sframe-slot-off-stack", f"saved register slot {address:#x} "
                              "is not on an accessible stack above what was unwound", address)
        return self.read(address), which

    def next_regs_sframe(self, st: _State) -> None:
        """After (P): the CFI row of the interrupted PC says where the caller's RA and FP are.

        Failing anywhere leaves the stacks untouched (the consume is the last thing done).
        """
        regs = st.regs
        if st.source is not Source.REGS_PC or regs is None:
            raise UnwindError("sframe-no-regs", "SFrame step without pt_regs")
        if st.fp & 0x7:
            raise UnwindError("sframe-fp-misaligned", f"x29 {st.fp:#x} is not 8-byte aligned",
                              st.fp)
        if self.ctx.find_row is None:
            raise UnwindError("sframe-none", "no SFrame data for the kernel", st.pc)
        row = self.ctx.find_row(st.pc)
        if row is None:
            raise UnwindError("sframe-no-row", f"no SFrame row covers the interrupted pc "
                              f"{st.pc:#x} (unannotated code)", st.pc)
        # invariant: a kernel walk ends at FINAL, never at an outermost row
        if row.outermost:
            raise UnwindError("sframe-outermost", f"outermost (RA undefined) row at {st.pc:#x}",
                              st.pc)
        if row.cfa.kind is CfaKind.SP_OFFSET:
            base = regs.sp
        elif row.cfa.kind is CfaKind.FP_OFFSET:
            # invariant: the frame pointer never lies below the stack pointer
            if st.fp < regs.sp:
                raise UnwindError("sframe-fp-below-sp", f"FP-based CFA with x29 {st.fp:#x} "
                                  f"below sp {regs.sp:#x}", st.fp)
            base = st.fp
        else:
            raise UnwindError("sframe-cfa-rule", f"CFA rule {row.cfa} is not SP/FP based", st.pc)
        cfa = (base + row.cfa.offset) & _MASK64
        # invariant: AAPCS64 keeps the CFA 16-byte aligned (v6 as posted tested & 0x15)
        align_mask = 0x15 if self.mode is Mode.SFRAME_V6 else 0xF
        if cfa & align_mask:
            raise UnwindError("sframe-cfa-misaligned", f"CFA {cfa:#x} is not 16-byte aligned",
                              cfa)
        if row.ra.kind is RuleKind.RETAIN:
            ra_addr = None
            source = Source.REGS_LR
        elif row.ra.kind is RuleKind.CFA_OFFSET_DEREF:
            ra_addr = (cfa + row.ra.offset) & _MASK64
            source = Source.FRAME
        else:
            raise UnwindError("sframe-ra-rule", f"RA rule {row.ra} cannot be a return address",
                              st.pc)
        if row.fp.kind is RuleKind.RETAIN:
            fp_addr = None
        elif row.fp.kind is RuleKind.CFA_OFFSET_DEREF:
            fp_addr = (cfa + row.fp.offset) & _MASK64
        else:
            raise UnwindError("sframe-fp-rule", f"FP rule {row.fp} is not supported", st.pc)
        # FP lies below RA in a frame record: read FP first without consuming, then RA
        # and consume through it (a failure leaves the stack unconsumed for the fallback)
        new_fp = st.fp
        found_on = st.regs_stack
        if fp_addr is not None:
            new_fp, _ = self.get_word(st, fp_addr)
        if ra_addr is not None:
            ra, which = self.get_word(st, ra_addr)
            found_on = self.stack_name(st, which)
            self.consume_stack(st, which, ra_addr, 8)
        else:
            ra = regs.lr
        st.pc, st.fp, st.source, st.found_on = ra, new_fp, source, found_on
        # the interrupted function's CFA, when the step relied on it: with RA and FP both
        # still in registers the CFA locates nothing (and v6's call_on_irq_stack CFI keeps
        # "CFA = SP+0" one instruction past its stp, harmlessly), so it pins nothing either
        st.callee_cfa = cfa if ra_addr is not None or fp_addr is not None else None

    # -- return-address recovery ---------------------------------------------------------

    def recover_return_address(self, st: _State) -> None:
        """``kunwind_recover_return_address``: undo fgraph / kretprobe rewriting."""
        rth = self.ctx.return_to_handler
        if rth is not None and self.task.has_ret_stack and st.pc == rth[0]:
            orig = self.ftrace_graph_ret_addr(st)
            if orig == st.pc:
                raise UnwindError("fgraph-unrecoverable", "return_to_handler with no "
                                  f"ret_stack entry for fp {st.fp:#x}", st.pc)
            st.pc, st.fgraph = orig, True
        krt = self.ctx.kretprobe_trampoline
        if krt is not None and st.pc == krt[0]:
            orig = self.kretprobe_find_ret_addr(st)
            if not orig:
                raise UnwindError("kretprobe-unrecoverable", "kretprobe trampoline with no "
                                  f"instance for fp {st.fp:#x}", st.pc)
            st.pc, st.kretprobe = orig, True

    def ftrace_graph_ret_addr(self, st: _State) -> int:
        """Search the ret_stack from ``graph_idx`` for the entry keyed by this fp; entries
        that themselves hold ``return_to_handler`` (tail calls) are skipped."""
        rth = self.ctx.return_to_handler[0] if self.ctx.return_to_handler else None
        entries = self.task.ret_stack
        for i in range(st.graph_idx, len(entries)):
            entry = entries[i]
            if entry.retp == st.fp and entry.ret != rth:
                st.graph_idx = i + 1
                return entry.ret
        return st.pc

    def kretprobe_find_ret_addr(self, st: _State) -> int:
        krt = self.ctx.kretprobe_trampoline[0] if self.ctx.kretprobe_trampoline else None
        entries = self.task.kretprobe_instances
        for i in range(st.kr_cur, len(entries)):
            inst = entries[i]
            if inst.ret_addr != krt and inst.fp == st.fp:
                st.kr_cur = i + 1
                return inst.ret_addr
        return 0

    # -- kunwind_next ------------------------------------------------------------------

    def next(self, st: _State) -> None:
        """One step: dispatch on where the current pc came from."""
        st.fgraph = st.kretprobe = False
        source = st.source
        if source is Source.REGS_PC and self.mode in (Mode.SFRAME, Mode.SFRAME_V6):
            try:
                self.next_regs_sframe(st)
            except UnwindError as exc:
                # fall back to the frame record for display; the trace is unreliable
                st.unreliable.append(exc)
                st.regs = None
                self.next_frame_record(st)
            st.regs = None
        elif source in (Source.FRAME, Source.CALLER, Source.TASK, Source.REGS_PC,
                        Source.REGS_LR):
            st.regs = None
            self.next_frame_record(st)
        else:
            raise UnwindError("bad-source", f"cannot unwind from source {source.name}")
        st.raw_pc = st.pc
        st.pc = self.ctx.strip_pac(st.pc)
        self.recover_return_address(st)
        self.note_frame_cfa(st)


# --------------------------------------------------------------------------------------
# The walk and its verdict
# --------------------------------------------------------------------------------------

def unwind(ctx: UnwindContext, task: TaskStacks, start: Start, mode: Mode = Mode.SFRAME, *,
           max_entries: int = MAX_STACK_ENTRIES) -> Trace:
    """Walk *task* from *start* in *mode*; every frame plus the reliable verdict."""
    if not isinstance(mode, Mode):
        raise UsageError(f"unknown unwind mode {mode!r}")
    if max_entries < 1:
        raise UsageError("max_entries must be at least 1")
    walker = _Walker(ctx, task, mode)
    st = _State(fp=start.fp, pc=start.pc, source=Source.UNKNOWN, stack=_UNKNOWN,
                stacks=list(task.stacks), raw_pc=start.pc)
    if start.kind is StartKind.TASK:
        st.source = Source.TASK
        st.callee_cfa = start.sp  # cpu_switch_to's CFA: __switch_to's SP at the call
    elif start.kind is StartKind.CALLER:
        st.source = Source.CALLER
    else:
        if start.regs is None:
            raise UsageError("a register start needs registers")
        st.source, st.regs = Source.REGS_PC, start.regs
    frames: list[Frame] = []
    reasons: list[Reason] = []
    ended_final = False
    walk_error: UnwindError | None = None
    seen_events = 0
    try:
        walker.recover_return_address(st)
        walker.note_frame_cfa(st)
        while True:
            frame = Frame(pc=st.pc, source=st.source, raw_pc=st.raw_pc, fp=st.fp,
                          stack=st.found_on, fgraph=st.fgraph, kretprobe=st.kretprobe)
            for event in walker.events[seen_events:]:
                event.index = len(frames)
            seen_events = len(walker.events)
            frames.append(frame)
            for exc in st.unreliable:
                reasons.append(Reason(exc.code, exc.message, len(frames) - 1, exc.address))
            st.unreliable.clear()
            if len(frames) >= MAX_FRAMES:
                raise UnwindError("too-many-frames", f"stopped after {MAX_FRAMES} frames")
            walker.next(st)
    except _Final:
        ended_final = True
        walker.events.append(Event(EventKind.FINAL, len(frames), "FINAL record",
                                   task.final_record))
    except UnwindError as exc:
        walk_error = exc
        walker.events.append(Event(EventKind.ERROR, len(frames), exc.message, exc.address))
    for event in walker.events[seen_events:]:
        if event.index < 0:
            event.index = len(frames)
    if mode is not Mode.SFRAME_V6:
        # findings of the last step (it ended the walk before another frame was consumed)
        for exc in st.unreliable:
            reasons.append(Reason(exc.code, exc.message, len(frames) - 1, exc.address))
    _symbolize(ctx, frames)

    # -- the verdict --------------------------------------------------------------------
    if walk_error is not None:
        reasons.append(Reason(walk_error.code, walk_error.message, len(frames),
                              walk_error.address))
    if mode is Mode.SFRAME_V6:
        # as posted: only the fallback flag counts; walk errors and a full buffer do not
        reasons = [r for r in reasons if r.code.startswith("sframe-")]
        reliable = not reasons
        return _trace(frames, mode, reliable, reasons, walker.events, start)
    if mode is Mode.UPSTREAM:
        for i, f in enumerate(frames):
            if f.source is Source.REGS_PC:
                reasons.insert(0, Reason("exception-boundary", "the walk crosses an exception "
                                         "boundary (pt_regs): Linux 7.2 cannot tell whether LR "
                                         "was live", i, f.pc))
                break
    if walk_error is None and not ended_final:
        reasons.append(Reason("not-final", "the walk did not end at the task's FINAL record",
                              len(frames)))
    if len(frames) >= max_entries:
        reasons.append(Reason("too-many-entries", f"{len(frames)} entries: livepatch's buffer "
                              f"of {max_entries} fills and its consumer stops the walk",
                              max_entries - 1))
    text = ctx.is_kernel_text
    rth = ctx.return_to_handler
    return_site = ctx.is_return_site
    call_target = ctx.closed_call_target
    for i, f in enumerate(frames):
        if text is not None and not text(f.pc):
            reasons.append(Reason("pc-not-text", f"pc {f.pc:#x} is not kernel text", i, f.pc))
        elif (return_site is not None and f.source in _RETURN_ADDRESS_SOURCES
              and return_site(f.pc) is False):
            reasons.append(Reason("not-return-site", f"return address {f.pc:#x} does not "
                                  "follow a call instruction", i, f.pc))
        if (call_target is not None and i and f.source in _RETURN_ADDRESS_SOURCES
                and frames[i - 1].offset is not None):
            target = call_target(f.pc)
            callee = frames[i - 1]
            callee_start = callee.pc - (callee.offset or 0)
            if target is not None and target != callee_start:
                sym = ctx.symbolize(target) if ctx.symbolize is not None else None
                name = next(iter(sym)) if sym is not None else f"{target:#x}"
                reasons.append(Reason(
                    "call-target", f"return address {f.pc:#x} follows a call to {name}, which "
                    f"can only return, but the frame before it is {callee.format_symbol()}: "
                    "frames are missing (or the return address is corrupt)", i, f.pc))
        if rth is not None and rth[0] < f.pc < rth[0] + rth[1]:
            reasons.append(Reason("fgraph-transient", f"pc {f.pc:#x} is inside "
                                  "return_to_handler (its return address is in flight)", i, f.pc))
    return _trace(frames, mode, not reasons, reasons, walker.events, start)


def _symbolize(ctx: UnwindContext, frames: list[Frame]) -> None:
    if ctx.symbolize is None:
        return
    for f in frames:
        sym = ctx.symbolize(f.pc)
        if sym is not None:
            f.symbol, f.offset, f.size = sym


def _trace(frames: list[Frame], mode: Mode, reliable: bool, reasons: list[Reason],
           events: list[Event], start: Start) -> Trace:
    return Trace(frames=frames, mode=mode, reliable=reliable, reasons=reasons, events=events,
                 start=start.kind.value)
