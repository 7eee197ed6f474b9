/*
 * time.c: the per-CPU local APIC tick, the PIT tick, the boot-time figure
 * and the `uptime` command.  The hardware work (calibration, timer
 * registers) is in arch/x86_64/{tsc,lapic,pit}.c.
 */
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/pit.h>
#include <arch/tsc.h>
#include <kernel/irq.h>
#include <kernel/shell.h>
#include <kernel/time.h>
#include <nmikit/log.h>
#include <nmikit/param.h>

static unsigned int hz = 100;
NK_PARAM_UINT("hz", hz, 10, 1000, "local APIC timer ticks per second on every CPU");

static bool pit_tick = true;
NK_PARAM_BOOL("pit_tick", pit_tick,
	      "also run the PIT at hz with IRQ0 to CPU 0 (irq0_ticks; the IO-APIC watchdog's source)");

static void (*volatile tick_fn)(struct regs *r);

unsigned int timer_hz(void)
{
	return hz;
}

void timer_set_tick_handler(void (*fn)(struct regs *r))
{
	tick_fn = fn;
}

/* The local APIC timer interrupt, on every CPU. */
static void lapic_timer_irq(struct regs *r)
{
	this_cpu()->apic_ticks++;
	void (*fn)(struct regs *) = tick_fn;
	if (fn)
		fn(r);
}

void time_init(void)
{
	tsc_calibrate();
	if (!lapic_ready() || !lapic_timer_rate) {
		pr_warn("time: no local APIC timer; CPUs get no tick");
	} else {
		int err = irq_register(LAPIC_VEC_TIMER, lapic_timer_irq, "lapic-timer");
		if (err)
			pr_err("time: cannot register the timer vector %#x (%d)", LAPIC_VEC_TIMER, err);
		lapic_timer_start(hz);
		uint64_t count = lapic_timer_rate / hz;
		pr_info("APIC: periodic tick at %u Hz on every CPU, %llu counts, vector %#x",
			hz, (unsigned long long)count, LAPIC_VEC_TIMER);
	}
	if (pit_tick)
		pit_tick_start(hz);
	else
		pr_info("PIT: IRQ0 tick off (pit_tick=0)");
}

void time_init_cpu(void)
{
	lapic_timer_start(hz);
}

/* NMI-safe: reads the TSC; the TSC counts from 0 at reset. */
uint64_t boot_elapsed_ns(void)
{
	return tsc_delta_ns(rdtsc());
}

void time_report_boot(void)
{
	uint64_t ns = boot_elapsed_ns();
	pr_info("nmikit: boot to shell took %llu.%03llu ms", (unsigned long long)(ns / 1000000),
		(unsigned long long)(ns / 1000 % 1000));
}

static int cmd_uptime(int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return SHELL_USAGE;
	uint64_t ns = boot_elapsed_ns();
	uint64_t s = ns / 1000000000u;
	shell_printf("up %llu:%02llu:%02llu.%03llu (%llu.%06llu s since reset), "
		     "CPU 0: %llu APIC ticks, %llu IRQ0 ticks at %u Hz; TSC %llu.%03llu MHz (%s)\n",
		     (unsigned long long)(s / 3600), (unsigned long long)(s / 60 % 60),
		     (unsigned long long)(s % 60), (unsigned long long)(ns / 1000000 % 1000),
		     (unsigned long long)s, (unsigned long long)(ns / 1000 % 1000000),
		     (unsigned long long)percpu_area[0].apic_ticks,
		     (unsigned long long)percpu_area[0].irq0_ticks, hz,
		     (unsigned long long)(tsc_hz / 1000000), (unsigned long long)(tsc_hz / 1000 % 1000),
		     tsc_reference());
	return 0;
}
SHELL_CMD(uptime, "", "time since reset (TSC), tick counts", cmd_uptime);
