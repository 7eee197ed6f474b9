/*
 * irq_work: callbacks queued from any context (NMI included) without locks,
 * run later on the same CPU from the irq_work IPI (immediate items) or the
 * timer tick (lazy items).  Per-CPU lock-free lists: producers push with a
 * compare-exchange, the consumer takes a whole list with one exchange.
 */
#include <nmikit/compiler.h>
#include <nmikit/irq_work.h>
#include <nmikit/os.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct irq_work_cpu {
	_Atomic(struct irq_work *) raised;	/* immediate items */
	_Atomic(struct irq_work *) lazy;	/* items for the next tick */
	_Atomic uint64_t queued, coalesced, raised_ipis, run, deferred;
} NK_CACHE_ALIGNED;

static struct irq_work_cpu irq_work_cpus[NMIKIT_MAX_CPUS];

#define IRQ_WORK_CLAIM	(IRQ_WORK_PENDING | IRQ_WORK_BUSY)

void irq_work_init(struct irq_work *w, irq_work_fn func, unsigned flags)
{
	w->next = NULL;
	w->func = func;
	atomic_store_explicit(&w->runner, 0, memory_order_relaxed);
	atomic_store_explicit(&w->flags, flags & (IRQ_WORK_LAZY | IRQ_WORK_EXCLUSIVE),
			      memory_order_release);
}

/*
 * Push `w` on a list; returns true if the list was empty.  NMI-safe: the
 * compare-exchange retries only when something pushed or the consumer took
 * the list in between, which an NMI nested on this CPU can do at most once
 * per nesting level.  Only push and take-all exist, so ABA cannot bite.
 */
static bool irq_work_push(_Atomic(struct irq_work *) *head, struct irq_work *w)
{
	struct irq_work *first = atomic_load_explicit(head, memory_order_relaxed);

	do {
		w->next = first;
	} while (!atomic_compare_exchange_weak_explicit(head, &first, w,
							memory_order_release,
							memory_order_relaxed));
	return first == NULL;
}

/*
 * The claim and the push (irq_work_queue() found the item idle, with flags
 * `old`).  NMI-safe: yes.  The claim is a compare-exchange from the flags
 * the caller already loaded to the same with PENDING and BUSY on: whoever
 * turns PENDING on owns the item's link until the consumer takes it, so the
 * item is on at most one list.  A failed exchange reloads `old`; if the
 * item is pending by then, someone else claimed it first and this request
 * is coalesced, exactly as a claim that found it pending.  BUSY stays set
 * until the callback is done.  Interrupts are disabled across the push so
 * that, outside NMI context, the CPU cannot change under us.
 */
static __attribute__((noinline)) bool irq_work_queue_claim(struct irq_work *w, unsigned old)
{
	os_irqflags_t irq = os_local_irq_save();
	struct irq_work_cpu *c = &irq_work_cpus[os_cpu_id()];

	do {
		if (old & IRQ_WORK_PENDING) {
			nk_atomic_inc(&c->coalesced);
			os_local_irq_restore(irq);
			return false;
		}
	} while (!atomic_compare_exchange_weak_explicit(&w->flags, &old, old | IRQ_WORK_CLAIM,
							memory_order_acq_rel,
							memory_order_relaxed));
	nk_atomic_inc(&c->queued);
	if (old & IRQ_WORK_LAZY) {
		irq_work_push(&c->lazy, w);
	} else if (irq_work_push(&c->raised, w)) {
		/* The list was empty: nobody has raised the IPI for it yet. */
		nk_atomic_inc(&c->raised_ipis);
		os_irq_work_raise();
	}
	os_local_irq_restore(irq);
	return true;
}

/*
 * NMI-safe: yes (a fence, a load and a counter; or irq_work_queue_claim()).
 *
 * Fast path: already pending.  Whoever set PENDING has the item on a list,
 * and its callback has not started yet (the runner drops PENDING just
 * before calling it, with a seq_cst read-modify-write), so the callback runs
 * after this point.  The fence orders the caller's earlier stores before
 * our look at the flags, as the claim's compare-exchange would, so the
 * callback sees them.  This is the lost-NMI probe's case on every claimed
 * NMI after the first.  Otherwise the flags just loaded are the claim's
 * first guess.
 */
bool irq_work_queue(struct irq_work *w)
{
	unsigned flags;

	atomic_thread_fence(memory_order_seq_cst);
	flags = atomic_load_explicit(&w->flags, memory_order_relaxed);
	if (flags & IRQ_WORK_PENDING) {
		nk_atomic_inc(&irq_work_cpus[os_cpu_id()].coalesced);
		return false;
	}
	return irq_work_queue_claim(w, flags);
}

/*
 * Run one item taken off a list.  Interrupt context, interrupts off.
 * `flags` are the item's flags as loaded after the list was taken: while an
 * item is on a list nobody changes them (a claim finds PENDING set and
 * writes nothing; a runner elsewhere cannot drop BUSY, see below), so they
 * are exactly PENDING | BUSY | the fixed bits.
 *
 * PENDING is dropped before the callback (a seq_cst atomic AND, which pairs
 * with the fence of irq_work_queue()'s fast path), so an event that happens
 * while it runs queues the item again (from any CPU, or from the callback
 * itself) and is not lost.  BUSY is dropped after, by a compare-exchange
 * that expects the flags as the AND left them: a claim in between (any
 * CPU, or the callback itself) turned PENDING back on, so the exchange
 * fails and BUSY stays with the queued item.  No separate load is needed.
 */
