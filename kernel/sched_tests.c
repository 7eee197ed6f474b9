/*
 * sched_tests.c: in-kernel tests (KTAP suite "sched") of the scheduler,
 * ring-3 tasks, the system calls and the choice between SYSRET and IRETQ on
 * the way back to ring 3.  The tasks under test run on another CPU when
 * there is one, so that a scheduler that fails to preempt shows up as a
 * failed expectation rather than a runner that never wakes up.
 */
#include <kernel/ktest.h>
#include <kernel/sched.h>
#include <kernel/time.h>
#include <kernel/user_programs.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <arch/syscall.h>
#include <arch/traps.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/os.h>

/* An online CPU other than the caller's, or the caller's when it is alone. */
static unsigned int test_cpu(void)
{
	unsigned int me = this_cpu_id();
	for (unsigned int i = 1; i < cpus_possible; i++) {
		unsigned int c = (me + i) % cpus_possible;
		if (cpu_data(c)->online)
			return c;
	}
	return me;
}

/* Whether a log record written since `seq` contains `needle`. */
static bool logged_since(uint64_t seq, const char *needle)
{
	static struct nk_log_record rec;	/* only the test runner uses it */
	while (nk_log_read(&seq, &rec))
		if (strstr(rec.text, needle))
			return true;
	return false;
}

/* --- kernel threads ----------------------------------------------------- */

struct busy {
	volatile uint64_t count;
	volatile bool stop;
};

/*
 * Never yields, never sleeps: only preemption lets anything else run.  It
 * waits for `stop` from another CPU, so it executes PAUSE, but only every
 * 4096 rounds: under -icount each PAUSE ends the vCPU's turn, and a PAUSE
 * per round would make the test crawl.
 */
static void busy_thread(void *arg)
{
	struct busy *b = arg;
	while (!b->stop) {
		if ((++b->count & 4095) == 0)
			cpu_relax();
	}
}

/*
 * Poll (sleeping a tick at a time) until `cond` holds or `ms` milliseconds
 * have passed; true when it held.  Keeps the tests as short as the machine
 * allows: under -icount a busy CPU advances virtual time only by executing.
 */
#define WAIT_FOR(cond, ms) ({							\
		uint64_t wf_end_ = os_timestamp_ns() + (ms) * 1000000ull;	\
		bool wf_ok_;							\
		while (!(wf_ok_ = (cond)) && os_timestamp_ns() < wf_end_)	\
			sleep_ms(10);						\
		wf_ok_;								\
	})

KTEST(sched, kthreads_run_and_preempt)
{
	static struct busy a, b;
	unsigned int cpu = test_cpu();
	struct task_stats sa, sb;

	a = (struct busy){ 0 };
	b = (struct busy){ 0 };
	struct task *ta = task_create_kernel("busy-a", busy_thread, &a, (int)cpu);
	KT_ASSERT_NOT_NULL(ta);
	struct task *tb = task_create_kernel("busy-b", busy_thread, &b, (int)cpu);
	if (!tb) {
		a.stop = true;
		task_wait(ta, NULL);
		KT_ASSERT_NOT_NULL(tb);
	}

	/* Each has run and been preempted once ... */
	bool first = WAIT_FOR(ta->stats.preemptions >= 1 && tb->stats.preemptions >= 1, 2000);
	uint64_t a1 = a.count, b1 = b.count;
	/* ... and then again: neither one got the CPU for good. */
	bool again = WAIT_FOR(ta->stats.preemptions >= 3 && tb->stats.preemptions >= 3, 2000);
	uint64_t a2 = a.count, b2 = b.count;
	a.stop = true;
	b.stop = true;
	task_wait(ta, &sa);
	task_wait(tb, &sb);

	kt_diag("cpu %u: busy-a %lu iterations, %lu preemptions; busy-b %lu iterations, %lu preemptions",
		cpu, (unsigned long)a2, (unsigned long)sa.preemptions,
		(unsigned long)b2, (unsigned long)sb.preemptions);
	KT_EXPECT_TRUE(first);
	KT_EXPECT_TRUE(again);
	KT_EXPECT_GT(a1, 0);
	KT_EXPECT_GT(b1, 0);
	KT_EXPECT_GT(a2, a1);
	KT_EXPECT_GT(b2, b1);
}

