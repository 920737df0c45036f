/*
 * login.h: authenticating a mail session, with one forced token refresh.
 *
 * The one rule bearmail (SMTP), bearmail-fetch (IMAP, POP3) and
 * `bearmail-auth test` (all three) follow when they log in:
 *
 *   1. get the secret (an access token that looks valid, or a password);
 *   2. AUTH;
 *   3. when the server refuses the OAuth token itself (the protocol
 *      client says token_rejected), get a fresh token, forced even if
 *      the stored one looks valid, once;
 *   4. AUTH again ON THE SAME SESSION while it is usable (RFC 4954
 *      section 4, RFC 3501 section 6.2.2 and RFC 5034 section 4 let a
 *      client try again after a failure; Gmail does), else on a new
 *      session;
 *   5. when that second AUTH fails because the server hung up (ST_NET
 *      or ST_TEMPFAIL, and the session is no longer usable), once more
 *      on a new session with the same fresh token.
 *
 * Never more than two tokens and three AUTHs per login: a token the
 * server refuses twice is refused, and a refresh per refusal would
 * hammer the token endpoint.
 *
 * The protocol is reached only through the functions in struct login,
 * so this file speaks no protocol, never touches the token store, and
 * sees a secret only on its way from the credential getter to AUTH.
 */
#ifndef BEARMAIL_LOGIN_H
#define BEARMAIL_LOGIN_H

#include <stdbool.h>

#include "conf.h"
#include "status.h"

/*
 * The protocol's AUTH on session sess: smtp_auth(), imap_auth() or
 * pop3_auth(), with the session as a void pointer.  token_rejected may
 * be NULL.
 */
typedef enum status (*login_auth_fn)(void *sess, enum auth_mech mech,
    const char *user, const char *secret, bool *token_rejected,
    struct errinfo *ei);

/* Whether sess can carry another command (smtp_usable()...). */
typedef bool (*login_usable_fn)(void *sess);

/*
 * Close *sess and put a new session, connected and ready for AUTH, in
 * its place.  On failure *sess must be NULL (the old one closed).
 */
typedef enum status (*login_reopen_fn)(void *arg, void **sess,
    struct errinfo *ei);

/*
 * Put the account's secret in *secret: malloc'd, NUL-terminated; login
 * wipes and frees it.  refresh: the server has just refused the last
 * one, get a new one even if the stored one looks valid (cred_get()'s
 * rejected).  Called at most twice per login_run(), the second time
 * with refresh set.
 */
typedef enum status (*login_cred_fn)(void *arg, bool refresh,
    char **secret, struct errinfo *ei);

/* Told that the first token was refused, before the refresh. */
typedef void (*login_refused_fn)(void *arg, const struct errinfo *refusal);

struct login {
	enum auth_mech mech;
	const char *user;		/* login identity (impersonate, or
					   user, with any prefix) */
	login_auth_fn auth;
	login_usable_fn usable;
	login_reopen_fn reopen;
	login_cred_fn cred;
	login_refused_fn refused;	/* may be NULL */
	void *arg;			/* for reopen, cred and refused */
};

/* The step of a login that failed. */
enum login_step {
	LOGIN_CRED,		/* getting the first secret */
	LOGIN_AUTH,		/* the first AUTH (not a refused token) */
	LOGIN_REFRESH,		/* getting a fresh token after a refusal */
	LOGIN_REOPEN,		/* a new session for the second AUTH */
	LOGIN_RETRY		/* the AUTH with the fresh token */
};

struct login_info {
	enum login_step step;		/* where it failed; LOGIN_CRED and
					   meaningless on success */
	bool refreshed;			/* the first token was refused and a
					   fresh one asked for */
	struct errinfo refusal;		/* the server's refusal of the first
					   token, when refreshed */
};

/*
 * Log in on *sess (connected, not authenticated) as the rule at the top
 * says.  *sess may be replaced by a new session (through l->reopen):
 * the caller owns whatever *sess holds on return, NULL included (a
 * reopen that failed).  info (may be NULL) says which step failed and,
 * after a refusal, what the server said to the first token, so callers
 * can word their messages; ei holds the failing step's own error (the
 * credential getter's, the reopen's or AUTH's), with its reply code.
 * Every secret is wiped and freed before this returns.  A -v transcript
 * note marks the refresh.
 */
enum status login_run(const struct login *l, void **sess,
    struct login_info *info, struct errinfo *ei);

#endif
