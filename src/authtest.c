/*
 * authtest.c: `bearmail-auth test` (see authtest.h).
 *
 * The report is a block per server: a heading, then one "  label  value"
 * line per fact, in the order the session learnt them, flushed as it
 * goes so that a failure shows how far the session got.  The reason for
 * a failure goes to standard error as one line; the exit code is the
 * status's (st_exitcode), so scripts can tell "try later" (75) from
 * "refused" (77) from "misconfigured" (78).
 *
 * The three protocols differ only in how a session is opened, described
 * and closed; struct proto holds those steps, and the login with its
 * one refresh is login.c's, as for bearmail and bearmail-fetch.  No
 * protocol is spoken here: the clients in smtp.c, imap.c and pop3.c do
 * that.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "authtest.h"
#include "conn.h"
#include "imap.h"
#include "login.h"
#include "pop3.h"
#include "smtp.h"
#include "status.h"
#include "tls.h"

/* Width of the label column, as in `bearmail-auth status`. */
#define LABEL	"  %-15s "

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

struct test {
	const char *prog;
	const struct account *acct;
	authtest_secret_fn secret_fn;
	void *arg;
	struct tls_ctx *ctx;		/* made when first needed */
};

/* One protocol's steps, each on an opaque session. */
struct proto {
	const char *name;		/* "SMTP" */
	unsigned bit;			/* AUTHTEST_* */
	const struct endpoint *(*endpoint)(const struct account *a);
	enum status (*open)(const struct test *t, void **s,
	    struct errinfo *ei);
	void (*report)(const struct test *t, void *s);
	enum status (*auth)(void *s, enum auth_mech mech, const char *user,
	    const char *secret, bool *rejected, struct errinfo *ei);
	bool (*usable)(void *s);
	void (*quit)(void *s);
	void (*close)(void *s);
};

static const char *
tls_mode_text(enum tls_mode m)
{
	switch (m) {
	case TLSM_TLS:
		return "implicit TLS";
	case TLSM_STARTTLS:
		return "STARTTLS";
	default:
		return "no TLS";
	}
}

/* The SASL name as servers spell it ("XOAUTH2"), into out[16]. */
static const char *
mech_text(enum auth_mech m, char out[16])
{
	const char *s = conf_mech_name(m);
	size_t i;

	for (i = 0; s[i] != '\0' && i < 15; i++)
		out[i] = (char)toupper((unsigned char)s[i]);
	out[i] = '\0';
	return out;
}

