/*
 * test_param.c: host tests of the boot-parameter table and command line
 * parser (core/param.c): Linux conventions, validation, the warnings, run-time
 * setting and the generated help.  Warnings are read back from the console
 * the log prints on.  TAP on stdout.
 */
#define _GNU_SOURCE
#include <nmikit/log.h>
#include <nmikit/os.h>
#include <nmikit/param.h>

#include "lib_os.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The console has a line ending with `text` (after the time prefix). */
static bool console_says(const char *text)
{
	char want[512];

	snprintf(want, sizeof(want), "] %s\n", text);
	return cap_has(want);
}

/* --- the parameters under test -------------------------------------------------- */

static bool t_bool;
NK_PARAM_BOOL("t_bool", t_bool, "a boolean");
static bool t_flag;
NK_PARAM_FLAG("t_quiet", t_flag, "a flag");
static unsigned watchdog_thresh = 10;
NK_PARAM_UINT("watchdog_thresh", watchdog_thresh, 0, 60,
	      "seconds without progress before a lockup is reported");
static uint8_t t_u8 = 5;
NK_PARAM_UINT("t_u8", t_u8, 0, 1000, "a byte whose range says more than it holds");
static uint64_t t_u64;
NK_PARAM_UINT("t_u64", t_u64, 0, UINT64_MAX, "64 bits");
static int t_int = -3;
NK_PARAM_INT("t_int", t_int, -100, 100, "a signed int");
static int64_t t_i64;
NK_PARAM_INT("t_i64", t_i64, INT64_MIN, INT64_MAX, "64 signed bits");
static int16_t t_i16;
NK_PARAM_INT("t_i16", t_i16, -40000, 40000, "16 signed bits, range wider than that");
static const char *const t_modes[] = { "off", "warn", "panic", NULL };
static int t_mode = 1;
NK_PARAM_ENUM("t_mode", t_mode, t_modes, "what to do");
static char t_str[8] = "dflt";
NK_PARAM_STR("t_str", t_str, "a short string");
static uint64_t t_cpus[4];
NK_PARAM_CPULIST("t_cpus", t_cpus, "some CPUs");
static bool t_dashed;
NK_PARAM_BOOL("t_dashed_name", t_dashed, "spelled with '-' or '_'");

/* --- tests ------------------------------------------------------------------------ */

static void param_bare_bool_name_means_true(void)
{
	t_bool = false;
	CHECK(nk_params_parse("t_bool") == 0);
	CHECK(t_bool);
}

static void param_bool_accepts_every_linux_spelling(void)
{
	static const char *const on[] = { "1", "y", "Y", "yes", "on", "ON", "true" };
	static const char *const off[] = { "0", "n", "N", "no", "off", "Off", "false" };
	char line[64];

	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
		t_bool = false;
		snprintf(line, sizeof(line), "t_bool=%s", on[i]);
		CHECK(nk_params_parse(line) == 0 && t_bool);
		snprintf(line, sizeof(line), "t_bool=%s", off[i]);
		CHECK(nk_params_parse(line) == 0 && !t_bool);
	}
}

static void param_bool_bad_value_keeps_value_and_warns(void)
{
	cap_reset();
	t_bool = true;
	CHECK(nk_params_parse("t_bool=maybe") == 1);
	CHECK(t_bool);
	CHECK(console_says("nmikit: bad value 'maybe' for parameter 't_bool' "
			   "(expected y/n, 1/0, on/off or yes/no), using default y"));
}

static void param_flag_is_set_by_its_bare_name(void)
{
	CHECK(!t_flag);
	CHECK(nk_params_parse("t_quiet") == 0);
	CHECK(t_flag);
	CHECK(nk_param_set("t_quiet", "n") == NK_PARAM_OK && !t_flag);
}

static void param_number_in_decimal_or_hex_within_range_is_applied(void)
{
	CHECK(nk_params_parse("watchdog_thresh=30") == 0 && watchdog_thresh == 30);
	CHECK(nk_params_parse("watchdog_thresh=0x3c") == 0 && watchdog_thresh == 60);
	CHECK(nk_params_parse("watchdog_thresh=0X1F") == 0 && watchdog_thresh == 31);
	CHECK(nk_params_parse("watchdog_thresh=0") == 0 && watchdog_thresh == 0);
	CHECK(nk_params_parse("watchdog_thresh=010") == 0 && watchdog_thresh == 10);
}

