/*
 * conf_check.c: what a configuration value may be, one key at a time:
 * the key table, the names of enumerated values, syntax and range checks
 * (hosts, ports, URLs, addresses, durations), and "did you mean" for
 * unknown keys.  Part of the conf module: conf.c loads and merges the
 * files, conf_resolve.c resolves accounts; the declarations they share
 * are in conf_int.h.  No I/O here.
 */
#include "config.h"

#include <sys/types.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "conf_int.h"

#define CONF_MAX_QUEUE_AGE	(365L * 86400)

const struct keydef conf_keys[K__COUNT] = {
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

const char *const conf_provider_names[] = {
	[PROV_GOOGLE] = "google", [PROV_MICROSOFT] = "microsoft",
	[PROV_OAUTH2] = "oauth2", [PROV_PASSWORD] = "password",
};
const char *const conf_tls_names[] = {
	[TLSM_STARTTLS] = "starttls", [TLSM_TLS] = "tls", [TLSM_NONE] = "none",
};
const char *const conf_mech_names[] = {
	[MECH_XOAUTH2] = "xoauth2", [MECH_OAUTHBEARER] = "oauthbearer",
	[MECH_PLAIN] = "plain", [MECH_LOGIN] = "login",
};
const char *const conf_queue_names[] = {
	[QUEUE_ON_FAILURE] = "on-failure", [QUEUE_ALWAYS] = "always",
	[QUEUE_NEVER] = "never",
};
const char *const conf_rewrite_names[] = {
	[REWRITE_AUTO] = "auto", [REWRITE_NEVER] = "never",
	[REWRITE_ALWAYS] = "always",
};

/* ---- small helpers ---------------------------------------------------- */

int
conf_name_lookup(const char *const *names, size_t n, const char *v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], v) == 0)
			return (int)i;
	return -1;
}

/* No control characters; with nospace, no spaces either. */
bool
conf_clean(const char *s, bool nospace)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f || (nospace && c == ' '))
			return false;
	}
	return true;
}

/* Digits only, in [min, max]. */
bool
conf_parse_ulong(const char *s, unsigned long min, unsigned long max,
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

bool
conf_valid_account_name(const char *s)
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

const char *
conf_key_suggest(const char *name)
{
	size_t i, d, best = SIZE_MAX;
	const char *hint = NULL;

	for (i = 0; i < NELEM(key_hints); i++)
		if (strcasecmp(name, key_hints[i].from) == 0)
			return key_hints[i].to;
	for (i = 0; i < K__COUNT; i++) {
		d = distance(name, conf_keys[i].name);
		if (d < best) {
			best = d;
			hint = conf_keys[i].name;
		}
	}
	/* Only a near miss: a wild guess confuses more than it helps. */
	return best <= 2 && best < strlen(name) ? hint : NULL;
}

int
conf_key_lookup(const char *name)
{
	int i;

	for (i = 0; i < K__COUNT; i++)
		if (strcmp(conf_keys[i].name, name) == 0)
			return i;
	return -1;
}

bool
conf_key_global(int k)
{
	return k < K_FIRST_ACCOUNT;
}

/* ---- public little helpers ------------------------------------------- */

const char *
conf_provider_name(enum provider p)
{
	return (unsigned)p < NELEM(conf_provider_names) ?
	    conf_provider_names[p] : "?";
}

const char *
conf_mech_name(enum auth_mech m)
{
	return (unsigned)m < NELEM(conf_mech_names) ? conf_mech_names[m] : "?";
}

const char *
conf_tls_name(enum tls_mode t)
{
	return (unsigned)t < NELEM(conf_tls_names) ? conf_tls_names[t] : "?";
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
bool
conf_from_walk(const char *list, bool (*fn)(const char *, size_t, void *),
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
	if (!conf_clean(v, true)) {
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
		if (!conf_parse_ulong(portbuf, 1, 65535, &port))
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
	return (v[0] == '/' || (v[0] == '~' && v[1] == '/')) &&
	    conf_clean(v, false);
}

/*
 * Check a non-empty value on its own.  False with the reason in why;
 * the reason never repeats a secret.
 */
bool
conf_check_value(int k, const char *v, char *why, size_t whysz)
{
	unsigned long n;
	time_t d;

	switch (conf_keys[k].type) {
	case T_NAME:
		if (conf_valid_account_name(v))
			return true;
		snprintf(why, whysz, "'%s' is not a valid account name", v);
		return false;
	case T_QUEUE:
		if (CONF_LOOKUP(conf_queue_names, v) >= 0)
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
		if (conf_clean(v, true))
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
		if (CONF_LOOKUP(conf_provider_names, v) >= 0)
			return true;
		snprintf(why, whysz, "'%s' is not one of google, microsoft, "
		    "oauth2, password", v);
		return false;
	case T_FROM:
		if (!conf_from_walk(v, from_bad_entry, NULL))
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
		if (conf_parse_ulong(v, 1, 65535, &n))
			return true;
		snprintf(why, whysz, "'%s' is not a port number (1-65535)", v);
		return false;
	case T_TLS:
		if (CONF_LOOKUP(conf_tls_names, v) >= 0)
			return true;
		snprintf(why, whysz, "'%s' is not one of starttls, tls, none",
		    v);
		return false;
	case T_AUTH:
		if (CONF_LOOKUP(conf_mech_names, v) >= 0)
			return true;
		snprintf(why, whysz, "'%s' is not one of xoauth2, oauthbearer, "
		    "plain, login", v);
		return false;
	case T_WORD:
		if (conf_clean(v, true))
			return true;
		snprintf(why, whysz, "spaces or control characters in the "
		    "value");
		return false;
	case T_SECRET:
		if (conf_clean(v, true))
			return true;
		snprintf(why, whysz, "spaces or control characters in the "
		    "secret");
		return false;
	case T_URL:
		return check_url(v, why, whysz);
	case T_TEXT:
		if (conf_clean(v, false))
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
		if (conf_parse_ulong(v, 1, CONF_MAX_TIMEOUT, &n))
			return true;
		snprintf(why, whysz, "'%s' is not a number of seconds "
		    "between 1 and %d", v, CONF_MAX_TIMEOUT);
		return false;
	case T_REWRITE:
		if (CONF_LOOKUP(conf_rewrite_names, v) >= 0)
			return true;
		snprintf(why, whysz, "'%s' is not one of auto, never, always",
		    v);
		return false;
	case T_DELIVER:
		if ((strncmp(v, "maildir:", 8) == 0 && check_path(v + 8)) ||
		    (strncmp(v, "mbox:", 5) == 0 && check_path(v + 5)) ||
		    (strncmp(v, "mda:", 4) == 0 && v[4] != '\0' &&
		    conf_clean(v, false)))
			return true;
		snprintf(why, whysz, "'%s' is not maildir:PATH, mbox:PATH or "
		    "mda:COMMAND (with an absolute PATH)", v);
		return false;
	}
	snprintf(why, whysz, "unchecked value");
	return false;
}
