/*
 * user_programs.c: ring-3 programs for the scheduler's tests (and anyone
 * else's).  Everything here lives in .utext / .udata, the only parts of the
 * image mapped user-accessible; see the USER_TEXT rules in <arch/syscall.h>:
 * no calls outside .utext, no string literals, no kernel data.
 */
#include <arch/syscall.h>
#include <kernel/user_programs.h>

USER_DATA struct user_syscall_out user_syscall_out;
USER_DATA struct user_spin user_spin;
USER_DATA struct user_bad_ptr user_bad_ptr;
USER_DATA uint64_t user_regs_seen[URS_COUNT];

USER_DATA static char hello[] = "user: hello from ring 3\n";
USER_DATA unsigned long user_hello_len = sizeof(hello) - 1;

USER_TEXT long user_prog_syscalls(long arg)
{
	struct user_syscall_out *o = &user_syscall_out;

	o->write = sys_write(hello, sizeof(hello) - 1);
	o->write_empty = sys_write(hello, 0);
	o->yield = sys_yield();
	o->sleep = sys_sleep(USER_SLEEP_MS);
	o->getcpu = sys_getcpu();
	o->getpid = sys_getpid();
	o->nosys = user_syscall(0, 0, 0, 0, 0);
	o->badnr = user_syscall(SYS_NR + 1000, 0, 0, 0, 0);
	return 2 * arg + 1;
}

USER_TEXT long user_prog_spin(long arg)
{
	(void)arg;
	/* PAUSE now and then: it waits for `stop` from another CPU. */
	while (!user_spin.stop) {
		if ((++user_spin.count & 4095) == 0)
			__asm__ volatile("pause");
	}
	return USER_SPIN_EXIT;
}

USER_TEXT long user_prog_ud2(long arg)
{
	(void)arg;
	__asm__ volatile("ud2");
	return 0;
}

USER_TEXT long user_prog_hlt(long arg)
{
	(void)arg;
	__asm__ volatile("hlt");
	return 0;
}

USER_TEXT long user_prog_divide(long arg)
{
	(void)arg;
	__asm__ volatile("xorl %%ecx, %%ecx\n\t"
			 "xorl %%edx, %%edx\n\t"
			 "movl $1, %%eax\n\t"
			 "divl %%ecx"
			 ::: "rax", "rcx", "rdx");
	return 0;
}

USER_TEXT long user_prog_poke(long arg)
{
	*(volatile long *)arg = 1;
	return 0;
}

USER_TEXT long user_prog_read_gs(long arg)
{
	long v;
	(void)arg;
	__asm__ volatile("movq %%gs:0, %0" : "=r"(v) :: "memory");
	return v;
}

USER_TEXT long user_prog_bad_pointers(long arg)
{
	struct user_bad_ptr *b = (struct user_bad_ptr *)arg;

	b->r_kernel = sys_write((const void *)b->kernel_addr, 8);
	b->r_null = sys_write((const void *)0, 1);
	b->r_guard = sys_write((const void *)b->guard_addr, 1);
	b->r_noncanonical = sys_write((const void *)USER_ADDR_END, 1);
	b->r_wrap = sys_write((const void *)(USER_ADDR_END - 16), 32);
	b->r_too_long = sys_write(hello, SYSCALL_WRITE_MAX + 1);
	return USER_BAD_PTR_EXIT;
}

USER_TEXT long user_prog_test_call(long arg)
{
	sys_nmikit_test(arg, 0, 0, 0);
	return USER_TEST_CALL_EXIT;
}

USER_TEXT long user_exit_with(long code)
{
	sys_exit(code);
}

#define USTR2(x)	#x
#define USTR(x)		USTR2(x)

/*
 * user_record_regs: no stack, no prologue, so that any RSP works.  The
 * stores use the slot order of the URS_* enum.
 */
_Static_assert(URS_RAX == 0 && URS_RSP == 7 && URS_R8 == 8 && URS_R15 == 15,
	       "user_record_regs stores in URS_* order");
__asm__(
	"	.pushsection .utext, \"ax\"\n"
	"	.globl	user_record_regs\n"
	"	.type	user_record_regs, @function\n"
	"user_record_regs:\n"
	"	movq	%rax, user_regs_seen + 0 * 8(%rip)\n"
	"	movq	%rbx, user_regs_seen + 1 * 8(%rip)\n"
	"	movq	%rcx, user_regs_seen + 2 * 8(%rip)\n"
	"	movq	%rdx, user_regs_seen + 3 * 8(%rip)\n"
	"	movq	%rsi, user_regs_seen + 4 * 8(%rip)\n"
	"	movq	%rdi, user_regs_seen + 5 * 8(%rip)\n"
	"	movq	%rbp, user_regs_seen + 6 * 8(%rip)\n"
	"	movq	%rsp, user_regs_seen + 7 * 8(%rip)\n"
	"	movq	%r8, user_regs_seen + 8 * 8(%rip)\n"
	"	movq	%r9, user_regs_seen + 9 * 8(%rip)\n"
	"	movq	%r10, user_regs_seen + 10 * 8(%rip)\n"
	"	movq	%r11, user_regs_seen + 11 * 8(%rip)\n"
	"	movq	%r12, user_regs_seen + 12 * 8(%rip)\n"
	"	movq	%r13, user_regs_seen + 13 * 8(%rip)\n"
	"	movq	%r14, user_regs_seen + 14 * 8(%rip)\n"
	"	movq	%r15, user_regs_seen + 15 * 8(%rip)\n"
	"	movl	$" USTR(SYS_NMIKIT_TEST) ", %eax\n"
	"	movl	$" USTR(USER_REGS_SEEN_OP) ", %edi\n"
	"	syscall\n"
	"	movl	$" USTR(SYS_EXIT) ", %eax\n"
	"	xorl	%edi, %edi\n"
	"	syscall\n"
	"	ud2\n"
	"	.size	user_record_regs, . - user_record_regs\n"
	"	.popsection\n");

/*
 * user_prog_single_step: sets TF, so a #DB follows every instruction, makes a
 * system call in the middle of it, clears TF and returns 0.  Only survives
 * with a task fault handler that lets the #DBs go.  user_step_after_syscall
 * labels the instruction right after the SYSCALL.
 */
__asm__(
	"	.pushsection .utext, \"ax\"\n"
	"	.globl	user_prog_single_step\n"
	"	.globl	user_step_after_syscall\n"
	"	.type	user_prog_single_step, @function\n"
	"user_prog_single_step:\n"
	"	pushfq\n"
	"	orq	$0x100, (%rsp)\n"
	"	popfq\n"
	"	nop\n"
	"	movl	$" USTR(SYS_GETPID) ", %eax\n"
	"	syscall\n"
	"user_step_after_syscall:\n"
	"	nop\n"
	"	pushfq\n"
	"	andq	$~0x100, (%rsp)\n"
	"	popfq\n"
	"	xorl	%eax, %eax\n"
	"	ret\n"
	"	.size	user_prog_single_step, . - user_prog_single_step\n"
	"	.popsection\n");
