/*
 * msg.c: the message rewrite, as a stream (see msg.h for the rules).
 *
 *   RFC 5322 sections 2.1.1 (998 octets), 2.2.3 (folding), 3.3 (date),
 *            3.6 (Bcc, Resent-*), 3.6.4 (Message-ID)
 *   RFC 2045 section 6.7 (quoted-printable), RFC 2047 (encoded words)
 *
 * The input is read in pieces of at most RD_SIZE octets: a line longer
 * than that arrives as several pieces, so no line, however long, is ever
 * held whole.  The header section is gathered in memory (bounded by
 * max_header) because a header may have to change once the body is seen:
 * a long body line in a plain text message turns it quoted-printable.
 * That is the only case where output is read back: the body written so
 * far moves to an unlinked scratch file, the header is rewritten, and
 * the body is encoded from the scratch file.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"
#include "buf.h"
#include "msg.h"
#include "rfc5322.h"
#include "tls.h"
#include "xio.h"

#define RD_SIZE		(64 * 1024)
#define WR_SIZE		(64 * 1024)
#define QP_LINE		76	/* RFC 2045: longest encoded line */
#define HDR_SLACK	4096	/* room for the fields we add */

/* Input: pieces of lines, line endings stripped. */
struct rd {
	int fd;
	char buf[RD_SIZE];
	size_t off, len;
	bool eof;
	bool cr_space;	/* header section: a bare CR is a space */
};

/* Output: buffered, counted, bounded. */
struct wr {
	int fd;
	char buf[WR_SIZE];
	size_t len;
	off_t total;
	off_t max;
};

enum body_mode { BODY_PASS, BODY_QP };

struct mstate {
	const struct msg_opts *o;
	struct msg_info *info;
	struct rd rd;
	struct wr wr;
	struct buf hdr;		/* the header section as written */
	struct buf field;	/* raw field being gathered, CRLF lines */
	struct buf val;		/* scratch: an unfolded value */
	size_t hdr_in;		/* header octets read so far */
	size_t maxh;		/* ... and their bound */
	bool in_hdr;		/* still in the header section */
	bool has_from, has_date, has_msgid, has_mime;
	bool has_cte, cte_plain, type_text;
	size_t cte_off, cte_len;	/* the CTE field inside hdr */
	int resent;		/* 0: none yet, 1: first block, 2: past it */
	bool resent_rcpts;	/* the first block named recipients */
	struct rfc5322_list hrcpts, rrcpts;
	/* body */
	enum body_mode mode;
	bool eligible;		/* may turn quoted-printable */
	size_t col;		/* octets in the current output line */
	int qp_ws;		/* whitespace held back, or -1 */
	size_t qcol;		/* chars in the current encoded line */
};

/* ---- input ----------------------------------------------------------- */

/*
 * Next piece of the current line: *eol says whether it ends the line,
 * *end says the input is exhausted (no piece).  The line ends are LF,
 * and any run of CRs before it ("\r\n", "\r\r\n" as some broken
 * generators write): the whole run goes.  A CR that no LF follows (a
 * bare CR) is something RFC 5322 forbids and SMTP cannot carry:
 *   - in the header section (r->cr_space) it becomes a space, in place,
 *     so the field is still parsed (a Bcc stays a Bcc, and is removed)
 *     and no CR reaches the wire in the middle of a header;
 *   - in the body it ends the line, as SMTP's dot-stuffer would end it
 *     anyway (smtp_dot_stuff() turns a bare CR into CRLF): doing it here
 *     keeps the size we declare and the 998-octet accounting true.
 *     *bare says so.
 * A piece never holds a CR, and a partial piece never stops inside a
 * run of CRs, so a line end split between two reads is still seen.
 */
