/* Unit tests: SASL client steps, error challenges, inline framing. */
#include "config.h"

#include <string.h>

#include "base64.h"
#include "sasl.h"
#include "tap.h"

static struct buf out;
static struct errinfo ei;

/* Initial response of a fresh session, or NULL on failure. */
static const char *
initial(enum auth_mech m, const char *user, const char *secret,
    const char *host, unsigned port)
{
	struct sasl s;
	enum status st;

	buf_wipe(&out);
	buf_init(&out, 65536);
	st_clear(&ei);
	if (sasl_init(&s, m, user, secret, host, port, &ei) != ST_OK)
		return NULL;
	st = sasl_initial(&s, &out, &ei);
	sasl_free(&s);
	if (st != ST_OK)
		return NULL;
	return out.data != NULL ? out.data : "";
}

/* One error challenge answered by a fresh OAuth session. */
static enum status
challenge(struct sasl *s, enum auth_mech m, const char *chal)
{
	struct buf ir;

	buf_wipe(&out);
	buf_init(&out, 1024);
	buf_init(&ir, 4096);
	st_clear(&ei);
	if (sasl_init(s, m, "u@example.com", "tok", "h", 1, &ei) != ST_OK ||
	    sasl_initial(s, &ir, &ei) != ST_OK)
		return ST_SYS;
	buf_wipe(&ir);
	return sasl_step(s, chal, strlen(chal), &out, &ei);
}

static void
test_vectors(void)
{
	/* Google's published XOAUTH2 example. */
	is_str(initial(MECH_XOAUTH2, "someuser@example.com",
	    "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg", NULL, 0),
	    "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRm"
	    "dDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==",
	    "XOAUTH2: Google's vector");
	/* XOAUTH2 sends the user unescaped and no host/port. */
	is_str(initial(MECH_XOAUTH2, "a=b,c", "t", "h", 25),
	    "dXNlcj1hPWIsYwFhdXRoPUJlYXJlciB0AQE=",
	    "XOAUTH2: no escaping, no host");

	/* RFC 7628 section 4.1's example. */
	is_str(initial(MECH_OAUTHBEARER, "user@example.com",
	    "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
	    "server.example.com", 143),
	    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBv"
	    "cnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1s"
	    "emRHRXVZMjl0Q2c9PQEB",
	    "OAUTHBEARER: RFC 7628 example");
	/* n,a=a=3Db=2Cc,^Ahost=smtp.example.org^Aport=587^Aauth=Bearer tok^A^A */
	is_str(initial(MECH_OAUTHBEARER, "a=b,c", "tok", "smtp.example.org",
	    587),
	    "bixhPWE9M0RiPTJDYywBaG9zdD1zbXRwLmV4YW1wbGUub3JnAXBvcnQ9NTg3AWF1"
	    "dGg9QmVhcmVyIHRvawEB",
	    "OAUTHBEARER: authzid escaping, host and port");
	/* n,a=u,^Aauth=Bearer t^A^A */
	is_str(initial(MECH_OAUTHBEARER, "u", "t", NULL, 0),
	    "bixhPXUsAWF1dGg9QmVhcmVyIHQBAQ==",
	    "OAUTHBEARER: host and port left out");

	/* RFC 4616 section 4's example: NUL tim NUL tanstaaftanstaaf. */
	is_str(initial(MECH_PLAIN, "tim", "tanstaaftanstaaf", "h", 1),
	    "AHRpbQB0YW5zdGFhZnRhbnN0YWFm", "PLAIN: RFC 4616 vector");
	is_str(initial(MECH_LOGIN, "tim", "pw", NULL, 0), "",
	    "LOGIN: no initial response");
}

