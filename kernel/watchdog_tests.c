/*
 * watchdog_tests.c: in-kernel tests of the lockup detectors (suite
 * `watchdog`), whatever source the boot chose: a hard lockup induced on each
 * CPU in turn is reported in time, naming the CPU and the spinning function;
 * soft lockups likewise; busy CPUs with interrupts-off sections just below
 * the threshold and long touched sections bring no report; every monitored
 * CPU is checked; CPUs go offline and back while the detector runs; all-CPU
 * backtraces answer, and say why a CPU did not.  The deliberate lockups
 * (watchdog_test_spin_*) also serve the shell's `watchdog lockup`.
 */
#include <stdatomic.h>

#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/tsc.h>
#include <kernel/ktest.h>
#include <kernel/sched.h>
#include <kernel/shell.h>
#include <kernel/time.h>
#include <kernel/watchdog.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/nmi_backtrace.h>
#include <nmikit/param.h>

#define MS	1000000ull
#define S	1000000000ull

static unsigned watchdog_test_busy_s = 7;
NK_PARAM_UINT("watchdog_test_busy_s", watchdog_test_busy_s, 1, 3600,
	      "length of the test watchdog.no_false_positive_busy, in seconds");

/* --- deliberate lockups ---------------------------------------------------- */

static uint64_t lockups_of(unsigned cpu, bool hard)
{
	struct watchdog_cpu_stats st;

	watchdog_get_stats(cpu, &st);
	return hard ? st.hard_lockups : st.soft_lockups;
}

/* Some work the compiler cannot drop, without PAUSE (so virtual time moves under icount). */
static inline void busy_work(void)
{
	for (volatile unsigned i = 0; i < 2000; i++)
		;
}

/* Busy work with PAUSE for `ns`: the CPU stays busy and virtual time moves. */
static void busy_for_ns(uint64_t ns)
{
	for (uint64_t t = tsc_ns(); tsc_ns() - t < ns;) {
		busy_work();
		cpu_relax();
	}
}

/*
 * The loop of a deliberate lockup, inlined into each named spinner below so
 * that the report's RIP and backtrace name that function (scenarios and
 * tests look for it).  `hard` picks the lockup counted and the touch used.
 */
static inline __attribute__((always_inline)) void spin_until_done(struct wd_spin *s, bool hard)
{
	uint64_t before = lockups_of(s->cpu, hard), last_touch;

	s->t_start = last_touch = tsc_ns();
	for (;;) {
		busy_work();
		cpu_relax();
		uint64_t now = tsc_ns();
		if (s->touch_every_ns && now - last_touch >= s->touch_every_ns) {
			if (hard)
				touch_nmi_watchdog();
			else
				touch_softlockup_watchdog();
			last_touch = now;
		}
		if (s->until_detected && lockups_of(s->cpu, hard) != before) {
			s->detected = true;
			break;
		}
		if (now - s->t_start >= s->max_ns)
			break;
	}
	s->t_end = tsc_ns();
}

__attribute__((noinline)) void watchdog_test_spin_irqs_off(struct wd_spin *s)
{
	s->cpu = this_cpu_id();
	irq_disable();
	spin_until_done(s, true);
	irq_enable();
}

__attribute__((noinline)) void watchdog_test_spin_preempt_off(struct wd_spin *s)
{
	s->cpu = this_cpu_id();
	preempt_disable();
	spin_until_done(s, false);
	preempt_enable();
}

static void spin_hard_task(void *arg) { watchdog_test_spin_irqs_off(arg); }
static void spin_soft_task(void *arg) { watchdog_test_spin_preempt_off(arg); }

bool watchdog_test_run_spin(unsigned cpu, bool hard, struct wd_spin *s)
{
	struct task *t = task_create_kernel(hard ? "wd-hardlock" : "wd-softlock",
					    hard ? spin_hard_task : spin_soft_task, s, (int)cpu);
	if (!t)
		return false;
	task_wait(t, NULL);
	return true;
}

/* --- helpers ---------------------------------------------------------------- */

static unsigned saved_thresh;

/* Tests run at a 1 s threshold; the old one comes back at the end. */
static bool test_begin(bool need_hard)
{
	if (need_hard && (!watchdog_source() || !watchdog_running())) {
		kt_skip("no hard lockup source running");
		return false;
	}
	saved_thresh = watchdog_thresh_s();
	if (saved_thresh != 1) {
		watchdog_set_threshold(1);
		/* A restart forgets every sample: let each CPU be sampled first. */
		sleep_ms(200);
	}
	return true;
}

