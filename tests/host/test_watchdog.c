/*
 * Host unit tests of core/watchdog.c (the lockup decision: evidence, the
 * late-check rule, touch, withdraw, soft lockups, the report policy) and of
 * core/nmi_backtrace.c (all-CPU backtraces: answers in CPU order, one caller
 * at a time, the reason for each CPU that does not answer, late answers).
 */
#include "tap.h"
#include "test_os.h"
#include "capture.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/nmi_backtrace.h>
#include <nmikit/watchdog.h>

#define MS	1000000ull
#define S	1000000000ull

static struct watchdog_cpu_stats wstats(unsigned cpu)
{
	struct watchdog_cpu_stats s;

	watchdog_get_stats(cpu, &s);
	return s;
}

static void setup(unsigned thresh)
{
	watchdog_set_thresh(thresh);
	watchdog_set_enabled(true, true);
	watchdog_set_policy(false, false, false);
	for (unsigned c = 0; c < 4; c++)
		watchdog_cpu_monitor(c, true);
	tos_set_time(1 * S);
}

/* `n` ticks of `cpu` every `tick` with its watchdog thread not running; the last verdict. */
static enum watchdog_verdict soft_ticks(unsigned cpu, unsigned n, uint64_t tick, uint64_t *stuck)
{
	enum watchdog_verdict v = WD_OFF;

	for (unsigned i = 0; i < n; i++) {
		tos_advance(tick);
		v = watchdog_soft_check(cpu, tos_time(), tick, stuck);
	}
	return v;
}

/* Checks of `cpu` every `period` with a frozen heartbeat until `n` checks, returning the last verdict. */
static enum watchdog_verdict frozen_checks(unsigned cpu, unsigned n, uint64_t period, uint64_t hb)
{
	enum watchdog_verdict v = WD_OFF;

	for (unsigned i = 0; i < n; i++) {
		tos_advance(period);
		v = watchdog_check(cpu, tos_time(), hb, period);
	}
	return v;
}

static void first_check_only_takes_a_sample(void)
{
	setup(1);
	CHECK_EQ(watchdog_check(1, tos_time(), 5, 100 * MS), WD_FIRST);
	tos_advance(100 * MS);
	CHECK_EQ(watchdog_check(1, tos_time(), 6, 100 * MS), WD_OK);
	CHECK_EQ(wstats(1).checks, 2);
	/* It moved somewhere in the last 100 ms: that much silence is possible. */
	CHECK_EQ(wstats(1).stale_ns, 100 * MS);
}

static void lockup_reported_once_after_threshold_then_recovers(void)
{
	setup(1);
	watchdog_check(2, tos_time(), 7, 100 * MS);
	/* 9 periods of 100 ms without progress: 0.9 s, below the 1 s threshold. */
	CHECK_EQ(frozen_checks(2, 9, 100 * MS, 7), WD_STALE);
	CHECK_EQ(wstats(2).stale_ns, 900 * MS);
	/* The tenth makes it 1 s. */
	CHECK_EQ(frozen_checks(2, 1, 100 * MS, 7), WD_LOCKUP);
	CHECK_EQ(frozen_checks(2, 5, 100 * MS, 7), WD_STILL_LOCKED);
	tos_advance(100 * MS);
	CHECK_EQ(watchdog_check(2, tos_time(), 8, 100 * MS), WD_RECOVERED);
	CHECK_EQ(wstats(2).stale_ns, 100 * MS);
	CHECK_EQ(wstats(2).max_stale_ns, 1500 * MS);
	/* A new lockup is reported again. */
	CHECK_EQ(frozen_checks(2, 8, 100 * MS, 8), WD_STALE);
	CHECK_EQ(frozen_checks(2, 1, 100 * MS, 8), WD_LOCKUP);
}

/*
 * The bound the proof relies on: a CPU whose heartbeat last moved at T is
 * reported no later than T + threshold + one period, and never before
 * T + threshold - one period.
 */
static void lockup_reported_within_threshold_plus_one_period(void)
{
	for (uint64_t phase = 0; phase < 100 * MS; phase += 10 * MS) {
		setup(1);
		watchdog_cpu_monitor(1, true);
		uint64_t hb = 1, moved = 0;
		enum watchdog_verdict v = watchdog_check(1, tos_time(), hb, 100 * MS);
		for (unsigned i = 0; i < 40 && v != WD_LOCKUP; i++) {
			/* The last tick: `phase` after check 5. */
			if (i == 5) {
				tos_advance(phase);
				hb++;
				moved = tos_time();
				tos_advance(100 * MS - phase);
			} else {
				tos_advance(100 * MS);
			}
			v = watchdog_check(1, tos_time(), hb, 100 * MS);
		}
		CHECK_EQ(v, WD_LOCKUP);
		CHECK(tos_time() - moved <= 1 * S + 100 * MS);
		CHECK(tos_time() - moved >= 1 * S - 100 * MS);
	}
}

static void late_check_is_credited_one_period_only(void)
{
	setup(1);
	watchdog_check(1, tos_time(), 3, 100 * MS);
	/* The vCPU was held for 5 s: the check comes late, with no progress. */
	tos_advance(5 * S);
	CHECK_EQ(watchdog_check(1, tos_time(), 3, 100 * MS), WD_LATE);
	CHECK_EQ(wstats(1).stale_ns, 100 * MS);
	CHECK_EQ(wstats(1).late, 1);
	/* Exactly at the limit (3 periods) a check is still on time. */
	tos_advance(300 * MS);
	CHECK_EQ(watchdog_check(1, tos_time(), 3, 100 * MS), WD_STALE);
	CHECK_EQ(wstats(1).stale_ns, 400 * MS);
	/* Six more on-time checks reach the threshold. */
	CHECK_EQ(frozen_checks(1, 5, 100 * MS, 3), WD_STALE);
	CHECK_EQ(frozen_checks(1, 1, 100 * MS, 3), WD_LOCKUP);
}

static void repeated_late_checks_never_condemn_faster_than_periods(void)
{
	setup(2);
	watchdog_check(3, tos_time(), 1, 100 * MS);
	/* Every check 10 s late: each adds 100 ms, so 20 of them to reach 2 s. */
	for (unsigned i = 0; i < 19; i++) {
		tos_advance(10 * S);
		CHECK_EQ(watchdog_check(3, tos_time(), 1, 100 * MS), WD_LATE);
	}
	tos_advance(10 * S);
	CHECK_EQ(watchdog_check(3, tos_time(), 1, 100 * MS), WD_LOCKUP);
}

