/*
 * The portable NMI core: the per-CPU entry state machine (nmi_entry), handler
 * chains walked lock-free in NMI context, external reasons, the back-to-back
 * heuristic, the unknown-NMI policy, the emergency slot and panic shootdown,
 * and statistics.  docs/nmi-dispatch.md walks through one NMI.
 */
#include <nmikit/rcu_nmi_inline.h>

#include <nmikit/compiler.h>
#include <nmikit/core_cpu.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/nmi_probe_inline.h>
#include <nmikit/os.h>
#include <nmikit/param.h>
#include <nmikit/rcu.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- tunables ------------------------------------------------------------ */

bool unknown_nmi_panic = false;
NK_PARAM_BOOL("unknown_nmi_panic", unknown_nmi_panic,
	      "panic on an NMI that no handler and no external reason explains");

uint64_t nmi_longest_ns = 1000000;
NK_PARAM_UINT("nmi_longest_ns", nmi_longest_ns, 1000, 10000000000ull,
	      "warn when one NMI handler call runs longer than this many ns");

/* Shortest time between two warnings of one kind. */
#define NMI_WARN_INTERVAL_NS	(5ull * 1000 * 1000 * 1000)
/* How long a shootdown waits for the other CPUs; when unregister warns. */
#define NMI_WAIT_LIMIT_NS	(1000ull * 1000 * 1000)

#define NMI_NO_CPU		(~0u)

/* --- handler chains ------------------------------------------------------ */

enum nmi_slot_state { SLOT_FREE = 0, SLOT_LIVE, SLOT_DYING };

/*
 * One registered handler.  Handlers live in a fixed pool (core allocates
 * nothing).  A slot is linked into exactly one chain while LIVE; once
 * unlinked it is DYING until nmi_unregister() has seen every CPU leave NMI
 * context, and only then FREE for reuse, so a CPU still walking the chain
 * never finds a slot rewritten under it.
 *
 * The fields the walk touches on every call (next, fn, calls, limit_cycles,
 * and claimed when it claims) come first: the walk reads one cache line per
 * handler.  The rest is read on the slow path or by the statistics.
 */
struct nmi_action {
	_Atomic(struct nmi_action *) next;
	nmi_handler_fn fn;
	_Atomic uint64_t calls;
	/*
	 * min(longest_cycles, nmi_longest_ns in cycles): a call longer than
	 * this is a new longest or a slow call, so the walk compares each call
	 * once.  Never above that minimum (see nmi_limit_refresh()); below it
	 * only costs a trip to the slow path, which recomputes it.
	 */
	_Atomic uint64_t limit_cycles;
	_Atomic uint64_t claimed;
	_Atomic uint64_t longest_cycles;	/* os_cycles(); ns only when read */
	_Atomic uint64_t slow;
	_Atomic uint64_t warn_after_ns;	/* rate limit of the "too long" warning */
	unsigned type;
	unsigned state;			/* enum nmi_slot_state, writers' lock */
	char name[NMI_NAME_MAX];
} NK_CACHE_ALIGNED;

_Static_assert(offsetof(struct nmi_action, claimed) + sizeof(uint64_t) <= NK_CACHELINE,
	       "the walk's fields of a handler share one cache line");

static struct nmi_action nmi_actions[NMI_MAX_HANDLERS];
static _Atomic(struct nmi_action *) nmi_chains[NMI_TYPE_COUNT];

/*
 * Serialises register/unregister among themselves.  NMI code never touches
 * it: readers walk the chains through acquire loads only, so a CPU that takes
 * an NMI while holding this lock cannot deadlock against itself.
 */
static atomic_flag nmi_writers = ATOMIC_FLAG_INIT;

/*
 * Guards the external reason port.  NMI code only ever *tries* to take it: a
 * CPU that crashed while holding it (or one stuck in a SERR handler) must not
 * hang every later NMI on the owner CPU.
 */
static atomic_flag nmi_reason_lock = ATOMIC_FLAG_INIT;
static _Atomic unsigned nmi_owner_cpu;		/* reads external reasons */

/*
 * Doorbell callbacks, one slot per bit: slots of nmi_actions (so they are
 * timed, counted and listed like chain handlers) with type NMI_DOORBELL,
 * in no chain.  Written under the writers' lock; the dispatch reads a bit's
 * pointer with an acquire load.
 */
static _Atomic(struct nmi_action *) nmi_bells[NMI_DOORBELL_BITS];

#define NMI_BELL_RUNG	0x00000000ffffffffull
#define NMI_BELL_LISTEN	0xffffffff00000000ull

static _Atomic(nmi_emergency_fn) nmi_emergency;
static _Atomic uint64_t nmi_unknown_warn_after;
static _Atomic uint64_t nmi_external_warn_after;

/* --- per-CPU state ------------------------------------------------------- */

/* The per-CPU block (struct nk_cpu, <nmikit/core_cpu.h>): this file owns it. */
struct nk_cpu nk_cpus[NMIKIT_MAX_CPUS];

/*
 * The same block pointer, but gcc may no longer assume where it came from,
 * so it computes a member's address where it is used.  Without this, gcc
 * computes &k->nmi once at the top of nmi_entry() (the state's locked
 * decrement and the out-of-line calls want it in a register) and keeps it
 * in a stack slot across the handler calls: a store and a reload on every
 * NMI.  Laundered, it costs one register copy where it is used.
 */
static inline struct nk_cpu *nk_relaunder(struct nk_cpu *k)
{
#if defined(__GNUC__)
	__asm__("" : "+r"(k));
#endif
	return k;
}

static inline struct nmi_cpu *nmi_this_cpu(void)
{
	return &nk_this_cpu()->nmi;
}

/* --- small helpers ------------------------------------------------------- */

static size_t nmi_strnlen(const char *s, size_t max)
{
	size_t n = 0;

	while (n < max && s[n])
		n++;
	return n;
}

static bool nmi_streq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

/*
 * One caller per interval gets true.  NMI-safe: one load and one
 * compare-exchange, no waiting; a CPU that loses the race just stays quiet.
 */
static bool nmi_ratelimit(_Atomic uint64_t *after_ns, uint64_t interval)
{
	uint64_t now = os_timestamp_ns();
	uint64_t after = atomic_load_explicit(after_ns, memory_order_relaxed);

	if (now < after)
		return false;
	return atomic_compare_exchange_strong_explicit(after_ns, &after, now + interval,
						       memory_order_relaxed,
						       memory_order_relaxed);
}

static os_irqflags_t nmi_writers_lock(void)
{
	os_irqflags_t flags = os_local_irq_save();

	while (atomic_flag_test_and_set_explicit(&nmi_writers, memory_order_acquire))
		os_cpu_relax();
	return flags;
}

