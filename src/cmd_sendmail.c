/*
 * cmd_sendmail.c: bearmail, the sendmail-compatible submission program.
 *
 * Options and wiring only: the message rewrite is msg.c, the aliases
 * aliases.c, SMTP smtp.c, credentials cred.c.  Called as sendmail or
 * send-mail it submits, as mailq it lists the queue (-bp), as newaliases
 * it checks the aliases file (-bi).
 *
 * Delivery is submit.c (sessions, and the queue runner of -q), the
 * queue spool.c, the -bs dialogue smtpd.c.  What is here decides, per
 * message, between delivering now, queueing (queue = on-failure |
 * always | never, -odi/-odb/-odq) and handing the message to
 * bearmail-drop when the queue belongs to another user (a local user on
 * a system install: see bearmail(8), SYSTEM INSTALLATION).
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
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "aliases.h"
#include "buf.h"
#include "conf.h"
#include "log.h"
#include "msg.h"
#include "priv.h"
#include "rfc5322.h"
#include "smtp.h"
#include "smtpd.h"
#include "spool.h"
#include "status.h"
#include "submit.h"
#include "version.h"

#define RCPT_ARGS_MAX	ALIASES_RCPTS_MAX
#define ENVID_MAX	100	/* RFC 3461: at most 100 characters */

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
	bool qdue;		/* --queue-due: only what is due */
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
	char qid[ENVELOPE_ID_SIZE];	/* log and queue identifier */
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
	/* One line whatever the caller quoted: no forged lines in cron mail. */
	for (char *p = msg; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
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
	    "  -bp             list the queue (also: mailq)\n"
	    "  -q, -qf         deliver every queued message now (with -a:\n"
	    "                  that account's only)\n"
	    "  -qIID           deliver one queued message now\n"
	    "  --queue-due     deliver the queued messages whose retry time\n"
	    "                  has come (for timers and cron)\n"
	    "  -odi            deliver now (queue on a temporary failure)\n"
	    "  -odb, -odq      queue, then deliver in the background / later\n"
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
	version_print("bearmail", NULL);
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
	if (!arg_safe(v))
		return usage_error("-%c: control characters in the argument",
		    c);
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
			/*
			 * -q, -qIID, -qf, -q<interval> (ignored).  -qf is
			 * sendmail's "in the foreground": we always are,
			 * so it is -q.
			 */
			if (p[1] == '\0' || (p[1] == 'I' && p[2] != '\0') ||
			    strcmp(p + 1, "f") == 0) {
				o->mode = MODE_QUEUE_RUN;
				o->qid = p[1] == 'I' ? p + 2 : NULL;
				o->qdue = false;
				if (o->qid != NULL &&
				    !envelope_id_valid(o->qid))
					return usage_error("-qI: \"%s\" is not "
					    "a queue ID", o->qid);
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
	else if (strcmp(a, "--queue-due") == 0) {
		o->mode = MODE_QUEUE_RUN;
		o->qid = NULL;
		o->qdue = true;
	}
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

/* ---- delivery and the queue ------------------------------------------ */

/*
 * Deliver or queue the message in fd as the queue mode and -od say.
 * Every way that returns ST_OK leaves the message delivered or durable.
 */
static enum status
dispatch(struct job *j, int fd, const struct msg_info *info,
    struct errinfo *ei)
{
	const struct conf *conf = j->conf;
	const struct opts *o = j->o;
	char deliver = o->deliver, arg[ENVELOPE_ID_SIZE + 4];
	char acct_arg[ENVELOPE_ACCOUNT_MAX + 16];
	char first[ENVELOPE_ID_SIZE];
	struct submit_msg m;
	struct spool *sp = NULL;
	struct errinfo qe, why;
	enum status st;

	memset(&m, 0, sizeof(m));
	m.id = j->qid;
	m.acct = j->acct;
	m.ehlo_name = j->domain;
	m.sender = j->sender;
	m.rcpts = (const char *const *)j->rcpts.v;
	m.nrcpts = j->rcpts.n;
	m.size = info->size;
	m.body = info->body_8bit || info->hdr_8bit ? SMTP_BODY_8BITMIME :
	    o->body;
	m.smtputf8 = o->utf8 || info->addr_utf8;
	m.notify = o->notify;
	m.ret = o->ret;
	m.envid = o->envid;
	if (deliver == 0)
		deliver = conf->queue == QUEUE_ALWAYS ? 'b' : 'i';
	if (deliver == 'i' && conf->queue == QUEUE_NEVER)
		return submit_now(conf, &m, fd, ei);
	st_clear(&qe);
	if (spool_open(&sp, conf->queue_dir, SPOOL_CREATE, &qe) != ST_OK) {
		sp = NULL;
		/* Someone else's queue: the maildrop; the runner sends. */
		if (submit_queue_is_others(conf->queue_dir))
			return submit_enqueue(NULL, &m, fd, NULL, ei);
		if (deliver != 'i')
			return st_error(ei, qe.st, "%s", qe.msg);
	}
	if (deliver == 'b' || deliver == 'q') {
		if ((st = submit_enqueue(sp, &m, fd, NULL, ei)) == ST_OK &&
		    deliver == 'b') {
			snprintf(arg, sizeof(arg), "-qI%s", j->qid);
			submit_spawn(conf->explicit_path, arg, NULL);
		}
		goto out;
	}
	st_clear(&why);
	if ((st = submit_now(conf, &m, fd, &why)) == ST_OK) {
		/*
		 * The relay has just taken a message: whatever kept this
		 * account's queued mail back (the network, the relay, the
		 * token) is over, so send all of it now, not only what
		 * its backoff says is due, or it would wait up to hours
		 * for no reason.  Only this account's: another account's
		 * relay may still be down, and trying it after every
		 * message sent here would hammer it; its mail keeps its
		 * backoff (--queue-due, the timer).  A message that this
		 * working relay still refuses for itself is tried again
		 * at most once per message sent, which the send itself
		 * already bounds.
		 */
		if (sp != NULL && submit_queue_has_mail(conf->queue_dir)) {
			snprintf(acct_arg, sizeof(acct_arg), "--account=%s",
			    j->acct->name);
			submit_spawn(conf->explicit_path, "-q", acct_arg);
		}
		goto out;
	}
	if (!st_retryable(st)) {
		st_pass(ei, &why);
		goto out;
	}
	if (sp == NULL) {
		st = st_error(ei, ST_CANTCREAT, "%s; and the queue cannot be "
		    "written: %s", why.msg, qe.msg);
		goto out;
	}
	memcpy(first, j->qid, sizeof(first));
	if ((st = submit_enqueue(sp, &m, fd, &why, ei)) != ST_OK) {
		st_context(ei, "%s; then", why.msg);
		goto out;
	}
	log_info("%s: deferred, queued as %s", first, j->qid);
	say("queued as %s: %s; run `bearmail -q` to retry now (the "
	    "bearmail-queue timer or cron job, and the next message sent, "
	    "retry it by themselves)", j->qid, why.msg);
out:
	spool_close(sp);
	return st;
}

/*
 * Read the message from in, rewrite it into a temporary file, add the
 * header recipients (extract, -t) to those j holds already (command
 * line, or RCPT in -bs), and deliver or queue it.
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
	if ((fd = submit_tmpfile(ei)) < 0)
		return ST_SYS;
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
	st = dispatch(j, fd, &info, ei);
out:
	msg_info_free(&info);
	close(fd);
	return st;
}

static void
job_init(struct job *j, struct conf *conf, const struct opts *o,
    const struct aliases *al)
{
	struct timespec ts;

	memset(j, 0, sizeof(*j));
	j->conf = conf;
	j->o = o;
	j->aliases = al;
	clock_gettime(CLOCK_REALTIME, &ts);
	envelope_id_make(j->qid, ts.tv_sec, ts.tv_nsec / 1000);
}

static void
job_free(struct job *j)
{
	free(j->sender);
	j->sender = NULL;
	aliases_rcpts_free(&j->rcpts);
}

/* ---- -bs: SMTP on standard input and output -------------------------- */

struct bs_ctx {
	struct conf *conf;
	const struct opts *o;
	const struct aliases *aliases;
};

/* smtpd's deliver function: the normal way, with the RCPT list. */
static enum status
bs_deliver(void *arg, const char *sender, const char *const *rcpts,
    size_t n, int fd, char *id, struct errinfo *ei)
{
	struct bs_ctx *c = arg;
	struct job j;
	enum status st;
	size_t i;

	job_init(&j, c->conf, c->o, c->aliases);
	st = setup_job(&j, sender, ei);
	for (i = 0; st == ST_OK && i < n; i++)
		st = add_rcpt(&j, rcpts[i], ei);
	if (st == ST_OK)
		st = submit(&j, fd, false, false, ei);
	if (st == ST_OK)
		snprintf(id, SMTPD_ID_MAX, "%s", j.qid);
	else
		say("%s", ei->msg);
	job_free(&j);
	return st;
}

static int
run_smtp_server(struct conf *conf, const struct opts *o,
    const struct aliases *al)
{
	struct bs_ctx c = { conf, o, al };
	const struct account *da = NULL;
	struct smtpd_opts so;
	struct errinfo ei;

	memset(&so, 0, sizeof(so));
	so.in = STDIN_FILENO;
	so.out = STDOUT_FILENO;
	st_clear(&ei);
	if (conf_account(conf, o->account, &da, &ei) == ST_OK)
		so.host = conf_domain(da);
	so.size_max = MSG_SIZE_MAX;
	so.rcpts_max = RCPT_ARGS_MAX;
	so.deliver = bs_deliver;
	so.arg = &c;
	st_clear(&ei);
	if (smtpd_run(&so, &ei) != ST_OK) {
		say("%s", ei.msg);
		return st_exitcode(ei.st);
	}
	return EX_OK;
}

/* ---- the queue: -q, -qI, -qf, --queue-due, -bp ----------------------- */

static int
queue_error(const struct conf *conf, const struct errinfo *ei,
    const char *what)
{
	if (submit_queue_is_others(conf->queue_dir)) {
		say("cannot %s %s: it belongs to another user (only it and "
		    "root can %s it; run mailq or bearmail -q as that user)",
		    what, conf->queue_dir, what);
		return EX_NOPERM;
	}
	say("%s", ei->msg);
	return st_exitcode(ei->st);
}

static int
run_queue(const struct conf *conf, const struct opts *o)
{
	struct submit_run_opts ro;
	struct submit_run_stats stats;
	const struct account *acct = NULL;
	struct spool *sp = NULL;
	struct errinfo ei;
	enum status st;

	st_clear(&ei);
	/* -a names an account that exists, or it is a typo. */
	if (o->account != NULL && conf_account(conf, o->account, &acct, &ei)
	    != ST_OK) {
		say("%s", ei.msg);
		return st_exitcode(ei.st);
	}
	if (spool_open(&sp, conf->queue_dir, SPOOL_CREATE, &ei) != ST_OK)
		return queue_error(conf, &ei, "deliver");
	memset(&ro, 0, sizeof(ro));
	ro.conf = conf;
	ro.only_id = o->qid;
	ro.only_account = acct != NULL ? acct->name : NULL;
	ro.due_only = o->qdue;
	st = submit_run(sp, &ro, &stats, &ei);
	submit_close_all();
	spool_close(sp);
	if (st != ST_OK) {
		say("%s", ei.msg);
		return st_exitcode(st);
	}
	if (o->verbose)
		fprintf(stderr, "%s: queue run: %zu imported, %zu tried, "
		    "%zu sent, %zu deferred, %zu failed, %zu notices, %zu "
		    "busy\n", progname, stats.imported, stats.tried,
		    stats.sent, stats.deferred, stats.failed, stats.notices,
		    stats.skipped);
	return EX_OK;
}

static int
list_queue(const struct conf *conf)
{
	struct spool *sp = NULL;
	struct errinfo ei;
	struct buf out;
	int rc = EX_OK;

	st_clear(&ei);
	if (access(conf->queue_dir, F_OK) != 0 && errno == ENOENT) {
		printf("Mail queue is empty\n");
		return EX_OK;
	}
	if (spool_open(&sp, conf->queue_dir, SPOOL_RDONLY, &ei) != ST_OK)
		return queue_error(conf, &ei, "list");
	buf_init(&out, 64 * 1024 * 1024);
	if (spool_listing(sp, &out, &ei) != ST_OK) {
		say("%s", ei.msg);
		rc = st_exitcode(ei.st);
	} else if (fwrite(out.data, 1, out.len, stdout) != out.len ||
	    fflush(stdout) != 0)
		rc = EX_IOERR;
	buf_free(&out);
	spool_close(sp);
	return rc;
}

/* ---- main ------------------------------------------------------------ */

/*
 * bearmail is not meant to be installed set-ID (bearmail-drop is the one
 * privileged program).  If it is anyway, a caller who picks the
 * configuration, or asks for anything but a plain submission, loses
 * the privilege first.
 */
static int
drop_privilege(const struct opts *o)
{
	const char *env = getenv("BEARMAIL_CONFIG");
	struct errinfo ei;

	if (!priv_is_setid())
		return 0;
	if (o->mode == MODE_SUBMIT && o->config == NULL &&
	    (env == NULL || env[0] == '\0'))
		return 0;
	st_clear(&ei);
	if (priv_drop(&ei) != ST_OK) {
		say("%s", ei.msg);
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

	/* Tokens and messages pass through this process: no core files. */
	priv_no_core();
	if (!priv_std_fds())
		return EX_OSERR;
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
	if ((rc = drop_privilege(&o)) != 0)
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

	if (o.mode == MODE_QUEUE_LIST) {
		rc = list_queue(&conf);
		goto done;
	}
	if (o.mode == MODE_QUEUE_RUN) {
		rc = run_queue(&conf, &o);
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
	job_init(&j, &conf, &o, al);
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
	submit_close_all();
	job_free(&j);
	aliases_free(al);
	conf_free(&conf);
	free(o.rcpts);
	log_close();
	return rc;
}
