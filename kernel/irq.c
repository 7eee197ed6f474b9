/*
 * irq.c: the handler table for vectors 32-255, the C side of their entry
 * stubs, end-of-interrupt through the APIC's callback, the scheduler's exit
 * hook, and per-CPU counts of every vector (exceptions included).
 *
 * Dispatch takes no lock: a vector's handler pointer is published with a
 * release store after its name and flags, and read with an acquire load.
 * Writers (register, unregister, alloc) claim a vector's state with a
 * compare-exchange, so two of them cannot both get it.
 *
 * Also here: irq_send_self_ipi(), the fixed-vector self IPI sent with the
 * "self" shorthand straight to the ICR, os_irq_work_raise() (the same on
 * IRQ_WORK_VECTOR), and irq_work_interrupt(), the C side of that vector's
 * lean entry, which runs irq_work and signals EOI itself.
 */
#include <kernel/irq.h>
#include <kernel/shell.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/os_inline.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <nmikit/irq_work.h>
#include <nmikit/log.h>
#include <nmikit/os.h>

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

/*
 * One more on a counter that only this CPU writes.  A single read-modify-
 * write instruction without LOCK: an interrupt or NMI lands before or after
 * it, never inside, so a nested event's own increment is never lost, and
 * no other CPU writes the counter (readers on other CPUs load it whole).
 */
static inline void count_this_cpu(uint64_t *c)
{
	__asm__ volatile("incq %0" : "+m"(*c));
}

