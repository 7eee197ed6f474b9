/*
 * watchdog.c: the portable core of the lockup detectors.  It holds, per CPU,
 * the evidence that the CPU stopped making progress and decides when that
 * evidence is a hard lockup; it keeps the soft-lockup clock of each CPU's
 * watchdog thread, the touch flags, the counters and the report policy.
 * Which context runs a check (an NMI on the CPU itself, another CPU's tick)
 * is the sources' business; docs/watchdog.md has the design.
 *
 * Everything a check touches is the checked CPU's own slot, reached with
 * atomics; nothing here takes a lock or waits, so all of it may run in NMI
 * context.
 */
#include <nmikit/compiler.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/nmi_backtrace.h>
#include <nmikit/os.h>
#include <nmikit/watchdog.h>

#define NS_PER_S	1000000000ull

struct wd_cpu {
	_Atomic bool monitored;
	_Atomic bool claimed;		/* a check of this CPU is running */
	_Atomic bool touched;		/* touch_nmi_watchdog() since the last check */
	_Atomic bool withdraw;		/* forget the evidence at the next check */
	_Atomic bool restart;		/* take a fresh first sample at the next check */
	/* Written only by the context holding `claimed`. */
	bool have_sample;
	bool reported;
	uint64_t hb;
	uint64_t last_ns;
	/* Soft lockups: written by the CPU's own tick, soft_touch also by its thread. */
	_Atomic uint64_t soft_touch_ns;
	uint64_t soft_last_tick_ns;
	bool soft_reported;
	/* Counters (read by anyone at any time). */
	_Atomic uint64_t checks, nmis, late, touches, withdrawn;
	_Atomic uint64_t hard_lockups, soft_lockups, soft_late;
	_Atomic uint64_t stat_hb, stale_ns, max_stale_ns, stat_last_ns, last_lockup_ns;
} NK_CACHE_ALIGNED;

static struct wd_cpu wd_cpus[NMIKIT_MAX_CPUS];

static _Atomic unsigned wd_thresh_s = 10;
static _Atomic bool wd_hard_on = true, wd_soft_on = true;
static _Atomic bool wd_hard_panic, wd_soft_panic, wd_all_bt;
static const struct watchdog_ops *_Atomic wd_ops;

const char *watchdog_verdict_name(enum watchdog_verdict v)
{
	switch (v) {
	case WD_OFF:		return "off";
	case WD_BUSY:		return "busy";
	case WD_FIRST:		return "first";
	case WD_OK:		return "ok";
	case WD_TOUCHED:	return "touched";
	case WD_STALE:		return "stale";
	case WD_LATE:		return "late";
	case WD_LOCKUP:		return "lockup";
	case WD_STILL_LOCKED:	return "still-locked";
	case WD_RECOVERED:	return "recovered";
	}
	return "?";
}

static struct wd_cpu *wd_slot(unsigned cpu)
{
	return cpu < NMIKIT_MAX_CPUS ? &wd_cpus[cpu] : (struct wd_cpu *)0;
}