static void
test_login(void)
{
	struct sasl s;

	buf_init(&out, 1024);
	st_clear(&ei);
	sasl_init(&s, MECH_LOGIN, "tim", "tanstaaf", NULL, 0, &ei);
	is_int(sasl_step(&s, "VXNlcm5hbWU6", 12, &out, &ei), ST_OK,
	    "LOGIN: Username: prompt");
	is_str(out.data, "dGlt", "LOGIN: user name sent");
	buf_wipe(&out);
	buf_init(&out, 1024);
	is_int(sasl_step(&s, "UGFzc3dvcmQ6", 12, &out, &ei), ST_OK,
	    "LOGIN: Password: prompt");
	is_str(out.data, "dGFuc3RhYWY=", "LOGIN: password sent");
	buf_wipe(&out);
	buf_init(&out, 1024);
	is_int(sasl_step(&s, "", 0, &out, &ei), ST_PROTO,
	    "LOGIN: third challenge refused");
	sasl_free(&s);
	ok(s.secret == NULL && s.user == NULL, "free clears the session");

	/* Prompts that say which they are win over the order... */
	buf_wipe(&out);
	buf_init(&out, 1024);
	st_clear(&ei);
	sasl_init(&s, MECH_LOGIN, "tim", "tanstaaf", NULL, 0, &ei);
	sasl_step(&s, "UGFzc3dvcmQ6", 12, &out, &ei);
	is_str(out.data, "dGFuc3RhYWY=", "LOGIN: password first if asked");
	sasl_free(&s);
	/* ...and unknown or empty prompts follow it. */
	buf_wipe(&out);
	buf_init(&out, 1024);
	sasl_init(&s, MECH_LOGIN, "tim", "tanstaaf", NULL, 0, &ei);
	sasl_step(&s, "", 0, &out, &ei);
	is_str(out.data, "dGlt", "LOGIN: empty first prompt -> user");
	buf_wipe(&out);
	buf_init(&out, 1024);
	sasl_step(&s, "!!", 2, &out, &ei);
	is_str(out.data, "dGFuc3RhYWY=", "LOGIN: odd second prompt -> password");
	is_int(ei.st, ST_OK, "LOGIN: odd prompts are not errors");
	sasl_free(&s);

	/* PLAIN expects nothing after its initial response. */
	buf_wipe(&out);
	buf_init(&out, 1024);
	sasl_init(&s, MECH_PLAIN, "tim", "x", NULL, 0, &ei);
	is_int(sasl_step(&s, "", 0, &out, &ei), ST_PROTO,
	    "PLAIN: a challenge is a protocol error");
	ok(strstr(ei.msg, "PLAIN") != NULL, "PLAIN: says which: %s", ei.msg);
	sasl_free(&s);
}

