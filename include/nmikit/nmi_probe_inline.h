/*
 * nmi_probe_inline.h: the per-CPU state of the lost-NMI probe (core/
 * nmi_probe.c) and the step every claimed NMI runs on it, as an inline
 * function, so that nmi_dispatch() in core/nmi.c asks for the next probe
 * without a call (about 8 instructions fewer on every claimed NMI).
 * Internal to the core: it lives here only because core/ includes nothing
 * but <nmikit/...> headers.  Nothing outside core/ may use it; everyone
 * else uses the nmi_probe_* functions of <nmikit/nmi.h>.
 */
#ifndef NMIKIT_NMI_PROBE_INLINE_H
#define NMIKIT_NMI_PROBE_INLINE_H

#include <nmikit/compiler.h>
#include <nmikit/core_cpu.h>
#include <nmikit/irq_work.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* The item is not queued: queue it (first use initialises it).  Out of line. */
void nmi_probe_queue(struct nmi_probe_cpu *p);

/*
 * NMI context, on the CPU that owns `p`.  Safe: touches only this CPU's
 * probe slot, and irq_work_queue() is NMI-safe.  Asks for a probe on the
 * next tick.
 *
 * Setting `wanted` is what matters; queueing the item only makes sure the
 * tick looks at it.  If the item is still PENDING (queued, callback not yet
 * started: the common case from the second claimed NMI on), queueing again
 * would only be refused, so it is skipped.  This is safe because the item
 * runs on this CPU only: if this NMI sees PENDING, the runner has not yet
 * cleared it (it clears PENDING before calling the callback), so the
 * callback starts after this NMI returns and reads the `wanted` we stored.
 * The compiler fence keeps the store before the load; no CPU barrier is
 * needed between an NMI and the code it interrupted.
 */
static inline __attribute__((always_inline)) void nmi_probe_want(struct nmi_probe_cpu *p)
{
	atomic_store_explicit(&p->wanted, true, memory_order_release);
	atomic_signal_fence(memory_order_seq_cst);
	if (NK_LIKELY(atomic_load_explicit(&p->work.flags, memory_order_relaxed) & IRQ_WORK_PENDING))
		return;
	nmi_probe_queue(p);
}

/*
 * NMI context, on the CPU that owns `p`: a local handler or an external
 * reason claimed this NMI.  The pending mark is left as it is: a
 * real event was claimed, but the probe's own NMI may still be in flight
 * behind this one; clearing the mark now would make that NMI look unknown.
 * A pending mark counts a find (the probe, or the NMI it merged with,
 * found work).
 */
static inline __attribute__((always_inline)) void nmi_probe_claimed_inline(struct nmi_probe_cpu *p)
{
	if (!nmi_lost_recovery)
		return;
	if (atomic_load_explicit(&p->pending, memory_order_acquire))
		nk_stat_inc(&p->found);
	nmi_probe_want(p);
}

#endif
