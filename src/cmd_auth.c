/*
 * cmd_auth.c: bearmail-auth, which authorizes accounts and keeps their
 * OAuth tokens.  Options and wiring only: the protocol is in oauth.c,
 * the store in token.c.
 *
 * The login listener is a deliberately small HTTP/1.x server (RFC 9112
 * request line and header block only) on 127.0.0.1, for the redirect of
 * RFC 8252 section 7.3: it reads at most one bounded header block per
 * connection, answers one small page, and never blocks past a deadline.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "authtest.h"
#include "buf.h"
#include "conf.h"
#include "cred.h"
#include "log.h"
#include "oauth.h"
#include "priv.h"
#include "status.h"
#include "token.h"
#include "version.h"

#define PROG		"bearmail-auth"
#define LOGIN_TIMEOUT	900	/* seconds the login waits for the user */
#define HTTP_REQ_MAX	8192	/* one request's header block */
#define HTTP_CONN_MAX	8	/* browsers open spare connections */
#define HTTP_CONN_TIME	10	/* seconds one connection may take */
#define PASTE_MAX	(16 * 1024)

struct opts {
	const char *config;	/* -C */
	bool device;		/* login --device */
	bool force;		/* token --force */
	bool local;		/* logout --local */
	unsigned port;		/* login --port */
	unsigned test;		/* test --smtp --imap --pop: AUTHTEST_* */
};

static void
usage(FILE *f)
{
	fprintf(f,
"usage: " PROG " [-v] [-C file] login [--device] [--port N] [account]\n"
"       " PROG " [-v] [-C file] import [account]    (refresh token on stdin)\n"
"       " PROG " [-v] [-C file] token [--refresh | --force] [account]\n"
"       " PROG " [-v] [-C file] status [account]\n"
"       " PROG " [-v] [-C file] test [--smtp] [--imap] [--pop] [account]\n"
"       " PROG " [-v] [-C file] logout [--local] account\n"
"       " PROG " --help | --version\n");
}

static int
fail(const struct errinfo *ei)
{
	fprintf(stderr, PROG ": %s\n", ei->msg[0] != '\0' ? ei->msg :
	    st_name(ei->st));
	return st_exitcode(ei->st);
}

static int __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	usage(stderr);
	return st_exitcode(ST_USAGE);
}

static bool
is_service(const struct account *acct)
{
	return acct->service_account_key != NULL;
}

static enum status
need_oauth(const struct account *acct, struct errinfo *ei)
{
	if (acct->provider == PROV_PASSWORD)
		return st_error(ei, ST_CONFIG, "account %s uses provider "
		    "password: it has no OAuth tokens (password_command gives "
		    "its password)", acct->name);
	return ST_OK;
}

static enum status
check_user(const struct account *acct, const struct token *tok,
    struct errinfo *ei)
{
	if (tok->user != NULL && acct->user != NULL &&
	    strcmp(tok->user, acct->user) != 0)
		return st_error(ei, ST_AUTH, "account %s: the stored token was "
		    "authorized for %s, but user is now %s: run `" PROG
		    " login %s`", acct->name, tok->user, acct->user,
		    acct->name);
	return ST_OK;
}

static char *
xstrdup(const char *s, struct errinfo *ei)
{
	char *p;

	if (s == NULL)
		return NULL;
	if ((p = strdup(s)) == NULL)
		st_errno(ei, ST_SYS, "out of memory");
	return p;
}

/* Save a new grant (login, import): replaces whatever was stored. */
static enum status
store_new(const struct conf *conf, const struct account *acct,
    struct token *fresh, struct errinfo *ei)
{
	struct token_store ts;
	enum status st;

	if ((st = token_store_open(&ts, conf->state_dir, acct->name, true,
	    ei)) != ST_OK)
		return st;
	if (fresh->user == NULL && acct->user != NULL &&
	    (fresh->user = xstrdup(acct->user, ei)) == NULL) {
		st = ST_SYS;
		goto done;
	}
	if (fresh->authorized == 0)
		fresh->authorized = time(NULL);
	if ((st = token_lock(&ts, acct->timeout + 10, ei)) == ST_OK)
		st = token_save(&ts, fresh, ei);
	if (st == ST_OK)
		printf("Authorized account %s (%s); tokens stored in %s\n",
		    acct->name, acct->user != NULL ? acct->user : "?",
		    ts.path);
done:
	token_store_close(&ts);
	return st;
}

/* ---- token ---- */

/*
 * A valid access token for acct in *tok (the caller zeroes it first and
 * token_free()s it after), refreshed in this process when needed.  The
 * refresh protocol: lock, re-read, refresh only if still stale (or,
 * forced, if nobody refreshed since we started), save, unlock.
 */
