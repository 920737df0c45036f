/*
 * cmd_sendmail.c: bearmail, the sendmail-compatible submission program.
 *
 * Options and wiring only: the message rewrite is msg.c, the aliases
 * aliases.c, SMTP smtp.c, credentials cred.c.  Called as sendmail or
 * send-mail it submits, as mailq it lists the queue (-bp), as newaliases
 * it checks the aliases file (-bi).
 *
 * -bs speaks the server side of RFC 5321 on standard input and output
 * (the subset a local submission pipe needs: EHLO/HELO, MAIL, RCPT,
 * DATA, RSET, NOOP, VRFY, QUIT), and submits each accepted message the
 * normal way before it answers the final dot, so a 250 means delivered.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_GETRANDOM
#include <sys/random.h>
#endif

#include "aliases.h"
#include "buf.h"
#include "conf.h"
#include "conn.h"
#include "cred.h"
#include "log.h"
#include "msg.h"
#include "rfc5322.h"
#include "smtp.h"
#include "status.h"
#include "tls.h"

#define RCPT_ARGS_MAX	ALIASES_RCPTS_MAX
#define ENVID_MAX	100	/* RFC 3461: at most 100 characters */
#define BS_LINE_MAX	4096	/* -bs command line */

enum mode { MODE_SUBMIT, MODE_QUEUE_LIST, MODE_QUEUE_RUN, MODE_SMTP,
    MODE_ALIASES, MODE_HELP, MODE_VERSION };

struct opts {
	enum mode mode;
	bool extract;		/* -t */
	bool dot_ok;		/* -i, -oi: a "." line is data */
	bool verbose;		/* -v */
	bool utf8;		/* -U */
	const char *sender;	/* -f, -r: as given */
	const char *fullname;	/* -F */
	const char *account;	/* -a, --account */
	const char *config;	/* -C */
	const char *qid;	/* -qI */
	enum smtp_body body;	/* -B */
	unsigned notify;	/* -N */
	enum smtp_ret ret;	/* -R */
	const char *envid;	/* -V */
	char deliver;		/* -od: 'i', 'b', 'q', or 0 */
	char **rcpts;		/* command-line recipients (in argv) */
	size_t nrcpts;
};

/* What one delivery needs, whichever way the message came. */
struct job {
	struct conf *conf;
	const struct opts *o;
	const struct account *acct;
	const struct aliases *aliases;
	const char *domain;		/* conf_domain(acct), may be NULL */
	const char *local_names[3];	/* this host's names */
	char *sender;			/* envelope sender ("" = <>) */
	struct aliases_rcpts rcpts;	/* final recipients */
	char qid[16];			/* log identifier */
};

/*
 * Messages always say "bearmail", whatever name we were called by: a
 * cron mail saying "sendmail: ..." would not tell which sendmail.
 */
static const char *const progname = "bearmail";

static void __attribute__((format(printf, 1, 2)))
say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	n = snprintf(line, sizeof(line), "%s: ", progname);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}

static int __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	say("%s (try --help)", msg);
	return EX_USAGE;
}

static void
help(void)
{
	printf("Usage: %s [options] [--] [recipient ...]\n"
	    "Reads one message on standard input and submits it over SMTP\n"
	    "with OAuth 2.0 (or a password).  Also runs as sendmail,\n"
	    "send-mail, mailq (-bp) and newaliases (-bi).\n\n"
	    "  -t              add recipients from To, Cc, Bcc (or Resent-*)\n"
	    "  -i, -oi         a line holding one dot is data\n"
	    "  -f ADDR, -r ADDR  envelope sender (<> for none)\n"
	    "  -F NAME         full name for a From header bearmail adds\n"
	    "  -a NAME, --account=NAME  the account to send through\n"
	    "  -N never|failure,delay,success  DSN notify\n"
	    "  -R hdrs|full    DSN return   -V ENVID  DSN envelope id\n"
	    "  -B 8BITMIME|7BIT  body type  -U  SMTPUTF8\n"
	    "  -bm             submit (default)\n"
	    "  -bs             SMTP dialogue on standard input and output\n"
	    "  -bi             check the aliases file\n"
	    "  -bp, -q, -qIID  the queue (not available yet)\n"
	    "  -odi, -odb, -odq  delivery mode\n"
	    "  -v              protocol transcript on standard error\n"
	    "  -C FILE         configuration file\n"
	    "  --help, --version\n"
	    "Ignored for compatibility: -oX..., -O opt=val, -A x, -G, -h N,\n"
	    "  -L tag, -m, -n, -x, -q<interval>, -X file, -bd, -bl.\n"
	    "See bearmail(8).\n", progname);
}

static void
version(void)
{
	printf("bearmail %s\n"
	    "libraries: mbedTLS (TLS), libinih (configuration); "
	    "no libcurl in this program\n", PACKAGE_VERSION);
}

/* ---- command line ---------------------------------------------------- */

