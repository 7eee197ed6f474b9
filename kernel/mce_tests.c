/*
 * mce_tests.c: the KTAP suite "mce" - the machine-check handler of
 * arch/x86_64/mce.c.
 *
 * Two kinds of machine check are used.  QEMU's TCG lets the guest write any
 * value into MCi_STATUS/ADDR/MISC and MCG_STATUS, so a test can build the
 * exact state an #MC leaves and raise vector 18 with `int $18`: the handler
 * cannot tell the difference, and the test chooses the context (a thread,
 * an NMI handler with an NMI latched behind it).  And the real thing:
 * mce.qmp_injected waits for machine checks that the scenario injects with
 * QEMU's HMP `mce` command (tests/scenarios.conf, mce.recoverable).
 *
 * What each test proves is in docs/exceptions.md ("#MC: machine checks").
 */
#include <stdatomic.h>
#include <arch/cpu.h>
#include <arch/gdt.h>
#include <arch/mce.h>
#include <arch/nmi.h>
#include <arch/percpu.h>
#include <arch/traps.h>
#include <kernel/ktest.h>
#include <kernel/sched.h>
#include <kernel/shell.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

static bool mce_test_qmp;
NK_PARAM_BOOL("mce_test_qmp", mce_test_qmp,
	      "mce.qmp_injected: machine checks come from QEMU's HMP mce command (scenario mce.recoverable)");

/* --- helpers ---------------------------------------------------------------- */

/*
 * Loads a distinct pattern into every general register but RSP, sets DF and
 * CF, executes `int $18`, and stores what every register and RFLAGS hold
 * afterwards into out[0..15] (RAX RBX RCX RDX RSI RDI RBP R8-R15, RFLAGS).
 * Any context; the callee-saved registers and DF are restored before it
 * returns.
 */
void mce_test_int18_regs(uint64_t *out);
__asm__(
	".text\n"
	".globl mce_test_int18_regs\n"
	"mce_test_int18_regs:\n"
	"	pushq %rbx\n	pushq %rbp\n	pushq %r12\n	pushq %r13\n	pushq %r14\n	pushq %r15\n"
	"	pushq %rdi\n"
	"	movabsq $0xa0a0a0a0a0a0a000, %rax\n"
	"	movabsq $0xa0a0a0a0a0a0a001, %rbx\n"
	"	movabsq $0xa0a0a0a0a0a0a002, %rcx\n"
	"	movabsq $0xa0a0a0a0a0a0a003, %rdx\n"
	"	movabsq $0xa0a0a0a0a0a0a004, %rsi\n"
	"	movabsq $0xa0a0a0a0a0a0a005, %rdi\n"
	"	movabsq $0xa0a0a0a0a0a0a006, %rbp\n"
	"	movabsq $0xa0a0a0a0a0a0a007, %r8\n"
	"	movabsq $0xa0a0a0a0a0a0a008, %r9\n"
	"	movabsq $0xa0a0a0a0a0a0a009, %r10\n"
	"	movabsq $0xa0a0a0a0a0a0a00a, %r11\n"
	"	movabsq $0xa0a0a0a0a0a0a00b, %r12\n"
	"	movabsq $0xa0a0a0a0a0a0a00c, %r13\n"
	"	movabsq $0xa0a0a0a0a0a0a00d, %r14\n"
	"	movabsq $0xa0a0a0a0a0a0a00e, %r15\n"
	"	std\n"
	"	stc\n"
	"	int $18\n"
	"	pushfq\n"			/* [rsp] = RFLAGS, [rsp+8] = out */
	"	cld\n"
	"	xchgq %rax, 8(%rsp)\n"		/* rax = out, slot = RAX */
	"	movq %rbx, 8(%rax)\n	movq %rcx, 16(%rax)\n	movq %rdx, 24(%rax)\n"
	"	movq %rsi, 32(%rax)\n	movq %rdi, 40(%rax)\n	movq %rbp, 48(%rax)\n"
	"	movq %r8, 56(%rax)\n	movq %r9, 64(%rax)\n	movq %r10, 72(%rax)\n"
	"	movq %r11, 80(%rax)\n	movq %r12, 88(%rax)\n	movq %r13, 96(%rax)\n"
	"	movq %r14, 104(%rax)\n	movq %r15, 112(%rax)\n"
	"	popq %rbx\n	movq %rbx, 120(%rax)\n"	/* RFLAGS */
	"	popq %rbx\n	movq %rbx, 0(%rax)\n"	/* RAX */
	"	popq %r15\n	popq %r14\n	popq %r13\n	popq %r12\n	popq %rbp\n	popq %rbx\n"
	"	ret\n");

