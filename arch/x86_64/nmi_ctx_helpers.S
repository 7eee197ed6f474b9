/*
 * nmi_ctx_helpers.S: small pieces of code at known addresses for the NMI
 * context tests (kernel/nmi_context_tests.c): an int3 site, a faulting load
 * with a resume label, a call target for a hardware breakpoint, a ring-3
 * spinner that checks its own registers, and the trampoline that makes a
 * self-NMI arrive exactly at the first instruction of the SYSCALL entry.
 * None of it is used outside the tests.
 */
#include <arch/syscall.h>

	.text
	.code64

/* nmi_ctx_int3(): one int3 (at nmi_ctx_int3_site), then return. */
	.globl	nmi_ctx_int3
	.globl	nmi_ctx_int3_site
	.type	nmi_ctx_int3, @function
nmi_ctx_int3:
nmi_ctx_int3_site:
	int3
	ret
	.size	nmi_ctx_int3, . - nmi_ctx_int3

/*
 * nmi_ctx_fault_read(addr): load 8 bytes from addr.  Deliberately not in the
 * exception table: a #PF here goes to the #PF hooks, and a hook that handles
 * it resumes at nmi_ctx_fault_resume with %rax as it chose.
 */
	.globl	nmi_ctx_fault_read
	.globl	nmi_ctx_fault_insn
	.globl	nmi_ctx_fault_resume
	.type	nmi_ctx_fault_read, @function
nmi_ctx_fault_read:
nmi_ctx_fault_insn:
	movq	(%rdi), %rax
nmi_ctx_fault_resume:
	ret
	.size	nmi_ctx_fault_read, . - nmi_ctx_fault_read

/* nmi_ctx_db_target(): a function to put an instruction breakpoint on. */
	.globl	nmi_ctx_db_target
	.type	nmi_ctx_db_target, @function
nmi_ctx_db_target:
	nop
	ret
	.size	nmi_ctx_db_target, . - nmi_ctx_db_target

/*
 * nmi_ctx_syscall_tramp: a #DB hook redirects a breakpoint at syscall_entry
 * here, still in ring 0 with the user's RSP and GS base, and nothing may
 * change but the NMI: the trampoline saves the two registers it needs in
 * memory (the stack is the user's), writes the self-NMI command into the
 * local APIC's ICR (ICR high already holds this CPU's APIC ID), puts the
 * registers back and jumps to syscall_entry.  The NMI becomes pending with
 * the ICR write; QEMU takes it at the next translation block, which starts
 * at syscall_entry, so it interrupts the SWAPGS there (the test checks where
 * it really landed).  Flags are untouched: MOV does not change them.
 */
	.globl	nmi_ctx_syscall_tramp
	.globl	nmi_ctx_syscall_tramp_sent
	.globl	nmi_ctx_syscall_tramp_end
	.type	nmi_ctx_syscall_tramp, @function
nmi_ctx_syscall_tramp:
	movq	%rax, nmi_ctx_tramp_save(%rip)
	movq	%rdx, nmi_ctx_tramp_save + 8(%rip)
	movq	nmi_ctx_tramp_icr(%rip), %rax
	movl	nmi_ctx_tramp_cmd(%rip), %edx
	movl	%edx, (%rax)
nmi_ctx_syscall_tramp_sent:
	movq	nmi_ctx_tramp_save + 8(%rip), %rdx
	movq	nmi_ctx_tramp_save(%rip), %rax
	jmp	syscall_entry
nmi_ctx_syscall_tramp_end:
	.size	nmi_ctx_syscall_tramp, . - nmi_ctx_syscall_tramp

	.data
	.balign	8
	.globl	nmi_ctx_tramp_icr
	.globl	nmi_ctx_tramp_cmd
nmi_ctx_tramp_icr:	.quad	0	/* address of the ICR low register */
nmi_ctx_tramp_cmd:	.quad	0	/* the self-NMI command written there */
nmi_ctx_tramp_save:	.quad	0, 0

/*
 * Ring 3: nmi_ctx_user_spin(arg) holds a known value in every register it
 * does not need (RBX RBP RSI RDI R8-R10 R12-R15) and checks them, and RSP,
 * on every round until nmi_ctx_user_stop is set, counting rounds in
 * nmi_ctx_user_rounds.  It exits with NMI_CTX_USER_OK, or with
 * NMI_CTX_USER_BAD as soon as one register differs: an NMI that returns
 * to ring 3 with anything changed is caught on the next round.
 */
#define NMI_CTX_USER_OK		0x5a
#define NMI_CTX_USER_BAD	0x66

.macro USER_PATTERN reg, k
	movabsq	$(0x0101010101010101 * \k) ^ 0x5a5aa5a5c3c33c3c, \reg
.endm

.macro USER_CHECK reg, k
	movabsq	$(0x0101010101010101 * \k) ^ 0x5a5aa5a5c3c33c3c, %rax
	cmpq	%rax, \reg
	jne	2f
.endm

	.section .utext, "ax"
	.globl	nmi_ctx_user_spin
	.type	nmi_ctx_user_spin, @function
nmi_ctx_user_spin:
	movq	%rsp, nmi_ctx_user_rsp(%rip)
	USER_PATTERN %rbx, 1
	USER_PATTERN %rbp, 2
	USER_PATTERN %rsi, 3
	USER_PATTERN %rdi, 4
	USER_PATTERN %r8, 5
	USER_PATTERN %r9, 6
	USER_PATTERN %r10, 7
	USER_PATTERN %r12, 8
	USER_PATTERN %r13, 9
	USER_PATTERN %r14, 10
	USER_PATTERN %r15, 11
1:
	cmpq	$0, nmi_ctx_user_stop(%rip)
	jne	3f
	incq	nmi_ctx_user_rounds(%rip)
	USER_CHECK %rbx, 1
	USER_CHECK %rbp, 2
	USER_CHECK %rsi, 3
	USER_CHECK %rdi, 4
	USER_CHECK %r8, 5
	USER_CHECK %r9, 6
	USER_CHECK %r10, 7
	USER_CHECK %r12, 8
	USER_CHECK %r13, 9
	USER_CHECK %r14, 10
	USER_CHECK %r15, 11
	cmpq	nmi_ctx_user_rsp(%rip), %rsp
	jne	2f
	pause
	jmp	1b
2:
	movl	$SYS_EXIT, %eax
	movl	$NMI_CTX_USER_BAD, %edi
	syscall
	ud2
3:
	movl	$SYS_EXIT, %eax
	movl	$NMI_CTX_USER_OK, %edi
	syscall
	ud2
	.size	nmi_ctx_user_spin, . - nmi_ctx_user_spin

	.section .udata, "aw"
	.balign	8
	.globl	nmi_ctx_user_stop
	.globl	nmi_ctx_user_rounds
nmi_ctx_user_stop:	.quad	0
nmi_ctx_user_rounds:	.quad	0
nmi_ctx_user_rsp:	.quad	0
