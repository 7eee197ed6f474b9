/*
 * syscall.c: SYSCALL/SYSRET set-up, the system calls, and the two checks
 * that keep ring 3 from turning the kernel's own instructions against it:
 * user pointers are validated against the page tables, and the state a
 * return to ring 3 would load is checked before SYSRET or IRETQ sees it.
 */
#include <arch/syscall.h>
#include <arch/cpu.h>
#include <arch/paging.h>
#include <arch/percpu.h>
#include <arch/regs.h>
#include <kernel/sched.h>
#include <nmikit/log.h>

#define RFLAGS_CF	(1ul << 0)
#define RFLAGS_FIXED1	(1ul << 1)	/* always reads as 1 */
#define RFLAGS_PF	(1ul << 2)
#define RFLAGS_AF	(1ul << 4)
#define RFLAGS_ZF	(1ul << 6)
#define RFLAGS_SF	(1ul << 7)
#define RFLAGS_IOPL	(3ul << 12)
#define RFLAGS_OF	(1ul << 11)
#define RFLAGS_NT	(1ul << 14)
#define RFLAGS_RF_BIT	(1ul << 16)
#define RFLAGS_ID	(1ul << 21)

#define CR4_SMAP	(1ul << 21)
#define PTE_ADDR_MASK	0x000ffffffffff000ull

/* The RFLAGS bits a ring-3 task may own; the rest are forced (IF on, IOPL 0). */
#define USER_RFLAGS_OWN	(RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | \
			 RFLAGS_TF | RFLAGS_DF | RFLAGS_OF | RFLAGS_AC | RFLAGS_RF_BIT | \
			 RFLAGS_ID)

/*
 * SYSCALL loads CS = STAR[47:32] and SS = that + 8; SYSRET (64-bit) loads
 * CS = STAR[63:48] + 16 and SS = STAR[63:48] + 8, both with RPL 3.  The GDT
 * (gdt.c) is laid out for exactly this.
 */
_Static_assert(SEL_KDATA == SEL_KCODE + 8, "SYSCALL needs kernel data right after kernel code");
_Static_assert(SEL_UCODE == SEL_UDATA + 8, "SYSRET needs user code right after user data");
#define STAR_SYSCALL_CS	((uint64_t)SEL_KCODE)
#define STAR_SYSRET_BASE ((uint64_t)(SEL_UDATA - 8))

/*
 * What SYSCALL clears in RFLAGS on the way in (MSR_FMASK), and why each bit:
 *  IF  no interrupt may arrive while RSP and the GS base are still the
 *      user's; an IRQ pushing its frame on a user-chosen RSP in ring 0
 *      would let ring 3 pick where the kernel writes.
 *  TF  no single-step trap inside the entry (ring 3 may single-step its own
 *      SYSCALL; the #DB that follows is taken by the IST #DB entry at the
 *      first kernel instruction and must not repeat at every later one).
 *  DF  the kernel and the compiler assume DF = 0 (string instructions go
 *      upwards).  Exceptions and NMIs do not clear DF on delivery, so an
 *      NMI that lands in the first instructions of this entry would run
 *      with the user's DF: the NMI entry's stack checks and copies (and any
 *      rep-string code it reaches) would then run backwards.
 *  AC  with SMAP, AC = 1 switches the protection off; a user-set AC must
 *      not reach kernel code (nor an NMI taken in the entry).
 *  NT  IRETQ with NT set raises #GP: the kernel's own IRETQ (the IRETQ exit
 *      below, or an interrupt return inside a system call) would fault.
 *  RF, IOPL  kernel-side meaning only; keep them at their defaults.
 */
#define SYSCALL_FMASK	(RFLAGS_IF | RFLAGS_TF | RFLAGS_DF | RFLAGS_AC | RFLAGS_NT | \
			 RFLAGS_RF_BIT | RFLAGS_IOPL)

static bool smap_on;
static syscall_test_fn *volatile test_hook;
static struct syscall_stats cpu_stats[MAX_CPUS];

void syscall_init_cpu(void)
{
	wrmsr(MSR_STAR, (STAR_SYSRET_BASE << 48) | (STAR_SYSCALL_CS << 32));
	wrmsr(MSR_LSTAR, (uint64_t)syscall_entry);
	wrmsr(MSR_FMASK, SYSCALL_FMASK);
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
	smap_on = (read_cr4() & CR4_SMAP) != 0;
}

void syscall_set_test_hook(syscall_test_fn *fn)
{
	test_hook = fn;
}

void syscall_get_stats(unsigned int cpu, struct syscall_stats *out)
{
	*out = cpu_stats[cpu];
}

/* --- user memory ------------------------------------------------------ */

/*
 * One page: every level of the walk must be present and user-accessible
 * (and writable for a write).  The tables are identity mapped, so their
 * physical addresses can be read directly.
 */
