/*
 * trampoline.S: where each application processor starts.  smp.c copies the
 * bytes between trampoline_start and trampoline_end to TRAMPOLINE_PHYS and
 * sends a start-up IPI whose vector is that page, so an AP begins here in
 * real mode with CS = TRAMPOLINE_PHYS >> 4, IP = 0, interrupts off, caches
 * possibly disabled (CR0.CD/NW as INIT left them).
 *
 * 16-bit: load the trampoline's own GDT, enter protected mode.
 * 32-bit: PAE, the kernel's page tables (CR3 from smp.c), EFER.LME/NXE,
 *         paging on with the boot CPU's CR0: now in compatibility mode.
 * 64-bit: find out which CPU this is from its local APIC ID, take that
 *         CPU's guarded boot stack and call smp_ap_main(cpu).
 *
 * Everything here runs at TRAMPOLINE_PHYS, not where it was linked, so
 * addresses inside it are computed as TRAMPOLINE_PHYS + (label -
 * trampoline_start).  Kernel symbols are reached by absolute address once
 * paging is on (the kernel is identity mapped).  Many APs may run this code
 * at the same time: it only reads the page, and each AP writes nothing but
 * its own registers.
 */
#include <arch/boot.h>
#include <arch/smp.h>

#define TRAMP(label)	(TRAMPOLINE_PHYS + ((label) - trampoline_start))

#define CR0_NW		0x20000000
#define CR0_CD		0x40000000
#define CR4_PCIDE	0x00020000
#define SEL_CODE32	0x08
#define SEL_DATA	0x10
#define SEL_CODE64	0x18
#define MSR_APIC_BASE_NUM	0x1b
#define LAPIC_ID_REG		0x20
#define NO_CPU		0xffff		/* smp_apic_to_cpu[] entry of an unknown APIC ID */

	.section .rodata.trampoline, "a"
	.globl	trampoline_start
	.code16
trampoline_start:
	cli
	cld
	movw	%cs, %ax
	movw	%ax, %ds
	lgdtl	(tramp_gdtr - trampoline_start)
	movl	%cr0, %eax
	andl	$~(CR0_CD | CR0_NW), %eax	/* caches on */
	orl	$CR0_PE, %eax
	movl	%eax, %cr0
	ljmpl	$SEL_CODE32, $TRAMP(tramp32)

	.code32
tramp32:
	movl	$SEL_DATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	TRAMP(trampoline_cr4), %eax
	andl	$~CR4_PCIDE, %eax		/* only allowed once in long mode */
	orl	$CR4_PAE, %eax
	movl	%eax, %cr4
	movl	TRAMP(trampoline_cr3), %eax
	movl	%eax, %cr3
	movl	$MSR_EFER_NUM, %ecx
	rdmsr
	orl	$(EFER_LME_BIT | EFER_NXE_BIT), %eax	/* NX: the page tables use it */
	wrmsr
	movl	TRAMP(trampoline_cr0), %eax	/* PG, PE, WP as on the boot CPU */
	movl	%eax, %cr0
	ljmpl	$SEL_CODE64, $TRAMP(tramp64)

	.code64
tramp64:
	movl	$SEL_DATA, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	xorl	%eax, %eax
	movl	%eax, %fs
	movl	%eax, %gs

	/* Who am I: the APIC ID register (the ID the MADT lists), bits 31-24. */
	movl	$MSR_APIC_BASE_NUM, %ecx
	rdmsr
	andl	$0xfffff000, %eax
	movl	LAPIC_ID_REG(%rax), %ebx
	shrl	$24, %ebx
	movzwl	smp_apic_to_cpu(, %rbx, 2), %edi
	cmpl	$NO_CPU, %edi
	je	park
	movq	smp_ap_stack(, %rdi, 8), %rsp
	testq	%rsp, %rsp
	jz	park
	xorl	%ebp, %ebp			/* ends frame-pointer backtraces */
	movabsq	$smp_ap_main, %rax		/* absolute: this code is not where it was linked */
	call	*%rax

	/* Not a CPU we started, or smp_ap_main returned: stay out of the way. */
park:
	cli
	hlt
	jmp	park

	.balign 8
tramp_gdt:
	.quad	0
	.quad	0x00cf9a000000ffff		/* 0x08: 32-bit code */
	.quad	0x00cf92000000ffff		/* 0x10: data */
	.quad	0x00af9a000000ffff		/* 0x18: 64-bit code */
tramp_gdt_end:
tramp_gdtr:
	.word	tramp_gdt_end - tramp_gdt - 1
	.long	TRAMP(tramp_gdt)

	/* Filled in by smp.c in the copy, before any start-up IPI. */
	.balign 8
	.globl	trampoline_cr3, trampoline_cr4, trampoline_cr0
trampoline_cr3:	.quad	0
trampoline_cr4:	.quad	0
trampoline_cr0:	.quad	0
	.globl	trampoline_end
trampoline_end:
