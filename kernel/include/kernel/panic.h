/*
 * panic.h: stopping the machine with a report.  panic() prints a message and
 * a backtrace, stops the other CPUs by NMI and makes QEMU exit with the
 * "panic" status (isa-debug-exit value 2, QEMU status 5).  BUG_ON and
 * WARN_ON_ONCE name the file, line and condition that failed.
 */
#ifndef KERNEL_PANIC_H
#define KERNEL_PANIC_H

#include <stdbool.h>
#include <nmikit/compiler.h>

/*
 * Stop the system.  Disables interrupts; the first CPU to panic wins, any
 * other CPU that panics at the same time parks for good; the winner stops
 * all other CPUs (nmi_shootdown_cpus), puts the log in panic mode (every
 * record pending or new goes straight to the console), prints "Kernel
 * panic - not syncing: <message>" and its backtrace, and exits QEMU.
 * NMI-safe: yes (no lock; an atomic compare-exchange picks the winner).
 */
_Noreturn void panic(const char *fmt, ...) NK_PRINTF(1, 2);

/*
 * The two halves of panic(), for reports that print more than a message
 * (the exception handler's register dump).  panic_begin() returns only on
 * the CPU that owns the panic, once the other CPUs are stopped; a CPU that
 * loses the race parks inside it, and a panic inside a panic on the same
 * CPU exits at once.  Between the two, print the report with pr_emerg().
 * panic_end() prints the final lines and exits.
 */
void panic_begin(void);
_Noreturn void panic_end(const char *fmt, ...) NK_PRINTF(1, 2);

/* True once some CPU has started to panic.  NMI-safe: yes. */
bool panic_in_progress(void);

/* Log "WARNING: CPU: n at file:line: cond" and a backtrace; continue. */
void warn_report(const char *file, int line, const char *cond);

/*
 * Deliberate faults (kernel/crash_tests.c): with crash=NAME on the command
 * line, trigger fault NAME (ud, pf, gp, de, stack, df, bp_unhandled, panic,
 * bug, warn); without it, do nothing.  Called once IDT is loaded.
 */
void crash_tests_run(void);

#define BUG_ON(cond)								\
	do {									\
		if (NK_UNLIKELY(cond))						\
			panic("BUG at %s:%d: %s", __FILE__, __LINE__, #cond);	\
	} while (0)

/*
 * Evaluates to the truth of cond; the first time it is true (per call site,
 * across all CPUs) prints a warning with a backtrace.
 */
#define WARN_ON_ONCE(cond) ({							\
		static bool warned_once_;					\
		bool c_ = !!(cond);						\
		if (NK_UNLIKELY(c_) &&						\
		    !__atomic_exchange_n(&warned_once_, true, __ATOMIC_RELAXED))	\
			warn_report(__FILE__, __LINE__, #cond);			\
		c_;								\
	})

#endif
