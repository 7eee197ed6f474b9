/*
 * rcu_dynticks.pml - the two-counter RCU dynticks protocol of issue 6 (item
 * 1), checked against NMIs nested at every step and a grace-period reader.
 *
 * One CPU runs process-level code (idle, non-idle, or going back and forth)
 * and up to MAXNEST NMIs stacked on top of each other: at every step of every
 * level (including between a load and the store that follows it) a new NMI
 * may interrupt. A second process is the RCU grace-period machinery of
 * another CPU, sampling this CPU's dynticks counter.
 *
 * Protocol (per CPU):
 *   dynticks      atomic, odd = RCU watches this CPU, even = idle
 *   nmi_nesting   plain per-CPU counter, touched only by this CPU
 *   rcu_nmi_enter: if dynticks is even: atomic_inc(dynticks); nesting += 1
 *                  else:                nesting += 2
 *   rcu_nmi_exit:  if nesting != 1:     nesting -= 2
 *                  else:                nesting = 0; atomic_inc(dynticks)
 *   idle exit:     atomic_inc(dynticks); nesting = NONIDLE
 *   idle entry:    nesting = 0; atomic_inc(dynticks)
 *
 * Compile-time switches:
 *   START_NONIDLE   start with the CPU non-idle (default: idle)
 *   TRANSITIONS     process level alternates idle <-> non-idle forever
 *   CHECK_WATCH     assert dynticks is odd whenever a handler body runs,
 *                   and still odd when the last exit from idle increments it
 *   CHECK_COUNTERS  assert every NMI leaves both counters as it found them
 *                   (dynticks advanced by 2 if it entered from idle)
 *   CHECK_GP        assert no grace period ends while a reader that was
 *                   running when it began is still running
 *   BROKEN_PLUS1        nesting always moves by 1 (no +2 trick)
 *   BROKEN_ENTER_ORDER  from idle: nesting updated before dynticks
 *   BROKEN_EXIT_ORDER   to idle: dynticks incremented before nesting = 0
 */

#ifndef MAXNEST
#define MAXNEST 4               /* the outer NMI and 3 nested levels */
#endif

/* dynticks is kept modulo 8: a wrapped counter can only make the grace
 * period's "has it changed?" test answer "no" when the real counter did
 * change, which delays a grace period and never ends one early. */
#define DT_MASK 7
#define DT_INC(x) x = ((x) + 1) & DT_MASK

/* Process-level nesting while non-idle. Any value other than 1 that stays
 * clear of 1 under +-2 works; a large even value (as in the real code) is
 * used so that a nesting accident cannot reach 1 by chance. */
#define NONIDLE 64

/* Program counter values of one NMI level. */
#define EN_TEST   1     /* t = dynticks & 1                          */
#define EN_INC    2     /* atomic_inc(&dynticks)                     */
#define EN_NLD    3     /* r = nesting                               */
#define EN_NST    4     /* nesting = r + 1 or r + 2                  */
#define BODY      5     /* handler body: RCU read-side section      */
#define BODY_END  6     /* handler body done                         */
#define EX_NLD    7     /* r = nesting; choose by r != 1             */
#define EX_NST    8     /* nesting = r - 2                           */
#define EX_ZERO   9     /* nesting = 0                               */
#define EX_INC   10     /* atomic_inc(&dynticks)                     */
#define IRET     11     /* return from this NMI                      */

/* Process-level program counter values (TRANSITIONS). */
#define PL_IDLE   1     /* idle; next: atomic_inc(&dynticks)         */
#define PL_WAKE2  2     /* next: nesting = NONIDLE                   */
#define PL_RUN    3     /* non-idle; next: nesting = 0               */
#define PL_SLEEP2 4     /* next: atomic_inc(&dynticks)               */

byte dynticks;
byte nesting;
byte reading;           /* ghost: bit L set while level L's body runs */
byte gp_waits_for;      /* ghost: readers running when this GP began    */

#ifdef CHECK_WATCH
#define WATCH_OK assert(reading == 0 || (dynticks & 1) == 1)
#else
#define WATCH_OK skip
#endif

active proctype cpu()
{
    /* NMI levels are numbered 1..MAXNEST; index 0 stands for process
     * level and its pc stays 0, so no NMI step matches while depth == 0. */
    byte depth;                 /* NMIs in progress; level depth runs   */
    byte pc[MAXNEST+1];
    bit from_idle[MAXNEST+1];   /* what EN_TEST saw                     */
    byte r[MAXNEST+1];          /* the value a load put in a register   */
    bit dtpar[MAXNEST+1];       /* ghost: dynticks parity on arrival    */
    byte ns0[MAXNEST+1];        /* ghost: nesting when this NMI came    */
    byte incs[MAXNEST+1];       /* ghost: this level's increments of
                                 * dynticks                             */
    byte pl;

#ifdef START_NONIDLE
    dynticks = 1; nesting = NONIDLE; pl = PL_RUN;
#else
    dynticks = 0; nesting = 0; pl = PL_IDLE;
#endif

    do
    /* A new NMI, at any step of the code below it. */
    :: atomic { depth < MAXNEST ->
            depth++;
            dtpar[depth] = dynticks & 1; ns0[depth] = nesting;
            pc[depth] = EN_TEST }

#ifdef TRANSITIONS
    /* Process level: wake from idle, go back to idle. */
    :: atomic { depth == 0 && pl == PL_IDLE   -> DT_INC(dynticks); pl = PL_WAKE2 }
    :: atomic { depth == 0 && pl == PL_WAKE2  -> nesting = NONIDLE; pl = PL_RUN }
    :: atomic { depth == 0 && pl == PL_RUN    -> nesting = 0; pl = PL_SLEEP2 }
    :: atomic { depth == 0 && pl == PL_SLEEP2 -> DT_INC(dynticks); pl = PL_IDLE }
#endif

    /* rcu_nmi_enter */
    :: atomic { depth > 0 && pc[depth] == EN_TEST ->
            from_idle[depth] = ((dynticks & 1) == 0);
#ifdef BROKEN_ENTER_ORDER
            if
            :: from_idle[depth] -> pc[depth] = EN_NLD
            :: else -> pc[depth] = EN_NLD
            fi }
#else
            if
            :: from_idle[depth] -> pc[depth] = EN_INC
            :: else -> pc[depth] = EN_NLD
            fi }
