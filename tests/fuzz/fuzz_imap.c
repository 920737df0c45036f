/*
 * fuzz_imap.c: the IMAP client's pure pieces (src/imap.h): the response
 * lexer (imap_lex_next()), the literal announcement parser
 * (imap_literal()), numbers (imap_u32()), and the two writers,
 * imap_quote() and imap_uidset(), checked by reading their output back.
 *
 * Each input line is one response line.  The input's bytes, four at a
 * time, also make a UID list.
 *
 * Promises checked: the lexer always advances and ends, its tokens lie
 * within the line, and a literal token agrees with imap_literal(); a
 * quoted folder name lexes back to the name; a UID set names exactly
 * the UIDs it was made from.
 */
#include "config.h"

#include <inttypes.h>

#include "imap.h"

#include "fuzz.h"

#define UIDS_MAX	64

static void
lex_line(const char *line, size_t len)
{
	struct imap_lex lx;
	enum imap_tk tk;
	const char *s;
	size_t n, steps = 0;
	uint64_t lit = 0, lit2 = 0;
	uint32_t v;
	int r;

	r = imap_literal(line, len, &lit2);
	FZ_CHECK(r >= -1 && r <= 1);
	imap_lex_init(&lx, line, len);
	for (;;) {
		s = NULL;
		n = 0;
		tk = imap_lex_next(&lx, &s, &n, &lit);
		FZ_CHECK(tk >= IMAP_TK_END && tk <= IMAP_TK_BAD);
		FZ_CHECK(++steps <= len + 1);
		if (tk == IMAP_TK_END || tk == IMAP_TK_BAD)
			break;
		if (tk == IMAP_TK_ATOM || tk == IMAP_TK_QUOTED) {
			FZ_CHECK(s != NULL && s >= line && s + n <= line + len);
			if (tk == IMAP_TK_ATOM && imap_u32(s, n, &v))
				FZ_CHECK(n >= 1 && n <= 10);
		}
		if (tk == IMAP_TK_LIT)
			FZ_CHECK(r == 1 && lit == lit2);
	}
}

static void
quote(const char *line, size_t len)
{
	struct imap_lex lx;
	char *name, out[512], *un;
	const char *s;
	size_t n, i, u;
	uint64_t lit;

	name = fz_strndup(line, len);
	if (imap_quote(name, out, sizeof(out))) {
		FZ_CHECK(fz_terminated(out, sizeof(out)));
		imap_lex_init(&lx, out, strlen(out));
		FZ_CHECK(imap_lex_next(&lx, &s, &n, &lit) == IMAP_TK_QUOTED);
		/* Escapes are kept in the token: undo them. */
		if ((un = malloc(n + 1)) == NULL)
			abort();
		for (i = 0, u = 0; i < n; i++) {
			if (s[i] == '\\' && i + 1 < n)
				i++;
			un[u++] = s[i];
		}
		un[u] = '\0';
		FZ_CHECK(strcmp(un, name) == 0);
		FZ_CHECK(imap_lex_next(&lx, &s, &n, &lit) == IMAP_TK_END);
		free(un);
	}
	free(name);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void
uidset(const uint8_t *data, size_t size)
{
	uint32_t uids[UIDS_MAX], sorted[UIDS_MAX], lo[UIDS_MAX], hi[UIDS_MAX], t;
	char out[UIDS_MAX * 24], *p, *end;
	size_t n = 0, i, r, nr = 0;
	unsigned long long a, b;
	bool in;

	for (i = 0; i + 4 <= size && n < UIDS_MAX; i += 4) {
		uint32_t v = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 |
		    (uint32_t)data[i + 2] << 16 | (uint32_t)data[i + 3] << 24;

		if (v != 0)
			uids[n++] = v;
	}
	if (n == 0 || !imap_uidset(uids, n, out, sizeof(out)))
		return;
	memcpy(sorted, uids, n * sizeof(*uids));
	qsort(sorted, n, sizeof(*sorted), cmp_u32);
	/* Parse "a:b,c" back; every range must hold only listed UIDs. */
	for (p = out; *p != '\0'; p = end + (*end == ',')) {
		a = strtoull(p, &end, 10);
		FZ_CHECK(end != p && a >= 1 && a <= UINT32_MAX);
		b = a;
		if (*end == ':') {
			p = end + 1;
			b = strtoull(p, &end, 10);
			FZ_CHECK(end != p && b >= 1 && b <= UINT32_MAX);
		}
		FZ_CHECK(*end == ',' || *end == '\0');
		FZ_CHECK(nr < n);	/* never more ranges than UIDs */
		lo[nr] = (uint32_t)(a < b ? a : b);
		hi[nr] = (uint32_t)(a < b ? b : a);
		FZ_CHECK(hi[nr] - lo[nr] < n);
		for (t = lo[nr]; ; t++) {
			FZ_CHECK(bsearch(&t, sorted, n, sizeof(*sorted),
			    cmp_u32) != NULL);
			if (t == hi[nr])
				break;
		}
		nr++;
	}
	/* And every UID is in some range. */
	for (i = 0; i < n; i++) {
		for (r = 0, in = false; r < nr && !in; r++)
			in = uids[i] >= lo[r] && uids[i] <= hi[r];
		FZ_CHECK(in);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data;
	size_t left = size, len;
	const char *line;
	char *copy;

	uidset(data, size);
	while (fz_line(&p, &left, &line, &len)) {
		if (len > 0 && line[len - 1] == '\r')
			len--;
		/* Exactly len bytes, no NUL: the lexer takes (s, n). */
		if ((copy = malloc(len ? len : 1)) == NULL)
			abort();
		memcpy(copy, line, len);
		lex_line(copy, len);
		free(copy);
		quote(line, len);
	}
	return 0;
}
