/*
 * nmi_tests.c: in-kernel tests of the NMI entry (suite "nmi").  The central
 * one plants an int3 at every instruction where a nested NMI can arrive
 * (list generated at build time: tools/gen-nmi-boundaries), lets the #BP
 * handler send a self-NMI and IRET - which unblocks NMIs exactly as a real
 * exception inside an NMI handler does - so the nested NMI arrives precisely
 * at that instruction, and checks that nothing was lost, doubled or damaged.
 */
#include <stdatomic.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/gdt.h>
#include <arch/nmi.h>
#include <arch/nmi_test.h>
#include <arch/percpu.h>
#include <arch/traps.h>
#include <kernel/ktest.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

extern const uint64_t nmi_boundary_count;
extern const uint64_t nmi_boundary_addr[];

static atomic_ulong test_pending;	/* test NMIs sent and not yet claimed */
static atomic_ulong test_claimed;	/* events the test handler claimed */
static atomic_ulong test_calls;		/* test handler invocations */
static volatile bool test_take_pf;	/* handler takes a recoverable #PF */
static volatile uint64_t first_rip;	/* RIP interrupted by the first NMI */
/*
 * The CPU under test.  Chain handlers run on every CPU; the others take NMIs
 * of their own meanwhile (their lost-NMI probes, for one), which a handler
 * that claimed them would count, and re-arm, as if they were the test's.
 */
static volatile unsigned test_cpu;

static bool on_test_cpu(void) { return os_cpu_id() == test_cpu; }

static volatile uint64_t bp_addr;	/* armed int3, 0 when none */
static volatile uint64_t db_addr;	/* armed DR0 breakpoint, 0 when none */
static uint8_t bp_orig;
static atomic_ulong bp_fired;

/* NMI context: counts and claims; the optional #PF unblocks NMIs like real code would. */
static int test_nmi_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	if (!on_test_cpu())
		return NMI_DONE;
	unsigned long n = atomic_exchange(&test_pending, 0);
	atomic_fetch_add(&test_calls, 1);
	atomic_fetch_add(&test_claimed, n);
	if (test_take_pf) {
		uint64_t v;
		(void)probe_read_u64((const void *)0x18, &v);	/* page 0 is unmapped */
	}
	return (int)n;
}

static void test_hook(struct regs *r)
{
	if (!first_rip)
		first_rip = r->rip;
}

static void send_counted_self_nmi(void)
{
	atomic_fetch_add(&test_pending, 1);
	lapic_send_nmi(this_cpu()->apic_id);
}

/* #BP hook (may run inside the NMI handler): disarm, rewind, send the nested NMI. */
static bool test_bp_handler(struct regs *r)
{
	uint64_t a = bp_addr;
	if (!a || r->rip - 1 != a)
		return false;
	text_poke_byte(a, bp_orig);
	bp_addr = 0;
	r->rip = a;
	atomic_fetch_add(&bp_fired, 1);
	send_counted_self_nmi();
	return true;	/* our IRET unblocks NMIs: the nested one lands at `a` */
}

/* #DB hook, on IST_DB (may run inside the NMI handler): disarm, send the nested NMI. */
static bool test_db_handler(struct regs *r)
{
	uint64_t a = db_addr;
	if (!a || r->rip != a || !(trap_debug_status() & 1))
		return false;
	write_dr7(0x400);	/* exactly one nested NMI; the fault does not re-fire */
	db_addr = 0;
	atomic_fetch_add(&bp_fired, 1);
	send_counted_self_nmi();
	return true;
}

static void nmi_test_never_called(void) { }

static void fill_ctx(struct nmi_test_ctx *c)
{
	for (int i = 0; i < NTC_SLOTS; i++)
		c->in[i] = 0x1111111111111111ull * (uint64_t)(i + 1) ^ 0x0123456789abcdefull;
	c->in[NTC_RBX] = lapic_base + LAPIC_ICR_LOW;
	c->in[NTC_RDX] = ICR_ASSERT | ICR_DM_NMI;
	/* CF, PF, AF, ZF, SF, OF set, IF clear, DF clear, reserved bit 1. */
	c->in[NTC_RFLAGS] = 0x8d7;
	for (int i = 0; i < NTC_SLOTS; i++)
		c->out[i] = 0;
}

static int ctx_mismatches(const struct nmi_test_ctx *c)
{
	int bad = 0;
	for (int i = 0; i < NTC_SLOTS; i++) {
		if (i == NTC_RDI)
			continue;	/* holds the ctx pointer by design */
		if (c->in[i] != c->out[i]) {
			kt_diag("register slot %d: before %#llx after %#llx", i,
				(unsigned long long)c->in[i], (unsigned long long)c->out[i]);
			bad++;
		}
	}
	return bad;
}

