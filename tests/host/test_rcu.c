/*
 * Host unit tests of core/rcu_nmi.c and core/rcu.c: the dynticks / NMI
 * nesting counters step by step and under real asynchronous nesting (a
 * signal interrupting the counters at random instructions), every invariant
 * check, grace periods against busy, idle, offline CPUs and NMIs from idle,
 * call_rcu, nmi_unregister() waiting for a grace period, and a threaded
 * reader/writer run that must find no poisoned object (and must find one
 * with rcu_torture_broken_sync).
 *
 * Also the host's implementation of the RCU services of <nmikit/os.h>
 * (os_preempt_*, os_rcu_wait, os_rcu_kick_callbacks): they exist only for
 * core/rcu.c, so they live with its tests.
 */
#include "tap.h"
#include "test_os.h"

#include <nmikit/nmi.h>
#include <nmikit/rcu.h>

/* The counters themselves, to break them on purpose (core-private). */
#include <nmikit/rcu_nmi_inline.h>

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* --- the RCU services of os.h ------------------------------------------- */

static _Atomic long preempt_count[NMIKIT_MAX_CPUS];
static _Atomic unsigned kicks[NMIKIT_MAX_CPUS];
static _Atomic unsigned long waits;
/* Called on every os_rcu_wait() with the number of waits so far. */
static void (*wait_hook)(unsigned long n);
/* Threaded tests: really give the CPU away. */
static bool wait_yields;
/* Fake time that passes on every os_rcu_wait(). */
static uint64_t wait_advance_ns;

void os_preempt_disable(void)
{
	atomic_fetch_add(&preempt_count[tos_cpu], 1);
}

void os_preempt_enable(void)
{
	atomic_fetch_sub(&preempt_count[tos_cpu], 1);
}

void os_rcu_wait(void)
{
	unsigned long n = atomic_fetch_add(&waits, 1) + 1;

	tos_advance(wait_advance_ns);
	if (wait_hook)
		wait_hook(n);
	if (wait_yields)
		sched_yield();
	if (n > 1000000 && !wait_yields) {
		/* A grace period that never ends in a single-threaded test. */
		printf("# os_rcu_wait: a million waits, giving up\n");
		fflush(stdout);
		_exit(1);
	}
}

void os_rcu_kick_callbacks(unsigned cpu)
{
	atomic_fetch_add(&kicks[cpu], 1);
}

/* Run `fn` as CPU `cpu`, then go back to the CPU we were. */
#define AS_CPU(cpu, stmt) do {		\
	unsigned as_cpu_saved__ = tos_cpu;	\
	tos_cpu = (cpu);			\
	stmt;					\
	tos_cpu = as_cpu_saved__;		\
} while (0)

static uint64_t dt(unsigned cpu) { return rcu_dynticks_read(cpu); }
static long nest(unsigned cpu) { return rcu_nmi_nesting_read(cpu); }

/* Every CPU leaves the boot "idle" state, as the kernel's start-up does. */
static void all_cpus_running(void)
{
	for (unsigned c = 0; c < os_cpu_count(); c++)
		AS_CPU(c, rcu_idle_exit());
}

/* --- the counters, step by step ------------------------------------------ */

