/*
 * crash_tests.c: deliberate faults, chosen with the boot parameter
 * crash=NAME (registered below with the other parameters), that prove the exception reports work: each must end in a
 * report naming the function below and a panic (QEMU status 5), never in a
 * triple-fault reset.  Every fault sits in its own non-inlined function with
 * a name the boot.fault.* scenarios look for.  At the end, in-kernel tests
 * (test=traps.*) of the faults the kernel recovers from.
 */
#include <kernel/backtrace.h>
#include <kernel/irq.h>
#include <kernel/ktest.h>
#include <kernel/panic.h>
#include <kernel/sched.h>
#include <kernel/shell.h>
#include <kernel/user_programs.h>
#include <arch/cpu.h>
#include <arch/idt.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <arch/traps.h>
#include <nmikit/log.h>
#include <nmikit/param.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRASH_FN	__attribute__((noinline, noclone))

/*
 * Read through a volatile so the compiler cannot see (and fold, or replace
 * with a trap of its own) the bad addresses and values below.
 */
static volatile uint64_t crash_null_struct;		/* a NULL struct pointer */
static volatile uint64_t crash_noncanonical = 0x8000000000000000ull;
static volatile uint64_t crash_recursion_limit = 1ull << 40;
static volatile uint64_t crash_sink;

struct crash_thing {
	uint64_t a, b, c;
};

static CRASH_FN void crash_invalid_opcode(void)
{
	__asm__ volatile("ud2");
}

/* A write through a NULL struct pointer: #PF, not-present page, CR2 = 0x10. */
static CRASH_FN void crash_page_fault_write(void)
{
	struct crash_thing *t = (struct crash_thing *)crash_null_struct;

	*(volatile uint64_t *)&t->c = 0xbad;
}

/* A load from a non-canonical address: #GP with error code 0. */
static CRASH_FN void crash_general_protection(void)
{
	crash_sink = *(volatile uint64_t *)crash_noncanonical;
}

/* 1 / 0, in assembly so that the compiler cannot decide what it means. */
#define DIVIDE_BY_ZERO()					\
	__asm__ volatile("xorl %%ecx, %%ecx\n\t"		\
			 "movl $1, %%eax\n\t"			\
			 "xorl %%edx, %%edx\n\t"			\
			 "divl %%ecx"				\
			 ::: "rax", "rcx", "rdx")

static CRASH_FN void crash_divide_error(void)
{
	DIVIDE_BY_ZERO();
}

/*
 * Unbounded recursion with a 1 KiB frame: runs off the bottom of the boot
 * stack into its guard page.  The #PF cannot be pushed on that stack, so it
 * becomes a #DF on IST_DF, whose handler reports the overflow.
 */
static CRASH_FN uint64_t crash_recurse_stack_overflow(uint64_t depth)
{
	volatile uint8_t frame[1024];

	frame[0] = (uint8_t)depth;
	frame[sizeof(frame) - 1] = (uint8_t)depth;
	if (depth >= crash_recursion_limit)
		return frame[0];
	return crash_recurse_stack_overflow(depth + 1) + frame[depth % sizeof(frame)];
}

/*
 * A true double fault: with the #DE gate marked not present, delivering a
 * #DE raises #NP, and a contributory exception while delivering another one
 * is a #DF.
 */
static CRASH_FN void crash_double_fault(void)
{
	idt_set_present(X86_TRAP_DE, false);
	DIVIDE_BY_ZERO();
}

/* int3 with no hook installed: the #BP is unexpected. */
static CRASH_FN void crash_breakpoint_unhandled(void)
{
	__asm__ volatile("int3");
}

static CRASH_FN void crash_explicit_panic(void)
{
	panic("deliberate panic (crash=panic)");
}

static CRASH_FN void crash_bug_on(void)
{
	BUG_ON(crash_null_struct == 0);
}

/* Warns once, then boot continues: the second WARN_ON_ONCE must stay quiet. */
static CRASH_FN void crash_warn_once(void)
{
	for (int i = 0; i < 2; i++)
		WARN_ON_ONCE(crash_null_struct == 0);
}

