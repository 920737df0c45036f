/*
 * smtp.c: the SMTP submission client.
 *
 * Implements RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 4954 (AUTH),
 * RFC 2920 (PIPELINING), RFC 1870 (SIZE), RFC 6152 (8BITMIME), RFC 6531
 * (SMTPUTF8), RFC 3461 (DSN), RFC 2034 and RFC 3463 (enhanced status
 * codes).  See smtp.h for the behaviour promised to callers.
 *
 * CHUNKING (BDAT, RFC 3030) is parsed but not used: BDAT would spare us
 * the dot-stuffing pass, which measures at about 8 ms for a 30 MB
 * message (memchr runs between line ends), far below what the network
 * costs, while BDAT adds a reply to wait for per chunk when the server
 * does not pipeline them.  DATA it is.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"
#include "log.h"
#include "sasl.h"
#include "smtp.h"

/* Bytes read from the message per chunk; the stuffed output is at most 2x. */
#define SMTP_CHUNK		(64 * 1024)
/* RCPT commands per pipelined group: bounds what the server must buffer. */
#define SMTP_RCPT_WINDOW	100
/* Longest MAIL/RCPT command we build (RFC 5321 allows 512; paths <= 256). */
#define SMTP_CMDLINE_MAX	2048
/* AUTH challenges answered before we call the server confused. */
#define SMTP_AUTH_STEPS_MAX	8
/* Longest SASL payload we build or accept (Microsoft tokens are KBs). */
#define SMTP_SASL_MAX		(64 * 1024)

struct smtp {
	struct conn *c;
	char *host;
	unsigned port;
	char *ehlo_name;
	struct smtp_caps caps;
	char greeting[SMTP_TEXT_MAX];
	bool usable;
	enum smtp_phase phase;
	/* Raw text of the last 334 line (AUTH challenges only). */
	struct buf challenge;
};

static const char *const phase_names[SMTP_PH__COUNT] = {
	[SMTP_PH_GREETING]	= "GREETING",
	[SMTP_PH_EHLO]		= "EHLO",
	[SMTP_PH_STARTTLS]	= "STARTTLS",
	[SMTP_PH_AUTH]		= "AUTH",
	[SMTP_PH_MAIL]		= "MAIL",
	[SMTP_PH_RCPT]		= "RCPT",
	[SMTP_PH_DATA]		= "DATA",
	[SMTP_PH_DOT]		= "END OF DATA",
	[SMTP_PH_RSET]		= "RSET",
	[SMTP_PH_QUIT]		= "QUIT",
};

/* In the order of enum auth_mech (conf.h). */
static const char *const mech_names[] = {
	[MECH_XOAUTH2]		= "XOAUTH2",
	[MECH_OAUTHBEARER]	= "OAUTHBEARER",
	[MECH_PLAIN]		= "PLAIN",
	[MECH_LOGIN]		= "LOGIN",
};
#define NMECHS (sizeof(mech_names) / sizeof(mech_names[0]))

/* ------------------------------------------------------------------ */
/* Pure helpers                                                         */

const char *
smtp_phase_name(enum smtp_phase ph)
{
	if ((unsigned)ph >= SMTP_PH__COUNT)
		return "?";
	return phase_names[ph];
}

void
smtp_reply_init(struct smtp_reply *r)
{
	memset(r, 0, sizeof(*r));
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

size_t
smtp_enhanced_parse(const char *text, int code, char *enh)
{
	size_t i = 0, n;
	int part;

	enh[0] = '\0';
	if (code / 100 != 2 && code / 100 != 4 && code / 100 != 5)
		return 0;
	if (text[0] != '0' + code / 100 || text[1] != '.')
		return 0;
	i = 2;
	/* subject and detail: 1 to 3 digits each, separated by a dot */
	for (part = 0; part < 2; part++) {
		for (n = 0; n < 3 && is_digit(text[i]); n++)
			i++;
		if (n == 0)
			return 0;
		if (part == 0) {
			if (text[i] != '.')
				return 0;
			i++;
		}
	}
	if (text[i] != '\0' && text[i] != ' ')
		return 0;
	/* "5.123.123" is at most 9 bytes: it fits SMTP_ENH_MAX. */
	memcpy(enh, text, i);
	enh[i] = '\0';
	while (text[i] == ' ')
		i++;
	return i;
}

/* Append a reply line's text to r->text, one line, printable. */
static void
reply_append(struct smtp_reply *r, const char *p, size_t n)
{
	size_t len = strlen(r->text), i;

	if (n == 0)
		return;
	if (len > 0 && len + 1 < sizeof(r->text))
		r->text[len++] = ' ';
	for (i = 0; i < n && len + 1 < sizeof(r->text); i++) {
		unsigned char c = (unsigned char)p[i];
		r->text[len++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	r->text[len] = '\0';
}

enum status
smtp_reply_feed(struct smtp_reply *r, const char *line, size_t len,
    const char **text_out, struct errinfo *ei)
{
	char enh[SMTP_ENH_MAX], head[16];
	const char *text;
	size_t tlen, skip, hn;
	bool last;
	int code;

	if (r->done)
		return st_error(ei, ST_PROTO, "reply line after the last one");
	if (memchr(line, '\0', len) != NULL)
		return st_error(ei, ST_PROTO, "reply line holds a NUL byte");
	if (len < 3 || line[0] < '2' || line[0] > '5' ||
	    line[1] < '0' || line[1] > '5' || !is_digit(line[2]))
		return st_error(ei, ST_PROTO, "malformed reply line (no code)");
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return st_error(ei, ST_PROTO,
		    "malformed reply line (bad separator after the code)");
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->nlines > 0 && code != r->code)
		return st_error(ei, ST_PROTO,
		    "reply lines with different codes (%d, then %d)", r->code,
		    code);
	if (r->nlines >= SMTP_REPLY_LINES_MAX)
		return st_error(ei, ST_PROTO, "reply longer than %d lines",
		    SMTP_REPLY_LINES_MAX);
	last = len == 3 || line[3] == ' ';
	text = len > 3 ? line + 4 : line + len;
	tlen = len > 3 ? len - 4 : 0;
	if (text_out != NULL)
		*text_out = text;

	/* The line need not be NUL-terminated: parse a bounded copy. */
	hn = tlen < sizeof(head) - 1 ? tlen : sizeof(head) - 1;
	memcpy(head, text, hn);
	head[hn] = '\0';
	skip = smtp_enhanced_parse(head, code, enh);
	if (r->nlines == 0) {
		r->code = code;
		memcpy(r->enh, enh, sizeof(r->enh));
	} else if (skip > 0 && strcmp(enh, r->enh) != 0) {
		/* A different code on a later line is text, not ours to drop. */
		skip = 0;
	}
	reply_append(r, text + skip, tlen - skip);
	r->nlines++;
	r->done = last;
	return ST_OK;
}

void
smtp_caps_reset(struct smtp_caps *c)
{
	memset(c, 0, sizeof(*c));
}

static bool
kw_is(const char *s, size_t n, const char *kw)
{
	return strlen(kw) == n && strncasecmp(s, kw, n) == 0;
}

/* Add an AUTH mechanism name (upper-cased, once) and its bit. */
static void
caps_add_mech(struct smtp_caps *c, const char *w, size_t n)
{
	char name[64];
	size_t i, len, at;
	const char *p;

	if (n == 0 || n >= sizeof(name))
		return;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)w[i];
		if (ch <= 0x20 || ch >= 0x7f)
			return;
		name[i] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 32) : (char)ch;
	}
	name[n] = '\0';
	for (i = 0; i < NMECHS; i++)
		if (strcmp(name, mech_names[i]) == 0)
			c->auth |= 1u << i;
	/* Already listed (servers often send both AUTH forms)? */
	for (p = c->auth_names; *p != '\0'; ) {
		size_t wl = strcspn(p, " ");
		if (wl == n && memcmp(p, name, n) == 0)
			return;
		p += wl;
		while (*p == ' ')
			p++;
	}
	len = strlen(c->auth_names);
	at = len;
	if (len + (len > 0) + n + 1 > sizeof(c->auth_names))
		return;
	if (len > 0)
		c->auth_names[at++] = ' ';
	memcpy(c->auth_names + at, name, n + 1);
}

