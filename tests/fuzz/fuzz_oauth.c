/*
 * fuzz_oauth.c: what a token endpoint or a browser can send bearmail-auth
 * (src/oauth.h): token replies (oauth_parse_token()), device
 * authorization replies (oauth_parse_device()), redirects
 * (oauth_parse_redirect()), percent-decoding (oauth_urldecode()) and
 * service-account key files (oauth_jwt()).
 *
 * The first byte picks the function, the grant and the provider; the
 * second the HTTP status.
 *
 * Promises checked: errcode is always NUL-terminated;
 * a successful token reply yields an access token that may be stored
 * (token_valid_value()) and an expiry after "now"; a failed one leaves
 * no token behind; a decoded redirect code holds no NUL.
 */
#include "config.h"

#include "buf.h"
#include "conf.h"
#include "oauth.h"
#include "status.h"
#include "token.h"

#include "fuzz.h"

#define NOW	((time_t)1764155719)

static struct account
account(unsigned which)
{
	static const enum provider prov[] = { PROV_GOOGLE, PROV_MICROSOFT,
	    PROV_OAUTH2, PROV_GOOGLE };
	struct account a;

	memset(&a, 0, sizeof(a));
	a.name = "fuzz";
	a.provider = prov[which & 3];
	a.user = "alice@example.com";
	a.client_id = "cid.apps";
	a.token_endpoint = "https://oauth.example.com/token";
	a.device_endpoint = "https://oauth.example.com/device";
	a.scope = "https://mail.example.com/";
	a.timeout = 2;
	return a;
}

static void
parse_token(const struct account *a, enum oauth_grant g, const char *body,
    size_t len, long http)
{
	struct errinfo ei;
	struct token tok;
	char errcode[OAUTH_ERROR_MAX];

	memset(&tok, 0, sizeof(tok));
	memset(errcode, 'x', sizeof(errcode));
	st_clear(&ei);
	if (oauth_parse_token(a, g, body, len, http, NOW, &tok, errcode,
	    &ei) == ST_OK) {
		if (g != OAUTH_GRANT_REVOKE) {
			FZ_CHECK(tok.access_token != NULL &&
			    token_valid_value(tok.access_token));
			FZ_CHECK(tok.expires > NOW && tok.obtained == NOW);
		}
		FZ_CHECK(tok.refresh_token == NULL ||
		    token_valid_value(tok.refresh_token));
	} else {
		FZ_CHECK(ei.st != ST_OK);
		FZ_CHECK(tok.access_token == NULL &&
		    tok.refresh_token == NULL);
	}
	FZ_CHECK(fz_terminated(errcode, sizeof(errcode)));
	token_free(&tok);
}

static void
parse_device(const struct account *a, const char *body, size_t len,
    long http)
{
	struct errinfo ei;
	struct oauth_device dev;

	memset(&dev, 0, sizeof(dev));
	st_clear(&ei);
	if (oauth_parse_device(a, body, len, http, &dev, &ei) == ST_OK) {
		FZ_CHECK(dev.device_code != NULL && dev.user_code != NULL &&
		    dev.verification_uri != NULL);
		FZ_CHECK(!fz_has_ctl(dev.user_code, false));
		FZ_CHECK(!fz_has_ctl(dev.verification_uri, false));
		FZ_CHECK(dev.interval >= 1);
		oauth_device_free(&dev);
	} else
		FZ_CHECK(ei.st != ST_OK);
}

static void
parse_redirect(const char *s)
{
	struct errinfo ei;
	char *code = NULL;

	st_clear(&ei);
	if (oauth_parse_redirect(s, "st4te_value", &code, &ei) == ST_OK) {
		FZ_CHECK(code != NULL);
		st_wipe(code, strlen(code));
		free(code);
	} else
		FZ_CHECK(code == NULL && ei.st != ST_OK);
}

static void
urldecode(const char *in, size_t n)
{
	struct errinfo ei;
	struct buf out;

	buf_init(&out, n + 1);
	st_clear(&ei);
	if (oauth_urldecode(&out, in, n, &ei) == ST_OK) {
		FZ_CHECK(out.len <= n);
		FZ_CHECK(out.len == 0 || memchr(out.data, '\0', out.len) ==
		    NULL);
	} else
		FZ_CHECK(ei.st == ST_PROTO || ei.st == ST_LIMIT);
	buf_free(&out);
}

static void
jwt(const char *key, size_t n)
{
	struct errinfo ei;
	struct buf out;

	buf_init(&out, 64 * 1024);
	st_clear(&ei);
	if (oauth_jwt(key, n, "https://mail.google.com/",
	    "https://oauth2.googleapis.com/token", "alice@example.com", NOW,
	    &out, &ei) != ST_OK)
		FZ_CHECK(ei.st != ST_OK);
	buf_wipe(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long codes[] = { 200, 200, 200, 400, 401, 403, 429,
	    500, 503, 302, 0, 201, 404, 418, 599, 600 };
	struct account a;
	const char *body;
	char *s;
	unsigned sel;
	long http;

	sel = fz_byte(&data, &size);
	http = codes[fz_byte(&data, &size) & 15];
	a = account(sel >> 3);
	body = (const char *)data;

	switch (sel & 7) {
	case 0: case 1: case 2:
		parse_token(&a, (enum oauth_grant)((sel >> 5) % 5), body,
		    size, http);
		break;
	case 3:
		parse_device(&a, body, size, http);
		break;
	case 4: case 5:
		s = fz_strndup(body, size);
		parse_redirect(s);
		free(s);
		break;
	case 6:
		urldecode(body, size);
		break;
	default:
		jwt(body, size);
		break;
	}
	return 0;
}
