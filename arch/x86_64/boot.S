/*
 * boot.S: the first instructions nmikit runs, on the boot CPU only.
 *
 * Two loaders enter here, both in 32-bit protected mode with paging off:
 *   - PVH (QEMU -kernel with an ELF): entry named by the Xen ELF note,
 *     %ebx = physical address of the hvm_start_info structure;
 *   - Multiboot2 (GRUB): entry is the ELF entry point,
 *     %eax = 0x36d76289, %ebx = physical address of the boot information.
 * We check for long mode and NX, identity-map the first 4 GiB with 2 MiB
 * pages (paging.c replaces these tables with the real ones soon after),
 * enable long mode and call kmain(boot_protocol_magic, boot_info_phys).
 * Nothing here can take an interrupt: IF is clear and no IDT is loaded yet.
 */
#include <arch/boot.h>

	.section .multiboot2, "a"
	.balign 8
mb2_header:
	.long	MB2_HEADER_MAGIC
	.long	0				/* architecture: i386 protected mode */
	.long	mb2_header_end - mb2_header
	.long	-(MB2_HEADER_MAGIC + (mb2_header_end - mb2_header))
	.balign 8				/* end tag */
	.short	0
	.short	0
	.long	8
mb2_header_end:

	/* PVH: tells QEMU (and Xen) the 32-bit physical entry point. */
	.section .note.Xen, "a", @note
	.balign 4
	.long	4				/* name size: "Xen\0" */
	.long	4				/* descriptor size */
	.long	18				/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.balign 4
	.long	pvh_entry
	.balign 4

	.section .boot.text, "ax"
	.code32
	.globl	mb2_entry
mb2_entry:
	cli
	cld
	movl	%eax, %ebp			/* 0x36d76289 from the loader */
	movl	%ebx, %esi
	jmp	boot32

	.globl	pvh_entry
pvh_entry:
	cli
	cld
	movl	$BOOT_MAGIC_PVH, %ebp
	movl	%ebx, %esi

boot32:
	movl	$boot_stack_top, %esp

	/* Long mode (bit 29) and NX (bit 20) in CPUID 0x80000001:EDX. */
	movl	$0x80000000, %eax
	cpuid
	cmpl	$0x80000001, %eax
	jb	no_long_mode
	movl	$0x80000001, %eax
	cpuid
	btl	$29, %edx
	jnc	no_long_mode
	btl	$20, %edx
	jnc	no_long_mode

	/* Zero the six table pages; the loader zeroes .bss, but do not rely on it here. */
	movl	$boot_pml4, %edi
	movl	$(6 * 4096 / 4), %ecx
	xorl	%eax, %eax
	rep stosl

	/* PML4[0] -> PDPT, PDPT[0..3] -> PD0..PD3 (present, writable). */
	movl	$boot_pdpt, %eax
	orl	$3, %eax
	movl	%eax, boot_pml4
	movl	$boot_pd, %eax
	orl	$3, %eax
	xorl	%ecx, %ecx
1:	movl	%eax, boot_pdpt(, %ecx, 8)
	addl	$4096, %eax
	incl	%ecx
	cmpl	$4, %ecx
	jb	1b

	/* 2048 PD entries of 2 MiB each: present, writable, PS. */
	movl	$0x83, %eax
	xorl	%edx, %edx			/* high dword: address bits 32+ */
	xorl	%ecx, %ecx
2:	movl	%eax, boot_pd(, %ecx, 8)
	movl	%edx, boot_pd + 4(, %ecx, 8)
	addl	$0x200000, %eax
	jnc	3f
	incl	%edx
3:	incl	%ecx
	cmpl	$2048, %ecx
	jb	2b

	movl	$boot_pml4, %eax
	movl	%eax, %cr3
	movl	%cr4, %eax
	orl	$CR4_PAE, %eax
	movl	%eax, %cr4
	movl	$MSR_EFER_NUM, %ecx
	rdmsr
	orl	$(EFER_LME_BIT | EFER_NXE_BIT), %eax
	wrmsr
	movl	%cr0, %eax
	orl	$(CR0_PG | CR0_WP | CR0_PE), %eax
	movl	%eax, %cr0

	lgdt	boot_gdt_ptr
	ljmp	$0x08, $boot64

/* Say why we stop, on COM1, without any set-up (the BIOS left it usable). */
no_long_mode:
	movl	$no_lm_msg, %esi
4:	lodsb
	testb	%al, %al
	jz	5f
	movw	$0x3f8, %dx
	outb	%al, %dx
	jmp	4b
5:	hlt
	jmp	5b

	.code64
boot64:
	movl	$0x10, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	xorl	%eax, %eax
	movl	%eax, %fs
	movl	%eax, %gs
	movl	$boot_stack_top, %esp
	movl	%ebp, %edi			/* boot protocol magic */
	xorl	%ebp, %ebp			/* terminates frame-pointer backtraces */
	/* kmain(magic, info): %edi/%esi; upper halves are already zero. */
	movl	%esi, %esi
	call	kmain
6:	cli
	hlt
	jmp	6b

	.section .boot.rodata, "a"
no_lm_msg:
	.asciz	"nmikit: this CPU has no 64-bit long mode or no NX bit; cannot boot.\r\n"

	.balign 8
boot_gdt:
	.quad	0
	.quad	0x00af9a000000ffff		/* 64-bit kernel code */
	.quad	0x00cf92000000ffff		/* kernel data */
boot_gdt_end:
	.balign 8
boot_gdt_ptr:
	.word	boot_gdt_end - boot_gdt - 1
	.long	boot_gdt

	.section .boot.bss, "aw", @nobits
	.balign 4096
	.globl	boot_pml4
boot_pml4:	.skip 4096
boot_pdpt:	.skip 4096
boot_pd:	.skip 4 * 4096
	.balign 16
boot_stack:	.skip 16384
boot_stack_top:
