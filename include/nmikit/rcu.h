/*
 * rcu.h: nmikit's RCU, and the per-CPU counters that let NMIs nest into it.
 *
 * Two parts, two files:
 *  - core/rcu_nmi.c: whether RCU watches a CPU.  A per-CPU `dynticks`
 *    counter, odd while RCU watches the CPU and even while it is idle (or in
 *    user mode, for a kernel that tells RCU so), and a per-CPU NMI nesting
 *    counter.  rcu_nmi_enter()/rcu_nmi_exit() bracket every NMI (and every
 *    exception that can interrupt idle) so that its handler is watched.
 *    This is exactly the protocol checked by models/rcu_dynticks.pml.
 *  - core/rcu.c: the RCU itself.  Read-side critical sections with
 *    preemption off, synchronize_rcu() waiting until every CPU has passed a
 *    quiescent state, call_rcu() with callbacks run by a per-CPU thread.
 *
 * docs/rcu-nmi.md describes the protocol, the proof and the implementation.
 * core/rcu_nmi.c needs nothing from the OS beyond os_cpu_id(); core/rcu.c
 * also needs the RCU hooks of <nmikit/os.h>.
 */
#ifndef NMIKIT_RCU_H
#define NMIKIT_RCU_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* --- is RCU watching this CPU? (core/rcu_nmi.c) ------------------------- */

/*
 * Bracket an NMI handler, or any handler that may interrupt idle or user
 * mode (the x86 #DB, #BP and #MC entries).  From idle they make RCU watch
 * the CPU for as long as the handler runs; otherwise they only count the
 * nesting.  They nest to any depth, and an NMI may arrive between any two
 * of their instructions.
 * NMI-safe: yes.  Per-CPU counters only this CPU writes; one atomic
 * increment (with full barriers) when leaving or re-entering idle; no loop,
 * no lock.
 */
void rcu_nmi_enter(void);
void rcu_nmi_exit(void);
/* The same for a caller that already has its CPU number (cpu == os_cpu_id()). */
void rcu_nmi_enter_cpu(unsigned cpu);
void rcu_nmi_exit_cpu(unsigned cpu);

/*
 * Process level only, interrupts off: the CPU stops / starts being watched
 * because it goes idle / leaves idle.  While idle it may run no RCU reader
 * (an NMI may: it brackets itself with rcu_nmi_enter/exit).
 */
void rcu_idle_enter(void);
void rcu_idle_exit(void);

/*
 * The same for user mode, for a kernel that calls them on every transition
 * to and from user mode: a CPU running user code is then quiescent without
 * waiting for a tick.  The testbed kernel does not call them (its tick
 * detects user mode, docs/rcu-nmi.md); they are tested on their own.
 */
void rcu_user_enter(void);
void rcu_user_exit(void);

/* True when RCU watches this CPU now.  NMI-safe: yes (one load). */
bool rcu_is_watching(void);

/*
 * The grace-period side: a snapshot of `cpu`'s counter (full barrier
 * before the load), and whether the CPU has been quiescent since: the
 * snapshot was even (idle then), or the counter has moved since.
 */
uint64_t rcu_dynticks_snap(unsigned cpu);
bool rcu_dynticks_quiescent_since(unsigned cpu, uint64_t snap);

/* The two counters of `cpu`, for tests and the shell. */
uint64_t rcu_dynticks_read(unsigned cpu);
long rcu_nmi_nesting_read(unsigned cpu);

/* The nesting value of a CPU that is not idle (process level). */
#define RCU_NESTING_NONIDLE	(1L << 62)

/* Invariant violations found by the checks (each kind warns once). */
enum rcu_warning {
	RCU_WARN_EXIT_NESTING_ZERO,	/* rcu_nmi_exit() with nesting 0 */
	RCU_WARN_HANDLER_UNWATCHED,	/* counter even inside a handler */
	RCU_WARN_IDLE_EXIT_ODD,		/* counter odd after the outermost exit from idle */
	RCU_WARN_EQS_ENTER,		/* idle/user enter not from the non-idle process level */
	RCU_WARN_EQS_EXIT,		/* idle/user exit when not idle */
	RCU_WARN_READ_UNWATCHED,	/* rcu_read_lock() while RCU is not watching */
	RCU_WARN_SYNC_IN_READER,	/* synchronize_rcu() inside a reader or an NMI */
	RCU_WARN_SWITCH_UNWATCHED,	/* context switch while RCU is not watching */
	RCU_WARN_KINDS
};

