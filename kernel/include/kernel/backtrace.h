/*
 * backtrace.h: symbolized frame-pointer backtraces for crash reports, the
 * embedded kernel symbol table they use (kernel/ksyms.c), and the table of
 * known stacks that bounds every frame the walker reads.
 *
 * Everything here is NMI-safe: no locks, no allocation, bounded time (at
 * most BACKTRACE_MAX_FRAMES frames, each checked before it is read).
 */
#ifndef KERNEL_BACKTRACE_H
#define KERNEL_BACKTRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A walk stops after this many frames. */
#define BACKTRACE_MAX_FRAMES	32

/*
 * The function containing `addr`: returns its name and sets *offset (addr
 * minus the symbol's start) and *size (distance to the next symbol), or
 * returns NULL when addr is outside the kernel's code.  Either out pointer
 * may be NULL.  NMI-safe: yes (binary search over a read-only table).
 */
const char *ksym_lookup(uint64_t addr, uint64_t *offset, uint64_t *size);

/*
 * Write "name+0xoff/0xsize" (or "0x<addr>" when unknown) into buf.  With
 * `return_address` true the symbol is looked up at addr - 1, so a call that
 * is the last instruction of a function is attributed to that function and
 * not to the next one.  Returns what nk_snprintf returns.  NMI-safe: yes.
 */
int ksym_format(char *buf, size_t size, uint64_t addr, bool return_address);

/* A stack the walker may read frames from. */
struct stack_info {
	uint64_t lo;		/* lowest usable byte */
	uint64_t hi;		/* one past the highest byte */
	const char *name;	/* "boot", "NMI", "#DB", "#MC", "#DF", "task", ... */
	int cpu;		/* owning CPU, or -1 */
};

/*
 * A lookup for stacks this file cannot know (the scheduler's task stacks):
 * fill *out and return true when addr lies inside one.  Must be NMI-safe.
 */
typedef bool (*stack_lookup_fn)(uint64_t addr, struct stack_info *out);
void backtrace_set_stack_lookup(stack_lookup_fn fn);

/*
 * Which known stack holds addr: the per-CPU stacks (boot, NMI, #DB, #MC,
 * #DF), then the registered lookup, then, as a last resort, the kernel's
 * .data/.bss (named "kernel data").  Guard pages are never inside a stack.
 */
bool stack_lookup(uint64_t addr, struct stack_info *out);

/*
 * Whether addr lies in the unmapped guard page just below a known stack
 * (precisely: a per-CPU stack, or one the registered lookup knows); if so
 * *out describes the stack that the guard protects.
 */
bool stack_guard_lookup(uint64_t addr, struct stack_info *out);

/*
 * Print a backtrace to the log at `level` (NK_LOG_*): first `rip` (an exact address,
 * e.g. the faulting instruction), then the return addresses found by
 * walking the frame-pointer chain from `rbp`.  Each line reads
 * "  [<address>] function+0xoff/0xsize".  With `rsp` (0 if unknown), a
 * function that faulted before building its frame still gets its caller
 * shown: the word at rsp, printed as "[<address>] ? caller+..." when it
 * looks like a return address that the chain does not contain.
 */
void backtrace_print(int level, uint64_t rip, uint64_t rsp, uint64_t rbp);

/* The same for the code that calls this function. */
void backtrace_print_here(int level);

#endif