/*
 * Run the register-checking context, which sends one counted self-NMI from
 * inside its window (its ICR low write; the high half is set here).
 * wrong_gs: run it with the user GS base loaded, as kernel code between two
 * SWAPGSes does; the entry must SWAPGS.
 */
static void run_ctx_with_self_nmi(struct nmi_test_ctx *ctx, bool wrong_gs)
{
	fill_ctx(ctx);
	lapic_write(LAPIC_ICR_HIGH, this_cpu()->apic_id << ICR_DEST_SHIFT);
	atomic_fetch_add(&test_pending, 1);
	if (wrong_gs)
		__asm__ volatile("swapgs" ::: "memory");
	nmi_test_ctx_run(ctx);
	if (wrong_gs)
		__asm__ volatile("swapgs" ::: "memory");
}

/* Bounded by time (50 ms), and using no per-CPU data: GS may be swapped. */
static bool wait_claimed(unsigned long want)
{
	uint64_t deadline = os_timestamp_ns() + 50000000ull;
	while (atomic_load(&test_claimed) < want) {
		if (os_timestamp_ns() > deadline)
			return false;
		cpu_relax();
	}
	return true;
}

struct case_result {
	bool fired, ok;
};

/* One boundary: returns whether the nested NMI arrived there and every check held. */
/* Contexts a boundary is tried in, until one reaches it. */
enum {
	VARIANT_PLAIN = 0,
	VARIANT_WRONG_GS = 1,	/* interrupted code runs on the user GS base */
	VARIANT_NO_DR7 = 2,	/* no breakpoint armed: do_nmi's DR7 code skipped */
};

static struct case_result run_boundary(uint64_t addr, unsigned variant)
{
	bool wrong_gs = variant & VARIANT_WRONG_GS;
	struct case_result res = { false, false };
	struct nmi_test_ctx ctx;
	struct nmi_cpu_stats before, after;
	struct percpu *pc = this_cpu();
	unsigned cpu = pc->cpu;
	uint64_t nested0 = pc->nmi_asm_nested, repeat0 = pc->nmi_asm_in_repeat;
	bool in_repeat_region = addr >= (uint64_t)repeat_nmi && addr < (uint64_t)end_repeat_nmi;

	nmi_get_cpu_stats(cpu, &before);
	atomic_store(&test_claimed, 0);
	atomic_store(&test_calls, 0);
	atomic_store(&bp_fired, 0);
	first_rip = 0;
	/* An enabled breakpoint on code never run, so do_nmi's DR7 save/restore runs. */
	write_dr7(0x400);
	if (!(variant & VARIANT_NO_DR7))
		hw_breakpoint_exec(1, (uint64_t)nmi_test_never_called);
	/*
	 * Assembly: a hardware breakpoint, whose #DB runs on its own IST stack
	 * (an int3 there could overwrite the saved frame: nmi_int3_forbidden()).
	 * do_nmi(): an int3, because DR7 is parked while the handler runs.
	 */
	bool in_asm = addr >= (uint64_t)asm_nmi && addr < (uint64_t)nmi_entry_end;
	/*
	 * For the assembly, the handler takes no exception: NMIs stay blocked
	 * until the #DB's own IRET, so the nested NMI lands exactly at `addr`
	 * (an NMI taken inside the #DB handler in the exit tail is the hazard
	 * nmi_exit_or_repeat() documents).  In do_nmi() the handler's #PF is
	 * wanted: it makes CR2 change, so the CR2 restore runs.
	 */
	test_take_pf = !in_asm;
	if (in_asm) {
		db_addr = addr;
		if (nmi_test_breakpoint(0, addr) != 0) {
			kt_diag("boundary %#llx: hardware breakpoint refused", (unsigned long long)addr);
			db_addr = 0;
			return res;
		}
	} else {
		if (text_poke_int3(addr, &bp_orig) != 0) {
			kt_diag("boundary %#llx: int3 refused", (unsigned long long)addr);
			return res;
		}
		bp_addr = addr;
	}

	run_ctx_with_self_nmi(&ctx, wrong_gs);
	/*
	 * The nested NMI is sent from inside the first NMI, so by the time the
	 * context has returned the breakpoint has fired or never will.
	 */
	bool arrived = wait_claimed(atomic_load(&bp_fired) ? 2 : 1);

	write_dr7(0x400);
	db_addr = 0;
	if (bp_addr) {		/* never reached: put the byte back */
		text_poke_byte(addr, bp_orig);
		bp_addr = 0;
	}
	nmi_get_cpu_stats(cpu, &after);

	res.fired = atomic_load(&bp_fired) == 1;
	int bad = ctx_mismatches(&ctx);
	unsigned long calls = atomic_load(&test_calls);
	bool ok = res.fired && arrived && bad == 0;
	ok &= atomic_load(&test_claimed) == 2;			/* each NMI sent handled... */
	ok &= calls >= 1 && calls <= 2;				/* ...never twice for one */
	ok &= after.unknown == before.unknown;
	ok &= first_rip >= (uint64_t)nmi_test_ctx_window && first_rip <= (uint64_t)nmi_test_ctx_window_end;
	ok &= stacks_check_canaries(cpu) == 0;
	if (in_repeat_region)
		ok &= pc->nmi_asm_in_repeat == repeat0 + 1 && pc->nmi_asm_nested == nested0;
	else
		ok &= pc->nmi_asm_nested == nested0 + 1 && pc->nmi_asm_in_repeat == repeat0;
	if (!ok && res.fired)
		kt_diag("boundary %#llx: fired=%d arrived=%d claimed=%lu calls=%lu unknown+%llu "
			"nested+%llu in_repeat+%llu first_rip=%#llx regs_bad=%d",
			(unsigned long long)addr, res.fired, arrived, atomic_load(&test_claimed), calls,
			(unsigned long long)(after.unknown - before.unknown),
			(unsigned long long)(pc->nmi_asm_nested - nested0),
			(unsigned long long)(pc->nmi_asm_in_repeat - repeat0),
			(unsigned long long)first_rip, bad);
	res.ok = ok;
	return res;
}

static bool install_test_handlers(void)
{
	test_cpu = this_cpu_id();
	atomic_store(&test_pending, 0);
	if (nmi_register(NMI_LOCAL, "nmitest", test_nmi_handler, 0) != 0)
		return false;
	if (trap_set_handler(3, test_bp_handler) != 0) {
		nmi_unregister(NMI_LOCAL, "nmitest");
		return false;
	}
	if (trap_set_handler(1, test_db_handler) != 0) {
		trap_clear_handler(3, test_bp_handler);
		nmi_unregister(NMI_LOCAL, "nmitest");
		return false;
	}
	return true;
}

static void remove_test_handlers(void)
{
	trap_clear_handler(1, test_db_handler);
	trap_clear_handler(3, test_bp_handler);
	nmi_unregister(NMI_LOCAL, "nmitest");
	nmi_test_hook = 0;
	test_take_pf = false;
}

KTEST(nmi, nested_nmi_at_every_boundary)
{
#ifdef NMI_SELF_IRET
	/* Every NMI runs unblocked in that build: the breakpoint could not be the first IRET. */
	KT_SKIP("built with NMI_SELF_IRET: NMIs are never blocked in the handler");
#endif
	KT_ASSERT_TRUE(nmi_boundary_count > 0);
	KT_ASSERT_TRUE(install_test_handlers());
	uint64_t flags = irq_save();
	test_take_pf = true;
	nmi_test_hook = test_hook;
	uint64_t covered = 0;
	for (uint64_t i = 0; i < nmi_boundary_count; i++) {
		static const unsigned variants[] = { VARIANT_PLAIN, VARIANT_WRONG_GS, VARIANT_NO_DR7 };
		struct case_result r = { false, false };
		for (unsigned v = 0; v < 3 && !r.fired; v++)
			r = run_boundary(nmi_boundary_addr[i], variants[v]);
		if (r.ok)
			covered++;
		else if (!r.fired)
			kt_diag("boundary %#llx: never reached in any variant",
				(unsigned long long)nmi_boundary_addr[i]);
	}
	remove_test_handlers();
	irq_restore(flags);
	kt_diag("nested-nmi boundaries covered: %llu/%llu",
		(unsigned long long)covered, (unsigned long long)nmi_boundary_count);
	KT_EXPECT_EQ(covered, nmi_boundary_count);
}

KTEST(nmi, prologue_refuses_breakpoints)
{
	uint8_t orig;
	uint64_t refused = 0, total = 0;
	for (uint64_t a = (uint64_t)asm_nmi; a < (uint64_t)nmi_prologue_end; a++, total++)
		if (text_poke_int3(a, &orig) != 0)
			refused++;
	KT_EXPECT_EQ(refused, total);
	for (uint64_t a = (uint64_t)asm_nmi; a < (uint64_t)nmi_prologue_end; a++)
		KT_EXPECT_TRUE(nmi_breakpoint_forbidden(a));
	/* Repeat region and exit tail: both kinds refused to ordinary users. */
	KT_EXPECT_NE(text_poke_int3((uint64_t)repeat_nmi, &orig), 0);
	KT_EXPECT_NE(text_poke_int3((uint64_t)nmi_final_iret, &orig), 0);
	KT_EXPECT_NE(hw_breakpoint_exec(0, (uint64_t)repeat_nmi), 0);
	KT_EXPECT_NE(hw_breakpoint_exec(0, (uint64_t)nmi_final_iret), 0);
	KT_EXPECT_NE(hw_breakpoint_exec(0, (uint64_t)asm_nmi), 0);
	/*
	 * The body is fair game for both.  Asked, not poked: an int3 really
	 * written into do_nmi would be hit by any NMI on any CPU in the
	 * window (a lost-NMI probe, a watchdog NMI) with nothing to handle it.
	 */
	KT_EXPECT_FALSE(nmi_int3_forbidden((uint64_t)do_nmi));
	KT_EXPECT_FALSE(nmi_breakpoint_forbidden((uint64_t)do_nmi));
	KT_EXPECT_FALSE(nmi_exit_or_repeat((uint64_t)do_nmi));
}

KTEST(nmi, self_nmi_round_trip_restores_context)
{
	struct nmi_test_ctx ctx;
	KT_ASSERT_TRUE(install_test_handlers());
	uint64_t flags = irq_save();
	atomic_store(&test_claimed, 0);
	run_ctx_with_self_nmi(&ctx, false);
	bool arrived = wait_claimed(1);
	remove_test_handlers();
	irq_restore(flags);
	KT_EXPECT_TRUE(arrived);
	KT_EXPECT_EQ(ctx_mismatches(&ctx), 0);
	KT_EXPECT_EQ(stacks_check_canaries(this_cpu_id()), 0);
}

/* CR2 of an interrupted #PF survives a #PF inside the NMI handler. */
KTEST(nmi, cr2_preserved_across_handler_fault)
{
	KT_ASSERT_TRUE(install_test_handlers());
	uint64_t flags = irq_save();
	test_take_pf = true;
	atomic_store(&test_claimed, 0);
	write_cr2(0x5a5a5000);
	send_counted_self_nmi();
	bool arrived = wait_claimed(1);
	uint64_t cr2 = read_cr2();
	remove_test_handlers();
	irq_restore(flags);
	KT_EXPECT_TRUE(arrived);
	KT_EXPECT_EQ(cr2, 0x5a5a5000ull);
}

static volatile uint64_t dr7_seen_in_handler;

static int dr7_probe_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	if (!on_test_cpu() || atomic_exchange(&test_pending, 0) == 0)
		return 0;
	dr7_seen_in_handler = read_dr7();
	atomic_fetch_add(&test_claimed, 1);
	return 1;
}

KTEST(nmi, dr7_disabled_in_handler_and_restored)
{
	test_cpu = this_cpu_id();
	KT_ASSERT_TRUE(nmi_register(NMI_LOCAL, "dr7probe", dr7_probe_handler, 0) == 0);
	uint64_t flags = irq_save();
	atomic_store(&test_claimed, 0);
	write_dr(1, (uint64_t)nmi_test_never_called);
	uint64_t armed = 0x400 | (1u << 2);
	write_dr7(armed);
	send_counted_self_nmi();
	bool arrived = wait_claimed(1);
	uint64_t after = read_dr7();
	write_dr7(0x400);
	irq_restore(flags);
	nmi_unregister(NMI_LOCAL, "dr7probe");
	KT_EXPECT_TRUE(arrived);
	KT_EXPECT_EQ(dr7_seen_in_handler & 0xff, 0ull);
	KT_EXPECT_EQ(after & 0xff, armed & 0xff);
}

/* A handler that sends itself 10 NMIs sees exactly one more (the latch holds one). */
static atomic_ulong burst_calls;
static atomic_bool burst_active;

static int burst_handler(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	if (!atomic_load(&burst_active) || !on_test_cpu())
		return 0;
	if (atomic_fetch_add(&burst_calls, 1) == 0)
		for (int i = 0; i < 10; i++)
			lapic_send_nmi(this_cpu()->apic_id);
	return 1;
}

KTEST(nmi, ten_self_nmis_in_handler_give_one_more)
{
#ifdef NMI_SELF_IRET
	KT_SKIP("built with NMI_SELF_IRET: NMIs are not latched while the handler runs");
#endif
	unsigned long calls;
	atomic_store(&burst_calls, 0);
	test_cpu = this_cpu_id();
	KT_ASSERT_TRUE(nmi_register(NMI_LOCAL, "burst", burst_handler, 0) == 0);
	uint64_t flags = irq_save();
	atomic_store(&burst_active, true);
	lapic_send_nmi(this_cpu()->apic_id);
	for (int i = 0; i < 200000; i++)
		cpu_relax();
	atomic_store(&burst_active, false);
	irq_restore(flags);
	nmi_unregister(NMI_LOCAL, "burst");
	/* The first call, plus exactly one latched NMI out of the ten sent. */
	calls = atomic_load(&burst_calls);
	KT_EXPECT_EQ(calls, 2ul);
}
