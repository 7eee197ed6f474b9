/*
 * power.h: turning the machine off and resetting it, each through a list of
 * methods tried in turn until one works (see power.c for the order).
 */
#ifndef ARCH_POWER_H
#define ARCH_POWER_H

/*
 * Soft-off: ACPI S5 through the FADT's PM1 control registers, then QEMU's
 * known PM1a_CNT port, then isa-debug-exit with status 0, then halt.
 * Interrupts are turned off; other CPUs are not stopped first (S5 stops
 * them all).  Does not return.
 */
_Noreturn void power_off(void);

/*
 * Reset: the FADT reset register, port 0xCF9, the keyboard controller's
 * pulse-reset command, and finally a triple fault.  Does not return.
 */
_Noreturn void power_reboot(void);

#endif