static void crash_stack_overflow(void)
{
	crash_sink = crash_recurse_stack_overflow(0);
}

/* crash=NAME: the index of NAME in crash_names (0, "none": no crash). */
static const char *const crash_names[] = {
	"none", "ud", "pf", "gp", "de", "stack", "df", "bp_unhandled", "panic", "bug", "warn", NULL,
};
static int crash_choice;
NK_PARAM_ENUM("crash", crash_choice, crash_names,
	      "trigger a deliberate fault once the IDT is loaded (docs/exceptions.md)");

/* Indexed like crash_names. */
static const struct {
	void (*fn)(void);
	const char *what;
} crash_cases[] = {
	{ NULL, NULL },
	{ crash_invalid_opcode, "ud2 (#UD)" },
	{ crash_page_fault_write, "write through a NULL pointer (#PF)" },
	{ crash_general_protection, "load from a non-canonical address (#GP)" },
	{ crash_divide_error, "divide by zero (#DE)" },
	{ crash_stack_overflow, "recursion into the stack's guard page (#PF -> #DF)" },
	{ crash_double_fault, "#DE through a not-present gate (#NP -> #DF)" },
	{ crash_breakpoint_unhandled, "int3 with no handler (#BP)" },
	{ crash_explicit_panic, "panic()" },
	{ crash_bug_on, "BUG_ON()" },
	{ crash_warn_once, "WARN_ON_ONCE() twice; boot continues" },
};

_Static_assert(sizeof(crash_cases) / sizeof(crash_cases[0]) ==
	       sizeof(crash_names) / sizeof(crash_names[0]) - 1,
	       "crash_cases and crash_names must list the same faults");

static void crash_run(unsigned int c)
{
	pr_emerg("crash: %s: %s", crash_names[c], crash_cases[c].what);
	crash_cases[c].fn();
	pr_warn("crash: %s returned; the kernel carries on", crash_names[c]);
}

void crash_tests_run(void)
{
	unsigned int c = (unsigned int)crash_choice;

	if (c != 0 && c < sizeof(crash_cases) / sizeof(crash_cases[0]))
		crash_run(c);
}

/* The same faults on demand, once every CPU runs (panic must stop them all). */
static int cmd_crash(int argc, char **argv)
{
	if (argc != 2)
		return SHELL_USAGE;
	for (unsigned int c = 1; crash_names[c]; c++) {
		if (__builtin_strcmp(argv[1], crash_names[c]) == 0) {
			crash_run(c);
			return 0;
		}
	}
	shell_printf("crash: unknown fault '%s'; one of:", argv[1]);
	for (unsigned int c = 1; crash_names[c]; c++)
		shell_printf(" %s", crash_names[c]);
	shell_printf("\n");
	return 1;
}
SHELL_CMD(crash, "ud|pf|gp|de|stack|df|bp_unhandled|panic|bug|warn",
	  "trigger a deliberate fault on this CPU (the kernel panics)", cmd_crash);

/*
 * In-kernel tests (test=traps.*): the recoverable side of the same
 * machinery.  Each deliberately takes an exception and checks it was
 * claimed and resumed as documented.
 */

/* probe_read_u64: every kind of bad address comes back as -EFAULT. */
KTEST(traps, probe_read_faults_become_efault)
{
	unsigned cpu = this_cpu_id();
	uint64_t pf0 = irq_count(cpu, X86_TRAP_PF), gp0 = irq_count(cpu, X86_TRAP_GP);
	uint64_t v = 0x5a5a, good = 0x1122334455667788ull;

	KT_EXPECT_EQ(probe_read_u64((const void *)0x18, &v), -EFAULT);
	KT_EXPECT_EQ(v, 0x5a5a);	/* nothing stored on failure */
	KT_EXPECT_EQ(probe_read_u64(cpu_stacks[cpu].guard_db, &v), -EFAULT);
	KT_EXPECT_EQ(probe_read_u64((const void *)0x8000000000000000ull, &v), -EFAULT);
	KT_EXPECT_EQ(probe_read_u64(&good, &v), 0);
	KT_EXPECT_EQ(v, good);
	KT_EXPECT_EQ(irq_count(cpu, X86_TRAP_PF) - pf0, 2);
	KT_EXPECT_EQ(irq_count(cpu, X86_TRAP_GP) - gp0, 1);
}

