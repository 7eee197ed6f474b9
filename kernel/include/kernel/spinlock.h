/*
 * spinlock.h: FIFO ticket spinlocks for the testbed kernel (run queues, the
 * task table).  Waiters spin with PAUSE, so a waiting vCPU hands its slice
 * over under QEMU -icount.
 *
 * NOT FOR NMI CONTEXT.  An NMI can arrive while its own CPU holds any of
 * these locks; an NMI handler that then tried to take the same lock would
 * spin forever on a holder that cannot run until the NMI returns.  No code
 * that may run in NMI context takes, tries, or waits on a spinlock from this
 * header (nmikit's NMI paths use lock-free per-CPU data and try-only locks of
 * their own instead; see docs/scheduler.md).
 *
 * Taking a lock disables preemption until it is released.  Locks that an
 * interrupt handler also takes must be taken with the _irqsave variants,
 * which turn interrupts off before spinning and restore them after release.
 */
#ifndef KERNEL_SPINLOCK_H
#define KERNEL_SPINLOCK_H

#include <stdbool.h>
#include <stdint.h>

struct spinlock {
	/*
	 * Ticket pair in one word so that trylock can claim the lock with a
	 * single compare-exchange: the low half is the ticket now served, the
	 * high half the next ticket to hand out.
	 */
	volatile uint32_t tickets;
	int32_t holder;		/* CPU holding the lock, -1 when free (for checks) */
	const char *name;
};

#define SPINLOCK_INIT(lockname)	{ .tickets = 0, .holder = -1, .name = (lockname) }

void spin_init(struct spinlock *l, const char *name);

/* Plain variants: for locks never taken by interrupt handlers. */
void spin_lock(struct spinlock *l);
bool spin_trylock(struct spinlock *l);
void spin_unlock(struct spinlock *l);

/* Interrupts off on this CPU before spinning; the previous state is returned. */
uint64_t spin_lock_irqsave(struct spinlock *l);
void spin_unlock_irqrestore(struct spinlock *l, uint64_t flags);

/* True when some CPU holds the lock (a hint: may change at once). */
bool spin_is_locked(const struct spinlock *l);
/* True when the calling CPU holds it (exact for the caller). */
bool spin_held_here(const struct spinlock *l);

#endif
