/*
 * nmi_context_tests.c: NMIs against the contexts they can interrupt, and
 * NMI handlers that take exceptions (KTAP suites nmi_exc, nmi_ctx, nmi_mce).
 *
 * nmi_exc: an NMI handler takes a #BP, a #PF (through a hook, and through
 *   the exception table) or a #DB, and a second NMI is sent from inside that
 *   exception (or just before it).  The exception's IRET unblocks NMIs, so the
 *   second NMI nests in the first: the entry must turn it into a repeat.
 * nmi_ctx: where an NMI lands - ring 3, the first instruction of the SYSCALL
 *   entry (user RSP and GS base), an IRQ handler, a #PF hook, HLT in the idle
 *   loop, the #DB handler - each checked from inside the NMI (the interrupted
 *   RIP, RSP, CS) and by the interrupted code itself (every register kept,
 *   and it carries on).
 * nmi_mce: the same inside the #MC handler, with the machine check injected
 *   from outside (QMP `mce`); only meaningful in its scenario.
 */
#include <stdatomic.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/gdt.h>
#include <arch/nmi.h>
#include <arch/nmi_test.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <arch/syscall.h>
#include <arch/traps.h>
#include <kernel/backtrace.h>
#include <kernel/irq.h>
#include <kernel/ktest.h>
#include <kernel/sched.h>
#include <kernel/user_programs.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

/* arch/x86_64/nmi_ctx_helpers.S */
void nmi_ctx_int3(void);
extern char nmi_ctx_int3_site[];
uint64_t nmi_ctx_fault_read(const void *addr);
extern char nmi_ctx_fault_insn[], nmi_ctx_fault_resume[];
void nmi_ctx_db_target(void);
extern char nmi_ctx_syscall_tramp[], nmi_ctx_syscall_tramp_sent[], nmi_ctx_syscall_tramp_end[];
extern uint64_t nmi_ctx_tramp_icr, nmi_ctx_tramp_cmd;
long nmi_ctx_user_spin(long arg);
extern volatile uint64_t nmi_ctx_user_stop, nmi_ctx_user_rounds;
#define NMI_CTX_USER_OK		0x5a

extern char __utext_start[], __utext_end[], __text_start[], __text_end[];

#define DR7_RESET	0x400ull
#define DR6_B0		0x1ull
#define CR4_MCE		(1ull << 6)
#define PAGE0_ADDR(off)	((const void *)(uintptr_t)(off))	/* page 0 is never mapped */
#define FAULT_MARK	0x600dfa17ull

/* --- shared test machinery ------------------------------------------------ */

/* Test NMIs sent to each CPU and not yet claimed. */
static atomic_ulong ctx_pending[MAX_CPUS];
static atomic_ulong ctx_claimed[MAX_CPUS];
static atomic_ulong ctx_calls[MAX_CPUS];	/* handler calls that claimed */

/*
 * What the running case wants to know about each claimed NMI: it returns
 * true when the interrupted context is the expected one.  Called in NMI
 * context with the register block the entry built.
 */
typedef bool ctx_classify_fn(struct regs *r, struct nmi_frame *f);
static ctx_classify_fn *volatile ctx_classify;
static atomic_ulong ctx_matched[MAX_CPUS];
static atomic_ulong ctx_mismatched[MAX_CPUS];
static volatile uint64_t ctx_last_rip[MAX_CPUS], ctx_last_rsp[MAX_CPUS], ctx_last_cs[MAX_CPUS];
/* The first NMI that did not match, per CPU: where it landed (for the diagnostics). */
static volatile uint64_t ctx_miss_rip[MAX_CPUS], ctx_miss_cs[MAX_CPUS];

/* Called by the handler after the classification (nmi_exc takes its exception here). */
static void (*volatile ctx_after_claim)(unsigned long call);

/*
 * The tests' LOCAL handler.  NMI context: per-CPU atomics, the lock-free
 * ksym/stack lookups and the classification, nothing that waits.
 */
static int ctx_nmi_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	unsigned cpu = os_cpu_id();
	unsigned long n = atomic_exchange(&ctx_pending[cpu], 0);

	if (!n)
		return NMI_DONE;
	struct regs *r = f->regs;
	unsigned long call = atomic_fetch_add(&ctx_calls[cpu], 1);
	atomic_fetch_add(&ctx_claimed[cpu], n);
	ctx_last_rip[cpu] = r->rip;
	ctx_last_rsp[cpu] = r->rsp;
	ctx_last_cs[cpu] = r->cs;
	ctx_classify_fn *fn = ctx_classify;
	if (fn) {
		if (fn(r, f))
			atomic_fetch_add(&ctx_matched[cpu], 1);
		else if (atomic_fetch_add(&ctx_mismatched[cpu], 1) == 0) {
			ctx_miss_rip[cpu] = r->rip;
			ctx_miss_cs[cpu] = r->cs;
		}
	}
	void (*after)(unsigned long) = ctx_after_claim;
	if (after)
		after(call);
	return (int)n;
}

static void ctx_reset(void)
{
	for (unsigned c = 0; c < MAX_CPUS; c++) {
		atomic_store(&ctx_pending[c], 0);
		atomic_store(&ctx_claimed[c], 0);
		atomic_store(&ctx_calls[c], 0);
		atomic_store(&ctx_matched[c], 0);
		atomic_store(&ctx_mismatched[c], 0);
		ctx_last_rip[c] = ctx_last_rsp[c] = ctx_last_cs[c] = 0;
		ctx_miss_rip[c] = ctx_miss_cs[c] = 0;
	}
	ctx_classify = NULL;
	ctx_after_claim = NULL;
}

