/*
 * string.c: the C library string and memory functions a freestanding kernel
 * must provide itself (the compiler emits calls to memcpy/memset/memmove/
 * memcmp even with -ffreestanding, for structure copies and the like).
 *
 * HOSTED BUILDS LEAVE THIS FILE OUT: they link the C library's versions.  A
 * build that compiles all of core/ anyway defines NK_HOSTED_LIBC, which
 * empties this file.  The host unit tests compile it with
 * NK_STRING_PREFIX=<prefix> so that its functions get distinct names and can
 * be compared against the C library's.
 *
 * All functions are NMI-safe: no state, bounded time (linear in n).
 */
#include <nmikit/format.h>

#include <stdint.h>

#ifndef NK_HOSTED_LIBC

#ifndef NK_STRING_PREFIX
#define NK_STRING_PREFIX
#endif
#define NK_STR_CAT2(a, b)	a##b
#define NK_STR_CAT(a, b)	NK_STR_CAT2(a, b)
#define NK_STRFN(name)		NK_STR_CAT(NK_STRING_PREFIX, name)

/*
 * The loops below must stay loops: GCC's loop-distribution pass would
 * otherwise recognise them as memset/memcpy and emit a call to the very
 * function being defined.
 */
#if defined(__clang__)
#define NK_NO_LIBCALL	__attribute__((no_builtin))
#elif defined(__GNUC__)
#define NK_NO_LIBCALL	__attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NK_NO_LIBCALL
#endif

/* A word type that may alias anything, for the 8-byte-at-a-time paths. */
typedef uint64_t __attribute__((may_alias)) nk_word_t;
#define WORD	sizeof(nk_word_t)

static int both_aligned(const void *a, const void *b)
{
	return (((uintptr_t)a | (uintptr_t)b) & (WORD - 1)) == 0;
}

void *NK_STRFN(memcpy)(void *dst, const void *src, size_t n);
void *NK_STRFN(memmove)(void *dst, const void *src, size_t n);
void *NK_STRFN(memset)(void *dst, int c, size_t n);
int NK_STRFN(memcmp)(const void *a, const void *b, size_t n);
void *NK_STRFN(memchr)(const void *s, int c, size_t n);
size_t NK_STRFN(strlen)(const char *s);
size_t NK_STRFN(strnlen)(const char *s, size_t maxlen);
int NK_STRFN(strcmp)(const char *a, const char *b);
int NK_STRFN(strncmp)(const char *a, const char *b, size_t n);
char *NK_STRFN(strchr)(const char *s, int c);
char *NK_STRFN(strrchr)(const char *s, int c);
char *NK_STRFN(strstr)(const char *hay, const char *needle);

NK_NO_LIBCALL void *NK_STRFN(memcpy)(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (both_aligned(d, s)) {
		for (; n >= WORD; n -= WORD, d += WORD, s += WORD)
			*(nk_word_t *)d = *(const nk_word_t *)s;
	}
	while (n--)
		*d++ = *s++;
	return dst;
}

NK_NO_LIBCALL void *NK_STRFN(memmove)(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d == s || n == 0)
		return dst;
	/* Forward copy is safe unless the destination starts inside the source. */
	if ((uintptr_t)d - (uintptr_t)s >= n)
		return NK_STRFN(memcpy)(dst, src, n);

	d += n;
	s += n;
	if (both_aligned(d, s)) {
		for (; n >= WORD; n -= WORD) {
			d -= WORD;
			s -= WORD;
			*(nk_word_t *)d = *(const nk_word_t *)s;
		}
	}
	while (n--)
		*--d = *--s;
	return dst;
}

NK_NO_LIBCALL void *NK_STRFN(memset)(void *dst, int c, size_t n)
{
	unsigned char *d = dst;
	unsigned char b = (unsigned char)c;

	while (n && ((uintptr_t)d & (WORD - 1))) {
		*d++ = b;
		n--;
	}
	if (n >= WORD) {
		nk_word_t w = b * (nk_word_t)0x0101010101010101ull;

		for (; n >= WORD; n -= WORD, d += WORD)
			*(nk_word_t *)d = w;
	}
	while (n--)
		*d++ = b;
	return dst;
}

NK_NO_LIBCALL int NK_STRFN(memcmp)(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;

	for (; n; n--, p++, q++) {
		if (*p != *q)
			return *p < *q ? -1 : 1;
	}
	return 0;
}

NK_NO_LIBCALL void *NK_STRFN(memchr)(const void *s, int c, size_t n)
{
	const unsigned char *p = s;

	for (; n; n--, p++) {
		if (*p == (unsigned char)c)
			return (void *)(uintptr_t)p;
	}
	return NULL;
}

NK_NO_LIBCALL size_t NK_STRFN(strlen)(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

NK_NO_LIBCALL size_t NK_STRFN(strnlen)(const char *s, size_t maxlen)
{
	size_t n = 0;

	while (n < maxlen && s[n])
		n++;
	return n;
}

NK_NO_LIBCALL int NK_STRFN(strcmp)(const char *a, const char *b)
{
	const unsigned char *p = (const unsigned char *)a;
	const unsigned char *q = (const unsigned char *)b;

	while (*p && *p == *q) {
		p++;
		q++;
	}
	return *p == *q ? 0 : (*p < *q ? -1 : 1);
}

NK_NO_LIBCALL int NK_STRFN(strncmp)(const char *a, const char *b, size_t n)
{
	const unsigned char *p = (const unsigned char *)a;
	const unsigned char *q = (const unsigned char *)b;

	for (; n; n--, p++, q++) {
		if (*p != *q)
			return *p < *q ? -1 : 1;
		if (!*p)
			break;
	}
	return 0;
}

NK_NO_LIBCALL char *NK_STRFN(strchr)(const char *s, int c)
{
	for (;; s++) {
		if (*s == (char)c)
			return (char *)(uintptr_t)s;
		if (!*s)
			return NULL;
	}
}

NK_NO_LIBCALL char *NK_STRFN(strrchr)(const char *s, int c)
{
	const char *last = NULL;

	for (;; s++) {
		if (*s == (char)c)
			last = s;
		if (!*s)
			return (char *)(uintptr_t)last;
	}
}

/* The first place `needle` occurs in `hay` (hay itself for ""), or NULL. */
NK_NO_LIBCALL char *NK_STRFN(strstr)(const char *hay, const char *needle)
{
	size_t n = NK_STRFN(strlen)(needle);

	for (;; hay++) {
		if (NK_STRFN(strncmp)(hay, needle, n) == 0)
			return (char *)(uintptr_t)hay;
		if (!*hay)
			return NULL;
	}
}

#else /* NK_HOSTED_LIBC */

/* ISO C does not allow an empty translation unit. */
typedef int nk_string_left_out_t;

#endif
