/*
 * test_log.c: host tests of the log ring (core/log.c, built with
 * NK_LOG_TEST_HOOKS).  Threads stand in for CPUs and SIGUSR1 for an NMI: the
 * signal handler calls nk_log() on whatever thread it lands on, possibly in
 * the middle of nk_log() or of printing.  The console is a capture buffer
 * whose writer checks that it is never entered twice at once.
 *
 * Built twice: with the normal ring (behaviour, ordering, panic, a throttled
 * storm that must lose nothing) and with NK_LOG_RECORDS=16 (wrapping, lapped
 * writers, and an unthrottled storm where every record must be printed
 * exactly once or counted as lost).  TAP on stdout.
 */
#define _GNU_SOURCE
#include <nmikit/log.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

#include "lib_os.h"
#include "tap.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One source, two builds: each runs the tests that suit its ring size. */
#pragma GCC diagnostic ignored "-Wunused-function"

/* --- the host side: lib_os.h, and the log's test hook ------------------------- */

static void (*_Atomic log_hook)(enum nk_log_hook point);

void nk_log_test_hook(enum nk_log_hook point)
{
	void (*hook)(enum nk_log_hook) = atomic_load(&log_hook);

	if (hook)
		hook(point);
}

/* Print what is pending, then start an empty capture. */
static void fresh_capture(void)
{
	nk_log_flush();
	cap_reset();
}

/* The stand-in NMI: a signal whose handler logs what `nmi_text` says. */
static const char *_Atomic nmi_text;
static _Atomic int nmi_count;

static void nmi_handler(int sig)
{
	const char *t = atomic_load(&nmi_text);

	(void)sig;
	atomic_fetch_add(&nmi_count, 1);
	if (t)
		nk_log(NK_LOG_INFO, "%s", t);
}

static void install_nmi(void (*fn)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Wait (bounded) for *flag to become nonzero. */
static bool wait_flag(_Atomic int *flag, unsigned ms)
{
	for (unsigned i = 0; i < ms * 10 && !atomic_load(flag); i++) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 100000 };

		nanosleep(&ts, NULL);
	}
	return atomic_load(flag) != 0;
}

/* ============ behaviour, ordering, panic (normal ring) ========================== */

static void log_record_keeps_seq_level_cpu_time_and_text(void)
{
	struct nk_log_record rec;
	uint64_t seq;

	fresh_capture();
	los_set_time(1234567890u);
	los_cpu = 3;
	seq = nk_log_next_seq();
	pr_warn("hello %d\n", 42);
	los_cpu = 0;
	los_set_time(0);

	CHECK(nk_log_read(&seq, &rec));
	CHECK(rec.level == NK_LOG_WARNING);
	CHECK(rec.cpu == 3);
	CHECK(rec.ts_ns == 1234567890u);
	CHECK(strcmp(rec.text, "hello 42") == 0);	/* final newline dropped */
	CHECK(rec.len == 8);
	CHECK(!rec.truncated);
	CHECK(seq == rec.seq + 1);
}

static void log_console_line_has_linux_style_time_prefix(void)
{
	fresh_capture();
	los_set_time(1234567890u);
	pr_info("boot ok");
	los_set_time(0);
	CHECK(strcmp(cap_text(), "[    1.234567] boot ok\n") == 0);
}

static void log_level_threshold_filters_console_but_ring_keeps_all(void)
{
	struct nk_log_record rec;
	uint64_t seq;
	unsigned old = nk_log_console_level();

	fresh_capture();
	CHECK(nk_param_set("loglevel", "4") == NK_PARAM_OK);
	seq = nk_log_next_seq();
	pr_info("quiet info");
	pr_err("loud error");
	pr_debug("quiet debug");
	nk_log_set_console_level(old);

	CHECK(cap_find("quiet") < 0);
	CHECK(cap_find("loud error") >= 0);
	CHECK(nk_log_read(&seq, &rec) && strcmp(rec.text, "quiet info") == 0);
	CHECK(nk_log_read(&seq, &rec) && strcmp(rec.text, "loud error") == 0);
	CHECK(nk_log_read(&seq, &rec) && strcmp(rec.text, "quiet debug") == 0);
}