static bool ctx_begin(void)
{
	ctx_reset();
	return nmi_register(NMI_LOCAL, "nmi-ctx-test", ctx_nmi_handler, 0) == NMI_OK;
}

static void ctx_end(void)
{
	nmi_unregister(NMI_LOCAL, "nmi-ctx-test");
	ctx_classify = NULL;
	ctx_after_claim = NULL;
}

/* Wait, PAUSEing, at most `ms` milliseconds for `*v >= want`. */
static bool wait_count(atomic_ulong *v, unsigned long want, uint64_t ms)
{
	uint64_t end = os_timestamp_ns() + ms * 1000000ull;
	while (atomic_load(v) < want) {
		if (os_timestamp_ns() > end)
			return false;
		cpu_relax();
	}
	return true;
}

/* One counted test NMI to `cpu` (NMI-safe: an atomic and an ICR write). */
static void ctx_send(unsigned cpu)
{
	atomic_fetch_add(&ctx_pending[cpu], 1);
	if (cpu == this_cpu_id())
		lapic_send_nmi(this_cpu()->apic_id);
	else
		os_send_nmi(cpu);
}

/* An online CPU other than the caller's, or -1. */
static int other_cpu(void)
{
	unsigned me = this_cpu_id();
	for (unsigned i = 1; i < cpus_possible; i++) {
		unsigned c = (me + i) % cpus_possible;
		if (cpu_data(c)->online)
			return (int)c;
	}
	return -1;
}

/* --- a register context that an NMI interrupts (arch/nmi_test.h) ---------- */

static volatile uint64_t ctx_window_hits;	/* NMIs whose RIP was in the ctx window */

static void fill_ctx(struct nmi_test_ctx *c, unsigned seed)
{
	for (int i = 0; i < NTC_SLOTS; i++)
		c->in[i] = (0x0f0f0f0f0f0f0f0full * (uint64_t)(i + 1 + seed)) ^ 0xfedcba9876543210ull;
	c->in[NTC_RBX] = lapic_base + LAPIC_ICR_LOW;
	c->in[NTC_RDX] = ICR_ASSERT | ICR_DM_NMI;
	c->in[NTC_RFLAGS] = 0x8d7;	/* CF PF AF ZF SF OF, IF and DF clear */
	for (int i = 0; i < NTC_SLOTS; i++)
		c->out[i] = 0;
}

static int ctx_mismatches(const struct nmi_test_ctx *c)
{
	int bad = 0;
	for (int i = 0; i < NTC_SLOTS; i++) {
		if (i == NTC_RDI || c->in[i] == c->out[i])
			continue;
		kt_diag("register slot %d: before %#llx after %#llx", i,
			(unsigned long long)c->in[i], (unsigned long long)c->out[i]);
		bad++;
	}
	return bad;
}

static bool rip_in_ctx_window(uint64_t rip)
{
	return rip >= (uint64_t)nmi_test_ctx_window && rip <= (uint64_t)nmi_test_ctx_window_end;
}

/*
 * Run the register context with a counted self-NMI as its trigger: the NMI
 * arrives in the middle of it, whatever context the caller is in (a hook, an
 * IRQ handler).  Returns the number of registers that came back changed.
 * NMI-safe in the sense the hooks need: no lock, bounded.
 */
static int run_ctx_with_self_nmi(unsigned seed)
{
	struct nmi_test_ctx c;
	fill_ctx(&c, seed);
	lapic_write(LAPIC_ICR_HIGH, this_cpu()->apic_id << ICR_DEST_SHIFT);
	atomic_fetch_add(&ctx_pending[this_cpu_id()], 1);
	nmi_test_ctx_run(&c);
	return ctx_mismatches(&c);
}

static const char *stack_name(uint64_t rsp)
{
	struct stack_info si;
	return stack_lookup(rsp, &si) && si.name ? si.name : "unknown";
}

static bool stack_named(uint64_t rsp, const char *name)
{
	return strcmp(stack_name(rsp), name) == 0;
}

/* === nmi_exc: an NMI handler takes an exception, and a second NMI nests === */

enum exc_kind { EXC_NONE, EXC_BP, EXC_PF_HOOK, EXC_PF_EXTABLE, EXC_DB };
static volatile int exc_kind;
static atomic_ulong exc_fired;		/* nested NMIs sent from the exception path */
static volatile uint64_t exc_fault_value;

/* Count and send the nested NMI to this CPU.  NMI/exception context: atomics and the ICR. */
static void exc_send_nested(void)
{
	atomic_fetch_add(&exc_fired, 1);
	ctx_send(this_cpu_id());
}

/*
 * In the first handler call only: take the exception this case is about.
 * NMI context, on purpose: the exception's IRET is what lets the nested NMI
 * in; nothing here takes a lock.
 */
static void exc_take_exception(unsigned long call)
{
	uint64_t v = 0;

	if (call != 0)
		return;
	switch (exc_kind) {
	case EXC_BP:
		nmi_ctx_int3();
		break;
	case EXC_PF_HOOK:
		exc_fault_value = nmi_ctx_fault_read(PAGE0_ADDR(0x38));
		break;
	case EXC_PF_EXTABLE:
		/*
		 * The exception table handles this #PF without any hook, so
		 * the nested NMI is sent first: NMIs are blocked, it stays
		 * latched, and the #PF's IRET lets it in.
		 */
		exc_send_nested();
		exc_fault_value = probe_read_u64(PAGE0_ADDR(0x38), &v) == -EFAULT ? FAULT_MARK : v;
		break;
	case EXC_DB:
		/* do_nmi() parked DR7 for the handler; this breakpoint is the handler's own. */
		hw_breakpoint_exec(0, (uint64_t)nmi_ctx_db_target);
		nmi_ctx_db_target();
		break;
	}
}

