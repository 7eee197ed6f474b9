/*
 * lostnmi_tests.c: lost external NMIs and their recovery by the probe
 * (KTAP suite lostnmi; docs/nmi-dispatch.md, "Lost-NMI recovery").
 *
 * external_event_recovered_within_one_tick / external_event_lost_without_recovery:
 *   the loss built deterministically.  CPU 0 (which owns the external
 *   reasons) is inside a local NMI handler that waits to be released; another
 *   CPU sends it a second local NMI (held in the latch), then asserts SERR in
 *   the simulated reason source and sends the NMI that goes with it - the
 *   latch is full, so that one is dropped.  The latched NMI is claimed by the
 *   local handler, the reasons are never read, and SERR stays asserted with
 *   no NMI to report it.  With the probe the SERR is serviced at the first
 *   tick after; with nmi_lost_recovery=off it is still pending 50 ticks later.
 *
 * storm_10s / storm_30s: the other CPUs send CPU 0 NMIs as fast as they can,
 *   one CPU raises SERR/IOCHK events at random moments, and the scenario adds
 *   QMP inject-nmi presses.  Every event must be serviced, none twice; CPU 0
 *   reports no more unknown NMIs than there were button presses (a CPU that
 *   only ever gets the presses counts them); probes stay at most one per tick.
 */
#include <stdatomic.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/nmi_reason.h>
#include <arch/percpu.h>
#include <kernel/ktest.h>
#include <kernel/sched.h>
#include <kernel/time.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

static uint64_t ticks_of(unsigned cpu)
{
	return cpu_data(cpu)->apic_ticks;
}

/* Wait, PAUSEing, at most `ms` milliseconds for `*v`. */
static bool wait_flag(atomic_bool *v, uint64_t ms)
{
	uint64_t end = os_timestamp_ns() + ms * 1000000ull;
	while (!atomic_load(v)) {
		if (os_timestamp_ns() > end)
			return false;
		cpu_relax();
	}
	return true;
}

static void spin_us(uint64_t us)
{
	uint64_t end = os_timestamp_ns() + us * 1000ull;
	while (os_timestamp_ns() < end)
		cpu_relax();
}

/* === the deterministic loss ============================================== */

static unsigned loss_target;
static atomic_ulong loss_local_pending;	/* local events sent, not yet claimed */
static atomic_ulong loss_local_claimed;
static atomic_ulong loss_local_claims;	/* handler calls that claimed */
static atomic_bool loss_spin_next;	/* the next claiming call waits for release */
static atomic_bool loss_spinning, loss_release;
static atomic_ulong loss_serr_calls;
static volatile uint64_t loss_serviced_ns, loss_serviced_ticks;
static volatile uint64_t loss_entries_at_service;
static volatile uint64_t loss_assert_ns, loss_release_ticks, loss_release_ns;
static atomic_bool loss_orchestrated;
static struct nmi_cpu_stats loss_stats_after;	/* the target's, just after the loss */
static volatile uint64_t loss_entries_at_claim[2];	/* its dispatch count at each local claim */

/*
 * LOCAL handler on the target.  NMI context.  The wait is the point of the
 * test (a handler busy while more NMIs come in); it is bounded (1 s).
 */
static int loss_local(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	if (os_cpu_id() != loss_target)
		return NMI_DONE;
	unsigned long n = atomic_exchange(&loss_local_pending, 0);
	if (!n)
		return NMI_DONE;
	atomic_fetch_add(&loss_local_claimed, n);
	unsigned long call = atomic_fetch_add(&loss_local_claims, 1);
	if (call < 2) {
		struct nmi_cpu_stats s;
		nmi_get_cpu_stats(os_cpu_id(), &s);
		loss_entries_at_claim[call] = s.entries;
	}
	if (atomic_exchange(&loss_spin_next, false)) {
		atomic_store(&loss_spinning, true);
		uint64_t end = os_timestamp_ns() + 1000000000ull;
		while (!atomic_load(&loss_release) && os_timestamp_ns() < end)
			cpu_relax();
	}
	return (int)n;
}

