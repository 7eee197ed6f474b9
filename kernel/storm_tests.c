/*
 * storm_tests.c: a tagged NMI storm and the KTAP suite "storm".
 *
 * The storm: one sender thread per sending CPU sends NMI IPIs to every
 * target CPU as fast as it can.  Before each send it bumps
 * pending[target][sender]; the storm's NMI handler on the target takes every
 * counter with one exchange.  So every send is claimed exactly once, whether
 * its NMI arrived, merged with another in the one-deep latch, or came after
 * an earlier NMI had already taken its event; and at the end
 * claimed[target][sender] must equal sent[sender][target] exactly.
 *
 * The handler also keeps the books on NMIs that find nothing pending.  A
 * storm NMI finds nothing only when an earlier call took its event along with
 * its own; the lost-NMI probe's self NMIs (core/nmi_probe.c) may come in
 * empty too.  The handler gives credit for those, capped at what the machine
 * can still have on the way (storm_handler), and lets go (NMI_DONE) of an
 * empty NMI that the credit does not cover: the core then reports it
 * unknown.  Without NMIs from outside (QMP inject-nmi) the kernel must report
 * none, so a handler that ran twice for one NMI, or an NMI the kernel made
 * up, shows as an unknown NMI.
 *
 * storm.all_to_all runs it on every online CPU for storm_seconds while a
 * kernel thread registers and unregisters NMI handlers without pause, and
 * checks conservation, liveness (every CPU keeps handling NMIs), that no
 * handler runs after nmi_unregister() returned, stack canaries, and that
 * nothing was logged at warning level or worse.
 *
 * Two things may run beside it.  storm_mce=1: the scenario injects machine
 * checks (QEMU's HMP mce) into storm CPUs, so #MCs land in NMI handlers and
 * in the NMI entry; every one must be recovered (none fatal), and their
 * "mce: [Hardware Error]" records are the only errors allowed.  The kernel
 * paces them: QEMU resets the guest when it injects into a CPU whose
 * MCG_STATUS.MCIP is still set, and a vCPU that the host leaves off its
 * core may not even have started the previous #MC when a clock-driven
 * injection comes.  So a pacer thread on each CPU prints "storm: mce ready
 * on CPU N" once at the start and again only after its CPU's previous #MC
 * has returned (the thread runs on that CPU, so it cannot run while the
 * handler does), and the scenario injects on that line (qmp='on:...').
 * storm_watchdog=1: the HPET NMI watchdog runs (nmi_watchdog=1
 * watchdog_source=hpet): it must really be that source, its NMI must have
 * reached every storm CPU (the rotation), and it must report no lockup.  Its
 * NMIs find no storm event pending, so each may show as one "let go" storm
 * NMI or one use of credit; "let go" is then bounded by the watchdog NMIs
 * that CPU took, instead of being zero.
 */
#include <stdatomic.h>
#include <arch/cpu.h>
#include <arch/gdt.h>
#include <arch/percpu.h>
#include <kernel/hostile.h>
#include <kernel/ktest.h>
#include <arch/mce.h>
#include <kernel/sched.h>
#include <kernel/watchdog.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

/* --- the engine ----------------------------------------------------------- */

/* Written only by the target CPU's storm handler (dispatch never nests on a CPU). */
struct storm_target {
	uint64_t claimed[STORM_MAX_CPUS];	/* per sender */
	uint64_t events;	/* sum of claimed[] */
	uint64_t calls;		/* calls that claimed: with events, or on credit */
	uint64_t late;		/* ... on credit */
	uint64_t foreign;	/* calls let go */
	uint64_t max_batch;
	uint64_t probe_base;	/* probes this CPU had sent when the storm began */
	uint64_t probes_seen;	/* ... when the handler last looked */
	int64_t credit;		/* NMIs that may still arrive with nothing pending */
	int64_t max_credit;	/* how many can, at most (see storm_handler) */
} NK_CACHE_ALIGNED;

static struct {
	struct storm_config cfg;
	atomic_bool active;	/* the handler counts */
	atomic_bool running;	/* the senders send */
	unsigned ncpus;
	uint64_t deadline_ns;
	struct task *thread[STORM_MAX_CPUS];
} storm;

