/*
 * Unit tests: OAuth request building and reply parsing (pure), plus the
 * transport's failure classes against local sockets.
 */
#include "config.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "oauth.h"
#include "tap.h"

/*
 * A watch on free(): while `watching`, count the blocks handed to free()
 * that still hold MARK.  jansson frees the strings of a parsed reply
 * with the free function it was given, so this sees whether tokens are
 * wiped before their blocks go back to the heap.  Skipped under
 * AddressSanitizer, whose own free() this would shadow.
 */
#define MARK	"MARK-r3fr3sh-t0k3n"

#ifndef __SANITIZE_ADDRESS__
#include <malloc.h>

static int watching, frees_marked;

void
free(void *p)
{
	static void (*real_free)(void *);
	static int resolving;

	if (p == NULL)
		return;
	if (real_free == NULL) {
		if (resolving)
			return;
		resolving = 1;
		*(void **)&real_free = dlsym(RTLD_NEXT, "free");
		resolving = 0;
		if (real_free == NULL)
			return;
	}
	if (watching && memmem(p, malloc_usable_size(p), MARK,
	    sizeof(MARK) - 1) != NULL)
		frees_marked++;
	real_free(p);
}
#endif

static struct account
google(void)
{
	struct account a;

	memset(&a, 0, sizeof(a));
	a.name = "work";
	a.provider = PROV_GOOGLE;
	a.user = "alice@example.com";
	a.client_id = "cid.apps";
	a.client_secret = "s3cret";
	a.auth_endpoint = "https://accounts.google.com/o/oauth2/v2/auth";
	a.token_endpoint = "https://oauth2.googleapis.com/token";
	a.revoke_endpoint = "https://oauth2.googleapis.com/revoke";
	a.scope = "https://mail.google.com/";
	a.timeout = 2;
	return a;
}

static struct account google(void);

/* Runs first: nothing has parsed JSON yet. */
static void
test_wipe(void)
{
	json_malloc_t m;
	json_free_t f;
	struct account a = google();
	struct errinfo ei;
	struct token t;
	const char *body = "{\"access_token\":\"at-" MARK "\","
	    "\"refresh_token\":\"rt-" MARK "\",\"expires_in\":3599,"
	    "\"token_type\":\"Bearer\"}";

	json_get_alloc_funcs(&m, &f);
	ok(f == free, "before any parse jansson frees with plain free()");
#ifndef __SANITIZE_ADDRESS__
	/* memcheck: searching whole blocks reads bytes never written. */
	watching = getenv("LD_PRELOAD") == NULL ||
	    strstr(getenv("LD_PRELOAD"), "vgpreload") == NULL;
	frees_marked = 0;
#endif
	st_clear(&ei);
	is_int(oauth_parse_token(&a, OAUTH_GRANT_REFRESH, body, strlen(body),
	    200, 1000, &t, NULL, &ei), ST_OK, "a reply with tokens");
	token_free(&t);
#ifndef __SANITIZE_ADDRESS__
	if (watching)
		is_int(frees_marked, 0, "no block freed with a token still "
		    "in it");
	else
		ok(1, "# SKIP free() watch under valgrind");
	watching = 0;
#endif
	json_get_alloc_funcs(&m, &f);
	ok(f != free, "the parser installed a wiping free for jansson");
	oauth_init();
	json_get_alloc_funcs(&m, &f);
	ok(f != free && m != NULL, "oauth_init() is idempotent");

	{
		struct buf b;

		buf_init(&b, 4096);
		st_clear(&ei);
		is_int(oauth_body_refresh(&a, "rt-x", &b, &ei), ST_OK,
		    "refresh form");
		ok(b.secret, "a form is a secret buffer (it grows wiping)");
		buf_wipe(&b);
	}
}

