/*
 * watchdog_setup.c: the kernel side of the lockup detectors: boot
 * parameters, choosing the hard-lockup source (perf, then the HPET, then the
 * buddy scheme; the IO-APIC on request), the set of monitored CPUs, the
 * per-tick hook, and the control operations behind the `watchdog` command
 * and CPU offline/online.  docs/watchdog.md describes the design.
 *
 * Control runs in task context under one configuration lock; checks run in
 * NMI or tick context and never take it (they read the monitored set and the
 * core's per-CPU slots, which are atomics).
 */
#include <stdatomic.h>

#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/tsc.h>
#include <kernel/panic.h>
#include <kernel/sched.h>
#include <kernel/time.h>
#include <kernel/watchdog.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/nmi_backtrace.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

/* --- parameters ------------------------------------------------------------ */

static const char *const nmi_watchdog_modes[] = { "0", "1", "panic", "nopanic", NULL };
enum { NMI_WD_OFF, NMI_WD_ON, NMI_WD_PANIC, NMI_WD_NOPANIC };
static int nmi_watchdog_mode = NMI_WD_ON;
NK_PARAM_ENUM("nmi_watchdog", nmi_watchdog_mode, nmi_watchdog_modes,
	      "hard lockup detector: 0 off, 1 on, panic: on and panic on a lockup, nopanic: on, report only");

static unsigned watchdog_thresh = 10;
NK_PARAM_UINT("watchdog_thresh", watchdog_thresh, 0, 60,
	      "seconds without progress before a hard lockup is reported (soft: twice that); 0 turns both off");

static const char *const source_names[] = { "auto", "ioapic", "hpet", "buddy", "perf", NULL };
enum { SRC_AUTO, SRC_IOAPIC, SRC_HPET, SRC_BUDDY, SRC_PERF };
static int watchdog_source_param = SRC_AUTO;
NK_PARAM_ENUM("watchdog_source", watchdog_source_param, source_names,
	      "hard lockup source; auto tries perf, hpet, buddy (ioapic only on request)");

static uint64_t watchdog_cpumask[MAX_CPUS / 64] = { ~0ull, ~0ull, ~0ull, ~0ull };
NK_PARAM_CPULIST("watchdog_cpumask", watchdog_cpumask, "CPUs the lockup detectors watch");

static bool softlockup_panic;
NK_PARAM_BOOL("softlockup_panic", softlockup_panic, "panic after a soft lockup report");

static bool hardlockup_all_cpu_backtrace;
NK_PARAM_BOOL("hardlockup_all_cpu_backtrace", hardlockup_all_cpu_backtrace,
	      "after a hard lockup report, NMI-backtrace every other CPU");

static bool nosoftlockup;
NK_PARAM_FLAG("nosoftlockup", nosoftlockup, "turn the soft lockup detector off");

/* --- state ----------------------------------------------------------------------- */

static const struct wd_source *const auto_order[] = {
	&wd_source_perf, &wd_source_hpet, &wd_source_buddy,
};
static const struct wd_source *const all_sources[] = {
	&wd_source_ioapic, &wd_source_hpet, &wd_source_buddy, &wd_source_perf,
};

static const struct wd_source *_Atomic wd_src;	/* chosen source, NULL: none */
static _Atomic bool wd_on;		/* the detectors are wanted on */
static _Atomic bool wd_running;		/* the hard-lockup source is started */
static _Atomic bool wd_mon[MAX_CPUS];	/* monitored now */
static _Atomic int wd_ring[MAX_CPUS];	/* next monitored CPU after this one */
static _Atomic int wd_first = -1;
static _Atomic unsigned wd_count;
static _Atomic bool cfg_busy;
static bool wd_inited;

/* --- small services for the sources ----------------------------------------------- */

/* NMI-safe: yes (two per-CPU loads). */
uint64_t wd_heartbeat(unsigned cpu)
{
	if (cpu >= MAX_CPUS)
		return 0;
	return percpu_area[cpu].apic_ticks + percpu_area[cpu].irq0_ticks;
}

bool wd_monitored(unsigned cpu)
{
	return cpu < MAX_CPUS && atomic_load_explicit(&wd_mon[cpu], memory_order_acquire);
}

unsigned wd_monitored_count(void)
{
	return atomic_load_explicit(&wd_count, memory_order_acquire);
}

