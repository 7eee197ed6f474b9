/*
 * bench.c: the benchmark runner.  Walks the cases registered with BENCH()
 * (linker section bench_cases), runs those selected, turns each case's
 * samples into min / median / mean / max / p99 and prints them as one JSON
 * line for tools/bench.  Entry points: boot parameter bench=GLOB (then power
 * off), the shell command `bench`, and bench_run() for anyone.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/tsc.h>
#include <kernel/bench.h>
#include <kernel/ktest.h>
#include <kernel/sched.h>
#include <kernel/shell.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

extern const struct bench_case __start_bench_cases[], __stop_bench_cases[];

char bench_boot_glob[256];
NK_PARAM_STR("bench", bench_boot_glob,
	     "run the benchmarks matching this glob (\"list\": list them), then power off");

unsigned bench_iters = BENCH_ITERS_DEFAULT;
NK_PARAM_UINT("bench_iters", bench_iters, 1, BENCH_ITERS_MAX,
	      "samples per benchmark metric");

static uint64_t bench_samples[BENCH_ITERS_MAX];
static atomic_bool bench_busy;

/* --- helpers for cases ---------------------------------------------------- */

static int bench_verdict(struct bench *b, const char *tag, int ret, const char *fmt, va_list ap)
{
	char why[160];

	nk_vsnprintf(why, sizeof(why), fmt, ap);
	if (!b->verdict_set)
		nk_log(NK_LOG_PRINT, "%s %s: %s\n", tag, b->c->name, why);
	b->verdict_set = true;
	return ret;
}

int bench_skip(struct bench *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = bench_verdict(b, "BENCH-SKIP", BENCH_SKIPPED, fmt, ap);
	va_end(ap);
	return r;
}

int bench_fail(struct bench *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = bench_verdict(b, "BENCH-FAIL", BENCH_FAILED, fmt, ap);
	va_end(ap);
	return r;
}

uint64_t bench_wait_tsc;

bool bench_wait_flag_slow(const volatile uint32_t *flag, uint64_t limit_tsc)
{
	uint64_t start;

	/*
	 * The plain spin first (another CPU or an interrupt answers within a
	 * few PAUSEs), the bounded loop only after: the figures carry as
	 * little of the wait as Linux's `while (!flag) cpu_relax();` did.
	 */
	for (int i = 0; i < 8; i++) {
		cpu_relax();
		if (*flag)
			return true;
	}
	start = rdtsc();

	while (!*flag) {
		if (rdtsc() - start > limit_tsc)
			return *flag != 0;
		cpu_relax();
	}
	return true;
}

/* --- statistics ------------------------------------------------------------ */

/* Shell sort (Ciura's gaps, then 2.25x): no recursion, fine for 20000 samples. */
static void bench_sort(uint64_t *v, unsigned n)
{
	static const unsigned ciura[] = { 1, 4, 10, 23, 57, 132, 301, 701, 1750, 3937, 8858 };
	int g = (int)NK_ARRAY_SIZE(ciura) - 1;

	for (; g >= 0; g--) {
		unsigned gap = ciura[g];

		if (gap >= n)
			continue;
		for (unsigned i = gap; i < n; i++) {
			uint64_t x = v[i];
			unsigned j = i;

			for (; j >= gap && v[j - gap] > x; j -= gap)
				v[j] = v[j - gap];
			v[j] = x;
		}
	}
}

/* Nearest-rank percentile of sorted v[0..n), n > 0. */
static uint64_t bench_pct(const uint64_t *v, unsigned n, unsigned pct)
{
	unsigned rank = (unsigned)(((uint64_t)pct * n + 99) / 100);

	return v[rank ? rank - 1 : 0];
}

static void bench_report(const struct bench *b)
{
	unsigned n = b->n;
	uint64_t *v = b->samples;
	uint64_t sum = 0, med, mean10;
	unsigned online = 0;

	bench_sort(v, n);
	for (unsigned i = 0; i < n; i++)
		sum += v[i];
	/* Median: the lower middle for an even count, so it is always a sample. */
	med = v[(n - 1) / 2];
	mean10 = (sum * 10 + n / 2) / n;
	for (unsigned c = 0; c < os_cpu_count(); c++)
		online += os_cpu_online(c);
	nk_log(NK_LOG_PRINT,
	       "BENCH {\"name\":\"%s\",\"unit\":\"%s\",\"iters\":%u,\"min\":%llu,"
	       "\"median\":%llu,\"mean\":%llu.%llu,\"max\":%llu,\"p99\":%llu,\"cpus\":%u}\n",
	       b->c->name, b->c->unit, n, (unsigned long long)v[0], (unsigned long long)med,
	       (unsigned long long)(mean10 / 10), (unsigned long long)(mean10 % 10),
	       (unsigned long long)v[n - 1], (unsigned long long)bench_pct(v, n, 99), online);
}

/* --- selection -------------------------------------------------------------- */

