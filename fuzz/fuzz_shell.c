/*
 * fuzz_shell.c: libFuzzer harness for the shell's pure parsing
 * (kernel/shell_parse.c): the tokenizer, the number parsers and the line
 * editor.  The input is split at its first NUL: before it, a command line
 * for shell_tokenize() (whose words also go to the number parsers); after
 * it, bytes typed into the line editor.  Checks: argc within bounds and
 * every word inside the line's buffer and NUL-terminated there; a number
 * that parses prints back to the same value; the editor's line is
 * NUL-terminated at its length and within SHELL_LINE_MAX, its history
 * indexes within bounds.
 */
#include <kernel/shell.h>

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fz_fail(void)
{
	abort();
}

static void fz_echo(void *arg, const char *s, size_t len)
{
	(void)arg;
	/* Touch every byte, so ASan sees a bad pointer or length. */
	volatile char sink = 0;

	for (size_t i = 0; i < len; i++)
		sink ^= s[i];
	(void)sink;
}

static void fz_numbers(const char *word)
{
	uint64_t u;
	int64_t i;
	char back[32];

	if (shell_parse_u64(word, &u)) {
		snprintf(back, sizeof(back), "%" PRIu64, u);
		uint64_t again;
		if (!shell_parse_u64(back, &again) || again != u)
			fz_fail();
	}
	if (shell_parse_i64(word, &i)) {
		snprintf(back, sizeof(back), "%" PRId64, i);
		int64_t again;
		if (!shell_parse_i64(back, &again) || again != i)
			fz_fail();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t linelen = nul ? (size_t)(nul - data) : size;
	char *line = malloc(linelen + 1);
	char *argv[SHELL_ARGV_MAX + 1];
	static struct shell_editor ed;
	int argc;

	if (!line)
		return 0;
	memcpy(line, data, linelen);
	line[linelen] = '\0';
	argc = shell_tokenize(line, argv, SHELL_ARGV_MAX);
	if (argc > SHELL_ARGV_MAX)
		fz_fail();
	if (argc < 0 && !shell_strerror(argc))
		fz_fail();
	for (int i = 0; i < argc; i++) {
		if (argv[i] < line || argv[i] > line + linelen)
			fz_fail();
		if (!memchr(argv[i], '\0', (size_t)(line + linelen + 1 - argv[i])))
			fz_fail();
		fz_numbers(argv[i]);
	}
	free(line);

	if (nul) {
		shell_editor_init(&ed);
		for (const uint8_t *p = nul + 1; p < data + size; p++) {
			enum shell_event ev = shell_editor_feed(&ed, *p, fz_echo, NULL);

			/*
			 * After a line, ed.line keeps its text (with len 0) until
			 * the next byte that edits it; a swallowed LF or escape
			 * byte leaves it, so only a non-empty line is checked.
			 */
			if (ed.len >= SHELL_LINE_MAX || (ed.len && ed.line[ed.len] != '\0'))
				fz_fail();
			if (ed.hist_count > SHELL_HISTORY || ed.hist_next >= SHELL_HISTORY ||
			    ed.hist_pos > ed.hist_count)
				fz_fail();
			if (ev == SHELL_EV_LINE && !memchr(ed.line, '\0', SHELL_LINE_MAX))
				fz_fail();
		}
	}
	return 0;
}
