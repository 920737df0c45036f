/*
 * imap.c: the IMAP4rev1 client (RFC 3501; RFC 4959 SASL-IR, RFC 7628,
 * RFC 4315 UIDPLUS, RFC 2177 IDLE, RFC 7888 literals).  See imap.h.
 *
 * Reading.  imap_read_one() reads one whole server response: its first
 * line, and, while a line ends with a literal announcement, the literal
 * and the next line.  Untagged data is absorbed on the way (EXISTS,
 * EXPUNGE, CAPABILITY, SEARCH, BYE, OK [UIDVALIDITY], FETCH bodies), so
 * every command's caller only waits for its tag.  A FETCH response is
 * parsed token by token across its lines, and its BODY[] literal goes
 * straight to the caller's callbacks.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "conf.h"
#include "conn.h"
#include "imap.h"
#include "log.h"
#include "sasl.h"

#define IMAP_CAPS_MAX	4096
#define IMAP_SASL_MAX	(64 * 1024)
#define IMAP_AUTH_STEPS	8
#define IMAP_TEXT_MAX	256

enum imap_state {
	IS_GREETING, IS_CAPABILITY, IS_STARTTLS, IS_AUTH, IS_SELECT,
	IS_SEARCH, IS_FETCH, IS_STORE, IS_EXPUNGE, IS_IDLE, IS_LOGOUT,
	IS__COUNT
};

static const char *const state_names[IS__COUNT] = {
	[IS_GREETING] = "GREETING", [IS_CAPABILITY] = "CAPABILITY",
	[IS_STARTTLS] = "STARTTLS", [IS_AUTH] = "AUTHENTICATE",
	[IS_SELECT] = "SELECT", [IS_SEARCH] = "UID SEARCH",
	[IS_FETCH] = "UID FETCH", [IS_STORE] = "UID STORE",
	[IS_EXPUNGE] = "EXPUNGE", [IS_IDLE] = "IDLE", [IS_LOGOUT] = "LOGOUT",
};

enum resp_kind { R_UNTAGGED, R_CONT, R_TAGGED };
enum resp_cond { C_OK, C_NO, C_BAD };

struct imap {
	struct conn *c;
	char *host;
	unsigned port;
	bool usable;
	bool idling;		/* a timeout while idle is not fatal */
	enum imap_state state;
	unsigned tagn;
	char tag[16];
	char caps[IMAP_CAPS_MAX];	/* " WORD WORD ... " upper case */
	char caps_raw[IMAP_CAPS_MAX];	/* "Word Word", as received */
	char greeting[IMAP_TEXT_MAX];
	char bye[IMAP_TEXT_MAX];
	uint32_t exists;
	struct imap_mailbox *mb;	/* being filled by SELECT */
	struct imap_uids *search;	/* being filled by UID SEARCH */
	const struct imap_fetch_cb *fcb;
	void *farg;
	/* the last response read */
	enum resp_kind kind;
	enum resp_cond cond;
	char code[64];			/* its response code, e.g. "UNAVAILABLE" */
	char text[IMAP_TEXT_MAX];	/* its text, sanitised */
	struct buf cont;		/* a continuation's text */
	char *chunk;			/* IMAP_CHUNK bytes for bodies, made
					   once per session */
};

/* ------------------------------------------------------------------ */
/* Pure pieces                                                          */

void
imap_lex_init(struct imap_lex *lx, const char *s, size_t n)
{
	lx->p = s;
	lx->e = s + n;
}

static bool
is_atom_end(char c)
{
	return c == ' ' || c == '(' || c == ')' || c == '"' ||
	    (unsigned char)c < 0x20 || c == 0x7f;
}

enum imap_tk
imap_lex_next(struct imap_lex *lx, const char **s, size_t *n, uint64_t *lit)
{
	const char *p = lx->p, *start;
	uint64_t v = 0;
	int digits = 0, depth;

	*s = NULL;
	*n = 0;
	while (p < lx->e && *p == ' ')
		p++;
	if (p == lx->e) {
		lx->p = p;
		return IMAP_TK_END;
	}
	if (*p == '(' || *p == ')') {
		*s = p;
		*n = 1;
		lx->p = p + 1;
		return *p == '(' ? IMAP_TK_LP : IMAP_TK_RP;
	}
	if (*p == '"') {
		start = ++p;
		for (; p < lx->e && *p != '"'; p++) {
			if (*p == '\\') {
				if (++p == lx->e || (*p != '"' && *p != '\\'))
					return IMAP_TK_BAD;
			} else if (*p == '\r' || *p == '\n')
				return IMAP_TK_BAD;
		}
		if (p == lx->e)
			return IMAP_TK_BAD;
		*s = start;
		*n = (size_t)(p - start);
		lx->p = p + 1;
		return IMAP_TK_QUOTED;
	}
	if (*p == '{') {
		for (p++; p < lx->e && *p >= '0' && *p <= '9'; p++) {
			if (++digits > 19)
				return IMAP_TK_BAD;
			v = v * 10 + (uint64_t)(*p - '0');
		}
		if (digits == 0)
			return IMAP_TK_BAD;
		if (p < lx->e && *p == '+')
			p++;
		if (p >= lx->e || *p != '}' || p + 1 != lx->e)
			return IMAP_TK_BAD;
		*lit = v;
		lx->p = lx->e;
		return IMAP_TK_LIT;
	}
	start = p;
	while (p < lx->e && !is_atom_end(*p)) {
		if (*p == '[') {
			/* "BODY[HEADER.FIELDS (A B)]": one token. */
			for (depth = 0; p < lx->e; p++) {
				if (*p == '[')
					depth++;
				else if (*p == ']' && --depth == 0)
					break;
				else if (*p == '\r' || *p == '\n')
					return IMAP_TK_BAD;
			}
			if (p == lx->e)
				return IMAP_TK_BAD;
		}
		p++;
	}
	if (p == start)
		return IMAP_TK_BAD;
	*s = start;
	*n = (size_t)(p - start);
	lx->p = p;
	return IMAP_TK_ATOM;
}

