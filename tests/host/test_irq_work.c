/*
 * Host unit tests of core/irq_work.c: the PENDING/BUSY claim, coalescing,
 * immediate vs lazy lists, re-queueing from the callback, queueing from NMI
 * context, irq_work_sync(), EXCLUSIVE items, and a two-thread stress run.
 */
#include "tap.h"
#include "test_os.h"

#include <nmikit/irq_work.h>
#include <nmikit/nmi.h>

#include <pthread.h>
#include <sched.h>
#include <string.h>

static unsigned runs[8];
static char run_order[64];
static unsigned nrun_order;
static bool irqs_off_in_callback = true;
static unsigned ran_on_cpu;

static struct irq_work items[8];

static unsigned index_of(struct irq_work *w)
{
	return (unsigned)(w - items);
}

static void count_run(struct irq_work *w)
{
	unsigned i = index_of(w);

	runs[i]++;
	if (nrun_order + 1 < sizeof(run_order))
		run_order[nrun_order++] = (char)('0' + i);
	run_order[nrun_order] = '\0';
	ran_on_cpu = tos_cpu;
	if (!tos_irqs_off(tos_cpu))
		irqs_off_in_callback = false;
	/* PENDING is already dropped while the callback runs; BUSY is not. */
	CHECK(!irq_work_is_pending(w));
	CHECK(irq_work_is_busy(w));
}

static struct irq_work_stats wstats(unsigned cpu)
{
	struct irq_work_stats s;

	CHECK(irq_work_get_stats(cpu, &s));
	return s;
}

static void immediate_item_raises_ipi_and_runs_from_irq_work_run(void)
{
	irq_work_init(&items[0], count_run, 0);
	CHECK(!irq_work_is_busy(&items[0]));
	CHECK(irq_work_queue(&items[0]));
	CHECK(irq_work_is_pending(&items[0]));
	CHECK(irq_work_is_busy(&items[0]));
	CHECK_EQ(tos_irq_work_raised(0), 1);
	CHECK_EQ(runs[0], 0);
	irq_work_run();
	CHECK_EQ(runs[0], 1);
	CHECK(irqs_off_in_callback);
	CHECK(!irq_work_is_pending(&items[0]));
	CHECK(!irq_work_is_busy(&items[0]));
	CHECK(!tos_irqs_off(0));
	irq_work_run();
	CHECK_EQ(runs[0], 1);
	CHECK_EQ(wstats(0).queued, 1);
	CHECK_EQ(wstats(0).run, 1);
	CHECK_EQ(wstats(0).raised, 1);
}

static void second_queue_while_pending_is_coalesced_and_counted(void)
{
	irq_work_init(&items[0], count_run, 0);
	CHECK(irq_work_queue(&items[0]));
	CHECK(!irq_work_queue(&items[0]));
	CHECK(!irq_work_queue(&items[0]));
	CHECK_EQ(wstats(0).coalesced, 2);
	CHECK_EQ(wstats(0).queued, 1);
	CHECK_EQ(tos_irq_work_raised(0), 1);
	irq_work_run();
	CHECK_EQ(runs[0], 1);
	/* Once run, it can be queued again. */
	CHECK(irq_work_queue(&items[0]));
	irq_work_run();
	CHECK_EQ(runs[0], 2);
}

static void lazy_item_waits_for_the_tick(void)
{
	irq_work_init(&items[1], count_run, IRQ_WORK_LAZY);
	CHECK(irq_work_queue(&items[1]));
	CHECK_EQ(tos_irq_work_raised(0), 0);
	irq_work_run();
	CHECK_EQ(runs[1], 0);
	irq_work_tick();
	CHECK_EQ(runs[1], 1);
	CHECK(irqs_off_in_callback);
	CHECK(!irq_work_is_busy(&items[1]));
}

