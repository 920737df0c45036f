/*
 * rfc5322.c: address lists and header fields.
 *
 *   RFC 5322 sections 2.2, 2.2.3, 3.2.1-3.2.5, 3.4, 3.4.1, 4.4
 *   RFC 6532 section 3.2 (UTF-8 in atoms and quoted strings)
 *   RFC 5321 section 4.5.3.1.3 (256 octets per path)
 *
 * The address parser is a small lexer (atoms, quoted strings, domain
 * literals, specials; white space and comments skipped, the first comment
 * of each mailbox kept) under a recursive-descent parser.  Before a list
 * member is parsed, its tokens are scanned up to the next ',' / ';' / ':'
 * / '<' to learn what it is: a group ("name:"), a name-addr ("... <"), or
 * a bare addr-spec.  That look-ahead is what lets the sloppy forms through
 * ("user@host <user@host>", "a@x b@y") without giving up the RFC ones.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rfc5322.h"

enum {
	T_EOF = 0,		/* specials are their own character */
	T_ATOM = 256,		/* atext, '.' and UTF-8 bytes */
	T_QUOTED,		/* "..." */
	T_DLIT			/* [...] */
};

struct tok {
	int type;
	size_t off, len;	/* raw bytes, quotes and brackets included */
	bool ws;		/* white space or a comment came before it */
};

struct rp {
	const char *s;
	size_t len, pos;
	unsigned flags;
	struct buf comment;	/* first comment of the current mailbox */
	struct errinfo *ei;
};