static void
test_urls(void)
{
	struct errinfo ei;

	st_clear(&ei);
	is_int(oauth_check_url("https://oauth2.googleapis.com/token", "t", &ei),
	    ST_OK, "https accepted");
	is_int(oauth_check_url("http://127.0.0.1:8080/token", "t", &ei), ST_OK,
	    "http to 127.0.0.1 accepted");
	is_int(oauth_check_url("http://127.1.2.3/token", "t", &ei), ST_OK,
	    "http to 127/8 accepted");
	is_int(oauth_check_url("http://localhost:99/x", "t", &ei), ST_OK,
	    "http to localhost accepted");
	st_clear(&ei);
	is_int(oauth_check_url("http://[::ffff:127.0.0.1]:99/x", "t", &ei),
	    ST_OK, "v4-mapped loopback (conf_is_loopback's rules)");
	st_clear(&ei);
	is_int(oauth_check_url("http://[::ffff:10.0.0.1]:99/x", "t", &ei),
	    ST_CONFIG, "v4-mapped non-loopback");
	st_clear(&ei);
	is_int(oauth_check_url("http://[::1]:99/x", "t", &ei), ST_OK,
	    "http to [::1] accepted");
	is_int(oauth_check_url("http://example.com/token", "t", &ei),
	    ST_CONFIG, "http to a remote host refused");
	st_clear(&ei);
	is_int(oauth_check_url("http://127.0.0.1.evil.com/x", "t", &ei),
	    ST_CONFIG, "127.0.0.1.evil.com is not loopback");
	st_clear(&ei);
	is_int(oauth_check_url("http://evil.com@127.0.0.1/x", "t", &ei), ST_OK,
	    "userinfo skipped: the host is loopback");
	st_clear(&ei);
	is_int(oauth_check_url("http://127.0.0.1@evil.com/x", "t", &ei),
	    ST_CONFIG, "userinfo that looks loopback refused");
	st_clear(&ei);
	is_int(oauth_check_url("ftp://x/", "t", &ei), ST_CONFIG,
	    "other schemes refused");
	st_clear(&ei);
	is_int(oauth_check_url(NULL, "token_endpoint", &ei), ST_CONFIG,
	    "unset refused");
	is_str(ei.msg, "token_endpoint is not set", "names the setting");
}

static void
test_form(void)
{
	struct errinfo ei;
	struct buf b;

	buf_init(&b, 4096);
	st_clear(&ei);
	oauth_form_add(&b, "a", "x y&z=1/é~", &ei);
	oauth_form_add(&b, "redirect_uri", "http://127.0.0.1:5/", &ei);
	is_str(b.data, "a=x%20y%26z%3D1%2F%C3%A9~&redirect_uri="
	    "http%3A%2F%2F127.0.0.1%3A5%2F", "form encoding");
	buf_reset(&b);
	is_int(oauth_urldecode(&b, "a%2Fb+c%41", 10, &ei), ST_OK, "decode");
	is_str(b.data, "a/b cA", "decoded");
	buf_reset(&b);
	is_int(oauth_urldecode(&b, "a%2", 3, &ei), ST_PROTO, "truncated escape");
	st_clear(&ei);
	buf_reset(&b);
	is_int(oauth_urldecode(&b, "a%00", 4, &ei), ST_PROTO, "NUL refused");
	buf_free(&b);
}

static void
test_pkce(void)
{
	char challenge[OAUTH_CHALLENGE_LEN + 1], v[OAUTH_VERIFIER_LEN + 1],
	    v2[OAUTH_VERIFIER_LEN + 1], s1[OAUTH_STATE_LEN + 1],
	    s2[OAUTH_STATE_LEN + 1];
	struct errinfo ei;

	st_clear(&ei);
	/* RFC 7636 appendix B. */
	is_int(oauth_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
	    challenge, &ei), ST_OK, "challenge");
	is_str(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
	    "RFC 7636 appendix B vector");
	is_int(oauth_pkce_challenge("short", challenge, &ei), ST_USAGE,
	    "verifier under 43 characters refused");
	st_clear(&ei);
	is_int(oauth_pkce_new(v, challenge, &ei), ST_OK, "new verifier");
	is_int(strlen(v), 43, "verifier is 43 characters");
	is_int(oauth_pkce_new(v2, challenge, &ei), ST_OK, "another");
	ok(strcmp(v, v2) != 0, "verifiers differ");
	oauth_state_new(s1, &ei);
	oauth_state_new(s2, &ei);
	ok(strlen(s1) == 22 && strcmp(s1, s2) != 0, "states random");
}

