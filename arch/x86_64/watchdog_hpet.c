/*
 * watchdog_hpet.c: the HPET hard-lockup source.  One HPET comparator runs
 * periodic and delivers an NMI as an FSB (MSI) message.
 *
 * rotate (default): the message goes to one monitored CPU at a time.  That
 * CPU recognises the NMI as the HPET's (it is the current target and the
 * TSC says the expiry is due), checks itself, and passes the NMI on to the
 * next monitored CPU by writing that CPU's precomputed FSB address word into
 * the comparator: one 32-bit MMIO write, no lock, no routing code, the
 * comparator's configuration register untouched.  The comparator runs at
 * (check period / CPUs), so each CPU is checked once per check period.
 *
 * ipi: the message always goes to one CPU, which checks itself and sends an
 * NMI IPI to every other monitored CPU; each checks itself on that NMI.
 *
 * Everything that changes the comparator's configuration (start, stop, a
 * new monitored set) runs in task context: disable the comparator, flush the
 * NMIs that may still be on their way (an NMI to every CPU of the old ring,
 * each acknowledged from its handler), rebuild the ring, start again.
 */
#include <stdatomic.h>

#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/hpet.h>
#include <arch/percpu.h>
#include <arch/tsc.h>
#include <kernel/shell.h>
#include <kernel/watchdog.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

static const char *const hpet_modes[] = { "rotate", "ipi", NULL };
enum { HPET_ROTATE, HPET_IPI };
static int hpet_wd_mode = HPET_ROTATE;
NK_PARAM_ENUM("watchdog_hpet_mode", hpet_wd_mode, hpet_modes,
	      "HPET watchdog: rotate (the NMI moves from CPU to CPU) or ipi (one CPU takes it and NMIs the others)");

/* Each CPU is checked this many times per threshold. */
#define HPET_CHECKS_PER_THRESH	40
/* Shortest comparator period (many CPUs, short threshold). */
#define HPET_MIN_PERIOD_NS	100000ull
/* How long stop() waits for the flush NMIs to be acknowledged. */
#define HPET_FLUSH_NS		200000000ull

static int timer = -1;				/* the comparator in use */
static int mode;				/* mode of the running instance */
static uint32_t fsb_addr[MAX_CPUS];		/* msi_address() of each CPU */
static _Atomic int ring_next[MAX_CPUS];		/* next CPU of the HPET's ring, -1: not in it */
static bool in_ring[MAX_CPUS];			/* the ring of the running instance */
static _Atomic int target;			/* CPU the FSB message goes to now */
static _Atomic bool running;
static uint64_t period_tsc, window_tsc;		/* comparator period, early-arrival window */
static _Atomic uint64_t expected_tsc;		/* when the next expiry should arrive */
static uint64_t cpu_period_ns;			/* each CPU is checked this often */
static uint64_t comparator_ns;
static unsigned ring_size;
static _Atomic uint64_t ipi_req[MAX_CPUS];	/* ipi mode: the receiver asked this CPU to check */
static _Atomic bool flush_req[MAX_CPUS];
static _Atomic uint64_t handoff_tsc[MAX_CPUS];	/* when this CPU last handed the NMI on */
static _Atomic uint64_t last_tsc[MAX_CPUS];	/* when this CPU last took the HPET's NMI */
static _Atomic uint64_t last_seq[MAX_CPUS];	/* nmi_seq() of that NMI (odd) */
static _Atomic uint64_t n_hpet_nmis, n_handoffs, n_echoes, n_strays, n_early, n_ipis, n_flush_timeouts;
static _Atomic uint64_t cpu_hpet_nmis[MAX_CPUS];

/* The comparator: the highest-numbered one that can do FSB and periodic. */
static int pick_timer(bool *has_fsb)
{
	*has_fsb = false;
	for (int n = (int)hpet_num_timers() - 1; n >= 0; n--) {
		struct hpet_timer_info info;
		if (!hpet_timer_info((unsigned)n, &info) || !info.fsb)
			continue;
		*has_fsb = true;
		if (info.periodic)
			return n;
	}
	return -1;
}

static const char *hpet_unavailable(void)
{
	bool fsb;

	if (!hpet_present())
		return "no HPET (no ACPI HPET table - QEMU -no-hpet - or hpet=disable)";
	if (pick_timer(&fsb) < 0)
		return fsb ? "no FSB-capable HPET comparator can run periodic"
			   : "no HPET comparator can deliver by FSB/MSI (QEMU: -global hpet.msi=on)";
	return NULL;
}

/*
 * NMI context, on a CPU of the ring for every NMI (it listens), and on any
 * CPU whose doorbell a flush or an IPI-mode check rang.  Safe: loads of the target and
 * expected time, this CPU's own flags (exchanges), and on the HPET's NMI one
 * MMIO write of a precomputed word and NMI-safe IPIs.  No lock, no loop
 * except the IPI variant's bounded one over the ring.
 */
static int hpet_wd_nmi(unsigned me, struct nmi_frame *f)
{
	uint64_t t0 = rdtsc();
	int claimed = 0;

	if (me >= MAX_CPUS)
		return NMI_DONE;
	if (atomic_load_explicit(&flush_req[me], memory_order_relaxed) &&
	    atomic_exchange_explicit(&flush_req[me], false, memory_order_acq_rel))
		claimed++;
	if (atomic_load_explicit(&ipi_req[me], memory_order_relaxed) &&
	    atomic_exchange_explicit(&ipi_req[me], 0, memory_order_acq_rel)) {
		claimed++;
		if (wd_monitored(me)) {
			wd_self_check(me, f, cpu_period_ns, "hpet-ipi");
			wd_cost_record(rdtsc() - t0);
		}
	}
	if (!atomic_load_explicit(&running, memory_order_acquire))
		return claimed;
	/*
	 * The comparator's echo: QEMU fires a periodic comparator a second
	 * time one HPET tick after an expiry whose callback ran exactly on the
	 * expiry tick (usual under -icount), before the first NMI's handler
	 * could move the address on.  That NMI waits behind ours and arrives
	 * right after it returns.
	 */
	uint64_t last = atomic_load_explicit(&last_tsc[me], memory_order_relaxed);
	if (last && t0 - last < window_tsc) {
		atomic_fetch_add_explicit(&n_echoes, 1, memory_order_relaxed);
		return claimed + 1;
	}
	if (atomic_load_explicit(&target, memory_order_acquire) != (int)me)
		return claimed;

	uint64_t exp = atomic_load_explicit(&expected_tsc, memory_order_relaxed);
	int64_t d = (int64_t)(t0 - exp);
	if (d < -(int64_t)window_tsc) {
		/* Too early for the comparator: some other NMI. */
		atomic_fetch_add_explicit(&n_early, 1, memory_order_relaxed);
		return claimed;
	}
	/*
	 * The HPET's NMI.  Find which expiry it is on the comparator's grid
	 * (it may come a few periods late after a stall), then expect the
	 * next one a period later, nudged by an eighth of this one's lateness
	 * so that a small rate error between TSC and HPET never accumulates.
	 */
	uint64_t k = d > 0 ? ((uint64_t)d + period_tsc / 2) / period_tsc : 0;
	uint64_t this_exp = exp + k * period_tsc;
	int64_t err = (int64_t)(t0 - this_exp);
	atomic_store_explicit(&expected_tsc, this_exp + period_tsc + err / 8, memory_order_relaxed);
	atomic_store_explicit(&last_tsc[me], t0, memory_order_relaxed);
	atomic_fetch_add_explicit(&n_hpet_nmis, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&cpu_hpet_nmis[me], 1, memory_order_relaxed);

	if (mode == HPET_ROTATE) {
		int next = atomic_load_explicit(&ring_next[me], memory_order_relaxed);
		if (next >= 0 && next != (int)me) {
			/* Hand on: the next CPU owns the NMI (and expected_tsc) from here. */
			atomic_store_explicit(&handoff_tsc[me], t0, memory_order_relaxed);
			atomic_store_explicit(&target, next, memory_order_release);
			hpet_timer_set_fsb_addr((unsigned)timer, fsb_addr[next]);
			atomic_fetch_add_explicit(&n_handoffs, 1, memory_order_relaxed);
		}
	} else {
		for (int c = atomic_load_explicit(&ring_next[me], memory_order_relaxed);
		     c >= 0 && c != (int)me;
		     c = atomic_load_explicit(&ring_next[c], memory_order_relaxed)) {
			atomic_store_explicit(&ipi_req[c], t0, memory_order_release);
			wd_nmi_request((unsigned)c, WD_REQ_SOURCE);
			os_send_nmi((unsigned)c);
			atomic_fetch_add_explicit(&n_ipis, 1, memory_order_relaxed);
		}
	}
	if (wd_monitored(me))
		wd_self_check(me, f, cpu_period_ns, mode == HPET_ROTATE ? "hpet" : "hpet-ipi");
	uint64_t t1 = rdtsc();
	wd_cost_record(t1 - t0);
	/* An echo comes right after this handler returns (a report may have made it long). */
	atomic_store_explicit(&last_tsc[me], t1, memory_order_relaxed);
	atomic_store_explicit(&last_seq[me], nmi_seq(me), memory_order_relaxed);
	return claimed + 1;
}

/*
 * NMI context, unknown chain: an NMI nothing explained is taken for an HPET
 * NMI that missed the local recognition when it is
 *   - the very next NMI on this CPU after one of the HPET's (by the core's
 *     NMI sequence counter): an echo that the host delayed past the echo
 *     window, or one latched behind the HPET's and re-dispatched;
 *   - on the current target: an NMI from an expiry the rotation had moved on
 *     from early;
 *   - on a CPU that handed the NMI on within the last two periods: the
 *     comparator fired at the old address as it changed.
 * Counted as strays.  Safe: loads only.
 */
static int hpet_wd_stray(unsigned me, struct nmi_frame *f)
{
	(void)f;
	if (me >= MAX_CPUS || !atomic_load_explicit(&running, memory_order_acquire))
		return NMI_DONE;
	uint64_t h = atomic_load_explicit(&handoff_tsc[me], memory_order_relaxed);
	uint64_t ls = atomic_load_explicit(&last_seq[me], memory_order_relaxed);
	uint64_t seq = nmi_seq(me);
	if ((ls && (seq == ls || seq == ls + 2)) ||
	    atomic_load_explicit(&target, memory_order_relaxed) == (int)me ||
	    (h && rdtsc() - h < 2 * period_tsc)) {
		atomic_fetch_add_explicit(&n_strays, 1, memory_order_relaxed);
		return NMI_HANDLED;
	}
	return NMI_DONE;
}

/*
 * WD_LISTEN_SOURCE on every CPU of the running instance's ring: the
 * comparator's NMI carries no doorbell, so each CPU it can reach (the
 * current target, a CPU that just handed on and may take an echo) runs
 * hpet_wd_nmi() on every NMI while the source runs.  CPUs outside the ring
 * never do.  Task context (start and stop).
 */
static void set_listening(bool on)
{
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
		if (in_ring[cpu])
			wd_nmi_listen(cpu, WD_LISTEN_SOURCE, on);
}

static uint64_t hpet_unknown_claims(void)
{
	return atomic_load(&n_strays);
}

static uint64_t hpet_period_ns(void)
{
	return cpu_period_ns;
}

static int hpet_start(void)
{
	bool fsb;
	int first = wd_first_monitored();
	unsigned n = wd_monitored_count();

	timer = pick_timer(&fsb);
	if (timer < 0 || first < 0 || !n)
		return timer < 0 ? -1 : 0;
	mode = hpet_wd_mode;
	cpu_period_ns = watchdog_thresh_ns() / HPET_CHECKS_PER_THRESH;
	comparator_ns = mode == HPET_ROTATE ? cpu_period_ns / n : cpu_period_ns;
	if (comparator_ns < HPET_MIN_PERIOD_NS) {
		comparator_ns = HPET_MIN_PERIOD_NS;
		cpu_period_ns = mode == HPET_ROTATE ? comparator_ns * n : comparator_ns;
	}
	uint64_t ticks = hpet_ns_to_ticks(comparator_ns);
	/* The comparator's exact period (whole HPET ticks), on the TSC's scale. */
	period_tsc = ns_to_tsc(ticks * hpet_period_fs() / 1000000u);
	/* An NMI earlier than this before the expected expiry is not the HPET's. */
	window_tsc = period_tsc / 4;

	ring_size = 0;
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++) {
		bool m = wd_monitored(cpu);
		in_ring[cpu] = m;
		atomic_store_explicit(&ring_next[cpu], m ? wd_next_monitored(cpu) : -1,
				      memory_order_relaxed);
		atomic_store_explicit(&handoff_tsc[cpu], 0, memory_order_relaxed);
		atomic_store_explicit(&last_tsc[cpu], 0, memory_order_relaxed);
		atomic_store_explicit(&last_seq[cpu], 0, memory_order_relaxed);
		if (m) {
			fsb_addr[cpu] = msi_address(percpu_area[cpu].apic_id);
			ring_size++;
		}
	}
	atomic_store_explicit(&target, first, memory_order_relaxed);
	atomic_store_explicit(&expected_tsc, rdtsc() + period_tsc, memory_order_relaxed);
	atomic_store_explicit(&running, true, memory_order_release);
	/* Every CPU the comparator's message can reach listens before the first expiry. */
	set_listening(true);
	if (!hpet_timer_start_periodic_fsb((unsigned)timer, ticks, fsb_addr[first],
					   msi_data(ICR_DM_NMI, 0))) {
		atomic_store(&running, false);
		set_listening(false);
		pr_err("NMI watchdog: hpet: comparator %d refused periodic FSB mode", timer);
		return -1;
	}
	/* The first expiry is one period after the start. */
	atomic_store_explicit(&expected_tsc, rdtsc() + period_tsc, memory_order_relaxed);
	return 0;
}

