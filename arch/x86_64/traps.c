/*
 * traps.c: the C side of the exception entry stubs.  An exception is first
 * offered to the exception table (a recoverable kernel access such as
 * probe_read_u64), then to the hooks other code installed (the NMI tests'
 * int3 and hardware-breakpoint handlers, the scheduler's user-fault
 * handling); anything left is a bug: it is reported - registers, the
 * symbolized backtrace, #PF decoding, stack overflows named - and the
 * kernel panics.  docs/exceptions.md describes the report.
 */
#include <arch/traps.h>
#include <arch/cpu.h>
#include <arch/gdt.h>
#include <arch/mce.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <kernel/backtrace.h>
#include <kernel/irq.h>
#include <kernel/panic.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/rcu.h>

#include <stdatomic.h>

static const char *const trap_names[X86_EXCEPTIONS] = {
	[X86_TRAP_DE] = "divide error",
	[X86_TRAP_DB] = "debug exception",
	[X86_TRAP_NMI] = "non-maskable interrupt",
	[X86_TRAP_BP] = "int3 breakpoint",
	[X86_TRAP_OF] = "overflow",
	[X86_TRAP_BR] = "bound range exceeded",
	[X86_TRAP_UD] = "invalid opcode",
	[X86_TRAP_NM] = "device not available",
	[X86_TRAP_DF] = "double fault",
	[X86_TRAP_OLD_MF] = "coprocessor segment overrun",
	[X86_TRAP_TS] = "invalid TSS",
	[X86_TRAP_NP] = "segment not present",
	[X86_TRAP_SS] = "stack-segment fault",
	[X86_TRAP_GP] = "general protection fault",
	[X86_TRAP_PF] = "page fault",
	[X86_TRAP_MF] = "x87 floating-point error",
	[X86_TRAP_AC] = "alignment check",
	[X86_TRAP_MC] = "machine check",
	[X86_TRAP_XF] = "SIMD floating-point exception",
	[X86_TRAP_VE] = "virtualization exception",
	[X86_TRAP_CP] = "control protection exception",
	[X86_TRAP_HV] = "hypervisor injection",
	[X86_TRAP_VC] = "VMM communication exception",
	[X86_TRAP_SX] = "security exception",
};

static const char *const trap_mnemonics[X86_EXCEPTIONS] = {
	[X86_TRAP_DE] = "#DE", [X86_TRAP_DB] = "#DB", [X86_TRAP_NMI] = "NMI",
	[X86_TRAP_BP] = "#BP", [X86_TRAP_OF] = "#OF", [X86_TRAP_BR] = "#BR",
	[X86_TRAP_UD] = "#UD", [X86_TRAP_NM] = "#NM", [X86_TRAP_DF] = "#DF",
	[X86_TRAP_OLD_MF] = "#MF(old)", [X86_TRAP_TS] = "#TS", [X86_TRAP_NP] = "#NP",
	[X86_TRAP_SS] = "#SS", [X86_TRAP_GP] = "#GP", [X86_TRAP_PF] = "#PF",
	[X86_TRAP_MF] = "#MF", [X86_TRAP_AC] = "#AC", [X86_TRAP_MC] = "#MC",
	[X86_TRAP_XF] = "#XM", [X86_TRAP_VE] = "#VE", [X86_TRAP_CP] = "#CP",
	[X86_TRAP_HV] = "#HV", [X86_TRAP_VC] = "#VC", [X86_TRAP_SX] = "#SX",
};

const char *trap_name(unsigned vector)
{
	if (vector < X86_EXCEPTIONS && trap_names[vector])
		return trap_names[vector];
	return vector < X86_EXCEPTIONS ? "reserved exception" : "interrupt";
}

const char *trap_mnemonic(unsigned vector)
{
	if (vector < X86_EXCEPTIONS && trap_mnemonics[vector])
		return trap_mnemonics[vector];
	return "#??";
}

/* --- this CPU ------------------------------------------------------------ */

/*
 * NMI-safe: yes.  Reads MSR_GS_BASE instead of trusting it: it must work in
 * a report about broken GS handling, and before gdt_load_cpu() ran.
 */
unsigned int cpu_id_safe(void)
{
	uint64_t gs = rdmsr(MSR_GS_BASE);
	uint64_t base = (uint64_t)percpu_area;

	if (gs >= base && gs < base + sizeof(percpu_area) && (gs - base) % sizeof(struct percpu) == 0)
		return ((const struct percpu *)gs)->cpu;
	return 0;
}

