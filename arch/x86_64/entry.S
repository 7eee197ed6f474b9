/*
 * entry.S: the IDT entry stubs for CPU exceptions (vectors 0-31 except the
 * NMI, which nmi_entry.S owns) and for maskable interrupts (32-255).
 *
 * Every stub makes the stack look the same - an error code (the CPU's, or a
 * 0 pushed here when the CPU pushes none) and the vector below the hardware
 * frame - and jumps to one of three common paths, which complete a struct
 * regs (arch/x86_64/include/arch/regs.h; offsets from build/gen/asm-offsets.h)
 * and call C with a pointer to it:
 *
 *   exception_entry -> trap_handle()           ordinary exceptions
 *   irq_entry       -> irq_dispatch()          vectors 32-255 (its own
 *                                              copy of the ordinary path)
 *   paranoid_entry  -> trap_handle_paranoid()  #DB, #MC, #DF (IST stacks)
 *                      (a #DB or #MC from ring 3 moves to the task's kernel
 *                      stack and takes the exception_entry path instead)
 *
 * One vector has an entry of its own that builds no struct regs:
 *
 *   irq_work_entry -> irq_work_interrupt()     IRQ_WORK_VECTOR (0xf3), the
 *                                              irq_work self IPI
 *
 * GS base.  Kernel code always runs with GS = this CPU's struct percpu.
 * The ordinary paths trust the interrupted CS: ring 3 means the user's GS
 * is loaded, so SWAPGS in and out.  That is sound because they can only
 * interrupt kernel code that already runs on the kernel GS (nothing that
 * can fault or be interrupted sits between SYSCALL and its SWAPGS).  The
 * paranoid vectors can hit anywhere in the kernel, including those windows,
 * so in kernel mode they read MSR_GS_BASE and compare it with the percpu
 * pointer kept on their IST stack; if it differs they write the right value
 * and put the old one back on exit.  Only a ring-3 CS, which the CPU alone
 * can write, is taken at its word (see paranoid_from_user).
 *
 * The C call sees a 16-byte-aligned stack: the CPU aligns RSP to 16 before
 * pushing its 5-word frame, and error + vector + 15 registers + the 2-word
 * frame record below add 19 words: 24 in all, a multiple of 16 bytes.
 */
#include <asm-offsets.h>
#include <arch/entry_regs.h>
#include <arch/os_inline.h>

/* MSR_GS_BASE (see <arch/cpu.h>, which assembly cannot include). */
#define MSR_GS_BASE_NUM	0xc0000101

	.section .text.entry, "ax"
	.code64

/* SAVE_GPRS / RESTORE_GPRS: <arch/entry_regs.h>. */

/*
 * The registers a C call may clobber (SysV ABI), for irq_work_entry, which
 * finds the hardware frame (IRET_* offsets) at %rsp.  The
 * order does not matter to C (nothing reads them); POP undoes PUSH.
 */
#define CALLER_SAVED_SIZE	(9 * 8)
.macro PUSH_CALLER_SAVED
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
.endm

.macro POP_CALLER_SAVED
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rax
.endm

/*
 * Call \cfunc(regs) with %rsp = the struct regs.  Below the struct goes a
 * two-word frame record {interrupted RBP, interrupted RIP} and RBP points at
 * it, so a backtrace taken inside the handler continues into the code that
 * was interrupted.  From ring 3 the record is {0, 0}: the walk ends there
 * instead of reading user memory.
 */
.macro CALL_C cfunc
	movq	%rsp, %rdi
	testb	$3, REGS_CS(%rsp)
	jnz	.Lfrom_user_\@
	pushq	REGS_RIP(%rdi)
	pushq	REGS_RBP(%rdi)
	jmp	.Lrecord_done_\@
.Lfrom_user_\@:
	pushq	$0
	pushq	$0
.Lrecord_done_\@:
	movq	%rsp, %rbp
	call	\cfunc
	addq	$16, %rsp
.endm

