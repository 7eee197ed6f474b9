/*
 * serial.c: the COM1 16550 UART, polled.  115200 8N1, FIFOs on.
 * Transmit waits (with PAUSE) for the holding register to empty, bounded so a
 * missing or wedged UART cannot hang the kernel.
 */
#include <arch/serial.h>
#include <arch/cpu.h>

#define COM1		0x3f8
#define UART_DATA	0
#define UART_IER	1
#define UART_FCR	2
#define UART_LCR	3
#define UART_MCR	4
#define UART_LSR	5
#define LSR_DATA_READY	0x01
#define LSR_THR_EMPTY	0x20

void serial_init(void)
{
	outb(COM1 + UART_IER, 0x00);	/* polled: no UART interrupts */
	outb(COM1 + UART_LCR, 0x80);	/* DLAB on to set the divisor */
	outb(COM1 + UART_DATA, 0x01);	/* 115200 baud */
	outb(COM1 + UART_IER, 0x00);
	outb(COM1 + UART_LCR, 0x03);	/* 8 bits, no parity, 1 stop bit */
	outb(COM1 + UART_FCR, 0xc7);	/* FIFOs on and cleared, 14-byte threshold */
	outb(COM1 + UART_MCR, 0x03);	/* DTR, RTS */
}

void serial_putc(char c)
{
	/* About 1 ms at 115200 baud on real hardware; QEMU is always ready. */
	for (int spins = 0; spins < 100000; spins++) {
		if (inb(COM1 + UART_LSR) & LSR_THR_EMPTY)
			break;
		cpu_relax();
	}
	outb(COM1 + UART_DATA, (uint8_t)c);
}

void serial_write(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n')
			serial_putc('\r');
		serial_putc(s[i]);
	}
}

void serial_puts(const char *s)
{
	while (*s) {
		if (*s == '\n')
			serial_putc('\r');
		serial_putc(*s++);
	}
}

int serial_trygetc(void)
{
	if (!(inb(COM1 + UART_LSR) & LSR_DATA_READY))
		return -1;
	return inb(COM1 + UART_DATA);
}
