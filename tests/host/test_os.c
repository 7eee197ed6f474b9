/*
 * The host unit tests' <nmikit/os.h>: simulated CPUs, a fake clock, recorded
 * NMIs, a sticky reason port, a log that tests can search, and a panic that
 * returns to the test.  See test_os.h for the controls.
 */
#include "test_os.h"
#include "capture.h"
#include "tap.h"

#include <nmikit/format.h>
#include <nmikit/log.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Thread_local unsigned tos_cpu;
_Thread_local jmp_buf *tos_panic_jb;
char tos_panic_msg[256];
void (*tos_relax_hook)(void);

static unsigned tos_ncpus;
static bool tos_online[NMIKIT_MAX_CPUS];
static _Atomic uint64_t tos_clock;
static _Atomic unsigned long tos_relaxes;

static struct tos_nmi tos_nmis[TOS_MAX_SENT];
static unsigned tos_nnmis;
/* Where a parked CPU's relax loop jumps back to (see tos_deliver()). */
static _Thread_local jmp_buf *tos_park_jb;

static unsigned tos_reason_bits, tos_nreads, tos_nacks, tos_acked;
static unsigned tos_raised[NMIKIT_MAX_CPUS];
static int tos_irq_depth[NMIKIT_MAX_CPUS];

static _Atomic unsigned tos_log_nlines;

void tos_reset(unsigned ncpus)
{
	tos_cpu = 0;
	tos_ncpus = ncpus;
	for (unsigned i = 0; i < NMIKIT_MAX_CPUS; i++) {
		tos_online[i] = i < ncpus;
		tos_raised[i] = 0;
		tos_irq_depth[i] = 0;
	}
	atomic_store(&tos_clock, 0);
	atomic_store(&tos_relaxes, 0);
	tos_nnmis = 0;
	tos_reason_bits = tos_nreads = tos_nacks = tos_acked = 0;
	tos_relax_hook = NULL;
	tos_log_clear();
}

void tos_set_online(unsigned cpu, bool online)
{
	tos_online[cpu] = online;
}

void tos_set_time(uint64_t ns)
{
	atomic_store(&tos_clock, ns);
}

void tos_advance(uint64_t ns)
{
	atomic_fetch_add(&tos_clock, ns);
}

uint64_t tos_time(void)
{
	return atomic_load(&tos_clock);
}

/* --- os.h ---------------------------------------------------------------- */

unsigned os_cpu_id(void)
{
	return tos_cpu;
}

unsigned os_cpu_count(void)
{
	return tos_ncpus;
}

bool os_cpu_online(unsigned cpu)
{
	return cpu < tos_ncpus && tos_online[cpu];
}

uint64_t os_timestamp_ns(void)
{
	return atomic_load(&tos_clock);
}

void os_cpu_relax(void)
{
	atomic_fetch_add(&tos_relaxes, 1);
	/* A CPU parked by a shootdown never leaves; the test takes it back. */
	if (tos_park_jb && nmi_cpu_parked(tos_cpu))
		longjmp(*tos_park_jb, 1);
	if (tos_relax_hook)
		tos_relax_hook();
}

os_irqflags_t os_local_irq_save(void)
{
	return (os_irqflags_t)tos_irq_depth[tos_cpu]++;
}

void os_local_irq_restore(os_irqflags_t flags)
{
	tos_irq_depth[tos_cpu] = (int)flags;
}

static void tos_record(unsigned to, bool self)
{
	if (tos_nnmis == TOS_MAX_SENT) {
		fprintf(stderr, "test_os: too many NMIs sent\n");
		abort();
	}
	tos_nmis[tos_nnmis++] = (struct tos_nmi){
		.from = tos_cpu, .to = to, .self = self, .delivered = false,
	};
}

void os_send_nmi(unsigned cpu)
{
	tos_record(cpu, false);
}

void os_send_nmi_self(void)
{
	tos_record(tos_cpu, true);
}

void os_send_nmi_allbutself(void)
{
	for (unsigned cpu = 0; cpu < tos_ncpus; cpu++)
		if (cpu != tos_cpu && tos_online[cpu])
			tos_record(cpu, false);
}

void os_irq_work_raise(void)
{
	tos_raised[tos_cpu]++;
}

