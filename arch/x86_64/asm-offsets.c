/*
 * asm-offsets.c: never linked.  Compiled to assembly only, so that
 * tools/gen-offsets can turn the markers below into build/gen/asm-offsets.h:
 * the structure offsets and sizes that the .S files use.
 */
#include <stddef.h>
#include <arch/regs.h>
#include <arch/percpu.h>
#include <arch/gdt.h>
#include <kernel/sched.h>
#include <arch/nmi.h>
#include <nmikit/nmi.h>

#define DEFINE(sym, val) \
	__asm__ volatile("\n.ascii \"@@OFFSET " #sym " %c0@@\"" :: "i"(val))
#define OFFSET(sym, type, member) DEFINE(sym, offsetof(type, member))

void asm_offsets(void);
void asm_offsets(void)
{
	OFFSET(REGS_R15, struct regs, r15);
	OFFSET(REGS_RBP, struct regs, rbp);
	OFFSET(REGS_RAX, struct regs, rax);
	OFFSET(REGS_RCX, struct regs, rcx);
	OFFSET(REGS_R11, struct regs, r11);
	OFFSET(REGS_VECTOR, struct regs, vector);
	OFFSET(REGS_ERROR, struct regs, error);
	OFFSET(REGS_RIP, struct regs, rip);
	OFFSET(REGS_CS, struct regs, cs);
	OFFSET(REGS_RFLAGS, struct regs, rflags);
	OFFSET(REGS_RSP, struct regs, rsp);
	OFFSET(REGS_SS, struct regs, ss);
	DEFINE(REGS_SIZE, sizeof(struct regs));
	DEFINE(REGS_GPR_SIZE, offsetof(struct regs, vector));

	OFFSET(PERCPU_SELF, struct percpu, self);
	OFFSET(PERCPU_KERNEL_RSP, struct percpu, kernel_rsp);
	OFFSET(PERCPU_USER_RSP, struct percpu, user_rsp);
	OFFSET(PERCPU_CPU, struct percpu, cpu);
	OFFSET(PERCPU_TSS, struct percpu, tss);
	OFFSET(TSS_RSP0, struct tss, rsp[0]);

	OFFSET(PERCPU_NMI_ASM_NESTED, struct percpu, nmi_asm_nested);
	OFFSET(PERCPU_NMI_ASM_IN_REPEAT, struct percpu, nmi_asm_in_repeat);
	OFFSET(PERCPU_MCE_RESUME_RIP, struct percpu, mce_resume_rip);
	OFFSET(PERCPU_CORE_BLOCK, struct percpu, core_block);
	DEFINE(NR_CPUS_MAX, MAX_CPUS);		/* mce_resume.S: one stub per CPU */
	/* NMI stack slots, relative to the hardware frame (the RSP at delivery). */
#define NMIST(sym, member) DEFINE(sym, (long)offsetof(struct nmi_stack_top, member) - (long)offsetof(struct nmi_stack_top, hw))
	NMIST(NMIST_SAVED, saved);
	NMIST(NMIST_WORKING, working);
	NMIST(NMIST_EXECUTING, executing);
	NMIST(NMIST_SCRATCH, scratch);
	NMIST(NMIST_PERCPU, percpu);
	DEFINE(IRET_RIP, offsetof(struct iret_frame, rip));
	DEFINE(IRET_CS, offsetof(struct iret_frame, cs));
	DEFINE(IRET_RFLAGS, offsetof(struct iret_frame, rflags));
	DEFINE(IRET_RSP, offsetof(struct iret_frame, rsp));
	DEFINE(IRET_SS, offsetof(struct iret_frame, ss));
	DEFINE(IRET_FRAME_SIZE, sizeof(struct iret_frame));
	DEFINE(IST_PERCPU_OFFSET, IST_PERCPU_SLOT);
	DEFINE(NMI_STACK_BYTES, NMI_STACK_SIZE);
	DEFINE(STACKS_NMI, offsetof(struct cpu_stacks, nmi));
	DEFINE(SIZEOF_CPU_STACKS, sizeof(struct cpu_stacks));
	DEFINE(NMI_FRAME_SIZE, sizeof(struct nmi_frame));	/* built by pushes: nmi.c */

	/* Exception and IRQ entry (entry.S): every general register's slot. */
	OFFSET(REGS_RBX, struct regs, rbx);
	OFFSET(REGS_RDX, struct regs, rdx);
	OFFSET(REGS_RSI, struct regs, rsi);
	OFFSET(REGS_RDI, struct regs, rdi);
	OFFSET(REGS_R8, struct regs, r8);
	OFFSET(REGS_R9, struct regs, r9);
	OFFSET(REGS_R10, struct regs, r10);
	OFFSET(REGS_R12, struct regs, r12);
	OFFSET(REGS_R13, struct regs, r13);
	OFFSET(REGS_R14, struct regs, r14);

	/* Context switch and SYSCALL entry (switch.S, syscall_entry.S). */
	OFFSET(TASK_SAVED_RSP, struct task, saved_rsp);
	OFFSET(TASK_KSTACK_TOP, struct task, kstack_top);
	DEFINE(USER_CS, SEL_UCODE);
	DEFINE(USER_SS, SEL_UDATA);
}
