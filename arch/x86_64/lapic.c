/*
 * lapic.c: the local APIC in xAPIC mode: enabling it on every CPU, its LVTs
 * (LINT0/LINT1 as the MADT's NMI entries say), end of interrupt, the IPIs
 * the NMI core sends, and the local timer.  The register window is identity
 * mapped uncached by paging.c (everything at or above 0xc0000000 is).
 */
#include <arch/apic.h>
#include <arch/acpi.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <kernel/irq.h>
#include <nmikit/log.h>

uint64_t lapic_base;
uint64_t lapic_timer_rate;
struct lapic_stats lapic_stats;

static bool lapic_up;
static unsigned int lapic_max_lvt;	/* highest LVT index: 3 = up to LINT1/error, 4 = perf ... */

/*
 * How long a sender waits for the delivery-status bit.  On hardware the bit
 * clears within a microsecond or two; QEMU never sets it.  The bound turns a
 * stuck APIC into a counted timeout instead of a hang, which matters most
 * in NMI context.
 */
#define ICR_WAIT_LOOPS	100000

bool lapic_ready(void)
{
	return lapic_up;
}

/* APIC error interrupt: read (after the write that latches it) and count the ESR. */
static void lapic_error_irq(struct regs *r)
{
	(void)r;
	lapic_write(LAPIC_ESR, 0);
	uint32_t esr = lapic_read(LAPIC_ESR);
	lapic_stats.last_esr = esr;
	uint64_t n = __atomic_add_fetch(&lapic_stats.errors, 1, __ATOMIC_RELAXED);
	if (n <= 10)
		pr_warn("APIC: error interrupt on CPU %u, ESR %#x", this_cpu_id(), esr);
}

/* Spurious vector: the APIC withdrew an interrupt; nothing to do, and no EOI. */
static void lapic_spurious_irq(struct regs *r)
{
	(void)r;
	__atomic_fetch_add(&lapic_stats.spurious, 1, __ATOMIC_RELAXED);
}

bool lapic_init_boot(uint64_t phys)
{
	uint32_t a, b, c, d;
	cpuid(1, 0, &a, &b, &c, &d);
	if (!(d & (1u << 9))) {
		pr_err("APIC: CPUID says this CPU has no local APIC; staying on one CPU with no timer tick");
		return false;
	}
	uint64_t msr = rdmsr(MSR_APIC_BASE);
	if (msr & APIC_BASE_X2APIC) {
		/* x2APIC -> xAPIC is only allowed through the disabled state. */
		wrmsr(MSR_APIC_BASE, msr & ~(APIC_BASE_X2APIC | APIC_BASE_ENABLE));
		msr = (msr & ~APIC_BASE_X2APIC) | APIC_BASE_ENABLE;
		wrmsr(MSR_APIC_BASE, msr);
		pr_warn("APIC: firmware left x2APIC mode on; switched the boot CPU back to xAPIC");
	}
	uint64_t base = msr & APIC_BASE_ADDR_MASK;
	if (phys && phys != base) {
		pr_warn("APIC: MADT says the APIC is at %#llx, the MSR says %#llx; using the MSR",
			(unsigned long long)phys, (unsigned long long)base);
	}
	if (base >= (4ull << 30)) {
		pr_err("APIC: base %#llx is above 4 GiB, outside nmikit's identity map",
		       (unsigned long long)base);
		return false;
	}
	if (!(msr & APIC_BASE_ENABLE))
		wrmsr(MSR_APIC_BASE, msr | APIC_BASE_ENABLE);
	lapic_base = base;
	uint32_t ver = lapic_read(LAPIC_VERSION);
	lapic_max_lvt = (ver >> 16) & 0xff;
	lapic_up = true;
	irq_register(LAPIC_VEC_ERROR, lapic_error_irq, "lapic-error");
	irq_register_flags(LAPIC_VEC_SPURIOUS, lapic_spurious_irq, "lapic-spurious", IRQ_NO_EOI);
	irq_set_eoi(lapic_eoi);
	pr_info("APIC: local APIC at %#llx, version %#x, %u LVT entries, boot CPU APIC ID %u",
		(unsigned long long)base, ver & 0xff, lapic_max_lvt + 1, lapic_id());
	return true;
}

uint32_t lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

/*
 * NMI-safe: one MMIO write.  Callers must not EOI an NMI: NMIs set no
 * in-service bit, so the write would retire some other interrupt.
 */
void lapic_eoi(void)
{
	lapic_write(LAPIC_EOI, 0);
}

/*
 * The LVT value for one LINT pin of `cpu`, from the MADT's local-APIC NMI
 * entries: NMI delivery (edge; active low only if the entry says so), or
 * masked when no entry names this pin for this CPU.  LINT0 is otherwise
 * left masked: the 8259 reaches nobody, interrupts come through the IO-APIC.
 */