static enum status
get_token(const struct conf *conf, const struct account *acct, bool force,
    struct token *tok, struct errinfo *ei)
{
	struct token_store ts;
	struct token fresh;
	time_t start = time(NULL);
	enum status st;
	bool found = false;

	memset(&fresh, 0, sizeof(fresh));
	if ((st = need_oauth(acct, ei)) != ST_OK)
		return st;
	if ((st = token_store_open(&ts, conf->state_dir, acct->name, true,
	    ei)) != ST_OK)
		return st;
	if (!force) {
		if ((st = token_load(&ts, tok, &found, ei)) != ST_OK)
			goto done;
		if (found && !token_stale(tok, time(NULL), TOKEN_MARGIN) &&
		    check_user(acct, tok, NULL) == ST_OK)
			goto done;
		token_free(tok);
	}
	if ((st = token_lock(&ts, acct->timeout + 10, ei)) != ST_OK ||
	    (st = token_load(&ts, tok, &found, ei)) != ST_OK)
		goto done;
	if (found && (st = check_user(acct, tok, ei)) != ST_OK)
		goto done;
	/* Someone refreshed while we waited for the lock: use theirs. */
	if (found && !token_stale(tok, time(NULL), TOKEN_MARGIN) &&
	    (!force || tok->obtained > start))
		goto done;
	if (is_service(acct)) {
		st = oauth_do_service(acct, &fresh, ei);
	} else if (!found || tok->refresh_token == NULL) {
		st = st_error(ei, ST_AUTH, "account %s has no refresh token "
		    "stored: run `" PROG " login %s`", acct->name, acct->name);
	} else {
		st = oauth_do_refresh(acct, tok->refresh_token, &fresh, ei);
	}
	/* On any failure the stored tokens stay exactly as they were. */
	if (st != ST_OK)
		goto done;
	if (fresh.user == NULL && acct->user != NULL &&
	    (fresh.user = xstrdup(acct->user, ei)) == NULL) {
		st = ST_SYS;
		goto done;
	}
	token_merge(tok, &fresh);
	st = token_save(&ts, tok, ei);
done:
	token_store_close(&ts);
	token_free(&fresh);
	return st;
}

static enum status
cmd_token(const struct conf *conf, const struct account *acct,
    const struct opts *o, struct errinfo *ei)
{
	struct token tok;
	enum status st;

	memset(&tok, 0, sizeof(tok));
	if ((st = get_token(conf, acct, o->force, &tok, ei)) != ST_OK)
		goto done;
	printf("%s\n", tok.access_token);
	if (fflush(stdout) == EOF || ferror(stdout))
		st = st_errno(ei, ST_SYS, "standard output");
done:
	token_free(&tok);
	return st;
}

/* ---- status ---- */