static void nmi_from_idle_turns_watching_on_and_off(void)
{
	CHECK_EQ(dt(0), 0);
	CHECK_EQ(nest(0), 0);
	CHECK(!rcu_is_watching());
	rcu_nmi_enter();
	CHECK(rcu_is_watching());
	CHECK_EQ(dt(0), 1);
	CHECK_EQ(nest(0), 1);
	rcu_nmi_exit();
	CHECK(!rcu_is_watching());
	CHECK_EQ(dt(0), 2);
	CHECK_EQ(nest(0), 0);
	CHECK_EQ(rcu_nmi_from_idle(0), 1);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

static void nested_nmis_from_idle_add_two(void)
{
	rcu_nmi_enter();
	rcu_nmi_enter();
	rcu_nmi_enter();
	CHECK_EQ(dt(0), 1);
	CHECK_EQ(nest(0), 5);
	rcu_nmi_exit();
	CHECK_EQ(nest(0), 3);
	rcu_nmi_exit();
	CHECK_EQ(nest(0), 1);
	CHECK_EQ(dt(0), 1);
	rcu_nmi_exit();
	CHECK_EQ(nest(0), 0);
	CHECK_EQ(dt(0), 2);
	CHECK_EQ(rcu_nmi_from_idle(0), 1);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

static void nmi_on_a_busy_cpu_moves_only_the_nesting(void)
{
	rcu_idle_exit();
	CHECK_EQ(dt(0), 1);
	CHECK_EQ(nest(0), RCU_NESTING_NONIDLE);
	rcu_nmi_enter();
	CHECK_EQ(nest(0), RCU_NESTING_NONIDLE + 2);
	rcu_nmi_enter();
	CHECK_EQ(nest(0), RCU_NESTING_NONIDLE + 4);
	rcu_nmi_exit();
	rcu_nmi_exit();
	CHECK_EQ(dt(0), 1);
	CHECK_EQ(nest(0), RCU_NESTING_NONIDLE);
	CHECK_EQ(rcu_nmi_from_idle(0), 0);
	rcu_idle_enter();
	CHECK_EQ(dt(0), 2);
	CHECK_EQ(nest(0), 0);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

static void user_mode_is_an_extended_quiescent_state(void)
{
	rcu_idle_exit();
	rcu_user_enter();
	CHECK(!rcu_is_watching());
	CHECK_EQ(dt(0), 2);
	rcu_nmi_enter();		/* an NMI that interrupted user mode */
	CHECK(rcu_is_watching());
	CHECK_EQ(nest(0), 1);
	rcu_nmi_exit();
	CHECK_EQ(dt(0), 4);
	rcu_user_exit();
	CHECK(rcu_is_watching());
	CHECK_EQ(nest(0), RCU_NESTING_NONIDLE);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

static void every_invariant_check_fires_and_warns_once(void)
{
	/* Exit without entry: nesting 0; touched nothing. */
	rcu_nmi_exit();
	rcu_nmi_exit();
	CHECK_EQ(rcu_warnings(RCU_WARN_EXIT_NESTING_ZERO), 2);
	CHECK_EQ(tos_log_count("nesting is 0"), 1);
	CHECK_EQ(dt(0), 0);
	CHECK_EQ(nest(0), 0);

	/* Idle twice, non-idle twice. */
	rcu_idle_enter();
	CHECK_EQ(rcu_warnings(RCU_WARN_EQS_ENTER), 1);
	rcu_idle_exit();
	rcu_idle_exit();
	CHECK_EQ(rcu_warnings(RCU_WARN_EQS_EXIT), 1);
	CHECK_EQ(dt(0), 1);
	CHECK_EQ(nest(0), RCU_NESTING_NONIDLE);

	/* A reader while idle. */
	rcu_idle_enter();
	rcu_read_lock();
	rcu_read_unlock();
	CHECK_EQ(rcu_warnings(RCU_WARN_READ_UNWATCHED), 1);
	CHECK(tos_log_has("rcu_read_lock while RCU is not watching"));

	/* A context switch while idle. */
	rcu_note_context_switch();
	CHECK_EQ(rcu_warnings(RCU_WARN_SWITCH_UNWATCHED), 1);

	/* Idle entry from inside an NMI handler is refused. */
	rcu_nmi_enter();
	CHECK_EQ(rcu_warnings(RCU_WARN_HANDLER_UNWATCHED), 0);
	rcu_idle_enter();	/* wrong: nesting is 1, not NONIDLE: refused */
	CHECK_EQ(rcu_warnings(RCU_WARN_EQS_ENTER), 2);
	rcu_nmi_exit();
	CHECK_EQ(rcu_warnings(RCU_WARN_IDLE_EXIT_ODD), 0);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 7);
	CHECK(tos_log_has("WARNING: rcu_nmi_exit: nesting is 0 (exit without entry) on CPU 0"));
}

/*
 * A handler that ran unwatched (the counter even inside it: some bug
 * incremented it) is reported at its exit, on both of the exit's branches.
 * On the last exit from idle the check is the value the exit's own
 * increment found (rcu_nmi_inline.h), which also says the increment left
 * the counter odd: both warnings.  Checked failing by making that branch
 * ignore the value (no warning, both counts 0).
 */
static void an_unwatched_handler_is_reported_at_its_exit(void)
{
	_Atomic uint64_t *counter = &rcu_dynticks_of(0)->dynticks;

	/* From idle. */
	rcu_nmi_enter();
	CHECK_EQ(dt(0), 1);
	CHECK_EQ(nest(0), 1);
	atomic_fetch_add(counter, 1);		/* the bug: even inside the handler */
	rcu_nmi_exit();
	CHECK_EQ(rcu_warnings(RCU_WARN_HANDLER_UNWATCHED), 1);
	CHECK_EQ(rcu_warnings(RCU_WARN_IDLE_EXIT_ODD), 1);
	CHECK(tos_log_has("rcu_nmi_exit: counter even inside the handler"));
	CHECK(tos_log_has("rcu_nmi_exit: counter odd after the outermost exit from idle"));
	CHECK_EQ(nest(0), 0);			/* the steps ran all the same */
	CHECK_EQ(dt(0), 3);

	/* Not from idle (EX_NST): only the first warning. */
	atomic_store(counter, 0);
	rcu_idle_exit();
	rcu_nmi_enter();
	CHECK_EQ(nest(0), RCU_NESTING_NONIDLE + 2);
	atomic_fetch_add(counter, 1);
	rcu_nmi_exit();
	CHECK_EQ(rcu_warnings(RCU_WARN_HANDLER_UNWATCHED), 2);
	CHECK_EQ(rcu_warnings(RCU_WARN_IDLE_EXIT_ODD), 1);
	CHECK_EQ(nest(0), RCU_NESTING_NONIDLE);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 3);
}

/* --- real asynchronous nesting: a signal at any instruction --------------- */

static _Atomic unsigned long sig_nmis, sig_bad;

/* The "NMI": enter, check, exit, and check it left both counters as found. */
static void sig_nmi(int sig)
{
	uint64_t d0 = dt(tos_cpu);
	long n0 = nest(tos_cpu);

	(void)sig;
	rcu_nmi_enter();
	if (!rcu_is_watching())
		atomic_fetch_add(&sig_bad, 1);
	rcu_nmi_exit();
	if (nest(tos_cpu) != n0 || (dt(tos_cpu) & 1) != (d0 & 1))
		atomic_fetch_add(&sig_bad, 1);
	atomic_fetch_add(&sig_nmis, 1);
}

static _Atomic bool sig_stop;
static pthread_t sig_target;

/*
 * At most 4 signals in flight: with SA_NODEFER each one nests inside the
 * last, so an unpaced sender against a slow (loaded) target recursed until
 * the stack overflowed (SIGSEGV in CI).  Four still nest at any instruction.
 */
static void *sig_sender(void *arg)
{
	unsigned long sent = 0;

	(void)arg;
	while (!atomic_load(&sig_stop)) {
		if (sent - atomic_load(&sig_nmis) >= 4) {
			sched_yield();
			continue;
		}
		pthread_kill(sig_target, SIGUSR1);
		sent++;
		for (volatile int i = 0; i < 200; i++)
			;
	}
	return NULL;
}

static void nesting_survives_nmis_at_random_instructions(void)
{
	struct sigaction sa = { .sa_handler = sig_nmi, .sa_flags = SA_NODEFER };
	pthread_t sender;
	struct timespec t0, t1;
	unsigned long loops = 0;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sig_target = pthread_self();
	pthread_create(&sender, NULL, sig_sender, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		/* Process level: idle -> NMIs -> busy -> NMIs -> idle ... */
		rcu_idle_exit();
		rcu_nmi_enter();
		rcu_nmi_exit();
		rcu_idle_enter();
		rcu_nmi_enter();
		rcu_nmi_enter();
		rcu_nmi_exit();
		rcu_nmi_exit();
		loops++;
		clock_gettime(CLOCK_MONOTONIC, &t1);
	} while ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) < 400000000L ||
		 atomic_load(&sig_nmis) < 1000);
	atomic_store(&sig_stop, true);
	pthread_join(sender, NULL);
	signal(SIGUSR1, SIG_IGN);
	printf("# %lu loops, %lu nested NMIs (signals), %lu from idle\n", loops,
	       atomic_load(&sig_nmis), (unsigned long)rcu_nmi_from_idle(0));
	CHECK(atomic_load(&sig_nmis) >= 1000);
	CHECK_EQ(atomic_load(&sig_bad), 0);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
	CHECK_EQ(nest(0), 0);
	CHECK_EQ(dt(0) & 1, 0);
}

