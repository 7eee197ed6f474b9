# mk/host-lib.mk: host unit tests of the shared services: log ring, boot
# parameters, formatting and string functions, ACPI parsers, shell parsing,
# KTAP runner.  Built under AddressSanitizer + UndefinedBehaviorSanitizer into
# $(BUILD)/host-lib/, run as one TAP stream:
#
#	make host-lib-test                      (from the top Makefile)
#	make -f mk/host-lib.mk host-lib-test    (on its own)
#
# The same run also compiles every file of these services with the kernel's
# flags (and core/ files with the core-only include path), one TAP line each.

BUILD ?= build
ifeq ($(origin CC),default)
CC := gcc
endif

HL_DIR := $(BUILD)/host-lib
HL_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
HL_WARN := -Wall -Wextra -Werror
HL_CORE_CFLAGS := -std=c11 -g -O1 $(HL_WARN) $(HL_SAN) -Iinclude
HL_CFLAGS := -std=gnu11 -g -O1 $(HL_WARN) $(HL_SAN) -pthread -Iinclude -Ikernel/include
HL_LDFLAGS := $(HL_SAN) -pthread

# The kernel's flags (docs/DEVELOPING.md) for the compile check.
HL_KFLAGS := -std=gnu11 -ffreestanding -mno-red-zone -mgeneral-regs-only \
	-fno-omit-frame-pointer -fno-pie -O2 -Wall -Wextra -Werror \
	-Iinclude -Ikernel/include -Iarch/x86_64/include
HL_CORE_KFLAGS := -std=c11 -ffreestanding -mno-red-zone -mgeneral-regs-only \
	-fno-omit-frame-pointer -fno-pie -O2 -Wall -Wextra -Werror -Iinclude

HL_CORE_SRC := core/log.c core/format.c core/param.c core/string.c
HL_KERN_SRC := kernel/acpi_parse.c kernel/ktest.c kernel/shell.c kernel/shell_parse.c
HL_HEADERS := include/nmikit/log.h include/nmikit/param.h include/nmikit/format.h \
	include/nmikit/compiler.h include/nmikit/os.h kernel/include/kernel/acpi.h \
	kernel/include/kernel/ktest.h kernel/include/kernel/shell.h

# The shared harness (tap.c) and, for the tests that need an os.h, the
# host-lib one (lib_os.c) with its console capture.
HL_TEST_HEADERS := tests/host/tap.h tests/host/lib_os.h tests/host/capture.h
HL_TAP := $(HL_DIR)/tests/tap.o
HL_OS := $(HL_TAP) $(HL_DIR)/tests/lib_os.o $(HL_DIR)/tests/capture.o

HL_TESTS := test_format test_log test_log_wrap test_param test_acpi test_shell_parse
HL_BINS := $(addprefix $(HL_DIR)/,$(HL_TESTS))

.PHONY: host-lib-test host-lib-build
TEST_SUITES += host-lib-test

host-lib-build: $(HL_BINS)

# --- objects -------------------------------------------------------------------

