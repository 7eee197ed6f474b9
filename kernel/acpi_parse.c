/*
 * acpi_parse.c: pure parsers for the ACPI tables in <kernel/acpi.h>.  Every
 * read goes through rd8/rd16/rd32/rd64 at an offset that was first checked
 * against both the buffer length and the table's own length field, so a
 * table that lies about its size cannot make us read outside the buffer.
 * No state, no allocation: the host tests and fuzzers link this file as is.
 */
#include <kernel/acpi.h>

#include <nmikit/format.h>

static const char *const acpi_error_text[ACPI_E_COUNT] = {
	[ACPI_OK]		 = "no error",
	[ACPI_E_SHORT]		 = "buffer shorter than the structure's fixed part",
	[ACPI_E_SIGNATURE]	 = "wrong signature",
	[ACPI_E_LENGTH]		 = "length field too small or larger than the mapped table",
	[ACPI_E_CHECKSUM]	 = "checksum mismatch",
	[ACPI_E_XCHECKSUM]	 = "RSDP extended checksum mismatch",
	[ACPI_E_ENTRIES]	 = "RSDT/XSDT length is not a whole number of entries",
	[ACPI_E_ENTRY_LENGTH]	 = "MADT entry length too small for its type",
	[ACPI_E_ENTRY_TRUNCATED] = "MADT entry runs past the end of the table",
	[ACPI_E_ADDRESS]	 = "required address is zero or in an unsupported address space",
	[ACPI_E_NOT_FOUND]	 = "not found",
	[ACPI_E_AML]		 = "\\_S5 object is not a package of integer constants",
};

const char *acpi_strerror(int err)
{
	if (err < 0 || err >= ACPI_E_COUNT)
		return "unknown ACPI error";
	return acpi_error_text[err];
}

/* Little-endian reads; callers have checked off + size <= length. */
static uint8_t rd8(const uint8_t *b, size_t off)
{
	return b[off];
}

static uint16_t rd16(const uint8_t *b, size_t off)
{
	return (uint16_t)(b[off] | (b[off + 1] << 8));
}

static uint32_t rd32(const uint8_t *b, size_t off)
{
	return (uint32_t)b[off] | ((uint32_t)b[off + 1] << 8) |
	       ((uint32_t)b[off + 2] << 16) | ((uint32_t)b[off + 3] << 24);
}

static uint64_t rd64(const uint8_t *b, size_t off)
{
	return (uint64_t)rd32(b, off) | ((uint64_t)rd32(b, off + 4) << 32);
}

static uint8_t sum_bytes(const uint8_t *b, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *b++);
	return s;
}

static void copy_id(char *dst, const uint8_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)src[i];
	dst[n] = '\0';
}

static void rd_gas(const uint8_t *b, size_t off, struct acpi_gas *g)
{
	g->space_id = rd8(b, off);
	g->bit_width = rd8(b, off + 1);
	g->bit_offset = rd8(b, off + 2);
	g->access_size = rd8(b, off + 3);
	g->address = rd64(b, off + 4);
}

/* --- RSDP ------------------------------------------------------------------- */

int acpi_parse_rsdp(const void *buf, size_t len, struct acpi_rsdp_info *out)
{
	const uint8_t *b = buf;
	struct acpi_rsdp_info info = { 0 };

	if (len < ACPI_RSDP_V1_LEN)
		return ACPI_E_SHORT;
	if (memcmp(b, "RSD PTR ", 8) != 0)
		return ACPI_E_SIGNATURE;
	if (sum_bytes(b, ACPI_RSDP_V1_LEN) != 0)
		return ACPI_E_CHECKSUM;

	info.revision = rd8(b, 15);
	copy_id(info.oem_id, b + 9, 6);
	info.rsdt_addr = rd32(b, 16);
	info.length = ACPI_RSDP_V1_LEN;

	if (info.revision >= 2) {
		if (len < ACPI_RSDP_V2_LEN)
			return ACPI_E_SHORT;
		info.length = rd32(b, 20);
		if (info.length < ACPI_RSDP_V2_LEN || info.length > len)
			return ACPI_E_LENGTH;
		if (sum_bytes(b, info.length) != 0)
			return ACPI_E_XCHECKSUM;
		info.xsdt_addr = rd64(b, 24);
	}
	if (info.rsdt_addr == 0 && info.xsdt_addr == 0)
		return ACPI_E_ADDRESS;
	if (out)
		*out = info;
	return ACPI_OK;
}

