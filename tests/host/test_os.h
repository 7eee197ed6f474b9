/*
 * The host unit tests' implementation of <nmikit/os.h>, and the controls the
 * tests use to drive it: simulated CPUs (a settable, per-thread current CPU),
 * a fake clock, a record of every NMI sent (delivered by calling nmi_entry()),
 * a reason port that keeps SERR/IOCHK asserted until acked, a captured log,
 * and an os_panic() that jumps back into the test.
 */
#ifndef TESTS_HOST_TEST_OS_H
#define TESTS_HOST_TEST_OS_H

#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nmikit/nmi.h>
#include <nmikit/os.h>

#define TOS_MAX_SENT	1024

/* The CPU the calling thread currently pretends to be. */
extern _Thread_local unsigned tos_cpu;

/* Start from scratch with `ncpus` CPUs, all online, clock at 0. */
void tos_reset(unsigned ncpus);
void tos_set_online(unsigned cpu, bool online);

/* Fake clock. */
void tos_set_time(uint64_t ns);
void tos_advance(uint64_t ns);
uint64_t tos_time(void);

/* NMIs sent through os_send_nmi*(): who sent, to whom, delivered yet. */
struct tos_nmi {
	unsigned from, to;
	bool self;		/* sent with os_send_nmi_self() */
	bool delivered;
};
unsigned tos_sent_count(void);
const struct tos_nmi *tos_sent(unsigned i);
/* Undelivered NMIs addressed to `cpu`. */
unsigned tos_pending_to(unsigned cpu);
/* Forget the undelivered NMIs to `cpu` (the latch dropped them). */
void tos_drop_pending(unsigned cpu);
/*
 * Deliver the oldest undelivered NMI to `cpu`: run nmi_entry() as that CPU
 * with interrupted IP `ip`.  Returns false when none was pending.  A CPU that
 * parks (shootdown) comes back here through a jump out of its park loop.
 */
bool tos_deliver(unsigned cpu, uint64_t ip);
/* Run an NMI on `cpu` as if one had arrived (nothing needs to be sent). */
void tos_nmi(unsigned cpu, uint64_t ip);
/* Same with a caller-built frame. */
void tos_nmi_frame(unsigned cpu, struct nmi_frame *f);

/* `cpu`'s NMI counters (a failed read fails the running test). */
struct nmi_cpu_stats tos_nmi_stats(unsigned cpu);

/* Reason port. */
void tos_reason_assert(unsigned bits);
unsigned tos_reason_asserted(void);
unsigned tos_reason_reads(void);
unsigned tos_reason_acks(void);		/* number of os_nmi_reason_ack() calls */
unsigned tos_reason_acked_bits(void);	/* OR of every acked bit */

/* Self-IPIs raised by os_irq_work_raise(), per CPU. */
unsigned tos_irq_work_raised(unsigned cpu);
/* Interrupts disabled on `cpu` (os_local_irq_save nesting)? */
bool tos_irqs_off(unsigned cpu);

/* Called on every os_cpu_relax() (after the count is bumped). */
extern void (*tos_relax_hook)(void);
unsigned long tos_relax_calls(void);

/* Log and console capture. */
unsigned tos_log_lines(void);
bool tos_log_has(const char *needle);
unsigned tos_log_count(const char *needle);
const char *tos_log_text(void);
void tos_log_clear(void);

/*
 * Panic capture: TOS_PANICS(stmt) runs stmt and evaluates to true if it
 * called os_panic(), whose message is then in tos_panic_msg.
 */
extern _Thread_local jmp_buf *tos_panic_jb;
extern char tos_panic_msg[256];
#define TOS_PANICS(stmt) __extension__ ({				\
	jmp_buf tos_jb__;						\
	jmp_buf *volatile tos_saved__ = tos_panic_jb;			\
	volatile bool tos_panicked__ = false;				\
	if (setjmp(tos_jb__) == 0) {					\
		tos_panic_jb = &tos_jb__;				\
		stmt;							\
	} else {							\
		tos_panicked__ = true;					\
	}								\
	tos_panic_jb = tos_saved__;					\
	tos_panicked__;							\
})

#endif