/* atext of RFC 5322 section 3.2.3, plus '.', plus UTF-8 (RFC 6532). */
static bool
rp_atom_char(unsigned char c)
{
	if (c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL;
}

static bool
rp_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static enum status
rp_syntax(struct rp *p, size_t off, const char *what)
{
	return st_error(p->ei, ST_DATAERR, "address list: %s at offset %zu",
	    what, off);
}

/* Append the body of a quoted string or comment with quoted-pairs undone. */
static enum status
rp_unquote(struct buf *b, const char *s, size_t n, struct errinfo *ei)
{
	size_t i;
	enum status st = ST_OK;

	for (i = 0; i < n && st == ST_OK; i++) {
		if (s[i] == '\\' && i + 1 < n)
			i++;
		st = buf_add(b, s + i, 1, ei);
	}
	return st;
}

/*
 * Skip one comment starting at *pos ('('), nesting allowed, and keep its
 * text if the current mailbox has none yet.
 */
static enum status
rp_comment(struct rp *p, size_t *pos)
{
	size_t start = *pos, i, depth = 0, a, e;
	struct buf tmp;
	enum status st = ST_OK;

	for (i = start; i < p->len; i++) {
		if (p->s[i] == '\\') {
			i++;
			continue;
		}
		if (p->s[i] == '(')
			depth++;
		else if (p->s[i] == ')' && --depth == 0)
			break;
	}
	if (i >= p->len)
		return rp_syntax(p, start, "unterminated comment");
	*pos = i + 1;
	if (p->comment.len > 0)
		return ST_OK;
	/* Trim the inner text; keep nested parentheses as they are. */
	for (a = start + 1; a < i && rp_wsp((unsigned char)p->s[a]); a++)
		;
	for (e = i; e > a && rp_wsp((unsigned char)p->s[e - 1]); e--)
		;
	if (a == e)
		return ST_OK;
	buf_init(&tmp, p->len);
	if ((st = rp_unquote(&tmp, p->s + a, e - a, p->ei)) == ST_OK)
		st = buf_add(&p->comment, tmp.data, tmp.len, p->ei);
	buf_free(&tmp);
	return st;
}

/* Lex the token at *pos, advancing *pos past it. */
static enum status
rp_lex_at(struct rp *p, size_t *pos, struct tok *t)
{
	size_t i = *pos;
	unsigned char c;
	enum status st;

	t->ws = false;
	for (;;) {
		while (i < p->len && rp_wsp((unsigned char)p->s[i])) {
			i++;
			t->ws = true;
		}
		if (i < p->len && p->s[i] == '(') {
			if ((st = rp_comment(p, &i)) != ST_OK)
				return st;
			t->ws = true;
			continue;
		}
		break;
	}
	t->off = i;
	if (i >= p->len) {
		t->type = T_EOF;
		t->len = 0;
		*pos = i;
		return ST_OK;
	}
	c = (unsigned char)p->s[i];
	if (c == '"' || c == '[') {
		char close = c == '"' ? '"' : ']';

		for (i++; i < p->len && p->s[i] != close; i++) {
			if (p->s[i] == '\\')
				i++;
			else if (close == ']' && p->s[i] == '[')
				return rp_syntax(p, i,
				    "'[' inside a domain literal");
		}
		if (i >= p->len)
			return rp_syntax(p, t->off, c == '"' ?
			    "unterminated quoted string" :
			    "unterminated domain literal");
		t->type = c == '"' ? T_QUOTED : T_DLIT;
		i++;
	} else if (rp_atom_char(c)) {
		while (i < p->len && rp_atom_char((unsigned char)p->s[i]))
			i++;
		t->type = T_ATOM;
	} else if (strchr("<>@,;:", c) != NULL) {
		t->type = c;
		i++;
	} else
		return rp_syntax(p, i, c == ')' ? "unbalanced ')'" :
		    c == ']' ? "unbalanced ']'" : "unexpected character");
	t->len = i - t->off;
	*pos = i;
	return ST_OK;
}

static enum status
rp_peek(struct rp *p, struct tok *t)
{
	size_t pos = p->pos;

	return rp_lex_at(p, &pos, t);
}

static enum status
rp_take(struct rp *p, struct tok *t)
{
	return rp_lex_at(p, &p->pos, t);
}

static bool
rp_is_word(const struct tok *t)
{
	return t->type == T_ATOM || t->type == T_QUOTED;
}

/*
 * Scan the member that starts here without consuming it: returns the
 * first of ':' (a group), '<' (a name-addr), or T_EOF (anything else,
 * ending at ',', ';' or the end).  The scan also ends where a bare
 * "local@domain" is followed by a space and a new word (the implicit
 * separator of "a@x b@y"), so a long list without commas is not scanned
 * once per member.
 */
static enum status
rp_classify(struct rp *p, int *kind)
{
	size_t pos = p->pos;
	struct tok t;
	enum status st;
	bool at = false, domain = false, dot = false;

	for (;;) {
		if ((st = rp_lex_at(p, &pos, &t)) != ST_OK)
			return st;
		if (t.type == ':' || t.type == '<') {
			*kind = t.type;
			return ST_OK;
		}
		if (t.type == ',' || t.type == ';' || t.type == T_EOF) {
			*kind = T_EOF;
			return ST_OK;
		}
		if (domain && t.ws && rp_is_word(&t) && !dot &&
		    p->s[t.off] != '.') {
			*kind = T_EOF;
			return ST_OK;
		}
		if (t.type == '@')
			at = true;
		else if (at && (t.type == T_ATOM || t.type == T_DLIT))
			domain = true;
		dot = t.type == T_ATOM && p->s[t.off + t.len - 1] == '.';
	}
}

/*
 * Collect a display name or group name up to (not including) the token
 * type stop.  Words are joined by one space where the input had space;
 * quoted strings are unquoted.  '@', '.', and domain literals are taken
 * literally, for "user@host <user@host>".
 */
static enum status
rp_phrase(struct rp *p, int stop, struct buf *name)
{
	struct tok t;
	enum status st;

	for (;;) {
		if ((st = rp_peek(p, &t)) != ST_OK)
			return st;
		if (t.type == stop)
			return ST_OK;
		if (!rp_is_word(&t) && t.type != '@' && t.type != T_DLIT)
			return rp_syntax(p, t.off, "unexpected character in a "
			    "display name");
		rp_take(p, &t);
		if (t.ws && name->len > 0 &&
		    (st = buf_add(name, " ", 1, p->ei)) != ST_OK)
			return st;
		if (t.type == T_QUOTED)
			st = rp_unquote(name, p->s + t.off + 1, t.len - 2,
			    p->ei);
		else
			st = buf_add(name, p->s + t.off, t.len, p->ei);
		if (st != ST_OK)
			return st;
	}
}

/* A dot-atom: non-empty atoms separated by single dots. */
static bool
rp_dot_atom(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (i = 0; i < n; i++) {
		if (!rp_atom_char((unsigned char)s[i]))
			return false;
		if (s[i] == '.' && s[i + 1] == '.')
			return false;
	}
	return true;
}

/*
 * Words of a local part or domain, joined.  Adjacent words must meet at
 * a dot (obs-local-part, obs-domain allow CFWS around the dots, not in
 * place of them).  *quoted says whether a quoted string was seen.
 */
static enum status
rp_dotted(struct rp *p, bool allow_quoted, struct buf *out, bool *quoted)
{
	struct tok t;
	enum status st;
	bool first = true;

	for (;;) {
		if ((st = rp_peek(p, &t)) != ST_OK)
			return st;
		if (t.type != T_ATOM && !(allow_quoted && t.type == T_QUOTED))
			return ST_OK;
		if (!first && out->len > 0 && out->data[out->len - 1] != '.' &&
		    !(t.type == T_ATOM && p->s[t.off] == '.'))
			return ST_OK;	/* no dot: the caller decides */
		rp_take(p, &t);
		first = false;
		if (t.type == T_QUOTED) {
			*quoted = true;
			st = rp_unquote(out, p->s + t.off + 1, t.len - 2,
			    p->ei);
		} else
			st = buf_add(out, p->s + t.off, t.len, p->ei);
		if (st != ST_OK)
			return st;
	}
}

/* Append a local part in its canonical form: bare if it can be. */
static enum status
rp_put_local(struct buf *addr, const struct buf *local, struct errinfo *ei)
{
	size_t i;
	enum status st;

	if (local->len > 0 && rp_dot_atom(local->data, local->len))
		return buf_add(addr, local->data, local->len, ei);
	if ((st = buf_add(addr, "\"", 1, ei)) != ST_OK)
		return st;
	for (i = 0; i < local->len; i++) {
		if ((local->data[i] == '"' || local->data[i] == '\\') &&
		    (st = buf_add(addr, "\\", 1, ei)) != ST_OK)
			return st;
		if ((st = buf_add(addr, local->data + i, 1, ei)) != ST_OK)
			return st;
	}
	return buf_add(addr, "\"", 1, ei);
}

/* addr-spec: local-part ["@" domain]; result in addr. */
static enum status
rp_addr_spec(struct rp *p, struct buf *addr, bool *has_domain)
{
	struct buf local, dom;
	struct tok t;
	bool quoted = false;
	enum status st;
	size_t start;

	buf_init(&local, p->len);
	buf_init(&dom, p->len);
	*has_domain = false;
	if ((st = rp_peek(p, &t)) != ST_OK)
		goto done;
	start = t.off;
	if (!rp_is_word(&t)) {
		st = rp_syntax(p, t.off, t.type == '@' ? "empty local part" :
		    "expected an address");
		goto done;
	}
	if ((st = rp_dotted(p, true, &local, &quoted)) != ST_OK)
		goto done;
	if (!quoted && !rp_dot_atom(local.data, local.len)) {
		st = rp_syntax(p, start, "malformed local part");
		goto done;
	}
	if ((st = rp_put_local(addr, &local, p->ei)) != ST_OK)
		goto done;
	if ((st = rp_peek(p, &t)) != ST_OK || t.type != '@')
		goto done;
	rp_take(p, &t);
	*has_domain = true;
	if ((st = rp_peek(p, &t)) != ST_OK)
		goto done;
	if (t.type == T_DLIT) {
		rp_take(p, &t);
		st = buf_add(&dom, p->s + t.off, t.len, p->ei);
	} else if (t.type == T_ATOM) {
		start = t.off;
		if ((st = rp_dotted(p, false, &dom, &quoted)) == ST_OK &&
		    !rp_dot_atom(dom.data, dom.len))
			st = rp_syntax(p, start, "malformed domain");
	} else
		st = rp_syntax(p, t.off, "expected a domain after '@'");
	if (st == ST_OK &&
	    ((st = buf_add(addr, "@", 1, p->ei)) != ST_OK ||
	    (st = buf_add(addr, dom.data, dom.len, p->ei)) != ST_OK))
		goto done;
done:
	buf_free(&local);
	buf_free(&dom);
	return st;
}

/* Append one parsed mailbox to the list. */
static enum status
rp_push(struct rp *p, struct rfc5322_list *l, size_t max, struct buf *name,
    struct buf *addr, bool has_domain, const char *group)
{
	struct rfc5322_addr *a, *v;
	size_t i, ncap;

	if (addr->len > RFC5322_ADDR_MAX)
		return st_error(p->ei, ST_LIMIT, "address list: an address "
		    "of %zu octets is longer than %d", addr->len,
		    RFC5322_ADDR_MAX);
	if (l->n >= max)
		return st_error(p->ei, ST_LIMIT, "address list: more than "
		    "%zu addresses", max);
	/*
	 * The capacity is not stored (the struct stays two fields): it is
	 * 8, then doubles, so the array is full exactly when n is 0 or a
	 * power of two from 8 on.
	 */
	if (l->n == 0 || (l->n >= 8 && (l->n & (l->n - 1)) == 0)) {
		ncap = l->n == 0 ? 8 : l->n * 2;
		if (ncap > SIZE_MAX / sizeof(*v) ||
		    (v = realloc(l->v, ncap * sizeof(*v))) == NULL)
			return st_errno(p->ei, ST_SYS, "out of memory");
		l->v = v;
	}
	a = &l->v[l->n];
	memset(a, 0, sizeof(*a));
	if ((a->addr = buf_steal(addr, p->ei)) == NULL)
		return ST_SYS;
	a->has_domain = has_domain;
	for (i = 0; a->addr[i] != '\0'; i++)
		if ((unsigned char)a->addr[i] >= 0x80)
			a->is_utf8 = true;
	if ((name->len > 0 && (a->name = buf_steal(name, p->ei)) == NULL) ||
	    (p->comment.len > 0 &&
	    (a->comment = buf_steal(&p->comment, p->ei)) == NULL) ||
	    (group != NULL && (a->group = strdup(group)) == NULL)) {
		rfc5322_addr_free(a);
		return st_errno(p->ei, ST_SYS, "out of memory");
	}
	l->n++;
	return ST_OK;
}

/*
 * Skip an obs-route ("@a,@b:" after '<', RFC 5322 section 4.4) if one
 * is there; source routes are long dead and the address alone counts.
 */
static enum status
rp_route(struct rp *p)
{
	struct buf junk;
	struct tok t;
	bool quoted = false;
	enum status st;

	if ((st = rp_peek(p, &t)) != ST_OK || t.type != '@')
		return st;
	buf_init(&junk, p->len);
	while (st == ST_OK && (t.type == '@' || t.type == ',')) {
		rp_take(p, &t);
		if (t.type == '@' && (st = rp_peek(p, &t)) == ST_OK) {
			if (t.type == T_ATOM)
				st = rp_dotted(p, false, &junk, &quoted);
			else if (t.type == T_DLIT)
				rp_take(p, &t);
			else
				st = rp_syntax(p, t.off, "malformed route");
		}
		if (st == ST_OK)
			st = rp_peek(p, &t);
	}
	buf_free(&junk);
	if (st == ST_OK && t.type != ':')
		st = rp_syntax(p, t.off, "malformed route");
	if (st == ST_OK)
		rp_take(p, &t);
	return st;
}

/* One mailbox: name-addr or addr-spec. */
static enum status
rp_mailbox(struct rp *p, struct rfc5322_list *l, size_t max,
    const char *group)
{
	struct buf name, addr;
	struct tok t;
	int kind;
	bool has_domain = false;
	enum status st;

	buf_init(&name, p->len);
	buf_init(&addr, p->len);
	if ((st = rp_classify(p, &kind)) != ST_OK)
		goto done;
	if (kind == ':') {
		st = rp_syntax(p, p->pos, "group inside a group");
		goto done;
	}
	if (kind == '<') {
		if ((st = rp_phrase(p, '<', &name)) != ST_OK)
			goto done;
		rp_take(p, &t);
		if ((st = rp_route(p)) != ST_OK ||
		    (st = rp_peek(p, &t)) != ST_OK)
			goto done;
		if (t.type == '>') {
			if (!(p->flags & RFC5322_NULL_OK)) {
				st = rp_syntax(p, t.off,
				    "empty address <> not allowed here");
				goto done;
			}
		} else if ((st = rp_addr_spec(p, &addr, &has_domain)) != ST_OK)
			goto done;
		if ((st = rp_take(p, &t)) != ST_OK)
			goto done;
		if (t.type != '>') {
			st = rp_syntax(p, t.off, "expected '>'");
			goto done;
		}
	} else if ((st = rp_addr_spec(p, &addr, &has_domain)) != ST_OK)
		goto done;
	/* What may follow a mailbox. */
	if ((st = rp_peek(p, &t)) != ST_OK)
		goto done;
	if (t.type != ',' && t.type != ';' && t.type != T_EOF &&
	    !(kind != '<' && has_domain && t.ws && rp_is_word(&t))) {
		st = rp_syntax(p, t.off, kind == T_EOF && rp_is_word(&t) ?
		    "words without an address (a display name needs <...>)" :
		    "unexpected text after an address");
		goto done;
	}
	/* Consume trailing comments so the next mailbox does not see them. */
	p->pos = t.off;
	st = rp_push(p, l, max, &name, &addr, has_domain, group);
done:
	buf_free(&name);
	buf_free(&addr);
	return st;
}

/*
 * Members up to ';' (in a group) or the end, separated by ','; empty
 * members are allowed (obs-mbox-list).  A bare address followed by a
 * space and another word starts a new member, as if a ',' were there.
 */
static enum status
rp_members(struct rp *p, struct rfc5322_list *l, size_t max,
    const char *group)
{
	struct tok t;
	enum status st;
	int kind;
	struct buf gname;

	for (;;) {
		buf_reset(&p->comment);
		if ((st = rp_peek(p, &t)) != ST_OK)
			return st;
		if (t.type == T_EOF || (group != NULL && t.type == ';'))
			return ST_OK;
		if (t.type == ',') {
			rp_take(p, &t);
			continue;
		}
		if (t.type == ';')
			return rp_syntax(p, t.off, "';' outside a group");
		if (group != NULL) {
			if ((st = rp_mailbox(p, l, max, group)) != ST_OK)
				return st;
			continue;
		}
		if ((st = rp_classify(p, &kind)) != ST_OK)
			return st;
		if (kind != ':') {
			if ((st = rp_mailbox(p, l, max, NULL)) != ST_OK)
				return st;
			continue;
		}
		/* A group: "name:" members ";". */
		buf_init(&gname, p->len);
		if ((st = rp_phrase(p, ':', &gname)) == ST_OK) {
			rp_take(p, &t);
			if (gname.len == 0)
				st = rp_syntax(p, t.off,
				    "group without a name");
		}
		if (st == ST_OK)
			st = rp_members(p, l, max, gname.data);
		buf_free(&gname);
		if (st != ST_OK)
			return st;
		/* A missing ';' at the very end is forgiven. */
		if ((st = rp_take(p, &t)) != ST_OK)
			return st;
		if (t.type == T_EOF)
			return ST_OK;
		if ((st = rp_peek(p, &t)) != ST_OK)
			return st;
		if (t.type != ',' && t.type != T_EOF)
			return rp_syntax(p, t.off,
			    "expected ',' after a group");
	}
}

enum status
rfc5322_parse_list(const char *in, size_t len, size_t max_addrs,
    unsigned flags, struct rfc5322_list *out, struct errinfo *ei)
{
	struct rp p;
	size_t i, oldn = out->n;
	enum status st;

	if (len > RFC5322_INPUT_MAX)
		return st_error(ei, ST_LIMIT, "address list: %zu octets is "
		    "longer than %d", len, RFC5322_INPUT_MAX);
	/* No control byte may reach a header or an SMTP command. */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return st_error(ei, ST_DATAERR, "address list: "
			    "control character 0x%02x at offset %zu", c, i);
	}
	memset(&p, 0, sizeof(p));
	p.s = in;
	p.len = len;
	p.flags = flags;
	p.ei = ei;
	buf_init(&p.comment, len);
	st = rp_members(&p, out, max_addrs, NULL);
	buf_free(&p.comment);
	if (st != ST_OK) {
		while (out->n > oldn)
			rfc5322_addr_free(&out->v[--out->n]);
		if (out->n == 0) {
			free(out->v);
			out->v = NULL;
		}
	}
	return st;
}

