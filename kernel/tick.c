/*
 * tick.c: the one periodic timer tick handler on every CPU (local APIC timer,
 * interrupts off).  Everything that runs "on the next tick" hangs off here,
 * in this order: the scheduler's accounting and preemption request, RCU's
 * quiescent-state check, then the lazy irq_work (the lost-NMI probe among it).
 */
#include <arch/regs.h>
#include <kernel/nmi_setup.h>
#include <kernel/rcu_setup.h>
#include <kernel/sched.h>
#include <kernel/tick.h>
#include <kernel/watchdog.h>

void kernel_tick(struct regs *r)
{
	sched_tick(r);
	rcu_kernel_tick(r);
	nmi_kernel_tick();
	watchdog_kernel_tick(r);
}
