/*
 * hostile_user.c: ring-3 programs for the hostile-user tests
 * (kernel/hostile_tests.c).  They run with whatever registers the test gives
 * them - RSP pointing into the NMI stack, into kernel data, non-canonical,
 * misaligned - so they are written in assembly that never uses the stack,
 * keep their state in registers and report through hostile_status in
 * .udata.  Rules of <arch/syscall.h>: .utext / .udata only, no kernel calls.
 */
#include <stddef.h>
#include <arch/syscall.h>
#include <kernel/hostile.h>

USER_DATA struct hostile_status hostile_status;

#define HSTR2(x)	#x
#define HSTR(x)		HSTR2(x)

_Static_assert(offsetof(struct hostile_status, stop) == 0, "hostile_loop: stop");
_Static_assert(offsetof(struct hostile_status, rounds) == 8, "hostile_loop: rounds");
_Static_assert(offsetof(struct hostile_status, syscalls) == 16, "hostile_loop: syscalls");
_Static_assert(offsetof(struct hostile_status, bad_cs) == 24, "hostile_loop: bad_cs");
_Static_assert(offsetof(struct hostile_status, last_cs) == 32, "hostile_loop: last_cs");
_Static_assert(offsetof(struct hostile_status, rsp_lost) == 40, "hostile_loop: rsp_lost");
_Static_assert(offsetof(struct hostile_status, df_lost) == 48, "hostile_loop: df_lost");
_Static_assert(offsetof(struct hostile_status, flags_bad) == 56, "hostile_loop: flags_bad");
_Static_assert(offsetof(struct hostile_status, last_flags) == 64, "hostile_loop: last_flags");
_Static_assert(offsetof(struct hostile_status, spins) == 72, "hostile_loop: spins");
_Static_assert(offsetof(struct hostile_status, resumed) == 80, "hostile_loop: resumed");
_Static_assert(offsetof(struct hostile_status, traps) == 88, "hostile_loop: traps");
_Static_assert(offsetof(struct hostile_status, probe) == 96, "hostile_loop: probe");
_Static_assert(offsetof(struct hostile_status, stack) == 128 && sizeof(struct hostile_status) == 240,
	       "hostile_loop: scratch stack ends at 240");

/*
 * hostile_loop.  RBP holds the RSP the task started with; every round checks
 * that RSP still equals it (nothing the kernel does - SYSCALL, SYSRET,
 * IRETQ, an NMI from ring 3 - may change a ring-3 RSP).  Each check counts
 * its failures in hostile_status instead of stopping, so the test can say
 * what went wrong.
 */