/*
 * The ordinary path, for exceptions and IRQs alike.  On entry %rsp points at
 * the vector, with the error code and the hardware frame above it.
 * \gs_ready is entered with the kernel's GS base already loaded (a ring-3
 * #DB or #MC moved here from its IST stack by paranoid_entry).
 */
.macro ORDINARY_ENTRY cfunc, gs_ready
	cld
	testb	$3, REGS_CS - REGS_VECTOR(%rsp)
	jz	\gs_ready
	swapgs				/* from ring 3: the kernel's GS base */
\gs_ready:
	subq	$REGS_VECTOR, %rsp	/* room for the registers: %rsp = struct regs */
	SAVE_GPRS
	CALL_C	\cfunc
	RESTORE_GPRS
	testb	$3, REGS_CS(%rsp)
	jz	.Lkernel_out_\@
	swapgs				/* back to ring 3: the user's GS base */
.Lkernel_out_\@:
	addq	$REGS_RIP, %rsp		/* drop registers, vector and error code */
	iretq
.endm

	.globl	exception_entry
exception_entry:
	ORDINARY_ENTRY trap_handle, exception_entry_gs_ready

/*
 * The IRQ path: the same struct regs, frame record and GS rule as the
 * ordinary path, built with pushes and with one ring test on the way in
 * deciding both SWAPGS and the frame record.  Interrupts stay off
 * throughout (interrupt gates).  The way out tests the frame's CS again
 * rather than trusting the way in: SWAPGS must match the ring IRETQ
 * actually returns to, whatever a handler did to the frame.
 */
	.globl	irq_entry
irq_entry:
	cld
	testb	$3, REGS_CS - REGS_VECTOR(%rsp)
	jnz	irq_from_user
	PUSH_GPRS			/* %rsp = struct regs */
	movq	%rsp, %rdi
	pushq	REGS_RIP(%rdi)		/* frame record {interrupted RBP, RIP} */
	pushq	%rbp
	movq	%rsp, %rbp
	call	irq_dispatch
irq_exit:
	addq	$16, %rsp		/* the frame record */
	POP_GPRS
	testb	$3, REGS_CS - REGS_VECTOR(%rsp)
	jnz	irq_to_user
	addq	$16, %rsp		/* vector and error code */
	iretq
irq_to_user:
	swapgs				/* back to the user's GS base */
	addq	$16, %rsp
	iretq

/* From ring 3: the kernel's GS base, and a {0, 0} record ends backtraces. */
irq_from_user:
	swapgs
	PUSH_GPRS
	movq	%rsp, %rdi
	pushq	$0
	pushq	$0
	movq	%rsp, %rbp
	call	irq_dispatch
	jmp	irq_exit

/*
 * The irq_work self IPI (IRQ_WORK_VECTOR).  Its handler reads no
 * interrupted register (irq_work_run() and its callbacks run on their own;
 * the soft-lockup report uses the timer tick's frame), so this entry saves
 * only what a C call may clobber - the nine caller-saved registers - and
 * calls irq_work_interrupt() (kernel/irq.c: counts, the handler, EOI).  A
 * callee-saved register is preserved by the C code itself, down to a
 * context switch (switch_to saves them), so nothing here needs the rest.
 * The IDT gate points here directly: no error code or vector is pushed.
 *
 * Same GS rule as irq_entry: one ring test on the way in decides SWAPGS and
 * the frame record.  The interrupted RBP, which the record holds and the C
 * code leaves pointing at the record, is popped back from it.
 *
 * Preemption.  irq_work_interrupt() returns nonzero when the scheduler's
 * exit hook may have to run (need_resched set, no IRQ handler below us).
 * The hook takes a struct regs, so that rare case re-enters the full path:
 * with every interrupted register back in place it pushes the error code
 * and vector, as the vector's stub would have, and completes a struct regs
 * in irq_resched_entry, which calls irq_exit_check() (the same rule as
 * irq_dispatch's exit) with the kernel's GS base already loaded.
 *
 * Alignment: the CPU's 5-word frame leaves %rsp = 8 mod 16; nine registers
 * and the 2-word frame record make 16 words: the C call sees it aligned.
 */
	.globl	irq_work_entry
