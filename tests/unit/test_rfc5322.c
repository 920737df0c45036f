/* Unit tests: RFC 5322 address lists, header fields, formatting. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rfc5322.h"
#include "tap.h"

static struct errinfo ei;

#define ONE(s, flags) rfc5322_parse_one((s), strlen(s), (flags), &a, &ei)

/*
 * Parse s and render the result as "name|comment|addr|flags|group" per
 * mailbox (NULL as "-", flags "d" has_domain, "u" is_utf8), joined by
 * " ; ", or "ERR:STATUS" on failure.
 */
static const char *
parse(const char *s, unsigned flags)
{
	static char out[4096];
	struct rfc5322_list l = { NULL, 0 };
	enum status st;
	size_t i, o = 0;

	st_clear(&ei);
	st = rfc5322_parse_list(s, strlen(s), RFC5322_MAX_ADDRS, flags, &l,
	    &ei);
	if (st != ST_OK) {
		snprintf(out, sizeof(out), "ERR:%s", st_name(st));
		return out;
	}
	out[0] = '\0';
	for (i = 0; i < l.n; i++) {
		const struct rfc5322_addr *a = &l.v[i];

		o += (size_t)snprintf(out + o, sizeof(out) - o,
		    "%s%s|%s|%s|%s%s|%s", i > 0 ? " ; " : "",
		    a->name ? a->name : "-", a->comment ? a->comment : "-",
		    a->addr, a->has_domain ? "d" : "", a->is_utf8 ? "u" : "",
		    a->group ? a->group : "-");
	}
	rfc5322_list_free(&l);
	return out;
}

