/* Hand-written s390x functions with CFI that compilers rarely emit. */
	.text

/* .cfi_remember_state / .cfi_restore_state around an early return */
	.globl	early_ret
	.type	early_ret, @function
	.p2align 3
early_ret:
	.cfi_startproc
	stmg	%r14, %r15, 112(%r15)
	.cfi_offset %r14, -48
	.cfi_offset %r15, -40
	aghi	%r15, -160
	.cfi_def_cfa_offset 320
	cgije	%r2, 0, 1f
	.cfi_remember_state
	lmg	%r14, %r15, 272(%r15)
	.cfi_restore %r15
	.cfi_restore %r14
	.cfi_def_cfa_offset 160
	br	%r14
1:
	.cfi_restore_state
	brasl	%r14, leaf
	lmg	%r14, %r15, 272(%r15)
	.cfi_restore %r15
	.cfi_restore %r14
	.cfi_def_cfa_offset 160
	br	%r14
	.cfi_endproc
	.size	early_ret, .-early_ret

/* a frame-pointer (r11) based CFA */
	.globl	fp_frame
	.type	fp_frame, @function
	.p2align 3
fp_frame:
	.cfi_startproc
	stmg	%r11, %r15, 88(%r15)
	.cfi_offset %r11, -72
	.cfi_offset %r14, -48
	.cfi_offset %r15, -40
	aghi	%r15, -168
	.cfi_def_cfa_offset 328
	lgr	%r11, %r15
	.cfi_def_cfa_register %r11
	brasl	%r14, leaf
	lmg	%r11, %r15, 256(%r11)
	.cfi_restore %r15
	.cfi_restore %r14
	.cfi_restore %r11
	.cfi_def_cfa %r15, 160
	br	%r14
	.cfi_endproc
	.size	fp_frame, .-fp_frame

/* the RA saved in a floating-point register (what gcc does in some leaf-like functions) */
	.globl	ra_in_fpr
	.type	ra_in_fpr, @function
	.p2align 3
ra_in_fpr:
	.cfi_startproc
	ldgr	%f2, %r14
	.cfi_register %r14, %f2
	brasl	%r14, leaf
	lgdr	%r14, %f2
	.cfi_restore %r14
	br	%r14
	.cfi_endproc
	.size	ra_in_fpr, .-ra_in_fpr

/* a signal trampoline-like frame: the FDE carries the signal attribute */
	.globl	sig_frame
	.type	sig_frame, @function
	.p2align 3
sig_frame:
	.cfi_startproc
	.cfi_signal_frame
	stmg	%r14, %r15, 112(%r15)
	.cfi_offset %r14, -48
	.cfi_offset %r15, -40
	aghi	%r15, -160
	.cfi_def_cfa_offset 320
	brasl	%r14, leaf
	lmg	%r14, %r15, 272(%r15)
	.cfi_restore %r15
	.cfi_restore %r14
	.cfi_def_cfa_offset 160
	br	%r14
	.cfi_endproc
	.size	sig_frame, .-sig_frame

	.section .note.GNU-stack,"",@progbits
