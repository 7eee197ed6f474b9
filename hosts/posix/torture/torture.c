/*
 * torture.c: the NMI core, irq_work and the lost-NMI probe, hammered at
 * native speed on the POSIX host (threads = CPUs, signals = NMIs).  Each test
 * runs in a child process of its own (the core's state is per boot) and ends
 * with invariant checks; the parent prints one TAP line per test.
 *
 *	torture [-d SECONDS] [-c CPUS] [-s SEED] [-t TEST]... [--no-probe] [--polled]
 *
 * --polled delivers NMIs and interrupts at polling points instead of by
 * signals (for ThreadSanitizer builds; see nkp_config.polled).
 * Tests: storm, nested, irq_work, churn, probe, shootdown (default: all).
 * hosts/posix/README.md lists every invariant and why it must hold.
 */
#define _GNU_SOURCE
#include "nmikit_posix.h"

#include <nmikit/irq_work.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#ifdef NKP_HAVE_RCU_NMI
#include <nmikit/rcu.h>
#endif

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T_MAX_CPUS	16
#define T_CHURN_SLOTS	8
#define T_IRQ_ITEMS	4	/* shared items */
#define T_PROBE_BOUND_NS (3000ull * 1000 * 1000)

/* --- options -------------------------------------------------------------- */

static double opt_seconds = 1.5;
static unsigned opt_cpus = 4;
static unsigned long opt_seed;
static bool opt_no_probe;
static bool opt_polled;

/* --- failures ------------------------------------------------------------- */

static _Atomic unsigned long t_violations;
static _Atomic bool t_first_taken;
static char t_first[256];

/*
 * Record an invariant violation.  May run in NMI (signal) context: the first
 * message is formatted with the core's NMI-safe nk_snprintf into a buffer
 * claimed once; later ones are only counted.
 */
static void violation(const char *fmt, ...) NK_PRINTF(1, 2);
static void violation(const char *fmt, ...)
{
	bool no = false;
	va_list ap;

	atomic_fetch_add(&t_violations, 1);
	if (!atomic_compare_exchange_strong(&t_first_taken, &no, true))
		return;
	va_start(ap, fmt);
	nk_vsnprintf(t_first, sizeof(t_first), fmt, ap);
	va_end(ap);
}

static int t_checks_failed;

static void check(bool ok, const char *fmt, ...) NK_PRINTF(2, 3);
static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	if (ok)
		return;
	t_checks_failed++;
	printf("# FAILED: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* --- small helpers -------------------------------------------------------- */

static __thread uint64_t t_rnd_state;

static uint64_t rnd(void)
{
	uint64_t x = t_rnd_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	t_rnd_state = x;
	return x;
}

/* Busy work; in polled mode a CPU takes its NMIs and interrupts here too. */
static void spin(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++) {
		__builtin_ia32_pause();
		if (opt_polled && (i & 31) == 0)
			nkp_poll();
	}
}

static uint64_t now_ns(void)
{
	return os_timestamp_ns();
}

static void sleep_us(unsigned us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };

	if (opt_polled && nkp_this_cpu() != NKP_NO_CPU) {
		uint64_t end = now_ns() + (uint64_t)us * 1000;

		do {
			struct timespec step = { 0, 20000 };

			nkp_poll();
			nanosleep(&step, NULL);
		} while (now_ns() < end);
		return;
	}
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Wait until cond() or `ns` passed; true if cond() held. */
static bool wait_until(bool (*cond)(void), uint64_t ns)
{
	uint64_t start = now_ns();

	while (!cond()) {
		if (now_ns() - start > ns)
			return false;
		sleep_us(200);
	}
	return true;
}

/* --- per-CPU torture state ------------------------------------------------ */

struct tcpu {
	_Atomic uint64_t events;	/* raised, not yet claimed */
	_Atomic uint64_t raised;	/* events raised for this CPU, total */
	_Atomic uint64_t claimed;	/* events claimed on this CPU, total */
	_Atomic uint64_t noise_calls;	/* the non-claiming handler's calls */
	_Atomic uint64_t unknown_calls;	/* the unknown-chain handler's calls */
	_Atomic int in_dispatch;	/* inside the claim handler */
	_Atomic uint64_t ticks_seen;
	struct irq_work imm, lazy;	/* queued from this CPU's NMIs */
	_Atomic uint64_t imm_queued, imm_runs, lazy_queued, lazy_runs;
	pthread_t thread;
} NK_CACHE_ALIGNED;

static struct tcpu tc[T_MAX_CPUS];
static _Atomic bool t_stop;
static _Atomic unsigned t_ready, t_done_sending;
static _Atomic bool t_may_exit;
static __thread bool t_irqs_off_section;

/* Which test is running, and its knobs. */
static struct {
	const char *name;
	bool nesting;
	bool irq_work;		/* queue irq_work from NMIs */
	bool churn;		/* last two CPUs churn handlers */
	bool nmi_delay;		/* random delay in the NMI entry hook */
	bool claim_spin;	/* random delay in the claim handler */
	bool rcu;		/* CPUs go idle; IST-like rcu_nmi_enter/exit brackets */
} T;

