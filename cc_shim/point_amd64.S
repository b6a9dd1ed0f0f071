/*
 * ck_save_point(struct ck_point *p): a setjmp that saves only what the
 * restore stub needs to resume the caller.  The stub loads these registers
 * back, sets %rax to 1 and jumps to p->rip, so the caller sees a second
 * return with value 1.  Field offsets match struct ck_point in shim.h.
 */
	.text
	.globl	ck_save_point
	.hidden	ck_save_point
	.type	ck_save_point, @function
ck_save_point:
	movq	%rbx, 0(%rdi)
	movq	%rbp, 8(%rdi)
	movq	%r12, 16(%rdi)
	movq	%r13, 24(%rdi)
	movq	%r14, 32(%rdi)
	movq	%r15, 40(%rdi)
	leaq	8(%rsp), %rax	/* the caller's %rsp after our return */
	movq	%rax, 48(%rdi)
	movq	(%rsp), %rax	/* our return address */
	movq	%rax, 56(%rdi)
	xorl	%eax, %eax
	ret
	.size	ck_save_point, .-ck_save_point

	.section .note.GNU-stack,"",@progbits
