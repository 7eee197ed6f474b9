/*
 * nmi.h: the portable NMI core.  Handler chains by type, the per-CPU entry
 * state machine that the arch entry code calls into, external reasons
 * (SERR / IOCHK), the unknown-NMI policy, an emergency slot, panic shootdown,
 * statistics, and the lost-NMI probe.  docs/nmi-dispatch.md describes the
 * flow of one NMI and every counter.
 */
#ifndef NMIKIT_NMI_H
#define NMIKIT_NMI_H

#include <stdbool.h>
#include <stdint.h>

#include <nmikit/format.h>

/* Handler chains. */
enum nmi_type {
	NMI_LOCAL = 0,		/* CPU-local sources: IPIs, watchdog, PMU, ... */
	NMI_UNKNOWN,		/* asked when nothing else claimed the NMI */
	NMI_SERR,		/* external: system error (one handler) */
	NMI_IO_CHECK,		/* external: I/O channel check (one handler) */
	NMI_TYPE_COUNT
};

/* nmi_register() flags. */
#define NMI_FLAG_FIRST	0x1u	/* put the handler at the head of its chain */

/* Handler return values: how many events the handler claimed. */
#define NMI_DONE	0	/* not mine */
#define NMI_HANDLED	1	/* one event handled (return more if more) */

/* Longest handler name kept, including the terminating NUL. */
#define NMI_NAME_MAX	24
/* Handlers that can be registered at once (no allocation in core). */
#define NMI_MAX_HANDLERS 32

/*
 * What core knows of the interrupted context.  The arch entry code fills it
 * in before calling nmi_entry(); core reads ip (back-to-back detection),
 * from_user (statistics) and passes the whole frame to handlers, which may
 * look at `regs` (on x86-64 a struct regs, see arch/x86_64/include/arch/regs.h)
 * when they know the arch.
 */
struct nmi_frame {
	uint64_t ip;		/* interrupted instruction pointer */
	uint64_t sp;		/* interrupted stack pointer */
	bool from_user;		/* the NMI interrupted user mode */
	void *regs;		/* arch register block, opaque to core */
};

/*
 * A handler.  Called in NMI context: it must obey the NMI rules (no lock that
 * other code takes, no waiting on other CPUs, bounded time).  Returns how
 * many events it claimed (0 when the NMI was not for it).  Every handler in a
 * chain is called on every NMI, because edge-triggered sources that fire
 * together reach the CPU as a single NMI.
 */
typedef int (*nmi_handler_fn)(unsigned type, struct nmi_frame *f);

/*
 * The emergency handler, called on every NMI before any chain.  Returns
 * nonzero when it consumed the NMI (the chains are then skipped), 0 to let
 * the NMI go through the normal dispatch.
 */
typedef int (*nmi_emergency_fn)(struct nmi_frame *f);

/* Errors: every API returns 0 or one of these. */
enum nmi_error {
	NMI_OK = 0,
	NMI_EINVAL = -1,	/* NULL handler or name, empty name, bad flags */
	NMI_ETYPE = -2,		/* type is not an enum nmi_type */
	NMI_EEXIST = -3,	/* a handler of that name is on that chain */
	NMI_EBUSY = -4,		/* SERR / IO_CHECK chain or emergency slot taken */
	NMI_ENOENT = -5,	/* no handler of that name on that chain */
	NMI_EINNMI = -6,	/* not allowed in NMI context */
	NMI_ENOSPC = -7,	/* NMI_MAX_HANDLERS already registered */
	NMI_ENAMETOOLONG = -8,	/* name longer than NMI_NAME_MAX - 1 */
	NMI_EALREADY = -9,	/* a shootdown is already in progress */
	NMI_ETIMEDOUT = -10,	/* not every CPU answered in time */
	NMI_ERANGE = -11,	/* CPU number out of range */
};

/* A short English description of an nmi_error; never NULL. */
const char *nmi_strerror(int err);

/* --- registration (never from NMI context) ---------------------------- */

/*
 * Add `fn` under `name` to chain `type`; at the tail, or at the head with
 * NMI_FLAG_FIRST.  The name is copied.  Spins briefly (interrupts off) on a
 * lock that only register/unregister take; returns NMI_EINNMI in NMI context.
 */
int nmi_register(unsigned type, const char *name, nmi_handler_fn fn, unsigned flags);

/*
 * Remove handler `name` from chain `type`.  Returns only once no CPU can still
 * be running it: it waits (os_cpu_relax) until every other online CPU was
 * outside NMI context at some point after the removal.  A CPU stuck in an NMI
 * handler forever therefore blocks it (a warning is logged after 1 s).
 */
int nmi_unregister(unsigned type, const char *name);

/*
 * Make nmi_unregister() wait with `fn` instead: the kernel passes
 * synchronize_rcu once its RCU runs (NMI handlers are RCU readers, see
 * <nmikit/rcu.h>); NULL goes back to the per-CPU sequence-counter wait.
 */
