/*
 * Assembler macros shared by the entry paths (entry.S, syscall_entry.S,
 * nmi_entry.S): moving the general registers into and out of a struct regs,
 * so every path builds the same layout (<arch/regs.h>, offsets from
 * asm-offsets.c).  Assembly only.
 */
#ifndef ARCH_ENTRY_REGS_H
#define ARCH_ENTRY_REGS_H
#ifdef __ASSEMBLER__
#include <asm-offsets.h>

/* The general registers into the struct regs at %rsp (space already made). */
.macro SAVE_GPRS
	movq	%rax, REGS_RAX(%rsp)
	movq	%rbx, REGS_RBX(%rsp)
	movq	%rcx, REGS_RCX(%rsp)
	movq	%rdx, REGS_RDX(%rsp)
	movq	%rsi, REGS_RSI(%rsp)
	movq	%rdi, REGS_RDI(%rsp)
	movq	%rbp, REGS_RBP(%rsp)
	movq	%r8, REGS_R8(%rsp)
	movq	%r9, REGS_R9(%rsp)
	movq	%r10, REGS_R10(%rsp)
	movq	%r11, REGS_R11(%rsp)
	movq	%r12, REGS_R12(%rsp)
	movq	%r13, REGS_R13(%rsp)
	movq	%r14, REGS_R14(%rsp)
	movq	%r15, REGS_R15(%rsp)
.endm

/*
 * ...and back.  keep_rcx_r11=1 leaves %rcx and %r11 alone: SYSRET loads
 * them with the return RIP and RFLAGS instead.
 */
.macro RESTORE_GPRS keep_rcx_r11=0
	movq	REGS_RAX(%rsp), %rax
	movq	REGS_RBX(%rsp), %rbx
.if \keep_rcx_r11 == 0
	movq	REGS_RCX(%rsp), %rcx
.endif
	movq	REGS_RDX(%rsp), %rdx
	movq	REGS_RSI(%rsp), %rsi
	movq	REGS_RDI(%rsp), %rdi
	movq	REGS_RBP(%rsp), %rbp
	movq	REGS_R8(%rsp), %r8
	movq	REGS_R9(%rsp), %r9
	movq	REGS_R10(%rsp), %r10
.if \keep_rcx_r11 == 0
	movq	REGS_R11(%rsp), %r11
.endif
	movq	REGS_R12(%rsp), %r12
	movq	REGS_R13(%rsp), %r13
	movq	REGS_R14(%rsp), %r14
	movq	REGS_R15(%rsp), %r15
.endm

/*
 * Push form, for the NMI entry, which builds struct regs downwards right
 * below the iret frame (one instruction per register, no SUB): pushed in
 * reverse field order so that %rsp ends at the struct's start.
 */
.macro PUSH_GPRS
	pushq	%rax
	pushq	%rbx
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%rbp
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
.endm

.macro POP_GPRS
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rbp
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rbx
	popq	%rax
.endm

#endif
#endif
