"""The arm64 kernel unwinder on synthetic stacks: kernel-unwinder.md §25's matrix."""

from __future__ import annotations

import pytest

from sfunwind.rules import (
    RETAIN,
    CfaKind,
    CfaRule,
    Rule,
    RuleKind,
    UnwindRow,
    outermost_row,
)
from sfunwind.unwind.arm64 import (
    FgraphEntry,
    KretprobeInstance,
    PtRegsLayout,
    Regs,
    StackInfo,
    TaskStacks,
    UnwindContext,
    start_from_caller,
    start_from_regs,
    start_from_task,
    unwind,
)
from sfunwind.unwind.synthetic import SyntheticStack, memory_of
from sfunwind.unwind.trace import EventKind, Frame, Mode, Source

TEXT = 0xFFFF800080000000
TEXT_END = TEXT + 0x100000
TASK_LOW = 0xFFFF800082000000
IRQ_LOW = 0xFFFF800083000000
OVF_LOW = 0xFFFF800084000000
PAC_MASK = 0xFFF0000000000000
RTH = TEXT + 0xF0000  # return_to_handler
KRT = TEXT + 0xF1000  # __kretprobe_trampoline

ALL_CHECKED = (Mode.UPSTREAM, Mode.SFRAME, Mode.FP_ONLY)


def fn(i: int) -> int:
    """The address of function #i (each 0x100 bytes)."""
    return TEXT + 0x1000 + i * 0x100


def symbolize(pc: int):
    if TEXT <= pc < TEXT_END:
        base = pc & ~0xFF
        return (f"f{(base - TEXT - 0x1000) >> 8}", pc - base, 0x100)
    return None


def ctx_for(*stacks: SyntheticStack, rows=None, **kw) -> UnwindContext:
    rows = rows or {}

    def find_row(pc: int):
        return rows.get(pc)

    return UnwindContext(memory=memory_of(*stacks), find_row=find_row, symbolize=symbolize,
                         is_kernel_text=lambda pc: TEXT <= pc < TEXT_END, pac_mask=PAC_MASK,
                         return_to_handler=(RTH, 0x40), kretprobe_trampoline=(KRT, 0x20), **kw)


def sp_row(cfa_off: int, fp_off: int | None, ra_off: int | None) -> UnwindRow:
    return UnwindRow(CfaRule(CfaKind.SP_OFFSET, cfa_off),
                     RETAIN if ra_off is None else Rule(RuleKind.CFA_OFFSET_DEREF, ra_off),
                     RETAIN if fp_off is None else Rule(RuleKind.CFA_OFFSET_DEREF, fp_off))


def fp_row(cfa_off: int, fp_off: int, ra_off: int) -> UnwindRow:
    return UnwindRow(CfaRule(CfaKind.FP_OFFSET, cfa_off), Rule(RuleKind.CFA_OFFSET_DEREF, ra_off),
                     Rule(RuleKind.CFA_OFFSET_DEREF, fp_off))


def sleeping_task(depth: int = 4):
    """A blocked task: __switch_to (T) <- f1 <- ... <- fN, chain ending at FINAL."""
    task = SyntheticStack("task", TASK_LOW)
    final = task.final_regs()
    fp = final
    addr = final - 0x200
    records = []
    for i in range(depth, 0, -1):
        fp = task.record(addr, fp, fn(i) + 0x10)
        records.append(addr)
        addr -= 0x40
    return task, TaskStacks.for_task_stack(task.low, task.high), start_from_task(fn(0) + 0x8, fp)


def names(trace) -> list[str]:
    return [f.format() for f in trace.frames]


# -- frame-record walking (§25 16-21) ---------------------------------------------------

@pytest.mark.parametrize("mode", (*ALL_CHECKED, Mode.SFRAME_V6))
def test_sleeping_task_is_reliable_in_every_mode(mode):
    stack, task, start = sleeping_task()
    trace = unwind(ctx_for(stack), task, start, mode)
    assert names(trace) == ["f0+0x8/0x100 (T)", "f1+0x10/0x100", "f2+0x10/0x100",
                            "f3+0x10/0x100", "f4+0x10/0x100"]
    assert trace.reliable, trace.reasons
    assert trace.events[-1].kind is EventKind.FINAL
    assert [f.stack for f in trace.frames] == [None, "task", "task", "task", "task"]


def test_final_in_wrong_place_is_an_error():
    stack = SyntheticStack("task", TASK_LOW)
    stack.final_regs()
    fake = stack.low + 0x1000
    stack.put(fake + 16, 1)  # a FINAL-typed zero record that is not task_pt_regs
    fp = stack.record(fake - 0x40, fake, fn(1))
    task = TaskStacks.for_task_stack(stack.low, stack.high)
    for mode in (Mode.UPSTREAM, Mode.SFRAME):
        trace = unwind(ctx_for(stack), task, start_from_task(fn(0), fp), mode)
        assert not trace.reliable
        assert [r.code for r in trace.reasons] == ["final-misplaced"]
        assert trace.events[-1].kind is EventKind.ERROR
    # the posted v6 ignores the walk's error: the defect reproduced
    assert unwind(ctx_for(stack), task, start_from_task(fn(0), fp), Mode.SFRAME_V6).reliable