void
smtp_caps_line(struct smtp_caps *c, const char *text)
{
	size_t kl = strcspn(text, " =");
	const char *arg = text + kl;
	uint64_t v;

	if (*arg == ' ' || *arg == '=')
		arg++;
	if (kw_is(text, kl, "AUTH")) {
		c->flags |= SMTP_CAP_AUTH;
		while (*arg != '\0') {
			size_t wl = strcspn(arg, " ");
			caps_add_mech(c, arg, wl);
			arg += wl;
			while (*arg == ' ')
				arg++;
		}
	} else if (kw_is(text, kl, "SIZE")) {
		c->flags |= SMTP_CAP_SIZE;
		c->size_max = 0;
		v = 0;
		while (*arg == ' ')
			arg++;
		for (; is_digit(*arg); arg++) {
			if (v > (UINT64_MAX - 9) / 10) {
				v = 0;	/* absurd: treat as "no limit" */
				break;
			}
			v = v * 10 + (uint64_t)(*arg - '0');
		}
		c->size_max = v;
	} else if (kw_is(text, kl, "STARTTLS"))
		c->flags |= SMTP_CAP_STARTTLS;
	else if (kw_is(text, kl, "PIPELINING"))
		c->flags |= SMTP_CAP_PIPELINING;
	else if (kw_is(text, kl, "8BITMIME"))
		c->flags |= SMTP_CAP_8BITMIME;
	else if (kw_is(text, kl, "SMTPUTF8"))
		c->flags |= SMTP_CAP_SMTPUTF8;
	else if (kw_is(text, kl, "DSN"))
		c->flags |= SMTP_CAP_DSN;
	else if (kw_is(text, kl, "ENHANCEDSTATUSCODES"))
		c->flags |= SMTP_CAP_ENHANCED;
	else if (kw_is(text, kl, "CHUNKING"))
		c->flags |= SMTP_CAP_CHUNKING;
}

bool
smtp_xtext(const char *s, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 33 && c <= 126 && c != '+' && c != '=') {
			if (o + 1 >= outsz)
				return false;
			out[o++] = (char)c;
		} else {
			if (o + 3 >= outsz)
				return false;
			out[o++] = '+';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (o >= outsz)
		return false;
	out[o] = '\0';
	return true;
}

void
smtp_dot_init(struct smtp_dot *d)
{
	d->bol = true;
	d->cr = false;
}

size_t
smtp_dot_stuff(struct smtp_dot *d, const char *in, size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		char c;

		if (!d->cr && !d->bol) {
			/* Fast path: copy up to the next CR or LF at once. */
			const char *p = in + i, *e;
			size_t run = n - i;

			if ((e = memchr(p, '\n', run)) != NULL)
				run = (size_t)(e - p);
			if ((e = memchr(p, '\r', run)) != NULL)
				run = (size_t)(e - p);
			memcpy(out + o, p, run);
			o += run;
			i += run;
			if (i == n)
				break;
		}
		c = in[i];
		if (d->cr) {
			/* CR LF, or a bare CR that we end as a line anyway. */
			out[o++] = '\r';
			out[o++] = '\n';
			d->cr = false;
			d->bol = true;
			if (c == '\n')
				continue;
		}
		if (c == '\r') {
			d->cr = true;
			continue;
		}
		if (c == '\n') {
			/* A bare LF: never let one through (SMTP smuggling). */
			out[o++] = '\r';
			out[o++] = '\n';
			d->bol = true;
			continue;
		}
		if (d->bol && c == '.')
			out[o++] = '.';
		out[o++] = c;
		d->bol = false;
	}
	return o;
}

