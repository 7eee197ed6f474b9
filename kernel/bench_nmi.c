/*
 * bench_nmi.c: the NMI-path benchmarks of `make bench` - round trips of self,
 * cross-CPU, nested and ring-3 NMIs, dispatch cost per handler, the stub
 * floor, the irq_work IPI, irq_work_queue from NMI context and the lost-NMI
 * probe.  Every loop follows the method of ../shared/README.md: interrupts
 * off, arm, t0, send, spin with PAUSE until the handler flags, t1.
 * docs/performance.md explains each metric and what its figure is made of.
 */
#include <stdatomic.h>
#include <arch/apic.h>
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <kernel/bench.h>
#include <kernel/sched.h>
#include <kernel/user_programs.h>
#include <nmikit/format.h>
#include <nmikit/irq_work.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

/* bench_stub.S */
extern volatile uint32_t bench_stub_flag;
void bench_stub_nmi(void);
void bench_iret_to_self(void);

enum bench_nmi_mode {
	MODE_FLAG,		/* claim, flag done */
	MODE_LATCHED,		/* first call: send a self NMI (latched until our IRETQ) */
	MODE_NESTED,		/* first call: send a self NMI and IRET to self: it nests */
	MODE_USER_CHAIN,	/* sample handler-to-handler, send the next self NMI */
	MODE_QUEUE,		/* time irq_work_queue of a fresh lazy item */
	MODE_QUEUE_AGAIN,	/* time irq_work_queue of an item already pending */
};

/* `armed` carries the mode, so the hot case is one load and one compare. */
#define ARMED(mode)	((uint32_t)(mode) + 1)

/* Per CPU: what the bench handler does with the next NMI on that CPU. */
struct bench_nmi_cpu {
	volatile uint32_t armed;	/* 0, or ARMED(mode): the next NMI here is the benchmark's */
	volatile uint32_t done;		/* set by the handler when the round is over */
	volatile uint32_t mode;		/* enum bench_nmi_mode */
	volatile uint32_t calls;	/* handler calls in this round */
	volatile uint32_t not_user;	/* MODE_USER_CHAIN: NMIs that came from the kernel */
	uint64_t last_tsc;		/* MODE_USER_CHAIN: previous handler's bench_tsc() */
	struct bench *b;		/* in-handler samples go here */
} NK_CACHE_ALIGNED;

static struct bench_nmi_cpu bench_nmi[MAX_CPUS];
static volatile uint32_t bench_pass_source;	/* what a non-claiming handler looks at */
static struct irq_work bench_queue_item;

static void bench_queue_nop(struct irq_work *w)
{
	(void)w;
}

/* The claiming handler's other modes (out of line: the hot case stays a leaf). */
static __attribute__((noinline)) int bench_nmi_modes(struct bench_nmi_cpu *c, struct nmi_frame *f)
{
	uint64_t t0, t1;

	switch (c->mode) {
	case MODE_LATCHED:
	case MODE_NESTED:
		if (c->calls++ == 0) {
			os_send_nmi_self();
			if (c->mode == MODE_NESTED)
				bench_iret_to_self();
			return NMI_HANDLED;
		}
		break;
	case MODE_USER_CHAIN:
		t0 = bench_tsc();
		if (!f->from_user) {
			/* Not in ring 3 (a tick, or idle): the sender tries again. */
			c->not_user++;
			return NMI_HANDLED;
		}
		if (c->calls++)
			bench_sample(c->b, t0 - c->last_tsc);
		c->last_tsc = t0;
		if (c->b->n < c->b->iters) {
			/* Latched until our IRETQ to ring 3, then delivered right there. */
			os_send_nmi_self();
			return NMI_HANDLED;
		}
		break;
	case MODE_QUEUE:
		t0 = bench_tsc();
		irq_work_queue(&bench_queue_item);
		t1 = bench_tsc();
		bench_sample(c->b, t1 - t0);
		break;
	case MODE_QUEUE_AGAIN:
		irq_work_queue(&bench_queue_item);
		t0 = bench_tsc();
		irq_work_queue(&bench_queue_item);
		t1 = bench_tsc();
		bench_sample(c->b, t1 - t0);
		break;
	default:
		break;
	}
	c->armed = 0;
	c->done = 1;
	return NMI_HANDLED;
}