@pytest.mark.parametrize("meta_type", [0, 3, 0xFFFF])
def test_unknown_meta_type(meta_type):
    stack = SyntheticStack("task", TASK_LOW)
    stack.final_regs()
    rec = stack.low + 0x2000
    stack.put(rec + 16, meta_type)
    task = TaskStacks.for_task_stack(stack.low, stack.high)
    trace = unwind(ctx_for(stack), task, start_from_task(fn(0), rec), Mode.SFRAME)
    assert [r.code for r in trace.reasons] == ["meta-type"]


def test_misaligned_fp():
    stack, task, _ = sleeping_task()
    trace = unwind(ctx_for(stack), task, start_from_task(fn(0), TASK_LOW + 0x1004), Mode.UPSTREAM)
    assert [r.code for r in trace.reasons] == ["fp-misaligned"]
    assert len(trace.frames) == 1


def test_cycle_and_downward_record_stop():
    stack = SyntheticStack("task", TASK_LOW)
    stack.final_regs()
    a = stack.low + 0x1000
    stack.record(a, a, fn(1))  # points at itself
    task = TaskStacks.for_task_stack(stack.low, stack.high)
    trace = unwind(ctx_for(stack), task, start_from_task(fn(0), a), Mode.UPSTREAM)
    assert [r.code for r in trace.reasons] == ["record-off-stack"]
    assert len(trace.frames) == 2
    b = stack.low + 0x2000
    stack.record(b, b - 0x100, fn(2))  # points downwards
    stack.record(b - 0x100, b + 0x100, fn(3))
    trace = unwind(ctx_for(stack), task, start_from_task(fn(0), b), Mode.UPSTREAM)
    assert [r.code for r in trace.reasons] == ["record-off-stack"]


def test_record_straddling_the_stack_top_and_wrap():
    stack = SyntheticStack("task", TASK_LOW)
    task = TaskStacks.for_task_stack(stack.low, stack.high)
    trace = unwind(ctx_for(stack), task, start_from_task(fn(0), stack.high - 8), Mode.UPSTREAM)
    assert [r.code for r in trace.reasons] == ["record-off-stack"]
    trace = unwind(ctx_for(stack), task, start_from_task(fn(0), (1 << 64) - 8), Mode.UPSTREAM)
    assert [r.code for r in trace.reasons] == ["record-off-stack"]
    assert not StackInfo("x", (1 << 64) - 0x100, 1 << 64).on_stack((1 << 64) - 8, 16)
    assert not StackInfo("x", 0, 0x1000).on_stack(0x10, 16)  # unknown never matches


def irq_over_task():
    """Running task: IRQ stack handler chain -> call_on_irq_stack record on the task stack
    -> el1h_64_irq pt_regs (PT_REGS) on the task stack -> interrupted f20 -> FINAL."""
    task = SyntheticStack("task", TASK_LOW)
    irq = SyntheticStack("irq", IRQ_LOW)
    final = task.final_regs()
    outer = task.record((final & ~0xF) - 0x300, final, fn(22) + 0x24)   # f21's record: caller f22
    inner = task.record(outer - 0x60, outer, fn(21) + 0x30)   # f20's record: caller f21
    regs_addr = inner - 0x200
    regs = task.pt_regs(regs_addr, pc=fn(20) + 0x40, sp=inner - 0x10, fp=inner,
                        lr=fn(21) + 0x30 | 0x1234000000000000)
    meta = regs_addr + PtRegsLayout().stackframe
    handler = task.record(regs_addr - 0x40, meta, fn(10) + 0x6C)   # el1h_64_irq_handler frame
    cois = task.record(handler - 0x20, handler, fn(11) + 0x30)      # call_on_irq_stack's record
    top = irq.record(irq.high - 0x40, cois, fn(12) + 0x18)           # gic_handle_irq's frame
    stacks = TaskStacks.for_task_stack(task.low, task.high,
                                       extra=(irq.info, StackInfo("overflow", OVF_LOW,
                                                                  OVF_LOW + 0x1000)),
                                       is_current=True)
    return task, irq, stacks, regs, start_from_task(fn(13) + 0x8, top)


def test_exception_boundary_upstream():
    task, irq, stacks, _regs, start = irq_over_task()
    trace = unwind(ctx_for(task, irq), stacks, start, Mode.UPSTREAM)
    assert names(trace) == ["f13+0x8/0x100 (T)", "f12+0x18/0x100", "f11+0x30/0x100",
                            "f10+0x6c/0x100", "f20+0x40/0x100 (P)", "f21+0x30/0x100",
                            "f22+0x24/0x100"]
    assert [f.stack for f in trace.frames] == [None, "irq", "task", "task", "task", "task",
                                               "task"]
    assert not trace.reliable
    assert [r.code for r in trace.reasons] == ["exception-boundary"]
    kinds = [(e.kind, e.index) for e in trace.events]
    assert (EventKind.STACK_SWITCH, 2) in kinds
    assert (EventKind.EXCEPTION_BOUNDARY, 4) in kinds
    assert kinds[-1] == (EventKind.FINAL, 7)


