/*
 * A tiny 32-bit Multiboot (v1) kernel that lets the harness self-tests
 * drive tools/nmikit-qemu end to end without the real nmikit kernel.
 * Its command line (QEMU -append) picks what it does, word by word:
 *
 *   ktap=good|bad|trunc   print a KTAP document (passing, failing, cut short)
 *   bytes                 print bytes that are not UTF-8 and a line without \n
 *   count=N               print N lines, each with the TSC (replay checks)
 *   nmi=N                 wait with HLT until N NMIs arrived (QMP inject-nmi)
 *   spin=1                with nmi=N: wait spinning (PAUSE, TSC reads) not in HLT
 *   echo                  read one line from the serial port and print it
 *   triple                load an empty IDT and trap: a triple fault
 *   hang                  never finish (timeout checks)
 *   exit=N                finally write N to isa-debug-exit (default 0)
 *
 * Built by tests/harness/test_harness.py with gcc -m32 and ld -m elf_i386.
 */

#define COM1 0x3f8
#define DEBUG_EXIT_PORT 0xf4

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef unsigned long long u64;

/* Multiboot header: magic, flags (page-align modules, want memory info),
 * checksum. QEMU's -kernel loader looks for it in the first 8 KiB. */
__asm__(
	".section .multiboot, \"a\"\n"
	".align 4\n"
	".long 0x1badb002, 0x3, -(0x1badb002 + 0x3)\n"
	".text\n"
	".globl _start\n"
	"_start:\n"
	"	mov $stack_top, %esp\n"
	"	push %ebx\n"
	"	push %eax\n"
	"	call fake_main\n"
	"1:	cli\n"
	"	hlt\n"
	"	jmp 1b\n"
	".globl nmi_entry\n"
	"nmi_entry:\n"
	"	pusha\n"
	"	call nmi_handler\n"
	"	popa\n"
	"	iret\n"
	".bss\n"
	".align 16\n"
	"stack_bottom: .skip 16384\n"
	"stack_top:\n"
	".text\n");

static inline void outb(u16 port, u8 val)
{
	__asm__ volatile("outb %0, %1" : : "a"(val), "Nd"(port));
}

static inline void outl(u16 port, u32 val)
{
	__asm__ volatile("outl %0, %1" : : "a"(val), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 val;
	__asm__ volatile("inb %1, %0" : "=a"(val) : "Nd"(port));
	return val;
}

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

static void putc(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		__asm__ volatile("pause");
	outb(COM1, (u8)c);
}

static void puts(const char *s)
{
	while (*s)
		putc(*s++);
}

static void putu(u32 v)
{
	char buf[12];
	int i = 0;

	do {
		buf[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		putc(buf[--i]);
}

static void puthex64(u64 v)
{
	static const char digits[] = "0123456789abcdef";
	int shift;

	puts("0x");
	for (shift = 60; shift >= 0; shift -= 4)
		putc(digits[(v >> shift) & 0xf]);
}

static __attribute__((noreturn)) void finish(u32 value)
{
	outl(DEBUG_EXIT_PORT, value);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* Command-line words: find "key" or "key=value". */
static const char *cmdline = "";

static const char *word(const char *key)
{
	const char *p = cmdline;

	while (*p) {
		const char *k = key;
		const char *w = p;

		while (*k && *w == *k) {
			k++;
			w++;
		}
		if (!*k && (*w == '=' || *w == ' ' || *w == 0))
			return *w == '=' ? w + 1 : w;
		while (*p && *p != ' ')
			p++;
		while (*p == ' ')
			p++;
	}
	return 0;
}

static int value_is(const char *val, const char *want)
{
	while (*want && *val == *want) {
		val++;
		want++;
	}
	return !*want && (*val == ' ' || *val == 0);
}

static u32 number(const char *val)
{
	u32 n = 0;

	while (*val >= '0' && *val <= '9')
		n = n * 10 + (u32)(*val++ - '0');
	return n;
}

static void ktap(const char *kind)
{
	puts("KTAP version 1\n1..2\n");
	puts("    KTAP version 1\n    # Subtest: fake_suite\n    1..3\n");
	puts("    ok 1 fake_case_one\n");
	puts("noise from another CPU\n");
	if (value_is(kind, "bad"))
		puts("    not ok 2 fake_case_two\n");
	else
		puts("    ok 2 fake_case_two\n");
	if (value_is(kind, "trunc"))
		return;
	puts("    ok 3 fake_case_three # SKIP not on this machine\n");
	puts("ok 1 fake_suite\n");
	puts("ok 2 fake_single\n");
}

/* 32-bit IDT with one interrupt gate, for vector 2 (NMI). */
struct gate {
	u16 off_lo, sel;
	u8 zero, type;
	u16 off_hi;
} __attribute__((packed));

static struct gate idt[3];
static volatile u32 nmis;

void nmi_entry(void);

void nmi_handler(void)
{
	nmis++;
	puts("fake: got NMI ");
	putu(nmis);
	puts("\n");
}

static void load_idt(u32 limit)
{
	struct {
		u16 limit;
		u32 base;
	} __attribute__((packed)) desc = { (u16)limit, (u32)idt };

	__asm__ volatile("lidt %0" : : "m"(desc));
}

static void wait_nmis(u32 want, int spin)
{
	volatile u64 sink = 0;

	u16 cs;
	u32 handler = (u32)nmi_entry;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	idt[2].off_lo = (u16)handler;
	idt[2].off_hi = (u16)(handler >> 16);
	idt[2].sel = cs;
	idt[2].type = 0x8e;
	load_idt(sizeof(idt) - 1);
	puts("fake: waiting for ");
	putu(want);
	puts(" NMIs\n");
	while (nmis < want) {
		if (spin) {
			sink += rdtsc();
			__asm__ volatile("pause");
		} else {
			__asm__ volatile("hlt");
		}
	}
	puts("fake: all NMIs in\n");
}

static void echo_line(void)
{
	char c;

	puts("fake: type a line\n");
	puts("fake: got line: ");
	do {
		while (!(inb(COM1 + 5) & 0x01))
			__asm__ volatile("pause");
		c = (char)inb(COM1);
		if (c != '\r')
			putc(c == '\n' ? '\n' : c);
	} while (c != '\n');
}

void fake_main(u32 magic, u32 *info)
{
	const char *val;

	if (magic == 0x2badb002 && (info[0] & (1u << 2)))
		cmdline = (const char *)info[4];
	puts("fakekernel: booted, cmdline '");
	puts(cmdline);
	puts("'\n");

	if ((val = word("ktap")))
		ktap(val);
	if (word("bytes")) {
		puts("bad bytes: \xff\xfe\xc3(\n");
		puts("partial line without newline");
	}
	if ((val = word("count"))) {
		u32 i, n = number(val);

		for (i = 0; i < n; i++) {
			puts("line ");
			putu(i);
			puts(" tsc ");
			puthex64(rdtsc());
			puts("\n");
		}
	}
	if ((val = word("nmi")))
		wait_nmis(number(val), word("spin") != 0);
	if (word("echo"))
		echo_line();
	if (word("triple")) {
		load_idt(0);
		__asm__ volatile("int3");
	}
	if (word("hang")) {
		puts("fake: hanging\n");
		for (;;)
			__asm__ volatile("cli; hlt");
	}
	val = word("exit");
	finish(val ? number(val) : 0);
}
