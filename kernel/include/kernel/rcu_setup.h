/*
 * rcu_setup.h: the testbed kernel's glue for nmikit's RCU (core/rcu.c,
 * core/rcu_nmi.c): start-up, the per-CPU callback threads, and the hooks
 * that the scheduler, the idle loop and the tick call.  docs/rcu-nmi.md,
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

/*
 * The idle loop's halt, called with interrupts off: tells RCU the CPU is
 * idle, halts until an interrupt, and tells RCU it is back.  Preemption
 * stays off meanwhile, so the scheduler never switches away from a CPU
 * that RCU is ignoring.  Returns with interrupts off.  Inline, so the HLT
 * stays in sched_idle (tests recognise an idle CPU by that).  Interrupt
 * handlers that wake the CPU run before rcu_idle_exit(), unwatched: none
 * of nmikit's is an RCU reader, and rcu_read_lock() warns if one becomes
 * one (docs/rcu-nmi.md).
 */
static inline __attribute__((always_inline)) void rcu_idle_halt(void)
{
	preempt_disable();
	rcu_idle_enter();
	irq_enable_and_halt();	/* sti; hlt */
	irq_disable();
	rcu_idle_exit();
	preempt_enable_no_resched();
}

/* The CPU's RCU callback thread, NULL until its first call_rcu(). */
struct task *rcu_callback_task(unsigned cpu);

#endif