enum status
rfc5322_parse_one(const char *in, size_t len, unsigned flags,
    struct rfc5322_addr *out, struct errinfo *ei)
{
	struct rfc5322_list l = { NULL, 0 };
	struct errinfo scratch;
	enum status st;

	memset(out, 0, sizeof(*out));
	st_clear(&scratch);
	/* Parse up to two so that "a, b" is a plain syntax error. */
	st = rfc5322_parse_list(in, len, 2, flags, &l, &scratch);
	if (st == ST_LIMIT && strstr(scratch.msg, "more than 2") != NULL)
		return st_error(ei, ST_DATAERR,
		    "address list: more than one address where one is wanted");
	if (st != ST_OK)
		return st_error(ei, st, "%s", scratch.msg);
	if (l.n != 1) {
		st = st_error(ei, ST_DATAERR, "address list: %s",
		    l.n == 0 ? "no address" : "more than one address");
		rfc5322_list_free(&l);
		return st;
	}
	*out = l.v[0];
	free(l.v);
	return ST_OK;
}

void
rfc5322_addr_free(struct rfc5322_addr *a)
{
	if (a == NULL)
		return;
	free(a->name);
	free(a->comment);
	free(a->addr);
	free(a->group);
	memset(a, 0, sizeof(*a));
}

