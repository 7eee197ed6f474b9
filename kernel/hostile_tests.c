/*
 * hostile_tests.c: KTAP suite "hostile".  Ring-3 tasks with every register
 * state user mode can choose - RSP in the NMI stack, in the other IST stacks,
 * at kernel data, non-canonical, misaligned; TF, DF, AC; null segments - run
 * on one CPU while the other CPUs rain NMIs on it (the tagged storm of
 * storm_tests.c), and raise int3, int1, into and ud2.  docs/threat-model.md
 * lists what each case defends against.
 *
 * Every case checks, besides its own outcome (killed with the right message
 * and exit code, or went on and exited 0):
 *  - at every NMI on that CPU (nmi_test_hook): the handler runs on the
 *    percpu GS base with DF and IF clear; an NMI from ring 3 interrupted
 *    .utext code with user CS/SS and the user's GS base loaded (the kernel
 *    one was in MSR_KERNEL_GS_BASE), and runs on the task's kernel stack; an
 *    NMI from ring 0 never interrupted .utext code;
 *  - kernel data that hostile RSPs point at, the parts of the NMI / #DB /
 *    #MC / #DF stacks below the frames, the percpu slot on top of the NMI
 *    stack, the TSS IST pointers and every stack canary are unchanged;
 *  - the rain's NMIs were all claimed, and none was reported unknown.
 *
 * Forced windows.  QEMU's TCG takes interrupts only between translated
 * blocks, so an NMI never lands between the instructions of the SYSCALL
 * entry or right before SYSRETQ by chance.  To put one exactly there, the
 * test's NMI hook takes an NMI that interrupted ring 3 at
 * hostile_window_spin, rewrites the frame that the NMI's user-path IRETQ
 * will pop so that it "returns" to the window instruction in ring 0 with the
 * state the kernel has there (kernel CS, the user's RSP, the user's GS base,
 * RCX/R11 as SYSCALL leaves them), and sends itself an NMI first.  NMIs are
 * blocked until that IRETQ, so the new NMI is taken exactly at the window
 * instruction, before it executes; the kernel then runs on from there as if
 * ring 3 had made the system call, and returns to hostile_window_resume.
 */
#include <stdatomic.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/gdt.h>
#include <arch/nmi.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <arch/syscall.h>
#include <arch/traps.h>
#include <kernel/hostile.h>
#include <kernel/ktest.h>
#include <kernel/sched.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

extern char __utext_start[], __utext_end[];

static uint64_t hostile_gap_us = 20;
NK_PARAM_UINT("hostile_gap_us", hostile_gap_us, 0, 1000000,
	      "hostile.*: each other CPU sends the hostile task's CPU an NMI at most this often");
static uint64_t hostile_case_ms = 3000;
NK_PARAM_UINT("hostile_case_ms", hostile_case_ms, 100, 600000,
	      "hostile.*: longest a case waits for its NMIs before it stops the task");
static bool hostile_external_nmis;
NK_PARAM_BOOL("hostile_external_nmis", hostile_external_nmis,
	      "hostile.*: NMIs also come from outside (QMP inject-nmi); count unknown NMIs instead of failing");

#define RFLAGS_FIXED1	(1ul << 1)
#define CR4_SMAP	(1ul << 21)

/* nmikit_test ops of hostile_loop's R12. */
enum {
	OP_NOP = 1,		/* a plain call: back by SYSRET */
	OP_FORCE_IRET,		/* RCX != RIP on the way out: back by IRETQ */
};

enum window { W_NONE, W_SYSCALL_ENTRY, W_SYSRETQ, W_IRETQ, W_COUNT };
static const char *const window_name[W_COUNT] = {
	"none", "syscall_entry", "sysretq", "user_return_iret's iretq",
};

/*
 * What the NMI hook and the other hooks see on the target CPU.  The counters
 * are written by the target CPU's hooks only (NMI or exception context on
 * that CPU, which do not nest into each other for the same counter).
 */
static struct {
	unsigned cpu;
	uint64_t percpu;		/* &percpu_area[cpu]: its GS base */
	uint64_t rsp;			/* the running case's hostile RSP */
	volatile unsigned window;	/* forced window of the running case */
	uint64_t window_addr[W_COUNT];
	volatile uint64_t landing;	/* window address an NMI is owed at, 0: none */
	struct iret_frame frame;	/* W_IRETQ: the frame its IRETQ pops */

	uint64_t nmis, user, user_at_rsp, kernel, natural_entry;
	uint64_t rewrites, landings, landing_bad;
	uint64_t sys_calls, sys_flags_bad;
	uint64_t faults[X86_EXCEPTIONS], fault_rsp_bad;

	uint64_t violations;
	const char *first_what;		/* the first violation, for the report */
	uint64_t first_rip, first_rsp, first_cs;
} hs;

/* NMI / exception context: counters only. */
static void violation(const char *what, const struct regs *r)
{
	if (!hs.violations++) {
		hs.first_what = what;
		hs.first_rip = r->rip;
		hs.first_rsp = r->rsp;
		hs.first_cs = r->cs;
	}
}

