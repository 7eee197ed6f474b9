/*
 * cpu_hotplug.c: taking a CPU offline and back (`cpu offline N`, `cpu online
 * N`).  An offline CPU is parked, not removed: a kernel thread pinned to it
 * turns interrupts off, stops its local APIC timer, clears its `online` flag
 * and halts in a loop.  Before that, the watchdog stops watching it (for the
 * HPET source: comparator stopped, in-flight NMIs flushed, ring rebuilt
 * without it, comparator restarted), so its silence is never taken for a
 * lockup.
 *
 * How a parked CPU answers NMIs: HLT with interrupts off still ends on an
 * NMI.  Each NMI runs the normal dispatch (so handlers must cope with an
 * offline CPU: the watchdog checks only monitored CPUs, nmi_backtrace()
 * does not ask offline CPUs and reports them as offline) and returns into
 * the loop, which halts again unless the NMI was `cpu online`'s wake-up,
 * which cpu_hotplug_nmi() claims.  The watchdog's NMI handler asks it for
 * every NMI while the CPU carries WD_LISTEN_PARKED in its doorbell (set
 * before hp_parked, cleared after it, so the listen bit covers every NMI
 * that cpu_hotplug_nmi() counts), and for no NMI otherwise.  A panic
 * shootdown's NMI parks it for good like any other CPU.  Maskable interrupts (a reschedule IPI, say)
 * stay pending until it comes back.
 *
 * CPU 0 stays online: it runs the shell and reads the external NMI reasons.
 * Tasks pinned to an offline CPU wait for it to come back.
 */
#include <stdatomic.h>

#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <kernel/sched.h>
#include <kernel/shell.h>
#include <kernel/time.h>
#include <kernel/watchdog.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

enum hp_state { HP_ONLINE = 0, HP_GOING, HP_OFFLINE, HP_COMING };

#define HP_WAIT_MS	2000

static _Atomic int hp_state[MAX_CPUS];
static _Atomic bool hp_parked[MAX_CPUS];	/* in the halt loop */
static _Atomic bool hp_wake[MAX_CPUS];		/* leave the loop */
static _Atomic bool hp_cancel[MAX_CPUS];	/* the park thread came too late: do not park */
static _Atomic bool hp_busy;
static _Atomic uint64_t hp_nmis_parked[MAX_CPUS];	/* NMIs taken while parked */

/* NMI-safe: yes (one load). */
bool cpu_is_offline(unsigned cpu)
{
	return cpu < MAX_CPUS && atomic_load_explicit(&hp_state[cpu], memory_order_acquire) != HP_ONLINE;
}

/*
 * NMI context (from the watchdog's handler, on every NMI of a CPU with
 * WD_LISTEN_PARKED): count NMIs that reach a parked CPU and claim the
 * wake-up.  Safe: this CPU's own flags.
 */
int cpu_hotplug_nmi(unsigned me)
{
	if (me >= MAX_CPUS || !atomic_load_explicit(&hp_parked[me], memory_order_acquire))
		return NMI_DONE;
	atomic_fetch_add_explicit(&hp_nmis_parked[me], 1, memory_order_relaxed);
	return atomic_load_explicit(&hp_wake[me], memory_order_acquire) ? NMI_HANDLED : NMI_DONE;
}

/* The park itself, on the CPU going offline. */
static void hotplug_park(void *arg)
{
	unsigned me = this_cpu_id();

	(void)arg;
	irq_disable();
	if (atomic_exchange(&hp_cancel[me], false)) {
		irq_enable();
		return;
	}
	lapic_timer_stop();
	percpu_area[me].online = false;
	/* Listen first: cpu_online() sends its wake-up only once hp_parked is seen. */
	wd_nmi_listen(me, WD_LISTEN_PARKED, true);
	atomic_store_explicit(&hp_parked[me], true, memory_order_release);
	/*
	 * Interrupts off: only an NMI (or INIT/SMI) ends the HLT.  Deliberately
	 * unbounded: the CPU stays here until `cpu online`.
	 */
	while (!atomic_load_explicit(&hp_wake[me], memory_order_acquire))
		cpu_halt();
	atomic_store_explicit(&hp_wake[me], false, memory_order_relaxed);
	atomic_store_explicit(&hp_parked[me], false, memory_order_release);
	wd_nmi_listen(me, WD_LISTEN_PARKED, false);
	percpu_area[me].online = true;
	lapic_timer_start(timer_hz());
	irq_enable();
}

