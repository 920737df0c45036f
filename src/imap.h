/*
 * imap.h: the IMAP4rev1 client of bearmail-fetch.
 *
 * Implements:
 *   RFC 3501  IMAP4rev1 (the parts a mail retriever needs: CAPABILITY,
 *             STARTTLS, AUTHENTICATE, SELECT/EXAMINE, UID SEARCH,
 *             UID FETCH, UID STORE, EXPUNGE, LOGOUT; literals, quoted
 *             strings, untagged EXISTS/EXPUNGE/BYE at any time)
 *   RFC 4959  SASL-IR (the initial response on the AUTHENTICATE line)
 *   RFC 7628  OAUTHBEARER; Google's XOAUTH2 (payloads: src/sasl.c)
 *   RFC 4315  UIDPLUS (UID EXPUNGE)
 *   RFC 2177  IDLE
 *   RFC 7888  non-synchronizing literals ({n+}) are understood when read
 *
 * One struct imap is one session.  Everything the server sends goes
 * through one bounded reader: lines of at most IMAP_LINE_MAX bytes, and
 * literals that are never allocated by their announced size: a message
 * body (BODY[]) is streamed to the caller's callbacks in chunks of
 * IMAP_CHUNK bytes, any other literal up to IMAP_SMALL_LIT bytes is kept
 * for parsing, a larger one is read and thrown away.  So a hostile
 * "{4294967296}" costs no memory, only the time the server spends
 * sending it.
 *
 * Statuses: ST_NET (connection lost, or the server said BYE: reconnect),
 * ST_TIMEOUT, ST_TLS, ST_PROTO (garbage; the session is then unusable),
 * ST_AUTH (AUTHENTICATE refused), ST_CONFIG (mechanism or STARTTLS not
 * offered, a NO to SELECT: the folder does not exist), ST_TEMPFAIL (a
 * BYE greeting, and any other NO: Gmail answers a FETCH of a message
 * deleted meanwhile with NO, and the next run will do).  ei->msg quotes
 * the server's (sanitised) text.
 */
#ifndef BEARMAIL_IMAP_H
#define BEARMAIL_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "status.h"

struct conn;
struct conn_target;
struct imap;

#define IMAP_LINE_MAX	(128 * 1024)	/* longest response line */
#define IMAP_SMALL_LIT	(64 * 1024)	/* non-body literals kept up to this */
#define IMAP_CHUNK	(64 * 1024)	/* body bytes per callback */
#define IMAP_SEARCH_WINDOW 5000		/* messages per UID SEARCH: keeps a
					   SEARCH response under 64 KB */
#define IMAP_FETCH_BATCH 50		/* UIDs per UID FETCH command */

/*
 * Connect to t (conn_open_target()), read the greeting, learn the
 * capabilities, and run STARTTLS (TLSM_STARTTLS: required; capabilities
 * are asked again afterwards) or the implicit handshake (TLSM_TLS).
 * *out is freed with imap_close().
 */
enum status imap_open(struct imap **out, const struct conn_target *t,
    struct errinfo *ei);

/* Whether the server announced capability name ("IDLE", "UIDPLUS"...). */
bool imap_has_cap(const struct imap *im, const char *name);

/* False once the session cannot carry another command. */
bool imap_usable(const struct imap *im);

/* The text of a BYE the server sent, or NULL.  Valid as long as im. */
const char *imap_bye(const struct imap *im);

/*
 * What `bearmail-auth test` reports.  None of them changes the session.
 *
 * imap_conn(): the connection, for conn_tls_info() and conn_peer().
 * Owned by im: valid until imap_close(im); do not close it.
 *
 * imap_greeting(): the text of the server's greeting after its response
 * code ("Dovecot ready."), control characters shown as '?', "" if it
 * had none.  Valid until imap_close(im).
 *
 * imap_caps(): the capabilities the server announced last, as received:
 * its atoms in its order and case ("IMAP4rev1 SASL-IR AUTH=XOAUTH2"),
 * one space apart, control characters shown as '?'; atoms past 4 KB are
 * left out; "" when none are known.  The pointer stays valid until
 * imap_close(im), but the text is replaced whenever the server
 * announces its capabilities again (after STARTTLS, which imap_open()
 * runs, and after a successful imap_auth()): copy it to keep it.
 */
struct conn *imap_conn(const struct imap *im);
const char *imap_greeting(const struct imap *im);
const char *imap_caps(const struct imap *im);

/*
 * AUTHENTICATE with mech as user (secret: the access token or the
 * password).  Refused (ST_TLS) before anything is sent on a connection
 * that is neither TLS nor to a loopback address.  The initial response
 * goes on the command line when SASL-IR is offered, else after the
 * first "+".  An error challenge is answered as the mechanism requires.
 * ST_AUTH when refused, with *token_rejected (may be NULL) set for an
 * OAuth mechanism: the caller should get a fresh token and call again
 * (same session while imap_usable(), else a new one), once.
 */
enum status imap_auth(struct imap *im, enum auth_mech mech, const char *user,
    const char *secret, bool *token_rejected, struct errinfo *ei);

struct imap_mailbox {
	uint32_t exists;
	uint32_t uidvalidity;		/* 0: the server sent none */
	uint32_t uidnext;		/* 0: the server sent none */
	bool readonly;
};

/* SELECT (or EXAMINE when readonly) folder. */
enum status imap_select(struct imap *im, const char *folder, bool readonly,
    struct imap_mailbox *mb, struct errinfo *ei);

/* The current EXISTS count (updated by any untagged EXISTS/EXPUNGE). */
uint32_t imap_exists(const struct imap *im);

/* A growable list of UIDs; zero it to start, free with imap_uids_free(). */
struct imap_uids {
	uint32_t *v;
	size_t n, cap;
};
void imap_uids_free(struct imap_uids *u);

/* Append v to u, which grows as needed.  ST_SYS when out of memory. */
enum status imap_uids_add(struct imap_uids *u, uint32_t v,
    struct errinfo *ei);

/*
 * UID SEARCH among messages lo..hi (sequence numbers) for unseen ones,
 * or all of them; appends the UIDs found to out (in the server's order).
 */
enum status imap_search(struct imap *im, uint32_t lo, uint32_t hi,
    bool unseen, struct imap_uids *out, struct errinfo *ei);

/*
 * What UID FETCH does with each message body.  begin() is called when a
 * body literal starts, write() with each chunk (CRLF line ends, as on
 * the wire), then, once the whole FETCH response is read and its UID
 * known, end() with that UID; or abort() if the response turns out to be
 * broken.  A callback failure makes the session unusable (the rest of
 * the response is not read).
 */
struct imap_fetch_cb {
	enum status (*begin)(void *arg, struct errinfo *ei);
	enum status (*write)(void *arg, const void *p, size_t n,
	    struct errinfo *ei);
	enum status (*end)(void *arg, uint32_t uid, uint64_t size,
	    struct errinfo *ei);
	void (*abort)(void *arg);
};

/* UID FETCH uids (BODY.PEEK[]), one command for all n (n <= 1000). */
enum status imap_fetch(struct imap *im, const uint32_t *uids, size_t n,
    const struct imap_fetch_cb *cb, void *arg, struct errinfo *ei);

/* UID STORE uids +FLAGS.SILENT (flag), flag being "\\Seen" or "\\Deleted". */
enum status imap_store(struct imap *im, const uint32_t *uids, size_t n,
    const char *flag, struct errinfo *ei);

/*
 * Remove the \Deleted messages uids: UID EXPUNGE with UIDPLUS, else
 * EXPUNGE (which also removes any other \Deleted message: the only
 * choice such a server leaves).
 */
enum status imap_expunge(struct imap *im, const uint32_t *uids, size_t n,
    struct errinfo *ei);

/*
 * IDLE for at most secs seconds (the caller keeps it under 29 minutes,
 * RFC 2177) or until the server reports more messages than known
 * (*news set).  ST_NET when the server says BYE or hangs up.
 */
enum status imap_idle(struct imap *im, int secs, bool *news,
    struct errinfo *ei);

/* LOGOUT (best effort, bounded by the timeout). */
enum status imap_logout(struct imap *im, struct errinfo *ei);

/* Close and free.  NULL is a no-op. */
void imap_close(struct imap *im);

/* ------------------------------------------------------------------ */
/* The parser's pieces, public for the unit tests (no I/O)              */

enum imap_tk {
	IMAP_TK_END,		/* end of the line */
	IMAP_TK_ATOM,		/* atom, number, NIL, or "BODY[...]<n>" */
	IMAP_TK_QUOTED,		/* "..."; s/n: the text inside, escapes kept */
	IMAP_TK_LP,		/* ( */
	IMAP_TK_RP,		/* ) */
	IMAP_TK_LIT,		/* {n} or {n+} ending the line; lit: n */
	IMAP_TK_BAD		/* malformed */
};

struct imap_lex {
	const char *p, *e;
};

void imap_lex_init(struct imap_lex *lx, const char *s, size_t n);
enum imap_tk imap_lex_next(struct imap_lex *lx, const char **s, size_t *n,
    uint64_t *lit);

/*
 * Whether line ends with a literal announcement: 1 (n in *lit), 0 (no),
 * -1 (malformed or absurd: more than 19 digits).
 */
int imap_literal(const char *line, size_t len, uint64_t *lit);

/* A number of 1 to 10 digits that fits 32 bits. */
bool imap_u32(const char *s, size_t n, uint32_t *out);

/*
 * The UID set for uids (sorted or not) as "1:3,7,9:10" into out;
 * false if it does not fit outsz.
 */
bool imap_uidset(const uint32_t *uids, size_t n, char *out, size_t outsz);

/* A folder name as an IMAP quoted string; false if it cannot be one. */
bool imap_quote(const char *s, char *out, size_t outsz);

#endif
