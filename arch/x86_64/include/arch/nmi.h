/*
 * The x86-64 side of nmikit's NMI handling: the layout of the top of each
 * CPU's NMI stack, which the entry assembly (nmi_entry.S) and C agree on
 * through offsets generated from struct nmi_stack_top, and the hooks the
 * tests use.  docs/nmi-entry.md draws the layout and explains every check.
 */
#ifndef ARCH_NMI_H
#define ARCH_NMI_H

#include <stdint.h>
#include <stdbool.h>
#include <arch/regs.h>

struct percpu;

/* What IRETQ pops, lowest address first. */
struct iret_frame {
	uint64_t rip, cs, rflags, rsp, ss;
};

/*
 * The top of every NMI stack, lowest address first.  The TSS IST pointer
 * points at `pad`, so the CPU writes `hw` on every NMI delivery, nested or not.
 * Everything above `working`'s lowest word is written only as described in
 * docs/nmi-entry.md; the handler's own stack grows down below `saved`.
 */
struct nmi_stack_top {
	struct iret_frame saved;	/* interrupted context; copied once per first NMI */
	struct iret_frame working;	/* used by the final IRETQ; nested NMIs redirect it */
	uint64_t executing;		/* 1 from repeat_nmi until just before the final IRETQ */
	uint64_t scratch;		/* entry's scratch slot for %rdx */
	struct iret_frame hw;		/* written by the CPU at every NMI delivery */
	uint64_t pad;			/* <- TSS IST pointer (16-byte aligned) */
	struct percpu *percpu;		/* this CPU's percpu (see gdt.c prepare_ist) */
};

/* The nmi_stack_top of `cpu`'s NMI stack. */
struct nmi_stack_top *nmi_stack_top_of(unsigned int cpu);

/* Entry code labels (nmi_entry.S). */
extern char asm_nmi[], nmi_prologue_end[], repeat_nmi[], end_repeat_nmi[];
extern char nmi_final_iret[], nmi_exit_tail[], nmi_entry_end[];

/*
 * C entry called by nmi_entry.S on the NMI stack or, from ring 3, the task
 * stack, with the frame the assembly built (f->regs is the struct regs).
 */
struct nmi_frame;
void do_nmi(struct nmi_frame *f);

/*
 * True when a breakpoint (int3 or DR0-DR3) at `addr` is refused: the NMI
 * prologue runs before NMIs can be unblocked safely, so nothing there may
 * trap (docs/nmi-entry.md, "The prologue may not trap").
 */
bool nmi_breakpoint_forbidden(uint64_t addr);

/*
 * True where RSP lies above the saved frame or `executing` may be clear while
 * the outer NMI still needs its frames: the repeat_nmi region and the exit
 * tail.  No exception may be taken there once NMIs are unblocked: an int3's
 * frame would overwrite the saved frame, and an NMI arriving inside any
 * exception handler there (its RIP is then not nmi_final_iret) would be taken
 * for a first NMI.  So kernel breakpoints of both kinds are refused there;
 * only the entry test arms a hardware breakpoint there, while NMIs are still
 * blocked (nmi_test_breakpoint()).
 */
bool nmi_exit_or_repeat(uint64_t addr);

bool nmi_int3_forbidden(uint64_t addr);	/* prologue, repeat region, exit tail */

/* Test hook: leave DR7 armed while the handler runs (default: disabled). */
extern volatile bool nmi_keep_dr7;

/*
 * Test hook: an extra hook called by the entry assembly (NMI_CALL_C) before
 * do_nmi() and the core dispatch, with the register block (lets tests inspect
 * the interrupted state).
 */
extern void (*volatile nmi_test_hook)(struct regs *r);

#endif