void nmi_set_synchronize(void (*fn)(void));

/*
 * Install / remove the emergency handler.  nmi_set_emergency() fails with
 * NMI_EBUSY when another one is installed (compare-and-swap, so two callers
 * cannot both win); nmi_clear_emergency() removes `fn` only if it is the one
 * installed, else NMI_ENOENT.  NMI-safe: yes (single atomic operations).
 */
int nmi_set_emergency(nmi_emergency_fn fn);
int nmi_clear_emergency(nmi_emergency_fn fn);

/*
 * Which CPU reads the external reasons (default 0).  Move it before taking
 * its owner offline.  NMI-safe: yes (one atomic store).
 */
int nmi_set_external_owner(unsigned cpu);
unsigned nmi_external_owner(void);

/* --- doorbells ---------------------------------------------------------- */

/*
 * A doorbell: one per-CPU word that the dispatch tests with one load on
 * every NMI, before the local chain, so that a subsystem whose NMIs are rare
 * next to everyone else's costs the other NMIs nothing but that load.
 * Bit `b` of a CPU's word names the callback registered for `b`; it is set
 * in one of two ways:
 *   ring: a sender that is about to send `cpu` an NMI on the subsystem's
 *     behalf first writes what it asks (its own state, release), then rings
 *     (nmi_doorbell_ring(): one atomic OR), then sends.  The dispatch takes
 *     every rung bit with one atomic read-modify-write and calls each
 *     callback once.  A bit only says "look": the callback still takes its
 *     own request from its own state, so an NMI that serves a request early
 *     (it arrived between the ring and the send) leaves the sender's NMI
 *     nothing to find - as when every NMI asked every subsystem.
 *   listen: sticky, for NMIs that no sender can ring for (a timer's or a
 *     counter's hardware message): while set, every NMI on that CPU calls
 *     the callback.
 * docs/nmi-dispatch.md says why no ring is lost or served twice.
 *
 * A callback is an nmi_handler_fn called with type NMI_LOCAL, in NMI
 * context on the CPU whose bit was set; it returns what it claimed, which
 * counts as the local chain's claims do.  Each call is timed and counted
 * like a chain handler's (nmi_get_handler_info() lists it with type
 * NMI_DOORBELL after the chains).
 */
#define NMI_DOORBELL_BITS	32
#define NMI_DOORBELL		0x100u	/* "type" of a doorbell callback (no chain) */

/*
 * Register `fn` under `name` for bit `bit` / remove it.  Not in NMI
 * context.  NMI_EBUSY when the bit has a callback, NMI_ERANGE for a bit
 * >= NMI_DOORBELL_BITS, NMI_ENOENT when unregistering a free bit.
 * Unregister returns once no CPU can still be calling it (as
 * nmi_unregister()); rings of the bit after that are dropped.
 */
int nmi_doorbell_register(unsigned bit, const char *name, nmi_handler_fn fn);
int nmi_doorbell_unregister(unsigned bit);

/*
 * Ring bit `bit` of `cpu`'s doorbell.  The caller writes its request
 * BEFORE and sends the NMI AFTER (the OR is a full barrier).
 * NMI-safe: yes (one atomic OR on the target's word).
 */
void nmi_doorbell_ring(unsigned cpu, unsigned bit);

/*
 * Set (on) or clear the sticky listen bit `bit` of `cpu`.  Set it before
 * the hardware can send the NMIs that matter, clear it after it cannot.
 * NMI-safe: yes (one atomic OR / AND).
 */
void nmi_doorbell_listen(unsigned cpu, unsigned bit, bool on);

/*
 * `cpu`'s doorbell word: rung bits in the low 32, listen bits in the high
 * 32 (for tests and the shell).  NMI-safe: yes.
 */
uint64_t nmi_doorbell_read(unsigned cpu);

/* --- entry (called by the arch NMI entry code) ------------------------- */

/*
 * The C entry of an NMI, called by the arch entry code on the NMI stack with
 * NMIs blocked.  See core/nmi.c for the per-CPU not-running / executing /
 * latched state machine that restarts the dispatch when a nested NMI was
 * recorded while it ran.
 */
void nmi_entry(struct nmi_frame *f);

/*
 * The arch entry code calls this when its own checks caught a nested NMI
 * (one that it turned into a `repeat` of the running one), for statistics.
 * NMI-safe: yes.
 */
void nmi_note_nested(void);

/* True while this CPU is inside nmi_entry().  NMI-safe: yes. */
bool nmi_in_nmi(void);

/*
 * CPU `cpu`'s NMI sequence counter: odd while it is inside nmi_entry(),
 * even outside, bumped on every entry and exit.  NMI-safe: yes.
 */
uint64_t nmi_seq(unsigned cpu);

