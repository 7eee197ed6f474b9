/*
 * pit.h: the 8254 programmable interval timer.  Channel 0 drives ISA IRQ0:
 * nmikit's second tick source (irq0_ticks) and the periodic interrupt the
 * IO-APIC NMI watchdog can turn into NMIs.  Channel 0 also serves as the
 * calibration reference when there is no HPET.
 */
#ifndef ARCH_PIT_H
#define ARCH_PIT_H

#include <stdbool.h>
#include <stdint.h>

#define PIT_HZ		1193182u	/* input clock, Hz */
#define PIT_IRQ		0		/* ISA IRQ of channel 0 */

/* Channel 0 as a free-running down-counter (mode 2, reload 65536): calibration. */
void pit_free_run(void);
/* Latch and read channel 0's count.  Not NMI-safe (a latch/read sequence). */
uint16_t pit_read(void);

/* Channel 0 periodic at `hz` (mode 2); returns the rate actually programmed, in mHz. */
uint64_t pit_start_periodic(unsigned int hz);
/* Stop channel 0 (mode 0 with no count written: the output stays low). */
void pit_stop(void);

/*
 * Route IRQ0 through the IO-APIC (override applied) to CPU 0 on vector
 * IRQ_VEC_ISA_BASE and start channel 0 at `hz`; each interrupt counts one
 * irq0_tick on the CPU that takes it.  False when there is no IO-APIC.
 */
bool pit_tick_start(unsigned int hz);

/* Extra work on each IRQ0 (NULL: none); called in interrupt context after counting. */
void pit_set_irq_hook(void (*fn)(void));

/* Total IRQ0 interrupts on all CPUs. */
uint64_t pit_irq_count(void);

#endif
