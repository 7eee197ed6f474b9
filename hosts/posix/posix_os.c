/*
 * posix_os.c: <nmikit/os.h> for Linux user space.  Threads are CPUs, a
 * real-time signal is the NMI, two more signals are the maskable interrupts
 * (timer tick, irq_work self-IPI), and "interrupts off" is those two blocked
 * in the thread's signal mask.  Everything called from the NMI signal handler
 * is async-signal-safe: atomics, tgkill, clock_gettime, write, sigprocmask.
 */
#define _GNU_SOURCE
#include "nmikit_posix.h"

#include <nmikit/format.h>
#include <nmikit/irq_work.h>
#include <nmikit/log.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

struct nkp_cpu {
	_Atomic bool online;
	_Atomic bool taken;		/* a thread is attached */
	_Atomic pid_t tid;
	_Atomic int pending;		/* an NMI signal is on its way (the latch) */
	_Atomic bool irq_work_raised;	/* polled mode: irq_work self-IPI pending */
	unsigned depth;			/* NMI handlers running; own thread only */
	bool has_timer;
	timer_t timer;
	_Atomic uint64_t sent, collapsed, dropped, delivered, nested, max_depth;
	_Atomic uint64_t ticks, irq_work_ipis;
} NK_CACHE_ALIGNED;

static struct nkp_cpu nkp_cpus[NMIKIT_MAX_CPUS];
static struct nkp_config nkp_cfg = { .ncpus = 1, .console_fd = 2 };
static pid_t nkp_pid;
static int nkp_sig_nmi, nkp_sig_tick, nkp_sig_irq_work;

static __thread unsigned nkp_cpu = NKP_NO_CPU;
static __thread unsigned nkp_relax_count;
static __thread unsigned nkp_ctx;		/* NKP_CTX_TICK | NKP_CTX_IRQ_WORK */
/* Polled mode: the interrupt flag, and when the next tick is due. */
static __thread bool nkp_soft_irqs_off;
static __thread uint64_t nkp_next_tick;

static void (*_Atomic nkp_tick_hook)(unsigned cpu);
static void (*_Atomic nkp_nmi_hook)(unsigned cpu, unsigned depth);
static void (*_Atomic nkp_panic_hook)(const char *msg);

static _Atomic unsigned nkp_reason_bits;
static _Atomic uint64_t nkp_reason_ack_count[2];

static int nkp_tgkill(pid_t tid, int sig)
{
	return (int)syscall(SYS_tgkill, nkp_pid, tid, sig);
}

/* --- the three signal handlers ------------------------------------------- */

/*
 * The NMI "entry code".  NMI context: interrupts (tick, irq_work) are blocked
 * by the handler's sa_mask; with nmi_nesting the NMI signal itself is not,
 * so another NMI can land on any instruction of this function or of the
 * core below it.  Clearing `pending` first reopens the latch: a send from
 * now on raises a new signal, which waits (or nests) behind this one.
 */
static void nkp_do_nmi(unsigned cpu, uint64_t ip, uint64_t sp, void *regs)
{
	struct nkp_cpu *c = &nkp_cpus[cpu];
	struct nmi_frame f;
	void (*hook)(unsigned, unsigned);
	unsigned depth;

	atomic_store_explicit(&c->pending, 0, memory_order_seq_cst);
	depth = ++c->depth;
	nk_atomic_inc(&c->delivered);
	if (depth > 1)
		nk_atomic_inc(&c->nested);
	nk_atomic_max_u64(&c->max_depth, depth);

	f.ip = ip;
	f.sp = sp;
	f.from_user = false;
	f.regs = regs;
	hook = atomic_load_explicit(&nkp_nmi_hook, memory_order_acquire);
	if (hook)
		hook(cpu, depth);
	nmi_entry(&f);
	c->depth--;
}

static void nkp_nmi_signal(int sig, siginfo_t *si, void *ucv)
{
	int saved_errno = errno;
	unsigned cpu = nkp_cpu;
	ucontext_t *uc = ucv;

	(void)sig;
	(void)si;
	if (cpu == NKP_NO_CPU)
		return;		/* stray: the thread detached meanwhile */
	nkp_do_nmi(cpu, (uint64_t)uc->uc_mcontext.gregs[REG_RIP],
		   (uint64_t)uc->uc_mcontext.gregs[REG_RSP], uc);
	errno = saved_errno;
}

/* The timer tick: interrupt context, interrupts off. */
static void nkp_do_tick(unsigned cpu)
{
	void (*hook)(unsigned);

	if (!atomic_load(&nkp_cpus[cpu].online))
		return;
	nk_atomic_inc(&nkp_cpus[cpu].ticks);
	nkp_ctx |= NKP_CTX_TICK;
	irq_work_tick();
	hook = atomic_load_explicit(&nkp_tick_hook, memory_order_acquire);
	if (hook)
		hook(cpu);
	nkp_ctx &= ~NKP_CTX_TICK;
}

