/*
 * watchdog_bench.c: `make bench` metrics of the lockup detectors: how long a
 * hard lockup takes to be reported by each source (threshold 1 s, virtual
 * time under icount), how many watchdog NMIs each CPU takes per second, the
 * instructions of one check path, the time of an all-CPU NMI backtrace
 * on 2, 4, 16 and 64 CPUs with the console quiet, and what the HPET source
 * adds to an ordinary NMI on a CPU of its ring (docs/watchdog.md).
 */
#include <arch/cpu.h>
#include <arch/percpu.h>
#include <arch/tsc.h>
#include <kernel/bench.h>
#include <kernel/sched.h>
#include <kernel/watchdog.h>
#include <nmikit/log.h>
#include <nmikit/nmi.h>
#include <nmikit/nmi_backtrace.h>
#include <nmikit/os.h>

#define S	1000000000ull

/* Each lockup sample costs a threshold of (virtual) time: a few are enough. */
#define LOCKUP_SAMPLES	3
/* An all-CPU backtrace on 64 CPUs is long: cap the samples. */
#define BACKTRACE_SAMPLES	200

static int need_source(struct bench *b, const struct wd_source *want)
{
	if (watchdog_source() != want || !watchdog_running())
		return bench_skip(b, "the watchdog runs source %s, not %s", watchdog_source_name(),
				  want->name);
	return BENCH_OK;
}

/* Threshold 1 s for the lockup cases; the caller puts the old one back. */
static unsigned set_thresh_1s(void)
{
	unsigned old = watchdog_thresh_s();

	if (old != 1) {
		watchdog_set_threshold(1);
		sleep_ms(200);	/* every CPU sampled again after the restart */
	}
	return old;
}

static int lockup_detect(struct bench *b, const struct wd_source *src)
{
	int r = need_source(b, src);
	unsigned n = b->iters < LOCKUP_SAMPLES ? b->iters : LOCKUP_SAMPLES;
	unsigned old, cpu = 0;

	if (r != BENCH_OK)
		return r;
	old = set_thresh_1s();
	for (unsigned i = 0; i < n && r == BENCH_OK; i++) {
		struct wd_spin s = { .max_ns = 3 * S, .until_detected = true };
		struct watchdog_cpu_stats st;

		/* Each CPU in turn (CPU 0, where this runs, included). */
		do
			cpu = (cpu + 1) % cpus_possible;
		while (!wd_monitored(cpu));
		if (!watchdog_test_run_spin(cpu, true, &s))
			r = bench_fail(b, "cannot start a task on CPU %u", cpu);
		else if (!s.detected)
			r = bench_fail(b, "lockup on CPU %u not reported within 3 s", cpu);
		else {
			watchdog_get_stats(cpu, &st);
			bench_sample(b, (st.last_lockup_ns - s.t_start) / 1000000);
		}
		sleep_ms(50);
	}
	if (old != 1)
		watchdog_set_threshold(old);
	return r;
}

static int nmis_per_cpu_s(struct bench *b, const struct wd_source *src)
{
	uint64_t before[MAX_CPUS];
	int r = need_source(b, src);

	if (r != BENCH_OK)
		return r;
	for (unsigned c = 0; c < cpus_possible; c++) {
		struct watchdog_cpu_stats st;
		watchdog_get_stats(c, &st);
		before[c] = st.nmis;
	}
	uint64_t t0 = tsc_ns();
	sleep_ms(3000);
	uint64_t ns = tsc_ns() - t0;
	for (unsigned c = 0; c < cpus_possible; c++) {
		struct watchdog_cpu_stats st;
		if (!wd_monitored(c))
			continue;
		watchdog_get_stats(c, &st);
		bench_sample(b, ((st.nmis - before[c]) * S + ns / 2) / ns);
	}
	return BENCH_OK;
}

static int check_insns(struct bench *b, const struct wd_source *src)
{
	static uint64_t costs[1024];
	int r = need_source(b, src);

	if (r != BENCH_OK)
		return r;
	wd_cost_reset();
	/* Long enough for a few hundred checks at the slowest source's rate. */
	for (unsigned ms = 0; ms < 3000; ms += 100) {
		sleep_ms(100);
		if (wd_cost_samples(costs, 1024) >= b->iters)
			break;
	}
	unsigned n = wd_cost_samples(costs, 1024);
	for (unsigned i = 0; i < n; i++)
		bench_sample(b, costs[i]);
	return n ? BENCH_OK : bench_fail(b, "no check ran");
}

