/*
 * irq_tests.c: in-kernel tests of irq_send_self_ipi(), the shorthand self
 * IPI that raises irq_work (kernel/irq.c).  In the apic suite, next to the
 * ICR tests of lapic.c's senders (scenario boot.ipi, test=apic.*).
 */
#include <kernel/irq.h>
#include <kernel/ktest.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/tsc.h>

#include <stdint.h>

static volatile unsigned self_ipi_hits;

static void self_ipi_test_handler(struct regs *r)
{
	(void)r;
	self_ipi_hits++;
}

/*
 * The send leaves ICR-high exactly as it found it (a sender it interrupts
 * may have written its destination there and not yet ICR-low), stays
 * pending while interrupts are off, and arrives once when they come on,
 * counted on this CPU's vector.  ICR-high holds a sentinel no CPU has.
 */
KTEST(apic, self_ipi_shorthand_leaves_icr_high)
{
	const uint32_t sentinel = 0xcdu << ICR_DEST_SHIFT;
	int v = irq_alloc_vector();
	unsigned cpu;
	uint64_t flags, before, t0;
	uint32_t saved, high;

	if (!lapic_ready())
		KT_SKIP("no local APIC");
	KT_ASSERT_GE(v, IRQ_DYN_FIRST);
	KT_ASSERT_EQ(irq_register((unsigned)v, self_ipi_test_handler, "ktest-self-ipi"), 0);
	self_ipi_hits = 0;
	flags = irq_save();
	cpu = this_cpu_id();
	before = irq_count(cpu, (unsigned)v);
	saved = lapic_read(LAPIC_ICR_HIGH);
	lapic_write(LAPIC_ICR_HIGH, sentinel);
	irq_send_self_ipi((unsigned)v);
	high = lapic_read(LAPIC_ICR_HIGH);
	lapic_write(LAPIC_ICR_HIGH, saved);
	KT_EXPECT_EQ(self_ipi_hits, 0);
	irq_enable();
	t0 = rdtsc();
	while (!self_ipi_hits && rdtsc() - t0 < ns_to_tsc(1000000000u))
		cpu_relax();
	irq_restore(flags);
	KT_EXPECT_EQ(high, sentinel);
	KT_EXPECT_EQ(self_ipi_hits, 1);
	KT_EXPECT_EQ(irq_count(cpu, (unsigned)v) - before, 1);
	KT_EXPECT_EQ(irq_unregister((unsigned)v), 0);
}