static void nkp_tick_signal(int sig)
{
	int saved_errno = errno;

	(void)sig;
	if (nkp_cpu != NKP_NO_CPU)
		nkp_do_tick(nkp_cpu);
	errno = saved_errno;
}

/* The irq_work self-IPI: interrupt context, interrupts off. */
static void nkp_do_irq_work(unsigned cpu)
{
	nk_atomic_inc(&nkp_cpus[cpu].irq_work_ipis);
	nkp_ctx |= NKP_CTX_IRQ_WORK;
	irq_work_run();
	nkp_ctx &= ~NKP_CTX_IRQ_WORK;
}

static void nkp_irq_work_signal(int sig)
{
	int saved_errno = errno;

	(void)sig;
	if (nkp_cpu != NKP_NO_CPU)
		nkp_do_irq_work(nkp_cpu);
	errno = saved_errno;
}

/*
 * Polled delivery (nkp_config.polled).  An NMI is taken whenever none runs;
 * interrupts only with the thread-local interrupt flag on and outside every
 * handler, each run with the flag off as a handler would.
 */
void nkp_poll(void)
{
	unsigned cpu = nkp_cpu;
	struct nkp_cpu *c;

	if (!nkp_cfg.polled || cpu == NKP_NO_CPU)
		return;
	c = &nkp_cpus[cpu];
	if (!c->depth && atomic_load_explicit(&c->pending, memory_order_acquire))
		nkp_do_nmi(cpu, (uint64_t)(uintptr_t)__builtin_return_address(0),
			   (uint64_t)(uintptr_t)__builtin_frame_address(0), NULL);
	if (nkp_soft_irqs_off || c->depth || nkp_ctx)
		return;
	if (atomic_exchange_explicit(&c->irq_work_raised, false, memory_order_acq_rel)) {
		nkp_soft_irqs_off = true;
		nkp_do_irq_work(cpu);
		nkp_soft_irqs_off = false;
	}
	if (c->has_timer && os_timestamp_ns() >= nkp_next_tick) {
		nkp_next_tick = os_timestamp_ns() + 1000000000ull / nkp_cfg.tick_hz;
		nkp_soft_irqs_off = true;
		nkp_do_tick(cpu);
		nkp_soft_irqs_off = false;
	}
}

/* --- setup ---------------------------------------------------------------- */

static void nkp_irq_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, nkp_sig_tick);
	sigaddset(set, nkp_sig_irq_work);
}

int nkp_init(const struct nkp_config *cfg)
{
	struct sigaction sa;

	if (!cfg || cfg->ncpus == 0 || cfg->ncpus > NMIKIT_MAX_CPUS) {
		errno = EINVAL;
		return -1;
	}
	nkp_cfg = *cfg;
	nkp_pid = getpid();
	nkp_sig_nmi = NKP_SIG_NMI;
	nkp_sig_tick = NKP_SIG_TICK;
	nkp_sig_irq_work = NKP_SIG_IRQ_WORK;

	/* Maskable interrupts never interrupt an NMI or each other. */
	if (cfg->polled)
		return 0;
	memset(&sa, 0, sizeof(sa));
	nkp_irq_set(&sa.sa_mask);
	sa.sa_sigaction = nkp_nmi_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | (cfg->nmi_nesting ? SA_NODEFER : 0);
	if (sigaction(nkp_sig_nmi, &sa, NULL))
		return -1;

	memset(&sa, 0, sizeof(sa));
	nkp_irq_set(&sa.sa_mask);
	sa.sa_handler = nkp_tick_signal;
	sa.sa_flags = SA_RESTART;
	if (sigaction(nkp_sig_tick, &sa, NULL))
		return -1;
	sa.sa_handler = nkp_irq_work_signal;
	if (sigaction(nkp_sig_irq_work, &sa, NULL))
		return -1;
	return 0;
}