static uint32_t lint_from_madt(unsigned int cpu, unsigned int pin)
{
	const struct platform_info *p = &platform;
	for (unsigned int i = 0; i < p->n_lapic_nmi; i++) {
		const struct plat_lapic_nmi *n = &p->lapic_nmi[i];
		if (n->lint != pin)
			continue;
		if (n->acpi_uid != 0xff && (cpu >= p->n_cpus || n->acpi_uid != p->cpus[cpu].acpi_uid))
			continue;
		uint32_t v = LVT_DM_NMI;
		if ((n->flags & MPS_POLARITY_MASK) == MPS_POLARITY_LOW)
			v |= LVT_ACTIVE_LOW;
		/* NMI delivery is always edge triggered; a level flag is ignored. */
		return v;
	}
	return LVT_MASKED;
}

void lapic_set_lint(unsigned int pin, uint32_t lvt)
{
	lapic_write(pin ? LAPIC_LVT_LINT1 : LAPIC_LVT_LINT0, lvt);
}

void lapic_init_cpu(unsigned int cpu)
{
	uint64_t msr = rdmsr(MSR_APIC_BASE);
	if (!(msr & APIC_BASE_ENABLE))
		wrmsr(MSR_APIC_BASE, msr | APIC_BASE_ENABLE);

	/* Flat logical model; CPUs 0-7 get one bit each for logical multicast. */
	lapic_write(LAPIC_DFR, 0xffffffffu);
	lapic_write(LAPIC_LDR, cpu < 8 ? (1u << (24 + cpu)) : 0);
	lapic_write(LAPIC_TPR, 0);

	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | LAPIC_VEC_TIMER);
	if (lapic_max_lvt >= 4)
		lapic_write(LAPIC_LVT_PERF, LVT_MASKED);
	if (lapic_max_lvt >= 5)
		lapic_write(LAPIC_LVT_THERMAL, LVT_MASKED);
	if (lapic_max_lvt >= 6)
		lapic_write(LAPIC_LVT_CMCI, LVT_MASKED);
	lapic_write(LAPIC_LVT_LINT0, lint_from_madt(cpu, 0));
	lapic_write(LAPIC_LVT_LINT1, lint_from_madt(cpu, 1));
	lapic_write(LAPIC_LVT_ERROR, LAPIC_VEC_ERROR);

	/* Software enable, with the spurious vector; focus checking stays on. */
	lapic_write(LAPIC_SVR, SVR_ENABLE | LAPIC_VEC_SPURIOUS);

	/* The ESR latches on a write; two writes clear what bring-up left there. */
	lapic_write(LAPIC_ESR, 0);
	lapic_write(LAPIC_ESR, 0);
	/* Retire anything the firmware left in service (each EOI retires one). */
	for (unsigned int r = 0; r < 8; r++)
		for (int i = 0; i < 32 && lapic_read(LAPIC_ISR0 + r * 0x10); i++)
			lapic_eoi();
}

/*
 * Bounded wait for the previous send to leave the APIC.
 * NMI-safe: reads only, at most ICR_WAIT_LOOPS iterations, each with PAUSE.
 */
static inline __attribute__((always_inline)) void icr_wait_idle_at(volatile uint32_t *lo)
{
	for (unsigned int i = 0; __builtin_expect(*lo & ICR_BUSY, 0); i++) {
		if (i == ICR_WAIT_LOOPS) {
			__atomic_fetch_add(&lapic_stats.icr_timeouts, 1, __ATOMIC_RELAXED);
			return;
		}
		cpu_relax();
	}
}

static __attribute__((noinline)) void icr_wait_idle(void)
{
	icr_wait_idle_at((volatile uint32_t *)(lapic_base + LAPIC_ICR_LOW));
}

/*
 * Send one IPI.  NMI-safe: no lock, bounded time.
 *
 * The xAPIC ICR is two registers, and writing the low one sends.  A sender
 * writes ICR-high (destination) and then ICR-low; an NMI (or #MC) landing
 * between the two whose handler sends an IPI of its own would leave ICR-high
 * pointing at its destination, and the interrupted sender's ICR-low write
 * would then go to the wrong CPU.  Disabling interrupts keeps ordinary IRQs
 * out of that window but not NMIs.  So every send reads ICR-high first and
 * writes it back after its own send has left: whatever it interrupted finds
 * the register as it left it.  The rule holds at any nesting depth because
 * every level restores before it returns.  The cost is one MMIO read and
 * one write per send; the alternative (a per-CPU "send in progress" flag
 * that NMI senders check) costs as much and is easier to get wrong.
 * Shorthand sends ignore ICR-high and do not touch it.
 */
static void icr_send(uint32_t apic_id, uint32_t low)
{
	if (!lapic_up)
		return;
	uint64_t flags = irq_save();
	icr_wait_idle();
	if (low & ICR_SH_ALL_BUT_SELF) {
		lapic_write(LAPIC_ICR_LOW, low);
		icr_wait_idle();
	} else {
		uint32_t saved_high = lapic_read(LAPIC_ICR_HIGH);
		lapic_write(LAPIC_ICR_HIGH, apic_id << ICR_DEST_SHIFT);
		lapic_write(LAPIC_ICR_LOW, low);
		icr_wait_idle();
		lapic_write(LAPIC_ICR_HIGH, saved_high);
	}
	irq_restore(flags);
}