/*
 * Hook modes: what the #BP/#PF/#DB/#MC hooks below do when their site is hit.
 * The hooks run with interrupts off, inside an NMI handler or with an NMI
 * arriving in them: atomics, the ICR and the register context only.
 */
enum hook_mode { HOOK_OFF, HOOK_NESTED, HOOK_CTX, HOOK_SYSCALL };
static volatile int hook_mode;
static volatile bool in_pf_hook, in_db_hook, in_mc_hook;
static volatile int hook_ctx_bad = -1;		/* registers changed around the hook's NMI */
static volatile uint64_t hook_cr2_after, hook_fault_addr_after;
static atomic_ulong hook_runs;

static bool exc_bp_hook(struct regs *r)
{
	if (hook_mode != HOOK_NESTED || r->rip - 1 != (uint64_t)nmi_ctx_int3_site)
		return false;
	exc_send_nested();
	atomic_fetch_add(&hook_runs, 1);
	return true;		/* RIP is past the int3 already */
}

static bool exc_pf_hook(struct regs *r)
{
	if (r->rip != (uint64_t)nmi_ctx_fault_insn || hook_mode == HOOK_OFF)
		return false;
	atomic_fetch_add(&hook_runs, 1);
	if (hook_mode == HOOK_NESTED) {
		exc_send_nested();
	} else if (hook_mode == HOOK_CTX) {
		/* An NMI in the middle of a #PF handler; its handler faults too. */
		in_pf_hook = true;
		hook_ctx_bad = run_ctx_with_self_nmi(3);
		in_pf_hook = false;
		hook_cr2_after = read_cr2();
		hook_fault_addr_after = trap_fault_address();
	}
	r->rip = (uint64_t)nmi_ctx_fault_resume;
	r->rax = FAULT_MARK;
	return true;
}

static struct regs syscall_db_regs;	/* the #DB at syscall_entry, as the hook saw it */

static bool exc_db_hook(struct regs *r)
{
	if (hook_mode == HOOK_SYSCALL && r->rip == (uint64_t)syscall_entry &&
	    (trap_debug_status() & DR6_B0)) {
		/*
		 * Ring 0, but still the user's RSP and GS base: SWAPGS has not
		 * run.  Send the NMI from a trampoline that goes straight back
		 * to syscall_entry, so the NMI interrupts exactly this state.
		 */
		write_dr7(DR7_RESET);
		hook_mode = HOOK_OFF;
		syscall_db_regs = *r;
		atomic_fetch_add(&hook_runs, 1);
		lapic_write(LAPIC_ICR_HIGH, this_cpu()->apic_id << ICR_DEST_SHIFT);
		nmi_ctx_tramp_icr = lapic_base + LAPIC_ICR_LOW;
		nmi_ctx_tramp_cmd = ICR_ASSERT | ICR_DM_NMI;
		atomic_fetch_add(&ctx_pending[this_cpu_id()], 1);
		r->rip = (uint64_t)nmi_ctx_syscall_tramp;
		return true;
	}
	if (r->rip != (uint64_t)nmi_ctx_db_target || !(trap_debug_status() & DR6_B0))
		return false;
	if (hook_mode != HOOK_NESTED && hook_mode != HOOK_CTX)
		return false;
	write_dr7(DR7_RESET);	/* one #DB; the instruction then runs */
	atomic_fetch_add(&hook_runs, 1);
	if (hook_mode == HOOK_NESTED) {
		exc_send_nested();
	} else {
		in_db_hook = true;
		hook_ctx_bad = run_ctx_with_self_nmi(4);
		in_db_hook = false;
	}
	return true;
}

static bool hooks_install(void)
{
	hook_mode = HOOK_OFF;
	atomic_store(&hook_runs, 0);
	if (trap_set_handler(X86_TRAP_BP, exc_bp_hook) != 0)
		return false;
	if (trap_set_handler(X86_TRAP_PF, exc_pf_hook) != 0) {
		trap_clear_handler(X86_TRAP_BP, exc_bp_hook);
		return false;
	}
	if (trap_set_handler(X86_TRAP_DB, exc_db_hook) != 0) {
		trap_clear_handler(X86_TRAP_PF, exc_pf_hook);
		trap_clear_handler(X86_TRAP_BP, exc_bp_hook);
		return false;
	}
	return true;
}

static void hooks_remove(void)
{
	hook_mode = HOOK_OFF;
	write_dr7(DR7_RESET);
	trap_clear_handler(X86_TRAP_DB, exc_db_hook);
	trap_clear_handler(X86_TRAP_PF, exc_pf_hook);
	trap_clear_handler(X86_TRAP_BP, exc_bp_hook);
}

static volatile uint64_t exc_first_rip;

/* nmi_test_hook, NMI context: one store. */
static void exc_record_first(struct regs *r)
{
	if (!exc_first_rip)
		exc_first_rip = r->rip;
}

/*
 * One nmi_exc case: a self-NMI interrupts the register context; its handler
 * takes exception `kind`, from (or just before) which a second NMI is sent.
 */
