/*
 * Exception handlers of the truth image, shaped like arch/arm64/kernel/entry-common.c and
 * irq.c of Linux 7.2: el1h_64_irq_handler -> el1_interrupt -> do_interrupt_handler ->
 * call_on_irq_stack (when still on the task stack) -> the root IRQ handler on the IRQ stack.
 * A nested IRQ taken while on the IRQ stack calls the handler directly, as the kernel does.
 */
#include "truth.h"

#define noinline __attribute__((noinline))

volatile unsigned long truth_irq_action;
volatile unsigned long truth_irq_count;
volatile unsigned long truth_sync_count;
unsigned long truth_irq_nesting;
struct pt_regs *truth_irq_regs;

static inline unsigned long current_stack_pointer(void)
{
	unsigned long sp;

	asm volatile("mov %0, sp" : "=r"(sp));
	return sp;
}

static inline int on_thread_stack(void)
{
	return current_stack_pointer() - (unsigned long)init_stack < THREAD_SIZE;
}

/* The device's action handler (a timer tick): the harness snapshots at its callee. */
noinline void truth_timer_interrupt(struct pt_regs *regs, unsigned long irqnr)
{
	truth_irq_count += irqnr;
	truth_snapshot_point(regs);
	asm volatile("" ::: "memory");
}

noinline void handle_irq_desc(struct pt_regs *regs, unsigned long irqnr)
{
	if (truth_irq_action == IRQ_ACTION_WORK) {
		truth_irq_action = IRQ_ACTION_SNAPSHOT;
		irq_work();		/* "softirq" work: further IRQs may nest here */
		return;
	}
	truth_timer_interrupt(regs, irqnr);
}

noinline void generic_handle_domain_irq(struct pt_regs *regs, unsigned long hwirq)
{
	handle_irq_desc(regs, hwirq + 16);
	truth_irq_count++;
}

/* gic_handle_irq(): the root handler that call_on_irq_stack() runs on the IRQ stack. */
noinline void gic_handle_irq(struct pt_regs *regs)
{
	unsigned long irqnr = 27;	/* the arch timer PPI */

	generic_handle_domain_irq(regs, irqnr);
}

static noinline void do_interrupt_handler(struct pt_regs *regs,
					  void (*handler)(struct pt_regs *))
{
	struct pt_regs *old_regs = truth_irq_regs;

	truth_irq_regs = regs;
	if (on_thread_stack())
		call_on_irq_stack(regs, handler);
	else
		handler(regs);
	truth_irq_regs = old_regs;
}

static noinline void el1_interrupt(struct pt_regs *regs, void (*handler)(struct pt_regs *))
{
	truth_irq_nesting++;
	do_interrupt_handler(regs, handler);
	truth_irq_nesting--;
}

void el1h_64_irq_handler(struct pt_regs *regs)
{
	el1_interrupt(regs, gic_handle_irq);
}

/* A BRK from EL1 (BUG/WARN): report, do some work, and resume after the BRK. */
static noinline void el1_dbg(struct pt_regs *regs, unsigned long esr)
{
	truth_sync_count++;
	bug_handler_work(regs);
	if ((esr >> 26) == 0x3c)	/* ESR_ELx_EC_BRK64 */
		regs->pc += 4;
}

void el1h_64_sync_handler(struct pt_regs *regs)
{
	unsigned long esr;

	asm volatile("mrs %0, esr_el1" : "=r"(esr));
	el1_dbg(regs, esr);
}
