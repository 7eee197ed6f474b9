/*
 * hpet_handoff.pml - the rotating HPET watchdog's lock-free hand-off and
 * its listen bits (arch/x86_64/watchdog_hpet.c: hand_on(), quiet_here(),
 * retarget(), hpet_wd_nmi(), hpet_wd_stray(); docs/watchdog.md "Who
 * listens to the HPET"), on a ring of NCPU CPUs (3 or 2), against a
 * comparator that fires at any moment and CPUs that take their NMIs at any
 * later moment (a host can stop a vCPU anywhere).
 *
 * What is modelled
 *   - The comparator: `comp`, the CPU whose address its FSB register holds.
 *     An expiry sends an NMI to comp, at any moment (EXPIRIES in all, or
 *     endlessly with ENDLESS). QEMU's echo: after an expiry, one more NMI
 *     to the same address, at any moment before the address changes.
 *   - Other NMIs (OTHERS in all) on any CPU, each claimed by its own
 *     handler: what makes a CPU run hpet_wd_nmi() at an arbitrary moment
 *     (the lazy quiet_here()), and what the target may take for the
 *     expiry when it fits the expected time.
 *   - Per CPU the one-deep NMI latch: an NMI sent while one is pending
 *     merges with it; a pending NMI is dispatched at any later moment, one
 *     dispatch at a time per CPU. A dispatch stands for the sources of
 *     every NMI merged into it (cur[]).
 *   - The dispatch: the doorbell read (listen bit) when it starts; if the
 *     CPU listens, hpet_wd_nmi(): the echo window (same step: only this
 *     CPU's window, which only closes meanwhile), then the load of
 *     `target`; not the target -> quiet_here() step by step (load fsb_cpu:
 *     "ahead"; clear own bit; load fsb_cpu again; set own bit again);
 *     the target -> recognition, then hand_on() step by step in the code's
 *     order: (1) clear prev's bit (rings of 3+), (2) fsb_cpu = next,
 *     (2b) set next's bit, (3) the MMIO retarget (comp = next), (4)
 *     target = next; then last_tsc/last_seq (echo window, "very next
 *     NMI"). Unclaimed and not another source's: the unknown chain,
 *     hpet_wd_stray() (the very next NMI after an HPET one, the target),
 *     else "Uhhuh".
 *   Every step is one atomic step; the other CPUs and the comparator can
 *   act between any two of them.
 *
 * What is abstracted
 *   - Memory order: sequentially consistent. The code makes the steps
 *     that matter seq_cst or locked (fsb_cpu, the listen bits, target with
 *     release/acquire; the MMIO write is not passed by the locked set).
 *   - Time. The target takes any comparator NMI as its expiry (a late
 *     one fits the expected time too); it may take an other NMI for it
 *     (one that fits the expected time) or not ("too early"). A comparator
 *     NMI that the target finds too early (after it took an other NMI for
 *     the expiry) is not modelled: it goes to the unknown chain, where
 *     hpet_wd_stray() claims it because this CPU is the target. The echo
 *     window (a quarter period from the end of the handler) is echo[] = 2
 *     at the end of an HPET NMI and closes at any moment, at the latest at
 *     the second expiry after it opened (a quarter period holds at most
 *     one grid point). "The very next NMI after an HPET one" (last_seq) is
 *     after_hpet[], consumed by the next dispatch on that CPU. "Handed on
 *     within two periods" (handoff_tsc) is taken as always past: that
 *     only takes claims away, so P1 holds without it.
 *   - Not modelled: start/stop (hpet_stop()'s flush), ipi mode, the
 *     back-to-back rule and the lost-NMI probe of the unclaimed path
 *     (which could only claim more), the self-check itself.
 *
 * Properties
 *   CHECK_UNKNOWN   (P1) no dispatch that stands for comparator NMIs only
 *                   ends as an unknown NMI ("Uhhuh"): the CPU listened and
 *                   hpet_wd_nmi() claimed it (expiry, echo, ahead), or
 *                   hpet_wd_stray() did.
 *   CHECK_ROTATION  (P2, a never claim, pan -a; with ENDLESS expiries)
 *                   with expiries going on and every CPU eventually
 *                   dispatching what is pending or running on it (weak
 *                   fairness), hand-offs go on: every CPU becomes the
 *                   target again and again.
 *   CHECK_LISTEN    (P3, rings of 3) a CPU listens only if it is the
 *                   target, or fsb_cpu (the comparator holds or is about to
 *                   hold its address), or the CPU that handed the NMI to
 *                   the target, until the target's hand-off step 1; and
 *                   never more than two CPUs at once.
 *
 * Broken variants
 *   BROKEN_LISTEN_LATE   step 2b after step 3 (next's bit set after the
 *                        MMIO write)
 *   BROKEN_TARGET_EARLY  step 4 before step 3 (the old order)
 *   BROKEN_NO_RECHECK    quiet_here() clears the bit and does not load
 *                        fsb_cpu again
 *   BROKEN_NO_STEP1      hand_on() leaves the predecessor's bit alone
 */

