/*
 * log.c: the log ring buffer and its lock-free console.
 *
 * Writers (any CPU, any context, NMI included) reserve a sequence number with
 * one fetch-add, claim the slot that number maps to with a compare-exchange,
 * fill it and commit it with another compare-exchange.  The console is
 * printed by whichever CPU wins a try-only compare-exchange on the owner
 * word; it prints committed records strictly in sequence order, releases,
 * and looks again.  docs/logging.md walks through why nothing deadlocks and
 * nothing committed is left unprinted.
 */
#include <nmikit/compiler.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

#include <stdatomic.h>

_Static_assert((NK_LOG_RECORDS & (NK_LOG_RECORDS - 1)) == 0,
	       "NK_LOG_RECORDS must be a power of two");
_Static_assert(NK_LOG_TEXT_MAX < 65536, "record length must fit in 16 bits");

#define RING_MASK	((uint64_t)NK_LOG_RECORDS - 1)

/*
 * A slot's state word: the sequence number it belongs to, shifted left by
 * ST_BITS, and what is happening to it:
 *
 *   FREE       never used since boot
 *   WRITING    the writer of `seq` owns the slot and is filling it
 *   COMMITTED  holds record `seq`, complete
 *   DROPPED    record `seq` was given up; the slot is free again
 *   LAPPED     record `seq` was given up because an older writer (one lap
 *              behind) is still filling the slot; that writer frees it
 *              (LAPPED -> DROPPED) when it finds out at its commit
 *
 * Only the writer that holds a slot (WRITING, or the older writer under
 * LAPPED) writes its contents.  Readers never change the state word.
 */
enum { ST_FREE, ST_WRITING, ST_COMMITTED, ST_DROPPED, ST_LAPPED };
#define ST_BITS		3
#define ST_MAKE(seq, st) (((uint64_t)(seq) << ST_BITS) | (uint64_t)(st))
#define ST_SEQ(v)	((v) >> ST_BITS)
#define ST_STATE(v)	((unsigned)((v) & ((1u << ST_BITS) - 1)))

struct log_slot {
	_Atomic uint64_t state;
	uint64_t ts_ns;
	uint32_t cpu;
	uint16_t len;
	uint8_t level;
	uint8_t truncated;
	char text[NK_LOG_TEXT_MAX];
};

static struct log_slot log_ring[NK_LOG_RECORDS];
/* Next sequence number to hand out. */
static _Atomic uint64_t log_head;

/* 0 when nobody prints, else the owner's CPU number + 1. */
static _Atomic unsigned console_owner;
/* Next sequence number the console prints; changed only by the owner. */
static _Atomic uint64_t console_seq;
/* Records passed over since the console last said so. */
static _Atomic uint64_t console_unreported;
static _Atomic bool console_on = true;
static _Atomic bool log_panic_mode;

static _Atomic uint64_t stat_stored, stat_dropped, stat_missed, stat_truncated,
			stat_printed;

static unsigned console_loglevel = 7;
NK_PARAM_UINT("loglevel", console_loglevel, 0, 8,
	      "console shows records with a level below this (0 none, 8 all); the ring keeps all");

static bool log_cpu_prefix;
NK_PARAM_BOOL("log_cpu", log_cpu_prefix,
	      "put \"CPUn: \" after the time stamp on console lines");

#ifdef NK_LOG_TEST_HOOKS
#define LOG_HOOK(point)	nk_log_test_hook(point)
#else
#define LOG_HOOK(point)	do { } while (0)
#endif

static unsigned read_loglevel(void)
{
	return *(volatile unsigned *)&console_loglevel;
}

/* --- writing -------------------------------------------------------------- */

/*
 * Store one record.  NMI-safe: every loop below retries only because another
 * writer changed the same slot's state word in between; each such change
 * belongs to a writer that already holds a later sequence number for this
 * slot, so the loops end after at most one pass per concurrent writer.
 */