static void log_print_level_reaches_console_verbatim_whatever_the_threshold(void)
{
	unsigned old = nk_log_console_level();

	fresh_capture();
	nk_log_set_console_level(0);
	nk_log(NK_LOG_PRINT, "KTAP version 1\n");
	nk_log(NK_LOG_PRINT, "partial ");
	nk_log(NK_LOG_PRINT, "line\n");
	pr_emerg("not even emerg");
	nk_log_set_console_level(old);
	CHECK(strcmp(cap_text(), "KTAP version 1\npartial line\n") == 0);
}

static void log_console_disabled_prints_nothing_but_records(void)
{
	struct nk_log_record rec;
	uint64_t seq = nk_log_next_seq();

	fresh_capture();
	nk_log_set_console_enabled(false);
	pr_err("hidden");
	nk_log_set_console_enabled(true);
	CHECK(cap_length() == 0);
	CHECK(nk_log_read(&seq, &rec) && strcmp(rec.text, "hidden") == 0);
	pr_info("shown");
	CHECK(cap_find("shown") >= 0 && cap_find("hidden") < 0);
}

static void log_long_message_is_cut_and_flagged(void)
{
	struct nk_log_record rec;
	struct nk_log_stats before, after;
	char big[NK_LOG_TEXT_MAX * 2];
	uint64_t seq = nk_log_next_seq();

	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	nk_log_get_stats(&before);
	fresh_capture();
	pr_info("%s", big);
	nk_log_get_stats(&after);
	CHECK(nk_log_read(&seq, &rec));
	CHECK(rec.len == NK_LOG_TEXT_MAX && rec.truncated);
	CHECK(strlen(rec.text) == NK_LOG_TEXT_MAX);
	CHECK(after.truncated == before.truncated + 1);
	CHECK(cap_count("qqqqqqqq") > 0);
}

static void log_multiline_record_gets_the_prefix_on_every_line(void)
{
	char buf[256];
	struct nk_log_record rec;
	uint64_t seq = nk_log_next_seq();

	fresh_capture();
	los_set_time(2000001000u);
	pr_info("first\nsecond\n");
	los_set_time(0);
	CHECK(strcmp(cap_text(), "[    2.000001] first\n[    2.000001] second\n") == 0);
	CHECK(nk_log_read(&seq, &rec));
	nk_log_format(&rec, NK_LOG_FMT_LEVEL | NK_LOG_FMT_CPU, buf, sizeof(buf));
	CHECK(strcmp(buf, "<6>[    2.000001] CPU0: first\n<6>[    2.000001] CPU0: second\n") == 0);
}

static void log_cpu_parameter_adds_the_cpu_to_console_lines(void)
{
	fresh_capture();
	CHECK(nk_param_set("log_cpu", NULL) == NK_PARAM_OK);
	los_set_time(5000000u);
	los_cpu = 7;
	pr_info("x");
	los_cpu = 0;
	los_set_time(0);
	CHECK(nk_param_set("log_cpu", "off") == NK_PARAM_OK);
	CHECK(strcmp(cap_text(), "[    0.005000] CPU7: x\n") == 0);
}

/* --- an NMI at each point of nk_log() on the same CPU --------------------------- */

static _Atomic int hook_point = -1;

static void nmi_at_point(enum nk_log_hook point)
{
	if ((int)point != atomic_load(&hook_point))
		return;
	atomic_store(&hook_point, -1);		/* once */
	raise(SIGUSR1);
}

