/*
 * pop3.c: the POP3 client (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS,
 * RFC 5034 AUTH, RFC 3206 response codes).  See pop3.h.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "conf.h"
#include "conn.h"
#include "log.h"
#include "pop3.h"
#include "sasl.h"

#define POP3_CAPS_MAX	2048
#define POP3_SASL_MAX	(64 * 1024)
#define POP3_AUTH_STEPS	8
#define POP3_MSGS_MAX	(4u * 1000 * 1000)	/* messages in one maildrop */

enum pop3_state {
	PS_GREETING, PS_CAPA, PS_STLS, PS_AUTH, PS_LIST, PS_RETR, PS_DELE,
	PS_QUIT, PS__COUNT
};

static const char *const state_names[PS__COUNT] = {
	[PS_GREETING] = "GREETING", [PS_CAPA] = "CAPA", [PS_STLS] = "STLS",
	[PS_AUTH] = "AUTH", [PS_LIST] = "UIDL/LIST", [PS_RETR] = "RETR",
	[PS_DELE] = "DELE", [PS_QUIT] = "QUIT",
};

struct pop3 {
	struct conn *c;
	char *host;
	unsigned port;
	bool usable;
	char caps[POP3_CAPS_MAX];	/* " CAPA-LINE | CAPA-LINE " upper case */
	char sasl[POP3_CAPS_MAX];	/* the SASL capability's mechanisms */
	char capa[POP3_CAPS_MAX];	/* "LINE\nLINE", as received */
	char greeting[256];
	char text[256];			/* the last reply's text */
	struct buf cont;		/* the last "+ " continuation's text */
	char *in, *out;			/* RETR buffers, made once per session */
};

enum reply { RP_OK, RP_ERR, RP_CONT };

static void
pop3_set_state(enum pop3_state st)
{
	char note[64];
	int n;

	if (!log_verbose())
		return;
	n = snprintf(note, sizeof(note), "state: %s", state_names[st]);
	if (n > 0)
		log_wire(LOG_NOTE, note, (size_t)n, false);
}

static void
sanitize(char *out, size_t outsz, const char *s, size_t n)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 1 < outsz; i++)
		out[o++] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ?
		    '?' : s[i];
	out[o] = '\0';
}

/* ---- pure ------------------------------------------------------------- */

enum { D_BOL, D_MID, D_DOT, D_DOTCR };

void
pop3_dot_init(struct pop3_dot *d)
{
	d->state = D_BOL;
}

size_t
pop3_dot_feed(struct pop3_dot *d, const char *in, size_t n, char *out,
    bool *done, size_t *used)
{
	size_t i, o = 0;

	*done = false;
	for (i = 0; i < n; i++) {
		char c = in[i];

		switch (d->state) {
		case D_MID: {
			const char *nl = memchr(in + i, '\n', n - i);
			size_t run = nl != NULL ? (size_t)(nl - (in + i)) + 1 :
			    n - i;
			memcpy(out + o, in + i, run);
			o += run;
			i += run - 1;
			if (nl != NULL)
				d->state = D_BOL;
			continue;
		}
		case D_BOL:
			if (c == '.') {
				d->state = D_DOT;
				continue;
			}
			break;
		case D_DOT:
			if (c == '\r') {
				d->state = D_DOTCR;
				continue;
			}
			if (c == '\n') {
				*done = true;
				*used = i + 1;
				return o;
			}
			break;
		case D_DOTCR:
			if (c == '\n') {
				*done = true;
				*used = i + 1;
				return o;
			}
			out[o++] = '\r';
			break;
		}
		/* An ordinary byte in the middle of a line. */
		out[o++] = c;
		d->state = c == '\n' ? D_BOL : D_MID;
	}
	*used = n;
	return o;
}

/* ---- plumbing --------------------------------------------------------- */

bool
pop3_usable(const struct pop3 *p)
{
	return p != NULL && p->usable;
}

struct conn *
pop3_conn(const struct pop3 *p)
{
	return p->c;
}

const char *
pop3_greeting(const struct pop3 *p)
{
	return p->greeting;
}

const char *
pop3_capa_lines(const struct pop3 *p)
{
	return p->capa;
}

const char *
pop3_sasl_mechs(const struct pop3 *p)
{
	return p->sasl;
}

/*
 * Keep one CAPA line as received for pop3_capa_lines(): whole or not at
 * all, so that what is shown is never a cut keyword.
 */
