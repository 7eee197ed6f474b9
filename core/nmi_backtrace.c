/*
 * nmi_backtrace.c: all-CPU NMI backtraces.  The caller claims the one request
 * slot, marks each CPU it asks with the request's generation number, sends
 * the NMIs, and waits (bounded, with os_cpu_relax) for each CPU's answer.
 * An asked CPU, in its NMI, takes the mark with one exchange, lets the
 * kernel capture its interrupted context, and publishes the generation it
 * answered.  The caller then prints every capture in CPU order, so the
 * reports never interleave, and names the reason for each CPU that did not
 * answer, from that CPU's NMI sequence counter.
 */
#include <nmikit/compiler.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/nmi_backtrace.h>
#include <nmikit/os.h>

#define BT_NO_OWNER	(~0u)
/* The mark left on a CPU whose request timed out: its late NMI is claimed silently. */
#define BT_LATE		(~0ull)
/* Status of a CPU asked, until it is settled. */
#define BT_PENDING	NMI_BT_STATUS_COUNT
/* Grace for a CPU that took the request just as the wait ended. */
#define BT_GRACE_NS	10000000ull

struct bt_cpu {
	_Atomic uint64_t want;		/* generation asked, BT_LATE, or 0 */
	_Atomic uint64_t done;		/* generation answered last */
	uint64_t seq0;			/* nmi_seq() when asked */
} NK_CACHE_ALIGNED;

static struct bt_cpu bt_cpus[NMIKIT_MAX_CPUS];
static _Atomic unsigned bt_owner = BT_NO_OWNER;
static _Atomic uint64_t bt_gen;
static const struct nmi_backtrace_ops *_Atomic bt_ops;
static _Atomic uint64_t bt_requests, bt_busy, bt_answers, bt_unanswered, bt_late;

const char *nmi_backtrace_status_str(unsigned status)
{
	switch (status) {
	case NMI_BT_NOT_ASKED:		return "not asked";
	case NMI_BT_ANSWERED:		return "answered";
	case NMI_BT_SELF_EXCLUDED:	return "the requesting CPU (left out)";
	case NMI_BT_OFFLINE:		return "offline, not asked";
	case NMI_BT_PARKED:		return "stopped by a panic shootdown, cannot answer";
	case NMI_BT_NO_NMI:		return "no NMI arrived since the request (NMIs not getting through)";
	case NMI_BT_STUCK_IN_NMI:	return "stuck in an NMI handler that has not returned";
	case NMI_BT_NO_ANSWER:		return "took NMIs but did not answer (its handler never ran)";
	}
	return "?";
}

void nmi_backtrace_set_ops(const struct nmi_backtrace_ops *ops)
{
	atomic_store_explicit(&bt_ops, ops, memory_order_release);
}

/*
 * NMI context, on every CPU for every NMI (or, where the port's ops have
 * ask(), only for NMIs whose doorbell it rang).  Safe: one load when nothing is
 * asked; otherwise one exchange on this CPU's own mark, the kernel's
 * NMI-safe capture, and one release store.  Never waits.
 */
int nmi_backtrace_nmi(unsigned type, struct nmi_frame *f)
{
	unsigned me = os_cpu_id();
	struct bt_cpu *c;
	uint64_t g;

	(void)type;
	if (me >= NMIKIT_MAX_CPUS)
		return NMI_DONE;
	c = &bt_cpus[me];
	if (!atomic_load_explicit(&c->want, memory_order_acquire))
		return NMI_DONE;
	g = atomic_exchange_explicit(&c->want, 0, memory_order_acq_rel);
	if (!g)
		return NMI_DONE;
	if (g == BT_LATE) {
		nk_atomic_inc(&bt_late);
		return NMI_HANDLED;
	}
	const struct nmi_backtrace_ops *ops = atomic_load_explicit(&bt_ops, memory_order_acquire);
	if (ops && ops->capture)
		ops->capture(me, f);
	atomic_store_explicit(&c->done, g, memory_order_release);
	return NMI_HANDLED;
}

