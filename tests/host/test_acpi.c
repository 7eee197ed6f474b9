/*
 * test_acpi.c: host tests of the ACPI table parsers (kernel/acpi_parse.c).
 * Tables are built byte by byte here (QEMU-like contents), then broken in
 * every way that matters: bad signatures and checksums, lengths that lie,
 * entries cut short, every truncation of a valid table and random
 * corruption.  Each parse runs on a heap copy of exactly the claimed size, so
 * AddressSanitizer catches any read past the end.  TAP on stdout.
 */
#define _GNU_SOURCE
#include <kernel/acpi.h>

#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* `expr` returns the ACPI status `want`; both are named when it does not. */
#define CHECK_RC(expr, want)							\
	do {									\
		int rc_ = (expr);						\
		CHECK_MSG(rc_ == (want), "%s gave %d (%s), want %d (%s)", #expr,	\
			  rc_, acpi_strerror(rc_), (want), acpi_strerror(want));	\
	} while (0)

/* --- building tables ------------------------------------------------------------ */

struct tbl {
	uint8_t b[8192];
	size_t len;
};

static void put8(struct tbl *t, uint8_t v) { t->b[t->len++] = v; }
static void put16(struct tbl *t, uint16_t v) { put8(t, (uint8_t)v); put8(t, (uint8_t)(v >> 8)); }
static void put32(struct tbl *t, uint32_t v) { put16(t, (uint16_t)v); put16(t, (uint16_t)(v >> 16)); }
static void put64(struct tbl *t, uint64_t v) { put32(t, (uint32_t)v); put32(t, (uint32_t)(v >> 32)); }
static void putn(struct tbl *t, const char *s, size_t n) { memcpy(t->b + t->len, s, n); t->len += n; }

static void set32(struct tbl *t, size_t off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		t->b[off + i] = (uint8_t)(v >> (8 * i));
}

static uint8_t checksum_of(const uint8_t *b, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *b++);
	return (uint8_t)(0x100 - s);
}

static void sdt_begin(struct tbl *t, const char *sig, uint8_t rev)
{
	memset(t, 0, sizeof(*t));
	putn(t, sig, 4);
	put32(t, 0);		/* length, set by sdt_end */
	put8(t, rev);
	put8(t, 0);		/* checksum */
	putn(t, "BOCHS ", 6);
	putn(t, "BXPC    ", 8);
	put32(t, 1);
	putn(t, "BXPC", 4);
	put32(t, 1);
}

/* Set the length field to the bytes written and fix the checksum. */
static void sdt_end(struct tbl *t)
{
	set32(t, 4, (uint32_t)t->len);
	t->b[9] = 0;
	t->b[9] = checksum_of(t->b, t->len);
}

static void fix_checksum(struct tbl *t, size_t len)
{
	t->b[9] = 0;
	t->b[9] = checksum_of(t->b, len);
}

/* A heap copy of exactly `len` bytes: reading past it is an ASan error. */
static void *exact(const void *src, size_t len)
{
	void *p = malloc(len ? len : 1);

	memcpy(p, src, len);
	return p;
}

static int parse_madt_exact(const struct tbl *t, size_t len, struct acpi_madt_info *m)
{
	void *p = exact(t->b, len);
	int rc = acpi_parse_madt(p, len, m);

	free(p);
	return rc;
}

/* MADT entries. */
static void madt_lapic(struct tbl *t, uint8_t uid, uint8_t id, uint32_t flags)
{
	put8(t, ACPI_MADT_LAPIC); put8(t, 8); put8(t, uid); put8(t, id); put32(t, flags);
}

static void madt_ioapic(struct tbl *t, uint8_t id, uint32_t addr, uint32_t gsi)
{
	put8(t, ACPI_MADT_IOAPIC); put8(t, 12); put8(t, id); put8(t, 0); put32(t, addr); put32(t, gsi);
}

static void madt_iso(struct tbl *t, uint8_t src, uint32_t gsi, uint16_t flags)
{
	put8(t, ACPI_MADT_ISO); put8(t, 10); put8(t, 0); put8(t, src); put32(t, gsi); put16(t, flags);
}

static void madt_lapic_nmi(struct tbl *t, uint8_t uid, uint16_t flags, uint8_t lint)
{
	put8(t, ACPI_MADT_LAPIC_NMI); put8(t, 6); put8(t, uid); put16(t, flags); put8(t, lint);
}

