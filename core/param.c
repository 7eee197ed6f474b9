/*
 * param.c: the boot-parameter table (section `nk_params`, filled by the
 * NK_PARAM_* macros of <nmikit/param.h>), the kernel command line parser,
 * run-time setting, and the generated help.  Boot and shell context only:
 * nothing here is NMI-safe or reentrant.
 */
#include <nmikit/format.h>
#include <nmikit/log.h>
#include <nmikit/param.h>

/*
 * Section bounds.  Weak, so that a program with no parameter at all still
 * links (both are then NULL).
 */
extern const struct nk_param __start_nk_params[] __attribute__((weak));
extern const struct nk_param __stop_nk_params[] __attribute__((weak));

/* Longest single parameter (name=value) the parser accepts. */
#define PARAM_TOKEN_MAX		256
/* Room for the list of unknown parameters: the warning must fit one log record. */
#define UNKNOWN_LIST_MAX	160
_Static_assert(UNKNOWN_LIST_MAX + 64 <= NK_LOG_TEXT_MAX,
	       "the unknown-parameter warning must fit in one log record");

static bool defaults_saved;
static const char *init_args;

size_t nk_params_count(void)
{
	if (!__start_nk_params || !__stop_nk_params)
		return 0;
	return (size_t)(__stop_nk_params - __start_nk_params);
}

const struct nk_param *nk_param_at(size_t index)
{
	return index < nk_params_count() ? &__start_nk_params[index] : NULL;
}

/* --- small helpers -------------------------------------------------------- */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool streq_nocase(const char *a, const char *b)
{
	while (*a && lower(*a) == lower(*b)) {
		a++;
		b++;
	}
	return *a == *b;
}

static bool str_same(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

/* Parameter names compare with '-' and '_' taken as the same character. */
static bool name_eq(const char *a, const char *b)
{
	for (;; a++, b++) {
		char x = *a == '-' ? '_' : *a;
		char y = *b == '-' ? '_' : *b;

		if (x != y)
			return false;
		if (!x)
			return true;
	}
}

/*
 * Parse an unsigned number, decimal or 0x hex, at *s; advance *s past it.
 * Returns 0, NK_PARAM_EINVAL (no digit) or NK_PARAM_ERANGE (over 64 bits).
 */
static int parse_u64(const char **s, uint64_t *out)
{
	const char *p = *s;
	unsigned base = 10;
	uint64_t v = 0;
	bool overflow = false;
	int digits = 0;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (;; p++, digits++) {
		unsigned d;

		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && lower(*p) >= 'a' && lower(*p) <= 'f')
			d = (unsigned)(lower(*p) - 'a' + 10);
		else
			break;
		if (v > (UINT64_MAX - d) / base)
			overflow = true;
		v = v * base + d;
	}
	if (!digits)
		return NK_PARAM_EINVAL;
	*s = p;
	*out = v;
	return overflow ? NK_PARAM_ERANGE : NK_PARAM_OK;
}

/* Whole-string number parse: returns 0, NK_PARAM_EINVAL or NK_PARAM_ERANGE. */
static int parse_number(const char *s, bool is_signed, uint64_t *mag, bool *neg)
{
	const char *p = s;
	bool minus = false;
	int rc;

	if (*p == '-' || *p == '+') {
		minus = *p == '-';
		p++;
	}
	rc = parse_u64(&p, mag);
	if (rc == NK_PARAM_EINVAL || *p)
		return NK_PARAM_EINVAL;
	if (rc != NK_PARAM_OK)
		return rc;
	*neg = minus && *mag != 0;
	if (*neg && !is_signed)
		return NK_PARAM_ERANGE;
	return NK_PARAM_OK;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "y", "yes", "on", "true" };
	static const char *const no[] = { "0", "n", "no", "off", "false" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (streq_nocase(s, yes[i])) {
			*out = true;
			return NK_PARAM_OK;
		}
		if (streq_nocase(s, no[i])) {
			*out = false;
			return NK_PARAM_OK;
		}
	}
	return NK_PARAM_EINVAL;
}

static uint64_t load_uint(const void *var, uint32_t size)
{
	switch (size) {
	case 1: return *(const uint8_t *)var;
	case 2: return *(const uint16_t *)var;
	case 4: return *(const uint32_t *)var;
	default: return *(const uint64_t *)var;
	}
}

static int64_t load_int(const void *var, uint32_t size)
{
	switch (size) {
	case 1: return *(const int8_t *)var;
	case 2: return *(const int16_t *)var;
	case 4: return *(const int32_t *)var;
	default: return *(const int64_t *)var;
	}
}

static void store_uint(void *var, uint32_t size, uint64_t v)
{
	switch (size) {
	case 1: *(uint8_t *)var = (uint8_t)v; break;
	case 2: *(uint16_t *)var = (uint16_t)v; break;
	case 4: *(uint32_t *)var = (uint32_t)v; break;
	default: *(uint64_t *)var = v; break;
	}
}

/* Range a variable of `size` bytes can hold. */
static uint64_t uint_limit(uint32_t size)
{
	return size >= 8 ? UINT64_MAX : (UINT64_C(1) << (size * 8)) - 1;
}

static int64_t int_limit_max(uint32_t size)
{
	return size >= 8 ? INT64_MAX : (int64_t)((UINT64_C(1) << (size * 8 - 1)) - 1);
}

static unsigned cpulist_bits(const struct nk_param *p)
{
	return p->size * 8;
}

/* --- CPU lists -------------------------------------------------------------- */

static void bit_set(uint64_t *bits, unsigned n)
{
	bits[n / 64] |= UINT64_C(1) << (n % 64);
}

/*
 * Linux cpulist syntax.  Items separated by ',': N, N-M, or N-M:U/G (in
 * N..M, the first U CPUs of every group of G).  Also "all", "none" and "".
 * Builds the result in a scratch bitmap first so `bits` is untouched on error.
 */
int nk_cpulist_parse(const char *s, uint64_t *bits, unsigned nbits)
{
	uint64_t tmp[NK_PARAM_CPULIST_MAX_WORDS * 4] = { 0 };
	unsigned words = (nbits + 63) / 64;
	const char *p = s;

	if (words > sizeof(tmp) / sizeof(tmp[0]))
		return NK_PARAM_EINVAL;
	if (streq_nocase(s, "none") || *s == '\0') {
		for (unsigned i = 0; i < words; i++)
			bits[i] = 0;
		return NK_PARAM_OK;
	}
	if (streq_nocase(s, "all")) {
		for (unsigned i = 0; i < nbits; i++)
			bit_set(tmp, i);
		for (unsigned i = 0; i < words; i++)
			bits[i] = tmp[i];
		return NK_PARAM_OK;
	}

	for (;;) {
		uint64_t lo, hi, used = 1, group = 1;

		int rc = parse_u64(&p, &lo);

		if (rc != NK_PARAM_OK)
			return rc;
		hi = lo;
		if (*p == '-') {
			p++;
			rc = parse_u64(&p, &hi);
			if (rc != NK_PARAM_OK)
				return rc;
			if (*p == ':') {
				p++;
				if (parse_u64(&p, &used) != NK_PARAM_OK || *p != '/')
					return NK_PARAM_EINVAL;
				p++;
				if (parse_u64(&p, &group) != NK_PARAM_OK)
					return NK_PARAM_EINVAL;
				if (used == 0 || group == 0 || used > group)
					return NK_PARAM_EINVAL;
			}
		}
		if (hi < lo)
			return NK_PARAM_EINVAL;
		if (hi >= nbits)
			return NK_PARAM_ERANGE;
		for (uint64_t c = lo; c <= hi; c++) {
			if ((c - lo) % group < used)
				bit_set(tmp, (unsigned)c);
		}
		if (*p == '\0')
			break;
		if (*p != ',')
			return NK_PARAM_EINVAL;
		p++;
	}
	for (unsigned i = 0; i < words; i++)
		bits[i] = tmp[i];
	return NK_PARAM_OK;
}