static void
print_time(const char *label, time_t t)
{
	char s[64];
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL ||
	    strftime(s, sizeof(s), "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
		snprintf(s, sizeof(s), "%jd", (intmax_t)t);
	printf("  %-15s %s", label, s);
}

static enum status
status_one(const struct conf *conf, const struct account *acct,
    struct errinfo *ei)
{
	struct token_store ts;
	struct token tok;
	enum status st;
	time_t now = time(NULL);
	bool found = false;

	memset(&tok, 0, sizeof(tok));
	printf("account %s\n", acct->name);
	printf("  %-15s %s\n", "provider", conf_provider_name(acct->provider));
	printf("  %-15s %s\n", "user", acct->user != NULL ? acct->user : "-");
	if (acct->provider == PROV_PASSWORD) {
		printf("  %-15s %s\n", "password",
		    acct->password_command != NULL ?
		    "from password_command" : "no password_command");
		return ST_OK;
	}
	if (is_service(acct))
		printf("  %-15s %s, acting for %s\n", "service account",
		    acct->service_account_key, acct->impersonate != NULL ?
		    acct->impersonate : acct->user);
	if ((st = token_store_open(&ts, conf->state_dir, acct->name, false,
	    ei)) != ST_OK)
		return st;
	if ((st = token_load(&ts, &tok, &found, ei)) != ST_OK)
		goto done;
	printf("  %-15s %s\n", "token file", found ? ts.path : "none");
	if (!found) {
		printf("  %-15s run `" PROG " %s %s`\n", "to authorize",
		    is_service(acct) ? "token" : "login", acct->name);
		goto done;
	}
	if (tok.user != NULL && acct->user != NULL &&
	    strcmp(tok.user, acct->user) != 0)
		printf("  %-15s authorized for %s, not %s: log in again\n",
		    "WARNING", tok.user, acct->user);
	if (tok.refresh_token != NULL) {
		if (tok.authorized > 0) {
			print_time("refresh token", tok.authorized);
			printf(" (stored)\n");
		} else {
			printf("  %-15s present\n", "refresh token");
		}
	} else {
		printf("  %-15s %s\n", "refresh token", is_service(acct) ?
		    "none (service accounts need none)" : "none");
	}
	if (tok.access_token == NULL) {
		printf("  %-15s none\n", "access token");
	} else if (tok.expires <= 0) {
		printf("  %-15s expiry unknown (will be refreshed)\n",
		    "access token");
	} else if (tok.expires <= now) {
		print_time("access token", tok.expires);
		printf(" (expired)\n");
	} else {
		print_time("access token", tok.expires);
		printf(" (%jd min left%s)\n",
		    (intmax_t)((tok.expires - now) / 60),
		    token_stale(&tok, now, TOKEN_MARGIN) ?
		    ", refreshed on next use" : "");
	}
	if (tok.obtained > 0) {
		print_time("last refresh", tok.obtained);
		printf("\n");
	}
	if (tok.scope != NULL)
		printf("  %-15s %s\n", "scope", tok.scope);
done:
	token_free(&tok);
	token_store_close(&ts);
	return st;
}

static enum status
cmd_status(const struct conf *conf, const char *name, struct errinfo *ei)
{
	const struct account *acct;
	struct errinfo e1;
	enum status st, worst = ST_OK;
	size_t i;

	if (name != NULL) {
		if ((st = conf_account(conf, name, &acct, ei)) != ST_OK)
			return st;
		return status_one(conf, acct, ei);
	}
	if (conf->naccounts == 0)
		return st_error(ei, ST_CONFIG, "no account is configured");
	for (i = 0; i < conf->naccounts; i++) {
		st_clear(&e1);
		if (i > 0)
			printf("\n");
		if ((st = status_one(conf, &conf->accounts[i], &e1)) != ST_OK) {
			fflush(stdout);
			fprintf(stderr, PROG ": %s\n", e1.msg);
			if (worst == ST_OK) {
				worst = st;
				*ei = e1;
			}
		}
	}
	/* Each failure was printed already; report only the exit code. */
	if (worst != ST_OK)
		ei->msg[0] = '\0';
	return worst;
}

/* ---- import ---- */

static enum status
read_stdin_line(struct buf *b, struct errinfo *ei)
{
	char chunk[1024];
	ssize_t n;
	size_t len;

	for (;;) {
		n = read(STDIN_FILENO, chunk, sizeof(chunk));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return st_errno(ei, ST_SYS, "standard input");
		if (n == 0)
			break;
		if (buf_add(b, chunk, (size_t)n, NULL) != ST_OK) {
			st_wipe(chunk, sizeof(chunk));
			return st_error(ei, ST_USAGE, "standard input: more "
			    "than %zu bytes", b->max);
		}
		if (memchr(chunk, '\n', (size_t)n) != NULL)
			break;
	}
	st_wipe(chunk, sizeof(chunk));
	if (b->data == NULL)
		return ST_OK;
	/* Keep the first line, without surrounding blanks. */
	len = strcspn(b->data, "\r\n");
	while (len > 0 && (b->data[len - 1] == ' ' || b->data[len - 1] == '\t'))
		len--;
	st_wipe(b->data + len, b->len - len);
	b->len = len;
	b->data[len] = '\0';
	len = strspn(b->data, " \t");
	buf_consume(b, len);
	return ST_OK;
}

static enum status
cmd_import(const struct conf *conf, const struct account *acct,
    struct errinfo *ei)
{
	struct token tok, fresh;
	struct errinfo e2;
	struct buf in;
	enum status st;

	memset(&tok, 0, sizeof(tok));
	memset(&fresh, 0, sizeof(fresh));
	if ((st = need_oauth(acct, ei)) != ST_OK)
		return st;
	if (is_service(acct))
		return st_error(ei, ST_USAGE, "account %s uses a service "
		    "account: there is no refresh token to import",
		    acct->name);
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "Paste the refresh token for %s, then "
		    "press Enter:\n", acct->name);
	buf_init(&in, TOKEN_VALUE_MAX + 64);
	if ((st = read_stdin_line(&in, ei)) != ST_OK)
		goto done;
	if (in.data == NULL || !token_valid_value(in.data)) {
		st = st_error(ei, ST_USAGE, "standard input holds no refresh "
		    "token (one line of printable characters expected)");
		goto done;
	}
	if ((tok.refresh_token = buf_steal(&in, ei)) == NULL) {
		st = ST_SYS;
		goto done;
	}
	tok.authorized = time(NULL);
	/* Prove it works before it replaces anything. */
	st_clear(&e2);
	st = oauth_do_refresh(acct, tok.refresh_token, &fresh, &e2);
	if (st == ST_OK) {
		token_merge(&tok, &fresh);
	} else if (st == ST_AUTH || st == ST_CONFIG) {
		*ei = e2;
		goto done;
	} else {
		fprintf(stderr, PROG ": warning: the refresh token could not "
		    "be checked now (%s); storing it anyway\n", e2.msg);
	}
	st = store_new(conf, acct, &tok, ei);
done:
	buf_wipe(&in);
	token_free(&tok);
	token_free(&fresh);
	return st;
}