/* What QEMU's pc machine gives with -smp N. */
static void build_qemu_madt(struct tbl *t, unsigned ncpus)
{
	sdt_begin(t, "APIC", 1);
	put32(t, 0xfee00000u);
	put32(t, ACPI_MADT_PCAT_COMPAT);
	for (unsigned i = 0; i < ncpus; i++)
		madt_lapic(t, (uint8_t)i, (uint8_t)i, ACPI_MADT_LAPIC_ENABLED);
	madt_ioapic(t, 0, 0xfec00000u, 0);
	madt_iso(t, 0, 2, 0);
	madt_iso(t, 5, 5, ACPI_MPS_POLARITY_HIGH | ACPI_MPS_TRIGGER_LEVEL);
	madt_iso(t, 9, 9, ACPI_MPS_POLARITY_HIGH | ACPI_MPS_TRIGGER_LEVEL);
	madt_iso(t, 10, 10, ACPI_MPS_POLARITY_HIGH | ACPI_MPS_TRIGGER_LEVEL);
	madt_iso(t, 11, 11, ACPI_MPS_POLARITY_HIGH | ACPI_MPS_TRIGGER_LEVEL);
	madt_lapic_nmi(t, ACPI_MADT_ALL_PROCESSORS, 0, 1);
	sdt_end(t);
}

static void build_rsdp(struct tbl *t, uint8_t rev, uint32_t rsdt, uint64_t xsdt)
{
	memset(t, 0, sizeof(*t));
	putn(t, "RSD PTR ", 8);
	put8(t, 0);
	putn(t, "BOCHS ", 6);
	put8(t, rev);
	put32(t, rsdt);
	if (rev >= 2) {
		put32(t, 36);
		put64(t, xsdt);
		put8(t, 0);
		put8(t, 0); put8(t, 0); put8(t, 0);
	}
	t->b[8] = checksum_of(t->b, 20);
	if (rev >= 2)
		t->b[32] = checksum_of(t->b, 36);
}

/* --- RSDP ------------------------------------------------------------------------- */

static void rsdp_v1_is_parsed(void)
{
	struct tbl t;
	struct acpi_rsdp_info r;

	build_rsdp(&t, 0, 0x7fe14d2, 0);
	CHECK_RC(acpi_parse_rsdp(t.b, t.len, &r), ACPI_OK);
	CHECK(r.revision == 0 && r.rsdt_addr == 0x7fe14d2 && r.xsdt_addr == 0);
	CHECK(r.length == 20 && strcmp(r.oem_id, "BOCHS ") == 0);
}

static void rsdp_v2_gives_the_xsdt(void)
{
	struct tbl t;
	struct acpi_rsdp_info r;

	build_rsdp(&t, 2, 0x1000, 0x123456789aull);
	CHECK_RC(acpi_parse_rsdp(t.b, t.len, &r), ACPI_OK);
	CHECK(r.revision == 2 && r.xsdt_addr == 0x123456789aull && r.length == 36);
}

static void rsdp_bad_signature_or_checksum_is_rejected(void)
{
	struct tbl t;

	build_rsdp(&t, 0, 0x1000, 0);
	t.b[0] = 'r';
	CHECK_RC(acpi_parse_rsdp(t.b, t.len, NULL), ACPI_E_SIGNATURE);
	build_rsdp(&t, 0, 0x1000, 0);
	t.b[8]++;
	CHECK_RC(acpi_parse_rsdp(t.b, t.len, NULL), ACPI_E_CHECKSUM);
	build_rsdp(&t, 2, 0x1000, 0x2000);
	t.b[32]++;
	CHECK_RC(acpi_parse_rsdp(t.b, t.len, NULL), ACPI_E_XCHECKSUM);
	build_rsdp(&t, 0, 0, 0);
	CHECK_RC(acpi_parse_rsdp(t.b, t.len, NULL), ACPI_E_ADDRESS);
}

static void rsdp_v2_length_beyond_the_buffer_is_rejected(void)
{
	struct tbl t;
	void *p;

	build_rsdp(&t, 2, 0x1000, 0x2000);
	set32(&t, 20, 4096);
	t.b[8] = 0;
	t.b[8] = checksum_of(t.b, 20);
	p = exact(t.b, 36);
	CHECK_RC(acpi_parse_rsdp(p, 36, NULL), ACPI_E_LENGTH);
	free(p);
	set32(&t, 20, 20);
	t.b[8] = 0;
	t.b[8] = checksum_of(t.b, 20);
	CHECK_RC(acpi_parse_rsdp(t.b, 36, NULL), ACPI_E_LENGTH);
}

static void rsdp_every_short_buffer_is_rejected_without_overread(void)
{
	struct tbl t;

	build_rsdp(&t, 2, 0x1000, 0x2000);
	for (size_t len = 0; len < 36; len++) {
		void *p = exact(t.b, len);

		CHECK(acpi_parse_rsdp(p, len, NULL) != ACPI_OK);
		free(p);
	}
}

static void rsdp_scan_finds_a_valid_one_on_a_16_byte_boundary_only(void)
{
	static uint8_t area[256];
	struct tbl good;
	size_t off = 999;
	void *p;

	memset(area, 0, sizeof(area));
	memcpy(area, "RSD PTR ", 8);		/* signature, wrong checksum */
	build_rsdp(&good, 0, 0x1000, 0);
	memcpy(area + 17, good.b, 20);		/* valid but not aligned */
	CHECK_RC(acpi_find_rsdp(area, sizeof(area), &off), ACPI_E_NOT_FOUND);
	memcpy(area + 96, good.b, 20);
	CHECK_RC(acpi_find_rsdp(area, sizeof(area), &off), ACPI_OK);
	CHECK(off == 96);
	/* One at the very end of the area, and an area too short to hold it. */
	memset(area, 0, sizeof(area));
	memcpy(area + 224, good.b, 20);
	p = exact(area, 244);
	CHECK_RC(acpi_find_rsdp(p, 244, &off), ACPI_OK);
	CHECK(off == 224);
	CHECK_RC(acpi_find_rsdp(p, 243, &off), ACPI_E_NOT_FOUND);
	CHECK_RC(acpi_find_rsdp(p, 3, &off), ACPI_E_NOT_FOUND);
	free(p);
}

