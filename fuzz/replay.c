/*
 * replay.c: a main() for the fuzz harnesses without libFuzzer.  Each
 * argument is a file or a directory of files; every file is fed once to
 * LLVMFuzzerTestOneInput() in a heap buffer of exactly its size (so
 * AddressSanitizer catches a read one byte past the end).  Prints one TAP
 * line for the whole run; a crash is the sanitizer's report and a non-zero
 * exit.  `make test` replays the committed corpus this way.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long replayed;

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long len;

	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(len > 0 ? (size_t)len : 1);
	if (!buf || (len > 0 && fread(buf, 1, (size_t)len, f) != (size_t)len)) {
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	free(buf);
	replayed++;
	return 0;
}

static int replay(const char *path)
{
	struct stat st;
	struct dirent **names;
	int n, rc = 0;

	if (stat(path, &st))
		return -1;
	if (!S_ISDIR(st.st_mode))
		return replay_file(path);
	n = scandir(path, &names, NULL, alphasort);
	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		char sub[4096];

		if (names[i]->d_name[0] != '.') {
			snprintf(sub, sizeof(sub), "%s/%s", path, names[i]->d_name);
			if (replay(sub))
				rc = -1;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "fuzz";
	int rc = 0;

	for (int i = 2; i < argc; i++)
		if (replay(argv[i])) {
			fprintf(stdout, "# cannot read %s\n", argv[i]);
			rc = 1;
		}
	printf("%sok 1 - %s: %lu corpus inputs replayed under ASan+UBSan without a finding\n",
	       rc || !replayed ? "not " : "", name, replayed);
	return rc || !replayed;
}