static void exc_case(int kind)
{
	struct nmi_test_ctx c;
	struct nmi_cpu_stats before, after;
	struct percpu *pc = this_cpu();
	unsigned cpu = pc->cpu;

	KT_ASSERT_TRUE(ctx_begin());
	if (!hooks_install()) {
		ctx_end();
		KT_FAIL("cannot install the exception hooks");
		return;
	}
	uint64_t flags = irq_save();
	exc_kind = kind;
	exc_fault_value = 0;
	exc_first_rip = 0;
	atomic_store(&exc_fired, 0);
	hook_mode = HOOK_NESTED;
	ctx_after_claim = exc_take_exception;
	nmi_test_hook = exc_record_first;
	uint64_t nested0 = pc->nmi_asm_nested, repeat0 = pc->nmi_asm_in_repeat;
	nmi_get_cpu_stats(cpu, &before);

	fill_ctx(&c, (unsigned)kind);
	lapic_write(LAPIC_ICR_HIGH, pc->apic_id << ICR_DEST_SHIFT);
	atomic_fetch_add(&ctx_pending[cpu], 1);
	nmi_test_ctx_run(&c);
	bool both = wait_count(&ctx_claimed[cpu], 2, 100);

	nmi_get_cpu_stats(cpu, &after);
	uint64_t nested = pc->nmi_asm_nested - nested0, in_repeat = pc->nmi_asm_in_repeat - repeat0;
	nmi_test_hook = NULL;
	ctx_after_claim = NULL;
	exc_kind = EXC_NONE;
	hooks_remove();
	irq_restore(flags);
	ctx_end();

	kt_diag("first NMI at %#llx; handler calls %lu, events claimed %lu, nested NMIs sent %lu, "
		"caught by the entry %llu (repeat region %llu); unknown +%llu",
		(unsigned long long)exc_first_rip, atomic_load(&ctx_calls[cpu]),
		atomic_load(&ctx_claimed[cpu]), atomic_load(&exc_fired),
		(unsigned long long)nested, (unsigned long long)in_repeat,
		(unsigned long long)(after.unknown - before.unknown));
	KT_EXPECT_TRUE(both);
	KT_EXPECT_EQ(exc_fired, 1ul);
	KT_EXPECT_EQ(ctx_claimed[cpu], 2ul);	/* both NMIs handled ... */
	KT_EXPECT_EQ(ctx_calls[cpu], 2ul);	/* ... once each: the handler re-ran */
	KT_EXPECT_EQ(nested, 1ull);				/* the second one nested */
	KT_EXPECT_EQ(in_repeat, 0ull);
	KT_EXPECT_EQ(after.unknown, before.unknown);
	KT_EXPECT_TRUE(rip_in_ctx_window(exc_first_rip));
	KT_EXPECT_EQ(ctx_mismatches(&c), 0);
	KT_EXPECT_EQ(stacks_check_canaries(cpu), 0);
	if (kind == EXC_PF_HOOK || kind == EXC_PF_EXTABLE)
		KT_EXPECT_EQ(exc_fault_value, FAULT_MARK);	/* the fault was recovered */
}

KTEST(nmi_exc, int3_in_handler_survives_nested_nmi)
{
	exc_case(EXC_BP);
	KT_EXPECT_EQ(hook_runs, 1ul);
}

KTEST(nmi_exc, page_fault_hook_in_handler_survives_nested_nmi)
{
	exc_case(EXC_PF_HOOK);
	KT_EXPECT_EQ(hook_runs, 1ul);
}

KTEST(nmi_exc, page_fault_fixup_in_handler_survives_nested_nmi)
{
	exc_case(EXC_PF_EXTABLE);
}

KTEST(nmi_exc, debug_breakpoint_in_handler_survives_nested_nmi)
{
	exc_case(EXC_DB);
	KT_EXPECT_EQ(hook_runs, 1ul);
}

/* === nmi_ctx: NMIs in every context ===================================== */

static volatile uint64_t user_stack_lo, user_stack_hi;

/* NMIs of the ring-3 test that interrupted the kernel on CPU x and were seen as such. */
static atomic_ulong user_test_ring0_hits;

/*
 * Ring 3: user CS, a RIP in .utext, the task's own user stack; the core saw
 * from_user.  An NMI may also land while CPU x is in the kernel for the task
 * (its timer tick, irq_work): that one is counted apart when the entry saw
 * it as a kernel-mode NMI, so that only a misclassified NMI is a mismatch.
 */
static bool classify_user(struct regs *r, struct nmi_frame *f)
{
	if (r->cs == SEL_KCODE && !f->from_user &&
	    r->rip >= (uint64_t)__text_start && r->rip < (uint64_t)__text_end) {
		atomic_fetch_add(&user_test_ring0_hits, 1);
		return false;
	}
	return r->cs == SEL_UCODE && f->from_user &&
	       r->rip >= (uint64_t)__utext_start && r->rip < (uint64_t)__utext_end &&
	       r->rsp >= user_stack_lo && r->rsp < user_stack_hi;
}

/*
 * NMIs from another CPU while a ring-3 task spins, checking its registers on
 * every round.  The task must see no change, carry on, and exit normally.
 * How many NMIs land in ring 3 rather than in the task's own ticks depends
 * on how the host schedules the virtual CPUs, so the test sends until
 * `want` of them have (at most `max_sends`), and requires every one of the
 * others to have been recognised as a kernel-mode NMI.
 */
