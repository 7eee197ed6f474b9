/*
 * smp.c: brings up the application processors.  All of them are started at
 * once: INIT to each, one INIT-to-SIPI delay, a start-up IPI to each, then
 * a second one to those not yet heard from (the SDM's INIT-SIPI-SIPI).  Each
 * AP finds its CPU number from its APIC ID in smp_apic_to_cpu[], so the
 * numbering never depends on which AP wins a race.  The boot CPU waits with
 * PAUSE, and gives up on a CPU after smp_timeout_ms without news from any.
 */
#include <arch/acpi.h>
#include <arch/apic.h>
#include <arch/boot.h>
#include <arch/cpu.h>
#include <arch/gdt.h>
#include <arch/idt.h>
#include <arch/paging.h>
#include <arch/percpu.h>
#include <arch/smp.h>
#include <arch/tsc.h>
#include <kernel/shell.h>
#include <kernel/time.h>
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/param.h>

/* Read by trampoline.S (absolute addresses): APIC ID -> CPU, CPU -> stack top. */
uint16_t smp_apic_to_cpu[256] = { [0 ... 255] = 0xffff };
uint64_t smp_ap_stack[MAX_CPUS];

extern char trampoline_start[], trampoline_end[];
extern char trampoline_cr3[], trampoline_cr4[], trampoline_cr0[];

void smp_ap_main(unsigned int cpu);

static volatile uint8_t cpu_state[MAX_CPUS];
static uint64_t sipi_tsc;
static uint64_t online_tsc[MAX_CPUS];
static volatile unsigned int n_online = 1;
static uint64_t boot_cr4;

static void (*volatile ap_idle)(void);
static void (*ap_hooks[SMP_MAX_AP_HOOKS])(unsigned int cpu);
static unsigned int n_ap_hooks;

static unsigned int maxcpus = MAX_CPUS;
NK_PARAM_UINT("maxcpus", maxcpus, 1, MAX_CPUS, "start at most this many CPUs (boot CPU included)");

/*
 * An AP that is alive answers within a millisecond, but under TCG its vCPU
 * is a host thread that a loaded host may not run for a good part of a
 * second (a 100 ms default lost CPU 1 of a 2-CPU boot under a loaded test
 * run). A dead CPU costs this once per boot; Linux waits 10 s.
 */
static unsigned int smp_timeout_ms = 1000;
NK_PARAM_UINT("smp_timeout_ms", smp_timeout_ms, 1, 60000,
	      "give up on CPUs that have not started after this long without progress");

static int smp_init_udelay = -1;
NK_PARAM_INT("smp_init_udelay", smp_init_udelay, -1, 100000,
	      "microseconds between INIT and the first start-up IPI; -1: 0 on CPUs that need no wait, else 10000");

enum smp_state smp_cpu_state(unsigned int cpu)
{
	return cpu < MAX_CPUS ? (enum smp_state)cpu_state[cpu] : SMP_ABSENT;
}

unsigned int smp_cpus_online(void)
{
	return n_online;
}

int smp_cpu_of_apic(uint32_t apic_id)
{
	if (apic_id > 255 || smp_apic_to_cpu[apic_id] == 0xffff)
		return -1;
	return smp_apic_to_cpu[apic_id];
}

uint64_t smp_cpu_boot_ns(unsigned int cpu)
{
	if (cpu == 0 || cpu >= MAX_CPUS || !online_tsc[cpu])
		return 0;
	return tsc_delta_ns(online_tsc[cpu] - sipi_tsc);
}

void smp_set_ap_idle(void (*fn)(void))
{
	ap_idle = fn;
}

bool smp_add_ap_init(void (*fn)(unsigned int cpu))
{
	if (n_ap_hooks >= SMP_MAX_AP_HOOKS)
		return false;
	ap_hooks[n_ap_hooks++] = fn;
	return true;
}

