/*
 * shell.c: the interactive shell on the serial console: the read-run loop,
 * command lookup in the `shell_cmds` section, and the built-in commands
 * help, log, test and param.  Other commands live with the code they drive
 * and register with SHELL_CMD.  Runs in a kernel thread, never in interrupt
 * or NMI context (its output waits for the console).
 */
#include <kernel/console.h>
#include <kernel/ktest.h>
#include <kernel/shell.h>

#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

#include <stdarg.h>

extern const struct shell_cmd __start_shell_cmds[] __attribute__((weak));
extern const struct shell_cmd __stop_shell_cmds[] __attribute__((weak));

static struct shell_editor shell_ed;
static bool shell_started;

static char shell_run[SHELL_LINE_MAX];
NK_PARAM_STR("shell_run", shell_run,
	     "commands the shell runs before its first prompt, separated by ';'");

static size_t cmd_count(void)
{
	if (!__start_shell_cmds || !__stop_shell_cmds)
		return 0;
	return (size_t)(__stop_shell_cmds - __start_shell_cmds);
}

/* --- output ------------------------------------------------------------------ */

void shell_write(const char *s, size_t len)
{
	nk_console_write(s, len);
}

void shell_write_fn(void *arg, const char *s, size_t len)
{
	(void)arg;
	shell_write(s, len);
}

int shell_printf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = nk_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	shell_write(buf, n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	return n;
}

/* --- commands -------------------------------------------------------------------- */

const struct shell_cmd *shell_find(const char *name)
{
	size_t n = cmd_count();

	for (size_t i = 0; i < n; i++) {
		if (strcmp(__start_shell_cmds[i].name, name) == 0)
			return &__start_shell_cmds[i];
	}
	return NULL;
}

static void print_usage(const struct shell_cmd *c)
{
	shell_printf("usage: %s%s%s\n", c->name, c->usage[0] ? " " : "", c->usage);
}

int shell_execute(const char *line)
{
	char buf[SHELL_LINE_MAX];
	char *argv[SHELL_ARGV_MAX + 1];
	const struct shell_cmd *c;
	int argc, rc;

	if (nk_strlcpy(buf, line, sizeof(buf)) >= sizeof(buf)) {
		shell_printf("nmikit: command line longer than %d characters\n",
			     SHELL_LINE_MAX - 1);
		return -1;
	}
	argc = shell_tokenize(buf, argv, SHELL_ARGV_MAX);
	if (argc < 0) {
		shell_printf("nmikit: %s\n", shell_strerror(argc));
		return -1;
	}
	if (argc == 0)
		return 0;
	c = shell_find(argv[0]);
	if (!c) {
		shell_printf("nmikit: unknown command '%s' (try 'help')\n", argv[0]);
		return -1;
	}
	rc = c->fn(argc, argv);
	if (rc == SHELL_USAGE)
		print_usage(c);
	return rc;
}

void shell_run_script(const char *cmds)
{
	char buf[SHELL_LINE_MAX];
	char *p = buf;

	if (nk_strlcpy(buf, cmds, sizeof(buf)) >= sizeof(buf)) {
		shell_printf("nmikit: command script longer than %d characters\n",
			     SHELL_LINE_MAX - 1);
		return;
	}
	while (*p) {
		char *end = strchr(p, ';');

		if (end)
			*end = '\0';
		shell_printf("%s%s\n", SHELL_PROMPT, p);
		shell_execute(p);
		if (!end)
			break;
		p = end + 1;
	}
}

/* --- the loop ------------------------------------------------------------------------ */

static void shell_start(void)
{
	if (shell_started)
		return;
	shell_started = true;
	shell_editor_init(&shell_ed);
	shell_write(SHELL_PROMPT, sizeof(SHELL_PROMPT) - 1);
}

void shell_feed(int ch)
{
	enum shell_event ev;

	shell_start();
	ev = shell_editor_feed(&shell_ed, ch, shell_write_fn, NULL);
	if (ev == SHELL_EV_LINE) {
		char line[SHELL_LINE_MAX];

		/* Copy: a command may itself read input through the editor. */
		nk_strlcpy(line, shell_ed.line, sizeof(line));
		shell_execute(line);
	}
	if (ev != SHELL_EV_NONE)
		shell_write(SHELL_PROMPT, sizeof(SHELL_PROMPT) - 1);
}

void shell_main(void)
{
	if (shell_run[0])
		shell_run_script(shell_run);
	shell_start();
	for (;;) {
		int ch = console_getc();

		if (ch < 0) {
			os_cpu_relax();
			continue;
		}
		shell_feed(ch);
	}
}

/* --- built-in commands ------------------------------------------------------------------ */

static int name_cmp(const char *a, const char *b)
{
	return strcmp(a, b);
}

