/*
 * tsc.c: measures the TSC's frequency and the local APIC timer's rate in
 * one ~10 ms window against a reference clock of known frequency: the HPET
 * main counter when there is one, else channel 0 of the PIT.  Boot CPU,
 * once, interrupts off.
 */
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/hpet.h>
#include <arch/pit.h>
#include <arch/tsc.h>
#include <nmikit/format.h>
#include <nmikit/log.h>

/*
 * Before calibration the TSC is taken to run at TSC_GUESS_HZ.  The guess is
 * deliberately higher than any real TSC, so the early clock runs slow, never
 * fast: at calibration the clock can then jump forward to the true time
 * since reset instead of having to go backwards.
 */
#define TSC_GUESS_HZ	8000000000ull
uint64_t tsc_hz = TSC_GUESS_HZ;
static const struct tsc_scale boot_scale = {
	.mult = (1000000000ull << TSC_SHIFT) / TSC_GUESS_HZ,
};
static struct tsc_scale calibrated_scale;
const struct tsc_scale *volatile tsc_scale_now = &boot_scale;
static const char *reference = "none";

#define CAL_WINDOW_NS	10000000u	/* 10 ms */
/*
 * Iterations allowed for the measurement loops.  A reference that stops
 * moving (a broken HPET, a PIT with no clock) ends the calibration here
 * instead of hanging the boot: ~10-100 ns per iteration on hardware and
 * under QEMU, so seconds, not forever.
 */
#define CAL_MAX_LOOPS	50000000u

const char *tsc_reference(void)
{
	return reference;
}

/* A reference clock as a monotonic tick count, from a counter that may wrap. */
struct refclock {
	const char *name;
	uint64_t hz;
	uint32_t (*read)(void);
	uint32_t mask;		/* counter width */
	bool down;		/* counts down (the PIT) */
	uint32_t prev;
	uint64_t ticks;
};

static uint32_t read_hpet(void) { return hpet_read32(HPET_REG_COUNTER); }
static uint32_t read_pit(void) { return pit_read(); }

static void ref_step(struct refclock *c)
{
	uint32_t now = c->read();
	uint32_t d = c->down ? (c->prev - now) : (now - c->prev);
	c->ticks += d & c->mask;
	c->prev = now;
}

struct cal_result {
	uint64_t tsc;		/* TSC ticks in the window */
	uint64_t lapic;		/* local APIC timer counts in the window */
	uint64_t ref;		/* reference ticks in the window */
};

/* One reading of the reference, the local timer and the TSC, taken together. */
struct cal_point {
	uint64_t ref;		/* accumulated reference ticks */
	uint64_t tsc;		/* TSC in the middle of the reference read */
	uint32_t lapic;
};

/*
 * Read the reference bracketed by two TSC reads, a few times, and keep the
 * reading with the tightest bracket.  A reference read is an I/O or MMIO
 * access: slow on hardware, and under an emulator the vCPU may be
 * descheduled in the middle of one.  A wide bracket means the pairing of
 * TSC and reference is uncertain by that much; the tightest of several is
 * usually within a few hundred TSC ticks.
 */
static void cal_sample(struct refclock *c, struct cal_point *p)
{
	uint64_t best = ~0ull;
	for (int i = 0; i < 5; i++) {
		uint64_t a = rdtsc();
		ref_step(c);
		uint32_t l = lapic_ready() ? lapic_timer_current() : 0;
		uint64_t b = rdtsc();
		if (b - a < best) {
			best = b - a;
			p->ref = c->ticks;
			p->tsc = a + (b - a) / 2;
			p->lapic = l;
		}
	}
}