int acpi_find_rsdp(const void *area, size_t len, size_t *offset)
{
	const uint8_t *b = area;

	for (size_t off = 0; len >= ACPI_RSDP_V1_LEN && off <= len - ACPI_RSDP_V1_LEN;
	     off += 16) {
		if (b[off] != 'R' || memcmp(b + off, "RSD PTR ", 8) != 0)
			continue;
		if (acpi_parse_rsdp(b + off, len - off, NULL) == ACPI_OK) {
			if (offset)
				*offset = off;
			return ACPI_OK;
		}
	}
	return ACPI_E_NOT_FOUND;
}

/* --- common header ------------------------------------------------------------ */

int acpi_sdt_length(const void *hdr, size_t len, uint32_t *length)
{
	const uint8_t *b = hdr;
	uint32_t l;

	if (len < ACPI_SDT_HEADER_LEN)
		return ACPI_E_SHORT;
	l = rd32(b, 4);
	if (l < ACPI_SDT_HEADER_LEN)
		return ACPI_E_LENGTH;
	*length = l;
	return ACPI_OK;
}

int acpi_check_sdt(const void *buf, size_t len, const char *sig, struct acpi_sdt_info *out)
{
	const uint8_t *b = buf;
	uint32_t length;

	if (len < ACPI_SDT_HEADER_LEN)
		return ACPI_E_SHORT;
	if (sig && memcmp(b, sig, 4) != 0)
		return ACPI_E_SIGNATURE;
	length = rd32(b, 4);
	if (length < ACPI_SDT_HEADER_LEN || length > len)
		return ACPI_E_LENGTH;
	if (sum_bytes(b, length) != 0)
		return ACPI_E_CHECKSUM;
	if (out) {
		copy_id(out->signature, b, 4);
		out->length = length;
		out->revision = rd8(b, 8);
		copy_id(out->oem_id, b + 10, 6);
		copy_id(out->oem_table_id, b + 16, 8);
	}
	return ACPI_OK;
}

int acpi_parse_rsdt(const void *buf, size_t len, bool xsdt,
		    uint64_t *addrs, size_t max, size_t *count)
{
	const uint8_t *b = buf;
	struct acpi_sdt_info info;
	size_t esz = xsdt ? 8 : 4;
	size_t n;
	int rc;

	rc = acpi_check_sdt(buf, len, xsdt ? ACPI_SIG_XSDT : ACPI_SIG_RSDT, &info);
	if (rc != ACPI_OK)
		return rc;
	if ((info.length - ACPI_SDT_HEADER_LEN) % esz != 0)
		return ACPI_E_ENTRIES;
	n = (info.length - ACPI_SDT_HEADER_LEN) / esz;
	for (size_t i = 0; i < n && i < max; i++) {
		size_t off = ACPI_SDT_HEADER_LEN + i * esz;

		addrs[i] = xsdt ? rd64(b, off) : rd32(b, off);
	}
	if (count)
		*count = n;
	return ACPI_OK;
}

/* --- MADT --------------------------------------------------------------------- */

/* Fixed part of each known entry type, type and length bytes included. */
static size_t madt_entry_min(uint8_t type)
{
	switch (type) {
	case ACPI_MADT_LAPIC:			return 8;
	case ACPI_MADT_IOAPIC:			return 12;
	case ACPI_MADT_ISO:			return 10;
	case ACPI_MADT_NMI_SOURCE:		return 8;
	case ACPI_MADT_LAPIC_NMI:		return 6;
	case ACPI_MADT_LAPIC_ADDR_OVERRIDE:	return 12;
	case ACPI_MADT_X2APIC:			return 16;
	case ACPI_MADT_X2APIC_NMI:		return 12;
	default:				return 2;
	}
}

static void madt_add_lapic(struct acpi_madt_info *m, const uint8_t *e)
{
	struct acpi_madt_lapic l = {
		.processor_uid = rd8(e, 2),
		.apic_id = rd8(e, 3),
		.flags = rd32(e, 4),
	};

	for (unsigned i = 0; i < m->lapic_count; i++) {
		if (m->lapic[i].apic_id != l.apic_id)
			continue;
		/* A usable entry replaces a disabled one with the same ID. */
		if (!(m->lapic[i].flags & ACPI_MADT_LAPIC_ENABLED) &&
		    (l.flags & ACPI_MADT_LAPIC_ENABLED))
			m->lapic[i] = l;
		m->lapic_duplicates++;
		return;
	}
	if (m->lapic_count < ACPI_MADT_MAX_LAPIC)
		m->lapic[m->lapic_count++] = l;
	else
		m->lapic_dropped++;
}

