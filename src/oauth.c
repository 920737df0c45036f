/*
 * oauth.c: OAuth 2.0 requests and replies; the only file that includes
 * libcurl.
 *
 * RFC 6749 (OAuth 2.0: sections 4.1 code grant, 5.1/5.2 token replies and
 * errors, 6 refresh), RFC 7636 (PKCE), RFC 8252 (native apps: loopback
 * redirect), RFC 8628 (device authorization grant), RFC 7519 / RFC 7523
 * (JWT bearer assertions), RFC 7009 (token revocation).  JSON via
 * jansson.
 */
#include "config.h"

#include <ctype.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "base64.h"
#include "log.h"
#include "oauth.h"
#include "tls.h"

#define OAUTH_BODY_MAX	(64 * 1024)
#define OAUTH_URL_MAX	(16 * 1024)
#define OAUTH_DESC_MAX	120	/* peer's error_description, shortened:
				   the advice after it must fit in errinfo */

/* ---- memory ---- */

/*
 * jansson keeps every string of a reply (access and refresh tokens,
 * client secrets, a service account's private key) in blocks of its own
 * and frees them with plain free(): give it a free() that wipes the
 * whole block first.  jansson never reallocs, so malloc + this free
 * covers all it holds.
 */
static void
oauth_json_free(void *p)
{
	if (p == NULL)
		return;
	st_wipe(p, malloc_usable_size(p));
	free(p);
}

const char *
oauth_http_version(void)
{
	static char v[64];

	snprintf(v, sizeof(v), "libcurl %s",
	    curl_version_info(CURLVERSION_NOW)->version);
	return v;
}

void
oauth_init(void)
{
	static bool done;

	if (done)
		return;
	/* Safe at any time: blocks already out were malloc'd too. */
	json_set_alloc_funcs(malloc, oauth_json_free);
	done = true;
}

/* ---- URLs and forms ---- */

/* Is the authority of url ("host", "host:port", "[v6]:port") loopback? */
static bool
oauth_loopback(const char *hostport, size_t n)
{
	char host[256];
	size_t i;

	if (n > 0 && hostport[0] == '[') {
		/* conf_is_loopback() takes "[::1]" with its brackets. */
		for (i = 1; i < n && hostport[i] != ']'; i++)
			;
		if (i >= n)
			return false;
		i++;
	} else
		for (i = 0; i < n && hostport[i] != ':'; i++)
			;
	if (i == 0 || i >= sizeof(host))
		return false;
	memcpy(host, hostport, i);
	host[i] = '\0';
	return conf_is_loopback(host);
}

/* The authority part of an http(s) URL: start and length. */
static void
oauth_authority(const char *rest, const char **start, size_t *n)
{
	const char *at, *end;

	end = rest + strcspn(rest, "/?#");
	/* userinfo@ is not something an endpoint should carry; skip it. */
	at = memchr(rest, '@', (size_t)(end - rest));
	*start = at != NULL ? at + 1 : rest;
	*n = (size_t)(end - *start);
}

enum status
oauth_check_url(const char *url, const char *what, struct errinfo *ei)
{
	const char *host;
	size_t n;

	if (url == NULL || *url == '\0')
		return st_error(ei, ST_CONFIG, "%s is not set", what);
	/* A URL we print must not carry terminal escapes or line breaks. */
	for (const unsigned char *p = (const unsigned char *)url; *p != '\0';
	    p++)
		if (*p < 0x21 || *p == 0x7f)
			return st_error(ei, ST_PROTO, "%s holds a control "
			    "character or a space", what);
	if (strncasecmp(url, "https://", 8) == 0) {
		oauth_authority(url + 8, &host, &n);
		if (n == 0)
			return st_error(ei, ST_CONFIG, "%s has no host", what);
		return ST_OK;
	}
	if (strncasecmp(url, "http://", 7) == 0) {
		oauth_authority(url + 7, &host, &n);
		if (oauth_loopback(host, n))
			return ST_OK;
		return st_error(ei, ST_CONFIG,
		    "%s must use https:// (http:// is allowed only for "
		    "loopback hosts): %.200s", what, url);
	}
	return st_error(ei, ST_CONFIG, "%s is not an https:// URL: %.200s",
	    what, url);
}

static bool
oauth_unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static enum status
oauth_urlencode(struct buf *b, const char *s, struct errinfo *ei)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	char esc[3];
	enum status st;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (oauth_unreserved(*p)) {
			st = buf_add(b, p, 1, ei);
		} else {
			esc[0] = '%';
			esc[1] = hex[*p >> 4];
			esc[2] = hex[*p & 15];
			st = buf_add(b, esc, 3, ei);
		}
		if (st != ST_OK)
			return st;
	}
	return ST_OK;
}

enum status
oauth_form_add(struct buf *b, const char *key, const char *val,
    struct errinfo *ei)
{
	enum status st;

	/* Forms carry codes, verifiers, refresh tokens, client secrets. */
	buf_set_secret(b);
	if (b->len > 0 && (st = buf_add(b, "&", 1, ei)) != ST_OK)
		return st;
	if ((st = oauth_urlencode(b, key, ei)) != ST_OK ||
	    (st = buf_add(b, "=", 1, ei)) != ST_OK ||
	    (st = oauth_urlencode(b, val, ei)) != ST_OK)
		return st;
	return ST_OK;
}

static int
oauth_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

enum status
oauth_urldecode(struct buf *out, const char *in, size_t n,
    struct errinfo *ei)
{
	enum status st;
	size_t i;
	char c;
	int hi, lo;