/* --- headers, RSDT, XSDT ----------------------------------------------------------- */

static void sdt_header_length_and_checksum_are_checked(void)
{
	struct tbl t;
	struct acpi_sdt_info i;
	uint32_t len;

	sdt_begin(&t, "HPET", 1);
	put32(&t, 0);
	sdt_end(&t);
	CHECK_RC(acpi_check_sdt(t.b, t.len, "HPET", &i), ACPI_OK);
	CHECK(strcmp(i.signature, "HPET") == 0 && i.length == 40 && i.revision == 1);
	CHECK(strcmp(i.oem_table_id, "BXPC    ") == 0);
	CHECK_RC(acpi_check_sdt(t.b, t.len, "APIC", NULL), ACPI_E_SIGNATURE);
	CHECK_RC(acpi_check_sdt(t.b, t.len - 1, NULL, NULL), ACPI_E_LENGTH);
	CHECK_RC(acpi_check_sdt(t.b, 35, NULL, NULL), ACPI_E_SHORT);
	t.b[20] ^= 0x40;
	CHECK_RC(acpi_check_sdt(t.b, t.len, NULL, NULL), ACPI_E_CHECKSUM);
	CHECK_RC(acpi_sdt_length(t.b, 36, &len), ACPI_OK);
	CHECK(len == 40);
	set32(&t, 4, 35);
	CHECK_RC(acpi_sdt_length(t.b, 36, &len), ACPI_E_LENGTH);
	CHECK_RC(acpi_sdt_length(t.b, 10, &len), ACPI_E_SHORT);
}

static void rsdt_entries_are_listed_and_counted_beyond_max(void)
{
	struct tbl t;
	uint64_t a[2];
	size_t n = 0;

	sdt_begin(&t, "RSDT", 1);
	put32(&t, 0x1000);
	put32(&t, 0x2000);
	put32(&t, 0x3000);
	sdt_end(&t);
	CHECK_RC(acpi_parse_rsdt(t.b, t.len, false, a, 2, &n), ACPI_OK);
	CHECK(n == 3 && a[0] == 0x1000 && a[1] == 0x2000);
	CHECK_RC(acpi_parse_rsdt(t.b, t.len, true, a, 2, &n), ACPI_E_SIGNATURE);
}

static void xsdt_unaligned_64bit_entries_are_read(void)
{
	struct tbl t;
	uint64_t a[4];
	size_t n = 0;

	sdt_begin(&t, "XSDT", 1);
	put64(&t, 0x100000000ull);
	put64(&t, 0xfedcba9876543210ull);
	sdt_end(&t);
	CHECK_RC(acpi_parse_rsdt(t.b + 0, t.len, true, a, 4, &n), ACPI_OK);
	CHECK(n == 2 && a[0] == 0x100000000ull && a[1] == 0xfedcba9876543210ull);
}

static void rsdt_with_a_partial_entry_is_rejected(void)
{
	struct tbl t;
	uint64_t a[4];
	size_t n;

	sdt_begin(&t, "XSDT", 1);
	put64(&t, 0x1000);
	put32(&t, 0x2000);
	sdt_end(&t);
	CHECK_RC(acpi_parse_rsdt(t.b, t.len, true, a, 4, &n), ACPI_E_ENTRIES);
}

/* --- MADT ---------------------------------------------------------------------------- */

static struct acpi_madt_info madt;

static void madt_qemu_table_gives_cpus_ioapic_overrides_and_nmi(void)
{
	struct tbl t;

	build_qemu_madt(&t, 4);
	CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_OK);
	CHECK(madt.lapic_addr == 0xfee00000u && (madt.flags & ACPI_MADT_PCAT_COMPAT));
	CHECK(madt.lapic_count == 4);
	for (unsigned i = 0; i < 4; i++)
		CHECK(madt.lapic[i].apic_id == i && (madt.lapic[i].flags & ACPI_MADT_LAPIC_ENABLED));
	CHECK(madt.ioapic_count == 1 && madt.ioapic[0].address == 0xfec00000u);
	CHECK(madt.iso_count == 5);
	CHECK(madt.iso[0].source == 0 && madt.iso[0].gsi == 2 && madt.iso[0].flags == 0);
	CHECK((madt.iso[2].flags & ACPI_MPS_TRIGGER_MASK) == ACPI_MPS_TRIGGER_LEVEL);
	CHECK(madt.lapic_nmi_count == 1);
	CHECK(madt.lapic_nmi[0].processor_uid == ACPI_MADT_ALL_PROCESSORS);
	CHECK(madt.lapic_nmi[0].lint == 1);
	CHECK(madt.x2apic_count == 0 && madt.unknown_count == 0);
	CHECK(madt.err_offset == 0);
}