unsigned os_nmi_reason_read(void)
{
	tos_nreads++;
	return tos_reason_bits;
}

void os_nmi_reason_ack(unsigned bits)
{
	tos_nacks++;
	tos_acked |= bits;
	tos_reason_bits &= ~bits;
}

void os_console_write(const char *buf, size_t len)
{
	cap_write(buf, len);
}

_Noreturn void os_panic(const char *msg)
{
	snprintf(tos_panic_msg, sizeof(tos_panic_msg), "%s", msg);
	if (tos_panic_jb)
		longjmp(*tos_panic_jb, 1);
	fprintf(stderr, "test_os: unexpected panic: %s\n", msg);
	abort();
}

/* The log core's entry point, captured for the tests. */
void nk_log(int level, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "<%d>", level);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	os_console_write(line, strlen(line));
	tos_log_nlines++;
}

/* The format core's line writer (core/format.c), over the C library here. */
int nk_wprintf(nk_write_fn *write, void *arg, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return 0;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	write(arg, line, (size_t)n);
	return n;
}

/* --- controls ------------------------------------------------------------ */

struct nmi_cpu_stats tos_nmi_stats(unsigned cpu)
{
	struct nmi_cpu_stats s;

	CHECK_EQ(nmi_get_cpu_stats(cpu, &s), NMI_OK);
	return s;
}

unsigned tos_sent_count(void)
{
	return tos_nnmis;
}

const struct tos_nmi *tos_sent(unsigned i)
{
	return i < tos_nnmis ? &tos_nmis[i] : NULL;
}

unsigned tos_pending_to(unsigned cpu)
{
	unsigned n = 0;

	for (unsigned i = 0; i < tos_nnmis; i++)
		if (tos_nmis[i].to == cpu && !tos_nmis[i].delivered)
			n++;
	return n;
}

void tos_drop_pending(unsigned cpu)
{
	for (unsigned i = 0; i < tos_nnmis; i++)
		if (tos_nmis[i].to == cpu)
			tos_nmis[i].delivered = true;
}

void tos_nmi_frame(unsigned cpu, struct nmi_frame *f)
{
	unsigned saved_cpu = tos_cpu;
	jmp_buf *saved_park = tos_park_jb;
	jmp_buf jb;

	tos_cpu = cpu;
	if (setjmp(jb) == 0) {
		tos_park_jb = &jb;
		nmi_entry(f);
	}
	tos_park_jb = saved_park;
	tos_cpu = saved_cpu;
}

void tos_nmi(unsigned cpu, uint64_t ip)
{
	struct nmi_frame f = { .ip = ip, .sp = 0x7000, .from_user = false, .regs = NULL };

	tos_nmi_frame(cpu, &f);
}

bool tos_deliver(unsigned cpu, uint64_t ip)
{
	for (unsigned i = 0; i < tos_nnmis; i++) {
		if (tos_nmis[i].to == cpu && !tos_nmis[i].delivered) {
			tos_nmis[i].delivered = true;
			tos_nmi(cpu, ip);
			return true;
		}
	}
	return false;
}

void tos_reason_assert(unsigned bits)
{
	tos_reason_bits |= bits;
}

unsigned tos_reason_asserted(void)
{
	return tos_reason_bits;
}

unsigned tos_reason_reads(void)
{
	return tos_nreads;
}

unsigned tos_reason_acks(void)
{
	return tos_nacks;
}

unsigned tos_reason_acked_bits(void)
{
	return tos_acked;
}

unsigned tos_irq_work_raised(unsigned cpu)
{
	return tos_raised[cpu];
}

bool tos_irqs_off(unsigned cpu)
{
	return tos_irq_depth[cpu] > 0;
}

unsigned long tos_relax_calls(void)
{
	return atomic_load(&tos_relaxes);
}

unsigned tos_log_lines(void)
{
	return tos_log_nlines;
}

bool tos_log_has(const char *needle)
{
	return cap_has(needle);
}

unsigned tos_log_count(const char *needle)
{
	return cap_count(needle);
}

const char *tos_log_text(void)
{
	return cap_text();
}

void tos_log_clear(void)
{
	cap_reset();
	tos_log_nlines = 0;
}