static void
test_requests(void)
{
	struct account a = google();
	struct errinfo ei;
	struct buf b;

	buf_init(&b, 16384);
	st_clear(&ei);
	is_int(oauth_auth_url(&a, "http://127.0.0.1:4000/", "ST", "CH", &b, &ei),
	    ST_OK, "auth url");
	is_str(b.data, "https://accounts.google.com/o/oauth2/v2/auth?"
	    "response_type=code&client_id=cid.apps&redirect_uri=http%3A%2F%2F"
	    "127.0.0.1%3A4000%2F&scope=https%3A%2F%2Fmail.google.com%2F&"
	    "state=ST&code_challenge=CH&code_challenge_method=S256&"
	    "access_type=offline&prompt=consent&login_hint=alice%40example.com",
	    "google: offline, consent, login_hint, PKCE");
	buf_reset(&b);
	a.provider = PROV_MICROSOFT;
	a.scope = "https://outlook.office.com/SMTP.Send";
	a.auth_endpoint = "https://login.microsoftonline.com/org/oauth2/v2.0/"
	    "authorize";
	oauth_auth_url(&a, "http://127.0.0.1:4000/", "ST", "CH", &b, &ei);
	ok(strstr(b.data, "scope=https%3A%2F%2Foutlook.office.com%2FSMTP.Send"
	    "%20offline_access&") != NULL, "microsoft: offline_access added");
	ok(strstr(b.data, "access_type") == NULL && strstr(b.data, "prompt") ==
	    NULL, "microsoft: no Google parameters");
	ok(strncmp(b.data, "https://login.microsoftonline.com/org/", 38) == 0,
	    "tenant in the endpoint");
	buf_reset(&b);
	a.scope = "offline_access https://outlook.office.com/SMTP.Send";
	oauth_scope(&a, &b, &ei);
	is_str(b.data, "offline_access https://outlook.office.com/SMTP.Send",
	    "offline_access not doubled");

	a = google();
	buf_reset(&b);
	is_int(oauth_body_refresh(&a, "1//rt", &b, &ei), ST_OK, "refresh body");
	is_str(b.data, "grant_type=refresh_token&refresh_token=1%2F%2Frt&"
	    "client_id=cid.apps&client_secret=s3cret", "refresh body content");
	buf_reset(&b);
	a.client_secret = NULL;
	oauth_body_code(&a, "4/code", "VER", "http://127.0.0.1:1/", &b, &ei);
	is_str(b.data, "grant_type=authorization_code&code=4%2Fcode&"
	    "redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2F&code_verifier=VER&"
	    "client_id=cid.apps", "code body: verifier, no secret for a "
	    "public client");
	buf_reset(&b);
	oauth_body_device_poll(&a, "DC", &b, &ei);
	is_str(b.data, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3A"
	    "device_code&device_code=DC&client_id=cid.apps", "device poll body");
	buf_reset(&b);
	oauth_body_jwt("h.c.s", &b, &ei);
	is_str(b.data, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3A"
	    "jwt-bearer&assertion=h.c.s", "jwt-bearer body");
	buf_reset(&b);
	a.client_id = NULL;
	st_clear(&ei);
	is_int(oauth_body_refresh(&a, "rt", &b, &ei), ST_CONFIG,
	    "no client_id: configuration error");
	buf_free(&b);
}

static enum status
parse(struct account *a, enum oauth_grant g, const char *body, long http,
    struct token *t, char *code, struct errinfo *ei)
{
	st_clear(ei);
	return oauth_parse_token(a, g, body, strlen(body), http, 1000, t, code,
	    ei);
}