/* --- grace periods --------------------------------------------------------- */

/*
 * A script for os_rcu_wait(): at wait number `at`, CPU `cpu` does `fn`.
 * The single-threaded tests drive the "other CPUs" through it, so a grace
 * period can only end because of what the script makes happen.
 */
struct step {
	unsigned long at;
	unsigned cpu;
	void (*fn)(void);
};
static const struct step *script;
static unsigned long script_last;	/* the wait number of the last step run */

static void run_script(unsigned long n)
{
	for (const struct step *s = script; s && s->fn; s++) {
		if (s->at == n) {
			AS_CPU(s->cpu, s->fn());
			script_last = n;
		}
	}
}

static void play(const struct step *steps)
{
	script = steps;
	script_last = 0;
	atomic_store(&waits, 0);
	wait_hook = run_script;
}

/* A grace period with `steps` played during its waits: how many waits it took. */
static unsigned long gp_waits(const struct step *steps)
{
	play(steps);
	synchronize_rcu();
	return atomic_load(&waits);
}

static void do_switch(void) { rcu_note_context_switch(); }
static void do_tick_busy(void) { rcu_tick(false); }
static void do_tick_preemptible(void) { rcu_tick(true); }
static void do_nmi_enter(void) { rcu_nmi_enter(); }
static void do_nmi_exit(void) { rcu_nmi_exit(); }
static void do_idle_enter(void) { rcu_idle_enter(); }
static void do_read_lock(void) { rcu_read_lock(); }
static void do_read_unlock(void) { rcu_read_unlock(); }
static void do_batch(void) { (void)rcu_do_batch(); }

