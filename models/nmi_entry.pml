/*
 * nmi_entry.pml - nmikit's nested-NMI-safe entry protocol (issue 3, entry
 * items 1-4), one CPU, at the level of its instructions.
 *
 * What is modelled
 *   - The hardware: NMI delivery writes the interrupted context into the
 *     one hardware frame slot H at the top of the NMI IST stack (the IST
 *     always starts at the same address, so every delivery overwrites H),
 *     switches to the NMI stack and blocks NMIs. NMIs stay blocked until
 *     the next IRET, any IRET. One NMI can be latched while blocked; one
 *     more is lost. A latched NMI is delivered before the next instruction
 *     once NMIs are unblocked.
 *   - An NMI source that raises up to NMI_BUDGET NMIs at any moment.
 *   - "Exception + IRET" inside the handler (#DB, #BP, #PF...): before
 *     any instruction from end_repeat_nmi to the final IRETQ, and in the
 *     body of the user-mode path, the handler may take an exception whose
 *     IRET unblocks NMIs. The exception handler itself is one step (it
 *     runs on its own stack and returns to the same instruction). The
 *     entry code before end_repeat_nmi is assumed not to fault (the
 *     kernel refuses breakpoints there); EXC_IN_REPEAT drops that
 *     assumption for the repeat_nmi region, where the design tolerates a
 *     fault as well.
 *   - The interrupted program: user mode (which may point RSP anywhere,
 *     into the NMI stack too), the first kernel instruction after SYSCALL
 *     (kernel CS, RSP still the user's value, IF clear) and kernel code on
 *     the task's kernel stack; it moves between them forever.
 *   - The entry code, one step per instruction that matters:
 *       N_CS     H.CS is user? -> user path
 *       N_REP    H.RIP in [repeat_nmi, end_repeat_nmi)? -> IRET through H
 *       N_EXEC   executing == 1? -> nested
 *       N_WIN    H.RIP == the final IRETQ and H.RSP in the NMI stack?
 *                -> nested
 *       N_S0..3  first NMI: S := H, one word per step
 *       R_EXEC   repeat_nmi: executing := 1
 *       R_W0..3  W := S, one word per step
 *       B_SAVE   end_repeat_nmi: save registers
 *       B_BODY   the handler body starts, B_BODY2 it goes on
 *       B_REST   restore registers
 *       X_CLEAR  executing := 0
 *       X_IRET   IRETQ through W (the exit window is this instruction)
 *       N_NEST0..3  nested: W := {repeat_nmi, kernel CS, IF clear,
 *                   NMI stack}, one word per step
 *       N_OUT    IRET through H
 *       U_C0     user path: switch to the task's kernel stack
 *       U_C1..4  copy H to the kernel stack (K), one word per step
 *       U_BODY, U_BODY2  handler body; U_IRET: IRET through K
 *   A frame has four words: RIP, CS, RFLAGS (only IF matters), RSP (only
 *   which stack it points into matters).
 *
 * What is abstracted
 *   - GS base, CR2, DR7 and the general registers: they are saved and
 *     restored by the same code that saves the frame; the model checks the
 *     frame words, which are what the nesting can corrupt.
 *   - The C-level per-CPU state machine (item 6 of issue 3): it is a second
 *     line of defence; this model checks that the assembly alone suffices.
 *   - Other IST exceptions (#DB, #MC) interrupting the NMI code on their
 *     own stacks: they are the "exception + IRET" step.
 *
 * Properties (each switched on by its define, all on for the real check)
 *   CHECK_HANDLED   every delivered NMI is followed by the start of a
 *                   handler body before the CPU returns to the code the
 *                   NMI path interrupted (checked at that IRET, for the
 *                   IST kernel path and the user path separately), and at
 *                   every body start, bodies started <= NMIs delivered.
 *                   NMIs that arrive while a repeat is already due merge
 *                   into it, as in the hardware latch, but no NMI is
 *                   handled twice.
 *   CHECK_CONTEXT   every IRET that leaves NMI code lands on exactly the
 *                   context (RIP, CS, IF, RSP) the NMI interrupted; every
 *                   IRET of the first NMI that stays in NMI code lands on
 *                   repeat_nmi with the NMI's own CS, flags and stack.
 *   CHECK_SAVED     S is never written while it holds the interrupted
 *                   context, and every copy W := S reads that context.
 *   CHECK_CLASSIFY  the entry's verdict (user / nested / first) is the
 *                   truth (whether NMI code was running when it came).
 *   ltl returns     []<> the program runs: the fixup never loops forever
 *                   (checked as an acceptance cycle search, NMI_BUDGET
 *                   bounds the NMIs so "forever" means "without new NMIs").
 *
 * Broken variants (each must be rejected):
 *   BROKEN_NO_EXEC      step 4 (executing check) removed
 *   BROKEN_NO_WIN       step 5 (exit window check) removed
 *   BROKEN_NO_REPEAT    step 3 (repeat region check) removed
 *   BROKEN_WIN_RSP_ONLY step 5 tests only "RSP in NMI stack"
 *   BROKEN_EXEC_LATE    executing := 1 moved after end_repeat_nmi
 *   BROKEN_CLEAR_EARLY  executing := 0 before restoring registers, so the
 *                       exit window is two instructions
 *   BROKEN_FAULT_PROLOGUE  an exception (and its IRET) may happen in the
 *                       entry checks and the S := H copy too
 * Other switches (variants that must still hold):
 *   EXC_IN_REPEAT   exceptions also inside repeat_nmi (see above)
 *   WCOPY_FIRST     in repeat_nmi, copy W := S before executing := 1
 *                   (both stay inside the repeat region)
 *   NMI_BUDGET      how many NMIs the source may raise (default 4)
 */