static void log_store(int level, const char *text, size_t len, bool truncated)
{
	os_irqflags_t flags = os_local_irq_save();
	uint64_t seq = atomic_fetch_add_explicit(&log_head, 1, memory_order_relaxed);
	struct log_slot *s = &log_ring[seq & RING_MASK];
	uint64_t mine = ST_MAKE(seq, ST_WRITING);
	uint64_t cur;
	bool claimed = false;

	LOG_HOOK(NK_LOG_HOOK_RESERVED);

	cur = atomic_load_explicit(&s->state, memory_order_relaxed);
	for (;;) {
		unsigned st = ST_STATE(cur);

		if (st != ST_FREE && ST_SEQ(cur) > seq)
			break;	/* a writer one lap ahead has the slot: give up */
		if (st == ST_WRITING || st == ST_LAPPED) {
			/*
			 * A writer one lap behind still fills the slot.  We
			 * must not wait for it (it may be the context this NMI
			 * interrupted), so give our number up and say so.
			 */
			if (atomic_compare_exchange_weak_explicit(&s->state, &cur,
					ST_MAKE(seq, ST_LAPPED),
					memory_order_seq_cst, memory_order_relaxed))
				break;
			continue;
		}
		if (atomic_compare_exchange_weak_explicit(&s->state, &cur, mine,
				memory_order_seq_cst, memory_order_relaxed)) {
			claimed = true;
			break;
		}
	}

	if (!claimed) {
		atomic_fetch_add_explicit(&stat_dropped, 1, memory_order_relaxed);
		goto out;
	}

	/* The claim must be visible before any byte of the new contents. */
	atomic_thread_fence(memory_order_release);
	s->ts_ns = os_timestamp_ns();
	s->cpu = os_cpu_id();
	s->level = (uint8_t)level;
	s->truncated = truncated;
	s->len = (uint16_t)len;
	memcpy(s->text, text, len);

	LOG_HOOK(NK_LOG_HOOK_FILLED);

	cur = mine;
	if (atomic_compare_exchange_strong_explicit(&s->state, &cur,
			ST_MAKE(seq, ST_COMMITTED),
			memory_order_seq_cst, memory_order_seq_cst)) {
		atomic_fetch_add_explicit(&stat_stored, 1, memory_order_relaxed);
		if (truncated)
			atomic_fetch_add_explicit(&stat_truncated, 1, memory_order_relaxed);
	} else {
		/*
		 * Lapped while filling: cur is (later seq, LAPPED).  Our record
		 * is lost; hand the slot back so later laps can use it.
		 */
		atomic_fetch_add_explicit(&stat_dropped, 1, memory_order_relaxed);
		while (!atomic_compare_exchange_weak_explicit(&s->state, &cur,
				ST_MAKE(ST_SEQ(cur), ST_DROPPED),
				memory_order_seq_cst, memory_order_relaxed))
			;
	}
out:
	os_local_irq_restore(flags);
	LOG_HOOK(NK_LOG_HOOK_COMMITTED);
	/* Also after a drop: the console may be waiting at this number. */
	nk_log_flush();
}

/*
 * NMI-safe: yes.  Formats into a stack buffer (no shared state), then
 * log_store(): no lock, no wait, no allocation.
 */
void nk_vlog(int level, const char *fmt, va_list ap)
{
	char buf[NK_LOG_TEXT_MAX + 1];
	int n = nk_vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t len = n > 0 ? (size_t)n : 0;
	bool truncated = false;

	if (len > NK_LOG_TEXT_MAX) {
		len = NK_LOG_TEXT_MAX;
		truncated = true;
	}
	if (level < NK_LOG_EMERG)
		level = NK_LOG_EMERG;
	if (level > NK_LOG_PRINT)
		level = NK_LOG_DEBUG;
	/* Records are lines: a final newline is implied, except for raw output. */
	if (level != NK_LOG_PRINT && !truncated && len > 0 && buf[len - 1] == '\n')
		len--;
	log_store(level, buf, len, truncated);
}

/* NMI-safe: yes, as nk_vlog(). */
void nk_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	nk_vlog(level, fmt, ap);
	va_end(ap);
}

/* --- reading ----------------------------------------------------------------- */

/*
 * Copy record `seq` out of slot `s`.  Seqlock-style: read the state, copy,
 * read the state again; if a writer took the slot meanwhile the copy may be
 * torn, and it is thrown away.  The length is clamped before use, so even a
 * torn copy never reads or writes out of bounds.
 */