/*
 * SERR handler: NMI context on the owner CPU; records when it ran (the
 * statistics copy is plain loads of this CPU's counters).
 */
static int loss_serr(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	struct nmi_cpu_stats s;
	if (atomic_fetch_add(&loss_serr_calls, 1) == 0) {
		loss_serviced_ns = os_timestamp_ns();
		loss_serviced_ticks = ticks_of(os_cpu_id());
		nmi_get_cpu_stats(os_cpu_id(), &s);
		loss_entries_at_service = s.entries;
	}
	return NMI_HANDLED;
}

/* The other CPU: the three NMIs, in order. */
static void loss_orchestrate(void *arg)
{
	(void)arg;
	unsigned t = loss_target;
	/* 1: a local NMI whose handler will wait. */
	atomic_store(&loss_spin_next, true);
	atomic_fetch_add(&loss_local_pending, 1);
	os_send_nmi(t);
	if (!wait_flag(&loss_spinning, 500)) {
		atomic_store(&loss_release, true);
		return;
	}
	/* 2: another local event and its NMI, held in the latch. */
	atomic_fetch_add(&loss_local_pending, 1);
	os_send_nmi(t);
	spin_us(200);
	/* 3: SERR, and its NMI: the latch is full, the NMI is lost. */
	loss_assert_ns = os_timestamp_ns();
	nmi_reason_sim_assert(OS_NMI_REASON_SERR);
	os_send_nmi(t);
	spin_us(200);
	loss_release_ticks = ticks_of(t);
	loss_release_ns = os_timestamp_ns();
	atomic_store(&loss_orchestrated, true);
	atomic_store(&loss_release, true);
	/* The target finishes NMI 1 and takes the latched one: then count its NMIs. */
	uint64_t end = os_timestamp_ns() + 100000000ull;
	while (atomic_load(&loss_local_claims) < 2 && os_timestamp_ns() < end)
		cpu_relax();
	spin_us(50);
	nmi_get_cpu_stats(t, &loss_stats_after);
}

struct loss_result {
	bool ok;			/* the construction went as planned */
	struct nmi_cpu_stats before, after_loss;
};

static int other_online_cpu(void)
{
	unsigned me = this_cpu_id();
	for (unsigned i = 1; i < cpus_possible; i++) {
		unsigned c = (me + i) % cpus_possible;
		if (cpu_data(c)->online)
			return (int)c;
	}
	return -1;
}

/* Build the loss on this CPU.  Returns with SERR serviced or still pending. */
static void loss_build(struct loss_result *res, int x)
{
	loss_target = this_cpu_id();
	atomic_store(&loss_local_pending, 0);
	atomic_store(&loss_local_claimed, 0);
	atomic_store(&loss_local_claims, 0);
	atomic_store(&loss_spin_next, false);
	atomic_store(&loss_spinning, false);
	atomic_store(&loss_release, false);
	atomic_store(&loss_serr_calls, 0);
	atomic_store(&loss_orchestrated, false);
	loss_serviced_ns = loss_serviced_ticks = loss_entries_at_service = 0;
	loss_stats_after = (struct nmi_cpu_stats){ 0 };
	loss_entries_at_claim[0] = loss_entries_at_claim[1] = 0;
	res->ok = false;

	sleep_ms(50);		/* earlier NMIs' probes have finished */
	nmi_get_cpu_stats(loss_target, &res->before);
	struct task *t = task_create_kernel("lostnmi-orch", loss_orchestrate, NULL, x);
	if (!t)
		return;
	task_wait(t, NULL);
	/*
	 * Taken by the other CPU right after the latched NMI was claimed; with
	 * recovery the probe may have serviced the SERR since (at a tick).
	 */
	res->after_loss = loss_stats_after;
	res->ok = atomic_load(&loss_orchestrated) && atomic_load(&loss_local_claimed) == 2;
}

