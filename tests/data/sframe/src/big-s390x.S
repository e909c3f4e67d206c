/* A function over 64 KiB: FRE start addresses need 4 bytes (SFRAME_FRE_TYPE_ADDR4). */
	.text
	.globl	_start
	.type	_start, @function
	.p2align 3
_start:
	.cfi_startproc
	.cfi_undefined %r14
	aghi	%r15, -160
	.cfi_adjust_cfa_offset 160
	brasl	%r14, huge
	j	.
	.cfi_endproc
	.size	_start, .-_start

	.globl	huge
	.type	huge, @function
	.p2align 3
huge:
	.cfi_startproc
	stmg	%r14, %r15, 112(%r15)
	.cfi_offset %r14, -48
	.cfi_offset %r15, -40
	aghi	%r15, -160
	.cfi_def_cfa_offset 320
	.rept	16500
	nopr
	.endr
	stg	%r11, 88+160(%r15)	# past 32 KiB
	.cfi_offset %r11, -72
	.rept	16500
	nopr
	.endr
	lg	%r11, 88+160(%r15)	# past 64 KiB
	.cfi_restore %r11
	lmg	%r14, %r15, 272(%r15)
	.cfi_restore %r15
	.cfi_restore %r14
	.cfi_def_cfa_offset 160
	br	%r14
	.cfi_endproc
	.size	huge, .-huge

	.globl	after_huge
	.type	after_huge, @function
	.p2align 3
after_huge:
	.cfi_startproc
	br	%r14
	.cfi_endproc
	.size	after_huge, .-after_huge
	.section .note.GNU-stack,"",@progbits
