/*
 * nmi_entry.S: the NMI gate (IDT vector 2, on IST_NMI).
 *
 * The hazard: NMIs are blocked from delivery until the next IRET, and *any*
 * IRET unblocks them - including the IRET that ends a #DB, #BP or #PF taken
 * inside the NMI handler.  A second NMI can then arrive while the first is
 * still running, on the same IST stack: the CPU writes the new frame exactly
 * over the first NMI's hardware frame.  This code keeps the first NMI's
 * interrupted context safe and makes the second NMI re-run the handler
 * instead of running it on top of the first.
 *
 * The top of the NMI stack (struct nmi_stack_top in <arch/nmi.h>; offsets
 * below are generated from it, relative to E = the RSP at delivery):
 *
 *	E+NMIST_PERCPU	this CPU's percpu pointer (written once at boot)
 *	E+0 .. E+32	hardware frame: RIP CS RFLAGS RSP SS (rewritten by every NMI)
 *	E+NMIST_SCRATCH	the entry's saved %rdx
 *	E+NMIST_EXECUTING  "NMI executing" (0/1)
 *	E+NMIST_WORKING	working iret frame: what the final IRETQ pops
 *	E+NMIST_SAVED	saved iret frame: the interrupted context, written only
 *			by a first NMI, before anything can unblock NMIs
 *	below		struct regs (its RIP..SS part *is* the saved frame), then C
 *
 * docs/nmi-entry.md has the diagram and the argument for every check.  This
 * whole file sits in .text.nmi_entry, between __nmi_text_start and
 * __nmi_text_end, so the tests can enumerate its instructions.
 */
#include <arch/boot.h>
#include <asm-offsets.h>
#include <arch/entry_regs.h>

#define KCODE	0x08
#define KDATA	0x10

/*
 * The call into C, shared by the kernel and the user path.  rsp = struct regs
 * (16-byte aligned); the GS base is already the kernel's.
 *
 * CR2: the NMI may have interrupted a #PF handler before it read CR2, and a
 * #PF inside our handler would overwrite it.  It is read into %r12 (saved in
 * struct regs above, callee-saved in C) and written back at the end only if
 * it changed.  DR7 stays in do_nmi(): its park window must not cover any of
 * this file, where the entry test puts its hardware breakpoints.
 *
 * struct nmi_frame is built by four pushes (the layout is asserted in
 * nmi.c): regs, from_user, the interrupted RSP and RIP.  The test hook and
 * the CR2 write are out of line (after nmi_user_iret) so the common path
 * falls straight through; each comes back to the label after its branch.
 */
.macro NMI_CALL_C from_user, hook, hook_done, cr2_fix, cr2_done
	movq	%cr2, %r12
	cmpq	$0, nmi_test_hook(%rip)
	jne	\hook
\hook_done:
	pushq	%rsp				/* f.regs: the value before this push */
	pushq	$\from_user			/* f.from_user, and padding */
	pushq	REGS_RSP + 16(%rsp)		/* f.sp */
	pushq	REGS_RIP + 24(%rsp)		/* f.ip */
	movq	%rsp, %rdi
	xorl	%ebp, %ebp			/* backtraces stop here, then show the regs */
	call	do_nmi
	addq	$NMI_FRAME_SIZE, %rsp		/* rsp = struct regs */
	movq	%cr2, %rax
	cmpq	%rax, %r12
	jne	\cr2_fix
\cr2_done:
.endm

/* The out-of-line halves of NMI_CALL_C (placed after nmi_user_iret). */
.macro NMI_CALL_C_SLOW hook, hook_done, cr2_fix, cr2_done
\hook:
	movq	nmi_test_hook(%rip), %rax	/* once: another CPU may clear it */
	testq	%rax, %rax
	jz	\hook_done
	movq	%rsp, %rdi
	call	*%rax
	jmp	\hook_done
\cr2_fix:
	movq	%r12, %cr2
	jmp	\cr2_done
.endm

	.section .text.nmi_entry, "ax"
	.code64

/*
 * Prologue.  NMIs are blocked here, and nothing in it may fault or trap
 * (breakpoints on it are refused: nmi_breakpoint_forbidden()), so no IRET can
 * happen before `executing` is set and the saved frame written.
 */
	.globl	asm_nmi
	.balign	16
asm_nmi:
	pushq	%rdx				/* rsp = E + NMIST_SCRATCH */

	/*
	 * Check 1: an NMI from ring 3 is never nested.  The CS in the frame was
	 * written by the CPU, so user mode cannot forge it; whatever user RSP
	 * pointed at does not matter.
	 */
	testb	$3, IRET_CS - NMIST_SCRATCH(%rsp)
	jnz	nmi_from_user
#ifdef NMI_NO_NEST_CHECKS
	/*
	 * Demonstration build only (make NMI_NO_NEST_CHECKS=1): every kernel NMI
	 * is taken for a first NMI.  nmi.nested_nmi_at_every_boundary must fail.
	 */
	jmp	nmi_first
