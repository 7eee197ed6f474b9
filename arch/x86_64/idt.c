/*
 * idt.c: builds the one IDT every CPU loads.  Which vector runs on which IST
 * stack, and why, is explained in docs/exceptions.md; the stubs the gates
 * point at are in entry.S (and nmi_entry.S for vector 2).
 */
#include <arch/idt.h>
#include <arch/nmi.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <arch/traps.h>

/* A 64-bit IDT gate descriptor (SDM vol. 3, "IDT Descriptors"). */
struct idt_gate {
	uint16_t offset_lo;
	uint16_t selector;
	uint8_t ist;		/* bits 0-2: IST slot, 0 = none */
	uint8_t type_attr;	/* P, DPL, type */
	uint16_t offset_mid;
	uint32_t offset_hi;
	uint32_t reserved;
} __attribute__((packed));

_Static_assert(sizeof(struct idt_gate) == 16, "IDT gates are 16 bytes");

#define GATE_PRESENT	0x80u
#define GATE_DPL_SHIFT	5
#define GATE_INTR64	0x0eu	/* interrupt gate: IF cleared on entry */

static struct idt_gate idt[IDT_VECTORS] __attribute__((aligned(16)));

/* entry.S: the stub of each vector; 0 for vector 2. */
extern void (*const entry_stub_table[IDT_VECTORS])(void);

void (*idt_stub(unsigned vector))(void)
{
	return vector < IDT_VECTORS ? entry_stub_table[vector] : 0;
}

void idt_set_gate(unsigned vector, void (*handler)(void), unsigned ist, unsigned dpl)
{
	uint64_t a = (uint64_t)handler;
	struct idt_gate g = {
		.offset_lo = a & 0xffff,
		.selector = SEL_KCODE,
		.ist = ist & 7,
		.type_attr = GATE_PRESENT | (uint8_t)((dpl & 3) << GATE_DPL_SHIFT) | GATE_INTR64,
		.offset_mid = (a >> 16) & 0xffff,
		.offset_hi = (uint32_t)(a >> 32),
	};

	if (vector >= IDT_VECTORS)
		return;
	/* Not present while the two halves change, then present. */
	__atomic_store_n(&idt[vector].type_attr, 0, __ATOMIC_RELAXED);
	__asm__ volatile("" ::: "memory");
	idt[vector].offset_lo = g.offset_lo;
	idt[vector].selector = g.selector;
	idt[vector].ist = g.ist;
	idt[vector].offset_mid = g.offset_mid;
	idt[vector].offset_hi = g.offset_hi;
	idt[vector].reserved = 0;
	__asm__ volatile("" ::: "memory");
	__atomic_store_n(&idt[vector].type_attr, g.type_attr, __ATOMIC_RELAXED);
}

void idt_set_present(unsigned vector, bool present)
{
	if (vector >= IDT_VECTORS)
		return;
	if (present)
		idt[vector].type_attr |= GATE_PRESENT;
	else
		idt[vector].type_attr &= (uint8_t)~GATE_PRESENT;
}

void idt_load(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) ptr = { sizeof(idt) - 1, (uint64_t)idt };

	__asm__ volatile("lidt %0" :: "m"(ptr) : "memory");
}

/* Boot CPU, once, before interrupts are enabled anywhere. */
void idt_init(void)
{
	for (unsigned v = 0; v < IDT_VECTORS; v++) {
		unsigned ist = 0, dpl = 0;

		switch (v) {
		case X86_TRAP_NMI:
			/* nmi_entry.S; its checks rely on running on IST_NMI. */
			idt_set_gate(v, (void (*)(void))asm_nmi, IST_NMI, 0);
			continue;
		case X86_TRAP_DB:
			ist = IST_DB;
			break;
		case X86_TRAP_DF:
			ist = IST_DF;
			break;
		case X86_TRAP_MC:
			ist = IST_MC;
			break;
		case X86_TRAP_BP:
		case X86_TRAP_OF:
			dpl = 3;	/* int3 (and into) are allowed from ring 3 */
			break;
		default:
			break;
		}
		idt_set_gate(v, entry_stub_table[v], ist, dpl);
	}
	idt_load();
}
