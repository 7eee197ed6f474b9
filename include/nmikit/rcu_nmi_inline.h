/*
 * rcu_nmi_inline.h: the per-CPU counters of core/rcu_nmi.c and the NMI
 * bracket on them (rcu_nmi_enter/exit), as inline functions, for the two
 * places that run them on every NMI: core/rcu_nmi.c itself (the exported
 * rcu_nmi_enter_cpu()/rcu_nmi_exit_cpu()) and nmi_entry() in core/nmi.c,
 * which inlines them instead of calling them (two calls, two returns and
 * the argument set-up fewer on every NMI).  Internal to the core: it lives
 * here only because core/ includes nothing but <nmikit/...> headers.  No
 * code outside core/ may use it or touch the counters (the host tests
 * break them on purpose); everyone else uses <nmikit/rcu.h>.
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
#ifndef NMIKIT_RCU_NMI_INLINE_H
#define NMIKIT_RCU_NMI_INLINE_H

#include <nmikit/compiler.h>
#include <nmikit/core_cpu.h>
#include <nmikit/os.h>
#include <nmikit/rcu.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>


/* The slot of CPU `cpu` (== os_cpu_id() for the NMI bracket below). */
static inline struct rcu_dynticks *rcu_dynticks_of(unsigned cpu)
{
	return &nk_cpus[cpu].rcu;
}

/* Keeps the compiler from moving per-CPU counter accesses across a step. */
#define rcu_step()	atomic_signal_fence(memory_order_seq_cst)

/*
 * The full barrier on each side of the counter's increment.  On x86 a
 * locked read-modify-write is itself one (Intel SDM vol. 3A, "Locked
 * Instructions Have a Total Order" and "Loads and Stores Are Not Reordered
 * with Locked Instructions"; the same rule Linux's smp_mb__before_atomic()
 * relies on there), so only the compiler must be kept from moving accesses
 * across it: a fence instruction next to the locked add would order
 * nothing more (the POSIX host runs on x86 too).  On other architectures
 * it is a real fence: C11 does not promise that a seq_cst read-modify-
 * write orders the relaxed and plain accesses around it as a fence does.
 */
#if defined(__x86_64__) || defined(__i386__)
#define rcu_mb_around_inc()	atomic_signal_fence(memory_order_seq_cst)
#else
#define rcu_mb_around_inc()	atomic_thread_fence(memory_order_seq_cst)
#endif

/*
 * The model's DT_INC, with the full barriers the protocol requires: no
 * memory access of the code before it (the handler that is ending, the
 * idle entry) may be seen after it, and none after it (the handler that is
 * starting) before it.  The grace-period side pairs with this through the
 * barrier in rcu_dynticks_snap().  Returns the counter as the increment
 * found it.
 */
static inline uint64_t rcu_dynticks_inc(struct rcu_dynticks *d)
{
	uint64_t old;

	rcu_mb_around_inc();
	old = atomic_fetch_add_explicit(&d->dynticks, 1, memory_order_seq_cst);
	rcu_mb_around_inc();
	return old;
}

/* The exit's warnings, out of line (core/rcu_nmi.c). */
void rcu_nmi_exit_warn(bool unwatched, bool odd_after);

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
 * Inlined into rcu_nmi_enter_inline(), which has the slot's address.
 */
static inline __attribute__((always_inline)) void rcu_nmi_enter_from_idle(struct rcu_dynticks *d)
{
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
 * handler that ran unwatched is reported there.  Both branches are one
 * function with no call outside a warning: the branch from idle (every NMI
 * that wakes an idle CPU) pays no second call and no second computation of
 * the slot's address.
 */
static inline __attribute__((always_inline)) void rcu_nmi_enter_inline(struct rcu_dynticks *d)
{
	/* EN_TEST: is RCU watching this CPU already? */
	if (NK_UNLIKELY(!(atomic_load_explicit(&d->dynticks, memory_order_relaxed) & 1))) {
		rcu_nmi_enter_from_idle(d);	/* no: EN_INC first */
		return;
	}
	rcu_nmi_enter_nest(d, 2);
}

/*
 * NMI context.  Safe for the same reasons as rcu_nmi_enter_inline().
 *
 * model: EX_NLD -> EX_NST            (nesting != 1)
 *                -> EX_ZERO -> EX_INC (nesting == 1: last out of idle)
 *
 * EX_NLD's choice and the CHECK_COUNTERS check share one compare against
 * 1: above it every exit takes EX_NST, at it the NMI that made RCU watch
 * leaves (EX_ZERO, EX_INC), below it (<= 0) is an exit without an entry.
 * The warnings are printed after the steps, so that no path makes a call
 * before its last step.
 *
 * BODY_END (model: CHECK_WATCH, the handler ran watched up to here) reads
 * the counter right after EX_NLD on the EX_NST branch.  On the last exit
 * from idle it is the value EX_INC's locked xadd returns: between BODY_END
 * and EX_INC only EX_ZERO and NMIs nested on this CPU run, every nested
 * NMI leaves the counter exactly as it found it (CHECK_COUNTERS), and the
 * model asserts at EX_INC itself that the counter is still odd there.  So
 * that one value answers both checks of this branch: even means the
 * handler ran unwatched AND the increment left the counter odd, i.e. the
 * CPU still watched although it is idle; odd means neither.
 */
static inline __attribute__((always_inline)) void rcu_nmi_exit_inline(struct rcu_dynticks *d)
{
	bool unwatched;
	long n;

	/* EX_NLD */
	rcu_step();
	n = atomic_load_explicit(&d->nmi_nesting, memory_order_relaxed);
	if (NK_LIKELY(n > 1)) {
		/* BODY_END: the handler ran watched up to here. */
		unwatched = !(atomic_load_explicit(&d->dynticks, memory_order_relaxed) & 1);
		/* EX_NST: not the NMI that made RCU watch; leave dynticks alone. */
		atomic_store_explicit(&d->nmi_nesting, n - 2, memory_order_relaxed);
		rcu_step();
		if (NK_UNLIKELY(unwatched))
			rcu_nmi_exit_warn(true, false);
		return;
	}
	if (NK_UNLIKELY(n != 1)) {
		/* n <= 0: touch nothing, a guess would make it worse. */
		rcu_warn(RCU_WARN_EXIT_NESTING_ZERO, "rcu_nmi_exit: nesting is 0 (exit without entry)");
		return;
	}
	/*
	 * EX_ZERO then EX_INC, in this order: an NMI nested between them
	 * finds nesting 0 with the counter still odd, so it adds 2 and takes
	 * 2 away, and leaves everything as it found it.  The other order lets
	 * it see "idle", take the +1 and leave nesting wrong (the model's
	 * rcu_dynticks_exit_order counterexample).
	 */
	atomic_store_explicit(&d->nmi_nesting, 0, memory_order_relaxed);
	rcu_step();
	unwatched = !(rcu_dynticks_inc(d) & 1);	/* BODY_END's value, see above */
	if (NK_UNLIKELY(unwatched))
		rcu_nmi_exit_warn(true, true);
}

#endif /* NMIKIT_RCU_NMI_INLINE_H */
