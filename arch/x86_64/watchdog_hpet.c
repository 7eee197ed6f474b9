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
 *
 * Listening: the comparator's message rings no doorbell, so a CPU it can
 * reach must carry WD_LISTEN_SOURCE, and every NMI on a CPU that does runs
 * hpet_wd_nmi().  Only the CPUs the message can reach listen: in ipi mode
 * the receiver; in rotate mode the CPU whose address the comparator holds
 * (from just before the hand-off to it until its own hand-off) and, for the
 * echo, the CPU that just handed on, until its next NMI after the echo
 * window or the next hand-off, whichever comes first.  The argument is at
 * hand_on() and quiet_here(); the tests at the end of this file check it.
 */
#include <stdatomic.h>

#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/hpet.h>
#include <arch/percpu.h>
#include <arch/tsc.h>
#include <kernel/ktest.h>
#include <kernel/sched.h>
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
static _Atomic int ring_prev[MAX_CPUS];		/* the CPU that hands the NMI to this one */
static bool in_ring[MAX_CPUS];			/* the ring of the running instance */
/*
 * rotate: `fsb_cpu` is the CPU whose address the comparator holds, or is
 * about to (stored before the MMIO write); `target` is the CPU that owns the
 * NMI, stored after that write, so target == T means the comparator already
 * sends to T.  They differ only inside a hand-off.  ipi: both the receiver.
 */
static _Atomic int fsb_cpu;
static _Atomic int target;
static _Atomic bool running;
static _Atomic bool handing_on;			/* hand-offs and IPIs allowed: start until stop begins */
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
static _Atomic uint64_t n_ahead, n_quiet;	/* NMIs ahead of a hand-over; listen bits dropped lazily */
static _Atomic uint64_t cpu_hpet_nmis[MAX_CPUS];
/* Test only (watchdog.hpet_handoff_listens_before_retarget): stall one hand-off this long. */
static _Atomic uint64_t test_stall_tsc;

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
 * Test only, NMI context inside a hand-off, when the test armed it: hold
 * this CPU between the retargeting MMIO write and the store of `target` for
 * the armed time, once, as a host that stopped the vCPU right there would.
 * Bounded by what the test asks (a comparator period and a half), PAUSE in
 * the loop.
 */
static __attribute__((noinline)) void test_stall(void)
{
	uint64_t d = atomic_exchange_explicit(&test_stall_tsc, 0, memory_order_relaxed);

	for (uint64_t t = rdtsc(); d && rdtsc() - t < d;)
		cpu_relax();
}

/*
 * Step 3 of a hand-off: point the comparator at `next`, one 32-bit MMIO
 * write of a precomputed word, the configuration register untouched.  The
 * test's stall sits inside this step, right after the write, so that
 * anything a hand-off does after retargeting comes after the stall too.
 */
static inline void retarget(int next)
{
	hpet_timer_set_fsb_addr((unsigned)timer, fsb_addr[next]);
	if (NK_UNLIKELY(atomic_load_explicit(&test_stall_tsc, memory_order_relaxed)))
		test_stall();
}

/*
 * rotate mode, NMI context on `me`, the target, which has just recognised
 * the HPET's NMI: pass the NMI on to `next`.  Safe: one locked operation on
 * each of two other CPUs' doorbell words, one MMIO write of a precomputed
 * word, stores; no lock, no wait.
 *
 * One hand-off at a time.  Only the target hands on, and `target` is stored
 * last, after the MMIO write: the CPU that finds target == itself (acquire)
 * starts its hand-off after this one ended and after the comparator already
 * sends to it, so its own MMIO write lands after ours.  The hand-offs form
 * one sequence, each after the previous one.  (With `target` stored before
 * the write, a hand-off that the host stalled between the two let the next
 * CPU take some NMI that fitted the expected time, hand on, and then see
 * the stalled write point the comparator back at itself, no longer the
 * target: the rotation stopped.)
 *
 * Who listens, and why no expiry reaches a CPU that does not.  The
 * comparator holds X's address from prev(X)'s MMIO write to X's own; an
 * expiry it sent within that interval arrives within it or, latched behind
 * X's handler, right after X's hand-off (the echo, inside the echo window,
 * which X's own lazy off waits out).  X's listen bit changes only
 *   - on, by prev(X) in step 2 below, before its MMIO write in step 3: a
 *     locked read-modify-write, which no later store passes on x86 (the
 *     uncached MMIO write included), in a call the compiler cannot see
 *     through; and by X in quiet_here() when it finds itself in fsb_cpu;
 *   - off, by next(X) in step 1 (rings of 3 or more CPUs only).  next(X)
 *     is in its own hand-off, which began after X's ended (above): the
 *     comparator no longer holds X's address, and on a host that runs the
 *     vCPUs on time X's echo window closed a period ago.  A host that
 *     stalled X with its echo still latched (or a successor that took an
 *     NMI up to a quarter period early as its expiry) can clear the bit
 *     before the echo arrives: that echo is then the very next NMI after
 *     an HPET one there, which hpet_wd_stray() claims by last_seq
 *     (models/hpet_handoff.pml finds an unknown NMI without that rule).
 *     X is set again only by prev(X) != next(X), in a later
 *     hand-off of the sequence, so this off never overtakes that on.  In a
 *     ring of 2, prev(X) == next(X): nobody clears X here;
 *   - off, by X itself in quiet_here(), argued there;
 *   - off, by hpet_stop(), after the comparator is disabled and every CPU
 *     of the ring answered its flush NMI: nothing is in flight, and no
 *     hand-off runs or can start (handing_on is false).
 * So X listens for the whole interval.  Between steps 3 and 4 the next CPU
 * may take an expiry while `target` is still `me`; it finds itself in
 * fsb_cpu and claims it as ahead of the hand-over (quiet_here()).  An NMI
 * later than the echo window - an echo the host delayed, an expiry at the
 * old address as it changed - may find its CPU no longer listening; the
 * unknown chain's hpet_wd_stray() takes it, as before.
 */
static void hand_on(unsigned me, int next)
{
	int prev = atomic_load_explicit(&ring_prev[me], memory_order_relaxed);

	/* 1. The CPU that handed the NMI to us took its echo a period ago (or hpet_wd_stray() takes it). */
	if (prev != next && prev >= 0 && prev != (int)me)
		wd_nmi_listen((unsigned)prev, WD_LISTEN_SOURCE, false);
	/* 2. The next CPU listens before the comparator can reach it. */
	atomic_store_explicit(&fsb_cpu, next, memory_order_seq_cst);
	wd_nmi_listen((unsigned)next, WD_LISTEN_SOURCE, true);
	/* 3. Retarget. */
	retarget(next);
	/* 4. The next CPU owns the NMI (and expected_tsc) from here. */
	atomic_store_explicit(&target, next, memory_order_release);
	atomic_fetch_add_explicit(&n_handoffs, 1, memory_order_relaxed);
}

/*
 * rotate mode, NMI context on `me`, not the target, for an NMI past this
 * CPU's echo window: claim an expiry that came ahead of the hand-over to
 * us, or else stop listening (lazily: the first NMI here once the echo
 * window has passed, unless the next hand-off by the CPU after us came
 * first).  Safe: loads, and one or two locked operations on this CPU's own
 * doorbell word.
 *
 * The off must never undo the on that prev(me) makes when it hands the NMI
 * to us (in a ring of 2 the other CPU does so every period; a handler here
 * may run late).  prev(me) stores fsb_cpu = me, then sets our bit; we clear
 * our bit, then load fsb_cpu; all four sequentially consistent.  In their
 * one total order either our load comes after prev(me)'s store - we find
 * ourselves and set the bit again - or before it, and then our clear came
 * before that store and so before prev(me)'s set, which stands.  Either way
 * we listen from prev(me)'s step 2 on, before its MMIO write.  Otherwise
 * fsb_cpu != me and target != me: the comparator does not send here.
 */
