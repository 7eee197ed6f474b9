# mk/posix.mk: the portable core hosted in Linux user space (hosts/posix/):
# threads are CPUs, real-time signals are NMIs.  The same core/*.c files as
# the kernel's, compiled unchanged, under sanitizers.
#
#   make posix-test   short torture pass (seconds) + hang detector example;
#                     part of make test (TAP)
#   make torture      long runs: ASan+UBSan on 8 CPUs, then ThreadSanitizer
#                     (TORTURE_SECONDS per test, default 30)
#   make coverage     branch coverage of core/ (gcov + lcov) from the host unit
#                     tests, the host-lib tests and the torture; HTML in
#                     $(BUILD)/coverage/html, summary on stdout
#   make hangdetect-example   build the hang detector's example program

BUILD ?= build
POSIX_DIR := $(BUILD)/posix

# The core files the POSIX host runs (a new core module joins here once its
# os.h needs are implemented in hosts/posix/posix_os.c).
POSIX_CORE_SRC := core/nmi.c core/nmi_probe.c core/irq_work.c core/log.c core/format.c \
                  core/param.c core/watchdog.c core/nmi_backtrace.c $(wildcard core/rcu_nmi.c)
POSIX_HOST_SRC := hosts/posix/posix_os.c
# The torture's rcu_nmi test joins once RCU's nesting counters are in the core.
POSIX_RCU := $(if $(and $(wildcard core/rcu_nmi.c),$(wildcard include/nmikit/rcu.h)),-DNKP_HAVE_RCU_NMI)
POSIX_HD_SRC   := hosts/posix/hangdetect/hangdetect.c

POSIX_WARN   := -Wall -Wextra -Werror
POSIX_ASAN   := -fsanitize=address,undefined -fno-sanitize-recover=all
POSIX_TSAN   := -fsanitize=thread
# core/ as the kernel compiles it: C11, only include/.
POSIX_CORE_CFLAGS := -std=c11 -g -O1 -fno-omit-frame-pointer $(POSIX_WARN) -Iinclude -MMD -MP
POSIX_CFLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer -pthread $(POSIX_WARN) -Iinclude \
                -Ihosts/posix -Ihosts/posix/hangdetect -MMD -MP $(POSIX_RCU)
POSIX_LDLIBS := -pthread -lrt

TORTURE_SECONDS ?= 30
# Short pass of make test: seconds per torture test.
POSIX_TEST_SECONDS ?= 1

TEST_SUITES += posix-test
DEPS += gcc clang lcov libasan8 libubsan1 libclang-rt-14-dev

.PHONY: posix-test torture coverage hangdetect-example posix-lib

# ThreadSanitizer build with clang: gcc's TSan refuses atomic_thread_fence,
# which core/log.c uses.
POSIX_TSAN_CC := clang

# $(call posix-variant,NAME,SANITIZER FLAGS,COMPILER): objects and programs of one build.
define posix-variant
$(POSIX_DIR)/$(1)/core/%.o: core/%.c
	@mkdir -p $$(@D)
	$(3) $$(POSIX_CORE_CFLAGS) $(2) -c $$< -o $$@
$(POSIX_DIR)/$(1)/hosts/%.o: hosts/%.c
	@mkdir -p $$(@D)
	$(3) $$(POSIX_CFLAGS) $(2) -c $$< -o $$@
$(POSIX_DIR)/$(1)/libnmikit-posix.a: $(POSIX_CORE_SRC:%.c=$(POSIX_DIR)/$(1)/%.o) \
		$(POSIX_HOST_SRC:%.c=$(POSIX_DIR)/$(1)/%.o)
	@rm -f $$@
	ar rcs $$@ $$^
$(POSIX_DIR)/$(1)/torture: $(POSIX_DIR)/$(1)/hosts/posix/torture/torture.o \
		$(POSIX_DIR)/$(1)/libnmikit-posix.a
	$(3) $(2) -o $$@ $$^ $$(POSIX_LDLIBS)
$(POSIX_DIR)/$(1)/hangdetect-example: $(POSIX_DIR)/$(1)/hosts/posix/hangdetect/example.o \
		$(POSIX_HD_SRC:%.c=$(POSIX_DIR)/$(1)/%.o) $(POSIX_DIR)/$(1)/libnmikit-posix.a
	$(3) $(2) -rdynamic -o $$@ $$^ $$(POSIX_LDLIBS)
