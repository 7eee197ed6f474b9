/*
 * mce.h: machine-check architecture - bank set-up at boot, the #MC
 * handler's decision (recover, kill the ring-3 task, or panic), the return
 * from an #MC that must not execute IRET, and per-CPU counters.
 * docs/exceptions.md ("#MC: machine checks") describes the rules.
 */
#ifndef ARCH_MCE_H
#define ARCH_MCE_H

#include <stdbool.h>
#include <stdint.h>
#include <arch/regs.h>

/* Architectural MSRs and bits (SDM vol. 3, chapter 16). */
#define MSR_MCG_CAP		0x179
#define MSR_MCG_STATUS		0x17a
#define MSR_MCG_CTL		0x17b
#define MSR_MC_CTL(b)		(0x400u + 4u * (b))
#define MSR_MC_STATUS(b)	(0x401u + 4u * (b))
#define MSR_MC_ADDR(b)		(0x402u + 4u * (b))
#define MSR_MC_MISC(b)		(0x403u + 4u * (b))

#define MCG_CAP_COUNT		0xffull		/* number of banks */
#define MCG_CAP_CTL_P		(1ull << 8)	/* MCG_CTL present */
#define MCG_CAP_SER_P		(1ull << 24)	/* software error recovery: S and AR bits */

#define MCG_STATUS_RIPV		(1ull << 0)	/* the interrupted context may resume at RIP */
#define MCG_STATUS_EIPV		(1ull << 1)	/* RIP is where the error happened */
#define MCG_STATUS_MCIP		(1ull << 2)	/* a machine check is in progress */

#define MCI_STATUS_VAL		(1ull << 63)
#define MCI_STATUS_OVER		(1ull << 62)	/* an error was lost: the bank overflowed */
#define MCI_STATUS_UC		(1ull << 61)	/* uncorrected */
#define MCI_STATUS_EN		(1ull << 60)
#define MCI_STATUS_MISCV	(1ull << 59)
#define MCI_STATUS_ADDRV	(1ull << 58)
#define MCI_STATUS_PCC		(1ull << 57)	/* processor context corrupt */
#define MCI_STATUS_S		(1ull << 56)	/* signalled by #MC (with MCG_SER_P) */
#define MCI_STATUS_AR		(1ull << 55)	/* action required (with MCG_SER_P) */

#define MCE_MAX_BANKS		32

/* What the #MC handler decided. */
enum mce_verdict {
	MCE_RECOVERED,		/* banks and MCIP cleared: resume the interrupted context */
	MCE_KILL_TASK,		/* ring 3 consumed the error: banks cleared, kill the task */
	MCE_FATAL,		/* cannot continue: panic with mce_fatal_reason() */
};

/* How a recovered kernel-mode #MC gets back to what it interrupted. */
enum mce_resume {
	MCE_RESUME_IRET,	/* the ordinary IRETQ of the paranoid entry */
	MCE_RESUME_NO_IRET,	/* without IRET: NMIs must stay blocked (mce_resume_without_iret) */
	MCE_RESUME_NO_IRET_SWAPGS, /* the same, ending with SWAPGS (mce_resume_swapgs_without_iret) */
	MCE_RESUME_IMPOSSIBLE,	/* neither is safe: panic */
};

/* The GS base a kernel-mode #MC interrupted, as far as the way back cares. */
enum mce_gs {
	MCE_GS_PERCPU,		/* this CPU's percpu pointer: nothing to put back */
	MCE_GS_USER,		/* another one, with the percpu pointer waiting in
				   MSR_KERNEL_GS_BASE and interrupts off: code between
				   two SWAPGSes (SYSCALL entry, SYSRET path, the NMI
				   entry from ring 3); one SWAPGS puts both MSRs back */
	MCE_GS_OTHER,		/* anything else (no kernel code makes it): only the
				   paranoid entry's exit, which WRMSRs it, restores it */
};

/* Per-CPU counters; `mce` in the shell prints them. */
struct mce_cpu_stats {
	uint64_t events;	/* #MC exceptions taken by the handler */
	uint64_t recovered;	/* ... resumed */
	uint64_t killed;	/* ... that killed a ring-3 task */
	uint64_t fatal;		/* ... that panicked */
	uint64_t spurious;	/* ... with MCG_STATUS.MCIP clear */
	uint64_t in_nmi;	/* ... that interrupted NMI context */
	uint64_t no_iret;	/* ... resumed without IRET */
	uint64_t corrected;	/* corrected errors found in the banks (#MC or poll) */
	uint64_t errors;	/* valid bank records logged */
};

bool mce_available(void);		/* CPUID MCE + MCA */
unsigned mce_bank_count(void);		/* banks this kernel uses (0 without MCA) */

/* Boot CPU, once: its banks, and the same for each AP as it starts. */
void mce_init_boot(void);
/* This CPU's banks: enable every error source, log and clear stale records. */
void mce_cpu_init(unsigned cpu);

/*
 * The decision for the #MC the current CPU is taking (regs of the
 * interrupted context): read and log every valid bank, then recover (clear
 * the banks, then MCIP), ask for the ring-3 task to be killed, or leave
 * everything for the panic report.  #MC context: no lock, bounded time.
 */
enum mce_verdict mce_handle(struct regs *r);

/* Why the last fatal #MC on `cpu` is fatal (for the panic line). */
const char *mce_fatal_reason(unsigned cpu);

/* For a recovered kernel-mode #MC: the way back to `rip` with the GS state `gs`. */
enum mce_resume mce_resume_mode(uint64_t rip, enum mce_gs gs);

/*
 * The end of a recovered kernel-mode #MC, on the #MC stack (cr2: CR2 when
 * the #MC came; gs_base: the GS base it interrupted, from the paranoid
 * entry).  Returns true when the paranoid entry's IRETQ is the way back,
 * false when there is none (mce_fatal_reason() says why: panic); for the
 * returns without IRET it does not return.
 */
bool mce_leave(struct regs *r, uint64_t cr2, uint64_t gs_base);

/*
 * Leave the #MC for the context in `r` without IRET: restore every register,
 * RFLAGS and RSP, and jump to r->rip (mce_resume.S).  The GS base must be
 * the kernel's and stay so (no swap to undo), the banks and MCIP cleared.
 */
_Noreturn void mce_resume_without_iret(struct regs *r);

/*
 * The same for MCE_GS_USER: MSR_GS_BASE = this CPU's percpu and
 * MSR_KERNEL_GS_BASE = the interrupted (user) GS base on entry; the last
 * thing before the jump is a SWAPGS, through `cpu`'s stub (mce_resume.S).
 * RFLAGS.IF must be clear in r->rflags.
 */
_Noreturn void mce_resume_swapgs_without_iret(struct regs *r, unsigned cpu);

/*
 * Log and clear this CPU's corrected errors (VAL set, UC clear): they raise
 * no #MC.  Returns how many it found.  Task context, interrupts on or off.
 */
unsigned mce_poll(void);

void mce_get_stats(unsigned cpu, struct mce_cpu_stats *out);

/* Test switch: resume every recovered kernel #MC without IRET (mce_tests.c). */
extern volatile bool mce_test_force_no_iret;

#endif