	for (i = 0; i < n; i++) {
		c = in[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			if (n - i < 3)
				return st_error(ei, ST_PROTO,
				    "truncated %%-escape in URL");
			if ((hi = oauth_hexval((unsigned char)in[i + 1])) < 0 ||
			    (lo = oauth_hexval((unsigned char)in[i + 2])) < 0)
				return st_error(ei, ST_PROTO,
				    "bad %%-escape in URL");
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		if (c == '\0')
			return st_error(ei, ST_PROTO, "NUL in URL");
		if ((st = buf_add(out, &c, 1, ei)) != ST_OK)
			return st;
	}
	return ST_OK;
}

/* ---- PKCE and state ---- */

static enum status
oauth_b64url_fixed(const void *p, size_t n, char *out, size_t outlen,
    struct errinfo *ei)
{
	struct buf b;
	enum status st;

	/* The encoder may reserve room for padding it does not write. */
	buf_init_secret(&b, outlen + 4);
	if ((st = b64url_encode(&b, p, n, ei)) == ST_OK) {
		if (b.len != outlen)
			st = st_error(ei, ST_SYS, "base64url length %zu", b.len);
		else
			memcpy(out, b.data, outlen + 1);
	}
	buf_wipe(&b);
	return st;
}

enum status
oauth_pkce_challenge(const char *verifier,
    char challenge[OAUTH_CHALLENGE_LEN + 1], struct errinfo *ei)
{
	uint8_t md[32];
	size_t n = strlen(verifier);

	if (n < 43 || n > 128)
		return st_error(ei, ST_USAGE, "PKCE verifier of %zu characters",
		    n);
	tls_sha256(verifier, n, md);
	return oauth_b64url_fixed(md, sizeof(md), challenge,
	    OAUTH_CHALLENGE_LEN, ei);
}

enum status
oauth_pkce_new(char verifier[OAUTH_VERIFIER_LEN + 1],
    char challenge[OAUTH_CHALLENGE_LEN + 1], struct errinfo *ei)
{
	uint8_t rnd[32];
	enum status st;

	if ((st = tls_random(rnd, sizeof(rnd), ei)) == ST_OK &&
	    (st = oauth_b64url_fixed(rnd, sizeof(rnd), verifier,
	    OAUTH_VERIFIER_LEN, ei)) == ST_OK)
		st = oauth_pkce_challenge(verifier, challenge, ei);
	st_wipe(rnd, sizeof(rnd));
	return st;
}

enum status
oauth_state_new(char state[OAUTH_STATE_LEN + 1], struct errinfo *ei)
{
	uint8_t rnd[16];
	enum status st;

	if ((st = tls_random(rnd, sizeof(rnd), ei)) == ST_OK)
		st = oauth_b64url_fixed(rnd, sizeof(rnd), state,
		    OAUTH_STATE_LEN, ei);
	return st;
}

/* ---- requests ---- */

static bool
oauth_has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	const char *p;

	for (p = list; (p = strstr(p, word)) != NULL; p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return true;
	return false;
}

enum status
oauth_scope(const struct account *acct, struct buf *out, struct errinfo *ei)
{
	enum status st;
	const char *scope = acct->scope != NULL ? acct->scope : "";

	if ((st = buf_adds(out, scope, ei)) != ST_OK)
		return st;
	if (acct->provider == PROV_MICROSOFT &&
	    !oauth_has_word(scope, "offline_access"))
		return buf_printf(out, ei, "%soffline_access",
		    out->len > 0 ? " " : "");
	return ST_OK;
}

enum status
oauth_auth_url(const struct account *acct, const char *redirect_uri,
    const char *state, const char *challenge, struct buf *out,
    struct errinfo *ei)
{
	struct buf q, scope;
	enum status st;

	buf_init(&q, OAUTH_URL_MAX);
	buf_init(&scope, OAUTH_URL_MAX);
	if ((st = oauth_check_url(acct->auth_endpoint, "auth_endpoint", ei)) !=
	    ST_OK)
		goto done;
	if ((st = oauth_scope(acct, &scope, ei)) != ST_OK ||
	    (st = oauth_form_add(&q, "response_type", "code", ei)) != ST_OK ||
	    (st = oauth_form_add(&q, "client_id", acct->client_id != NULL ?
	    acct->client_id : "", ei)) != ST_OK ||
	    (st = oauth_form_add(&q, "redirect_uri", redirect_uri, ei)) !=
	    ST_OK ||
	    (st = oauth_form_add(&q, "scope", scope.data != NULL ?
	    scope.data : "", ei)) != ST_OK ||
	    (st = oauth_form_add(&q, "state", state, ei)) != ST_OK ||
	    (st = oauth_form_add(&q, "code_challenge", challenge, ei)) !=
	    ST_OK ||
	    (st = oauth_form_add(&q, "code_challenge_method", "S256", ei)) !=
	    ST_OK)
		goto done;
	if (acct->provider == PROV_GOOGLE &&
	    ((st = oauth_form_add(&q, "access_type", "offline", ei)) != ST_OK ||
	    (st = oauth_form_add(&q, "prompt", "consent", ei)) != ST_OK))
		goto done;
	if (acct->user != NULL &&
	    (st = oauth_form_add(&q, "login_hint", acct->user, ei)) != ST_OK)
		goto done;
	st = buf_printf(out, ei, "%s%c%s", acct->auth_endpoint,
	    strchr(acct->auth_endpoint, '?') != NULL ? '&' : '?', q.data);
done:
	buf_free(&q);
	buf_free(&scope);
	return st;
}

/* client_id always; client_secret when there is one (not public clients). */
static enum status
oauth_form_client(const struct account *acct, struct buf *out,
    struct errinfo *ei)
{
	enum status st;