static void test_end(void)
{
	if (saved_thresh != watchdog_thresh_s())
		watchdog_set_threshold(saved_thresh);
}

/* The first record at or after *seq containing `needle`; its sequence number in *seq. */
static bool log_find(uint64_t *seq, const char *needle, uint64_t limit)
{
	static struct nk_log_record rec;
	uint64_t s = *seq;

	while (nk_log_read(&s, &rec)) {
		if (rec.seq > limit)
			return false;
		for (const char *p = rec.text; *p; p++) {
			const char *a = p, *b = needle;
			while (*a && *b && *a == *b) {
				a++;
				b++;
			}
			if (!*b) {
				*seq = rec.seq;
				return true;
			}
		}
	}
	return false;
}

/* NMIs counted "unknown" by the core that the watchdog source did not explain. */
static uint64_t unexplained_unknown_nmis(void)
{
	const struct wd_source *src = watchdog_source();
	struct nmi_cpu_stats ns;
	uint64_t n = 0;

	for (unsigned c = 0; c < cpus_possible; c++)
		if (nmi_get_cpu_stats(c, &ns) == NMI_OK)
			n += ns.unknown;
	if (src && src->unknown_claims)
		n -= src->unknown_claims();
	return n;
}

static bool online_cpu(unsigned cpu)
{
	return cpu < cpus_possible && percpu_area[cpu].online && !cpu_is_offline(cpu);
}

/*
 * A lockup on `cpu` (hard or soft) must be reported between `lo` and `hi`
 * after it began, as that CPU's and no other's, with a report naming the CPU
 * and a backtrace through the spinning function.
 */
static void expect_lockup(unsigned cpu, bool hard, uint64_t lo, uint64_t hi)
{
	struct wd_spin s = { .max_ns = hi + 2 * S, .until_detected = true };
	uint64_t others[MAX_CPUS];
	char what[64];
	uint64_t seq = nk_log_next_seq();

	for (unsigned c = 0; c < cpus_possible; c++)
		others[c] = lockups_of(c, hard);
	KT_ASSERT_TRUE(watchdog_test_run_spin(cpu, hard, &s));
	struct watchdog_cpu_stats st;
	watchdog_get_stats(cpu, &st);
	uint64_t latency = s.detected ? st.last_lockup_ns - s.t_start : 0;
	kt_diag("%s lockup on cpu %u: %s after %llu.%03llu s", hard ? "hard" : "soft", cpu,
		s.detected ? "reported" : "NOT reported", (unsigned long long)(latency / S),
		(unsigned long long)(latency % S / MS));
	KT_EXPECT_TRUE(s.detected);
	KT_EXPECT_EQ(s.cpu, cpu);
	KT_EXPECT_EQ(lockups_of(cpu, hard), others[cpu] + 1);
	for (unsigned c = 0; c < cpus_possible; c++)
		if (c != cpu)
			KT_EXPECT_EQ(lockups_of(c, hard), others[c]);
	if (!s.detected)
		return;
	KT_EXPECT_GE(latency, lo);
	KT_EXPECT_LE(latency, hi);
	/* The report: the right CPU, then the spinning function in its backtrace. */
	uint64_t end = nk_log_next_seq();
	if (hard)
		nk_snprintf(what, sizeof(what), "Watchdog detected hard LOCKUP on cpu %u", cpu);
	else
		nk_snprintf(what, sizeof(what), "BUG: soft lockup - CPU#%u stuck for", cpu);
	bool named = log_find(&seq, what, end);
	KT_EXPECT_TRUE(named);
	if (named) {
		uint64_t at = seq;
		KT_EXPECT_TRUE(log_find(&seq, hard ? "watchdog_test_spin_irqs_off+0x"
						   : "watchdog_test_spin_preempt_off+0x", at + 40));
	}
}