void smp_init_boot_cpu(void)
{
	unsigned int n = platform.n_cpus ? platform.n_cpus : 1;
	if (n > maxcpus) {
		pr_info("smp: maxcpus=%u: %u of %u CPUs will be started", maxcpus, maxcpus, n);
		n = maxcpus;
	}
	cpus_possible = n;
	uint32_t id = lapic_ready() ? lapic_id() : platform.cpus[0].apic_id;
	percpu_area[0].apic_id = id;
	if (id < 256)
		smp_apic_to_cpu[id] = 0;
	for (unsigned int cpu = 1; cpu < n; cpu++) {
		uint32_t aid = platform.cpus[cpu].apic_id;
		percpu_area[cpu].apic_id = aid;
		if (aid < 256)
			smp_apic_to_cpu[aid] = (uint16_t)cpu;
	}
	cpu_state[0] = SMP_ONLINE;
	percpu_area[0].online = true;
}

static bool state_move(unsigned int cpu, uint8_t from, uint8_t to)
{
	return __atomic_compare_exchange_n(&cpu_state[cpu], &from, to, false,
					   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static _Noreturn void park(void)
{
	for (;;) {
		irq_disable();
		cpu_halt();
	}
}

/* C entry of each AP, on its own boot stack, interrupts off (trampoline.S). */
void smp_ap_main(unsigned int cpu)
{
	/* TSS (IST stacks) and then the IDT first: an NMI may come at any moment. */
	gdt_load_cpu(cpu);
	idt_load();
	if (read_cr4() != boot_cr4)
		write_cr4(boot_cr4);
	if (!state_move(cpu, SMP_STARTING, SMP_ALIVE))
		park();		/* too late: the boot CPU has given up on us */

	lapic_init_cpu(cpu);
	time_init_cpu();
	for (unsigned int i = 0; i < n_ap_hooks; i++)
		ap_hooks[i](cpu);

	online_tsc[cpu] = rdtsc();
	percpu_area[cpu].online = true;
	__atomic_fetch_add(&n_online, 1, __ATOMIC_RELEASE);
	cpu_state[cpu] = SMP_ONLINE;

	void (*idle)(void) = ap_idle;
	if (idle)
		idle();
	for (;;)
		irq_enable_and_halt();
}

/*
 * The SDM's 10 ms between INIT and the first start-up IPI dates from CPUs
 * with an external APIC.  Intel family 6 (every Core and Atom) and AMD
 * family 0Fh and later take the SIPI at once; for anything else keep the
 * full wait.
 */
static unsigned int init_delay_us(void)
{
	if (smp_init_udelay >= 0)
		return (unsigned int)smp_init_udelay;
	uint32_t a, b, c, d;
	cpuid(0, 0, &a, &b, &c, &d);
	bool intel = b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e;	/* GenuineIntel */
	bool amd = b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163;	/* AuthenticAMD */
	cpuid(1, 0, &a, &b, &c, &d);
	unsigned int family = (a >> 8) & 0xf;
	if (family == 0xf)
		family += (a >> 20) & 0xff;
	if ((intel && family == 6) || (amd && family >= 0xf))
		return 0;
	return 10000;
}

static bool install_trampoline(void)
{
	size_t len = (size_t)(trampoline_end - trampoline_start);
	if (len > PAGE_SIZE || boot_info.mem_top < (1u << 20)) {
		pr_err("smp: trampoline (%zu bytes) does not fit at %#x; staying on one CPU",
		       len, TRAMPOLINE_PHYS);
		return false;
	}
	uint8_t *dst = (uint8_t *)(uintptr_t)TRAMPOLINE_PHYS;
	memcpy(dst, trampoline_start, len);
	uint64_t cr0;
	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	boot_cr4 = read_cr4();
	*(uint64_t *)(dst + (trampoline_cr3 - trampoline_start)) = paging_root();
	*(uint64_t *)(dst + (trampoline_cr4 - trampoline_start)) = boot_cr4;
	*(uint64_t *)(dst + (trampoline_cr0 - trampoline_start)) = cr0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return true;
}

static unsigned int count_state(unsigned int n, uint8_t s)
{
	unsigned int c = 0;
	for (unsigned int cpu = 1; cpu < n; cpu++)
		c += cpu_state[cpu] == s;
	return c;
}

/*
 * Wait while any CPU is in `s`, with PAUSE.  The deadline moves out each
 * time some CPU leaves `s`: a slow host may run 64 vCPUs one after another,
 * and that is progress, not failure.
 */
static void wait_while(unsigned int n, uint8_t s)
{
	uint64_t limit = ns_to_tsc((uint64_t)smp_timeout_ms * 1000000u);
	unsigned int left = count_state(n, s);
	uint64_t deadline = rdtsc() + limit;
	while (left) {
		cpu_relax();
		unsigned int now_left = count_state(n, s);
		if (now_left != left) {
			left = now_left;
			deadline = rdtsc() + limit;
		} else if ((int64_t)(rdtsc() - deadline) > 0) {
			break;
		}
	}
}

unsigned int smp_boot(void)
{
	unsigned int n = cpus_possible;
	uint64_t t0 = rdtsc();

	if (n <= 1) {
		pr_info("smp: 1 CPU, nothing to start");
		return 1;
	}
	if (!lapic_ready()) {
		pr_warn("smp: no local APIC; the other %u CPUs stay asleep", n - 1);
		return 1;
	}
	if (!install_trampoline())
		return 1;

	for (unsigned int cpu = 1; cpu < n; cpu++) {
		gdt_init_cpu(cpu);
		smp_ap_stack[cpu] = (uint64_t)(cpu_stacks[cpu].boot + BOOT_STACK_SIZE);
		cpu_state[cpu] = SMP_STARTING;
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);

	for (unsigned int cpu = 1; cpu < n; cpu++)
		lapic_send_init(percpu_area[cpu].apic_id);
	tsc_delay_us(init_delay_us());
	sipi_tsc = rdtsc();
	for (unsigned int cpu = 1; cpu < n; cpu++)
		lapic_send_startup(percpu_area[cpu].apic_id, TRAMPOLINE_SIPI_PAGE);
	tsc_delay_us(200);
	for (unsigned int cpu = 1; cpu < n; cpu++)
		if (cpu_state[cpu] == SMP_STARTING)
			lapic_send_startup(percpu_area[cpu].apic_id, TRAMPOLINE_SIPI_PAGE);

	wait_while(n, SMP_STARTING);
	for (unsigned int cpu = 1; cpu < n; cpu++) {
		if (state_move(cpu, SMP_STARTING, SMP_FAILED))
			pr_err("smp: CPU %u (APIC ID %u) did not start within %u ms; skipped",
			       cpu, percpu_area[cpu].apic_id, smp_timeout_ms);
	}
	/* A CPU that got to C finishes its set-up in bounded time. */
	wait_while(n, SMP_ALIVE);
	for (unsigned int cpu = 1; cpu < n; cpu++)
		if (cpu_state[cpu] == SMP_ALIVE)
			pr_err("smp: CPU %u (APIC ID %u) started but did not come online",
			       cpu, percpu_area[cpu].apic_id);

	uint64_t ns = tsc_delta_ns(rdtsc() - t0);
	unsigned int online = n_online;
	pr_info("smp: %u of %u CPUs online, started in %llu.%03llu ms", online, n,
		(unsigned long long)(ns / 1000000), (unsigned long long)(ns / 1000 % 1000));
	return online;
}

static const char *state_name(enum smp_state s)
{
	switch (s) {
	case SMP_STARTING:	return "starting";
	case SMP_ALIVE:		return "alive";
	case SMP_ONLINE:	return "online";
	case SMP_FAILED:	return "failed";
	default:		return "absent";
	}
}

static int cmd_cpus(int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return SHELL_USAGE;
	shell_printf("CPU  APIC  state       apic_ticks   irq0_ticks  up_in_us\n");
	for (unsigned int cpu = 0; cpu < cpus_possible; cpu++) {
		const struct percpu *p = &percpu_area[cpu];
		shell_printf("%3u  %4u  %-8s  %12llu %12llu  %8llu\n", cpu, p->apic_id,
			     state_name(smp_cpu_state(cpu)), (unsigned long long)p->apic_ticks,
			     (unsigned long long)p->irq0_ticks,
			     (unsigned long long)(smp_cpu_boot_ns(cpu) / 1000));
	}
	shell_printf("%u of %u CPUs online; tick %u Hz\n", smp_cpus_online(), cpus_possible,
		     timer_hz());
	return 0;
}
SHELL_CMD(cpus, "", "list CPUs: APIC ID, state, local APIC and IRQ0 tick counts", cmd_cpus);
