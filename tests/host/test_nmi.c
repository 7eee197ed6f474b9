/*
 * Host unit tests of core/nmi.c: registration and its errors, every branch of
 * the dispatch (local chain, external reasons, back-to-back, unknown policy),
 * the nmi_entry() state machine, statistics, the long-handler warning,
 * unregister's wait, the emergency slot and panic shootdown.
 */
#include "tap.h"
#include "test_os.h"

#include <nmikit/nmi.h>

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MS	1000000ull
#define SEC	(1000ull * MS)

/* --- recording handlers -------------------------------------------------- */

static char order[64];		/* handler letters in call order */
static unsigned norder;
static int ret_a, ret_b, ret_c;
static unsigned calls_a, calls_b, calls_c;

static void note(char c)
{
	if (norder + 1 < sizeof(order))
		order[norder++] = c;
	order[norder] = '\0';
}

static int h_a(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	calls_a++;
	note('a');
	return ret_a;
}

static int h_b(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	calls_b++;
	note('b');
	return ret_b;
}

static int h_c(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	calls_c++;
	note('c');
	return ret_c;
}

static struct nmi_handler_info handler(const char *name)
{
	struct nmi_handler_info h;

	for (unsigned i = 0; nmi_get_handler_info(i, &h) == NMI_OK; i++)
		if (strcmp(h.name, name) == 0)
			return h;
	tap_fail(__FILE__, __LINE__, name);
	memset(&h, 0, sizeof(h));
	return h;
}

/* --- chains -------------------------------------------------------------- */

static void every_handler_called_and_claims_summed(void)
{
	ret_a = 1;
	ret_b = 0;
	ret_c = 2;
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "b", h_b, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "c", h_c, 0), NMI_OK);
	tos_nmi(0, 0x1000);
	CHECK_STR(order, "abc");
	CHECK_EQ(tos_nmi_stats(0).normal, 1);
	CHECK_EQ(tos_nmi_stats(0).unknown, 0);
	CHECK_EQ(tos_nmi_stats(0).entries, 1);
	CHECK_EQ(handler("a").claimed, 1);
	CHECK_EQ(handler("b").claimed, 0);
	CHECK_EQ(handler("c").claimed, 2);
	CHECK_EQ(handler("b").calls, 1);
	/* The sum (3 > 1) arms the back-to-back rule for the same IP. */
	ret_a = ret_c = 0;
	tos_nmi(0, 0x1000);
	CHECK_EQ(tos_nmi_stats(0).swallowed, 1);
	CHECK_EQ(tos_nmi_stats(0).unknown, 0);
}

static void first_flag_puts_handler_at_chain_head(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "b", h_b, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "c", h_c, NMI_FLAG_FIRST), NMI_OK);
	ret_a = 1;
	tos_nmi(0, 0x1000);
	CHECK_STR(order, "cab");
}

static void register_rejects_bad_arguments_with_documented_errors(void)
{
	char longname[NMI_NAME_MAX + 1];

	memset(longname, 'x', NMI_NAME_MAX);
	longname[NMI_NAME_MAX] = '\0';
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", NULL, 0), NMI_EINVAL);
	CHECK_EQ(nmi_register(NMI_LOCAL, NULL, h_a, 0), NMI_EINVAL);
	CHECK_EQ(nmi_register(NMI_LOCAL, "", h_a, 0), NMI_EINVAL);
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0x80), NMI_EINVAL);
	CHECK_EQ(nmi_register(NMI_TYPE_COUNT, "a", h_a, 0), NMI_ETYPE);
	CHECK_EQ(nmi_register(1000, "a", h_a, 0), NMI_ETYPE);
	CHECK_EQ(nmi_register(NMI_LOCAL, longname, h_a, 0), NMI_ENAMETOOLONG);
	longname[NMI_NAME_MAX - 1] = '\0';
	CHECK_EQ(nmi_register(NMI_LOCAL, longname, h_a, 0), NMI_OK);

	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_b, 0), NMI_EEXIST);
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_b, NMI_FLAG_FIRST), NMI_EEXIST);
	/* Names are per chain. */
	CHECK_EQ(nmi_register(NMI_UNKNOWN, "a", h_a, 0), NMI_OK);

	CHECK_EQ(nmi_register(NMI_SERR, "serr", h_a, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_SERR, "serr2", h_b, 0), NMI_EBUSY);
	CHECK_EQ(nmi_register(NMI_IO_CHECK, "io", h_a, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_IO_CHECK, "io2", h_b, NMI_FLAG_FIRST), NMI_EBUSY);
	/* Once the SERR owner is gone another may register. */
	CHECK_EQ(nmi_unregister(NMI_SERR, "serr"), NMI_OK);
	CHECK_EQ(nmi_register(NMI_SERR, "serr2", h_b, 0), NMI_OK);
}

static void register_fails_when_table_full_and_slot_is_reused(void)
{
	char name[16];
	unsigned i;

	for (i = 0; i < NMI_MAX_HANDLERS; i++) {
		snprintf(name, sizeof(name), "h%u", i);
		CHECK_EQ(nmi_register(NMI_LOCAL, name, h_a, 0), NMI_OK);
	}
	CHECK_EQ(nmi_register(NMI_LOCAL, "one-too-many", h_a, 0), NMI_ENOSPC);
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "h7"), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "one-too-many", h_b, 0), NMI_OK);
	tos_nmi(0, 0x1000);
	CHECK_EQ(calls_a, NMI_MAX_HANDLERS - 1);
	CHECK_EQ(calls_b, 1);
	/* The reused slot starts with fresh statistics. */
	CHECK_EQ(handler("one-too-many").calls, 1);
}

static void unregister_rejects_unknown_names_and_stops_calls(void)
{
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "nobody"), NMI_ENOENT);
	CHECK_EQ(nmi_unregister(NMI_TYPE_COUNT, "a"), NMI_ETYPE);
	CHECK_EQ(nmi_unregister(NMI_LOCAL, NULL), NMI_EINVAL);
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "b", h_b, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "c", h_c, 0), NMI_OK);
	/* Registered on LOCAL, so not found on UNKNOWN. */
	CHECK_EQ(nmi_unregister(NMI_UNKNOWN, "a"), NMI_ENOENT);
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "b"), NMI_OK);
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "b"), NMI_ENOENT);
	ret_a = 1;
	tos_nmi(0, 0x1000);
	CHECK_STR(order, "ac");
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "a"), NMI_OK);
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "c"), NMI_OK);
	norder = 0;
	order[0] = '\0';
	tos_nmi(0, 0x2000);
	CHECK_STR(order, "");
	/* Same name can come back, at the tail. */
	CHECK_EQ(nmi_register(NMI_LOCAL, "b", h_b, 0), NMI_OK);
	tos_nmi(0, 0x3000);
	CHECK_STR(order, "b");
}

static int in_nmi_register_err, in_nmi_unregister_err;
static bool in_nmi_seen;

static int h_registers_from_nmi(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	in_nmi_seen = nmi_in_nmi();
	in_nmi_register_err = nmi_register(NMI_LOCAL, "late", h_b, 0);
	in_nmi_unregister_err = nmi_unregister(NMI_LOCAL, "a");
	return 1;
}

