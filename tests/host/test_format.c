/*
 * test_format.c: host tests of core/format.c (nk_vsnprintf and helpers) and
 * core/string.c (built with NK_STRING_PREFIX=nkt_ so its functions can be
 * compared with the C library's).  TAP on stdout.
 */
#define _GNU_SOURCE
#include <nmikit/format.h>

#include "tap.h"

#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* core/string.c under its test names. */
void *nkt_memcpy(void *dst, const void *src, size_t n);
void *nkt_memmove(void *dst, const void *src, size_t n);
void *nkt_memset(void *dst, int c, size_t n);
int nkt_memcmp(const void *a, const void *b, size_t n);
void *nkt_memchr(const void *s, int c, size_t n);
size_t nkt_strlen(const char *s);
size_t nkt_strnlen(const char *s, size_t maxlen);
int nkt_strcmp(const char *a, const char *b);
int nkt_strncmp(const char *a, const char *b, size_t n);
char *nkt_strchr(const char *s, int c);
char *nkt_strrchr(const char *s, int c);
char *nkt_strstr(const char *hay, const char *needle);

/* Compare nk_snprintf with the C library for one format and argument. */
#define SAME_AS_LIBC(fmt, ...)							\
	do {									\
		char a_[256], b_[256];						\
		int na_ = nk_snprintf(a_, sizeof(a_), fmt, __VA_ARGS__);	\
		int nb_ = snprintf(b_, sizeof(b_), fmt, __VA_ARGS__);		\
		CHECK_MSG(na_ == nb_ && strcmp(a_, b_) == 0,			\
			  "format \"%s\": got \"%s\" (%d), libc \"%s\" (%d)",	\
			  fmt, a_, na_, b_, nb_);				\
	} while (0)

/* --- nk_vsnprintf ------------------------------------------------------------- */

static void format_integers_match_libc_for_every_flag_width_precision(void)
{
	static const char *const flags[] = { "", "-", "0", "+", " ", "#", "-0", "+0", "-+", "0#" };
	static const char *const widths[] = { "", "1", "5", "12", "25" };
	static const char *const precs[] = { "", ".0", ".1", ".3", ".10" };
	static const char convs[] = { 'd', 'i', 'u', 'x', 'X', 'o' };
	static const long long values[] = { 0, 1, -1, 42, -42, 255, 65535, INT_MAX, INT_MIN,
					    LLONG_MAX, LLONG_MIN, 0x7f, -128 };

	for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++)
	for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++)
	for (size_t p = 0; p < sizeof(precs) / sizeof(precs[0]); p++)
	for (size_t c = 0; c < sizeof(convs); c++)
	for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
		char fmt[32];
		bool sgn = convs[c] == 'd' || convs[c] == 'i';

		/* '+', ' ' with unsigned conversions and '#' with decimal are undefined in C. */
		if (!sgn && (strchr(flags[f], '+') || strchr(flags[f], ' ')))
			continue;
		if ((sgn || convs[c] == 'u') && strchr(flags[f], '#'))
			continue;
		snprintf(fmt, sizeof(fmt), "[%%%s%s%sll%c]", flags[f], widths[w], precs[p], convs[c]);
		SAME_AS_LIBC(fmt, values[v]);
		snprintf(fmt, sizeof(fmt), "[%%%s%s%s%c]", flags[f], widths[w], precs[p], convs[c]);
		SAME_AS_LIBC(fmt, (int)values[v]);
	}
}

static void format_length_modifiers_take_the_right_argument_size(void)
{
	SAME_AS_LIBC("%hhd %hhu %hhx", 0x1ff, 0x1ff, 0x1ff);
	SAME_AS_LIBC("%hd %hu %hx", 0x1ffff, 0x1ffff, 0x1ffff);
	SAME_AS_LIBC("%ld %lu %lx", -5L, 5UL, 0xdeadbeefcafeUL);
	SAME_AS_LIBC("%lld %llu %llx", -5LL, 18446744073709551615ULL, 0xffffffffffffffffULL);
	SAME_AS_LIBC("%zu %zx %zd", (size_t)123456789012, (size_t)0xabc, (ssize_t)-7);
	SAME_AS_LIBC("%td %jd %ju", (ptrdiff_t)-9, (intmax_t)INT64_MIN, (uintmax_t)UINT64_MAX);
	/* Arguments after a narrow one are still read from the right place. */
	SAME_AS_LIBC("%hhd|%lld|%hd|%s", 1, 2LL, 3, "four");
}

