/*
 * arch/acpi.h: what the firmware tables told the x86-64 kernel about this
 * machine (CPUs, interrupt controllers, HPET, power-off registers), in one
 * struct filled once at boot by acpi_init() (acpi.c).  The byte-level
 * decoding is done by the pure parsers of <kernel/acpi.h>; acpi.c finds the
 * tables in physical memory and fills in the fallbacks when they are missing.
 */
#ifndef ARCH_ACPI_H
#define ARCH_ACPI_H

#include <stdbool.h>
#include <stdint.h>
#include <arch/percpu.h>

/* MPS INTI flags, as in MADT overrides and NMI entries. */
#define MPS_POLARITY_MASK	0x3u
#define MPS_POLARITY_BUS	0x0u	/* conforms to the bus (ISA: active high) */
#define MPS_POLARITY_HIGH	0x1u
#define MPS_POLARITY_LOW	0x3u
#define MPS_TRIGGER_MASK	0xcu
#define MPS_TRIGGER_BUS		0x0u	/* conforms to the bus (ISA: edge) */
#define MPS_TRIGGER_EDGE	0x4u
#define MPS_TRIGGER_LEVEL	0xcu

#define PLAT_MAX_IOAPICS	8
#define PLAT_MAX_OVERRIDES	16
#define PLAT_MAX_LAPIC_NMIS	16

struct plat_cpu {
	uint32_t apic_id;
	uint32_t acpi_uid;	/* ACPI processor UID, for the MADT's NMI entries */
};

struct plat_ioapic {
	uint32_t id;
	uint64_t phys;
	uint32_t gsi_base;
};

struct plat_override {
	uint8_t irq;		/* ISA IRQ (bus 0) */
	uint32_t gsi;
	uint16_t flags;		/* MPS_* */
};

struct plat_lapic_nmi {
	uint32_t acpi_uid;	/* 0xff: every processor */
	uint8_t lint;		/* 0 or 1 */
	uint16_t flags;		/* MPS_* */
};

struct platform_info {
	bool acpi;			/* an RSDP with a valid root table was found */
	bool madt;			/* CPUs and interrupt controllers come from the MADT */
	uint64_t lapic_phys;
	bool pcat_compat;		/* dual 8259s present (MADT flag) */

	/* CPU n is cpus[n]: the boot CPU first, then the MADT's enabled entries in order. */
	unsigned int n_cpus;
	unsigned int n_cpus_dropped;	/* enabled entries beyond MAX_CPUS */
	struct plat_cpu cpus[MAX_CPUS];

	unsigned int n_ioapics;
	struct plat_ioapic ioapics[PLAT_MAX_IOAPICS];
	unsigned int n_overrides;
	struct plat_override overrides[PLAT_MAX_OVERRIDES];
	unsigned int n_lapic_nmi;
	struct plat_lapic_nmi lapic_nmi[PLAT_MAX_LAPIC_NMIS];

	bool hpet;			/* an HPET table was found */
	uint64_t hpet_phys;
	uint8_t hpet_number;
	uint16_t hpet_min_tick;

	bool fadt;
	uint32_t pm1a_cnt;		/* I/O ports; 0 = none */
	uint32_t pm1b_cnt;
	bool s5_found;			/* \_S5 sleep type values read from the DSDT */
	uint8_t s5_typ_a, s5_typ_b;
	bool reset_reg;			/* FADT reset register usable (I/O space) */
	uint16_t reset_port;
	uint8_t reset_value;
	uint16_t boot_arch;		/* FADT IAPC_BOOT_ARCH flags */
};

extern struct platform_info platform;

/*
 * Boot CPU, once (Step 6), after lapic_init_boot(): find the RSDP (loader,
 * then EBDA and the BIOS area), walk the XSDT/RSDT, and fill `platform`.
 * Never fails: missing or malformed tables are reported and replaced by
 * the PC defaults (one CPU, APIC at the MSR base, IO-APIC at 0xfec00000,
 * no HPET).  Prints the one-line summary.
 */
void acpi_init(void);

/* The GSI and MPS flags of ISA IRQ `irq`, applying the MADT's overrides. */
uint32_t acpi_isa_irq_to_gsi(unsigned int irq, uint16_t *flags);

#endif
