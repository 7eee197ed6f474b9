/*
 * hangdetect.c: thread hang detector on the POSIX host of the nmikit core.
 * Each registered thread is a CPU of hosts/posix; its progress count is the
 * heartbeat.  A watcher thread runs watchdog_check() (core/watchdog.c) on
 * every thread each period; on WD_LOCKUP it sends the stuck thread an NMI,
 * whose "hangdetect" handler (in that thread's signal handler, through the
 * NMI core) prints the report, its own backtrace, and every other thread's
 * through nmi_backtrace() (core/nmi_backtrace.c).
 */
#define _GNU_SOURCE
#include "hangdetect.h"
#include "nmikit_posix.h"

#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/nmi_backtrace.h>
#include <nmikit/watchdog.h>

#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HD_FRAMES	48

struct hd_thread {
	_Atomic bool registered;
	_Atomic bool idle;		/* waiting on purpose: not watched */
	_Atomic uint64_t beat;		/* progress count */
	_Atomic bool report_request;	/* the watcher found this thread stuck */
	_Atomic bool report_done;
	uint64_t stuck_ns;		/* for the report (set before the request) */
	/* The last backtrace capture, written in this thread's own NMI. */
	void *frames[HD_FRAMES];
	int nframes, first;
	uint64_t ip;
	pid_t tid;
	char name[24];
} NK_CACHE_ALIGNED;

static struct hangdetect_config hd_cfg;
static struct hd_thread *hd_threads;
static pthread_t hd_watcher;
static _Atomic bool hd_running;
static _Atomic uint64_t hd_report_count;

/*
 * Capture the calling thread's stack.  NMI context (its signal handler).
 * Safe there: backtrace() was called once at start, so libgcc's unwinder is
 * loaded and it allocates nothing now; the buffer is this thread's own.  The
 * unwinder walks through the signal frame; the interesting part starts at
 * the interrupted instruction (that frame holds exactly f->ip), leaving out
 * the handler, the NMI core and the signal trampoline.
 */
static void hd_capture(unsigned cpu, const struct nmi_frame *f)
{
	struct hd_thread *t;

	if (cpu >= hd_cfg.max_threads)
		return;
	t = &hd_threads[cpu];
	t->nframes = backtrace(t->frames, HD_FRAMES);
	t->first = 0;
	t->ip = f->ip;
	for (int i = 0; i < t->nframes; i++)
		if ((uint64_t)(uintptr_t)t->frames[i] == f->ip) {
			t->first = i;
			break;
		}
}

/*
 * Print a capture.  NMI context (on the reporting thread): nk_log is
 * lock-free and backtrace_symbols_fd() writes without allocating.
 */
static void hd_print(unsigned cpu, int level)
{
	struct hd_thread *t;

	if (cpu >= hd_cfg.max_threads)
		return;
	t = &hd_threads[cpu];
	nk_log(level, "--- thread %u (%s, tid %d)%s, interrupted at %#llx:", cpu, t->name,
	       (int)t->tid, atomic_load(&t->report_request) ? " [NO PROGRESS]" : "",
	       (unsigned long long)t->ip);
	nk_log_flush();
	backtrace_symbols_fd(t->frames + t->first, t->nframes - t->first, hd_cfg.fd);
}

static const struct nmi_backtrace_ops hd_bt_ops = {
	.capture = hd_capture,
	.print = hd_print,
};

/*
 * The report, on the stuck thread, in its NMI.  NMI context: every step is
 * NMI-safe (the lock-free log, hd_capture/hd_print, and nmi_backtrace(),
 * whose only wait is bounded by its timeout).
 */
static int hd_nmi_handler(unsigned type, struct nmi_frame *f)
{
	uint64_t others[NMIKIT_MAX_CPUS / 64] = { 0 };
	unsigned cpu = nkp_this_cpu();
	struct hd_thread *t;

	(void)type;
	if (cpu == NKP_NO_CPU || cpu >= hd_cfg.max_threads)
		return NMI_DONE;
	t = &hd_threads[cpu];
	if (!atomic_load(&t->report_request) || atomic_load(&t->report_done))
		return NMI_DONE;
	nk_log(NK_LOG_EMERG, "hangdetect: thread %u (%s, tid %d) made no progress for %llu ms",
	       cpu, t->name, (int)t->tid, (unsigned long long)(t->stuck_ns / 1000000));
	nk_log(NK_LOG_EMERG, "hangdetect: backtraces of every watched thread, each taken by the thread itself:");
	hd_capture(cpu, f);
	hd_print(cpu, NK_LOG_EMERG);
	for (unsigned i = 0; i < hd_cfg.max_threads; i++)
		if (i != cpu && atomic_load(&hd_threads[i].registered))
			others[i / 64] |= 1ull << (i % 64);
	nmi_backtrace(others, NMI_BT_EXCLUDE_SELF, 1000000000ull, NULL);
	nk_log(NK_LOG_EMERG, "hangdetect: end of report");
	nk_log_flush();
	atomic_store(&t->report_done, true);
	return NMI_HANDLED;
}

static void hd_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/*
 * A stuck thread reports itself: the watcher only asks, with an NMI, and
 * waits (bounded) for the report to be written.
 */
