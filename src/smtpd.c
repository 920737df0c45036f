/*
 * smtpd.c: the server side of SMTP for `bearmail -bs`.
 *
 *   RFC 5321 sections 4.1 (commands), 4.1.1.4 (DATA, dot-unstuffing),
 *   4.2 (replies), 4.5.3.1 (limits); RFC 1870, RFC 6152, RFC 2920,
 *   RFC 2034 (what EHLO offers).
 *
 * The dialogue is read byte by byte from a buffer, never with stdio, so
 * that the message can go to its temporary file without limit on line
 * length (msg_rewrite() deals with long lines later) while command lines
 * stay bounded.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "smtpd.h"
#include "submit.h"
#include "xio.h"

#define PATH_MAX_LEN	1024		/* an address between < and > */
#define DATA_CHUNK	(64 * 1024)

struct smtpd {
	const struct smtpd_opts *o;
	char in[SMTPD_LINE_MAX * 2];
	size_t off, len;
	bool eof;
	bool out_broken;		/* the reply side failed */
	char *sender;			/* MAIL FROM; NULL: none yet */
	char **rcpts;
	size_t nrcpts;
};

/* The next input byte; false at EOF. */
static bool
getbyte(struct smtpd *d, char *c)
{
	ssize_t got;

	while (d->off == d->len) {
		if (d->eof)
			return false;
		got = read(d->o->in, d->in, sizeof(d->in));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			d->eof = true;
			return false;
		}
		d->off = 0;
		d->len = (size_t)got;
	}
	*c = d->in[d->off++];
	return true;
}

/*
 * One command line, CRLF or LF stripped.  A longer line than linesz is
 * consumed whole and flagged (*toolong).  false at EOF.
 */