static int backtrace_all(struct bench *b, unsigned cpus)
{
	unsigned n = b->iters < BACKTRACE_SAMPLES ? b->iters : BACKTRACE_SAMPLES;
	unsigned online = 0;
	bool console = nk_log_console_enabled();

	for (unsigned c = 0; c < cpus_possible; c++)
		online += percpu_area[c].online;
	if (online != cpus)
		return bench_skip(b, "wants %u CPUs online, has %u", cpus, online);
	/* Quiet console, as Linux was measured: reports go to the log ring only. */
	nk_log_set_console_enabled(false);
	for (unsigned i = 0; i < n; i++) {
		struct nmi_backtrace_result res;
		uint64_t t0 = bench_tsc();
		int err = nmi_backtrace(NULL, 0, S, &res);
		uint64_t t1 = bench_tsc();

		if (err || res.answered != cpus) {
			nk_log_set_console_enabled(console);
			return bench_fail(b, "backtrace %u: %d, %u of %u answered", i, err,
					  res.answered, cpus);
		}
		bench_sample(b, t1 - t0);
	}
	nk_log_set_console_enabled(console);
	return BENCH_OK;
}

/*
 * An ordinary NMI on a CPU of the rotating HPET source's ring: a self NMI
 * round trip with one claiming handler, timed as self_nmi_1h is
 * (bench_nmi.c), on this CPU while the comparator's NMI goes round the
 * ring.  While a CPU listens for the comparator (WD_LISTEN_SOURCE) its
 * every NMI also runs the source's hpet_wd_nmi(); the samples show how
 * often that happens and what it costs.  Threshold 1 s (each CPU's turn
 * 6.25 ms on 4 CPUs), one sample every 100 us over about a second, so the
 * samples fall on every phase of about 40 turns; the first sample comes
 * 10 ms after the restart, when this CPU (the first target) has handed on.
 */
static volatile uint32_t ring_nmi_armed[MAX_CPUS], ring_nmi_done[MAX_CPUS];

/* NMI context: claim this CPU's armed round.  One load, two stores. */
static int ring_nmi_handler(unsigned type, struct nmi_frame *f)
{
	unsigned me = this_cpu_id();

	(void)type;
	(void)f;
	if (!ring_nmi_armed[me])
		return NMI_DONE;
	ring_nmi_armed[me] = 0;
	ring_nmi_done[me] = 1;
	return NMI_HANDLED;
}

/* One round trip: interrupts off, arm, t0, self NMI, wait for the flag, t1. */
static __attribute__((noinline)) uint64_t ring_nmi_round(unsigned me)
{
	uint64_t fl = irq_save();
	uint64_t t0, t1;
	bool ok;

	ring_nmi_done[me] = 0;
	ring_nmi_armed[me] = 1;
	t0 = bench_tsc();
	os_send_nmi_self();
	ok = bench_wait_flag(&ring_nmi_done[me], bench_wait_limit());
	t1 = bench_tsc();
	irq_restore(fl);
	return ok ? t1 - t0 : 0;
}

static int b_self_nmi_hpet_ring(struct bench *b)
{
	unsigned me = this_cpu_id(), old;
	int r = need_source(b, &wd_source_hpet), err;

	if (r != BENCH_OK)
		return r;
	if (!wd_monitored(me))
		return bench_skip(b, "cpu %u is not monitored", me);
	err = nmi_register(NMI_LOCAL, "bench-ring", ring_nmi_handler, 0);
	if (err)
		return bench_fail(b, "nmi_register: %s", nmi_strerror(err));
	old = watchdog_thresh_s();
	watchdog_set_threshold(1);
	sleep_ms(10);
	for (unsigned i = 0; i < b->iters && r == BENCH_OK; i++) {
		uint64_t d = ring_nmi_round(me);

		if (!d) {
			ring_nmi_armed[me] = 0;
			r = bench_fail(b, "self NMI %u never reached the handler", i);
			break;
		}
		bench_sample(b, d);
		for (uint64_t t = bench_tsc(); bench_tsc() - t < ns_to_tsc(100000);)
			cpu_relax();
	}
	nmi_unregister(NMI_LOCAL, "bench-ring");
	watchdog_set_threshold(old);
	return r;
}

static int b_detect_ioapic(struct bench *b) { return lockup_detect(b, &wd_source_ioapic); }
static int b_detect_hpet(struct bench *b) { return lockup_detect(b, &wd_source_hpet); }
static int b_detect_buddy(struct bench *b) { return lockup_detect(b, &wd_source_buddy); }
static int b_nmis_ioapic(struct bench *b) { return nmis_per_cpu_s(b, &wd_source_ioapic); }
static int b_nmis_hpet(struct bench *b) { return nmis_per_cpu_s(b, &wd_source_hpet); }
static int b_nmis_buddy(struct bench *b) { return nmis_per_cpu_s(b, &wd_source_buddy); }
static int b_insns_ioapic(struct bench *b) { return check_insns(b, &wd_source_ioapic); }
static int b_insns_hpet(struct bench *b) { return check_insns(b, &wd_source_hpet); }
static int b_insns_buddy(struct bench *b) { return check_insns(b, &wd_source_buddy); }
static int b_bt2(struct bench *b) { return backtrace_all(b, 2); }
static int b_bt4(struct bench *b) { return backtrace_all(b, 4); }
static int b_bt16(struct bench *b) { return backtrace_all(b, 16); }
static int b_bt64(struct bench *b) { return backtrace_all(b, 64); }

