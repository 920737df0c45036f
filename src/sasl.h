/*
 * sasl.h: the client side of four SASL mechanisms, as pure steps.
 *
 *   XOAUTH2      Google's and Microsoft's OAuth 2.0 mechanism
 *   OAUTHBEARER  RFC 7628 (GS2 header of RFC 5801, bearer token RFC 6750)
 *   PLAIN        RFC 4616
 *   LOGIN        draft-murchison-sasl-login
 *
 * No I/O happens here: the protocol clients (smtp, imap, pop3) own the
 * wire, the continuation codes ("334 ", "+ ") and the logging.  Every
 * payload that goes in or out is base64 text, as it appears on the wire.
 *
 * The dialogue, for every protocol:
 *
 *	sasl_init(&s, mech, user, secret, host, port, ei);
 *	sasl_initial(&s, &ir, ei);	   ir: base64, or empty for LOGIN
 *	if (ir.len > 0 && sasl_inline(framing, mech, ir.len))
 *		send "AUTH MECH <ir>"
 *	else {
 *		send "AUTH MECH";
 *		if (ir.len > 0) { wait for a continuation; send <ir>; }
 *	}
 *	while (the server sends a continuation with challenge c) {
 *		sasl_step(&s, c, clen, &resp, ei);   ST_PROTO: cancel ("*")
 *		send <resp> (possibly an empty line)
 *	}
 *	final reply: success, or failure -> see s.fail / s.fail_msg
 *	sasl_free(&s);
 *
 * The initial response is NOT produced again by sasl_step(): a caller
 * that did not send it inline answers the first (empty) continuation with
 * the buffer sasl_initial() gave it.
 *
 * Secrets: the token or password is copied into the session and wiped by
 * sasl_free(); every buffer this module fills with a response holds a
 * secret too, and the caller wipes it with buf_wipe() and sends it to
 * log_wire() with secret = true.  No error text here contains a secret.
 */
#ifndef BEARMAIL_SASL_H
#define BEARMAIL_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "conf.h"		/* enum auth_mech */
#include "status.h"

/* How a server's error challenge (XOAUTH2, OAUTHBEARER) classifies. */
enum sasl_fail {
	SASL_FAIL_NONE = 0,	/* no error challenge seen (yet) */
	SASL_FAIL_TOKEN,	/* "401" / "invalid_token": the token is
				   expired or revoked; refresh it once and
				   authenticate again */
	SASL_FAIL_SCOPE,	/* "400" / "insufficient_scope": the token
				   lacks the mail scope (Google says 400 for
				   a gmail.send token); a refresh and one
				   retry may help, after that re-authorize */
	SASL_FAIL_OTHER		/* anything else, including a challenge that
				   is not base64 or not JSON */
};

/* Who frames the initial response, and how long a command may be. */
enum sasl_framing {
	SASL_FRAME_SMTP,	/* RFC 4954: "AUTH MECH IR" CRLF <= 512 */
	SASL_FRAME_POP3,	/* RFC 5034/2449: the AUTH line <= 255 octets */
	SASL_FRAME_IMAP_IR,	/* RFC 4959 SASL-IR offered: always inline */
	SASL_FRAME_IMAP		/* no SASL-IR: never inline */
};

#define SASL_SMTP_LINE_MAX	512	/* octets, CRLF included */
#define SASL_POP3_LINE_MAX	255	/* octets, CRLF included */

/* What the server's error challenge said; fields are truncated, printable. */
#define SASL_FIELD_MAX	128

struct sasl {
	enum auth_mech mech;
	char *user;		/* copied */
	char *secret;		/* copied; wiped by sasl_free() */
	char *host;		/* copied; OAUTHBEARER only, may be NULL */
	unsigned port;		/* OAUTHBEARER only; 0: left out */
	int step;		/* private: challenges answered so far */