static bool is_percpu(uint64_t v)
{
	uint64_t base = (uint64_t)percpu_area;
	return v >= base && v < base + sizeof(percpu_area) && (v - base) % sizeof(struct percpu) == 0;
}

static bool in_utext(uint64_t rip)
{
	return rip >= (uint64_t)__utext_start && rip < (uint64_t)__utext_end;
}

/*
 * NMI context, user path: NMIs are blocked until this NMI's IRETQ, which pops
 * exactly *r.  Turn that return into a return to the window instruction in
 * ring 0, and make an NMI wait in the latch for it (see the top of the file).
 */
static void rewrite_to_window(struct regs *r)
{
	unsigned w = hs.window;
	uint64_t addr = hs.window_addr[w];
	uint64_t user_flags = r->rflags;

	r->rcx = (uint64_t)hostile_window_resume;	/* as SYSCALL leaves them */
	r->r11 = user_flags;
	if (w == W_SYSCALL_ENTRY)
		r->rax = SYS_GETPID;
	if (w == W_IRETQ) {
		hs.frame = (struct iret_frame){
			.rip = (uint64_t)hostile_window_resume, .cs = SEL_UCODE,
			.rflags = user_flags, .rsp = r->rsp, .ss = SEL_UDATA,
		};
		r->rsp = (uint64_t)&hs.frame;
	}
	r->rip = addr;
	r->cs = SEL_KCODE;
	r->ss = SEL_KDATA;
	r->rflags = RFLAGS_FIXED1;	/* interrupts off, as the kernel has them there */
	hs.landing = addr;
	hs.rewrites++;
	storm_send(hs.cpu);		/* held in the latch until the IRETQ */
}

/*
 * nmi_test_hook: NMI context on every CPU.  Safe: MSR reads, loads, and
 * counters of the target CPU written only here; storm_send() is NMI-safe.
 * It identifies the target CPU by its GS base, which the NMI entry must
 * have set to the percpu area whatever the interrupted code had.
 */
static void hostile_nmi_hook(struct regs *r)
{
	uint64_t gs = rdmsr(MSR_GS_BASE);
	if (gs != hs.percpu) {
		if (!is_percpu(gs))
			violation("NMI handler running without a percpu GS base", r);
		return;
	}
	hs.nmis++;
	uint64_t fl = read_rflags();
	if ((fl & (RFLAGS_DF | RFLAGS_IF)) || ((fl & RFLAGS_AC) && (read_cr4() & CR4_SMAP)))
		violation("NMI handler runs with DF, IF or (with SMAP) AC set", r);

	if (regs_from_user(r)) {
		hs.user++;
		if (!in_utext(r->rip))
			violation("ring 3 was running outside .utext", r);
		if (r->cs != SEL_UCODE || r->ss != SEL_UDATA)
			violation("ring 3 had a CS or SS other than the user selectors", r);
		if (is_percpu(rdmsr(MSR_KERNEL_GS_BASE)))
			violation("ring 3 was running with the kernel GS base", r);
		if (!on_task_stack(task_current(), read_rsp()))
			violation("NMI from ring 3 not handled on the task's kernel stack", r);
		if (r->rsp == hs.rsp)
			hs.user_at_rsp++;
		if (hs.window != W_NONE && !hs.landing &&
		    r->rip >= (uint64_t)hostile_window_spin && r->rip < (uint64_t)hostile_window_spin_end)
			rewrite_to_window(r);
		return;
	}
	hs.kernel++;
	if (in_utext(r->rip))
		violation("user code was running in ring 0", r);
	if (hs.landing && r->rip == hs.landing) {
		uint64_t want = hs.window == W_IRETQ ? (uint64_t)&hs.frame : hs.rsp;
		hs.landings++;
		/* The user's GS base was loaded there: the entry swapped it into MSR_KERNEL_GS_BASE. */
		if (r->rsp != want || r->cs != SEL_KCODE || is_percpu(rdmsr(MSR_KERNEL_GS_BASE))) {
			hs.landing_bad++;
			violation("NMI at a window with the wrong RSP, CS or GS", r);
		}
		hs.landing = 0;
	} else if (r->rip == (uint64_t)syscall_entry && r->rsp == hs.rsp) {
		hs.natural_entry++;	/* a rain NMI that TCG delivered right after SYSCALL */
	}
}

/* The nmikit_test system call of hostile_loop (R12).  Kernel, interrupts on. */
static long hostile_syscall_hook(struct regs *r)
{
	/* MSR_FMASK cleared DF and AC on SYSCALL, whatever ring 3 had. */
	if (read_rflags() & (RFLAGS_DF | RFLAGS_AC))
		hs.sys_flags_bad++;
	hs.sys_calls++;
	switch (r->rdi) {
	case OP_NOP:
		return 0;
	case OP_FORCE_IRET:
		r->rcx = 0;
		return 0;
	}
	return -SYSCALL_EINVAL;
}

