/*
 * ioapic.c: IO-APIC redirection from GSIs to local APICs, and the legacy
 * 8259 pair masked so it never interrupts anyone.  Every IO-APIC the MADT
 * lists is handled; each owns GSIs gsi_base .. gsi_base + entries - 1.
 */
#include <arch/acpi.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/ioapic.h>
#include <kernel/spinlock.h>
#include <nmikit/log.h>

struct ioapic {
	uint64_t base;
	uint32_t id;
	uint32_t gsi_base;
	uint32_t entries;
	uint32_t version;
};

static struct ioapic ioapics[PLAT_MAX_IOAPICS];
static unsigned int n_ioapics;
/* IOREGSEL then IOWIN is two accesses: one CPU at a time. */
static struct spinlock ioapic_lock = SPINLOCK_INIT("ioapic");

static uint32_t reg_read(const struct ioapic *io, uint32_t reg)
{
	mmio_write32(io->base, reg);
	return mmio_read32(io->base + 0x10);
}

static void reg_write(const struct ioapic *io, uint32_t reg, uint32_t v)
{
	mmio_write32(io->base, reg);
	mmio_write32(io->base + 0x10, v);
}

static struct ioapic *ioapic_of(uint32_t gsi, uint32_t *pin)
{
	for (unsigned int i = 0; i < n_ioapics; i++) {
		struct ioapic *io = &ioapics[i];
		if (gsi >= io->gsi_base && gsi < io->gsi_base + io->entries) {
			*pin = gsi - io->gsi_base;
			return io;
		}
	}
	return 0;
}

/*
 * The 8259s: move them off the exception vectors onto the same vectors the
 * IO-APIC gives ISA IRQs (IRQ n -> IRQ_VEC_ISA_BASE + n, in case someone
 * later routes them through LINT0 as a virtual wire), then mask every line.
 */
static void pic_disable(void)
{
	outb(0x20, 0x11);	/* ICW1: edge, cascade, ICW4 follows */
	outb(0xa0, 0x11);
	outb(0x21, IRQ_VEC_ISA_BASE);		/* ICW2: vector base */
	outb(0xa1, IRQ_VEC_ISA_BASE + 8);
	outb(0x21, 0x04);	/* ICW3: slave on IR2 */
	outb(0xa1, 0x02);
	outb(0x21, 0x01);	/* ICW4: 8086 mode */
	outb(0xa1, 0x01);
	outb(0x21, 0xff);	/* OCW1: mask all */
	outb(0xa1, 0xff);
}

bool ioapic_present(void)
{
	return n_ioapics != 0;
}

void ioapic_init(void)
{
	if (platform.pcat_compat || !platform.madt)
		pic_disable();
	for (unsigned int i = 0; i < platform.n_ioapics && n_ioapics < PLAT_MAX_IOAPICS; i++) {
		const struct plat_ioapic *p = &platform.ioapics[i];
		if (p->phys >= (4ull << 30)) {
			pr_warn("IOAPIC[%u]: at %#llx, above the 4 GiB identity map; ignored",
				i, (unsigned long long)p->phys);
			continue;
		}
		struct ioapic *io = &ioapics[n_ioapics];
		io->base = p->phys;
		io->id = p->id;
		io->gsi_base = p->gsi_base;
		uint32_t ver = reg_read(io, IOAPIC_REG_VERSION);
		if (ver == 0xffffffffu) {
			pr_warn("IOAPIC[%u]: nothing answers at %#llx; ignored",
				i, (unsigned long long)p->phys);
			continue;
		}
		io->version = ver & 0xff;
		io->entries = ((ver >> 16) & 0xff) + 1;
		for (uint32_t pin = 0; pin < io->entries; pin++) {
			reg_write(io, IOAPIC_REG_REDIR(pin), IOAPIC_MASKED);
			reg_write(io, IOAPIC_REG_REDIR(pin) + 1, 0);
		}
		n_ioapics++;
		pr_info("IOAPIC[%u]: apic_id %u, version %#x, address %#llx, GSI %u-%u",
			i, io->id, io->version, (unsigned long long)io->base,
			io->gsi_base, io->gsi_base + io->entries - 1);
	}
	if (!n_ioapics)
		pr_warn("IOAPIC: none found; no device interrupts (PIT tick off), local APIC timers only");
}

