/*
 * irq.c: the handler table for vectors 32-255, the C side of their entry
 * stubs, end-of-interrupt through the APIC's callback, the scheduler's exit
 * hook, and per-CPU counts of every vector (exceptions included).
 *
 * Dispatch takes no lock: a vector's handler pointer is published with a
 * release store after its name and flags, and read with an acquire load.
 * Writers (register, unregister, alloc) claim a vector's state with a
 * compare-exchange, so two of them cannot both get it.
 */
#include <kernel/irq.h>
#include <kernel/shell.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <nmikit/log.h>

#include <stdatomic.h>

enum vec_state { VEC_FREE = 0, VEC_RESERVED, VEC_USED };

struct irq_desc {
	_Atomic(irq_handler_fn) fn;
	const char *name;
	unsigned flags;
	_Atomic unsigned state;		/* enum vec_state */
	_Atomic bool reported;		/* an unexpected interrupt was reported */
};

static struct irq_desc irq_table[IRQ_VECTORS];
static uint64_t irq_counts[MAX_CPUS][IRQ_VECTORS];
static unsigned int irq_depth[MAX_CPUS];	/* IRQ handlers running, per CPU */

static void (*_Atomic irq_eoi_fn)(void);
static void (*_Atomic irq_exit_hook)(struct regs *r);

static bool vector_ok(unsigned vector)
{
	return vector >= IRQ_FIRST_VECTOR && vector < IRQ_VECTORS;
}

int irq_register_flags(unsigned vector, irq_handler_fn fn, const char *name, unsigned flags)
{
	struct irq_desc *d;
	unsigned s;

	if (!vector_ok(vector) || !fn || !name)
		return -EINVAL;
	d = &irq_table[vector];
	s = VEC_FREE;
	if (!atomic_compare_exchange_strong(&d->state, &s, VEC_USED)) {
		s = VEC_RESERVED;
		if (!atomic_compare_exchange_strong(&d->state, &s, VEC_USED))
			return -EBUSY;
	}
	d->name = name;
	d->flags = flags;
	atomic_store_explicit(&d->reported, false, memory_order_relaxed);
	atomic_store_explicit(&d->fn, fn, memory_order_release);
	return 0;
}

int irq_register(unsigned vector, irq_handler_fn fn, const char *name)
{
	return irq_register_flags(vector, fn, name, 0);
}

int irq_unregister(unsigned vector)
{
	struct irq_desc *d;

	if (!vector_ok(vector))
		return -ENOENT;
	d = &irq_table[vector];
	if (atomic_load(&d->state) == VEC_FREE)
		return -ENOENT;
	atomic_store_explicit(&d->fn, NULL, memory_order_release);
	atomic_store(&d->state, VEC_FREE);
	return 0;
}

int irq_alloc_vector(void)
{
	for (unsigned v = IRQ_DYN_FIRST; v <= IRQ_DYN_LAST; v++) {
		unsigned s = VEC_FREE;
		if (atomic_compare_exchange_strong(&irq_table[v].state, &s, VEC_RESERVED))
			return (int)v;
	}
	return -ENOSPC;
}

void irq_set_eoi(void (*eoi)(void))
{
	atomic_store(&irq_eoi_fn, eoi);
}

void irq_set_exit_hook(void (*hook)(struct regs *r))
{
	atomic_store(&irq_exit_hook, hook);
}

/* NMI-safe: yes (see irq.h). */
void irq_account(unsigned cpu, unsigned vector)
{
	if (cpu < MAX_CPUS && vector < IRQ_VECTORS)
		irq_counts[cpu][vector]++;
}

/* NMI-safe: yes. */
bool in_irq(void)
{
	return irq_depth[this_cpu_id()] != 0;
}

uint64_t irq_count(unsigned cpu, unsigned vector)
{
	if (cpu >= MAX_CPUS || vector >= IRQ_VECTORS)
		return 0;
	return __atomic_load_n(&irq_counts[cpu][vector], __ATOMIC_RELAXED);
}

