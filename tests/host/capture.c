/*
 * The host tests' console capture (see capture.h): a large static buffer
 * filled with one atomic add per write, so writers never wait for each other.
 */
#include "capture.h"

#include <stdatomic.h>
#include <string.h>

#define CAP_MAX		(8u << 20)

static char cap_buf[CAP_MAX];
static _Atomic size_t cap_len;
static _Atomic uint64_t cap_nlines;
static _Atomic int cap_in_write, cap_noverlaps;
static _Thread_local bool cap_this_thread_writing;
void (*_Atomic cap_hook)(const char *buf, size_t len);

void cap_write(const char *buf, size_t len)
{
	void (*hook)(const char *, size_t);
	size_t at;

	if (atomic_fetch_add(&cap_in_write, 1) != 0)
		atomic_fetch_add(&cap_noverlaps, 1);
	cap_this_thread_writing = true;
	/* Bytes past the end are dropped, but still counted in the length. */
	at = atomic_fetch_add(&cap_len, len);
	if (at + len < CAP_MAX)
		memcpy(cap_buf + at, buf, len);
	for (size_t i = 0; i < len; i++)
		if (buf[i] == '\n')
			atomic_fetch_add(&cap_nlines, 1);
	hook = atomic_load(&cap_hook);
	if (hook)
		hook(buf, len);
	cap_this_thread_writing = false;
	atomic_fetch_sub(&cap_in_write, 1);
}

void cap_sink(void *arg, const char *s, size_t len)
{
	(void)arg;
	cap_write(s, len);
}

void cap_reset(void)
{
	atomic_store(&cap_len, 0);
	atomic_store(&cap_nlines, 0);
	cap_buf[0] = '\0';
}

const char *cap_text(void)
{
	size_t n = atomic_load(&cap_len);

	cap_buf[n < CAP_MAX ? n : CAP_MAX - 1] = '\0';
	return cap_buf;
}

size_t cap_length(void)
{
	return atomic_load(&cap_len);
}

uint64_t cap_lines(void)
{
	return atomic_load(&cap_nlines);
}

long cap_find(const char *needle)
{
	const char *p = strstr(cap_text(), needle);

	return p ? p - cap_buf : -1;
}

bool cap_has(const char *needle)
{
	return cap_find(needle) >= 0;
}

unsigned cap_count(const char *needle)
{
	const char *p = cap_text();
	unsigned n = 0;

	while ((p = strstr(p, needle))) {
		n++;
		p += strlen(needle);
	}
	return n;
}

int cap_overlaps(void)
{
	return atomic_load(&cap_noverlaps);
}

bool cap_writing(void)
{
	return cap_this_thread_writing;
}