static _Atomic uint64_t storm_pending[STORM_MAX_CPUS][STORM_MAX_CPUS];	/* [target][sender] */
static _Atomic uint64_t storm_sent[STORM_MAX_CPUS][STORM_MAX_CPUS];	/* [sender][target] */
static struct storm_target storm_tgt[STORM_MAX_CPUS];
static _Atomic uint64_t storm_sender_rounds[STORM_MAX_CPUS];

/* Lost-NMI probes `cpu` has sent.  NMI-safe: nmi_probe_get_stats() only loads counters. */
static uint64_t probes_sent(unsigned cpu)
{
	struct nmi_probe_stats ps;
	nmi_probe_get_stats(cpu, &ps);
	return ps.sent;
}

/* NMI context, the target's own storm_target only. */
static void add_credit(struct storm_target *t, int64_t n)
{
	t->credit += n;
	if (t->credit > t->max_credit)
		t->credit = t->max_credit;
}

/*
 * NMI context, on every CPU for every NMI while registered.  Safe: it touches
 * this CPU's storm_target (the dispatch never nests on one CPU), exchanges
 * on this CPU's pending row, and loads counters; no lock, no wait, bounded
 * by STORM_MAX_CPUS.
 *
 * The credit: a call that claims n events was brought by one NMI, so up to
 * n - 1 NMIs whose events it took may still arrive and find nothing.  Not
 * all of them will: most merged in the latch and never come.  How many can
 * still come is bounded by the machine: the one NMI the latch holds, one per
 * sender that has counted an event and not yet written its ICR, and the
 * lost-NMI probe's one self NMI (at most one in flight per CPU).  So the
 * credit is capped there, and an NMI that finds nothing pending and no
 * credit left is let go: the kernel delivered or dispatched an NMI that
 * nobody sent.
 */
static int storm_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	unsigned me = os_cpu_id();
	if (me >= storm.ncpus || !atomic_load(&storm.active))
		return NMI_DONE;
	struct storm_target *t = &storm_tgt[me];
	uint64_t probes = probes_sent(me);
	add_credit(t, (int64_t)(probes - t->probes_seen));
	t->probes_seen = probes;
	uint64_t n = 0;
	for (unsigned s = 0; s < storm.ncpus; s++) {
		if (!atomic_load_explicit(&storm_pending[me][s], memory_order_relaxed))
			continue;
		uint64_t k = atomic_exchange(&storm_pending[me][s], 0);
		t->claimed[s] += k;
		n += k;
	}
	if (n) {
		t->events += n;
		t->calls++;
		if (n > t->max_batch)
			t->max_batch = n;
		add_credit(t, (int64_t)n - 1);
		return n > 1000000 ? 1000000 : (int)n;
	}
	if (t->credit > 0) {
		t->credit--;
		t->calls++;
		t->late++;
		return NMI_HANDLED;
	}
	t->foreign++;
	return NMI_DONE;
}

/*
 * NMI-safe: two atomic increments and an ICR write (lapic_send_nmi saves and
 * restores ICR-high around its own use).  The pending count goes up first:
 * the NMI may arrive before this function returns.
 */
void storm_send(unsigned target)
{
	unsigned me = os_cpu_id();
	if (target >= storm.ncpus || me >= storm.ncpus)
		return;
	atomic_fetch_add(&storm_pending[target][me], 1);
	atomic_fetch_add_explicit(&storm_sent[me][target], 1, memory_order_relaxed);
	if (target == me)
		os_send_nmi_self();
	else
		os_send_nmi(target);
}

static bool in_mask(uint64_t mask, unsigned cpu)
{
	return cpu < 64 && (mask & (1ull << cpu));
}

/*
 * A sender: round robin over the targets until told to stop or its deadline
 * passes.  PAUSE every 16 rounds: under -icount a vCPU gives up its turn only
 * at PAUSE or HLT, and the CPUs it sends to must get to run.
 */
