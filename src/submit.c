/*
 * submit.c: outbound delivery, one session per account per process, and
 * the queue runner.
 *
 * RFC 5321 (transactions, RSET between them on a reused session),
 * RFC 4954 section 4 (AUTH may be tried again on the same session after
 * a failure: the refreshed token goes on the same connection when it is
 * still usable).
 *
 * Why one cached session per account: the runner sends hundreds of
 * messages per account and the providers throttle logins, so a login
 * per message is both slow and the way to get "too many login
 * attempts".  Why a cached TLS context per ca_file: parsing the system
 * bundle costs milliseconds each time, and the -bs server may submit
 * many messages.
 */
#include "config.h"

#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"
#include "cred.h"
#include "log.h"
#include "login.h"
#include "maildrop.h"
#include "notice.h"
#include "smtp.h"
#include "spool.h"
#include "submit.h"
#include "tls.h"

#define CTX_MAX		8		/* distinct ca_file values */
#define RELAY_MAX	320
#define NOTICE_BODY_MAX	(1024 * 1024)	/* of the original, for notices */

struct submit_sess {
	const struct conf *conf;
	const struct account *acct;
	struct conn_target so;
	char *ehlo;
	char *tlsdir;			/* STATE_DIR/tls: session cache */
	struct smtp *s;
	unsigned ntrans;		/* transactions on this connection */
	char relay[RELAY_MAX];
	struct submit_sess *next;
};

static struct submit_sess *sessions;
static struct {
	char *ca_file;			/* NULL: the system bundle */
	struct tls_ctx *ctx;
} ctxs[CTX_MAX];
static size_t nctxs;

static void
note(const char *text)
{
	log_wire(LOG_NOTE, text, strlen(text), false);
}

int
submit_tmpfile(struct errinfo *ei)
{
	const char *dir = getenv("TMPDIR");
	struct buf path;
	int fd = -1;

	if (dir == NULL || dir[0] != '/')
		dir = "/tmp";
	buf_init(&path, PATH_MAX);
	if (buf_printf(&path, ei, "%s/bearmail.XXXXXX", dir) != ST_OK)
		goto out;
	if ((fd = mkostemp(path.data, O_CLOEXEC)) < 0)
		st_errno(ei, ST_SYS, "temporary file in %s", dir);
	else
		unlink(path.data);
out:
	buf_free(&path);
	return fd;
}

double
submit_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
submit_log(const char *id, const char *rcpt, const char *relay, double t0,
    const char *status, const char *text)
{
	log_info("%s: to=<%s>, relay=%s, delay=%.2f, status=%s (%s)", id,
	    rcpt, relay, submit_clock() - t0, status,
	    text != NULL ? text : "");
}

