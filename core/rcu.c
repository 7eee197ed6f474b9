/*
 * rcu.c: nmikit's RCU.  Readers run with preemption off; a grace period
 * ends once every CPU has passed a quiescent state after it began; call_rcu
 * callbacks run from a per-CPU thread after a grace period.
 *
 * Quiescent states, per CPU:
 *  - a context switch (rcu_note_context_switch): the scheduler runs only
 *    with preemption enabled, so no reader is running on that CPU;
 *  - a tick that interrupted user mode or preemptible kernel code
 *    (rcu_tick(true)): same argument, without waiting for a switch;
 *  - idle (or user mode, for a kernel that says so), seen through the
 *    dynticks counter of core/rcu_nmi.c: a snapshot that was even, or a
 *    counter that has moved since the snapshot;
 *  - for an offline CPU, which runs nothing but NMIs: not being inside an
 *    NMI that began before the grace period.
 * NMI handlers are readers without calling anything: an NMI is never
 * preempted and takes no tick, so the first two cannot happen under it, and
 * rcu_nmi_enter() makes the counter odd before the handler runs.
 *
 * The grace-period machine is driven by whoever waits for it: every caller
 * of synchronize_rcu() polls (rcu_gp_poll) under a short lock that is never
 * held across a sleep, so a waiter that cannot sleep (early boot, interrupts
 * off) never waits for a waiter that sleeps.  docs/rcu-nmi.md has the
 * memory-ordering argument.
 */
#include <nmikit/compiler.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>
#include <nmikit/param.h>
#include <nmikit/rcu.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool rcu_torture_broken_sync = false;
NK_PARAM_BOOL("rcu_torture_broken_sync", rcu_torture_broken_sync,
	      "DEMONSTRATION ONLY: synchronize_rcu returns without waiting, so the RCU torture must report use-after-poison");

uint64_t rcu_stall_ms = 10000;
NK_PARAM_UINT("rcu_stall_ms", rcu_stall_ms, 10, 600000,
	      "warn when a CPU has held up a grace period for this many ms");

struct rcu_cpu {
	/* Quiescent states passed; each bump is a full barrier. */
	_Atomic uint64_t qs_seq;
	/* rcu_read_lock() nesting; this CPU only (NMIs nest balanced). */
	_Atomic long read_depth;
	/* call_rcu() list: this CPU only, with interrupts off. */
	struct rcu_head *cb_head, *cb_tail;
	_Atomic uint64_t cb_queued, cb_done;
	_Atomic uint64_t qs_switch, qs_tick;
} NK_CACHE_ALIGNED;

static struct rcu_cpu rcu_cpus[NMIKIT_MAX_CPUS];

/*
 * Grace-period state.  rcu_gp_seq: completed grace periods times 2, plus 1
 * while one is running.  Everything below it is protected by rcu_gp_lock,
 * taken with interrupts off for one bounded scan of the CPUs, never across
 * a sleep.  NMI code never takes it.
 */
static _Atomic uint64_t rcu_gp_seq;
static atomic_flag rcu_gp_lock = ATOMIC_FLAG_INIT;
static uint64_t rcu_gp_start_ns;
static bool rcu_gp_stall_warned;
static uint64_t rcu_gp_dt_snap[NMIKIT_MAX_CPUS];
static uint64_t rcu_gp_qs_snap[NMIKIT_MAX_CPUS];
static uint64_t rcu_gp_nmi_snap[NMIKIT_MAX_CPUS];
static bool rcu_gp_pending[NMIKIT_MAX_CPUS];

static _Atomic uint64_t rcu_gp_waits;
static _Atomic uint64_t rcu_gp_longest_ns;
static _Atomic uint64_t rcu_stalls;

/* --- readers ------------------------------------------------------------- */