static void gp_waits_for_every_busy_cpu(void)
{
	static const struct step steps[] = {
		{ 2, 2, do_switch },
		{ 4, 1, do_tick_preemptible },
		{ 6, 3, do_switch },
		{ 0, 0, NULL },
	};
	struct rcu_stats s0, s1;

	all_cpus_running();
	/* Quiescent states before the grace period do not count. */
	for (unsigned c = 1; c < 4; c++)
		AS_CPU(c, rcu_note_context_switch());
	rcu_get_stats(&s0);
	CHECK_EQ(gp_waits(steps), 6);
	CHECK_EQ(script_last, 6);
	rcu_get_stats(&s1);
	CHECK_EQ(s1.gp_seq, s0.gp_seq + 1);
	CHECK_EQ(s1.gp_waits, 6);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

static void gp_is_not_ended_by_a_tick_inside_a_reader(void)
{
	static const struct step steps[] = {
		{ 1, 1, do_tick_busy },		/* CPU 1 in a reader: no QS */
		{ 3, 1, do_tick_busy },
		{ 5, 1, do_tick_preemptible },
		{ 0, 0, NULL },
	};

	all_cpus_running();
	AS_CPU(2, rcu_idle_enter());
	AS_CPU(3, rcu_idle_enter());
	CHECK_EQ(gp_waits(steps), 5);
}

static void gp_ignores_idle_and_offline_cpus(void)
{
	all_cpus_running();
	AS_CPU(1, rcu_idle_enter());
	AS_CPU(2, rcu_user_enter());
	tos_set_online(3, false);	/* busy, but offline */
	CHECK_EQ(gp_waits(NULL), 0);
}

static void gp_waits_for_an_nmi_that_came_from_idle(void)
{
	static const struct step steps[] = {
		{ 3, 1, do_nmi_enter },		/* a nested NMI: still a reader */
		{ 4, 1, do_nmi_exit },
		{ 7, 1, do_nmi_exit },		/* the outer one leaves: idle again */
		{ 0, 0, NULL },
	};

	all_cpus_running();
	for (unsigned c = 1; c < 4; c++)
		AS_CPU(c, rcu_idle_enter());
	AS_CPU(1, rcu_nmi_enter());		/* an NMI handler is running on idle CPU 1 */
	CHECK_EQ(gp_waits(steps), 7);
	CHECK_EQ(dt(1) & 1, 0);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

static void gp_ends_when_an_idle_cpu_wakes_and_sleeps_again(void)
{
	/* CPU 1 busy at the snapshot; it goes idle: the counter moved. */
	static const struct step steps[] = {
		{ 2, 1, do_idle_enter },
		{ 0, 0, NULL },
	};

	all_cpus_running();
	AS_CPU(2, rcu_idle_enter());
	AS_CPU(3, rcu_idle_enter());
	CHECK_EQ(gp_waits(steps), 2);
}

static void gp_waits_for_a_thread_reader(void)
{
	/* rcu_read_lock holds preemption off: the scheduler cannot switch. */
	static const struct step steps[] = {
		{ 3, 1, do_read_unlock },
		{ 5, 1, do_switch },
		{ 0, 0, NULL },
	};

	all_cpus_running();
	AS_CPU(2, rcu_idle_enter());
	AS_CPU(3, rcu_idle_enter());
	AS_CPU(1, do_read_lock());
	AS_CPU(1, CHECK(rcu_read_lock_held()));
	CHECK_EQ(atomic_load(&preempt_count[1]), 1);
	CHECK_EQ(gp_waits(steps), 5);
	CHECK_EQ(atomic_load(&preempt_count[1]), 0);
	AS_CPU(1, CHECK(!rcu_read_lock_held()));
}

static void synchronize_rcu_inside_a_reader_warns_and_returns(void)
{
	all_cpus_running();
	rcu_read_lock();
	play(NULL);
	synchronize_rcu();
	rcu_read_unlock();
	CHECK_EQ(atomic_load(&waits), 0);
	CHECK_EQ(rcu_warnings(RCU_WARN_SYNC_IN_READER), 1);
}

static void broken_sync_switch_returns_at_once(void)
{
	all_cpus_running();		/* every other CPU busy */
	rcu_torture_broken_sync = true;
	CHECK_EQ(gp_waits(NULL), 0);
	rcu_torture_broken_sync = false;
}

static void stalled_cpu_is_reported_once(void)
{
	static const struct step steps[] = {
		{ 30, 1, do_switch },
		{ 0, 0, NULL },
	};
	struct rcu_stats st;

	all_cpus_running();
	AS_CPU(2, rcu_idle_enter());
	AS_CPU(3, rcu_idle_enter());
	rcu_stall_ms = 10;
	wait_advance_ns = 1000000;	/* each wait: 1 ms */
	CHECK_EQ(gp_waits(steps), 30);
	rcu_get_stats(&st);
	CHECK_EQ(st.stalls, 1);
	CHECK_EQ(tos_log_count("rcu: INFO: CPU 1 has passed no quiescent state for"), 1);
	CHECK(!tos_log_has("rcu: INFO: CPU 2"));
	CHECK(st.gp_longest_ns >= 29000000);
}

static unsigned long inner_returned_at;

static void do_inner_sync(void)
{
	synchronize_rcu();
	inner_returned_at = atomic_load(&waits);
}

static void grace_periods_are_shared_but_never_joined_late(void)
{
	/*
	 * A second updater (on CPU 2) calls synchronize_rcu() while the first
	 * one's grace period runs.  That grace period may have taken its
	 * snapshots before the second updater's stores, so the second must
	 * wait for the next one; the first returns with that one too, as it
	 * is already past its own.
	 */
	static const struct step steps[] = {
		{ 2, 2, do_inner_sync },
		{ 4, 1, do_switch },		/* ends grace period 1 */
		{ 6, 1, do_switch },		/* grace period 2 needs CPU 1 again... */
		{ 6, 0, do_switch },		/* ...and CPU 0, whose updater sleeps */
		{ 0, 0, NULL },
	};
	struct rcu_stats s0, s1;

	all_cpus_running();
	AS_CPU(2, rcu_idle_enter());
	AS_CPU(3, rcu_idle_enter());
	rcu_get_stats(&s0);
	play(steps);
	synchronize_rcu();
	rcu_get_stats(&s1);
	CHECK_EQ(inner_returned_at, 6);
	CHECK_EQ(atomic_load(&waits), 6);
	CHECK_EQ(s1.gp_seq, s0.gp_seq + 2);
}

/* --- call_rcu -------------------------------------------------------------- */

static struct rcu_head heads[4];
static char order[8];
static unsigned norder;
static unsigned long ran_at_wait[4];

static void cb(struct rcu_head *h)
{
	unsigned i = (unsigned)(h - heads);

	order[norder++] = (char)('a' + i);
	ran_at_wait[i] = atomic_load(&waits);
}

static void call_rcu_runs_callbacks_in_order_after_a_grace_period(void)
{
	static const struct step steps[] = {
		{ 3, 1, do_switch },
		{ 0, 0, NULL },
	};

	all_cpus_running();
	AS_CPU(2, rcu_idle_enter());
	AS_CPU(3, rcu_idle_enter());
	CHECK(!rcu_do_batch());			/* nothing queued */
	call_rcu(&heads[0], cb);
	CHECK_EQ(atomic_load(&kicks[0]), 1);	/* the thread is woken once... */
	call_rcu(&heads[1], cb);
	call_rcu(&heads[2], cb);
	CHECK_EQ(atomic_load(&kicks[0]), 1);	/* ...not for every callback */
	CHECK(rcu_callbacks_pending(0));
	CHECK(!rcu_callbacks_pending(1));
	play(steps);
	CHECK(rcu_do_batch());
	CHECK_EQ(norder, 3);
	CHECK_STR(order, "abc");
	for (int i = 0; i < 3; i++)
		CHECK_EQ(ran_at_wait[i], 3);	/* not before CPU 1's switch */
	CHECK(!rcu_callbacks_pending(0));
	CHECK(!rcu_do_batch());

	struct rcu_stats st;
	rcu_get_stats(&st);
	CHECK_EQ(st.cb_queued, 3);
	CHECK_EQ(st.cb_invoked, 3);
	play(NULL);
	rcu_barrier();				/* all run: returns at once */
	CHECK_EQ(atomic_load(&waits), 0);
}

static void call_rcu_on_two_cpus_and_rcu_barrier(void)
{
	static const struct step steps[] = {
		{ 2, 2, do_batch },	/* CPU 2's thread runs; its grace period... */
		{ 3, 0, do_switch },	/* ...needs CPU 0, whose caller sleeps */
		{ 0, 0, NULL },
	};

	all_cpus_running();
	for (unsigned c = 1; c < 4; c++)
		AS_CPU(c, rcu_idle_enter());
	call_rcu(&heads[0], cb);
	AS_CPU(2, call_rcu(&heads[1], cb));
	CHECK_EQ(atomic_load(&kicks[2]), 1);
	CHECK(rcu_do_batch());
	CHECK_STR(order, "a");
	AS_CPU(2, rcu_idle_exit());
	play(steps);
	rcu_barrier();
	CHECK_STR(order, "ab");
	CHECK_EQ(atomic_load(&waits), 3);
}

/* --- nmi_unregister() waits for a grace period --------------------------- */

static _Atomic unsigned handler_calls, handler_watched;

static int counting_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	atomic_fetch_add(&handler_calls, 1);
	if (rcu_is_watching())
		atomic_fetch_add(&handler_watched, 1);
	return NMI_DONE;
}

static void nmi_unregister_waits_for_a_grace_period(void)
{
	/* CPU 1 is idle and inside an NMI handler (a reader) when we unregister. */
	static const struct step steps[] = {
		{ 4, 1, do_nmi_exit },
		{ 0, 0, NULL },
	};

	all_cpus_running();
	for (unsigned c = 1; c < 4; c++)
		AS_CPU(c, rcu_idle_enter());
	nmi_set_synchronize(synchronize_rcu);
	CHECK_EQ(nmi_register(NMI_LOCAL, "counter", counting_handler, 0), NMI_OK);
	AS_CPU(1, rcu_nmi_enter());
	play(steps);
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "counter"), NMI_OK);
	CHECK_EQ(atomic_load(&waits), 4);

	/* And an NMI now runs the whole dispatch with RCU watching from idle. */
	uint64_t before = rcu_nmi_from_idle(2);
	tos_nmi(2, 0x1000);
	CHECK_EQ(rcu_nmi_from_idle(2), before + 1);
	CHECK_EQ(dt(2) & 1, 0);
	CHECK_EQ(nest(2), 0);
	CHECK_EQ(atomic_load(&handler_calls), 0);
	nmi_set_synchronize(NULL);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

