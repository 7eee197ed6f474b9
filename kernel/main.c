/*
 * main.c: kmain, the boot CPU's path from the loader to the shell.  Each step
 * depends on the ones before it; the order is the design.  Subsystems add
 * their init call in the step that names them, nowhere else.
 */
#include <arch/acpi.h>
#include <arch/apic.h>
#include <arch/boot.h>
#include <arch/cpu.h>
#include <arch/gdt.h>
#include <arch/hpet.h>
#include <arch/idt.h>
#include <arch/ioapic.h>
#include <arch/paging.h>
#include <arch/percpu.h>
#include <arch/serial.h>
#include <kernel/bench.h>
#include <kernel/ktest.h>
#include <kernel/nmi_setup.h>
#include <kernel/tick.h>
#include <kernel/watchdog.h>
#include <kernel/time.h>
#include <kernel/panic.h>
#include <kernel/rcu_setup.h>
#include <kernel/sched.h>
#include <kernel/shell.h>
#include <nmikit/log.h>
#include <nmikit/param.h>

/* test=GLOB: run the in-kernel tests matching GLOB, then exit QEMU. */
char boot_test_glob[128];
NK_PARAM_STR("test", boot_test_glob, "run the in-kernel tests matching this glob, then power off with their status");
#include <arch/smp.h>
#include <arch/mce.h>
#include <kernel/time.h>

void kmain(uint32_t magic, uint64_t info_phys);
void cpu_setup_boot(void);

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
	cpu_setup_boot();

	/* Step 3: leave the small boot stack for CPU 0's guarded stack. */
	uint64_t top = (uint64_t)(cpu_stacks[0].boot + BOOT_STACK_SIZE);
	__asm__ volatile("movq %0, %%rsp\n\txorl %%ebp, %%ebp\n\tcall *%1"
			 :: "r"(top), "r"(boot_cpu_continue) : "memory");
	for (;;)
		cpu_halt();
}

/* Step 10's first task: the tests named by test=, then power off with their result. */
static void boot_tests_task(void *arg)
{
	(void)arg;
	int failures = ktest_run(boot_test_glob);
	outl(0xf4, failures ? 1 : 0);
}

/* ... or the interactive shell. */
static void shell_task(void *arg)
{
	(void)arg;
	shell_main();
}

static void boot_cpu_continue(void)
{
	/* Step 4: log ring and boot parameters. */
	pr_info("nmikit: booted via %s, command line: %s\n", boot_info.protocol, boot_info.cmdline);
	nk_params_parse(boot_info.cmdline);

	/* Step 5: IDT (exceptions, IRQ vectors, NMI gate). */
	idt_init();
	mce_init_boot();	/* machine-check banks on, here and on each AP */
	crash_tests_run();	/* crash=NAME: a deliberate fault, docs/exceptions.md */

	/* Step 6: firmware tables (ACPI), local APIC, IO-APIC, PIT/HPET, timer calibration. */
	acpi_init();
	lapic_init_boot(platform.lapic_phys);
	smp_init_boot_cpu();
	lapic_init_cpu(0);
	ioapic_init();
	hpet_init();
	time_init();

	/* Step 7: NMI core (dispatch, statistics, self-test hooks). */
	nmi_kernel_init();

	/* Step 8: scheduler, idle and kernel threads; RCU (needs the scheduler). */
	sched_init();
	rcu_kernel_init();
	timer_set_tick_handler(kernel_tick);

	/* Step 9: start the other CPUs; NMI self-test on every CPU. */
	smp_boot();
	nmi_selftest_boot();
	watchdog_kernel_init();	/* lockup detectors, docs/watchdog.md */

	/* Step 10: interrupts on; run tests (test=GLOB) or start the shell. */
	time_report_boot();
	if (bench_boot_glob[0])
		bench_boot_start();	/* bench=GLOB: benchmarks, then power off */
	else if (!task_create_kernel(boot_test_glob[0] ? "ktest" : "shell",
				boot_test_glob[0] ? boot_tests_task : shell_task, NULL, 0))
		panic("cannot start the first kernel thread");
	sched_idle();
}