#define TEST_RFLAGS_CF	(1ull << 0)
#define TEST_RFLAGS_DF	(1ull << 10)
#define TEST_CR4_MCE	(1ull << 6)

/* Registers mce_test_int18_regs() found changed (bit i = register i; bit 15: CF or DF). */
static unsigned regs_changed(const uint64_t *out)
{
	unsigned bad = 0;
	for (unsigned i = 0; i < 15; i++)
		if (out[i] != 0xa0a0a0a0a0a0a000ull + i)
			bad |= 1u << i;
	if ((out[15] & (TEST_RFLAGS_CF | TEST_RFLAGS_DF)) != (TEST_RFLAGS_CF | TEST_RFLAGS_DF))
		bad |= 1u << 15;
	return bad;
}

/*
 * Leave in bank `b` and MCG_STATUS what the CPU leaves there when it raises
 * #MC.  False when the writes did not stick (not QEMU's TCG): then only an
 * injected machine check can test the handler.
 */
static bool stage_mc(unsigned b, uint64_t status, uint64_t mcg, uint64_t addr, uint64_t misc)
{
	wrmsr(MSR_MC_ADDR(b), addr);
	wrmsr(MSR_MC_MISC(b), misc);
	wrmsr(MSR_MC_STATUS(b), status);
	wrmsr(MSR_MCG_STATUS, mcg);
	return rdmsr(MSR_MC_STATUS(b)) == status && rdmsr(MSR_MCG_STATUS) == mcg;
}

static void unstage(void)
{
	for (unsigned b = 0; b < mce_bank_count(); b++)
		wrmsr(MSR_MC_STATUS(b), 0);
	wrmsr(MSR_MCG_STATUS, 0);
}

#define STATUS_UCNA	(MCI_STATUS_VAL | MCI_STATUS_UC | MCI_STATUS_EN)	/* 0xb000... */
#define STATUS_SRAO	(STATUS_UCNA | MCI_STATUS_S | MCI_STATUS_ADDRV | MCI_STATUS_MISCV | 0xc0)
#define STATUS_SRAR	(STATUS_SRAO | MCI_STATUS_AR)
#define STATUS_CE	(MCI_STATUS_VAL | MCI_STATUS_EN | 0x17a)
#define MCG_RIPV_MCIP	(MCG_STATUS_RIPV | MCG_STATUS_MCIP)

/* Whether a record containing `needle` was logged since `seq`. */
static bool logged_since(uint64_t seq, const char *needle)
{
	static struct nk_log_record rec;	/* only the test runner reads the log */
	size_t n = strlen(needle);
	while (nk_log_read(&seq, &rec))
		for (const char *p = rec.text; *p; p++)
			if (strncmp(p, needle, n) == 0)
				return true;
	return false;
}

static bool need_mca(void)
{
	return mce_available() && mce_bank_count() >= 5;
}

/* --- boot state ------------------------------------------------------------ */

static _Atomic unsigned banks_off, mcip_set;

static void check_banks_here(void *arg)
{
	(void)arg;
	for (unsigned b = 0; b < mce_bank_count(); b++)
		if (rdmsr(MSR_MC_CTL(b)) != ~0ull)
			atomic_fetch_add(&banks_off, 1);
	if (rdmsr(MSR_MCG_STATUS) & MCG_STATUS_MCIP)
		atomic_fetch_add(&mcip_set, 1);
}

KTEST(mce, banks_enabled_on_every_cpu)
{
	if (!need_mca())
		KT_SKIP("no machine-check architecture with 5 banks");
	if (rdmsr(MSR_MCG_CAP) & MCG_CAP_CTL_P)
		KT_EXPECT_EQ(rdmsr(MSR_MCG_CTL), ~0ull);
	atomic_store(&banks_off, 0);
	atomic_store(&mcip_set, 0);
	unsigned cpus = 0;
	for (unsigned c = 0; c < os_cpu_count(); c++) {
		if (!os_cpu_online(c))
			continue;
		struct task *t = task_create_kernel("mce-banks", check_banks_here, NULL, (int)c);
		KT_ASSERT_NOT_NULL(t);
		task_wait(t, NULL);
		cpus++;
	}
	kt_diag("%u CPUs, %u banks each: %u bank(s) not fully enabled, %u CPU(s) with MCIP set",
		cpus, mce_bank_count(), atomic_load(&banks_off), atomic_load(&mcip_set));
	KT_EXPECT_EQ(atomic_load(&banks_off), 0u);
	KT_EXPECT_EQ(atomic_load(&mcip_set), 0u);
	KT_EXPECT_NE(read_cr4() & TEST_CR4_MCE, 0ull);
}

