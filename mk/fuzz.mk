# mk/fuzz.mk: fuzzing the parsers that read untrusted input: the boot-parameter
# parser (core/param.c), the shell's command parsing (kernel/shell_parse.c) and
# the ACPI table parsers (kernel/acpi_parse.c).  Harnesses in fuzz/.
#
#   make fuzz        libFuzzer (clang -fsanitize=fuzzer,address,undefined), each
#                    target for FUZZ_SECONDS (default 60); new inputs collect in
#                    $(BUILD)/fuzz/corpus/<target>, crashes in $(BUILD)/fuzz/crashes/<target>
#   make fuzz-smoke  part of make test: replay the committed corpus
#                    (fuzz/corpus/<target>/) through each harness under gcc
#                    ASan+UBSan with a plain main() (fuzz/replay.c), and check
#                    the corpus matches fuzz/gen-corpus
#   make fuzz-corpus rewrite fuzz/corpus and fuzz/acpi-tables from fuzz/gen-corpus
#
# Reproduce a crash: $(BUILD)/fuzz/replay/fuzz_<target> <target> CRASH-FILE

BUILD ?= build
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_TARGETS := param shell acpi
FUZZ_SECONDS ?= 60
FUZZ_CLANG := clang

FUZZ_SRC_param := fuzz/fuzz_param.c core/param.c core/log.c core/format.c fuzz/fuzz_os.c
FUZZ_SRC_shell := fuzz/fuzz_shell.c kernel/shell_parse.c core/format.c
FUZZ_SRC_acpi  := fuzz/fuzz_acpi.c kernel/acpi_parse.c

FUZZ_INC := -Iinclude -Ikernel/include
FUZZ_WARN := -Wall -Wextra -Werror
FUZZ_REPLAY_FLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer $(FUZZ_WARN) $(FUZZ_INC) \
                     -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LF_FLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer $(FUZZ_WARN) $(FUZZ_INC) \
                 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

TEST_SUITES += fuzz-smoke
DEPS += clang libclang-rt-14-dev python3

.PHONY: fuzz fuzz-smoke fuzz-corpus

# $(call fuzz-target,NAME)
define fuzz-target
$(FUZZ_DIR)/replay/fuzz_$(1): $(FUZZ_SRC_$(1)) fuzz/replay.c $(wildcard include/nmikit/*.h kernel/include/kernel/*.h)
	@mkdir -p $$(@D)
	$$(CC) $$(FUZZ_REPLAY_FLAGS) -o $$@ $(FUZZ_SRC_$(1)) fuzz/replay.c
$(FUZZ_DIR)/lf/fuzz_$(1): $(FUZZ_SRC_$(1)) $(wildcard include/nmikit/*.h kernel/include/kernel/*.h)
	@mkdir -p $$(@D)
	$$(FUZZ_CLANG) $$(FUZZ_LF_FLAGS) -o $$@ $(FUZZ_SRC_$(1))
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz-target,$(t))))

fuzz-smoke: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/replay/fuzz_%)
	@hosts/posix/run-tap fuzz-smoke \
		$(foreach t,$(FUZZ_TARGETS),"$(t):timeout 120 $(FUZZ_DIR)/replay/fuzz_$(t) $(t) fuzz/corpus/$(t)") \
		"corpus:if fuzz/gen-corpus --check; then echo 'ok 1 - fuzz/corpus and fuzz/acpi-tables match fuzz/gen-corpus'; else echo 'not ok 1 - fuzz/corpus and fuzz/acpi-tables match fuzz/gen-corpus (make fuzz-corpus)'; fi"

fuzz: $(FUZZ_TARGETS:%=$(FUZZ_DIR)/lf/fuzz_%)
	@tools/ensure-deps clang libclang-rt-14-dev
	@n=0; failed=0; for t in $(FUZZ_TARGETS); do \
		n=$$((n + 1)); \
		mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/crashes/$$t; \
		echo "# fuzz $$t for $(FUZZ_SECONDS) s"; \
		if $(FUZZ_DIR)/lf/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_DIR)/crashes/$$t/ \
			$(FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t > $(FUZZ_DIR)/$$t.log 2>&1; then \
			echo "ok $$n - fuzz $$t: $$(grep -o 'stat::number_of_executed_units: *[0-9]*' $(FUZZ_DIR)/$$t.log | grep -o '[0-9]*$$') runs, corpus $$(ls $(FUZZ_DIR)/corpus/$$t | wc -l) inputs, no finding"; \
		else \
			failed=$$((failed + 1)); \
			echo "not ok $$n - fuzz $$t: finding in $(FUZZ_DIR)/crashes/$$t/ (log $(FUZZ_DIR)/$$t.log)"; \
			grep -E 'ERROR|SUMMARY|Test unit written' $(FUZZ_DIR)/$$t.log | sed 's/^/# /' | head -10; \
		fi; \
	done; echo "1..$$n"; echo "# fuzz: $$((n - failed)) passed, $$failed failed"; [ $$failed -eq 0 ]

fuzz-corpus:
	fuzz/gen-corpus
