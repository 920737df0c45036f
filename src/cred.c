/*
 * cred.c: access tokens from the store or from bearmail-auth, passwords
 * from password_command.
 *
 * Children are run with posix_spawn(3) in a process group of their own,
 * their output read through pipes with poll(2) against a deadline; on
 * the deadline the whole group is killed with SIGKILL, so a shell's
 * children (password_command = "helper | head -1") die with it instead of
 * holding the pipe open.  No signal handlers, no alarm.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cred.h"
#include "token.h"
#include "xio.h"

extern char **environ;

#define CRED_ERR_MAX	4096	/* child's standard error kept for the text */

enum status
cred_exit_status(int wstatus)
{
	if (!WIFEXITED(wstatus))
		return ST_TEMPFAIL;
	switch (WEXITSTATUS(wstatus)) {
	case 0:
		return ST_OK;
	case EX_TEMPFAIL:
		return ST_TEMPFAIL;
	case EX_NOPERM:
		return ST_AUTH;
	case EX_CONFIG:
		return ST_CONFIG;
	case EX_PROTOCOL:
		return ST_PROTO;
	case EX_CANTCREAT:
		return ST_CANTCREAT;
	case EX_OSERR:
		return ST_SYS;
	default:
		/*
		 * A crash, a kill or an exit code we do not know: nothing
		 * says the message is at fault or that trying again is
		 * useless, so keep it (queue) and try later.
		 */
		return ST_TEMPFAIL;
	}
}

void
cred_free(char *secret)
{
	if (secret == NULL)
		return;
	st_wipe(secret, strlen(secret));
	free(secret);
}

/* Read what fd has into b; false at EOF or error.  Past b's max: drop. */
static bool
cred_drain(int fd, struct buf *b, bool *over)
{
	char chunk[4096];
	ssize_t n;

	n = read(fd, chunk, sizeof(chunk));
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	if (buf_add(b, chunk, (size_t)n, NULL) != ST_OK)
		*over = true;
	st_wipe(chunk, sizeof(chunk));
	return true;
}

/*
 * Run argv (a path, no PATH search) with standard input from /dev/null,
 * standard output into out and, when err is not NULL, standard error
 * into err (else inherited).  *wstatus is the child's wait status.
 * ST_TIMEOUT past timeout seconds, the child's process group killed.
 * ST_PROTO when the child printed more than out's maximum: the child
 * broke its side of the bargain, the message is not at fault.
 */