/* Reject what could smuggle a header line or another argument. */
static bool
arg_safe(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static int
set_notify(struct opts *o, const char *v)
{
	const char *w = v, *e;
	size_t n;

	o->notify = 0;
	if (strcasecmp(v, "never") == 0) {
		o->notify = SMTP_NOTIFY_NEVER;
		return 0;
	}
	for (;;) {
		e = strchr(w, ',');
		n = e != NULL ? (size_t)(e - w) : strlen(w);
		if (n == 7 && strncasecmp(w, "success", n) == 0)
			o->notify |= SMTP_NOTIFY_SUCCESS;
		else if (n == 7 && strncasecmp(w, "failure", n) == 0)
			o->notify |= SMTP_NOTIFY_FAILURE;
		else if (n == 5 && strncasecmp(w, "delay", n) == 0)
			o->notify |= SMTP_NOTIFY_DELAY;
		else
			return usage_error("-N: \"%s\" is not never or a list "
			    "of failure, delay, success", v);
		if (e == NULL)
			return 0;
		w = e + 1;
	}
}

/* Whether s is a -q interval: digits and units, "30m", "1h30m", "15". */
static bool
is_interval(const char *s)
{
	bool digit = false;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s >= '0' && *s <= '9')
			digit = true;
		else if (strchr("smhdw", *s) != NULL && digit)
			digit = false;
		else
			return false;
	}
	return true;
}

/*
 * One option letter with its value (attached or the next argument).
 * Returns 0, or the exit code of a usage error.
 */
static int
opt_value(struct opts *o, char c, const char *v)
{
	switch (c) {
	case 'f':
	case 'r':
		o->sender = v;
		break;
	case 'F':
		o->fullname = v;
		break;
	case 'a':
		o->account = v;
		break;
	case 'C':
		o->config = v;
		break;
	case 'N':
		return set_notify(o, v);
	case 'R':
		if (strcasecmp(v, "hdrs") == 0)
			o->ret = SMTP_RET_HDRS;
		else if (strcasecmp(v, "full") == 0)
			o->ret = SMTP_RET_FULL;
		else
			return usage_error("-R: \"%s\" is not hdrs or full", v);
		break;
	case 'V':
		if (*v == '\0' || strlen(v) > ENVID_MAX)
			return usage_error("-V: bad envelope id \"%s\"", v);
		for (const char *p = v; *p != '\0'; p++)
			if ((unsigned char)*p < 33 || (unsigned char)*p > 126)
				return usage_error("-V: envelope id \"%s\" "
				    "must be printable ASCII", v);
		o->envid = v;
		break;
	case 'B':
		if (strcasecmp(v, "8BITMIME") == 0)
			o->body = SMTP_BODY_8BITMIME;
		else if (strcasecmp(v, "7BIT") == 0)
			o->body = SMTP_BODY_7BIT;
		else
			return usage_error("-B: \"%s\" is not 8BITMIME or 7BIT",
			    v);
		break;
	case 'b':
		if (strcmp(v, "m") == 0)
			o->mode = MODE_SUBMIT;
		else if (strcmp(v, "p") == 0)
			o->mode = MODE_QUEUE_LIST;
		else if (strcmp(v, "s") == 0)
			o->mode = MODE_SMTP;
		else if (strcmp(v, "i") == 0)
			o->mode = MODE_ALIASES;
		else if (strcmp(v, "d") == 0 || strcmp(v, "l") == 0)
			;	/* daemon modes: accepted, ignored */
		else
			return usage_error("-b%s: mode not supported", v);
		break;
	case 'o':
		if (strcmp(v, "i") == 0)
			o->dot_ok = true;
		else if (v[0] == 'd' && v[1] != '\0' && v[2] == '\0' &&
		    strchr("ibq", v[1]) != NULL)
			o->deliver = v[1];
		/* -oem, -oee, -oep, -oeq, -oew and every other -oX: ignored */
		break;
	case 'A': case 'h': case 'L': case 'O': case 'X':
		break;		/* accepted and ignored */
	}
	if (!arg_safe(v))
		return usage_error("-%c: control characters in the argument",
		    c);
	return 0;
}

/* Letters that take a value, attached or in the next argument. */
static const char value_opts[] = "frFaCNRVBboAhLOX";

/*
 * One argument of option letters ("-ti", "-FCronDaemon", "-oi"): letters
 * without a value may be grouped; a letter with a value takes the rest
 * of the argument, or the next one (*i moves past it).
 */
static int
parse_cluster(struct opts *o, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *p;

	for (p = a + 1; *p != '\0'; p++) {
		switch (*p) {
		case 't':
			o->extract = true;
			continue;
		case 'i':
			o->dot_ok = true;
			continue;
		case 'v':
			o->verbose = true;
			continue;
		case 'U':
			o->utf8 = true;
			continue;
		case 'G': case 'm': case 'n': case 'x':
			continue;	/* accepted and ignored */
		case 'q':
			/* -q, -qIID, -q<interval> (ignored) */
			if (p[1] == '\0' || (p[1] == 'I' && p[2] != '\0')) {
				o->mode = MODE_QUEUE_RUN;
				o->qid = p[1] != '\0' ? p + 2 : NULL;
			} else if (!is_interval(p + 1))
				return usage_error("option %s not supported",
				    a);
			return 0;
		}
		if (strchr(value_opts, *p) == NULL)
			return usage_error("unknown option %s", a);
		if (p[1] != '\0')
			return opt_value(o, *p, p + 1);
		if (*i + 1 >= argc)
			return usage_error("option -%c needs a value", *p);
		return opt_value(o, *p, argv[++*i]);
	}
	return 0;
}