static void
test_replies(void)
{
	struct account a = google();
	char code[OAUTH_ERROR_MAX];
	struct errinfo ei;
	struct token t;

	is_int(parse(&a, OAUTH_GRANT_REFRESH, "{\"access_token\":\"ya29.x\","
	    "\"expires_in\":3599,\"scope\":\"https://mail.google.com/\","
	    "\"token_type\":\"Bearer\"}", 200, &t, code, &ei), ST_OK,
	    "google refresh reply");
	is_str(t.access_token, "ya29.x", "access token");
	ok(t.refresh_token == NULL, "no refresh token in it");
	is_int(t.expires, 1000 + 3599, "expiry = receive time + expires_in");
	is_int(t.obtained, 1000, "obtained = receive time");
	is_str(t.scope, "https://mail.google.com/", "scope");
	token_free(&t);

	is_int(parse(&a, OAUTH_GRANT_CODE, "{\"access_token\":\"a\","
	    "\"refresh_token\":\"r\",\"expires_in\":\"60\","
	    "\"token_type\":\"bearer\"}", 200, &t, code, &ei), ST_OK,
	    "expires_in as a string, bearer lower case");
	is_str(t.refresh_token, "r", "refresh token kept");
	is_int(t.expires, 1060, "string expires_in");
	token_free(&t);

	is_int(parse(&a, OAUTH_GRANT_REFRESH, "{\"access_token\":\"a b\"}", 200,
	    &t, code, &ei), ST_PROTO, "token with a space refused");
	is_int(parse(&a, OAUTH_GRANT_REFRESH, "{\"access_token\":\"a\","
	    "\"token_type\":\"mac\"}", 200, &t, code, &ei), ST_PROTO,
	    "non-bearer refused");
	is_int(parse(&a, OAUTH_GRANT_REFRESH, "{\"token_type\":\"Bearer\"}", 200,
	    &t, code, &ei), ST_PROTO, "no access_token: protocol error");
	is_int(parse(&a, OAUTH_GRANT_REFRESH, "<html>", 200, &t, code, &ei),
	    ST_PROTO, "garbage: protocol error");
	is_int(parse(&a, OAUTH_GRANT_REFRESH, "[1]", 200, &t, code, &ei),
	    ST_PROTO, "JSON array: protocol error");

	is_int(parse(&a, OAUTH_GRANT_REFRESH, "{\"error\":\"invalid_grant\","
	    "\"error_description\":\"Token has been expired or revoked.\"}",
	    400, &t, code, &ei), ST_AUTH, "invalid_grant: permanent");
	is_str(code, "invalid_grant", "error code");
	ok(strstr(ei.msg, "bearmail-auth login work") != NULL &&
	    strstr(ei.msg, "7 days") != NULL &&
	    strstr(ei.msg, "Token has been expired") != NULL,
	    "says what to do: %s", ei.msg);
	is_int(parse(&a, OAUTH_GRANT_REFRESH, "{\"error\":\"invalid_client\"}",
	    401, &t, code, &ei), ST_AUTH, "invalid_client: permanent");
	ok(strstr(ei.msg, "client_id") != NULL, "names client_id: %s", ei.msg);
	is_int(parse(&a, OAUTH_GRANT_JWT, "{\"error\":\"invalid_grant\","
	    "\"error_description\":\"Invalid JWT: Token must be a short-lived "
	    "token\"}", 400, &t, code, &ei), ST_AUTH, "Invalid JWT: permanent");
	ok(strstr(ei.msg, "clock") != NULL, "explains clock skew: %s", ei.msg);
	is_int(parse(&a, OAUTH_GRANT_JWT, "{\"error\":\"unauthorized_client\"}",
	    400, &t, code, &ei), ST_AUTH, "unauthorized_client");
	ok(strstr(ei.msg, "delegation") != NULL, "explains delegation: %s",
	    ei.msg);
	is_int(parse(&a, OAUTH_GRANT_REFRESH, "internal error", 500, &t, code,
	    &ei), ST_TEMPFAIL, "HTTP 500: temporary");
	is_str(code, "", "no OAuth code for a 500");
	is_int(parse(&a, OAUTH_GRANT_REFRESH, "", 503, &t, code, &ei),
	    ST_TEMPFAIL, "HTTP 503 empty: temporary");
	is_int(parse(&a, OAUTH_GRANT_REFRESH, "{\"error\":\"temporarily_"
	    "unavailable\"}", 503, &t, code, &ei), ST_TEMPFAIL,
	    "temporarily_unavailable: temporary");
	is_int(parse(&a, OAUTH_GRANT_REFRESH, "slow", 429, &t, code, &ei),
	    ST_TEMPFAIL, "HTTP 429: temporary");
	is_int(parse(&a, OAUTH_GRANT_DEVICE, "{\"error\":\"authorization_"
	    "pending\"}", 400, &t, code, &ei), ST_TEMPFAIL, "pending");
	is_str(code, "authorization_pending", "pending code");
	is_int(parse(&a, OAUTH_GRANT_DEVICE, "{\"error\":\"slow_down\"}", 400,
	    &t, code, &ei), ST_TEMPFAIL, "slow_down");
	is_str(code, "slow_down", "slow_down code");
	is_int(parse(&a, OAUTH_GRANT_DEVICE, "{\"error\":\"expired_token\"}",
	    400, &t, code, &ei), ST_AUTH, "expired_token: permanent");
	ok(strstr(ei.msg, "--device work") != NULL, "says run again: %s",
	    ei.msg);
	is_int(parse(&a, OAUTH_GRANT_REFRESH, "{\"error\":\"invalid_grant\","
	    "\"error_description\":\"a\\u0001\\nb\"}", 400, &t, code, &ei),
	    ST_AUTH, "control bytes in a description");
	ok(strchr(ei.msg, '\n') == NULL && strchr(ei.msg, 1) == NULL,
	    "neutralised");
}

static void
test_device(void)
{
	struct account a = google();
	struct oauth_device d;
	struct errinfo ei;
	const char *g = "{\"device_code\":\"DC\",\"user_code\":\"ABCD-EFGH\","
	    "\"verification_url\":\"https://www.google.com/device\","
	    "\"expires_in\":1800,\"interval\":5}";
	const char *m = "{\"device_code\":\"DC\",\"user_code\":\"XYZ\","
	    "\"verification_uri\":\"https://microsoft.com/devicelogin\"}";

	st_clear(&ei);
	is_int(oauth_parse_device(&a, g, strlen(g), 200, &d, &ei), ST_OK,
	    "google-style device reply");
	is_str(d.verification_uri, "https://www.google.com/device",
	    "verification_url accepted");
	is_int(d.interval, 5, "interval");
	oauth_device_free(&d);
	is_int(oauth_parse_device(&a, m, strlen(m), 200, &d, &ei), ST_OK,
	    "microsoft-style reply");
	is_int(d.interval, 5, "default interval 5");
	is_int(d.expires_in, 1800, "default expiry");
	is_str(d.user_code, "XYZ", "user code");
	oauth_device_free(&d);
	is_int(oauth_parse_device(&a, "{\"user_code\":\"x\"}", 17, 200, &d,
	    &ei), ST_PROTO, "missing fields");
}

