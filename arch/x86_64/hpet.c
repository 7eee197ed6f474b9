/*
 * hpet.c: the HPET: found through its ACPI table, main counter started at
 * boot and never stopped (calibration, and a clock that the watchdog can
 * read), comparators left disabled for their later users.
 */
#include <arch/acpi.h>
#include <arch/cpu.h>
#include <arch/hpet.h>
#include <nmikit/log.h>
#include <nmikit/param.h>

uint64_t hpet_base;

static uint32_t period_fs;
static uint64_t freq_hz;
static unsigned int n_timers;
static bool count_64;

static const char *const hpet_modes[] = { "enable", "disable", NULL };
static int hpet_mode;
NK_PARAM_ENUM("hpet", hpet_mode, hpet_modes,
	      "use the HPET the ACPI table names; disable: ignore it, calibrate against the PIT");

void hpet_write64(uint32_t reg, uint64_t v)
{
	hpet_write32(reg, (uint32_t)v);
	hpet_write32(reg + 4, (uint32_t)(v >> 32));
}

/* NMI-safe: reads only, at most 3 passes. */
uint64_t hpet_read64(uint32_t reg)
{
	uint32_t hi = hpet_read32(reg + 4), lo, hi2;
	for (int i = 0; i < 3; i++) {
		lo = hpet_read32(reg);
		hi2 = hpet_read32(reg + 4);
		if (hi2 == hi)
			break;
		hi = hi2;
	}
	return ((uint64_t)hi << 32) | lo;
}

/* NMI-safe: MMIO reads only. */
uint64_t hpet_counter(void)
{
	if (!count_64)
		return hpet_read32(HPET_REG_COUNTER);
	return hpet_read64(HPET_REG_COUNTER);
}

bool hpet_present(void) { return hpet_base != 0; }
uint32_t hpet_period_fs(void) { return period_fs; }
uint64_t hpet_freq_hz(void) { return freq_hz; }
unsigned int hpet_num_timers(void) { return n_timers; }
bool hpet_counter_64bit(void) { return count_64; }

uint64_t hpet_ns_to_ticks(uint64_t ns)
{
	if (!period_fs)
		return 0;
	/* Whole seconds and the rest apart, so nothing overflows 64 bits. */
	return (ns / 1000000000u) * freq_hz + (ns % 1000000000u) * 1000000u / period_fs;
}

bool hpet_timer_info(unsigned int n, struct hpet_timer_info *info)
{
	if (!hpet_base || n >= n_timers)
		return false;
	uint32_t lo = hpet_read32(HPET_TN_CONFIG(n));
	info->periodic = lo & HPET_TN_PERIODIC_CAP;
	info->wide = lo & HPET_TN_64BIT_CAP;
	info->fsb = lo & HPET_TN_FSB_CAP;
	info->route_caps = hpet_read32(HPET_TN_CONFIG(n) + 4);
	return true;
}

uint32_t hpet_timer_config(unsigned int n)
{
	return hpet_read32(HPET_TN_CONFIG(n));
}

void hpet_timer_set_config(unsigned int n, uint32_t cfg)
{
	hpet_write32(HPET_TN_CONFIG(n), cfg);
}

void hpet_timer_disable(unsigned int n)
{
	uint32_t cfg = hpet_timer_config(n);
	hpet_timer_set_config(n, cfg & ~(HPET_TN_INT_ENABLE | HPET_TN_PERIODIC | HPET_TN_FSB_ENABLE));
}

uint64_t hpet_timer_comparator(unsigned int n)
{
	return hpet_read64(HPET_TN_COMPARATOR(n));
}

void hpet_timer_set_comparator(unsigned int n, uint64_t v)
{
	if (hpet_timer_config(n) & HPET_TN_32BIT)
		hpet_write32(HPET_TN_COMPARATOR(n), (uint32_t)v);
	else
		hpet_write64(HPET_TN_COMPARATOR(n), v);
}

void hpet_timer_set_fsb(unsigned int n, uint32_t addr, uint32_t data)
{
	hpet_write32(HPET_TN_FSB_DATA(n), data);
	hpet_write32(HPET_TN_FSB_ADDR(n), addr);
}

uint32_t hpet_timer_fsb_addr(unsigned int n) { return hpet_read32(HPET_TN_FSB_ADDR(n)); }
uint32_t hpet_timer_fsb_data(unsigned int n) { return hpet_read32(HPET_TN_FSB_DATA(n)); }

