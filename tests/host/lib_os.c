/*
 * The host-lib tests' <nmikit/os.h> (see lib_os.h): per-thread CPU numbers,
 * a settable clock that otherwise follows CLOCK_MONOTONIC (the log's bounded
 * waits need time to pass), PAUSE, no interrupts to mask, and the console
 * capture.
 */
#include "lib_os.h"

#include <nmikit/os.h>

#include <stdatomic.h>
#include <time.h>

_Thread_local unsigned los_cpu;
static _Atomic uint64_t los_fake_ns;

void los_set_time(uint64_t ns)
{
	atomic_store(&los_fake_ns, ns);
}

unsigned os_cpu_id(void)
{
	return los_cpu;
}

uint64_t os_timestamp_ns(void)
{
	struct timespec ts;
	uint64_t fake = atomic_load(&los_fake_ns);

	if (fake)
		return fake;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void os_cpu_relax(void)
{
	__builtin_ia32_pause();
}

/* The host-lib tests run no interrupt handlers: nothing to mask. */
os_irqflags_t os_local_irq_save(void)
{
	return 0;
}

void os_local_irq_restore(os_irqflags_t flags)
{
	(void)flags;
}

void os_console_write(const char *buf, size_t len)
{
	cap_write(buf, len);
}