static void param_out_of_range_keeps_default(void)
{
	cap_reset();
	watchdog_thresh = 10;
	CHECK(nk_params_parse("watchdog_thresh=99") == 1);
	CHECK(watchdog_thresh == 10);
	CHECK(console_says("nmikit: bad value '99' for parameter 'watchdog_thresh' "
			   "(expected 0..60), using default 10"));
}

static void param_malformed_number_keeps_default(void)
{
	static const char *const bad[] = { "watchdog_thresh=x", "watchdog_thresh=12abc",
					   "watchdog_thresh=", "watchdog_thresh=0x",
					   "watchdog_thresh=-", "watchdog_thresh=1.5",
					   "watchdog_thresh" };

	watchdog_thresh = 10;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cap_reset();
		CHECK(nk_params_parse(bad[i]) == 1);
		CHECK(watchdog_thresh == 10);
		CHECK(cap_has("watchdog_thresh") && cap_has("using default 10"));
	}
	cap_reset();
	nk_params_parse("watchdog_thresh");
	CHECK(console_says("nmikit: parameter 'watchdog_thresh' needs a value, "
			   "expected 0..60, using default 10"));
}

static void param_unsigned_rejects_negative_and_overflow(void)
{
	t_u64 = 7;
	CHECK(nk_params_parse("t_u64=-1") == 1 && t_u64 == 7);
	CHECK(nk_params_parse("t_u64=18446744073709551616") == 1 && t_u64 == 7);
	CHECK(nk_params_parse("t_u64=18446744073709551615") == 0 && t_u64 == UINT64_MAX);
	CHECK(nk_params_parse("t_u64=0xffffffffffffffff") == 0 && t_u64 == UINT64_MAX);
	CHECK(nk_params_parse("t_u64=0x10000000000000000") == 1 && t_u64 == UINT64_MAX);
	CHECK(nk_params_parse("t_u64=-0") == 0 && t_u64 == 0);
}

static void param_signed_takes_negatives_and_checks_both_ends(void)
{
	CHECK(nk_params_parse("t_int=-100") == 0 && t_int == -100);
	CHECK(nk_params_parse("t_int=+100") == 0 && t_int == 100);
	CHECK(nk_params_parse("t_int=-101") == 1 && t_int == 100);
	CHECK(nk_params_parse("t_int=0x64") == 0 && t_int == 100);
	CHECK(nk_params_parse("t_int=-0x10") == 0 && t_int == -16);
	CHECK(nk_params_parse("t_i64=-9223372036854775808") == 0 && t_i64 == INT64_MIN);
	CHECK(nk_params_parse("t_i64=9223372036854775807") == 0 && t_i64 == INT64_MAX);
	CHECK(nk_params_parse("t_i64=9223372036854775808") == 1 && t_i64 == INT64_MAX);
	CHECK(nk_params_parse("t_i64=-9223372036854775809") == 1 && t_i64 == INT64_MAX);
}

static void param_value_wider_than_its_variable_is_rejected(void)
{
	t_u8 = 5;
	CHECK(nk_params_parse("t_u8=255") == 0 && t_u8 == 255);
	CHECK(nk_params_parse("t_u8=256") == 1 && t_u8 == 255);
	CHECK(nk_params_parse("t_i16=32767") == 0 && t_i16 == 32767);
	CHECK(nk_params_parse("t_i16=-32768") == 0 && t_i16 == -32768);
	CHECK(nk_params_parse("t_i16=32768") == 1 && t_i16 == -32768);
	CHECK(nk_params_parse("t_i16=-32769") == 1 && t_i16 == -32768);
}

static void param_enum_takes_one_of_its_names(void)
{
	cap_reset();
	CHECK(nk_params_parse("t_mode=panic") == 0 && t_mode == 2);
	CHECK(nk_params_parse("t_mode=OFF") == 0 && t_mode == 0);
	CHECK(nk_params_parse("t_mode=2") == 1 && t_mode == 0);
	CHECK(console_says("nmikit: bad value '2' for parameter 't_mode' "
			   "(expected one of off|warn|panic), using default off"));
	CHECK(nk_params_parse("t_mode") == 1 && t_mode == 0);
}

