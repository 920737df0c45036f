/*
 * conf_resolve.c: pass two of loading, resolving the raw settings that
 * conf.c read into accounts and globals.  A key applies to an account
 * from its own section, else from [defaults], else from its provider's
 * defaults (the hosts, ports, endpoints and scopes of Google and
 * Microsoft below); then the account is checked as a whole (tls = none
 * on a remote host, auth against provider, keys that must come in
 * pairs).  Part of the conf module; see conf_int.h.
 */
#include "config.h"

#include <sys/types.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "conf_int.h"

#define CONF_MAX_SECRET		4096	/* client_secret_file size limit */

#define MS_LOGIN	"https://login.microsoftonline.com/"

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

const char *
conf_home_dir(void)
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
		return conf_sdup(out, v, ld->ei) || (ld->failed = true, false);
	if ((home = conf_home_dir()) == NULL)
		return conf_ld_error(ld, e->file, e->line, "cannot expand '~': "
		    "no home directory");
	if ((*out = conf_str3(home, v + 1, NULL, ld->ei)) == NULL)
		return ld->failed = true, false;
	return true;
}

static bool
set_str(struct loader *ld, char **dst, const char *v)
{
	if (!conf_sdup(dst, v, ld->ei))
		return ld->failed = true, false;
	return true;
}