KTEST(lostnmi, external_event_recovered_within_one_tick)
{
	int x = other_online_cpu();
	if (x < 0)
		KT_SKIP("needs a second CPU");
	if (!nmi_lost_recovery)
		KT_SKIP("nmi_lost_recovery=off: see external_event_lost_without_recovery");
	KT_ASSERT_EQ(nmi_external_owner(), this_cpu_id());
	KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "lostnmi-local", loss_local, 0), NMI_OK);
	KT_ASSERT_EQ(nmi_register(NMI_SERR, "lostnmi-serr", loss_serr, 0), NMI_OK);
	nmi_reason_sim_enable(true);
	struct loss_result r;
	loss_build(&r, x);
	/* At most two ticks of waiting: the probe runs at the first. */
	uint64_t end = os_timestamp_ns() + 3000000000ull;
	while (atomic_load(&loss_serr_calls) == 0 && os_timestamp_ns() < end)
		sleep_ms(1);
	sleep_ms(50);		/* let the probing that follows finish */
	struct nmi_cpu_stats after;
	nmi_get_cpu_stats(this_cpu_id(), &after);
	unsigned pending = nmi_reason_sim_pending();
	nmi_reason_sim_enable(false);
	nmi_unregister(NMI_SERR, "lostnmi-serr");
	nmi_unregister(NMI_LOCAL, "lostnmi-local");

	uint64_t lat_us = loss_serviced_ns > loss_assert_ns ? (loss_serviced_ns - loss_assert_ns) / 1000 : 0;
	kt_diag("loss built: %s; 2 local events claimed in %lu handler calls, by dispatches %llu and %llu "
		"(NMI 1 and the latched one; the third NMI was dropped)",
		r.ok ? "yes" : "NO", atomic_load(&loss_local_claims),
		(unsigned long long)(loss_entries_at_claim[0] - r.before.entries),
		(unsigned long long)(loss_entries_at_claim[1] - r.before.entries));
	if (atomic_load(&loss_serr_calls))
		kt_diag("SERR serviced %llu us after it was raised, at tick %llu of CPU %u (released at tick %llu): "
			"%llu tick(s) later, by the probe's NMI (entry %llu since the start)",
			(unsigned long long)lat_us, (unsigned long long)loss_serviced_ticks, this_cpu_id(),
			(unsigned long long)loss_release_ticks,
			(unsigned long long)(loss_serviced_ticks - loss_release_ticks),
			(unsigned long long)(loss_entries_at_service - r.before.entries));
	else
		kt_diag("SERR never serviced (released at tick %llu, now %llu)",
			(unsigned long long)loss_release_ticks, (unsigned long long)ticks_of(this_cpu_id()));
	kt_diag("probes sent %llu, found %llu, absorbed %llu, collapsed %llu; unknown +%llu",
		(unsigned long long)(after.probe_sent - r.before.probe_sent),
		(unsigned long long)(after.probe_found - r.before.probe_found),
		(unsigned long long)(after.probe_absorbed - r.before.probe_absorbed),
		(unsigned long long)(after.probe_collapsed - r.before.probe_collapsed),
		(unsigned long long)(after.unknown - r.before.unknown));
	KT_ASSERT_TRUE(r.ok);
	KT_EXPECT_EQ(loss_local_claims, 2ul);	/* NMI 1, then the latched one */
	KT_EXPECT_EQ(loss_entries_at_claim[1] - r.before.entries, 2ull);
	KT_EXPECT_EQ(loss_serr_calls, 1ul);
	KT_ASSERT_EQ(pending, 0u);
	KT_EXPECT_LE(loss_serviced_ticks - loss_release_ticks, 1ull);	/* within one tick */
	/* The SERR was found by a probe: the third dispatch, not the lost NMI's own. */
	KT_EXPECT_EQ(loss_entries_at_service - r.before.entries, 3ull);
	KT_EXPECT_GE(after.probe_found - r.before.probe_found, 1ull);
	KT_EXPECT_EQ(after.unknown, r.before.unknown);
}

#define LOSS_WATCH_TICKS	50