static void touch_forgets_the_evidence(void)
{
	setup(1);
	watchdog_check(0, tos_time(), 1, 100 * MS);
	CHECK_EQ(frozen_checks(0, 9, 100 * MS, 1), WD_STALE);
	tos_cpu = 0;
	touch_nmi_watchdog();
	CHECK_EQ(frozen_checks(0, 1, 100 * MS, 1), WD_TOUCHED);
	CHECK_EQ(wstats(0).stale_ns, 100 * MS);
	CHECK_EQ(wstats(0).touched, 1);
	/* A full threshold from the interval of the touch is needed again. */
	CHECK_EQ(frozen_checks(0, 8, 100 * MS, 1), WD_STALE);
	CHECK_EQ(frozen_checks(0, 1, 100 * MS, 1), WD_LOCKUP);
	/* Touching another CPU works the same. */
	CHECK_EQ(watchdog_check(3, tos_time(), 9, 100 * MS), WD_FIRST);
	CHECK_EQ(frozen_checks(3, 9, 100 * MS, 9), WD_STALE);
	watchdog_touch_cpu(3);
	CHECK_EQ(frozen_checks(3, 1, 100 * MS, 9), WD_TOUCHED);
}

static void withdraw_and_restart_forget_the_evidence(void)
{
	setup(1);
	watchdog_check(1, tos_time(), 1, 100 * MS);
	CHECK_EQ(frozen_checks(1, 10, 100 * MS, 1), WD_LOCKUP);
	watchdog_withdraw(1);
	CHECK_EQ(frozen_checks(1, 1, 100 * MS, 1), WD_OK);
	CHECK_EQ(wstats(1).withdrawn, 1);
	CHECK_EQ(frozen_checks(1, 8, 100 * MS, 1), WD_STALE);
	CHECK_EQ(frozen_checks(1, 1, 100 * MS, 1), WD_LOCKUP);
	/* Monitoring restarted (a CPU back online): a first sample again. */
	watchdog_cpu_monitor(1, true);
	CHECK_EQ(frozen_checks(1, 1, 100 * MS, 1), WD_FIRST);
	CHECK_EQ(frozen_checks(1, 9, 100 * MS, 1), WD_STALE);
}

static void off_when_disabled_unmonitored_or_zero_threshold(void)
{
	setup(1);
	watchdog_cpu_monitor(2, false);
	CHECK_EQ(watchdog_check(2, tos_time(), 1, 100 * MS), WD_OFF);
	CHECK(!watchdog_cpu_monitored(2));
	CHECK_EQ(watchdog_check(NMIKIT_MAX_CPUS, tos_time(), 1, 100 * MS), WD_OFF);
	watchdog_set_enabled(false, true);
	CHECK_EQ(watchdog_check(1, tos_time(), 1, 100 * MS), WD_OFF);
	watchdog_set_enabled(true, true);
	watchdog_set_thresh(0);
	CHECK_EQ(watchdog_check(1, tos_time(), 1, 100 * MS), WD_OFF);
	CHECK(!watchdog_hard_enabled());
	CHECK(!watchdog_soft_enabled());
}

static void threshold_change_applies_at_next_check(void)
{
	setup(10);
	watchdog_check(1, tos_time(), 1, 100 * MS);
	CHECK_EQ(frozen_checks(1, 20, 100 * MS, 1), WD_STALE);
	watchdog_set_thresh(2);
	CHECK_EQ(frozen_checks(1, 1, 100 * MS, 1), WD_LOCKUP);
	CHECK_EQ(watchdog_thresh_ns(), 2 * S);
}

static void soft_lockup_after_twice_the_threshold_once_per_episode(void)
{
	uint64_t stuck = 0;

	setup(1);
	tos_cpu = 1;
	CHECK_EQ(watchdog_soft_check(1, tos_time(), 10 * MS, &stuck), WD_FIRST);
	/* The thread runs every 400 ms: never stuck. */
	for (unsigned i = 0; i < 300; i++) {
		tos_advance(10 * MS);
		if (i % 40 == 0)
			watchdog_soft_touch(1, tos_time());
		CHECK_EQ(watchdog_soft_check(1, tos_time(), 10 * MS, &stuck), WD_OK);
	}
	/* Then it stops running: 2 s later (2 x threshold) it is reported, once. */
	watchdog_soft_touch(1, tos_time());
	enum watchdog_verdict v = WD_OK;
	unsigned ticks = 0;
	while (v == WD_OK && ticks < 1000) {
		tos_advance(10 * MS);
		v = watchdog_soft_check(1, tos_time(), 10 * MS, &stuck);
		ticks++;
	}
	CHECK_EQ(v, WD_LOCKUP);
	CHECK_EQ(ticks, 201);
	CHECK_EQ(stuck, 2010 * MS);
	tos_advance(10 * MS);
	CHECK_EQ(watchdog_soft_check(1, tos_time(), 10 * MS, &stuck), WD_STILL_LOCKED);
	touch_softlockup_watchdog();
	tos_advance(10 * MS);
	CHECK_EQ(watchdog_soft_check(1, tos_time(), 10 * MS, &stuck), WD_OK);
}

static void soft_check_does_not_charge_a_stalled_cpu(void)
{
	uint64_t stuck = 0;

	setup(1);
	watchdog_soft_check(2, tos_time(), 10 * MS, &stuck);
	watchdog_soft_touch(2, tos_time());
	tos_advance(10 * MS);
	CHECK_EQ(watchdog_soft_check(2, tos_time(), 10 * MS, &stuck), WD_OK);
	/* The whole vCPU held for 30 s: its next tick is late, not a soft lockup. */
	tos_advance(30 * S);
	CHECK_EQ(watchdog_soft_check(2, tos_time(), 10 * MS, &stuck), WD_OK);
	CHECK(stuck <= 30 * MS);
	CHECK_EQ(wstats(2).soft_late, 1);
}

/* --- edge cases of the decision ------------------------------------------------ */