static void format_strings_and_chars_honour_width_precision_and_justification(void)
{
	SAME_AS_LIBC("[%s]", "hello");
	SAME_AS_LIBC("[%10s]", "hello");
	SAME_AS_LIBC("[%-10s]", "hello");
	SAME_AS_LIBC("[%.3s]", "hello");
	SAME_AS_LIBC("[%10.3s]", "hello");
	SAME_AS_LIBC("[%-10.3s|]", "hello");
	SAME_AS_LIBC("[%.0s]", "hello");
	SAME_AS_LIBC("[%c]", 'x');
	SAME_AS_LIBC("[%5c]", 'x');
	SAME_AS_LIBC("[%-5c]", 'x');
	SAME_AS_LIBC("[%*s]", 8, "ab");
	SAME_AS_LIBC("[%*s]", -8, "ab");
	SAME_AS_LIBC("[%.*s]", 2, "abcdef");
	SAME_AS_LIBC("[%.*s]", -1, "abcdef");
	SAME_AS_LIBC("[%*.*d]", 8, 4, 12);
	SAME_AS_LIBC("%d%%", 50);
}

static void format_string_precision_never_reads_past_the_limit(void)
{
	/* An unterminated buffer: AddressSanitizer catches any read past it. */
	char *raw = malloc(4);
	char out[16];

	memcpy(raw, "abcd", 4);
	CHECK(nk_snprintf(out, sizeof(out), "%.4s|", raw) == 5);
	CHECK_STR(out, "abcd|");
	CHECK(nk_snprintf(out, sizeof(out), "%.2s", raw) == 2);
	CHECK_STR(out, "ab");
	free(raw);
}

static void format_truncates_output_and_returns_the_full_length(void)
{
	char buf[8];

	memset(buf, 'X', sizeof(buf));
	CHECK(nk_snprintf(buf, sizeof(buf), "%s-%d", "abcdef", 12345) == 12);
	CHECK_STR(buf, "abcdef-");
	CHECK(nk_snprintf(buf, 1, "abc") == 3);
	CHECK(buf[0] == '\0');
	/* size 0: nothing written, not even the terminator; NULL is allowed. */
	buf[0] = 'Q';
	CHECK(nk_snprintf(buf, 0, "abc") == 3);
	CHECK(buf[0] == 'Q');
	CHECK(nk_snprintf(NULL, 0, "%d", 1000) == 4);
}

static void format_pointer_prints_0x_and_16_hex_digits(void)
{
	char buf[64];

	nk_snprintf(buf, sizeof(buf), "%p", (void *)0x1234abcdUL);
	CHECK_STR(buf, "0x000000001234abcd");
	nk_snprintf(buf, sizeof(buf), "%p", NULL);
	CHECK_STR(buf, "0x0000000000000000");
	nk_snprintf(buf, sizeof(buf), "[%20p]", (void *)0xffffffff81000000UL);
	CHECK_STR(buf, "[  0xffffffff81000000]");
	nk_snprintf(buf, sizeof(buf), "[%-20p]", (void *)1);
	CHECK_STR(buf, "[0x0000000000000001  ]");
}

static void format_null_string_prints_null_marker(void)
{
	char buf[32];
	const char *volatile null_str = NULL;

	nk_snprintf(buf, sizeof(buf), "[%s]", null_str);
	CHECK_STR(buf, "[(null)]");
}

/* These formats are deliberately invalid. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat"
#pragma GCC diagnostic ignored "-Wformat-extra-args"
static void format_unknown_or_cut_conversions_are_copied_verbatim(void)
{
	char buf[32];

	CHECK(nk_snprintf(buf, sizeof(buf), "a%qb") == 4);
	CHECK_STR(buf, "a%qb");
	nk_snprintf(buf, sizeof(buf), "x%-5");
	CHECK_STR(buf, "x%-5");
	nk_snprintf(buf, sizeof(buf), "x%");
	CHECK_STR(buf, "x%");
}
#pragma GCC diagnostic pop

static void format_huge_width_is_bounded_by_the_buffer(void)
{
	char buf[16];
	int n = nk_snprintf(buf, sizeof(buf), "%999999999d", 1);

	CHECK(n > 0);
	CHECK(strlen(buf) == sizeof(buf) - 1);
}

struct sink {
	char buf[300];
	size_t len;
};

static void sink_write(void *arg, const char *s, size_t len)
{
	struct sink *sink = arg;

	memcpy(sink->buf + sink->len, s, len);
	sink->len += len;
}

static void wprintf_hands_the_formatted_bytes_to_the_sink(void)
{
	struct sink sink = { .len = 0 };

	nk_wprintf(sink_write, &sink, "x=%d y=%s", 5, "ok");
	CHECK(sink.len == 8);
	CHECK(memcmp(sink.buf, "x=5 y=ok", 8) == 0);
}

static void strlcpy_truncates_terminates_and_returns_source_length(void)
{
	char buf[5];

	CHECK(nk_strlcpy(buf, "abcdefg", sizeof(buf)) == 7);
	CHECK_STR(buf, "abcd");
	CHECK(nk_strlcpy(buf, "ab", sizeof(buf)) == 2);
	CHECK_STR(buf, "ab");
	buf[0] = 'Z';
	CHECK(nk_strlcpy(buf, "ab", 0) == 2);
	CHECK(buf[0] == 'Z');
}

/* --- core/string.c ------------------------------------------------------------ */