/*
 * An idle CPU steals a TASK_CPU_ANY task queued behind a CPU that will not
 * give it up.  The runner creates the task (pick_cpu() queues it on the
 * runner's CPU: equal queues prefer the caller's) and then keeps its CPU
 * with preemption off, interrupts on.  The task can only run if the other,
 * idle CPU finds it: its idle loop looks after each wake-up (its tick) with
 * idle_has_work(), whose hint is the global count of queued movable tasks,
 * and then steal_task() takes it.  A hint that read "nothing" while the
 * task is queued fails this: the idle CPU halts on, and the task does not
 * run within the wait (checked by making idle_has_work() ignore the count).
 */
struct steal_probe {
	volatile bool ran;
	volatile unsigned int cpu;
};

static void steal_probe_thread(void *arg)
{
	struct steal_probe *p = arg;
	p->cpu = this_cpu_id();
	__atomic_store_n(&p->ran, true, __ATOMIC_RELEASE);
}

KTEST(sched, idle_cpu_steals_movable_task)
{
	static struct steal_probe p;
	unsigned int me = this_cpu_id();

	if (test_cpu() == me)
		KT_SKIP("needs a second online CPU");
	p = (struct steal_probe){ .cpu = me };
	preempt_disable();
	struct task *t = task_create_kernel("steal-probe", steal_probe_thread, &p, TASK_CPU_ANY);
	if (!t) {
		preempt_enable();
		KT_ASSERT_NOT_NULL(t);
	}
	unsigned int queued_on = t->cpu;
	uint64_t end = os_timestamp_ns() + 2000ull * 1000000ull;
	while (!__atomic_load_n(&p.ran, __ATOMIC_ACQUIRE) && os_timestamp_ns() < end)
		cpu_relax();
	bool ran = __atomic_load_n(&p.ran, __ATOMIC_ACQUIRE);
	preempt_enable();
	task_wait(t, NULL);

	kt_diag("runner on CPU %u, task queued on CPU %u, ran on CPU %u (%s within 2 s)",
		me, queued_on, p.cpu, ran ? "while the runner kept its CPU" : "NOT");
	KT_EXPECT_TRUE(ran);
	KT_EXPECT_NE(p.cpu, me);
}

static void sleeper_thread(void *arg)
{
	uint64_t *elapsed = arg;
	uint64_t t0 = os_timestamp_ns();
	sleep_ms(50);
	*elapsed = os_timestamp_ns() - t0;
}

KTEST(sched, sleep_and_wait)
{
	static uint64_t elapsed[3];
	struct task *t[3];
	unsigned int cpu = test_cpu();
	uint64_t ticks0 = sched_ticks(cpu);

	for (int i = 0; i < 3; i++) {
		elapsed[i] = 0;
		t[i] = task_create_kernel("sleeper", sleeper_thread, &elapsed[i],
					  i == 2 ? TASK_CPU_ANY : (int)cpu);
		KT_ASSERT_NOT_NULL(t[i]);
	}
	for (int i = 0; i < 3; i++)
		KT_EXPECT_EQ(task_wait(t[i], NULL), 0);
	uint64_t ticks = sched_ticks(cpu) - ticks0;
	for (int i = 0; i < 3; i++)
		KT_EXPECT_GE(elapsed[i], 50ull * 1000000);
	/*
	 * Woken by the tick: ticks went by on that CPU while they slept.  Not
	 * the full 50 ms worth: without icount a vCPU the host leaves off its
	 * core gets the periodic ticks it missed as one (seen at host load 5).
	 */
	KT_EXPECT_GE(ticks, 2ull);
	kt_diag("slept 50 ms: %lu, %lu, %lu us; %lu ticks on cpu %u",
		(unsigned long)elapsed[0] / 1000, (unsigned long)elapsed[1] / 1000,
		(unsigned long)elapsed[2] / 1000, (unsigned long)ticks, cpu);
}

/* --- ring 3 ------------------------------------------------------------- */

