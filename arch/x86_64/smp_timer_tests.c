/*
 * smp_timer_tests.c: in-kernel tests of CPU bring-up, the ticks, the IPIs
 * and the IO-APIC / HPET routes the NMI watchdogs will use (suites "boot",
 * "timer", "apic", "ioapic", "hpet").  Every wait is bounded by the TSC and
 * spins with PAUSE.
 */
#include <stdatomic.h>
#include <arch/acpi.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/hpet.h>
#include <arch/ioapic.h>
#include <arch/percpu.h>
#include <arch/pit.h>
#include <arch/smp.h>
#include <arch/tsc.h>
#include <kernel/ktest.h>
#include <kernel/time.h>
#include <nmikit/nmi.h>

/*
 * Wait until cond() or `ms` of TSC time; returns cond()'s last value.  With
 * interrupts on, wait in HLT (the tick or an NMI wakes us): under -icount
 * with many CPUs a PAUSE loop makes QEMU cycle through every vCPU for each
 * iteration, while HLT lets virtual time skip to the next event.
 */
static bool wait_ms(bool (*cond)(void), unsigned int ms)
{
	uint64_t end = rdtsc() + ns_to_tsc((uint64_t)ms * 1000000u);
	bool can_halt = irqs_enabled() && lapic_timer_rate;
	while (!cond()) {
		if ((int64_t)(rdtsc() - end) > 0)
			return cond();
		if (can_halt)
			cpu_halt();
		else
			cpu_relax();
	}
	return true;
}

/* --- boot ----------------------------------------------------------------- */

KTEST(boot, all_cpus_online)
{
	unsigned int want = platform.n_cpus < cpus_possible ? platform.n_cpus : cpus_possible;
	kt_diag("cpus: %u listed, %u possible, %u online", platform.n_cpus, cpus_possible,
		smp_cpus_online());
	KT_EXPECT_EQ(cpus_possible, want);
	KT_EXPECT_EQ(smp_cpus_online(), cpus_possible);
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++) {
		KT_EXPECT_EQ((int)smp_cpu_state(cpu), (int)SMP_ONLINE);
		KT_EXPECT_TRUE(percpu_area[cpu].online);
		KT_EXPECT_EQ(smp_cpu_of_apic(percpu_area[cpu].apic_id), (int)cpu);
	}
	/* Stable numbering: the boot CPU is 0. */
	KT_EXPECT_EQ(percpu_area[0].apic_id, lapic_id());
}

static uint64_t tick_snap[MAX_CPUS];

static bool all_ticked(void)
{
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++)
		if (percpu_area[cpu].online && percpu_area[cpu].apic_ticks < tick_snap[cpu] + 3)
			return false;
	return true;
}

KTEST(boot, ticks_on_every_cpu)
{
	uint64_t flags = irq_save();
	irq_enable();	/* CPU 0 (us) must be able to take its own ticks */
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++)
		tick_snap[cpu] = percpu_area[cpu].apic_ticks;
	bool ok = wait_ms(all_ticked, 3000);
	irq_disable();
	irq_restore(flags);
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++)
		if (percpu_area[cpu].apic_ticks < tick_snap[cpu] + 3)
			kt_diag("cpu %u: apic_ticks %llu -> %llu", cpu,
				(unsigned long long)tick_snap[cpu],
				(unsigned long long)percpu_area[cpu].apic_ticks);
	KT_EXPECT_TRUE(ok);
}

static uint64_t irq0_snap;
static bool irq0_ticked(void) { return percpu_area[0].irq0_ticks >= irq0_snap + 3; }

KTEST(boot, irq0_ticks)
{
	if (!ioapic_present())
		KT_SKIP("no IO-APIC: no IRQ0 tick");
	if (!pit_irq_count() && percpu_area[0].apic_ticks > 200)
		KT_SKIP("the PIT tick is off (pit_tick=0)");
	uint64_t flags = irq_save();
	irq_enable();
	irq0_snap = percpu_area[0].irq0_ticks;
	bool ok = wait_ms(irq0_ticked, 3000);
	irq_disable();
	irq_restore(flags);
	KT_EXPECT_TRUE(ok);
}

