/*
 * conf_int.h: internal to the conf module, shared by its three files
 * and included by nothing else: conf.c (pass one: reading the files into
 * raw settings; loading; choosing an account), conf_resolve.c (pass
 * two: resolving accounts and globals) and conf_check.c (per-key value
 * checks, the key table and value names).  Every external symbol here
 * carries the conf_ prefix; the types do not leave the module.
 */
#ifndef BEARMAIL_CONF_INT_H
#define BEARMAIL_CONF_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "conf.h"
#include "status.h"

#define CONF_MAX_NAME		48	/* longest account name */
#define CONF_MAX_TIMEOUT	3600
#define CONF_MAX_PATH		4096

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

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

/* A key: its name, how its value is checked, where it applies. */
struct keydef {
	const char *name;
	enum vtype type;
	unsigned providers;	/* account keys: the providers it applies to */
};

/* ---- conf_check.c ----------------------------------------------------- */

/* Every key, indexed by enum key. */
extern const struct keydef conf_keys[K__COUNT];

/* The names of enumerated values, indexed by their enum (conf.h). */
extern const char *const conf_provider_names[PROV_PASSWORD + 1];
extern const char *const conf_tls_names[TLSM_NONE + 1];
extern const char *const conf_mech_names[MECH_LOGIN + 1];
extern const char *const conf_queue_names[QUEUE_NEVER + 1];
extern const char *const conf_rewrite_names[REWRITE_ALWAYS + 1];

/* The index of v in names (n of them), or -1. */
int conf_name_lookup(const char *const *names, size_t n, const char *v);
#define CONF_LOOKUP(tab, v)	conf_name_lookup((tab), NELEM(tab), (v))

/* No control characters in s; with nospace, no spaces either. */
bool conf_clean(const char *s, bool nospace);

/* s is digits only, in [min, max]: true with *out set. */
bool conf_parse_ulong(const char *s, unsigned long min, unsigned long max,
    unsigned long *out);

/* A name that may stand in "[name]" (account names). */
bool conf_valid_account_name(const char *s);

/* The enum key called name, or -1. */
int conf_key_lookup(const char *name);

/* A known key close to an unknown name, for "did you mean", or NULL. */
const char *conf_key_suggest(const char *name);

/* Key k belongs in [defaults] only. */
bool conf_key_global(int k);

/*
 * Check value v of key k on its own (syntax, range, names).  False with
 * the reason in why (whysz bytes), never quoting a secret.
 */
bool conf_check_value(int k, const char *v, char *why, size_t whysz);

/*
 * Call fn for each entry of the comma-separated list (blanks around
 * an entry trimmed) with its start, length and arg, until fn returns
 * true: then true.
 */
bool conf_from_walk(const char *list,
    bool (*fn)(const char *, size_t, void *), void *arg);

/* ---- conf.c: the loader ----------------------------------------------- */

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

/* True in a set-ID process (or as the tests ask): no personal files. */
bool conf_secure(void);

/* *dst = a copy of s (NULL stays NULL); false on no memory (ei set). */
bool conf_sdup(char **dst, const char *s, struct errinfo *ei);

/* a, b and c (b and c may be NULL) as one new string, or NULL (ei set). */
char *conf_str3(const char *a, const char *b, const char *c,
    struct errinfo *ei);

/* Record the error "file:line: ..." in ld (ST_CONFIG); returns false. */
bool conf_ld_error(struct loader *ld, const char *file, int line,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The section called name, or NULL. */
struct section *conf_ld_find(struct loader *ld, const char *name);

/* ---- conf_resolve.c --------------------------------------------------- */

/* The home directory ($HOME unless conf_secure(), else passwd), or NULL. */
const char *conf_home_dir(void);

/* Fill a from section s and [defaults]; false with ld's error set. */
bool conf_resolve_account(struct loader *ld, const struct section *s,
    struct account *a);

/* Fill c's global settings from [defaults]; false with ld's error set. */
bool conf_resolve_globals(struct loader *ld, struct conf *c);

#endif
