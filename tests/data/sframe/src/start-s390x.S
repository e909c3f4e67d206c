/* Outermost frame: the return address is undefined (SFrame "RA undefined"). */
	.text
	.globl	_start
	.type	_start, @function
	.p2align 3
_start:
	.cfi_startproc
	.cfi_undefined %r14
	lgr	%r2, %r15
	aghi	%r15, -160
	.cfi_adjust_cfa_offset 160
	lghi	%r11, 0
	brasl	%r14, cmain
	j	.
	.cfi_endproc
	.size	_start, .-_start
	.section .note.GNU-stack,"",@progbits