static void nmi_entry_brackets_the_dispatch(void)
{
	/* A handler sees RCU watching even on an idle CPU. */
	all_cpus_running();
	AS_CPU(1, rcu_idle_enter());
	CHECK_EQ(nmi_register(NMI_LOCAL, "watch", counting_handler, 0), NMI_OK);
	tos_nmi(1, 0x2000);
	CHECK_EQ(atomic_load(&handler_calls), 1);
	CHECK_EQ(atomic_load(&handler_watched), 1);
	CHECK_EQ(rcu_nmi_from_idle(1), 1);
	tos_nmi(0, 0x2000);			/* CPU 0 busy: nesting only */
	CHECK_EQ(rcu_nmi_from_idle(0), 0);
	CHECK_EQ(nest(0), RCU_NESTING_NONIDLE);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

/* An offline CPU runs only NMIs: one that began before the grace period holds it. */
static _Atomic bool hold_nmi, in_held_nmi, left_held_nmi;

static int holding_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	if (tos_cpu != 3 || !atomic_load(&hold_nmi))
		return NMI_DONE;
	atomic_store(&in_held_nmi, true);
	while (atomic_load(&hold_nmi))
		sched_yield();
	atomic_store(&left_held_nmi, true);
	return NMI_HANDLED;
}

static void *cpu3_nmi(void *arg)
{
	(void)arg;
	tos_cpu = 3;
	tos_nmi(3, 0x3000);
	return NULL;
}