static void
capa_add(struct pop3 *p, const char *line, size_t len)
{
	size_t o = strlen(p->capa);

	if (len == 0 || o + (o > 0) + len + 1 > sizeof(p->capa))
		return;
	if (o > 0)
		p->capa[o++] = '\n';
	sanitize(p->capa + o, sizeof(p->capa) - o, line, len);
}

bool
pop3_has_cap(const struct pop3 *p, const char *name)
{
	char w[80];

	snprintf(w, sizeof(w), " %s ", name);
	return strcasestr(p->caps, w) != NULL;
}

static enum status
pop3_readline(struct pop3 *p, char **line, size_t *len, struct errinfo *ei)
{
	enum status st;

	if ((st = conn_readline(p->c, line, len, ei)) != ST_OK)
		p->usable = false;
	return st;
}

/* One status line: +OK, -ERR, or (when cont) "+ challenge". */
static enum status
pop3_reply(struct pop3 *p, bool cont, enum reply *r, struct errinfo *ei)
{
	enum status st;
	char *line;
	size_t len;

	if ((st = pop3_readline(p, &line, &len, ei)) != ST_OK)
		return st;
	if (len >= 3 && strncmp(line, "+OK", 3) == 0 &&
	    (len == 3 || line[3] == ' ')) {
		*r = RP_OK;
		sanitize(p->text, sizeof(p->text), line + 3 + (len > 3),
		    len - 3 - (len > 3));
		return ST_OK;
	}
	if (len >= 4 && strncmp(line, "-ERR", 4) == 0 &&
	    (len == 4 || line[4] == ' ')) {
		*r = RP_ERR;
		sanitize(p->text, sizeof(p->text), line + 4 + (len > 4),
		    len - 4 - (len > 4));
		return ST_OK;
	}
	if (cont && len >= 1 && line[0] == '+' && (len == 1 || line[1] == ' ')) {
		*r = RP_CONT;
		buf_wipe(&p->cont);
		buf_init(&p->cont, POP3_SASL_MAX);
		return len > 2 ? buf_add(&p->cont, line + 2, len - 2, ei) :
		    ST_OK;
	}
	p->usable = false;
	return st_error(ei, ST_PROTO, "%s: malformed POP3 reply", p->host);
}

static enum status
pop3_err(struct pop3 *p, const char *what, struct errinfo *ei)
{
	enum status st = ST_PERMFAIL;

	if (strncasecmp(p->text, "[IN-USE]", 8) == 0 ||
	    strncasecmp(p->text, "[SYS/TEMP]", 10) == 0)
		st = ST_TEMPFAIL;
	return st_error(ei, st, "%s: %s refused: %s", p->host, what, p->text);
}

static enum status __attribute__((format(printf, 3, 4)))
pop3_cmd(struct pop3 *p, struct errinfo *ei, const char *fmt, ...)
{
	char line[512];
	enum status st;
	va_list ap;
	int n;

	if (!p->usable)
		return st_error(ei, ST_NET, "%s: POP3 session no longer usable",
		    p->host);
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return st_error(ei, ST_LIMIT, "POP3 command too long");
	if ((st = conn_cmd(p->c, false, ei, "%s", line)) != ST_OK)
		p->usable = false;
	return st;
}

/* Command and +OK, or the failure. */
static enum status
pop3_simple(struct pop3 *p, const char *what, struct errinfo *ei)
{
	enum status st;
	enum reply r;

	if ((st = pop3_reply(p, false, &r, ei)) != ST_OK)
		return st;
	return r == RP_OK ? ST_OK : pop3_err(p, what, ei);
}

static enum status
pop3_capa(struct pop3 *p, struct errinfo *ei)
{
	enum status st;
	enum reply r;
	char *line;
	size_t len, o = 0, i;

	pop3_set_state(PS_CAPA);
	p->caps[0] = '\0';
	p->sasl[0] = '\0';
	p->capa[0] = '\0';
	if ((st = pop3_cmd(p, ei, "CAPA")) != ST_OK ||
	    (st = pop3_reply(p, false, &r, ei)) != ST_OK)
		return st;
	if (r != RP_OK)
		return ST_OK;	/* an old server: no capabilities known */
	p->caps[o++] = ' ';
	for (;;) {
		if ((st = pop3_readline(p, &line, &len, ei)) != ST_OK)
			return st;
		if (len == 1 && line[0] == '.')
			break;
		if (len > 0 && line[0] == '.') {
			line++;
			len--;
		}
		capa_add(p, line, len);
		if (len > 5 && strncasecmp(line, "SASL ", 5) == 0)
			sanitize(p->sasl, sizeof(p->sasl), line + 5, len - 5);
		/* The keyword only: " UIDL STLS SASL USER ". */
		for (i = 0; i < len && line[i] != ' ' &&
		    o + 2 < sizeof(p->caps); i++)
			p->caps[o++] = (line[i] >= 'a' && line[i] <= 'z') ?
			    (char)(line[i] - 32) : line[i];
		if (o + 2 < sizeof(p->caps))
			p->caps[o++] = ' ';
		p->caps[o] = '\0';
	}
	return ST_OK;
}

