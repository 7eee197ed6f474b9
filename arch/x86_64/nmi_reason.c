/*
 * nmi_reason.c: reading and re-arming the external NMI reasons (port 0x61),
 * or, for tests, a simulated source with the same behaviour.  Called by the
 * core only on the CPU that owns external NMIs, under its try-only reason
 * lock, in NMI context: plain port I/O and atomics, nothing that blocks.
 */
#include <stdatomic.h>
#include <arch/cpu.h>
#include <arch/nmi_reason.h>
#include <nmikit/os.h>

static atomic_bool sim_on;
static atomic_uint sim_pending;
static atomic_ulong sim_acks[2];

void nmi_reason_sim_enable(bool on) { atomic_store(&sim_on, on); }
void nmi_reason_sim_assert(unsigned bits) { atomic_fetch_or(&sim_pending, bits & OS_NMI_REASON_MASK); }
unsigned nmi_reason_sim_pending(void) { return atomic_load(&sim_pending); }

unsigned long nmi_reason_sim_acks(unsigned bits)
{
	return bits == OS_NMI_REASON_SERR ? atomic_load(&sim_acks[0]) : atomic_load(&sim_acks[1]);
}

unsigned os_nmi_reason_read(void)
{
	if (atomic_load(&sim_on))
		return atomic_load(&sim_pending);
	uint8_t v = inb(NMI_REASON_PORT);
	return ((v & NMI_REASON_SERR) ? OS_NMI_REASON_SERR : 0) |
	       ((v & NMI_REASON_IOCHK) ? OS_NMI_REASON_IOCHK : 0);
}

void os_nmi_reason_ack(unsigned bits)
{
	if (atomic_load(&sim_on)) {
		/* Like the hardware: the reason drops only when the handler acks it. */
		atomic_fetch_and(&sim_pending, ~bits);
		if (bits & OS_NMI_REASON_SERR)
			atomic_fetch_add(&sim_acks[0], 1);
		if (bits & OS_NMI_REASON_IOCHK)
			atomic_fetch_add(&sim_acks[1], 1);
		return;
	}
	/* Pulse the disable bits: clears the latched reason and re-arms it. */
	uint8_t v = inb(NMI_REASON_PORT) & 0x0f;
	uint8_t dis = ((bits & OS_NMI_REASON_SERR) ? NMI_REASON_SERR_DISABLE : 0) |
		      ((bits & OS_NMI_REASON_IOCHK) ? NMI_REASON_IOCHK_DISABLE : 0);
	outb(NMI_REASON_PORT, v | dis);
	outb(NMI_REASON_PORT, v & ~dis);
}