KTEST(nmi_ctx, ring3_task_keeps_running)
{
	int x = other_cpu();
	if (x < 0)
		KT_SKIP("needs a second CPU");
	const unsigned want = 100, max_sends = 1000;
	struct nmi_cpu_stats before, after;

	KT_ASSERT_TRUE(ctx_begin());
	atomic_store(&user_test_ring0_hits, 0);
	nmi_ctx_user_stop = 0;
	nmi_ctx_user_rounds = 0;
	struct task *t = task_create_user("u-nmi-spin", nmi_ctx_user_spin, 0, x);
	if (!t) {
		ctx_end();
		KT_ASSERT_NOT_NULL(t);
	}
	user_stack_lo = (uint64_t)t->ustack_base;
	user_stack_hi = t->ustack_top;
	uint64_t start = os_timestamp_ns() + 2000000000ull;
	while (nmi_ctx_user_rounds == 0 && os_timestamp_ns() < start)
		sleep_ms(1);
	ctx_classify = classify_user;
	nmi_get_cpu_stats((unsigned)x, &before);
	unsigned sends = 0, delivered = 0;
	while (sends < max_sends && atomic_load(&ctx_matched[x]) < want) {
		ctx_send((unsigned)x);
		sends++;
		/* Generous: without icount a loaded host can deschedule CPU x for a while. */
		if (wait_count(&ctx_claimed[x], sends, 1000))
			delivered++;
	}
	nmi_get_cpu_stats((unsigned)x, &after);
	ctx_classify = NULL;
	uint64_t rounds_then = nmi_ctx_user_rounds;
	sleep_ms(20);
	uint64_t rounds_later = nmi_ctx_user_rounds;
	nmi_ctx_user_stop = 1;
	struct task_stats st;
	int code = task_wait(t, &st);
	unsigned long matched = atomic_load(&ctx_matched[x]);
	unsigned long ring0 = atomic_load(&user_test_ring0_hits);
	unsigned long calls = atomic_load(&ctx_calls[x]);
	ctx_end();

	kt_diag("cpu %d: %u NMIs sent, %u handled, %lu interrupted ring 3 (from_user +%llu), "
		"%lu the kernel; the task ran %llu rounds and exited with %#x", x, sends, delivered,
		matched, (unsigned long long)(after.from_user - before.from_user), ring0,
		(unsigned long long)rounds_later, code);
	if (matched < sends) {
		uint64_t off = 0, size = 0;
		const char *fn = ksym_lookup(ctx_miss_rip[x], &off, &size);
		kt_diag("first NMI not in ring 3: cs %#llx rip %#llx (%s+%#llx)",
			(unsigned long long)ctx_miss_cs[x], (unsigned long long)ctx_miss_rip[x],
			fn ? fn : "?", (unsigned long long)off);
	}
	/* Every NMI sent was handled, however late (each send waited for the last). */
	KT_EXPECT_EQ(atomic_load(&ctx_claimed[x]), (unsigned long)sends);
	KT_EXPECT_GE(delivered, sends / 2);
	KT_EXPECT_GE(matched, (unsigned long)want);	/* the task lives in ring 3 */
	KT_EXPECT_EQ(matched + ring0, calls);		/* and no NMI was misclassified */
	KT_EXPECT_GE(after.from_user - before.from_user, matched);
	KT_EXPECT_GT(rounds_later, rounds_then);	/* it carried on after the NMIs */
	KT_EXPECT_EQ(code, NMI_CTX_USER_OK);		/* and saw every register intact */
	KT_EXPECT_EQ(after.unknown, before.unknown);
}

/* The ring-3 task's GS base in this test: nonzero, so that it can be recognised. */
#define USER_GS_MARK	0x00005a5a5a5a0000ull

static volatile uint64_t sys_hostile_rsp;
static volatile uint64_t sys_gs_in_handler, sys_gs_expected, sys_gs_interrupted;
static volatile bool sys_exact, sys_in_tramp;

/*
 * The NMI must have interrupted kernel code on the user's RSP and GS base:
 * at syscall_entry itself (before its SWAPGS), or - where the CPU takes the
 * NMI right after the trampoline's ICR write (QEMU under -icount ends the
 * translation block after an I/O access) - in the trampoline, which is also
 * ring 0 before SWAPGS.  In the handler the GS base must be this CPU's
 * percpu, and the entry's SWAPGS must have put the interrupted (user) GS
 * base into MSR_KERNEL_GS_BASE.
 */
static bool classify_syscall(struct regs *r, struct nmi_frame *f)
{
	sys_exact = r->rip == (uint64_t)syscall_entry;
	sys_in_tramp = r->rip >= (uint64_t)nmi_ctx_syscall_tramp_sent &&
		       r->rip < (uint64_t)nmi_ctx_syscall_tramp_end;
	sys_gs_in_handler = rdmsr(MSR_GS_BASE);
	sys_gs_interrupted = rdmsr(MSR_KERNEL_GS_BASE);
	return (sys_exact || sys_in_tramp) && r->cs == SEL_KCODE && !f->from_user &&
	       r->rsp == sys_hostile_rsp && sys_gs_in_handler == sys_gs_expected &&
	       sys_gs_interrupted == USER_GS_MARK;
}

/*
 * An NMI on the first instruction of the SYSCALL entry: ring 0, but the user
 * RSP (here pointing into this CPU's NMI stack, as in CVE-2015-3291) and the
 * user GS base.  A DR0 breakpoint on syscall_entry stops the task's first
 * system call there; the #DB hook sends the self-NMI from a trampoline that
 * jumps straight back (see nmi_ctx_helpers.S).  The entry must find the
 * right GS base by comparison, not take the NMI for a nested one, and give
 * the system call back its exact state: the task then finishes normally.
 */