/* Shared irq_work items, queued from any CPU's NMI. */
struct shared_item {
	struct irq_work w;
	_Atomic uint64_t queued, runs;
	_Atomic int running;		/* EXCLUSIVE items: CPUs inside */
	bool exclusive;
};
static struct shared_item t_shared[T_IRQ_ITEMS];

/* --- handlers -------------------------------------------------------------- */

static void queue_from_nmi(struct tcpu *t)
{
	if (irq_work_queue(&t->imm))
		nk_atomic_inc(&t->imm_queued);
	if (irq_work_queue(&t->lazy))
		nk_atomic_inc(&t->lazy_queued);
	struct shared_item *s = &t_shared[rnd() % T_IRQ_ITEMS];
	if (irq_work_queue(&s->w))
		nk_atomic_inc(&s->queued);
}

/*
 * The claiming handler: takes every event raised for this CPU.  NMI context.
 * It must never run twice at once on one CPU: a nested NMI is latched by
 * nmi_entry() and re-dispatched after, never run inside the running dispatch.
 */
static int claim_handler(unsigned type, struct nmi_frame *f)
{
	unsigned cpu = os_cpu_id();
	struct tcpu *t = &tc[cpu];
	uint64_t n;

	(void)type;
	(void)f;
	if (atomic_exchange(&t->in_dispatch, 1))
		violation("CPU %u: two NMI dispatches ran at once", cpu);
	if (!(nkp_context() & NKP_CTX_NMI))
		violation("CPU %u: NMI handler outside NMI context", cpu);
#ifdef NKP_HAVE_RCU_NMI
	if (T.rcu && !rcu_is_watching())
		violation("CPU %u: NMI handler ran while RCU was not watching", cpu);
#endif
	if (T.claim_spin)
		spin((unsigned)(rnd() % 400));
	n = atomic_exchange(&t->events, 0);
	atomic_fetch_add(&t->claimed, n);
	if (T.irq_work && n)
		queue_from_nmi(t);
	atomic_store(&t->in_dispatch, 0);
	return n > INT_MAX ? INT_MAX : (int)n;
}

/* Claims nothing: counts that every handler is called on every NMI. */
static int noise_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	nk_atomic_inc(&tc[os_cpu_id()].noise_calls);
	return NMI_DONE;
}

/* Last look for NMIs nothing explained: counts them, keeps the log quiet. */
static int unknown_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	nk_atomic_inc(&tc[os_cpu_id()].unknown_calls);
	return NMI_HANDLED;
}

/* Random delay at the NMI entry point, so nested NMIs land everywhere. */
static void nmi_hook(unsigned cpu, unsigned depth)
{
	(void)cpu;
#ifdef NKP_HAVE_RCU_NMI
	/*
	 * As an IST exception entry (#DB, #BP, #MC) would: bracket with
	 * rcu_nmi_enter/exit, with a delay inside so that nested NMIs land
	 * between its steps and inside the bracket.
	 */
	if (T.rcu && depth == 1 && (rnd() & 3) == 0) {
		rcu_nmi_enter();
		if (!rcu_is_watching())
			violation("CPU %u: RCU not watching inside rcu_nmi_enter/exit", cpu);
		spin((unsigned)(rnd() % 300));
		rcu_nmi_exit();
		return;
	}
#endif
	if (T.nmi_delay && depth == 1)
		spin((unsigned)(rnd() % 300));
}

static void tick_hook(unsigned cpu)
{
	if (t_irqs_off_section)
		violation("CPU %u: timer tick ran inside an interrupts-off section", cpu);
	nk_atomic_inc(&tc[cpu].ticks_seen);
}

/* --- irq_work callbacks ---------------------------------------------------- */

static struct tcpu *tcpu_of(struct irq_work *w, bool lazy)
{
	for (unsigned i = 0; i < opt_cpus; i++)
		if (w == (lazy ? &tc[i].lazy : &tc[i].imm))
			return &tc[i];
	return NULL;
}

static void imm_fn(struct irq_work *w)
{
	struct tcpu *t = tcpu_of(w, false);
	unsigned ctx = nkp_context();

	if (!t || t != &tc[os_cpu_id()])
		violation("immediate irq_work ran on a CPU other than its own");
	if ((ctx & NKP_CTX_NMI) || !(ctx & (NKP_CTX_IRQ_WORK | NKP_CTX_TICK)))
		violation("immediate irq_work ran in context %#x (want irq_work or tick)", ctx);
	if (t)
		nk_atomic_inc(&t->imm_runs);
}

static void lazy_fn(struct irq_work *w)
{
	struct tcpu *t = tcpu_of(w, true);
	unsigned ctx = nkp_context();

	if (!t || t != &tc[os_cpu_id()])
		violation("lazy irq_work ran on a CPU other than its own");
	if ((ctx & NKP_CTX_NMI) || !(ctx & NKP_CTX_TICK))
		violation("lazy irq_work ran in context %#x (want the tick)", ctx);
	if (t)
		nk_atomic_inc(&t->lazy_runs);
}