static void madt_truncated_entry_rejected(void)
{
	struct tbl t;

	build_qemu_madt(&t, 2);
	/* Claim the last entry (the 6-byte NMI entry) is 8 bytes long. */
	t.b[t.len - 5] = 8;
	fix_checksum(&t, t.len);
	CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_E_ENTRY_TRUNCATED);
	CHECK(madt.err_offset == t.len - 6);
	/* What came before the bad entry is there. */
	CHECK(madt.lapic_count == 2 && madt.iso_count == 5);
}

static void madt_zero_or_one_byte_entry_length_rejected(void)
{
	struct tbl t;

	for (uint8_t bad = 0; bad < 2; bad++) {
		build_qemu_madt(&t, 1);
		t.b[44 + 1] = bad;		/* first entry's length */
		fix_checksum(&t, t.len);
		CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_E_ENTRY_LENGTH);
		CHECK(madt.err_offset == 44);
	}
}

static void madt_entry_too_short_for_its_type_rejected(void)
{
	struct tbl t;

	sdt_begin(&t, "APIC", 1);
	put32(&t, 0xfee00000u);
	put32(&t, 0);
	put8(&t, ACPI_MADT_IOAPIC); put8(&t, 8); put32(&t, 0); put16(&t, 0);
	sdt_end(&t);
	CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_E_ENTRY_LENGTH);
}

static void madt_one_trailing_byte_rejected(void)
{
	struct tbl t;

	build_qemu_madt(&t, 1);
	put8(&t, ACPI_MADT_LAPIC);
	sdt_end(&t);
	CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_E_ENTRY_TRUNCATED);
}

static void madt_x2apic_entries_are_counted_and_skipped(void)
{
	struct tbl t;

	sdt_begin(&t, "APIC", 3);
	put32(&t, 0xfee00000u);
	put32(&t, 0);
	madt_lapic(&t, 0, 0, 1);
	put8(&t, ACPI_MADT_X2APIC); put8(&t, 16); put16(&t, 0); put32(&t, 300); put32(&t, 1); put32(&t, 300);
	put8(&t, ACPI_MADT_X2APIC_NMI); put8(&t, 12); put16(&t, 0); put32(&t, 0xffffffffu);
	put8(&t, 1); put8(&t, 0); put8(&t, 0); put8(&t, 0);
	madt_lapic(&t, 1, 1, 1);
	sdt_end(&t);
	CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_OK);
	CHECK(madt.x2apic_count == 1 && madt.x2apic_nmi_count == 1);
	CHECK(madt.lapic_count == 2 && madt.lapic[1].apic_id == 1);
}

static void madt_unknown_entry_types_are_skipped_by_their_length(void)
{
	struct tbl t;

	sdt_begin(&t, "APIC", 5);
	put32(&t, 0xfee00000u);
	put32(&t, 0);
	put8(&t, 0x7f); put8(&t, 5); put8(&t, 0xaa); put8(&t, 0xbb); put8(&t, 0xcc);
	put8(&t, 0x0b); put8(&t, 2);		/* GICC type with a bare header */
	madt_lapic(&t, 0, 7, 1);
	sdt_end(&t);
	CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_OK);
	CHECK(madt.unknown_count == 2 && madt.lapic_count == 1 && madt.lapic[0].apic_id == 7);
}

static void madt_entries_beyond_the_maximums_are_counted_as_dropped(void)
{
	struct tbl t;

	sdt_begin(&t, "APIC", 1);
	put32(&t, 0xfee00000u);
	put32(&t, 0);
	for (unsigned i = 0; i < 256; i++)
		madt_lapic(&t, (uint8_t)i, (uint8_t)i, 1);
	for (unsigned i = 0; i < ACPI_MADT_MAX_IOAPIC + 2; i++)
		madt_ioapic(&t, (uint8_t)i, 0xfec00000u + i * 0x1000, i * 24);
	for (unsigned i = 0; i < ACPI_MADT_MAX_ISO + 3; i++)
		madt_iso(&t, (uint8_t)i, i, 0);
	for (unsigned i = 0; i < ACPI_MADT_MAX_LAPIC_NMI + 4; i++)
		madt_lapic_nmi(&t, (uint8_t)i, 0, 1);
	sdt_end(&t);
	CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_OK);
	CHECK(madt.lapic_count == 256 && madt.lapic_dropped == 0);
	CHECK(madt.ioapic_count == ACPI_MADT_MAX_IOAPIC && madt.ioapic_dropped == 2);
	CHECK(madt.iso_count == ACPI_MADT_MAX_ISO && madt.iso_dropped == 3);
	CHECK(madt.lapic_nmi_count == ACPI_MADT_MAX_LAPIC_NMI && madt.lapic_nmi_dropped == 4);
}