static void register_and_unregister_refused_in_nmi_context(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "reg", h_registers_from_nmi, 0), NMI_OK);
	CHECK(!nmi_in_nmi());
	tos_nmi(0, 0x1000);
	CHECK(in_nmi_seen);
	CHECK_EQ(in_nmi_register_err, NMI_EINNMI);
	CHECK_EQ(in_nmi_unregister_err, NMI_EINNMI);
	CHECK(!nmi_in_nmi());
	/* Nothing changed: "a" still there, "late" absent. */
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "late"), NMI_ENOENT);
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "a"), NMI_OK);
}

static void strerror_describes_every_error(void)
{
	const char *seen[16];
	int n = 0;

	for (int e = NMI_OK; e >= NMI_ERANGE; e--) {
		const char *s = nmi_strerror(e);

		CHECK(s != NULL);
		CHECK(strcmp(s, "unknown error") != 0);
		for (int i = 0; i < n; i++)
			CHECK(strcmp(seen[i], s) != 0);
		seen[n++] = s;
	}
	CHECK_STR(nmi_strerror(NMI_ERANGE - 1), "unknown error");
	CHECK_STR(nmi_strerror(5), "unknown error");
	CHECK_STR(nmi_type_name(NMI_LOCAL), "LOCAL");
	CHECK_STR(nmi_type_name(NMI_IO_CHECK), "IO_CHECK");
	CHECK_STR(nmi_type_name(99), "?");
}

/* --- unknown NMIs ---------------------------------------------------------- */

static void unknown_nmi_warns_rate_limited(void)
{
	tos_nmi(1, 0x1000);
	CHECK_EQ(tos_nmi_stats(1).unknown, 1);
	CHECK(tos_log_has("Uhhuh. NMI received for unknown reason 00 on CPU 1."));
	CHECK(tos_log_has("Dazed and confused, but trying to continue"));
	tos_nmi(1, 0x2000);
	tos_nmi(2, 0x3000);
	CHECK_EQ(tos_nmi_stats(1).unknown, 2);
	CHECK_EQ(tos_nmi_stats(2).unknown, 1);
	CHECK_EQ(tos_log_count("Uhhuh."), 1);
	tos_advance(6 * SEC);
	tos_nmi(2, 0x4000);
	CHECK_EQ(tos_log_count("Uhhuh."), 2);
	CHECK(tos_log_has("unknown reason 00 on CPU 2."));
}

static void unknown_nmi_panics_when_unknown_nmi_panic_set(void)
{
	unknown_nmi_panic = true;
	CHECK(TOS_PANICS(tos_nmi(3, 0x1000)));
	CHECK_STR(tos_panic_msg, "Uhhuh. NMI received for unknown reason 00 on CPU 3.");
	CHECK_EQ(tos_nmi_stats(3).unknown, 1);
}

static int h_claim_one(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	calls_c++;
	return 1;
}

static void unknown_chain_claim_suppresses_policy(void)
{
	unknown_nmi_panic = true;
	CHECK_EQ(nmi_register(NMI_UNKNOWN, "debugger", h_claim_one, 0), NMI_OK);
	CHECK(!TOS_PANICS(tos_nmi(0, 0x1000)));
	CHECK_EQ(calls_c, 1);
	CHECK_EQ(tos_nmi_stats(0).unknown, 1);
	CHECK(!tos_log_has("Uhhuh"));
}

/* --- back-to-back ---------------------------------------------------------- */

/*
 * Handler "a" claims `first_claims` events in an NMI on CPU 0 at 0x1000; then
 * an NMI on `cpu` at `ip` that nothing claims.
 */
static void claimed_then_empty_nmi(int first_claims, unsigned cpu, uint64_t ip)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0), NMI_OK);
	ret_a = first_claims;
	tos_nmi(0, 0x1000);
	ret_a = 0;
	tos_nmi(cpu, ip);
}

static void back_to_back_nmi_swallowed_after_multi_claim(void)
{
	claimed_then_empty_nmi(2, 0, 0x1000);
	CHECK_EQ(tos_nmi_stats(0).swallowed, 1);
	CHECK_EQ(tos_nmi_stats(0).unknown, 0);
	CHECK(!tos_log_has("Uhhuh"));
	/* Only the one latched NMI is swallowed, not a third. */
	tos_nmi(0, 0x1000);
	CHECK_EQ(tos_nmi_stats(0).swallowed, 1);
	CHECK_EQ(tos_nmi_stats(0).unknown, 1);
}

static void back_to_back_not_swallowed_when_ip_differs(void)
{
	claimed_then_empty_nmi(2, 0, 0x1004);
	CHECK_EQ(tos_nmi_stats(0).swallowed, 0);
	CHECK_EQ(tos_nmi_stats(0).unknown, 1);
}

static void back_to_back_not_swallowed_when_previous_claimed_one(void)
{
	claimed_then_empty_nmi(1, 0, 0x1000);
	CHECK_EQ(tos_nmi_stats(0).swallowed, 0);
	CHECK_EQ(tos_nmi_stats(0).unknown, 1);
}

static void back_to_back_state_is_per_cpu(void)
{
	claimed_then_empty_nmi(2, 1, 0x1000);
	CHECK_EQ(tos_nmi_stats(1).swallowed, 0);
	CHECK_EQ(tos_nmi_stats(1).unknown, 1);
}

/* --- external reasons ------------------------------------------------------ */

static unsigned serr_calls, iochk_calls;

static int h_serr(unsigned type, struct nmi_frame *f)
{
	(void)f;
	CHECK_EQ(type, NMI_SERR);
	/* The source is still asserted while its handler runs. */
	CHECK(tos_reason_asserted() & OS_NMI_REASON_SERR);
	serr_calls++;
	return 1;
}

static int h_iochk(unsigned type, struct nmi_frame *f)
{
	(void)f;
	CHECK_EQ(type, NMI_IO_CHECK);
	iochk_calls++;
	return 1;
}

static void external_serr_and_iochk_handled_acked_and_rearmed(void)
{
	CHECK_EQ(nmi_register(NMI_SERR, "pci", h_serr, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_IO_CHECK, "isa", h_iochk, 0), NMI_OK);
	tos_reason_assert(OS_NMI_REASON_SERR | OS_NMI_REASON_IOCHK);
	tos_nmi(0, 0x1000);
	CHECK_EQ(serr_calls, 1);
	CHECK_EQ(iochk_calls, 1);
	CHECK_EQ(tos_reason_acked_bits(), OS_NMI_REASON_SERR | OS_NMI_REASON_IOCHK);
	CHECK_EQ(tos_reason_asserted(), 0);
	CHECK_EQ(tos_nmi_stats(0).external, 1);
	CHECK_EQ(tos_nmi_stats(0).unknown, 0);
	/* Re-armed: the next event is seen again. */
	tos_reason_assert(OS_NMI_REASON_SERR);
	tos_nmi(0, 0x2000);
	CHECK_EQ(serr_calls, 2);
	CHECK_EQ(iochk_calls, 1);
	CHECK_EQ(tos_nmi_stats(0).external, 2);
}

