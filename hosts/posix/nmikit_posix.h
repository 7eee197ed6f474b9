/*
 * nmikit_posix.h: the portable core (the core/ sources, compiled unchanged) hosted in
 * Linux user space.  A "CPU" is a thread attached with nkp_cpu_attach(); an
 * NMI is a real-time signal sent to that thread with tgkill(); "interrupts"
 * are two more signals, the per-thread timer tick and the irq_work self-IPI,
 * which os_local_irq_save() blocks.  hosts/posix/README.md explains the
 * mapping and what differs from hardware.
 */
#ifndef NMIKIT_POSIX_H
#define NMIKIT_POSIX_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nmikit/compiler.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

/*
 * The signals.  The NMI has the lowest number, so when an NMI and a tick are
 * both pending Linux delivers the NMI first (it takes the lowest pending
 * signal), as an x86 CPU takes an NMI before a maskable interrupt.
 */
#define NKP_SIG_NMI		(SIGRTMIN + 0)
#define NKP_SIG_TICK		(SIGRTMIN + 1)
#define NKP_SIG_IRQ_WORK	(SIGRTMIN + 2)

struct nkp_config {
	unsigned ncpus;		/* CPUs (threads) that may attach, 1..NMIKIT_MAX_CPUS */
	unsigned tick_hz;	/* per-CPU timer tick; 0: no tick */
	/*
	 * Let an NMI signal interrupt the NMI handler itself (SA_NODEFER):
	 * the nested one reaches nmi_entry(), which must latch it.  Off, the
	 * signal stays blocked during the handler and at most one waits (the
	 * hardware latch, kept by nkp_send_nmi's pending flag).
	 */
	bool nmi_nesting;
	int console_fd;		/* where os_console_write() goes; -1: nowhere */
	/*
	 * Deliver NMIs, ticks and irq_work at nkp_poll() calls instead of by
	 * signals, and keep "interrupts off" in a thread-local flag.  For
	 * ThreadSanitizer, which defers asynchronous signals to its own safe
	 * points and can drop one: there the races between CPUs are what is
	 * checked, and nesting at arbitrary instructions is not (nmi_nesting
	 * is ignored).
	 */
	bool polled;
};

/*
 * Install the signal handlers and remember the configuration.  Call once,
 * before any thread attaches.  Returns 0, or -1 with errno set.
 */
int nkp_init(const struct nkp_config *cfg);

/*
 * Make the calling thread CPU `cpu`: it gets that os_cpu_id(), is online,
 * takes NMIs, and (tick_hz > 0) gets its own timer tick.  Returns 0, or -1
 * (cpu out of range or already taken, timer_create failed).
 */
int nkp_cpu_attach(unsigned cpu);

/*
 * Take the calling CPU offline (stops its tick and its NMIs: NMIs sent to an
 * offline CPU are counted as dropped) and forget the thread.  NMIs already
 * queued for it are delivered before it returns.
 */
void nkp_cpu_detach(void);

/*
 * Polled mode: take what is pending for this CPU now - an NMI (unless one
 * is running), then, with interrupts on, irq_work and a due tick.  Called by
 * os_cpu_relax() and os_local_irq_restore(); a CPU's own loop should call it
 * too.  Does nothing in signal mode.
 */
void nkp_poll(void);

/* The calling thread's CPU, or NKP_NO_CPU when it is not attached. */
#define NKP_NO_CPU	(~0u)
unsigned nkp_this_cpu(void);

/*
 * What the calling thread is running in: a set of NKP_CTX_* bits (0 for
 * ordinary thread code).  Async-signal-safe.
 */
#define NKP_CTX_TICK		0x1u	/* inside the timer tick */
#define NKP_CTX_IRQ_WORK	0x2u	/* inside the irq_work self-IPI */
#define NKP_CTX_NMI		0x4u	/* inside the NMI signal handler */
unsigned nkp_context(void);

/*
 * Send an NMI with hardware latch semantics: if one is already pending
 * (sent and not yet taken) for `cpu`, this one merges with it and is counted
 * `collapsed`.  NMI-safe: yes (two atomics and tgkill).
 */
void nkp_send_nmi(unsigned cpu);

/*
 * Hooks, called on the CPU concerned:
 *  tick:   from every timer tick, interrupts off, after irq_work_tick().
 *  nmi:    from the NMI signal handler before nmi_entry() (the point where
 *          arch entry code would run), with the nesting depth (1 = outermost).
 * Set before CPUs attach; NULL to remove.
 */
void nkp_set_tick_hook(void (*fn)(unsigned cpu));
void nkp_set_nmi_hook(void (*fn)(unsigned cpu, unsigned depth));

/*
 * What os_panic() does after printing the message: default abort().  A hook
 * may longjmp or exit; if it returns, abort() follows.
 */
void nkp_set_panic_hook(void (*fn)(const char *msg));

/*
 * The simulated external reason port (SERR / IOCHK): a device asserts bits
 * with nkp_reason_assert(); they stay asserted until the core acks them in
 * an NMI (os_nmi_reason_ack).  nkp_reason_assert() raises no NMI itself.
 */
void nkp_reason_assert(unsigned bits);
unsigned nkp_reason_asserted(void);
uint64_t nkp_reason_acks(unsigned bit);	/* times `bit` was acked */

/* Per-CPU host counters (the core keeps its own in nmi_get_cpu_stats). */
struct nkp_cpu_stats {
	uint64_t sent;		/* NMI signals sent to this CPU */
	uint64_t collapsed;	/* sends merged with a pending one (latch) */
	uint64_t dropped;	/* sends to an offline CPU */
	uint64_t delivered;	/* NMI signal handler entries */
	uint64_t nested;	/* entries while an NMI handler was running */
	uint64_t max_depth;	/* deepest NMI nesting seen */
	uint64_t ticks;		/* timer ticks run */
	uint64_t irq_work_ipis;	/* irq_work self-signals taken */
};
void nkp_get_cpu_stats(unsigned cpu, struct nkp_cpu_stats *out);

/*
 * Run `fn` with "interrupts" (tick, irq_work) blocked on this thread, as the
 * kernel runs irq-off sections.  NMIs still arrive.
 */
#define nkp_irqs_off(stmt) do {						\
	os_irqflags_t nkp_f__ = os_local_irq_save();			\
	stmt;								\
	os_local_irq_restore(nkp_f__);					\
} while (0)

#endif