/* Each monitored CPU in turn, CPU 0 first. */
static void lockup_each_cpu(bool hard)
{
	uint64_t thresh = watchdog_thresh_ns();
	uint64_t period = hard ? watchdog_source()->period_ns() : S / timer_hz();
	uint64_t lo, hi;

	if (hard) {
		/* Never before a silence of (threshold - one period); the last tick came before the spin. */
		lo = thresh > period + S / timer_hz() ? thresh - period - S / timer_hz() : 0;
		hi = thresh + period + 5 * MS;
		if (watchdog_source()->confirm_ns)
			hi += watchdog_source()->confirm_ns();
	} else {
		/* The thread last ran up to 2/5 threshold before; reported past 2 x threshold. */
		uint64_t soft = WATCHDOG_SOFT_FACTOR * thresh;
		lo = soft - 2 * thresh / 5 - 2 * period;
		hi = soft + period + 5 * MS;
	}
	kt_diag("source %s, threshold %llu ms, check period %llu ms: expecting %llu..%llu ms",
		watchdog_source_name(), (unsigned long long)(thresh / MS),
		(unsigned long long)(period / MS), (unsigned long long)(lo / MS),
		(unsigned long long)(hi / MS));
	for (unsigned cpu = 0; cpu < cpus_possible; cpu++)
		if (online_cpu(cpu) && wd_monitored(cpu))
			expect_lockup(cpu, hard, lo, hi);
}

/* --- tests -------------------------------------------------------------------- */

KTEST(watchdog, hard_lockup_each_cpu)
{
	if (!test_begin(true))
		return;
	lockup_each_cpu(true);
	test_end();
}

KTEST(watchdog, soft_lockup_each_cpu)
{
	if (!watchdog_soft_enabled() || !softlockup_threads())
		KT_SKIP("soft lockup detector off");
	test_begin(false);
	lockup_each_cpu(false);
	test_end();
}

/* Interrupts off for 2.5 thresholds, touching: no report; the same untouched is one. */
KTEST(watchdog, touch_nmi_watchdog_holds_off_a_report)
{
	if (!test_begin(true))
		return;
	unsigned cpu = online_cpu(1) && wd_monitored(1) ? 1 : 0;
	uint64_t before = lockups_of(cpu, true), soft_before = lockups_of(cpu, false);
	struct wd_spin s = { .max_ns = 5 * watchdog_thresh_ns() / 2, .touch_every_ns = 100 * MS };
	KT_ASSERT_TRUE(watchdog_test_run_spin(cpu, true, &s));
	KT_EXPECT_EQ(lockups_of(cpu, true), before);
	KT_EXPECT_EQ(lockups_of(cpu, false), soft_before);
	struct watchdog_cpu_stats st;
	watchdog_get_stats(cpu, &st);
	KT_EXPECT_GT(st.touched, 0u);
	test_end();
}

/* --- busy, no false positive --------------------------------------------------- */

struct busy_job {
	unsigned cpu;
	uint64_t until;
	unsigned sections;
};

/* One CPU's mixture, phases staggered by CPU so they overlap differently. */
static void busy_task(void *arg)
{
	struct busy_job *j = arg;
	uint64_t thresh = watchdog_thresh_ns();
	unsigned phase = j->cpu % 5;

	while (tsc_ns() < j->until) {
		struct wd_spin s = { 0 };
		uint64_t t;

		switch (phase++ % 5) {
		case 0:		/* plain busy work, interrupts on */
			for (t = tsc_ns(); tsc_ns() - t < 300 * MS;)
				busy_work();
			break;
		case 1:		/* interrupts off just below the threshold */
			s.max_ns = thresh * 9 / 10;
			watchdog_test_spin_irqs_off(&s);
			break;
		case 2:		/* interrupts off for 1.5 thresholds, touched */
			s.max_ns = thresh * 3 / 2;
			s.touch_every_ns = 100 * MS;
			watchdog_test_spin_irqs_off(&s);
			break;
		case 3:		/* preemption off just below the soft threshold (minus a thread period) */
			s.max_ns = thresh * 3 / 2;
			watchdog_test_spin_preempt_off(&s);
			break;
		default:	/* preemption off for 2.5 thresholds, touched */
			s.max_ns = thresh * 5 / 2;
			s.touch_every_ns = 200 * MS;
			watchdog_test_spin_preempt_off(&s);
			break;
		}
		j->sections++;
	}
}