static bool user_page_ok(uint64_t va, bool write)
{
	const uint64_t *table = (const uint64_t *)(read_cr3() & PTE_ADDR_MASK);

	for (int level = 3; level >= 0; level--) {
		uint64_t e = table[(va >> (12 + 9 * level)) & 511];
		if (!(e & PTE_P) || !(e & PTE_U) || (write && !(e & PTE_W)))
			return false;
		if (level == 0 || ((level == 1 || level == 2) && (e & PTE_PS)))
			return true;
		table = (const uint64_t *)(e & PTE_ADDR_MASK);
	}
	return false;
}

bool user_range_ok(uint64_t addr, uint64_t len, bool write)
{
	if (len == 0)
		return true;
	if (addr >= USER_ADDR_END || len > USER_ADDR_END - addr)
		return false;
	uint64_t end = addr + len;
	for (uint64_t page = addr & ~(PAGE_SIZE - 1); page < end; page += PAGE_SIZE)
		if (!user_page_ok(page, write))
			return false;
	return true;
}

static inline void user_access_begin(void)
{
	if (smap_on)
		__asm__ volatile("stac" ::: "memory");
}

static inline void user_access_end(void)
{
	if (smap_on)
		__asm__ volatile("clac" ::: "memory");
}

void copy_from_user(void *dst, const void *user_src, uint64_t len)
{
	uint8_t *d = dst;
	const volatile uint8_t *s = user_src;
	user_access_begin();
	for (uint64_t i = 0; i < len; i++)
		d[i] = s[i];
	user_access_end();
}

void copy_to_user(void *user_dst, const void *src, uint64_t len)
{
	volatile uint8_t *d = user_dst;
	const uint8_t *s = src;
	user_access_begin();
	for (uint64_t i = 0; i < len; i++)
		d[i] = s[i];
	user_access_end();
}

/* --- the return to ring 3 ------------------------------------------------ */

uint64_t user_rflags_sanitize(uint64_t rflags)
{
	return (rflags & USER_RFLAGS_OWN) | RFLAGS_IF | RFLAGS_FIXED1;
}

bool user_regs_sanitize(struct regs *r)
{
	r->cs = SEL_UCODE;
	r->ss = SEL_UDATA;
	r->rflags = user_rflags_sanitize(r->rflags);
	return addr_is_canonical(r->rip);
}

/*
 * SYSRET only for the plain case: the registers say exactly what SYSCALL
 * saved (RCX = RIP, R11 = RFLAGS), RIP is a lower-half canonical address
 * (see syscall_entry.S on CVE-2012-0217) and neither TF nor RF is set (SYSRET
 * would not deliver the single-step and resume flags as IRETQ does).  Any
 * other state, e.g. one a test hook wrote, goes out through IRETQ, which
 * restores every register.  A non-canonical RIP is refused outright: IRETQ
 * would raise #GP in ring 0 with the user's GS base already loaded.
 */
static bool return_by_sysret(struct regs *r)
{
	struct syscall_stats *st = &cpu_stats[this_cpu_id()];

	if (!user_regs_sanitize(r)) {
		st->refused++;
		user_task_kill(r, "return to a non-canonical rip refused", TASK_EXIT_BAD_RETURN);
	}
	if (r->rcx == r->rip && r->r11 == r->rflags && r->rip < USER_ADDR_END &&
	    !(r->rflags & (RFLAGS_TF | RFLAGS_RF_BIT))) {
		st->sysret++;
		return true;
	}
	st->iret++;
	return false;
}

/* --- the calls ------------------------------------------------------------ */

static long do_write(struct task *t, uint64_t buf, uint64_t len)
{
	char chunk[256];

	if (len > SYSCALL_WRITE_MAX)
		return -SYSCALL_EINVAL;
	if (!user_range_ok(buf, len, false))
		return -SYSCALL_EFAULT;
	for (uint64_t done = 0; done < len;) {
		uint64_t n = len - done < sizeof(chunk) ? len - done : sizeof(chunk);
		copy_from_user(chunk, (const void *)(buf + done), n);
		nk_console_write(chunk, n);
		done += n;
	}
	t->stats.bytes_written += len;
	return (long)len;
}

#define SLEEP_MS_MAX	(3600ull * 1000)

static long dispatch(struct task *t, struct regs *r)
{
	switch (r->rax) {
	case SYS_WRITE:
		return do_write(t, r->rdi, r->rsi);
	case SYS_YIELD:
		yield();
		return 0;
	case SYS_EXIT:
		task_exit((int)r->rdi);
	case SYS_SLEEP:
		if (r->rdi > SLEEP_MS_MAX)
			return -SYSCALL_EINVAL;
		sleep_ms(r->rdi);
		return 0;
	case SYS_GETCPU:
		return this_cpu_id();
	case SYS_GETPID:
		return t->id;
	case SYS_NMIKIT_TEST: {
		syscall_test_fn *fn = test_hook;
		return fn ? fn(r) : -SYSCALL_ENOSYS;
	}
	default:
		return -SYSCALL_ENOSYS;
	}
}

bool syscall_handler(struct regs *r)
{
	struct task *t = task_current();

	cpu_stats[this_cpu_id()].calls++;
	t->stats.syscalls++;
	irq_enable();
	r->rax = (uint64_t)dispatch(t, r);
	irq_disable();
	return return_by_sysret(r);
}