static int sign(int v)
{
	return v < 0 ? -1 : v > 0;
}

static void string_memory_functions_match_libc_at_every_alignment(void)
{
	unsigned char src[200], a[200], b[200];

	srand(7);
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (unsigned char)rand();
	for (size_t so = 0; so < 9; so++)
	for (size_t dof = 0; dof < 9; dof++)
	for (size_t n = 0; n < 70; n += (n < 20 ? 1 : 7)) {
		memset(a, 0xee, sizeof(a));
		memset(b, 0xee, sizeof(b));
		CHECK(nkt_memcpy(a + dof, src + so, n) == a + dof);
		memcpy(b + dof, src + so, n);
		CHECK(memcmp(a, b, sizeof(a)) == 0);

		CHECK(nkt_memset(a + dof, (int)(so * 37 + 1), n) == a + dof);
		memset(b + dof, (int)(so * 37 + 1), n);
		CHECK(memcmp(a, b, sizeof(a)) == 0);

		memcpy(a, src, sizeof(a));
		memcpy(b, src, sizeof(b));
		if (n)
			b[so + n - 1] ^= 1;
		CHECK(sign(nkt_memcmp(a + so, b + so, n)) == sign(memcmp(a + so, b + so, n)));
		CHECK(nkt_memchr(src + so, src[so + n / 2], n) == memchr(src + so, src[so + n / 2], n));
	}
}

static void string_memmove_copies_overlapping_ranges_both_ways(void)
{
	unsigned char a[128], b[128];

	for (size_t off = 0; off < 20; off++)
	for (size_t n = 0; n < 60; n++) {
		for (size_t i = 0; i < sizeof(a); i++)
			a[i] = b[i] = (unsigned char)(i * 7 + 3);
		nkt_memmove(a + off, a + 17, n);	/* dest below or above source */
		memmove(b + off, b + 17, n);
		CHECK(memcmp(a, b, sizeof(a)) == 0);
		nkt_memmove(a + 17, a + off, n);
		memmove(b + 17, b + off, n);
		CHECK(memcmp(a, b, sizeof(a)) == 0);
	}
}

static void string_str_functions_match_libc(void)
{
	static const char *const s[] = { "", "a", "abc", "abd", "ab", "hello world", "\xff\x01",
					 "zzz", "abcabc" };
	const size_t n = sizeof(s) / sizeof(s[0]);

	for (size_t i = 0; i < n; i++) {
		CHECK(nkt_strlen(s[i]) == strlen(s[i]));
		for (size_t m = 0; m < 8; m++)
			CHECK(nkt_strnlen(s[i], m) == strnlen(s[i], m));
		for (int c = 0; c < 256; c += 1) {
			CHECK(nkt_strchr(s[i], c) == strchr(s[i], c));
			CHECK(nkt_strrchr(s[i], c) == strrchr(s[i], c));
		}
		for (size_t j = 0; j < n; j++) {
			CHECK(sign(nkt_strcmp(s[i], s[j])) == sign(strcmp(s[i], s[j])));
			for (size_t m = 0; m < 6; m++)
				CHECK(sign(nkt_strncmp(s[i], s[j], m)) == sign(strncmp(s[i], s[j], m)));
			CHECK(nkt_strstr(s[i], s[j]) == strstr(s[i], s[j]));
		}
	}
}

static const struct tap_test format_tests[] = {
	TAP_TEST(format_integers_match_libc_for_every_flag_width_precision),
	TAP_TEST(format_length_modifiers_take_the_right_argument_size),
	TAP_TEST(format_strings_and_chars_honour_width_precision_and_justification),
	TAP_TEST(format_string_precision_never_reads_past_the_limit),
	TAP_TEST(format_truncates_output_and_returns_the_full_length),
	TAP_TEST(format_pointer_prints_0x_and_16_hex_digits),
	TAP_TEST(format_null_string_prints_null_marker),
	TAP_TEST(format_unknown_or_cut_conversions_are_copied_verbatim),
	TAP_TEST(format_huge_width_is_bounded_by_the_buffer),
	TAP_TEST(wprintf_hands_the_formatted_bytes_to_the_sink),
	TAP_TEST(strlcpy_truncates_terminates_and_returns_source_length),
	TAP_TEST(string_memory_functions_match_libc_at_every_alignment),
	TAP_TEST(string_memmove_copies_overlapping_ranges_both_ways),
	TAP_TEST(string_str_functions_match_libc),
	TAP_END,
};

int main(int argc, char **argv)
{
	static const struct tap_test *const suites[] = { format_tests, NULL };

	return tap_main(argc, argv, suites, NULL);
}