size_t
smtp_dot_end(struct smtp_dot *d, char *out)
{
	size_t o = 0;

	if (d->cr || !d->bol) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	d->cr = false;
	d->bol = true;
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}

/* Does the reply text mention word (case-insensitive)? */
static bool
text_has(const struct smtp_reply *r, const char *word)
{
	return strcasestr(r->text, word) != NULL;
}

/* Enhanced code X.4.5: "mail system congestion", Gmail's quota. */
static bool
enh_is(const struct smtp_reply *r, const char *subdetail)
{
	return r->enh[0] != '\0' && strcmp(r->enh + 1, subdetail) == 0;
}

enum status
smtp_status(enum smtp_phase ph, const struct smtp_reply *r)
{
	if (r->code < 400)
		return ST_OK;
	if (r->code == 421 || r->code / 100 == 4 || enh_is(r, ".4.5"))
		return ST_TEMPFAIL;
	if (r->code == 530)
		return text_has(r, "STARTTLS") ? ST_CONFIG : ST_AUTH;
	switch (ph) {
	case SMTP_PH_STARTTLS:
		return ST_TLS;
	case SMTP_PH_AUTH:
		/* 504: mechanism unknown; 538: encryption required. */
		if (r->code == 504 || r->code == 538)
			return ST_CONFIG;
		return ST_AUTH;
	case SMTP_PH_MAIL:
		/* RFC 1870: 552 to MAIL with SIZE= is "too large". */
		return r->code == 552 ? ST_DATAERR : ST_PERMFAIL;
	case SMTP_PH_RCPT:
		/* RFC 5321 4.5.3.1.10: 552 here means too many recipients. */
		return r->code == 552 ? ST_TEMPFAIL : ST_NOUSER;
	case SMTP_PH_DATA:
	case SMTP_PH_DOT:
		return ST_DATAERR;
	default:
		return ST_PERMFAIL;
	}
}

/* ------------------------------------------------------------------ */
/* Session plumbing                                                     */

static void
smtp_set_phase(struct smtp *s, enum smtp_phase ph)
{
	char note[64];
	int n;

	s->phase = ph;
	if (!log_verbose())
		return;
	n = snprintf(note, sizeof(note), "state: %s", smtp_phase_name(ph));
	if (n > 0)
		log_wire(LOG_NOTE, note, (size_t)n, false);
}

/*
 * A plain explanation for the replies whose text does not say what to
 * do, or NULL.
 */
static const char *
smtp_explain(const struct smtp *s, enum smtp_phase ph,
    const struct smtp_reply *r, char *tmp, size_t tmpsz)
{
	if (enh_is(r, ".4.5") || (r->code == 550 && text_has(r, "quota")) ||
	    text_has(r, "sending limit"))
		return "sending quota reached (Gmail allows about 500 "
		    "messages a day, 2,000 for Workspace); this is temporary, "
		    "the message can be sent again once the quota resets";
	if (r->code == 454 && (text_has(r, "login attempts") ||
	    (ph == SMTP_PH_AUTH && strcmp(r->enh, "4.7.0") == 0)))
		return "the server throttles logins (too many authentications "
		    "in a short time); temporary, try again later";
	if (r->code == 421)
		return "the server is closing the connection; try again later";
	if (r->code == 530 && text_has(r, "STARTTLS"))
		return "the server requires STARTTLS before this command "
		    "(set smtp_tls = starttls, or tls for port 465)";
	if (r->code == 530)
		return "the server requires authentication first";
	if (r->code == 552 && ph != SMTP_PH_RCPT) {
		if (s != NULL && s->caps.size_max > 0) {
			snprintf(tmp, tmpsz, "message too large for the server "
			    "(limit %llu)",
			    (unsigned long long)s->caps.size_max);
			return tmp;
		}
		return "message too large for the server";
	}
	if (r->code == 552 && ph == SMTP_PH_RCPT)
		return "too many recipients for one message; temporary";
	if (r->code == 534)
		return "the server wants another kind of login (an app "
		    "password or a sign-in through the web)";
	return NULL;
}

/* Record that ei now holds our failure with this reply's code. */
static void
smtp_set_code(struct errinfo *ei, bool was_ok, int code)
{
	if (ei != NULL && was_ok && ei->st != ST_OK)
		ei->code = code;
}

/*
 * Record a failed reply: what we asked, the server's answer, and the
 * explanation if any.  Returns the status.
 */
static enum status
smtp_fail(struct smtp *s, enum smtp_phase ph, const struct smtp_reply *r,
    const char *what, struct errinfo *ei)
{
	char tmp[128], text[sizeof(r->text)];
	const char *expl;
	enum status st;
	bool was_ok = ei == NULL || ei->st == ST_OK;

	st = smtp_status(ph, r);
	if (st == ST_OK) {
		/* A success code where none was expected: out of step. */
		st = ST_PROTO;
		if (s != NULL)
			s->usable = false;
	}
	expl = smtp_explain(s, ph, r, tmp, sizeof(tmp));
	/* A reply to AUTH may echo the credential back at us. */
	snprintf(text, sizeof(text), "%s", r->text);
	if (ph == SMTP_PH_AUTH)
		log_redact_tokens(text);
	if (expl != NULL)
		st_error(ei, st, "%s: %s: %d%s%s %s", expl, what, r->code,
		    r->enh[0] != '\0' ? " " : "", r->enh, text);
	else
		st_error(ei, st, "%s: %d%s%s %s", what, r->code,
		    r->enh[0] != '\0' ? " " : "", r->enh, text);
	smtp_set_code(ei, was_ok, r->code);
	return st;
}

/*
 * Read one whole reply to phase ph.  For EHLO the capabilities are
 * learnt on the way; for AUTH the raw text of a 334 is kept in
 * s->challenge.  Any failure here leaves the session unusable.
 */
static enum status
smtp_read(struct smtp *s, enum smtp_phase ph, struct smtp_reply *r,
    struct errinfo *ei)
{
	const char *text;
	enum status st;
	char *line;
	size_t len;