static void shared_fn(struct irq_work *w)
{
	struct shared_item *s = (struct shared_item *)w;

	if (nkp_context() & NKP_CTX_NMI)
		violation("shared irq_work ran in NMI context");
	if (s->exclusive && atomic_fetch_add(&s->running, 1) != 0)
		violation("EXCLUSIVE irq_work ran on two CPUs at once");
	spin((unsigned)(rnd() % 200));
	if (s->exclusive)
		atomic_fetch_sub(&s->running, 1);
	nk_atomic_inc(&s->runs);
}

/* --- handler churn --------------------------------------------------------- */

#define T_ALIVE		0x600dull
#define T_POISON	0xdeadull

struct churn_slot {
	_Atomic uint64_t magic;
	_Atomic uint64_t calls;
	bool registered;
	char name[16];
};
static struct churn_slot t_churn[T_CHURN_SLOTS];

/*
 * A churned handler.  NMI context.  Checks its data is alive on entry and
 * again after a delay: nmi_unregister() must not return while a CPU stands
 * in the handler, so the poison written after it returns is never seen.
 */
static int churn_body(unsigned slot)
{
	struct churn_slot *c = &t_churn[slot];

	if (atomic_load(&c->magic) != T_ALIVE)
		violation("churn-%u ran after nmi_unregister() returned (entry)", slot);
	spin((unsigned)(rnd() % 500));
	if (atomic_load(&c->magic) != T_ALIVE)
		violation("churn-%u: nmi_unregister() returned while it ran", slot);
	nk_atomic_inc(&c->calls);
	return NMI_DONE;
}

#define CHURN_FN(i) \
	static int churn_fn_##i(unsigned type, struct nmi_frame *f) \
	{ (void)type; (void)f; return churn_body(i); }
CHURN_FN(0) CHURN_FN(1) CHURN_FN(2) CHURN_FN(3)
CHURN_FN(4) CHURN_FN(5) CHURN_FN(6) CHURN_FN(7)
static nmi_handler_fn const churn_fns[T_CHURN_SLOTS] = {
	churn_fn_0, churn_fn_1, churn_fn_2, churn_fn_3,
	churn_fn_4, churn_fn_5, churn_fn_6, churn_fn_7,
};
static _Atomic uint64_t t_churn_ops;

static void churn_step(unsigned first_slot, unsigned nslots)
{
	unsigned i = first_slot + (unsigned)(rnd() % nslots);
	struct churn_slot *c = &t_churn[i];
	int err;

	if (!c->registered) {
		atomic_store(&c->magic, T_ALIVE);
		err = nmi_register(NMI_LOCAL, c->name, churn_fns[i],
				   (rnd() & 1) ? NMI_FLAG_FIRST : 0);
		if (err)
			violation("nmi_register(%s): %s", c->name, nmi_strerror(err));
		else
			c->registered = true;
	} else {
		err = nmi_unregister(NMI_LOCAL, c->name);
		if (err)
			violation("nmi_unregister(%s): %s", c->name, nmi_strerror(err));
		c->registered = false;
		atomic_store(&c->magic, T_POISON);
	}
	nk_atomic_inc(&t_churn_ops);
}

/* --- the CPU threads --------------------------------------------------------- */

static void raise_event(unsigned target)
{
	atomic_fetch_add(&tc[target].raised, 1);
	atomic_fetch_add(&tc[target].events, 1);
	nkp_send_nmi(target);
}

static bool all_ready(void)
{
	return atomic_load(&t_ready) == opt_cpus;
}

static bool all_done_sending(void)
{
	return atomic_load(&t_done_sending) == opt_cpus;
}

