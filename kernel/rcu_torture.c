/*
 * rcu_torture.c: the RCU torture test (suite "rcu_torture", scenarios
 * rcu.torture*).  For rcu_torture_secs seconds, on every CPU at once:
 *
 *  - readers in NMI handlers (every NMI reads the published objects) and in
 *    kernel threads (rcu_read_lock sections that hold an object a while);
 *  - three writers that replace what the readers read and poison the old
 *    one once RCU says nobody can still hold it: through synchronize_rcu(),
 *    through call_rcu(), and by replacing NMI handlers (nmi_register a new
 *    one, nmi_unregister the old one, then poison the old handler's object);
 *  - NMIs hammering every CPU: each CPU's hammer thread sends bursts of NMIs
 *    to random CPUs (itself included), then sleeps;
 *  - CPUs going idle and waking all the time, because every thread sleeps
 *    now and then, so NMIs keep arriving in idle.
 *
 * A reader that sees a poisoned object, or one reused under it, counts a
 * use-after-poison; a reader that runs while RCU does not watch its CPU
 * counts an unwatched reader.  Pass: zero of both, zero RCU invariant
 * warnings, zero stall warnings, and every part of the machinery seen
 * working.  With rcu_torture_broken_sync=1 (synchronize_rcu returns at
 * once) the same test must fail: the scenario rcu.torture.broken_sync
 * checks that it does.
 */
#include <stdatomic.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <kernel/ktest.h>
#include <kernel/sched.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>
#include <nmikit/param.h>
#include <nmikit/rcu.h>

static unsigned int rcu_torture_secs = 8;
NK_PARAM_UINT("rcu_torture_secs", rcu_torture_secs, 1, 3600,
	      "how long test=rcu_torture.run tortures RCU, in seconds");

#define TORT_POISON	0x9015011ed0b1ec75ull
#define TORT_OBJS	64		/* per writer: reused only after 63 grace periods */
#define TORT_HANDLERS	4		/* NMI handlers the handler writer rotates */
#define TORT_NMI_SPINS	30		/* PAUSEs an NMI reader holds an object */
#define TORT_THREAD_SPINS 200		/* ... a thread reader */

struct tort_obj {
	_Atomic uint64_t poison;	/* 0 while live, TORT_POISON once retired */
	_Atomic uint64_t gen;		/* unique per (re)use */
	_Atomic uint64_t pat[4];	/* derived from gen */
	_Atomic int state;		/* call_rcu writer: enum tort_state */
	struct rcu_head rh;
};

enum tort_state { TORT_FREE, TORT_LIVE, TORT_RETIRED };
enum { SLOT_SYNC, SLOT_CALL, TORT_SLOTS };

static struct tort_obj tort_pool[TORT_SLOTS][TORT_OBJS];
static _Atomic(struct tort_obj *) tort_slot[TORT_SLOTS];
static struct tort_obj tort_hobj[TORT_HANDLERS];	/* one per churned handler */
static _Atomic uint64_t tort_gen;

struct tort_cpu {
	_Atomic uint64_t pending;	/* torture NMIs sent here, not yet seen */
	_Atomic uint64_t nmis, nmi_reads, thread_reads;
} __attribute__((aligned(64)));

static struct tort_cpu tort_cpus[MAX_CPUS];
static _Atomic uint64_t tort_bad, tort_unwatched, tort_sent, tort_cbs, tort_hcalls;
static _Atomic uint64_t tort_swaps[3];
static _Atomic uint64_t tort_first_bad_ns;
static _Atomic bool tort_stop;

static const uint64_t tort_mult[4] = {
	0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull, 0x94d049bb133111ebull, 3,
};

static uint64_t tort_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Writer side: give `o` a new life.  Published afterwards with release. */
static void tort_init(struct tort_obj *o)
{
	uint64_t g = atomic_fetch_add(&tort_gen, 1) + 1;

	atomic_store_explicit(&o->gen, g, memory_order_relaxed);
	for (int i = 0; i < 4; i++)
		atomic_store_explicit(&o->pat[i], g * tort_mult[i], memory_order_relaxed);
	atomic_store_explicit(&o->poison, 0, memory_order_release);
}

static void tort_note_bad(void)
{
	uint64_t none = 0;

	atomic_fetch_add(&tort_bad, 1);
	atomic_compare_exchange_strong(&tort_first_bad_ns, &none, os_timestamp_ns());
}

/*
 * Read `o` and hold it for `spins` PAUSEs: it must be live, consistent and
 * the same object (same generation) from start to end.
 * NMI-safe: atomic loads, PAUSE, an atomic counter; bounded by `spins`.
 */
