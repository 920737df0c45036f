/*
 * conn.h: one connection to a mail server, plain or TLS.
 *
 * The only module that knows whether bytes go through TLS.  Every wait is
 * bounded by poll() against a deadline of `timeout` seconds per operation
 * (connect, handshake, one line read, one flush); nothing blocks forever,
 * no signals are used.
 *
 * Reads are buffered.  conn_readline() returns one line at a time up to a
 * maximum length chosen at open; a longer line, or a line holding a NUL,
 * is a protocol error (ST_PROTO), never silently cut.
 *
 * Writes are coalesced: conn_write()/conn_printf() only append to an
 * output buffer, which goes out in one write when the caller flushes, or
 * before any read, or when it grows past CONN_WBUF_FLUSH.  A command or a
 * pipelined batch therefore costs one segment, and Nagle never stalls us.
 */
#ifndef BEARMAIL_CONN_H
#define BEARMAIL_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "status.h"

struct conn;
struct tls_ctx;
struct tls_info;

#define CONN_LINE_MAX	 4096		/* default longest line accepted */
#define CONN_WBUF_FLUSH	 (64 * 1024)	/* output buffered before a write */

struct conn_opts {
	const char *host;	/* name or address; also the TLS name checked */
	const char *port;	/* service or number */
	int timeout;		/* seconds per operation, > 0 */
	size_t line_max;	/* longest line conn_readline() accepts; 0: CONN_LINE_MAX */
	const char *bind_addr;	/* local source address, or NULL (tests) */
	const char *tls_cache_dir; /* directory of saved TLS sessions
				   (STATE_DIR/tls), or NULL: no resumption;
				   see conn_starttls() */
};

/*
 * Resolve host and connect.  All addresses getaddrinfo() returns are
 * tried in a staggered race (Happy Eyeballs style: the next one starts
 * 250 ms after the previous, the first to connect wins) within one
 * timeout, so a dead address never costs a full timeout per address.
 * On success *out owns the socket; free it with conn_close().
 * Fails with ST_NET (resolution, refused, unreachable) or ST_TIMEOUT.
 * Name resolution is getaddrinfo(), bounded by the resolver's own
 * timeouts only; the deadline starts when the addresses are known.
 * With -v the transcript notes "connected to HOST[ADDR]:PORT".
 */
enum status conn_open(struct conn **out, const struct conn_opts *o,
    struct errinfo *ei);

/*
 * Where a mail client connects and how: what smtp_open(), imap_open()
 * and pop3_open() take.  It need only last for the call: what the
 * session keeps is copied.
 */
struct conn_target {
	const char *host;	/* server name; also the TLS name checked */
	unsigned port;		/* 1 to 65535 */
	enum tls_mode tls;	/* TLSM_STARTTLS, TLSM_TLS or TLSM_NONE */
	int timeout;		/* seconds per network operation, > 0 */
	struct tls_ctx *tls_ctx; /* trust anchors; required unless tls is
				   TLSM_NONE; not owned */
	const char *bind_addr;	/* local source address, or NULL (tests) */
	const char *tls_cache_dir; /* conn_opts.tls_cache_dir, or NULL */
};

/*
 * ST_CONFIG when t lacks a host, port or timeout, or wants TLS without
 * trust anchors; proto ("smtp", "imap", "pop3") begins the text.  The
 * protocols call it before they allocate anything, so that a bad
 * target fails first and bare.
 */
enum status conn_target_check(const struct conn_target *t, const char *proto,
    struct errinfo *ei);

/*
 * The start every protocol client shares: conn_target_check(),
 * conn_open() with lines up to line_max, and with TLSM_TLS the implicit
 * handshake (conn_starttls()) before anything is read.  STARTTLS is left
 * to the protocol, which must ask for it first.  Fails as those do; on
 * failure *out is NULL and nothing was sent (a TLS port gets no goodbye
 * in clear).
 */
enum status conn_open_target(struct conn **out, const struct conn_target *t,
    const char *proto, size_t line_max, struct errinfo *ei);