static void nmi_in_nk_log_at(enum nk_log_hook point)
{
	long outer, inner;

	fresh_capture();
	atomic_store(&nmi_text, "from nmi");
	atomic_store(&hook_point, (int)point);
	atomic_store(&log_hook, nmi_at_point);
	pr_info("interrupted writer");
	atomic_store(&log_hook, NULL);
	atomic_store(&nmi_text, NULL);

	outer = cap_find("interrupted writer");
	inner = cap_find("from nmi");
	CHECK(outer >= 0 && inner >= 0);
	/* Both printed once; the NMI's record, reserved later, printed later. */
	CHECK(cap_count("interrupted writer") == 1 && cap_count("from nmi") == 1);
	if (point != NK_LOG_HOOK_RESERVED || outer >= 0)
		CHECK(outer < inner);
	CHECK(cap_overlaps() == 0);
}

static void log_nmi_between_reserve_and_claim_prints_both_in_sequence_order(void)
{
	nmi_in_nk_log_at(NK_LOG_HOOK_RESERVED);
}

static void log_nmi_between_fill_and_commit_prints_both_in_sequence_order(void)
{
	nmi_in_nk_log_at(NK_LOG_HOOK_FILLED);
}

static void log_nmi_after_commit_before_printing_prints_both_once(void)
{
	nmi_in_nk_log_at(NK_LOG_HOOK_COMMITTED);
}

/* --- an NMI while this CPU prints ---------------------------------------------------- */

static _Atomic int nmis_left;

static void nmi_while_printing(const char *buf, size_t len)
{
	(void)buf;
	(void)len;
	if (atomic_load(&nmis_left) > 0) {
		atomic_fetch_sub(&nmis_left, 1);
		raise(SIGUSR1);
	}
}

static void log_record_from_nmi_while_owner_printing_is_printed_after(void)
{
	fresh_capture();
	atomic_store(&nmi_text, "logged by nmi");
	atomic_store(&nmis_left, 1);
	atomic_store(&cap_hook, nmi_while_printing);
	pr_info("being printed");
	atomic_store(&cap_hook, NULL);
	atomic_store(&nmi_text, NULL);

	/* The NMI did not print (that would nest in the console)... */
	CHECK(cap_overlaps() == 0);
	/* ...its record came out after the owner's, once, when the owner went on. */
	CHECK(cap_find("being printed") >= 0);
	CHECK(cap_find("being printed") < cap_find("logged by nmi"));
	CHECK(cap_count("logged by nmi") == 1);
}

static void log_nmis_on_every_printed_line_are_all_printed_once(void)
{
	char want[32];

	fresh_capture();
	atomic_store(&nmi_text, "nested record");
	atomic_store(&nmis_left, 5);
	atomic_store(&cap_hook, nmi_while_printing);
	pr_info("start");
	atomic_store(&cap_hook, NULL);
	atomic_store(&nmi_text, NULL);
	snprintf(want, sizeof(want), "nested record");
	CHECK(cap_count(want) == 5);
	CHECK(cap_overlaps() == 0);
	CHECK(atomic_load(&nmis_left) == 0);
}

/* --- another CPU commits while the owner prints --------------------------------------- */

static _Atomic int b_may_log, b_returned;

static void owner_waits_for_other_cpu(const char *buf, size_t len)
{
	if (!memmem(buf, len, "owner record", 12))
		return;
	atomic_store(&b_may_log, 1);
	/* B must come back without printing and without waiting for us. */
	CHECK(wait_flag(&b_returned, 5000));
	CHECK(cap_find("other cpu record") < 0);
}

static void *other_cpu(void *arg)
{
	(void)arg;
	los_cpu = 1;
	wait_flag(&b_may_log, 5000);
	pr_info("other cpu record");
	atomic_store(&b_returned, 1);
	return NULL;
}

static void log_other_cpu_record_committed_during_printing_is_printed_by_owner(void)
{
	pthread_t b;

	fresh_capture();
	atomic_store(&b_may_log, 0);
	atomic_store(&b_returned, 0);
	pthread_create(&b, NULL, other_cpu, NULL);
	atomic_store(&cap_hook, owner_waits_for_other_cpu);
	pr_info("owner record");
	atomic_store(&cap_hook, NULL);
	pthread_join(b, NULL);
	CHECK(cap_find("owner record") >= 0);
	CHECK(cap_find("owner record") < cap_find("other cpu record"));
	CHECK(cap_count("other cpu record") == 1);
	CHECK(cap_overlaps() == 0);
}