static void verdict_names_are_distinct_and_unknown_is_a_question_mark(void)
{
	for (int a = WD_OFF; a <= WD_RECOVERED; a++) {
		CHECK(strcmp(watchdog_verdict_name(a), "?") != 0);
		for (int b = a + 1; b <= WD_RECOVERED; b++)
			CHECK(strcmp(watchdog_verdict_name(a), watchdog_verdict_name(b)) != 0);
	}
	CHECK_STR(watchdog_verdict_name(WD_STILL_LOCKED), "still-locked");
	CHECK_STR(watchdog_verdict_name((enum watchdog_verdict)99), "?");
}

/* A CPU number beyond the core's table is ignored by every entry point, never indexed. */
static void cpu_beyond_the_table_is_ignored_everywhere(void)
{
	const unsigned bad = NMIKIT_MAX_CPUS;
	struct watchdog_cpu_stats s;
	uint64_t stuck = 12345;

	setup(1);
	watchdog_cpu_monitor(bad, true);
	CHECK(!watchdog_cpu_monitored(bad));
	CHECK_EQ(watchdog_check(bad, tos_time(), 1, 100 * MS), WD_OFF);
	CHECK_EQ(watchdog_soft_check(bad, tos_time(), 10 * MS, &stuck), WD_OFF);
	CHECK_EQ(stuck, 12345);
	watchdog_withdraw(bad);
	watchdog_note_nmi(bad);
	watchdog_touch_cpu(bad);
	watchdog_soft_touch(bad, tos_time());
	watchdog_note_soft_lockup(bad);
	tos_cpu = bad;
	touch_nmi_watchdog();
	touch_softlockup_watchdog();
	tos_cpu = 0;
	memset(&s, 0xa5, sizeof(s));
	watchdog_get_stats(bad, &s);
	CHECK_EQ(s.checks, 0);
	CHECK_EQ(s.soft_touch_ns, 0);
	CHECK(!s.monitored);
	/* A report for it still says what it can, and counts nothing. */
	watchdog_hardlockup_report(bad, NULL, NULL);
	CHECK(tos_log_has("hard LOCKUP on cpu 256"));
	CHECK(tos_log_has("cpu 256 made no progress for 0.000 s (threshold 1 s, source ?)"));
	CHECK_EQ(watchdog_total_hard_lockups(), 0);
	CHECK_EQ(watchdog_total_soft_lockups(), 0);
}

/* A clock that goes back (a CPU whose TSC was reset) proves nothing: start over. */
static void clock_going_back_takes_a_fresh_sample(void)
{
	setup(1);
	watchdog_check(1, tos_time(), 4, 100 * MS);
	CHECK_EQ(frozen_checks(1, 9, 100 * MS, 4), WD_STALE);
	CHECK_EQ(wstats(1).stale_ns, 900 * MS);
	tos_set_time(500 * MS);
	CHECK_EQ(watchdog_check(1, tos_time(), 4, 100 * MS), WD_FIRST);
	CHECK_EQ(wstats(1).stale_ns, 0);
	/* A whole threshold is needed again from the new sample. */
	CHECK_EQ(frozen_checks(1, 9, 100 * MS, 4), WD_STALE);
	CHECK_EQ(frozen_checks(1, 1, 100 * MS, 4), WD_LOCKUP);
}

/* A source that gives no period cannot tell a late check: every gap counts in full. */
static void zero_period_counts_every_gap_in_full(void)
{
	setup(2);
	watchdog_check(2, tos_time(), 1, 0);
	tos_advance(1500 * MS);
	CHECK_EQ(watchdog_check(2, tos_time(), 1, 0), WD_STALE);
	tos_advance(1 * S);
	CHECK_EQ(watchdog_check(2, tos_time(), 1, 0), WD_LOCKUP);
	CHECK_EQ(wstats(2).late, 0);
	CHECK_EQ(wstats(2).stale_ns, 2500 * MS);
}

/* A touch or withdraw from before a restart is forgotten with the rest. */
static void restart_drops_a_pending_touch_and_withdraw(void)
{
	setup(1);
	watchdog_check(3, tos_time(), 1, 100 * MS);
	watchdog_touch_cpu(3);
	watchdog_withdraw(3);
	watchdog_cpu_monitor(3, true);
	CHECK_EQ(frozen_checks(3, 1, 100 * MS, 1), WD_FIRST);
	CHECK_EQ(frozen_checks(3, 1, 100 * MS, 1), WD_STALE);
	CHECK_EQ(wstats(3).touched, 0);
	CHECK_EQ(wstats(3).withdrawn, 1);	/* asked for, though it came to nothing */
}

/* A touch seen by a late check: counted both ways, and the evidence is one period. */
static void late_and_touched_check_keeps_one_period(void)
{
	setup(1);
	watchdog_check(0, tos_time(), 1, 100 * MS);
	frozen_checks(0, 5, 100 * MS, 1);
	watchdog_touch_cpu(0);
	tos_advance(10 * S);
	CHECK_EQ(watchdog_check(0, tos_time(), 1, 100 * MS), WD_TOUCHED);
	CHECK_EQ(wstats(0).stale_ns, 100 * MS);
	CHECK_EQ(wstats(0).late, 1);
	CHECK_EQ(wstats(0).touched, 1);
}

/* Two contexts checking one CPU at once: one gets WD_BUSY and leaves no trace. */
struct racer {
	unsigned long done, busy;
};
static _Atomic bool race_over;

static void *check_racer(void *arg)
{
	struct racer *r = arg;

	while (!atomic_load(&race_over)) {
		enum watchdog_verdict v = watchdog_check(1, tos_time(), r->done & 1, 100 * MS);

		if (v == WD_BUSY)
			r->busy++;
		else
			r->done++;
		if (r->busy && r->done > 1000)
			atomic_store(&race_over, true);
	}
	return NULL;
}