static void *cpu_main(void *arg)
{
	unsigned cpu = (unsigned)(uintptr_t)arg;
	bool churner = T.churn && cpu >= opt_cpus - 2;
	struct tcpu *t = &tc[cpu];

	t_rnd_state = opt_seed * 0x9e3779b97f4a7c15ull + cpu + 1;
	if (nkp_cpu_attach(cpu)) {
		violation("CPU %u: attach failed: %s", cpu, strerror(errno));
		atomic_fetch_add(&t_ready, 1);
		atomic_fetch_add(&t_done_sending, 1);
		return NULL;
	}
#ifdef NKP_HAVE_RCU_NMI
	if (T.rcu)
		nkp_irqs_off(rcu_idle_exit());	/* RCU starts watching this CPU */
#endif
	atomic_fetch_add(&t_ready, 1);
	wait_until(all_ready, 10ull * 1000 * 1000 * 1000);

	while (!atomic_load(&t_stop)) {
		unsigned r = (unsigned)(rnd() % 32);

		nkp_poll();
		if (churner) {
			churn_step(cpu == opt_cpus - 1 ? 0 : T_CHURN_SLOTS / 2, T_CHURN_SLOTS / 2);
			if (r < 4)
				sleep_us(50);
			continue;
		}
		if (r < 22) {
			raise_event((unsigned)(rnd() % opt_cpus));
		} else if (r < 24) {
			/* A burst at one CPU: the latch collapses most of them. */
			unsigned to = (unsigned)(rnd() % opt_cpus);

			for (int i = 0; i < 8; i++)
				raise_event(to);
		} else if (r < 26) {
			os_irqflags_t fl = os_local_irq_save();

			t_irqs_off_section = true;
			spin((unsigned)(rnd() % 20000));
			t_irqs_off_section = false;
			os_local_irq_restore(fl);
#ifdef NKP_HAVE_RCU_NMI
		} else if (r < 27 && T.rcu) {
			/* Idle: RCU stops watching; NMIs arriving now must make it watch. */
			os_irqflags_t fl = os_local_irq_save();

			rcu_idle_enter();
			spin((unsigned)(rnd() % 5000));
			rcu_idle_exit();
			os_local_irq_restore(fl);
#endif
		} else if (r < 27 && T.irq_work) {
			if (irq_work_queue(&t->imm))
				nk_atomic_inc(&t->imm_queued);
		} else if (r < 29) {
			sleep_us((unsigned)(rnd() % 300));
		} else {
			spin((unsigned)(rnd() % 2000));
		}
	}

	/* Quiesce: nobody sends any more; then take what is left. */
	for (unsigned i = 0; churner && i < T_CHURN_SLOTS / 2; i++) {
		unsigned s = (cpu == opt_cpus - 1 ? 0 : T_CHURN_SLOTS / 2) + i;

		if (t_churn[s].registered) {
			nmi_unregister(NMI_LOCAL, t_churn[s].name);
			t_churn[s].registered = false;
			atomic_store(&t_churn[s].magic, T_POISON);
		}
	}
	atomic_fetch_add(&t_done_sending, 1);
	wait_until(all_done_sending, 10ull * 1000 * 1000 * 1000);
	for (int i = 0; i < 2000 && atomic_load(&t->events); i++) {
		nkp_send_nmi(cpu);
		sleep_us(500);
	}
	/* Keep ticking until the checker has seen irq_work and probes settle. */
	while (!atomic_load(&t_may_exit))
		sleep_us(500);
#ifdef NKP_HAVE_RCU_NMI
	if (T.rcu && (rcu_nmi_nesting_read(cpu) != RCU_NESTING_NONIDLE ||
		      rcu_dynticks_read(cpu) % 2 == 0))
		violation("CPU %u: RCU counters not back at the process level (nesting %ld, dynticks %llu)",
			  cpu, rcu_nmi_nesting_read(cpu), (unsigned long long)rcu_dynticks_read(cpu));
#endif
	nkp_cpu_detach();
	return NULL;
}

/* --- running a test ---------------------------------------------------------- */

static void setup_core(void)
{
	struct nkp_config cfg = {
		.ncpus = opt_cpus, .tick_hz = 1000, .nmi_nesting = T.nesting, .console_fd = 2,
		.polled = opt_polled,
	};
	int err;

	if (nkp_init(&cfg)) {
		perror("nkp_init");
		exit(2);
	}
	/* Warnings and worse reach stdout as TAP diagnostics would not: keep quiet. */
	nk_log_set_console_level(NK_LOG_ERR);
	nmi_lost_recovery = !opt_no_probe;
	nkp_set_nmi_hook(nmi_hook);
	nkp_set_tick_hook(tick_hook);

	for (unsigned i = 0; i < opt_cpus; i++) {
		irq_work_init(&tc[i].imm, imm_fn, 0);
		irq_work_init(&tc[i].lazy, lazy_fn, IRQ_WORK_LAZY);
	}
	for (unsigned i = 0; i < T_IRQ_ITEMS; i++) {
		t_shared[i].exclusive = i & 1;
		irq_work_init(&t_shared[i].w, shared_fn,
			      (i & 1 ? IRQ_WORK_EXCLUSIVE : 0) | (i & 2 ? IRQ_WORK_LAZY : 0));
	}
	for (unsigned i = 0; i < T_CHURN_SLOTS; i++)
		snprintf(t_churn[i].name, sizeof(t_churn[i].name), "churn-%u", i);

	if ((err = nmi_register(NMI_LOCAL, "torture-claim", claim_handler, 0)) ||
	    (err = nmi_register(NMI_LOCAL, "torture-noise", noise_handler, 0)) ||
	    (err = nmi_register(NMI_UNKNOWN, "torture-unknown", unknown_handler, 0))) {
		printf("# nmi_register: %s\n", nmi_strerror(err));
		exit(2);
	}
}

static void start_cpus(void)
{
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 1 << 20);
	for (unsigned i = 0; i < opt_cpus; i++)
		if (pthread_create(&tc[i].thread, &attr, cpu_main, (void *)(uintptr_t)i)) {
			perror("pthread_create");
			exit(2);
		}
	pthread_attr_destroy(&attr);
}

