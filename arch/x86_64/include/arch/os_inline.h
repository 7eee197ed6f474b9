/*
 * os_inline.h: the testbed kernel's hottest <nmikit/os.h> hooks as inline
 * x86-64 code (the CPU number through GS, PUSHF/CLI and POPF, PAUSE), and
 * the irq_work vector that entry.S gives its own entry.
 *
 * Two users.  core/ is built with NMIKIT_OS_INLINE_HEADER naming this file
 * (top Makefile), so <nmikit/os.h> includes it and core's calls to these
 * hooks become one to three instructions instead of a call; and
 * kernel/os.c builds its out-of-line copies (for every other caller) from
 * the same x86_os_* bodies, so both are one implementation.
 *
 * It is compiled into core/, so it includes only a freestanding header and
 * the generated asm-offsets.h (numbers, no kernel types): struct percpu
 * reaches core/ as the one offset it needs, never as a type.
 */
#ifndef ARCH_OS_INLINE_H
#define ARCH_OS_INLINE_H

#include "asm-offsets.h"

/*
 * The irq_work self-IPI's vector: os_irq_work_raise() sends it, and its IDT
 * gate leads to irq_work_entry (entry.S), which builds no struct regs.
 */
#define IRQ_WORK_VECTOR		0xf3

#ifndef __ASSEMBLER__
#include <stdint.h>

/*
 * This CPU's number, one GS-relative load (the kernel keeps GS = this CPU's
 * struct percpu whenever C runs; the NMI entry makes it so before C).
 * NMI-safe: yes.  Volatile, like <arch/percpu.h>'s this_cpu_id(): it stays
 * in program order with the CLI of x86_os_irq_save(), so a number read
 * after the save is the CPU the caller stays on.
 */
static inline unsigned x86_os_cpu_id(void)
{
	unsigned id;

	__asm__ volatile("movl %%gs:%c1, %0" : "=r"(id) : "i"(PERCPU_CPU));
	return id;
}

/*
 * RFLAGS, then interrupts off; and RFLAGS back with POPF, which restores IF
 * as it was (the other flags it loads are the caller's own from the save:
 * nothing in between may rely on changing them).  The "memory" clobbers
 * make both compiler barriers, as the out-of-line calls were: no load or
 * store moves out of the section.  NMI-safe: yes (NMIs ignore IF).
 */
static inline unsigned long x86_os_irq_save(void)
{
	unsigned long flags;

	__asm__ volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
	return flags;
}

static inline void x86_os_irq_restore(unsigned long flags)
{
	__asm__ volatile("pushq %0; popfq" : : "r"(flags) : "memory", "cc");
}

static inline void x86_os_cpu_relax(void)
{
	__asm__ volatile("pause" : : : "memory");
}

/*
 * What <nmikit/os.h> takes from here when core/ is built with
 * NMIKIT_OS_INLINE_HEADER: each NMIKIT_OS_INLINE_* macro tells os.h to skip
 * that hook's extern declaration.
 */
#ifdef NMIKIT_OS_INLINE_HEADER
#define NMIKIT_OS_INLINE_CPU_ID		1
#define NMIKIT_OS_INLINE_IRQ_SAVE	1
#define NMIKIT_OS_INLINE_CPU_RELAX	1
#define NMIKIT_OS_INLINE_CPU_BLOCK	1

static inline unsigned os_cpu_id(void) { return x86_os_cpu_id(); }
static inline os_irqflags_t os_local_irq_save(void) { return x86_os_irq_save(); }
static inline void os_local_irq_restore(os_irqflags_t flags) { x86_os_irq_restore(flags); }
static inline void os_cpu_relax(void) { x86_os_cpu_relax(); }

/*
 * The core's block for this CPU, cached in struct percpu by gdt_init_cpu()
 * (from nmi_cpu_block()) before the CPU can take an NMI: one GS-relative
 * load.  NMI-safe: yes (GS is right whenever C runs, as for os_cpu_id()).
 */
static inline void *os_cpu_block(void)
{
	void *p;

	__asm__ volatile("movq %%gs:%c1, %0" : "=r"(p) : "i"(PERCPU_CORE_BLOCK));
	return p;
}
#endif

#endif /* !__ASSEMBLER__ */
#endif
