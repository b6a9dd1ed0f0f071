/*
 * start_amd64.S: the stub's entry point and its two jumps.
 */
	.section .text.start, "ax"
	.globl	_start
	.type	_start, @function
/* _start: the kernel's stack holds argc, argv, envp and auxv.  Take argv,
 * then move to the stub's own stack, which lives inside the stub's range. */
_start:
	movq	%rsp, %rdi		/* &argc */
	leaq	ck_stack_top(%rip), %rsp
	xorl	%ebp, %ebp
	call	ck_main
	hlt
	.size	_start, .-_start

	.text
/* ck_switch(entry, stack, arg): continue at entry(arg) on stack.  Used to
 * move into the stub's relocated copy. */
	.globl	ck_switch
	.hidden	ck_switch
	.type	ck_switch, @function
ck_switch:
	movq	%rsi, %rsp
	movq	%rdi, %rax
	movq	%rdx, %rdi
	xorl	%ebp, %ebp
	callq	*%rax
	hlt
	.size	ck_switch, .-ck_switch

/* ck_resume(const struct ck_restore_thread *t): load the saved point and
 * return from ck_save_point a second time, with 1.  Offsets match the first
 * fields of struct ck_restore_thread. */
	.globl	ck_resume
	.hidden	ck_resume
	.type	ck_resume, @function
ck_resume:
	movq	0(%rdi), %rbx
	movq	8(%rdi), %rbp
	movq	16(%rdi), %r12
	movq	24(%rdi), %r13
	movq	32(%rdi), %r14
	movq	40(%rdi), %r15
	movq	56(%rdi), %rdx
	movq	48(%rdi), %rsp
	movl	$1, %eax
	jmpq	*%rdx
	.size	ck_resume, .-ck_resume

/* ck_clone3_thread(args, size, fn, arg): clone3 a thread that starts on
 * the stack in args and calls fn(arg); the caller gets the new TID. */
	.globl	ck_clone3_thread
	.hidden	ck_clone3_thread
	.type	ck_clone3_thread, @function
ck_clone3_thread:
	movq	%rdx, %r8		/* fn: kept across the syscall */
	movq	%rcx, %r9		/* arg */
	movl	$435, %eax		/* SYS_clone3 */
	syscall
	testq	%rax, %rax
	jnz	1f
	/* The new thread, on its own stack. */
	xorl	%ebp, %ebp
	movq	%r9, %rdi
	andq	$-16, %rsp
	callq	*%r8
	hlt
1:	ret
	.size	ck_clone3_thread, .-ck_clone3_thread

/* ck_sigreturn: the restorer for ck_init's own signal handlers. */
	.globl	ck_sigreturn
	.hidden	ck_sigreturn
	.type	ck_sigreturn, @function
ck_sigreturn:
	movl	$15, %eax		/* SYS_rt_sigreturn */
	syscall
	hlt
	.size	ck_sigreturn, .-ck_sigreturn

	.bss
	.balign	16
	.globl	ck_stack_top
	.hidden	ck_stack_top
ck_stack:
	.skip	65536
ck_stack_top:

	.section .note.GNU-stack,"",@progbits