KTEST(lostnmi, external_event_lost_without_recovery)
{
	int x = other_online_cpu();
	if (x < 0)
		KT_SKIP("needs a second CPU");
	if (nmi_lost_recovery)
		KT_SKIP("needs nmi_lost_recovery=off (scenario lostnmi.lost_without_recovery)");
	unsigned me = this_cpu_id();
	KT_ASSERT_EQ(nmi_external_owner(), me);
	KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "lostnmi-local", loss_local, 0), NMI_OK);
	KT_ASSERT_EQ(nmi_register(NMI_SERR, "lostnmi-serr", loss_serr, 0), NMI_OK);
	nmi_reason_sim_enable(true);
	struct loss_result r;
	loss_build(&r, x);
	/* Watch 50 ticks: nothing looks at the reasons again. */
	uint64_t end = os_timestamp_ns() + 5000000000ull;
	while (ticks_of(me) < loss_release_ticks + LOSS_WATCH_TICKS && os_timestamp_ns() < end)
		sleep_ms(10);
	uint64_t watched = ticks_of(me) - loss_release_ticks;
	struct nmi_cpu_stats after;
	nmi_get_cpu_stats(me, &after);
	unsigned long serr_calls = atomic_load(&loss_serr_calls);
	unsigned pending = nmi_reason_sim_pending();
	/* Clean up: an NMI that nobody claims makes the core read and service it. */
	lapic_send_nmi(this_cpu()->apic_id);
	end = os_timestamp_ns() + 100000000ull;
	while (nmi_reason_sim_pending() && os_timestamp_ns() < end)
		cpu_relax();
	unsigned pending_after_cleanup = nmi_reason_sim_pending();
	nmi_reason_sim_enable(false);
	nmi_unregister(NMI_SERR, "lostnmi-serr");
	nmi_unregister(NMI_LOCAL, "lostnmi-local");

	kt_diag("loss built: %s; NMIs dispatched at the loss %llu; probes sent %llu",
		r.ok ? "yes" : "NO", (unsigned long long)(r.after_loss.entries - r.before.entries),
		(unsigned long long)(after.probe_sent - r.before.probe_sent));
	if (serr_calls == 0 && (pending & OS_NMI_REASON_SERR))
		kt_diag("lostnmi: SERR left unserviced for %llu ticks with nmi_lost_recovery=off",
			(unsigned long long)watched);
	KT_ASSERT_TRUE(r.ok);
	KT_EXPECT_GE(watched, (uint64_t)LOSS_WATCH_TICKS);
	/* The failure the probe exists to prevent: */
	KT_EXPECT_EQ(serr_calls, 0ul);
	KT_EXPECT_EQ(pending & OS_NMI_REASON_SERR, OS_NMI_REASON_SERR);
	KT_EXPECT_EQ(after.entries - r.before.entries, 2ull);	/* no NMI came for it */
	KT_EXPECT_EQ(after.probe_sent, r.before.probe_sent);
	KT_EXPECT_EQ(pending_after_cleanup, 0u);
}

/* === the storm =========================================================== */

#define STORM_MAX_SENDERS	16

static unsigned storm_target;
static atomic_bool storm_on;
static atomic_ulong storm_pending[STORM_MAX_SENDERS];
static atomic_ulong storm_sent[STORM_MAX_SENDERS];
static atomic_ulong storm_claimed;
static atomic_ulong storm_empty;	/* storm-handler calls that found nothing */

/* External events: one outstanding per reason at a time, numbered. */
static volatile uint64_t ev_id[2];		/* [0] SERR, [1] IOCHK: the one raised */
static volatile uint64_t ev_done_id[2];		/* the last one serviced */
static atomic_ulong ev_raised[2], ev_serviced[2], ev_twice[2], ev_unraised[2];
static volatile uint64_t ev_raise_ns[2];
static volatile uint64_t ev_raise_ticks[2];
static volatile uint64_t ev_service_ns[2], ev_service_ticks[2];	/* set by the handler */
static uint64_t ev_lat_max_ns, ev_lat_sum_ns, ev_lat_max_ticks;
static atomic_ulong ev_unserviced;