static void
test_lists(void)
{
	/* Plain and sloppy command-line forms. */
	is_str(parse("a@x", 0), "-|-|a@x|d|-", "bare address");
	is_str(parse("a@x,b@y", 0), "-|-|a@x|d|- ; -|-|b@y|d|-",
	    "a@x,b@y is two");
	is_str(parse("a@x b@y", 0), "-|-|a@x|d|- ; -|-|b@y|d|-",
	    "a@x b@y is two");
	is_str(parse("\"Bob\" <b@y>", 0), "Bob|-|b@y|d|-", "quoted name");
	is_str(parse("Bob<b@y>", 0), "Bob|-|b@y|d|-", "no space before <");
	is_str(parse("<b@y>", 0), "-|-|b@y|d|-", "angle address alone");
	is_str(parse("\"\" <b@y>", 0), "-|-|b@y|d|-", "empty quoted name");
	is_str(parse("  Bob   Smith  <b@y>  ", 0), "Bob Smith|-|b@y|d|-",
	    "spaces collapsed");
	is_str(parse("root", 0), "-|-|root||-", "unqualified, flagged");
	is_str(parse("root, fail2ban", 0), "-|-|root||- ; -|-|fail2ban||-",
	    "two unqualified");
	is_str(parse("a@x,,b@y,", 0), "-|-|a@x|d|- ; -|-|b@y|d|-",
	    "empty members skipped");
	is_str(parse("", 0), "", "empty input: no addresses");
	is_str(parse(" , ,", 0), "", "only commas: no addresses");
	is_str(parse("user@host <user@host>", 0),
	    "user@host|-|user@host|d|-", "address as display name");

	/* Quoting. */
	is_str(parse("\"Smith, Bob\" <b@y>, c@z", 0),
	    "Smith, Bob|-|b@y|d|- ; -|-|c@z|d|-", "quoted comma");
	is_str(parse("\"a \\\"q\\\" \\\\ b\" <x@y>", 0),
	    "a \"q\" \\ b|-|x@y|d|-", "escapes in a quoted name");
	is_str(parse("\"john doe\"@example.com", 0),
	    "-|-|\"john doe\"@example.com|d|-", "quoted local part kept");
	is_str(parse("\"john\"@example.com", 0), "-|-|john@example.com|d|-",
	    "needless quotes dropped");
	is_str(parse("\"a\\\"b\"@x", 0), "-|-|\"a\\\"b\"@x|d|-",
	    "quote inside a local part re-escaped");
	is_str(parse("\"a\\b\"@x", 0), "-|-|ab@x|d|-",
	    "needless escape dropped");
	is_str(parse("\"john\".\"doe\"@x", 0), "-|-|john.doe@x|d|-",
	    "quoted words with dots");

	/* Comments. */
	is_str(parse("root (Cron Daemon)", 0), "-|Cron Daemon|root||-",
	    "cron's From");
	is_str(parse("a@x (A), (B) b@y", 0), "-|A|a@x|d|- ; -|B|b@y|d|-",
	    "comments stay with their mailbox");
	is_str(parse("a@x (A) b@y", 0), "-|A|a@x|d|- ; -|-|b@y|d|-",
	    "comment before an implicit separator");
	is_str(parse("Pete(A nice \\) chap) <pete(his account)@silly.test"
	    "(his host)>", 0), "Pete|A nice ) chap|pete@silly.test|d|-",
	    "RFC 5322 A.5 comments");
	is_str(parse("(Cron (the) Daemon) root", 0),
	    "-|Cron (the) Daemon|root||-", "nested comment");
	is_str(parse("() ( ) root (x)", 0), "-|x|root||-",
	    "empty comments ignored");

	/* RFC 5322 appendix A. */
	is_str(parse("\"Joe Q. Public\" <john.q.public@example.com>, "
	    "Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>", 0),
	    "Joe Q. Public|-|john.q.public@example.com|d|- ; "
	    "Mary Smith|-|mary@x.test|d|- ; -|-|jdoe@example.org|d|- ; "
	    "Who?|-|one@y.test|d|-", "A.1.2");
	is_str(parse("<boss@nil.test>, \"Giant; \\\"Big\\\" Box\" "
	    "<sysservices@example.net>", 0),
	    "-|-|boss@nil.test|d|- ; Giant; \"Big\" Box|-|"
	    "sysservices@example.net|d|-", "A.1.2 semicolon in quotes");
	is_str(parse("A Group:Ed Jones <c@a.test>,joe@where.test,"
	    "John <jdoe@one.test>;", 0),
	    "Ed Jones|-|c@a.test|d|A Group ; -|-|joe@where.test|d|A Group ; "
	    "John|-|jdoe@one.test|d|A Group", "A.1.3 group");
	is_str(parse("Undisclosed recipients:;", 0), "", "A.1.3 empty group");
	is_str(parse("G:;, a@x", 0), "-|-|a@x|d|-", "empty group then more");
	is_str(parse("a@x, G: b@y; , c@z", 0),
	    "-|-|a@x|d|- ; -|-|b@y|d|G ; -|-|c@z|d|-", "group in the middle");
	is_str(parse("G: a@x", 0), "-|-|a@x|d|G", "missing final ';' forgiven");
	is_str(parse("G: ,a@x,,;", 0), "-|-|a@x|d|G", "empty group members");
	is_str(parse("Joe Q. Public <john.q.public@example.com>", 0),
	    "Joe Q. Public|-|john.q.public@example.com|d|-", "obs-phrase");
	is_str(parse("<@r1.test,@r2.test:u@x>", 0), "-|-|u@x|d|-",
	    "obs route dropped");
	is_str(parse("<@r1,,@[1.2.3.4]:u@x>", 0), "-|-|u@x|d|-",
	    "obs route with empty element");
	is_str(parse("john . doe @ example . com", 0),
	    "-|-|john.doe@example.com|d|-", "obs CFWS around dots");
	is_str(parse("a@[192.0.2.1]", 0), "-|-|a@[192.0.2.1]|d|-",
	    "domain literal");

	/* <> */
	is_str(parse("<>", 0), "ERR:DATAERR", "<> refused by default");
	is_str(parse("<>", RFC5322_NULL_OK), "-|-|||-", "<> when allowed");
	is_str(parse("\"Mailer\" <>", RFC5322_NULL_OK), "Mailer|-|||-",
	    "<> with a name");

	/* UTF-8 passes through. */
	is_str(parse("J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbc" "cher.de>", 0),
	    "J\xc3\xb6rg|-|j\xc3\xb6rg@b\xc3\xbc" "cher.de|du|-",
	    "UTF-8 address flagged");
	is_str(parse("\"J\xc3\xb6rg\" <j@x>", 0), "J\xc3\xb6rg|-|j@x|d|-",
	    "UTF-8 name only: address not flagged");
	is_str(parse("=?utf-8?q?J=C3=B6rg?= <j@x>", 0),
	    "=?utf-8?q?J=C3=B6rg?=|-|j@x|d|-", "encoded word kept");
}

static void
test_errors(void)
{
	static const char *const bad[] = {
		"John Smith",		/* a name without an address */
		"John Smith@x",
		"a@",
		"@x",
		"<a@x",
		"a@x>",
		"<a@x> junk",
		"\"unterminated",
		"(unterminated",
		"a) b",
		"a@x;",			/* ';' outside a group */
		"a@x@y",
		"a@[1.2",
		"a@[1[2]",
		"a@x..y",
		"a@.x",
		"a@x.",
		".a@x",
		"a..b@x",
		"a\\b@x",
		"G: H: a@x;;",		/* nested group */
		"G: a@x; junk",
		": a@x;",		/* group without a name */
		"<@r1 u@x>",		/* broken route */
		"a > b <c@d>",
		"<a@x> <b@y>",
		"a@x <b@y> c",
		"]",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		is_str(parse(bad[i], 0), "ERR:DATAERR", "garbage: %s", bad[i]);
		ok(strstr(ei.msg, "offset") != NULL, "says where: %s", ei.msg);
	}
}

static void
test_injection(void)
{
	static const char *const bad[] = {
		"a@x\r\nRCPT TO:<evil@y>",
		"a@x\nBcc: evil@y",
		"\"a\nb\"@x",
		"\"a\r\nb\" <a@x>",
		"Bob\r\n <a@x>",
		"<a@x>\rBcc: e@v",
		"(a\nb) a@x",
		"a@x\x7f",
		"a@x\x1b[2J",
	};
	struct rfc5322_list l = { NULL, 0 };
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_str(parse(bad[i], 0), "ERR:DATAERR", "control byte %zu "
		    "refused", i);
	st_clear(&ei);
	is_int(rfc5322_parse_list("a@x\0b@y", 7, 10, 0, &l, &ei), ST_DATAERR,
	    "NUL refused");
	ok(strchr(ei.msg, '\n') == NULL, "error text is one line");
	is_str(parse("\"tab\there\" <a@x>", 0), "tab\there|-|a@x|d|-",
	    "TAB is white space, not a control");
}

static void
test_limits(void)
{
	struct rfc5322_list l = { NULL, 0 };
	struct buf b;
	char local[300];
	size_t i;

	/* 254 octets fit, 255 do not. */
	memset(local, 'a', sizeof(local));
	snprintf(local + 250, sizeof(local) - 250, "@x.y");
	is_int(strlen(local), 254, "254-octet address built");
	ok(strcmp(parse(local, 0), "ERR:LIMIT") != 0, "254 octets accepted");
	local[0] = 'a';
	memset(local, 'a', sizeof(local));
	snprintf(local + 251, sizeof(local) - 251, "@x.y");
	is_str(parse(local, 0), "ERR:LIMIT", "255 octets: ST_LIMIT");

	/* 10,000 addresses. */
	buf_init(&b, 200000);
	for (i = 0; i < 10000; i++)
		buf_printf(&b, NULL, "%su%zu@example.com", i ? "," : "", i);
	st_clear(&ei);
	is_int(rfc5322_parse_list(b.data, b.len, 10000, 0, &l, &ei), ST_OK,
	    "10,000 addresses with max 10,000");
	is_int(l.n, 10000, "all 10,000 kept");
	ok(l.n == 10000 && strcmp(l.v[9999].addr, "u9999@example.com") == 0 &&
	    strcmp(l.v[4097].addr, "u4097@example.com") == 0,
	    "order kept");
	rfc5322_list_free(&l);
	st_clear(&ei);
	is_int(rfc5322_parse_list("keep@x", 6, 10, 0, &l, &ei), ST_OK,
	    "one earlier address");
	is_int(rfc5322_parse_list(b.data, b.len, RFC5322_MAX_ADDRS, 0, &l, &ei),
	    ST_LIMIT, "10,000 addresses with the default max: ST_LIMIT");
	ok(l.n == 1 && strcmp(l.v[0].addr, "keep@x") == 0,
	    "failure keeps what the list held before");
	ok(strstr(ei.msg, "1000") != NULL, "text names the limit: %s", ei.msg);
	st_clear(&ei);
	is_int(rfc5322_parse_list("next@y", 6, 10, 0, &l, &ei), ST_OK,
	    "list usable after a failure");
	ok(l.n == 2 && strcmp(l.v[1].addr, "next@y") == 0, "appended");
	rfc5322_list_free(&l);
	ok(l.n == 0 && l.v == NULL, "free leaves the list empty");
	buf_free(&b);

	/* A long list without commas: limit reached, and quickly. */
	buf_init(&b, RFC5322_INPUT_MAX);
	for (i = 0; i < 200000; i++)
		buf_adds(&b, "a@x ", NULL);
	st_clear(&ei);
	is_int(rfc5322_parse_list(b.data, b.len, 1000, 0, &l, &ei), ST_LIMIT,
	    "200,000 space-separated addresses with max 1000: ST_LIMIT");
	st_clear(&ei);
	is_int(rfc5322_parse_list(b.data, b.len, 200000, 0, &l, &ei), ST_OK,
	    "200,000 space-separated addresses with max 200,000");
	is_int(l.n, 200000, "all kept");
	rfc5322_list_free(&l);
	buf_free(&b);
	is_str(parse("a@x b@y <c@z>", 0), "-|-|a@x|d|- ; b@y|-|c@z|d|-",
	    "implicit separator before a name-addr");

	/* More than RFC5322_INPUT_MAX octets. */
	{
		size_t n = RFC5322_INPUT_MAX + 1;
		char *big = malloc(n);

		memset(big, ' ', n);
		st_clear(&ei);
		is_int(rfc5322_parse_list(big, n, 10, 0, &l, &ei), ST_LIMIT,
		    "input past RFC5322_INPUT_MAX: ST_LIMIT");
		free(big);
	}
}

