/*
 * Unit tests: the SMTP client's pure parts (reply parsing, enhanced
 * codes, EHLO capabilities, xtext, dot-stuffing, status mapping).
 */
#include "config.h"

#include <stdlib.h>

#include "smtp.h"
#include "tap.h"

/* Feed lines (NULL-terminated list) into r; the last status. */
static enum status
feed(struct smtp_reply *r, const char *const *lines, struct errinfo *ei)
{
	enum status st = ST_OK;

	smtp_reply_init(r);
	st_clear(ei);
	for (; *lines != NULL && st == ST_OK; lines++)
		st = smtp_reply_feed(r, *lines, strlen(*lines), NULL, ei);
	return st;
}

static void
test_replies(void)
{
	struct smtp_reply r;
	struct errinfo ei;
	const char *text;
	char big[64];
	enum status st;
	int i;

	{
		const char *l[] = { "250 2.1.0 OK sender", NULL };
		is_int(feed(&r, l, &ei), ST_OK, "one-line reply parses");
		is_int(r.code, 250, "code");
		is_str(r.enh, "2.1.0", "enhanced code");
		is_str(r.text, "OK sender", "text without the enhanced code");
		ok(r.done && r.nlines == 1, "done after the last line");
	}
	{
		const char *l[] = {
			"535-5.7.8 Username and Password not accepted.",
			"535 5.7.8 https://support.google.com/mail/?p=Bad x",
			NULL };
		is_int(feed(&r, l, &ei), ST_OK, "multi-line reply parses");
		is_int(r.code, 535, "multi-line code");
		is_str(r.enh, "5.7.8", "multi-line enhanced code");
		is_str(r.text, "Username and Password not accepted. "
		    "https://support.google.com/mail/?p=Bad x",
		    "lines joined, repeated enhanced code dropped");
		is_int(r.nlines, 2, "two lines");
	}
	{
		const char *l[] = { "250", NULL };
		is_int(feed(&r, l, &ei), ST_OK, "bare code is a last line");
		ok(r.done && r.text[0] == '\0' && r.enh[0] == '\0',
		    "bare code: no text");
	}
	{
		const char *l[] = { "250-", "250 ", NULL };
		is_int(feed(&r, l, &ei), ST_OK, "empty texts allowed");
		ok(r.done, "done");
	}
	{
		const char *l[] = { "250-first", NULL };
		is_int(feed(&r, l, &ei), ST_OK, "continuation line");
		ok(!r.done, "not done after a continuation");
	}
	{
		const char *l[] = { "354 Go ahead", NULL };
		feed(&r, l, &ei);
		is_str(r.enh, "", "3xx has no enhanced code");
	}
	{
		const char *l[] = { "250 5.1.0 mismatched class", NULL };
		feed(&r, l, &ei);
		is_str(r.enh, "", "enhanced class must match the code");
		is_str(r.text, "5.1.0 mismatched class", "text kept whole");
	}
	{
		const char *l[] = { "250 bad\x01" "ctl", NULL };
		feed(&r, l, &ei);
		is_str(r.text, "bad?ctl", "control bytes sanitised");
	}

	/* Malformed replies are ST_PROTO. */
	{
		const char *l[] = { "250-a", "251 b", NULL };
		is_int(feed(&r, l, &ei), ST_PROTO, "mismatched codes");
		ok(strstr(ei.msg, "different codes") != NULL, "says why: %s",
		    ei.msg);
	}
	{
		const char *l[] = { "25", NULL };
		is_int(feed(&r, l, &ei), ST_PROTO, "too short");
	}
	{
		const char *l[] = { "2x0 hello", NULL };
		is_int(feed(&r, l, &ei), ST_PROTO, "non-digit code");
	}
	{
		const char *l[] = { "600 hello", NULL };
		is_int(feed(&r, l, &ei), ST_PROTO, "code out of range");
	}
	{
		const char *l[] = { "160 hello", NULL };
		is_int(feed(&r, l, &ei), ST_PROTO, "1xx is not SMTP");
	}
	{
		const char *l[] = { "260 hello", NULL };
		is_int(feed(&r, l, &ei), ST_PROTO, "second digit > 5");
	}
	{
		const char *l[] = { "250xhello", NULL };
		is_int(feed(&r, l, &ei), ST_PROTO, "bad separator");
	}
	{
		const char *l[] = { "HTTP/1.1 400 Bad", NULL };
		is_int(feed(&r, l, &ei), ST_PROTO, "garbage");
	}
	{
		const char *l[] = { "250 done", "250 again", NULL };
		is_int(feed(&r, l, &ei), ST_PROTO, "line after the last");
	}
	smtp_reply_init(&r);
	st_clear(&ei);
	is_int(smtp_reply_feed(&r, "250 a\0b", 7, NULL, &ei), ST_PROTO,
	    "NUL in a reply line");

	/* Bounded number of lines. */
	smtp_reply_init(&r);
	st_clear(&ei);
	st = ST_OK;
	for (i = 0; i < SMTP_REPLY_LINES_MAX + 5 && st == ST_OK; i++)
		st = smtp_reply_feed(&r, "250-x", 5, NULL, &ei);
	is_int(st, ST_PROTO, "more than %d lines refused",
	    SMTP_REPLY_LINES_MAX);
	is_int(i, SMTP_REPLY_LINES_MAX + 1, "refused at the first extra line");

	/* Text is bounded, never overflows. */
	smtp_reply_init(&r);
	st_clear(&ei);
	memset(big, 'a', sizeof(big));
	memcpy(big, "250-", 4);
	for (i = 0; i < 50; i++)
		smtp_reply_feed(&r, big, sizeof(big), NULL, &ei);
	is_int(strlen(r.text), SMTP_TEXT_MAX - 1, "text truncated to the max");

	smtp_reply_init(&r);
	smtp_reply_feed(&r, "334 dGVzdA==", 12, &text, NULL);
	is_str(text, "dGVzdA==", "text_out points at the raw text");
}