/*
 * The claiming handler.  NMI context: touches only this CPU's slot (and, in
 * MODE_USER_CHAIN / MODE_QUEUE, the sample array of the running case, which
 * only this handler writes while the case waits), sends self NMIs through
 * the NMI-safe os_send_nmi_self(), queues irq_work (NMI-safe).  Bounded.
 * The hot case (MODE_FLAG) is as short as a real handler that checks its
 * source and acknowledges it.
 */
static int bench_nmi_handler(unsigned type, struct nmi_frame *f)
{
	struct bench_nmi_cpu *c = &bench_nmi[this_cpu_id()];

	uint32_t armed = c->armed;

	(void)type;
	if (armed == ARMED(MODE_FLAG)) {
		c->armed = 0;
		c->done = 1;
		return NMI_HANDLED;
	}
	if (!armed)
		return NMI_DONE;
	return bench_nmi_modes(c, f);
}

/* A handler that looks at its (idle) source and finds nothing.  NMI context: one load. */
static int bench_nmi_pass(unsigned type, struct nmi_frame *f)
{
	(void)type;
	(void)f;
	return bench_pass_source ? NMI_HANDLED : NMI_DONE;
}

static char bench_pass_names[16][NMI_NAME_MAX];

static void bench_nmi_teardown(unsigned passes)
{
	nmi_unregister(NMI_LOCAL, "bench");
	for (unsigned i = 0; i < passes; i++)
		nmi_unregister(NMI_LOCAL, bench_pass_names[i]);
}

/*
 * The claiming handler at the tail of the local chain, then `passes`
 * non-claiming ones put at the head (NMI_FLAG_FIRST), so the dispatch calls
 * every one of them before it reaches ours.
 */
static int bench_nmi_setup(struct bench *b, unsigned passes)
{
	int err;

	for (unsigned c = 0; c < MAX_CPUS; c++) {
		bench_nmi[c].armed = 0;
		bench_nmi[c].b = b;
	}
	err = nmi_register(NMI_LOCAL, "bench", bench_nmi_handler, 0);
	if (err)
		return bench_fail(b, "nmi_register: %s", nmi_strerror(err));
	for (unsigned i = 0; i < passes; i++) {
		nk_snprintf(bench_pass_names[i], NMI_NAME_MAX, "bench-pass-%u", i);
		err = nmi_register(NMI_LOCAL, bench_pass_names[i], bench_nmi_pass, NMI_FLAG_FIRST);
		if (err) {
			bench_nmi_teardown(i);
			return bench_fail(b, "nmi_register %s: %s", bench_pass_names[i],
					  nmi_strerror(err));
		}
	}
	return BENCH_OK;
}

/* One self-NMI round trip in `mode`; returns the TSC ticks or 0 on timeout. */
static uint64_t bench_self_round(struct bench_nmi_cpu *c, uint32_t mode, uint64_t limit)
{
	uint64_t fl = irq_save();
	uint64_t t0, t1;
	bool ok;

	c->mode = mode;
	c->calls = 0;
	c->done = 0;
	c->armed = ARMED(mode);
	t0 = bench_tsc();
	os_send_nmi_self();
	ok = bench_wait_flag(&c->done, limit);
	t1 = bench_tsc();
	irq_restore(fl);
	return ok ? t1 - t0 : 0;
}

static int bench_self_loop(struct bench *b, uint32_t mode)
{
	struct bench_nmi_cpu *c = &bench_nmi[this_cpu_id()];
	uint64_t limit = bench_wait_limit();

	for (unsigned i = 0; i < b->iters; i++) {
		uint64_t d = bench_self_round(c, mode, limit);

		if (!d) {
			c->armed = 0;
			return bench_fail(b, "self NMI %u of %u never reached the handler", i, b->iters);
		}
		bench_sample(b, d);
	}
	return BENCH_OK;
}

/* --- rdtsc_back_to_back, icr_send_only --------------------------------------- */

static int bench_rdtsc(struct bench *b)
{
	for (unsigned i = 0; i < b->iters; i++) {
		uint64_t fl = irq_save();
		uint64_t t0 = bench_tsc();
		uint64_t t1 = bench_tsc();

		irq_restore(fl);
		bench_sample(b, t1 - t0);
	}
	return BENCH_OK;
}
BENCH(rdtsc_back_to_back, "tsc", "lfence;rdtsc twice in a row: the timing overhead in every figure",
      bench_rdtsc);

