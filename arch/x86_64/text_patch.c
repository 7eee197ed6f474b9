/*
 * text_patch.c: writing single bytes into kernel text, for tests that plant
 * an int3 at a chosen instruction.  Kernel text is mapped read-only, so the
 * write clears CR0.WP for one store (interrupts off).  x86 keeps instruction
 * fetch coherent with stores to code, so no flush is needed on this CPU; the
 * callers patch code that only this CPU is about to run.
 */
#include <arch/cpu.h>
#include <arch/nmi.h>
#include <arch/nmi_test.h>

#define CR0_WP_BIT (1ull << 16)

static inline void write_cr0(uint64_t v) { __asm__ volatile("mov %0, %%cr0" :: "r"(v) : "memory"); }

void text_poke_byte(uint64_t addr, uint8_t val)
{
	uint64_t flags = irq_save();
	uint64_t cr0 = read_cr0();
	write_cr0(cr0 & ~CR0_WP_BIT);
	*(volatile uint8_t *)addr = val;
	write_cr0(cr0);
	irq_restore(flags);
}

int text_poke_int3(uint64_t addr, uint8_t *orig)
{
	/* docs/nmi-entry.md "The prologue may not trap". */
	if (nmi_int3_forbidden(addr))
		return -1;
	*orig = *(volatile uint8_t *)addr;
	text_poke_byte(addr, 0xcc);
	return 0;
}

static int arm_exec_breakpoint(int n, uint64_t addr)
{
	write_dr(n, addr);
	/* Ln enable, R/Wn = 00 (instruction), LENn = 00. */
	write_dr7(read_dr7() | 0x400 | (1ull << (2 * n)));
	return 0;
}

int hw_breakpoint_exec(int n, uint64_t addr)
{
	if (n < 0 || n > 3 || nmi_breakpoint_forbidden(addr) || nmi_exit_or_repeat(addr))
		return -1;
	return arm_exec_breakpoint(n, addr);
}

int nmi_test_breakpoint(int n, uint64_t addr)
{
	/* The caller keeps NMIs blocked until this breakpoint's own IRET. */
	if (n < 0 || n > 3 || nmi_breakpoint_forbidden(addr))
		return -1;
	return arm_exec_breakpoint(n, addr);
}