/* --- the decision table ------------------------------------------------------ */

struct verdict_case {
	const char *name;
	uint64_t status, mcg;
	bool user;
	enum mce_verdict want;
	const char *reason;	/* part of mce_fatal_reason() for MCE_FATAL */
};

static const struct verdict_case verdict_cases[] = {
	{ "uncorrected, no action, RIPV", STATUS_UCNA, MCG_RIPV_MCIP, false, MCE_RECOVERED, NULL },
	{ "SRAO with ADDR/MISC, RIPV", STATUS_SRAO, MCG_RIPV_MCIP, false, MCE_RECOVERED, NULL },
	{ "corrected record in an #MC", STATUS_CE, MCG_RIPV_MCIP, false, MCE_RECOVERED, NULL },
	{ "PCC", STATUS_UCNA | MCI_STATUS_PCC, MCG_RIPV_MCIP, false, MCE_FATAL, "processor context corrupt" },
	{ "PCC from ring 3", STATUS_UCNA | MCI_STATUS_PCC, MCG_RIPV_MCIP, true, MCE_FATAL, "processor context corrupt" },
	{ "RIPV clear", STATUS_UCNA, MCG_STATUS_MCIP | MCG_STATUS_EIPV, false, MCE_FATAL, "RIPV clear" },
	{ "overflowed uncorrected", STATUS_UCNA | MCI_STATUS_OVER, MCG_RIPV_MCIP, false, MCE_FATAL, "overflowed" },
	{ "SRAR in the kernel", STATUS_SRAR, MCG_STATUS_MCIP | MCG_STATUS_EIPV, false, MCE_FATAL, "kernel context" },
	{ "SRAR in ring 3", STATUS_SRAR, MCG_STATUS_MCIP | MCG_STATUS_EIPV, true, MCE_KILL_TASK, NULL },
	{ "MCIP clear", STATUS_UCNA, MCG_STATUS_RIPV, false, MCE_FATAL, "MCIP clear" },
	{ "no valid bank", 0, MCG_RIPV_MCIP, false, MCE_FATAL, "unknown source" },
};

/*
 * mce_handle() called directly (no #MC, so no panic) on a staged state for
 * each row: the verdict, the reason named, and that a resumed or killed
 * error leaves the banks and MCIP clear while a fatal one leaves them for
 * the report.  Interrupts off: a real #MC runs so.
 */
KTEST(mce, verdicts)
{
	if (!need_mca())
		KT_SKIP("no machine-check architecture with 5 banks");
	unsigned me = this_cpu_id();
	for (unsigned i = 0; i < sizeof(verdict_cases) / sizeof(verdict_cases[0]); i++) {
		const struct verdict_case *c = &verdict_cases[i];
		struct regs r = { .rip = (uint64_t)mce_test_int18_regs, .cs = c->user ? 0x23 : 0x08,
				  .ss = c->user ? 0x1b : 0x10 };
		uint64_t flags = irq_save();
		unstage();
		bool staged = c->status ? stage_mc(2, c->status, c->mcg, 0x5000, 0x86) :
					  (wrmsr(MSR_MCG_STATUS, c->mcg), rdmsr(MSR_MCG_STATUS) == c->mcg);
		enum mce_verdict v = staged ? mce_handle(&r) : MCE_FATAL;
		uint64_t st = rdmsr(MSR_MC_STATUS(2)), mcg = rdmsr(MSR_MCG_STATUS);
		unstage();
		irq_restore(flags);
		if (!staged)
			KT_SKIP("MCi_STATUS / MCG_STATUS are not writable here");
		const char *why = v == MCE_FATAL ? mce_fatal_reason(me) : "";
		kt_diag("%-30s -> %s%s%s", c->name,
			v == MCE_RECOVERED ? "recovered" : v == MCE_KILL_TASK ? "kill the task" : "fatal",
			v == MCE_FATAL ? ": " : "", why);
		KT_EXPECT_EQ(v, c->want);
		if (c->want == MCE_FATAL && c->reason)
			KT_EXPECT_TRUE(strstr(why, c->reason));
		if (c->want != MCE_FATAL) {
			KT_EXPECT_EQ(st & MCI_STATUS_VAL, 0ull);
			KT_EXPECT_EQ(mcg, 0ull);
		} else if (c->status && (c->mcg & MCG_STATUS_MCIP)) {
			KT_EXPECT_EQ(st, c->status);	/* left for the panic report */
		}
	}
}