/* ---- logout ---- */

static enum status
cmd_logout(const struct conf *conf, const struct account *acct,
    const struct opts *o, struct errinfo *ei)
{
	struct token_store ts;
	struct token tok;
	enum status st;
	bool found = false, refresh;
	const char *t;

	memset(&tok, 0, sizeof(tok));
	if ((st = need_oauth(acct, ei)) != ST_OK)
		return st;
	if ((st = token_store_open(&ts, conf->state_dir, acct->name, true,
	    ei)) != ST_OK)
		return st;
	if ((st = token_lock(&ts, acct->timeout + 10, ei)) != ST_OK ||
	    (st = token_load(&ts, &tok, &found, ei)) != ST_OK)
		goto done;
	if (!found) {
		printf("account %s: nothing stored\n", acct->name);
		goto done;
	}
	refresh = tok.refresh_token != NULL;
	t = refresh ? tok.refresh_token : tok.access_token;
	if (o->local || t == NULL) {
		/* Nothing to revoke, or the user asked to skip it. */
	} else if (acct->revoke_endpoint == NULL) {
		printf("account %s: the provider has no revocation endpoint; "
		    "withdraw the app's access in the account's security "
		    "settings if it should stop working at once\n",
		    acct->name);
	} else if ((st = oauth_do_revoke(acct, t, refresh, ei)) != ST_OK) {
		st_context(ei, "nothing deleted; try again later, or delete "
		    "without revoking with `" PROG " logout --local %s`",
		    acct->name);
		goto done;
	} else {
		printf("account %s: token revoked\n", acct->name);
	}
	if ((st = token_remove(&ts, ei)) == ST_OK)
		printf("account %s: %s deleted\n", acct->name, ts.path);
done:
	token_free(&tok);
	token_store_close(&ts);
	return st;
}

/* ---- login: loopback listener and pasted address ---- */

struct http_conn {
	int fd;
	struct buf req;
	struct timespec deadline;
};

static long
ms_until(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(t->tv_sec - now.tv_sec) * 1000 +
	    (t->tv_nsec - now.tv_nsec) / 1000000;
}

/* Best effort: the socket is non-blocking and the reply small. */
static void
http_send(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		/* MSG_NOSIGNAL: a browser that hung up must not kill us. */
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void
http_reply(int fd, int code, const char *reason, const char *text)
{
	char hdr[256];
	int n;

	n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %d %s\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Cache-Control: no-store\r\n"
	    "Connection: close\r\n"
	    "Content-Length: %zu\r\n\r\n", code, reason, strlen(text) + 1);
	if (n > 0 && (size_t)n < sizeof(hdr))
		http_send(fd, hdr, (size_t)n);
	http_send(fd, text, strlen(text));
	http_send(fd, "\n", 1);
}

static void
http_close(struct http_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	buf_wipe(&c->req);
}

/*
 * Look at a complete request.  ST_OK with *code, ST_USAGE for requests
 * that are not the redirect (answered 404, keep waiting), anything else
 * ends the login.
 */
static enum status
http_handle(struct http_conn *c, const char *state, char **code,
    struct errinfo *ei)
{
	char *line = c->req.data, *sp, *target;
	struct errinfo e2;
	enum status st;

	line[strcspn(line, "\r\n")] = '\0';
	if ((sp = strchr(line, ' ')) == NULL || (size_t)(sp - line) != 3 ||
	    strncmp(line, "GET", 3) != 0) {
		http_reply(c->fd, 405, "Method Not Allowed", "GET only.");
		return ST_USAGE;
	}
	target = sp + 1;
	if ((sp = strchr(target, ' ')) == NULL ||
	    strncmp(sp + 1, "HTTP/1.", 7) != 0 || *target != '/') {
		http_reply(c->fd, 400, "Bad Request", "Bad request.");
		return ST_USAGE;
	}
	*sp = '\0';
	st_clear(&e2);
	st = oauth_parse_redirect(target, state, code, &e2);
	if (st == ST_USAGE) {
		http_reply(c->fd, 404, "Not Found", "Not found.");
		return ST_USAGE;
	}
	if (st != ST_OK) {
		http_reply(c->fd, 400, "Bad Request", e2.msg);
		*ei = e2;
		return st;
	}
	http_reply(c->fd, 200, "OK", PROG ": authorization received. You "
	    "can close this window and return to the terminal.");
	return ST_OK;
}