int acpi_parse_madt(const void *buf, size_t len, struct acpi_madt_info *out)
{
	const uint8_t *b = buf;
	struct acpi_sdt_info info;
	size_t off;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = acpi_check_sdt(buf, len, ACPI_SIG_MADT, &info);
	if (rc != ACPI_OK)
		return rc;
	if (info.length < ACPI_SDT_HEADER_LEN + 8) {
		out->err_offset = ACPI_SDT_HEADER_LEN;
		return ACPI_E_LENGTH;
	}
	out->lapic_addr = rd32(b, 36);
	out->flags = rd32(b, 40);

	for (off = ACPI_SDT_HEADER_LEN + 8; off < info.length; ) {
		const uint8_t *e = b + off;
		size_t room = info.length - off;
		uint8_t type, elen;

		out->err_offset = (uint32_t)off;
		if (room < 2)
			return ACPI_E_ENTRY_TRUNCATED;
		type = rd8(e, 0);
		elen = rd8(e, 1);
		if (elen < 2)
			return ACPI_E_ENTRY_LENGTH;
		if (elen > room)
			return ACPI_E_ENTRY_TRUNCATED;
		if (elen < madt_entry_min(type))
			return ACPI_E_ENTRY_LENGTH;

		switch (type) {
		case ACPI_MADT_LAPIC:
			madt_add_lapic(out, e);
			break;
		case ACPI_MADT_IOAPIC:
			if (out->ioapic_count < ACPI_MADT_MAX_IOAPIC)
				out->ioapic[out->ioapic_count++] = (struct acpi_madt_ioapic){
					.id = rd8(e, 2),
					.address = rd32(e, 4),
					.gsi_base = rd32(e, 8),
				};
			else
				out->ioapic_dropped++;
			break;
		case ACPI_MADT_ISO:
			if (out->iso_count < ACPI_MADT_MAX_ISO)
				out->iso[out->iso_count++] = (struct acpi_madt_iso){
					.bus = rd8(e, 2),
					.source = rd8(e, 3),
					.gsi = rd32(e, 4),
					.flags = rd16(e, 8),
				};
			else
				out->iso_dropped++;
			break;
		case ACPI_MADT_NMI_SOURCE:
			if (out->nmi_src_count < ACPI_MADT_MAX_NMI_SRC)
				out->nmi_src[out->nmi_src_count++] = (struct acpi_madt_nmi_src){
					.flags = rd16(e, 2),
					.gsi = rd32(e, 4),
				};
			else
				out->nmi_src_dropped++;
			break;
		case ACPI_MADT_LAPIC_NMI:
			if (out->lapic_nmi_count < ACPI_MADT_MAX_LAPIC_NMI)
				out->lapic_nmi[out->lapic_nmi_count++] = (struct acpi_madt_lapic_nmi){
					.processor_uid = rd8(e, 2),
					.flags = rd16(e, 3),
					.lint = rd8(e, 5),
				};
			else
				out->lapic_nmi_dropped++;
			break;
		case ACPI_MADT_LAPIC_ADDR_OVERRIDE:
			out->lapic_addr = rd64(e, 4);
			out->lapic_addr_overridden = true;
			break;
		case ACPI_MADT_X2APIC:
			out->x2apic_count++;
			break;
		case ACPI_MADT_X2APIC_NMI:
			out->x2apic_nmi_count++;
			break;
		default:
			out->unknown_count++;
			break;
		}
		off += elen;
	}
	out->err_offset = 0;
	if (out->lapic_addr == 0)
		return ACPI_E_ADDRESS;
	return ACPI_OK;
}

/* --- HPET ---------------------------------------------------------------------- */

#define HPET_TABLE_LEN	56