/* --- reading ----------------------------------------------------------------------------- */

struct dump_ctx {
	int n;
	char text[8][32];
};

static void dump_cb(const struct nk_log_record *rec, void *arg)
{
	struct dump_ctx *d = arg;

	if (d->n < 8)
		snprintf(d->text[d->n], sizeof(d->text[0]), "%.31s", rec->text);
	d->n++;
}

static void log_dump_returns_the_last_n_records_oldest_first(void)
{
	struct dump_ctx d = { 0 };

	pr_info("dump a");
	pr_info("dump b");
	pr_info("dump c");
	CHECK(nk_log_dump(2, dump_cb, &d) == 2);
	CHECK(d.n == 2);
	CHECK(strcmp(d.text[0], "dump b") == 0 && strcmp(d.text[1], "dump c") == 0);
	CHECK(nk_log_first_seq() <= nk_log_next_seq());
}

static void reader_in_the_middle(enum nk_log_hook point)
{
	struct nk_log_record rec;
	uint64_t seq;

	if (point != NK_LOG_HOOK_FILLED || atomic_load(&hook_point) != (int)point)
		return;
	atomic_store(&hook_point, -1);
	/* Our own record is claimed but not committed: a reader passes over it. */
	seq = nk_log_next_seq() - 1;
	CHECK(!nk_log_read(&seq, &rec));
}

static void log_reader_passes_over_a_record_being_written(void)
{
	atomic_store(&hook_point, NK_LOG_HOOK_FILLED);
	atomic_store(&log_hook, reader_in_the_middle);
	pr_info("in progress");
	atomic_store(&log_hook, NULL);
	CHECK(atomic_load(&hook_point) == -1);
}

/* --- panic ----------------------------------------------------------------------------------- */
/*
 * These leave the log in panic mode with a CPU stopped for good: harmless,
 * because the harness runs every test in a process of its own.
 */

static _Atomic int stop_forever;

static void stop_this_cpu(const char *buf, size_t len)
{
	/*
	 * Only the owner stops.  The panic flush prints this record again
	 * (the owner stopped before it could count it as printed).
	 */
	if (los_cpu != 2 || !memmem(buf, len, "owner stops", 11))
		return;
	atomic_store(&b_may_log, 1);
	while (!atomic_load(&stop_forever))
		sleep_ms(1);
}

static void *stopping_owner(void *arg)
{
	(void)arg;
	los_cpu = 2;
	pr_info("owner stops here");
	return NULL;
}

static void log_panic_flush_takes_the_console_from_a_stopped_owner(void)
{
	pthread_t t;

	fresh_capture();
	atomic_store(&b_may_log, 0);
	atomic_store(&cap_hook, stop_this_cpu);
	pthread_create(&t, NULL, stopping_owner, NULL);
	CHECK(wait_flag(&b_may_log, 5000));
	pr_emerg("panic line 1");
	pr_emerg("panic line 2");
	/* The owner is stopped: nothing more reaches the console... */
	CHECK(cap_find("panic line 1") < 0);
	/* ...until the panic takes the console by force. */
	nk_log_panic_flush();
	CHECK(cap_find("panic line 1") >= 0);
	CHECK(cap_find("panic line 1") < cap_find("panic line 2"));
	/* In panic mode later records print at once. */
	pr_emerg("after panic");
	CHECK(cap_find("after panic") >= 0);
	atomic_store(&cap_hook, NULL);
	pthread_detach(t);
}

static void stop_writer_mid_record(enum nk_log_hook point)
{
	if (point != NK_LOG_HOOK_FILLED || los_cpu != 4)
		return;
	atomic_store(&b_may_log, 1);
	while (!atomic_load(&stop_forever))
		sleep_ms(1);
}

static void *stopping_writer(void *arg)
{
	(void)arg;
	los_cpu = 4;
	pr_info("half written");
	return NULL;
}

