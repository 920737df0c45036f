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
 * An account key set in an account's section beats the same key in
 * [defaults], whichever file either came from.  An empty value ("key =")
 * unsets the key at that level, so the built-in default applies.
 *
 * After conf_load() every account is complete: provider defaults are
 * filled in, so the rest of bearmail never asks "is this set?" for a
 * port, TLS mode, endpoint or mechanism.  The exceptions, each noted at
 * its field: hosts of oauth2/password accounts that did not set them,
 * the optional endpoints, and domain (see conf_domain()).
 *
 * Loading is cheap on purpose (bearmail runs once per message): no DNS,
 * and no file is opened but the configuration files and
 * client_secret_file.  Paths in values may start with "~/" (the caller's
 * home directory); they are stored expanded and always absolute.
 *
 * conf_load() trusts the environment (HOME, XDG_*, BEARMAIL_CONFIG)
 * only in a process that is not set-ID: when getauxval(AT_SECURE) is
 * set it reads the system file alone (or explicit_path, which the
 * program chose) and takes no path from the environment (the home
 * directory comes from the password database).  A privileged program
 * must still drop its privilege before it honours an explicit file (see
 * conf->system and conf->explicit_path); one that wants to honour
 * BEARMAIL_CONFIG after dropping passes its value as explicit_path.
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
enum deliver_kind { DELIVER_NONE, DELIVER_MAILDIR, DELIVER_MBOX, DELIVER_MDA };

/*
 * Where a server lives and how to talk TLS to it.  port and tls are
 * always set.  host is set for google and microsoft accounts; for
 * oauth2 and password accounts it is NULL unless configured, and the
 * program that needs it reports ST_CONFIG naming the account's file:line.
 * tls is TLSM_NONE only when host is loopback (conf_is_loopback()).
 */
struct endpoint {
	char *host;
	unsigned port;
	enum tls_mode tls;
};

/*
 * One account, fully resolved.  Every string is owned by the struct conf
 * and lives until conf_free().  Fields that do not apply to the
 * provider are NULL (e.g. password_command unless provider is password,
 * tenant unless microsoft).
 */
struct account {
	char *name;			/* section name: [A-Za-z0-9][A-Za-z0-9._@+-]*,
					   at most 48 bytes, safe in a file name */
	enum provider provider;
	char *user;			/* required */
	char *from;			/* default: user; may be a list of patterns */
	char *from_addr;		/* the address from `from`: its first entry
					   that is not a "*@domain" pattern, else
					   user */
	struct endpoint smtp, imap, pop;
	enum auth_mech auth;		/* xoauth2/oauthbearer for OAuth
					   providers, plain/login for password */
	char *client_id;		/* required for OAuth providers unless
					   service_account_key is set */
	char *client_secret;		/* from client_secret or client_secret_file,
					   or NULL (public client); wiped on free */
	char *client_secret_denied;	/* client_secret_file that this user may
					   not read, or NULL: on a system install
					   only the delivery side reads it, and
					   only a token request needs it */
	char *auth_endpoint;		/* NULL only for oauth2 without one */
	char *token_endpoint;		/* always set for OAuth providers */
	char *device_endpoint;		/* NULL: no device flow (google) */
	char *revoke_endpoint;		/* NULL: nothing to revoke at (microsoft) */
	char *scope;			/* NULL only for oauth2 without one */
	char *tenant;			/* microsoft only, default "common" */
	char *service_account_key, *impersonate; /* google, both or neither */
	char *password_command;		/* password provider only; required */
	char *ca_file;			/* NULL: the system bundle */
	char *domain;			/* NULL: not configured; use conf_domain() */
	int timeout;			/* seconds, default 60, 1..3600 */
	enum rewrite_from rewrite_from;
	char *deliver;			/* bearmail-fetch target ("maildir:/path",
					   paths expanded), or NULL */
	enum deliver_kind deliver_kind;	/* DELIVER_NONE when deliver is NULL */
	const char *deliver_arg;	/* points into deliver, after the colon */
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
	bool system;			/* queue_dir and state_dir default to the
					   system ones: true when running as root,
					   or when neither a personal nor an
					   explicit file was read */
	char *explicit_path;		/* -C or $BEARMAIL_CONFIG, else NULL:
					   passed on to programs we run */
	char *files[2];			/* the files actually read, in order */
	size_t nfiles;
	struct account *accounts;	/* in order of first definition */
	size_t naccounts;
};

/*
 * Load the configuration.  explicit_path is -C's argument or NULL (then
 * $BEARMAIL_CONFIG if set and not empty, then the two standard files).
 * A missing standard file is not an error; a missing explicit one is,
 * and so is any standard file that exists but cannot be read.  No file
 * at all, or no account, is not an error here: conf_account() reports
 * it to the programs that need an account.  Everything is ST_CONFIG
 * ("file:line: ..."), except ST_SYS for memory.  On failure conf is
 * left empty (conf_free() is still safe).
 */
enum status conf_load(struct conf *conf, const char *explicit_path,
    struct errinfo *ei);

/* Free everything; wipes client secrets.  conf may be partially loaded. */
void conf_free(struct conf *conf);

/*
 * The account called name, or, with name NULL, the one `account =`
 * names, or the only one.  ST_CONFIG (or ST_USAGE for an unknown name
 * given on the command line) with a helpful text otherwise.  *out
 * points into conf and lives until conf_free().
 */
enum status conf_account(const struct conf *conf, const char *name,
    const struct account **out, struct errinfo *ei);

/*
 * The first account (in definition order) whose `from` list matches
 * addr, or NULL.  An entry "local@domain" matches that address (local
 * part exact, domain case-insensitive); "*@domain" matches any address
 * at that domain.  addr may be bracketed ("<a@b>").
 */
const struct account *conf_account_for(const struct conf *conf,
    const char *addr);

/* Names for messages and `status` output. */
const char *conf_provider_name(enum provider p);
const char *conf_mech_name(enum auth_mech m);
const char *conf_tls_name(enum tls_mode t);

/*
 * Parse "5d", "12h", "30m", "45s" or plain seconds (digits, then at
 * most one lower-case unit); false if malformed or above 2^31-1 seconds.
 */
bool conf_parse_duration(const char *s, time_t *out);

/*
 * The account's domain: `domain` if set, else the host's name when it
 * holds a dot, else its canonical name from the resolver (one lookup
 * per process, cached), else NULL.  Kept out of conf_load() because it
 * may cost a DNS query.  The result lives until the process exits (or
 * as long as the account for a configured domain).  acct may be NULL.
 */
const char *conf_domain(const struct account *acct);

/*
 * True for "localhost", 127.0.0.0/8, ::1 (also in brackets) and
 * ::ffff:127.x.x.x: the hosts for which tls = none and http:// endpoints
 * are allowed.  No DNS.
 */
bool conf_is_loopback(const char *host);

/*
 * For tests only: read system_path instead of SYSCONFDIR/bearmail.conf
 * (NULL: the real one) and act as if the real uid were uid (-1: the real
 * one).  Not reachable from the environment.
 */
void conf_set_test_overrides(const char *system_path, long uid);

/*
 * For tests only: act as a set-ID process (1) or not (0) whatever
 * AT_SECURE says; -1 goes back to AT_SECURE.
 */
void conf_set_test_secure(int secure);

#endif