/* NMI-safe (icr_send). */
void lapic_send_ipi(uint32_t apic_id, uint8_t vector)
{
	icr_send(apic_id, ICR_DM_FIXED | vector);
}

/* NMI-safe (icr_send). */
void lapic_send_self_ipi(uint8_t vector)
{
	icr_send(0, ICR_SH_SELF | ICR_DM_FIXED | vector);
}

/*
 * NMI-safe: no lock, bounded time.  The NMI path's own sender (every self
 * NMI, the lost-NMI probe, backtrace requests), so it is icr_send() for a
 * physical destination written out flat: the same steps and the same
 * protection of a half-written ICR (QEMU never sets the busy bit; hardware
 * clears it within a microsecond or two).
 *
 * When ICR-high already holds the destination (a CPU sending to the same
 * CPU again, or to itself, finds its own last value restored there), it is
 * neither written nor restored: an NMI landing between our read and our
 * ICR-low write restores whatever it found, which is our destination, so
 * the send still goes where it should.  Saves two MMIO writes.  The send
 * is still waited for: a sender we interrupted (as an NMI) may have seen
 * the ICR idle and be about to write ICR-low, and must find it idle again
 * when we return (kernel/irq.c's self_ipi_send() keeps the same rule).
 * The waits are loops in line (each a load, a test and a branch not taken
 * when the ICR is idle, as it always is under QEMU), so the function makes
 * no call on any path and needs no stack frame or frame pointer.
 */
__attribute__((optimize("omit-frame-pointer"))) void lapic_send_nmi(uint32_t apic_id)
{
	volatile uint32_t *lo = (volatile uint32_t *)(lapic_base + LAPIC_ICR_LOW);
	volatile uint32_t *hi = (volatile uint32_t *)(lapic_base + LAPIC_ICR_HIGH);
	uint32_t dest = apic_id << ICR_DEST_SHIFT;
	uint32_t saved_high;

	if (__builtin_expect(!lapic_up, 0))
		return;
	/* Interrupts off: no migration between reading ICR-high and restoring it. */
	uint64_t flags = irq_save();
	icr_wait_idle_at(lo);
	saved_high = *hi;
	if (__builtin_expect(saved_high == dest, 1)) {
		*lo = ICR_DM_NMI;
		icr_wait_idle_at(lo);
	} else {
		*hi = dest;
		*lo = ICR_DM_NMI;
		icr_wait_idle_at(lo);
		*hi = saved_high;
	}
	irq_restore(flags);
}

/*
 * NMI-safe (icr_send).  A physical-destination NMI to our own ID: the
 * "self" shorthand is not architecturally valid with NMI delivery, even
 * though QEMU accepts it.
 */
void lapic_send_nmi_self(void)
{
	icr_send(lapic_id(), ICR_DM_NMI);
}

/* NMI-safe (icr_send).  Also reaches CPUs not (yet) online; their NMI handler must cope. */
void lapic_send_nmi_allbutself(void)
{
	icr_send(0, ICR_SH_ALL_BUT_SELF | ICR_DM_NMI);
}

/* NMI-safe (icr_send). */
void lapic_send_nmi_all(void)
{
	lapic_send_nmi_allbutself();
	lapic_send_nmi_self();
}

/* INIT, edge, assert: what the SDM's start-up sequence sends on current CPUs. */
void lapic_send_init(uint32_t apic_id)
{
	icr_send(apic_id, ICR_DM_INIT | ICR_ASSERT);
}

void lapic_send_startup(uint32_t apic_id, uint8_t page)
{
	icr_send(apic_id, ICR_DM_STARTUP | ICR_ASSERT | page);
}

/* --- local timer ------------------------------------------------------- */

void lapic_timer_oneshot_masked(uint32_t count)
{
	lapic_write(LAPIC_TIMER_DIVIDE, TIMER_DIV_16);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | LAPIC_VEC_TIMER);
	lapic_write(LAPIC_TIMER_INIT, count);
}

void lapic_timer_start(unsigned int hz)
{
	if (!lapic_up || !lapic_timer_rate || !hz)
		return;
	uint64_t count = lapic_timer_rate / hz;
	if (count == 0)
		count = 1;
	if (count > 0xffffffffu)
		count = 0xffffffffu;
	lapic_write(LAPIC_TIMER_DIVIDE, TIMER_DIV_16);
	lapic_write(LAPIC_LVT_TIMER, LVT_TIMER_PERIODIC | LAPIC_VEC_TIMER);
	lapic_write(LAPIC_TIMER_INIT, (uint32_t)count);
}

void lapic_timer_stop(void)
{
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | LAPIC_VEC_TIMER);
	lapic_write(LAPIC_TIMER_INIT, 0);
}
