/*
 * hangdetect.c: thread hang detector on the POSIX host of the nmikit core.
 * Each registered thread is a CPU of hosts/posix; its progress count is the
 * heartbeat.  A watcher thread applies hd_decide() to every thread each
 * period and, on a hang, asks every thread for its backtrace with an NMI:
 * the NMI core dispatches it to the "hangdetect" handler, which runs on the
 * thread itself (in its signal handler) and prints where it is.
 */
#define _GNU_SOURCE
#include "hangdetect.h"
#include "nmikit_posix.h"

#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>

#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct hd_thread {
	_Atomic bool registered;
	_Atomic bool idle;		/* waiting on purpose: not watched */
	_Atomic uint64_t beat;		/* progress count */
	_Atomic bool bt_request;	/* the watcher wants this thread's backtrace */
	_Atomic bool bt_done;
	bool hung;			/* reported, no progress since (watcher only) */
	bool marked;			/* the thread a report is about (watcher only) */
	struct hd_watch watch;		/* watcher only */
	pid_t tid;
	char name[24];
} NK_CACHE_ALIGNED;

static struct hangdetect_config hd_cfg;
static struct hd_thread *hd_threads;
static pthread_t hd_watcher;
static _Atomic bool hd_running;
static _Atomic uint64_t hd_report_count;

enum hd_verdict hd_decide(struct hd_watch *w, uint64_t beat, uint64_t now,
			  uint64_t prev_check, uint64_t period_ns, uint64_t thresh_ns)
{
	/*
	 * A check that comes more than two periods after the previous one
	 * means the watcher itself was not running (host overloaded, process
	 * stopped): the thread may have had no chance either.  Restart its
	 * clock rather than condemn it on that evidence.
	 */
	if (now - prev_check > 2 * period_ns) {
		w->last_beat = beat;
		w->since_ns = now;
		return HD_LATE;
	}
	if (beat != w->last_beat) {
		w->last_beat = beat;
		w->since_ns = now;
		return HD_PROGRESS;
	}
	return now - w->since_ns >= thresh_ns ? HD_HUNG : HD_WAITING;
}

static void hd_write(const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(hd_cfg.fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

static void hd_printf(const char *fmt, ...) NK_PRINTF(1, 2);
static void hd_printf(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = nk_vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		hd_write(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/*
 * The backtrace handler.  NMI context (the thread's NMI signal handler,
 * through nmi_entry()).  Safe there: it claims only a request flag meant for
 * this thread; nk_vsnprintf and write(2) are async-signal-safe; backtrace()
 * was called once at start, so libgcc's unwinder is loaded and it allocates
 * nothing now; backtrace_symbols_fd() writes without allocating.  The
 * watcher asks one thread at a time, so the lines do not interleave.
 */
static int hd_nmi_handler(unsigned type, struct nmi_frame *f)
{
	unsigned cpu = nkp_this_cpu();
	struct hd_thread *t;
	void *frames[64];
	int n, first = 0;

	(void)type;
	if (cpu == NKP_NO_CPU || cpu >= hd_cfg.max_threads)
		return NMI_DONE;
	t = &hd_threads[cpu];
	if (!atomic_exchange(&t->bt_request, false))
		return NMI_DONE;
	hd_printf("--- thread %u (%s, tid %d)%s, interrupted at %#llx:\n", cpu, t->name,
		  (int)t->tid, t->marked ? " [NO PROGRESS]" : "", (unsigned long long)f->ip);
	/*
	 * The unwinder walks through the signal frame; start at the
	 * interrupted instruction (its frame holds exactly f->ip), leaving out
	 * the handler, the core's dispatch and the signal trampoline.
	 */
	n = backtrace(frames, 64);
	for (int i = 0; i < n; i++)
		if ((uint64_t)(uintptr_t)frames[i] == f->ip) {
			first = i;
			break;
		}
	backtrace_symbols_fd(frames + first, n - first, hd_cfg.fd);
	atomic_store(&t->bt_done, true);
	return NMI_HANDLED;
}

static void hd_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* The watcher's report: the hung thread, then every thread's backtrace. */
static void hd_report(unsigned hung_cpu, uint64_t stuck_ns)
{
	struct hd_thread *h = &hd_threads[hung_cpu];

	h->marked = true;
	hd_printf("hangdetect: thread %u (%s, tid %d) made no progress for %llu ms\n",
		  hung_cpu, h->name, (int)h->tid, (unsigned long long)(stuck_ns / 1000000));
	hd_printf("hangdetect: backtraces of every watched thread, each taken by the thread itself:\n");
	for (unsigned cpu = 0; cpu < hd_cfg.max_threads; cpu++) {
		struct hd_thread *t = &hd_threads[cpu];
		unsigned waited = 0;

		if (!atomic_load(&t->registered))
			continue;
		atomic_store(&t->bt_done, false);
		atomic_store(&t->bt_request, true);
		nkp_send_nmi(cpu);
		while (!atomic_load(&t->bt_done) && waited < 1000) {
			hd_sleep_ms(1);
			waited++;
		}
		if (!atomic_load(&t->bt_done)) {
			atomic_store(&t->bt_request, false);
			hd_printf("--- thread %u (%s, tid %d): no answer to its NMI within 1 s\n",
				  cpu, t->name, (int)t->tid);
		}
	}
	h->marked = false;
	hd_printf("hangdetect: end of report\n");
	atomic_fetch_add(&hd_report_count, 1);
	if (hd_cfg.abort_on_hang)
		abort();
}

static void *hd_watch_main(void *arg)
{
	uint64_t period = (uint64_t)hd_cfg.period_ms * 1000000;
	uint64_t thresh = (uint64_t)hd_cfg.thresh_ms * 1000000;
	uint64_t prev = os_timestamp_ns();

	(void)arg;
	while (atomic_load(&hd_running)) {
		uint64_t now;

		hd_sleep_ms(hd_cfg.period_ms);
		now = os_timestamp_ns();
		for (unsigned cpu = 0; cpu < hd_cfg.max_threads; cpu++) {
			struct hd_thread *t = &hd_threads[cpu];
			enum hd_verdict v;

			if (!atomic_load(&t->registered))
				continue;
			if (atomic_load(&t->idle)) {
				t->watch.since_ns = now;
				continue;
			}
			v = hd_decide(&t->watch, atomic_load_explicit(&t->beat, memory_order_relaxed),
				      now, prev, period, thresh);
			if (v == HD_PROGRESS || v == HD_LATE) {
				t->hung = false;
			} else if (v == HD_HUNG && !t->hung) {
				t->hung = true;
				hd_report(cpu, now - t->watch.since_ns);
			}
		}
		prev = now;
	}
	return NULL;
}

int hangdetect_start(const struct hangdetect_config *cfg)
{
	struct nkp_config ncfg = { 0 };
	void *frames[4];
	int err;

	hd_cfg = cfg ? *cfg : (struct hangdetect_config){ 0 };
	if (!hd_cfg.thresh_ms)
		hd_cfg.thresh_ms = 2000;
	if (!hd_cfg.period_ms)
		hd_cfg.period_ms = hd_cfg.thresh_ms / 4 ? hd_cfg.thresh_ms / 4 : 1;
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
	err = nmi_register(NMI_LOCAL, "hangdetect", hd_nmi_handler, 0);
	if (err) {
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
		t->watch.last_beat = atomic_load(&t->beat);
		t->watch.since_ns = os_timestamp_ns();
		t->hung = false;
		atomic_store(&t->idle, false);
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
