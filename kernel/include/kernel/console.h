/*
 * Console input for the shell.  Output goes through the log ring
 * (<nmikit/log.h>), which owns the serial port's transmit side.
 */
#ifndef KERNEL_CONSOLE_H
#define KERNEL_CONSOLE_H

int console_getc(void);		/* blocks (halting between ticks) for one byte */
int console_trygetc(void);	/* -1 when nothing is waiting */

#endif