static void do_release_nmi(void) { atomic_store(&hold_nmi, false); }

static void offline_cpu_in_an_nmi_holds_the_grace_period(void)
{
	static const struct step steps[] = {
		{ 10, 0, do_release_nmi },
		{ 0, 0, NULL },
	};
	pthread_t th;

	all_cpus_running();
	AS_CPU(1, rcu_idle_enter());
	AS_CPU(2, rcu_idle_enter());
	tos_set_online(3, false);	/* parked: no task, no tick, NMIs only */
	CHECK_EQ(nmi_register(NMI_LOCAL, "hold", holding_handler, 0), NMI_OK);
	atomic_store(&hold_nmi, true);
	pthread_create(&th, NULL, cpu3_nmi, NULL);
	while (!atomic_load(&in_held_nmi))
		sched_yield();
	wait_yields = true;
	play(steps);
	synchronize_rcu();
	bool left_first = atomic_load(&left_held_nmi);
	atomic_store(&hold_nmi, false);		/* in case it returned early */
	pthread_join(th, NULL);
	CHECK(left_first);
	CHECK(atomic_load(&waits) >= 10);
	/* An offline CPU outside any NMI holds nothing up. */
	CHECK_EQ(gp_waits(NULL), 0);
}

/* --- threads: readers never see what a writer poisoned -------------------- */

