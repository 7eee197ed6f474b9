/*
 * Runs every host unit test in a child process and reports TAP on stdout.
 * `nmikit-host-tests [substring]` runs only the tests whose name contains it.
 */
#include "tap.h"
#include "test_os.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int tap_failures;

/* A test that has not finished after this long is reported as hung. */
#define TAP_TIMEOUT_S	20

void tap_fail(const char *file, int line, const char *what)
{
	tap_failures++;
	printf("# %s:%d: check failed: %s\n", file, line, what);
	fflush(stdout);
}

static bool tap_run_one(const struct tap_test *t)
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
		tos_reset(4);
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

int main(int argc, char **argv)
{
	const struct tap_test *suites[] = { nmi_tests, irq_work_tests, probe_tests, watchdog_tests, rcu_tests };
	const char *filter = argc > 1 ? argv[1] : NULL;
	unsigned total = 0, n = 0, failed = 0;

	for (size_t s = 0; s < sizeof(suites) / sizeof(suites[0]); s++)
		for (const struct tap_test *t = suites[s]; t->name; t++)
			if (!filter || strstr(t->name, filter))
				total++;
	printf("1..%u\n", total);
	for (size_t s = 0; s < sizeof(suites) / sizeof(suites[0]); s++) {
		for (const struct tap_test *t = suites[s]; t->name; t++) {
			bool ok;

			if (filter && !strstr(t->name, filter))
				continue;
			ok = tap_run_one(t);
			printf("%sok %u - %s\n", ok ? "" : "not ", ++n, t->name);
			if (!ok)
				failed++;
		}
	}
	printf("# %u passed, %u failed\n", n - failed, failed);
	return failed ? 1 : 0;
}