def test_exception_boundary_sframe_lr_live_reports_L():
    """§25 1/4/5: the interrupted pc's row keeps RA in LR: report LR (L), PAC-stripped,
    keep x29 (it already points at the caller's record)."""
    task, irq, stacks, regs, start = irq_over_task()
    ctxrows = {regs.pc: sp_row(0, None, None)}
    # interrupted before f20 built its record: x29 is still f21's record, RA only in LR
    outer = ((task.high - 320 + 296) & ~0xF) - 0x300
    task.pt_regs(regs.address, pc=regs.pc, sp=regs.sp, fp=outer,
                 lr=(fn(21) + 0x30) | 0x5A00000000000000)
    trace = unwind(ctx_for(task, irq, rows=ctxrows), stacks, start, Mode.SFRAME)
    assert names(trace)[4:] == ["f20+0x40/0x100 (P)", "f21+0x30/0x100 (L)", "f22+0x24/0x100"]
    assert trace.frames[5].raw_pc == (fn(21) + 0x30) | 0x5A00000000000000
    assert trace.reliable, trace.reasons
    # upstream skips the LR-only caller
    up = unwind(ctx_for(task, irq, rows=ctxrows), stacks, start, Mode.UPSTREAM)
    assert names(up)[4:] == ["f20+0x40/0x100 (P)", "f22+0x24/0x100"]


@pytest.mark.parametrize("row_kind", ["sp", "fp"])
def test_exception_boundary_sframe_ra_on_stack(row_kind):
    """§25 2/3: a frame record exists: RA and FP from CFA-8/CFA-16, consumed."""
    task, irq, stacks, regs, start = irq_over_task()
    inner = regs.fp
    cfa = inner + 0x10
    row = sp_row(cfa - regs.sp, -16, -8) if row_kind == "sp" else fp_row(0x10, -16, -8)
    trace = unwind(ctx_for(task, irq, rows={regs.pc: row}), stacks, start, Mode.SFRAME)
    assert names(trace)[4:] == ["f20+0x40/0x100 (P)", "f21+0x30/0x100", "f22+0x24/0x100"]
    assert trace.reliable, trace.reasons


def test_no_row_falls_back_to_fp_and_is_unreliable():
    """§25 6/7: unannotated code or a gap: FP fallback for display, unreliable."""
    task, irq, stacks, _regs, start = irq_over_task()
    trace = unwind(ctx_for(task, irq), stacks, start, Mode.SFRAME)
    assert names(trace)[4:] == ["f20+0x40/0x100 (P)", "f21+0x30/0x100", "f22+0x24/0x100"]
    assert not trace.reliable
    assert [(r.code, r.index) for r in trace.reasons] == [("sframe-no-row", 5)]
    # no SFrame at all: the same, like upstream
    ctx = ctx_for(task, irq)
    ctx.find_row = None
    assert [r.code for r in unwind(ctx, stacks, start, Mode.SFRAME).reasons] == ["sframe-none"]


@pytest.mark.parametrize("row,code", [
    (outermost_row(), "sframe-outermost"),
    (UnwindRow(CfaRule(CfaKind.REG_OFFSET, 0, 3), RETAIN, RETAIN), "sframe-cfa-rule"),
    (UnwindRow(CfaRule(CfaKind.SP_OFFSET, 0), Rule(RuleKind.CFA_OFFSET, -8), RETAIN),
     "sframe-ra-rule"),
    (UnwindRow(CfaRule(CfaKind.SP_OFFSET, 0), Rule(RuleKind.REG_OFFSET, 0, 9), RETAIN),
     "sframe-ra-rule"),
    (UnwindRow(CfaRule(CfaKind.SP_OFFSET, 0), RETAIN, Rule(RuleKind.REG_OFFSET, 0, 9)),
     "sframe-fp-rule"),
])
def test_rejected_rows(row, code):
    """§25 8/14."""
    task, irq, stacks, regs, start = irq_over_task()
    trace = unwind(ctx_for(task, irq, rows={regs.pc: row}), stacks, start, Mode.SFRAME)
    assert [r.code for r in trace.reasons] == [code]
    assert names(trace)[5] == "f21+0x30/0x100"  # the FP fallback, displayed


def test_fp_based_cfa_with_fp_below_sp():
    """§25 12."""
    task, irq, stacks, regs, start = irq_over_task()
    task.pt_regs(regs.address, pc=regs.pc, sp=regs.fp + 0x20, fp=regs.fp, lr=regs.lr)
    trace = unwind(ctx_for(task, irq, rows={regs.pc: fp_row(0x10, -16, -8)}), stacks, start,
                   Mode.SFRAME)
    assert [r.code for r in trace.reasons] == ["sframe-fp-below-sp"]


@pytest.mark.parametrize("delta", [2, 4, 8])
def test_misaligned_cfa(delta):
    """§25 13: misaligned by 2/4/8 rejected (v6's 0x15 accepts 2 and 8)."""
    task, irq, stacks, regs, start = irq_over_task()
    cfa = regs.fp + 0x20 + delta  # the CFA need not sit right above the record
    assert (cfa - delta) & 0x1F == 0
    rows = {regs.pc: sp_row(cfa - regs.sp, regs.fp - cfa, regs.fp + 8 - cfa)}
    trace = unwind(ctx_for(task, irq, rows=rows), stacks, start, Mode.SFRAME)
    assert [r.code for r in trace.reasons] == ["sframe-cfa-misaligned"]
    v6 = unwind(ctx_for(task, irq, rows=rows), stacks, start, Mode.SFRAME_V6)
    assert v6.reliable is (delta in (2, 8)), v6.reasons