	if (acct->client_id == NULL || *acct->client_id == '\0')
		return st_error(ei, ST_CONFIG,
		    "account %s: client_id is not set", acct->name);
	if (acct->client_secret_denied != NULL)
		return st_error(ei, ST_CONFIG, "account %s: client_secret_file "
		    "%s: permission denied (run this as the user that may "
		    "read it)", acct->name, acct->client_secret_denied);
	if ((st = oauth_form_add(out, "client_id", acct->client_id, ei)) !=
	    ST_OK)
		return st;
	if (acct->client_secret != NULL && *acct->client_secret != '\0')
		return oauth_form_add(out, "client_secret",
		    acct->client_secret, ei);
	return ST_OK;
}

enum status
oauth_body_code(const struct account *acct, const char *code,
    const char *verifier, const char *redirect_uri, struct buf *out,
    struct errinfo *ei)
{
	enum status st;

	if ((st = oauth_form_add(out, "grant_type", "authorization_code",
	    ei)) != ST_OK ||
	    (st = oauth_form_add(out, "code", code, ei)) != ST_OK ||
	    (st = oauth_form_add(out, "redirect_uri", redirect_uri, ei)) !=
	    ST_OK ||
	    (st = oauth_form_add(out, "code_verifier", verifier, ei)) !=
	    ST_OK)
		return st;
	return oauth_form_client(acct, out, ei);
}

enum status
oauth_body_refresh(const struct account *acct, const char *refresh_token,
    struct buf *out, struct errinfo *ei)
{
	enum status st;

	if ((st = oauth_form_add(out, "grant_type", "refresh_token", ei)) !=
	    ST_OK ||
	    (st = oauth_form_add(out, "refresh_token", refresh_token, ei)) !=
	    ST_OK ||
	    (st = oauth_form_client(acct, out, ei)) != ST_OK)
		return st;
	/* Microsoft wants the scope again; asking for the same is harmless. */
	if (acct->provider == PROV_MICROSOFT) {
		struct buf scope;

		buf_init(&scope, OAUTH_URL_MAX);
		if ((st = oauth_scope(acct, &scope, ei)) == ST_OK)
			st = oauth_form_add(out, "scope", scope.data, ei);
		buf_free(&scope);
	}
	return st;
}

enum status
oauth_body_device(const struct account *acct, struct buf *out,
    struct errinfo *ei)
{
	struct buf scope;
	enum status st;

	buf_init(&scope, OAUTH_URL_MAX);
	if ((st = oauth_form_client(acct, out, ei)) == ST_OK &&
	    (st = oauth_scope(acct, &scope, ei)) == ST_OK)
		st = oauth_form_add(out, "scope", scope.data != NULL ?
		    scope.data : "", ei);
	buf_free(&scope);
	return st;
}

enum status
oauth_body_device_poll(const struct account *acct, const char *device_code,
    struct buf *out, struct errinfo *ei)
{
	enum status st;

	if ((st = oauth_form_add(out, "grant_type",
	    "urn:ietf:params:oauth:grant-type:device_code", ei)) != ST_OK ||
	    (st = oauth_form_add(out, "device_code", device_code, ei)) !=
	    ST_OK)
		return st;
	return oauth_form_client(acct, out, ei);
}

enum status
oauth_body_jwt(const char *assertion, struct buf *out, struct errinfo *ei)
{
	enum status st;

	if ((st = oauth_form_add(out, "grant_type",
	    "urn:ietf:params:oauth:grant-type:jwt-bearer", ei)) != ST_OK)
		return st;
	return oauth_form_add(out, "assertion", assertion, ei);
}

enum status
oauth_body_revoke(const struct account *acct, const char *token,
    bool refresh, struct buf *out, struct errinfo *ei)
{
	enum status st;

	if ((st = oauth_form_add(out, "token", token, ei)) != ST_OK ||
	    (st = oauth_form_add(out, "token_type_hint", refresh ?
	    "refresh_token" : "access_token", ei)) != ST_OK)
		return st;
	if (acct->client_id != NULL && *acct->client_id != '\0')
		return oauth_form_client(acct, out, ei);
	return ST_OK;
}

/* ---- replies ---- */

/* Copy a peer string for an error text: bounded, one line (st_ sanitizes). */
static void
oauth_peer_text(const char *s, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s", s != NULL ? s : "");
}

static const char *
oauth_json_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* expires_in and interval arrive as numbers, some servers send strings. */
static bool
oauth_json_int(json_t *o, const char *key, long long *out)
{
	json_t *v = json_object_get(o, key);
	const char *s;
	char *end;

	if (v == NULL || json_is_null(v))
		return false;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return true;
	}
	if (json_is_real(v)) {
		*out = (long long)json_real_value(v);
		return true;
	}
	if (json_is_string(v)) {
		s = json_string_value(v);
		*out = strtoll(s, &end, 10);
		return end != s && *end == '\0';
	}
	return false;
}

/* The refusal texts: what happened, then exactly what to do. */
static enum status
oauth_refusal(const struct account *acct, enum oauth_grant grant,
    const char *err, const char *desc, struct errinfo *ei)
{
	const char *n = acct->name;
	char d[OAUTH_DESC_MAX + 8];

	if (desc != NULL && *desc != '\0')
		snprintf(d, sizeof(d), ": %.*s", OAUTH_DESC_MAX, desc);
	else
		d[0] = '\0';

	if (strcmp(err, "invalid_grant") == 0) {
		switch (grant) {
		case OAUTH_GRANT_JWT:
			return st_error(ei, ST_AUTH,
			    "account %s: the service-account assertion was "
			    "refused (invalid_grant%s); \"Invalid JWT\" means "
			    "this host's clock is off (check NTP) or the key "
			    "was deleted; otherwise check that impersonate "
			    "names an existing Workspace mailbox", n, d);
		case OAUTH_GRANT_CODE:
			return st_error(ei, ST_AUTH,
			    "account %s: the authorization code was refused "
			    "(invalid_grant%s); it expired or was used "
			    "already: run `bearmail-auth login %s` again",
			    n, d, n);
		case OAUTH_GRANT_DEVICE:
			return st_error(ei, ST_AUTH,
			    "account %s: the device code was refused "
			    "(invalid_grant%s): run `bearmail-auth login "
			    "--device %s` again", n, d, n);
		default:
			return st_error(ei, ST_AUTH,
			    "account %s: the refresh token was refused "
			    "(invalid_grant%s): it was revoked, expired or "
			    "replaced; run `bearmail-auth login %s`; if this "
			    "is a Google app in \"Testing\" publishing status, "
			    "its refresh tokens expire after 7 days: publish "
			    "the app (OAuth consent screen) and log in again",
			    n, d, n);
		}
	}
	if (strcmp(err, "invalid_client") == 0)
		return st_error(ei, ST_AUTH,
		    "account %s: the OAuth client was refused "
		    "(invalid_client%s): check client_id and client_secret "
		    "(Google: the Desktop app client; Microsoft: a public "
		    "client needs no secret and \"Allow public client flows\" "
		    "for --device), then run `bearmail-auth login %s`",
		    n, d, n);
	if (strcmp(err, "unauthorized_client") == 0) {
		if (grant == OAUTH_GRANT_JWT)
			return st_error(ei, ST_AUTH,
			    "account %s: unauthorized_client%s: domain-wide "
			    "delegation is not granted to this service account "
			    "for the scope: in the Google Admin console, "
			    "Security > API controls > Domain-wide delegation, "
			    "add its client ID with the scope %s", n, d,
			    acct->scope != NULL ? acct->scope : "");
		return st_error(ei, ST_AUTH,
		    "account %s: unauthorized_client%s: this OAuth client may "
		    "not use this grant (Google: create a \"Desktop app\" "
		    "client; Microsoft: enable \"Allow public client flows\")",
		    n, d);
	}
	if (strcmp(err, "invalid_scope") == 0)
		return st_error(ei, ST_AUTH,
		    "account %s: the scope was refused (invalid_scope%s): %s",
		    n, d, acct->provider == PROV_GOOGLE ? "Google's mail "
		    "scope is https://mail.google.com/, and Google's device "
		    "flow does not allow it" : "check scope in the "
		    "configuration and the API permissions of the app");
	if (strcmp(err, "access_denied") == 0 ||
	    strcmp(err, "authorization_declined") == 0)
		return st_error(ei, ST_AUTH,
		    "account %s: access was denied (%s%s): run "
		    "`bearmail-auth login %s` and accept", n, err, d, n);
	if (strcmp(err, "expired_token") == 0)
		return st_error(ei, ST_AUTH,
		    "account %s: the device code expired before it was "
		    "entered: run `bearmail-auth login --device %s` again", n,
		    n);
	return st_error(ei, ST_AUTH, "account %s: the token endpoint refused "
	    "(%s%s): run `bearmail-auth login %s`", n, err, d, n);
}

/*
 * Shared first half of the reply parsers: JSON object or a classified
 * failure.  *obj is set only on success.
 */
static enum status
oauth_reply_json(const struct account *acct, enum oauth_grant grant,
    const char *body, size_t len, long http, json_t **obj,
    char errcode[OAUTH_ERROR_MAX], struct errinfo *ei)
{
	json_error_t jerr;
	json_t *o;
	const char *err, *desc;
	char dtext[OAUTH_DESC_MAX + 1];
	enum status st;

	*obj = NULL;
	if (errcode != NULL)
		errcode[0] = '\0';
	oauth_init();
	o = len > 0 ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) :
	    NULL;
	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		o = NULL;
	}
	err = o != NULL ? oauth_json_str(o, "error") : NULL;
	if (err == NULL && http >= 200 && http < 300) {
		if (o == NULL)
			return st_error(ei, ST_PROTO, "account %s: the endpoint "
			    "answered HTTP %ld with %zu bytes that are not a "
			    "JSON object", acct->name, http, len);
		*obj = o;
		return ST_OK;
	}
	if (err == NULL) {
		st = http >= 500 || http == 429 || http == 408 ?
		    ST_TEMPFAIL : ST_PROTO;
		if (o != NULL)
			json_decref(o);
		return st_error(ei, st, "account %s: the endpoint answered "
		    "HTTP %ld%s", acct->name, http, st == ST_TEMPFAIL ?
		    ": try again later (every stored token is kept)" :
		    " without an OAuth error");
	}
	if (errcode != NULL)
		snprintf(errcode, OAUTH_ERROR_MAX, "%s", err);
	desc = oauth_json_str(o, "error_description");
	oauth_peer_text(desc, dtext, sizeof(dtext));
	if (strcmp(err, "authorization_pending") == 0 ||
	    strcmp(err, "slow_down") == 0)
		st = st_error(ei, ST_TEMPFAIL, "account %s: %s", acct->name,
		    err);
	else if (strcmp(err, "temporarily_unavailable") == 0 ||
	    strcmp(err, "server_error") == 0 || http >= 500)
		st = st_error(ei, ST_TEMPFAIL, "account %s: the endpoint said "
		    "%s (HTTP %ld): try again later (every stored token is "
		    "kept)", acct->name, err, http);
	else
		st = oauth_refusal(acct, grant, err, dtext, ei);
	json_decref(o);
	return st;
}