static void storm_sender(void *arg)
{
	(void)arg;
	unsigned me = this_cpu_id();
	uint64_t next[STORM_MAX_CPUS] = { 0 };
	uint64_t rounds = 0, now = os_timestamp_ns();

	while (atomic_load(&storm.running) && now < storm.deadline_ns) {
		for (unsigned t = 0; t < storm.ncpus; t++) {
			if (t == me || !in_mask(storm.cfg.targets, t) || !os_cpu_online(t))
				continue;
			if (storm.cfg.max_in_flight && atomic_load(&storm_pending[t][me]) >= storm.cfg.max_in_flight)
				continue;
			if (storm.cfg.gap_ns && now < next[t])
				continue;
			storm_send(t);
			next[t] = now + storm.cfg.gap_ns;
		}
		atomic_store_explicit(&storm_sender_rounds[me], ++rounds, memory_order_relaxed);
		if ((rounds & 15) == 0)
			cpu_relax();
		now = os_timestamp_ns();
	}
}

uint64_t storm_unclaimed(void)
{
	uint64_t n = 0;
	for (unsigned t = 0; t < STORM_MAX_CPUS; t++)
		for (unsigned s = 0; s < STORM_MAX_CPUS; s++)
			n += atomic_load(&storm_pending[t][s]);
	return n;
}

uint64_t storm_sent_total(void)
{
	uint64_t n = 0;
	for (unsigned s = 0; s < STORM_MAX_CPUS; s++)
		for (unsigned t = 0; t < STORM_MAX_CPUS; t++)
			n += atomic_load(&storm_sent[s][t]);
	return n;
}

/* Wait (sleeping a tick at a time, at most `ms`) until no probe NMI is outstanding. */
static void wait_probes_quiet(uint64_t ms)
{
	uint64_t end = os_timestamp_ns() + ms * 1000000ull;
	for (;;) {
		bool busy = false;
		for (unsigned c = 0; c < storm.ncpus; c++)
			busy |= os_cpu_online(c) && nmi_probe_pending(c);
		if (!busy || os_timestamp_ns() > end)
			return;
		sleep_ms(10);
	}
}

int storm_start(const struct storm_config *c)
{
	if (atomic_load(&storm.active) || atomic_load(&storm.running))
		return -1;
	storm.cfg = *c;
	storm.ncpus = os_cpu_count() < STORM_MAX_CPUS ? os_cpu_count() : STORM_MAX_CPUS;
	for (unsigned t = 0; t < STORM_MAX_CPUS; t++) {
		storm_tgt[t] = (struct storm_target){ 0 };
		atomic_store(&storm_sender_rounds[t], 0);
		storm.thread[t] = NULL;
		for (unsigned s = 0; s < STORM_MAX_CPUS; s++) {
			atomic_store(&storm_pending[t][s], 0);
			atomic_store(&storm_sent[t][s], 0);
		}
	}
	if (nmi_register(NMI_LOCAL, "storm", storm_handler, 0) != NMI_OK)
		return -1;
	/*
	 * A probe still in flight from before would arrive uncounted; let the
	 * probes of earlier NMIs finish first (they stop after one tick).
	 */
	wait_probes_quiet(200);
	unsigned nsenders = 0;
	for (unsigned s = 0; s < storm.ncpus; s++)
		nsenders += in_mask(c->senders, s) && os_cpu_online(s);
	for (unsigned t = 0; t < storm.ncpus; t++) {
		storm_tgt[t].probe_base = storm_tgt[t].probes_seen = probes_sent(t);
		/* The latch, the probe, and every sender but the target itself. */
		storm_tgt[t].max_credit = 2 + nsenders - (in_mask(c->senders, t) ? 1 : 0);
	}
	atomic_store(&storm.active, true);

	uint64_t secs = c->seconds ? c->seconds : 60;
	storm.deadline_ns = os_timestamp_ns() + secs * 1000000000ull;
	atomic_store(&storm.running, true);
	for (unsigned s = 0; s < storm.ncpus; s++) {
		if (!in_mask(c->senders, s) || !os_cpu_online(s))
			continue;
		storm.thread[s] = task_create_kernel("storm-send", storm_sender, NULL, (int)s);
		if (!storm.thread[s]) {
			storm_stop();
			return -1;
		}
	}
	return 0;
}

void storm_stop(void)
{
	atomic_store(&storm.running, false);
	for (unsigned s = 0; s < STORM_MAX_CPUS; s++) {
		if (storm.thread[s])
			task_wait(storm.thread[s], NULL);
		storm.thread[s] = NULL;
	}
	/*
	 * Every pending event is followed by its NMI, or merged into one that
	 * is still to be delivered, so the counters drain by themselves.
	 */
	uint64_t end = os_timestamp_ns() + 2000000000ull;
	while (storm_unclaimed() && os_timestamp_ns() < end)
		sleep_ms(1);
	/* NMIs whose events were taken early may still be on their way. */
	sleep_ms(20);
	atomic_store(&storm.active, false);
	nmi_unregister(NMI_LOCAL, "storm");
}