static void external_reason_without_handler_is_cleared_with_warning(void)
{
	tos_reason_assert(OS_NMI_REASON_SERR);
	tos_nmi(0, 0x1000);
	CHECK(tos_log_has("system error (SERR) on CPU 0"));
	CHECK_EQ(tos_reason_asserted(), 0);
	CHECK_EQ(tos_nmi_stats(0).external, 1);
	CHECK_EQ(tos_nmi_stats(0).unknown, 0);
	tos_reason_assert(OS_NMI_REASON_IOCHK);
	tos_advance(6 * SEC);
	tos_nmi(0, 0x1000);
	CHECK(tos_log_has("I/O channel check (IOCHK) on CPU 0"));
	CHECK_EQ(tos_reason_asserted(), 0);
}

static void external_reasons_not_read_when_local_chain_claims(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0), NMI_OK);
	ret_a = 1;
	tos_reason_assert(OS_NMI_REASON_SERR);
	tos_nmi(0, 0x1000);
	CHECK_EQ(tos_reason_reads(), 0);
	CHECK_EQ(tos_reason_asserted(), OS_NMI_REASON_SERR);
}

static void external_reasons_read_only_on_owner_cpu(void)
{
	CHECK_EQ(nmi_register(NMI_SERR, "pci", h_serr, 0), NMI_OK);
	CHECK_EQ(nmi_external_owner(), 0);
	tos_reason_assert(OS_NMI_REASON_SERR);
	tos_nmi(1, 0x1000);
	CHECK_EQ(tos_reason_reads(), 0);
	CHECK_EQ(serr_calls, 0);
	CHECK_EQ(tos_nmi_stats(1).unknown, 1);
	CHECK_EQ(tos_reason_asserted(), OS_NMI_REASON_SERR);

	CHECK_EQ(nmi_set_external_owner(1), NMI_OK);
	CHECK_EQ(nmi_external_owner(), 1);
	tos_nmi(1, 0x2000);
	CHECK_EQ(serr_calls, 1);
	CHECK_EQ(tos_nmi_stats(1).external, 1);
	CHECK_EQ(tos_reason_asserted(), 0);
	/* The old owner no longer looks. */
	tos_reason_assert(OS_NMI_REASON_SERR);
	tos_nmi(0, 0x3000);
	CHECK_EQ(serr_calls, 1);
	CHECK_EQ(tos_nmi_stats(0).unknown, 1);

	CHECK_EQ(nmi_set_external_owner(4), NMI_ERANGE);
	CHECK_EQ(nmi_set_external_owner(NMIKIT_MAX_CPUS), NMI_ERANGE);
	CHECK_EQ(nmi_external_owner(), 1);
}

static jmp_buf crash_jb;

static int h_serr_crashes(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	serr_calls++;
	/* The CPU dies here, holding the reason lock, never to return. */
	longjmp(crash_jb, 1);
}

static void reason_lock_held_by_crashing_cpu_does_not_deadlock(void)
{
	CHECK_EQ(nmi_register(NMI_SERR, "dies", h_serr_crashes, 0), NMI_OK);
	CHECK_EQ(nmi_set_external_owner(1), NMI_OK);
	tos_reason_assert(OS_NMI_REASON_SERR);
	if (setjmp(crash_jb) == 0)
		tos_nmi(1, 0x1000);
	tos_cpu = 0;
	CHECK_EQ(serr_calls, 1);

	/* CPU 0 takes over external NMIs; the lock is still held by CPU 1. */
	CHECK_EQ(nmi_set_external_owner(0), NMI_OK);
	tos_nmi(0, 0x2000);
	CHECK_EQ(serr_calls, 1);
	CHECK_EQ(tos_nmi_stats(0).reason_busy, 1);
	CHECK_EQ(tos_nmi_stats(0).unknown, 1);
	CHECK_EQ(tos_nmi_stats(0).external, 0);
	CHECK_EQ(tos_reason_reads(), 1);
	CHECK(!nmi_in_nmi());
	/* And again: every later NMI still completes. */
	tos_nmi(0, 0x3000);
	CHECK_EQ(tos_nmi_stats(0).reason_busy, 2);
	CHECK_EQ(tos_nmi_stats(0).entries, 2);
}

/* --- nmi_entry() state machine --------------------------------------------- */

static unsigned nested_to_inject;
static unsigned body_runs;
static uint64_t seq_inside;
static bool in_nmi_inside;

static int h_nests(unsigned type, struct nmi_frame *f)
{
	(void)type;
	body_runs++;
	seq_inside = nmi_seq(tos_cpu);
	in_nmi_inside = nmi_in_nmi();
	/* NMIs that got past the assembly checks land in nmi_entry() again. */
	for (; nested_to_inject; nested_to_inject--) {
		struct nmi_frame inner = *f;

		inner.ip = 0xdead;
		nmi_entry(&inner);
	}
	return 1;
}

static void nested_nmi_in_entry_is_latched_and_dispatch_restarts(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "nests", h_nests, 0), NMI_OK);
	nested_to_inject = 1;
	tos_nmi(0, 0x1000);
	CHECK_EQ(body_runs, 2);
	CHECK_EQ(tos_nmi_stats(0).latched, 1);
	CHECK_EQ(tos_nmi_stats(0).repeated, 1);
	CHECK_EQ(tos_nmi_stats(0).entries, 2);
	CHECK_EQ(tos_nmi_stats(0).normal, 2);
	CHECK(!nmi_in_nmi());
	/* One entry and one exit: +2 however many restarts. */
	CHECK_EQ(nmi_seq(0), 2);
}

static void two_nested_nmis_collapse_into_one_restart(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "nests", h_nests, 0), NMI_OK);
	nested_to_inject = 2;
	tos_nmi(0, 0x1000);
	CHECK_EQ(body_runs, 2);
	CHECK_EQ(tos_nmi_stats(0).latched, 2);
	CHECK_EQ(tos_nmi_stats(0).repeated, 1);
	CHECK(!nmi_in_nmi());
}

static void sequence_counter_odd_inside_nmi_even_outside(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "nests", h_nests, 0), NMI_OK);
	CHECK_EQ(nmi_seq(2), 0);
	tos_nmi(2, 0x1000);
	CHECK_EQ(seq_inside, 1);
	CHECK(in_nmi_inside);
	CHECK_EQ(nmi_seq(2), 2);
	tos_nmi(2, 0x1000);
	CHECK_EQ(seq_inside, 3);
	CHECK_EQ(nmi_seq(2), 4);
	CHECK_EQ(nmi_seq(0), 0);
	CHECK_EQ(nmi_seq(NMIKIT_MAX_CPUS), 0);
}

/*
 * The port's count of nested NMIs its entry caught (os_nmi_arch_nested()),
 * added when statistics are read.  This binary's strong definition replaces
 * core's weak default of 0; it reports 0 until a test sets it.
 */
static _Atomic uint64_t arch_nested[NMIKIT_MAX_CPUS];
static _Atomic unsigned arch_nested_reads;

