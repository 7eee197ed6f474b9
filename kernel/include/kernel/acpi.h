/*
 * acpi.h: parsers for the ACPI tables nmikit uses (RSDP, RSDT/XSDT, MADT,
 * HPET, FADT, and the \_S5 sleep values in the DSDT).  They are pure: each
 * takes a byte buffer and its length and fills a plain struct; they never map
 * memory and never read outside the buffer, whatever the table says.  A
 * malformed table gives an ACPI_E_* code (acpi_strerror() says it in words)
 * and the offset where parsing stopped.  The boot code that finds and maps
 * the tables lives elsewhere; these parsers are also what the fuzzers feed.
 */
#ifndef KERNEL_ACPI_H
#define KERNEL_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum acpi_error {
	ACPI_OK = 0,
	ACPI_E_SHORT,		/* buffer shorter than the structure's fixed part */
	ACPI_E_SIGNATURE,	/* wrong signature */
	ACPI_E_LENGTH,		/* length field too small, or larger than the buffer */
	ACPI_E_CHECKSUM,	/* bytes do not sum to zero */
	ACPI_E_XCHECKSUM,	/* RSDP 2.0+ extended checksum wrong */
	ACPI_E_ENTRIES,		/* RSDT/XSDT length not a whole number of entries */
	ACPI_E_ENTRY_LENGTH,	/* MADT entry length < 2, or short for its type */
	ACPI_E_ENTRY_TRUNCATED,	/* MADT entry runs past the end of the table */
	ACPI_E_ADDRESS,		/* a required address is zero or in an unusable space */
	ACPI_E_NOT_FOUND,	/* (RSDP scan, \_S5) nothing there */
	ACPI_E_AML,		/* \_S5 object found but not a package we understand */
	ACPI_E_COUNT
};

/* The error in words, e.g. "checksum mismatch". */
const char *acpi_strerror(int err);

/* Table signatures and sizes. */
#define ACPI_SIG_MADT		"APIC"
#define ACPI_SIG_HPET		"HPET"
#define ACPI_SIG_FADT		"FACP"
#define ACPI_SIG_DSDT		"DSDT"
#define ACPI_SIG_RSDT		"RSDT"
#define ACPI_SIG_XSDT		"XSDT"
#define ACPI_SDT_HEADER_LEN	36
#define ACPI_RSDP_V1_LEN	20
#define ACPI_RSDP_V2_LEN	36

/* Generic Address Structure address spaces. */
#define ACPI_GAS_MEMORY		0
#define ACPI_GAS_IO		1

struct acpi_gas {
	uint8_t space_id;	/* ACPI_GAS_* */
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	uint64_t address;
};

/* --- RSDP ------------------------------------------------------------------ */

struct acpi_rsdp_info {
	uint8_t revision;	/* 0: ACPI 1.0 (RSDT only); 2+: has an XSDT */
	char oem_id[7];
	uint32_t rsdt_addr;
	uint64_t xsdt_addr;	/* 0 when revision < 2 */
	uint32_t length;	/* bytes the structure covers (20 for 1.0) */
};

/*
 * Validate an RSDP at the start of `buf`: signature "RSD PTR ", the 20-byte
 * checksum, and for revision 2+ the length field and extended checksum.
 */
int acpi_parse_rsdp(const void *buf, size_t len, struct acpi_rsdp_info *out);

/*
 * Scan `area` (e.g. the EBDA's first KiB or 0xE0000-0xFFFFF, mapped) on
 * 16-byte boundaries for a valid RSDP.  On success *offset is where it is.
 */
int acpi_find_rsdp(const void *area, size_t len, size_t *offset);

/* --- common table header and RSDT/XSDT --------------------------------------- */

struct acpi_sdt_info {
	char signature[5];
	uint32_t length;
	uint8_t revision;
	char oem_id[7];
	char oem_table_id[9];
};

/*
 * Read the length field of a table header (the first 36 bytes are enough), so
 * the caller knows how much to map.  ACPI_E_LENGTH if it is below 36.
 */
int acpi_sdt_length(const void *hdr, size_t len, uint32_t *length);

/*
 * Validate a whole table: header present, length within `len`, checksum
 * zero, and the signature when `sig` is not NULL.  `out` may be NULL.
 */
