/*
 * rcu_setup.h: the testbed kernel's glue for nmikit's RCU (core/rcu.c,
 * core/rcu_nmi.c): start-up, the per-CPU callback threads, and the hooks
 * that the scheduler and the tick call (the idle loop calls
 * rcu_idle_enter/exit itself: kernel/sched.c, sched_idle).  docs/rcu-nmi.md,
 * "The implementation", describes how they fit together.
 */
#ifndef KERNEL_RCU_SETUP_H
#define KERNEL_RCU_SETUP_H

#include <stdint.h>
#include <arch/cpu.h>
#include <kernel/sched.h>
#include <nmikit/rcu.h>

struct regs;

/*
 * Boot CPU, Step 8, after sched_init(): CPU 0 leaves the "idle" state
 * every CPU starts in, each AP will do the same as it starts (before it
 * goes online), and nmi_unregister() starts waiting for grace periods.
 * A CPU's RCU callback thread starts with its first call_rcu().
 */
void rcu_kernel_init(void);

/* The timer tick (kernel/tick.c): a quiescent state if `r` was preemptible. */
void rcu_kernel_tick(struct regs *r);

/* The CPU's RCU callback thread, NULL until its first call_rcu(). */
struct task *rcu_callback_task(unsigned cpu);

#endif
