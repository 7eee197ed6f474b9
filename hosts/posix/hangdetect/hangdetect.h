/*
 * hangdetect.h: a hang detector for ordinary multi-threaded C programs, the
 * user-space face of nmikit's hard-lockup detector, built on the same
 * portable cores: the watchdog core (core/watchdog.c) decides, from each
 * thread's progress count, when a thread has stopped (with its rule that a
 * check which itself came late condemns nobody); the stuck thread is then
 * sent an NMI (a real-time signal dispatched through core/nmi.c) and reports
 * from there, with every other thread's backtrace gathered by the all-CPU
 * NMI backtrace core (core/nmi_backtrace.c), each taken by the thread itself.
 *
 *	struct hangdetect_config cfg = { .thresh_s = 2 };
 *	hangdetect_start(&cfg);
 *	... in each thread:  hangdetect_thread_register("worker");
 *	                     for (;;) { work(); hangdetect_progress(); }
 *
 * The program must not use the signals SIGRTMIN .. SIGRTMIN+2 itself, and
 * should be linked with -rdynamic so that backtraces show function names.
 */
#ifndef NMIKIT_HANGDETECT_H
#define NMIKIT_HANGDETECT_H

#include <stdbool.h>
#include <stdint.h>

struct hangdetect_config {
	unsigned thresh_s;	/* no progress for this long: hung (default 2, min 1) */
	unsigned period_ms;	/* how often the watcher checks (default thresh / 4) */
	unsigned max_threads;	/* threads that may register (default 64) */
	int fd;			/* where reports go (0: stderr) */
	bool abort_on_hang;	/* abort() after the first report */
};

/* Start the watcher.  Returns 0, or -1 with errno set.  Call once. */
int hangdetect_start(const struct hangdetect_config *cfg);

/* Stop the watcher (registered threads stay registered but unwatched). */
void hangdetect_stop(void);

/*
 * Watch the calling thread under `name` (copied, up to 23 characters).
 * Returns 0, or -1 (too many threads, or already registered).
 */
int hangdetect_thread_register(const char *name);
void hangdetect_thread_unregister(void);

/*
 * The calling thread made progress.  Cheap (one relaxed atomic add);
 * async-signal-safe.
 */
void hangdetect_progress(void);

/*
 * Say that the calling thread is about to wait for a long time on purpose
 * (reading a socket, say): it is not watched until its next progress call.
 */
void hangdetect_idle(void);

/* Hangs reported so far. */
uint64_t hangdetect_reports(void);

#endif
