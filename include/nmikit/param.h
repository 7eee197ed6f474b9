/*
 * param.h: boot (and run-time) parameters, registered next to the variable
 * they set, FreeBSD style:
 *
 *	static unsigned watchdog_thresh = 10;
 *	NK_PARAM_UINT("watchdog_thresh", watchdog_thresh, 0, 60,
 *		      "seconds without progress before a lockup is reported");
 *
 * The variable's initial value is the default.  Each macro puts a descriptor
 * in the linker section `nk_params` (the kernel's linker script keeps it and
 * defines __start_nk_params / __stop_nk_params; a hosted ELF link provides
 * them itself).  nk_params_parse() applies a kernel command line; the shell's
 * `param` and `help params` use the same table, and so does the generated
 * parameter list in the docs.
 *
 * Command-line syntax (as Linux): parameters are separated by blanks;
 * `name=value`; a bare `name` turns a bool or flag on; bools take
 * 0/1/y/n/on/off/yes/no/true/false; numbers are decimal or 0x hex and checked
 * against the range; `name="a b"` (or `"name=a b"`) quotes blanks; '-' and
 * '_' are the same in names; `--` ends the kernel's part of the line.
 * Unknown or malformed parameters are reported and ignored: the defaults stay.
 */
#ifndef NMIKIT_PARAM_H
#define NMIKIT_PARAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nmikit/format.h>

enum nk_param_type {
	NK_PARAM_T_BOOL,	/* bool; `name` alone means true */
	NK_PARAM_T_FLAG,	/* bool switched on by a bare `name` */
	NK_PARAM_T_UINT,	/* unsigned integer of any width, min..max */
	NK_PARAM_T_INT,		/* signed integer of any width, min..max */
	NK_PARAM_T_ENUM,	/* int index into a NULL-terminated list of names */
	NK_PARAM_T_STR,		/* char array, value copied in (must fit) */
	NK_PARAM_T_CPULIST,	/* uint64_t bitmap, Linux cpulist syntax 0-3,5 */
};

/* Largest CPU list bitmap whose default `help params` can show. */
#define NK_PARAM_CPULIST_MAX_WORDS	4
/* Longest string default `help params` shows (longer ones are cut). */
#define NK_PARAM_STR_SHOWN		31

/* Storage for a parameter's default, saved before anything changes it. */
union nk_param_saved {
	uint64_t u;
	int64_t i;
	uint64_t bits[NK_PARAM_CPULIST_MAX_WORDS];
	char str[NK_PARAM_STR_SHOWN + 1];
};

struct nk_param {
	const char *name;
	const char *desc;
	void *var;
	union nk_param_saved *dflt;
	const char *const *choices;	/* ENUM */
	uint64_t umin, umax;		/* UINT */
	int64_t imin, imax;		/* INT */
	uint32_t size;			/* sizeof the variable */
	uint8_t type;			/* enum nk_param_type */
};

#define NK__PCAT2(a, b)		a##b
#define NK__PCAT(a, b)		NK__PCAT2(a, b)

/* One descriptor and its default slot; `pname` must be a string literal. */
#define NK__PARAM(pname, ptype, pvar, pdesc, ...)				\
	static union nk_param_saved NK__PCAT(nk__param_dflt_, __LINE__);	\
	static const struct nk_param NK__PCAT(nk__param_, __LINE__)		\
	__attribute__((used, section("nk_params"), aligned(8))) = {		\
		.name = pname,							\
		.desc = pdesc,							\
		.var = (void *)&(pvar),						\
		.dflt = &NK__PCAT(nk__param_dflt_, __LINE__),			\
		.size = sizeof(pvar),						\
		.type = (ptype),						\
		__VA_ARGS__							\
	}

#define NK__PARAM_IS_BOOL(v)	_Generic((v), bool: 1, default: 0)
#define NK__PARAM_IS_UNSIGNED(v)						\
	_Generic((v), unsigned char: 1, unsigned short: 1, unsigned int: 1,	\
		 unsigned long: 1, unsigned long long: 1, default: 0)
#define NK__PARAM_IS_SIGNED(v)							\
	_Generic((v), signed char: 1, short: 1, int: 1, long: 1,		\
		 long long: 1, default: 0)

/* `name` or `name=y|n|1|0|on|off|yes|no|true|false`. */
#define NK_PARAM_BOOL(pname, pvar, pdesc)					\
	_Static_assert(NK__PARAM_IS_BOOL(pvar),					\
		       "NK_PARAM_BOOL " pname ": the variable must be a bool"); \
	NK__PARAM(pname, NK_PARAM_T_BOOL, pvar, pdesc, .umax = 1)

/*
 * A switch named by its presence (`quiet`, `nosmp`): bare `name` sets the
 * bool.  A bool value is accepted too, so `param NAME n` can turn it off.
 */
#define NK_PARAM_FLAG(pname, pvar, pdesc)					\
	_Static_assert(NK__PARAM_IS_BOOL(pvar),					\
		       "NK_PARAM_FLAG " pname ": the variable must be a bool"); \
	NK__PARAM(pname, NK_PARAM_T_FLAG, pvar, pdesc, .umax = 1)