KTEST(sched, user_task_syscalls)
{
	unsigned int cpu = test_cpu();
	struct syscall_stats before, after;
	struct task_stats st;
	uint64_t word;

	user_syscall_out = (struct user_syscall_out){ 0 };
	syscall_get_stats(cpu, &before);
	uint64_t t0 = os_timestamp_ns();
	struct task *t = task_create_user("u-syscalls", user_prog_syscalls, 20, (int)cpu);
	KT_ASSERT_NOT_NULL(t);
	uint32_t pid = t->id;

	/* Its stacks, while it exists: user stack user-accessible, guards unmapped. */
	KT_EXPECT_TRUE(user_range_ok((uint64_t)t->ustack_base, TASK_USTACK_SIZE, true));
	KT_EXPECT_FALSE(user_range_ok((uint64_t)t->ustack_base - 1, 1, false));
	KT_EXPECT_FALSE(user_range_ok((uint64_t)t->kstack_base, 8, false));
	KT_EXPECT_EQ(probe_read_u64(t->ustack_base - PAGE_SIZE, &word), -EFAULT);
	KT_EXPECT_EQ(probe_read_u64(t->kstack_base - PAGE_SIZE, &word), -EFAULT);
	KT_EXPECT_EQ(probe_read_u64(t->kstack_base, &word), 0);

	int code = task_wait(t, &st);
	uint64_t elapsed = os_timestamp_ns() - t0;
	syscall_get_stats(cpu, &after);
	const struct user_syscall_out *o = &user_syscall_out;

	KT_EXPECT_EQ(code, 41);
	KT_EXPECT_EQ(o->write, (long)user_hello_len);
	KT_EXPECT_EQ(o->write_empty, 0);
	KT_EXPECT_EQ(o->yield, 0);
	KT_EXPECT_EQ(o->sleep, 0);
	KT_EXPECT_EQ(o->getcpu, (long)cpu);
	KT_EXPECT_EQ(o->getpid, (long)pid);
	KT_EXPECT_EQ(o->nosys, -SYSCALL_ENOSYS);
	KT_EXPECT_EQ(o->badnr, -SYSCALL_ENOSYS);
	KT_EXPECT_GE(elapsed, USER_SLEEP_MS * 1000000ull);
	KT_EXPECT_EQ(st.syscalls, 9);		/* eight calls and the exit */
	KT_EXPECT_EQ(st.bytes_written, user_hello_len);
	KT_EXPECT_GE(after.sysret - before.sysret, 8);
	kt_diag("ran %lu us on cpu %u, %lu syscalls, %lu SYSRET returns",
		(unsigned long)elapsed / 1000, cpu, (unsigned long)st.syscalls,
		(unsigned long)(after.sysret - before.sysret));
}

KTEST(sched, user_task_preempted)
{
	static struct busy k;
	unsigned int cpu = test_cpu();
	struct task_stats su, sk;

	user_spin.count = 0;
	user_spin.stop = 0;
	k = (struct busy){ 0 };
	struct task *u = task_create_user("u-spin", user_prog_spin, 0, (int)cpu);
	KT_ASSERT_NOT_NULL(u);
	struct task *kt = task_create_kernel("k-busy", busy_thread, &k, (int)cpu);
	if (!kt)
		user_spin.stop = 1;

	bool done = kt && WAIT_FOR(u->seen_in_user && u->stats.preemptions >= 2 &&
				   kt->stats.preemptions >= 2 && k.count > 0, 2000);
	uint64_t ucount = user_spin.count, kcount = k.count;
	bool seen_in_user = u->seen_in_user;
	user_spin.stop = 1;
	k.stop = true;
	int code = task_wait(u, &su);
	if (kt)
		task_wait(kt, &sk);
	KT_ASSERT_NOT_NULL(kt);

	kt_diag("cpu %u: ring-3 loop %lu iterations, %lu ticks in ring 3, %lu preemptions; kernel thread %lu iterations",
		cpu, (unsigned long)ucount, (unsigned long)su.user_ticks,
		(unsigned long)su.preemptions, (unsigned long)kcount);
	KT_EXPECT_TRUE(done);
	KT_EXPECT_EQ(code, USER_SPIN_EXIT);
	KT_EXPECT_GT(ucount, 0);
	KT_EXPECT_GT(kcount, 0);		/* the other thread ran meanwhile */
	KT_EXPECT_TRUE(seen_in_user);		/* a timer tick interrupted ring 3 */
	KT_EXPECT_GT(su.user_ticks, 0);
	KT_EXPECT_GT(su.preemptions, 0);
	KT_EXPECT_EQ(su.syscalls, 1);		/* only the exit: the loop made none */
	KT_EXPECT_GT(sk.preemptions, 0);
}

