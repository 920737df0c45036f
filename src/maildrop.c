/*
 * maildrop.c: the maildrop, the way into the queue for local users who
 * cannot write q/ (Postfix's postdrop and pickup, in miniature):
 * maildrop_submit() on the submitting side, maildrop_write() in the
 * setgid bearmail-drop, maildrop_import() in the runner.  Part of the
 * spool module; the queue internals it uses are in spool_int.h.
 *
 * MAILDROP.  bearmail, run by a user who cannot write q/, pipes the
 * envelope and message to bearmail-drop (maildrop_submit(): an empty
 * environment, a socket for its stdin so an early exit is no SIGPIPE).
 * bearmail-drop (setgid bearmail-drop, the only privileged program)
 * runs maildrop_write(): it parses the submission before anything
 * is visible, writes maildrop/.ID (mode 0644: the runner reads it through
 * "other" because the file belongs to the submitter; nobody else can
 * reach it through the 1730 directory), fsyncs and renames it to
 * maildrop/ID without replacing.  The runner's maildrop_import()
 * parses it again as untrusted input (bounded, DROP format only), takes
 * the submitting uid from the file's owner and the arrival time from its
 * mtime, writes q/ID with the same ID (a queue file owned by the queue
 * owner; the dropped file itself is never moved into q/) and then
 * unlinks maildrop/ID.  A crash between the two finds q/ID already there
 * with the same uid, arrival time, size and sender, and only removes the
 * drop file.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "maildrop.h"
#include "spool_int.h"
#include "xio.h"

#define EX_OSERR_CHILD	127		/* the child could not exec */

/* One read of at most n octets, waiting at most timeout seconds. */
static enum status
read_some(int fd, void *p, size_t n, int timeout, size_t *got,
    struct errinfo *ei)
{
	struct pollfd pfd;
	ssize_t r;
	int pr;

	for (;;) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if ((pr = poll(&pfd, 1, timeout > 0 ? timeout * 1000 : -1)) < 0) {
			if (errno == EINTR)
				continue;
			return st_errno(ei, ST_SYS, "poll");
		}
		if (pr == 0)
			return st_error(ei, ST_TIMEOUT, "no input for %d "
			    "seconds", timeout);
		if ((r = read(fd, p, n)) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return st_errno(ei, ST_SYS, "read");
		}
		*got = (size_t)r;
		return ST_OK;
	}
}

enum status
maildrop_write(int dropfd, int in, int timeout, char id[ENVELOPE_ID_SIZE],
    struct errinfo *ei)
{
	struct envelope env;
	struct buf b, hdr;
	char tmp[ENVELOPE_ID_SIZE + 1], *chunk = NULL;
	enum status st;
	size_t hdrlen, got, want;
	off_t have;
	time_t now;
	long usec;
	int fd = -1, tries;

	id[0] = '\0';
	tmp[0] = '\0';
	envelope_init(&env);
	buf_init(&b, ENVELOPE_HDR_MAX);
	buf_init(&hdr, ENVELOPE_HDR_MAX);
	if ((chunk = malloc(SPOOL_COPY_CHUNK)) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto done;
	}

	/* The envelope, whole and valid, before anything is written. */
	while (b.len < 2 || memmem(b.data, b.len, "\n\n", 2) == NULL) {
		if (b.len >= ENVELOPE_HDR_MAX) {
			st = st_error(ei, ST_LIMIT, "envelope larger than %d "
			    "octets", ENVELOPE_HDR_MAX);
			goto done;
		}
		want = ENVELOPE_HDR_MAX - b.len;
		if (want > 16384)
			want = 16384;
		if ((st = read_some(in, chunk, want, timeout, &got, ei)))
			goto done;
		if (got == 0)
			break;
		if ((st = buf_add(&b, chunk, got, ei)) != ST_OK)
			goto done;
	}
	if ((st = envelope_parse(b.data != NULL ? b.data : "", b.len,
	    ENVELOPE_FMT_DROP, &env, &hdrlen, ei)) != ST_OK)
		goto done;
	have = (off_t)(b.len - hdrlen);
	if (have > env.size) {
		st = st_error(ei, ST_DATAERR, "more message than its size");
		goto done;
	}
	if ((st = envelope_format(&env, ENVELOPE_FMT_DROP, &hdr, ei)) != ST_OK)
		goto done;

