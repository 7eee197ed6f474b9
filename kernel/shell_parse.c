/*
 * shell_parse.c: the shell's pure parts: splitting a command line into
 * words, parsing numbers, and the line editor that turns console bytes into
 * lines (with echo).  No I/O and no global state: the host tests and the
 * fuzzer drive these functions directly.
 */
#include <kernel/shell.h>

#include <nmikit/format.h>

/* --- tokenizer ------------------------------------------------------------ */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

int shell_tokenize(char *line, char **argv, int max)
{
	char *r = line, *w = line;
	int argc = 0;

	/*
	 * Words are rewritten in place without their quotes and escapes; the
	 * write cursor never passes the read cursor, so no byte is read after
	 * being overwritten.
	 */
	for (;;) {
		char quote = 0, sep;

		while (is_blank(*r))
			r++;
		if (!*r)
			break;
		if (argc >= max)
			return SHELL_E_TOO_MANY;
		argv[argc++] = w;

		while (*r) {
			if (quote) {
				if (*r == quote) {
					quote = 0;
					r++;
				} else if (quote == '"' && r[0] == '\\' && r[1]) {
					r++;
					*w++ = *r++;
				} else {
					*w++ = *r++;
				}
				continue;
			}
			if (is_blank(*r))
				break;
			if (*r == '"' || *r == '\'') {
				quote = *r++;
			} else if (r[0] == '\\' && r[1]) {
				r++;
				*w++ = *r++;
			} else {
				*w++ = *r++;
			}
		}
		if (quote)
			return SHELL_E_QUOTE;
		/* Read the separator before the terminator may overwrite it. */
		sep = *r;
		*w++ = '\0';
		if (!sep)
			break;
		r++;
	}
	if (argc < max)
		argv[argc] = NULL;
	return argc;
}

const char *shell_strerror(int err)
{
	switch (err) {
	case SHELL_E_QUOTE:	return "unterminated quote";
	case SHELL_E_TOO_MANY:	return "too many arguments";
	default:		return "bad command line";
	}
}

/* --- numbers ----------------------------------------------------------------- */