/* --- a staged #MC in a thread ------------------------------------------------- */

static void run_thread_mc(bool no_iret)
{
	unsigned me = this_cpu_id();
	struct mce_cpu_stats a, b;
	uint64_t out[16];
	uint64_t seq = nk_log_next_seq();

	mce_get_stats(me, &a);
	uint64_t flags = irq_save();
	bool staged = stage_mc(1, STATUS_SRAO, MCG_RIPV_MCIP, 0x12345000, 0x86);
	if (staged) {
		mce_test_force_no_iret = no_iret;
		mce_test_int18_regs(out);
		mce_test_force_no_iret = false;
	}
	uint64_t st = rdmsr(MSR_MC_STATUS(1)), mcg = rdmsr(MSR_MCG_STATUS);
	irq_restore(flags);
	if (!staged)
		KT_SKIP("MCi_STATUS / MCG_STATUS are not writable here");
	mce_get_stats(me, &b);
	unsigned bad = regs_changed(out);
	kt_diag("resumed %s: registers changed mask %#x, bank 1 %#lx, MCG_STATUS %#lx",
		no_iret ? "without IRET" : "by IRET", bad, (unsigned long)st, (unsigned long)mcg);
	KT_EXPECT_EQ(b.events - a.events, 1ul);
	KT_EXPECT_EQ(b.recovered - a.recovered, 1ul);
	KT_EXPECT_EQ(b.no_iret - a.no_iret, no_iret ? 1ul : 0ul);
	KT_EXPECT_EQ(b.fatal - a.fatal, 0ul);
	KT_EXPECT_EQ(bad, 0u);
	KT_EXPECT_EQ(st & MCI_STATUS_VAL, 0ull);
	KT_EXPECT_EQ(mcg & MCG_STATUS_MCIP, 0ull);
	KT_EXPECT_TRUE(logged_since(seq, "Bank 1: bd000000000000c0: uncorrected error, action optional"));
	KT_EXPECT_TRUE(logged_since(seq, "ADDR 12345000 MISC 86"));
	KT_EXPECT_TRUE(logged_since(seq, "Machine check recovered"));
	KT_EXPECT_EQ(stacks_check_canaries(me), 0);
}

KTEST(mce, recoverable_in_a_thread_resumes_by_iret)
{
	if (!need_mca())
		KT_SKIP("no machine-check architecture with 5 banks");
	run_thread_mc(false);
}

KTEST(mce, recoverable_in_a_thread_resumes_without_iret)
{
	if (!need_mca())
		KT_SKIP("no machine-check architecture with 5 banks");
	run_thread_mc(true);
}

/* --- an #MC inside an NMI handler, with an NMI latched behind it ------------- */

/*
 * The handler, on the first NMI of a run: sends itself a second NMI (NMIs
 * are blocked, so it waits in the latch), then takes the staged #MC.  If the
 * #MC returns by IRET, NMIs are unblocked inside this handler and the
 * latched NMI arrives at once: the entry must catch it as nested and run the
 * handler again after this one.  Without IRET it stays latched until this
 * NMI's own IRETQ.  Either way the handler may never run inside itself.
 */
static struct {
	atomic_uint pending;		/* self NMIs sent and not yet claimed */
	atomic_uint calls, depth, max_depth;
	volatile bool no_iret, staged;
	uint64_t out[16];
	uint64_t nested_during;		/* nmi_asm_nested seen right after the #MC */
} nm;

static int mc_nmi_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	if (atomic_load(&nm.pending) == 0)
		return NMI_DONE;
	atomic_fetch_sub(&nm.pending, 1);
	unsigned d = atomic_fetch_add(&nm.depth, 1) + 1;
	if (d > atomic_load(&nm.max_depth))
		atomic_store(&nm.max_depth, d);
	if (atomic_fetch_add(&nm.calls, 1) == 0) {
		atomic_fetch_add(&nm.pending, 1);
		os_send_nmi_self();
		nm.staged = stage_mc(3, STATUS_UCNA, MCG_RIPV_MCIP, 0, 0);
		if (nm.staged) {
			mce_test_force_no_iret = nm.no_iret;
			mce_test_int18_regs(nm.out);
			mce_test_force_no_iret = false;
		}
		nm.nested_during = this_cpu()->nmi_asm_nested;
	}
	atomic_fetch_sub(&nm.depth, 1);
	return NMI_HANDLED;
}

