/*
 * format.c: nmikit's vsnprintf, used by the log, the shell and the tests.
 * Freestanding and reentrant (no global state), so it may run in any
 * context, NMI included.  The supported subset is listed in <nmikit/format.h>.
 */
#include <nmikit/format.h>

#include <stdbool.h>
#include <stdint.h>

/* Output cursor: bytes beyond `size - 1` are counted but not stored. */
struct fmt_out {
	char *buf;
	size_t size;
	size_t len;
};

static void out_char(struct fmt_out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void out_repeat(struct fmt_out *o, char c, int n)
{
	while (n-- > 0)
		out_char(o, c);
}

static void out_bytes(struct fmt_out *o, const char *s, size_t n)
{
	while (n--)
		out_char(o, *s++);
}

/* Parsed form of one conversion specification. */
struct fmt_spec {
	bool left;		/* '-' */
	bool zero;		/* '0' */
	bool plus;		/* '+' */
	bool space;		/* ' ' */
	bool alt;		/* '#' */
	int width;		/* -1: none */
	int prec;		/* -1: none */
};

/*
 * Emit a string of `n` bytes honouring width and the justification flag
 * (zero padding does not apply to strings).
 */
static void out_padded(struct fmt_out *o, const struct fmt_spec *sp,
		       const char *s, size_t n)
{
	int pad = sp->width > (int)n ? sp->width - (int)n : 0;

	if (!sp->left)
		out_repeat(o, ' ', pad);
	out_bytes(o, s, n);
	if (sp->left)
		out_repeat(o, ' ', pad);
}

/*
 * Emit an integer.  `mag` is the magnitude, `neg` its sign; `base` is 8, 10
 * or 16.  Layout: [spaces] sign prefix [zeros] digits [spaces].
 */
static void out_number(struct fmt_out *o, const struct fmt_spec *sp,
		       uint64_t mag, bool neg, unsigned base, bool upper,
		       const char *prefix)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];		/* 2^64 in octal has 22 digits */
	int ndig = 0;
	char sign = 0;
	int plen = 0;
	int zeros = 0;
	int total;

	while (mag) {
		tmp[ndig++] = digits[mag % base];
		mag /= base;
	}
	/* "%.0d" of 0 prints no digits; otherwise at least one. */
	if (ndig == 0 && sp->prec != 0)
		tmp[ndig++] = '0';

	if (neg)
		sign = '-';
	else if (sp->plus)
		sign = '+';
	else if (sp->space)
		sign = ' ';

	if (prefix) {
		while (prefix[plen])
			plen++;
	}
	/* '#' with octal: the leading zero counts as a digit of precision. */
	if (base == 8 && sp->alt && (ndig == 0 || tmp[ndig - 1] != '0'))
		zeros = 1;
	if (sp->prec > ndig + zeros)
		zeros = sp->prec - ndig;

	total = (sign ? 1 : 0) + plen + zeros + ndig;
	if (sp->zero && !sp->left && sp->prec < 0 && sp->width > total) {
		zeros += sp->width - total;
		total = sp->width;
	}

	if (!sp->left)
		out_repeat(o, ' ', sp->width - total);
	if (sign)
		out_char(o, sign);
	out_bytes(o, prefix ? prefix : "", (size_t)plen);
	out_repeat(o, '0', zeros);
	while (ndig > 0)
		out_char(o, tmp[--ndig]);
	if (sp->left)
		out_repeat(o, ' ', sp->width - total);
}

enum fmt_len { LEN_INT, LEN_CHAR, LEN_SHORT, LEN_LONG, LEN_LLONG, LEN_SIZE,
	       LEN_PTRDIFF, LEN_INTMAX };

static int64_t fetch_signed(va_list *ap, enum fmt_len len)
{
	switch (len) {
	case LEN_CHAR:		return (signed char)va_arg(*ap, int);
	case LEN_SHORT:		return (short)va_arg(*ap, int);
	case LEN_LONG:		return va_arg(*ap, long);
	case LEN_LLONG:		return va_arg(*ap, long long);
	case LEN_SIZE:		return (int64_t)va_arg(*ap, size_t);
	case LEN_PTRDIFF:	return va_arg(*ap, ptrdiff_t);
	case LEN_INTMAX:	return va_arg(*ap, intmax_t);
	default:		return va_arg(*ap, int);
	}
}

static uint64_t fetch_unsigned(va_list *ap, enum fmt_len len)
{
	switch (len) {
	case LEN_CHAR:		return (unsigned char)va_arg(*ap, unsigned int);
	case LEN_SHORT:		return (unsigned short)va_arg(*ap, unsigned int);
	case LEN_LONG:		return va_arg(*ap, unsigned long);
	case LEN_LLONG:		return va_arg(*ap, unsigned long long);
	case LEN_SIZE:		return va_arg(*ap, size_t);
	case LEN_PTRDIFF:	return (uint64_t)va_arg(*ap, ptrdiff_t);
	case LEN_INTMAX:	return va_arg(*ap, uintmax_t);
	default:		return va_arg(*ap, unsigned int);
	}
}