bool shell_parse_u64(const char *s, uint64_t *out)
{
	unsigned base = 10;
	uint64_t v = 0;
	int digits = 0;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (; *s; s++, digits++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return false;
		if (v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	if (!digits)
		return false;
	*out = v;
	return true;
}

bool shell_parse_i64(const char *s, int64_t *out)
{
	bool neg = *s == '-';
	uint64_t mag;

	if (!shell_parse_u64(neg ? s + 1 : s, &mag))
		return false;
	if (mag > (uint64_t)INT64_MAX + (neg ? 1 : 0))
		return false;
	*out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	return true;
}

/* --- line editor ----------------------------------------------------------------- */

enum { ESC_NONE, ESC_START, ESC_CSI, ESC_SS3 };
/* Longest parameter run accepted inside one CSI sequence. */
#define ESC_MAX_LEN	16

#define CH_CTRL_C	0x03
#define CH_BS		0x08
#define CH_CTRL_U	0x15
#define CH_CTRL_W	0x17
#define CH_ESC		0x1b
#define CH_DEL		0x7f

void shell_editor_init(struct shell_editor *ed)
{
	memset(ed, 0, sizeof(*ed));
}

static void echo_str(nk_write_fn *echo, void *arg, const char *s)
{
	echo(arg, s, strlen(s));
}

static void erase_chars(struct shell_editor *ed, size_t n, nk_write_fn *echo, void *arg)
{
	while (n-- && ed->len) {
		ed->len--;
		echo_str(echo, arg, "\b \b");
	}
	ed->line[ed->len] = '\0';
}

static const char *history_entry(const struct shell_editor *ed, unsigned k)
{
	return ed->history[(ed->hist_next + SHELL_HISTORY - k) % SHELL_HISTORY];
}

static void replace_line(struct shell_editor *ed, const char *text,
			 nk_write_fn *echo, void *arg)
{
	erase_chars(ed, ed->len, echo, arg);
	ed->len = nk_strlcpy(ed->line, text, sizeof(ed->line));
	if (ed->len >= sizeof(ed->line))
		ed->len = sizeof(ed->line) - 1;
	echo(arg, ed->line, ed->len);
}

static void history_move(struct shell_editor *ed, bool older, nk_write_fn *echo, void *arg)
{
	if (older && ed->hist_pos < ed->hist_count)
		ed->hist_pos++;
	else if (!older && ed->hist_pos > 0)
		ed->hist_pos--;
	else
		return;
	replace_line(ed, ed->hist_pos ? history_entry(ed, ed->hist_pos) : "", echo, arg);
}

static void history_add(struct shell_editor *ed)
{
	if (ed->len == 0)
		return;
	if (ed->hist_count && strcmp(history_entry(ed, 1), ed->line) == 0)
		return;
	nk_strlcpy(ed->history[ed->hist_next], ed->line, SHELL_LINE_MAX);
	ed->hist_next = (ed->hist_next + 1) % SHELL_HISTORY;
	if (ed->hist_count < SHELL_HISTORY)
		ed->hist_count++;
}

/*
 * Escape sequences: ESC [ params final (CSI), ESC O final (SS3), or ESC and
 * one more character.  Returns true if `ch` was consumed by the sequence; a
 * control character ends a sequence early and is then processed normally.
 */
static bool feed_escape(struct shell_editor *ed, int ch, nk_write_fn *echo, void *arg)
{
	switch (ed->esc) {
	case ESC_START:
		if (ch == '[') {
			ed->esc = ESC_CSI;
			ed->esc_len = 0;
			return true;
		}
		if (ch == 'O') {
			ed->esc = ESC_SS3;
			return true;
		}
		if (ch == CH_ESC)
			return true;
		ed->esc = ESC_NONE;
		return ch >= 0x20;
	case ESC_CSI:
	case ESC_SS3:
		if (ch >= 0x40 && ch <= 0x7e) {
			/* Arrow keys carry no parameters: ESC [ A or ESC O A. */
			bool plain = ed->esc == ESC_SS3 || ed->esc_len == 0;

			ed->esc = ESC_NONE;
			if (plain && ch == 'A')
				history_move(ed, true, echo, arg);
			else if (plain && ch == 'B')
				history_move(ed, false, echo, arg);
			return true;
		}
		if (ed->esc == ESC_CSI && ch >= 0x20 && ch <= 0x3f) {
			if (++ed->esc_len > ESC_MAX_LEN)
				ed->esc = ESC_NONE;
			return true;
		}
		ed->esc = ESC_NONE;
		return ch >= 0x20 && ch != CH_DEL;
	}
	return false;
}

enum shell_event shell_editor_feed(struct shell_editor *ed, int ch,
				   nk_write_fn *echo, void *arg)
{
	bool after_cr = ed->last_cr;

	if (ch < 0)
		return SHELL_EV_NONE;
	ch &= 0xff;
	ed->last_cr = false;

	if (ed->esc != ESC_NONE && feed_escape(ed, ch, echo, arg))
		return SHELL_EV_NONE;

	switch (ch) {
	case '\n':
		if (after_cr)
			return SHELL_EV_NONE;	/* the LF of CR LF */
		/* fall through */
	case '\r':
		ed->last_cr = ch == '\r';
		echo_str(echo, arg, "\r\n");
		ed->line[ed->len] = '\0';
		history_add(ed);
		ed->hist_pos = 0;
		/* The line stays readable in ed->line until the next byte. */
		ed->len = 0;
		return SHELL_EV_LINE;
	case CH_CTRL_C:
		echo_str(echo, arg, "^C\r\n");
		ed->len = 0;
		ed->line[0] = '\0';
		ed->hist_pos = 0;
		return SHELL_EV_CANCEL;
	case CH_BS:
	case CH_DEL:
		erase_chars(ed, 1, echo, arg);
		return SHELL_EV_NONE;
	case CH_CTRL_U:
		erase_chars(ed, ed->len, echo, arg);
		return SHELL_EV_NONE;
	case CH_CTRL_W: {
		size_t n = 0, i = ed->len;

		while (i > 0 && is_blank(ed->line[i - 1])) {
			i--;
			n++;
		}
		while (i > 0 && !is_blank(ed->line[i - 1])) {
			i--;
			n++;
		}
		erase_chars(ed, n, echo, arg);
		return SHELL_EV_NONE;
	}
	case CH_ESC:
		ed->esc = ESC_START;
		return SHELL_EV_NONE;
	default:
		break;
	}

	if (ch < 0x20 || ch > 0x7e)
		return SHELL_EV_NONE;	/* other control and non-ASCII bytes */
	if (ed->len + 1 >= sizeof(ed->line)) {
		echo_str(echo, arg, "\a");
		return SHELL_EV_NONE;
	}
	ed->line[ed->len++] = (char)ch;
	ed->line[ed->len] = '\0';
	echo(arg, &ed->line[ed->len - 1], 1);
	return SHELL_EV_NONE;
}
