/*
 * The PC's external NMI reasons: system control port B (0x61).  Bit 7 is
 * SERR (memory parity / PCI SERR#), bit 6 IOCHK; writing bit 2 / bit 3
 * disables (and clears) them.  QEMU never asserts either, so tests install a
 * simulated reason source that behaves like the hardware: a reason stays
 * asserted until acked.
 */
#ifndef ARCH_NMI_REASON_H
#define ARCH_NMI_REASON_H

#include <stdbool.h>

#define NMI_REASON_PORT		0x61
#define NMI_REASON_SERR		0x80
#define NMI_REASON_IOCHK	0x40
#define NMI_REASON_SERR_DISABLE	0x04
#define NMI_REASON_IOCHK_DISABLE 0x08

/* Simulated reason source for tests: assert a reason (OS_NMI_REASON_* bits). */
void nmi_reason_sim_enable(bool on);
void nmi_reason_sim_assert(unsigned bits);
unsigned nmi_reason_sim_pending(void);
unsigned long nmi_reason_sim_acks(unsigned bits);

#endif
