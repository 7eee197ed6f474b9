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
 * it are abandoned.  The GS base is this CPU's percpu and stays so (mce_leave
 * comes here only when the entry did not have to rewrite it), which is what
 * lets the final jump take its target from %gs: nothing is written on the
 * interrupted stack, not even below its RSP, where the NMI entry may keep
 * live words (`executing`, the working frame).
 *
 * A second #MC can only come once MCIP is clear, that is now; it would
 * reuse this stack under us, as it would under the paranoid entry's own
 * exit.  That window is the same few instructions in both.
 */
#include <asm-offsets.h>
#include <arch/entry_regs.h>

	.text
	.code64
	.globl	mce_resume_without_iret
mce_resume_without_iret:
	movq	%rdi, %rsp			/* rsp = struct regs */
	movq	REGS_RIP(%rsp), %rax
	movq	%rax, %gs:PERCPU_MCE_RESUME_RIP	/* the jump target, per CPU */
	RESTORE_GPRS				/* every register the interrupted code had */
	pushq	REGS_RFLAGS(%rsp)		/* address taken before the push moves rsp */
	popfq					/* DF, IF, TF... as interrupted; no GPR touched */
	movq	REGS_RSP(%rsp), %rsp		/* the interrupted stack, untouched */
	jmp	*%gs:PERCPU_MCE_RESUME_RIP
	.globl	mce_resume_without_iret_end
mce_resume_without_iret_end:
