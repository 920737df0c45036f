/* Unit tests: the IMAP response parser's pieces (no I/O). */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "imap.h"
#include "tap.h"

/* Lex a whole line into a compact description: A(x) Q(x) ( ) L(n) END/BAD. */
static const char *
lexall(const char *line)
{
	static char out[1024];
	struct imap_lex lx;
	enum imap_tk tk;
	const char *s;
	size_t n, o = 0;
	uint64_t lit = 0;

	out[0] = '\0';
	imap_lex_init(&lx, line, strlen(line));
	for (;;) {
		tk = imap_lex_next(&lx, &s, &n, &lit);
		switch (tk) {
		case IMAP_TK_END:
			o += (size_t)snprintf(out + o, sizeof(out) - o, "END");
			return out;
		case IMAP_TK_BAD:
			o += (size_t)snprintf(out + o, sizeof(out) - o, "BAD");
			return out;
		case IMAP_TK_ATOM:
			o += (size_t)snprintf(out + o, sizeof(out) - o,
			    "A(%.*s) ", (int)n, s);
			break;
		case IMAP_TK_QUOTED:
			o += (size_t)snprintf(out + o, sizeof(out) - o,
			    "Q(%.*s) ", (int)n, s);
			break;
		case IMAP_TK_LP:
			o += (size_t)snprintf(out + o, sizeof(out) - o, "( ");
			break;
		case IMAP_TK_RP:
			o += (size_t)snprintf(out + o, sizeof(out) - o, ") ");
			break;
		case IMAP_TK_LIT:
			o += (size_t)snprintf(out + o, sizeof(out) - o,
			    "L(%llu) ", (unsigned long long)lit);
			break;
		}
	}
}

int
main(void)
{
	uint64_t lit;
	uint32_t v;
	char buf[256];
	uint32_t uids[] = { 9, 1, 2, 3, 7, 10, 4294967295u };

	is_str(lexall("(UID 5 BODY[] {12}"), "( A(UID) A(5) A(BODY[]) L(12) END",
	    "FETCH line with a literal");
	is_str(lexall("(FLAGS (\\Seen \\Answered) UID 7)"),
	    "( A(FLAGS) ( A(\\Seen) A(\\Answered) ) A(UID) A(7) ) END",
	    "nested list and flags");
	is_str(lexall("(BODY[HEADER.FIELDS (FROM TO)] {40}"),
	    "( A(BODY[HEADER.FIELDS (FROM TO)]) L(40) END",
	    "section with a list inside brackets is one token");
	is_str(lexall("(BODY[]<0> NIL)"), "( A(BODY[]<0>) A(NIL) ) END",
	    "partial and NIL");
	is_str(lexall("\"a \\\"q\\\" b\" x"), "Q(a \\\"q\\\" b) A(x) END",
	    "quoted with escapes");
	is_str(lexall("\"unterminated"), "BAD", "unterminated quoted");
	is_str(lexall("\"bad \\x escape\""), "BAD", "bad escape");
	is_str(lexall("{5} trailing"), "BAD", "literal not at the end");
	is_str(lexall("{}"), "BAD", "empty literal size");
	is_str(lexall("{12345678901234567890}"), "BAD", "20-digit literal");
	is_str(lexall("{4294967296}"), "L(4294967296) END",
	    "4 GiB literal parsed as a number, nothing allocated");
	is_str(lexall("{7+}"), "L(7) END", "non-synchronizing literal");
	is_str(lexall("BODY[unclosed"), "BAD", "unclosed bracket");

	is_int(imap_literal("* 1 FETCH (BODY[] {42}", 22, &lit), 1,
	    "literal at end");
	is_int((long long)lit, 42, "its size");
	is_int(imap_literal("A1 OK done", 10, &lit), 0, "no literal");
	is_int(imap_literal("x {99999999999999999999}", 24, &lit), -1,
	    "absurd literal refused");
	is_int(imap_literal("x {4294967296+}", 15, &lit), 1, "4 GiB {n+}");
	ok(lit == 4294967296ull, "4 GiB size kept exactly");
	is_int(imap_literal("x {}", 4, &lit), 0, "{} is not a literal");

	ok(imap_u32("4294967295", 10, &v) && v == 4294967295u, "u32 max");
	ok(!imap_u32("4294967296", 10, &v), "u32 overflow refused");
	ok(!imap_u32("", 0, &v) && !imap_u32("12a", 3, &v), "u32 junk");

	ok(imap_uidset(uids, 7, buf, sizeof(buf)), "uid set built");
	is_str(buf, "1:3,7,9:10,4294967295", "uid set compressed and sorted");
	ok(!imap_uidset(uids, 7, buf, 8), "uid set overflow detected");

	ok(imap_quote("[Gmail]/All Mail", buf, sizeof(buf)), "quote");
	is_str(buf, "\"[Gmail]/All Mail\"", "quoted folder");
	ok(imap_quote("a\"b\\c", buf, sizeof(buf)), "quote escapes");
	is_str(buf, "\"a\\\"b\\\\c\"", "escaped quote and backslash");
	ok(!imap_quote("a\r\nb", buf, sizeof(buf)), "CRLF refused");
	return tap_done();
}