static void concurrent_checks_of_one_cpu_one_is_busy(void)
{
	struct racer a = { 0, 0 }, b = { 0, 0 };
	pthread_t ta, tb;

	setup(1);
	CHECK_EQ(pthread_create(&ta, NULL, check_racer, &a), 0);
	CHECK_EQ(pthread_create(&tb, NULL, check_racer, &b), 0);
	/* Bounded: the race is given 10 s of real time to happen. */
	for (unsigned i = 0; i < 1000 && !atomic_load(&race_over); i++)
		usleep(10000);
	atomic_store(&race_over, true);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	printf("# %lu checks, %lu found the CPU busy\n", a.done + b.done, a.busy + b.busy);
	CHECK(a.busy + b.busy > 0);
	/* Only checks that ran are counted, and the slot is free again. */
	CHECK_EQ(wstats(1).checks, a.done + b.done);
	CHECK(watchdog_check(1, tos_time(), 7, 100 * MS) != WD_BUSY);
}

/* --- configuration: threshold, on/off, per-CPU monitoring, policy -------------------- */

static void stopped_detector_checks_nothing_and_restarts_without_a_false_report(void)
{
	uint64_t stuck;

	setup(1);
	watchdog_check(1, tos_time(), 1, 100 * MS);
	watchdog_soft_touch(1, tos_time());
	watchdog_soft_check(1, tos_time(), 10 * MS, &stuck);
	CHECK_EQ(frozen_checks(1, 9, 100 * MS, 1), WD_STALE);
	watchdog_set_enabled(false, false);
	CHECK(!watchdog_hard_enabled() && !watchdog_soft_enabled());
	CHECK_EQ(frozen_checks(1, 50, 100 * MS, 1), WD_OFF);
	CHECK_EQ(watchdog_soft_check(1, tos_time(), 10 * MS, &stuck), WD_OFF);
	CHECK_EQ(wstats(1).checks, 10);
	/* Back on 5 s later: the gap is a late check, one period of evidence. */
	watchdog_set_enabled(true, true);
	CHECK(watchdog_hard_enabled() && watchdog_soft_enabled());
	tos_advance(5 * S);
	CHECK_EQ(watchdog_check(1, tos_time(), 1, 100 * MS), WD_LOCKUP);
	CHECK_EQ(wstats(1).stale_ns, 1 * S);
	CHECK_EQ(wstats(1).late, 1);
	/*
	 * The soft clock: its last tick was forgotten while off, so this tick
	 * is not "late" and the thread, silent all along, is charged.
	 */
	watchdog_soft_touch(1, tos_time() - 1500 * MS);
	CHECK_EQ(watchdog_soft_check(1, tos_time(), 10 * MS, &stuck), WD_OK);
	CHECK_EQ(stuck, 1500 * MS);
	CHECK_EQ(wstats(1).soft_late, 0);
}

static void hard_and_soft_detectors_switch_separately(void)
{
	uint64_t stuck;

	setup(1);
	watchdog_set_enabled(false, true);
	CHECK_EQ(watchdog_check(2, tos_time(), 1, 100 * MS), WD_OFF);
	CHECK_EQ(watchdog_soft_check(2, tos_time(), 10 * MS, &stuck), WD_FIRST);
	watchdog_set_enabled(true, false);
	CHECK_EQ(watchdog_check(2, tos_time(), 1, 100 * MS), WD_FIRST);
	CHECK_EQ(watchdog_soft_check(2, tos_time(), 10 * MS, &stuck), WD_OFF);
}

/* Only the monitored CPUs (the kernel's watchdog_cpumask) are checked. */
static void only_monitored_cpus_are_checked(void)
{
	uint64_t stuck;

	setup(1);
	watchdog_cpu_monitor(0, false);
	watchdog_cpu_monitor(2, false);
	for (unsigned c = 0; c < 4; c++) {
		bool mon = c == 1 || c == 3;

		CHECK_EQ(watchdog_cpu_monitored(c), mon);
		CHECK_EQ(wstats(c).monitored, mon);
		CHECK_EQ(watchdog_check(c, tos_time(), 1, 100 * MS), mon ? WD_FIRST : WD_OFF);
		CHECK_EQ(watchdog_soft_check(c, tos_time(), 10 * MS, &stuck), mon ? WD_FIRST : WD_OFF);
		CHECK_EQ(wstats(c).checks, mon);
	}
	/* Monitoring a CPU again starts both clocks afresh. */
	watchdog_soft_touch(2, 5 * S);
	watchdog_cpu_monitor(2, true);
	CHECK_EQ(wstats(2).soft_touch_ns, 0);
	tos_advance(100 * MS);
	CHECK_EQ(watchdog_check(2, tos_time(), 1, 100 * MS), WD_FIRST);
	CHECK_EQ(watchdog_soft_check(2, tos_time(), 10 * MS, &stuck), WD_FIRST);
	CHECK_EQ(wstats(2).soft_touch_ns, tos_time());
}

static void threshold_raised_at_run_time_delays_the_report(void)
{
	uint64_t stuck;

	setup(1);
	watchdog_check(1, tos_time(), 1, 100 * MS);
	CHECK_EQ(frozen_checks(1, 9, 100 * MS, 1), WD_STALE);
	watchdog_set_thresh(5);
	CHECK_EQ(watchdog_thresh_s(), 5);
	CHECK_EQ(frozen_checks(1, 40, 100 * MS, 1), WD_STALE);
	CHECK_EQ(frozen_checks(1, 1, 100 * MS, 1), WD_LOCKUP);
	/* After the report, a higher threshold does not make it report again. */
	watchdog_set_thresh(10);
	CHECK_EQ(frozen_checks(1, 100, 100 * MS, 1), WD_STILL_LOCKED);
	/* The soft detector reads it at its next tick too: 2 x 10 s now, then 2 x 9 s. */
	watchdog_soft_check(2, tos_time(), 10 * MS, &stuck);
	CHECK_EQ(soft_ticks(2, 1900, 10 * MS, &stuck), WD_OK);
	watchdog_set_thresh(9);
	CHECK_EQ(soft_ticks(2, 1, 10 * MS, &stuck), WD_LOCKUP);
	CHECK_EQ(stuck, 19010 * MS);
}