static void tort_check(struct tort_obj *o, unsigned spins)
{
	uint64_t g = atomic_load_explicit(&o->gen, memory_order_relaxed);
	bool bad = atomic_load_explicit(&o->poison, memory_order_relaxed) != 0;

	for (int i = 0; i < 4; i++)
		if (atomic_load_explicit(&o->pat[i], memory_order_relaxed) != g * tort_mult[i])
			bad = true;
	for (unsigned s = 0; s < spins && !bad; s++) {
		cpu_relax();
		if (atomic_load_explicit(&o->poison, memory_order_relaxed))
			bad = true;
	}
	if (atomic_load_explicit(&o->gen, memory_order_relaxed) != g)
		bad = true;
	if (bad)
		tort_note_bad();
}

/*
 * NMI context: the main NMI reader.  Safe: atomic loads and counters only,
 * bounded by TORT_NMI_SPINS per slot.  While the torture runs it claims every
 * NMI on purpose: NMIs that the latch merged leave surplus counts, and
 * claiming only counted ones would make the dispatch report the rest as
 * unknown; the lost-NMI probe's own NMIs are claimed too (it then probes on
 * each tick, which only adds NMIs to the torture).
 */
static int tort_nmi(unsigned type, struct nmi_frame *f)
{
	struct tort_cpu *c = &tort_cpus[this_cpu_id()];
	uint64_t p = atomic_load_explicit(&c->pending, memory_order_relaxed);

	(void)type;
	(void)f;
	while (p && !atomic_compare_exchange_weak(&c->pending, &p, p - 1))
		;
	atomic_fetch_add_explicit(&c->nmis, 1, memory_order_relaxed);
	if (!rcu_is_watching())
		atomic_fetch_add(&tort_unwatched, 1);
	for (int s = 0; s < TORT_SLOTS; s++) {
		struct tort_obj *o = rcu_dereference(tort_slot[s]);
		if (o)
			tort_check(o, TORT_NMI_SPINS);
	}
	atomic_fetch_add_explicit(&c->nmi_reads, 1, memory_order_relaxed);
	return NMI_HANDLED;
}

/* NMI context: the churned handlers, each reading its own object. */
#define TORT_HANDLER(k)								\
	static int tort_h##k(unsigned type, struct nmi_frame *f)		\
	{									\
		(void)type;							\
		(void)f;							\
		if (!rcu_is_watching())						\
			atomic_fetch_add(&tort_unwatched, 1);			\
		tort_check(&tort_hobj[k], TORT_NMI_SPINS);			\
		atomic_fetch_add_explicit(&tort_hcalls, 1, memory_order_relaxed); \
		return NMI_DONE;						\
	}
TORT_HANDLER(0)
TORT_HANDLER(1)
TORT_HANDLER(2)
TORT_HANDLER(3)
static const nmi_handler_fn tort_hfns[TORT_HANDLERS] = { tort_h0, tort_h1, tort_h2, tort_h3 };
static const char *const tort_hnames[TORT_HANDLERS] = {
	"rcu-tort-h0", "rcu-tort-h1", "rcu-tort-h2", "rcu-tort-h3",
};

/* --- threads ------------------------------------------------------------- */

static void tort_reader(void *arg)
{
	struct tort_cpu *c = &tort_cpus[(uintptr_t)arg];
	uint64_t rng = 0x2545f4914f6cdd1dull ^ ((uintptr_t)arg << 32);

	while (!atomic_load(&tort_stop)) {
		for (int i = 0; i < 32; i++) {
			rcu_read_lock();
			if (!rcu_is_watching())
				atomic_fetch_add(&tort_unwatched, 1);
			for (int s = 0; s < TORT_SLOTS; s++)
				tort_check(rcu_dereference(tort_slot[s]), TORT_THREAD_SPINS);
			rcu_read_unlock();
			atomic_fetch_add_explicit(&c->thread_reads, 1, memory_order_relaxed);
		}
		switch (tort_rand(&rng) % 4) {
		case 0:
			sleep_ms(1);	/* let this CPU go idle */
			break;
		case 1:
			yield();
			break;
		default:
			break;
		}
	}
}