KTEST(nmi_ctx, syscall_entry_before_swapgs)
{
	unsigned cpu = this_cpu_id();
	struct nmi_cpu_stats before, after;

	KT_ASSERT_TRUE(ctx_begin());
	if (!hooks_install()) {
		ctx_end();
		KT_FAIL("cannot install the exception hooks");
		return;
	}
	sys_hostile_rsp = (uint64_t)cpu_stacks[cpu].nmi + NMI_STACK_SIZE - 64;
	sys_gs_expected = (uint64_t)cpu_data(cpu);
	sys_exact = sys_in_tramp = false;
	syscall_db_regs = (struct regs){ 0 };
	struct regs init = {
		.rax = 0x1111, .rbx = 0x2222, .rcx = 0x3333, .rdx = 0x4444,
		.rsi = 0x5555, .rdi = 0x6666, .rbp = 0x7777, .r8 = 0x8888,
		.r9 = 0x9999, .r10 = 0xaaaa, .r11 = 0xbbbb, .r12 = 0xcccc,
		.r13 = 0xdddd, .r14 = 0xeeee, .r15 = 0xffff,
		.rip = (uint64_t)user_record_regs,
		.rsp = sys_hostile_rsp,
		.rflags = RFLAGS_IF,
	};
	ctx_classify = classify_syscall;
	nmi_get_cpu_stats(cpu, &before);
	uint64_t flags = irq_save();
	hook_mode = HOOK_SYSCALL;
	int armed = hw_breakpoint_exec(0, (uint64_t)syscall_entry);
	/*
	 * The GS base ring 3 gets on this CPU (the kernel's SWAPGS on the way
	 * out loads it): no other ring-3 task runs on this CPU meanwhile.
	 */
	uint64_t user_gs = rdmsr(MSR_KERNEL_GS_BASE);
	wrmsr(MSR_KERNEL_GS_BASE, USER_GS_MARK);
	irq_restore(flags);
	struct task *t = armed == 0 ? task_create_user_regs("u-sys-nmi", &init, false, (int)cpu) : NULL;
	int code = t ? task_wait(t, NULL) : -1;
	flags = irq_save();
	wrmsr(MSR_KERNEL_GS_BASE, user_gs);
	irq_restore(flags);
	bool claimed = wait_count(&ctx_claimed[cpu], 1, 100);
	nmi_get_cpu_stats(cpu, &after);
	hooks_remove();
	unsigned long matched = atomic_load(&ctx_matched[cpu]);
	ctx_end();

	kt_diag("#DB at syscall_entry with RSP %#llx, CS %#llx; NMI landed at %#llx (%s)",
		(unsigned long long)syscall_db_regs.rsp, (unsigned long long)syscall_db_regs.cs,
		(unsigned long long)ctx_last_rip[cpu],
		sys_exact ? "syscall_entry, before SWAPGS" :
		sys_in_tramp ? "the trampoline after its ICR write, before SWAPGS" : "elsewhere");
	kt_diag("NMI saw RSP %#llx, CS %#llx, interrupted GS base %#llx, GS base in the handler %#llx; "
		"task exit %d", (unsigned long long)ctx_last_rsp[cpu], (unsigned long long)ctx_last_cs[cpu],
		(unsigned long long)sys_gs_interrupted, (unsigned long long)sys_gs_in_handler, code);
	KT_EXPECT_EQ(armed, 0);
	KT_EXPECT_EQ(hook_runs, 1ul);
	KT_EXPECT_EQ(syscall_db_regs.rsp, sys_hostile_rsp);
	KT_EXPECT_TRUE(claimed);
	KT_EXPECT_EQ(matched, 1ul);
	KT_EXPECT_EQ(sys_gs_interrupted, USER_GS_MARK);
	KT_EXPECT_EQ(code, 0);				/* the system calls went on normally */
	KT_EXPECT_EQ(after.unknown, before.unknown);
	KT_EXPECT_EQ(after.from_user, before.from_user);	/* ring 0, whatever RSP says */
	KT_EXPECT_EQ(stacks_check_canaries(cpu), 0);
}

static volatile bool irq_test_ran;

static bool classify_irq(struct regs *r, struct nmi_frame *f)
{
	return in_irq() && !f->from_user && rip_in_ctx_window(r->rip);
}

/* IRQ context, interrupts off: runs the register context with its self-NMI. */
static void ctx_irq_handler(struct regs *r)
{
	(void)r;
	hook_ctx_bad = run_ctx_with_self_nmi(5);
	irq_test_ran = true;
}

/* A self-NMI sent from an IRQ handler lands inside it (IF is clear, NMIs are not). */
KTEST(nmi_ctx, irq_handler)
{
	unsigned cpu = this_cpu_id();
	int v = irq_alloc_vector();
	KT_ASSERT_GE(v, IRQ_DYN_FIRST);
	KT_ASSERT_EQ(irq_register((unsigned)v, ctx_irq_handler, "nmi-ctx-irq"), 0);
	KT_ASSERT_TRUE(ctx_begin());
	ctx_classify = classify_irq;
	hook_ctx_bad = -1;
	irq_test_ran = false;
	uint64_t flags = irq_save();
	lapic_send_self_ipi((uint8_t)v);
	irq_enable();
	uint64_t end = os_timestamp_ns() + 100000000ull;
	while (!irq_test_ran && os_timestamp_ns() < end)
		cpu_relax();
	irq_disable();
	irq_restore(flags);
	bool claimed = wait_count(&ctx_claimed[cpu], 1, 100);
	unsigned long matched = atomic_load(&ctx_matched[cpu]);
	ctx_end();
	irq_unregister((unsigned)v);

	kt_diag("vector %#x: NMI at %#llx on the %s stack", v, (unsigned long long)ctx_last_rip[cpu],
		stack_name(ctx_last_rsp[cpu]));
	KT_EXPECT_TRUE(irq_test_ran);
	KT_EXPECT_TRUE(claimed);
	KT_EXPECT_EQ(matched, 1ul);
	KT_EXPECT_EQ(hook_ctx_bad, 0);
}

