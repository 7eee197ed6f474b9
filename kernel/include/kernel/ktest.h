/*
 * ktest.h: in-kernel test cases and their KTAP v1 runner.
 *
 *	KTEST(timer, ticks_advance)
 *	{
 *		uint64_t t0 = ticks();
 *		wait_a_bit();
 *		KT_EXPECT_GT(ticks(), t0);
 *	}
 *
 * Each KTEST puts a descriptor in the linker section `ktest_cases`.
 * ktest_run("timer.*") runs the cases whose "suite.case" matches, suite by
 * suite, and prints KTAP v1 through the log at NK_LOG_PRINT (so the console
 * shows it whatever `loglevel=` says).  Cases run one at a time on the
 * calling CPU; an expectation checked from another CPU while a case runs is
 * charged to that case.
 */
#ifndef KERNEL_KTEST_H
#define KERNEL_KTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nmikit/compiler.h>

struct ktest_case {
	const char *suite;
	const char *name;
	void (*fn)(void);
	const char *file;
	int line;
};

#define KTEST(suite_, name_)							\
	static void ktest_fn_##suite_##__##name_(void);				\
	static const struct ktest_case ktest_case_##suite_##__##name_		\
	__attribute__((used, section("ktest_cases"), aligned(8))) = {		\
		.suite = #suite_,						\
		.name = #name_,							\
		.fn = ktest_fn_##suite_##__##name_,				\
		.file = __FILE__,						\
		.line = __LINE__,						\
	};									\
	static void ktest_fn_##suite_##__##name_(void)

struct ktest_totals {
	unsigned suites;
	unsigned cases;
	unsigned passed;
	unsigned failed;
	unsigned skipped;
};

/*
 * Run the cases matching `glob` (NULL or "" = all) and print KTAP v1.  The
 * glob may be a comma-separated list; a pattern with a '.' is matched
 * against "suite.case", one without against the suite name; '*' and '?'
 * are wildcards.  Returns the number of failed cases.
 */
int ktest_run(const char *glob);
/* Same, and report the counts. */
int ktest_run_totals(const char *glob, struct ktest_totals *totals);
/* How many cases match `glob`. */
unsigned ktest_count(const char *glob);

/* '*' matches any run of characters, '?' any one character. */
bool ktest_glob_match(const char *pattern, const char *text);

/*
 * Inside a case.  kt_skip() marks the running case skipped (the case should
 * return right after: KT_SKIP does both); kt_diag() prints a "# ..."
 * diagnostic line ("# key: value" by convention); kt_fail() marks failure
 * with a message.
 */
void kt_skip(const char *reason);
void kt_diag(const char *fmt, ...) NK_PRINTF(1, 2);
void kt_fail(const char *file, int line, const char *fmt, ...) NK_PRINTF(3, 4);
/* True once the running case has failed. */
bool kt_failed(void);

#define KT_SKIP(reason)		do { kt_skip(reason); return; } while (0)
#define KT_FAIL(...)		kt_fail(__FILE__, __LINE__, __VA_ARGS__)

/* --- expectations (EXPECT: record and go on; ASSERT: record and return) --- */

void kt__fail_cmp(const char *file, int line, const char *a, const char *op,
		  const char *b, long long va, long long vb, bool is_signed);
void kt__fail_str(const char *file, int line, const char *a, const char *op,
		  const char *b, const char *va, const char *vb);
void kt__fail_bool(const char *file, int line, const char *expr, bool expected);

/*
 * Both sides are evaluated once, converted to their common type (the usual
 * arithmetic conversions, as the comparison itself would), compared, and on
 * failure printed as "expected A op B, got A = x, B = y".
 */
#define KT__CMP(on_fail, a, op, b)						\
	do {									\
		__typeof__((a) + (b)) kt_a_ = (a);				\
		__typeof__((a) + (b)) kt_b_ = (b);				\
		if (!(kt_a_ op kt_b_)) {					\
			kt__fail_cmp(__FILE__, __LINE__, #a, #op, #b,		\
				     (long long)kt_a_, (long long)kt_b_,	\
				     (__typeof__(kt_a_))-1 < (__typeof__(kt_a_))1); \
			on_fail;						\
		}								\
	} while (0)

