/*
 * main.c: kmain, the boot CPU's path from the loader to the shell.  Each step
 * depends on the ones before it; the order is the design.  Subsystems add
 * their init call in the step that names them, nowhere else.
 */
#include <arch/boot.h>
#include <arch/cpu.h>
#include <arch/gdt.h>
#include <arch/paging.h>
#include <arch/percpu.h>
#include <arch/serial.h>

void kmain(uint32_t magic, uint64_t info_phys);

static void boot_cpu_continue(void);

void kmain(uint32_t magic, uint64_t info_phys)
{
	/* Step 1: a console to complain on, and what the loader told us. */
	serial_init();
	boot_info_parse(magic, info_phys);
	/* Step 2: this CPU's GDT, TSS (IST stacks) and GS base; final page tables. */
	gdt_init_cpu(0);
	gdt_load_cpu(0);
	paging_init();

	/* Step 3: leave the small boot stack for CPU 0's guarded stack. */
	uint64_t top = (uint64_t)(cpu_stacks[0].boot + BOOT_STACK_SIZE);
	__asm__ volatile("movq %0, %%rsp\n\txorl %%ebp, %%ebp\n\tcall *%1"
			 :: "r"(top), "r"(boot_cpu_continue) : "memory");
	for (;;)
		cpu_halt();
}

static void boot_cpu_continue(void)
{
	/* Step 4: log ring and boot parameters. */
	serial_puts("nmikit: booted via ");
	serial_puts(boot_info.protocol);
	serial_puts(", cmdline: ");
	serial_puts(boot_info.cmdline);
	serial_puts("\n");

	/* Step 5: IDT (exceptions, IRQ vectors, NMI gate). */

	/* Step 6: firmware tables (ACPI), local APIC, IO-APIC, PIT/HPET, timer calibration. */

	/* Step 7: NMI core (dispatch, statistics, self-test hooks). */

	/* Step 8: scheduler, idle and kernel threads. */

	/* Step 9: start the other CPUs; NMI self-test on every CPU. */

	/* Step 10: interrupts on; run tests (test=GLOB) or start the shell. */

	outl(0xf4, 0);
	for (;;)
		cpu_halt();
}