/* --- timer ---------------------------------------------------------------- */

KTEST(timer, tsc_clock_monotonic)
{
	uint64_t prev = tsc_ns();
	for (int i = 0; i < 100000; i++) {
		uint64_t now = tsc_ns();
		KT_ASSERT_GE(now, prev);
		prev = now;
	}
	KT_EXPECT_GT(tsc_hz, 1000000u);
	KT_EXPECT_GT(boot_elapsed_ns(), 0u);
}

static uint64_t rate_t0;
static bool rate_done(void) { return rdtsc() - rate_t0 >= ns_to_tsc(200000000u); }

/* 200 ms of TSC time hold about 200 ms worth of local APIC ticks. */
KTEST(timer, lapic_tick_rate)
{
	if (!lapic_timer_rate)
		KT_SKIP("no local APIC timer");
	uint64_t flags = irq_save();
	irq_enable();
	uint64_t t0 = percpu_area[0].apic_ticks;
	rate_t0 = rdtsc();
	wait_ms(rate_done, 1000);
	uint64_t n = percpu_area[0].apic_ticks - t0;
	irq_disable();
	irq_restore(flags);
	uint64_t want = timer_hz() / 5;
	kt_diag("ticks in 200 ms: %llu (expected %llu)", (unsigned long long)n,
		(unsigned long long)want);
	/* Without -icount a busy host can delay (and merge) ticks; never add them. */
	KT_EXPECT_GE(n, want / 3);
	KT_EXPECT_LE(n, want + 2);
}

/* --- NMIs through the APIC, the IO-APIC and the HPET ------------------------ */

static _Atomic uint64_t nmi_seen[MAX_CPUS];
static atomic_bool test_nmis_on;
/* Work for the handler: send an IPI from NMI context (ICR test). */
static atomic_int icr_work_target = -1;

/* NMI context: counts per CPU while a test runs; claims them then. */
static int test_nmi(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	if (!atomic_load(&test_nmis_on))
		return NMI_DONE;
	atomic_fetch_add(&nmi_seen[this_cpu_id()], 1);
	int target = atomic_exchange(&icr_work_target, -1);
	if (target >= 0)
		lapic_send_nmi(percpu_area[target].apic_id);
	return NMI_HANDLED;
}

static uint64_t settle_t0;
static bool settled(void) { return rdtsc() - settle_t0 >= ns_to_tsc(5000000u); }
static bool saved_lost_recovery;
static bool two_ticks(void) { return rdtsc() - settle_t0 >= ns_to_tsc(2 * 1000000000ull / timer_hz() + 1000000u); }

/*
 * test_nmi claims every NMI, so the lost-NMI probe's own self-NMIs would be
 * counted (and each claim would re-arm the probe).  Pause the recovery for
 * the test, and let two ticks pass so a probe already queued or in flight
 * is dropped or lands before counting starts.
 */
static bool nmi_test_begin(void)
{
	saved_lost_recovery = nmi_lost_recovery;
	nmi_lost_recovery = false;
	settle_t0 = rdtsc();
	wait_ms(two_ticks, 1000);
	for (unsigned int cpu = 0; cpu < MAX_CPUS; cpu++)
		atomic_store(&nmi_seen[cpu], 0);
	if (nmi_register(NMI_LOCAL, "smp-timer-test", test_nmi, 0) != NMI_OK)
		return false;
	atomic_store(&test_nmis_on, true);
	return true;
}

/* Let NMIs already on their way land while the handler still claims them. */
static void nmi_test_end(void)
{
	settle_t0 = rdtsc();
	wait_ms(settled, 100);
	atomic_store(&test_nmis_on, false);
	nmi_unregister(NMI_LOCAL, "smp-timer-test");
	nmi_lost_recovery = saved_lost_recovery;
}

