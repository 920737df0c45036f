/*
 * smtp.h: the SMTP submission client.
 *
 * Implements:
 *   RFC 5321  SMTP (replies, commands, dot-stuffing, limits)
 *   RFC 3207  STARTTLS (capabilities forgotten, EHLO again)
 *   RFC 4954  AUTH (initial response inline only within 512 octets)
 *   RFC 7628  OAUTHBEARER; Google's XOAUTH2 (framing only: src/sasl.c
 *             builds the payloads)
 *   RFC 2920  PIPELINING          RFC 1870  SIZE
 *   RFC 6152  8BITMIME            RFC 6531  SMTPUTF8
 *   RFC 3461  DSN (NOTIFY, RET, ENVID in xtext)
 *   RFC 2034 / RFC 3463  enhanced status codes
 *
 * One struct smtp is one session with one server: smtp_open() connects
 * and says EHLO (with STARTTLS or implicit TLS as the mode says),
 * smtp_auth() authenticates, smtp_send() runs one mail transaction and
 * may be called again for the next message, smtp_quit() says goodbye
 * and smtp_close() frees.
 *
 * Statuses.  A 4xx reply is ST_TEMPFAIL wherever it comes, never
 * permanent.  A 5xx is ST_PERMFAIL to MAIL, ST_NOUSER to RCPT,
 * ST_DATAERR to DATA or after the final dot, ST_AUTH to AUTH.  A reply
 * that does not parse is ST_PROTO.  ei->code holds the reply code and
 * ei->msg the command, the code and the server's (sanitised) text, plus
 * a plain explanation for the replies that need one (Gmail's quota,
 * login throttling, size limit, STARTTLS required).
 *
 * All output is coalesced through conn: one write per command, or per
 * pipelined group; the buffer is flushed only when a reply is needed.
 */
#ifndef BEARMAIL_SMTP_H
#define BEARMAIL_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "status.h"

struct conn;
struct conn_target;

#define SMTP_LINE_MAX		4096	/* longest reply line accepted */
#define SMTP_REPLY_LINES_MAX	128	/* lines in one multi-line reply */
#define SMTP_TEXT_MAX		512	/* reply text kept (truncated) */
#define SMTP_ENH_MAX		16	/* "5.7.8" and its NUL, with room */
#define SMTP_CMD_MAX		512	/* RFC 4954: longest inline AUTH line */

/* ------------------------------------------------------------------ */
/* Session                                                              */

struct smtp;

/*
 * Connect to t->host:t->port (conn_open_target()), read the greeting and
 * say EHLO ehlo_name (the `domain` key; NULL: "localhost").  With
 * TLSM_TLS the handshake comes first (port 465).  With TLSM_STARTTLS the
 * server must offer STARTTLS and accept it, or this fails (ST_TLS) and
 * nothing else is sent in clear; after the handshake the capabilities
 * are forgotten and EHLO is sent again.  TLSM_NONE is plain text
 * (configuration allows it only for loopback hosts).
 *
 * On success *out is the session; free it with smtp_close().  On failure
 * *out is NULL and ei says why: ST_NET, ST_TIMEOUT, ST_TLS, ST_PROTO,
 * ST_TEMPFAIL (4xx greeting, 421) or ST_PERMFAIL (5xx greeting or EHLO).
 * The strings are copied; t and ehlo_name may go away after the call.
 */
enum status smtp_open(struct smtp **out, const struct conn_target *t,
    const char *ehlo_name, struct errinfo *ei);

/* Capability flags (struct smtp_caps.flags). */
#define SMTP_CAP_STARTTLS	0x0001u
#define SMTP_CAP_PIPELINING	0x0002u
#define SMTP_CAP_8BITMIME	0x0004u
#define SMTP_CAP_SMTPUTF8	0x0008u
#define SMTP_CAP_DSN		0x0010u
#define SMTP_CAP_ENHANCED	0x0020u	/* ENHANCEDSTATUSCODES */
#define SMTP_CAP_CHUNKING	0x0040u
#define SMTP_CAP_SIZE		0x0080u
#define SMTP_CAP_AUTH		0x0100u	/* AUTH offered (any mechanism) */

