/*
 * log.h: nmikit's log.  Leveled messages go into a lock-free ring buffer that
 * any context may write, NMI included (even an NMI that interrupts nk_log()
 * itself), and reach the console without locks: whichever CPU manages to
 * become console owner prints every committed record in order.  How that
 * holds in every case, and what is lost when the ring wraps, is in
 * docs/logging.md.
 */
#ifndef NMIKIT_LOG_H
#define NMIKIT_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nmikit/compiler.h>

/* Levels, as in syslog: the smaller, the more severe. */
enum nk_log_level {
	NK_LOG_EMERG	= 0,	/* the system is unusable */
	NK_LOG_ALERT	= 1,
	NK_LOG_CRIT	= 2,
	NK_LOG_ERR	= 3,
	NK_LOG_WARNING	= 4,
	NK_LOG_NOTICE	= 5,
	NK_LOG_INFO	= 6,
	NK_LOG_DEBUG	= 7,
	/*
	 * Not a severity: output that must reach the console whatever the
	 * `loglevel=` threshold (KTAP test results, command output).  Printed
	 * verbatim: no time prefix, no newline added.
	 */
	NK_LOG_PRINT	= 8,
};

/*
 * Most text bytes one record keeps; longer messages are cut (and counted in
 * nk_log_stats.truncated).  The ring holds NK_LOG_RECORDS records, the oldest
 * overwritten first.  Both may be overridden at build time (the host tests
 * build a tiny ring to exercise wrapping); NK_LOG_RECORDS must be a power of 2.
 */
#ifndef NK_LOG_TEXT_MAX
#define NK_LOG_TEXT_MAX		224
#endif
#ifndef NK_LOG_RECORDS
#define NK_LOG_RECORDS		512
#endif

/*
 * Write a record.
 *
 * NMI-safe: yes, from any context on any CPU, including an NMI that arrived
 * in the middle of nk_log() on the same CPU.  It takes no lock and never
 * waits: a slot is reserved with one atomic fetch-add, filled, and committed
 * with one compare-exchange; then the caller tries once (never spins) to
 * become console owner and, if it succeeds, prints everything committed.
 * Time is bounded by the formatting plus the records it finds to print.
 * A message ending in '\n' loses that newline (records are lines).
 */
void nk_log(int level, const char *fmt, ...) NK_PRINTF(2, 3);
void nk_vlog(int level, const char *fmt, va_list ap);

#ifndef NK_NO_PR_MACROS
#define pr_emerg(...)	nk_log(NK_LOG_EMERG, __VA_ARGS__)
#define pr_alert(...)	nk_log(NK_LOG_ALERT, __VA_ARGS__)
#define pr_crit(...)	nk_log(NK_LOG_CRIT, __VA_ARGS__)
#define pr_err(...)	nk_log(NK_LOG_ERR, __VA_ARGS__)
#define pr_warn(...)	nk_log(NK_LOG_WARNING, __VA_ARGS__)
#define pr_notice(...)	nk_log(NK_LOG_NOTICE, __VA_ARGS__)
#define pr_info(...)	nk_log(NK_LOG_INFO, __VA_ARGS__)
#define pr_debug(...)	nk_log(NK_LOG_DEBUG, __VA_ARGS__)
#endif

/*
 * Print whatever is committed and not yet printed, if no other CPU is
 * printing already (then that CPU prints it).  NMI-safe: yes, as nk_log().
 */
void nk_log_flush(void);

/*
 * For panic, once the other CPUs are stopped: take console ownership by
 * force (its holder may be a stopped CPU, or the context this CPU
 * interrupted), print every record not printed yet, skipping records whose
 * writers were stopped half way, and leave the log in panic mode, where
 * later records print at once.  NMI-safe: yes.
 */
void nk_log_panic_flush(void);

/*
 * Write `len` raw bytes to the console in order with the log (pending records
 * are printed first).  Not recorded in the ring.  For the shell's echo and
 * command output.  NOT for NMI or interrupt context: it waits (with
 * os_cpu_relax) while another CPU is printing.
 */
