/*
 * idt.h: the interrupt descriptor table.  One table for all CPUs, built once
 * by the boot CPU (idt_init) and loaded by every CPU (idt_load).  Gates 0-31
 * lead to the exception stubs, 2 to the NMI entry (asm_nmi), 32-255 to the
 * IRQ stubs; entry.S holds the stubs, docs/exceptions.md the vector table.
 */
#ifndef ARCH_IDT_H
#define ARCH_IDT_H

#include <stdbool.h>
#include <stdint.h>

#define IDT_VECTORS	256

/* Build every gate and load the table on the calling (boot) CPU. */
void idt_init(void);

/* Load the table on the calling CPU (the APs, during bring-up). */
void idt_load(void);

/*
 * Point `vector` at `handler` with IST slot `ist` (0 = none, else IST_*) and
 * descriptor privilege `dpl` (3 lets `int $vector` work from ring 3).  The
 * table is shared: the change is seen by every CPU at its next delivery.
 */
void idt_set_gate(unsigned vector, void (*handler)(void), unsigned ist, unsigned dpl);

/*
 * Mark a gate present or not present.  Delivery through a not-present gate
 * raises #NP; the crash test for #DF uses this.
 */
void idt_set_present(unsigned vector, bool present);

/* The entry stub of `vector` from entry.S (NULL for vector 2, the NMI). */
void (*idt_stub(unsigned vector))(void);

#endif