uint64_t irq_count_total(unsigned vector)
{
	uint64_t sum = 0;

	for (unsigned cpu = 0; cpu < cpus_possible && cpu < MAX_CPUS; cpu++)
		sum += irq_count(cpu, vector);
	return sum;
}

const char *irq_name(unsigned vector)
{
	if (vector >= IRQ_VECTORS || !atomic_load_explicit(&irq_table[vector].fn, memory_order_acquire))
		return NULL;
	return irq_table[vector].name;
}

/* Report the first unexpected interrupt on a vector; count them all. */
static void irq_unexpected(unsigned vector, unsigned cpu)
{
	struct irq_desc *d = &irq_table[vector];

	if (!atomic_exchange_explicit(&d->reported, true, memory_order_relaxed))
		pr_warn("irq: unexpected interrupt on vector 0x%x (CPU %u), no handler; "
			"later ones are only counted", vector, cpu);
}

void irq_exit_check(struct regs *r)
{
	void (*hook)(struct regs *) = atomic_load_explicit(&irq_exit_hook, memory_order_acquire);
	struct percpu *p;

	if (!hook)
		return;
	p = this_cpu();
	if (irq_depth[p->cpu] != 0)
		return;		/* still inside an outer IRQ handler on this CPU */
	if (regs_from_user(r) || ((r->rflags & RFLAGS_IF) && p->preempt_count == 0))
		hook(r);
}

/* Called by entry.S for vectors 32-255, interrupts disabled. */
void irq_dispatch(struct regs *r)
{
	unsigned vector = (unsigned)r->vector & (IRQ_VECTORS - 1);
	unsigned cpu = this_cpu_id();
	struct irq_desc *d = &irq_table[vector];
	irq_handler_fn fn = atomic_load_explicit(&d->fn, memory_order_acquire);
	void (*eoi)(void);

	irq_account(cpu, vector);
	irq_depth[cpu]++;
	if (fn)
		fn(r);
	else
		irq_unexpected(vector, cpu);
	/* An unregistered vector still had its ISR bit set by the APIC: EOI it too. */
	if (!fn || !(d->flags & IRQ_NO_EOI)) {
		eoi = atomic_load_explicit(&irq_eoi_fn, memory_order_acquire);
		if (eoi)
			eoi();
	}
	irq_depth[cpu]--;
	irq_exit_check(r);
}

void irq_print_table(nk_write_fn *write, void *arg)
{
	unsigned ncpu = cpus_possible < MAX_CPUS ? cpus_possible : MAX_CPUS;

	nk_wprintf(write, arg, "vector  %-16s", "handler");
	for (unsigned cpu = 0; cpu < ncpu; cpu++)
		if (percpu_area[cpu].online || cpu == 0)
			nk_wprintf(write, arg, " %10s%-3u", "CPU", cpu);
	nk_wprintf(write, arg, " %12s\n", "total");
	for (unsigned v = 0; v < IRQ_VECTORS; v++) {
		const char *name = irq_name(v);
		uint64_t total = irq_count_total(v);

		if (!name && total == 0)
			continue;
		nk_wprintf(write, arg, "  0x%02x  %-16s", v, name ? name : (v < IRQ_FIRST_VECTOR ? "(exception)" : "(none)"));
		for (unsigned cpu = 0; cpu < ncpu; cpu++)
			if (percpu_area[cpu].online || cpu == 0)
				nk_wprintf(write, arg, " %13lu", (unsigned long)irq_count(cpu, v));
		nk_wprintf(write, arg, " %12lu\n", (unsigned long)total);
	}
}

static int cmd_irq(int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return SHELL_USAGE;
	irq_print_table(shell_write_fn, NULL);
	return 0;
}
SHELL_CMD(irq, "", "interrupts and exceptions counted per vector and CPU", cmd_irq);