static void
test_errors(void)
{
	struct sasl s;

	/* {"status":"401","schemes":"bearer","scope":"https://mail.google.com/"} */
	is_int(challenge(&s, MECH_XOAUTH2,
	    "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRw"
	    "czovL21haWwuZ29vZ2xlLmNvbS8ifQ=="), ST_OK, "XOAUTH2 401: answered");
	is_int(out.len, 0, "XOAUTH2 401: empty response");
	is_int(s.fail, SASL_FAIL_TOKEN, "XOAUTH2 401: token rejected");
	is_str(s.fail_status, "401", "XOAUTH2 401: status kept");
	is_str(s.fail_scope, "https://mail.google.com/", "XOAUTH2: scope kept");
	is_str(s.fail_schemes, "bearer", "XOAUTH2: schemes kept");
	ok(strstr(s.fail_msg, "401") != NULL && strstr(s.fail_msg, "tok") ==
	    s.fail_msg + 7, "XOAUTH2 401: message: %s", s.fail_msg);
	is_int(sasl_step(&s, "", 0, &out, &ei), ST_PROTO,
	    "XOAUTH2: second challenge refused");
	sasl_free(&s);

	/* {"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"} */
	is_int(challenge(&s, MECH_XOAUTH2,
	    "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRw"
	    "czovL21haWwuZ29vZ2xlLmNvbS8ifQ=="), ST_OK, "XOAUTH2 400: answered");
	is_int(out.len, 0, "XOAUTH2 400: empty response");
	is_int(s.fail, SASL_FAIL_SCOPE, "XOAUTH2 400: wrong scope");
	ok(strstr(s.fail_msg, "scope") != NULL &&
	    strstr(s.fail_msg, "https://mail.google.com/") != NULL,
	    "XOAUTH2 400: message names the scope: %s", s.fail_msg);
	sasl_free(&s);

	/* {"status":401} as a number */
	is_int(challenge(&s, MECH_XOAUTH2, "eyJzdGF0dXMiOjQwMX0="), ST_OK,
	    "numeric status answered");
	is_int(s.fail, SASL_FAIL_TOKEN, "numeric 401: token rejected");
	sasl_free(&s);

	/* RFC 7628 section 4.3's error: status invalid_token. */
	is_int(challenge(&s, MECH_OAUTHBEARER,
	    "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3Bl"
	    "Iiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53"
	    "ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0="), ST_OK,
	    "OAUTHBEARER invalid_token: answered");
	is_str(out.data, "AQ==", "OAUTHBEARER: answer is one 0x01");
	is_int(s.fail, SASL_FAIL_TOKEN, "OAUTHBEARER: invalid_token");
	is_str(s.fail_status, "invalid_token", "OAUTHBEARER: status kept");
	is_str(s.fail_scope, "example_scope", "OAUTHBEARER: scope kept");
	sasl_free(&s);

	/* {"status":"insufficient_scope"} */
	challenge(&s, MECH_OAUTHBEARER,
	    "eyJzdGF0dXMiOiJpbnN1ZmZpY2llbnRfc2NvcGUifQ==");
	is_int(s.fail, SASL_FAIL_SCOPE, "OAUTHBEARER: insufficient_scope");
	sasl_free(&s);
	/* {"status":"invalid_request"} */
	challenge(&s, MECH_OAUTHBEARER,
	    "eyJzdGF0dXMiOiJpbnZhbGlkX3JlcXVlc3QifQ==");
	is_int(s.fail, SASL_FAIL_OTHER, "OAUTHBEARER: invalid_request");
	ok(strstr(s.fail_msg, "invalid_request") != NULL, "message: %s",
	    s.fail_msg);
	sasl_free(&s);

	/* Garbage still gets the mechanism's answer. */
	is_int(challenge(&s, MECH_XOAUTH2, "not base64!"), ST_OK,
	    "XOAUTH2 malformed base64: answered");
	is_int(out.len, 0, "XOAUTH2 malformed base64: empty response");
	is_int(s.fail, SASL_FAIL_OTHER, "XOAUTH2 malformed base64: other");
	ok(strstr(s.fail_msg, "base64") != NULL, "message: %s", s.fail_msg);
	is_int(ei.st, ST_OK, "XOAUTH2 malformed base64: errinfo untouched");
	sasl_free(&s);
	is_int(challenge(&s, MECH_OAUTHBEARER, "Zm9v="), ST_OK,
	    "OAUTHBEARER malformed base64: answered");
	is_str(out.data, "AQ==", "OAUTHBEARER malformed base64: 0x01");
	is_int(s.fail, SASL_FAIL_OTHER, "OAUTHBEARER malformed: other");
	sasl_free(&s);
	/* "not json at all" */
	is_int(challenge(&s, MECH_XOAUTH2, "bm90IGpzb24gYXQgYWxs"), ST_OK,
	    "XOAUTH2 non-JSON: answered");
	is_int(out.len, 0, "XOAUTH2 non-JSON: empty response");
	is_int(s.fail, SASL_FAIL_OTHER, "XOAUTH2 non-JSON: other");
	ok(strstr(s.fail_msg, "JSON") != NULL, "message: %s", s.fail_msg);
	sasl_free(&s);
	challenge(&s, MECH_OAUTHBEARER, "bm90IGpzb24gYXQgYWxs");
	is_str(out.data, "AQ==", "OAUTHBEARER non-JSON: 0x01");
	is_int(s.fail, SASL_FAIL_OTHER, "OAUTHBEARER non-JSON: other");
	sasl_free(&s);
	/* "[1,2]": JSON but not an object */
	challenge(&s, MECH_OAUTHBEARER, "WzEsMl0=");
	is_int(s.fail, SASL_FAIL_OTHER, "JSON array: other");
	sasl_free(&s);
	/* {"status":"4\n01\u0000"}: control bytes never reach messages */
	challenge(&s, MECH_XOAUTH2, "eyJzdGF0dXMiOiI0XG4wMSJ9");
	is_str(s.fail_status, "4?01", "control bytes in status neutralised");
	sasl_free(&s);
	/* empty challenge */
	challenge(&s, MECH_XOAUTH2, "");
	is_int(s.fail, SASL_FAIL_OTHER, "empty challenge: other");
	sasl_free(&s);
}