def test_cfa_with_bit4_set_is_accepted_but_v6_rejects_it():
    """§16 defect 1: about half of all valid boundaries fail in v6 as posted."""
    task, irq, stacks, regs, start = irq_over_task()
    cfa = regs.fp + 0x10
    assert cfa & 0x10
    rows = {regs.pc: sp_row(cfa - regs.sp, -16, -8)}
    assert unwind(ctx_for(task, irq, rows=rows), stacks, start, Mode.SFRAME).reliable
    v6 = unwind(ctx_for(task, irq, rows=rows), stacks, start, Mode.SFRAME_V6)
    assert [r.code for r in v6.reasons] == ["sframe-cfa-misaligned"]


def test_ra_slot_off_stack_or_already_consumed():
    """§25 15: the slot must be on an accessible stack above what was consumed."""
    task, irq, stacks, regs, start = irq_over_task()
    below = regs.address - 0x100  # below the pt_regs: already consumed region
    rows = {regs.pc: sp_row(below + 0x10 - regs.sp, -16, -8)}
    trace = unwind(ctx_for(task, irq, rows=rows), stacks, start, Mode.SFRAME)
    assert [r.code for r in trace.reasons] == ["sframe-slot-off-stack"]
    rows = {regs.pc: sp_row(0x10000, -16, -8)}  # beyond the stack
    trace = unwind(ctx_for(task, irq, rows=rows), stacks, start, Mode.SFRAME)
    assert [r.code for r in trace.reasons] == ["sframe-slot-off-stack"]


def test_left_stack_cannot_be_reentered():
    """§25 20: a record on the task stack pointing back to the IRQ stack fails."""
    task = SyntheticStack("task", TASK_LOW)
    irq = SyntheticStack("irq", IRQ_LOW)
    task.final_regs()
    back = irq.record(irq.high - 0x100, 0, 0)
    t = task.record(task.low + 0x1000, back, fn(3))
    top = irq.record(irq.high - 0x200, t, fn(2))
    stacks = TaskStacks.for_task_stack(task.low, task.high, extra=(irq.info,))
    trace = unwind(ctx_for(task, irq), stacks, start_from_task(fn(1), top), Mode.UPSTREAM)
    assert [r.code for r in trace.reasons] == ["record-off-stack"]
    assert names(trace) == ["f1+0x0/0x100 (T)", "f2+0x0/0x100", "f3+0x0/0x100"]
    # a sleeping task has no IRQ stack: the very first record is off-stack
    sleeping = TaskStacks.for_task_stack(task.low, task.high)
    trace = unwind(ctx_for(task, irq), sleeping, start_from_task(fn(1), top), Mode.UPSTREAM)
    assert [r.code for r in trace.reasons] == ["record-off-stack"]


def test_pt_regs_straddling_stacks():
    task = SyntheticStack("task", TASK_LOW)
    task.final_regs()
    regs_addr = task.low - 0x100  # meta record on the stack, pt_regs start below it
    meta = regs_addr + 296
    task.put(meta + 16, 2)
    stacks = TaskStacks.for_task_stack(task.low, task.high)
    trace = unwind(ctx_for(task), stacks, start_from_task(fn(0), meta), Mode.UPSTREAM)
    assert [r.code for r in trace.reasons] == ["pt-regs-off-stack"]


def test_start_from_prstatus_regs_in_a_prologue():
    """§25 11 / Proof 3: stopped at +8 (x30 plain) and +12 (x30 signed, not stored)."""
    task = SyntheticStack("task", TASK_LOW)
    final = task.final_regs()
    caller = task.record((final & ~0xF) - 0x100, final, fn(31) + 0x44 | 0x7700000000000000)
    entry = fn(30)
    stacks = TaskStacks.for_task_stack(task.low, task.high, is_current=True)
    rows = {entry + 8: sp_row(0, None, None),
            entry + 12: UnwindRow(CfaRule(CfaKind.SP_OFFSET, 0), RETAIN, RETAIN, ra_signed=True)}
    for off, lr in ((8, fn(32) + 0x20), (12, (fn(32) + 0x20) | 0x73DF000000000000)):
        regs = Regs(pc=entry + off, sp=caller - 0x30, fp=caller, lr=lr)
        trace = unwind(ctx_for(task, rows=rows), stacks, start_from_regs(regs), Mode.SFRAME)
        assert names(trace) == [f"f30+{off:#x}/0x100 (P)", "f32+0x20/0x100 (L)",
                                "f31+0x44/0x100"]
        assert trace.reliable, trace.reasons
        up = unwind(ctx_for(task, rows=rows), stacks, start_from_regs(regs), Mode.UPSTREAM)
        assert names(up) == [f"f30+{off:#x}/0x100 (P)", "f31+0x44/0x100"]
        assert [r.code for r in up.reasons] == ["exception-boundary"]


def test_start_from_caller_marker():
    stack, task, start = sleeping_task(2)
    trace = unwind(ctx_for(stack), task, start_from_caller(start.pc, start.fp), Mode.SFRAME)
    assert trace.frames[0].format() == "f0+0x8/0x100 (C)"
    assert trace.reliable


# -- return-address rewriting (§25 22-23) ------------------------------------------------