	smtp_reply_init(r);
	buf_wipe(&s->challenge);
	buf_init(&s->challenge, SMTP_SASL_MAX);
	while (!r->done) {
		/* One reply is one operation: its lines share one deadline. */
		st = r->nlines == 0 ? conn_readline(s->c, &line, &len, ei) :
		    conn_readline_more(s->c, &line, &len, ei);
		if (st != ST_OK) {
			s->usable = false;
			st_context(ei, "waiting for the reply to %s",
			    smtp_phase_name(ph));
			return st;
		}
		if ((st = smtp_reply_feed(r, line, len, &text, ei)) != ST_OK) {
			s->usable = false;
			st_context(ei, "reply to %s", smtp_phase_name(ph));
			return st;
		}
		if (ph == SMTP_PH_EHLO && r->code == 250) {
			if (r->nlines == 1) {
				size_t i, n = strcspn(text, " ");
				if (n >= sizeof(s->caps.domain))
					n = sizeof(s->caps.domain) - 1;
				for (i = 0; i < n; i++)
					s->caps.domain[i] = (text[i] < 0x21 ||
					    text[i] > 0x7e) ? '?' : text[i];
				s->caps.domain[n] = '\0';
			} else
				smtp_caps_line(&s->caps, text);
		}
		if (ph == SMTP_PH_AUTH && r->code == 334 && r->nlines == 1 &&
		    (st = buf_add(&s->challenge, text,
		    (size_t)(line + len - text), ei)) != ST_OK) {
			s->usable = false;
			return st;
		}
	}
	if (r->code == 421)
		s->usable = false;
	return ST_OK;
}

/* Flush and read the reply, expecting a code of the class of want. */
static enum status
smtp_expect(struct smtp *s, enum smtp_phase ph, int want, const char *what,
    struct smtp_reply *r, struct errinfo *ei)
{
	enum status st;

	if ((st = smtp_read(s, ph, r, ei)) != ST_OK)
		return st;
	/* 220, 334 and 354 exactly; for 250 and 221 any 2xx will do. */
	if (r->code == want || (want / 100 == 2 && want != 220 &&
	    r->code / 100 == 2))
		return ST_OK;
	return smtp_fail(s, ph, r, what, ei);
}

static enum status
smtp_cmd(struct smtp *s, bool secret, struct errinfo *ei, const char *line)
{
	enum status st;

	if ((st = conn_cmd(s->c, secret, ei, "%s", line)) != ST_OK)
		s->usable = false;
	return st;
}

static enum status
smtp_ehlo(struct smtp *s, struct errinfo *ei)
{
	struct smtp_reply r;
	char cmd[300];
	enum status st;

	smtp_set_phase(s, SMTP_PH_EHLO);
	smtp_caps_reset(&s->caps);
	snprintf(cmd, sizeof(cmd), "EHLO %s", s->ehlo_name);
	if ((st = smtp_cmd(s, false, ei, cmd)) != ST_OK)
		return st;
	st = smtp_expect(s, SMTP_PH_EHLO, 250, "EHLO refused", &r, ei);
	if (st != ST_OK)
		smtp_caps_reset(&s->caps);
	return st;
}

/* A name we can put on the EHLO line: no spaces, no control bytes. */
static bool
ehlo_name_ok(const char *n)
{
	if (*n == '\0' || strlen(n) > 255)
		return false;
	for (; *n != '\0'; n++)
		if ((unsigned char)*n <= 0x20 || (unsigned char)*n >= 0x7f)
			return false;
	return true;
}

/* ------------------------------------------------------------------ */
/* Session                                                              */

enum status
smtp_open(struct smtp **out, const struct conn_target *t,
    const char *ehlo_name, struct errinfo *ei)
{
	struct smtp_reply r;
	struct smtp *s = NULL;
	const char *ename;
	enum status st;

	*out = NULL;
	ename = ehlo_name != NULL ? ehlo_name : "localhost";
	if ((st = conn_target_check(t, "smtp", ei)) != ST_OK)
		return st;
	if (!ehlo_name_ok(ename))
		return st_error(ei, ST_CONFIG, "smtp: '%s' cannot be an EHLO "
		    "name (domain)", ename);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	buf_init(&s->challenge, SMTP_SASL_MAX);
	s->port = t->port;
	if ((s->host = strdup(t->host)) == NULL ||
	    (s->ehlo_name = strdup(ename)) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto fail;
	}
	smtp_set_phase(s, SMTP_PH_GREETING);
	if ((st = conn_open_target(&s->c, t, "smtp", SMTP_LINE_MAX, ei)) !=
	    ST_OK)
		goto fail;
	s->usable = true;
	if ((st = smtp_expect(s, SMTP_PH_GREETING, 220, "greeting", &r,
	    ei)) != ST_OK)
		goto fail;
	snprintf(s->greeting, sizeof(s->greeting), "%s", r.text);
	if ((st = smtp_ehlo(s, ei)) != ST_OK)
		goto fail;

	if (t->tls == TLSM_STARTTLS) {
		if (!(s->caps.flags & SMTP_CAP_STARTTLS)) {
			st = st_error(ei, ST_TLS, "the server does not offer "
			    "STARTTLS; refusing to go on without TLS");
			goto fail;
		}
		smtp_set_phase(s, SMTP_PH_STARTTLS);
		if ((st = smtp_cmd(s, false, ei, "STARTTLS")) != ST_OK ||
		    (st = smtp_expect(s, SMTP_PH_STARTTLS, 220,
		    "STARTTLS refused", &r, ei)) != ST_OK)
			goto fail;
		if ((st = conn_starttls(s->c, t->tls_ctx, ei)) != ST_OK) {
			s->usable = false;
			goto fail;
		}
		/* RFC 3207 4.2: forget what the server said in clear. */
		if ((st = smtp_ehlo(s, ei)) != ST_OK)
			goto fail;
	}
	*out = s;
	return ST_OK;
fail:
	st_context(ei, "%s:%u", t->host, t->port);
	if (s != NULL && s->c != NULL && s->usable) {
		/* Say goodbye, best effort: nothing secret has been sent. */
		if (conn_cmd(s->c, false, NULL, "QUIT") == ST_OK)
			(void)conn_flush(s->c, NULL);
	}
	smtp_close(s);
	return st;
}

const struct smtp_caps *
smtp_caps(const struct smtp *s)
{
	return &s->caps;
}

const char *
smtp_greeting(const struct smtp *s)
{
	return s->greeting;
}

struct conn *
smtp_conn(const struct smtp *s)
{
	return s->c;
}

bool
smtp_usable(const struct smtp *s)
{
	return s != NULL && s->usable;
}

static enum status
smtp_not_usable(struct errinfo *ei)
{
	return st_error(ei, ST_NET, "SMTP session no longer usable");
}

/* ------------------------------------------------------------------ */
/* AUTH                                                                 */

static bool
mech_is_oauth(enum auth_mech m)
{
	return m == MECH_XOAUTH2 || m == MECH_OAUTHBEARER;
}

/* Queue a line that carries credentials; the transcript shows its length. */
static enum status
smtp_secret_line(struct smtp *s, const char *prefix, const struct buf *b,
    struct errinfo *ei)
{
	enum status st;

	st = conn_cmd(s->c, true, ei, "%s%s", prefix,
	    b->data != NULL ? b->data : "");
	if (st != ST_OK)
		s->usable = false;
	return st;
}

enum status
smtp_auth(struct smtp *s, enum auth_mech mech, const char *user,
    const char *secret, bool *token_rejected, struct errinfo *ei)
{
	struct sasl sa;
	struct buf ir, resp;
	struct smtp_reply r;
	const char *name;
	char what[64];
	enum status st;
	bool ir_sent;
	int steps = 0;

	memset(&sa, 0, sizeof(sa));
	buf_init(&ir, SMTP_SASL_MAX);
	buf_init(&resp, SMTP_SASL_MAX);
	if (token_rejected != NULL)
		*token_rejected = false;
	if (!smtp_usable(s))
		return smtp_not_usable(ei);
	if ((unsigned)mech >= NMECHS)
		return st_error(ei, ST_CONFIG, "unknown AUTH mechanism");
	name = mech_names[mech];
	snprintf(what, sizeof(what), "AUTH %s refused", name);

	if ((st = conn_secret_ok(s->c, ei)) != ST_OK)
		return st;
	if (!(s->caps.flags & SMTP_CAP_AUTH) && !conn_is_tls(s->c) &&
	    (s->caps.flags & SMTP_CAP_STARTTLS))
		return st_error(ei, ST_CONFIG, "%s offers AUTH only after "
		    "STARTTLS: set smtp_tls = starttls", s->host);
	if (!(s->caps.flags & SMTP_CAP_AUTH))
		return st_error(ei, ST_CONFIG, "%s offers no AUTH at all",
		    s->host);
	if (!(s->caps.auth & (1u << mech)))
		return st_error(ei, ST_CONFIG, "%s does not offer AUTH %s "
		    "(it offers: %s)", s->host, name, s->caps.auth_names);

	smtp_set_phase(s, SMTP_PH_AUTH);
	if ((st = sasl_init(&sa, mech, user, secret, s->host, s->port,
	    ei)) != ST_OK ||
	    (st = sasl_initial(&sa, &ir, ei)) != ST_OK)
		goto done;

	if (ir.len > 0 && sasl_inline(SASL_FRAME_SMTP, mech, ir.len)) {
		char prefix[32];
		snprintf(prefix, sizeof(prefix), "AUTH %s ", name);
		st = smtp_secret_line(s, prefix, &ir, ei);
		ir_sent = true;
	} else {
		st = conn_cmd(s->c, false, ei, "AUTH %s", name);
		if (st != ST_OK)
			s->usable = false;
		/* LOGIN has no initial response: its prompts are steps. */
		ir_sent = ir.len == 0;
	}
	if (st != ST_OK)
		goto done;

	for (;;) {
		if ((st = smtp_read(s, SMTP_PH_AUTH, &r, ei)) != ST_OK)
			goto done;
		if (r.code != 334)
			break;
		if (++steps > SMTP_AUTH_STEPS_MAX) {
			st = st_error(ei, ST_PROTO, "AUTH %s: more than %d "
			    "challenges", name, SMTP_AUTH_STEPS_MAX);
			s->usable = false;
			goto done;
		}
		if (!ir_sent) {
			/* The initial response, now that the server asked. */
			st = smtp_secret_line(s, "", &ir, ei);
			ir_sent = true;
			if (st != ST_OK)
				goto done;
			continue;
		}
		buf_wipe(&resp);
		buf_init(&resp, SMTP_SASL_MAX);
		st = sasl_step(&sa, s->challenge.data != NULL ?
		    s->challenge.data : "", s->challenge.len, &resp, ei);
		if (st != ST_OK) {
			struct smtp_reply r2;
			/* RFC 4954: "*" cancels; the server answers 501. */
			if (smtp_cmd(s, false, NULL, "*") == ST_OK)
				(void)smtp_read(s, SMTP_PH_AUTH, &r2, NULL);
			st_context(ei, "AUTH %s", name);
			goto done;
		}
		if ((st = smtp_secret_line(s, "", &resp, ei)) != ST_OK)
			goto done;
	}

	if (r.code == 235) {
		st = ST_OK;
		goto done;
	}
	if (r.code / 100 != 4 && r.code / 100 != 5) {
		st = smtp_fail(s, SMTP_PH_AUTH, &r, what, ei);
		s->usable = false;
		goto done;
	}
	if (sa.fail_msg[0] != '\0') {
		char what2[sizeof(what) + sizeof(sa.fail_msg) + 4];
		snprintf(what2, sizeof(what2), "%s: %s", what, sa.fail_msg);
		st = smtp_fail(s, SMTP_PH_AUTH, &r, what2, ei);
	} else
		st = smtp_fail(s, SMTP_PH_AUTH, &r, what, ei);
	/*
	 * Only a refusal of the credential means the token: an error
	 * challenge, or 535.  Another 5xx (Postfix's "500 5.5.6 SASL
	 * response limit exceeded") would come back the same after a
	 * refresh.
	 */
	if (st == ST_AUTH && mech_is_oauth(mech) && token_rejected != NULL &&
	    (sa.fail != SASL_FAIL_NONE || r.code == 535))
		*token_rejected = true;
done:
	buf_wipe(&ir);
	buf_wipe(&resp);
	buf_wipe(&s->challenge);
	buf_init(&s->challenge, SMTP_SASL_MAX);
	sasl_free(&sa);
	return st;
}