static void madt_duplicate_apic_id_is_ignored_unless_it_enables_the_cpu(void)
{
	struct tbl t;

	sdt_begin(&t, "APIC", 1);
	put32(&t, 0xfee00000u);
	put32(&t, 0);
	madt_lapic(&t, 0, 0, ACPI_MADT_LAPIC_ENABLED);
	madt_lapic(&t, 1, 0, ACPI_MADT_LAPIC_ENABLED);		/* duplicate */
	madt_lapic(&t, 2, 5, 0);				/* disabled... */
	madt_lapic(&t, 3, 5, ACPI_MADT_LAPIC_ENABLED);		/* ...then usable */
	sdt_end(&t);
	CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_OK);
	CHECK(madt.lapic_count == 2 && madt.lapic_duplicates == 2);
	CHECK(madt.lapic[0].processor_uid == 0);
	CHECK(madt.lapic[1].apic_id == 5 && madt.lapic[1].processor_uid == 3);
}

static void madt_lapic_address_override_replaces_the_32bit_address(void)
{
	struct tbl t;

	sdt_begin(&t, "APIC", 1);
	put32(&t, 0xfee00000u);
	put32(&t, 0);
	put8(&t, ACPI_MADT_LAPIC_ADDR_OVERRIDE); put8(&t, 12); put16(&t, 0); put64(&t, 0x1fee00000ull);
	madt_lapic(&t, 0, 0, 1);
	sdt_end(&t);
	CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_OK);
	CHECK(madt.lapic_addr == 0x1fee00000ull && madt.lapic_addr_overridden);
}

static void madt_without_lapic_address_or_body_is_rejected(void)
{
	struct tbl t;

	build_qemu_madt(&t, 1);
	set32(&t, 36, 0);
	fix_checksum(&t, t.len);
	CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_E_ADDRESS);
	sdt_begin(&t, "APIC", 1);
	put32(&t, 0xfee00000u);
	sdt_end(&t);
	CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_E_LENGTH);
}

static void madt_every_truncation_of_a_valid_table_fails_cleanly(void)
{
	struct tbl t, cut;
	int ok = 0;

	build_qemu_madt(&t, 8);
	for (size_t len = 0; len < t.len; len++) {
		/* Buffer cut, length field intact: the table claims more than there is. */
		CHECK(parse_madt_exact(&t, len, &madt) != ACPI_OK);
		/* Length field and checksum made to match the cut. */
		if (len >= 36) {
			cut = t;
			set32(&cut, 4, (uint32_t)len);
			fix_checksum(&cut, len);
			ok += parse_madt_exact(&cut, len, &madt) == ACPI_OK;
		}
	}
	/* Only cuts on entry boundaries are valid tables. */
	CHECK(ok == 8 + 1 + 5 + 1);
}

static void madt_random_corruption_never_reads_out_of_bounds(void)
{
	struct tbl t, bad;
	unsigned seed = 12345, accepted = 0;

	build_qemu_madt(&t, 16);
	for (int iter = 0; iter < 20000; iter++) {
		int flips;
		size_t len;

		bad = t;
		seed = seed * 1103515245u + 12345u;
		flips = 1 + (int)((seed >> 16) % 4);
		for (int f = 0; f < flips; f++) {
			seed = seed * 1103515245u + 12345u;
			bad.b[36 + (seed >> 8) % (t.len - 36)] = (uint8_t)(seed >> 24);
		}
		seed = seed * 1103515245u + 12345u;
		len = t.len - ((seed >> 16) % 4 == 0 ? (seed >> 20) % 16 : 0);
		set32(&bad, 4, (uint32_t)len);
		fix_checksum(&bad, len);
		if (parse_madt_exact(&bad, len, &madt) == ACPI_OK) {
			accepted++;
			CHECK(madt.lapic_count <= ACPI_MADT_MAX_LAPIC);
			CHECK(madt.ioapic_count <= ACPI_MADT_MAX_IOAPIC);
			CHECK(madt.iso_count <= ACPI_MADT_MAX_ISO);
			CHECK(madt.lapic_nmi_count <= ACPI_MADT_MAX_LAPIC_NMI);
		}
	}
	printf("# %u of 20000 corrupted tables still parse\n", accepted);
}

/* --- HPET ---------------------------------------------------------------------------------- */

static void build_hpet(struct tbl *t, uint8_t space, uint64_t addr)
{
	sdt_begin(t, "HPET", 1);
	put32(t, 0x8086a201u);
	put8(t, space); put8(t, 64); put8(t, 0); put8(t, 0); put64(t, addr);
	put8(t, 0);
	put16(t, 0x80);
	put8(t, 0);
	sdt_end(t);
}

static void hpet_qemu_table_gives_address_and_capabilities(void)
{
	struct tbl t;
	struct acpi_hpet_info h;

	build_hpet(&t, ACPI_GAS_MEMORY, 0xfed00000u);
	CHECK(t.len == 56);
	CHECK_RC(acpi_parse_hpet(t.b, t.len, &h), ACPI_OK);
	CHECK(h.address == 0xfed00000u && h.hpet_number == 0 && h.min_tick == 0x80);
	CHECK(h.comparators == 3 && h.counter_64bit && h.legacy_capable);
	CHECK(h.vendor_id == 0x8086);
}