static int bench_icr_send(struct bench *b)
{
	uint32_t id;

	/* An APIC ID that no CPU has: the send completes and nothing is delivered. */
	for (id = 0xfe; id > 0; id--) {
		bool used = false;

		for (unsigned c = 0; c < cpus_possible; c++)
			used |= percpu_area[c].apic_id == id;
		if (!used)
			break;
	}
	if (!id)
		return bench_skip(b, "every APIC ID is in use");
	for (unsigned i = 0; i < b->iters; i++) {
		uint64_t fl = irq_save();
		uint64_t t0 = bench_tsc();

		lapic_send_nmi(id);
		uint64_t t1 = bench_tsc();
		irq_restore(fl);
		bench_sample(b, t1 - t0);
	}
	return BENCH_OK;
}
BENCH(icr_send_only, "tsc", "lapic_send_nmi() to an APIC ID nobody has: ICR writes, nothing delivered",
      bench_icr_send);

/* --- stub_self_nmi -------------------------------------------------------------- */

struct idt_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

/* 256 gates of 16 bytes: a private IDT for the measuring CPU only. */
static uint8_t bench_idt[256 * 16] __attribute__((aligned(16)));

static int bench_stub(struct bench *b)
{
	struct idt_ptr orig, mine;
	uint64_t a = (uint64_t)bench_stub_nmi;
	uint8_t *g = &bench_idt[2 * 16];
	uint64_t fl;
	int r = BENCH_OK;

	/*
	 * Copy the IDT and point vector 2 of the copy at the stub, keeping its
	 * selector, IST and type.  Only this CPU loads the copy, and only with
	 * interrupts off: other CPUs' NMIs keep going through nmi_entry.S.
	 */
	fl = irq_save();
	__asm__ volatile("sidt %0" : "=m"(orig));
	if (orig.limit + 1u != sizeof(bench_idt)) {
		irq_restore(fl);
		return bench_skip(b, "IDT limit %u is not 256 gates", orig.limit);
	}
	memcpy(bench_idt, (const void *)orig.base, sizeof(bench_idt));
	g[0] = (uint8_t)a;
	g[1] = (uint8_t)(a >> 8);
	g[6] = (uint8_t)(a >> 16);
	g[7] = (uint8_t)(a >> 24);
	for (int i = 0; i < 4; i++)
		g[8 + i] = (uint8_t)(a >> (32 + 8 * i));
	mine.limit = orig.limit;
	mine.base = (uint64_t)bench_idt;
	__asm__ volatile("lidt %0" :: "m"(mine) : "memory");

	for (unsigned i = 0; i < b->iters; i++) {
		uint64_t t0, t1;

		bench_stub_flag = 0;
		t0 = bench_tsc();
		os_send_nmi_self();
		bool ok = bench_wait_flag(&bench_stub_flag, bench_wait_limit());
		t1 = bench_tsc();
		if (!ok) {
			r = bench_fail(b, "the stub never ran");
			break;
		}
		bench_sample(b, t1 - t0);
	}

	__asm__ volatile("lidt %0" :: "m"(orig) : "memory");
	irq_restore(fl);
	return r;
}
BENCH(stub_self_nmi, "tsc", "self NMI whose gate is `movl $1,flag; iretq`: the floor",
      bench_stub);

/* --- self_nmi_Nh ---------------------------------------------------------------- */

static int bench_self_nmi_n(struct bench *b, unsigned handlers)
{
	int r = bench_nmi_setup(b, handlers - 1);

	if (r)
		return r;
	r = bench_self_loop(b, MODE_FLAG);
	bench_nmi_teardown(handlers - 1);
	return r;
}

static int bench_self_1h(struct bench *b) { return bench_self_nmi_n(b, 1); }
static int bench_self_2h(struct bench *b) { return bench_self_nmi_n(b, 2); }
static int bench_self_4h(struct bench *b) { return bench_self_nmi_n(b, 4); }
static int bench_self_8h(struct bench *b) { return bench_self_nmi_n(b, 8); }
static int bench_self_16h(struct bench *b) { return bench_self_nmi_n(b, 16); }
BENCH(self_nmi_1h, "tsc", "self NMI round trip, one handler, which claims", bench_self_1h);
BENCH(self_nmi_2h, "tsc", "self NMI round trip, 1 non-claiming handler ahead of the claiming one",
      bench_self_2h);