static bool irq_work_idle(void)
{
	for (unsigned i = 0; i < opt_cpus; i++)
		if (irq_work_is_busy(&tc[i].imm) || irq_work_is_busy(&tc[i].lazy))
			return false;
	for (unsigned i = 0; i < T_IRQ_ITEMS; i++)
		if (irq_work_is_busy(&t_shared[i].w))
			return false;
	return true;
}

static bool events_drained(void)
{
	for (unsigned i = 0; i < opt_cpus; i++)
		if (atomic_load(&tc[i].events))
			return false;
	return true;
}

static bool probes_idle(void)
{
	for (unsigned i = 0; i < opt_cpus; i++)
		if (nmi_probe_pending(i))
			return false;
	return true;
}

/*
 * Stop the CPUs and check every invariant of the dispatch.  The CPUs stay
 * attached (ticking) until irq_work and the probe have settled.
 */
static void stop_and_check(void)
{
	uint64_t raised = 0, claimed = 0, entries = 0, delivered = 0, nested = 0;
	uint64_t sent = 0, collapsed = 0, latched = 0, unknown = 0, maxdepth = 0;

	sleep_us((unsigned)(opt_seconds * 1e6));
	atomic_store(&t_stop, true);
	check(wait_until(all_done_sending, 20ull * 1000 * 1000 * 1000),
	      "CPUs still sending 20 s after the stop");
	check(wait_until(events_drained, 5ull * 1000 * 1000 * 1000),
	      "events still unclaimed 5 s after the storm stopped");
	check(wait_until(irq_work_idle, 5ull * 1000 * 1000 * 1000),
	      "irq_work items still busy 5 s after the storm stopped");
	check(wait_until(probes_idle, 5ull * 1000 * 1000 * 1000),
	      "lost-NMI probes still outstanding 5 s after the storm stopped");
	atomic_store(&t_may_exit, true);
	for (unsigned i = 0; i < opt_cpus; i++)
		pthread_join(tc[i].thread, NULL);

	for (unsigned i = 0; i < opt_cpus; i++) {
		struct nmi_cpu_stats s;
		struct nkp_cpu_stats h;
		struct tcpu *t = &tc[i];
		uint64_t outcomes;

		nmi_get_cpu_stats(i, &s);
		nkp_get_cpu_stats(i, &h);
		raised += atomic_load(&t->raised);
		claimed += atomic_load(&t->claimed);
		entries += s.entries;
		delivered += h.delivered;
		nested += h.nested;
		sent += h.sent;
		collapsed += h.collapsed;
		latched += s.latched;
		unknown += s.unknown;
		if (h.max_depth > maxdepth)
			maxdepth = h.max_depth;

		check(atomic_load(&t->events) == 0, "CPU %u: %llu events never claimed", i,
		      (unsigned long long)atomic_load(&t->events));
		check(h.delivered == s.latched + s.entries - s.repeated,
		      "CPU %u: %llu NMI signals taken but latched %llu + entries %llu - repeated %llu",
		      i, (unsigned long long)h.delivered, (unsigned long long)s.latched,
		      (unsigned long long)s.entries, (unsigned long long)s.repeated);
		outcomes = s.normal + s.external + s.probe_absorbed + s.swallowed + s.unknown +
			   s.emergency;
		check(s.entries == outcomes,
		      "CPU %u: %llu dispatches but %llu outcomes (normal %llu external %llu absorbed %llu swallowed %llu unknown %llu)",
		      i, (unsigned long long)s.entries, (unsigned long long)outcomes,
		      (unsigned long long)s.normal, (unsigned long long)s.external,
		      (unsigned long long)s.probe_absorbed, (unsigned long long)s.swallowed,
		      (unsigned long long)s.unknown);
		check(atomic_load(&t->noise_calls) == s.entries - s.emergency,
		      "CPU %u: the second handler was called %llu times in %llu dispatches",
		      i, (unsigned long long)atomic_load(&t->noise_calls),
		      (unsigned long long)(s.entries - s.emergency));
		check(atomic_load(&t->unknown_calls) == s.unknown,
		      "CPU %u: unknown chain called %llu times, %llu unknown NMIs", i,
		      (unsigned long long)atomic_load(&t->unknown_calls),
		      (unsigned long long)s.unknown);
		check(s.repeated <= s.latched, "CPU %u: %llu restarts for %llu latched NMIs", i,
		      (unsigned long long)s.repeated, (unsigned long long)s.latched);
		check(h.sent == h.delivered, "CPU %u: %llu NMI signals sent, %llu taken", i,
		      (unsigned long long)h.sent, (unsigned long long)h.delivered);
		check(nmi_seq(i) % 2 == 0, "CPU %u: NMI sequence odd at rest", i);
		if (T.irq_work) {
			check(atomic_load(&t->imm_queued) == atomic_load(&t->imm_runs),
			      "CPU %u: immediate item queued %llu times, ran %llu", i,
			      (unsigned long long)atomic_load(&t->imm_queued),
			      (unsigned long long)atomic_load(&t->imm_runs));
			check(atomic_load(&t->lazy_queued) == atomic_load(&t->lazy_runs),
			      "CPU %u: lazy item queued %llu times, ran %llu", i,
			      (unsigned long long)atomic_load(&t->lazy_queued),
			      (unsigned long long)atomic_load(&t->lazy_runs));
		}
	}
	for (unsigned i = 0; T.irq_work && i < T_IRQ_ITEMS; i++)
		check(atomic_load(&t_shared[i].queued) == atomic_load(&t_shared[i].runs),
		      "shared item %u: queued %llu times, ran %llu", i,
		      (unsigned long long)atomic_load(&t_shared[i].queued),
		      (unsigned long long)atomic_load(&t_shared[i].runs));
	check(raised == claimed, "%llu events raised, %llu claimed", (unsigned long long)raised,
	      (unsigned long long)claimed);
	check(raised > 0, "no events raised");
	if (T.nesting)
		check(nested > 0, "no NMI nested in %.1f s", opt_seconds);
#ifdef NKP_HAVE_RCU_NMI
	if (T.rcu) {
		uint64_t from_idle = 0;

		for (unsigned i = 0; i < opt_cpus; i++)
			from_idle += rcu_nmi_from_idle(i);
		check(rcu_warnings(RCU_WARN_KINDS) == 0, "%llu RCU nesting invariant warnings",
		      (unsigned long long)rcu_warnings(RCU_WARN_KINDS));
		check(from_idle > 0, "no NMI arrived while a CPU was idle");
		printf("# rcu: %llu NMIs made RCU watch an idle CPU\n", (unsigned long long)from_idle);
	}
#endif
	if (T.churn) {
		struct nmi_handler_info h;
		unsigned n = 0;

		while (nmi_get_handler_info(n, &h) == NMI_OK)
			n++;
		check(n == 3, "%u handlers registered after the churn, want 3", n);
		check(atomic_load(&t_churn_ops) > 0, "no churn happened");
		printf("# churn: %llu register/unregister operations\n",
		       (unsigned long long)atomic_load(&t_churn_ops));
	}
	printf("# %s: %u CPUs %.1f s: events %llu, NMIs sent %llu collapsed %llu taken %llu "
	       "(nested %llu, depth %llu), dispatches %llu, latched %llu, unknown %llu\n",
	       T.name, opt_cpus, opt_seconds, (unsigned long long)raised,
	       (unsigned long long)sent, (unsigned long long)collapsed,
	       (unsigned long long)delivered, (unsigned long long)nested,
	       (unsigned long long)maxdepth, (unsigned long long)entries,
	       (unsigned long long)latched, (unsigned long long)unknown);
}

