/*
 * The console of the host tests: every byte a test's os_console_write()
 * receives is appended to one capture buffer that tests search.  Appending
 * is lock-free (a signal handler standing in for an NMI may write while the
 * thread it interrupted is writing), and entering it while another write is
 * in progress is counted, so a test can assert that the code under test
 * never prints from two places at once.
 */
#ifndef TESTS_HOST_CAPTURE_H
#define TESTS_HOST_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Append to the capture (the body of a test os_console_write()). */
void cap_write(const char *buf, size_t len);

/*
 * An nk_write_fn that appends to the capture, for the tables the code under
 * test prints through a writer (arg unused).
 */
void cap_sink(void *arg, const char *s, size_t len);

/* Forget everything captured (the overlap count stays). */
void cap_reset(void);
/* The capture as one string. */
const char *cap_text(void);
size_t cap_length(void);
/* Newlines captured since the last cap_reset(). */
uint64_t cap_lines(void);
/* Where `needle` starts in the capture, or -1. */
long cap_find(const char *needle);
bool cap_has(const char *needle);
unsigned cap_count(const char *needle);
/* Writes that began while another was in progress. */
int cap_overlaps(void);
/* Whether the calling thread is inside cap_write() (its hook included). */
bool cap_writing(void);

/* Called inside each write, after the bytes are captured (NULL: none). */
extern void (*_Atomic cap_hook)(const char *buf, size_t len);

#endif
