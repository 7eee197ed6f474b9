/*
 * The TAP harness shared by every host test program (see tap.h): a forked
 * child per test with a time limit, one result line per test, the plan first
 * and a summary last.
 */
#include "tap.h"

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

_Atomic int tap_failures;

/* A test that has not finished after this long is reported as hung. */
#define TAP_TIMEOUT_S	20

void tap_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	tap_failures++;
	printf("# %s:%d: check failed: ", file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static bool tap_run_one(const struct tap_test *t, void (*setup)(void))
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return false;
	}
	if (pid == 0) {
		alarm(TAP_TIMEOUT_S);
		if (setup)
			setup();
		t->fn();
		fflush(stdout);
		exit(tap_failures ? 1 : 0);
	}
	if (waitpid(pid, &status, 0) < 0) {
		perror("waitpid");
		return false;
	}
	if (WIFSIGNALED(status)) {
		printf("# %s: killed by signal %d%s\n", t->name, WTERMSIG(status),
		       WTERMSIG(status) == SIGALRM ? " (hung)" : "");
		return false;
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool tap_selected(const struct tap_test *t, const char *filter)
{
	return !filter || strstr(t->name, filter);
}

int tap_main(int argc, char **argv, const struct tap_test *const *suites, void (*setup)(void))
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	unsigned total = 0, n = 0, failed = 0;

	for (const struct tap_test *const *s = suites; *s; s++)
		for (const struct tap_test *t = *s; t->name; t++)
			total += tap_selected(t, filter);
	printf("1..%u\n", total);
	for (const struct tap_test *const *s = suites; *s; s++) {
		for (const struct tap_test *t = *s; t->name; t++) {
			bool ok;

			if (!tap_selected(t, filter))
				continue;
			ok = tap_run_one(t, setup);
			printf("%sok %u - %s\n", ok ? "" : "not ", ++n, t->name);
			if (!ok)
				failed++;
		}
	}
	printf("# %u passed, %u failed\n", n - failed, failed);
	return failed ? 1 : 0;
}
