/*
 * conf.c: read, merge and check the configuration.
 *
 * The only file that includes libinih.  Loading has two passes.  First
 * the files are read into raw settings, each value kept with the file
 * and line that set it, and checked on its own (syntax, ranges, enum
 * names).  Then every account is resolved (its own section, then
 * [defaults], then its provider's defaults) and checked as a whole
 * (tls = none on a remote host, auth against provider, keys that must
 * come in pairs).  Every error names the file and line to fix.
 *
 * inih's handler gets no line number in Debian's build, so we feed it
 * through our own reader, which reads one whole line per call and counts
 * them; with multi-line values off, the handler always runs for the
 * line the reader just returned.  The reader also sees section headers,
 * which inih does not report, so an account with no keys of its own
 * still exists and has a file:line.
 */
#include "config.h"

#include <sys/types.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <ini.h>

#include "buf.h"
#include "conf.h"

#define CONF_MAX_LINE		4096	/* longest line, newline excluded */
#define CONF_MAX_NAME		48	/* longest account name */
#define CONF_MAX_ACCOUNTS	1000
#define CONF_MAX_TIMEOUT	3600
#define CONF_MAX_QUEUE_AGE	(365L * 86400)
#define CONF_MAX_SECRET		4096	/* client_secret_file size limit */
#define CONF_MAX_PATH		4096

#define MS_LOGIN	"https://login.microsoftonline.com/"

enum key {
	/* global keys: [defaults] only */
	K_ACCOUNT, K_QUEUE, K_QUEUE_DIR, K_STATE_DIR, K_LOG, K_ALIASES,
	K_MAX_QUEUE_AGE, K_BOUNCE_TO,
	/* account keys */
	K_PROVIDER, K_USER, K_FROM,
	K_SMTP_HOST, K_SMTP_PORT, K_SMTP_TLS,
	K_IMAP_HOST, K_IMAP_PORT, K_IMAP_TLS,
	K_POP_HOST, K_POP_PORT, K_POP_TLS,
	K_AUTH, K_CLIENT_ID, K_CLIENT_SECRET, K_CLIENT_SECRET_FILE,
	K_AUTH_ENDPOINT, K_TOKEN_ENDPOINT, K_DEVICE_ENDPOINT,
	K_REVOKE_ENDPOINT, K_SCOPE, K_TENANT,
	K_SERVICE_ACCOUNT_KEY, K_IMPERSONATE, K_PASSWORD_COMMAND,
	K_CA_FILE, K_DOMAIN, K_TIMEOUT, K_REWRITE_FROM, K_DELIVER,
	K__COUNT
};
#define K_FIRST_ACCOUNT K_PROVIDER

/* How a value is checked on its own. */
enum vtype {
	T_NAME, T_QUEUE, T_PATH, T_LOG, T_DURATION, T_ADDR, T_EMAIL,
	T_PROVIDER, T_FROM, T_HOST, T_PORT, T_TLS, T_AUTH, T_WORD, T_SECRET,
	T_URL, T_TEXT, T_TENANT, T_TIMEOUT, T_REWRITE, T_DELIVER
};

#define P_GOOGLE	(1u << PROV_GOOGLE)
#define P_MICROSOFT	(1u << PROV_MICROSOFT)
#define P_OAUTH2	(1u << PROV_OAUTH2)
#define P_PASSWORD	(1u << PROV_PASSWORD)
#define P_OAUTH		(P_GOOGLE | P_MICROSOFT | P_OAUTH2)
#define P_ALL		(P_OAUTH | P_PASSWORD)

static const struct keydef {
	const char *name;
	enum vtype type;
	unsigned providers;	/* account keys: the providers it applies to */
} keys[K__COUNT] = {
	[K_ACCOUNT] = { "account", T_NAME, 0 },
	[K_QUEUE] = { "queue", T_QUEUE, 0 },
	[K_QUEUE_DIR] = { "queue_dir", T_PATH, 0 },
	[K_STATE_DIR] = { "state_dir", T_PATH, 0 },
	[K_LOG] = { "log", T_LOG, 0 },
	[K_ALIASES] = { "aliases", T_PATH, 0 },
	[K_MAX_QUEUE_AGE] = { "max_queue_age", T_DURATION, 0 },
	[K_BOUNCE_TO] = { "bounce_to", T_ADDR, 0 },
	[K_PROVIDER] = { "provider", T_PROVIDER, P_ALL },
	[K_USER] = { "user", T_ADDR, P_ALL },
	[K_FROM] = { "from", T_FROM, P_ALL },
	[K_SMTP_HOST] = { "smtp_host", T_HOST, P_ALL },
	[K_SMTP_PORT] = { "smtp_port", T_PORT, P_ALL },
	[K_SMTP_TLS] = { "smtp_tls", T_TLS, P_ALL },
	[K_IMAP_HOST] = { "imap_host", T_HOST, P_ALL },
	[K_IMAP_PORT] = { "imap_port", T_PORT, P_ALL },
	[K_IMAP_TLS] = { "imap_tls", T_TLS, P_ALL },
	[K_POP_HOST] = { "pop_host", T_HOST, P_ALL },
	[K_POP_PORT] = { "pop_port", T_PORT, P_ALL },
	[K_POP_TLS] = { "pop_tls", T_TLS, P_ALL },
	[K_AUTH] = { "auth", T_AUTH, P_ALL },
	[K_CLIENT_ID] = { "client_id", T_WORD, P_OAUTH },
	[K_CLIENT_SECRET] = { "client_secret", T_SECRET, P_OAUTH },
	[K_CLIENT_SECRET_FILE] = { "client_secret_file", T_PATH, P_OAUTH },
	[K_AUTH_ENDPOINT] = { "auth_endpoint", T_URL, P_OAUTH },
	[K_TOKEN_ENDPOINT] = { "token_endpoint", T_URL, P_OAUTH },
	[K_DEVICE_ENDPOINT] = { "device_endpoint", T_URL, P_OAUTH },
	[K_REVOKE_ENDPOINT] = { "revoke_endpoint", T_URL, P_OAUTH },
	[K_SCOPE] = { "scope", T_TEXT, P_OAUTH },
	[K_TENANT] = { "tenant", T_TENANT, P_MICROSOFT },
	[K_SERVICE_ACCOUNT_KEY] = { "service_account_key", T_PATH, P_GOOGLE },
	[K_IMPERSONATE] = { "impersonate", T_EMAIL, P_GOOGLE },
	[K_PASSWORD_COMMAND] = { "password_command", T_TEXT, P_PASSWORD },
	[K_CA_FILE] = { "ca_file", T_PATH, P_ALL },
	[K_DOMAIN] = { "domain", T_HOST, P_ALL },
	[K_TIMEOUT] = { "timeout", T_TIMEOUT, P_ALL },
	[K_REWRITE_FROM] = { "rewrite_from", T_REWRITE, P_ALL },
	[K_DELIVER] = { "deliver", T_DELIVER, P_ALL },
};

/* Names people bring from msmtp and friends. */
static const struct {
	const char *from, *to;
} key_hints[] = {
	{ "host", "smtp_host" }, { "port", "smtp_port" },
	{ "tls", "smtp_tls" }, { "tls_starttls", "smtp_tls" },
	{ "password", "password_command" },
	{ "passwordeval", "password_command" },
	{ "logfile", "log" }, { "syslog", "log" },
	{ "tls_trust_file", "ca_file" }, { "cafile", "ca_file" },
	{ "maildir", "deliver" }, { "mda", "deliver" },
	{ "tenant_id", "tenant" }, { "secret", "client_secret" },
};