int wd_first_monitored(void)
{
	return atomic_load_explicit(&wd_first, memory_order_acquire);
}

int wd_next_monitored(unsigned cpu)
{
	return cpu < MAX_CPUS ? atomic_load_explicit(&wd_ring[cpu], memory_order_acquire) : -1;
}

bool wd_panicking(void)
{
	return panic_in_progress();
}

#define WD_COST_RING	1024
static uint64_t wd_costs[WD_COST_RING];
static _Atomic uint64_t wd_cost_next;

/* NMI-safe: yes (one fetch-add and a store into a ring). */
void wd_cost_record(uint64_t tsc)
{
	uint64_t i = atomic_fetch_add_explicit(&wd_cost_next, 1, memory_order_relaxed);
	wd_costs[i % WD_COST_RING] = tsc;
}

unsigned wd_cost_samples(uint64_t *out, unsigned max)
{
	uint64_t end = atomic_load(&wd_cost_next);
	uint64_t n = end < WD_COST_RING ? end : WD_COST_RING;

	if (n > max)
		n = max;
	for (uint64_t i = 0; i < n; i++)
		out[i] = wd_costs[(end - n + i) % WD_COST_RING];
	return (unsigned)n;
}

void wd_cost_reset(void)
{
	atomic_store(&wd_cost_next, 0);
}

bool wd_wait(bool (*cond)(void *), void *arg, uint64_t limit_ns)
{
	uint64_t end = tsc_ns() + limit_ns;

	while (!cond(arg)) {
		if (tsc_ns() >= end)
			return cond(arg);
		cpu_relax();
	}
	return true;
}

/*
 * NMI context on `cpu`.  Safe: the core's check touches only this CPU's slot
 * with atomics; the report is NMI-safe by contract.
 */
enum watchdog_verdict wd_self_check(unsigned cpu, struct nmi_frame *f, uint64_t period_ns,
				    const char *source)
{
	enum watchdog_verdict v;

	watchdog_note_nmi(cpu);
	if (wd_panicking())
		return WD_OFF;
	v = watchdog_check(cpu, tsc_ns(), wd_heartbeat(cpu), period_ns);
	if (v == WD_LOCKUP)
		watchdog_hardlockup_report(cpu, source, f);
	else if (v == WD_RECOVERED)
		pr_warn("NMI watchdog: cpu %u is making progress again", cpu);
	return v;
}

/* --- the configuration lock (task context only) ------------------------------------ */

static void cfg_lock(void)
{
	BUG_ON(nmi_in_nmi());
	while (atomic_exchange_explicit(&cfg_busy, true, memory_order_acquire)) {
		struct task *t = task_current();
		if (t && !t->is_idle && irqs_enabled())
			sleep_ms(1);
		else
			cpu_relax();
	}
}

static void cfg_unlock(void)
{
	atomic_store_explicit(&cfg_busy, false, memory_order_release);
}

/* --- the monitored set ------------------------------------------------------------ */

static bool wants_cpu(unsigned cpu)
{
	return cpu < cpus_possible && nk_cpulist_test(watchdog_cpumask, cpu) &&
	       os_cpu_online(cpu) && !cpu_is_offline(cpu);
}

/* Recompute who is monitored and tell the core.  Config lock held. */
static void compute_monitored(bool on)
{
	int first = -1, prev = -1;
	unsigned n = 0;

	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++) {
		bool m = on && wants_cpu(cpu);
		bool was = atomic_load(&wd_mon[cpu]);

		atomic_store_explicit(&wd_ring[cpu], -1, memory_order_relaxed);
		if (m != was) {
			watchdog_cpu_monitor(cpu, m);
			atomic_store_explicit(&wd_mon[cpu], m, memory_order_release);
		}
		if (!m)
			continue;
		n++;
		if (first < 0)
			first = (int)cpu;
		if (prev >= 0)
			atomic_store_explicit(&wd_ring[prev], (int)cpu, memory_order_relaxed);
		prev = (int)cpu;
	}
	if (prev >= 0)
		atomic_store_explicit(&wd_ring[prev], first, memory_order_relaxed);
	atomic_store_explicit(&wd_first, first, memory_order_release);
	atomic_store_explicit(&wd_count, n, memory_order_release);
}

/* --- control ------------------------------------------------------------------------- */

const struct wd_source *watchdog_source(void)
{
	return atomic_load(&wd_src);
}