static volatile uint64_t bp_expect_rip, bp_hits, bp_probe_result;

/* Claims only its own int3; probes a bad address from inside the handler. */
static bool bp_test_hook(struct regs *r)
{
	uint64_t v;

	if (r->rip != bp_expect_rip)
		return false;
	bp_hits++;
	bp_probe_result = (uint64_t)(int64_t)probe_read_u64((const void *)0x10, &v);
	return true;
}

/* int3 claimed by a hook resumes after it; a #PF nested in the hook is fixed up. */
KTEST(traps, int3_hook_resumes_and_nested_fixup_works)
{
	bp_hits = 0;
	KT_ASSERT_EQ(trap_set_handler(X86_TRAP_BP, bp_test_hook), 0);
	KT_EXPECT_EQ(trap_set_handler(X86_TRAP_BP, bp_test_hook), -EBUSY);
	__asm__ volatile("movq $1f, %0\n\tint3\n1:" : "=m"(bp_expect_rip) :: "memory");
	KT_EXPECT_EQ(trap_clear_handler(X86_TRAP_BP, bp_test_hook), 0);
	KT_EXPECT_EQ(trap_clear_handler(X86_TRAP_BP, bp_test_hook), -ENOENT);
	KT_EXPECT_EQ(bp_hits, 1);
	KT_EXPECT_EQ((int64_t)bp_probe_result, -EFAULT);
	KT_EXPECT_EQ(trap_set_handler(X86_TRAP_NMI, bp_test_hook), -EINVAL);
}

static volatile uint64_t db_expect_rip, db_hits, db_seen_percpu, db_seen_dr6;

static bool db_test_hook(struct regs *r)
{
	if (r->rip != db_expect_rip)
		return false;
	db_hits++;
	db_seen_percpu = (uint64_t)this_cpu();	/* reads %gs:0 */
	db_seen_dr6 = trap_debug_status();
	r->rflags |= RFLAGS_RF;			/* for an instruction breakpoint */
	return true;
}

/*
 * The paranoid #DB entry must not trust GS: interrupted with a user GS
 * base loaded (as just after SYSCALL, before SWAPGS), the hook still sees
 * this CPU's percpu, and on return both GS MSRs are exactly as they were.
 */
KTEST(traps, paranoid_entry_fixes_and_restores_gs)
{
	const uint64_t bogus = 0x00007fffdead0000ull;
	uint64_t flags, gs, kgs, gs_after, kgs_after;

	db_hits = 0;
	KT_ASSERT_EQ(trap_set_handler(X86_TRAP_DB, db_test_hook), 0);
	flags = irq_save();
	gs = rdmsr(MSR_GS_BASE);
	kgs = rdmsr(MSR_KERNEL_GS_BASE);
	wrmsr(MSR_KERNEL_GS_BASE, gs);
	wrmsr(MSR_GS_BASE, bogus);
	__asm__ volatile("movq $1f, %0\n\tint $1\n1:" : "=m"(db_expect_rip) :: "memory");
	gs_after = rdmsr(MSR_GS_BASE);
	kgs_after = rdmsr(MSR_KERNEL_GS_BASE);
	wrmsr(MSR_GS_BASE, gs);
	wrmsr(MSR_KERNEL_GS_BASE, kgs);
	irq_restore(flags);
	trap_clear_handler(X86_TRAP_DB, db_test_hook);

	KT_EXPECT_EQ(db_hits, 1);
	KT_EXPECT_EQ(db_seen_percpu, gs);
	KT_EXPECT_EQ(gs_after, bogus);
	KT_EXPECT_EQ(kgs_after, gs);
}

