/*
 * conn.c: connections with deadlines, bounded line reads, coalesced writes.
 *
 * Connect follows the spirit of RFC 8305 (Happy Eyeballs v2): the
 * addresses getaddrinfo() returns are interleaved by family and started
 * CONN_STAGGER_MS apart, a failed attempt starts the next one at once, the
 * first socket to connect wins, and one deadline covers them all.  Name
 * resolution itself is getaddrinfo(), which has the resolver's own timeouts
 * (resolv.conf) and cannot be bounded by poll(); it is the one wait not
 * counted against the deadline.
 *
 * The socket is non-blocking from birth: every wait is a poll() against a
 * CLOCK_MONOTONIC deadline, and sends use MSG_NOSIGNAL so that a peer
 * that went away costs an EPIPE, never a SIGPIPE.
 *
 * TLS session cache (conn_opts.tls_cache_dir, state_dir/tls).  Each file
 * holds the serialized TLS session of one (host as configured, port)
 * pair, and with it that session's MASTER SECRET: whoever reads it can
 * decrypt the recorded traffic of that session and of the sessions that
 * resume it.  Hence: a 0700 directory and 0600 files, ours; anything
 * else (a symlink, not a regular file, another owner, open to group or
 * others, too big, malformed, for another host, older than
 * CONN_TLS_CACHE_AGE) is ignored, never followed, and replaced after the
 * next full handshake.  The cache is an optimization only: no failure in
 * it ever fails a connection.  Only a fully verified handshake is saved,
 * and an entry is offered only to the host name it was verified for; a
 * server that declines it gets a full handshake, verified as always.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "tls.h"
#include "xio.h"

#define CONN_STAGGER_MS	250	/* RFC 8305 Connection Attempt Delay */
#define CONN_READ_CHUNK	16384	/* room for one read past a line */
#define CONN_CLOSE_MS	1000	/* bound on close_notify */

/*
 * A cached session is offered for a day after the full handshake that
 * made it, never longer, whatever the server's ticket says: after that
 * the certificate is verified again (expiry, trust anchors, name).
 */
#define CONN_TLS_CACHE_AGE	(24 * 60 * 60)
#define CONN_TLS_MAGIC		"BMTLSS\0\1"	/* 8 bytes, format 1 */
#define CONN_TLS_MAGIC_LEN	8
#define CONN_TLS_NAME_MAX	255
/* magic, time, host, port and the session, with their lengths */
#define CONN_TLS_ENTRY_MAX	(CONN_TLS_MAGIC_LEN + 8 + \
	2 + CONN_TLS_NAME_MAX + 2 + CONN_TLS_NAME_MAX + 4 + TLS_SESSION_MAX)

struct conn {
	int		 fd;
	char		*host;
	char		*port;
	char		*cache_dir;	/* TLS session cache, or NULL */
	int		 timeout;
	bool		 in_auth;	/* the last command carried a secret */
	size_t		 line_max;
	char		 peer[INET6_ADDRSTRLEN];

	struct tls	*tls;
	struct tls_io	 io;		/* fd and the current deadline */

	char		*rbuf;		/* received, not yet consumed */
	size_t		 rcap;
	size_t		 roff;		/* start of unconsumed data */
	size_t		 rlen;		/* bytes of unconsumed data */

	char		*wbuf;		/* queue, CONN_WBUF_FLUSH bytes */
	size_t		 wlen;
};

static void
deadline_start(struct conn *c)
{
	c->io.deadline = xio_deadline_ms((long)c->timeout * 1000);
}

/*
 * Wait for events on the socket until the current deadline.  Readiness
 * with an error condition counts as ready: the next system call reports
 * the error itself.
 */
static enum status
conn_wait(struct conn *c, short events, const char *what,
    struct errinfo *ei)
{
	struct pollfd pfd;
	int ms, n;

	for (;;) {
		ms = xio_ms_left(&c->io.deadline);
		if (ms == 0)
			break;
		pfd.fd = c->fd;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, ms);
		if (n > 0)
			return ST_OK;
		if (n < 0 && errno != EINTR)
			return st_errno(ei, ST_SYS, "poll");
	}
	return st_error(ei, ST_TIMEOUT, "%s %s timed out after %d s", what,
	    c->host, c->timeout);
}