static void log_panic_flush_passes_over_a_writer_stopped_mid_record(void)
{
	pthread_t t;
	struct nk_log_stats st;

	fresh_capture();
	atomic_store(&b_may_log, 0);
	atomic_store(&log_hook, stop_writer_mid_record);
	pthread_create(&t, NULL, stopping_writer, NULL);
	CHECK(wait_flag(&b_may_log, 5000));
	pr_emerg("behind the stopped writer");
	/* Records after an unfinished one wait for it (order is kept)... */
	CHECK(cap_find("behind the stopped writer") < 0);
	nk_log_panic_flush();
	/* ...except in panic, where the stopped writer's record is passed over. */
	CHECK(cap_find("behind the stopped writer") >= 0);
	CHECK(cap_find("half written") < 0);
	CHECK(cap_find("** 1 log records lost") >= 0);
	nk_log_get_stats(&st);
	CHECK(st.console_missed >= 1);
	pthread_detach(t);
}

static void panic_nmi(int sig)
{
	(void)sig;
	pr_emerg("panic from nmi");
	nk_log_panic_flush();
	/* A panic does not return; the test only looks at what got out. */
	CHECK(cap_has("panic from nmi"));
}

static void log_panic_in_nmi_that_interrupted_the_owner_still_prints(void)
{
	fresh_capture();
	install_nmi(panic_nmi);
	atomic_store(&nmis_left, 1);
	atomic_store(&cap_hook, nmi_while_printing);
	pr_info("owner interrupted by a panicking nmi");
	atomic_store(&cap_hook, NULL);
	CHECK(cap_find("panic from nmi") >= 0);
}

/* --- the storm: threads + signals, throttled so the ring never wraps -------------------------- */

#define STORM_THREADS	4
#define STORM_RECORDS	3000		/* per thread, at least */
#define STORM_MAX	25000		/* per thread, at most */
#define STORM_SIGNALS	4000		/* go on until this many signals landed... */
#define STORM_SECONDS	3		/* ...or this long */
#define STORM_TICK_NS	100000		/* per-thread timer period */
#define STORM_WINDOW	(NK_LOG_RECORDS / 2)

static _Atomic bool storm_stop, storm_go, storm_throttle;
static _Atomic uint64_t storm_logged;
static _Atomic int storm_stalls;
static pthread_t storm_tid[STORM_THREADS];
static _Atomic uint64_t storm_signals, storm_sig_printing;
static __thread unsigned tl_sig_seq;

static void storm_nmi(int sig)
{
	(void)sig;
	if (los_cpu == 0)
		return;
	atomic_fetch_add(&storm_signals, 1);
	if (cap_writing())
		atomic_fetch_add(&storm_sig_printing, 1);
	/*
	 * The throttled storm must not wrap the ring: when the host preempts
	 * the owner thread, the writers wait, but their timers keep firing.
	 */
	if (atomic_load(&storm_throttle) &&
	    atomic_load(&storm_logged) - cap_lines() > STORM_WINDOW)
		return;
	nk_log(NK_LOG_INFO, "t%u s%u", los_cpu, ++tl_sig_seq);
	atomic_fetch_add(&storm_logged, 1);
}

static bool storm_more(unsigned n, time_t start)
{
	if (n <= STORM_RECORDS)
		return true;
	if (n > STORM_MAX || time(NULL) - start >= STORM_SECONDS)
		return false;
	return atomic_load(&storm_signals) < STORM_SIGNALS;
}

/*
 * A high-resolution timer whose signal goes to this thread: it lands at
 * whatever instruction the thread is on, or was preempted at (the other
 * source of "NMIs" is the signaller thread).
 */
