/*
 * acpi.c: finds the ACPI tables in physical memory (identity mapped) and
 * turns them, through the pure parsers of kernel/acpi_parse.c, into
 * `platform`: CPUs in a stable order, IO-APICs, ISA overrides, LINT NMI
 * wiring, the HPET, and the power-off and reset registers.  Anything
 * missing or malformed is reported and replaced by a safe default.
 */
#include <arch/acpi.h>
#include <arch/apic.h>
#include <arch/boot.h>
#include <arch/cpu.h>
#include <arch/paging.h>
#include <kernel/acpi.h>
#include <nmikit/format.h>
#include <nmikit/log.h>

struct platform_info platform;

/* Scratch for the parsers: static, acpi_init() runs once on one CPU. */
static struct acpi_madt_info madt;

#define MAX_ROOT_ENTRIES	64
#define FOUR_GIB		(4ull << 30)
/* A table larger than this is treated as corrupt (real ones are KiBs; a DSDT may be ~100 KiB). */
#define MAX_TABLE_LEN		(4u << 20)

extern char __kernel_start[], __kernel_end[];

/*
 * Whether [phys, phys+len) may be read through the identity map: below
 * 4 GiB, clear of page 0 (left unmapped to catch NULL) and of the kernel
 * image (firmware tables never overlap it; a table claiming to is corrupt).
 */
static bool phys_readable(uint64_t phys, uint64_t len)
{
	if (phys < PAGE_SIZE || len == 0 || phys + len < phys || phys + len > FOUR_GIB)
		return false;
	if (phys < (uint64_t)__kernel_end && phys + len > (uint64_t)__kernel_start)
		return false;
	return true;
}

static const void *phys_ptr(uint64_t phys)
{
	return (const void *)(uintptr_t)phys;
}

/*
 * Map a whole table: read its header for the length, then check the rest.
 * Returns the table (identity mapped) and its length, or NULL.
 */
static const void *get_table(uint64_t phys, uint32_t *len_out, const char *why)
{
	uint32_t len;
	if (!phys_readable(phys, ACPI_SDT_HEADER_LEN)) {
		pr_warn("ACPI: %s at %#llx is outside readable memory; ignored", why,
			(unsigned long long)phys);
		return NULL;
	}
	int rc = acpi_sdt_length(phys_ptr(phys), ACPI_SDT_HEADER_LEN, &len);
	if (rc != ACPI_OK || len > MAX_TABLE_LEN || !phys_readable(phys, len)) {
		pr_warn("ACPI: %s at %#llx has a bad length (%s); ignored", why,
			(unsigned long long)phys, rc ? acpi_strerror(rc) : "too large");
		return NULL;
	}
	*len_out = len;
	return phys_ptr(phys);
}

static void print_table(const char *sig, uint64_t phys, const struct acpi_sdt_info *i)
{
	pr_info("ACPI: %-4s %#010llx %06x (v%02u %-6s %-8s)", sig, (unsigned long long)phys,
		i->length, i->revision, i->oem_id, i->oem_table_id);
}

/* --- RSDP --------------------------------------------------------------- */

static bool rsdp_at(uint64_t phys, struct acpi_rsdp_info *info)
{
	if (!phys_readable(phys, ACPI_RSDP_V2_LEN))
		return false;
	return acpi_parse_rsdp(phys_ptr(phys), ACPI_RSDP_V2_LEN, info) == ACPI_OK;
}

static bool scan_area(uint64_t phys, size_t len, struct acpi_rsdp_info *info, uint64_t *found)
{
	size_t off;
	if (!phys_readable(phys, len) || acpi_find_rsdp(phys_ptr(phys), len, &off) != ACPI_OK)
		return false;
	*found = phys + off;
	return rsdp_at(*found, info);
}

/*
 * The EBDA's segment is the 16-bit word at 0x40e in the BIOS data area,
 * which lives in page 0.  That page is unmapped to catch NULL pointers, so
 * map it read-only for the one read.
 */
static uint64_t ebda_base(void)
{
	uintptr_t where = 0x40e;
	__asm__("" : "+r"(where));	/* a runtime address, as far as the compiler knows */
	paging_set_page(0, PTE_P | PTE_NX);
	uint64_t seg = *(volatile uint16_t *)where;
	paging_set_page(0, 0);
	uint64_t base = seg << 4;
	/* The EBDA sits just below 640 KiB; anything else is not an EBDA pointer. */
	if (base < 0x80000 || base >= 0xa0000)
		return 0;
	return base;
}