static void
test_enhanced(void)
{
	char enh[SMTP_ENH_MAX];
	size_t n;

	n = smtp_enhanced_parse("5.7.8 no", 535, enh);
	is_str(enh, "5.7.8", "5.7.8");
	is_int(n, 6, "skips code and space");
	n = smtp_enhanced_parse("4.123.456", 451, enh);
	is_str(enh, "4.123.456", "three-digit parts");
	is_int(n, 9, "whole text");
	n = smtp_enhanced_parse("4.1234.5 x", 451, enh);
	ok(n == 0 && enh[0] == '\0', "four-digit subject refused");
	n = smtp_enhanced_parse("5.7 x", 550, enh);
	ok(n == 0 && enh[0] == '\0', "two parts refused");
	n = smtp_enhanced_parse("5.7.8x", 550, enh);
	ok(n == 0, "trailing garbage refused");
	n = smtp_enhanced_parse("2.0.0", 354, enh);
	ok(n == 0, "class 3 does not exist");
	n = smtp_enhanced_parse("", 250, enh);
	ok(n == 0, "empty text");
}

static void
test_caps(void)
{
	struct smtp_caps c;

	smtp_caps_reset(&c);
	smtp_caps_line(&c, "SIZE 35882577");
	smtp_caps_line(&c, "8BITMIME");
	smtp_caps_line(&c, "AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN "
	    "OAUTHBEARER XOAUTH");
	smtp_caps_line(&c, "ENHANCEDSTATUSCODES");
	smtp_caps_line(&c, "PIPELINING");
	smtp_caps_line(&c, "CHUNKING");
	smtp_caps_line(&c, "SMTPUTF8");
	ok(c.flags == (SMTP_CAP_SIZE | SMTP_CAP_8BITMIME | SMTP_CAP_AUTH |
	    SMTP_CAP_ENHANCED | SMTP_CAP_PIPELINING | SMTP_CAP_CHUNKING |
	    SMTP_CAP_SMTPUTF8), "Gmail's EHLO flags (%#x)", c.flags);
	ok(!(c.flags & SMTP_CAP_STARTTLS) && !(c.flags & SMTP_CAP_DSN),
	    "nothing invented");
	ok(c.size_max == 35882577, "SIZE limit");
	ok(c.auth == ((1u << MECH_XOAUTH2) | (1u << MECH_OAUTHBEARER) |
	    (1u << MECH_PLAIN) | (1u << MECH_LOGIN)), "all four mechanisms");
	is_str(c.auth_names, "LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN "
	    "OAUTHBEARER XOAUTH", "mechanism names kept");

	smtp_caps_reset(&c);
	smtp_caps_line(&c, "AUTH=LOGIN PLAIN");
	smtp_caps_line(&c, "AUTH PLAIN LOGIN CRAM-MD5");
	ok(c.auth == ((1u << MECH_PLAIN) | (1u << MECH_LOGIN)),
	    "old AUTH= form and the new one");
	is_str(c.auth_names, "LOGIN PLAIN CRAM-MD5", "no duplicates");

	smtp_caps_reset(&c);
	smtp_caps_line(&c, "SIZE");
	ok((c.flags & SMTP_CAP_SIZE) && c.size_max == 0,
	    "SIZE without a number: offered, no limit");
	smtp_caps_line(&c, "size 1000");
	ok(c.size_max == 1000, "lower case keyword");
	smtp_caps_line(&c, "SIZE 99999999999999999999999999");
	ok(c.size_max == 0, "absurd SIZE: no limit, no overflow");

	smtp_caps_reset(&c);
	smtp_caps_line(&c, "starttls");
	smtp_caps_line(&c, "Pipelining");
	smtp_caps_line(&c, "dsn");
	smtp_caps_line(&c, "auth xoauth2 oauthbearer");
	ok(c.flags == (SMTP_CAP_STARTTLS | SMTP_CAP_PIPELINING |
	    SMTP_CAP_DSN | SMTP_CAP_AUTH), "keywords in any case");
	ok(c.auth == ((1u << MECH_XOAUTH2) | (1u << MECH_OAUTHBEARER)),
	    "mechanisms in any case");
	is_str(c.auth_names, "XOAUTH2 OAUTHBEARER", "names upper-cased");

	smtp_caps_reset(&c);
	smtp_caps_line(&c, "PIPELININGX");
	smtp_caps_line(&c, "X-EXPS GSSAPI");
	smtp_caps_line(&c, "");
	smtp_caps_line(&c, "AUTH");
	ok(c.flags == SMTP_CAP_AUTH && c.auth == 0,
	    "unknown keywords ignored; bare AUTH offers nothing");
}

