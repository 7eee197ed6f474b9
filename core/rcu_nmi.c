/*
 * rcu_nmi.c: whether RCU watches a CPU - the per-CPU `dynticks` counter and
 * NMI nesting counter, and rcu_nmi_enter/exit, which NMIs (and the IST
 * exceptions) nest into at any instruction.
 *
 * This is the two-counter protocol of models/rcu_dynticks.pml, step for
 * step; every step below is labelled with the model's program counter
 * (EN_TEST, EN_INC, ...) so the two can be read side by side.  An NMI may
 * arrive between any two of those steps, and the model checks all such
 * interleavings to four levels against a grace-period reader.  Do not merge,
 * reorder or "simplify" steps without re-running `make verify` on a model
 * changed the same way: docs/rcu-nmi.md lists three such simplifications
 * and the counterexamples spin found for each.
 */
#include <nmikit/compiler.h>
#include <nmikit/log.h>
#include <nmikit/os.h>
#include <nmikit/rcu.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * dynticks: odd = RCU watches this CPU.  Written only by this CPU, always
 * by an atomic increment between full barriers; read by the grace-period
 * side on other CPUs.  Starts at 0: every CPU is idle to RCU until the
 * kernel calls rcu_idle_exit() on it, so the protocol holds from the first
 * NMI of boot on.
 *
 * nmi_nesting: touched only by this CPU (process level and the NMIs nested
 * on it), with relaxed atomics and compiler barriers between the steps, so
 * the compiler keeps the model's order; no other CPU ever looks at it.
 * 0 while idle, RCU_NESTING_NONIDLE at the non-idle process level, plus 1
 * for the NMI that made RCU watch the CPU and 2 for every other NMI.
 */
struct rcu_dynticks {
	_Atomic uint64_t dynticks;
	_Atomic long nmi_nesting;
	_Atomic uint64_t from_idle;	/* NMIs that turned watching on */
} NK_CACHE_ALIGNED;

static struct rcu_dynticks rcu_dynticks_cpus[NMIKIT_MAX_CPUS];

static _Atomic uint64_t rcu_warn_count[RCU_WARN_KINDS];
static _Atomic bool rcu_warned[RCU_WARN_KINDS];

/* Keeps the compiler from moving per-CPU counter accesses across a step. */
#define rcu_step()	atomic_signal_fence(memory_order_seq_cst)

static inline struct rcu_dynticks *rcu_this(void)
{
	return &rcu_dynticks_cpus[os_cpu_id()];
}

/*
 * The model's DT_INC, with the full barriers the protocol requires: no
 * memory access of the code before it (the handler that is ending, the
 * idle entry) may be seen after it, and none after it (the handler that is
 * starting) before it.  The grace-period side pairs with this through the
 * barrier in rcu_dynticks_snap().
 */
static inline uint64_t rcu_dynticks_inc(struct rcu_dynticks *d)
{
	uint64_t v;

	atomic_thread_fence(memory_order_seq_cst);
	v = atomic_fetch_add_explicit(&d->dynticks, 1, memory_order_relaxed) + 1;
	atomic_thread_fence(memory_order_seq_cst);
	return v;
}

/* NMI-safe: yes (two atomic operations, the log is lock-free). */
void rcu_warn(enum rcu_warning what, const char *msg)
{
	if ((unsigned)what >= RCU_WARN_KINDS)
		return;
	nk_atomic_inc(&rcu_warn_count[what]);
	if (atomic_exchange_explicit(&rcu_warned[what], true, memory_order_relaxed))
		return;
	nk_log(NK_LOG_WARNING, "rcu: WARNING: %s on CPU %u (dynticks %llu, nesting %ld)\n",
	       msg, os_cpu_id(), (unsigned long long)rcu_dynticks_read(os_cpu_id()),
	       rcu_nmi_nesting_read(os_cpu_id()));
}

uint64_t rcu_warnings(enum rcu_warning what)
{
	uint64_t sum = 0;

	if ((unsigned)what < RCU_WARN_KINDS)
		return atomic_load_explicit(&rcu_warn_count[what], memory_order_relaxed);
	for (unsigned i = 0; i < RCU_WARN_KINDS; i++)
		sum += atomic_load_explicit(&rcu_warn_count[i], memory_order_relaxed);
	return sum;
}

/*
 * EN_NLD, EN_NST: a separate load and store, as the model has them; the
 * part of the entry both of its branches share, inlined into each.
 */
static inline __attribute__((always_inline)) void rcu_nmi_enter_nest(struct rcu_dynticks *d,
								   long incby)
{
	long n;

	rcu_step();
	n = atomic_load_explicit(&d->nmi_nesting, memory_order_relaxed);
	atomic_store_explicit(&d->nmi_nesting, n + incby, memory_order_relaxed);
	rcu_step();
}

/*
 * EN_INC and the rest of the entry, from idle: make RCU watch first, then
 * take the +1 that marks this NMI as the one to turn it off again.  An NMI
 * nested right after the increment sees the counter odd and the nesting
 * unchanged, adds 2 and takes 2 away: it cannot mistake itself for us.
 * Takes the CPU number rather than the slot, so the common branch of
 * rcu_nmi_enter_cpu() computes nothing for this one.
 */
