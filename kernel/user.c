/*
 * user.c: ring-3 tasks.  Their user stacks (a static pool, mapped
 * user-accessible, each with an unmapped guard page below), their creation
 * with a chosen initial register state, and what happens when one faults:
 * it is killed with a message and the kernel carries on.
 */
#include <kernel/sched.h>
#include <kernel/panic.h>
#include <arch/cpu.h>
#include <arch/paging.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <arch/syscall.h>
#include <arch/traps.h>
#include <nmikit/log.h>

struct ustack_slot {
	uint8_t guard[PAGE_SIZE];
	uint8_t stack[TASK_USTACK_SIZE];
};

/* Slot i belongs to task slot i; kernel threads leave theirs unused. */
static struct ustack_slot ustacks[TASK_MAX] __attribute__((aligned(PAGE_SIZE)));

/* IRETQ pops the frame at the top of the kernel stack: keep it aligned. */
_Static_assert(sizeof(struct regs) % 16 == 0, "struct regs must keep the stack 16-byte aligned");

static bool user_trap_hook(struct regs *r)
{
	return sched_handle_user_fault(r, trap_name((unsigned int)r->vector));
}

void user_init(void)
{
	for (unsigned int i = 0; i < TASK_MAX; i++) {
		paging_set_page((uint64_t)ustacks[i].guard, 0);
		paging_set_range((uint64_t)ustacks[i].stack, TASK_USTACK_SIZE,
				 PTE_P | PTE_W | PTE_U | PTE_NX);
	}
	/* Asked after each vector's own hooks, before the report-and-panic. */
	if (trap_set_handler(TRAP_ALL, user_trap_hook) != 0)
		panic("sched: cannot install the ring-3 fault hook");
}

struct task *task_create_user_spec(const struct user_task_spec *spec)
{
	if (!addr_is_canonical(spec->regs.rip))
		return NULL;
	struct task *t = task_alloc(spec->name, spec->cpu, true);
	if (!t)
		return NULL;
	t->ustack_base = ustacks[t->slot].stack;
	t->ustack_top = (uint64_t)(t->ustack_base + TASK_USTACK_SIZE);
	t->fault_fn = spec->fault_fn;

	/*
	 * The first return to ring 3 is an IRETQ from a struct regs at the top
	 * of the kernel stack, exactly where an interrupt from ring 3 would
	 * have left one.
	 */
	struct regs *f = (struct regs *)(t->kstack_top - sizeof(struct regs));
	*f = spec->regs;
	f->vector = ~0ull;
	f->error = 0;
	if (spec->own_stack) {
		uint64_t ret = (uint64_t)user_return_to_exit;
		f->rsp = t->ustack_top - sizeof(ret);
		copy_to_user((void *)f->rsp, &ret, sizeof(ret));
	}
	user_regs_sanitize(f);
	task_prepare_first_switch(t, (uint64_t)f);
	task_start(t);
	return t;
}

struct task *task_create_user_regs(const char *name, const struct regs *init,
				   bool own_stack, int cpu)
{
	if (!init)
		return NULL;
	struct user_task_spec spec = {
		.name = name,
		.regs = *init,
		.own_stack = own_stack,
		.cpu = cpu,
	};
	return task_create_user_spec(&spec);
}

struct task *task_create_user(const char *name, user_fn *entry, long arg, int cpu)
{
	struct user_task_spec spec = {
		.name = name,
		.regs = { .rip = (uint64_t)entry, .rdi = (uint64_t)arg, .rflags = RFLAGS_IF },
		.own_stack = true,
		.cpu = cpu,
	};
	return task_create_user_spec(&spec);
}

_Noreturn void user_task_kill(struct regs *r, const char *why, int code)
{
	struct task *t = task_current();

	if (r->vector == X86_TRAP_PF)
		pr_err("user task '%s' (pid %u) killed: %s at rip %#lx, address %#lx, error %#lx",
		       t->name, t->id, why, (unsigned long)r->rip,
		       (unsigned long)trap_fault_address(), (unsigned long)r->error);
	else if (r->vector < X86_EXCEPTIONS)
		pr_err("user task '%s' (pid %u) killed: %s at rip %#lx, error %#lx",
		       t->name, t->id, why, (unsigned long)r->rip, (unsigned long)r->error);
	else
		pr_err("user task '%s' (pid %u) killed: %s at rip %#lx",
		       t->name, t->id, why, (unsigned long)r->rip);

	task_exit(code);
}

bool sched_handle_user_fault(struct regs *r, const char *what)
{
	if (!regs_from_user(r))
		return false;
	struct task *t = task_current();
	if (!t || !t->user)
		return false;	/* ring 3 without a ring-3 task: the caller reports it */

	/*
	 * Every exception from ring 3 reaches its handler on the task's kernel
	 * stack (entry.S moves #DB and #MC off their IST stacks first), which is
	 * what makes switching away from here, for good, safe.
	 */
	if (!on_task_stack(t, read_rsp()))
		panic("ring-3 %s of task '%s' handled off its kernel stack (rsp %#lx)",
		      what, t->name, (unsigned long)read_rsp());
	if (t->fault_fn && t->fault_fn(t, r, what)) {
		if (user_regs_sanitize(r))
			return true;
		user_task_kill(r, "fault handler left a non-canonical rip", TASK_EXIT_BAD_RETURN);
	}
	user_task_kill(r, what, TASK_EXIT_FAULT(r->vector));
}
