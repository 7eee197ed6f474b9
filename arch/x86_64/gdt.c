/*
 * gdt.c: segment descriptors, the TSS with its IST stacks, and the per-CPU
 * GS base.  Run once per CPU at bring-up (boot CPU in kmain, others in
 * smp_ap_main) before any interrupt can arrive.
 */
#include <arch/gdt.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <arch/cpu.h>
#include <nmikit/nmi.h>

struct percpu percpu_area[MAX_CPUS];
struct cpu_stacks cpu_stacks[MAX_CPUS] __attribute__((section(".bss.stacks")));
unsigned int cpus_possible = 1;

static struct tss tss_area[MAX_CPUS] __attribute__((aligned(64)));
static uint64_t gdt_area[MAX_CPUS][8] __attribute__((aligned(64)));

#define GDT_KCODE	0x00af9a000000ffffull	/* 64-bit, DPL 0 */
#define GDT_KDATA	0x00cf92000000ffffull
#define GDT_UDATA	0x00cff2000000ffffull	/* DPL 3 */
#define GDT_UCODE	0x00affa000000ffffull	/* 64-bit, DPL 3 */

static void put_canary(uint8_t *stack_base)
{
	*(volatile uint64_t *)stack_base = STACK_CANARY;
}

static uint64_t prepare_ist(unsigned int cpu, uint8_t *base, uint64_t size)
{
	uint64_t top = (uint64_t)(base + size);
	/* [top-8] percpu pointer, [top-16] padding; the CPU pushes below top-16. */
	*(struct percpu **)(top - 8) = &percpu_area[cpu];
	put_canary(base);
	return top - 16;
}

uint64_t ist_top(unsigned int cpu, int ist)
{
	return tss_area[cpu].ist[ist - 1];
}

int stacks_check_canaries(unsigned int cpu)
{
	struct cpu_stacks *s = &cpu_stacks[cpu];
	uint8_t *bases[] = { s->nmi, s->db, s->mc, s->df, s->boot };
	int bad = 0;
	for (unsigned int i = 0; i < sizeof(bases) / sizeof(bases[0]); i++)
		if (*(volatile uint64_t *)bases[i] != STACK_CANARY)
			bad++;
	return bad;
}

static void set_tss_descriptor(uint64_t *gdt, struct tss *t)
{
	uint64_t base = (uint64_t)t, limit = sizeof(*t) - 1;
	gdt[5] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
		 (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[6] = base >> 32;
}

void gdt_init_cpu(unsigned int cpu)
{
	struct percpu *p = &percpu_area[cpu];
	struct cpu_stacks *s = &cpu_stacks[cpu];
	struct tss *t = &tss_area[cpu];
	uint64_t *gdt = gdt_area[cpu];

	p->self = p;
	p->cpu = cpu;
	p->core_block = nmi_cpu_block(cpu);	/* before this CPU can take an NMI */
	p->tss = t;
	p->stacks = s;

	t->ist[IST_NMI - 1] = prepare_ist(cpu, s->nmi, sizeof(s->nmi));
	t->ist[IST_DB - 1] = prepare_ist(cpu, s->db, sizeof(s->db));
	t->ist[IST_MC - 1] = prepare_ist(cpu, s->mc, sizeof(s->mc));
	t->ist[IST_DF - 1] = prepare_ist(cpu, s->df, sizeof(s->df));
	put_canary(s->boot);
	t->rsp[0] = (uint64_t)(s->boot + sizeof(s->boot));
	t->iomap_base = sizeof(*t);	/* no I/O bitmap: ring 3 gets no ports */

	gdt[0] = 0;
	gdt[1] = GDT_KCODE;
	gdt[2] = GDT_KDATA;
	gdt[3] = GDT_UDATA;
	gdt[4] = GDT_UCODE;
	set_tss_descriptor(gdt, t);
	gdt[7] = 0;
}

void gdt_load_cpu(unsigned int cpu)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) ptr = { sizeof(gdt_area[cpu]) - 1, (uint64_t)gdt_area[cpu] };

	__asm__ volatile(
		"lgdt %0\n\t"
		"movl %1, %%eax\n\t"
		"movl %%eax, %%ds\n\t"
		"movl %%eax, %%es\n\t"
		"movl %%eax, %%ss\n\t"
		"xorl %%eax, %%eax\n\t"
		"movl %%eax, %%fs\n\t"
		"movl %%eax, %%gs\n\t"
		"pushq %2\n\t"
		"leaq 1f(%%rip), %%rax\n\t"
		"pushq %%rax\n\t"
		"lretq\n"
		"1:\n\t"
		"ltr %w3"
		:: "m"(ptr), "i"(SEL_KDATA), "i"((uint64_t)SEL_KCODE), "r"((uint16_t)SEL_TSS)
		: "rax", "memory");
	/* GS base after the selector load, which would otherwise clear it. */
	wrmsr(MSR_GS_BASE, (uint64_t)&percpu_area[cpu]);
	wrmsr(MSR_KERNEL_GS_BASE, 0);
}

void tss_set_rsp0(uint64_t rsp0)
{
	this_cpu()->tss->rsp[0] = rsp0;
}
