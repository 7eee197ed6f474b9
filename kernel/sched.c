/*
 * sched.c: tasks and the per-CPU preemptive round-robin scheduler.
 *
 * Each CPU has a run queue (FIFO of runnable tasks, not counting the one
 * running), a sleep list, and an idle task that runs when the queue is
 * empty.  A task is only ever on the queues of the CPU in task->cpu.
 * Everything in a run queue, and the state of the tasks on it, is protected
 * by the queue's spinlock, always taken with interrupts off because the
 * timer tick takes it too.  No NMI code may call into this file.
 *
 * The switch itself: schedule() takes the lock, picks the next task and
 * calls switch_to() with the lock held; the task switched to releases it
 * (finish_switch).  Holding it across the switch is what lets another CPU
 * take a task from this queue (task stealing) or wake it without ever
 * seeing it half switched: until the lock is released, the old task's
 * registers are not yet saved.
 */
#include <kernel/sched.h>
#include <kernel/spinlock.h>
#include <kernel/panic.h>
#include <kernel/rcu_setup.h>
#include <kernel/shell.h>
#include <kernel/irq.h>
#include <kernel/time.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/paging.h>
#include <arch/percpu.h>
#include <arch/smp.h>
#include <arch/syscall.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/os.h>
#include <nmikit/param.h>
#include <nmikit/rcu.h>

/* switch.S */
struct task *switch_to(struct task *prev, struct task *next);
void task_first_entry(void);

/* A kernel stack slot: the guard page is unmapped by sched_init(). */
struct kstack_slot {
	uint8_t guard[PAGE_SIZE];
	uint8_t stack[TASK_KSTACK_SIZE];
};

struct runqueue {
	struct spinlock lock;
	struct task *head, *tail;	/* runnable, waiting for the CPU */
	unsigned int nr_queued;
	unsigned int nr_movable;	/* of which created with TASK_CPU_ANY */
	struct task *sleepers;		/* sleep_ms() sleepers, unordered */
	uint64_t ticks;
	struct task *idle;
	volatile bool up;		/* this CPU runs its idle loop */
} __attribute__((aligned(64)));

static struct kstack_slot kstacks[TASK_MAX] __attribute__((aligned(PAGE_SIZE)));
static struct task tasks[TASK_MAX];
static struct task idle_tasks[MAX_CPUS];
static struct runqueue runqueues[MAX_CPUS];

/*
 * The number of TASK_CPU_ANY tasks queued on any CPU: the sum of every
 * queue's nr_movable, kept by rq_enqueue()/rq_unlink() under the queue's
 * lock with a locked add (the queues have different locks).  A task counts
 * here from before its queue's count shows it until after its queue's
 * count has dropped it, so this is never below that sum: when it reads 0,
 * no movable task was queued anywhere at that moment.  The idle loop's
 * check and steal_task() read it first and look at the queues only when
 * it is not 0 (one load instead of a scan of every CPU).
 */
static unsigned int nr_movable_all;

/* Allocation of task slots, and the exit/wait/detach hand-over. */
static struct spinlock task_lock = SPINLOCK_INIT("tasks");
static uint32_t next_task_id = 1;
static bool sched_ready;
static int resched_vector = -1;

static unsigned int sched_slice = 2;
NK_PARAM_UINT("sched_slice", sched_slice, 1, 1000,
	      "round-robin time slice, in timer ticks");

static struct runqueue *this_rq(void)
{
	return &runqueues[this_cpu_id()];
}

/* --- queues (caller holds rq->lock) -------------------------------------- */

static void rq_enqueue(struct runqueue *rq, struct task *t)
{
	t->rq_next = NULL;
	if (rq->tail)
		rq->tail->rq_next = t;
	else
		rq->head = t;
	rq->tail = t;
	rq->nr_queued++;
	if (!t->pinned) {
		__atomic_fetch_add(&nr_movable_all, 1, __ATOMIC_SEQ_CST);	/* first */
		rq->nr_movable++;
	}
	t->on_rq = true;
}