static enum status
rd_piece(struct rd *r, const char **p, size_t *n, bool *eol, bool *bare,
    bool *end, struct errinfo *ei)
{
	char *s, *lf, *cr;
	ssize_t got;
	size_t avail, lim, from, i, j = 0;

	*end = *bare = false;
	for (;;) {
		avail = r->len - r->off;
		s = r->buf + r->off;
		lf = avail > 0 ? memchr(s, '\n', avail) : NULL;
		lim = lf != NULL ? (size_t)(lf - s) : avail;
		for (from = 0; (cr = memchr(s + from, '\r', lim - from)) != NULL;
		    from = j) {
			i = (size_t)(cr - s);
			for (j = i; j < avail && s[j] == '\r'; j++)
				;
			if (!r->cr_space || j == avail || s[j] == '\n')
				break;
			memset(s + i, ' ', j - i);
		}
		*p = s;
		if (cr != NULL) {
			i = (size_t)(cr - s);
			if (j < avail && s[j] == '\n') {
				*n = i;		/* CR... LF */
				*eol = true;
				r->off += j + 1;
				return ST_OK;
			}
			if (j < avail) {
				*n = i;		/* a bare CR in the body */
				*eol = *bare = true;
				r->off += i + 1;
				return ST_OK;
			}
			if (r->eof) {
				*n = i;		/* CRs that end the input */
				*eol = true;
				r->off = r->len;
				return ST_OK;
			}
			if (i > 0) {
				*n = i;		/* the run waits for more */
				*eol = false;
				r->off += i;
				return ST_OK;
			}
			if (avail == sizeof(r->buf)) {
				/* A buffer full of CRs: the first is bare. */
				*n = 0;
				if (r->cr_space) {
					memset(s, ' ', avail - 1);
					*n = avail - 1;
					*eol = false;
				} else
					*eol = *bare = true;
				r->off += *n > 0 ? *n : 1;
				return ST_OK;
			}
		} else if (lf != NULL) {
			*n = lim;
			*eol = true;
			r->off += lim + 1;
			return ST_OK;
		} else if (r->eof) {
			if (avail == 0) {
				*end = true;
				*n = 0;
				*eol = false;
				return ST_OK;
			}
			/* A last line without its newline. */
			*n = avail;
			r->off = r->len;
			*eol = true;
			return ST_OK;
		} else if (avail == sizeof(r->buf)) {
			/* Full, no line end: all of it goes. */
			*n = avail;
			r->off = r->len;
			*eol = false;
			return ST_OK;
		}
		if (r->off > 0) {
			memmove(r->buf, r->buf + r->off, avail);
			r->off = 0;
			r->len = avail;
		}
		got = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return st_errno(ei, ST_SYS, "reading the message");
		}
		if (got == 0)
			r->eof = true;
		r->len += (size_t)got;
	}
}

/* ---- output ---------------------------------------------------------- */

static enum status
wr_flush(struct wr *w, struct errinfo *ei)
{
	enum status st;

	st = xio_write_all(w->fd, w->buf, w->len, ST_SYS, "the message", ei);
	w->len = 0;
	return st;
}

