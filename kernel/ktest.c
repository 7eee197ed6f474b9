/*
 * ktest.c: the in-kernel test runner.  Walks the `ktest_cases` section, runs
 * the cases a glob selects, grouped by suite, and prints KTAP v1:
 *
 *	KTAP version 1
 *	1..2
 *	    KTAP version 1
 *	    # Subtest: timer
 *	    1..2
 *	    ok 1 ticks_advance
 *	    # kernel/timer_test.c:40: expected a == b, got a = 1, b = 2
 *	    not ok 2 calibrated
 *	not ok 1 timer
 *	...
 *	# Totals: pass:3 fail:1 skip:0 total:4
 *
 * Output goes through nk_log at NK_LOG_PRINT, which reaches the console
 * whatever the console level and keeps the lines in the ring for `log`.
 */
#include <kernel/ktest.h>

#include <nmikit/format.h>
#include <nmikit/log.h>

#include <stdarg.h>
#include <stdatomic.h>

extern const struct ktest_case __start_ktest_cases[] __attribute__((weak));
extern const struct ktest_case __stop_ktest_cases[] __attribute__((weak));

/* The case being run; expectations from any CPU are charged to it. */
static const struct ktest_case *kt_current;
static _Atomic bool kt_cur_failed;
static _Atomic bool kt_cur_skipped;
static char kt_skip_reason[96];

static size_t case_count(void)
{
	if (!__start_ktest_cases || !__stop_ktest_cases)
		return 0;
	return (size_t)(__stop_ktest_cases - __start_ktest_cases);
}

/* --- glob matching --------------------------------------------------------- */

/*
 * Iterative wildcard match with one backtrack point: on a mismatch after a
 * '*', retry with that '*' swallowing one more character.  Linear in
 * practice, O(len(pattern) * len(text)) at worst; no recursion.
 */
static bool glob_match_n(const char *pat, size_t plen, const char *text)
{
	size_t p = 0, t = 0, star = (size_t)-1, mark = 0;

	while (text[t]) {
		if (p < plen && (pat[p] == '?' || pat[p] == text[t])) {
			p++;
			t++;
		} else if (p < plen && pat[p] == '*') {
			star = p++;
			mark = t;
		} else if (star != (size_t)-1) {
			p = star + 1;
			t = ++mark;
		} else {
			return false;
		}
	}
	while (p < plen && pat[p] == '*')
		p++;
	return p == plen;
}

bool ktest_glob_match(const char *pattern, const char *text)
{
	return glob_match_n(pattern, strlen(pattern), text);
}

/* Does one comma-separated pattern select this case? */
static bool pattern_selects(const char *pat, size_t plen, const struct ktest_case *tc)
{
	char full[128];
	bool dotted = false;

	for (size_t i = 0; i < plen; i++)
		dotted |= pat[i] == '.';
	if (!dotted)
		return glob_match_n(pat, plen, tc->suite);
	nk_snprintf(full, sizeof(full), "%s.%s", tc->suite, tc->name);
	return glob_match_n(pat, plen, full);
}

static bool selected(const char *glob, const struct ktest_case *tc)
{
	const char *p = glob;

	if (!glob || !*glob)
		return true;
	for (;;) {
		const char *end = p;

		while (*end && *end != ',')
			end++;
		if (end > p && pattern_selects(p, (size_t)(end - p), tc))
			return true;
		if (!*end)
			return false;
		p = end + 1;
	}
}

unsigned ktest_count(const char *glob)
{
	size_t n = case_count();
	unsigned count = 0;

	for (size_t i = 0; i < n; i++)
		count += selected(glob, &__start_ktest_cases[i]);
	return count;
}

/* --- reporting from inside a case -------------------------------------------- */

/* Diagnostics of a running case sit at the case's indentation. */
static const char *diag_indent(void)
{
	return kt_current ? "    " : "";
}

void kt_diag(const char *fmt, ...)
{
	char buf[NK_LOG_TEXT_MAX - 8];
	va_list ap;

	va_start(ap, fmt);
	nk_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	nk_log(NK_LOG_PRINT, "%s# %s\n", diag_indent(), buf);
}

void kt_fail(const char *file, int line, const char *fmt, ...)
{
	char buf[NK_LOG_TEXT_MAX - 8];
	va_list ap;

	va_start(ap, fmt);
	nk_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	atomic_store(&kt_cur_failed, true);
	nk_log(NK_LOG_PRINT, "%s# %s:%d: %s\n", diag_indent(), file, line, buf);
}

bool kt_failed(void)
{
	return atomic_load(&kt_cur_failed);
}

void kt_skip(const char *reason)
{
	nk_strlcpy(kt_skip_reason, reason ? reason : "", sizeof(kt_skip_reason));
	atomic_store(&kt_cur_skipped, true);
}

