/*
 * apic.h: the local APIC (xAPIC, memory mapped): register layout, the
 * vectors nmikit gives its own interrupts, inter-processor interrupts (NMI
 * included), the local timer, and the MSI message format that IO-APIC-less
 * sources (the HPET's FSB delivery) use to reach a local APIC.
 * docs/smp-and-timers.md describes how these are used at boot.
 */
#ifndef ARCH_APIC_H
#define ARCH_APIC_H

#include <stdbool.h>
#include <stdint.h>

/* Register offsets from the APIC base (each register is 32 bits, 16-byte aligned). */
#define LAPIC_ID		0x020
#define LAPIC_VERSION		0x030
#define LAPIC_TPR		0x080
#define LAPIC_EOI		0x0b0
#define LAPIC_LDR		0x0d0
#define LAPIC_DFR		0x0e0
#define LAPIC_SVR		0x0f0
#define LAPIC_ISR0		0x100	/* ISR, TMR, IRR: 8 registers each, 0x10 apart */
#define LAPIC_IRR0		0x200
#define LAPIC_ESR		0x280
#define LAPIC_LVT_CMCI		0x2f0
#define LAPIC_ICR_LOW		0x300
#define LAPIC_ICR_HIGH		0x310
#define LAPIC_LVT_TIMER		0x320
#define LAPIC_LVT_THERMAL	0x330
#define LAPIC_LVT_PERF		0x340
#define LAPIC_LVT_LINT0		0x350
#define LAPIC_LVT_LINT1		0x360
#define LAPIC_LVT_ERROR		0x370
#define LAPIC_TIMER_INIT	0x380
#define LAPIC_TIMER_CURRENT	0x390
#define LAPIC_TIMER_DIVIDE	0x3e0

/* IA32_APIC_BASE MSR bits. */
#define APIC_BASE_BSP		(1ull << 8)
#define APIC_BASE_X2APIC	(1ull << 10)
#define APIC_BASE_ENABLE	(1ull << 11)
#define APIC_BASE_ADDR_MASK	0xffffff000ull
#define APIC_DEFAULT_PHYS	0xfee00000ull

/* Spurious-interrupt vector register. */
#define SVR_ENABLE		(1u << 8)

/* LVT entries (timer, LINT0/1, error, perf, thermal, CMCI). */
#define LVT_VECTOR_MASK		0xffu
#define LVT_DM_FIXED		(0u << 8)
#define LVT_DM_SMI		(2u << 8)
#define LVT_DM_NMI		(4u << 8)
#define LVT_DM_INIT		(5u << 8)
#define LVT_DM_EXTINT		(7u << 8)
#define LVT_PENDING		(1u << 12)
#define LVT_ACTIVE_LOW		(1u << 13)
#define LVT_LEVEL		(1u << 15)
#define LVT_MASKED		(1u << 16)
#define LVT_TIMER_PERIODIC	(1u << 17)

/* Timer divide configuration values (bits 0, 1, 3). */
#define TIMER_DIV_1		0xbu
#define TIMER_DIV_16		0x3u

/* Interrupt command register, low half. */
#define ICR_DM_FIXED		(0u << 8)
#define ICR_DM_NMI		(4u << 8)
#define ICR_DM_INIT		(5u << 8)
#define ICR_DM_STARTUP		(6u << 8)
#define ICR_DEST_LOGICAL	(1u << 11)
#define ICR_BUSY		(1u << 12)	/* delivery status: send pending */
#define ICR_ASSERT		(1u << 14)
#define ICR_LEVEL		(1u << 15)
#define ICR_SH_SELF		(1u << 18)
#define ICR_SH_ALL		(2u << 18)
#define ICR_SH_ALL_BUT_SELF	(3u << 18)
#define ICR_DEST_SHIFT		24	/* destination APIC ID, in ICR high */

/*
 * Vectors of the interrupts the local APIC drivers own.  The IO-APIC gives
 * ISA IRQ n the vector IRQ_VEC_ISA_BASE + n (the PIT, IRQ0, gets 0x20).
 * Higher vectors have higher priority classes; the timer sits above device
 * interrupts.  0xf3 is the NMI core's irq_work self-IPI (kernel/os.c).
 */
#define IRQ_VEC_ISA_BASE	0x20
#define LAPIC_VEC_TIMER		0xf0
#define LAPIC_VEC_ERROR		0xfe
#define LAPIC_VEC_SPURIOUS	0xff	/* low 4 bits all set, as old APICs require */

/* Set by lapic_init_boot(): the APIC registers' (identity-mapped) address. */
extern uint64_t lapic_base;

static inline uint32_t lapic_read(uint32_t reg)
{
	return *(volatile uint32_t *)(lapic_base + reg);
}

static inline void lapic_write(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(lapic_base + reg) = v;
}

