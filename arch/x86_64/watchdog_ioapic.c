/*
 * watchdog_ioapic.c: the IO-APIC hard-lockup source, the 2.6.24
 * `nmi_watchdog=1` way.  The PIT keeps ticking at `hz`; its IRQ0 input is
 * rerouted through the IO-APIC with NMI delivery mode, so every period each
 * monitored CPU takes an NMI and checks itself (the alert counter against
 * thresh x nmi_hz of 2.6.24 is the core's evidence with a period of 1/hz).
 *
 * Destination: the IO-APIC sends one message per edge, to one APIC ID or to
 * a flat logical set.  nmikit's local APICs use flat logical mode with CPU n
 * (n < 8) owning bit n, and an NMI sent to a logical set reaches every CPU in
 * it (QEMU delivers to the whole set, as the SDM says for NMI delivery).  So
 * the entry names the logical set of monitored CPUs 0-7; the lowest of them,
 * the forwarder, passes the NMI on by IPI to monitored CPUs 8 and up (or, if
 * no monitored CPU is below 8, the entry names the first monitored CPU
 * physically and it forwards to all the others).  2.6.24 instead fed the
 * timer to every CPU's LINT0 through the 8259 in virtual-wire mode; that
 * path needs the 8259 (nmikit masks it) and ExtINT delivery, so it is not
 * used here.
 *
 * The PIT's NMI carries no status to recognise it by.  As in 2.6.24, an NMI
 * that nothing else explains (the core's unknown chain) is taken for it
 * while this source runs; forwarded NMIs are recognised by a per-CPU flag.
 * While running, IRQ0 no longer counts irq0_ticks: the heartbeat is the
 * local APIC tick alone.  Routes change only in task context.
 */
#include <stdatomic.h>

#include <arch/acpi.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/ioapic.h>
#include <arch/percpu.h>
#include <arch/pit.h>
#include <arch/tsc.h>
#include <kernel/shell.h>
#include <kernel/time.h>
#include <kernel/watchdog.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

#define IOAPIC_FLUSH_NS		200000000ull
#define FLAT_LOGICAL_CPUS	8

static uint32_t gsi;
static uint16_t gsi_flags;
static uint64_t saved_entry;
static bool started_pit;
static _Atomic bool running;
static uint64_t period_ns;
static uint32_t logical_mask;			/* monitored CPUs 0-7 */
static _Atomic int forwarder = -1;		/* CPU that IPIs the rest */
static _Atomic bool forward_to[MAX_CPUS];	/* monitored, not reached by the entry */
static bool reached[MAX_CPUS];			/* CPUs the entry or the forwarder reaches */
static _Atomic bool fwd_req[MAX_CPUS];
static _Atomic bool flush_req[MAX_CPUS];
static _Atomic uint64_t n_pit_nmis, n_forwarded, n_flush_timeouts;

static const char *ioapic_unavailable(void)
{
	uint16_t flags;

	if (!ioapic_present())
		return "no IO-APIC";
	if (ioapic_read_entry(acpi_isa_irq_to_gsi(PIT_IRQ, &flags)) == ~0ull)
		return "no IO-APIC input for the PIT's IRQ0";
	return NULL;
}

static void forward(unsigned me)
{
	for (unsigned c = 0; c < cpus_possible && c < MAX_CPUS; c++)
		if (c != me && atomic_load_explicit(&forward_to[c], memory_order_relaxed)) {
			atomic_store_explicit(&fwd_req[c], true, memory_order_release);
			wd_nmi_request(c, WD_REQ_SOURCE);
			os_send_nmi(c);
			atomic_fetch_add_explicit(&n_forwarded, 1, memory_order_relaxed);
		}
}

/*
 * NMI context, unknown chain: the PIT's NMI (nothing else explained it).
 * Safe: per-CPU checks, NMI-safe IPIs in a loop bounded by the CPU count.
 */
static int ioapic_wd_nmi(unsigned me, struct nmi_frame *f)
{
	uint64_t t0 = rdtsc();

	if (!atomic_load_explicit(&running, memory_order_acquire) || me >= MAX_CPUS)
		return NMI_DONE;
	atomic_fetch_add_explicit(&n_pit_nmis, 1, memory_order_relaxed);
	if (atomic_load_explicit(&forwarder, memory_order_relaxed) == (int)me)
		forward(me);
	if (wd_monitored(me)) {
		wd_self_check(me, f, period_ns, "ioapic");
		wd_cost_record(rdtsc() - t0);
	}
	return NMI_HANDLED;
}

/*
 * NMI context, local chain, when this CPU's doorbell rang (every forwarded
 * and flush NMI rings WD_REQ_SOURCE after setting its flag, before the send;
 * the PIT's own NMIs are recognised on the unknown chain, so this source
 * never listens): a forwarded PIT NMI, or a flush.  Per-CPU flags only.
 */