	/* Filled by sasl_step() when the server sent an error challenge. */
	enum sasl_fail fail;
	char fail_status[SASL_FIELD_MAX];	/* "401", "invalid_token"... */
	char fail_scope[SASL_FIELD_MAX];	/* scope the server wants */
	char fail_schemes[SASL_FIELD_MAX];	/* "bearer", or "" */
	char fail_msg[2 * SASL_FIELD_MAX + 96];	/* one line for the user,
						   e.g. "access token
						   rejected (status 401)",
						   or "" */
};

/*
 * Start a session.  user and secret are required (secret is the access
 * token for XOAUTH2/OAUTHBEARER, the password for PLAIN/LOGIN); host and
 * port are sent by OAUTHBEARER only (host NULL and port 0 leave them
 * out).  A credential that cannot be framed: user or secret NULL or
 * empty, or a string holding a byte the mechanism cannot carry (a NUL is
 * impossible; 0x01 in any field of the OAuth mechanisms, CR/LF anywhere)
 * is ST_AUTH for an access token (it came from the provider; a refresh
 * may cure it) and ST_CONFIG for everything else (user, host, password,
 * an unknown mechanism).  ST_SYS on ENOMEM.  On failure s is still safe
 * to sasl_free().
 */
enum status sasl_init(struct sasl *s, enum auth_mech mech, const char *user,
    const char *secret, const char *host, unsigned port, struct errinfo *ei);

/* Wipe and free everything; s may be zeroed or half-initialised. */
void sasl_free(struct sasl *s);

/*
 * Append the base64 initial response to out: XOAUTH2, OAUTHBEARER and
 * PLAIN have one; LOGIN has none (out unchanged, the caller sends plain
 * "AUTH LOGIN" and answers the prompts with sasl_step()).  out holds a
 * secret: it is marked with buf_set_secret(), and the caller wipes it
 * with buf_wipe().  A response longer than out's maximum (or 64 KB) is
 * ST_AUTH for a token and ST_CONFIG for a password, not ST_LIMIT: the
 * message is not at fault.
 */
enum status sasl_initial(struct sasl *s, struct buf *out, struct errinfo *ei);

/*
 * Answer one server challenge, given as the base64 text that followed the
 * continuation code (challenge may be "" with len 0).  Appends the base64
 * response to out; an empty response (len stays 0) means "send an empty
 * line".
 *
 *  LOGIN: "Username:" -> user, "Password:" -> password (other prompts:
 *    the first is taken as the user name, the second as the password).
 *  XOAUTH2: the challenge is the server's error JSON; it is decoded into
 *    s->fail*, and the response is empty, as Google requires.
 *  OAUTHBEARER: same, and the response is a single 0x01 ("AQ==") as RFC
 *    7628 section 3.2.3 requires.
 *  PLAIN: no challenge is expected after the initial response.
 *
 * An undecodable error challenge (bad base64, not JSON) still gets the
 * answer above and s->fail = SASL_FAIL_OTHER, so the dialogue ends with
 * the server's own final reply.  ST_PROTO when the mechanism expects no
 * further challenge (the caller should cancel with "*"); ST_LIMIT past
 * out's maximum.
 */
enum status sasl_step(struct sasl *s, const char *challenge, size_t len,
    struct buf *out, struct errinfo *ei);

/*
 * Whether an initial response of b64len base64 octets may go on the
 * command itself under this framing (true), or must wait for the first
 * continuation (false).  SMTP counts "AUTH " mech " " ir CRLF against
 * 512 octets, POP3 the same line against 255.  False when b64len is 0.
 */
bool sasl_inline(enum sasl_framing f, enum auth_mech mech, size_t b64len);

/* The registered SASL name ("XOAUTH2", "OAUTHBEARER", "PLAIN", "LOGIN"). */
const char *sasl_mech_name(enum auth_mech mech);

/*
 * Whether a server's list of mechanisms offers mech: list is the words
 * after "AUTH" in an EHLO line (SMTP, or POP3's SASL capability), or an
 * IMAP CAPABILITY line whose "AUTH=NAME" words are understood.  Words are
 * separated by spaces; the match ignores case.
 */
bool sasl_mech_offered(const char *list, enum auth_mech mech);

#endif