static void param_string_is_copied_and_too_long_is_rejected(void)
{
	CHECK(nk_params_parse("t_str=abc") == 0 && strcmp(t_str, "abc") == 0);
	CHECK(nk_params_parse("t_str=1234567") == 0 && strcmp(t_str, "1234567") == 0);
	cap_reset();
	CHECK(nk_params_parse("t_str=12345678") == 1 && strcmp(t_str, "1234567") == 0);
	CHECK(cap_has("too long, expected at most 7 characters"));
	CHECK(nk_params_parse("t_str=") == 0 && strcmp(t_str, "") == 0);
}

static void param_quoted_value_keeps_its_blanks(void)
{
	CHECK(nk_params_parse("t_bool=0 t_str=\"a b\" t_int=5") == 0);
	CHECK(strcmp(t_str, "a b") == 0);
	CHECK(t_int == 5 && !t_bool);
	CHECK(nk_params_parse("\"t_str=x  y\"") == 0 && strcmp(t_str, "x  y") == 0);
	CHECK(nk_params_parse("t_str=\"q=1\"") == 0 && strcmp(t_str, "q=1") == 0);
}

static void param_unterminated_quote_is_reported_and_ignored(void)
{
	cap_reset();
	strcpy(t_str, "keep");
	CHECK(nk_params_parse("t_str=\"never closed") == 1);
	CHECK(strcmp(t_str, "keep") == 0);
	CHECK(cap_has("unterminated quote in parameter 't_str=\"never closed'"));
}

static void param_unknown_parameters_are_reported_together_and_ignored(void)
{
	cap_reset();
	watchdog_thresh = 10;
	CHECK(nk_params_parse("foo watchdog_thresh=20 bar=1 nmi.x=\"a b\"") == 3);
	CHECK(watchdog_thresh == 20);
	CHECK(console_says("Unknown kernel command line parameters "
			   "\"foo bar=1 nmi.x=\"a b\"\", will be ignored"));
	CHECK(cap_lines() == 1);
}

static void param_many_unknown_parameters_do_not_overflow_the_report(void)
{
	char line[4096] = "";

	for (int i = 0; i < 150; i++)
		strcat(line, "unknown_parameter_name ");
	cap_reset();
	CHECK(nk_params_parse(line) == 150);
	CHECK(cap_has("Unknown kernel command line parameters \"unknown_parameter_name"));
	CHECK(cap_has(" ...\", will be ignored"));
}

static void param_double_dash_ends_kernel_parameters(void)
{
	t_int = 1;
	t_bool = false;
	CHECK(nk_params_parse("t_bool -- t_int=5 init args") == 0);
	CHECK(t_bool && t_int == 1);
	CHECK(nk_params_init_args() && strcmp(nk_params_init_args(), "t_int=5 init args") == 0);
	CHECK(nk_params_parse("t_bool") == 0 && nk_params_init_args() == NULL);
}

static void param_dash_and_underscore_are_the_same_in_names(void)
{
	t_dashed = false;
	CHECK(nk_params_parse("t-dashed-name") == 0 && t_dashed);
	CHECK(nk_param_find("t_dashed-name") != NULL);
	CHECK(nk_param_find("t_dashed_nam") == NULL);
}

static void param_last_occurrence_wins(void)
{
	CHECK(nk_params_parse("watchdog_thresh=1 watchdog_thresh=2\twatchdog_thresh=3") == 0);
	CHECK(watchdog_thresh == 3);
}

static void param_blank_or_empty_command_lines_change_nothing(void)
{
	cap_reset();
	CHECK(nk_params_parse(NULL) == 0);
	CHECK(nk_params_parse("") == 0);
	CHECK(nk_params_parse(" \t\r\n ") == 0);
	CHECK(cap_length() == 0);
}