/* The DR6 / CR2 of the #DB / #PF a hook is handling, per CPU. */
static uint64_t hook_dr6[MAX_CPUS];
static uint64_t hook_cr2[MAX_CPUS];

uint64_t trap_debug_status(void)
{
	return hook_dr6[cpu_id_safe()];
}

uint64_t trap_fault_address(void)
{
	return hook_cr2[cpu_id_safe()];
}

/* --- hooks --------------------------------------------------------------- */

static _Atomic(trap_handler_fn) trap_hooks[X86_EXCEPTIONS + 1][TRAP_MAX_HOOKS];

/* NMI-safe: yes. */
int trap_set_handler(unsigned vector, trap_handler_fn fn)
{
	if (vector > TRAP_ALL || vector == X86_TRAP_NMI || !fn)
		return -EINVAL;
	for (int i = 0; i < TRAP_MAX_HOOKS; i++)
		if (atomic_load(&trap_hooks[vector][i]) == fn)
			return -EBUSY;
	for (int i = 0; i < TRAP_MAX_HOOKS; i++) {
		trap_handler_fn empty = NULL;
		if (atomic_compare_exchange_strong(&trap_hooks[vector][i], &empty, fn))
			return 0;
	}
	return -ENOSPC;
}

/* NMI-safe: yes. */
int trap_clear_handler(unsigned vector, trap_handler_fn fn)
{
	if (vector > TRAP_ALL || !fn)
		return -EINVAL;
	for (int i = 0; i < TRAP_MAX_HOOKS; i++) {
		trap_handler_fn cur = fn;
		if (atomic_compare_exchange_strong(&trap_hooks[vector][i], &cur, NULL))
			return 0;
	}
	return -ENOENT;
}

/* One chain's hooks, in order, until one claims.  NMI-safe: yes (atomic loads only). */
static bool run_chain(unsigned chain, struct regs *r)
{
	for (int i = 0; i < TRAP_MAX_HOOKS; i++) {
		trap_handler_fn fn = atomic_load_explicit(&trap_hooks[chain][i], memory_order_acquire);
		if (fn && fn(r))
			return true;
	}
	return false;
}

/* The vector's own hooks, then the TRAP_ALL ones.  NMI-safe: yes. */
static bool run_hooks(unsigned vector, struct regs *r)
{
	return run_chain(vector, r) || run_chain(TRAP_ALL, r);
}

/* --- exception table ----------------------------------------------------- */

/* Provided by the linker for the `extable` section (its name is a C identifier). */
extern const struct extable_entry __start_extable[], __stop_extable[];

/* NMI-safe: yes (a scan of a read-only table). */
uint64_t extable_lookup(uint64_t rip)
{
	for (const struct extable_entry *e = __start_extable; e < __stop_extable; e++)
		if (e->fault_rip == rip)
			return e->fixup_rip;
	return 0;
}

/* NMI-safe: yes (see traps.h). */
int probe_read_u64(const void *addr, uint64_t *out)
{
	uint64_t v;
	int err = 0;

	__asm__ volatile(
		"1:	movq (%[addr]), %[val]\n"
		"2:\n\t"
		".pushsection .text.fixup, \"ax\"\n"
		"3:	movl %[efault], %[err]\n\t"
		"xorl %k[val], %k[val]\n\t"
		"jmp 2b\n\t"
		".popsection\n\t"
		EXTABLE_ASM("1b", "3b")
		: [val] "=r"(v), [err] "+r"(err)
		: [addr] "r"(addr), [efault] "i"(-EFAULT)
		: "memory");
	if (err)
		return err;
	*out = v;
	return 0;
}

/* --- the report ---------------------------------------------------------- */

static uint64_t read_dr(int n)
{
	uint64_t v = 0;

	switch (n) {
	case 0: __asm__ volatile("mov %%dr0, %0" : "=r"(v)); break;
	case 1: __asm__ volatile("mov %%dr1, %0" : "=r"(v)); break;
	case 2: __asm__ volatile("mov %%dr2, %0" : "=r"(v)); break;
	default: __asm__ volatile("mov %%dr3, %0" : "=r"(v)); break;
	}
	return v;
}

/* "boot stack of CPU 0" for the stack whose guard page holds addr, if any. */
static bool overflow_of(uint64_t addr, char *buf, size_t size)
{
	struct stack_info si;

	if (!stack_guard_lookup(addr, &si))
		return false;
	if (si.cpu >= 0)
		nk_snprintf(buf, size, "%s stack of CPU %d", si.name, si.cpu);
	else
		nk_snprintf(buf, size, "%s stack", si.name);
	return true;
}

