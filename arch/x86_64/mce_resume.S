/*
 * mce_resume.S: the way back from a machine check without IRET.
 *
 * Any IRET unblocks NMIs.  An #MC that interrupted the NMI entry before it
 * saved its hardware frame must not do that: an NMI latched meanwhile would
 * be delivered at once, on the same NMI stack, over that frame (mce.c,
 * mce_resume_mode).  Returning with POPFQ and an indirect JMP leaves the
 * NMI-blocking state exactly as the #MC found it.
 *
 * Entered from C (mce_leave) on the #MC IST stack, with %rdi = the struct
 * regs the paranoid entry saved at the top of that stack; the C frames below
 * it are abandoned.  Nothing is written on the interrupted stack, not even
 * below its RSP, where the NMI entry may keep live words (`executing`, the
 * working frame): once every register and RSP are back, the only memory the
 * final jump may read its target from is per CPU and addressed without a
 * register - through %gs, which must then still be the kernel's GS base.
 *
 * Two exits:
 *   mce_resume_without_iret         the interrupted code ran on this CPU's
 *                                   percpu GS base: jump through %gs.
 *   mce_resume_swapgs_without_iret  it ran on the user's GS base with the
 *                                   percpu pointer waiting in
 *                                   MSR_KERNEL_GS_BASE (between two SWAPGSes).
 *                                   C has put the user's base into
 *                                   MSR_KERNEL_GS_BASE, so one SWAPGS restores
 *                                   both MSRs exactly; but after it %gs is the
 *                                   user's.  So the jump through %gs goes to
 *                                   this CPU's stub in mce_swapgs_stubs, which
 *                                   executes SWAPGS and jumps through this
 *                                   CPU's slot of mce_swapgs_rips, addressed
 *                                   RIP-relative (each stub has its CPU's slot
 *                                   offset built in).  Interrupts must be off
 *                                   in the restored RFLAGS (C checks): an IRQ
 *                                   between the stub's SWAPGS and its JMP
 *                                   would enter from ring 0 on the user's GS.
 *
 * A second #MC can only come once MCIP is clear, that is now; it would
 * reuse this stack under us, as it would under the paranoid entry's own
 * exit.  That window is the same few instructions in both.
 */
#include <asm-offsets.h>
#include <arch/entry_regs.h>

#define STUB_BYTES	16

	.text
	.code64

/* Every register, RFLAGS and RSP from the struct regs at %rsp, then JMP *%gs:slot. */
.macro RESUME_AND_JUMP
	RESTORE_GPRS				/* every register the interrupted code had */
	pushq	REGS_RFLAGS(%rsp)		/* address taken before the push moves rsp */
	popfq					/* DF, IF, TF... as interrupted; no GPR touched */
	movq	REGS_RSP(%rsp), %rsp		/* the interrupted stack, untouched */
	jmp	*%gs:PERCPU_MCE_RESUME_RIP
.endm

	.globl	mce_resume_without_iret
mce_resume_without_iret:
	movq	%rdi, %rsp			/* rsp = struct regs */
	movq	REGS_RIP(%rsp), %rax
	movq	%rax, %gs:PERCPU_MCE_RESUME_RIP	/* the jump target, per CPU */
	RESUME_AND_JUMP
	.globl	mce_resume_without_iret_end
mce_resume_without_iret_end:

/* %rdi = struct regs, %esi = this CPU's number (< NR_CPUS_MAX). */
	.globl	mce_resume_swapgs_without_iret
mce_resume_swapgs_without_iret:
	movq	%rdi, %rsp			/* rsp = struct regs */
	movl	%esi, %esi			/* the CPU number, zero-extended */
	movq	REGS_RIP(%rsp), %rax
	leaq	mce_swapgs_rips(%rip), %rcx
	movq	%rax, (%rcx,%rsi,8)		/* the final target: this CPU's slot */
	shlq	$4, %rsi			/* STUB_BYTES apart */
	leaq	mce_swapgs_stubs(%rip), %rax
	addq	%rsi, %rax
	movq	%rax, %gs:PERCPU_MCE_RESUME_RIP	/* the first jump: this CPU's stub */
	RESUME_AND_JUMP

/*
 * One stub per CPU, STUB_BYTES each: SWAPGS, then JMP through that CPU's
 * mce_swapgs_rips slot; int3 fills the rest (.fill refuses to assemble a
 * stub that outgrew its size, which would shift every later CPU's stub).
 */
	.balign	STUB_BYTES
	.globl	mce_swapgs_stubs
mce_swapgs_stubs:
cpu = 0
.rept	NR_CPUS_MAX
1:	swapgs					/* GS base := the user's; KERNEL_GS := percpu */
	jmp	*mce_swapgs_rips + 8 * cpu(%rip)
2:	.fill	STUB_BYTES - (2b - 1b), 1, 0xcc
cpu = cpu + 1
.endr
	.globl	mce_swapgs_stubs_end
mce_swapgs_stubs_end:

	.section .bss
	.balign	64
mce_swapgs_rips:				/* written only by its own CPU, in #MC */
	.skip	8 * NR_CPUS_MAX