static void
test_xtext(void)
{
	char out[64];

	ok(smtp_xtext("abc-123@x", out, sizeof(out)), "plain xtext");
	is_str(out, "abc-123@x", "printable kept");
	ok(smtp_xtext("a+b=c d\xc3\xa9", out, sizeof(out)), "escapes");
	is_str(out, "a+2Bb+3Dc+20d+C3+A9", "+ = space and 8-bit as +HH");
	ok(!smtp_xtext("abcdef", out, 6), "too small refused");
	ok(smtp_xtext("abcde", out, 6), "exact fit");
	ok(!smtp_xtext("+", out, 3), "escape needs 4 bytes");
	ok(smtp_xtext("", out, 1) && out[0] == '\0', "empty");
}

/* Stuff msg split at every chunk size, compare with want. */
static void
stuff_all_splits(const char *msg, const char *want, const char *name)
{
	size_t n = strlen(msg), chunk, off, o, bad = 0;
	char *out = malloc(2 * n + 16);
	struct smtp_dot d;

	for (chunk = 1; chunk <= n + 1 && out != NULL; chunk++) {
		smtp_dot_init(&d);
		o = 0;
		for (off = 0; off < n; off += chunk) {
			size_t k = n - off < chunk ? n - off : chunk;
			o += smtp_dot_stuff(&d, msg + off, k, out + o);
		}
		o += smtp_dot_end(&d, out + o);
		out[o] = '\0';
		if (strcmp(out, want) != 0) {
			if (bad++ == 0)
				printf("# chunk %zu: got '%s'\n", chunk, out);
		}
	}
	ok(out != NULL && bad == 0, "dot-stuffing: %s (all chunkings)", name);
	free(out);
}