/* NMI-safe: yes (preemption count and this CPU's depth move up, then down). */
void rcu_read_lock(void)
{
	struct rcu_cpu *c;
	long d;

	os_preempt_disable();
	c = &rcu_cpus[os_cpu_id()];
	d = atomic_load_explicit(&c->read_depth, memory_order_relaxed);
	atomic_store_explicit(&c->read_depth, d + 1, memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
	if (NK_UNLIKELY(d == 0 && !rcu_is_watching()))
		rcu_warn(RCU_WARN_READ_UNWATCHED,
			 "rcu_read_lock while RCU is not watching this CPU (idle)");
}

/* NMI-safe: yes. */
void rcu_read_unlock(void)
{
	struct rcu_cpu *c = &rcu_cpus[os_cpu_id()];
	long d;

	atomic_signal_fence(memory_order_seq_cst);
	d = atomic_load_explicit(&c->read_depth, memory_order_relaxed);
	atomic_store_explicit(&c->read_depth, d - 1, memory_order_relaxed);
	os_preempt_enable();
}

/* NMI-safe: yes. */
bool rcu_read_lock_held(void)
{
	return atomic_load_explicit(&rcu_cpus[os_cpu_id()].read_depth, memory_order_relaxed) > 0;
}

/* --- quiescent states ---------------------------------------------------- */

/*
 * This CPU is in no reader: publish it.  The full barrier orders every
 * access of the readers that ended before it ahead of the bump (so once a
 * grace period sees it, those readers are done), and the bump ahead of the
 * readers that follow (which then see whatever the updater stored before
 * the grace period began).
 */
static void rcu_qs(struct rcu_cpu *c)
{
	atomic_fetch_add_explicit(&c->qs_seq, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
}

void rcu_note_context_switch(void)
{
	struct rcu_cpu *c = &rcu_cpus[os_cpu_id()];

	if (NK_UNLIKELY(!rcu_is_watching()))
		rcu_warn(RCU_WARN_SWITCH_UNWATCHED, "context switch while RCU is not watching this CPU");
	rcu_qs(c);
	nk_stat_inc(&c->qs_switch);
}

void rcu_tick(bool quiescent)
{
	struct rcu_cpu *c = &rcu_cpus[os_cpu_id()];

	if (!quiescent)
		return;
	rcu_qs(c);
	nk_stat_inc(&c->qs_tick);
}

/* --- grace periods ------------------------------------------------------- */

static bool rcu_seq_done(uint64_t cur, uint64_t target)
{
	return (int64_t)(cur - target) >= 0;
}

static os_irqflags_t rcu_gp_lock_take(void)
{
	os_irqflags_t flags = os_local_irq_save();

	while (atomic_flag_test_and_set_explicit(&rcu_gp_lock, memory_order_acquire))
		os_cpu_relax();
	return flags;
}

static void rcu_gp_lock_drop(os_irqflags_t flags)
{
	atomic_flag_clear_explicit(&rcu_gp_lock, memory_order_release);
	os_local_irq_restore(flags);
}

/*
 * Whether `cpu` need not hold the running grace period up any longer.
 * `me`: the CPU running this code, which is in no reader right now.  A CPU
 * parked for good by a panic shootdown will never read anything again.
 *
 * An offline CPU (the kernel parks it with interrupts off, running no task
 * and taking no tick) passes no quiescent state of its own, but its only
 * readers are NMI handlers: it is quiescent unless an NMI that began before
 * the grace period is still running there, which the NMI core's per-CPU
 * sequence counter tells (odd inside nmi_entry(), bumped with a full
 * barrier before any chain is walked: the same store-buffering pair as
 * dynticks).
 */
static bool rcu_cpu_quiescent(unsigned cpu, unsigned me)
{
	if (cpu == me || nmi_cpu_parked(cpu))
		return true;
	if (rcu_dynticks_quiescent_since(cpu, rcu_gp_dt_snap[cpu]))
		return true;
	if (atomic_load_explicit(&rcu_cpus[cpu].qs_seq, memory_order_acquire) != rcu_gp_qs_snap[cpu])
		return true;
	if (!os_cpu_online(cpu))
		return !(rcu_gp_nmi_snap[cpu] & 1) || nmi_seq(cpu) != rcu_gp_nmi_snap[cpu];
	return false;
}

/* Lock held.  The grace period begins: from here on every CPU must pass a QS. */
static void rcu_gp_start(unsigned me)
{
	unsigned ncpus = os_cpu_count();

	atomic_store_explicit(&rcu_gp_seq, atomic_load_explicit(&rcu_gp_seq, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	/* Everything the callers stored before (the unlinks) precedes the snapshots. */
	atomic_thread_fence(memory_order_seq_cst);
	rcu_gp_start_ns = os_timestamp_ns();
	rcu_gp_stall_warned = false;
	for (unsigned cpu = 0; cpu < ncpus && cpu < NMIKIT_MAX_CPUS; cpu++) {
		rcu_gp_dt_snap[cpu] = rcu_dynticks_snap(cpu);
		rcu_gp_qs_snap[cpu] = atomic_load_explicit(&rcu_cpus[cpu].qs_seq, memory_order_acquire);
		rcu_gp_nmi_snap[cpu] = nmi_seq(cpu);
		rcu_gp_pending[cpu] = !rcu_cpu_quiescent(cpu, me);
	}
}

/* Lock held.  One CPU has held the grace period up for rcu_stall_ms. */
static void rcu_gp_stall(uint64_t now)
{
	unsigned ncpus = os_cpu_count();

	rcu_gp_stall_warned = true;
	nk_atomic_inc(&rcu_stalls);
	for (unsigned cpu = 0; cpu < ncpus && cpu < NMIKIT_MAX_CPUS; cpu++)
		if (rcu_gp_pending[cpu])
			nk_log(NK_LOG_WARNING,
			       "rcu: INFO: CPU %u has passed no quiescent state for %llu ms (dynticks %llu, nesting %ld)\n",
			       cpu, (unsigned long long)((now - rcu_gp_start_ns) / 1000000),
			       (unsigned long long)rcu_dynticks_read(cpu), rcu_nmi_nesting_read(cpu));
}

/*
 * Move the grace-period machine on: start a grace period if none is
 * running, or look at the CPUs it still waits for and end it when there
 * are none.  Never blocks beyond the short lock.
 */
static void rcu_gp_poll(void)
{
	os_irqflags_t flags = rcu_gp_lock_take();
	unsigned me = os_cpu_id();
	unsigned ncpus = os_cpu_count();
	bool waiting = false;
	uint64_t now;

	if (!(atomic_load_explicit(&rcu_gp_seq, memory_order_relaxed) & 1))
		rcu_gp_start(me);
	for (unsigned cpu = 0; cpu < ncpus && cpu < NMIKIT_MAX_CPUS; cpu++) {
		if (!rcu_gp_pending[cpu])
			continue;
		if (rcu_cpu_quiescent(cpu, me))
			rcu_gp_pending[cpu] = false;
		else
			waiting = true;
	}
	now = os_timestamp_ns();
	if (!waiting) {
		/* Every reader of the old state is done before anything after this. */
		atomic_thread_fence(memory_order_seq_cst);
		nk_atomic_max_u64(&rcu_gp_longest_ns, now - rcu_gp_start_ns);
		atomic_store_explicit(&rcu_gp_seq,
				      atomic_load_explicit(&rcu_gp_seq, memory_order_relaxed) + 1,
				      memory_order_release);
	} else if (!rcu_gp_stall_warned && now - rcu_gp_start_ns > rcu_stall_ms * 1000000ull) {
		rcu_gp_stall(now);
	}
	rcu_gp_lock_drop(flags);
}

void synchronize_rcu(void)
{
	uint64_t target;

	if (NK_UNLIKELY(rcu_read_lock_held() || nmi_in_nmi())) {
		rcu_warn(RCU_WARN_SYNC_IN_READER,
			 "synchronize_rcu inside a read-side critical section or an NMI");
		return;
	}
	if (rcu_torture_broken_sync)
		return;		/* the demonstration switch: see rcu.h */

	/*
	 * The first grace period that starts after this point: the next one
	 * if none is running, else the one after the running one (which may
	 * have taken its snapshots before our caller's stores).
	 */
	atomic_thread_fence(memory_order_seq_cst);
	target = (atomic_load_explicit(&rcu_gp_seq, memory_order_acquire) + 3) & ~(uint64_t)1;
	for (;;) {
		rcu_gp_poll();
		if (rcu_seq_done(atomic_load_explicit(&rcu_gp_seq, memory_order_acquire), target))
			break;
		nk_atomic_inc(&rcu_gp_waits);
		os_rcu_wait();
	}
	/* The caller's next stores (poisoning, freeing) come after all of it. */
	atomic_thread_fence(memory_order_seq_cst);
}

/* --- callbacks ----------------------------------------------------------- */

void call_rcu(struct rcu_head *head, void (*func)(struct rcu_head *head))
{
	os_irqflags_t flags = os_local_irq_save();
	unsigned cpu = os_cpu_id();
	struct rcu_cpu *c = &rcu_cpus[cpu];
	bool was_empty = c->cb_head == NULL;

	head->next = NULL;
	head->func = func;
	if (c->cb_tail)
		c->cb_tail->next = head;
	else
		c->cb_head = head;
	c->cb_tail = head;
	nk_atomic_inc(&c->cb_queued);
	if (was_empty)
		os_rcu_kick_callbacks(cpu);
	os_local_irq_restore(flags);
}

bool rcu_callbacks_pending(unsigned cpu)
{
	if (cpu >= NMIKIT_MAX_CPUS)
		return false;
	return __atomic_load_n(&rcu_cpus[cpu].cb_head, __ATOMIC_RELAXED) != NULL;
}

bool rcu_do_batch(void)
{
	os_irqflags_t flags = os_local_irq_save();
	struct rcu_cpu *c = &rcu_cpus[os_cpu_id()];
	struct rcu_head *list = c->cb_head;
	uint64_t n = 0;

	c->cb_head = c->cb_tail = NULL;
	os_local_irq_restore(flags);
	if (!list)
		return false;

	synchronize_rcu();
	while (list) {
		struct rcu_head *next = list->next;

		list->func(list);
		list = next;
		n++;
	}
	atomic_fetch_add_explicit(&c->cb_done, n, memory_order_release);
	return true;
}

void rcu_barrier(void)
{
	unsigned ncpus = os_cpu_count();

	for (unsigned cpu = 0; cpu < ncpus && cpu < NMIKIT_MAX_CPUS; cpu++) {
		struct rcu_cpu *c = &rcu_cpus[cpu];
		uint64_t want = atomic_load_explicit(&c->cb_queued, memory_order_acquire);
		uint64_t start = os_timestamp_ns();
		bool warned = false;

		while (!rcu_seq_done(atomic_load_explicit(&c->cb_done, memory_order_acquire), want)) {
			if (!warned && os_timestamp_ns() - start > rcu_stall_ms * 1000000ull) {
				nk_log(NK_LOG_WARNING,
				       "rcu: rcu_barrier still waiting for the callbacks of CPU %u\n", cpu);
				warned = true;
			}
			os_rcu_wait();
		}
	}
}

void rcu_get_stats(struct rcu_stats *out)
{
	unsigned ncpus = os_cpu_count();

	*out = (struct rcu_stats){
		.gp_seq = atomic_load_explicit(&rcu_gp_seq, memory_order_acquire) / 2,
		.gp_waits = nk_stat_read(&rcu_gp_waits),
		.gp_longest_ns = nk_stat_read(&rcu_gp_longest_ns),
		.stalls = nk_stat_read(&rcu_stalls),
	};
	for (unsigned cpu = 0; cpu < ncpus && cpu < NMIKIT_MAX_CPUS; cpu++) {
		out->qs_switch += nk_stat_read(&rcu_cpus[cpu].qs_switch);
		out->qs_tick += nk_stat_read(&rcu_cpus[cpu].qs_tick);
		out->cb_queued += nk_stat_read(&rcu_cpus[cpu].cb_queued);
		out->cb_invoked += nk_stat_read(&rcu_cpus[cpu].cb_done);
	}
}
