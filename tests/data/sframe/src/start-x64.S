/* Outermost frame: the return address is undefined (SFrame "RA undefined"). */
	.text
	.globl	_start
	.type	_start, @function
_start:
	.cfi_startproc
	.cfi_undefined rip
	xorl	%ebp, %ebp
	movq	%rsp, %rdi
	andq	$-16, %rsp
	call	cmain
	hlt
	.cfi_endproc
	.size	_start, .-_start
	.section .note.GNU-stack,"",@progbits