static enum status
oauth_take(json_t *o, const char *key, char **out, struct errinfo *ei)
{
	const char *s = oauth_json_str(o, key);

	if (s == NULL)
		return ST_OK;
	if (!token_valid_value(s))
		return st_error(ei, ST_PROTO, "the endpoint's %s is not a "
		    "usable token (%zu bytes)", key, strlen(s));
	if ((*out = strdup(s)) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	return ST_OK;
}

enum status
oauth_parse_token(const struct account *acct, enum oauth_grant grant,
    const char *body, size_t len, long http, time_t now, struct token *tok,
    char errcode[OAUTH_ERROR_MAX], struct errinfo *ei)
{
	const char *type, *scope;
	long long expires_in = 3600;
	enum status st;
	json_t *o;

	memset(tok, 0, sizeof(*tok));
	if ((st = oauth_reply_json(acct, grant, body, len, http, &o, errcode,
	    ei)) != ST_OK)
		return st;
	if (grant == OAUTH_GRANT_REVOKE)
		goto done;
	type = oauth_json_str(o, "token_type");
	if (type != NULL && strcasecmp(type, "bearer") != 0) {
		st = st_error(ei, ST_PROTO, "account %s: token_type \"%.40s\" "
		    "is not Bearer", acct->name, type);
		goto done;
	}
	if (oauth_json_str(o, "access_token") == NULL) {
		st = st_error(ei, ST_PROTO, "account %s: the reply has no "
		    "access_token", acct->name);
		goto done;
	}
	if ((st = oauth_take(o, "access_token", &tok->access_token, ei)) !=
	    ST_OK ||
	    (st = oauth_take(o, "refresh_token", &tok->refresh_token, ei)) !=
	    ST_OK)
		goto done;
	/* A token that is born expired would be refreshed on every use. */
	if (json_object_get(o, "expires_in") != NULL &&
	    (!oauth_json_int(o, "expires_in", &expires_in) ||
	    expires_in < 1 || expires_in > 10 * 365 * 86400LL)) {
		st = st_error(ei, ST_PROTO, "account %s: bad expires_in",
		    acct->name);
		goto done;
	}
	if ((scope = oauth_json_str(o, "scope")) != NULL && *scope != '\0' &&
	    strlen(scope) <= TOKEN_VALUE_MAX &&
	    (tok->scope = strdup(scope)) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto done;
	}
	tok->obtained = now;
	tok->expires = now + (time_t)expires_in;
	if (tok->refresh_token != NULL)
		tok->authorized = now;
done:
	json_decref(o);
	if (st != ST_OK)
		token_free(tok);
	return st;
}

enum status
oauth_parse_device(const struct account *acct, const char *body, size_t len,
    long http, struct oauth_device *dev, struct errinfo *ei)
{
	const char *s;
	long long v;
	enum status st;
	json_t *o;

	memset(dev, 0, sizeof(*dev));
	if ((st = oauth_reply_json(acct, OAUTH_GRANT_DEVICE, body, len, http,
	    &o, NULL, ei)) != ST_OK)
		return st;
	if ((st = oauth_take(o, "device_code", &dev->device_code, ei)) !=
	    ST_OK ||
	    (st = oauth_take(o, "user_code", &dev->user_code, ei)) != ST_OK)
		goto done;
	if ((s = oauth_json_str(o, "verification_uri")) == NULL)
		s = oauth_json_str(o, "verification_url");
	if (dev->device_code == NULL || dev->user_code == NULL || s == NULL) {
		st = st_error(ei, ST_PROTO, "account %s: the device "
		    "authorization reply lacks device_code, user_code or "
		    "verification_uri", acct->name);
		goto done;
	}
	if (oauth_check_url(s, "verification_uri", ei) != ST_OK ||
	    (dev->verification_uri = strdup(s)) == NULL) {
		st = st_error(ei, ST_PROTO, "account %s: bad verification_uri",
		    acct->name);
		goto done;
	}
	if ((s = oauth_json_str(o, "verification_uri_complete")) != NULL &&
	    oauth_check_url(s, "verification_uri_complete", NULL) == ST_OK)
		dev->verification_uri_complete = strdup(s);
	dev->expires_in = oauth_json_int(o, "expires_in", &v) && v > 0 &&
	    v < 86400 ? (int)v : 1800;
	dev->interval = oauth_json_int(o, "interval", &v) && v > 0 &&
	    v < 3600 ? (int)v : 5;
done:
	json_decref(o);
	if (st != ST_OK)
		oauth_device_free(dev);
	return st;
}

static void
oauth_wipe_str(char **s)
{
	if (*s == NULL)
		return;
	st_wipe(*s, strlen(*s));
	free(*s);
	*s = NULL;
}

void
oauth_device_free(struct oauth_device *dev)
{
	oauth_wipe_str(&dev->device_code);
	oauth_wipe_str(&dev->user_code);
	free(dev->verification_uri);
	free(dev->verification_uri_complete);
	memset(dev, 0, sizeof(*dev));
}

/* Constant time, so a local attacker learns nothing from timing. */
static bool
oauth_same(const char *a, const char *b)
{
	size_t n = strlen(a), i;
	unsigned char d = 0;

	if (n != strlen(b))
		return false;
	for (i = 0; i < n; i++)
		d |= (unsigned char)a[i] ^ (unsigned char)b[i];
	return d == 0;
}

enum status
oauth_parse_redirect(const char *s, const char *state, char **code,
    struct errinfo *ei)
{
	struct buf key, val, got_code, got_state, got_err, got_desc;
	const char *q, *end, *p, *amp, *eq;
	enum status st = ST_OK;
	bool have_state = false, have_code = false, have_err = false;

	*code = NULL;
	buf_init_secret(&key, 256);
	buf_init_secret(&val, 8192);
	buf_init_secret(&got_code, 8192);
	buf_init(&got_state, 256);
	buf_init(&got_err, 256);
	buf_init(&got_desc, 512);
	if ((q = strchr(s, '?')) == NULL) {
		st = st_error(ei, ST_USAGE, "no query in the redirect address");
		goto done;
	}
	q++;
	end = q + strcspn(q, "# \t\r\n");
	for (p = q; p < end; p = amp + 1) {
		if ((amp = memchr(p, '&', (size_t)(end - p))) == NULL)
			amp = end;
		if ((eq = memchr(p, '=', (size_t)(amp - p))) == NULL)
			eq = amp;
		buf_reset(&key);
		buf_reset(&val);
		if ((st = oauth_urldecode(&key, p, (size_t)(eq - p), ei)) !=
		    ST_OK || (eq < amp && (st = oauth_urldecode(&val, eq + 1,
		    (size_t)(amp - eq - 1), ei)) != ST_OK))
			goto done;
		if (key.data == NULL)
			continue;
		if (strcmp(key.data, "code") == 0 && !have_code) {
			have_code = true;
			st = buf_add(&got_code, val.data, val.len, ei);
		} else if (strcmp(key.data, "state") == 0 && !have_state) {
			have_state = true;
			st = buf_add(&got_state, val.data, val.len, ei);
		} else if (strcmp(key.data, "error") == 0 && !have_err) {
			have_err = true;
			st = buf_add(&got_err, val.data, val.len, ei);
		} else if (strcmp(key.data, "error_description") == 0) {
			buf_reset(&got_desc);
			st = buf_add(&got_desc, val.data, val.len < 200 ?
			    val.len : 200, ei);
		}
		if (st != ST_OK)
			goto done;
		if (amp == end)
			break;
	}
	if (!have_code && !have_err) {
		st = st_error(ei, ST_USAGE, "the address holds no code= and "
		    "no error=");
		goto done;
	}
	if (!have_state || !oauth_same(got_state.data != NULL ?
	    got_state.data : "", state)) {
		st = st_error(ei, ST_AUTH, "the redirect's state does not "
		    "match this login (an old or forged redirect): refused; "
		    "start the login again");
		goto done;
	}
	if (have_err) {
		st = st_error(ei, ST_AUTH, "authorization refused by the "
		    "provider: %.64s%s%s", got_err.data != NULL ?
		    got_err.data : "", got_desc.len > 0 ? ": " : "",
		    got_desc.len > 0 ? got_desc.data : "");
		goto done;
	}
	if (got_code.len == 0 || !token_valid_value(got_code.data)) {
		st = st_error(ei, ST_PROTO, "the redirect's code is empty or "
		    "malformed");
		goto done;
	}
	*code = buf_steal(&got_code, ei);
	if (*code == NULL)
		st = ST_SYS;
done:
	buf_wipe(&key);
	buf_wipe(&val);
	buf_wipe(&got_code);
	buf_free(&got_state);
	buf_free(&got_err);
	buf_free(&got_desc);
	return st;
}

/* ---- service-account JWT ---- */

static enum status
oauth_b64url_json(json_t *o, struct buf *out, struct errinfo *ei)
{
	enum status st;
	char *s;

	if ((s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
		return st_error(ei, ST_SYS, "out of memory");
	st = b64url_encode(out, s, strlen(s), ei);
	oauth_json_free(s);
	return st;
}

enum status
oauth_jwt(const char *key_json, size_t key_len, const char *scope,
    const char *aud, const char *sub, time_t now, struct buf *out,
    struct errinfo *ei)
{
	json_error_t jerr;
	json_t *key = NULL, *hdr = NULL, *claims = NULL;
	const char *email, *pem, *kid;
	uint8_t *sig = NULL;
	size_t siglen = 0, mark;
	enum status st;

	oauth_init();
	buf_set_secret(out);	/* a signed assertion is a credential */
	key = json_loadb(key_json, key_len, 0, &jerr);
	if (key == NULL || !json_is_object(key) ||
	    (email = oauth_json_str(key, "client_email")) == NULL ||
	    (pem = oauth_json_str(key, "private_key")) == NULL) {
		st = st_error(ei, ST_CONFIG, "the service account key is not "
		    "a JSON key file with client_email and private_key");
		goto done;
	}
	kid = oauth_json_str(key, "private_key_id");
	hdr = kid != NULL ?
	    json_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT", "kid",
	    kid) : json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
	claims = json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", email,
	    "scope", scope != NULL ? scope : "", "aud", aud,
	    "iat", (json_int_t)now, "exp", (json_int_t)now + 3600);
	if (hdr == NULL || claims == NULL) {
		st = st_error(ei, ST_SYS, "out of memory");
		goto done;
	}
	if (sub != NULL && json_object_set_new(claims, "sub",
	    json_string(sub)) != 0) {
		st = st_error(ei, ST_SYS, "out of memory");
		goto done;
	}
	mark = out->len;
	if ((st = oauth_b64url_json(hdr, out, ei)) != ST_OK ||
	    (st = buf_add(out, ".", 1, ei)) != ST_OK ||
	    (st = oauth_b64url_json(claims, out, ei)) != ST_OK)
		goto done;
	if ((st = tls_rs256_sign(pem, strlen(pem), out->data + mark,
	    out->len - mark, &sig, &siglen, ei)) != ST_OK) {
		st_context(ei, "service account key");
		goto done;
	}
	if ((st = buf_add(out, ".", 1, ei)) != ST_OK ||
	    (st = b64url_encode(out, sig, siglen, ei)) != ST_OK)
		goto done;
done:
	free(sig);
	json_decref(hdr);
	json_decref(claims);
	/* The PEM key sits in jansson's strings: oauth_json_free() wipes. */
	json_decref(key);
	return st;
}

/* ---- HTTP ---- */

struct oauth_sink {
	struct buf *b;
	bool over;
};

static size_t
oauth_write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct oauth_sink *s = arg;
	size_t n = size * nmemb;

	if (buf_add(s->b, p, n, NULL) != ST_OK) {
		s->over = true;
		return 0;
	}
	return n;
}