/* Read a decimal field width or precision; saturates instead of overflowing. */
static int parse_decimal(const char **p)
{
	int v = 0;

	while (**p >= '0' && **p <= '9') {
		if (v < 100000)
			v = v * 10 + (**p - '0');
		(*p)++;
	}
	return v;
}

static void format_all(struct fmt_out *o, const char *fmt, va_list *ap)
{
	while (*fmt) {
		const char *start = fmt;
		struct fmt_spec sp = { .width = -1, .prec = -1 };
		enum fmt_len len = LEN_INT;

		if (*fmt != '%') {
			out_char(o, *fmt++);
			continue;
		}
		fmt++;

		for (;; fmt++) {
			if (*fmt == '-')
				sp.left = true;
			else if (*fmt == '0')
				sp.zero = true;
			else if (*fmt == '+')
				sp.plus = true;
			else if (*fmt == ' ')
				sp.space = true;
			else if (*fmt == '#')
				sp.alt = true;
			else
				break;
		}

		if (*fmt == '*') {
			sp.width = va_arg(*ap, int);
			if (sp.width < 0) {
				sp.left = true;
				sp.width = sp.width == INT32_MIN ? 0 : -sp.width;
			}
			fmt++;
		} else if (*fmt >= '0' && *fmt <= '9') {
			sp.width = parse_decimal(&fmt);
		}

		if (*fmt == '.') {
			fmt++;
			if (*fmt == '*') {
				sp.prec = va_arg(*ap, int);
				if (sp.prec < 0)
					sp.prec = -1;
				fmt++;
			} else {
				sp.prec = parse_decimal(&fmt);
			}
		}

		switch (*fmt) {
		case 'h':
			fmt++;
			len = LEN_SHORT;
			if (*fmt == 'h') {
				fmt++;
				len = LEN_CHAR;
			}
			break;
		case 'l':
			fmt++;
			len = LEN_LONG;
			if (*fmt == 'l') {
				fmt++;
				len = LEN_LLONG;
			}
			break;
		case 'z':
			fmt++;
			len = LEN_SIZE;
			break;
		case 't':
			fmt++;
			len = LEN_PTRDIFF;
			break;
		case 'j':
			fmt++;
			len = LEN_INTMAX;
			break;
		default:
			break;
		}

		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = fetch_signed(ap, len);
			uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

			out_number(o, &sp, mag, v < 0, 10, false, NULL);
			break;
		}
		case 'u':
			out_number(o, &sp, fetch_unsigned(ap, len), false, 10, false, NULL);
			break;
		case 'x':
		case 'X': {
			uint64_t v = fetch_unsigned(ap, len);
			const char *pfx = NULL;

			if (sp.alt && v)
				pfx = *fmt == 'X' ? "0X" : "0x";
			sp.plus = sp.space = false;
			out_number(o, &sp, v, false, 16, *fmt == 'X', pfx);
			break;
		}
		case 'o':
			sp.plus = sp.space = false;
			out_number(o, &sp, fetch_unsigned(ap, len), false, 8, false, NULL);
			break;
		case 'p': {
			uintptr_t v = (uintptr_t)va_arg(*ap, void *);
			struct fmt_spec ps = sp;

			ps.prec = (int)(2 * sizeof(void *));
			ps.zero = ps.plus = ps.space = false;
			out_number(o, &ps, v, false, 16, false, "0x");
			break;
		}
		case 's': {
			const char *s = va_arg(*ap, const char *);
			size_t n = 0;

			if (!s)
				s = "(null)";
			/* Never read past the precision: the string may be unterminated. */
			while ((sp.prec < 0 || n < (size_t)sp.prec) && s[n])
				n++;
			out_padded(o, &sp, s, n);
			break;
		}
		case 'c': {
			char c = (char)va_arg(*ap, int);

			out_padded(o, &sp, &c, 1);
			break;
		}
		case '%':
			out_char(o, '%');
			break;
		default:
			/* Unknown or truncated specification: copy it as written. */
			if (*fmt == '\0') {
				out_bytes(o, start, (size_t)(fmt - start));
				return;
			}
			out_bytes(o, start, (size_t)(fmt - start) + 1);
			break;
		}
		fmt++;
	}
}

int nk_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct fmt_out o = { .buf = buf, .size = size, .len = 0 };
	va_list cp;

	va_copy(cp, ap);
	format_all(&o, fmt, &cp);
	va_end(cp);
	if (size > 0)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return o.len > INT32_MAX ? INT32_MAX : (int)o.len;
}

int nk_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = nk_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

int nk_wprintf(nk_write_fn *write, void *arg, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = nk_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(buf))
		n = (int)sizeof(buf) - 1;
	write(arg, buf, (size_t)n);
	return n;
}

size_t nk_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = 0;

	while (src[n]) {
		if (n + 1 < size)
			dst[n] = src[n];
		n++;
	}
	if (size > 0)
		dst[n < size ? n : size - 1] = '\0';
	return n;
}