static CRASH_FN uint64_t db_target(uint64_t x)
{
	return x * 3 + 1;
}

#define DR7_L0		(1ull << 0)	/* DR0 enabled; R/W0 = LEN0 = 0: instruction fetch */

/* A DR0 instruction breakpoint: one #DB at the exact address, DR6.B0 set, RF resumes. */
KTEST(traps, hardware_breakpoint_reports_dr6)
{
	uint64_t dr7 = read_dr7();
	uint64_t r;

	db_hits = 0;
	db_seen_dr6 = 0;
	db_expect_rip = (uint64_t)db_target;
	KT_ASSERT_EQ(trap_set_handler(X86_TRAP_DB, db_test_hook), 0);
	write_dr(0, (uint64_t)db_target);
	write_dr7(DR7_L0);
	r = db_target(crash_sink + 4);
	write_dr7(dr7);
	write_dr(0, 0);
	trap_clear_handler(X86_TRAP_DB, db_test_hook);

	KT_EXPECT_EQ(r, (crash_sink + 4) * 3 + 1);
	KT_EXPECT_EQ(db_hits, 1);
	KT_EXPECT_EQ(db_seen_dr6 & 0xf, 1);	/* B0 only */
}

#define IRQ_TEST_VECTOR	0xef

static volatile uint64_t irq_test_hits, irq_test_vector_seen;

static void irq_test_handler(struct regs *r)
{
	irq_test_hits++;
	irq_test_vector_seen = r->vector;
}

/* A software interrupt on a registered vector reaches its handler and is counted. */
KTEST(traps, irq_vector_dispatch_and_count)
{
	unsigned cpu = this_cpu_id();
	int err = irq_register(IRQ_TEST_VECTOR, irq_test_handler, "ktest");

	if (err == -EBUSY)
		KT_SKIP("vector 0xef is in use");
	KT_ASSERT_EQ(err, 0);
	uint64_t before = irq_count(cpu, IRQ_TEST_VECTOR);
	irq_test_hits = 0;
	__asm__ volatile("int %0" :: "i"(IRQ_TEST_VECTOR) : "memory");
	KT_EXPECT_EQ(irq_test_hits, 1);
	KT_EXPECT_EQ(irq_test_vector_seen, IRQ_TEST_VECTOR);
	KT_EXPECT_EQ(irq_count(cpu, IRQ_TEST_VECTOR) - before, 1);
	KT_EXPECT_STREQ(irq_name(IRQ_TEST_VECTOR), "ktest");
	KT_EXPECT_EQ(irq_register(IRQ_TEST_VECTOR, irq_test_handler, "again"), -EBUSY);
	KT_EXPECT_EQ(irq_unregister(IRQ_TEST_VECTOR), 0);
	KT_EXPECT_EQ(irq_unregister(IRQ_TEST_VECTOR), -ENOENT);
	KT_EXPECT_NULL(irq_name(IRQ_TEST_VECTOR));
}

KTEST(traps, irq_api_rejects_misuse)
{
	int a, b;

	KT_EXPECT_EQ(irq_register(X86_TRAP_PF, irq_test_handler, "exception"), -EINVAL);
	KT_EXPECT_EQ(irq_register(IRQ_VECTORS, irq_test_handler, "too big"), -EINVAL);
	KT_EXPECT_EQ(irq_register(IRQ_TEST_VECTOR, NULL, "no fn"), -EINVAL);
	a = irq_alloc_vector();
	b = irq_alloc_vector();
	KT_ASSERT_GE(a, IRQ_DYN_FIRST);
	KT_ASSERT_GE(b, IRQ_DYN_FIRST);
	KT_EXPECT_NE(a, b);
	KT_EXPECT_LE(a, IRQ_DYN_LAST);
	KT_EXPECT_EQ(irq_register((unsigned)a, irq_test_handler, "allocated"), 0);
	KT_EXPECT_EQ(irq_unregister((unsigned)a), 0);
	KT_EXPECT_EQ(irq_unregister((unsigned)b), 0);
}

