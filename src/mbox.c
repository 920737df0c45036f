/*
 * mbox.c: appending to an mbox file (mboxrd quoting, fcntl lock plus
 * dotlock, fsync, truncation on failure).  See mbox.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "mbox.h"
#include "xio.h"

#define MBOX_HEAD_MAX	(8 * 1024)	/* bytes searched for Return-Path */
#define MBOX_OUT_MAX	(64 * 1024)	/* output gathered per write(2) */
#define MBOX_STALE	300		/* seconds: a dotlock this old is dead */

struct mbox {
	char *path;
	char *lockpath;
	int timeout;
	int fd;			/* open between begin and commit/abort */
	bool dotlocked;
	off_t orig;		/* length before this message */
	bool from_done;		/* the "From " line is out */
	struct buf head;	/* the message's first bytes, until from_done */
	struct mbox_quote q;
	char last;		/* last byte written of the message */
	char out[MBOX_OUT_MAX + MBOX_QUOTE_SLACK + 64];
	size_t olen;
};

/* ---- quoting ---------------------------------------------------------- */

void
mbox_quote_init(struct mbox_quote *q)
{
	memset(q, 0, sizeof(*q));
	q->bol = true;
}

/*
 * At a line's start the '>' bytes go out as they come (adding the one
 * extra '>' after them is the same as adding it before them); only up to
 * five bytes of "From " are ever held back.
 */
size_t
mbox_quote(struct mbox_quote *q, const char *in, size_t n, char *out,
    size_t outsz)
{
	static const char from[] = "From ";
	size_t i, o = 0;

	(void)outsz;
	for (i = 0; i < n; i++) {
		char c = in[i];

		if (!q->bol) {
			const char *nl = memchr(in + i, '\n', n - i);
			size_t run = nl != NULL ? (size_t)(nl - (in + i)) + 1 :
			    n - i;
			memcpy(out + o, in + i, run);
			o += run;
			i += run - 1;
			if (nl != NULL) {
				q->bol = true;
				q->gts = 0;
			}
			continue;
		}
		if (c == '>' && q->held == 0) {
			out[o++] = c;
			q->gts++;
			continue;
		}
		if (c == from[q->held]) {
			q->hold[q->held++] = c;
			if (q->held == 5) {
				out[o++] = '>';
				memcpy(out + o, q->hold, 5);
				o += 5;
				q->held = 0;
				q->bol = false;
			}
			continue;
		}
		/* Not a From line: let the held bytes and this one go. */
		memcpy(out + o, q->hold, q->held);
		o += q->held;
		q->held = 0;
		out[o++] = c;
		if (c == '\n')
			q->gts = 0;
		else
			q->bol = false;
	}
	return o;
}

size_t
mbox_quote_end(struct mbox_quote *q, char *out, size_t outsz)
{
	size_t o = q->held;

	(void)outsz;
	memcpy(out, q->hold, q->held);
	q->held = 0;
	return o;
}

/* ---- locking ---------------------------------------------------------- */

static void
nap(void)
{
	struct timespec ts = { 0, 100 * 1000000L };

	nanosleep(&ts, NULL);
}

static enum status
mbox_lock(struct mbox *m, struct errinfo *ei)
{
	time_t end = time(NULL) + m->timeout;
	struct flock fl;
	struct stat sb;
	int fd;

	for (;;) {
		fd = open(m->lockpath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0600);
		if (fd >= 0) {
			close(fd);
			m->dotlocked = true;
			break;
		}
		if (errno == EACCES || errno == EROFS || errno == EPERM)
			break;	/* no dotlocks here: fcntl must do */
		if (errno != EEXIST)
			return st_errno(ei, ST_CANTCREAT, "mbox: %s",
			    m->lockpath);
		if (stat(m->lockpath, &sb) == 0 &&
		    sb.st_mtime + MBOX_STALE < time(NULL)) {
			(void)unlink(m->lockpath);
			continue;
		}
		if (time(NULL) >= end)
			return st_error(ei, ST_TEMPFAIL, "mbox: %s is locked "
			    "(%s exists)", m->path, m->lockpath);
		nap();
	}
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	while (fcntl(m->fd, F_SETLK, &fl) != 0) {
		if (errno != EACCES && errno != EAGAIN && errno != EINTR)
			return st_errno(ei, ST_CANTCREAT, "mbox: lock %s",
			    m->path);
		if (time(NULL) >= end)
			return st_error(ei, ST_TEMPFAIL, "mbox: %s is locked "
			    "by another process", m->path);
		nap();
	}
	return ST_OK;
}