KTEST(watchdog, no_false_positive_busy)
{
	static struct busy_job jobs[MAX_CPUS];
	static struct task *tasks[MAX_CPUS];
	if (!test_begin(true))
		return;
	watchdog_reset_stats();
	uint64_t hard0 = watchdog_total_hard_lockups(), soft0 = watchdog_total_soft_lockups();
	uint64_t unknown0 = unexplained_unknown_nmis();
	uint64_t until = tsc_ns() + (uint64_t)watchdog_test_busy_s * S;
	kt_diag("every CPU busy for %u s: irqs-off sections of 0.9 threshold, touched ones of 1.5, "
		"preempt-off of 1.5 (soft: 2), touched ones of 2.5", watchdog_test_busy_s);
	for (unsigned c = 0; c < cpus_possible; c++) {
		if (!online_cpu(c))
			continue;
		jobs[c] = (struct busy_job){ .cpu = c, .until = until };
		tasks[c] = task_create_kernel("wd-busy", busy_task, &jobs[c], (int)c);
		KT_EXPECT_NOT_NULL(tasks[c]);
	}
	for (unsigned c = 0; c < cpus_possible; c++)
		if (tasks[c]) {
			task_wait(tasks[c], NULL);
			tasks[c] = NULL;
		}
	KT_EXPECT_EQ(watchdog_total_hard_lockups(), hard0);
	KT_EXPECT_EQ(watchdog_total_soft_lockups(), soft0);
	KT_EXPECT_EQ(unexplained_unknown_nmis(), unknown0);
	for (unsigned c = 0; c < cpus_possible; c++) {
		struct watchdog_cpu_stats st;
		if (!online_cpu(c) || !wd_monitored(c))
			continue;
		watchdog_get_stats(c, &st);
		kt_diag("cpu %u: %u sections, %llu checks, longest evidence %llu ms, %llu late, "
			"%llu touched", c, jobs[c].sections, (unsigned long long)st.checks,
			(unsigned long long)(st.max_stale_ns / MS), (unsigned long long)st.late,
			(unsigned long long)st.touched);
		/*
		 * The detector kept checking and gathered evidence below the
		 * threshold.  (Under icount the sections at 0.9 threshold show as
		 * about 0.9 s of evidence; with vCPUs sharing host cores many
		 * checks come late and count one period each: less evidence.)
		 */
		KT_EXPECT_GT(st.checks, 10u);
		KT_EXPECT_GT(st.max_stale_ns, 0u);
		KT_EXPECT_LT(st.max_stale_ns, watchdog_thresh_ns());
	}
	test_end();
}

/* --- every CPU checked ----------------------------------------------------------- */

KTEST(watchdog, every_monitored_cpu_checked)
{
	uint64_t before[MAX_CPUS], nmis[MAX_CPUS];

	if (!test_begin(true))
		return;
	uint64_t period = watchdog_source()->period_ns();
	for (unsigned c = 0; c < cpus_possible; c++) {
		struct watchdog_cpu_stats st;
		watchdog_get_stats(c, &st);
		before[c] = st.checks;
		nmis[c] = st.nmis;
	}
	uint64_t t0 = tsc_ns();
	sleep_ms(1000);
	uint64_t elapsed = tsc_ns() - t0;
	uint64_t expected = elapsed / period;
	for (unsigned c = 0; c < cpus_possible; c++) {
		struct watchdog_cpu_stats st;
		if (!online_cpu(c) || !wd_monitored(c))
			continue;
		watchdog_get_stats(c, &st);
		uint64_t got = st.checks - before[c];
		kt_diag("cpu %u: %llu checks in %llu ms (period %llu us: %llu expected), %llu NMIs",
			c, (unsigned long long)got, (unsigned long long)(elapsed / MS),
			(unsigned long long)(period / 1000), (unsigned long long)expected,
			(unsigned long long)(st.nmis - nmis[c]));
		KT_EXPECT_GE(got, expected / 2);
		KT_EXPECT_LE(got, expected * 2 + 2);
	}
	test_end();
}

/* --- CPUs offline and back while the detector runs ---------------------------------- */

KTEST(watchdog, offline_online_loop)
{
	if (cpus_possible < 2)
		KT_SKIP("needs two CPUs");
	if (!test_begin(true))
		return;
	uint64_t hard0 = watchdog_total_hard_lockups();
	uint64_t unknown0 = unexplained_unknown_nmis();
	unsigned rounds = 0;
	for (unsigned round = 0; round < 3; round++) {
		for (unsigned c = 1; c < cpus_possible; c++) {
			if (!online_cpu(c))
				continue;
			KT_ASSERT_EQ(cpu_offline(c), 0);
			KT_EXPECT_FALSE(wd_monitored(c));
			KT_EXPECT_FALSE(percpu_area[c].online);
			sleep_ms(150);
			KT_ASSERT_EQ(cpu_online(c), 0);
			KT_EXPECT_TRUE(wd_monitored(c));
			rounds++;
		}
		/* Two at once, when there are enough. */
		if (cpus_possible >= 4) {
			KT_ASSERT_EQ(cpu_offline(1), 0);
			KT_ASSERT_EQ(cpu_offline(cpus_possible - 1), 0);
			sleep_ms(300);
			KT_ASSERT_EQ(cpu_online(1), 0);
			KT_ASSERT_EQ(cpu_online(cpus_possible - 1), 0);
		}
	}
	sleep_ms(1500);		/* longer than the threshold, all back */
	kt_diag("%u offline/online rounds; %llu lockups reported meanwhile", rounds,
		(unsigned long long)(watchdog_total_hard_lockups() - hard0));
	KT_EXPECT_EQ(watchdog_total_hard_lockups(), hard0);
	KT_EXPECT_EQ(unexplained_unknown_nmis(), unknown0);
	for (unsigned c = 0; c < cpus_possible; c++)
		KT_EXPECT_TRUE(wd_monitored(c) || !percpu_area[c].online);
	/* And nothing is missed afterwards. */
	lockup_each_cpu(true);
	test_end();
}

