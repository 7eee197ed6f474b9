/*
 * fuzz_os.c: the smallest <nmikit/os.h> the fuzz harnesses need (the log
 * core calls it): one CPU, a monotonic clock, a console that discards, and a
 * panic that aborts so the fuzzer records it as a crash.
 */
#define _GNU_SOURCE
#include <nmikit/os.h>

#include <stdlib.h>
#include <time.h>

unsigned os_cpu_id(void) { return 0; }
unsigned os_cpu_count(void) { return 1; }
bool os_cpu_online(unsigned cpu) { return cpu == 0; }
void os_cpu_relax(void) { __builtin_ia32_pause(); }

uint64_t os_timestamp_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

os_irqflags_t os_local_irq_save(void) { return 0; }
void os_local_irq_restore(os_irqflags_t flags) { (void)flags; }
void os_send_nmi(unsigned cpu) { (void)cpu; }
void os_send_nmi_self(void) { }
void os_send_nmi_allbutself(void) { }
void os_irq_work_raise(void) { }
unsigned os_nmi_reason_read(void) { return 0; }
void os_nmi_reason_ack(unsigned bits) { (void)bits; }
void os_console_write(const char *buf, size_t len) { (void)buf; (void)len; }

_Noreturn void os_panic(const char *msg)
{
	(void)msg;
	abort();
}