#define NK_PARAM_UINT(pname, pvar, pmin, pmax, pdesc)				\
	_Static_assert(NK__PARAM_IS_UNSIGNED(pvar),				\
		       "NK_PARAM_UINT " pname ": the variable must be unsigned"); \
	_Static_assert((unsigned long long)(pmax) - (unsigned long long)(pmin) <= \
		       (unsigned long long)(pmax), "NK_PARAM_UINT " pname ": min > max"); \
	NK__PARAM(pname, NK_PARAM_T_UINT, pvar, pdesc,				\
		  .umin = (pmin), .umax = (pmax))

#define NK_PARAM_INT(pname, pvar, pmin, pmax, pdesc)				\
	_Static_assert(NK__PARAM_IS_SIGNED(pvar),				\
		       "NK_PARAM_INT " pname ": the variable must be signed");	\
	_Static_assert((long long)(pmin) <= (long long)(pmax),			\
		       "NK_PARAM_INT " pname ": min > max");			\
	NK__PARAM(pname, NK_PARAM_T_INT, pvar, pdesc,				\
		  .imin = (pmin), .imax = (pmax))

/*
 * `pchoices` is a NULL-terminated array of names; the variable (int or
 * unsigned, an enum will do) holds the index of the chosen name.
 */
#define NK_PARAM_ENUM(pname, pvar, pchoices, pdesc)				\
	_Static_assert(_Generic((pvar), int: 1, unsigned int: 1, default: 0), \
		       "NK_PARAM_ENUM " pname ": the variable must be an int or enum"); \
	NK__PARAM(pname, NK_PARAM_T_ENUM, pvar, pdesc, .choices = (pchoices))

/* The variable is a char array; the value (NUL included) must fit in it. */
#define NK_PARAM_STR(pname, pvar, pdesc)					\
	_Static_assert(_Generic(&(pvar), char (*)[sizeof(pvar)]: 1, default: 0), \
		       "NK_PARAM_STR " pname ": the variable must be a char array"); \
	NK__PARAM(pname, NK_PARAM_T_STR, pvar, pdesc)

/*
 * The variable is a uint64_t array used as a bitmap (CPU n is bit n % 64 of
 * word n / 64).  Syntax: `0-3,5,7-8`, `0-15:2/4` (of each group of 4 CPUs in
 * 0-15, the first 2), `all`, `none`, or empty.
 */
#define NK_PARAM_CPULIST(pname, pvar, pdesc)					\
	_Static_assert(_Generic(&(pvar)[0], uint64_t *: 1, default: 0) &&	\
		       sizeof(pvar) % sizeof(uint64_t) == 0,			\
		       "NK_PARAM_CPULIST " pname ": the variable must be a uint64_t array"); \
	NK__PARAM(pname, NK_PARAM_T_CPULIST, pvar, pdesc)

/* Error codes of nk_param_set() and friends. */
#define NK_PARAM_OK		0
#define NK_PARAM_ENOENT		(-1)	/* no such parameter */
#define NK_PARAM_EINVAL		(-2)	/* malformed value */
#define NK_PARAM_ERANGE		(-3)	/* well formed but outside the range */

/*
 * Apply a kernel command line.  Unknown parameters are gathered into one
 * warning (`Unknown kernel command line parameters "foo", will be ignored`);
 * a bad value gets one warning naming what was expected and the default that
 * stays.  Returns the number of problems reported (0: all applied).
 * Not reentrant: boot and shell only.
 */
int nk_params_parse(const char *cmdline);

/* What followed `--` in the last parsed command line (NULL if no `--`). */
const char *nk_params_init_args(void);

/*
 * Set one parameter at run time; `value` NULL means the bare name.  On
 * failure, `err` (if not NULL) receives a one-line explanation.
 */
int nk_param_set_err(const char *name, const char *value, char *err, size_t errsize);
/* Same, reporting a failure with pr_warn. */
int nk_param_set(const char *name, const char *value);

const struct nk_param *nk_param_find(const char *name);
size_t nk_params_count(void);
const struct nk_param *nk_param_at(size_t index);

/* "bool", "flag", "uint", "int", "enum", "string", "cpulist". */
const char *nk_param_type_name(const struct nk_param *p);
/* Accepted values: "0..60", "off|warn|panic", "y/n", "<=31 chars", "CPUs 0-255". */
size_t nk_param_format_range(const struct nk_param *p, char *buf, size_t size);
/* Current value (or, with `dflt`, the default) as text.  Like snprintf's result. */
size_t nk_param_format_value(const struct nk_param *p, bool dflt, char *buf, size_t size);

/* Table of every parameter: name, values, default, description (and current value if changed). */
void nk_params_print_help(nk_write_fn *write, void *arg);
/* The same as a Markdown table (for docs/params.md). */
void nk_params_print_markdown(nk_write_fn *write, void *arg);

/* CPU lists.  parse: 0 or NK_PARAM_EINVAL / NK_PARAM_ERANGE; bits untouched on error. */
int nk_cpulist_parse(const char *s, uint64_t *bits, unsigned nbits);
size_t nk_cpulist_format(const uint64_t *bits, unsigned nbits, char *buf, size_t size);

static inline bool nk_cpulist_test(const uint64_t *bits, unsigned cpu)
{
	return (bits[cpu / 64] >> (cpu % 64)) & 1;
}

#endif
