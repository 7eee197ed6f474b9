/*
 * watchdog_perf.c: the PMU hard-lockup source.  Where CPUID leaf 0xA reports
 * an architectural PMU with the unhalted-core-cycles event, general counter 0
 * of each monitored CPU counts that CPU's cycles and overflows into an NMI
 * through the local APIC's performance-counter LVT about once per check
 * period; the CPU checks itself in that NMI.  A halted CPU counts no cycles
 * and takes no NMIs, which is fine: a halted CPU is not locked up.
 *
 * QEMU's TCG emulates no PMU (leaf 0xA reads 0): unavailable() says so and
 * `auto` picks another source.  The counters are armed and disarmed by each
 * CPU itself (its tick, or its NMI), since the MSRs are per CPU.
 */
#include <stdatomic.h>

#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/tsc.h>
#include <kernel/shell.h>
#include <kernel/watchdog.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

#define MSR_PERFEVTSEL0			0x186
#define MSR_PMC0			0x0c1
#define MSR_PERF_GLOBAL_STATUS		0x38e
#define MSR_PERF_GLOBAL_CTRL		0x38f
#define MSR_PERF_GLOBAL_OVF_CTRL	0x390

#define EVTSEL_USR		(1u << 16)
#define EVTSEL_OS		(1u << 17)
#define EVTSEL_INT		(1u << 20)
#define EVTSEL_EN		(1u << 22)
#define EVENT_CORE_CYCLES	0x3cu		/* unhalted core cycles, umask 0 */

#define PERF_CHECKS_PER_THRESH	20
/* Counter writes through IA32_PMC0 keep only 32 bits, sign-extended. */
#define PERF_MAX_COUNT		0x7fffffffull

static unsigned pmu_version, pmu_width;
static uint64_t period_cycles, period_ns;
static _Atomic bool want[MAX_CPUS];	/* this CPU should count */
static _Atomic bool armed[MAX_CPUS];	/* it does */
static _Atomic uint64_t n_overflows;
static char why[160];

static const char *perf_unavailable(void)
{
	uint32_t a, b, c, d, max;
	char vendor[13];

	cpuid(0, 0, &max, &b, &c, &d);
	__builtin_memcpy(vendor, &b, 4);
	__builtin_memcpy(vendor + 4, &d, 4);
	__builtin_memcpy(vendor + 8, &c, 4);
	vendor[12] = '\0';
	cpuid(1, 0, &a, &b, &c, &d);
	const char *hv = (c & (1u << 31)) ? "; under a hypervisor (QEMU's TCG emulates no PMU)" : "";
	if (max < 0xa) {
		nk_snprintf(why, sizeof(why), "CPUID (%s) has no leaf 0xA, highest basic leaf %#x: "
			    "no architectural PMU%s", vendor, max, hv);
		return why;
	}
	cpuid(0xa, 0, &a, &b, &c, &d);
	pmu_version = a & 0xff;
	pmu_width = (a >> 16) & 0xff;
	if (pmu_version == 0) {
		nk_snprintf(why, sizeof(why), "CPUID leaf 0xA (%s) reports no architectural PMU "
			    "(version 0)%s", vendor, hv);
		return why;
	}
	if (((a >> 8) & 0xff) == 0)
		return "the architectural PMU has no general-purpose counter";
	if (((a >> 24) & 0xff) < 1 || (b & 1))
		return "the PMU cannot count unhalted core cycles";
	if (pmu_width < 32)
		return "the PMU's counters are narrower than 32 bits";
	return NULL;
}

/* This CPU: count cycles, NMI on overflow.  Tick or NMI context. */
static void arm_here(unsigned me)
{
	wrmsr(MSR_PERFEVTSEL0, 0);
	wrmsr(MSR_PMC0, (uint64_t)-(int64_t)period_cycles);
	/* The counter's NMI carries no doorbell: listen before it can overflow. */
	wd_nmi_listen(me, WD_LISTEN_SOURCE, true);
	lapic_write(LAPIC_LVT_PERF, LVT_DM_NMI);
	if (pmu_version >= 2)
		wrmsr(MSR_PERF_GLOBAL_CTRL, rdmsr(MSR_PERF_GLOBAL_CTRL) | 1);
	wrmsr(MSR_PERFEVTSEL0, EVENT_CORE_CYCLES | EVTSEL_USR | EVTSEL_OS | EVTSEL_INT | EVTSEL_EN);
	atomic_store(&armed[me], true);
}