int acpi_check_sdt(const void *buf, size_t len, const char *sig, struct acpi_sdt_info *out);

/*
 * Entries of an RSDT (4-byte addresses) or XSDT (8-byte), after validating
 * it as acpi_check_sdt() does.  Up to `max` addresses go to `addrs`;
 * *count gets the number the table holds (which may exceed `max`).
 */
int acpi_parse_rsdt(const void *buf, size_t len, bool xsdt,
		    uint64_t *addrs, size_t max, size_t *count);

/* --- MADT ---------------------------------------------------------------------- */

#define ACPI_MADT_MAX_LAPIC	256
#define ACPI_MADT_MAX_IOAPIC	8
#define ACPI_MADT_MAX_ISO	32
#define ACPI_MADT_MAX_LAPIC_NMI	16
#define ACPI_MADT_MAX_NMI_SRC	8

/* MADT entry types. */
#define ACPI_MADT_LAPIC			0
#define ACPI_MADT_IOAPIC		1
#define ACPI_MADT_ISO			2
#define ACPI_MADT_NMI_SOURCE		3
#define ACPI_MADT_LAPIC_NMI		4
#define ACPI_MADT_LAPIC_ADDR_OVERRIDE	5
#define ACPI_MADT_X2APIC		9
#define ACPI_MADT_X2APIC_NMI		10

/* Local APIC flags. */
#define ACPI_MADT_LAPIC_ENABLED		0x1u
#define ACPI_MADT_LAPIC_ONLINE_CAPABLE	0x2u
/* MADT flags. */
#define ACPI_MADT_PCAT_COMPAT		0x1u	/* dual 8259s present */

/* MPS INTI flags (interrupt source overrides and NMI entries). */
#define ACPI_MPS_POLARITY_MASK		0x3u
#define ACPI_MPS_POLARITY_CONFORMS	0x0u
#define ACPI_MPS_POLARITY_HIGH		0x1u
#define ACPI_MPS_POLARITY_LOW		0x3u
#define ACPI_MPS_TRIGGER_MASK		0xcu
#define ACPI_MPS_TRIGGER_CONFORMS	0x0u
#define ACPI_MPS_TRIGGER_EDGE		0x4u
#define ACPI_MPS_TRIGGER_LEVEL		0xcu

/* The processor UID in a local APIC NMI entry that means "every CPU". */
#define ACPI_MADT_ALL_PROCESSORS	0xff

struct acpi_madt_lapic {
	uint8_t processor_uid;
	uint8_t apic_id;
	uint32_t flags;		/* ACPI_MADT_LAPIC_* */
};

struct acpi_madt_ioapic {
	uint8_t id;
	uint32_t address;
	uint32_t gsi_base;
};

struct acpi_madt_iso {
	uint8_t bus;
	uint8_t source;		/* ISA IRQ */
	uint32_t gsi;
	uint16_t flags;		/* ACPI_MPS_* */
};

struct acpi_madt_lapic_nmi {
	uint8_t processor_uid;	/* ACPI_MADT_ALL_PROCESSORS: every CPU */
	uint16_t flags;		/* ACPI_MPS_* */
	uint8_t lint;		/* 0 or 1 */
};

struct acpi_madt_nmi_src {
	uint16_t flags;		/* ACPI_MPS_* */
	uint32_t gsi;
};

struct acpi_madt_info {
	uint64_t lapic_addr;	/* the override's if present, else the 32-bit field */
	uint32_t flags;		/* ACPI_MADT_PCAT_COMPAT */
	bool lapic_addr_overridden;

	struct acpi_madt_lapic lapic[ACPI_MADT_MAX_LAPIC];
	unsigned lapic_count;		/* stored */
	unsigned lapic_dropped;		/* beyond ACPI_MADT_MAX_LAPIC */
	unsigned lapic_duplicates;	/* same APIC ID again: ignored */

	struct acpi_madt_ioapic ioapic[ACPI_MADT_MAX_IOAPIC];
	unsigned ioapic_count, ioapic_dropped;

	struct acpi_madt_iso iso[ACPI_MADT_MAX_ISO];
	unsigned iso_count, iso_dropped;

	struct acpi_madt_lapic_nmi lapic_nmi[ACPI_MADT_MAX_LAPIC_NMI];
	unsigned lapic_nmi_count, lapic_nmi_dropped;