/* --- the tests ------------------------------------------------------------------ */

static void test_storm(void)
{
	setup_core();
	start_cpus();
	stop_and_check();
}

/*
 * The lost-NMI probe, with the loss made to happen every round.  CPU 0 owns
 * the external reasons.  Its claim handler is held (spinning) inside an NMI;
 * meanwhile a local event is raised (its NMI waits in the latch) and SERR is
 * asserted with an NMI that merges into the latch and is lost.  The latched
 * NMI is claimed by the local handler, so nothing looks at SERR again - except
 * the probe sent from CPU 0's next tick.  Every SERR must be serviced within
 * T_PROBE_BOUND_NS, each one by a probe NMI.
 */
static _Atomic int p_hold;		/* 1: CPU 0's claim handler waits */
static _Atomic int p_holding;		/* CPU 0 is waiting in it */
static _Atomic uint64_t p_serr_handled, p_serr_by_probe;

static int probe_claim(unsigned type, struct nmi_frame *f)
{
	int n = claim_handler(type, f);
	uint64_t start;

	if (os_cpu_id() != 0 || !atomic_load(&p_hold))
		return n;
	atomic_store(&p_holding, 1);
	start = now_ns();
	while (atomic_load(&p_hold) && now_ns() - start < 2000000000ull)
		__builtin_ia32_pause();
	atomic_store(&p_holding, 0);
	return n;
}

static int serr_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	nk_atomic_inc(&p_serr_handled);
	if (nmi_probe_pending(os_cpu_id()))
		nk_atomic_inc(&p_serr_by_probe);
	return NMI_HANDLED;
}

static _Atomic bool p_cpu0_go, p_cpu0_exit;

static void *probe_cpu0(void *arg)
{
	(void)arg;
	t_rnd_state = opt_seed + 7;
	if (nkp_cpu_attach(0))
		violation("CPU 0: attach failed");
	atomic_store(&p_cpu0_go, true);
	while (!atomic_load(&p_cpu0_exit))
		sleep_us(100);
	nkp_cpu_detach();
	return NULL;
}

static bool p_is_holding(void)
{
	return atomic_load(&p_holding);
}

static bool p_go(void)
{
	return atomic_load(&p_cpu0_go);
}

static bool p_serr_clear(void)
{
	return !(nkp_reason_asserted() & OS_NMI_REASON_SERR);
}