__asm__(
	"	.pushsection .utext, \"ax\"\n"
	"	.globl	hostile_loop\n"
	"	.type	hostile_loop, @function\n"
	"hostile_loop:\n"
	"	testl	$" HSTR(HL_NULL_SEGS) ", %r13d\n"
	"	jz	1f\n"
	/* Null selectors are legal in DS ES FS GS at CPL 3 in 64-bit mode. */
	"	xorl	%eax, %eax\n"
	"	movl	%eax, %ds\n"
	"	movl	%eax, %es\n"
	"	movl	%eax, %fs\n"
	"	movl	%eax, %gs\n"
	"1:	movq	%rsp, %rbp\n"
	"hostile_round:\n"
	/* Ring 3 reads its own CS: the RPL is the CPL it runs at. */
	"	movl	%cs, %eax\n"
	"	movq	%rax, hostile_status+32(%rip)\n"
	"	andl	$3, %eax\n"
	"	cmpl	$3, %eax\n"
	"	je	2f\n"
	"	incq	hostile_status+24(%rip)\n"
	"2:	cmpq	%rbp, %rsp\n"
	"	je	3f\n"
	"	incq	hostile_status+40(%rip)\n"
	"	movq	%rbp, %rsp\n"
	"3:	testl	$" HSTR(HL_CHECK_DF) ", %r13d\n"
	"	jz	4f\n"
	/* LODSB moves RSI down by one exactly when DF is set. */
	"	leaq	hostile_status+112(%rip), %rsi\n"
	"	lodsb\n"
	"	leaq	hostile_status+112(%rip), %rax\n"
	"	cmpq	%rax, %rsi\n"
	"	jb	4f\n"
	"	incq	hostile_status+48(%rip)\n"
	"4:	testl	$" HSTR(HL_CHECK_FLAGS) ", %r13d\n"
	"	jz	5f\n"
	/* One PUSHFQ on the scratch stack, then the hostile RSP again. */
	"	leaq	hostile_status+240(%rip), %rsp\n"
	"	pushfq\n"
	"	popq	%rax\n"
	"	movq	%rbp, %rsp\n"
	"	movq	%rax, hostile_status+64(%rip)\n"
	"	andq	%r14, %rax\n"
	"	cmpq	%rbx, %rax\n"
	"	je	5f\n"
	"	incq	hostile_status+56(%rip)\n"
	"5:	testl	$" HSTR(HL_SYSCALL) ", %r13d\n"
	"	jz	6f\n"
	"	movl	$" HSTR(SYS_GETPID) ", %eax\n"
	"	syscall\n"
	"	incq	hostile_status+16(%rip)\n"
	"6:	testl	$" HSTR(HL_PAD_SYSCALL) ", %r13d\n"
	"	jz	7f\n"
	/*
	 * A long straight run ending in SYSCALL.  QEMU's TCG takes interrupts
	 * only between translated blocks, so an NMI that arrives while this
	 * block runs is delivered at the first instruction of syscall_entry,
	 * with this task's RSP and GS base still loaded.
	 */
	"	movq	%rbp, %rsi\n"
	"	.rept	96\n"
	"	rolq	$7, %rsi\n"
	"	.endr\n"
	"	movl	$" HSTR(SYS_GETPID) ", %eax\n"
	"	syscall\n"
	"	incq	hostile_status+16(%rip)\n"
	"7:	testq	%r12, %r12\n"
	"	jz	8f\n"
	"	movl	$" HSTR(SYS_NMIKIT_TEST) ", %eax\n"
	"	movq	%r12, %rdi\n"
	"	syscall\n"
	"	incq	hostile_status+16(%rip)\n"
	"8:	testl	$" HSTR(HL_WINDOW_SPIN) ", %r13d\n"
	"	jz	9f\n"
	"	.globl	hostile_window_spin\n"
	"hostile_window_spin:\n"
	"	incq	hostile_status+72(%rip)\n"
	"	cmpq	$0, hostile_status(%rip)\n"
	"	jne	hostile_exit0\n"
	/* PAUSE every 256 turns: the NMI it waits for comes from another CPU. */
	"	testb	$255, hostile_status+72(%rip)\n"
	"	jnz	hostile_window_spin\n"
	"	pause\n"
	"	jmp	hostile_window_spin\n"
	"	.globl	hostile_window_spin_end\n"
	"hostile_window_spin_end:\n"
	"	.globl	hostile_window_resume\n"
	"hostile_window_resume:\n"
	"	incq	hostile_status+80(%rip)\n"
	"9:	incq	hostile_status+8(%rip)\n"
	"	movq	hostile_status+8(%rip), %rax\n"
	/* PAUSE now and then: under -icount it lets the other CPUs run. */
	"	testl	$255, %eax\n"
	"	jnz	10f\n"
	"	pause\n"
	"10:	testq	%r15, %r15\n"
	"	jz	11f\n"
	"	cmpq	%r15, %rax\n"
	"	jae	hostile_exit0\n"
	"11:	cmpq	$0, hostile_status(%rip)\n"
	"	je	hostile_round\n"
	"hostile_exit0:\n"
	"	movl	$" HSTR(SYS_EXIT) ", %eax\n"
	"	xorl	%edi, %edi\n"
	"	syscall\n"
	"	ud2\n"
	"	.size	hostile_loop, . - hostile_loop\n"
	"	.popsection\n");

/*
 * The trap loops: one instruction that raises an exception, counted in
 * hostile_status.traps, until R15 rounds are done (R15 = 0: until
 * hostile_status.stop).  A fault handler that lets the exception go must
 * step RIP past the ones that are faults (#UD: into, ud2, and icebp where
 * the CPU does not implement it); int3 and icebp are traps and return after
 * the instruction.
 */
#define HOSTILE_TRAP_LOOP(name, insn)					\
	__asm__(							\
	"	.pushsection .utext, \"ax\"\n"				\
	"	.globl	" #name "\n"					\
	"	.type	" #name ", @function\n"				\
	#name ":\n"							\
	"1:	" insn "\n"						\
	"	incq	hostile_status+88(%rip)\n"			\
	"	movq	hostile_status+88(%rip), %rax\n"		\
	"	testl	$255, %eax\n"					\
	"	jnz	2f\n"						\
	"	pause\n"						\
	"2:	testq	%r15, %r15\n"					\
	"	jz	3f\n"						\
	"	cmpq	%r15, %rax\n"					\
	"	jae	hostile_exit0\n"				\
	"3:	cmpq	$0, hostile_status(%rip)\n"			\
	"	je	1b\n"						\
	"	jmp	hostile_exit0\n"				\
	"	.size	" #name ", . - " #name "\n"			\
	"	.popsection\n")

HOSTILE_TRAP_LOOP(hostile_int3_loop, "int3");
HOSTILE_TRAP_LOOP(hostile_icebp_loop, ".byte 0xf1");
HOSTILE_TRAP_LOOP(hostile_into_loop, ".byte 0xce");
HOSTILE_TRAP_LOOP(hostile_ud2_loop, "ud2");