static bool slot_copy(struct log_slot *s, uint64_t seq, struct nk_log_record *rec)
{
	uint64_t want = ST_MAKE(seq, ST_COMMITTED);
	size_t len;

	if (atomic_load_explicit(&s->state, memory_order_acquire) != want)
		return false;
	rec->seq = seq;
	rec->ts_ns = s->ts_ns;
	rec->cpu = s->cpu;
	rec->level = s->level;
	rec->truncated = s->truncated;
	len = s->len;
	if (len > NK_LOG_TEXT_MAX)
		len = NK_LOG_TEXT_MAX;
	memcpy(rec->text, s->text, len);
	rec->text[len] = '\0';
	rec->len = (uint16_t)len;
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&s->state, memory_order_relaxed) == want;
}

uint64_t nk_log_next_seq(void)
{
	return atomic_load_explicit(&log_head, memory_order_acquire);
}

uint64_t nk_log_first_seq(void)
{
	uint64_t h = nk_log_next_seq();

	return h > NK_LOG_RECORDS ? h - NK_LOG_RECORDS : 0;
}

/* NMI-safe: yes; reads only, bounded by one pass over the ring. */
bool nk_log_read(uint64_t *seq, struct nk_log_record *rec)
{
	uint64_t h = nk_log_next_seq();
	uint64_t r = *seq;

	if (r < nk_log_first_seq())
		r = nk_log_first_seq();
	for (; r < h; r++) {
		if (slot_copy(&log_ring[r & RING_MASK], r, rec)) {
			*seq = r + 1;
			return true;
		}
	}
	*seq = r;
	return false;
}

size_t nk_log_dump(size_t last, nk_log_dump_fn *cb, void *arg)
{
	struct nk_log_record rec;
	uint64_t end = nk_log_next_seq();
	uint64_t seq = nk_log_first_seq();
	size_t count = 0;

	if (last && end - seq > last)
		seq = end - last;
	while (seq < end && nk_log_read(&seq, &rec) && rec.seq < end) {
		cb(&rec, arg);
		count++;
	}
	return count;
}

/* --- formatting ----------------------------------------------------------------- */

static size_t format_prefix(const struct nk_log_record *rec, unsigned flags,
			    char *buf, size_t size)
{
	unsigned long long us = rec->ts_ns / 1000;
	int n = 0;

	if (flags & NK_LOG_FMT_LEVEL)
		n += nk_snprintf(buf, size, "<%u>", rec->level);
	n += nk_snprintf(buf + ((size_t)n < size ? (size_t)n : size),
			 (size_t)n < size ? size - (size_t)n : 0,
			 "[%5llu.%06llu] ", us / 1000000, us % 1000000);
	if (flags & NK_LOG_FMT_CPU)
		n += nk_snprintf(buf + ((size_t)n < size ? (size_t)n : size),
				 (size_t)n < size ? size - (size_t)n : 0,
				 "CPU%u: ", rec->cpu);
	return (size_t)n;
}

/* NMI-safe: yes; pure. */
size_t nk_log_format(const struct nk_log_record *rec, unsigned flags,
		     char *buf, size_t size)
{
	char prefix[48];
	size_t plen, len = 0, i = 0;

	if (log_cpu_prefix)
		flags |= NK_LOG_FMT_CPU;
	if (rec->level == NK_LOG_PRINT)
		return (size_t)nk_snprintf(buf, size, "%s", rec->text);

	plen = format_prefix(rec, flags, prefix, sizeof(prefix));
	if (plen >= sizeof(prefix))
		plen = sizeof(prefix) - 1;
	/* The prefix starts every line of the record. */
	do {
		size_t j = i;

		while (j < rec->len && rec->text[j] != '\n')
			j++;
		for (size_t k = 0; k < plen; k++, len++) {
			if (len + 1 < size)
				buf[len] = prefix[k];
		}
		for (size_t k = i; k < j; k++, len++) {
			if (len + 1 < size)
				buf[len] = rec->text[k];
		}
		if (len + 1 < size)
			buf[len] = '\n';
		len++;
		i = j + 1;
	} while (i < rec->len);
	if (size > 0)
		buf[len < size ? len : size - 1] = '\0';
	return len;
}

