/*
 * hpet.h: the High Precision Event Timer.  nmikit keeps its main counter
 * running from boot (the calibration reference) and leaves the comparators
 * to their users: the HPET NMI watchdog programs one periodic with FSB
 * (MSI) delivery of NMIs.  Register-level helpers plus the few sequences
 * that are easy to get wrong (periodic start, FSB route) live here.
 *
 * Register access uses 32-bit reads and writes only, which every HPET
 * (and QEMU's) implements; 64-bit values are read high-low-high.
 */
#ifndef ARCH_HPET_H
#define ARCH_HPET_H

#include <stdbool.h>
#include <stdint.h>

/* General registers. */
#define HPET_REG_CAP		0x000	/* capabilities and ID; period in the high half */
#define HPET_REG_CONFIG		0x010
#define HPET_REG_STATUS		0x020	/* level-triggered interrupt status, one bit per timer */
#define HPET_REG_COUNTER	0x0f0
/* Per-comparator registers. */
#define HPET_TN_CONFIG(n)	(0x100 + 0x20 * (n))
#define HPET_TN_COMPARATOR(n)	(0x108 + 0x20 * (n))
#define HPET_TN_FSB_DATA(n)	(0x110 + 0x20 * (n))	/* FSB route: data word ... */
#define HPET_TN_FSB_ADDR(n)	(0x114 + 0x20 * (n))	/* ... and address word */

#define HPET_CAP_REV_MASK	0xffu
#define HPET_CAP_NUM_SHIFT	8	/* number of comparators - 1, 5 bits */
#define HPET_CAP_COUNT_64	(1u << 13)
#define HPET_CAP_LEGACY		(1u << 15)

#define HPET_CFG_ENABLE		(1u << 0)
#define HPET_CFG_LEGACY		(1u << 1)

#define HPET_TN_LEVEL		(1u << 1)
#define HPET_TN_INT_ENABLE	(1u << 2)
#define HPET_TN_PERIODIC	(1u << 3)
#define HPET_TN_PERIODIC_CAP	(1u << 4)
#define HPET_TN_64BIT_CAP	(1u << 5)
#define HPET_TN_SETVAL		(1u << 6)
#define HPET_TN_32BIT		(1u << 8)
#define HPET_TN_ROUTE_SHIFT	9
#define HPET_TN_ROUTE_MASK	(0x1fu << 9)
#define HPET_TN_FSB_ENABLE	(1u << 14)
#define HPET_TN_FSB_CAP		(1u << 15)

#define HPET_MAX_TIMERS		32

struct hpet_timer_info {
	bool periodic;		/* can run periodic */
	bool wide;		/* 64-bit comparator */
	bool fsb;		/* can deliver by FSB (MSI) message */
	uint32_t route_caps;	/* IO-APIC inputs it may be routed to (bit n = GSI n) */
};

/* Identity-mapped register base; 0 when there is no HPET. */
extern uint64_t hpet_base;

/*
 * Boot CPU, once (Step 6), after acpi_init(): check the HPET the ACPI table
 * names (boot parameter `hpet=disable` ignores it), turn legacy replacement off
 * (the PIT keeps IRQ0), disable every comparator, start the main counter.
 * Prints the period, counter width and each comparator's capabilities.
 * Returns whether an HPET is in use.
 */
bool hpet_init(void);
bool hpet_present(void);

static inline uint32_t hpet_read32(uint32_t reg)
{
	return *(volatile uint32_t *)(hpet_base + reg);
}

static inline void hpet_write32(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(hpet_base + reg) = v;
}

/* 64-bit register: low half, then high. */
void hpet_write64(uint32_t reg, uint64_t v);
/* 64-bit register, read high-low-high so a carry between the halves is not torn. */
uint64_t hpet_read64(uint32_t reg);

/*
 * The main counter.  NMI-safe: yes (at most a few MMIO reads, no lock).
 * On a 32-bit HPET only the low 32 bits count.
 */
uint64_t hpet_counter(void);

uint32_t hpet_period_fs(void);		/* femtoseconds per tick */
uint64_t hpet_freq_hz(void);		/* ticks per second */
unsigned int hpet_num_timers(void);
bool hpet_counter_64bit(void);
uint64_t hpet_ns_to_ticks(uint64_t ns);

/* Capabilities of comparator `n` (false if there is no such comparator). */
bool hpet_timer_info(unsigned int n, struct hpet_timer_info *info);

/* The low (writable) half of comparator `n`'s configuration register. */
uint32_t hpet_timer_config(unsigned int n);
void hpet_timer_set_config(unsigned int n, uint32_t cfg);

/* Interrupt delivery off for comparator `n` (it keeps counting toward its value). */
void hpet_timer_disable(unsigned int n);

/* The comparator value (the period, in periodic mode after start). */
uint64_t hpet_timer_comparator(unsigned int n);
void hpet_timer_set_comparator(unsigned int n, uint64_t v);

/*
 * FSB route: the MSI address and data the comparator writes when it fires
 * (msi_address()/msi_data() of <arch/apic.h>).
 */
void hpet_timer_set_fsb(unsigned int n, uint32_t addr, uint32_t data);
uint32_t hpet_timer_fsb_addr(unsigned int n);
uint32_t hpet_timer_fsb_data(unsigned int n);

/*
 * Retarget comparator `n`'s FSB message to another local APIC by rewriting
 * only the address word (the destination APIC ID lives there).
 * NMI-safe: yes: one 32-bit MMIO write, no read, no lock; the data word and
 * the configuration register are untouched, so the HPET NMI watchdog can
 * call it from its NMI handler to pass the NMI on to the next CPU.
 */
static inline void hpet_timer_set_fsb_addr(unsigned int n, uint32_t addr)
{
	hpet_write32(HPET_TN_FSB_ADDR(n), addr);
}

/*
 * Start comparator `n` periodic every `period` ticks (< 2^32; 32-bit
 * comparator mode), first expiry one period from now, delivered as the FSB
 * message (addr, data), edge.  The main counter keeps running.  Returns
 * false if the comparator cannot do periodic or FSB delivery, or the period
 * is out of range.  Not NMI-safe: writes the configuration register.
 */
bool hpet_timer_start_periodic_fsb(unsigned int n, uint64_t period, uint32_t addr,
				   uint32_t data);

/*
 * Same, delivered through IO-APIC input `gsi` (must be in route_caps; the
 * caller programs the IO-APIC entry, edge).
 */
bool hpet_timer_start_periodic_ioapic(unsigned int n, uint64_t period, unsigned int gsi);

#endif