BENCH(self_nmi_4h, "tsc", "self NMI round trip, 3 non-claiming handlers ahead", bench_self_4h);
BENCH(self_nmi_8h, "tsc", "self NMI round trip, 7 non-claiming handlers ahead", bench_self_8h);
BENCH(self_nmi_16h, "tsc", "self NMI round trip, 15 non-claiming handlers ahead", bench_self_16h);

/* --- cross_cpu_nmi_1h ---------------------------------------------------------- */

/* The first online CPU other than this one (it should be idle), or -1. */
static int bench_other_cpu(void)
{
	unsigned me = this_cpu_id();

	for (unsigned c = 0; c < os_cpu_count(); c++)
		if (c != me && os_cpu_online(c))
			return (int)c;
	return -1;
}

static int bench_cross(struct bench *b)
{
	int cpu = bench_other_cpu(), r;
	struct bench_nmi_cpu *c;

	if (cpu < 0)
		return bench_skip(b, "needs 2 CPUs");
	r = bench_nmi_setup(b, 0);
	if (r)
		return r;
	c = &bench_nmi[cpu];
	c->mode = MODE_FLAG;
	for (unsigned i = 0; i < b->iters; i++) {
		uint64_t fl = irq_save();
		uint64_t t0, t1;
		bool ok;

		c->done = 0;
		c->armed = ARMED(MODE_FLAG);
		t0 = bench_tsc();
		os_send_nmi((unsigned)cpu);
		/*
		 * PAUSE before the first look: another CPU's answer cannot be
		 * there yet (under icount it runs only once this CPU PAUSEs),
		 * so the look bench_wait_flag() makes first is wasted here.
		 * Then Linux's `while (!flag) cpu_relax();`, bounded.
		 */
		cpu_relax();
		ok = c->done || bench_wait_flag_slow(&c->done, bench_wait_limit());
		t1 = bench_tsc();
		irq_restore(fl);
		if (!ok) {
			c->armed = 0;
			r = bench_fail(b, "NMI %u to CPU %d never reached its handler", i, cpu);
			break;
		}
		bench_sample(b, t1 - t0);
	}
	bench_nmi_teardown(0);
	return r;
}
BENCH(cross_cpu_nmi_1h, "tsc", "NMI from this CPU to an idle CPU, whose handler flags back (sender spins with PAUSE)",
      bench_cross);

/* --- nested_nmi_repeat, latched_nmi_fresh --------------------------------------- */

/*
 * The handler sends a second self NMI on its first call.  Each sample is
 * the round trip of the pair minus the median round trip of a single NMI
 * measured just before: what the second NMI adds.
 */
static int bench_second_nmi(struct bench *b, uint32_t mode)
{
	struct bench_nmi_cpu *c = &bench_nmi[this_cpu_id()];
	unsigned iters = b->iters;
	uint64_t base;
	int r = bench_nmi_setup(b, 0);

	if (r)
		return r;
	/* The single-NMI baseline, in the sample array for now. */
	b->iters = iters < 1001 ? iters : 1001;
	r = bench_self_loop(b, MODE_FLAG);
	if (r)
		goto out;
	for (unsigned i = 1; i < b->n; i++)
		for (unsigned j = i; j > 0 && b->samples[j - 1] > b->samples[j]; j--) {
			uint64_t t = b->samples[j];
			b->samples[j] = b->samples[j - 1];
			b->samples[j - 1] = t;
		}
	base = b->samples[(b->n - 1) / 2];
	b->n = 0;
	b->iters = iters;
	for (unsigned i = 0; i < iters; i++) {
		uint64_t d = bench_self_round(c, mode, bench_wait_limit());

		if (!d || c->calls != 2) {
			c->armed = 0;
			r = bench_fail(b, "round %u: the second NMI did not come (%u calls)", i, c->calls);
			goto out;
		}
		bench_sample(b, d > base ? d - base : 0);
	}
out:
	bench_nmi_teardown(0);
	return r;
}