static void hd_report(unsigned cpu, uint64_t stuck_ns)
{
	struct hd_thread *t = &hd_threads[cpu];
	unsigned waited = 0;

	t->stuck_ns = stuck_ns;
	atomic_store(&t->report_done, false);
	atomic_store(&t->report_request, true);
	nkp_send_nmi(cpu);
	while (!atomic_load(&t->report_done) && waited < 3000) {
		hd_sleep_ms(1);
		waited++;
	}
	if (!atomic_load(&t->report_done))
		nk_log(NK_LOG_EMERG, "hangdetect: thread %u (%s, tid %d) made no progress for %llu ms "
		       "and did not answer its NMI", cpu, t->name, (int)t->tid,
		       (unsigned long long)(stuck_ns / 1000000));
	atomic_store(&t->report_request, false);
	atomic_fetch_add(&hd_report_count, 1);
	if (hd_cfg.abort_on_hang)
		abort();
}

/* The watcher: the watchdog core's check on every watched thread, each period. */
static void *hd_watch_main(void *arg)
{
	uint64_t period = (uint64_t)hd_cfg.period_ms * 1000000;

	(void)arg;
	while (atomic_load(&hd_running)) {
		hd_sleep_ms(hd_cfg.period_ms);
		for (unsigned cpu = 0; cpu < hd_cfg.max_threads; cpu++) {
			struct hd_thread *t = &hd_threads[cpu];
			struct watchdog_cpu_stats st;

			if (!atomic_load(&t->registered))
				continue;
			if (atomic_load(&t->idle)) {
				watchdog_touch_cpu(cpu);
				continue;
			}
			if (watchdog_check(cpu, os_timestamp_ns(),
					   atomic_load_explicit(&t->beat, memory_order_relaxed),
					   period) != WD_LOCKUP)
				continue;
			watchdog_get_stats(cpu, &st);
			hd_report(cpu, st.stale_ns);
		}
	}
	return NULL;
}

int hangdetect_start(const struct hangdetect_config *cfg)
{
	struct nkp_config ncfg = { 0 };
	void *frames[4];

	hd_cfg = cfg ? *cfg : (struct hangdetect_config){ 0 };
	if (!hd_cfg.thresh_s)
		hd_cfg.thresh_s = 2;
	if (!hd_cfg.period_ms)
		hd_cfg.period_ms = hd_cfg.thresh_s * 250;
	if (!hd_cfg.max_threads)
		hd_cfg.max_threads = 64;
	if (hd_cfg.fd <= 0)
		hd_cfg.fd = 2;
	if (hd_cfg.max_threads > NMIKIT_MAX_CPUS - 1) {
		errno = EINVAL;
		return -1;
	}
	hd_threads = calloc(hd_cfg.max_threads, sizeof(*hd_threads));
	if (!hd_threads)
		return -1;

	/* Load the unwinder now: the first backtrace() may allocate. */
	backtrace(frames, 4);

	ncfg.ncpus = hd_cfg.max_threads;
	ncfg.console_fd = hd_cfg.fd;
	if (nkp_init(&ncfg))
		return -1;
	nk_log_set_console_level(NK_LOG_WARNING);
	nmi_lost_recovery = false;	/* no external NMI sources here */
	watchdog_set_thresh(hd_cfg.thresh_s);
	watchdog_set_enabled(true, false);
	watchdog_set_policy(false, false, false);
	nmi_backtrace_set_ops(&hd_bt_ops);
	if (nmi_backtrace_init() ||
	    nmi_register(NMI_LOCAL, "hangdetect", hd_nmi_handler, 0)) {
		errno = EBUSY;
		return -1;
	}
	atomic_store(&hd_running, true);
	if (pthread_create(&hd_watcher, NULL, hd_watch_main, NULL)) {
		atomic_store(&hd_running, false);
		return -1;
	}
	return 0;
}

void hangdetect_stop(void)
{
	if (!atomic_exchange(&hd_running, false))
		return;
	pthread_join(hd_watcher, NULL);
}

int hangdetect_thread_register(const char *name)
{
	for (unsigned cpu = 0; cpu < hd_cfg.max_threads; cpu++) {
		struct hd_thread *t = &hd_threads[cpu];

		if (atomic_load(&t->registered))
			continue;
		if (nkp_cpu_attach(cpu))
			continue;	/* taken meanwhile, or this thread is attached */
		nk_strlcpy(t->name, name ? name : "?", sizeof(t->name));
		t->tid = (pid_t)syscall(SYS_gettid);
		atomic_store(&t->idle, false);
		watchdog_cpu_monitor(cpu, true);
		atomic_store(&t->registered, true);
		return 0;
	}
	errno = ENOSPC;
	return -1;
}

void hangdetect_thread_unregister(void)
{
	unsigned cpu = nkp_this_cpu();

	if (cpu == NKP_NO_CPU || cpu >= hd_cfg.max_threads)
		return;
	atomic_store(&hd_threads[cpu].registered, false);
	watchdog_cpu_monitor(cpu, false);
	nkp_cpu_detach();
}

void hangdetect_progress(void)
{
	unsigned cpu = nkp_this_cpu();

	if (cpu == NKP_NO_CPU || cpu >= hd_cfg.max_threads)
		return;
	atomic_fetch_add_explicit(&hd_threads[cpu].beat, 1, memory_order_relaxed);
	atomic_store_explicit(&hd_threads[cpu].idle, false, memory_order_relaxed);
}

void hangdetect_idle(void)
{
	unsigned cpu = nkp_this_cpu();

	if (cpu != NKP_NO_CPU && cpu < hd_cfg.max_threads)
		atomic_store(&hd_threads[cpu].idle, true);
}

uint64_t hangdetect_reports(void)
{
	return atomic_load(&hd_report_count);
}
