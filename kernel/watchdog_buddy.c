/*
 * watchdog_buddy.c: the buddy hard-lockup source.  The monitored CPUs form a
 * ring; each CPU's timer tick checks the heartbeat of the next one.  A CPU
 * whose heartbeat stood still for the threshold is only a suspect until it
 * confirms in its own NMI: the checker sends it one, and the suspect, in
 * that NMI, reports itself - with its own registers and backtrace - unless
 * the suspect shows it was not locked after all.  Stage 1, in the suspect's
 * NMI: it is not locked if
 *   - the NMI arrived late: the suspect's vCPU was not running (a host
 *     stall), which is also why its tick did not move;
 *   - its heartbeat moved between the check and the NMI;
 *   - it was interrupted with interrupts on: its tick is merely pending.
 * Otherwise it is running now, with interrupts off.  Stage 2: if in the next
 * BUDDY_CONFIRM_TICKS checker ticks it neither ticks nor is touched, the
 * checker sends a second NMI and the suspect reports itself (stage 3).  A
 * vCPU that the host stalled inside a section that touches the watchdog
 * answers stage 1 promptly on resuming but touches right after: withdrawn.
 * A suspect that does not take the first NMI for a threshold (at least 1 s)
 * is reported by its checker, without registers.  Evidence dropped:
 * watchdog_withdraw().  No NMIs at all while nothing is suspect.
 *
 * Every NMI this source sends rings the target's doorbell (WD_REQ_SOURCE)
 * after writing the request word and before sending, so buddy_nmi() runs
 * only on CPUs that were sent something; it never listens.  A request the
 * checker gave up on (BUDDY_GAVE_UP) keeps the doorbell ringing until the
 * late NMI takes it.
 */
#include <stdatomic.h>

#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <arch/tsc.h>
#include <kernel/shell.h>
#include <kernel/time.h>
#include <kernel/watchdog.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

/* A confirmation NMI answered later than this came late (the suspect was not running). */
#define BUDDY_LATE_MIN_NS	50000000ull
/* Stage 2: the suspect must stay silent this long after answering promptly. */
#define BUDDY_CONFIRM_TICKS	2
/* A suspect that does not take the first NMI for this long (or a threshold) is reported anyway. */
#define BUDDY_SILENT_MIN_NS	1000000000ull
/* confirm_sent[] after the checker gave up waiting: a late answer is claimed quietly. */
#define BUDDY_GAVE_UP		(~0ull)

static _Atomic uint64_t confirm_sent[MAX_CPUS];	/* stage 1: TSC of the NMI, 0: none */
static uint64_t confirm_hb[MAX_CPUS];		/* heartbeat at the suspicious check */
static _Atomic uint64_t armed_tsc[MAX_CPUS];	/* stage 2: when it answered, 0: not armed */
static _Atomic bool report_req[MAX_CPUS];	/* stage 3: report yourself */
static bool reported[MAX_CPUS];			/* checker side: the lockup was reported */
static _Atomic bool running;
static _Atomic uint64_t n_suspects, n_confirmed, n_late, n_progress, n_irqs_on, n_silent;

static uint64_t tick_ns(void)
{
	return 1000000000ull / timer_hz();
}

static uint64_t late_ns(void)
{
	uint64_t t = 4 * tick_ns();
	return t > BUDDY_LATE_MIN_NS ? t : BUDDY_LATE_MIN_NS;
}

static void withdraw(unsigned cpu, _Atomic uint64_t *why)
{
	watchdog_withdraw(cpu);
	atomic_fetch_add(why, 1);
}

/*
 * NMI context, on the suspect, when its doorbell rang.  Safe: this CPU's own request words (one
 * exchange each), per-CPU reads, the core's lock-free withdraw and report.
 */
static int buddy_nmi(unsigned me, struct nmi_frame *f)
{
	const struct regs *r = f->regs;
	uint64_t sent, delay;
	int n = 0;

	if (me >= MAX_CPUS)
		return NMI_DONE;
	/* Stage 3: it answered in time and has not moved since: report, from here. */
	if (atomic_load_explicit(&report_req[me], memory_order_acquire) &&
	    atomic_exchange_explicit(&report_req[me], false, memory_order_acq_rel)) {
		watchdog_note_nmi(me);
		atomic_fetch_add(&n_confirmed, 1);
		watchdog_hardlockup_report(me, "buddy", f);
		n++;
	}
	if (!atomic_load_explicit(&confirm_sent[me], memory_order_acquire))
		return n;
	sent = atomic_exchange_explicit(&confirm_sent[me], 0, memory_order_acq_rel);
	if (!sent)
		return n;
	if (sent == BUDDY_GAVE_UP)
		return n + 1;
	/* Stage 1: was this CPU really running without its tick? */
	watchdog_note_nmi(me);
	delay = tsc_delta_ns(rdtsc() - sent);
	if (delay > late_ns()) {
		withdraw(me, &n_late);
		pr_info("NMI watchdog: buddy: cpu %u took the confirmation NMI %llu ms late: "
			"its vCPU was held up, not locked; evidence dropped", me,
			(unsigned long long)(delay / 1000000));
	} else if (wd_heartbeat(me) != confirm_hb[me]) {
		withdraw(me, &n_progress);
	} else if (r && (r->rflags & RFLAGS_IF)) {
		withdraw(me, &n_irqs_on);
	} else {
		/* Running now, interrupts off: stage 2, see whether it moves from here. */
		atomic_store_explicit(&armed_tsc[me], rdtsc(), memory_order_release);
	}
	return n + 1;
}

