/* A function over 64 KiB: FRE start addresses need 4 bytes (SFRAME_FRE_TYPE_ADDR4). */
	.text
	.globl	_start
	.type	_start, %function
	.p2align 2
_start:
	.cfi_startproc
	.cfi_undefined x30
	mov	x29, #0
	bl	huge
	brk	#0
	.cfi_endproc
	.size	_start, .-_start

	.globl	huge
	.type	huge, %function
	.p2align 2
huge:
	.cfi_startproc
	stp	x29, x30, [sp, #-32]!
	.cfi_def_cfa_offset 32
	.cfi_offset 29, -32
	.cfi_offset 30, -24
	mov	x29, sp
	.rept	8200
	nop
	.endr
	str	x19, [sp, #16]		// past 32 KiB
	.cfi_offset 19, -16
	.rept	8300
	nop
	.endr
	ldr	x19, [sp, #16]		// past 64 KiB
	.cfi_restore 19
	ldp	x29, x30, [sp], #32
	.cfi_restore 30
	.cfi_restore 29
	.cfi_def_cfa_offset 0
	ret
	.cfi_endproc
	.size	huge, .-huge

	.globl	after_huge
	.type	after_huge, %function
	.p2align 2
after_huge:
	.cfi_startproc
	ret
	.cfi_endproc
	.size	after_huge, .-after_huge
	.section .note.GNU-stack,"",%progbits