#ifndef NMI_BUDGET
#define NMI_BUDGET 4
#endif

/* Program positions: the code an NMI can interrupt from outside. */
#define P_USER   1      /* user mode                                   */
#define P_SYSC   2      /* first kernel insn after SYSCALL, user RSP   */
#define P_KERN   3      /* kernel code on the task's kernel stack      */

/* NMI IST code, kernel path: everything from N_CS to N_OUT. (Gaps in the
 * numbering are only for readability.) */
#define N_CS    10
#define N_REP   11
#define N_EXEC  12
#define N_WIN   13
#define N_S0    14
#define N_S1    15
#define N_S2    16
#define N_S3    17
#define R_EXEC  20      /* repeat_nmi                                  */
#define R_W0    21
#define R_W1    22
#define R_W2    23
#define R_W3    24
#define R_EXEC_LATE 25  /* BROKEN_EXEC_LATE / WCOPY_FIRST: executing := 1 */
#define B_SAVE  26      /* end_repeat_nmi                              */
#define B_BODY  27
#define B_BODY2 28
#define B_REST  29
#define X_CLEAR 30
#define X_IRET  31
#define N_NEST0 32
#define N_NEST1 33
#define N_NEST2 34
#define N_NEST3 35
#define N_OUT   36

/* User-mode path, on the task's kernel stack. */
#define U_C0    40
#define U_C1    41
#define U_C2    42
#define U_C3    43
#define U_C4    44
#define U_BODY  45
#define U_BODY2 46
#define U_IRET  47

#define IN_IST(p)     ((p) >= N_CS && (p) <= N_OUT)
#define IN_PROGRAM(p) ((p) >= P_USER && (p) <= P_KERN)
#define IN_REPEAT(p)  ((p) >= R_EXEC && (p) < B_SAVE)

/* Frame words and their values. */
#define F_RIP 0
#define F_CS  1
#define F_FL  2
#define F_RSP 3
#define KERN  0
#define USER  1
#define NOIF  0
#define IF    1
#define KSTACK 0        /* the task's kernel stack                     */
#define NMIST  1        /* an address inside the NMI IST stack         */
#define USTACK 2        /* a user stack                                */

