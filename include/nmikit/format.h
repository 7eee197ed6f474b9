/*
 * format.h: text formatting for nmikit (a small freestanding vsnprintf) and
 * the C string functions that the freestanding kernel supplies itself in
 * core/string.c.  A hosted build takes the string functions from its C
 * library; the declarations below match the standard ones.
 */
#ifndef NMIKIT_FORMAT_H
#define NMIKIT_FORMAT_H

#include <stdarg.h>
#include <stddef.h>

#include <nmikit/compiler.h>

/*
 * nk_vsnprintf / nk_snprintf: C99 semantics over a subset of conversions.
 *
 *   conversions  %d %i %u %x %X %o %p %s %c %%
 *   flags        '-' (left-justify), '0' (zero pad), '+', ' ', '#'
 *   width        digits or '*'; precision '.' digits or '.*' (for %s: most
 *                bytes read from the string; for integers: least digits)
 *   length       hh h l ll z t j
 *
 * %p prints "0x" and 16 hex digits.  A NULL %s prints "(null)".  An unknown
 * conversion is copied to the output as written.  The output is always
 * NUL-terminated when size > 0; the return value is the length the full
 * output would have had (so a value >= size means it was cut short).
 *
 * NMI-safe: yes.  Pure: no global state, no allocation, stack use bounded
 * (a 24-byte digit buffer), time linear in the output length.
 */
int nk_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int nk_snprintf(char *buf, size_t size, const char *fmt, ...) NK_PRINTF(3, 4);

/* A byte sink: where help texts, dumps and tables are written. */
typedef void nk_write_fn(void *arg, const char *s, size_t len);

/*
 * Format (at most 255 bytes; longer output is cut) and hand the result to
 * `write`.  Returns the number of bytes written.
 */
int nk_wprintf(nk_write_fn *write, void *arg, const char *fmt, ...) NK_PRINTF(3, 4);

/*
 * Copy `src` into `dst` (of `size` bytes), always NUL-terminating when
 * size > 0.  Returns strlen(src), so a result >= size means truncation.
 */
size_t nk_strlcpy(char *dst, const char *src, size_t size);

/*
 * Freestanding C library string functions (core/string.c).  The kernel links
 * those definitions; a hosted build uses its C library's and leaves
 * core/string.c out (or defines NK_HOSTED_LIBC, which empties that file).
 */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
void *memchr(const void *s, int c, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t maxlen);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);
char *strrchr(const char *s, int c);
char *strstr(const char *hay, const char *needle);

#endif