static bool find_rsdp(struct acpi_rsdp_info *info, uint64_t *where, const char **how)
{
	if (boot_info.rsdp_phys) {
		if (rsdp_at(boot_info.rsdp_phys, info)) {
			*where = boot_info.rsdp_phys;
			*how = boot_info.protocol;
			return true;
		}
		pr_warn("ACPI: the RSDP the loader gave (%#llx) is not valid; scanning the BIOS areas",
			(unsigned long long)boot_info.rsdp_phys);
	}
	uint64_t ebda = ebda_base();
	if (ebda && scan_area(ebda, 1024, info, where)) {
		*how = "EBDA";
		return true;
	}
	if (scan_area(0xe0000, 0x20000, info, where)) {
		*how = "BIOS area";
		return true;
	}
	return false;
}

/* --- MADT --------------------------------------------------------------- */

static uint32_t boot_apic_id(void)
{
	if (lapic_ready())
		return lapic_id();
	uint32_t a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	return b >> 24;
}

static void add_cpu(uint32_t apic_id, uint32_t uid)
{
	if (platform.n_cpus >= MAX_CPUS) {
		platform.n_cpus_dropped++;
		return;
	}
	platform.cpus[platform.n_cpus++] = (struct plat_cpu){ .apic_id = apic_id, .acpi_uid = uid };
}

static void use_madt(const void *t, uint32_t len)
{
	int rc = acpi_parse_madt(t, len, &madt);
	if (rc == ACPI_E_ENTRY_LENGTH || rc == ACPI_E_ENTRY_TRUNCATED) {
		pr_warn("ACPI: MADT: %s at offset %u; using the %u entries before it",
			acpi_strerror(rc), madt.err_offset,
			madt.lapic_count + madt.ioapic_count + madt.iso_count + madt.lapic_nmi_count);
	} else if (rc != ACPI_OK) {
		pr_warn("ACPI: MADT unusable (%s); one CPU, no IO-APIC", acpi_strerror(rc));
		return;
	}
	platform.madt = true;
	if (madt.lapic_addr)
		platform.lapic_phys = madt.lapic_addr;
	platform.pcat_compat = madt.flags & ACPI_MADT_PCAT_COMPAT;

	/* CPU 0 is the boot CPU; the others follow in MADT order. */
	uint32_t bsp = boot_apic_id();
	bool bsp_listed = false;
	unsigned int disabled = 0, bad_id = 0;
	for (unsigned int i = 0; i < madt.lapic_count; i++)
		if (madt.lapic[i].apic_id == bsp && (madt.lapic[i].flags & ACPI_MADT_LAPIC_ENABLED)) {
			add_cpu(bsp, madt.lapic[i].processor_uid);
			bsp_listed = true;
			break;
		}
	if (!bsp_listed) {
		pr_warn("ACPI: MADT does not list the boot CPU (APIC ID %u) as enabled; adding it", bsp);
		add_cpu(bsp, 0xff);
	}
	for (unsigned int i = 0; i < madt.lapic_count; i++) {
		const struct acpi_madt_lapic *l = &madt.lapic[i];
		if (!(l->flags & ACPI_MADT_LAPIC_ENABLED)) {
			disabled++;
			continue;
		}
		if (l->apic_id == bsp)
			continue;
		if (l->apic_id == 0xff) {	/* the xAPIC broadcast ID cannot name one CPU */
			bad_id++;
			continue;
		}
		add_cpu(l->apic_id, l->processor_uid);
	}
	platform.n_cpus_dropped += madt.lapic_dropped;
	if (platform.n_cpus_dropped)
		pr_warn("ACPI: MADT: %u more CPUs than nmikit supports (%u); not started",
			platform.n_cpus_dropped, MAX_CPUS);
	if (bad_id)
		pr_warn("ACPI: MADT: %u CPUs with APIC ID 255 ignored", bad_id);
	if (madt.x2apic_count)
		pr_warn("ACPI: MADT: %u x2APIC CPUs ignored (nmikit drives the xAPIC)",
			madt.x2apic_count);

	for (unsigned int i = 0; i < madt.ioapic_count && i < PLAT_MAX_IOAPICS; i++)
		platform.ioapics[platform.n_ioapics++] = (struct plat_ioapic){
			.id = madt.ioapic[i].id,
			.phys = madt.ioapic[i].address,
			.gsi_base = madt.ioapic[i].gsi_base,
		};
	unsigned int other_bus = 0;
	for (unsigned int i = 0; i < madt.iso_count; i++) {
		const struct acpi_madt_iso *o = &madt.iso[i];
		if (o->bus != 0 || o->source > 15) {
			other_bus++;
			continue;
		}
		if (platform.n_overrides < PLAT_MAX_OVERRIDES)
			platform.overrides[platform.n_overrides++] = (struct plat_override){
				.irq = o->source, .gsi = o->gsi, .flags = o->flags,
			};
	}
	if (other_bus)
		pr_warn("ACPI: MADT: %u overrides for non-ISA sources ignored", other_bus);
	for (unsigned int i = 0; i < madt.lapic_nmi_count && i < PLAT_MAX_LAPIC_NMIS; i++) {
		const struct acpi_madt_lapic_nmi *n = &madt.lapic_nmi[i];
		if (n->lint > 1) {
			pr_warn("ACPI: MADT: NMI entry for LINT%u ignored", n->lint);
			continue;
		}
		platform.lapic_nmi[platform.n_lapic_nmi++] = (struct plat_lapic_nmi){
			.acpi_uid = n->processor_uid, .lint = n->lint, .flags = n->flags,
		};
	}

	pr_info("ACPI: MADT: %u CPU%s, %u IO-APIC%s, %u override%s, %u NMI entr%s",
		platform.n_cpus, platform.n_cpus == 1 ? "" : "s",
		platform.n_ioapics, platform.n_ioapics == 1 ? "" : "s",
		platform.n_overrides, platform.n_overrides == 1 ? "" : "s",
		platform.n_lapic_nmi, platform.n_lapic_nmi == 1 ? "y" : "ies");
	if (disabled)
		pr_info("ACPI: MADT: %u more CPUs listed but not enabled (hot-plug slots)", disabled);
	for (unsigned int i = 0; i < platform.n_overrides; i++) {
		const struct plat_override *o = &platform.overrides[i];
		pr_info("ACPI: INT_SRC_OVR (bus 0 bus_irq %u global_irq %u %s %s)", o->irq, o->gsi,
			(o->flags & MPS_POLARITY_MASK) == MPS_POLARITY_LOW ? "low" :
			(o->flags & MPS_POLARITY_MASK) == MPS_POLARITY_HIGH ? "high" : "dfl",
			(o->flags & MPS_TRIGGER_MASK) == MPS_TRIGGER_LEVEL ? "level" :
			(o->flags & MPS_TRIGGER_MASK) == MPS_TRIGGER_EDGE ? "edge" : "dfl");
	}
	for (unsigned int i = 0; i < platform.n_lapic_nmi; i++) {
		const struct plat_lapic_nmi *n = &platform.lapic_nmi[i];
		if (n->acpi_uid == ACPI_MADT_ALL_PROCESSORS)
			pr_info("ACPI: LAPIC_NMI (acpi_id all, LINT%u)", n->lint);
		else
			pr_info("ACPI: LAPIC_NMI (acpi_id %u, LINT%u)", n->acpi_uid, n->lint);
	}
}

