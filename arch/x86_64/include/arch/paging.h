/*
 * The kernel's one address space: physical memory identity mapped, the first
 * 64 MiB with 4 KiB pages so that every stack can have an unmapped guard page
 * and every section its own permissions (text RX, rodata R, data RW+NX).
 */
#ifndef ARCH_PAGING_H
#define ARCH_PAGING_H

#include <stdint.h>
#include <stdbool.h>

#define PTE_P	(1ull << 0)
#define PTE_W	(1ull << 1)
#define PTE_U	(1ull << 2)
#define PTE_PWT	(1ull << 3)
#define PTE_PCD	(1ull << 4)
#define PTE_PS	(1ull << 7)
#define PTE_G	(1ull << 8)
#define PTE_NX	(1ull << 63)

#define FINE_MAP_LIMIT	(64ull << 20)	/* below this, 4 KiB pages */

void paging_init(void);			/* boot CPU, once */
uint64_t paging_root(void);		/* CR3 value for the other CPUs */
/* Change one 4 KiB page below FINE_MAP_LIMIT; flags 0 unmaps it. Boot time only. */
void paging_set_page(uint64_t va, uint64_t flags);
void paging_set_range(uint64_t va, uint64_t len, uint64_t flags);
bool paging_is_guard(uint64_t va);	/* an address in an unmapped guard page? */

#endif
