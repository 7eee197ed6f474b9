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

#include "lib_os.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- host side: scripted input (the console is the capture of lib_os.h) -------- */

static const char *script;

int console_getc(void)
{
	return script && *script ? (unsigned char)*script++ : -1;
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
	cap_reset();
	CHECK(feed("help") == SHELL_EV_NONE);
	CHECK(strcmp(cap_text(), "help") == 0);
	CHECK(feed("\r") == SHELL_EV_LINE);
	CHECK(strcmp(ed.line, "help") == 0);
	CHECK(strcmp(cap_text(), "help\r\n") == 0);
	/* The LF of a CR LF pair is not a second (empty) line. */
	CHECK(shell_editor_feed(&ed, '\n', echo_capture, NULL) == SHELL_EV_NONE);
	CHECK(feed("x\n") == SHELL_EV_LINE && strcmp(ed.line, "x") == 0);
	CHECK(feed("\n") == SHELL_EV_LINE && strcmp(ed.line, "") == 0);
}

static void editor_backspace_ctrl_u_and_ctrl_w_erase(void)
{
	shell_editor_init(&ed);
	cap_reset();
	feed("abc\b\x7f");
	CHECK(ed.len == 1 && strcmp(cap_text(), "abc\b \b\b \b") == 0);
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
	cap_reset();
	feed("reboot");
	CHECK(feed("\x03") == SHELL_EV_CANCEL);
	CHECK(ed.len == 0 && cap_has("^C\r\n"));
	CHECK(feed("\r") == SHELL_EV_LINE && strcmp(ed.line, "") == 0);
}

static void editor_swallows_escape_sequences_whole(void)
{
	shell_editor_init(&ed);
	cap_reset();
	/* Right arrow, ctrl-right, delete, F5, alt-x, a runaway CSI: none reach the line. */
	feed("a\x1b[C\x1b[1;5C\x1b[3~\x1b[15~\x1bxb");
	feed("\x1b[");
	for (int i = 0; i < 40; i++)
		feed("1");
	feed("c");
	CHECK(strncmp(ed.line, "ab", 2) == 0);
	CHECK(!strchr(cap_text(), '\x1b') && !strchr(cap_text(), '['));
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
	cap_reset();
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
	cap_reset();
	feed("y");
	CHECK(strcmp(cap_text(), "\a") == 0);
	feed("\x01\x7e\x80\xff\t");	/* ^A, '~' with no room, high bytes, tab: none added */
	CHECK(ed.len == SHELL_LINE_MAX - 1);
	CHECK(feed("\r") == SHELL_EV_LINE && strlen(ed.line) == SHELL_LINE_MAX - 1);
}

/* --- dispatch and built-ins ------------------------------------------------------------ */

static void shell_runs_registered_commands_with_argv(void)
{
	cap_reset();
	CHECK(shell_execute("echo2 a \"b c\" d") == 0);
	CHECK(strcmp(cap_text(), "a|b c|d\n") == 0);
	CHECK(shell_find("echo2") && !shell_find("echo"));
}

static void shell_unknown_command_says_try_help(void)
{
	cap_reset();
	CHECK(shell_execute("frobnicate now") != 0);
	CHECK(strcmp(cap_text(), "nmikit: unknown command 'frobnicate' (try 'help')\n") == 0);
	cap_reset();
	CHECK(shell_execute("   ") == 0 && cap_length() == 0);
}

static void shell_bad_arguments_print_the_usage_line(void)
{
	cap_reset();
	CHECK(shell_execute("echo2") == SHELL_USAGE);
	CHECK(strcmp(cap_text(), "usage: echo2 WORD...\n") == 0);
	cap_reset();
	shell_execute("log lots");
	CHECK(strcmp(cap_text(), "usage: log [N]\n") == 0);
	cap_reset();
	shell_execute("echo2 \"open");
	CHECK(strcmp(cap_text(), "nmikit: unterminated quote\n") == 0);
}