/* Read the first line of a client_secret_file. */
static bool
read_secret(struct loader *ld, const struct eff *e, const char *path,
    char **out, char **denied)
{
	char buf[CONF_MAX_SECRET + 1];
	size_t len = 0, n;
	ssize_t r;
	int fd;
	bool ok = false;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1 &&
	    errno == EACCES) {
		/*
		 * A submitter on a system install may not read the secret;
		 * it never needs it (its mail goes through the maildrop).
		 * Whoever does need it hears why in oauth_form_client().
		 */
		return set_str(ld, denied, path);
	}
	if (fd == -1) {
		char msg[ERRINFO_MAX];
		snprintf(msg, sizeof(msg), "client_secret_file %s: %s", path,
		    strerror(errno));
		return conf_ld_error(ld, e->file, e->line, "%s", msg);
	}
	while (len < sizeof(buf) - 1) {
		r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			conf_ld_error(ld, e->file, e->line,
			    "client_secret_file %s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	n = strcspn(buf, "\r\n");
	if (n == len && len == sizeof(buf) - 1) {
		conf_ld_error(ld, e->file, e->line, "client_secret_file %s: "
		    "longer than %d bytes", path, CONF_MAX_SECRET);
		goto out;
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	if (n == 0 || !conf_clean(buf, true)) {
		conf_ld_error(ld, e->file, e->line, "client_secret_file %s: "
		    "the first line must hold the secret, without spaces",
		    path);
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
		ep->tls = (enum tls_mode)CONF_LOOKUP(conf_tls_names, t.v);
	/* Without a port, the one that goes with the TLS mode. */
	ep->port = ports[ep->tls];
	if (p.v != NULL && conf_parse_ulong(p.v, 1, 65535, &port))
		ep->port = (unsigned)port;
	/*
	 * STARTTLS against an implicit-TLS port (or the reverse) only
	 * hangs until the timeout: say so now, for the well-known ports.
	 */
	if (p.v != NULL && ep->tls != TLSM_TLS && ep->port == ports[TLSM_TLS])
		return conf_ld_error(ld, p.file, p.line, "%s %u is implicit "
		    "TLS: set %s = tls", conf_keys[khost + 1].name, ep->port,
		    conf_keys[khost + 2].name);
	if (p.v != NULL && ep->tls == TLSM_TLS &&
	    ep->port == ports[TLSM_STARTTLS])
		return conf_ld_error(ld, p.file, p.line, "%s %u expects "
		    "STARTTLS: set %s = starttls", conf_keys[khost + 1].name,
		    ep->port, conf_keys[khost + 2].name);
	if (!set_str(ld, &ep->host, h.v != NULL ? h.v : defhost))
		return false;
	if (ep->tls == TLSM_NONE && ep->host != NULL &&
	    !conf_is_loopback(ep->host))
		return conf_ld_error(ld, t.file, t.line, "%s = none is allowed "
		    "only for a loopback host, not %s",
		    conf_keys[khost + 2].name, ep->host);
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
		if ((*dst = conf_str3(MS_LOGIN, tenant, suffix, ld->ei)) ==
		    NULL)
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

bool
conf_resolve_account(struct loader *ld, const struct section *s,
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
		a->provider = (enum provider)CONF_LOOKUP(conf_provider_names,
		    e.v);

	/*
	 * A key that does not fit the provider is a mistake in the
	 * account's own section, but harmless in [defaults], which serves
	 * accounts of every kind.
	 */
	for (k = K_FIRST_ACCOUNT; k < K__COUNT; k++) {
		if (conf_keys[k].providers & (1u << a->provider))
			continue;
		if (s->set[k].value != NULL && s->set[k].value[0] != '\0')
			return conf_ld_error(ld, s->set[k].file, s->set[k].line,
			    "%s does not apply to provider %s (account %s)",
			    conf_keys[k].name, conf_provider_name(a->provider),
			    s->name);
	}
#define APPLIES(k) ((conf_keys[k].providers & (1u << a->provider)) != 0)

	e = eff_get(ld, s, K_USER);
	if (e.v == NULL)
		return conf_ld_error(ld, s->file, s->line, "account %s: user "
		    "is required", s->name);
	if (!set_str(ld, &a->user, e.v))
		return false;

	e = eff_get(ld, s, K_FROM);
	if (!set_str(ld, &a->from, e.v != NULL ? e.v : a->user))
		return false;
	if (e.v != NULL && conf_from_walk(a->from, first_address, &first)) {
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
		a->auth = (enum auth_mech)CONF_LOOKUP(conf_mech_names, e.v);
		if ((a->provider == PROV_PASSWORD) !=
		    (a->auth == MECH_PLAIN || a->auth == MECH_LOGIN))
			return conf_ld_error(ld, e.file, e.line, "auth %s does "
			    "not go with provider %s (account %s): %s", e.v,
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
			return conf_ld_error(ld, secf.file, secf.line,
			    "client_secret_file and client_secret (%s:%d) "
			    "exclude each other (account %s)", sec.file,
			    sec.line, s->name);
		if (sec.v != NULL && !set_str(ld, &a->client_secret, sec.v))
			return false;
		if (secf.v != NULL) {
			char *path = NULL;
			bool ok = expand(ld, &secf, secf.v, &path) &&
			    read_secret(ld, &secf, path, &a->client_secret,
			    &a->client_secret_denied);
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
			return conf_ld_error(ld, s->file, s->line, "account "
			    "%s: provider oauth2 needs token_endpoint",
			    s->name);
	}

	if (APPLIES(K_SERVICE_ACCOUNT_KEY)) {
		e = eff_get(ld, s, K_SERVICE_ACCOUNT_KEY);
		e2 = eff_get(ld, s, K_IMPERSONATE);
		if ((e.v == NULL) != (e2.v == NULL))
			return conf_ld_error(ld, e.v != NULL ? e.file : e2.file,
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
		return conf_ld_error(ld, s->file, s->line, "account %s: "
		    "client_id is required for provider %s", s->name,
		    conf_provider_name(a->provider));

	if (APPLIES(K_PASSWORD_COMMAND)) {
		e = eff_get(ld, s, K_PASSWORD_COMMAND);
		if (e.v == NULL)
			return conf_ld_error(ld, s->file, s->line, "account "
			    "%s: provider password needs password_command",
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
	if (e.v != NULL && conf_parse_ulong(e.v, 1, CONF_MAX_TIMEOUT, &n))
		a->timeout = (int)n;
	e = eff_get(ld, s, K_REWRITE_FROM);
	a->rewrite_from = REWRITE_AUTO;
	if (e.v != NULL)
		a->rewrite_from = (enum rewrite_from)CONF_LOOKUP(
		    conf_rewrite_names, e.v);

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

bool
conf_resolve_globals(struct loader *ld, struct conf *c)
{
	struct eff e;
	const char *xs, *home;
	char *base = NULL;
	time_t age;

	e = eff_get(ld, NULL, K_ACCOUNT);
	if (e.v != NULL) {
		if (conf_ld_find(ld, e.v) == NULL)
			return conf_ld_error(ld, e.file, e.line, "account: no "
			    "section [%s]", e.v);
		if (!set_str(ld, &c->account, e.v))
			return false;
	}
	e = eff_get(ld, NULL, K_QUEUE);
	c->queue = QUEUE_ON_FAILURE;
	if (e.v != NULL)
		c->queue = (enum queue_mode)CONF_LOOKUP(conf_queue_names, e.v);
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
		base = conf_str3(xs, "/bearmail", NULL, ld->ei);
	else if ((home = conf_home_dir()) != NULL)
		base = conf_str3(home, "/.local/state/bearmail", NULL, ld->ei);
	else {
		st_error(ld->ei, ST_CONFIG, "%s: no home directory for the "
		    "default queue_dir and state_dir: set them in [defaults]",
		    ld->files[ld->nfiles - 1]);
		return ld->failed = true, false;
	}
	if (base == NULL)
		return ld->failed = true, false;
	if (c->queue_dir == NULL &&
	    (c->queue_dir = conf_str3(base, "/queue", NULL, ld->ei)) == NULL) {
		free(base);
		return ld->failed = true, false;
	}
	if (c->state_dir == NULL)
		c->state_dir = base;
	else
		free(base);
	return true;
}
