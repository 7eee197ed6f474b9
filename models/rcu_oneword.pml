/*
 * rcu_oneword.pml - the alternative to rcu_dynticks.pml that issue 6 asks
 * to compare: one atomic word per CPU whose low 4 bits hold the NMI nesting
 * depth and whose upper bits hold the idle epoch counter.
 *
 * Same CPU and grace-period processes as rcu_dynticks.pml: process level
 * (idle, non-idle or alternating), up to MAXNEST NMIs nested at every step,
 * and the grace-period reader on another CPU.
 *
 * Protocol (per CPU), ct = (epoch << 4) | depth:
 *   RCU watches this CPU iff depth != 0 or epoch is odd.
 *   rcu_nmi_enter: atomic_add(&ct, 1)                 (one locked insn)
 *   rcu_nmi_exit:  r = ct;
 *                  if depth(r) == 1 and epoch(r) even: atomic_add(&ct, 0x20 - 1)
 *                  else:                               atomic_add(&ct, -1)
 *                  (the outermost exit from idle leaves depth 0 and moves
 *                  the epoch on by 2, so that the grace period can tell
 *                  that the CPU went through idle)
 *   idle exit / idle entry: atomic_add(&ct, 0x10)
 *   grace period: s = ct; quiescent if s shows "not watching", or as soon
 *                 as epoch(ct) != epoch(s).
 *
 * The epoch is kept modulo 8 (3 bits above the 4 depth bits): as in
 * rcu_dynticks.pml, a wrapped epoch can only hide a change from the grace
 * period, never invent one.
 *
 * Compile-time switches: START_NONIDLE, TRANSITIONS, CHECK_WATCH,
 * CHECK_COUNTERS, CHECK_GP as in rcu_dynticks.pml, and
 *   BROKEN_GP_WORD      the grace period takes any change of the word (not
 *                       of the epoch) as a quiescent state
 *   BROKEN_BUMP_ALWAYS  every NMI exit moves the epoch on, not only the
 *                       outermost one from idle
 */

#ifndef MAXNEST
#define MAXNEST 4
#endif

#define CT_MASK   127           /* 0x7f: 3 epoch bits + 4 depth bits */
#define DEPTH(w)  ((w) & 15)
#define ODD(w)    (((w) & 16) != 0)
#define EPOCH(w)  ((w) & 112)
#define WATCHING(w) (DEPTH(w) != 0 || ODD(w))
#define CT_ADD(v) ct = (ct + (v)) & CT_MASK

#define EN_ADD    1     /* atomic_add(&ct, 1)                        */
#define BODY      5
#define BODY_END  6
#define EX_LD     7     /* r = ct                                    */
#define EX_ADD    8     /* atomic_add(&ct, r said outermost ? 0x1f : -1) */
#define IRET     11

#define PL_IDLE   1
#define PL_RUN    3

byte ct;
byte reading;           /* ghost: bit L set while level L's body runs */
byte gp_waits_for;      /* ghost: readers running when this GP began   */

#ifdef CHECK_WATCH
#define WATCH_OK assert(reading == 0 || WATCHING(ct))
#else
#define WATCH_OK skip
#endif

active proctype cpu()
{
    byte depth;                 /* NMI levels 1..MAXNEST, 0 = process  */
    byte pc[MAXNEST+1];
    byte r[MAXNEST+1];
    bit outer[MAXNEST+1];       /* EX_LD saw the outermost exit from idle */
    byte d0[MAXNEST+1];         /* ghost: depth field on arrival        */
    bit par0[MAXNEST+1];        /* ghost: epoch parity on arrival        */
    bit idle0[MAXNEST+1];       /* ghost: arrived while not watched     */
    byte bumps[MAXNEST+1];      /* ghost: this level's epoch moves      */
    byte pl;

#ifdef START_NONIDLE
    ct = 16; pl = PL_RUN;
#else
    ct = 0; pl = PL_IDLE;
#endif

    do
    :: atomic { depth < MAXNEST ->
            depth++;
            d0[depth] = DEPTH(ct); par0[depth] = ODD(ct);
            idle0[depth] = !WATCHING(ct);
            pc[depth] = EN_ADD }

#ifdef TRANSITIONS
    :: atomic { depth == 0 && pl == PL_IDLE -> CT_ADD(16); pl = PL_RUN }
    :: atomic { depth == 0 && pl == PL_RUN  -> CT_ADD(16); pl = PL_IDLE }
#endif

    /* rcu_nmi_enter: one locked add, nothing to interrupt in between. */
    :: atomic { depth > 0 && pc[depth] == EN_ADD ->
            CT_ADD(1);
#ifdef CHECK_COUNTERS
            assert(DEPTH(ct) != 0);             /* no carry out of depth */
#endif
            pc[depth] = BODY }

    :: atomic { depth > 0 && pc[depth] == BODY ->
            reading = reading | (1 << depth);
            WATCH_OK;
            pc[depth] = BODY_END }
    :: atomic { depth > 0 && pc[depth] == BODY_END ->
            WATCH_OK;
            reading = reading & ~(1 << depth);
            gp_waits_for = gp_waits_for & ~(1 << depth);
            pc[depth] = EX_LD }

    /* rcu_nmi_exit: the test and the locked add are two steps. */
    :: atomic { depth > 0 && pc[depth] == EX_LD ->
            r[depth] = ct;
#ifdef CHECK_COUNTERS
            assert(DEPTH(r[depth]) != 0);        /* never 0 on exit */
#endif
#ifdef BROKEN_BUMP_ALWAYS
            outer[depth] = 1;
#else
            outer[depth] = (DEPTH(r[depth]) == 1 && !ODD(r[depth]));
#endif
            pc[depth] = EX_ADD }
    :: atomic { depth > 0 && pc[depth] == EX_ADD ->
            if
            :: outer[depth] -> CT_ADD(31); bumps[depth] = bumps[depth] + 2
            :: else -> CT_ADD(CT_MASK)           /* -1 modulo 2^7 */
            fi;
            pc[depth] = IRET }

    :: atomic { depth > 0 && pc[depth] == IRET ->
#ifdef CHECK_COUNTERS
            assert(DEPTH(ct) == d0[depth]);
            assert(ODD(ct) == par0[depth]);
            assert((idle0[depth] && bumps[depth] == 2) ||
                   (!idle0[depth] && bumps[depth] == 0));
#endif
            pc[depth] = 0; r[depth] = 0; outer[depth] = 0; d0[depth] = 0;
            par0[depth] = 0; idle0[depth] = 0; bumps[depth] = 0;
            depth-- }
    od
}

active proctype gp()
{
    byte snap;
    do
    :: atomic { gp_waits_for = reading }      /* grace period begins */
       snap = ct;
       if
       :: !WATCHING(snap) -> skip
#ifdef BROKEN_GP_WORD
       :: else -> (ct != snap)
#else
       :: else -> (EPOCH(ct) != EPOCH(snap))
#endif
       fi;
#ifdef CHECK_GP
       assert(gp_waits_for == 0);            /* grace period ends */
#endif
       skip
    od
}