def test_fgraph_recovery_frame_and_lr():
    task = SyntheticStack("task", TASK_LOW)
    final = task.final_regs()
    r2 = task.record(final - 0x100, final, RTH)          # rewritten return into f2
    r1 = task.record(r2 - 0x40, r2, RTH | 0x1100000000000000)  # rewritten return into f1
    stacks = TaskStacks(stacks=(task.info,), final_record=final, has_ret_stack=True,
                        ret_stack=(FgraphEntry(fn(1) + 4, r2), FgraphEntry(fn(2) + 8, final)))
    trace = unwind(ctx_for(task), stacks, start_from_task(fn(0), r1), Mode.SFRAME)
    assert names(trace) == ["f0+0x0/0x100 (T)", "f1+0x4/0x100 (F)", "f2+0x8/0x100 (F)"]
    assert trace.reliable
    assert trace.frames[1].raw_pc == RTH | 0x1100000000000000
    # a missing entry: cannot recover -> unreliable
    bad = TaskStacks(stacks=(task.info,), final_record=final, has_ret_stack=True,
                     ret_stack=(FgraphEntry(fn(1) + 4, r2),))
    trace = unwind(ctx_for(task), bad, start_from_task(fn(0), r1), Mode.SFRAME)
    assert [r.code for r in trace.reasons] == ["fgraph-unrecoverable"]


def test_fgraph_as_lr_value_gives_LF_and_transient_window_is_unreliable():
    task = SyntheticStack("task", TASK_LOW)
    final = task.final_regs()
    caller = task.record((final & ~0xF) - 0x100, final, fn(31))
    stacks = TaskStacks(stacks=(task.info,), final_record=final, has_ret_stack=True,
                        ret_stack=(FgraphEntry(fn(32) + 0x20, caller),), is_current=True)
    regs = Regs(pc=fn(30) + 8, sp=caller - 0x30, fp=caller, lr=RTH)
    rows = {fn(30) + 8: sp_row(0, None, None)}
    trace = unwind(ctx_for(task, rows=rows), stacks, start_from_regs(regs), Mode.SFRAME)
    assert names(trace) == ["f30+0x8/0x100 (P)", "f32+0x20/0x100 (LF)", "f31+0x0/0x100"]
    assert trace.reliable
    inside = Regs(pc=RTH + 0x10, sp=caller - 0x30, fp=caller, lr=fn(32))
    trace = unwind(ctx_for(task, rows={RTH + 0x10: sp_row(0, None, None)}), stacks,
                   start_from_regs(inside), Mode.SFRAME)
    assert [r.code for r in trace.reasons] == ["fgraph-transient"]


def test_kretprobe_recovery():
    task = SyntheticStack("task", TASK_LOW)
    final = task.final_regs()
    r1 = task.record(final - 0x100, final, KRT)
    ok = TaskStacks(stacks=(task.info,), final_record=final,
                    kretprobe_instances=(KretprobeInstance(fn(5) + 0xC, final),))
    trace = unwind(ctx_for(task), ok, start_from_task(fn(0), r1), Mode.SFRAME)
    assert names(trace) == ["f0+0x0/0x100 (T)", "f5+0xc/0x100 (K)"]
    assert trace.reliable
    bad = TaskStacks(stacks=(task.info,), final_record=final)
    trace = unwind(ctx_for(task), bad, start_from_task(fn(0), r1), Mode.SFRAME)
    assert [r.code for r in trace.reasons] == ["kretprobe-unrecoverable"]


# -- reliability and the consumer (§25 25, 28) --------------------------------------------

@pytest.mark.parametrize("depth,reliable", [(98, True), (99, False), (150, False)])
def test_livepatch_buffer_of_100(depth, reliable):
    """The consumer stores the 100th entry and returns false: 100 entries fail."""
    stack, task, start = sleeping_task(depth)
    trace = unwind(ctx_for(stack), task, start, Mode.SFRAME)
    assert len(trace.frames) == depth + 1
    assert trace.reliable is reliable
    if not reliable:
        assert [r.code for r in trace.reasons] == ["too-many-entries"]


def test_pc_not_kernel_text_is_unreliable():
    stack = SyntheticStack("task", TASK_LOW)
    final = stack.final_regs()
    r = stack.record(final - 0x100, final, 0xFFFF000012345678)
    task = TaskStacks.for_task_stack(stack.low, stack.high)
    trace = unwind(ctx_for(stack), task, start_from_task(fn(0), r), Mode.UPSTREAM)
    assert [r.code for r in trace.reasons] == ["pc-not-text"]
    assert trace.frames[1].format() == "0xffff000012345678"


def test_markers():
    cases = {Source.FRAME: "", Source.CALLER: " (C)", Source.TASK: " (T)",
             Source.REGS_PC: " (P)", Source.REGS_LR: " (L)", Source.UNKNOWN: " (U)"}
    for source, suffix in cases.items():
        f = Frame(pc=fn(1), source=source, symbol="f1", offset=0, size=0x100)
        assert f.format() == "f1+0x0/0x100" + suffix
    f = Frame(pc=fn(1), source=Source.REGS_PC, fgraph=True, symbol="x", offset=4, size=8)
    assert f.format() == "x+0x4/0x8 (PF)"
    f = Frame(pc=fn(1), source=Source.FRAME, kretprobe=True, symbol="x", offset=4, size=8)
    assert f.format() == "x+0x4/0x8 (K)"


def test_memory_fault_is_a_reason_not_an_exception():
    task = SyntheticStack("task", TASK_LOW)
    final = task.final_regs()
    r = task.record(final - 0x100, final, fn(1))
    ctx = ctx_for(task)
    ctx.memory = memory_of()  # nothing present
    stacks = TaskStacks.for_task_stack(task.low, task.high)
    trace = unwind(ctx, stacks, start_from_task(fn(0), r), Mode.SFRAME)
    assert [r.code for r in trace.reasons] == ["memory-fault"]


