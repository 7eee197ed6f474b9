/*
 * irq_tests.c: in-kernel tests of irq_send_self_ipi(), the shorthand self
 * IPI that raises irq_work (kernel/irq.c), and of that vector's lean entry
 * (entry.S irq_work_entry): from ring 3, and preempting on its way out.
 * In the apic suite, next to the ICR tests of lapic.c's senders (scenario
 * boot.ipi, test=apic.*).
 */
#include <kernel/irq.h>
#include <kernel/ktest.h>
#include <kernel/sched.h>
#include <kernel/user_programs.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/os_inline.h>
#include <arch/percpu.h>
#include <arch/tsc.h>
#include <nmikit/irq_work.h>

#include <stdint.h>

static volatile unsigned self_ipi_hits;

static void self_ipi_test_handler(struct regs *r)
{
	(void)r;
	self_ipi_hits++;
}

/*
 * The send leaves ICR-high exactly as it found it (a sender it interrupts
 * may have written its destination there and not yet ICR-low), stays
 * pending while interrupts are off, and arrives once when they come on,
 * counted on this CPU's vector.  ICR-high holds a sentinel no CPU has.
 */
KTEST(apic, self_ipi_shorthand_leaves_icr_high)
{
	const uint32_t sentinel = 0xcdu << ICR_DEST_SHIFT;
	int v = irq_alloc_vector();
	unsigned cpu;
	uint64_t flags, before, t0;
	uint32_t saved, high;

	if (!lapic_ready())
		KT_SKIP("no local APIC");
	KT_ASSERT_GE(v, IRQ_DYN_FIRST);
	KT_ASSERT_EQ(irq_register((unsigned)v, self_ipi_test_handler, "ktest-self-ipi"), 0);
	self_ipi_hits = 0;
	flags = irq_save();
	cpu = this_cpu_id();
	before = irq_count(cpu, (unsigned)v);
	saved = lapic_read(LAPIC_ICR_HIGH);
	lapic_write(LAPIC_ICR_HIGH, sentinel);
	irq_send_self_ipi((unsigned)v);
	high = lapic_read(LAPIC_ICR_HIGH);
	lapic_write(LAPIC_ICR_HIGH, saved);
	KT_EXPECT_EQ(self_ipi_hits, 0);
	irq_enable();
	t0 = rdtsc();
	while (!self_ipi_hits && rdtsc() - t0 < ns_to_tsc(1000000000u))
		cpu_relax();
	irq_restore(flags);
	KT_EXPECT_EQ(high, sentinel);
	KT_EXPECT_EQ(self_ipi_hits, 1);
	KT_EXPECT_EQ(irq_count(cpu, (unsigned)v) - before, 1);
	KT_EXPECT_EQ(irq_unregister((unsigned)v), 0);
}

/* --- the irq_work vector's lean entry (entry.S irq_work_entry) ---------------- */

/*
 * The lean entry from ring 3: CPU 1 spins in user mode while CPU 0 sends it
 * IRQ_WORK_VECTOR again and again.  Each must be counted on CPU 1, and the
 * task must go on counting and exit normally: an entry that got SWAPGS
 * wrong on either side would run C on the user's GS base, or return to
 * ring 3 with the kernel's, and the next kernel entry would fault.  (Broken
 * on purpose: without the SWAPGS of irq_work_from_user, this test panics
 * the kernel at its first IPI.)
 */
#define LEAN_USER_IPIS	200

KTEST(apic, irq_work_entry_from_user_mode)
{
	const unsigned target = 1;
	struct task *t;
	uint64_t before, t0, count;
	unsigned sent = 0;

	if (!lapic_ready())
		KT_SKIP("no local APIC");
	if (cpus_possible < 2 || !percpu_area[target].online)
		KT_SKIP("needs CPU 1");
	user_spin.stop = 0;
	user_spin.count = 0;
	t = task_create_user("ktest-lean-user", user_prog_spin, 0, (int)target);
	KT_ASSERT_TRUE(t != NULL);
	t0 = rdtsc();
	while (!user_spin.count && rdtsc() - t0 < ns_to_tsc(1000000000u))
		cpu_relax();
	KT_EXPECT_GT(user_spin.count, 0);

	before = irq_count(target, IRQ_WORK_VECTOR);
	for (; sent < LEAN_USER_IPIS; sent++) {
		lapic_send_ipi(percpu_area[target].apic_id, IRQ_WORK_VECTOR);
		t0 = rdtsc();
		while (irq_count(target, IRQ_WORK_VECTOR) - before < sent + 1 &&
		       rdtsc() - t0 < ns_to_tsc(100000000u))
			cpu_relax();
		if (irq_count(target, IRQ_WORK_VECTOR) - before < sent + 1)
			break;
	}
	KT_EXPECT_EQ(sent, LEAN_USER_IPIS);

	count = user_spin.count;
	t0 = rdtsc();
	while (user_spin.count == count && rdtsc() - t0 < ns_to_tsc(1000000000u))
		cpu_relax();
	KT_EXPECT_GT(user_spin.count, count);
	user_spin.stop = 1;
	KT_EXPECT_EQ(task_wait(t, NULL), USER_SPIN_EXIT);
}