/* CPU registers that a frame holds. */
byte pc = P_KERN;
byte cs = KERN;
byte fl = IF;
byte rsp = KSTACK;
byte urs = USTACK;      /* the RSP user mode has chosen                */

/* Hardware NMI state. */
bit blocked;
bit latched;
byte budget = NMI_BUDGET;

/* The NMI stack's variables and the user path's copy. */
bit executing;
byte H[4];              /* hardware frame slot                         */
byte S[4];              /* saved frame                                 */
byte W[4];              /* working frame                               */
byte K[4];              /* user path: frame on the kernel stack        */

/* Ghosts. */
bit owed_ist;           /* an NMI that took the kernel (IST) path was
                         * delivered after the last IST handler body start */
bit owed_user;          /* same for the user-mode path                    */
byte delivered;         /* NMIs delivered so far (<= NMI_BUDGET)          */
byte bodies;            /* handler bodies started so far                  */
bit s_needed;           /* S holds the context the first NMI returns to   */
bit truly_nested;       /* the NMI being classified came into NMI code    */
byte ist_ctx[4];        /* context the first IST NMI interrupted          */
byte user_ctx[4];       /* context the user-path NMI interrupted          */

#define RUN (!(latched && !blocked))   /* no delivery due before this insn */

#define SAVE_CTX(a) a[F_RIP] = pc; a[F_CS] = cs; a[F_FL] = fl; a[F_RSP] = rsp
#define IRET_TO(f) pc = f[F_RIP]; cs = f[F_CS]; fl = f[F_FL]; rsp = f[F_RSP]; \
                   blocked = 0
#define CTX_IS(a) (pc == a[F_RIP] && cs == a[F_CS] && fl == a[F_FL] && rsp == a[F_RSP])

/* Where the handler may take an exception (whose IRET unblocks NMIs):
 * from end_repeat_nmi to the final IRETQ by design; EXC_IN_REPEAT also
 * lets the repeat_nmi copy fault, BROKEN_FAULT_PROLOGUE the whole entry. */
#if defined(BROKEN_FAULT_PROLOGUE)
#define EXC_OK(p) (IN_IST(p) && (p) != N_OUT && (p) < N_NEST0 || (p) >= U_BODY)
#elif defined(EXC_IN_REPEAT)
#define EXC_OK(p) ((p) >= R_EXEC && (p) <= X_IRET || (p) >= U_BODY)
#else
#define EXC_OK(p) ((p) >= B_SAVE && (p) <= X_IRET || (p) >= U_BODY)
#endif

#ifdef CHECK_CLASSIFY
#define VERDICT_NESTED assert(truly_nested)
#define VERDICT_FIRST  assert(!truly_nested)
#else
#define VERDICT_NESTED skip
#define VERDICT_FIRST  skip
#endif

#ifdef CHECK_HANDLED
#define BODY_STARTS(o) o = 0; bodies++; assert(bodies <= delivered)
#define LEAVING_NMI(o) assert(!o)
#else
#define BODY_STARTS(o) o = 0
#define LEAVING_NMI(o) skip
#endif

#ifdef CHECK_SAVED
#define S_WRITE(i) assert(!s_needed); S[i] = H[i]
#define S_READ(i)  assert(S[i] == ist_ctx[i]); W[i] = S[i]
#else
#define S_WRITE(i) S[i] = H[i]
#define S_READ(i)  W[i] = S[i]
#endif

#ifdef CHECK_CONTEXT
#define CONTEXT_OK(a) assert(CTX_IS(a))
#define REPEAT_OK assert(pc == R_EXEC && cs == KERN && fl == NOIF && rsp == NMIST)
#else
#define CONTEXT_OK(a) skip
#define REPEAT_OK skip
#endif