void
rfc5322_list_free(struct rfc5322_list *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++)
		rfc5322_addr_free(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

const char *
rfc5322_addr_display(const struct rfc5322_addr *a)
{
	if (a->name != NULL && a->name[0] != '\0')
		return a->name;
	if (a->comment != NULL && a->comment[0] != '\0')
		return a->comment;
	return NULL;
}

/* CR, LF, NUL and the like; TAB is white space and may stay. */
static bool
rf_has_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return true;
	return false;
}

/* Safe to write as a bare phrase: encoded words and atoms only. */
static bool
rf_bare_phrase(const char *s)
{
	if (strstr(s, "=?") == NULL)
		return false;
	for (; *s != '\0'; s++)
		if (*s != ' ' && (*s == '.' || (unsigned char)*s >= 0x80 ||
		    !rp_atom_char((unsigned char)*s)))
			return false;
	return true;
}

enum status
rfc5322_format_addr(struct buf *out, const char *name, const char *addr,
    struct errinfo *ei)
{
	size_t oldlen = out->len;
	bool inq = false;
	const char *s;
	enum status st = ST_OK;

	if (addr == NULL || rf_has_ctl(addr) || (name != NULL &&
	    rf_has_ctl(name)))
		return st_error(ei, ST_DATAERR,
		    "address or name holds a control character");
	for (s = addr; *s != '\0'; s++) {
		if (*s == '\\' && inq && s[1] != '\0')
			s++;
		else if (*s == '"')
			inq = !inq;
		else if (!inq && (*s == '<' || *s == '>' || *s == ' ' ||
		    *s == '\t'))
			return st_error(ei, ST_DATAERR,
			    "address holds '%c' outside quotes", *s);
	}
	if (inq)
		return st_error(ei, ST_DATAERR, "address has an open quote");
	if (name == NULL || name[0] == '\0')
		return buf_adds(out, addr, ei);
	if (rf_bare_phrase(name))
		st = buf_adds(out, name, ei);
	else {
		st = buf_add(out, "\"", 1, ei);
		for (s = name; *s != '\0' && st == ST_OK; s++) {
			if (*s == '"' || *s == '\\')
				st = buf_add(out, "\\", 1, ei);
			if (st == ST_OK)
				st = buf_add(out, s, 1, ei);
		}
		if (st == ST_OK)
			st = buf_add(out, "\"", 1, ei);
	}
	if (st == ST_OK && (st = buf_add(out, " <", 2, ei)) == ST_OK &&
	    (st = buf_adds(out, addr, ei)) == ST_OK)
		st = buf_add(out, ">", 1, ei);
	if (st != ST_OK) {
		out->len = oldlen;
		if (out->data != NULL)
			out->data[oldlen] = '\0';
	}
	return st;
}