	struct acpi_madt_nmi_src nmi_src[ACPI_MADT_MAX_NMI_SRC];
	unsigned nmi_src_count, nmi_src_dropped;

	/* Recognised and skipped: x2APIC CPUs and their NMI entries. */
	unsigned x2apic_count, x2apic_nmi_count;
	/* Entry types nmikit does not know (skipped by their length). */
	unsigned unknown_count;

	/* Where parsing stopped on an error: offset into the table. */
	uint32_t err_offset;
};

/*
 * Parse a MADT (signature "APIC"): validates the header, then walks every
 * entry, checking its length against its type and the table end.  Entries
 * beyond the fixed maximums are counted in *_dropped.  On an error the
 * entries before the bad one are in `out` and err_offset says where.
 */
int acpi_parse_madt(const void *buf, size_t len, struct acpi_madt_info *out);

/* --- HPET ------------------------------------------------------------------------ */

struct acpi_hpet_info {
	uint32_t block_id;	/* event timer block ID, as in the table */
	uint64_t address;	/* base of the register block (system memory) */
	uint8_t hpet_number;
	uint16_t min_tick;	/* minimum clock ticks in periodic mode */
	uint8_t page_protection;
	unsigned comparators;	/* bits 12:8 of block_id, plus one */
	bool counter_64bit;	/* bit 13 */
	bool legacy_capable;	/* bit 15 */
	uint16_t vendor_id;	/* bits 31:16 */
};

/*
 * Parse an HPET table.  ACPI_E_ADDRESS if the base is zero or not in system
 * memory.
 */
int acpi_parse_hpet(const void *buf, size_t len, struct acpi_hpet_info *out);

/* --- FADT -------------------------------------------------------------------------- */

#define ACPI_FADT_HW_REDUCED		(1u << 20)
#define ACPI_FADT_RESET_REG_SUP		(1u << 10)
/* IA-PC boot architecture flags. */
#define ACPI_FADT_BOOT_LEGACY_DEVICES	0x1u
#define ACPI_FADT_BOOT_8042		0x2u

struct acpi_fadt_info {
	uint8_t revision;
	uint32_t length;
	uint64_t dsdt;		/* X_DSDT when present and non-zero, else DSDT */
	uint16_t sci_irq;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable;
	/*
	 * PM1 event and control blocks, as I/O ports (the X_ fields when
	 * present in system I/O space, else the 32-bit fields).  0: absent.
	 */
	uint64_t pm1a_evt, pm1b_evt;
	uint64_t pm1a_cnt, pm1b_cnt;
	uint8_t pm1_evt_len, pm1_cnt_len;
	uint32_t pm_tmr;
	uint8_t pm_tmr_len;
	uint16_t boot_arch;	/* ACPI_FADT_BOOT_* */
	uint32_t flags;		/* ACPI_FADT_* */
	uint8_t century;	/* CMOS index of the century, 0: none */
	bool has_reset_reg;	/* RESET_REG_SUP and a reset register present */
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint32_t err_offset;
};

/* SLP_EN in PM1 control: writing it with SLP_TYPx enters the sleep state. */
#define ACPI_PM1_SLP_EN			(1u << 13)
#define ACPI_PM1_SLP_TYP_SHIFT		10

/*
 * Parse a FADT (signature "FACP"), any revision (ACPI 1.0 tables are 116
 * bytes; fields past the table's length are left 0).  ACPI_E_ADDRESS if it
 * has no PM1a control block and is not hardware-reduced.
 */
int acpi_parse_fadt(const void *buf, size_t len, struct acpi_fadt_info *out);

/*
 * Find the \_S5 package in a DSDT's AML and return its first two values
 * (SLP_TYPa and SLP_TYPb for soft-off, masked to the 3-bit SLP_TYP field).  This is a byte scan for the name
 * object, not an AML interpreter: it accepts `Name (_S5, Package () {...})`
 * (optionally rooted, `\_S5_`) whose first two elements are integer
 * constants, which is what QEMU and most firmware emit.  ACPI_E_NOT_FOUND
 * if there is none, ACPI_E_AML if it is there but not in that form.
 */
int acpi_dsdt_find_s5(const void *dsdt, size_t len, uint8_t *slp_typa, uint8_t *slp_typb);

#endif