static void disarm_here(unsigned me)
{
	wrmsr(MSR_PERFEVTSEL0, 0);
	lapic_write(LAPIC_LVT_PERF, LVT_MASKED | LVT_DM_NMI);
	atomic_store(&armed[me], false);
	/* Stopped and masked: no overflow NMI of its own comes after this. */
	wd_nmi_listen(me, WD_LISTEN_SOURCE, false);
}

/*
 * NMI context, on a CPU whose counter is armed (it listens: WD_LISTEN_SOURCE
 * from arm_here() to disarm_here()).  Safe: this CPU's own MSRs and LVT, per-CPU flags, the core's
 * lock-free check.
 */
static int perf_nmi(unsigned me, struct nmi_frame *f)
{
	if (me >= MAX_CPUS || !atomic_load_explicit(&armed[me], memory_order_relaxed))
		return NMI_DONE;
	bool overflow = pmu_version >= 2 ? (rdmsr(MSR_PERF_GLOBAL_STATUS) & 1)
					 : !(rdmsr(MSR_PMC0) & (1ull << (pmu_width - 1)));
	if (!overflow)
		return NMI_DONE;
	if (!atomic_load_explicit(&want[me], memory_order_relaxed)) {
		disarm_here(me);
		return NMI_HANDLED;
	}
	wrmsr(MSR_PMC0, (uint64_t)-(int64_t)period_cycles);
	if (pmu_version >= 2)
		wrmsr(MSR_PERF_GLOBAL_OVF_CTRL, 1);
	/* Delivery masks the LVT entry on many CPUs: unmask it for the next one. */
	lapic_write(LAPIC_LVT_PERF, LVT_DM_NMI);
	atomic_fetch_add_explicit(&n_overflows, 1, memory_order_relaxed);
	wd_self_check(me, f, period_ns, "perf");
	return NMI_HANDLED;
}

static void perf_tick(unsigned cpu)
{
	bool w = atomic_load_explicit(&want[cpu], memory_order_relaxed);

	if (w != atomic_load_explicit(&armed[cpu], memory_order_relaxed)) {
		if (w)
			arm_here(cpu);
		else
			disarm_here(cpu);
	}
}

static int perf_start(void)
{
	period_ns = watchdog_thresh_ns() / PERF_CHECKS_PER_THRESH;
	period_cycles = ns_to_tsc(period_ns);	/* unhalted cycles run at about the TSC rate */
	if (period_cycles > PERF_MAX_COUNT) {
		period_cycles = PERF_MAX_COUNT;
		period_ns = period_cycles * 1000000000u / tsc_hz;
	}
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
		atomic_store(&want[cpu], wd_monitored(cpu));
	return 0;	/* each CPU arms itself at its next tick */
}

static bool all_disarmed(void *arg)
{
	(void)arg;
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
		if (atomic_load(&armed[cpu]) && os_cpu_online(cpu))
			return false;
	return true;
}

static void perf_stop(void)
{
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
		atomic_store(&want[cpu], false);
	/* Ticks (or, on a CPU with interrupts off, its next counter NMI) disarm. */
	if (!wd_wait(all_disarmed, NULL, 200000000ull))
		pr_warn("NMI watchdog: perf: some CPUs have not stopped their counter yet");
}

static uint64_t perf_period_ns(void)
{
	return period_ns;
}

static void perf_show(void)
{
	shell_printf("perf: PMU version %u, %u-bit counters, %llu cycles per check, "
		     "overflow NMIs %llu\n", pmu_version, pmu_width,
		     (unsigned long long)period_cycles, (unsigned long long)n_overflows);
}

const struct wd_source wd_source_perf = {
	.name = "perf",
	.unavailable = perf_unavailable,
	.start = perf_start,
	.stop = perf_stop,
	.period_ns = perf_period_ns,
	.show = perf_show,
	.tick = perf_tick,
	.nmi = perf_nmi,
};
