/*
 * fuzz_param.c: libFuzzer harness for the boot-parameter parser
 * (core/param.c).  The first input byte picks the entry point, the rest is
 * the text:
 *   0  nk_params_parse(text): a whole kernel command line
 *   1  nk_param_set_err(name, value): "name=value" (no '=': bare name)
 *   2  nk_cpulist_parse(text)
 * Beyond "no crash, no out-of-bounds access", it checks properties that must
 * hold for any input: every parameter stays inside its declared range, a
 * value that was accepted reads back and is accepted again unchanged, a CPU
 * list formats and re-parses to the same bits, error texts fit their buffer.
 */
#include <nmikit/log.h>
#include <nmikit/param.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One parameter of every type, as a kernel would declare them. */
static bool fz_bool;
NK_PARAM_BOOL("fz_bool", fz_bool, "a bool");
static bool fz_flag;
NK_PARAM_FLAG("fz_flag", fz_flag, "a flag");
static unsigned fz_uint = 10;
NK_PARAM_UINT("fz_uint", fz_uint, 0, 60, "an unsigned 0..60");
static uint64_t fz_u64 = 1000;
NK_PARAM_UINT("fz_u64", fz_u64, 1000, 10000000000ull, "a wide unsigned");
static int fz_int = -5;
NK_PARAM_INT("fz_int", fz_int, -100, 100, "a signed -100..100");
static const char *const fz_choices[] = { "off", "warn", "panic", NULL };
static int fz_enum = 1;
NK_PARAM_ENUM("fz_enum", fz_enum, fz_choices, "an enum");
static char fz_str[16] = "dflt";
NK_PARAM_STR("fz_str", fz_str, "a string of 15 characters at most");
static uint64_t fz_cpus[4] = { 0xf };
NK_PARAM_CPULIST("fz_cpus", fz_cpus, "a CPU list");

#define FZ_TEXT_MAX 4096

/* The parser keeps a pointer to what follows "--": the text must stay put. */
static char fz_text[FZ_TEXT_MAX + 1];

static void fz_fail(void)
{
	abort();
}

static void fz_check_ranges(void)
{
	if (fz_uint > 60 || fz_u64 < 1000 || fz_u64 > 10000000000ull)
		fz_fail();
	if (fz_int < -100 || fz_int > 100 || fz_enum < 0 || fz_enum > 2)
		fz_fail();
	if (memchr(fz_str, '\0', sizeof(fz_str)) == NULL)
		fz_fail();
}

/* An accepted value must format, and setting the formatted text again must
 * give the same value. */
static void fz_check_roundtrip(const char *name)
{
	const struct nk_param *p = nk_param_find(name);
	char a[512], b[512], err[192];

	if (!p)
		return;
	nk_param_format_value(p, false, a, sizeof(a));
	if (p->type == NK_PARAM_T_STR) {
		/* Strings are shown in quotes; the value set is what is inside. */
		size_t n = strlen(a);
		char inner[sizeof(a)];

		if (n < 2 || a[0] != '"' || a[n - 1] != '"')
			fz_fail();
		memcpy(inner, a + 1, n - 2);
		inner[n - 2] = '\0';
		if (nk_param_set_err(name, inner, err, sizeof(err)) != NK_PARAM_OK)
			fz_fail();
	} else if (nk_param_set_err(name, a, err, sizeof(err)) != NK_PARAM_OK) {
		fz_fail();
	}
	nk_param_format_value(p, false, b, sizeof(b));
	if (strcmp(a, b))
		fz_fail();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	size_t len;

	if (!quiet) {
		nk_log_set_console_enabled(false);
		quiet = true;
	}
	if (size < 1)
		return 0;
	len = size - 1 < FZ_TEXT_MAX ? size - 1 : FZ_TEXT_MAX;
	memcpy(fz_text, data + 1, len);
	fz_text[len] = '\0';

	switch (data[0] % 3) {
	case 0:
		nk_params_parse(fz_text);
		if (nk_params_init_args() && (nk_params_init_args() < fz_text ||
					      nk_params_init_args() > fz_text + len))
			fz_fail();
		break;
	case 1: {
		char *eq = strchr(fz_text, '=');
		char err[96];
		int rc;

		if (eq)
			*eq = '\0';
		memset(err, 'x', sizeof(err));
		rc = nk_param_set_err(fz_text, eq ? eq + 1 : NULL, err, sizeof(err));
		if (rc != NK_PARAM_OK && memchr(err, '\0', sizeof(err)) == NULL)
			fz_fail();
		if (rc == NK_PARAM_OK)
			fz_check_roundtrip(fz_text);
		break;
	}
	case 2: {
		uint64_t bits[4], again[4];
		char text[2048];

		memset(bits, 0xa5, sizeof(bits));
		if (nk_cpulist_parse(fz_text, bits, 256) == NK_PARAM_OK) {
			size_t n = nk_cpulist_format(bits, 256, text, sizeof(text));

			if (n < sizeof(text)) {
				if (nk_cpulist_parse(text, again, 256) != NK_PARAM_OK ||
				    memcmp(bits, again, sizeof(bits)))
					fz_fail();
			}
		}
		break;
	}
	}
	fz_check_ranges();
	return 0;
}
