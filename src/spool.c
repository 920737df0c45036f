/*
 * spool.c: the durable queue directory: opening it, enqueueing,
 * claiming, updating and retiring messages, removing leftovers.  The
 * listing is spool_list.c, the envelope format and queue IDs are
 * envelope.c, the maildrop (bearmail-drop and its import) is
 * maildrop.c; they share the internals in spool_int.h.
 *
 * LAYOUT of queue_dir (all on one file system, so rename(2) moves):
 *
 *   tmp/       files being written; never read by anyone.  Leftovers of a
 *              killed writer are removed after a day (spool_cleanup()).
 *   q/ID       complete messages waiting for delivery.
 *   failed/ID  messages given up on (a recipient refused, or the message
 *              expired): the envelope says why, per recipient.
 *   failed/ID.drop
 *              a maildrop file the runner refused (the log says why).
 *   maildrop/  submissions of local users who cannot write q/, written by
 *              bearmail-drop.  Mode 1730 owner bearmail group
 *              bearmail-drop on a system install (Postfix's maildrop and
 *              postdrop): the group may create files but not list, read
 *              or (sticky) remove other users' files.
 *
 * Every directory belongs to the owner of queue_dir and is not writable
 * by group or others (maildrop/ excepted, as above).  Every file is
 * opened with O_NOFOLLOW after an lstat-like check, then fstat()ed
 * again: a symbolic link, a hard link (st_nlink != 1), anything but a
 * regular file, or a file of another owner planted in tmp/, q/ or
 * failed/ is refused and logged, never followed, read or removed.
 *
 * ONE MESSAGE = ONE FILE: a text envelope, an empty line, then exactly
 * `size` octets of message as src/msg.c wrote it (CRLF line ends, NOT
 * dot-stuffed: the SMTP client stuffs).  One file means one rename puts
 * a whole message in place and one rename or unlink takes it out; there
 * is no pair to keep consistent.  The price is that an envelope update
 * copies the message into the new file; that happens only after a
 * failed attempt, at most once per backoff step (some 35 times over five
 * days), never on the success path.
 *
 * CRASH SAFETY.  Enqueue: write tmp/ID, fsync, rename (no replace) to
 * q/ID, fsync q/; only then success.  kill -9 at any instant leaves no
 * q/ID or a whole one.  Update: write tmp/ID.new (message copied),
 * fsync, lock it, rename over q/ID, fsync q/.  Retire: unlink q/ID, or
 * rename it to failed/ID; fsync.  A crash between a delivery (the
 * server's reply to the final dot) and the next durable envelope update
 * can send a recipient twice: that window is as short as one fsync.
 *
 * LOCKING.  A runner owns a message while it holds flock(LOCK_EX) on its
 * file (non-blocking: a busy message is skipped).  Because updates
 * replace the file, a claim locks first and then checks that q/ID still
 * names the locked inode; a loser that opened the old inode, or one that
 * was unlinked, finds out and skips.  (A link count of 0 seen through a
 * name means a rename or unlink in flight: looked at again, then skipped,
 * never reported as planted.)  An update locks the new file before
 * renaming it into place, so the claim never lapses.  No lock files, so
 * a killed runner leaves nothing stale: the kernel drops its locks.
 *
 * See maildrop.c for the maildrop and notice.c for failure notices.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>

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
#include "log.h"
#include "spool.h"
#include "spool_int.h"
#include "xio.h"

struct spool_msg {
	struct spool *sp;
	int fd;				/* locked */
	dev_t dev;
	ino_t ino;
	size_t hdrlen;
	struct envelope env;
	bool dirty;			/* env differs from the file */
	bool gone;			/* retired: no more updates */
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