static void nmi_writers_unlock(os_irqflags_t flags)
{
	atomic_flag_clear_explicit(&nmi_writers, memory_order_release);
	os_local_irq_restore(flags);
}

/* --- errors and names ---------------------------------------------------- */

const char *nmi_strerror(int err)
{
	switch (err) {
	case NMI_OK:		return "success";
	case NMI_EINVAL:	return "invalid argument (NULL handler or name, or bad flags)";
	case NMI_ETYPE:		return "unknown NMI type";
	case NMI_EEXIST:	return "a handler of that name is already registered";
	case NMI_EBUSY:		return "slot already taken (one SERR/IO_CHECK handler, one emergency handler)";
	case NMI_ENOENT:	return "no such handler";
	case NMI_EINNMI:	return "not allowed in NMI context";
	case NMI_ENOSPC:	return "handler table full";
	case NMI_ENAMETOOLONG:	return "handler name too long";
	case NMI_EALREADY:	return "shootdown already in progress";
	case NMI_ETIMEDOUT:	return "not every CPU answered in time";
	case NMI_ERANGE:	return "CPU number out of range";
	}
	return "unknown error";
}

const char *nmi_type_name(unsigned type)
{
	static const char *const names[NMI_TYPE_COUNT] = {
		[NMI_LOCAL] = "LOCAL",
		[NMI_UNKNOWN] = "UNKNOWN",
		[NMI_SERR] = "SERR",
		[NMI_IO_CHECK] = "IO_CHECK",
	};

	if (type == NMI_DOORBELL)
		return "DOORBELL";
	return type < NMI_TYPE_COUNT ? names[type] : "?";
}

/* --- registration -------------------------------------------------------- */

/* Writers' lock held. */
static struct nmi_action *nmi_find(unsigned type, const char *name)
{
	struct nmi_action *a;

	a = atomic_load_explicit(&nmi_chains[type], memory_order_relaxed);
	for (; a; a = atomic_load_explicit(&a->next, memory_order_relaxed))
		if (nmi_streq(a->name, name))
			return a;
	return NULL;
}

/* Writers' lock held. */
static struct nmi_action *nmi_free_slot(void)
{
	for (size_t i = 0; i < NK_ARRAY_SIZE(nmi_actions); i++)
		if (nmi_actions[i].state == SLOT_FREE)
			return &nmi_actions[i];
	return NULL;
}

/*
 * Take a free slot and fill it completely, before it becomes reachable
 * (the caller publishes it with a release store); NULL when every slot is
 * in use.  Writers' lock held.
 */
static struct nmi_action *nmi_new_slot(unsigned type, const char *name, size_t len,
				       nmi_handler_fn fn)
{
	struct nmi_action *a = nmi_free_slot();

	if (!a)
		return NULL;
	for (size_t i = 0; i < NMI_NAME_MAX; i++)
		a->name[i] = i < len ? name[i] : '\0';
	a->fn = fn;
	a->type = type;
	a->state = SLOT_LIVE;
	atomic_store_explicit(&a->next, NULL, memory_order_relaxed);
	atomic_store_explicit(&a->calls, 0, memory_order_relaxed);
	atomic_store_explicit(&a->claimed, 0, memory_order_relaxed);
	atomic_store_explicit(&a->longest_cycles, 0, memory_order_relaxed);
	atomic_store_explicit(&a->limit_cycles, 0, memory_order_relaxed);
	atomic_store_explicit(&a->slow, 0, memory_order_relaxed);
	atomic_store_explicit(&a->warn_after_ns, 0, memory_order_relaxed);
	return a;
}

/* A handler and its name as both registrations take them; *len gets the name's length. */
static int nmi_check_handler(const char *name, nmi_handler_fn fn, size_t *len)
{
	if (!fn || !name || !name[0])
		return NMI_EINVAL;
	*len = nmi_strnlen(name, NMI_NAME_MAX);
	return *len < NMI_NAME_MAX ? NMI_OK : NMI_ENAMETOOLONG;
}

int nmi_register(unsigned type, const char *name, nmi_handler_fn fn, unsigned flags)
{
	struct nmi_action *a, *tail;
	_Atomic(struct nmi_action *) *link;
	os_irqflags_t irq;
	size_t len;
	int err = NMI_OK;

	if (nmi_in_nmi())
		return NMI_EINNMI;
	if (type >= NMI_TYPE_COUNT)
		return NMI_ETYPE;
	if (flags & ~NMI_FLAG_FIRST)
		return NMI_EINVAL;
	err = nmi_check_handler(name, fn, &len);
	if (err != NMI_OK)
		return err;

	irq = nmi_writers_lock();
	if (nmi_find(type, name)) {
		err = NMI_EEXIST;
		goto out;
	}
	/* Each external reason has exactly one owner that clears its source. */
	if ((type == NMI_SERR || type == NMI_IO_CHECK) &&
	    atomic_load_explicit(&nmi_chains[type], memory_order_relaxed)) {
		err = NMI_EBUSY;
		goto out;
	}
	a = nmi_new_slot(type, name, len, fn);
	if (!a) {
		err = NMI_ENOSPC;
		goto out;
	}

	/*
	 * Publish with a release store: a CPU that reaches the slot through an
	 * acquire load of the link sees every field written above.  A walker
	 * sees the chain either without or with the new slot, both complete.
	 */
	link = &nmi_chains[type];
	if (!(flags & NMI_FLAG_FIRST)) {
		tail = atomic_load_explicit(link, memory_order_relaxed);
		for (; tail; tail = atomic_load_explicit(&tail->next, memory_order_relaxed))
			link = &tail->next;
	}
	atomic_store_explicit(&a->next, atomic_load_explicit(link, memory_order_relaxed),
			      memory_order_relaxed);
	atomic_store_explicit(link, a, memory_order_release);
out:
	nmi_writers_unlock(irq);
	return err;
}

/*
 * Wait until no CPU can still be walking a chain as it was before the caller's
 * last change.  Each CPU's sequence counter is odd while it is inside
 * nmi_entry(); a CPU whose counter is even now, or has moved since we looked,
 * has left the NMI that could have seen the old chain.  The caller issued a
 * full fence after its change, and nmi_entry() bumps the counter with a full
 * barrier before walking, so a CPU that we see even will walk the new chain.
 */