/* ------------------------------------------------------------------ */
/* Transactions                                                         */

void
smtp_result_free(struct smtp_result *res)
{
	if (res == NULL)
		return;
	free(res->rcpt);
	memset(res, 0, sizeof(*res));
}

/* No control bytes, no angle brackets: nothing that could end the command. */
static bool
addr_ok(const char *a)
{
	if (strlen(a) > 1000)
		return false;
	for (; *a != '\0'; a++) {
		unsigned char c = (unsigned char)*a;
		if (c < 0x20 || c == 0x7f || c == '<' || c == '>')
			return false;
	}
	return true;
}

static bool
has_8bit(const char *a)
{
	for (; *a != '\0'; a++)
		if ((unsigned char)*a >= 0x80)
			return true;
	return false;
}

/* Build "MAIL FROM:<sender> params" in b. */
static enum status
smtp_mail_cmd(struct smtp *s, const struct smtp_envelope *env, bool utf8,
    struct buf *b, struct errinfo *ei)
{
	const struct smtp_caps *c = &s->caps;
	enum status st;

	if ((st = buf_printf(b, ei, "MAIL FROM:<%s>", env->sender)) != ST_OK)
		return st;
	if ((c->flags & SMTP_CAP_SIZE) && env->size > 0 &&
	    (st = buf_printf(b, ei, " SIZE=%llu",
	    (unsigned long long)env->size)) != ST_OK)
		return st;
	if (c->flags & SMTP_CAP_8BITMIME) {
		if (env->body == SMTP_BODY_8BITMIME)
			st = buf_adds(b, " BODY=8BITMIME", ei);
		else if (env->body == SMTP_BODY_7BIT)
			st = buf_adds(b, " BODY=7BIT", ei);
		if (st != ST_OK)
			return st;
	} else if (env->body == SMTP_BODY_8BITMIME) {
		static const char note[] = "server lacks 8BITMIME; sending "
		    "8-bit data without BODY=";
		log_wire(LOG_NOTE, note, sizeof(note) - 1, false);
	}
	if (utf8 && (st = buf_adds(b, " SMTPUTF8", ei)) != ST_OK)
		return st;
	if (c->flags & SMTP_CAP_DSN) {
		if (env->ret != SMTP_RET_NONE &&
		    (st = buf_adds(b, env->ret == SMTP_RET_HDRS ?
		    " RET=HDRS" : " RET=FULL", ei)) != ST_OK)
			return st;
		if (env->envid != NULL && env->envid[0] != '\0') {
			char x[3 * 100 + 1];
			if (strlen(env->envid) > 100 ||
			    !smtp_xtext(env->envid, x, sizeof(x)))
				return st_error(ei, ST_USAGE, "ENVID longer "
				    "than 100 characters");
			if ((st = buf_printf(b, ei, " ENVID=%s", x)) != ST_OK)
				return st;
		}
	}
	return ST_OK;
}

static enum status
smtp_rcpt_cmd(struct smtp *s, const struct smtp_envelope *env,
    const char *rcpt, struct buf *b, struct errinfo *ei)
{
	unsigned n = env->notify;
	enum status st;

	buf_reset(b);
	if ((st = buf_printf(b, ei, "RCPT TO:<%s>", rcpt)) != ST_OK)
		return st;
	if (!(s->caps.flags & SMTP_CAP_DSN) || n == 0)
		return ST_OK;
	if (n & SMTP_NOTIFY_NEVER)
		return buf_adds(b, " NOTIFY=NEVER", ei);
	return buf_printf(b, ei, " NOTIFY=%s%s%s%s%s",
	    (n & SMTP_NOTIFY_SUCCESS) ? "SUCCESS" : "",
	    (n & SMTP_NOTIFY_SUCCESS) && (n & (SMTP_NOTIFY_FAILURE |
	    SMTP_NOTIFY_DELAY)) ? "," : "",
	    (n & SMTP_NOTIFY_FAILURE) ? "FAILURE" : "",
	    (n & SMTP_NOTIFY_FAILURE) && (n & SMTP_NOTIFY_DELAY) ? "," : "",
	    (n & SMTP_NOTIFY_DELAY) ? "DELAY" : "");
}

/* Remember a RCPT reply in the result. */
static void
rcpt_record(struct smtp_rcpt_result *rr, enum status st,
    const struct smtp_reply *r)
{
	rr->st = st;
	rr->code = r->code;
	snprintf(rr->text, sizeof(rr->text), "%d%s%s %s", r->code,
	    r->enh[0] != '\0' ? " " : "", r->enh, r->text);
}

/*
 * Read the replies to RCPTs [from, to).  A session that failed stops the
 * reading (st != ST_OK); refusals are only recorded.
 */
