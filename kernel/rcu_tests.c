/*
 * rcu_tests.c: in-kernel tests of nmikit's RCU (suite "rcu"): idle CPUs
 * are seen idle through their dynticks counters, NMIs and #BP/#DB/#MC
 * hooks that interrupt idle run watched, an NMI-only wake-up leaves the
 * CPU quiescent, a grace period waits for thread
 * readers, for NMI handlers that came from idle and for a running handler
 * being unregistered, busy kernel code and ring-3 code pass quiescent states
 * by the tick, rcu_user_enter() makes a CPU quiescent, and call_rcu runs its
 * callbacks on their CPU after a grace period.  The torture is in
 * rcu_torture.c.
 */
#include <stdatomic.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/traps.h>
#include <kernel/irq.h>
#include <kernel/ktest.h>
#include <kernel/rcu_setup.h>
#include <kernel/sched.h>
#include <kernel/user_programs.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>
#include <nmikit/rcu.h>

/* Defined first so that it runs last (cases run in reverse order of definition). */
KTEST(rcu, no_invariant_warnings_and_no_stalls)
{
	struct rcu_stats s;

	rcu_get_stats(&s);
	kt_diag("%llu grace periods, longest %llu us, %llu context-switch and %llu tick quiescent states",
		(unsigned long long)s.gp_seq, (unsigned long long)(s.gp_longest_ns / 1000),
		(unsigned long long)s.qs_switch, (unsigned long long)s.qs_tick);
	KT_EXPECT_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
	KT_EXPECT_EQ(s.stalls, 0);
	KT_EXPECT_GT(s.gp_seq, 0);
}

/* An online CPU other than the caller's, or -1 when there is none. */
static int other_cpu(void)
{
	unsigned me = this_cpu_id();

	for (unsigned i = 1; i < cpus_possible; i++) {
		unsigned c = (me + i) % cpus_possible;
		if (cpu_data(c)->online)
			return (int)c;
	}
	return -1;
}

/* Wait (sleeping a tick at a time) until cond or ms milliseconds; true if cond. */
#define WAIT_FOR(cond, ms) ({							\
		uint64_t wf_end_ = os_timestamp_ns() + (ms) * 1000000ull;	\
		bool wf_ok_;							\
		while (!(wf_ok_ = (cond)) && os_timestamp_ns() < wf_end_)	\
			sleep_ms(1);						\
		wf_ok_;								\
	})

static uint64_t ms_since(uint64_t t0)
{
	return (os_timestamp_ns() - t0) / 1000000;
}

/* --- idle CPUs ------------------------------------------------------------ */

static void noop_thread(void *arg)
{
	(void)arg;
}

KTEST(rcu, idle_cpus_are_seen_idle)
{
	int cpu = other_cpu();
	if (cpu < 0)
		KT_SKIP("needs a second CPU");
	uint64_t d0 = rcu_dynticks_read((unsigned)cpu);
	bool seen_even = WAIT_FOR(!(rcu_dynticks_read((unsigned)cpu) & 1), 1000);
	/*
	 * Work for it: each thread takes it out of idle and back.  (A tick
	 * with nothing to run does not: the idle loop stays quiescent.)
	 */
	for (int i = 0; i < 2; i++) {
		struct task *t = task_create_kernel("rcu-noop", noop_thread, NULL, cpu);
		KT_ASSERT_NOT_NULL(t);
		task_wait(t, NULL);
	}
	bool moved = WAIT_FOR(rcu_dynticks_read((unsigned)cpu) >= d0 + 4, 2000);

	kt_diag("CPU %d dynticks %llu -> %llu", cpu, (unsigned long long)d0,
		(unsigned long long)rcu_dynticks_read((unsigned)cpu));
	KT_EXPECT_TRUE(seen_even);	/* idle: RCU does not watch it */
	KT_EXPECT_TRUE(moved);		/* and it leaves idle for work, and goes back */
	KT_EXPECT_TRUE(rcu_is_watching());
	KT_EXPECT_EQ(rcu_nmi_nesting_read(this_cpu_id()), RCU_NESTING_NONIDLE);
	KT_EXPECT_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

/* --- NMIs and exceptions from idle ---------------------------------------- */

static atomic_ulong nmi_pending, nmi_seen, nmi_unwatched;

/* NMI context: claims the test's NMIs and records whether RCU watched. */
static int watch_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	unsigned long n = atomic_exchange(&nmi_pending, 0);
	if (!n)
		return NMI_DONE;
	atomic_fetch_add(&nmi_seen, 1);
	if (!rcu_is_watching())
		atomic_fetch_add(&nmi_unwatched, 1);
	return (int)n;
}