static void shell_help_lists_commands_sorted_and_explains_one(void)
{
	const char *h, *l, *p, *t, *e;

	cap_reset();
	shell_execute("help");
	e = strstr(cap_text(), "  echo2 ");
	h = strstr(cap_text(), "  help ");
	l = strstr(cap_text(), "  log ");
	p = strstr(cap_text(), "  param ");
	t = strstr(cap_text(), "  test ");
	CHECK(e && h && l && p && t);
	CHECK(e < h && h < l && l < p && p < t);
	cap_reset();
	shell_execute("help log");
	CHECK(strcmp(cap_text(), "usage: log [N]\n  show the log ring (the last N records)\n") == 0);
	cap_reset();
	shell_execute("help nosuch");
	CHECK(cap_has("unknown command 'nosuch'"));
	cap_reset();
	shell_execute("help params");
	CHECK(cap_has("PARAMETER") && cap_has("loglevel"));
	cap_reset();
	shell_execute("help params md");
	CHECK(cap_has("| `loglevel` | uint | 0..8 |"));
}

static void shell_param_shows_and_sets_at_run_time(void)
{
	cap_reset();
	shell_execute("param");
	CHECK(cap_has("  loglevel             = "));
	cap_reset();
	shell_execute("param loglevel 5");
	CHECK(strcmp(cap_text(), "  loglevel             = 5\n") == 0);
	CHECK(nk_log_console_level() == 5);
	cap_reset();
	shell_execute("param loglevel 9");
	CHECK(cap_has("nmikit: bad value '9' for parameter 'loglevel' (expected 0..8), keeping 5"));
	CHECK(nk_log_console_level() == 5);
	cap_reset();
	shell_execute("param loglevel");
	CHECK(cap_has("loglevel = 5\n  uint, values 0..8, default 7\n"));
	cap_reset();
	shell_execute("param nosuch 1");
	CHECK(cap_has("nmikit: unknown parameter 'nosuch' (try 'help params')"));
	nk_log_set_console_level(7);
}

static void shell_log_shows_the_last_records(void)
{
	pr_info("log line one");
	pr_info("log line two");
	pr_info("log line three");
	cap_reset();
	shell_execute("log 2");
	CHECK(strcmp(cap_text(), "[    1.500000] CPU0: log line two\n[    1.500000] CPU0: log line three\n") == 0);
	cap_reset();
	shell_execute("log");
	CHECK(cap_has("log line one") && cap_has("log line three"));
	cap_reset();
	shell_execute("log 0");
	CHECK(strcmp(cap_text(), "usage: log [N]\n") == 0);
}

static void shell_feed_prompts_echoes_and_runs(void)
{
	cap_reset();
	script = "echo2 hi\r";
	for (int c; (c = console_getc()) >= 0; )
		shell_feed(c);
	CHECK(strcmp(cap_text(), "nmikit> echo2 hi\r\nhi\nnmikit> ") == 0);
	cap_reset();
	script = "oops\x03";
	for (int c; (c = console_getc()) >= 0; )
		shell_feed(c);
	CHECK(strcmp(cap_text(), "oops^C\r\nnmikit> ") == 0);
}