static bool hp_lock(void)
{
	if (atomic_exchange(&hp_busy, true)) {
		shell_printf("cpu: another offline/online is in progress\n");
		return false;
	}
	return true;
}

static void hp_unlock(void)
{
	atomic_store(&hp_busy, false);
}

static bool wait_for(_Atomic bool *flag, bool want)
{
	for (unsigned ms = 0; ms < HP_WAIT_MS; ms++) {
		if (atomic_load(flag) == want)
			return true;
		sleep_ms(1);
	}
	return atomic_load(flag) == want;
}

int cpu_offline(unsigned cpu)
{
	char name[TASK_NAME_MAX];
	int err = -1;

	if (cpu == 0) {
		pr_warn("cpu: CPU 0 runs the shell and reads the external NMI reasons; it stays online");
		return -1;
	}
	if (cpu >= cpus_possible || cpu >= MAX_CPUS || !percpu_area[cpu].online ||
	    cpu_is_offline(cpu)) {
		pr_warn("cpu: CPU %u is not online", cpu);
		return -1;
	}
	if (!hp_lock())
		return -1;
	atomic_store(&hp_state[cpu], HP_GOING);
	/* First out of the watchdog's sight, then out of the way. */
	watchdog_cpu_going_offline(cpu);
	nk_snprintf(name, sizeof(name), "cpuhp/%u", cpu);
	struct task *t = task_create_kernel(name, hotplug_park, NULL, (int)cpu);
	if (!t) {
		pr_warn("cpu: no task to park CPU %u", cpu);
	} else {
		task_detach(t);
		if (wait_for(&hp_parked[cpu], true)) {
			atomic_store(&hp_state[cpu], HP_OFFLINE);
			pr_info("cpu: CPU %u is offline (parked, interrupts off)", cpu);
			err = 0;
		} else {
			/* It never got to run its park thread (interrupts off for long?). */
			atomic_store(&hp_cancel[cpu], true);
			pr_warn("cpu: CPU %u did not park within %u ms; left online", cpu, HP_WAIT_MS);
		}
	}
	if (err) {
		atomic_store(&hp_state[cpu], HP_ONLINE);
		watchdog_cpu_back_online(cpu);
	}
	hp_unlock();
	return err;
}

int cpu_online(unsigned cpu)
{
	if (cpu >= cpus_possible || cpu >= MAX_CPUS ||
	    atomic_load(&hp_state[cpu]) != HP_OFFLINE) {
		pr_warn("cpu: CPU %u is not offline", cpu);
		return -1;
	}
	if (!hp_lock())
		return -1;
	atomic_store(&hp_state[cpu], HP_COMING);
	atomic_store_explicit(&hp_wake[cpu], true, memory_order_release);
	os_send_nmi(cpu);
	if (!wait_for(&hp_parked[cpu], false)) {
		atomic_store(&hp_state[cpu], HP_OFFLINE);
		hp_unlock();
		pr_warn("cpu: CPU %u did not wake up", cpu);
		return -1;
	}
	atomic_store(&hp_state[cpu], HP_ONLINE);
	watchdog_cpu_back_online(cpu);
	hp_unlock();
	pr_info("cpu: CPU %u is online", cpu);
	return 0;
}

static const char *state_name(unsigned cpu)
{
	static const char *const names[] = { "online", "going offline", "offline", "coming online" };
	int s = atomic_load(&hp_state[cpu]);

	if (s == HP_ONLINE && !percpu_area[cpu].online)
		return "down";
	return names[s];
}

static int cmd_cpu(int argc, char **argv)
{
	uint64_t n;

	if (argc == 1) {
		shell_printf("CPU  state          watched  NMIs while parked\n");
		for (unsigned cpu = 0; cpu < cpus_possible && cpu < MAX_CPUS; cpu++)
			shell_printf("%3u  %-13s  %-7s  %llu\n", cpu, state_name(cpu),
				     wd_monitored(cpu) ? "yes" : "no",
				     (unsigned long long)atomic_load(&hp_nmis_parked[cpu]));
		return 0;
	}
	if (argc != 3 || !shell_parse_u64(argv[2], &n) || n >= MAX_CPUS)
		return SHELL_USAGE;
	if (!__builtin_strcmp(argv[1], "offline"))
		return cpu_offline((unsigned)n) ? 1 : 0;
	if (!__builtin_strcmp(argv[1], "online"))
		return cpu_online((unsigned)n) ? 1 : 0;
	return SHELL_USAGE;
}
SHELL_CMD(cpu, "[offline N | online N]",
	  "CPU states; park a CPU offline (interrupts off, not watched) or bring it back", cmd_cpu);
