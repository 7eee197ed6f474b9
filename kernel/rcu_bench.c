/*
 * rcu_bench.c: RCU's metrics for `make bench` (docs/performance.md):
 * the cost of rcu_nmi_enter + rcu_nmi_exit from idle and on a busy CPU
 * (what every NMI pays for being an RCU reader), and grace-period latency
 * on 4 and 16 CPUs, with the other CPUs idle and with each of them running
 * a busy kernel thread.
 */
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <kernel/bench.h>
#include <kernel/sched.h>
#include <nmikit/os.h>
#include <nmikit/rcu.h>

/*
 * From idle: this CPU plays idle (interrupts and preemption off,
 * rcu_idle_enter) around each sample, as the idle loop is when an NMI
 * arrives.  The sample is the NMI's part only.
 */
static int bench_rcu_nmi_idle(struct bench *b)
{
	for (unsigned i = 0; i < b->iters; i++) {
		uint64_t fl = irq_save();
		preempt_disable();
		rcu_idle_enter();
		uint64_t t0 = bench_tsc();
		rcu_nmi_enter();
		rcu_nmi_exit();
		uint64_t t1 = bench_tsc();
		rcu_idle_exit();
		preempt_enable_no_resched();
		irq_restore(fl);
		bench_sample(b, t1 - t0);
	}
	if (rcu_warnings(RCU_WARN_KINDS))
		return bench_fail(b, "RCU invariant warnings during the run");
	return BENCH_OK;
}
BENCH(rcu_nmi_idle, "tsc", "rcu_nmi_enter+exit on an idle CPU (two full-barrier increments)",
      bench_rcu_nmi_idle);

static int bench_rcu_nmi_busy(struct bench *b)
{
	for (unsigned i = 0; i < b->iters; i++) {
		uint64_t fl = irq_save();
		uint64_t t0 = bench_tsc();
		rcu_nmi_enter();
		rcu_nmi_exit();
		uint64_t t1 = bench_tsc();
		irq_restore(fl);
		bench_sample(b, t1 - t0);
	}
	return BENCH_OK;
}
BENCH(rcu_nmi_busy, "tsc", "rcu_nmi_enter+exit on a busy CPU (nesting +2/-2 only)",
      bench_rcu_nmi_busy);

/* --- grace periods --------------------------------------------------------- */

static volatile bool spin_stop;

/* Preemptible kernel code that never sleeps: quiescent only at its ticks. */
static void bench_spinner(void *arg)
{
	unsigned n = 0;

	(void)arg;
	while (!spin_stop)
		if ((++n & 1023) == 0)
			cpu_relax();
}

/*
 * synchronize_rcu() from this (task) context, `busy`: every other CPU runs
 * a spinner.  Samples in TSC ticks (instructions under icount).
 */
static int bench_gp(struct bench *b, unsigned want_cpus, bool busy, unsigned max_samples)
{
	struct task *spinners[MAX_CPUS] = { 0 };
	unsigned online = 0, me = this_cpu_id();
	int ret = BENCH_OK;

	for (unsigned c = 0; c < os_cpu_count(); c++)
		online += os_cpu_online(c);
	if (online < want_cpus)
		return bench_skip(b, "needs %u CPUs, %u online", want_cpus, online);
	spin_stop = false;
	if (busy) {
		for (unsigned c = 0; c < os_cpu_count(); c++) {
			if (c == me || !os_cpu_online(c))
				continue;
			spinners[c] = task_create_kernel("rcu-bench-spin", bench_spinner, NULL, (int)c);
			if (!spinners[c]) {
				ret = bench_fail(b, "cannot start a spinner on CPU %u", c);
				goto out;
			}
		}
		sleep_ms(20);		/* let them all start */
	}
	unsigned n = b->iters < max_samples ? b->iters : max_samples;
	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = bench_tsc();
		synchronize_rcu();
		uint64_t t1 = bench_tsc();
		bench_sample(b, t1 - t0);
		if (busy && ret == BENCH_OK)
			for (unsigned c = 0; c < os_cpu_count(); c++)
				if (spinners[c] && spinners[c]->state != TASK_RUNNABLE)
					ret = bench_fail(b, "spinner on CPU %u stopped", c);
	}
out:
	spin_stop = true;
	for (unsigned c = 0; c < os_cpu_count(); c++)
		if (spinners[c])
			task_wait(spinners[c], NULL);
	return ret;
}

static int bench_gp_idle_4(struct bench *b) { return bench_gp(b, 4, false, BENCH_ITERS_MAX); }
static int bench_gp_idle_16(struct bench *b) { return bench_gp(b, 16, false, BENCH_ITERS_MAX); }
/* Busy grace periods take ticks (10 ms at hz=100): 50 samples are plenty. */
static int bench_gp_busy_4(struct bench *b) { return bench_gp(b, 4, true, 50); }
static int bench_gp_busy_16(struct bench *b) { return bench_gp(b, 16, true, 50); }

BENCH(rcu_gp_idle_4cpu, "tsc", "synchronize_rcu, the 3 other CPUs idle", bench_gp_idle_4, .cpus = 4);
BENCH(rcu_gp_idle_16cpu, "tsc", "synchronize_rcu, the 15 other CPUs idle", bench_gp_idle_16, .cpus = 16);
BENCH(rcu_gp_busy_4cpu, "tsc", "synchronize_rcu, the 3 other CPUs running kernel threads",
      bench_gp_busy_4, .cpus = 4);
BENCH(rcu_gp_busy_16cpu, "tsc", "synchronize_rcu, the 15 other CPUs running kernel threads",
      bench_gp_busy_16, .cpus = 16);
