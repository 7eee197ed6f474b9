/*
 * watchdog_report.c: what the lockup reports and all-CPU backtraces print.
 * The register dump and call trace of an interrupted context (printed live,
 * in the locked CPU's own NMI or tick), and for nmi_backtrace(): a capture of
 * each answering CPU's registers and return addresses taken in its NMI, which
 * the requesting CPU prints afterwards, one CPU at a time.
 *
 * Everything here may run in NMI context: per-CPU buffers, the lock-free log,
 * the symbol table, and stack reads checked against the known stacks and
 * made through probe_read_u64 (a bad frame ends the walk, never faults).
 */
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <arch/traps.h>
#include <kernel/backtrace.h>
#include <kernel/sched.h>
#include <kernel/watchdog.h>
#include <nmikit/log.h>
#include <nmikit/nmi_backtrace.h>

struct wd_snapshot {
	struct regs regs;
	bool have_regs;
	uint32_t task_id;
	char task[TASK_NAME_MAX];
	unsigned nframes;
	uint64_t frames[BACKTRACE_MAX_FRAMES];
	const char *stack;		/* name of the stack RSP was on */
	const char *stopped;		/* why the walk stopped early, or NULL */
};

static struct wd_snapshot snaps[MAX_CPUS];

static void task_line(unsigned cpu, const struct task *t, int level)
{
	if (t)
		nk_log(level, "CPU: %u PID: %u Comm: %s%s", cpu, t->id, t->name,
		       t->is_idle ? " (idle)" : "");
	else
		nk_log(level, "CPU: %u PID: ? Comm: ?", cpu);
}

static void regs_lines(const struct regs *r, int level)
{
	char sym[128];

	ksym_format(sym, sizeof(sym), r->rip, false);
	nk_log(level, "RIP: %04lx:[<%016lx>] %s", (unsigned long)r->cs, (unsigned long)r->rip, sym);
	nk_log(level, "RSP: %04lx:%016lx EFLAGS: %08lx (interrupts %s)", (unsigned long)r->ss,
	       (unsigned long)r->rsp, (unsigned long)r->rflags,
	       (r->rflags & RFLAGS_IF) ? "on" : "off");
	nk_log(level, "RAX: %016lx RBX: %016lx RCX: %016lx", (unsigned long)r->rax,
	       (unsigned long)r->rbx, (unsigned long)r->rcx);
	nk_log(level, "RDX: %016lx RSI: %016lx RDI: %016lx", (unsigned long)r->rdx,
	       (unsigned long)r->rsi, (unsigned long)r->rdi);
	nk_log(level, "RBP: %016lx R08: %016lx R09: %016lx", (unsigned long)r->rbp,
	       (unsigned long)r->r8, (unsigned long)r->r9);
	nk_log(level, "R10: %016lx R11: %016lx R12: %016lx", (unsigned long)r->r10,
	       (unsigned long)r->r11, (unsigned long)r->r12);
	nk_log(level, "R13: %016lx R14: %016lx R15: %016lx", (unsigned long)r->r13,
	       (unsigned long)r->r14, (unsigned long)r->r15);
}

/* NMI-safe: yes (log, symbol table, backtrace_print). */
void wd_show_regs_r(unsigned cpu, const struct regs *r, int level)
{
	task_line(cpu, task_current(), level);
	if (!r) {
		nk_log(level, "(no register block)");
		return;
	}
	regs_lines(r, level);
	if (regs_from_user(r)) {
		nk_log(level, "(interrupted in user mode: no kernel call trace)");
		return;
	}
	nk_log(level, "Call Trace:");
	backtrace_print(level, r->rip, r->rsp, r->rbp);
}

/* NMI-safe: yes. */
void wd_show_regs(unsigned cpu, const struct nmi_frame *f, int level)
{
	if (!f) {
		/* Reported by another CPU: the locked one could not show its own. */
		nk_log(level, "(no registers: cpu %u did not take an NMI to show them)", cpu);
		return;
	}
	wd_show_regs_r(cpu, (const struct regs *)f->regs, level);
}

