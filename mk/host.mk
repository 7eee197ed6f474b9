# mk/host.mk: host unit tests of the portable core (tests/host/).
#   make host-test            build build/host/nmikit-host-tests (ASan+UBSan)
#                             and run it; TAP on stdout
#   make core-include-check   fail if a core/ file includes anything but
#                             <nmikit/...> or a freestanding C header
#   make core-freestanding-check  compile the core files of this fragment
#                             with the kernel's freestanding flags
# Included by the top Makefile; also works alone:
#   make -f mk/host.mk host-test

BUILD   ?= build
CC      ?= gcc
HOST_CC ?= $(CC)

HOST_DIR        := $(BUILD)/host
HOST_CORE_SRC   := core/nmi.c core/irq_work.c core/nmi_probe.c core/rcu_nmi.c core/rcu.c \
                   core/watchdog.c core/nmi_backtrace.c
HOST_TEST_SRC   := tests/host/tap.c tests/host/host_main.c tests/host/capture.c \
                   tests/host/test_os.c tests/host/test_nmi.c \
                   tests/host/test_irq_work.c tests/host/test_probe.c tests/host/test_rcu.c \
                   tests/host/test_watchdog.c
HOST_TEST_BIN   := $(HOST_DIR)/nmikit-host-tests
HOST_SAN        := -fsanitize=address,undefined -fno-sanitize-recover=all
HOST_COMMON     := -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror -Iinclude -MMD -MP
# The core is compiled as it is in the kernel: C11, freestanding.
HOST_CORE_FLAGS := -std=c11 -ffreestanding $(HOST_COMMON) $(HOST_SAN)
HOST_TEST_FLAGS := -std=gnu11 -pthread -Itests/host $(HOST_COMMON) $(HOST_SAN)
# The flags that core/ must build with inside the kernel.
CORE_KFLAGS     := -std=c11 -ffreestanding -mno-red-zone -mgeneral-regs-only \
                   -fno-omit-frame-pointer -fno-pie -O2 -Wall -Wextra -Werror -Iinclude

HOST_CORE_OBJ := $(HOST_CORE_SRC:%.c=$(HOST_DIR)/%.o)
HOST_TEST_OBJ := $(HOST_TEST_SRC:%.c=$(HOST_DIR)/%.o)
HOST_KCHECK   := $(HOST_CORE_SRC:%.c=$(HOST_DIR)/kcheck/%.o)

# Headers a core/ file may include besides <nmikit/...>: the C11
# freestanding set.
CORE_ALLOWED_HEADERS := float.h iso646.h limits.h stdalign.h stdarg.h stdatomic.h \
                        stdbool.h stddef.h stdint.h stdnoreturn.h
host_empty :=
host_space := $(host_empty) $(host_empty)
CORE_INCLUDE_RE := nmikit/[A-Za-z0-9_./-]+|$(subst $(host_space),|,$(subst .,\.,$(CORE_ALLOWED_HEADERS)))

TEST_SUITES += host-test
DEPS += gcc libasan8 libubsan1

.PHONY: host-test core-include-check core-freestanding-check

host-test: core-include-check core-freestanding-check $(HOST_TEST_BIN)
	@$(HOST_TEST_BIN)

$(HOST_TEST_BIN): $(HOST_CORE_OBJ) $(HOST_TEST_OBJ)
	$(HOST_CC) $(HOST_SAN) -pthread -o $@ $^

$(HOST_DIR)/core/%.o: core/%.c
	@mkdir -p $(@D)
	$(HOST_CC) $(HOST_CORE_FLAGS) -c $< -o $@

$(HOST_DIR)/tests/host/%.o: tests/host/%.c
	@mkdir -p $(@D)
	$(HOST_CC) $(HOST_TEST_FLAGS) -c $< -o $@

$(HOST_DIR)/kcheck/core/%.o: core/%.c
	@mkdir -p $(@D)
	$(HOST_CC) $(CORE_KFLAGS) -c $< -o $@

core-freestanding-check: $(HOST_KCHECK)

# Every #include in core/ (and in the public headers it sees) must name
# <nmikit/...> or an allowed freestanding header.  Prints one TAP line.
core-include-check:
	@bad=$$(grep -HnE '^[[:space:]]*#[[:space:]]*include' core/*.c core/*.h include/nmikit/*.h 2>/dev/null | \
		grep -vE '#[[:space:]]*include[[:space:]]*<($(CORE_INCLUDE_RE))>' | \
		grep -vE '^include/nmikit/os\.h:[0-9]+:#include NMIKIT_OS_INLINE_HEADER$$'); \
	if [ -n "$$bad" ]; then \
		echo "$$bad" | sed 's/^/# not allowed in core: /'; \
		echo "not ok - core_includes_only_nmikit_and_freestanding_headers"; exit 1; \
	else \
		echo "ok - core_includes_only_nmikit_and_freestanding_headers"; \
	fi

-include $(HOST_CORE_OBJ:.o=.d) $(HOST_TEST_OBJ:.o=.d)