size_t nk_cpulist_format(const uint64_t *bits, unsigned nbits, char *buf, size_t size)
{
	size_t len = 0;
	unsigned i = 0;

	if (size > 0)
		buf[0] = '\0';
	while (i < nbits) {
		unsigned j;
		char item[32];
		int n;

		if (!nk_cpulist_test(bits, i)) {
			i++;
			continue;
		}
		j = i;
		while (j + 1 < nbits && nk_cpulist_test(bits, j + 1))
			j++;
		if (j == i)
			n = nk_snprintf(item, sizeof(item), "%s%u", len ? "," : "", i);
		else
			n = nk_snprintf(item, sizeof(item), "%s%u-%u", len ? "," : "", i, j);
		if (size > len)
			nk_strlcpy(buf + len, item, size - len);
		len += (size_t)n;
		i = j + 1;
	}
	return len;
}

/* --- the table -------------------------------------------------------------- */

const struct nk_param *nk_param_find(const char *name)
{
	size_t n = nk_params_count();

	for (size_t i = 0; i < n; i++) {
		if (name_eq(__start_nk_params[i].name, name))
			return &__start_nk_params[i];
	}
	return NULL;
}

/*
 * Save every variable's initial value as its default, once, before the first
 * change.  Also the one place that notices a name registered twice.
 */
static void save_defaults(void)
{
	size_t n = nk_params_count();

	if (defaults_saved)
		return;
	defaults_saved = true;
	for (size_t i = 0; i < n; i++) {
		const struct nk_param *p = &__start_nk_params[i];
		union nk_param_saved *d = p->dflt;

		switch (p->type) {
		case NK_PARAM_T_BOOL:
		case NK_PARAM_T_FLAG:
			d->u = *(const bool *)p->var;
			break;
		case NK_PARAM_T_UINT:
			d->u = load_uint(p->var, p->size);
			break;
		case NK_PARAM_T_INT:
			d->i = load_int(p->var, p->size);
			break;
		case NK_PARAM_T_ENUM:
			d->i = *(const int *)p->var;
			break;
		case NK_PARAM_T_STR:
			/* The array need not be terminated: copy at most its size. */
			for (size_t k = 0; k < sizeof(d->str) - 1 && k < p->size; k++) {
				d->str[k] = ((const char *)p->var)[k];
				if (!d->str[k])
					break;
			}
			break;
		case NK_PARAM_T_CPULIST:
			for (size_t k = 0; k < NK_PARAM_CPULIST_MAX_WORDS &&
					   k < p->size / sizeof(uint64_t); k++)
				d->bits[k] = ((const uint64_t *)p->var)[k];
			break;
		}
		if (nk_param_find(p->name) != p)
			pr_warn("nmikit: parameter '%s' is registered twice; the second one is ignored\n",
				p->name);
	}
}

const char *nk_param_type_name(const struct nk_param *p)
{
	static const char *const names[] = {
		[NK_PARAM_T_BOOL] = "bool",	[NK_PARAM_T_FLAG] = "flag",
		[NK_PARAM_T_UINT] = "uint",	[NK_PARAM_T_INT] = "int",
		[NK_PARAM_T_ENUM] = "enum",	[NK_PARAM_T_STR] = "string",
		[NK_PARAM_T_CPULIST] = "cpulist",
	};

	return p->type < sizeof(names) / sizeof(names[0]) ? names[p->type] : "?";
}