static const char *const provider_names[] = {
	[PROV_GOOGLE] = "google", [PROV_MICROSOFT] = "microsoft",
	[PROV_OAUTH2] = "oauth2", [PROV_PASSWORD] = "password",
};
static const char *const tls_names[] = {
	[TLSM_STARTTLS] = "starttls", [TLSM_TLS] = "tls", [TLSM_NONE] = "none",
};
static const char *const mech_names[] = {
	[MECH_XOAUTH2] = "xoauth2", [MECH_OAUTHBEARER] = "oauthbearer",
	[MECH_PLAIN] = "plain", [MECH_LOGIN] = "login",
};
static const char *const queue_names[] = {
	[QUEUE_ON_FAILURE] = "on-failure", [QUEUE_ALWAYS] = "always",
	[QUEUE_NEVER] = "never",
};
static const char *const rewrite_names[] = {
	[REWRITE_AUTO] = "auto", [REWRITE_NEVER] = "never",
	[REWRITE_ALWAYS] = "always",
};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* One key as set in one section: the value and where it was set. */
struct setting {
	char *value;		/* NULL: not set; "": unset here */
	const char *file;	/* one of loader.files */
	int line;
};

struct section {
	char *name;
	const char *file;	/* first definition */
	int line;
	struct setting set[K__COUNT];
};

struct loader {
	struct errinfo *ei;
	bool failed;
	FILE *fp;
	const char *file;	/* the file being read */
	int lineno;		/* its current line */
	struct setting defaults[K__COUNT];
	struct section *sects;
	size_t nsects;
	char *files[2];
	size_t nfiles;
};

static const char *test_system_path;
static long test_uid = -1;
static int test_secure = -1;

void
conf_set_test_overrides(const char *system_path, long uid)
{
	test_system_path = system_path;
	test_uid = uid;
}

void
conf_set_test_secure(int secure)
{
	test_secure = secure;
}

/*
 * A set-ID process (AT_SECURE: the kernel says its invoker may not be
 * trusted) takes no path from the environment and reads no personal
 * file: HOME, XDG_* and BEARMAIL_CONFIG belong to whoever started it.
 * A program that drops its privilege and wants to honour them passes
 * the path itself (explicit_path).
 */
static bool
conf_secure(void)
{
	if (test_secure >= 0)
		return test_secure != 0;
	return getauxval(AT_SECURE) != 0;
}

/* ---- small helpers ---------------------------------------------------- */

static int
name_lookup(const char *const *names, size_t n, const char *v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], v) == 0)
			return (int)i;
	return -1;
}

static bool
sdup(char **dst, const char *s, struct errinfo *ei)
{
	if (s == NULL) {
		*dst = NULL;
		return true;
	}
	if ((*dst = strdup(s)) == NULL) {
		st_errno(ei, ST_SYS, "out of memory");
		return false;
	}
	return true;
}

/* Concatenate up to three strings into a new one, or NULL (ei set). */
static char *
str3(const char *a, const char *b, const char *c, struct errinfo *ei)
{
	struct buf b3;

	buf_init(&b3, 3 * CONF_MAX_PATH);
	if (buf_adds(&b3, a, ei) != ST_OK || buf_adds(&b3, b, ei) != ST_OK ||
	    buf_adds(&b3, c != NULL ? c : "", ei) != ST_OK) {
		buf_free(&b3);
		return NULL;
	}
	return buf_steal(&b3, ei);
}

static void
free_secret(char **p)
{
	if (*p != NULL) {
		st_wipe(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

/* No control characters; with nospace, no spaces either. */
static bool
clean(const char *s, bool nospace)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f || (nospace && c == ' '))
			return false;
	}
	return true;
}

/* Digits only, in [min, max]. */
static bool
parse_ulong(const char *s, unsigned long min, unsigned long max,
    unsigned long *out)
{
	unsigned long v;
	char *end;

	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool
valid_hostname(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 253 || s[0] == '.' || s[0] == '-')
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '.' && c != '-' && c != '_' && c != ':')
			return false;
	}
	return true;
}

static bool
valid_account_name(const char *s)
{
	size_t len = strlen(s), i;

	if (len == 0 || len > CONF_MAX_NAME || !isalnum((unsigned char)s[0]))
		return false;
	for (i = 1; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && strchr("._@+-", c) == NULL)
			return false;
	}
	return true;
}

/* Edit distance, for "did you mean"; names are short. */
static size_t
distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t row[64], prev, tmp;

	if (la >= NELEM(row) || lb >= NELEM(row))
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t best = prev +
			    (tolower((unsigned char)a[i - 1]) !=
			    tolower((unsigned char)b[j - 1]));
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			tmp = row[j];
			row[j] = best;
			prev = tmp;
		}
	}
	return row[lb];
}

static const char *
key_suggest(const char *name)
{
	size_t i, d, best = SIZE_MAX;
	const char *hint = NULL;

	for (i = 0; i < NELEM(key_hints); i++)
		if (strcasecmp(name, key_hints[i].from) == 0)
			return key_hints[i].to;
	for (i = 0; i < K__COUNT; i++) {
		d = distance(name, keys[i].name);
		if (d < best) {
			best = d;
			hint = keys[i].name;
		}
	}
	/* Only a near miss: a wild guess confuses more than it helps. */
	return best <= 2 && best < strlen(name) ? hint : NULL;
}

static int
key_lookup(const char *name)
{
	int i;

	for (i = 0; i < K__COUNT; i++)
		if (strcmp(keys[i].name, name) == 0)
			return i;
	return -1;
}

static bool
key_global(int k)
{
	return k < K_FIRST_ACCOUNT;
}

/* ---- public little helpers ------------------------------------------- */

const char *
conf_provider_name(enum provider p)
{
	return (unsigned)p < NELEM(provider_names) ? provider_names[p] : "?";
}

const char *
conf_mech_name(enum auth_mech m)
{
	return (unsigned)m < NELEM(mech_names) ? mech_names[m] : "?";
}

const char *
conf_tls_name(enum tls_mode t)
{
	return (unsigned)t < NELEM(tls_names) ? tls_names[t] : "?";
}

bool
conf_parse_duration(const char *s, time_t *out)
{
	unsigned long v, mult;
	char *end;

	if (s == NULL || !isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0)
		return false;
	switch (*end) {
	case '\0':
	case 's':
		mult = 1;
		break;
	case 'm':
		mult = 60;
		break;
	case 'h':
		mult = 3600;
		break;
	case 'd':
		mult = 86400;
		break;
	default:
		return false;
	}
	if (*end != '\0' && end[1] != '\0')
		return false;
	/* 2^31-1 keeps the product meaningful for a 32-bit time_t too. */
	if (v > INT32_MAX / mult)
		return false;
	*out = (time_t)(v * mult);
	return true;
}

bool
conf_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	char tmp[INET6_ADDRSTRLEN + 1];
	size_t len;

	if (host == NULL)
		return false;
	len = strlen(host);
	if (strcasecmp(host, "localhost") == 0 ||
	    strcasecmp(host, "localhost.") == 0)
		return true;
	if (len > 2 && host[0] == '[' && host[len - 1] == ']') {
		if (len - 2 >= sizeof(tmp))
			return false;
		memcpy(tmp, host + 1, len - 2);
		tmp[len - 2] = '\0';
		host = tmp;
	}
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		    (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return false;
}