const char *watchdog_source_name(void)
{
	const struct wd_source *s = watchdog_source();
	return s ? s->name : "none";
}

bool watchdog_running(void)
{
	return atomic_load(&wd_on);
}

/* Config lock held: stop the source and stop monitoring. */
static void stop_locked(void)
{
	const struct wd_source *s = watchdog_source();

	if (atomic_load(&wd_running) && s)
		s->stop();
	atomic_store(&wd_running, false);
	compute_monitored(false);
}

/* Config lock held: monitor the CPUs, start the source if there is one. */
static int start_locked(void)
{
	const struct wd_source *s = watchdog_source();

	compute_monitored(true);
	if (!s || atomic_load(&wd_running))
		return 0;
	if (s->start() != 0)
		return -1;
	atomic_store(&wd_running, true);
	return 0;
}

void watchdog_stop(void)
{
	cfg_lock();
	atomic_store(&wd_on, false);
	stop_locked();
	watchdog_set_enabled(false, false);
	cfg_unlock();
	pr_info("NMI watchdog: stopped");
}

int watchdog_start(void)
{
	int err;

	cfg_lock();
	atomic_store(&wd_on, true);
	watchdog_set_enabled(watchdog_source() != NULL, !nosoftlockup);
	err = start_locked();
	cfg_unlock();
	if (!err)
		pr_info("NMI watchdog: started, source %s, threshold %u s, %u CPUs watched",
			watchdog_source_name(), watchdog_thresh_s(), wd_monitored_count());
	return err;
}

int watchdog_set_threshold(unsigned seconds)
{
	int err = 0;

	if (seconds > 60)
		return -1;
	cfg_lock();
	bool on = atomic_load(&wd_on);
	if (on)
		stop_locked();
	watchdog_set_thresh(seconds);
	watchdog_thresh = seconds;
	if (on && seconds)
		err = start_locked();
	cfg_unlock();
	pr_info("NMI watchdog: threshold %u s%s", seconds, seconds ? "" : " (detectors off)");
	return err;
}

static const struct wd_source *source_by_name(const char *name)
{
	for (unsigned i = 0; i < NK_ARRAY_SIZE(all_sources); i++)
		if (!__builtin_strcmp(all_sources[i]->name, name))
			return all_sources[i];
	return NULL;
}

/* Pick per `name`, saying why each rejected candidate cannot run.  Config lock held. */
static const struct wd_source *choose(const char *name)
{
	if (__builtin_strcmp(name, "auto") != 0) {
		const struct wd_source *s = source_by_name(name);
		const char *why = s ? s->unavailable() : "no such source";

		if (!why)
			return s;
		pr_warn("NMI watchdog: %s unavailable: %s; choosing automatically", name, why);
	}
	for (unsigned i = 0; i < NK_ARRAY_SIZE(auto_order); i++) {
		const char *why = auto_order[i]->unavailable();
		if (!why) {
			pr_info("NMI watchdog: source %s (chosen automatically)", auto_order[i]->name);
			return auto_order[i];
		}
		pr_info("NMI watchdog: %s unavailable: %s", auto_order[i]->name, why);
	}
	pr_warn("NMI watchdog: no hard lockup source chosen automatically "
		"(watchdog_source=ioapic routes the PIT's IRQ0 as an NMI on request)");
	return NULL;
}

int watchdog_use_source(const char *name)
{
	int err = 0;

	if (__builtin_strcmp(name, "auto") != 0 && !source_by_name(name)) {
		pr_err("NMI watchdog: no source called '%s'", name);
		return -1;
	}
	cfg_lock();
	bool on = atomic_load(&wd_on);
	if (on)
		stop_locked();
	const struct wd_source *s = choose(name);
	atomic_store(&wd_src, s);
	watchdog_set_enabled(s != NULL, !nosoftlockup);
	if (on)
		err = start_locked();
	cfg_unlock();
	if (s)
		pr_info("NMI watchdog: source %s%s", s->name, err ? " did not start" : "");
	return s ? err : -1;
}

/* A CPU left or rejoined the online set (cpu_is_offline() already says so). */
static void hotplug_changed(void)
{
	if (!wd_inited)
		return;
	cfg_lock();
	if (atomic_load(&wd_on)) {
		const struct wd_source *s = watchdog_source();

		if (s && atomic_load(&wd_running) && s->reconfigure) {
			compute_monitored(true);
			s->reconfigure();
		} else {
			if (s && atomic_load(&wd_running))
				s->stop();
			atomic_store(&wd_running, false);
			start_locked();
		}
	}
	cfg_unlock();
}

