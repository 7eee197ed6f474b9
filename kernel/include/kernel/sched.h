/*
 * sched.h: nmikit's tasks and its per-CPU preemptive round-robin scheduler.
 *
 * A task is a kernel thread or a ring-3 task.  Every task has its own kernel
 * stack with an unmapped guard page below it; ring-3 tasks also have a user
 * stack, likewise guarded.  Each CPU runs the tasks created for it from its
 * own run queue; tasks created with TASK_CPU_ANY may be taken by an idle CPU.
 * The timer tick sets need_resched when a task's time slice is used up, and
 * the return path of the interrupt switches tasks.  docs/scheduler.md has
 * the design.
 *
 * NMI context: nothing here may be called from an NMI handler except the
 * per-CPU readers task_current() and preempt_count().  The run queues and the
 * task table are protected by spinlocks that an NMI could find held by the
 * very code it interrupted (docs/scheduler.md, "NMI context").
 */
#ifndef KERNEL_SCHED_H
#define KERNEL_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <arch/percpu.h>
#include <arch/regs.h>

#define TASK_NAME_MAX		24
#define TASK_MAX		64	/* task slots, idle tasks not counted */
#define TASK_KSTACK_SIZE	(16 * 1024)
#define TASK_USTACK_SIZE	(16 * 1024)

/* The `cpu` argument of the creation functions: no affinity. */
#define TASK_CPU_ANY		(-1)

/* Exit code of a ring-3 task killed by an exception with vector `v`. */
#define TASK_EXIT_FAULT(v)	(-128 - (int)(v))
/* Exit code of a ring-3 task whose return to ring 3 was refused (bad RIP). */
#define TASK_EXIT_BAD_RETURN	(-127)

enum task_state {
	TASK_FREE = 0,		/* slot unused */
	TASK_RUNNABLE,		/* running, or waiting in a run queue */
	TASK_SLEEPING,		/* waiting for task_wake() or its wake tick */
	TASK_DEAD,		/* exited; waits to be reaped */
};

struct task_stats {
	uint64_t switches_in;	/* times it was given a CPU */
	uint64_t preemptions;	/* times the tick took the CPU away from it */
	uint64_t ticks;		/* ticks that found it running */
	uint64_t user_ticks;	/* ... of which in ring 3 */
	uint64_t syscalls;	/* SYSCALLs it made */
	uint64_t bytes_written;	/* through the write system call */
};

struct task;

/*
 * Optional per-task handler for exceptions from ring 3 (tests of hostile user
 * code).  Returns true when the fault is dealt with and the task may go on
 * (it may edit *r; the return to ring 3 is re-checked); false to kill it.
 */
typedef bool task_fault_fn(struct task *t, struct regs *r, const char *what);

struct task {
	uint64_t saved_rsp;		/* switch.S: kernel RSP while switched out */
	uint64_t kstack_top;		/* TSS.rsp0 and SYSCALL stack while it runs */
	uint8_t *kstack_base;		/* lowest byte; the guard page is below */
	uint64_t ustack_top;		/* 0 for kernel threads */
	uint8_t *ustack_base;

	uint32_t id;			/* unique, never reused; idle tasks have 0 */
	char name[TASK_NAME_MAX];
	volatile enum task_state state;
	bool user;			/* a ring-3 task */
	bool is_idle;
	bool pinned;			/* stays on `cpu`; false for TASK_CPU_ANY */
	bool detached;			/* nobody will task_wait(): reap at exit */
	bool on_rq;			/* linked in its CPU's run queue */
	bool on_sleep_list;
	volatile bool off_cpu;		/* after TASK_DEAD: its stack is no longer in use */
	volatile bool seen_in_user;	/* a tick found it in ring 3 */
	volatile unsigned int cpu;	/* the CPU whose queues it is on */
	unsigned int slot;		/* index in the task pool */
	unsigned int slice_left;	/* ticks */

	struct task *rq_next;
	struct task *sleep_next;
	uint64_t wake_ns;		/* sleep list: os_timestamp_ns() to wake at */
	struct task *volatile waiter;	/* sleeps in task_wait() */

	void (*fn)(void *);		/* kernel threads: body and argument */
	void *arg;
	task_fault_fn *fault_fn;
	int exit_code;
	struct task_stats stats;
};

/* --- set-up ------------------------------------------------------------- */

/*
 * Boot CPU, once, before the other CPUs start (Step 8): task pool and its
 * guard pages, user stacks made user-accessible, run queues, SYSCALL MSRs,
 * and kmain's own context becomes CPU 0's idle task.
 */
void sched_init(void);

/*
 * Become this CPU's idle loop: run tasks from the run queue, HLT with
 * interrupts on when there are none.  Never returns.  CPU 0 calls it at the
 * end of kmain; the other CPUs reach it through smp_set_ap_idle().
 */
_Noreturn void sched_idle(void);

/* The timer tick, on each CPU, in interrupt context (registered by sched_init). */
void sched_tick(struct regs *r);

/* The scheduler's tick count on `cpu` (timer_hz() per second). */
uint64_t sched_ticks(unsigned int cpu);

/* --- tasks -------------------------------------------------------------- */

typedef void task_fn(void *arg);
/* A ring-3 entry point; returning from it is exit(return value). */
typedef long user_fn(long arg);

/*
 * Create a kernel thread running fn(arg) on `cpu` (or TASK_CPU_ANY); it
 * exits when fn returns.  Returns NULL when the pool is full or `cpu` is not
 * online.  The creator must task_wait() for it or task_detach() it.
 */
struct task *task_create_kernel(const char *name, task_fn *fn, void *arg, int cpu);