irq_work_entry:
	cld
	testb	$3, IRET_CS(%rsp)
	jnz	irq_work_from_user
	PUSH_CALLER_SAVED
	pushq	CALLER_SAVED_SIZE + IRET_RIP(%rsp)	/* frame record {RBP, RIP}; */
	pushq	%rbp				/* its RBP is the one to restore */
	movq	%rsp, %rbp
	call	irq_work_interrupt
	popq	%rbp				/* the interrupted RBP */
	addq	$8, %rsp			/* the record's RIP */
	testb	%al, %al			/* POPs below leave RFLAGS alone */
	POP_CALLER_SAVED
	jnz	irq_work_resched
	iretq

/*
 * From ring 3: the kernel's GS base, and a {0, 0} record ends backtraces.
 * The user's RBP is saved beside it (with a word that keeps the C call's
 * stack 16-byte aligned).  Neither exit tests the frame's CS again, unlike
 * irq_entry's: no C code here gets a pointer to the frame, so the ring
 * IRETQ returns to is the one we came from (irq_resched_entry, which hands
 * a struct regs to the scheduler's hook, tests it on its own way out).
 */
irq_work_from_user:
	swapgs
	PUSH_CALLER_SAVED
	pushq	%rbp
	pushq	$0				/* alignment */
	pushq	$0
	pushq	$0
	movq	%rsp, %rbp
	call	irq_work_interrupt
	addq	$24, %rsp			/* record and alignment word */
	popq	%rbp				/* the user's RBP */
	testb	%al, %al
	POP_CALLER_SAVED
	jnz	irq_work_resched
	swapgs					/* back to the user's GS base */
	iretq

/* The preemption check with a full struct regs (GS base still the kernel's). */
irq_work_resched:
	pushq	$0				/* error code */
	pushq	$IRQ_WORK_VECTOR
	jmp	irq_resched_entry_gs_ready

	.globl	irq_resched_entry
irq_resched_entry:
	ORDINARY_ENTRY irq_exit_check, irq_resched_entry_gs_ready

/*
 * #DB, #MC and #DF: always on their own IST stack, so the hardware frame
 * sits at the top of that stack and the percpu pointer that gdt.c stored
 * there is IST_PERCPU_OFFSET above the frame's end (just above SS).
 *
 * Kernel mode only (ring 3 branches to paranoid_from_user, below).
 * Callee-saved registers carry state across the C call (their interrupted
 * values are already in the struct regs):
 *   %r12  1 when the entry rewrote MSR_GS_BASE, else 0
 *   %r13  the interrupted MSR_GS_BASE
 *   %r14  the interrupted CR2: a #DB hook that probes memory may take a #PF,
 *         which must not change the CR2 of a #PF this exception interrupted
 *
 * C gets the interrupted GS base as its second argument,
 * trap_handle_paranoid(regs, gs_base): the #MC handler's return without IRET
 * (mce_resume.S) does not come back through the exit below, so it must put
 * back a user GS base itself.
 */
	.globl	paranoid_entry
paranoid_entry:
	cld
	testb	$3, REGS_CS - REGS_VECTOR(%rsp)
	jnz	paranoid_from_user
	subq	$REGS_VECTOR, %rsp
	SAVE_GPRS

	movl	$MSR_GS_BASE_NUM, %ecx
	rdmsr
	shlq	$32, %rdx
	orq	%rax, %rdx			/* %rdx = GS base at the interruption */
	movq	%rdx, %r13
	movq	REGS_SS + 8 + IST_PERCPU_OFFSET(%rsp), %rax	/* this CPU's percpu */
	xorl	%r12d, %r12d
	cmpq	%rax, %rdx
	je	1f
	movl	$1, %r12d
	movq	%rax, %rdx
	shrq	$32, %rdx
	wrmsr					/* GS base := percpu (%edx:%eax) */
