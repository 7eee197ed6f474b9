/*
 * watchdog.h: the testbed kernel's lockup detectors around the portable core
 * (<nmikit/watchdog.h>): the hard-lockup sources (IO-APIC, HPET, buddy,
 * PMU), their selection and control, the soft-lockup threads, the register
 * dumps and captures behind the reports and all-CPU backtraces, and CPU
 * offline/online.  docs/watchdog.md describes all of it.
 */
#ifndef KERNEL_WATCHDOG_H
#define KERNEL_WATCHDOG_H

#include <stdbool.h>
#include <stdint.h>

#include <nmikit/nmi.h>
#include <nmikit/watchdog.h>

struct regs;

/* --- hard-lockup sources -------------------------------------------------- */

/*
 * A source of checks.  All hooks run in task context under the watchdog's
 * configuration lock (never in NMI context), except where noted.
 */
struct wd_source {
	const char *name;
	/* NULL when this machine can run the source; else why not (one sentence). */
	const char *(*unavailable)(void);
	/* Start checking every monitored CPU (wd_monitored()); 0, or -1 after saying why. */
	int (*start)(void);
	/* Stop; when it returns, no check of this source runs any more. */
	void (*stop)(void);
	/* The monitored set changed (a CPU going offline or back); NULL: stop + start. */
	void (*reconfigure)(void);
	/* How often each monitored CPU is checked, in ns, while running. */
	uint64_t (*period_ns)(void);
	/* Extra lines for the `watchdog` command (may be NULL). */
	void (*show)(void);
	/* Every tick of every CPU while the source runs, interrupts off (may be NULL). */
	void (*tick)(unsigned cpu);
	/* Extra time between the decision and the report (buddy's confirmation); may be NULL. */
	uint64_t (*confirm_ns)(void);
	/* NMIs it claimed on the core's unknown chain (counted "unknown" there); may be NULL. */
	uint64_t (*unknown_claims)(void);
	/*
	 * NMI context, on `cpu`, while this is the chosen source, for an NMI
	 * that finds WD_REQ_SOURCE or WD_LISTEN_SOURCE set in `cpu`'s doorbell
	 * (see wd_nmi_request()): how many events it claims.  Every NMI the
	 * source sends itself must ring WD_REQ_SOURCE first; a CPU its hardware
	 * delivers NMIs to must carry WD_LISTEN_SOURCE while it does.
	 */
	int (*nmi)(unsigned cpu, struct nmi_frame *f);
	/* Same on the unknown chain (an NMI nothing else explained); may be NULL. */
	int (*nmi_unknown)(unsigned cpu, struct nmi_frame *f);
};

extern const struct wd_source wd_source_ioapic;	/* arch/x86_64/watchdog_ioapic.c */
extern const struct wd_source wd_source_hpet;	/* arch/x86_64/watchdog_hpet.c */
extern const struct wd_source wd_source_perf;	/* arch/x86_64/watchdog_perf.c */
extern const struct wd_source wd_source_buddy;	/* kernel/watchdog_buddy.c */

/* --- what the sources use (kernel/watchdog_setup.c) --------------------------- */

/*
 * The heartbeat of `cpu`: its local APIC ticks plus the PIT/IRQ0 ticks it
 * took (the 2.6.24 sum: it moves whichever tick is running).  NMI-safe: yes.
 */
uint64_t wd_heartbeat(unsigned cpu);

/* `cpu` is monitored now (cpumask, online, detector running).  NMI-safe: yes. */
bool wd_monitored(unsigned cpu);
unsigned wd_monitored_count(void);
/* The first monitored CPU, and the one after `cpu` (wrapping); -1 if none. */
int wd_first_monitored(void);
int wd_next_monitored(unsigned cpu);

/*
 * A source's NMI on `cpu` checks `cpu` itself: the core's decision, and on
 * WD_LOCKUP the report in this very NMI.  Counts the NMI and its cost.
 * NMI context on `cpu`.
 */
enum watchdog_verdict wd_self_check(unsigned cpu, struct nmi_frame *f, uint64_t period_ns,
				    const char *source);

/* Cost of one check path in TSC ticks (instructions under icount), for `make bench`. */
void wd_cost_record(uint64_t tsc);
/* Copy up to `max` recorded costs (newest last); returns how many. */
unsigned wd_cost_samples(uint64_t *out, unsigned max);
void wd_cost_reset(void);

/* The watchdog's own wait: bounded, PAUSE; true when cond() became true. */
bool wd_wait(bool (*cond)(void *), void *arg, uint64_t limit_ns);