/* Does `name` match one of the comma-separated globs? */
static bool bench_selected(const char *glob, const char *name)
{
	char pat[64];

	if (!glob || !*glob)
		return true;
	while (*glob) {
		size_t len = 0;

		while (glob[len] && glob[len] != ',')
			len++;
		if (len && len < sizeof(pat)) {
			memcpy(pat, glob, len);
			pat[len] = '\0';
			if (ktest_glob_match(pat, name))
				return true;
		}
		glob += len;
		if (*glob == ',')
			glob++;
	}
	return false;
}

/* A string as a JSON value (the registry's strings are ASCII; quote and escape). */
static void bench_json_str(char *out, size_t size, const char *s)
{
	size_t o = 0;

	if (size < 3)
		return;
	out[o++] = '"';
	for (; s && *s && o + 3 < size; s++) {
		if (*s == '"' || *s == '\\')
			out[o++] = '\\';
		out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : ' ';
	}
	out[o++] = '"';
	out[o] = '\0';
}

void bench_list(void)
{
	for (const struct bench_case *c = __start_bench_cases; c < __stop_bench_cases; c++) {
		char cmdline[80], qemu[80];

		bench_json_str(cmdline, sizeof(cmdline), c->cmdline ? c->cmdline : "");
		bench_json_str(qemu, sizeof(qemu), c->qemu ? c->qemu : "");
		nk_log(NK_LOG_PRINT,
		       "BENCH-CASE {\"name\":\"%s\",\"unit\":\"%s\",\"cpus\":%u,\"cmdline\":%s,\"qemu\":%s}\n",
		       c->name, c->unit, c->cpus, cmdline, qemu);
	}
}

/* --- running ---------------------------------------------------------------- */

int bench_run(const char *glob, unsigned iters)
{
	unsigned ran = 0, skipped = 0, failed = 0;
	bool expect = false;

	if (!atomic_compare_exchange_strong(&bench_busy, &expect, true))
		return -1;
	if (!iters)
		iters = bench_iters;
	if (iters > BENCH_ITERS_MAX)
		iters = BENCH_ITERS_MAX;
	bench_wait_tsc = tsc_hz / 100;
	nk_log(NK_LOG_PRINT, "bench: TSC %llu.%03llu MHz (exactly 1000.000 under -icount shift=0), "
	       "%u samples per metric, on CPU %u\n",
	       (unsigned long long)(tsc_hz / 1000000), (unsigned long long)(tsc_hz / 1000 % 1000),
	       iters, this_cpu_id());
	for (const struct bench_case *c = __start_bench_cases; c < __stop_bench_cases; c++) {
		struct bench b = { .c = c, .iters = iters, .samples = bench_samples };
		int r;

		if (!bench_selected(glob, c->name))
			continue;
		r = c->fn(&b);
		if (r == BENCH_OK && b.n == 0)
			r = bench_fail(&b, "took no samples");
		if (r == BENCH_OK) {
			bench_report(&b);
			ran++;
		} else if (r == BENCH_SKIPPED) {
			skipped++;
		} else {
			if (!b.verdict_set)
				bench_fail(&b, "failed (%d)", r);
			failed++;
		}
	}
	if (!ran && !skipped && !failed)
		nk_log(NK_LOG_PRINT, "bench: no benchmark matches '%s'\n", glob ? glob : "");
	nk_log(NK_LOG_PRINT, "bench: done: %u measured, %u skipped, %u failed\n",
	       ran, skipped, failed);
	atomic_store(&bench_busy, false);
	return (int)failed;
}

/* --- boot parameter and shell ------------------------------------------------ */

static void bench_boot_task(void *arg)
{
	int failed;

	(void)arg;
	if (ktest_glob_match("list", bench_boot_glob)) {
		bench_list();
		failed = 0;
	} else {
		failed = bench_run(bench_boot_glob, 0);
	}
	nk_log_flush();
	outl(0xf4, failed ? 1 : 0);
	for (;;)
		cpu_halt();
}

void bench_boot_start(void)
{
	/* On CPU 0, so that every other CPU is idle for the cross-CPU cases. */
	struct task *t = task_create_kernel("bench", bench_boot_task, NULL, 0);

	if (!t) {
		pr_err("bench: cannot start the benchmark task\n");
		outl(0xf4, 1);
		return;
	}
	task_detach(t);
}

static int cmd_bench(int argc, char **argv)
{
	uint64_t n = 0;
	int i = 1, r;

	if (argc > 1 && !__builtin_strcmp(argv[1], "list")) {
		bench_list();
		return 0;
	}
	if (argc > 2 && !__builtin_strcmp(argv[1], "-n")) {
		if (!shell_parse_u64(argv[2], &n) || n == 0 || n > BENCH_ITERS_MAX)
			return SHELL_USAGE;
		i = 3;
	}
	if (argc > i + 1)
		return SHELL_USAGE;
	r = bench_run(argc > i ? argv[i] : "", (unsigned)n);
	if (r < 0)
		shell_printf("bench: a run is already in progress\n");
	return r ? 1 : 0;
}
SHELL_CMD(bench, "[list | [-n ITERS] [GLOB]]",
	  "run benchmarks (docs/performance.md); exact figures need -icount", cmd_bench);