#define IOAPIC_CMD	"watchdog_source=ioapic"
#define HPET_QEMU	"-global hpet.msi=on"
#define HPET_IPI_CMD	"watchdog_hpet_mode=ipi"

BENCH(lockup_detect_ioapic, "ms", "hard lockup (irqs-off spin) to its report, IO-APIC source, threshold 1 s",
      b_detect_ioapic, .cmdline = IOAPIC_CMD);
BENCH(lockup_detect_hpet, "ms", "hard lockup to its report, HPET rotating source, threshold 1 s, 4 CPUs",
      b_detect_hpet, .cpus = 4, .qemu = HPET_QEMU);
BENCH(lockup_detect_hpet_ipi, "ms", "hard lockup to its report, HPET receiver+IPI source, threshold 1 s, 4 CPUs",
      b_detect_hpet, .cpus = 4, .cmdline = HPET_IPI_CMD, .qemu = HPET_QEMU);
BENCH(lockup_detect_buddy, "ms", "hard lockup to its report, buddy source, threshold 1 s",
      b_detect_buddy);
BENCH(watchdog_nmis_per_cpu_s_ioapic, "count", "watchdog NMIs one CPU takes per second (3 s, default threshold), IO-APIC source",
      b_nmis_ioapic, .cmdline = IOAPIC_CMD);
BENCH(watchdog_nmis_per_cpu_s_hpet, "count", "watchdog NMIs one CPU takes in a second, HPET rotating, 4 CPUs",
      b_nmis_hpet, .cpus = 4, .qemu = HPET_QEMU);
BENCH(watchdog_nmis_per_cpu_s_hpet_ipi, "count", "watchdog NMIs one CPU takes in a second, HPET receiver+IPI, 4 CPUs",
      b_nmis_hpet, .cpus = 4, .cmdline = HPET_IPI_CMD, .qemu = HPET_QEMU);
BENCH(watchdog_nmis_per_cpu_s_buddy, "count", "watchdog NMIs one CPU takes in a second, buddy source (none)",
      b_nmis_buddy);
BENCH(watchdog_check_insns_ioapic, "tsc", "one PIT NMI's check on one CPU, IO-APIC source",
      b_insns_ioapic, .cmdline = IOAPIC_CMD);
BENCH(watchdog_check_insns_hpet, "tsc", "one HPET NMI handler: recognise, hand over, check, 4 CPUs",
      b_insns_hpet, .cpus = 4, .qemu = HPET_QEMU);
BENCH(watchdog_check_insns_hpet_ipi, "tsc", "one HPET handler (receiver: recognise, 3 IPIs, check) or IPI'd CPU's check, 4 CPUs",
      b_insns_hpet, .cpus = 4, .cmdline = HPET_IPI_CMD, .qemu = HPET_QEMU);
BENCH(watchdog_check_insns_buddy, "tsc", "one buddy check in a tick (the next CPU's heartbeat)",
      b_insns_buddy);
/*
 * The same check with 255 CPUs, the most xAPIC can address: a buddy check
 * reads one other CPU's heartbeat, so its cost must not grow with the CPU
 * count.  tools/bench also takes boot_255cpu from this boot's console.
 */
BENCH(watchdog_check_insns_buddy_255cpu, "tsc", "one buddy check in a tick, 255 CPUs (flat in CPUs?)",
      b_insns_buddy, .cpus = 255);
BENCH(self_nmi_1h_hpet_ring, "tsc", "self NMI round trip, one claiming handler, on CPU 0 of the rotating HPET source's 4-CPU ring",
      b_self_nmi_hpet_ring, .cpus = 4, .qemu = HPET_QEMU);
BENCH(backtrace_all_2cpu, "tsc", "all-CPU NMI backtrace, 2 CPUs, printed to the log ring, console quiet",
      b_bt2);
BENCH(backtrace_all_4cpu, "tsc", "all-CPU NMI backtrace, 4 CPUs, console quiet", b_bt4, .cpus = 4);
BENCH(backtrace_all_16cpu, "tsc", "all-CPU NMI backtrace, 16 CPUs, console quiet", b_bt16, .cpus = 16);
BENCH(backtrace_all_64cpu, "tsc", "all-CPU NMI backtrace, 64 CPUs, console quiet", b_bt64, .cpus = 64);
