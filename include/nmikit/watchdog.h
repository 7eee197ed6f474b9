/*
 * watchdog.h: the portable lockup-detector core.  Per-CPU evidence that a
 * CPU has stopped making progress (its heartbeat, the timer tick count, did
 * not move), the touch API for code that legitimately runs long with
 * interrupts off, the check decision with its "the check itself came late"
 * rule, lockup counts and the report policy.  The sources that drive the
 * checks (NMI timers, the buddy tick, the PMU) live with their hardware;
 * docs/watchdog.md describes the whole detector.
 */
#ifndef NMIKIT_WATCHDOG_H
#define NMIKIT_WATCHDOG_H

#include <stdbool.h>
#include <stdint.h>

#include <nmikit/format.h>
#include <nmikit/nmi.h>

/*
 * A check that finds more than this many check periods since the previous
 * check of the same CPU "came late": the host (or a stuck NMI path) held it
 * back, so the time in between is no evidence about the CPU.  It is credited
 * as one period only.
 */
#define WATCHDOG_LATE_FACTOR	3u

/* Soft lockup: the watchdog thread has not run for this many thresholds. */
#define WATCHDOG_SOFT_FACTOR	2u

/* The result of one check. */
enum watchdog_verdict {
	WD_OFF = 0,		/* detector off, or the CPU is not monitored */
	WD_BUSY,		/* another context is checking this CPU right now */
	WD_FIRST,		/* first check since monitoring (re)started */
	WD_OK,			/* the heartbeat moved */
	WD_TOUCHED,		/* touched since the last check: evidence forgotten */
	WD_STALE,		/* no progress, not yet for the threshold */
	WD_LATE,		/* no progress, but this check came late (see above) */
	WD_LOCKUP,		/* no progress for the threshold: report it now */
	WD_STILL_LOCKED,	/* still no progress, already reported */
	WD_RECOVERED,		/* progress again after a reported lockup */
};

const char *watchdog_verdict_name(enum watchdog_verdict v);

/* --- configuration ------------------------------------------------------ */

/*
 * Threshold in seconds (0 turns both detectors off).  Takes effect at the
 * next check; sources that derive their period from it must be restarted by
 * their owner.  Not for NMI context (sources read it there).
 */
void watchdog_set_thresh(unsigned seconds);
unsigned watchdog_thresh_s(void);
uint64_t watchdog_thresh_ns(void);	/* NMI-safe: yes */

/* Hard (NMI) and soft lockup detectors on/off.  NMI-safe reads. */
void watchdog_set_enabled(bool hard, bool soft);
bool watchdog_hard_enabled(void);
bool watchdog_soft_enabled(void);

/* Policies: panic after a hard / soft lockup report; all-CPU backtrace after a hard one. */
void watchdog_set_policy(bool hard_panic, bool soft_panic, bool all_cpu_backtrace);
bool watchdog_hard_panic(void);
bool watchdog_soft_panic(void);
bool watchdog_all_cpu_backtrace(void);

/*
 * Start / stop monitoring `cpu`.  Starting forgets all evidence: the next
 * check of that CPU only takes a first sample (WD_FIRST).  The caller (the
 * kernel's source control) makes sure no check of that CPU runs concurrently
 * with a start, or accepts that one check is lost.  NMI-safe: yes.
 */
void watchdog_cpu_monitor(unsigned cpu, bool on);
bool watchdog_cpu_monitored(unsigned cpu);

/* --- checks ----------------------------------------------------------------- */

/*
 * Check `cpu`: `heartbeat` is its progress counter read now (the kernel sums
 * its local APIC and IRQ0 ticks), `now_ns` os_timestamp_ns(), `period_ns`
 * the interval at which this source checks that CPU.  At most one context
 * checks a given CPU at a time (a second one gets WD_BUSY).  Evidence is the
 * time since the last check that saw progress, each check adding the time
 * since the previous one, except that a check more than
 * WATCHDOG_LATE_FACTOR periods after the previous one adds one period only.
 * WD_LOCKUP is returned once per lockup: until the heartbeat moves again (or
 * the CPU is touched) further checks say WD_STILL_LOCKED.
 * NMI-safe: yes (this CPU's slot, atomics, no waiting).
 */
enum watchdog_verdict watchdog_check(unsigned cpu, uint64_t now_ns, uint64_t heartbeat,
				     uint64_t period_ns);

/*
 * A WD_LOCKUP that the source could not confirm (the buddy's NMI to the
 * suspect came late, or found it making progress): forget the evidence at
 * the next check and count it as withdrawn.  NMI-safe: yes.
 */