/*
 * Run a TLS handshake on the connection (implicit TLS right after
 * conn_open(), or STARTTLS after the server said go ahead).  The server
 * certificate is always verified against ctx's trust anchors and the host
 * name given at open.  Anything the server sent before the handshake and
 * that is still buffered is thrown away (RFC 3207 section 6; the
 * CVE-2011-0411 injection class) and noted in the transcript.
 * Fails with ST_TLS (the text says what failed: expired, wrong name,
 * unknown issuer...), ST_NET or ST_TIMEOUT.  ctx must outlive c.
 * After a failure c is still plain; the caller should close it.
 *
 * With tls_cache_dir set at open, the session saved there for exactly
 * this host and port (if fit: ours, mode 0600, less than a day old) is
 * offered for resumption, and the session of a full, verified handshake
 * is saved there (mode 0600, created atomically; the directory is made
 * 0700 if missing).  The entries hold master secrets.  Cache trouble is
 * never an error: it only costs a full handshake.
 */
enum status conn_starttls(struct conn *c, struct tls_ctx *ctx,
    struct errinfo *ei);

/* True once conn_starttls() succeeded. */
bool conn_is_tls(const struct conn *c);

/*
 * Whether credentials may go over c, asked by every AUTH before it sends
 * anything: ST_OK over TLS or to a loopback peer (a local server or a
 * tunnel), else ST_TLS.
 */
enum status conn_secret_ok(const struct conn *c, struct errinfo *ei);

/* TLS details for `bearmail-auth test`; ST_TLS if not a TLS connection. */
enum status conn_tls_info(const struct conn *c, struct tls_info *info,
    struct errinfo *ei);

/*
 * Read one line.  *line points into the connection's buffer, without the
 * line ending (CRLF or a bare LF), NUL-terminated, valid until the next
 * call on c.  The line goes into the -v transcript as received.
 * ST_PROTO: too long or holds a NUL.  ST_NET: EOF or reset.  ST_TIMEOUT.
 */
enum status conn_readline(struct conn *c, char **line, size_t *len,
    struct errinfo *ei);

/*
 * conn_readline() under the deadline of the read before it, not a fresh
 * one: for the later lines of a reply that is one operation (an SMTP
 * multi-line reply), so a peer dripping lines just inside the timeout
 * cannot stretch one reply to many timeouts.
 */
enum status conn_readline_more(struct conn *c, char **line, size_t *len,
    struct errinfo *ei);

/*
 * Read up to n bytes of raw data (for IMAP literals and streaming): at
 * least one byte unless EOF, which is ST_NET.  *got receives the count.
 */
enum status conn_read(struct conn *c, void *p, size_t n, size_t *got,
    struct errinfo *ei);

/*
 * Read exactly n bytes, or fail.  Each underlying read has its own
 * deadline, so a slow peer that keeps sending is not cut off.
 */
enum status conn_read_exact(struct conn *c, void *p, size_t n,
    struct errinfo *ei);

/* Bytes already buffered and readable without waiting. */
size_t conn_pending(const struct conn *c);

/*
 * Queue bytes for sending.  Flushes by itself past CONN_WBUF_FLUSH.
 * Nothing goes to the transcript: use conn_cmd() for protocol lines.
 */
enum status conn_write(struct conn *c, const void *p, size_t n,
    struct errinfo *ei);

/*
 * Queue one protocol line: the text, then CRLF.  It goes into the -v
 * transcript, redacted wholly when secret is set (AUTH payloads, tokens).
 * ST_DATAERR if the text holds CR or LF (it would smuggle in a second
 * command).  A line longer than CONN_WBUF_FLUSH - 2 is ST_AUTH when it is
 * secret (a credential too long to send) and ST_CONFIG otherwise: never
 * ST_LIMIT, which would blame the message.
 */
enum status conn_cmd(struct conn *c, bool secret, struct errinfo *ei,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * Seconds per operation from now on (> 0): for a short final wait, such
 * as QUIT's reply after the message was accepted.
 */
void conn_set_timeout(struct conn *c, int timeout);

/* Send everything queued, in as few writes as the kernel allows. */
enum status conn_flush(struct conn *c, struct errinfo *ei);

/* Peer address as text ("192.0.2.1" or "2001:db8::1"), for log lines. */
const char *conn_peer(const struct conn *c);

/*
 * Close: TLS close_notify when possible, then the socket; frees c and
 * wipes its buffers (they may have held an AUTH line).  NULL is a no-op.
 */
void conn_close(struct conn *c);

#endif