static void rq_unlink(struct runqueue *rq, struct task *prev, struct task *t)
{
	if (prev)
		prev->rq_next = t->rq_next;
	else
		rq->head = t->rq_next;
	if (rq->tail == t)
		rq->tail = prev;
	t->rq_next = NULL;
	rq->nr_queued--;
	if (!t->pinned) {
		rq->nr_movable--;
		__atomic_fetch_sub(&nr_movable_all, 1, __ATOMIC_SEQ_CST);	/* last */
	}
	t->on_rq = false;
}

static struct task *rq_dequeue(struct runqueue *rq)
{
	struct task *t = rq->head;
	if (t)
		rq_unlink(rq, NULL, t);
	return t;
}

static void sleep_list_add(struct runqueue *rq, struct task *t)
{
	if (t->on_sleep_list)
		return;
	t->sleep_next = rq->sleepers;
	rq->sleepers = t;
	t->on_sleep_list = true;
}

static void sleep_list_remove(struct runqueue *rq, struct task *t)
{
	for (struct task **pp = &rq->sleepers; *pp; pp = &(*pp)->sleep_next) {
		if (*pp == t) {
			*pp = t->sleep_next;
			t->sleep_next = NULL;
			t->on_sleep_list = false;
			return;
		}
	}
}

/*
 * Lock the run queue of the CPU `t` belongs to, with interrupts already
 * off.  t->cpu only changes under the old CPU's lock (stealing), so check it
 * again once locked.
 */
static struct runqueue *lock_task_rq(struct task *t)
{
	for (;;) {
		unsigned int c = t->cpu;
		struct runqueue *rq = &runqueues[c];
		spin_lock(&rq->lock);
		if (t->cpu == c)
			return rq;
		spin_unlock(&rq->lock);
	}
}

/* Wake an idle CPU that has just been given work, instead of at its next tick. */
static void kick_cpu(unsigned int cpu)
{
	if (resched_vector < 0 || cpu == this_cpu_id() || !lapic_ready())
		return;
	if (cpu_data(cpu)->current == runqueues[cpu].idle)
		lapic_send_ipi(cpu_data(cpu)->apic_id, (uint8_t)resched_vector);
}

static void resched_ipi(struct regs *r)
{
	(void)r;
	this_cpu()->need_resched = 1;
}

/* --- switching ------------------------------------------------------------- */

static void task_free(struct task *t)
{
	t->state = TASK_FREE;
}

/*
 * After a switch, on the new task's stack: release the run-queue lock the
 * old task took, and if the old task has exited, its stack is now out of
 * use: let task_wait() have it, or free it if nobody will wait.
 */
static void finish_switch(struct task *prev)
{
	bool dead = prev->state == TASK_DEAD;

	spin_unlock(&this_rq()->lock);
	if (!dead)
		return;

	uint64_t flags = spin_lock_irqsave(&task_lock);
	struct task *waiter = prev->waiter;
	prev->off_cpu = true;
	if (prev->detached)
		task_free(prev);
	spin_unlock_irqrestore(&task_lock, flags);
	if (waiter)
		task_wake(waiter);
}

/*
 * The scheduler proper.  `preempt`: the task did not ask to stop running
 * (the tick took the CPU away), so it stays queued whatever state it was
 * about to enter; it will call schedule() itself again once it runs.
 */
static void schedule_core(bool preempt)
{
	uint64_t flags = irq_save();
	struct percpu *pc = this_cpu();
	struct runqueue *rq = &runqueues[pc->cpu];
	struct task *prev = pc->current;

	rcu_note_context_switch();	/* preemption is on here: a quiescent state */
	spin_lock(&rq->lock);
	pc->need_resched = 0;
	if (!prev->is_idle && !prev->on_rq &&
	    (prev->state == TASK_RUNNABLE || (preempt && prev->state == TASK_SLEEPING)))
		rq_enqueue(rq, prev);

	struct task *next = rq_dequeue(rq);
	if (!next)
		next = rq->idle;
	if (next == prev) {
		prev->slice_left = sched_slice;
		spin_unlock(&rq->lock);
		irq_restore(flags);
		return;
	}

	if (preempt)
		prev->stats.preemptions++;
	next->stats.switches_in++;
	next->slice_left = sched_slice;
	pc->current = next;
	prev = switch_to(prev, next);
	finish_switch(prev);
	irq_restore(flags);
}