/* The transcript line for a form: keys, and values only where harmless. */
static void
oauth_trace_form(const char *body)
{
	static const char *shown[] = { "grant_type", "client_id",
	    "redirect_uri", "scope", "code_challenge_method",
	    "token_type_hint", NULL };
	struct buf t;
	const char *p, *amp, *eq;
	size_t klen, i;
	bool show;

	buf_init(&t, 4096);
	for (p = body; *p != '\0'; p = *amp != '\0' ? amp + 1 : amp) {
		amp = p + strcspn(p, "&");
		eq = memchr(p, '=', (size_t)(amp - p));
		klen = eq != NULL ? (size_t)(eq - p) : (size_t)(amp - p);
		show = false;
		for (i = 0; shown[i] != NULL; i++)
			if (strlen(shown[i]) == klen &&
			    strncmp(p, shown[i], klen) == 0)
				show = true;
		if (show)
			buf_printf(&t, NULL, "%s%.*s", t.len > 0 ? "&" : "",
			    (int)(amp - p), p);
		else
			buf_printf(&t, NULL, "%s%.*s=[redacted %zu bytes]",
			    t.len > 0 ? "&" : "", (int)klen, p,
			    eq != NULL ? (size_t)(amp - eq - 1) : 0);
		if (*amp == '\0')
			break;
	}
	if (t.data != NULL)
		log_wire(LOG_SEND, t.data, t.len, false);
	buf_free(&t);
}

