/*
 * Constants shared by boot.S and the C code that reads the loader's boot
 * information (PVH start_info or Multiboot2 tags).
 */
#ifndef ARCH_BOOT_H
#define ARCH_BOOT_H

#define MB2_HEADER_MAGIC	0xe85250d6
#define MB2_BOOT_MAGIC		0x36d76289
#define BOOT_MAGIC_PVH		0x336ec578	/* hvm_start_info.magic */

#define CR0_PE		0x00000001
#define CR0_WP		0x00010000
#define CR0_PG		0x80000000
#define CR4_PAE		0x00000020
#define MSR_EFER_NUM	0xc0000080
#define EFER_LME_BIT	0x00000100
#define EFER_NXE_BIT	0x00000800

#ifndef __ASSEMBLER__
#include <stdint.h>

/* What kmain learns from the loader, whichever protocol it used. */
struct boot_info {
	const char *protocol;		/* "PVH" or "Multiboot2" */
	const char *cmdline;		/* never NULL */
	uint64_t rsdp_phys;		/* 0 when the loader did not say */
	uint64_t mem_top;		/* end of the highest usable RAM below 4 GiB */
};

extern struct boot_info boot_info;
void boot_info_parse(uint32_t magic, uint64_t info_phys);
#endif

#endif