static enum status
smtp_rcpt_replies(struct smtp *s, struct smtp_result *res, size_t from,
    size_t to, struct errinfo *ei)
{
	struct smtp_reply r;
	enum status st;
	size_t i;

	for (i = from; i < to; i++) {
		if ((st = smtp_read(s, SMTP_PH_RCPT, &r, ei)) != ST_OK)
			return st;
		if (r.code / 100 == 2) {
			rcpt_record(&res->rcpt[i], ST_OK, &r);
			res->naccepted++;
		} else if (r.code >= 400)
			rcpt_record(&res->rcpt[i], smtp_status(SMTP_PH_RCPT,
			    &r), &r);
		else {
			/* 3xx to RCPT: the server is out of step with us. */
			rcpt_record(&res->rcpt[i], ST_PROTO, &r);
			s->usable = false;
			return smtp_fail(s, SMTP_PH_RCPT, &r,
			    "unexpected reply to RCPT", ei);
		}
		if (!s->usable) {
			/* 421: the server is gone; the rest never came. */
			return smtp_fail(s, SMTP_PH_RCPT, &r,
			    "server closed the session", ei);
		}
	}
	return ST_OK;
}

/*
 * Stream the message, dot-stuffed, then the final dot.  *wfail tells a
 * failed write to the server from a failed read of the message.
 */
static enum status
smtp_data_stream(struct smtp *s, int fd, struct smtp_result *res,
    bool *wfail, struct errinfo *ei)
{
	struct smtp_dot d;
	char *in = NULL, *out = NULL;
	enum status st = ST_OK;
	size_t k;
	ssize_t n;

	if ((in = malloc(SMTP_CHUNK)) == NULL ||
	    (out = malloc(2 * SMTP_CHUNK + 8)) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto done;
	}
	*wfail = false;
	smtp_dot_init(&d);
	for (;;) {
		n = read(fd, in, SMTP_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			st = st_errno(ei, ST_SYS, "reading the message");
			goto done;
		}
		if (n == 0)
			break;
		k = smtp_dot_stuff(&d, in, (size_t)n, out);
		if ((st = conn_write(s->c, out, k, ei)) != ST_OK) {
			*wfail = true;
			goto done;
		}
		res->octets += k;
	}
	k = smtp_dot_end(&d, out);
	if (log_verbose()) {
		char note[80];
		int m = snprintf(note, sizeof(note), "[message: %llu octets]",
		    (unsigned long long)res->octets);
		if (m > 0)
			log_wire(LOG_NOTE, note, (size_t)m, false);
		log_wire(LOG_SEND, ".", 1, false);
	}
	if ((st = conn_write(s->c, out, k, ei)) != ST_OK) {
		*wfail = true;
		goto done;
	}
	res->octets += k;
	res->dot_sent = true;
done:
	free(in);
	free(out);
	return st;
}

/*
 * The server hung up while we were sending the message.  Servers that
 * refuse a message in mid-stream (552 too large, 554 policy) say why
 * before they close; if that reply is still readable, it is the better
 * diagnosis than "connection reset".  Only after ST_NET: a peer that
 * stalled (ST_TIMEOUT) would make us wait a second timeout for nothing.
 */
static enum status
smtp_data_refused(struct smtp *s, struct smtp_reply *r, enum status st,
    struct errinfo *ei)
{
	struct errinfo tmp;
	enum status st2;

	st_clear(&tmp);
	st2 = smtp_read(s, SMTP_PH_DOT, r, &tmp);
	if (st2 == ST_OK && r->code >= 400) {
		if (ei != NULL && ei->st == st) {
			/* Replace "send failed" with the server's reason. */
			st_clear(ei);
		}
		return smtp_fail(s, SMTP_PH_DOT, r,
		    "message refused while being sent", ei);
	}
	st_context(ei, "sending the message");
	return st;
}

/* RSET after a refused transaction, keeping the first failure in ei. */
static void
smtp_reset_quietly(struct smtp *s)
{
	struct errinfo tmp;

	st_clear(&tmp);
	if (s->usable)
		(void)smtp_rset(s, &tmp);
}

enum status
smtp_send(struct smtp *s, const struct smtp_envelope *env, int msg_fd,
    struct smtp_result *res, struct errinfo *ei)
{
	struct smtp_reply r;
	struct buf cmd;
	enum status st;
	bool utf8, pipe, wfail;
	size_t i, j, first_bad;
	char what[SMTP_TEXT_MAX];

