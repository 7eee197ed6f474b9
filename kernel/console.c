/*
 * console.c: console input.  The UART is polled: between polls the CPU halts
 * until the next interrupt (the timer tick at the latest), so waiting for a
 * key costs no CPU and never starves another vCPU under -icount.
 */
#include <arch/cpu.h>
#include <arch/serial.h>
#include <kernel/console.h>

int console_trygetc(void)
{
	return serial_trygetc();
}

int console_getc(void)
{
	for (;;) {
		int c = serial_trygetc();
		if (c >= 0)
			return c;
		if (irqs_enabled())
			cpu_halt();
		else
			cpu_relax();
	}
}