static enum status
wr_put(struct wr *w, const void *p, size_t n, struct errinfo *ei)
{
	enum status st;

	if ((off_t)n > w->max - w->total)
		return st_error(ei, ST_LIMIT,
		    "message larger than the limit of %lld bytes",
		    (long long)w->max);
	w->total += (off_t)n;
	if (n > sizeof(w->buf) - w->len) {
		if ((st = wr_flush(w, ei)) != ST_OK)
			return st;
		if (n >= sizeof(w->buf))
			return xio_write_all(w->fd, p, n, ST_SYS, "the message",
			    ei);
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
	return ST_OK;
}

/* ---- helpers --------------------------------------------------------- */

static bool
has_8bit(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return true;
	return false;
}

/* Random bytes for a Message-ID: unique, not secret, so never fatal. */
static void
random_bytes(unsigned char *p, size_t n)
{
	size_t i;

	if (tls_random(p, n, NULL) == ST_OK)
		return;
	for (i = 0; i < n; i++)
		p[i] = (unsigned char)((uintmax_t)time(NULL) >> (i % 8) ^
		    (uintmax_t)getpid() >> (i % 4) ^ i);
}

bool
msg_should_rewrite(enum rewrite_from how, const char *addr,
    const char *const *local_names)
{
	const char *at, *dom;

	if (addr == NULL || addr[0] == '\0' || how == REWRITE_NEVER)
		return false;
	if (how == REWRITE_ALWAYS)
		return true;
	if ((at = strrchr(addr, '@')) == NULL)
		return true;
	dom = at + 1;
	if (strcasecmp(dom, "localhost") == 0 ||
	    strcasecmp(dom, "localhost.localdomain") == 0)
		return true;
	for (; local_names != NULL && *local_names != NULL; local_names++)
		if (strcasecmp(dom, *local_names) == 0)
			return true;
	return false;
}

enum status
msg_date(struct buf *out, time_t t, struct errinfo *ei)
{
	static const char days[7][4] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	long off;
	char sign = '+';

	if (localtime_r(&t, &tm) == NULL)
		return st_error(ei, ST_SYS, "cannot convert the time");
	off = tm.tm_gmtoff / 60;
	if (off < 0) {
		sign = '-';
		off = -off;
	}
	return buf_printf(out, ei, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign,
	    off / 60, off % 60);
}

/*
 * A display name for a From we add: bare ASCII goes to
 * rfc5322_format_addr() to be quoted; anything else becomes RFC 2047
 * B-encoded words of at most 45 input octets each, cut on UTF-8
 * character boundaries.
 */
static enum status
encode_name(struct buf *out, const char *name, struct errinfo *ei)
{
	size_t len = strlen(name), off = 0, k;
	enum status st;

	if (!has_8bit(name, len))
		return buf_adds(out, name, ei);
	while (off < len) {
		k = len - off > 45 ? 45 : len - off;
		while (k > 1 && off + k < len &&
		    ((unsigned char)name[off + k] & 0xc0) == 0x80)
			k--;
		if (off > 0 && (st = buf_adds(out, " ", ei)) != ST_OK)
			return st;
		if ((st = buf_adds(out, "=?UTF-8?B?", ei)) != ST_OK ||
		    (st = b64_encode(out, name + off, k, ei)) != ST_OK ||
		    (st = buf_adds(out, "?=", ei)) != ST_OK)
			return st;
		off += k;
	}
	return ST_OK;
}

/*
 * Append one header field (raw, CRLF-separated lines, ending in CRLF) to
 * the header section, folding any line over 998 octets: before the last
 * whitespace that keeps the line short enough, or, with none, by
 * inserting CRLF SP at a UTF-8 character boundary (that adds a space,
 * which is the least harm when the alternative is a refused message).
 */
static enum status
emit_field(struct mstate *m, const char *raw, size_t len, struct errinfo *ei)
{
	const char *line, *crlf, *end = raw + len;
	size_t n, k, pre;
	enum status st;

	m->info->hdr_8bit |= has_8bit(raw, len);
	for (line = raw; line < end; line = crlf + 2) {
		crlf = memmem(line, (size_t)(end - line), "\r\n", 2);
		if (crlf == NULL)
			crlf = end - 2;	/* never: fields end in CRLF */
		n = (size_t)(crlf - line);
		pre = 0;	/* octets we put on this line ourselves */
		while (pre + n > MSG_LINE_MAX) {
			for (k = MSG_LINE_MAX - pre; k > 1; k--)
				if ((line[k] == ' ' || line[k] == '\t') &&
				    line[k - 1] != ' ' && line[k - 1] != '\t')
					break;
			if (k > 1) {
				st = buf_add(&m->hdr, line, k, ei);
				if (st == ST_OK)
					st = buf_add(&m->hdr, "\r\n", 2, ei);
				pre = 0;
			} else {
				k = MSG_LINE_MAX - pre;
				while (k > 1 &&
				    ((unsigned char)line[k] & 0xc0) == 0x80)
					k--;
				st = buf_add(&m->hdr, line, k, ei);
				if (st == ST_OK)
					st = buf_add(&m->hdr, "\r\n ", 3, ei);
				pre = 1;
			}
			if (st != ST_OK)
				return st;
			m->info->headers_folded++;
			line += k;
			n -= k;
		}
		if ((st = buf_add(&m->hdr, line, n, ei)) != ST_OK ||
		    (st = buf_add(&m->hdr, "\r\n", 2, ei)) != ST_OK)
			return st;
	}
	return ST_OK;
}

/* First token of a MIME header value, lower-cased into out. */
static void
mime_token(const char *v, char *out, size_t outsz)
{
	size_t i = 0;

	while (*v == ' ' || *v == '\t')
		v++;
	while (*v != '\0' && *v != ';' && *v != ' ' && *v != '\t' &&
	    *v != '(' && i + 1 < outsz) {
		out[i++] = (*v >= 'A' && *v <= 'Z') ? (char)(*v + 32) : *v;
		v++;
	}
	out[i] = '\0';
}

static void
note_utf8(struct mstate *m, const struct rfc5322_list *l, size_t from)
{
	size_t i;

	for (i = from; i < l->n; i++)
		if (l->v[i].is_utf8)
			m->info->addr_utf8 = true;
}

/* Parse a recipient field's value into l.  Errors matter only with -t. */
static enum status
take_rcpts(struct mstate *m, const char *name, struct rfc5322_list *l,
    struct errinfo *ei)
{
	struct errinfo tmp;
	size_t before = l->n;
	enum status st;

	st_clear(&tmp);
	st = rfc5322_parse_list(m->val.data, m->val.len, RFC5322_MAX_ADDRS,
	    0, l, &tmp);
	if (st != ST_OK && m->o->want_rcpts)
		return st_error(ei, st, "%s header: %s", name, tmp.msg);
	note_utf8(m, l, before);
	return ST_OK;
}

/* Rewrite a From field when one of its addresses calls for it. */
static enum status
do_from(struct mstate *m, const char *raw, size_t len, struct errinfo *ei)
{
	struct rfc5322_list l = { NULL, 0 };
	struct errinfo tmp;
	struct buf nf;
	enum status st = ST_OK;
	bool change = false;
	size_t i, j;

	buf_init(&nf, m->maxh + HDR_SLACK);
	st_clear(&tmp);
	if (rfc5322_parse_list(m->val.data, m->val.len, RFC5322_MAX_ADDRS, 0,
	    &l, &tmp) != ST_OK || l.n == 0) {
		/* Unparseable: leave it as the author wrote it. */
		st = emit_field(m, raw, len, ei);
		goto out;
	}
	note_utf8(m, &l, 0);
	for (i = 0; i < l.n; i++)
		if (strcasecmp(l.v[i].addr, m->o->from_addr) != 0 &&
		    msg_should_rewrite(m->o->rewrite, l.v[i].addr,
		    m->o->local_names))
			change = true;
	if (!change) {
		st = emit_field(m, raw, len, ei);
		goto out;
	}
	if ((st = buf_adds(&nf, "From: ", ei)) != ST_OK)
		goto out;
	for (i = 0; i < l.n; i++) {
		const char *a = l.v[i].addr;

		if (msg_should_rewrite(m->o->rewrite, a, m->o->local_names))
			a = m->o->from_addr;
		/* Two authors rewritten to one address: name it once. */
		for (j = 0; j < i; j++) {
			const char *b = l.v[j].addr;
			if (msg_should_rewrite(m->o->rewrite, b,
			    m->o->local_names))
				b = m->o->from_addr;
			if (strcasecmp(a, b) == 0)
				break;
		}
		if (j < i)
			continue;
		if ((i > 0 && buf_adds(&nf, ", ", &tmp) != ST_OK) ||
		    rfc5322_format_addr(&nf, rfc5322_addr_display(&l.v[i]),
		    a, &tmp) != ST_OK) {
			/* Cannot write it back: leave the field alone. */
			st = emit_field(m, raw, len, ei);
			goto out;
		}
	}
	if ((st = buf_adds(&nf, "\r\n", ei)) != ST_OK)
		goto out;
	m->info->from_rewritten = true;
	st = emit_field(m, nf.data, nf.len, ei);
out:
	rfc5322_list_free(&l);
	buf_free(&nf);
	return st;
}

/* A whole field has been gathered: decide its fate. */
static enum status
flush_field(struct mstate *m, struct errinfo *ei)
{
	const char *raw = m->field.data, *name;
	size_t len = m->field.len, namelen;
	struct errinfo tmp;
	enum status st = ST_OK;
	bool resent, in_block, drop = false;
	char tok[64];

	if (len == 0)
		return ST_OK;
	buf_reset(&m->val);
	st_clear(&tmp);
	if (rfc5322_field_split(raw, len, &name, &namelen, &m->val, &tmp)
	    != ST_OK) {
		/*
		 * Nothing that rd_piece() lets through should get here.
		 * Should something, a Bcc must still never be sent:
		 * recognise it by its name alone and drop it, and with -t
		 * refuse the message rather than lose its recipients.
		 * Anything else passes on untouched.
		 */
		for (namelen = 0; namelen < len && raw[namelen] != ':' &&
		    raw[namelen] != '\r' && raw[namelen] != '\n'; namelen++)
			;
		while (namelen > 0 && (raw[namelen - 1] == ' ' ||
		    raw[namelen - 1] == '\t'))
			namelen--;
		if (rfc5322_name_is(raw, namelen, "bcc") ||
		    rfc5322_name_is(raw, namelen, "resent-bcc")) {
			if (m->o->want_rcpts)
				st = st_error(ei, ST_DATAERR, "%.*s header: %s",
				    (int)namelen, raw, tmp.msg);
			goto out;
		}
		st = emit_field(m, raw, len, ei);
		goto out;
	}
	/* An empty value still gets a string, for the parsers below. */
	if ((st = buf_add(&m->val, "", 0, ei)) != ST_OK)
		goto out;
	resent = namelen > 7 && strncasecmp(name, "resent-", 7) == 0;
	if (resent && m->resent == 0)
		m->resent = 1;
	else if (!resent && m->resent == 1)
		m->resent = 2;
	in_block = resent && m->resent == 1;

	if (rfc5322_name_is(name, namelen, "bcc")) {
		st = take_rcpts(m, "Bcc", &m->hrcpts, ei);
		drop = true;
	} else if (rfc5322_name_is(name, namelen, "resent-bcc")) {
		if (in_block) {
			st = take_rcpts(m, "Resent-Bcc", &m->rrcpts, ei);
			m->resent_rcpts = true;
		}
		drop = true;
	} else if (rfc5322_name_is(name, namelen, "to")) {
		st = take_rcpts(m, "To", &m->hrcpts, ei);
	} else if (rfc5322_name_is(name, namelen, "cc")) {
		st = take_rcpts(m, "Cc", &m->hrcpts, ei);
	} else if (in_block && (rfc5322_name_is(name, namelen, "resent-to") ||
	    rfc5322_name_is(name, namelen, "resent-cc"))) {
		st = take_rcpts(m, "Resent-To/Cc", &m->rrcpts, ei);
		m->resent_rcpts = true;
	} else if (rfc5322_name_is(name, namelen, "from")) {
		m->has_from = true;
		st = do_from(m, raw, len, ei);
		drop = true;	/* do_from() emitted it */
	} else if (rfc5322_name_is(name, namelen, "date")) {
		m->has_date = true;
	} else if (rfc5322_name_is(name, namelen, "message-id")) {
		m->has_msgid = true;
		if (m->info->message_id == NULL &&
		    (m->info->message_id = strdup(m->val.data)) == NULL)
			st = st_errno(ei, ST_SYS, "out of memory");
	} else if (rfc5322_name_is(name, namelen, "mime-version")) {
		m->has_mime = true;
	} else if (rfc5322_name_is(name, namelen, "content-type")) {
		mime_token(m->val.data, tok, sizeof(tok));
		m->type_text = strncmp(tok, "text/", 5) == 0;
		if (!m->type_text)
			m->eligible = false;
	} else if (rfc5322_name_is(name, namelen,
	    "content-transfer-encoding")) {
		mime_token(m->val.data, tok, sizeof(tok));
		m->has_cte = true;
		m->cte_plain = strcmp(tok, "7bit") == 0 ||
		    strcmp(tok, "8bit") == 0;
		if (!m->cte_plain)
			m->eligible = false;
	}
	if (st == ST_OK && !drop) {
		size_t before = m->hdr.len;

		st = emit_field(m, raw, len, ei);
		if (rfc5322_name_is(name, namelen,
		    "content-transfer-encoding")) {
			m->cte_off = before;
			m->cte_len = m->hdr.len - before;
		}
	}
out:
	buf_reset(&m->field);
	return st;
}

/* The header section is complete: add what is missing, then write it. */
static enum status
end_headers(struct mstate *m, struct errinfo *ei)
{
	const struct msg_opts *o = m->o;
	struct buf f, name;
	unsigned char rnd[8];
	char stamp[32];
	struct tm tm;
	time_t now = o->now != 0 ? o->now : time(NULL);
	enum status st;
	size_t i;

	buf_init(&f, HDR_SLACK);
	buf_init(&name, HDR_SLACK);
	if ((st = flush_field(m, ei)) != ST_OK)
		goto out;
	if (!m->has_date) {
		if ((st = buf_adds(&f, "Date: ", ei)) != ST_OK ||
		    (st = msg_date(&f, now, ei)) != ST_OK ||
		    (st = buf_adds(&f, "\r\n", ei)) != ST_OK ||
		    (st = emit_field(m, f.data, f.len, ei)) != ST_OK)
			goto out;
		m->info->date_added = true;
		buf_reset(&f);
	}
	if (!m->has_msgid) {
		random_bytes(rnd, sizeof(rnd));
		if (gmtime_r(&now, &tm) == NULL ||
		    strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm) == 0)
			stamp[0] = '\0';
		if ((st = buf_printf(&f, ei, "<%s.", stamp)) != ST_OK)
			goto out;
		for (i = 0; i < sizeof(rnd); i++)
			if ((st = buf_printf(&f, ei, "%02x", rnd[i])) != ST_OK)
				goto out;
		if ((st = buf_printf(&f, ei, "@%s>", o->domain != NULL &&
		    o->domain[0] != '\0' ? o->domain : "localhost")) != ST_OK)
			goto out;
		free(m->info->message_id);
		if ((m->info->message_id = strdup(f.data)) == NULL) {
			st = st_errno(ei, ST_SYS, "out of memory");
			goto out;
		}
		buf_reset(&f);
		if ((st = buf_printf(&f, ei, "Message-ID: %s\r\n",
		    m->info->message_id)) != ST_OK ||
		    (st = emit_field(m, f.data, f.len, ei)) != ST_OK)
			goto out;
		m->info->msgid_added = true;
		buf_reset(&f);
	}
	if (!m->has_from) {
		struct errinfo tmp;

		/* A name too long to write is left out, not fatal. */
		st_clear(&tmp);
		if (o->from_name != NULL && o->from_name[0] != '\0' &&
		    encode_name(&name, o->from_name, &tmp) != ST_OK)
			buf_reset(&name);
		if ((st = buf_adds(&f, "From: ", ei)) != ST_OK)
			goto out;
		if (rfc5322_format_addr(&f, name.len > 0 ? name.data : NULL,
		    o->from_addr, &tmp) != ST_OK) {
			/* A name we cannot write: the address alone. */
			buf_reset(&f);
			if ((st = buf_adds(&f, "From: ", ei)) != ST_OK ||
			    (st = rfc5322_format_addr(&f, NULL, o->from_addr,
			    ei)) != ST_OK)
				goto out;
		}
		if ((st = buf_adds(&f, "\r\n", ei)) != ST_OK ||
		    (st = emit_field(m, f.data, f.len, ei)) != ST_OK)
			goto out;
		m->info->from_added = true;
	}
	if ((st = buf_add(&m->hdr, "\r\n", 2, ei)) != ST_OK)
		goto out;
	st = wr_put(&m->wr, m->hdr.data, m->hdr.len, ei);
out:
	buf_free(&f);
	buf_free(&name);
	return st;
}