static void
test_init(void)
{
	struct sasl s;

	/* Never ST_USAGE (exit 64): nobody typed these on a command line. */
	st_clear(&ei);
	is_int(sasl_init(&s, MECH_XOAUTH2, NULL, "t", NULL, 0, &ei), ST_CONFIG,
	    "no user: configuration");
	sasl_free(&s);
	st_clear(&ei);
	is_int(sasl_init(&s, MECH_PLAIN, "u", "", NULL, 0, &ei), ST_CONFIG,
	    "empty password: configuration");
	sasl_free(&s);
	st_clear(&ei);
	is_int(sasl_init(&s, MECH_XOAUTH2, "u", "t\x01x", NULL, 0, &ei),
	    ST_AUTH, "0x01 in a token: authentication (a refresh may help)");
	ok(strstr(ei.msg, "t\x01x") == NULL && strstr(ei.msg, "token") != NULL,
	    "error names the field, not the secret: %s", ei.msg);
	sasl_free(&s);
	st_clear(&ei);
	is_int(sasl_init(&s, MECH_PLAIN, "u", "p\nw", NULL, 0, &ei),
	    ST_CONFIG, "LF in a password: configuration");
	ok(strstr(ei.msg, "p\nw") == NULL && strstr(ei.msg, "password") !=
	    NULL, "the text names the password, not its value: %s", ei.msg);
	sasl_free(&s);
	st_clear(&ei);
	is_int(sasl_init(&s, MECH_OAUTHBEARER, "u", "t", "h\x01", 1, &ei),
	    ST_CONFIG, "0x01 in the host");
	sasl_free(&s);
	st_clear(&ei);
	is_int(sasl_init(&s, MECH_PLAIN, "u\r\nQUIT", "t", NULL, 0, &ei),
	    ST_CONFIG, "CRLF in the user");
	sasl_free(&s);
	st_clear(&ei);
	is_int(sasl_init(&s, MECH_PLAIN, "u", "p\x01w", NULL, 0, &ei), ST_OK,
	    "0x01 allowed in a PLAIN password");
	sasl_free(&s);
	sasl_free(&s);
	ok(1, "double free is harmless");
	is_int(sasl_init(&s, (enum auth_mech)42, "u", "p", NULL, 0, &ei),
	    ST_CONFIG, "unknown mechanism");
	sasl_free(&s);

	/* A long (JWT-sized) token; limit of the caller's buffer respected. */
	{
		char tok[6001];
		struct buf small;

		memset(tok, 'a', sizeof(tok) - 1);
		tok[sizeof(tok) - 1] = '\0';
		ok(initial(MECH_XOAUTH2, "u@x", tok, NULL, 0) != NULL &&
		    out.len == b64_encoded_len(strlen("user=u@x\x01"
		    "auth=Bearer \x01\x01") + 6000), "6000-byte token");
		st_clear(&ei);
		sasl_init(&s, MECH_XOAUTH2, "u@x", tok, NULL, 0, &ei);
		buf_init(&small, 100);
		is_int(sasl_initial(&s, &small, &ei), ST_AUTH,
		    "a token too long to frame: authentication, not the "
		    "message's fault");
		ok(strstr(ei.msg, "aaaa") == NULL, "limit text has no token");
		ok(strstr(ei.msg, "too long") != NULL, "text: %s", ei.msg);
		buf_wipe(&small);
		sasl_free(&s);
		st_clear(&ei);
		sasl_init(&s, MECH_PLAIN, "u@x", tok, NULL, 0, &ei);
		buf_init(&small, 100);
		is_int(sasl_initial(&s, &small, &ei), ST_CONFIG,
		    "a password too long to frame: configuration");
		ok(small.secret, "the response buffer is marked secret");
		buf_wipe(&small);
		sasl_free(&s);
		st_clear(&ei);
		sasl_init(&s, MECH_LOGIN, "u@x", "pw", NULL, 0, &ei);
		buf_init(&small, 100);
		is_int(sasl_step(&s, "UGFzc3dvcmQ6", 12, &small, &ei), ST_OK,
		    "LOGIN password step");
		ok(small.secret, "a LOGIN answer's buffer is marked secret");
		buf_wipe(&small);
		sasl_free(&s);
	}
}