uint64_t os_nmi_arch_nested(unsigned cpu)
{
	atomic_fetch_add(&arch_nested_reads, 1);
	return cpu < NMIKIT_MAX_CPUS ? atomic_load(&arch_nested[cpu]) : 0;
}

static void arch_entry_nested_count_read_with_the_stats_only(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0), NMI_OK);
	ret_a = 1;
	atomic_store(&arch_nested[1], 7);
	tos_nmi(1, 0x1000);
	tos_nmi(1, 0x1000);
	CHECK_EQ(atomic_load(&arch_nested_reads), 0);	/* never on the NMI path */
	CHECK_EQ(tos_nmi_stats(1).nested, 7);
	CHECK_EQ(atomic_load(&arch_nested_reads), 1);
	tos_cpu = 1;
	nmi_note_nested();		/* the core's own count adds to it */
	tos_cpu = 0;
	CHECK_EQ(tos_nmi_stats(1).nested, 8);
	CHECK_EQ(tos_nmi_stats(0).nested, 0);
}

static void user_mode_and_arch_nested_counted(void)
{
	struct nmi_frame f = { .ip = 0x400000, .sp = 0x7ffc0000, .from_user = true };

	tos_nmi_frame(1, &f);
	CHECK_EQ(tos_nmi_stats(1).from_user, 1);
	tos_cpu = 1;
	nmi_note_nested();
	nmi_note_nested();
	tos_cpu = 0;
	CHECK_EQ(tos_nmi_stats(1).nested, 2);
	CHECK_EQ(tos_nmi_stats(0).nested, 0);
	CHECK_EQ(tos_nmi_stats(0).from_user, 0);
	{
		struct nmi_cpu_stats s;

		CHECK_EQ(nmi_get_cpu_stats(NMIKIT_MAX_CPUS, &s), NMI_ERANGE);
	}
}

/* --- doorbells ------------------------------------------------------------ */

static unsigned bell_calls[NMI_DOORBELL_BITS];
static int bell_ret;
static int bell_rering = -1;	/* bit the bit-1 callback rings on its own CPU */

static int bell_cb(unsigned bit)
{
	bell_calls[bit]++;
	note((char)('0' + bit));
	return bell_ret;
}

static int bell0(unsigned type, struct nmi_frame *f) { (void)type; (void)f; return bell_cb(0); }
static int bell2(unsigned type, struct nmi_frame *f) { (void)type; (void)f; return bell_cb(2); }
static int bell5(unsigned type, struct nmi_frame *f) { (void)type; (void)f; return bell_cb(5); }

/*
 * Rings after the dispatch took the word, as a sender on another CPU
 * would that rings while this NMI runs: the ring must survive the take.
 */
static int bell1(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	if (bell_rering >= 0)
		nmi_doorbell_ring(tos_cpu, (unsigned)bell_rering);
	return bell_cb(1);
}

static void doorbell_register_errors_and_slot_reuse(void)
{
	CHECK_EQ(nmi_doorbell_register(NMI_DOORBELL_BITS, "x", bell0), NMI_ERANGE);
	CHECK_EQ(nmi_doorbell_register(0, "x", NULL), NMI_EINVAL);
	CHECK_EQ(nmi_doorbell_register(0, NULL, bell0), NMI_EINVAL);
	CHECK_EQ(nmi_doorbell_register(0, "", bell0), NMI_EINVAL);
	CHECK_EQ(nmi_doorbell_register(0, "b0", bell0), NMI_OK);
	CHECK_EQ(nmi_doorbell_register(0, "again", bell2), NMI_EBUSY);
	CHECK_EQ(nmi_doorbell_unregister(1), NMI_ENOENT);
	CHECK_EQ(nmi_doorbell_unregister(NMI_DOORBELL_BITS), NMI_ERANGE);
	CHECK_EQ(nmi_doorbell_unregister(0), NMI_OK);
	CHECK_EQ(nmi_doorbell_unregister(0), NMI_ENOENT);
	/* A bit rung with no callback is dropped, and unclaimed. */
	nmi_doorbell_ring(0, 0);
	tos_nmi(0, 0x1000);
	CHECK_EQ(bell_calls[0], 0);
	CHECK_EQ(nmi_doorbell_read(0), 0);
	CHECK_EQ(tos_nmi_stats(0).unknown, 1);
	CHECK_EQ(nmi_doorbell_register(0, "b0", bell0), NMI_OK);
	/* Every register/unregister pair gives its slot back. */
	for (int i = 0; i < 3 * NMI_MAX_HANDLERS; i++) {
		CHECK_EQ(nmi_doorbell_register(7, "churn", bell2), NMI_OK);
		CHECK_EQ(nmi_doorbell_unregister(7), NMI_OK);
	}
	/* Out-of-range rings and listens touch nothing. */
	nmi_doorbell_ring(NMIKIT_MAX_CPUS, 0);
	nmi_doorbell_ring(0, NMI_DOORBELL_BITS);
	nmi_doorbell_listen(0, NMI_DOORBELL_BITS, true);
	nmi_doorbell_listen(NMIKIT_MAX_CPUS, 0, true);
	CHECK_EQ(nmi_doorbell_read(0), 0);
	CHECK_EQ(nmi_doorbell_read(NMIKIT_MAX_CPUS), 0);
}

/*
 * One ring, one call, then the bit is gone: a second NMI does not call
 * the callback again (it would if the dispatch only read the word
 * instead of taking it).  Rings are per CPU; the claim counts as the local
 * chain's; bells run before the chain.
 */
static void doorbell_ring_is_served_once_on_its_cpu(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0), NMI_OK);
	CHECK_EQ(nmi_doorbell_register(0, "b0", bell0), NMI_OK);
	CHECK_EQ(nmi_doorbell_register(2, "b2", bell2), NMI_OK);
	bell_ret = 1;
	nmi_doorbell_ring(1, 2);
	nmi_doorbell_ring(1, 0);
	nmi_doorbell_ring(1, 2);	/* two rings before one take: one call */
	CHECK_EQ(nmi_doorbell_read(1), 0x5);
	tos_nmi(0, 0x1000);		/* another CPU's NMI leaves them alone */
	CHECK_EQ(bell_calls[0] + bell_calls[2], 0);
	CHECK_EQ(tos_nmi_stats(0).unknown, 1);
	tos_nmi(1, 0x1000);
	CHECK_STR(order, "a02a");
	CHECK_EQ(bell_calls[0], 1);
	CHECK_EQ(bell_calls[2], 1);
	CHECK_EQ(nmi_doorbell_read(1), 0);
	CHECK_EQ(tos_nmi_stats(1).normal, 1);
	tos_nmi(1, 0x2000);
	CHECK_EQ(bell_calls[0], 1);
	CHECK_EQ(bell_calls[2], 1);
	CHECK_EQ(tos_nmi_stats(1).unknown, 1);
	/* Listed, timed and counted like a chain handler. */
	CHECK_EQ(handler("b2").type, NMI_DOORBELL);
	CHECK_EQ(handler("b2").calls, 1);
	CHECK_EQ(handler("b2").claimed, 1);
	CHECK_STR(nmi_type_name(NMI_DOORBELL), "DOORBELL");
	CHECK_STR(nmi_type_name(NMI_TYPE_COUNT), "?");
	/* Claims of 2 arm the back-to-back rule like the chain's. */
	bell_ret = 2;
	nmi_doorbell_ring(1, 0);
	tos_nmi(1, 0x3000);
	tos_nmi(1, 0x3000);
	CHECK_EQ(tos_nmi_stats(1).swallowed, 1);
}

