/*
 * softlockup.c: the soft lockup detector.  Each watched CPU has a kernel
 * thread "watchdog/N" pinned to it that wakes every 2/5 of the threshold and
 * notes that it ran.  The CPU's own timer tick asks the core whether the
 * thread has been kept from running for twice the threshold (something on
 * that CPU holds the scheduler off: a loop with preemption disabled, or an
 * endless stream of interrupts) and, once per episode, reports
 * "BUG: soft lockup - CPU#N stuck for Ns!" with the interrupted context.
 */
#include <arch/percpu.h>
#include <arch/regs.h>
#include <arch/tsc.h>
#include <kernel/panic.h>
#include <kernel/sched.h>
#include <kernel/time.h>
#include <kernel/watchdog.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/os.h>

/*
 * The task pool is small (TASK_MAX); one thread per CPU on a 64-CPU machine
 * would fill it.  CPUs past this many threads are not watched for soft
 * lockups (said at boot); hard lockups are watched on every CPU.
 */
#define SOFTLOCKUP_MAX_THREADS	16

/* Longest sleep of a watchdog thread between two runs. */
#define SOFTLOCKUP_MAX_SLEEP_MS	500

static unsigned nthreads;
static bool has_thread[MAX_CPUS];

static void watchdog_thread(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;

	for (;;) {
		watchdog_soft_touch(cpu, tsc_ns());
		/*
		 * 2/5 of the threshold, as Linux samples (five chances per soft
		 * period), but at most SOFTLOCKUP_MAX_SLEEP_MS, so that a lower
		 * threshold set at run time applies within half a second.
		 */
		uint64_t ms = (uint64_t)watchdog_thresh_s() * 1000 * 2 / 5;
		if (!ms || ms > SOFTLOCKUP_MAX_SLEEP_MS)
			ms = SOFTLOCKUP_MAX_SLEEP_MS;
		sleep_ms(ms);
	}
}

unsigned softlockup_threads(void)
{
	return nthreads;
}

void softlockup_init(void)
{
	unsigned skipped = 0, first_skipped = 0;
	char name[TASK_NAME_MAX];

	if (!watchdog_soft_enabled())
		return;
	for (unsigned cpu = 0; cpu < cpus_possible && cpu < MAX_CPUS; cpu++) {
		if (!wd_monitored(cpu))
			continue;
		if (nthreads >= SOFTLOCKUP_MAX_THREADS) {
			if (!skipped++)
				first_skipped = cpu;
			continue;
		}
		nk_snprintf(name, sizeof(name), "watchdog/%u", cpu);
		struct task *t = task_create_kernel(name, watchdog_thread, (void *)(uintptr_t)cpu,
						    (int)cpu);
		if (!t) {
			pr_warn("watchdog: no task for CPU %u's soft lockup thread; not watched", cpu);
			continue;
		}
		task_detach(t);
		has_thread[cpu] = true;
		nthreads++;
	}
	if (skipped)
		pr_warn("watchdog: soft lockups watched on %u CPUs only (threads cost task slots); "
			"%u CPUs from CPU %u on are not", nthreads, skipped, first_skipped);
}

/* `cpu`'s timer tick, interrupt context, interrupts off; r is what it interrupted. */
void softlockup_tick(unsigned cpu, struct regs *r)
{
	uint64_t stuck = 0;

	if (cpu >= MAX_CPUS || !has_thread[cpu])
		return;
	if (watchdog_soft_check(cpu, tsc_ns(), 1000000000ull / timer_hz(), &stuck) != WD_LOCKUP)
		return;
	struct task *t = task_current();
	watchdog_note_soft_lockup(cpu);
	pr_emerg("watchdog: BUG: soft lockup - CPU#%u stuck for %llus! [%s:%u]", cpu,
		 (unsigned long long)(stuck / 1000000000ull), t ? t->name : "?", t ? t->id : 0);
	wd_show_regs_r(cpu, r, NK_LOG_EMERG);
	if (watchdog_soft_panic())
		panic("softlockup: hung tasks");
	pr_emerg("---[ end soft lockup on CPU#%u ]---", cpu);
}