static void describe_stack(const char *what, uint64_t addr)
{
	struct stack_info si;
	char which[48];

	if (overflow_of(addr, which, sizeof(which))) {
		pr_emerg("%s: in the guard page below the %s", what, which);
		return;
	}
	if (stack_lookup(addr, &si)) {
		if (si.cpu >= 0)
			pr_emerg("%s: %s stack of CPU %d [%016lx-%016lx]", what, si.name, si.cpu,
				 (unsigned long)si.lo, (unsigned long)si.hi);
		else
			pr_emerg("%s: %s [%016lx-%016lx]", what, si.name,
				 (unsigned long)si.lo, (unsigned long)si.hi);
	}
}

static void report_pf(const struct regs *r, uint64_t cr2)
{
	uint64_t e = r->error;
	char which[48];

	if (overflow_of(cr2, which, sizeof(which)))
		pr_emerg("BUG: kernel stack overflow: %s (access to its guard page at %016lx)",
			 which, (unsigned long)cr2);
	else
		pr_emerg("BUG: unable to handle page fault for address %016lx", (unsigned long)cr2);
	pr_emerg("#PF: %s %s in %s mode: %s%s (error code 0x%lx)",
		 (e & PF_USER) ? "user" : "supervisor",
		 (e & PF_INSTR) ? "instruction fetch" : (e & PF_WRITE) ? "write access" : "read access",
		 (e & PF_USER) ? "user" : "kernel",
		 (e & PF_PROT) ? "protection violation" : "page not present",
		 (e & PF_RSVD) ? ", reserved bit set in a paging entry" : "",
		 (unsigned long)e);
}

/*
 * A #DF is what a #PF becomes when the CPU cannot push its frame: a kernel
 * stack that overflowed into its guard page.  The saved RIP/RSP are those of
 * the faulting context (in practice; the SDM calls them undefined).
 */
static void report_df(const struct regs *r, uint64_t cr2)
{
	char which[48];

	uint64_t probe;

	if (overflow_of(cr2, which, sizeof(which)) || overflow_of(r->rsp, which, sizeof(which)) ||
	    overflow_of(r->rsp - 8, which, sizeof(which))) {
		pr_emerg("BUG: kernel stack overflow: %s (RSP %016lx, CR2 %016lx): the #PF "
			 "could not be pushed on the overflowed stack, so the CPU raised #DF",
			 which, (unsigned long)r->rsp, (unsigned long)cr2);
	} else if (cr2 + PAGE_SIZE >= r->rsp && cr2 < r->rsp + 64 &&
		   probe_read_u64((const void *)(cr2 & ~7ul), &probe) != 0) {
		/* A stack no lookup knows (see backtrace_set_stack_lookup), same symptom. */
		pr_emerg("BUG: kernel stack overflow: RSP %016lx, CR2 %016lx is unmapped just below it; "
			 "the #PF could not be pushed, so the CPU raised #DF",
			 (unsigned long)r->rsp, (unsigned long)cr2);
	} else {
		pr_emerg("BUG: double fault: an exception occurred while the CPU was delivering "
			 "another one (saved RIP and RSP may be imprecise)");
	}
}

static void report_selector_error(uint64_t e)
{
	const char *ext = (e & 1) ? " (during an external event)" : "";

	if (e == 0)
		return;
	if (e & 2)
		pr_emerg("error code 0x%lx: IDT vector 0x%lx%s", (unsigned long)e,
			 (unsigned long)(e >> 3), ext);
	else
		pr_emerg("error code 0x%lx: %s selector 0x%lx%s", (unsigned long)e,
			 (e & 4) ? "LDT" : "GDT", (unsigned long)(e & ~7ul), ext);
}

/* The 8 bytes before RIP and the 8 at it, read without risking a fault. */
static void report_code(uint64_t rip)
{
	uint8_t bytes[16];
	uint64_t w[2];
	char line[80];
	int n = 0;

	if (probe_read_u64((const void *)(rip - 8), &w[0]) || probe_read_u64((const void *)rip, &w[1])) {
		pr_emerg("Code: unreadable at %016lx", (unsigned long)rip);
		return;
	}
	__builtin_memcpy(bytes, w, sizeof(bytes));
	for (int i = 0; i < 16; i++)
		n += nk_snprintf(line + n, sizeof(line) - (size_t)n, i == 8 ? "<%02x> " : "%02x ", bytes[i]);
	pr_emerg("Code: %s", line);
}