static enum status
cred_run(char *const argv[], int timeout, struct buf *out, struct buf *err,
    int *wstatus, struct errinfo *ei)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	struct pollfd pfd[2];
	struct timespec end;
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
	bool over = false, fa_init = false, attr_init = false;
	enum status st = ST_OK;
	pid_t pid = -1;
	int rc, nfd, i, left;

	if (pipe2(outp, O_CLOEXEC) == -1 ||
	    (err != NULL && pipe2(errp, O_CLOEXEC) == -1)) {
		st = st_errno(ei, ST_SYS, "pipe");
		goto done;
	}
	if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
		errno = rc;
		st = st_errno(ei, ST_SYS, "spawn");
		goto done;
	}
	fa_init = true;
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
	if (err != NULL)
		posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	/* A group of its own: one kill(-pid) reaches all it started. */
	if ((rc = posix_spawnattr_init(&attr)) != 0) {
		errno = rc;
		st = st_errno(ei, ST_SYS, "spawn");
		goto done;
	}
	attr_init = true;
	if ((rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP)) != 0 ||
	    (rc = posix_spawnattr_setpgroup(&attr, 0)) != 0) {
		errno = rc;
		st = st_errno(ei, ST_SYS, "spawn");
		goto done;
	}
	if ((rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ)) != 0) {
		pid = -1;
		errno = rc;
		st = st_errno(ei, ST_SYS, "cannot run %s", argv[0]);
		goto done;
	}
	close(outp[1]);
	outp[1] = -1;
	if (errp[1] != -1) {
		close(errp[1]);
		errp[1] = -1;
	}
	end = xio_deadline_ms((long)timeout * 1000);
	pfd[0].fd = outp[0];
	pfd[1].fd = errp[0];
	pfd[0].events = pfd[1].events = POLLIN;
	for (;;) {
		nfd = 0;
		for (i = 0; i < 2; i++)
			if (pfd[i].fd != -1)
				nfd++;
		if (nfd == 0)
			break;
		if ((left = xio_ms_left(&end)) == 0) {
			st = st_error(ei, ST_TIMEOUT, "%s gave no answer within "
			    "%d seconds", argv[0], timeout);
			goto done;
		}
		/* poll() skips negative descriptors. */
		if (poll(pfd, 2, left) == -1 && errno != EINTR) {
			st = st_errno(ei, ST_SYS, "poll");
			goto done;
		}
		for (i = 0; i < 2; i++) {
			if (pfd[i].fd == -1 || pfd[i].revents == 0)
				continue;
			if (!cred_drain(pfd[i].fd, i == 0 ? out : err, &over)) {
				close(pfd[i].fd);
				if (i == 0)
					outp[0] = -1;
				else
					errp[0] = -1;
				pfd[i].fd = -1;
			}
		}
	}
	/* Output is closed; the child should be gone or going. */
	while ((rc = waitpid(pid, wstatus, WNOHANG)) == 0) {
		if (xio_expired(&end)) {
			st = st_error(ei, ST_TIMEOUT, "%s did not exit within "
			    "%d seconds", argv[0], timeout);
			goto done;
		}
		poll(NULL, 0, 5);
	}
	if (rc == -1) {
		st = st_errno(ei, ST_SYS, "waitpid");
		pid = -1;
		goto done;
	}
	pid = -1;
	if (over)
		st = st_error(ei, ST_PROTO, "%s printed more than %zu bytes",
		    argv[0], out->max);
done:
	if (pid != -1) {
		/* The child may be gone while its children hold the pipe. */
		kill(-pid, SIGKILL);
		while (waitpid(pid, wstatus, 0) == -1 && errno == EINTR)
			;
	}
	if (attr_init)
		posix_spawnattr_destroy(&attr);
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	for (i = 0; i < 2; i++) {
		if (outp[i] != -1)
			close(outp[i]);
		if (errp[i] != -1)
			close(errp[i]);
	}
	return st;
}

/* The first line of b as a new string (CR LF stripped); NULL if empty. */
static char *
cred_first_line(const struct buf *b)
{
	size_t n;
	char *s;

	if (b->data == NULL)
		return NULL;
	n = strcspn(b->data, "\r\n");
	if (n == 0 || (s = malloc(n + 1)) == NULL)
		return NULL;
	memcpy(s, b->data, n);
	s[n] = '\0';
	return s;
}

static enum status
cred_password(const struct account *acct, char **secret,
    struct errinfo *ei)
{
	char *argv[] = { "/bin/sh", "-c", NULL, NULL };
	struct buf out;
	enum status st;
	int ws = 0;

