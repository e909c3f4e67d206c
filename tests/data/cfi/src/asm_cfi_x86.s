/* Hand-written x86-64 CFI for gas's FLEX FDE and refusal rules. */
	.text
	.globl	drap
	.type	drap, @function
drap:
	.cfi_startproc
	leaq	8(%rsp), %r10
	.cfi_def_cfa 10, 0
	andq	$-64, %rsp
	pushq	-8(%r10)
	pushq	%rbp
	movq	%rsp, %rbp
	.cfi_escape 0x10,0x6,0x2,0x76,0
	pushq	%r10
	.cfi_escape 0xf,0x3,0x76,0x78,0x6
	call	external
	popq	%r10
	.cfi_def_cfa 10, 0
	popq	%rbp
	leaq	-8(%r10), %rsp
	.cfi_def_cfa 7, 8
	ret
	.cfi_endproc
	.size	drap, .-drap

	.globl	rip_in_reg
	.type	rip_in_reg, @function
rip_in_reg:
	.cfi_startproc
	popq	%rcx
	.cfi_adjust_cfa_offset -8
	.cfi_register 16, 2
	pushq	%rcx
	.cfi_adjust_cfa_offset 8
	.cfi_offset 16, -8
	ret
	.cfi_endproc
	.size	rip_in_reg, .-rip_in_reg

	.globl	rip_elsewhere
	.type	rip_elsewhere, @function
rip_elsewhere:
	.cfi_startproc
	subq	$8, %rsp
	.cfi_def_cfa_offset 16
	.cfi_offset 16, -16
	addq	$8, %rsp
	.cfi_def_cfa_offset 8
	.cfi_offset 16, -8
	ret
	.cfi_endproc
	.size	rip_elsewhere, .-rip_elsewhere

	.globl	rbp_in_reg
	.type	rbp_in_reg, @function
rbp_in_reg:
	.cfi_startproc
	movq	%rbp, %r11
	.cfi_register 6, 11
	call	external
	movq	%r11, %rbp
	.cfi_restore 6
	ret
	.cfi_endproc
	.size	rbp_in_reg, .-rbp_in_reg

	.globl	window_save
	.type	window_save, @function
window_save:
	.cfi_startproc
	.cfi_window_save
	ret
	.cfi_endproc
	.size	window_save, .-window_save

	.globl	args_size
	.type	args_size, @function
args_size:
	.cfi_startproc
	pushq	%rbp
	.cfi_def_cfa_offset 16
	.cfi_offset 6, -16
	movq	%rsp, %rbp
	.cfi_def_cfa_register 6
	.cfi_escape 0x2e, 0x10
	call	external
	.cfi_escape 0x2e, 0x00
	leave
	.cfi_def_cfa 7, 8
	ret
	.cfi_endproc
	.size	args_size, .-args_size

	.globl	args_size_sp
	.type	args_size_sp, @function
args_size_sp:
	.cfi_startproc
	subq	$24, %rsp
	.cfi_def_cfa_offset 32
	.cfi_escape 0x2e, 0x10
	call	external
	addq	$24, %rsp
	.cfi_def_cfa_offset 8
	ret
	.cfi_endproc
	.size	args_size_sp, .-args_size_sp

	.globl	undefined_rip
	.type	undefined_rip, @function
undefined_rip:
	.cfi_startproc
	.cfi_undefined rip
	xorl	%ebp, %ebp
	call	external
	hlt
	.cfi_endproc
	.size	undefined_rip, .-undefined_rip

	.globl	sp_in_reg
	.type	sp_in_reg, @function
sp_in_reg:
	.cfi_startproc
	.cfi_register 7, 3
	ret
	.cfi_endproc
	.size	sp_in_reg, .-sp_in_reg