static __attribute__((noinline)) void rcu_nmi_enter_from_idle(unsigned cpu)
{
	struct rcu_dynticks *d = &rcu_dynticks_cpus[cpu];

	rcu_dynticks_inc(d);
	nk_atomic_inc(&d->from_idle);
	rcu_nmi_enter_nest(d, 1);

	/* BODY: the handler must run watched (model: CHECK_WATCH). */
	if (NK_UNLIKELY(!(atomic_load_explicit(&d->dynticks, memory_order_relaxed) & 1)))
		rcu_warn(RCU_WARN_HANDLER_UNWATCHED, "rcu_nmi_enter: counter even after entry");
}

/*
 * NMI context (and the #DB/#BP/#MC entries).  Safe: only this CPU's
 * counters, no loop, no lock; the atomic increment is wait-free.
 *
 * model: EN_TEST -> [EN_INC] -> EN_NLD -> EN_NST -> BODY
 *
 * The BODY check (model: CHECK_WATCH) re-reads the counter only on the
 * branch from idle, where it checks what EN_INC made of it.  On the
 * watched branch it is the bit EN_TEST has just tested: between EN_TEST
 * and BODY only NMIs nested on this CPU run, and each of them finds the
 * counter odd and leaves it as it found it (the model checks every such
 * interleaving, CHECK_WATCH included), so a second load could only see
 * the same odd value.  The exit still reads the counter (BODY_END), so a
 * handler that ran unwatched is reported there.
 */
void rcu_nmi_enter_cpu(unsigned cpu)
{
	struct rcu_dynticks *d = &rcu_dynticks_cpus[cpu];

	/* EN_TEST: is RCU watching this CPU already? */
	if (NK_UNLIKELY(!(atomic_load_explicit(&d->dynticks, memory_order_relaxed) & 1))) {
		rcu_nmi_enter_from_idle(cpu);	/* no: EN_INC first */
		return;
	}
	rcu_nmi_enter_nest(d, 2);
}

void rcu_nmi_enter(void)
{
	rcu_nmi_enter_cpu(os_cpu_id());
}

/* The exit's warnings, reported after its steps (see rcu_nmi_exit_cpu()). */
static __attribute__((noinline)) void rcu_nmi_exit_warn(bool unwatched, bool odd_after)
{
	if (unwatched)
		rcu_warn(RCU_WARN_HANDLER_UNWATCHED, "rcu_nmi_exit: counter even inside the handler");
	if (odd_after)
		rcu_warn(RCU_WARN_IDLE_EXIT_ODD,
			 "rcu_nmi_exit: counter odd after the outermost exit from idle");
}

/*
 * The exit's two rare cases, after EX_NLD found nesting `n` < 2:
 * n <= 0, an exit without an entry (model: CHECK_COUNTERS), and n == 1,
 * the NMI that made RCU watch leaving (EX_ZERO, EX_INC).  NMI context,
 * like rcu_nmi_exit_cpu().
 */
static __attribute__((noinline)) void rcu_nmi_exit_last(unsigned cpu, long n)
{
	struct rcu_dynticks *d = &rcu_dynticks_cpus[cpu];
	bool unwatched, odd_after;

	if (n <= 0) {
		/* Touch nothing: a guess would make it worse. */
		rcu_warn(RCU_WARN_EXIT_NESTING_ZERO, "rcu_nmi_exit: nesting is 0 (exit without entry)");
		return;
	}
	/* BODY_END: the handler ran watched up to here (model: CHECK_WATCH). */
	unwatched = !(atomic_load_explicit(&d->dynticks, memory_order_relaxed) & 1);
	/*
	 * EX_ZERO then EX_INC, in this order: an NMI nested between them
	 * finds nesting 0 with the counter still odd, so it adds 2 and takes
	 * 2 away, and leaves everything as it found it.  The other order lets
	 * it see "idle", take the +1 and leave nesting wrong (the model's
	 * rcu_dynticks_exit_order counterexample).
	 */
	atomic_store_explicit(&d->nmi_nesting, 0, memory_order_relaxed);
	rcu_step();
	odd_after = rcu_dynticks_inc(d) & 1;
	if (NK_UNLIKELY(odd_after || unwatched))
		rcu_nmi_exit_warn(unwatched, odd_after);
}

/*
 * NMI context.  Safe for the same reasons as rcu_nmi_enter().
 *
 * model: EX_NLD -> EX_NST            (nesting != 1)
 *                -> EX_ZERO -> EX_INC (nesting == 1: last out of idle)
 * EX_NLD's choice and the CHECK_COUNTERS check are one compare: nesting
 * < 2 is either an exit without an entry (<= 0) or the last exit from idle
 * (1), both out of line in rcu_nmi_exit_last(); every other exit has
 * nesting >= 2 and takes EX_NST.  The model's BODY_END check reads the
 * counter right after the load, before EX_NST; the warning itself is
 * printed after the steps, so that the common path makes no call before
 * its last step and needs no stack frame.
 */