/*
 * Periodic start, the sequence the HPET specification gives: with SETVAL
 * set, the first comparator write sets the time of the first expiry; the
 * next write (SETVAL has cleared itself) sets the period that is added at
 * each expiry.  32-bit mode keeps each write to one register access, so no
 * half-written 64-bit value is ever compared against the running counter.
 * Interrupt delivery is enabled last.
 */
static bool start_periodic(unsigned int n, uint64_t period, uint32_t route_bits)
{
	struct hpet_timer_info info;
	if (!hpet_timer_info(n, &info) || !info.periodic || period == 0 || period >> 32)
		return false;
	hpet_timer_disable(n);
	uint32_t cfg = hpet_timer_config(n) & ~(HPET_TN_ROUTE_MASK | HPET_TN_LEVEL);
	cfg |= HPET_TN_PERIODIC | HPET_TN_32BIT | route_bits;
	hpet_timer_set_config(n, cfg | HPET_TN_SETVAL);
	uint32_t now = hpet_read32(HPET_REG_COUNTER);
	hpet_write32(HPET_TN_COMPARATOR(n), now + (uint32_t)period);
	hpet_write32(HPET_TN_COMPARATOR(n), (uint32_t)period);
	hpet_timer_set_config(n, cfg | HPET_TN_INT_ENABLE);
	return true;
}

bool hpet_timer_start_periodic_fsb(unsigned int n, uint64_t period, uint32_t addr,
				   uint32_t data)
{
	struct hpet_timer_info info;
	if (!hpet_timer_info(n, &info) || !info.fsb)
		return false;
	hpet_timer_disable(n);
	hpet_timer_set_fsb(n, addr, data);
	return start_periodic(n, period, HPET_TN_FSB_ENABLE);
}

bool hpet_timer_start_periodic_ioapic(unsigned int n, uint64_t period, unsigned int gsi)
{
	struct hpet_timer_info info;
	if (!hpet_timer_info(n, &info) || gsi > 31 || !(info.route_caps & (1u << gsi)))
		return false;
	return start_periodic(n, period, gsi << HPET_TN_ROUTE_SHIFT);
}

bool hpet_init(void)
{
	if (!platform.hpet) {
		pr_info("HPET: no ACPI HPET table; calibrating against the PIT");
		return false;
	}
	if (hpet_mode == 1) {
		pr_info("HPET: disabled by hpet=disable; calibrating against the PIT");
		return false;
	}
	if (platform.hpet_phys >= (4ull << 30) || (platform.hpet_phys & 0x3ff)) {
		pr_warn("HPET: table gives an unusable address %#llx; calibrating against the PIT",
			(unsigned long long)platform.hpet_phys);
		return false;
	}
	hpet_base = platform.hpet_phys;
	uint32_t cap = hpet_read32(HPET_REG_CAP);
	period_fs = hpet_read32(HPET_REG_CAP + 4);
	/* The specification bounds the period: nonzero, at most 100 ns. */
	if (cap == 0xffffffffu || period_fs == 0 || period_fs > 100000000u) {
		pr_warn("HPET: implausible registers at %#llx (cap %#x, period %u fs); "
			"calibrating against the PIT", (unsigned long long)hpet_base, cap, period_fs);
		hpet_base = 0;
		return false;
	}
	freq_hz = 1000000000000000ull / period_fs;
	n_timers = ((cap >> HPET_CAP_NUM_SHIFT) & 0x1f) + 1;
	count_64 = cap & HPET_CAP_COUNT_64;

	uint32_t conf = hpet_read32(HPET_REG_CONFIG);
	for (unsigned int n = 0; n < n_timers; n++)
		hpet_timer_disable(n);
	/* Legacy replacement off: IRQ0 stays the PIT's.  Counter on and never stopped. */
	hpet_write32(HPET_REG_CONFIG, (conf & ~HPET_CFG_LEGACY) | HPET_CFG_ENABLE);

	pr_info("HPET: at %#llx, %u comparators, %u-bit counter, period %u fs (%llu.%06llu MHz)",
		(unsigned long long)hpet_base, n_timers, count_64 ? 64 : 32, period_fs,
		(unsigned long long)(freq_hz / 1000000), (unsigned long long)(freq_hz % 1000000));
	for (unsigned int n = 0; n < n_timers; n++) {
		struct hpet_timer_info info;
		hpet_timer_info(n, &info);
		pr_info("HPET: timer %u: %s%s%s, IO-APIC routes %#x", n,
			info.periodic ? "periodic" : "one-shot",
			info.wide ? ", 64-bit" : ", 32-bit",
			info.fsb ? ", FSB/MSI" : "", info.route_caps);
	}
	return true;
}