/* ---- body ------------------------------------------------------------ */

static enum status
qp_tok(struct mstate *m, const char *s, size_t n, struct errinfo *ei)
{
	enum status st;

	if (m->qcol + n > QP_LINE - 1) {
		if ((st = wr_put(&m->wr, "=\r\n", 3, ei)) != ST_OK)
			return st;
		m->qcol = 0;
	}
	m->qcol += n;
	return wr_put(&m->wr, s, n, ei);
}

static enum status
qp_byte(struct mstate *m, unsigned char c, struct errinfo *ei)
{
	static const char hex[] = "0123456789ABCDEF";
	char t[3];
	enum status st;

	if (m->qp_ws >= 0) {
		t[0] = (char)m->qp_ws;
		m->qp_ws = -1;
		if ((st = qp_tok(m, t, 1, ei)) != ST_OK)
			return st;
	}
	if (c == ' ' || c == '\t') {
		m->qp_ws = c;
		return ST_OK;
	}
	if (c >= 33 && c <= 126 && c != '=') {
		t[0] = (char)c;
		return qp_tok(m, t, 1, ei);
	}
	t[0] = '=';
	t[1] = hex[c >> 4];
	t[2] = hex[c & 15];
	return qp_tok(m, t, 3, ei);
}

static enum status
qp_eol(struct mstate *m, struct errinfo *ei)
{
	enum status st;

	/* Trailing whitespace must be encoded or transports eat it. */
	if (m->qp_ws >= 0) {
		st = qp_tok(m, m->qp_ws == ' ' ? "=20" : "=09", 3, ei);
		m->qp_ws = -1;
		if (st != ST_OK)
			return st;
	}
	m->qcol = 0;
	return wr_put(&m->wr, "\r\n", 2, ei);
}

/*
 * Switch to quoted-printable after the fact: move the body written so
 * far to a scratch file, rewrite the header with the new encoding, and
 * encode the old body from the scratch file.
 */
static enum status
rewind_to_qp(struct mstate *m, struct errinfo *ei)
{
	const char *dir = m->o->tmpdir;
	struct buf path, nh;
	char chunk[8192];
	off_t body_off = (off_t)m->hdr.len, end, pos;
	ssize_t got;
	bool cr = false;
	size_t i, endh;
	int scratch = -1;
	enum status st;

	buf_init(&path, 4096);
	buf_init(&nh, m->hdr.max + HDR_SLACK);
	if ((st = wr_flush(&m->wr, ei)) != ST_OK)
		goto out;
	end = m->wr.total;
	if (dir == NULL && (dir = getenv("TMPDIR")) == NULL)
		dir = "/tmp";
	if ((st = buf_printf(&path, ei, "%s/bearmail-qp.XXXXXX", dir)) != ST_OK)
		goto out;
	/* O_CLOEXEC: a child we run later must not inherit the body. */
	if ((scratch = mkostemp(path.data, O_CLOEXEC)) < 0) {
		st = st_errno(ei, ST_SYS, "scratch file in %s", dir);
		goto out;
	}
	unlink(path.data);
	for (pos = body_off; pos < end; pos += got) {
		size_t want = end - pos > (off_t)sizeof(chunk) ?
		    sizeof(chunk) : (size_t)(end - pos);
		got = pread(m->wr.fd, chunk, want, pos);
		if (got < 0 && errno == EINTR) {
			got = 0;
			continue;
		}
		if (got <= 0) {
			st = st_errno(ei, ST_SYS, "reading back the message");
			goto out;
		}
		if ((st = xio_write_all(scratch, chunk, (size_t)got, ST_SYS,
		    "the scratch file", ei)) != ST_OK)
			goto out;
	}

	/* The new header: without the old CTE and the blank line. */
	endh = m->hdr.len - 2;
	if (m->has_cte) {
		if ((st = buf_add(&nh, m->hdr.data, m->cte_off, ei)) != ST_OK ||
		    (st = buf_add(&nh, m->hdr.data + m->cte_off + m->cte_len,
		    endh - m->cte_off - m->cte_len, ei)) != ST_OK)
			goto out;
	} else if ((st = buf_add(&nh, m->hdr.data, endh, ei)) != ST_OK)
		goto out;
	if (!m->has_mime &&
	    (st = buf_adds(&nh, "MIME-Version: 1.0\r\n", ei)) != ST_OK)
		goto out;
	st = buf_adds(&nh, "Content-Transfer-Encoding: quoted-printable\r\n"
	    "\r\n", ei);
	if (st != ST_OK)
		goto out;

	if (ftruncate(m->wr.fd, 0) != 0 || lseek(m->wr.fd, 0, SEEK_SET) != 0) {
		st = st_errno(ei, ST_SYS, "rewinding the message");
		goto out;
	}
	m->wr.total = 0;
	if ((st = wr_put(&m->wr, nh.data, nh.len, ei)) != ST_OK)
		goto out;
	buf_free(&m->hdr);
	m->hdr = nh;
	buf_init(&nh, 0);
	m->mode = BODY_QP;
	m->info->qp_encoded = true;
	m->info->body_8bit = false;
	m->qp_ws = -1;
	m->qcol = 0;

	if (lseek(scratch, 0, SEEK_SET) != 0) {
		st = st_errno(ei, ST_SYS, "rewinding the scratch file");
		goto out;
	}
	for (;;) {
		got = read(scratch, chunk, sizeof(chunk));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			st = st_errno(ei, ST_SYS, "reading the scratch file");
			goto out;
		}
		if (got == 0)
			break;
		for (i = 0; i < (size_t)got; i++) {
			unsigned char c = (unsigned char)chunk[i];

			if (cr) {
				cr = false;
				if (c == '\n') {
					if ((st = qp_eol(m, ei)) != ST_OK)
						goto out;
					continue;
				}
				if ((st = qp_byte(m, '\r', ei)) != ST_OK)
					goto out;
			}
			if (c == '\r')
				cr = true;
			else if ((st = qp_byte(m, c, ei)) != ST_OK)
				goto out;
		}
	}
	if (cr)
		st = qp_byte(m, '\r', ei);