static uint64_t ld(const _Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

static void st(_Atomic uint64_t *p, uint64_t v)
{
	atomic_store_explicit(p, v, memory_order_relaxed);
}

/* --- configuration ---------------------------------------------------------- */

void watchdog_set_thresh(unsigned seconds)
{
	atomic_store(&wd_thresh_s, seconds);
}

unsigned watchdog_thresh_s(void)
{
	return atomic_load_explicit(&wd_thresh_s, memory_order_relaxed);
}

/* NMI-safe: yes (one load). */
uint64_t watchdog_thresh_ns(void)
{
	return (uint64_t)watchdog_thresh_s() * NS_PER_S;
}

void watchdog_set_enabled(bool hard, bool soft)
{
	atomic_store(&wd_hard_on, hard);
	atomic_store(&wd_soft_on, soft);
}

bool watchdog_hard_enabled(void)
{
	return atomic_load_explicit(&wd_hard_on, memory_order_relaxed) && watchdog_thresh_s();
}

bool watchdog_soft_enabled(void)
{
	return atomic_load_explicit(&wd_soft_on, memory_order_relaxed) && watchdog_thresh_s();
}

void watchdog_set_policy(bool hard_panic, bool soft_panic, bool all_cpu_backtrace)
{
	atomic_store(&wd_hard_panic, hard_panic);
	atomic_store(&wd_soft_panic, soft_panic);
	atomic_store(&wd_all_bt, all_cpu_backtrace);
}

bool watchdog_hard_panic(void) { return atomic_load(&wd_hard_panic); }
bool watchdog_soft_panic(void) { return atomic_load(&wd_soft_panic); }
bool watchdog_all_cpu_backtrace(void) { return atomic_load(&wd_all_bt); }

void watchdog_set_ops(const struct watchdog_ops *ops)
{
	atomic_store_explicit(&wd_ops, ops, memory_order_release);
}

/*
 * NMI-safe: yes.  Starting does not touch the evidence itself (a check may be
 * running): it asks the next check to begin with a fresh sample.
 */
void watchdog_cpu_monitor(unsigned cpu, bool on)
{
	struct wd_cpu *c = wd_slot(cpu);

	if (!c)
		return;
	if (on) {
		atomic_store_explicit(&c->restart, true, memory_order_relaxed);
		st(&c->soft_touch_ns, 0);
	}
	atomic_store_explicit(&c->monitored, on, memory_order_release);
}

bool watchdog_cpu_monitored(unsigned cpu)
{
	struct wd_cpu *c = wd_slot(cpu);

	return c && atomic_load_explicit(&c->monitored, memory_order_acquire);
}

/* --- checks -------------------------------------------------------------------- */

/* Caller holds c->claimed: the evidence starts again, at `since` ns. */
static void wd_forget(struct wd_cpu *c, uint64_t since)
{
	c->reported = false;
	st(&c->stale_ns, since);
}

/*
 * NMI-safe: yes.  The slot is claimed with one exchange that is never waited
 * for (a second checker gets WD_BUSY and the next period tries again), and
 * only the claim holder writes the evidence.
 *
 * The evidence is the time since the previous check before the one that saw
 * the heartbeat move (or the touch): the move happened somewhere in that
 * last interval, so this is the longest the CPU may have gone without a
 * tick.  Deciding on that bound reports a lockup at most one check period
 * after the CPU has been silent for the threshold; a CPU silent for less
 * than (threshold - one period) is never reported.
 */
enum watchdog_verdict watchdog_check(unsigned cpu, uint64_t now_ns, uint64_t heartbeat,
				     uint64_t period_ns)
{
	struct wd_cpu *c = wd_slot(cpu);
	enum watchdog_verdict v;

	if (!c || !watchdog_hard_enabled() ||
	    !atomic_load_explicit(&c->monitored, memory_order_acquire))
		return WD_OFF;
	if (atomic_exchange_explicit(&c->claimed, true, memory_order_acquire))
		return WD_BUSY;
	nk_stat_inc(&c->checks);

	if (atomic_exchange_explicit(&c->restart, false, memory_order_relaxed))
		c->have_sample = false;
	if (!c->have_sample || now_ns < c->last_ns) {
		/* First look (or a clock that went back): only a sample. */
		c->have_sample = true;
		atomic_store_explicit(&c->touched, false, memory_order_relaxed);
		atomic_store_explicit(&c->withdraw, false, memory_order_relaxed);
		wd_forget(c, 0);
		v = WD_FIRST;
	} else {
		uint64_t gap = now_ns - c->last_ns;
		bool late = period_ns && gap > (uint64_t)WATCHDOG_LATE_FACTOR * period_ns;

		/*
		 * The "NMI itself came late" rule: a check long after the
		 * previous one says only that this check was held back (a
		 * stalled vCPU, a source that skipped), not that the CPU was
		 * running without ticking all that time.  Credit one period.
		 */
		if (late) {
			gap = period_ns;
			nk_stat_inc(&c->late);
		}
		if (atomic_exchange_explicit(&c->touched, false, memory_order_relaxed)) {
			nk_stat_inc(&c->touches);
			wd_forget(c, gap);
			v = WD_TOUCHED;
		} else if (atomic_exchange_explicit(&c->withdraw, false, memory_order_relaxed)) {
			wd_forget(c, gap);
			v = WD_OK;
		} else if (heartbeat != c->hb) {
			v = c->reported ? WD_RECOVERED : WD_OK;
			wd_forget(c, gap);
		} else {
			uint64_t stale = ld(&c->stale_ns) + gap;

			st(&c->stale_ns, stale);
			if (stale > ld(&c->max_stale_ns))
				st(&c->max_stale_ns, stale);
			if (c->reported)
				v = WD_STILL_LOCKED;
			else if (stale >= watchdog_thresh_ns()) {
				c->reported = true;
				v = WD_LOCKUP;
			} else {
				v = late ? WD_LATE : WD_STALE;
			}
		}
	}
	c->hb = heartbeat;
	c->last_ns = now_ns;
	st(&c->stat_hb, heartbeat);
	st(&c->stat_last_ns, now_ns);
	atomic_store_explicit(&c->claimed, false, memory_order_release);
	return v;
}

/* NMI-safe: yes (two atomic operations). */
void watchdog_withdraw(unsigned cpu)
{
	struct wd_cpu *c = wd_slot(cpu);

	if (!c)
		return;
	atomic_store_explicit(&c->withdraw, true, memory_order_relaxed);
	nk_atomic_inc(&c->withdrawn);
}

/* NMI-safe: yes.  Only the CPU itself counts its own watchdog NMIs. */
void watchdog_note_nmi(unsigned cpu)
{
	struct wd_cpu *c = wd_slot(cpu);

	if (c)
		nk_stat_inc(&c->nmis);
}

/* --- touch API -------------------------------------------------------------------- */

/* NMI-safe: yes. */
void watchdog_touch_cpu(unsigned cpu)
{
	struct wd_cpu *c = wd_slot(cpu);

	if (!c)
		return;
	atomic_store_explicit(&c->touched, true, memory_order_relaxed);
	st(&c->soft_touch_ns, os_timestamp_ns());
}

void touch_nmi_watchdog(void)
{
	watchdog_touch_cpu(os_cpu_id());
}

void touch_softlockup_watchdog(void)
{
	struct wd_cpu *c = wd_slot(os_cpu_id());

	if (c)
		st(&c->soft_touch_ns, os_timestamp_ns());
}

/* --- soft lockups --------------------------------------------------------------------- */

void watchdog_soft_touch(unsigned cpu, uint64_t now_ns)
{
	struct wd_cpu *c = wd_slot(cpu);

	if (c)
		st(&c->soft_touch_ns, now_ns);
}

enum watchdog_verdict watchdog_soft_check(unsigned cpu, uint64_t now_ns, uint64_t tick_ns,
					  uint64_t *stuck_ns)
{
	struct wd_cpu *c = wd_slot(cpu);
	uint64_t touch, last;

	if (!c || !watchdog_soft_enabled() ||
	    !atomic_load_explicit(&c->monitored, memory_order_acquire)) {
		if (c)
			c->soft_last_tick_ns = 0;
		return WD_OFF;
	}
	last = c->soft_last_tick_ns;
	c->soft_last_tick_ns = now_ns;
	touch = ld(&c->soft_touch_ns);
	if (touch == 0) {
		/* Not yet run since monitoring started: the clock starts now. */
		st(&c->soft_touch_ns, now_ns);
		c->soft_reported = false;
		return WD_FIRST;
	}
	if (touch >= now_ns) {
		/* Touched from another CPU a moment ago. */
		c->soft_reported = false;
		return WD_OK;
	}
	if (last && tick_ns && now_ns - last > (uint64_t)WATCHDOG_LATE_FACTOR * tick_ns) {
		/*
		 * This tick came late: the whole CPU was held up, not just the
		 * thread.  Move the thread's clock forward by the stall (a
		 * compare-exchange: the thread may have run meanwhile).
		 */
		uint64_t moved = touch + (now_ns - last - tick_ns);
		if (moved > now_ns)
			moved = now_ns;
		atomic_compare_exchange_strong_explicit(&c->soft_touch_ns, &touch, moved,
							memory_order_relaxed,
							memory_order_relaxed);
		touch = ld(&c->soft_touch_ns);
		nk_stat_inc(&c->soft_late);
	}
	uint64_t stuck = now_ns - touch;
	if (stuck_ns)
		*stuck_ns = stuck;
	if (stuck <= (uint64_t)WATCHDOG_SOFT_FACTOR * watchdog_thresh_ns()) {
		c->soft_reported = false;
		return WD_OK;
	}
	if (c->soft_reported)
		return WD_STILL_LOCKED;
	c->soft_reported = true;
	return WD_LOCKUP;
}

/* NMI-safe: yes. */
void watchdog_note_soft_lockup(unsigned cpu)
{
	struct wd_cpu *c = wd_slot(cpu);

	if (c) {
		st(&c->last_lockup_ns, os_timestamp_ns());
		nk_atomic_inc(&c->soft_lockups);
	}
}

/* --- reports ------------------------------------------------------------------------ */

/*
 * NMI context, on the locked CPU.  Safe: the log is lock-free, show_regs is
 * the kernel's NMI-safe register dump, the all-CPU backtrace waits a bounded
 * time for the others (and refuses at once if another CPU is already running
 * one), and os_panic() is NMI-safe by contract.
 */
void watchdog_hardlockup_report(unsigned cpu, const char *source, struct nmi_frame *f)
{
	struct wd_cpu *c = wd_slot(cpu);
	const struct watchdog_ops *ops = atomic_load_explicit(&wd_ops, memory_order_acquire);
	uint64_t stale = c ? ld(&c->stale_ns) : 0;

	if (c)
		st(&c->last_lockup_ns, os_timestamp_ns());
	nk_log(NK_LOG_EMERG, "NMI watchdog: Watchdog detected hard LOCKUP on cpu %u", cpu);
	nk_log(NK_LOG_EMERG, "NMI watchdog: cpu %u made no progress for %llu.%03llu s "
	       "(threshold %u s, source %s)", cpu,
	       (unsigned long long)(stale / NS_PER_S),
	       (unsigned long long)(stale % NS_PER_S / 1000000), watchdog_thresh_s(),
	       source ? source : "?");
	if (ops && ops->show_regs)
		ops->show_regs(cpu, f, NK_LOG_EMERG);
	if (c)
		nk_atomic_inc(&c->hard_lockups);
	if (watchdog_all_cpu_backtrace()) {
		nk_log(NK_LOG_EMERG, "NMI backtrace of the other CPUs, from cpu %u:", cpu);
		int err = nmi_backtrace(NULL, NMI_BT_EXCLUDE_SELF, NS_PER_S, NULL);
		if (err)
			nk_log(NK_LOG_EMERG, "NMI watchdog: no all-CPU backtrace: %s",
			       nmi_strerror(err));
	}
	if (watchdog_hard_panic())
		os_panic("Hard LOCKUP");
	nk_log(NK_LOG_EMERG, "---[ end hard LOCKUP on cpu %u ]---", cpu);
}

/* --- statistics ----------------------------------------------------------------------- */

void watchdog_get_stats(unsigned cpu, struct watchdog_cpu_stats *out)
{
	struct wd_cpu *c = wd_slot(cpu);

	*out = (struct watchdog_cpu_stats){ 0 };
	if (!c)
		return;
	out->checks = ld(&c->checks);
	out->nmis = ld(&c->nmis);
	out->late = ld(&c->late);
	out->touched = ld(&c->touches);
	out->withdrawn = ld(&c->withdrawn);
	out->hard_lockups = ld(&c->hard_lockups);
	out->soft_lockups = ld(&c->soft_lockups);
	out->soft_late = ld(&c->soft_late);
	out->heartbeat = ld(&c->stat_hb);
	out->stale_ns = ld(&c->stale_ns);
	out->max_stale_ns = ld(&c->max_stale_ns);
	out->last_check_ns = ld(&c->stat_last_ns);
	out->soft_touch_ns = ld(&c->soft_touch_ns);
	out->last_lockup_ns = ld(&c->last_lockup_ns);
	out->monitored = atomic_load_explicit(&c->monitored, memory_order_relaxed);
}

void watchdog_reset_stats(void)
{
	for (unsigned i = 0; i < NMIKIT_MAX_CPUS; i++) {
		struct wd_cpu *c = &wd_cpus[i];
		st(&c->checks, 0);
		st(&c->nmis, 0);
		st(&c->late, 0);
		st(&c->touches, 0);
		st(&c->withdrawn, 0);
		st(&c->hard_lockups, 0);
		st(&c->soft_lockups, 0);
		st(&c->soft_late, 0);
		st(&c->max_stale_ns, 0);
	}
}

uint64_t watchdog_total_hard_lockups(void)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < NMIKIT_MAX_CPUS; i++)
		n += ld(&wd_cpus[i].hard_lockups);
	return n;
}