/*
 * A ring that lands after the dispatch took the word (here: rung by a
 * callback, as a sender on another CPU does while this NMI runs) is not
 * lost: the next NMI serves it.  It is lost when the take is a load and
 * the word is cleared after the callbacks (tried once: this test fails;
 * a load without any clear fails doorbell_ring_is_served_once_on_its_cpu
 * and the listen test).
 */
static void doorbell_ring_after_the_take_waits_for_the_next_nmi(void)
{
	CHECK_EQ(nmi_doorbell_register(1, "b1", bell1), NMI_OK);
	CHECK_EQ(nmi_doorbell_register(2, "b2", bell2), NMI_OK);
	bell_ret = 1;
	bell_rering = 2;
	nmi_doorbell_ring(0, 1);
	tos_nmi(0, 0x1000);
	CHECK_EQ(bell_calls[1], 1);
	CHECK_EQ(bell_calls[2], 0);
	CHECK_EQ(nmi_doorbell_read(0), 1u << 2);
	tos_nmi(0, 0x1000);
	CHECK_EQ(bell_calls[2], 1);
	CHECK_EQ(nmi_doorbell_read(0), 0);
	/* Its own bit rung again from inside its call: once more next time. */
	bell_rering = 1;
	nmi_doorbell_ring(0, 1);
	tos_nmi(0, 0x1000);
	CHECK_EQ(bell_calls[1], 2);
	bell_rering = -1;
	tos_nmi(0, 0x1000);
	CHECK_EQ(bell_calls[1], 3);
	tos_nmi(0, 0x1000);
	CHECK_EQ(bell_calls[1], 3);
}

/*
 * Listen bits are sticky: every NMI calls the callback while set, a take
 * of rung bits keeps them, a bit both rung and listened to is one call,
 * and clearing stops the calls.
 */
static void doorbell_listen_bits_are_sticky_and_survive_the_take(void)
{
	CHECK_EQ(nmi_doorbell_register(5, "b5", bell5), NMI_OK);
	CHECK_EQ(nmi_doorbell_register(2, "b2", bell2), NMI_OK);
	bell_ret = 1;
	nmi_doorbell_listen(3, 5, true);
	CHECK_EQ(nmi_doorbell_read(3), 1ull << 37);
	nmi_doorbell_ring(3, 5);
	nmi_doorbell_ring(3, 2);
	tos_nmi(3, 0x1000);
	CHECK_STR(order, "25");
	CHECK_EQ(nmi_doorbell_read(3), 1ull << 37);
	tos_nmi(3, 0x2000);
	tos_nmi(3, 0x3000);
	CHECK_EQ(bell_calls[5], 3);
	CHECK_EQ(bell_calls[2], 1);
	CHECK_EQ(tos_nmi_stats(3).normal, 3);
	nmi_doorbell_listen(3, 5, false);
	CHECK_EQ(nmi_doorbell_read(3), 0);
	tos_nmi(3, 0x4000);
	CHECK_EQ(bell_calls[5], 3);
	CHECK_EQ(tos_nmi_stats(3).unknown, 1);
}

/*
 * Ring before send, with real threads: a sender (CPU 1) writes its request,
 * rings CPU 0's bit, then "sends" (raises a line that CPU 0's thread turns
 * into an NMI at once); after each round it checks that the callback saw
 * this round's request.  The NMI can run at any point after the send, so
 * it always finds the bit.  With the send moved before the ring (tried
 * once), CPU 0's NMI sometimes runs in between and takes nothing, and that
 * round's request is never served: 39 of the 20000 were lost.
 */
#define BELL_ROUNDS	20000
static _Atomic unsigned long bell_req_posted, bell_req_seen, bell_nmis_run;
static atomic_bool bell_line, bell_stop;

static int bell_req_cb(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	atomic_store(&bell_req_seen, atomic_load_explicit(&bell_req_posted, memory_order_acquire));
	return 1;
}

static void *bell_receiver(void *arg)
{
	(void)arg;
	tos_cpu = 0;
	while (!atomic_load(&bell_stop)) {
		if (atomic_exchange(&bell_line, false)) {
			tos_nmi(0, 0x1000);
			atomic_fetch_add(&bell_nmis_run, 1);
		}
	}
	return NULL;
}

static void ring_then_send(unsigned cpu, unsigned bit)
{
	nmi_doorbell_ring(cpu, bit);
	atomic_store(&bell_line, true);
}

static void doorbell_ring_before_send_never_loses_a_request(void)
{
	pthread_t t;
	unsigned long lost = 0;

	CHECK_EQ(nmi_doorbell_register(4, "req", bell_req_cb), NMI_OK);
	CHECK_EQ(pthread_create(&t, NULL, bell_receiver, NULL), 0);
	tos_cpu = 1;
	for (unsigned long i = 1; i <= BELL_ROUNDS; i++) {
		atomic_store_explicit(&bell_req_posted, i, memory_order_release);
		ring_then_send(0, 4);
		while (atomic_load(&bell_nmis_run) < i)
			sched_yield();
		if (atomic_load(&bell_req_seen) != i)
			lost++;
	}
	atomic_store(&bell_stop, true);
	pthread_join(t, NULL);
	tos_cpu = 0;
	CHECK_EQ(lost, 0);
	CHECK_EQ(nmi_doorbell_read(0), 0);
	CHECK_EQ(handler("req").calls, BELL_ROUNDS);
}

/* --- handler durations ----------------------------------------------------- */

static uint64_t slow_ns;

static int h_slow(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	tos_advance(slow_ns);
	return 1;
}

static void long_handler_warns_rate_limited_and_longest_kept(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "slow", h_slow, 0), NMI_OK);
	slow_ns = 400000;	/* 0.4 ms: under the 1 ms default */
	tos_nmi(0, 0x1000);
	CHECK(!tos_log_has("took too long"));
	CHECK_EQ(handler("slow").longest_ns, 400000);
	CHECK_EQ(handler("slow").slow, 0);

	slow_ns = 2500000;
	tos_nmi(0, 0x2000);
	CHECK(tos_log_has("NMI handler (slow) took too long to run: 2.500 msecs"));
	CHECK_EQ(handler("slow").longest_ns, 2500000);
	CHECK_EQ(handler("slow").slow, 1);

	slow_ns = 1200000;
	tos_nmi(0, 0x3000);
	CHECK_EQ(tos_log_count("took too long"), 1);
	CHECK_EQ(handler("slow").slow, 2);
	CHECK_EQ(handler("slow").longest_ns, 2500000);

	tos_advance(6 * SEC);
	slow_ns = 3000001;
	tos_nmi(0, 0x4000);
	CHECK_EQ(tos_log_count("took too long"), 2);
	CHECK(tos_log_has("took too long to run: 3.000 msecs"));
	CHECK_EQ(handler("slow").longest_ns, 3000001);
}