	for (tries = 0; fd < 0; tries++) {
		if (tries == 64) {
			st = st_error(ei, ST_CANTCREAT, "no free maildrop name");
			goto done;
		}
		spool_now_us(&now, &usec);
		envelope_id_make(id, now, usec);
		tmp[0] = '.';
		memcpy(tmp + 1, id, ENVELOPE_ID_SIZE);
		if ((fd = openat(dropfd, tmp, O_WRONLY | O_CREAT | O_EXCL |
		    O_NOFOLLOW | O_CLOEXEC, 0644)) < 0 && errno != EEXIST) {
			tmp[0] = '\0';
			st = st_errno(ei, ST_CANTCREAT, "create in the maildrop");
			goto done;
		}
	}
	if ((st = xio_write_all(fd, hdr.data, hdr.len, ST_CANTCREAT,
	    "maildrop file", ei)) ||
	    (st = xio_write_all(fd, b.data + hdrlen, (size_t)have,
	    ST_CANTCREAT, "maildrop file", ei)))
		goto done;
	while (have < env.size) {
		want = SPOOL_COPY_CHUNK;
		if ((off_t)want > env.size - have)
			want = (size_t)(env.size - have);
		if ((st = read_some(in, chunk, want, timeout, &got, ei)))
			goto done;
		if (got == 0) {
			st = st_error(ei, ST_DATAERR, "message ends after %lld "
			    "of its %lld octets", (long long)have,
			    (long long)env.size);
			goto done;
		}
		if ((st = xio_write_all(fd, chunk, got, ST_CANTCREAT,
		    "maildrop file", ei)) != ST_OK)
			goto done;
		have += (off_t)got;
	}
	if ((st = read_some(in, chunk, 1, timeout, &got, ei)))
		goto done;
	if (got != 0) {
		st = st_error(ei, ST_DATAERR, "more message than its size");
		goto done;
	}
	if (fsync(fd) != 0) {
		st = st_errno(ei, ST_CANTCREAT, "write the maildrop");
		goto done;
	}
	for (tries = 0;; tries++) {
		if (spool_rename_noreplace(dropfd, tmp, dropfd, id) == 0)
			break;
		if (errno != EEXIST || tries == 64) {
			st = st_errno(ei, ST_CANTCREAT, "rename in the maildrop");
			goto done;
		}
		spool_now_us(&now, &usec);
		envelope_id_make(id, now, usec);
	}
	tmp[0] = '\0';
	/*
	 * The new name must be durable too.  bearmail-drop holds the
	 * 1730 directory as O_PATH (it may not read it), which fsync()
	 * refuses: then flush the file system the file is on.
	 */
	if (fsync(dropfd) != 0 && (errno != EBADF || syncfs(fd) != 0))
		st = st_errno(ei, ST_CANTCREAT, "fsync the maildrop");
done:
	if (fd >= 0)
		close(fd);
	if (tmp[0] != '\0')
		unlinkat(dropfd, tmp, 0);
	if (st != ST_OK)
		id[0] = '\0';
	free(chunk);
	buf_free(&b);
	buf_free(&hdr);
	envelope_free(&env);
	return st;
}

/* Move a refused maildrop entry out of the way, without following it. */
static void
drop_reject(struct spool *sp, const char *name, const char *why)
{
	char dst[NAME_MAX + 1];

	snprintf(dst, sizeof(dst), "%s.drop", name);
	if (renameat(sp->dropfd, name, sp->failedfd, dst) == 0)
		log_warn("queue %s: refusing maildrop/%s (%s): moved to "
		    "failed/%s", sp->path, name, why, dst);
	else
		log_warn("queue %s: refusing maildrop/%s (%s), and cannot "
		    "move it: %s", sp->path, name, why, strerror(errno));
}