def test_fp_only_mode_stops_at_exception_boundary():
    task, irq, stacks, _regs, start = irq_over_task()
    trace = unwind(ctx_for(task, irq), stacks, start, Mode.FP_ONLY)
    assert len(trace.frames) == 4
    assert [r.code for r in trace.reasons] == ["chain-ended"]


def test_336_byte_pt_regs_layout():
    layout = PtRegsLayout(size=336)
    task = SyntheticStack("task", TASK_LOW)
    final = task.final_regs(layout)
    assert final == task.high - 336 + 296
    r = task.record(final - 0x100, final, fn(1))
    stacks = TaskStacks.for_task_stack(task.low, task.high, layout)
    ctx = ctx_for(task, pt_regs=layout)
    assert unwind(ctx, stacks, start_from_task(fn(0), r), Mode.UPSTREAM).reliable


# -- verdict strengtheners: return sites and the CFI frame shape ------------------------------

def test_return_site_table(tmp_path):
    from sfunwind.unwind.returnsites import ReturnSites

    words = [0xD503201F,  # nop
             0x94000010,  # bl
             0xD63F0020,  # blr x1
             0xD63F083F,  # blraaz x1
             0xD73F0821,  # blraa x1, x1
             0xD65F03C0]  # ret
    code = b"".join(w.to_bytes(4, "little") for w in words)
    table = ReturnSites.from_code([(".text", TEXT, code)], build_id="ab")
    assert [table(TEXT + 4 * i) for i in range(6)] == [False, False, True, True, True, True]
    assert table(TEXT + 9) is False  # misaligned, inside the code
    assert table(TEXT - 4) is None and table(TEXT + 0x1000) is None  # not covered: unknown
    path = tmp_path / "t.rsites"
    table.save(path)
    again = ReturnSites.load(path)
    assert again.build_id == "ab"
    assert [again(TEXT + 4 * i) for i in range(6)] == [table(TEXT + 4 * i) for i in range(6)]
    assert again.relocated(0x1000)(TEXT + 0x1008)
    path.write_bytes(b"junk")
    from sfunwind.errors import FormatError
    with pytest.raises(FormatError):
        ReturnSites.load(path)


def test_not_a_return_site_is_unreliable():
    stack, task, start = sleeping_task(3)
    ctx = ctx_for(stack)
    ctx.is_return_site = lambda pc: (pc & 0xFF) == 0x10
    trace = unwind(ctx, task, start, Mode.SFRAME)
    assert trace.reliable  # f1..f3 + 0x10 are return sites; (T) is not checked
    ctx.is_return_site = lambda pc: pc != fn(2) + 0x10
    trace = unwind(ctx, task, start, Mode.UPSTREAM)
    assert [(r.code, r.index) for r in trace.reasons] == [("not-return-site", 2)]


def test_frame_shape_caller_record_below_its_cfa():
    """A return address whose function's CFI puts its CFA above the next record: the chain
    skipped into the middle of that frame (a corrupted fp)."""
    stack, task, start = sleeping_task(3)
    body = sp_row(0x40, -0x40, -0x38)  # a 64-byte frame with its record at the bottom
    # f3's caller record is the FINAL one: f3 plays the entry asm (ret_from_fork), no CFI
    rows = {fn(i) + 0x10 - 4: body for i in (1, 2)}
    rows[start.pc - 4] = body
    ctx = ctx_for(stack, rows=rows)
    # the records of sleeping_task are 0x40 apart: consistent
    assert unwind(ctx, task, start, Mode.SFRAME).reliable
    # the same frames claiming 0x80 bytes each: every caller record lies inside the frame
    big = sp_row(0x80, -0x80, -0x78)
    ctx = ctx_for(stack, rows={k: big for k in rows})
    trace = unwind(ctx, task, start, Mode.SFRAME)
    assert {r.code for r in trace.reasons} == {"frame-shape"}
    assert unwind(ctx, task, start, Mode.UPSTREAM).reliable  # upstream has no such check


def test_frame_shape_return_into_code_without_a_saved_record():
    stack, task, start = sleeping_task(2)
    rows = {fn(1) + 0x10 - 4: sp_row(0, None, None)}  # "RA still in LR" at a call: impossible
    trace = unwind(ctx_for(stack, rows=rows), task, start, Mode.SFRAME)
    assert [r.code for r in trace.reasons] == ["frame-shape"]


def test_fgraph_ret_stack_decoding():
    """The 7.x fgraph shadow stack: frames of 4 words, each followed by a word whose low 10
    bits give the distance back to the frame (kernel/trace/fgraph.c get_ret_stack)."""
    from sfunwind.memory.base import SparseMemory
    from sfunwind.unwind.kernel import fgraph_entries

    base = 0xFFFF000012340000
    words = [fn(1) + 4, fn(1), 0, TASK_LOW + 0x100, 4,                 # frame A (older)
             fn(2) + 8, fn(2), 0, TASK_LOW + 0x200, 4 | (1 << 10),      # frame B
             (2 << 10) | 5]                                             # a data word for B
    mem = SparseMemory([(base, b"".join(w.to_bytes(8, "little") for w in words))])
    # a data word: its offset (5) leads back over the reserved word to frame B as well
    got = fgraph_entries(mem, base, 11, 0, 24)
    assert got == (FgraphEntry(fn(2) + 8, TASK_LOW + 0x200), FgraphEntry(fn(1) + 4,
                                                                         TASK_LOW + 0x100))
    assert fgraph_entries(mem, base, 10, 0, 24) == got
    # a malformed offset stops the walk, a missing page too; never an exception
    bad = SparseMemory([(base, (0x3FF).to_bytes(8, "little"))])
    assert fgraph_entries(bad, base, 1, 0, 24) == ()
    assert fgraph_entries(SparseMemory(), base, 5, 0, 24) == ()