void schedule(void)
{
	if (preempt_count() != 0)
		panic("schedule() with preemption disabled (count %lu) in task '%s'",
		      (unsigned long)preempt_count(), task_current()->name);
	schedule_core(false);
}

void yield(void)
{
	schedule();
}

void preempt_check_resched(void)
{
	struct percpu *pc = this_cpu();

	if (pc->need_resched && pc->preempt_count == 0 && irqs_enabled() &&
	    sched_ready && runqueues[pc->cpu].up)
		schedule_core(true);
}

/*
 * The interrupt-exit hook (irq.c decides that the interrupted context may
 * be preempted).  Also refuse when not on the task's own kernel stack: a
 * task switched away from an IST stack would leave its frame there for the
 * next exception on that stack to overwrite.
 */
static void sched_irq_exit(struct regs *r)
{
	struct percpu *pc = this_cpu();

	(void)r;
	if (!pc->need_resched || pc->preempt_count != 0 || !runqueues[pc->cpu].up)
		return;
	if (!on_task_stack(pc->current, read_rsp()))
		return;
	schedule_core(true);
}

/* First code of every new task, called from task_first_entry (switch.S). */
void sched_task_first_run(struct task *prev);
void sched_task_first_run(struct task *prev)
{
	struct task *me = task_current();

	finish_switch(prev);
	if (me->user)
		return;		/* to user_return_iret, interrupts still off */
	irq_enable();
	me->fn(me->arg);
	task_exit(0);
}

/* --- sleeping and waking ------------------------------------------------- */

void task_wake(struct task *t)
{
	uint64_t flags = irq_save();
	struct runqueue *rq = lock_task_rq(t);
	bool kick = false;

	if (t->state == TASK_SLEEPING) {
		t->state = TASK_RUNNABLE;
		if (t->on_sleep_list)
			sleep_list_remove(rq, t);
		if (!t->on_rq && cpu_data(t->cpu)->current != t) {
			rq_enqueue(rq, t);
			kick = true;
		}
	}
	unsigned int cpu = t->cpu;
	spin_unlock(&rq->lock);
	if (kick)
		kick_cpu(cpu);
	irq_restore(flags);
}

void sleep_ms(uint64_t ms)
{
	struct task *me = task_current();

	if (me->is_idle)
		panic("sleep_ms() in the idle task of CPU %u", this_cpu_id());
	if (ms == 0) {
		yield();
		return;
	}
	uint64_t deadline = os_timestamp_ns() + ms * 1000000ull;
	while (os_timestamp_ns() < deadline) {
		uint64_t flags = irq_save();
		struct runqueue *rq = this_rq();
		spin_lock(&rq->lock);
		me->wake_ns = deadline;
		me->state = TASK_SLEEPING;
		sleep_list_add(rq, me);
		spin_unlock(&rq->lock);
		schedule();
		irq_restore(flags);
	}
}

/* --- the tick ------------------------------------------------------------ */