static bool canonical(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

/*
 * Follow the frame-pointer chain from `fp`, storing return addresses.  The
 * same discipline as the crash reports' walker: a frame is read only when
 * aligned, canonical, inside one known stack and above the previous frame
 * on that stack, and then through probe_read_u64.  NMI-safe: yes (bounded).
 */
static void walk_capture(struct wd_snapshot *s, uint64_t fp)
{
	struct stack_info prev = { 0, 0, NULL, -1 };
	uint64_t prev_fp = 0;

	s->stopped = NULL;
	while (s->nframes < BACKTRACE_MAX_FRAMES) {
		struct stack_info si;
		uint64_t next, ret;

		if (fp == 0)
			return;
		if (!canonical(fp) || (fp & 7)) {
			s->stopped = "bad frame pointer";
			return;
		}
		if (!stack_lookup(fp, &si) || fp + 16 > si.hi) {
			s->stopped = "frame pointer outside the known stacks";
			return;
		}
		if (prev.name && si.lo == prev.lo && fp <= prev_fp) {
			s->stopped = "frame pointer does not move up the stack";
			return;
		}
		if (probe_read_u64((const void *)fp, &next) ||
		    probe_read_u64((const void *)(fp + 8), &ret)) {
			s->stopped = "unreadable frame";
			return;
		}
		if (ret == 0)
			return;
		s->frames[s->nframes++] = ret;
		prev = si;
		prev_fp = fp;
		fp = next;
	}
	if (fp)
		s->stopped = "too many frames";
}

/* nmi_backtrace's capture hook.  NMI context on `cpu`, its own buffer only. */
static void bt_capture(unsigned cpu, const struct nmi_frame *f)
{
	struct wd_snapshot *s;
	const struct task *t = task_current();
	struct stack_info si;

	if (cpu >= MAX_CPUS)
		return;
	s = &snaps[cpu];
	s->nframes = 0;
	s->stopped = NULL;
	s->stack = NULL;
	s->have_regs = f && f->regs;
	s->task_id = t ? t->id : 0;
	s->task[0] = '\0';
	if (t) {
		unsigned i = 0;
		for (; i + 1 < sizeof(s->task) && t->name[i]; i++)
			s->task[i] = t->name[i];
		s->task[i] = '\0';
	}
	if (!s->have_regs)
		return;
	s->regs = *(const struct regs *)f->regs;
	if (regs_from_user(&s->regs))
		return;
	if (stack_lookup(s->regs.rsp, &si))
		s->stack = si.name;
	walk_capture(s, s->regs.rbp);
}

/* nmi_backtrace's print hook: the caller's context (NMI-safe all the same). */
static void bt_print(unsigned cpu, int level)
{
	const struct wd_snapshot *s;
	char sym[128];

	if (cpu >= MAX_CPUS)
		return;
	s = &snaps[cpu];
	nk_log(level, "NMI backtrace for cpu %u", cpu);
	nk_log(level, "CPU: %u PID: %u Comm: %s", cpu, s->task_id, s->task[0] ? s->task : "?");
	if (!s->have_regs) {
		nk_log(level, "(no register block)");
		return;
	}
	regs_lines(&s->regs, level);
	if (regs_from_user(&s->regs)) {
		nk_log(level, "(interrupted in user mode: no kernel call trace)");
		return;
	}
	nk_log(level, "Call Trace:%s%s", s->stack ? " on the " : "", s->stack ? s->stack : "");
	ksym_format(sym, sizeof(sym), s->regs.rip, false);
	nk_log(level, "  [<%016lx>] %s", (unsigned long)s->regs.rip, sym);
	for (unsigned i = 0; i < s->nframes; i++) {
		ksym_format(sym, sizeof(sym), s->frames[i], true);
		nk_log(level, "  [<%016lx>] %s", (unsigned long)s->frames[i], sym);
	}
	if (s->stopped)
		nk_log(level, "  (%s; stopping)", s->stopped);
}

/*
 * nmi_backtrace's ask hook: ring `cpu`'s doorbell, so that the watchdog's
 * NMI handler there runs nmi_backtrace_nmi() (it runs it for no other NMI).
 * The core calls it after marking the request, before sending.  NMI-safe.
 */
static void bt_ask(unsigned cpu)
{
	wd_nmi_request(cpu, WD_REQ_BACKTRACE);
}

static const struct watchdog_ops wd_ops = { .show_regs = wd_show_regs };
static const struct nmi_backtrace_ops bt_ops = {
	.capture = bt_capture, .print = bt_print, .ask = bt_ask,
};

void wd_report_init(void)
{
	watchdog_set_ops(&wd_ops);
	nmi_backtrace_set_ops(&bt_ops);
}
