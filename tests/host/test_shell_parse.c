/*
 * test_shell_parse.c: host tests of the shell (kernel/shell_parse.c and
 * kernel/shell.c: tokenizer, numbers, line editor, command dispatch and the
 * built-in commands) and of the KTAP runner behind its `test` command
 * (kernel/ktest.c: registration, globs, expectations, output format).
 * Console output is captured; input is fed byte by byte.  TAP on stdout.
 */
#define _GNU_SOURCE
#include <kernel/ktest.h>
#include <kernel/shell.h>

#include <nmikit/log.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- TAP ------------------------------------------------------------------- */

static int tap_count, tap_failures, case_failed;

#define CHECK(cond)								\
	do {									\
		if (!(cond)) {							\
			printf("# %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			case_failed = 1;					\
		}								\
	} while (0)

static void run(const char *name, void (*fn)(void))
{
	case_failed = 0;
	fn();
	tap_count++;
	if (case_failed)
		tap_failures++;
	printf("%sok %d - %s\n", case_failed ? "not " : "", tap_count, name);
	fflush(stdout);
}

#define RUN(fn)	run(#fn, fn)

/* --- host side: console capture, scripted input ----------------------------------- */

static char out[65536];
static size_t out_len;

unsigned os_cpu_id(void) { return 0; }
uint64_t os_timestamp_ns(void) { return 1500000000u; }
void os_cpu_relax(void) { }
os_irqflags_t os_local_irq_save(void) { return 0; }
void os_local_irq_restore(os_irqflags_t flags) { (void)flags; }

void os_console_write(const char *buf, size_t len)
{
	if (out_len + len < sizeof(out)) {
		memcpy(out + out_len, buf, len);
		out_len += len;
		out[out_len] = '\0';
	}
}

static void out_reset(void)
{
	out_len = 0;
	out[0] = '\0';
}

static const char *script;

int console_getc(void)
{
	return script && *script ? (unsigned char)*script++ : -1;
}

static bool out_has(const char *s)
{
	return strstr(out, s) != NULL;
}

/* --- a command and test cases registered the way other files register theirs ---- */

static int cmd_echo2(int argc, char **argv)
{
	if (argc < 2)
		return SHELL_USAGE;
	for (int i = 1; i < argc; i++)
		shell_printf("%s%s", argv[i], i + 1 < argc ? "|" : "\n");
	return 0;
}
SHELL_CMD(echo2, "WORD...", "print the words separated by '|'", cmd_echo2);

static bool assert_went_on;

KTEST(demo, passes)
{
	KT_EXPECT_EQ(1 + 1, 2);
	KT_EXPECT_TRUE(true);
	KT_EXPECT_STREQ("a", "a");
	KT_EXPECT_LE(3, 3);
	KT_EXPECT_NOT_NULL(&assert_went_on);
}

KTEST(demo, fails_eq)
{
	int x = 2;

	KT_EXPECT_EQ(x, 3);
}

KTEST(demo, skipped)
{
	KT_SKIP("not on this host");
}

KTEST(other, assert_stops_the_case)
{
	KT_ASSERT_TRUE(1 == 2);
	assert_went_on = true;
}

KTEST(other, unsigned_values_print_unsigned)
{
	uint64_t big = UINT64_MAX;

	KT_EXPECT_LT(big, 5u);
}

KTEST(other, diag_and_strings)
{
	kt_diag("key: %d", 42);
	KT_EXPECT_STREQ("abc", "abd");
}

/* --- tokenizer ------------------------------------------------------------------- */

static int tok(const char *line, char **argv, char *buf)
{
	strcpy(buf, line);
	return shell_tokenize(buf, argv, 8);
}

static void tokenize_splits_on_blanks_and_drops_empty_words(void)
{
	char buf[128], *argv[9];

	CHECK(tok("  nmi   stat\t cpu=1  ", argv, buf) == 3);
	CHECK(strcmp(argv[0], "nmi") == 0 && strcmp(argv[1], "stat") == 0);
	CHECK(strcmp(argv[2], "cpu=1") == 0 && argv[3] == NULL);
	CHECK(tok("", argv, buf) == 0);
	CHECK(tok(" \t ", argv, buf) == 0);
}

static void tokenize_quotes_and_escapes_group_words(void)
{
	char buf[128], *argv[9];

	CHECK(tok("param s \"a b\" 'c \"d' e\\ f \"x\\\"y\" ''", argv, buf) == 7);
	CHECK(strcmp(argv[2], "a b") == 0);
	CHECK(strcmp(argv[3], "c \"d") == 0);
	CHECK(strcmp(argv[4], "e f") == 0);
	CHECK(strcmp(argv[5], "x\"y") == 0);
	CHECK(strcmp(argv[6], "") == 0);
	CHECK(tok("ab\"cd ef\"gh", argv, buf) == 1 && strcmp(argv[0], "abcd efgh") == 0);
	CHECK(tok("trailing\\", argv, buf) == 1 && strcmp(argv[0], "trailing\\") == 0);
}

static void tokenize_reports_unterminated_quotes_and_too_many_words(void)
{
	char buf[128], *argv[9];

	CHECK(tok("say \"hello", argv, buf) == SHELL_E_QUOTE);
	CHECK(tok("say 'x", argv, buf) == SHELL_E_QUOTE);
	CHECK(tok("1 2 3 4 5 6 7 8", argv, buf) == 8);
	CHECK(tok("1 2 3 4 5 6 7 8 9", argv, buf) == SHELL_E_TOO_MANY);
	CHECK(strcmp(shell_strerror(SHELL_E_QUOTE), "unterminated quote") == 0);
}

static void tokenize_random_lines_stay_in_bounds(void)
{
	static const char alphabet[] = "ab \t\"'\\=x";
	unsigned seed = 99;

	for (int iter = 0; iter < 20000; iter++) {
		char line[40], *buf, *argv[8];
		size_t n;
		int argc;

		seed = seed * 1103515245u + 12345u;
		n = (seed >> 16) % sizeof(line);
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			line[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		line[n] = '\0';
		buf = strdup(line);	/* exact size: ASan sees any overrun */
		argc = shell_tokenize(buf, argv, 7);
		CHECK(argc >= SHELL_E_TOO_MANY && argc <= 7);
		for (int i = 0; i < argc; i++)
			CHECK(argv[i] >= buf && argv[i] <= buf + n);
		free(buf);
	}
}

static void numbers_parse_decimal_and_hex_whole_strings_only(void)
{
	uint64_t u;
	int64_t i;

	CHECK(shell_parse_u64("42", &u) && u == 42);
	CHECK(shell_parse_u64("0xFFffFFffFFffFFff", &u) && u == UINT64_MAX);
	CHECK(!shell_parse_u64("18446744073709551616", &u));
	CHECK(!shell_parse_u64("", &u) && !shell_parse_u64("0x", &u));
	CHECK(!shell_parse_u64("12k", &u) && !shell_parse_u64("-1", &u));
	CHECK(shell_parse_i64("-9223372036854775808", &i) && i == INT64_MIN);
	CHECK(!shell_parse_i64("9223372036854775808", &i));
	CHECK(shell_parse_i64("-0x10", &i) && i == -16);
}

/* --- line editor ------------------------------------------------------------------- */

static struct shell_editor ed;

static void echo_capture(void *arg, const char *s, size_t len)
{
	(void)arg;
	os_console_write(s, len);
}

/* Feed a string; returns the last event. */
static enum shell_event feed(const char *s)
{
	enum shell_event ev = SHELL_EV_NONE;

	for (; *s; s++)
		ev = shell_editor_feed(&ed, (unsigned char)*s, echo_capture, NULL);
	return ev;
}

static void editor_echoes_and_completes_a_line_on_enter(void)
{
	shell_editor_init(&ed);
	out_reset();
	CHECK(feed("help") == SHELL_EV_NONE);
	CHECK(strcmp(out, "help") == 0);
	CHECK(feed("\r") == SHELL_EV_LINE);
	CHECK(strcmp(ed.line, "help") == 0);
	CHECK(strcmp(out, "help\r\n") == 0);
	/* The LF of a CR LF pair is not a second (empty) line. */
	CHECK(shell_editor_feed(&ed, '\n', echo_capture, NULL) == SHELL_EV_NONE);
	CHECK(feed("x\n") == SHELL_EV_LINE && strcmp(ed.line, "x") == 0);
	CHECK(feed("\n") == SHELL_EV_LINE && strcmp(ed.line, "") == 0);
}

static void editor_backspace_ctrl_u_and_ctrl_w_erase(void)
{
	shell_editor_init(&ed);
	out_reset();
	feed("abc\b\x7f");
	CHECK(ed.len == 1 && strcmp(out, "abc\b \b\b \b") == 0);
	feed("\b\b\b");			/* more than there is: nothing happens */
	CHECK(ed.len == 0);
	feed("nmi stat  ");
	feed("\x17");			/* ^W: the last word and the blanks after it */
	CHECK(ed.len == 4 && strncmp(ed.line, "nmi ", 4) == 0);
	feed("\x15");			/* ^U: the whole line */
	CHECK(ed.len == 0);
	CHECK(feed("ok\r") == SHELL_EV_LINE && strcmp(ed.line, "ok") == 0);
}

static void editor_ctrl_c_cancels_the_line(void)
{
	shell_editor_init(&ed);
	out_reset();
	feed("reboot");
	CHECK(feed("\x03") == SHELL_EV_CANCEL);
	CHECK(ed.len == 0 && out_has("^C\r\n"));
	CHECK(feed("\r") == SHELL_EV_LINE && strcmp(ed.line, "") == 0);
}

static void editor_swallows_escape_sequences_whole(void)
{
	shell_editor_init(&ed);
	out_reset();
	/* Right arrow, ctrl-right, delete, F5, alt-x, a runaway CSI: none reach the line. */
	feed("a\x1b[C\x1b[1;5C\x1b[3~\x1b[15~\x1bxb");
	feed("\x1b[");
	for (int i = 0; i < 40; i++)
		feed("1");
	feed("c");
	CHECK(strncmp(ed.line, "ab", 2) == 0);
	CHECK(!strchr(out, '\x1b') && !strchr(out, '['));
	/* The runaway sequence was abandoned: later digits count again. */
	CHECK(ed.len >= 3 && ed.line[ed.len - 1] == 'c');
	/* A control character inside a sequence still works. */
	shell_editor_init(&ed);
	feed("zz\x1b[\x03");
	CHECK(ed.len == 0);
}

static void editor_up_and_down_arrows_walk_the_history(void)
{
	shell_editor_init(&ed);
	feed("first\r");
	feed("second\r");
	feed("second\r");		/* repeated: stored once */
	out_reset();
	feed("\x1b[A");
	CHECK(strcmp(ed.line, "second") == 0 && ed.len == 6);
	feed("\x1bOA");			/* SS3 form, as some terminals send */
	CHECK(strcmp(ed.line, "first") == 0);
	feed("\x1b[A");			/* no older line: stays */
	CHECK(strcmp(ed.line, "first") == 0);
	feed("\x1b[B");
	CHECK(strcmp(ed.line, "second") == 0);
	feed("\x1b[B");
	CHECK(ed.len == 0);
	feed("\x1b[A");
	CHECK(feed("\r") == SHELL_EV_LINE && strcmp(ed.line, "second") == 0);
	/* The history keeps the last SHELL_HISTORY lines. */
	for (int i = 0; i < SHELL_HISTORY + 3; i++) {
		char l[16];

		snprintf(l, sizeof(l), "cmd%d\r", i);
		feed(l);
	}
	for (int i = 0; i < SHELL_HISTORY + 5; i++)
		feed("\x1b[A");
	CHECK(strcmp(ed.line, "cmd3") == 0);
}

static void editor_refuses_bytes_beyond_the_line_with_a_bell(void)
{
	shell_editor_init(&ed);
	for (int i = 0; i < SHELL_LINE_MAX + 20; i++)
		feed("x");
	CHECK(ed.len == SHELL_LINE_MAX - 1);
	out_reset();
	feed("y");
	CHECK(strcmp(out, "\a") == 0);
	feed("\x01\x7e\x80\xff\t");	/* ^A, '~' with no room, high bytes, tab: none added */
	CHECK(ed.len == SHELL_LINE_MAX - 1);
	CHECK(feed("\r") == SHELL_EV_LINE && strlen(ed.line) == SHELL_LINE_MAX - 1);
}

/* --- dispatch and built-ins ------------------------------------------------------------ */

static void shell_runs_registered_commands_with_argv(void)
{
	out_reset();
	CHECK(shell_execute("echo2 a \"b c\" d") == 0);
	CHECK(strcmp(out, "a|b c|d\n") == 0);
	CHECK(shell_find("echo2") && !shell_find("echo"));
}

static void shell_unknown_command_says_try_help(void)
{
	out_reset();
	CHECK(shell_execute("frobnicate now") != 0);
	CHECK(strcmp(out, "nmikit: unknown command 'frobnicate' (try 'help')\n") == 0);
	out_reset();
	CHECK(shell_execute("   ") == 0 && out_len == 0);
}

static void shell_bad_arguments_print_the_usage_line(void)
{
	out_reset();
	CHECK(shell_execute("echo2") == SHELL_USAGE);
	CHECK(strcmp(out, "usage: echo2 WORD...\n") == 0);
	out_reset();
	shell_execute("log lots");
	CHECK(strcmp(out, "usage: log [N]\n") == 0);
	out_reset();
	shell_execute("echo2 \"open");
	CHECK(strcmp(out, "nmikit: unterminated quote\n") == 0);
}

static void shell_help_lists_commands_sorted_and_explains_one(void)
{
	const char *h, *l, *p, *t, *e;

	out_reset();
	shell_execute("help");
	e = strstr(out, "  echo2 ");
	h = strstr(out, "  help ");
	l = strstr(out, "  log ");
	p = strstr(out, "  param ");
	t = strstr(out, "  test ");
	CHECK(e && h && l && p && t);
	CHECK(e < h && h < l && l < p && p < t);
	out_reset();
	shell_execute("help log");
	CHECK(strcmp(out, "usage: log [N]\n  show the log ring (the last N records)\n") == 0);
	out_reset();
	shell_execute("help nosuch");
	CHECK(out_has("unknown command 'nosuch'"));
	out_reset();
	shell_execute("help params");
	CHECK(out_has("PARAMETER") && out_has("loglevel"));
	out_reset();
	shell_execute("help params md");
	CHECK(out_has("| `loglevel` | uint | 0..8 |"));
}

static void shell_param_shows_and_sets_at_run_time(void)
{
	out_reset();
	shell_execute("param");
	CHECK(out_has("  loglevel             = "));
	out_reset();
	shell_execute("param loglevel 5");
	CHECK(strcmp(out, "  loglevel             = 5\n") == 0);
	CHECK(nk_log_console_level() == 5);
	out_reset();
	shell_execute("param loglevel 9");
	CHECK(out_has("nmikit: bad value '9' for parameter 'loglevel' (expected 0..8), keeping 5"));
	CHECK(nk_log_console_level() == 5);
	out_reset();
	shell_execute("param loglevel");
	CHECK(out_has("loglevel = 5\n  uint, values 0..8, default 7\n"));
	out_reset();
	shell_execute("param nosuch 1");
	CHECK(out_has("nmikit: unknown parameter 'nosuch' (try 'help params')"));
	nk_log_set_console_level(7);
}

static void shell_log_shows_the_last_records(void)
{
	pr_info("log line one");
	pr_info("log line two");
	pr_info("log line three");
	out_reset();
	shell_execute("log 2");
	CHECK(strcmp(out, "[    1.500000] CPU0: log line two\n[    1.500000] CPU0: log line three\n") == 0);
	out_reset();
	shell_execute("log");
	CHECK(out_has("log line one") && out_has("log line three"));
	out_reset();
	shell_execute("log 0");
	CHECK(strcmp(out, "usage: log [N]\n") == 0);
}

static void shell_feed_prompts_echoes_and_runs(void)
{
	out_reset();
	script = "echo2 hi\r";
	for (int c; (c = console_getc()) >= 0; )
		shell_feed(c);
	CHECK(strcmp(out, "nmikit> echo2 hi\r\nhi\nnmikit> ") == 0);
	out_reset();
	script = "oops\x03";
	for (int c; (c = console_getc()) >= 0; )
		shell_feed(c);
	CHECK(strcmp(out, "oops^C\r\nnmikit> ") == 0);
}

static void shell_script_runs_each_command_as_if_typed(void)
{
	out_reset();
	shell_run_script("echo2 one;echo2 two  three;;nosuch");
	CHECK(strcmp(out, "nmikit> echo2 one\none\n"
			  "nmikit> echo2 two  three\ntwo|three\n"
			  "nmikit> \n"
			  "nmikit> nosuch\nnmikit: unknown command 'nosuch' (try 'help')\n") == 0);
	CHECK(nk_param_find("shell_run") != NULL);
}

/* --- ktest --------------------------------------------------------------------------------- */

static void ktest_glob_matches_star_and_question_mark(void)
{
	CHECK(ktest_glob_match("*", ""));
	CHECK(ktest_glob_match("*", "anything.at.all"));
	CHECK(ktest_glob_match("demo.*", "demo.passes"));
	CHECK(!ktest_glob_match("demo.*", "demos.passes"));
	CHECK(ktest_glob_match("*.fail*", "demo.fails_eq"));
	CHECK(ktest_glob_match("d?mo.p*s", "demo.passes"));
	CHECK(!ktest_glob_match("d?mo", "dmo"));
	CHECK(ktest_glob_match("a*b*c", "aXXbYYbZc"));
	CHECK(!ktest_glob_match("a*b*c", "aXXbYY"));
	CHECK(ktest_glob_match("**x", "x"));
}

static void ktest_count_selects_by_suite_case_and_lists(void)
{
	CHECK(ktest_count("demo") == 3);
	CHECK(ktest_count("demo.*") == 3);
	CHECK(ktest_count("demo.pass*") == 1);
	CHECK(ktest_count("de*") == 3);
	CHECK(ktest_count("demo.passes,other") == 4);
	CHECK(ktest_count("*") == 6 && ktest_count(NULL) == 6 && ktest_count("") == 6);
	CHECK(ktest_count("nosuch") == 0);
	CHECK(ktest_count(",,") == 0);
}

static void ktest_run_prints_ktap_v1_with_nested_suites(void)
{
	struct ktest_totals t;
	char line[256];

	out_reset();
	CHECK(ktest_run_totals("demo", &t) == 1);
	CHECK(t.suites == 1 && t.cases == 3 && t.passed == 1 && t.failed == 1 && t.skipped == 1);
	CHECK(strncmp(out, "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: demo\n    1..3\n",
		      strlen("KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: demo\n    1..3\n")) == 0);
	CHECK(out_has("    ok 1 passes\n") || out_has(" passes\n"));
	CHECK(out_has(" fails_eq\n"));
	CHECK(out_has("    not ok "));
	CHECK(out_has(" skipped # SKIP not on this host\n"));
	snprintf(line, sizeof(line), "    # %s:", __FILE__);
	CHECK(out_has(line));
	CHECK(out_has(": expected x == 3, got x = 2, 3 = 3\n"));
	CHECK(out_has("\nnot ok 1 demo\n"));
	CHECK(out_has("# Totals: pass:1 fail:1 skip:1 total:3\n"));
}

static void ktest_case_numbers_follow_run_order(void)
{
	/* Whatever order the linker gave the cases, results count 1..M. */
	out_reset();
	ktest_run("demo");
	{
		const char *a = strstr(out, "ok 1 ");
		const char *b = strstr(out, "ok 2 ");
		const char *c = strstr(out, "ok 3 ");

		CHECK(a && b && c && a < b && b < c);
	}
}

static void ktest_assert_ends_the_case_and_values_print_by_signedness(void)
{
	assert_went_on = false;
	out_reset();
	CHECK(ktest_run("other") == 3);
	CHECK(!assert_went_on);
	CHECK(out_has("expected 1 == 2 to be true\n"));
	CHECK(out_has("expected big < 5u, got big = 18446744073709551615 (0xffffffffffffffff), "
		      "5u = 5 (0x5)\n"));
	CHECK(out_has("    # key: 42\n"));
	CHECK(out_has("expected \"abc\" == \"abd\", got \"abc\" and \"abd\"\n"));
	CHECK(out_has("\nnot ok 1 other\n"));
}

static void ktest_all_suites_are_numbered_and_no_match_is_a_skip(void)
{
	out_reset();
	CHECK(ktest_run("*") == 4);
	CHECK(out_has("KTAP version 1\n1..2\n"));
	CHECK(out_has("\nnot ok 1 ") && out_has("\nnot ok 2 "));
	out_reset();
	CHECK(ktest_run("demo.skipped") == 0);
	CHECK(out_has("\nok 1 demo # SKIP all cases skipped\n"));
	out_reset();
	CHECK(ktest_run("nosuch") == 0);
	CHECK(strcmp(out, "KTAP version 1\n1..0 # SKIP no test matches 'nosuch'\n"
			  "# Totals: pass:0 fail:0 skip:0 total:0\n") == 0);
}

static void shell_test_command_runs_ktest_and_summarises(void)
{
	out_reset();
	CHECK(shell_execute("test demo.passes") == 0);
	CHECK(out_has("    ok 1 passes\n"));
	CHECK(out_has("1 passed, 0 failed, 0 skipped\n"));
	out_reset();
	CHECK(shell_execute("test a b") == SHELL_USAGE);
}

int main(void)
{
	RUN(tokenize_splits_on_blanks_and_drops_empty_words);
	RUN(tokenize_quotes_and_escapes_group_words);
	RUN(tokenize_reports_unterminated_quotes_and_too_many_words);
	RUN(tokenize_random_lines_stay_in_bounds);
	RUN(numbers_parse_decimal_and_hex_whole_strings_only);
	RUN(editor_echoes_and_completes_a_line_on_enter);
	RUN(editor_backspace_ctrl_u_and_ctrl_w_erase);
	RUN(editor_ctrl_c_cancels_the_line);
	RUN(editor_swallows_escape_sequences_whole);
	RUN(editor_up_and_down_arrows_walk_the_history);
	RUN(editor_refuses_bytes_beyond_the_line_with_a_bell);
	RUN(shell_runs_registered_commands_with_argv);
	RUN(shell_unknown_command_says_try_help);
	RUN(shell_bad_arguments_print_the_usage_line);
	RUN(shell_help_lists_commands_sorted_and_explains_one);
	RUN(shell_param_shows_and_sets_at_run_time);
	RUN(shell_log_shows_the_last_records);
	RUN(shell_feed_prompts_echoes_and_runs);
	RUN(shell_script_runs_each_command_as_if_typed);
	RUN(ktest_glob_matches_star_and_question_mark);
	RUN(ktest_count_selects_by_suite_case_and_lists);
	RUN(ktest_run_prints_ktap_v1_with_nested_suites);
	RUN(ktest_case_numbers_follow_run_order);
	RUN(ktest_assert_ends_the_case_and_values_print_by_signedness);
	RUN(ktest_all_suites_are_numbered_and_no_match_is_a_skip);
	RUN(shell_test_command_runs_ktest_and_summarises);
	printf("1..%d\n", tap_count);
	return tap_failures ? 1 : 0;
}
