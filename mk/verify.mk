# mk/verify.mk - `make verify`: check the Promela models in models/ with
# spin (what each one proves: models/README.md). tools/run-models prints
# TAP; a broken variant that spin accepts fails the suite.

TEST_SUITES += verify
DEPS += spin gcc

.PHONY: verify
verify:
	@tools/run-models
