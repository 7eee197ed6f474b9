/*
 * main() of nmikit-host-tests, the host unit tests of the NMI core: every
 * suite runs on the simulated os.h of test_os.c, each test starting with
 * four CPUs online and the clock at 0.
 * `nmikit-host-tests [substring]` runs only the tests whose name contains it.
 */
#include "tap.h"
#include "test_os.h"

extern const struct tap_test nmi_tests[];
extern const struct tap_test irq_work_tests[];
extern const struct tap_test probe_tests[];
extern const struct tap_test rcu_tests[];
extern const struct tap_test watchdog_tests[];

static void four_cpus(void)
{
	tos_reset(4);
}

int main(int argc, char **argv)
{
	static const struct tap_test *const suites[] = {
		nmi_tests, irq_work_tests, probe_tests, watchdog_tests, rcu_tests, NULL,
	};

	return tap_main(argc, argv, suites, four_cpus);
}