/*
 * Boot CPU, once (Step 6): find the APIC from the IA32_APIC_BASE MSR (or
 * `phys` from the MADT when it differs), enable it, program this CPU's LVTs.
 * Returns false when the CPU has no usable xAPIC (then nothing here works
 * and the kernel stays on one CPU without a timer tick).
 */
bool lapic_init_boot(uint64_t phys);

/*
 * Each CPU, at bring-up, interrupts off: software-enable the APIC with the
 * spurious vector, flat logical destination (CPU n < 8 gets logical bit n),
 * TPR 0, every LVT masked except LINT0/LINT1 as the MADT's local-APIC NMI
 * entries say (normally LINT1 = NMI) and the error LVT.
 */
void lapic_init_cpu(unsigned int cpu);

/* Whether the boot CPU's APIC is set up (IPIs are silently dropped before). */
bool lapic_ready(void);

/*
 * This CPU's APIC ID, read from the APIC itself.
 * NMI-safe: yes (one MMIO read).
 */
uint32_t lapic_id(void);

/*
 * End of interrupt for the highest-priority in-service vector.
 * NMI-safe: yes, but an NMI has no in-service bit and must not EOI.
 */
void lapic_eoi(void);

/*
 * IPIs.  All of them are NMI-safe: they take no lock, and every sender saves
 * ICR-high before writing it and puts it back after its own send, so a send
 * that interrupts another send half way (an NMI between the other's ICR-high
 * and ICR-low writes) leaves the interrupted one's destination intact.  The
 * wait for the delivery-status bit is bounded (lapic_stats.icr_timeouts).
 */
/* Fixed-mode interrupt on `vector` to the CPU with APIC ID `apic_id`. */
void lapic_send_ipi(uint32_t apic_id, uint8_t vector);
/* Fixed-mode interrupt on `vector` to this CPU ("self" shorthand). */
void lapic_send_self_ipi(uint8_t vector);
/* NMI to one CPU, physical destination; apic_id may be the caller's own. */
void lapic_send_nmi(uint32_t apic_id);
/* NMI to every CPU but the caller ("all excluding self" shorthand). */
void lapic_send_nmi_allbutself(void);
/*
 * NMI to every CPU including the caller.  The SDM does not allow the "all
 * including self" shorthand with NMI delivery, so this is all-but-self then
 * a physical-destination NMI to the caller's own APIC ID.
 */
void lapic_send_nmi_all(void);
/* NMI to the caller: physical destination = own APIC ID (never the shorthand). */
void lapic_send_nmi_self(void);

/* Start-up sequence pieces (smp.c). */
void lapic_send_init(uint32_t apic_id);
void lapic_send_startup(uint32_t apic_id, uint8_t page);

/*
 * Program LINT0 or LINT1 (pin 0 or 1) of this CPU: `lvt` is an LVT value
 * (LVT_DM_NMI, LVT_DM_EXTINT, LVT_MASKED ...).  For the IO-APIC NMI
 * watchdog, which may want virtual-wire (ExtINT) or NMI routing on LINT0.
 */
void lapic_set_lint(unsigned int pin, uint32_t lvt);

/* --- local timer ------------------------------------------------------- */

/*
 * Local timer counts per second at divide-by-16, measured by
 * timer_calibrate() (kernel/time.c) against the HPET or the PIT.
 */
extern uint64_t lapic_timer_rate;

/* Start the calibrated periodic timer at `hz` on this CPU (vector LAPIC_VEC_TIMER). */
void lapic_timer_start(unsigned int hz);
/* Mask this CPU's local timer. */
void lapic_timer_stop(void);
/* One-shot, masked, divide-by-16, from `count`: the calibration run. */
void lapic_timer_oneshot_masked(uint32_t count);
static inline uint32_t lapic_timer_current(void) { return lapic_read(LAPIC_TIMER_CURRENT); }

/* --- MSI messages (HPET FSB delivery, later PCI MSI) ---------------------- */

/*
 * Address and data words of a message-signalled interrupt: physical
 * destination `apic_id`, delivery mode (ICR_DM_FIXED or ICR_DM_NMI), edge.
 * The delivery-mode field sits at bits 8-10 of the data word, exactly as
 * in the ICR, so the ICR_DM_* values serve both.
 */
static inline uint32_t msi_address(uint32_t apic_id)
{
	return 0xfee00000u | ((apic_id & 0xffu) << 12);
}

static inline uint32_t msi_data(uint32_t delivery_mode, uint8_t vector)
{
	return delivery_mode | vector;
}

struct lapic_stats {
	volatile uint64_t icr_timeouts;	/* sends that found the ICR still busy */
	volatile uint64_t errors;	/* APIC error interrupts */
	volatile uint32_t last_esr;	/* ESR at the last error interrupt */
	volatile uint64_t spurious;	/* spurious-vector interrupts */
};
extern struct lapic_stats lapic_stats;

#endif
