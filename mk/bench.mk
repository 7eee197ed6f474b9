# mk/bench.mk: benchmarks (tools/bench, kernel/bench*.c, docs/performance.md).
#   make bench        every benchmark under QEMU -icount: one table, and
#                     $(BUILD)/bench.json; FILTER='self_nmi_*' picks metrics,
#                     BENCH_ITERS=N samples, NO_ICOUNT=1 runs under MTTCG
#                     (figures then not exact)
#   make bench-plot   PNG charts of $(BUILD)/bench.json in $(BUILD)/bench-plots/
#   make bench-smoke  each benchmark with 20 samples: its output parses (TAP);
#                     never a verdict on the figures.  Part of make test.

BENCH_DEPS := gnuplot-nox
BENCH_ARGS = --kernel $(KERNEL) $(if $(FILTER),--filter '$(FILTER)') \
             $(if $(BENCH_ITERS),--iters $(BENCH_ITERS)) $(if $(NO_ICOUNT),--no-icount)

.PHONY: bench bench-plot bench-smoke
bench: deps $(KERNEL)
	@tools/bench $(BENCH_ARGS) --out $(BUILD)/bench.json

bench-plot:
	@tools/ensure-deps $(BENCH_DEPS)
	@tools/bench-plot $(BUILD)/bench.json $(BUILD)/bench-plots

bench-smoke: $(KERNEL)
	@tools/bench --smoke --kernel $(KERNEL) --out $(BUILD)/bench-smoke.json
TEST_SUITES += bench-smoke