/*
 * The watchdog's bits in the core's per-CPU NMI doorbell (nmi_doorbell_*()
 * in <nmikit/nmi.h>).  The watchdog has no handler on the local chain: the
 * core tests the doorbell word once per NMI and calls the watchdog's
 * callbacks only for bits that are set, so an NMI that is none of the
 * watchdog's business costs it nothing.
 *   request bits: set by a sender AFTER it wrote what it asks (its own
 *     per-CPU state, release) and BEFORE it sends the NMI; the handler takes
 *     them all with one exchange and then reads that state.  A bit is only
 *     "look": the state itself says what, if anything, is still wanted.
 *   listen bits: sticky, set while NMIs arrive at this CPU from something
 *     that cannot ring (a timer's or counter's hardware) or while every NMI
 *     matters (a parked CPU counts them); every NMI then runs the consumer.
 * NMI-safe: yes (one locked OR / AND on the target CPU's word).
 */
#define WD_REQ_BACKTRACE	(1u << 0)	/* nmi_backtrace() asked this CPU */
#define WD_REQ_SOURCE		(1u << 1)	/* the chosen source sent this CPU an NMI */
#define WD_LISTEN_SOURCE	(1u << 0)	/* the source's hardware NMIs reach this CPU */
#define WD_LISTEN_PARKED	(1u << 1)	/* parked offline: count NMIs, claim the wake-up */
void wd_nmi_request(unsigned cpu, uint32_t req);
void wd_nmi_listen(unsigned cpu, uint32_t bits, bool on);
uint32_t wd_nmi_listening(unsigned cpu);	/* the WD_LISTEN_* bits `cpu` has now */

/* Whether a panic is under way (no checks then: CPUs are being stopped). */
bool wd_panicking(void);

/* --- control (task context) --------------------------------------------------- */

/* Boot, end of Step 9: parameters, source selection, soft-lockup threads. */
void watchdog_kernel_init(void);

/* The timer tick on every CPU, interrupts off: buddy and soft-lockup checks. */
void watchdog_kernel_tick(struct regs *r);

const struct wd_source *watchdog_source(void);
const char *watchdog_source_name(void);

/*
 * Choose a source by name ("auto", "ioapic", "hpet", "buddy", "perf"),
 * stopping the running one; prints what it chose and why.  0 or -1.
 */
int watchdog_use_source(const char *name);
/* Stop / start the hard detector (and the soft one with it). */
void watchdog_stop(void);
int watchdog_start(void);
bool watchdog_running(void);
/* New threshold in seconds (1-60, or 0: off), applied to the running source. */
int watchdog_set_threshold(unsigned seconds);

/* CPU hot-plug (kernel/cpu_hotplug.c calls these). */
void watchdog_cpu_going_offline(unsigned cpu);
void watchdog_cpu_back_online(unsigned cpu);

/* --- reports (kernel/watchdog_report.c) ----------------------------------------- */

/* "CPU: N PID: P Comm: NAME", registers, call trace of f's context.  NMI-safe: yes. */
void wd_show_regs(unsigned cpu, const struct nmi_frame *f, int level);
/* Same from a struct regs (soft lockups: the tick's interrupted context). */
void wd_show_regs_r(unsigned cpu, const struct regs *r, int level);
/* Install the core's report and all-CPU backtrace hooks. */
void wd_report_init(void);

/* --- soft lockups (kernel/softlockup.c) ----------------------------------------- */

void softlockup_init(void);
void softlockup_tick(unsigned cpu, struct regs *r);
/* Threads created / CPUs watched. */
unsigned softlockup_threads(void);

/* --- CPU offline / online (kernel/cpu_hotplug.c) --------------------------------- */

/* Take `cpu` offline / bring it back; 0, or -1 after saying why.  Task context. */
int cpu_offline(unsigned cpu);
int cpu_online(unsigned cpu);
/* True while `cpu` is parked offline.  NMI-safe: yes. */
bool cpu_is_offline(unsigned cpu);
/* The watchdog's NMI handler asks this on every NMI of a parked CPU: claims `cpu online`'s wake-up. */
int cpu_hotplug_nmi(unsigned cpu);

/* --- test support (kernel/watchdog_tests.c) ------------------------------------------ */

/* A deliberate lockup on one CPU, for the tests and `watchdog lockup`. */
struct wd_spin {
	uint64_t max_ns;		/* spin at most this long */
	uint64_t touch_every_ns;	/* touch_nmi_watchdog() this often (0: never) */
	bool until_detected;		/* stop as soon as a lockup of this CPU is reported */
	/* Results. */
	unsigned cpu;
	uint64_t t_start, t_end;	/* tsc_ns() */
	bool detected;
};
/* Interrupts off, spinning (a hard lockup unless touched). */
void watchdog_test_spin_irqs_off(struct wd_spin *s);
/* Preemption off, interrupts on (a soft lockup). */
void watchdog_test_spin_preempt_off(struct wd_spin *s);
/* Run one of them on `cpu` in a pinned thread and wait for it; false if it could not start. */
bool watchdog_test_run_spin(unsigned cpu, bool hard, struct wd_spin *s);

/* --- shell ------------------------------------------------------------------------- */

/* `nmi backtrace [CPUS]` (kernel/watchdog_shell.c; the `nmi` command calls it). */
int nmi_backtrace_cmd(int argc, char **argv);

#endif