#ifndef NCPU
#define NCPU 3
#endif
#ifndef EXPIRIES
#define EXPIRIES 4
#endif
#ifndef OTHERS
#define OTHERS 2
#endif

#define NEXT(x) (((x) + 1) % NCPU)
#define PREV(x) (((x) + NCPU - 1) % NCPU)

/* NMI sources, as bits: what a dispatch stands for. */
#define SRC_HPET  1
#define SRC_OTHER 2

/* Dispatch steps. */
#define D_IDLE    0
#define H_TARGET  1     /* hpet_wd_nmi(): load target; recognise */
#define S1        2     /* hand_on() steps */
#define S2        3
#define S2B       4
#define S3        5
#define S4        6
#define H_END     7     /* last_tsc, last_seq: made part of the last step */
#define Q_AHEAD   8     /* quiet_here() steps */
#define Q_CLEAR   9
#define Q_RECHECK 10
#define Q_SET     11
#define D_VERDICT 12    /* unclaimed: another source's, a stray, or unknown */

/* Who made the last step (P2's fairness and its hand-off event). */
#define WHO_EXPIRY NCPU
#define WHO_ENV    (NCPU + 1)
#define WHO_HANDOFF (NCPU + 2) /* a hand-off's step 4 (made by the target) */

byte comp;              /* the comparator's FSB address: this CPU */
byte target;
byte fsb_cpu;
bit listen[NCPU];       /* WD_LISTEN_SOURCE in the doorbell word */

byte pmask[NCPU];       /* sources of the pending (latched) NMI, 0: none */
byte dpc[NCPU];         /* dispatch step, D_IDLE: not in an NMI */
byte cur[NCPU];         /* sources the running dispatch stands for */
bit first[NCPU];        /* it is the very next NMI after an HPET one */

byte echo[NCPU];        /* echo window: 2 open, 1 open past one expiry */
bit after_hpet[NCPU];   /* last_seq: the next NMI here is "the very next" */

byte expiries = EXPIRIES;
byte others = OTHERS;
bit echo_due;           /* the last expiry may still echo */
bit hstep;              /* the running hand-off is past its step 1 */
byte who;

#ifdef CHECK_ROTATION
#define WHO(x) who = x
#else
#define WHO(x) skip
#endif

/* An NMI to CPU c: pending, or merged into the pending one. */
#define SEND(c, s) pmask[c] = pmask[c] | (s)

/* The dispatch ends, the NMI claimed. */
#define DONE cur[me] = 0; first[me] = 0; dpc[me] = D_IDLE