void sched_tick(struct regs *r)
{
	struct percpu *pc = this_cpu();
	struct runqueue *rq = &runqueues[pc->cpu];

	if (!rq->up)
		return;
	uint64_t now = os_timestamp_ns();
	struct task *cur = pc->current;

	spin_lock(&rq->lock);
	rq->ticks++;
	cur->stats.ticks++;
	if (r && regs_from_user(r)) {
		cur->stats.user_ticks++;
		cur->seen_in_user = true;
	}

	for (struct task **pp = &rq->sleepers; *pp;) {
		struct task *t = *pp;
		if (t->wake_ns > now) {
			pp = &t->sleep_next;
			continue;
		}
		*pp = t->sleep_next;
		t->sleep_next = NULL;
		t->on_sleep_list = false;
		if (t->state == TASK_SLEEPING) {
			t->state = TASK_RUNNABLE;
			if (!t->on_rq && t != cur)
				rq_enqueue(rq, t);
		}
	}

	if (cur->is_idle) {
		if (rq->head)
			pc->need_resched = 1;
	} else if (cur->slice_left > 1) {
		cur->slice_left--;
	} else if (rq->head) {
		cur->slice_left = 0;
		pc->need_resched = 1;
	} else {
		cur->slice_left = sched_slice;	/* alone: another slice */
	}
	spin_unlock(&rq->lock);
}

uint64_t sched_ticks(unsigned int cpu)
{
	return cpu < MAX_CPUS ? __atomic_load_n(&runqueues[cpu].ticks, __ATOMIC_RELAXED) : 0;
}

/* --- idle and task stealing ---------------------------------------------- */

/*
 * Take one TASK_CPU_ANY task waiting in another CPU's queue.  Interrupts
 * are off; only one queue lock is held at a time, and a busy queue is
 * passed over (trylock) rather than waited for.
 */
static bool steal_task(unsigned int me)
{
	if (__atomic_load_n(&nr_movable_all, __ATOMIC_RELAXED) == 0)
		return false;	/* nothing movable queued anywhere */
	for (unsigned int i = 1; i < cpus_possible; i++) {
		unsigned int c = (me + i) % cpus_possible;
		struct runqueue *rq = &runqueues[c];
		if (!rq->up || __atomic_load_n(&rq->nr_movable, __ATOMIC_RELAXED) == 0)
			continue;
		if (!spin_trylock(&rq->lock))
			continue;
		struct task *prev = NULL, *t = rq->head;
		while (t && (t->pinned || t->state != TASK_RUNNABLE || t->on_sleep_list)) {
			prev = t;
			t = t->rq_next;
		}
		if (t) {
			rq_unlink(rq, prev, t);
			t->cpu = me;
		}
		spin_unlock(&rq->lock);
		if (t) {
			struct runqueue *mine = &runqueues[me];
			spin_lock(&mine->lock);
			rq_enqueue(mine, t);
			spin_unlock(&mine->lock);
			return true;
		}
	}
	return false;
}

/*
 * Is there anything for the idle loop to do?  A task in this CPU's queue,
 * or (a hint, which steal_task() confirms under the lock) a movable task
 * queued on some CPU that is up.  Called with interrupts off while RCU is
 * NOT watching this CPU: it only loads plain counters and pointers, never
 * dereferences a task, takes no lock, and is no RCU reader.
 *
 * The movable hint is nr_movable_all first: 0 means no movable task was
 * queued anywhere when it was read (it never falls below the sum of the
 * queues' counts, see its comment), so there is nothing to steal, and the
 * common case costs one load whatever the number of CPUs.  Only when it is
 * not 0 are the queues scanned, to ignore the count of a CPU that is not
 * up, as steal_task() ignores it.  This CPU's own counts are 0 whenever
 * its queue is empty, so the scan need not skip it.  A movable task queued
 * just after the load is on the queue of a CPU that is up (pick_cpu(), or
 * the CPU it was woken on, which task_wake() kicks if idle), which runs it;
 * this CPU sees it at its next wake-up (at the latest its tick) and may
 * steal it then: the hint can delay a steal, never strand a task.
 *
 * What wakes an idle CPU and whether this sees it: a task woken or queued
 * for this CPU (task_wake, the tick waking a sleeper, a new task, the RCU
 * callback thread, the soft-lockup thread) is in rq->head before the
 * reschedule IPI or the tick returns; irq_work runs inside its own IPI's
 * handler and leaves nothing for the idle loop; an NMI handler takes no
 * run-queue lock, so it cannot queue a task (it can only raise irq_work,
 * which is an IPI).  Nothing else makes work for this loop.
 */