static timer_t storm_tick_start(void)
{
	struct sigevent sev;
	struct itimerspec its = {
		.it_value = { .tv_sec = 0, .tv_nsec = STORM_TICK_NS },
		.it_interval = { .tv_sec = 0, .tv_nsec = STORM_TICK_NS },
	};
	timer_t t;

	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = SIGUSR1;
	sev._sigev_un._tid = gettid();	/* glibc 2.36 has no sigev_notify_thread_id */
	if (timer_create(CLOCK_MONOTONIC, &sev, &t) != 0) {
		printf("# timer_create failed; only the signaller thread sends signals\n");
		return NULL;
	}
	timer_settime(t, 0, &its, NULL);
	return t;
}

static void *storm_writer(void *arg)
{
	time_t start;
	timer_t tick;

	los_cpu = (unsigned)(uintptr_t)arg;
	while (!atomic_load(&storm_go))
		sched_yield();
	tick = storm_tick_start();
	start = time(NULL);
	for (unsigned n = 1; storm_more(n, start); n++) {
		unsigned spins = 0;

		nk_log(NK_LOG_INFO, "t%u n%u", los_cpu, n);
		atomic_fetch_add(&storm_logged, 1);
		/*
		 * Keep the backlog under half the ring.  If everything logged is
		 * committed and nothing is being printed, the backlog must drain
		 * by itself (no lost wake-up): a stall here is a failure.
		 */
		while (atomic_load(&storm_throttle) &&
		       atomic_load(&storm_logged) - cap_lines() > STORM_WINDOW) {
			if (++spins > 5000000) {
				atomic_fetch_add(&storm_stalls, 1);
				break;
			}
			sched_yield();
		}
	}
	if (tick)
		timer_delete(tick);
	return NULL;
}

static void *storm_signaller(void *arg)
{
	unsigned r = 1;

	(void)arg;
	atomic_store(&storm_go, true);
	while (!atomic_load(&storm_stop)) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 20000 };

		r = r * 1103515245u + 12345u;
		pthread_kill(storm_tid[(r >> 16) % STORM_THREADS], SIGUSR1);
		/* Let the target run into the signal before the next one merges with it. */
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/*
 * Check the capture: each record at most once, each thread's normal and
 * signal records in their own order.  Returns the number of records seen.
 */
static uint64_t storm_check(void)
{
	static unsigned last_n[STORM_THREADS + 1], last_s[STORM_THREADS + 1];
	static unsigned char seen_n[STORM_THREADS + 1][STORM_MAX + 1];
	const char *p = cap_text();
	uint64_t records = 0;

	memset(last_n, 0, sizeof(last_n));
	memset(last_s, 0, sizeof(last_s));
	memset(seen_n, 0, sizeof(seen_n));
	while ((p = strchr(p, ']'))) {
		unsigned t, v;
		char kind;

		if (sscanf(p, "] t%u %c%u", &t, &kind, &v) == 3 && t >= 1 && t <= STORM_THREADS) {
			records++;
			if (kind == 'n') {
				CHECK(v > last_n[t]);		/* order per CPU, no duplicate */
				if (v <= STORM_MAX) {
					CHECK(!seen_n[t][v]);
					seen_n[t][v] = 1;
				}
				last_n[t] = v;
			} else {
				CHECK(v > last_s[t]);
				last_s[t] = v;
			}
		}
		p++;
	}
	return records;
}