/*
 * Task fault handler of the "goes on" cases: let the exception go (trap
 * kinds return after the instruction; a #UD from into or ud2 is stepped
 * over).  Exception context on the task's kernel stack.
 */
static bool hostile_fault(struct task *t, struct regs *r, const char *what)
{
	(void)t;
	(void)what;
	if (r->vector < X86_EXCEPTIONS)
		hs.faults[r->vector]++;
	/* Every exception entry executes CLD, whatever ring 3 left in DF. */
	if (read_rflags() & RFLAGS_DF)
		violation("exception handler runs with DF set", r);
	uint64_t scratch = (uint64_t)hostile_status.stack;
	if (r->rsp != hs.rsp && !(r->rsp >= scratch && r->rsp <= scratch + sizeof(hostile_status.stack)))
		hs.fault_rsp_bad++;
	switch (r->vector) {
	case X86_TRAP_BP:
	case X86_TRAP_DB:
		return true;
	case X86_TRAP_UD: {
		const uint8_t *ip = (const uint8_t *)r->rip;
		/* into; or icebp, which QEMU's TCG does not implement. */
		if (ip[0] == 0xce || ip[0] == 0xf1) {
			r->rip += 1;
			return true;
		}
		if (ip[0] == 0x0f && ip[1] == 0x0b) {
			r->rip += 2;
			return true;
		}
		return false;
	}
	}
	return false;
}

/* --- what must not change ---------------------------------------------------- */

/* Kernel data that hostile RSPs point into. */
static uint64_t hostile_sentinel[512];
#define KEEP_NMI	4096	/* the top of the NMI stack: frames and do_nmi's own stack */
#define KEEP_IST	2048	/* the top of the #DB, #MC, #DF stacks */

static uint64_t pattern(const uint64_t *p)
{
	return 0x686f7374696c6521ull ^ ((uint64_t)p * 0x9e3779b97f4a7c15ull);
}

struct region {
	const char *name;
	uint64_t *lo, *hi;
};

static unsigned regions(struct region *r, unsigned cpu)
{
	struct cpu_stacks *s = &cpu_stacks[cpu];
	/* 8 bytes above each base: the canary stays the canary's. */
	r[0] = (struct region){ "NMI stack", (uint64_t *)(s->nmi + 8), (uint64_t *)(s->nmi + NMI_STACK_SIZE - KEEP_NMI) };
	r[1] = (struct region){ "#DB stack", (uint64_t *)(s->db + 8), (uint64_t *)(s->db + DB_STACK_SIZE - KEEP_IST) };
	r[2] = (struct region){ "#MC stack", (uint64_t *)(s->mc + 8), (uint64_t *)(s->mc + MC_STACK_SIZE - KEEP_IST) };
	r[3] = (struct region){ "#DF stack", (uint64_t *)(s->df + 8), (uint64_t *)(s->df + DF_STACK_SIZE - KEEP_IST) };
	r[4] = (struct region){ "kernel data", hostile_sentinel, hostile_sentinel + NK_ARRAY_SIZE(hostile_sentinel) };
	return 5;
}

struct snapshot {
	struct percpu pc;
	uint64_t ist[4];
	struct percpu *nmi_top_percpu;
};

static void fill_regions(unsigned cpu, struct snapshot *snap)
{
	struct region r[5];
	unsigned n = regions(r, cpu);
	for (unsigned i = 0; i < n; i++)
		for (uint64_t *p = r[i].lo; p < r[i].hi; p++)
			*(volatile uint64_t *)p = pattern(p);
	snap->pc = percpu_area[cpu];
	for (int i = 0; i < 4; i++)
		snap->ist[i] = ist_top(cpu, i + 1);
	snap->nmi_top_percpu = nmi_stack_top_of(cpu)->percpu;
}

/* Number of damaged words/fields; each damaged region named once. */
static unsigned check_regions(unsigned cpu, const struct snapshot *snap)
{
	struct region r[5];
	unsigned n = regions(r, cpu), bad = 0;
	for (unsigned i = 0; i < n; i++) {
		unsigned here = 0;
		uint64_t *first = NULL;
		for (uint64_t *p = r[i].lo; p < r[i].hi; p++)
			if (*(volatile uint64_t *)p != pattern(p)) {
				if (!first)
					first = p;
				here++;
			}
		if (here)
			kt_diag("%s of CPU %u: %u words changed, first at %#lx", r[i].name, cpu, here,
				(unsigned long)first);
		bad += here;
	}
	const struct percpu *pc = &percpu_area[cpu];
	if (pc->self != snap->pc.self || pc->cpu != snap->pc.cpu || pc->apic_id != snap->pc.apic_id ||
	    pc->tss != snap->pc.tss || pc->stacks != snap->pc.stacks || pc->online != snap->pc.online) {
		kt_diag("percpu of CPU %u changed", cpu);
		bad++;
	}
	for (int i = 0; i < 4; i++)
		if (ist_top(cpu, i + 1) != snap->ist[i]) {
			kt_diag("TSS IST%d of CPU %u changed", i + 1, cpu);
			bad++;
		}
	if (nmi_stack_top_of(cpu)->percpu != snap->nmi_top_percpu) {
		kt_diag("percpu slot on top of CPU %u's NMI stack changed", cpu);
		bad++;
	}
	for (unsigned c = 0; c < cpus_possible; c++)
		if (cpu_data(c)->online && stacks_check_canaries(c)) {
			kt_diag("stack canary damaged on CPU %u", c);
			bad++;
		}
	return bad;
}