static void hpet_zero_or_io_space_address_rejected(void)
{
	struct tbl t;
	struct acpi_hpet_info h;

	build_hpet(&t, ACPI_GAS_MEMORY, 0);
	CHECK_RC(acpi_parse_hpet(t.b, t.len, &h), ACPI_E_ADDRESS);
	build_hpet(&t, ACPI_GAS_IO, 0xfed00000u);
	CHECK_RC(acpi_parse_hpet(t.b, t.len, &h), ACPI_E_ADDRESS);
}

static void hpet_short_table_rejected_without_overread(void)
{
	struct tbl t;
	struct acpi_hpet_info h;

	build_hpet(&t, ACPI_GAS_MEMORY, 0xfed00000u);
	for (size_t len = 36; len < 56; len++) {
		struct tbl cut = t;
		void *p;

		set32(&cut, 4, (uint32_t)len);
		fix_checksum(&cut, len);
		p = exact(cut.b, len);
		CHECK_RC(acpi_parse_hpet(p, len, &h), ACPI_E_LENGTH);
		free(p);
	}
}

/* --- FADT ------------------------------------------------------------------------------------ */

static void gas(struct tbl *t, size_t off, uint8_t space, uint8_t width, uint64_t addr)
{
	t->b[off] = space;
	t->b[off + 1] = width;
	t->b[off + 2] = 0;
	t->b[off + 3] = 0;
	for (int i = 0; i < 8; i++)
		t->b[off + 4 + i] = (uint8_t)(addr >> (8 * i));
}

/* A FADT of `len` bytes with QEMU's PIIX4/ICH9 PM block at 0x600. */
static void build_fadt(struct tbl *t, uint8_t rev, size_t len)
{
	sdt_begin(t, "FACP", rev);
	while (t->len < len)
		put8(t, 0);
	set32(t, 40, 0x7fe0040);		/* DSDT */
	t->b[46] = 9;				/* SCI IRQ */
	set32(t, 48, 0xb2);			/* SMI_CMD */
	t->b[52] = 0xf1;
	t->b[53] = 0xf0;
	set32(t, 56, 0x600);			/* PM1a_EVT */
	set32(t, 64, 0x604);			/* PM1a_CNT */
	set32(t, 76, 0x608);			/* PM_TMR */
	t->b[88] = 4;
	t->b[89] = 2;
	t->b[91] = 4;
	t->b[108] = 0x32;			/* century */
	set32(t, 112, 0xa5);			/* flags: no reset register */
	sdt_end(t);
}

static void fadt_acpi1_table_gives_pm1_control_and_dsdt(void)
{
	struct tbl t;
	struct acpi_fadt_info f;

	build_fadt(&t, 1, 116);
	CHECK_RC(acpi_parse_fadt(t.b, t.len, &f), ACPI_OK);
	CHECK(f.dsdt == 0x7fe0040 && f.sci_irq == 9 && f.smi_cmd == 0xb2);
	CHECK(f.acpi_enable == 0xf1 && f.acpi_disable == 0xf0);
	CHECK(f.pm1a_evt == 0x600 && f.pm1a_cnt == 0x604 && f.pm1b_cnt == 0);
	CHECK(f.pm_tmr == 0x608 && f.pm1_cnt_len == 2 && f.century == 0x32);
	CHECK(!f.has_reset_reg);
}

static void fadt_newer_table_prefers_x_fields_in_io_space(void)
{
	struct tbl t;
	struct acpi_fadt_info f;

	build_fadt(&t, 5, 276);
	gas(&t, 172, ACPI_GAS_IO, 16, 0xb004);		/* X_PM1a_CNT */
	gas(&t, 184, ACPI_GAS_MEMORY, 16, 0xfe000000);	/* X_PM1b_CNT: memory, ignored */
	for (int i = 0; i < 8; i++)
		t.b[140 + i] = (uint8_t)(0x100000000ull >> (8 * i));	/* X_DSDT */
	fix_checksum(&t, t.len);
	CHECK_RC(acpi_parse_fadt(t.b, t.len, &f), ACPI_OK);
	CHECK(f.pm1a_cnt == 0xb004 && f.pm1b_cnt == 0 && f.dsdt == 0x100000000ull);
	CHECK(f.revision == 5 && f.length == 276);
}

