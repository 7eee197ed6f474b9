/*
 * main.c: kmain, the boot CPU's path from the loader to the shell.  Each step
 * below depends on the ones before it; the order is the design.
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
	serial_init();
	boot_info_parse(magic, info_phys);
	gdt_init_cpu(0);
	gdt_load_cpu(0);
	paging_init();

	/* Leave the small boot stack for CPU 0's guarded stack. */
	uint64_t top = (uint64_t)(cpu_stacks[0].boot + BOOT_STACK_SIZE);
	__asm__ volatile("movq %0, %%rsp\n\txorl %%ebp, %%ebp\n\tcall *%1"
			 :: "r"(top), "r"(boot_cpu_continue) : "memory");
	for (;;)
		cpu_halt();
}

static void boot_cpu_continue(void)
{
	serial_puts("nmikit: booted via ");
	serial_puts(boot_info.protocol);
	serial_puts(", cmdline: ");
	serial_puts(boot_info.cmdline);
	serial_puts("\n");
	outl(0xf4, 0);
	for (;;)
		cpu_halt();
}
