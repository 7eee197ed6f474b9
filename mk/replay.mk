# mk/replay.mk: record/replay reproduces a run exactly (issue 8).
#   make replay-check   record the one-CPU scenario hostile.replay (hostile ring-3
#                       tasks, front-panel NMIs injected at random moments), replay
#                       the recording, and compare the consoles byte for byte
# TAP on stdout (tools/replay-check).  Not in TEST_SUITES: QEMU 7.2 replays a
# recording far slower than it ran (measured: 5 s recorded, 28 s to replay;
# 18 s even for a bare boot), over the 20 s a make-test suite may take.

.PHONY: replay-check
replay-check: $(KERNEL)
	@tools/replay-check hostile.replay