/* --- the rain ------------------------------------------------------------------ */

static unsigned other_cpus;	/* CPUs that send */
static struct nmi_cpu_stats rain_before;
static uint64_t rain_nested0;

static unsigned pick_target(void)
{
	unsigned t = 0;
	for (unsigned c = 0; c < cpus_possible && c < STORM_MAX_CPUS; c++)
		if (cpu_data(c)->online)
			t = c;
	return t;
}

static bool find_bytes(uint64_t from, uint64_t len, const uint8_t *pat, unsigned n, uint64_t *at)
{
	for (uint64_t a = from; a + n <= from + len; a++) {
		unsigned i = 0;
		while (i < n && ((const uint8_t *)a)[i] == pat[i])
			i++;
		if (i == n) {
			*at = a;
			return true;
		}
	}
	return false;
}

/* Hooks in, the target chosen, the rain started.  False (after a KT_FAIL) when it could not. */
static bool rain_start(void)
{
	static const uint8_t swapgs_sysretq[] = { 0x0f, 0x01, 0xf8, 0x48, 0x0f, 0x07 };
	static const uint8_t swapgs_iretq[] = { 0x0f, 0x01, 0xf8, 0x48, 0xcf };
	uint64_t at;

	hs.cpu = pick_target();
	hs.percpu = (uint64_t)&percpu_area[hs.cpu];
	hs.window_addr[W_SYSCALL_ENTRY] = (uint64_t)syscall_entry;
	if (!find_bytes((uint64_t)syscall_entry, (uint64_t)user_return_iret - (uint64_t)syscall_entry,
			swapgs_sysretq, sizeof(swapgs_sysretq), &at)) {
		KT_FAIL("no 'swapgs; sysretq' in syscall_entry");
		return false;
	}
	hs.window_addr[W_SYSRETQ] = at + 3;
	if (!find_bytes((uint64_t)user_return_iret, 256, swapgs_iretq, sizeof(swapgs_iretq), &at)) {
		KT_FAIL("no 'swapgs; iretq' in user_return_iret");
		return false;
	}
	hs.window_addr[W_IRETQ] = at + 3;

	uint64_t senders = 0;
	other_cpus = 0;
	for (unsigned c = 0; c < cpus_possible && c < STORM_MAX_CPUS; c++)
		if (c != hs.cpu && cpu_data(c)->online) {
			senders |= 1ull << c;
			other_cpus++;
		}
	struct storm_config cfg = {
		.senders = senders, .targets = 1ull << hs.cpu, .gap_ns = hostile_gap_us * 1000,
		.max_in_flight = 1, .seconds = 3600,
	};
	nmi_get_cpu_stats(hs.cpu, &rain_before);
	rain_nested0 = percpu_area[hs.cpu].nmi_asm_nested;
	if (storm_start(&cfg) != 0) {
		KT_FAIL("cannot start the NMI rain");
		return false;
	}
	syscall_set_test_hook(hostile_syscall_hook);
	nmi_test_hook = hostile_nmi_hook;
	return true;
}

static void rain_stop(void)
{
	nmi_test_hook = NULL;
	syscall_set_test_hook(NULL);
	storm_stop();

	struct storm_cpu_totals t;
	struct nmi_cpu_stats after;
	storm_cpu_totals(hs.cpu, &t);
	nmi_get_cpu_stats(hs.cpu, &after);
	uint64_t unknown = after.unknown - rain_before.unknown;
	uint64_t nested = percpu_area[hs.cpu].nmi_asm_nested - rain_nested0;
	kt_diag("rain on CPU %u from %u CPUs: %lu NMIs sent, %lu claimed, %lu handler calls, "
		"%lu from ring 3; nested %lu, unknown %lu",
		hs.cpu, other_cpus, (unsigned long)t.sent, (unsigned long)t.claimed,
		(unsigned long)t.calls, (unsigned long)(after.from_user - rain_before.from_user),
		(unsigned long)nested, (unsigned long)unknown);
	KT_EXPECT_EQ(t.mismatched, 0);	/* every NMI sent was claimed, once */
	KT_EXPECT_EQ(storm_unclaimed(), 0);
	/* Nothing here makes an IRET inside an NMI handler: no NMI can be nested. */
	KT_EXPECT_EQ(nested, 0);
	if (!hostile_external_nmis) {
		KT_EXPECT_EQ(unknown, 0);
		KT_EXPECT_EQ(t.foreign, 0);
	}
}

/* --- one case ------------------------------------------------------------------- */

