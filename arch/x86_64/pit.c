/*
 * pit.c: the 8254 PIT, channel 0 only: a free-running counter to calibrate
 * against when there is no HPET, and the IRQ0 tick that the 2.6.24-style
 * watchdog heartbeat adds to the local APIC ticks.
 */
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/ioapic.h>
#include <arch/percpu.h>
#include <arch/pit.h>
#include <kernel/irq.h>
#include <nmikit/log.h>

#define PIT_CH0		0x40
#define PIT_CMD		0x43
/* Command bytes: channel 0, low then high byte, binary. */
#define PIT_CMD_CH0_MODE0	0x30	/* interrupt on terminal count */
#define PIT_CMD_CH0_MODE2	0x34	/* rate generator */
#define PIT_CMD_CH0_LATCH	0x00

static void (*volatile pit_hook)(void);
static volatile uint64_t pit_irqs;

void pit_free_run(void)
{
	outb(PIT_CMD, PIT_CMD_CH0_MODE2);
	outb(PIT_CH0, 0);	/* 0 = 65536 */
	outb(PIT_CH0, 0);
}

uint16_t pit_read(void)
{
	outb(PIT_CMD, PIT_CMD_CH0_LATCH);
	uint8_t lo = inb(PIT_CH0);
	uint8_t hi = inb(PIT_CH0);
	return (uint16_t)(lo | (hi << 8));
}

uint64_t pit_start_periodic(unsigned int hz)
{
	if (!hz)
		hz = 1;
	uint32_t div = (PIT_HZ + hz / 2) / hz;
	if (div < 2)
		div = 2;	/* mode 2 does not allow 1 */
	if (div > 65536)
		div = 65536;
	outb(PIT_CMD, PIT_CMD_CH0_MODE2);
	outb(PIT_CH0, div & 0xff);
	outb(PIT_CH0, (div >> 8) & 0xff);	/* 65536 is written as 0 */
	return (uint64_t)PIT_HZ * 1000 / div;
}

void pit_stop(void)
{
	/* Mode 0 holds the output low until a count is written, which never happens. */
	outb(PIT_CMD, PIT_CMD_CH0_MODE0);
}

/* IRQ0: count it on the CPU that took it. */
static void pit_irq(struct regs *r)
{
	(void)r;
	this_cpu()->irq0_ticks++;
	__atomic_fetch_add(&pit_irqs, 1, __ATOMIC_RELAXED);
	void (*fn)(void) = pit_hook;
	if (fn)
		fn();
}

void pit_set_irq_hook(void (*fn)(void))
{
	pit_hook = fn;
}

uint64_t pit_irq_count(void)
{
	return pit_irqs;
}

bool pit_tick_start(unsigned int hz)
{
	if (!ioapic_present())
		return false;
	int err = irq_register(IRQ_VEC_ISA_BASE + PIT_IRQ, pit_irq, "pit");
	if (err && err != -EBUSY) {
		pr_err("PIT: cannot register vector %#x (%d)", IRQ_VEC_ISA_BASE + PIT_IRQ, err);
		return false;
	}
	uint64_t mhz = pit_start_periodic(hz);
	if (!ioapic_route_isa(PIT_IRQ, IRQ_VEC_ISA_BASE + PIT_IRQ, percpu_area[0].apic_id,
			      IOAPIC_DM_FIXED)) {
		pr_warn("PIT: no IO-APIC input for IRQ0; IRQ0 tick off");
		pit_stop();
		return false;
	}
	pr_info("PIT: IRQ0 tick at %llu.%03llu Hz to CPU 0, vector %#x",
		(unsigned long long)(mhz / 1000), (unsigned long long)(mhz % 1000),
		IRQ_VEC_ISA_BASE + PIT_IRQ);
	return true;
}
