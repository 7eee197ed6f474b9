/*
 * hangdetect.h: a hang detector for ordinary multi-threaded C programs, the
 * user-space face of nmikit's hard-lockup detector.  Threads register and
 * report progress; a watcher thread checks every period, and a thread whose
 * progress count has not moved for the threshold is reported together with
 * the backtrace of every registered thread, each taken by that thread itself
 * in its NMI (a real-time signal dispatched through the nmikit NMI core).
 *
 *	struct hangdetect_config cfg = { .thresh_ms = 2000 };
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
	unsigned thresh_ms;	/* no progress for this long: hung (default 2000) */
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

/*
 * The decision the watcher makes for one thread at each check: the rule of
 * the watchdog core (docs/porting.md).  `beat` is the thread's progress
 * count now, `now` the time, `prev_check` the time of the previous check.
 *   HD_PROGRESS  the count moved: the thread is fine; its clock restarts.
 *   HD_WAITING   no progress yet, but for less than the threshold.
 *   HD_HUNG      no progress for the threshold or longer.
 *   HD_LATE      the check itself came late (more than 2 periods after the
 *                previous one: the host stalled the watcher); no verdict on
 *                that evidence, the clock restarts.
 */
enum hd_verdict { HD_PROGRESS, HD_WAITING, HD_HUNG, HD_LATE };
struct hd_watch {
	uint64_t last_beat;	/* count at the last change */
	uint64_t since_ns;	/* when it last changed (or the clock restarted) */
};
enum hd_verdict hd_decide(struct hd_watch *w, uint64_t beat, uint64_t now,
			  uint64_t prev_check, uint64_t period_ns, uint64_t thresh_ns);

#endif
