/*
 * boot_info.c: reads what the loader handed us (PVH start_info from QEMU's
 * direct kernel boot, or the Multiboot2 information from GRUB) into one
 * protocol-neutral struct boot_info.  Runs once on the boot CPU, before
 * anything else; a malformed structure is ignored with a safe default.
 */
#include <arch/boot.h>
#include <stdbool.h>
#include <stddef.h>

struct boot_info boot_info;

static char cmdline_copy[1024];

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;		/* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

#define MEM_RAM		1
#define MB2_TAG_END	0
#define MB2_TAG_CMDLINE	1
#define MB2_TAG_MMAP	6
#define MB2_TAG_ACPI1	14
#define MB2_TAG_ACPI2	15
#define FOUR_GIB	0x100000000ull

static void copy_cmdline(const char *src, size_t max)
{
	size_t i = 0;
	if (src)
		for (; i < max && i + 1 < sizeof(cmdline_copy) && src[i]; i++)
			cmdline_copy[i] = src[i];
	cmdline_copy[i] = '\0';
	boot_info.cmdline = cmdline_copy;
}

static void note_ram(uint64_t addr, uint64_t size)
{
	uint64_t end = addr + size;
	if (end > FOUR_GIB)
		end = FOUR_GIB;
	if (end > boot_info.mem_top)
		boot_info.mem_top = end;
}

static void parse_pvh(const struct hvm_start_info *si)
{
	boot_info.protocol = "PVH";
	copy_cmdline((const char *)(uintptr_t)si->cmdline_paddr, sizeof(cmdline_copy));
	boot_info.rsdp_phys = si->rsdp_paddr;
	if (si->version >= 1 && si->memmap_paddr) {
		const struct hvm_memmap_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
		for (uint32_t i = 0; i < si->memmap_entries && i < 128; i++)
			if (e[i].type == MEM_RAM)
				note_ram(e[i].addr, e[i].size);
	}
}

static void parse_mb2_mmap(const uint8_t *tag, uint32_t size)
{
	uint32_t entry_size = *(const uint32_t *)(tag + 8);
	if (entry_size < 24)
		return;
	for (uint32_t off = 16; off + entry_size <= size; off += entry_size) {
		const uint64_t *ent = (const uint64_t *)(tag + off);
		if (*(const uint32_t *)(tag + off + 16) == MEM_RAM)
			note_ram(ent[0], ent[1]);
	}
}

static void parse_mb2(const uint8_t *mbi)
{
	uint32_t total = *(const uint32_t *)mbi;
	boot_info.protocol = "Multiboot2";
	for (uint32_t off = 8; off + 8 <= total;) {
		const uint8_t *tag = mbi + off;
		uint32_t type = *(const uint32_t *)tag;
		uint32_t size = *(const uint32_t *)(tag + 4);
		if (type == MB2_TAG_END || size < 8 || off + size > total)
			break;
		if (type == MB2_TAG_CMDLINE)
			copy_cmdline((const char *)tag + 8, size - 8);
		else if (type == MB2_TAG_MMAP)
			parse_mb2_mmap(tag, size);
		else if ((type == MB2_TAG_ACPI1 && !boot_info.rsdp_phys) || type == MB2_TAG_ACPI2)
			boot_info.rsdp_phys = (uint64_t)(uintptr_t)(tag + 8);
		off += (size + 7) & ~7u;
	}
}

void boot_info_parse(uint32_t magic, uint64_t info_phys)
{
	boot_info.protocol = "unknown";
	copy_cmdline(NULL, 0);
	if (magic == BOOT_MAGIC_PVH && info_phys &&
	    ((const struct hvm_start_info *)(uintptr_t)info_phys)->magic == BOOT_MAGIC_PVH)
		parse_pvh((const void *)(uintptr_t)info_phys);
	else if (magic == MB2_BOOT_MAGIC && info_phys)
		parse_mb2((const void *)(uintptr_t)info_phys);
	if (!boot_info.mem_top)
		boot_info.mem_top = 64ull << 20;	/* no memory map: assume the minimum we need */
}