static int quiet_here(unsigned me)
{
	if (atomic_load_explicit(&fsb_cpu, memory_order_seq_cst) == (int)me) {
		/* Reached between the retargeting write and `target`: the comparator's. */
		atomic_fetch_add_explicit(&n_ahead, 1, memory_order_relaxed);
		return 1;
	}
	wd_nmi_listen(me, WD_LISTEN_SOURCE, false);
	if (atomic_load_explicit(&fsb_cpu, memory_order_seq_cst) == (int)me)
		wd_nmi_listen(me, WD_LISTEN_SOURCE, true);
	else
		atomic_fetch_add_explicit(&n_quiet, 1, memory_order_relaxed);
	return 0;
}

/*
 * NMI context, for every NMI on a CPU that listens (rotate: the CPU the
 * comparator sends to, one being handed the NMI, one that just handed on;
 * ipi: the receiver), and on any CPU whose doorbell a flush or an IPI-mode
 * check rang.  Safe: loads of the target and expected time, this CPU's own
 * flags (exchanges), and on the HPET's NMI one MMIO write of a precomputed
 * word, locked operations on doorbell words and NMI-safe IPIs.  No lock, no
 * loop except the IPI variant's bounded one over the ring (and the test's
 * bounded stall).
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
		return mode == HPET_ROTATE ? claimed + quiet_here(me) : claimed;

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

	/*
	 * Nothing more goes out once hpet_stop() has begun (handing_on false,
	 * stored before its flush NMIs are sent): a handler running when the
	 * flush NMI reaches this CPU ends before that NMI is taken, and one
	 * that takes it finds handing_on false.
	 */
	if (!atomic_load_explicit(&handing_on, memory_order_seq_cst)) {
		/* stopping: recognised and checked, not passed on */
	} else if (mode == HPET_ROTATE) {
		int next = atomic_load_explicit(&ring_next[me], memory_order_relaxed);
		if (next >= 0 && next != (int)me) {
			atomic_store_explicit(&handoff_tsc[me], t0, memory_order_relaxed);
			hand_on(me, next);
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
 *     window (this CPU may have stopped listening by then), or one latched
 *     behind the HPET's and re-dispatched;
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
 * Task context (stop, and a start that failed), with the comparator
 * disabled and nothing in flight: no CPU of the ring listens any more.
 */
static void ring_quiet(void)
{
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
		if (in_ring[cpu])
			wd_nmi_listen(cpu, WD_LISTEN_SOURCE, false);
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
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
		atomic_store_explicit(&ring_prev[cpu], -1, memory_order_relaxed);
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++) {
		bool m = wd_monitored(cpu);
		int next = m ? wd_next_monitored(cpu) : -1;
		in_ring[cpu] = m;
		atomic_store_explicit(&ring_next[cpu], next, memory_order_relaxed);
		if (next >= 0)
			atomic_store_explicit(&ring_prev[next], (int)cpu, memory_order_relaxed);
		atomic_store_explicit(&handoff_tsc[cpu], 0, memory_order_relaxed);
		atomic_store_explicit(&last_tsc[cpu], 0, memory_order_relaxed);
		atomic_store_explicit(&last_seq[cpu], 0, memory_order_relaxed);
		if (m) {
			fsb_addr[cpu] = msi_address(percpu_area[cpu].apic_id);
			ring_size++;
		}
	}
	atomic_store_explicit(&fsb_cpu, first, memory_order_relaxed);
	atomic_store_explicit(&target, first, memory_order_relaxed);
	atomic_store_explicit(&expected_tsc, rdtsc() + period_tsc, memory_order_relaxed);
	atomic_store_explicit(&handing_on, true, memory_order_relaxed);
	atomic_store_explicit(&running, true, memory_order_release);
	/*
	 * The one CPU the comparator's message can reach listens before the
	 * first expiry: the first target (rotate; each hand-off then sets the
	 * next one's bit) or the receiver (ipi; the CPUs it IPIs are rung).
	 */
	wd_nmi_listen((unsigned)first, WD_LISTEN_SOURCE, true);
	if (!hpet_timer_start_periodic_fsb((unsigned)timer, ticks, fsb_addr[first],
					   msi_data(ICR_DM_NMI, 0))) {
		atomic_store(&handing_on, false);
		atomic_store(&running, false);
		ring_quiet();
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
	/*
	 * 1. No more messages: the configuration register, outside NMI
	 * context.  No more hand-offs or IPIs either: a handler that loads
	 * handing_on after this store (it takes its NMI after the flush NMI
	 * below was sent, or is that NMI's) moves nothing, and one that loaded
	 * it before ends before its CPU takes the flush NMI.
	 */
	hpet_timer_disable((unsigned)timer);
	atomic_store_explicit(&handing_on, false, memory_order_seq_cst);
	/*
	 * 2. An NMI the comparator sent before that may still be on its way
	 * (or latched behind another NMI) on any CPU of the ring.  Send each an
	 * NMI of our own: when it has been handled, whatever was pending there
	 * before it has been delivered too (or merged into it).  Until then the
	 * handler still recognises HPET NMIs (running stays true).  The flush
	 * NMIs are rung, so they reach a CPU that does not listen.
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
	/*
	 * 3. Nothing is in flight and no hand-off runs (so none sets a listen
	 * bit after this): the ring may change, and no CPU need listen.
	 */
	atomic_store_explicit(&running, false, memory_order_release);
	ring_quiet();
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
		     "early (not ours) %llu, flush timeouts %llu, ahead of a hand-over %llu, "
		     "listen bits dropped %llu\n",
		     (unsigned long long)n_hpet_nmis, (unsigned long long)n_handoffs,
		     (unsigned long long)n_echoes, (unsigned long long)n_ipis,
		     (unsigned long long)n_strays,
		     (unsigned long long)n_early, (unsigned long long)n_flush_timeouts,
		     (unsigned long long)n_ahead, (unsigned long long)n_quiet);
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

/* --- tests (suite `watchdog`): who listens ------------------------------------ */

#define TEST_MS			1000000ull

static bool test_listens(unsigned cpu)
{
	return (wd_nmi_listening(cpu) & WD_LISTEN_SOURCE) != 0;
}

/*
 * NMIs the core counted unknown, all CPUs: strays included, which the
 * unknown chain claimed (under -icount there are none in these tests; on a
 * busy host an echo can come late).
 */
static uint64_t test_unknown_nmis(void)
{
	struct nmi_cpu_stats ns;
	uint64_t n = 0;

	for (unsigned c = 0; c < cpus_possible; c++)
		if (nmi_get_cpu_stats(c, &ns) == NMI_OK)
			n += ns.unknown;
	return n;
}

/* Hard-lockup checks of `cpu` so far (whatever NMI carried them). */
static uint64_t test_checks(unsigned cpu)
{
	struct watchdog_cpu_stats st;

	watchdog_get_stats(cpu, &st);
	return st.checks;
}

static void test_busy_ns(uint64_t ns)
{
	for (uint64_t t = tsc_ns(); tsc_ns() - t < ns;)
		cpu_relax();
}

/*
 * The ring's listen bits with no hand-off under way: `target` and fsb_cpu
 * agree and did not move while the words were read.  False if one moved.
 */
static bool test_ring_view(int *tgt, uint64_t *listening)
{
	int t = atomic_load(&target);
	uint64_t m = 0;

	if (atomic_load(&fsb_cpu) != t)
		return false;
	for (unsigned c = 0; c < cpus_possible && c < 64; c++)
		if (in_ring[c] && test_listens(c))
			m |= 1ull << c;
	if (atomic_load(&target) != t || atomic_load(&fsb_cpu) != t)
		return false;
	*tgt = t;
	*listening = m;
	return true;
}

static _Atomic uint64_t test_poke;	/* CPUs whose next NMI is the test's own */

/* NMI context, test only: claim the NMI the test sent this CPU.  One RMW. */
static int test_poke_nmi(unsigned type, struct nmi_frame *f)
{
	unsigned me = this_cpu_id();

	(void)type;
	(void)f;
	if (me >= 64 || !(atomic_fetch_and(&test_poke, ~(1ull << me)) & (1ull << me)))
		return NMI_DONE;
	return NMI_HANDLED;
}

static bool test_poked(void *arg)
{
	return !(atomic_load(&test_poke) & *(uint64_t *)arg);
}

static bool test_hpet_ready(bool rotate_only)
{
	if (watchdog_source() != &wd_source_hpet || !watchdog_running() ||
	    !atomic_load(&running))
		return false;
	if (rotate_only && mode != HPET_ROTATE)
		return false;
	return cpus_possible <= 64 && ring_size >= (mode == HPET_ROTATE ? 3u : 2u);
}

/*
 * The end of both tests: every CPU of the ring was checked since `before`
 * was taken, every unknown NMI since `strays0`/`unknown0` is a stray (a
 * stray is claimed, never "Uhhuh"), and the threshold goes back to `thresh`.
 */
static void test_expect_checked_and_explained(const uint64_t *before, uint64_t strays0,
					      uint64_t unknown0, unsigned thresh)
{
	for (unsigned c = 0; c < cpus_possible; c++)
		if (in_ring[c])
			KT_EXPECT_GT(test_checks(c), before[c]);
	uint64_t strays = atomic_load(&n_strays) - strays0;
	uint64_t unexplained = test_unknown_nmis() - unknown0 - strays;
	kt_diag("strays %llu", (unsigned long long)strays);
	KT_EXPECT_EQ(unexplained, 0u);
	if (thresh != 1)
		watchdog_set_threshold(thresh);
}

/*
 * While the rotation runs, only the CPUs the comparator can reach listen:
 * rotate - the target and at most the CPU that handed on to it (and that
 * one stops on its first NMI after the echo window); ipi - the receiver.
 * Every CPU of the ring is still checked, and no NMI goes unknown (the
 * scenario also rejects "Uhhuh").  Fails without the successor's off
 * (hand_on() step 1: CPUs that had their turn keep listening, as all of the
 * ring did before), without the lazy off (quiet_here()), and in ipi mode
 * with every CPU of the ring listening.
 */
KTEST(watchdog, hpet_only_reachable_cpus_listen)
{
	if (!test_hpet_ready(false))
		KT_SKIP("HPET source not running on a ring of 3+ CPUs (rotate) or 2+ (ipi)");
	KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "wd-test-poke", test_poke_nmi, 0), NMI_OK);
	unsigned thresh = watchdog_thresh_s();
	if (thresh != 1) {
		watchdog_set_threshold(1);
		sleep_ms(100);
	}
	uint64_t strays0 = atomic_load(&n_strays), unknown0 = test_unknown_nmis();
	uint64_t quiet0 = atomic_load(&n_quiet), checks0[64], seen_quiet = 0, ring = 0;
	unsigned samples = 0, deaf_target = 0, extra = 0, lazy = 0, lazy_bad = 0;
	uint64_t first_extra = 0;

	for (unsigned c = 0; c < cpus_possible; c++) {
		checks0[c] = test_checks(c);
		if (in_ring[c])
			ring |= 1ull << c;
	}
	for (uint64_t end = tsc_ns() + 600 * TEST_MS; tsc_ns() < end;) {
		int t, t2;
		uint64_t l, l2;

		test_busy_ns(150000);
		if (!test_ring_view(&t, &l))
			continue;
		samples++;
		seen_quiet |= ring & ~l;
		if (!(l & (1ull << t)))
			deaf_target++;
		uint64_t allowed = 1ull << t;
		int p = atomic_load(&ring_prev[t]);
		if (mode == HPET_ROTATE)
			allowed |= 1ull << p;
		if (l & ~allowed) {
			if (!extra++)
				first_extra = l;
			continue;
		}
		/* The lazy off: the CPU that handed on, past its echo window, poked. */
		if (mode != HPET_ROTATE || !(l & (1ull << p)) || p == (int)this_cpu_id())
			continue;
		while (rdtsc() - atomic_load(&last_tsc[p]) < 2 * window_tsc)
			cpu_relax();
		uint64_t bit = 1ull << p;
		atomic_fetch_or(&test_poke, bit);
		os_send_nmi((unsigned)p);
		if (!wd_wait(test_poked, &bit, 10 * TEST_MS)) {
			KT_FAIL("cpu %d did not take the test's NMI", p);
			break;
		}
		if (!test_ring_view(&t2, &l2) || t2 != t)
			continue;	/* the rotation moved on meanwhile */
		lazy++;
		if (l2 & bit)
			lazy_bad++;
	}
	nmi_unregister(NMI_LOCAL, "wd-test-poke");
	kt_diag("%u samples, ring %#llx, %u lazy offs checked, mode %s", samples,
		(unsigned long long)ring, lazy, mode == HPET_ROTATE ? "rotate" : "ipi");
	KT_EXPECT_GE(samples, 100u);
	KT_EXPECT_EQ(deaf_target, 0u);
	if (extra)
		kt_diag("first sample with a CPU listening that need not: %#llx",
			(unsigned long long)first_extra);
	KT_EXPECT_EQ(extra, 0u);
	/* Every ring CPU seen not listening (ipi: all but the receiver). */
	uint64_t need_quiet = ring;
	if (mode != HPET_ROTATE)
		need_quiet &= ~(1ull << atomic_load(&target));
	KT_EXPECT_EQ(seen_quiet, need_quiet);
	if (mode == HPET_ROTATE) {
		uint64_t quiet = atomic_load(&n_quiet);
		KT_EXPECT_GE(lazy, 3u);
		KT_EXPECT_EQ(lazy_bad, 0u);
		KT_EXPECT_GT(quiet, quiet0);
	}
	test_expect_checked_and_explained(checks0, strays0, unknown0, thresh);
}

