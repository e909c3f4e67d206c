/* Hand-written AArch64 functions with CFI that compilers rarely emit. */
	.text

/* .cfi_remember_state / .cfi_restore_state around an early return */
	.globl	early_ret
	.type	early_ret, %function
	.p2align 2
early_ret:
	.cfi_startproc
	stp	x29, x30, [sp, #-32]!
	.cfi_def_cfa_offset 32
	.cfi_offset 29, -32
	.cfi_offset 30, -24
	mov	x29, sp
	cbz	w0, 1f
	.cfi_remember_state
	ldp	x29, x30, [sp], #32
	.cfi_restore 30
	.cfi_restore 29
	.cfi_def_cfa_offset 0
	ret
1:
	.cfi_restore_state
	str	x19, [sp, #16]
	.cfi_offset 19, -16
	mov	w19, w0
	bl	leaf
	add	w0, w0, w19
	ldr	x19, [sp, #16]
	.cfi_restore 19
	ldp	x29, x30, [sp], #32
	.cfi_restore 30
	.cfi_restore 29
	.cfi_def_cfa_offset 0
	ret
	.cfi_endproc
	.size	early_ret, .-early_ret

/* PAC key A with an FP-based CFA */
	.globl	pac_fp
	.type	pac_fp, %function
	.p2align 2
pac_fp:
	.cfi_startproc
	hint	#25			// paciasp
	.cfi_negate_ra_state
	stp	x29, x30, [sp, #-16]!
	.cfi_def_cfa_offset 16
	.cfi_offset 29, -16
	.cfi_offset 30, -8
	mov	x29, sp
	.cfi_def_cfa_register 29
	sub	sp, sp, #64
	bl	leaf
	mov	sp, x29
	.cfi_def_cfa_register 31
	ldp	x29, x30, [sp], #16
	.cfi_restore 30
	.cfi_restore 29
	.cfi_def_cfa_offset 0
	hint	#29			// autiasp
	.cfi_negate_ra_state
	ret
	.cfi_endproc
	.size	pac_fp, .-pac_fp

/* PAC key B */
	.globl	pac_b
	.type	pac_b, %function
	.p2align 2
pac_b:
	.cfi_startproc
	.cfi_b_key_frame
	hint	#27			// pacibsp
	.cfi_negate_ra_state
	stp	x29, x30, [sp, #-16]!
	.cfi_def_cfa_offset 16
	.cfi_offset 29, -16
	.cfi_offset 30, -8
	mov	x29, sp
	bl	leaf
	ldp	x29, x30, [sp], #16
	.cfi_restore 30
	.cfi_restore 29
	.cfi_def_cfa_offset 0
	hint	#31			// autibsp
	.cfi_negate_ra_state
	ret
	.cfi_endproc
	.size	pac_b, .-pac_b

/* the RA in another register: not representable, gas drops the FDE (a gap in the index) */
	.globl	ra_in_x9
	.type	ra_in_x9, %function
	.p2align 2
ra_in_x9:
	.cfi_startproc
	mov	x9, x30
	.cfi_register 30, 9
	bl	leaf
	mov	x30, x9
	.cfi_restore 30
	ret
	.cfi_endproc
	.size	ra_in_x9, .-ra_in_x9

/* a signal trampoline-like frame: the FDE carries the signal attribute */
	.globl	sig_frame
	.type	sig_frame, %function
	.p2align 2
sig_frame:
	.cfi_startproc
	.cfi_signal_frame
	sub	sp, sp, #48
	.cfi_def_cfa_offset 48
	stp	x29, x30, [sp, #32]
	.cfi_offset 29, -16
	.cfi_offset 30, -8
	bl	leaf
	ldp	x29, x30, [sp, #32]
	add	sp, sp, #48
	.cfi_def_cfa_offset 0
	ret
	.cfi_endproc
	.size	sig_frame, .-sig_frame

/* a signal frame whose CFA is a DWARF expression: gas keeps the FDE with 0 FREs */
	.globl	sig_expr
	.type	sig_expr, %function
	.p2align 2
sig_expr:
	.cfi_startproc
	.cfi_signal_frame
	nop
	.cfi_escape 0x0f, 0x03, 0x8f, 0x10, 0x06	// DW_CFA_def_cfa_expression: breg31 16; deref
	nop
	ret
	.cfi_endproc
	.size	sig_expr, .-sig_expr

/* the RA becomes undefined part-way through: an outermost tail (thread entry style) */
	.globl	thread_entry
	.type	thread_entry, %function
	.p2align 2
thread_entry:
	.cfi_startproc
	stp	x29, x30, [sp, #-16]!
	.cfi_def_cfa_offset 16
	.cfi_offset 29, -16
	.cfi_offset 30, -8
	bl	leaf
	.cfi_undefined 30
	mov	x29, #0
	mov	x30, #0
	bl	leaf
	brk	#0
	.cfi_endproc
	.size	thread_entry, .-thread_entry

/* 256 bytes < size < 64 KiB: 2-byte FRE start addresses */
	.globl	medium
	.type	medium, %function
	.p2align 2
medium:
	.cfi_startproc
	stp	x29, x30, [sp, #-16]!
	.cfi_def_cfa_offset 16
	.cfi_offset 29, -16
	.cfi_offset 30, -8
	.rept	100
	nop
	.endr
	ldp	x29, x30, [sp], #16
	.cfi_restore 30
	.cfi_restore 29
	.cfi_def_cfa_offset 0
	ret
	.cfi_endproc
	.size	medium, .-medium

	.section .note.GNU-stack,"",%progbits