static void one_ipi_for_several_items_run_in_queue_order(void)
{
	for (unsigned i = 0; i < 4; i++)
		irq_work_init(&items[i], count_run, 0);
	CHECK(irq_work_queue(&items[2]));
	CHECK(irq_work_queue(&items[0]));
	CHECK(irq_work_queue(&items[3]));
	CHECK(irq_work_queue(&items[1]));
	CHECK_EQ(tos_irq_work_raised(0), 1);
	irq_work_run();
	CHECK_STR(run_order, "2031");
	/* The list is empty again: the next item raises a new IPI. */
	CHECK(irq_work_queue(&items[0]));
	CHECK_EQ(tos_irq_work_raised(0), 2);
}

/*
 * irq_work_run_irqs_off(), the IPI entry's run: the caller has interrupts
 * off.  It runs a one-item list (the inline case), a several-item list in
 * queueing order, and an EXCLUSIVE single item (which must take the runner
 * slot: the inline case is only for non-EXCLUSIVE items), leaves the
 * caller's interrupt state alone, and drops BUSY after each callback.
 */
static void run_irqs_off_runs_single_and_listed_items(void)
{
	os_irqflags_t f;

	for (unsigned i = 0; i < 3; i++)
		irq_work_init(&items[i], count_run, 0);
	irq_work_init(&items[3], count_run, IRQ_WORK_EXCLUSIVE);
	f = os_local_irq_save();
	CHECK(irq_work_queue(&items[1]));
	irq_work_run_irqs_off();
	CHECK_STR(run_order, "1");
	CHECK(!irq_work_is_busy(&items[1]));
	CHECK(irq_work_queue(&items[2]));
	CHECK(irq_work_queue(&items[0]));
	CHECK(irq_work_queue(&items[1]));
	irq_work_run_irqs_off();
	CHECK_STR(run_order, "1201");
	CHECK(irq_work_queue(&items[3]));
	irq_work_run_irqs_off();
	CHECK_STR(run_order, "12013");
	CHECK(tos_irqs_off(0));
	os_local_irq_restore(f);
	CHECK(irqs_off_in_callback);
	for (unsigned i = 0; i < 4; i++)
		CHECK(!irq_work_is_busy(&items[i]));
	CHECK_EQ(wstats(0).run, 5);
	CHECK_EQ(wstats(0).queued, 5);
	CHECK_EQ(tos_irq_work_raised(0), 3);
}

static void tick_also_runs_immediate_items(void)
{
	irq_work_init(&items[0], count_run, 0);
	irq_work_init(&items[1], count_run, IRQ_WORK_LAZY);
	CHECK(irq_work_queue(&items[1]));
	CHECK(irq_work_queue(&items[0]));
	irq_work_tick();
	CHECK_STR(run_order, "01");
}

static unsigned requeues_left;

static void requeue_self(struct irq_work *w)
{
	count_run(w);
	if (requeues_left) {
		requeues_left--;
		CHECK(irq_work_queue(w));
		CHECK(irq_work_is_pending(w));
	}
}

static void item_requeued_from_its_own_callback_runs_again(void)
{
	irq_work_init(&items[0], requeue_self, 0);
	requeues_left = 1;
	CHECK(irq_work_queue(&items[0]));
	irq_work_run();
	CHECK_EQ(runs[0], 1);
	/* Still queued (and so still busy) after the first callback returned. */
	CHECK(irq_work_is_pending(&items[0]));
	CHECK(irq_work_is_busy(&items[0]));
	CHECK_EQ(tos_irq_work_raised(0), 2);
	irq_work_run();
	CHECK_EQ(runs[0], 2);
	CHECK(!irq_work_is_busy(&items[0]));
	CHECK_EQ(wstats(0).coalesced, 0);
}

static void lazy_item_requeued_from_callback_waits_for_next_tick(void)
{
	irq_work_init(&items[0], requeue_self, IRQ_WORK_LAZY);
	requeues_left = 5;
	CHECK(irq_work_queue(&items[0]));
	irq_work_tick();
	CHECK_EQ(runs[0], 1);
	irq_work_tick();
	CHECK_EQ(runs[0], 2);
	CHECK(irq_work_is_pending(&items[0]));
}

static bool queued_in_nmi;