static void report_regs(const struct regs *r, uint64_t cr2)
{
	char sym[128];

	ksym_format(sym, sizeof(sym), r->rip, false);
	pr_emerg("RIP: %04lx:[<%016lx>] %s", (unsigned long)r->cs, (unsigned long)r->rip, sym);
	pr_emerg("RSP: %04lx:%016lx  RFLAGS: %016lx", (unsigned long)r->ss,
		 (unsigned long)r->rsp, (unsigned long)r->rflags);
	pr_emerg("RAX: %016lx RBX: %016lx RCX: %016lx",
		 (unsigned long)r->rax, (unsigned long)r->rbx, (unsigned long)r->rcx);
	pr_emerg("RDX: %016lx RSI: %016lx RDI: %016lx",
		 (unsigned long)r->rdx, (unsigned long)r->rsi, (unsigned long)r->rdi);
	pr_emerg("RBP: %016lx R08: %016lx R09: %016lx",
		 (unsigned long)r->rbp, (unsigned long)r->r8, (unsigned long)r->r9);
	pr_emerg("R10: %016lx R11: %016lx R12: %016lx",
		 (unsigned long)r->r10, (unsigned long)r->r11, (unsigned long)r->r12);
	pr_emerg("R13: %016lx R14: %016lx R15: %016lx",
		 (unsigned long)r->r13, (unsigned long)r->r14, (unsigned long)r->r15);
	pr_emerg("CR0: %016lx CR2: %016lx CR3: %016lx CR4: %016lx",
		 (unsigned long)read_cr0(), (unsigned long)cr2,
		 (unsigned long)read_cr3(), (unsigned long)read_cr4());
	pr_emerg("GS base: %016lx  kernel GS base: %016lx",
		 (unsigned long)rdmsr(MSR_GS_BASE), (unsigned long)rdmsr(MSR_KERNEL_GS_BASE));
}

static _Noreturn void die(struct regs *r, uint64_t cr2)
{
	unsigned v = (unsigned)r->vector;
	unsigned cpu;
	char sym[128];

	panic_begin();
	cpu = cpu_id_safe();

	if (v == X86_TRAP_PF)
		report_pf(r, cr2);
	else if (v == X86_TRAP_DF)
		report_df(r, cr2);
	pr_emerg("%s: %s (vector %u), error code 0x%lx, in %s mode, CPU %u",
		 trap_mnemonic(v), trap_name(v), v, (unsigned long)r->error,
		 regs_from_user(r) ? "user" : "kernel", cpu);
	if (v == X86_TRAP_TS || v == X86_TRAP_NP || v == X86_TRAP_SS || v == X86_TRAP_GP)
		report_selector_error(r->error);
	if (v == X86_TRAP_DB)
		pr_emerg("DR6: %016lx DR7: %016lx DR0-3: %016lx %016lx %016lx %016lx",
			 (unsigned long)hook_dr6[cpu], (unsigned long)read_dr7(),
			 (unsigned long)read_dr(0), (unsigned long)read_dr(1),
			 (unsigned long)read_dr(2), (unsigned long)read_dr(3));
	report_regs(r, cr2);
	if (!regs_from_user(r)) {
		describe_stack("Stack", r->rsp);
		report_code(r->rip);
		pr_emerg("Call Trace:");
		backtrace_print(NK_LOG_EMERG, r->rip, r->rsp, r->rbp);
	}
	int bad = stacks_check_canaries(cpu);
	if (bad)
		pr_emerg("Stack canaries: %d damaged on CPU %u", bad, cpu);

	ksym_format(sym, sizeof(sym), r->rip, false);
	/* The #MC handler logged the banks already (mce.c); name its verdict. */
	if (v == X86_TRAP_MC)
		panic_end("Fatal machine check on CPU %u: %s (in %s)", cpu, mce_fatal_reason(cpu), sym);
	panic_end("Fatal exception: %s %s in %s", trap_mnemonic(v), trap_name(v), sym);
}

/* --- entry points -------------------------------------------------------- */

/*
 * For a #DB: keep DR6 where hooks find it (trap_debug_status) and reset the
 * register, which the CPU only ever sets bits in.  Returns the value to put
 * back when this #DB is done (a #DB may nest in another one's hook).
 * NMI-safe: yes.
 */
static uint64_t debug_status_enter(unsigned cpu)
{
	uint64_t outer = hook_dr6[cpu];

	hook_dr6[cpu] = read_dr6();
	write_dr6(DR6_RESET);
	return outer;
}

/* --- machine checks ------------------------------------------------------ */

/*
 * A #MC from ring 3, on the task's kernel stack.  The vector's own hooks
 * (tests) come first; then the machine-check handler decides.  A task that
 * consumed an action-required error is killed by the scheduler's ring-3
 * fault hook (TRAP_ALL), like any other fatal user exception.
 */
