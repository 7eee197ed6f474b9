/*
 * spinlock.c: ticket spinlocks (see <kernel/spinlock.h>).  Each waiter takes
 * a ticket with one atomic add and waits, with PAUSE, until the lock serves
 * that ticket, so CPUs get the lock in the order they asked for it.
 *
 * Nothing in this file may be called in NMI context (the header says why).
 */
#include <kernel/spinlock.h>
#include <kernel/sched.h>
#include <kernel/panic.h>
#include <arch/cpu.h>
#include <arch/percpu.h>

#define TICKET_NOW(t)	((uint16_t)(t))
#define TICKET_NEXT(t)	((uint16_t)((t) >> 16))
#define TICKET_ONE	(1u << 16)

void spin_init(struct spinlock *l, const char *name)
{
	l->tickets = 0;
	l->holder = -1;
	l->name = name;
}

static void lock_taken(struct spinlock *l)
{
	l->holder = (int32_t)this_cpu_id();
}

/*
 * Called with preemption already off, so this_cpu_id() cannot go stale while
 * we spin.  A CPU that asks again for a lock it holds would wait for itself
 * forever; say so instead.
 */
static void lock_slow(struct spinlock *l)
{
	if (l->holder == (int32_t)this_cpu_id())
		panic("spinlock '%s': CPU %u takes it again while holding it",
		      l->name, this_cpu_id());

	uint32_t old = __atomic_fetch_add(&l->tickets, TICKET_ONE, __ATOMIC_ACQUIRE);
	uint16_t mine = TICKET_NEXT(old);

	while (TICKET_NOW(__atomic_load_n(&l->tickets, __ATOMIC_ACQUIRE)) != mine)
		cpu_relax();
	lock_taken(l);
}

void spin_lock(struct spinlock *l)
{
	preempt_disable();
	lock_slow(l);
}

bool spin_trylock(struct spinlock *l)
{
	preempt_disable();
	uint32_t cur = __atomic_load_n(&l->tickets, __ATOMIC_RELAXED);
	if (TICKET_NOW(cur) == TICKET_NEXT(cur) &&
	    __atomic_compare_exchange_n(&l->tickets, &cur, cur + TICKET_ONE, false,
					__ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
		lock_taken(l);
		return true;
	}
	preempt_enable();
	return false;
}

/*
 * Only the holder writes the "now serving" half, so a 16-bit store of the
 * incremented value is enough; the release store orders the critical
 * section's writes before the hand-over.
 */
static void unlock_raw(struct spinlock *l)
{
	if (l->holder != (int32_t)this_cpu_id())
		panic("spinlock '%s': released by CPU %u, which does not hold it (holder %d)",
		      l->name, this_cpu_id(), l->holder);
	l->holder = -1;
	uint16_t next_served = (uint16_t)(TICKET_NOW(l->tickets) + 1);
	__atomic_store_n((volatile uint16_t *)&l->tickets, next_served, __ATOMIC_RELEASE);
}

void spin_unlock(struct spinlock *l)
{
	unlock_raw(l);
	preempt_enable();
}

uint64_t spin_lock_irqsave(struct spinlock *l)
{
	uint64_t flags = irq_save();
	preempt_disable();
	lock_slow(l);
	return flags;
}

void spin_unlock_irqrestore(struct spinlock *l, uint64_t flags)
{
	unlock_raw(l);
	/*
	 * Interrupts stay off until the count is back down, so a preemption
	 * that preempt_enable() finds due happens with the lock already gone.
	 */
	preempt_enable_no_resched();
	irq_restore(flags);
	preempt_check_resched();
}

bool spin_is_locked(const struct spinlock *l)
{
	uint32_t t = __atomic_load_n(&l->tickets, __ATOMIC_RELAXED);
	return TICKET_NOW(t) != TICKET_NEXT(t);
}

bool spin_held_here(const struct spinlock *l)
{
	return spin_is_locked(l) && l->holder == (int32_t)this_cpu_id();
}