static int bench_nested(struct bench *b)
{
	uint64_t nested0 = this_cpu()->nmi_asm_nested;
	int r = bench_second_nmi(b, MODE_NESTED);

	if (r == BENCH_OK && this_cpu()->nmi_asm_nested - nested0 < b->n)
		return bench_fail(b, "only %llu of %u second NMIs went through the nested path",
				  (unsigned long long)(this_cpu()->nmi_asm_nested - nested0), b->n);
	return r;
}
BENCH(nested_nmi_repeat, "tsc", "extra cost of a second NMI that nests (IRET inside the handler) and re-runs through repeat_nmi",
      bench_nested);

static int bench_latched(struct bench *b)
{
	return bench_second_nmi(b, MODE_LATCHED);
}
BENCH(latched_nmi_fresh, "tsc", "extra cost of a second NMI latched until the final IRETQ, then taken as a new NMI",
      bench_latched);

/* --- user_nmi_1h ------------------------------------------------------------------ */

/*
 * A ring-3 task spins on another CPU.  One NMI from here starts a chain on
 * that CPU: each handler call (the NMI came from ring 3) takes bench_tsc(),
 * sends a self NMI that stays latched until the IRETQ back to ring 3 and is
 * taken right there, before any user instruction.  A sample is the time
 * from one handler call to the next: one full user-mode round trip (send,
 * exit, IRETQ, entry from ring 3, dispatch), with nothing else in it.
 */
static int bench_user(struct bench *b)
{
	int cpu = bench_other_cpu(), r;
	struct bench_nmi_cpu *c;
	struct task *t;
	uint64_t start;

	if (cpu < 0)
		return bench_skip(b, "needs 2 CPUs (the ring-3 task runs on the other)");
	r = bench_nmi_setup(b, 0);
	if (r)
		return r;
	c = &bench_nmi[cpu];
	user_spin.stop = 0;
	user_spin.count = 0;
	t = task_create_user("bench-user", user_prog_spin, 0, cpu);
	if (!t) {
		bench_nmi_teardown(0);
		return bench_fail(b, "cannot create the ring-3 task");
	}
	start = rdtsc();
	while (!user_spin.count && rdtsc() - start < 100 * bench_wait_limit())
		cpu_relax();

	c->mode = MODE_USER_CHAIN;
	c->calls = 0;
	c->not_user = 0;
	c->done = 0;
	c->armed = ARMED(MODE_USER_CHAIN);
	for (unsigned tries = 0; tries < 100 && !c->calls; tries++) {
		os_send_nmi((unsigned)cpu);
		start = rdtsc();
		while (!c->calls && rdtsc() - start < bench_wait_limit())
			cpu_relax();
	}
	/* The chain: about a thousand instructions per sample. */
	bench_wait_flag(&c->done, (uint64_t)b->iters * 100000 + 100 * bench_wait_limit());
	if (!c->done) {
		c->armed = 0;
		r = bench_fail(b, "chain stopped at %u of %u samples (%u calls, %u from kernel)",
			       b->n, b->iters, c->calls, c->not_user);
	}
	user_spin.stop = 1;
	task_wait(t, NULL);
	bench_nmi_teardown(0);
	return r;
}
BENCH(user_nmi_1h, "tsc", "NMI that interrupts ring 3, one claiming handler: handler-to-handler time of back-to-back self NMIs",
      bench_user);

/* --- irq_work ---------------------------------------------------------------------- */

static volatile uint32_t bench_iw_done;

static void bench_iw_fn(struct irq_work *w)
{
	(void)w;
	bench_iw_done = 1;
}

static struct irq_work bench_iw_item = IRQ_WORK_INIT(bench_iw_fn, 0);

/*
 * The wait right after STI, in the shape of Linux's measuring loop
 * (`while (!flag) cpu_relax();`, ../shared/README.md): the first load runs
 * in STI's shadow, before the pending IPI can be taken, and always sees 0;
 * the IPI comes in; one PAUSE, and the second load sees the flag.
 * bench_wait_flag() would leave for its out-of-line slow path at that
 * first 0 on every sample, a call and its set-up (about 15 instructions)
 * that Linux's loop does not have.  Still bounded: after the PAUSE it is
 * bench_wait_flag().
 */