$(HL_DIR)/core/%.o: core/%.c $(HL_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(HL_CORE_CFLAGS) -c $< -o $@

# core/string.c under test names, beside the C library's.
$(HL_DIR)/core/string_nkt.o: core/string.c $(HL_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(HL_CORE_CFLAGS) -DNK_STRING_PREFIX=nkt_ -c $< -o $@

# The log with test hooks, and with a 16-record ring to exercise wrapping.
$(HL_DIR)/core/log_hooks.o: core/log.c $(HL_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(HL_CORE_CFLAGS) -DNK_LOG_TEST_HOOKS -c $< -o $@
$(HL_DIR)/core/log_small.o: core/log.c $(HL_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(HL_CORE_CFLAGS) -DNK_LOG_TEST_HOOKS -DNK_LOG_RECORDS=16 -c $< -o $@

$(HL_DIR)/kernel/%.o: kernel/%.c $(HL_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(HL_CFLAGS) -c $< -o $@

$(HL_DIR)/tests/%.o: tests/host/%.c $(HL_HEADERS) $(HL_TEST_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(HL_CFLAGS) -c $< -o $@
$(HL_DIR)/tests/test_log.o: tests/host/test_log.c $(HL_HEADERS) $(HL_TEST_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(HL_CFLAGS) -DNK_LOG_TEST_HOOKS -c $< -o $@
$(HL_DIR)/tests/test_log_wrap.o: tests/host/test_log.c $(HL_HEADERS) $(HL_TEST_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(HL_CFLAGS) -DNK_LOG_TEST_HOOKS -DNK_LOG_RECORDS=16 -c $< -o $@

# --- test programs ---------------------------------------------------------------

HL_LOGLIB := $(HL_DIR)/core/format.o $(HL_DIR)/core/param.o

$(HL_DIR)/test_format: $(HL_DIR)/tests/test_format.o $(HL_DIR)/core/format.o \
		$(HL_DIR)/core/string_nkt.o $(HL_TAP)
	$(CC) $(HL_LDFLAGS) $^ -o $@
$(HL_DIR)/test_log: $(HL_DIR)/tests/test_log.o $(HL_DIR)/core/log_hooks.o $(HL_LOGLIB) $(HL_OS)
	$(CC) $(HL_LDFLAGS) $^ -o $@
$(HL_DIR)/test_log_wrap: $(HL_DIR)/tests/test_log_wrap.o $(HL_DIR)/core/log_small.o $(HL_LOGLIB) \
		$(HL_OS)
	$(CC) $(HL_LDFLAGS) $^ -o $@
$(HL_DIR)/test_param: $(HL_DIR)/tests/test_param.o $(HL_DIR)/core/log.o $(HL_LOGLIB) $(HL_OS)
	$(CC) $(HL_LDFLAGS) $^ -o $@
$(HL_DIR)/test_acpi: $(HL_DIR)/tests/test_acpi.o $(HL_DIR)/kernel/acpi_parse.o $(HL_TAP)
	$(CC) $(HL_LDFLAGS) $^ -o $@
$(HL_DIR)/test_shell_parse: $(HL_DIR)/tests/test_shell_parse.o \
		$(HL_DIR)/kernel/shell_parse.o $(HL_DIR)/kernel/shell.o \
		$(HL_DIR)/kernel/ktest.o $(HL_DIR)/core/log.o $(HL_LOGLIB) $(HL_OS)
	$(CC) $(HL_LDFLAGS) $^ -o $@

# --- run ---------------------------------------------------------------------------

# Each program prints TAP; the stream is renumbered into one plan.  A program
# that dies (sanitizer report, signal, hang past 120 s) without reporting a
# failure itself gets a "not ok" line of its own with the tail of its output.
host-lib-test: $(HL_BINS)
	@n=0; failed=0; \
	for src in $(HL_CORE_SRC) $(HL_KERN_SRC); do \
		n=$$((n + 1)); obj=$(HL_DIR)/kcheck/$$(basename $$src .c).o; \
		mkdir -p $(HL_DIR)/kcheck; \
		case $$src in core/*) extra="$(CC) $(HL_CORE_KFLAGS) -c $$src -o $$obj.core &&";; *) extra="";; esac; \
		if eval "$$extra" $(CC) $(HL_KFLAGS) -c $$src -o $$obj > $$obj.log 2>&1; then \
			echo "ok $$n - kernel_flags_compile $$src"; \
		else \
			echo "not ok $$n - kernel_flags_compile $$src"; sed 's/^/# /' $$obj.log | head -20; \
			failed=$$((failed + 1)); \
		fi; \
	done; \
	for t in $(HL_BINS); do \
		name=$$(basename $$t); out=$$t.out; \
		if timeout 120 $$t > $$out 2>&1; then rc=0; else rc=$$?; fi; \
		awk -v base=$$n -v suite=$$name -v cnt=$$t.count -v nf=$$t.nfail ' \
			/^(not )?ok [0-9]+/ { \
				k++; bad = ($$1 == "not"); f += bad; \
				sub(/^(not )?ok [0-9]+ *(- *)?/, ""); \
				printf "%sok %d - %s.%s\n", bad ? "not " : "", base + k, suite, $$0; next } \
			/^1\.\.[0-9]+/ { next } \
			/^#/ { print; next } \
			{ print "# " $$0 } \
			END { print k + 0 > cnt; print f + 0 > nf }' $$out; \
		k=$$(cat $$t.count); nf=$$(cat $$t.nfail); n=$$((n + k)); failed=$$((failed + nf)); \
		if [ $$rc -ne 0 ] && [ $$nf -eq 0 ]; then \
			n=$$((n + 1)); failed=$$((failed + 1)); \
			echo "not ok $$n - $$name exited with status $$rc"; tail -n 30 $$out | sed 's/^/# /'; \
		fi; \
	done; \
	echo "1..$$n"; \
	echo "# host-lib: $$((n - failed)) passed, $$failed failed"; \
	[ $$failed -eq 0 ]

# --- docs/params.md ----------------------------------------------------------------
# The boot-parameter table of the kernel as built, printed by the kernel
# itself: the shell_run= parameter makes the shell run `help params md` and
# power off.  Needs QEMU (make run installs it).
.PHONY: params-md
params-md: $(BUILD)/nmikit.elf
	@{ printf '# Boot parameters\n\n'; \
	   printf 'Generated by `make params-md` from the parameter table of the kernel as built\n'; \
	   printf '(each NK_PARAM_* next to its variable).  Set them on the kernel command line as\n'; \
	   printf '`name=value` (a bare `name` turns a bool on), or at run time with the shell'"'"'s\n'; \
	   printf '`param NAME VALUE`; `help params` shows the same table with current values.\n\n'; \
	   timeout 60 qemu-system-x86_64 -machine pc -m 256M -display none -serial stdio \
		-no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 -kernel $< \
		-append 'shell_run="help params md;poweroff"' < /dev/null | tr -d '\r' | grep '^|'; \
	 } > docs/params.md.tmp || true
	@if grep -q '^| `' docs/params.md.tmp; then mv docs/params.md.tmp docs/params.md; \
		echo "wrote docs/params.md"; \
	else rm -f docs/params.md.tmp; echo "params-md: the kernel printed no table" >&2; exit 1; fi