KTEST(rcu, nmi_from_idle_is_watched)
{
	int cpu = other_cpu();
	if (cpu < 0)
		KT_SKIP("needs a second CPU");
	KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "rcu-watch", watch_handler, 0), NMI_OK);
	uint64_t idle0 = rcu_nmi_from_idle((unsigned)cpu);
	unsigned sent = 0;
	for (int i = 0; i < 20; i++) {
		/* Let it go back to sleep, then wake it with an NMI. */
		WAIT_FOR(!(rcu_dynticks_read((unsigned)cpu) & 1), 100);
		atomic_fetch_add(&nmi_pending, 1);
		os_send_nmi((unsigned)cpu);
		sent++;
		WAIT_FOR(atomic_load(&nmi_pending) == 0, 100);
	}
	nmi_unregister(NMI_LOCAL, "rcu-watch");
	kt_diag("CPU %d: %u NMIs sent, %lu handled, %llu entered from idle", cpu, sent,
		atomic_load(&nmi_seen),
		(unsigned long long)(rcu_nmi_from_idle((unsigned)cpu) - idle0));
	unsigned long seen = atomic_load(&nmi_seen), unwatched = atomic_load(&nmi_unwatched);
	KT_EXPECT_GT(seen, 0);
	KT_EXPECT_EQ(unwatched, 0);
	KT_EXPECT_GT(rcu_nmi_from_idle((unsigned)cpu) - idle0, 0);
	KT_EXPECT_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

/*
 * An NMI that wakes an idle CPU with nothing to do leaves the CPU in its
 * extended quiescent state: the idle loop looks for work while still
 * quiescent and halts again (kernel/sched.c, sched_idle).  Each NMI from
 * idle moves dynticks by exactly 2 (its rcu_nmi_enter/exit); each time
 * the idle loop leaves and re-enters the quiescent state moves it by 2
 * more.  An idle loop that leaves it on every wake-up (as it did before)
 * makes at least one exit per NMI from idle, and fails here.
 */
KTEST(rcu, nmi_wakeup_keeps_idle_quiescent)
{
	int cpu = other_cpu();
	if (cpu < 0)
		KT_SKIP("needs a second CPU");
	KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "rcu-quiet", watch_handler, 0), NMI_OK);
	WAIT_FOR(!(rcu_dynticks_read((unsigned)cpu) & 1), 1000);
	unsigned long seen0 = atomic_load(&nmi_seen);
	uint64_t d0 = rcu_dynticks_read((unsigned)cpu), f0 = rcu_nmi_from_idle((unsigned)cpu);
	for (int i = 0; i < 32; i++) {
		atomic_fetch_add(&nmi_pending, 1);
		os_send_nmi((unsigned)cpu);
		uint64_t end = os_timestamp_ns() + 100 * 1000000ull;
		while (atomic_load(&nmi_pending) && os_timestamp_ns() < end)
			cpu_relax();
	}
	uint64_t moves = rcu_dynticks_read((unsigned)cpu) - d0;
	uint64_t from_idle = rcu_nmi_from_idle((unsigned)cpu) - f0;
	unsigned long seen = atomic_load(&nmi_seen) - seen0;
	nmi_unregister(NMI_LOCAL, "rcu-quiet");
	/* An exit without its re-entry yet (odd end) counts as one. */
	uint64_t exits = moves >= 2 * from_idle ? (moves - 2 * from_idle + 1) / 2 : 0;
	kt_diag("CPU %d: 32 NMIs sent, %lu handled, %llu from idle; dynticks moved %llu: "
		"%llu idle-loop exits", cpu, seen, (unsigned long long)from_idle,
		(unsigned long long)moves, (unsigned long long)exits);
	KT_EXPECT_EQ(seen, 32);
	KT_EXPECT_GE(moves, 2 * from_idle);
	KT_EXPECT_GE(from_idle, 16);
	KT_EXPECT_LT(exits, from_idle / 2);
	KT_EXPECT_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

static atomic_ulong hook_calls, hook_watched;

static bool watch_hook(struct regs *r)
{
	(void)r;
	atomic_fetch_add(&hook_calls, 1);
	if (rcu_is_watching())
		atomic_fetch_add(&hook_watched, 1);
	return true;	/* int3/int $1/int $18 are traps: carry on after them */
}