bool ioapic_route(uint32_t gsi, uint8_t vector, uint32_t dest, uint32_t delivery_mode,
		  uint32_t flags)
{
	uint32_t pin;
	struct ioapic *io = ioapic_of(gsi, &pin);
	if (!io)
		return false;

	uint32_t dm = delivery_mode & IOAPIC_DM_MASK;
	uint32_t low = dm;
	if (dm == IOAPIC_DM_FIXED || dm == IOAPIC_DM_LOWEST)
		low |= vector;
	if ((flags & MPS_POLARITY_MASK) == MPS_POLARITY_LOW)
		low |= IOAPIC_ACTIVE_LOW;
	bool edge_only = dm == IOAPIC_DM_NMI || dm == IOAPIC_DM_SMI || dm == IOAPIC_DM_INIT;
	if ((flags & MPS_TRIGGER_MASK) == MPS_TRIGGER_LEVEL && !edge_only)
		low |= IOAPIC_LEVEL;
	if (flags & IOAPIC_ROUTE_LOGICAL)
		low |= IOAPIC_DEST_LOGICAL;

	uint64_t irqf = spin_lock_irqsave(&ioapic_lock);
	/* Mask first, so no half-written entry can fire; then high, then low. */
	reg_write(io, IOAPIC_REG_REDIR(pin), IOAPIC_MASKED);
	reg_write(io, IOAPIC_REG_REDIR(pin) + 1, (dest & 0xff) << 24);
	reg_write(io, IOAPIC_REG_REDIR(pin), low | ((flags & IOAPIC_ROUTE_MASKED) ? IOAPIC_MASKED : 0));
	spin_unlock_irqrestore(&ioapic_lock, irqf);
	return true;
}

bool ioapic_route_isa(unsigned int irq, uint8_t vector, uint32_t dest, uint32_t delivery_mode)
{
	uint16_t flags;
	uint32_t gsi = acpi_isa_irq_to_gsi(irq, &flags);
	return ioapic_route(gsi, vector, dest, delivery_mode, flags);
}

bool ioapic_mask(uint32_t gsi, bool masked)
{
	uint32_t pin;
	struct ioapic *io = ioapic_of(gsi, &pin);
	if (!io)
		return false;
	uint64_t irqf = spin_lock_irqsave(&ioapic_lock);
	uint32_t low = reg_read(io, IOAPIC_REG_REDIR(pin));
	low = masked ? (low | IOAPIC_MASKED) : (low & ~IOAPIC_MASKED);
	reg_write(io, IOAPIC_REG_REDIR(pin), low);
	spin_unlock_irqrestore(&ioapic_lock, irqf);
	return true;
}

uint64_t ioapic_read_entry(uint32_t gsi)
{
	uint32_t pin;
	struct ioapic *io = ioapic_of(gsi, &pin);
	if (!io)
		return ~0ull;
	uint64_t irqf = spin_lock_irqsave(&ioapic_lock);
	uint64_t low = reg_read(io, IOAPIC_REG_REDIR(pin));
	uint64_t high = reg_read(io, IOAPIC_REG_REDIR(pin) + 1);
	spin_unlock_irqrestore(&ioapic_lock, irqf);
	return (high << 32) | low;
}

void ioapic_dump(void)
{
	static const char *const dm_names[8] = {
		"fixed", "lowest", "smi", "res3", "nmi", "init", "res6", "extint"
	};
	for (unsigned int i = 0; i < n_ioapics; i++) {
		const struct ioapic *io = &ioapics[i];
		for (uint32_t pin = 0; pin < io->entries; pin++) {
			uint64_t e = ioapic_read_entry(io->gsi_base + pin);
			if (e & IOAPIC_MASKED)
				continue;
			pr_info("IOAPIC: GSI %u -> %s %u, vector %#x, %s, %s, %s",
				io->gsi_base + pin, (e & IOAPIC_DEST_LOGICAL) ? "mask" : "APIC",
				(unsigned)(e >> 56), (unsigned)(e & 0xff),
				dm_names[(e >> 8) & 7], (e & IOAPIC_LEVEL) ? "level" : "edge",
				(e & IOAPIC_ACTIVE_LOW) ? "low" : "high");
		}
	}
}