int
imap_literal(const char *line, size_t len, uint64_t *lit)
{
	size_t i;
	uint64_t v = 0;
	int digits = 0;

	if (len < 3 || line[len - 1] != '}')
		return 0;
	i = len - 2;
	if (line[i] == '+')
		i--;
	while (i > 0 && line[i] >= '0' && line[i] <= '9') {
		i--;
		digits++;
	}
	if (line[i] != '{' || digits == 0)
		return 0;
	if (digits > 19)
		return -1;
	for (i++; line[i] >= '0' && line[i] <= '9'; i++)
		v = v * 10 + (uint64_t)(line[i] - '0');
	*lit = v;
	return 1;
}

bool
imap_u32(const char *s, size_t n, uint32_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > 10)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

static int
u32cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

bool
imap_uidset(const uint32_t *uids, size_t n, char *out, size_t outsz)
{
	uint32_t *v;
	size_t i, j, o = 0;
	int w;

	if (n == 0 || outsz == 0 || (v = malloc(n * sizeof(*v))) == NULL)
		return false;
	memcpy(v, uids, n * sizeof(*v));
	qsort(v, n, sizeof(*v), u32cmp);
	out[0] = '\0';
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && v[j] <= v[j - 1] + 1; j++)
			;
		if (v[j - 1] == v[i])
			w = snprintf(out + o, outsz - o, "%s%u", o ? "," : "",
			    (unsigned)v[i]);
		else
			w = snprintf(out + o, outsz - o, "%s%u:%u",
			    o ? "," : "", (unsigned)v[i], (unsigned)v[j - 1]);
		if (w < 0 || (size_t)w >= outsz - o) {
			free(v);
			return false;
		}
		o += (size_t)w;
	}
	free(v);
	return true;
}

bool
imap_quote(const char *s, char *out, size_t outsz)
{
	size_t o = 0;

	if (outsz < 3)
		return false;
	out[o++] = '"';
	for (; *s != '\0'; s++) {
		if (*s == '\r' || *s == '\n')
			return false;
		if (o + 4 >= outsz)
			return false;
		if (*s == '"' || *s == '\\')
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o++] = '"';
	out[o] = '\0';
	return true;
}

void
imap_uids_free(struct imap_uids *u)
{
	free(u->v);
	memset(u, 0, sizeof(*u));
}