def test_stack_nesting_task_irq_overflow_and_sdei():
    """§25 20: overflow -> irq -> task, and sdei_critical -> sdei_normal -> task."""
    task = SyntheticStack("task", TASK_LOW)
    irq = SyntheticStack("irq", IRQ_LOW)
    ovf = SyntheticStack("overflow", OVF_LOW, 0x1000)
    final = task.final_regs()
    t = task.record((final & ~0xF) - 0x100, final, fn(4))
    i = irq.record(irq.high - 0x100, t, fn(3))
    o = ovf.record(ovf.high - 0x100, i, fn(2))
    stacks = TaskStacks.for_task_stack(task.low, task.high, extra=(irq.info, ovf.info))
    trace = unwind(ctx_for(task, irq, ovf), stacks, start_from_task(fn(1), o), Mode.SFRAME)
    assert trace.reliable, trace.reasons
    assert [f.stack for f in trace.frames] == [None, "overflow", "irq", "task"]
    assert [e.detail for e in trace.events if e.kind is EventKind.STACK_SWITCH] == [
        "overflow -> irq", "irq -> task"]
    normal = SyntheticStack("sdei_normal", IRQ_LOW + 0x10000)
    critical = SyntheticStack("sdei_critical", IRQ_LOW + 0x20000)
    n = normal.record(normal.high - 0x100, t, fn(3))
    c = critical.record(critical.high - 0x100, n, fn(2))
    stacks = TaskStacks.for_task_stack(task.low, task.high, extra=(
        StackInfo("irq", 0, 0), StackInfo("overflow", 0, 0), normal.info, critical.info))
    trace = unwind(ctx_for(task, normal, critical), stacks, start_from_task(fn(1), c),
                   Mode.UPSTREAM)
    assert trace.reliable and [f.stack for f in trace.frames] == [
        None, "sdei_critical", "sdei_normal", "task"]


def test_efi_runtime_stack_nesting():
    """__efi_rt_asm_wrapper links a frame record on the task stack, then runs the firmware
    call on the EFI runtime stack: a walk from there is reliable only when the EFI stack is
    among the task's stacks (current_in_efi()); otherwise the record is off every
    accessible stack: unreliable, never a wrong reliable trace."""
    task = SyntheticStack("task", TASK_LOW)
    efi = SyntheticStack("efi", IRQ_LOW + 0x30000)
    final = task.final_regs()
    wrapper = task.record((final & ~0xF) - 0x100, final, fn(4))
    inner = efi.record(efi.high - 0x100, wrapper, fn(3))
    with_efi = TaskStacks.for_task_stack(task.low, task.high, extra=(
        StackInfo("irq", 0, 0), StackInfo("overflow", 0, 0), efi.info))
    for mode in (Mode.UPSTREAM, Mode.SFRAME):
        trace = unwind(ctx_for(task, efi), with_efi, start_from_task(fn(2), inner), mode)
        assert trace.reliable, trace.reasons
        assert [f.stack for f in trace.frames] == [None, "efi", "task"]
    without = TaskStacks.for_task_stack(task.low, task.high)
    trace = unwind(ctx_for(task, efi), without, start_from_task(fn(2), inner), Mode.SFRAME)
    assert not trace.reliable and len(trace.frames) == 1


def test_never_scheduled_kthread():
    """§25 21: copy_thread leaves cpu_context.fp = the FINAL record, pc = ret_from_fork."""
    task = SyntheticStack("task", TASK_LOW)
    final = task.final_regs()
    stacks = TaskStacks.for_task_stack(task.low, task.high)
    ctx = ctx_for(task)
    ctx.is_return_site = lambda pc: False  # (T) is not a return address: not checked
    for mode in (Mode.UPSTREAM, Mode.SFRAME, Mode.FP_ONLY):
        trace = unwind(ctx, stacks, start_from_task(fn(9), final), mode)
        assert names(trace) == ["f9+0x0/0x100 (T)"] and trace.reliable, trace.reasons


def test_leaf_annotated_code_that_calls():
    """§17.2 / §25 24: a function annotated SYM_LEAF (one row: RA in LR) that in fact builds a
    frame record and calls: after the callee returned, LR is stale and points into the
    function itself, so the walk reports it twice ((P) then (L)).  The row at the stale
    return site says "RA in LR", which no function suspended in a call can be: unreliable."""
    task = SyntheticStack("task", TASK_LOW)
    final = task.final_regs()
    caller = task.record((final & ~0xF) - 0x100, final, fn(42) + 0x10)
    own = task.record(caller - 0x40, caller, fn(41) + 0x20)  # F's own record
    leaf = sp_row(0, None, None)
    rows = {fn(40) + off: leaf for off in range(0, 0x100, 4)}
    regs = Regs(pc=fn(40) + 0x30, sp=own, fp=own, lr=fn(40) + 0x18)  # stale LR into F
    stacks = TaskStacks.for_task_stack(task.low, task.high, is_current=True)
    trace = unwind(ctx_for(task, rows=rows), stacks, start_from_regs(regs), Mode.SFRAME)
    assert names(trace) == ["f40+0x30/0x100 (P)", "f40+0x18/0x100 (L)", "f41+0x20/0x100",
                            "f42+0x10/0x100"]
    assert [(r.code, r.index) for r in trace.reasons] == [("frame-shape", 1)]


