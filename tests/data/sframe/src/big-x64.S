/* A function over 64 KiB: FRE start addresses need 4 bytes (SFRAME_FRE_TYPE_ADDR4). */
	.text
	.globl	_start
	.type	_start, @function
	.p2align 4
_start:
	.cfi_startproc
	.cfi_undefined rip
	xorl	%ebp, %ebp
	call	huge
	hlt
	.cfi_endproc
	.size	_start, .-_start

	.globl	huge
	.type	huge, @function
	.p2align 4
huge:
	.cfi_startproc
	pushq	%rbp
	.cfi_def_cfa_offset 16
	.cfi_offset %rbp, -16
	movq	%rsp, %rbp
	.cfi_def_cfa_register %rbp
	.rept	33000
	nop
	.endr
	pushq	%rbx			# past 32 KiB
	.cfi_offset %rbx, -24
	.rept	33000
	nop
	.endr
	popq	%rbx			# past 64 KiB
	popq	%rbp
	.cfi_def_cfa %rsp, 8
	ret
	.cfi_endproc
	.size	huge, .-huge

	.globl	after_huge
	.type	after_huge, @function
	.p2align 4
after_huge:
	.cfi_startproc
	ret
	.cfi_endproc
	.size	after_huge, .-after_huge
	.section .note.GNU-stack,"",@progbits