#define POISON 0x5a5a5a5a5a5a5a5aull

struct obj {
	_Atomic uint64_t poison;
	_Atomic uint64_t gen;
	_Atomic uint64_t check;	/* gen * 3 + 1 */
};

#define NOBJ 16
static struct obj objs[NOBJ];
static _Atomic(struct obj *) published;
static _Atomic bool th_stop;
static _Atomic unsigned long th_reads, th_bad, th_gps;
static _Atomic unsigned th_started;

static void *reader_thread(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	unsigned long n = 0;

	tos_cpu = cpu;
	rcu_idle_exit();
	atomic_fetch_add(&th_started, 1);
	while (!atomic_load(&th_stop)) {
		rcu_read_lock();
		struct obj *p = rcu_dereference(published);
		uint64_t gen = atomic_load_explicit(&p->gen, memory_order_relaxed);
		for (int i = 0; i < 50; i++) {
			/*
			 * Hold the object across a yield: the host may run
			 * the writer meanwhile, which must wait for us (or,
			 * broken, poisons the object under us).
			 */
			if (i == 25)
				sched_yield();
			/* Poisoned, inconsistent, or reused under us. */
			if (atomic_load_explicit(&p->poison, memory_order_relaxed) ||
			    atomic_load_explicit(&p->check, memory_order_relaxed) != gen * 3 + 1 ||
			    atomic_load_explicit(&p->gen, memory_order_relaxed) != gen) {
				atomic_fetch_add(&th_bad, 1);
				break;
			}
		}
		rcu_read_unlock();
		atomic_fetch_add(&th_reads, 1);
		/* Quiescent now and then: a "switch", or a spell of idle with an NMI. */
		if (++n % 64 == 0)
			sched_yield();	/* a loaded host must let the writer run too */
		if (n % 8 == 0) {
			rcu_note_context_switch();
		} else if (n % 8 == 3) {
			rcu_idle_enter();
			rcu_nmi_enter();
			struct obj *q = rcu_dereference(published);
			if (atomic_load(&q->poison))
				atomic_fetch_add(&th_bad, 1);
			rcu_nmi_exit();
			rcu_idle_exit();
		}
	}
	rcu_idle_enter();
	return NULL;
}