const char *
conf_domain(const struct account *acct)
{
	static char fqdn[256];
	static bool done;
	struct addrinfo hints, *res = NULL;
	char host[256];
	size_t len;

	if (acct != NULL && acct->domain != NULL)
		return acct->domain;
	if (done)
		return fqdn[0] != '\0' ? fqdn : NULL;
	done = true;
	if (gethostname(host, sizeof(host)) != 0)
		return NULL;
	host[sizeof(host) - 1] = '\0';
	/* A name with a dot is taken as it is: no DNS query needed. */
	if (strchr(host, '.') == NULL) {
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_CANONNAME;
		if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
			return NULL;
		if (res->ai_canonname == NULL ||
		    strlen(res->ai_canonname) >= sizeof(host) ||
		    strchr(res->ai_canonname, '.') == NULL) {
			freeaddrinfo(res);
			return NULL;
		}
		memcpy(host, res->ai_canonname, strlen(res->ai_canonname) + 1);
		freeaddrinfo(res);
	}
	len = strlen(host);
	if (len > 0 && host[len - 1] == '.')
		host[--len] = '\0';
	if (!valid_hostname(host, len) || strchr(host, '.') == NULL)
		return NULL;
	memcpy(fqdn, host, len + 1);
	return fqdn;
}

/* ---- checking one value ---------------------------------------------- */

/* A "*@domain" pattern or a "local@domain" address, trimmed, no spaces. */
static bool
check_from_entry(const char *s, size_t len)
{
	const char *at;
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f ||
		    s[i] == '<' || s[i] == '>')
			return false;
	if ((at = memrchr(s, '@', len)) == NULL || at == s)
		return false;
	len -= (size_t)(at + 1 - s);
	return valid_hostname(at + 1, len) && memchr(at + 1, ':', len) == NULL;
}

/*
 * Walk a comma-separated `from` list; fn gets each trimmed entry and
 * stops the walk by returning true.  Empty entries are passed on too,
 * so that the check can refuse them.
 */
static bool
from_walk(const char *list, bool (*fn)(const char *, size_t, void *),
    void *arg)
{
	const char *p = list, *e, *t;

	for (;;) {
		e = strchr(p, ',');
		t = e != NULL ? e : p + strlen(p);
		while (p < t && (*p == ' ' || *p == '\t'))
			p++;
		while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if (fn(p, (size_t)(t - p), arg))
			return true;
		if (e == NULL)
			return false;
		p = e + 1;
	}
}

static bool
from_bad_entry(const char *s, size_t len, void *arg)
{
	(void)arg;
	return len == 0 || !check_from_entry(s, len);
}

static bool
check_url(const char *v, char *why, size_t whysz)
{
	const char *p, *host, *hend, *rest;
	size_t alen;
	unsigned long port;
	char hostbuf[256], portbuf[8];
	bool https;

	if (strncasecmp(v, "https://", 8) == 0) {
		https = true;
		p = v + 8;
	} else if (strncasecmp(v, "http://", 7) == 0) {
		https = false;
		p = v + 7;
	} else {
		snprintf(why, whysz, "'%s' must start with https://", v);
		return false;
	}
	if (!clean(v, true)) {
		snprintf(why, whysz, "spaces or control characters in URL");
		return false;
	}
	alen = strcspn(p, "/?#");
	if (memchr(p, '@', alen) != NULL) {
		snprintf(why, whysz, "'%s': user information is not allowed in "
		    "the URL", v);
		return false;
	}
	if (alen > 0 && p[0] == '[') {
		if ((hend = memchr(p, ']', alen)) == NULL)
			goto bad;
		host = p;
		rest = hend + 1;	/* keep the brackets for the check */
		hend++;
	} else {
		host = p;
		hend = memchr(p, ':', alen);
		if (hend == NULL)
			hend = p + alen;
		rest = hend;
	}
	if (hend == host || (size_t)(hend - host) >= sizeof(hostbuf))
		goto bad;
	memcpy(hostbuf, host, (size_t)(hend - host));
	hostbuf[hend - host] = '\0';
	if (rest < p + alen) {
		size_t plen = (size_t)(p + alen - rest) - 1;
		if (*rest != ':' || plen == 0 || plen >= sizeof(portbuf))
			goto bad;
		memcpy(portbuf, rest + 1, plen);
		portbuf[plen] = '\0';
		if (!parse_ulong(portbuf, 1, 65535, &port))
			goto bad;
	}
	if (hostbuf[0] != '[' && !valid_hostname(hostbuf, strlen(hostbuf)))
		goto bad;
	if (!https && !conf_is_loopback(hostbuf)) {
		snprintf(why, whysz, "'%s': http:// is allowed only for a "
		    "loopback host; use https://", v);
		return false;
	}
	return true;
bad:
	snprintf(why, whysz, "'%s' is not a valid URL", v);
	return false;
}

static bool
check_path(const char *v)
{
	return (v[0] == '/' || (v[0] == '~' && v[1] == '/')) && clean(v, false);
}

/*
 * Check a non-empty value on its own.  False with the reason in why;
 * the reason never repeats a secret.
 */