static void fadt_reset_register_only_when_flagged_supported(void)
{
	struct tbl t;
	struct acpi_fadt_info f;

	build_fadt(&t, 3, 244);
	gas(&t, 116, ACPI_GAS_IO, 8, 0xcf9);
	t.b[128] = 0x0f;
	fix_checksum(&t, t.len);
	CHECK_RC(acpi_parse_fadt(t.b, t.len, &f), ACPI_OK);
	CHECK(!f.has_reset_reg);
	set32(&t, 112, 0xa5 | ACPI_FADT_RESET_REG_SUP);
	fix_checksum(&t, t.len);
	CHECK_RC(acpi_parse_fadt(t.b, t.len, &f), ACPI_OK);
	CHECK(f.has_reset_reg && f.reset_reg.address == 0xcf9 && f.reset_value == 0x0f);
	CHECK(f.reset_reg.space_id == ACPI_GAS_IO);
}

static void fadt_without_pm1_control_needs_hardware_reduced(void)
{
	struct tbl t;
	struct acpi_fadt_info f;

	build_fadt(&t, 5, 276);
	set32(&t, 64, 0);
	fix_checksum(&t, t.len);
	CHECK_RC(acpi_parse_fadt(t.b, t.len, &f), ACPI_E_ADDRESS);
	set32(&t, 112, ACPI_FADT_HW_REDUCED);
	fix_checksum(&t, t.len);
	CHECK_RC(acpi_parse_fadt(t.b, t.len, &f), ACPI_OK);
}

static void fadt_shorter_than_acpi1_rejected_without_overread(void)
{
	struct tbl t;
	struct acpi_fadt_info f;

	build_fadt(&t, 1, 116);
	for (size_t len = 36; len < 116; len++) {
		struct tbl cut = t;
		void *p;

		set32(&cut, 4, (uint32_t)len);
		fix_checksum(&cut, len);
		p = exact(cut.b, len);
		CHECK_RC(acpi_parse_fadt(p, len, &f), ACPI_E_LENGTH);
		free(p);
	}
}

/* --- \_S5 ------------------------------------------------------------------------------------ */

static void build_dsdt(struct tbl *t, const uint8_t *aml, size_t n)
{
	sdt_begin(t, "DSDT", 1);
	put8(t, 0x10);			/* some unrelated AML first */
	put8(t, 0x05);
	putn(t, "_SB_", 4);
	memcpy(t->b + t->len, aml, n);
	t->len += n;
	sdt_end(t);
}

static void dsdt_s5_package_gives_the_sleep_types(void)
{
	/* Name (_S5, Package (0x04) { 0x05, 0x05, Zero, Zero }) */
	static const uint8_t aml[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04,
				       0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00 };
	struct tbl t;
	uint8_t a = 9, b = 9;

	build_dsdt(&t, aml, sizeof(aml));
	CHECK_RC(acpi_dsdt_find_s5(t.b, t.len, &a, &b), ACPI_OK);
	CHECK(a == 5 && b == 5);
}

static void dsdt_s5_rooted_name_and_zero_one_ops(void)
{
	/* Name (\_S5, Package (0x02) { Zero, One }) with a two-byte PkgLength */
	static const uint8_t aml[] = { 0x08, '\\', '_', 'S', '5', '_', 0x12, 0x45, 0x00,
				       0x02, 0x00, 0x01 };
	struct tbl t;
	uint8_t a = 9, b = 9;

	build_dsdt(&t, aml, sizeof(aml));
	CHECK_RC(acpi_dsdt_find_s5(t.b, t.len, &a, &b), ACPI_OK);
	CHECK(a == 0 && b == 1);
}

static void dsdt_s5_use_that_is_not_a_definition_is_ignored(void)
{
	/* "_S5_" inside other AML (a method calling it), then no definition. */
	static const uint8_t aml[] = { 0x14, 0x08, 'X', 'X', 'X', 'X', 0x00, '_', 'S', '5', '_' };
	struct tbl t;

	build_dsdt(&t, aml, sizeof(aml));
	CHECK_RC(acpi_dsdt_find_s5(t.b, t.len, NULL, NULL), ACPI_E_NOT_FOUND);
}

static void dsdt_s5_malformed_package_rejected_without_overread(void)
{
	static const uint8_t not_pkg[] = { 0x08, '_', 'S', '5', '_', 0x0a, 0x05 };
	static const uint8_t pkg_too_long[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x3f, 0x04, 0x0a };
	static const uint8_t method_elem[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x05, 0x02, 0x70, 0x01, 0x00 };
	static const uint8_t at_end[] = { 0x08, '_', 'S', '5', '_' };
	static const uint8_t cut_byte[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x05, 0x02, 0x0a, 0x05, 0x0a };
	const struct { const uint8_t *aml; size_t n; } cases[] = {
		{ not_pkg, sizeof(not_pkg) }, { pkg_too_long, sizeof(pkg_too_long) },
		{ method_elem, sizeof(method_elem) }, { at_end, sizeof(at_end) },
		{ cut_byte, sizeof(cut_byte) },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tbl t;
		void *p;

		build_dsdt(&t, cases[i].aml, cases[i].n);
		p = exact(t.b, t.len);
		CHECK_RC(acpi_dsdt_find_s5(p, t.len, NULL, NULL), ACPI_E_AML);
		free(p);
	}
}

/* --- the rest ------------------------------------------------------------------------------------ */