static void
test_one(void)
{
	struct rfc5322_addr a;

	st_clear(&ei);
	is_int(ONE("root (Cron Daemon)", 0), ST_OK,
	    "one: cron From");
	is_str(rfc5322_addr_display(&a), "Cron Daemon", "display from comment");
	ok(!a.has_domain, "one: unqualified");
	rfc5322_addr_free(&a);
	is_int(ONE("Bob (x) <b@y>", 0), ST_OK,
	    "one: name and comment");
	is_str(rfc5322_addr_display(&a), "Bob", "display prefers the name");
	rfc5322_addr_free(&a);
	is_int(ONE("b@y", 0), ST_OK, "one: bare");
	ok(rfc5322_addr_display(&a) == NULL, "no display name");
	rfc5322_addr_free(&a);
	rfc5322_addr_free(&a);
	is_int(ONE("a@x, b@y", 0), ST_DATAERR,
	    "one: two addresses");
	ok(strstr(ei.msg, "one") != NULL, "says why: %s", ei.msg);
	st_clear(&ei);
	is_int(ONE("a@x, b@y, c@z", 0), ST_DATAERR,
	    "one: three addresses");
	st_clear(&ei);
	is_int(ONE("G:;", 0), ST_DATAERR,
	    "one: none");
	st_clear(&ei);
	is_int(ONE("<>", RFC5322_NULL_OK), ST_OK,
	    "one: <> allowed");
	is_str(a.addr, "", "one: <> is the empty address");
	rfc5322_addr_free(&a);
	st_clear(&ei);
	is_int(ONE("a@", 0), ST_DATAERR,
	    "one: syntax error keeps its status");
}

static const char *
fmt(const char *name, const char *addr)
{
	static struct buf b;

	buf_free(&b);
	buf_init(&b, 1024);
	st_clear(&ei);
	if (rfc5322_format_addr(&b, name, addr, &ei) != ST_OK)
		return st_name(ei.st);
	return b.data;
}