static void shell_script_runs_each_command_as_if_typed(void)
{
	cap_reset();
	shell_run_script("echo2 one;echo2 two  three;;nosuch");
	CHECK(strcmp(cap_text(), "nmikit> echo2 one\none\n"
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

	cap_reset();
	CHECK(ktest_run_totals("demo", &t) == 1);
	CHECK(t.suites == 1 && t.cases == 3 && t.passed == 1 && t.failed == 1 && t.skipped == 1);
	CHECK(strncmp(cap_text(), "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: demo\n    1..3\n",
		      strlen("KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: demo\n    1..3\n")) == 0);
	CHECK(cap_has("    ok 1 passes\n") || cap_has(" passes\n"));
	CHECK(cap_has(" fails_eq\n"));
	CHECK(cap_has("    not ok "));
	CHECK(cap_has(" skipped # SKIP not on this host\n"));
	snprintf(line, sizeof(line), "    # %s:", __FILE__);
	CHECK(cap_has(line));
	CHECK(cap_has(": expected x == 3, got x = 2, 3 = 3\n"));
	CHECK(cap_has("\nnot ok 1 demo\n"));
	CHECK(cap_has("# Totals: pass:1 fail:1 skip:1 total:3\n"));
}

static void ktest_case_numbers_follow_run_order(void)
{
	/* Whatever order the linker gave the cases, results count 1..M. */
	cap_reset();
	ktest_run("demo");
	{
		const char *a = strstr(cap_text(), "ok 1 ");
		const char *b = strstr(cap_text(), "ok 2 ");
		const char *c = strstr(cap_text(), "ok 3 ");

		CHECK(a && b && c && a < b && b < c);
	}
}

static void ktest_assert_ends_the_case_and_values_print_by_signedness(void)
{
	assert_went_on = false;
	cap_reset();
	CHECK(ktest_run("other") == 3);
	CHECK(!assert_went_on);
	CHECK(cap_has("expected 1 == 2 to be true\n"));
	CHECK(cap_has("expected big < 5u, got big = 18446744073709551615 (0xffffffffffffffff), "
		      "5u = 5 (0x5)\n"));
	CHECK(cap_has("    # key: 42\n"));
	CHECK(cap_has("expected \"abc\" == \"abd\", got \"abc\" and \"abd\"\n"));
	CHECK(cap_has("\nnot ok 1 other\n"));
}

static void ktest_all_suites_are_numbered_and_no_match_is_a_skip(void)
{
	cap_reset();
	CHECK(ktest_run("*") == 4);
	CHECK(cap_has("KTAP version 1\n1..2\n"));
	CHECK(cap_has("\nnot ok 1 ") && cap_has("\nnot ok 2 "));
	cap_reset();
	CHECK(ktest_run("demo.skipped") == 0);
	CHECK(cap_has("\nok 1 demo # SKIP all cases skipped\n"));
	cap_reset();
	CHECK(ktest_run("nosuch") == 0);
	CHECK(strcmp(cap_text(), "KTAP version 1\n1..0 # SKIP no test matches 'nosuch'\n"
			  "# Totals: pass:0 fail:0 skip:0 total:0\n") == 0);
}

static void shell_test_command_runs_ktest_and_summarises(void)
{
	cap_reset();
	CHECK(shell_execute("test demo.passes") == 0);
	CHECK(cap_has("    ok 1 passes\n"));
	CHECK(cap_has("1 passed, 0 failed, 0 skipped\n"));
	cap_reset();
	CHECK(shell_execute("test a b") == SHELL_USAGE);
}

static const struct tap_test shell_tests[] = {
	TAP_TEST(tokenize_splits_on_blanks_and_drops_empty_words),
	TAP_TEST(tokenize_quotes_and_escapes_group_words),
	TAP_TEST(tokenize_reports_unterminated_quotes_and_too_many_words),
	TAP_TEST(tokenize_random_lines_stay_in_bounds),
	TAP_TEST(numbers_parse_decimal_and_hex_whole_strings_only),
	TAP_TEST(editor_echoes_and_completes_a_line_on_enter),
	TAP_TEST(editor_backspace_ctrl_u_and_ctrl_w_erase),
	TAP_TEST(editor_ctrl_c_cancels_the_line),
	TAP_TEST(editor_swallows_escape_sequences_whole),
	TAP_TEST(editor_up_and_down_arrows_walk_the_history),
	TAP_TEST(editor_refuses_bytes_beyond_the_line_with_a_bell),
	TAP_TEST(shell_runs_registered_commands_with_argv),
	TAP_TEST(shell_unknown_command_says_try_help),
	TAP_TEST(shell_bad_arguments_print_the_usage_line),
	TAP_TEST(shell_help_lists_commands_sorted_and_explains_one),
	TAP_TEST(shell_param_shows_and_sets_at_run_time),
	TAP_TEST(shell_log_shows_the_last_records),
	TAP_TEST(shell_feed_prompts_echoes_and_runs),
	TAP_TEST(shell_script_runs_each_command_as_if_typed),
	TAP_TEST(ktest_glob_matches_star_and_question_mark),
	TAP_TEST(ktest_count_selects_by_suite_case_and_lists),
	TAP_TEST(ktest_run_prints_ktap_v1_with_nested_suites),
	TAP_TEST(ktest_case_numbers_follow_run_order),
	TAP_TEST(ktest_assert_ends_the_case_and_values_print_by_signedness),
	TAP_TEST(ktest_all_suites_are_numbered_and_no_match_is_a_skip),
	TAP_TEST(shell_test_command_runs_ktest_and_summarises),
	TAP_END,
};

/* Log lines carry a fixed time: [    1.500000]. */
static void fixed_clock(void)
{
	los_set_time(1500000000u);
}

int main(int argc, char **argv)
{
	static const struct tap_test *const suites[] = { shell_tests, NULL };

	return tap_main(argc, argv, suites, fixed_clock);
}