int acpi_parse_hpet(const void *buf, size_t len, struct acpi_hpet_info *out)
{
	const uint8_t *b = buf;
	struct acpi_sdt_info info;
	struct acpi_gas base;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = acpi_check_sdt(buf, len, ACPI_SIG_HPET, &info);
	if (rc != ACPI_OK)
		return rc;
	if (info.length < HPET_TABLE_LEN)
		return ACPI_E_LENGTH;

	out->block_id = rd32(b, 36);
	rd_gas(b, 40, &base);
	out->address = base.address;
	out->hpet_number = rd8(b, 52);
	out->min_tick = rd16(b, 53);
	out->page_protection = rd8(b, 55);
	out->comparators = ((out->block_id >> 8) & 0x1f) + 1;
	out->counter_64bit = (out->block_id >> 13) & 1;
	out->legacy_capable = (out->block_id >> 15) & 1;
	out->vendor_id = (uint16_t)(out->block_id >> 16);
	if (base.space_id != ACPI_GAS_MEMORY || base.address == 0)
		return ACPI_E_ADDRESS;
	return ACPI_OK;
}

/* --- FADT ---------------------------------------------------------------------- */

/* Field offsets (ACPI 6.x, table "FADT Format"). */
#define FADT_DSDT		40
#define FADT_SCI_INT		46
#define FADT_SMI_CMD		48
#define FADT_ACPI_ENABLE	52
#define FADT_ACPI_DISABLE	53
#define FADT_PM1A_EVT		56
#define FADT_PM1B_EVT		60
#define FADT_PM1A_CNT		64
#define FADT_PM1B_CNT		68
#define FADT_PM_TMR		76
#define FADT_PM1_EVT_LEN	88
#define FADT_PM1_CNT_LEN	89
#define FADT_PM_TMR_LEN		91
#define FADT_CENTURY		108
#define FADT_BOOT_ARCH		109
#define FADT_FLAGS		112
#define FADT_V1_LEN		116	/* ACPI 1.0 ends after the flags */
#define FADT_RESET_REG		116
#define FADT_RESET_VALUE	128
#define FADT_X_DSDT		140
#define FADT_X_PM1A_EVT		148
#define FADT_X_PM1B_EVT		160
#define FADT_X_PM1A_CNT		172
#define FADT_X_PM1B_CNT		184
#define GAS_LEN			12

/*
 * The I/O port of a PM block: the 64-bit X_ field when the table is long
 * enough to have it and it names a port, else the 32-bit field.
 */
static uint64_t fadt_port(const uint8_t *b, uint32_t length, size_t legacy_off, size_t x_off)
{
	if (length >= x_off + GAS_LEN) {
		struct acpi_gas g;

		rd_gas(b, x_off, &g);
		if (g.address && g.space_id == ACPI_GAS_IO)
			return g.address;
	}
	return rd32(b, legacy_off);
}

int acpi_parse_fadt(const void *buf, size_t len, struct acpi_fadt_info *out)
{
	const uint8_t *b = buf;
	struct acpi_sdt_info info;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = acpi_check_sdt(buf, len, ACPI_SIG_FADT, &info);
	if (rc != ACPI_OK)
		return rc;
	out->revision = info.revision;
	out->length = info.length;
	if (info.length < FADT_V1_LEN) {
		out->err_offset = info.length;
		return ACPI_E_LENGTH;
	}

	out->dsdt = rd32(b, FADT_DSDT);
	if (info.length >= FADT_X_DSDT + 8 && rd64(b, FADT_X_DSDT) != 0)
		out->dsdt = rd64(b, FADT_X_DSDT);
	out->sci_irq = rd16(b, FADT_SCI_INT);
	out->smi_cmd = rd32(b, FADT_SMI_CMD);
	out->acpi_enable = rd8(b, FADT_ACPI_ENABLE);
	out->acpi_disable = rd8(b, FADT_ACPI_DISABLE);
	out->pm1a_evt = fadt_port(b, info.length, FADT_PM1A_EVT, FADT_X_PM1A_EVT);
	out->pm1b_evt = fadt_port(b, info.length, FADT_PM1B_EVT, FADT_X_PM1B_EVT);
	out->pm1a_cnt = fadt_port(b, info.length, FADT_PM1A_CNT, FADT_X_PM1A_CNT);
	out->pm1b_cnt = fadt_port(b, info.length, FADT_PM1B_CNT, FADT_X_PM1B_CNT);
	out->pm_tmr = rd32(b, FADT_PM_TMR);
	out->pm1_evt_len = rd8(b, FADT_PM1_EVT_LEN);
	out->pm1_cnt_len = rd8(b, FADT_PM1_CNT_LEN);
	out->pm_tmr_len = rd8(b, FADT_PM_TMR_LEN);
	out->century = rd8(b, FADT_CENTURY);
	out->boot_arch = rd16(b, FADT_BOOT_ARCH);
	out->flags = rd32(b, FADT_FLAGS);
	if (info.length >= FADT_RESET_VALUE + 1) {
		rd_gas(b, FADT_RESET_REG, &out->reset_reg);
		out->reset_value = rd8(b, FADT_RESET_VALUE);
		out->has_reset_reg = (out->flags & ACPI_FADT_RESET_REG_SUP) &&
				     out->reset_reg.address != 0;
	}

	if (!(out->flags & ACPI_FADT_HW_REDUCED) && out->pm1a_cnt == 0) {
		out->err_offset = FADT_PM1A_CNT;
		return ACPI_E_ADDRESS;
	}
	return ACPI_OK;
}

