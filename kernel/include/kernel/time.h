/*
 * time.h: the kernel's tick and clock.  Every online CPU takes a local APIC
 * timer interrupt at timer_hz() (boot parameter `hz`, default 100), counts
 * it in its percpu apic_ticks and calls the registered tick handler (the
 * scheduler's).  The PIT's IRQ0 is a second tick source, counted in
 * irq0_ticks on the CPU that takes it.  Clock: the calibrated TSC
 * (<arch/tsc.h>).
 */
#ifndef KERNEL_TIME_H
#define KERNEL_TIME_H

#include <stdint.h>

struct regs;

/*
 * Boot CPU, once (Step 6), after hpet_init(): calibrate the TSC and the
 * local APIC timer, register the timer vector, start CPU 0's tick and (when
 * `pit_tick` is on) the PIT's IRQ0 tick.
 */
void time_init(void);

/* Each other CPU, at bring-up: start its local APIC tick. */
void time_init_cpu(void);

/* Tick rate of the local APIC timer, Hz. */
unsigned int timer_hz(void);

/*
 * The function called on every CPU at every local APIC tick, in interrupt
 * context with interrupts off, after apic_ticks is counted and before EOI
 * (the IRQ layer sends the EOI after the handler returns).  NULL: count only.
 */
void timer_set_tick_handler(void (*fn)(struct regs *r));

/*
 * Virtual time since the machine was reset: the TSC read now, scaled.  QEMU
 * starts every TSC at 0 at reset, so this includes the firmware's time.
 * NMI-safe: yes.
 */
uint64_t boot_elapsed_ns(void);

/* Print "nmikit: boot to shell took N.NNN ms" (call when the shell starts). */
void time_report_boot(void);

#endif
