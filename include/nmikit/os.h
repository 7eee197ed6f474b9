/*
 * os.h: everything the portable core (core/) needs from the kernel it runs
 * in, and nothing else.  A port of nmikit implements these functions; core/
 * includes no other host header.  The testbed kernel implements them in
 * kernel/ and arch/x86_64/, the host unit tests in tests/host/test_os.c.
 *
 * Each function says whether core/ calls it in NMI context ("NMI-safe: yes"),
 * in which case the implementation must take no lock that other code takes,
 * must not spin waiting for another CPU, must not allocate, and must finish
 * in bounded time.
 */
#ifndef NMIKIT_OS_H
#define NMIKIT_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Largest number of CPUs the core keeps state for.  Per-CPU arrays in core/
 * have this many entries; os_cpu_id() and os_cpu_count() stay below it.
 */
#ifndef NMIKIT_MAX_CPUS
#define NMIKIT_MAX_CPUS	256
#endif

/* Saved interrupt state, opaque to the core (RFLAGS on x86). */
typedef unsigned long os_irqflags_t;

/*
 * Inline hooks (optional).  A port may give core/ its hottest hooks as
 * static inline functions: it builds core/ with NMIKIT_OS_INLINE_HEADER
 * naming its header (e.g. -DNMIKIT_OS_INLINE_HEADER='"arch/os_inline.h"'),
 * which is included here.  For each hook it defines, the header also
 * defines the matching macro, and this file then leaves out that hook's
 * extern declaration:
 *   NMIKIT_OS_INLINE_CPU_ID     os_cpu_id()
 *   NMIKIT_OS_INLINE_IRQ_SAVE   os_local_irq_save() and os_local_irq_restore()
 *   NMIKIT_OS_INLINE_CPU_RELAX  os_cpu_relax()
 *   NMIKIT_OS_INLINE_CPU_BLOCK  os_cpu_block(): nmi_cpu_block(os_cpu_id()),
 *                               read from the port's own per-CPU data (one
 *                               load instead of the core's index
 *                               arithmetic); inline only, no out-of-line
 *                               function: without it the core indexes
 *                               its array by os_cpu_id()
 * The contract of each hook is unchanged (NMI-safety included).  The port
 * still provides the out-of-line function for code built without the
 * header.  The header is compiled into core/: it may include nothing but
 * freestanding headers and constants (docs/porting.md).
 */
#ifdef NMIKIT_OS_INLINE_HEADER
#include NMIKIT_OS_INLINE_HEADER
#endif

/* External NMI reasons, as abstract bits (x86: port 0x61 bits 7 and 6). */
#define OS_NMI_REASON_SERR	0x1u	/* system error, e.g. PCI SERR# */
#define OS_NMI_REASON_IOCHK	0x2u	/* I/O channel check */
#define OS_NMI_REASON_MASK	(OS_NMI_REASON_SERR | OS_NMI_REASON_IOCHK)

/* --- CPUs --------------------------------------------------------------- */

/*
 * The calling CPU's number, 0 .. os_cpu_count() - 1.
 * NMI-safe: yes.  Must work whatever the interrupted code was doing (on x86 a
 * paranoid NMI entry has already made the GS base right before calling C).
 */
#ifndef NMIKIT_OS_INLINE_CPU_ID
unsigned os_cpu_id(void);
#endif

/*
 * How many CPUs can ever be online (the highest CPU number + 1), at most
 * NMIKIT_MAX_CPUS.  Constant after boot.
 * NMI-safe: yes.
 */
unsigned os_cpu_count(void);

/*
 * Whether `cpu` is online now: it takes interrupts and NMIs and runs the
 * timer tick.  May change at any time; callers treat it as a hint.
 * NMI-safe: yes.
 */
bool os_cpu_online(unsigned cpu);

/*
 * Spin-wait hint: x86 PAUSE.  Every wait loop in core/ calls it once per
 * iteration (under QEMU -icount a loop without PAUSE can starve the vCPU it
 * waits for).
 * NMI-safe: yes.
 */
#ifndef NMIKIT_OS_INLINE_CPU_RELAX
void os_cpu_relax(void);
#endif

/* --- time --------------------------------------------------------------- */

/*
 * Monotonic nanoseconds since an arbitrary point, consistent across CPUs
 * within a few microseconds.  Used for handler durations, rate limits and
 * bounded waits.
 * NMI-safe: yes (x86: TSC scaled by a factor fixed at boot; no seqlock that an
 * NMI could interrupt half-way).
 */
uint64_t os_timestamp_ns(void);

/*
 * A cheap counter for timing short stretches of code (x86: the TSC), and
 * how many of its counts make a millisecond (constant after boot, nonzero).
 * The core times every NMI handler call with it and converts to ns only
 * off the fast path.  Optional: core/nmi.c has weak defaults that use
 * os_timestamp_ns() (1 count = 1 ns) for a port without one.
 * NMI-safe: yes.
 */
uint64_t os_cycles(void);
uint64_t os_cycles_per_ms(void);

/*
 * os_cycles() as core/ calls it on its fast paths.  A port whose os_cycles()
 * is the x86 TSC builds core/ with -DNMIKIT_OS_CYCLES_TSC, and the counter
 * is then read inline (RDTSC) rather than through a call, which matters on
 * the NMI dispatch where every handler call is timed.
 */