/* Read what a connection has; ST_OK with *done when the header block is in. */
static void
http_read(struct http_conn *c, bool *done)
{
	char chunk[2048];
	ssize_t n;

	*done = false;
	n = read(c->fd, chunk, sizeof(chunk));
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		http_close(c);
		return;
	}
	if (buf_add(&c->req, chunk, (size_t)n, NULL) != ST_OK) {
		http_reply(c->fd, 431, "Request Header Fields Too Large",
		    "Request too large.");
		http_close(c);
		return;
	}
	if (strstr(c->req.data, "\r\n\r\n") != NULL ||
	    strstr(c->req.data, "\n\n") != NULL)
		*done = true;
}

static void
http_accept(int lfd, struct http_conn *conns)
{
	int fd, i;

	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd == -1)
		return;
	for (i = 0; i < HTTP_CONN_MAX; i++)
		if (conns[i].fd < 0)
			break;
	if (i == HTTP_CONN_MAX) {
		close(fd);
		return;
	}
	conns[i].fd = fd;
	buf_init(&conns[i].req, HTTP_REQ_MAX);
	clock_gettime(CLOCK_MONOTONIC, &conns[i].deadline);
	conns[i].deadline.tv_sec += HTTP_CONN_TIME;
}

/* A line pasted on standard input: ST_USAGE means "not it, keep going". */
static enum status
paste_handle(struct buf *in, const char *state, char **code,
    struct errinfo *ei)
{
	struct errinfo e2;
	enum status st = ST_USAGE;
	char *nl;
	size_t n;

	while (in->data != NULL && (nl = memchr(in->data, '\n', in->len)) !=
	    NULL) {
		n = (size_t)(nl - in->data);
		*nl = '\0';
		if (n > 0 && in->data[n - 1] == '\r')
			in->data[n - 1] = '\0';
		st_clear(&e2);
		if (in->data[strspn(in->data, " \t")] == '\0') {
			st = ST_USAGE;
		} else if ((st = oauth_parse_redirect(in->data, state, code,
		    &e2)) == ST_USAGE) {
			fprintf(stderr, PROG ": that is not the address the "
			    "browser was sent to (it holds code= and "
			    "state=); paste it again\n");
		} else if (st != ST_OK) {
			*ei = e2;
		}
		buf_consume(in, n + 1);
		if (st != ST_USAGE)
			return st;
	}
	return ST_USAGE;
}

static enum status
listen_loopback(unsigned port, int *lfd, unsigned *bound, struct errinfo *ei)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, one = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		return st_errno(ei, ST_SYS, "socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(fd, 16) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1) {
		st_errno(ei, ST_SYS, "listen on 127.0.0.1:%u", port);
		close(fd);
		return ST_SYS;
	}
	*lfd = fd;
	*bound = ntohs(sin.sin_port);
	return ST_OK;
}

/*
 * Also [::1] on the same port, best effort: with a "localhost" redirect
 * the browser may try IPv6 first.  -1 when IPv6 is not there.
 */