/*
 * #BP (current stack), #DB and #MC (IST stacks): an exception that hits a
 * CPU RCU considers idle.  The test plays idle on its own CPU (interrupts
 * and preemption off, rcu_idle_enter) and raises each one with INT.
 */
KTEST(rcu, ist_entries_from_idle_are_watched)
{
	static const unsigned vectors[] = { X86_TRAP_BP, X86_TRAP_DB, X86_TRAP_MC };

	for (unsigned i = 0; i < 3; i++)
		KT_ASSERT_EQ(trap_set_handler(vectors[i], watch_hook), 0);
	uint64_t flags = irq_save();
	preempt_disable();
	unsigned me = this_cpu_id();
	uint64_t idle0 = rcu_nmi_from_idle(me);
	rcu_idle_enter();
	bool idle = !rcu_is_watching();
	__asm__ volatile("int3" ::: "memory");
	__asm__ volatile("int $1" ::: "memory");
	__asm__ volatile("int $18" ::: "memory");
	bool still_idle = !rcu_is_watching();
	rcu_idle_exit();
	uint64_t from_idle = rcu_nmi_from_idle(me) - idle0;
	preempt_enable_no_resched();
	irq_restore(flags);
	for (unsigned i = 0; i < 3; i++)
		trap_clear_handler(vectors[i], watch_hook);

	KT_EXPECT_TRUE(idle);
	KT_EXPECT_TRUE(still_idle);
	unsigned long calls = atomic_load(&hook_calls), watched = atomic_load(&hook_watched);
	KT_EXPECT_EQ(calls, 3);
	KT_EXPECT_EQ(watched, 3);
	KT_EXPECT_EQ(from_idle, 3);
	KT_EXPECT_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

/* --- grace periods wait for readers ---------------------------------------- */

struct reader_ctl {
	volatile bool go, in, done;
	volatile uint64_t hold_ms;
};

/* A thread reader: rcu_read_lock, spin (no sleep) hold_ms, note done, unlock. */
static void thread_reader(void *arg)
{
	struct reader_ctl *c = arg;

	while (!c->go)
		sleep_ms(1);
	rcu_read_lock();
	c->in = true;
	uint64_t end = os_timestamp_ns() + c->hold_ms * 1000000ull;
	while (os_timestamp_ns() < end)
		cpu_relax();
	c->done = true;
	rcu_read_unlock();
}

KTEST(rcu, grace_period_waits_for_a_thread_reader)
{
	static struct reader_ctl c;
	int cpu = other_cpu();
	if (cpu < 0)
		KT_SKIP("needs a second CPU");
	c = (struct reader_ctl){ .hold_ms = 60 };
	struct task *t = task_create_kernel("rcu-reader", thread_reader, &c, cpu);
	KT_ASSERT_NOT_NULL(t);
	c.go = true;
	KT_ASSERT_TRUE(WAIT_FOR(c.in, 1000));
	uint64_t t0 = os_timestamp_ns();
	synchronize_rcu();
	bool done_first = c.done;
	uint64_t ms = ms_since(t0);
	task_wait(t, NULL);
	kt_diag("synchronize_rcu took %llu ms against a 60 ms reader on CPU %d",
		(unsigned long long)ms, cpu);
	KT_EXPECT_TRUE(done_first);
}

static atomic_bool long_armed, long_in, long_done;

/* NMI context: when armed, a long handler (a reader) that the test times. */
static int long_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	if (!atomic_exchange(&long_armed, false))
		return NMI_DONE;
	atomic_store(&long_in, true);
	uint64_t end = os_timestamp_ns() + 20 * 1000000ull;
	while (os_timestamp_ns() < end)
		cpu_relax();
	atomic_store(&long_done, true);
	return NMI_HANDLED;
}

static bool run_long_nmi(int cpu, bool unregister, uint64_t *ms)
{
	atomic_store(&long_in, false);
	atomic_store(&long_done, false);
	/* Wait for the CPU to be idle, so the NMI enters from idle. */
	WAIT_FOR(!(rcu_dynticks_read((unsigned)cpu) & 1), 200);
	atomic_store(&long_armed, true);
	os_send_nmi((unsigned)cpu);
	while (!atomic_load(&long_in))
		cpu_relax();
	uint64_t t0 = os_timestamp_ns();
	if (unregister)
		nmi_unregister(NMI_LOCAL, "rcu-long");
	else
		synchronize_rcu();
	bool done_first = atomic_load(&long_done);
	*ms = ms_since(t0);
	return done_first;
}