int nmi_backtrace_init(void)
{
	return nmi_register(NMI_LOCAL, "nmi_backtrace", nmi_backtrace_nmi, NMI_FLAG_FIRST);
}

static bool in_set(const uint64_t *cpus, unsigned cpu)
{
	return !cpus || ((cpus[cpu / 64] >> (cpu % 64)) & 1);
}

static bool answered(unsigned cpu, uint64_t gen)
{
	return atomic_load_explicit(&bt_cpus[cpu].done, memory_order_acquire) == gen;
}

/* Why an asked CPU did not answer, from its NMI sequence counter. */
static uint8_t bt_reason(unsigned cpu)
{
	uint64_t now = nmi_seq(cpu), then = bt_cpus[cpu].seq0;

	if (nmi_cpu_parked(cpu))
		return NMI_BT_PARKED;
	if (now & 1)
		return NMI_BT_STUCK_IN_NMI;
	return now == then ? NMI_BT_NO_NMI : NMI_BT_NO_ANSWER;
}

/*
 * NMI-safe: yes.  The request slot is claimed with one compare-exchange (a
 * second caller returns NMI_EBUSY at once), the sends are NMI-safe, and the
 * only waits are bounded by timeout_ns (and BT_GRACE_NS).
 */
int nmi_backtrace(const uint64_t *cpus, unsigned flags, uint64_t timeout_ns,
		  struct nmi_backtrace_result *res)
{
	struct nmi_backtrace_result local;
	unsigned me = os_cpu_id(), ncpus = os_cpu_count(), none = BT_NO_OWNER;
	bool in_nmi = nmi_in_nmi(), ask_self = false, everyone_else = true;
	int level = in_nmi ? NK_LOG_EMERG : NK_LOG_WARNING;
	unsigned asked_others = 0, online_others = 0;
	const struct nmi_backtrace_ops *ops;
	uint64_t gen, t0, deadline;
	int err = NMI_OK;

	if (!res)
		res = &local;
	*res = (struct nmi_backtrace_result){ 0 };
	if (ncpus > NMIKIT_MAX_CPUS)
		ncpus = NMIKIT_MAX_CPUS;
	if (!atomic_compare_exchange_strong_explicit(&bt_owner, &none, me, memory_order_acq_rel,
						     memory_order_relaxed)) {
		nk_atomic_inc(&bt_busy);
		return NMI_EBUSY;
	}
	nk_atomic_inc(&bt_requests);
	gen = atomic_fetch_add_explicit(&bt_gen, 1, memory_order_relaxed) + 1;
	ops = atomic_load_explicit(&bt_ops, memory_order_acquire);

	for (unsigned cpu = 0; cpu < ncpus; cpu++) {
		struct bt_cpu *c = &bt_cpus[cpu];
		bool online = os_cpu_online(cpu);

		if (cpu != me && online)
			online_others++;
		if (!in_set(cpus, cpu)) {
			res->status[cpu] = NMI_BT_NOT_ASKED;
			if (cpu != me)
				everyone_else = false;
			continue;
		}
		if (cpu == me) {
			if ((flags & NMI_BT_EXCLUDE_SELF) || in_nmi) {
				res->status[cpu] = NMI_BT_SELF_EXCLUDED;
				continue;
			}
			ask_self = true;
		} else if (!online) {
			res->status[cpu] = NMI_BT_OFFLINE;
			everyone_else = false;
			continue;
		} else if (nmi_cpu_parked(cpu)) {
			res->status[cpu] = NMI_BT_PARKED;
			everyone_else = false;
			continue;
		} else {
			asked_others++;
		}
		c->seq0 = nmi_seq(cpu);
		atomic_store_explicit(&c->want, gen, memory_order_release);
		/*
		 * Mark first, then ring: a handler that saw the doorbell finds
		 * the mark.  Ring before sending: an NMI that arrives for this
		 * request (or any later one) finds the doorbell.  A doorbell
		 * left ringing by a request that timed out is harmless: the mark
		 * then says BT_LATE or the newer generation.
		 */
		if (ops && ops->ask)
			ops->ask(cpu);
		res->status[cpu] = BT_PENDING;
		res->asked++;
	}
	/* The marks and doorbells are visible before any NMI that reads them is sent. */
	atomic_thread_fence(memory_order_seq_cst);

	t0 = os_timestamp_ns();
	/*
	 * One broadcast when every other CPU is asked (the shorthand also
	 * reaches offline CPUs, which must then not be there); else one by one.
	 */
	if (everyone_else && asked_others == online_others && online_others + 1 == ncpus &&
	    asked_others > 0) {
		os_send_nmi_allbutself();
	} else {
		for (unsigned cpu = 0; cpu < ncpus; cpu++)
			if (cpu != me && atomic_load_explicit(&bt_cpus[cpu].want,
							      memory_order_relaxed) == gen)
				os_send_nmi(cpu);
	}
	if (ask_self)
		os_send_nmi_self();

	deadline = t0 + timeout_ns;
	for (;;) {
		unsigned n = 0;

		for (unsigned cpu = 0; cpu < ncpus; cpu++)
			if (answered(cpu, gen))
				n++;
		res->answered = n;
		if (n >= res->asked || os_timestamp_ns() >= deadline)
			break;
		os_cpu_relax();
	}
	res->elapsed_ns = os_timestamp_ns() - t0;

	/* Settle each asked CPU: answered, or why not. */
	res->answered = 0;
	for (unsigned cpu = 0; cpu < ncpus; cpu++) {
		struct bt_cpu *c = &bt_cpus[cpu];
		uint64_t expect = gen;

		if (res->status[cpu] != BT_PENDING)
			continue;
		if (!answered(cpu, gen) &&
		    !atomic_compare_exchange_strong_explicit(&c->want, &expect, BT_LATE,
							     memory_order_acq_rel,
							     memory_order_relaxed)) {
			/* It took the mark just now and is capturing: a short grace. */
			uint64_t until = os_timestamp_ns() + BT_GRACE_NS;
			while (!answered(cpu, gen) && os_timestamp_ns() < until)
				os_cpu_relax();
		}
		if (answered(cpu, gen)) {
			res->status[cpu] = NMI_BT_ANSWERED;
			res->answered++;
			continue;
		}
		res->status[cpu] = bt_reason(cpu);
		nk_atomic_inc(&bt_unanswered);
		err = NMI_ETIMEDOUT;
	}
	atomic_fetch_add_explicit(&bt_answers, res->answered, memory_order_relaxed);

	if (!(flags & NMI_BT_QUIET)) {
		for (unsigned cpu = 0; cpu < ncpus; cpu++) {
			unsigned s = res->status[cpu];

			if (s == NMI_BT_ANSWERED) {
				if (ops && ops->print)
					ops->print(cpu, level);
			} else if (s != NMI_BT_NOT_ASKED && s != NMI_BT_SELF_EXCLUDED) {
				nk_log(level, "NMI backtrace for cpu %u: none: %s", cpu,
				       nmi_backtrace_status_str(s));
			}
		}
		nk_log(level, "NMI backtrace: %u of %u CPUs answered in %llu us", res->answered,
		       res->asked, (unsigned long long)(res->elapsed_ns / 1000));
	}
	atomic_store_explicit(&bt_owner, BT_NO_OWNER, memory_order_release);
	return err;
}

void nmi_backtrace_get_stats(struct nmi_backtrace_stats *out)
{
	out->requests = nk_stat_read(&bt_requests);
	out->busy = nk_stat_read(&bt_busy);
	out->answers = nk_stat_read(&bt_answers);
	out->unanswered = nk_stat_read(&bt_unanswered);
	out->late = nk_stat_read(&bt_late);
}
