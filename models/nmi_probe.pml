/*
 * nmi_probe.pml - the lost-NMI probe and its pending flag (issue 4, item
 * 2), on one CPU, against NMI sources that behave like hardware and the
 * one-deep NMI latch.
 *
 * What is modelled
 *   - The latch: while an NMI is being dispatched, one more NMI can be
 *     latched; a further one is lost. When the dispatch returns, a latched
 *     NMI is delivered at once (back to back, at the same RIP).
 *     (nmi_entry.pml shows that the entry code turns NMIs nested through
 *     an exception's IRET into exactly this: one repeat, merging the rest.)
 *   - Local sources (LOCAL_EVENTS events in all): an event sets the
 *     source's status and raises its NMI in the same step. The local
 *     handler claims every event whose status it finds set (so one
 *     dispatch can claim two events, and the second event's NMI, latched
 *     meanwhile, then finds nothing: the back-to-back case).
 *   - The external source (EXT_EVENTS events): stays asserted until a
 *     dispatch services it, raises one NMI per assertion (an edge): if
 *     that NMI is lost, nothing raises it again.
 *   - The probe: a lazy irq_work item run from the next timer tick. The
 *     tick callback: clear probe_pending if still set (the NMI of the
 *     previous probe has certainly been delivered by now), set
 *     probe_pending, send a self-NMI. The self-NMI is in flight for an
 *     arbitrary time, but it has arrived by the next tick.
 *   - Dispatch, one step per action:
 *       D_LOCAL    n = xchg(local status, 0)      local chain
 *       D_EXT      if n == 0: read the external reason
 *       D_EXTCLR   service and re-arm it, n = 1
 *       D_DECIDE   n > 0: queue the probe (probe_pending untouched),
 *                         remember whether n > 1; done
 *                  n == 0, back to back after an NMI that claimed more
 *                         than one event: swallow; done
 *                  n == 0 otherwise: D_PEND
 *       D_PEND     probe_pending set: clear it, absorb (not unknown,
 *                  no requeue); else: unknown NMI
 *   Every step of the tick callback and of the dispatch can be
 *   interrupted by a source raising its NMI.
 *
 * Properties
 *   CHECK_UNKNOWN   no dispatch that reports an unknown NMI stands for a
 *                   probe NMI (the probe's NMI was delivered into it, or
 *                   lost on the latch while it was pending)
 *   CHECK_SERVICED  every external event is serviced: when nothing is left
 *                   to happen, the external source is not asserted, no
 *                   probe is queued or in flight, probe_pending is clear
 *   (non-progress)  there is no cycle: with finitely many events, the
 *                   probe stops (checked with -DNP: any cycle is one that
 *                   runs no source, i.e. probing without real events)
 *
 * Broken variants
 *   BROKEN_NO_PROBE        claimed NMIs do not queue the probe
 *   BROKEN_CLEAR_ON_CLAIM  a claimed NMI clears probe_pending
 *   BROKEN_NO_B2B          no back-to-back swallow before the probe check
 *                          (the protocol as first written in issue 4)
 *   BROKEN_NO_TICK_CLEAR   the tick does not clear a stale probe_pending
 *                          (it only sets it)
 */

#ifndef LOCAL_EVENTS
#define LOCAL_EVENTS 3
#endif
#ifndef EXT_EVENTS
#define EXT_EVENTS 1
#endif

/* Sources, as bits of a mask: which NMIs a dispatch stands for. */
#define SRC_LOCAL 1
#define SRC_EXT   2
#define SRC_PROBE 4

/* Dispatch steps. */
#define D_LOCAL  1
#define D_EXT    2
#define D_EXTCLR 3
#define D_DECIDE 4
#define D_PEND   5
#define D_IRET   6

/* Tick callback steps. */
#define T_CLR    1
#define T_SET    2
#define T_SEND   3

byte dpc;               /* dispatch step; 0 = not in an NMI            */
byte tpc;               /* tick callback step; 0 = not running         */
byte claimed;           /* n: events claimed by this dispatch           */
bit latched;
bit b2b;                /* this NMI came from the latch, back to back   */
bit prev_multi;         /* the previous NMI claimed more than one event */

byte local_status;      /* local events flagged, not yet claimed        */
bit ext_asserted;
byte local_left = LOCAL_EVENTS;
byte ext_left = EXT_EVENTS;

bit probe_pending;
bit probe_queued;
bit probe_inflight;
bit probe_wanted;       /* an NMI was claimed since the last probe     */

