/*
 * Entry code of the truth image, written after arch/arm64/kernel/entry.S (Linux 7.2) with the
 * CFI of the 2026 arm64 SFrame series (v6 3/9 and 4/9):
 *
 *  - vectors / el1h_64_irq / el1h_64_sync / ret_to_kernel: no CFI (v6 drops it, §17.3);
 *    kernel_entry saves a 320-byte pt_regs, zeroes stackframe, sets type PT_REGS and points
 *    x29 at it, exactly at the kernel's offsets.
 *  - call_on_irq_stack: full-function CFI as added by v6 3/9 (-DTRUTH_V6_CFI, the
 *    sibcall-v6cfi build), or corrected (CFA = SP+16 right after the pre-indexed stp).
 *  - ret_from_fork: the task's first frame; its pt_regs at the top of init_stack holds the
 *    FINAL frame_record_meta.
 *  - memset/memcpy: unannotated asm (no CFI); memset tail-calls __memset_generic (b).
 *  - memmove/memcmp/strlen/truth_leaf_checksum: SYM_LEAF_FUNC style (.cfi_startproc /
 *    .cfi_endproc only); memmove tail-calls memcpy when the copy can go forwards.
 */
#include "truth.h"

	.macro	sym_func name
	.globl	\name
	.type	\name, %function
	.balign	4
\name:
	.endm

	.macro	sym_end name
	.size	\name, . - \name
	.endm

/* ---- exception vectors (VBAR_EL1) ------------------------------------------------------ */

	.macro	kernel_ventry label
	.balign	128
	sub	sp, sp, #PT_REGS_SIZE
	b	\label
	.endm

	.macro	invalid_ventry
	.balign	128
	brk	#0x99
	.endm

	.text
	.balign	2048
	.globl	vectors
	.type	vectors, %function