/* LOCAL handler on the target: claims what the senders sent.  NMI context. */
static int storm_local(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	if (!atomic_load(&storm_on) || os_cpu_id() != storm_target)
		return NMI_DONE;
	unsigned long got = 0;
	for (unsigned s = 0; s < STORM_MAX_SENDERS; s++)
		got += atomic_exchange(&storm_pending[s], 0);
	if (!got) {
		atomic_fetch_add(&storm_empty, 1);
		return NMI_DONE;
	}
	atomic_fetch_add(&storm_claimed, got);
	return (int)got;
}

/* The SERR / IOCHK handlers: service event ev_id[i], once.  NMI context. */
static int storm_ext(int i)
{
	uint64_t id = ev_id[i];
	if (id == 0 || id == ev_done_id[i]) {
		atomic_fetch_add(id == 0 ? &ev_unraised[i] : &ev_twice[i], 1);
		return NMI_HANDLED;
	}
	ev_service_ns[i] = os_timestamp_ns();
	ev_service_ticks[i] = ticks_of(os_cpu_id());
	ev_done_id[i] = id;
	atomic_fetch_add(&ev_serviced[i], 1);
	return NMI_HANDLED;
}

static int storm_serr(unsigned type, struct nmi_frame *f) { (void)type; (void)f; return storm_ext(0); }
static int storm_iochk(unsigned type, struct nmi_frame *f) { (void)type; (void)f; return storm_ext(1); }

/*
 * A sender thread: NMIs to CPU 0 back to back, one PAUSE each, until the
 * storm ends.  The event is counted before its NMI is sent, so the target may
 * claim it early, with an NMI already there; the event's own NMI then comes
 * later, finds nothing, and interrupts a different IP than the claiming one,
 * where the back-to-back rule cannot explain it: an unknown NMI that is the
 * test's doing.  Interrupts are off from the count to the send so that this
 * CPU's tick cannot hold the two apart; only the host descheduling this vCPU
 * in those few instructions still can (see the bound in storm_run()).
 */
static void storm_sender(void *arg)
{
	unsigned s = (unsigned)(uintptr_t)arg;
	while (atomic_load(&storm_on)) {
		uint64_t flags = irq_save();
		atomic_fetch_add(&storm_pending[s], 1);
		atomic_fetch_add(&storm_sent[s], 1);
		os_send_nmi(storm_target);
		irq_restore(flags);
		cpu_relax();
	}
}

static uint64_t storm_rand(uint64_t *state)
{
	*state = *state * 6364136223846793005ull + 1442695040888963407ull;
	return *state >> 33;
}

/*
 * Raises SERR or IOCHK at random moments (0-40 ms apart) with the NMI that
 * goes with it, and waits for each to be serviced before the next (a reason
 * still asserted cannot signal a second event).  The latency is taken from
 * the handler's own timestamp and CPU 0's tick count at that moment.  An
 * event not serviced within 5 s stops the raising; it must still be serviced
 * once the storm is over (checked at the end).
 */
static void storm_raiser(void *arg)
{
	(void)arg;
	uint64_t rnd = rdtsc() | 1;
	while (atomic_load(&storm_on)) {
		sleep_ms(storm_rand(&rnd) % 30);
		spin_us(storm_rand(&rnd) % 10000);	/* off the tick grid */
		if (!atomic_load(&storm_on))
			break;
		int i = (int)(storm_rand(&rnd) & 1);
		unsigned bit = i ? OS_NMI_REASON_IOCHK : OS_NMI_REASON_SERR;
		ev_id[i]++;
		ev_raise_ns[i] = os_timestamp_ns();
		ev_raise_ticks[i] = ticks_of(storm_target);
		atomic_fetch_add(&ev_raised[i], 1);
		nmi_reason_sim_assert(bit);
		os_send_nmi(storm_target);
		uint64_t end = os_timestamp_ns() + 5000000000ull;
		while (ev_done_id[i] != ev_id[i] && os_timestamp_ns() < end)
			sleep_ms(1);
		if (ev_done_id[i] != ev_id[i]) {
			/* Still asserted: raising more would merge with it.  Stop. */
			atomic_fetch_add(&ev_unserviced, 1);
			break;
		}
		uint64_t ns = ev_service_ns[i] - ev_raise_ns[i];
		uint64_t ticks = ev_service_ticks[i] - ev_raise_ticks[i];
		ev_lat_sum_ns += ns;
		if (ns > ev_lat_max_ns)
			ev_lat_max_ns = ns;
		if (ticks > ev_lat_max_ticks)
			ev_lat_max_ticks = ticks;
	}
}