static uint64_t nmi_want[MAX_CPUS];
static bool nmis_arrived(void)
{
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++)
		if (atomic_load(&nmi_seen[cpu]) < nmi_want[cpu])
			return false;
	return true;
}

static void expect_nmis(const char *what)
{
	bool ok = wait_ms(nmis_arrived, 2000);
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++)
		if (atomic_load(&nmi_seen[cpu]) != nmi_want[cpu])
			kt_diag("%s: cpu %u got %llu NMIs, expected %llu", what, cpu,
				(unsigned long long)atomic_load(&nmi_seen[cpu]),
				(unsigned long long)nmi_want[cpu]);
	KT_EXPECT_TRUE(ok);
}

KTEST(apic, nmi_ipi_to_each_cpu)
{
	KT_ASSERT_TRUE(nmi_test_begin());
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++) {
		nmi_want[cpu] = percpu_area[cpu].online ? 1 : 0;
		if (percpu_area[cpu].online) {
			lapic_send_nmi(percpu_area[cpu].apic_id);
			/* One at a time: two NMIs to one CPU could merge in its latch. */
			wait_ms(nmis_arrived, 1000);
		}
	}
	expect_nmis("each");
	nmi_test_end();
}

KTEST(apic, nmi_allbutself_and_all)
{
	KT_ASSERT_TRUE(nmi_test_begin());
	unsigned int me = this_cpu_id();
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++)
		nmi_want[cpu] = (percpu_area[cpu].online && cpu != me) ? 1 : 0;
	lapic_send_nmi_allbutself();
	expect_nmis("allbutself");
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++)
		nmi_want[cpu] = percpu_area[cpu].online ? nmi_want[cpu] + 1 : 0;
	lapic_send_nmi_all();
	expect_nmis("all");
	nmi_test_end();
}

/*
 * An NMI that sends an IPI while the code it interrupted has written
 * ICR-high but not yet ICR-low must leave ICR-high as it found it.  Stand-in
 * for the interrupted sender: a sentinel destination written to ICR-high;
 * the NMI comes from a self-NMI and its handler sends an NMI to another CPU.
 */
KTEST(apic, icr_high_survives_nmi_send)
{
	if (cpus_possible < 2 || !percpu_area[1].online)
		KT_SKIP("needs a second online CPU");
	KT_ASSERT_TRUE(nmi_test_begin());
	unsigned int me = this_cpu_id(), other = me == 0 ? 1 : 0;
	nmi_want[me] = 1;
	nmi_want[other] = 1;
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++)
		if (cpu != me && cpu != other)
			nmi_want[cpu] = 0;
	uint64_t flags = irq_save();
	const uint32_t sentinel = 0xabu << ICR_DEST_SHIFT;
	atomic_store(&icr_work_target, (int)other);
	lapic_write(LAPIC_ICR_HIGH, sentinel);
	lapic_send_nmi_self();	/* its handler sends to `other` */
	expect_nmis("icr");
	uint32_t high = lapic_read(LAPIC_ICR_HIGH);
	irq_restore(flags);
	KT_EXPECT_EQ(high, sentinel);
	nmi_test_end();
}

static uint64_t ioapic_nmi_t0;
static bool ioapic_window_done(void) { return rdtsc() - ioapic_nmi_t0 >= ns_to_tsc(100000000u); }

/*
 * The IO-APIC NMI watchdog's route: the PIT's IRQ0 delivered through the
 * IO-APIC with NMI delivery mode (then put back).  At HZ, 100 ms of it
 * brings about HZ/10 NMIs to the chosen CPU and none to the others.
 */