static void
test_format(void)
{
	struct rfc5322_addr a;
	struct buf b;

	is_str(fmt("Cron Daemon", "root@example.com"),
	    "\"Cron Daemon\" <root@example.com>", "name quoted");
	is_str(fmt(NULL, "a@x"), "a@x", "no name");
	is_str(fmt("", "a@x"), "a@x", "empty name");
	is_str(fmt("a \"b\" \\c", "a@x"), "\"a \\\"b\\\" \\\\c\" <a@x>",
	    "quote and backslash escaped");
	is_str(fmt("Smith, Bob", "b@y"), "\"Smith, Bob\" <b@y>", "comma");
	is_str(fmt("=?utf-8?q?J=C3=B6rg?= Bar", "j@x"),
	    "=?utf-8?q?J=C3=B6rg?= Bar <j@x>", "encoded words left bare");
	is_str(fmt("=?utf-8?q?a?= (x)", "j@x"), "\"=?utf-8?q?a?= (x)\" <j@x>",
	    "encoded word with specials quoted");
	is_str(fmt("J\xc3\xb6rg", "j@x"), "\"J\xc3\xb6rg\" <j@x>", "UTF-8 name");
	is_str(fmt("x", "\"a b\"@x"), "\"x\" <\"a b\"@x>",
	    "quoted local part allowed");
	is_str(fmt("Evil\r\nBcc: x@y", "a@x"), "DATAERR", "CRLF in name");
	is_str(fmt("Evil", "a@x\nBcc: x@y"), "DATAERR", "LF in address");
	is_str(fmt("Evil", "a@x>, <b@y"), "DATAERR", "'>' in address");
	is_str(fmt("Evil", "a@x b@y"), "DATAERR", "space in address");
	is_str(fmt("Evil", "\"a@x"), "DATAERR", "open quote in address");

	/* Keep the display name while rewriting the address. */
	st_clear(&ei);
	ONE("root (Cron Daemon)", 0);
	is_str(fmt(rfc5322_addr_display(&a), "me@example.com"),
	    "\"Cron Daemon\" <me@example.com>", "cron From rewritten");
	rfc5322_addr_free(&a);
	ONE("\"Smith, \\\"Bob\\\"\" <b@y>", 0);
	is_str(parse(fmt(a.name, a.addr), 0), "Smith, \"Bob\"|-|b@y|d|-",
	    "format then parse round trip");
	rfc5322_addr_free(&a);

	buf_init(&b, 5);
	buf_adds(&b, "xy", NULL);
	st_clear(&ei);
	is_int(rfc5322_format_addr(&b, "Name", "a@x", &ei), ST_LIMIT,
	    "format past the maximum");
	is_str(b.data, "xy", "buffer unchanged");
	buf_free(&b);
	fmt(NULL, "");
}

/* Split raw; render "name=value" or the status name. */
static const char *
split(const char *raw)
{
	static char out[1024];
	struct buf v;
	const char *name;
	size_t nlen;

	buf_init(&v, 1000);
	st_clear(&ei);
	if (rfc5322_field_split(raw, strlen(raw), &name, &nlen, &v, &ei) !=
	    ST_OK)
		snprintf(out, sizeof(out), "%s", st_name(ei.st));
	else
		snprintf(out, sizeof(out), "%.*s=%s", (int)nlen, name,
		    v.data != NULL ? v.data : "");
	buf_free(&v);
	return out;
}

static void
test_fields(void)
{
	struct buf v;
	const char *name;
	size_t nlen;

	is_str(split("Subject: hello\r\n"), "Subject=hello", "simple field");
	is_str(split("Subject: hello"), "Subject=hello", "no line end");
	is_str(split("To: a@x,\r\n\tb@y\r\n"), "To=a@x,\tb@y", "folded CRLF");
	is_str(split("To: a@x,\n b@y\n"), "To=a@x, b@y", "folded LF");
	is_str(split("To: a@x,\r\n b@y,\n c@z\r\n"), "To=a@x, b@y, c@z",
	    "mixed line ends");
	is_str(split("From : root (Cron Daemon)\n"),
	    "From=root (Cron Daemon)", "obsolete space before the colon");
	is_str(split("X:  a  \r\n  b  \r\n"), "X=a    b", "white space kept "
	    "inside, trimmed at the ends");
	is_str(split("X:\r\n"), "X=", "empty value");
	is_str(split("X:\r\n \r\n"), "X=", "value of folding only");
	is_str(split("X:a:b"), "X=a:b", "colon in the value");
	is_str(split("X: a\r\nY: b\r\n"), "DATAERR", "two fields");
	is_str(split("X: a\r\n\r\n"), "DATAERR", "blank line inside");
	is_str(split("X: a\rb\r\n"), "DATAERR", "bare CR");
	is_str(split("NoColon\r\n"), "DATAERR", "no colon");
	is_str(split("No\r\n Colon: x"), "DATAERR", "break before the colon");
	is_str(split(": v"), "DATAERR", "empty name");
	is_str(split("Bad Name: v"), "DATAERR", "space in the name");
	is_str(split("B\xc3\xa4" "d: v"), "DATAERR", "8-bit name");
	is_str(split("X: J\xc3\xb6rg\r\n"), "X=J\xc3\xb6rg", "8-bit value");

	buf_init(&v, 6);
	buf_adds(&v, "ab", NULL);
	st_clear(&ei);
	is_int(rfc5322_field_split("X: cd\r\n", 7, &name, &nlen, &v, &ei),
	    ST_OK, "appends");
	is_str(v.data, "abcd", "appended value");
	is_int(rfc5322_field_split("X: efghij\r\n", 11, &name, &nlen, &v, &ei),
	    ST_LIMIT, "value past the maximum");
	is_str(v.data, "abcd", "buffer unchanged on failure");
	buf_free(&v);

	ok(rfc5322_field_is("Bcc: x\r\n", 8, "bcc"), "field_is Bcc");
	ok(rfc5322_field_is("BCC :x", 6, "Bcc"), "field_is with space");
	ok(rfc5322_field_is("Resent-Bcc:", 11, "resent-bcc"), "field_is empty");
	ok(!rfc5322_field_is("Bcc-Foo: x", 10, "Bcc"), "longer name");
	ok(!rfc5322_field_is("Bc: x", 5, "Bcc"), "shorter name");
	ok(!rfc5322_field_is("Bcc", 3, "Bcc"), "no colon");
	ok(!rfc5322_field_is("Bcc x: y", 8, "Bcc"), "word before colon");
	ok(rfc5322_name_is("FROM", 4, "From"), "name_is ignores case");
	ok(!rfc5322_name_is("From", 4, "Fro"), "name_is length");
	ok(!rfc5322_name_is("Fro", 3, "From"), "name_is length (2)");
}

