/*
 * oauth.h: the OAuth 2.0 client of bearmail-auth; the only door to libcurl.
 *
 * Implements: RFC 6749 (authorization code and refresh token grants,
 * error responses), RFC 7636 (PKCE, S256), RFC 8252 (loopback redirect
 * for native apps), RFC 8628 (device authorization grant), RFC 7523 and
 * RFC 7519 (JWT bearer assertion, Google service accounts), RFC 7009
 * (revocation).
 *
 * Everything that builds a request or reads a response is a pure
 * function with no I/O, tested without a network; only oauth_post() and
 * the oauth_do_*() wrappers talk HTTP.  Only bearmail-auth links this
 * module: bearmail and bearmail-fetch never pay libcurl's start-up.
 *
 * Endpoints must be https://, except http:// to a loopback host (tests).
 * HTTP runs with the account's ca_file and timeout; libcurl honours the
 * usual proxy variables (https_proxy, no_proxy...).
 *
 * Failures are classified so that temporary stays temporary: timeouts
 * (ST_TIMEOUT), connection trouble (ST_NET), TLS (ST_TLS), HTTP 5xx and
 * 429 (ST_TEMPFAIL), a broken reply (ST_PROTO) leave every stored token
 * alone; invalid_grant, invalid_client, unauthorized_client and the like
 * are ST_AUTH with a text that says what to do.
 */
#ifndef BEARMAIL_OAUTH_H
#define BEARMAIL_OAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "conf.h"
#include "status.h"
#include "token.h"

#define OAUTH_VERIFIER_LEN	43	/* base64url of 32 random bytes */
#define OAUTH_CHALLENGE_LEN	43	/* base64url of a SHA-256 */
#define OAUTH_STATE_LEN		22	/* base64url of 16 random bytes */
#define OAUTH_REPLY_MAX		(256 * 1024)	/* largest endpoint reply read */
#define OAUTH_ERROR_MAX		64	/* longest OAuth error code kept */

/* Google's device flow does not accept mail scopes. */
#define OAUTH_GOOGLE_DEVICE_REFUSAL \
	"Google does not allow the device flow for mail scopes " \
	"(https://mail.google.com/ gets invalid_scope): use " \
	"`bearmail-auth login` without --device; from a machine without " \
	"a browser, open the printed URL elsewhere and paste the address " \
	"it ends on, or use the ssh -L tunnel it suggests"

/*
 * Make jansson wipe every block it frees (tokens and keys live in its
 * strings).  bearmail-auth calls it first thing; every function here
 * that parses JSON also calls it, so forgetting costs nothing but the
 * blocks a caller's own jansson use freed before.  Idempotent.
 */
void oauth_init(void);

/* "libcurl 7.88.1": the HTTP library this program runs with.  Static. */
const char *oauth_http_version(void);

/* ---- pure functions ---- */

/*
 * ST_OK if url is https://HOST..., or http:// to a loopback host
 * (127.0.0.0/8, [::1], localhost); ST_CONFIG otherwise.  what names the
 * setting in the message ("token_endpoint").
 */
enum status oauth_check_url(const char *url, const char *what,
    struct errinfo *ei);

/* Append key=value to a form body (application/x-www-form-urlencoded). */
enum status oauth_form_add(struct buf *b, const char *key, const char *val,
    struct errinfo *ei);

/*
 * Percent-decode in[0..n) (also '+' as space) into out.  ST_PROTO on a
 * malformed escape or a decoded NUL.
 */
enum status oauth_urldecode(struct buf *out, const char *in, size_t n,
    struct errinfo *ei);

/* The S256 challenge of a PKCE verifier (RFC 7636 section 4.2). */
enum status oauth_pkce_challenge(const char *verifier,
    char challenge[OAUTH_CHALLENGE_LEN + 1], struct errinfo *ei);

/* A new random verifier and its challenge (random bytes from tls.h). */
enum status oauth_pkce_new(char verifier[OAUTH_VERIFIER_LEN + 1],
    char challenge[OAUTH_CHALLENGE_LEN + 1], struct errinfo *ei);

/* A new random state value for the authorization request. */
enum status oauth_state_new(char state[OAUTH_STATE_LEN + 1],
    struct errinfo *ei);

/*
 * The scope to ask for: the account's, plus offline_access for
 * Microsoft (without it no refresh token is returned).
 */
enum status oauth_scope(const struct account *acct, struct buf *out,
    struct errinfo *ei);

/*
 * The authorization URL the user opens: response_type=code, client_id,
 * redirect_uri, scope, state, code_challenge (S256); for Google also
 * access_type=offline, prompt=consent (else no refresh token) and
 * login_hint; for Microsoft login_hint.
 */
enum status oauth_auth_url(const struct account *acct,
    const char *redirect_uri, const char *state, const char *challenge,
    struct buf *out, struct errinfo *ei);

/* Form bodies for the token, device and revocation endpoints. */
enum status oauth_body_code(const struct account *acct, const char *code,
    const char *verifier, const char *redirect_uri, struct buf *out,
    struct errinfo *ei);
enum status oauth_body_refresh(const struct account *acct,
    const char *refresh_token, struct buf *out, struct errinfo *ei);
enum status oauth_body_device(const struct account *acct, struct buf *out,
    struct errinfo *ei);
