/*
 * mda.c: delivery through a command run with /bin/sh -c (see mda.h).
 *
 * The pipe to the command is non-blocking and every wait goes through
 * poll() against the message's deadline, so a command that stops
 * reading cannot hang us; waiting for its exit polls with WNOHANG
 * until the same deadline, then kills it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "mda.h"
#include "xio.h"

struct mda {
	char *command;
	int timeout;
	pid_t pid;		/* running command, or -1 */
	int fd;			/* its standard input, or -1 */
	bool broken;		/* it stopped reading (EPIPE) */
	struct timespec deadline;
};

enum status
mda_open(void **ctx, const char *command, int timeout, struct errinfo *ei)
{
	struct mda *m;

	*ctx = NULL;
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->command = strdup(command)) == NULL) {
		free(m);
		return st_errno(ei, ST_SYS, "out of memory");
	}
	m->timeout = timeout > 0 ? timeout : 300;
	m->pid = -1;
	m->fd = -1;
	*ctx = m;
	return ST_OK;
}

static enum status
mda_begin(void *ctx, struct errinfo *ei)
{
	struct mda *m = ctx;
	int p[2];

	if (pipe2(p, O_CLOEXEC) != 0)
		return st_errno(ei, ST_SYS, "mda: pipe");
	fflush(NULL);
	if ((m->pid = fork()) < 0) {
		close(p[0]);
		close(p[1]);
		return st_errno(ei, ST_SYS, "mda: fork");
	}
	if (m->pid == 0) {
		/* The child: the message on standard input, nothing else. */
		signal(SIGPIPE, SIG_DFL);
		if (dup2(p[0], STDIN_FILENO) < 0)
			_exit(EX_OSERR);
		execl("/bin/sh", "sh", "-c", m->command, (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	m->fd = p[1];
	m->broken = false;
	(void)fcntl(m->fd, F_SETFL, fcntl(m->fd, F_GETFL) | O_NONBLOCK);
	m->deadline = xio_deadline_ms((long)m->timeout * 1000);
	return ST_OK;
}

static enum status
mda_write(void *ctx, const void *p, size_t n, struct errinfo *ei)
{
	struct mda *m = ctx;
	const char *s = p;
	struct pollfd pfd;
	int ms;
	ssize_t w;

	while (n > 0 && !m->broken) {
		w = write(m->fd, s, n);
		if (w > 0) {
			s += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EPIPE) {
			/* Its exit status will say whether that was fine. */
			m->broken = true;
			break;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return st_errno(ei, ST_CANTCREAT, "mda: write");
		if ((ms = xio_ms_left(&m->deadline)) == 0)
			return st_error(ei, ST_TIMEOUT, "mda: the command did "
			    "not read its input within %d s", m->timeout);
		pfd.fd = m->fd;
		pfd.events = POLLOUT;
		(void)poll(&pfd, 1, ms > 1000 ? 1000 : ms);
	}
	return ST_OK;
}

static void
mda_kill(struct mda *m)
{
	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	if (m->pid > 0) {
		kill(m->pid, SIGKILL);
		(void)waitpid(m->pid, NULL, 0);
		m->pid = -1;
	}
}

static void
mda_abort(void *ctx)
{
	mda_kill(ctx);
}

static enum status
mda_commit(void *ctx, struct errinfo *ei)
{
	struct mda *m = ctx;
	struct timespec ts = { 0, 10 * 1000000L };
	int ws, code;
	pid_t r;

	close(m->fd);
	m->fd = -1;
	for (;;) {
		r = waitpid(m->pid, &ws, WNOHANG);
		if (r == m->pid)
			break;
		if (r < 0 && errno != EINTR) {
			m->pid = -1;
			return st_errno(ei, ST_SYS, "mda: waitpid");
		}
		if (xio_expired(&m->deadline)) {
			mda_kill(m);
			return st_error(ei, ST_TIMEOUT, "mda: the command ran "
			    "longer than %d s and was killed", m->timeout);
		}
		nanosleep(&ts, NULL);
		if (ts.tv_nsec < 200 * 1000000L)
			ts.tv_nsec *= 2;
	}
	m->pid = -1;
	if (WIFSIGNALED(ws))
		return st_error(ei, ST_CANTCREAT, "mda: the command was "
		    "killed by signal %d", WTERMSIG(ws));
	code = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
	if (code == 0)
		return ST_OK;
	if (code == EX_TEMPFAIL)
		return st_error(ei, ST_TEMPFAIL, "mda: the command exited 75 "
		    "(temporary failure): try again later");
	return st_error(ei, ST_CANTCREAT, "mda: the command exited %d", code);
}

static void
mda_free(void *ctx)
{
	struct mda *m = ctx;

	if (m == NULL)
		return;
	mda_kill(m);
	free(m->command);
	free(m);
}

const struct deliver_ops mda_ops = {
	.name = "mda",
	.begin = mda_begin,
	.write = mda_write,
	.commit = mda_commit,
	.abort = mda_abort,
	.free = mda_free,
};
