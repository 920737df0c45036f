/*
 * conf.h: the one configuration file of the three programs.
 *
 * INI (read with libinih, which only conf.c includes).  Files, later
 * ones overriding earlier ones key by key: SYSCONFDIR/bearmail.conf, then
 * $XDG_CONFIG_HOME/bearmail/config (~/.config/bearmail/config).  An
 * explicit file (-C FILE, or $BEARMAIL_CONFIG) replaces both.
 *
 * [defaults] holds the global keys and default values for every account;
 * every other [NAME] section is an account.  Unknown keys, bad values and
 * missing required keys are ST_CONFIG with "file:line: ..." in the text.
 *
 * After conf_load() every account is complete: provider defaults are
 * filled in, so the rest of bearmail never asks "is this set?" for a
 * host, port, endpoint or mechanism.
 */
#ifndef BEARMAIL_CONF_H
#define BEARMAIL_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "status.h"

enum provider { PROV_GOOGLE, PROV_MICROSOFT, PROV_OAUTH2, PROV_PASSWORD };
enum tls_mode { TLSM_STARTTLS, TLSM_TLS, TLSM_NONE };
enum auth_mech { MECH_XOAUTH2, MECH_OAUTHBEARER, MECH_PLAIN, MECH_LOGIN };
enum queue_mode { QUEUE_ON_FAILURE, QUEUE_ALWAYS, QUEUE_NEVER };
enum rewrite_from { REWRITE_AUTO, REWRITE_NEVER, REWRITE_ALWAYS };

/* Where a server lives and how to talk TLS to it. */
struct endpoint {
	char *host;
	unsigned port;
	enum tls_mode tls;
};

struct account {
	char *name;			/* section name */
	enum provider provider;
	char *user;			/* required */
	char *from;			/* default: user; may be a list of patterns */
	struct endpoint smtp, imap, pop;
	enum auth_mech auth;
	char *client_id;
	char *client_secret;		/* from client_secret or client_secret_file */
	char *auth_endpoint, *token_endpoint, *device_endpoint;
	char *revoke_endpoint, *scope;
	char *tenant;			/* default "common" */
	char *service_account_key, *impersonate;
	char *password_command;
	char *ca_file;			/* NULL: the system bundle */
	char *domain;			/* default: the host's FQDN */
	int timeout;			/* seconds, default 60 */
	enum rewrite_from rewrite_from;
	char *deliver;			/* bearmail-fetch target, or NULL */
	char *file;			/* where the section was defined ... */
	int line;			/* ... for messages about it */
};

struct conf {
	char *account;			/* default account name, or NULL */
	enum queue_mode queue;
	char *queue_dir;
	char *state_dir;
	char *log;			/* "syslog", "stderr" or a path */
	char *aliases;			/* NULL: none */
	time_t max_queue_age;		/* seconds, default 5 days */
	char *bounce_to;		/* NULL: the envelope sender */
	bool system;			/* loaded from the system file only */
	char *explicit_path;		/* -C or $BEARMAIL_CONFIG, else NULL:
					   passed on to programs we run */
	struct account *accounts;
	size_t naccounts;
};

/*
 * Load the configuration.  explicit_path is -C's argument or NULL (then
 * $BEARMAIL_CONFIG, then the two standard files).  A missing standard
 * file is not an error; a missing explicit one is.  On failure conf is
 * left empty (conf_free() is still safe).
 */
enum status conf_load(struct conf *conf, const char *explicit_path,
    struct errinfo *ei);

/* Free everything; wipes client secrets.  conf may be partially loaded. */
void conf_free(struct conf *conf);

/*
 * The account called name, or, with name NULL, the one `account =`
 * names, or the only one.  ST_CONFIG (or ST_USAGE for an unknown name
 * given on the command line) with a helpful text otherwise.
 */
enum status conf_account(const struct conf *conf, const char *name,
    const struct account **out, struct errinfo *ei);

/*
 * The first account whose `from` list matches addr (an exact address or
 * "*@domain", case-insensitive on the domain), or NULL.
 */
const struct account *conf_account_for(const struct conf *conf,
    const char *addr);

/* Names for messages and `status` output. */
const char *conf_provider_name(enum provider p);
const char *conf_mech_name(enum auth_mech m);
const char *conf_tls_name(enum tls_mode t);

/* Parse "5d", "12h", "30m", "45s" or plain seconds; false if malformed. */
bool conf_parse_duration(const char *s, time_t *out);

#endif