struct hcase {
	const char *name;	/* task name, "h-..." */
	void (*entry)(void);
	uint64_t rsp;
	uint64_t rflags;	/* TF DF AC to set, besides IF */
	uint64_t r12, r13, r14, rbx, r15;
	task_fault_fn *fault;
	unsigned window;	/* forced window */
	uint64_t landings;	/* forced NMIs wanted at it */
	uint64_t min_rounds;	/* rounds (or traps) before a running task is stopped */
	int exit_code;		/* expected */
	const char *killed;	/* "killed: <this> at rip" expected in the log, or NULL */
	int exit_alt;		/* another acceptable outcome (killed_alt != NULL) */
	const char *killed_alt;
};

static bool logged_since(uint64_t seq, const char *needle)
{
	static struct nk_log_record rec;	/* only the test runner uses it */
	while (nk_log_read(&seq, &rec))
		if (strstr(rec.text, needle))
			return true;
	return false;
}

/* NMIs from ring 3 with the hostile RSP that a case wants before it stops the task. */
#define WANT_USER_NMIS	20

static void run_case(const struct hcase *c)
{
	struct snapshot snap;
	struct task_stats st;
	struct syscall_stats s0, s1;
	unsigned cpu = hs.cpu;

	hostile_status = (struct hostile_status){ 0 };
	hs.rsp = c->rsp;
	hs.landing = 0;
	hs.nmis = hs.user = hs.user_at_rsp = hs.kernel = hs.natural_entry = 0;
	hs.rewrites = hs.landings = hs.landing_bad = 0;
	hs.sys_calls = hs.sys_flags_bad = hs.fault_rsp_bad = 0;
	for (unsigned v = 0; v < X86_EXCEPTIONS; v++)
		hs.faults[v] = 0;
	hs.violations = 0;
	hs.first_what = NULL;
	hs.window = c->window;
	fill_regions(cpu, &snap);
	syscall_get_stats(cpu, &s0);
	uint64_t seq = nk_log_next_seq();

	struct user_task_spec spec = {
		.name = c->name,
		.regs = {
			.rip = (uint64_t)c->entry, .rsp = c->rsp,
			.rflags = RFLAGS_IF | c->rflags,
			.r12 = c->r12, .r13 = c->r13, .r14 = c->r14, .r15 = c->r15, .rbx = c->rbx,
			.rax = 0xa5a5a5a5a5a5a5a5ull, .rdx = 0x5a5a5a5a5a5a5a5aull,
		},
		.own_stack = false,
		.fault_fn = c->fault,
		.cpu = (int)cpu,
	};
	struct task *t = task_create_user_spec(&spec);
	if (!t) {
		KT_FAIL("%s: cannot create the task", c->name);
		return;
	}
	uint32_t pid = t->id;

	/*
	 * A case that runs until stopped gets its NMIs first: enough of them
	 * from ring 3 with its RSP, and its forced windows.  One with a round
	 * limit, or one that dies, ends by itself.
	 */
	uint64_t end = os_timestamp_ns() + hostile_case_ms * 1000000ull;
	unsigned want_user = other_cpus && !c->r15 ? WANT_USER_NMIS : 0;
	/* Alone on one CPU, a window case is done with its landings: each waits for an NMI from outside. */
	uint64_t min_rounds = c->min_rounds > 50 ? c->min_rounds : 50;
	if (!other_cpus && c->window)
		min_rounds = c->landings;
	while (t->state != TASK_DEAD && os_timestamp_ns() < end) {
		if (!c->killed && !c->r15 && hostile_status.rounds + hostile_status.traps >= min_rounds &&
		    hs.user_at_rsp >= want_user && hs.landings >= c->landings)
			break;
		sleep_ms(5);
	}
	hostile_status.stop = 1;
	int code = task_wait(t, &st);
	hs.window = W_NONE;
	syscall_get_stats(cpu, &s1);

	kt_diag("%s: rsp %#lx: exit %d, %lu rounds, %lu traps, %lu syscalls (%lu by SYSRET, %lu by IRETQ); "
		"NMIs on CPU %u: %lu, %lu from ring 3 (%lu at its rsp), %lu at syscall_entry by chance",
		c->name, (unsigned long)c->rsp, code, (unsigned long)hostile_status.rounds,
		(unsigned long)hostile_status.traps,
		(unsigned long)st.syscalls, (unsigned long)(s1.sysret - s0.sysret),
		(unsigned long)(s1.iret - s0.iret), cpu, (unsigned long)hs.nmis, (unsigned long)hs.user,
		(unsigned long)hs.user_at_rsp, (unsigned long)hs.natural_entry);
	if (c->window)
		kt_diag("%s: %lu NMIs forced at %s, %lu landed, %lu with the wrong state, %lu resumed",
			c->name, (unsigned long)hs.rewrites, window_name[c->window],
			(unsigned long)hs.landings, (unsigned long)hs.landing_bad,
			(unsigned long)hostile_status.resumed);

	/* The outcome. */
	const char *killed = c->killed;
	int want_code = c->exit_code;
	if (c->killed_alt && code == c->exit_alt) {
		killed = c->killed_alt;
		want_code = c->exit_alt;
	}
	KT_EXPECT_EQ(code, want_code);
	if (killed) {
		char needle[96];
		nk_snprintf(needle, sizeof(needle), "user task '%s' (pid %u) killed: %s at rip",
			    c->name, pid, killed);
		if (!logged_since(seq, needle))
			KT_FAIL("%s: no log line \"%s...\"", c->name, needle);
	} else {
		KT_EXPECT_GT(hostile_status.rounds + hostile_status.traps, 0);
	}
	/* What ring 3 saw. */
	KT_EXPECT_EQ(hostile_status.bad_cs, 0);
	KT_EXPECT_EQ(hostile_status.rsp_lost, 0);
	KT_EXPECT_EQ(hostile_status.df_lost, 0);
	KT_EXPECT_EQ(hostile_status.flags_bad, 0);
	/* What the kernel saw. */
	if (hs.violations)
		KT_FAIL("%s: %lu violations; first: %s (rip %#lx, rsp %#lx, cs %#lx)", c->name,
			(unsigned long)hs.violations, hs.first_what, (unsigned long)hs.first_rip,
			(unsigned long)hs.first_rsp, (unsigned long)hs.first_cs);
	KT_EXPECT_EQ(hs.sys_flags_bad, 0);
	KT_EXPECT_EQ(hs.fault_rsp_bad, 0);
	KT_EXPECT_EQ(check_regions(cpu, &snap), 0);
	/* The NMIs really came, and hit ring 3 with this RSP. */
	if (want_user && !c->killed)
		KT_EXPECT_GE(hs.user_at_rsp, want_user);
	if (c->window) {
		KT_EXPECT_GE(hs.landings, c->landings);
		KT_EXPECT_EQ(hs.landing_bad, 0);
		KT_EXPECT_GE(hostile_status.resumed, hs.landings);
	}
}