/*
 * Random strings over the characters that matter: the parser must never
 * crash (run under the sanitizers), must fail only with DATAERR or
 * LIMIT, and what it returns must format and parse back to itself.
 */
static void
test_random(void)
{
	static const char alpha[] = "ab@.,;:<>\"\\()[] \t\x80\xc3=?x";
	struct rfc5322_list l = { NULL, 0 };
	struct rfc5322_addr a;
	struct buf b;
	char in[40];
	unsigned long seed = 12345;
	size_t i, j, k, n, nok = 0, bad = 0, roundtrip = 0;
	enum status st;

	for (i = 0; i < 50000; i++) {
		seed = seed * 6364136223846793005UL + 1442695040888963407UL;
		n = (seed >> 33) % sizeof(in);
		for (j = 0; j < n; j++) {
			seed = seed * 6364136223846793005UL +
			    1442695040888963407UL;
			in[j] = alpha[(seed >> 33) % (sizeof(alpha) - 1)];
		}
		st_clear(&ei);
		st = rfc5322_parse_list(in, n, 8, RFC5322_NULL_OK, &l, &ei);
		if (st != ST_OK && st != ST_DATAERR && st != ST_LIMIT)
			bad++;
		if (st != ST_OK)
			continue;
		nok++;
		for (k = 0; k < l.n; k++) {
			if (l.v[k].addr[0] == '\0')
				continue;
			buf_init(&b, 4096);
			st_clear(&ei);
			if (rfc5322_format_addr(&b, l.v[k].name, l.v[k].addr,
			    &ei) != ST_OK ||
			    rfc5322_parse_one(b.data, b.len, 0, &a, &ei) !=
			    ST_OK) {
				roundtrip++;
				printf("# no round trip: '%.*s' -> '%s'\n",
				    (int)n, in, b.data ? b.data : "");
			} else {
				if (strcmp(a.addr, l.v[k].addr) != 0 ||
				    (l.v[k].name != NULL &&
				    strstr(l.v[k].name, "=?") == NULL &&
				    (a.name == NULL ||
				    strcmp(a.name, l.v[k].name) != 0))) {
					roundtrip++;
					printf("# round trip differs: '%s'\n",
					    b.data);
				}
				rfc5322_addr_free(&a);
			}
			buf_free(&b);
		}
		rfc5322_list_free(&l);
	}
	is_int(bad, 0, "random input: only DATAERR or LIMIT");
	ok(nok > 100, "random input: some parsed (%zu)", nok);
	is_int(roundtrip, 0, "random input: format and parse round trip");
}

int
main(void)
{
	test_lists();
	test_errors();
	test_injection();
	test_limits();
	test_one();
	test_format();
	test_fields();
	test_random();
	return tap_done();
}