KTEST(rcu, grace_period_waits_for_an_nmi_handler_from_idle)
{
	int cpu = other_cpu();
	uint64_t ms;
	if (cpu < 0)
		KT_SKIP("needs a second CPU");
	KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "rcu-long", long_handler, 0), NMI_OK);
	uint64_t idle0 = rcu_nmi_from_idle((unsigned)cpu);
	bool done_first = run_long_nmi(cpu, false, &ms);
	nmi_unregister(NMI_LOCAL, "rcu-long");
	kt_diag("synchronize_rcu took %llu ms against a 20 ms NMI handler on CPU %d (%llu NMIs from idle)",
		(unsigned long long)ms, cpu,
		(unsigned long long)(rcu_nmi_from_idle((unsigned)cpu) - idle0));
	KT_EXPECT_TRUE(done_first);
	KT_EXPECT_GT(rcu_nmi_from_idle((unsigned)cpu) - idle0, 0);
}

KTEST(rcu, nmi_unregister_waits_for_the_running_handler)
{
	int cpu = other_cpu();
	uint64_t ms;
	if (cpu < 0)
		KT_SKIP("needs a second CPU");
	KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "rcu-long", long_handler, 0), NMI_OK);
	bool done_first = run_long_nmi(cpu, true, &ms);
	kt_diag("nmi_unregister took %llu ms against the 20 ms handler it removed", (unsigned long long)ms);
	KT_EXPECT_TRUE(done_first);
}

/* --- quiescent states without sleeping -------------------------------------- */

static volatile bool spin_stop;
static volatile uint64_t spin_count;

/* Preemptible kernel code that never sleeps nor yields. */
static void kernel_spinner(void *arg)
{
	(void)arg;
	while (!spin_stop)
		if ((++spin_count & 4095) == 0)
			cpu_relax();
}

KTEST(rcu, busy_kernel_thread_is_quiescent_at_the_tick)
{
	int cpu = other_cpu();
	if (cpu < 0)
		KT_SKIP("needs a second CPU");
	spin_stop = false;
	struct task *t = task_create_kernel("rcu-spin", kernel_spinner, NULL, cpu);
	KT_ASSERT_NOT_NULL(t);
	KT_ASSERT_TRUE(WAIT_FOR(spin_count > 0, 1000));
	struct rcu_stats s0, s1;
	rcu_get_stats(&s0);
	uint64_t t0 = os_timestamp_ns();
	for (int i = 0; i < 5; i++)
		synchronize_rcu();
	uint64_t ms = ms_since(t0);
	bool running = !spin_stop && t->state == TASK_RUNNABLE;
	rcu_get_stats(&s1);
	spin_stop = true;
	task_wait(t, NULL);
	kt_diag("5 grace periods in %llu ms with CPU %d spinning; %llu tick quiescent states",
		(unsigned long long)ms, cpu, (unsigned long long)(s1.qs_tick - s0.qs_tick));
	KT_EXPECT_TRUE(running);
	KT_EXPECT_GT(s1.qs_tick, s0.qs_tick);
	KT_EXPECT_LT(ms, 5000);
}

KTEST(rcu, ring3_code_is_quiescent_at_the_tick)
{
	int cpu = other_cpu();
	if (cpu < 0)
		KT_SKIP("needs a second CPU");
	user_spin.count = 0;
	user_spin.stop = 0;
	struct task *u = task_create_user("rcu-u-spin", user_prog_spin, 0, cpu);
	KT_ASSERT_NOT_NULL(u);
	bool started = WAIT_FOR(user_spin.count > 0, 1000);
	uint64_t t0 = os_timestamp_ns();
	for (int i = 0; i < 3 && started; i++)
		synchronize_rcu();
	uint64_t ms = ms_since(t0);
	uint64_t count = user_spin.count;
	user_spin.stop = 1;
	int code = task_wait(u, NULL);
	kt_diag("3 grace periods in %llu ms with a ring-3 loop on CPU %d", (unsigned long long)ms, cpu);
	KT_EXPECT_TRUE(started);
	KT_EXPECT_EQ(code, USER_SPIN_EXIT);
	KT_EXPECT_GT(count, 0);
	KT_EXPECT_LT(ms, 5000);
}

struct eqs_ctl {
	volatile bool in, release;
	volatile bool watched_in_nmi;
};

/*
 * rcu_user_enter() on a CPU that then runs with interrupts off (so no tick
 * can report anything): only the dynticks counter can let a grace period
 * end.  An NMI in the middle must still be watched.
 */