static int
parse_long(struct opts *o, int argc, char **argv, int *i)
{
	const char *a = argv[*i];

	if (strcmp(a, "--help") == 0)
		o->mode = MODE_HELP;
	else if (strcmp(a, "--version") == 0)
		o->mode = MODE_VERSION;
	else if (strncmp(a, "--account=", 10) == 0)
		return opt_value(o, 'a', a + 10);
	else if (strcmp(a, "--account") == 0) {
		if (*i + 1 >= argc)
			return usage_error("%s needs a value", a);
		return opt_value(o, 'a', argv[++*i]);
	} else
		return usage_error("unknown option %s", a);
	return 0;
}

/*
 * Options may come anywhere before "--" (as with GNU getopt, which the
 * usual Linux sendmail follows); other arguments are recipients.
 */
static int
parse_args(int argc, char **argv, struct opts *o)
{
	bool dashdash = false;
	int i, r = 0;

	if ((o->rcpts = calloc((size_t)argc + 1, sizeof(char *))) == NULL) {
		say("out of memory");
		return EX_OSERR;
	}
	for (i = 1; i < argc && r == 0; i++) {
		const char *a = argv[i];

		if (dashdash || a[0] != '-' || a[1] == '\0')
			o->rcpts[o->nrcpts++] = argv[i];
		else if (strcmp(a, "--") == 0)
			dashdash = true;
		else if (a[1] == '-')
			r = parse_long(o, argc, argv, &i);
		else
			r = parse_cluster(o, argc, argv, &i);
	}
	return r;
}

/* ---- recipients and sender ------------------------------------------- */

/* The domain of addr if it names this host ("root@localhost"), else NULL. */
static bool
is_local_domain(const struct job *j, const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t i;

	if (at == NULL)
		return true;
	if (strcasecmp(at + 1, "localhost") == 0 ||
	    strcasecmp(at + 1, "localhost.localdomain") == 0)
		return true;
	for (i = 0; j->local_names[i] != NULL; i++)
		if (strcasecmp(at + 1, j->local_names[i]) == 0)
			return true;
	return false;
}

/*
 * Add one parsed recipient: local names (bare, or on this host's own
 * name) go through the aliases and get the domain; others go as they are.
 */
static enum status
add_rcpt(struct job *j, const char *addr, struct errinfo *ei)
{
	struct buf local;
	enum status st;
	const char *at;

	if (!is_local_domain(j, addr))
		return aliases_rcpts_add(&j->rcpts, addr, ei);
	at = strrchr(addr, '@');
	buf_init(&local, RFC5322_ADDR_MAX + 1);
	if ((st = buf_add(&local, addr, at != NULL ? (size_t)(at - addr) :
	    strlen(addr), ei)) == ST_OK)
		st = aliases_expand(j->aliases, local.data, j->domain,
		    &j->rcpts, ei);
	buf_free(&local);
	return st;
}

/* Command-line recipients: each argument is an address list. */
static enum status
add_arg_rcpts(struct job *j, char **args, size_t n, struct errinfo *ei)
{
	struct rfc5322_list l = { NULL, 0 };
	struct errinfo tmp;
	enum status st = ST_OK;
	size_t i, k;

	for (i = 0; i < n; i++) {
		if (!arg_safe(args[i]) || args[i][0] == '-')
			return st_error(ei, ST_USAGE, "bad recipient \"%s\"",
			    arg_safe(args[i]) ? args[i] : "(control bytes)");
		st_clear(&tmp);
		if (rfc5322_parse_list(args[i], strlen(args[i]), RCPT_ARGS_MAX,
		    0, &l, &tmp) != ST_OK) {
			st = st_error(ei, ST_USAGE, "bad recipient \"%s\": %s",
			    args[i], tmp.msg);
			goto out;
		}
	}
	for (k = 0; k < l.n; k++)
		if ((st = add_rcpt(j, l.v[k].addr, ei)) != ST_OK)
			goto out;
out:
	rfc5322_list_free(&l);
	return st;
}

/*
 * The envelope sender as given (-f, MAIL FROM) into a bare address ("" for
 * <>).  Bad syntax is ST_USAGE.
 */