static void
mbox_unlock(struct mbox *m)
{
	struct flock fl;

	if (m->fd >= 0) {
		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_UNLCK;
		fl.l_whence = SEEK_SET;
		(void)fcntl(m->fd, F_SETLK, &fl);
		close(m->fd);
		m->fd = -1;
	}
	if (m->dotlocked) {
		(void)unlink(m->lockpath);
		m->dotlocked = false;
	}
}

/* ---- writing ---------------------------------------------------------- */

static enum status
raw_write(struct mbox *m, const char *p, size_t n, struct errinfo *ei)
{
	return xio_write_all(m->fd, p, n, ST_CANTCREAT, m->path, ei);
}

static enum status
out_flush(struct mbox *m, struct errinfo *ei)
{
	enum status st;

	if (m->olen == 0)
		return ST_OK;
	st = raw_write(m, m->out, m->olen, ei);
	m->olen = 0;
	return st;
}

/* Quote and queue message bytes. */
static enum status
body_write(struct mbox *m, const char *p, size_t n, struct errinfo *ei)
{
	enum status st;
	size_t chunk;

	while (n > 0) {
		chunk = n > MBOX_OUT_MAX / 2 ? MBOX_OUT_MAX / 2 : n;
		if (m->olen + chunk + MBOX_QUOTE_SLACK > MBOX_OUT_MAX &&
		    (st = out_flush(m, ei)) != ST_OK)
			return st;
		m->olen += mbox_quote(&m->q, p, chunk, m->out + m->olen,
		    sizeof(m->out) - m->olen);
		m->last = p[chunk - 1];
		p += chunk;
		n -= chunk;
	}
	return ST_OK;
}

/* The Return-Path address in the header held so far, into out. */
static void
return_path(const struct buf *h, char *out, size_t outsz)
{
	const char *p = h->data, *end = h->data + h->len, *eol, *lt, *gt;
	size_t n;

	snprintf(out, outsz, "MAILER-DAEMON");
	while (p != NULL && p < end) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL || eol == p)
			return;		/* end of header, or incomplete */
		if ((size_t)(eol - p) > 12 &&
		    strncasecmp(p, "Return-Path:", 12) == 0) {
			lt = memchr(p, '<', (size_t)(eol - p));
			gt = lt != NULL ? memchr(lt, '>', (size_t)(eol - lt)) :
			    NULL;
			if (lt == NULL || gt == NULL || gt == lt + 1)
				return;
			n = (size_t)(gt - lt - 1);
			if (n >= outsz)
				return;
			memcpy(out, lt + 1, n);
			out[n] = '\0';
			/* Nothing that would break the From line. */
			for (size_t i = 0; i < n; i++)
				if ((unsigned char)out[i] <= 0x20 ||
				    (unsigned char)out[i] >= 0x7f)
					out[i] = '_';
			return;
		}
		p = eol + 1;
	}
}

static enum status
from_line(struct mbox *m, struct errinfo *ei)
{
	char sender[256], date[64], line[400];
	time_t now = time(NULL);
	struct tm tm;
	enum status st;
	int n;

	return_path(&m->head, sender, sizeof(sender));
	localtime_r(&now, &tm);
	/* ctime(3) style, as every mbox reader expects. */
	strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	n = snprintf(line, sizeof(line), "From %s %s\n", sender, date);
	if ((st = raw_write(m, line, (size_t)n, ei)) != ST_OK)
		return st;
	m->from_done = true;
	st = body_write(m, m->head.data != NULL ? m->head.data : "",
	    m->head.len, ei);
	buf_free(&m->head);
	buf_init(&m->head, MBOX_HEAD_MAX);
	return st;
}