static bool classify_pf_hook(struct regs *r, struct nmi_frame *f)
{
	uint64_t v;
	/* This handler faults too: do_nmi must give the #PF hook its CR2 back. */
	(void)probe_read_u64(PAGE0_ADDR(0x48), &v);
	return in_pf_hook && !f->from_user && rip_in_ctx_window(r->rip);
}

/*
 * An NMI inside a #PF handler (a hook that recovers the fault), whose own
 * handler takes a #PF: the interrupted handler still finds its CR2.
 */
KTEST(nmi_ctx, page_fault_handler)
{
	unsigned cpu = this_cpu_id();
	KT_ASSERT_TRUE(ctx_begin());
	if (!hooks_install()) {
		ctx_end();
		KT_FAIL("cannot install the exception hooks");
		return;
	}
	ctx_classify = classify_pf_hook;
	hook_ctx_bad = -1;
	hook_cr2_after = hook_fault_addr_after = 0;
	hook_mode = HOOK_CTX;
	uint64_t v = nmi_ctx_fault_read(PAGE0_ADDR(0x30));
	hook_mode = HOOK_OFF;
	bool claimed = wait_count(&ctx_claimed[cpu], 1, 100);
	unsigned long matched = atomic_load(&ctx_matched[cpu]);
	hooks_remove();
	ctx_end();

	kt_diag("NMI at %#llx, RSP on the %s stack; CR2 in the #PF hook after the NMI %#llx",
		(unsigned long long)ctx_last_rip[cpu], stack_name(ctx_last_rsp[cpu]),
		(unsigned long long)hook_cr2_after);
	KT_EXPECT_EQ(v, FAULT_MARK);
	KT_EXPECT_TRUE(claimed);
	KT_EXPECT_EQ(matched, 1ul);
	KT_EXPECT_EQ(hook_ctx_bad, 0);
	KT_EXPECT_EQ(hook_cr2_after, 0x30ull);
	KT_EXPECT_EQ(hook_fault_addr_after, 0x30ull);
}

/*
 * HLT in the idle loop: the saved RIP is the instruction after a HLT (0xf4)
 * inside sched_idle, and the idle task is current.
 */
static bool classify_idle(struct regs *r, struct nmi_frame *f)
{
	uint64_t off, size, word;
	const char *fn = ksym_lookup(r->rip, &off, &size);
	if (f->from_user || !fn || strcmp(fn, "sched_idle") != 0 || !task_current()->is_idle)
		return false;
	if (probe_read_u64((const void *)(r->rip - 8), &word) != 0)
		return false;
	return (word >> 56) == 0xf4;
}

KTEST(nmi_ctx, hlt_idle)
{
	int x = other_cpu();
	if (x < 0)
		KT_SKIP("needs a second CPU");
	const unsigned sends = 100;
	KT_ASSERT_TRUE(ctx_begin());
	sleep_ms(20);			/* let CPU x settle into its idle loop */
	ctx_classify = classify_idle;
	unsigned delivered = 0;
	for (unsigned i = 0; i < sends; i++) {
		ctx_send((unsigned)x);
		/* Generous: without icount a loaded host can deschedule CPU x for a while. */
		if (wait_count(&ctx_claimed[x], i + 1, 1000))
			delivered++;
		for (int k = 0; k < 2000; k++)	/* let it go back to HLT */
			cpu_relax();
	}
	ctx_classify = NULL;
	unsigned long matched = atomic_load(&ctx_matched[x]);
	uint64_t ticks0 = cpu_data((unsigned)x)->apic_ticks;
	sleep_ms(30);
	uint64_t ticks1 = cpu_data((unsigned)x)->apic_ticks;
	ctx_end();

	kt_diag("cpu %d: %u NMIs, %u handled, %lu interrupted HLT in sched_idle (last RIP %#llx); "
		"%llu ticks in the 30 ms after", x, sends, delivered, matched,
		(unsigned long long)ctx_last_rip[x], (unsigned long long)(ticks1 - ticks0));
	/* Every NMI sent was handled, however late (each send waited for the last). */
	KT_EXPECT_EQ(atomic_load(&ctx_claimed[x]), (unsigned long)sends);
	KT_EXPECT_GE(delivered, sends / 2);
	KT_EXPECT_GE(matched, sends / 2);
	KT_EXPECT_GT(ticks1, ticks0);		/* the idle CPU still takes its tick */
}

static bool classify_db(struct regs *r, struct nmi_frame *f)
{
	return in_db_hook && !f->from_user && rip_in_ctx_window(r->rip) && stack_named(r->rsp, "#DB");
}

/*
 * A self-NMI sent from a #DB hook: a #DB does not block NMIs, so it lands
 * while the #DB handler runs, on the #DB IST stack - not after its IRET.
 */