uint64_t watchdog_total_soft_lockups(void)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < NMIKIT_MAX_CPUS; i++)
		n += ld(&wd_cpus[i].soft_lockups);
	return n;
}

/* Seconds with milliseconds, as two numbers for "%llu.%03llu". */
#define SEC_MS(ns)	(unsigned long long)((ns) / NS_PER_S), \
			(unsigned long long)((ns) % NS_PER_S / 1000000)

void watchdog_print_stats(nk_write_fn *write, void *arg)
{
	uint64_t now = os_timestamp_ns();

	nk_wprintf(write, arg, "CPU mon   heartbeat     checks       nmis   late  touch  wdrawn"
		   "  hard  soft    stale_s  max_stale_s  thread_ago_s\n");
	for (unsigned cpu = 0; cpu < os_cpu_count() && cpu < NMIKIT_MAX_CPUS; cpu++) {
		struct watchdog_cpu_stats s;
		uint64_t ago;

		watchdog_get_stats(cpu, &s);
		if (!s.monitored && !s.checks && !os_cpu_online(cpu))
			continue;
		ago = s.soft_touch_ns && s.soft_touch_ns <= now ? now - s.soft_touch_ns : 0;
		nk_wprintf(write, arg, "%3u %-3s %11llu %10llu %10llu %6llu %6llu %7llu %5llu %5llu"
			   " %6llu.%03llu %8llu.%03llu %9llu.%03llu\n",
			   cpu, s.monitored ? "yes" : "no",
			   (unsigned long long)s.heartbeat, (unsigned long long)s.checks,
			   (unsigned long long)s.nmis, (unsigned long long)s.late,
			   (unsigned long long)s.touched, (unsigned long long)s.withdrawn,
			   (unsigned long long)s.hard_lockups, (unsigned long long)s.soft_lockups,
			   SEC_MS(s.stale_ns), SEC_MS(s.max_stale_ns), SEC_MS(ago));
	}
}