1:
	movq	%cr2, %r14
	movq	%r13, %rsi			/* trap_handle_paranoid(regs, gs_base) */

	CALL_C	trap_handle_paranoid

	movq	%cr2, %rax
	cmpq	%rax, %r14
	je	2f
	movq	%r14, %cr2
2:
	testl	%r12d, %r12d
	jz	3f
	movl	$MSR_GS_BASE_NUM, %ecx
	movl	%r13d, %eax
	movq	%r13, %rdx
	shrq	$32, %rdx
	wrmsr					/* the interrupted GS base, exactly */
3:
	RESTORE_GPRS
	addq	$REGS_RIP, %rsp
	iretq

/*
 * A #DB or #MC from ring 3.  Here CS can be trusted - only the CPU writes a
 * ring-3 CS into the frame, and ring 3 always runs on the user's GS base -
 * and the task's kernel stack (TSS RSP0) is free, exactly as for any other
 * exception from ring 3.  Move the vector, error code and hardware frame
 * there and carry on as an ordinary exception, so the hooks (the
 * scheduler's, which kills the faulting task) may schedule, and the IST
 * stack is free again at once.  %rax and %rcx are borrowed on the IST stack
 * and given back on the kernel stack.
 */
paranoid_from_user:
	swapgs
	pushq	%rax
	pushq	%rcx
	movq	%gs:PERCPU_TSS, %rax
	movq	TSS_RSP0(%rax), %rax
	andq	$-16, %rax			/* as the CPU aligns it */
	/* IST: %rsp+16 is the vector.  Kernel stack: the struct regs ends at %rax. */
	.irp	field, REGS_VECTOR, REGS_ERROR, REGS_RIP, REGS_CS, REGS_RFLAGS, REGS_RSP, REGS_SS
	movq	16 + \field - REGS_VECTOR(%rsp), %rcx
	movq	%rcx, \field - REGS_SIZE(%rax)
	.endr
	leaq	REGS_VECTOR - REGS_SIZE(%rax), %rax	/* the new %rsp: at the vector */
	movq	8(%rsp), %rcx
	movq	%rcx, -8(%rax)			/* interrupted %rax */
	movq	(%rsp), %rcx
	movq	%rcx, -16(%rax)			/* interrupted %rcx */
	leaq	-16(%rax), %rsp
	popq	%rcx
	popq	%rax
	jmp	exception_entry_gs_ready

/*
 * The per-vector stubs, 16 bytes apart, and (in .rodata) entry_stub_table,
 * the address of each, indexed by vector; 0 for vector 2, irq_work_entry
 * for IRQ_WORK_VECTOR.
 */
	.pushsection .rodata
	.balign	8
	.globl	entry_stub_table
entry_stub_table:
	.popsection

	.balign	16
	.globl	entry_stubs
entry_stubs:
vec = 0
.rept 256
	.if vec == 2
	.pushsection .rodata
	.quad	0
	.popsection
	.elseif vec == IRQ_WORK_VECTOR
	.pushsection .rodata
	.quad	irq_work_entry		/* its own entry, no stub */
	.popsection
	.else
	.balign	16
1:
	/* The CPU pushes an error code for these vectors only. */
	.if !(vec == 8 || vec == 10 || vec == 11 || vec == 12 || vec == 13 || vec == 14 || vec == 17 || vec == 21 || vec == 29 || vec == 30)
	pushq	$0
	.endif
	pushq	$vec
	.if vec == 1 || vec == 8 || vec == 18
	jmp	paranoid_entry
	.elseif vec < 32
	jmp	exception_entry
	.else
	jmp	irq_entry
	.endif
	.pushsection .rodata
	.quad	1b
	.popsection
	.endif
vec = vec + 1
.endr
	.globl	entry_stubs_end
entry_stubs_end:
