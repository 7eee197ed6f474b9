/*
 * traps.h: CPU exceptions (vectors 0-31).  Unexpected ones print a report
 * (registers, symbolized backtrace, #PF decoding, stack-overflow detection)
 * and panic; expected ones are claimed by a hook (trap_set_handler) or by an
 * exception-table fixup (probe_read_u64).  docs/exceptions.md has the rules.
 */
#ifndef ARCH_TRAPS_H
#define ARCH_TRAPS_H

#include <stdbool.h>
#include <stdint.h>

struct regs;

enum x86_trap {
	X86_TRAP_DE = 0,	/* divide error */
	X86_TRAP_DB = 1,	/* debug */
	X86_TRAP_NMI = 2,
	X86_TRAP_BP = 3,	/* int3 */
	X86_TRAP_OF = 4,	/* overflow (into: #UD in 64-bit mode) */
	X86_TRAP_BR = 5,	/* bound range */
	X86_TRAP_UD = 6,	/* invalid opcode */
	X86_TRAP_NM = 7,	/* device not available */
	X86_TRAP_DF = 8,	/* double fault */
	X86_TRAP_OLD_MF = 9,	/* coprocessor segment overrun (reserved) */
	X86_TRAP_TS = 10,	/* invalid TSS */
	X86_TRAP_NP = 11,	/* segment not present */
	X86_TRAP_SS = 12,	/* stack segment */
	X86_TRAP_GP = 13,	/* general protection */
	X86_TRAP_PF = 14,	/* page fault */
	X86_TRAP_MF = 16,	/* x87 floating point */
	X86_TRAP_AC = 17,	/* alignment check */
	X86_TRAP_MC = 18,	/* machine check */
	X86_TRAP_XF = 19,	/* SIMD floating point */
	X86_TRAP_VE = 20,	/* virtualization */
	X86_TRAP_CP = 21,	/* control protection */
	X86_TRAP_HV = 28,	/* hypervisor injection */
	X86_TRAP_VC = 29,	/* VMM communication */
	X86_TRAP_SX = 30,	/* security */
};

#define X86_EXCEPTIONS	32

/* #PF error code bits. */
#define PF_PROT		(1u << 0)	/* 0: page not present, 1: protection violation */
#define PF_WRITE	(1u << 1)
#define PF_USER		(1u << 2)
#define PF_RSVD		(1u << 3)	/* reserved bit set in a paging entry */
#define PF_INSTR	(1u << 4)	/* instruction fetch */
#define PF_PK		(1u << 5)	/* protection key */
#define PF_SHSTK	(1u << 6)	/* shadow stack */

/* DR6 bits: B0-B3 (breakpoint n matched) are bits 0-3. */
#define DR6_BS		(1ull << 14)	/* single step */
/* DR6 value with no condition recorded (the bits that read as 1). */
#define DR6_RESET	0xffff0ff0ull
#define RFLAGS_RF	(1ul << 16)	/* resume: skip instruction breakpoints once */

#ifndef EFAULT
#define EFAULT	14
#endif

/*
 * An exception hook: return true when it handled the exception (the
 * interrupted code then resumes with *r, which the hook may have changed),
 * false to let the next hook or the default report-and-panic have it.
 * Hooks run with interrupts disabled, possibly inside an NMI handler, so
 * they follow the NMI rules.  For an exception from ring 3 (any vector, #DB
 * and #MC included) they run on the task's kernel stack and may arrange to
 * schedule (the exit hook runs after them); for a #DB or #MC from kernel
 * mode they run on that vector's IST stack, where nothing may schedule.
 * #DF has no hooks.
 */
typedef bool (*trap_handler_fn)(struct regs *r);

/* Pseudo vector for trap_set_handler(): asked for every exception, after the vector's own hooks. */
#define TRAP_ALL	X86_EXCEPTIONS
#define TRAP_MAX_HOOKS	4

/*
 * Add / remove a hook for `vector` (0-31, or TRAP_ALL).  Up to
 * TRAP_MAX_HOOKS per vector, asked in the order they were added.
 * Return 0, -EINVAL (bad vector, NULL fn, or vector 2: the NMI has its own
 * dispatch), -EBUSY (fn already there) or -ENOSPC / -ENOENT.
 * NMI-safe: yes (one compare-exchange on a slot).
 */
int trap_set_handler(unsigned vector, trap_handler_fn fn);
int trap_clear_handler(unsigned vector, trap_handler_fn fn);

/*
 * Inside a #DB hook: the DR6 value of the #DB being handled (the entry
 * resets DR6 before calling hooks, as the CPU never clears it).
 * NMI-safe: yes.
 */
uint64_t trap_debug_status(void);

/* Inside a #PF hook: the CR2 of the fault being handled.  NMI-safe: yes. */
uint64_t trap_fault_address(void);

/*
 * Read 8 bytes at addr without risking a crash: returns 0 and stores the
 * value, or -EFAULT (nothing stored) when the read faults (#PF on an
 * unmapped page, #GP on a non-canonical address).  NMI-safe: yes (the
 * fault goes through the exception table, which takes no lock).
 */
int probe_read_u64(const void *addr, uint64_t *out);

/* Exception-table entry: a fault at fault_rip resumes at fixup_rip. */
struct extable_entry {
	uint64_t fault_rip;
	uint64_t fixup_rip;
};

/*
 * Inline-assembly helper that records the pair (fault label, fixup label)
 * in the `extable` section, e.g. EXTABLE_ASM("1b", "3b").
 */
#define EXTABLE_ASM(fault, fixup)					\
	".pushsection extable, \"aw\"\n\t"				\
	".balign 8\n\t"							\
	".quad " fault ", " fixup "\n\t"				\
	".popsection\n\t"

/* The fixup for an exception at `rip`, or 0.  NMI-safe: yes. */
uint64_t extable_lookup(uint64_t rip);

/* The CPU number, even when GS is not set up (then 0).  NMI-safe: yes. */
unsigned int cpu_id_safe(void);

/* Short name ("#PF") and description ("page fault") of an exception vector. */
const char *trap_mnemonic(unsigned vector);
const char *trap_name(unsigned vector);

/* The C side of the entry stubs in entry.S. */
void trap_handle(struct regs *r);		/* ordinary exceptions */
/* #DB, #MC, #DF (IST stacks); gs_base: the GS base the exception interrupted. */
void trap_handle_paranoid(struct regs *r, uint64_t gs_base);

#endif