static void test_probe(void)
{
	unsigned rounds = (unsigned)(opt_seconds * 20), serviced = 0, lost = 0;
	uint64_t worst = 0;
	pthread_t th;
	int err;

	opt_cpus = 1;
	T.irq_work = false;
	{
		struct nkp_config cfg = { .ncpus = 1, .tick_hz = 250, .console_fd = 2,
					  .polled = opt_polled };

		if (nkp_init(&cfg))
			exit(2);
	}
	nk_log_set_console_level(NK_LOG_ERR);
	nmi_lost_recovery = !opt_no_probe;
	if ((err = nmi_register(NMI_LOCAL, "torture-claim", probe_claim, 0)) ||
	    (err = nmi_register(NMI_SERR, "torture-serr", serr_handler, 0))) {
		printf("# nmi_register: %s\n", nmi_strerror(err));
		exit(2);
	}
	pthread_create(&th, NULL, probe_cpu0, NULL);
	wait_until(p_go, 5000000000ull);

	for (unsigned r = 0; r < rounds; r++) {
		struct nkp_cpu_stats before, after;
		uint64_t t0, dt;

		/* 1: CPU 0 takes an NMI and is held in its claim handler. */
		atomic_store(&p_hold, 1);
		raise_event(0);
		if (!wait_until(p_is_holding, 2000000000ull)) {
			violation("round %u: CPU 0 never took the first NMI", r);
			break;
		}
		/* 2: a local event: its NMI waits in the latch. */
		raise_event(0);
		/* 3: SERR, whose NMI merges into the full latch: lost. */
		nkp_get_cpu_stats(0, &before);
		nkp_reason_assert(OS_NMI_REASON_SERR);
		nkp_send_nmi(0);
		nkp_get_cpu_stats(0, &after);
		if (after.collapsed == before.collapsed)
			violation("round %u: the SERR NMI was not lost in the latch", r);
		else
			lost++;
		/* 4: release; the latched NMI is claimed locally. */
		t0 = now_ns();
		atomic_store(&p_hold, 0);
		if (wait_until(p_serr_clear, T_PROBE_BOUND_NS)) {
			serviced++;
			dt = now_ns() - t0;
			if (dt > worst)
				worst = dt;
		} else {
			violation("round %u: SERR still asserted %llu ms after its NMI was lost",
				  r, T_PROBE_BOUND_NS / 1000000);
			break;
		}
		/* Let the probe finish (one comes back empty) before the next round. */
		wait_until(probes_idle, 1000000000ull);
	}
	atomic_store(&p_cpu0_exit, true);
	pthread_join(th, NULL);

	{
		struct nmi_cpu_stats s;

		nmi_get_cpu_stats(0, &s);
		check(serviced == rounds, "%u of %u lost SERRs serviced", serviced, rounds);
		check(lost == rounds, "the SERR NMI was lost in %u of %u rounds", lost, rounds);
		check(atomic_load(&p_serr_by_probe) == serviced,
		      "%llu SERRs serviced while a probe was outstanding, want %u",
		      (unsigned long long)atomic_load(&p_serr_by_probe), serviced);
		check(s.unknown == 0, "%llu unknown NMIs", (unsigned long long)s.unknown);
		check(atomic_load(&tc[0].raised) == atomic_load(&tc[0].claimed),
		      "events raised %llu, claimed %llu",
		      (unsigned long long)atomic_load(&tc[0].raised),
		      (unsigned long long)atomic_load(&tc[0].claimed));
		printf("# probe: %u rounds, %u SERR NMIs lost, %u serviced (%llu while a probe was out); "
		       "worst %llu us; probes sent %llu found %llu absorbed %llu collapsed %llu\n",
		       rounds, lost, serviced, (unsigned long long)atomic_load(&p_serr_by_probe),
		       (unsigned long long)(worst / 1000),
		       (unsigned long long)s.probe_sent, (unsigned long long)s.probe_found,
		       (unsigned long long)s.probe_absorbed, (unsigned long long)s.probe_collapsed);
	}
}

/*
 * Panic shootdown under a storm: CPU 0 stops every other CPU; each runs the
 * callback in NMI context, parks, and stays parked.
 */
static _Atomic unsigned sd_callbacks;

static void sd_on_cpu(struct nmi_frame *f)
{
	(void)f;
	if (!(nkp_context() & NKP_CTX_NMI))
		violation("shootdown callback outside NMI context");
	atomic_fetch_add(&sd_callbacks, 1);
}

static void test_shootdown(void)
{
	int rc;

	setup_core();
	start_cpus();
	sleep_us((unsigned)(opt_seconds * 1e6 / 2));
	/* The main thread is no CPU: it shoots from os_cpu_id()'s spare slot. */
	rc = nmi_shootdown_cpus(sd_on_cpu);
	check(rc == NMI_OK, "nmi_shootdown_cpus: %s", nmi_strerror(rc));
	check(atomic_load(&sd_callbacks) == opt_cpus, "%u callbacks ran, want %u",
	      atomic_load(&sd_callbacks), opt_cpus);
	for (unsigned i = 0; i < opt_cpus; i++)
		check(nmi_cpu_parked(i), "CPU %u not parked", i);
	check(nmi_shootdown_cpus(sd_on_cpu) == NMI_EALREADY, "a second shootdown was not refused");
	sleep_us(100000);
	check(atomic_load(&sd_callbacks) == opt_cpus, "a parked CPU ran the callback again");
	printf("# shootdown: %u CPUs parked under a storm\n", opt_cpus);
}