static void run_nmi_mc(bool no_iret)
{
	unsigned me = this_cpu_id();
	struct mce_cpu_stats a, b;

	atomic_store(&nm.pending, 0);
	atomic_store(&nm.calls, 0);
	atomic_store(&nm.depth, 0);
	atomic_store(&nm.max_depth, 0);
	nm.no_iret = no_iret;
	nm.staged = false;
	KT_ASSERT_EQ(nmi_register(NMI_LOCAL, "mce-test", mc_nmi_handler, NMI_FLAG_FIRST), NMI_OK);
	mce_get_stats(me, &a);
	uint64_t flags = irq_save();
	uint64_t nested0 = this_cpu()->nmi_asm_nested;
	atomic_store(&nm.pending, 1);
	os_send_nmi_self();
	uint64_t end = os_timestamp_ns() + 1000000000ull;
	while (atomic_load(&nm.calls) < 2 && os_timestamp_ns() < end)
		cpu_relax();
	uint64_t nested = this_cpu()->nmi_asm_nested - nested0;
	uint64_t nested_during = nm.nested_during - nested0;
	irq_restore(flags);
	nmi_unregister(NMI_LOCAL, "mce-test");
	unstage();
	if (!nm.staged)
		KT_SKIP("MCi_STATUS / MCG_STATUS are not writable here");
	mce_get_stats(me, &b);
	unsigned bad = regs_changed(nm.out);
	kt_diag("#MC in an NMI handler, resumed %s: handler calls %u (deepest %u), nested NMIs %lu "
		"(%lu right after the #MC), registers changed mask %#x",
		no_iret ? "without IRET" : "by IRET", atomic_load(&nm.calls),
		atomic_load(&nm.max_depth), (unsigned long)nested, (unsigned long)nested_during, bad);
	KT_EXPECT_EQ(atomic_load(&nm.calls), 2u);	/* the latched NMI was handled, once */
	KT_EXPECT_EQ(atomic_load(&nm.max_depth), 1u);	/* never inside the handler */
	KT_EXPECT_EQ(b.events - a.events, 1ul);
	KT_EXPECT_EQ(b.recovered - a.recovered, 1ul);
	KT_EXPECT_EQ(b.in_nmi - a.in_nmi, 1ul);
	KT_EXPECT_EQ(bad, 0u);
	if (no_iret) {
		/* NMIs stayed blocked: the second came after this one's IRETQ. */
		KT_EXPECT_EQ(nested_during, 0ul);
		KT_EXPECT_EQ(nested, 0ul);
		KT_EXPECT_EQ(b.no_iret - a.no_iret, 1ul);
	} else {
		/* The #MC's IRET let it in at once; the entry deferred it. */
		KT_EXPECT_EQ(nested_during, 1ul);
		KT_EXPECT_EQ(nested, 1ul);
		KT_EXPECT_EQ(b.no_iret - a.no_iret, 0ul);
	}
	KT_EXPECT_EQ(stacks_check_canaries(me), 0);
}

KTEST(mce, in_nmi_handler_by_iret_nested_nmi_deferred)
{
	if (!need_mca())
		KT_SKIP("no machine-check architecture with 5 banks");
	run_nmi_mc(false);
}

KTEST(mce, in_nmi_handler_without_iret_nmis_stay_blocked)
{
	if (!need_mca())
		KT_SKIP("no machine-check architecture with 5 banks");
	run_nmi_mc(true);
}

/*
 * Which way back mce_leave() picks: without IRET for every address of the
 * NMI entry code (the prologue above all), ending with a SWAPGS when the
 * interrupted code ran on the user's GS base; by IRET elsewhere.  With a GS
 * base one SWAPGS cannot restore (no kernel code makes one), IRET outside
 * the frame-copy windows and no way at all inside them.
 */