static bool
getline_bounded(struct smtpd *d, char *line, size_t linesz, bool *toolong)
{
	size_t n = 0;
	bool any = false;
	char c;

	*toolong = false;
	while (getbyte(d, &c)) {
		any = true;
		if (c == '\n')
			break;
		if (n + 1 < linesz)
			line[n++] = c;
		else
			*toolong = true;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	return any;
}

static void __attribute__((format(printf, 2, 3)))
reply(struct smtpd *d, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	size_t n;
	char *p;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	/* Replies may carry a server's text: one line, whatever it held. */
	for (p = line; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	n = strlen(line);
	memcpy(line + n, "\r\n", 2);
	if (!d->out_broken &&
	    xio_write_all(d->o->out, line, n + 2, ST_SYS, "reply", NULL) !=
	    ST_OK)
		d->out_broken = true;
}

/*
 * Write a chunk of DATA to fd.  Past the size bound, or when the write
 * fails, the rest is read and thrown away; the first failure is kept
 * in ei (ST_LIMIT, or ST_SYS for the file).
 */
static void
put(struct smtpd *d, int fd, struct buf *out, off_t *total,
    struct errinfo *ei)
{
	if (ei->st == ST_OK) {
		*total += (off_t)out->len;
		if (*total > d->o->size_max)
			st_error(ei, ST_LIMIT, "message too large (over %lld "
			    "octets)", (long long)d->o->size_max);
		else
			xio_write_all(fd, out->data, out->len, ST_SYS,
			    "the received message", ei);
	}
	buf_reset(out);
}

/*
 * DATA: copy the lines up to "." into fd, dot-unstuffed, each ending in
 * LF.  false at EOF before the final dot.
 */
static bool
data(struct smtpd *d, int fd, struct errinfo *ei)
{
	struct buf out;
	bool bol = true, dot = false, ok = false;
	off_t total = 0;
	char c;

	buf_init(&out, DATA_CHUNK);
	while (getbyte(d, &c)) {
		if (bol && c == '.') {
			dot = true;	/* a stuffed dot, or the end */
			bol = false;
			continue;
		}
		bol = false;
		if (c == '\n') {
			if (dot && (out.len == 0 ||
			    (out.len == 1 && out.data[0] == '\r'))) {
				ok = true;
				break;
			}
			if (out.len > 0 && out.data[out.len - 1] == '\r')
				out.len--;
			buf_add(&out, "\n", 1, NULL);
			put(d, fd, &out, &total, ei);
			bol = true;
			dot = false;
			continue;
		}
		if (out.len + 2 >= out.max) {
			put(d, fd, &out, &total, ei);
			dot = false;	/* a long line is no end marker */
		}
		buf_add(&out, &c, 1, NULL);
	}
	buf_free(&out);
	return ok;
}

/* The address between '<' and '>' after "FROM:" or "TO:", copied. */
static bool
path_arg(const char *arg, const char *kw, char *out, size_t outsz)
{
	size_t kl = strlen(kw), n;
	const char *gt, *colon, *p;

	if (strncasecmp(arg, kw, kl) != 0)
		return false;
	arg += kl;
	while (*arg == ' ')
		arg++;
	if (*arg != '<' || (gt = strchr(arg, '>')) == NULL)
		return false;
	n = (size_t)(gt - arg - 1);
	if (n >= outsz)
		return false;
	memcpy(out, arg + 1, n);
	out[n] = '\0';
	/* Drop a source route ("@a,@b:user@c"). */
	if (out[0] == '@' && (colon = strchr(out, ':')) != NULL)
		memmove(out, colon + 1, strlen(colon + 1) + 1);
	for (p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

const char *
smtpd_reply_code(enum status st)
{
	switch (st) {
	case ST_NOUSER:
		return "550 5.1.1";
	case ST_LIMIT:
		return "552 5.3.4";
	case ST_DATAERR:
		return "554 5.6.0";
	case ST_USAGE:
		return "554 5.5.0";
	case ST_SYS:
		return "451 4.3.0";
	default:
		return st_retryable(st) ? "451 4.3.0" : "554 5.0.0";
	}
}

static void
reset(struct smtpd *d)
{
	size_t i;

	free(d->sender);
	d->sender = NULL;
	for (i = 0; i < d->nrcpts; i++)
		free(d->rcpts[i]);
	d->nrcpts = 0;
}

static void
cmd_mail(struct smtpd *d, const char *arg)
{
	char addr[PATH_MAX_LEN];

	if (d->sender != NULL)
		reply(d, "503 5.5.1 Error: nested MAIL command");
	else if (!path_arg(arg, "FROM:", addr, sizeof(addr)))
		reply(d, "501 5.5.4 Syntax: MAIL FROM:<address>");
	else if ((d->sender = strdup(addr)) == NULL)
		reply(d, "451 4.3.0 Out of memory");
	else
		reply(d, "250 2.1.0 Ok");
}

static void
cmd_rcpt(struct smtpd *d, const char *arg)
{
	char addr[PATH_MAX_LEN];
	size_t i;

	if (d->sender == NULL) {
		reply(d, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (!path_arg(arg, "TO:", addr, sizeof(addr)) || addr[0] == '\0' ||
	    addr[0] == '-') {
		reply(d, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	for (i = 0; i < d->nrcpts; i++)
		if (strcasecmp(d->rcpts[i], addr) == 0) {
			reply(d, "250 2.1.5 Ok");
			return;
		}
	if (d->nrcpts >= d->o->rcpts_max) {
		reply(d, "452 4.5.3 Too many recipients");
		return;
	}
	if ((d->rcpts[d->nrcpts] = strdup(addr)) == NULL) {
		reply(d, "451 4.3.0 Out of memory");
		return;
	}
	d->nrcpts++;
	reply(d, "250 2.1.5 Ok");
}

/* DATA, then the submission; false at EOF inside DATA. */
static bool
cmd_data(struct smtpd *d)
{
	char id[SMTPD_ID_MAX];
	struct errinfo ei;
	enum status st;
	int fd;

	if (d->sender == NULL || d->nrcpts == 0) {
		reply(d, "503 5.5.1 Error: need RCPT command");
		return true;
	}
	st_clear(&ei);
	if ((fd = submit_tmpfile(&ei)) < 0) {
		reply(d, "451 4.3.0 %s", ei.msg);
		return true;
	}
	reply(d, "354 End data with <CR><LF>.<CR><LF>");
	if (!data(d, fd, &ei)) {
		close(fd);
		return false;		/* nothing is submitted */
	}
	id[0] = '\0';
	st = ei.st;
	if (st == ST_OK && lseek(fd, 0, SEEK_SET) != 0)
		st = st_errno(&ei, ST_SYS, "rewinding the message");
	if (st == ST_OK)
		st = d->o->deliver(d->o->arg, d->sender,
		    (const char *const *)d->rcpts, d->nrcpts, fd, id, &ei);
	if (st == ST_OK)
		reply(d, "250 2.0.0 Ok: queued as %s", id);
	else
		reply(d, "%s %s", smtpd_reply_code(st), ei.msg);
	close(fd);
	reset(d);
	return true;
}

enum status
smtpd_run(const struct smtpd_opts *o, struct errinfo *ei)
{
	struct smtpd d;
	char line[SMTPD_LINE_MAX];
	const char *host = o->host != NULL ? o->host : "localhost";
	bool toolong;

	memset(&d, 0, sizeof(d));
	d.o = o;
	if ((d.rcpts = calloc(o->rcpts_max + 1, sizeof(char *))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	reply(&d, "220 %s ESMTP bearmail", host);
	while (!d.out_broken && getline_bounded(&d, line, sizeof(line),
	    &toolong)) {
		char *arg = strchr(line, ' ');
		const char *verb = line;

		if (toolong) {
			reply(&d, "500 5.5.2 Line too long");
			continue;
		}
		if (arg != NULL)
			*arg++ = '\0';
		else
			arg = line + strlen(line);
		if (strcasecmp(verb, "EHLO") == 0) {
			reset(&d);
			reply(&d, "250-%s", host);
			reply(&d, "250-PIPELINING");
			reply(&d, "250-8BITMIME");
			reply(&d, "250-SIZE %lld", (long long)o->size_max);
			reply(&d, "250 ENHANCEDSTATUSCODES");
		} else if (strcasecmp(verb, "HELO") == 0) {
			reset(&d);
			reply(&d, "250 %s", host);
		} else if (strcasecmp(verb, "MAIL") == 0) {
			cmd_mail(&d, arg);
		} else if (strcasecmp(verb, "RCPT") == 0) {
			cmd_rcpt(&d, arg);
		} else if (strcasecmp(verb, "DATA") == 0) {
			if (!cmd_data(&d))
				break;
		} else if (strcasecmp(verb, "RSET") == 0) {
			reset(&d);
			reply(&d, "250 2.0.0 Ok");
		} else if (strcasecmp(verb, "NOOP") == 0) {
			reply(&d, "250 2.0.0 Ok");
		} else if (strcasecmp(verb, "VRFY") == 0) {
			reply(&d, "252 2.5.2 Cannot VRFY user, but will accept "
			    "message and attempt delivery");
		} else if (strcasecmp(verb, "QUIT") == 0) {
			reply(&d, "221 2.0.0 Bye");
			break;
		} else if (strcasecmp(verb, "HELP") == 0) {
			reply(&d, "214 2.0.0 EHLO HELO MAIL RCPT DATA RSET NOOP "
			    "VRFY QUIT");
		} else {
			reply(&d, "502 5.5.2 Error: command not recognized");
		}
	}
	reset(&d);
	free(d.rcpts);
	if (d.out_broken)
		return st_error(ei, ST_SYS, "-bs: cannot write replies");
	return ST_OK;
}