static void
line(const char *label, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
line(const char *label, const char *fmt, ...)
{
	va_list ap;

	printf(LABEL, label);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/*
 * Whether the n bytes at item are key followed by term ("AUTH=XOAUTH2"
 * for "AUTH" and '=') or, when term is a space, key alone ("SASL").
 */
static bool
has_key(const char *item, size_t n, const char *key, char term)
{
	size_t kl = strlen(key);

	if (n < kl || strncasecmp(item, key, kl) != 0)
		return false;
	return n == kl ? term == ' ' : item[kl] == term;
}

/*
 * One line listing the items of list (separated by sep, as the server
 * sent them): with pick, only those that are key+term, shown without
 * that prefix; without pick, all the others.  join goes between the
 * items shown, none stands for no item at all.
 */
static void
line_items(const char *label, const char *list, char sep, const char *key,
    char term, bool pick, const char *join, const char *none)
{
	const char *p = list, *e;
	size_t n, skip = strlen(key) + 1;
	bool any = false;

	printf(LABEL, label);
	for (; *p != '\0'; p = *e != '\0' ? e + 1 : e) {
		if ((e = strchr(p, sep)) == NULL)
			e = p + strlen(p);
		if ((n = (size_t)(e - p)) == 0 ||
		    has_key(p, n, key, term) != pick)
			continue;
		if (pick) {
			if (n <= skip)
				continue;
			p += skip;
			n -= skip;
		}
		printf("%s%.*s", any ? join : "", (int)n, p);
		any = true;
	}
	printf("%s\n", any ? "" : none);
	fflush(stdout);
}

static void
report_failure(const struct test *t, const char *what, const char *host,
    unsigned port, const struct errinfo *e)
{
	char where[300];
	const char *msg = e->msg[0] != '\0' ? e->msg : st_name(e->st);
	size_t n;

	fflush(stdout);
	snprintf(where, sizeof(where), "%s:%u", host != NULL ? host : "?",
	    port);
	n = strlen(where);
	/* Connection errors name the server already; say it once. */
	if (strncmp(msg, where, n) == 0 && msg[n] == ':')
		fprintf(stderr, "%s: %s %s\n", t->prog, what, msg);
	else
		fprintf(stderr, "%s: %s %s: %s\n", t->prog, what, where, msg);
}

/*
 * The lines every protocol's block starts with: where we got to, what
 * the server said first, and how TLS went (a plain connection says so).
 */
static void
report_session(const struct endpoint *ep, struct conn *c,
    const char *greeting)
{
	struct tls_info ti;
	struct errinfo e;

	line("connected", "%s[%s]:%u", ep->host, conn_peer(c), ep->port);
	line("greeting", "%s", greeting[0] != '\0' ? greeting : "(no text)");
	st_clear(&e);
	if (!conn_is_tls(c)) {
		line("TLS", "none (plain text, allowed to loopback only)");
		return;
	}
	if (conn_tls_info(c, &ti, &e) != ST_OK) {
		line("TLS", "details unavailable (%s)", e.msg);
		return;
	}
	line("TLS", "%s, %s", ti.version, ti.cipher);
	line("certificate", "%s", ti.subject[0] != '\0' ? ti.subject : "-");
	line("issuer", "%s", ti.issuer[0] != '\0' ? ti.issuer : "-");
	line("expires", "%s", ti.not_after[0] != '\0' ? ti.not_after : "-");
	line("SHA-256", "%s", ti.sha256);
}

/* Where a protocol is tested: no bind address, no TLS session cache. */
static void
target(const struct test *t, const struct endpoint *ep, struct conn_target *ct)
{
	memset(ct, 0, sizeof(*ct));
	ct->host = ep->host;
	ct->port = ep->port;
	ct->tls = ep->tls;
	ct->timeout = t->acct->timeout;
	ct->tls_ctx = t->ctx;
}

/* ---- SMTP ---------------------------------------------------------- */

static const struct endpoint *
smtp_ep(const struct account *a)
{
	return &a->smtp;
}

static enum status
t_smtp_open(const struct test *t, void **s, struct errinfo *ei)
{
	struct conn_target ct;
	struct smtp *sm = NULL;
	enum status st;

	target(t, &t->acct->smtp, &ct);
	st = smtp_open(&sm, &ct, conf_domain(t->acct), ei);
	*s = sm;
	return st;
}

static void
t_smtp_report(const struct test *t, void *s)
{
	static const struct {
		unsigned flag;
		const char *name;
	} names[] = {
		{ SMTP_CAP_STARTTLS,	"STARTTLS" },
		{ SMTP_CAP_PIPELINING,	"PIPELINING" },
		{ SMTP_CAP_8BITMIME,	"8BITMIME" },
		{ SMTP_CAP_SMTPUTF8,	"SMTPUTF8" },
		{ SMTP_CAP_DSN,		"DSN" },
		{ SMTP_CAP_ENHANCED,	"ENHANCEDSTATUSCODES" },
		{ SMTP_CAP_CHUNKING,	"CHUNKING" },
	};
	const struct smtp_caps *caps = smtp_caps(s);
	size_t i;
	bool any = false;

	report_session(&t->acct->smtp, smtp_conn(s), smtp_greeting(s));
	if (caps->domain[0] != '\0')
		line("server name", "%s", caps->domain);
	printf(LABEL, "capabilities");
	if (caps->flags & SMTP_CAP_SIZE) {
		if (caps->size_max > 0)
			printf("SIZE %llu",
			    (unsigned long long)caps->size_max);
		else
			printf("SIZE (no limit given)");
		any = true;
	}
	for (i = 0; i < NELEM(names); i++) {
		if ((caps->flags & names[i].flag) == 0)
			continue;
		printf("%s%s", any ? " " : "", names[i].name);
		any = true;
	}
	printf("%s\n", any ? "" : "none that bearmail uses");
	line("AUTH", "%s", (caps->flags & SMTP_CAP_AUTH) &&
	    caps->auth_names[0] != '\0' ? caps->auth_names : "not offered");
}

static enum status
t_smtp_auth(void *s, enum auth_mech mech, const char *user,
    const char *secret, bool *rejected, struct errinfo *ei)
{
	return smtp_auth(s, mech, user, secret, rejected, ei);
}

static bool
t_smtp_usable(void *s)
{
	return smtp_usable(s);
}

static void
t_smtp_quit(void *s)
{
	struct errinfo e;

	st_clear(&e);
	smtp_quit(s, &e);
}

static void
t_smtp_close(void *s)
{
	smtp_close(s);
}

/* ---- IMAP ---------------------------------------------------------- */

static const struct endpoint *
imap_ep(const struct account *a)
{
	return &a->imap;
}

static enum status
t_imap_open(const struct test *t, void **s, struct errinfo *ei)
{
	struct conn_target ct;
	struct imap *im = NULL;
	enum status st;

	target(t, &t->acct->imap, &ct);
	st = imap_open(&im, &ct, ei);
	*s = im;
	return st;
}

/* The capability atoms as the server sent them; AUTH=X on their own line. */
static void
t_imap_report(const struct test *t, void *s)
{
	const char *caps = imap_caps(s);

	report_session(&t->acct->imap, imap_conn(s), imap_greeting(s));
	line_items("capabilities", caps, ' ', "AUTH", '=', false, " ",
	    "none announced");
	line_items("AUTH", caps, ' ', "AUTH", '=', true, " ", "not offered");
}

static enum status
t_imap_auth(void *s, enum auth_mech mech, const char *user,
    const char *secret, bool *rejected, struct errinfo *ei)
{
	return imap_auth(s, mech, user, secret, rejected, ei);
}

static bool
t_imap_usable(void *s)
{
	return imap_usable(s);
}

static void
t_imap_quit(void *s)
{
	struct errinfo e;

	st_clear(&e);
	imap_logout(s, &e);
}

static void
t_imap_close(void *s)
{
	imap_close(s);
}

/* ---- POP3 ---------------------------------------------------------- */

static const struct endpoint *
pop_ep(const struct account *a)
{
	return &a->pop;
}

static enum status
t_pop_open(const struct test *t, void **s, struct errinfo *ei)
{
	struct conn_target ct;
	struct pop3 *p = NULL;
	enum status st;

	target(t, &t->acct->pop, &ct);
	st = pop3_open(&p, &ct, ei);
	*s = p;
	return st;
}

/*
 * The CAPA lines as the server sent them, comma separated since a line
 * may hold arguments ("EXPIRE 30"); the SASL line on its own line.
 */
static void
t_pop_report(const struct test *t, void *s)
{
	const char *capa = pop3_capa_lines(s), *mechs = pop3_sasl_mechs(s);

	report_session(&t->acct->pop, pop3_conn(s), pop3_greeting(s));
	if (capa[0] == '\0') {
		line("capabilities", "none listed (the server may not know "
		    "CAPA)");
		line("AUTH", "not listed (AUTH is tried all the same)");
		return;
	}
	line_items("capabilities", capa, '\n', "SASL", ' ', false, ", ",
	    "none listed");
	line("AUTH", "%s", mechs[0] != '\0' ? mechs : "not offered");
}

static enum status
t_pop_auth(void *s, enum auth_mech mech, const char *user,
    const char *secret, bool *rejected, struct errinfo *ei)
{
	return pop3_auth(s, mech, user, secret, rejected, ei);
}

static bool
t_pop_usable(void *s)
{
	return pop3_usable(s);
}

static void
t_pop_quit(void *s)
{
	struct errinfo e;

	st_clear(&e);
	pop3_quit(s, &e);
}

static void
t_pop_close(void *s)
{
	pop3_close(s);
}

static const struct proto protos[] = {
	{ "SMTP", AUTHTEST_SMTP, smtp_ep, t_smtp_open, t_smtp_report,
	  t_smtp_auth, t_smtp_usable, t_smtp_quit, t_smtp_close },
	{ "IMAP", AUTHTEST_IMAP, imap_ep, t_imap_open, t_imap_report,
	  t_imap_auth, t_imap_usable, t_imap_quit, t_imap_close },
	{ "POP3", AUTHTEST_POP, pop_ep, t_pop_open, t_pop_report,
	  t_pop_auth, t_pop_usable, t_pop_quit, t_pop_close },
};

/* ---- the test, whatever the protocol --------------------------------- */

/* What login.h's callbacks need: the test and the protocol. */
struct login_ctx {
	const struct test *t;
	const struct proto *pr;
};

static enum status
login_reopen(void *arg, void **sp, struct errinfo *ei)
{
	const struct login_ctx *lc = arg;

	lc->pr->close(*sp);
	*sp = NULL;
	return lc->pr->open(lc->t, sp, ei);
}

static enum status
login_cred(void *arg, bool refresh, char **secret, struct errinfo *ei)
{
	const struct login_ctx *lc = arg;

	return lc->t->secret_fn(lc->t->arg, refresh, secret, ei);
}

static void
login_refused(void *arg, const struct errinfo *refusal)
{
	const struct login_ctx *lc = arg;
	const struct account *a = lc->t->acct;
	char mech[16];

	line("login", "%s as %s: token refused (%s); refreshing it once",
	    mech_text(a->auth, mech), a->impersonate != NULL ?
	    a->impersonate : a->user, refusal->msg);
}

/*
 * Log in on *sp, with one refresh and retry when the server refuses the
 * token (login.h, as bearmail and bearmail-fetch do).
 */
static enum status
login(const struct test *t, const struct proto *pr, void **sp,
    struct errinfo *ei)
{
	const struct account *a = t->acct;
	struct login_ctx lc = { t, pr };
	struct login_info info;
	struct login l;
	enum status st;
	char mech[16];

	memset(&l, 0, sizeof(l));
	l.mech = a->auth;
	l.user = a->impersonate != NULL ? a->impersonate : a->user;
	l.auth = pr->auth;
	l.usable = pr->usable;
	l.reopen = login_reopen;
	l.cred = login_cred;
	l.refused = login_refused;
	l.arg = &lc;
	st = login_run(&l, sp, &info, ei);
	if (st == ST_OK)
		line("login", "%s as %s: authenticated", mech_text(a->auth,
		    mech), l.user);
	else if (info.step == LOGIN_CRED)
		st_context(ei, "getting the credential");
	else if (info.step == LOGIN_REFRESH)
		st_context(ei, "refreshing the refused token");
	else if (info.step == LOGIN_RETRY && st == ST_AUTH)
		st_context(ei, "refused again with a freshly refreshed token");
	return st;
}

static enum status
test_one(struct test *t, const struct proto *pr, struct errinfo *ei)
{
	const struct account *a = t->acct;
	const struct endpoint *ep = pr->endpoint(a);
	const char *key = pr->bit == AUTHTEST_SMTP ? "smtp" :
	    pr->bit == AUTHTEST_IMAP ? "imap" : "pop";
	enum status st;
	void *s = NULL;

	printf("\n%s %s:%u, %s\n", pr->name, ep->host != NULL ? ep->host :
	    "(no host)", ep->port, tls_mode_text(ep->tls));
	fflush(stdout);
	if (ep->host == NULL) {
		st = st_error(ei, ST_CONFIG, "%s:%d: account %s has no "
		    "%s_host", a->file != NULL ? a->file : "?", a->line,
		    a->name, key);
		goto done;
	}
	if (ep->tls != TLSM_NONE && t->ctx == NULL &&
	    (st = tls_ctx_new(&t->ctx, a->ca_file, ei)) != ST_OK)
		goto done;
	if ((st = pr->open(t, &s, ei)) != ST_OK)
		goto done;
	pr->report(t, s);
	if ((st = login(t, pr, &s, ei)) != ST_OK)
		goto done;
	/* Saying goodbye properly is not part of the verdict. */
	pr->quit(s);
done:
	if (s != NULL)
		pr->close(s);
	if (st != ST_OK)
		report_failure(t, pr->name, ep->host, ep->port, ei);
	return st;
}

enum status
authtest_run(const char *prog, const struct account *acct, unsigned which,
    authtest_secret_fn secret_fn, void *arg, struct errinfo *ei)
{
	struct test t;
	struct errinfo e;
	enum status st, first = ST_OK;
	char mech[16];
	size_t i;

	memset(&t, 0, sizeof(t));
	t.prog = prog;
	t.acct = acct;
	t.secret_fn = secret_fn;
	t.arg = arg;
	if (which == 0) {
		/* IMAP is bearmail-fetch's default: test it where it is used. */
		which = AUTHTEST_SMTP;
		if (acct->deliver != NULL)
			which |= AUTHTEST_IMAP;
	}
	printf("account %s (%s, provider %s, %s)\n", acct->name,
	    acct->user != NULL ? acct->user : "-",
	    conf_provider_name(acct->provider), mech_text(acct->auth, mech));
	fflush(stdout);
	for (i = 0; i < NELEM(protos); i++) {
		if ((which & protos[i].bit) == 0)
			continue;
		st_clear(&e);
		if ((st = test_one(&t, &protos[i], &e)) != ST_OK &&
		    first == ST_OK)
			first = st;
	}
	if (t.ctx != NULL)
		tls_ctx_free(t.ctx);
	if (first != ST_OK) {
		/* Each failure was printed already: only the status is left. */
		st_clear(ei);
		ei->st = first;
	}
	return first;
}
