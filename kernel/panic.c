/*
 * panic.c: the end of the line.  One CPU wins the right to report, the
 * others are stopped by NMI (so nothing interleaves with the report or
 * changes the state it describes), the log is flushed by force and the
 * report goes out, and QEMU is told to exit with the panic status.  Also
 * WARN_ON_ONCE's report.
 */
#include <kernel/panic.h>
#include <kernel/backtrace.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/serial.h>
#include <arch/traps.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>

/* isa-debug-exit: QEMU exits with status (value << 1) | 1, i.e. 5 here. */
#define DEBUG_EXIT_PORT		0xf4
#define DEBUG_EXIT_PANIC	2

#define PANIC_MSG_MAX		160

/* The CPU that owns the panic, or -1. */
static _Atomic int panic_owner = -1;

/* NMI-safe: yes. */
bool panic_in_progress(void)
{
	return atomic_load_explicit(&panic_owner, memory_order_relaxed) >= 0;
}

static _Noreturn void park_forever(void)
{
	for (;;) {
		irq_disable();
		cpu_halt();
	}
}

static _Noreturn void panic_exit(void)
{
	outl(DEBUG_EXIT_PORT, DEBUG_EXIT_PANIC);
	/* Without the isa-debug-exit device (real hardware) the write does nothing. */
	park_forever();
}

static unsigned int other_cpus_online(unsigned int me)
{
	unsigned int n = 0;

	for (unsigned int cpu = 0; cpu < cpus_possible && cpu < MAX_CPUS; cpu++)
		if (cpu != me && percpu_area[cpu].online)
			n++;
	return n;
}

/*
 * NMI-safe: yes.  The winner is decided by one compare-exchange; a CPU that
 * loses parks with interrupts off, where the shootdown NMI finds it.
 */
void panic_begin(void)
{
	int expected = -1;
	int me;

	irq_disable();
	me = (int)cpu_id_safe();
	if (!atomic_compare_exchange_strong_explicit(&panic_owner, &expected, me,
						     memory_order_acq_rel, memory_order_acquire)) {
		if (expected == me) {
			/* The report itself crashed: say so with nothing that could crash again. */
			serial_puts("\n*** nested panic while reporting a panic; stopping ***\n");
			panic_exit();
		}
		park_forever();
	}
	/*
	 * Only when there is someone to stop: before the APIC is set up (an
	 * early panic) sending an IPI could fault.
	 */
	unsigned int others = other_cpus_online((unsigned int)me);
	if (others) {
		int err = nmi_shootdown_cpus(NULL);
		if (err)
			pr_emerg("panic: stopping the other CPUs failed (error %d); "
				 "their output may interleave", err);
		else
			pr_emerg("panic: CPU %d stopped the %u other online CPUs by NMI", me, others);
	}
	/*
	 * The console owner may be a CPU we just stopped, or the code this CPU
	 * interrupted: take the console by force, print what is pending, and
	 * from now on print every record at once.
	 */
	nk_log_panic_flush();
}

static _Noreturn void panic_finish(const char *msg)
{
	pr_emerg("---[ end Kernel panic - not syncing: %s ]---", msg);
	nk_log_panic_flush();
	panic_exit();
}

void panic_end(const char *fmt, ...)
{
	char msg[PANIC_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	nk_vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pr_emerg("Kernel panic - not syncing: %s", msg);
	panic_finish(msg);
}

/* NMI-safe: yes (panic_begin, nk_vsnprintf, nk_log, the backtrace). */
void panic(const char *fmt, ...)
{
	char msg[PANIC_MSG_MAX];
	va_list ap;

	panic_begin();
	va_start(ap, fmt);
	nk_vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pr_emerg("Kernel panic - not syncing: %s", msg);
	pr_emerg("CPU: %u", cpu_id_safe());
	pr_emerg("Call Trace:");
	backtrace_print_here(NK_LOG_EMERG);
	panic_finish(msg);
}

void warn_report(const char *file, int line, const char *cond)
{
	pr_warn("WARNING: CPU: %u at %s:%d: %s", cpu_id_safe(), file, line, cond);
	pr_warn("Call Trace:");
	backtrace_print_here(NK_LOG_WARNING);
	pr_warn("---[ end of warning ]---");
}