active proctype cpu()
{
    do
    /* ---- NMI source and hardware ---------------------------------- */
    :: atomic { budget > 0 ->
            budget--;
            latched = 1 }           /* if one was latched already, this
                                     * one is lost */
    :: atomic { latched && !blocked ->
            truly_nested = IN_IST(pc);
            if
            :: !IN_IST(pc) && cs == KERN -> SAVE_CTX(ist_ctx)
            :: !IN_IST(pc) && cs == USER -> SAVE_CTX(user_ctx)
            :: else -> skip
            fi;
            SAVE_CTX(H);
            pc = N_CS; cs = KERN; fl = NOIF; rsp = NMIST;
            blocked = 1; latched = 0; delivered++;
            if
            :: H[F_CS] == USER -> owed_user = 1
            :: else -> owed_ist = 1
            fi }
    /* an exception taken and returned from with IRET */
    :: atomic { blocked && EXC_OK(pc) -> blocked = 0 }

    /* ---- the interrupted program ---------------------------------- */
    :: atomic { RUN && pc == P_USER && urs == USTACK -> urs = NMIST; rsp = urs }
    :: atomic { RUN && pc == P_USER && urs == NMIST  -> urs = USTACK; rsp = urs }
    :: atomic { RUN && pc == P_USER ->                  /* SYSCALL */
            pc = P_SYSC; cs = KERN; fl = NOIF }
    :: atomic { RUN && pc == P_SYSC ->                  /* stack switch */
            pc = P_KERN; rsp = KSTACK; fl = IF }
    :: atomic { RUN && pc == P_KERN ->                  /* SYSRET */
            pc = P_USER; cs = USER; rsp = urs; fl = IF }

    /* ---- NMI entry: the checks ------------------------------------ */
    :: atomic { RUN && pc == N_CS ->
            if
            :: H[F_CS] == USER -> VERDICT_FIRST; pc = U_C0
            :: else -> pc = N_REP
            fi }
    :: atomic { RUN && pc == N_REP ->
            if
#ifndef BROKEN_NO_REPEAT
            :: IN_REPEAT(H[F_RIP]) -> VERDICT_NESTED; pc = N_OUT
#endif
            :: else -> pc = N_EXEC
            fi }
    :: atomic { RUN && pc == N_EXEC ->
            if
#ifndef BROKEN_NO_EXEC
            :: executing -> VERDICT_NESTED; pc = N_NEST0
#endif
            :: else -> pc = N_WIN
            fi }
    :: atomic { RUN && pc == N_WIN ->
            if
#if defined(BROKEN_NO_WIN)
#elif defined(BROKEN_WIN_RSP_ONLY)
            :: H[F_RSP] == NMIST -> VERDICT_NESTED; pc = N_NEST0
#elif defined(BROKEN_CLEAR_EARLY)
            /* the check still names only the IRETQ */
            :: H[F_RIP] == X_IRET && H[F_RSP] == NMIST ->
                    VERDICT_NESTED; pc = N_NEST0
#else
            :: H[F_RIP] == X_IRET && H[F_RSP] == NMIST ->
                    VERDICT_NESTED; pc = N_NEST0
#endif
            :: else -> VERDICT_FIRST; pc = N_S0
            fi }

    /* ---- first NMI: S := H ---------------------------------------- */
    :: atomic { RUN && pc == N_S0 -> S_WRITE(F_RIP); pc = N_S1 }
    :: atomic { RUN && pc == N_S1 -> S_WRITE(F_CS);  pc = N_S2 }
    :: atomic { RUN && pc == N_S2 -> S_WRITE(F_FL);  pc = N_S3 }
    :: atomic { RUN && pc == N_S3 -> S_WRITE(F_RSP); s_needed = 1; pc = R_EXEC }

    /* ---- repeat_nmi .. end_repeat_nmi ------------------------------ */
#if defined(BROKEN_EXEC_LATE) || defined(WCOPY_FIRST)
    :: atomic { RUN && pc == R_EXEC -> pc = R_W0 }
#else
    :: atomic { RUN && pc == R_EXEC -> executing = 1; pc = R_W0 }
#endif
    :: atomic { RUN && pc == R_W0 -> S_READ(F_RIP); pc = R_W1 }
    :: atomic { RUN && pc == R_W1 -> S_READ(F_CS);  pc = R_W2 }
    :: atomic { RUN && pc == R_W2 -> S_READ(F_FL);  pc = R_W3 }
#if defined(WCOPY_FIRST)
    :: atomic { RUN && pc == R_W3 -> S_READ(F_RSP); pc = R_EXEC_LATE }
    :: atomic { RUN && pc == R_EXEC_LATE -> executing = 1; pc = B_SAVE }
#elif defined(BROKEN_EXEC_LATE)
    :: atomic { RUN && pc == R_W3 -> S_READ(F_RSP); pc = B_SAVE }
#else
    :: atomic { RUN && pc == R_W3 -> S_READ(F_RSP); pc = B_SAVE }
#endif

    /* ---- the handler ---------------------------------------------- */
#ifdef BROKEN_EXEC_LATE
    :: atomic { RUN && pc == B_SAVE -> executing = 1; pc = B_BODY }
#else
    :: atomic { RUN && pc == B_SAVE -> pc = B_BODY }
#endif
    :: atomic { RUN && pc == B_BODY -> BODY_STARTS(owed_ist); pc = B_BODY2 }
#ifdef BROKEN_CLEAR_EARLY
    :: atomic { RUN && pc == B_BODY2 -> pc = X_CLEAR }
    :: atomic { RUN && pc == X_CLEAR -> executing = 0; pc = B_REST }
    :: atomic { RUN && pc == B_REST -> pc = X_IRET }
#else
    :: atomic { RUN && pc == B_BODY2 -> pc = B_REST }
    :: atomic { RUN && pc == B_REST -> pc = X_CLEAR }
    :: atomic { RUN && pc == X_CLEAR -> executing = 0; pc = X_IRET }
#endif
    :: atomic { RUN && pc == X_IRET ->
            IRET_TO(W);
            if
            :: IN_IST(pc) -> REPEAT_OK
            :: else -> CONTEXT_OK(ist_ctx); LEAVING_NMI(owed_ist); s_needed = 0
            fi }

    /* ---- nested NMI: make the first one repeat ---------------------- */
    :: atomic { RUN && pc == N_NEST0 -> W[F_RIP] = R_EXEC; pc = N_NEST1 }
    :: atomic { RUN && pc == N_NEST1 -> W[F_CS]  = KERN;   pc = N_NEST2 }
    :: atomic { RUN && pc == N_NEST2 -> W[F_FL]  = NOIF;   pc = N_NEST3 }
    :: atomic { RUN && pc == N_NEST3 -> W[F_RSP] = NMIST;  pc = N_OUT }
    :: atomic { RUN && pc == N_OUT ->
            IRET_TO(H);
            if
            :: IN_IST(pc) -> skip
            :: else -> LEAVING_NMI(owed_ist)  /* "nested" but it was not */
            fi }

    /* ---- user-mode path -------------------------------------------- */
    :: atomic { RUN && pc == U_C0 -> rsp = KSTACK; pc = U_C1 }
    :: atomic { RUN && pc == U_C1 -> K[F_RIP] = H[F_RIP]; pc = U_C2 }
    :: atomic { RUN && pc == U_C2 -> K[F_CS]  = H[F_CS];  pc = U_C3 }
    :: atomic { RUN && pc == U_C3 -> K[F_FL]  = H[F_FL];  pc = U_C4 }
    :: atomic { RUN && pc == U_C4 -> K[F_RSP] = H[F_RSP]; pc = U_BODY }
    :: atomic { RUN && pc == U_BODY -> BODY_STARTS(owed_user); pc = U_BODY2 }
    :: atomic { RUN && pc == U_BODY2 -> pc = U_IRET }
    :: atomic { RUN && pc == U_IRET ->
            IRET_TO(K);
            CONTEXT_OK(user_ctx); LEAVING_NMI(owed_user) }
    od
}

#ifdef CHECK_RETURNS
/* The program runs again infinitely often: no execution stays in NMI code
 * forever once the NMI source has nothing left to send. */
ltl returns { [] <> (pc >= P_USER && pc <= P_KERN) }
#endif