vectors:
	invalid_ventry			// el1t sync
	invalid_ventry			// el1t irq
	invalid_ventry			// el1t fiq
	invalid_ventry			// el1t error
	kernel_ventry	el1h_64_sync	// 0x200
	kernel_ventry	el1h_64_irq	// 0x280
	invalid_ventry			// el1h fiq
	invalid_ventry			// el1h error
	invalid_ventry			// el0 64 sync
	invalid_ventry
	invalid_ventry
	invalid_ventry
	invalid_ventry			// el0 32
	invalid_ventry
	invalid_ventry
	invalid_ventry
	.balign	128
	.size	vectors, . - vectors

	.macro	kernel_entry
	stp	x0, x1, [sp, #16 * 0]
	stp	x2, x3, [sp, #16 * 1]
	stp	x4, x5, [sp, #16 * 2]
	stp	x6, x7, [sp, #16 * 3]
	stp	x8, x9, [sp, #16 * 4]
	stp	x10, x11, [sp, #16 * 5]
	stp	x12, x13, [sp, #16 * 6]
	stp	x14, x15, [sp, #16 * 7]
	stp	x16, x17, [sp, #16 * 8]
	stp	x18, x19, [sp, #16 * 9]
	stp	x20, x21, [sp, #16 * 10]
	stp	x22, x23, [sp, #16 * 11]
	stp	x24, x25, [sp, #16 * 12]
	stp	x26, x27, [sp, #16 * 13]
	stp	x28, x29, [sp, #16 * 14]
	add	x21, sp, #PT_REGS_SIZE		// the aborted SP (EL1 entry)
	mrs	x22, elr_el1
	mrs	x23, spsr_el1
	stp	lr, x21, [sp, #S_LR]
	/* A PT_REGS metadata record: the FP chain of the handler ends here. */
	stp	xzr, xzr, [sp, #S_STACKFRAME]
	mov	x0, #FRAME_META_TYPE_PT_REGS
	str	x0, [sp, #S_STACKFRAME_TYPE]
	add	x29, sp, #S_STACKFRAME
	stp	x22, x23, [sp, #S_PC]
	.endm

	.macro	kernel_exit
	ldp	x21, x22, [sp, #S_PC]
	msr	elr_el1, x21
	msr	spsr_el1, x22
	ldp	x0, x1, [sp, #16 * 0]
	ldp	x2, x3, [sp, #16 * 1]
	ldp	x4, x5, [sp, #16 * 2]
	ldp	x6, x7, [sp, #16 * 3]
	ldp	x8, x9, [sp, #16 * 4]
	ldp	x10, x11, [sp, #16 * 5]
	ldp	x12, x13, [sp, #16 * 6]
	ldp	x14, x15, [sp, #16 * 7]
	ldp	x16, x17, [sp, #16 * 8]
	ldp	x18, x19, [sp, #16 * 9]
	ldp	x20, x21, [sp, #16 * 10]
	ldp	x22, x23, [sp, #16 * 11]
	ldp	x24, x25, [sp, #16 * 12]
	ldp	x26, x27, [sp, #16 * 13]
	ldp	x28, x29, [sp, #16 * 14]
	ldr	lr, [sp, #S_LR]
	add	sp, sp, #PT_REGS_SIZE
	eret
	.endm

sym_func el1h_64_sync
	kernel_entry
	mov	x0, sp
	bl	el1h_64_sync_handler
	b	ret_to_kernel
sym_end el1h_64_sync

sym_func el1h_64_irq
	kernel_entry
	mov	x0, sp
	bl	el1h_64_irq_handler
	b	ret_to_kernel
sym_end el1h_64_irq

sym_func ret_to_kernel
	kernel_exit
sym_end ret_to_kernel

/* ---- call_on_irq_stack(regs, func): v6 3/9's CFI (TRUTH_V6_CFI) or the corrected one --- */

sym_func call_on_irq_stack
	.cfi_startproc
	mrs	x9, daif
	msr	daifset, #3
	/* Create a frame record to save our LR and SP (implicit in FP) */
	stp	x29, x30, [sp, #-16]!
#ifndef TRUTH_V6_CFI
	/*
	 * Corrected CFI: the pre-indexed stp moved SP down by 16, so the CFA is SP+16 from
	 * here on, and the record is already stored.  v6 3/9 as posted (TRUTH_V6_CFI) says
	 * nothing until after the mov, leaving CFA = SP+0 at +0xc: 16 bytes off.
	 */
	.cfi_def_cfa_offset 16
	.cfi_offset 29, -16
	.cfi_offset 30, -8
#endif
	mov	x29, sp
	.cfi_def_cfa 29, 16
#ifdef TRUTH_V6_CFI
	.cfi_offset 29, -16
	.cfi_offset 30, -8
#endif
	adrp	x16, irq_stack_ptr
	ldr	x16, [x16, :lo12:irq_stack_ptr]
	/* Move to the new stack and call the function there */
	add	sp, x16, #IRQ_STACK_SIZE
	msr	daif, x9
	blr	x1
	/* Restore the SP from the FP, and restore the FP and LR from the frame record. */
	msr	daifset, #3
	mov	sp, x29
	ldp	x29, x30, [sp], #16
	.cfi_restore 29
	.cfi_restore 30
	.cfi_def_cfa 31, 0
	msr	daif, x9
	ret
	.cfi_endproc
sym_end call_on_irq_stack

/* ---- the task: pt_regs with a FINAL record at the top of init_stack (copy_thread) ---------- */

sym_func ret_from_fork
	adrp	x0, init_stack
	add	x0, x0, :lo12:init_stack
	mov	x1, #(THREAD_SIZE - PT_REGS_SIZE)
	add	x0, x0, x1
	mov	sp, x0
	add	x1, x0, #PT_REGS_SIZE
1:	stp	xzr, xzr, [x1, #-16]!
	cmp	x1, x0
	b.ne	1b
	mov	x1, #FRAME_META_TYPE_FINAL
	str	x1, [sp, #S_STACKFRAME_TYPE]
	add	x29, sp, #S_STACKFRAME
	mov	x30, xzr
	/* this CPU's IRQ stack: the static one, unless the loader preset irq_stack_ptr */
	adrp	x2, irq_stack_ptr
	ldr	x1, [x2, :lo12:irq_stack_ptr]
	cbnz	x1, 2f
	adrp	x1, irq_stack
	add	x1, x1, :lo12:irq_stack
	str	x1, [x2, :lo12:irq_stack_ptr]
2:	bl	task_main
	adrp	x1, truth_result
	str	x0, [x1, :lo12:truth_result]
	.globl	truth_task_done
truth_task_done:
	brk	#0x77
	b	truth_task_done
sym_end ret_from_fork

/* The harness stops at the first instruction of this function (never executed). */
sym_func truth_snapshot_point
	brk	#0x55
	ret
sym_end truth_snapshot_point

/* ---- unannotated asm: memset (tail call to __memset_generic), memcpy -------------------- */

sym_func memset
	b	__memset_generic
sym_end memset

sym_func __memset_generic
	mov	x3, x0
	and	w1, w1, #0xff
	cmp	x2, #16
	b.lo	3f
	orr	w1, w1, w1, lsl #8
	orr	w1, w1, w1, lsl #16
	orr	x1, x1, x1, lsl #32
1:	stp	x1, x1, [x3], #16
	sub	x2, x2, #16
	cmp	x2, #16
	b.hs	1b
3:	cbz	x2, 5f
4:	strb	w1, [x3], #1
	subs	x2, x2, #1
	b.ne	4b
5:	ret
sym_end __memset_generic

sym_func memcpy
	mov	x3, x0
	cmp	x2, #16
	b.lo	3f
1:	ldp	x4, x5, [x1], #16
	stp	x4, x5, [x3], #16
	sub	x2, x2, #16
	cmp	x2, #16
	b.hs	1b
3:	cbz	x2, 5f
4:	ldrb	w4, [x1], #1
	strb	w4, [x3], #1
	subs	x2, x2, #1
	b.ne	4b
5:	ret
sym_end memcpy

/* ---- leaf asm with SYM_LEAF_FUNC CFI (.cfi_startproc/.cfi_endproc only) ------------------ */

sym_func memmove
	.cfi_startproc
	sub	x3, x0, x1
	cmp	x3, x2
	b.hs	memcpy			// dst below src or no overlap: tail call
	add	x1, x1, x2
	add	x3, x0, x2
	cbz	x2, 2f
1:	ldrb	w4, [x1, #-1]!
	strb	w4, [x3, #-1]!
	subs	x2, x2, #1
	b.ne	1b
2:	ret
	.cfi_endproc
sym_end memmove

sym_func memcmp
	.cfi_startproc
	cbz	x2, 2f
1:	ldrb	w3, [x0], #1
	ldrb	w4, [x1], #1
	subs	w3, w3, w4
	b.ne	3f
	subs	x2, x2, #1
	b.ne	1b
2:	mov	w0, #0
	ret
3:	mov	w0, w3
	ret
	.cfi_endproc
sym_end memcmp

sym_func strlen
	.cfi_startproc
	mov	x1, x0
1:	ldrb	w2, [x1], #1
	cbnz	w2, 1b
	sub	x0, x1, x0
	sub	x0, x0, #1
	ret
	.cfi_endproc
sym_end strlen

/* unsigned long truth_leaf_checksum(const void *buf, size_t n): rotate-xor over bytes */
sym_func truth_leaf_checksum
	.cfi_startproc
	mov	x2, #0x9e37
	cbz	x1, 2f
1:	ldrb	w3, [x0], #1
	eor	x2, x3, x2, ror #59
	subs	x1, x1, #1
	b.ne	1b
2:	mov	x0, x2
	ret
	.cfi_endproc
sym_end truth_leaf_checksum

/* ---- stacks --------------------------------------------------------------------------- */

	.bss
	.balign	THREAD_SIZE
	.globl	init_stack
	.type	init_stack, %object
init_stack:
	.space	THREAD_SIZE
	.size	init_stack, THREAD_SIZE
	.globl	irq_stack
	.type	irq_stack, %object
irq_stack:
	.space	IRQ_STACK_SIZE
	.size	irq_stack, IRQ_STACK_SIZE
	.balign	8
	.globl	irq_stack_ptr
	.type	irq_stack_ptr, %object
irq_stack_ptr:
	.space	8
	.size	irq_stack_ptr, 8
	.globl	truth_result
	.type	truth_result, %object
truth_result:
	.space	8
	.size	truth_result, 8