static inline bool bench_wait_after_sti(const volatile uint32_t *flag, uint64_t limit_tsc)
{
	if (*flag)
		return true;
	cpu_relax();
	return bench_wait_flag(flag, limit_tsc);
}

static int bench_self_ipi(struct bench *b)
{
	for (unsigned i = 0; i < b->iters; i++) {
		uint64_t fl = irq_save();
		uint64_t t0, t1;
		bool ok;

		bench_iw_done = 0;
		t0 = bench_tsc();
		irq_work_queue(&bench_iw_item);
		irq_enable();
		ok = bench_wait_after_sti(&bench_iw_done, bench_wait_limit());
		irq_disable();
		t1 = bench_tsc();
		irq_restore(fl);
		if (!ok)
			return bench_fail(b, "irq_work callback %u never ran", i);
		bench_sample(b, t1 - t0);
	}
	return BENCH_OK;
}
BENCH(self_ipi_irq_work, "tsc", "irq_work_queue of an immediate item: self IPI on a normal vector, callback flags",
      bench_self_ipi);

/*
 * irq_work_queue from NMI context, timed inside the handler (the figure
 * includes one bench_tsc(): see rdtsc_back_to_back).  The lazy item is run
 * by a call to irq_work_tick() between rounds, as the tick would.
 */
static int bench_queue_case(struct bench *b, uint32_t mode)
{
	struct bench_nmi_cpu *c = &bench_nmi[this_cpu_id()];
	int r = bench_nmi_setup(b, 0);

	if (r)
		return r;
	irq_work_init(&bench_queue_item, bench_queue_nop, IRQ_WORK_LAZY);
	for (unsigned i = 0; i < b->iters && r == BENCH_OK; i++) {
		uint64_t fl = irq_save();

		if (!bench_self_round(c, mode, bench_wait_limit()))
			r = bench_fail(b, "self NMI %u never reached the handler", i);
		irq_work_tick();
		irq_restore(fl);
	}
	bench_nmi_teardown(0);
	return r;
}

static int bench_queue(struct bench *b) { return bench_queue_case(b, MODE_QUEUE); }
static int bench_queue_again(struct bench *b) { return bench_queue_case(b, MODE_QUEUE_AGAIN); }
BENCH(irq_work_queue_nmi, "tsc", "irq_work_queue of an idle lazy item, in an NMI handler", bench_queue);
BENCH(irq_work_queue_nmi_coalesced, "tsc", "irq_work_queue of an item already pending, in an NMI handler",
      bench_queue_again);

/* --- lostnmi_probe_cost ---------------------------------------------------------- */

/*
 * After a claimed NMI, the tick's lost-NMI probe: irq_work_tick() runs the
 * probe, which sends a self NMI that passes every handler unclaimed and is
 * absorbed.  The sample is that whole tick-side call.
 */
static int bench_probe(struct bench *b)
{
	struct bench_nmi_cpu *c = &bench_nmi[this_cpu_id()];
	struct nmi_cpu_stats s0, s1;
	unsigned cpu = this_cpu_id();
	int r;

	if (!nmi_lost_recovery)
		return bench_skip(b, "nmi_lost_recovery=off");
	r = bench_nmi_setup(b, 0);
	if (r)
		return r;
	nmi_get_cpu_stats(cpu, &s0);
	for (unsigned i = 0; i < b->iters && r == BENCH_OK; i++) {
		uint64_t fl = irq_save();
		uint64_t t0, t1;

		if (!bench_self_round(c, MODE_FLAG, bench_wait_limit())) {
			r = bench_fail(b, "self NMI %u never reached the handler", i);
		} else {
			t0 = bench_tsc();
			irq_work_tick();
			t1 = bench_tsc();
			bench_sample(b, t1 - t0);
		}
		irq_restore(fl);
	}
	nmi_get_cpu_stats(cpu, &s1);
	bench_nmi_teardown(0);
	if (r == BENCH_OK && s1.probe_sent - s0.probe_sent < b->n)
		r = bench_fail(b, "only %llu probes were sent for %u claimed NMIs",
			       (unsigned long long)(s1.probe_sent - s0.probe_sent), b->n);
	return r;
}
BENCH(lostnmi_probe_cost, "tsc", "tick-side lost-NMI probe after a claimed NMI: probe callback, self NMI, absorbed",
      bench_probe);
