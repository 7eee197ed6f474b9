/*
 * rcu_nmi.c: whether RCU watches a CPU - the per-CPU `dynticks` counter and
 * NMI nesting counter, and rcu_nmi_enter/exit, which NMIs (and the IST
 * exceptions) nest into at any instruction.
 *
 * This is the two-counter protocol of models/rcu_dynticks.pml, step for
 * step; every step is labelled with the model's program counter (EN_TEST,
 * EN_INC, ...) so the two can be read side by side.  The counters and the
 * NMI bracket itself are in <nmikit/rcu_nmi_inline.h>, which nmi_entry()
 * inlines; the process-level transitions (idle, user) are here.  An NMI may
 * arrive between any two steps, and the model checks all such
 * interleavings to four levels against a grace-period reader.  Do not
 * merge, reorder or "simplify" steps without re-running `make verify` on a
 * model changed the same way: docs/rcu-nmi.md lists three such
 * simplifications and the counterexamples spin found for each.
 */
#include <nmikit/rcu_nmi_inline.h>

#include <nmikit/compiler.h>
#include <nmikit/log.h>
#include <nmikit/os.h>
#include <nmikit/rcu.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

static _Atomic uint64_t rcu_warn_count[RCU_WARN_KINDS];
static _Atomic bool rcu_warned[RCU_WARN_KINDS];

static inline struct rcu_dynticks *rcu_this(void)
{
	return &nk_this_cpu()->rcu;
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

/* The exported bracket: the inline one, for callers outside core/nmi.c. */
void rcu_nmi_enter_cpu(unsigned cpu)
{
	rcu_nmi_enter_inline(rcu_dynticks_of(cpu));
}

/* This CPU's slot through nk_this_cpu(): one load with the port's os_cpu_block(). */
void rcu_nmi_enter(void)
{
	rcu_nmi_enter_inline(&nk_this_cpu()->rcu);
}

/* The exit's warnings, reported after its steps (see rcu_nmi_exit_inline()). */
__attribute__((noinline, cold)) void rcu_nmi_exit_warn(bool unwatched, bool odd_after)
{
	if (unwatched)
		rcu_warn(RCU_WARN_HANDLER_UNWATCHED, "rcu_nmi_exit: counter even inside the handler");
	if (odd_after)
		rcu_warn(RCU_WARN_IDLE_EXIT_ODD,
			 "rcu_nmi_exit: counter odd after the outermost exit from idle");
}

void rcu_nmi_exit_cpu(unsigned cpu)
{
	rcu_nmi_exit_inline(rcu_dynticks_of(cpu));
}

void rcu_nmi_exit(void)
{
	rcu_nmi_exit_inline(&nk_this_cpu()->rcu);
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
	return atomic_load_explicit(&rcu_dynticks_of(cpu)->dynticks, memory_order_acquire);
}

/* model: gp(): quiescent if the snapshot was even or the counter has moved. */
bool rcu_dynticks_quiescent_since(unsigned cpu, uint64_t snap)
{
	if (!(snap & 1))
		return true;
	return atomic_load_explicit(&rcu_dynticks_of(cpu)->dynticks, memory_order_acquire) != snap;
}

uint64_t rcu_dynticks_read(unsigned cpu)
{
	if (cpu >= NMIKIT_MAX_CPUS)
		return 0;
	return atomic_load_explicit(&rcu_dynticks_of(cpu)->dynticks, memory_order_relaxed);
}

long rcu_nmi_nesting_read(unsigned cpu)
{
	if (cpu >= NMIKIT_MAX_CPUS)
		return 0;
	return atomic_load_explicit(&rcu_dynticks_of(cpu)->nmi_nesting, memory_order_relaxed);
}

uint64_t rcu_nmi_from_idle(unsigned cpu)
{
	if (cpu >= NMIKIT_MAX_CPUS)
		return 0;
	return nk_stat_read(&rcu_dynticks_of(cpu)->from_idle);
}
