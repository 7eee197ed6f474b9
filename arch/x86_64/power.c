/*
 * power.c: power-off and reset, and the `poweroff` / `reboot` shell
 * commands.  Each method is tried and, if the machine is still running a
 * little later, the next one.
 *
 * QEMU facts these fall back on (hw/acpi/core.c, SeaBIOS): on both `pc`
 * (PIIX4 PM) and `q35` (ICH9 LPC) the firmware puts the PM1 block at
 * 0x600, so PM1a_CNT is port 0x604, and QEMU's DSDT gives \_S5 = {0, 0}:
 * writing SLP_EN | SLP_TYP 0 (0x2000) there powers off.  Older QEMU/Bochs
 * firmware used 0xb004.  Port 0xCF9 (reset control register) exists on
 * both chipsets.
 */
#include <arch/acpi.h>
#include <arch/cpu.h>
#include <arch/power.h>
#include <arch/tsc.h>
#include <kernel/acpi.h>
#include <kernel/shell.h>
#include <nmikit/log.h>

#define QEMU_PM1A_CNT		0x604
#define BOCHS_PM1A_CNT		0xb004
#define DEBUG_EXIT_PORT		0xf4
#define RESET_CONTROL_PORT	0xcf9
#define RCR_SYS_RESET		0x02	/* full (not just CPU) reset */
#define RCR_RESET_CPU		0x04	/* 0 -> 1 starts the reset */
#define KBC_STATUS		0x64
#define KBC_INPUT_FULL		0x02
#define KBC_PULSE_RESET		0xfe

/* Give the method a moment to take effect before trying the next. */
static void settle(void)
{
	tsc_delay_us(100000);
}

_Noreturn void power_off(void)
{
	irq_disable();
	nk_log_flush();

	if (platform.fadt && platform.pm1a_cnt) {
		uint16_t typ_a = platform.s5_found ? platform.s5_typ_a : 0;
		uint16_t typ_b = platform.s5_found ? platform.s5_typ_b : 0;
		outw((uint16_t)platform.pm1a_cnt, (uint16_t)((typ_a << ACPI_PM1_SLP_TYP_SHIFT) | ACPI_PM1_SLP_EN));
		if (platform.pm1b_cnt)
			outw((uint16_t)platform.pm1b_cnt,
			     (uint16_t)((typ_b << ACPI_PM1_SLP_TYP_SHIFT) | ACPI_PM1_SLP_EN));
		settle();
	}
	outw(QEMU_PM1A_CNT, ACPI_PM1_SLP_EN);
	settle();
	outw(BOCHS_PM1A_CNT, ACPI_PM1_SLP_EN);
	settle();
	/* isa-debug-exit (the test harness's device): QEMU exits with (0 << 1) | 1. */
	outl(DEBUG_EXIT_PORT, 0);
	settle();
	pr_emerg("power: nothing turned the machine off; halted");
	nk_log_flush();
	for (;;)
		cpu_halt();
}

_Noreturn void power_reboot(void)
{
	irq_disable();
	nk_log_flush();

	if (platform.reset_reg) {
		outb(platform.reset_port, platform.reset_value);
		settle();
	}
	outb(RESET_CONTROL_PORT, RCR_SYS_RESET);
	outb(RESET_CONTROL_PORT, RCR_SYS_RESET | RCR_RESET_CPU);
	settle();
	for (int i = 0; i < 10000 && (inb(KBC_STATUS) & KBC_INPUT_FULL); i++)
		cpu_relax();
	outb(KBC_STATUS, KBC_PULSE_RESET);
	settle();
	/* Last resort: an empty IDT makes the next exception a triple fault. */
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) none = { 0, 0 };
	__asm__ volatile("lidt %0\n\tint3" :: "m"(none));
	for (;;)
		cpu_halt();
}

static int cmd_poweroff(int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return SHELL_USAGE;
	shell_printf("Powering off.\n");
	power_off();
}
SHELL_CMD(poweroff, "", "turn the machine off (ACPI S5; QEMU exits)", cmd_poweroff);

static int cmd_reboot(int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return SHELL_USAGE;
	shell_printf("Rebooting.\n");
	power_reboot();
}
SHELL_CMD(reboot, "", "reset the machine (QEMU with -no-reboot exits)", cmd_reboot);