void watchdog_cpu_going_offline(unsigned cpu)
{
	(void)cpu;
	hotplug_changed();
}

void watchdog_cpu_back_online(unsigned cpu)
{
	(void)cpu;
	hotplug_changed();
}

/* --- the NMI handlers ------------------------------------------------------------- */

/*
 * The watchdog's NMIs go through the core's doorbell (<nmikit/nmi.h>,
 * docs/watchdog.md), not the local chain: most NMIs are none of its
 * business, and the dispatch tests one per-CPU word on every NMI where a
 * chain handler cost every NMI a call.  Its three bits:
 *   WD_BELL_BACKTRACE  rung by the backtrace's `ask` hook before its NMI;
 *   WD_BELL_SOURCE     rung by the chosen source before an NMI it sends,
 *                      and listened to while its hardware (HPET comparator,
 *                      PMU counter) sends NMIs here;
 *   WD_BELL_PARKED     listened to by a CPU parked offline: it counts every
 *                      NMI and claims `cpu online`'s wake-up.
 * Why it is race-free (the core's side is in core/nmi.c, nmi_bells_run()):
 *  - A sender writes its request state (release), then rings (a locked
 *    OR, a full barrier on x86-64), then sends the NMI.  The dispatch on the
 *    target either loads the word after the OR - and its take (acquire)
 *    then makes the state visible - or before it; then the sender's NMI,
 *    sent after the OR, is still to come (latched behind the running
 *    handler, or delivered by the core's lost-NMI probe if the APIC dropped
 *    it), and its dispatch sees the bit.  Never missed.
 *  - The dispatch takes every rung bit with one atomic read-modify-write:
 *    two senders that ring at once both set their bit (OR, not store), and
 *    one NMI takes both; a bit cannot be taken twice.  Taking a bit does
 *    not claim anything by itself: each consumer still takes its own state
 *    with an exchange, so an NMI that took the bit early (an unrelated NMI
 *    between the OR and the send) serves the request, and the sender's own
 *    NMI then finds nothing - exactly what the state exchanges gave when
 *    every NMI looked at every state.
 *  - A request abandoned by its sender (a backtrace timed out: BT_LATE; a
 *    buddy suspect given up: BUDDY_GAVE_UP; a flush that timed out) leaves
 *    its bit ringing if no NMI came: the late NMI finds the bit and the
 *    "claim quietly" mark, as before.  A stale bit costs one take.
 *  - Listen bits are per CPU and sticky: set before the hardware (or the
 *    park loop) can deliver NMIs that matter here, cleared after it cannot.
 *  - A CPU going offline parks with WD_LISTEN_PARKED, so every NMI there is
 *    counted and `cpu online`'s wake-up is claimed; it clears it after
 *    leaving the loop.  Requests rung while it is parked are served by its
 *    next NMI like anywhere else.
 *  - A source switch: the old source's stop() flushes and clears its listen
 *    bits; a request bit it left is served by the new source's nmi(), which
 *    finds none of its own state and claims nothing.
 */
enum { WD_BELL_BACKTRACE = 0, WD_BELL_SOURCE = 1, WD_BELL_PARKED = 2 };

/* NMI-safe: yes (one locked OR per bit on `cpu`'s word; callers ring, then send). */
void wd_nmi_request(unsigned cpu, uint32_t req)
{
	if (req & WD_REQ_BACKTRACE)
		nmi_doorbell_ring(cpu, WD_BELL_BACKTRACE);
	if (req & WD_REQ_SOURCE)
		nmi_doorbell_ring(cpu, WD_BELL_SOURCE);
}

/* NMI-safe: yes (one locked OR or AND per bit on `cpu`'s word). */
void wd_nmi_listen(unsigned cpu, uint32_t bits, bool on)
{
	if (bits & WD_LISTEN_SOURCE)
		nmi_doorbell_listen(cpu, WD_BELL_SOURCE, on);
	if (bits & WD_LISTEN_PARKED)
		nmi_doorbell_listen(cpu, WD_BELL_PARKED, on);
}