struct smtp_caps {
	unsigned flags;			/* SMTP_CAP_* */
	uint64_t size_max;		/* SIZE argument; 0: none or no limit */
	unsigned auth;			/* bit (1u << enum auth_mech) per
					   mechanism we know and the server
					   offers */
	char auth_names[256];		/* mechanisms as offered, upper
					   case, space separated (for
					   messages and `bearmail-auth test`) */
	char domain[256];		/* the server's name from the first
					   EHLO line (sanitised) */
};

/*
 * The capabilities of the last EHLO (after STARTTLS, the second one).
 * Valid as long as s.
 */
const struct smtp_caps *smtp_caps(const struct smtp *s);

/* The greeting's text (sanitised), for `bearmail-auth test`.  Valid as long as s. */
const char *smtp_greeting(const struct smtp *s);

/* The connection, for conn_tls_info() and conn_peer().  Owned by s. */
struct conn *smtp_conn(const struct smtp *s);

/*
 * False once the session cannot carry another command: the connection
 * failed or timed out, the server sent 421 or broke the protocol, or a
 * transaction had to be abandoned in the middle of DATA.  After a
 * refused transaction (a RCPT refused, say) the session stays usable: it
 * was reset with RSET.
 */
bool smtp_usable(const struct smtp *s);

/*
 * Authenticate with mech as user.  secret is the OAuth access token for
 * XOAUTH2 and OAUTHBEARER (OAUTHBEARER's host and port are the session's)
 * or the password for PLAIN and LOGIN.  Every line carrying credentials
 * goes out with the secret flag (the -v transcript shows only its
 * length), and every copy we make is wiped.
 *
 * Refused with ST_TLS, before anything is sent, on a connection that is
 * not TLS unless the peer's address is loopback.  ST_CONFIG when the
 * server does not offer mech (the text lists what it offers) or answers
 * 530 (STARTTLS or another setting needed).
 *
 * XOAUTH2/OAUTHBEARER: the initial response goes inline when the whole
 * command line fits in 512 octets, else after "334".  A 334 error
 * challenge is decoded and answered as the mechanism requires (an empty
 * line for XOAUTH2, "AQ==" for OAUTHBEARER); ei->msg then says
 * "token rejected (status 401)" or "token lacks scope ... (status 400)".
 *
 * Returns ST_AUTH for refused credentials (535, 534, 5.7.8), with
 * *token_rejected (may be NULL) set to true when the server refused an
 * OAuth token, which means the caller should refresh the token once and
 * call smtp_auth() again ON THE SAME SESSION: RFC 4954 lets a client try
 * AUTH again after a failure, and Gmail does.  Only when that second
 * call fails with ST_NET or ST_TEMPFAIL (the server hung up, or
 * smtp_usable() is false) should the caller reconnect.
 * 454 (Gmail: "4.7.0 Too many login attempts") and other 4xx are
 * ST_TEMPFAIL, explained.  ST_NET, ST_TIMEOUT, ST_PROTO as elsewhere.
 */
enum status smtp_auth(struct smtp *s, enum auth_mech mech, const char *user,
    const char *secret, bool *token_rejected, struct errinfo *ei);

/* ------------------------------------------------------------------ */
/* Transactions                                                         */

enum smtp_body {
	SMTP_BODY_NONE,		/* no BODY parameter */
	SMTP_BODY_7BIT,		/* BODY=7BIT when 8BITMIME is offered */
	SMTP_BODY_8BITMIME	/* BODY=8BITMIME when offered; when it is
				   not, the message goes without the
				   parameter (as Postfix and sendmail do)
				   and the transcript says so */
};

/* DSN NOTIFY (RFC 3461): 0 means "no NOTIFY parameter". */
#define SMTP_NOTIFY_NEVER	0x1u	/* alone, never with the others */
#define SMTP_NOTIFY_SUCCESS	0x2u
#define SMTP_NOTIFY_FAILURE	0x4u
#define SMTP_NOTIFY_DELAY	0x8u

enum smtp_ret { SMTP_RET_NONE, SMTP_RET_HDRS, SMTP_RET_FULL };

struct smtp_envelope {
	const char *sender;		/* MAIL FROM address without <>;
					   "" for the null sender <> */
	const char *const *rcpts;	/* RCPT TO addresses, without <> */
	size_t nrcpts;			/* >= 1 */
	uint64_t size;			/* octets of the message; 0: unknown
					   (no SIZE parameter) */
	enum smtp_body body;
	bool smtputf8;			/* ask for SMTPUTF8 (also implied by
					   any non-ASCII address) */
	/* DSN, sent only when the server offers DSN: */
	unsigned notify;		/* SMTP_NOTIFY_* for every recipient */
	enum smtp_ret ret;
	const char *envid;		/* NULL: none; xtext-encoded here */
};