void nk_console_write(const char *s, size_t len);

/* Console on/off (the ring records either way).  Default: on. */
void nk_log_set_console_enabled(bool on);
bool nk_log_console_enabled(void);

/*
 * Console threshold: records with level < this reach the console (Linux's
 * console_loglevel; NK_LOG_PRINT records always do).  Boot parameter
 * `loglevel=`, default 7 (everything but debug).
 */
void nk_log_set_console_level(unsigned level);
unsigned nk_log_console_level(void);

/* --- reading the ring (shell `log`, dumps) ------------------------------- */

struct nk_log_record {
	uint64_t seq;		/* 0, 1, 2, ... in reservation order */
	uint64_t ts_ns;		/* os_timestamp_ns() at reservation */
	uint32_t cpu;		/* os_cpu_id() of the writer */
	uint8_t level;		/* enum nk_log_level */
	bool truncated;		/* the message was longer than NK_LOG_TEXT_MAX */
	uint16_t len;		/* bytes in text, not counting the NUL */
	char text[NK_LOG_TEXT_MAX + 1];
};

/* Oldest sequence number the ring may still hold, and the next one to be given. */
uint64_t nk_log_first_seq(void);
uint64_t nk_log_next_seq(void);

/*
 * Copy the first committed record whose sequence number is >= *seq into
 * *rec and set *seq past it.  Records overwritten meanwhile, or not committed
 * yet, are passed over.  Returns false when there is none.  NMI-safe: yes
 * (reads only; a record overwritten while being copied is detected and
 * skipped).
 */
bool nk_log_read(uint64_t *seq, struct nk_log_record *rec);

/*
 * Call `cb` for each record still in the ring, oldest first, starting with
 * the `last` most recent sequence numbers (0: all).  Returns how many.
 */
typedef void nk_log_dump_fn(const struct nk_log_record *rec, void *arg);
size_t nk_log_dump(size_t last, nk_log_dump_fn *cb, void *arg);

/*
 * Format a record as a console line: "[    1.234567] text" (with
 * "CPU3: " after the time when the `log_cpu` parameter is on, and with
 * `NK_LOG_FMT_LEVEL` a "<6>" level tag first).  Multi-line text gets the
 * prefix on every line; a newline ends the result.  NK_LOG_PRINT records are
 * returned verbatim.  Returns the length the full line would have (like
 * snprintf); `buf` is always NUL-terminated when size > 0.
 */
#define NK_LOG_FMT_LEVEL	0x1u
#define NK_LOG_FMT_CPU		0x2u
size_t nk_log_format(const struct nk_log_record *rec, unsigned flags,
		     char *buf, size_t size);

struct nk_log_stats {
	uint64_t stored;	/* records committed */
	uint64_t dropped;	/* records the writer could not store (its slot was
				   still being written by a writer one lap behind) */
	uint64_t console_missed;/* sequence numbers the console passed over without
				   printing: overwritten before it got to them, or
				   dropped, or (panic only) abandoned half-written */
	uint64_t truncated;	/* messages cut to NK_LOG_TEXT_MAX */
	uint64_t printed;	/* records written to the console */
};
void nk_log_get_stats(struct nk_log_stats *st);

#ifdef NK_LOG_TEST_HOOKS
/*
 * Host tests only (core/log.c built with NK_LOG_TEST_HOOKS): the test defines
 * this function, which nk_log() calls at each point, so that a test can
 * deliver its stand-in for an NMI exactly there.
 */
enum nk_log_hook {
	NK_LOG_HOOK_RESERVED,	/* sequence number taken, slot not yet claimed */
	NK_LOG_HOOK_FILLED,	/* slot claimed and filled, not yet committed */
	NK_LOG_HOOK_COMMITTED,	/* committed, console not yet tried */
};
void nk_log_test_hook(enum nk_log_hook point);
#endif

#endif