KTEST(mce, resume_mode_by_address)
{
	unsigned prologue = 0, wrong = 0;
	for (uint64_t a = (uint64_t)asm_nmi; a < (uint64_t)nmi_prologue_end; a++) {
		prologue++;
		wrong += mce_resume_mode(a, MCE_GS_PERCPU) != MCE_RESUME_NO_IRET;
		wrong += mce_resume_mode(a, MCE_GS_USER) != MCE_RESUME_NO_IRET_SWAPGS;
		wrong += mce_resume_mode(a, MCE_GS_OTHER) != MCE_RESUME_IMPOSSIBLE;
	}
	kt_diag("NMI prologue: %u addresses, %u wrong choices", prologue, wrong);
	KT_EXPECT_GT(prologue, 0u);
	KT_EXPECT_EQ(wrong, 0u);
	KT_EXPECT_EQ(mce_resume_mode((uint64_t)repeat_nmi, MCE_GS_PERCPU), MCE_RESUME_NO_IRET);
	KT_EXPECT_EQ(mce_resume_mode((uint64_t)repeat_nmi, MCE_GS_USER), MCE_RESUME_NO_IRET_SWAPGS);
	KT_EXPECT_EQ(mce_resume_mode((uint64_t)repeat_nmi, MCE_GS_OTHER), MCE_RESUME_IRET);
	KT_EXPECT_EQ(mce_resume_mode((uint64_t)nmi_final_iret, MCE_GS_PERCPU), MCE_RESUME_NO_IRET);
	KT_EXPECT_EQ(mce_resume_mode((uint64_t)nmi_final_iret, MCE_GS_OTHER), MCE_RESUME_IRET);
	/* nmi_from_user's SWAPGS: the ring-3 NMI's frame is not copied yet. */
	KT_EXPECT_EQ(mce_resume_mode((uint64_t)nmi_final_iret + 2, MCE_GS_USER), MCE_RESUME_NO_IRET_SWAPGS);
	KT_EXPECT_EQ(mce_resume_mode((uint64_t)nmi_final_iret + 2, MCE_GS_OTHER), MCE_RESUME_IMPOSSIBLE);
	KT_EXPECT_EQ(mce_resume_mode((uint64_t)do_nmi, MCE_GS_PERCPU), MCE_RESUME_IRET);
	KT_EXPECT_EQ(mce_resume_mode((uint64_t)mce_test_int18_regs, MCE_GS_USER), MCE_RESUME_IRET);
}

/* --- an #MC in the NMI prologue while the user's GS base is loaded --------- */

/*
 * The case the no-IRET return used to give up on: an NMI arrives in kernel
 * code that runs on the user's GS base (the SYSCALL entry before its SWAPGS,
 * the SYSRET path after its last one; the percpu pointer waits in
 * MSR_KERNEL_GS_BASE), and a machine check hits the NMI entry's first
 * instruction before the entry has saved its frame - what QEMU does when an
 * NMI and an #MC are pending together.  The paranoid entry has to load the
 * kernel GS base to run C; the way back must put the user's back without
 * IRET.
 *
 * Staged: the test loads a recognisable user GS base (SWAPGS with
 * MSR_KERNEL_GS_BASE = USER_GS_MARK, interrupts off) and executes `int $18`
 * with an uncorrected, no-action error staged.  Its #MC hook turns the
 * interrupted context into "asm_nmi, first instruction, with the CPU's NMI
 * frame on the stack": the frame (on a stack shaped like the NMI stack's top,
 * in a buffer, so that a real NMI on this CPU meanwhile cannot write over it)
 * says the NMI interrupted the instruction after `int $18`.  The hook claims
 * nothing, so the handler decides, and the #MC must resume at asm_nmi without
 * IRET and with the user GS base.  The NMI entry then runs that NMI as any
 * other: it finds the user GS base, SWAPGSes, its handler (below) sees the
 * percpu GS base and the user's one in MSR_KERNEL_GS_BASE, and its IRETQ
 * comes back after `int $18` with every register, CF and DF as they were and
 * the user GS base still loaded.
 */
#define USER_GS_MARK	0x00005a5a5a5a0000ull
#define TEST_RFLAGS_IF	(1ull << 9)
#define TEST_RFLAGS_TF	(1ull << 8)
#define TEST_RFLAGS_NT	(1ull << 14)
#define TEST_RFLAGS_RF	(1ull << 16)
#define FAKE_NMI_STACK	8192

static struct {
	uint64_t stack[FAKE_NMI_STACK / 8] __attribute__((aligned(16)));
	volatile bool armed;		/* the #MC hook and the NMI handler act */
	volatile uint64_t cont_rip;	/* where the staged NMI interrupted */
	atomic_uint nmi_calls;
	volatile uint64_t nmi_gs, nmi_kgs, nmi_ip;
	uint64_t out[16];
} ug;

static struct nmi_stack_top *fake_nmi_top(void)
{
	/* As nmi_stack_top_of(): `pad` 16-byte aligned, the struct at the very top. */
	return (struct nmi_stack_top *)((char *)ug.stack + sizeof(ug.stack) -
					sizeof(struct nmi_stack_top));
}

static bool ug_mc_hook(struct regs *r)
{
	if (!ug.armed)
		return false;
	struct nmi_stack_top *top = fake_nmi_top();
	/* What the CPU pushes delivering an NMI at r->rip, and the gate's RFLAGS. */
	top->hw = (struct iret_frame){ .rip = r->rip, .cs = r->cs, .rflags = r->rflags,
				       .rsp = r->rsp, .ss = r->ss };
	top->executing = 0;
	top->percpu = this_cpu();
	ug.cont_rip = r->rip;
	r->rip = (uint64_t)asm_nmi;
	r->rsp = (uint64_t)&top->hw;
	r->rflags &= ~(TEST_RFLAGS_IF | TEST_RFLAGS_TF | TEST_RFLAGS_NT | TEST_RFLAGS_RF);
	r->ss = 0;
	return false;			/* the machine-check handler decides */
}

