/*
 * conf.c: read, merge and check the configuration; choose an account.
 *
 * The conf module is three files sharing conf_int.h: this one (files,
 * precedence, inih, sections, loading, account selection),
 * conf_resolve.c (pass two: accounts and globals, provider defaults) and
 * conf_check.c (per-key value checks).
 *
 * The only file that includes libinih.  Loading has two passes.  First
 * the files are read into raw settings, each value kept with the file
 * and line that set it, and checked on its own (syntax, ranges, enum
 * names: conf_check.c).  Then every account is resolved (its own
 * section, then [defaults], then its provider's defaults) and checked
 * as a whole (conf_resolve.c).  Every error names the file and line to
 * fix.
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
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include "conf_int.h"

#define CONF_MAX_LINE		4096	/* longest line, newline excluded */
#define CONF_MAX_ACCOUNTS	1000

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
bool
conf_secure(void)
{
	if (test_secure >= 0)
		return test_secure != 0;
	return getauxval(AT_SECURE) != 0;
}

bool
conf_sdup(char **dst, const char *s, struct errinfo *ei)
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
char *
conf_str3(const char *a, const char *b, const char *c, struct errinfo *ei)
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

/* ---- pass one: reading files ----------------------------------------- */

bool __attribute__((format(printf, 4, 5)))
conf_ld_error(struct loader *ld, const char *file, int line, const char *fmt,
    ...)
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

struct section *
conf_ld_find(struct loader *ld, const char *name)
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
		return conf_ld_error(ld, ld->file, ld->lineno,
		    "text after the section header [%s]", name);
	if (strcmp(name, "defaults") == 0)
		return true;
	if (strcasecmp(name, "defaults") == 0 ||
	    strcasecmp(name, "default") == 0)
		return conf_ld_error(ld, ld->file, ld->lineno,
		    "[%s]: did you mean [defaults]? (that name is reserved)",
		    name);
	if (!conf_valid_account_name(name))
		return conf_ld_error(ld, ld->file, ld->lineno, "[%s]: an "
		    "account name is 1 to %d letters, digits and . _ @ + -, "
		    "starting with a letter or digit", name, CONF_MAX_NAME);
	if (conf_ld_find(ld, name) != NULL)
		return true;
	if (ld->nsects >= CONF_MAX_ACCOUNTS)
		return conf_ld_error(ld, ld->file, ld->lineno,
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
	if (!conf_sdup(&s->name, name, ld->ei)) {
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
			conf_ld_error(ld, ld->file, ld->lineno, "NUL byte in "
			    "line");
			return NULL;
		}
		/* Room for this byte, a CR inih may strip, and the NUL. */
		if (len + 3 > (size_t)num) {
			conf_ld_error(ld, ld->file, ld->lineno,
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
		return conf_ld_error(ld, ld->file, ld->lineno, "'%s' before "
		    "any section: put it under [defaults] or an [account]",
		    name);
	if ((k = conf_key_lookup(name)) < 0) {
		if ((hint = conf_key_suggest(name)) != NULL)
			return conf_ld_error(ld, ld->file, ld->lineno,
			    "unknown key '%s' in [%s] (did you mean '%s'?)",
			    name, section, hint);
		return conf_ld_error(ld, ld->file, ld->lineno, "unknown key "
		    "'%s' in [%s]", name, section);
	}
	if (strcmp(section, "defaults") == 0)
		set = &ld->defaults[k];
	else if (conf_key_global(k))
		return conf_ld_error(ld, ld->file, ld->lineno, "'%s' is a "
		    "global key: set it in [defaults], not in [%s]", name,
		    section);
	else if ((s = conf_ld_find(ld, section)) == NULL)
		return conf_ld_error(ld, ld->file, ld->lineno, "[%s]: bad "
		    "section", section);
	else
		set = &s->set[k];
	if (set->value != NULL && set->file == ld->file)
		return conf_ld_error(ld, ld->file, ld->lineno, "'%s' is "
		    "already set in [%s] at line %d", name, section, set->line);
	if (*value != '\0' && !conf_check_value(k, value, why, sizeof(why)))
		return conf_ld_error(ld, ld->file, ld->lineno, "%s: %s", name,
		    why);
	free_secret(&set->value);
	if (!conf_sdup(&set->value, value, ld->ei)) {
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
	if (!conf_sdup(&ld->files[ld->nfiles], path, ld->ei)) {
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
	free(a->client_secret_denied);
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
		p = conf_str3(x, "/bearmail/config", NULL, ei);
	else if ((home = conf_home_dir()) != NULL)
		p = conf_str3(home, "/.config/bearmail/config", NULL, ei);
	else
		return NULL;
	*oom = p == NULL;
	return p;
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
		if (!conf_sdup(&c.explicit_path, explicit_path, ei)) {
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

	if (!conf_resolve_globals(&ld, &c)) {
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
		if (!conf_resolve_account(&ld, &ld.sects[i], &c.accounts[i])) {
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
		if (conf_from_walk(conf->accounts[i].from, from_matches, &m))
			return &conf->accounts[i];
	return NULL;
}