/* All commands, sorted by name (selection by repeated minimum: no allocation). */
static void help_list(void)
{
	size_t n = cmd_count();
	const char *prev = NULL;

	shell_printf("Commands (help CMD for one, help params for boot parameters):\n");
	for (;;) {
		const struct shell_cmd *next = NULL;

		for (size_t i = 0; i < n; i++) {
			const struct shell_cmd *c = &__start_shell_cmds[i];

			if (prev && name_cmp(c->name, prev) <= 0)
				continue;
			if (!next || name_cmp(c->name, next->name) < 0)
				next = c;
		}
		if (!next)
			break;
		/* A long usage gets its own line, the help text under it. */
		if (strlen(next->name) <= 9 && strlen(next->usage) <= 22)
			shell_printf("  %-9s %-22s %s\n", next->name, next->usage, next->help);
		else
			shell_printf("  %-9s %s\n  %-9s %-22s %s\n", next->name, next->usage,
				     "", "", next->help);
		prev = next->name;
	}
}

static int cmd_help(int argc, char **argv)
{
	const struct shell_cmd *c;

	if (argc == 1) {
		help_list();
		return 0;
	}
	if (strcmp(argv[1], "params") == 0) {
		if (argc == 2) {
			nk_params_print_help(shell_write_fn, NULL);
			return 0;
		}
		if (argc == 3 && strcmp(argv[2], "md") == 0) {
			nk_params_print_markdown(shell_write_fn, NULL);
			return 0;
		}
		return SHELL_USAGE;
	}
	if (argc > 2)
		return SHELL_USAGE;
	c = shell_find(argv[1]);
	if (!c) {
		shell_printf("nmikit: unknown command '%s' (try 'help')\n", argv[1]);
		return 1;
	}
	print_usage(c);
	shell_printf("  %s\n", c->help);
	return 0;
}
SHELL_CMD(help, "[CMD | params [md]]", "list commands, or explain one; boot parameters", cmd_help);

static void log_print_record(const struct nk_log_record *rec, void *arg)
{
	char line[64 + NK_LOG_TEXT_MAX * 2];
	size_t n = nk_log_format(rec, NK_LOG_FMT_CPU, line, sizeof(line));

	(void)arg;
	shell_write(line, n < sizeof(line) ? n : sizeof(line) - 1);
}

static int cmd_log(int argc, char **argv)
{
	struct nk_log_stats st;
	uint64_t last = 0;

	if (argc > 2)
		return SHELL_USAGE;
	if (argc == 2 && (!shell_parse_u64(argv[1], &last) || last == 0))
		return SHELL_USAGE;
	nk_log_dump((size_t)last, log_print_record, NULL);
	nk_log_get_stats(&st);
	if (st.dropped || st.console_missed)
		shell_printf("-- %llu records stored, %llu dropped, %llu never reached the console --\n",
			     (unsigned long long)st.stored, (unsigned long long)st.dropped,
			     (unsigned long long)st.console_missed);
	return 0;
}
SHELL_CMD(log, "[N]", "show the log ring (the last N records)", cmd_log);

static int cmd_test(int argc, char **argv)
{
	struct ktest_totals t;

	if (argc > 2)
		return SHELL_USAGE;
	ktest_run_totals(argc == 2 ? argv[1] : "*", &t);
	shell_printf("%u passed, %u failed, %u skipped\n", t.passed, t.failed, t.skipped);
	return 0;
}
SHELL_CMD(test, "[GLOB]", "run in-kernel tests (suite or suite.case, * and ?)", cmd_test);

static void param_show(const struct nk_param *p, bool verbose)
{
	char cur[64], dflt[64], range[64];

	nk_param_format_value(p, false, cur, sizeof(cur));
	if (!verbose) {
		shell_printf("  %-20s = %s\n", p->name, cur);
		return;
	}
	nk_param_format_value(p, true, dflt, sizeof(dflt));
	nk_param_format_range(p, range, sizeof(range));
	shell_printf("%s = %s\n  %s, values %s, default %s\n  %s\n", p->name, cur,
		     nk_param_type_name(p), range, dflt, p->desc);
}

static int cmd_param(int argc, char **argv)
{
	const struct nk_param *p;
	char err[192];

	if (argc == 1) {
		size_t n = nk_params_count();

		for (size_t i = 0; i < n; i++)
			param_show(nk_param_at(i), false);
		return 0;
	}
	if (argc > 3)
		return SHELL_USAGE;
	p = nk_param_find(argv[1]);
	if (!p) {
		shell_printf("nmikit: unknown parameter '%s' (try 'help params')\n", argv[1]);
		return 1;
	}
	if (argc == 2) {
		param_show(p, true);
		return 0;
	}
	if (nk_param_set_err(argv[1], argv[2], err, sizeof(err)) != NK_PARAM_OK) {
		shell_printf("%s\n", err);
		return 1;
	}
	param_show(p, false);
	return 0;
}
SHELL_CMD(param, "[NAME [VALUE]]", "show parameters, or set one at run time", cmd_param);
