# mk/watchdog.mk: the lockup detectors' long runs (docs/watchdog.md).
#   make watchdog-long   the 2-minute no-false-positive runs, 4 vCPUs on the
#                        host's cores, one per source (tests/watchdog-long.conf);
#                        not part of make test (about 7 minutes)

.PHONY: watchdog-long
watchdog-long: $(KERNEL)
	@tools/run-scenarios --conf tests/watchdog-long.conf --jobs 1
