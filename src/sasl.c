/*
 * sasl.c: client steps of XOAUTH2, OAUTHBEARER, PLAIN and LOGIN.
 *
 *   RFC 4422  SASL framework
 *   RFC 4616  PLAIN: [authzid] NUL authcid NUL passwd
 *   RFC 5801  GS2 header ("n,a=authzid,") used by OAUTHBEARER
 *   RFC 7628  OAUTHBEARER: kvpairs separated by 0x01, error challenge
 *             answered with a single 0x01 (section 3.2.3)
 *   RFC 6750  bearer token error codes (invalid_token, insufficient_scope)
 *   Google's XOAUTH2 protocol page: "user=U\1auth=Bearer T\1\1", error
 *             challenge answered with an empty response
 *   draft-murchison-sasl-login: LOGIN prompts
 *
 * Framing limits: RFC 4954 section 4 (SMTP, 512 octets), RFC 5034
 * section 4 with RFC 2449 section 4 (POP3, 255 octets), RFC 4959 (IMAP
 * SASL-IR).
 *
 * Every intermediate buffer holding a credential is wiped before it is
 * freed; error texts name the mechanism and lengths, never contents.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "base64.h"
#include "sasl.h"

/* Access tokens (Microsoft's JWTs) run to several KB; be generous. */
#define SASL_RAW_MAX		(64 * 1024)
#define SASL_CHALLENGE_MAX	(16 * 1024)

static const char *const sasl_names[] = {
	[MECH_XOAUTH2] = "XOAUTH2",
	[MECH_OAUTHBEARER] = "OAUTHBEARER",
	[MECH_PLAIN] = "PLAIN",
	[MECH_LOGIN] = "LOGIN",
};

static bool
sasl_mech_valid(enum auth_mech m)
{
	return (unsigned)m < sizeof(sasl_names) / sizeof(sasl_names[0]) &&
	    sasl_names[m] != NULL;
}

const char *
sasl_mech_name(enum auth_mech mech)
{
	return sasl_mech_valid(mech) ? sasl_names[mech] : "UNKNOWN";
}

static bool
sasl_is_oauth(enum auth_mech m)
{
	return m == MECH_XOAUTH2 || m == MECH_OAUTHBEARER;
}

/*
 * A field may not hold CR or LF (it could never be typed into a login
 * and smells of injection), nor 0x01 in the OAuth mechanisms, where it is
 * the separator.
 */
static bool
sasl_field_ok(const char *s, bool oauth)
{
	for (; *s != '\0'; s++)
		if (*s == '\r' || *s == '\n' || (oauth && *s == '\x01'))
			return false;
	return true;
}

static char *
sasl_strdup(const char *s, struct errinfo *ei)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		st_errno(ei, ST_SYS, "out of memory");
	return p;
}

enum status
sasl_init(struct sasl *s, enum auth_mech mech, const char *user,
    const char *secret, const char *host, unsigned port, struct errinfo *ei)
{
	enum status sst;
	bool oauth;

	memset(s, 0, sizeof(*s));
	s->mech = mech;
	/*
	 * A credential that cannot be framed is nobody's typing error on
	 * the command line (ST_USAGE) and not the message's fault: the
	 * user name, the host and a password come from the configuration
	 * (ST_CONFIG: fix it); an access token comes from the provider
	 * (ST_AUTH: a refresh or a new login may give a usable one).
	 */
	if (!sasl_mech_valid(mech))
		return st_error(ei, ST_CONFIG, "unknown SASL mechanism %d",
		    (int)mech);
	oauth = sasl_is_oauth(mech);
	sst = oauth ? ST_AUTH : ST_CONFIG;
	if (user == NULL || *user == '\0')
		return st_error(ei, ST_CONFIG, "%s: no user name",
		    sasl_names[mech]);
	if (secret == NULL || *secret == '\0')
		return st_error(ei, sst, "%s: no %s", sasl_names[mech],
		    oauth ? "access token" : "password");
	if (!sasl_field_ok(user, oauth))
		return st_error(ei, ST_CONFIG, "%s: the user name holds a "
		    "control character (CR, LF%s) that cannot be sent",
		    sasl_names[mech], oauth ? " or 0x01" : "");
	if (!sasl_field_ok(secret, oauth))
		return st_error(ei, sst, "%s: the %s holds a control "
		    "character (CR, LF%s) that cannot be sent%s",
		    sasl_names[mech], oauth ? "access token" : "password",
		    oauth ? " or 0x01" : "", oauth ? "" :
		    ": check password_command's output");
	if (host != NULL && !sasl_field_ok(host, true))
		return st_error(ei, ST_CONFIG,
		    "%s: the host name holds a control character",
		    sasl_names[mech]);
	if ((s->user = sasl_strdup(user, ei)) == NULL ||
	    (s->secret = sasl_strdup(secret, ei)) == NULL ||
	    (host != NULL && (s->host = sasl_strdup(host, ei)) == NULL)) {
		sasl_free(s);
		return ST_SYS;
	}
	s->port = port;
	return ST_OK;
}

