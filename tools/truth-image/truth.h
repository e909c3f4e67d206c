/* Shared definitions of the truth image: the arm64 kernel's pt_regs layout (the 320-byte
 * variant of Linux 7.2 as built by Debian with gcc 16: stackframe at 296), frame-record
 * metadata types, stack sizes, and the harness <-> image interface. */
#ifndef TRUTH_H
#define TRUTH_H

#define PT_REGS_SIZE 320
#define S_X0 0
#define S_FP 232
#define S_LR 240
#define S_SP 248
#define S_PC 256
#define S_PSTATE 264
#define S_STACKFRAME 296
#define S_STACKFRAME_TYPE 312

#define FRAME_META_TYPE_NONE 0
#define FRAME_META_TYPE_FINAL 1
#define FRAME_META_TYPE_PT_REGS 2

#define THREAD_SIZE 16384
#define IRQ_STACK_SIZE THREAD_SIZE

/* What the next injected IRQ does (written by the harness into truth_irq_action). */
#define IRQ_ACTION_SNAPSHOT 0 /* run the handlers to truth_snapshot_point */
#define IRQ_ACTION_WORK 1     /* run "softirq" work on the IRQ stack, then return */

#ifndef __ASSEMBLER__
struct frame_record {
	unsigned long fp;
	unsigned long lr;
};

struct frame_record_meta {
	struct frame_record record;
	unsigned long type;
};

struct pt_regs {
	unsigned long regs[31];
	unsigned long sp;
	unsigned long pc;
	unsigned long pstate;
	unsigned long orig_x0;
	int syscallno;
	unsigned int pmr;
	unsigned long sdei_ttbr1;
	struct frame_record_meta stackframe;
};

_Static_assert(sizeof(struct pt_regs) == PT_REGS_SIZE, "pt_regs size");
_Static_assert(__builtin_offsetof(struct pt_regs, stackframe) == S_STACKFRAME, "stackframe");
_Static_assert(__builtin_offsetof(struct pt_regs, pc) == S_PC, "pc");

typedef unsigned long size_t;

extern char init_stack[THREAD_SIZE];
extern char irq_stack[IRQ_STACK_SIZE];
extern unsigned long irq_stack_ptr;
extern volatile unsigned long truth_irq_action;
extern volatile unsigned long truth_irq_count;

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
unsigned long truth_leaf_checksum(const void *buf, size_t n);

void call_on_irq_stack(struct pt_regs *regs, void (*func)(struct pt_regs *));
void truth_snapshot_point(struct pt_regs *regs);

/* workload.c */
void irq_work(void);
void bug_handler_work(struct pt_regs *regs);
unsigned long task_main(void);
#endif

#endif