/* `cpu`'s timer tick, interrupts off: check the next monitored CPU. */
static void buddy_tick(unsigned cpu)
{
	int b;

	if (!atomic_load_explicit(&running, memory_order_relaxed) || !wd_monitored(cpu))
		return;
	b = wd_next_monitored(cpu);
	if (b < 0 || (unsigned)b == cpu)
		return;
	uint64_t t0 = rdtsc();
	uint64_t hb = wd_heartbeat((unsigned)b);
	enum watchdog_verdict v = watchdog_check((unsigned)b, tsc_ns(), hb, tick_ns());

	wd_cost_record(rdtsc() - t0);
	if (v == WD_LOCKUP) {
		/* Stage 1: a suspect.  Ask it, in its own NMI. */
		atomic_fetch_add(&n_suspects, 1);
		confirm_hb[b] = hb;
		atomic_store_explicit(&armed_tsc[b], 0, memory_order_relaxed);
		atomic_store_explicit(&confirm_sent[b], rdtsc(), memory_order_release);
		wd_nmi_request((unsigned)b, WD_REQ_SOURCE);
		os_send_nmi((unsigned)b);
	} else if (v == WD_STILL_LOCKED) {
		uint64_t armed = atomic_load_explicit(&armed_tsc[b], memory_order_acquire);
		uint64_t sent = atomic_load_explicit(&confirm_sent[b], memory_order_acquire);
		uint64_t silent = watchdog_thresh_ns() > BUDDY_SILENT_MIN_NS ? watchdog_thresh_ns()
									       : BUDDY_SILENT_MIN_NS;

		if (armed && tsc_delta_ns(rdtsc() - armed) >= BUDDY_CONFIRM_TICKS * tick_ns() &&
		    atomic_compare_exchange_strong(&armed_tsc[b], &armed, 0)) {
			/*
			 * It answered promptly - so it was running - and in
			 * the ticks since it neither ticked nor was touched:
			 * locked.  It reports itself, with its registers.
			 */
			reported[b] = true;
			atomic_store_explicit(&report_req[b], true, memory_order_release);
			wd_nmi_request((unsigned)b, WD_REQ_SOURCE);
			os_send_nmi((unsigned)b);
		} else if (sent && sent != BUDDY_GAVE_UP && tsc_delta_ns(rdtsc() - sent) > silent &&
			   atomic_compare_exchange_strong(&confirm_sent[b], &sent, BUDDY_GAVE_UP)) {
			/* No answer for a whole threshold: NMIs do not get through to it. */
			atomic_fetch_add(&n_silent, 1);
			reported[b] = true;
			pr_emerg("NMI watchdog: cpu %u does not answer NMIs (stuck in an NMI handler, "
				 "or NMIs blocked); reported by its buddy, cpu %u", b, cpu);
			watchdog_hardlockup_report((unsigned)b, "buddy", NULL);
		}
	} else if (v != WD_OFF && v != WD_BUSY && v != WD_STALE && v != WD_LATE) {
		/* Progress (or a touch): a suspect in stage 2 is cleared. */
		uint64_t armed = atomic_exchange_explicit(&armed_tsc[b], 0, memory_order_acq_rel);
		if (armed)
			atomic_fetch_add(&n_progress, 1);
		if (v == WD_RECOVERED && reported[b])
			pr_warn("NMI watchdog: cpu %u is making progress again", b);
		reported[b] = false;
	}
}

static const char *buddy_unavailable(void)
{
	unsigned n = 0;

	for (unsigned cpu = 0; cpu < cpus_possible; cpu++)
		if (os_cpu_online(cpu))
			n++;
	if (n < 2)
		return "needs two CPUs (each CPU's tick checks the next CPU's)";
	if (!lapic_ready())
		return "no local APIC tick";
	return NULL;
}

static int buddy_start(void)
{
	atomic_store(&running, true);
	return 0;
}

static void buddy_stop(void)
{
	atomic_store(&running, false);
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++) {
		uint64_t sent = atomic_load(&confirm_sent[cpu]);
		/* One may still arrive: claim it quietly then. */
		if (sent)
			atomic_compare_exchange_strong(&confirm_sent[cpu], &sent, BUDDY_GAVE_UP);
		atomic_store(&armed_tsc[cpu], 0);
	}
}

static void buddy_reconfigure(void)
{
	/* The ring is the monitored set, read at every tick: nothing to redo. */
}

static uint64_t buddy_period_ns(void)
{
	return tick_ns();
}

/* Stage 2 waits BUDDY_CONFIRM_TICKS, then the next tick sends stage 3. */
static uint64_t buddy_confirm_ns(void)
{
	return (BUDDY_CONFIRM_TICKS + 1) * tick_ns();
}

static void buddy_show(void)
{
	shell_printf("buddy: each CPU's tick checks the next monitored CPU; suspects %llu, "
		     "reported %llu, withdrawn: late %llu, progress %llu, interrupts on %llu; "
		     "silent %llu\n",
		     (unsigned long long)n_suspects, (unsigned long long)n_confirmed,
		     (unsigned long long)n_late, (unsigned long long)n_progress,
		     (unsigned long long)n_irqs_on, (unsigned long long)n_silent);
	for (unsigned cpu = 0; cpu < cpus_possible; cpu++)
		if (wd_monitored(cpu))
			shell_printf("  cpu %u checks cpu %d\n", cpu, wd_next_monitored(cpu));
}

const struct wd_source wd_source_buddy = {
	.name = "buddy",
	.unavailable = buddy_unavailable,
	.start = buddy_start,
	.stop = buddy_stop,
	.reconfigure = buddy_reconfigure,
	.period_ns = buddy_period_ns,
	.confirm_ns = buddy_confirm_ns,
	.show = buddy_show,
	.tick = buddy_tick,
	.nmi = buddy_nmi,
};
