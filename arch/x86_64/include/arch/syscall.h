/*
 * syscall.h: nmikit's system-call interface, both sides of it.
 *
 * Kernel side: the SYSCALL/SYSRET set-up (MSRs), the entry's C dispatcher,
 * user-pointer checks, and the hook that tests plug into the `nmikit_test`
 * system call.
 *
 * User side: USER_TEXT / USER_DATA put code and data in the sections that
 * are mapped user-accessible (.utext / .udata), and the sys_* wrappers below
 * make system calls from ring-3 code.  The calling convention is Linux's:
 * number in RAX, arguments in RDI RSI RDX R10 R8 R9, result in RAX (negative
 * = -error); SYSCALL itself clobbers RCX and R11.
 */
#ifndef ARCH_SYSCALL_H
#define ARCH_SYSCALL_H

/* System call numbers.  0 is no call, so a zeroed RAX gets -SYSCALL_ENOSYS. */
#define SYS_WRITE	1	/* (buf, len) -> len; console output */
#define SYS_YIELD	2	/* () -> 0 */
#define SYS_EXIT	3	/* (code) does not return */
#define SYS_SLEEP	4	/* (ms) -> 0 */
#define SYS_GETCPU	5	/* () -> CPU number */
#define SYS_GETPID	6	/* () -> task id */
#define SYS_NMIKIT_TEST	7	/* (op, a, b, c) -> whatever the test hook says */
#define SYS_NR		8

/* Error numbers, returned negated (Linux's values). */
#define SYSCALL_EFAULT	14	/* a pointer argument is not user memory */
#define SYSCALL_EINVAL	22
#define SYSCALL_ENOSYS	38	/* no such system call (or no test hook) */

#define SYSCALL_WRITE_MAX	4096	/* longest write() accepted */

/* The lowest non-canonical address (4-level paging: 48-bit addresses). */
#define USER_ADDR_END	0x0000800000000000ull

/*
 * Code in .utext may call only other .utext code and the sys_* wrappers:
 * no kernel functions, no string literals (they land in .rodata; put
 * strings in USER_DATA arrays), no switch jump tables or compiler-made
 * memset/memcpy calls (the attribute turns both off).
 */
#define USER_TEXT	__attribute__((section(".utext"), noinline, \
				       optimize("no-jump-tables", "no-tree-loop-distribute-patterns")))
#define USER_DATA	__attribute__((section(".udata")))

#ifndef __ASSEMBLER__
#include <stdbool.h>
#include <stdint.h>

struct regs;

static inline bool addr_is_canonical(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

/* --- kernel side ---------------------------------------------------------- */

/* SYSCALL MSRs and EFER.SCE on the calling CPU; every CPU, at bring-up. */
void syscall_init_cpu(void);

/*
 * The C half of the SYSCALL entry (syscall_entry.S), interrupts off on entry and on
 * return.  Returns true when the return to ring 3 may use SYSRET, false for
 * IRETQ (docs/scheduler.md, "Returning to ring 3").
 */
bool syscall_handler(struct regs *r);

/*
 * Make *r fit to be IRETQ'd or SYSRET'd to ring 3: user CS/SS, RFLAGS with
 * only the bits a user may own (IF on).  Returns false when RIP is
 * non-canonical: no return instruction can take it there without faulting
 * in ring 0, so the caller must not return.
 */
bool user_regs_sanitize(struct regs *r);
uint64_t user_rflags_sanitize(uint64_t rflags);

/*
 * Whether [addr, addr+len) is mapped user-accessible (and writable when
 * `write`), checked by walking the page tables, which never change after
 * boot: a range found good stays good.
 */
bool user_range_ok(uint64_t addr, uint64_t len, bool write);

/*
 * Copy between kernel and user memory.  Validate with user_range_ok() first;
 * these only open the SMAP window (when SMAP is on) around the copy.
 */
void copy_from_user(void *dst, const void *user_src, uint64_t len);
void copy_to_user(void *user_dst, const void *src, uint64_t len);

/*
 * The `nmikit_test` system call calls this hook with the caller's registers
 * (RDI = op, RSI/RDX/R10 = arguments).  It returns the value for RAX, and may
 * change any register in *r, RIP and RFLAGS included: the return path checks
 * the result (tests of the SYSRET/IRETQ choice rely on that).  NULL (the
 * default) makes the call fail with -SYSCALL_ENOSYS.
 */
typedef long syscall_test_fn(struct regs *r);
void syscall_set_test_hook(syscall_test_fn *fn);

/* How ring-3 returns left the kernel, per CPU (for tests and `ps`). */
struct syscall_stats {
	uint64_t calls;
	uint64_t sysret;		/* returns through SYSRET */
	uint64_t iret;			/* returns through IRETQ */
	uint64_t refused;		/* returns refused: non-canonical RIP */
};
void syscall_get_stats(unsigned int cpu, struct syscall_stats *out);

/* Assembly entry points (syscall_entry.S). */
void syscall_entry(void);
/* Leave for ring 3 through IRETQ from the struct regs at %rsp (jump, not call). */
void user_return_iret(void);
/* In .utext: where a user entry function returns to; makes SYS_EXIT with RAX. */
void user_return_to_exit(void);

/* --- user side ------------------------------------------------------------ */

/*
 * Ring-3 system call wrappers.  always_inline: a wrapper left out of line
 * would sit in .text, which ring 3 cannot execute.
 */
#define USER_INLINE	static inline __attribute__((always_inline))

USER_INLINE long user_syscall(long nr, long a0, long a1, long a2, long a3)
{
	register long r10 __asm__("r10") = a3;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

USER_INLINE long sys_write(const void *buf, unsigned long len)
{
	return user_syscall(SYS_WRITE, (long)buf, (long)len, 0, 0);
}
USER_INLINE long sys_yield(void) { return user_syscall(SYS_YIELD, 0, 0, 0, 0); }
USER_INLINE long sys_sleep(unsigned long ms) { return user_syscall(SYS_SLEEP, (long)ms, 0, 0, 0); }
USER_INLINE long sys_getcpu(void) { return user_syscall(SYS_GETCPU, 0, 0, 0, 0); }
USER_INLINE long sys_getpid(void) { return user_syscall(SYS_GETPID, 0, 0, 0, 0); }
USER_INLINE long sys_nmikit_test(long op, long a, long b, long c)
{
	return user_syscall(SYS_NMIKIT_TEST, op, a, b, c);
}
USER_INLINE __attribute__((noreturn)) void sys_exit(long code)
{
	user_syscall(SYS_EXIT, code, 0, 0, 0);
	__builtin_unreachable();
}

#endif /* __ASSEMBLER__ */

#endif