static void param_overlong_parameter_is_rejected_without_overflow(void)
{
	char line[1200];

	memset(line, 'a', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	memcpy(line, "t_str=", 6);
	cap_reset();
	CHECK(nk_params_parse(line) == 1);
	CHECK(cap_has("is longer than 255 characters, ignored"));
}

static void param_name_without_value_after_equals_is_malformed(void)
{
	cap_reset();
	CHECK(nk_params_parse("=5 t_bool=1") == 1);
	CHECK(cap_has("malformed parameter '=5' (no name before '=')"));
}

static void param_cpulist_accepts_ranges_strides_all_and_none(void)
{
	uint64_t b[4];

	CHECK(nk_params_parse("t_cpus=0-3,5,7-8") == 0);
	CHECK(t_cpus[0] == 0x1afu && t_cpus[1] == 0 && t_cpus[3] == 0);
	CHECK(nk_params_parse("t_cpus=64,255") == 0);
	CHECK(t_cpus[0] == 0 && t_cpus[1] == 1 && t_cpus[3] == (UINT64_C(1) << 63));
	CHECK(nk_cpulist_parse("0-15:2/4", b, 256) == 0 && b[0] == 0x3333u);
	CHECK(nk_cpulist_parse("all", b, 256) == 0 && b[0] == UINT64_MAX && b[3] == UINT64_MAX);
	CHECK(nk_cpulist_parse("none", b, 256) == 0 && b[0] == 0 && b[3] == 0);
	CHECK(nk_cpulist_parse("", b, 256) == 0 && b[0] == 0);
	CHECK(nk_cpulist_parse("0x10", b, 256) == 0 && b[0] == 0x10000u);
	CHECK(nk_cpulist_test(t_cpus, 255) && !nk_cpulist_test(t_cpus, 254));
}

static void param_cpulist_rejects_malformed_lists_and_keeps_the_old_one(void)
{
	static const char *const bad[] = { "3-1", "1,,2", "1,", ",1", "1-", "-1", "a",
					   "1-3:0/2", "1-3:3/2", "1-3:1", "1 2", "1-2-3",
					   "99999999999999999999" };
	uint64_t b[4] = { 42, 0, 0, 0 };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(nk_cpulist_parse(bad[i], b, 256) != NK_PARAM_OK);
		CHECK(b[0] == 42);
	}
	CHECK(nk_cpulist_parse("256", b, 256) == NK_PARAM_ERANGE && b[0] == 42);
	cap_reset();
	CHECK(nk_params_parse("t_cpus=0-300") == 1);
	CHECK(cap_has("(expected a CPU list like 0-3,5 with CPUs 0-255)"));
}

static void param_cpulist_formats_back_to_ranges(void)
{
	uint64_t b[4] = { 0 };
	char buf[64];

	nk_cpulist_parse("0-3,5,7-8,63-65,255", b, 256);
	nk_cpulist_format(b, 256, buf, sizeof(buf));
	CHECK(strcmp(buf, "0-3,5,7-8,63-65,255") == 0);
	/* Cut short, still terminated; the length says how long it would be. */
	CHECK(nk_cpulist_format(b, 256, buf, 6) == strlen("0-3,5,7-8,63-65,255"));
	CHECK(strlen(buf) == 5);
}

static void param_runtime_set_reports_failure_and_keeps_the_current_value(void)
{
	char err[192];

	watchdog_thresh = 20;
	CHECK(nk_param_set_err("watchdog_thresh", "61", err, sizeof(err)) == NK_PARAM_ERANGE);
	CHECK(strcmp(err, "nmikit: bad value '61' for parameter 'watchdog_thresh' "
			  "(expected 0..60), keeping 20") == 0);
	CHECK(nk_param_set_err("watchdog_thresh", "zz", err, sizeof(err)) == NK_PARAM_EINVAL);
	CHECK(nk_param_set_err("no_such", "1", err, sizeof(err)) == NK_PARAM_ENOENT);
	CHECK(strcmp(err, "nmikit: unknown parameter 'no_such' (try 'help params')") == 0);
	CHECK(nk_param_set_err("watchdog_thresh", "45", err, sizeof(err)) == NK_PARAM_OK);
	CHECK(watchdog_thresh == 45);
}