static void nmi_longest_ns_sets_the_warning_threshold(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "slow", h_slow, 0), NMI_OK);
	nmi_longest_ns = 5 * MS;
	slow_ns = 4 * MS;
	tos_nmi(0, 0x1000);
	CHECK(!tos_log_has("took too long"));
	slow_ns = 6 * MS;
	tos_nmi(0, 0x1000);
	CHECK(tos_log_has("NMI handler (slow) took too long to run: 6.000 msecs"));
}

/*
 * The walk compares each call with one per-handler limit, min(longest,
 * threshold).  Lowering nmi_longest_ns below a handler's longest must catch
 * the next call between the two at once: the threshold update zeroes every
 * limit.  (Without that zeroing this test fails: the 2 ms call stays under
 * the old 4 ms limit and nothing is reported.)
 */
static void lowered_threshold_catches_calls_under_the_old_longest(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "slow", h_slow, 0), NMI_OK);
	nmi_longest_ns = 5 * MS;
	slow_ns = 4 * MS;
	tos_nmi(0, 0x1000);
	CHECK_EQ(handler("slow").longest_ns, 4 * MS);
	CHECK(!tos_log_has("took too long"));

	nmi_longest_ns = 1 * MS;
	slow_ns = 2 * MS;
	tos_nmi(0, 0x2000);
	CHECK(tos_log_has("NMI handler (slow) took too long to run: 2.000 msecs"));
	CHECK_EQ(handler("slow").slow, 1);
	CHECK_EQ(handler("slow").longest_ns, 4 * MS);
}

/*
 * Raising the threshold: calls between the old and the new one are no
 * longer slow, and a new longest under the new threshold is still recorded.
 */
static void raised_threshold_stops_warning_and_keeps_longest(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "slow", h_slow, 0), NMI_OK);
	slow_ns = 2 * MS;
	tos_nmi(0, 0x1000);
	CHECK_EQ(handler("slow").slow, 1);

	nmi_longest_ns = 10 * MS;
	tos_advance(6 * SEC);	/* past the warning's rate limit */
	slow_ns = 3 * MS;
	tos_nmi(0, 0x2000);
	slow_ns = 2500 * 1000;
	tos_nmi(0, 0x3000);
	CHECK_EQ(tos_log_count("took too long"), 1);
	CHECK_EQ(handler("slow").slow, 1);
	CHECK_EQ(handler("slow").longest_ns, 3 * MS);
	CHECK_EQ(handler("slow").calls, 3);
}

/* Each handler has its own limit: one handler's long calls raise no other's. */
static uint64_t quick_ns;

static int h_quick(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	tos_advance(quick_ns);
	return 0;
}

static void each_handler_keeps_its_own_longest(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "slow", h_slow, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "quick", h_quick, 0), NMI_OK);
	slow_ns = 800 * 1000;
	quick_ns = 100 * 1000;
	tos_nmi(0, 0x1000);
	quick_ns = 300 * 1000;	/* a new longest for "quick", under "slow"'s */
	tos_nmi(0, 0x2000);
	quick_ns = 200 * 1000;
	tos_nmi(0, 0x3000);
	CHECK_EQ(handler("quick").longest_ns, 300 * 1000);
	CHECK_EQ(handler("slow").longest_ns, 800 * 1000);
	CHECK_EQ(handler("quick").calls, 3);
	CHECK(!tos_log_has("took too long"));
}

/* --- unregister waits ------------------------------------------------------ */

static atomic_bool cpu1_inside, cpu1_release, cpu1_left;

static int h_blocks(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	if (tos_cpu != 1)
		return 0;
	atomic_store(&cpu1_inside, true);
	while (!atomic_load(&cpu1_release))
		sched_yield();
	return 1;
}

static void *cpu1_thread(void *arg)
{
	(void)arg;
	tos_cpu = 1;
	tos_nmi(1, 0x1000);
	atomic_store(&cpu1_left, true);
	return NULL;
}

/* "victim" registered, CPU 1 held inside an NMI by "blocks": its thread. */
static pthread_t cpu1_held_in_nmi_with_victim_registered(void)
{
	pthread_t t;

	CHECK_EQ(nmi_register(NMI_LOCAL, "blocks", h_blocks, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "victim", h_a, 0), NMI_OK);
	CHECK_EQ(pthread_create(&t, NULL, cpu1_thread, NULL), 0);
	while (!atomic_load(&cpu1_inside))
		sched_yield();
	return t;
}

/* Let CPU 1 finish its NMI only after unregister has waited a while. */
static void release_cpu1_after_50_relaxes(void)
{
	if (tos_relax_calls() >= 50)
		atomic_store(&cpu1_release, true);
}

static void unregister_waits_for_cpu_inside_nmi(void)
{
	pthread_t t;

	t = cpu1_held_in_nmi_with_victim_registered();
	CHECK(nmi_seq(1) & 1);

	tos_relax_hook = release_cpu1_after_50_relaxes;
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "victim"), NMI_OK);
	/* It returned only once CPU 1 had left the NMI. */
	CHECK(atomic_load(&cpu1_release));
	CHECK(tos_relax_calls() >= 50);
	CHECK_EQ(nmi_seq(1) & 1, 0);
	atomic_store(&cpu1_release, true);	/* so a failed wait still ends */
	pthread_join(t, NULL);
	CHECK(atomic_load(&cpu1_left));
}

/* Each relax is 10 ms of fake time; CPU 1 is let go after 3 s. */
static void advance_and_release(void)
{
	tos_advance(10 * MS);
	if (tos_time() > 3 * SEC)
		atomic_store(&cpu1_release, true);
}

static void unregister_warns_when_a_cpu_stays_in_nmi(void)
{
	pthread_t t;

	t = cpu1_held_in_nmi_with_victim_registered();
	tos_relax_hook = advance_and_release;
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "victim"), NMI_OK);
	CHECK(tos_log_has("unregister of victim still waiting for CPU 1"));
	CHECK_EQ(tos_log_count("still waiting"), 1);
	pthread_join(t, NULL);
}

static void unregister_skips_cpus_outside_nmi_and_offline(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "victim", h_a, 0), NMI_OK);
	tos_nmi(1, 0x1000);
	tos_set_online(3, false);
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "victim"), NMI_OK);
	CHECK_EQ(tos_relax_calls(), 0);
}

/*
 * Real concurrency: CPUs 0 and 1 (threads) register and unregister their own
 * handlers over and over while CPU 2 takes NMIs as fast as it can.  A
 * handler must never still be running once nmi_unregister() of it has
 * returned.
 */
#define CHURN_ROUNDS	3000

static atomic_bool churn_alive[2], churn_stop;
static atomic_ulong churn_calls[2], churn_late_calls;

static int h_churn0(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	atomic_fetch_add(&churn_calls[0], 1);
	/* Stay a while, then check that unregister has not returned meanwhile. */
	sched_yield();
	if (!atomic_load(&churn_alive[0]))
		atomic_fetch_add(&churn_late_calls, 1);
	return 1;
}