/* --- the console ------------------------------------------------------------------ */

/*
 * Print one record on the console, owner only.  Line by line, so the stack
 * buffer stays small whatever the record holds.
 */
static void console_emit(const struct nk_log_record *rec)
{
	char line[64 + NK_LOG_TEXT_MAX];
	uint64_t lost;

	if (!atomic_load_explicit(&console_on, memory_order_relaxed))
		return;
	if (rec->level != NK_LOG_PRINT && rec->level >= read_loglevel())
		return;

	lost = atomic_exchange_explicit(&console_unreported, 0, memory_order_relaxed);
	if (lost) {
		int n = nk_snprintf(line, sizeof(line),
				    "** %llu log records lost (ring overwritten or dropped) **\n",
				    (unsigned long long)lost);
		os_console_write(line, (size_t)n);
	}

	if (rec->level == NK_LOG_PRINT) {
		os_console_write(rec->text, rec->len);
	} else {
		unsigned flags = log_cpu_prefix ? NK_LOG_FMT_CPU : 0;
		size_t plen = format_prefix(rec, flags, line, 64);
		size_t i = 0;

		if (plen > 63)
			plen = 63;
		do {
			size_t j = i, n = plen;

			while (j < rec->len && rec->text[j] != '\n')
				line[n++] = rec->text[j++];
			line[n++] = '\n';
			os_console_write(line, n);
			i = j + 1;
		} while (i < rec->len);
	}
	atomic_fetch_add_explicit(&stat_printed, 1, memory_order_relaxed);
}

static void console_skip(void)
{
	atomic_fetch_add_explicit(&stat_missed, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&console_unreported, 1, memory_order_relaxed);
}

/*
 * Decide about the next record in sequence; owner only.  Returns false when
 * the console has caught up, or the next record is still being written (its
 * writer will try to print it after committing).  In panic mode a record
 * still being written is passed over: its writer has been stopped.
 */
static bool console_step(void)
{
	uint64_t r = atomic_load_explicit(&console_seq, memory_order_relaxed);
	struct log_slot *s = &log_ring[r & RING_MASK];
	struct nk_log_record rec;
	uint64_t st;
	unsigned k;

	if (r >= atomic_load_explicit(&log_head, memory_order_seq_cst))
		return false;
	st = atomic_load_explicit(&s->state, memory_order_seq_cst);
	k = ST_STATE(st);

	if (k == ST_COMMITTED && ST_SEQ(st) == r) {
		if (slot_copy(s, r, &rec))
			console_emit(&rec);
		else
			console_skip();		/* overwritten while we copied it */
	} else if (ST_SEQ(st) == r && (k == ST_DROPPED || k == ST_LAPPED)) {
		console_skip();			/* its writer gave it up */
	} else if (k != ST_FREE && ST_SEQ(st) > r) {
		console_skip();			/* overwritten before we got to it */
	} else if (atomic_load_explicit(&log_panic_mode, memory_order_relaxed)) {
		console_skip();			/* its writer is stopped */
	} else {
		return false;			/* being written: its writer prints it */
	}
	atomic_store_explicit(&console_seq, r + 1, memory_order_relaxed);
	return true;
}

/* Would console_step() make progress now?  Same rules, no side effects. */
static bool console_pending(void)
{
	uint64_t r = atomic_load_explicit(&console_seq, memory_order_seq_cst);
	uint64_t st;
	unsigned k;

	if (r >= atomic_load_explicit(&log_head, memory_order_seq_cst))
		return false;
	st = atomic_load_explicit(&log_ring[r & RING_MASK].state, memory_order_seq_cst);
	k = ST_STATE(st);
	if (ST_SEQ(st) == r && k != ST_WRITING && k != ST_FREE)
		return true;
	if (k != ST_FREE && ST_SEQ(st) > r)
		return true;
	return atomic_load_explicit(&log_panic_mode, memory_order_relaxed);
}