/* The largest threshold the API takes: no overflow, no report. */
static void largest_threshold_does_not_overflow(void)
{
	uint64_t stuck = 0;

	setup(UINT32_MAX);
	CHECK_EQ(watchdog_thresh_ns(), (uint64_t)UINT32_MAX * S);
	CHECK(watchdog_hard_enabled());
	watchdog_check(1, tos_time(), 1, 0);
	watchdog_soft_check(1, tos_time(), 0, &stuck);
	tos_advance(1000000 * S);
	CHECK_EQ(watchdog_check(1, tos_time(), 1, 0), WD_STALE);
	CHECK_EQ(watchdog_soft_check(1, tos_time(), 0, &stuck), WD_OK);
	CHECK_EQ(stuck, 1000000 * S);
}

static void policies_are_read_back_as_set(void)
{
	for (unsigned bits = 0; bits < 8; bits++) {
		watchdog_set_policy(bits & 1, bits & 2, bits & 4);
		CHECK_EQ(watchdog_hard_panic(), !!(bits & 1));
		CHECK_EQ(watchdog_soft_panic(), !!(bits & 2));
		CHECK_EQ(watchdog_all_cpu_backtrace(), !!(bits & 4));
	}
}

/* The watchdog thread touched from another CPU just now (its time ahead of this tick). */
static void soft_touch_ahead_of_the_tick_is_progress_and_ends_the_episode(void)
{
	uint64_t stuck = 0;

	setup(1);
	watchdog_soft_check(1, tos_time(), 10 * MS, &stuck);
	watchdog_soft_touch(1, tos_time());
	while (watchdog_soft_check(1, tos_time(), 10 * MS, &stuck) != WD_LOCKUP && stuck < 5 * S)
		tos_advance(10 * MS);
	CHECK_EQ(stuck, 2010 * MS);
	watchdog_soft_touch(1, tos_time() + 2 * MS);
	CHECK_EQ(watchdog_soft_check(1, tos_time(), 10 * MS, NULL), WD_OK);
	/* A new episode is reported again, not taken for the old one. */
	CHECK_EQ(soft_ticks(1, 200, 10 * MS, &stuck), WD_OK);
	CHECK_EQ(soft_ticks(1, 1, 10 * MS, &stuck), WD_LOCKUP);
	CHECK_EQ(stuck, 2008 * MS);
}

/*
 * The late-tick rule moves the thread's clock forward by the stall, but never
 * past now: here another CPU touched this one during its stall.
 */
static void soft_late_tick_never_moves_the_thread_into_the_future(void)
{
	uint64_t stuck = 99;

	setup(1);
	watchdog_soft_check(3, tos_time(), 10 * MS, &stuck);
	CHECK_EQ(soft_ticks(3, 1, 10 * MS, &stuck), WD_OK);
	tos_advance(25 * MS);
	watchdog_touch_cpu(3);
	tos_advance(30 * S);
	CHECK_EQ(watchdog_soft_check(3, tos_time(), 10 * MS, &stuck), WD_OK);
	CHECK_EQ(stuck, 0);
	CHECK_EQ(wstats(3).soft_touch_ns, tos_time());
	CHECK_EQ(wstats(3).soft_late, 1);
}

/* Without a tick period the late-tick rule is off: the stall is charged. */
static void soft_check_without_tick_period_charges_every_gap(void)
{
	uint64_t stuck = 0;

	setup(1);
	watchdog_soft_check(0, tos_time(), 0, &stuck);
	watchdog_soft_touch(0, tos_time());
	tos_advance(10 * MS);
	CHECK_EQ(watchdog_soft_check(0, tos_time(), 0, &stuck), WD_OK);
	tos_advance(30 * S);
	CHECK_EQ(watchdog_soft_check(0, tos_time(), 0, &stuck), WD_LOCKUP);
	CHECK_EQ(stuck, 30010 * MS);
	CHECK_EQ(wstats(0).soft_late, 0);
}

static void soft_lockup_note_counts_and_stamps_the_time(void)
{
	setup(1);
	tos_set_time(42 * S);
	watchdog_note_soft_lockup(2);
	watchdog_note_soft_lockup(2);
	watchdog_note_soft_lockup(3);
	CHECK_EQ(wstats(2).soft_lockups, 2);
	CHECK_EQ(wstats(2).last_lockup_ns, 42 * S);
	CHECK_EQ(watchdog_total_soft_lockups(), 3);
	CHECK_EQ(watchdog_total_hard_lockups(), 0);
}

/* --- reports ----------------------------------------------------------------- */

static unsigned shown_cpu = 99, shown_calls;
static void show_regs(unsigned cpu, const struct nmi_frame *f, int level)
{
	(void)f;
	shown_cpu = cpu;
	shown_calls++;
	nk_log(level, "REGS-OF-CPU-%u", cpu);
}
static const struct watchdog_ops test_ops = { .show_regs = show_regs };

static int report_in_nmi(unsigned type, struct nmi_frame *f)
{
	(void)type;
	watchdog_hardlockup_report(tos_cpu, "test", f);
	return 1;
}

static void hard_report_names_cpu_shows_regs_and_counts(void)
{
	setup(1);
	watchdog_set_ops(&test_ops);
	CHECK_EQ(nmi_register(NMI_LOCAL, "report", report_in_nmi, 0), NMI_OK);
	tos_nmi(2, 0x1234);
	CHECK(tos_log_has("NMI watchdog: Watchdog detected hard LOCKUP on cpu 2"));
	CHECK(tos_log_has("REGS-OF-CPU-2"));
	CHECK_EQ(shown_cpu, 2);
	CHECK_EQ(wstats(2).hard_lockups, 1);
	CHECK_EQ(watchdog_total_hard_lockups(), 1);
	CHECK(tos_log_has("end hard LOCKUP on cpu 2"));
}

static void hard_report_panics_with_the_policy(void)
{
	setup(1);
	watchdog_set_ops(&test_ops);
	watchdog_set_policy(true, false, false);
	CHECK_EQ(nmi_register(NMI_LOCAL, "report", report_in_nmi, 0), NMI_OK);
	CHECK(TOS_PANICS(tos_nmi(1, 0x1234)));
	CHECK(strcmp(tos_panic_msg, "Hard LOCKUP") == 0);
	CHECK(!tos_log_has("end hard LOCKUP"));
}