static enum status
oauth_curl_status(CURLcode rc, const char *url, const char *errbuf,
    struct errinfo *ei)
{
	const char *why = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);

	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return st_error(ei, ST_TIMEOUT, "%.200s: timed out: %s", url,
		    why);
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
		return st_error(ei, ST_TLS, "%.200s: %s", url, why);
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return st_error(ei, ST_CONFIG, "%.200s: %s", url, why);
	default:
		return st_error(ei, ST_NET, "%.200s: %s", url, why);
	}
}

enum status
oauth_post(const struct account *acct, const char *url, const char *body,
    long *http, struct buf *resp, struct errinfo *ei)
{
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *hdrs = NULL;
	struct oauth_sink sink = { resp, false };
	const char *host;
	size_t hlen;
	enum status st = ST_OK;
	CURLcode rc;
	CURL *c;
	long timeout = acct->timeout > 0 ? acct->timeout : 60;

	*http = 0;
	if ((st = oauth_check_url(url, "endpoint", ei)) != ST_OK)
		return st;
	if ((c = curl_easy_init()) == NULL)
		return st_error(ei, ST_SYS, "cannot start libcurl");
	errbuf[0] = '\0';
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, CURLPROTO_HTTPS | CURLPROTO_HTTP);
#endif
	/* Never a signal (no SIGALRM for DNS timeouts), never a redirect. */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, timeout);
	curl_easy_setopt(c, CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, oauth_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	/* The policy of tls.c for mail servers: nothing older than 1.2. */
	curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (acct->ca_file != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, acct->ca_file);
	/* A proxy has no business seeing loopback traffic. */
	oauth_authority(strstr(url, "://") + 3, &host, &hlen);
	if (oauth_loopback(host, hlen))
		curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	if (log_verbose()) {
		char line[512];

		snprintf(line, sizeof(line), "POST %s", url);
		log_wire(LOG_NOTE, line, strlen(line), false);
		oauth_trace_form(body);
	}
	rc = curl_easy_perform(c);
	if (sink.over) {
		st = st_error(ei, ST_PROTO, "%.200s: reply larger than %zu "
		    "bytes", url, resp->max);
		goto done;
	}
	if (rc != CURLE_OK) {
		st = oauth_curl_status(rc, url, errbuf, ei);
		goto done;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http);
	if (log_verbose()) {
		char line[128];

		snprintf(line, sizeof(line), "HTTP %ld, %zu bytes", *http,
		    resp->len);
		log_wire(LOG_RECV, line, strlen(line), false);
	}
done:
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	st_wipe(errbuf, sizeof(errbuf));
	return st;
}

/* One POST of a prepared body, then the token parser. */
static enum status
oauth_exchange(const struct account *acct, enum oauth_grant grant,
    const char *url, struct buf *body, struct token *tok,
    char errcode[OAUTH_ERROR_MAX], struct errinfo *ei)
{
	struct buf resp;
	enum status st;
	long http;

	buf_init_secret(&resp, OAUTH_REPLY_MAX);
	if (errcode != NULL)
		errcode[0] = '\0';
	memset(tok, 0, sizeof(*tok));
	if ((st = oauth_post(acct, url, body->data != NULL ? body->data : "",
	    &http, &resp, ei)) == ST_OK)
		st = oauth_parse_token(acct, grant, resp.data != NULL ?
		    resp.data : "", resp.len, http, time(NULL), tok, errcode,
		    ei);
	buf_wipe(&resp);
	buf_wipe(body);
	return st;
}

enum status
oauth_do_refresh(const struct account *acct, const char *refresh_token,
    struct token *tok, struct errinfo *ei)
{
	struct buf body;
	enum status st;

	buf_init_secret(&body, OAUTH_BODY_MAX);
	if ((st = oauth_body_refresh(acct, refresh_token, &body, ei)) !=
	    ST_OK) {
		buf_wipe(&body);
		return st;
	}
	return oauth_exchange(acct, OAUTH_GRANT_REFRESH, acct->token_endpoint,
	    &body, tok, NULL, ei);
}