/*
 * Count a violation and warn (through the log, once per kind).
 * NMI-safe: yes (atomic counters, the lock-free log).
 */
void rcu_warn(enum rcu_warning what, const char *msg);
/* Violations counted so far, of one kind or (RCU_WARN_KINDS) of all. */
uint64_t rcu_warnings(enum rcu_warning what);

/* NMIs (or IST exceptions) that found `cpu` idle and made RCU watch it. */
uint64_t rcu_nmi_from_idle(unsigned cpu);

/* --- RCU (core/rcu.c) ------------------------------------------------------ */

/*
 * A callback for call_rcu(), embedded in the caller's object.  Both fields
 * belong to RCU from call_rcu() until func is called.
 */
struct rcu_head {
	struct rcu_head *next;
	void (*func)(struct rcu_head *head);
};

/*
 * A read-side critical section: preemption off (os_preempt_disable), so the
 * CPU cannot pass a quiescent state inside it.  Readers nest.  No sleeping
 * inside.  NMI handlers are readers already (the NMI core brackets them
 * with rcu_nmi_enter/exit and an NMI is never preempted); calling these in
 * NMI context is allowed and costs nothing more than two counter moves.
 * NMI-safe: yes.
 */
void rcu_read_lock(void);
void rcu_read_unlock(void);
/* True inside rcu_read_lock() on this CPU.  NMI-safe: yes. */
bool rcu_read_lock_held(void);

/* Publish a pointer to a completely initialised object / read one. */
#define rcu_assign_pointer(p, v)	atomic_store_explicit(&(p), (v), memory_order_release)
#define rcu_dereference(p)		atomic_load_explicit(&(p), memory_order_acquire)
/* Replace the published pointer and return the old one. */
#define rcu_replace_pointer(p, v)	atomic_exchange_explicit(&(p), (v), memory_order_acq_rel)

/*
 * Wait for a grace period: return once every reader that was running
 * anywhere when it was called has finished.  Grace periods are shared: a
 * caller that finds one already running waits for the next full one.
 * Task context only (it sleeps through os_rcu_wait()); never in a reader
 * or NMI context (it warns and returns at once there).
 */
void synchronize_rcu(void);

/*
 * Call func(head) after a grace period, from this CPU's RCU callback
 * thread (task context).  Callbacks queued on one CPU run in order.
 * Any context except NMI (interrupts are disabled for a few instructions).
 */
void call_rcu(struct rcu_head *head, void (*func)(struct rcu_head *head));

/* Wait until every callback queued before the call has run.  Task context. */
void rcu_barrier(void);

/* --- hooks for the kernel ---------------------------------------------- */

/*
 * The scheduler is about to switch tasks (or decided not to) on this CPU:
 * the CPU is in no reader, a quiescent state.  Interrupts off.
 */
void rcu_note_context_switch(void);

/*
 * The timer tick on this CPU.  `quiescent`: the interrupted context was
 * user mode, or kernel code with preemption enabled (so in no reader).
 */
void rcu_tick(bool quiescent);

/*
 * The body of CPU `cpu`'s callback thread, which the kernel runs pinned to
 * that CPU: takes the callbacks queued so far, waits for a grace period,
 * runs them.  Returns false at once when there were none (the thread
 * sleeps until os_rcu_kick_callbacks() wakes it).
 */
bool rcu_do_batch(void);
/* Callbacks queued on `cpu` and not yet taken by rcu_do_batch(). */
bool rcu_callbacks_pending(unsigned cpu);

struct rcu_stats {
	uint64_t gp_seq;		/* grace periods completed */
	uint64_t gp_waits;		/* os_rcu_wait() calls by grace-period owners */
	uint64_t gp_longest_ns;		/* longest grace period */
	uint64_t stalls;		/* stall warnings printed */
	uint64_t qs_switch, qs_tick;	/* quiescent states reported, all CPUs */
	uint64_t cb_queued, cb_invoked;	/* call_rcu() callbacks, all CPUs */
};
void rcu_get_stats(struct rcu_stats *out);

/*
 * Demonstration switch (boot parameter rcu_torture_broken_sync=1, default
 * off): synchronize_rcu() returns without waiting.  Exists only so that the
 * torture test can show it detects a broken RCU; never set it otherwise.
 */
extern bool rcu_torture_broken_sync;

/* Warn when one CPU holds a grace period up longer than this (ms). */
extern uint64_t rcu_stall_ms;

#endif
