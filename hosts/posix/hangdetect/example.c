/*
 * example.c: the hang detector on a small program with a real bug.  Two
 * workers count away making progress; two more take a pair of mutexes in
 * opposite orders and, once the bug is armed, deadlock (ABBA).  The detector
 * reports the stuck threads with every thread's backtrace.
 *
 *	hangdetect-example              run the demo; the report goes to stderr
 *	hangdetect-example --self-test  the same, checked; TAP on stdout
 */
#define _GNU_SOURCE
#include "hangdetect.h"

#include <nmikit/watchdog.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool bug_armed;
static _Atomic unsigned in_first_lock;
static _Atomic bool quit;
static _Atomic unsigned registered;

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * The functions a report should name are global, so that -rdynamic puts them
 * in the dynamic symbol table where backtrace_symbols_fd() finds them.
 */
void *counter_main(void *arg);
void *locker_main(void *arg);
void lock_in_order(pthread_mutex_t *first, pthread_mutex_t *second, bool armed);

/* Healthy work: a busy loop that reports progress every few microseconds. */
void *counter_main(void *arg)
{
	volatile uint64_t sum = 0;

	hangdetect_thread_register(arg);
	atomic_fetch_add(&registered, 1);
	while (!atomic_load(&quit)) {
		for (int i = 0; i < 10000; i++)
			sum += (uint64_t)i;
		hangdetect_progress();
	}
	return NULL;
}

/*
 * Take `first` then `second`.  Once the bug is armed, locker-ba takes them in
 * the other order, and both lockers hold their first mutex before either
 * asks for its second: a deadlock, every time.
 */
__attribute__((noinline))
void lock_in_order(pthread_mutex_t *first, pthread_mutex_t *second, bool armed)
{
	pthread_mutex_lock(first);
	if (armed) {
		atomic_fetch_add(&in_first_lock, 1);
		while (atomic_load(&in_first_lock) < 2)
			sleep_ms(1);
	}
	pthread_mutex_lock(second);
	pthread_mutex_unlock(second);
	pthread_mutex_unlock(first);
}

void *locker_main(void *arg)
{
	bool ab = !strcmp(arg, "locker-ab");

	hangdetect_thread_register(arg);
	atomic_fetch_add(&registered, 1);
	while (!atomic_load(&quit)) {
		bool armed = atomic_load(&bug_armed);

		if (ab || !armed)
			lock_in_order(&lock_a, &lock_b, armed);
		else
			lock_in_order(&lock_b, &lock_a, armed);
		hangdetect_progress();
		sleep_ms(1);
	}
	return NULL;
}

static unsigned tap_n, tap_failed;

static void tap(bool ok, const char *what)
{
	tap_n++;
	if (!ok)
		tap_failed++;
	printf("%sok %u - %s\n", ok ? "" : "not ", tap_n, what);
}

static unsigned count(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/*
 * The watchdog core's decision on its own, with made-up times, on a thread
 * slot nobody uses (the detector has set the threshold to 1 s).
 */
static void test_decide(void)
{
	const uint64_t ms = 1000000, period = 100 * ms;
	const unsigned slot = 60;
	enum watchdog_verdict v = WD_OFF;
	uint64_t t = 1000 * ms, first_lockup = 0;
	bool ok;

	watchdog_cpu_monitor(slot, true);
	ok = watchdog_check(slot, t, 5, period) == WD_FIRST;
	for (int i = 1; i <= 15 && !first_lockup; i++) {
		v = watchdog_check(slot, t + (uint64_t)i * period, 5, period);
		if (v == WD_LOCKUP)
			first_lockup = (uint64_t)i * period;
		else
			ok &= v == WD_STALE;
	}
	ok &= first_lockup >= 1000 * ms && first_lockup <= 1100 * ms;
	ok &= watchdog_check(slot, t + 1600 * ms, 5, period) == WD_STILL_LOCKED;
	ok &= watchdog_check(slot, t + 1700 * ms, 6, period) == WD_RECOVERED;
	tap(ok, "decision (watchdog core): no progress for the threshold is a lockup, reported once");

	/* Silence, then one check 5 s later: the check came late, no verdict. */
	watchdog_cpu_monitor(slot, true);
	t = 10000 * ms;
	ok = watchdog_check(slot, t, 9, period) == WD_FIRST;
	v = watchdog_check(slot, t + 5000 * ms, 9, period);
	ok &= v == WD_LATE;
	watchdog_cpu_monitor(slot, false);
	tap(ok, "decision (watchdog core): a check that came late condemns nobody");
}

int main(int argc, char **argv)
{
	static const char *names[] = { "counter-1", "counter-2", "locker-ab", "locker-ba" };
	bool self_test = argc > 1 && !strcmp(argv[1], "--self-test");
	struct hangdetect_config cfg = { .thresh_s = 1, .period_ms = 200 };
	pthread_t th[4];
	FILE *report = NULL;
	uint64_t t0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (self_test) {
		report = tmpfile();
		if (!report) {
			perror("tmpfile");
			return 2;
		}
		cfg.fd = fileno(report);
	}
	if (hangdetect_start(&cfg)) {
		perror("hangdetect_start");
		return 2;
	}
	if (self_test)
		test_decide();
	hangdetect_thread_register("main");
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, i < 2 ? counter_main : locker_main, (void *)names[i]);
	while (atomic_load(&registered) < 4)
		sleep_ms(1);

	/* A healthy phase longer than the threshold: nothing must be reported. */
	hangdetect_idle();
	sleep_ms(2000 * cfg.thresh_s);
	if (self_test)
		tap(hangdetect_reports() == 0, "no report while every thread makes progress (2 thresholds)");
	else
		fprintf(stderr, "example: healthy for %u ms; now arming the ABBA deadlock\n",
			2000 * cfg.thresh_s);

	atomic_store(&bug_armed, true);
	t0 = now_ms();
	while (hangdetect_reports() < 2 && now_ms() - t0 < 5000)
		sleep_ms(10);
	if (!self_test) {
		fprintf(stderr, "example: %llu reports; exiting\n",
			(unsigned long long)hangdetect_reports());
		_exit(hangdetect_reports() ? 0 : 1);
	}

	{
		char buf[1 << 16];
		ssize_t n = pread(fileno(report), buf, sizeof(buf) - 1, 0);
		uint64_t dt = now_ms() - t0;
		char what[128];

		buf[n > 0 ? n : 0] = '\0';
		snprintf(what, sizeof(what), "both deadlocked threads reported (%llu ms after arming)",
			 (unsigned long long)dt);
		tap(hangdetect_reports() == 2 && strstr(buf, "(locker-ab, tid") &&
		    strstr(buf, "(locker-ba, tid") &&
		    count(buf, "made no progress for") == 2, what);
		tap(!strstr(buf, "(counter-1, tid") || count(buf, "(counter-1, tid") == 2,
		    "the threads making progress are not reported as hung");
		tap(count(buf, "--- thread ") == 10,
		    "each report has the backtrace of every watched thread (5 each)");
		tap(count(buf, "[NO PROGRESS]") == 2 && count(buf, "lock_in_order+") >= 2,
		    "the stuck threads' own backtraces show the function they are stuck in");
		tap(count(buf, "counter_main+") >= 2,
		    "the running threads' backtraces show where they run");
		if (tap_failed) {
			printf("# report:\n");
			for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
				printf("# %s\n", line);
		}
	}
	printf("1..%u\n", tap_n);
	fflush(stdout);
	/* The deadlocked threads never return: leave without joining. */
	_exit(tap_failed ? 1 : 0);
}