static bool
check_value(int k, const char *v, char *why, size_t whysz)
{
	unsigned long n;
	time_t d;

	switch (keys[k].type) {
	case T_NAME:
		if (valid_account_name(v))
			return true;
		snprintf(why, whysz, "'%s' is not a valid account name", v);
		return false;
	case T_QUEUE:
		if (name_lookup(queue_names, NELEM(queue_names), v) >= 0)
			return true;
		snprintf(why, whysz, "'%s' is not one of on-failure, always, "
		    "never", v);
		return false;
	case T_PATH:
		if (check_path(v))
			return true;
		snprintf(why, whysz, "'%s' is not an absolute path (or one "
		    "starting with ~/)", v);
		return false;
	case T_LOG:
		if (strcmp(v, "syslog") == 0 || strcmp(v, "stderr") == 0 ||
		    check_path(v))
			return true;
		snprintf(why, whysz, "'%s' is not syslog, stderr or an "
		    "absolute path", v);
		return false;
	case T_DURATION:
		if (conf_parse_duration(v, &d) && d > 0 &&
		    d <= CONF_MAX_QUEUE_AGE)
			return true;
		snprintf(why, whysz, "'%s' is not a duration between 1s and "
		    "365d (like 5d, 12h, 30m, 45s)", v);
		return false;
	case T_ADDR:
		if (clean(v, true))
			return true;
		snprintf(why, whysz, "spaces or control characters in '%s'", v);
		return false;
	case T_EMAIL:
		if (check_from_entry(v, strlen(v)) && v[0] != '*')
			return true;
		snprintf(why, whysz, "'%s' is not an address like "
		    "user@example.com", v);
		return false;
	case T_PROVIDER:
		if (name_lookup(provider_names, NELEM(provider_names), v) >= 0)
			return true;
		snprintf(why, whysz, "'%s' is not one of google, microsoft, "
		    "oauth2, password", v);
		return false;
	case T_FROM:
		if (!from_walk(v, from_bad_entry, NULL))
			return true;
		snprintf(why, whysz, "'%s' is not a comma-separated list of "
		    "addresses and *@domain patterns", v);
		return false;
	case T_HOST:
		if (valid_hostname(v, strlen(v)))
			return true;
		snprintf(why, whysz, "'%s' is not a host name", v);
		return false;
	case T_PORT:
		if (parse_ulong(v, 1, 65535, &n))
			return true;
		snprintf(why, whysz, "'%s' is not a port number (1-65535)", v);
		return false;
	case T_TLS:
		if (name_lookup(tls_names, NELEM(tls_names), v) >= 0)
			return true;
		snprintf(why, whysz, "'%s' is not one of starttls, tls, none",
		    v);
		return false;
	case T_AUTH:
		if (name_lookup(mech_names, NELEM(mech_names), v) >= 0)
			return true;
		snprintf(why, whysz, "'%s' is not one of xoauth2, oauthbearer, "
		    "plain, login", v);
		return false;
	case T_WORD:
		if (clean(v, true))
			return true;
		snprintf(why, whysz, "spaces or control characters in the "
		    "value");
		return false;
	case T_SECRET:
		if (clean(v, true))
			return true;
		snprintf(why, whysz, "spaces or control characters in the "
		    "secret");
		return false;
	case T_URL:
		return check_url(v, why, whysz);
	case T_TEXT:
		if (clean(v, false))
			return true;
		snprintf(why, whysz, "control characters in the value");
		return false;
	case T_TENANT:
		if (strspn(v, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == strlen(v))
			return true;
		snprintf(why, whysz, "'%s' is not a tenant name or ID", v);
		return false;
	case T_TIMEOUT:
		if (parse_ulong(v, 1, CONF_MAX_TIMEOUT, &n))
			return true;
		snprintf(why, whysz, "'%s' is not a number of seconds "
		    "between 1 and %d", v, CONF_MAX_TIMEOUT);
		return false;
	case T_REWRITE:
		if (name_lookup(rewrite_names, NELEM(rewrite_names), v) >= 0)
			return true;
		snprintf(why, whysz, "'%s' is not one of auto, never, always",
		    v);
		return false;
	case T_DELIVER:
		if ((strncmp(v, "maildir:", 8) == 0 && check_path(v + 8)) ||
		    (strncmp(v, "mbox:", 5) == 0 && check_path(v + 5)) ||
		    (strncmp(v, "mda:", 4) == 0 && v[4] != '\0' &&
		    clean(v, false)))
			return true;
		snprintf(why, whysz, "'%s' is not maildir:PATH, mbox:PATH or "
		    "mda:COMMAND (with an absolute PATH)", v);
		return false;
	}
	snprintf(why, whysz, "unchecked value");
	return false;
}

/* ---- pass one: reading files ----------------------------------------- */

static bool __attribute__((format(printf, 4, 5)))
ld_error(struct loader *ld, const char *file, int line, const char *fmt, ...)
{
	char msg[ERRINFO_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st_error(ld->ei, ST_CONFIG, "%s:%d: %s", file, line, msg);
	ld->failed = true;
	return false;
}

static struct section *
ld_find(struct loader *ld, const char *name)
{
	size_t i;

	for (i = 0; i < ld->nsects; i++)
		if (strcmp(ld->sects[i].name, name) == 0)
			return &ld->sects[i];
	return NULL;
}

/* A "[name]" line: check the name and remember the section. */
static bool
ld_section(struct loader *ld, const char *line)
{
	const char *p = line, *end;
	struct section *s;
	char name[CONF_MAX_LINE];
	size_t len;

	if (ld->lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	while (isspace((unsigned char)*p))
		p++;
	if (*p != '[' || (end = strchr(p, ']')) == NULL)
		return true;	/* not a header, or inih's syntax error */
	len = (size_t)(end - p - 1);
	memcpy(name, p + 1, len);
	name[len] = '\0';
	for (end++; isspace((unsigned char)*end); end++)
		;
	if (*end != '\0')
		return ld_error(ld, ld->file, ld->lineno,
		    "text after the section header [%s]", name);
	if (strcmp(name, "defaults") == 0)
		return true;
	if (strcasecmp(name, "defaults") == 0 ||
	    strcasecmp(name, "default") == 0)
		return ld_error(ld, ld->file, ld->lineno,
		    "[%s]: did you mean [defaults]? (that name is reserved)",
		    name);
	if (!valid_account_name(name))
		return ld_error(ld, ld->file, ld->lineno, "[%s]: an account "
		    "name is 1 to %d letters, digits and . _ @ + -, starting "
		    "with a letter or digit", name, CONF_MAX_NAME);
	if (ld_find(ld, name) != NULL)
		return true;
	if (ld->nsects >= CONF_MAX_ACCOUNTS)
		return ld_error(ld, ld->file, ld->lineno,
		    "more than %d accounts", CONF_MAX_ACCOUNTS);
	s = reallocarray(ld->sects, ld->nsects + 1, sizeof(*s));
	if (s == NULL) {
		st_errno(ld->ei, ST_SYS, "out of memory");
		ld->failed = true;
		return false;
	}
	ld->sects = s;
	s = &ld->sects[ld->nsects];
	memset(s, 0, sizeof(*s));
	if (!sdup(&s->name, name, ld->ei)) {
		ld->failed = true;
		return false;
	}
	s->file = ld->file;
	s->line = ld->lineno;
	ld->nsects++;
	return true;
}

/*
 * inih's reader: one whole line per call, so that our line count is
 * inih's.  A line too long for inih's buffer or holding a NUL is an
 * error here rather than a silent split or cut.
 */
static char *
ld_read(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	size_t len = 0;
	int c;

	if (ld->failed)
		return NULL;
	ld->lineno++;
	while ((c = getc(ld->fp)) != EOF && c != '\n') {
		if (c == '\0') {
			ld_error(ld, ld->file, ld->lineno, "NUL byte in line");
			return NULL;
		}
		/* Room for this byte, a CR inih may strip, and the NUL. */
		if (len + 3 > (size_t)num) {
			ld_error(ld, ld->file, ld->lineno,
			    "line longer than %d bytes", num - 3);
			return NULL;
		}
		str[len++] = (char)c;
	}
	if (c == EOF && ferror(ld->fp)) {
		st_errno(ld->ei, ST_CONFIG, "%s:%d: read error", ld->file,
		    ld->lineno);
		ld->failed = true;
		return NULL;
	}
	if (c == EOF && len == 0) {
		ld->lineno--;
		return NULL;
	}
	str[len] = '\0';
	if (!ld_section(ld, str))
		return NULL;
	return str;
}

static int
ld_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct loader *ld = user;
	struct setting *set;
	struct section *s = NULL;
	const char *hint;
	char why[ERRINFO_MAX];
	int k;

	if (ld->failed)
		return 0;
	if (*section == '\0')
		return ld_error(ld, ld->file, ld->lineno, "'%s' before any "
		    "section: put it under [defaults] or an [account]", name);
	if ((k = key_lookup(name)) < 0) {
		if ((hint = key_suggest(name)) != NULL)
			return ld_error(ld, ld->file, ld->lineno, "unknown key "
			    "'%s' in [%s] (did you mean '%s'?)", name, section,
			    hint);
		return ld_error(ld, ld->file, ld->lineno, "unknown key '%s' "
		    "in [%s]", name, section);
	}
	if (strcmp(section, "defaults") == 0)
		set = &ld->defaults[k];
	else if (key_global(k))
		return ld_error(ld, ld->file, ld->lineno, "'%s' is a global "
		    "key: set it in [defaults], not in [%s]", name, section);
	else if ((s = ld_find(ld, section)) == NULL)
		return ld_error(ld, ld->file, ld->lineno, "[%s]: bad section",
		    section);
	else
		set = &s->set[k];
	if (set->value != NULL && set->file == ld->file)
		return ld_error(ld, ld->file, ld->lineno, "'%s' is already set "
		    "in [%s] at line %d", name, section, set->line);
	if (*value != '\0' && !check_value(k, value, why, sizeof(why)))
		return ld_error(ld, ld->file, ld->lineno, "%s: %s", name, why);
	free_secret(&set->value);
	if (!sdup(&set->value, value, ld->ei)) {
		ld->failed = true;
		return 0;
	}
	set->file = ld->file;
	set->line = ld->lineno;
	return 1;
}

/* Read one file into the loader.  ST_OK if it is optional and absent. */
static enum status
ld_file(struct loader *ld, const char *path, bool must_exist, bool *read)
{
	char iobuf[BUFSIZ];
	int r;

	*read = false;
	if ((ld->fp = fopen(path, "re")) == NULL) {
		if (!must_exist && (errno == ENOENT || errno == ENOTDIR))
			return ST_OK;
		return st_errno(ld->ei, ST_CONFIG, "%s", path);
	}
	/* Our own stdio buffer, so that we can wipe the secrets in it. */
	setvbuf(ld->fp, iobuf, _IOFBF, sizeof(iobuf));
	if (!sdup(&ld->files[ld->nfiles], path, ld->ei)) {
		fclose(ld->fp);
		return ST_SYS;
	}
	ld->file = ld->files[ld->nfiles++];
	ld->lineno = 0;
	*read = true;

	/* Debian's libinih takes its options at run time. */
	ini_allow_multiline = false;		/* continuation lines: errors */
	ini_allow_inline_comments = false;	/* " ;" may be in a command */
	ini_stop_on_first_error = true;
	ini_allow_no_value = false;
	ini_use_stack = false;
	ini_allow_realloc = false;
	ini_initial_alloc = CONF_MAX_LINE + 3;
	ini_max_line = CONF_MAX_LINE + 3;
	r = ini_parse_stream(ld_read, ld, ld_handler, ld);

	if (ferror(ld->fp) && !ld->failed) {
		st_errno(ld->ei, ST_CONFIG, "%s: read error", path);
		ld->failed = true;
	}
	fclose(ld->fp);
	ld->fp = NULL;
	st_wipe(iobuf, sizeof(iobuf));
	if (ld->failed)
		return ld->ei->st != ST_OK ? ld->ei->st : ST_CONFIG;
	if (r == -2)
		return st_error(ld->ei, ST_SYS, "out of memory");
	if (r != 0)
		return st_error(ld->ei, ST_CONFIG, "%s:%d: syntax error: "
		    "expected 'key = value', '[section]' or a comment", path,
		    r);
	return ST_OK;
}

static void
ld_free(struct loader *ld)
{
	size_t i;
	int k;

	for (k = 0; k < K__COUNT; k++)
		free_secret(&ld->defaults[k].value);
	for (i = 0; i < ld->nsects; i++) {
		for (k = 0; k < K__COUNT; k++)
			free_secret(&ld->sects[i].set[k].value);
		free(ld->sects[i].name);
	}
	free(ld->sects);
	for (i = 0; i < ld->nfiles; i++)
		free(ld->files[i]);
}

/* ---- pass two: resolving --------------------------------------------- */

/* A key as it applies to one account. */
struct eff {
	const char *v;		/* NULL: not set (or unset with "") */
	const char *file;
	int line;
	bool inherited;		/* from [defaults] */
};

static struct eff
eff_at(const struct setting *set, bool inherited)
{
	struct eff e = { NULL, NULL, 0, inherited };

	if (set->value == NULL)
		return e;
	e.file = set->file;
	e.line = set->line;
	e.v = set->value[0] != '\0' ? set->value : NULL;
	return e;
}

/* The account's own setting, else the one in [defaults]. */
static struct eff
eff_get(const struct loader *ld, const struct section *s, int k)
{
	if (s != NULL && s->set[k].value != NULL)
		return eff_at(&s->set[k], false);
	return eff_at(&ld->defaults[k], s != NULL);
}

static const char *
home_dir(void)
{
	const char *h = conf_secure() ? NULL : getenv("HOME");
	struct passwd *pw;

	if (h != NULL && h[0] == '/')
		return h;
	if ((pw = getpwuid(getuid())) != NULL && pw->pw_dir != NULL &&
	    pw->pw_dir[0] == '/')
		return pw->pw_dir;
	return NULL;
}

/* A path value with "~/" expanded, as a new string. */
static bool
expand(struct loader *ld, const struct eff *e, const char *v, char **out)
{
	const char *home;

	if (v[0] != '~')
		return sdup(out, v, ld->ei) || (ld->failed = true, false);
	if ((home = home_dir()) == NULL)
		return ld_error(ld, e->file, e->line, "cannot expand '~': no "
		    "home directory");
	if ((*out = str3(home, v + 1, NULL, ld->ei)) == NULL)
		return ld->failed = true, false;
	return true;
}

static bool
set_str(struct loader *ld, char **dst, const char *v)
{
	if (!sdup(dst, v, ld->ei))
		return ld->failed = true, false;
	return true;
}

/* Read the first line of a client_secret_file. */
static bool
read_secret(struct loader *ld, const struct eff *e, const char *path,
    char **out)
{
	char buf[CONF_MAX_SECRET + 1];
	size_t len = 0, n;
	ssize_t r;
	int fd;
	bool ok = false;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		char msg[ERRINFO_MAX];
		snprintf(msg, sizeof(msg), "client_secret_file %s: %s", path,
		    strerror(errno));
		return ld_error(ld, e->file, e->line, "%s", msg);
	}
	while (len < sizeof(buf) - 1) {
		r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			ld_error(ld, e->file, e->line, "client_secret_file %s: "
			    "%s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	n = strcspn(buf, "\r\n");
	if (n == len && len == sizeof(buf) - 1) {
		ld_error(ld, e->file, e->line, "client_secret_file %s: longer "
		    "than %d bytes", path, CONF_MAX_SECRET);
		goto out;
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	if (n == 0 || !clean(buf, true)) {
		ld_error(ld, e->file, e->line, "client_secret_file %s: the "
		    "first line must hold the secret, without spaces", path);
		goto out;
	}
	ok = set_str(ld, out, buf);
out:
	st_wipe(buf, sizeof(buf));
	close(fd);
	return ok;
}

static bool
resolve_endpoint(struct loader *ld, const struct section *s, int khost,
    struct endpoint *ep, const char *defhost, enum tls_mode deftls,
    const unsigned ports[3])
{
	struct eff h = eff_get(ld, s, khost);
	struct eff p = eff_get(ld, s, khost + 1);
	struct eff t = eff_get(ld, s, khost + 2);
	unsigned long port;

	ep->tls = deftls;
	if (t.v != NULL)
		ep->tls = (enum tls_mode)name_lookup(tls_names,
		    NELEM(tls_names), t.v);
	/* Without a port, the one that goes with the TLS mode. */
	ep->port = ports[ep->tls];
	if (p.v != NULL && parse_ulong(p.v, 1, 65535, &port))
		ep->port = (unsigned)port;
	/*
	 * STARTTLS against an implicit-TLS port (or the reverse) only
	 * hangs until the timeout: say so now, for the well-known ports.
	 */
	if (p.v != NULL && ep->tls != TLSM_TLS && ep->port == ports[TLSM_TLS])
		return ld_error(ld, p.file, p.line, "%s %u is implicit TLS: "
		    "set %s = tls", keys[khost + 1].name, ep->port,
		    keys[khost + 2].name);
	if (p.v != NULL && ep->tls == TLSM_TLS &&
	    ep->port == ports[TLSM_STARTTLS])
		return ld_error(ld, p.file, p.line, "%s %u expects STARTTLS: "
		    "set %s = starttls", keys[khost + 1].name, ep->port,
		    keys[khost + 2].name);
	if (!set_str(ld, &ep->host, h.v != NULL ? h.v : defhost))
		return false;
	if (ep->tls == TLSM_NONE && ep->host != NULL &&
	    !conf_is_loopback(ep->host))
		return ld_error(ld, t.file, t.line, "%s = none is allowed only "
		    "for a loopback host, not %s", keys[khost + 2].name,
		    ep->host);
	return true;
}

struct provdef {
	const char *smtp, *imap, *pop;
	const char *auth, *token, *device, *revoke, *scope;
};

static const struct provdef google_def = {
	"smtp.gmail.com", "imap.gmail.com", "pop.gmail.com",
	"https://accounts.google.com/o/oauth2/v2/auth",
	"https://oauth2.googleapis.com/token",
	NULL,
	"https://oauth2.googleapis.com/revoke",
	"https://mail.google.com/",
};

static const struct provdef microsoft_def = {
	"smtp.office365.com", "outlook.office365.com", "outlook.office365.com",
	NULL, NULL, NULL, NULL,		/* built from the tenant */
	"https://outlook.office.com/SMTP.Send "
	"https://outlook.office.com/IMAP.AccessAsUser.All "
	"https://outlook.office.com/POP.AccessAsUser.All offline_access",
};

static const struct provdef none_def;

static const unsigned smtp_ports[3] = {
	[TLSM_STARTTLS] = 587, [TLSM_TLS] = 465, [TLSM_NONE] = 587 };
static const unsigned imap_ports[3] = {
	[TLSM_STARTTLS] = 143, [TLSM_TLS] = 993, [TLSM_NONE] = 143 };
static const unsigned pop_ports[3] = {
	[TLSM_STARTTLS] = 110, [TLSM_TLS] = 995, [TLSM_NONE] = 110 };

/* An endpoint: the configured URL, else the provider's. */
static bool
resolve_url(struct loader *ld, const struct section *s, int k, char **dst,
    const char *def, const char *tenant, const char *suffix)
{
	struct eff e = eff_get(ld, s, k);

	if (e.v != NULL)
		return set_str(ld, dst, e.v);
	if (tenant != NULL) {
		if ((*dst = str3(MS_LOGIN, tenant, suffix, ld->ei)) == NULL)
			return ld->failed = true, false;
		return true;
	}
	return set_str(ld, dst, def);
}

static bool
first_address(const char *s, size_t len, void *arg)
{
	const char **res = arg;

	if (len > 0 && s[0] != '*') {
		*res = s;
		return true;
	}
	return false;
}

static bool
resolve_account(struct loader *ld, const struct section *s,
    struct account *a)
{
	const struct provdef *pd;
	struct eff e, e2, sec, secf;
	const char *first = NULL, *tenant = NULL;
	unsigned long n;
	int k;

	if (!set_str(ld, &a->name, s->name) || !set_str(ld, &a->file, s->file))
		return false;
	a->line = s->line;

	e = eff_get(ld, s, K_PROVIDER);
	a->provider = PROV_GOOGLE;
	if (e.v != NULL)
		a->provider = (enum provider)name_lookup(provider_names,
		    NELEM(provider_names), e.v);

	/*
	 * A key that does not fit the provider is a mistake in the
	 * account's own section, but harmless in [defaults], which serves
	 * accounts of every kind.
	 */
	for (k = K_FIRST_ACCOUNT; k < K__COUNT; k++) {
		if (keys[k].providers & (1u << a->provider))
			continue;
		if (s->set[k].value != NULL && s->set[k].value[0] != '\0')
			return ld_error(ld, s->set[k].file, s->set[k].line,
			    "%s does not apply to provider %s (account %s)",
			    keys[k].name, conf_provider_name(a->provider),
			    s->name);
	}
#define APPLIES(k) ((keys[k].providers & (1u << a->provider)) != 0)

	e = eff_get(ld, s, K_USER);
	if (e.v == NULL)
		return ld_error(ld, s->file, s->line, "account %s: user is "
		    "required", s->name);
	if (!set_str(ld, &a->user, e.v))
		return false;

	e = eff_get(ld, s, K_FROM);
	if (!set_str(ld, &a->from, e.v != NULL ? e.v : a->user))
		return false;
	if (e.v != NULL && from_walk(a->from, first_address, &first)) {
		size_t len = strcspn(first, ", \t");
		if ((a->from_addr = strndup(first, len)) == NULL) {
			st_errno(ld->ei, ST_SYS, "out of memory");
			return ld->failed = true, false;
		}
	} else if (!set_str(ld, &a->from_addr, a->user))
		return false;

	switch (a->provider) {
	case PROV_GOOGLE:
		pd = &google_def;
		break;
	case PROV_MICROSOFT:
		pd = &microsoft_def;
		e = eff_get(ld, s, K_TENANT);
		if (!set_str(ld, &a->tenant, e.v != NULL ? e.v : "common"))
			return false;
		tenant = a->tenant;
		break;
	default:
		pd = &none_def;
		break;
	}

	if (!resolve_endpoint(ld, s, K_SMTP_HOST, &a->smtp, pd->smtp,
	    TLSM_STARTTLS, smtp_ports) ||
	    !resolve_endpoint(ld, s, K_IMAP_HOST, &a->imap, pd->imap,
	    TLSM_TLS, imap_ports) ||
	    !resolve_endpoint(ld, s, K_POP_HOST, &a->pop, pd->pop,
	    TLSM_TLS, pop_ports))
		return false;

	/* The provider says what the credential is; auth how it is sent. */
	e = eff_get(ld, s, K_AUTH);
	if (e.v != NULL) {
		a->auth = (enum auth_mech)name_lookup(mech_names,
		    NELEM(mech_names), e.v);
		if ((a->provider == PROV_PASSWORD) !=
		    (a->auth == MECH_PLAIN || a->auth == MECH_LOGIN))
			return ld_error(ld, e.file, e.line, "auth %s does not "
			    "go with provider %s (account %s): %s", e.v,
			    conf_provider_name(a->provider), s->name,
			    a->provider == PROV_PASSWORD ?
			    "use plain or login" :
			    "use xoauth2 or oauthbearer");
	} else
		a->auth = a->provider == PROV_PASSWORD ? MECH_PLAIN :
		    MECH_XOAUTH2;

	if (APPLIES(K_CLIENT_ID)) {
		e = eff_get(ld, s, K_CLIENT_ID);
		if (!set_str(ld, &a->client_id, e.v))
			return false;

		/*
		 * client_secret and client_secret_file are one choice: an
		 * account that makes it does not inherit the other half
		 * from [defaults].
		 */
		if (s->set[K_CLIENT_SECRET].value != NULL ||
		    s->set[K_CLIENT_SECRET_FILE].value != NULL) {
			sec = eff_at(&s->set[K_CLIENT_SECRET], false);
			secf = eff_at(&s->set[K_CLIENT_SECRET_FILE], false);
		} else {
			sec = eff_at(&ld->defaults[K_CLIENT_SECRET], true);
			secf = eff_at(&ld->defaults[K_CLIENT_SECRET_FILE],
			    true);
		}
		if (sec.v != NULL && secf.v != NULL)
			return ld_error(ld, secf.file, secf.line,
			    "client_secret_file and client_secret (%s:%d) "
			    "exclude each other (account %s)", sec.file,
			    sec.line, s->name);
		if (sec.v != NULL && !set_str(ld, &a->client_secret, sec.v))
			return false;
		if (secf.v != NULL) {
			char *path = NULL;
			bool ok = expand(ld, &secf, secf.v, &path) &&
			    read_secret(ld, &secf, path, &a->client_secret);
			free(path);
			if (!ok)
				return false;
		}

		if (!resolve_url(ld, s, K_AUTH_ENDPOINT, &a->auth_endpoint,
		    pd->auth, tenant, "/oauth2/v2.0/authorize") ||
		    !resolve_url(ld, s, K_TOKEN_ENDPOINT, &a->token_endpoint,
		    pd->token, tenant, "/oauth2/v2.0/token") ||
		    !resolve_url(ld, s, K_DEVICE_ENDPOINT, &a->device_endpoint,
		    pd->device, tenant, "/oauth2/v2.0/devicecode") ||
		    !resolve_url(ld, s, K_REVOKE_ENDPOINT, &a->revoke_endpoint,
		    pd->revoke, NULL, NULL))
			return false;
		e = eff_get(ld, s, K_SCOPE);
		if (!set_str(ld, &a->scope, e.v != NULL ? e.v : pd->scope))
			return false;
		if (a->token_endpoint == NULL)
			return ld_error(ld, s->file, s->line, "account %s: "
			    "provider oauth2 needs token_endpoint", s->name);
	}

	if (APPLIES(K_SERVICE_ACCOUNT_KEY)) {
		e = eff_get(ld, s, K_SERVICE_ACCOUNT_KEY);
		e2 = eff_get(ld, s, K_IMPERSONATE);
		if ((e.v == NULL) != (e2.v == NULL))
			return ld_error(ld, e.v != NULL ? e.file : e2.file,
			    e.v != NULL ? e.line : e2.line, "account %s: "
			    "service_account_key and impersonate go together",
			    s->name);
		if (e.v != NULL && (!expand(ld, &e, e.v,
		    &a->service_account_key) ||
		    !set_str(ld, &a->impersonate, e2.v)))
			return false;
	}
	if (a->provider != PROV_PASSWORD && a->client_id == NULL &&
	    a->service_account_key == NULL)
		return ld_error(ld, s->file, s->line, "account %s: client_id "
		    "is required for provider %s", s->name,
		    conf_provider_name(a->provider));

	if (APPLIES(K_PASSWORD_COMMAND)) {
		e = eff_get(ld, s, K_PASSWORD_COMMAND);
		if (e.v == NULL)
			return ld_error(ld, s->file, s->line, "account %s: "
			    "provider password needs password_command",
			    s->name);
		if (!set_str(ld, &a->password_command, e.v))
			return false;
	}

	e = eff_get(ld, s, K_CA_FILE);
	if (e.v != NULL && !expand(ld, &e, e.v, &a->ca_file))
		return false;
	e = eff_get(ld, s, K_DOMAIN);
	if (!set_str(ld, &a->domain, e.v))
		return false;
	e = eff_get(ld, s, K_TIMEOUT);
	a->timeout = 60;
	if (e.v != NULL && parse_ulong(e.v, 1, CONF_MAX_TIMEOUT, &n))
		a->timeout = (int)n;
	e = eff_get(ld, s, K_REWRITE_FROM);
	a->rewrite_from = REWRITE_AUTO;
	if (e.v != NULL)
		a->rewrite_from = (enum rewrite_from)name_lookup(rewrite_names,
		    NELEM(rewrite_names), e.v);

	e = eff_get(ld, s, K_DELIVER);
	a->deliver_kind = DELIVER_NONE;
	if (e.v != NULL) {
		const char *colon = strchr(e.v, ':');
		size_t plen = (size_t)(colon - e.v) + 1;
		char *path = NULL;

		if (strncmp(e.v, "mda:", 4) == 0) {
			a->deliver_kind = DELIVER_MDA;
			if (!set_str(ld, &a->deliver, e.v))
				return false;
		} else {
			a->deliver_kind = strncmp(e.v, "mbox:", 5) == 0 ?
			    DELIVER_MBOX : DELIVER_MAILDIR;
			if (!expand(ld, &e, colon + 1, &path))
				return false;
			a->deliver = malloc(plen + strlen(path) + 1);
			if (a->deliver == NULL) {
				free(path);
				st_errno(ld->ei, ST_SYS, "out of memory");
				return ld->failed = true, false;
			}
			memcpy(a->deliver, e.v, plen);
			memcpy(a->deliver + plen, path, strlen(path) + 1);
			free(path);
		}
		a->deliver_arg = a->deliver + plen;
	}
#undef APPLIES
	return true;
}

static void
account_free(struct account *a)
{
	free(a->name);
	free(a->user);
	free(a->from);
	free(a->from_addr);
	free(a->smtp.host);
	free(a->imap.host);
	free(a->pop.host);
	free(a->client_id);
	free_secret(&a->client_secret);
	free(a->auth_endpoint);
	free(a->token_endpoint);
	free(a->device_endpoint);
	free(a->revoke_endpoint);
	free(a->scope);
	free(a->tenant);
	free(a->service_account_key);
	free(a->impersonate);
	free(a->password_command);
	free(a->ca_file);
	free(a->domain);
	free(a->deliver);
	free(a->file);
}

void
conf_free(struct conf *conf)
{
	size_t i;

	if (conf == NULL)
		return;
	for (i = 0; i < conf->naccounts; i++)
		account_free(&conf->accounts[i]);
	free(conf->accounts);
	free(conf->account);
	free(conf->queue_dir);
	free(conf->state_dir);
	free(conf->log);
	free(conf->aliases);
	free(conf->bounce_to);
	free(conf->explicit_path);
	for (i = 0; i < conf->nfiles; i++)
		free(conf->files[i]);
	memset(conf, 0, sizeof(*conf));
}

/* The personal file's path, or NULL when there is no home to find. */
static char *
personal_path(struct errinfo *ei, bool *oom)
{
	const char *x = getenv("XDG_CONFIG_HOME"), *home;
	char *p;

	*oom = false;
	if (x != NULL && x[0] == '/')
		p = str3(x, "/bearmail/config", NULL, ei);
	else if ((home = home_dir()) != NULL)
		p = str3(home, "/.config/bearmail/config", NULL, ei);
	else
		return NULL;
	*oom = p == NULL;
	return p;
}

static bool
resolve_globals(struct loader *ld, struct conf *c)
{
	struct eff e;
	const char *xs, *home;
	char *base = NULL;
	time_t age;

	e = eff_get(ld, NULL, K_ACCOUNT);
	if (e.v != NULL) {
		if (ld_find(ld, e.v) == NULL)
			return ld_error(ld, e.file, e.line, "account: no "
			    "section [%s]", e.v);
		if (!set_str(ld, &c->account, e.v))
			return false;
	}
	e = eff_get(ld, NULL, K_QUEUE);
	c->queue = QUEUE_ON_FAILURE;
	if (e.v != NULL)
		c->queue = (enum queue_mode)name_lookup(queue_names,
		    NELEM(queue_names), e.v);
	e = eff_get(ld, NULL, K_LOG);
	if (e.v == NULL || e.v[0] != '~') {
		if (!set_str(ld, &c->log, e.v != NULL ? e.v : "syslog"))
			return false;
	} else if (!expand(ld, &e, e.v, &c->log))
		return false;
	e = eff_get(ld, NULL, K_ALIASES);
	if (e.v != NULL && !expand(ld, &e, e.v, &c->aliases))
		return false;
	e = eff_get(ld, NULL, K_MAX_QUEUE_AGE);
	c->max_queue_age = 5 * 86400;
	if (e.v != NULL && conf_parse_duration(e.v, &age))
		c->max_queue_age = age;
	e = eff_get(ld, NULL, K_BOUNCE_TO);
	if (!set_str(ld, &c->bounce_to, e.v))
		return false;

	e = eff_get(ld, NULL, K_QUEUE_DIR);
	if (e.v != NULL && !expand(ld, &e, e.v, &c->queue_dir))
		return false;
	e = eff_get(ld, NULL, K_STATE_DIR);
	if (e.v != NULL && !expand(ld, &e, e.v, &c->state_dir))
		return false;
	if (c->system) {
		if ((c->queue_dir == NULL && !set_str(ld, &c->queue_dir,
		    LOCALSTATEDIR "/spool/bearmail")) ||
		    (c->state_dir == NULL && !set_str(ld, &c->state_dir,
		    LOCALSTATEDIR "/lib/bearmail")))
			return false;
		return true;
	}
	if (c->queue_dir != NULL && c->state_dir != NULL)
		return true;
	xs = conf_secure() ? NULL : getenv("XDG_STATE_HOME");
	if (xs != NULL && xs[0] == '/')
		base = str3(xs, "/bearmail", NULL, ld->ei);
	else if ((home = home_dir()) != NULL)
		base = str3(home, "/.local/state/bearmail", NULL, ld->ei);
	else {
		st_error(ld->ei, ST_CONFIG, "%s: no home directory for the "
		    "default queue_dir and state_dir: set them in [defaults]",
		    ld->files[ld->nfiles - 1]);
		return ld->failed = true, false;
	}
	if (base == NULL)
		return ld->failed = true, false;
	if (c->queue_dir == NULL &&
	    (c->queue_dir = str3(base, "/queue", NULL, ld->ei)) == NULL) {
		free(base);
		return ld->failed = true, false;
	}
	if (c->state_dir == NULL)
		c->state_dir = base;
	else
		free(base);
	return true;
}

enum status
conf_load(struct conf *conf, const char *explicit_path, struct errinfo *out_ei)
{
	struct errinfo local, *ei = &local;
	struct loader ld;
	struct conf c;
	const char *env, *syspath;
	char *personal = NULL;
	bool read, personal_read = false, oom = false, secure;
	long uid;
	size_t i;
	enum status st = ST_OK;

	/*
	 * The loader reads the status of a failure back from its errinfo
	 * (ei->st): work on one of our own, clear at the start, so an
	 * earlier failure in the caller's can never stand in for ours.
	 */
	st_clear(&local);
	memset(&ld, 0, sizeof(ld));
	memset(&c, 0, sizeof(c));
	ld.ei = ei;
	memset(conf, 0, sizeof(*conf));

	secure = conf_secure();
	if (explicit_path == NULL && !secure &&
	    (env = getenv("BEARMAIL_CONFIG")) != NULL && env[0] != '\0')
		explicit_path = env;
	if (explicit_path != NULL) {
		if (!sdup(&c.explicit_path, explicit_path, ei)) {
			st = ST_SYS;
			goto out;
		}
		if ((st = ld_file(&ld, explicit_path, true, &read)) != ST_OK)
			goto out;
	} else {
		syspath = test_system_path != NULL ? test_system_path :
		    SYSCONFDIR "/bearmail.conf";
		if ((st = ld_file(&ld, syspath, false, &read)) != ST_OK)
			goto out;
		personal = secure ? NULL : personal_path(ei, &oom);
		if (!secure && oom) {
			st = ei->st != ST_OK ? ei->st : ST_SYS;
			goto out;
		}
		if (personal != NULL && strcmp(personal, syspath) != 0) {
			if ((st = ld_file(&ld, personal, false,
			    &personal_read)) != ST_OK)
				goto out;
		}
	}

	/*
	 * Whose queue: root always uses the system one; anyone else uses
	 * their own once they have a configuration of their own.
	 */
	uid = test_uid >= 0 ? test_uid : (long)getuid();
	c.system = uid == 0 || (explicit_path == NULL && !personal_read);

	if (!resolve_globals(&ld, &c)) {
		st = ei->st != ST_OK ? ei->st : ST_CONFIG;
		goto out;
	}
	if (ld.nsects > 0) {
		c.accounts = calloc(ld.nsects, sizeof(*c.accounts));
		if (c.accounts == NULL) {
			st = st_errno(ei, ST_SYS, "out of memory");
			goto out;
		}
	}
	for (i = 0; i < ld.nsects; i++) {
		c.naccounts++;
		if (!resolve_account(&ld, &ld.sects[i], &c.accounts[i])) {
			st = ei->st != ST_OK ? ei->st : ST_CONFIG;
			goto out;
		}
	}
	for (i = 0; i < ld.nfiles; i++) {
		c.files[i] = ld.files[i];
		ld.files[i] = NULL;
	}
	c.nfiles = ld.nfiles;
	ld.nfiles = 0;
out:
	free(personal);
	ld_free(&ld);
	if (st != ST_OK) {
		conf_free(&c);
		st_error(out_ei, st, "%s", local.msg);
		return st;
	}
	*conf = c;
	return ST_OK;
}

/* ---- choosing an account --------------------------------------------- */

static const struct account *
find_account(const struct conf *conf, const char *name)
{
	size_t i;

	for (i = 0; i < conf->naccounts; i++)
		if (strcmp(conf->accounts[i].name, name) == 0)
			return &conf->accounts[i];
	return NULL;
}

/* "a, b, c" for messages, cut to fit. */
static void
account_list(const struct conf *conf, char *out, size_t outsz)
{
	size_t i, len = 0;
	int n;

	out[0] = '\0';
	for (i = 0; i < conf->naccounts && len < outsz; i++) {
		n = snprintf(out + len, outsz - len, "%s%s", i > 0 ? ", " : "",
		    conf->accounts[i].name);
		if (n < 0)
			break;
		len += (size_t)n;
	}
}

static const char *
files_read(const struct conf *conf)
{
	return conf->nfiles > 0 ? conf->files[conf->nfiles - 1] :
	    "no configuration file";
}

enum status
conf_account(const struct conf *conf, const char *name,
    const struct account **out, struct errinfo *ei)
{
	char list[256];

	*out = NULL;
	if (name != NULL) {
		if ((*out = find_account(conf, name)) != NULL)
			return ST_OK;
		if (conf->naccounts == 0)
			return st_error(ei, ST_USAGE, "no account '%s': no "
			    "account is configured (%s)", name,
			    files_read(conf));
		account_list(conf, list, sizeof(list));
		return st_error(ei, ST_USAGE, "no account '%s' (accounts: %s)",
		    name, list);
	}
	if (conf->account != NULL) {
		if ((*out = find_account(conf, conf->account)) != NULL)
			return ST_OK;
		return st_error(ei, ST_CONFIG, "account '%s' is not defined",
		    conf->account);
	}
	if (conf->naccounts == 1) {
		*out = &conf->accounts[0];
		return ST_OK;
	}
	if (conf->naccounts == 0)
		return st_error(ei, ST_CONFIG, "no account is configured (%s): "
		    "see bearmail.conf(5)", files_read(conf));
	account_list(conf, list, sizeof(list));
	return st_error(ei, ST_CONFIG, "%zu accounts (%s) and no 'account =' "
	    "in [defaults]: choose one with -a NAME", conf->naccounts, list);
}

struct from_match {
	const char *local;	/* addr */
	size_t llen;		/* its local part's length */
	const char *domain;	/* after the last '@' */
	size_t dlen;
};

static bool
from_matches(const char *s, size_t len, void *arg)
{
	const struct from_match *m = arg;
	const char *at = memrchr(s, '@', len);
	size_t dlen;

	if (at == NULL || m->domain == NULL)
		return false;
	dlen = len - (size_t)(at + 1 - s);
	if (dlen != m->dlen || strncasecmp(at + 1, m->domain, dlen) != 0)
		return false;
	if (at - s == 1 && s[0] == '*')
		return true;
	return (size_t)(at - s) == m->llen && memcmp(s, m->local, m->llen) == 0;
}

const struct account *
conf_account_for(const struct conf *conf, const char *addr)
{
	struct from_match m;
	const char *at;
	size_t len, i;

	if (addr == NULL)
		return NULL;
	len = strlen(addr);
	if (len >= 2 && addr[0] == '<' && addr[len - 1] == '>') {
		addr++;
		len -= 2;
	}
	if ((at = memrchr(addr, '@', len)) == NULL || at == addr)
		return NULL;
	m.local = addr;
	m.llen = (size_t)(at - addr);
	m.domain = at + 1;
	m.dlen = len - m.llen - 1;
	if (m.dlen == 0)
		return NULL;
	for (i = 0; i < conf->naccounts; i++)
		if (from_walk(conf->accounts[i].from, from_matches, &m))
			return &conf->accounts[i];
	return NULL;
}