static int ug_nmi_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	if (!ug.armed || f->ip != ug.cont_rip)
		return NMI_DONE;
	ug.nmi_gs = rdmsr(MSR_GS_BASE);
	ug.nmi_kgs = rdmsr(MSR_KERNEL_GS_BASE);
	ug.nmi_ip = f->ip;
	atomic_fetch_add(&ug.nmi_calls, 1);
	return NMI_HANDLED;
}

KTEST(mce, in_nmi_prologue_on_user_gs_resumes_without_iret)
{
	if (!need_mca())
		KT_SKIP("no machine-check architecture with 5 banks");
	unsigned me = this_cpu_id();
	uint64_t kgs_before = 0, gs_after = 0, kgs_after = 0, percpu = (uint64_t)this_cpu();
	struct mce_cpu_stats a, b;
	uint64_t seq = nk_log_next_seq();
	bool swapped_back = false;

	ug.armed = false;
	ug.cont_rip = 0;
	ug.nmi_gs = ug.nmi_kgs = ug.nmi_ip = 0;
	atomic_store(&ug.nmi_calls, 0);
	KT_ASSERT_EQ(trap_set_handler(X86_TRAP_MC, ug_mc_hook), 0);
	if (nmi_register(NMI_LOCAL, "mce-user-gs", ug_nmi_handler, NMI_FLAG_FIRST) != NMI_OK) {
		trap_clear_handler(X86_TRAP_MC, ug_mc_hook);
		KT_FAIL("cannot register the NMI handler");
		return;
	}
	mce_get_stats(me, &a);
	uint64_t flags = irq_save();
	bool staged = stage_mc(2, STATUS_UCNA, MCG_RIPV_MCIP, 0, 0);
	if (staged) {
		kgs_before = rdmsr(MSR_KERNEL_GS_BASE);
		wrmsr(MSR_KERNEL_GS_BASE, USER_GS_MARK);
		ug.armed = true;
		/* From here to the check below: no per-CPU data (GS is the user's). */
		__asm__ volatile("swapgs" ::: "memory");
		mce_test_int18_regs(ug.out);
		gs_after = rdmsr(MSR_GS_BASE);
		kgs_after = rdmsr(MSR_KERNEL_GS_BASE);
		/* Back to the kernel GS base by comparison: a broken return may have left it. */
		if (gs_after != percpu) {
			__asm__ volatile("swapgs" ::: "memory");
			swapped_back = true;
		}
		ug.armed = false;
		if (rdmsr(MSR_GS_BASE) != percpu)
			wrmsr(MSR_GS_BASE, percpu);
		wrmsr(MSR_KERNEL_GS_BASE, kgs_before);
	}
	uint64_t st = rdmsr(MSR_MC_STATUS(2)), mcg = rdmsr(MSR_MCG_STATUS);
	irq_restore(flags);
	nmi_unregister(NMI_LOCAL, "mce-user-gs");
	trap_clear_handler(X86_TRAP_MC, ug_mc_hook);
	unstage();
	if (!staged)
		KT_SKIP("MCi_STATUS / MCG_STATUS are not writable here");
	mce_get_stats(me, &b);
	unsigned bad = regs_changed(ug.out);
	kt_diag("#MC at asm_nmi on the user GS base: resumed with GS base %#lx, KERNEL_GS_BASE %#lx "
		"(%s); the NMI ran %u time(s), saw GS base %#lx and KERNEL_GS_BASE %#lx; "
		"registers changed mask %#x; no-IRET %lu, fatal %lu",
		(unsigned long)gs_after, (unsigned long)kgs_after,
		swapped_back ? "user GS" : "NOT the user's", atomic_load(&ug.nmi_calls),
		(unsigned long)ug.nmi_gs, (unsigned long)ug.nmi_kgs, bad,
		(unsigned long)(b.no_iret - a.no_iret), (unsigned long)(b.fatal - a.fatal));
	KT_EXPECT_EQ(gs_after, USER_GS_MARK);		/* the user GS base came back */
	KT_EXPECT_EQ(kgs_after, percpu);		/* and the percpu pointer waits in KERNEL_GS */
	KT_EXPECT_EQ(atomic_load(&ug.nmi_calls), 1u);	/* the NMI entry ran from its first instruction */
	KT_EXPECT_EQ(ug.nmi_gs, percpu);
	KT_EXPECT_EQ(ug.nmi_kgs, USER_GS_MARK);
	KT_EXPECT_EQ(bad, 0u);
	KT_EXPECT_EQ(b.events - a.events, 1ul);
	KT_EXPECT_EQ(b.recovered - a.recovered, 1ul);
	KT_EXPECT_EQ(b.in_nmi - a.in_nmi, 1ul);
	KT_EXPECT_EQ(b.no_iret - a.no_iret, 1ul);
	KT_EXPECT_EQ(b.fatal - a.fatal, 0ul);
	KT_EXPECT_EQ(st & MCI_STATUS_VAL, 0ull);
	KT_EXPECT_EQ(mcg & MCG_STATUS_MCIP, 0ull);
	KT_EXPECT_TRUE(logged_since(seq, "Machine check recovered"));
	KT_EXPECT_EQ(stacks_check_canaries(me), 0);
}

/* --- machine checks from QEMU ------------------------------------------------ */

struct injection {
	const char *tag;	/* the scenario's trigger: "mce-test: inject TAG" */
	unsigned cpu, bank;
	bool corrected;		/* no #MC: found by mce_poll() */
	const char *expect;	/* logged */
};

static const struct injection injections[] = {
	{ "A", 0, 1, false, "Bank 1: b000000000000000: uncorrected error, no action required" },
	{ "B", 1, 2, false, "ADDR 12345000 MISC 86" },
	{ "C", 0, 3, false, "Bank 3: b000000000000000" },	/* a second #MC on CPU 0 */
	{ "D", 0, 4, true, "Bank 4: 9000000000000000: corrected error" },
};

static volatile unsigned poll_found;

static void poll_cpu0(void *arg)
{
	(void)arg;
	poll_found = mce_poll();
}

/* Wait up to 15 s for `cpu`'s #MC count (or CPU 0's poll) to move. */
static bool wait_injection(const struct injection *in, const struct mce_cpu_stats *before)
{
	uint64_t end = os_timestamp_ns() + 15000000000ull;
	while (os_timestamp_ns() < end) {
		if (in->corrected) {
			struct task *t = task_create_kernel("mce-poll", poll_cpu0, NULL, 0);
			if (!t)
				return false;
			task_wait(t, NULL);
			if (poll_found)
				return true;
		} else {
			struct mce_cpu_stats now;
			mce_get_stats(in->cpu, &now);
			if (now.events != before->events)
				return true;
		}
		sleep_ms(20);
	}
	return false;
}

KTEST(mce, qmp_injected)
{
	if (!mce_test_qmp)
		KT_SKIP("needs machine checks injected by the scenario (mce_test_qmp=1)");
	if (!need_mca())
		KT_SKIP("no machine-check architecture with 5 banks");
	if (os_cpu_count() < 2 || !os_cpu_online(1))
		KT_SKIP("needs two CPUs");
	for (unsigned i = 0; i < sizeof(injections) / sizeof(injections[0]); i++) {
		const struct injection *in = &injections[i];
		struct mce_cpu_stats a, b;
		uint64_t seq = nk_log_next_seq();
		mce_get_stats(in->cpu, &a);
		pr_info("mce-test: inject %s (CPU %u bank %u)\n", in->tag, in->cpu, in->bank);
		bool came = wait_injection(in, &a);
		mce_get_stats(in->cpu, &b);
		kt_diag("injection %s on CPU %u: %s; #MC %lu -> %lu, recovered %lu -> %lu, corrected %lu -> %lu",
			in->tag, in->cpu, came ? "handled" : "NOT SEEN in 15 s",
			(unsigned long)a.events, (unsigned long)b.events,
			(unsigned long)a.recovered, (unsigned long)b.recovered,
			(unsigned long)a.corrected, (unsigned long)b.corrected);
		KT_EXPECT_TRUE(came);
		if (in->corrected) {
			KT_EXPECT_EQ(b.events - a.events, 0ul);
			KT_EXPECT_EQ(b.corrected - a.corrected, 1ul);
		} else {
			KT_EXPECT_EQ(b.events - a.events, 1ul);
			KT_EXPECT_EQ(b.recovered - a.recovered, 1ul);
		}
		KT_EXPECT_EQ(b.fatal - a.fatal, 0ul);
		KT_EXPECT_TRUE(logged_since(seq, in->expect));
	}
	/* The counters, as the shell shows them (the scenario checks the rows). */
	shell_execute("mce");
}