size_t nk_param_format_range(const struct nk_param *p, char *buf, size_t size)
{
	size_t len = 0;

	if (size > 0)
		buf[0] = '\0';
	switch (p->type) {
	case NK_PARAM_T_BOOL:
		return (size_t)nk_snprintf(buf, size, "y/n");
	case NK_PARAM_T_FLAG:
		return (size_t)nk_snprintf(buf, size, "flag (or y/n)");
	case NK_PARAM_T_UINT:
		return (size_t)nk_snprintf(buf, size, "%llu..%llu",
					   (unsigned long long)p->umin,
					   (unsigned long long)p->umax);
	case NK_PARAM_T_INT:
		return (size_t)nk_snprintf(buf, size, "%lld..%lld",
					   (long long)p->imin, (long long)p->imax);
	case NK_PARAM_T_ENUM:
		for (size_t i = 0; p->choices[i]; i++) {
			int n = nk_snprintf(size > len ? buf + len : NULL,
					    size > len ? size - len : 0, "%s%s",
					    i ? "|" : "", p->choices[i]);
			len += (size_t)n;
		}
		return len;
	case NK_PARAM_T_STR:
		return (size_t)nk_snprintf(buf, size, "string <= %u chars", p->size - 1);
	case NK_PARAM_T_CPULIST:
		return (size_t)nk_snprintf(buf, size, "CPUs 0-%u", cpulist_bits(p) - 1);
	}
	return 0;
}

size_t nk_param_format_value(const struct nk_param *p, bool dflt, char *buf, size_t size)
{
	const union nk_param_saved *d = p->dflt;
	int64_t idx;

	save_defaults();
	switch (p->type) {
	case NK_PARAM_T_BOOL:
	case NK_PARAM_T_FLAG:
		return (size_t)nk_snprintf(buf, size, "%s",
			(dflt ? d->u != 0 : *(const bool *)p->var) ? "y" : "n");
	case NK_PARAM_T_UINT:
		return (size_t)nk_snprintf(buf, size, "%llu", (unsigned long long)
			(dflt ? d->u : load_uint(p->var, p->size)));
	case NK_PARAM_T_INT:
		return (size_t)nk_snprintf(buf, size, "%lld", (long long)
			(dflt ? d->i : load_int(p->var, p->size)));
	case NK_PARAM_T_ENUM:
		idx = dflt ? d->i : *(const int *)p->var;
		for (int64_t i = 0; p->choices[i]; i++) {
			if (i == idx)
				return (size_t)nk_snprintf(buf, size, "%s", p->choices[i]);
		}
		return (size_t)nk_snprintf(buf, size, "#%lld", (long long)idx);
	case NK_PARAM_T_STR:
		if (dflt)
			return (size_t)nk_snprintf(buf, size, "\"%s\"", d->str);
		return (size_t)nk_snprintf(buf, size, "\"%.*s\"", (int)p->size,
					   (const char *)p->var);
	case NK_PARAM_T_CPULIST: {
		unsigned nbits = cpulist_bits(p);
		size_t n;

		if (dflt && nbits > NK_PARAM_CPULIST_MAX_WORDS * 64)
			nbits = NK_PARAM_CPULIST_MAX_WORDS * 64;
		n = nk_cpulist_format(dflt ? d->bits : (const uint64_t *)p->var,
				      nbits, buf, size);
		return n ? n : (size_t)nk_snprintf(buf, size, "none");
	}
	}
	if (size > 0)
		buf[0] = '\0';
	return 0;
}

/* --- setting a value ---------------------------------------------------------- */

/*
 * Check `value` against `p` and store it.  On failure nothing changes and
 * `why` says what was expected ("expected 0..60").
 */