static void nmi_wait_for_walkers(const char *what)
{
	unsigned me = os_cpu_id();
	unsigned ncpus = os_cpu_count();

	for (unsigned cpu = 0; cpu < ncpus; cpu++) {
		struct nmi_cpu *c = &nk_cpus[cpu].nmi;
		uint64_t snap, start;
		bool warned = false;

		if (cpu == me || !os_cpu_online(cpu))
			continue;
		snap = atomic_load_explicit(&c->seq, memory_order_acquire);
		if (!(snap & 1))
			continue;
		start = os_timestamp_ns();
		while (atomic_load_explicit(&c->seq, memory_order_acquire) == snap &&
		       !atomic_load_explicit(&c->parked, memory_order_acquire)) {
			if (!warned && os_timestamp_ns() - start > NMI_WAIT_LIMIT_NS) {
				nk_log(NK_LOG_WARNING,
				       "nmi: unregister of %s still waiting for CPU %u to leave its NMI\n",
				       what, cpu);
				warned = true;
			}
			os_cpu_relax();
		}
	}
}

/*
 * How nmi_unregister() waits: a grace period once the kernel has an RCU
 * (nmi_set_synchronize(synchronize_rcu)), else nmi_wait_for_walkers().
 */
static void (*_Atomic nmi_sync_fn)(void);

void nmi_set_synchronize(void (*fn)(void))
{
	atomic_store_explicit(&nmi_sync_fn, fn, memory_order_release);
}

/*
 * An unlinked (DYING) slot: wait until no NMI can still be calling it, then
 * free it.  The caller has made it unreachable with a release store.
 */
static void nmi_retire_slot(struct nmi_action *a)
{
	void (*sync)(void);
	os_irqflags_t irq;

	atomic_thread_fence(memory_order_seq_cst);
	sync = atomic_load_explicit(&nmi_sync_fn, memory_order_acquire);
	if (sync)
		sync();		/* a grace period: every NMI that saw `a` is over */
	else
		nmi_wait_for_walkers(a->name);

	irq = nmi_writers_lock();
	a->state = SLOT_FREE;
	nmi_writers_unlock(irq);
}

int nmi_unregister(unsigned type, const char *name)
{
	_Atomic(struct nmi_action *) *link;
	struct nmi_action *a;
	os_irqflags_t irq;

	if (nmi_in_nmi())
		return NMI_EINNMI;
	if (type >= NMI_TYPE_COUNT)
		return NMI_ETYPE;
	if (!name)
		return NMI_EINVAL;

	irq = nmi_writers_lock();
	link = &nmi_chains[type];
	while ((a = atomic_load_explicit(link, memory_order_relaxed)) && !nmi_streq(a->name, name))
		link = &a->next;
	if (!a) {
		nmi_writers_unlock(irq);
		return NMI_ENOENT;
	}
	/*
	 * Unlink.  a->next is left as it is: a CPU standing on `a` right now
	 * still finds the rest of the chain through it.
	 */
	atomic_store_explicit(link, atomic_load_explicit(&a->next, memory_order_relaxed),
			      memory_order_release);
	a->state = SLOT_DYING;
	nmi_writers_unlock(irq);
	nmi_retire_slot(a);
	return NMI_OK;
}

/* --- doorbells ----------------------------------------------------------- */

int nmi_doorbell_register(unsigned bit, const char *name, nmi_handler_fn fn)
{
	struct nmi_action *a;
	os_irqflags_t irq;
	size_t len;
	int err = NMI_OK;

	if (nmi_in_nmi())
		return NMI_EINNMI;
	if (bit >= NMI_DOORBELL_BITS)
		return NMI_ERANGE;
	err = nmi_check_handler(name, fn, &len);
	if (err != NMI_OK)
		return err;

	irq = nmi_writers_lock();
	if (atomic_load_explicit(&nmi_bells[bit], memory_order_relaxed)) {
		err = NMI_EBUSY;
		goto out;
	}
	a = nmi_new_slot(NMI_DOORBELL, name, len, fn);
	if (!a) {
		err = NMI_ENOSPC;
		goto out;
	}
	/* Release: a dispatch that loads the pointer sees the filled slot. */
	atomic_store_explicit(&nmi_bells[bit], a, memory_order_release);
out:
	nmi_writers_unlock(irq);
	return err;
}

int nmi_doorbell_unregister(unsigned bit)
{
	struct nmi_action *a;
	os_irqflags_t irq;

	if (nmi_in_nmi())
		return NMI_EINNMI;
	if (bit >= NMI_DOORBELL_BITS)
		return NMI_ERANGE;
	irq = nmi_writers_lock();
	a = atomic_load_explicit(&nmi_bells[bit], memory_order_relaxed);
	if (a) {
		atomic_store_explicit(&nmi_bells[bit], NULL, memory_order_release);
		a->state = SLOT_DYING;
	}
	nmi_writers_unlock(irq);
	if (!a)
		return NMI_ENOENT;
	nmi_retire_slot(a);
	return NMI_OK;
}

/*
 * NMI-safe: yes.  Sequentially consistent OR: the caller's request state,
 * written before, is visible to the dispatch that takes the bit (its
 * read-modify-write reads this OR's value), and the NMI sent after cannot
 * be delivered before the bit is set (on x86 a locked instruction orders
 * the later ICR write after it).
 */
void nmi_doorbell_ring(unsigned cpu, unsigned bit)
{
	if (cpu >= NMIKIT_MAX_CPUS || bit >= NMI_DOORBELL_BITS)
		return;
	atomic_fetch_or_explicit(&nk_cpus[cpu].nmi.bell, 1ull << bit, memory_order_seq_cst);
}

/* NMI-safe: yes. */
void nmi_doorbell_listen(unsigned cpu, unsigned bit, bool on)
{
	uint64_t m;

	if (cpu >= NMIKIT_MAX_CPUS || bit >= NMI_DOORBELL_BITS)
		return;
	m = 1ull << (bit + 32);
	if (on)
		atomic_fetch_or_explicit(&nk_cpus[cpu].nmi.bell, m, memory_order_seq_cst);
	else
		atomic_fetch_and_explicit(&nk_cpus[cpu].nmi.bell, ~m, memory_order_seq_cst);
}

uint64_t nmi_doorbell_read(unsigned cpu)
{
	if (cpu >= NMIKIT_MAX_CPUS)
		return 0;
	return atomic_load_explicit(&nk_cpus[cpu].nmi.bell, memory_order_acquire);
}

int nmi_set_emergency(nmi_emergency_fn fn)
{
	nmi_emergency_fn none = NULL;

	if (!fn)
		return NMI_EINVAL;
	if (!atomic_compare_exchange_strong_explicit(&nmi_emergency, &none, fn,
						     memory_order_acq_rel,
						     memory_order_relaxed))
		return NMI_EBUSY;
	return NMI_OK;
}