#endif

	/*
	 * Check 2: interrupted inside [repeat_nmi, end_repeat_nmi): the outer NMI
	 * is about to run the handler again anyway, and is busy rebuilding the
	 * working frame, so touch nothing and return.  One unsigned compare of
	 * RIP - repeat_nmi against the region's length (an RIP below the
	 * region wraps to a huge value); %rdx keeps RIP - repeat_nmi for
	 * check 4.
	 */
	movq	IRET_RIP - NMIST_SCRATCH(%rsp), %rdx
	subq	$repeat_nmi, %rdx
	cmpq	$(end_repeat_nmi - repeat_nmi), %rdx
	jb	nmi_in_repeat_region
	/* Check 3: an outer NMI is executing on this stack. */
	cmpq	$0, NMIST_EXECUTING - NMIST_SCRATCH(%rsp)
	jne	nmi_nested

	/*
	 * Check 4: the outer NMI has cleared `executing` but not yet executed its
	 * final IRETQ.  Its RIP is then exactly nmi_final_iret, a kernel address
	 * no other code uses, and its RSP is on this NMI stack.  Kernel code that
	 * runs on a user-chosen RSP (just after SYSCALL, just before SYSRET) can
	 * point RSP into this stack, but never has this RIP.
	 */
	cmpq	$(nmi_final_iret - repeat_nmi), %rdx	/* RIP == nmi_final_iret */
	jne	nmi_first
	/* (interrupted RSP - stack bottom) < stack size, as one unsigned test. */
	movq	IRET_RSP - NMIST_SCRATCH(%rsp), %rdx
	subq	%rsp, %rdx
	addq	$(NMI_STACK_BYTES - (NMIST_PERCPU + 8 - NMIST_SCRATCH)), %rdx
	cmpq	$NMI_STACK_BYTES, %rdx
	jae	nmi_first
	/* fall through: nested in the exit window */

/*
 * A nested NMI.  Redirect the outer NMI's final IRETQ to repeat_nmi, which
 * restores the working frame from the saved one and runs the handler again
 * for the NMI we are swallowing here.  Only the working frame is written;
 * the saved frame and everything below it belong to the outer NMI.
 */
nmi_nested:
	movq	NMIST_PERCPU - NMIST_SCRATCH(%rsp), %rdx
	incq	PERCPU_NMI_ASM_NESTED(%rdx)
	movq	$repeat_nmi, NMIST_WORKING + IRET_RIP - NMIST_SCRATCH(%rsp)
	movq	$KCODE, NMIST_WORKING + IRET_CS - NMIST_SCRATCH(%rsp)
	pushfq					/* IF=0: interrupt gate cleared it */
	popq	NMIST_WORKING + IRET_RFLAGS - NMIST_SCRATCH(%rsp)
	leaq	NMIST_SAVED - NMIST_SCRATCH(%rsp), %rdx
	movq	%rdx, NMIST_WORKING + IRET_RSP - NMIST_SCRATCH(%rsp)
	movq	$KDATA, NMIST_WORKING + IRET_SS - NMIST_SCRATCH(%rsp)
	popq	%rdx
	iretq					/* to the outer NMI; kernel mode, cannot fault */

nmi_in_repeat_region:
	movq	NMIST_PERCPU - NMIST_SCRATCH(%rsp), %rdx
	incq	PERCPU_NMI_ASM_IN_REPEAT(%rdx)
	popq	%rdx
	iretq

/*
 * The first NMI: copy the hardware frame into the saved frame, before any
 * IRET can let another NMI overwrite the hardware frame.
 */
nmi_first:
	popq	%rdx				/* rsp = E, interrupted %rdx back */
	cld					/* C needs DF=0; IRETQ restores the caller's */
	subq	$(-NMIST_WORKING), %rsp		/* rsp = working frame; filled in repeat_nmi */
	/* Five pushes copy hw (SS first) to saved; each push reads the next word down. */
	.rept	5
	pushq	IRET_SS - NMIST_WORKING(%rsp)
	.endr
	/* rsp = E + NMIST_SAVED */
	.globl	nmi_prologue_end
nmi_prologue_end:

/*
 * repeat_nmi: reached by falling through from nmi_first, or by the outer
 * NMI's final IRETQ after a nested NMI redirected it.  NMIs may arrive here
 * (the redirected IRETQ unblocked them); check 2 makes them return at once,
 * so nothing else writes these slots while they are rebuilt.
 * rsp = E + NMIST_SAVED in both cases.
 */
	.globl	repeat_nmi
repeat_nmi:
	movq	$1, NMIST_EXECUTING - NMIST_SAVED(%rsp)
	/* working := saved, word by word with memory pushes: no register is free. */
	addq	$(NMIST_EXECUTING - NMIST_SAVED), %rsp
	.rept	5
	pushq	NMIST_SAVED + IRET_SS - NMIST_EXECUTING(%rsp)
	.endr
	subq	$(NMIST_WORKING - NMIST_SAVED), %rsp
	.globl	end_repeat_nmi