static void tort_hammer(void *arg)
{
	uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uintptr_t)arg;
	unsigned ncpus = os_cpu_count();

	while (!atomic_load(&tort_stop)) {
		unsigned burst = 8 + (unsigned)(tort_rand(&rng) % 16);
		for (unsigned i = 0; i < burst; i++) {
			unsigned to = (unsigned)(tort_rand(&rng) % ncpus);
			if (!os_cpu_online(to))
				continue;
			atomic_fetch_add(&tort_cpus[to].pending, 1);
			os_send_nmi(to);
			atomic_fetch_add_explicit(&tort_sent, 1, memory_order_relaxed);
			for (unsigned s = (unsigned)(tort_rand(&rng) % 256); s; s--)
				cpu_relax();
		}
		sleep_ms(1);		/* this CPU may go idle now */
	}
}

/* Writer 1: replace, synchronize_rcu(), poison the old object. */
static void tort_writer_sync(void *arg)
{
	unsigned i = 1;

	(void)arg;
	while (!atomic_load(&tort_stop)) {
		struct tort_obj *n = &tort_pool[SLOT_SYNC][i];

		i = (i + 1) % TORT_OBJS;
		tort_init(n);
		struct tort_obj *old = rcu_replace_pointer(tort_slot[SLOT_SYNC], n);
		synchronize_rcu();
		atomic_store_explicit(&old->poison, TORT_POISON, memory_order_relaxed);
		atomic_fetch_add(&tort_swaps[0], 1);
		yield();
	}
}

/* call_rcu callback (task context, this CPU's callback thread). */
static void tort_retire(struct rcu_head *h)
{
	struct tort_obj *o = (struct tort_obj *)((char *)h - __builtin_offsetof(struct tort_obj, rh));

	atomic_store_explicit(&o->poison, TORT_POISON, memory_order_relaxed);
	atomic_store_explicit(&o->state, TORT_FREE, memory_order_release);
	atomic_fetch_add(&tort_cbs, 1);
}

/* Writer 2: replace, call_rcu() the old object; the callback poisons it. */
static void tort_writer_call(void *arg)
{
	unsigned i = 1, n_swaps = 0;

	(void)arg;
	while (!atomic_load(&tort_stop)) {
		struct tort_obj *n = &tort_pool[SLOT_CALL][i];

		if (atomic_load_explicit(&n->state, memory_order_acquire) != TORT_FREE) {
			sleep_ms(1);	/* its callback has not run yet */
			continue;
		}
		i = (i + 1) % TORT_OBJS;
		tort_init(n);
		atomic_store(&n->state, TORT_LIVE);
		struct tort_obj *old = rcu_replace_pointer(tort_slot[SLOT_CALL], n);
		atomic_store(&old->state, TORT_RETIRED);
		call_rcu(&old->rh, tort_retire);
		atomic_fetch_add(&tort_swaps[1], 1);
		if (++n_swaps % 4 == 0)
			sleep_ms(1);
		else
			yield();
	}
}

/*
 * Writer 3: NMI handlers replaced under running NMIs.  Register the next
 * handler, unregister the current one (which waits for a grace period),
 * poison the current one's object.
 */
static void tort_writer_handlers(void *arg)
{
	uint64_t rng = 0x853c49e6748fea9bull;
	unsigned k = 0;

	(void)arg;
	tort_init(&tort_hobj[0]);
	if (nmi_register(NMI_LOCAL, tort_hnames[0], tort_hfns[0], 0) != NMI_OK) {
		KT_FAIL("cannot register %s", tort_hnames[0]);
		return;
	}
	while (!atomic_load(&tort_stop)) {
		unsigned next = (k + 1) % TORT_HANDLERS;

		sleep_ms(1 + tort_rand(&rng) % 3);
		tort_init(&tort_hobj[next]);
		if (nmi_register(NMI_LOCAL, tort_hnames[next], tort_hfns[next], 0) != NMI_OK) {
			KT_FAIL("cannot register %s", tort_hnames[next]);
			break;
		}
		nmi_unregister(NMI_LOCAL, tort_hnames[k]);
		atomic_store_explicit(&tort_hobj[k].poison, TORT_POISON, memory_order_relaxed);
		atomic_fetch_add(&tort_swaps[2], 1);
		k = next;
	}
	nmi_unregister(NMI_LOCAL, tort_hnames[k]);
	atomic_store_explicit(&tort_hobj[k].poison, TORT_POISON, memory_order_relaxed);
}

/* --- the run ----------------------------------------------------------- */

#define TORT_MAX_TASKS	48

struct tort_result {
	unsigned secs, cpus;
	uint64_t nmis, nmi_reads, thread_reads, from_idle, idle_periods;
	uint64_t gps, warnings, stalls;
};