struct smtp_rcpt_result {
	enum status st;			/* ST_OK: accepted; ST_NOUSER (5xx),
					   ST_TEMPFAIL (4xx, or 552 "too
					   many recipients", RFC 5321
					   4.5.3.1.10), ST_PROTO; ST_OK with
					   code 0 when never asked */
	int code;			/* reply code to its RCPT, or 0 */
	char text[SMTP_TEXT_MAX];	/* "550 5.1.1 no such user" */
};

struct smtp_result {
	struct smtp_rcpt_result *rcpt;	/* one per env->rcpts entry, same
					   order; malloc'd; NULL if the
					   transaction failed before RCPT */
	size_t nrcpts;			/* entries in rcpt */
	size_t naccepted;		/* recipients the server accepted */
	bool delivered;			/* the server accepted the message
					   (250 after the final dot) */
	int code;			/* final reply code, or 0 */
	char text[SMTP_TEXT_MAX];	/* final reply ("250 2.0.0 OK id"),
					   for the log line */
	uint64_t octets;		/* octets sent in DATA (stuffed) */
	bool dot_sent;			/* the final dot went out: if the
					   reply then never came (ST_NET,
					   ST_TIMEOUT), the server may have
					   taken the message, and sending it
					   again may deliver it twice */
};

/*
 * Run one mail transaction: MAIL FROM, RCPT TO for each recipient, then
 * DATA with the message read from msg_fd (from its current offset to
 * EOF, with read(2); never held in memory as a whole).  The message must
 * be canonical (CRLF line ends, lines of at most 998 octets) and NOT
 * dot-stuffed: this function stuffs it.  A bare CR or LF is sent as CRLF
 * so no line can end or smuggle an end of data.
 *
 * MAIL carries SIZE=, BODY=, SMTPUTF8, RET= and ENVID= only when the
 * server offers the extension; RCPT carries NOTIFY= with DSN.  When the
 * declared size exceeds the server's SIZE limit, nothing is sent and the
 * result is ST_DATAERR.  A message needing SMTPUTF8 that the server does
 * not offer is ST_PERMFAIL.
 *
 * All or nothing: DATA is sent only when every recipient was accepted.
 * Otherwise the transaction is reset (RSET) and the status is ST_NOUSER
 * if any recipient was refused for good, else ST_TEMPFAIL; the
 * per-recipient replies are in res->rcpt.  With PIPELINING, MAIL and all
 * RCPTs go in one write but DATA is NOT pipelined with them: a server
 * answers DATA with 354 as soon as one recipient is accepted, and the
 * only way to abandon a transaction after 354 is to drop the connection
 * (sending the final dot would deliver to the accepted half).  Waiting
 * for the RCPT replies costs one round trip and keeps the session
 * usable.
 *
 * A server that refuses the message in mid-stream (552, 554) and hangs
 * up gets its reply reported when it can still be read; otherwise a
 * broken connection during DATA is ST_NET, and the session unusable.
 *
 * res is always initialised here (also on failure before any command);
 * the caller frees it with smtp_result_free().  On ST_OK,
 * res->delivered is true.  Another smtp_send() may follow on the same
 * session when smtp_usable(s).
 */
enum status smtp_send(struct smtp *s, const struct smtp_envelope *env,
    int msg_fd, struct smtp_result *res, struct errinfo *ei);

/* Free res->rcpt and zero res.  Safe on a zeroed or freed result. */
void smtp_result_free(struct smtp_result *res);

/* RSET: abandon a transaction.  ST_OK on 250. */
enum status smtp_rset(struct smtp *s, struct errinfo *ei);

/*
 * QUIT and wait at most one second for 221 (the session's timeout is
 * cut to that first): after a delivery the message is the server's, and
 * a server that never answers QUIT must not hold the caller.  Failures
 * here are not worth reporting after a delivery, but are returned.
 */
enum status smtp_quit(struct smtp *s, struct errinfo *ei);

/* Close the connection and free s.  NULL is a no-op. */
void smtp_close(struct smtp *s);

/* ------------------------------------------------------------------ */
/* Pure helpers, public for the unit tests (no I/O)                     */