/* --- all-CPU backtraces ----------------------------------------------------------------- */

static _Atomic int stuck_cpu = -1;
static _Atomic bool stuck_in;

/*
 * NMI context, test only: holds the CPU named in stuck_cpu inside its NMI for
 * 300 ms (busy work between PAUSEs, so that virtual time moves under icount).
 */
static int stuck_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	if (atomic_load(&stuck_cpu) != (int)this_cpu_id())
		return NMI_DONE;
	atomic_store(&stuck_cpu, -1);
	atomic_store(&stuck_in, true);
	busy_for_ns(300 * MS);
	atomic_store(&stuck_in, false);
	return NMI_HANDLED;
}

KTEST(watchdog, all_cpu_backtrace)
{
	struct nmi_backtrace_result r;
	struct wd_spin s = { .max_ns = 2 * S, .touch_every_ns = 50 * MS };
	unsigned spin_cpu = online_cpu(1) ? 1 : 0;

	/* Every CPU answers; the one spinning with interrupts off shows where. */
	struct task *t = NULL;
	if (spin_cpu) {
		t = task_create_kernel("wd-bt-spin", spin_hard_task, &s, (int)spin_cpu);
		KT_ASSERT_NOT_NULL(t);
		sleep_ms(100);
	}
	uint64_t seq = nk_log_next_seq();
	KT_EXPECT_EQ(nmi_backtrace(NULL, 0, S, &r), NMI_OK);
	uint64_t end = nk_log_next_seq();
	unsigned online = 0;
	for (unsigned c = 0; c < cpus_possible; c++)
		if (online_cpu(c)) {
			online++;
			KT_EXPECT_EQ(r.status[c], NMI_BT_ANSWERED);
		}
	KT_EXPECT_EQ(r.answered, online);
	kt_diag("%u CPUs answered in %llu us", r.answered, (unsigned long long)(r.elapsed_ns / 1000));
	if (spin_cpu) {
		char what[40];
		nk_snprintf(what, sizeof(what), "NMI backtrace for cpu %u", spin_cpu);
		KT_EXPECT_TRUE(log_find(&seq, what, end));
		KT_EXPECT_TRUE(log_find(&seq, "watchdog_test_spin_irqs_off+0x", end));
		task_wait(t, NULL);
	}

	/* A CPU stuck in an NMI handler, and an offline one, are named with their reason. */
	if (cpus_possible >= 3 && online_cpu(2)) {
		KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "wd-test-stuck", stuck_handler, NMI_FLAG_FIRST),
			     NMI_OK);
		atomic_store(&stuck_cpu, 2);
		os_send_nmi(2);
		for (unsigned i = 0; i < 100 && !atomic_load(&stuck_in); i++)
			sleep_ms(1);
		KT_EXPECT_TRUE(atomic_load(&stuck_in));
		int err = nmi_backtrace(NULL, 0, 50 * MS, &r);
		KT_EXPECT_EQ(err, NMI_ETIMEDOUT);
		KT_EXPECT_EQ(r.status[2], NMI_BT_STUCK_IN_NMI);
		KT_EXPECT_EQ(r.status[0], NMI_BT_ANSWERED);
		while (atomic_load(&stuck_in))
			sleep_ms(10);
		nmi_unregister(NMI_LOCAL, "wd-test-stuck");
		if (cpus_possible >= 4 && online_cpu(3)) {
			KT_ASSERT_EQ(cpu_offline(3), 0);
			KT_EXPECT_EQ(nmi_backtrace(NULL, NMI_BT_QUIET, S, &r), NMI_OK);
			KT_EXPECT_EQ(r.status[3], NMI_BT_OFFLINE);
			KT_EXPECT_EQ(r.status[2], NMI_BT_ANSWERED);
			KT_EXPECT_EQ(cpu_online(3), 0);
		}
	}
}

