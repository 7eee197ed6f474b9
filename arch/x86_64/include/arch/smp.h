/*
 * smp.h: starting the other CPUs (INIT-SIPI-SIPI through a real-mode
 * trampoline at TRAMPOLINE_PHYS) and the hooks through which other
 * subsystems run code on each of them.  CPU numbers are stable: the boot
 * CPU is 0, then the MADT's enabled local APICs in table order.
 * docs/smp-and-timers.md walks through the sequence.
 */
#ifndef ARCH_SMP_H
#define ARCH_SMP_H

/* Physical address the trampoline is copied to: page-aligned, below 1 MiB. */
#define TRAMPOLINE_PHYS		0x8000
#define TRAMPOLINE_SIPI_PAGE	(TRAMPOLINE_PHYS >> 12)

#ifndef __ASSEMBLER__
#include <stdbool.h>
#include <stdint.h>

/* Bring-up state of each CPU, smp_cpu_state(). */
enum smp_state {
	SMP_ABSENT = 0,		/* no such CPU, or maxcpus= left it out */
	SMP_STARTING,		/* IPIs sent, not heard from yet */
	SMP_ALIVE,		/* running C code, setting itself up */
	SMP_ONLINE,		/* ticking, in its idle entry */
	SMP_FAILED,		/* did not answer in time; left alone */
};

/*
 * Boot CPU, once, Step 6 after lapic_init_boot(): record CPU 0's APIC ID and
 * state, and settle cpus_possible from the MADT and `maxcpus=`.
 */
void smp_init_boot_cpu(void);

/*
 * Boot CPU, once (Step 9), interrupts off: start every CPU in the MADT.
 * Each AP loads the kernel page tables, its own GDT/TSS and guarded stack,
 * the IDT, sets up its local APIC and timer, runs the registered AP init
 * hooks, marks itself online and enters the idle hook.  A CPU that does not
 * check in within `smp_timeout_ms` of the last one that did is reported
 * and skipped.  Returns the number of CPUs online, CPU 0 included.
 */
unsigned int smp_boot(void);

/*
 * The AP's final destination: called with interrupts off, never returns
 * (the scheduler's sched_idle).  Until one is set an AP runs `sti; hlt`
 * forever, taking its ticks.  Set it before smp_boot().
 */
void smp_set_ap_idle(void (*fn)(void));

/*
 * Run `fn` on every AP during bring-up, interrupts off, after its GDT, IDT,
 * local APIC and timer are set up and before it is marked online (per-CPU
 * MSRs such as SYSCALL's, per-CPU state of the NMI core).  At most
 * SMP_MAX_AP_HOOKS; register before smp_boot().  Returns false when full.
 */
#define SMP_MAX_AP_HOOKS	8
bool smp_add_ap_init(void (*fn)(unsigned int cpu));

enum smp_state smp_cpu_state(unsigned int cpu);
unsigned int smp_cpus_online(void);

/* The CPU whose APIC ID is `apic_id`, or -1. */
int smp_cpu_of_apic(uint32_t apic_id);

/* Bring-up time of `cpu` in ns (SIPI to online), 0 for CPU 0 or a failed CPU. */
uint64_t smp_cpu_boot_ns(unsigned int cpu);

#endif /* !__ASSEMBLER__ */
#endif
