/*
 * fuzz.h: what every fuzz target defines, and small helpers they share.
 *
 * A target is tests/fuzz/fuzz_NAME.c defining LLVMFuzzerTestOneInput().
 * The same file is linked two ways: with libFuzzer by clang for `make
 * fuzz` (tests/fuzz/run.sh), and with tests/fuzz/replay.c by the normal
 * build, which replays the seed corpus and the regression inputs in
 * `make check`.  So a target must build warning-free under gcc too, must
 * not keep state from one input to the next that changes the outcome,
 * and must free everything it allocates (LeakSanitizer and valgrind see
 * every input).
 *
 * A target checks the promises its module's header makes, not just the
 * absence of crashes: a broken promise calls FZ_CHECK(), which aborts
 * and so counts as a crash to libFuzzer and as a failure to the replay.
 */
#ifndef BEARMAIL_FUZZ_H
#define BEARMAIL_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: broken promise: %s\n",		\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

/*
 * Take one byte off the front of the input (0 when it is empty): targets
 * use the first bytes to choose flags and limits, so that the fuzzer
 * explores them along with the text.
 */
static inline unsigned
fz_byte(const uint8_t **data, size_t *size)
{
	unsigned c;

	if (*size == 0)
		return 0;
	c = **data;
	(*data)++;
	(*size)--;
	return c;
}

/*
 * The next '\n'-terminated piece of *data (the '\n' not included, a
 * trailing '\r' kept); false when nothing is left.  The piece points
 * into the input and is NOT NUL-terminated: copy it with fz_strndup()
 * for functions that want a string.
 */
static inline bool
fz_line(const uint8_t **data, size_t *size, const char **line, size_t *len)
{
	const uint8_t *nl;

	if (*size == 0)
		return false;
	*line = (const char *)*data;
	if ((nl = memchr(*data, '\n', *size)) == NULL) {
		*len = *size;
		*data += *size;
		*size = 0;
	} else {
		*len = (size_t)(nl - *data);
		*size -= *len + 1;
		*data = nl + 1;
	}
	return true;
}

/* A NUL-terminated copy of p[0..n) in exactly n + 1 bytes (for ASan). */
static inline char *
fz_strndup(const void *p, size_t n)
{
	char *s;

	if ((s = malloc(n + 1)) == NULL)
		abort();
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* Whether s[0..n) is NUL-terminated within its n bytes. */
static inline bool
fz_terminated(const char *s, size_t n)
{
	return memchr(s, '\0', n) != NULL;
}

/* Whether the string holds a byte below 0x20 or DEL (TAB allowed if tab). */
static inline bool
fz_has_ctl(const char *s, bool tab)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c < 0x20 && !(tab && c == '\t')) || c == 0x7f)
			return true;
	}
	return false;
}

#endif