/*
 * Preemption on the way out of the lean entry: an irq_work callback sets
 * need_resched, and the task it interrupted (this one, preemptible, with
 * interrupts just enabled) must be switched away before it runs another
 * instruction: the kernel thread queued behind it has run by the time the
 * instruction after STI's shadow reads its flag.  That goes through
 * irq_work_interrupt()'s "exit hook due" return and the full-frame
 * re-entry to irq_exit_check().  (Broken on purpose: with the entry
 * ignoring that return value, the flag reads 0 here.)
 */
static volatile unsigned lean_other_ran;

static void lean_other_task(void *arg)
{
	(void)arg;
	lean_other_ran = 1;
}

static void lean_resched_fn(struct irq_work *w)
{
	(void)w;
	this_cpu()->need_resched = 1;
}

static struct irq_work lean_resched_item = IRQ_WORK_INIT(lean_resched_fn, 0);

KTEST(apic, irq_work_entry_preempts_on_return)
{
	uint64_t flags;
	unsigned seen;
	struct task *t;

	if (!lapic_ready())
		KT_SKIP("no local APIC");
	if (preempt_count() != 0 || !irqs_enabled())
		KT_SKIP("the test task cannot be preempted here");
	lean_other_ran = 0;
	flags = irq_save();
	t = task_create_kernel("ktest-lean-other", lean_other_task, NULL, (int)this_cpu_id());
	if (!t) {
		irq_restore(flags);
		KT_FAIL("cannot create the kernel thread");
		return;
	}
	irq_work_queue(&lean_resched_item);
	/* The IPI is taken after the NOP (STI's shadow), before the load. */
	__asm__ volatile("sti; nop" ::: "memory");
	seen = lean_other_ran;
	irq_restore(flags);
	KT_EXPECT_EQ(seen, 1);
	KT_EXPECT_EQ(task_wait(t, NULL), 0);
}

/*
 * irq_work_interrupt() runs irq_work itself and writes the EOI itself (no
 * handler-table call, no EOI callback).  Many self IPIs in a row: each must
 * arrive, which it cannot if the one before was not EOIed (the vector's ISR
 * bit would block it); each is counted once on the vector; its callback
 * runs inside the IRQ (in_irq()) with interrupts off; and the vector is
 * still named in the table that `irq` prints.  (Broken on purpose: without
 * the EOI write the second IPI never arrives and the test fails.)
 */
#define DIRECT_ROUNDS	50

static volatile unsigned direct_runs, direct_bad_ctx;

static void direct_fn(struct irq_work *w)
{
	(void)w;
	if (irqs_enabled() || !in_irq())
		direct_bad_ctx++;
	direct_runs++;
}

static struct irq_work direct_item = IRQ_WORK_INIT(direct_fn, 0);

KTEST(apic, irq_work_vector_runs_items_and_eois_itself)
{
	const char *name = irq_name(IRQ_WORK_VECTOR);
	uint64_t flags, before, t0;
	unsigned cpu, arrived = 0;

	if (!lapic_ready())
		KT_SKIP("no local APIC");
	KT_ASSERT_TRUE(name != NULL);
	KT_EXPECT_STREQ(name, "irq_work");
	direct_runs = direct_bad_ctx = 0;
	flags = irq_save();
	cpu = this_cpu_id();
	before = irq_count(cpu, IRQ_WORK_VECTOR);
	for (unsigned i = 0; i < DIRECT_ROUNDS; i++) {
		irq_disable();
		if (!irq_work_queue(&direct_item)) {
			irq_enable();
			break;		/* still pending: the last IPI never came */
		}
		irq_enable();
		t0 = rdtsc();
		while (direct_runs == i && rdtsc() - t0 < ns_to_tsc(200000000u))
			cpu_relax();
		if (direct_runs != i + 1)
			break;
		arrived++;
	}
	irq_restore(flags);
	KT_EXPECT_EQ(arrived, DIRECT_ROUNDS);
	KT_EXPECT_EQ(direct_bad_ctx, 0);
	KT_EXPECT_EQ(irq_count(cpu, IRQ_WORK_VECTOR) - before, DIRECT_ROUNDS);
	irq_work_sync(&direct_item);
}
