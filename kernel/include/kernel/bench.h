/*
 * bench.h: nmikit's benchmark registry and runner (`make bench`, boot
 * parameter bench=GLOB, shell command `bench`).  docs/performance.md has the
 * method, every metric and how to add one.
 *
 * A benchmark is a function that takes samples; the runner sorts them and
 * prints one line per metric that tools/bench turns into build/bench.json:
 *
 *	static int bench_my_thing(struct bench *b)
 *	{
 *		for (unsigned i = 0; i < b->iters; i++) {
 *			uint64_t fl = irq_save();
 *			uint64_t t0 = bench_tsc();
 *			my_thing();
 *			uint64_t t1 = bench_tsc();
 *			irq_restore(fl);
 *			bench_sample(b, t1 - t0);
 *		}
 *		return 0;
 *	}
 *	BENCH(my_thing, "tsc", "what one sample is", bench_my_thing);
 *
 * Samples are TSC ticks ("tsc": under tools/bench's --icount, one tick is one
 * guest instruction) unless the unit says otherwise ("ms", "ns", "count").
 * Benchmarks never pass or fail on their figures: a case fails only when it
 * could not measure at all (bench_fail), and skips when this machine cannot
 * run it (bench_skip).
 */
#ifndef KERNEL_BENCH_H
#define KERNEL_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include <nmikit/compiler.h>

/* Default and largest number of samples per metric (boot parameter bench_iters). */
#define BENCH_ITERS_DEFAULT	10000
#define BENCH_ITERS_MAX		20000

struct bench;
typedef int bench_fn(struct bench *b);

struct bench_case {
	const char *name;	/* metric name in bench.json: [a-z0-9_]+ */
	const char *unit;	/* "tsc", "ms", "ns", "count" */
	const char *what;	/* one line: what one sample measures */
	bench_fn *fn;
	/*
	 * The machine the case wants, read by tools/bench before it boots:
	 * CPUs (0 = the default run, 2 CPUs), extra kernel parameters and
	 * extra QEMU arguments.  Cases with the same three share one boot.
	 */
	unsigned cpus;
	const char *cmdline;
	const char *qemu;
};

/*
 * Register a case.  Optional fields after the function, as designated
 * initialisers: BENCH(x, "tsc", "...", fn, .cpus = 4, .qemu = "-global hpet.msi=on").
 */
#define BENCH(name_, unit_, what_, fn_, ...)					\
	static const struct bench_case bench_case_##name_			\
	__attribute__((used, section("bench_cases"), aligned(8))) = {		\
		.name = #name_, .unit = unit_, .what = what_, .fn = fn_,	\
		__VA_ARGS__							\
	}

/* The case being run, as its function sees it. */
struct bench {
	const struct bench_case *c;
	unsigned iters;		/* samples wanted */
	unsigned n;		/* samples taken so far */
	uint64_t *samples;	/* room for BENCH_ITERS_MAX */
	bool verdict_set;	/* bench_skip / bench_fail was called */
};

/* Case function results (a case may also just return bench_skip()/bench_fail()). */
#define BENCH_OK	0
#define BENCH_SKIPPED	1
#define BENCH_FAILED	2

/*
 * lfence; rdtsc: the TSC once every earlier instruction has finished.  Under
 * -icount shift=0 a difference of two of these counts instructions (a
 * back-to-back pair reads 5 apart: rdtsc_back_to_back).  NMI-safe: yes.
 */
static inline uint64_t bench_tsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
	return ((uint64_t)hi << 32) | lo;
}

/* Record one sample (ignored past b->iters).  NMI-safe: yes (a plain store). */
static inline void bench_sample(struct bench *b, uint64_t v)
{
	if (b->n < b->iters)
		b->samples[b->n++] = v;
}

/* Give up on this case: this machine cannot run it.  Returns BENCH_SKIPPED. */
int bench_skip(struct bench *b, const char *fmt, ...) NK_PRINTF(2, 3);
/* The case could not measure (a wait timed out ...).  Returns BENCH_FAILED. */
int bench_fail(struct bench *b, const char *fmt, ...) NK_PRINTF(2, 3);

/*
 * Spin with PAUSE until *flag is nonzero, at most `limit_tsc` TSC ticks.
 * Returns false on timeout.  NMI-safe: yes, but never wait in NMI context.
 */
bool bench_wait_flag_slow(const volatile uint32_t *flag, uint64_t limit_tsc);
static inline bool bench_wait_flag(const volatile uint32_t *flag, uint64_t limit_tsc)
{
	/* The common case (a self NMI has already run) costs one load. */
	return *flag || bench_wait_flag_slow(flag, limit_tsc);
}

/* A generous bound for one round trip: 10 ms of TSC (set by bench_run()). */
extern uint64_t bench_wait_tsc;
static inline uint64_t bench_wait_limit(void)
{
	return bench_wait_tsc;
}

/*
 * Run every case whose name matches `glob` (comma-separated globs, '*' and
 * '?'; NULL or "" = all) with `iters` samples each (0 = bench_iters).  Prints
 * one "BENCH {json}" line per metric, "BENCH-SKIP name: why" or
 * "BENCH-FAIL name: why" otherwise.  Task context.  Returns the number of
 * failed cases, or -1 if a run is already in progress.
 */
int bench_run(const char *glob, unsigned iters);

/* "BENCH-CASE {json}" per case: name, unit, cpus, cmdline, qemu (for tools/bench). */
void bench_list(void);

/* bench=GLOB was given: start the task that runs them and powers off (Step 10). */
extern char bench_boot_glob[256];
void bench_boot_start(void);

#endif