static void
sasl_wipe_str(char **p)
{
	if (*p != NULL) {
		st_wipe(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

void
sasl_free(struct sasl *s)
{
	if (s == NULL)
		return;
	sasl_wipe_str(&s->secret);
	sasl_wipe_str(&s->user);
	sasl_wipe_str(&s->host);
	s->step = 0;
}

/* Append authzid with RFC 5801's escaping: ',' -> "=2C", '=' -> "=3D". */
static enum status
sasl_add_saslname(struct buf *b, const char *s, struct errinfo *ei)
{
	enum status st = ST_OK;

	for (; *s != '\0' && st == ST_OK; s++) {
		if (*s == ',')
			st = buf_add(b, "=2C", 3, ei);
		else if (*s == '=')
			st = buf_add(b, "=3D", 3, ei);
		else
			st = buf_add(b, s, 1, ei);
	}
	return st;
}

static enum status
sasl_build_initial(const struct sasl *s, struct buf *raw, struct errinfo *ei)
{
	enum status st;

	switch (s->mech) {
	case MECH_XOAUTH2:
		if ((st = buf_adds(raw, "user=", ei)) != ST_OK ||
		    (st = buf_adds(raw, s->user, ei)) != ST_OK ||
		    (st = buf_adds(raw, "\x01" "auth=Bearer ", ei)) != ST_OK ||
		    (st = buf_adds(raw, s->secret, ei)) != ST_OK)
			return st;
		return buf_add(raw, "\x01\x01", 2, ei);
	case MECH_OAUTHBEARER:
		if ((st = buf_adds(raw, "n,a=", ei)) != ST_OK ||
		    (st = sasl_add_saslname(raw, s->user, ei)) != ST_OK ||
		    (st = buf_add(raw, ",\x01", 2, ei)) != ST_OK)
			return st;
		if (s->host != NULL &&
		    (st = buf_printf(raw, ei, "host=%s\x01", s->host)) != ST_OK)
			return st;
		if (s->port != 0 &&
		    (st = buf_printf(raw, ei, "port=%u\x01", s->port)) != ST_OK)
			return st;
		if ((st = buf_adds(raw, "auth=Bearer ", ei)) != ST_OK ||
		    (st = buf_adds(raw, s->secret, ei)) != ST_OK)
			return st;
		return buf_add(raw, "\x01\x01", 2, ei);
	case MECH_PLAIN:
		/* Empty authzid: act as the authenticated user. */
		if ((st = buf_add(raw, "", 1, ei)) != ST_OK ||
		    (st = buf_adds(raw, s->user, ei)) != ST_OK ||
		    (st = buf_add(raw, "", 1, ei)) != ST_OK)
			return st;
		return buf_adds(raw, s->secret, ei);
	case MECH_LOGIN:
		return ST_OK;
	}
	return st_error(ei, ST_CONFIG, "unknown SASL mechanism");
}

enum status
sasl_initial(struct sasl *s, struct buf *out, struct errinfo *ei)
{
	struct errinfo tmp;
	struct buf raw;
	enum status st;

	if (s->user == NULL || s->secret == NULL)
		return st_error(ei, ST_USAGE, "SASL session not initialised");
	buf_set_secret(out);
	buf_init_secret(&raw, SASL_RAW_MAX);
	st_clear(&tmp);
	if ((st = sasl_build_initial(s, &raw, &tmp)) == ST_OK && raw.len > 0)
		st = b64_encode(out, raw.data, raw.len, &tmp);
	if (st == ST_LIMIT) {
		/*
		 * Too long to send is the credential's doing, not the
		 * message's (ST_LIMIT would say EX_DATAERR): a password is
		 * configuration, a token may be replaced by a shorter one.
		 */
		st = st_error(ei, sasl_is_oauth(s->mech) ? ST_AUTH : ST_CONFIG,
		    "%s: the %s (%zu bytes) makes a response too long to send",
		    sasl_names[s->mech], sasl_is_oauth(s->mech) ?
		    "access token" : "password", strlen(s->secret));
	} else if (st != ST_OK)
		st = st_error(ei, st, "%s", tmp.msg);
	if (st != ST_OK)
		st_context(ei, "%s initial response", sasl_names[s->mech]);
	buf_wipe(&raw);
	return st;
}

/* Copy a JSON string or integer member as printable ASCII, truncated. */
static void
sasl_json_field(json_t *obj, const char *key, char *dst, size_t dstsz)
{
	json_t *v;
	const char *p = NULL;
	char num[32];
	size_t i;

	dst[0] = '\0';
	if ((v = json_object_get(obj, key)) == NULL)
		return;
	if (json_is_string(v))
		p = json_string_value(v);
	else if (json_is_integer(v)) {
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
		    json_integer_value(v));
		p = num;
	}
	if (p == NULL)
		return;
	for (i = 0; p[i] != '\0' && i + 1 < dstsz; i++)
		dst[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
	dst[i] = '\0';
}

static enum sasl_fail
sasl_classify(const char *status)
{
	if (strcmp(status, "401") == 0 || strcmp(status, "invalid_token") == 0)
		return SASL_FAIL_TOKEN;
	if (strcmp(status, "400") == 0 ||
	    strcmp(status, "insufficient_scope") == 0)
		return SASL_FAIL_SCOPE;
	return SASL_FAIL_OTHER;
}

/*
 * Record what an OAuth error challenge says.  Never fails: whatever the
 * server sent, the dialogue must go on to its final reply.
 */
static void
sasl_note_error(struct sasl *s, const char *chal, size_t len)
{
	struct buf json;
	struct errinfo scratch;
	json_t *root = NULL;
	json_error_t jerr;

	s->fail_status[0] = s->fail_scope[0] = s->fail_schemes[0] = '\0';
	s->fail = SASL_FAIL_OTHER;
	buf_init(&json, SASL_CHALLENGE_MAX);
	st_clear(&scratch);
	if (b64_decode(&json, chal, len, B64_WS_REFUSE, &scratch) != ST_OK) {
		snprintf(s->fail_msg, sizeof(s->fail_msg),
		    "server's error challenge is not valid base64");
		goto done;
	}
	root = json_loadb(json.data != NULL ? json.data : "", json.len, 0,
	    &jerr);
	if (root == NULL || !json_is_object(root)) {
		snprintf(s->fail_msg, sizeof(s->fail_msg),
		    "server's error challenge is not a JSON object");
		goto done;
	}
	sasl_json_field(root, "status", s->fail_status,
	    sizeof(s->fail_status));
	sasl_json_field(root, "scope", s->fail_scope, sizeof(s->fail_scope));
	sasl_json_field(root, "schemes", s->fail_schemes,
	    sizeof(s->fail_schemes));
	s->fail = sasl_classify(s->fail_status);
	switch (s->fail) {
	case SASL_FAIL_TOKEN:
		snprintf(s->fail_msg, sizeof(s->fail_msg),
		    "access token rejected (status %s)", s->fail_status);
		break;
	case SASL_FAIL_SCOPE:
		snprintf(s->fail_msg, sizeof(s->fail_msg),
		    "access token lacks the required scope (status %s%s%s)",
		    s->fail_status, s->fail_scope[0] != '\0' ?
		    ", server wants scope " : "", s->fail_scope);
		break;
	default:
		snprintf(s->fail_msg, sizeof(s->fail_msg),
		    "authentication refused (status %s)",
		    s->fail_status[0] != '\0' ? s->fail_status : "unknown");
		break;
	}
done:
	json_decref(root);
	buf_free(&json);
}

/* Which LOGIN prompt is this?  1: user name, 2: password, 0: unknown. */
static int
sasl_login_prompt(const char *chal, size_t len)
{
	struct buf p;
	struct errinfo scratch;
	int kind = 0;

	buf_init(&p, 256);
	st_clear(&scratch);
	if (b64_decode(&p, chal, len, B64_WS_REFUSE, &scratch) == ST_OK &&
	    p.data != NULL) {
		if (strncasecmp(p.data, "user", 4) == 0)
			kind = 1;
		else if (strncasecmp(p.data, "pass", 4) == 0)
			kind = 2;
	}
	buf_free(&p);
	return kind;
}

enum status
sasl_step(struct sasl *s, const char *challenge, size_t len,
    struct buf *out, struct errinfo *ei)
{
	const char *answer;
	int kind;

	if (s->user == NULL || s->secret == NULL)
		return st_error(ei, ST_USAGE, "SASL session not initialised");
	switch (s->mech) {
	case MECH_LOGIN:
		if (s->step >= 2)
			return st_error(ei, ST_PROTO,
			    "LOGIN: unexpected third challenge");
		/* Trust the prompt's words, else the usual order. */
		kind = sasl_login_prompt(challenge, len);
		if (kind == 0)
			kind = s->step == 0 ? 1 : 2;
		s->step++;
		answer = kind == 1 ? s->user : s->secret;
		buf_set_secret(out);
		return b64_encode(out, answer, strlen(answer), ei);
	case MECH_XOAUTH2:
	case MECH_OAUTHBEARER:
		if (s->step >= 1)
			return st_error(ei, ST_PROTO,
			    "%s: unexpected challenge after the error "
			    "challenge", sasl_names[s->mech]);
		s->step++;
		sasl_note_error(s, challenge, len);
		if (s->mech == MECH_XOAUTH2)
			return ST_OK;
		return buf_add(out, "AQ==", 4, ei);
	case MECH_PLAIN:
		return st_error(ei, ST_PROTO,
		    "PLAIN: unexpected challenge after the initial response");
	}
	return st_error(ei, ST_USAGE, "unknown SASL mechanism");
}

bool
sasl_inline(enum sasl_framing f, enum auth_mech mech, size_t b64len)
{
	size_t fixed, max;

	if (b64len == 0 || !sasl_mech_valid(mech))
		return false;
	switch (f) {
	case SASL_FRAME_IMAP_IR:
		return true;
	case SASL_FRAME_IMAP:
		return false;
	case SASL_FRAME_SMTP:
		max = SASL_SMTP_LINE_MAX;
		break;
	case SASL_FRAME_POP3:
		max = SASL_POP3_LINE_MAX;
		break;
	default:
		return false;
	}
	/* "AUTH " MECH " " IR CRLF */
	fixed = 5 + strlen(sasl_names[mech]) + 1 + 2;
	return b64len <= max - fixed;
}

bool
sasl_mech_offered(const char *list, enum auth_mech mech)
{
	const char *name, *w, *e;
	size_t n, wl;

	if (list == NULL || !sasl_mech_valid(mech))
		return false;
	name = sasl_names[mech];
	n = strlen(name);
	for (w = list; *w != '\0'; w = e) {
		while (*w == ' ' || *w == '\t')
			w++;
		for (e = w; *e != '\0' && *e != ' ' && *e != '\t'; e++)
			;
		wl = (size_t)(e - w);
		if (wl > 5 && strncasecmp(w, "AUTH=", 5) == 0) {
			w += 5;
			wl -= 5;
		}
		if (wl == n && strncasecmp(w, name, n) == 0)
			return true;
	}
	return false;
}