static bool measure(struct refclock *c, struct cal_result *res)
{
	uint64_t want = (uint64_t)CAL_WINDOW_NS * c->hz / 1000000000u;
	struct cal_point start, end;
	uint32_t i;

	/* Wait for the reference to tick once, to know it runs at all. */
	c->prev = c->read();
	for (i = 0; i < CAL_MAX_LOOPS && c->read() == c->prev; i++)
		cpu_relax();
	if (i == CAL_MAX_LOOPS)
		return false;
	c->prev = c->read();
	c->ticks = 0;
	if (lapic_ready())
		lapic_timer_oneshot_masked(0xffffffffu);
	cal_sample(c, &start);
	for (i = 0; c->ticks - start.ref < want; i++) {
		if (i == CAL_MAX_LOOPS)
			return false;
		cpu_relax();
		ref_step(c);
	}
	cal_sample(c, &end);
	if (lapic_ready())
		lapic_timer_stop();
	res->tsc = end.tsc - start.tsc;
	res->lapic = start.lapic - end.lapic;
	res->ref = end.ref - start.ref;
	return res->ref != 0;
}

static void print_mhz(const char *what, uint64_t hz, const char *tail)
{
	pr_info("%s%llu.%03llu MHz%s", what, (unsigned long long)(hz / 1000000),
		(unsigned long long)(hz / 1000 % 1000), tail);
}

void tsc_calibrate(void)
{
	struct refclock hpet = {
		.name = "HPET", .hz = hpet_freq_hz(), .read = read_hpet, .mask = 0xffffffffu,
	};
	struct refclock pit = {
		.name = "PIT", .hz = PIT_HZ, .read = read_pit, .mask = 0xffffu, .down = true,
	};
	struct refclock *c = NULL;
	struct cal_result res;

	if (hpet_present()) {
		if (measure(&hpet, &res))
			c = &hpet;
		else
			pr_warn("TSC: the HPET counter does not advance; trying the PIT");
	}
	if (!c) {
		pit_free_run();
		if (measure(&pit, &res))
			c = &pit;
		pit_stop();
	}
	if (!c) {
		pr_err("TSC: no reference clock moves (HPET and PIT both silent); "
		       "assuming a 1 GHz TSC and no local APIC timer");
		return;
	}
	reference = c->name;
	uint64_t hz = res.tsc * c->hz / res.ref;
	if (hz < 1000000u) {
		pr_err("TSC: measured %llu Hz against the %s, implausible; assuming 1 GHz",
		       (unsigned long long)hz, c->name);
		hz = 1000000000u;
	}
	/*
	 * From now on the clock reads time since reset (QEMU and firmware start
	 * the TSC at 0).  Should the early clock already be past that (a TSC
	 * faster than the guess), carry on from where it is instead: the clock
	 * never goes backwards.
	 */
	uint64_t now = rdtsc();
	uint64_t mult = (1000000000ull << TSC_SHIFT) / hz;
	uint64_t since_reset = (uint64_t)(((unsigned __int128)now * mult) >> TSC_SHIFT);
	uint64_t early = tsc_to_ns(now);
	calibrated_scale.base_ns = since_reset > early ? since_reset : early;
	calibrated_scale.base_tsc = now;
	calibrated_scale.mult = mult;
	tsc_hz = hz;
	__atomic_store_n(&tsc_scale_now, &calibrated_scale, __ATOMIC_RELEASE);
	lapic_timer_rate = res.lapic * c->hz / res.ref;

	uint64_t window_us = res.ref * 1000000u / c->hz;
	char tail[80];
	nk_snprintf(tail, sizeof(tail), ", calibrated against the %s over %llu.%03llu ms",
		    c->name, (unsigned long long)(window_us / 1000),
		    (unsigned long long)(window_us % 1000));
	print_mhz("TSC: ", tsc_hz, tail);
	if (lapic_ready()) {
		if (lapic_timer_rate)
			print_mhz("APIC: timer ", lapic_timer_rate, " (bus clock / 16)");
		else
			pr_err("APIC: the local timer did not count during calibration; no APIC tick");
	}
}

void tsc_delay_us(uint64_t us)
{
	uint64_t start = rdtsc();
	uint64_t ticks = ns_to_tsc(us * 1000u);
	while (rdtsc() - start < ticks)
		cpu_relax();
}