static bool flushed(void *arg)
{
	(void)arg;
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
		if (atomic_load_explicit(&flush_req[cpu], memory_order_acquire))
			return false;
	return true;
}

static void hpet_stop(void)
{
	if (timer < 0 || !atomic_load(&running))
		return;
	/* 1. No more messages: the configuration register, outside NMI context. */
	hpet_timer_disable((unsigned)timer);
	/*
	 * 2. An NMI the comparator sent before that may still be on its way
	 * (or latched behind another NMI) on any CPU of the ring.  Send each an
	 * NMI of our own: when it has been handled, whatever was pending there
	 * before it has been delivered too (or merged into it).  Until then the
	 * handler still recognises HPET NMIs (running stays true).
	 */
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
		if (in_ring[cpu] && os_cpu_online(cpu)) {
			atomic_store_explicit(&flush_req[cpu], true, memory_order_release);
			wd_nmi_request(cpu, WD_REQ_SOURCE);
			os_send_nmi(cpu);
		}
	if (!wd_wait(flushed, NULL, HPET_FLUSH_NS)) {
		atomic_fetch_add(&n_flush_timeouts, 1);
		for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
			if (atomic_exchange(&flush_req[cpu], false))
				pr_warn("NMI watchdog: hpet: cpu %u did not take the flush NMI", cpu);
	}
	/* 3. Nothing is in flight: the ring may change, and no CPU need listen. */
	atomic_store_explicit(&running, false, memory_order_release);
	set_listening(false);
}

static void hpet_reconfigure(void)
{
	hpet_stop();
	hpet_start();
}

static void hpet_show(void)
{
	shell_printf("hpet: comparator %d, %s, every %llu us (each CPU every %llu ms), "
		     "ring of %u CPUs, target cpu %d\n", timer,
		     mode == HPET_ROTATE ? "rotating FSB NMI" : "one receiver, IPIs to the others",
		     (unsigned long long)(comparator_ns / 1000),
		     (unsigned long long)(cpu_period_ns / 1000000), ring_size,
		     atomic_load(&target));
	shell_printf("hpet: NMIs %llu, hand-overs %llu, echoes %llu, IPIs %llu, strays %llu, "
		     "early (not ours) %llu, flush timeouts %llu\n",
		     (unsigned long long)n_hpet_nmis, (unsigned long long)n_handoffs,
		     (unsigned long long)n_echoes, (unsigned long long)n_ipis,
		     (unsigned long long)n_strays,
		     (unsigned long long)n_early, (unsigned long long)n_flush_timeouts);
	for (unsigned cpu = 0; cpu < cpus_possible; cpu++)
		if (atomic_load(&cpu_hpet_nmis[cpu]))
			shell_printf("  cpu %u took %llu HPET NMIs\n", cpu,
				     (unsigned long long)atomic_load(&cpu_hpet_nmis[cpu]));
}

const struct wd_source wd_source_hpet = {
	.name = "hpet",
	.unavailable = hpet_unavailable,
	.start = hpet_start,
	.stop = hpet_stop,
	.reconfigure = hpet_reconfigure,
	.period_ns = hpet_period_ns,
	.show = hpet_show,
	.unknown_claims = hpet_unknown_claims,
	.nmi = hpet_wd_nmi,
	.nmi_unknown = hpet_wd_stray,
};