KTEST(nmi_ctx, debug_handler)
{
	unsigned cpu = this_cpu_id();
	KT_ASSERT_TRUE(ctx_begin());
	if (!hooks_install()) {
		ctx_end();
		KT_FAIL("cannot install the exception hooks");
		return;
	}
	ctx_classify = classify_db;
	hook_ctx_bad = -1;
	uint64_t flags = irq_save();
	hook_mode = HOOK_CTX;
	int armed = hw_breakpoint_exec(0, (uint64_t)nmi_ctx_db_target);
	nmi_ctx_db_target();
	hook_mode = HOOK_OFF;
	irq_restore(flags);
	bool claimed = wait_count(&ctx_claimed[cpu], 1, 100);
	unsigned long matched = atomic_load(&ctx_matched[cpu]);
	hooks_remove();
	ctx_end();

	kt_diag("NMI sent from the #DB hook landed at %#llx on the %s stack: inside the #DB handler",
		(unsigned long long)ctx_last_rip[cpu], stack_name(ctx_last_rsp[cpu]));
	KT_EXPECT_EQ(armed, 0);
	KT_EXPECT_EQ(hook_runs, 1ul);
	KT_EXPECT_TRUE(claimed);
	KT_EXPECT_EQ(matched, 1ul);
	KT_EXPECT_EQ(hook_ctx_bad, 0);
	KT_EXPECT_EQ(stacks_check_canaries(cpu), 0);
}

/* === nmi_mce: an NMI inside the #MC handler ============================== */

#define MSR_MCG_CAP		0x179
#define MSR_MCG_STATUS		0x17a
#define MSR_MC_STATUS(b)	(0x401 + 4 * (b))
#define MCG_STATUS_RIPV		(1ull << 0)
#define MCI_STATUS_VAL		(1ull << 63)
#define MCE_TEST_BANK		1
#define CPUID1_EDX_MCE		(1u << 7)
#define CPUID1_EDX_MCA		(1u << 14)

static volatile uint64_t mc_status_seen, mcg_status_seen;
static volatile bool mc_fired;

static bool classify_mc(struct regs *r, struct nmi_frame *f)
{
	return in_mc_hook && !f->from_user && rip_in_ctx_window(r->rip) && stack_named(r->rsp, "#MC");
}

/*
 * The test's recoverable-#MC mode: a hook that claims the injected error on
 * the test bank (as a real handler may when MCG_STATUS.RIPV says the
 * interrupted context can be resumed), sends itself an NMI in the middle of
 * it, then clears the bank and MCG_STATUS.  Without this hook the kernel's
 * #MC path reports and panics.  Runs on the #MC IST stack: no locks.
 */
static bool mc_hook(struct regs *r)
{
	(void)r;
	uint64_t st = rdmsr(MSR_MC_STATUS(MCE_TEST_BANK));
	uint64_t mcg = rdmsr(MSR_MCG_STATUS);
	if (hook_mode != HOOK_CTX || !(st & MCI_STATUS_VAL) || !(mcg & MCG_STATUS_RIPV))
		return false;
	mc_status_seen = st;
	mcg_status_seen = mcg;
	in_mc_hook = true;
	hook_ctx_bad = run_ctx_with_self_nmi(6);
	in_mc_hook = false;
	wrmsr(MSR_MC_STATUS(MCE_TEST_BANK), 0);
	wrmsr(MSR_MCG_STATUS, 0);
	mc_fired = true;
	return true;
}

KTEST(nmi_mce, machine_check_handler)
{
	uint32_t a, b, c, d;
	unsigned cpu = this_cpu_id();

	cpuid(1, 0, &a, &b, &c, &d);
	if (!(d & CPUID1_EDX_MCE) || !(d & CPUID1_EDX_MCA))
		KT_SKIP("no machine-check architecture");
	if ((rdmsr(MSR_MCG_CAP) & 0xff) <= MCE_TEST_BANK)
		KT_SKIP("too few machine-check banks");
	KT_ASSERT_EQ(cpu, 0u);		/* the scenario injects on CPU 0 */
	KT_ASSERT_TRUE(ctx_begin());
	KT_ASSERT_EQ(trap_set_handler(X86_TRAP_MC, mc_hook), 0);
	ctx_classify = classify_mc;
	hook_ctx_bad = -1;
	mc_fired = false;
	hook_mode = HOOK_CTX;
	/* Without CR4.MCE a machine check is a shutdown (QEMU resets the guest). */
	write_cr4(read_cr4() | CR4_MCE);
	kt_diag("nmi_mce: waiting for a machine check on CPU 0, bank %d", MCE_TEST_BANK);
	uint64_t end = os_timestamp_ns() + 20000000000ull;
	while (!mc_fired && os_timestamp_ns() < end)
		sleep_ms(5);
	hook_mode = HOOK_OFF;
	bool claimed = wait_count(&ctx_claimed[cpu], 1, 100);
	unsigned long matched = atomic_load(&ctx_matched[cpu]);
	trap_clear_handler(X86_TRAP_MC, mc_hook);
	ctx_end();

	kt_diag("#MC bank %d status %#llx, MCG_STATUS %#llx; NMI at %#llx on the %s stack",
		MCE_TEST_BANK, (unsigned long long)mc_status_seen, (unsigned long long)mcg_status_seen,
		(unsigned long long)ctx_last_rip[cpu], stack_name(ctx_last_rsp[cpu]));
	KT_ASSERT_TRUE(mc_fired);
	KT_EXPECT_TRUE(claimed);
	KT_EXPECT_EQ(matched, 1ul);
	KT_EXPECT_EQ(hook_ctx_bad, 0);
	KT_EXPECT_EQ(rdmsr(MSR_MC_STATUS(MCE_TEST_BANK)) & MCI_STATUS_VAL, 0ull);
	KT_EXPECT_EQ(stacks_check_canaries(cpu), 0);
}