/*
 * Create a ring-3 task that starts at `entry` (code in .utext) with `arg` in
 * RDI, on its own user stack, with a return address that makes `return x`
 * the same as the exit system call.
 */
struct task *task_create_user(const char *name, user_fn *entry, long arg, int cpu);

/*
 * Create a ring-3 task whose first instruction in ring 3 sees exactly the
 * registers in *init: every general register, RIP, RFLAGS and (unless
 * `own_stack`) RSP, which may be anything at all (non-canonical, a kernel
 * address, misaligned).  With `own_stack`, RSP is the top of the task's user
 * stack with a return address as in task_create_user().
 * init->cs, ss, vector and error are ignored (CS/SS are the user selectors).
 * RFLAGS: CF PF AF ZF SF TF DF OF AC RF ID are taken from init; IF is
 * forced on, IOPL to 0, NT VM VIF VIP off.  Returns NULL for a
 * non-canonical RIP (IRETQ would fault in ring 0), a full pool or a CPU that
 * does not run the scheduler.
 */
struct task *task_create_user_regs(const char *name, const struct regs *init,
				   bool own_stack, int cpu);

/* Everything task_create_user_regs() takes, and a fault handler. */
struct user_task_spec {
	const char *name;
	struct regs regs;
	bool own_stack;
	task_fault_fn *fault_fn;	/* NULL: every ring-3 exception kills */
	int cpu;
};
struct task *task_create_user_spec(const struct user_task_spec *spec);

/*
 * Wait until `t` has exited, free it and return its exit code; its final
 * statistics go to *stats unless NULL.  Sleeps (so only from task context,
 * not from an interrupt handler or the idle task).
 */
int task_wait(struct task *t, struct task_stats *stats);

/* Let `t` be freed as soon as it exits; nobody may use the pointer after. */
void task_detach(struct task *t);

/* End the calling task with `code`. */
_Noreturn void task_exit(int code);

/* The running task on this CPU (its idle task when nothing else runs). */
static inline struct task *task_current(void)
{
	struct task *t;
	__asm__ volatile("movq %%gs:%c1, %0" : "=r"(t)
			 : "i"(__builtin_offsetof(struct percpu, current)));
	return t;
}

/* --- scheduling --------------------------------------------------------- */

/* Give up the CPU if another task on this CPU's run queue is waiting. */
void yield(void);

/* Sleep for at least `ms` milliseconds (rounded up to whole ticks, +1). */
void sleep_ms(uint64_t ms);

/*
 * Pick the next task and switch to it.  Called by yield, sleep and exit, and
 * by the interrupt-exit hook to preempt.  Must not be called with
 * preemption disabled or in interrupt context other than that hook.
 */
void schedule(void);

/* Make a sleeping task runnable (from task or interrupt context). */
void task_wake(struct task *t);

/*
 * Preemption counting, per CPU.  Each is one instruction on a %gs-relative
 * field, so a task moved to another CPU between two of them cannot update
 * the wrong CPU's count.
 */
static inline void preempt_disable(void)
{
	__asm__ volatile("incq %%gs:%c0"
			 :: "i"(__builtin_offsetof(struct percpu, preempt_count)) : "memory");
}

static inline void preempt_enable_no_resched(void)
{
	__asm__ volatile("decq %%gs:%c0"
			 :: "i"(__builtin_offsetof(struct percpu, preempt_count)) : "memory");
}

static inline uint64_t preempt_count(void)
{
	uint64_t c;
	__asm__ volatile("movq %%gs:%c1, %0" : "=r"(c)
			 : "i"(__builtin_offsetof(struct percpu, preempt_count)));
	return c;
}

/* Switch now if the tick asked for it and nothing forbids it here. */
void preempt_check_resched(void);

static inline void preempt_enable(void)
{
	preempt_enable_no_resched();
	preempt_check_resched();
}

/* --- ring 3 ------------------------------------------------------------- */

/*
 * For the trap handlers: an exception taken in ring 3 that nothing else
 * handles.  Returns false when `r` did not come from ring 3 (not ours).
 * Otherwise the task's fault handler may claim it (returns true: go back to
 * ring 3 through `r`); if not, the task is killed with a console message
 * naming it, `what` and the RIP, and this call does not return.
 */
bool sched_handle_user_fault(struct regs *r, const char *what);

/*
 * Kill the running ring-3 task: print "user task 'name' (pid N) killed:
 * <why> at rip ..." (with the fault address for a #PF) and exit with `code`.
 * `r` is its ring-3 register block.
 */
_Noreturn void user_task_kill(struct regs *r, const char *why, int code);

/* --- between the scheduler's own files (sched.c, user.c) ----------------- */

/* A task slot for `name` on `cpu`, not yet runnable (NULL: pool full, bad CPU). */
struct task *task_alloc(const char *name, int cpu, bool user);
/* Its first switch_to() lands in task_first_entry with %rsp = `rsp`. */
void task_prepare_first_switch(struct task *t, uint64_t rsp);
/* Put it on its CPU's run queue. */
void task_start(struct task *t);
/* Whether `rsp` lies in `t`'s kernel stack. */
static inline bool on_task_stack(const struct task *t, uint64_t rsp)
{
	return t->kstack_base && rsp >= (uint64_t)t->kstack_base && rsp < t->kstack_top;
}
/* Boot CPU, from sched_init(): the user stack pool and the ring-3 fault hook. */
void user_init(void);

/* A task pool listing for the shell / debugging: one line per live task. */
typedef void sched_list_fn(const struct task *t, bool running, void *arg);
void sched_for_each_task(sched_list_fn *fn, void *arg);
const char *task_state_name(const struct task *t);

#endif