static uint64_t kernel_only_word;

static void expect_killed(const char *name, user_fn *fn, long arg, unsigned int vector)
{
	char needle[96];
	uint64_t seq = nk_log_next_seq();
	struct task *t = task_create_user(name, fn, arg, (int)test_cpu());
	KT_ASSERT_NOT_NULL(t);
	uint32_t pid = t->id;
	int code = task_wait(t, NULL);

	KT_EXPECT_EQ(code, TASK_EXIT_FAULT(vector));
	nk_snprintf(needle, sizeof(needle), "user task '%s' (pid %u) killed: %s at rip",
		    name, pid, trap_name(vector));
	if (!logged_since(seq, needle))
		KT_FAIL("no log line \"%s...\"", needle);
}

KTEST(sched, user_fault_killed)
{
	expect_killed("u-ud2", user_prog_ud2, 0, X86_TRAP_UD);
	expect_killed("u-hlt", user_prog_hlt, 0, X86_TRAP_GP);
	expect_killed("u-divide", user_prog_divide, 0, X86_TRAP_DE);
	expect_killed("u-poke", user_prog_poke, (long)&kernel_only_word, X86_TRAP_PF);
	KT_EXPECT_EQ(kernel_only_word, 0);

	/* Pointers the write call must refuse, without faulting. */
	struct user_bad_ptr *b = &user_bad_ptr;
	*b = (struct user_bad_ptr){
		.kernel_addr = (uint64_t)&kernel_only_word,
		.guard_addr = (uint64_t)task_current()->kstack_base - PAGE_SIZE,
	};
	struct task *t = task_create_user("u-badptr", user_prog_bad_pointers, (long)b,
					  (int)test_cpu());
	KT_ASSERT_NOT_NULL(t);
	KT_EXPECT_EQ(task_wait(t, NULL), USER_BAD_PTR_EXIT);
	KT_EXPECT_EQ(b->r_kernel, -SYSCALL_EFAULT);
	KT_EXPECT_EQ(b->r_null, -SYSCALL_EFAULT);
	KT_EXPECT_EQ(b->r_guard, -SYSCALL_EFAULT);
	KT_EXPECT_EQ(b->r_noncanonical, -SYSCALL_EFAULT);
	KT_EXPECT_EQ(b->r_wrap, -SYSCALL_EFAULT);
	KT_EXPECT_EQ(b->r_too_long, -SYSCALL_EINVAL);

	/* And the kernel carries on: a well-behaved task still works. */
	t = task_create_user("u-after", user_prog_syscalls, 3, (int)test_cpu());
	KT_ASSERT_NOT_NULL(t);
	KT_EXPECT_EQ(task_wait(t, NULL), 7);
}

/* --- the return to ring 3 ------------------------------------------------- */

enum {
	OP_NONCANONICAL = 1,	/* return RIP = RCX = first non-canonical address */
	OP_NONCANONICAL_HIGH,	/* ... = 0x8000000000000000 */
	OP_REDIRECT_SYSRET,	/* RIP = RCX = user_exit_with(77): SYSRET is fine */
	OP_REDIRECT_IRET,	/* RIP = user_exit_with(78), RCX left: needs IRETQ */
	OP_KERNEL_HALF,		/* RIP = RCX = a canonical kernel-half address */
	OP_SINGLE_STEP,		/* TF set in RFLAGS and R11 */
};

static struct regs hook_seen;

static long return_test_hook(struct regs *r)
{
	switch (r->rdi) {
	case OP_NONCANONICAL:
		r->rip = r->rcx = USER_ADDR_END;
		return 0;
	case OP_NONCANONICAL_HIGH:
		r->rip = r->rcx = 0x8000000000000000ull;
		return 0;
	case OP_REDIRECT_SYSRET:
		r->rip = r->rcx = (uint64_t)user_exit_with;
		r->rdi = 77;
		return 0;
	case OP_REDIRECT_IRET:
		r->rip = (uint64_t)user_exit_with;
		r->rdi = 78;
		return 0;
	case OP_KERNEL_HALF:
		r->rip = r->rcx = 0xffffffff80000000ull;
		return 0;
	case OP_SINGLE_STEP:
		r->rflags |= RFLAGS_TF;
		r->r11 = r->rflags;
		return 0;
	case USER_REGS_SEEN_OP:
		hook_seen = *r;
		return 0;
	}
	return -SYSCALL_EINVAL;
}

