/*
 * mce.c: machine checks.  At boot every CPU enables all its error-reporting
 * banks; the #MC handler (called from traps.c on the #MC IST stack, or on the
 * task stack for ring 3) reads MCG_STATUS and every bank, logs each error in
 * the style of Linux's "mce: [Hardware Error]" lines, and decides:
 *
 *   - resume: every error is corrected or uncorrected without PCC, no action
 *     required of this context, and MCG_STATUS.RIPV says the interrupted
 *     context can go on.  The banks are cleared, then MCIP (last: a new #MC
 *     may come as soon as it is clear; one that comes while it is set
 *     shuts the CPU down);
 *   - kill the ring-3 task that consumed an action-required error;
 *   - panic: PCC, RIPV clear, an overflowed uncorrected error, an
 *     action-required error in kernel context, no valid bank, MCIP clear.
 *
 * The handler can interrupt anything, NMI handlers and the NMI entry
 * included, so it is NMI-like: no lock at all (counters are per CPU, the log
 * is the lock-free ring), bounded time, RCU bracketed by the caller with
 * rcu_nmi_enter/exit.  Its return is the subtle part: IRET unblocks NMIs,
 * which is harmless once the NMI entry has saved its frame (its nested-NMI
 * logic takes over) but fatal before, so an #MC that interrupted the NMI
 * entry code returns without IRET (mce_resume_mode, mce_resume.S).
 */
#include <arch/mce.h>
#include <arch/cpu.h>
#include <arch/nmi.h>
#include <arch/percpu.h>
#include <arch/smp.h>
#include <arch/traps.h>
#include <kernel/backtrace.h>
#include <kernel/shell.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>

#include <stdatomic.h>

#define CPUID1_EDX_MCE	(1u << 7)
#define CPUID1_EDX_MCA	(1u << 14)

/* The whole NMI entry section (kernel.ld), and the user path's final IRETQ. */
extern char __nmi_text_start[], __nmi_text_end[];
extern char nmi_user_iret[];

volatile bool mce_test_force_no_iret;

static bool have_mca;
static unsigned nbanks;
static uint64_t mcg_cap;

/* Counters: written only by their own CPU (an #MC cannot nest), read by any. */
struct mce_cpu {
	_Atomic uint64_t events, recovered, killed, fatal, spurious, in_nmi, no_iret;
	_Atomic uint64_t corrected, errors;
	const char *_Atomic reason;
} NK_CACHE_ALIGNED;
static struct mce_cpu mce_cpu[MAX_CPUS];

