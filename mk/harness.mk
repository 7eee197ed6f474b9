# mk/harness.mk: self-tests of the QEMU harness (tools/harness/, tools/*).
#   make harness-test   KTAP and scenario-file parsing, exit-status mapping,
#                       and nmikit-qemu end to end on a tiny fake kernel
# TAP on stdout (see docs/harness.md).

.PHONY: harness-test
harness-test:
	@python3 tests/harness/test_harness.py
TEST_SUITES += harness-test