/*
 * The core's per-CPU block of `cpu` (NULL if `cpu` is out of range), for a
 * port that implements the inline hook os_cpu_block() (<nmikit/os.h>): it
 * stores this pointer in its own per-CPU data when it brings the CPU up,
 * before that CPU can take an NMI.  Opaque to the port.
 */
void *nmi_cpu_block(unsigned cpu);

/* --- panic support ----------------------------------------------------- */

/*
 * Stop every other online CPU: each runs `on_cpu(frame)` (may be NULL) in NMI
 * context, acknowledges, and parks forever with interrupts off.  Waits at
 * most 1 s (os_timestamp_ns) for the acknowledgements.  Returns 0 when every
 * CPU answered, NMI_ETIMEDOUT if some did not, NMI_EALREADY if another CPU
 * has already started a shootdown (the caller will be stopped by it).
 * Callable in any context, NMI included.  Takes over the emergency slot.
 */
int nmi_shootdown_cpus(void (*on_cpu)(struct nmi_frame *f));

/* True when `cpu` answered a shootdown and is parked.  NMI-safe: yes. */
bool nmi_cpu_parked(unsigned cpu);

/* --- statistics -------------------------------------------------------- */

struct nmi_cpu_stats {
	uint64_t entries;	/* nmi_entry() calls that ran the dispatch */
	uint64_t normal;	/* NMIs claimed by the local chain */
	uint64_t unknown;	/* NMIs no chain and no reason explained */
	uint64_t external;	/* NMIs explained by SERR / IOCHK */
	uint64_t swallowed;	/* back-to-back NMIs dropped silently */
	uint64_t latched;	/* nested NMIs recorded by nmi_entry() */
	uint64_t repeated;	/* dispatch restarts for a latched NMI */
	uint64_t nested;	/* nested NMIs caught by the arch entry
				 * (nmi_note_nested() + os_nmi_arch_nested()) */
	uint64_t from_user;	/* NMIs that interrupted user mode */
	uint64_t emergency;	/* NMIs consumed by the emergency handler */
	uint64_t reason_busy;	/* reason lock held elsewhere: reasons skipped */
	uint64_t probe_sent;	/* lost-NMI probes sent */
	uint64_t probe_found;	/* claimed NMIs that arrived with a probe pending */
	uint64_t probe_absorbed;/* unclaimed NMIs recognised as our probe */
	uint64_t probe_collapsed; /* probe marks found stale: its NMI was claimed */
};

struct nmi_handler_info {
	char name[NMI_NAME_MAX];
	unsigned type;
	uint64_t calls;		/* times called */
	uint64_t claimed;	/* events claimed, summed */
	uint64_t longest_ns;	/* longest single call */
	uint64_t slow;		/* calls longer than nmi_longest_ns */
};

/* Copy CPU `cpu`'s counters.  Returns NMI_ERANGE for a bad CPU. */
int nmi_get_cpu_stats(unsigned cpu, struct nmi_cpu_stats *out);

/*
 * The idx-th registered handler (0, 1, ... in chain order, chain by chain).
 * Returns NMI_ENOENT past the last one.
 */
int nmi_get_handler_info(unsigned idx, struct nmi_handler_info *out);

/*
 * Tables for the shell's `nmi stat` (one row per online CPU) and
 * `nmi handlers`, written line by line to `write`.  Not for NMI context.
 */
void nmi_print_stats(nk_write_fn *write, void *arg);
void nmi_print_handlers(nk_write_fn *write, void *arg);

/* A name for an nmi_type ("LOCAL", ...), or "?" */
const char *nmi_type_name(unsigned type);

/* --- tunables (boot parameters) ----------------------------------------- */

extern bool unknown_nmi_panic;		/* panic on an unknown NMI (default off) */
extern uint64_t nmi_longest_ns;		/* warn above this handler time (1 ms) */
extern bool nmi_lost_recovery;		/* run the lost-NMI probe (default on) */

/* --- the lost-NMI probe (core/nmi_probe.c) ------------------------------ */

/*
 * Called by the dispatch, in NMI context, on this CPU.
 * nmi_probe_on_claimed(): an NMI was claimed; counts a find when a probe was
 * pending and queues the next probe.  nmi_probe_on_unclaimed(): nothing
 * claimed the NMI; returns true (and clears the mark) if it was our probe.
 * nmi_probe_request(): queue the next probe without counting a find (the
 * dispatch could not examine a source: the reason lock was busy).
 */
void nmi_probe_on_claimed(void);
void nmi_probe_on_claimed_cpu(unsigned cpu);	/* cpu == os_cpu_id(): the dispatch's */
void nmi_probe_request(void);
bool nmi_probe_on_unclaimed(void);

struct nmi_probe_stats {
	uint64_t sent, found, absorbed, collapsed;
};
void nmi_probe_get_stats(unsigned cpu, struct nmi_probe_stats *out);

/* True while CPU `cpu` has a probe NMI outstanding.  NMI-safe: yes. */
bool nmi_probe_pending(unsigned cpu);

#endif
