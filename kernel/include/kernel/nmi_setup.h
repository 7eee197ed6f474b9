/*
 * The testbed kernel's NMI glue (kernel/nmi_setup.c): vector and tick
 * wiring for the portable core, and the boot-time NMI self-test.
 */
#ifndef KERNEL_NMI_SETUP_H
#define KERNEL_NMI_SETUP_H

void nmi_kernel_init(void);
void nmi_kernel_tick(void);
int nmi_selftest_boot(void);	/* 0 when every online CPU passed */

#endif