void storm_cpu_totals(unsigned cpu, struct storm_cpu_totals *out)
{
	*out = (struct storm_cpu_totals){ 0 };
	if (cpu >= STORM_MAX_CPUS)
		return;
	const struct storm_target *t = &storm_tgt[cpu];
	for (unsigned s = 0; s < STORM_MAX_CPUS; s++) {
		uint64_t sent = atomic_load(&storm_sent[s][cpu]);
		out->sent += sent;
		if (sent != t->claimed[s])
			out->mismatched++;
	}
	out->claimed = t->events;
	out->calls = t->calls;
	out->late = t->late;
	out->foreign = t->foreign;
	out->max_batch = t->max_batch;
	/* Storm NMIs owed and never delivered: the latch merged them. */
	uint64_t probes = probes_sent(cpu) - t->probe_base;
	out->collapsed = t->events + probes > t->calls ? t->events + probes - t->calls : 0;
}

/* --- storm.all_to_all ------------------------------------------------------ */

static uint64_t storm_seconds = 15;
NK_PARAM_UINT("storm_seconds", storm_seconds, 1, 3600,
	      "storm.all_to_all: how long every CPU floods every other with NMIs");
static uint64_t storm_in_flight = 3;
NK_PARAM_UINT("storm_in_flight", storm_in_flight, 0, 1000000,
	      "storm.all_to_all: a sender keeps at most this many unclaimed NMIs per target (0: no limit)");
static bool storm_external_nmis;
NK_PARAM_BOOL("storm_external_nmis", storm_external_nmis,
	      "storm.all_to_all: NMIs also come from outside (QMP inject-nmi); count unknown NMIs instead of failing");

static bool storm_mce;
NK_PARAM_BOOL("storm_mce", storm_mce,
	      "storm.all_to_all: machine checks are injected (QEMU mce); all must be recovered, their logs are allowed");
static bool storm_watchdog;
NK_PARAM_BOOL("storm_watchdog", storm_watchdog,
	      "storm.all_to_all: the HPET NMI watchdog must run through the storm, reach every CPU, report nothing");

/* The churn thread: registers and unregisters handlers for as long as the storm runs. */
#define CHURN_HANDLERS	3

static struct {
	atomic_bool stop;
	atomic_bool alive[CHURN_HANDLERS];	/* set before register, cleared after unregister */
	_Atomic uint64_t calls[CHURN_HANDLERS];
	_Atomic uint64_t after_unregister;	/* calls that found their handler dead */
	uint64_t cycles, errors;
} churn;

/* NMI context: atomics only. */
static int churn_handle(unsigned i)
{
	atomic_fetch_add_explicit(&churn.calls[i], 1, memory_order_relaxed);
	if (!atomic_load(&churn.alive[i]))
		atomic_fetch_add(&churn.after_unregister, 1);
	return NMI_DONE;
}
static int churn_handler0(unsigned type, struct nmi_frame *f) { (void)type; (void)f; return churn_handle(0); }
static int churn_handler1(unsigned type, struct nmi_frame *f) { (void)type; (void)f; return churn_handle(1); }
static int churn_handler2(unsigned type, struct nmi_frame *f) { (void)type; (void)f; return churn_handle(2); }

/* storm_mce: the machine-check pacer (see the top of the file). */
static atomic_bool mce_pacers_stop;

static void mce_pacer(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	uint64_t rnd = rdtsc() | 1;
	struct mce_cpu_stats m;

	mce_get_stats(cpu, &m);
	uint64_t seen = m.events;
	pr_info("storm: mce ready on CPU %u\n", cpu);
	while (!atomic_load(&mce_pacers_stop)) {
		sleep_ms(10);
		mce_get_stats(cpu, &m);
		if (m.events == seen)
			continue;
		seen = m.events;
		/* 0.3 to 0.8 s between machine checks on one CPU. */
		rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
		sleep_ms(300 + (rnd >> 33) % 500);
		if (!atomic_load(&mce_pacers_stop))
			pr_info("storm: mce ready on CPU %u\n", cpu);
	}
}

