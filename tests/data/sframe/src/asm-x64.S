/* Hand-written x86-64 functions with CFI that compilers rarely emit. */
	.text

/* .cfi_remember_state / .cfi_restore_state around an early return */
	.globl	early_ret
	.type	early_ret, @function
	.p2align 4
early_ret:
	.cfi_startproc
	pushq	%rbp
	.cfi_def_cfa_offset 16
	.cfi_offset %rbp, -16
	movq	%rsp, %rbp
	.cfi_def_cfa_register %rbp
	testl	%edi, %edi
	jz	1f
	.cfi_remember_state
	popq	%rbp
	.cfi_def_cfa %rsp, 8
	ret
1:
	.cfi_restore_state
	pushq	%rbx
	.cfi_offset %rbx, -24
	subq	$8, %rsp
	movl	%edi, %ebx
	call	leaf
	addl	%ebx, %eax
	movq	-8(%rbp), %rbx
	leave
	.cfi_def_cfa %rsp, 8
	ret
	.cfi_endproc
	.size	early_ret, .-early_ret

/* stack realignment with a DRAP register, the way GCC does it: FLEX FDEs in SFrame v3
   (a non-SP/FP CFA register, a dereferencing CFA expression, FP as an expression) */
	.globl	drap
	.type	drap, @function
	.p2align 4
drap:
	.cfi_startproc
	leaq	8(%rsp), %r10
	.cfi_def_cfa %r10, 0
	andq	$-32, %rsp
	pushq	-8(%r10)
	pushq	%rbp
	movq	%rsp, %rbp
	.cfi_escape 0x10, 0x06, 0x02, 0x76, 0x00	// DW_CFA_expression rbp: breg6 0
	pushq	%r10
	.cfi_escape 0x0f, 0x03, 0x76, 0x78, 0x06	// DW_CFA_def_cfa_expression: breg6 -8; deref
	subq	$40, %rsp
	call	leaf
	addq	$40, %rsp
	popq	%r10
	.cfi_def_cfa %r10, 0
	popq	%rbp
	leaq	-8(%r10), %rsp
	.cfi_def_cfa %rsp, 8
	ret
	.cfi_endproc
	.size	drap, .-drap

/* a signal trampoline-like frame: the FDE carries the signal attribute */
	.globl	sig_frame
	.type	sig_frame, @function
	.p2align 4
sig_frame:
	.cfi_startproc
	.cfi_signal_frame
	subq	$40, %rsp
	.cfi_def_cfa_offset 48
	call	leaf
	addq	$40, %rsp
	.cfi_def_cfa_offset 8
	ret
	.cfi_endproc
	.size	sig_frame, .-sig_frame

/* a signal frame whose CFA is a DWARF expression gas cannot translate: 0 FREs */
	.globl	sig_expr
	.type	sig_expr, @function
	.p2align 4
sig_expr:
	.cfi_startproc
	.cfi_signal_frame
	nop
	.cfi_escape 0x0f, 0x03, 0x77, 0x10, 0x06	// DW_CFA_def_cfa_expression: breg7 16; deref
	nop
	ret
	.cfi_endproc
	.size	sig_expr, .-sig_expr

/* the RA becomes undefined part-way through: an outermost tail (thread entry style) */
	.globl	thread_entry
	.type	thread_entry, @function
	.p2align 4
thread_entry:
	.cfi_startproc
	subq	$8, %rsp
	.cfi_def_cfa_offset 16
	call	leaf
	.cfi_undefined rip
	xorl	%ebp, %ebp
	call	leaf
	hlt
	.cfi_endproc
	.size	thread_entry, .-thread_entry

/* 256 bytes < size < 64 KiB: 2-byte FRE start addresses */
	.globl	medium
	.type	medium, @function
	.p2align 4
medium:
	.cfi_startproc
	pushq	%rbp
	.cfi_def_cfa_offset 16
	.cfi_offset %rbp, -16
	.rept	300
	nop
	.endr
	popq	%rbp
	.cfi_def_cfa_offset 8
	ret
	.cfi_endproc
	.size	medium, .-medium

	.section .note.GNU-stack,"",@progbits
