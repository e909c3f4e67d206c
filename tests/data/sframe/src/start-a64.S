/* Outermost frame: the return address is undefined (SFrame "RA undefined"). */
	.text
	.globl	_start
	.type	_start, %function
_start:
	.cfi_startproc
	.cfi_undefined x30
	mov	x29, #0
	mov	x30, #0
	mov	x0, sp
	bl	cmain
	brk	#0
	.cfi_endproc
	.size	_start, .-_start
	.section .note.GNU-stack,"",%progbits