static bool test_stall_taken(void *arg)
{
	(void)arg;
	return atomic_load(&test_stall_tsc) == 0;
}

/*
 * rotate: a hand-off stalled between its MMIO write and the store of
 * `target` (test_stall() in retarget(), standing in for a host that stopped
 * the vCPU there) for a period and a half.  The next expiry reaches the next CPU,
 * which must already listen - hand_on() sets its bit before the write - and
 * claims it as ahead of the hand-over; then the rotation goes on through
 * every CPU, and nothing is counted unknown.  Fails (an unknown NMI,
 * "Uhhuh", nothing ahead) with the bit set after retarget().
 */
KTEST(watchdog, hpet_handoff_listens_before_retarget)
{
	if (!test_hpet_ready(true))
		KT_SKIP("HPET source not rotating on a ring of 3+ CPUs");
	unsigned thresh = watchdog_thresh_s();
	if (thresh != 1) {
		watchdog_set_threshold(1);
		sleep_ms(100);
	}
	uint64_t strays0 = atomic_load(&n_strays), unknown0 = test_unknown_nmis();
	uint64_t ahead0 = atomic_load(&n_ahead), checks1[64];

	atomic_store(&test_stall_tsc, period_tsc * 3 / 2);
	if (!wd_wait(test_stall_taken, NULL, 200 * TEST_MS)) {
		atomic_store(&test_stall_tsc, 0);
		KT_FAIL("no hand-off took the stall in 200 ms");
		return;
	}
	sleep_ms(20);
	for (unsigned c = 0; c < cpus_possible; c++)
		checks1[c] = test_checks(c);
	sleep_ms(100);
	uint64_t ahead = atomic_load(&n_ahead);
	kt_diag("NMIs ahead of a hand-over: %llu", (unsigned long long)(ahead - ahead0));
	KT_EXPECT_GT(ahead, ahead0);
	/* The rotation went on: every CPU checked again after the stall. */
	test_expect_checked_and_explained(checks1, strays0, unknown0, thresh);
}
