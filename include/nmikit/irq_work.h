/*
 * irq_work.h: small deferred callbacks that may be queued from any context,
 * NMI included, and run soon after in interrupt context on the same CPU:
 * at once through a self-IPI, or lazily from the next timer tick.
 */
#ifndef NMIKIT_IRQ_WORK_H
#define NMIKIT_IRQ_WORK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Flags.  PENDING and BUSY are the item's state, LAZY and EXCLUSIVE are fixed
 * when the item is initialised.
 *   PENDING   queued and not yet started; a second queue attempt is refused
 *             (and counted as coalesced).
 *   BUSY      queued or running; irq_work_sync() waits for it to clear.
 *   LAZY      run from the next irq_work_tick() instead of raising an IPI.
 *   EXCLUSIVE never run on two CPUs at once: a CPU that finds the item
 *             running elsewhere puts it back on its own lazy list.
 */
#define IRQ_WORK_PENDING	0x1u
#define IRQ_WORK_BUSY		0x2u
#define IRQ_WORK_LAZY		0x4u
#define IRQ_WORK_EXCLUSIVE	0x8u

struct irq_work;
typedef void (*irq_work_fn)(struct irq_work *w);

/*
 * A work item.  Embed it in the caller's own structure; the core never
 * allocates.  All fields are private to core/irq_work.c.
 */
struct irq_work {
	struct irq_work *next;		/* list link, owned by the queue while PENDING */
	_Atomic unsigned flags;
	_Atomic unsigned runner;	/* EXCLUSIVE: running CPU + 1, or 0 */
	irq_work_fn func;
};

#define IRQ_WORK_INIT(fn, fl)	{ .next = 0, .flags = (fl), .runner = 0, .func = (fn) }

/* Set up an item (not while it may be queued).  flags: LAZY, EXCLUSIVE. */
void irq_work_init(struct irq_work *w, irq_work_fn func, unsigned flags);

/*
 * Queue `w` on the calling CPU.  Returns true when queued, false when it was
 * already pending (then it will run once for both requests).  NMI-safe: yes
 * (an atomic claim on the item, a compare-exchange push onto this CPU's list,
 * and for a non-lazy item os_irq_work_raise()).  The item may be queued again
 * from its own callback.
 */
bool irq_work_queue(struct irq_work *w);

/*
 * Run this CPU's immediate items.  Call from the irq_work IPI handler, with
 * interrupts off.  Not from NMI context.
 */
void irq_work_run(void);

/*
 * irq_work_run() for a caller that already has interrupts off and keeps
 * them off (the irq_work IPI's entry, an interrupt gate): the same run
 * without saving, clearing and restoring RFLAGS.  Callbacks run with
 * interrupts off only because the caller guarantees it.  Not from NMI
 * context.
 */
void irq_work_run_irqs_off(void);

/*
 * Run this CPU's immediate and lazy items.  Call from the timer tick, with
 * interrupts off.  Not from NMI context.
 */
void irq_work_tick(void);

/*
 * Wait (os_cpu_relax) until `w` is neither queued nor running.  Call with
 * interrupts on and never from `w`'s own callback, or for an item queued on
 * the calling CPU with interrupts off: it would wait for itself.
 */
void irq_work_sync(struct irq_work *w);

/* State queries.  NMI-safe: yes. */
bool irq_work_is_pending(struct irq_work *w);
bool irq_work_is_busy(struct irq_work *w);

struct irq_work_stats {
	uint64_t queued;	/* items queued on this CPU */
	uint64_t coalesced;	/* queue attempts that found the item already pending */
	uint64_t raised;	/* self-IPIs raised */
	uint64_t run;		/* callbacks run on this CPU */
	uint64_t deferred;	/* EXCLUSIVE items put back: running elsewhere */
};

/* Copy CPU `cpu`'s counters; returns false for a CPU out of range. */
bool irq_work_get_stats(unsigned cpu, struct irq_work_stats *out);

#endif