void watchdog_withdraw(unsigned cpu);

/* Count one NMI that a watchdog source took on this CPU.  NMI-safe: yes. */
void watchdog_note_nmi(unsigned cpu);

/* --- touch API ---------------------------------------------------------------- */

/*
 * For code that legitimately keeps interrupts off (or the scheduler away)
 * for long: the calling CPU's current evidence is forgotten at its next check.
 * touch_nmi_watchdog() covers both detectors, touch_softlockup_watchdog()
 * only the soft one.  Call it at least once per threshold.  NMI-safe: yes.
 */
void touch_nmi_watchdog(void);
void touch_softlockup_watchdog(void);
/* Same for another CPU (e.g. one known to be parked on purpose). */
void watchdog_touch_cpu(unsigned cpu);

/* --- soft lockups ----------------------------------------------------------- */

/*
 * The per-CPU watchdog thread has just run on `cpu`.  NMI-safe: yes.
 */
void watchdog_soft_touch(unsigned cpu, uint64_t now_ns);

/*
 * Called by `cpu`'s own timer tick: has its watchdog thread been kept from
 * running for WATCHDOG_SOFT_FACTOR thresholds?  `tick_ns` is the tick period;
 * a tick that came more than WATCHDOG_LATE_FACTOR periods after the previous
 * one (the vCPU was not running) moves the thread's last run forward by the
 * gap, so a stall of the whole CPU is not charged to the scheduler.  Returns
 * WD_LOCKUP once per episode, with *stuck_ns the time since the thread last
 * ran.  Interrupt context on `cpu`.
 */
enum watchdog_verdict watchdog_soft_check(unsigned cpu, uint64_t now_ns, uint64_t tick_ns,
					  uint64_t *stuck_ns);

/* --- reports ------------------------------------------------------------------ */

/*
 * What the core needs from its kernel to write a report.  show_regs prints
 * the interrupted context of `f` (registers, the task, a symbolized call
 * trace) at `level`; it runs in NMI context on the locked CPU itself.
 */
struct watchdog_ops {
	void (*show_regs)(unsigned cpu, const struct nmi_frame *f, int level);
};
void watchdog_set_ops(const struct watchdog_ops *ops);

/*
 * The hard lockup report, on the locked CPU in its own NMI (`f` is that NMI's
 * frame): "NMI watchdog: Watchdog detected hard LOCKUP on cpu N", its
 * registers and backtrace, then, with the all-CPU backtrace policy, every
 * other CPU's; then os_panic("Hard LOCKUP") or carry on, per the policy.
 * `source` names the detector in the report.  NMI-safe: yes.
 */
void watchdog_hardlockup_report(unsigned cpu, const char *source, struct nmi_frame *f);

/* Count a soft lockup report (the kernel prints it) and note its time.  NMI-safe: yes. */
void watchdog_note_soft_lockup(unsigned cpu);

/* --- statistics ----------------------------------------------------------------- */

struct watchdog_cpu_stats {
	uint64_t checks;	/* hard-lockup checks of this CPU */
	uint64_t nmis;		/* watchdog NMIs this CPU took */
	uint64_t late;		/* checks that came late (credited one period) */
	uint64_t touched;	/* checks that found the CPU touched */
	uint64_t withdrawn;	/* suspected lockups the source did not confirm */
	uint64_t hard_lockups;	/* hard lockups reported */
	uint64_t soft_lockups;	/* soft lockups reported */
	uint64_t soft_late;	/* ticks found late by the soft check */
	uint64_t heartbeat;	/* heartbeat at the last check */
	uint64_t stale_ns;	/* current evidence */
	uint64_t max_stale_ns;	/* longest evidence ever gathered on this CPU */
	uint64_t last_check_ns;	/* time of the last check */
	uint64_t soft_touch_ns;	/* last run of the watchdog thread */
	uint64_t last_lockup_ns;/* when the last hard or soft lockup report began */
	bool monitored;
};

/* Copy `cpu`'s counters (zeros for a bad CPU). */
void watchdog_get_stats(unsigned cpu, struct watchdog_cpu_stats *out);
/* Zero the counters of every CPU (tests); evidence is kept. */
void watchdog_reset_stats(void);
/* Sum of hard / soft lockups reported on all CPUs. */
uint64_t watchdog_total_hard_lockups(void);
uint64_t watchdog_total_soft_lockups(void);

/* One row per CPU that is or was monitored, for the shell. */
void watchdog_print_stats(nk_write_fn *write, void *arg);

#endif