/* NMI-safe: yes (see irq.h). */
void irq_account(unsigned cpu, unsigned vector)
{
	if (cpu < MAX_CPUS && vector < IRQ_VECTORS)
		count_this_cpu(&irq_counts[cpu][vector]);
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

/* This CPU's need_resched, read straight through the GS base. */
static inline uint64_t this_cpu_need_resched(void)
{
	uint64_t v;

	__asm__ volatile("movq %%gs:%c1, %0" : "=r"(v)
			 : "i"(__builtin_offsetof(struct percpu, need_resched)));
	return v;
}

/*
 * The end of an IRQ or exception whose handlers have all returned on this
 * CPU (no outer IRQ handler is still running below it), once need_resched
 * was found set.  The hook is asked only then: it has nothing else to do,
 * and the common exit stays one load.  need_resched set by another CPU
 * just after the look is not lost: the setter sends a resched IPI, which
 * arrives after our IRETQ and comes through here again.
 */
static __attribute__((noinline)) void irq_exit_resched(struct regs *r)
{
	void (*hook)(struct regs *) = atomic_load_explicit(&irq_exit_hook, memory_order_acquire);
	struct percpu *p = this_cpu();

	if (hook && (regs_from_user(r) || ((r->rflags & RFLAGS_IF) && p->preempt_count == 0)))
		hook(r);
}

void irq_exit_check(struct regs *r)
{
	if (irq_depth[this_cpu_id()] == 0 && this_cpu_need_resched())
		irq_exit_resched(r);
}

/* The EOI for the in-service vector, once the APIC code has set how. */
static inline void irq_eoi(void)
{
	void (*eoi)(void) = atomic_load_explicit(&irq_eoi_fn, memory_order_acquire);

	if (eoi)
		eoi();
}

/*
 * Count the interrupt, run the vector's handler and signal EOI; irq_depth
 * is raised for the duration, and lowered by the caller.
 *
 * The CPU number comes from the percpu area, so it is below MAX_CPUS by
 * construction (percpu_area has MAX_CPUS entries) and the counter needs no
 * bound check; the vector is one byte.  Only this CPU writes its row of
 * irq_counts and its irq_depth.  The flags are read with the handler: the
 * acquire load of fn orders them, as it orders the name.
 */
static inline __attribute__((always_inline))
void irq_handle(unsigned vector, unsigned cpu, struct regs *r)
{
	const struct irq_desc *d = &irq_table[vector];
	irq_handler_fn fn = atomic_load_explicit(&d->fn, memory_order_acquire);

	count_this_cpu(&irq_counts[cpu][vector]);
	irq_depth[cpu]++;
	if (__builtin_expect(fn != NULL, 1)) {
		bool eoi = !(d->flags & IRQ_NO_EOI);

		fn(r);
		if (eoi)
			irq_eoi();
	} else {
		irq_unexpected(vector, cpu);
		/* An unregistered vector still had its ISR bit set by the APIC. */
		irq_eoi();
	}
}

/* Called by entry.S for vectors 32-255 but IRQ_WORK_VECTOR, interrupts disabled. */
void irq_dispatch(struct regs *r)
{
	unsigned cpu = this_cpu_id();

	irq_handle((uint8_t)r->vector, cpu, r);
	if (--irq_depth[cpu] == 0 && this_cpu_need_resched())
		irq_exit_resched(r);
}

/*
 * Called by entry.S's irq_work_entry for IRQ_WORK_VECTOR, interrupts
 * disabled (an interrupt gate).  The vector has one job, so this is
 * irq_dispatch() with that job wired in: the same per-vector count and
 * irq_depth, then irq_work_run_irqs_off() straight (no table lookup or
 * indirect call: the table entry nmi_setup.c registers still names the
 * vector for `irq` and keeps it from being allocated, but is not called
 * here), then EOI written straight to the local APIC (the only EOI
 * irq_set_eoi() is ever given; this IPI can only have come through the
 * APIC, so lapic_base is set).  Interrupts stay off throughout, so the
 * callbacks run with them off.  Returns true when the scheduler's exit
 * hook may be due (need_resched set, no IRQ handler below this one): the
 * entry then builds a struct regs and calls irq_exit_check(), which
 * decides with the same rule as irq_dispatch() (interrupted ring, IF,
 * preempt_count).
 */
bool irq_work_interrupt(void)
{
	unsigned cpu = this_cpu_id();

	count_this_cpu(&irq_counts[cpu][IRQ_WORK_VECTOR]);
	irq_depth[cpu]++;
	irq_work_run_irqs_off();
	lapic_write(LAPIC_EOI, 0);
	return --irq_depth[cpu] == 0 && this_cpu_need_resched();
}

/*
 * The ICR's delivery-status bit, waited for within the same bound as
 * lapic.c's senders (a stuck APIC becomes a counted timeout, not a hang).
 * On hardware it clears within a microsecond or two; QEMU never sets it.
 */
#define SELF_IPI_WAIT_LOOPS	100000

static void self_ipi_wait_idle(void)
{
	for (unsigned i = 0; lapic_read(LAPIC_ICR_LOW) & ICR_BUSY; i++) {
		if (i == SELF_IPI_WAIT_LOOPS) {
			__atomic_fetch_add(&lapic_stats.icr_timeouts, 1, __ATOMIC_RELAXED);
			return;
		}
		cpu_relax();
	}
}

static inline bool icr_busy(void)
{
	return __builtin_expect(lapic_read(LAPIC_ICR_LOW) & ICR_BUSY, 0);
}

/* irq_send_self_ipi() when the previous send has not left yet. */
static __attribute__((noinline)) void self_ipi_send_after_wait(uint32_t low)
{
	self_ipi_wait_idle();
	lapic_write(LAPIC_ICR_LOW, low);
	self_ipi_wait_idle();
}

/*
 * NMI-safe: yes (no lock, bounded waits, MMIO only).  Any context.
 *
 * The same rules as lapic.c's icr_send(), which every other sender uses:
 * wait until the previous send has left before writing ICR-low, and return
 * only once our own send has left, so that a send we interrupted (as an NMI
 * or an IRQ) finds the ICR as idle as it left it.  Unlike a destination
 * send this one never touches ICR-high, which the "self" shorthand ignores:
 * there is no two-register window for an NMI to land in, so ICR-high need
 * not be saved and restored, and interrupts need not be disabled (an IRQ
 * handler that sends between our check and our write returns with its own
 * send gone).  Before the APIC is set up lapic_base is 0 and nothing is
 * sent, as with lapic.c's senders.  The waits are out of line: the usual
 * case is one read before and one after.
 */
static inline __attribute__((always_inline)) void self_ipi_send(uint32_t low)
{
	if (!lapic_base)
		return;
	if (icr_busy()) {
		self_ipi_send_after_wait(low);
		return;
	}
	lapic_write(LAPIC_ICR_LOW, low);
	if (icr_busy())
		self_ipi_wait_idle();
}

void irq_send_self_ipi(unsigned vector)
{
	self_ipi_send(ICR_SH_SELF | ICR_DM_FIXED | (vector & 0xff));
}

/*
 * The <nmikit/os.h> hook behind irq_work_queue(): the self IPI on
 * IRQ_WORK_VECTOR, its ICR word a constant.  Here rather than in os.c so
 * the send is built inline, not through a second call.  NMI-safe: yes.
 */
void os_irq_work_raise(void)
{
	self_ipi_send(ICR_SH_SELF | ICR_DM_FIXED | IRQ_WORK_VECTOR);
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