#endif
    :: atomic { depth > 0 && pc[depth] == EN_INC ->
            DT_INC(dynticks); incs[depth]++;
#ifdef BROKEN_ENTER_ORDER
            pc[depth] = BODY }
#else
            pc[depth] = EN_NLD }
#endif
    :: atomic { depth > 0 && pc[depth] == EN_NLD ->
            r[depth] = nesting; pc[depth] = EN_NST }
    :: atomic { depth > 0 && pc[depth] == EN_NST ->
#ifdef BROKEN_PLUS1
            nesting = r[depth] + 1;
#else
            if
            :: from_idle[depth] -> nesting = r[depth] + 1
            :: else -> nesting = r[depth] + 2
            fi;
#endif
#ifdef BROKEN_ENTER_ORDER
            if
            :: from_idle[depth] -> pc[depth] = EN_INC
            :: else -> pc[depth] = BODY
            fi }
#else
            pc[depth] = BODY }
#endif

    /* The handler body, an RCU reader. */
    :: atomic { depth > 0 && pc[depth] == BODY ->
            reading = reading | (1 << depth);
            WATCH_OK;
            pc[depth] = BODY_END }
    :: atomic { depth > 0 && pc[depth] == BODY_END ->
            WATCH_OK;
            reading = reading & ~(1 << depth);
            gp_waits_for = gp_waits_for & ~(1 << depth);
            pc[depth] = EX_NLD }

    /* rcu_nmi_exit */
    :: atomic { depth > 0 && pc[depth] == EX_NLD ->
            r[depth] = nesting;
#ifdef CHECK_COUNTERS
            assert(r[depth] != 0);     /* nesting never 0 on exit */
#endif
            if
            :: r[depth] != 1 -> pc[depth] = EX_NST
#ifdef BROKEN_EXIT_ORDER
            :: else -> pc[depth] = EX_INC
#else
            :: else -> pc[depth] = EX_ZERO
#endif
            fi }
    :: atomic { depth > 0 && pc[depth] == EX_NST ->
#ifdef BROKEN_PLUS1
            nesting = r[depth] - 1;
#else
            nesting = r[depth] - 2;
#endif
            pc[depth] = IRET }
    :: atomic { depth > 0 && pc[depth] == EX_ZERO ->
            nesting = 0;
#ifdef BROKEN_EXIT_ORDER
            pc[depth] = IRET }
#else
            pc[depth] = EX_INC }
#endif
    :: atomic { depth > 0 && pc[depth] == EX_INC ->
#ifdef CHECK_WATCH
            /* The counter EX_INC finds is still the odd one BODY_END saw:
             * the code reads its BODY_END check from this increment. */
            assert((dynticks & 1) == 1);
#endif
            DT_INC(dynticks); incs[depth]++;
#ifdef BROKEN_EXIT_ORDER
            pc[depth] = EX_ZERO }
#else
            pc[depth] = IRET }
#endif

    /* Return to the interrupted level: nesting as this NMI found it,
     * dynticks with the parity it found, and this NMI's own increments of
     * dynticks are exactly 2 if it entered from idle, else none. (Every
     * change of dynticks is some level's own increment, so this also
     * gives: dynticks advanced by 2 per NMI that entered from idle.) */
    :: atomic { depth > 0 && pc[depth] == IRET ->
#ifdef CHECK_COUNTERS
            assert(nesting == ns0[depth]);
            assert((dynticks & 1) == dtpar[depth]);
            assert((from_idle[depth] && incs[depth] == 2) ||
                   (!from_idle[depth] && incs[depth] == 0));
#endif
            pc[depth] = 0; from_idle[depth] = 0; r[depth] = 0;
            dtpar[depth] = 0; ns0[depth] = 0; incs[depth] = 0;
            depth-- }
    od
}

/*
 * The grace-period side, on another CPU: a grace period begins, snapshots
 * this CPU's dynticks; the CPU is quiescent if the snapshot was even (idle:
 * no reader can be running) or once dynticks differs from the snapshot (the
 * CPU has been through idle since). Then the grace period ends. Other kinds
 * of quiescent state (context switch, user mode) are not modelled: they
 * only make grace periods end, and do not involve the NMI counters.
 */
active proctype gp()
{
    byte snap;
    do
    :: atomic { gp_waits_for = reading }      /* grace period begins */
       snap = dynticks;
       if
       :: (snap & 1) == 0 -> skip
       :: else -> (dynticks != snap)         /* wait for a change */
       fi;
#ifdef CHECK_GP
       assert(gp_waits_for == 0);            /* grace period ends */
#endif
       skip
    od
}