enum status
mbox_open(void **ctx, const char *path, int timeout, struct errinfo *ei)
{
	struct mbox *m;
	size_t n = strlen(path);

	*ctx = NULL;
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->path = strdup(path)) == NULL ||
	    (m->lockpath = malloc(n + 6)) == NULL) {
		if (m != NULL)
			free(m->path);
		free(m);
		return st_errno(ei, ST_SYS, "out of memory");
	}
	memcpy(m->lockpath, path, n);
	memcpy(m->lockpath + n, ".lock", 6);
	m->timeout = timeout > 0 ? timeout : 60;
	m->fd = -1;
	buf_init(&m->head, MBOX_HEAD_MAX);
	*ctx = m;
	return ST_OK;
}

static enum status
mb_begin(void *ctx, struct errinfo *ei)
{
	struct mbox *m = ctx;
	struct stat sb;
	enum status st;

	m->fd = open(m->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (m->fd < 0)
		return st_errno(ei, ST_CANTCREAT, "mbox: open %s", m->path);
	if ((st = mbox_lock(m, ei)) != ST_OK) {
		mbox_unlock(m);
		return st;
	}
	if (fstat(m->fd, &sb) != 0) {
		st = st_errno(ei, ST_CANTCREAT, "mbox: stat %s", m->path);
		mbox_unlock(m);
		return st;
	}
	m->orig = sb.st_size;
	m->from_done = false;
	m->olen = 0;
	m->last = '\n';
	buf_reset(&m->head);
	mbox_quote_init(&m->q);
	return ST_OK;
}

static enum status
mb_write(void *ctx, const void *p, size_t n, struct errinfo *ei)
{
	struct mbox *m = ctx;
	enum status st;
	size_t room;

	if (!m->from_done) {
		room = m->head.max - m->head.len;
		if (n <= room) {
			st = buf_add(&m->head, p, n, ei);
			if (st != ST_OK || m->head.len < m->head.max)
				return st;
			return from_line(m, ei);
		}
		if ((st = buf_add(&m->head, p, room, ei)) != ST_OK ||
		    (st = from_line(m, ei)) != ST_OK)
			return st;
		p = (const char *)p + room;
		n -= room;
	}
	return body_write(m, p, n, ei);
}

static void
mb_abort(void *ctx)
{
	struct mbox *m = ctx;

	/* A partial message left behind would be read as mail: say so. */
	if (m->fd >= 0 && ftruncate(m->fd, m->orig) != 0)
		log_err("mbox %s: cannot remove a partial message at offset "
		    "%lld: %s", m->path, (long long)m->orig, strerror(errno));
	mbox_unlock(m);
	buf_reset(&m->head);
	m->olen = 0;
}

static enum status
mb_commit(void *ctx, struct errinfo *ei)
{
	struct mbox *m = ctx;
	enum status st;

	if (!m->from_done && (st = from_line(m, ei)) != ST_OK)
		goto fail;
	m->olen += mbox_quote_end(&m->q, m->out + m->olen,
	    sizeof(m->out) - m->olen);
	/* The message ends with a newline, then an empty line. */
	if (m->last != '\n')
		m->out[m->olen++] = '\n';
	m->out[m->olen++] = '\n';
	if ((st = out_flush(m, ei)) != ST_OK)
		goto fail;
	if (fsync(m->fd) != 0) {
		st = st_errno(ei, ST_CANTCREAT, "mbox: fsync %s", m->path);
		goto fail;
	}
	mbox_unlock(m);
	return ST_OK;
fail:
	mb_abort(m);
	return st;
}

static void
mb_free(void *ctx)
{
	struct mbox *m = ctx;

	if (m == NULL)
		return;
	if (m->fd >= 0)
		mb_abort(m);
	buf_free(&m->head);
	free(m->path);
	free(m->lockpath);
	free(m);
}

const struct deliver_ops mbox_ops = {
	.name = "mbox",
	.begin = mb_begin,
	.write = mb_write,
	.commit = mb_commit,
	.abort = mb_abort,
	.free = mb_free,
};
