/*
 * Host unit tests of core/watchdog.c (the lockup decision: evidence, the
 * late-check rule, touch, withdraw, soft lockups, the report policy) and of
 * core/nmi_backtrace.c (all-CPU backtraces: answers in CPU order, one caller
 * at a time, the reason for each CPU that does not answer, late answers).
 */
#include "tap.h"
#include "test_os.h"

#include <string.h>

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
	TAP_TEST(hard_report_names_cpu_shows_regs_and_counts),
	TAP_TEST(hard_report_panics_with_the_policy),
	TAP_TEST(backtrace_every_cpu_answers_and_prints_in_order),
	TAP_TEST(backtrace_leaves_offline_cpus_and_subset_alone),
	TAP_TEST(backtrace_names_why_a_cpu_did_not_answer),
	TAP_TEST(backtrace_one_caller_at_a_time),
	TAP_TEST(hard_report_with_all_cpu_backtrace),
	TAP_END,
};