static int ioapic_wd_local(unsigned me, struct nmi_frame *f)
{
	int claimed = 0;

	if (me >= MAX_CPUS)
		return NMI_DONE;
	if (atomic_load_explicit(&flush_req[me], memory_order_relaxed) &&
	    atomic_exchange_explicit(&flush_req[me], false, memory_order_acq_rel))
		claimed++;
	if (atomic_load_explicit(&fwd_req[me], memory_order_relaxed) &&
	    atomic_exchange_explicit(&fwd_req[me], false, memory_order_acq_rel)) {
		claimed++;
		if (wd_monitored(me))
			wd_self_check(me, f, period_ns, "ioapic");
	}
	return claimed;
}

static uint64_t ioapic_unknown_claims(void)
{
	return atomic_load(&n_pit_nmis);
}

static uint64_t ioapic_period_ns(void)
{
	return period_ns;
}

static int ioapic_start(void)
{
	int first = wd_first_monitored();
	uint32_t dest, flags;

	if (first < 0)
		return 0;
	gsi = acpi_isa_irq_to_gsi(PIT_IRQ, &gsi_flags);
	saved_entry = ioapic_read_entry(gsi);
	logical_mask = 0;
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++) {
		bool m = wd_monitored(cpu);
		if (m && cpu < FLAT_LOGICAL_CPUS)
			logical_mask |= 1u << cpu;
		reached[cpu] = m;
	}
	int fwd = logical_mask ? __builtin_ctz(logical_mask) : first;
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
		atomic_store_explicit(&forward_to[cpu],
				      reached[cpu] && (int)cpu != fwd &&
				      !(cpu < FLAT_LOGICAL_CPUS && (logical_mask & (1u << cpu))),
				      memory_order_relaxed);
	atomic_store_explicit(&forwarder, fwd, memory_order_relaxed);

	/* The PIT at hz: already running for the IRQ0 tick, or started here. */
	uint64_t mhz = (uint64_t)timer_hz() * 1000;
	started_pit = (saved_entry & IOAPIC_MASKED) != 0;
	if (started_pit)
		mhz = pit_start_periodic(timer_hz());
	period_ns = 1000000000000ull / mhz;

	atomic_store_explicit(&running, true, memory_order_release);
	if (logical_mask) {
		dest = logical_mask;
		flags = gsi_flags | IOAPIC_ROUTE_LOGICAL;
	} else {
		dest = percpu_area[first].apic_id;
		flags = gsi_flags;
	}
	if (!ioapic_route(gsi, 0, dest, IOAPIC_DM_NMI, flags)) {
		atomic_store(&running, false);
		pr_err("NMI watchdog: ioapic: cannot route GSI %u", gsi);
		return -1;
	}
	return 0;
}

static bool flushed(void *arg)
{
	(void)arg;
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
		if (atomic_load_explicit(&flush_req[cpu], memory_order_acquire))
			return false;
	return true;
}

static void ioapic_stop(void)
{
	if (!atomic_load(&running))
		return;
	/* Back to the fixed-vector IRQ0 tick (masked if it was). */
	ioapic_route(gsi, (uint8_t)saved_entry, (uint32_t)(saved_entry >> 56), IOAPIC_DM_FIXED,
		     gsi_flags | ((saved_entry & IOAPIC_MASKED) ? IOAPIC_ROUTE_MASKED : 0));
	if (started_pit)
		pit_stop();
	/* NMIs the entry sent before may still be on their way: flush as the HPET does. */
	for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
		if (reached[cpu] && os_cpu_online(cpu)) {
			atomic_store_explicit(&flush_req[cpu], true, memory_order_release);
			wd_nmi_request(cpu, WD_REQ_SOURCE);
			os_send_nmi(cpu);
		}
	if (!wd_wait(flushed, NULL, IOAPIC_FLUSH_NS)) {
		atomic_fetch_add(&n_flush_timeouts, 1);
		for (unsigned cpu = 0; cpu < MAX_CPUS; cpu++)
			atomic_store(&flush_req[cpu], false);
	}
	atomic_store_explicit(&forwarder, -1, memory_order_relaxed);
	atomic_store_explicit(&running, false, memory_order_release);
}

static void ioapic_reconfigure(void)
{
	ioapic_stop();
	ioapic_start();
}

static void ioapic_show(void)
{
	shell_printf("ioapic: PIT IRQ0 (GSI %u) as NMI every %llu us, logical set %#x, "
		     "forwarder cpu %d; PIT NMIs %llu, forwarded %llu, flush timeouts %llu\n",
		     gsi, (unsigned long long)(period_ns / 1000), logical_mask,
		     atomic_load(&forwarder), (unsigned long long)n_pit_nmis,
		     (unsigned long long)n_forwarded, (unsigned long long)n_flush_timeouts);
}

const struct wd_source wd_source_ioapic = {
	.name = "ioapic",
	.unavailable = ioapic_unavailable,
	.start = ioapic_start,
	.stop = ioapic_stop,
	.reconfigure = ioapic_reconfigure,
	.period_ns = ioapic_period_ns,
	.show = ioapic_show,
	.unknown_claims = ioapic_unknown_claims,
	.nmi = ioapic_wd_local,
	.nmi_unknown = ioapic_wd_nmi,
};
