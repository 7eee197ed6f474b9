/*
 * core_cpu.h: the per-CPU block of the core's NMI path.  Everything one
 * NMI touches on its own CPU - the dispatch state (core/nmi.c), the RCU
 * counters (core/rcu_nmi.c) and the lost-NMI probe (core/nmi_probe.c) -
 * sits in one struct nk_cpu per CPU, so that nmi_entry() finds all three
 * from one base pointer computed once per NMI instead of indexing three
 * arrays (and keeping three pointers live across the handler calls).
 * Internal to the core: it lives here only because core/ includes nothing
 * but <nmikit/...> headers.  No code outside core/ may touch these fields
 * (the host tests break some of them on purpose); everyone else uses the
 * functions of <nmikit/nmi.h> and <nmikit/rcu.h>.  Each module still owns
 * its part: only core/nmi.c writes `nmi`, only the RCU files `rcu`, only
 * the probe `probe`.
 */
#ifndef NMIKIT_CORE_CPU_H
#define NMIKIT_CORE_CPU_H

#include <nmikit/compiler.h>
#include <nmikit/irq_work.h>
#include <nmikit/os.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* --- the dispatch (core/nmi.c) --- */

enum nmi_cpu_state {
	NMI_NOT_RUNNING = 0,
	NMI_EXECUTING = 1,
	NMI_LATCHED = 2,	/* EXECUTING, and another NMI came in meanwhile */
};

struct nmi_counters {
	_Atomic uint64_t entries, normal, unknown, external, swallowed;
	_Atomic uint64_t latched, repeated, nested, from_user, emergency;
	_Atomic uint64_t reason_busy;
};

struct nmi_cpu {
	_Atomic unsigned state;		/* enum nmi_cpu_state */
	/*
	 * The doorbell: rung bits (low half) and listen bits (high half) in
	 * one word, so the dispatch tests both with one load.  Any CPU rings
	 * or listens (atomic OR / AND); only this CPU's dispatch takes rung
	 * bits.  See nmi_bells_run().
	 */
	_Atomic uint64_t bell;
	_Atomic uint64_t seq;		/* odd while inside nmi_entry() */
	_Atomic bool parked;		/* stopped by a shootdown */
	/*
	 * Back-to-back detection, touched only by this CPU's dispatch.  No
	 * "have a previous NMI" flag: last_ip only matters together with
	 * last_claimed_many, which is false until an NMI has set both.
	 */
	bool last_claimed_many;		/* previous NMI: local chain claimed > 1 */
	uint64_t last_ip;
	struct nmi_counters ctr;
	char panic_msg[64];
} NK_CACHE_ALIGNED;

/* --- RCU nesting (core/rcu_nmi.c, <nmikit/rcu_nmi_inline.h>) --- */

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

/* --- the lost-NMI probe (core/nmi_probe.c, <nmikit/nmi_probe_inline.h>) --- */

struct nmi_probe_cpu {
	struct irq_work work;		/* lazy: runs from the tick */
	_Atomic bool wanted;		/* an NMI was claimed since the last probe */
	_Atomic bool pending;		/* a probe NMI is (or may be) in flight */
	_Atomic bool absorbed_mark;	/* an unclaimed NMI was taken for the probe */
	uint64_t sent_seq;		/* nmi_seq() of this CPU when last sent */
	_Atomic uint64_t sent, found, absorbed, collapsed;
} NK_CACHE_ALIGNED;

/*
 * The RCU counters first: their locked increments take the block's own
 * address (gcc keeps a pointer to a member at an offset in a register of
 * its own, and spills it across the handler calls).
 */
struct nk_cpu {
	struct rcu_dynticks rcu;
	struct nmi_cpu nmi;
	struct nmi_probe_cpu probe;
};

/* Defined in core/nmi.c. */
extern struct nk_cpu nk_cpus[NMIKIT_MAX_CPUS];

/*
 * This CPU's block.  NMI-safe: yes.  With the port's inline os_cpu_block()
 * (NMIKIT_OS_INLINE_CPU_BLOCK) one load of the pointer the port cached
 * from nmi_cpu_block(); otherwise the array indexed by os_cpu_id().
 */
static inline struct nk_cpu *nk_this_cpu(void)
{
#ifdef NMIKIT_OS_INLINE_CPU_BLOCK
	return (struct nk_cpu *)os_cpu_block();
#else
	return &nk_cpus[os_cpu_id()];
#endif
}

#endif
