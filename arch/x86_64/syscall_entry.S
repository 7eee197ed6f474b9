/*
 * syscall_entry.S: the SYSCALL entry, and the two ways back to ring 3 (SYSRET
 * and IRETQ) that system calls and newly started ring-3 tasks leave by.
 *
 * What SYSCALL leaves us (set up in syscall.c): ring 0, CS/SS from
 * MSR_STAR, RIP from MSR_LSTAR, the user's RIP in RCX and RFLAGS in R11,
 * RFLAGS with IF, TF, DF, AC and NT cleared by MSR_FMASK, and *nothing else*
 * changed: RSP is still the user's (any value at all) and the GS base is
 * still the user's.  Interrupts stay off until the C handler turns them on,
 * so no IRQ can arrive while RSP or GS is the user's; NMI, #DB and #MC use
 * IST stacks and find the kernel GS base on their own (entry.S,
 * nmi_entry.S).  docs/scheduler.md draws the stack.
 *
 * Register block offsets come from asm-offsets.c.
 */
#include <asm-offsets.h>
#include <arch/entry_regs.h>
#include <arch/syscall.h>

	.text
	.code64

	.globl	syscall_entry
	.type	syscall_entry, @function
	.balign	16
syscall_entry:
	swapgs					/* GS base: this CPU's percpu */
	movq	%rsp, %gs:PERCPU_USER_RSP	/* the user RSP, untouched */
	movq	%gs:PERCPU_KERNEL_RSP, %rsp	/* top of the current task's kernel stack */
	subq	$REGS_SIZE, %rsp

	/*
	 * A struct regs, as an interrupt from ring 3 would leave it, so that C
	 * code, preemption and the IRETQ exit see one layout.
	 */
	SAVE_GPRS
	movq	$-1, REGS_VECTOR(%rsp)		/* "not an interrupt" */
	movq	$0, REGS_ERROR(%rsp)
	movq	%rcx, REGS_RIP(%rsp)
	movq	$USER_CS, REGS_CS(%rsp)
	movq	%r11, REGS_RFLAGS(%rsp)
	movq	%gs:PERCPU_USER_RSP, %rax
	movq	%rax, REGS_RSP(%rsp)
	movq	$USER_SS, REGS_SS(%rsp)

	xorl	%ebp, %ebp			/* backtraces stop at the ring boundary */
	movq	%rsp, %rdi
	call	syscall_handler			/* interrupts are off again when it returns */
	testb	%al, %al
	jz	user_return_iret

	/*
	 * SYSRET: syscall_handler() has checked that RCX (the return RIP) is a
	 * canonical user address equal to the saved RIP and that R11 equals
	 * the saved RFLAGS, without TF or RF.  On Intel CPUs SYSRET to a
	 * non-canonical RIP raises #GP in ring 0 *after* this code has loaded
	 * the user RSP and GS base (CVE-2012-0217), so that check is what keeps
	 * a user-chosen stack out of the kernel's exception path.
	 */
	RESTORE_GPRS keep_rcx_r11=1
	movq	REGS_RIP(%rsp), %rcx
	movq	REGS_RFLAGS(%rsp), %r11
	movq	REGS_RSP(%rsp), %rsp		/* from here on: the user's stack */
	swapgs					/* the user's GS base */
	sysretq
	.size	syscall_entry, . - syscall_entry

/*
 * Leave for ring 3 with IRETQ from the struct regs at %rsp, interrupts off.
 * Reached by jumping: from the SYSCALL path when SYSRET is not safe, and
 * from task_first_entry (switch.S) when a ring-3 task first runs.  The frame
 * has been through user_regs_sanitize(): user CS and SS, canonical RIP, so
 * IRETQ itself cannot fault in ring 0.
 */
	.globl	user_return_iret
	.type	user_return_iret, @function
user_return_iret:
	RESTORE_GPRS
	addq	$REGS_RIP, %rsp			/* %rsp = the IRETQ frame */
	swapgs
	iretq
	.size	user_return_iret, . - user_return_iret

/*
 * Ring-3 code: the return address at the top of every user stack made by
 * task_create_user(), so that returning from the entry function exits with
 * its return value.
 */
	.section .utext, "ax"
	.globl	user_return_to_exit
	.type	user_return_to_exit, @function
user_return_to_exit:
	movq	%rax, %rdi
	movl	$SYS_EXIT, %eax
	syscall
	ud2					/* exit does not return */
	.size	user_return_to_exit, . - user_return_to_exit