	if (acct->password_command == NULL || *acct->password_command == '\0')
		return st_error(ei, ST_CONFIG, "account %s: provider password "
		    "needs password_command", acct->name);
	argv[2] = acct->password_command;
	buf_init_secret(&out, CRED_SECRET_MAX);
	st = cred_run(argv, acct->timeout > 0 ? acct->timeout : 60, &out, NULL,
	    &ws, ei);
	if (st == ST_OK && (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0))
		st = st_error(ei, ST_AUTH, "account %s: password_command "
		    "failed (%s %d)", acct->name, WIFEXITED(ws) ? "exit" :
		    "signal", WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
	if (st == ST_OK && (*secret = cred_first_line(&out)) == NULL)
		st = st_error(ei, ST_AUTH, "account %s: password_command "
		    "printed no password", acct->name);
	if (st != ST_OK)
		st_context(ei, "account %s", acct->name);
	buf_wipe(&out);
	return st;
}

/* The fast path: a fresh token for this user straight from the store. */
static enum status
cred_from_store(const struct conf *conf, const struct account *acct,
    char **secret, struct errinfo *ei)
{
	struct token_store ts;
	struct token tok;
	enum status st;
	bool found = false;

	*secret = NULL;
	memset(&tok, 0, sizeof(tok));
	if ((st = token_store_open(&ts, conf->state_dir, acct->name, false,
	    ei)) != ST_OK)
		return st;
	if ((st = token_load(&ts, &tok, &found, ei)) == ST_OK && found &&
	    !token_stale(&tok, time(NULL), TOKEN_MARGIN) &&
	    (tok.user == NULL || acct->user == NULL ||
	    strcmp(tok.user, acct->user) == 0)) {
		*secret = tok.access_token;
		tok.access_token = NULL;
	}
	token_free(&tok);
	token_store_close(&ts);
	return st;
}

static const char *
cred_auth_path(void)
{
	const char *p;

	/* A set-ID caller must not let its invoker pick the program. */
	if (getauxval(AT_SECURE) == 0 && (p = getenv(CRED_AUTH_ENV)) != NULL &&
	    *p == '/')
		return p;
	return BINDIR "/bearmail-auth";
}

static enum status
cred_oauth(const struct conf *conf, const struct account *acct,
    bool rejected, char **secret, struct errinfo *ei)
{
	char *argv[9];
	struct buf out, err;
	enum status st;
	const char *msg;
	char *line;
	int ws = 0, n = 0, timeout;

	if (!rejected) {
		if ((st = cred_from_store(conf, acct, secret, ei)) != ST_OK ||
		    *secret != NULL)
			return st;
	}
	argv[n++] = (char *)cred_auth_path();
	if (conf->explicit_path != NULL) {
		argv[n++] = "-C";
		argv[n++] = conf->explicit_path;
	}
	argv[n++] = "token";
	argv[n++] = rejected ? "--force" : "--refresh";
	argv[n++] = "--";
	argv[n++] = acct->name;
	argv[n] = NULL;
	/* bearmail-auth may wait for the lock, then make one request. */
	timeout = (acct->timeout > 0 ? acct->timeout : 60) * 2 + 10;
	buf_init_secret(&out, CRED_SECRET_MAX);
	buf_init(&err, CRED_ERR_MAX);
	if ((st = cred_run(argv, timeout, &out, &err, &ws, ei)) != ST_OK) {
		st_context(ei, "account %s", acct->name);
		goto done;
	}
	if ((st = cred_exit_status(ws)) != ST_OK) {
		/* Its message already names the account and what to do. */
		line = cred_first_line(&err);
		msg = line != NULL ? line : "";
		if (strncmp(msg, "bearmail-auth: ", 15) == 0)
			msg += 15;
		if (*msg != '\0')
			st_error(ei, st, "%s", msg);
		else
			st_error(ei, st, "account %s: bearmail-auth failed "
			    "without a message", acct->name);
		free(line);
		goto done;
	}
	if ((*secret = cred_first_line(&out)) == NULL ||
	    !token_valid_value(*secret)) {
		cred_free(*secret);
		*secret = NULL;
		st = st_error(ei, ST_PROTO, "account %s: bearmail-auth printed "
		    "no usable token", acct->name);
	}
done:
	buf_wipe(&out);
	buf_free(&err);
	return st;
}

enum status
cred_get(const struct conf *conf, const struct account *acct, bool rejected,
    char **secret, struct errinfo *ei)
{
	*secret = NULL;
	if (acct->provider == PROV_PASSWORD)
		return cred_password(acct, secret, ei);
	return cred_oauth(conf, acct, rejected, secret, ei);
}