static int param_apply(const struct nk_param *p, const char *value,
		       char *why, size_t whysize)
{
	char range[96];
	uint64_t mag = 0;
	bool neg = false;
	bool b;
	int rc;

	nk_param_format_range(p, range, sizeof(range));
	switch (p->type) {
	case NK_PARAM_T_FLAG:
	case NK_PARAM_T_BOOL:
		if (!value) {
			*(bool *)p->var = true;
			return NK_PARAM_OK;
		}
		if (parse_bool(value, &b) != NK_PARAM_OK) {
			nk_snprintf(why, whysize, "expected y/n, 1/0, on/off or yes/no");
			return NK_PARAM_EINVAL;
		}
		*(bool *)p->var = b;
		return NK_PARAM_OK;

	case NK_PARAM_T_UINT:
	case NK_PARAM_T_INT:
		if (!value) {
			nk_snprintf(why, whysize, "needs a value, expected %s", range);
			return NK_PARAM_EINVAL;
		}
		rc = parse_number(value, p->type == NK_PARAM_T_INT, &mag, &neg);
		if (rc != NK_PARAM_OK) {
			nk_snprintf(why, whysize, "expected %s", range);
			return rc;
		}
		if (p->type == NK_PARAM_T_UINT) {
			if (mag < p->umin || mag > p->umax || mag > uint_limit(p->size)) {
				nk_snprintf(why, whysize, "expected %s", range);
				return NK_PARAM_ERANGE;
			}
			store_uint(p->var, p->size, mag);
		} else {
			int64_t v;

			/* |INT64_MIN| is the largest magnitude a negative value may have. */
			if (mag > (uint64_t)INT64_MAX + (neg ? 1 : 0)) {
				nk_snprintf(why, whysize, "expected %s", range);
				return NK_PARAM_ERANGE;
			}
			v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
			if (v < p->imin || v > p->imax || v > int_limit_max(p->size) ||
			    v < -int_limit_max(p->size) - 1) {
				nk_snprintf(why, whysize, "expected %s", range);
				return NK_PARAM_ERANGE;
			}
			store_uint(p->var, p->size, (uint64_t)v);
		}
		return NK_PARAM_OK;

	case NK_PARAM_T_ENUM:
		if (value) {
			for (int i = 0; p->choices[i]; i++) {
				if (streq_nocase(value, p->choices[i])) {
					*(int *)p->var = i;
					return NK_PARAM_OK;
				}
			}
		}
		nk_snprintf(why, whysize, "expected one of %s", range);
		return NK_PARAM_EINVAL;

	case NK_PARAM_T_STR: {
		size_t n = 0;

		if (!value) {
			nk_snprintf(why, whysize, "needs a value");
			return NK_PARAM_EINVAL;
		}
		while (value[n])
			n++;
		if (n + 1 > p->size) {
			nk_snprintf(why, whysize, "too long, expected at most %u characters",
				    p->size - 1);
			return NK_PARAM_ERANGE;
		}
		for (size_t i = 0; i <= n; i++)
			((char *)p->var)[i] = value[i];
		return NK_PARAM_OK;
	}

	case NK_PARAM_T_CPULIST:
		rc = nk_cpulist_parse(value ? value : "", (uint64_t *)p->var, cpulist_bits(p));
		if (rc != NK_PARAM_OK || !value) {
			nk_snprintf(why, whysize, "expected a CPU list like 0-3,5 with CPUs 0-%u",
				    cpulist_bits(p) - 1);
			return rc != NK_PARAM_OK ? rc : NK_PARAM_EINVAL;
		}
		return NK_PARAM_OK;
	}
	nk_snprintf(why, whysize, "unknown parameter type");
	return NK_PARAM_EINVAL;
}

/*
 * The one-line complaint about a bad value.  `boot` words the ending for the
 * command line ("using default") or a run-time change ("keeping").
 */
static void describe_failure(const struct nk_param *p, const char *value,
			     const char *why, bool boot, char *out, size_t size)
{
	char cur[48];

	nk_param_format_value(p, false, cur, sizeof(cur));
	if (value)
		nk_snprintf(out, size,
			    "nmikit: bad value '%.48s' for parameter '%s' (%s), %s %s",
			    value, p->name, why, boot ? "using default" : "keeping", cur);
	else
		nk_snprintf(out, size,
			    "nmikit: parameter '%s' %s, %s %s",
			    p->name, why, boot ? "using default" : "keeping", cur);
}