static int h_churn1(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	atomic_fetch_add(&churn_calls[1], 1);
	/* Stay a while, then check that unregister has not returned meanwhile. */
	sched_yield();
	if (!atomic_load(&churn_alive[1]))
		atomic_fetch_add(&churn_late_calls, 1);
	return 1;
}

static void *churn_writer(void *arg)
{
	unsigned me = (unsigned)(unsigned long)arg;
	const char *name = me ? "churn1" : "churn0";
	nmi_handler_fn fn = me ? h_churn1 : h_churn0;

	tos_cpu = me;
	for (unsigned r = 0; r < CHURN_ROUNDS; r++) {
		atomic_store(&churn_alive[me], true);
		CHECK_EQ(nmi_register(NMI_LOCAL, name, fn, r % 2 ? NMI_FLAG_FIRST : 0), NMI_OK);
		sched_yield();
		CHECK_EQ(nmi_unregister(NMI_LOCAL, name), NMI_OK);
		atomic_store(&churn_alive[me], false);
	}
	return NULL;
}

static void *churn_nmis(void *arg)
{
	(void)arg;
	tos_cpu = 2;
	while (!atomic_load(&churn_stop))
		tos_nmi(2, 0x1000);
	return NULL;
}

static void register_unregister_churn_while_nmis_run(void)
{
	pthread_t w[2], n;

	/* A handler that always claims keeps the NMIs out of the unknown path. */
	CHECK_EQ(nmi_register(NMI_LOCAL, "base", h_claim_one, 0), NMI_OK);
	CHECK_EQ(pthread_create(&n, NULL, churn_nmis, NULL), 0);
	/* The churn must overlap NMIs: wait (bounded) until CPU 2 has taken one. */
	for (int spins = 0; tos_nmi_stats(2).entries == 0 && spins < 5000; spins++)
		usleep(1000);
	for (unsigned long i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&w[i], NULL, churn_writer, (void *)i), 0);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(w[i], NULL);
	atomic_store(&churn_stop, true);
	pthread_join(n, NULL);
	CHECK_EQ(atomic_load(&churn_late_calls), 0);
	CHECK(tos_nmi_stats(2).entries > 0);
	printf("# churn: %llu NMIs on CPU 2, handler calls %lu + %lu\n",
	       (unsigned long long)tos_nmi_stats(2).entries, atomic_load(&churn_calls[0]),
	       atomic_load(&churn_calls[1]));
	CHECK_EQ(tos_nmi_stats(2).unknown, 0);
}

/* --- emergency slot and shootdown ------------------------------------------ */

static int emergency_ret;
static unsigned emergency_calls;

static int em_a(struct nmi_frame *f)
{
	(void)f;
	emergency_calls++;
	return emergency_ret;
}

static int em_b(struct nmi_frame *f)
{
	(void)f;
	return 1;
}

static void emergency_handler_runs_first_and_may_consume(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0), NMI_OK);
	ret_a = 1;
	CHECK_EQ(nmi_set_emergency(NULL), NMI_EINVAL);
	CHECK_EQ(nmi_set_emergency(em_a), NMI_OK);
	CHECK_EQ(nmi_set_emergency(em_b), NMI_EBUSY);
	emergency_ret = 1;
	tos_nmi(0, 0x1000);
	CHECK_EQ(emergency_calls, 1);
	CHECK_EQ(calls_a, 0);
	CHECK_EQ(tos_nmi_stats(0).emergency, 1);
	emergency_ret = 0;
	tos_nmi(0, 0x2000);
	CHECK_EQ(emergency_calls, 2);
	CHECK_EQ(calls_a, 1);
	CHECK_EQ(tos_nmi_stats(0).normal, 1);
	CHECK_EQ(nmi_clear_emergency(em_b), NMI_ENOENT);
	CHECK_EQ(nmi_clear_emergency(NULL), NMI_EINVAL);
	CHECK_EQ(nmi_clear_emergency(em_a), NMI_OK);
	tos_nmi(0, 0x3000);
	CHECK_EQ(emergency_calls, 2);
	CHECK_EQ(nmi_set_emergency(em_b), NMI_OK);
}

static unsigned stopped_mask;
static bool stop_irqs_off;

static void on_stop(struct nmi_frame *f)
{
	CHECK_EQ(f->ip, 0x5000 + tos_cpu);
	stopped_mask |= 1u << tos_cpu;
	stop_irqs_off = tos_irqs_off(tos_cpu);
}

/*
 * The other CPUs take their NMIs while the shooting CPU waits: those in
 * `answering` (a bit per CPU); each relax is 1 ms of fake time.
 */
static unsigned answering;

static void deliver_shootdown_nmis(void)
{
	static bool busy;

	if (busy)
		return;
	busy = true;
	for (unsigned cpu = 0; cpu < 4; cpu++)
		if (answering & (1u << cpu))
			while (tos_deliver(cpu, 0x5000 + cpu))
				;
	busy = false;
	tos_advance(1 * MS);
}

static void shootdown_stops_and_parks_every_other_cpu(void)
{
	CHECK_EQ(nmi_set_emergency(em_a), NMI_OK);
	answering = 0xf;
	tos_relax_hook = deliver_shootdown_nmis;
	CHECK_EQ(nmi_shootdown_cpus(on_stop), NMI_OK);
	CHECK_EQ(stopped_mask, 0xe);
	CHECK(stop_irqs_off);
	CHECK_EQ(tos_sent_count(), 3);
	for (unsigned cpu = 1; cpu < 4; cpu++) {
		CHECK(nmi_cpu_parked(cpu));
		CHECK_EQ(tos_nmi_stats(cpu).emergency, 0);
		CHECK(nmi_seq(cpu) & 1);
	}
	CHECK(!nmi_cpu_parked(0));
	CHECK(!nmi_cpu_parked(NMIKIT_MAX_CPUS));
	/* The shooting CPU's own NMIs still go through the chains. */
	CHECK_EQ(nmi_register(NMI_LOCAL, "a", h_a, 0), NMI_OK);
	ret_a = 1;
	tos_nmi(0, 0x1000);
	CHECK_EQ(calls_a, 1);
	/* Parked CPUs never leave their NMI; unregister must not wait for them. */
	tos_relax_hook = NULL;
	CHECK_EQ(nmi_unregister(NMI_LOCAL, "a"), NMI_OK);
	/* One shootdown per boot. */
	CHECK_EQ(nmi_shootdown_cpus(NULL), NMI_EALREADY);
}

static void shootdown_times_out_when_a_cpu_does_not_answer(void)
{
	answering = 0x7;	/* CPU 3 never takes its NMI */
	tos_relax_hook = deliver_shootdown_nmis;
	CHECK_EQ(nmi_shootdown_cpus(NULL), NMI_ETIMEDOUT);
	CHECK(nmi_cpu_parked(1));
	CHECK(nmi_cpu_parked(2));
	CHECK(!nmi_cpu_parked(3));
	CHECK(tos_time() >= 1 * SEC);
	CHECK(tos_time() < 2 * SEC);
}

