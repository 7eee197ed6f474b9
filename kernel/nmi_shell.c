/*
 * nmi_shell.c: the shell's `nmi` command: statistics per CPU (the core's
 * counters plus the entry assembly's nested/repeat-region counts), the
 * handler table, and sending NMIs by hand.
 */
#include <arch/percpu.h>
#include <kernel/shell.h>
#include <kernel/watchdog.h>
#include <nmikit/nmi.h>
#include <nmikit/os.h>

static int parse_cpu(const char *s, unsigned *cpu)
{
	unsigned v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > 100000)
			return -1;
		v = v * 10 + (unsigned)(*s - '0');
	}
	*cpu = v;
	return 0;
}

static int nmi_send_cmd(const char *target)
{
	unsigned cpu;
	if (!target) {
		shell_printf("usage: nmi send <cpu|all|others|self>\n");
		return -1;
	}
	if (!__builtin_strcmp(target, "all")) {
		os_send_nmi_allbutself();
		os_send_nmi_self();
	} else if (!__builtin_strcmp(target, "others")) {
		os_send_nmi_allbutself();
	} else if (!__builtin_strcmp(target, "self")) {
		os_send_nmi_self();
	} else if (parse_cpu(target, &cpu) == 0) {
		if (!os_cpu_online(cpu)) {
			shell_printf("nmi: CPU %u is not online\n", cpu);
			return -1;
		}
		os_send_nmi(cpu);
	} else {
		shell_printf("nmi: bad target '%s' (expected a CPU number, all, others or self)\n", target);
		return -1;
	}
	shell_printf("NMI sent to %s\n", target);
	return 0;
}

static void print_arch_counts(void)
{
	/* Its nested count is the table's `nested` column (os_nmi_arch_nested()). */
	shell_printf("entry assembly: CPU  in_repeat_region\n");
	for (unsigned c = 0; c < os_cpu_count(); c++)
		if (os_cpu_online(c))
			shell_printf("                %3u  %16llu\n", c,
				     (unsigned long long)percpu_area[c].nmi_asm_in_repeat);
}

static int cmd_nmi(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "stat";
	if (!__builtin_strcmp(sub, "stat")) {
		nmi_print_stats(shell_write_fn, 0);
		print_arch_counts();
		return 0;
	}
	if (!__builtin_strcmp(sub, "handlers")) {
		nmi_print_handlers(shell_write_fn, 0);
		return 0;
	}
	if (!__builtin_strcmp(sub, "backtrace"))
		return nmi_backtrace_cmd(argc, argv);
	if (!__builtin_strcmp(sub, "send"))
		return nmi_send_cmd(argc > 2 ? argv[2] : 0);
	shell_printf("nmi: unknown subcommand '%s' (try: stat, handlers, send, backtrace)\n", sub);
	return -1;
}

SHELL_CMD(nmi, "nmi [stat | handlers | send <cpu|all|others|self> | backtrace [CPUS]]",
	  "NMI statistics, registered handlers, or send NMIs", cmd_nmi);