int nkp_cpu_attach(unsigned cpu)
{
	struct nkp_cpu *c;
	bool no = false;
	sigset_t set;

	if (cpu >= nkp_cfg.ncpus || nkp_cpu != NKP_NO_CPU) {
		errno = EINVAL;
		return -1;
	}
	c = &nkp_cpus[cpu];
	if (!atomic_compare_exchange_strong(&c->taken, &no, true)) {
		errno = EBUSY;
		return -1;
	}
	nkp_cpu = cpu;
	c->depth = 0;
	atomic_store(&c->pending, 0);
	atomic_store(&c->tid, (pid_t)syscall(SYS_gettid));

	/* A new thread inherits its creator's mask: start with all three open. */
	nkp_irq_set(&set);
	sigaddset(&set, nkp_sig_nmi);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	c->has_timer = false;
	nkp_soft_irqs_off = false;
	atomic_store(&c->irq_work_raised, false);
	if (nkp_cfg.tick_hz && nkp_cfg.polled) {
		nkp_next_tick = os_timestamp_ns() + 1000000000ull / nkp_cfg.tick_hz;
		c->has_timer = true;
	} else if (nkp_cfg.tick_hz) {
		struct sigevent sev;
		struct itimerspec its;
		long ns = 1000000000L / (long)nkp_cfg.tick_hz;

		memset(&sev, 0, sizeof(sev));
		sev.sigev_notify = SIGEV_THREAD_ID;
		sev.sigev_signo = nkp_sig_tick;
		sev._sigev_un._tid = atomic_load(&c->tid);	/* sigev_notify_thread_id */
		if (timer_create(CLOCK_MONOTONIC, &sev, &c->timer)) {
			nkp_cpu = NKP_NO_CPU;
			atomic_store(&c->taken, false);
			return -1;
		}
		its.it_interval.tv_sec = ns / 1000000000L;
		its.it_interval.tv_nsec = ns % 1000000000L;
		its.it_value = its.it_interval;
		timer_settime(c->timer, 0, &its, NULL);
		c->has_timer = true;
	}
	atomic_store_explicit(&c->online, true, memory_order_seq_cst);
	return 0;
}

void nkp_cpu_detach(void)
{
	unsigned cpu = nkp_cpu;
	struct nkp_cpu *c;
	uint64_t start;

	if (cpu == NKP_NO_CPU)
		return;
	c = &nkp_cpus[cpu];
	atomic_store_explicit(&c->online, false, memory_order_seq_cst);
	if (c->has_timer) {
		if (!nkp_cfg.polled)
			timer_delete(c->timer);
		c->has_timer = false;
	}
	/* Let an NMI already on its way arrive (bounded: 1 s). */
	start = os_timestamp_ns();
	while (atomic_load(&c->pending) && os_timestamp_ns() - start < 1000000000ull)
		os_cpu_relax();
	/* Run what irq_work this CPU still holds, as an offlining CPU would. */
	nkp_irqs_off(irq_work_tick());
	nkp_cpu = NKP_NO_CPU;
	atomic_store(&c->taken, false);
}

unsigned nkp_this_cpu(void)
{
	return nkp_cpu;
}

unsigned nkp_context(void)
{
	unsigned cpu = nkp_cpu;
	unsigned ctx = nkp_ctx;

	if (cpu != NKP_NO_CPU && nkp_cpus[cpu].depth)
		ctx |= NKP_CTX_NMI;
	return ctx;
}

void nkp_send_nmi(unsigned cpu)
{
	struct nkp_cpu *c;

	if (cpu >= nkp_cfg.ncpus)
		return;
	c = &nkp_cpus[cpu];
	if (!atomic_load_explicit(&c->online, memory_order_acquire)) {
		nk_atomic_inc(&c->dropped);
		return;
	}
	if (atomic_exchange_explicit(&c->pending, 1, memory_order_seq_cst)) {
		nk_atomic_inc(&c->collapsed);
		return;
	}
	nk_atomic_inc(&c->sent);
	if (nkp_cfg.polled)
		return;
	if (nkp_tgkill(atomic_load(&c->tid), nkp_sig_nmi)) {
		atomic_store(&c->pending, 0);
		nk_atomic_inc(&c->dropped);
	}
}

void nkp_set_tick_hook(void (*fn)(unsigned cpu))
{
	atomic_store_explicit(&nkp_tick_hook, fn, memory_order_release);
}

void nkp_set_nmi_hook(void (*fn)(unsigned cpu, unsigned depth))
{
	atomic_store_explicit(&nkp_nmi_hook, fn, memory_order_release);
}

void nkp_set_panic_hook(void (*fn)(const char *msg))
{
	atomic_store_explicit(&nkp_panic_hook, fn, memory_order_release);
}

void nkp_reason_assert(unsigned bits)
{
	atomic_fetch_or(&nkp_reason_bits, bits & OS_NMI_REASON_MASK);
}

unsigned nkp_reason_asserted(void)
{
	return atomic_load(&nkp_reason_bits);
}

uint64_t nkp_reason_acks(unsigned bit)
{
	if (bit == OS_NMI_REASON_SERR)
		return atomic_load(&nkp_reason_ack_count[0]);
	if (bit == OS_NMI_REASON_IOCHK)
		return atomic_load(&nkp_reason_ack_count[1]);
	return 0;
}