static void churn_thread(void *arg)
{
	(void)arg;
	static const nmi_handler_fn fns[CHURN_HANDLERS] = {
		churn_handler0, churn_handler1, churn_handler2,
	};
	static const char *const names[CHURN_HANDLERS] = { "churn0", "churn1", "churn2" };

	while (!atomic_load(&churn.stop)) {
		unsigned i = churn.cycles % CHURN_HANDLERS;
		atomic_store(&churn.alive[i], true);
		if (nmi_register(NMI_LOCAL, names[i], fns[i], churn.cycles & 1 ? NMI_FLAG_FIRST : 0) != NMI_OK) {
			churn.errors++;
			atomic_store(&churn.alive[i], false);
			sleep_ms(1);
			continue;
		}
		/* Two of the three are registered at a time, in changing order. */
		unsigned j = (churn.cycles + CHURN_HANDLERS - 1) % CHURN_HANDLERS;
		if (churn.cycles > 0 && nmi_unregister(NMI_LOCAL, names[j]) != NMI_OK)
			churn.errors++;
		atomic_store(&churn.alive[j], false);
		churn.cycles++;
		if ((churn.cycles & 63) == 0)
			yield();
	}
	for (unsigned i = 0; i < CHURN_HANDLERS; i++)
		if (atomic_load(&churn.alive[i])) {
			if (nmi_unregister(NMI_LOCAL, names[i]) != NMI_OK)
				churn.errors++;
			atomic_store(&churn.alive[i], false);
		}
}

/*
 * Records at warning level or worse since `seq`: the invariant warnings are
 * returned; the two that only measure time - a slow handler, an
 * nmi_unregister() still waiting after 1 s - are counted in *timing.  Without
 * icount the vCPUs are host threads that share the host's cores and QEMU's
 * global lock (taken for every ICR write and every interrupt delivery), so
 * a vCPU can stand still for longer than those limits while nothing is wrong
 * in the guest; the storm's own liveness check and the run's time limit
 * catch a CPU that really stops.  The unknown-NMI report is allowed when
 * NMIs come from outside.
 */
static unsigned warnings_since(uint64_t seq, bool allow_unknown, unsigned *timing, unsigned *mce)
{
	static struct nk_log_record rec;	/* only the test runner uses it */
	unsigned n = 0;
	while (nk_log_read(&seq, &rec)) {
		if (rec.level > NK_LOG_WARNING)
			continue;
		/* Recovered machine checks log at error level; a fatal one never gets here. */
		if (storm_mce && strncmp(rec.text, "mce: [Hardware Error]: ", 23) == 0) {
			(*mce)++;
			continue;
		}
		if (allow_unknown && (strncmp(rec.text, "Uhhuh. NMI received", 19) == 0 ||
				      strncmp(rec.text, "Dazed and confused", 18) == 0))
			continue;
		bool slow = strncmp(rec.text, "NMI handler (", 13) == 0 && strstr(rec.text, "took too long");
		bool waiting = strstr(rec.text, "still waiting for CPU");
		if (slow || waiting) {
			if (*timing < 3)
				kt_diag("host timing, not counted: %s", rec.text);
			(*timing)++;
			continue;
		}
		if (n < 5)
			kt_diag("logged during the storm: %s", rec.text);
		n++;
	}
	return n;
}

