/*
 * hostile.h: what the hostile-user and NMI-storm tests share.
 *
 * Ring 3 (kernel/hostile_user.c, in .utext / .udata): programs that run with
 * any register state at all - RSP in the NMI stack, non-canonical, in kernel
 * data - and report what they saw in `hostile_status`.
 *
 * Kernel (kernel/storm_tests.c): a tagged NMI storm.  Sender threads bump a
 * per-(target, sender) pending counter and then send an NMI; the storm's
 * handler on the target claims the counters with one exchange each, so every
 * send is claimed exactly once whatever the NMI latch merged.  The hostile
 * tests use it to rain NMIs on the CPU that runs the hostile task.
 * docs/threat-model.md says what each test defends.
 */
#ifndef KERNEL_HOSTILE_H
#define KERNEL_HOSTILE_H

#include <stdbool.h>
#include <stdint.h>

/* --- ring 3: kernel/hostile_user.c ----------------------------------------- */

/*
 * hostile_loop's options, in R13 at entry.  The loop never touches memory
 * through RSP (so any RSP works) except under HL_CHECK_FLAGS, which borrows
 * hostile_status.stack for one PUSHFQ/POPQ.
 */
#define HL_SYSCALL	(1u << 0)	/* a getpid SYSCALL every round */
#define HL_CHECK_DF	(1u << 1)	/* DF must stay set: LODSB must walk down */
#define HL_CHECK_FLAGS	(1u << 2)	/* RFLAGS & R14 must equal RBX every round */
#define HL_WINDOW_SPIN	(1u << 3)	/* spin at hostile_window_spin each round */
#define HL_NULL_SEGS	(1u << 4)	/* load null selectors into DS ES FS GS first */
#define HL_PAD_SYSCALL	(1u << 5)	/* a long straight run ending in the SYSCALL */

/*
 * What hostile_loop reports.  Offsets are used by the assembly in
 * hostile_user.c (checked there with _Static_assert).
 */
struct hostile_status {
	volatile uint64_t stop;		/* 0: in: nonzero ends the loop (exit 0) */
	volatile uint64_t rounds;	/* 8: out: loop rounds */
	volatile uint64_t syscalls;	/* 16: out: SYSCALLs made */
	volatile uint64_t bad_cs;	/* 24: out: rounds that read a CS without RPL 3 */
	volatile uint64_t last_cs;	/* 32: out: the last CS read */
	volatile uint64_t rsp_lost;	/* 40: out: rounds that found RSP changed */
	volatile uint64_t df_lost;	/* 48: out: rounds that found DF clear */
	volatile uint64_t flags_bad;	/* 56: out: rounds with RFLAGS & R14 != RBX */
	volatile uint64_t last_flags;	/* 64: out: the last RFLAGS read */
	volatile uint64_t spins;	/* 72: out: iterations in the window spin */
	volatile uint64_t resumed;	/* 80: out: times hostile_window_resume ran */
	volatile uint64_t traps;	/* 88: out: rounds of the trap loops */
	volatile uint64_t probe[4];	/* 96: LODSB reads here */
	volatile uint64_t stack[14];	/* 128: a scratch stack for PUSHFQ; top at 240 */
};
extern struct hostile_status hostile_status;

/*
 * Entered with any register state:
 *   R12  an nmikit_test op to call every round (0: none)
 *   R13  HL_* options
 *   R14  RFLAGS bits to check (HL_CHECK_FLAGS); RBX their expected value
 *   R15  stop after this many rounds (0: only when hostile_status.stop is set)
 * RSP is kept as it was; every round checks that it still is.  Exits 0.
 */
void hostile_loop(void);

/*
 * The window spin: hostile_loop, with HL_WINDOW_SPIN, waits between these
 * two labels for an NMI; the test's NMI hook may send it to ring 0 from
 * there (see hostile_tests.c) and have it come back at
 * hostile_window_resume, which counts and continues the loop.
 */
extern char hostile_window_spin[], hostile_window_spin_end[], hostile_window_resume[];

/*
 * Each executes its instruction, counts a round in hostile_status.traps and
 * repeats until R15 rounds are done, or with R15 = 0 until
 * hostile_status.stop is set (then exits 0).  Without a fault handler the
 * first exception kills the task.  icebp is INT1 (0xf1: #DB on hardware;
 * QEMU 7.2's TCG does not implement it and raises #UD), into is 0xce (#UD in
 * 64-bit mode).
 */
void hostile_int3_loop(void);
void hostile_icebp_loop(void);
void hostile_into_loop(void);
void hostile_ud2_loop(void);

/* --- the NMI storm: kernel/storm_tests.c ------------------------------------- */

#define STORM_MAX_CPUS	16

struct storm_config {
	uint64_t senders;	/* CPUs that send (mask; offline ones are skipped) */
	uint64_t targets;	/* CPUs that receive; nobody sends to itself */
	uint64_t gap_ns;	/* at least this long between two sends of one sender */
	uint64_t max_in_flight;	/* a sender keeps at most this many unclaimed NMIs per target (0: no limit) */
	uint64_t seconds;	/* senders stop on their own after this long (0: 60) */
};

/* Per target CPU, after storm_stop(). */
struct storm_cpu_totals {
	uint64_t sent;		/* NMIs sent to it (all senders) */
	uint64_t claimed;	/* events its handler claimed (all senders) */
	uint64_t calls;		/* handler calls that claimed something */
	uint64_t late;		/* ... of those: nothing pending, an earlier call had taken it */
	uint64_t foreign;	/* handler calls it let go: not a storm or probe NMI */
	uint64_t collapsed;	/* storm NMIs never delivered: merged in the latch */
	uint64_t max_batch;	/* most events claimed by one call */
	uint64_t mismatched;	/* senders whose sends != claims */
};

/*
 * Start: register the storm handler (NMI_LOCAL) and one sender thread per
 * sending CPU.  Returns 0, or -1 when a storm runs already, the handler
 * cannot be registered or a thread cannot be started.
 */
int storm_start(const struct storm_config *c);

/* Stop the senders, wait until every sent event is claimed (at most 2 s), unregister. */
void storm_stop(void);

/* The totals of CPU `cpu` as a target, valid after storm_stop(). */
void storm_cpu_totals(unsigned cpu, struct storm_cpu_totals *out);

/* Events sent and not yet claimed, over all targets (any time). */
uint64_t storm_unclaimed(void);

/* NMIs sent so far by all senders (any time). */
uint64_t storm_sent_total(void);

/*
 * Send one tagged NMI to `target` (itself included) from the calling CPU.
 * NMI-safe: two atomic increments and an ICR write.  Only while a storm runs.
 */
void storm_send(unsigned target);

#endif
