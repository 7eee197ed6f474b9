/*
 * irq.h: maskable interrupt vectors 32-255.  A driver registers a handler
 * for a vector (fixed, or one from irq_alloc_vector()); the common entry
 * stub calls irq_dispatch(), which runs the handler, signals end of
 * interrupt through the callback the local APIC code installed, and on the
 * way out gives the scheduler its chance to preempt (irq_set_exit_hook).
 * Per-CPU, per-vector counters feed the `irq` shell command.
 */
#ifndef KERNEL_IRQ_H
#define KERNEL_IRQ_H

#include <stdbool.h>
#include <stdint.h>
#include <nmikit/format.h>

struct regs;

#define IRQ_FIRST_VECTOR	32
#define IRQ_VECTORS		256
/* irq_alloc_vector() hands out vectors from this range (inclusive). */
#define IRQ_DYN_FIRST		0x30
#define IRQ_DYN_LAST		0xdf

/* irq_register_flags() flags. */
#define IRQ_NO_EOI	0x1u	/* do not signal EOI (e.g. the APIC spurious vector) */

#ifndef EINVAL
#define EINVAL	22
#endif
#ifndef EBUSY
#define EBUSY	16
#endif
#ifndef ENOSPC
#define ENOSPC	28
#endif
#ifndef ENOENT
#define ENOENT	2
#endif

/*
 * Called with interrupts disabled, on the interrupted context's stack.
 * `r` is the interrupted context.  The irq_work vector (IRQ_WORK_VECTOR,
 * <arch/os_inline.h>) is the exception: its lean entry saves no struct
 * regs and runs irq_work itself (irq_work_interrupt()), so the handler
 * registered for it names the vector but is not called from that entry;
 * should anything else call it, it gets r == NULL.
 */
typedef void (*irq_handler_fn)(struct regs *r);

/*
 * Install `fn` for `vector` (32-255).  `name` is kept by pointer (use a
 * string literal).  Returns 0, -EINVAL (bad vector, NULL fn or name) or
 * -EBUSY (the vector has a handler).  A vector from irq_alloc_vector() may
 * be registered once.  Not for NMI context.
 */
int irq_register(unsigned vector, irq_handler_fn fn, const char *name);
int irq_register_flags(unsigned vector, irq_handler_fn fn, const char *name, unsigned flags);

/*
 * Remove the handler and free the vector.  Returns 0 or -ENOENT.  A handler
 * already running on another CPU finishes; callers that free its data must
 * wait for that themselves.
 */
int irq_unregister(unsigned vector);

/*
 * Reserve a free vector from IRQ_DYN_FIRST..IRQ_DYN_LAST and return it, or
 * -ENOSPC.  Then irq_register() it.  irq_unregister() gives it back.
 */
int irq_alloc_vector(void);

/*
 * The end-of-interrupt callback (the local APIC's EOI write); NULL until the
 * APIC code sets it.  Called after every handler that is not IRQ_NO_EOI,
 * and for unregistered vectors (an ISR bit would otherwise stay set).
 */
void irq_set_eoi(void (*eoi)(void));

/*
 * The scheduler's preemption point: called at the end of an IRQ or of a
 * handled (non-IST) exception, when this CPU's need_resched is set and the
 * interrupted context may be preempted: it was user mode, or kernel mode
 * with interrupts enabled, preempt_count == 0 and no IRQ handler below it
 * on this CPU.  Called with interrupts disabled, on the interrupted task's
 * kernel stack.  NULL (no call) until set.
 */
void irq_set_exit_hook(void (*hook)(struct regs *r));

/* The C side of the IRQ entry stubs (arch/x86_64/entry.S). */
void irq_dispatch(struct regs *r);

/*
 * The C side of irq_work_entry (IRQ_WORK_VECTOR): irq_dispatch() without a
 * register frame, with irq_work_run_irqs_off() and the local APIC's EOI
 * wired in instead of the table's handler and EOI callback.  True when the
 * exit hook may be due; the entry then calls irq_exit_check() with a full
 * struct regs.
 */
bool irq_work_interrupt(void);

/*
 * For the exception handlers: run the exit hook when allowed (same rule as
 * above).  Not for IST (paranoid) vectors.
 */
void irq_exit_check(struct regs *r);

/*
 * Count one event on `vector` for this CPU (exceptions use it too).
 * NMI-safe: yes (a per-CPU counter; an event nested on the same CPU in
 * between the load and the store could make one increment go missing).
 */
void irq_account(unsigned cpu, unsigned vector);

/*
 * A fixed-mode interrupt on `vector` to the calling CPU, with the "self"
 * shorthand (the irq_work raise).  NMI-safe: yes; any context.  Nothing is
 * sent before the local APIC is set up.
 */
void irq_send_self_ipi(unsigned vector);

/* True while this CPU runs an IRQ handler.  NMI-safe: yes. */
bool in_irq(void);

/* Events counted on `vector` by `cpu`, and summed over all CPUs. */
uint64_t irq_count(unsigned cpu, unsigned vector);
uint64_t irq_count_total(unsigned vector);

/* Handler name of `vector`, or NULL when it has none. */
const char *irq_name(unsigned vector);

/*
 * The table behind the `irq` command: one line per vector that has a
 * handler or a nonzero count, with the count on each online CPU.
 */
void irq_print_table(nk_write_fn *write, void *arg);

#endif