def test_closed_call_targets():
    """A direct BL to a function that can only return must be the callee frame's function;
    a BL to a function that may tail-call (B out, BR, or falling through) is not checked."""
    from sfunwind.unwind.returnsites import ReturnSites

    def enc(*words: int) -> bytes:
        return b"".join(w.to_bytes(4, "little") for w in words)

    def bl(frm: int, to: int) -> int:
        return 0x94000000 | (((to - frm) >> 2) & 0x3FFFFFF)

    def b(frm: int, to: int) -> int:
        return 0x14000000 | (((to - frm) >> 2) & 0x3FFFFFF)

    ret = 0xD65F03C0
    nop = 0xD503201F
    # 0x00 closed: nop; ret     0x10 tail-calls 0x00: nop; b 0x00     0x20 falls through
    # 0x30 caller: bl 0x00; bl 0x10; bl 0x20; blr x1; ret
    code = enc(nop, ret, nop, nop, nop, b(TEXT + 0x14, TEXT), nop, nop, nop, nop, nop, nop,
               bl(TEXT + 0x30, TEXT), bl(TEXT + 0x34, TEXT + 0x10), bl(TEXT + 0x38, TEXT + 0x20),
               0xD63F0020, ret)
    table = ReturnSites.from_code([(".text", TEXT, code)],
                                  functions=[(TEXT, 8), (TEXT + 0x10, 8), (TEXT + 0x20, 8),
                                             (TEXT + 0x30, 20)])
    assert table.closed_call_target(TEXT + 0x34) == TEXT
    assert table.closed_call_target(TEXT + 0x38) is None  # 0x10 tail-calls
    assert table.closed_call_target(TEXT + 0x3C) is None  # 0x20 falls through (no ret)
    assert table.closed_call_target(TEXT + 0x40) is None  # indirect
    assert table.relocated(0x1000).closed_call_target(TEXT + 0x1034) == TEXT + 0x1000
    # in a walk: f1's return address follows a call to f0 = the callee: fine; to f5: not
    stack, task, start = sleeping_task(2)
    ctx = ctx_for(stack)
    ctx.closed_call_target = lambda pc: fn(0) if pc == fn(1) + 0x10 else None
    assert unwind(ctx, task, start, Mode.SFRAME).reliable
    ctx.closed_call_target = lambda pc: fn(5) if pc == fn(1) + 0x10 else None
    trace = unwind(ctx, task, start, Mode.UPSTREAM)
    assert [(r.code, r.index) for r in trace.reasons] == [("call-target", 1)]
    assert "call to f5, " in trace.reasons[0].message


def test_frame_shape_skipped_frame_is_caught_exactly():
    """A corrupted fp that skips one whole frame record lands on a valid record above: the
    caller's SP-based CFA row puts its record exactly at callee CFA + frame size, so the
    skip shows (no metadata about the skipped function is needed)."""
    stack, task, start = sleeping_task(3)
    body = sp_row(0x40, -0x40, -0x38)
    rows = {start.pc - 4: body, fn(1) + 0x10 - 4: body, fn(2) + 0x10 - 4: body}
    ctx = ctx_for(stack, rows=rows)
    assert unwind(ctx, task, start, Mode.SFRAME).reliable
    rec_a = start.fp
    stack.put(rec_a, rec_a + 0x80)  # skip f1's own record: point at f2's
    ctx = ctx_for(stack, rows=rows)
    trace = unwind(ctx, task, start, Mode.SFRAME)
    assert names(trace) == ["f0+0x8/0x100 (T)", "f1+0x10/0x100", "f3+0x10/0x100"]
    assert [(r.code, r.index) for r in trace.reasons] == [("frame-shape", 1)]
    assert unwind(ctx, task, start, Mode.UPSTREAM).reliable  # the FP chain alone cannot tell


def test_task_start_record_placed_by_saved_sp():
    """cpu_context.sp is __switch_to's SP at its call to cpu_switch_to: with an SP-based
    CFA row at that call, __switch_to's record must sit exactly at sp + N + fp offset."""
    stack, task, start = sleeping_task(2)
    body = sp_row(0x40, -0x40, -0x38)
    rows = {start.pc - 4: body, fn(1) + 0x10 - 4: body}
    ctx = ctx_for(stack, rows=rows)
    good = start_from_task(start.pc, start.fp, start.fp)
    assert unwind(ctx, task, good, Mode.SFRAME).reliable
    bad = start_from_task(start.pc, start.fp, start.fp - 0x10)
    trace = unwind(ctx, task, bad, Mode.SFRAME)
    assert [(r.code, r.index) for r in trace.reasons] == [("frame-shape", 0)]
    assert unwind(ctx, task, bad, Mode.UPSTREAM).reliable  # the walk never uses the sp