enum status
oauth_do_code(const struct account *acct, const char *code,
    const char *verifier, const char *redirect_uri, struct token *tok,
    struct errinfo *ei)
{
	struct buf body;
	enum status st;

	buf_init_secret(&body, OAUTH_BODY_MAX);
	if ((st = oauth_body_code(acct, code, verifier, redirect_uri, &body,
	    ei)) != ST_OK) {
		buf_wipe(&body);
		return st;
	}
	return oauth_exchange(acct, OAUTH_GRANT_CODE, acct->token_endpoint,
	    &body, tok, NULL, ei);
}

/* Read the key file, bounded; refuse what is not a plain file. */
static enum status
oauth_read_key(const char *path, struct buf *out, struct errinfo *ei)
{
	char chunk[4096];
	enum status st = ST_OK;
	size_t n;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL)
		return st_errno(ei, ST_CONFIG, "service_account_key %s", path);
	/* No stdio buffer: it would keep a copy of the private key. */
	setvbuf(f, NULL, _IONBF, 0);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (buf_add(out, chunk, n, NULL) != ST_OK) {
			st = st_error(ei, ST_CONFIG, "service_account_key %s: "
			    "too large", path);
			break;
		}
	if (st == ST_OK && ferror(f))
		st = st_errno(ei, ST_CONFIG, "service_account_key %s", path);
	st_wipe(chunk, sizeof(chunk));
	fclose(f);
	return st;
}

enum status
oauth_do_service(const struct account *acct, struct token *tok,
    struct errinfo *ei)
{
	struct buf key, jwt, body;
	enum status st;

	buf_init_secret(&key, 64 * 1024);
	buf_init_secret(&jwt, 16 * 1024);
	buf_init_secret(&body, OAUTH_BODY_MAX);
	memset(tok, 0, sizeof(*tok));
	if ((st = oauth_check_url(acct->token_endpoint, "token_endpoint",
	    ei)) != ST_OK ||
	    (st = oauth_read_key(acct->service_account_key, &key, ei)) !=
	    ST_OK)
		goto done;
	if ((st = oauth_jwt(key.data != NULL ? key.data : "", key.len,
	    acct->scope, acct->token_endpoint, acct->impersonate != NULL ?
	    acct->impersonate : acct->user, time(NULL), &jwt, ei)) != ST_OK) {
		st_context(ei, "%s", acct->service_account_key);
		goto done;
	}
	if ((st = oauth_body_jwt(jwt.data, &body, ei)) != ST_OK)
		goto done;
	st = oauth_exchange(acct, OAUTH_GRANT_JWT, acct->token_endpoint, &body,
	    tok, NULL, ei);
	/* The jwt-bearer grant never hands out refresh tokens; keep none. */
	if (st == ST_OK && tok->refresh_token != NULL) {
		st_wipe(tok->refresh_token, strlen(tok->refresh_token));
		free(tok->refresh_token);
		tok->refresh_token = NULL;
		tok->authorized = 0;
	}
done:
	buf_wipe(&key);
	buf_wipe(&jwt);
	buf_wipe(&body);
	return st;
}

enum status
oauth_do_device_start(const struct account *acct, struct oauth_device *dev,
    struct errinfo *ei)
{
	struct buf body, resp;
	enum status st;
	long http;

	memset(dev, 0, sizeof(*dev));
	buf_init_secret(&body, OAUTH_BODY_MAX);
	buf_init_secret(&resp, OAUTH_REPLY_MAX);
	if ((st = oauth_body_device(acct, &body, ei)) == ST_OK &&
	    (st = oauth_post(acct, acct->device_endpoint, body.data, &http,
	    &resp, ei)) == ST_OK)
		st = oauth_parse_device(acct, resp.data != NULL ? resp.data :
		    "", resp.len, http, dev, ei);
	buf_wipe(&body);
	buf_wipe(&resp);
	return st;
}

enum status
oauth_do_device_poll(const struct account *acct,
    const struct oauth_device *dev, struct token *tok,
    char errcode[OAUTH_ERROR_MAX], struct errinfo *ei)
{
	struct buf body;
	enum status st;

	buf_init_secret(&body, OAUTH_BODY_MAX);
	if ((st = oauth_body_device_poll(acct, dev->device_code, &body, ei)) !=
	    ST_OK) {
		buf_wipe(&body);
		return st;
	}
	return oauth_exchange(acct, OAUTH_GRANT_DEVICE, acct->token_endpoint,
	    &body, tok, errcode, ei);
}

enum status
oauth_do_revoke(const struct account *acct, const char *token, bool refresh,
    struct errinfo *ei)
{
	struct buf body, resp;
	enum status st;
	long http;

	buf_init_secret(&body, OAUTH_BODY_MAX);
	buf_init_secret(&resp, OAUTH_REPLY_MAX);
	if ((st = oauth_body_revoke(acct, token, refresh, &body, ei)) !=
	    ST_OK ||
	    (st = oauth_post(acct, acct->revoke_endpoint, body.data, &http,
	    &resp, ei)) != ST_OK)
		goto done;
	/*
	 * RFC 7009 section 2.2: 200 whatever the token's state; Google
	 * says 400 invalid_token for one it no longer knows, which is
	 * just as revoked.
	 */
	if (http >= 200 && http < 300)
		goto done;
	if (http >= 500 || http == 429)
		st = st_error(ei, ST_TEMPFAIL, "account %s: revocation "
		    "endpoint answered HTTP %ld", acct->name, http);
	else if (resp.data == NULL || strstr(resp.data, "invalid_token") ==
	    NULL)
		st = st_error(ei, ST_PROTO, "account %s: revocation endpoint "
		    "answered HTTP %ld", acct->name, http);
done:
	buf_wipe(&body);
	buf_wipe(&resp);
	return st;
}