static void bump(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

bool mce_available(void)
{
	return have_mca;
}

unsigned mce_bank_count(void)
{
	return nbanks;
}

/* --- boot ------------------------------------------------------------------- */

static bool cpu_has_mca(void)
{
	uint32_t a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	return (d & CPUID1_EDX_MCE) && (d & CPUID1_EDX_MCA);
}

static unsigned log_stale_banks(unsigned cpu);

/*
 * Every CPU, once, interrupts off.  Uncorrected errors reach #MC only from
 * banks whose MCi_CTL enables them (and with MCG_CTL all ones where it
 * exists): all ones enables every error source of the bank.  Records left
 * from before boot are logged and cleared, so the first #MC finds only its
 * own.
 */
void mce_cpu_init(unsigned cpu)
{
	if (!have_mca)
		return;
	if (mcg_cap & MCG_CAP_CTL_P)
		wrmsr(MSR_MCG_CTL, ~0ull);
	for (unsigned b = 0; b < nbanks; b++)
		wrmsr(MSR_MC_CTL(b), ~0ull);
	unsigned stale = log_stale_banks(cpu);
	if (stale)
		pr_warn("mce: CPU %u: %u error record(s) left from before boot, logged and cleared\n",
			cpu, stale);
	/* MCIP left set by firmware would turn the first #MC into a shutdown. */
	wrmsr(MSR_MCG_STATUS, 0);
}

static void mce_ap_init(unsigned cpu)
{
	mce_cpu_init(cpu);
}

void mce_init_boot(void)
{
	if (!cpu_has_mca()) {
		pr_info("mce: no machine-check architecture (CPUID.1:EDX MCE/MCA); #MC reports without banks\n");
		return;
	}
	mcg_cap = rdmsr(MSR_MCG_CAP);
	nbanks = (unsigned)(mcg_cap & MCG_CAP_COUNT);
	if (nbanks > MCE_MAX_BANKS) {
		pr_warn("mce: %u banks reported, using the first %u\n", nbanks, MCE_MAX_BANKS);
		nbanks = MCE_MAX_BANKS;
	}
	have_mca = true;
	pr_info("mce: %u banks enabled, MCG_CAP %#lx%s%s\n", nbanks, (unsigned long)mcg_cap,
		(mcg_cap & MCG_CAP_CTL_P) ? ", MCG_CTL" : "",
		(mcg_cap & MCG_CAP_SER_P) ? ", software error recovery (S/AR)" : "");
	mce_cpu_init(0);
	if (!smp_add_ap_init(mce_ap_init))
		pr_warn("mce: no room for the AP hook; other CPUs keep their banks as firmware left them\n");
}

/* --- classification --------------------------------------------------------- */

enum mce_sev {
	SEV_NONE,
	SEV_CORRECTED,		/* UC clear: the hardware fixed it */
	SEV_UC_NO_ACTION,	/* uncorrected, nothing for this context to do (UCNA, SRAO) */
	SEV_AR,			/* uncorrected, the interrupted context consumed it (SRAR) */
	SEV_FATAL,		/* PCC, or an uncorrected error overwritten by another */
};

static enum mce_sev bank_severity(uint64_t st, const char **what)
{
	bool ser = mcg_cap & MCG_CAP_SER_P;

	if (!(st & MCI_STATUS_UC)) {
		*what = "corrected error";
		return SEV_CORRECTED;
	}
	if (st & MCI_STATUS_PCC) {
		*what = "processor context corrupt";
		return SEV_FATAL;
	}
	if (st & MCI_STATUS_OVER) {
		*what = "overflowed uncorrected error (an earlier one was lost)";
		return SEV_FATAL;
	}
	if (ser && (st & MCI_STATUS_S) && (st & MCI_STATUS_AR)) {
		*what = "uncorrected error, action required (SRAR)";
		return SEV_AR;
	}
	if (ser && (st & MCI_STATUS_S)) {
		*what = "uncorrected error, action optional (SRAO)";
		return SEV_UC_NO_ACTION;
	}
	*what = "uncorrected error, no action required";
	return SEV_UC_NO_ACTION;
}

/* One bank record, as Linux words it: status, then ADDR/MISC when valid. #MC-safe. */
static void log_bank(int level, unsigned cpu, unsigned b, uint64_t st, const char *what)
{
	nk_log(level, "mce: [Hardware Error]: CPU %u: Bank %u: %016lx: %s\n", cpu, b,
	       (unsigned long)st, what);
	if (st & (MCI_STATUS_ADDRV | MCI_STATUS_MISCV))
		nk_log(level, "mce: [Hardware Error]: Bank %u: ADDR %lx MISC %lx\n", b,
		       (st & MCI_STATUS_ADDRV) ? (unsigned long)rdmsr(MSR_MC_ADDR(b)) : 0ul,
		       (st & MCI_STATUS_MISCV) ? (unsigned long)rdmsr(MSR_MC_MISC(b)) : 0ul);
}

/* Valid corrected records: log, clear, count.  Any context, this CPU. */
static unsigned take_corrected(unsigned cpu, int level)
{
	unsigned n = 0;
	for (unsigned b = 0; b < nbanks; b++) {
		uint64_t st = rdmsr(MSR_MC_STATUS(b));
		if (!(st & MCI_STATUS_VAL) || (st & MCI_STATUS_UC))
			continue;
		log_bank(level, cpu, b, st, "corrected error");
		wrmsr(MSR_MC_STATUS(b), 0);
		bump(&mce_cpu[cpu].corrected);
		bump(&mce_cpu[cpu].errors);
		n++;
	}
	return n;
}

/* Boot: every valid record, corrected or not (no #MC is in progress). */
static unsigned log_stale_banks(unsigned cpu)
{
	unsigned n = take_corrected(cpu, NK_LOG_WARNING);
	for (unsigned b = 0; b < nbanks; b++) {
		uint64_t st = rdmsr(MSR_MC_STATUS(b));
		const char *what;
		if (!(st & MCI_STATUS_VAL))
			continue;
		bank_severity(st, &what);
		log_bank(NK_LOG_WARNING, cpu, b, st, what);
		wrmsr(MSR_MC_STATUS(b), 0);
		bump(&mce_cpu[cpu].errors);
		n++;
	}
	return n;
}

unsigned mce_poll(void)
{
	if (!have_mca)
		return 0;
	unsigned cpu = cpu_id_safe();
	/*
	 * An #MC may arrive between the read and the clear of a bank and log
	 * the same corrected record itself; the record is then logged twice,
	 * never lost.
	 */
	unsigned n = take_corrected(cpu, NK_LOG_ERR);
	if (n)
		pr_err("mce: [Hardware Error]: Machine check events logged (CPU %u, %u corrected)\n", cpu, n);
	return n;
}

/* --- the handler ------------------------------------------------------------ */

static bool in_nmi_text(uint64_t rip)
{
	return rip >= (uint64_t)__nmi_text_start && rip < (uint64_t)__nmi_text_end;
}

static enum mce_verdict fatal(unsigned cpu, const char *why)
{
	atomic_store(&mce_cpu[cpu].reason, why);
	bump(&mce_cpu[cpu].fatal);
	return MCE_FATAL;
}

const char *mce_fatal_reason(unsigned cpu)
{
	const char *r = cpu < MAX_CPUS ? atomic_load(&mce_cpu[cpu].reason) : NULL;
	return r ? r : "no machine-check record";
}

/* The interrupted context, one line.  #MC-safe (ksym_format takes no lock). */
static void log_context(int level, unsigned cpu, const struct regs *r, uint64_t mcg, bool nmi)
{
	char sym[96];
	ksym_format(sym, sizeof(sym), r->rip, false);
	nk_log(level, "mce: [Hardware Error]: RIP%s %02lx:<%016lx> {%s}%s\n",
	       (mcg & MCG_STATUS_EIPV) ? "" : " !INEXACT!", (unsigned long)r->cs,
	       (unsigned long)r->rip, sym, regs_from_user(r) ? " in ring 3" : nmi ? " in NMI context" : "");
	nk_log(level, "mce: [Hardware Error]: PROCESSOR CPU %u APIC %x TSC %lx\n", cpu,
	       cpu_data(cpu)->apic_id, (unsigned long)rdtsc());
}

/* Clear every valid record, then MCIP: this #MC is over. */
static void clear_banks(void)
{
	for (unsigned b = 0; b < nbanks; b++)
		if (rdmsr(MSR_MC_STATUS(b)) & MCI_STATUS_VAL)
			wrmsr(MSR_MC_STATUS(b), 0);
	wrmsr(MSR_MCG_STATUS, 0);
}

/*
 * #MC context, on the #MC IST stack (kernel mode) or the task's kernel stack
 * (ring 3), interrupts off.  No lock, no waiting; time bounded by the banks.
 */
enum mce_verdict mce_handle(struct regs *r)
{
	unsigned cpu = cpu_id_safe();
	struct mce_cpu *m = &mce_cpu[cpu];
	bool user = regs_from_user(r);
	bool nmi = !user && (nmi_in_nmi() || in_nmi_text(r->rip));

	bump(&m->events);
	if (nmi)
		bump(&m->in_nmi);
	if (!have_mca)
		return fatal(cpu, "machine check on a CPU without the machine-check architecture");
	uint64_t mcg = rdmsr(MSR_MCG_STATUS);
	if (!(mcg & MCG_STATUS_MCIP)) {
		bump(&m->spurious);
		pr_emerg("mce: CPU %u: #MC with MCG_STATUS.MCIP clear (%lx): not a hardware machine check\n",
			 cpu, (unsigned long)mcg);
		return fatal(cpu, "#MC without a machine check in progress (MCG_STATUS.MCIP clear)");
	}

	/* First pass: the worst error decides the level every line is logged at. */
	enum mce_sev worst = SEV_NONE;
	const char *worst_what = NULL;
	for (unsigned b = 0; b < nbanks; b++) {
		uint64_t st = rdmsr(MSR_MC_STATUS(b));
		const char *what;
		if (!(st & MCI_STATUS_VAL))
			continue;
		enum mce_sev s = bank_severity(st, &what);
		if (s > worst) {
			worst = s;
			worst_what = what;
		}
	}
	/*
	 * A ring-3 task that consumed an action-required error is killed, so
	 * it never resumes: RIPV does not matter for it (hardware reports
	 * SRAR with RIPV clear, EIPV set).  Everything else resumes at RIP.
	 */
	bool kill = worst == SEV_AR && user;
	bool resumable = (mcg & MCG_STATUS_RIPV) || kill;
	bool dies = worst == SEV_FATAL || worst == SEV_NONE || !resumable ||
		    (worst == SEV_AR && !user);
	int level = dies ? NK_LOG_EMERG : NK_LOG_ERR;

	nk_log(level, "mce: [Hardware Error]: CPU %u: Machine Check Exception: MCG_STATUS %lx\n",
	       cpu, (unsigned long)mcg);
	for (unsigned b = 0; b < nbanks; b++) {
		uint64_t st = rdmsr(MSR_MC_STATUS(b));
		const char *what;
		if (!(st & MCI_STATUS_VAL))
			continue;
		if (bank_severity(st, &what) == SEV_CORRECTED)
			bump(&m->corrected);
		bump(&m->errors);
		log_bank(level, cpu, b, st, what);
	}
	log_context(level, cpu, r, mcg, nmi);

	if (worst == SEV_NONE)
		return fatal(cpu, "machine check from an unknown source (no bank holds a valid record)");
	if (worst == SEV_FATAL)
		return fatal(cpu, worst_what);
	if (worst == SEV_AR && !user)
		return fatal(cpu, "action-required error consumed in kernel context");
	if (!resumable)
		return fatal(cpu, "MCG_STATUS.RIPV clear: the interrupted context cannot be resumed");

	clear_banks();
	if (kill) {
		bump(&m->killed);
		pr_err("mce: [Hardware Error]: CPU %u: ring 3 consumed the error: killing the task\n", cpu);
		return MCE_KILL_TASK;
	}
	bump(&m->recovered);
	pr_err("mce: [Hardware Error]: CPU %u: Machine check recovered (%s)%s\n", cpu, worst_what,
	       nmi ? ", in NMI context" : "");
	return MCE_RECOVERED;
}

/*
 * Where an IRET is unsafe: from asm_nmi until the entry has copied its
 * hardware frame (nmi_prologue_end), nothing else on this CPU may deliver
 * an NMI, because the CPU would write the new NMI's frame over the unsaved
 * one (nmi_entry.S, "The hazard").  The user path's copy to the task stack
 * reads that frame too, up to its own IRETQ.  Returning without IRET keeps
 * NMIs blocked, exactly as they were when the #MC came, so it is correct
 * anywhere in the NMI entry code: it is used for the whole section.
 *
 * The GS base must come back too.  The paranoid entry loaded the percpu
 * pointer into MSR_GS_BASE if the interrupted code ran on another base;
 * the no-IRET return does not go through the entry's exit, which would
 * write it back.  Where that base is a user's, between two SWAPGSes (the
 * NMI from ring 3 before its SWAPGS, or the NMI entry interrupting the
 * SYSCALL/SYSRET windows), the return ends with a SWAPGS of its own
 * (MCE_RESUME_NO_IRET_SWAPGS).  Only a state no kernel code creates - a
 * foreign GS base without the percpu pointer in MSR_KERNEL_GS_BASE, or
 * with interrupts on - is left to the entry's exit: IRET outside the
 * frame-copy windows (after them the nested-NMI logic covers it), and no
 * way back inside them.
 */
enum mce_resume mce_resume_mode(uint64_t rip, enum mce_gs gs)
{
	if (!in_nmi_text(rip) && !mce_test_force_no_iret)
		return MCE_RESUME_IRET;
	switch (gs) {
	case MCE_GS_PERCPU:
		return MCE_RESUME_NO_IRET;
	case MCE_GS_USER:
		return MCE_RESUME_NO_IRET_SWAPGS;
	case MCE_GS_OTHER:
		break;
	}
	bool frame_unsaved = nmi_breakpoint_forbidden(rip) ||
			     (rip > (uint64_t)nmi_final_iret && rip < (uint64_t)nmi_user_iret);
	return frame_unsaved ? MCE_RESUME_IMPOSSIBLE : MCE_RESUME_IRET;
}

/*
 * What the paranoid entry found (gs_base) against what it left: it wrote
 * only MSR_GS_BASE, so MSR_KERNEL_GS_BASE is still the interrupted value.
 * Interrupts must be off for MCE_GS_USER: the swapping return opens one
 * instruction on the user's GS base in ring 0, where an IRQ entry would
 * not SWAPGS.  The NMI entry always runs with them off.
 */
static enum mce_gs interrupted_gs(const struct regs *r, uint64_t gs_base)
{
	uint64_t percpu = (uint64_t)this_cpu();

	if (gs_base == percpu)
		return MCE_GS_PERCPU;
	if (rdmsr(MSR_KERNEL_GS_BASE) == percpu && !(r->rflags & RFLAGS_IF))
		return MCE_GS_USER;
	return MCE_GS_OTHER;
}

bool mce_leave(struct regs *r, uint64_t cr2, uint64_t gs_base)
{
	unsigned cpu = cpu_id_safe();
	enum mce_resume mode = mce_resume_mode(r->rip, interrupted_gs(r, gs_base));

	switch (mode) {
	case MCE_RESUME_IRET:
		return true;
	case MCE_RESUME_IMPOSSIBLE:
		atomic_store(&mce_cpu[cpu].reason,
			     "machine check in the NMI entry before it saved its frame, on a GS base "
			     "one SWAPGS cannot restore: no safe way back (IRET would let a latched NMI "
			     "overwrite that frame)");
		bump(&mce_cpu[cpu].fatal);
		atomic_fetch_sub(&mce_cpu[cpu].recovered, 1);	/* mce_handle() counted it */
		return false;
	case MCE_RESUME_NO_IRET:
	case MCE_RESUME_NO_IRET_SWAPGS:
		break;
	}
	bump(&mce_cpu[cpu].no_iret);
	/* What the paranoid entry's exit would have put back. */
	if (read_cr2() != cr2)
		write_cr2(cr2);
	if (mode == MCE_RESUME_NO_IRET_SWAPGS) {
		/* The user's base where SWAPGS takes it from; the percpu one comes back in exchange. */
		wrmsr(MSR_KERNEL_GS_BASE, gs_base);
		mce_resume_swapgs_without_iret(r, cpu);
	}
	mce_resume_without_iret(r);
}

void mce_get_stats(unsigned cpu, struct mce_cpu_stats *out)
{
	*out = (struct mce_cpu_stats){ 0 };
	if (cpu >= MAX_CPUS)
		return;
	const struct mce_cpu *m = &mce_cpu[cpu];
	out->events = atomic_load(&m->events);
	out->recovered = atomic_load(&m->recovered);
	out->killed = atomic_load(&m->killed);
	out->fatal = atomic_load(&m->fatal);
	out->spurious = atomic_load(&m->spurious);
	out->in_nmi = atomic_load(&m->in_nmi);
	out->no_iret = atomic_load(&m->no_iret);
	out->corrected = atomic_load(&m->corrected);
	out->errors = atomic_load(&m->errors);
}

/* --- shell ------------------------------------------------------------------ */

static int cmd_mce(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "poll") != 0))
		return SHELL_USAGE;
	if (argc == 2) {
		unsigned n = mce_poll();
		shell_printf("mce: %u corrected error(s) found on CPU %u\n", n, cpu_id_safe());
		return 0;
	}
	if (!have_mca) {
		shell_printf("mce: no machine-check architecture\n");
		return 0;
	}
	shell_printf("mce: %u banks, MCG_CAP %#lx\n", nbanks, (unsigned long)mcg_cap);
	shell_printf("%4s %8s %9s %6s %6s %8s %7s %8s %9s %7s\n", "cpu", "#MC", "recovered",
		     "killed", "fatal", "spurious", "in-NMI", "no-IRET", "corrected", "errors");
	for (unsigned c = 0; c < MAX_CPUS; c++) {
		struct mce_cpu_stats s;
		if (!cpu_data(c)->online)
			continue;
		mce_get_stats(c, &s);
		shell_printf("%4u %8lu %9lu %6lu %6lu %8lu %7lu %8lu %9lu %7lu\n", c,
			     (unsigned long)s.events, (unsigned long)s.recovered,
			     (unsigned long)s.killed, (unsigned long)s.fatal,
			     (unsigned long)s.spurious, (unsigned long)s.in_nmi,
			     (unsigned long)s.no_iret, (unsigned long)s.corrected,
			     (unsigned long)s.errors);
	}
	return 0;
}
SHELL_CMD(mce, "[poll]", "machine checks per CPU; poll: log and clear this CPU's corrected errors",
	  cmd_mce);
