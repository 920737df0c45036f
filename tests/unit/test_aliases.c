/* Unit tests: the aliases file and recipient expansion (aliases.c). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aliases.h"
#include "tap.h"

static struct aliases *
parse(const char *text, enum status *st, struct errinfo *ei)
{
	struct aliases *a = NULL;

	st_clear(ei);
	*st = aliases_parse(text, strlen(text), "aliases", &a, ei);
	return a;
}

/* Expand addr and join the result with ','. */
static const char *
expand(const struct aliases *a, const char *addr, const char *domain,
    enum status *st)
{
	static char out[2048];
	static struct errinfo ei;
	struct aliases_rcpts r = { NULL, 0 };
	size_t i, off = 0;

	st_clear(&ei);
	*st = aliases_expand(a, addr, domain, &r, &ei);
	out[0] = '\0';
	for (i = 0; i < r.n; i++)
		off += (size_t)snprintf(out + off, sizeof(out) - off, "%s%s",
		    i > 0 ? "," : "", r.v[i]);
	aliases_rcpts_free(&r);
	return *st == ST_OK ? out : ei.msg;
}

int
main(void)
{
	struct aliases *a;
	struct aliases_rcpts r = { NULL, 0 };
	struct errinfo ei;
	enum status st;
	const char *s;
	char path[] = "/tmp/test_aliases.XXXXXX";
	FILE *f;
	int fd;

	a = parse("# comment\n"
	    "root: alice@example.com, \"Bob\" <bob@example.org>\n"
	    "\n"
	    "Postmaster : root\n"
	    "www-data: root,\n"
	    "   carol@example.net\n"
	    "   # a comment inside\n"
	    "  , dave@example.net\n"
	    "loop1: loop2\n"
	    "loop2: loop1, x@example.com\n"
	    "ops: ops, o@example.com\r\n",
	    &st, &ei);
	is_int(st, ST_OK, "file parses: %s", ei.msg);
	is_int(aliases_count(a), 6, "six aliases");

	s = expand(a, "root", "host.example", &st);
	is_str(s, "alice@example.com,bob@example.org", "root expands");
	s = expand(a, "POSTMASTER", "host.example", &st);
	is_str(s, "alice@example.com,bob@example.org",
	    "names ignore case, nested alias");
	s = expand(a, "www-data", "host.example", &st);
	is_str(s, "alice@example.com,bob@example.org,carol@example.net,"
	    "dave@example.net", "continuation lines");
	s = expand(a, "loop1", "host.example", &st);
	is_str(s, "loop1@host.example,x@example.com", "a loop ends");
	s = expand(a, "ops", "host.example", &st);
	is_str(s, "ops@host.example,o@example.com", "self reference qualified");
	s = expand(a, "nobody", "host.example", &st);
	is_str(s, "nobody@host.example", "no alias: qualified with domain");
	s = expand(a, "nobody", NULL, &st);
	is_int(st, ST_NOUSER, "no alias, no domain: NOUSER (%s)", s);
	is_int(st_exitcode(st), 67, "exit 67");
	s = expand(a, "root@example.com", NULL, &st);
	is_str(s, "root@example.com", "qualified addresses are not aliased");
	s = expand(NULL, "root", "d.example", &st);
	is_str(s, "root@d.example", "no aliases file");
	aliases_free(a);

	a = parse("root: admin\ndefault: catch@example.com\n", &st, &ei);
	is_int(st, ST_OK, "file with default");
	s = expand(a, "fail2ban", "host.example", &st);
	is_str(s, "catch@example.com", "default catches unknown names");
	s = expand(a, "root", "host.example", &st);
	is_str(s, "catch@example.com", "alias to a bare name then default");
	s = expand(a, "bob@x.org", "host.example", &st);
	is_str(s, "bob@x.org", "default does not touch qualified addresses");
	aliases_free(a);

	a = parse("default: postmaster\n", &st, &ei);
	s = expand(a, "anyone", "h.example", &st);
	is_str(s, "postmaster@h.example", "default to a bare name ends");
	aliases_free(a);

	a = parse("root: a@x\nROOT: b@x\n", &st, &ei);
	ok(a == NULL && st == ST_CONFIG && strstr(ei.msg, "aliases:2:") != NULL,
	    "duplicate names refused with file:line: %s", ei.msg);
	a = parse("root a@x\n", &st, &ei);
	ok(st == ST_CONFIG && strstr(ei.msg, "aliases:1:") != NULL,
	    "missing colon: %s", ei.msg);
	a = parse("ok: a@x\nroot: |/usr/bin/procmail\n", &st, &ei);
	ok(st == ST_CONFIG && strstr(ei.msg, "aliases:2:") != NULL,
	    "pipes refused: %s", ei.msg);
	a = parse("root: /var/mail/root\n", &st, &ei);
	ok(st == ST_CONFIG, "files refused: %s", ei.msg);
	a = parse("root: :include:/etc/list\n", &st, &ei);
	ok(st == ST_CONFIG && strstr(ei.msg, "include") != NULL,
	    ":include: refused: %s", ei.msg);
	a = parse("  a@x\n", &st, &ei);
	ok(st == ST_CONFIG, "continuation first: %s", ei.msg);
	a = parse("root:\n", &st, &ei);
	ok(st == ST_CONFIG, "empty target: %s", ei.msg);
	a = parse("a b: x@y\n", &st, &ei);
	ok(st == ST_CONFIG, "name with a space: %s", ei.msg);
	a = parse("x@y: z@y\n", &st, &ei);
	ok(st == ST_CONFIG, "qualified name: %s", ei.msg);
	a = parse("\n\nr: <<bad\n", &st, &ei);
	ok(st == ST_CONFIG && strstr(ei.msg, "aliases:3:") != NULL,
	    "bad address list: %s", ei.msg);

	/* From a file. */
	fd = mkstemp(path);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (f != NULL) {
		fputs("root: r@example.com\n", f);
		fclose(f);
	}
	st_clear(&ei);
	st = aliases_load(path, &a, &ei);
	is_int(st, ST_OK, "load from a file");
	is_int(aliases_count(a), 1, "one alias loaded");
	aliases_free(a);
	unlink(path);
	st_clear(&ei);
	st = aliases_load(path, &a, &ei);
	ok(st == ST_CONFIG && strstr(ei.msg, path) != NULL,
	    "missing file: %s", ei.msg);

	/* Recipient lists. */
	aliases_rcpts_add(&r, "a@x.org", NULL);
	aliases_rcpts_add(&r, "A@X.ORG", NULL);
	aliases_rcpts_add(&r, "b@x.org", NULL);
	is_int(r.n, 2, "duplicates dropped");
	ok(aliases_rcpts_has(&r, "B@x.org"), "has ignores case");
	aliases_rcpts_free(&r);
	is_int(r.n, 0, "freed list is empty");
	return tap_done();
}