int nk_param_set_err(const char *name, const char *value, char *err, size_t errsize)
{
	const struct nk_param *p;
	char why[96];
	int rc;

	save_defaults();
	p = nk_param_find(name);
	if (!p) {
		if (err)
			nk_snprintf(err, errsize, "nmikit: unknown parameter '%.48s' (try 'help params')",
				    name);
		return NK_PARAM_ENOENT;
	}
	rc = param_apply(p, value, why, sizeof(why));
	if (rc != NK_PARAM_OK && err)
		describe_failure(p, value, why, false, err, errsize);
	return rc;
}

int nk_param_set(const char *name, const char *value)
{
	char err[192];
	int rc = nk_param_set_err(name, value, err, sizeof(err));

	if (rc != NK_PARAM_OK)
		pr_warn("%s\n", err);
	return rc;
}

/* --- the command line ------------------------------------------------------------ */

const char *nk_params_init_args(void)
{
	return init_args;
}

/* Append one unknown parameter to the list for the single warning. */
static void note_unknown(char *list, size_t *len, bool *cut, const char *tok, size_t toklen)
{
	size_t need = toklen + (*len ? 1 : 0);

	if (*cut)
		return;
	if (*len + need + 4 >= UNKNOWN_LIST_MAX) {
		nk_strlcpy(list + *len, *len ? " ..." : "...", UNKNOWN_LIST_MAX - *len);
		*len += *len ? 4 : 3;
		*cut = true;
		return;
	}
	if (*len)
		list[(*len)++] = ' ';
	for (size_t i = 0; i < toklen; i++)
		list[(*len)++] = tok[i];
	list[*len] = '\0';
}

int nk_params_parse(const char *cmdline)
{
	char unknown[UNKNOWN_LIST_MAX];
	size_t unknown_len = 0;
	bool unknown_cut = false;
	const char *p = cmdline;
	int problems = 0;

	save_defaults();
	init_args = NULL;
	unknown[0] = '\0';

	while (p && *p) {
		char tok[PARAM_TOKEN_MAX];
		const char *start, *value = NULL;
		const struct nk_param *param;
		bool quoted = false, long_tok = false, had_quote = false;
		size_t n = 0, rawlen;
		char *eq;

		while (is_blank(*p))
			p++;
		if (!*p)
			break;

		/* One parameter: up to the first blank outside double quotes. */
		start = p;
		for (; *p && (quoted || !is_blank(*p)); p++) {
			if (*p == '"') {
				quoted = !quoted;
				had_quote = true;
			} else if (n + 1 < sizeof(tok)) {
				tok[n++] = *p;
			} else {
				long_tok = true;
			}
		}
		tok[n] = '\0';
		rawlen = (size_t)(p - start);

		if (quoted) {
			pr_warn("nmikit: unterminated quote in parameter '%.*s', ignored\n",
				(int)(rawlen > 64 ? 64 : rawlen), start);
			problems++;
			continue;
		}
		if (long_tok) {
			pr_warn("nmikit: parameter '%.32s...' is longer than %d characters, ignored\n",
				start, PARAM_TOKEN_MAX - 1);
			problems++;
			continue;
		}
		if (!had_quote && n == 2 && tok[0] == '-' && tok[1] == '-') {
			while (is_blank(*p))
				p++;
			init_args = p;
			break;
		}

		eq = NULL;
		for (size_t i = 0; i < n; i++) {
			if (tok[i] == '=') {
				eq = &tok[i];
				break;
			}
		}
		if (eq) {
			*eq = '\0';
			value = eq + 1;
		}
		if (tok[0] == '\0') {
			pr_warn("nmikit: malformed parameter '%.*s' (no name before '='), ignored\n",
				(int)(rawlen > 64 ? 64 : rawlen), start);
			problems++;
			continue;
		}

		param = nk_param_find(tok);
		if (!param) {
			note_unknown(unknown, &unknown_len, &unknown_cut, start, rawlen);
			problems++;
			continue;
		}

		{
			char why[96], msg[224];

			if (param_apply(param, value, why, sizeof(why)) != NK_PARAM_OK) {
				describe_failure(param, value, why, true, msg, sizeof(msg));
				pr_warn("%s\n", msg);
				problems++;
			}
		}
	}

	if (unknown_len)
		pr_warn("Unknown kernel command line parameters \"%s\", will be ignored\n",
			unknown);
	return problems;
}