	memset(res, 0, sizeof(*res));
	smtp_reply_init(&r);
	buf_init(&cmd, SMTP_CMDLINE_MAX);
	if (!smtp_usable(s))
		return smtp_not_usable(ei);
	if (env->nrcpts == 0 || env->rcpts == NULL)
		return st_error(ei, ST_USAGE, "no recipients");
	if (env->sender == NULL || !addr_ok(env->sender))
		return st_error(ei, ST_USAGE, "invalid envelope sender");
	utf8 = env->smtputf8 || has_8bit(env->sender);
	for (i = 0; i < env->nrcpts; i++) {
		if (env->rcpts[i] == NULL || !addr_ok(env->rcpts[i]) ||
		    env->rcpts[i][0] == '\0')
			return st_error(ei, ST_USAGE,
			    "invalid recipient address (#%zu)", i + 1);
		utf8 = utf8 || has_8bit(env->rcpts[i]);
	}
	if (utf8 && !(s->caps.flags & SMTP_CAP_SMTPUTF8))
		return st_error(ei, ST_PERMFAIL, "%s does not offer SMTPUTF8, "
		    "which non-ASCII addresses need", s->host);
	if ((s->caps.flags & SMTP_CAP_SIZE) && s->caps.size_max > 0 &&
	    env->size > s->caps.size_max)
		return st_error(ei, ST_DATAERR, "message too large for the "
		    "server (limit %llu, message %llu)",
		    (unsigned long long)s->caps.size_max,
		    (unsigned long long)env->size);
	if ((res->rcpt = calloc(env->nrcpts, sizeof(*res->rcpt))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	res->nrcpts = env->nrcpts;
	pipe = (s->caps.flags & SMTP_CAP_PIPELINING) != 0;

	/* MAIL, then RCPTs: in one write per window with PIPELINING. */
	smtp_set_phase(s, SMTP_PH_MAIL);
	if ((st = smtp_mail_cmd(s, env, utf8, &cmd, ei)) != ST_OK ||
	    (st = smtp_cmd(s, false, ei, cmd.data)) != ST_OK)
		goto done;
	if (!pipe) {
		snprintf(what, sizeof(what), "MAIL FROM:<%s> refused",
		    env->sender);
		if ((st = smtp_expect(s, SMTP_PH_MAIL, 250, what, &r,
		    ei)) != ST_OK)
			goto done;
	}
	for (i = 0; i < env->nrcpts; i = j) {
		j = pipe ? i + SMTP_RCPT_WINDOW : i + 1;
		if (j > env->nrcpts)
			j = env->nrcpts;
		if (pipe || i == 0)
			smtp_set_phase(s, SMTP_PH_RCPT);
		for (size_t k = i; k < j; k++)
			if ((st = smtp_rcpt_cmd(s, env, env->rcpts[k], &cmd,
			    ei)) != ST_OK ||
			    (st = smtp_cmd(s, false, ei, cmd.data)) != ST_OK)
				goto done;
		if (pipe && i == 0) {
			/* The MAIL reply comes first. */
			snprintf(what, sizeof(what), "MAIL FROM:<%s> refused",
			    env->sender);
			if ((st = smtp_read(s, SMTP_PH_MAIL, &r, ei)) != ST_OK)
				goto done;
			if (r.code / 100 != 2) {
				struct errinfo tmp;
				st = smtp_fail(s, SMTP_PH_MAIL, &r, what, ei);
				/* Drain the RCPT replies (503s) to stay in step. */
				st_clear(&tmp);
				if (s->usable)
					(void)smtp_rcpt_replies(s, res, i, j,
					    &tmp);
				memset(res->rcpt, 0, res->nrcpts *
				    sizeof(*res->rcpt));
				res->naccepted = 0;
				goto done;
			}
		}
		if ((st = smtp_rcpt_replies(s, res, i, j, ei)) != ST_OK)
			goto done;
	}

	/* All or nothing. */
	if (res->naccepted < env->nrcpts) {
		bool perm = false;
		first_bad = env->nrcpts;
		for (i = 0; i < env->nrcpts; i++) {
			if (res->rcpt[i].st == ST_OK)
				continue;
			if (first_bad == env->nrcpts)
				first_bad = i;
			if (res->rcpt[i].st == ST_NOUSER)
				perm = true;
		}
		smtp_reset_quietly(s);
		st = st_error(ei, perm ? ST_NOUSER : ST_TEMPFAIL,
		    "recipient <%s> refused: %s (%zu of %zu refused; "
		    "nothing sent)", env->rcpts[first_bad],
		    res->rcpt[first_bad].text, env->nrcpts - res->naccepted,
		    env->nrcpts);
		if (ei != NULL && ei->code == 0)
			ei->code = res->rcpt[first_bad].code;
		goto done;
	}

	smtp_set_phase(s, SMTP_PH_DATA);
	if ((st = smtp_cmd(s, false, ei, "DATA")) != ST_OK)
		goto done;
	if ((st = smtp_expect(s, SMTP_PH_DATA, 354, "DATA refused", &r,
	    ei)) != ST_OK) {
		smtp_reset_quietly(s);
		goto done;
	}
	if ((st = smtp_data_stream(s, msg_fd, res, &wfail, ei)) != ST_OK) {
		/*
		 * Half a message is on the wire: the only safe way out is to
		 * drop the connection without the final dot (RFC 5321
		 * 4.1.1.4: the server must not deliver it).
		 */
		s->usable = false;
		if (wfail && st == ST_NET)
			st = smtp_data_refused(s, &r, st, ei);
		else
			st_context(ei, "sending the message");
		goto done;
	}
	smtp_set_phase(s, SMTP_PH_DOT);
	if ((st = smtp_expect(s, SMTP_PH_DOT, 250, "message refused", &r,
	    ei)) != ST_OK)
		goto done;
	res->delivered = true;
	res->code = r.code;
	snprintf(res->text, sizeof(res->text), "%d%s%s %s", r.code,
	    r.enh[0] != '\0' ? " " : "", r.enh, r.text);
done:
	if (st != ST_OK && r.code >= 400 && res->code == 0 &&
	    (s->phase == SMTP_PH_DATA || s->phase == SMTP_PH_DOT)) {
		res->code = r.code;
		snprintf(res->text, sizeof(res->text), "%d %s", r.code, r.text);
	}
	buf_free(&cmd);
	return st;
}

enum status
smtp_rset(struct smtp *s, struct errinfo *ei)
{
	struct smtp_reply r;
	enum status st;

	if (!smtp_usable(s))
		return smtp_not_usable(ei);
	smtp_set_phase(s, SMTP_PH_RSET);
	if ((st = smtp_cmd(s, false, ei, "RSET")) != ST_OK)
		return st;
	st = smtp_expect(s, SMTP_PH_RSET, 250, "RSET refused", &r, ei);
	if (st != ST_OK)
		s->usable = false;
	return st;
}

enum status
smtp_quit(struct smtp *s, struct errinfo *ei)
{
	struct smtp_reply r;
	enum status st;

	if (!smtp_usable(s))
		return smtp_not_usable(ei);
	smtp_set_phase(s, SMTP_PH_QUIT);
	if ((st = smtp_cmd(s, false, ei, "QUIT")) != ST_OK)
		return st;
	/*
	 * Whatever was sent is the server's already: a server that never
	 * answers QUIT must not hold the caller for a whole timeout.
	 */
	conn_set_timeout(s->c, 1);
	st = smtp_expect(s, SMTP_PH_QUIT, 221, "QUIT", &r, ei);
	s->usable = false;
	return st;
}

void
smtp_close(struct smtp *s)
{
	if (s == NULL)
		return;
	conn_close(s->c);
	buf_wipe(&s->challenge);
	free(s->host);
	free(s->ehlo_name);
	free(s);
}