enum status
pop3_open(struct pop3 **out, const struct conn_target *t, struct errinfo *ei)
{
	struct pop3 *p;
	enum status st;
	enum reply r;

	*out = NULL;
	if ((st = conn_target_check(t, "pop3", ei)) != ST_OK)
		return st;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	buf_init(&p->cont, POP3_SASL_MAX);
	p->port = t->port;
	if ((p->host = strdup(t->host)) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto fail;
	}
	pop3_set_state(PS_GREETING);
	if ((st = conn_open_target(&p->c, t, "pop3", POP3_LINE_MAX, ei)) !=
	    ST_OK)
		goto fail;
	p->usable = true;
	if ((st = pop3_reply(p, false, &r, ei)) != ST_OK)
		goto fail;
	if (r != RP_OK) {
		st = st_error(ei, ST_TEMPFAIL, "%s refuses the connection: %s",
		    t->host, p->text);
		goto fail;
	}
	/* Kept for pop3_greeting(): p->text is the next reply's soon. */
	snprintf(p->greeting, sizeof(p->greeting), "%s", p->text);
	if ((st = pop3_capa(p, ei)) != ST_OK)
		goto fail;
	if (t->tls == TLSM_STARTTLS) {
		if (!pop3_has_cap(p, "STLS")) {
			st = st_error(ei, ST_TLS, "the server does not offer "
			    "STLS; refusing to go on without TLS");
			goto fail;
		}
		pop3_set_state(PS_STLS);
		if ((st = pop3_cmd(p, ei, "STLS")) != ST_OK ||
		    (st = pop3_simple(p, "STLS", ei)) != ST_OK)
			goto fail;
		if ((st = conn_starttls(p->c, t->tls_ctx, ei)) != ST_OK)
			goto fail;
		/* RFC 2595 4: forget the capabilities; ask again. */
		if ((st = pop3_capa(p, ei)) != ST_OK)
			goto fail;
	}
	*out = p;
	return ST_OK;
fail:
	st_context(ei, "%s:%u", t->host, t->port);
	pop3_close(p);
	return st;
}

static enum status
secret_line(struct pop3 *p, const struct buf *b, struct errinfo *ei)
{
	enum status st;

	st = conn_cmd(p->c, true, ei, "%s", b->data != NULL ? b->data : "");
	if (st != ST_OK)
		p->usable = false;
	return st;
}