/* Does q/id hold what importing this drop file would have written? */
static bool
already_imported(struct spool *sp, const struct envelope *env)
{
	struct envelope q;
	struct stat st;
	const char *why;
	size_t hdrlen;
	bool same = false;
	int fd;

	if (spool_open_checked(sp->qfd, env->id, sp->owner, &fd, &st, &why,
	    NULL) != ST_OK || fd < 0)
		return false;
	envelope_init(&q);
	if (spool_read_env(fd, st.st_size, ENVELOPE_FMT_QUEUE, &q, &hdrlen,
	    NULL) == ST_OK)
		same = q.uid == env->uid && q.created == env->created &&
		    q.size == env->size && q.nrcpts == env->nrcpts &&
		    strcmp(q.sender, env->sender) == 0 &&
		    strcmp(q.account, env->account) == 0;
	envelope_free(&q);
	close(fd);
	return same;
}

static enum status
import_one(struct spool *sp, const char *name, time_t now, bool *done,
    struct errinfo *ei)
{
	char tmp[ENVELOPE_ID_SIZE + 8];
	struct envelope env;
	struct errinfo sub;
	struct stat st;
	const char *why;
	enum status rc;
	size_t hdrlen;
	time_t t;
	long usec;
	bool exists, again = false;
	int fd = -1, tries;

	*done = false;
	envelope_init(&env);
	st_clear(&sub);
	rc = spool_open_checked(sp->dropfd, name, (uid_t)-1, &fd, &st, &why,
	    &sub);
	if (rc == ST_DATAERR) {
		drop_reject(sp, name, why);
		return ST_OK;
	}
	if (rc != ST_OK)
		return st_error(ei, rc, "%s", sub.msg);
	if (fd < 0)
		return ST_OK;
	if (st.st_size > (off_t)ENVELOPE_HDR_MAX + ENVELOPE_MSG_MAX) {
		drop_reject(sp, name, "too large");
		goto out;
	}
	rc = spool_read_env(fd, st.st_size, ENVELOPE_FMT_DROP, &env, &hdrlen,
	    &sub);
	if (rc == ST_SYS) {
		rc = st_error(ei, rc, "maildrop/%s: %s", name, sub.msg);
		goto out;
	}
	if (rc != ST_OK) {
		drop_reject(sp, name, sub.msg);
		rc = ST_OK;
		goto out;
	}
	memcpy(env.id, name, ENVELOPE_ID_SIZE);
	env.uid = st.st_uid;
	env.created = st.st_mtime < now ? st.st_mtime : now;
	env.attempts = 0;
	env.next_try = env.created;

	for (tries = 0;; tries++) {
		snprintf(tmp, sizeof(tmp), "%s.imp", env.id);
		rc = spool_write_file(sp, tmp, &env, fd, (off_t)hdrlen, NULL,
		    false, NULL, NULL, &exists, ei);
		if (rc != ST_OK) {
			if (!exists || tries > 64)
				goto out;
			/* A killed import left it: ours to replace. */
			unlinkat(sp->tmpfd, tmp, 0);
			continue;
		}
		if (spool_rename_noreplace(sp->tmpfd, tmp, sp->qfd, env.id) ==
		    0)
			break;
		if (errno != EEXIST) {
			rc = st_errno(ei, ST_CANTCREAT, "rename into %s/q",
			    sp->path);
			unlinkat(sp->tmpfd, tmp, 0);
			goto out;
		}
		unlinkat(sp->tmpfd, tmp, 0);
		if (tries == 0 && already_imported(sp, &env)) {
			again = true;	/* a runner died before the unlink */
			break;
		}
		if (tries > 64) {
			rc = st_error(ei, ST_CANTCREAT, "no free queue ID");
			goto out;
		}
		/* Another message has that ID: take a new one. */
		spool_now_us(&t, &usec);
		envelope_id_make(env.id, t, usec);
	}
	if (!again) {
		if ((rc = xio_fsync_dirfd(sp->qfd, "q/", ei)) != ST_OK)
			goto out;
		log_info("%s: uid=%lu from=<%s> nrcpt=%zu size=%lld (queued "
		    "from the maildrop)", env.id, (unsigned long)env.uid,
		    env.sender, env.nrcpts, (long long)env.size);
	}
	if (unlinkat(sp->dropfd, name, 0) != 0) {
		rc = st_errno(ei, ST_CANTCREAT, "remove maildrop/%s", name);
		goto out;
	}
	rc = xio_fsync_dirfd(sp->dropfd, "maildrop/", ei);
	*done = rc == ST_OK && !again;
out:
	if (fd >= 0)
		close(fd);
	envelope_free(&env);
	return rc;
}