/* Which of `bits` (WD_LISTEN_*) `cpu` listens to now.  Any context: one load. */
uint32_t wd_nmi_listening(unsigned cpu)
{
	uint64_t w = nmi_doorbell_read(cpu);
	uint32_t bits = 0;

	if (w & (1ull << (32 + WD_BELL_SOURCE)))
		bits |= WD_LISTEN_SOURCE;
	if (w & (1ull << (32 + WD_BELL_PARKED)))
		bits |= WD_LISTEN_PARKED;
	return bits;
}

/* WD_BELL_SOURCE: the chosen source's NMI hook.  NMI context (its own exchanges). */
static int wd_bell_source(unsigned type, struct nmi_frame *f)
{
	const struct wd_source *s = atomic_load_explicit(&wd_src, memory_order_acquire);

	(void)type;
	return s && s->nmi ? s->nmi(this_cpu_id(), f) : NMI_DONE;
}

/* WD_BELL_PARKED: a parked CPU's NMIs.  NMI context. */
static int wd_bell_parked(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	return cpu_hotplug_nmi(this_cpu_id());
}

/* The unknown chain: the chosen source's last look.  NMI context. */
static int wd_nmi_unknown(unsigned type, struct nmi_frame *f)
{
	const struct wd_source *s = atomic_load_explicit(&wd_src, memory_order_acquire);

	(void)type;
	return s && s->nmi_unknown ? s->nmi_unknown(this_cpu_id(), f) : NMI_DONE;
}

/* --- boot and tick ---------------------------------------------------------------- */

void watchdog_kernel_init(void)
{
	bool hard = nmi_watchdog_mode != NMI_WD_OFF;

	watchdog_set_thresh(watchdog_thresh);
	watchdog_set_policy(nmi_watchdog_mode == NMI_WD_PANIC, softlockup_panic,
			    hardlockup_all_cpu_backtrace);
	wd_report_init();
	if (nmi_doorbell_register(WD_BELL_BACKTRACE, "wd-backtrace", nmi_backtrace_nmi) != NMI_OK ||
	    nmi_doorbell_register(WD_BELL_SOURCE, "wd-source", wd_bell_source) != NMI_OK ||
	    nmi_doorbell_register(WD_BELL_PARKED, "wd-parked", wd_bell_parked) != NMI_OK ||
	    nmi_register(NMI_UNKNOWN, "watchdog", wd_nmi_unknown, 0) != NMI_OK)
		pr_err("NMI watchdog: cannot register its NMI handlers");
	wd_inited = true;

	cfg_lock();
	if (hard && watchdog_thresh)
		atomic_store(&wd_src, choose(source_names[watchdog_source_param]));
	watchdog_set_enabled(watchdog_source() != NULL, !nosoftlockup);
	if (watchdog_thresh && (watchdog_source() || !nosoftlockup)) {
		atomic_store(&wd_on, true);
		if (start_locked() != 0)
			pr_err("NMI watchdog: source %s did not start", watchdog_source_name());
	}
	cfg_unlock();

	softlockup_init();
	if (!watchdog_thresh)
		pr_info("NMI watchdog: off (watchdog_thresh=0)");
	else if (!watchdog_source())
		pr_info("NMI watchdog: hard lockup detector off%s; soft lockup detector %s",
			hard ? " (no source)" : " (nmi_watchdog=0)", nosoftlockup ? "off" : "on");
	else
		pr_info("NMI watchdog: enabled on %u CPUs, source %s, threshold %u s, "
			"each CPU checked every %llu ms; %s on lockup; soft lockup detector %s",
			wd_monitored_count(), watchdog_source_name(), watchdog_thresh,
			(unsigned long long)(watchdog_source()->period_ns() / 1000000),
			nmi_watchdog_mode == NMI_WD_PANIC ? "panic" : "report and carry on",
			nosoftlockup ? "off" : "on");
}

/* Every CPU's timer tick, interrupt context, interrupts off. */
void watchdog_kernel_tick(struct regs *r)
{
	unsigned cpu = this_cpu_id();
	const struct wd_source *s;

	if (!wd_inited || wd_panicking())
		return;
	softlockup_tick(cpu, r);
	s = atomic_load_explicit(&wd_src, memory_order_relaxed);
	if (s && s->tick && atomic_load_explicit(&wd_running, memory_order_relaxed))
		s->tick(cpu);
}