int nmi_clear_emergency(nmi_emergency_fn fn)
{
	if (!fn)
		return NMI_EINVAL;
	if (!atomic_compare_exchange_strong_explicit(&nmi_emergency, &fn, NULL,
						     memory_order_acq_rel,
						     memory_order_relaxed))
		return NMI_ENOENT;
	return NMI_OK;
}

int nmi_set_external_owner(unsigned cpu)
{
	if (cpu >= os_cpu_count() || cpu >= NMIKIT_MAX_CPUS)
		return NMI_ERANGE;
	atomic_store_explicit(&nmi_owner_cpu, cpu, memory_order_release);
	return NMI_OK;
}

unsigned nmi_external_owner(void)
{
	return atomic_load_explicit(&nmi_owner_cpu, memory_order_acquire);
}

/* --- dispatch (NMI context) ---------------------------------------------- */

/*
 * Handler durations are measured in os_cycles(), a counter the port makes
 * cheap (x86: the TSC), because every handler call is timed: converting
 * to nanoseconds costs a division and is only done off the fast path.
 * Ports without one get os_timestamp_ns() itself (1 cycle = 1 ns).
 */
__attribute__((weak)) uint64_t os_cycles(void)
{
	return os_timestamp_ns();
}

__attribute__((weak)) uint64_t os_cycles_per_ms(void)
{
	return 1000000;
}

/* A port whose entry code does not count the nested NMIs it catches. */
__attribute__((weak)) uint64_t os_nmi_arch_nested(unsigned cpu)
{
	(void)cpu;
	return 0;
}

static uint64_t nmi_cycles_to_ns(uint64_t cycles)
{
	uint64_t per_ms = os_cycles_per_ms();

	/* Exact below 2^64 / 10^6 cycles (5 hours at 1 GHz); saturate above. */
	if (cycles > UINT64_MAX / 1000000)
		return UINT64_MAX / per_ms;
	return cycles * 1000000 / per_ms;
}

/*
 * nmi_longest_ns in cycles, recomputed when the parameter changes.  NMI
 * context: the walk compares the parameter with the value last converted
 * (two loads per NMI); the CPU that sees a change converts it.
 */
static _Atomic uint64_t nmi_slow_ns_seen = UINT64_MAX;
static _Atomic uint64_t nmi_slow_cycles;
static atomic_flag nmi_slow_updating = ATOMIC_FLAG_INIT;

/*
 * A handler's limit_cycles := min(longest_cycles, nmi_slow_cycles).  NMI
 * context, lock-free.  The value stored is never above the current minimum:
 * longest_cycles only grows while the slot is linked, and the threshold is
 * read again after the store.  A threshold update in between is either seen
 * by that second read (and we store again), or comes after our store in the
 * seq_cst order, and then its own zeroing of every limit (below) lands after
 * ours.  Two CPUs refreshing the same handler may leave the smaller of their
 * two values: too low, which only sends the next call to the slow path.
 */
static void nmi_limit_refresh(struct nmi_action *a)
{
	uint64_t thr, lim;

	do {
		thr = atomic_load_explicit(&nmi_slow_cycles, memory_order_seq_cst);
		lim = atomic_load_explicit(&a->longest_cycles, memory_order_relaxed);
		if (lim > thr)
			lim = thr;
		atomic_store_explicit(&a->limit_cycles, lim, memory_order_seq_cst);
	} while (atomic_load_explicit(&nmi_slow_cycles, memory_order_seq_cst) != thr);
}

/*
 * The parameter changed: convert it, then zero every handler's limit so that
 * each one's next call takes the slow path and recomputes its limit against
 * the new threshold (a lower threshold must catch calls at once; a higher one
 * is picked up lazily).  NMI context: one CPU converts at a time, the others
 * only try the flag and keep the old threshold for this NMI (they see
 * nmi_slow_ns_seen still differ on their next NMI).  The flag keeps the
 * cycles and nmi_slow_ns_seen of one conversion together.
 */
static __attribute__((noinline)) void nmi_slow_threshold_update(void)
{
	uint64_t ns;

	if (atomic_flag_test_and_set_explicit(&nmi_slow_updating, memory_order_acquire))
		return;
	ns = nmi_longest_ns;
	/* ns <= 10^10 (the parameter's range), cycles/ms < 2^33: no overflow. */
	atomic_store_explicit(&nmi_slow_cycles, ns * os_cycles_per_ms() / 1000000,
			      memory_order_seq_cst);
	for (size_t i = 0; i < NK_ARRAY_SIZE(nmi_actions); i++)
		atomic_store_explicit(&nmi_actions[i].limit_cycles, 0, memory_order_seq_cst);
	atomic_store_explicit(&nmi_slow_ns_seen, ns, memory_order_relaxed);
	atomic_flag_clear_explicit(&nmi_slow_updating, memory_order_release);
}

static inline __attribute__((always_inline)) void nmi_slow_threshold_check(void)
{
	if (NK_UNLIKELY(nmi_longest_ns !=
			atomic_load_explicit(&nmi_slow_ns_seen, memory_order_relaxed)))
		nmi_slow_threshold_update();
}

/*
 * A call longer than its handler's limit: a new longest time, a call over
 * the threshold, or a limit left low by a refresh.  NMI context:
 * per-handler counters are shared by all CPUs, so atomic read-modify-writes;
 * the warning goes through the lock-free log and a per-handler rate limit.
 */
static __attribute__((noinline)) void nmi_account_slow(struct nmi_action *a, uint64_t cycles)
{
	uint64_t ns;

	nk_atomic_max_u64(&a->longest_cycles, cycles);
	nmi_limit_refresh(a);
	ns = nmi_cycles_to_ns(cycles);
	if (ns <= nmi_longest_ns)
		return;
	nk_atomic_inc(&a->slow);
	if (nmi_ratelimit(&a->warn_after_ns, NMI_WARN_INTERVAL_NS))
		nk_log(NK_LOG_WARNING,
		       "NMI handler (%s) took too long to run: %llu.%03llu msecs\n",
		       a->name, (unsigned long long)(ns / 1000000),
		       (unsigned long long)(ns % 1000000 / 1000));
}

/*
 * Three steps of the walk written so that each is one or two instructions on
 * x86-64 (gcc copies registers around an acquire load, and compares an
 * atomic only after loading it into a register).
 *
 * nmi_next(): the acquire load of a link, as a relaxed load followed by an
 * acquire fence: the same ordering in C11 (everything after the fence sees
 * what the writer stored before its release store of the link), and on
 * x86-64 a single `mov`.  ThreadSanitizer does not model fences, so a
 * sanitizer build uses the acquire load itself.
 *
 * nmi_elapsed(): d = now - *t and *t = now, as a subtract and an add.
 *
 * nmi_over_limit(): d > *lim, one compare against memory (one single read
 * of the limit; no ordering is needed: a stale limit is corrected on the
 * slow path, see nmi_limit_refresh()).
 *
 * The #else forms are the portable C11 meaning of each.
 */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NMI_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define NMI_TSAN 1