/* The report states the evidence the checks gathered, and needs no show_regs. */
static void hard_report_states_the_evidence_without_ops(void)
{
	static const struct watchdog_ops no_show = { .show_regs = NULL };

	setup(1);
	watchdog_check(3, tos_time(), 1, 300 * MS);
	CHECK_EQ(frozen_checks(3, 4, 300 * MS, 1), WD_LOCKUP);
	tos_cpu = 3;
	watchdog_hardlockup_report(3, "buddy", NULL);
	CHECK(tos_log_has("cpu 3 made no progress for 1.200 s (threshold 1 s, source buddy)"));
	CHECK_EQ(wstats(3).last_lockup_ns, tos_time());
	watchdog_set_ops(&no_show);
	watchdog_hardlockup_report(3, "buddy", NULL);
	CHECK_EQ(wstats(3).hard_lockups, 2);
	CHECK_EQ(tos_log_count("end hard LOCKUP on cpu 3"), 2);
}

static void counters_reset_but_evidence_kept(void)
{
	setup(1);
	watchdog_note_nmi(1);
	watchdog_check(1, tos_time(), 1, 100 * MS);
	CHECK_EQ(frozen_checks(1, 10, 100 * MS, 1), WD_LOCKUP);
	watchdog_note_soft_lockup(1);
	watchdog_withdraw(2);
	CHECK_EQ(wstats(1).nmis, 1);
	watchdog_reset_stats();
	struct watchdog_cpu_stats s = wstats(1);
	CHECK_EQ(s.checks, 0);
	CHECK_EQ(s.nmis, 0);
	CHECK_EQ(s.soft_lockups, 0);
	CHECK_EQ(s.max_stale_ns, 0);
	CHECK_EQ(wstats(2).withdrawn, 0);
	CHECK_EQ(s.stale_ns, 1 * S);
	CHECK(s.monitored);
	/* The lockup is still the one already reported. */
	CHECK_EQ(frozen_checks(1, 1, 100 * MS, 1), WD_STILL_LOCKED);
}

/* Where `cpu`'s row starts in the captured table, or NULL. */
static const char *row_of(unsigned cpu)
{
	char head[8];

	snprintf(head, sizeof(head), "\n%3u ", cpu);
	return strstr(cap_text(), head);
}

/* The shell's table: a row per CPU that is watched, was checked, or is online. */
static void stats_table_lists_watched_checked_and_online_cpus(void)
{
	uint64_t stuck;

	setup(1);
	watchdog_check(1, tos_time(), 77, 100 * MS);
	CHECK_EQ(frozen_checks(1, 10, 100 * MS, 77), WD_LOCKUP);
	CHECK_EQ(frozen_checks(1, 2, 100 * MS, 77), WD_STILL_LOCKED);
	watchdog_soft_check(1, tos_time(), 10 * MS, &stuck);
	tos_advance(2500 * MS);
	watchdog_cpu_monitor(2, false);		/* online, not watched: listed */
	watchdog_cpu_monitor(3, false);
	tos_set_online(3, false);		/* offline, never checked: not listed */
	watchdog_soft_touch(0, tos_time() + S);	/* a touch ahead of now: 0 s ago */
	cap_reset();
	watchdog_print_stats(cap_sink, NULL);
	CHECK(strncmp(cap_text(), "CPU mon   heartbeat     checks", 30) == 0);
	CHECK(row_of(0) && row_of(1) && row_of(2));
	CHECK(!row_of(3));
	CHECK(row_of(1) && strncmp(row_of(1), "\n  1 yes          77         13 ", 32) == 0);
	CHECK(row_of(2) && strncmp(row_of(2), "\n  2 no ", 8) == 0);
	/* CPU 1: 1.2 s of evidence, the same as the longest; thread last seen 2.5 s ago. */
	CHECK(row_of(1) && strstr(row_of(1), "1.200        1.200         2.500\n"));
	CHECK(row_of(0) && strstr(row_of(0), " 0.000\n"));
	/* Checked once, then offline and unwatched: still listed. */
	watchdog_cpu_monitor(3, true);
	watchdog_check(3, tos_time(), 1, 100 * MS);
	watchdog_cpu_monitor(3, false);
	cap_reset();
	watchdog_print_stats(cap_sink, NULL);
	CHECK(row_of(3) != NULL);
}

/* --- all-CPU backtraces ----------------------------------------------------------- */

static uint64_t captured_ip[8];
static unsigned capture_calls;
static void bt_capture(unsigned cpu, const struct nmi_frame *f)
{
	captured_ip[cpu] = f->ip;
	capture_calls++;
}
static void bt_print(unsigned cpu, int level)
{
	nk_log(level, "[BT cpu %u ip %llx]", cpu, (unsigned long long)captured_ip[cpu]);
}
static const struct nmi_backtrace_ops bt_ops = { .capture = bt_capture, .print = bt_print };

/* CPUs whose NMIs the relax hook lets through, and how much each relax costs. */
static bool deliver_to[8];
static void deliver_hook(void)
{
	tos_advance(1 * MS);
	for (unsigned c = 0; c < 4; c++)
		if (deliver_to[c])
			while (tos_deliver(c, 0x1000 + c))
				;
}

static void bt_setup(void)
{
	setup(1);
	nmi_backtrace_set_ops(&bt_ops);
	CHECK_EQ(nmi_backtrace_init(), NMI_OK);
	for (unsigned c = 0; c < 4; c++)
		deliver_to[c] = true;
	tos_relax_hook = deliver_hook;
}

static void backtrace_every_cpu_answers_and_prints_in_order(void)
{
	struct nmi_backtrace_result r;

	bt_setup();
	tos_cpu = 0;
	CHECK_EQ(nmi_backtrace(NULL, 0, 1 * S, &r), NMI_OK);
	CHECK_EQ(r.asked, 4);
	CHECK_EQ(r.answered, 4);
	for (unsigned c = 0; c < 4; c++) {
		CHECK_EQ(r.status[c], NMI_BT_ANSWERED);
		CHECK_EQ(captured_ip[c], 0x1000 + c);
	}
	const char *log = tos_log_text();
	const char *p0 = strstr(log, "[BT cpu 0"), *p1 = strstr(log, "[BT cpu 1");
	const char *p2 = strstr(log, "[BT cpu 2"), *p3 = strstr(log, "[BT cpu 3");
	CHECK(p0 && p1 && p2 && p3 && p0 < p1 && p1 < p2 && p2 < p3);
	CHECK(tos_log_has("4 of 4 CPUs answered"));
	/* Nothing was left over to look unknown. */
	for (unsigned c = 0; c < 4; c++) {
		struct nmi_cpu_stats s;
		nmi_get_cpu_stats(c, &s);
		CHECK_EQ(s.unknown, 0);
	}
}