enum status
imap_uids_add(struct imap_uids *u, uint32_t v, struct errinfo *ei)
{
	if (u->n == u->cap) {
		size_t cap = u->cap ? u->cap * 2 : 256;
		uint32_t *p = realloc(u->v, cap * sizeof(*p));
		if (p == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
		u->v = p;
		u->cap = cap;
	}
	u->v[u->n++] = v;
	return ST_OK;
}

static bool
tok_is(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* Copy printable text, at most outsz - 1 bytes. */
static void
sanitize(char *out, size_t outsz, const char *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 1 < outsz; i++)
		out[o++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ?
		    '?' : s[i];
	out[o] = '\0';
}

/* ------------------------------------------------------------------ */
/* Session plumbing                                                     */

static void
imap_set_state(struct imap *im, enum imap_state st)
{
	char note[64];
	int n;

	im->state = st;
	if (!log_verbose())
		return;
	n = snprintf(note, sizeof(note), "state: %s", state_names[st]);
	if (n > 0)
		log_wire(LOG_NOTE, note, (size_t)n, false);
}

bool
imap_usable(const struct imap *im)
{
	return im != NULL && im->usable;
}

const char *
imap_bye(const struct imap *im)
{
	return im->bye[0] != '\0' ? im->bye : NULL;
}

uint32_t
imap_exists(const struct imap *im)
{
	return im->exists;
}

struct conn *
imap_conn(const struct imap *im)
{
	return im->c;
}

const char *
imap_greeting(const struct imap *im)
{
	return im->greeting;
}

const char *
imap_caps(const struct imap *im)
{
	return im->caps_raw;
}

bool
imap_has_cap(const struct imap *im, const char *name)
{
	char w[80];

	if (strlen(name) + 3 > sizeof(w))
		return false;
	snprintf(w, sizeof(w), " %s ", name);
	return strcasestr(im->caps, w) != NULL;
}

/*
 * Keep the atoms of s (n bytes, up to a ']') one space apart, case and
 * order untouched, for imap_caps(); an atom that does not fit is left
 * out rather than cut.
 */
static void
caps_raw_set(struct imap *im, const char *s, size_t n)
{
	const char *e, *w;
	size_t o = 0, wl;

	if ((e = memchr(s, ']', n)) == NULL)
		e = s + n;
	im->caps_raw[0] = '\0';
	while (s < e) {
		while (s < e && *s == ' ')
			s++;
		for (w = s; s < e && *s != ' '; s++)
			;
		if ((wl = (size_t)(s - w)) == 0)
			break;
		if (o + (o > 0) + wl + 1 > sizeof(im->caps_raw))
			continue;
		if (o > 0)
			im->caps_raw[o++] = ' ';
		sanitize(im->caps_raw + o, sizeof(im->caps_raw) - o, w, wl);
		o += wl;
	}
}

static void
caps_set(struct imap *im, const char *s, size_t n)
{
	size_t i, o = 0;

	caps_raw_set(im, s, n);
	im->caps[o++] = ' ';
	for (i = 0; i < n && o + 2 < sizeof(im->caps); i++) {
		char c = s[i];
		if (c == ']')
			break;
		im->caps[o++] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
	}
	im->caps[o++] = ' ';
	im->caps[o] = '\0';
}

static enum status
imap_readline(struct imap *im, char **line, size_t *len, struct errinfo *ei)
{
	enum status st;

	st = conn_readline(im->c, line, len, ei);
	if (st != ST_OK && !(st == ST_TIMEOUT && im->idling))
		im->usable = false;
	return st;
}

static enum status
imap_proto(struct imap *im, struct errinfo *ei, const char *what)
{
	im->usable = false;
	return st_error(ei, ST_PROTO, "%s: malformed response (%s)", im->host,
	    what);
}

/* Read n literal bytes into nothing, or into keep (bounded). */
static enum status
imap_skip(struct imap *im, uint64_t n, struct errinfo *ei)
{
	char tmp[16 * 1024];
	size_t got;
	enum status st;

	while (n > 0) {
		st = conn_read(im->c, tmp, n > sizeof(tmp) ? sizeof(tmp) :
		    (size_t)n, &got, ei);
		if (st != ST_OK) {
			im->usable = false;
			return st;
		}
		n -= got;
	}
	return ST_OK;
}

/* Stream a body literal of n bytes to the fetch callbacks. */
static enum status
imap_stream(struct imap *im, uint64_t n, struct errinfo *ei)
{
	char *tmp;
	size_t got;
	enum status st = ST_OK;

	if (im->chunk == NULL && (im->chunk = malloc(IMAP_CHUNK)) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	tmp = im->chunk;
	while (n > 0) {
		st = conn_read(im->c, tmp, n > IMAP_CHUNK ? IMAP_CHUNK :
		    (size_t)n, &got, ei);
		if (st != ST_OK)
			break;
		n -= got;
		if ((st = im->fcb->write(im->farg, tmp, got, ei)) != ST_OK)
			break;
	}
	if (st != ST_OK)
		im->usable = false;
	return st;
}

/* Status from a response code and condition. */
static enum status
imap_cond_status(const struct imap *im)
{
	if (im->cond == C_BAD)
		return ST_PROTO;
	if (strcasecmp(im->code, "UNAVAILABLE") == 0 ||
	    strcasecmp(im->code, "INUSE") == 0 ||
	    strcasecmp(im->code, "LIMIT") == 0 ||
	    strcasecmp(im->code, "SERVERBUG") == 0 ||
	    strcasecmp(im->code, "OVERQUOTA") == 0)
		return ST_TEMPFAIL;
	if (strcasecmp(im->code, "AUTHENTICATIONFAILED") == 0 ||
	    strcasecmp(im->code, "AUTHORIZATIONFAILED") == 0 ||
	    strcasecmp(im->code, "EXPIRED") == 0)
		return ST_AUTH;
	if (strcasecmp(im->code, "NONEXISTENT") == 0)
		return ST_CONFIG;
	/* Gmail's "NO Some messages could not be FETCHed" and its kin:
	 * the next run will do; not the end of the world. */
	return ST_TEMPFAIL;
}

/*
 * Parse "OK/NO/BAD/BYE/PREAUTH [CODE args] text" at s: condition, code
 * and text into im.  Returns the word's length, or 0 if it is none.
 */
static void
resp_text(struct imap *im, const char *s, size_t n)
{
	const char *p = s, *e = s + n, *ce;
	size_t cn;

	im->code[0] = '\0';
	if (p < e && *p == '[') {
		ce = memchr(p, ']', (size_t)(e - p));
		if (ce != NULL) {
			cn = strcspn(p + 1, " ]");
			if (p + 1 + cn > ce)
				cn = (size_t)(ce - p - 1);
			sanitize(im->code, sizeof(im->code), p + 1, cn);
			if (tok_is(p + 1, cn, "CAPABILITY"))
				caps_set(im, p + 1 + cn, (size_t)(ce - p - 1 -
				    cn));
			else if (im->mb != NULL && (tok_is(p + 1, cn,
			    "UIDVALIDITY") || tok_is(p + 1, cn, "UIDNEXT"))) {
				const char *a = p + 1 + cn + 1;
				uint32_t v;
				if (a < ce && imap_u32(a, (size_t)(ce - a),
				    &v)) {
					if (tok_is(p + 1, cn, "UIDVALIDITY"))
						im->mb->uidvalidity = v;
					else
						im->mb->uidnext = v;
				}
			} else if (im->mb != NULL && tok_is(p + 1, cn,
			    "READ-ONLY"))
				im->mb->readonly = true;
			p = ce + 1;
			while (p < e && *p == ' ')
				p++;
		}
	}
	sanitize(im->text, sizeof(im->text), p, (size_t)(e - p));
}

/*
 * The rest of a FETCH response after "* N FETCH ", across literals and
 * lines.  line/len is the current line (owned by conn until the next
 * read).
 */
static enum status
imap_fetch_resp(struct imap *im, char *line, size_t len, struct errinfo *ei)
{
	struct imap_lex lx;
	enum imap_tk tk;
	const char *s;
	size_t n;
	uint64_t lit = 0, bodysize = 0;
	char item[64];
	int depth = 0, vdepth = 0;
	bool want_name = true, have_uid = false, body = false, started = false;
	uint32_t uid = 0;
	enum status st;

	item[0] = '\0';
	imap_lex_init(&lx, line, len);
	for (;;) {
		tk = imap_lex_next(&lx, &s, &n, &lit);
		if (tk == IMAP_TK_BAD) {
			st = imap_proto(im, ei, "FETCH");
			goto fail;
		}
		if (tk == IMAP_TK_END) {
			if (depth == 0 && started)
				break;
			st = imap_proto(im, ei, "FETCH ends early");
			goto fail;
		}
		if (!started) {
			if (tk != IMAP_TK_LP) {
				st = imap_proto(im, ei, "FETCH without (");
				goto fail;
			}
			started = true;
			depth = 1;
			continue;
		}
		if (depth == 0) {
			st = imap_proto(im, ei, "data after FETCH )");
			goto fail;
		}
		if (tk == IMAP_TK_LIT) {
			bool is_body = depth == 1 && !want_name &&
			    im->fcb != NULL && (tok_is(item, strlen(item),
			    "BODY[]") || tok_is(item, strlen(item),
			    "RFC822"));
			if (is_body) {
				if (body) {
					st = imap_proto(im, ei, "two bodies");
					goto fail;
				}
				if ((st = im->fcb->begin(im->farg, ei)) !=
				    ST_OK) {
					im->usable = false;
					goto out;
				}
				body = true;
				bodysize = lit;
				if ((st = imap_stream(im, lit, ei)) != ST_OK)
					goto fail;
			} else if ((st = imap_skip(im, lit, ei)) != ST_OK)
				goto fail;
			if ((st = imap_readline(im, &line, &len, ei)) != ST_OK)
				goto fail;
			imap_lex_init(&lx, line, len);
			if (depth == 1)
				want_name = true;
			continue;
		}
		if (tk == IMAP_TK_LP) {
			if (depth == 1 && want_name) {
				st = imap_proto(im, ei, "FETCH item name");
				goto fail;
			}
			if (depth == 1)
				vdepth = 1;
			if (++depth > 64) {
				st = imap_proto(im, ei, "nesting");
				goto fail;
			}
			continue;
		}
		if (tk == IMAP_TK_RP) {
			depth--;
			if (depth == 1 && vdepth) {
				vdepth = 0;
				want_name = true;
			} else if (depth == 0 && !want_name) {
				st = imap_proto(im, ei, "FETCH item without "
				    "value");
				goto fail;
			}
			continue;
		}
		if (depth > 1)
			continue;
		if (want_name) {
			if (tk != IMAP_TK_ATOM) {
				st = imap_proto(im, ei, "FETCH item name");
				goto fail;
			}
			sanitize(item, sizeof(item), s, n);
			want_name = false;
			continue;
		}
		/* A value at depth 1. */
		if (tok_is(item, strlen(item), "UID")) {
			if (tk != IMAP_TK_ATOM || !imap_u32(s, n, &uid) ||
			    uid == 0) {
				st = imap_proto(im, ei, "UID value");
				goto fail;
			}
			have_uid = true;
		}
		want_name = true;
	}
	if (body) {
		if (!have_uid) {
			im->fcb->abort(im->farg);
			im->usable = false;
			return st_error(ei, ST_PROTO, "%s: FETCH response "
			    "without UID", im->host);
		}
		if ((st = im->fcb->end(im->farg, uid, bodysize, ei)) != ST_OK) {
			im->usable = false;
			return st;
		}
	}
	return ST_OK;
fail:
	if (body)
		im->fcb->abort(im->farg);
out:
	return st;
}

/* Skip the literals of a response we do not parse, up to its last line. */
static enum status
imap_skip_rest(struct imap *im, char **line, size_t *len, struct errinfo *ei)
{
	uint64_t lit;
	enum status st;
	int r;

	while ((r = imap_literal(*line, *len, &lit)) != 0) {
		if (r < 0)
			return imap_proto(im, ei, "literal size");
		if ((st = imap_skip(im, lit, ei)) != ST_OK ||
		    (st = imap_readline(im, line, len, ei)) != ST_OK)
			return st;
	}
	return ST_OK;
}

static enum status
imap_untagged(struct imap *im, char *line, size_t len, struct errinfo *ei)
{
	const char *p = line + 2, *e = line + len, *w;
	size_t wl;
	uint32_t num, v;
	enum status st;

	wl = strcspn(p, " ");
	if (p + wl > e)
		wl = (size_t)(e - p);
	if (imap_u32(p, wl, &num)) {
		w = p + wl + (p + wl < e);
		wl = strcspn(w, " ");
		if (tok_is(w, wl, "EXISTS")) {
			im->exists = num;
			if (im->mb != NULL)
				im->mb->exists = num;
		} else if (tok_is(w, wl, "EXPUNGE")) {
			if (im->exists > 0)
				im->exists--;
		} else if (tok_is(w, wl, "FETCH")) {
			const char *r = w + wl + (w + wl < e);
			return imap_fetch_resp(im, line + (r - line),
			    (size_t)(e - r), ei);
		}
		return imap_skip_rest(im, &line, &len, ei);
	}
	if ((st = imap_skip_rest(im, &line, &len, ei)) != ST_OK)
		return st;
	/* The line may have moved; parse its last line only from here. */
	p = line + 2;
	e = line + len;
	if (len < 2)
		return ST_OK;
	wl = strcspn(p, " ");
	w = p + wl + (p + wl < e);
	if (tok_is(p, wl, "CAPABILITY"))
		caps_set(im, w, (size_t)(e - w));
	else if (tok_is(p, wl, "SEARCH") && im->search != NULL) {
		struct imap_lex lx;
		enum imap_tk tk;
		const char *s;
		size_t n;
		uint64_t lit;

		imap_lex_init(&lx, w, (size_t)(e - w));
		while ((tk = imap_lex_next(&lx, &s, &n, &lit)) ==
		    IMAP_TK_ATOM) {
			if (!imap_u32(s, n, &v) || v == 0)
				return imap_proto(im, ei, "SEARCH");
			if ((st = imap_uids_add(im->search, v, ei)) != ST_OK)
				return st;
		}
		/* "(MODSEQ n)" after the numbers (CONDSTORE) is fine. */
		if (tk != IMAP_TK_END && tk != IMAP_TK_LP)
			return imap_proto(im, ei, "SEARCH");
	} else if (tok_is(p, wl, "BYE")) {
		sanitize(im->bye, sizeof(im->bye), w, (size_t)(e - w));
		if (im->bye[0] == '\0')
			snprintf(im->bye, sizeof(im->bye), "(no text)");
		/* The server closes now; whatever follows is not ours. */
	} else if (tok_is(p, wl, "OK") || tok_is(p, wl, "NO") ||
	    tok_is(p, wl, "BAD") || tok_is(p, wl, "PREAUTH"))
		resp_text(im, w, (size_t)(e - w));
	return ST_OK;
}

/*
 * Read one response.  im->kind says what it was; for a tagged one,
 * im->cond/code/text; for a continuation, im->cont holds its text.
 */
static enum status
imap_read_one(struct imap *im, struct errinfo *ei)
{
	char *line, *sp;
	size_t len, wl;
	enum status st;

	if ((st = imap_readline(im, &line, &len, ei)) != ST_OK)
		return st;
	if (len >= 1 && line[0] == '+') {
		im->kind = R_CONT;
		buf_wipe(&im->cont);
		buf_init(&im->cont, IMAP_SASL_MAX);
		if (len >= 2)
			return buf_add(&im->cont, line + 2, len - 2, ei);
		return ST_OK;
	}
	if (len >= 2 && line[0] == '*' && line[1] == ' ') {
		im->kind = R_UNTAGGED;
		return imap_untagged(im, line, len, ei);
	}
	im->kind = R_TAGGED;
	if ((sp = memchr(line, ' ', len)) == NULL)
		return imap_proto(im, ei, "no tag");
	if ((size_t)(sp - line) != strlen(im->tag) ||
	    memcmp(line, im->tag, (size_t)(sp - line)) != 0)
		return imap_proto(im, ei, "unknown tag");
	sp++;
	wl = strcspn(sp, " ");
	if (tok_is(sp, wl, "OK"))
		im->cond = C_OK;
	else if (tok_is(sp, wl, "NO"))
		im->cond = C_NO;
	else if (tok_is(sp, wl, "BAD"))
		im->cond = C_BAD;
	else
		return imap_proto(im, ei, "tagged status");
	sp += wl;
	if (*sp == ' ')
		sp++;
	if ((st = imap_skip_rest(im, &line, &len, ei)) != ST_OK)
		return st;
	if (sp > line + len)
		sp = line + len;
	resp_text(im, sp, (size_t)(line + len - sp));
	return ST_OK;
}

/* Send a command under a new tag. */
static enum status __attribute__((format(printf, 4, 5)))
imap_cmd(struct imap *im, bool secret, struct errinfo *ei, const char *fmt,
    ...)
{
	char line[2048];
	enum status st;
	va_list ap;
	int n;

	if (!im->usable)
		return st_error(ei, ST_NET, "%s: IMAP session no longer usable",
		    im->host);
	snprintf(im->tag, sizeof(im->tag), "A%04u", ++im->tagn % 10000);
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return st_error(ei, ST_LIMIT, "IMAP command too long");
	st = conn_cmd(im->c, secret, ei, "%s %s", im->tag, line);
	if (st != ST_OK)
		im->usable = false;
	return st;
}

/* Wait for the tagged reply; fail unless OK (with the text in ei). */
static enum status
imap_wait(struct imap *im, const char *what, struct errinfo *ei)
{
	enum status st;

	for (;;) {
		if ((st = imap_read_one(im, ei)) != ST_OK) {
			if (st == ST_NET && im->bye[0] != '\0')
				st_context(ei, "server said BYE (%s)", im->bye);
			return st;
		}
		if (im->kind == R_TAGGED)
			break;
		if (im->kind == R_CONT)
			return imap_proto(im, ei, "unexpected continuation");
	}
	if (im->cond == C_OK)
		return ST_OK;
	if (im->cond == C_BAD)
		im->usable = false;
	return st_error(ei, imap_cond_status(im), "%s: %s refused: %s%s%s%s",
	    im->host, what, im->code[0] ? "[" : "", im->code,
	    im->code[0] ? "] " : "", im->text);
}

static enum status
imap_capability(struct imap *im, struct errinfo *ei)
{
	enum status st;

	imap_set_state(im, IS_CAPABILITY);
	im->caps[0] = '\0';
	im->caps_raw[0] = '\0';
	if ((st = imap_cmd(im, false, ei, "CAPABILITY")) != ST_OK)
		return st;
	return imap_wait(im, "CAPABILITY", ei);
}

/* ------------------------------------------------------------------ */
/* Session                                                              */

enum status
imap_open(struct imap **out, const struct conn_target *t, struct errinfo *ei)
{
	struct imap *im;
	enum status st;

	*out = NULL;
	if ((st = conn_target_check(t, "imap", ei)) != ST_OK)
		return st;
	if ((im = calloc(1, sizeof(*im))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	buf_init(&im->cont, IMAP_SASL_MAX);
	im->port = t->port;
	if ((im->host = strdup(t->host)) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto fail;
	}
	imap_set_state(im, IS_GREETING);
	if ((st = conn_open_target(&im->c, t, "imap", IMAP_LINE_MAX, ei)) !=
	    ST_OK)
		goto fail;
	im->usable = true;
	snprintf(im->tag, sizeof(im->tag), "*");	/* no tagged reply is expected yet */
	if ((st = imap_read_one(im, ei)) != ST_OK)
		goto fail;
	if (im->kind != R_UNTAGGED) {
		st = imap_proto(im, ei, "greeting");
		goto fail;
	}
	/* Kept for imap_greeting(): im->text is the next response's soon. */
	snprintf(im->greeting, sizeof(im->greeting), "%s", im->text);
	if (im->bye[0] != '\0') {
		st = st_error(ei, ST_TEMPFAIL, "%s refuses the connection: %s",
		    t->host, im->bye);
		goto fail;
	}
	if (im->caps[0] == '\0' && (st = imap_capability(im, ei)) != ST_OK)
		goto fail;
	if (t->tls == TLSM_STARTTLS) {
		if (!imap_has_cap(im, "STARTTLS")) {
			st = st_error(ei, ST_TLS, "the server does not offer "
			    "STARTTLS; refusing to go on without TLS");
			goto fail;
		}
		imap_set_state(im, IS_STARTTLS);
		if ((st = imap_cmd(im, false, ei, "STARTTLS")) != ST_OK ||
		    (st = imap_wait(im, "STARTTLS", ei)) != ST_OK)
			goto fail;
		if ((st = conn_starttls(im->c, t->tls_ctx, ei)) != ST_OK)
			goto fail;
		/* RFC 3501 6.2.1: what was said in clear is forgotten. */
		if ((st = imap_capability(im, ei)) != ST_OK)
			goto fail;
	}
	*out = im;
	return ST_OK;
fail:
	st_context(ei, "%s:%u", t->host, t->port);
	imap_close(im);
	return st;
}

static enum status
imap_secret_line(struct imap *im, const struct buf *b, struct errinfo *ei)
{
	enum status st;

	st = conn_cmd(im->c, true, ei, "%s", b->data != NULL ? b->data : "");
	if (st != ST_OK)
		im->usable = false;
	return st;
}

enum status
imap_auth(struct imap *im, enum auth_mech mech, const char *user,
    const char *secret, bool *token_rejected, struct errinfo *ei)
{
	struct sasl sa;
	struct buf ir, resp;
	const char *name = sasl_mech_name(mech);
	char capname[64];
	enum status st;
	bool ir_sent, sasl_ir;
	int steps = 0;

	memset(&sa, 0, sizeof(sa));
	buf_init(&ir, IMAP_SASL_MAX);
	buf_init(&resp, IMAP_SASL_MAX);
	if (token_rejected != NULL)
		*token_rejected = false;
	if (!im->usable)
		return st_error(ei, ST_NET, "%s: IMAP session no longer usable",
		    im->host);
	if ((st = conn_secret_ok(im->c, ei)) != ST_OK)
		return st;
	snprintf(capname, sizeof(capname), "AUTH=%s", name);
	if (!imap_has_cap(im, capname))
		return st_error(ei, ST_CONFIG, "%s does not offer AUTHENTICATE "
		    "%s (capabilities:%s)", im->host, name, im->caps);
	sasl_ir = imap_has_cap(im, "SASL-IR");

	imap_set_state(im, IS_AUTH);
	if ((st = sasl_init(&sa, mech, user, secret, im->host, im->port,
	    ei)) != ST_OK || (st = sasl_initial(&sa, &ir, ei)) != ST_OK)
		goto done;
	snprintf(im->tag, sizeof(im->tag), "A%04u", ++im->tagn % 10000);
	if (ir.len > 0 && sasl_inline(sasl_ir ? SASL_FRAME_IMAP_IR :
	    SASL_FRAME_IMAP, mech, ir.len)) {
		st = conn_cmd(im->c, true, ei, "%s AUTHENTICATE %s %s", im->tag,
		    name, ir.data);
		ir_sent = true;
	} else {
		st = conn_cmd(im->c, false, ei, "%s AUTHENTICATE %s", im->tag,
		    name);
		ir_sent = ir.len == 0;
	}
	if (st != ST_OK) {
		im->usable = false;
		goto done;
	}
	for (;;) {
		if ((st = imap_read_one(im, ei)) != ST_OK)
			goto done;
		if (im->kind == R_TAGGED)
			break;
		if (im->kind != R_CONT)
			continue;
		if (++steps > IMAP_AUTH_STEPS) {
			st = imap_proto(im, ei, "too many AUTHENTICATE "
			    "challenges");
			goto done;
		}
		if (!ir_sent) {
			ir_sent = true;
			if ((st = imap_secret_line(im, &ir, ei)) != ST_OK)
				goto done;
			continue;
		}
		buf_wipe(&resp);
		buf_init(&resp, IMAP_SASL_MAX);
		st = sasl_step(&sa, im->cont.data != NULL ? im->cont.data : "",
		    im->cont.len, &resp, ei);
		if (st != ST_OK) {
			/* RFC 3501 6.2.2: "*" cancels. */
			if (conn_cmd(im->c, false, NULL, "*") == ST_OK) {
				struct errinfo tmp;
				st_clear(&tmp);
				while (imap_read_one(im, &tmp) == ST_OK &&
				    im->kind != R_TAGGED)
					;
			}
			goto done;
		}
		if ((st = imap_secret_line(im, &resp, ei)) != ST_OK)
			goto done;
	}
	if (im->cond == C_OK) {
		st = ST_OK;
		/* Servers announce more once authenticated (UIDPLUS...). */
		if (strcasecmp(im->code, "CAPABILITY") != 0)
			st = imap_capability(im, ei);
		goto done;
	}
	if (im->cond == C_BAD) {
		im->usable = false;
		st = st_error(ei, ST_PROTO, "%s: AUTHENTICATE %s: %s",
		    im->host, name, im->text);
		goto done;
	}
	/* Refused, unless the server said why it is temporary. */
	st = im->code[0] != '\0' ? imap_cond_status(im) : ST_AUTH;
	if (st != ST_TEMPFAIL)
		st = ST_AUTH;
	st_error(ei, st, "%s: AUTHENTICATE %s refused%s%s: %s%s%s%s",
	    im->host, name, sa.fail_msg[0] ? ": " : "", sa.fail_msg,
	    im->code[0] ? "[" : "", im->code, im->code[0] ? "] " : "",
	    im->text);
	if (st == ST_AUTH && token_rejected != NULL &&
	    (mech == MECH_XOAUTH2 || mech == MECH_OAUTHBEARER))
		*token_rejected = true;
done:
	buf_wipe(&ir);
	buf_wipe(&resp);
	buf_wipe(&im->cont);
	buf_init(&im->cont, IMAP_SASL_MAX);
	sasl_free(&sa);
	return st;
}

enum status
imap_select(struct imap *im, const char *folder, bool readonly,
    struct imap_mailbox *mb, struct errinfo *ei)
{
	char q[1100];
	enum status st;

	memset(mb, 0, sizeof(*mb));
	if (strlen(folder) > 1000 || !imap_quote(folder, q, sizeof(q)))
		return st_error(ei, ST_USAGE, "unusable folder name");
	imap_set_state(im, IS_SELECT);
	im->mb = mb;
	im->exists = 0;
	st = imap_cmd(im, false, ei, "%s %s", readonly ? "EXAMINE" : "SELECT",
	    q);
	if (st == ST_OK)
		st = imap_wait(im, readonly ? "EXAMINE" : "SELECT", ei);
	if (st == ST_OK && readonly)
		mb->readonly = true;
	if (st == ST_TEMPFAIL && im->code[0] == '\0' && im->usable) {
		/* A plain NO to SELECT: most servers' way of saying the
		 * folder is not there, which is the user's to fix. */
		ei->st = ST_CONFIG;
		st = ST_CONFIG;
	}
	im->mb = NULL;
	return st;
}

enum status
imap_search(struct imap *im, uint32_t lo, uint32_t hi, bool unseen,
    struct imap_uids *out, struct errinfo *ei)
{
	enum status st;

	imap_set_state(im, IS_SEARCH);
	im->search = out;
	st = imap_cmd(im, false, ei, "UID SEARCH %u:%u%s", (unsigned)lo,
	    (unsigned)hi, unseen ? " UNSEEN" : "");
	if (st == ST_OK)
		st = imap_wait(im, "UID SEARCH", ei);
	im->search = NULL;
	return st;
}

enum status
imap_fetch(struct imap *im, const uint32_t *uids, size_t n,
    const struct imap_fetch_cb *cb, void *arg, struct errinfo *ei)
{
	char set[12 * 1000 + 1];
	enum status st;

	if (n == 0)
		return ST_OK;
	if (n > 1000 || !imap_uidset(uids, n, set, sizeof(set)))
		return st_error(ei, ST_LIMIT, "too many UIDs for one FETCH");
	imap_set_state(im, IS_FETCH);
	im->fcb = cb;
	im->farg = arg;
	st = imap_cmd(im, false, ei, "UID FETCH %s (UID BODY.PEEK[])", set);
	if (st == ST_OK)
		st = imap_wait(im, "UID FETCH", ei);
	im->fcb = NULL;
	im->farg = NULL;
	return st;
}

enum status
imap_store(struct imap *im, const uint32_t *uids, size_t n, const char *flag,
    struct errinfo *ei)
{
	char set[12 * 1000 + 1];
	enum status st;

	if (n == 0)
		return ST_OK;
	if (n > 1000 || !imap_uidset(uids, n, set, sizeof(set)))
		return st_error(ei, ST_LIMIT, "too many UIDs for one STORE");
	imap_set_state(im, IS_STORE);
	st = imap_cmd(im, false, ei, "UID STORE %s +FLAGS.SILENT (%s)", set,
	    flag);
	if (st == ST_OK)
		st = imap_wait(im, "UID STORE", ei);
	return st;
}

enum status
imap_expunge(struct imap *im, const uint32_t *uids, size_t n,
    struct errinfo *ei)
{
	char set[12 * 1000 + 1];
	enum status st;

	if (n == 0)
		return ST_OK;
	imap_set_state(im, IS_EXPUNGE);
	if (imap_has_cap(im, "UIDPLUS")) {
		if (n > 1000 || !imap_uidset(uids, n, set, sizeof(set)))
			return st_error(ei, ST_LIMIT, "too many UIDs");
		st = imap_cmd(im, false, ei, "UID EXPUNGE %s", set);
	} else
		st = imap_cmd(im, false, ei, "EXPUNGE");
	if (st == ST_OK)
		st = imap_wait(im, "EXPUNGE", ei);
	return st;
}

enum status
imap_idle(struct imap *im, int secs, bool *news, struct errinfo *ei)
{
	struct timespec now, end;
	struct errinfo tmp;
	uint32_t known = im->exists;
	enum status st;

	*news = false;
	if (!imap_has_cap(im, "IDLE"))
		return st_error(ei, ST_CONFIG, "%s does not offer IDLE",
		    im->host);
	imap_set_state(im, IS_IDLE);
	if ((st = imap_cmd(im, false, ei, "IDLE")) != ST_OK)
		return st;
	/* The continuation first (or a refusal). */
	for (;;) {
		if ((st = imap_read_one(im, ei)) != ST_OK)
			return st;
		if (im->kind == R_CONT)
			break;
		if (im->kind == R_TAGGED)
			return st_error(ei, imap_cond_status(im), "%s: IDLE "
			    "refused: %s", im->host, im->text);
	}
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += secs;
	im->idling = true;
	for (;;) {
		if (im->exists > known) {
			*news = true;
			break;
		}
		if (im->bye[0] != '\0') {
			im->idling = false;
			im->usable = false;
			return st_error(ei, ST_NET, "%s closed the session: %s",
			    im->host, im->bye);
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec >= end.tv_sec)
			break;
		st_clear(&tmp);
		st = imap_read_one(im, &tmp);
		if (st == ST_TIMEOUT)
			continue;
		if (st != ST_OK) {
			im->idling = false;
			im->usable = false;
			if (im->bye[0] != '\0')
				return st_error(ei, ST_NET, "%s closed the "
				    "session: %s", im->host, im->bye);
			return st_error(ei, tmp.st, "%s", tmp.msg);
		}
		if (im->kind != R_UNTAGGED) {
			im->idling = false;
			return imap_proto(im, ei, "during IDLE");
		}
	}
	im->idling = false;
	if ((st = conn_cmd(im->c, false, ei, "DONE")) != ST_OK) {
		im->usable = false;
		return st;
	}
	return imap_wait(im, "IDLE", ei);
}

enum status
imap_logout(struct imap *im, struct errinfo *ei)
{
	enum status st;

	if (im == NULL || !im->usable)
		return ST_OK;
	imap_set_state(im, IS_LOGOUT);
	if ((st = imap_cmd(im, false, ei, "LOGOUT")) != ST_OK)
		return st;
	st = imap_wait(im, "LOGOUT", ei);
	im->usable = false;
	return st;
}

void
imap_close(struct imap *im)
{
	if (im == NULL)
		return;
	conn_close(im->c);
	buf_wipe(&im->cont);
	free(im->chunk);
	free(im->host);
	free(im);
}