static bool console_try_acquire(void)
{
	unsigned expected = 0;

	return atomic_compare_exchange_strong_explicit(&console_owner, &expected,
						       os_cpu_id() + 1,
						       memory_order_seq_cst,
						       memory_order_seq_cst);
}

/*
 * NMI-safe: the owner word is only ever tried, never waited for.  The loop
 * repeats only when records became printable between printing and release,
 * that is, when a writer committed and found the console owned: the release
 * followed by console_pending() is what keeps that record from being left
 * behind (see docs/logging.md, "no lost wake-up").
 */
void nk_log_flush(void)
{
	for (;;) {
		os_irqflags_t flags = os_local_irq_save();

		if (!console_try_acquire()) {
			os_local_irq_restore(flags);
			return;
		}
		while (console_step())
			;
		atomic_store_explicit(&console_owner, 0, memory_order_seq_cst);
		os_local_irq_restore(flags);
		if (!console_pending())
			return;
	}
}

/*
 * NMI-safe: yes, and meant to be called with every other CPU stopped.  The
 * owner word is overwritten, not tried: its holder may be a stopped CPU or
 * the very context this CPU interrupted, and neither will ever finish.
 */
void nk_log_panic_flush(void)
{
	os_irqflags_t flags = os_local_irq_save();

	atomic_store_explicit(&log_panic_mode, true, memory_order_seq_cst);
	atomic_store_explicit(&console_on, true, memory_order_relaxed);
	atomic_store_explicit(&console_owner, os_cpu_id() + 1, memory_order_seq_cst);
	while (console_step())
		;
	atomic_store_explicit(&console_owner, 0, memory_order_seq_cst);
	os_local_irq_restore(flags);
	nk_log_flush();
}

/*
 * Not NMI-safe: waits for the console owner.  The owner holds the console
 * with interrupts off, so it is never a preempted thread, and it cannot be
 * stuck behind us.  Only if this CPU already owns the console (we were called
 * from an interrupt that landed in the middle of printing, which callers must
 * not do) or after a panic, the bytes go out directly instead of deadlocking.
 */
void nk_console_write(const char *s, size_t len)
{
	unsigned me = os_cpu_id() + 1;
	os_irqflags_t flags = os_local_irq_save();

	for (;;) {
		unsigned expected = 0;

		if (atomic_compare_exchange_strong_explicit(&console_owner, &expected, me,
							    memory_order_seq_cst,
							    memory_order_seq_cst))
			break;
		if (expected == me || atomic_load_explicit(&log_panic_mode, memory_order_relaxed)) {
			if (atomic_load_explicit(&console_on, memory_order_relaxed))
				os_console_write(s, len);
			os_local_irq_restore(flags);
			return;
		}
		os_local_irq_restore(flags);
		os_cpu_relax();
		flags = os_local_irq_save();
	}
	/* Records committed before us go out first. */
	while (console_step())
		;
	if (atomic_load_explicit(&console_on, memory_order_relaxed))
		os_console_write(s, len);
	atomic_store_explicit(&console_owner, 0, memory_order_seq_cst);
	os_local_irq_restore(flags);
	if (console_pending())
		nk_log_flush();
}

/* --- settings and statistics -------------------------------------------------------- */

void nk_log_set_console_enabled(bool on)
{
	atomic_store_explicit(&console_on, on, memory_order_relaxed);
}

bool nk_log_console_enabled(void)
{
	return atomic_load_explicit(&console_on, memory_order_relaxed);
}

void nk_log_set_console_level(unsigned level)
{
	*(volatile unsigned *)&console_loglevel = level > 8 ? 8 : level;
}

unsigned nk_log_console_level(void)
{
	return read_loglevel();
}

void nk_log_get_stats(struct nk_log_stats *st)
{
	st->stored = atomic_load_explicit(&stat_stored, memory_order_relaxed);
	st->dropped = atomic_load_explicit(&stat_dropped, memory_order_relaxed);
	st->console_missed = atomic_load_explicit(&stat_missed, memory_order_relaxed);
	st->truncated = atomic_load_explicit(&stat_truncated, memory_order_relaxed);
	st->printed = atomic_load_explicit(&stat_printed, memory_order_relaxed);
}