KTEST(storm, all_to_all)
{
	unsigned ncpus = os_cpu_count() < STORM_MAX_CPUS ? os_cpu_count() : STORM_MAX_CPUS;
	unsigned online = 0;
	uint64_t mask = 0;
	for (unsigned c = 0; c < ncpus; c++)
		if (os_cpu_online(c)) {
			mask |= 1ull << c;
			online++;
		}
	if (online < 2)
		KT_SKIP("needs at least two CPUs");

	struct nmi_cpu_stats before[STORM_MAX_CPUS], after[STORM_MAX_CPUS];
	uint64_t nested0[STORM_MAX_CPUS];
	for (unsigned c = 0; c < ncpus; c++) {
		nmi_get_cpu_stats(c, &before[c]);
		nested0[c] = cpu_data(c)->nmi_asm_nested;
	}
	/* Machine checks and the watchdog, if they take part (static: large). */
	static struct mce_cpu_stats mce0[STORM_MAX_CPUS];
	static struct watchdog_cpu_stats wd0[STORM_MAX_CPUS];
	for (unsigned c = 0; c < ncpus; c++) {
		mce_get_stats(c, &mce0[c]);
		watchdog_get_stats(c, &wd0[c]);
	}
	const struct wd_source *wd_src = watchdog_source();
	uint64_t wd_claims0 = wd_src && wd_src->unknown_claims ? wd_src->unknown_claims() : 0;
	uint64_t hard0 = watchdog_total_hard_lockups(), soft0 = watchdog_total_soft_lockups();
	if (storm_watchdog) {
		kt_diag("watchdog: %s, source %s, threshold %u s", watchdog_running() ? "running" : "STOPPED",
			watchdog_source_name(), watchdog_thresh_s());
		KT_ASSERT_TRUE(watchdog_running());
		KT_ASSERT_STREQ(watchdog_source_name(), "hpet");
	}
	uint64_t seq = nk_log_next_seq();

	churn.stop = false;
	churn.cycles = churn.errors = 0;
	atomic_store(&churn.after_unregister, 0);
	for (unsigned i = 0; i < CHURN_HANDLERS; i++) {
		atomic_store(&churn.alive[i], false);
		atomic_store(&churn.calls[i], 0);
	}

	struct storm_config cfg = {
		.senders = mask, .targets = mask, .gap_ns = 0, .max_in_flight = storm_in_flight,
		.seconds = storm_seconds,
	};
	uint64_t t0 = os_timestamp_ns();
	KT_ASSERT_EQ(storm_start(&cfg), 0);
	struct task *ct = task_create_kernel("storm-churn", churn_thread, NULL, TASK_CPU_ANY);
	if (!ct) {
		storm_stop();
		KT_ASSERT_NOT_NULL(ct);
	}
	pr_info("storm: start: %u CPUs, %lu s\n", online, (unsigned long)storm_seconds);
	static struct task *pacers[STORM_MAX_CPUS];
	atomic_store(&mce_pacers_stop, false);
	for (unsigned c = 0; c < ncpus; c++)
		pacers[c] = storm_mce && in_mask(mask, c) ?
			task_create_kernel("storm-mce-pace", mce_pacer, (void *)(uintptr_t)c, (int)c) : NULL;

	/*
	 * Liveness, every second: each CPU's handler claimed more and each
	 * sender went round again.  A CPU that shows neither for five seconds
	 * in a row counts a stall: it stopped taking NMIs or its sender thread
	 * stopped running.  (Five, not one: without icount the vCPUs are host
	 * threads, and a loaded host may not run one for a while.)
	 */
	uint64_t last_calls[STORM_MAX_CPUS] = { 0 }, last_rounds[STORM_MAX_CPUS] = { 0 };
	unsigned idle[STORM_MAX_CPUS] = { 0 };
	unsigned stalls = 0, seconds = 0;
	while (os_timestamp_ns() - t0 < storm_seconds * 1000000000ull) {
		sleep_ms(1000);
		seconds++;
		for (unsigned c = 0; c < ncpus; c++) {
			if (!in_mask(mask, c))
				continue;
			uint64_t calls = storm_tgt[c].calls;
			uint64_t rounds = atomic_load(&storm_sender_rounds[c]);
			if (calls == last_calls[c] || rounds == last_rounds[c]) {
				if (++idle[c] == 5) {
					kt_diag("second %u: CPU %u made no progress for 5 s (handler calls %lu, sender rounds %lu)",
						seconds, c, (unsigned long)calls, (unsigned long)rounds);
					stalls++;
				}
			} else {
				idle[c] = 0;
			}
			last_calls[c] = calls;
			last_rounds[c] = rounds;
		}
	}
	atomic_store(&churn.stop, true);
	task_wait(ct, NULL);
	atomic_store(&mce_pacers_stop, true);
	for (unsigned c = 0; c < ncpus; c++)
		if (pacers[c])
			task_wait(pacers[c], NULL);
	storm_stop();
	uint64_t elapsed_ms = (os_timestamp_ns() - t0) / 1000000;
	pr_info("storm: stop after %lu ms\n", (unsigned long)elapsed_ms);

	/*
	 * NMIs from outside that arrive while a target still has NMIs owed are
	 * taken for late storm NMIs: the books cannot tell them apart.  With
	 * the storm's handler gone nothing absorbs them, so every one is now
	 * reported unknown: wait for some, to show they were really coming.
	 */
	for (unsigned c = 0; c < ncpus; c++)
		nmi_get_cpu_stats(c, &after[c]);
	uint64_t unknown_after = 0;
	if (storm_external_nmis) {
		sleep_ms(1500);
		for (unsigned c = 0; c < ncpus; c++) {
			struct nmi_cpu_stats now;
			nmi_get_cpu_stats(c, &now);
			unknown_after += now.unknown - after[c].unknown;
		}
	}

	uint64_t sent = 0, claimed = 0, calls = 0, late = 0, foreign = 0, collapsed = 0;
	uint64_t unknown = 0, mismatched = 0, nested = 0, latched = 0;
	uint64_t wd_nmis = 0, foreign_beyond_wd = 0;
	unsigned canaries = 0, wd_missed = 0;
	struct mce_cpu_stats mce_sum = { 0 };
	for (unsigned c = 0; c < ncpus; c++) {
		if (!in_mask(mask, c))
			continue;
		struct storm_cpu_totals t;
		storm_cpu_totals(c, &t);
		uint64_t unk = after[c].unknown - before[c].unknown;
		uint64_t nst = cpu_data(c)->nmi_asm_nested - nested0[c];
		kt_diag("cpu %u: sent to it %lu, claimed %lu, handler calls %lu (%lu late), collapsed %lu, "
			"largest batch %lu, let go %lu, unknown %lu, latched %lu, nested %lu",
			c, (unsigned long)t.sent, (unsigned long)t.claimed, (unsigned long)t.calls,
			(unsigned long)t.late, (unsigned long)t.collapsed, (unsigned long)t.max_batch,
			(unsigned long)t.foreign, (unsigned long)unk,
			(unsigned long)(after[c].latched - before[c].latched), (unsigned long)nst);
		sent += t.sent;
		claimed += t.claimed;
		calls += t.calls;
		late += t.late;
		foreign += t.foreign;
		collapsed += t.collapsed;
		mismatched += t.mismatched;
		unknown += unk;
		nested += nst;
		latched += after[c].latched - before[c].latched;
		canaries += (unsigned)stacks_check_canaries(c);
		KT_EXPECT_GT(t.calls, 0);	/* every CPU took NMIs */

		struct mce_cpu_stats m;
		mce_get_stats(c, &m);
		mce_sum.events += m.events - mce0[c].events;
		mce_sum.recovered += m.recovered - mce0[c].recovered;
		mce_sum.fatal += m.fatal - mce0[c].fatal;
		mce_sum.in_nmi += m.in_nmi - mce0[c].in_nmi;
		mce_sum.no_iret += m.no_iret - mce0[c].no_iret;
		if (storm_mce && m.events != mce0[c].events)
			kt_diag("cpu %u: %lu machine checks, %lu recovered, %lu in NMI context, %lu resumed without IRET",
				c, (unsigned long)(m.events - mce0[c].events),
				(unsigned long)(m.recovered - mce0[c].recovered),
				(unsigned long)(m.in_nmi - mce0[c].in_nmi),
				(unsigned long)(m.no_iret - mce0[c].no_iret));
		if (storm_watchdog) {
			struct watchdog_cpu_stats w;
			watchdog_get_stats(c, &w);
			uint64_t n = w.nmis - wd0[c].nmis, checks = w.checks - wd0[c].checks;
			kt_diag("cpu %u: watchdog NMIs %lu, checks %lu, late %lu, longest evidence %lu ms",
				c, (unsigned long)n, (unsigned long)checks,
				(unsigned long)(w.late - wd0[c].late), (unsigned long)(w.max_stale_ns / 1000000));
			wd_nmis += n;
			wd_missed += n == 0 || checks == 0;
			foreign_beyond_wd += t.foreign > n ? t.foreign - n : 0;
		}
	}
	uint64_t churn_calls = 0;
	for (unsigned i = 0; i < CHURN_HANDLERS; i++)
		churn_calls += atomic_load(&churn.calls[i]);
	kt_diag("storm: %u CPUs, %lu ms: %lu NMIs sent (%lu per second), %lu claimed, %lu handler calls, "
		"%lu merged in the latch, %lu late",
		online, (unsigned long)elapsed_ms, (unsigned long)sent,
		(unsigned long)(elapsed_ms ? sent * 1000 / elapsed_ms : 0), (unsigned long)claimed,
		(unsigned long)calls, (unsigned long)collapsed, (unsigned long)late);
	kt_diag("churn: %lu register/unregister cycles, %lu calls of churned handlers, %lu after unregister, %lu errors",
		(unsigned long)churn.cycles, (unsigned long)churn_calls,
		(unsigned long)atomic_load(&churn.after_unregister), (unsigned long)churn.errors);
	kt_diag("nested NMIs caught by the entry: %lu; latched in C: %lu", (unsigned long)nested,
		(unsigned long)latched);
	kt_diag("unknown NMIs during the storm: %lu%s", (unsigned long)unknown,
		storm_external_nmis ? " (NMIs injected from outside: counted, not failed)" : "");
	if (storm_external_nmis)
		kt_diag("unknown NMIs in the 1.5 s after it, all from outside: %lu",
			(unsigned long)unknown_after);

	KT_EXPECT_EQ(stalls, 0);
	KT_EXPECT_GT(sent, 0);
	KT_EXPECT_EQ(storm_unclaimed(), 0);	/* every NMI's event was claimed ... */
	KT_EXPECT_EQ(mismatched, 0);		/* ... by its target, once: per sender, sent == claimed */
	KT_EXPECT_EQ(claimed, sent);
	KT_EXPECT_EQ(canaries, 0);
	uint64_t after_unregister = atomic_load(&churn.after_unregister);
	KT_EXPECT_EQ(after_unregister, 0);	/* nmi_unregister() waited for every CPU */
	KT_EXPECT_EQ(churn.errors, 0);
	KT_EXPECT_GT(churn.cycles, 0);
	KT_EXPECT_GT(churn_calls, 0);
	/* The watchdog's own strays, claimed on the unknown chain, are counted unknown there. */
	uint64_t wd_claims = wd_src && wd_src->unknown_claims ? wd_src->unknown_claims() - wd_claims0 : 0;
	if (!storm_external_nmis) {
		KT_EXPECT_EQ(unknown - wd_claims, 0);
		if (storm_watchdog)
			KT_EXPECT_EQ(foreign_beyond_wd, 0);	/* let go: only watchdog NMIs */
		else
			KT_EXPECT_EQ(foreign, 0);
	} else {
		KT_EXPECT_GT(unknown_after, 0);
	}
	if (storm_watchdog) {
		uint64_t hard = watchdog_total_hard_lockups() - hard0;
		uint64_t soft = watchdog_total_soft_lockups() - soft0;
		kt_diag("watchdog (%s): %lu NMIs on %u CPUs, %lu claimed on the unknown chain; "
			"lockups reported: %lu hard, %lu soft", watchdog_source_name(),
			(unsigned long)wd_nmis, online, (unsigned long)wd_claims,
			(unsigned long)hard, (unsigned long)soft);
		KT_EXPECT_TRUE(watchdog_running());
		KT_EXPECT_EQ(wd_missed, 0u);		/* the rotation reached every CPU */
		KT_EXPECT_EQ(hard, 0ul);
		KT_EXPECT_EQ(soft, 0ul);
	}
	if (storm_mce) {
		kt_diag("machine checks: %lu taken, %lu recovered, %lu fatal, %lu in NMI context, "
			"%lu resumed without IRET", (unsigned long)mce_sum.events,
			(unsigned long)mce_sum.recovered, (unsigned long)mce_sum.fatal,
			(unsigned long)mce_sum.in_nmi, (unsigned long)mce_sum.no_iret);
		KT_EXPECT_GT(mce_sum.events, 0ul);
		KT_EXPECT_EQ(mce_sum.recovered, mce_sum.events);
		KT_EXPECT_EQ(mce_sum.fatal, 0ul);
	}
	unsigned timing = 0, mce_lines = 0;
	KT_EXPECT_EQ(warnings_since(seq, storm_external_nmis, &timing, &mce_lines), 0);
	kt_diag("timing warnings (slow handler, unregister waiting): %u", timing);
	if (storm_mce)
		KT_EXPECT_GT(mce_lines, 0u);
}
