/*
 * fuzz_acpi.c: libFuzzer harness for the ACPI table parsers
 * (kernel/acpi_parse.c), fed corrupted tables.  The first input byte picks
 * the parser (low 4 bits) and whether to repair the table first (bit 4):
 * the repair sets the header's length to the input size and fixes the
 * checksum, so that mutations get past the header into the entries.  The
 * table itself is handed over in a heap buffer of exactly its size.
 * Checks, beyond memory safety: counts never exceed the arrays, the error
 * offset stays inside the table, the error code has a description, and a
 * table accepted whole passes acpi_check_sdt() too.
 */
#include <kernel/acpi.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fz_fail(void)
{
	abort();
}

static void fz_repair(uint8_t *t, size_t len, size_t csum_off, size_t sum_len)
{
	uint8_t sum = 0;

	if (len < csum_off + 1 || sum_len > len)
		return;
	t[csum_off] = 0;
	for (size_t i = 0; i < sum_len; i++)
		sum = (uint8_t)(sum + t[i]);
	t[csum_off] = (uint8_t)(0x100 - sum);
}

static void fz_repair_sdt(uint8_t *t, size_t len)
{
	if (len < ACPI_SDT_HEADER_LEN)
		return;
	t[4] = (uint8_t)len;
	t[5] = (uint8_t)(len >> 8);
	t[6] = (uint8_t)(len >> 16);
	t[7] = (uint8_t)(len >> 24);
	fz_repair(t, len, 9, len);
}

static void fz_rc(int rc)
{
	if (rc < 0 || rc >= ACPI_E_COUNT || !acpi_strerror(rc))
		fz_fail();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned what, repair;
	uint8_t *t;
	size_t len;
	int rc;

	if (size < 1)
		return 0;
	what = data[0] & 0xf;
	repair = data[0] & 0x10;
	len = size - 1;
	t = malloc(len ? len : 1);
	if (!t)
		return 0;
	memcpy(t, data + 1, len);

	switch (what % 9) {
	case 0: {	/* RSDP */
		struct acpi_rsdp_info r;

		if (repair && len >= ACPI_RSDP_V1_LEN) {
			fz_repair(t, len, 8, ACPI_RSDP_V1_LEN);
			if (len >= ACPI_RSDP_V2_LEN) {
				t[20] = ACPI_RSDP_V2_LEN;
				t[21] = t[22] = t[23] = 0;
				fz_repair(t, len, 32, ACPI_RSDP_V2_LEN);
			}
		}
		fz_rc(rc = acpi_parse_rsdp(t, len, &r));
		if (rc == ACPI_OK && r.length > len)
			fz_fail();
		break;
	}
	case 1: {	/* RSDP scan */
		size_t off = (size_t)-1;

		fz_rc(rc = acpi_find_rsdp(t, len, &off));
		if (rc == ACPI_OK && (off % 16 || off + ACPI_RSDP_V1_LEN > len))
			fz_fail();
		break;
	}
	case 2: {	/* header length */
		uint32_t l;

		fz_rc(rc = acpi_sdt_length(t, len, &l));
		if (rc == ACPI_OK && l < ACPI_SDT_HEADER_LEN)
			fz_fail();
		break;
	}
	case 3:
	case 4: {	/* RSDT / XSDT */
		uint64_t addrs[8];
		size_t count = 0;

		if (repair)
			fz_repair_sdt(t, len);
		fz_rc(rc = acpi_parse_rsdt(t, len, what % 9 == 4, addrs, 8, &count));
		if (rc == ACPI_OK && acpi_check_sdt(t, len, NULL, NULL) != ACPI_OK)
			fz_fail();
		if (rc == ACPI_OK && count > len / 4)
			fz_fail();
		break;
	}
	case 5: {	/* MADT */
		static struct acpi_madt_info m;

		if (repair)
			fz_repair_sdt(t, len);
		fz_rc(rc = acpi_parse_madt(t, len, &m));
		if (m.lapic_count > ACPI_MADT_MAX_LAPIC || m.ioapic_count > ACPI_MADT_MAX_IOAPIC ||
		    m.iso_count > ACPI_MADT_MAX_ISO || m.lapic_nmi_count > ACPI_MADT_MAX_LAPIC_NMI ||
		    m.nmi_src_count > ACPI_MADT_MAX_NMI_SRC)
			fz_fail();
		if (rc != ACPI_OK && m.err_offset > len)
			fz_fail();
		if (rc == ACPI_OK && acpi_check_sdt(t, len, ACPI_SIG_MADT, NULL) != ACPI_OK)
			fz_fail();
		break;
	}
	case 6: {	/* HPET */
		struct acpi_hpet_info h;

		if (repair)
			fz_repair_sdt(t, len);
		fz_rc(rc = acpi_parse_hpet(t, len, &h));
		if (rc == ACPI_OK && (h.address == 0 || h.comparators < 1 || h.comparators > 32))
			fz_fail();
		break;
	}
	case 7: {	/* FADT */
		struct acpi_fadt_info f;

		if (repair)
			fz_repair_sdt(t, len);
		fz_rc(rc = acpi_parse_fadt(t, len, &f));
		if (rc == ACPI_OK && f.length > len)
			fz_fail();
		break;
	}
	case 8: {	/* DSDT \_S5 */
		uint8_t a = 0xff, b = 0xff;

		fz_rc(rc = acpi_dsdt_find_s5(t, len, &a, &b));
		if (rc == ACPI_OK && (a > 7 || b > 7))
			fz_fail();
		break;
	}
	}
	free(t);
	return 0;
}
