/*
 * paging.c: builds the final page tables, replacing boot.S's 2 MiB identity
 * map.  Run once on the boot CPU before the other CPUs start; they load the
 * same CR3.  The tables never change after boot, so no TLB shootdown exists.
 */
#include <arch/paging.h>
#include <arch/percpu.h>
#include <arch/cpu.h>
#include <arch/serial.h>

#define FINE_PTS	(FINE_MAP_LIMIT / (2ull << 20))

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[4][512] __attribute__((aligned(4096)));
static uint64_t pt[FINE_PTS][512] __attribute__((aligned(4096)));

extern char __kernel_start[], __text_start[], __text_end[], __utext_start[], __utext_end[];
extern char __rodata_start[], __rodata_end[], __udata_start[], __udata_end[];
extern char __data_start[], __bss_end[];

#define MMIO_START	0xc0000000ull

static uint64_t *pte_of(uint64_t va)
{
	return &pt[va >> 21][(va >> 12) & 511];
}

void paging_set_page(uint64_t va, uint64_t flags)
{
	if (va >= FINE_MAP_LIMIT)
		return;
	*pte_of(va) = flags ? ((va & ~0xfffull) | flags) : 0;
	invlpg(va);
}

void paging_set_range(uint64_t va, uint64_t len, uint64_t flags)
{
	for (uint64_t a = va & ~0xfffull; a < va + len; a += PAGE_SIZE)
		paging_set_page(a, flags);
}

bool paging_is_guard(uint64_t va)
{
	for (unsigned int c = 0; c < MAX_CPUS; c++) {
		struct cpu_stacks *s = &cpu_stacks[c];
		uint8_t *g[] = { s->guard_nmi, s->guard_db, s->guard_mc, s->guard_df, s->guard_boot };
		for (unsigned int i = 0; i < 5; i++)
			if (va >= (uint64_t)g[i] && va < (uint64_t)g[i] + PAGE_SIZE)
				return true;
	}
	return false;
}

static void map_fine_region(void)
{
	const uint64_t rw = PTE_P | PTE_W | PTE_NX;
	for (uint64_t va = 0; va < FINE_MAP_LIMIT; va += PAGE_SIZE)
		*pte_of(va) = va | rw;
	/* Low memory stays executable: the AP start-up trampoline runs there. */
	for (uint64_t va = 0; va < (uint64_t)__kernel_start; va += PAGE_SIZE)
		*pte_of(va) = va | PTE_P | PTE_W;
	*pte_of(0) = 0;		/* NULL dereferences fault */
	for (uint64_t va = (uint64_t)__kernel_start; va < (uint64_t)__text_end; va += PAGE_SIZE)
		*pte_of(va) = va | PTE_P;
	for (uint64_t va = (uint64_t)__utext_start; va < (uint64_t)__utext_end; va += PAGE_SIZE)
		*pte_of(va) = va | PTE_P | PTE_U;
	for (uint64_t va = (uint64_t)__rodata_start; va < (uint64_t)__rodata_end; va += PAGE_SIZE)
		*pte_of(va) = va | PTE_P | PTE_NX;
	for (uint64_t va = (uint64_t)__udata_start; va < (uint64_t)__udata_end; va += PAGE_SIZE)
		*pte_of(va) = va | PTE_P | PTE_W | PTE_U | PTE_NX;
}

static void unmap_guard_pages(void)
{
	for (unsigned int c = 0; c < MAX_CPUS; c++) {
		struct cpu_stacks *s = &cpu_stacks[c];
		*pte_of((uint64_t)s->guard_nmi) = 0;
		*pte_of((uint64_t)s->guard_db) = 0;
		*pte_of((uint64_t)s->guard_mc) = 0;
		*pte_of((uint64_t)s->guard_df) = 0;
		*pte_of((uint64_t)s->guard_boot) = 0;
	}
}

void paging_init(void)
{
	extern char boot_pml4[];
	if ((uint64_t)__bss_end > FINE_MAP_LIMIT) {
		/* Cannot happen with MAX_CPUS as built; keep the boot tables and say why. */
		serial_puts("paging: kernel image larger than FINE_MAP_LIMIT, keeping boot page tables\n");
		return;
	}
	map_fine_region();
	unmap_guard_pages();
	for (unsigned int i = 0; i < FINE_PTS; i++)
		pd[0][i] = (uint64_t)pt[i] | PTE_P | PTE_W | PTE_U;
	for (uint64_t i = FINE_PTS; i < 4 * 512; i++) {
		uint64_t pa = i << 21;
		uint64_t flags = PTE_P | PTE_W | PTE_PS | PTE_NX;
		if (pa >= MMIO_START)
			flags |= PTE_PCD | PTE_PWT;	/* APIC, IO-APIC, HPET: uncached */
		pd[i / 512][i % 512] = pa | flags;
	}
	for (int i = 0; i < 4; i++)
		pdpt[i] = (uint64_t)pd[i] | PTE_P | PTE_W | PTE_U;
	pml4[0] = (uint64_t)pdpt | PTE_P | PTE_W | PTE_U;
	(void)boot_pml4;
	write_cr3((uint64_t)pml4);
}

uint64_t paging_root(void)
{
	return (uint64_t)pml4;
}