void rcu_nmi_exit_cpu(unsigned cpu)
{
	struct rcu_dynticks *d = &rcu_dynticks_cpus[cpu];
	bool unwatched;
	long n;

	/* EX_NLD */
	rcu_step();
	n = atomic_load_explicit(&d->nmi_nesting, memory_order_relaxed);
	if (NK_UNLIKELY(n < 2)) {
		rcu_nmi_exit_last(cpu, n);
		return;
	}
	/* BODY_END: the handler ran watched up to here (model: CHECK_WATCH). */
	unwatched = !(atomic_load_explicit(&d->dynticks, memory_order_relaxed) & 1);
	/* EX_NST: not the NMI that made RCU watch; leave dynticks alone. */
	atomic_store_explicit(&d->nmi_nesting, n - 2, memory_order_relaxed);
	rcu_step();
	if (NK_UNLIKELY(unwatched))
		rcu_nmi_exit_warn(true, false);
}

void rcu_nmi_exit(void)
{
	rcu_nmi_exit_cpu(os_cpu_id());
}

/*
 * Leaving the non-idle process level for an extended quiescent state
 * (idle, user).  Interrupts off.  model: PL_RUN -> PL_SLEEP2 -> PL_IDLE
 */
static void rcu_eqs_enter(const char *what)
{
	struct rcu_dynticks *d = rcu_this();

	if (NK_UNLIKELY(atomic_load_explicit(&d->nmi_nesting, memory_order_relaxed) !=
			RCU_NESTING_NONIDLE ||
			!(atomic_load_explicit(&d->dynticks, memory_order_relaxed) & 1))) {
		rcu_warn(RCU_WARN_EQS_ENTER, what);
		return;
	}
	atomic_store_explicit(&d->nmi_nesting, 0, memory_order_relaxed);
	rcu_step();
	rcu_dynticks_inc(d);
}

/* Back from an extended quiescent state.  model: PL_IDLE -> PL_WAKE2 -> PL_RUN */
static void rcu_eqs_exit(const char *what)
{
	struct rcu_dynticks *d = rcu_this();

	if (NK_UNLIKELY(atomic_load_explicit(&d->nmi_nesting, memory_order_relaxed) != 0 ||
			(atomic_load_explicit(&d->dynticks, memory_order_relaxed) & 1))) {
		rcu_warn(RCU_WARN_EQS_EXIT, what);
		return;
	}
	rcu_dynticks_inc(d);
	rcu_step();
	atomic_store_explicit(&d->nmi_nesting, RCU_NESTING_NONIDLE, memory_order_relaxed);
}

void rcu_idle_enter(void)
{
	rcu_eqs_enter("rcu_idle_enter: CPU not at the non-idle process level");
}

void rcu_idle_exit(void)
{
	rcu_eqs_exit("rcu_idle_exit: CPU was not idle");
}

void rcu_user_enter(void)
{
	rcu_eqs_enter("rcu_user_enter: CPU not at the non-idle process level");
}

void rcu_user_exit(void)
{
	rcu_eqs_exit("rcu_user_exit: CPU was not in user mode");
}

/* NMI-safe: yes. */
bool rcu_is_watching(void)
{
	return atomic_load_explicit(&rcu_this()->dynticks, memory_order_relaxed) & 1;
}

/*
 * The grace-period side.  The full barrier orders the caller's earlier
 * stores (the unlink of an old object, the start of the grace period)
 * before the load: with the barriers of rcu_dynticks_inc() this is the
 * store-buffering pair, so either we see the CPU's increment, or the
 * handler it starts sees our stores.
 */
uint64_t rcu_dynticks_snap(unsigned cpu)
{
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load_explicit(&rcu_dynticks_cpus[cpu].dynticks, memory_order_acquire);
}

/* model: gp(): quiescent if the snapshot was even or the counter has moved. */
bool rcu_dynticks_quiescent_since(unsigned cpu, uint64_t snap)
{
	if (!(snap & 1))
		return true;
	return atomic_load_explicit(&rcu_dynticks_cpus[cpu].dynticks, memory_order_acquire) != snap;
}

uint64_t rcu_dynticks_read(unsigned cpu)
{
	if (cpu >= NMIKIT_MAX_CPUS)
		return 0;
	return atomic_load_explicit(&rcu_dynticks_cpus[cpu].dynticks, memory_order_relaxed);
}

long rcu_nmi_nesting_read(unsigned cpu)
{
	if (cpu >= NMIKIT_MAX_CPUS)
		return 0;
	return atomic_load_explicit(&rcu_dynticks_cpus[cpu].nmi_nesting, memory_order_relaxed);
}

uint64_t rcu_nmi_from_idle(unsigned cpu)
{
	if (cpu >= NMIKIT_MAX_CPUS)
		return 0;
	return nk_stat_read(&rcu_dynticks_cpus[cpu].from_idle);
}
