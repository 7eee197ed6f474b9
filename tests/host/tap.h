/*
 * The TAP harness of every host test program (nmikit-host-tests and the
 * host-lib programs): each test runs in its own forked process (so static
 * state starts fresh and a crash or hang fails one test, not the run), and
 * prints `ok N - name` / `not ok N - name`, one line per test.
 */
#ifndef TESTS_HOST_TAP_H
#define TESTS_HOST_TAP_H

#include <stdio.h>
#include <string.h>

struct tap_test {
	const char *name;
	void (*fn)(void);
};

#define TAP_TEST(fn)	{ #fn, fn }
#define TAP_END		{ NULL, NULL }

/* Failures so far in the running test (in its child process, any thread). */
extern _Atomic int tap_failures;

/* Count a failure of the running test and say where and why (printf-like). */
void tap_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Run the tests of `suites` (each a TAP_END-terminated array, the list ended
 * by NULL) and print TAP: the plan, a line per test, a `#` summary.  In each
 * test's child `setup` (if any) runs first.  `prog [substring]` runs only the
 * tests whose name contains it.  Returns main()'s exit status.
 */
int tap_main(int argc, char **argv, const struct tap_test *const *suites, void (*setup)(void));

#define CHECK(cond) do {						\
	if (!(cond))							\
		tap_fail(__FILE__, __LINE__, "%s", #cond);		\
} while (0)

/* `cond`, with a printf-like explanation of the values when it fails. */
#define CHECK_MSG(cond, ...) do {					\
	if (!(cond))							\
		tap_fail(__FILE__, __LINE__, __VA_ARGS__);		\
} while (0)

#define CHECK_EQ(a, b) do {						\
	unsigned long long tap_a__ = (unsigned long long)(a);		\
	unsigned long long tap_b__ = (unsigned long long)(b);		\
	CHECK_MSG(tap_a__ == tap_b__, "%s == %s (%llu != %llu)",	\
		  #a, #b, tap_a__, tap_b__);				\
} while (0)

#define CHECK_STR(a, b) do {						\
	const char *tap_a__ = (a), *tap_b__ = (b);			\
	CHECK_MSG(tap_a__ && tap_b__ && strcmp(tap_a__, tap_b__) == 0,	\
		  "%s == \"%s\" (got \"%s\")", #a,			\
		  tap_b__ ? tap_b__ : "(null)", tap_a__ ? tap_a__ : "(null)"); \
} while (0)

#endif