static inline bool idle_has_work(const struct runqueue *rq, const struct runqueue *end)
{
	if (__atomic_load_n(&rq->head, __ATOMIC_RELAXED))
		return true;
	if (NK_LIKELY(__atomic_load_n(&nr_movable_all, __ATOMIC_RELAXED) == 0))
		return false;
	const struct runqueue *q = runqueues;	/* end > runqueues: CPU 0 exists */
	do {
		if (__atomic_load_n(&q->nr_movable, __ATOMIC_RELAXED) && q->up)
			return true;
	} while (++q < end);
	return false;
}

/*
 * The idle loop.  Interrupts off while it decides; then, with preemption
 * off (an interrupt that asks for a switch must not switch away from a
 * CPU that RCU is ignoring), it enters RCU's extended quiescent state and
 * halts with `sti; hlt`: the STI shadow holds any interrupt that arrives
 * after the check until HLT has begun, so a wake-up IPI cannot slip in
 * between and be slept through.
 *
 * After a wake-up it looks for work again with interrupts off and while
 * STILL quiescent, and halts again at once when there is none: a wake-up
 * by an NMI (which makes RCU watch only for its handler, rcu_nmi_enter/
 * exit) or by a tick with nothing to run leaves the quiescent state
 * untouched.  Only when there is work does it leave the quiescent state,
 * and before anything that could read under RCU runs here: the
 * rcu_idle_exit() comes before schedule() and before steal_task().
 * Interrupt handlers that wake the CPU (tick, IPIs, irq_work) run while
 * it is quiescent, unwatched: none of nmikit's is an RCU reader, and
 * rcu_read_lock() warns if one becomes one (docs/rcu-nmi.md).  The HLT
 * stays in this function (tests recognise an idle CPU by it).
 */
_Noreturn void sched_idle(void)
{
	unsigned int me = this_cpu_id();
	struct runqueue *rq = &runqueues[me];
	/* cpus_possible is final before any CPU reaches its idle loop (smp.c). */
	const struct runqueue *end = &runqueues[cpus_possible];

	for (;;) {
		irq_disable();
		if (__atomic_load_n(&rq->head, __ATOMIC_RELAXED) || steal_task(me)) {
			irq_enable();
			schedule();
			continue;
		}
		preempt_disable();
		rcu_idle_enter();
		do {
			irq_enable_and_halt();	/* sti; hlt */
			irq_disable();
		} while (!idle_has_work(rq, end));
		rcu_idle_exit();
		preempt_enable_no_resched();
	}
}

/* --- creation, exit, reaping -------------------------------------------- */

/* TASK_CPU_ANY: the CPU with the shortest queue, preferring the caller's. */
static int pick_cpu(int cpu)
{
	if (cpu != TASK_CPU_ANY)
		return (cpu >= 0 && (unsigned int)cpu < cpus_possible && runqueues[cpu].up) ? cpu : -1;
	unsigned int best = this_cpu_id();
	for (unsigned int c = 0; c < cpus_possible; c++)
		if (runqueues[c].up && (!runqueues[best].up ||
					runqueues[c].nr_queued < runqueues[best].nr_queued))
			best = c;
	return (int)best;
}

struct task *task_alloc(const char *name, int cpu, bool user)
{
	int c = pick_cpu(cpu);
	if (!sched_ready || c < 0)
		return NULL;

	uint64_t flags = spin_lock_irqsave(&task_lock);
	struct task *t = NULL;
	for (unsigned int i = 0; i < TASK_MAX; i++) {
		if (tasks[i].state == TASK_FREE) {
			t = &tasks[i];
			break;
		}
	}
	if (t) {
		unsigned int slot = (unsigned int)(t - tasks);
		*t = (struct task){
			.slot = slot,
			.kstack_base = kstacks[slot].stack,
			.kstack_top = (uint64_t)(kstacks[slot].stack + TASK_KSTACK_SIZE),
			.id = next_task_id++,
			/* Claimed, but on no queue until task_start(). */
			.state = TASK_SLEEPING,
		};
	}
	spin_unlock_irqrestore(&task_lock, flags);
	if (!t)
		return NULL;