/* --- help ------------------------------------------------------------------------ */

/*
 * The parameter that sorts right after `prev` by name (the first one if
 * `prev` is NULL), for listings that do not depend on link order.
 */
static const struct nk_param *next_by_name(const struct nk_param *prev)
{
	size_t n = nk_params_count();
	const struct nk_param *best = NULL;

	for (size_t i = 0; i < n; i++) {
		const struct nk_param *p = &__start_nk_params[i];

		if (prev && (strcmp(p->name, prev->name) < 0 ||
			     (strcmp(p->name, prev->name) == 0 && p <= prev)))
			continue;
		if (!best || strcmp(p->name, best->name) < 0)
			best = p;
	}
	return best;
}

void nk_params_print_help(nk_write_fn *write, void *arg)
{
	const struct nk_param *p = NULL;

	save_defaults();
	nk_wprintf(write, arg, "%-20s %-18s %-10s %s\n", "PARAMETER", "VALUES", "DEFAULT",
		   "DESCRIPTION");
	while ((p = next_by_name(p))) {
		char range[64], dflt[48], cur[48];

		nk_param_format_range(p, range, sizeof(range));
		nk_param_format_value(p, true, dflt, sizeof(dflt));
		nk_param_format_value(p, false, cur, sizeof(cur));
		/* Values or default too wide for their column: description below. */
		if (strlen(range) <= 18 && strlen(dflt) <= 10)
			nk_wprintf(write, arg, "%-20s %-18s %-10s %s", p->name, range, dflt,
				   p->desc);
		else
			nk_wprintf(write, arg, "%-20s %s (default %s)\n%-20s %-18s %-10s %s",
				   p->name, range, dflt, "", "", "", p->desc);
		if (str_same(cur, dflt))
			nk_wprintf(write, arg, "\n");
		else
			nk_wprintf(write, arg, " [now %s]\n", cur);
	}
}

/* Copy `s` with every '|' escaped, so it can sit in a Markdown table cell. */
static void md_escape(const char *s, char *out, size_t size)
{
	size_t n = 0;

	for (; *s && n + 2 < size; s++) {
		if (*s == '|')
			out[n++] = '\\';
		out[n++] = *s;
	}
	out[n] = '\0';
}

void nk_params_print_markdown(nk_write_fn *write, void *arg)
{
	const struct nk_param *p = NULL;

	save_defaults();
	nk_wprintf(write, arg, "| parameter | type | values | default | description |\n");
	nk_wprintf(write, arg, "|---|---|---|---|---|\n");
	while ((p = next_by_name(p))) {
		char range[64], dflt[48], erange[128], edflt[96], edesc[200];

		nk_param_format_range(p, range, sizeof(range));
		nk_param_format_value(p, true, dflt, sizeof(dflt));
		md_escape(range, erange, sizeof(erange));
		md_escape(dflt, edflt, sizeof(edflt));
		md_escape(p->desc, edesc, sizeof(edesc));
		nk_wprintf(write, arg, "| `%s` | %s | %s | %s | %s |\n", p->name,
			   nk_param_type_name(p), erange, edflt, edesc);
	}
}