static void param_help_lists_every_parameter_with_values_default_and_description(void)
{
	char line[256];

	/* Changed the way the kernel changes it, after the defaults were taken. */
	CHECK(nk_param_set("watchdog_thresh", "45") == NK_PARAM_OK);
	cap_reset();
	nk_params_print_help(cap_sink, NULL);
	CHECK(cap_has("PARAMETER"));
	/* Defaults are the values before anything changed them. */
	snprintf(line, sizeof(line), "%-20s %-18s %-10s %s [now 45]\n", "watchdog_thresh",
		 "0..60", "10", "seconds without progress before a lockup is reported");
	CHECK(cap_has(line));
	CHECK(cap_has("t_mode               off|warn|panic     warn"));
	CHECK(cap_has("t_str                string <= 7 chars  \"dflt\""));
	CHECK(cap_has("t_cpus               CPUs 0-255         none"));
	CHECK(cap_has("loglevel"));	/* registered by core/log.c */
	for (size_t i = 0; i < nk_params_count(); i++)
		CHECK(cap_has(nk_param_at(i)->name));
}

static void param_markdown_table_has_a_row_per_parameter(void)
{
	size_t rows = 0;

	cap_reset();
	nk_params_print_markdown(cap_sink, NULL);
	CHECK(cap_has("| parameter | type | values | default | description |\n"));
	CHECK(cap_has("| `watchdog_thresh` | uint | 0..60 | 10 | seconds without"));
	/* '|' inside a cell is escaped; rows are sorted by name. */
	CHECK(cap_has("| `t_mode` | enum | off\\|warn\\|panic | warn | what to do |\n"));
	CHECK(cap_has("| `t_bool` |") && cap_find("| `t_bool` |") < cap_find("| `t_cpus` |"));
	CHECK(cap_has("| `t_cpus` |") &&
	      cap_find("| `t_cpus` |") < cap_find("| `watchdog_thresh` |"));
	for (const char *p = cap_text(); (p = strstr(p, "\n| `")); p++)
		rows++;
	CHECK(rows == nk_params_count());
}

static const struct tap_test param_tests[] = {
	TAP_TEST(param_bare_bool_name_means_true),
	TAP_TEST(param_bool_accepts_every_linux_spelling),
	TAP_TEST(param_bool_bad_value_keeps_value_and_warns),
	TAP_TEST(param_flag_is_set_by_its_bare_name),
	TAP_TEST(param_number_in_decimal_or_hex_within_range_is_applied),
	TAP_TEST(param_out_of_range_keeps_default),
	TAP_TEST(param_malformed_number_keeps_default),
	TAP_TEST(param_unsigned_rejects_negative_and_overflow),
	TAP_TEST(param_signed_takes_negatives_and_checks_both_ends),
	TAP_TEST(param_value_wider_than_its_variable_is_rejected),
	TAP_TEST(param_enum_takes_one_of_its_names),
	TAP_TEST(param_string_is_copied_and_too_long_is_rejected),
	TAP_TEST(param_quoted_value_keeps_its_blanks),
	TAP_TEST(param_unterminated_quote_is_reported_and_ignored),
	TAP_TEST(param_unknown_parameters_are_reported_together_and_ignored),
	TAP_TEST(param_many_unknown_parameters_do_not_overflow_the_report),
	TAP_TEST(param_double_dash_ends_kernel_parameters),
	TAP_TEST(param_dash_and_underscore_are_the_same_in_names),
	TAP_TEST(param_last_occurrence_wins),
	TAP_TEST(param_blank_or_empty_command_lines_change_nothing),
	TAP_TEST(param_overlong_parameter_is_rejected_without_overflow),
	TAP_TEST(param_name_without_value_after_equals_is_malformed),
	TAP_TEST(param_cpulist_accepts_ranges_strides_all_and_none),
	TAP_TEST(param_cpulist_rejects_malformed_lists_and_keeps_the_old_one),
	TAP_TEST(param_cpulist_formats_back_to_ranges),
	TAP_TEST(param_runtime_set_reports_failure_and_keeps_the_current_value),
	TAP_TEST(param_help_lists_every_parameter_with_values_default_and_description),
	TAP_TEST(param_markdown_table_has_a_row_per_parameter),
	TAP_END,
};

/* Let every warning through, whatever the default level. */
static void all_levels_to_console(void)
{
	nk_log_set_console_level(8);
}

int main(int argc, char **argv)
{
	static const struct tap_test *const suites[] = { param_tests, NULL };

	return tap_main(argc, argv, suites, all_levels_to_console);
}