/* --- connect ---------------------------------------------------------- */

/* Order addresses as RFC 8305 section 4 asks: alternate the families. */
static size_t
addr_interleave(struct addrinfo *res, struct addrinfo **out, size_t max)
{
	struct addrinfo *ai, *a = NULL, *b = NULL;
	size_t n = 0;
	int fam;

	if (res == NULL)
		return 0;
	fam = res->ai_family;
	a = res;
	for (b = res; b != NULL && b->ai_family == fam; b = b->ai_next)
		;
	while ((a != NULL || b != NULL) && n < max) {
		if (a != NULL) {
			out[n++] = a;
			for (ai = a->ai_next; ai != NULL && ai->ai_family != fam;
			    ai = ai->ai_next)
				;
			a = ai;
		}
		if (b != NULL && n < max) {
			out[n++] = b;
			for (ai = b->ai_next; ai != NULL && ai->ai_family == fam;
			    ai = ai->ai_next)
				;
			b = ai;
		}
	}
	return n;
}

static void
addr_text(const struct sockaddr *sa, char *out, size_t outsz)
{
	const void *p;

	if (sa->sa_family == AF_INET6)
		p = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	else
		p = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	if (inet_ntop(sa->sa_family, p, out, (socklen_t)outsz) == NULL)
		snprintf(out, outsz, "?");
}

struct attempt {
	int		 fd;
	struct addrinfo	*ai;
};