static void
test_redirect(void)
{
	struct errinfo ei;
	char *code = NULL;

	st_clear(&ei);
	is_int(oauth_parse_redirect("/?state=S1&code=4%2F0Ab&scope=x", "S1",
	    &code, &ei), ST_OK, "redirect target");
	is_str(code, "4/0Ab", "code decoded");
	free(code);
	is_int(oauth_parse_redirect("http://127.0.0.1:5555/?code=C&state=S1",
	    "S1", &code, &ei), ST_OK, "pasted URL");
	is_str(code, "C", "code from URL");
	free(code);
	is_int(oauth_parse_redirect("  http://127.0.0.1:5555/?code=C&state=S1#x",
	    "S1", &code, &ei), ST_OK, "fragment ignored");
	free(code);
	is_int(oauth_parse_redirect("/?code=C&state=S2", "S1", &code, &ei),
	    ST_AUTH, "wrong state refused");
	ok(code == NULL, "no code for a wrong state");
	ok(strstr(ei.msg, "state") != NULL, "says state: %s", ei.msg);
	st_clear(&ei);
	is_int(oauth_parse_redirect("/?code=C", "S1", &code, &ei), ST_AUTH,
	    "missing state refused");
	st_clear(&ei);
	is_int(oauth_parse_redirect("/?error=access_denied&state=S1", "S1",
	    &code, &ei), ST_AUTH, "error=access_denied");
	ok(strstr(ei.msg, "access_denied") != NULL, "names it: %s", ei.msg);
	st_clear(&ei);
	is_int(oauth_parse_redirect("/favicon.ico", "S1", &code, &ei),
	    ST_USAGE, "not a redirect");
	st_clear(&ei);
	is_int(oauth_parse_redirect("/?x=1", "S1", &code, &ei), ST_USAGE,
	    "no code, no error");
	st_clear(&ei);
	is_int(oauth_parse_redirect("/?code=a%20b&state=S1", "S1", &code, &ei),
	    ST_PROTO, "code with a space refused");
}

static void
test_jwt_bad_key(void)
{
	struct errinfo ei;
	struct buf b;

	buf_init(&b, 16384);
	st_clear(&ei);
	is_int(oauth_jwt("{\"type\":\"service_account\"}", 26, "s", "aud",
	    "sub", 1000, &b, &ei), ST_CONFIG, "key file without a key");
	st_clear(&ei);
	is_int(oauth_jwt("{\"client_email\":\"a@b\",\"private_key\":\"nope\"}",
	    44, "s", "aud", "sub", 1000, &b, &ei), ST_CONFIG,
	    "unparsable private key");
	buf_free(&b);
}

/* A port that refuses, and one that accepts and never answers. */
static void
test_transport(void)
{
	struct account a = google();
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	struct errinfo ei;
	struct buf b;
	char url[128];
	long http;
	int fd;

	buf_init(&b, 4096);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &len);
	/* Bound, not listening: connections are refused. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/token",
	    ntohs(sin.sin_port));
	st_clear(&ei);
	is_int(oauth_post(&a, url, "a=b", &http, &b, &ei), ST_NET,
	    "refused connection: ST_NET (%s)", ei.msg);
	listen(fd, 4);
	st_clear(&ei);
	is_int(oauth_post(&a, url, "a=b", &http, &b, &ei), ST_TIMEOUT,
	    "silent server: ST_TIMEOUT (%s)", ei.msg);
	close(fd);
	st_clear(&ei);
	is_int(oauth_post(&a, "http://192.0.2.1/token", "a=b", &http, &b, &ei),
	    ST_CONFIG, "plain http off loopback refused before connecting");
	buf_free(&b);
}

int
main(void)
{
	/* The transport test must not go through a proxy of the caller's. */
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	test_wipe();
	test_urls();
	test_form();
	test_pkce();
	test_requests();
	test_replies();
	test_device();
	test_redirect();
	test_jwt_bad_key();
	test_transport();
	return tap_done();
}