struct return_case {
	long op;
	int code;		/* expected exit code */
	int refused, sysret, iret;	/* expected counts on the way out of the test call */
};

KTEST(sched, sysret_noncanonical_safe)
{
	static const struct return_case cases[] = {
		{ OP_NONCANONICAL, TASK_EXIT_BAD_RETURN, 1, 0, 0 },
		{ OP_NONCANONICAL_HIGH, TASK_EXIT_BAD_RETURN, 1, 0, 0 },
		{ OP_REDIRECT_SYSRET, 77, 0, 1, 0 },
		{ OP_REDIRECT_IRET, 78, 0, 0, 1 },
		{ OP_KERNEL_HALF, TASK_EXIT_FAULT(X86_TRAP_PF), 0, 0, 1 },
		{ OP_SINGLE_STEP, TASK_EXIT_FAULT(X86_TRAP_DB), 0, 0, 1 },
	};
	unsigned int cpu = test_cpu();

	syscall_set_test_hook(return_test_hook);
	for (unsigned int i = 0; i < NK_ARRAY_SIZE(cases); i++) {
		const struct return_case *c = &cases[i];
		struct syscall_stats before, after;
		uint64_t seq = nk_log_next_seq();

		syscall_get_stats(cpu, &before);
		struct task *t = task_create_user("u-return", user_prog_test_call, c->op, (int)cpu);
		KT_ASSERT_NOT_NULL(t);
		int code = task_wait(t, NULL);
		syscall_get_stats(cpu, &after);

		kt_diag("op %ld: exit %d, refused %lu, sysret %lu, iret %lu", c->op, code,
			(unsigned long)(after.refused - before.refused),
			(unsigned long)(after.sysret - before.sysret),
			(unsigned long)(after.iret - before.iret));
		KT_EXPECT_EQ(code, c->code);
		KT_EXPECT_EQ(after.refused - before.refused, (uint64_t)c->refused);
		KT_EXPECT_EQ(after.sysret - before.sysret, (uint64_t)c->sysret);
		KT_EXPECT_EQ(after.iret - before.iret, (uint64_t)c->iret);
		if (c->refused && !logged_since(seq, "return to a non-canonical rip refused"))
			KT_FAIL("op %ld: no log line about the refused return", c->op);
	}
	syscall_set_test_hook(NULL);

	/*
	 * After those kills (one of them from a #DB, which arrives on an IST
	 * stack), the next ring-3 task on that CPU must still get the user's GS
	 * base (0): reading %gs:0 faults at address 0, not at the percpu area.
	 */
	uint64_t seq = nk_log_next_seq();
	struct task *t = task_create_user("u-gs", user_prog_read_gs, 0, (int)cpu);
	KT_ASSERT_NOT_NULL(t);
	KT_EXPECT_EQ(task_wait(t, NULL), TASK_EXIT_FAULT(X86_TRAP_PF));
	if (!logged_since(seq, "address 0, "))
		KT_FAIL("reading %%gs:0 in ring 3 did not fault at address 0");
}

