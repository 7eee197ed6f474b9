/*
 * nmi.c: the C half of the x86-64 NMI entry.  do_nmi() runs for every NMI
 * that nmi_entry.S decided is a first NMI (or a repeat of one), on the NMI
 * stack, or on the task's kernel stack when the NMI came from ring 3.
 * It preserves what the interrupted code cannot save for itself (CR2, and
 * DR7 while the handler runs), then hands over to the portable core.
 *
 * Everything here runs in NMI context: no locks, no waiting, bounded time.
 */
#include <stddef.h>
#include <arch/nmi.h>
#include <arch/cpu.h>
#include <arch/gdt.h>
#include <arch/percpu.h>
#include <nmikit/nmi.h>

/* The entry assembly relies on these adjacencies (see nmi_entry.S). */
_Static_assert(offsetof(struct nmi_stack_top, working) ==
	       offsetof(struct nmi_stack_top, saved) + sizeof(struct iret_frame),
	       "working frame must sit right above the saved frame");
_Static_assert(offsetof(struct nmi_stack_top, executing) ==
	       offsetof(struct nmi_stack_top, working) + sizeof(struct iret_frame),
	       "executing must sit right above the working frame");
_Static_assert(offsetof(struct nmi_stack_top, pad) ==
	       offsetof(struct nmi_stack_top, hw) + sizeof(struct iret_frame),
	       "the IST pointer must point just above the hardware frame");
_Static_assert(offsetof(struct nmi_stack_top, percpu) ==
	       offsetof(struct nmi_stack_top, pad) + IST_PERCPU_SLOT,
	       "percpu slot must match gdt.c");
_Static_assert(offsetof(struct regs, rip) + sizeof(struct iret_frame) == sizeof(struct regs),
	       "struct regs must end with the iret frame");

bool nmi_exit_or_repeat(uint64_t addr)
{
	return (addr >= (uint64_t)repeat_nmi && addr < (uint64_t)end_repeat_nmi) ||
	       (addr >= (uint64_t)nmi_exit_tail && addr <= (uint64_t)nmi_final_iret);
}

bool nmi_int3_forbidden(uint64_t addr)
{
	return nmi_breakpoint_forbidden(addr) || nmi_exit_or_repeat(addr);
}

#define DR7_ENABLES	0xffull		/* L0-L3, G0-G3 */
#define DR7_RESET	0x400ull

volatile bool nmi_keep_dr7;
void (*volatile nmi_test_hook)(struct regs *r);

struct nmi_stack_top *nmi_stack_top_of(unsigned int cpu)
{
	uint64_t ist = ist_top(cpu, IST_NMI);
	return (struct nmi_stack_top *)(ist + 16 - sizeof(struct nmi_stack_top));
}

bool nmi_breakpoint_forbidden(uint64_t addr)
{
	return addr >= (uint64_t)asm_nmi && addr < (uint64_t)nmi_prologue_end;
}

void do_nmi(struct regs *r)
{
	/*
	 * CR2: the NMI may have interrupted a #PF handler before it read CR2; a
	 * #PF inside our handler would overwrite it.  DR7: a hardware breakpoint
	 * set by the interrupted code must not fire inside the NMI handler.
	 */
	uint64_t cr2 = read_cr2();
	uint64_t dr7 = read_dr7();
	/*
	 * Nested NMIs are counted by the assembly in percpu (nmi_asm_nested,
	 * nmi_asm_in_repeat) and read from there; this function stays free of
	 * loops so the nested-NMI test can reach every one of its instructions.
	 */
	bool dr7_off = (dr7 & DR7_ENABLES) && !nmi_keep_dr7;

	if (dr7_off)
		write_dr7(DR7_RESET);

	struct nmi_frame f = {
		.ip = r->rip,
		.sp = r->rsp,
		.from_user = regs_from_user(r),
		.regs = r,
	};
	void (*hook)(struct regs *) = nmi_test_hook;
	if (hook)
		hook(r);
	nmi_entry(&f);

	if (dr7_off)
		write_dr7(dr7);
	if (read_cr2() != cr2)
		write_cr2(cr2);
}