/* --- \_S5 in the DSDT ------------------------------------------------------------ */

#define AML_ZERO_OP	0x00
#define AML_ONE_OP	0x01
#define AML_NAME_OP	0x08
#define AML_BYTE_PREFIX	0x0a
#define AML_WORD_PREFIX	0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_PACKAGE_OP	0x12
#define AML_ONES_OP	0xff
#define AML_ROOT_CHAR	'\\'

/*
 * One integer constant at b[*p] (bounded by `end`); advance *p.  Returns
 * false for anything else (a method call, a reference...).
 */
static bool aml_const(const uint8_t *b, size_t *p, size_t end, uint64_t *v)
{
	size_t n;

	if (*p >= end)
		return false;
	switch (b[*p]) {
	case AML_ZERO_OP:	*v = 0; *p += 1; return true;
	case AML_ONE_OP:	*v = 1; *p += 1; return true;
	case AML_ONES_OP:	*v = ~(uint64_t)0; *p += 1; return true;
	case AML_BYTE_PREFIX:	n = 1; break;
	case AML_WORD_PREFIX:	n = 2; break;
	case AML_DWORD_PREFIX:	n = 4; break;
	default:		return false;
	}
	if (end - *p < 1 + n)
		return false;
	*v = 0;
	for (size_t i = 0; i < n; i++)
		*v |= (uint64_t)b[*p + 1 + i] << (8 * i);
	*p += 1 + n;
	return true;
}

int acpi_dsdt_find_s5(const void *dsdt, size_t len, uint8_t *slp_typa, uint8_t *slp_typb)
{
	const uint8_t *b = dsdt;
	struct acpi_sdt_info info;
	int rc;

	rc = acpi_check_sdt(dsdt, len, NULL, &info);
	if (rc != ACPI_OK)
		return rc;

	for (size_t i = ACPI_SDT_HEADER_LEN + 1; i + 4 <= info.length; i++) {
		size_t p, pkg_start, pkg_end, pkglen, nbytes;
		uint64_t a, c;
		uint8_t lead;

		if (memcmp(b + i, "_S5_", 4) != 0)
			continue;
		/* Only a name definition counts, not a use of the name. */
		if (b[i - 1] != AML_NAME_OP &&
		    !(b[i - 1] == AML_ROOT_CHAR && i >= ACPI_SDT_HEADER_LEN + 2 &&
		      b[i - 2] == AML_NAME_OP))
			continue;

		p = i + 4;
		if (p >= info.length || b[p] != AML_PACKAGE_OP)
			return ACPI_E_AML;
		p++;
		if (p >= info.length)
			return ACPI_E_AML;
		/* PkgLength: bits 7-6 of the lead byte count the bytes that follow. */
		pkg_start = p;
		lead = b[p];
		nbytes = lead >> 6;
		if (info.length - p < 1 + nbytes)
			return ACPI_E_AML;
		if (nbytes == 0) {
			pkglen = lead & 0x3f;
		} else {
			pkglen = lead & 0x0f;
			for (size_t k = 0; k < nbytes; k++)
				pkglen |= (size_t)b[p + 1 + k] << (4 + 8 * k);
		}
		p += 1 + nbytes;
		pkg_end = pkg_start + pkglen;
		if (pkg_end > info.length || pkg_end <= p)
			return ACPI_E_AML;
		/* NumElements, then the first two elements. */
		if (b[p] < 2)
			return ACPI_E_AML;
		p++;
		if (!aml_const(b, &p, pkg_end, &a) || !aml_const(b, &p, pkg_end, &c))
			return ACPI_E_AML;
		if (slp_typa)
			*slp_typa = (uint8_t)(a & 0x7);
		if (slp_typb)
			*slp_typb = (uint8_t)(c & 0x7);
		return ACPI_OK;
	}
	return ACPI_E_NOT_FOUND;
}
