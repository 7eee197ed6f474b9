/*
 * nmi_backtrace.h: "what is every CPU doing right now?"  An NMI to each CPU
 * asked; each one records its interrupted context in its own NMI (through the
 * kernel's capture hook) and the caller prints them one CPU after another,
 * so reports never interleave.  One caller at a time, a bounded wait, and for
 * each CPU that did not answer, the reason.  Works from NMI context too (the
 * hard lockup report uses it).  docs/watchdog.md, "All-CPU backtraces".
 */
#ifndef NMIKIT_NMI_BACKTRACE_H
#define NMIKIT_NMI_BACKTRACE_H

#include <stdbool.h>
#include <stdint.h>

#include <nmikit/nmi.h>
#include <nmikit/os.h>

/* nmi_backtrace() flags. */
#define NMI_BT_EXCLUDE_SELF	0x1u	/* leave the calling CPU out */
#define NMI_BT_QUIET		0x2u	/* capture and wait, print nothing (benchmarks) */

/* What happened to each CPU, in nmi_backtrace_result.status[]. */
enum nmi_bt_status {
	NMI_BT_NOT_ASKED = 0,	/* not in the requested set */
	NMI_BT_ANSWERED,	/* answered in its NMI; its backtrace was printed */
	NMI_BT_SELF_EXCLUDED,	/* the caller itself, left out (flag, or called in NMI context) */
	NMI_BT_OFFLINE,		/* offline: not asked */
	NMI_BT_PARKED,		/* stopped by a panic shootdown: cannot answer */
	NMI_BT_NO_NMI,		/* no NMI entered it since the request: NMIs are not arriving */
	NMI_BT_STUCK_IN_NMI,	/* inside an NMI handler that has not returned */
	NMI_BT_NO_ANSWER,	/* took NMIs, but none ran the backtrace handler */
	NMI_BT_STATUS_COUNT
};

struct nmi_backtrace_result {
	unsigned asked;		/* CPUs sent an NMI (the caller included when asked) */
	unsigned answered;
	uint64_t elapsed_ns;	/* from the first send to the last answer (or the timeout) */
	uint8_t status[NMIKIT_MAX_CPUS];
};

/*
 * The kernel's half.  capture() runs in NMI context on the answering CPU and
 * records what it needs from the interrupted context `f` (registers, a
 * stack walk) in its own per-CPU buffer; print() later prints that record
 * at `level`, on the caller's CPU and in the caller's context (NMI context
 * when nmi_backtrace() was called there, so it must be NMI-safe too).
 */
struct nmi_backtrace_ops {
	void (*capture)(unsigned cpu, const struct nmi_frame *f);
	void (*print)(unsigned cpu, int level);
	/*
	 * May be NULL.  Called by nmi_backtrace() for each CPU asked, after
	 * its request is visible and before any NMI is sent to it: a port
	 * whose handler calls nmi_backtrace_nmi() only when told to (a
	 * per-CPU doorbell) rings it here.  Must be NMI-safe.
	 */
	void (*ask)(unsigned cpu);
};
void nmi_backtrace_set_ops(const struct nmi_backtrace_ops *ops);

/*
 * The NMI handler that answers requests: either register it on its own with
 * nmi_backtrace_init() (once, not in NMI context), or call
 * nmi_backtrace_nmi() from a handler of the port's that already runs on
 * every NMI (the testbed kernel's `watchdog` handler does, only when the
 * ops' ask() rang its doorbell), which saves one chain entry on every NMI.  NMI-safe: yes (one load when nothing is asked).
 */
int nmi_backtrace_init(void);
int nmi_backtrace_nmi(unsigned type, struct nmi_frame *f);

/*
 * Backtrace the CPUs in `cpus` (a bitmap of NMIKIT_MAX_CPUS bits, CPU n is
 * bit n % 64 of word n / 64; NULL: every CPU), waiting at most `timeout_ns`
 * for their answers, then print them in CPU order, each unanswered CPU with
 * its reason.  In NMI context the caller's own CPU cannot answer (its NMIs
 * are blocked) and is left out.  `res` may be NULL.
 * Returns NMI_OK, NMI_EBUSY when another CPU's request is running (only one
 * at a time; the caller does not wait), NMI_ETIMEDOUT when some CPU asked did
 * not answer in time.
 * NMI-safe: yes (the only wait is bounded by timeout_ns; the request is
 * claimed with a compare-exchange that is never waited on).
 */
int nmi_backtrace(const uint64_t *cpus, unsigned flags, uint64_t timeout_ns,
		  struct nmi_backtrace_result *res);

/* A sentence for a status: "answered", "offline", ... */
const char *nmi_backtrace_status_str(unsigned status);

struct nmi_backtrace_stats {
	uint64_t requests;	/* nmi_backtrace() calls that ran */
	uint64_t busy;		/* calls refused because another was running */
	uint64_t answers;	/* CPUs that answered */
	uint64_t unanswered;	/* CPUs asked that did not answer in time */
	uint64_t late;		/* answers that came after their request had timed out */
};
void nmi_backtrace_get_stats(struct nmi_backtrace_stats *out);

#endif
