/*
 * Per-CPU data, reached through the GS base.  %gs:0 holds a pointer to the
 * structure itself so C code gets "this CPU" with one load.  Assembly uses the
 * PERCPU_* offsets generated from this struct by asm-offsets.c.
 *
 * Every IST stack also stores this CPU's percpu pointer in its top slot, so a
 * paranoid entry (NMI, #DB, #MC, #DF) can find the right GS base without
 * trusting whatever GS holds at the moment it interrupted (see docs/nmi-entry.md).
 */
#ifndef ARCH_PERCPU_H
#define ARCH_PERCPU_H

#include <stdint.h>
#include <stdbool.h>

#define MAX_CPUS	256

#define PAGE_SIZE	4096ul
#define NMI_STACK_SIZE	(16 * 1024)
#define DB_STACK_SIZE	(8 * 1024)
#define MC_STACK_SIZE	(8 * 1024)
#define DF_STACK_SIZE	(8 * 1024)
#define BOOT_STACK_SIZE	(16 * 1024)

/* IST slot numbers as programmed into IDT gates (1-based, 0 = no IST). */
#define IST_NMI	1
#define IST_DB	2
#define IST_MC	3
#define IST_DF	4

/* Value written at the bottom of every stack; checked to catch overflows. */
#define STACK_CANARY	0x6e6d696b69744341ull

/*
 * A CPU's stacks, each with an unmapped guard page below it (paging.c unmaps
 * every guard_* page), so running off the bottom of a stack is a #PF (or #DF)
 * that gets reported instead of silently corrupting the stack below.
 */
struct cpu_stacks {
	uint8_t guard_nmi[PAGE_SIZE];
	uint8_t nmi[NMI_STACK_SIZE];
	uint8_t guard_db[PAGE_SIZE];
	uint8_t db[DB_STACK_SIZE];
	uint8_t guard_mc[PAGE_SIZE];
	uint8_t mc[MC_STACK_SIZE];
	uint8_t guard_df[PAGE_SIZE];
	uint8_t df[DF_STACK_SIZE];
	uint8_t guard_boot[PAGE_SIZE];
	uint8_t boot[BOOT_STACK_SIZE];
} __attribute__((aligned(4096)));

struct task;
struct tss;

struct percpu {
	struct percpu *self;		/* must stay first: %gs:0 */
	uint64_t kernel_rsp;		/* SYSCALL entry: current task's kernel stack top */
	uint64_t user_rsp;		/* SYSCALL entry: scratch for the user RSP */
	uint32_t cpu;			/* logical CPU number; 0 is the boot CPU */
	uint32_t apic_id;
	struct task *current;
	struct tss *tss;
	struct cpu_stacks *stacks;
	volatile bool online;
	volatile uint64_t apic_ticks;	/* local APIC timer interrupts */
	volatile uint64_t irq0_ticks;	/* PIT/IRQ0 interrupts seen on this CPU */
	uint64_t preempt_count;
	uint64_t need_resched;
	/* Written by the NMI entry assembly (never by C outside arch/x86_64/nmi.c). */
	uint64_t nmi_asm_nested;	/* nested NMIs that redirected the outer IRET */
	uint64_t nmi_asm_in_repeat;	/* NMIs that hit the repeat_nmi region */
	uint64_t mce_resume_rip;	/* mce_resume.S: where an #MC returns without IRET */
	void *core_block;		/* nmi_cpu_block(cpu): the core's os_cpu_block() */
} __attribute__((aligned(64)));

extern struct percpu percpu_area[MAX_CPUS];
extern struct cpu_stacks cpu_stacks[MAX_CPUS];
extern unsigned int cpus_possible;	/* CPUs listed in the MADT (capped) */

static inline struct percpu *this_cpu(void)
{
	struct percpu *p;
	__asm__ volatile("movq %%gs:0, %0" : "=r"(p));
	return p;
}

static inline unsigned int this_cpu_id(void)
{
	unsigned int id;
	__asm__ volatile("movl %%gs:%c1, %0" : "=r"(id) : "i"(__builtin_offsetof(struct percpu, cpu)));
	return id;
}

/* This CPU's local APIC ID: one GS-relative load (the NMI path's self sends). */
static inline uint32_t this_cpu_apic_id(void)
{
	uint32_t id;
	__asm__ volatile("movl %%gs:%c1, %0" : "=r"(id) : "i"(__builtin_offsetof(struct percpu, apic_id)));
	return id;
}

static inline struct percpu *cpu_data(unsigned int cpu) { return &percpu_area[cpu]; }

/* Top of an IST stack: one slot above the hardware frame holds the percpu pointer. */
static inline uint64_t stack_top(uint8_t *base, uint64_t size) { return (uint64_t)(base + size); }

void percpu_init(unsigned int cpu, uint32_t apic_id);
void percpu_load(unsigned int cpu);

#endif
