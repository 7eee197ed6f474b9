/*
 * shell.h: the serial-console shell (prompt "nmikit> ").
 *
 * Commands register themselves next to their code:
 *
 *	static int cmd_uptime(int argc, char **argv) { ... return 0; }
 *	SHELL_CMD(uptime, "", "time since boot", cmd_uptime);
 *
 * The function gets argc/argv (argv[0] is the command name, argv[1] a
 * subcommand if it has any) and returns 0, or SHELL_USAGE to have the shell
 * print "usage: NAME USAGE", or any other non-zero value for a failure it
 * has already explained.  Output goes through shell_printf().
 *
 * shell_parse.c (tokenizer, line editor, number parsing) is pure and tested
 * on the host; shell.c holds the loop and the built-in commands.
 */
#ifndef KERNEL_SHELL_H
#define KERNEL_SHELL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nmikit/compiler.h>
#include <nmikit/format.h>

#define SHELL_PROMPT		"nmikit> "
#define SHELL_LINE_MAX		160	/* bytes in a command line, NUL included */
#define SHELL_ARGV_MAX		16
#define SHELL_HISTORY		8

/* Return value of a command: print its usage line. */
#define SHELL_USAGE		(-2)

typedef int shell_cmd_fn(int argc, char **argv);

struct shell_cmd {
	const char *name;
	const char *usage;	/* arguments, e.g. "[N]"; "" for none */
	const char *help;	/* one line */
	shell_cmd_fn *fn;
};

#define SHELL_CMD(name_, usage_, help_, fn_)					\
	static const struct shell_cmd shell_cmd_##name_				\
	__attribute__((used, section("shell_cmds"), aligned(8))) = {		\
		.name = #name_, .usage = usage_, .help = help_, .fn = fn_,	\
	}

/* The shell thread's body: prompt, read, run, forever. */
void shell_main(void);

/* Run one command line as if typed; returns the command's result (or -1). */
int shell_execute(const char *line);

/*
 * Run commands separated by ';' (no quoting across a ';'), each shown after
 * the prompt as if typed.  shell_main() first runs the `shell_run=` boot
 * parameter this way: `shell_run="help params md;poweroff"`.
 */
void shell_run_script(const char *cmds);

/*
 * Feed one input character to the shell (what shell_main does with each
 * console_getc()).  The first call prints the prompt.
 */
void shell_feed(int ch);

/* Output of commands: straight to the console, in order with the log. */
int shell_printf(const char *fmt, ...) NK_PRINTF(1, 2);
void shell_write(const char *s, size_t len);
/* An nk_write_fn that writes to the shell's output (arg unused). */
void shell_write_fn(void *arg, const char *s, size_t len);

const struct shell_cmd *shell_find(const char *name);

/* --- pure parsing (shell_parse.c) --------------------------------------------- */

enum shell_parse_error {
	SHELL_E_QUOTE = -1,	/* unterminated quote */
	SHELL_E_TOO_MANY = -2,	/* more than max arguments */
};

/*
 * Split `line` in place into words: blanks separate words, "double" and
 * 'single' quotes group, a backslash escapes the next character (not inside
 * single quotes).  Returns argc, or a negative shell_parse_error.  argv[argc]
 * is set to NULL when room allows.
 */
int shell_tokenize(char *line, char **argv, int max);
const char *shell_strerror(int err);

/* Whole-string numbers: decimal or 0x hex, optional '-' for the signed one. */
bool shell_parse_u64(const char *s, uint64_t *out);
bool shell_parse_i64(const char *s, int64_t *out);

/* Line editor: printable characters, backspace/DEL, ^U (kill line), ^W
 * (kill word), ^C (cancel), Enter (CR, LF or CR LF), up/down arrows
 * through the last SHELL_HISTORY lines; other escape sequences are
 * swallowed whole and other control characters ignored. */
struct shell_editor {
	char line[SHELL_LINE_MAX];
	size_t len;
	char history[SHELL_HISTORY][SHELL_LINE_MAX];
	unsigned hist_count;	/* lines stored, up to SHELL_HISTORY */
	unsigned hist_next;	/* slot for the next line */
	unsigned hist_pos;	/* 0: editing a new line; k: k-th most recent */
	uint8_t esc;		/* escape-sequence parser state */
	uint8_t esc_len;
	bool last_cr;		/* swallow the LF of a CR LF pair */
};

enum shell_event {
	SHELL_EV_NONE,		/* keep reading */
	SHELL_EV_LINE,		/* a line is complete: ed->line */
	SHELL_EV_CANCEL,	/* ^C: line dropped */
};

void shell_editor_init(struct shell_editor *ed);
/* Process one input byte; echo goes to `echo`. */
enum shell_event shell_editor_feed(struct shell_editor *ed, int ch,
				   nk_write_fn *echo, void *arg);

#endif