static bool
same_ca(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static enum status
get_ctx(const char *ca_file, struct tls_ctx **out, struct errinfo *ei)
{
	enum status st;
	size_t i;

	for (i = 0; i < nctxs; i++)
		if (same_ca(ctxs[i].ca_file, ca_file)) {
			*out = ctxs[i].ctx;
			return ST_OK;
		}
	if (nctxs == CTX_MAX)
		return st_error(ei, ST_LIMIT, "more than %d ca_file values",
		    CTX_MAX);
	if ((st = tls_ctx_new(out, ca_file, ei)) != ST_OK)
		return st;
	if (ca_file != NULL && (ctxs[nctxs].ca_file = strdup(ca_file)) == NULL) {
		tls_ctx_free(*out);
		return st_errno(ei, ST_SYS, "out of memory");
	}
	ctxs[nctxs++].ctx = *out;
	return ST_OK;
}

static void
sess_drop(struct submit_sess *ss)
{
	if (ss->s != NULL && smtp_usable(ss->s))
		(void)smtp_quit(ss->s, NULL);	/* bounded to a second */
	smtp_close(ss->s);
	ss->s = NULL;
	ss->ntrans = 0;
}

static enum status
sess_open(struct submit_sess *ss, struct errinfo *ei)
{
	const struct account *a = ss->acct;
	enum status st;

	if ((st = smtp_open(&ss->s, &ss->so, ss->ehlo, ei)) != ST_OK)
		return st;
	snprintf(ss->relay, sizeof(ss->relay), "%s[%s]:%u", a->smtp.host,
	    conn_peer(smtp_conn(ss->s)), a->smtp.port);
	return ST_OK;
}

/* login.h's reopen: a new session for ss in place of the old one. */
static enum status
sess_reopen(void *arg, void **sess, struct errinfo *ei)
{
	struct submit_sess *ss = arg;
	enum status st;

	sess_drop(ss);
	st = sess_open(ss, ei);
	*sess = ss->s;
	return st;
}

/* login.h's credential getter: the token store, or bearmail-auth. */
static enum status
sess_cred(void *arg, bool refresh, char **secret, struct errinfo *ei)
{
	struct submit_sess *ss = arg;

	return cred_get(ss->conf, ss->acct, refresh, secret, ei);
}

static enum status
sess_auth(void *s, enum auth_mech mech, const char *user, const char *secret,
    bool *rejected, struct errinfo *ei)
{
	return smtp_auth(s, mech, user, secret, rejected, ei);
}

static bool
sess_usable(void *s)
{
	return smtp_usable(s);
}

/*
 * Authenticate the fresh session ss->s, with one forced refresh and one
 * retry when the server refuses the token (login.h).
 */
static enum status
authenticate(struct submit_sess *ss, struct errinfo *ei)
{
	const struct account *a = ss->acct;
	struct login l;
	void *s = ss->s;

	memset(&l, 0, sizeof(l));
	l.mech = a->auth;
	l.user = a->impersonate != NULL ? a->impersonate : a->user;
	l.auth = sess_auth;
	l.usable = sess_usable;
	l.reopen = sess_reopen;
	l.cred = sess_cred;
	l.arg = ss;
	return login_run(&l, &s, NULL, ei);
}

/* (Re)connect and authenticate ss. */
static enum status
sess_connect(struct submit_sess *ss, struct errinfo *ei)
{
	enum status st;

	sess_drop(ss);
	if ((st = sess_open(ss, ei)) == ST_OK &&
	    (st = authenticate(ss, ei)) != ST_OK)
		sess_drop(ss);
	return st;
}

enum status
submit_session(struct submit_sess **out, const struct conf *conf,
    const struct account *a, const char *ehlo_name, struct errinfo *ei)
{
	struct submit_sess *ss;
	struct tls_ctx *ctx = NULL;
	enum status st;

	*out = NULL;
	for (ss = sessions; ss != NULL; ss = ss->next)
		if (ss->acct == a)
			break;
	if (ss == NULL) {
		if (a->smtp.host == NULL)
			return st_error(ei, ST_CONFIG,
			    "%s:%d: account %s has no smtp_host",
			    a->file != NULL ? a->file : "?", a->line, a->name);
		if (a->smtp.tls != TLSM_NONE &&
		    (st = get_ctx(a->ca_file, &ctx, ei)) != ST_OK)
			return st;
		if ((ss = calloc(1, sizeof(*ss))) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
		/* Resume TLS sessions across runs (conn.h): STATE_DIR/tls. */
		if (a->smtp.tls != TLSM_NONE && conf->state_dir != NULL &&
		    (ss->tlsdir = malloc(strlen(conf->state_dir) + 5)) != NULL)
			snprintf(ss->tlsdir, strlen(conf->state_dir) + 5,
			    "%s/tls", conf->state_dir);
		if ((ehlo_name != NULL &&
		    (ss->ehlo = strdup(ehlo_name)) == NULL) ||
		    (a->smtp.tls != TLSM_NONE && conf->state_dir != NULL &&
		    ss->tlsdir == NULL)) {
			free(ss->tlsdir);
			free(ss->ehlo);
			free(ss);
			return st_errno(ei, ST_SYS, "out of memory");
		}
		ss->conf = conf;
		ss->acct = a;
		ss->so.host = a->smtp.host;
		ss->so.port = a->smtp.port;
		ss->so.tls = a->smtp.tls;
		ss->so.timeout = a->timeout;
		ss->so.tls_ctx = ctx;
		ss->so.tls_cache_dir = ss->tlsdir;
		snprintf(ss->relay, sizeof(ss->relay), "%s:%u", a->smtp.host,
		    a->smtp.port);
		ss->next = sessions;
		sessions = ss;
	}
	if (ss->s == NULL || !smtp_usable(ss->s))
		if ((st = sess_connect(ss, ei)) != ST_OK)
			return st;
	*out = ss;
	return ST_OK;
}

const char *
submit_relay(const struct submit_sess *ss)
{
	return ss != NULL ? ss->relay : "none";
}

/* The relay for a log line when there may be no session yet. */
static const char *
relay_of(const struct submit_sess *ss, const struct account *a,
    char *buf, size_t bufsz)
{
	if (ss != NULL || a == NULL || a->smtp.host == NULL)
		return submit_relay(ss);
	snprintf(buf, bufsz, "%s:%u", a->smtp.host, a->smtp.port);
	return buf;
}

enum status
submit_send(struct submit_sess *ss, const struct smtp_envelope *env, int fd,
    struct smtp_result *res, struct errinfo *ei)
{
	struct errinfo e;
	enum status st;
	bool fresh = false;
	off_t off;

	memset(res, 0, sizeof(*res));
	if ((off = lseek(fd, 0, SEEK_CUR)) < 0)
		return st_errno(ei, ST_SYS, "message file");
	st_clear(&e);
	if (ss->s == NULL || !smtp_usable(ss->s) ||
	    (ss->ntrans > 0 && smtp_rset(ss->s, &e) != ST_OK)) {
		if (ss->s != NULL)
			note("session gone: connecting again");
		if ((st = sess_connect(ss, ei)) != ST_OK)
			return st;
		fresh = true;
	}
	st_clear(&e);
	st = smtp_send(ss->s, env, fd, res, &e);
	ss->ntrans++;
	if (st != ST_OK && !fresh && !res->dot_sent && st_retryable(st) &&
	    (!smtp_usable(ss->s) || st == ST_AUTH)) {
		/*
		 * The session expired under us (421, a hang-up, or the
		 * server wants AUTH again): nothing was committed, so a new
		 * session may carry the same transaction once.
		 */
		log_info("%s: session ended (%s): connecting again",
		    ss->relay, e.msg);
		smtp_result_free(res);
		if ((st = sess_connect(ss, ei)) != ST_OK)
			return st;
		if (lseek(fd, off, SEEK_SET) != off)
			return st_errno(ei, ST_SYS, "rewinding the message");
		st_clear(&e);
		st = smtp_send(ss->s, env, fd, res, &e);
		ss->ntrans++;
	}
	return st == ST_OK ? ST_OK : st_pass(ei, &e);
}

void
submit_close_all(void)
{
	struct submit_sess *ss, *next;
	size_t i;

	for (ss = sessions; ss != NULL; ss = next) {
		next = ss->next;
		sess_drop(ss);
		free(ss->ehlo);
		free(ss->tlsdir);
		free(ss);
	}
	sessions = NULL;
	for (i = 0; i < nctxs; i++) {
		tls_ctx_free(ctxs[i].ctx);
		free(ctxs[i].ca_file);
	}
	nctxs = 0;
}

/* ------------------------------------------------------------------ */
/* One submitted message                                                */

enum status
submit_now(const struct conf *conf, const struct submit_msg *m, int fd,
    struct errinfo *ei)
{
	struct submit_sess *ss = NULL;
	struct smtp_envelope env;
	struct smtp_result res;
	char relay[RELAY_MAX];
	enum status st;
	double t0 = submit_clock();
	size_t i;

	memset(&res, 0, sizeof(res));
	memset(&env, 0, sizeof(env));
	env.sender = m->sender;
	env.rcpts = m->rcpts;
	env.nrcpts = m->nrcpts;
	env.size = (uint64_t)m->size;
	env.body = m->body;
	env.smtputf8 = m->smtputf8;
	env.notify = m->notify;
	env.ret = m->ret;
	env.envid = m->envid;
	if (lseek(fd, 0, SEEK_SET) != 0)
		return st_errno(ei, ST_SYS, "rewinding the message");
	if ((st = submit_session(&ss, conf, m->acct, m->ehlo_name, ei)) ==
	    ST_OK)
		st = submit_send(ss, &env, fd, &res, ei);
	if (st == ST_OK) {
		log_info("%s: from=<%s>, size=%lld, nrcpt=%zu", m->id,
		    m->sender, (long long)m->size, m->nrcpts);
		for (i = 0; i < m->nrcpts; i++)
			submit_log(m->id, m->rcpts[i], submit_relay(ss), t0,
			    "sent", res.text);
		goto out;
	}
	/* Each recipient's fate: its own refusal, or the transaction's. */
	for (i = 0; i < m->nrcpts; i++) {
		bool own = res.rcpt != NULL && i < res.nrcpts &&
		    res.rcpt[i].st != ST_OK && res.rcpt[i].code != 0;
		enum status rs = own ? res.rcpt[i].st : st;
		char text[SMTP_TEXT_MAX + 16];

		snprintf(text, sizeof(text), "%s%s", own ? "" : "not sent: ",
		    own ? res.rcpt[i].text : ei->msg);
		submit_log(m->id, m->rcpts[i], relay_of(ss, m->acct, relay,
		    sizeof(relay)), t0, st_retryable(rs) ? "deferred" :
		    "bounced", text);
	}
out:
	smtp_result_free(&res);
	return st;
}

const char *
submit_drop_program(void)
{
	const char *p = getenv("BEARMAIL_DROP");

	if (getauxval(AT_SECURE) == 0 && p != NULL && p[0] == '/')
		return p;
	return BINDIR "/bearmail-drop";
}

enum status
submit_enqueue(struct spool *sp, struct submit_msg *m, int fd,
    const struct errinfo *why, struct errinfo *ei)
{
	struct envelope env;
	char id[ENVELOPE_ID_SIZE];
	enum status st;
	size_t i;

	envelope_init(&env);
	if ((st = envelope_set(&env, m->acct->name, m->sender, ei)) != ST_OK ||
	    (st = envelope_set_envid(&env, m->envid, ei)) != ST_OK)
		goto out;
	for (i = 0; i < m->nrcpts; i++)
		if ((st = envelope_add_rcpt(&env, m->rcpts[i], ei)) != ST_OK)
			goto out;
	/* enum smtp_body and enum smtp_ret share the spool's order. */
	env.body = (enum envelope_body)m->body;
	env.smtputf8 = m->smtputf8;
	env.notify = m->notify;
	env.ret = (enum envelope_ret)m->ret;
	if (lseek(fd, 0, SEEK_SET) != 0) {
		st = st_errno(ei, ST_SYS, "rewinding the message");
		goto out;
	}
	if (sp == NULL) {
		if ((st = maildrop_submit(submit_drop_program(), &env, fd,
		    m->acct->timeout, id, ei)) == ST_OK)
			memcpy(m->id, id, sizeof(id));
		goto out;
	}
	if (why != NULL) {
		env.attempts = 1;
		env.next_try = time(NULL) + spool_backoff(1);
		if ((env.last_error = strdup(why->msg)) == NULL) {
			st = st_errno(ei, ST_SYS, "out of memory");
			goto out;
		}
	}
	if ((st = spool_enqueue_fd(sp, &env, fd, ei)) == ST_OK)
		memcpy(m->id, env.id, sizeof(env.id));
out:
	if (st == ST_OK)
		log_info("%s: from=<%s>, size=%lld, nrcpt=%zu (queued%s)",
		    m->id, m->sender, (long long)m->size, m->nrcpts,
		    sp == NULL ? " through the maildrop" : "");
	else
		st_context(ei, "could not queue the message");
	envelope_free(&env);
	return st;
}

bool
submit_queue_is_others(const char *queue_dir)
{
	struct stat sb;

	return geteuid() != 0 && stat(queue_dir, &sb) == 0 &&
	    sb.st_uid != geteuid();
}

bool
submit_queue_has_mail(const char *queue_dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	bool any = false;
	DIR *d;

	if ((size_t)snprintf(path, sizeof(path), "%s/q", queue_dir) >=
	    sizeof(path) || (d = opendir(path)) == NULL)
		return false;
	while (!any && (de = readdir(d)) != NULL)
		any = de->d_name[0] != '.';
	closedir(d);
	return any;
}

void
submit_spawn(const char *config, const char *arg, const char *arg2)
{
	char self[PATH_MAX];
	ssize_t n;
	pid_t pid;
	int fd;

	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) <= 0)
		return;
	self[n] = '\0';
	if ((pid = fork()) < 0)
		return;
	if (pid == 0) {
		/* A grandchild in its own session: no zombie, no terminal. */
		if (setsid() < 0 || fork() != 0)
			_exit(0);
		if ((fd = open("/dev/null", O_RDWR)) >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		/* A caller's pipe kept open here would make it wait for us. */
#ifdef SYS_close_range
		if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
#endif
			for (fd = 3; fd < 1024; fd++)
				close(fd);
		if (config != NULL)
			execl(self, "bearmail", "-C", config, arg, arg2,
			    (char *)NULL);
		else
			execl(self, "bearmail", arg, arg2, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------ */
/* The queue runner                                                     */

struct run {
	const struct submit_run_opts *o;
	struct spool *sp;
	time_t now;
	struct submit_run_stats *stats;
	/* The account of the messages at hand (the list is sorted by it). */
	char *acct_name;
	const struct account *acct;
	struct submit_sess *ss;
	struct errinfo acct_ei;		/* set: the account is unreachable
					   for the rest of this run */
	/* Failure notices queued by this run, for a second pass. */
	char (*notices)[ENVELOPE_ID_SIZE];
	size_t nnotices;
};

static void
acct_fail(struct run *r, const struct errinfo *e)
{
	char prefix[ENVELOPE_ACCOUNT_MAX + 16];
	const char *msg = e->msg;

	st_pass(&r->acct_ei, e);
	/* cred.c's texts name the account already. */
	snprintf(prefix, sizeof(prefix), "account %s: ", r->acct_name);
	if (strncmp(msg, prefix, strlen(prefix)) == 0)
		msg += strlen(prefix);
	if (e->st == ST_AUTH)
		log_err("account %s: cannot authenticate: %s; its mail stays "
		    "queued until this is fixed (bearmail-auth login %s)",
		    r->acct_name, msg, r->acct_name);
	else
		log_warn("account %s: %s; its mail stays queued",
		    r->acct_name, msg);
}

/* Switch to the account of env; when it is unknown, acct_ei says so. */
static void
set_account(struct run *r, const struct envelope *env)
{
	struct errinfo e;

	if (r->acct_name != NULL && strcmp(r->acct_name, env->account) == 0)
		return;
	free(r->acct_name);
	r->acct_name = strdup(env->account);
	r->acct = NULL;
	r->ss = NULL;
	st_clear(&r->acct_ei);
	st_clear(&e);
	if (r->acct_name == NULL)
		st_errno(&e, ST_SYS, "out of memory");
	else if (conf_account(r->o->conf, env->account, &r->acct, &e) ==
	    ST_OK)
		return;
	st_clear(&e);
	st_error(&e, ST_CONFIG, "not in the configuration (%s)",
	    r->o->conf->nfiles > 0 ? r->o->conf->files[0] : "no file read");
	acct_fail(r, &e);
}

static void
log_rcpts(struct spool_msg *m, const size_t *idx, size_t n,
    const char *relay, double t0, enum envelope_rcpt_state state,
    const char *status, const char *text)
{
	struct envelope *env = spool_msg_env(m);
	size_t k;

	for (k = 0; k < n; k++) {
		submit_log(env->id, env->rcpts[idx[k]].addr, relay, t0, status,
		    text);
		spool_rcpt_set(m, idx[k], state, text, NULL);
	}
}

/*
 * One transaction to the recipients idx[0..n-1] of m.  Records every
 * outcome; *accepted (room for n) receives the recipients the server
 * accepted when others were refused (so nothing was sent).  Returns the
 * transaction's status; *reason keeps a temporary failure's text.
 */
static enum status
try_rcpts(struct run *r, struct spool_msg *m, const size_t *idx, size_t n,
    size_t *accepted, size_t *naccepted, struct buf *reason)
{
	struct envelope *env = spool_msg_env(m);
	struct smtp_envelope se;
	struct smtp_result res;
	const char **rcpts;
	struct errinfo e;
	enum status st;
	double t0 = submit_clock();
	bool refused = false;
	size_t k;
	int fd = -1;

	*naccepted = 0;
	st_clear(&e);
	memset(&res, 0, sizeof(res));
	if ((rcpts = calloc(n, sizeof(*rcpts))) == NULL) {
		st = st_errno(&e, ST_SYS, "out of memory");
		goto fail;
	}
	for (k = 0; k < n; k++)
		rcpts[k] = env->rcpts[idx[k]].addr;
	memset(&se, 0, sizeof(se));
	se.sender = env->sender;
	se.rcpts = rcpts;
	se.nrcpts = n;
	se.size = (uint64_t)env->size;
	se.body = (enum smtp_body)env->body;
	se.smtputf8 = env->smtputf8;
	se.notify = env->notify;
	se.ret = (enum smtp_ret)env->ret;
	se.envid = env->envid;
	if ((st = spool_body_open(m, &fd, &e)) != ST_OK)
		goto fail;
	st = submit_send(r->ss, &se, fd, &res, &e);
	if (st == ST_OK) {
		log_rcpts(m, idx, n, submit_relay(r->ss), t0,
		    ENVELOPE_RCPT_DONE, "sent", res.text);
		goto out;
	}
	if (res.dot_sent && (st == ST_NET || st == ST_TIMEOUT))
		log_warn("%s: the connection broke after the final dot: the "
		    "server may have taken the message, which will be sent "
		    "again and may arrive twice", env->id);
	for (k = 0; res.rcpt != NULL && k < res.nrcpts; k++)
		if (res.rcpt[k].code != 0 && res.rcpt[k].st != ST_OK)
			refused = true;
	if (refused && (st == ST_NOUSER || st == ST_TEMPFAIL)) {
		/* Per recipient: its own reply, or it was accepted. */
		for (k = 0; k < n && k < res.nrcpts; k++) {
			struct smtp_rcpt_result *rr = &res.rcpt[k];

			if (rr->st == ST_OK && rr->code != 0)
				accepted[(*naccepted)++] = idx[k];
			else if (rr->st == ST_OK || st_retryable(rr->st)) {
				const char *t = rr->code != 0 ? rr->text :
				    e.msg;

				log_rcpts(m, &idx[k], 1, submit_relay(r->ss),
				    t0, ENVELOPE_RCPT_PENDING, "deferred", t);
				if (reason->len == 0)
					buf_add(reason, t, strlen(t), NULL);
			} else
				log_rcpts(m, &idx[k], 1, submit_relay(r->ss),
				    t0, ENVELOPE_RCPT_FAILED, "bounced",
				    rr->text);
		}
		goto out;
	}
fail:
	if (st_retryable(st)) {
		log_rcpts(m, idx, n, submit_relay(r->ss), t0,
		    ENVELOPE_RCPT_PENDING, "deferred", e.msg);
		if (reason->len == 0)
			buf_add(reason, e.msg, strlen(e.msg), NULL);
		/* No transaction at all: the server is out of reach. */
		if (res.code == 0 && res.rcpt == NULL && !res.dot_sent &&
		    st != ST_SYS)
			acct_fail(r, &e);
	} else
		log_rcpts(m, idx, n, submit_relay(r->ss), t0,
		    ENVELOPE_RCPT_FAILED, "bounced", e.msg);
out:
	if (fd >= 0)
		close(fd);
	smtp_result_free(&res);
	free(rcpts);
	return st;
}

/* Try every pending recipient of m; the outcome is recorded in m. */
static void
attempt(struct run *r, struct spool_msg *m, struct buf *reason)
{
	struct envelope *env = spool_msg_env(m);
	size_t *idx = NULL, *acc = NULL, n = 0, nacc = 0, nacc2, i;
	char relay[RELAY_MAX];
	struct errinfo e;
	double t0 = submit_clock();

	st_clear(&e);
	if ((idx = calloc(env->nrcpts, sizeof(*idx))) == NULL ||
	    (acc = calloc(env->nrcpts, sizeof(*acc))) == NULL) {
		buf_add(reason, "out of memory", 13, NULL);
		goto out;
	}
	for (i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].state == ENVELOPE_RCPT_PENDING)
			idx[n++] = i;
	if (r->acct_ei.st == ST_OK && r->ss == NULL &&
	    submit_session(&r->ss, r->o->conf, r->acct,
	    conf_domain(r->acct), &e) != ST_OK)
		acct_fail(r, &e);
	if (r->acct_ei.st != ST_OK) {
		log_rcpts(m, idx, n, relay_of(r->ss, r->acct, relay,
		    sizeof(relay)), t0,
		    ENVELOPE_RCPT_PENDING, "deferred", r->acct_ei.msg);
		buf_add(reason, r->acct_ei.msg, strlen(r->acct_ei.msg), NULL);
		goto out;
	}
	log_info("%s: from=<%s>, size=%lld, nrcpt=%zu (queue active)",
	    env->id, env->sender, (long long)env->size, n);
	if (try_rcpts(r, m, idx, n, acc, &nacc, reason) != ST_OK && nacc > 0)
		/* Some were refused: the accepted ones get it on their own. */
		try_rcpts(r, m, acc, nacc, idx, &nacc2, reason);
out:
	free(idx);
	free(acc);
}

/* Queue the failure notice for m's failed recipients, if one is due. */
static void
notify(struct run *r, struct spool_msg *m)
{
	struct envelope *env = spool_msg_env(m), nenv;
	struct notice_opts no;
	struct buf orig, out;
	struct errinfo e;
	void *grown;
	bool complete = false, none = true;

	envelope_init(&nenv);
	buf_init(&orig, NOTICE_BODY_MAX + 1);
	buf_init(&out, ENVELOPE_MSG_MAX);
	st_clear(&e);
	memset(&no, 0, sizeof(no));
	no.to = r->o->conf->bounce_to;
	no.domain = conf_domain(r->acct);
	no.now = r->now;
	no.max_age = r->o->conf->max_queue_age;
	if (spool_body_read(m, NOTICE_BODY_MAX, &orig, &complete, &e) != ST_OK ||
	    notice_compose(env, orig.data != NULL ? orig.data : "", orig.len,
	    complete, &no, &nenv, &out, &none, &e) != ST_OK) {
		log_err("%s: no failure notice: %s", env->id, e.msg);
		goto out;
	}
	if (none)
		goto out;
	if (spool_enqueue_mem(r->sp, &nenv, out.data, out.len, &e) != ST_OK) {
		log_err("%s: failure notice not queued: %s", env->id, e.msg);
		goto out;
	}
	log_info("%s: sender non-delivery notification: %s", env->id,
	    nenv.id);
	if (r->stats != NULL)
		r->stats->notices++;
	grown = realloc(r->notices, (r->nnotices + 1) * ENVELOPE_ID_SIZE);
	if (grown != NULL) {
		r->notices = grown;
		memcpy(r->notices[r->nnotices++], nenv.id, ENVELOPE_ID_SIZE);
	}
out:
	envelope_free(&nenv);
	buf_free(&orig);
	buf_free(&out);
}

/* Finish or defer a claimed message. */
static void
settle(struct run *r, struct spool_msg *m, const char *reason)
{
	struct envelope *env = spool_msg_env(m);
	struct submit_run_stats *stats = r->stats;
	struct errinfo e;
	char why[256];

	st_clear(&e);
	if (envelope_pending(env) > 0 &&
	    spool_expired(env, r->now, r->o->conf->max_queue_age)) {
		snprintf(why, sizeof(why), "message expired: not delivered "
		    "within %lld seconds of its arrival (max_queue_age)%s%s",
		    (long long)r->o->conf->max_queue_age,
		    reason != NULL && *reason != '\0' ? "; last error: " : "",
		    reason != NULL ? reason : "");
		log_info("%s: %s", env->id, why);
		spool_fail_pending(m, why, NULL);
	}
	if (envelope_pending(env) > 0) {
		if (spool_defer(m, r->now, reason != NULL && *reason != '\0' ?
		    reason : NULL, &e) != ST_OK)
			log_err("%s: cannot record the attempt: %s", env->id,
			    e.msg);
		if (stats != NULL)
			stats->deferred++;
		return;
	}
	if (envelope_failed(env) > 0) {
		if (spool_commit(m, &e) != ST_OK) {
			log_err("%s: %s", env->id, e.msg);
			return;
		}
		notify(r, m);
	}
	if (spool_retire(m, &e) != ST_OK) {
		log_err("%s: %s", env->id, e.msg);
		return;
	}
	if (envelope_failed(env) > 0) {
		log_info("%s: moved to failed/", env->id);
		if (stats != NULL)
			stats->failed++;
	} else {
		log_info("%s: removed", env->id);
		if (stats != NULL)
			stats->sent++;
	}
}

static bool
wanted(const struct run *r, const char *id, const char *account,
    char (*only)[ENVELOPE_ID_SIZE], size_t nonly)
{
	size_t i;

	if (only == NULL)
		return (r->o->only_id == NULL ||
		    strcmp(id, r->o->only_id) == 0) &&
		    (r->o->only_account == NULL ||
		    strcmp(account, r->o->only_account) == 0);
	for (i = 0; i < nonly; i++)
		if (strcmp(only[i], id) == 0)
			return true;
	return false;
}

/* One pass over the queue; only: these IDs (due or not), else as o says. */
static enum status
run_pass(struct run *r, char (*only)[ENVELOPE_ID_SIZE], size_t nonly,
    bool *found, struct errinfo *ei)
{
	struct spool_list list = { NULL, 0 };
	unsigned flags = SPOOL_SCAN_DUE;
	struct spool_msg *m;
	struct errinfo e;
	struct buf reason;
	enum status st;
	size_t i;

	if (only != NULL || r->o->only_id != NULL || !r->o->due_only)
		flags = 0;
	if ((st = spool_scan(r->sp, r->now, flags, &list, ei)) != ST_OK)
		return st;
	buf_init(&reason, ENVELOPE_TEXT_MAX);
	for (i = 0; i < list.n; i++) {
		struct spool_entry *en = &list.v[i];

		if (en->drop || !wanted(r, en->env.id, en->env.account, only,
		    nonly))
			continue;
		*found = true;
		st_clear(&e);
		if (spool_claim(r->sp, en->env.id, &m, &e) != ST_OK) {
			log_err("%s: %s", en->env.id, e.msg);
			continue;
		}
		if (m == NULL) {
			if (r->stats != NULL)
				r->stats->skipped++;
			continue;
		}
		if (r->stats != NULL)
			r->stats->tried++;
		set_account(r, spool_msg_env(m));
		buf_reset(&reason);
		if (envelope_pending(spool_msg_env(m)) > 0)
			attempt(r, m, &reason);
		settle(r, m, reason.data);
		spool_release(m);
	}
	buf_free(&reason);
	spool_list_free(&list);
	return ST_OK;
}

enum status
submit_run(struct spool *sp, const struct submit_run_opts *o,
    struct submit_run_stats *stats, struct errinfo *ei)
{
	struct run r;
	struct errinfo e;
	enum status st;
	size_t n = 0;
	bool found = false, nfound = false;

	memset(&r, 0, sizeof(r));
	if (stats != NULL)
		memset(stats, 0, sizeof(*stats));
	r.o = o;
	r.sp = sp;
	r.now = o->now != 0 ? o->now : time(NULL);
	r.stats = stats;
	st_clear(&r.acct_ei);
	st_clear(&e);
	if (maildrop_import(sp, r.now, &n, &e) != ST_OK)
		log_err("maildrop: %s", e.msg);
	if (stats != NULL)
		stats->imported = n;
	st_clear(&e);
	if (spool_cleanup(sp, r.now, &e) != ST_OK)
		log_warn("queue cleanup: %s", e.msg);
	if ((st = run_pass(&r, NULL, 0, &found, ei)) == ST_OK &&
	    r.nnotices > 0) {
		/* The notices this run made go now, due or not. */
		free(r.acct_name);
		r.acct_name = NULL;
		r.ss = NULL;
		st = run_pass(&r, r.notices, r.nnotices, &nfound, ei);
	}
	free(r.notices);
	free(r.acct_name);
	if (st == ST_OK && o->only_id != NULL && !found)
		st = st_error(ei, ST_USAGE, "%s: no such message in the queue",
		    o->only_id);
	return st;
}
