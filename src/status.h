/*
 * status.h: the one error vocabulary of bearmail.
 *
 * Every fallible function in the core returns an enum status and, on
 * failure, fills the caller's struct errinfo with one line of text.  Only
 * the programs print and exit; st_exitcode() is the single place where a
 * status becomes a sysexits(3) code.
 *
 * The first failure recorded in an errinfo wins: the root cause is what
 * the user needs, not the last layer that noticed.  Callers add context
 * with st_context(), which prefixes the recorded text.
 */
#ifndef BEARMAIL_STATUS_H
#define BEARMAIL_STATUS_H

#include <stdbool.h>
#include <stddef.h>

enum status {
	ST_OK = 0,
	ST_SYS,		/* a local system call failed (errno in the text) */
	ST_NET,		/* DNS, connect, reset, EOF: try later */
	ST_TIMEOUT,	/* a deadline passed: try later */
	ST_TLS,		/* handshake or certificate verification failed */
	ST_PROTO,	/* the peer broke its protocol */
	ST_AUTH,	/* credentials refused or revoked */
	ST_TEMPFAIL,	/* the peer said "later" (SMTP 4xx, HTTP 5xx) */
	ST_PERMFAIL,	/* the peer refused for good (SMTP 5xx to MAIL) */
	ST_NOUSER,	/* a recipient refused or unresolvable */
	ST_DATAERR,	/* the message itself was refused (content, size) */
	ST_CONFIG,	/* configuration is wrong */
	ST_LIMIT,	/* a local bound was exceeded by local input */
	ST_USAGE,	/* bad command line or no recipients */
	ST_CANTCREAT,	/* the queue or a state file cannot be written */
	ST__COUNT
};

#define ERRINFO_MAX 512

struct errinfo {
	enum status st;			/* ST_OK until the first failure */
	int code;			/* protocol reply code (SMTP 550...), or 0 */
	char msg[ERRINFO_MAX];		/* one line, never a secret */
};

/* Reset to "no failure". */
void st_clear(struct errinfo *ei);

/*
 * Record a failure unless one is already recorded; returns st so that
 * callers can write "return st_error(ei, ST_NET, ...)".  ei may be NULL.
 * The text must never contain a secret: pass lengths and names, not data.
 */
enum status st_error(struct errinfo *ei, enum status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Same, with ": strerror(errno)" appended (errno read on entry). */
enum status st_errno(struct errinfo *ei, enum status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Record e, the errinfo of a call that has finished (often a local one,
 * kept apart so that a later step could still succeed), as ei's failure,
 * reply code included, unless ei holds one already.  Returns e->st.
 */
enum status st_pass(struct errinfo *ei, const struct errinfo *e);

/* Prefix the recorded text with "context: ".  No-op when nothing failed. */
void st_context(struct errinfo *ei, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Short stable name ("NET", "TLS"...) for logs and tests. */
const char *st_name(enum status st);

/*
 * True when the failure is not the message's own fault, so the message
 * is worth queueing and trying again: network, TLS, protocol, temporary
 * replies, authentication trouble, local system trouble.
 */
bool st_retryable(enum status st);

/* The sysexits(3) code for a status; the only such mapping. */
int st_exitcode(enum status st);

/* Wipe memory that held a secret; the compiler may not drop it. */
void st_wipe(void *p, size_t n);

#endif
