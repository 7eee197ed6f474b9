/*
 * user_programs.h: the ring-3 programs in kernel/user_programs.c and the
 * user-accessible (.udata) data they share with the kernel tests that run
 * them.  Each program is a user_fn: it gets one argument in RDI and its
 * return value is its exit code.
 */
#ifndef KERNEL_USER_PROGRAMS_H
#define KERNEL_USER_PROGRAMS_H

#include <stdint.h>

/* user_prog_syscalls(&user_syscall_out): each call's result. */
struct user_syscall_out {
	long write;		/* write(message) */
	long write_empty;	/* write(message, 0) */
	long yield;
	long sleep;		/* sleep(USER_SLEEP_MS) */
	long getcpu;
	long getpid;
	long nosys;		/* system call number 0 */
	long badnr;		/* a number past the last one */
};
#define USER_SLEEP_MS	30
extern struct user_syscall_out user_syscall_out;
extern unsigned long user_hello_len;	/* bytes user_prog_syscalls writes */
/* Returns 2 * arg + 1 after the calls above. */
long user_prog_syscalls(long arg);

/* user_prog_spin(&user_spin): counts in ring 3, without any system call, until stop. */
struct user_spin {
	volatile uint64_t count;
	volatile uint64_t stop;
};
extern struct user_spin user_spin;
#define USER_SPIN_EXIT	5
long user_prog_spin(long arg);

/* Each of these raises one exception in ring 3. */
long user_prog_ud2(long arg);		/* #UD */
long user_prog_hlt(long arg);		/* #GP: a privileged instruction */
long user_prog_divide(long arg);	/* #DE */
/* Writes to the kernel address `arg`: #PF. */
long user_prog_poke(long arg);
/* Reads %gs:0: a #PF at the GS base, which must be the user's (0). */
long user_prog_read_gs(long arg);

/* user_prog_bad_pointers(&user_bad_ptr): write() with pointers it must refuse. */
struct user_bad_ptr {
	uint64_t kernel_addr;		/* in: some mapped kernel-only address */
	uint64_t guard_addr;		/* in: a user stack guard page */
	long r_kernel, r_null, r_guard, r_noncanonical, r_wrap, r_too_long;
};
extern struct user_bad_ptr user_bad_ptr;
#define USER_BAD_PTR_EXIT	9
long user_prog_bad_pointers(long arg);

/*
 * Single-steps itself (TF) across a SYSCALL, then clears TF and returns 0;
 * needs a fault handler that lets each #DB go.  user_step_after_syscall is
 * the instruction right after its SYSCALL.
 */
long user_prog_single_step(long arg);
extern char user_step_after_syscall[];

/* Makes the nmikit_test system call with op = arg, then returns USER_TEST_CALL_EXIT. */
#define USER_TEST_CALL_EXIT	1
long user_prog_test_call(long arg);
/* Exits with `code` (a landing place for redirected returns). */
long user_exit_with(long code);

/*
 * Entered with any register state (task_create_user_regs): stores RAX..R15
 * and RSP in user_regs_seen[] (order below) without touching the stack,
 * makes the nmikit_test system call with RDI = USER_REGS_SEEN_OP, then exits
 * with code 0.
 */
enum {
	URS_RAX, URS_RBX, URS_RCX, URS_RDX, URS_RSI, URS_RDI, URS_RBP, URS_RSP,
	URS_R8, URS_R9, URS_R10, URS_R11, URS_R12, URS_R13, URS_R14, URS_R15,
	URS_COUNT
};
#define USER_REGS_SEEN_OP	0x5eed
extern uint64_t user_regs_seen[URS_COUNT];
void user_record_regs(void);

#endif