	nk_strlcpy(t->name, name ? name : "?", sizeof(t->name));
	t->user = user;
	t->cpu = (unsigned int)c;
	t->pinned = cpu != TASK_CPU_ANY;
	return t;
}

/*
 * Make `t`'s first switch_to() return into task_first_entry with %rsp =
 * `rsp` (16-byte aligned): the return address and six zeroed callee-saved
 * registers below it, as switch_to pops them.
 */
void task_prepare_first_switch(struct task *t, uint64_t rsp)
{
	uint64_t *sp = (uint64_t *)rsp;
	*--sp = (uint64_t)task_first_entry;
	for (int i = 0; i < 6; i++)
		*--sp = 0;
	t->saved_rsp = (uint64_t)sp;
}

void task_start(struct task *t)
{
	uint64_t flags = irq_save();
	struct runqueue *rq = lock_task_rq(t);
	t->state = TASK_RUNNABLE;
	rq_enqueue(rq, t);
	unsigned int cpu = t->cpu;
	spin_unlock(&rq->lock);
	kick_cpu(cpu);
	irq_restore(flags);
}

struct task *task_create_kernel(const char *name, task_fn *fn, void *arg, int cpu)
{
	if (!fn)
		return NULL;
	struct task *t = task_alloc(name, cpu, false);
	if (!t)
		return NULL;
	t->fn = fn;
	t->arg = arg;
	/* Two zero words at the top end backtraces and keep %rsp aligned. */
	uint64_t *top = (uint64_t *)t->kstack_top;
	top[-1] = 0;
	top[-2] = 0;
	task_prepare_first_switch(t, t->kstack_top - 16);
	task_start(t);
	return t;
}

_Noreturn void task_exit(int code)
{
	struct task *me = task_current();

	if (me->is_idle)
		panic("task_exit() in the idle task of CPU %u", this_cpu_id());
	if (preempt_count() != 0)
		panic("task '%s' exits with preemption disabled (count %lu)",
		      me->name, (unsigned long)preempt_count());
	irq_disable();
	me->exit_code = code;
	me->state = TASK_DEAD;
	schedule_core(false);
	panic("task '%s' (pid %u) ran again after exiting", me->name, me->id);
}

int task_wait(struct task *t, struct task_stats *stats)
{
	struct task *me = task_current();

	if (me->is_idle || t == me)
		panic("task_wait() on '%s' from '%s': would never return", t->name, me->name);
	for (;;) {
		uint64_t flags = spin_lock_irqsave(&task_lock);
		if (t->off_cpu) {
			int code = t->exit_code;
			if (stats)
				*stats = t->stats;
			task_free(t);
			spin_unlock_irqrestore(&task_lock, flags);
			return code;
		}
		t->waiter = me;
		me->state = TASK_SLEEPING;
		spin_unlock_irqrestore(&task_lock, flags);
		schedule();
	}
}

void task_detach(struct task *t)
{
	uint64_t flags = spin_lock_irqsave(&task_lock);
	if (t->off_cpu)
		task_free(t);
	else
		t->detached = true;
	spin_unlock_irqrestore(&task_lock, flags);
}

/* --- listing ------------------------------------------------------------- */

const char *task_state_name(const struct task *t)
{
	switch (t->state) {
	case TASK_FREE:
		return "free";
	case TASK_RUNNABLE:
		return cpu_data(t->cpu)->current == t ? "running" : "runnable";
	case TASK_SLEEPING:
		return "sleeping";
	case TASK_DEAD:
		return "dead";
	}
	return "?";
}

/* A snapshot without locks: fields may be mid-update; good enough to look at. */
void sched_for_each_task(sched_list_fn *fn, void *arg)
{
	for (unsigned int c = 0; c < cpus_possible; c++)
		if (runqueues[c].up)
			fn(&idle_tasks[c], cpu_data(c)->current == &idle_tasks[c], arg);
	for (unsigned int i = 0; i < TASK_MAX; i++) {
		struct task *t = &tasks[i];
		if (t->state != TASK_FREE)
			fn(t, cpu_data(t->cpu)->current == t, arg);
	}
}