static int h_queues(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	queued_in_nmi = irq_work_queue(&items[4]);
	return 1;
}

static void nmi_handler_can_queue_work_that_runs_after(void)
{
	nmi_lost_recovery = false;	/* keep the probe's own item out of the counts */
	irq_work_init(&items[4], count_run, 0);
	CHECK_EQ(nmi_register(NMI_LOCAL, "queues", h_queues, 0), NMI_OK);
	tos_nmi(0, 0x1000);
	CHECK(queued_in_nmi);
	CHECK_EQ(tos_irq_work_raised(0), 1);
	CHECK(irq_work_is_pending(&items[4]));
	/* A second NMI before the IPI is taken: coalesced. */
	tos_nmi(0, 0x1004);
	CHECK(!queued_in_nmi);
	CHECK_EQ(wstats(0).coalesced, 1);
	irq_work_run();
	CHECK_EQ(runs[4], 1);
	CHECK(!irq_work_is_busy(&items[4]));
}

static void items_run_on_the_cpu_that_queued_them(void)
{
	irq_work_init(&items[0], count_run, 0);
	tos_cpu = 2;
	CHECK(irq_work_queue(&items[0]));
	tos_cpu = 0;
	CHECK_EQ(tos_irq_work_raised(2), 1);
	CHECK_EQ(tos_irq_work_raised(0), 0);
	irq_work_run();
	irq_work_tick();
	CHECK_EQ(runs[0], 0);
	tos_cpu = 2;
	irq_work_run();
	tos_cpu = 0;
	CHECK_EQ(runs[0], 1);
	CHECK_EQ(ran_on_cpu, 2);
	CHECK_EQ(wstats(2).run, 1);
	CHECK_EQ(wstats(0).run, 0);
	{
		struct irq_work_stats s;

		CHECK(!irq_work_get_stats(NMIKIT_MAX_CPUS, &s));
		CHECK(!irq_work_get_stats(0, NULL));
	}
}

/* irq_work_sync(): CPU 1 runs its work while CPU 0 waits. */
static void cpu1_runs_work_on_relax(void)
{
	unsigned saved = tos_cpu;

	if (tos_relax_calls() < 3)
		return;
	tos_cpu = 1;
	irq_work_run();
	tos_cpu = saved;
}

static void sync_waits_while_item_is_busy(void)
{
	irq_work_init(&items[0], count_run, 0);
	irq_work_sync(&items[0]);
	CHECK_EQ(tos_relax_calls(), 0);

	tos_cpu = 1;
	CHECK(irq_work_queue(&items[0]));
	tos_cpu = 0;
	tos_relax_hook = cpu1_runs_work_on_relax;
	irq_work_sync(&items[0]);
	CHECK_EQ(runs[0], 1);
	CHECK_EQ(tos_relax_calls(), 3);
	CHECK(!irq_work_is_busy(&items[0]));
}

/* EXCLUSIVE: while the callback runs on CPU 0, CPU 1 queues and ticks. */
static unsigned running_now, max_running;

static void exclusive_fn(struct irq_work *w)
{
	unsigned saved = tos_cpu;

	running_now++;
	if (running_now > max_running)
		max_running = running_now;
	runs[index_of(w)]++;
	if (tos_cpu == 0 && runs[index_of(w)] == 1) {
		tos_cpu = 1;
		CHECK(irq_work_queue(w));
		irq_work_run();		/* finds it running on CPU 0 */
		irq_work_tick();	/* still running: deferred again */
		tos_cpu = saved;
	}
	running_now--;
}

static void exclusive_item_never_runs_on_two_cpus_at_once(void)
{
	irq_work_init(&items[0], exclusive_fn, IRQ_WORK_EXCLUSIVE);
	CHECK(irq_work_queue(&items[0]));
	irq_work_run();
	CHECK_EQ(max_running, 1);
	CHECK_EQ(runs[0], 1);
	CHECK_EQ(wstats(1).deferred, 2);
	CHECK(irq_work_is_pending(&items[0]));
	/* CPU 0 is done with it: CPU 1's next tick runs it. */
	tos_cpu = 1;
	irq_work_tick();
	tos_cpu = 0;
	CHECK_EQ(runs[0], 2);
	CHECK_EQ(max_running, 1);
	CHECK(!irq_work_is_busy(&items[0]));
	CHECK_EQ(wstats(1).run, 1);
}

