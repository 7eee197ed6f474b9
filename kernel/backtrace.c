/*
 * backtrace.c: frame-pointer stack walks for crash reports, and the table of
 * known stacks that keeps the walk from reading anything it should not.
 *
 * The kernel is built with -fno-omit-frame-pointer, so every C frame begins
 * with {caller's RBP, return address} and RBP points at it.  The entry stubs
 * add the same kind of record for the interrupted context (entry.S), and the
 * boot path starts each stack with RBP = 0.  A walk follows that chain, but
 * reads a frame only once it is sure the frame lies inside a known stack,
 * and then through probe_read_u64, so that even a stack this file only
 * guesses at (the "kernel data" fallback, which can hold unmapped guard
 * pages of stacks it does not know) cannot make the report fault.
 */
#include <kernel/backtrace.h>
#include <arch/percpu.h>
#include <arch/traps.h>
#include <nmikit/format.h>
#include <nmikit/log.h>

extern char __data_start[], __bss_end[];

static stack_lookup_fn extra_lookup;

void backtrace_set_stack_lookup(stack_lookup_fn fn)
{
	__atomic_store_n(&extra_lookup, fn, __ATOMIC_RELEASE);
}

/*
 * The per-CPU stacks of struct cpu_stacks.  cpu_stacks[] is one array, so
 * the CPU follows from the address by division, in constant time.
 * NMI-safe: yes.
 */
static bool cpu_stack_lookup(uint64_t addr, struct stack_info *out)
{
	uint64_t base = (uint64_t)cpu_stacks;

	if (addr < base || addr >= base + sizeof(cpu_stacks))
		return false;
	unsigned int cpu = (unsigned int)((addr - base) / sizeof(struct cpu_stacks));
	struct cpu_stacks *s = &cpu_stacks[cpu];
	const struct {
		const uint8_t *lo;
		uint64_t size;
		const char *name;
	} known[] = {
		{ s->boot, sizeof(s->boot), "boot" },
		{ s->nmi, sizeof(s->nmi), "NMI" },
		{ s->db, sizeof(s->db), "#DB" },
		{ s->mc, sizeof(s->mc), "#MC" },
		{ s->df, sizeof(s->df), "#DF" },
	};

	for (unsigned int i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		uint64_t lo = (uint64_t)known[i].lo;
		if (addr >= lo && addr < lo + known[i].size) {
			out->lo = lo;
			out->hi = lo + known[i].size;
			out->name = known[i].name;
			out->cpu = (int)cpu;
			return true;
		}
	}
	return false;	/* a guard page */
}

/* NMI-safe: yes, provided the registered lookup is (its documented contract). */
static bool precise_stack_lookup(uint64_t addr, struct stack_info *out)
{
	stack_lookup_fn fn = __atomic_load_n(&extra_lookup, __ATOMIC_ACQUIRE);

	if (cpu_stack_lookup(addr, out))
		return true;
	return fn && fn(addr, out);
}

/* NMI-safe: yes. */
bool stack_lookup(uint64_t addr, struct stack_info *out)
{
	uint64_t cs = (uint64_t)cpu_stacks;

	if (precise_stack_lookup(addr, out))
		return true;
	/* A guard page of cpu_stacks[] is not a stack, whatever else contains it. */
	if (addr >= cs && addr < cs + sizeof(cpu_stacks))
		return false;
	/* The early boot stack (boot.S) and any stack carved out of .data/.bss. */
	if (addr >= (uint64_t)__data_start && addr < (uint64_t)__bss_end) {
		out->lo = (uint64_t)__data_start;
		out->hi = (uint64_t)__bss_end;
		out->name = "kernel data";
		out->cpu = -1;
		return true;
	}
	return false;
}

/* NMI-safe: yes. */
bool stack_guard_lookup(uint64_t addr, struct stack_info *out)
{
	uint64_t above = (addr & ~(PAGE_SIZE - 1)) + PAGE_SIZE;
	struct stack_info si;

	if (precise_stack_lookup(addr, &si))
		return false;			/* inside a stack, not below one */
	if (!precise_stack_lookup(above, &si) || si.lo != above)
		return false;
	*out = si;
	return true;
}