static void shootdown_skips_offline_cpus(void)
{
	tos_set_online(2, false);
	answering = 0xf;
	tos_relax_hook = deliver_shootdown_nmis;
	tos_cpu = 1;
	CHECK_EQ(nmi_shootdown_cpus(NULL), NMI_OK);
	tos_cpu = 0;
	CHECK_EQ(tos_sent_count(), 2);
	CHECK(!nmi_cpu_parked(2));
	CHECK(!nmi_cpu_parked(1));
	CHECK(nmi_cpu_parked(0));
	CHECK(nmi_cpu_parked(3));
}

static int h_panics_in_nmi(unsigned type, struct nmi_frame *f)
{
	(void)type; (void)f;
	if (tos_cpu == 0)
		CHECK_EQ(nmi_shootdown_cpus(NULL), NMI_OK);
	return 1;
}

static void shootdown_from_nmi_context_works(void)
{
	CHECK_EQ(nmi_register(NMI_LOCAL, "panics", h_panics_in_nmi, 0), NMI_OK);
	answering = 0xe;
	tos_relax_hook = deliver_shootdown_nmis;
	tos_nmi(0, 0x1000);
	for (unsigned cpu = 1; cpu < 4; cpu++)
		CHECK(nmi_cpu_parked(cpu));
	CHECK(!nmi_in_nmi());
}

/* --- statistics readers ---------------------------------------------------- */

static char printed[8192];
static size_t nprinted;

static void capture(void *arg, const char *s, size_t len)
{
	CHECK(arg == printed);
	if (nprinted + len < sizeof(printed)) {
		memcpy(printed + nprinted, s, len);
		nprinted += len;
		printed[nprinted] = '\0';
	}
}

static void handler_table_and_stats_print_for_the_shell(void)
{
	struct nmi_handler_info h;

	CHECK_EQ(nmi_register(NMI_LOCAL, "watchdog", h_a, 0), NMI_OK);
	CHECK_EQ(nmi_register(NMI_LOCAL, "backtrace", h_b, NMI_FLAG_FIRST), NMI_OK);
	CHECK_EQ(nmi_register(NMI_SERR, "pci-serr", h_serr, 0), NMI_OK);
	ret_a = 1;
	tos_nmi(0, 0x1000);
	tos_nmi(0, 0x1000);

	CHECK_EQ(nmi_get_handler_info(0, &h), NMI_OK);
	CHECK_STR(h.name, "backtrace");
	CHECK_EQ(h.type, NMI_LOCAL);
	CHECK_EQ(nmi_get_handler_info(1, &h), NMI_OK);
	CHECK_STR(h.name, "watchdog");
	CHECK_EQ(h.calls, 2);
	CHECK_EQ(h.claimed, 2);
	CHECK_EQ(nmi_get_handler_info(2, &h), NMI_OK);
	CHECK_STR(h.name, "pci-serr");
	CHECK_EQ(h.type, NMI_SERR);
	CHECK_EQ(nmi_get_handler_info(3, &h), NMI_ENOENT);
	CHECK_EQ(nmi_get_handler_info(0, NULL), NMI_EINVAL);

	nmi_print_handlers(capture, printed);
	CHECK(strstr(printed, "backtrace") != NULL);
	CHECK(strstr(printed, "SERR") != NULL);
	CHECK(strstr(printed, "watchdog") != NULL);
	nprinted = 0;
	tos_set_online(3, false);
	nmi_print_stats(capture, printed);
	CHECK(strstr(printed, "entries") != NULL);
	CHECK(strstr(printed, "external NMIs owned by CPU 0") != NULL);
	/* One header, three online CPU rows, one footer. */
	{
		unsigned lines = 0;

		for (const char *p = printed; *p; p++)
			lines += *p == '\n';
		CHECK_EQ(lines, 5);
	}
	nmi_print_stats(NULL, NULL);
	nmi_print_handlers(NULL, NULL);
}

const struct tap_test nmi_tests[] = {
	TAP_TEST(every_handler_called_and_claims_summed),
	TAP_TEST(first_flag_puts_handler_at_chain_head),
	TAP_TEST(register_rejects_bad_arguments_with_documented_errors),
	TAP_TEST(register_fails_when_table_full_and_slot_is_reused),
	TAP_TEST(unregister_rejects_unknown_names_and_stops_calls),
	TAP_TEST(register_and_unregister_refused_in_nmi_context),
	TAP_TEST(strerror_describes_every_error),
	TAP_TEST(unknown_nmi_warns_rate_limited),
	TAP_TEST(unknown_nmi_panics_when_unknown_nmi_panic_set),
	TAP_TEST(unknown_chain_claim_suppresses_policy),
	TAP_TEST(back_to_back_nmi_swallowed_after_multi_claim),
	TAP_TEST(back_to_back_not_swallowed_when_ip_differs),
	TAP_TEST(back_to_back_not_swallowed_when_previous_claimed_one),
	TAP_TEST(back_to_back_state_is_per_cpu),
	TAP_TEST(external_serr_and_iochk_handled_acked_and_rearmed),
	TAP_TEST(external_reason_without_handler_is_cleared_with_warning),
	TAP_TEST(external_reasons_not_read_when_local_chain_claims),
	TAP_TEST(external_reasons_read_only_on_owner_cpu),
	TAP_TEST(reason_lock_held_by_crashing_cpu_does_not_deadlock),
	TAP_TEST(nested_nmi_in_entry_is_latched_and_dispatch_restarts),
	TAP_TEST(two_nested_nmis_collapse_into_one_restart),
	TAP_TEST(sequence_counter_odd_inside_nmi_even_outside),
	TAP_TEST(user_mode_and_arch_nested_counted),
	TAP_TEST(arch_entry_nested_count_read_with_the_stats_only),
	TAP_TEST(doorbell_register_errors_and_slot_reuse),
	TAP_TEST(doorbell_ring_is_served_once_on_its_cpu),
	TAP_TEST(doorbell_ring_after_the_take_waits_for_the_next_nmi),
	TAP_TEST(doorbell_listen_bits_are_sticky_and_survive_the_take),
	TAP_TEST(doorbell_ring_before_send_never_loses_a_request),
	TAP_TEST(long_handler_warns_rate_limited_and_longest_kept),
	TAP_TEST(nmi_longest_ns_sets_the_warning_threshold),
	TAP_TEST(lowered_threshold_catches_calls_under_the_old_longest),
	TAP_TEST(raised_threshold_stops_warning_and_keeps_longest),
	TAP_TEST(each_handler_keeps_its_own_longest),
	TAP_TEST(unregister_waits_for_cpu_inside_nmi),
	TAP_TEST(unregister_warns_when_a_cpu_stays_in_nmi),
	TAP_TEST(unregister_skips_cpus_outside_nmi_and_offline),
	TAP_TEST(register_unregister_churn_while_nmis_run),
	TAP_TEST(emergency_handler_runs_first_and_may_consume),
	TAP_TEST(shootdown_stops_and_parks_every_other_cpu),
	TAP_TEST(shootdown_times_out_when_a_cpu_does_not_answer),
	TAP_TEST(shootdown_skips_offline_cpus),
	TAP_TEST(shootdown_from_nmi_context_works),
	TAP_TEST(handler_table_and_stats_print_for_the_shell),
	TAP_END,
};
