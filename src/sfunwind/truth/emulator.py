"""Run the truth image under unicorn and interrupt it at chosen instructions.

The machine runs the task (``ret_from_fork`` -> ``task_main``) at EL1.  Positions on the
task's timeline are counted in executed instructions (unicorn's ``count`` stops are exact).
At a chosen position the harness takes an IRQ the way the hardware would — ELR_EL1 = PC,
SPSR_EL1 = PSTATE, PSTATE = EL1h with DAIF masked, PC = VBAR_EL1 + 0x280 (unicorn does not
deliver an EL1 IRQ at a PC of our choosing) — and lets the image's real entry code run
(``el1h_64_irq`` -> ... -> ``call_on_irq_stack`` -> handlers on the IRQ stack) until the
first instruction of ``truth_snapshot_point``.  There it captures registers and stacks,
then restores the CPU context and resumes the task: the handler only wrote below the
interrupted SP and on the IRQ stack (AAPCS64 has no red zone), and the few handler globals
are restored too, so the task's result is unchanged (checked against an uninterrupted run).

Two kinds of exception run to completion through ``ret_to_kernel``/``eret``:

* ``brk #0x800`` in the task (a WARN) -> the image's sync vector; its handler does work
  (and can itself be interrupted: an IRQ inside a synchronous-exception handler);
* "work" IRQs scheduled on the timeline (action WORK): their handler runs on the IRQ stack
  with work that can be interrupted again (an IRQ while already on the IRQ stack: no
  ``call_on_irq_stack`` the second time, as in the kernel).

**Shadow call stack.**  A ``UC_HOOK_BLOCK`` hook (never a per-instruction hook) applies the
control transfer that *ended* the previous block: BL/BLR push ``pc + 4``, RET pops — and
checks that it returned exactly to the popped address —, ERET pops the exception marker and
checks ELR.  Exceptions push a marker holding the interrupted PC.  A stop in the middle of a
block leaves its terminal transfer pending; on resumption the first block (starting at the
stop PC, ending at the same terminal or earlier) replaces it.  So at any stop the shadow
stack holds exactly the return addresses of the live calls (tail calls ``b`` push nothing:
the tail-calling function is correctly absent) with the exception boundaries between them.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field, replace

from sfunwind.errors import MissingToolError, SfunwindError, UsageError
from sfunwind.truth.image import (
    KIND_BL,
    KIND_BLR,
    KIND_ERET,
    KIND_RET,
    TruthImage,
)

PT_REGS_SIZE = 320
PT_REGS_PC = 256
S_STACKFRAME = 296
THREAD_SIZE = 16384

IRQ_ACTION_SNAPSHOT = 0
IRQ_ACTION_WORK = 1

#: PSTATE on exception entry to EL1h: D, A, I, F masked, SPSel = 1, EL1.
PSTATE_EL1H_MASKED = 0x3C5
ESR_EC_BRK64 = 0x3C

BRK_WARN = 0x800
BRK_TASK_DONE = 0x77
BRK_SNAPSHOT = 0x55
BRK_BAD_VECTOR = 0x99

#: Instructions the handler path may take from an injected IRQ to the snapshot point.
HANDLER_BUDGET = 20000
#: Instructions one exploration of never-executed code may step through (Machine.explore),
#: and how far one steered path may run without meeting never-executed code.
EXPLORE_BUDGET = 50_000
EXPLORE_PATH_IDLE = 256
#: Instructions a whole task run may take (the task needs about 60 million).
TASK_BUDGET = 150_000_000

_PAGE = 4096


class HarnessError(SfunwindError):
    """The emulation went somewhere it must not (a harness or image bug): never expected."""


@dataclass(slots=True)
class ExceptionMarker:
    """An exception boundary on the shadow stack: the exception kind, the interrupted PC
    (ELR at entry) and where the exception will return to (``resume``: a BRK handler moves
    ``pt_regs::pc`` past the BRK; the harness watches that one slot with a write hook)."""

    kind: str  # "irq" or "sync"
    elr: int
    sp: int  # the interrupted SP: the pt_regs the entry code saves lies at sp - PT_REGS_SIZE
    resume: int = -1
    hook: int | None = None

    def __post_init__(self) -> None:
        if self.resume < 0:
            self.resume = self.elr

    @property
    def pt_regs(self) -> int:
        return self.sp - PT_REGS_SIZE


ShadowEntry = int | ExceptionMarker


@dataclass(slots=True)
class Capture:
    """One interruption: machine state at the snapshot point plus the truth."""

    position: int
    pc: int  # the interrupted PC
    context: str  # "task", "sync", "irq" (where the interrupted code ran)
    regs: dict[str, int]  # at the snapshot point: x0..x30, sp, pc, pstate
    stacks: dict[str, tuple[int, bytes]]  # name -> (low, bytes of [low, high))
    shadow: list[ShadowEntry]  # innermost first
    nesting: int  # exception markers below the injected IRQ
    #: "caller": regs are at truth_snapshot_point's entry (the walk starts from its caller);
    #: "regs": regs are the stopped CPU's at the interrupted pc (no IRQ taken; a debugger's
    #: view), whose first frame is that pc (P)
    start: str = "caller"
    #: reached by steering conditional branches (Machine.explore): compiled code that no
    #: input executes; the machine state is real, only branch decisions were overridden
    forced: bool = False

    def expected(self) -> list[int]:
        """The exact return-address chain a correct unwinder reports from the snapshot
        point's caller (or from the stopped pc): calls innermost first, each exception
        boundary as the PC it returns to."""
        return [e.resume if isinstance(e, ExceptionMarker) else e for e in self.shadow]


@dataclass(slots=True)
class RunStats:
    instructions: int = 0
    points: int = 0
    work_irqs: int = 0
    sync_exceptions: int = 0
    result: int | None = None
    covered: set[int] = field(default_factory=set)
    #: PCs interrupted only on steered paths (Machine.explore)
    forced_covered: set[int] = field(default_factory=set)


def _unicorn():  # type: ignore[no-untyped-def]
    try:
        import unicorn
        from unicorn import arm64_const
    except ImportError:  # pragma: no cover - unicorn is a test/truth dependency
        raise MissingToolError("unicorn is not installed (pip install 'sfunwind[truth]')") from None
    return unicorn, arm64_const


class Machine:
    """The emulated truth image (one task, one CPU)."""

    def __init__(self, image: TruthImage, *, record: bool = False,
                 irq_stack: str = "above") -> None:
        unicorn, c = _unicorn()
        self.image = image
        self._uc_mod, self._c = unicorn, c
        uc = unicorn.Uc(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM)
        # Virtual TLB: kernel addresses (0xffff8000...) map directly, no page tables.
        uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)
        self.uc = uc
        lo = min(s.address for s in image.segments) & ~(_PAGE - 1)
        hi = max(s.address + len(s.data) for s in image.segments)
        hi = (hi + _PAGE - 1) & ~(_PAGE - 1)
        uc.mem_map(lo, hi - lo)
        for seg in image.segments:
            uc.mem_write(seg.address, seg.data)
        self.vectors = image.symbol("vectors").address
        self.snapshot_point = image.symbol("truth_snapshot_point").address
        init_stack = image.symbol("init_stack")
        if irq_stack == "above":
            # the image's static IRQ stack: above the task stack, as for the boot CPU's idle
            # task (init_stack in the image, IRQ stacks vmalloc'ed above it)
            irq_low = image.symbol("irq_stack").address
        elif irq_stack == "below":
            # an IRQ stack below the task stack (vmalloc'ed task stacks above boot-time IRQ
            # stacks): preset irq_stack_ptr, which ret_from_fork then keeps
            irq_low = lo - 0x10000
            uc.mem_map(irq_low, THREAD_SIZE)
            uc.mem_write(image.symbol("irq_stack_ptr").address, irq_low.to_bytes(8, "little"))
        else:
            raise UsageError(f"irq_stack must be 'above' or 'below', not {irq_stack!r}")
        self.irq_stack_placement = irq_stack
        self.stacks = {"task": (init_stack.address, init_stack.address + THREAD_SIZE),
                       "irq": (irq_low, irq_low + THREAD_SIZE)}
        self.final_record = init_stack.address + THREAD_SIZE - PT_REGS_SIZE + S_STACKFRAME
        self.irq_action = image.symbol("truth_irq_action").address
        self._handler_globals = [(s.address, s.size) for s in image.symbols
                                 if s.name.startswith("truth_irq_") and s.size]
        self._regs = [getattr(c, f"UC_ARM64_REG_X{i}") for i in range(29)]
        self._regs += [c.UC_ARM64_REG_X29, c.UC_ARM64_REG_X30, c.UC_ARM64_REG_SP,
                       c.UC_ARM64_REG_PC, c.UC_ARM64_REG_PSTATE]
        self._reg_names = [f"x{i}" for i in range(31)] + ["sp", "pc", "pstate"]
        self.shadow: list[ShadowEntry] = []
        self._pending: tuple[int, int] | None = None  # (kind, address) of a block's terminal
        self._resuming = False
        self._block_instructions = 0  # instructions of every block entered
        self._return_check: int | None = None
        self._done = False
        self._error: str | None = None
        self.stats = RunStats()
        #: with ``record``: every block entered (address, size) and every stop (number of
        #: blocks recorded so far, stop PC), to map timeline positions to PCs
        self.block_addrs: array[int] | None = array("Q") if record else None
        self.block_sizes: array[int] = array("I")
        self.stops: list[tuple[int, int]] = []
        kinds = image.kinds
        text = image.text_address
        self._kinds = kinds
        self.block_hook = uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)
        uc.hook_add(unicorn.UC_HOOK_INTR, self._on_intr)
        self._text = text
        uc.reg_write(c.UC_ARM64_REG_PC, image.entry)
        uc.reg_write(c.UC_ARM64_REG_PSTATE, 0x5)  # EL1h, interrupts unmasked
        self.pc = image.entry

    # -- hooks --------------------------------------------------------------------------
    def _on_block(self, uc, address: int, size: int, _user) -> None:  # type: ignore[no-untyped-def]
        self._block_instructions += size >> 2
        if self.block_addrs is not None:
            self.block_addrs.append(address)
            self.block_sizes.append(size)
        pending = self._pending
        if self._resuming:
            # the first block after a stop starts at the stop PC: the pending terminal of
            # the block we stopped inside has not executed (this block ends at it or earlier)
            self._resuming = False
        elif pending is not None:
            kind, at = pending
            if kind in (KIND_BL, KIND_BLR):
                self.shadow.append(at + 4)
            elif kind == KIND_RET:
                if not self.shadow or isinstance(self.shadow[-1], ExceptionMarker):
                    self._fail(f"ret at {self.image.format_pc(at)} with no call on the shadow stack")
                    return
                expect = self.shadow.pop()
                if expect != address:
                    self._fail(f"ret at {self.image.format_pc(at)} went to {address:#x}, "
                               f"the shadow stack says {expect:#x}")
                    return
            elif kind == KIND_ERET:
                if not self.shadow or not isinstance(self.shadow[-1], ExceptionMarker):
                    self._fail(f"eret at {at:#x} without an exception on the shadow stack")
                    return
                marker = self.shadow.pop()
                assert isinstance(marker, ExceptionMarker)
                if marker.hook is not None:
                    uc.hook_del(marker.hook)
                if address != marker.resume:
                    self._fail(f"eret went to {address:#x}, expected {marker.resume:#x}")
                    return
        self._pending = None
        last = address + size - 4
        i = (last - self._text) >> 2
        if 0 <= i < len(self._kinds):
            k = int(self._kinds[i])
            if k in (KIND_BL, KIND_BLR, KIND_RET, KIND_ERET):
                self._pending = (k, last)

    def _on_intr(self, uc, intno: int, _user) -> None:  # type: ignore[no-untyped-def]
        c = self._c
        pc = uc.reg_read(c.UC_ARM64_REG_PC)
        if intno != 7:  # EXCP_BKPT
            self._fail(f"unexpected exception {intno} at {self.image.format_pc(pc)}")
            return
        word = struct.unpack("<I", uc.mem_read(pc, 4))[0]
        imm = (word >> 5) & 0xFFFF
        if imm == BRK_TASK_DONE:
            self._done = True
            uc.emu_stop()
            return
        if imm != BRK_WARN:
            self._fail(f"brk #{imm:#x} at {self.image.format_pc(pc)}")
            return
        self.stats.sync_exceptions += 1
        uc.reg_write(c.UC_ARM64_REG_ESR_EL1, (ESR_EC_BRK64 << 26) | (1 << 25) | imm)
        self._take_exception(pc, 0x200, "sync")

    def _fail(self, message: str) -> None:
        if self._error is None:
            self._error = message
        self.uc.emu_stop()

    def _take_exception(self, pc: int, vector_offset: int, kind: str) -> None:
        c = self._c
        uc = self.uc
        uc.reg_write(c.UC_ARM64_REG_ELR_EL1, pc)
        # SPSR_EL1 (op0=3, op1=0, CRn=4, CRm=0, op2=0) has no named unicorn register
        uc.reg_write(c.UC_ARM64_REG_CP_REG, (4, 0, 3, 0, 0, uc.reg_read(c.UC_ARM64_REG_PSTATE)))
        uc.reg_write(c.UC_ARM64_REG_PSTATE, PSTATE_EL1H_MASKED)
        sp = uc.reg_read(c.UC_ARM64_REG_SP)
        uc.reg_write(c.UC_ARM64_REG_PC, self.vectors + vector_offset)
        marker = ExceptionMarker(kind, pc, sp)
        if kind == "sync":
            slot = marker.pt_regs + PT_REGS_PC

            def on_pc_write(uc, _access, address, size, value, _user):  # type: ignore[no-untyped-def]
                if address == slot and size == 8:
                    marker.resume = value & ((1 << 64) - 1)

            marker.hook = uc.hook_add(self._uc_mod.UC_HOOK_MEM_WRITE, on_pc_write,
                                      begin=slot, end=slot + 7)
        self.shadow.append(marker)

    # -- running ------------------------------------------------------------------------
    def _emu(self, begin: int, until: int, count: int) -> None:
        try:
            self.uc.emu_start(begin, until, count=count)
        except self._uc_mod.UcError as exc:
            pc = self.uc.reg_read(self._c.UC_ARM64_REG_PC)
            raise HarnessError(f"emulation failed at {self.image.format_pc(pc)}: {exc}") from None
        if self._error is not None:
            raise HarnessError(self._error)

    def advance(self, count: int) -> bool:
        """Run the task for *count* instructions (fewer if it finishes); False when done."""
        if self._done:
            return False
        if count <= 0:
            return True
        self._resuming = True
        entered = self._block_instructions
        self._emu(self.pc, 0, count)
        self.pc = self.uc.reg_read(self._c.UC_ARM64_REG_PC)
        if self.block_addrs is not None:
            self.stops.append((len(self.block_addrs), self.pc))
        # a count stop is exact; the task's end (its BRK ends a block) ran whole blocks
        self.stats.instructions += (self._block_instructions - entered) if self._done else count
        return not self._done

    def run_to_end(self) -> int:
        """Run until the task finishes; its result (``task_main``'s return value)."""
        if self.advance(TASK_BUDGET):
            raise HarnessError(f"the task did not finish within {TASK_BUDGET} instructions")
        return self.result()

    def result(self) -> int:
        data = self.uc.mem_read(self.image.symbol("truth_result").address, 8)
        return int.from_bytes(data, "little")

    def failures(self) -> int:
        """How many of the task's workloads reported an error (0: every round trip worked)."""
        data = self.uc.mem_read(self.image.symbol("truth_failures").address, 8)
        return int.from_bytes(data, "little")

    @property
    def done(self) -> bool:
        return self._done

    def context(self) -> str:
        """Where the code at the current stop runs: task, sync handler or IRQ work."""
        for e in reversed(self.shadow):
            if isinstance(e, ExceptionMarker):
                return e.kind
        return "task"

    def inject_work_irq(self) -> None:
        """Take an IRQ whose handler runs work on the IRQ stack and returns (eret)."""
        self.uc.mem_write(self.irq_action, IRQ_ACTION_WORK.to_bytes(8, "little"))
        self._take_exception(self.pc, 0x280, "irq")
        self.pc = self.vectors + 0x280
        self.stats.work_irqs += 1

    def stopped_cpu(self, position: int) -> Capture:
        """The CPU as a debugger would see it at the current stop: registers at the
        interrupted pc, both stacks, the truth ``[pc, callers...]``; nothing is run."""
        uc = self.uc
        values = [uc.reg_read(r) for r in self._regs]
        regs = dict(zip(self._reg_names, values, strict=True))
        stacks = {name: (lo, bytes(uc.mem_read(lo, hi - lo)))
                  for name, (lo, hi) in self.stacks.items()}
        here = ExceptionMarker("cpu", self.pc, regs["sp"] + PT_REGS_SIZE)
        shadow = [here] + [replace(e, hook=None) if isinstance(e, ExceptionMarker) else e
                           for e in reversed(self.shadow)]
        nesting = sum(isinstance(e, ExceptionMarker) for e in self.shadow)
        return Capture(position=position, pc=self.pc, context=self.context(), regs=regs,
                       stacks=stacks, shadow=shadow, nesting=nesting, start="regs")

    def interrupt(self, position: int, *, forced: bool = False) -> Capture:
        """Take an IRQ at the current PC, run the entry code and handlers to the snapshot
        point, capture, and put everything back so that the task resumes unchanged."""
        uc, c = self.uc, self._c
        saved = uc.context_save()
        saved_shadow = list(self.shadow)
        saved_pending = self._pending
        saved_globals = [(a, bytes(uc.mem_read(a, n))) for a, n in self._handler_globals]
        interrupted = self.pc
        sp = uc.reg_read(c.UC_ARM64_REG_SP)
        if not any(lo < sp <= hi for lo, hi in self.stacks.values()):
            raise HarnessError(f"interrupted at {self.image.format_pc(interrupted)} with sp "
                               f"{sp:#x} outside the task and IRQ stacks (stack overflow?)")
        context = self.context()
        nesting = sum(isinstance(e, ExceptionMarker) for e in self.shadow)
        uc.mem_write(self.irq_action, IRQ_ACTION_SNAPSHOT.to_bytes(8, "little"))
        self._take_exception(interrupted, 0x280, "irq")
        self._resuming = True
        self._emu(self.vectors + 0x280, self.snapshot_point, HANDLER_BUDGET)
        pc = uc.reg_read(c.UC_ARM64_REG_PC)
        if pc != self.snapshot_point:
            raise HarnessError(f"the IRQ taken at {self.image.format_pc(interrupted)} did not "
                               f"reach truth_snapshot_point (stopped at "
                               f"{self.image.format_pc(pc)})")
        # at the snapshot point's first instruction the BL that called it is pending
        if self._pending is not None and self._pending[0] in (KIND_BL, KIND_BLR):
            self.shadow.append(self._pending[1] + 4)
        values = [uc.reg_read(r) for r in self._regs]
        regs = dict(zip(self._reg_names, values, strict=True))
        stacks = {name: (lo, bytes(uc.mem_read(lo, hi - lo)))
                  for name, (lo, hi) in self.stacks.items()}
        capture = Capture(position=position, pc=interrupted, context=context, regs=regs,
                          stacks=stacks, nesting=nesting, forced=forced,
                          shadow=[replace(e, hook=None) if isinstance(e, ExceptionMarker) else e
                                  for e in reversed(self.shadow)])
        uc.context_restore(saved)
        for address, data in saved_globals:
            uc.mem_write(address, data)
        self.shadow = saved_shadow
        self._pending = saved_pending
        self.stats.points += 1
        (self.stats.forced_covered if forced else self.stats.covered).add(interrupted)
        return capture

    # -- steering into code no input reaches -----------------------------------------------
    def explore(self, position: int, dead: set[int], on_capture) -> int:  # type: ignore[no-untyped-def]
        """Interrupt compiled code the task never executes, reached from here by steering
        conditional branches; then put everything back.

        The machine stands at a conditional branch the task executes (``position`` on its
        timeline).  A conditional branch changes nothing but the PC, so setting the PC to
        its other successor gives exactly the state the hardware would have had, had the
        condition gone the other way.  From there the explorer steps one instruction at a
        time inside the same function — stepping over calls as if they had returned (the
        callee is not run on steered arguments), never through a return, ERET or BRK (the
        shadow call stack stays exact), never out of the function — and takes an IRQ
        (:meth:`interrupt`) at every instruction of *dead* it meets, handing the capture
        to *on_capture* and removing the PC from *dead*.  At every conditional branch on
        the way whose other successor is in *dead* it remembers the state, and visits that
        alternative too (depth first).  Every memory write is logged and undone, the CPU
        context and the shadow stack restored: the task resumes as if nothing happened.
        Faults end a path.  Returns the number of captures.
        """
        uc, c, image = self.uc, self._c, self.image
        origin = self.pc
        succ = image.branch_successors(origin)
        if succ is None:
            raise HarnessError(f"explore at {image.format_pc(origin)}: not a conditional branch")
        fi = int(image.function_of[image.index(origin)])
        sym = image.symbols[fi]
        lo, hi = sym.address, sym.address + sym.size
        saved = uc.context_save()
        saved_shadow, saved_pending = list(self.shadow), self._pending
        writes: list[tuple[int, bytes]] = []

        def on_write(uc, _access, address, size, _value, _user):  # type: ignore[no-untyped-def]
            writes.append((address, bytes(uc.mem_read(address, size))))

        hook = uc.hook_add(self._uc_mod.UC_HOOK_MEM_WRITE, on_write)
        tried: set[tuple[int, int]] = set()
        pending_paths: list[tuple[object, int, int]] = []
        for target in succ:
            if target in dead:
                tried.add((origin, target))
                pending_paths.append((uc.context_save(), 0, target))
        captures = 0
        budget = EXPLORE_BUDGET
        try:
            while pending_paths and budget > 0:
                context, n_writes, pc = pending_paths.pop()
                self._undo(writes, n_writes)
                uc.context_restore(context)
                self.shadow, self._pending = list(saved_shadow), saved_pending
                idle = 0
                while budget > 0 and lo <= pc < hi and idle < EXPLORE_PATH_IDLE:
                    uc.reg_write(c.UC_ARM64_REG_PC, pc)
                    self.pc = pc
                    idle += 1
                    if pc in dead:
                        dead.discard(pc)
                        on_capture(self.interrupt(position, forced=True))
                        captures += 1
                        idle = 0
                    i = image.index(pc)
                    kind = int(image.kinds[i])
                    if kind in (KIND_BL, KIND_BLR):
                        # the call, as returned: the callee (run on steered arguments) is
                        # not executed; a returning callee leaves SP, x29, x19-x28 and the
                        # caller's frame as they are, and x30 = the return address
                        uc.reg_write(c.UC_ARM64_REG_X30, pc + 4)
                        pc += 4
                        budget -= 1
                        continue
                    if kind in (KIND_RET, KIND_ERET) or \
                            (int(image.words[i]) & 0xFFE0001F) == 0xD4200000:  # brk
                        break
                    alt = image.branch_successors(pc)
                    if alt is not None:
                        for target in alt:
                            if target in dead and (pc, target) not in tried:
                                tried.add((pc, target))
                                pending_paths.append((uc.context_save(), len(writes), target))
                                idle = 0
                    self._resuming = True
                    try:
                        self._emu(pc, 0, 1)
                    except HarnessError:
                        self._error = None
                        break
                    budget -= 1
                    pc = uc.reg_read(c.UC_ARM64_REG_PC)
        finally:
            uc.hook_del(hook)
            self._undo(writes, 0)
            uc.context_restore(saved)
            self.shadow, self._pending = saved_shadow, saved_pending
            self.pc = origin
            self._error = None
        return captures

    def _undo(self, writes: list[tuple[int, bytes]], keep: int) -> None:
        """Undo logged memory writes back to the first *keep* (newest first)."""
        while len(writes) > keep:
            address, old = writes.pop()
            self.uc.mem_write(address, old)