void nkp_get_cpu_stats(unsigned cpu, struct nkp_cpu_stats *out)
{
	const struct nkp_cpu *c;

	memset(out, 0, sizeof(*out));
	if (cpu >= NMIKIT_MAX_CPUS)
		return;
	c = &nkp_cpus[cpu];
	out->sent = atomic_load(&c->sent);
	out->collapsed = atomic_load(&c->collapsed);
	out->dropped = atomic_load(&c->dropped);
	out->delivered = atomic_load(&c->delivered);
	out->nested = atomic_load(&c->nested);
	out->max_depth = atomic_load(&c->max_depth);
	out->ticks = atomic_load(&c->ticks);
	out->irq_work_ipis = atomic_load(&c->irq_work_ipis);
}

/* --- <nmikit/os.h> ----------------------------------------------------------- */

/*
 * NMI-safe: a thread-local load.  A thread that is not attached gets the last
 * per-CPU slot, which is never online; such threads may log and register
 * handlers, but two of them must not use per-CPU core state at once.
 */
unsigned os_cpu_id(void)
{
	unsigned cpu = nkp_cpu;

	return cpu == NKP_NO_CPU ? NMIKIT_MAX_CPUS - 1 : cpu;
}

unsigned os_cpu_count(void)
{
	return nkp_cfg.ncpus;
}

bool os_cpu_online(unsigned cpu)
{
	return cpu < nkp_cfg.ncpus &&
	       atomic_load_explicit(&nkp_cpus[cpu].online, memory_order_acquire);
}

/*
 * NMI-safe: PAUSE, and now and then a yield so that a waiter does not eat
 * the host core that the CPU it waits for needs.  A CPU parked by a
 * shootdown sleeps instead of spinning (nanosleep is async-signal-safe).
 */
void os_cpu_relax(void)
{
	unsigned cpu = nkp_cpu;

	__builtin_ia32_pause();
	nkp_poll();
	if (cpu != NKP_NO_CPU && nmi_cpu_parked(cpu)) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
		return;
	}
	if ((++nkp_relax_count & 63) == 0)
		sched_yield();
}

/* NMI-safe: clock_gettime is async-signal-safe and lock-free (vDSO). */
uint64_t os_timestamp_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* NMI-safe: pthread_sigmask is async-signal-safe.  1: they were off. */
os_irqflags_t os_local_irq_save(void)
{
	sigset_t set, old;

	if (nkp_cfg.polled) {
		bool was = nkp_soft_irqs_off;

		nkp_soft_irqs_off = true;
		return was;
	}
	nkp_irq_set(&set);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	return sigismember(&old, nkp_sig_tick) ? 1 : 0;
}

void os_local_irq_restore(os_irqflags_t flags)
{
	sigset_t set;

	if (nkp_cfg.polled) {
		nkp_soft_irqs_off = flags;
		if (!flags)
			nkp_poll();
		return;
	}
	if (flags)
		return;
	nkp_irq_set(&set);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

void os_send_nmi(unsigned cpu)
{
	nkp_send_nmi(cpu);
}

void os_send_nmi_self(void)
{
	if (nkp_cpu != NKP_NO_CPU)
		nkp_send_nmi(nkp_cpu);
}

void os_send_nmi_allbutself(void)
{
	for (unsigned cpu = 0; cpu < nkp_cfg.ncpus; cpu++)
		if (cpu != nkp_cpu && os_cpu_online(cpu))
			nkp_send_nmi(cpu);
}

/* NMI-safe: one tgkill to ourselves; delivered once interrupts are on. */
void os_irq_work_raise(void)
{
	unsigned cpu = nkp_cpu;

	if (cpu == NKP_NO_CPU)
		return;
	if (nkp_cfg.polled)
		atomic_store_explicit(&nkp_cpus[cpu].irq_work_raised, true, memory_order_release);
	else
		nkp_tgkill(atomic_load(&nkp_cpus[cpu].tid), nkp_sig_irq_work);
}

unsigned os_nmi_reason_read(void)
{
	return atomic_load(&nkp_reason_bits);
}

void os_nmi_reason_ack(unsigned bits)
{
	atomic_fetch_and(&nkp_reason_bits, ~bits);
	if (bits & OS_NMI_REASON_SERR)
		atomic_fetch_add(&nkp_reason_ack_count[0], 1);
	if (bits & OS_NMI_REASON_IOCHK)
		atomic_fetch_add(&nkp_reason_ack_count[1], 1);
}

/* NMI-safe for the console owner: write(2) is async-signal-safe. */
void os_console_write(const char *buf, size_t len)
{
	int fd = nkp_cfg.console_fd;

	while (fd >= 0 && len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

_Noreturn void os_panic(const char *msg)
{
	void (*hook)(const char *) = atomic_load(&nkp_panic_hook);
	char line[256];
	int n;

	/* nk_snprintf (core/format.c) is NMI-safe; the C library's is not. */
	n = nk_snprintf(line, sizeof(line), "nmikit-posix: panic on CPU %u: %s\n",
			os_cpu_id(), msg);
	if (n > 0)
		os_console_write(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	if (hook)
		hook(msg);
	abort();
}