static void storm_run(unsigned seconds)
{
	unsigned me = this_cpu_id();
	unsigned cpus[STORM_MAX_SENDERS + 1], n = 0;

	for (unsigned c = 0; c < cpus_possible && n < STORM_MAX_SENDERS + 1; c++)
		if (c != me && cpu_data(c)->online)
			cpus[n++] = c;
	if (n < 2)
		KT_SKIP("needs three CPUs: a receiver, a sender, an event raiser");
	KT_ASSERT_EQ(nmi_external_owner(), me);
	unsigned senders = n - 1, raiser_cpu = cpus[n - 1];
	storm_target = me;
	for (unsigned s = 0; s < STORM_MAX_SENDERS; s++) {
		atomic_store(&storm_pending[s], 0);
		atomic_store(&storm_sent[s], 0);
	}
	atomic_store(&storm_claimed, 0);
	atomic_store(&storm_empty, 0);
	for (int i = 0; i < 2; i++) {
		ev_id[i] = ev_done_id[i] = 0;
		atomic_store(&ev_raised[i], 0);
		atomic_store(&ev_serviced[i], 0);
		atomic_store(&ev_twice[i], 0);
		atomic_store(&ev_unraised[i], 0);
	}
	ev_lat_max_ns = ev_lat_sum_ns = ev_lat_max_ticks = 0;
	atomic_store(&ev_unserviced, 0);
	KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "storm-local", storm_local, 0), NMI_OK);
	KT_ASSERT_EQ(nmi_register(NMI_SERR, "storm-serr", storm_serr, 0), NMI_OK);
	KT_ASSERT_EQ(nmi_register(NMI_IO_CHECK, "storm-iochk", storm_iochk, 0), NMI_OK);
	nmi_reason_sim_enable(true);

	struct nmi_cpu_stats before[STORM_MAX_SENDERS + 2], after[STORM_MAX_SENDERS + 2];
	nmi_get_cpu_stats(me, &before[0]);
	for (unsigned i = 0; i < n; i++)
		nmi_get_cpu_stats(cpus[i], &before[i + 1]);
	atomic_store(&storm_on, true);
	struct task *t[STORM_MAX_SENDERS + 1];
	for (unsigned s = 0; s < senders; s++)
		t[s] = task_create_kernel("storm-send", storm_sender, (void *)(uintptr_t)s, (int)cpus[s]);
	t[senders] = task_create_kernel("storm-raise", storm_raiser, NULL, (int)raiser_cpu);
	kt_diag("lostnmi: storm start: %u sender(s) -> CPU %u for %u s, events raised from CPU %u",
		senders, me, seconds, raiser_cpu);
	uint64_t t0 = os_timestamp_ns(), tick0 = ticks_of(me);
	sleep_ms(seconds * 1000ull);
	atomic_store(&storm_on, false);
	uint64_t dur_ns = os_timestamp_ns() - t0, dur_ticks = ticks_of(me) - tick0;
	for (unsigned s = 0; s <= senders; s++)
		if (t[s])
			task_wait(t[s], NULL);
	kt_diag("lostnmi: storm end");
	/* Events raised just before the end are serviced by the next probes. */
	sleep_ms(100);
	nmi_get_cpu_stats(me, &after[0]);
	for (unsigned i = 0; i < n; i++)
		nmi_get_cpu_stats(cpus[i], &after[i + 1]);
	unsigned pending = nmi_reason_sim_pending();
	nmi_reason_sim_enable(false);
	nmi_unregister(NMI_IO_CHECK, "storm-iochk");
	nmi_unregister(NMI_SERR, "storm-serr");
	nmi_unregister(NMI_LOCAL, "storm-local");

	unsigned long sent = 0;
	for (unsigned s = 0; s < senders; s++)
		sent += atomic_load(&storm_sent[s]);
	/* Button presses: what a CPU that receives nothing else counts as unknown. */
	uint64_t presses = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t u = after[i + 1].unknown - before[i + 1].unknown;
		if (u > presses)
			presses = u;
	}
	struct nmi_cpu_stats *a = &after[0], *b = &before[0];
	uint64_t probes = a->probe_sent - b->probe_sent;
	unsigned long raised = atomic_load(&ev_raised[0]) + atomic_load(&ev_raised[1]);
	unsigned long serviced = atomic_load(&ev_serviced[0]) + atomic_load(&ev_serviced[1]);
	unsigned long twice = atomic_load(&ev_twice[0]) + atomic_load(&ev_twice[1]);
	unsigned long unraised = atomic_load(&ev_unraised[0]) + atomic_load(&ev_unraised[1]);
	uint64_t ms = dur_ns / 1000000;

	kt_diag("%llu ms, %llu ticks: %lu NMIs sent to CPU %u, %llu dispatched there (%llu normal, "
		"%lu found nothing local), %lu events claimed",
		(unsigned long long)ms, (unsigned long long)dur_ticks, sent, me,
		(unsigned long long)(a->entries - b->entries), (unsigned long long)(a->normal - b->normal),
		atomic_load(&storm_empty), atomic_load(&storm_claimed));
	kt_diag("external events: %lu raised (SERR %lu, IOCHK %lu), %lu serviced, %lu twice, "
		"%lu unserviced after 5 s; latency mean %llu us, max %llu us, max %llu ticks",
		raised, atomic_load(&ev_raised[0]), atomic_load(&ev_raised[1]), serviced, twice,
		atomic_load(&ev_unserviced), (unsigned long long)(serviced ? ev_lat_sum_ns / serviced / 1000 : 0),
		(unsigned long long)(ev_lat_max_ns / 1000), (unsigned long long)ev_lat_max_ticks);
	kt_diag("probes on CPU %u: %llu sent (%llu/s, tick %u Hz), found %llu, absorbed %llu, collapsed %llu",
		me, (unsigned long long)probes, (unsigned long long)(ms ? probes * 1000 / ms : 0),
		timer_hz(), (unsigned long long)(a->probe_found - b->probe_found),
		(unsigned long long)(a->probe_absorbed - b->probe_absorbed),
		(unsigned long long)(a->probe_collapsed - b->probe_collapsed));
	kt_diag("unknown NMIs: CPU %u +%llu, button presses seen by the quiet CPUs %llu; "
		"swallowed +%llu, reason_busy +%llu, external +%llu",
		me, (unsigned long long)(a->unknown - b->unknown), (unsigned long long)presses,
		(unsigned long long)(a->swallowed - b->swallowed),
		(unsigned long long)(a->reason_busy - b->reason_busy),
		(unsigned long long)(a->external - b->external));
	KT_EXPECT_GT(sent, 0ul);
	KT_EXPECT_GT(raised, 0ul);
	KT_EXPECT_EQ(serviced, raised);			/* every event serviced ... */
	KT_EXPECT_EQ(twice, 0ul);			/* ... none twice */
	KT_EXPECT_EQ(unraised, 0ul);
	KT_EXPECT_EQ(pending, 0u);
	/*
	 * None for a probe.  CPU 0 sees each button press, unless it merged
	 * with a storm NMI; and a sender descheduled by the host between its
	 * count and its send makes an unknown of its own (see storm_sender()).
	 * The slack, a twentieth of the probes, is far below what probes that
	 * the core failed to absorb would add: one unknown each.
	 */
	KT_EXPECT_LE(a->unknown - b->unknown, presses + probes / 20);
	KT_EXPECT_LE(probes, dur_ticks + 2);		/* at most one per tick */
}

KTEST(lostnmi, storm_10s)
{
	storm_run(10);
}

KTEST(lostnmi, storm_30s)
{
	storm_run(30);
}
