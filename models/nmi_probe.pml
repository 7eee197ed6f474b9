/*
 * nmi_probe.pml - the lost-NMI probe and its pending mark (issue 4 item 2,
 * docs/nmi-dispatch.md "Lost-NMI recovery"), on one CPU, against NMI
 * sources that behave like hardware and the one-deep NMI latch.
 *
 * What is modelled
 *   - The latch: while an NMI is being dispatched, one more NMI can be
 *     latched; a further one is lost. When the dispatch returns, a latched
 *     NMI restarts the dispatch at once, with the same frame (same ip).
 *     (nmi_entry.pml shows that the entry code turns NMIs nested through
 *     an exception's IRET into exactly this: one repeat, the rest merged.)
 *   - Local sources (LOCAL_EVENTS events in all): an event sets the
 *     source's status and raises its NMI in the same step. The local chain
 *     claims every event whose status it finds set, so one dispatch can
 *     claim two events, and the second event's NMI, latched meanwhile,
 *     then finds nothing: the back-to-back case.
 *   - The external source (EXT_EVENTS events): stays asserted until a
 *     dispatch services it and raises one NMI per assertion (an edge): if
 *     that NMI is lost, nothing raises it again.
 *   - The probe item's callback from the timer tick, step by step as in
 *     docs/nmi-dispatch.md: (1) mark set and no NMI entered since the send:
 *     wait for the next tick; (2) mark set and an NMI entered: clear it;
 *     (3) `wanted` clear: stop, else clear it; (4) record the NMI sequence
 *     count, set the mark; send the self-NMI. By default the self-NMI is
 *     delivered at once (it is sent where NMIs are not blocked); with
 *     INFLIGHT it may arrive at any later moment before the next tick.
 *   - Dispatch, one step per action (the numbers of docs/nmi-dispatch.md):
 *       D_LOCAL    4: n = claims of the local chain (takes every status)
 *       D_EXT      5: if n == 0, read the external reason
 *       D_EXTCLR   5: service and re-arm it, n = 1
 *       D_DECIDE   n > 0: set wanted, queue the probe item, leave the mark
 *       D_PEND     6: mark set: absorb (see below); else step 7
 *       D_B2B      7: same ip as the previous NMI, which claimed more than
 *                     one event: swallow; else step 8
 *       D_UNKNOWN  8: an unknown NMI is reported
 *   Every step of the tick callback and of the dispatch can be interrupted
 *   by a source raising its NMI.
 *
 * The absorb rule (step 6)
 *   default      absorb and keep the mark; queue the probe item so that the
 *                next tick retires the mark (tick step 2). Every unclaimed
 *                NMI between the send and that tick is absorbed.
 *   AS_WRITTEN   absorb and clear the mark, queue nothing (the rule first
 *                written in issue 4 and docs/nmi-dispatch.md). Rejected:
 *                an NMI that is empty for another reason (the back-to-back
 *                NMI of a double claim, or the NMI of an external event
 *                serviced by an earlier dispatch) can arrive between
 *                "set the mark" and "send" and take the mark; the probe's
 *                own NMI is then reported unknown (a panic under
 *                unknown_nmi_panic). See docs/rcu-nmi.md.
 *
 * Properties
 *   CHECK_UNKNOWN   no dispatch that reports an unknown NMI stands for a
 *                   probe NMI (the probe's NMI started it, or was lost on
 *                   the latch while that NMI was latched)
 *   CHECK_SERVICED  every external event is serviced: when nothing is left
 *                   to happen, the external source is not asserted, no
 *                   probe is queued or in flight, and the mark is clear
 *   (non-progress)  there is no cycle: with finitely many events, probing
 *                   stops (run with -DNP: every cycle would be one that
 *                   raises no event, i.e. probing without real events)
 *
 * Other switches
 *   INFLIGHT               the self-NMI takes an arbitrary time to arrive
 *   B2B_FIRST              step 7 before step 6
 *   BROKEN_NO_PROBE        claimed NMIs do not queue the probe
 *   BROKEN_CLEAR_ON_CLAIM  a claimed NMI clears the mark
 *   BROKEN_ALWAYS_SEND     the tick sends a probe even if nothing was
 *                          claimed
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
#define D_B2B    6
#define D_UNKNOWN 7
#define D_IRET   8

/* Tick callback steps. */
#define T_CHK    1
#define T_WANT   2
#define T_SET    3
#define T_SEND   4

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
bit entered;            /* an NMI entered since the last send: the NMI
                         * sequence counter has moved                  */

/* Ghosts. */
byte cur_mask;          /* sources the current dispatch stands for      */
byte latch_mask;        /* sources the latched NMI stands for           */

/* An NMI from source s arrives at the CPU. A fresh NMI may interrupt
 * the same ip as the previous one (idle sits on one hlt), so its back-to-
 * back test may go either way; a latched one always has the same ip. */
#define RAISE(s) \
    if \
    :: dpc == 0 -> dpc = D_LOCAL; cur_mask = s; entered = 1; \
        if \
        :: b2b = 0 \
        :: b2b = 1 \
        fi \
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
#ifdef INFLIGHT
    :: atomic { probe_inflight ->
            probe_inflight = 0; RAISE(SRC_PROBE) }
#endif

    /* ---- the probe item's callback, from the timer tick ------------- */
    /* Interrupts are off but NMIs are not. With INFLIGHT the probe NMI
     * has arrived by the next tick (the tick waits for it). */
    :: atomic { dpc == 0 && tpc == 0 && probe_queued && !probe_inflight ->
            probe_queued = 0; tpc = T_CHK }
    :: atomic { dpc == 0 && tpc == T_CHK ->
            if
            :: probe_pending && !entered ->  /* still on its way: wait */
                probe_queued = 1; tpc = 0
            :: probe_pending && entered ->   /* delivered: retire the mark */
                probe_pending = 0; tpc = T_WANT
            :: !probe_pending -> tpc = T_WANT
            fi }
    :: atomic { dpc == 0 && tpc == T_WANT ->
            if
#ifdef BROKEN_ALWAYS_SEND
            :: true -> probe_wanted = 0; tpc = T_SET
#else
            :: probe_wanted -> probe_wanted = 0; tpc = T_SET
            :: else -> tpc = 0              /* nothing claimed: stop */
#endif
            fi }
    :: atomic { dpc == 0 && tpc == T_SET ->
            entered = 0;                    /* record the sequence count */
            probe_pending = 1; tpc = T_SEND }
    :: atomic { dpc == 0 && tpc == T_SEND ->
            tpc = 0;
#ifdef INFLIGHT
            probe_inflight = 1
#else
            RAISE(SRC_PROBE)                /* delivered at once */
#endif
            }

    /* ---- NMI dispatch (docs/nmi-dispatch.md steps 4-8) --------------- */
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
#ifdef B2B_FIRST
            :: else -> dpc = D_B2B
#else
            :: else -> dpc = D_PEND
#endif
            fi }
    :: atomic { dpc == D_PEND ->            /* step 6: our own probe? */
            if
            :: probe_pending ->
#ifdef AS_WRITTEN
                probe_pending = 0;          /* absorbed, probing stops */
#else
                probe_queued = 1;           /* absorbed; the mark stays
                                             * until the next tick */
#endif
                dpc = D_IRET
#ifdef B2B_FIRST
            :: else -> dpc = D_UNKNOWN
#else
            :: else -> dpc = D_B2B
#endif
            fi }
    :: atomic { dpc == D_B2B ->             /* step 7 */
            if
            :: b2b && prev_multi -> dpc = D_IRET    /* swallowed */
#ifdef B2B_FIRST
            :: else -> dpc = D_PEND
#else
            :: else -> dpc = D_UNKNOWN
#endif
            fi }
    :: atomic { dpc == D_UNKNOWN ->         /* step 8 */
#ifdef CHECK_UNKNOWN
            assert((cur_mask & SRC_PROBE) == 0);    /* reported unknown */
#endif
            dpc = D_IRET }
    :: atomic { dpc == D_IRET ->
            prev_multi = (claimed > 1); claimed = 0;
            if
            :: latched ->                   /* the restart, same frame */
                latched = 0; dpc = D_LOCAL; b2b = 1; entered = 1;
                cur_mask = latch_mask; latch_mask = 0
            :: else -> dpc = 0; cur_mask = 0
            fi }

    :: else -> break                /* nothing can happen any more */
    od;

#ifdef CHECK_SERVICED
    assert(!ext_asserted && !probe_queued && !probe_inflight && !probe_pending)
#endif
}