static void
test_framing(void)
{
	/* "AUTH XOAUTH2 " + IR + CRLF: 15 octets around the IR. */
	ok(sasl_inline(SASL_FRAME_SMTP, MECH_XOAUTH2, 496), "SMTP 511: inline");
	ok(sasl_inline(SASL_FRAME_SMTP, MECH_XOAUTH2, 497), "SMTP 512: inline");
	ok(!sasl_inline(SASL_FRAME_SMTP, MECH_XOAUTH2, 498),
	    "SMTP 513: continuation");
	/* "AUTH OAUTHBEARER " + IR + CRLF: 19 octets. */
	ok(sasl_inline(SASL_FRAME_SMTP, MECH_OAUTHBEARER, 493),
	    "SMTP OAUTHBEARER 512: inline");
	ok(!sasl_inline(SASL_FRAME_SMTP, MECH_OAUTHBEARER, 494),
	    "SMTP OAUTHBEARER 513: continuation");
	/* "AUTH PLAIN " + IR + CRLF: 13 octets. */
	ok(sasl_inline(SASL_FRAME_SMTP, MECH_PLAIN, 499), "SMTP PLAIN 512");
	ok(!sasl_inline(SASL_FRAME_SMTP, MECH_PLAIN, 500), "SMTP PLAIN 513");
	ok(sasl_inline(SASL_FRAME_POP3, MECH_XOAUTH2, 239), "POP3 254: inline");
	ok(sasl_inline(SASL_FRAME_POP3, MECH_XOAUTH2, 240), "POP3 255: inline");
	ok(!sasl_inline(SASL_FRAME_POP3, MECH_XOAUTH2, 241),
	    "POP3 256: continuation");
	ok(sasl_inline(SASL_FRAME_IMAP_IR, MECH_XOAUTH2, 100000),
	    "IMAP with SASL-IR: inline");
	ok(!sasl_inline(SASL_FRAME_IMAP, MECH_XOAUTH2, 8),
	    "IMAP without SASL-IR: continuation");
	ok(!sasl_inline(SASL_FRAME_SMTP, MECH_LOGIN, 0),
	    "no initial response: never inline");
	ok(!sasl_inline(SASL_FRAME_SMTP, MECH_XOAUTH2, (size_t)-1),
	    "huge length does not wrap");
	/* Google's vector (140 octets of base64) fits SMTP and POP3. */
	ok(sasl_inline(SASL_FRAME_POP3, MECH_XOAUTH2, 140), "Google's IR, POP3");

	is_str(sasl_mech_name(MECH_XOAUTH2), "XOAUTH2", "name XOAUTH2");
	is_str(sasl_mech_name(MECH_OAUTHBEARER), "OAUTHBEARER", "name");
	is_str(sasl_mech_name(MECH_PLAIN), "PLAIN", "name PLAIN");
	is_str(sasl_mech_name(MECH_LOGIN), "LOGIN", "name LOGIN");
	ok(sasl_mech_offered("LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN "
	    "OAUTHBEARER XOAUTH", MECH_XOAUTH2), "Gmail list offers XOAUTH2");
	ok(sasl_mech_offered("login plain", MECH_PLAIN), "case ignored");
	ok(!sasl_mech_offered("PLAIN-CLIENTTOKEN XOAUTH", MECH_PLAIN),
	    "PLAIN-CLIENTTOKEN is not PLAIN");
	ok(!sasl_mech_offered("XOAUTH", MECH_XOAUTH2), "XOAUTH is not XOAUTH2");
	ok(sasl_mech_offered("IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER",
	    MECH_OAUTHBEARER), "IMAP AUTH= words");
	ok(!sasl_mech_offered("IMAP4rev1 SASL-IR AUTH=PLAIN", MECH_LOGIN),
	    "IMAP list without LOGIN");
	ok(!sasl_mech_offered("", MECH_LOGIN), "empty list");
	ok(!sasl_mech_offered(NULL, MECH_LOGIN), "NULL list");
}

int
main(void)
{
	buf_init(&out, 1024);
	test_vectors();
	test_login();
	test_errors();
	test_init();
	test_framing();
	buf_wipe(&out);
	return tap_done();
}