/*
 * HPET source: NMIs still on their way when the comparator is reconfigured
 * are flushed, not left to arrive after the source stopped recognising them.
 * CPUs 1.. are held inside an NMI handler, so the rotating NMI stalls,
 * latched, on whichever of them it reaches; meanwhile CPU 0 restarts the
 * source with a 60 s threshold (stop, flush, start), whose first expiry comes
 * long after the held CPUs are let go: without the flush, the latched NMI
 * would arrive at a CPU that is no longer the target, unexplained.
 */
static _Atomic uint64_t hold_mask;
static _Atomic unsigned held;

/* NMI context, test only: hold this CPU in its NMI for 150 ms if asked. */
static int hold_handler(unsigned type, struct nmi_frame *f)
{
	uint64_t bit = 1ull << this_cpu_id();

	(void)type;
	(void)f;
	if (this_cpu_id() >= 64 || !(atomic_fetch_and(&hold_mask, ~bit) & bit))
		return NMI_DONE;
	atomic_fetch_add(&held, 1);
	busy_for_ns(150 * MS);
	atomic_fetch_sub(&held, 1);
	return NMI_HANDLED;
}

KTEST(watchdog, hpet_flush_catches_nmi_in_flight)
{
	if (watchdog_source() != &wd_source_hpet || !watchdog_running())
		KT_SKIP("HPET source not running");
	if (cpus_possible < 2 || cpus_possible > 64)
		KT_SKIP("needs 2 to 64 CPUs");
	uint64_t unknown0 = unexplained_unknown_nmis();
	KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "wd-test-hold", hold_handler, NMI_FLAG_FIRST), NMI_OK);
	unsigned n = 0;
	uint64_t mask = 0;
	for (unsigned c = 1; c < cpus_possible; c++)
		if (online_cpu(c)) {
			mask |= 1ull << c;
			n++;
		}
	atomic_store(&hold_mask, mask);
	for (unsigned c = 1; c < cpus_possible; c++)
		if (mask & (1ull << c))
			os_send_nmi(c);
	unsigned thresh = watchdog_thresh_s();
	for (unsigned i = 0; i < 20 && atomic_load(&held) < n; i++)
		sleep_ms(1);
	sleep_ms(40);		/* the rotating NMI reaches a held CPU and stalls there */
	watchdog_set_threshold(60);	/* stop, flush, start: next expiry in 375+ ms */
	while (atomic_load(&held))
		sleep_ms(10);
	sleep_ms(50);
	nmi_unregister(NMI_LOCAL, "wd-test-hold");
	KT_EXPECT_EQ(unexplained_unknown_nmis(), unknown0);
	watchdog_set_threshold(thresh);
}

/* --- shell: deliberate lockups ------------------------------------------------------------ */

static struct wd_spin shell_spin;

static int cmd_lockup(int argc, char **argv)
{
	uint64_t cpu, secs = 0;

	if (argc < 3 || argc > 4 || !shell_parse_u64(argv[2], &cpu) ||
	    (argc == 4 && !shell_parse_u64(argv[3], &secs)))
		return SHELL_USAGE;
	bool hard = !__builtin_strcmp(argv[1], "hard");
	if (!hard && __builtin_strcmp(argv[1], "soft"))
		return SHELL_USAGE;
	if (!secs)
		secs = (uint64_t)(hard ? 2 : 3) * watchdog_thresh_s() + 1;
	shell_spin = (struct wd_spin){ .max_ns = secs * S };
	struct task *t = task_create_kernel("wd-lockup", hard ? spin_hard_task : spin_soft_task,
					    &shell_spin, (int)cpu);
	if (!t) {
		shell_printf("lockup: cannot start a task on CPU %llu\n", (unsigned long long)cpu);
		return 1;
	}
	shell_printf("lockup: CPU %llu spins with %s for %llu s\n", (unsigned long long)cpu,
		     hard ? "interrupts off" : "preemption off", (unsigned long long)secs);
	task_wait(t, NULL);
	shell_printf("lockup: done\n");
	return 0;
}
SHELL_CMD(lockup, "hard|soft CPU [SECONDS]",
	  "spin on CPU with interrupts (hard) or preemption (soft) off, to see the watchdog report",
	  cmd_lockup);
