/*
 * pop3.h: the POP3 client of bearmail-fetch.
 *
 * Implements:
 *   RFC 1939  POP3 (UIDL, LIST, RETR, DELE, QUIT; multi-line responses
 *             with dot-stuffing)
 *   RFC 2449  CAPA
 *   RFC 2595  STLS
 *   RFC 5034  AUTH (the initial response on the AUTH line only when the
 *             line stays within 255 octets, else after the first "+")
 *   RFC 7628  OAUTHBEARER; Google's XOAUTH2 (payloads: src/sasl.c)
 *
 * A message (RETR) is read as raw bytes, never as lines: it may hold
 * NULs and lines of any length, and it is unstuffed and handed to the
 * caller in chunks as it arrives.  The other multi-line responses (CAPA,
 * UIDL, LIST) are read line by line with a bounded line length.
 * Deletions (DELE) take effect only with QUIT: a session that breaks
 * before QUIT deletes nothing.
 *
 * Statuses as in imap.h; a "-ERR" is ST_PERMFAIL, except to AUTH
 * (ST_AUTH) and when it says [IN-USE] or [SYS/TEMP] (ST_TEMPFAIL,
 * RFC 3206).
 */
#ifndef BEARMAIL_POP3_H
#define BEARMAIL_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "status.h"

struct conn;
struct conn_target;
struct pop3;

#define POP3_LINE_MAX	4096		/* longest response line */
#define POP3_CHUNK	(64 * 1024)	/* message bytes per callback */

/*
 * Connect to t (conn_open_target()), greeting, CAPA, STLS as the mode
 * says.  Free with pop3_close().
 */
enum status pop3_open(struct pop3 **out, const struct conn_target *t,
    struct errinfo *ei);

/* Whether CAPA listed name ("UIDL", "STLS"...); SASL mechanisms: see auth. */
bool pop3_has_cap(const struct pop3 *p, const char *name);

bool pop3_usable(const struct pop3 *p);

/*
 * What `bearmail-auth test` reports.  None of them changes the session.
 *
 * pop3_conn(): the connection, for conn_tls_info() and conn_peer().
 * Owned by p: valid until pop3_close(p); do not close it.
 *
 * pop3_greeting(): the text of the greeting after "+OK", control
 * characters shown as '?', "" if it had none.  Valid until
 * pop3_close(p).
 *
 * pop3_capa_lines(): the lines of the last CAPA response as received
 * (dot-unstuffed, control characters shown as '?'), in the server's
 * order, separated by "\n" with none after the last, for example
 * "USER\nUIDL\nSASL XOAUTH2 OAUTHBEARER".  Lines that do not fit in
 * 2 KB are left out.  "" when the server does not know CAPA.
 *
 * pop3_sasl_mechs(): the mechanisms of CAPA's SASL line as received
 * ("XOAUTH2 OAUTHBEARER"), "" when CAPA listed none.
 *
 * The pointers of both stay valid until pop3_close(p), but the texts
 * are replaced when CAPA is asked again (after STLS, which pop3_open()
 * runs): copy them to keep them.
 */
struct conn *pop3_conn(const struct pop3 *p);
const char *pop3_greeting(const struct pop3 *p);
const char *pop3_capa_lines(const struct pop3 *p);
const char *pop3_sasl_mechs(const struct pop3 *p);

/*
 * AUTH mech (see imap_auth() for the refusal rules and *token_rejected).
 */
enum status pop3_auth(struct pop3 *p, enum auth_mech mech, const char *user,
    const char *secret, bool *token_rejected, struct errinfo *ei);

/* One message of the maildrop. */
struct pop3_msg {
	uint32_t num;			/* message number, 1.. */
	uint64_t size;			/* from LIST */
	char uidl[71];			/* from UIDL, "" without UIDL */
};

/*
 * UIDL (when offered) and LIST: the maildrop's messages, in order, into
 * *msgs (malloc'd, free() it), *n of them.  ST_PROTO for malformed
 * listings (a UIDL that is not 1 to 70 printable characters).
 */
enum status pop3_list(struct pop3 *p, struct pop3_msg **msgs, size_t *n,
    struct errinfo *ei);

/* What RETR does with the message, as imap_fetch_cb without UIDs. */
struct pop3_retr_cb {
	enum status (*begin)(void *arg, struct errinfo *ei);
	enum status (*write)(void *arg, const void *p, size_t n,
	    struct errinfo *ei);
	void (*abort)(void *arg);
};

/*
 * RETR num: begin(), then the unstuffed message in chunks through
 * write().  Returns ST_OK once the terminating dot was read; the caller
 * then commits.  On failure abort() has been called.
 */
enum status pop3_retr(struct pop3 *p, uint32_t num,
    const struct pop3_retr_cb *cb, void *arg, struct errinfo *ei);

/* DELE num (takes effect at QUIT). */
enum status pop3_dele(struct pop3 *p, uint32_t num, struct errinfo *ei);

/* QUIT: commits deletions.  Its failure means they may not have happened. */
enum status pop3_quit(struct pop3 *p, struct errinfo *ei);

void pop3_close(struct pop3 *p);

/* ------------------------------------------------------------------ */
/* Pure pieces, public for the unit tests                               */

/*
 * Streaming un-stuffer of a multi-line response body.  Feed bytes as
 * they come; the body (dots removed) goes to out (n bytes at most);
 * *done is set at the terminating "CRLF.CRLF" and *used tells how many
 * input bytes were consumed (the rest belongs to the next response).
 */
struct pop3_dot {
	int state;
};

void pop3_dot_init(struct pop3_dot *d);
size_t pop3_dot_feed(struct pop3_dot *d, const char *in, size_t n, char *out,
    bool *done, size_t *used);

#endif