static void ps_line(const struct task *t, bool running, void *arg)
{
	(void)arg;
	shell_printf("%5u %3u %-8s %c%c %9lu %9lu %9lu %9lu %9lu  %s\n",
		     t->id, t->cpu, running ? "running" : task_state_name(t),
		     t->user ? 'U' : 'K', t->pinned ? ' ' : '*',
		     (unsigned long)t->stats.switches_in, (unsigned long)t->stats.preemptions,
		     (unsigned long)t->stats.ticks, (unsigned long)t->stats.user_ticks,
		     (unsigned long)t->stats.syscalls, t->name);
}

static int cmd_ps(int argc, char **argv)
{
	(void)argv;
	if (argc > 1)
		return SHELL_USAGE;
	shell_printf("  PID CPU STATE    T   SWITCHES  PREEMPTS     TICKS  IN RING3  SYSCALLS  NAME\n");
	sched_for_each_task(ps_line, NULL);
	shell_printf("(T: K kernel thread, U ring-3 task, * may move between CPUs)\n");
	return 0;
}
SHELL_CMD(ps, "", "list tasks: CPU, state, switches, preemptions, ticks, system calls", cmd_ps);

/* --- set-up ---------------------------------------------------------------- */

/*
 * This CPU's idle task is the context already running here: kmain on CPU 0,
 * the AP start-up path on the others, both on the CPU's guarded boot stack.
 */
static void sched_init_cpu(unsigned int cpu)
{
	struct task *idle = &idle_tasks[cpu];
	struct runqueue *rq = &runqueues[cpu];
	uint8_t *stack = cpu_stacks[cpu].boot;

	idle->is_idle = true;
	idle->pinned = true;
	idle->state = TASK_RUNNABLE;
	idle->cpu = cpu;
	idle->kstack_base = stack;
	idle->kstack_top = (uint64_t)(stack + BOOT_STACK_SIZE);
	if (!on_task_stack(idle, read_rsp()))
		idle->kstack_base = NULL;	/* unknown stack: never preempt it */
	nk_snprintf(idle->name, sizeof(idle->name), "idle/%u", cpu);

	struct percpu *pc = cpu_data(cpu);
	pc->current = idle;
	pc->kernel_rsp = idle->kstack_top;
	rq->idle = idle;
	syscall_init_cpu();
	__atomic_store_n(&rq->up, true, __ATOMIC_RELEASE);
}

/* smp.c calls these on each AP: set-up before it goes online, then idle. */
static void sched_ap_init(unsigned int cpu)
{
	sched_init_cpu(cpu);
}

static void sched_ap_idle(void)
{
	sched_idle();
}

void sched_init(void)
{
	/* Guard pages: page tables change only before the other CPUs start. */
	for (unsigned int i = 0; i < TASK_MAX; i++)
		paging_set_page((uint64_t)kstacks[i].guard, 0);
	user_init();
	for (unsigned int c = 0; c < MAX_CPUS; c++)
		spin_init(&runqueues[c].lock, "runqueue");

	int v = irq_alloc_vector();
	if (v >= 0 && irq_register((unsigned int)v, resched_ipi, "resched") == 0)
		resched_vector = v;

	sched_init_cpu(0);
	irq_set_exit_hook(sched_irq_exit);
	if (!smp_add_ap_init(sched_ap_init))
		panic("sched: no room for the scheduler's AP init hook");
	smp_set_ap_idle(sched_ap_idle);
	sched_ready = true;
	pr_info("sched: %u task slots, %u KiB kernel and %u KiB user stacks with guard pages, slice %u ticks at %u Hz",
		TASK_MAX, TASK_KSTACK_SIZE / 1024, TASK_USTACK_SIZE / 1024, sched_slice, timer_hz());
}