/*
 * Readers on CPUs 1-3, the writer on CPU 0 (this thread), until `gps`
 * grace periods are done or `seconds` have passed, or (stop_on_bad) a
 * reader saw a poisoned object.  Returns the poisoned objects seen.
 */
static unsigned long run_threads(unsigned long gps, double seconds, bool stop_on_bad)
{
	pthread_t th[3];
	struct timespec t0, t1;
	uint64_t gen = 1;
	unsigned next = 1;

	tos_cpu = 0;
	rcu_idle_exit();
	wait_yields = true;
	atomic_store(&objs[0].poison, 0);
	atomic_store(&objs[0].gen, gen);
	atomic_store(&objs[0].check, gen * 3 + 1);
	rcu_assign_pointer(published, &objs[0]);
	for (uintptr_t c = 1; c <= 3; c++)
		pthread_create(&th[c - 1], NULL, reader_thread, (void *)c);
	while (atomic_load(&th_started) < 3)
		sched_yield();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct obj *n = &objs[next];

		next = (next + 1) % NOBJ;
		gen++;
		atomic_store(&n->poison, 0);
		n->gen = gen;
		n->check = gen * 3 + 1;
		struct obj *old = rcu_replace_pointer(published, n);
		synchronize_rcu();
		atomic_fetch_add(&th_gps, 1);
		atomic_store(&old->poison, POISON);
		old->check = 0;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9 > seconds)
			break;
		if (atomic_load(&th_gps) >= gps)
			break;
		if (stop_on_bad && atomic_load(&th_bad))
			break;
	}
	atomic_store(&th_stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	printf("# %lu reads, %lu grace periods, %lu poisoned objects seen\n",
	       atomic_load(&th_reads), atomic_load(&th_gps), atomic_load(&th_bad));
	return atomic_load(&th_bad);
}

static void threaded_readers_never_see_a_poisoned_object(void)
{
	CHECK_EQ(run_threads(2000, 10.0, false), 0);
	CHECK(atomic_load(&th_gps) >= 200);
	CHECK(atomic_load(&th_reads) > 1000);
	CHECK_EQ(rcu_warnings(RCU_WARN_KINDS), 0);
}

static void threaded_readers_catch_the_broken_sync_switch(void)
{
	/* The same run must fail when synchronize_rcu() does not wait. */
	rcu_torture_broken_sync = true;
	CHECK(run_threads(~0ul, 10.0, true) > 0);
	rcu_torture_broken_sync = false;
}

const struct tap_test rcu_tests[] = {
	TAP_TEST(nmi_from_idle_turns_watching_on_and_off),
	TAP_TEST(nested_nmis_from_idle_add_two),
	TAP_TEST(nmi_on_a_busy_cpu_moves_only_the_nesting),
	TAP_TEST(user_mode_is_an_extended_quiescent_state),
	TAP_TEST(every_invariant_check_fires_and_warns_once),
	TAP_TEST(an_unwatched_handler_is_reported_at_its_exit),
	TAP_TEST(nesting_survives_nmis_at_random_instructions),
	TAP_TEST(gp_waits_for_every_busy_cpu),
	TAP_TEST(gp_is_not_ended_by_a_tick_inside_a_reader),
	TAP_TEST(gp_ignores_idle_and_offline_cpus),
	TAP_TEST(gp_waits_for_an_nmi_that_came_from_idle),
	TAP_TEST(gp_ends_when_an_idle_cpu_wakes_and_sleeps_again),
	TAP_TEST(gp_waits_for_a_thread_reader),
	TAP_TEST(synchronize_rcu_inside_a_reader_warns_and_returns),
	TAP_TEST(broken_sync_switch_returns_at_once),
	TAP_TEST(stalled_cpu_is_reported_once),
	TAP_TEST(grace_periods_are_shared_but_never_joined_late),
	TAP_TEST(call_rcu_runs_callbacks_in_order_after_a_grace_period),
	TAP_TEST(call_rcu_on_two_cpus_and_rcu_barrier),
	TAP_TEST(nmi_unregister_waits_for_a_grace_period),
	TAP_TEST(nmi_entry_brackets_the_dispatch),
	TAP_TEST(offline_cpu_in_an_nmi_holds_the_grace_period),
	TAP_TEST(threaded_readers_never_see_a_poisoned_object),
	TAP_TEST(threaded_readers_catch_the_broken_sync_switch),
	TAP_END,
};
