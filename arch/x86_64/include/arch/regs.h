/*
 * The register block every nmikit entry path (exceptions, IRQs, NMI, SYSCALL)
 * builds on its stack, lowest address first, so C code sees one layout.
 * Assembly reaches these fields only through offsets generated from this
 * struct (asm-offsets.c), never through typed-in numbers.
 */
#ifndef ARCH_REGS_H
#define ARCH_REGS_H

#include <stdint.h>

struct regs {
	/* Pushed by software (entry code), in this order from the top down. */
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector;	/* interrupt vector, or ~0 for SYSCALL */
	uint64_t error;		/* hardware error code, or 0 */
	/* The hardware interrupt frame (IRET frame). */
	uint64_t rip, cs, rflags, rsp, ss;
};

/* Selector layout (see gdt.c): SYSCALL/SYSRET dictate the order. */
#define SEL_KCODE	0x08
#define SEL_KDATA	0x10
#define SEL_UDATA	(0x18 | 3)
#define SEL_UCODE	(0x20 | 3)
#define SEL_TSS		0x28

static inline int regs_from_user(const struct regs *r)
{
	return (r->cs & 3) == 3;
}

#endif