/* Ghosts. */
byte cur_mask;          /* sources the current dispatch stands for      */
byte latch_mask;        /* sources the latched NMI stands for           */

/* An NMI from source s arrives at the CPU. */
#define RAISE(s) \
    if \
    :: dpc == 0 -> dpc = D_LOCAL; cur_mask = s; b2b = 0 \
    :: dpc != 0 && !latched -> latched = 1; latch_mask = s \
    :: else -> latch_mask = latch_mask | s      /* lost on the latch */ \
    fi

active proctype cpu()
{
    do
    /* ---- sources --------------------------------------------------- */
    :: atomic { local_left > 0 ->
            local_left--; local_status++; RAISE(SRC_LOCAL) }
    :: atomic { ext_left > 0 && !ext_asserted ->
            ext_left--; ext_asserted = 1; RAISE(SRC_EXT) }
    :: atomic { probe_inflight ->
            probe_inflight = 0; RAISE(SRC_PROBE) }
#ifdef PROMPT
        /* PROMPT: the probe NMI reaches the CPU before the end of the
         * first dispatch that starts after it was sent (see D_IRET) */
#endif

    /* ---- the probe's timer tick (not in NMI context) ----------------- */
    /* It runs only once the last probe NMI has arrived: "certainly
     * delivered by the next tick". */
    :: atomic { dpc == 0 && tpc == 0 && probe_queued && !probe_inflight ->
            probe_queued = 0; tpc = T_CLR }
    :: atomic { dpc == 0 && tpc == T_CLR ->
            probe_pending = 0;          /* the last probe NMI is in */
#if defined(AS_WRITTEN) || defined(BROKEN_ALWAYS_SEND)
            tpc = T_SET }
#else
            if
            :: probe_wanted -> probe_wanted = 0; tpc = T_SET
            :: else -> tpc = 0          /* nothing claimed: stop */
            fi }
#endif
    :: atomic { dpc == 0 && tpc == T_SET -> probe_pending = 1; tpc = T_SEND }
    :: atomic { dpc == 0 && tpc == T_SEND ->
            probe_inflight = 1; tpc = 0 }

    /* ---- NMI dispatch ----------------------------------------------- */
    :: atomic { dpc == D_LOCAL ->
            claimed = local_status; local_status = 0;
            dpc = D_EXT }
    :: atomic { dpc == D_EXT ->
            if
            :: claimed == 0 && ext_asserted -> dpc = D_EXTCLR
            :: else -> dpc = D_DECIDE
            fi }
    :: atomic { dpc == D_EXTCLR ->
            ext_asserted = 0; claimed = 1; dpc = D_DECIDE }
    :: atomic { dpc == D_DECIDE ->
            if
            :: claimed > 0 ->
#ifndef BROKEN_NO_PROBE
                probe_wanted = 1; probe_queued = 1;
#endif
#ifdef BROKEN_CLEAR_ON_CLAIM
                probe_pending = 0;
#endif
                dpc = D_IRET
#ifdef B2B
            :: claimed == 0 && b2b && prev_multi ->
                dpc = D_IRET                /* back-to-back: swallowed */
            :: claimed == 0 && !(b2b && prev_multi) -> dpc = D_PEND
#else
            :: claimed == 0 -> dpc = D_PEND
#endif
            fi }
    :: atomic { dpc == D_PEND ->
            if
            :: probe_pending ->
#ifdef AS_WRITTEN
                probe_pending = 0           /* absorbed, probing stops */
#else
                probe_queued = 1            /* absorbed; the next tick
                                             * retires the mark */
#endif
            :: else ->
#ifdef CHECK_UNKNOWN
                assert((cur_mask & SRC_PROBE) == 0);  /* reported unknown */
#endif
                skip
            fi;
            dpc = D_IRET }
#ifdef PROMPT
    :: atomic { dpc == D_IRET && !probe_inflight ->
#else
    :: atomic { dpc == D_IRET ->
#endif
            prev_multi = (claimed > 1); claimed = 0;
            if
            :: latched ->
                latched = 0; dpc = D_LOCAL; b2b = 1;
                cur_mask = latch_mask; latch_mask = 0
            :: else -> dpc = 0; cur_mask = 0
            fi }

    :: else -> break                /* nothing can happen any more */
    od;

#ifdef CHECK_SERVICED
    assert(!ext_asserted && !probe_queued && !probe_inflight && !probe_pending)
#endif
}