static enum status
parse_sender(const char *given, char **out, struct errinfo *ei)
{
	struct rfc5322_addr a;
	struct errinfo tmp;

	memset(&a, 0, sizeof(a));
	*out = NULL;
	if (!arg_safe(given) || given[0] == '-')
		return st_error(ei, ST_USAGE, "bad sender address");
	if (given[0] == '\0' || strcmp(given, "<>") == 0) {
		if ((*out = strdup("")) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
		return ST_OK;
	}
	st_clear(&tmp);
	if (rfc5322_parse_one(given, strlen(given), RFC5322_NULL_OK, &a, &tmp)
	    != ST_OK)
		return st_error(ei, ST_USAGE, "bad sender \"%s\": %s", given,
		    tmp.msg);
	*out = a.addr;
	a.addr = NULL;
	rfc5322_addr_free(&a);
	return ST_OK;
}

/*
 * Choose the account: -a, else the one whose `from` matches the sender,
 * else the default.  Then settle the envelope sender per rewrite_from.
 */
static enum status
setup_job(struct job *j, const char *given_sender, struct errinfo *ei)
{
	static char host[256];
	const struct account *a = NULL;
	char *s = NULL;
	enum status st;
	size_t n = 0;

	if (given_sender != NULL &&
	    (st = parse_sender(given_sender, &s, ei)) != ST_OK)
		return st;
	if (j->o->account == NULL && s != NULL && s[0] != '\0')
		a = conf_account_for(j->conf, s);
	if (a == NULL &&
	    (st = conf_account(j->conf, j->o->account, &a, ei)) != ST_OK) {
		free(s);
		return st;
	}
	j->acct = a;
	j->domain = conf_domain(a);
	if (gethostname(host, sizeof(host) - 1) == 0 && host[0] != '\0')
		j->local_names[n++] = host;
	if (a->domain == NULL && j->domain != NULL)
		j->local_names[n++] = j->domain;
	j->local_names[n] = NULL;

	if (s == NULL) {
		s = strdup(a->from_addr);
	} else if (msg_should_rewrite(a->rewrite_from, s, j->local_names)) {
		free(s);
		s = strdup(a->from_addr);
	} else if (s[0] != '\0' && strchr(s, '@') == NULL) {
		/* rewrite_from = never still needs a domain for SMTP. */
		struct buf q;

		buf_init(&q, RFC5322_ADDR_MAX + 1);
		if (j->domain == NULL || buf_printf(&q, ei, "%s@%s", s,
		    j->domain) != ST_OK) {
			buf_free(&q);
			free(s);
			return st_error(ei, ST_USAGE, "sender has no "
			    "domain and none is configured");
		}
		free(s);
		s = buf_steal(&q, ei);
	}
	if (s == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	j->sender = s;
	return ST_OK;
}

/* The display name for a From we add: -F, else the user's full name. */
static const char *
full_name(const struct opts *o, char *buf, size_t bufsz)
{
	struct passwd *pw;
	size_t n;

	if (o->fullname != NULL)
		return o->fullname;
	if ((pw = getpwuid(getuid())) == NULL || pw->pw_gecos == NULL)
		return NULL;
	n = strcspn(pw->pw_gecos, ",");
	if (n == 0 || n >= bufsz)
		return NULL;
	memcpy(buf, pw->pw_gecos, n);
	buf[n] = '\0';
	return arg_safe(buf) ? buf : NULL;
}

static void
make_qid(char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char r[5];
	size_t i;
	int fd;
	bool got = false;

#ifdef HAVE_GETRANDOM
	got = getrandom(r, sizeof(r), 0) == (ssize_t)sizeof(r);
#endif
	if (!got && (fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) >= 0) {
		got = read(fd, r, sizeof(r)) == (ssize_t)sizeof(r);
		close(fd);
	}
	for (i = 0; !got && i < sizeof(r); i++)
		r[i] = (unsigned char)(getpid() >> (i * 3) ^ time(NULL) >> i);
	for (i = 0; i < sizeof(r) && 2 * i + 2 < outsz; i++) {
		out[2 * i] = hex[r[i] >> 4];
		out[2 * i + 1] = hex[r[i] & 15];
	}
	out[2 * i] = '\0';
}

static int
tmp_file(struct errinfo *ei)
{
	const char *dir = getenv("TMPDIR");
	struct buf path;
	int fd;

	if (dir == NULL || dir[0] == '\0')
		dir = "/tmp";
	buf_init(&path, PATH_MAX);
	if (buf_printf(&path, ei, "%s/bearmail.XXXXXX", dir) != ST_OK)
		return -1;
	if ((fd = mkstemp(path.data)) < 0)
		st_errno(ei, ST_SYS, "temporary file in %s", dir);
	else
		unlink(path.data);
	buf_free(&path);
	return fd;
}

/* ---- delivery -------------------------------------------------------- */

static void
note(const char *text)
{
	log_wire(LOG_NOTE, text, strlen(text), false);
}

static double
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
log_result(const struct job *j, const char *relay, double t0,
    const char *status, const char *text, const char *const *rcpts, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		log_info("%s: to=<%s>, relay=%s, delay=%.2f, status=%s (%s)",
		    j->qid, rcpts[i], relay, now_mono() - t0, status, text);
}

/* Authenticate, with one forced refresh and retry for a refused token. */
static enum status
authenticate(struct job *j, struct smtp **sp, const struct smtp_opts *so,
    struct errinfo *ei)
{
	const struct account *a = j->acct;
	const char *user = a->impersonate != NULL ? a->impersonate : a->user;
	char *secret = NULL;
	bool rejected = false;
	struct errinfo first;
	enum status st;

	if ((st = cred_get(j->conf, a, false, &secret, ei)) != ST_OK)
		return st;
	st_clear(&first);
	st = smtp_auth(*sp, a->auth, user, secret, &rejected, &first);
	cred_free(secret);
	secret = NULL;
	if (st != ST_AUTH || !rejected) {
		if (st != ST_OK) {
			st_error(ei, first.st, "%s", first.msg);
			ei->code = first.code;
		}
		return st;
	}
	/* The server refused the token: refresh once, try once more. */
	note("token refused: refreshing it once");
	if ((st = cred_get(j->conf, a, true, &secret, ei)) != ST_OK)
		return st;
	if (!smtp_usable(*sp)) {
		smtp_close(*sp);
		*sp = NULL;
		if ((st = smtp_open(sp, so, ei)) != ST_OK)
			goto out;
	}
	st = smtp_auth(*sp, a->auth, user, secret, NULL, ei);
	if ((st == ST_NET || st == ST_TEMPFAIL) && !smtp_usable(*sp)) {
		smtp_close(*sp);
		*sp = NULL;
		st_clear(ei);
		if ((st = smtp_open(sp, so, ei)) == ST_OK)
			st = smtp_auth(*sp, a->auth, user, secret, NULL, ei);
	}
out:
	cred_free(secret);
	return st;
}

/*
 * Submit the message in fd (canonical, from offset 0) to every recipient
 * of j, or to none.  Logs one line per recipient.
 */
static enum status
deliver(struct job *j, int fd, const struct msg_info *info,
    struct errinfo *ei)
{
	const struct account *a = j->acct;
	const struct opts *o = j->o;
	struct tls_ctx *ctx = NULL;
	struct smtp *s = NULL;
	struct smtp_opts so;
	struct smtp_envelope env;
	struct smtp_result res;
	struct buf relay;
	enum status st;
	double t0 = now_mono();
	size_t i;

	memset(&res, 0, sizeof(res));
	buf_init(&relay, 512);
	if (a->smtp.host == NULL) {
		st = st_error(ei, ST_CONFIG,
		    "%s:%d: account %s has no smtp_host",
		    a->file != NULL ? a->file : "?", a->line, a->name);
		goto out;
	}
	buf_printf(&relay, NULL, "%s:%u", a->smtp.host, a->smtp.port);
	if (a->smtp.tls != TLSM_NONE &&
	    (st = tls_ctx_new(&ctx, a->ca_file, ei)) != ST_OK)
		goto out;
	memset(&so, 0, sizeof(so));
	so.host = a->smtp.host;
	so.port = a->smtp.port;
	so.tls = a->smtp.tls;
	so.timeout = a->timeout;
	so.ehlo_name = j->domain;
	so.tls_ctx = ctx;
	if ((st = smtp_open(&s, &so, ei)) != ST_OK)
		goto out;
	buf_reset(&relay);
	buf_printf(&relay, NULL, "%s[%s]:%u", a->smtp.host,
	    conn_peer(smtp_conn(s)), a->smtp.port);
	if ((st = authenticate(j, &s, &so, ei)) != ST_OK)
		goto out;

	memset(&env, 0, sizeof(env));
	env.sender = j->sender;
	env.rcpts = (const char *const *)j->rcpts.v;
	env.nrcpts = j->rcpts.n;
	env.size = (uint64_t)info->size;
	if (info->body_8bit || info->hdr_8bit)
		env.body = SMTP_BODY_8BITMIME;
	else
		env.body = o->body;
	env.smtputf8 = o->utf8 || info->addr_utf8;
	env.notify = o->notify;
	env.ret = o->ret;
	env.envid = o->envid;
	if (lseek(fd, 0, SEEK_SET) != 0) {
		st = st_errno(ei, ST_SYS, "rewinding the message");
		goto out;
	}
	st = smtp_send(s, &env, fd, &res, ei);
	if (st == ST_OK) {
		log_info("%s: from=<%s>, size=%lld, nrcpt=%zu", j->qid,
		    j->sender, (long long)info->size, j->rcpts.n);
		log_result(j, relay.data, t0, "sent", res.text,
		    (const char *const *)j->rcpts.v, j->rcpts.n);
		smtp_quit(s, NULL);
		goto out;
	}
	/* Each recipient's fate: its own refusal, or the transaction's. */
	for (i = 0; res.rcpt != NULL && i < res.nrcpts && i < j->rcpts.n; i++) {
		bool own = res.rcpt[i].st != ST_OK && res.rcpt[i].code != 0;
		enum status rs = own ? res.rcpt[i].st : st;

		log_info("%s: to=<%s>, relay=%s, delay=%.2f, status=%s (%s%s)",
		    j->qid, j->rcpts.v[i], relay.data, now_mono() - t0,
		    st_retryable(rs) ? "deferred" : "bounced",
		    own ? "" : "not sent: ", own ? res.rcpt[i].text : ei->msg);
	}
	if (smtp_usable(s))
		smtp_quit(s, NULL);
out:
	if (st != ST_OK && res.rcpt == NULL)
		log_result(j, relay.data, t0, st_retryable(st) ? "deferred" :
		    "bounced", ei->msg, (const char *const *)j->rcpts.v,
		    j->rcpts.n);
	smtp_result_free(&res);
	smtp_close(s);
	tls_ctx_free(ctx);
	buf_free(&relay);
	return st;
}

/*
 * Read the message from in, rewrite it into a temporary file, add the
 * header recipients (extract, -t) to those j holds already (command
 * line, or RCPT in -bs), and deliver.
 */
static enum status
submit(struct job *j, int in, bool extract, bool dot_ends, struct errinfo *ei)
{
	const struct opts *o = j->o;
	struct msg_opts mo;
	struct msg_info info;
	char gecos[256];
	enum status st;
	size_t i;
	int fd;

	memset(&info, 0, sizeof(info));
	if ((fd = tmp_file(ei)) < 0)
		return ei->st;
	memset(&mo, 0, sizeof(mo));
	mo.dot_ends = dot_ends;
	mo.want_rcpts = extract;
	/* SPEC: an added or rewritten From gets the account's `from`. */
	mo.from_addr = j->acct->from_addr;
	mo.from_name = full_name(o, gecos, sizeof(gecos));
	/* No host domain: the account's own beats "localhost" in an ID. */
	mo.domain = j->domain;
	if (mo.domain == NULL && strrchr(j->acct->from_addr, '@') != NULL)
		mo.domain = strrchr(j->acct->from_addr, '@') + 1;
	mo.local_names = j->local_names;
	mo.rewrite = j->acct->rewrite_from;
	if ((st = msg_rewrite(in, fd, &mo, &info, ei)) != ST_OK) {
		st_context(ei, "message not accepted");
		goto out;
	}
	for (i = 0; i < info.rcpts.n; i++)
		if ((st = add_rcpt(j, info.rcpts.v[i].addr, ei)) != ST_OK)
			goto out;
	if (j->rcpts.n == 0) {
		st = st_error(ei, ST_USAGE, "no recipients");
		goto out;
	}
	if (o->deliver == 'q' || o->deliver == 'b')
		note("no queue yet: delivering now");
	st = deliver(j, fd, &info, ei);
out:
	msg_info_free(&info);
	close(fd);
	return st;
}

static void
job_free(struct job *j)
{
	free(j->sender);
	j->sender = NULL;
	aliases_rcpts_free(&j->rcpts);
}

/* ---- -bs: SMTP on standard input and output -------------------------- */

struct bs {
	const struct opts *o;
	struct conf *conf;
	const struct aliases *aliases;
	const char *host;		/* our name in replies */
	int fd;
	char buf[BS_LINE_MAX * 2];
	size_t off, len;
	bool eof;
	char *sender;			/* MAIL FROM; NULL: none yet */
	struct aliases_rcpts rcpts;	/* RCPT TO */
};

/* The next input byte; false at EOF. */
static bool
bs_getc(struct bs *b, char *c)
{
	ssize_t got;

	while (b->off == b->len) {
		if (b->eof)
			return false;
		got = read(b->fd, b->buf, sizeof(b->buf));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			b->eof = true;
			return false;
		}
		b->off = 0;
		b->len = (size_t)got;
	}
	*c = b->buf[b->off++];
	return true;
}

/*
 * One command line, CRLF or LF stripped.  A longer line than linesz is
 * consumed whole and flagged (*toolong).  false at EOF.
 */
static bool
bs_line(struct bs *b, char *line, size_t linesz, bool *toolong)
{
	size_t n = 0;
	char c;
	bool any = false;

	*toolong = false;
	while (bs_getc(b, &c)) {
		any = true;
		if (c == '\n')
			break;
		if (n + 1 < linesz)
			line[n++] = c;
		else
			*toolong = true;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	return any;
}

/* Write a chunk of DATA to fd unless the bound is passed (*bad). */
static void
bs_put(int fd, struct buf *out, off_t *total, bool *bad)
{
	*total += (off_t)out->len;
	if (*total > MSG_SIZE_MAX ||
	    write(fd, out->data, out->len) != (ssize_t)out->len)
		*bad = true;
	buf_reset(out);
}

/*
 * DATA: copy the lines up to "." into fd, dot-unstuffed, each ending in
 * LF.  Lines of any length pass (msg_rewrite() deals with them).  false
 * at EOF before the final dot; *bad when fd could not take it all.
 */
static bool
bs_data(struct bs *b, int fd, bool *bad)
{
	struct buf out;
	bool bol = true, dot = false, ok = false;
	off_t total = 0;
	char c;

	*bad = false;
	buf_init(&out, 64 * 1024);
	while (bs_getc(b, &c)) {
		if (bol && c == '.') {
			dot = true;	/* a stuffed dot, or the end */
			bol = false;
			continue;
		}
		bol = false;
		if (c == '\n') {
			if (dot && (out.len == 0 ||
			    (out.len == 1 && out.data[0] == '\r'))) {
				ok = true;
				break;
			}
			if (out.len > 0 && out.data[out.len - 1] == '\r')
				out.len--;
			buf_add(&out, "\n", 1, NULL);
			bs_put(fd, &out, &total, bad);
			bol = true;
			dot = false;
			continue;
		}
		if (out.len + 2 >= out.max) {
			bs_put(fd, &out, &total, bad);
			dot = false;	/* a long line is no end marker */
		}
		buf_add(&out, &c, 1, NULL);
	}
	buf_free(&out);
	return ok;
}

static void __attribute__((format(printf, 1, 2)))
bs_reply(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	char *p;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* Replies carry a server's text: one line each, whatever it held. */
	for (p = line; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20)
			*p = '?';
	printf("%s\r\n", line);
	fflush(stdout);
}

/* The address between '<' and '>' after "FROM:" or "TO:", copied. */
static bool
bs_path(const char *arg, const char *kw, char *out, size_t outsz)
{
	size_t kl = strlen(kw), n;
	const char *gt, *colon;

	if (strncasecmp(arg, kw, kl) != 0)
		return false;
	arg += kl;
	while (*arg == ' ')
		arg++;
	if (*arg != '<' || (gt = strchr(arg, '>')) == NULL)
		return false;
	n = (size_t)(gt - arg - 1);
	if (n >= outsz)
		return false;
	memcpy(out, arg + 1, n);
	out[n] = '\0';
	/* Drop a source route ("@a,@b:user@c"). */
	if (out[0] == '@' && (colon = strchr(out, ':')) != NULL)
		memmove(out, colon + 1, strlen(colon + 1) + 1);
	return arg_safe(out);
}

/* The reply for a failed submission: 4xx when it may pass, else 5xx. */
static const char *
bs_reply_code(enum status st)
{
	switch (st) {
	case ST_NOUSER:
		return "550 5.1.1";
	case ST_LIMIT:
		return "552 5.3.4";
	case ST_DATAERR:
		return "554 5.6.0";
	case ST_USAGE:
		return "554 5.5.0";
	default:
		return st_retryable(st) ? "451 4.3.0" : "554 5.0.0";
	}
}

static void
bs_reset(struct bs *b)
{
	free(b->sender);
	b->sender = NULL;
	aliases_rcpts_free(&b->rcpts);
}

static void
bs_mail(struct bs *b, const char *arg)
{
	char addr[RFC5322_ADDR_MAX + 8];

	if (b->sender != NULL)
		bs_reply("503 5.5.1 Error: nested MAIL command");
	else if (!bs_path(arg, "FROM:", addr, sizeof(addr)))
		bs_reply("501 5.5.4 Syntax: MAIL FROM:<address>");
	else if ((b->sender = strdup(addr)) == NULL)
		bs_reply("451 4.3.0 Out of memory");
	else
		bs_reply("250 2.1.0 Ok");
}

static void
bs_rcpt(struct bs *b, const char *arg)
{
	char addr[RFC5322_ADDR_MAX + 8];

	if (b->sender == NULL)
		bs_reply("503 5.5.1 Error: need MAIL command");
	else if (!bs_path(arg, "TO:", addr, sizeof(addr)) ||
	    addr[0] == '\0' || addr[0] == '-')
		bs_reply("501 5.5.4 Syntax: RCPT TO:<address>");
	else if (aliases_rcpts_add(&b->rcpts, addr, NULL) != ST_OK)
		bs_reply("452 4.5.3 Too many recipients");
	else
		bs_reply("250 2.1.5 Ok");
}

/*
 * DATA: take the message, then submit it the normal way; the reply to
 * the final dot says how that went.  false at EOF inside DATA.
 */
static bool
bs_data_cmd(struct bs *b)
{
	struct errinfo ei;
	struct job j;
	enum status st;
	bool bad;
	size_t i;
	int fd;

	if (b->sender == NULL || b->rcpts.n == 0) {
		bs_reply("503 5.5.1 Error: need RCPT command");
		return true;
	}
	st_clear(&ei);
	if ((fd = tmp_file(&ei)) < 0) {
		bs_reply("451 4.3.0 %s", ei.msg);
		return true;
	}
	bs_reply("354 End data with <CR><LF>.<CR><LF>");
	if (!bs_data(b, fd, &bad)) {
		close(fd);
		return false;		/* nothing is sent */
	}
	memset(&j, 0, sizeof(j));
	j.conf = b->conf;
	j.o = b->o;
	j.aliases = b->aliases;
	make_qid(j.qid, sizeof(j.qid));
	if (bad)
		st = st_error(&ei, ST_LIMIT, "message too large");
	else if (lseek(fd, 0, SEEK_SET) != 0)
		st = st_errno(&ei, ST_SYS, "rewinding the message");
	else
		st = setup_job(&j, b->sender, &ei);
	for (i = 0; st == ST_OK && i < b->rcpts.n; i++)
		st = add_rcpt(&j, b->rcpts.v[i], &ei);
	if (st == ST_OK)
		st = submit(&j, fd, false, false, &ei);
	if (st == ST_OK)
		bs_reply("250 2.0.0 Ok: queued as %s", j.qid);
	else {
		bs_reply("%s %s", bs_reply_code(st), ei.msg);
		say("%s", ei.msg);
	}
	close(fd);
	job_free(&j);
	bs_reset(b);
	return true;
}

static int
run_smtp_server(struct conf *conf, const struct opts *o,
    const struct aliases *al)
{
	static struct bs b;
	const struct account *da = NULL;
	char line[BS_LINE_MAX];
	struct errinfo ei;
	bool toolong;

	b.o = o;
	b.conf = conf;
	b.aliases = al;
	b.fd = STDIN_FILENO;
	b.host = "localhost";
	st_clear(&ei);
	if (conf_account(conf, o->account, &da, &ei) == ST_OK &&
	    conf_domain(da) != NULL)
		b.host = conf_domain(da);
	bs_reply("220 %s ESMTP bearmail", b.host);
	while (bs_line(&b, line, sizeof(line), &toolong)) {
		char *arg = strchr(line, ' ');
		const char *verb = line;

		if (toolong) {
			bs_reply("500 5.5.2 Line too long");
			continue;
		}
		if (arg != NULL)
			*arg++ = '\0';
		else
			arg = line + strlen(line);
		if (strcasecmp(verb, "EHLO") == 0) {
			bs_reset(&b);
			bs_reply("250-%s", b.host);
			bs_reply("250-PIPELINING");
			bs_reply("250-8BITMIME");
			bs_reply("250-SIZE %lld", (long long)MSG_SIZE_MAX);
			bs_reply("250 ENHANCEDSTATUSCODES");
		} else if (strcasecmp(verb, "HELO") == 0) {
			bs_reset(&b);
			bs_reply("250 %s", b.host);
		} else if (strcasecmp(verb, "MAIL") == 0) {
			bs_mail(&b, arg);
		} else if (strcasecmp(verb, "RCPT") == 0) {
			bs_rcpt(&b, arg);
		} else if (strcasecmp(verb, "DATA") == 0) {
			if (!bs_data_cmd(&b))
				break;
		} else if (strcasecmp(verb, "RSET") == 0) {
			bs_reset(&b);
			bs_reply("250 2.0.0 Ok");
		} else if (strcasecmp(verb, "NOOP") == 0) {
			bs_reply("250 2.0.0 Ok");
		} else if (strcasecmp(verb, "VRFY") == 0) {
			bs_reply("252 2.5.2 Cannot VRFY user, but will accept "
			    "message and attempt delivery");
		} else if (strcasecmp(verb, "QUIT") == 0) {
			bs_reply("221 2.0.0 Bye");
			break;
		} else if (strcasecmp(verb, "HELP") == 0) {
			bs_reply("214 2.0.0 EHLO HELO MAIL RCPT DATA RSET NOOP "
			    "VRFY QUIT");
		} else {
			bs_reply("502 5.5.2 Error: command not recognized");
		}
	}
	bs_reset(&b);
	return EX_OK;
}

/* ---- main ------------------------------------------------------------ */

/* An unprivileged caller who picks the configuration loses privilege. */
static int
drop_privilege_for_config(const struct opts *o)
{
	const char *env = getenv("BEARMAIL_CONFIG");

	if (getuid() == geteuid() && getgid() == getegid())
		return 0;
	if (o->config == NULL && (env == NULL || env[0] == '\0'))
		return 0;
	if (setgid(getgid()) != 0 || setuid(getuid()) != 0) {
		say("cannot drop privileges: %s", strerror(errno));
		return EX_OSERR;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct conf conf;
	struct aliases *al = NULL;
	struct errinfo ei;
	struct job j;
	const char *base;
	enum status st;
	int rc;

	memset(&o, 0, sizeof(o));
	memset(&conf, 0, sizeof(conf));
	memset(&j, 0, sizeof(j));
	st_clear(&ei);
	/* A peer that hangs up must give an error, not kill us. */
	signal(SIGPIPE, SIG_IGN);

	base = argv[0] != NULL ? argv[0] : "bearmail";
	if (strrchr(base, '/') != NULL)
		base = strrchr(base, '/') + 1;
	if (strcmp(base, "mailq") == 0)
		o.mode = MODE_QUEUE_LIST;
	else if (strcmp(base, "newaliases") == 0)
		o.mode = MODE_ALIASES;

	if ((rc = parse_args(argc, argv, &o)) != 0)
		goto done;
	if (o.mode == MODE_HELP) {
		help();
		goto done;
	}
	if (o.mode == MODE_VERSION) {
		version();
		goto done;
	}
	if ((rc = drop_privilege_for_config(&o)) != 0)
		goto done;
	log_set_verbose(o.verbose);
	if ((st = conf_load(&conf, o.config, &ei)) != ST_OK) {
		say("%s", ei.msg);
		rc = st_exitcode(st);
		goto done;
	}
	if (conf.log != NULL && log_open("bearmail", conf.log, &ei) != ST_OK) {
		say("%s (logging to standard error)", ei.msg);
		st_clear(&ei);
	}

	if (o.mode == MODE_QUEUE_LIST || o.mode == MODE_QUEUE_RUN) {
		say("the queue is not available in this version: messages are "
		    "delivered at once or refused (queue = never)");
		rc = EX_UNAVAILABLE;
		goto done;
	}
	if (conf.aliases != NULL &&
	    (st = aliases_load(conf.aliases, &al, &ei)) != ST_OK) {
		say("%s", ei.msg);
		rc = st_exitcode(st);
		goto done;
	}
	if (o.mode == MODE_ALIASES) {
		if (conf.aliases == NULL)
			printf("%s: no aliases file configured\n", progname);
		else
			printf("%s: %s: %zu aliases\n", progname, conf.aliases,
			    aliases_count(al));
		rc = EX_OK;
		goto done;
	}
	if (o.mode == MODE_SMTP) {
		rc = run_smtp_server(&conf, &o, al);
		goto done;
	}

	/* Submission. */
	if (!o.extract && o.nrcpts == 0) {
		say("no recipients: name them on the command line or use -t");
		rc = EX_USAGE;
		goto done;
	}
	j.conf = &conf;
	j.o = &o;
	j.aliases = al;
	make_qid(j.qid, sizeof(j.qid));
	if ((st = setup_job(&j, o.sender, &ei)) == ST_OK &&
	    (st = add_arg_rcpts(&j, o.rcpts, o.nrcpts, &ei)) == ST_OK)
		st = submit(&j, STDIN_FILENO, o.extract, !o.dot_ok, &ei);
	if (st != ST_OK) {
		say("%s", ei.msg);
		rc = st_exitcode(st);
		goto done;
	}
	rc = EX_OK;
done:
	job_free(&j);
	aliases_free(al);
	conf_free(&conf);
	free(o.rcpts);
	log_close();
	return rc;
}