static void eqs_thread(void *arg)
{
	struct eqs_ctl *c = arg;
	uint64_t flags = irq_save();

	rcu_user_enter();
	c->in = true;
	uint64_t end = os_timestamp_ns() + 3000 * 1000000ull;
	while (!c->release && os_timestamp_ns() < end)
		cpu_relax();
	rcu_user_exit();
	irq_restore(flags);
}

KTEST(rcu, rcu_user_enter_makes_the_cpu_quiescent)
{
	static struct eqs_ctl c;
	int cpu = other_cpu();
	if (cpu < 0)
		KT_SKIP("needs a second CPU");
	c = (struct eqs_ctl){ 0 };
	struct task *t = task_create_kernel("rcu-eqs", eqs_thread, &c, cpu);
	KT_ASSERT_NOT_NULL(t);
	KT_ASSERT_TRUE(WAIT_FOR(c.in, 1000));
	bool quiet = !(rcu_dynticks_read((unsigned)cpu) & 1);
	synchronize_rcu();
	bool still_in = !c.release && c.in;

	KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "rcu-watch", watch_handler, 0), NMI_OK);
	atomic_store(&nmi_unwatched, 0);
	atomic_store(&nmi_seen, 0);
	atomic_fetch_add(&nmi_pending, 1);
	os_send_nmi((unsigned)cpu);
	bool got = WAIT_FOR(atomic_load(&nmi_seen) > 0, 500);
	c.release = true;
	task_wait(t, NULL);
	nmi_unregister(NMI_LOCAL, "rcu-watch");

	KT_EXPECT_TRUE(quiet);
	KT_EXPECT_TRUE(still_in);	/* the grace period ended with the CPU still "in user" */
	KT_EXPECT_TRUE(got);
	unsigned long unwatched = atomic_load(&nmi_unwatched);
	KT_EXPECT_EQ(unwatched, 0);
	KT_EXPECT_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

/* --- call_rcu -------------------------------------------------------------- */

#define CB_PER_CPU 4

struct cb_item {
	struct rcu_head rh;
	unsigned queued_on;
	volatile int ran_on;
	volatile bool in_task;
	volatile uint64_t gp_at_queue, gp_at_run;
};

static struct cb_item cb_items[MAX_CPUS][CB_PER_CPU];
static atomic_uint cb_ran;

static uint64_t gp_now(void)
{
	struct rcu_stats s;
	rcu_get_stats(&s);
	return s.gp_seq;
}

static void cb_fn(struct rcu_head *h)
{
	struct cb_item *it = (struct cb_item *)((char *)h - __builtin_offsetof(struct cb_item, rh));

	it->ran_on = (int)this_cpu_id();
	it->in_task = !in_irq() && task_current() == rcu_callback_task(this_cpu_id());
	it->gp_at_run = gp_now();
	atomic_fetch_add(&cb_ran, 1);
}

static void cb_queuer(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;

	for (int i = 0; i < CB_PER_CPU; i++) {
		struct cb_item *it = &cb_items[cpu][i];
		it->queued_on = this_cpu_id();
		it->ran_on = -1;
		it->gp_at_queue = gp_now();
		call_rcu(&it->rh, cb_fn);
	}
}

KTEST(rcu, call_rcu_runs_on_the_queueing_cpu_after_a_grace_period)
{
	struct task *ts[MAX_CPUS] = { 0 };
	unsigned n = 0;

	atomic_store(&cb_ran, 0);
	for (unsigned c = 0; c < cpus_possible; c++) {
		if (!cpu_data(c)->online)
			continue;
		ts[c] = task_create_kernel("rcu-cbq", cb_queuer, (void *)(uintptr_t)c, (int)c);
		KT_ASSERT_NOT_NULL(ts[c]);
		n++;
	}
	for (unsigned c = 0; c < cpus_possible; c++)
		if (ts[c])
			task_wait(ts[c], NULL);
	rcu_barrier();
	unsigned ran = atomic_load(&cb_ran);
	KT_EXPECT_EQ(ran, n * CB_PER_CPU);
	for (unsigned c = 0; c < cpus_possible; c++) {
		if (!ts[c])
			continue;
		for (int i = 0; i < CB_PER_CPU; i++) {
			struct cb_item *it = &cb_items[c][i];
			KT_EXPECT_EQ(it->ran_on, (int)it->queued_on);
			KT_EXPECT_TRUE(it->in_task);
			KT_EXPECT_GT(it->gp_at_run, it->gp_at_queue);
		}
	}
	kt_diag("%u callbacks on %u CPUs", atomic_load(&cb_ran), n);
}
