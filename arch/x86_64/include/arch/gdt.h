/*
 * Per-CPU GDT and TSS.  Each CPU has its own TSS, because the TSS holds the
 * IST stack pointers and the ring-0 stack used when an interrupt arrives in
 * ring 3, and both are per CPU.
 */
#ifndef ARCH_GDT_H
#define ARCH_GDT_H

#include <stdint.h>

struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];	/* rsp[0]: stack for interrupts from ring 3 */
	uint64_t reserved1;
	uint64_t ist[7];	/* ist[0] is IST1 */
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

/*
 * Offset, from the value programmed into a TSS IST slot, of the slot that holds
 * this CPU's percpu pointer (just above where the CPU pushes its frame).
 */
#define IST_PERCPU_SLOT	8

void gdt_init_cpu(unsigned int cpu);
void gdt_load_cpu(unsigned int cpu);
void tss_set_rsp0(uint64_t rsp0);
uint64_t ist_top(unsigned int cpu, int ist);
int stacks_check_canaries(unsigned int cpu);	/* returns the number of damaged canaries */

#endif
