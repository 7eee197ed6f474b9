/*
 * switch.S: the context switch between two tasks' kernel stacks, and the
 * first instructions every new task runs.
 *
 * Assumes: interrupts are off and the caller (schedule() in kernel/sched.c)
 * holds this CPU's run-queue lock, which the task switched to releases.  Only
 * the callee-saved registers need saving: switch_to is an ordinary C call, so
 * the compiler has already saved anything else it still needs.  RFLAGS is not
 * saved either; each task restores its own interrupt state after the switch.
 * Task field offsets come from asm-offsets.c.
 */
#include <asm-offsets.h>

	.text
	.code64

/*
 * struct task *switch_to(struct task *prev, struct task *next)
 *
 * Saves prev's callee-saved registers on prev's stack and its RSP in
 * prev->saved_rsp, loads next's, and points the two per-CPU "kernel stack for
 * entries from ring 3" slots at next's stack top: TSS.rsp0 (interrupts and
 * exceptions from ring 3) and percpu->kernel_rsp (SYSCALL).  Returns, on
 * next's stack, the task it switched away from: in %rax, `prev` as seen by
 * the side that is now running.
 */
	.globl	switch_to
	.type	switch_to, @function
switch_to:
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	movq	%rsp, TASK_SAVED_RSP(%rdi)

	movq	TASK_SAVED_RSP(%rsi), %rsp
	movq	TASK_KSTACK_TOP(%rsi), %rdx
	movq	%rdx, %gs:PERCPU_KERNEL_RSP
	movq	%gs:PERCPU_TSS, %rcx
	movq	%rdx, TSS_RSP0(%rcx)

	movq	%rdi, %rax
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.size	switch_to, . - switch_to

/*
 * Where a new task's first switch_to "returns" to (sched.c builds its stack
 * so that the RET above lands here, with %rsp 16-byte aligned).  %rax holds
 * the task switched away from; sched_task_first_run() finishes that switch.
 * It runs a kernel thread's body and never returns for one; for a ring-3
 * task it returns with interrupts off and %rsp pointing at the struct regs
 * prepared at the top of the kernel stack, and we leave for ring 3 through
 * the common IRETQ exit (syscall_entry.S).
 */
	.globl	task_first_entry
	.type	task_first_entry, @function
task_first_entry:
	xorl	%ebp, %ebp			/* backtraces end here */
	movq	%rax, %rdi
	call	sched_task_first_run
	jmp	user_return_iret
	.size	task_first_entry, . - task_first_entry