/* Hand-off step order: after step X comes AFTER_X. */
#if defined(BROKEN_LISTEN_LATE)
#define AFTER_S2  S3
#define AFTER_S2B S4
#define AFTER_S3  S2B
#define AFTER_S4  H_END
#elif defined(BROKEN_TARGET_EARLY)
#define AFTER_S2  S2B
#define AFTER_S2B S4
#define AFTER_S3  H_END
#define AFTER_S4  S3
#else
#define AFTER_S2  S2B
#define AFTER_S2B S3
#define AFTER_S3  S4
#define AFTER_S4  H_END
#endif

/* After a hand-off step: the next one, or, after the last, the end of
 * hpet_wd_nmi() in the same step (last_tsc, last_seq: the echo window
 * opens, the next NMI here is "the very next"); the NMI is claimed. */
#define STEP_TO(n) \
    if \
    :: (n) == H_END -> echo[me] = 2; after_hpet[me] = 1; DONE \
    :: else -> dpc[me] = (n) \
    fi

active [NCPU] proctype cpu()
{
    byte me = _pid;

end:
    do
    :: atomic { dpc[me] == D_IDLE && pmask[me] ->
            /* The NMI is taken: the NMI sequence count moves; the
             * doorbell's one load decides whether hpet_wd_nmi() runs;
             * its first test is this CPU's echo window. */
            WHO(me);
            cur[me] = pmask[me]; pmask[me] = 0;
            first[me] = after_hpet[me]; after_hpet[me] = 0;
            if
            :: listen[me] && echo[me] > 0 -> DONE       /* the echo */
            :: listen[me] && echo[me] == 0 -> dpc[me] = H_TARGET
            :: else -> dpc[me] = D_VERDICT
            fi }
    :: atomic { dpc[me] == H_TARGET ->
            WHO(me);
            if
            :: target != me -> dpc[me] = Q_AHEAD
            :: target == me && (cur[me] & SRC_HPET) ->
                dpc[me] = S1                    /* the expiry */
            :: target == me && !(cur[me] & SRC_HPET) ->
                dpc[me] = S1                    /* an NMI that fits the time */
            :: target == me && !(cur[me] & SRC_HPET) ->
                dpc[me] = D_VERDICT             /* too early: not ours */
            fi }

    /* ---- hand_on() ------------------------------------------------- */
    :: atomic { dpc[me] == S1 ->
            WHO(me);
#ifndef BROKEN_NO_STEP1
            if
            :: PREV(me) != NEXT(me) -> listen[PREV(me)] = 0
            :: else
            fi;
#endif
            hstep = 1; dpc[me] = S2 }
    :: atomic { dpc[me] == S2 ->
            WHO(me); fsb_cpu = NEXT(me); STEP_TO(AFTER_S2) }
    :: atomic { dpc[me] == S2B ->
            WHO(me); listen[NEXT(me)] = 1; STEP_TO(AFTER_S2B) }
    :: atomic { dpc[me] == S3 ->
            WHO(me); comp = NEXT(me); echo_due = 0; STEP_TO(AFTER_S3) }
    :: atomic { dpc[me] == S4 ->
            WHO(WHO_HANDOFF); target = NEXT(me); hstep = 0; STEP_TO(AFTER_S4) }

    /* ---- quiet_here() ---------------------------------------------- */
    :: atomic { dpc[me] == Q_AHEAD ->
            WHO(me);
            if
            :: fsb_cpu == me -> DONE            /* ahead of the hand-over */
            :: else -> dpc[me] = Q_CLEAR
            fi }
    :: atomic { dpc[me] == Q_CLEAR ->
            WHO(me);
            listen[me] = 0;
#ifdef BROKEN_NO_RECHECK
            dpc[me] = D_VERDICT
#else
            dpc[me] = Q_RECHECK
#endif
            }
    :: atomic { dpc[me] == Q_RECHECK ->
            WHO(me);
            if
            :: fsb_cpu == me -> dpc[me] = Q_SET
            :: else -> dpc[me] = D_VERDICT
            fi }
    :: atomic { dpc[me] == Q_SET ->
            WHO(me); listen[me] = 1; dpc[me] = D_VERDICT }

    /* ---- unclaimed: another source's, a stray, or unknown ------------ */
    :: atomic { dpc[me] == D_VERDICT ->
            WHO(me);
            if
            :: cur[me] & SRC_OTHER -> skip      /* its own handler's */
            :: else ->
                if
                :: first[me] || target == me -> skip    /* a stray */
                /* (handoff_tsc: taken as past, see the top) */
                :: else ->
#ifdef CHECK_UNKNOWN
                    assert(!(cur[me] & SRC_HPET))       /* "Uhhuh" */
#else
                    skip
#endif
                fi
            fi;
            DONE }
    od
}

/* The comparator, the other NMI sources, and time passing. */
active proctype env()
{
    byte c;

    /* hpet_start(): comp, target and fsb_cpu name CPU 0 (all zero), and
     * CPU 0 listens before the first expiry. Nothing is sent before. */
    listen[0] = 1;
end:
    do
    :: atomic {
#ifndef ENDLESS
            expiries > 0 -> expiries--;
#else
            true ->
#endif
            WHO(WHO_EXPIRY);
            SEND(comp, SRC_HPET);
            echo_due = 1;
            for (c : 0 .. NCPU - 1) {
                if
                :: echo[c] > 0 -> echo[c]--
                :: else
                fi
            }
            c = 0 }
    :: atomic { echo_due ->                 /* the same address, once */
            WHO(WHO_ENV); echo_due = 0; SEND(comp, SRC_HPET) }
    :: atomic { others > 0 ->
            WHO(WHO_ENV); others--;
            select (c : 0 .. NCPU - 1);
            SEND(c, SRC_OTHER); c = 0 }
    :: atomic { echo[0] > 0 -> WHO(WHO_ENV); echo[0] = 0 }
    :: atomic { echo[1] > 0 -> WHO(WHO_ENV); echo[1] = 0 }
#if NCPU > 2
    :: atomic { echo[2] > 0 -> WHO(WHO_ENV); echo[2] = 0 }
#endif
    od
}

#ifdef CHECK_LISTEN
#define LOK(x) (!listen[x] || target == x || fsb_cpu == x || \
                (PREV(target) == x && !hstep))
#define P3OK (LOK(0) && LOK(1) && LOK(2) && \
              listen[0] + listen[1] + listen[2] <= 2)
active proctype p3()
{
end:
    atomic { !P3OK -> assert(P3OK) }
}
#endif

#ifdef CHECK_ROTATION
/*
 * P2 as a never claim (spin's ltl translation of the same formula with
 * one fairness conjunct per CPU takes minutes): it accepts exactly the
 * runs in which expiries go on, every CPU eventually makes a step of the
 * NMI pending or running on it (weak fairness: who == c, or c has nothing
 * to do), again and again, and from some point on no hand-off stores
 * `target` any more. `target` only ever moves to the next CPU of the ring
 * (only the target hands on, to its successor), so hand-offs going on
 * means every CPU becomes the target again and again.
 */
#define EXPIRES   (who == WHO_EXPIRY)
#define HANDOFF   (who == WHO_HANDOFF)
#define FAIR(c)   (who == c || (dpc[c] == D_IDLE && !pmask[c]))
never {
T_init:
    do
    :: true
    :: !HANDOFF -> goto W_exp
    od;
W_exp:
    do
    :: !HANDOFF && EXPIRES -> goto W_0
    :: !HANDOFF
    od;
W_0:
    do
    :: !HANDOFF && FAIR(0) -> goto W_1
    :: !HANDOFF
    od;
W_1:
    do
#if NCPU > 2
    :: !HANDOFF && FAIR(1) -> goto W_2
#else
    :: !HANDOFF && FAIR(1) -> goto accept_all
#endif
    :: !HANDOFF
    od;
#if NCPU > 2
W_2:
    do
    :: !HANDOFF && FAIR(2) -> goto accept_all
    :: !HANDOFF
    od;
#endif
accept_all:
    do
    :: !HANDOFF -> goto W_exp
    od
}
#endif