/* --- the cases ------------------------------------------------------------------ */

/* The plain loop: SYSCALLs (one after a long straight run), RSP checked every round. */
#define LOOP_OPTS	(HL_SYSCALL | HL_PAD_SYSCALL)

static struct hcase loop_case(const char *name, uint64_t rsp)
{
	return (struct hcase){
		.name = name, .entry = hostile_loop, .rsp = rsp,
		.r12 = OP_NOP, .r13 = LOOP_OPTS,
	};
}

/* RSP at the top of the NMI stack: its hardware frame, `executing`, the saved frame. */
KTEST(hostile, rsp_in_nmi_stack)
{
	if (!rain_start())
		return;
	struct nmi_stack_top *top = nmi_stack_top_of(hs.cpu);
	struct hcase cases[] = {
		loop_case("h-nmi-hwframe", (uint64_t)&top->hw),
		loop_case("h-nmi-executing", (uint64_t)&top->scratch),	/* a push would hit `executing` */
		loop_case("h-nmi-saved", (uint64_t)&top->saved),
		loop_case("h-nmi-ist", ist_top(hs.cpu, IST_NMI)),
		loop_case("h-nmi-low", (uint64_t)cpu_stacks[hs.cpu].nmi + 4096),
	};
	for (unsigned i = 0; i < NK_ARRAY_SIZE(cases); i++)
		run_case(&cases[i]);
	rain_stop();
}

KTEST(hostile, rsp_in_other_ist_stacks)
{
	if (!rain_start())
		return;
	struct hcase cases[] = {
		loop_case("h-db-stack", ist_top(hs.cpu, IST_DB)),
		loop_case("h-mc-stack", ist_top(hs.cpu, IST_MC)),
		loop_case("h-df-stack", ist_top(hs.cpu, IST_DF) - 40),
		loop_case("h-db-low", (uint64_t)cpu_stacks[hs.cpu].db + 1024),
	};
	for (unsigned i = 0; i < NK_ARRAY_SIZE(cases); i++)
		run_case(&cases[i]);
	rain_stop();
}

KTEST(hostile, rsp_kernel_noncanonical_misaligned)
{
	if (!rain_start())
		return;
	struct hcase cases[] = {
		loop_case("h-kdata", (uint64_t)&hostile_sentinel[256]),
		loop_case("h-kdata-odd", (uint64_t)&hostile_sentinel[256] + 3),
		loop_case("h-ktext", (uint64_t)do_nmi),
		loop_case("h-percpu", hs.percpu + 64),
		loop_case("h-bootstack", (uint64_t)cpu_stacks[hs.cpu].boot + BOOT_STACK_SIZE - 8),
		loop_case("h-noncanon-lo", USER_ADDR_END),
		loop_case("h-noncanon-hi", 0x8000000000000000ull),
		loop_case("h-noncanon-dead", 0xdead000000000000ull),
		loop_case("h-zero", 0),
		loop_case("h-user-odd", (uint64_t)hostile_status.stack + 13),
	};
	for (unsigned i = 0; i < NK_ARRAY_SIZE(cases); i++)
		run_case(&cases[i]);
	rain_stop();
}

