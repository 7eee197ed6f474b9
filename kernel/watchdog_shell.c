/*
 * watchdog_shell.c: the `watchdog` command (source, threshold, per-CPU
 * heartbeats, checks and lockups; change the threshold, the source, stop and
 * start at run time) and `nmi backtrace [CPUS]`, which the `nmi` command
 * passes on to nmi_backtrace_cmd().
 */
#include <arch/percpu.h>
#include <kernel/shell.h>
#include <kernel/watchdog.h>
#include <nmikit/nmi_backtrace.h>
#include <nmikit/param.h>

static void show_status(void)
{
	const struct wd_source *s = watchdog_source();
	struct nmi_backtrace_stats bt;

	shell_printf("watchdog: %s; hard lockup source %s, threshold %u s (soft: %u s), "
		     "hard %s, soft %s\n",
		     watchdog_running() ? "running" : "stopped", watchdog_source_name(),
		     watchdog_thresh_s(), WATCHDOG_SOFT_FACTOR * watchdog_thresh_s(),
		     watchdog_hard_enabled() ? "on" : "off", watchdog_soft_enabled() ? "on" : "off");
	if (s && watchdog_running())
		shell_printf("watchdog: each monitored CPU checked every %llu ms; %u CPUs monitored; "
			     "on a hard lockup: %s%s; soft lockup threads: %u\n",
			     (unsigned long long)(s->period_ns() / 1000000), wd_monitored_count(),
			     watchdog_all_cpu_backtrace() ? "all-CPU backtrace, then " : "",
			     watchdog_hard_panic() ? "panic" : "carry on", softlockup_threads());
	shell_printf("watchdog: lockups reported: %llu hard, %llu soft\n",
		     (unsigned long long)watchdog_total_hard_lockups(),
		     (unsigned long long)watchdog_total_soft_lockups());
	watchdog_print_stats(shell_write_fn, 0);
	if (s && s->show)
		s->show();
	nmi_backtrace_get_stats(&bt);
	shell_printf("nmi backtrace: %llu requests, %llu refused (busy), %llu answers, "
		     "%llu unanswered, %llu late\n",
		     (unsigned long long)bt.requests, (unsigned long long)bt.busy,
		     (unsigned long long)bt.answers, (unsigned long long)bt.unanswered,
		     (unsigned long long)bt.late);
}

static int cmd_watchdog(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "stats";
	uint64_t n;

	if (!__builtin_strcmp(sub, "stats") && argc <= 2) {
		show_status();
		return 0;
	}
	if (!__builtin_strcmp(sub, "thresh") && argc == 3) {
		if (!shell_parse_u64(argv[2], &n) || n > 60) {
			shell_printf("watchdog: threshold is 0..60 seconds\n");
			return 1;
		}
		return watchdog_set_threshold((unsigned)n) ? 1 : 0;
	}
	if (!__builtin_strcmp(sub, "stop") && argc == 2) {
		watchdog_stop();
		return 0;
	}
	if (!__builtin_strcmp(sub, "start") && argc == 2)
		return watchdog_start() ? 1 : 0;
	if (!__builtin_strcmp(sub, "source") && argc == 3)
		return watchdog_use_source(argv[2]) ? 1 : 0;
	if (!__builtin_strcmp(sub, "reset") && argc == 2) {
		watchdog_reset_stats();
		return 0;
	}
	return SHELL_USAGE;
}
SHELL_CMD(watchdog, "[stats | thresh SECONDS | stop | start | source auto|ioapic|hpet|buddy|perf | reset]",
	  "lockup detectors: source, threshold, per-CPU heartbeats, checks and lockups", cmd_watchdog);

/* `nmi backtrace [CPUS]`: argv[0] is "nmi", argv[1] "backtrace". */
int nmi_backtrace_cmd(int argc, char **argv)
{
	uint64_t set[MAX_CPUS / 64];
	struct nmi_backtrace_result res;
	int err;

	if (argc > 3) {
		shell_printf("usage: nmi backtrace [CPUS]   (e.g. 0-3,5; default all)\n");
		return -1;
	}
	if (argc == 3 && nk_cpulist_parse(argv[2], set, MAX_CPUS) != 0) {
		shell_printf("nmi backtrace: bad CPU list '%s'\n", argv[2]);
		return -1;
	}
	err = nmi_backtrace(argc == 3 ? set : NULL, 0, 1000000000ull, &res);
	if (err == NMI_EBUSY) {
		shell_printf("nmi backtrace: another CPU's request is running\n");
		return -1;
	}
	shell_printf("nmi backtrace: %u of %u CPUs answered in %llu us\n", res.answered, res.asked,
		     (unsigned long long)(res.elapsed_ns / 1000));
	return err ? 1 : 0;
}
