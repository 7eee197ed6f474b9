/*
 * 16550 UART on COM1: the console.  Output polls the transmitter; nothing here
 * locks, so it may be called from any context (the log core makes sure only
 * one CPU at a time is printing, see docs/logging.md).
 */
#ifndef ARCH_SERIAL_H
#define ARCH_SERIAL_H

#include <stddef.h>

void serial_init(void);
void serial_putc(char c);
void serial_write(const char *s, size_t len);
void serial_puts(const char *s);
int serial_trygetc(void);	/* -1 when no byte is waiting */

#endif
