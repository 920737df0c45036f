/*
 * fuzz_smtp_dot.c: the DATA stream (smtp_dot_stuff(), smtp_dot_end())
 * and xtext (smtp_xtext()) in src/smtp.h.
 *
 * The first byte seeds the chunk sizes, so the fuzzer tries every split
 * of CR LF and of a leading dot across chunk boundaries.
 *
 * Promises checked: the output is lines ended by CRLF with no bare CR or
 * LF; the only line that is a single "." is the last; removing the
 * stuffing gives the input with its line ends made CRLF; the writes stay
 * within 2n + 2 and 8 bytes.  xtext: the output is in 33..126 and
 * decodes to the input, and fails only when the buffer is too small.
 */
#include "config.h"

#include "smtp.h"

#include "fuzz.h"

/* The input with every CR LF, bare CR and bare LF made CR LF. */
static size_t
canonical(const uint8_t *in, size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (in[i] == '\r' || in[i] == '\n') {
			if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
		} else
			out[o++] = (char)in[i];
	}
	if (o > 0 && !(o >= 2 && out[o - 2] == '\r' && out[o - 1] == '\n')) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	return o;
}

static void
check_xtext(const uint8_t *data, size_t size, size_t outsz)
{
	char *s, *out;
	size_t i, o, need = 1;

	s = fz_strndup(data, size);
	for (i = 0; s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];

		need += (c >= 33 && c <= 126 && c != '+' && c != '=') ? 1 : 3;
	}
	out = malloc(outsz ? outsz : 1);
	if (out == NULL)
		abort();
	if (!smtp_xtext(s, out, outsz)) {
		FZ_CHECK(need > outsz);
	} else {
		FZ_CHECK(need <= outsz);
		for (i = 0, o = 0; out[o] != '\0'; i++) {
			unsigned char c = (unsigned char)out[o];

			FZ_CHECK(c >= 33 && c <= 126 && c != '=');
			if (c == '+') {
				unsigned v;

				FZ_CHECK(sscanf(out + o + 1, "%2X", &v) == 1);
				FZ_CHECK((unsigned char)s[i] == v);
				o += 3;
			} else {
				FZ_CHECK(s[i] == out[o]);
				o++;
			}
		}
		FZ_CHECK(s[i] == '\0');
	}
	free(out);
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_dot d;
	char *out, *want, *un;
	size_t o = 0, i, chunk, w, u, start;
	unsigned seed;

	seed = fz_byte(&data, &size) | 1;
	if ((out = malloc(2 * size + 2 + 8)) == NULL ||
	    (want = malloc(2 * size + 2)) == NULL ||
	    (un = malloc(2 * size + 2 + 8)) == NULL)
		abort();

	smtp_dot_init(&d);
	for (i = 0; i < size; i += chunk) {
		chunk = 1 + (seed * (i + 7)) % 13;
		if (chunk > size - i)
			chunk = size - i;
		w = smtp_dot_stuff(&d, (const char *)data + i, chunk, out + o);
		FZ_CHECK(w <= 2 * chunk + 2);
		o += w;
	}
	w = smtp_dot_end(&d, out + o);
	FZ_CHECK(w <= 8);
	o += w;

	/* Lines, CRLF-terminated, the last being "." alone. */
	FZ_CHECK(o >= 3 && memcmp(out + o - 3, ".\r\n", 3) == 0);
	FZ_CHECK(o == 3 || (out[o - 5] == '\r' && out[o - 4] == '\n'));
	u = 0;
	for (start = 0, i = 0; i < o; i++) {
		if (out[i] == '\r') {
			FZ_CHECK(i + 1 < o && out[i + 1] == '\n');
			continue;
		}
		if (out[i] != '\n')
			continue;
		FZ_CHECK(i > 0 && out[i - 1] == '\r');
		/* out[start..i] is one line with its CRLF. */
		if (i + 1 == o)
			break;		/* the final dot */
		FZ_CHECK(!(i - start == 2 && out[start] == '.'));
		if (out[start] == '.') {
			FZ_CHECK(i - start >= 3 && out[start + 1] == '.');
			start++;
		}
		memcpy(un + u, out + start, i + 1 - start);
		u += i + 1 - start;
		start = i + 1;
	}
	w = canonical(data, size, want);
	FZ_CHECK(u == w && (w == 0 || memcmp(un, want, w) == 0));

	check_xtext(data, size, seed % 64);
	free(out);
	free(want);
	free(un);
	return 0;
}