enum status oauth_body_device_poll(const struct account *acct,
    const char *device_code, struct buf *out, struct errinfo *ei);
enum status oauth_body_jwt(const char *assertion, struct buf *out,
    struct errinfo *ei);
enum status oauth_body_revoke(const struct account *acct, const char *token,
    bool refresh, struct buf *out, struct errinfo *ei);

/* Which grant a reply answers: the advice on a refusal depends on it. */
enum oauth_grant {
	OAUTH_GRANT_REFRESH,	/* refresh_token */
	OAUTH_GRANT_CODE,	/* authorization_code */
	OAUTH_GRANT_DEVICE,	/* device_code polling */
	OAUTH_GRANT_JWT,	/* service-account jwt-bearer */
	OAUTH_GRANT_REVOKE	/* revocation (no token in the reply) */
};

/*
 * Read a token endpoint reply (HTTP status http, body[0..len)), received
 * at local time now.  On success tok (zeroed by the caller) gets the
 * access token, expires = now + expires_in (3600 when absent), obtained
 * = now, the refresh token when one was returned, and the scope.
 * On an OAuth error the code ("invalid_grant"...) goes into errcode
 * (always NUL-terminated; "" for non-OAuth failures) and the status
 * classifies it: ST_AUTH for refusals, with what to do in the text;
 * ST_TEMPFAIL for 5xx, 429 and temporarily_unavailable; ST_PROTO for a
 * reply that is not the JSON it should be.  The device flow's
 * authorization_pending and slow_down are ST_TEMPFAIL with errcode set.
 * The texts name the account, never a token.
 */
enum status oauth_parse_token(const struct account *acct,
    enum oauth_grant grant, const char *body, size_t len, long http,
    time_t now, struct token *tok,
    char errcode[OAUTH_ERROR_MAX], struct errinfo *ei);

/* A device authorization reply (RFC 8628 section 3.2). */
struct oauth_device {
	char *device_code;	/* secret: never printed */
	char *user_code;
	char *verification_uri;	/* Google calls it verification_url */
	char *verification_uri_complete;	/* or NULL */
	int expires_in;		/* seconds */
	int interval;		/* seconds between polls, at least 1 */
};

/* Parse it; on success free with oauth_device_free(). */
enum status oauth_parse_device(const struct account *acct, const char *body,
    size_t len, long http, struct oauth_device *dev, struct errinfo *ei);
void oauth_device_free(struct oauth_device *dev);

/*
 * Find code and state in a redirect: a request target ("/?code=..&
 * state=..") or a whole pasted URL ("http://127.0.0.1:PORT/?code=...").
 * ST_OK with *code (malloc'd, a secret: wipe and free it) when state
 * matches; ST_AUTH when the state is wrong or missing (a redirect that is
 * not from this login) or the provider sent error=...; ST_USAGE when
 * there is neither code nor error (not a redirect at all: a browser's
 * favicon request, a mistyped paste).
 */
enum status oauth_parse_redirect(const char *s, const char *state,
    char **code, struct errinfo *ei);

/*
 * A signed service-account assertion (RFC 7523): header {"alg":"RS256",
 * "typ":"JWT","kid":private_key_id}, claims iss = the key's client_email,
 * scope, aud, iat = now, exp = now + 3600, sub = the mailbox.  key_json
 * is the key file Google hands out (client_email, private_key).  The
 * JWT goes into out (a secret).  ST_CONFIG for a key file that is not
 * such JSON.
 */
enum status oauth_jwt(const char *key_json, size_t key_len,
    const char *scope, const char *aud, const char *sub, time_t now,
    struct buf *out, struct errinfo *ei);

/* ---- network ---- */

/*
 * POST the form body to url (checked by oauth_check_url()) with the
 * account's ca_file and timeout; the reply body goes into resp (at most
 * OAUTH_REPLY_MAX bytes: more is ST_PROTO) and its status into *http.
 * Only transport failures are errors here (ST_NET, ST_TIMEOUT, ST_TLS);
 * any HTTP status is ST_OK.  With -v the transcript shows the URL, the
 * form keys with their values redacted where secret, the status and the
 * reply's length, never a token.
 */
enum status oauth_post(const struct account *acct, const char *url,
    const char *body, long *http, struct buf *resp, struct errinfo *ei);

/*
 * The grants, each one POST and one parse: errcode as for
 * oauth_parse_token() (may be NULL when the caller does not care).
 */
enum status oauth_do_refresh(const struct account *acct,
    const char *refresh_token, struct token *tok, struct errinfo *ei);
enum status oauth_do_code(const struct account *acct, const char *code,
    const char *verifier, const char *redirect_uri, struct token *tok,
    struct errinfo *ei);
enum status oauth_do_service(const struct account *acct, struct token *tok,
    struct errinfo *ei);
enum status oauth_do_device_start(const struct account *acct,
    struct oauth_device *dev, struct errinfo *ei);
enum status oauth_do_device_poll(const struct account *acct,
    const struct oauth_device *dev, struct token *tok,
    char errcode[OAUTH_ERROR_MAX], struct errinfo *ei);
enum status oauth_do_revoke(const struct account *acct, const char *token,
    bool refresh, struct errinfo *ei);

#endif