/* One reply, assembled from its lines. */
struct smtp_reply {
	int code;			/* 200..599, 0 until the first line */
	char enh[SMTP_ENH_MAX];		/* "5.1.1", or "" without one */
	char text[SMTP_TEXT_MAX];	/* lines' texts joined with " ",
					   enhanced codes dropped, control
					   characters replaced, truncated */
	size_t nlines;
	bool done;			/* the last line was seen */
};

void smtp_reply_init(struct smtp_reply *r);

/*
 * Feed one reply line (without CRLF).  Sets r->done at the last line
 * ("250 x" or a bare "250").  ST_PROTO (with a description in ei) for a
 * line that is not "DDD", "DDD text" or "DDD-text" with a valid code, a
 * code that differs from the first line's, more than
 * SMTP_REPLY_LINES_MAX lines, or a line after the last.  *text_out, if
 * not NULL, gets a pointer into line where the line's text starts (after
 * the separator; for EHLO capability parsing).
 */
enum status smtp_reply_feed(struct smtp_reply *r, const char *line,
    size_t len, const char **text_out, struct errinfo *ei);

/*
 * An enhanced status code "C.SSS.DDD" at the start of text whose class C
 * matches the reply code's first digit (2, 4 or 5), followed by a space
 * or the end.  Copies it to enh (SMTP_ENH_MAX bytes) and returns the
 * number of bytes to skip (code and spaces), or 0 with enh "" when text
 * does not start with one.
 */
size_t smtp_enhanced_parse(const char *text, int code, char *enh);

/* Forget all capabilities. */
void smtp_caps_reset(struct smtp_caps *c);

/*
 * Learn from one EHLO reply line's text (not the first line, which is
 * the server's name): "PIPELINING", "SIZE 35882577", "SIZE", "AUTH LOGIN
 * PLAIN XOAUTH2", the old "AUTH=LOGIN PLAIN", in any case.  Unknown
 * keywords are ignored.
 */
void smtp_caps_line(struct smtp_caps *c, const char *text);

/*
 * xtext (RFC 3461 section 4): copy s into out, with '+', '=' and bytes
 * outside 33..126 as "+HH".  Fails (false) if out (outsz bytes) is too
 * small.
 */
bool smtp_xtext(const char *s, char *out, size_t outsz);

/*
 * Streaming dot-stuffer.  Feed the message in chunks of any size; the
 * state carries "at the start of a line" and a pending CR across chunk
 * boundaries, so a '.' that starts a chunk in the middle of a line is
 * left alone and one that starts a line is doubled.  Bare CR and bare LF
 * become CRLF.
 */
struct smtp_dot {
	bool bol;			/* next byte starts a line */
	bool cr;			/* a CR is pending */
};

void smtp_dot_init(struct smtp_dot *d);

/*
 * Stuff n bytes of in into out, which must hold 2 * n + 2 bytes.
 * Returns the bytes written.
 */
size_t smtp_dot_stuff(struct smtp_dot *d, const char *in, size_t n,
    char *out);

/*
 * The end of the data: CRLF if the last line was not ended, then
 * ".\r\n".  out must hold 8 bytes.  Returns the bytes written.
 */
size_t smtp_dot_end(struct smtp_dot *d, char *out);

/* Which command a reply answers, for smtp_status(). */
enum smtp_phase {
	SMTP_PH_GREETING,
	SMTP_PH_EHLO,
	SMTP_PH_STARTTLS,
	SMTP_PH_AUTH,
	SMTP_PH_MAIL,
	SMTP_PH_RCPT,
	SMTP_PH_DATA,			/* the DATA command (354 expected) */
	SMTP_PH_DOT,			/* after the final dot */
	SMTP_PH_RSET,
	SMTP_PH_QUIT,
	SMTP_PH__COUNT
};

/* "MAIL", "RCPT"... for messages and "*** state: MAIL" in -v. */
const char *smtp_phase_name(enum smtp_phase ph);

/*
 * The status a failed reply means in phase ph (the table in the comment
 * at the top, with its exceptions): 4xx and enhanced X.4.5 (Gmail's
 * daily quota) are ST_TEMPFAIL; 421 is ST_TEMPFAIL; 552 to RCPT is
 * ST_TEMPFAIL; 530 is ST_CONFIG when it asks for STARTTLS, else
 * ST_AUTH; any other 5xx by phase.  A success code gives ST_OK.
 */
enum status smtp_status(enum smtp_phase ph, const struct smtp_reply *r);

#endif