#endif

static inline __attribute__((always_inline)) struct nmi_action *
nmi_next(struct nmi_action *a)
{
#if defined(NMI_TSAN)
	return atomic_load_explicit(&a->next, memory_order_acquire);
#else
	struct nmi_action *n = atomic_load_explicit(&a->next, memory_order_relaxed);

	atomic_thread_fence(memory_order_acquire);
	return n;
#endif
}

#if defined(__GNUC__) && defined(__x86_64__)
static inline __attribute__((always_inline)) uint64_t nmi_elapsed(uint64_t now, uint64_t *t)
{
	__asm__("subq %[t], %[d]\n\taddq %[d], %[t]" : [d] "+r"(now), [t] "+r"(*t));
	return now;
}

static inline __attribute__((always_inline)) bool nmi_over_limit(uint64_t d,
								  const _Atomic uint64_t *lim)
{
	bool over;

	__asm__("cmpq %[lim], %[d]" : "=@cca"(over)
		: [d] "r"(d), [lim] "m"(*(const uint64_t *)lim));
	return over;
}
#else
static inline uint64_t nmi_elapsed(uint64_t now, uint64_t *t)
{
	uint64_t d = now - *t;

	*t = now;
	return d;
}

static inline bool nmi_over_limit(uint64_t d, const _Atomic uint64_t *lim)
{
	return d > atomic_load_explicit(lim, memory_order_relaxed);
}
#endif

/*
 * Call every handler on chain `type` and return `sum` plus their claims.
 *
 * NMI context.  Safe because the walk takes no lock: each link is read with
 * an acquire load, pairing with the writers' release stores, and a slot is
 * never reused while a CPU may stand on it (see nmi_unregister()).  Bounded
 * by NMI_MAX_HANDLERS calls.  Every handler is called even after one has
 * claimed an event: two edge-triggered sources that fired together arrive as
 * one NMI, and stopping at the first would lose the second for good.
 *
 * Each call is timed: one os_cycles() before the first handler, then one
 * after each, which is also the start of the next call (the loop's own few
 * instructions, and the claim's accounting, are charged to the handler
 * before them).  One compare per call against the handler's limit_cycles
 * decides whether the slow path must look at it.
 */
static inline __attribute__((always_inline)) int nmi_walk(unsigned type, struct nmi_frame *f,
							  int sum)
{
	struct nmi_action *a;
	uint64_t t;

	a = atomic_load_explicit(&nmi_chains[type], memory_order_acquire);
	if (!a)
		return sum;
	nmi_slow_threshold_check();
	t = nk_os_cycles();
	do {
		int n = a->fn(type, f);
		uint64_t d;

		/*
		 * Tested before the clock read, which would clobber it on x86.
		 * No branch hint: laid out in line, a claim costs no jump back
		 * and a pass still only the test and one taken branch.
		 */
		if (n > 0) {
			atomic_fetch_add_explicit(&a->claimed, (uint64_t)n, memory_order_relaxed);
			sum += n;
		}
		d = nmi_elapsed(nk_os_cycles(), &t);
		nk_atomic_inc(&a->calls);
		if (NK_UNLIKELY(nmi_over_limit(d, &a->limit_cycles)))
			nmi_account_slow(a, d);
		a = nmi_next(a);
	} while (a);
	return sum;
}

/*
 * This CPU's doorbell word `w` was not zero: take the rung bits and call
 * the callback of every bit rung or listening, once each, in bit order.
 * NMI context, this CPU's dispatch only; out of line, because on the
 * common NMI the dispatch only loads the word.  No lock: the take is one
 * atomic read-modify-write (see below) and each callback pointer one
 * acquire load of a slot that unregister does not free while an NMI may
 * hold it (nmi_retire_slot()).
 *
 * The take clears the rung half and keeps the listen half in one step
 * (fetch_and: on x86 a compare-exchange loop, which goes round again only
 * when another CPU rang or listened in between, so it is lock-free and
 * bounded by them; it waits for nobody).  Its acquire half pairs with the
 * ring's OR: the callback sees whatever the sender wrote before ringing.
 * Why nothing is lost or served twice:
 *  - a ring after our load or after the take stays in the word, and its
 *    sender's NMI, sent after the ring, is still to come (latched behind
 *    this one, or redelivered by the lost-NMI probe): it finds the bit;
 *  - a bit is taken by exactly one take, so one ring calls its callback
 *    once; two rings before one take are one call (each sender's own state
 *    says what it asked);
 *  - listening alone takes nothing (no locked operation), and the listen
 *    half is never cleared here.
 */
static __attribute__((noinline)) int nmi_bells_run(struct nmi_cpu *c, struct nmi_frame *f,
						   uint64_t w)
{
	uint32_t bits;
	int sum = 0;

	if (w & NMI_BELL_RUNG)
		w = atomic_fetch_and_explicit(&c->bell, NMI_BELL_LISTEN, memory_order_acq_rel);
	else
		atomic_thread_fence(memory_order_acquire);	/* the listener's state */
	bits = (uint32_t)w | (uint32_t)(w >> 32);
	nmi_slow_threshold_check();
	for (unsigned bit = 0; bits; bit++, bits >>= 1) {
		struct nmi_action *a;
		uint64_t t, d;
		int n;

		if (!(bits & 1))
			continue;
		/* Rung before its callback was registered (or after it left): dropped. */
		a = atomic_load_explicit(&nmi_bells[bit], memory_order_acquire);
		if (!a)
			continue;
		t = nk_os_cycles();
		n = a->fn(NMI_LOCAL, f);
		d = nk_os_cycles() - t;
		if (n > 0) {
			atomic_fetch_add_explicit(&a->claimed, (uint64_t)n, memory_order_relaxed);
			sum += n;
		}
		nk_atomic_inc(&a->calls);
		if (NK_UNLIKELY(d > atomic_load_explicit(&a->limit_cycles, memory_order_relaxed)))
			nmi_account_slow(a, d);
	}
	return sum;
}

/* The walk for the rare chains (SERR, IOCHK, UNKNOWN); NMI_LOCAL's is inline. */
static __attribute__((noinline)) int nmi_run_chain(unsigned type, struct nmi_frame *f)
{
	return nmi_walk(type, f, 0);
}

/* Default action for an external reason that its chain did not claim. */
static void nmi_external_unclaimed(const char *what, unsigned cpu)
{
	if (nmi_ratelimit(&nmi_external_warn_after, NMI_WARN_INTERVAL_NS))
		nk_log(NK_LOG_EMERG, "NMI: %s on CPU %u, no handler claimed it; cleared\n",
		       what, cpu);
}

/*
 * External reasons (SERR, IOCHK).  NMI context, owner CPU only.  The port is
 * shared by the whole machine, so one CPU reads it; the reason lock is only
 * tried, never waited for, so a crashed holder costs us the reasons of this
 * NMI but never the NMI itself.  Returns how many reasons were serviced.
 */
static int nmi_external(struct nmi_frame *f, unsigned cpu, struct nmi_cpu *c,
			unsigned *reason)
{
	unsigned bits;
	int serviced = 0;

	if (cpu != atomic_load_explicit(&nmi_owner_cpu, memory_order_relaxed))
		return 0;
	if (atomic_flag_test_and_set_explicit(&nmi_reason_lock, memory_order_acquire)) {
		/*
		 * The holder read the port before this NMI came, so a reason
		 * raised since (and its edge, which the latch may have merged
		 * with this NMI) would wait for a next NMI that may never come:
		 * the probe looks again on the next tick.
		 */
		nk_stat_inc(&c->ctr.reason_busy);
		nmi_probe_request();
		return 0;
	}
	bits = os_nmi_reason_read() & OS_NMI_REASON_MASK;
	*reason = bits;
	if (bits & OS_NMI_REASON_SERR) {
		if (!nmi_run_chain(NMI_SERR, f))
			nmi_external_unclaimed("system error (SERR)", cpu);
		/* Clear and re-arm: SERR stays asserted until acknowledged. */
		os_nmi_reason_ack(OS_NMI_REASON_SERR);
		serviced++;
	}
	if (bits & OS_NMI_REASON_IOCHK) {
		if (!nmi_run_chain(NMI_IO_CHECK, f))
			nmi_external_unclaimed("I/O channel check (IOCHK)", cpu);
		os_nmi_reason_ack(OS_NMI_REASON_IOCHK);
		serviced++;
	}
	atomic_flag_clear_explicit(&nmi_reason_lock, memory_order_release);
	if (serviced)
		nk_stat_inc(&c->ctr.external);
	return serviced;
}

/* Append the decimal or two-digit hex form of v at p; returns the new end. */
static char *nmi_put_dec(char *p, unsigned v)
{
	char tmp[10];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *nmi_put_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

/*
 * Build "Uhhuh. NMI received for unknown reason XX on CPU N." in this CPU's
 * own buffer (no formatting library in core, no shared buffer in NMI).
 */
static const char *nmi_unknown_msg(struct nmi_cpu *c, unsigned reason, unsigned cpu)
{
	static const char hex[] = "0123456789abcdef";
	char *p = c->panic_msg;

	p = nmi_put_str(p, "Uhhuh. NMI received for unknown reason ");
	*p++ = hex[(reason >> 4) & 0xf];
	*p++ = hex[reason & 0xf];
	p = nmi_put_str(p, " on CPU ");
	p = nmi_put_dec(p, cpu);
	*p++ = '.';
	*p = '\0';
	return c->panic_msg;
}

/*
 * Nothing explained the NMI.  NMI context.  The unknown chain gets a last
 * look (e.g. a debugger that wants every stray NMI); then the policy: panic,
 * or a rate-limited warning, and carry on.
 */
static void nmi_unknown(struct nmi_frame *f, unsigned cpu, struct nmi_cpu *c,
			unsigned reason)
{
	nk_stat_inc(&c->ctr.unknown);
	if (nmi_run_chain(NMI_UNKNOWN, f))
		return;
	if (unknown_nmi_panic)
		os_panic(nmi_unknown_msg(c, reason, cpu));
	if (!nmi_ratelimit(&nmi_unknown_warn_after, NMI_WARN_INTERVAL_NS))
		return;
	nk_log(NK_LOG_EMERG, "Uhhuh. NMI received for unknown reason %02x on CPU %u.\n",
	       reason, cpu);
	nk_log(NK_LOG_EMERG, "Dazed and confused, but trying to continue\n");
}

/*
 * Nothing on the local chain claimed the NMI: external reasons, our own
 * probe, the back-to-back rule, and the unknown policy.  NMI context, like
 * nmi_dispatch(); kept out of line so the common (claimed) path stays short.
 */
static __attribute__((noinline)) void nmi_dispatch_unclaimed(struct nmi_frame *f,
							     struct nk_cpu *k)
{
	unsigned cpu = os_cpu_id();
	struct nmi_cpu *c = &k->nmi;
	unsigned reason = 0;
	bool back_to_back = c->last_ip == f->ip;
	bool prev_many = c->last_claimed_many;

	/* This NMI is now "the previous one"; it claimed nothing. */
	c->last_ip = f->ip;
	c->last_claimed_many = false;

	if (nmi_external(f, cpu, c, &reason)) {
		nmi_probe_claimed_inline(&k->probe);
		return;
	}

	/* Our own lost-NMI probe coming back empty, as it should. */
	if (nmi_probe_on_unclaimed())
		return;

	/*
	 * Same interrupted IP as the previous NMI, which claimed several
	 * events: this is the latched NMI of an event already handled then.
	 */
	if (back_to_back && prev_many) {
		nk_stat_inc(&c->ctr.swallowed);
		return;
	}

	nmi_unknown(f, cpu, c, reason);
}

/*
 * The flow of one NMI, after nmi_entry() has made it this CPU's only running
 * dispatch.  NMI context; every step below is lock-free or try-lock only.
 */
static inline __attribute__((always_inline)) void nmi_dispatch(struct nmi_frame *f,
								struct nk_cpu *k)
{
	struct nmi_cpu *c = &k->nmi;
	nmi_emergency_fn em;
	uint64_t bell;
	int claimed = 0;

	nk_stat_inc(&c->ctr.entries);
	if (f->from_user)
		nk_stat_inc(&c->ctr.from_user);

	/* Panic shootdown and backtrace requests come before everything. */
	em = atomic_load_explicit(&nmi_emergency, memory_order_acquire);
	if (NK_UNLIKELY(em != NULL) && em(f)) {
		nk_stat_inc(&c->ctr.emergency);
		return;
	}

	/*
	 * The doorbell: one load; zero on almost every NMI.  The seq_cst
	 * increment of c->seq in nmi_entry() comes before it, and the NMI
	 * itself after the sender's ring (see nmi_bells_run()).
	 */
	bell = atomic_load_explicit(&c->bell, memory_order_relaxed);
	if (NK_UNLIKELY(bell != 0))
		claimed = nmi_bells_run(&nk_relaunder(k)->nmi, f, bell);
	claimed = nmi_walk(NMI_LOCAL, f, claimed);
	if (NK_UNLIKELY(!claimed)) {
		nmi_dispatch_unclaimed(f, k);
		return;
	}
	/*
	 * The back-to-back rule's memory of the previous NMI, updated after
	 * the walk (no handler touches it, and the dispatch never nests on one
	 * CPU), so nothing is kept across the calls.  More than one event in
	 * one NMI: the second source's NMI may still be latched behind this
	 * one and will then find nothing.
	 */
	c->last_ip = f->ip;
	c->last_claimed_many = claimed > 1;
	nk_stat_inc(&c->ctr.normal);
	nmi_probe_claimed_inline(&k->probe);
}

/*
 * An NMI came in while the dispatch ran (state LATCHED, now back to
 * EXECUTING after nmi_entry()'s decrement): run the dispatch again, until a
 * decrement finds no new one.  Out of line, so that nmi_entry() itself is
 * straight-line code.  NMI context, like nmi_dispatch().
 */
static __attribute__((noinline)) void nmi_dispatch_repeat(struct nmi_frame *f, struct nk_cpu *k)
{
	struct nmi_cpu *c = &k->nmi;

	do {
		nk_stat_inc(&c->ctr.repeated);
		nmi_dispatch(f, k);
		atomic_signal_fence(memory_order_seq_cst);
	} while (atomic_fetch_sub_explicit(&c->state, 1, memory_order_relaxed) != NMI_EXECUTING);
}

/*
 * C entry of every NMI.  NMI context, on the NMI stack, NMIs blocked until
 * the next IRET.
 *
 * The arch entry code turns a nested NMI into a repeat of the running one,
 * but as a second line of defence the C level keeps its own per-CPU state:
 * NOT_RUNNING -> EXECUTING on entry.  An NMI that reaches here while the
 * state is not NOT_RUNNING (it got past the assembly checks) only records
 * LATCHED and returns at once, touching nothing the running dispatch uses.
 * On the way out the running NMI decrements the state: LATCHED -> EXECUTING
 * means an NMI came in meanwhile, so the dispatch runs again for it;
 * EXECUTING -> NOT_RUNNING means done.  The decrement is one atomic
 * operation, so an NMI landing just before or just after it is never lost.
 *
 * The sequence counter is made odd with a full barrier before any chain is
 * walked and even with a release store after the last walk (see
 * nmi_wait_for_walkers()).
 */
void nmi_entry(struct nmi_frame *f)
{
	struct nk_cpu *k = nk_this_cpu();
	struct nmi_cpu *c;

	/*
	 * Hold the block's address in a register: otherwise gcc keeps the
	 * array index, rebuilds field addresses from the symbol at each use
	 * and spills some of them (about 10 instructions per NMI).  The
	 * dispatch state and the RCU counters are fixed offsets from it.
	 */
#if defined(__GNUC__)
	__asm__("" : "+r"(k));
#endif
	c = &k->nmi;
	if (atomic_load_explicit(&c->state, memory_order_relaxed) != NMI_NOT_RUNNING) {
		atomic_store_explicit(&c->state, NMI_LATCHED, memory_order_relaxed);
		nk_stat_inc(&c->ctr.latched);
		return;
	}
	atomic_store_explicit(&c->state, NMI_EXECUTING, memory_order_relaxed);
	rcu_nmi_enter_inline(&k->rcu);	/* handlers are RCU readers, even from idle (docs/rcu-nmi.md) */
	atomic_fetch_add_explicit(&c->seq, 1, memory_order_seq_cst);

	nmi_dispatch(f, k);
	atomic_signal_fence(memory_order_seq_cst);
	if (NK_UNLIKELY(atomic_fetch_sub_explicit(&nk_relaunder(k)->nmi.state, 1,
						  memory_order_relaxed) != NMI_EXECUTING))
		nmi_dispatch_repeat(f, k);

	/* Only this CPU writes seq: a release add is the release store of seq + 1. */
	atomic_fetch_add_explicit(&c->seq, 1, memory_order_release);
	rcu_nmi_exit_inline(&k->rcu);
}

void nmi_note_nested(void)
{
	nk_stat_inc(&nmi_this_cpu()->ctr.nested);
}

bool nmi_in_nmi(void)
{
	return atomic_load_explicit(&nmi_this_cpu()->state, memory_order_relaxed) !=
	       NMI_NOT_RUNNING;
}

void *nmi_cpu_block(unsigned cpu)
{
	return cpu < NMIKIT_MAX_CPUS ? &nk_cpus[cpu] : NULL;
}

uint64_t nmi_seq(unsigned cpu)
{
	if (cpu >= NMIKIT_MAX_CPUS)
		return 0;
	return atomic_load_explicit(&nk_cpus[cpu].nmi.seq, memory_order_acquire);
}

/* --- panic shootdown ----------------------------------------------------- */

static _Atomic unsigned nmi_shootdown_owner = NMI_NO_CPU;
static _Atomic unsigned nmi_shootdown_acks;
static void (*nmi_shootdown_cb)(struct nmi_frame *f);

/*
 * The emergency handler during a shootdown.  NMI context: runs the caller's
 * callback, acknowledges, and parks this CPU for good (interrupts off, PAUSE
 * forever; NMIs stay blocked as this NMI never IRETs).  The shooting CPU's
 * own NMIs go through the normal dispatch.
 */
static int nmi_shootdown_stop(struct nmi_frame *f)
{
	unsigned cpu = os_cpu_id();

	if (cpu == atomic_load_explicit(&nmi_shootdown_owner, memory_order_acquire))
		return 0;
	os_local_irq_save();
	if (nmi_shootdown_cb)
		nmi_shootdown_cb(f);
	atomic_store_explicit(&nk_cpus[cpu].nmi.parked, true, memory_order_release);
	atomic_fetch_add_explicit(&nmi_shootdown_acks, 1, memory_order_release);
	for (;;)
		os_cpu_relax();
}

/*
 * NMI-safe: yes.  The only waiting is the bounded (1 s) wait for
 * acknowledgements; the owner is claimed by compare-exchange, so a second
 * panicking CPU returns at once instead of waiting for the first.
 */
int nmi_shootdown_cpus(void (*on_cpu)(struct nmi_frame *f))
{
	unsigned me = os_cpu_id();
	unsigned none = NMI_NO_CPU;
	unsigned want = 0, ncpus = os_cpu_count();
	uint64_t start;

	if (!atomic_compare_exchange_strong_explicit(&nmi_shootdown_owner, &none, me,
						     memory_order_acq_rel,
						     memory_order_relaxed))
		return NMI_EALREADY;

	for (unsigned cpu = 0; cpu < ncpus; cpu++)
		if (cpu != me && os_cpu_online(cpu))
			want++;
	nmi_shootdown_cb = on_cpu;
	atomic_store_explicit(&nmi_shootdown_acks, 0, memory_order_relaxed);
	/*
	 * Take the emergency slot whatever holds it (a backtrace request must
	 * not stop a panic).  The exchange publishes the callback above.
	 */
	atomic_exchange_explicit(&nmi_emergency, nmi_shootdown_stop, memory_order_seq_cst);
	/* Nobody else online (early boot, or -smp 1): no IPI, the APIC may not be up. */
	if (want)
		os_send_nmi_allbutself();

	start = os_timestamp_ns();
	while (atomic_load_explicit(&nmi_shootdown_acks, memory_order_acquire) < want) {
		if (os_timestamp_ns() - start >= NMI_WAIT_LIMIT_NS)
			return NMI_ETIMEDOUT;
		os_cpu_relax();
	}
	return NMI_OK;
}

bool nmi_cpu_parked(unsigned cpu)
{
	if (cpu >= NMIKIT_MAX_CPUS)
		return false;
	return atomic_load_explicit(&nk_cpus[cpu].nmi.parked, memory_order_acquire);
}

/* --- statistics ---------------------------------------------------------- */

int nmi_get_cpu_stats(unsigned cpu, struct nmi_cpu_stats *out)
{
	const struct nmi_counters *k;
	struct nmi_probe_stats probe;

	if (!out)
		return NMI_EINVAL;
	if (cpu >= NMIKIT_MAX_CPUS)
		return NMI_ERANGE;
	k = &nk_cpus[cpu].nmi.ctr;
	out->entries = nk_stat_read(&k->entries);
	out->normal = nk_stat_read(&k->normal);
	out->unknown = nk_stat_read(&k->unknown);
	out->external = nk_stat_read(&k->external);
	out->swallowed = nk_stat_read(&k->swallowed);
	out->latched = nk_stat_read(&k->latched);
	out->repeated = nk_stat_read(&k->repeated);
	/* Read here, never on the NMI path: the entry code keeps its own count. */
	out->nested = nk_stat_read(&k->nested) + os_nmi_arch_nested(cpu);
	out->from_user = nk_stat_read(&k->from_user);
	out->emergency = nk_stat_read(&k->emergency);
	out->reason_busy = nk_stat_read(&k->reason_busy);
	nmi_probe_get_stats(cpu, &probe);
	out->probe_sent = probe.sent;
	out->probe_found = probe.found;
	out->probe_absorbed = probe.absorbed;
	out->probe_collapsed = probe.collapsed;
	return NMI_OK;
}

/* One slot's name and statistics as nmi_get_handler_info() reports them.  Writers' lock held. */
static void nmi_info_of(const struct nmi_action *a, unsigned type, struct nmi_handler_info *out)
{
	for (size_t i = 0; i < NMI_NAME_MAX; i++)
		out->name[i] = a->name[i];
	out->type = type;
	out->calls = nk_stat_read(&a->calls);
	out->claimed = nk_stat_read(&a->claimed);
	out->longest_ns = nmi_cycles_to_ns(nk_stat_read(&a->longest_cycles));
	out->slow = nk_stat_read(&a->slow);
}

int nmi_get_handler_info(unsigned idx, struct nmi_handler_info *out)
{
	os_irqflags_t irq;
	int err = NMI_ENOENT;

	if (!out)
		return NMI_EINVAL;
	irq = nmi_writers_lock();
	for (unsigned type = 0; type < NMI_TYPE_COUNT; type++) {
		struct nmi_action *a;

		a = atomic_load_explicit(&nmi_chains[type], memory_order_relaxed);
		for (; a; a = atomic_load_explicit(&a->next, memory_order_relaxed)) {
			if (idx--)
				continue;
			nmi_info_of(a, type, out);
			err = NMI_OK;
			goto out;
		}
	}
	for (unsigned bit = 0; bit < NMI_DOORBELL_BITS; bit++) {
		struct nmi_action *a = atomic_load_explicit(&nmi_bells[bit], memory_order_relaxed);

		if (!a || idx--)
			continue;
		nmi_info_of(a, NMI_DOORBELL, out);
		err = NMI_OK;
		break;
	}
out:
	nmi_writers_unlock(irq);
	return err;
}

void nmi_print_stats(nk_write_fn *write, void *arg)
{
	unsigned ncpus = os_cpu_count();

	if (!write)
		return;
	nk_wprintf(write, arg, "%4s %10s %10s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n",
	   "cpu", "entries", "normal", "unknown", "external", "swallow", "latched",
	   "repeat", "nested", "user", "emerg", "p-sent", "p-found", "p-absorb");
	for (unsigned cpu = 0; cpu < ncpus; cpu++) {
		struct nmi_cpu_stats s;

		if (!os_cpu_online(cpu) || nmi_get_cpu_stats(cpu, &s))
			continue;
		nk_wprintf(write, arg, "%4u %10llu %10llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu\n",
		   cpu, (unsigned long long)s.entries, (unsigned long long)s.normal,
		   (unsigned long long)s.unknown, (unsigned long long)s.external,
		   (unsigned long long)s.swallowed, (unsigned long long)s.latched,
		   (unsigned long long)s.repeated, (unsigned long long)s.nested,
		   (unsigned long long)s.from_user, (unsigned long long)s.emergency,
		   (unsigned long long)s.probe_sent, (unsigned long long)s.probe_found,
		   (unsigned long long)s.probe_absorbed);
	}
	nk_wprintf(write, arg, "external NMIs owned by CPU %u; unknown_nmi_panic=%s nmi_longest_ns=%llu nmi_lost_recovery=%s\n",
	   nmi_external_owner(), unknown_nmi_panic ? "on" : "off",
	   (unsigned long long)nmi_longest_ns, nmi_lost_recovery ? "on" : "off");
}

void nmi_print_handlers(nk_write_fn *write, void *arg)
{
	struct nmi_handler_info h;

	if (!write)
		return;
	nk_wprintf(write, arg, "%-8s %-23s %10s %10s %12s %6s\n",
	   "type", "name", "calls", "claimed", "longest-ns", "slow");
	for (unsigned i = 0; nmi_get_handler_info(i, &h) == NMI_OK; i++)
		nk_wprintf(write, arg, "%-8s %-23s %10llu %10llu %12llu %6llu\n",
		   nmi_type_name(h.type), h.name, (unsigned long long)h.calls,
		   (unsigned long long)h.claimed, (unsigned long long)h.longest_ns,
		   (unsigned long long)h.slow);
}