/* --- HPET, FADT ----------------------------------------------------------- */

static void use_hpet(const void *t, uint32_t len)
{
	struct acpi_hpet_info h;
	int rc = acpi_parse_hpet(t, len, &h);
	if (rc != ACPI_OK) {
		pr_warn("ACPI: HPET table unusable (%s); no HPET", acpi_strerror(rc));
		return;
	}
	platform.hpet = true;
	platform.hpet_phys = h.address;
	platform.hpet_number = h.hpet_number;
	platform.hpet_min_tick = h.min_tick;
}

static void use_dsdt(uint64_t phys)
{
	uint32_t len;
	const void *t = get_table(phys, &len, "DSDT");
	if (!t)
		return;
	struct acpi_sdt_info i;
	int rc = acpi_check_sdt(t, len, ACPI_SIG_DSDT, &i);
	if (rc != ACPI_OK) {
		pr_warn("ACPI: DSDT unusable (%s)", acpi_strerror(rc));
		return;
	}
	print_table("DSDT", phys, &i);
	rc = acpi_dsdt_find_s5(t, len, &platform.s5_typ_a, &platform.s5_typ_b);
	if (rc == ACPI_OK)
		platform.s5_found = true;
	else
		pr_info("ACPI: no usable \\_S5 in the DSDT (%s); power-off uses SLP_TYP 0",
			acpi_strerror(rc));
}