enum status
rfc5322_field_split(const char *raw, size_t len, const char **name,
    size_t *namelen, struct buf *value, struct errinfo *ei)
{
	size_t i, colon, nl, start = value->len, keep;
	enum status st = ST_OK;
	unsigned char c;

	for (colon = 0; colon < len && raw[colon] != ':'; colon++)
		if (raw[colon] == '\r' || raw[colon] == '\n')
			break;
	if (colon >= len || raw[colon] != ':')
		return st_error(ei, ST_DATAERR, "header field without a colon");
	for (nl = colon; nl > 0 && rp_wsp((unsigned char)raw[nl - 1]); nl--)
		;
	if (nl == 0)
		return st_error(ei, ST_DATAERR, "header field without a name");
	for (i = 0; i < nl; i++) {
		c = (unsigned char)raw[i];
		if (c < 33 || c > 126)
			return st_error(ei, ST_DATAERR, "header field name "
			    "holds byte 0x%02x", c);
	}
	/* The line break that ends the field is not part of the value. */
	if (len > colon + 1 && raw[len - 1] == '\n') {
		len--;
		if (len > colon + 1 && raw[len - 1] == '\r')
			len--;
	}
	keep = start;
	for (i = colon + 1; i < len && st == ST_OK; i++) {
		c = (unsigned char)raw[i];
		if (c == '\r' && (i + 1 >= len || raw[i + 1] != '\n')) {
			st = st_error(ei, ST_DATAERR, "header field holds a "
			    "bare CR at offset %zu", i);
			break;
		}
		if (c == '\r') {
			i++;
			c = '\n';
		}
		if (c == '\n') {
			if (i + 1 >= len || !rp_wsp((unsigned char)raw[i + 1]))
				st = st_error(ei, ST_DATAERR, "header field "
				    "holds a line break not followed by "
				    "white space at offset %zu", i);
			continue;
		}
		if (value->len == start && rp_wsp(c))
			continue;	/* leading white space */
		st = buf_add(value, &raw[i], 1, ei);
		if (!rp_wsp(c))
			keep = value->len;
	}
	if (st != ST_OK)
		keep = start;
	value->len = keep;
	if (value->data != NULL)
		value->data[keep] = '\0';
	if (st == ST_OK) {
		*name = raw;
		*namelen = nl;
	}
	return st;
}

bool
rfc5322_name_is(const char *name, size_t namelen, const char *want)
{
	return strlen(want) == namelen && strncasecmp(name, want, namelen) == 0;
}

bool
rfc5322_field_is(const char *raw, size_t len, const char *want)
{
	size_t n = strlen(want), i;

	if (len < n + 1 || strncasecmp(raw, want, n) != 0)
		return false;
	for (i = n; i < len && rp_wsp((unsigned char)raw[i]); i++)
		;
	return i < len && raw[i] == ':';
}
