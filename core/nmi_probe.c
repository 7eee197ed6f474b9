/*
 * Lost-NMI recovery.  Only one NMI can be latched per CPU, so when several
 * arrive while one is being handled some are dropped; if the one that got
 * through was claimed by a local handler, an external (edge-triggered) source
 * is never looked at again.  After every claimed NMI this CPU therefore sends
 * itself a probe NMI from the next timer tick, and keeps doing so until a
 * probe comes back with nobody claiming it.  docs/nmi-dispatch.md has the
 * protocol and its races.
 */
#include <nmikit/compiler.h>
#include <nmikit/core_cpu.h>
#include <nmikit/irq_work.h>
#include <nmikit/nmi.h>
#include <nmikit/nmi_probe_inline.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool nmi_lost_recovery = true;
NK_PARAM_BOOL("nmi_lost_recovery", nmi_lost_recovery,
	      "after a claimed NMI, probe with self-NMIs until one comes back unclaimed");

/*
 * The probe itself: tick context (irq_work_tick), interrupts off, on the CPU
 * it probes.
 *
 * A pending mark left from an earlier probe is judged by the NMI sequence
 * counter.  The probe is sent from tick context, where NMIs are not blocked,
 * so its NMI arrives at once (or merges with one arriving at that moment):
 * no later NMI can overtake it.  Hence if this CPU has entered an NMI since
 * the probe was sent, the probe's NMI has been delivered: had it passed the handlers unclaimed it
 * would have cleared the mark, so it was claimed -- it found an event, or it
 * merged with a real NMI in the latch.  Either way the mark is stale: clear
 * it.  If no NMI has entered since, the probe's NMI is still on its way:
 * sending another would only merge with it, so look again at the next tick.
 *
 * A probe is sent only if an NMI was claimed since the last one (`wanted`):
 * when the in-flight probe comes back unclaimed, the re-queued item finds
 * nothing wanted and probing stops.
 */
static void nmi_probe_fn(struct irq_work *w)
{
	unsigned cpu = os_cpu_id();
	struct nmi_probe_cpu *p = &nk_cpus[cpu].probe;

	if (!nmi_lost_recovery) {
		atomic_store_explicit(&p->wanted, false, memory_order_relaxed);
		atomic_store_explicit(&p->pending, false, memory_order_relaxed);
		return;
	}
	if (atomic_load_explicit(&p->pending, memory_order_acquire)) {
		if (nmi_seq(cpu) == p->sent_seq) {
			irq_work_queue(w);
			return;
		}
		atomic_store_explicit(&p->pending, false, memory_order_relaxed);
		if (!atomic_exchange_explicit(&p->absorbed_mark, false, memory_order_relaxed))
			nk_stat_inc(&p->collapsed);
	}
	/*
	 * Test and clear in one step: an NMI claimed after this point sets
	 * `wanted` again and queues the item again, so it is not missed.
	 */
	if (!atomic_exchange_explicit(&p->wanted, false, memory_order_acq_rel))
		return;
	/*
	 * Mark before sending: the NMI may arrive the instant the IPI is out,
	 * and it must find the mark.
	 */
	p->sent_seq = nmi_seq(cpu);
	atomic_store_explicit(&p->pending, true, memory_order_seq_cst);
	nk_stat_inc(&p->sent);
	os_send_nmi_self();
}

/*
 * NMI context, this CPU: the item is not queued (nmi_probe_want() found it
 * not PENDING).  First use on this CPU: nothing else can touch the item yet
 * (it was never queued, and dispatch does not nest on one CPU), so it is
 * initialised here.
 */
void nmi_probe_queue(struct nmi_probe_cpu *p)
{
	if (!p->work.func)
		irq_work_init(&p->work, nmi_probe_fn, IRQ_WORK_LAZY);
	irq_work_queue(&p->work);
}

/*
 * NMI context, this CPU: the dispatch could not look at a source this time
 * (the reason lock was held elsewhere), so a later look must be guaranteed.
 */
void nmi_probe_request(void)
{
	if (!nmi_lost_recovery)
		return;
	nmi_probe_want(&nk_this_cpu()->probe);
}

/* NMI context, on CPU `cpu` (== os_cpu_id()): see nmi_probe_claimed_inline(). */
void nmi_probe_on_claimed_cpu(unsigned cpu)
{
	nmi_probe_claimed_inline(&nk_cpus[cpu].probe);
}

void nmi_probe_on_claimed(void)
{
	nmi_probe_on_claimed_cpu(os_cpu_id());
}

/*
 * NMI context, this CPU.  Nobody claimed the NMI: if a probe is outstanding,
 * take this NMI for it - but keep the mark until the next tick.  The NMI we
 * absorb may not be the probe's own: an NMI latched behind a claimed one can
 * find nothing (its event was claimed early) and arrive between the mark and
 * the send; clearing the mark here would then make the probe's own NMI,
 * arriving next, look unknown (spin found this: models/nmi_probe.pml,
 * variant as_written).  The tick clears the stale mark; `wanted` is clear, so
 * probing still stops.  Cost: a genuinely unknown NMI arriving before that
 * tick is absorbed too.
 */
bool nmi_probe_on_unclaimed(void)
{
	struct nmi_probe_cpu *p = &nk_this_cpu()->probe;

	if (!atomic_load_explicit(&p->pending, memory_order_acquire))
		return false;
	atomic_store_explicit(&p->absorbed_mark, true, memory_order_relaxed);
	nk_stat_inc(&p->absorbed);
	irq_work_queue(&p->work);
	return true;
}

bool nmi_probe_pending(unsigned cpu)
{
	if (cpu >= NMIKIT_MAX_CPUS)
		return false;
	return atomic_load_explicit(&nk_cpus[cpu].probe.pending, memory_order_acquire);
}

void nmi_probe_get_stats(unsigned cpu, struct nmi_probe_stats *out)
{
	const struct nmi_probe_cpu *p;

	if (cpu >= NMIKIT_MAX_CPUS) {
		*out = (struct nmi_probe_stats){ 0 };
		return;
	}
	p = &nk_cpus[cpu].probe;
	out->sent = nk_stat_read(&p->sent);
	out->found = nk_stat_read(&p->found);
	out->absorbed = nk_stat_read(&p->absorbed);
	out->collapsed = nk_stat_read(&p->collapsed);
}