/* rename without replacing; EEXIST if the target exists. */
int
spool_rename_noreplace(int olddir, const char *oldname, int newdir,
    const char *newname)
{
	struct stat st;

#ifdef RENAME_NOREPLACE
	if (renameat2(olddir, oldname, newdir, newname, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
#endif
	/* A file system without it: IDs are unique enough for the gap. */
	if (fstatat(newdir, newname, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		errno = EEXIST;
		return -1;
	}
	return renameat(olddir, oldname, newdir, newname);
}

/* A copy of text with control characters replaced and length capped. */
static char *
text_dup(const char *s, struct errinfo *ei)
{
	size_t n = strlen(s), i;
	char *d;

	if (n > ENVELOPE_TEXT_MAX)
		n = ENVELOPE_TEXT_MAX;
	if ((d = malloc(n + 1)) == NULL) {
		st_errno(ei, ST_SYS, "out of memory");
		return NULL;
	}
	for (i = 0; i < n; i++)
		d[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ?
		    '?' : s[i];
	d[n] = '\0';
	return d;
}

void
spool_now_us(time_t *sec, long *usec)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	*sec = ts.tv_sec;
	*usec = ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------ */
/* Backoff                                                              */

time_t
spool_backoff(unsigned attempts)
{
	time_t d = SPOOL_BACKOFF_MIN;

	while (attempts-- > 1 && d < SPOOL_BACKOFF_MAX)
		d *= 2;
	return d > SPOOL_BACKOFF_MAX ? SPOOL_BACKOFF_MAX : d;
}

bool
spool_expired(const struct envelope *env, time_t now, time_t max_age)
{
	return max_age > 0 && now - env->created >= max_age;
}

/* ------------------------------------------------------------------ */
/* The queue directory                                                  */

static const char *const subdirs[] = { "tmp", "q", "failed", "maildrop" };

/*
 * mkdir -p, 0700 for what it creates: $XDG_STATE_HOME/bearmail may not
 * exist yet on a user install.  path is modified and restored.
 */
static int
mkdir_parents(char *path)
{
	char *p;

	for (p = path + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST) {
			*p = '/';
			return -1;
		}
		*p = '/';
	}
	return mkdir(path, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	if (sp->tmpfd >= 0)
		close(sp->tmpfd);
	if (sp->qfd >= 0)
		close(sp->qfd);
	if (sp->failedfd >= 0)
		close(sp->failedfd);
	if (sp->dropfd >= 0)
		close(sp->dropfd);
	free(sp->path);
	free(sp);
}

enum status
spool_open(struct spool **out, const char *path, unsigned flags,
    struct errinfo *ei)
{
	struct spool *sp;
	struct stat st;
	enum status rc = ST_CANTCREAT;
	int *fds[4], i;

	*out = NULL;
	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	sp->dirfd = sp->tmpfd = sp->qfd = sp->failedfd = sp->dropfd = -1;
	sp->rdonly = (flags & SPOOL_RDONLY) != 0;
	fds[0] = &sp->tmpfd;
	fds[1] = &sp->qfd;
	fds[2] = &sp->failedfd;
	fds[3] = &sp->dropfd;
	if ((sp->path = strdup(path)) == NULL) {
		rc = st_errno(ei, ST_SYS, "out of memory");
		goto fail;
	}
	if ((flags & SPOOL_CREATE) && !sp->rdonly &&
	    mkdir_parents(sp->path) != 0) {
		st_errno(ei, ST_CANTCREAT, "queue %s", path);
		goto fail;
	}
	if ((sp->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    fstat(sp->dirfd, &st) != 0) {
		st_errno(ei, ST_CANTCREAT, "queue %s", path);
		goto fail;
	}
	sp->owner = st.st_uid;
	sp->group = st.st_gid;
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		st_error(ei, ST_CANTCREAT, "queue %s is writable by group or "
		    "others: refusing it", path);
		goto fail;
	}
	if (!sp->rdonly && geteuid() != 0 && geteuid() != sp->owner) {
		st_error(ei, ST_CANTCREAT, "queue %s belongs to uid %lu, not "
		    "to this user: submit through bearmail-drop", path,
		    (unsigned long)sp->owner);
		goto fail;
	}
	for (i = 0; i < 4; i++) {
		bool drop = i == 3;

		if (sp->rdonly && i == 0)
			continue;
		if ((flags & SPOOL_CREATE) && !sp->rdonly &&
		    mkdirat(sp->dirfd, subdirs[i], 0700) != 0 &&
		    errno != EEXIST) {
			st_errno(ei, ST_CANTCREAT, "queue %s/%s", path,
			    subdirs[i]);
			goto fail;
		}
		if ((*fds[i] = openat(sp->dirfd, subdirs[i], O_RDONLY |
		    O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
			/* Listing works without reading the maildrop. */
			if (drop && sp->rdonly && errno == EACCES)
				continue;
			st_errno(ei, ST_CANTCREAT, "queue %s/%s", path,
			    subdirs[i]);
			goto fail;
		}
		if (fstat(*fds[i], &st) != 0) {
			st_errno(ei, ST_CANTCREAT, "queue %s/%s", path,
			    subdirs[i]);
			goto fail;
		}
		if (st.st_uid != sp->owner ||
		    (st.st_mode & S_IWOTH) ||
		    ((st.st_mode & S_IWGRP) &&
		    (!drop || !(st.st_mode & S_ISVTX)))) {
			st_error(ei, ST_CANTCREAT, "queue %s/%s has the wrong "
			    "owner or mode: refusing it", path, subdirs[i]);
			goto fail;
		}
	}
	*out = sp;
	return ST_OK;
fail:
	spool_close(sp);
	return rc;
}

/* A millisecond, for a rename in another process to complete. */
static void
nap(void)
{
	struct timespec ts = { 0, 1000000 };

	nanosleep(&ts, NULL);
}

/*
 * Open name in dirfd for reading without following anything: it must
 * be a regular file with one link, owned by owner unless owner is -1.
 * *why gets the reason of a refusal (ST_DATAERR); ENOENT gives ST_OK
 * with *fd -1.
 */
enum status
spool_open_checked(int dirfd, const char *name, uid_t owner, int *fd,
    struct stat *stp, const char **why, struct errinfo *ei)
{
	struct stat st, st2;
	int f, tries = 0;

again:
	*fd = -1;
	*why = NULL;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno == ENOENT)
			return ST_OK;
		return st_errno(ei, ST_SYS, "stat %s", name);
	}
	/*
	 * A link count of 0 is a file being replaced or removed (the name
	 * may still lead to it for a moment while a rename completes):
	 * look again shortly, and if it stays so, it is gone for us.
	 */
	if (st.st_nlink == 0) {
		if (++tries >= 16)
			return ST_OK;
		nap();
		goto again;
	}
	if (S_ISLNK(st.st_mode))
		*why = "a symbolic link";
	else if (!S_ISREG(st.st_mode))
		*why = "not a regular file";
	else if (st.st_nlink != 1)
		*why = "a file with more than one link";
	else if (owner != (uid_t)-1 && st.st_uid != owner)
		*why = "owned by another user";
	if (*why != NULL)
		return ST_DATAERR;
	if ((f = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_NOCTTY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			return ST_OK;
		if (errno == ELOOP) {
			*why = "a symbolic link";
			return ST_DATAERR;
		}
		return st_errno(ei, ST_SYS, "open %s", name);
	}
	if (fstat(f, &st2) != 0) {
		close(f);
		return st_errno(ei, ST_SYS, "fstat %s", name);
	}
	/*
	 * Replaced between the two looks (a runner's update renames a new
	 * file over the old one): look again at what the name leads to.
	 */
	if (st2.st_nlink == 0) {
		close(f);
		if (++tries >= 16)
			return ST_OK;	/* as good as gone */
		nap();
		goto again;
	}
	/* Judge what we hold, not what we looked at. */
	if (!S_ISREG(st2.st_mode))
		*why = "not a regular file";
	else if (st2.st_nlink != 1)
		*why = "a file with more than one link";
	else if (owner != (uid_t)-1 && st2.st_uid != owner)
		*why = "owned by another user";
	if (*why != NULL) {
		close(f);
		return ST_DATAERR;
	}
	*fd = f;
	if (stp != NULL)
		*stp = st2;
	return ST_OK;
}

/*
 * Read and parse the envelope at the start of fd; check that the file
 * is exactly as long as it says.
 */
enum status
spool_read_env(int fd, off_t fsize, enum envelope_fmt fmt,
    struct envelope *env, size_t *hdrlen, struct errinfo *ei)
{
	struct buf b;
	enum status st;
	char chunk[16384];
	size_t want;
	ssize_t r;

	buf_init(&b, ENVELOPE_HDR_MAX);
	for (;;) {
		if (b.len >= 2 && memmem(b.data, b.len, "\n\n", 2) != NULL)
			break;
		if (b.len >= ENVELOPE_HDR_MAX)
			break;
		want = ENVELOPE_HDR_MAX - b.len;
		if (want > sizeof(chunk))
			want = sizeof(chunk);
		if ((r = pread(fd, chunk, want, (off_t)b.len)) < 0) {
			if (errno == EINTR)
				continue;
			st = st_errno(ei, ST_SYS, "read");
			goto done;
		}
		if (r == 0)
			break;
		if ((st = buf_add(&b, chunk, (size_t)r, ei)) != ST_OK)
			goto done;
	}
	if ((st = envelope_parse(b.data != NULL ? b.data : "", b.len, fmt,
	    env, hdrlen, ei)) != ST_OK)
		goto done;
	if (fsize != (off_t)*hdrlen + env->size) {
		envelope_free(env);
		st = st_error(ei, ST_DATAERR, "file is %lld octets, its "
		    "envelope says %lld", (long long)fsize,
		    (long long)*hdrlen + (long long)env->size);
	}
done:
	buf_free(&b);
	return st;
}

/* Copy len octets of in from offset off to out (at its offset). */
static enum status
copy_range(int in, off_t off, off_t len, int out, struct errinfo *ei)
{
	char *chunk;
	enum status st = ST_OK;
	size_t want;
	ssize_t r;

	if ((chunk = malloc(SPOOL_COPY_CHUNK)) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	while (len > 0) {
		want = len > SPOOL_COPY_CHUNK ? SPOOL_COPY_CHUNK : (size_t)len;
		if ((r = pread(in, chunk, want, off)) < 0) {
			if (errno == EINTR)
				continue;
			st = st_errno(ei, ST_SYS, "read message");
			break;
		}
		if (r == 0) {
			st = st_error(ei, ST_DATAERR,
			    "message shorter than its size");
			break;
		}
		if ((st = xio_write_all(out, chunk, (size_t)r,
		    ST_CANTCREAT, "queue file", ei)) != ST_OK)
			break;
		off += r;
		len -= r;
	}
	free(chunk);
	return st;
}

/*
 * Write a queue file tmp/name: env's envelope, then the message (size
 * octets from srcfd at srcoff, or mem).  fsynced, given to the queue
 * owner, locked when lock is set.  On success *fdp (if not NULL) is the
 * open file (read/write) and *hdrlen its envelope length; on failure
 * nothing is left in tmp/.
 */
enum status
spool_write_file(struct spool *sp, const char *name,
    const struct envelope *env, int srcfd, off_t srcoff, const void *mem,
    bool lock, int *fdp, size_t *hdrlen, bool *exists, struct errinfo *ei)
{
	struct buf hdr;
	enum status st;
	int fd = -1;

	*exists = false;
	buf_init(&hdr, ENVELOPE_HDR_MAX);
	if ((st = envelope_format(env, ENVELOPE_FMT_QUEUE, &hdr, ei)) != ST_OK)
		goto done;
	if ((fd = openat(sp->tmpfd, name, O_RDWR | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
		if (errno == EEXIST) {
			/* The caller picks another name: not an error yet. */
			*exists = true;
			st = ST_CANTCREAT;
			goto done;
		}
		st = st_errno(ei, ST_CANTCREAT, "create %s/tmp/%s", sp->path,
		    name);
		goto done;
	}
	if (geteuid() == 0 && sp->owner != 0 &&
	    fchown(fd, sp->owner, sp->group) != 0) {
		st = st_errno(ei, ST_CANTCREAT, "chown %s/tmp/%s", sp->path,
		    name);
		goto done;
	}
	if (lock && flock(fd, LOCK_EX | LOCK_NB) != 0) {
		st = st_errno(ei, ST_SYS, "lock %s/tmp/%s", sp->path, name);
		goto done;
	}
	if ((st = xio_write_all(fd, hdr.data, hdr.len, ST_CANTCREAT,
	    "queue file", ei)) != ST_OK)
		goto done;
	if (mem != NULL)
		st = xio_write_all(fd, mem, (size_t)env->size, ST_CANTCREAT,
		    "queue file", ei);
	else
		st = copy_range(srcfd, srcoff, env->size, fd, ei);
	if (st != ST_OK)
		goto done;
	if (fsync(fd) != 0) {
		st = st_errno(ei, ST_CANTCREAT, "fsync %s/tmp/%s", sp->path,
		    name);
		goto done;
	}
	if (hdrlen != NULL)
		*hdrlen = hdr.len;
done:
	if (st != ST_OK && fd >= 0) {
		close(fd);
		unlinkat(sp->tmpfd, name, 0);
		fd = -1;
	}
	if (fdp != NULL)
		*fdp = fd;
	else if (fd >= 0)
		close(fd);
	buf_free(&hdr);
	return st;
}

static enum status
enqueue(struct spool *sp, struct envelope *env, int fd, const void *mem,
    size_t len, struct errinfo *ei)
{
	struct stat st;
	enum status rc;
	off_t start = 0, size;
	time_t now;
	long usec;
	int tries;
	bool exists;

	if (sp->rdonly || sp->tmpfd < 0)
		return st_error(ei, ST_CANTCREAT, "queue opened read-only");
	if (env->account == NULL || env->sender == NULL || env->nrcpts == 0)
		return st_error(ei, ST_USAGE, "nothing to queue: no account, "
		    "sender or recipient");
	if (mem == NULL) {
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
		    (start = lseek(fd, 0, SEEK_CUR)) < 0)
			return st_error(ei, ST_SYS,
			    "message to queue is not a regular file");
		size = st.st_size - start;
	} else
		size = (off_t)len;
	if (size > ENVELOPE_MSG_MAX)
		return st_error(ei, ST_LIMIT, "message of %lld octets is too "
		    "large for the queue", (long long)size);
	env->size = size;
	if (env->uid == (uid_t)-1)
		env->uid = getuid();
	for (tries = 0; tries < 64; tries++) {
		spool_now_us(&now, &usec);
		env->created = now;
		if (env->next_try == 0)
			env->next_try = now;
		envelope_id_make(env->id, now, usec);
		if (fstatat(sp->qfd, env->id, &st, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		if ((rc = spool_write_file(sp, env->id, env, fd, start, mem,
		    false, NULL, NULL, &exists, ei)) != ST_OK) {
			if (exists)
				continue;
			return rc;
		}
		if (spool_rename_noreplace(sp->tmpfd, env->id, sp->qfd, env->id)
		    != 0) {
			int e = errno;

			unlinkat(sp->tmpfd, env->id, 0);
			if (e == EEXIST)
				continue;
			errno = e;
			return st_errno(ei, ST_CANTCREAT, "rename into %s/q",
			    sp->path);
		}
		return xio_fsync_dirfd(sp->qfd, "q/", ei);
	}
	env->id[0] = '\0';
	return st_error(ei, ST_CANTCREAT, "no free queue ID in %s", sp->path);
}

enum status
spool_enqueue_fd(struct spool *sp, struct envelope *env, int fd,
    struct errinfo *ei)
{
	return enqueue(sp, env, fd, NULL, 0, ei);
}

enum status
spool_enqueue_mem(struct spool *sp, struct envelope *env, const void *mem,
    size_t len, struct errinfo *ei)
{
	return enqueue(sp, env, -1, mem != NULL ? mem : "", len, ei);
}

/* ------------------------------------------------------------------ */
/* Claimed messages                                                     */

struct envelope *
spool_msg_env(struct spool_msg *m)
{
	return &m->env;
}

void
spool_release(struct spool_msg *m)
{
	if (m == NULL)
		return;
	if (m->fd >= 0)
		close(m->fd);		/* drops the lock */
	envelope_free(&m->env);
	free(m);
}

enum status
spool_claim(struct spool *sp, const char *id, struct spool_msg **out,
    struct errinfo *ei)
{
	struct spool_msg *m;
	struct stat st, cur;
	struct errinfo sub;
	const char *why;
	enum status rc;
	int fd;

	*out = NULL;
	if (!envelope_id_valid(id))
		return st_error(ei, ST_USAGE, "not a queue ID: %.40s", id);
	st_clear(&sub);
	rc = spool_open_checked(sp->qfd, id, sp->owner, &fd, &st, &why, &sub);
	if (rc == ST_DATAERR) {
		log_warn("queue %s: refusing q/%s: %s", sp->path, id, why);
		return st_error(ei, ST_DATAERR, "q/%s is %s", id, why);
	}
	if (rc != ST_OK)
		return st_error(ei, rc, "%s", sub.msg);
	if (fd < 0)
		return ST_OK;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		if (errno == EWOULDBLOCK || errno == EINTR)
			return ST_OK;	/* another runner has it */
		return st_errno(ei, ST_SYS, "lock q/%s", id);
	}
	/* Still the file that q/ID names?  It may have been replaced. */
	if (fstatat(sp->qfd, id, &cur, AT_SYMLINK_NOFOLLOW) != 0 ||
	    cur.st_dev != st.st_dev || cur.st_ino != st.st_ino) {
		close(fd);
		return ST_OK;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		close(fd);
		return st_errno(ei, ST_SYS, "out of memory");
	}
	m->sp = sp;
	m->fd = fd;
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	envelope_init(&m->env);
	if ((rc = spool_read_env(fd, st.st_size, ENVELOPE_FMT_QUEUE, &m->env,
	    &m->hdrlen, ei)) != ST_OK) {
		st_context(ei, "q/%s", id);
		spool_release(m);
		return rc;
	}
	if (strcmp(m->env.id, id) != 0) {
		spool_release(m);
		return st_error(ei, ST_DATAERR, "q/%s says it is another "
		    "message", id);
	}
	*out = m;
	return ST_OK;
}

enum status
spool_body_open(struct spool_msg *m, int *fdp, struct errinfo *ei)
{
	struct stat st;
	int fd;

	*fdp = -1;
	/* Its own open file, so the caller's offset is its own. */
	if ((fd = openat(m->sp->qfd, m->env.id, O_RDONLY | O_NOFOLLOW |
	    O_NONBLOCK | O_NOCTTY | O_CLOEXEC)) < 0)
		return st_errno(ei, ST_SYS, "open q/%s", m->env.id);
	if (fstat(fd, &st) != 0 || st.st_dev != m->dev ||
	    st.st_ino != m->ino) {
		close(fd);
		return st_error(ei, ST_SYS, "q/%s changed under its claim",
		    m->env.id);
	}
	if (lseek(fd, (off_t)m->hdrlen, SEEK_SET) < 0) {
		close(fd);
		return st_errno(ei, ST_SYS, "seek q/%s", m->env.id);
	}
	*fdp = fd;
	return ST_OK;
}

enum status
spool_body_read(struct spool_msg *m, size_t max, struct buf *out,
    bool *complete, struct errinfo *ei)
{
	char chunk[16384];
	off_t off = 0, len = m->env.size;
	enum status st;
	size_t want;
	ssize_t r;

	*complete = false;
	while (off < len && (size_t)off < max) {
		want = sizeof(chunk);
		if ((off_t)want > len - off)
			want = (size_t)(len - off);
		if (want > max - (size_t)off)
			want = max - (size_t)off;
		if ((r = pread(m->fd, chunk, want, (off_t)m->hdrlen + off)) < 0) {
			if (errno == EINTR)
				continue;
			return st_errno(ei, ST_SYS, "read q/%s", m->env.id);
		}
		if (r == 0)
			return st_error(ei, ST_DATAERR, "q/%s is truncated",
			    m->env.id);
		if ((st = buf_add(out, chunk, (size_t)r, ei)) != ST_OK)
			return st;
		off += r;
	}
	*complete = off == len;
	return ST_OK;
}

enum status
spool_rcpt_set(struct spool_msg *m, size_t i, enum envelope_rcpt_state state,
    const char *reply, struct errinfo *ei)
{
	char *r = NULL;

	if (i >= m->env.nrcpts)
		return st_error(ei, ST_USAGE, "no recipient %zu", i);
	if (reply != NULL && *reply != '\0' &&
	    (r = text_dup(reply, ei)) == NULL)
		return ST_SYS;
	free(m->env.rcpts[i].reply);
	m->env.rcpts[i].reply = r;
	m->env.rcpts[i].state = state;
	m->dirty = true;
	return ST_OK;
}

static enum status
set_last_error(struct envelope *env, const char *reason, struct errinfo *ei)
{
	char *r = NULL;

	if (reason != NULL && *reason != '\0' &&
	    (r = text_dup(reason, ei)) == NULL)
		return ST_SYS;
	free(env->last_error);
	env->last_error = r;
	return ST_OK;
}

enum status
spool_fail_pending(struct spool_msg *m, const char *reason,
    struct errinfo *ei)
{
	enum status st;
	size_t i;

	if ((st = set_last_error(&m->env, reason, ei)) != ST_OK)
		return st;
	m->dirty = true;
	for (i = 0; i < m->env.nrcpts; i++) {
		struct envelope_rcpt *r = &m->env.rcpts[i];

		if (r->state != ENVELOPE_RCPT_PENDING)
			continue;
		r->state = ENVELOPE_RCPT_FAILED;
		/* Keep the server's last word; else say why we gave up. */
		if (r->reply == NULL && m->env.last_error != NULL &&
		    (r->reply = strdup(m->env.last_error)) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
	}
	return ST_OK;
}

enum status
spool_commit(struct spool_msg *m, struct errinfo *ei)
{
	struct spool *sp = m->sp;
	char name[ENVELOPE_ID_SIZE + 8];
	struct stat st;
	enum status rc;
	size_t hdrlen;
	bool exists;
	int fd, tries;

	if (m->gone)
		return st_error(ei, ST_USAGE, "q/%s was retired", m->env.id);
	if (sp->rdonly || sp->tmpfd < 0)
		return st_error(ei, ST_CANTCREAT, "queue opened read-only");
	snprintf(name, sizeof(name), "%s.new", m->env.id);
	for (tries = 0;; tries++) {
		rc = spool_write_file(sp, name, &m->env, m->fd,
		    (off_t)m->hdrlen, NULL, true, &fd, &hdrlen, &exists, ei);
		if (rc == ST_OK)
			break;
		/* Left by a runner killed mid-update; we hold the claim. */
		if (!exists || tries > 0)
			return exists ? st_error(ei, rc, "tmp/%s is in the "
			    "way", name) : rc;
		unlinkat(sp->tmpfd, name, 0);
	}
	if (fstat(fd, &st) != 0 ||
	    renameat(sp->tmpfd, name, sp->qfd, m->env.id) != 0) {
		rc = st_errno(ei, ST_CANTCREAT, "replace q/%s", m->env.id);
		close(fd);
		unlinkat(sp->tmpfd, name, 0);
		return rc;
	}
	close(m->fd);
	m->fd = fd;
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	m->hdrlen = hdrlen;
	m->dirty = false;
	return xio_fsync_dirfd(sp->qfd, "q/", ei);
}

enum status
spool_defer(struct spool_msg *m, time_t now, const char *reason,
    struct errinfo *ei)
{
	enum status st;

	if ((st = set_last_error(&m->env, reason, ei)) != ST_OK)
		return st;
	if (m->env.attempts < 1000000)
		m->env.attempts++;
	m->env.next_try = now + spool_backoff(m->env.attempts);
	return spool_commit(m, ei);
}

enum status
spool_retire(struct spool_msg *m, struct errinfo *ei)
{
	struct spool *sp = m->sp;
	enum status st;

	if (m->gone)
		return ST_OK;
	if (envelope_pending(&m->env) > 0)
		return st_error(ei, ST_USAGE, "q/%s still has recipients to "
		    "send to", m->env.id);
	/* failed/ keeps the final states: they must be on disk. */
	if (m->dirty && envelope_failed(&m->env) > 0 &&
	    (st = spool_commit(m, ei)) != ST_OK)
		return st;
	if (envelope_failed(&m->env) == 0) {
		if (unlinkat(sp->qfd, m->env.id, 0) != 0 && errno != ENOENT)
			return st_errno(ei, ST_CANTCREAT, "remove q/%s",
			    m->env.id);
	} else {
		if (renameat(sp->qfd, m->env.id, sp->failedfd, m->env.id) != 0)
			return st_errno(ei, ST_CANTCREAT, "move q/%s to "
			    "failed/", m->env.id);
		if ((st = xio_fsync_dirfd(sp->failedfd, "failed/", ei)) !=
		    ST_OK)
			return st;
	}
	m->gone = true;
	return xio_fsync_dirfd(sp->qfd, "q/", ei);
}

/* ------------------------------------------------------------------ */
/* Leftovers                                                            */

/* The names in dirfd, read before anything in it changes. */
enum status
spool_dir_names(int dirfd, char ***names, size_t *n, struct errinfo *ei)
{
	struct dirent *de;
	char **v = NULL, **nv;
	size_t cap = 0;
	enum status rc = ST_OK;
	DIR *d;
	int fd;

	*names = NULL;
	*n = 0;
	if ((fd = dup(dirfd)) < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return st_errno(ei, ST_SYS, "read directory");
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (*n == cap) {
			cap = cap == 0 ? 32 : cap * 2;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				rc = st_errno(ei, ST_SYS, "out of memory");
				break;
			}
			v = nv;
		}
		if ((v[*n] = strdup(de->d_name)) == NULL) {
			rc = st_errno(ei, ST_SYS, "out of memory");
			break;
		}
		(*n)++;
	}
	closedir(d);
	if (rc != ST_OK) {
		while (*n > 0)
			free(v[--*n]);
		free(v);
		return rc;
	}
	*names = v;
	return ST_OK;
}

void
spool_names_free(char **v, size_t n)
{
	while (n > 0)
		free(v[--n]);
	free(v);
}

/* Remove entries of dirfd older than a day (with dots: dot-files only). */
void
spool_remove_stale(int dirfd, char **v, size_t n, time_t now, bool dots)
{
	struct stat st;
	size_t i;

	for (i = 0; i < n; i++) {
		if (dots && v[i][0] != '.')
			continue;
		if (fstatat(dirfd, v[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    !S_ISDIR(st.st_mode) && st.st_mtime < now - SPOOL_STALE_AGE)
			unlinkat(dirfd, v[i], 0);
	}
}

enum status
spool_cleanup(struct spool *sp, time_t now, struct errinfo *ei)
{
	enum status rc;
	char **v;
	size_t n;

	if (sp->rdonly || sp->tmpfd < 0)
		return st_error(ei, ST_CANTCREAT, "queue opened read-only");
	if ((rc = spool_dir_names(sp->tmpfd, &v, &n, ei)) != ST_OK)
		return rc;
	spool_remove_stale(sp->tmpfd, v, n, now, false);
	spool_names_free(v, n);
	return ST_OK;
}