static bool canonical(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

static void print_frame(int level, uint64_t addr, bool return_address)
{
	char sym[128];

	ksym_format(sym, sizeof(sym), addr, return_address);
	nk_log(level, "  [<%016lx>] %s", (unsigned long)addr, sym);
}

/*
 * Follow the chain from fp for at most `budget` frames.  A frame is read only
 * when it is 8-byte aligned, canonical and entirely inside one known stack;
 * within one stack frames must move strictly upwards (no loops).  The chain
 * may change stacks (from an IST stack to the interrupted one, say).
 * NMI-safe: yes (bounded; a read that faults is fixed up and ends the walk).
 */
static void walk(int level, uint64_t fp, int budget)
{
	struct stack_info prev = { 0, 0, NULL, -1 };
	uint64_t prev_fp = 0;

	for (int i = 0; i < budget; i++) {
		struct stack_info si;

		if (fp == 0)
			return;		/* the bottom of a stack: RBP = 0 */
		if (!canonical(fp) || (fp & 7)) {
			nk_log(level, "  (frame pointer %016lx is %s; stopping)", (unsigned long)fp,
			       (fp & 7) ? "misaligned" : "non-canonical");
			return;
		}
		if (!stack_lookup(fp, &si) || fp + 16 > si.hi) {
			nk_log(level, "  (frame pointer %016lx is outside the known stacks; stopping)",
			       (unsigned long)fp);
			return;
		}
		if (prev.name && si.lo == prev.lo && fp <= prev_fp) {
			nk_log(level, "  (frame pointer %016lx does not move up the stack; stopping)",
			       (unsigned long)fp);
			return;
		}
		uint64_t next, ret;
		if (probe_read_u64((const void *)fp, &next) || probe_read_u64((const void *)(fp + 8), &ret)) {
			nk_log(level, "  (frame at %016lx is unreadable; stopping)", (unsigned long)fp);
			return;
		}
		if (ret == 0)
			return;		/* the record entry.S leaves for ring 3 */
		print_frame(level, ret, true);
		prev = si;
		prev_fp = fp;
		fp = next;
	}
	if (fp != 0)
		nk_log(level, "  (stopped after %d frames)", BACKTRACE_MAX_FRAMES);
}

/*
 * Whether the code just before `ret` looks like a call: E8 rel32, or FF /2
 * (an indirect call, 2 to 7 bytes with REX, SIB and displacement).  NMI-safe: yes (reads
 * kernel text only, which is always mapped).
 */
static bool after_call(uint64_t ret)
{
	const volatile uint8_t *b = (const volatile uint8_t *)ret;

	if (!ksym_lookup(ret - 8, NULL, NULL) || !ksym_lookup(ret - 1, NULL, NULL))
		return false;
	if (b[-5] == 0xe8)
		return true;
	for (int len = 2; len <= 7; len++) {
		if (b[-len] == 0xff && (b[1 - len] & 0x38) == 0x10)
			return true;
	}
	return false;
}

/*
 * The function that faulted may not have built its frame: leaf functions
 * that use no stack get none (GCC omits it even with
 * -fno-omit-frame-pointer), and shrink-wrapped functions build it late.
 * Then RBP still belongs to the caller's caller and the return address into
 * the caller sits at [RSP], missed by the chain.  Print it, marked "?" as
 * a guess, when it looks like one (a code address right after a call) and
 * the chain would not print it anyway.
 */
static void frameless_caller(int level, uint64_t rsp, uint64_t rbp)
{
	struct stack_info si;
	uint64_t guess, chained = 0;

	if ((rsp & 7) || !stack_lookup(rsp, &si) || rsp + 8 > si.hi)
		return;
	if (probe_read_u64((const void *)rsp, &guess) || !after_call(guess))
		return;
	if (!(rbp & 7) && stack_lookup(rbp, &si) && rbp + 16 <= si.hi &&
	    probe_read_u64((const void *)(rbp + 8), &chained))
		chained = 0;
	if (guess == chained)
		return;

	char sym[128];
	ksym_format(sym, sizeof(sym), guess, true);
	nk_log(level, "  [<%016lx>] ? %s", (unsigned long)guess, sym);
}

/* NMI-safe: yes. */
void backtrace_print(int level, uint64_t rip, uint64_t rsp, uint64_t rbp)
{
	print_frame(level, rip, false);
	if (rsp)
		frameless_caller(level, rsp, rbp);
	walk(level, rbp, BACKTRACE_MAX_FRAMES - 1);
}

/* NMI-safe: yes. */
__attribute__((noinline)) void backtrace_print_here(int level)
{
	/* Our own frame record: {caller's RBP, return address into the caller}. */
	walk(level, (uint64_t)__builtin_frame_address(0), BACKTRACE_MAX_FRAMES);
}