static int
listen_loopback6(unsigned port)
{
	struct sockaddr_in6 sin6;
	int fd, one = 1;

	if ((fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) == -1)
		return -1;
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = htons((uint16_t)port);
	sin6.sin6_addr = in6addr_loopback;
	if (bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) == -1 ||
	    listen(fd, 16) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Wait for the redirect on the listeners or a pasted address on stdin. */
static enum status
wait_for_code(int lfd, int lfd6, const char *state, char **code,
    struct errinfo *ei)
{
	struct http_conn conns[HTTP_CONN_MAX];
	struct pollfd pfd[3 + HTTP_CONN_MAX];
	struct timespec end;
	struct buf paste;
	enum status st = ST_USAGE;
	bool stdin_open = true, done;
	char chunk[1024];
	long left, t;
	ssize_t n;
	int i, np;

	for (i = 0; i < HTTP_CONN_MAX; i++) {
		conns[i].fd = -1;
		buf_init(&conns[i].req, HTTP_REQ_MAX);
	}
	buf_init(&paste, PASTE_MAX);
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += LOGIN_TIMEOUT;
	while (st == ST_USAGE) {
		if ((left = ms_until(&end)) <= 0) {
			st = st_error(ei, ST_TIMEOUT, "no authorization arrived "
			    "within %d minutes: run the login again",
			    LOGIN_TIMEOUT / 60);
			break;
		}
		np = 0;
		pfd[np].fd = lfd;
		pfd[np++].events = POLLIN;
		pfd[np].fd = stdin_open ? STDIN_FILENO : -1;
		pfd[np++].events = POLLIN;
		pfd[np].fd = lfd6;
		pfd[np++].events = POLLIN;
		for (i = 0; i < HTTP_CONN_MAX; i++) {
			pfd[np].fd = conns[i].fd;
			pfd[np++].events = POLLIN;
			if (conns[i].fd >= 0 &&
			    (t = ms_until(&conns[i].deadline)) < left)
				left = t > 0 ? t : 0;
		}
		if (poll(pfd, (nfds_t)np, (int)left) == -1 && errno != EINTR) {
			st = st_errno(ei, ST_SYS, "poll");
			break;
		}
		for (i = 0; i < HTTP_CONN_MAX && st == ST_USAGE; i++) {
			if (conns[i].fd < 0)
				continue;
			if (pfd[3 + i].revents != 0) {
				http_read(&conns[i], &done);
				if (done) {
					st = http_handle(&conns[i], state, code,
					    ei);
					http_close(&conns[i]);
					continue;
				}
			}
			if (conns[i].fd >= 0 && ms_until(&conns[i].deadline) <= 0)
				http_close(&conns[i]);
		}
		if (st != ST_USAGE)
			break;
		if (pfd[1].revents != 0) {
			n = read(STDIN_FILENO, chunk, sizeof(chunk));
			if (n > 0 && buf_add(&paste, chunk, (size_t)n, NULL) !=
			    ST_OK) {
				fprintf(stderr, PROG ": pasted line too long; "
				    "ignored\n");
				buf_reset(&paste);
			} else if (n > 0) {
				st = paste_handle(&paste, state, code, ei);
			} else if (n == 0 || (errno != EINTR &&
			    errno != EAGAIN)) {
				stdin_open = false;
			}
			if (st != ST_USAGE)
				break;
		}
		if (pfd[0].revents != 0)
			http_accept(lfd, conns);
		if (pfd[2].revents != 0)
			http_accept(lfd6, conns);
	}
	for (i = 0; i < HTTP_CONN_MAX; i++)
		http_close(&conns[i]);
	st_wipe(chunk, sizeof(chunk));
	buf_wipe(&paste);
	return st;
}

static enum status
login_code(const struct conf *conf, const struct account *acct,
    const struct opts *o, struct errinfo *ei)
{
	char verifier[OAUTH_VERIFIER_LEN + 1], challenge[OAUTH_CHALLENGE_LEN +
	    1], state[OAUTH_STATE_LEN + 1], redirect[64], host[256];
	struct token fresh;
	struct buf url;
	enum status st;
	char *code = NULL;
	unsigned port = 0;
	int lfd = -1, lfd6 = -1;

	memset(&fresh, 0, sizeof(fresh));
	buf_init(&url, 32 * 1024);
	if (acct->auth_endpoint == NULL) {
		st = st_error(ei, ST_CONFIG, "account %s has no auth_endpoint",
		    acct->name);
		goto done;
	}
	if ((st = listen_loopback(o->port, &lfd, &port, ei)) != ST_OK ||
	    (st = oauth_pkce_new(verifier, challenge, ei)) != ST_OK ||
	    (st = oauth_state_new(state, ei)) != ST_OK)
		goto done;
	/*
	 * RFC 8252 prefers the loopback IP literal, which Google accepts on
	 * any port; Microsoft matches a registered http://localhost on any
	 * port, so it gets that, and an IPv6 listener as well.
	 */
	if (acct->provider == PROV_MICROSOFT) {
		snprintf(redirect, sizeof(redirect), "http://localhost:%u",
		    port);
		lfd6 = listen_loopback6(port);
	} else {
		snprintf(redirect, sizeof(redirect), "http://127.0.0.1:%u/",
		    port);
	}
	if ((st = oauth_auth_url(acct, redirect, state, challenge, &url,
	    ei)) != ST_OK)
		goto done;
	if (gethostname(host, sizeof(host)) == -1)
		snprintf(host, sizeof(host), "THIS-HOST");
	host[sizeof(host) - 1] = '\0';
	printf("To authorize account %s (%s), open this address in a "
	    "browser:\n\n%s\n\n", acct->name, acct->user, url.data);
	printf("Waiting for the browser on %s\n", redirect);
	printf("If the browser runs on another machine, either forward the "
	    "port first:\n  ssh -N -L %u:127.0.0.1:%u %s\n"
	    "or, after authorizing, paste here the address the browser "
	    "could not open (it starts with %s):\n", port, port, host,
	    redirect);
	fflush(stdout);
	if ((st = wait_for_code(lfd, lfd6, state, &code, ei)) != ST_OK)
		goto done;
	close(lfd);
	lfd = -1;
	if ((st = oauth_do_code(acct, code, verifier, redirect, &fresh, ei)) !=
	    ST_OK)
		goto done;
	if (fresh.refresh_token == NULL) {
		st = st_error(ei, ST_AUTH, "account %s: the provider granted "
		    "access but returned no refresh token, so it would stop "
		    "working within the hour; remove the app's access in the "
		    "account's security settings and log in again",
		    acct->name);
		goto done;
	}
	st = store_new(conf, acct, &fresh, ei);
done:
	if (lfd >= 0)
		close(lfd);
	if (lfd6 >= 0)
		close(lfd6);
	if (code != NULL) {
		st_wipe(code, strlen(code));
		free(code);
	}
	st_wipe(verifier, sizeof(verifier));
	token_free(&fresh);
	buf_free(&url);
	return st;
}

static enum status
login_device(const struct conf *conf, const struct account *acct,
    struct errinfo *ei)
{
	char errcode[OAUTH_ERROR_MAX];
	struct oauth_device dev;
	struct token fresh;
	struct timespec end;
	struct errinfo e2;
	enum status st;
	int interval;

	memset(&fresh, 0, sizeof(fresh));
	if (acct->provider == PROV_GOOGLE)
		return st_error(ei, ST_USAGE, "account %s: %s", acct->name,
		    OAUTH_GOOGLE_DEVICE_REFUSAL);
	if (acct->device_endpoint == NULL)
		return st_error(ei, ST_CONFIG, "account %s has no "
		    "device_endpoint: set one, or log in without --device",
		    acct->name);
	if ((st = oauth_do_device_start(acct, &dev, ei)) != ST_OK)
		return st;
	printf("To authorize account %s (%s), open %s\nand enter the code "
	    "%s\n", acct->name, acct->user, dev.verification_uri,
	    dev.user_code);
	if (dev.verification_uri_complete != NULL)
		printf("(or open %s)\n", dev.verification_uri_complete);
	printf("Waiting for the authorization...\n");
	fflush(stdout);
	interval = dev.interval;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += dev.expires_in;
	for (;;) {
		if (ms_until(&end) <= 0) {
			st = st_error(ei, ST_AUTH, "account %s: the code expired "
			    "before it was entered: run `" PROG " login "
			    "--device %s` again", acct->name, acct->name);
			break;
		}
		poll(NULL, 0, interval * 1000);
		st_clear(&e2);
		st = oauth_do_device_poll(acct, &dev, &fresh, errcode, &e2);
		if (st == ST_OK)
			break;
		if (strcmp(errcode, "authorization_pending") == 0)
			continue;
		if (strcmp(errcode, "slow_down") == 0) {
			/* RFC 8628 section 3.5: 5 more seconds, for good. */
			interval += 5;
			continue;
		}
		*ei = e2;
		break;
	}
	if (st == ST_OK) {
		if (fresh.refresh_token == NULL)
			st = st_error(ei, ST_AUTH, "account %s: no refresh "
			    "token returned: the scope must include "
			    "offline_access", acct->name);
		else
			st = store_new(conf, acct, &fresh, ei);
	}
	oauth_device_free(&dev);
	token_free(&fresh);
	return st;
}

static enum status
cmd_login(const struct conf *conf, const struct account *acct,
    const struct opts *o, struct errinfo *ei)
{
	enum status st;

	if ((st = need_oauth(acct, ei)) != ST_OK)
		return st;
	if (is_service(acct))
		return st_error(ei, ST_USAGE, "account %s uses a service "
		    "account: it needs no login; `" PROG " token %s` gets a "
		    "token", acct->name, acct->name);
	if (o->device)
		return login_device(conf, acct, ei);
	return login_code(conf, acct, o, ei);
}

/* ---- test ---- */

struct test_cred {
	const struct conf *conf;
	const struct account *acct;
};

/* authtest's source of credentials: the store, refreshed in-process. */
static enum status
test_secret(void *arg, bool refresh, char **secret, struct errinfo *ei)
{
	const struct test_cred *tc = arg;
	struct token tok;
	enum status st;

	if (tc->acct->provider == PROV_PASSWORD)
		return cred_get(tc->conf, tc->acct, false, secret, ei);
	memset(&tok, 0, sizeof(tok));
	if ((st = get_token(tc->conf, tc->acct, refresh, &tok, ei)) == ST_OK) {
		*secret = tok.access_token;
		tok.access_token = NULL;
	}
	token_free(&tok);
	return st;
}

static enum status
cmd_test(const struct conf *conf, const struct account *acct,
    const struct opts *o, struct errinfo *ei)
{
	struct test_cred tc;

	tc.conf = conf;
	tc.acct = acct;
	return authtest_run(PROG, acct, o->test, test_secret, &tc, ei);
}

/* ---- main ---- */

/* test's server options: the AUTHTEST_* bit, or 0. */
static unsigned
test_option(const char *a)
{
	if (strcmp(a, "--smtp") == 0)
		return AUTHTEST_SMTP;
	if (strcmp(a, "--imap") == 0)
		return AUTHTEST_IMAP;
	if (strcmp(a, "--pop") == 0)
		return AUTHTEST_POP;
	return 0;
}

static bool
parse_port(const char *s, unsigned *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 65535)
		return false;
	*out = (unsigned)v;
	return true;
}