KTEST(ioapic, irq0_as_nmi)
{
	if (!ioapic_present())
		KT_SKIP("no IO-APIC");
	unsigned int target = cpus_possible > 1 && percpu_area[1].online ? 1 : 0;
	uint16_t flags;
	uint32_t gsi = acpi_isa_irq_to_gsi(PIT_IRQ, &flags);
	uint64_t saved = ioapic_read_entry(gsi);
	KT_ASSERT_TRUE(nmi_test_begin());
	pit_start_periodic(timer_hz());
	KT_ASSERT_TRUE(ioapic_route(gsi, 0, percpu_area[target].apic_id, IOAPIC_DM_NMI, flags));
	ioapic_nmi_t0 = rdtsc();
	wait_ms(ioapic_window_done, 1000);
	/* Back to the fixed-vector tick, masked if it was masked. */
	ioapic_route(gsi, (uint8_t)saved, (uint32_t)(saved >> 56), IOAPIC_DM_FIXED,
		     flags | ((saved & IOAPIC_MASKED) ? IOAPIC_ROUTE_MASKED : 0));
	nmi_test_end();
	uint64_t got = atomic_load(&nmi_seen[target]);
	kt_diag("IRQ0 (GSI %u) as NMI to CPU %u: %llu NMIs in 100 ms", gsi, target,
		(unsigned long long)got);
	/*
	 * Loose bounds: without -icount the window is host time and a loaded
	 * host can deliver the PIT's ticks in bursts.  The property under test
	 * is the route: NMIs arrive, at a tick-like rate, on the chosen CPU only.
	 */
	KT_EXPECT_GE(got, timer_hz() / 30);
	KT_EXPECT_LE(got, timer_hz() / 10 * 3 + 2);
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++)
		if (cpu != target)
			KT_EXPECT_EQ(atomic_load(&nmi_seen[cpu]), 0u);
}

static unsigned int hpet_target;
static uint64_t hpet_want;
static bool hpet_target_got(void) { return atomic_load(&nmi_seen[hpet_target]) >= hpet_want; }

/*
 * The HPET NMI watchdog's route: a comparator periodic every 1 ms with FSB
 * delivery of NMIs, first to one CPU, then moved to another by rewriting
 * only the FSB address word (what its NMI handler will do).
 */
KTEST(hpet, fsb_nmi_periodic_and_retarget)
{
	if (!hpet_present())
		KT_SKIP("no HPET");
	unsigned int n;
	struct hpet_timer_info info = { 0 };
	for (n = 0; n < hpet_num_timers(); n++)
		if (hpet_timer_info(n, &info) && info.fsb && info.periodic)
			break;
	if (n == hpet_num_timers())
		KT_SKIP("no comparator with FSB delivery (QEMU: -global hpet.msi=on)");
	unsigned int a = 0, b = cpus_possible > 1 && percpu_area[1].online ? 1 : 0;
	KT_ASSERT_TRUE(nmi_test_begin());
	KT_ASSERT_TRUE(hpet_timer_start_periodic_fsb(n, hpet_ns_to_ticks(1000000),
						     msi_address(percpu_area[a].apic_id),
						     msi_data(ICR_DM_NMI, 0)));
	hpet_target = a;
	hpet_want = 5;
	bool ok_a = wait_ms(hpet_target_got, 2000);
	hpet_timer_set_fsb_addr(n, msi_address(percpu_area[b].apic_id));
	hpet_target = b;
	hpet_want = atomic_load(&nmi_seen[b]) + 5;
	bool ok_b = wait_ms(hpet_target_got, 2000);
	hpet_timer_disable(n);
	nmi_test_end();
	kt_diag("HPET timer %u: %llu NMIs on CPU %u, %llu on CPU %u", n,
		(unsigned long long)atomic_load(&nmi_seen[a]), a,
		(unsigned long long)atomic_load(&nmi_seen[b]), b);
	KT_EXPECT_TRUE(ok_a);
	KT_EXPECT_TRUE(ok_b);
}