/* The obvious byte-at-a-time stuffer, to check the real one against. */
static size_t
ref_stuff(const char *in, size_t n, char *out)
{
	size_t i, o = 0;
	bool bol = true;

	for (i = 0; i < n; i++) {
		if (in[i] == '\r' || in[i] == '\n') {
			if (in[i] == '\r' && i + 1 < n && in[i + 1] == '\n')
				i++;
			out[o++] = '\r';
			out[o++] = '\n';
			bol = true;
			continue;
		}
		if (bol && in[i] == '.')
			out[o++] = '.';
		out[o++] = in[i];
		bol = false;
	}
	if (!bol) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}

static void
test_dots_random(void)
{
	static const char alpha[] = "a.\r\nb..";
	char in[600], want[1300], got[1300];
	struct smtp_dot d;
	unsigned seed = 12345;
	size_t n, wn, gn, off, k;
	int round, bad = 0;

	for (round = 0; round < 2000; round++) {
		seed = seed * 1103515245u + 12345u;
		n = (seed >> 8) % sizeof(in);
		for (k = 0; k < n; k++) {
			seed = seed * 1103515245u + 12345u;
			in[k] = alpha[(seed >> 16) % (sizeof(alpha) - 1)];
		}
		wn = ref_stuff(in, n, want);
		smtp_dot_init(&d);
		gn = 0;
		for (off = 0; off < n; off += k) {
			seed = seed * 1103515245u + 12345u;
			k = 1 + (seed >> 16) % 40;
			if (k > n - off)
				k = n - off;
			gn += smtp_dot_stuff(&d, in + off, k, got + gn);
		}
		gn += smtp_dot_end(&d, got + gn);
		if (gn != wn || memcmp(got, want, wn) != 0)
			bad++;
	}
	is_int(bad, 0, "dot-stuffing matches the reference on random input");
}

static void
test_dots(void)
{
	struct smtp_dot d;
	char out[64];
	size_t n;

	stuff_all_splits("a\r\n.\r\n..\r\n.x\r\nb.c\r\n",
	    "a\r\n..\r\n...\r\n..x\r\nb.c\r\n.\r\n", "., .., .x lines");
	stuff_all_splits(".first\r\n", "..first\r\n.\r\n",
	    "dot on the first line");
	stuff_all_splits("no end", "no end\r\n.\r\n", "unterminated last line");
	stuff_all_splits("", ".\r\n", "empty message");
	stuff_all_splits("a\nb\n.\n", "a\r\nb\r\n..\r\n.\r\n",
	    "bare LF made CRLF");
	stuff_all_splits("a\rb\r", "a\r\nb\r\n.\r\n", "bare CR made CRLF");
	stuff_all_splits("a\r\n.\r", "a\r\n..\r\n.\r\n", "CR at the very end");
	stuff_all_splits("x\r\r\n.", "x\r\n\r\n..\r\n.\r\n",
	    "CR CR LF then dot");

	/* The exact case from the brief: a chunk starting mid-line with '.'. */
	smtp_dot_init(&d);
	n = smtp_dot_stuff(&d, "abc", 3, out);
	n += smtp_dot_stuff(&d, ".def\r\n", 6, out + n);
	n += smtp_dot_stuff(&d, ".ghi\r\n", 6, out + n);
	out[n] = '\0';
	is_str(out, "abc.def\r\n..ghi\r\n",
	    "mid-line chunk start not stuffed, line start stuffed");

	/* Output bound: 2n + 2 bytes is enough in the worst case. */
	smtp_dot_init(&d);
	n = smtp_dot_stuff(&d, "\r", 1, out);
	n = smtp_dot_stuff(&d, ".\r.\r", 4, out);
	ok(n <= 2 * 4 + 2, "worst case within 2n+2 (%zu)", n);
}

