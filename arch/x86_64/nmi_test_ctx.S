/*
 * nmi_test_ctx.S: nmi_test_ctx_run(ctx) loads every general register and
 * RFLAGS with values from ctx->in, performs one 32-bit store (the trigger,
 * normally the self-NMI command to the local APIC ICR), waits a fixed number
 * of PAUSEs (neither changes any register or flag), then stores every
 * register, RFLAGS and RSP to ctx->out.  A test compares in and out: an NMI
 * that arrived in between must have returned to this context unchanged.
 */
#include <arch/nmi_test.h>

	.text
	.globl	nmi_test_ctx_run
nmi_test_ctx_run:
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	pushfq
	movq	%rsp, NTC_RSP * 8(%rdi)		/* expected RSP, recorded in in[] */
	movq	NTC_RAX * 8(%rdi), %rax
	movq	NTC_RBX * 8(%rdi), %rbx
	movq	NTC_RCX * 8(%rdi), %rcx
	movq	NTC_RDX * 8(%rdi), %rdx
	movq	NTC_RSI * 8(%rdi), %rsi
	movq	NTC_RBP * 8(%rdi), %rbp
	movq	NTC_R8 * 8(%rdi), %r8
	movq	NTC_R9 * 8(%rdi), %r9
	movq	NTC_R10 * 8(%rdi), %r10
	movq	NTC_R11 * 8(%rdi), %r11
	movq	NTC_R12 * 8(%rdi), %r12
	movq	NTC_R13 * 8(%rdi), %r13
	movq	NTC_R14 * 8(%rdi), %r14
	movq	NTC_R15 * 8(%rdi), %r15
	pushq	NTC_RFLAGS * 8(%rdi)
	popfq
	.globl	nmi_test_ctx_window
nmi_test_ctx_window:
	movl	%edx, (%rbx)
	.rept	256
	pause
	.endr
	.globl	nmi_test_ctx_window_end
nmi_test_ctx_window_end:
	pushfq
	popq	NTC_OUT_BASE + NTC_RFLAGS * 8(%rdi)
	movq	%rax, NTC_OUT_BASE + NTC_RAX * 8(%rdi)
	movq	%rbx, NTC_OUT_BASE + NTC_RBX * 8(%rdi)
	movq	%rcx, NTC_OUT_BASE + NTC_RCX * 8(%rdi)
	movq	%rdx, NTC_OUT_BASE + NTC_RDX * 8(%rdi)
	movq	%rsi, NTC_OUT_BASE + NTC_RSI * 8(%rdi)
	movq	%rdi, NTC_OUT_BASE + NTC_RDI * 8(%rdi)
	movq	%rbp, NTC_OUT_BASE + NTC_RBP * 8(%rdi)
	movq	%r8, NTC_OUT_BASE + NTC_R8 * 8(%rdi)
	movq	%r9, NTC_OUT_BASE + NTC_R9 * 8(%rdi)
	movq	%r10, NTC_OUT_BASE + NTC_R10 * 8(%rdi)
	movq	%r11, NTC_OUT_BASE + NTC_R11 * 8(%rdi)
	movq	%r12, NTC_OUT_BASE + NTC_R12 * 8(%rdi)
	movq	%r13, NTC_OUT_BASE + NTC_R13 * 8(%rdi)
	movq	%r14, NTC_OUT_BASE + NTC_R14 * 8(%rdi)
	movq	%r15, NTC_OUT_BASE + NTC_R15 * 8(%rdi)
	movq	%rsp, NTC_OUT_BASE + NTC_RSP * 8(%rdi)
	popfq
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
