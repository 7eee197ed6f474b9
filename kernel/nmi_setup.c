/*
 * nmi_setup.c: the testbed kernel's glue around the portable NMI core: the
 * irq_work IPI vector, the per-CPU tick work, and the boot-time NMI
 * self-test (every CPU gets a self NMI and an NMI from every other CPU).
 */
#include <stdatomic.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <kernel/irq.h>
#include <kernel/nmi_setup.h>
#include <nmikit/irq_work.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

extern unsigned irq_work_vector;

static void irq_work_ipi(struct regs *r)
{
	(void)r;
	irq_work_run();
}

void nmi_kernel_init(void)
{
	int v = irq_work_vector;
	if (irq_register(v, irq_work_ipi, "irq_work") != 0)
		pr_err("nmi: cannot register the irq_work vector %#x\n", v);
	nmi_set_external_owner(0);
}

/* Called by the timer tick on every CPU, interrupts off. */
void nmi_kernel_tick(void)
{
	irq_work_tick();
}

/* --- boot self-test ------------------------------------------------------ */

static atomic_bool selftest_active;
static atomic_bool selftest_cmd[MAX_CPUS];
static _Atomic uint64_t selftest_expected[MAX_CPUS][MAX_CPUS / 64];
static _Atomic uint64_t selftest_received[MAX_CPUS][MAX_CPUS / 64];

/* NMI context: lock-free sends and atomics only. */
static void selftest_fan_out(unsigned me)
{
	for (unsigned d = 0; d < os_cpu_count(); d++) {
		if (!os_cpu_online(d))
			continue;
		atomic_fetch_or(&selftest_expected[d][me / 64], 1ull << (me % 64));
		if (d == me)
			os_send_nmi_self();
		else
			os_send_nmi(d);
	}
}

static int count_bits(uint64_t v)
{
	int n = 0;
	for (; v; v &= v - 1)
		n++;
	return n;
}

static int selftest_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	if (!atomic_load(&selftest_active))
		return NMI_DONE;
	unsigned me = os_cpu_id();
	int claimed = 0;
	if (atomic_exchange(&selftest_cmd[me], false)) {
		selftest_fan_out(me);
		claimed++;
	}
	for (unsigned w = 0; w < MAX_CPUS / 64; w++) {
		uint64_t got = atomic_exchange(&selftest_expected[me][w], 0);
		atomic_fetch_or(&selftest_received[me][w], got);
		claimed += count_bits(got);
	}
	/* While the test runs, NMIs merged by the latch find nothing: still ours. */
	return claimed ? claimed : NMI_HANDLED;
}

static bool selftest_complete(unsigned c, unsigned *from)
{
	unsigned n = 0;
	for (unsigned s = 0; s < os_cpu_count(); s++)
		if (os_cpu_online(s) && (atomic_load(&selftest_received[c][s / 64]) & (1ull << (s % 64))))
			n++;
	*from = n;
	return (atomic_load(&selftest_received[c][c / 64]) & (1ull << (c % 64))) != 0;
}

int nmi_selftest_boot(void)
{
	unsigned online = 0, failed = 0;
	if (nmi_register(NMI_LOCAL, "selftest", selftest_handler, 0) != 0) {
		pr_err("NMI self-test: cannot register its handler\n");
		return -1;
	}
	atomic_store(&selftest_active, true);
	for (unsigned c = 0; c < os_cpu_count(); c++) {
		if (!os_cpu_online(c))
			continue;
		online++;
		atomic_store(&selftest_cmd[c], true);
		os_send_nmi(c);
	}
	uint64_t deadline = os_timestamp_ns() + 1000000000ull;
	for (;;) {
		unsigned done = 0, from;
		for (unsigned c = 0; c < os_cpu_count(); c++)
			if (os_cpu_online(c) && selftest_complete(c, &from) && from == online)
				done++;
		if (done == online || os_timestamp_ns() > deadline)
			break;
		cpu_relax();
	}
	for (unsigned c = 0; c < os_cpu_count(); c++) {
		unsigned from;
		if (!os_cpu_online(c))
			continue;
		bool self = selftest_complete(c, &from);
		if (!self || from != online) {
			failed++;
			pr_err("NMI self-test: CPU%u: self NMI %s, NMIs from %u/%u CPUs\n",
			       c, self ? "ok" : "MISSING", from, online);
		}
	}
	atomic_store(&selftest_active, false);
	nmi_unregister(NMI_LOCAL, "selftest");
	if (failed)
		pr_err("NMI self-test: FAILED on %u of %u CPUs\n", failed, online);
	else
		pr_info("NMI self-test: %u CPU%s, each got a self NMI and one from every CPU: ok\n",
			online, online == 1 ? "" : "s");
	return failed ? -1 : 0;
}
