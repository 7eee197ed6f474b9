/*
 * nmi.c: the C half of the x86-64 NMI entry.  do_nmi() runs for every NMI
 * that nmi_entry.S decided is a first NMI (or a repeat of one), on the NMI
 * stack, or on the task's kernel stack when the NMI came from ring 3.
 * It parks DR7 while the handler runs if the interrupted code had a
 * breakpoint armed, then hands over to the portable core (CR2 and GS are
 * handled by the assembly around it).
 *
 * Everything here runs in NMI context: no locks, no waiting, bounded time.
 */
#include <stddef.h>
#include <arch/nmi.h>
#include <arch/cpu.h>
#include <arch/gdt.h>
#include <arch/percpu.h>
#include <nmikit/compiler.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

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
/* NMI_CALL_C in nmi_entry.S pushes regs, from_user, sp, ip: this layout. */
_Static_assert(offsetof(struct nmi_frame, ip) == 0 && offsetof(struct nmi_frame, sp) == 8 &&
	       offsetof(struct nmi_frame, from_user) == 16 && offsetof(struct nmi_frame, regs) == 24 &&
	       sizeof(struct nmi_frame) == 32, "struct nmi_frame as nmi_entry.S pushes it");

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

/*
 * The nested NMIs the entry assembly caught on `cpu` (it redirected the
 * outer NMI's IRET to repeat_nmi), for nmi_get_cpu_stats(): read when
 * statistics are read, so the NMI path keeps its single `incq` and never
 * calls into the core for it.  A relaxed load of a counter only `cpu`'s
 * entry writes.
 */
uint64_t os_nmi_arch_nested(unsigned cpu)
{
	if (cpu >= MAX_CPUS)
		return 0;
	return __atomic_load_n(&percpu_area[cpu].nmi_asm_nested, __ATOMIC_RELAXED);
}

bool nmi_breakpoint_forbidden(uint64_t addr)
{
	return addr >= (uint64_t)asm_nmi && addr < (uint64_t)nmi_prologue_end;
}

/* The rare half of do_nmi(): a breakpoint is armed, park DR7 around the dispatch. */
static __attribute__((noinline, optimize("omit-frame-pointer"))) void
do_nmi_dr7_parked(struct nmi_frame *f, uint64_t dr7)
{
	write_dr7(DR7_RESET);
	nmi_entry(f);
	write_dr7(dr7);
}

/*
 * Called by nmi_entry.S with the struct nmi_frame it built from the saved
 * frame; CR2 and the GS base are the assembly's job (see NMI_CALL_C).
 *
 * DR7: a hardware breakpoint set by the interrupted code must not fire
 * inside the NMI handler, so while any of L0-L3/G0-G3 is on, DR7 is parked
 * for the dispatch and put back after.  Without one (the common case) this
 * is a load, a test and a tail call into the core; the parking is out of
 * line, so that no register must be kept across the common call.  Nested
 * NMIs are counted by the assembly in percpu (nmi_asm_nested, nmi_asm_in_repeat); this function
 * stays free of loops so the nested-NMI test reaches every instruction of
 * it (the plain variant takes the parking path, the no-DR7 variant the other).
 */
__attribute__((optimize("omit-frame-pointer"))) void do_nmi(struct nmi_frame *f)
{
	uint64_t dr7 = read_dr7();

	if (NK_LIKELY(!(dr7 & DR7_ENABLES)) || nmi_keep_dr7) {
		nmi_entry(f);	/* a tail call: DR7 is not live across it */
		return;
	}
	do_nmi_dr7_parked(f, dr7);
}