static struct task *tort_spawn(struct task **tasks, unsigned *n, const char *name,
			       task_fn *fn, unsigned cpu)
{
	char buf[TASK_NAME_MAX];
	struct task *t;

	if (*n >= TORT_MAX_TASKS)
		return NULL;
	nk_snprintf(buf, sizeof(buf), "%s/%u", name, cpu);
	t = task_create_kernel(buf, fn, (void *)(uintptr_t)cpu, (int)cpu);
	if (t)
		tasks[(*n)++] = t;
	else
		KT_FAIL("cannot start %s", buf);
	return t;
}

static void tort_reset(void)
{
	for (int s = 0; s < TORT_SLOTS; s++) {
		for (int i = 0; i < TORT_OBJS; i++) {
			struct tort_obj *o = &tort_pool[s][i];
			atomic_store(&o->poison, TORT_POISON);
			atomic_store(&o->state, TORT_FREE);
		}
		tort_init(&tort_pool[s][0]);
		atomic_store(&tort_pool[s][0].state, TORT_LIVE);
		rcu_assign_pointer(tort_slot[s], &tort_pool[s][0]);
	}
	for (int k = 0; k < TORT_HANDLERS; k++)
		atomic_store(&tort_hobj[k].poison, TORT_POISON);
	for (unsigned c = 0; c < MAX_CPUS; c++)
		tort_cpus[c] = (struct tort_cpu){ 0 };
	atomic_store(&tort_bad, 0);
	atomic_store(&tort_unwatched, 0);
	atomic_store(&tort_sent, 0);
	atomic_store(&tort_cbs, 0);
	atomic_store(&tort_hcalls, 0);
	atomic_store(&tort_first_bad_ns, 0);
	for (int i = 0; i < 3; i++)
		atomic_store(&tort_swaps[i], 0);
	atomic_store(&tort_stop, false);
}

static void tort_run(unsigned secs, struct tort_result *res)
{
	static struct task *tasks[TORT_MAX_TASKS];
	static uint64_t dt0[MAX_CPUS], idle0[MAX_CPUS];
	unsigned ntasks = 0, ncpus = 0;
	struct rcu_stats s0, s1;
	unsigned cpus[MAX_CPUS];

	tort_reset();
	for (unsigned c = 0; c < os_cpu_count(); c++)
		if (os_cpu_online(c))
			cpus[ncpus++] = c;
	rcu_get_stats(&s0);
	uint64_t warn0 = rcu_warnings(RCU_WARN_KINDS);
	for (unsigned i = 0; i < ncpus; i++) {
		dt0[cpus[i]] = rcu_dynticks_read(cpus[i]);
		idle0[cpus[i]] = rcu_nmi_from_idle(cpus[i]);
	}
	if (nmi_register(NMI_LOCAL, "rcu-torture", tort_nmi, 0) != NMI_OK) {
		KT_FAIL("cannot register the torture NMI handler");
		return;
	}

	for (unsigned i = 0; i < ncpus; i++) {
		tort_spawn(tasks, &ntasks, "rt-read", tort_reader, cpus[i]);
		tort_spawn(tasks, &ntasks, "rt-nmi", tort_hammer, cpus[i]);
	}
	tort_spawn(tasks, &ntasks, "rt-wsync", tort_writer_sync, cpus[1 % ncpus]);
	tort_spawn(tasks, &ntasks, "rt-wcall", tort_writer_call, cpus[2 % ncpus]);
	tort_spawn(tasks, &ntasks, "rt-whand", tort_writer_handlers, cpus[3 % ncpus]);

	uint64_t start = os_timestamp_ns(), next_report = 10;
	for (;;) {
		uint64_t now = os_timestamp_ns();
		uint64_t first_bad = atomic_load(&tort_first_bad_ns);
		if (now - start >= secs * 1000000000ull)
			break;
		/* Once it has failed, a second more is enough to show how badly. */
		if (first_bad && now - first_bad > 1000000000ull)
			break;
		if ((now - start) / 1000000000ull >= next_report) {
			rcu_get_stats(&s1);
			kt_diag("rcu-torture: %llu s, %llu grace periods, use-after-poison %llu",
				(unsigned long long)next_report,
				(unsigned long long)(s1.gp_seq - s0.gp_seq),
				(unsigned long long)atomic_load(&tort_bad));
			next_report += 10;
		}
		sleep_ms(50);
	}
	res->secs = (unsigned)((os_timestamp_ns() - start) / 1000000000ull);
	atomic_store(&tort_stop, true);
	for (unsigned i = 0; i < ntasks; i++)
		task_wait(tasks[i], NULL);
	nmi_unregister(NMI_LOCAL, "rcu-torture");
	rcu_barrier();

	rcu_get_stats(&s1);
	*res = (struct tort_result){
		.secs = res->secs,
		.cpus = ncpus,
		.gps = s1.gp_seq - s0.gp_seq,
		.warnings = rcu_warnings(RCU_WARN_KINDS) - warn0,
		.stalls = s1.stalls - s0.stalls,
	};
	for (unsigned i = 0; i < ncpus; i++) {
		unsigned c = cpus[i];
		uint64_t from_idle = rcu_nmi_from_idle(c) - idle0[c];
		uint64_t moves = rcu_dynticks_read(c) - dt0[c];

		res->nmis += atomic_load(&tort_cpus[c].nmis);
		res->nmi_reads += atomic_load(&tort_cpus[c].nmi_reads);
		res->thread_reads += atomic_load(&tort_cpus[c].thread_reads);
		res->from_idle += from_idle;
		/* Each idle period moves the counter by 2, each NMI from idle by 2. */
		res->idle_periods += moves / 2 > from_idle ? moves / 2 - from_idle : 0;
		kt_diag("CPU %u: %llu NMIs, %llu from idle; %llu thread reads; %llu idle periods",
			c, (unsigned long long)atomic_load(&tort_cpus[c].nmis),
			(unsigned long long)from_idle,
			(unsigned long long)atomic_load(&tort_cpus[c].thread_reads),
			(unsigned long long)(moves / 2 > from_idle ? moves / 2 - from_idle : 0));
	}
}

KTEST(rcu_torture, run)
{
	struct tort_result r = { 0 };

	tort_run(rcu_torture_secs, &r);
	/* Log lines hold NK_LOG_TEXT_MAX (224) characters: three lines. */
	kt_diag("rcu-torture: %u s on %u CPUs: NMI reads %llu (%llu NMIs from idle), thread reads %llu, "
		"NMIs sent %llu, idle periods %llu",
		r.secs, r.cpus, (unsigned long long)r.nmi_reads, (unsigned long long)r.from_idle,
		(unsigned long long)r.thread_reads, (unsigned long long)atomic_load(&tort_sent),
		(unsigned long long)r.idle_periods);
	kt_diag("rcu-torture: grace periods %llu, swaps: sync %llu call_rcu %llu handlers %llu "
		"(handler calls %llu), callbacks %llu",
		(unsigned long long)r.gps,
		(unsigned long long)atomic_load(&tort_swaps[0]),
		(unsigned long long)atomic_load(&tort_swaps[1]),
		(unsigned long long)atomic_load(&tort_swaps[2]),
		(unsigned long long)atomic_load(&tort_hcalls),
		(unsigned long long)atomic_load(&tort_cbs));
	kt_diag("rcu-torture: use-after-poison %llu, unwatched readers %llu, invariant warnings %llu, stall warnings %llu",
		(unsigned long long)atomic_load(&tort_bad), (unsigned long long)atomic_load(&tort_unwatched),
		(unsigned long long)r.warnings, (unsigned long long)r.stalls);

	uint64_t bad = atomic_load(&tort_bad), unwatched = atomic_load(&tort_unwatched);
	uint64_t swaps_sync = atomic_load(&tort_swaps[0]), swaps_call = atomic_load(&tort_swaps[1]);
	uint64_t swaps_handlers = atomic_load(&tort_swaps[2]), handler_calls = atomic_load(&tort_hcalls);
	uint64_t callbacks = atomic_load(&tort_cbs);

	/* What must never happen. */
	KT_EXPECT_EQ(bad, 0);
	KT_EXPECT_EQ(unwatched, 0);
	KT_EXPECT_EQ(r.warnings, 0);
	KT_EXPECT_EQ(r.stalls, 0);
	/* What must have happened for the run to mean anything. */
	KT_EXPECT_GT(r.nmi_reads, 100);
	KT_EXPECT_GT(r.thread_reads, 100);
	KT_EXPECT_GT(r.from_idle, 0);
	KT_EXPECT_GT(r.idle_periods, 0);
	KT_EXPECT_GT(r.gps, 10);
	KT_EXPECT_GT(swaps_sync, 5);
	KT_EXPECT_GT(swaps_call, 5);
	KT_EXPECT_GT(swaps_handlers, 5);
	KT_EXPECT_GT(handler_calls, 0);
	KT_EXPECT_GT(callbacks, 5);
}