static inline void irq_work_call(struct irq_work *w, unsigned flags, struct irq_work_cpu *c)
{
	unsigned idle = flags & ~IRQ_WORK_PENDING;

	atomic_fetch_and_explicit(&w->flags, ~IRQ_WORK_PENDING, memory_order_seq_cst);
	w->func(w);
	nk_atomic_inc(&c->run);
	atomic_compare_exchange_strong_explicit(&w->flags, &idle, idle & ~IRQ_WORK_BUSY,
						memory_order_release, memory_order_relaxed);
}

/*
 * An EXCLUSIVE item first claims its runner slot; if another CPU has it,
 * the item goes on this CPU's lazy list, still PENDING, for our next tick.
 */
static __attribute__((noinline)) void irq_work_run_exclusive(struct irq_work *w, unsigned flags,
							     struct irq_work_cpu *c)
{
	unsigned nobody = 0, cpu = (unsigned)(c - irq_work_cpus);

	if (!atomic_compare_exchange_strong_explicit(&w->runner, &nobody, cpu + 1,
						     memory_order_acquire,
						     memory_order_relaxed)) {
		nk_atomic_inc(&c->deferred);
		irq_work_push(&c->lazy, w);
		return;
	}
	irq_work_call(w, flags, c);
	atomic_store_explicit(&w->runner, 0, memory_order_release);
}

static inline void irq_work_run_one(struct irq_work *w, struct irq_work_cpu *c)
{
	unsigned flags = atomic_load_explicit(&w->flags, memory_order_relaxed);

	if (flags & IRQ_WORK_EXCLUSIVE)
		irq_work_run_exclusive(w, flags, c);
	else
		irq_work_call(w, flags, c);
}

/*
 * Run a list taken whole, `w` its newest item, in queueing order: pushes
 * made it newest-first, so it is reversed first.
 */
static __attribute__((noinline)) void irq_work_run_taken(struct irq_work *w,
							 struct irq_work_cpu *c)
{
	struct irq_work *next, *fifo = NULL;

	for (; w; w = next) {
		next = w->next;
		w->next = fifo;
		fifo = w;
	}
	for (w = fifo; w; w = next) {
		/* Read the link first: the callback may queue w again. */
		next = w->next;
		irq_work_run_one(w, c);
	}
}

/*
 * Take a whole list and run it in queueing order.  The usual case, one
 * item that is not EXCLUSIVE, runs right here; anything else goes through
 * irq_work_run_taken().  Interrupts off.
 */
static inline void irq_work_run_list(_Atomic(struct irq_work *) *head, struct irq_work_cpu *c)
{
	struct irq_work *w = atomic_exchange_explicit(head, NULL, memory_order_acquire);
	unsigned flags;

	if (!w)
		return;
	flags = atomic_load_explicit(&w->flags, memory_order_relaxed);
	if (__builtin_expect(!w->next && !(flags & IRQ_WORK_EXCLUSIVE), 1))
		irq_work_call(w, flags, c);
	else
		irq_work_run_taken(w, c);
}

/* The irq_work IPI's entry: interrupts are off already (irq_work.h). */
void irq_work_run_irqs_off(void)
{
	struct irq_work_cpu *c = &irq_work_cpus[os_cpu_id()];

	irq_work_run_list(&c->raised, c);
}

/*
 * Interrupts are disabled here as well, though the IPI handler calling us
 * has them off already: callbacks always run with interrupts off, whoever
 * calls.
 */
void irq_work_run(void)
{
	os_irqflags_t irq = os_local_irq_save();
	struct irq_work_cpu *c = &irq_work_cpus[os_cpu_id()];

	irq_work_run_list(&c->raised, c);
	os_local_irq_restore(irq);
}

void irq_work_tick(void)
{
	os_irqflags_t irq = os_local_irq_save();
	struct irq_work_cpu *c = &irq_work_cpus[os_cpu_id()];

	/* Also the immediate list, in case the port has no working self-IPI. */
	irq_work_run_list(&c->raised, c);
	irq_work_run_list(&c->lazy, c);
	os_local_irq_restore(irq);
}

void irq_work_sync(struct irq_work *w)
{
	while (atomic_load_explicit(&w->flags, memory_order_acquire) & IRQ_WORK_BUSY)
		os_cpu_relax();
}

bool irq_work_is_pending(struct irq_work *w)
{
	return atomic_load_explicit(&w->flags, memory_order_acquire) & IRQ_WORK_PENDING;
}

bool irq_work_is_busy(struct irq_work *w)
{
	return atomic_load_explicit(&w->flags, memory_order_acquire) & IRQ_WORK_BUSY;
}

bool irq_work_get_stats(unsigned cpu, struct irq_work_stats *out)
{
	const struct irq_work_cpu *c;

	if (cpu >= NMIKIT_MAX_CPUS || !out)
		return false;
	c = &irq_work_cpus[cpu];
	out->queued = nk_stat_read(&c->queued);
	out->coalesced = nk_stat_read(&c->coalesced);
	out->raised = nk_stat_read(&c->raised_ipis);
	out->run = nk_stat_read(&c->run);
	out->deferred = nk_stat_read(&c->deferred);
	return true;
}