end_repeat_nmi:
	/* rsp = E + NMIST_SAVED.  From here on a nested NMI finds executing = 1. */

#ifdef NMI_SELF_IRET
	/*
	 * Debug build (make NMI_SELF_IRET=1): IRET to ourselves, so NMIs are
	 * unblocked for the whole handler and every NMI storm drives the nested
	 * paths above.
	 */
	pushq	%rax
	movq	%rsp, %rax
	pushq	$KDATA
	pushq	%rax
	pushfq
	pushq	$KCODE
	pushq	$1f
	iretq
1:	popq	%rax
#endif

	pushq	$0				/* error code */
	pushq	$2				/* vector */
	PUSH_GPRS
	/* rsp = struct regs; its rip..ss are the saved frame (the interrupted context). */

	/*
	 * GS: the interrupted code may have been anywhere, including between a
	 * SWAPGS and the instruction that needed it, so CS says nothing reliable.
	 * Compare the GS base with this CPU's percpu pointer (kept on this stack
	 * at boot) and SWAPGS only if they differ; %ebx remembers the choice.
	 */
	movl	$0xc0000101, %ecx		/* MSR_GS_BASE */
	rdmsr
	shlq	$32, %rdx
	orq	%rax, %rdx
	xorl	%ebx, %ebx
	cmpq	REGS_RIP - NMIST_SAVED + NMIST_PERCPU(%rsp), %rdx
	je	2f
	swapgs
	movl	$1, %ebx
2:
	NMI_CALL_C from_user=0, hook=.Lnmi_kernel_hook, hook_done=.Lnmi_kernel_hook_done, cr2_fix=.Lnmi_kernel_cr2_fix, cr2_done=.Lnmi_kernel_cr2_done

	testl	%ebx, %ebx
	jz	3f
	swapgs
3:
	POP_GPRS
	/* Past vector and error code, and the saved frame: rsp = working frame. */
	addq	$(16 + NMIST_WORKING - NMIST_SAVED), %rsp
	/*
	 * From here to the IRETQ, RSP is above the saved frame: an exception
	 * that pushes on the current stack would overwrite it, and a nested NMI
	 * would then repeat with a corrupted frame.  None can happen (these
	 * instructions cannot fault, and int3 is refused here); only IST
	 * exceptions (#DB from a hardware breakpoint, #MC), which use their own
	 * stacks, can.  The same holds for the copy in repeat_nmi.
	 */
	.globl	nmi_exit_tail
nmi_exit_tail:
	/*
	 * Clearing `executing` opens the exit window: a nested NMI from here on
	 * is caught by check 4 (its RIP is nmi_final_iret).
	 */
	movq	$0, NMIST_EXECUTING - NMIST_WORKING(%rsp)
	.globl	nmi_final_iret
nmi_final_iret:
	iretq

/*
 * An NMI from ring 3.  Nothing can be nested under it on this stack: leave
 * the NMI stack at once for the task's kernel stack (so a nested NMI, after
 * an IRET inside the handler, finds a clean NMI stack), switch GS, and run the
 * handler there.  NMIs stay blocked until the IRETQ back to user mode.
 */
nmi_from_user:
	swapgs
	cld
	movq	%rsp, %rdx			/* rdx = E + NMIST_SCRATCH */
	movq	%gs:PERCPU_TSS, %rsp		/* the stack the CPU itself would use: TSS.rsp0 */
	movq	TSS_RSP0(%rsp), %rsp
	pushq	IRET_SS - NMIST_SCRATCH(%rdx)
	pushq	IRET_RSP - NMIST_SCRATCH(%rdx)
	pushq	IRET_RFLAGS - NMIST_SCRATCH(%rdx)
	pushq	IRET_CS - NMIST_SCRATCH(%rdx)
	pushq	IRET_RIP - NMIST_SCRATCH(%rdx)
	pushq	$0
	pushq	$2
	movq	(%rdx), %rdx			/* the user's %rdx, from the scratch slot */
	PUSH_GPRS
	NMI_CALL_C from_user=1, hook=.Lnmi_user_hook, hook_done=.Lnmi_user_hook_done, cr2_fix=.Lnmi_user_cr2_fix, cr2_done=.Lnmi_user_cr2_done
	POP_GPRS
	addq	$16, %rsp
	swapgs
	.globl	nmi_user_iret
nmi_user_iret:
	iretq

	NMI_CALL_C_SLOW hook=.Lnmi_kernel_hook, hook_done=.Lnmi_kernel_hook_done, cr2_fix=.Lnmi_kernel_cr2_fix, cr2_done=.Lnmi_kernel_cr2_done
	NMI_CALL_C_SLOW hook=.Lnmi_user_hook, hook_done=.Lnmi_user_hook_done, cr2_fix=.Lnmi_user_cr2_fix, cr2_done=.Lnmi_user_cr2_done

	.globl	nmi_entry_end
nmi_entry_end:
