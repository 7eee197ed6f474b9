# nmikit: the top-level build.
#   make            build build/nmikit.elf
#   make run        boot it in QEMU with 4 CPUs, into the shell
#   make test       host tests, model checks and every QEMU scenario
#   make bench      exact (icount) benchmarks into build/bench.json
#   make debug      QEMU halted with a gdb stub, and gdb attached
#   make iso        a GRUB (Multiboot2) bootable ISO of the same image
# Area fragments in mk/*.mk add test suites (TEST_SUITES) and Debian
# packages they need (DEPS).

BUILD   ?= build
CC      := gcc
LD      := ld
NM      := nm
OBJCOPY := objcopy

DEPS := gcc make binutils python3 grub-pc-bin grub-common xorriso mtools
RUN_DEPS := qemu-system-x86
TEST_SUITES :=

WARN       := -Wall -Wextra -Werror
KCOMMON    := -ffreestanding -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables \
              -fcf-protection=none -mno-red-zone -mgeneral-regs-only -fno-omit-frame-pointer \
              -mcmodel=small -O2 -g $(WARN) -MMD -MP
KINCLUDES  := -Iinclude -Ikernel/include -Iarch/x86_64/include -I$(BUILD)/gen
# core/ is portable C11 and sees only include/ (see docs/DEVELOPING.md).
# The kernel's hot os.h hooks reach core/ inline (docs/porting.md): -iquote
# lets only that quoted include (and its asm-offsets.h) see these folders.
CORE_OS_INLINE := -DNMIKIT_OS_INLINE_HEADER='"arch/os_inline.h"' -iquote arch/x86_64/include -iquote $(BUILD)/gen
CORE_CFLAGS := -std=c11 $(KCOMMON) -Iinclude -DNMIKIT_OS_CYCLES_TSC $(CORE_OS_INLINE)
KCFLAGS     := -std=gnu11 $(KCOMMON) $(KINCLUDES)
ASFLAGS     := -D__ASSEMBLER__ $(KINCLUDES) -g -MMD -MP
LDFLAGS     := -nostdlib -static -z max-page-size=0x1000 -z noexecstack --no-warn-rwx-segments

# Optional debug build switches (see docs/nmi-entry.md): make NMI_SELF_IRET=1
ifeq ($(NMI_NO_NEST_CHECKS),1)
ASFLAGS += -DNMI_NO_NEST_CHECKS=1
endif
ifeq ($(NMI_SELF_IRET),1)
ASFLAGS += -DNMI_SELF_IRET=1
KCFLAGS += -DNMI_SELF_IRET=1
endif

ARCH_C   := $(filter-out arch/x86_64/asm-offsets.c,$(wildcard arch/x86_64/*.c))
ARCH_S   := $(wildcard arch/x86_64/*.S)
KERN_C   := $(wildcard kernel/*.c)
CORE_C   := $(wildcard core/*.c)

OBJS := $(ARCH_S:%.S=$(BUILD)/%.o) $(ARCH_C:%.c=$(BUILD)/%.o) \
        $(KERN_C:%.c=$(BUILD)/%.o) $(CORE_C:%.c=$(BUILD)/%.o)
KERNEL := $(BUILD)/nmikit.elf
LDSCRIPT := arch/x86_64/kernel.ld
OFFSETS := $(BUILD)/gen/asm-offsets.h

.PHONY: all run test debug iso bench clean deps test-deps scenarios
all: $(KERNEL)

include $(sort $(wildcard mk/*.mk))

$(BUILD)/core/%.o: core/%.c | $(OFFSETS)
	@mkdir -p $(@D)
	$(CC) $(CORE_CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.c | $(OFFSETS)
	@mkdir -p $(@D)
	$(CC) $(KCFLAGS) -c $< -o $@

$(BUILD)/%.o: %.S $(OFFSETS)
	@mkdir -p $(@D)
	$(CC) $(ASFLAGS) -c $< -o $@

# Structure offsets for assembly, generated from the C definitions.
$(OFFSETS): arch/x86_64/asm-offsets.c
	@mkdir -p $(@D) $(BUILD)/arch/x86_64
	$(CC) $(KCFLAGS) -S $< -o $(BUILD)/arch/x86_64/asm-offsets.s
	tools/gen-offsets < $(BUILD)/arch/x86_64/asm-offsets.s > $@.tmp && mv $@.tmp $@

# Two link passes: the first finds where every function lands, the second
# embeds that table.  .ksyms lives after all code, so code does not move.
# The same trick gives the list of nested-NMI boundaries (tools/gen-nmi-boundaries).
GEN_TABLES := tools/gen-ksyms tools/gen-nmi-boundaries
$(BUILD)/tables-empty.o: $(GEN_TABLES)
	@mkdir -p $(@D)
	{ tools/gen-ksyms < /dev/null; tools/gen-nmi-boundaries; } > $(BUILD)/tables-empty.S
	$(CC) $(ASFLAGS) -c $(BUILD)/tables-empty.S -o $@

$(KERNEL): $(OBJS) $(LDSCRIPT) $(BUILD)/tables-empty.o $(GEN_TABLES)
	$(LD) $(LDFLAGS) -T $(LDSCRIPT) -o $(BUILD)/nmikit.pass1.elf $(OBJS) $(BUILD)/tables-empty.o
	{ $(NM) -n --defined-only $(BUILD)/nmikit.pass1.elf | tools/gen-ksyms; \
	  tools/gen-nmi-boundaries $(BUILD)/nmikit.pass1.elf; } > $(BUILD)/tables.S
	$(CC) $(ASFLAGS) -c $(BUILD)/tables.S -o $(BUILD)/tables.o
	$(LD) $(LDFLAGS) -T $(LDSCRIPT) -o $@ $(OBJS) $(BUILD)/tables.o
	@{ $(NM) -n --defined-only $@ | tools/gen-ksyms; tools/gen-nmi-boundaries $@; } | cmp -s - $(BUILD)/tables.S || \
		{ echo "error: code moved between link passes; symbol table would lie" >&2; rm -f $@; exit 1; }

deps:
	@tools/bootstrap-deps $(DEPS) $(RUN_DEPS)

test-deps:
	@tools/bootstrap-deps $(DEPS) $(RUN_DEPS)

run: deps $(KERNEL)
	tools/nmikit-qemu --smp 4 $(if $(CMDLINE),--cmdline "$(CMDLINE)")

debug: deps $(KERNEL)
	tools/ensure-deps gdb
	tools/nmikit-qemu --smp 4 --gdb & sleep 1; gdb -q -x tools/gdbinit; kill %1 2>/dev/null || true

scenarios: $(KERNEL) $(BUILD)/nmikit-test.iso
	@tools/run-scenarios $(if $(FILTER),--filter '$(FILTER)')
TEST_SUITES += scenarios

test: test-deps
	@$(MAKE) -s all
	@tools/test-all $(TEST_SUITES)

# A GRUB rescue ISO that boots the same ELF through its Multiboot2 header.
# $(call make-iso,OUTPUT,KERNEL COMMAND LINE)
ISO_CMDLINE ?=
ISO_DEPS := grub-pc-bin grub-common xorriso mtools
define make-iso
	@tools/ensure-deps $(ISO_DEPS)
	@rm -rf $(1).d && mkdir -p $(1).d/boot/grub
	cp $(KERNEL) $(1).d/boot/nmikit.elf
	printf 'set timeout=0\nset default=0\nserial --unit=0 --speed=115200\nterminal_output serial\nmenuentry "nmikit" {\n  multiboot2 /boot/nmikit.elf %s\n  boot\n}\n' '$(2)' > $(1).d/boot/grub/grub.cfg
	grub-mkrescue -o $(1) $(1).d >$(1).log 2>&1 || { cat $(1).log; exit 1; }
endef
iso: $(BUILD)/nmikit.iso
$(BUILD)/nmikit.iso: $(KERNEL)
	$(call make-iso,$@,$(ISO_CMDLINE))
# The scenario boot.grub_iso boots this one (boot tests on its command line).
$(BUILD)/nmikit-test.iso: $(KERNEL)
	$(call make-iso,$@,test=boot.*)

compile_commands.json:
	@tools/gen-compile-commands "$(CC)" "$(CORE_CFLAGS)" "$(KCFLAGS)" "$(ASFLAGS)" > $@
	@echo "wrote $@"

clean:
	rm -rf $(BUILD) compile_commands.json

-include $(OBJS:.o=.d)
