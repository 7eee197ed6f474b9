/*
 * os.c: the testbed kernel's implementation of <nmikit/os.h>, the services
 * the portable core needs.  Functions marked NMI-safe in os.h are called in
 * NMI context: each below uses only per-CPU data, MMIO/port writes and the
 * TSC, never a lock.
 */
#include <nmikit/os.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/os_inline.h>
#include <arch/percpu.h>
#include <arch/serial.h>
#include <arch/tsc.h>
#include <kernel/irq.h>
#include <kernel/panic.h>
#include <kernel/sched.h>

/*
 * The irq_work vector, for nmi_setup.c's registration.  Never changed: the
 * raise below sends IRQ_WORK_VECTOR, whose IDT gate entry.S wires to its
 * own entry (<arch/os_inline.h>).
 */
unsigned irq_work_vector = IRQ_WORK_VECTOR;

/*
 * The hooks core/ also gets inline (<arch/os_inline.h>): the same bodies,
 * out of line for callers built without NMIKIT_OS_INLINE_HEADER.
 */
unsigned os_cpu_id(void) { return x86_os_cpu_id(); }
void os_cpu_relax(void) { x86_os_cpu_relax(); }
os_irqflags_t os_local_irq_save(void) { return x86_os_irq_save(); }
void os_local_irq_restore(os_irqflags_t flags) { x86_os_irq_restore(flags); }

unsigned os_cpu_count(void) { return cpus_possible; }
bool os_cpu_online(unsigned cpu) { return cpu < cpus_possible && percpu_area[cpu].online; }
uint64_t os_timestamp_ns(void) { return tsc_ns(); }
uint64_t os_cycles(void) { return rdtsc(); }
uint64_t os_cycles_per_ms(void) { return tsc_hz / 1000 ? tsc_hz / 1000 : 1; }

/* RCU readers (core/rcu.c); os_rcu_wait and os_rcu_kick_callbacks are in rcu_setup.c. */
void os_preempt_disable(void) { preempt_disable(); }
void os_preempt_enable(void) { preempt_enable(); }

void os_send_nmi(unsigned cpu)
{
	if (cpu < cpus_possible)
		lapic_send_nmi(percpu_area[cpu].apic_id);
}

void os_send_nmi_self(void) { lapic_send_nmi(this_cpu_apic_id()); }
void os_send_nmi_allbutself(void) { lapic_send_nmi_allbutself(); }
/* os_irq_work_raise() is in irq.c, beside the self-IPI send it inlines. */

void os_console_write(const char *buf, size_t len) { serial_write(buf, len); }

_Noreturn void os_panic(const char *msg)
{
	panic("%s", msg);
}
