/*
 * cpu_setup.c: control-register features the boot CPU turns on before the
 * others start (smp.c copies the boot CPU's CR4 into the trampoline, so every
 * CPU runs with the same set).
 */
#include <arch/cpu.h>
#include <nmikit/log.h>

#define CPUID1_EDX_MCE	(1u << 7)
#define CR4_MCE		(1ull << 6)

void cpu_setup_boot(void)
{
	uint32_t a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	/*
	 * Machine-check exceptions: without CR4.MCE an uncorrected machine check
	 * shuts the CPU down (QEMU resets the guest) instead of reaching the
	 * #MC handler on IST_MC, which reports it.
	 */
	if (d & CPUID1_EDX_MCE)
		write_cr4(read_cr4() | CR4_MCE);
	else
		pr_info("cpu: no machine-check exception support; #MC stays disabled\n");
}
