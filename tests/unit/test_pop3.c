/* Unit tests: POP3 multi-line un-stuffing, at every chunk boundary. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "pop3.h"
#include "tap.h"

/* Feed in in chunks of size k; return the body and the bytes used. */
static size_t
unstuff(const char *in, size_t n, size_t k, char *out, bool *done,
    size_t *consumed)
{
	struct pop3_dot d;
	size_t i, o = 0, used, c;

	pop3_dot_init(&d);
	*done = false;
	*consumed = 0;
	for (i = 0; i < n && !*done; i += c) {
		c = n - i < k ? n - i : k;
		o += pop3_dot_feed(&d, in + i, c, out + o, done, &used);
		*consumed += used;
	}
	return o;
}

int
main(void)
{
	char out[256];
	size_t o, used, k;
	bool done, all = true;

	o = unstuff("a\r\n.\r\n", 6, 100, out, &done, &used);
	ok(done && o == 3 && memcmp(out, "a\r\n", 3) == 0 && used == 6,
	    "simple end");
	o = unstuff(".\r\n", 3, 1, out, &done, &used);
	ok(done && o == 0, "empty message");
	o = unstuff("x\r\n.\r\nEXTRA", 11, 100, out, &done, &used);
	ok(done && used == 6, "bytes after the end are not consumed");

	/* The stuffed body without the dot line in its middle. */
	{
		static const char w2[] =
		    "From: a\r\n\r\n..leading dot\r\nnot end\r\nbin\0ary\r\n"
		    "..\r\n.x\r\n\r\n.\r\n";
		static const char b2[] =
		    "From: a\r\n\r\n.leading dot\r\nnot end\r\nbin\0ary\r\n"
		    ".\r\nx\r\n\r\n";
		size_t n2 = sizeof(w2) - 1;
		for (k = 1; k <= n2; k++) {
			o = unstuff(w2, n2, k, out, &done, &used);
			if (!done || o != sizeof(b2) - 1 ||
			    memcmp(out, b2, o) != 0 || used != n2)
				all = false;
		}
		ok(all, "every chunk size gives the same body (dots, NUL)");
	}
	o = unstuff("a\r\n.\rb\r\n.\r\n", 11, 3, out, &done, &used);
	ok(done && o == 7 && memcmp(out, "a\r\n\rb\r\n", 7) == 0,
	    "dot CR without LF is not the end");
	o = unstuff("a\n.\n", 4, 2, out, &done, &used);
	ok(done && o == 2, "bare LF terminator tolerated");
	o = unstuff("no end\r\n", 8, 3, out, &done, &used);
	ok(!done && o == 8, "unfinished stays open");
	return tap_done();
}