KTEST(sched, user_initial_regs)
{
	unsigned int cpu = test_cpu();
	const uint64_t hostile_rsp[] = {
		0xdead000000000000ull,				/* non-canonical */
		(uint64_t)cpu_stacks[cpu].nmi + NMI_STACK_SIZE - 64,	/* the NMI stack */
		(uint64_t)&kernel_only_word + 3,		/* kernel, misaligned */
	};

	syscall_set_test_hook(return_test_hook);
	for (unsigned int i = 0; i < NK_ARRAY_SIZE(hostile_rsp); i++) {
		struct regs init = {
			.rax = 0x1111111111111111ull, .rbx = 0x2222222222222222ull,
			.rcx = 0x3333333333333333ull, .rdx = 0x4444444444444444ull,
			.rsi = 0x5555555555555555ull, .rdi = 0x6666666666666666ull,
			.rbp = 0x7777777777777777ull, .r8 = 0x8888888888888888ull,
			.r9 = 0x9999999999999999ull, .r10 = 0xaaaaaaaaaaaaaaaaull,
			.r11 = 0xbbbbbbbbbbbbbbbbull, .r12 = 0xccccccccccccccccull,
			.r13 = 0xddddddddddddddddull, .r14 = 0xeeeeeeeeeeeeeeeeull,
			.r15 = 0xf0f0f0f0f0f0f0f0ull,
			.rip = (uint64_t)user_record_regs,
			.rsp = hostile_rsp[i],
			/* DF and AC on, IOPL 3 and NT asked for: the latter two are dropped. */
			.rflags = RFLAGS_DF | RFLAGS_AC | (3ul << 12) | (1ul << 14),
		};
		const uint64_t want[URS_COUNT] = {
			init.rax, init.rbx, init.rcx, init.rdx, init.rsi, init.rdi, init.rbp,
			init.rsp, init.r8, init.r9, init.r10, init.r11, init.r12, init.r13,
			init.r14, init.r15,
		};

		for (int r = 0; r < URS_COUNT; r++)
			user_regs_seen[r] = 0;
		hook_seen = (struct regs){ 0 };
		struct task *t = task_create_user_regs("u-regs", &init, false, (int)cpu);
		KT_ASSERT_NOT_NULL(t);
		KT_EXPECT_EQ(task_wait(t, NULL), 0);
		for (int r = 0; r < URS_COUNT; r++)
			if (user_regs_seen[r] != want[r])
				KT_FAIL("rsp case %u: register %d is %#lx, want %#lx", i, r,
					(unsigned long)user_regs_seen[r], (unsigned long)want[r]);
		/* RFLAGS as ring 3 had them at its SYSCALL (R11), and its RSP. */
		KT_EXPECT_EQ(hook_seen.rsp, hostile_rsp[i]);
		KT_EXPECT_EQ(hook_seen.r11 & (RFLAGS_DF | RFLAGS_AC | RFLAGS_IF),
			     RFLAGS_DF | RFLAGS_AC | RFLAGS_IF);
		KT_EXPECT_EQ(hook_seen.r11 & ((3ul << 12) | (1ul << 14)), 0);
	}
	syscall_set_test_hook(NULL);

	/* A RIP that no return to ring 3 can load is refused at creation. */
	struct regs bad = { .rip = USER_ADDR_END, .rflags = RFLAGS_IF };
	KT_EXPECT_NULL(task_create_user_regs("u-badrip", &bad, true, (int)cpu));
}

static volatile unsigned int step_traps;
static volatile bool stepped_after_syscall;
static volatile bool other_fault;

/* Let single-step #DBs go (counting them), kill on anything else. */
static bool step_fault(struct task *t, struct regs *r, const char *what)
{
	(void)t;
	(void)what;
	if (r->vector != X86_TRAP_DB) {
		other_fault = true;
		return false;
	}
	step_traps++;
	/* The one-byte NOP after the SYSCALL ran in ring 3, then trapped. */
	if (r->rip == (uint64_t)user_step_after_syscall + 1)
		stepped_after_syscall = true;
	return true;
}

/*
 * Ring 3 single-steps across SYSCALL: the kernel entry runs with TF clear
 * (FMASK), the return goes through IRETQ (TF set), and the next #DB is taken
 * in ring 3 right after the SYSCALL; the task's fault handler lets it go on.
 */
KTEST(sched, user_single_step_through_syscall)
{
	unsigned int cpu = test_cpu();
	struct syscall_stats before, after;

	step_traps = 0;
	stepped_after_syscall = false;
	other_fault = false;
	syscall_get_stats(cpu, &before);
	struct user_task_spec spec = {
		.name = "u-step",
		.regs = { .rip = (uint64_t)user_prog_single_step, .rflags = RFLAGS_IF },
		.own_stack = true,
		.fault_fn = step_fault,
		.cpu = (int)cpu,
	};
	struct task *t = task_create_user_spec(&spec);
	KT_ASSERT_NOT_NULL(t);
	int code = task_wait(t, NULL);
	syscall_get_stats(cpu, &after);

	kt_diag("%u single-step traps, %lu IRETQ returns", step_traps,
		(unsigned long)(after.iret - before.iret));
	KT_EXPECT_EQ(code, 0);
	KT_EXPECT_FALSE(other_fault);
	KT_EXPECT_GE(step_traps, 4);
	KT_EXPECT_TRUE(stepped_after_syscall);
	KT_EXPECT_EQ(after.iret - before.iret, 1);	/* TF set: never SYSRET */
}