enum status
maildrop_import(struct spool *sp, time_t now, size_t *imported,
    struct errinfo *ei)
{
	enum status rc;
	char **v;
	size_t n, i, count = 0;
	bool done;

	if (imported != NULL)
		*imported = 0;
	if (sp->rdonly || sp->dropfd < 0)
		return st_error(ei, ST_CANTCREAT, "queue opened read-only");
	if ((rc = spool_dir_names(sp->dropfd, &v, &n, ei)) != ST_OK)
		return rc;
	spool_remove_stale(sp->dropfd, v, n, now, true);
	for (i = 0; i < n; i++) {
		if (v[i][0] == '.')
			continue;
		if (!envelope_id_valid(v[i])) {
			log_warn("queue %s: ignoring maildrop/%s: not a queue "
			    "ID", sp->path, v[i]);
			continue;
		}
		if ((rc = import_one(sp, v[i], now, &done, ei)) != ST_OK)
			break;
		if (done)
			count++;
	}
	spool_names_free(v, n);
	if (imported != NULL)
		*imported = count;
	return rc;
}

/* Write all of p to the socket s, never raising SIGPIPE. */
static enum status
send_all(int s, const char *p, size_t n, int timeout, struct errinfo *ei)
{
	struct timespec dl;
	struct pollfd pfd;
	ssize_t w;
	int pr;

	while (n > 0) {
		dl = xio_deadline_ms(timeout * 1000L);
		pfd.fd = s;
		pfd.events = POLLOUT;
		if ((pr = poll(&pfd, 1, xio_ms_left(&dl))) < 0) {
			if (errno == EINTR)
				continue;
			return st_errno(ei, ST_SYS, "poll");
		}
		if (pr == 0)
			return st_error(ei, ST_TIMEOUT, "bearmail-drop stopped "
			    "reading for %d seconds", timeout);
		if ((w = send(s, p, n, MSG_NOSIGNAL | MSG_DONTWAIT)) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			/* It quit early: its exit status says why. */
			return ST_NET;
		}
		p += w;
		n -= (size_t)w;
	}
	return ST_OK;
}