/* DF, AC and null segment selectors: kept in ring 3, never seen by the kernel. */
KTEST(hostile, df_ac_and_null_segments)
{
	if (!rain_start())
		return;
	uint64_t nmi_rsp = (uint64_t)&nmi_stack_top_of(hs.cpu)->hw;
	struct hcase cases[] = {
		{ .name = "h-df", .entry = hostile_loop, .rsp = nmi_rsp, .rflags = RFLAGS_DF,
		  .r12 = OP_NOP, .r13 = LOOP_OPTS | HL_CHECK_DF | HL_CHECK_FLAGS,
		  .r14 = RFLAGS_DF | RFLAGS_AC, .rbx = RFLAGS_DF },
		{ .name = "h-ac", .entry = hostile_loop, .rsp = nmi_rsp, .rflags = RFLAGS_AC,
		  .r12 = OP_FORCE_IRET, .r13 = LOOP_OPTS | HL_CHECK_FLAGS,
		  .r14 = RFLAGS_DF | RFLAGS_AC, .rbx = RFLAGS_AC },
		{ .name = "h-df-ac-iret", .entry = hostile_loop, .rsp = USER_ADDR_END,
		  .rflags = RFLAGS_DF | RFLAGS_AC, .r12 = OP_FORCE_IRET,
		  .r13 = LOOP_OPTS | HL_CHECK_DF | HL_CHECK_FLAGS,
		  .r14 = RFLAGS_DF | RFLAGS_AC, .rbx = RFLAGS_DF | RFLAGS_AC },
		{ .name = "h-nullsegs", .entry = hostile_loop, .rsp = nmi_rsp,
		  .r12 = OP_NOP, .r13 = LOOP_OPTS | HL_NULL_SEGS },
	};
	for (unsigned i = 0; i < NK_ARRAY_SIZE(cases); i++)
		run_case(&cases[i]);
	rain_stop();
}

/*
 * TF: every ring-3 instruction traps (#DB on IST_DB, moved to the task's
 * stack); the SYSCALL runs the kernel with TF clear (FMASK) and comes back by
 * IRETQ.  With the RSP in the NMI stack and in kernel data.
 */
KTEST(hostile, single_step_through_syscall)
{
	if (!rain_start())
		return;
	uint64_t nmi_rsp = (uint64_t)&nmi_stack_top_of(hs.cpu)->hw;
	struct hcase cases[] = {
		{ .name = "h-tf-nmi", .entry = hostile_loop, .rsp = nmi_rsp, .rflags = RFLAGS_TF,
		  .r12 = OP_NOP, .r13 = HL_SYSCALL | HL_CHECK_FLAGS, .r14 = RFLAGS_TF, .rbx = RFLAGS_TF,
		  .min_rounds = 200, .fault = hostile_fault },
		{ .name = "h-tf-kdata", .entry = hostile_loop, .rsp = (uint64_t)&hostile_sentinel[100],
		  .rflags = RFLAGS_TF | RFLAGS_DF, .r12 = OP_FORCE_IRET,
		  .r13 = HL_SYSCALL | HL_CHECK_DF, .min_rounds = 200, .fault = hostile_fault },
	};
	for (unsigned i = 0; i < NK_ARRAY_SIZE(cases); i++) {
		run_case(&cases[i]);
		/* One #DB per ring-3 instruction: far more than the rounds. */
		KT_EXPECT_GE(hostile_status.rounds, cases[i].min_rounds);
		KT_EXPECT_GE(hs.faults[X86_TRAP_DB], 10 * hostile_status.rounds);
	}
	rain_stop();
}

/* The SYSRET and IRETQ exits, over and over, under the rain, with hostile RSPs. */
KTEST(hostile, sysret_and_iret_loops)
{
	if (!rain_start())
		return;
	uint64_t nmi_rsp = (uint64_t)&nmi_stack_top_of(hs.cpu)->hw;
	struct hcase cases[] = {
		{ .name = "h-sysret", .entry = hostile_loop, .rsp = nmi_rsp, .r12 = OP_NOP,
		  .r13 = HL_SYSCALL, .min_rounds = 20000 },
		{ .name = "h-iret", .entry = hostile_loop, .rsp = nmi_rsp, .r12 = OP_FORCE_IRET,
		  .r13 = 0, .min_rounds = 20000 },
	};
	for (unsigned i = 0; i < NK_ARRAY_SIZE(cases); i++) {
		struct syscall_stats s0, s1;
		syscall_get_stats(hs.cpu, &s0);
		run_case(&cases[i]);
		syscall_get_stats(hs.cpu, &s1);
		uint64_t rounds = hostile_status.rounds;
		KT_EXPECT_GE(rounds, cases[i].min_rounds);
		if (i == 0)
			KT_EXPECT_GE(s1.sysret - s0.sysret, 2 * rounds);
		else
			KT_EXPECT_GE(s1.iret - s0.iret, rounds);
	}
	rain_stop();
}

