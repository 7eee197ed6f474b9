/*
 * ioapic.h: the IO-APIC(s): redirection entries from global system
 * interrupts (GSIs) to a local APIC, with any delivery mode, NMI included.
 * ISA IRQs reach their GSI through the MADT's interrupt source overrides
 * (on QEMU the PIT's IRQ0 is GSI 2).  The IO-APIC NMI watchdog routes a
 * periodic source with ioapic_route(..., IOAPIC_DM_NMI, ...).
 */
#ifndef ARCH_IOAPIC_H
#define ARCH_IOAPIC_H

#include <stdbool.h>
#include <stdint.h>

/* Indirect registers. */
#define IOAPIC_REG_ID		0x00
#define IOAPIC_REG_VERSION	0x01
#define IOAPIC_REG_REDIR(n)	(0x10 + 2 * (n))	/* low half; high half is +1 */

/* Redirection entry, low 32 bits. */
#define IOAPIC_DM_FIXED		(0u << 8)
#define IOAPIC_DM_LOWEST	(1u << 8)
#define IOAPIC_DM_SMI		(2u << 8)
#define IOAPIC_DM_NMI		(4u << 8)
#define IOAPIC_DM_INIT		(5u << 8)
#define IOAPIC_DM_EXTINT	(7u << 8)
#define IOAPIC_DM_MASK		(7u << 8)
#define IOAPIC_DEST_LOGICAL	(1u << 11)
#define IOAPIC_PENDING		(1u << 12)
#define IOAPIC_ACTIVE_LOW	(1u << 13)
#define IOAPIC_REMOTE_IRR	(1u << 14)
#define IOAPIC_LEVEL		(1u << 15)
#define IOAPIC_MASKED		(1u << 16)

/*
 * ioapic_route() flags: polarity and trigger, the way the MADT writes them
 * (MPS_* from <arch/acpi.h>; 0 = conforms to the bus, which for ISA means
 * active high, edge), plus:
 */
#define IOAPIC_ROUTE_LOGICAL	0x100u	/* dest is a logical (flat) mask, not an APIC ID */
#define IOAPIC_ROUTE_MASKED	0x200u	/* program the entry but leave it masked */

/*
 * Boot CPU, once (Step 6), after acpi_init(): read each IO-APIC's version
 * and size, mask every entry, mask the 8259s, and print what was found.
 */
void ioapic_init(void);

/* Whether any IO-APIC was found. */
bool ioapic_present(void);

/*
 * Program the entry of `gsi`: `vector` (ignored for NMI/INIT/ExtINT),
 * delivery to `dest` (APIC ID, or logical mask with IOAPIC_ROUTE_LOGICAL),
 * `delivery_mode` IOAPIC_DM_*, `flags` as above.  NMI, SMI and INIT are
 * forced to edge trigger, which the IO-APIC requires for them.  The entry
 * is masked while it is rewritten.  Returns false for a GSI no IO-APIC owns.
 * Not NMI-safe: IOREGSEL/IOWIN is a two-step access and is serialized by a
 * lock here.
 */
bool ioapic_route(uint32_t gsi, uint8_t vector, uint32_t dest, uint32_t delivery_mode,
		  uint32_t flags);

/* Same for an ISA IRQ: its GSI and default polarity/trigger come from the MADT. */
bool ioapic_route_isa(unsigned int irq, uint8_t vector, uint32_t dest, uint32_t delivery_mode);

/* Mask / unmask one GSI's entry (false: no such GSI). */
bool ioapic_mask(uint32_t gsi, bool masked);

/* The raw 64-bit entry of `gsi` (all ones if no IO-APIC owns it). */
uint64_t ioapic_read_entry(uint32_t gsi);

/* One line per programmed (unmasked) entry, for diagnostics. */
void ioapic_dump(void);

#endif
