/*
 * ksyms.c: address -> function name, from the symbol table that the second
 * link pass embeds (tools/gen-ksyms: addresses sorted ascending, each with a
 * 32-bit offset of its name in a string table).  Read-only data and no
 * state: safe in any context, NMI included.
 */
#include <kernel/backtrace.h>
#include <nmikit/format.h>

extern const uint64_t ksyms_count;
extern const uint64_t ksyms_addr[];
extern const uint32_t ksyms_name_off[];
extern const char ksyms_strtab[];

/* End of the last code section (kernel.ld): bounds the last symbol. */
extern char __utext_end[];

/*
 * NMI-safe: yes.  Reads only the constant table; O(log n) steps.
 */
const char *ksym_lookup(uint64_t addr, uint64_t *offset, uint64_t *size)
{
	uint64_t n = ksyms_count;
	uint64_t lo = 0, hi = n;

	if (n == 0 || addr < ksyms_addr[0] || addr >= (uint64_t)__utext_end)
		return NULL;
	/* Find the last entry whose address is <= addr. */
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (ksyms_addr[mid] <= addr)
			lo = mid;
		else
			hi = mid;
	}
	/* Several names may share an address (aliases): size runs to the next distinct one. */
	uint64_t next = lo + 1;
	while (next < n && ksyms_addr[next] == ksyms_addr[lo])
		next++;
	uint64_t end = next < n ? ksyms_addr[next] : (uint64_t)__utext_end;

	if (offset)
		*offset = addr - ksyms_addr[lo];
	if (size)
		*size = end - ksyms_addr[lo];
	return ksyms_strtab + ksyms_name_off[lo];
}

/*
 * NMI-safe: yes (ksym_lookup plus nk_snprintf, which keeps no state).
 */
int ksym_format(char *buf, size_t size, uint64_t addr, bool return_address)
{
	uint64_t off, len;
	const char *name = ksym_lookup(return_address && addr ? addr - 1 : addr, &off, &len);

	if (!name)
		return nk_snprintf(buf, size, "0x%lx", (unsigned long)addr);
	if (return_address && addr)
		off++;		/* looked up at addr - 1; report the offset of addr */
	return nk_snprintf(buf, size, "%s+0x%lx/0x%lx", name, (unsigned long)off, (unsigned long)len);
}