/* int3, int1 (icebp), into and ud2: killed with the message, RSP in the NMI stack. */
KTEST(hostile, exceptions_kill_the_task)
{
	if (!rain_start())
		return;
	uint64_t nmi_rsp = (uint64_t)&nmi_stack_top_of(hs.cpu)->hw;
	struct hcase cases[] = {
		{ .name = "h-int3", .entry = hostile_int3_loop, .rsp = nmi_rsp, .r15 = 1,
		  .exit_code = TASK_EXIT_FAULT(X86_TRAP_BP), .killed = "int3 breakpoint" },
		/* INT1 is #DB on hardware; QEMU 7.2's TCG does not implement it: #UD. */
		{ .name = "h-icebp", .entry = hostile_icebp_loop, .rsp = nmi_rsp, .r15 = 1,
		  .exit_code = TASK_EXIT_FAULT(X86_TRAP_DB), .killed = "debug exception",
		  .exit_alt = TASK_EXIT_FAULT(X86_TRAP_UD), .killed_alt = "invalid opcode" },
		{ .name = "h-into", .entry = hostile_into_loop, .rsp = nmi_rsp, .r15 = 1,
		  .exit_code = TASK_EXIT_FAULT(X86_TRAP_UD), .killed = "invalid opcode" },
		{ .name = "h-ud2", .entry = hostile_ud2_loop, .rsp = 0xdead000000000000ull, .r15 = 1,
		  .exit_code = TASK_EXIT_FAULT(X86_TRAP_UD), .killed = "invalid opcode" },
	};
	for (unsigned i = 0; i < NK_ARRAY_SIZE(cases); i++)
		run_case(&cases[i]);
	rain_stop();
}

/* The same four, let go by a fault handler, thousands of times: the exception exits. */
KTEST(hostile, exceptions_let_go)
{
	if (!rain_start())
		return;
	uint64_t nmi_rsp = (uint64_t)&nmi_stack_top_of(hs.cpu)->hw;
	struct hcase cases[] = {
		{ .name = "h-int3-go", .entry = hostile_int3_loop, .rsp = nmi_rsp, .min_rounds = 2000,
		  .fault = hostile_fault },
		{ .name = "h-icebp-go", .entry = hostile_icebp_loop, .rsp = nmi_rsp, .min_rounds = 2000,
		  .fault = hostile_fault },
		{ .name = "h-into-go", .entry = hostile_into_loop, .rsp = USER_ADDR_END,
		  .min_rounds = 2000, .fault = hostile_fault },
		{ .name = "h-ud2-go", .entry = hostile_ud2_loop, .rsp = (uint64_t)&hostile_sentinel[7],
		  .min_rounds = 2000, .fault = hostile_fault },
		{ .name = "h-int3-df-ac", .entry = hostile_int3_loop, .rsp = nmi_rsp,
		  .rflags = RFLAGS_DF | RFLAGS_AC, .min_rounds = 2000, .fault = hostile_fault },
	};
	for (unsigned i = 0; i < NK_ARRAY_SIZE(cases); i++) {
		run_case(&cases[i]);
		/* Each round raised exactly one exception, and each was let go. */
		uint64_t seen = i == 0 || i == 4 ? hs.faults[X86_TRAP_BP] :
				i == 1 ? hs.faults[X86_TRAP_DB] + hs.faults[X86_TRAP_UD] :
				hs.faults[X86_TRAP_UD];
		KT_EXPECT_GE(hostile_status.traps, cases[i].min_rounds);
		KT_EXPECT_EQ(seen, hostile_status.traps);
		if (i == 1 && hs.faults[X86_TRAP_UD])
			kt_diag("icebp raised #UD: this CPU (QEMU's TCG) does not implement INT1");
	}
	rain_stop();
}

/*
 * NMIs forced at the instructions where ring 0 runs on ring 3's RSP or GS
 * base (see the top of the file), with RSP in the NMI stack - on the very
 * hardware frame the NMI writes, and on `executing` - and non-canonical.  A
 * nested-NMI check that trusted RSP (CVE-2015-3291) would take these for
 * nested NMIs: the handler would not run for them and the nested count
 * would move.
 */
KTEST(hostile, forced_nmi_windows)
{
	if (!rain_start())
		return;
	struct nmi_stack_top *top = nmi_stack_top_of(hs.cpu);
	const uint64_t rsps[] = {
		(uint64_t)&top->hw, (uint64_t)&top->scratch, (uint64_t)&top->saved,
		0xdead000000000000ull, (uint64_t)&hostile_sentinel[300] + 5,
	};
	static const char *const names[] = {
		"h-win-hwframe", "h-win-executing", "h-win-saved", "h-win-noncanon", "h-win-kdata",
	};
	uint64_t want = other_cpus ? 10 : 1;
	for (unsigned w = W_SYSCALL_ENTRY; w < W_COUNT; w++)
		for (unsigned i = 0; i < NK_ARRAY_SIZE(rsps); i++) {
			struct hcase c = {
				.name = names[i], .entry = hostile_loop, .rsp = rsps[i],
				.r13 = HL_WINDOW_SPIN, .window = w, .landings = want,
			};
			run_case(&c);
		}
	rain_stop();
}