/* Start one attempt: 1 connected, 0 in progress, -1 failed (*err set). */
static int
attempt_start(struct attempt *at, struct addrinfo *ai,
    const struct addrinfo *bind_ai, int *err)
{
	at->ai = ai;
	at->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, ai->ai_protocol);
	if (at->fd == -1) {
		*err = errno;
		return -1;
	}
	if (bind_ai != NULL &&
	    bind(at->fd, bind_ai->ai_addr, bind_ai->ai_addrlen) == -1)
		goto fail;
	if (connect(at->fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return 1;
	if (errno == EINPROGRESS || errno == EINTR)
		return 0;
 fail:
	*err = errno;
	close(at->fd);
	at->fd = -1;
	return -1;
}

/*
 * The race.  *fdp gets the winning socket; on failure it is -1 and the
 * status says why (the status of this failure, whatever ei held before).
 * pending has room for one attempt per address.
 */
static enum status
conn_race(struct conn *c, struct addrinfo **addrs, size_t naddr,
    const struct addrinfo *bind_ai, int *fdp, struct errinfo *ei)
{
	enum status st = ST_OK;
	struct attempt *pending = NULL;
	struct pollfd *pfd = NULL;
	struct timespec next_at;
	size_t next = 0, npend = 0, i, j;
	int fd = -1, err = 0, r, ms, soerr;
	socklen_t sl;
	char addr[INET6_ADDRSTRLEN] = "?";

	pending = calloc(naddr, sizeof(*pending));
	pfd = calloc(naddr, sizeof(*pfd));
	if (pending == NULL || pfd == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto done;
	}
	deadline_start(c);
	next_at = xio_now();
	for (;;) {
		/* Start every attempt that is due. */
		while (next < naddr && xio_expired(&next_at)) {
			struct attempt *at = &pending[npend];

			addr_text(addrs[next]->ai_addr, addr, sizeof(addr));
			r = attempt_start(at, addrs[next++], bind_ai, &err);
			if (r == 1) {
				fd = at->fd;
				at->fd = -1;
				snprintf(c->peer, sizeof(c->peer), "%s", addr);
				goto done;
			}
			if (r == 0) {
				npend++;
				next_at = xio_deadline_ms(CONN_STAGGER_MS);
			}
		}
		if (npend == 0 && next >= naddr)
			break;
		ms = xio_ms_left(&c->io.deadline);
		if (ms == 0) {
			st = st_error(ei, ST_TIMEOUT,
			    "connection to %s port %s timed out after %d s",
			    c->host, c->port, c->timeout);
			goto done;
		}
		if (next < naddr && xio_ms_left(&next_at) < ms)
			ms = xio_ms_left(&next_at);
		for (i = 0; i < npend; i++) {
			pfd[i].fd = pending[i].fd;
			pfd[i].events = POLLOUT;
			pfd[i].revents = 0;
		}
		r = poll(pfd, npend, ms);
		if (r < 0 && errno != EINTR) {
			st = st_errno(ei, ST_SYS, "poll");
			goto done;
		}
		for (i = 0, j = 0; r > 0 && i < npend; i++) {
			if (pfd[i].revents == 0) {
				pending[j++] = pending[i];
				continue;
			}
			soerr = 0;
			sl = sizeof(soerr);
			if (getsockopt(pending[i].fd, SOL_SOCKET, SO_ERROR,
			    &soerr, &sl) == -1)
				soerr = errno;
			if (soerr == 0) {
				fd = pending[i].fd;
				pending[i].fd = -1;
				addr_text(pending[i].ai->ai_addr, c->peer,
				    sizeof(c->peer));
				for (i++; i < npend; i++)
					pending[j++] = pending[i];
				npend = j;
				goto done;
			}
			/* This one failed: the next need not wait its turn. */
			err = soerr;
			addr_text(pending[i].ai->ai_addr, addr, sizeof(addr));
			close(pending[i].fd);
			next_at = xio_now();
		}
		if (r > 0)
			npend = j;
	}
	errno = err;
	st = st_errno(ei, ST_NET, "cannot connect to %s port %s (%s)",
	    c->host, c->port, addr);
 done:
	if (pending != NULL)
		for (i = 0; i < npend; i++)
			if (pending[i].fd != -1)
				close(pending[i].fd);
	free(pending);
	free(pfd);
	*fdp = fd;
	return st;
}

enum status
conn_open(struct conn **out, const struct conn_opts *o, struct errinfo *ei)
{
	struct addrinfo hints, *res = NULL, *bres = NULL, **addrs = NULL;
	struct conn *c = NULL;
	enum status st = ST_OK;
	size_t naddr = 0, n;
	struct addrinfo *ai;
	int rc, one = 1;
	char note[256];

	*out = NULL;
	if (o->host == NULL || o->port == NULL || *o->host == '\0')
		return st_error(ei, ST_CONFIG, "no host or port to connect to");
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	c->fd = -1;
	c->io.fd = -1;
	c->timeout = o->timeout > 0 ? o->timeout : 60;
	c->line_max = o->line_max > 0 ? o->line_max : CONN_LINE_MAX;
	c->rcap = c->line_max + 2 + CONN_READ_CHUNK;
	c->host = strdup(o->host);
	c->port = strdup(o->port);
	if (o->tls_cache_dir != NULL && *o->tls_cache_dir != '\0' &&
	    (c->cache_dir = strdup(o->tls_cache_dir)) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto fail;
	}
	c->rbuf = malloc(c->rcap + 1);
	c->wbuf = malloc(CONN_WBUF_FLUSH + 1);
	if (c->host == NULL || c->port == NULL || c->rbuf == NULL ||
	    c->wbuf == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto fail;
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	if (o->bind_addr != NULL) {
		hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
		if ((rc = getaddrinfo(o->bind_addr, NULL, &hints, &bres)) != 0) {
			st = st_error(ei, ST_CONFIG, "bad bind address %s: %s",
			    o->bind_addr, gai_strerror(rc));
			goto fail;
		}
		hints.ai_family = bres->ai_family;
		hints.ai_flags = 0;
	}
	rc = getaddrinfo(c->host, c->port, &hints, &res);
	if (rc == EAI_SYSTEM) {
		st = st_errno(ei, ST_NET, "cannot resolve %s", c->host);
		goto fail;
	} else if (rc != 0) {
		st = st_error(ei, ST_NET, "cannot resolve %s port %s: %s",
		    c->host, c->port, gai_strerror(rc));
		goto fail;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
		naddr++;
	if ((addrs = calloc(naddr, sizeof(*addrs))) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto fail;
	}
	n = addr_interleave(res, addrs, naddr);
	if ((st = conn_race(c, addrs, n, bres, &c->fd, ei)) != ST_OK)
		goto fail;
	c->io.fd = c->fd;
	/* We coalesce writes ourselves; Nagle would only add delay. */
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	snprintf(note, sizeof(note), "connected to %s[%s]:%s", c->host,
	    c->peer, c->port);
	log_wire(LOG_NOTE, note, strlen(note), false);
	*out = c;
	c = NULL;
 fail:
	free(addrs);
	if (res != NULL)
		freeaddrinfo(res);
	if (bres != NULL)
		freeaddrinfo(bres);
	conn_close(c);
	return st;
}

enum status
conn_target_check(const struct conn_target *t, const char *proto,
    struct errinfo *ei)
{
	if (t->host == NULL || t->timeout <= 0 || t->port == 0 ||
	    t->port > 65535)
		return st_error(ei, ST_CONFIG, "%s: no host, port or timeout",
		    proto);
	if (t->tls != TLSM_NONE && t->tls_ctx == NULL)
		return st_error(ei, ST_CONFIG, "%s: TLS without trust anchors",
		    proto);
	return ST_OK;
}

enum status
conn_open_target(struct conn **out, const struct conn_target *t,
    const char *proto, size_t line_max, struct errinfo *ei)
{
	struct conn_opts co;
	char port[16];
	enum status st;

	*out = NULL;
	if ((st = conn_target_check(t, proto, ei)) != ST_OK)
		return st;
	snprintf(port, sizeof(port), "%u", t->port);
	memset(&co, 0, sizeof(co));
	co.host = t->host;
	co.port = port;
	co.timeout = t->timeout;
	co.line_max = line_max;
	co.bind_addr = t->bind_addr;
	co.tls_cache_dir = t->tls_cache_dir;
	if ((st = conn_open(out, &co, ei)) != ST_OK)
		return st;
	if (t->tls == TLSM_TLS &&
	    (st = conn_starttls(*out, t->tls_ctx, ei)) != ST_OK) {
		/* No QUIT or LOGOUT in clear to a port that speaks TLS. */
		conn_close(*out);
		*out = NULL;
	}
	return st;
}

/* --- writing ---------------------------------------------------------- */

/* Send the queue under the current deadline. */
static enum status
conn_flush_now(struct conn *c, struct errinfo *ei)
{
	enum status st = ST_OK;
	size_t off = 0;
	ssize_t n;

	if (c->wlen == 0)
		return ST_OK;
	if (c->tls != NULL) {
		st = tls_write(c->tls, c->wbuf, c->wlen, ei);
		off = c->wlen;
	}
	while (st == ST_OK && off < c->wlen) {
		n = send(c->fd, c->wbuf + off, c->wlen - off,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0)
			off += (size_t)n;
		else if (errno == EAGAIN || errno == EWOULDBLOCK)
			st = conn_wait(c, POLLOUT, "sending to", ei);
		else if (errno != EINTR)
			st = st_errno(ei, ST_NET, "send to %s", c->host);
	}
	/* The queue may have held an AUTH line. */
	st_wipe(c->wbuf, c->wlen);
	c->wlen = 0;
	return st;
}

enum status
conn_flush(struct conn *c, struct errinfo *ei)
{
	if (c->wlen == 0)
		return ST_OK;
	deadline_start(c);
	return conn_flush_now(c, ei);
}

enum status
conn_write(struct conn *c, const void *p, size_t n, struct errinfo *ei)
{
	const char *s = p;
	enum status st;
	size_t k;

	while (n > 0) {
		if (c->wlen == CONN_WBUF_FLUSH &&
		    (st = conn_flush(c, ei)) != ST_OK)
			return st;
		k = CONN_WBUF_FLUSH - c->wlen;
		if (k > n)
			k = n;
		memcpy(c->wbuf + c->wlen, s, k);
		c->wlen += k;
		s += k;
		n -= k;
	}
	return ST_OK;
}

void
conn_set_timeout(struct conn *c, int timeout)
{
	if (c != NULL && timeout > 0)
		c->timeout = timeout;
}

enum status
conn_cmd(struct conn *c, bool secret, struct errinfo *ei, const char *fmt, ...)
{
	va_list ap;
	enum status st;
	size_t len;
	char *line;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return st_errno(ei, ST_SYS, "formatting a command");
	len = (size_t)n;
	/*
	 * Not ST_LIMIT (EX_DATAERR, "the message is bad"): what makes a
	 * command this long is a credential (an AUTH line: a token may be
	 * replaced) or configuration (a folder name), never the message.
	 */
	if (len + 2 > CONN_WBUF_FLUSH)
		return st_error(ei, secret ? ST_AUTH : ST_CONFIG, "%s of %zu "
		    "bytes is too long to send as one command line",
		    secret ? "a credential line" : "a command line", len);
	if (CONN_WBUF_FLUSH - c->wlen < len + 2 &&
	    (st = conn_flush(c, ei)) != ST_OK)
		return st;
	/* Format straight into the queue: a secret is never copied twice. */
	line = c->wbuf + c->wlen;
	va_start(ap, fmt);
	vsnprintf(line, len + 1, fmt, ap);
	va_end(ap);
	if (memchr(line, '\r', len) != NULL || memchr(line, '\n', len) != NULL) {
		/* A line break from data would smuggle in a second command. */
		st_wipe(line, len);
		return st_error(ei, ST_DATAERR, "refusing to send a command "
		    "line that holds CR or LF");
	}
	log_wire(LOG_SEND, line, len, secret);
	/* Replies to a credential may echo it: redact them until the next
	 * ordinary command. */
	c->in_auth = secret;
	line[len] = '\r';
	line[len + 1] = '\n';
	c->wlen += len + 2;
	return ST_OK;
}

/* --- reading ---------------------------------------------------------- */

/* One read into the buffer (at least one byte, or an error). */
static enum status
conn_fill(struct conn *c, struct errinfo *ei)
{
	enum status st;
	size_t room, got;
	ssize_t n;

	if (c->roff > 0) {
		memmove(c->rbuf, c->rbuf + c->roff, c->rlen);
		c->roff = 0;
	}
	room = c->rcap - c->rlen;
	if (room == 0)
		return st_error(ei, ST_PROTO, "%s sent too long a line",
		    c->host);
	if (c->tls != NULL) {
		if ((st = tls_read(c->tls, c->rbuf + c->rlen, room, &got,
		    ei)) != ST_OK)
			return st;
		c->rlen += got;
		return ST_OK;
	}
	for (;;) {
		n = recv(c->fd, c->rbuf + c->rlen, room, MSG_DONTWAIT);
		if (n > 0) {
			c->rlen += (size_t)n;
			return ST_OK;
		}
		if (n == 0)
			return st_error(ei, ST_NET, "connection closed by %s",
			    c->host);
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if ((st = conn_wait(c, POLLIN, "waiting for", ei)) !=
			    ST_OK)
				return st;
		} else if (errno != EINTR)
			return st_errno(ei, ST_NET, "receive from %s", c->host);
	}
}

static enum status
readline(struct conn *c, bool fresh, char **line, size_t *len,
    struct errinfo *ei)
{
	enum status st;
	char *start, *nl;
	size_t n, l;

	*line = NULL;
	*len = 0;
	if (fresh)
		deadline_start(c);
	if ((st = conn_flush_now(c, ei)) != ST_OK)
		return st;
	for (;;) {
		start = c->rbuf + c->roff;
		if ((nl = memchr(start, '\n', c->rlen)) != NULL) {
			n = (size_t)(nl - start);
			l = n > 0 && start[n - 1] == '\r' ? n - 1 : n;
			if (l > c->line_max)
				break;
			if (memchr(start, '\0', l) != NULL)
				return st_error(ei, ST_PROTO, "line from %s "
				    "holds a NUL byte", c->host);
			start[l] = '\0';
			c->roff += n + 1;
			c->rlen -= n + 1;
			log_wire(LOG_RECV, start, l, c->in_auth);
			*line = start;
			*len = l;
			return ST_OK;
		}
		/* Room for line_max bytes and a CR still waiting for its LF. */
		if (c->rlen > c->line_max + 1)
			break;
		if ((st = conn_fill(c, ei)) != ST_OK)
			return st;
	}
	return st_error(ei, ST_PROTO, "line from %s longer than %zu bytes",
	    c->host, c->line_max);
}

enum status
conn_readline(struct conn *c, char **line, size_t *len, struct errinfo *ei)
{
	return readline(c, true, line, len, ei);
}

enum status
conn_readline_more(struct conn *c, char **line, size_t *len,
    struct errinfo *ei)
{
	return readline(c, false, line, len, ei);
}

enum status
conn_read(struct conn *c, void *p, size_t n, size_t *got, struct errinfo *ei)
{
	enum status st;

	*got = 0;
	if (n == 0)
		return ST_OK;
	deadline_start(c);
	if ((st = conn_flush_now(c, ei)) != ST_OK)
		return st;
	if (c->rlen == 0 && (st = conn_fill(c, ei)) != ST_OK)
		return st;
	if (n > c->rlen)
		n = c->rlen;
	memcpy(p, c->rbuf + c->roff, n);
	c->roff += n;
	c->rlen -= n;
	*got = n;
	return ST_OK;
}

enum status
conn_read_exact(struct conn *c, void *p, size_t n, struct errinfo *ei)
{
	enum status st;
	size_t got;
	char *s = p;

	/* Each read has its own deadline: a slow but moving peer is fine. */
	while (n > 0) {
		if ((st = conn_read(c, s, n, &got, ei)) != ST_OK)
			return st;
		s += got;
		n -= got;
	}
	return ST_OK;
}

size_t
conn_pending(const struct conn *c)
{
	return c->rlen + (c->tls != NULL ? tls_pending(c->tls) : 0);
}

/* --- TLS session cache ----------------------------------------------- */

static void cache_note(const char *, ...)
    __attribute__((format(printf, 1, 2)));

/* A -v transcript remark about the cache (never the entry's contents). */
static void
cache_note(const char *fmt, ...)
{
	char note[PATH_MAX + 128];
	va_list ap;

	if (!log_verbose())
		return;
	va_start(ap, fmt);
	vsnprintf(note, sizeof(note), fmt, ap);
	va_end(ap);
	log_wire(LOG_NOTE, note, strlen(note), false);
}

/*
 * The entry's path: DIR/HOST_PORT with anything but letters, digits, '.'
 * and '-' turned into '_' (the host is stored inside and compared, so a
 * clash only costs a full handshake).  False when there is no room.
 */
static bool
cache_path(const struct conn *c, char *out, size_t outsz)
{
	size_t i, n;
	int w;

	if (strlen(c->host) > CONN_TLS_NAME_MAX ||
	    strlen(c->port) > CONN_TLS_NAME_MAX)
		return false;
	w = snprintf(out, outsz, "%s/%s_%s", c->cache_dir, c->host, c->port);
	if (w < 0 || (size_t)w >= outsz)
		return false;
	n = strlen(c->cache_dir) + 1;
	for (i = n; out[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)out[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' ||
		    (ch == '.' && i > n)))
			out[i] = '_';
	}
	return true;
}

/* Ours, and closed to group and others (the style of token.c). */
static bool
cache_stat_ok(const struct stat *sb, const char *path, bool dir)
{
	if (dir ? !S_ISDIR(sb->st_mode) : !S_ISREG(sb->st_mode)) {
		cache_note("TLS session cache: %s is not a %s: ignored", path,
		    dir ? "directory" : "regular file");
		return false;
	}
	if (sb->st_uid != geteuid()) {
		cache_note("TLS session cache: %s is not ours: ignored", path);
		return false;
	}
	if ((sb->st_mode & 077) != 0) {
		cache_note("TLS session cache: %s is open to group or "
		    "others: ignored", path);
		return false;
	}
	return true;
}

static bool
cache_dir_ok(const struct conn *c, bool create)
{
	struct stat sb;

	if (create && mkdir(c->cache_dir, 0700) == -1 && errno != EEXIST)
		return false;
	if (lstat(c->cache_dir, &sb) == -1)
		return false;
	return cache_stat_ok(&sb, c->cache_dir, true);
}

static uint64_t
get_be(const unsigned char *p, size_t n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = v << 8 | *p++;
	return v;
}

static void
put_be(unsigned char *p, uint64_t v, size_t n)
{
	while (n-- > 0) {
		p[n] = v & 0xff;
		v >>= 8;
	}
}

/*
 * Check a whole entry: magic, age, this host and port, and where the
 * session lies inside it.  No allocation: *sess points into e.
 */
static bool
cache_parse(const struct conn *c, const unsigned char *e, size_t n,
    const unsigned char **sess, size_t *sesslen)
{
	size_t off = CONN_TLS_MAGIC_LEN, l;
	uint64_t t;
	time_t now = time(NULL);

	if (n < off + 8 + 2 || memcmp(e, CONN_TLS_MAGIC, off) != 0)
		return false;
	t = get_be(e + off, 8);
	off += 8;
	/* A little slack for a clock that was stepped back. */
	if (now == (time_t)-1 || t > (uint64_t)now + 300 ||
	    (uint64_t)now - t > CONN_TLS_CACHE_AGE)
		return false;
	l = get_be(e + off, 2);
	off += 2;
	if (n - off < l + 2 || l != strlen(c->host) ||
	    memcmp(e + off, c->host, l) != 0)
		return false;
	off += l;
	l = get_be(e + off, 2);
	off += 2;
	if (n - off < l + 4 || l != strlen(c->port) ||
	    memcmp(e + off, c->port, l) != 0)
		return false;
	off += l;
	l = get_be(e + off, 4);
	off += 4;
	if (l == 0 || l > TLS_SESSION_MAX || n - off != l)
		return false;
	*sess = e + off;
	*sesslen = l;
	return true;
}

/*
 * Read the entry for c into e (CONN_TLS_ENTRY_MAX bytes); false, with a
 * transcript note under -v, when there is none fit to use.
 */
static bool
cache_load(const struct conn *c, unsigned char *e, size_t *n)
{
	char path[PATH_MAX];
	struct stat sb;
	ssize_t r;
	int fd;

	*n = 0;
	if (!cache_path(c, path, sizeof(path)) || !cache_dir_ok(c, false))
		return false;
	/* O_NOFOLLOW: a planted symlink is never read through. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd == -1) {
		if (errno != ENOENT)
			cache_note("TLS session cache: %s: %s: ignored", path,
			    strerror(errno));
		return false;
	}
	if (fstat(fd, &sb) == -1 || !cache_stat_ok(&sb, path, false) ||
	    sb.st_size > CONN_TLS_ENTRY_MAX)
		goto bad;
	while (*n < CONN_TLS_ENTRY_MAX) {
		r = read(fd, e + *n, CONN_TLS_ENTRY_MAX - *n);
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			goto bad;
		}
		*n += (size_t)r;
	}
	close(fd);
	return true;
 bad:
	close(fd);
	st_wipe(e, *n);
	*n = 0;
	return false;
}

/*
 * Save the session of the handshake just made: temporary file, fsync,
 * rename over the old entry (a symlink there is replaced, not followed),
 * fsync of the directory.  Best effort, silent but for -v notes.
 */
static void
cache_save(struct conn *c)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	unsigned char *e = NULL, *sess = NULL;
	size_t sesslen = 0, n = 0, hl, pl;
	time_t now = time(NULL);
	int fd, w;

	if (now == (time_t)-1 || !cache_path(c, path, sizeof(path)) ||
	    !cache_dir_ok(c, true))
		return;
	w = snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
	if (w < 0 || (size_t)w >= sizeof(tmp))
		return;
	if (tls_session_export(c->tls, &sess, &sesslen, NULL) != ST_OK)
		return;
	hl = strlen(c->host);
	pl = strlen(c->port);
	n = CONN_TLS_MAGIC_LEN + 8 + 2 + hl + 2 + pl + 4 + sesslen;
	if ((e = malloc(n)) == NULL)
		goto done;
	memcpy(e, CONN_TLS_MAGIC, CONN_TLS_MAGIC_LEN);
	put_be(e + CONN_TLS_MAGIC_LEN, (uint64_t)now, 8);
	put_be(e + CONN_TLS_MAGIC_LEN + 8, hl, 2);
	memcpy(e + CONN_TLS_MAGIC_LEN + 10, c->host, hl);
	put_be(e + CONN_TLS_MAGIC_LEN + 10 + hl, pl, 2);
	memcpy(e + CONN_TLS_MAGIC_LEN + 12 + hl, c->port, pl);
	put_be(e + CONN_TLS_MAGIC_LEN + 12 + hl + pl, sesslen, 4);
	memcpy(e + CONN_TLS_MAGIC_LEN + 16 + hl + pl, sess, sesslen);
	/* mkstemp: O_EXCL and mode 0600. */
	if ((fd = mkstemp(tmp)) == -1)
		goto done;
	if (fchmod(fd, 0600) == -1 ||
	    xio_write_all(fd, e, n, ST_CANTCREAT, tmp, NULL) != ST_OK ||
	    fsync(fd) == -1) {
		(void)close(fd);
		(void)unlink(tmp);
		goto done;
	}
	if (close(fd) == -1 || rename(tmp, path) == -1) {
		(void)unlink(tmp);
		goto done;
	}
	(void)xio_fsync_dir(c->cache_dir, NULL);
	cache_note("TLS session saved for resumption");
 done:
	if (e != NULL) {
		st_wipe(e, n);
		free(e);
	}
	if (sess != NULL) {
		st_wipe(sess, sesslen);
		free(sess);
	}
}

/* --- TLS -------------------------------------------------------------- */

enum status
conn_starttls(struct conn *c, struct tls_ctx *ctx, struct errinfo *ei)
{
	enum status st;
	char note[128];

	if (c->tls != NULL)
		return st_error(ei, ST_PROTO, "TLS already active with %s",
		    c->host);
	deadline_start(c);
	if ((st = conn_flush_now(c, ei)) != ST_OK)
		return st;
	if (c->rlen > 0) {
		/*
		 * Whatever came before the handshake is unauthenticated and
		 * must not be read as the server's answer after it (RFC 3207
		 * section 6, CVE-2011-0411).
		 */
		snprintf(note, sizeof(note), "discarding %zu bytes received "
		    "before the TLS handshake", c->rlen);
		log_wire(LOG_NOTE, note, strlen(note), false);
		st_wipe(c->rbuf, c->roff + c->rlen);
		c->roff = c->rlen = 0;
	}
	if (c->cache_dir != NULL) {
		unsigned char *e;
		const unsigned char *sess = NULL;
		size_t n = 0, sesslen = 0;

		if ((e = malloc(CONN_TLS_ENTRY_MAX)) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
		if (cache_load(c, e, &n) && !cache_parse(c, e, n, &sess,
		    &sesslen)) {
			cache_note("TLS session cache entry for %s port %s "
			    "is stale or malformed, or for another host: "
			    "ignored", c->host, c->port);
			sess = NULL;
			sesslen = 0;
		}
		st = tls_start_resume(&c->tls, ctx, &c->io, c->host, sess,
		    sesslen, ei);
		st_wipe(e, n);
		free(e);
		if (st != ST_OK)
			return st;
		if (tls_resumed(c->tls))
			cache_note("TLS session resumed");
		else
			cache_save(c);
	} else if ((st = tls_start(&c->tls, ctx, &c->io, c->host, ei)) !=
	    ST_OK)
		return st;
	if (log_verbose()) {
		struct tls_info info;

		if (tls_get_info(c->tls, &info, NULL) == ST_OK) {
			snprintf(note, sizeof(note), "TLS %s, %s", info.version,
			    info.cipher);
			log_wire(LOG_NOTE, note, strlen(note), false);
		}
	}
	return ST_OK;
}

bool
conn_is_tls(const struct conn *c)
{
	return c->tls != NULL;
}

enum status
conn_secret_ok(const struct conn *c, struct errinfo *ei)
{
	if (c->tls != NULL || conf_is_loopback(c->peer))
		return ST_OK;
	return st_error(ei, ST_TLS, "refusing to send credentials to %s over "
	    "a connection without TLS", c->host);
}

enum status
conn_tls_info(const struct conn *c, struct tls_info *info,
    struct errinfo *ei)
{
	if (c->tls == NULL)
		return st_error(ei, ST_TLS, "connection to %s is not TLS",
		    c->host);
	return tls_get_info(c->tls, info, ei);
}

const char *
conn_peer(const struct conn *c)
{
	return c->peer;
}

void
conn_close(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->tls != NULL) {
		c->io.deadline = xio_deadline_ms(CONN_CLOSE_MS);
		tls_close(c->tls);
	}
	if (c->fd != -1)
		close(c->fd);
	if (c->rbuf != NULL)
		st_wipe(c->rbuf, c->rcap);
	if (c->wbuf != NULL)
		st_wipe(c->wbuf, CONN_WBUF_FLUSH);
	free(c->rbuf);
	free(c->wbuf);
	free(c->host);
	free(c->port);
	free(c->cache_dir);
	free(c);
}