static void static_initializer_matches_irq_work_init(void)
{
	struct irq_work a = IRQ_WORK_INIT(count_run, IRQ_WORK_LAZY);

	items[5] = a;
	CHECK(irq_work_queue(&items[5]));
	CHECK_EQ(tos_irq_work_raised(0), 0);
	irq_work_tick();
	CHECK_EQ(runs[5], 1);
}

/*
 * Stress: two real threads, CPUs 0 and 1, each queueing a shared pool of
 * items and running its lists.  Every successful queue is run exactly once.
 */
#define STRESS_ITEMS	8
#define STRESS_ROUNDS	200000

static struct irq_work stress_items[STRESS_ITEMS];
static atomic_ulong stress_runs, stress_queued;

static void stress_fn(struct irq_work *w)
{
	(void)w;
	atomic_fetch_add(&stress_runs, 1);
}

static void *stress_cpu(void *arg)
{
	unsigned cpu = (unsigned)(unsigned long)arg;
	unsigned x = cpu * 7919 + 1;

	tos_cpu = cpu;
	for (unsigned r = 0; r < STRESS_ROUNDS; r++) {
		x = x * 1103515245 + 12345;
		if (irq_work_queue(&stress_items[(x >> 16) % STRESS_ITEMS]))
			atomic_fetch_add(&stress_queued, 1);
		if ((x >> 8) % 4 == 0)
			irq_work_tick();
	}
	irq_work_tick();
	return NULL;
}

static void two_cpus_queue_shared_items_each_queue_runs_once(void)
{
	pthread_t t[2];

	for (unsigned i = 0; i < STRESS_ITEMS; i++)
		irq_work_init(&stress_items[i], stress_fn, i % 2 ? IRQ_WORK_LAZY : 0);
	for (unsigned long c = 0; c < 2; c++)
		CHECK_EQ(pthread_create(&t[c], NULL, stress_cpu, (void *)c), 0);
	for (unsigned c = 0; c < 2; c++)
		pthread_join(t[c], NULL);
	CHECK_EQ(atomic_load(&stress_runs), atomic_load(&stress_queued));
	CHECK_EQ(wstats(0).queued + wstats(1).queued, atomic_load(&stress_queued));
	CHECK_EQ(wstats(0).queued + wstats(1).queued + wstats(0).coalesced +
		 wstats(1).coalesced, 2ull * STRESS_ROUNDS);
	for (unsigned i = 0; i < STRESS_ITEMS; i++)
		CHECK(!irq_work_is_busy(&stress_items[i]));
}

const struct tap_test irq_work_tests[] = {
	TAP_TEST(immediate_item_raises_ipi_and_runs_from_irq_work_run),
	TAP_TEST(second_queue_while_pending_is_coalesced_and_counted),
	TAP_TEST(lazy_item_waits_for_the_tick),
	TAP_TEST(one_ipi_for_several_items_run_in_queue_order),
	TAP_TEST(run_irqs_off_runs_single_and_listed_items),
	TAP_TEST(tick_also_runs_immediate_items),
	TAP_TEST(item_requeued_from_its_own_callback_runs_again),
	TAP_TEST(lazy_item_requeued_from_callback_waits_for_next_tick),
	TAP_TEST(nmi_handler_can_queue_work_that_runs_after),
	TAP_TEST(items_run_on_the_cpu_that_queued_them),
	TAP_TEST(sync_waits_while_item_is_busy),
	TAP_TEST(exclusive_item_never_runs_on_two_cpus_at_once),
	TAP_TEST(static_initializer_matches_irq_work_init),
	TAP_TEST(two_cpus_queue_shared_items_each_queue_runs_once),
	TAP_END,
};