static void every_error_code_has_a_message(void)
{
	for (int e = 0; e < ACPI_E_COUNT; e++)
		CHECK(acpi_strerror(e) && strlen(acpi_strerror(e)) > 4);
	CHECK(strcmp(acpi_strerror(-1), "unknown ACPI error") == 0);
	CHECK(strcmp(acpi_strerror(ACPI_E_COUNT), "unknown ACPI error") == 0);
}

/* The tables of the machine running the test, when Linux lets us read them. */
static bool read_host_table(const char *name, struct tbl *t)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/firmware/acpi/tables/%s", name);
	f = fopen(path, "rb");
	if (!f)
		return false;
	t->len = fread(t->b, 1, sizeof(t->b), f);
	fclose(f);
	return t->len > 0 && t->len < sizeof(t->b);
}

static void host_machine_tables_parse(void)
{
	static struct tbl t;
	struct acpi_fadt_info f;
	int found = 0;

	if (read_host_table("APIC", &t)) {
		found++;
		CHECK_RC(parse_madt_exact(&t, t.len, &madt), ACPI_OK);
		CHECK(madt.lapic_count + madt.x2apic_count >= 1);
		printf("# host MADT: %u local APICs, %u x2APICs, %u IO-APICs, %u overrides\n",
		       madt.lapic_count, madt.x2apic_count, madt.ioapic_count, madt.iso_count);
	}
	if (read_host_table("FACP", &t)) {
		found++;
		CHECK_RC(acpi_parse_fadt(t.b, t.len, &f), ACPI_OK);
	}
	if (read_host_table("HPET", &t)) {
		struct acpi_hpet_info h;

		found++;
		CHECK_RC(acpi_parse_hpet(t.b, t.len, &h), ACPI_OK);
	}
	if (!found)
		printf("# no readable /sys/firmware/acpi/tables here; nothing to compare\n");
}

static const struct tap_test acpi_tests[] = {
	TAP_TEST(rsdp_v1_is_parsed),
	TAP_TEST(rsdp_v2_gives_the_xsdt),
	TAP_TEST(rsdp_bad_signature_or_checksum_is_rejected),
	TAP_TEST(rsdp_v2_length_beyond_the_buffer_is_rejected),
	TAP_TEST(rsdp_every_short_buffer_is_rejected_without_overread),
	TAP_TEST(rsdp_scan_finds_a_valid_one_on_a_16_byte_boundary_only),
	TAP_TEST(sdt_header_length_and_checksum_are_checked),
	TAP_TEST(rsdt_entries_are_listed_and_counted_beyond_max),
	TAP_TEST(xsdt_unaligned_64bit_entries_are_read),
	TAP_TEST(rsdt_with_a_partial_entry_is_rejected),
	TAP_TEST(madt_qemu_table_gives_cpus_ioapic_overrides_and_nmi),
	TAP_TEST(madt_truncated_entry_rejected),
	TAP_TEST(madt_zero_or_one_byte_entry_length_rejected),
	TAP_TEST(madt_entry_too_short_for_its_type_rejected),
	TAP_TEST(madt_one_trailing_byte_rejected),
	TAP_TEST(madt_x2apic_entries_are_counted_and_skipped),
	TAP_TEST(madt_unknown_entry_types_are_skipped_by_their_length),
	TAP_TEST(madt_entries_beyond_the_maximums_are_counted_as_dropped),
	TAP_TEST(madt_duplicate_apic_id_is_ignored_unless_it_enables_the_cpu),
	TAP_TEST(madt_lapic_address_override_replaces_the_32bit_address),
	TAP_TEST(madt_without_lapic_address_or_body_is_rejected),
	TAP_TEST(madt_every_truncation_of_a_valid_table_fails_cleanly),
	TAP_TEST(madt_random_corruption_never_reads_out_of_bounds),
	TAP_TEST(hpet_qemu_table_gives_address_and_capabilities),
	TAP_TEST(hpet_zero_or_io_space_address_rejected),
	TAP_TEST(hpet_short_table_rejected_without_overread),
	TAP_TEST(fadt_acpi1_table_gives_pm1_control_and_dsdt),
	TAP_TEST(fadt_newer_table_prefers_x_fields_in_io_space),
	TAP_TEST(fadt_reset_register_only_when_flagged_supported),
	TAP_TEST(fadt_without_pm1_control_needs_hardware_reduced),
	TAP_TEST(fadt_shorter_than_acpi1_rejected_without_overread),
	TAP_TEST(dsdt_s5_package_gives_the_sleep_types),
	TAP_TEST(dsdt_s5_rooted_name_and_zero_one_ops),
	TAP_TEST(dsdt_s5_use_that_is_not_a_definition_is_ignored),
	TAP_TEST(dsdt_s5_malformed_package_rejected_without_overread),
	TAP_TEST(every_error_code_has_a_message),
	TAP_TEST(host_machine_tables_parse),
	TAP_END,
};

int main(int argc, char **argv)
{
	static const struct tap_test *const suites[] = { acpi_tests, NULL };

	return tap_main(argc, argv, suites, NULL);
}
