/*
 * Support for the NMI entry tests: a context whose every register holds a
 * known value when an NMI interrupts it (nmi_test_ctx.S), and int3 patching
 * of kernel text (text_patch.c) that refuses the NMI prologue.
 */
#ifndef ARCH_NMI_TEST_H
#define ARCH_NMI_TEST_H

/* Register slots of struct nmi_test_ctx's in[]/out[] arrays (index * 8 in asm). */
#define NTC_RAX 0
#define NTC_RBX 1
#define NTC_RCX 2
#define NTC_RDX 3
#define NTC_RSI 4
#define NTC_RDI 5
#define NTC_RBP 6
#define NTC_R8 7
#define NTC_R9 8
#define NTC_R10 9
#define NTC_R11 10
#define NTC_R12 11
#define NTC_R13 12
#define NTC_R14 13
#define NTC_R15 14
#define NTC_RFLAGS 15
#define NTC_RSP 16
#define NTC_SLOTS 17
#define NTC_OUT_BASE (NTC_SLOTS * 8)

#ifndef __ASSEMBLER__
#include <stdint.h>
#include <stdbool.h>

/*
 * in[]: values loaded before the trigger store; in[NTC_RBX] must hold the
 * address written and in[NTC_RDX] the 32-bit value written there (e.g. the
 * local APIC ICR low register and a self-NMI command).  in[NTC_RDI] is
 * ignored: %rdi holds the ctx pointer.  out[]: values right after, RSP too.
 */
struct nmi_test_ctx {
	uint64_t in[NTC_SLOTS];
	uint64_t out[NTC_SLOTS];
};

void nmi_test_ctx_run(struct nmi_test_ctx *c);
extern char nmi_test_ctx_window[], nmi_test_ctx_window_end[];

/* Write an int3 at addr, saving the original byte; -1 where nmi_int3_forbidden(). */
int text_poke_int3(uint64_t addr, uint8_t *orig);
void text_poke_byte(uint64_t addr, uint8_t val);
/* Arm DRn as an instruction breakpoint at addr; -1 on the NMI entry's unsafe parts. */
int hw_breakpoint_exec(int n, uint64_t addr);
/*
 * The entry test's variant: also allows the repeat region and the exit tail.
 * Only for a caller that guarantees NMIs are blocked when it fires.
 */
int nmi_test_breakpoint(int n, uint64_t addr);
#endif

#endif