static void
test_status(void)
{
	static const struct {
		enum smtp_phase ph;
		const char *line;
		enum status want;
	} t[] = {
		{ SMTP_PH_MAIL, "250 2.1.0 OK", ST_OK },
		{ SMTP_PH_DATA, "354 Go ahead", ST_OK },
		{ SMTP_PH_GREETING, "421 4.7.0 Try again later", ST_TEMPFAIL },
		{ SMTP_PH_GREETING, "554 no service", ST_PERMFAIL },
		{ SMTP_PH_EHLO, "502 command not implemented", ST_PERMFAIL },
		{ SMTP_PH_STARTTLS, "454 4.7.0 TLS not available", ST_TEMPFAIL },
		{ SMTP_PH_STARTTLS, "502 5.5.1 unrecognized", ST_TLS },
		{ SMTP_PH_AUTH, "535 5.7.8 Username and Password not accepted",
		    ST_AUTH },
		{ SMTP_PH_AUTH, "534 5.7.9 Application-specific password "
		    "required", ST_AUTH },
		{ SMTP_PH_AUTH, "454 4.7.0 Too many login attempts, please "
		    "try again later.", ST_TEMPFAIL },
		{ SMTP_PH_AUTH, "504 5.5.4 Unrecognized authentication type",
		    ST_CONFIG },
		{ SMTP_PH_AUTH, "530 5.7.0 Must issue a STARTTLS command first",
		    ST_CONFIG },
		{ SMTP_PH_MAIL, "530 5.7.0 Authentication Required", ST_AUTH },
		{ SMTP_PH_MAIL, "451 4.3.0 local error", ST_TEMPFAIL },
		{ SMTP_PH_MAIL, "550 5.7.1 sender refused", ST_PERMFAIL },
		{ SMTP_PH_MAIL, "552 5.3.4 too big", ST_DATAERR },
		{ SMTP_PH_MAIL, "550 5.4.5 Daily user sending limit exceeded",
		    ST_TEMPFAIL },
		{ SMTP_PH_RCPT, "550 5.1.1 no such user", ST_NOUSER },
		{ SMTP_PH_RCPT, "450 4.2.1 mailbox busy", ST_TEMPFAIL },
		{ SMTP_PH_RCPT, "552 5.5.3 too many recipients", ST_TEMPFAIL },
		{ SMTP_PH_RCPT, "421 4.7.0 closing", ST_TEMPFAIL },
		{ SMTP_PH_DATA, "554 5.5.1 no valid recipients", ST_DATAERR },
		{ SMTP_PH_DATA, "451 4.3.0 try later", ST_TEMPFAIL },
		{ SMTP_PH_DOT, "552 5.3.4 Message size exceeds fixed limit",
		    ST_DATAERR },
		{ SMTP_PH_DOT, "550 5.7.1 spam", ST_DATAERR },
		{ SMTP_PH_DOT, "550 5.4.5 Daily user sending limit exceeded",
		    ST_TEMPFAIL },
		{ SMTP_PH_DOT, "451 4.7.0 temporary", ST_TEMPFAIL },
		{ SMTP_PH_DOT, "421 4.7.0 closing", ST_TEMPFAIL },
		{ SMTP_PH_RSET, "500 what", ST_PERMFAIL },
	};
	struct smtp_reply r;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		smtp_reply_init(&r);
		smtp_reply_feed(&r, t[i].line, strlen(t[i].line), NULL, NULL);
		is_str(st_name(smtp_status(t[i].ph, &r)), st_name(t[i].want),
		    "%s: %s", smtp_phase_name(t[i].ph), t[i].line);
	}
	/* Every 4xx in every phase is temporary, never permanent. */
	for (i = 0; i < SMTP_PH__COUNT; i++) {
		int code;
		for (code = 400; code < 460; code++) {
			char line[8];
			snprintf(line, sizeof(line), "%d", code);
			smtp_reply_init(&r);
			smtp_reply_feed(&r, line, 3, NULL, NULL);
			if (smtp_status((enum smtp_phase)i, &r) != ST_TEMPFAIL)
				break;
		}
		ok(code == 460, "every 4xx is TEMPFAIL in %s",
		    smtp_phase_name((enum smtp_phase)i));
	}
	is_str(smtp_phase_name(SMTP_PH_RCPT), "RCPT", "phase names");
	is_str(smtp_phase_name(SMTP_PH__COUNT), "?", "unknown phase");
}

int
main(void)
{
	test_replies();
	test_enhanced();
	test_caps();
	test_xtext();
	test_dots();
	test_dots_random();
	test_status();
	return tap_done();
}
