# mk/replay.mk: record/replay reproduces a run exactly (issue 8).
#   make replay-smoke   part of make test: record the one-CPU scenario
#                       hostile.replay.short (ring-3 tasks trapping in a loop,
#                       front-panel NMIs every 20-80 ms), replay the recording
#                       with the injections at their recorded instruction
#                       counts, and require the two consoles to be the same
#                       bytes (measured: 2 s to record, 16 s to replay)
#   make replay-check   the same for hostile.replay (the forced NMI windows
#                       too): 5 s recorded, about 30 s to replay - too long
#                       for make test
# TAP on stdout (tools/replay-check).  QEMU 7.2 replays I/O-bound guest code
# far slower than it ran: the boot's 10-ms timer calibration, a loop of HPET
# or PIT reads, alone takes 6-7 s to replay.

.PHONY: replay-check replay-smoke
replay-check: $(KERNEL)
	@tools/replay-check hostile.replay

replay-smoke: $(KERNEL)
	@tools/replay-check hostile.replay.short
TEST_SUITES += replay-smoke