#if defined(NMIKIT_OS_CYCLES_TSC) && defined(__x86_64__)
static inline uint64_t nk_os_cycles(void)
{
	uint64_t tsc;

	/* RDTSC clears the upper halves of RAX and RDX. */
	__asm__ volatile("rdtsc; shlq $32, %%rdx; orq %%rdx, %%rax" : "=a"(tsc) : : "rdx");
	return tsc;
}
#else
#define nk_os_cycles()	os_cycles()
#endif

/* --- interrupts ----------------------------------------------------------- */

/*
 * Disable interrupts on this CPU and return the previous state /
 * restore it.  NMIs are not affected.
 * NMI-safe: yes.
 */
#ifndef NMIKIT_OS_INLINE_IRQ_SAVE
os_irqflags_t os_local_irq_save(void);
void os_local_irq_restore(os_irqflags_t flags);
#endif

/*
 * Send an NMI to `cpu` (which may be the caller).
 * NMI-safe: yes.  On xAPIC the ICR is written in two halves; the port must
 * keep an NMI that interrupts a half-written ICR from corrupting it (for
 * instance by saving and restoring ICR2 around its own send).
 */
void os_send_nmi(unsigned cpu);

/*
 * Send an NMI to the calling CPU.  On x86 this is a fixed, physical
 * destination IPI to the CPU's own APIC ID with NMI delivery mode: the "self"
 * shorthand may not be combined with NMI delivery on real hardware.
 * NMI-safe: yes (same ICR caveat as os_send_nmi()).
 */
void os_send_nmi_self(void);

/*
 * Send an NMI to every online CPU except the caller.
 * NMI-safe: yes (same ICR caveat as os_send_nmi()).  Used by panic shootdown,
 * which may start in NMI context.
 */
void os_send_nmi_allbutself(void);

/*
 * Raise an interrupt on the calling CPU, on an ordinary (maskable) vector,
 * whose handler calls irq_work_run().  It arrives once interrupts are enabled
 * again.  A port without a self-IPI may do nothing: irq_work_tick() also runs
 * the immediate list, one tick later.
 * NMI-safe: yes (same ICR caveat as os_send_nmi()).
 */
void os_irq_work_raise(void);

/*
 * How many nested NMIs `cpu`'s entry code has caught since boot (ones it
 * turned into a repeat of the running NMI before they reached the core;
 * x86: the entry assembly's per-CPU count).  nmi_get_cpu_stats() adds it to
 * the core's own `nested` count when statistics are read; the NMI path
 * never calls it.  Optional: core/nmi.c has a weak default of 0 for a port
 * whose entry does not count them.  A plain read of a counter the entry
 * bumps is enough (statistics).
 * NMI-safe: not needed (never called in NMI context).
 */
uint64_t os_nmi_arch_nested(unsigned cpu);

/* --- external NMI reasons ------------------------------------------------- */

/*
 * Read which external NMI reasons are asserted (OS_NMI_REASON_* bits).
 * NMI-safe: yes.  Core calls it only on the CPU that owns external NMIs,
 * under a lock that it only ever tries to take.
 */
unsigned os_nmi_reason_read(void);

/*
 * Clear the reasons in `bits` at the source and re-arm them, so the next
 * event raises a new NMI (x86: set and then clear the SERR / IOCHK disable
 * bits in port 0x61).  Until acked, a reason stays asserted, as on hardware.
 * NMI-safe: yes, same conditions as os_nmi_reason_read().
 */
void os_nmi_reason_ack(unsigned bits);

/* --- RCU (core/rcu.c only) ------------------------------------------------ */

/*
 * Disable / re-enable preemption on this CPU: between the two, the calling
 * task keeps the CPU (no context switch, no migration) though interrupts
 * stay on.  They nest.  rcu_read_lock()/rcu_read_unlock() are built on
 * them: a CPU that switches tasks is therefore in no read-side section.
 * os_preempt_enable() may switch to another task if one is due, but only
 * when interrupts are on (so never in NMI or interrupt context).
 * NMI-safe: yes (a per-CPU count moved up and back down; the enable does
 * not schedule with interrupts off).
 */
void os_preempt_disable(void);
void os_preempt_enable(void);

/*
 * Let time pass while synchronize_rcu() or rcu_barrier() waits for other
 * CPUs: sleep for about a timer tick when the caller may sleep (task
 * context, preemption and interrupts on), otherwise PAUSE for a short
 * while (tens of microseconds) and return.  Either way it returns, and the
 * caller looks again.
 * NMI-safe: no (never called in NMI context).
 */
void os_rcu_wait(void);

/*
 * call_rcu() queued the first callback on `cpu`'s (the caller's own) empty
 * list: wake that CPU's RCU callback thread, which calls rcu_do_batch()
 * until it returns false and then sleeps.  Called with interrupts off, in
 * task or interrupt context.  A port without threads may do nothing and
 * call rcu_do_batch() from somewhere else that can sleep.
 * NMI-safe: no.
 */
void os_rcu_kick_callbacks(unsigned cpu);

/* --- output and failure --------------------------------------------------- */

/*
 * Write `len` bytes to the console, synchronously.  The log core calls it;
 * it may do so in NMI context, but only on the CPU that currently owns the
 * console, so the implementation needs no lock of its own.
 * NMI-safe: yes, for the console owner.
 */
void os_console_write(const char *buf, size_t len);

/*
 * Stop the system with `msg`.  Does not return.  Core calls it from NMI
 * context (unknown_nmi_panic); the port's panic is expected to stop the other
 * CPUs with nmi_shootdown_cpus() before printing its report.
 * NMI-safe: yes.
 */
_Noreturn void os_panic(const char *msg);

#endif