#define KT__BOOL(on_fail, expr, want)						\
	do {									\
		if (!(expr) != !(want)) {					\
			kt__fail_bool(__FILE__, __LINE__, #expr, (want));	\
			on_fail;						\
		}								\
	} while (0)

#define KT__STR(on_fail, a, op, b)						\
	do {									\
		const char *kt_sa_ = (a), *kt_sb_ = (b);			\
		int kt_eq_ = kt_sa_ && kt_sb_ ? __builtin_strcmp(kt_sa_, kt_sb_) == 0 \
					      : kt_sa_ == kt_sb_;		\
		if (kt_eq_ != (0 op 0)) {					\
			kt__fail_str(__FILE__, __LINE__, #a, #op, #b,		\
				     kt_sa_, kt_sb_);				\
			on_fail;						\
		}								\
	} while (0)

#define KT__PTR(on_fail, a, op, b)						\
	do {									\
		const void *kt_pa_ = (a), *kt_pb_ = (b);			\
		if (!(kt_pa_ op kt_pb_)) {					\
			kt__fail_cmp(__FILE__, __LINE__, #a, #op, #b,		\
				     (long long)(uintptr_t)kt_pa_,		\
				     (long long)(uintptr_t)kt_pb_, false);	\
			on_fail;						\
		}								\
	} while (0)

#define KT__NOTHING		do { } while (0)

#define KT_EXPECT_TRUE(x)	KT__BOOL(KT__NOTHING, x, true)
#define KT_EXPECT_FALSE(x)	KT__BOOL(KT__NOTHING, x, false)
#define KT_EXPECT_EQ(a, b)	KT__CMP(KT__NOTHING, a, ==, b)
#define KT_EXPECT_NE(a, b)	KT__CMP(KT__NOTHING, a, !=, b)
#define KT_EXPECT_LT(a, b)	KT__CMP(KT__NOTHING, a, <, b)
#define KT_EXPECT_LE(a, b)	KT__CMP(KT__NOTHING, a, <=, b)
#define KT_EXPECT_GT(a, b)	KT__CMP(KT__NOTHING, a, >, b)
#define KT_EXPECT_GE(a, b)	KT__CMP(KT__NOTHING, a, >=, b)
#define KT_EXPECT_STREQ(a, b)	KT__STR(KT__NOTHING, a, ==, b)
#define KT_EXPECT_STRNE(a, b)	KT__STR(KT__NOTHING, a, !=, b)
#define KT_EXPECT_PTR_EQ(a, b)	KT__PTR(KT__NOTHING, a, ==, b)
#define KT_EXPECT_PTR_NE(a, b)	KT__PTR(KT__NOTHING, a, !=, b)
#define KT_EXPECT_NULL(p)	KT__PTR(KT__NOTHING, p, ==, NULL)
#define KT_EXPECT_NOT_NULL(p)	KT__PTR(KT__NOTHING, p, !=, NULL)

/* The ASSERT forms return from the enclosing (void) function on failure. */
#define KT_ASSERT_TRUE(x)	KT__BOOL(return, x, true)
#define KT_ASSERT_FALSE(x)	KT__BOOL(return, x, false)
#define KT_ASSERT_EQ(a, b)	KT__CMP(return, a, ==, b)
#define KT_ASSERT_NE(a, b)	KT__CMP(return, a, !=, b)
#define KT_ASSERT_LT(a, b)	KT__CMP(return, a, <, b)
#define KT_ASSERT_LE(a, b)	KT__CMP(return, a, <=, b)
#define KT_ASSERT_GT(a, b)	KT__CMP(return, a, >, b)
#define KT_ASSERT_GE(a, b)	KT__CMP(return, a, >=, b)
#define KT_ASSERT_STREQ(a, b)	KT__STR(return, a, ==, b)
#define KT_ASSERT_STRNE(a, b)	KT__STR(return, a, !=, b)
#define KT_ASSERT_PTR_EQ(a, b)	KT__PTR(return, a, ==, b)
#define KT_ASSERT_NULL(p)	KT__PTR(return, p, ==, NULL)
#define KT_ASSERT_NOT_NULL(p)	KT__PTR(return, p, !=, NULL)

#endif