int
main(int argc, char *argv[])
{
	const struct account *acct = NULL;
	struct conf conf;
	struct errinfo ei;
	struct opts o;
	const char *cmd = NULL, *name = NULL, *a;
	enum status st;
	bool dashdash = false;
	unsigned bit;
	int i, npos = 0;

	/* Refresh tokens, access tokens and client secrets: no core files. */
	priv_no_core();
	memset(&o, 0, sizeof(o));
	memset(&conf, 0, sizeof(conf));
	st_clear(&ei);
	for (i = 1; i < argc; i++) {
		a = argv[i];
		if (!dashdash && strcmp(a, "--") == 0) {
			dashdash = true;
		} else if (!dashdash && (strcmp(a, "--help") == 0 ||
		    strcmp(a, "-h") == 0)) {
			usage(stdout);
			return 0;
		} else if (!dashdash && (strcmp(a, "--version") == 0 ||
		    strcmp(a, "-V") == 0)) {
			version_print(PROG, oauth_http_version());
			return 0;
		} else if (!dashdash && strcmp(a, "-v") == 0) {
			log_set_verbose(true);
		} else if (!dashdash && strncmp(a, "-C", 2) == 0) {
			if (a[2] != '\0')
				o.config = a + 2;
			else if (++i < argc)
				o.config = argv[i];
			else
				return usage_error("-C needs a file");
		} else if (!dashdash && cmd != NULL && strcmp(a, "--device") == 0 &&
		    strcmp(cmd, "login") == 0) {
			o.device = true;
		} else if (!dashdash && cmd != NULL && strcmp(a, "--port") == 0 &&
		    strcmp(cmd, "login") == 0) {
			if (++i >= argc || !parse_port(argv[i], &o.port))
				return usage_error("--port needs a number "
				    "from 1 to 65535");
		} else if (!dashdash && cmd != NULL && strcmp(cmd, "token") == 0 &&
		    (strcmp(a, "--force") == 0 || strcmp(a, "--refresh") == 0)) {
			o.force = strcmp(a, "--force") == 0;
		} else if (!dashdash && cmd != NULL && strcmp(cmd, "test") == 0 &&
		    (bit = test_option(a)) != 0) {
			o.test |= bit;
		} else if (!dashdash && cmd != NULL && strcmp(cmd, "logout") == 0 &&
		    strcmp(a, "--local") == 0) {
			o.local = true;
		} else if (!dashdash && a[0] == '-' && a[1] != '\0') {
			return usage_error("unknown option %s", a);
		} else if (cmd == NULL) {
			cmd = a;
		} else if (npos++ == 0) {
			name = a;
		} else {
			return usage_error("unexpected argument %s", a);
		}
	}
	if (cmd == NULL)
		return usage_error("no command given");
	if (strcmp(cmd, "login") != 0 && strcmp(cmd, "import") != 0 &&
	    strcmp(cmd, "token") != 0 && strcmp(cmd, "status") != 0 &&
	    strcmp(cmd, "logout") != 0 && strcmp(cmd, "test") != 0)
		return usage_error("unknown command %s", cmd);
	if (strcmp(cmd, "logout") == 0 && name == NULL)
		return usage_error("logout needs an account name");

	if ((st = conf_load(&conf, o.config, &ei)) != ST_OK)
		goto out;
	if (strcmp(cmd, "status") == 0) {
		st = cmd_status(&conf, name, &ei);
		goto out;
	}
	if ((st = conf_account(&conf, name, &acct, &ei)) != ST_OK)
		goto out;
	if (strcmp(cmd, "token") == 0)
		st = cmd_token(&conf, acct, &o, &ei);
	else if (strcmp(cmd, "login") == 0)
		st = cmd_login(&conf, acct, &o, &ei);
	else if (strcmp(cmd, "import") == 0)
		st = cmd_import(&conf, acct, &ei);
	else if (strcmp(cmd, "test") == 0)
		st = cmd_test(&conf, acct, &o, &ei);
	else
		st = cmd_logout(&conf, acct, &o, &ei);
out:
	conf_free(&conf);
	if (st != ST_OK) {
		fflush(stdout);
		if (ei.msg[0] == '\0')
			return st_exitcode(st);
		return fail(&ei);
	}
	return 0;
}
