/*
 * tsc.h: the time-stamp counter as nmikit's clock.  Its frequency is
 * measured once at boot against the HPET main counter (or the PIT when
 * there is no HPET), together with the local APIC timer's rate, over the
 * same ~10 ms window.  Conversion to nanoseconds is a multiply and a shift
 * by constants fixed at boot: no seqlock, nothing an NMI could find half
 * updated.
 */
#ifndef ARCH_TSC_H
#define ARCH_TSC_H

#include <stdbool.h>
#include <stdint.h>
#include <arch/cpu.h>

/* Measured TSC ticks per second (a deliberately high guess until tsc_calibrate()). */
extern uint64_t tsc_hz;

/*
 * The clock's scale: ns = base_ns + (tsc - base_tsc) * mult / 2^TSC_SHIFT.
 * Until calibration the TSC counts from 0 at a guessed rate higher than any
 * real TSC's, so the early clock runs slow.  Calibration publishes a second
 * scale based at the true time since reset (or at the early clock's
 * reading, if that is ahead), so the clock never jumps backwards and log
 * timestamps stay ordered.  The scale is switched with one pointer store:
 * an NMI sees either the old scale or the new one, never a mix.
 */
struct tsc_scale {
	uint64_t mult;
	uint64_t base_tsc;
	uint64_t base_ns;
};
#define TSC_SHIFT	32
extern const struct tsc_scale *volatile tsc_scale_now;

/*
 * Boot CPU, once (Step 6), interrupts off, after hpet_init() and
 * lapic_init_boot(): measure tsc_hz and lapic_timer_rate, print both.
 */
void tsc_calibrate(void);

/* Name of the reference the calibration used: "HPET", "PIT" or "none". */
const char *tsc_reference(void);

/*
 * A number of TSC ticks (a duration) in nanoseconds.  NMI-safe: yes
 * (constants fixed at boot, a 64x64->128 multiply).
 */
static inline uint64_t tsc_delta_ns(uint64_t ticks)
{
	return (uint64_t)(((unsigned __int128)ticks * tsc_scale_now->mult) >> TSC_SHIFT);
}

/* A TSC reading on the clock's nanosecond scale (see struct tsc_scale).  NMI-safe: yes. */
static inline uint64_t tsc_to_ns(uint64_t tsc)
{
	const struct tsc_scale *s = tsc_scale_now;
	int64_t d = (int64_t)(tsc - s->base_tsc);
	uint64_t mag = d < 0 ? (uint64_t)-d : (uint64_t)d;
	uint64_t ns = (uint64_t)(((unsigned __int128)mag * s->mult) >> TSC_SHIFT);
	return d < 0 ? s->base_ns - ns : s->base_ns + ns;
}

/*
 * The clock: monotonic nanoseconds, the same on every CPU (QEMU keeps the
 * TSCs in step).  os_timestamp_ns().  NMI-safe: yes.
 */
static inline uint64_t tsc_ns(void)
{
	return tsc_to_ns(rdtsc());
}

/* Nanoseconds to TSC ticks (for deadlines).  NMI-safe: yes. */
static inline uint64_t ns_to_tsc(uint64_t ns)
{
	/* Whole seconds and the rest apart: no 64-bit overflow below ~18 GHz. */
	return (ns / 1000000000u) * tsc_hz + (ns % 1000000000u) * tsc_hz / 1000000000u;
}

/*
 * Busy-wait `us` microseconds, with PAUSE.  NMI-safe: yes (bounded by the
 * caller's `us`); use only for short start-up delays.
 */
void tsc_delay_us(uint64_t us);

#endif