enum status
pop3_auth(struct pop3 *p, enum auth_mech mech, const char *user,
    const char *secret, bool *token_rejected, struct errinfo *ei)
{
	struct sasl sa;
	struct buf ir, resp;
	const char *name = sasl_mech_name(mech);
	enum status st;
	enum reply r;
	bool ir_sent;
	int steps = 0;

	memset(&sa, 0, sizeof(sa));
	buf_init(&ir, POP3_SASL_MAX);
	buf_init(&resp, POP3_SASL_MAX);
	if (token_rejected != NULL)
		*token_rejected = false;
	if (!p->usable)
		return st_error(ei, ST_NET, "%s: POP3 session no longer usable",
		    p->host);
	if ((st = conn_secret_ok(p->c, ei)) != ST_OK)
		return st;
	/* Servers without CAPA may still take AUTH: only a list we know
	 * that lacks the mechanism stops us. */
	if (p->sasl[0] != '\0' && !sasl_mech_offered(p->sasl, mech))
		return st_error(ei, ST_CONFIG, "%s does not offer AUTH %s "
		    "(it offers: %s)", p->host, name, p->sasl);

	pop3_set_state(PS_AUTH);
	if ((st = sasl_init(&sa, mech, user, secret, p->host, p->port,
	    ei)) != ST_OK || (st = sasl_initial(&sa, &ir, ei)) != ST_OK)
		goto done;
	if (ir.len > 0 && sasl_inline(SASL_FRAME_POP3, mech, ir.len)) {
		st = conn_cmd(p->c, true, ei, "AUTH %s %s", name, ir.data);
		ir_sent = true;
	} else {
		st = conn_cmd(p->c, false, ei, "AUTH %s", name);
		ir_sent = ir.len == 0;
	}
	if (st != ST_OK) {
		p->usable = false;
		goto done;
	}
	for (;;) {
		if ((st = pop3_reply(p, true, &r, ei)) != ST_OK)
			goto done;
		if (r != RP_CONT)
			break;
		if (++steps > POP3_AUTH_STEPS) {
			p->usable = false;
			st = st_error(ei, ST_PROTO, "%s: too many AUTH "
			    "challenges", p->host);
			goto done;
		}
		if (!ir_sent) {
			ir_sent = true;
			if ((st = secret_line(p, &ir, ei)) != ST_OK)
				goto done;
			continue;
		}
		buf_wipe(&resp);
		buf_init(&resp, POP3_SASL_MAX);
		st = sasl_step(&sa, p->cont.data != NULL ? p->cont.data : "",
		    p->cont.len, &resp, ei);
		if (st != ST_OK) {
			if (conn_cmd(p->c, false, NULL, "*") == ST_OK)
				(void)pop3_reply(p, false, &r, NULL);
			goto done;
		}
		if ((st = secret_line(p, &resp, ei)) != ST_OK)
			goto done;
	}
	if (r == RP_OK) {
		st = ST_OK;
		goto done;
	}
	st = strncasecmp(p->text, "[SYS/TEMP]", 10) == 0 ||
	    strncasecmp(p->text, "[IN-USE]", 8) == 0 ? ST_TEMPFAIL : ST_AUTH;
	st_error(ei, st, "%s: AUTH %s refused%s%s: %s", p->host, name,
	    sa.fail_msg[0] ? ": " : "", sa.fail_msg, p->text);
	if (st == ST_AUTH && token_rejected != NULL &&
	    (mech == MECH_XOAUTH2 || mech == MECH_OAUTHBEARER))
		*token_rejected = true;
done:
	buf_wipe(&ir);
	buf_wipe(&resp);
	buf_wipe(&p->cont);
	buf_init(&p->cont, POP3_SASL_MAX);
	sasl_free(&sa);
	return st;
}

/* Parse "N ARG" of a listing line. */
static bool
list_line(const char *line, size_t len, uint32_t *num, const char **arg,
    size_t *alen)
{
	uint64_t v = 0;
	size_t i = 0;

	while (i < len && line[i] >= '0' && line[i] <= '9' && i < 10)
		v = v * 10 + (uint64_t)(line[i++] - '0');
	if (i == 0 || i >= len || line[i] != ' ' || v == 0 || v > UINT32_MAX)
		return false;
	*num = (uint32_t)v;
	*arg = line + i + 1;
	*alen = len - i - 1;
	return *alen > 0;
}

enum status
pop3_list(struct pop3 *p, struct pop3_msg **msgs, size_t *n,
    struct errinfo *ei)
{
	struct pop3_msg *m = NULL, *t;
	size_t nm = 0, cap = 0, i, alen;
	const char *arg;
	enum status st;
	enum reply r;
	char *line;
	size_t len;
	uint32_t num;
	bool uidl = pop3_has_cap(p, "UIDL") || p->caps[0] == '\0';

	*msgs = NULL;
	*n = 0;
	pop3_set_state(PS_LIST);
	if ((st = pop3_cmd(p, ei, "LIST")) != ST_OK ||
	    (st = pop3_simple(p, "LIST", ei)) != ST_OK)
		goto fail;
	for (;;) {
		if ((st = pop3_readline(p, &line, &len, ei)) != ST_OK)
			goto fail;
		if (len == 1 && line[0] == '.')
			break;
		uint64_t sz = 0;
		if (!list_line(line, len, &num, &arg, &alen))
			goto bad;
		for (i = 0; i < alen && arg[i] >= '0' && arg[i] <= '9' &&
		    i < 19; i++)
			sz = sz * 10 + (uint64_t)(arg[i] - '0');
		if (nm >= POP3_MSGS_MAX) {
			st = st_error(ei, ST_LIMIT, "%s: more than %u messages",
			    p->host, POP3_MSGS_MAX);
			goto fail;
		}
		if (nm == cap) {
			cap = cap ? cap * 2 : 256;
			if ((t = realloc(m, cap * sizeof(*m))) == NULL) {
				st = st_errno(ei, ST_SYS, "out of memory");
				goto fail;
			}
			m = t;
		}
		memset(&m[nm], 0, sizeof(m[nm]));
		m[nm].num = num;
		m[nm].size = sz;
		nm++;
	}
	if (uidl) {
		if ((st = pop3_cmd(p, ei, "UIDL")) != ST_OK ||
		    (st = pop3_reply(p, false, &r, ei)) != ST_OK)
			goto fail;
		if (r == RP_OK) {
			size_t at = 0;
			for (;;) {
				if ((st = pop3_readline(p, &line, &len, ei)) !=
				    ST_OK)
					goto fail;
				if (len == 1 && line[0] == '.')
					break;
				if (!list_line(line, len, &num, &arg, &alen) ||
				    alen > 70)
					goto bad;
				for (i = 0; i < alen; i++)
					if ((unsigned char)arg[i] < 0x21 ||
					    (unsigned char)arg[i] > 0x7e)
						goto bad;
				/* Usually in the same order as LIST. */
				if (at >= nm || m[at].num != num)
					for (at = 0; at < nm &&
					    m[at].num != num; at++)
						;
				if (at < nm) {
					memcpy(m[at].uidl, arg, alen);
					m[at].uidl[alen] = '\0';
					at++;
				}
			}
		}
	}
	*msgs = m;
	*n = nm;
	return ST_OK;
bad:
	p->usable = false;
	st = st_error(ei, ST_PROTO, "%s: malformed listing line", p->host);
fail:
	free(m);
	return st;
}

enum status
pop3_retr(struct pop3 *p, uint32_t num, const struct pop3_retr_cb *cb,
    void *arg, struct errinfo *ei)
{
	struct pop3_dot d;
	char *in, *out;
	size_t got, used, o;
	enum status st;
	bool done = false, begun = false;

	pop3_set_state(PS_RETR);
	if ((st = pop3_cmd(p, ei, "RETR %u", (unsigned)num)) != ST_OK ||
	    (st = pop3_simple(p, "RETR", ei)) != ST_OK)
		return st;
	if ((p->in == NULL && (p->in = malloc(POP3_CHUNK)) == NULL) ||
	    (p->out == NULL && (p->out = malloc(POP3_CHUNK + 2)) == NULL)) {
		st = st_errno(ei, ST_SYS, "out of memory");
		p->usable = false;
		goto out;
	}
	if ((st = cb->begin(arg, ei)) != ST_OK) {
		p->usable = false;
		goto out;
	}
	begun = true;
	in = p->in;
	out = p->out;
	pop3_dot_init(&d);
	while (!done) {
		if ((st = conn_read(p->c, in, POP3_CHUNK, &got, ei)) != ST_OK) {
			p->usable = false;
			goto out;
		}
		o = pop3_dot_feed(&d, in, got, out, &done, &used);
		if (done && used != got) {
			/* Nothing may follow before our next command. */
			p->usable = false;
			st = st_error(ei, ST_PROTO, "%s: data after the end "
			    "of a message", p->host);
			goto out;
		}
		if (o > 0 && (st = cb->write(arg, out, o, ei)) != ST_OK) {
			p->usable = false;
			goto out;
		}
	}
	st = ST_OK;
out:
	if (st != ST_OK && begun)
		cb->abort(arg);
	return st;
}

enum status
pop3_dele(struct pop3 *p, uint32_t num, struct errinfo *ei)
{
	enum status st;

	pop3_set_state(PS_DELE);
	if ((st = pop3_cmd(p, ei, "DELE %u", (unsigned)num)) != ST_OK)
		return st;
	return pop3_simple(p, "DELE", ei);
}

enum status
pop3_quit(struct pop3 *p, struct errinfo *ei)
{
	enum status st;

	if (p == NULL || !p->usable)
		return st_error(ei, ST_NET, "POP3 session no longer usable");
	pop3_set_state(PS_QUIT);
	if ((st = pop3_cmd(p, ei, "QUIT")) != ST_OK)
		return st;
	st = pop3_simple(p, "QUIT", ei);
	p->usable = false;
	return st;
}

void
pop3_close(struct pop3 *p)
{
	if (p == NULL)
		return;
	conn_close(p->c);
	buf_wipe(&p->cont);
	free(p->in);
	free(p->out);
	free(p->host);
	free(p);
}
