/*
 * A minimal TAP harness for the host unit tests: each test runs in its own
 * forked process (so core's static state starts fresh and a crash or hang
 * fails one test, not the run), and prints `ok N - name` / `not ok N - name`.
 */
#ifndef TESTS_HOST_TAP_H
#define TESTS_HOST_TAP_H

#include <stdio.h>

struct tap_test {
	const char *name;
	void (*fn)(void);
};

#define TAP_TEST(fn)	{ #fn, fn }

/* Failures so far in the running test (in the child process). */
extern int tap_failures;

void tap_fail(const char *file, int line, const char *what);

#define CHECK(cond) do {						\
	if (!(cond))							\
		tap_fail(__FILE__, __LINE__, #cond);			\
} while (0)

#define CHECK_EQ(a, b) do {						\
	unsigned long long tap_a__ = (unsigned long long)(a);		\
	unsigned long long tap_b__ = (unsigned long long)(b);		\
	if (tap_a__ != tap_b__) {					\
		char tap_msg__[256];					\
		snprintf(tap_msg__, sizeof(tap_msg__), "%s == %s (%llu != %llu)", \
			 #a, #b, tap_a__, tap_b__);			\
		tap_fail(__FILE__, __LINE__, tap_msg__);		\
	}								\
} while (0)

#define CHECK_STR(a, b) do {						\
	const char *tap_a__ = (a), *tap_b__ = (b);			\
	if (!tap_a__ || !tap_b__ || strcmp(tap_a__, tap_b__) != 0) {	\
		char tap_msg__[512];					\
		snprintf(tap_msg__, sizeof(tap_msg__), "%s == \"%s\" (got \"%s\")", \
			 #a, tap_b__ ? tap_b__ : "(null)",		\
			 tap_a__ ? tap_a__ : "(null)");			\
		tap_fail(__FILE__, __LINE__, tap_msg__);		\
	}								\
} while (0)

/* The suites, each a NULL-terminated array. */
extern const struct tap_test nmi_tests[];
extern const struct tap_test irq_work_tests[];
extern const struct tap_test probe_tests[];
extern const struct tap_test rcu_tests[];
extern const struct tap_test watchdog_tests[];

#endif