static void use_fadt(const void *t, uint32_t len)
{
	struct acpi_fadt_info f;
	int rc = acpi_parse_fadt(t, len, &f);
	if (rc != ACPI_OK) {
		pr_warn("ACPI: FADT unusable (%s); power-off and reset use the PC defaults",
			acpi_strerror(rc));
		return;
	}
	platform.fadt = true;
	if (f.pm1a_cnt <= 0xffff)
		platform.pm1a_cnt = (uint32_t)f.pm1a_cnt;
	if (f.pm1b_cnt <= 0xffff)
		platform.pm1b_cnt = (uint32_t)f.pm1b_cnt;
	platform.boot_arch = f.boot_arch;
	if (f.has_reset_reg && f.reset_reg.space_id == ACPI_GAS_IO && f.reset_reg.address <= 0xffff) {
		platform.reset_reg = true;
		platform.reset_port = (uint16_t)f.reset_reg.address;
		platform.reset_value = f.reset_value;
	}
	if (f.dsdt)
		use_dsdt(f.dsdt);
}

/* --- the walk ------------------------------------------------------------ */

static void fallback_defaults(void)
{
	if (!platform.n_cpus)
		add_cpu(boot_apic_id(), 0xff);
	if (!platform.lapic_phys)
		platform.lapic_phys = rdmsr(MSR_APIC_BASE) & APIC_BASE_ADDR_MASK;
}

void acpi_init(void)
{
	struct acpi_rsdp_info rsdp;
	uint64_t rsdp_phys;
	const char *how;

	if (!find_rsdp(&rsdp, &rsdp_phys, &how)) {
		pr_warn("ACPI: no RSDP (loader, EBDA, 0xe0000-0xfffff); one CPU with the APIC "
			"at the MSR's address, no IO-APIC, no HPET (PIT calibration)");
		fallback_defaults();
		return;
	}
	pr_info("ACPI: RSDP %#llx %06x (v%02u %-6s) from %s", (unsigned long long)rsdp_phys,
		rsdp.length, rsdp.revision, rsdp.oem_id, how);

	bool xsdt = rsdp.revision >= 2 && rsdp.xsdt_addr;
	uint64_t root = xsdt ? rsdp.xsdt_addr : rsdp.rsdt_addr;
	uint32_t len;
	const void *t = get_table(root, &len, xsdt ? "XSDT" : "RSDT");
	if (!t && xsdt && rsdp.rsdt_addr) {
		xsdt = false;
		root = rsdp.rsdt_addr;
		t = get_table(root, &len, "RSDT");
	}
	static uint64_t entries[MAX_ROOT_ENTRIES];
	size_t count = 0;
	struct acpi_sdt_info info;
	int rc = t ? acpi_parse_rsdt(t, len, xsdt, entries, MAX_ROOT_ENTRIES, &count) : ACPI_E_ADDRESS;
	if (rc != ACPI_OK) {
		pr_warn("ACPI: root table unusable (%s); one CPU, no IO-APIC, no HPET",
			acpi_strerror(rc));
		fallback_defaults();
		return;
	}
	acpi_check_sdt(t, len, NULL, &info);
	print_table(xsdt ? "XSDT" : "RSDT", root, &info);
	platform.acpi = true;
	if (count > MAX_ROOT_ENTRIES) {
		pr_warn("ACPI: root table lists %zu tables; looking at the first %u",
			count, MAX_ROOT_ENTRIES);
		count = MAX_ROOT_ENTRIES;
	}

	for (size_t i = 0; i < count; i++) {
		t = get_table(entries[i], &len, "table");
		if (!t)
			continue;
		rc = acpi_check_sdt(t, len, NULL, &info);
		if (rc != ACPI_OK) {
			pr_warn("ACPI: table at %#llx: %s; ignored", (unsigned long long)entries[i],
				acpi_strerror(rc));
			continue;
		}
		print_table(info.signature, entries[i], &info);
		if (!strcmp(info.signature, ACPI_SIG_MADT) && !platform.madt)
			use_madt(t, len);
		else if (!strcmp(info.signature, ACPI_SIG_HPET) && !platform.hpet)
			use_hpet(t, len);
		else if (!strcmp(info.signature, ACPI_SIG_FADT) && !platform.fadt)
			use_fadt(t, len);
	}
	if (!platform.madt)
		pr_warn("ACPI: no usable MADT; one CPU with the APIC at the MSR's address, no IO-APIC");
	fallback_defaults();
}

uint32_t acpi_isa_irq_to_gsi(unsigned int irq, uint16_t *flags)
{
	for (unsigned int i = 0; i < platform.n_overrides; i++)
		if (platform.overrides[i].irq == irq) {
			*flags = platform.overrides[i].flags;
			return platform.overrides[i].gsi;
		}
	*flags = 0;	/* ISA default: active high, edge */
	return irq;
}