static void run_storm(bool throttle)
{
	pthread_t sig;
	struct nk_log_stats before, after;
	uint64_t seen, total;

	fresh_capture();
	nk_log_get_stats(&before);
	atomic_store(&storm_stop, false);
	atomic_store(&storm_go, false);
	atomic_store(&storm_throttle, throttle);
	atomic_store(&storm_logged, 0);
	atomic_store(&storm_stalls, 0);
	atomic_store(&storm_signals, 0);
	atomic_store(&storm_sig_printing, 0);
	install_nmi(storm_nmi);
	for (unsigned i = 0; i < STORM_THREADS; i++)
		pthread_create(&storm_tid[i], NULL, storm_writer, (void *)(uintptr_t)(i + 1));
	pthread_create(&sig, NULL, storm_signaller, NULL);
	for (unsigned i = 0; i < STORM_THREADS; i++)
		pthread_join(storm_tid[i], NULL);
	atomic_store(&storm_stop, true);
	pthread_join(sig, NULL);
	nk_log_flush();
	install_nmi(nmi_handler);

	nk_log_get_stats(&after);
	seen = storm_check();
	total = atomic_load(&storm_logged);
	printf("# storm: %llu records (%llu from signals, %llu of them while that thread printed), "
	       "%llu printed, %llu lost (%llu dropped by lapped writers), %d stalls\n",
	       (unsigned long long)total,
	       (unsigned long long)atomic_load(&storm_signals),
	       (unsigned long long)atomic_load(&storm_sig_printing),
	       (unsigned long long)seen,
	       (unsigned long long)(after.console_missed - before.console_missed),
	       (unsigned long long)(after.dropped - before.dropped),
	       atomic_load(&storm_stalls));
	CHECK(cap_overlaps() == 0);
	CHECK(atomic_load(&storm_signals) >= 200);	/* the signals did land */
	/* Every sequence number was printed exactly once or counted as lost. */
	CHECK(after.printed - before.printed == seen);
	CHECK(seen + (after.console_missed - before.console_missed) == total);
	if (throttle) {
		CHECK(atomic_load(&storm_stalls) == 0);
		CHECK(seen == total);
		CHECK(after.dropped == before.dropped);
	}
}

static void log_threads_and_signal_storm_lose_nothing_duplicate_nothing_keep_cpu_order(void)
{
	run_storm(true);
}

/* ============ tiny ring (NK_LOG_RECORDS=16): wrapping ================================== */

static _Atomic int release_holder;

static void hold_console(const char *buf, size_t len)
{
	if (!memmem(buf, len, "holder", 6))
		return;
	atomic_store(&b_may_log, 1);
	while (!atomic_load(&release_holder))
		sleep_ms(1);
}

static void *holder_cpu(void *arg)
{
	(void)arg;
	los_cpu = 5;
	pr_info("holder");
	return NULL;
}

static void log_ring_wrap_under_a_stalled_console_reports_and_counts_lost_records(void)
{
	struct nk_log_stats before, after;
	struct dump_ctx d = { 0 };
	char want[64];
	pthread_t h;
	uint64_t lost;

	fresh_capture();
	nk_log_get_stats(&before);
	atomic_store(&b_may_log, 0);
	atomic_store(&release_holder, 0);
	atomic_store(&cap_hook, hold_console);
	pthread_create(&h, NULL, holder_cpu, NULL);
	CHECK(wait_flag(&b_may_log, 5000));
	for (unsigned i = 1; i <= 40; i++)
		pr_info("w%02u", i);
	/* The ring holds the newest NK_LOG_RECORDS; older ones are gone. */
	CHECK(nk_log_next_seq() - nk_log_first_seq() == (uint64_t)NK_LOG_RECORDS);
	CHECK(nk_log_dump(0, dump_cb, &d) == NK_LOG_RECORDS);
	CHECK(strcmp(d.text[0], "w25") == 0);
	atomic_store(&release_holder, 1);
	pthread_join(h, NULL);
	atomic_store(&cap_hook, NULL);
	nk_log_flush();

	nk_log_get_stats(&after);
	lost = after.console_missed - before.console_missed;
	CHECK(lost == (uint64_t)(40 - NK_LOG_RECORDS));
	snprintf(want, sizeof(want), "** %llu log records lost", (unsigned long long)lost);
	CHECK(cap_find(want) >= 0);
	CHECK(cap_find("w01") < 0 && cap_find("w24") < 0);
	CHECK(cap_find(want) < cap_find("w25"));
	CHECK(cap_find("w25") < cap_find("w40"));
	CHECK(after.printed - before.printed == 1 + NK_LOG_RECORDS);
	CHECK(cap_overlaps() == 0);
}

static _Atomic int lap_armed;

static void lap_the_writer(enum nk_log_hook point)
{
	if (point != NK_LOG_HOOK_FILLED || !atomic_load(&lap_armed))
		return;
	atomic_store(&lap_armed, 0);
	/* A whole lap of records while this one is half done. */
	for (unsigned i = 1; i <= NK_LOG_RECORDS; i++)
		pr_info("lap%02u", i);
}

static void log_writer_lapped_while_filling_loses_its_record_and_slot_recovers(void)
{
	struct nk_log_stats before, after;
	char last[16];

	fresh_capture();
	nk_log_get_stats(&before);
	atomic_store(&lap_armed, 1);
	atomic_store(&log_hook, lap_the_writer);
	pr_info("victim");
	atomic_store(&log_hook, NULL);
	nk_log_get_stats(&after);

	/* The victim and the lap record that met it in the slot are both dropped. */
	CHECK(after.dropped - before.dropped == 2);
	CHECK(after.console_missed - before.console_missed == 2);
	CHECK(cap_find("victim") < 0);
	snprintf(last, sizeof(last), "lap%02u", NK_LOG_RECORDS);
	CHECK(cap_find(last) < 0);
	CHECK(cap_find("lap01") >= 0 && cap_find("lap15") >= 0);
	/* The slot works again on the next lap. */
	for (unsigned i = 1; i <= NK_LOG_RECORDS + 1; i++)
		pr_info("again%02u", i);
	CHECK(cap_count("again") == NK_LOG_RECORDS + 1);
	CHECK(cap_overlaps() == 0);
}

static void log_tiny_ring_storm_prints_each_record_once_or_counts_it_lost(void)
{
	run_storm(false);
}

static const struct tap_test log_tests[] = {
#if NK_LOG_RECORDS > 16
	TAP_TEST(log_record_keeps_seq_level_cpu_time_and_text),
	TAP_TEST(log_console_line_has_linux_style_time_prefix),
	TAP_TEST(log_level_threshold_filters_console_but_ring_keeps_all),
	TAP_TEST(log_print_level_reaches_console_verbatim_whatever_the_threshold),
	TAP_TEST(log_console_disabled_prints_nothing_but_records),
	TAP_TEST(log_long_message_is_cut_and_flagged),
	TAP_TEST(log_multiline_record_gets_the_prefix_on_every_line),
	TAP_TEST(log_cpu_parameter_adds_the_cpu_to_console_lines),
	TAP_TEST(log_nmi_between_reserve_and_claim_prints_both_in_sequence_order),
	TAP_TEST(log_nmi_between_fill_and_commit_prints_both_in_sequence_order),
	TAP_TEST(log_nmi_after_commit_before_printing_prints_both_once),
	TAP_TEST(log_record_from_nmi_while_owner_printing_is_printed_after),
	TAP_TEST(log_nmis_on_every_printed_line_are_all_printed_once),
	TAP_TEST(log_other_cpu_record_committed_during_printing_is_printed_by_owner),
	TAP_TEST(log_dump_returns_the_last_n_records_oldest_first),
	TAP_TEST(log_reader_passes_over_a_record_being_written),
	TAP_TEST(log_threads_and_signal_storm_lose_nothing_duplicate_nothing_keep_cpu_order),
	TAP_TEST(log_panic_flush_takes_the_console_from_a_stopped_owner),
	TAP_TEST(log_panic_flush_passes_over_a_writer_stopped_mid_record),
	TAP_TEST(log_panic_in_nmi_that_interrupted_the_owner_still_prints),
#else
	TAP_TEST(log_ring_wrap_under_a_stalled_console_reports_and_counts_lost_records),
	TAP_TEST(log_writer_lapped_while_filling_loses_its_record_and_slot_recovers),
	TAP_TEST(log_tiny_ring_storm_prints_each_record_once_or_counts_it_lost),
#endif
	TAP_END,
};

static void nmi_is_sigusr1(void)
{
	install_nmi(nmi_handler);
}

int main(int argc, char **argv)
{
	static const struct tap_test *const suites[] = { log_tests, NULL };

	return tap_main(argc, argv, suites, nmi_is_sigusr1);
}