void kt__fail_cmp(const char *file, int line, const char *a, const char *op,
		  const char *b, long long va, long long vb, bool is_signed)
{
	if (is_signed)
		kt_fail(file, line, "expected %s %s %s, got %s = %lld, %s = %lld",
			a, op, b, a, va, b, vb);
	else
		kt_fail(file, line, "expected %s %s %s, got %s = %llu (0x%llx), %s = %llu (0x%llx)",
			a, op, b, a, (unsigned long long)va, (unsigned long long)va,
			b, (unsigned long long)vb, (unsigned long long)vb);
}

void kt__fail_str(const char *file, int line, const char *a, const char *op,
		  const char *b, const char *va, const char *vb)
{
	kt_fail(file, line, "expected %s %s %s, got \"%s\" and \"%s\"", a, op, b,
		va ? va : "(null)", vb ? vb : "(null)");
}

void kt__fail_bool(const char *file, int line, const char *expr, bool expected)
{
	kt_fail(file, line, "expected %s to be %s", expr, expected ? "true" : "false");
}

/* --- the runner ---------------------------------------------------------------- */

/* Is case i the first selected case of its suite? */
static bool first_of_suite(const char *glob, size_t i)
{
	const struct ktest_case *tc = &__start_ktest_cases[i];

	for (size_t j = 0; j < i; j++) {
		const struct ktest_case *o = &__start_ktest_cases[j];

		if (strcmp(o->suite, tc->suite) == 0 && selected(glob, o))
			return false;
	}
	return true;
}

static void run_suite(const char *glob, size_t first, unsigned suite_no,
		      struct ktest_totals *t)
{
	const char *suite = __start_ktest_cases[first].suite;
	size_t n = case_count();
	unsigned m = 0, num = 0, failed = 0, skipped = 0;

	for (size_t i = first; i < n; i++) {
		const struct ktest_case *tc = &__start_ktest_cases[i];

		m += strcmp(tc->suite, suite) == 0 && selected(glob, tc);
	}

	nk_log(NK_LOG_PRINT, "    KTAP version 1\n");
	nk_log(NK_LOG_PRINT, "    # Subtest: %s\n", suite);
	nk_log(NK_LOG_PRINT, "    1..%u\n", m);

	for (size_t i = first; i < n; i++) {
		const struct ktest_case *tc = &__start_ktest_cases[i];

		if (strcmp(tc->suite, suite) != 0 || !selected(glob, tc))
			continue;
		num++;
		kt_skip_reason[0] = '\0';
		atomic_store(&kt_cur_failed, false);
		atomic_store(&kt_cur_skipped, false);
		kt_current = tc;
		tc->fn();
		kt_current = NULL;

		if (atomic_load(&kt_cur_failed)) {
			failed++;
			t->failed++;
			nk_log(NK_LOG_PRINT, "    not ok %u %s\n", num, tc->name);
		} else if (atomic_load(&kt_cur_skipped)) {
			skipped++;
			t->skipped++;
			nk_log(NK_LOG_PRINT, "    ok %u %s # SKIP %s\n", num, tc->name,
			       kt_skip_reason);
		} else {
			t->passed++;
			nk_log(NK_LOG_PRINT, "    ok %u %s\n", num, tc->name);
		}
		t->cases++;
	}

	if (failed)
		nk_log(NK_LOG_PRINT, "not ok %u %s\n", suite_no, suite);
	else if (skipped == m)
		nk_log(NK_LOG_PRINT, "ok %u %s # SKIP all cases skipped\n", suite_no, suite);
	else
		nk_log(NK_LOG_PRINT, "ok %u %s\n", suite_no, suite);
}

int ktest_run_totals(const char *glob, struct ktest_totals *totals)
{
	struct ktest_totals t = { 0 };
	size_t n = case_count();
	unsigned suites = 0, suite_no = 0;

	for (size_t i = 0; i < n; i++) {
		if (selected(glob, &__start_ktest_cases[i]) && first_of_suite(glob, i))
			suites++;
	}

	nk_log(NK_LOG_PRINT, "KTAP version 1\n");
	if (suites == 0)
		nk_log(NK_LOG_PRINT, "1..0 # SKIP no test matches '%s'\n",
		       glob && *glob ? glob : "*");
	else
		nk_log(NK_LOG_PRINT, "1..%u\n", suites);

	for (size_t i = 0; i < n; i++) {
		if (selected(glob, &__start_ktest_cases[i]) && first_of_suite(glob, i))
			run_suite(glob, i, ++suite_no, &t);
	}
	t.suites = suites;
	nk_log(NK_LOG_PRINT, "# Totals: pass:%u fail:%u skip:%u total:%u\n",
	       t.passed, t.failed, t.skipped, t.cases);
	if (totals)
		*totals = t;
	return (int)t.failed;
}

int ktest_run(const char *glob)
{
	return ktest_run_totals(glob, NULL);
}