-include $$(wildcard $(POSIX_DIR)/$(1)/*/*.d $(POSIX_DIR)/$(1)/*/*/*.d $(POSIX_DIR)/$(1)/*/*/*/*.d)
endef

$(eval $(call posix-variant,asan,$(POSIX_ASAN),$(CC)))
$(eval $(call posix-variant,tsan,$(POSIX_TSAN),$(POSIX_TSAN_CC)))
$(eval $(call posix-variant,plain,,$(CC)))

posix-lib: $(POSIX_DIR)/asan/libnmikit-posix.a
hangdetect-example: $(POSIX_DIR)/plain/hangdetect-example

# The short pass: each torture test for POSIX_TEST_SECONDS under ASan+UBSan
# with real signals, the same under ThreadSanitizer with polled delivery
# (TSan defers asynchronous signals and can drop one; see nkp_config.polled),
# and the hang detector's self-test.
posix-test: $(POSIX_DIR)/asan/torture $(POSIX_DIR)/tsan/torture \
		$(POSIX_DIR)/asan/hangdetect-example
	@hosts/posix/run-tap posix \
		"torture-asan:timeout 120 $(POSIX_DIR)/asan/torture -d $(POSIX_TEST_SECONDS) -c 4" \
		"torture-tsan:TSAN_OPTIONS=halt_on_error=1 timeout 120 $(POSIX_DIR)/tsan/torture --polled -d $(POSIX_TEST_SECONDS) -c 4" \
		"hangdetect:timeout 60 $(POSIX_DIR)/asan/hangdetect-example --self-test"

torture: $(POSIX_DIR)/asan/torture $(POSIX_DIR)/tsan/torture
	@hosts/posix/run-tap torture \
		"torture-asan:$(POSIX_DIR)/asan/torture -d $(TORTURE_SECONDS) -c 8" \
		"torture-tsan:TSAN_OPTIONS=halt_on_error=1 $(POSIX_DIR)/tsan/torture --polled -d $(TORTURE_SECONDS) -c 4"

# --- coverage -------------------------------------------------------------------
# Every core file gets gcov counters; the same sources feed three programs:
# the host unit tests (tests/host, simulated os.h), the host-lib tests of the
# log/param/format services, and the torture (real threads and signals).
POSIX_COV_DIR   := $(BUILD)/coverage
POSIX_COV_FLAGS := --coverage -fprofile-update=atomic
POSIX_COV_HOST  := $(POSIX_COV_DIR)/host-tests
POSIX_LCOV      := lcov --quiet --rc lcov_branch_coverage=1

$(POSIX_COV_DIR)/host/%.o: %.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -g -O0 -pthread $(POSIX_WARN) -Iinclude -Itests/host $(POSIX_COV_FLAGS) -c $< -o $@
$(POSIX_COV_HOST): $(addprefix $(POSIX_COV_DIR)/host/,$(HOST_CORE_SRC:.c=.o) $(HOST_TEST_SRC:.c=.o))
	$(CC) $(POSIX_COV_FLAGS) -pthread -o $@ $^

$(POSIX_COV_DIR)/lib/%.o: %.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -g -O0 -pthread $(POSIX_WARN) -Iinclude -Ikernel/include \
		$(POSIX_COV_FLAGS) -c $< -o $@
# The host-lib tests' harness and os.h.
POSIX_COV_LIBOS := tests/host/tap.o tests/host/lib_os.o tests/host/capture.o
# test_log drives core/log.c through its test hooks.
$(POSIX_COV_DIR)/libh/%.o: %.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -g -O0 -pthread $(POSIX_WARN) -Iinclude -Ikernel/include -DNK_LOG_TEST_HOOKS \
		$(POSIX_COV_FLAGS) -c $< -o $@
$(POSIX_COV_DIR)/test_param: $(addprefix $(POSIX_COV_DIR)/lib/,tests/host/test_param.o \
		core/log.o core/format.o core/param.o $(POSIX_COV_LIBOS))
	$(CC) $(POSIX_COV_FLAGS) -pthread -o $@ $^
$(POSIX_COV_DIR)/test_log: $(addprefix $(POSIX_COV_DIR)/libh/,tests/host/test_log.o \
		core/log.o core/format.o core/param.o $(POSIX_COV_LIBOS))
	$(CC) $(POSIX_COV_FLAGS) -pthread -o $@ $^

$(POSIX_COV_DIR)/tort/core/%.o: core/%.c
	@mkdir -p $(@D)
	$(CC) $(POSIX_CORE_CFLAGS) -O0 $(POSIX_COV_FLAGS) -c $< -o $@
$(POSIX_COV_DIR)/tort/hosts/%.o: hosts/%.c
	@mkdir -p $(@D)
	$(CC) $(POSIX_CFLAGS) -O0 -c $< -o $@
$(POSIX_COV_DIR)/torture: $(POSIX_CORE_SRC:%.c=$(POSIX_COV_DIR)/tort/%.o) \
		$(POSIX_COV_DIR)/tort/hosts/posix/posix_os.o $(POSIX_COV_DIR)/tort/hosts/posix/torture/torture.o
	$(CC) $(POSIX_COV_FLAGS) -o $@ $^ $(POSIX_LDLIBS)

coverage: $(POSIX_COV_HOST) $(POSIX_COV_DIR)/test_param $(POSIX_COV_DIR)/test_log $(POSIX_COV_DIR)/torture
	@tools/ensure-deps lcov
	@find $(POSIX_COV_DIR) -name '*.gcda' -delete
	@echo "coverage: running the host unit tests, host-lib tests and torture"
	@$(POSIX_COV_HOST) > $(POSIX_COV_DIR)/host-tests.out 2>&1 || echo "coverage: host unit tests failed (see $(POSIX_COV_DIR)/host-tests.out)"
	@$(POSIX_COV_DIR)/test_param > $(POSIX_COV_DIR)/test_param.out 2>&1 || true
	@$(POSIX_COV_DIR)/test_log > $(POSIX_COV_DIR)/test_log.out 2>&1 || true
	@$(POSIX_COV_DIR)/torture -d 1 -c 4 > $(POSIX_COV_DIR)/torture.out 2>&1 || echo "coverage: torture failed (see $(POSIX_COV_DIR)/torture.out)"
	@$(POSIX_LCOV) --capture --directory $(POSIX_COV_DIR) --output-file $(POSIX_COV_DIR)/all.info
	@$(POSIX_LCOV) --extract $(POSIX_COV_DIR)/all.info '*/core/*' --output-file $(POSIX_COV_DIR)/core.info
	@genhtml --quiet --branch-coverage --output-directory $(POSIX_COV_DIR)/html $(POSIX_COV_DIR)/core.info >/dev/null
	@$(POSIX_LCOV) --list $(POSIX_COV_DIR)/core.info
	@echo "coverage: HTML report in $(POSIX_COV_DIR)/html/index.html"
