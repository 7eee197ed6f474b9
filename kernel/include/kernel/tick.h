/* The per-CPU timer tick handler (kernel/tick.c). */
#ifndef KERNEL_TICK_H
#define KERNEL_TICK_H

struct regs;
void kernel_tick(struct regs *r);

#endif
