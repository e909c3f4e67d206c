/* Hand-written CFI directives that GCC rarely emits, for the refusal and edge rules.
   Assembled for aarch64 only (this file uses AArch64 instructions). */
	.text
	.globl	remember_first
	.type	remember_first, %function
remember_first:
	.cfi_startproc
	.cfi_remember_state
	stp	x29, x30, [sp, -16]!
	.cfi_def_cfa_offset 16
	.cfi_offset 29, -16
	.cfi_offset 30, -8
	ldp	x29, x30, [sp], 16
	.cfi_restore_state
	ret
	.cfi_endproc
	.size	remember_first, .-remember_first

	.globl	ra_in_register
	.type	ra_in_register, %function
ra_in_register:
	.cfi_startproc
	mov	x9, x30
	.cfi_register 30, 9
	bl	external
	mov	x30, x9
	.cfi_restore 30
	ret
	.cfi_endproc
	.size	ra_in_register, .-ra_in_register

	.globl	cfa_x9
	.type	cfa_x9, %function
cfa_x9:
	.cfi_startproc
	mov	x9, sp
	.cfi_def_cfa_register 9
	sub	sp, sp, 32
	mov	sp, x9
	.cfi_def_cfa_register 31
	ret
	.cfi_endproc
	.size	cfa_x9, .-cfa_x9

	.globl	escape_expr
	.type	escape_expr, %function
escape_expr:
	.cfi_startproc
	sub	sp, sp, 16
	.cfi_escape 0x0f, 0x03, 0x8f, 0x10, 0x06
	add	sp, sp, 16
	.cfi_def_cfa 31, 0
	ret
	.cfi_endproc
	.size	escape_expr, .-escape_expr

	.globl	escape_nops
	.type	escape_nops, %function
escape_nops:
	.cfi_startproc
	stp	x29, x30, [sp, -16]!
	.cfi_def_cfa_offset 16
	.cfi_offset 29, -16
	.cfi_offset 30, -8
	.cfi_escape 0x00, 0x00
	ldp	x29, x30, [sp], 16
	.cfi_restore 30
	.cfi_restore 29
	.cfi_def_cfa_offset 0
	ret
	.cfi_endproc
	.size	escape_nops, .-escape_nops

	.globl	fp_only
	.type	fp_only, %function
fp_only:
	.cfi_startproc
	str	x29, [sp, -16]!
	.cfi_def_cfa_offset 16
	.cfi_offset 29, -16
	ldr	x29, [sp], 16
	.cfi_restore 29
	.cfi_def_cfa_offset 0
	ret
	.cfi_endproc
	.size	fp_only, .-fp_only

	.globl	outermost
	.type	outermost, %function
outermost:
	.cfi_startproc
	.cfi_undefined 30
	mov	x29, 0
	bl	external
	b	outermost
	.cfi_endproc
	.size	outermost, .-outermost

	.globl	same_value_ra
	.type	same_value_ra, %function
same_value_ra:
	.cfi_startproc
	paciasp
	.cfi_negate_ra_state
	stp	x29, x30, [sp, -32]!
	.cfi_def_cfa_offset 32
	.cfi_offset 29, -32
	.cfi_offset 30, -24
	mov	x29, sp
	.cfi_def_cfa_register 29
	bl	external
	ldp	x29, x30, [sp], 32
	.cfi_same_value 30
	.cfi_same_value 29
	.cfi_def_cfa 31, 0
	autiasp
	.cfi_negate_ra_state
	ret
	.cfi_endproc
	.size	same_value_ra, .-same_value_ra

	.globl	bkey_fn
	.type	bkey_fn, %function
bkey_fn:
	.cfi_startproc
	.cfi_b_key_frame
	pacibsp
	.cfi_negate_ra_state
	stp	x29, x30, [sp, -16]!
	.cfi_def_cfa_offset 16
	.cfi_offset 29, -16
	.cfi_offset 30, -8
	bl	external
	ldp	x29, x30, [sp], 16
	.cfi_restore 30
	.cfi_restore 29
	.cfi_def_cfa_offset 0
	autibsp
	.cfi_negate_ra_state
	ret
	.cfi_endproc
	.size	bkey_fn, .-bkey_fn

	.globl	sigtramp_like
	.type	sigtramp_like, %function
sigtramp_like:
	.cfi_startproc
	.cfi_signal_frame
	.cfi_escape 0x0f, 0x03, 0x8f, 0x10, 0x06
	nop
	ret
	.cfi_endproc
	.size	sigtramp_like, .-sigtramp_like

	.globl	val_offset_sp
	.type	val_offset_sp, %function
val_offset_sp:
	.cfi_startproc
	sub	sp, sp, 16
	.cfi_def_cfa_offset 16
	.cfi_val_offset 31, 0
	add	sp, sp, 16
	.cfi_def_cfa_offset 0
	ret
	.cfi_endproc
	.size	val_offset_sp, .-val_offset_sp

	.globl	val_offset_fp
	.type	val_offset_fp, %function
val_offset_fp:
	.cfi_startproc
	.cfi_val_offset 29, -16
	ret
	.cfi_endproc
	.size	val_offset_fp, .-val_offset_fp

	.globl	undefined_fp
	.type	undefined_fp, %function
undefined_fp:
	.cfi_startproc
	.cfi_undefined 29
	ret
	.cfi_endproc
	.size	undefined_fp, .-undefined_fp

	.globl	restore_at_entry
	.type	restore_at_entry, %function
restore_at_entry:
	.cfi_startproc
	.cfi_restore 30
	nop
	.cfi_def_cfa_offset 0
	ret
	.cfi_endproc
	.size	restore_at_entry, .-restore_at_entry

	.globl	big_offsets
	.type	big_offsets, %function
big_offsets:
	.cfi_startproc
	sub	sp, sp, #0x10000
	.cfi_def_cfa_offset 65536
	stp	x29, x30, [sp, -16]!
	.cfi_def_cfa_offset 65552
	.cfi_offset 29, -65552
	.cfi_offset 30, -65544
	ldp	x29, x30, [sp], 16
	.cfi_restore 29
	.cfi_restore 30
	.cfi_def_cfa_offset 65536
	add	sp, sp, #0x10000
	.cfi_def_cfa_offset 0
	ret
	.cfi_endproc
	.size	big_offsets, .-big_offsets

	.globl	neg_cfa
	.type	neg_cfa, %function
neg_cfa:
	.cfi_startproc
	.cfi_def_cfa 29, -16
	nop
	.cfi_def_cfa 31, 0
	ret
	.cfi_endproc
	.size	neg_cfa, .-neg_cfa

	.globl	pauth_lr
	.type	pauth_lr, %function
pauth_lr:
	.cfi_startproc
	hint	39
	.cfi_negate_ra_state_with_pc
	stp	x29, x30, [sp, -16]!
	.cfi_def_cfa_offset 16
	.cfi_offset 29, -16
	.cfi_offset 30, -8
	ldp	x29, x30, [sp], 16
	.cfi_restore 30
	.cfi_restore 29
	.cfi_def_cfa_offset 0
	ret
	.cfi_endproc
	.size	pauth_lr, .-pauth_lr