static void backtrace_leaves_offline_cpus_and_subset_alone(void)
{
	struct nmi_backtrace_result r;
	uint64_t set[NMIKIT_MAX_CPUS / 64] = { 0 };

	bt_setup();
	tos_set_online(2, false);
	set[0] = (1u << 1) | (1u << 2) | (1u << 3);
	tos_cpu = 0;
	CHECK_EQ(nmi_backtrace(set, 0, 1 * S, &r), NMI_OK);
	CHECK_EQ(r.status[0], NMI_BT_NOT_ASKED);
	CHECK_EQ(r.status[1], NMI_BT_ANSWERED);
	CHECK_EQ(r.status[2], NMI_BT_OFFLINE);
	CHECK_EQ(r.status[3], NMI_BT_ANSWERED);
	CHECK_EQ(r.asked, 2);
	for (unsigned i = 0; i < tos_sent_count(); i++)
		CHECK(tos_sent(i)->to != 2 && tos_sent(i)->to != 0);
	CHECK(tos_log_has("NMI backtrace for cpu 2: none: offline"));
}

/* CPU 2 sits in an NMI handler (this one) while CPU 0 asks; CPU 3's NMIs get lost. */
static struct nmi_backtrace_result stuck_result;
static int stuck_err = 99;
static int stuck_handler(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	if (tos_cpu != 2 || stuck_err != 99)
		return 0;
	unsigned saved = tos_cpu;
	tos_cpu = 0;
	stuck_err = nmi_backtrace(NULL, NMI_BT_EXCLUDE_SELF, 100 * MS, &stuck_result);
	tos_cpu = saved;
	return 1;
}

static void backtrace_names_why_a_cpu_did_not_answer(void)
{
	bt_setup();
	deliver_to[3] = false;
	CHECK_EQ(nmi_register(NMI_LOCAL, "stuck", stuck_handler, 0), NMI_OK);
	tos_nmi(2, 0x2222);
	CHECK_EQ(stuck_err, NMI_ETIMEDOUT);
	CHECK_EQ(stuck_result.status[0], NMI_BT_SELF_EXCLUDED);
	CHECK_EQ(stuck_result.status[1], NMI_BT_ANSWERED);
	CHECK_EQ(stuck_result.status[2], NMI_BT_STUCK_IN_NMI);
	CHECK_EQ(stuck_result.status[3], NMI_BT_NO_NMI);
	CHECK(tos_log_has("NMI backtrace for cpu 2: none: stuck in an NMI handler"));
	CHECK(tos_log_has("NMI backtrace for cpu 3: none: no NMI arrived"));
	/* The late NMIs, when they come, are claimed quietly, never "unknown". */
	struct nmi_backtrace_stats bs;
	nmi_backtrace_get_stats(&bs);
	CHECK_EQ(bs.unanswered, 2);
	CHECK(bs.late >= 1);	/* CPU 2's latched NMI ran after its handler returned */
	tos_nmi(3, 0x3333);
	nmi_backtrace_get_stats(&bs);
	CHECK_EQ(bs.late, 2);
	for (unsigned c = 0; c < 4; c++) {
		struct nmi_cpu_stats s;
		nmi_get_cpu_stats(c, &s);
		CHECK_EQ(s.unknown, 0);
	}
}

/* A second request from another CPU while one runs is refused at once. */
static int second_err = 99;
static void second_caller_hook(void)
{
	if (second_err == 99) {
		unsigned saved = tos_cpu;
		tos_cpu = 1;
		second_err = nmi_backtrace(NULL, 0, 1 * S, NULL);
		tos_cpu = saved;
	}
	deliver_hook();
}

static void backtrace_one_caller_at_a_time(void)
{
	bt_setup();
	tos_relax_hook = second_caller_hook;
	tos_cpu = 0;
	CHECK_EQ(nmi_backtrace(NULL, 0, 1 * S, NULL), NMI_OK);
	CHECK_EQ(second_err, NMI_EBUSY);
	struct nmi_backtrace_stats bs;
	nmi_backtrace_get_stats(&bs);
	CHECK_EQ(bs.busy, 1);
	CHECK_EQ(bs.requests, 1);
	/* Free again afterwards. */
	tos_cpu = 1;
	CHECK_EQ(nmi_backtrace(NULL, NMI_BT_QUIET, 1 * S, NULL), NMI_OK);
}

/*
 * A port whose handler runs nmi_backtrace_nmi() only when the ops' ask()
 * rang its doorbell, as the testbed kernel's watchdog handler does (one
 * load for an NMI nobody asked for).  ask() notes whether an NMI had
 * already been sent to the CPU it rings: a doorbell rung after the NMI
 * could be missed by that NMI's handler.
 */
static _Atomic unsigned bell[4];
static unsigned rung_after_send, asks;
static void bell_ask(unsigned cpu)
{
	if (tos_pending_to(cpu))
		rung_after_send++;
	asks++;
	atomic_fetch_or(&bell[cpu], 1);
}
static int bell_nmi(unsigned type, struct nmi_frame *f)
{
	unsigned me = os_cpu_id();

	if (me >= 4 || !atomic_load(&bell[me]) || !atomic_exchange(&bell[me], 0))
		return NMI_DONE;
	return nmi_backtrace_nmi(type, f);
}
static const struct nmi_backtrace_ops bell_ops = {
	.capture = bt_capture, .print = bt_print, .ask = bell_ask,
};

/*
 * Broken on purpose once: with ask() called after the sends, ask() finds
 * the NMIs already pending (rung_after_send 3) and this fails.
 */
