/*
 * rcu_setup.c: the testbed kernel's glue for nmikit's RCU.  Start-up (every
 * CPU leaves the idle state RCU assumes at boot), the per-CPU callback
 * threads (started on a CPU's first call_rcu), the tick's and the idle loop's hooks, the two RCU services of
 * <nmikit/os.h> that need the scheduler (os_rcu_wait, os_rcu_kick_callbacks;
 * os_preempt_* are in os.c), and the `rcu` shell command.
 */
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <arch/smp.h>
#include <kernel/irq.h>
#include <kernel/panic.h>
#include <kernel/rcu_setup.h>
#include <kernel/sched.h>
#include <kernel/shell.h>
#include <nmikit/compiler.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>
#include <nmikit/rcu.h>

static struct task *rcu_cb_tasks[MAX_CPUS];

struct task *rcu_callback_task(unsigned cpu)
{
	return cpu < MAX_CPUS ? __atomic_load_n(&rcu_cb_tasks[cpu], __ATOMIC_ACQUIRE) : NULL;
}

/*
 * One per CPU, pinned: run the batches that call_rcu() queued on this CPU,
 * then sleep until os_rcu_kick_callbacks() wakes it.  The test for more
 * work and the switch to SLEEPING happen with interrupts off, and call_rcu()
 * on this CPU runs with interrupts off too, so a wake-up cannot fall between
 * them; a wake-up from the tick after that finds the task SLEEPING and
 * makes it runnable again.
 */
static void rcu_cb_thread(void *arg)
{
	struct task *me = task_current();

	(void)arg;
	for (;;) {
		while (rcu_do_batch())
			;
		uint64_t flags = irq_save();
		if (!rcu_callbacks_pending(this_cpu_id())) {
			me->state = TASK_SLEEPING;
			schedule();
		}
		irq_restore(flags);
	}
}

/*
 * Started on a CPU's first call_rcu() (from os_rcu_kick_callbacks, this
 * CPU, interrupts off), not at boot: the task pool has TASK_MAX slots, and
 * a thread per CPU at boot would take them all on a 64-CPU machine.  A CPU
 * that never queues a callback never gets one.
 */
static void rcu_start_cb_thread(unsigned cpu)
{
	static bool warned;
	char name[TASK_NAME_MAX];
	struct task *t;

	nk_snprintf(name, sizeof(name), "rcu_cb/%u", cpu);
	t = task_create_kernel(name, rcu_cb_thread, NULL, (int)cpu);
	if (!t) {
		/* Tried again at each tick (rcu_kernel_tick); the callbacks wait. */
		if (!__atomic_exchange_n(&warned, true, __ATOMIC_RELAXED))
			pr_err("rcu: cannot start the callback thread of CPU %u (task pool full); "
			       "its call_rcu callbacks wait", cpu);
		return;
	}
	task_detach(t);
	__atomic_store_n(&rcu_cb_tasks[cpu], t, __ATOMIC_RELEASE);
}

/* smp.c runs this on each AP, after the scheduler's own hook, before it goes online. */
static void rcu_ap_init(unsigned int cpu)
{
	uint64_t flags = irq_save();

	(void)cpu;
	rcu_idle_exit();
	irq_restore(flags);
}

void rcu_kernel_init(void)
{
	uint64_t flags = irq_save();

	rcu_idle_exit();
	irq_restore(flags);
	if (!smp_add_ap_init(rcu_ap_init))
		panic("rcu: no room for the RCU AP init hook");
	nmi_set_synchronize(synchronize_rcu);
	pr_info("rcu: NMI-safe dynticks on every CPU, stall warning after %llu ms%s",
		(unsigned long long)rcu_stall_ms,
		rcu_torture_broken_sync ? "; rcu_torture_broken_sync=1: GRACE PERIODS ARE BROKEN ON PURPOSE" : "");
}

/*
 * Interrupt context, from the tick.  preempt_count() is the interrupted
 * context's (interrupts do not change it): 0 means that code was in no
 * rcu_read_lock() section.  The idle loop keeps it raised while the CPU
 * is idle, where the dynticks counter speaks for the CPU instead.
 */
void rcu_kernel_tick(struct regs *r)
{
	unsigned cpu = this_cpu_id();

	rcu_tick(r && (regs_from_user(r) || preempt_count() == 0));
	/* Callbacks queued while the thread could not be started: try again. */
	if (NK_UNLIKELY(!rcu_cb_tasks[cpu] && rcu_callbacks_pending(cpu)))
		rcu_start_cb_thread(cpu);
}

/* --- <nmikit/os.h> services that need the scheduler ---------------------- */

void os_rcu_wait(void)
{
	struct task *me = task_current();

	if (me && !me->is_idle && preempt_count() == 0 && irqs_enabled() && !in_irq()) {
		sleep_ms(1);
		return;
	}
	uint64_t until = os_timestamp_ns() + 20000;
	while (os_timestamp_ns() < until)
		cpu_relax();
}

void os_rcu_kick_callbacks(unsigned cpu)
{
	struct task *t = rcu_callback_task(cpu);

	if (t)
		task_wake(t);
	else
		rcu_start_cb_thread(cpu);	/* it finds the callback when it runs */
}

/* --- shell ----------------------------------------------------------------- */

static int cmd_rcu(int argc, char **argv)
{
	struct rcu_stats s;

	(void)argv;
	if (argc != 1)
		return SHELL_USAGE;
	rcu_get_stats(&s);
	shell_printf("grace periods %llu (longest %llu us, %llu waits, %llu stall warnings)\n",
		     (unsigned long long)s.gp_seq, (unsigned long long)(s.gp_longest_ns / 1000),
		     (unsigned long long)s.gp_waits, (unsigned long long)s.stalls);
	shell_printf("quiescent states: %llu context switches, %llu ticks; callbacks %llu queued, %llu run\n",
		     (unsigned long long)s.qs_switch, (unsigned long long)s.qs_tick,
		     (unsigned long long)s.cb_queued, (unsigned long long)s.cb_invoked);
	shell_printf("invariant warnings: %llu\n", (unsigned long long)rcu_warnings(RCU_WARN_KINDS));
	shell_printf("%4s %12s %20s %12s %s\n", "cpu", "dynticks", "nmi_nesting", "nmi-from-idle", "state");
	for (unsigned cpu = 0; cpu < os_cpu_count(); cpu++) {
		uint64_t dt = rcu_dynticks_read(cpu);
		long n = rcu_nmi_nesting_read(cpu);

		if (!os_cpu_online(cpu))
			continue;
		shell_printf("%4u %12llu %20ld %12llu %s\n", cpu, (unsigned long long)dt,
			     n, (unsigned long long)rcu_nmi_from_idle(cpu),
			     (dt & 1) ? "watched" : "idle");
	}
	return 0;
}
SHELL_CMD(rcu, "", "RCU: grace periods, callbacks, per-CPU dynticks and NMI nesting", cmd_rcu);