out:
	if (scratch >= 0)
		close(scratch);
	buf_free(&path);
	buf_free(&nh);
	return st;
}

static enum status
body_piece(struct mstate *m, const char *p, size_t n, bool eol,
    struct errinfo *ei)
{
	enum status st;
	size_t k, i;

	if (m->mode == BODY_PASS && m->col + n > MSG_LINE_MAX && m->eligible) {
		if ((st = rewind_to_qp(m, ei)) != ST_OK)
			return st;
	}
	if (m->mode == BODY_QP) {
		for (i = 0; i < n; i++)
			if ((st = qp_byte(m, (unsigned char)p[i], ei)) != ST_OK)
				return st;
		return eol ? qp_eol(m, ei) : ST_OK;
	}
	if (!m->info->body_8bit)
		m->info->body_8bit = has_8bit(p, n);
	while (m->col + n > MSG_LINE_MAX) {
		/* Not ours to re-encode: break as Postfix does. */
		k = MSG_LINE_MAX - m->col;
		if ((st = wr_put(&m->wr, p, k, ei)) != ST_OK ||
		    (st = wr_put(&m->wr, "\r\n", 2, ei)) != ST_OK)
			return st;
		m->info->lines_broken++;
		m->col = 0;
		p += k;
		n -= k;
	}
	if ((st = wr_put(&m->wr, p, n, ei)) != ST_OK)
		return st;
	m->col += n;
	if (eol) {
		m->col = 0;
		return wr_put(&m->wr, "\r\n", 2, ei);
	}
	return ST_OK;
}

/* ---- the header/body machine ----------------------------------------- */

/* Whether a line starts a header field: a name of 33..126, then ':'. */
static bool
is_field_start(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && p[i] != ':' && (unsigned char)p[i] > 32 &&
	    (unsigned char)p[i] < 127)
		i++;
	if (i == 0)
		return false;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	return i < n && p[i] == ':';
}

/*
 * One piece of input while in the header section.  *to_body is set when
 * the piece turned out to start the body (a line that is no header
 * field), and must go there.
 */
static enum status
header_piece(struct mstate *m, const char *p, size_t n, bool bol, bool eol,
    bool *to_body, struct errinfo *ei)
{
	enum status st;

	*to_body = false;
	m->hdr_in += n + 2;
	if (m->hdr_in > m->maxh)
		return st_error(ei, ST_LIMIT,
		    "header section longer than %zu bytes", m->maxh);
	if (bol && n == 0 && eol) {
		m->in_hdr = false;
		return end_headers(m, ei);
	}
	if (bol && n > 0 && (p[0] == ' ' || p[0] == '\t') &&
	    m->field.len > 0) {
		/* A continuation line. */
	} else if (bol && is_field_start(p, n)) {
		if ((st = flush_field(m, ei)) != ST_OK)
			return st;
	} else if (bol) {
		/* Not a header: the body starts without the blank line. */
		m->in_hdr = false;
		*to_body = true;
		return end_headers(m, ei);
	}
	if ((st = buf_add(&m->field, p, n, ei)) == ST_OK && eol)
		st = buf_add(&m->field, "\r\n", 2, ei);
	if (st == ST_LIMIT)
		st_context(ei, "header section");
	return st;
}

enum status
msg_rewrite(int in, int out, const struct msg_opts *o, struct msg_info *info,
    struct errinfo *ei)
{
	struct mstate *m;
	const char *p = NULL;
	size_t n = 0;
	bool eol = false, end, bare, bol = true, first = true, skip = false;
	bool to_body;
	enum status st = ST_OK;

	if (o->from_addr == NULL)
		return st_error(ei, ST_CONFIG, "no From address to use");
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	m->maxh = o->max_header != 0 ? o->max_header : MSG_HEADER_MAX;
	m->o = o;
	m->info = info;
	m->rd.fd = in;
	m->wr.fd = out;
	m->wr.max = o->max_size != 0 ? o->max_size : MSG_SIZE_MAX;
	buf_init(&m->hdr, m->maxh + HDR_SLACK);
	buf_init(&m->field, m->maxh);
	buf_init(&m->val, m->maxh);
	m->in_hdr = true;
	m->eligible = true;
	m->qp_ws = -1;

	for (;;) {
		m->rd.cr_space = m->in_hdr;
		if ((st = rd_piece(&m->rd, &p, &n, &eol, &bare, &end, ei)) !=
		    ST_OK)
			goto out;
		if (end)
			break;
		/* Only a real line end makes a "." line (not ".\rmore"). */
		if (bol && eol && !bare && n == 1 && p[0] == '.' &&
		    o->dot_ends) {
			info->dot_seen = true;
			break;
		}
		if (first && n >= 5 && memcmp(p, "From ", 5) == 0)
			skip = true;	/* an mbox separator */
		first = false;
		if (skip) {
			skip = !eol;
			bol = eol;
			continue;
		}
		to_body = !m->in_hdr;
		if (m->in_hdr && (st = header_piece(m, p, n, bol, eol, &to_body,
		    ei)) != ST_OK)
			goto out;
		if (to_body && (st = body_piece(m, p, n, eol, ei)) != ST_OK)
			goto out;
		bol = eol;
	}
	if (m->in_hdr) {
		/* A partial field line at EOF is complete now. */
		if (m->field.len > 0 && !bol &&
		    (st = buf_add(&m->field, "\r\n", 2, ei)) != ST_OK)
			goto out;
		if ((st = end_headers(m, ei)) != ST_OK)
			goto out;
	} else if (!bol && (st = body_piece(m, "", 0, true, ei)) != ST_OK)
		goto out;
	if ((st = wr_flush(&m->wr, ei)) != ST_OK)
		goto out;
	info->size = m->wr.total;
	if (o->want_rcpts) {
		/* Hand over the chosen list; the other is freed below. */
		struct rfc5322_list *src = m->resent_rcpts ? &m->rrcpts :
		    &m->hrcpts;
		info->rcpts = *src;
		src->v = NULL;
		src->n = 0;
	}
out:
	rfc5322_list_free(&m->hrcpts);
	rfc5322_list_free(&m->rrcpts);
	buf_free(&m->hdr);
	buf_free(&m->field);
	buf_free(&m->val);
	free(m);
	return st;
}

void
msg_info_free(struct msg_info *info)
{
	if (info == NULL)
		return;
	free(info->message_id);
	rfc5322_list_free(&info->rcpts);
	memset(info, 0, sizeof(*info));
}