static bool machine_check_user(struct regs *r)
{
	if (run_chain(X86_TRAP_MC, r))
		return true;
	switch (mce_handle(r)) {
	case MCE_RECOVERED:
		return true;
	case MCE_KILL_TASK:
		return run_chain(TRAP_ALL, r);
	case MCE_FATAL:
		break;
	}
	return false;
}

/*
 * A #MC from kernel mode, on the #MC IST stack: anywhere, NMI handlers and
 * the NMI entry included.  NMI-like: hooks and handler run bracketed with
 * rcu_nmi_enter/exit (it may interrupt idle), take no lock, and the way back
 * is chosen by mce_leave(), which may not return (no IRET in the NMI entry);
 * gs_base is the GS base the #MC interrupted, which such a return restores.
 */
static void machine_check_kernel(struct regs *r, uint64_t cr2, uint64_t gs_base)
{
	rcu_nmi_enter();
	bool hooked = run_chain(X86_TRAP_MC, r);
	enum mce_verdict v = hooked ? MCE_RECOVERED : mce_handle(r);
	rcu_nmi_exit();
	if (v != MCE_RECOVERED)
		die(r, cr2);	/* MCE_KILL_TASK cannot come from kernel mode */
	if (!hooked && !mce_leave(r, cr2, gs_base))
		die(r, cr2);
}

/*
 * Ordinary exceptions, and #DB / #MC from ring 3 (moved to the task's
 * kernel stack by the entry), interrupts disabled.  May run in NMI context
 * (a #BP or recoverable #PF inside an NMI handler): the fixup and hook paths
 * take no lock.
 */
void trap_handle(struct regs *r)
{
	unsigned v = (unsigned)r->vector;
	uint64_t cr2 = v == X86_TRAP_PF ? read_cr2() : 0;
	unsigned cpu = cpu_id_safe();
	uint64_t outer_dr6 = 0;

	irq_account(cpu, v);
	if (v == X86_TRAP_MC) {
		if (!machine_check_user(r))
			die(r, cr2);
		irq_exit_check(r);
		return;
	}
	if ((v == X86_TRAP_PF || v == X86_TRAP_GP || v == X86_TRAP_SS) && !regs_from_user(r)) {
		uint64_t fixup = extable_lookup(r->rip);
		if (fixup) {
			r->rip = fixup;
			return;
		}
	}
	if (v == X86_TRAP_DB)
		outer_dr6 = debug_status_enter(cpu);

	uint64_t outer_cr2 = hook_cr2[cpu];
	bool handled;
	/* An int3 can hit idle code: its hooks run with RCU watching (docs/rcu-nmi.md). */
	bool rcu = v == X86_TRAP_BP && !regs_from_user(r);
	hook_cr2[cpu] = cr2;
	if (rcu)
		rcu_nmi_enter();
	handled = run_hooks(v, r);
	if (rcu)
		rcu_nmi_exit();
	hook_cr2[cpu] = outer_cr2;
	if (handled) {
		if (v == X86_TRAP_DB)
			hook_dr6[cpu] = outer_dr6;
		irq_exit_check(r);
		return;
	}
	die(r, cr2);
}

/*
 * #DB and #MC from kernel mode, and every #DF, on their IST stacks, GS base
 * already corrected by the entry (gs_base: the one it found, which the
 * entry's exit puts back).  May run in NMI context and anywhere else: no
 * lock, no scheduling.
 */
void trap_handle_paranoid(struct regs *r, uint64_t gs_base)
{
	unsigned v = (unsigned)r->vector;
	unsigned cpu = cpu_id_safe();
	uint64_t outer_dr6 = 0;
	bool handled = false;

	irq_account(cpu, v);
	if (v == X86_TRAP_MC) {
		machine_check_kernel(r, read_cr2(), gs_base);
		return;
	}
	if (v == X86_TRAP_DB)
		outer_dr6 = debug_status_enter(cpu);
	/*
	 * #DF is an abort: nothing can resume after it, so no hooks.  #DB can
	 * interrupt idle: its hooks run with RCU watching, bracketed like an
	 * NMI (docs/rcu-nmi.md).
	 */
	if (v != X86_TRAP_DF) {
		rcu_nmi_enter();
		handled = run_hooks(v, r);
		rcu_nmi_exit();
	}
	if (handled) {
		if (v == X86_TRAP_DB)
			hook_dr6[cpu] = outer_dr6;
		return;
	}
	die(r, read_cr2());
}