enum status
maildrop_submit(const char *prog, struct envelope *env, int fd,
    int timeout, char id[ENVELOPE_ID_SIZE], struct errinfo *ei)
{
	static const char prefix[] = "bearmail-drop: ";
	char *chunk = NULL, out[512], envvar[PATH_MAX + 32], *envp[2];
	const char *dirvar, *msg;
	struct timespec dl;
	struct pollfd pfd;
	struct stat st;
	struct buf hdr;
	enum status rc, wr = ST_OK;
	size_t outlen = 0, nl;
	off_t off, end;
	ssize_t r;
	pid_t pid = -1;
	int sv[2] = { -1, -1 }, po[2] = { -1, -1 }, wst, pr;

	id[0] = '\0';
	buf_init(&hdr, ENVELOPE_HDR_MAX);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (off = lseek(fd, 0, SEEK_CUR)) < 0) {
		rc = st_error(ei, ST_SYS, "message to queue is not a regular "
		    "file");
		goto done;
	}
	end = st.st_size;
	env->size = end - off;
	if ((rc = envelope_format(env, ENVELOPE_FMT_DROP, &hdr, ei)) != ST_OK)
		goto done;
	if ((chunk = malloc(SPOOL_COPY_CHUNK)) == NULL) {
		rc = st_errno(ei, ST_SYS, "out of memory");
		goto done;
	}
	envp[0] = envp[1] = NULL;
	if ((dirvar = getenv(MAILDROP_DIR_ENV)) != NULL &&
	    (size_t)snprintf(envvar, sizeof(envvar), "%s=%s",
	    MAILDROP_DIR_ENV, dirvar) < sizeof(envvar))
		envp[0] = envvar;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
	    pipe2(po, O_CLOEXEC) != 0) {
		rc = st_errno(ei, ST_SYS, "pipe");
		goto done;
	}
	if ((pid = fork()) < 0) {
		rc = st_errno(ei, ST_SYS, "fork");
		goto done;
	}
	if (pid == 0) {
		char *argv[] = { (char *)"bearmail-drop", NULL };

		if (dup2(sv[1], 0) < 0 || dup2(po[1], 1) < 0 ||
		    dup2(po[1], 2) < 0)
			_exit(EX_OSERR_CHILD);
		execve(prog, argv, envp);
		_exit(EX_OSERR_CHILD);
	}
	close(sv[1]);
	close(po[1]);
	sv[1] = po[1] = -1;

	/* The envelope, then the message straight from the file. */
	wr = send_all(sv[0], hdr.data, hdr.len, timeout, ei);
	while (wr == ST_OK && off < end) {
		if ((r = pread(fd, chunk, SPOOL_COPY_CHUNK, off)) < 0) {
			if (errno == EINTR)
				continue;
			wr = st_errno(ei, ST_SYS, "read the message");
			break;
		}
		if (r == 0)
			break;		/* it shrank: the drop refuses it */
		if (r > end - off)
			r = (ssize_t)(end - off);
		wr = send_all(sv[0], chunk, (size_t)r, timeout, ei);
		off += r;
	}
	shutdown(sv[0], SHUT_WR);

	/* Its one line of output, then its exit status. */
	dl = xio_deadline_ms(timeout * 1000L);
	for (;;) {
		pfd.fd = po[0];
		pfd.events = POLLIN;
		if ((pr = poll(&pfd, 1, xio_ms_left(&dl))) < 0 &&
		    errno == EINTR)
			continue;
		if (pr <= 0)
			break;
		r = read(po[0], out + outlen, sizeof(out) - 1 - outlen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		outlen += (size_t)r;
		if (outlen == sizeof(out) - 1)
			break;
	}
	out[outlen] = '\0';
	if (pr == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		pid = -1;
		rc = st_error(ei, ST_TIMEOUT, "bearmail-drop did not finish "
		    "within %d seconds", timeout);
		goto done;
	}
	/* Output closed or full: it is exiting, or kill it. */
	if (pr > 0 && outlen == sizeof(out) - 1)
		kill(pid, SIGKILL);
	while (waitpid(pid, &wst, 0) < 0 && errno == EINTR)
		;
	pid = -1;
	nl = strcspn(out, "\n");
	out[nl] = '\0';
	if (WIFEXITED(wst) && WEXITSTATUS(wst) == 0 && wr == ST_OK &&
	    envelope_id_valid(out)) {
		memcpy(id, out, ENVELOPE_ID_SIZE);
		rc = ST_OK;
		goto done;
	}
	if (wr != ST_OK && wr != ST_NET) {
		rc = wr;
		goto done;
	}
	msg = strncmp(out, prefix, sizeof(prefix) - 1) == 0 ?
	    out + sizeof(prefix) - 1 : out;
	if (WIFEXITED(wst) && WEXITSTATUS(wst) == EX_OSERR_CHILD)
		rc = st_error(ei, ST_CANTCREAT, "cannot run %s", prog);
	else if (!WIFEXITED(wst))
		rc = st_error(ei, ST_CANTCREAT, "bearmail-drop died");
	else
		rc = st_error(ei, WEXITSTATUS(wst) == 65 ? ST_DATAERR :
		    WEXITSTATUS(wst) == 75 ? ST_TEMPFAIL : ST_CANTCREAT,
		    "maildrop: %s", *msg != '\0' ? msg : "refused");
done:
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (po[0] >= 0)
		close(po[0]);
	if (po[1] >= 0)
		close(po[1]);
	free(chunk);
	buf_free(&hdr);
	return rc;
}