struct test {
	const char *name;
	void (*fn)(void);
	bool nesting, irq_work, churn, nmi_delay, claim_spin;
	const char *what;
	bool rcu;
};

/* The tests whose point is nesting at arbitrary instructions need signals. */
static bool needs_signals(const struct test *t)
{
	return t->nesting && !t->irq_work;
}

static const struct test tests[] = {
	{ "storm", test_storm, false, false, false, false, false,
	  "NMI storm: events conserved, every dispatch accounted, every handler called", false },
	{ "nested", test_storm, true, false, false, true, true,
	  "nested NMI signals at random points are latched, never run inside a dispatch", false },
	{ "irq_work", test_storm, true, true, false, false, false,
	  "irq_work queued from NMIs runs once per queueing, in tick/IPI context", false },
	{ "churn", test_storm, false, true, true, false, false,
	  "handler register/unregister churn: no handler runs after unregister returns", false },
	{ "probe", test_probe, false, false, false, false, false,
	  "lost-NMI probe: a SERR lost in the latch is serviced by the next tick's probe", false },
	{ "shootdown", test_shootdown, false, false, false, false, false,
	  "panic shootdown parks every CPU during a storm", false },
#ifdef NKP_HAVE_RCU_NMI
	{ "rcu_nmi", test_storm, true, false, false, false, true,
	  "rcu_nmi_enter/exit nesting: NMIs from idle and nested at every step keep RCU watching",
	  true },
#endif
};

static int run_child(const struct test *t)
{
	T.name = t->name;
	T.nesting = t->nesting && !opt_polled;
	T.irq_work = t->irq_work;
	T.churn = t->churn;
	T.nmi_delay = t->nmi_delay;
	T.claim_spin = t->claim_spin;
	T.rcu = t->rcu;
	if (T.churn && opt_cpus < 4)
		opt_cpus = 4;
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* A hang (a CPU stuck in the core, a wait that never ends) fails the test. */
	alarm((unsigned)opt_seconds + 30);
	t->fn();
	if (atomic_load(&t_violations)) {
		printf("# FAILED: %lu invariant violations; first: %s\n",
		       atomic_load(&t_violations), t_first);
		t_checks_failed++;
	}
	fflush(stdout);
	/* Parked or ticking CPU threads may remain: leave without joining them. */
	_exit(t_checks_failed ? 1 : 0);
}

static void usage(void)
{
	fprintf(stderr, "usage: torture [-d SECONDS] [-c CPUS] [-s SEED] [-t TEST]... [--no-probe] [--polled]\n"
			"tests:");
	for (size_t i = 0; i < NK_ARRAY_SIZE(tests); i++)
		fprintf(stderr, " %s", tests[i].name);
	fprintf(stderr, "\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *only[NK_ARRAY_SIZE(tests) + 1];
	size_t nonly = 0, n = 0, failed = 0;

	opt_seed = (unsigned long)time(NULL);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-d") && i + 1 < argc)
			opt_seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "-c") && i + 1 < argc)
			opt_cpus = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "-s") && i + 1 < argc)
			opt_seed = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc && nonly < NK_ARRAY_SIZE(only))
			only[nonly++] = argv[++i];
		else if (!strcmp(argv[i], "--no-probe"))
			opt_no_probe = true;
		else if (!strcmp(argv[i], "--polled"))
			opt_polled = true;
		else
			usage();
	}
	if (opt_cpus < 1 || opt_cpus > T_MAX_CPUS || opt_seconds <= 0)
		usage();
	printf("# torture: seed %lu (-s %lu repeats the random choices)\n", opt_seed, opt_seed);
	fflush(stdout);
	for (size_t i = 0; i < NK_ARRAY_SIZE(tests); i++) {
		const struct test *t = &tests[i];
		bool want = nonly == 0;
		pid_t pid;
		int status;

		for (size_t j = 0; j < nonly; j++)
			if (!strcmp(only[j], t->name))
				want = true;
		if (!want)
			continue;
		n++;
		if (opt_polled && needs_signals(t)) {
			printf("ok %zu - %s # SKIP polled delivery cannot nest\n", n, t->name);
			fflush(stdout);
			continue;
		}
		pid = fork();
		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0)
			run_child(t);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			printf("ok %zu - %s: %s\n", n, t->name, t->what);
		} else {
			failed++;
			if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
				printf("# %s: hung: still running %u s after its end\n", t->name, 30);
			else if (WIFSIGNALED(status))
				printf("# %s: killed by signal %d\n", t->name, WTERMSIG(status));
			printf("not ok %zu - %s: %s\n", n, t->name, t->what);
		}
		fflush(stdout);
	}
	if (n == 0)
		usage();
	printf("1..%zu\n", n);
	return failed ? 1 : 0;
}