static void backtrace_rings_each_doorbell_before_its_nmi(void)
{
	struct nmi_backtrace_result r;
	struct nmi_backtrace_stats bs;

	setup(1);
	nmi_backtrace_set_ops(&bell_ops);
	CHECK_EQ(nmi_register(NMI_LOCAL, "bell", bell_nmi, 0), NMI_OK);
	for (unsigned c = 0; c < 4; c++)
		deliver_to[c] = true;
	tos_relax_hook = deliver_hook;
	tos_cpu = 0;
	CHECK_EQ(nmi_backtrace(NULL, 0, 1 * S, &r), NMI_OK);
	CHECK_EQ(r.answered, 4);
	CHECK_EQ(asks, 4);
	CHECK_EQ(rung_after_send, 0);
	for (unsigned c = 0; c < 4; c++) {
		CHECK_EQ(captured_ip[c], 0x1000 + c);
		CHECK_EQ(atomic_load(&bell[c]), 0);	/* taken, once */
	}
	/*
	 * A CPU that does not answer in time keeps its doorbell ringing; its
	 * late NMI still finds it and is claimed quietly, not left unknown.
	 */
	deliver_to[2] = false;
	CHECK_EQ(nmi_backtrace(NULL, NMI_BT_QUIET, 10 * MS, &r), NMI_ETIMEDOUT);
	CHECK_EQ(r.status[2], NMI_BT_NO_NMI);
	CHECK_EQ(atomic_load(&bell[2]), 1);
	CHECK(tos_deliver(2, 0x2222));
	CHECK_EQ(atomic_load(&bell[2]), 0);
	nmi_backtrace_get_stats(&bs);
	CHECK_EQ(bs.late, 1);
	CHECK_EQ(tos_nmi_stats(2).unknown, 0);
	CHECK_EQ(rung_after_send, 0);
}

/* A hard lockup report with the all-CPU policy backtraces the others from its NMI. */
static void hard_report_with_all_cpu_backtrace(void)
{
	bt_setup();
	watchdog_set_ops(&test_ops);
	watchdog_set_policy(false, false, true);
	CHECK_EQ(nmi_register(NMI_LOCAL, "report", report_in_nmi, 0), NMI_OK);
	tos_nmi(1, 0x1111);
	CHECK(tos_log_has("Watchdog detected hard LOCKUP on cpu 1"));
	CHECK(tos_log_has("[BT cpu 0"));
	CHECK(tos_log_has("[BT cpu 2"));
	CHECK(tos_log_has("[BT cpu 3"));
	CHECK(!tos_log_has("[BT cpu 1"));
	CHECK(tos_log_has("3 of 3 CPUs answered"));
}

/* With the all-CPU policy, a backtrace that cannot be had is named, and the report goes on. */
static void hard_report_says_why_there_is_no_all_cpu_backtrace(void)
{
	bt_setup();
	for (unsigned c = 0; c < 4; c++)
		deliver_to[c] = false;
	watchdog_set_ops(&test_ops);
	watchdog_set_policy(false, false, true);
	CHECK_EQ(nmi_register(NMI_LOCAL, "report", report_in_nmi, 0), NMI_OK);
	tos_nmi(2, 0x2222);
	char want[128];
	snprintf(want, sizeof(want), "NMI watchdog: no all-CPU backtrace: %s",
		 nmi_strerror(NMI_ETIMEDOUT));
	CHECK(tos_log_has(want));
	CHECK(tos_log_has("end hard LOCKUP on cpu 2"));
	CHECK_EQ(wstats(2).hard_lockups, 1);
}

const struct tap_test watchdog_tests[] = {
	TAP_TEST(first_check_only_takes_a_sample),
	TAP_TEST(lockup_reported_once_after_threshold_then_recovers),
	TAP_TEST(lockup_reported_within_threshold_plus_one_period),
	TAP_TEST(late_check_is_credited_one_period_only),
	TAP_TEST(repeated_late_checks_never_condemn_faster_than_periods),
	TAP_TEST(touch_forgets_the_evidence),
	TAP_TEST(withdraw_and_restart_forget_the_evidence),
	TAP_TEST(off_when_disabled_unmonitored_or_zero_threshold),
	TAP_TEST(threshold_change_applies_at_next_check),
	TAP_TEST(soft_lockup_after_twice_the_threshold_once_per_episode),
	TAP_TEST(soft_check_does_not_charge_a_stalled_cpu),
	TAP_TEST(verdict_names_are_distinct_and_unknown_is_a_question_mark),
	TAP_TEST(cpu_beyond_the_table_is_ignored_everywhere),
	TAP_TEST(clock_going_back_takes_a_fresh_sample),
	TAP_TEST(zero_period_counts_every_gap_in_full),
	TAP_TEST(restart_drops_a_pending_touch_and_withdraw),
	TAP_TEST(late_and_touched_check_keeps_one_period),
	TAP_TEST(concurrent_checks_of_one_cpu_one_is_busy),
	TAP_TEST(stopped_detector_checks_nothing_and_restarts_without_a_false_report),
	TAP_TEST(hard_and_soft_detectors_switch_separately),
	TAP_TEST(only_monitored_cpus_are_checked),
	TAP_TEST(threshold_raised_at_run_time_delays_the_report),
	TAP_TEST(largest_threshold_does_not_overflow),
	TAP_TEST(policies_are_read_back_as_set),
	TAP_TEST(soft_touch_ahead_of_the_tick_is_progress_and_ends_the_episode),
	TAP_TEST(soft_late_tick_never_moves_the_thread_into_the_future),
	TAP_TEST(soft_check_without_tick_period_charges_every_gap),
	TAP_TEST(soft_lockup_note_counts_and_stamps_the_time),
	TAP_TEST(hard_report_names_cpu_shows_regs_and_counts),
	TAP_TEST(hard_report_panics_with_the_policy),
	TAP_TEST(hard_report_states_the_evidence_without_ops),
	TAP_TEST(counters_reset_but_evidence_kept),
	TAP_TEST(stats_table_lists_watched_checked_and_online_cpus),
	TAP_TEST(backtrace_every_cpu_answers_and_prints_in_order),
	TAP_TEST(backtrace_leaves_offline_cpus_and_subset_alone),
	TAP_TEST(backtrace_names_why_a_cpu_did_not_answer),
	TAP_TEST(backtrace_one_caller_at_a_time),
	TAP_TEST(backtrace_rings_each_doorbell_before_its_nmi),
	TAP_TEST(hard_report_with_all_cpu_backtrace),
	TAP_TEST(hard_report_says_why_there_is_no_all_cpu_backtrace),
	TAP_END,
};
