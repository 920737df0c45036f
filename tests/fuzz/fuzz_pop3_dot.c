/*
 * fuzz_pop3_dot.c: the POP3 multi-line reader (pop3_dot_feed() in
 * src/pop3.h), which un-stuffs a RETR or LIST body as it streams in.
 *
 * The first byte seeds the chunk sizes.
 *
 * Promises checked: the result does not depend on how the input is cut
 * into chunks (same bytes out, same end found at the same offset);
 * output never exceeds the input consumed (one call may write one byte
 * more than it was given: a CR held back); the end is found exactly
 * after a line holding a single dot.
 */
#include "config.h"

#include "pop3.h"

#include "fuzz.h"

/* Feed data in chunks; returns output length, sets *done and *end. */
static size_t
feed(const uint8_t *data, size_t size, unsigned seed, char *out, bool *done,
    size_t *end)
{
	struct pop3_dot d;
	size_t i = 0, o = 0, chunk, used, w;
	char *tmp;

	pop3_dot_init(&d);
	*done = false;
	while (i < size) {
		chunk = seed ? 1 + (seed * (i + 3)) % 17 : size;
		if (chunk > size - i)
			chunk = size - i;
		/* Exactly chunk + 1 bytes: a CR held back from the last
		   chunk may come out with this one (pop3.c's caller gives
		   POP3_CHUNK + 2), and ASan sees anything more. */
		if ((tmp = malloc(chunk + 1)) == NULL)
			abort();
		used = (size_t)-1;
		w = pop3_dot_feed(&d, (const char *)data + i, chunk, tmp,
		    done, &used);
		FZ_CHECK(used <= chunk && used > 0);
		FZ_CHECK(w <= used + 1);
		memcpy(out + o, tmp, w);
		free(tmp);
		o += w;
		i += used;
		if (*done)
			break;
		FZ_CHECK(used == chunk);
	}
	*end = i;
	return o;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *a, *b;
	size_t na, nb, ea, eb;
	bool da, db;
	unsigned seed;

	seed = fz_byte(&data, &size) | 1;
	if ((a = malloc(size + 2)) == NULL || (b = malloc(size + 2)) == NULL)
		abort();
	na = feed(data, size, 0, a, &da, &ea);
	nb = feed(data, size, seed, b, &db, &eb);
	FZ_CHECK(da == db && ea == eb && na == nb);
	FZ_CHECK(na == 0 || memcmp(a, b, na) == 0);
	FZ_CHECK(na <= ea);
	if (da) {
		/* The end: ".\n" or ".\r\n" at the start of a line. */
		FZ_CHECK((ea >= 2 && data[ea - 1] == '\n' &&
		    data[ea - 2] == '.' && (ea == 2 || data[ea - 3] == '\n')) ||
		    (ea >= 3 && data[ea - 1] == '\n' && data[ea - 2] == '\r' &&
		    data[ea - 3] == '.' && (ea == 3 || data[ea - 4] == '\n')));
	} else
		FZ_CHECK(ea == size);
	free(a);
	free(b);
	return 0;
}