KTEST(traps, ksym_lookup_names_functions)
{
	uint64_t off = 99, size = 0;
	const char *name = ksym_lookup((uint64_t)crash_invalid_opcode + 1, &off, &size);
	char buf[96];

	KT_ASSERT_NOT_NULL(name);
	KT_EXPECT_STREQ(name, "crash_invalid_opcode");
	KT_EXPECT_EQ(off, 1);
	KT_EXPECT_GE(size, 2);
	KT_EXPECT_NULL(ksym_lookup(0x10, NULL, NULL));
	ksym_format(buf, sizeof(buf), (uint64_t)db_target, false);
	KT_EXPECT_STREQ(buf, "db_target+0x0/0x10");
}

KTEST(traps, stack_lookup_knows_stacks_and_guards)
{
	struct stack_info si;
	unsigned cpu = this_cpu_id();

	KT_EXPECT_TRUE(stack_lookup(read_rsp(), &si));
	KT_ASSERT_TRUE(stack_guard_lookup((uint64_t)cpu_stacks[cpu].guard_nmi + 8, &si));
	KT_EXPECT_STREQ(si.name, "NMI");
	KT_EXPECT_EQ(si.cpu, (int)cpu);
	KT_EXPECT_EQ(si.lo, (uint64_t)cpu_stacks[cpu].nmi);
	KT_EXPECT_FALSE(stack_lookup((uint64_t)cpu_stacks[cpu].guard_df, &si));
	KT_EXPECT_FALSE(stack_guard_lookup((uint64_t)cpu_stacks[cpu].df + 64, &si));
}

static volatile uint64_t user_db_hits, user_db_cs, user_db_percpu_ok;

/* Claims single-step #DBs from ring 3: clears TF so the task runs on normally. */
static bool user_db_hook(struct regs *r)
{
	if (!regs_from_user(r) || !(trap_debug_status() & DR6_BS))
		return false;
	user_db_hits++;
	user_db_cs = r->cs;
	user_db_percpu_ok = this_cpu() == cpu_data(this_cpu()->cpu);
	r->rflags &= ~RFLAGS_TF;
	return true;
}

/*
 * A #DB from ring 3 arrives on IST_DB but is handled on the task's kernel
 * stack (the entry moves it there): the hook runs with the kernel GS base,
 * and the IRETQ back to ring 3 restores the user's state, so the program
 * finishes its system calls and exits normally.  Without a hook the
 * scheduler's fault handling kills the task.
 */
KTEST(traps, ring3_debug_exception_moves_to_task_stack)
{
	struct regs init = {
		.rip = (uint64_t)user_prog_syscalls,
		.rdi = 5,
		.rflags = RFLAGS_TF,
	};
	struct task *t;
	int code;

	user_db_hits = 0;
	KT_ASSERT_EQ(trap_set_handler(X86_TRAP_DB, user_db_hook), 0);
	t = task_create_user_regs("u-step", &init, true, (int)this_cpu_id());
	if (!t) {
		trap_clear_handler(X86_TRAP_DB, user_db_hook);
		KT_FAIL("task_create_user_regs failed");
		return;
	}
	code = task_wait(t, NULL);
	trap_clear_handler(X86_TRAP_DB, user_db_hook);
	KT_EXPECT_EQ(code, 2 * 5 + 1);
	KT_EXPECT_EQ(user_db_hits, 1);
	KT_EXPECT_EQ(user_db_cs & 3, 3);
	KT_EXPECT_TRUE(user_db_percpu_ok);

	t = task_create_user_regs("u-step-kill", &init, true, (int)this_cpu_id());
	KT_ASSERT_NOT_NULL(t);
	KT_EXPECT_EQ(task_wait(t, NULL), TASK_EXIT_FAULT(X86_TRAP_DB));
}
