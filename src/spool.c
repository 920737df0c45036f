/*
 * spool.c: the durable queue and the maildrop.
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
 * QUEUE IDs are 10 characters of Crockford's base 32 (0-9 A-Z without
 * I L O U), so they are filename-safe and sort as they were made:
 * 7 characters of seconds since the epoch (35 bits: until the year
 * 3058), 2 of milliseconds, 1 random.  Uniqueness does not rest on the
 * random character: a file is created with O_EXCL and moved into place
 * with RENAME_NOREPLACE, and a collision just draws another ID.  Ten
 * characters fit the ID column of Postfix's mailq layout.
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
 * The envelope is one "key value" line per field, LF-terminated, in this
 * order (queue format; the first line is the magic and version):
 *
 *   bearmail-queue 1
 *   id 1KQ3V7H0D2                  the file's own name
 *   account gmail                  account (config section)
 *   uid 1000                       submitting user (optional)
 *   created 1764155719             arrival, seconds since the epoch
 *   attempts 2                     delivery attempts so far
 *   next-try 1764156319            not before this time
 *   last-error 421 4.7.0 Try later (optional) why the last try failed
 *   sender alice@example.com       "<>" for the null sender
 *   body 8bitmime                  none, 7bit or 8bitmime (BODY=)
 *   smtputf8 no                    yes or no
 *   notify failure,delay           (optional) DSN NOTIFY: never, or a
 *                                  list of success, failure, delay
 *   ret hdrs                       (optional) DSN RET: full or hdrs
 *   envid QQ314159                 (optional) DSN ENVID, raw
 *   size 1234                      octets of message after the empty line
 *   rcpt pending bob@example.org   one per recipient: pending, done or
 *   reply 421 4.7.0 Try later        failed; "reply" (optional) follows
 *   rcpt done carol@example.net      its rcpt: the last reply or reason
 *   <empty line>
 *   <message>
 *
 * Values are never empty and hold no control characters (so no line can
 * be smuggled in); numbers are plain decimal.  The parser is strict:
 * known keys only, each once (rcpt/reply excepted), bounded sizes, and
 * the file must be exactly as long as the envelope says.
 *
 * The maildrop format is the same with the magic "bearmail-drop 1" and
 * only account, sender, body, smtputf8, notify, ret, envid, size and
 * "rcpt pending ADDR" lines: whatever the runner decides (id, uid,
 * times, attempts, states, errors) cannot be submitted.
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
 * MAILDROP.  bearmail, run by a user who cannot write q/, pipes the
 * envelope and message to bearmail-drop (spool_submit_drop(): an empty
 * environment, a socket for its stdin so an early exit is no SIGPIPE).
 * bearmail-drop (setgid bearmail-drop, the only privileged program)
 * runs spool_drop(): it parses the submission before anything
 * is visible, writes maildrop/.ID (mode 0644: the runner reads it through
 * "other" because the file belongs to the submitter; nobody else can
 * reach it through the 1730 directory), fsyncs and renames it to
 * maildrop/ID without replacing.  The runner's spool_import_maildrop()
 * parses it again as untrusted input (bounded, DROP format only), takes
 * the submitting uid from the file's owner and the arrival time from its
 * mtime, writes q/ID with the same ID (a queue file owned by the queue
 * owner; the dropped file itself is never moved into q/) and then
 * unlinks maildrop/ID.  A crash between the two finds q/ID already there
 * with the same uid, arrival time, size and sender, and only removes the
 * drop file.
 *
 * NOTICES.  spool_notice() composes an RFC 3464 report (multipart/report
 * with text/plain, message/delivery-status and the original's headers,
 * or all of it with RET=FULL) as a pure function; the runner enqueues it
 * with the null sender to bounce_to or the sender, never about a message
 * whose sender is <>.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_GETRANDOM
#include <sys/random.h>
#endif

#include "buf.h"
#include "log.h"
#include "spool.h"

#define MAGIC_QUEUE	"bearmail-queue 1"
#define MAGIC_DROP	"bearmail-drop 1"
#define COPY_CHUNK	65536
#define STALE_AGE	(24 * 60 * 60)	/* tmp/ and maildrop/. leftovers */
#define EX_OSERR_CHILD	127		/* the child could not exec */

static const char id_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

struct spool {
	int dirfd;
	int tmpfd, qfd, failedfd, dropfd;	/* -1 when not opened */
	uid_t owner;
	gid_t group;
	bool rdonly;
	char *path;
};

struct spool_msg {
	struct spool *sp;
	int fd;				/* locked */
	dev_t dev;
	ino_t ino;
	size_t hdrlen;
	struct spool_env env;
	bool dirty;			/* env differs from the file */
	bool gone;			/* retired: no more updates */
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

static void
spool_random(void *p, size_t n)
{
	static unsigned long mix;
	unsigned char *c = p;
	struct timespec ts;
	size_t i;

#ifdef HAVE_GETRANDOM
	if (getrandom(p, n, GRND_NONBLOCK) == (ssize_t)n)
		return;
#endif
	/* Uniqueness never rests on this: O_EXCL and RENAME_NOREPLACE do. */
	clock_gettime(CLOCK_REALTIME, &ts);
	mix = mix * 6364136223846793005UL + (unsigned long)ts.tv_nsec +
	    (unsigned long)getpid();
	for (i = 0; i < n; i++)
		c[i] = (unsigned char)(mix >> (8 * (i % 8)));
}

static enum status
write_all(int fd, const void *p, size_t n, struct errinfo *ei)
{
	const char *c = p;
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, c, n)) < 0) {
			if (errno == EINTR)
				continue;
			return st_errno(ei, ST_CANTCREAT, "write");
		}
		c += w;
		n -= (size_t)w;
	}
	return ST_OK;
}

/* rename without replacing; EEXIST if the target exists. */
static int
rename_noreplace(int olddir, const char *oldname, int newdir,
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

static enum status
sync_dir(int dirfd, const char *what, struct errinfo *ei)
{
	if (fsync(dirfd) != 0 && errno != EINVAL)
		return st_errno(ei, ST_CANTCREAT, "fsync %s/", what);
	return ST_OK;
}

/* Text a value may hold: no control characters, bounded, not empty. */
static bool
text_ok(const char *s, size_t n, size_t max)
{
	size_t i;

	if (n == 0 || n > max)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool
addr_ok(const char *s, size_t n)
{
	if (!text_ok(s, n, SPOOL_ADDR_MAX))
		return false;
	if (s[0] == ' ' || s[n - 1] == ' ')
		return false;
	return !(n == 2 && s[0] == '<' && s[1] == '>');
}

static bool
account_ok(const char *s, size_t n)
{
	return text_ok(s, n, SPOOL_ACCOUNT_MAX) && s[0] != ' ' &&
	    s[n - 1] != ' ';
}

static bool
envid_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > SPOOL_ENVID_MAX)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* A copy of text with control characters replaced and length capped. */
static char *
text_dup(const char *s, struct errinfo *ei)
{
	size_t n = strlen(s), i;
	char *d;

	if (n > SPOOL_TEXT_MAX)
		n = SPOOL_TEXT_MAX;
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

static char *
mem_dup(const char *s, size_t n, struct errinfo *ei)
{
	char *d;

	if ((d = malloc(n + 1)) == NULL) {
		st_errno(ei, ST_SYS, "out of memory");
		return NULL;
	}
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* ------------------------------------------------------------------ */
/* IDs, backoff                                                         */

void
spool_id_make(char id[SPOOL_ID_SIZE], time_t t, long usec)
{
	unsigned long long sec = (unsigned long long)t;
	unsigned ms = (unsigned)(usec / 1000) % 1000;
	unsigned char r;
	int i;

	for (i = 6; i >= 0; i--) {
		id[i] = id_alphabet[sec & 31];
		sec >>= 5;
	}
	id[7] = id_alphabet[(ms >> 5) & 31];
	id[8] = id_alphabet[ms & 31];
	spool_random(&r, 1);
	id[9] = id_alphabet[r & 31];
	id[10] = '\0';
}

bool
spool_id_valid(const char *s)
{
	size_t i;

	for (i = 0; i < SPOOL_ID_LEN; i++)
		if (s[i] == '\0' || strchr(id_alphabet, s[i]) == NULL)
			return false;
	return s[SPOOL_ID_LEN] == '\0';
}

time_t
spool_backoff(unsigned attempts)
{
	time_t d = SPOOL_BACKOFF_MIN;

	while (attempts-- > 1 && d < SPOOL_BACKOFF_MAX)
		d *= 2;
	return d > SPOOL_BACKOFF_MAX ? SPOOL_BACKOFF_MAX : d;
}

bool
spool_expired(const struct spool_env *env, time_t now, time_t max_age)
{
	return max_age > 0 && now - env->created >= max_age;
}

static void
now_us(time_t *sec, long *usec)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	*sec = ts.tv_sec;
	*usec = ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------ */
/* Envelopes                                                            */

void
spool_env_init(struct spool_env *env)
{
	memset(env, 0, sizeof(*env));
	env->uid = (uid_t)-1;
	env->body = SPOOL_BODY_NONE;
	env->ret = SPOOL_RET_NONE;
}

void
spool_env_free(struct spool_env *env)
{
	size_t i;

	if (env == NULL)
		return;
	for (i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].reply);
	}
	free(env->rcpts);
	free(env->account);
	free(env->sender);
	free(env->envid);
	free(env->last_error);
	spool_env_init(env);
}

enum status
spool_env_set(struct spool_env *env, const char *account, const char *sender,
    struct errinfo *ei)
{
	char *a, *s;

	if (!account_ok(account, strlen(account)))
		return st_error(ei, ST_DATAERR, "unusable account name");
	if (strcmp(sender, "<>") == 0)
		sender = "";
	if (*sender != '\0' && !addr_ok(sender, strlen(sender)))
		return st_error(ei, ST_DATAERR, "unusable sender address");
	if ((a = strdup(account)) == NULL || (s = strdup(sender)) == NULL) {
		free(a);
		return st_errno(ei, ST_SYS, "out of memory");
	}
	free(env->account);
	free(env->sender);
	env->account = a;
	env->sender = s;
	return ST_OK;
}

enum status
spool_env_set_envid(struct spool_env *env, const char *envid,
    struct errinfo *ei)
{
	char *e = NULL;

	if (envid != NULL) {
		if (!envid_ok(envid, strlen(envid)))
			return st_error(ei, ST_DATAERR, "unusable DSN ENVID");
		if ((e = strdup(envid)) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
	}
	free(env->envid);
	env->envid = e;
	return ST_OK;
}

static enum status
rcpt_append(struct spool_env *env, const char *addr, size_t n,
    enum spool_rcpt_state state, struct errinfo *ei)
{
	struct spool_rcpt *r;
	size_t cap;

	if (!addr_ok(addr, n))
		return st_error(ei, ST_DATAERR, "unusable recipient address");
	if (env->nrcpts >= SPOOL_RCPT_MAX)
		return st_error(ei, ST_LIMIT, "more than %d recipients",
		    SPOOL_RCPT_MAX);
	/* Grow at powers of two: the count itself says when. */
	if ((env->nrcpts & (env->nrcpts - 1)) == 0) {
		cap = env->nrcpts == 0 ? 1 : env->nrcpts * 2;
		if ((r = realloc(env->rcpts, cap * sizeof(*r))) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
		env->rcpts = r;
	}
	r = &env->rcpts[env->nrcpts];
	if ((r->addr = mem_dup(addr, n, ei)) == NULL)
		return ST_SYS;
	r->state = state;
	r->reply = NULL;
	env->nrcpts++;
	return ST_OK;
}

enum status
spool_env_add_rcpt(struct spool_env *env, const char *addr,
    struct errinfo *ei)
{
	return rcpt_append(env, addr, strlen(addr), SPOOL_RCPT_PENDING, ei);
}

enum status
spool_env_copy(struct spool_env *dst, const struct spool_env *src,
    struct errinfo *ei)
{
	enum status st = ST_SYS;
	size_t i;

	spool_env_init(dst);
	memcpy(dst->id, src->id, sizeof(dst->id));
	dst->body = src->body;
	dst->smtputf8 = src->smtputf8;
	dst->notify = src->notify;
	dst->ret = src->ret;
	dst->uid = src->uid;
	dst->created = src->created;
	dst->attempts = src->attempts;
	dst->next_try = src->next_try;
	dst->size = src->size;
	if ((src->account != NULL &&
	    (dst->account = strdup(src->account)) == NULL) ||
	    (src->sender != NULL &&
	    (dst->sender = strdup(src->sender)) == NULL) ||
	    (src->envid != NULL &&
	    (dst->envid = strdup(src->envid)) == NULL) ||
	    (src->last_error != NULL &&
	    (dst->last_error = strdup(src->last_error)) == NULL)) {
		st_errno(ei, ST_SYS, "out of memory");
		goto fail;
	}
	for (i = 0; i < src->nrcpts; i++) {
		if ((st = rcpt_append(dst, src->rcpts[i].addr,
		    strlen(src->rcpts[i].addr), src->rcpts[i].state, ei)) !=
		    ST_OK)
			goto fail;
		if (src->rcpts[i].reply != NULL &&
		    (dst->rcpts[i].reply = strdup(src->rcpts[i].reply)) ==
		    NULL) {
			st = st_errno(ei, ST_SYS, "out of memory");
			goto fail;
		}
	}
	return ST_OK;
fail:
	spool_env_free(dst);
	return st;
}

size_t
spool_pending(const struct spool_env *env)
{
	size_t i, n = 0;

	for (i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].state == SPOOL_RCPT_PENDING)
			n++;
	return n;
}

size_t
spool_failed(const struct spool_env *env)
{
	size_t i, n = 0;

	for (i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].state == SPOOL_RCPT_FAILED)
			n++;
	return n;
}

static const char *const body_names[] = { "none", "7bit", "8bitmime" };
static const char *const ret_names[] = { NULL, "hdrs", "full" };
static const char *const state_names[] = { "pending", "done", "failed" };
static const struct {
	const char *name;
	unsigned bit;
} notify_names[] = {
	{ "success", SPOOL_NOTIFY_SUCCESS },
	{ "failure", SPOOL_NOTIFY_FAILURE },
	{ "delay", SPOOL_NOTIFY_DELAY },
};

#define TIME_MAX_ACCEPTED	((1ULL << 40) - 1)

static bool
opt_text_ok(const char *s)
{
	return s == NULL || *s == '\0' || text_ok(s, strlen(s), SPOOL_TEXT_MAX);
}

/* The checks the parser makes, made before writing. */
static bool
env_writable(const struct spool_env *env, bool q)
{
	size_t i;

	if (!account_ok(env->account, strlen(env->account)) ||
	    (*env->sender != '\0' && !addr_ok(env->sender,
	    strlen(env->sender))) ||
	    (env->envid != NULL && !envid_ok(env->envid,
	    strlen(env->envid))) ||
	    env->nrcpts > SPOOL_RCPT_MAX)
		return false;
	if (q && (env->created < 0 || env->next_try < 0 ||
	    (unsigned long long)env->created > TIME_MAX_ACCEPTED ||
	    (unsigned long long)env->next_try > TIME_MAX_ACCEPTED ||
	    env->attempts > 1000000 || !opt_text_ok(env->last_error) ||
	    (env->uid != (uid_t)-1 && env->uid > 0xfffffffeU)))
		return false;
	for (i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].addr == NULL ||
		    !addr_ok(env->rcpts[i].addr, strlen(env->rcpts[i].addr)) ||
		    (unsigned)env->rcpts[i].state > SPOOL_RCPT_FAILED ||
		    !opt_text_ok(env->rcpts[i].reply))
			return false;
	return true;
}

enum status
spool_env_format(const struct spool_env *env, enum spool_fmt fmt,
    struct buf *out, struct errinfo *ei)
{
	bool q = fmt == SPOOL_FMT_QUEUE;
	const char *sep = "";
	enum status st;
	size_t i;

	if (env->account == NULL || env->sender == NULL || env->nrcpts == 0)
		return st_error(ei, ST_DATAERR,
		    "envelope without account, sender or recipients");
	/* Whatever is written must parse back, or the message is stuck. */
	if (!env_writable(env, q))
		return st_error(ei, ST_DATAERR, "envelope holds a value the "
		    "queue format cannot carry");
	if ((unsigned)env->body > SPOOL_BODY_8BITMIME ||
	    (unsigned)env->ret > SPOOL_RET_FULL ||
	    (env->notify & ~0xfu) != 0 ||
	    ((env->notify & SPOOL_NOTIFY_NEVER) && env->notify != 1))
		return st_error(ei, ST_DATAERR, "bad envelope flags");
	if (q && !spool_id_valid(env->id))
		return st_error(ei, ST_DATAERR, "envelope without a queue ID");
	if (env->size < 0 || env->size > SPOOL_MSG_MAX)
		return st_error(ei, ST_LIMIT, "message too large");

	if ((st = buf_printf(out, ei, "%s\n", q ? MAGIC_QUEUE : MAGIC_DROP)))
		return st;
	if (q && (st = buf_printf(out, ei, "id %s\n", env->id)))
		return st;
	if ((st = buf_printf(out, ei, "account %s\n", env->account)))
		return st;
	if (q) {
		if (env->uid != (uid_t)-1 && (st = buf_printf(out, ei,
		    "uid %lu\n", (unsigned long)env->uid)))
			return st;
		if ((st = buf_printf(out, ei, "created %lld\nattempts %u\n"
		    "next-try %lld\n", (long long)env->created, env->attempts,
		    (long long)env->next_try)))
			return st;
		if (env->last_error != NULL && *env->last_error != '\0' &&
		    (st = buf_printf(out, ei, "last-error %s\n",
		    env->last_error)))
			return st;
	}
	if ((st = buf_printf(out, ei, "sender %s\nbody %s\nsmtputf8 %s\n",
	    *env->sender == '\0' ? "<>" : env->sender, body_names[env->body],
	    env->smtputf8 ? "yes" : "no")))
		return st;
	if (env->notify != 0) {
		if ((st = buf_adds(out, "notify ", ei)))
			return st;
		if (env->notify == SPOOL_NOTIFY_NEVER)
			st = buf_adds(out, "never", ei);
		for (i = 0; i < 3 && st == ST_OK; i++)
			if (env->notify & notify_names[i].bit) {
				st = buf_printf(out, ei, "%s%s", sep,
				    notify_names[i].name);
				sep = ",";
			}
		if (st != ST_OK || (st = buf_adds(out, "\n", ei)))
			return st;
	}
	if (env->ret != SPOOL_RET_NONE &&
	    (st = buf_printf(out, ei, "ret %s\n", ret_names[env->ret])))
		return st;
	if (env->envid != NULL &&
	    (st = buf_printf(out, ei, "envid %s\n", env->envid)))
		return st;
	if ((st = buf_printf(out, ei, "size %lld\n", (long long)env->size)))
		return st;
	for (i = 0; i < env->nrcpts; i++) {
		const struct spool_rcpt *r = &env->rcpts[i];

		if (!q && r->state != SPOOL_RCPT_PENDING)
			return st_error(ei, ST_DATAERR,
			    "a drop recipient must be pending");
		if ((st = buf_printf(out, ei, "rcpt %s %s\n",
		    state_names[r->state], r->addr)))
			return st;
		if (q && r->reply != NULL && *r->reply != '\0' &&
		    (st = buf_printf(out, ei, "reply %s\n", r->reply)))
			return st;
	}
	return buf_adds(out, "\n", ei);
}

/* Plain decimal, no sign, no leading zero, at most max. */
static bool
parse_num(const char *s, size_t n, unsigned long long max,
    unsigned long long *out)
{
	unsigned long long v = 0;
	size_t i;

	if (n == 0 || n > 19 || (n > 1 && s[0] == '0'))
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

static int
name_index(const char *const *names, size_t count, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < count; i++)
		if (names[i] != NULL && strlen(names[i]) == n &&
		    memcmp(names[i], s, n) == 0)
			return (int)i;
	return -1;
}

static bool
parse_notify(const char *s, size_t n, unsigned *out)
{
	size_t i, len;
	unsigned v = 0, bit;
	const char *e;

	if (n == 5 && memcmp(s, "never", 5) == 0) {
		*out = SPOOL_NOTIFY_NEVER;
		return true;
	}
	while (n > 0) {
		e = memchr(s, ',', n);
		len = e != NULL ? (size_t)(e - s) : n;
		bit = 0;
		for (i = 0; i < 3; i++)
			if (strlen(notify_names[i].name) == len &&
			    memcmp(notify_names[i].name, s, len) == 0)
				bit = notify_names[i].bit;
		if (bit == 0 || (v & bit))
			return false;
		v |= bit;
		if (e == NULL)
			break;
		if (len + 1 >= n)
			return false;		/* trailing comma */
		s += len + 1;
		n -= len + 1;
	}
	*out = v;
	return v != 0;
}

/* Fields and whether each format allows them. */
enum fld {
	FLD_ID, FLD_ACCOUNT, FLD_UID, FLD_CREATED, FLD_ATTEMPTS, FLD_NEXT_TRY,
	FLD_LAST_ERROR, FLD_SENDER, FLD_BODY, FLD_SMTPUTF8, FLD_NOTIFY,
	FLD_RET, FLD_ENVID, FLD_SIZE, FLD_RCPT, FLD_REPLY, FLD__COUNT
};

static const struct {
	const char *key;
	bool in_drop;		/* allowed in the maildrop format */
	bool required;		/* in the formats that allow it */
} fields[FLD__COUNT] = {
	[FLD_ID]		= { "id",		false,	true },
	[FLD_ACCOUNT]	= { "account",		true,	true },
	[FLD_UID]		= { "uid",		false,	false },
	[FLD_CREATED]	= { "created",		false,	true },
	[FLD_ATTEMPTS]	= { "attempts",		false,	true },
	[FLD_NEXT_TRY]	= { "next-try",		false,	true },
	[FLD_LAST_ERROR]	= { "last-error",	false,	false },
	[FLD_SENDER]	= { "sender",		true,	true },
	[FLD_BODY]	= { "body",		true,	true },
	[FLD_SMTPUTF8]	= { "smtputf8",		true,	true },
	[FLD_NOTIFY]	= { "notify",		true,	false },
	[FLD_RET]		= { "ret",		true,	false },
	[FLD_ENVID]	= { "envid",		true,	false },
	[FLD_SIZE]	= { "size",		true,	true },
	[FLD_RCPT]	= { "rcpt",		true,	true },
	[FLD_REPLY]	= { "reply",		false,	false },
};

static enum status
parse_field(struct spool_env *env, enum fld f, const char *v, size_t n,
    bool after_rcpt, struct errinfo *ei)
{
	unsigned long long num;
	const char *sp;
	int i;

	switch (f) {
	case FLD_ID:
		if (n != SPOOL_ID_LEN)
			return ST_DATAERR;
		memcpy(env->id, v, n);
		env->id[n] = '\0';
		return spool_id_valid(env->id) ? ST_OK : ST_DATAERR;
	case FLD_ACCOUNT:
		if (!account_ok(v, n))
			return ST_DATAERR;
		return (env->account = mem_dup(v, n, ei)) ? ST_OK : ST_SYS;
	case FLD_UID:
		if (!parse_num(v, n, 0xfffffffeULL, &num))
			return ST_DATAERR;
		env->uid = (uid_t)num;
		return ST_OK;
	case FLD_CREATED:
	case FLD_NEXT_TRY:
		if (!parse_num(v, n, TIME_MAX_ACCEPTED, &num))
			return ST_DATAERR;
		*(f == FLD_CREATED ? &env->created : &env->next_try) =
		    (time_t)num;
		return ST_OK;
	case FLD_ATTEMPTS:
		if (!parse_num(v, n, 1000000, &num))
			return ST_DATAERR;
		env->attempts = (unsigned)num;
		return ST_OK;
	case FLD_LAST_ERROR:
		if (!text_ok(v, n, SPOOL_TEXT_MAX))
			return ST_DATAERR;
		return (env->last_error = mem_dup(v, n, ei)) ? ST_OK : ST_SYS;
	case FLD_SENDER:
		if (n == 2 && memcmp(v, "<>", 2) == 0)
			n = 0;
		else if (!addr_ok(v, n))
			return ST_DATAERR;
		return (env->sender = mem_dup(v, n, ei)) ? ST_OK : ST_SYS;
	case FLD_BODY:
		if ((i = name_index(body_names, 3, v, n)) < 0)
			return ST_DATAERR;
		env->body = (enum spool_body)i;
		return ST_OK;
	case FLD_SMTPUTF8:
		if (n == 3 && memcmp(v, "yes", 3) == 0)
			env->smtputf8 = true;
		else if (n == 2 && memcmp(v, "no", 2) == 0)
			env->smtputf8 = false;
		else
			return ST_DATAERR;
		return ST_OK;
	case FLD_NOTIFY:
		return parse_notify(v, n, &env->notify) ? ST_OK : ST_DATAERR;
	case FLD_RET:
		if ((i = name_index(ret_names, 3, v, n)) < 1)
			return ST_DATAERR;
		env->ret = (enum spool_ret)i;
		return ST_OK;
	case FLD_ENVID:
		if (!envid_ok(v, n))
			return ST_DATAERR;
		return (env->envid = mem_dup(v, n, ei)) ? ST_OK : ST_SYS;
	case FLD_SIZE:
		if (!parse_num(v, n, (unsigned long long)SPOOL_MSG_MAX, &num))
			return ST_DATAERR;
		env->size = (off_t)num;
		return ST_OK;
	case FLD_RCPT:
		if ((sp = memchr(v, ' ', n)) == NULL ||
		    (i = name_index(state_names, 3, v, (size_t)(sp - v))) < 0)
			return ST_DATAERR;
		sp++;
		return rcpt_append(env, sp, n - (size_t)(sp - v),
		    (enum spool_rcpt_state)i, ei) == ST_OK ? ST_OK : ST_DATAERR;
	case FLD_REPLY:
		if (!after_rcpt || !text_ok(v, n, SPOOL_TEXT_MAX))
			return ST_DATAERR;
		return (env->rcpts[env->nrcpts - 1].reply = mem_dup(v, n, ei)) ?
		    ST_OK : ST_SYS;
	default:
		return ST_DATAERR;
	}
}

enum status
spool_env_parse(const char *data, size_t len, enum spool_fmt fmt,
    struct spool_env *env, size_t *hdrlen, struct errinfo *ei)
{
	const char *magic = fmt == SPOOL_FMT_QUEUE ? MAGIC_QUEUE : MAGIC_DROP;
	bool seen[FLD__COUNT] = { false };
	bool drop = fmt == SPOOL_FMT_DROP, after_rcpt = false;
	const char *p = data, *nl, *sp, *end;
	size_t lineno = 0, n, klen;
	struct errinfo sub;
	enum status st;
	int f;

	spool_env_free(env);
	if (len > SPOOL_HDR_MAX)
		len = SPOOL_HDR_MAX;
	end = data + len;
	for (;;) {
		lineno++;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
			st = st_error(ei, len == SPOOL_HDR_MAX ? ST_LIMIT :
			    ST_DATAERR, "envelope line %zu: %s", lineno,
			    len == SPOOL_HDR_MAX ? "envelope too large" :
			    "truncated");
			goto fail;
		}
		n = (size_t)(nl - p);
		if (lineno == 1) {
			if (n != strlen(magic) || memcmp(p, magic, n) != 0) {
				st = st_error(ei, ST_DATAERR,
				    "not a bearmail %s file (bad first line)",
				    drop ? "maildrop" : "queue");
				goto fail;
			}
			p = nl + 1;
			continue;
		}
		if (n == 0)
			break;
		if ((sp = memchr(p, ' ', n)) == NULL || sp == p ||
		    sp + 1 == nl || !text_ok(p, n, SIZE_MAX)) {
			st = st_error(ei, ST_DATAERR,
			    "envelope line %zu: malformed", lineno);
			goto fail;
		}
		klen = (size_t)(sp - p);
		for (f = 0; f < FLD__COUNT; f++)
			if (strlen(fields[f].key) == klen &&
			    memcmp(fields[f].key, p, klen) == 0)
				break;
		if (f == FLD__COUNT || (drop && !fields[f].in_drop)) {
			st = st_error(ei, ST_DATAERR,
			    "envelope line %zu: unknown or forbidden field",
			    lineno);
			goto fail;
		}
		if (seen[f] && f != FLD_RCPT && f != FLD_REPLY) {
			st = st_error(ei, ST_DATAERR,
			    "envelope line %zu: duplicate field", lineno);
			goto fail;
		}
		seen[f] = true;
		st_clear(&sub);
		if ((st = parse_field(env, (enum fld)f, sp + 1,
		    (size_t)(nl - sp - 1), after_rcpt, &sub)) != ST_OK) {
			if (st == ST_SYS)
				st_error(ei, ST_SYS, "%s", sub.msg);
			else
				st = st_error(ei, ST_DATAERR, "envelope line "
				    "%zu: bad %s value", lineno,
				    fields[f].key);
			goto fail;
		}
		if (drop && f == FLD_RCPT &&
		    env->rcpts[env->nrcpts - 1].state != SPOOL_RCPT_PENDING) {
			st = st_error(ei, ST_DATAERR, "envelope line %zu: a "
			    "submitted recipient must be pending", lineno);
			goto fail;
		}
		after_rcpt = f == FLD_RCPT;
		p = nl + 1;
	}
	for (f = 0; f < FLD__COUNT; f++)
		if (fields[f].required && !seen[f] &&
		    (!drop || fields[f].in_drop)) {
			st = st_error(ei, ST_DATAERR,
			    "envelope lacks its %s field", fields[f].key);
			goto fail;
		}
	*hdrlen = (size_t)(nl + 1 - data);
	return ST_OK;
fail:
	spool_env_free(env);
	return st;
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
static enum status
open_checked(int dirfd, const char *name, uid_t owner, int *fd,
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
static enum status
read_env(int fd, off_t fsize, enum spool_fmt fmt, struct spool_env *env,
    size_t *hdrlen, struct errinfo *ei)
{
	struct buf b;
	enum status st;
	char chunk[16384];
	size_t want;
	ssize_t r;

	buf_init(&b, SPOOL_HDR_MAX);
	for (;;) {
		if (b.len >= 2 && memmem(b.data, b.len, "\n\n", 2) != NULL)
			break;
		if (b.len >= SPOOL_HDR_MAX)
			break;
		want = SPOOL_HDR_MAX - b.len;
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
	if ((st = spool_env_parse(b.data != NULL ? b.data : "", b.len, fmt,
	    env, hdrlen, ei)) != ST_OK)
		goto done;
	if (fsize != (off_t)*hdrlen + env->size) {
		spool_env_free(env);
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

	if ((chunk = malloc(COPY_CHUNK)) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	while (len > 0) {
		want = len > COPY_CHUNK ? COPY_CHUNK : (size_t)len;
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
		if ((st = write_all(out, chunk, (size_t)r, ei)) != ST_OK)
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
static enum status
write_file(struct spool *sp, const char *name, const struct spool_env *env,
    int srcfd, off_t srcoff, const void *mem, bool lock, int *fdp,
    size_t *hdrlen, bool *exists, struct errinfo *ei)
{
	struct buf hdr;
	enum status st;
	int fd = -1;

	*exists = false;
	buf_init(&hdr, SPOOL_HDR_MAX);
	if ((st = spool_env_format(env, SPOOL_FMT_QUEUE, &hdr, ei)) != ST_OK)
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
	if ((st = write_all(fd, hdr.data, hdr.len, ei)) != ST_OK)
		goto done;
	if (mem != NULL)
		st = write_all(fd, mem, (size_t)env->size, ei);
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
enqueue(struct spool *sp, struct spool_env *env, int fd, const void *mem,
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
	if (size > SPOOL_MSG_MAX)
		return st_error(ei, ST_LIMIT, "message of %lld octets is too "
		    "large for the queue", (long long)size);
	env->size = size;
	if (env->uid == (uid_t)-1)
		env->uid = getuid();
	for (tries = 0; tries < 64; tries++) {
		now_us(&now, &usec);
		env->created = now;
		if (env->next_try == 0)
			env->next_try = now;
		spool_id_make(env->id, now, usec);
		if (fstatat(sp->qfd, env->id, &st, AT_SYMLINK_NOFOLLOW) == 0)
			continue;
		if ((rc = write_file(sp, env->id, env, fd, start, mem, false,
		    NULL, NULL, &exists, ei)) != ST_OK) {
			if (exists)
				continue;
			return rc;
		}
		if (rename_noreplace(sp->tmpfd, env->id, sp->qfd, env->id)
		    != 0) {
			int e = errno;

			unlinkat(sp->tmpfd, env->id, 0);
			if (e == EEXIST)
				continue;
			errno = e;
			return st_errno(ei, ST_CANTCREAT, "rename into %s/q",
			    sp->path);
		}
		return sync_dir(sp->qfd, "q", ei);
	}
	env->id[0] = '\0';
	return st_error(ei, ST_CANTCREAT, "no free queue ID in %s", sp->path);
}

enum status
spool_enqueue_fd(struct spool *sp, struct spool_env *env, int fd,
    struct errinfo *ei)
{
	return enqueue(sp, env, fd, NULL, 0, ei);
}

enum status
spool_enqueue_mem(struct spool *sp, struct spool_env *env, const void *mem,
    size_t len, struct errinfo *ei)
{
	return enqueue(sp, env, -1, mem != NULL ? mem : "", len, ei);
}

/* ------------------------------------------------------------------ */
/* Scanning and listing                                                 */

void
spool_list_free(struct spool_list *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++)
		spool_env_free(&l->v[i].env);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static enum status
list_push(struct spool_list *l, size_t *cap, struct spool_entry **e,
    struct errinfo *ei)
{
	struct spool_entry *v;
	size_t ncap;

	if (l->n == *cap) {
		ncap = *cap == 0 ? 64 : *cap * 2;
		if ((v = realloc(l->v, ncap * sizeof(*v))) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
		l->v = v;
		*cap = ncap;
	}
	*e = &l->v[l->n];
	memset(*e, 0, sizeof(**e));
	spool_env_init(&(*e)->env);
	return ST_OK;
}

static int
entry_cmp(const void *a, const void *b)
{
	const struct spool_entry *x = a, *y = b;
	int c;

	if (x->drop != y->drop)
		return x->drop ? -1 : 1;
	if (!x->drop && (c = strcmp(x->env.account, y->env.account)) != 0)
		return c;
	return strcmp(x->env.id, y->env.id);
}

/* Read one q/ file's envelope; refusals are logged and skipped. */
static enum status
scan_one(struct spool *sp, const char *name, struct spool_env *env,
    bool *ok, struct errinfo *ei)
{
	struct errinfo sub;
	struct stat st;
	const char *why;
	enum status rc;
	size_t hdrlen;
	int fd;

	*ok = false;
	st_clear(&sub);
	rc = open_checked(sp->qfd, name, sp->owner, &fd, &st, &why, &sub);
	if (rc == ST_DATAERR) {
		log_warn("queue %s: refusing q/%s: %s", sp->path, name, why);
		return ST_OK;
	}
	if (rc != ST_OK)
		return st_error(ei, rc, "%s", sub.msg);
	if (fd < 0)
		return ST_OK;		/* delivered meanwhile */
	rc = read_env(fd, st.st_size, SPOOL_FMT_QUEUE, env, &hdrlen, &sub);
	close(fd);
	if (rc == ST_SYS)
		return st_error(ei, rc, "%s", sub.msg);
	if (rc != ST_OK) {
		log_warn("queue %s: skipping q/%s: %s", sp->path, name,
		    sub.msg);
		return ST_OK;
	}
	if (strcmp(env->id, name) != 0) {
		log_warn("queue %s: skipping q/%s: it says it is %s",
		    sp->path, name, env->id);
		spool_env_free(env);
		return ST_OK;
	}
	*ok = true;
	return ST_OK;
}

static enum status
scan_maildrop(struct spool *sp, struct spool_list *out, size_t *cap,
    struct errinfo *ei)
{
	struct spool_entry *e;
	struct dirent *de;
	struct stat st;
	enum status rc = ST_OK;
	DIR *d;
	int fd;

	if (sp->dropfd < 0 || (fd = dup(sp->dropfd)) < 0)
		return ST_OK;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return ST_OK;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (!spool_id_valid(de->d_name) ||
		    fstatat(sp->dropfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW)
		    != 0 || !S_ISREG(st.st_mode))
			continue;
		if ((rc = list_push(out, cap, &e, ei)) != ST_OK)
			break;
		e->drop = true;
		memcpy(e->env.id, de->d_name, SPOOL_ID_SIZE);
		e->env.uid = st.st_uid;
		e->env.created = st.st_mtime;
		e->env.size = st.st_size;
		out->n++;
	}
	closedir(d);
	return rc;
}

enum status
spool_scan(struct spool *sp, time_t now, unsigned flags,
    struct spool_list *out, struct errinfo *ei)
{
	struct spool_entry *e;
	struct dirent *de;
	enum status rc = ST_OK;
	size_t cap = 0;
	bool ok;
	DIR *d;
	int fd;

	out->v = NULL;
	out->n = 0;
	if ((flags & SPOOL_SCAN_MAILDROP) &&
	    (rc = scan_maildrop(sp, out, &cap, ei)) != ST_OK)
		goto fail;
	if ((fd = dup(sp->qfd)) < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		rc = st_errno(ei, ST_SYS, "read %s/q", sp->path);
		goto fail;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (!spool_id_valid(de->d_name)) {
			log_warn("queue %s: ignoring q/%s: not a queue ID",
			    sp->path, de->d_name);
			continue;
		}
		if ((rc = list_push(out, &cap, &e, ei)) != ST_OK)
			break;
		if ((rc = scan_one(sp, de->d_name, &e->env, &ok, ei)) != ST_OK)
			break;
		if (!ok)
			continue;
		if ((flags & SPOOL_SCAN_DUE) && e->env.next_try > now &&
		    spool_pending(&e->env) > 0) {
			spool_env_free(&e->env);
			continue;
		}
		out->n++;
	}
	closedir(d);
	if (rc != ST_OK)
		goto fail;
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), entry_cmp);
	return ST_OK;
fail:
	spool_list_free(out);
	return rc;
}

static const char *const wday_names[] = {
	"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
};
static const char *const mon_names[] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

/* asctime()'s first 20 characters, in English whatever the locale. */
static void
list_time(time_t t, char out[32])
{
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL) {
		snprintf(out, 32, "%-20s", "??");
		return;
	}
	snprintf(out, 32, "%.3s %.3s%3d %.2d:%.2d:%.2d ",
	    wday_names[tm.tm_wday % 7], mon_names[tm.tm_mon % 12], tm.tm_mday,
	    tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * Postfix's showq layout for short queue IDs: the heading, per message
 * a line "ID size arrival sender", then for each pending recipient its
 * reason in parentheses when it differs from the previous one (right
 * aligned to column 78) and the address indented by 41.
 */
#define LIST_STRING	"%-11s %7s %-20s %s\n"
#define LIST_SENDER	"%-11s %7lld %20.20s %s\n"

enum status
spool_list_format(const struct spool_list *l, struct buf *out,
    struct errinfo *ei)
{
	unsigned long long total = 0;
	const struct spool_env *env;
	const char *saved, *why, *show;
	char when[32], drop[64];
	enum status st;
	size_t i, j;
	int pad;

	if (l->n == 0)
		return buf_adds(out, "Mail queue is empty\n", ei);
	for (i = 0; i < l->n; i++) {
		env = &l->v[i].env;
		if (i == 0)
			st = buf_printf(out, ei, LIST_STRING, "-Queue ID-",
			    "--Size--", "----Arrival Time----",
			    "-Sender/Recipient-------");
		else
			st = buf_adds(out, "\n", ei);
		if (st != ST_OK)
			return st;
		list_time(env->created, when);
		total += (unsigned long long)env->size;
		if (l->v[i].drop) {
			snprintf(drop, sizeof(drop), "(maildrop queue, sender "
			    "UID %lu)", (unsigned long)env->uid);
			if ((st = buf_printf(out, ei, LIST_SENDER, env->id,
			    (long long)env->size, when, drop)))
				return st;
			continue;
		}
		if ((st = buf_printf(out, ei, LIST_SENDER, env->id,
		    (long long)env->size, when, *env->sender == '\0' ?
		    "MAILER-DAEMON" : env->sender)))
			return st;
		saved = "";
		for (j = 0; j < env->nrcpts; j++) {
			if (env->rcpts[j].state != SPOOL_RCPT_PENDING)
				continue;
			why = env->rcpts[j].reply;
			if (why == NULL)
				why = env->last_error;
			if (why == NULL)
				why = "";
			if (strcmp(saved, why) != 0) {
				saved = why;
				show = *why != '\0' ? why : "reason unavailable";
				pad = 76 - (int)strlen(show);
				if ((st = buf_printf(out, ei, "%*s(%s)\n",
				    pad > 0 ? pad : 0, "", show)))
					return st;
			}
			if ((st = buf_printf(out, ei, LIST_STRING, "", "", "",
			    env->rcpts[j].addr)))
				return st;
		}
	}
	return buf_printf(out, ei, "\n-- %llu Kbytes in %zu Request%s.\n",
	    total / 1024, l->n, l->n == 1 ? "" : "s");
}

enum status
spool_listing(struct spool *sp, struct buf *out, struct errinfo *ei)
{
	struct spool_list l;
	enum status st;

	if ((st = spool_scan(sp, 0, SPOOL_SCAN_MAILDROP, &l, ei)) != ST_OK)
		return st;
	st = spool_list_format(&l, out, ei);
	spool_list_free(&l);
	return st;
}

/* ------------------------------------------------------------------ */
/* Claimed messages                                                     */

struct spool_env *
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
	spool_env_free(&m->env);
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
	if (!spool_id_valid(id))
		return st_error(ei, ST_USAGE, "not a queue ID: %.40s", id);
	st_clear(&sub);
	rc = open_checked(sp->qfd, id, sp->owner, &fd, &st, &why, &sub);
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
	spool_env_init(&m->env);
	if ((rc = read_env(fd, st.st_size, SPOOL_FMT_QUEUE, &m->env,
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
spool_rcpt_set(struct spool_msg *m, size_t i, enum spool_rcpt_state state,
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
set_last_error(struct spool_env *env, const char *reason, struct errinfo *ei)
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
		struct spool_rcpt *r = &m->env.rcpts[i];

		if (r->state != SPOOL_RCPT_PENDING)
			continue;
		r->state = SPOOL_RCPT_FAILED;
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
	char name[SPOOL_ID_SIZE + 8];
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
		rc = write_file(sp, name, &m->env, m->fd, (off_t)m->hdrlen,
		    NULL, true, &fd, &hdrlen, &exists, ei);
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
	return sync_dir(sp->qfd, "q", ei);
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
	if (spool_pending(&m->env) > 0)
		return st_error(ei, ST_USAGE, "q/%s still has recipients to "
		    "send to", m->env.id);
	/* failed/ keeps the final states: they must be on disk. */
	if (m->dirty && spool_failed(&m->env) > 0 &&
	    (st = spool_commit(m, ei)) != ST_OK)
		return st;
	if (spool_failed(&m->env) == 0) {
		if (unlinkat(sp->qfd, m->env.id, 0) != 0 && errno != ENOENT)
			return st_errno(ei, ST_CANTCREAT, "remove q/%s",
			    m->env.id);
	} else {
		if (renameat(sp->qfd, m->env.id, sp->failedfd, m->env.id) != 0)
			return st_errno(ei, ST_CANTCREAT, "move q/%s to "
			    "failed/", m->env.id);
		if ((st = sync_dir(sp->failedfd, "failed", ei)) != ST_OK)
			return st;
	}
	m->gone = true;
	return sync_dir(sp->qfd, "q", ei);
}

/* ------------------------------------------------------------------ */
/* Failure notices (RFC 3464, RFC 3462/6522 multipart/report)           */

static enum status
rfc5322_date(struct buf *out, time_t t, struct errinfo *ei)
{
	struct tm tm;
	long off;

	if (localtime_r(&t, &tm) == NULL)
		return st_error(ei, ST_SYS, "bad time");
	off = tm.tm_gmtoff / 60;
	return buf_printf(out, ei, "%s, %d %s %d %.2d:%.2d:%.2d %c%.2ld%.2ld",
	    wday_names[tm.tm_wday % 7], tm.tm_mday, mon_names[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    off < 0 ? '-' : '+', (off < 0 ? -off : off) / 60,
	    (off < 0 ? -off : off) % 60);
}

static void
age_text(time_t age, char *out, size_t outsz)
{
	long long v = (long long)age;
	const char *unit = "second";

	if (v > 0 && v % 86400 == 0) {
		v /= 86400;
		unit = "day";
	} else if (v > 0 && v % 3600 == 0) {
		v /= 3600;
		unit = "hour";
	} else if (v > 0 && v % 60 == 0) {
		v /= 60;
		unit = "minute";
	}
	snprintf(out, outsz, "%lld %s%s", v, unit, v == 1 ? "" : "s");
}

static bool
has_8bit(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* A refusal for good: an SMTP reply "5xy ...". */
static bool
reply_permanent(const char *r)
{
	return r != NULL && r[0] == '5' && r[1] >= '0' && r[1] <= '9' &&
	    r[2] >= '0' && r[2] <= '9' && (r[3] == ' ' || r[3] == '\0');
}

static bool
reply_is_smtp(const char *r)
{
	return r != NULL && r[0] >= '2' && r[0] <= '5' && r[1] >= '0' &&
	    r[1] <= '9' && r[2] >= '0' && r[2] <= '9' &&
	    (r[3] == ' ' || r[3] == '\0');
}

/* RFC 3463 status for a failed recipient. */
static void
rcpt_status(const char *reply, char out[16])
{
	const char *p;
	size_t n = 0;

	if (!reply_permanent(reply)) {
		/* Given up on while it was only ever deferred. */
		snprintf(out, 16, "4.4.7");
		return;
	}
	p = reply[3] == ' ' ? reply + 4 : reply + 3;
	/* "5.d{1,3}.d{1,3}" after the code, as RFC 2034 puts it. */
	if (p[0] == '5' && p[1] == '.') {
		size_t i = 2, a = 0, b = 0;

		while (p[i] >= '0' && p[i] <= '9' && a < 4)
			i++, a++;
		if (a >= 1 && a <= 3 && p[i] == '.') {
			i++;
			while (p[i] >= '0' && p[i] <= '9' && b < 4)
				i++, b++;
			if (b >= 1 && b <= 3 && (p[i] == ' ' || p[i] == '\0'))
				n = i;
		}
	}
	if (n > 0 && n < 16)
		snprintf(out, 16, "%.*s", (int)n, p);
	else
		snprintf(out, 16, "5.0.0");
}

enum status
spool_notice(const struct spool_env *orig, const char *msg, size_t len,
    bool complete, const struct spool_notice_opts *o, struct spool_env *nenv,
    struct buf *out, bool *none, struct errinfo *ei)
{
	const char *to, *domain, *part, *why, *ctype;
	char bnd[160], status[16], age[64];
	size_t partlen, i, k;
	const char *e;
	struct buf b;
	enum status st;
	bool full, expired = false, eight;

	*none = true;
	spool_env_free(nenv);
	to = o->to != NULL && *o->to != '\0' ? o->to : orig->sender;
	if (spool_failed(orig) == 0 || orig->sender == NULL ||
	    *orig->sender == '\0' || to == NULL || *to == '\0' ||
	    (orig->notify != 0 && !(orig->notify & SPOOL_NOTIFY_FAILURE)))
		return ST_OK;
	domain = o->domain != NULL && text_ok(o->domain, strlen(o->domain),
	    255) && strchr(o->domain, ' ') == NULL ? o->domain : "localhost";

	/* What goes back: the header section, or all with RET=FULL. */
	full = orig->ret == SPOOL_RET_FULL && complete;
	if (msg == NULL)
		len = 0;
	part = msg != NULL ? msg : "";
	partlen = len;
	if (!full) {
		if ((e = memmem(part, partlen, "\r\n\r\n", 4)) != NULL)
			partlen = (size_t)(e - part) + 2;
		else if (!complete) {
			/* Cut at the last whole line. */
			while (partlen > 0 && !(partlen >= 2 &&
			    part[partlen - 2] == '\r' &&
			    part[partlen - 1] == '\n'))
				partlen--;
		}
	}
	snprintf(bnd, sizeof(bnd), "%s.%lld/%s", orig->id,
	    (long long)o->now, domain);
	for (k = 1; memmem(part, partlen, bnd, strlen(bnd)) != NULL; k++)
		snprintf(bnd, sizeof(bnd), "%s.%lld.%zu/%s", orig->id,
		    (long long)o->now, k, domain);
	for (i = 0; i < orig->nrcpts; i++)
		if (orig->rcpts[i].state == SPOOL_RCPT_FAILED &&
		    !reply_permanent(orig->rcpts[i].reply))
			expired = true;
	age_text(o->max_age, age, sizeof(age));
	ctype = full ? "message/rfc822" : "text/rfc822-headers";
	/* 8-bit anywhere: say so in the header and in BODY=. */
	eight = has_8bit(part, partlen) || has_8bit(to, strlen(to)) ||
	    (orig->last_error != NULL &&
	    has_8bit(orig->last_error, strlen(orig->last_error)));
	for (i = 0; i < orig->nrcpts; i++)
		if (orig->rcpts[i].state == SPOOL_RCPT_FAILED &&
		    (has_8bit(orig->rcpts[i].addr,
		    strlen(orig->rcpts[i].addr)) ||
		    (orig->rcpts[i].reply != NULL &&
		    has_8bit(orig->rcpts[i].reply,
		    strlen(orig->rcpts[i].reply)))))
			eight = true;

	buf_init(&b, (size_t)SPOOL_MSG_MAX);
	if ((st = buf_printf(&b, ei,
	    "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n"
	    "To: <%s>\r\n"
	    "Subject: Undelivered Mail Returned to Sender\r\n"
	    "Date: ", domain, to)) ||
	    (st = rfc5322_date(&b, o->now, ei)) ||
	    (st = buf_printf(&b, ei, "\r\n"
	    "Message-ID: <notice.%s.%lld@%s>\r\n"
	    "Auto-Submitted: auto-replied\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n"
	    "%s"
	    "\r\n"
	    "This is a MIME-encapsulated message.\r\n"
	    "\r\n"
	    "--%s\r\n"
	    "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "\r\n"
	    "This is bearmail at %s.\r\n"
	    "\r\n"
	    "Your message could not be delivered to one or more of its\r\n"
	    "recipients, listed below with the reason.\r\n",
	    orig->id, (long long)o->now, domain, bnd,
	    eight ? "Content-Transfer-Encoding: 8bit\r\n" : "", bnd, domain)))
		goto fail;
	if (expired && (st = buf_printf(&b, ei, "It stayed in the queue "
	    "for %s without being delivered.\r\n", age)))
		goto fail;
	if ((st = buf_adds(&b, "\r\n", ei)))
		goto fail;
	for (i = 0; i < orig->nrcpts; i++) {
		const struct spool_rcpt *r = &orig->rcpts[i];

		if (r->state != SPOOL_RCPT_FAILED)
			continue;
		why = r->reply != NULL ? r->reply : orig->last_error;
		if ((st = buf_printf(&b, ei, "<%s>: %s\r\n", r->addr,
		    why != NULL ? why : "no reason recorded")))
			goto fail;
	}
	if ((st = buf_printf(&b, ei, "\r\n%s\r\n\r\n--%s\r\n"
	    "Content-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n"
	    "\r\n"
	    "Reporting-MTA: dns; %s\r\n"
	    "X-Bearmail-Queue-ID: %s\r\n",
	    full ? "Your message follows as the last part of this report." :
	    "The header of your message follows as the last part of this "
	    "report.", bnd, domain, orig->id)))
		goto fail;
	if (orig->envid != NULL &&
	    (st = buf_printf(&b, ei, "Original-Envelope-Id: %s\r\n",
	    orig->envid)))
		goto fail;
	if ((st = buf_adds(&b, "Arrival-Date: ", ei)) ||
	    (st = rfc5322_date(&b, orig->created, ei)) ||
	    (st = buf_adds(&b, "\r\n", ei)))
		goto fail;
	for (i = 0; i < orig->nrcpts; i++) {
		const struct spool_rcpt *r = &orig->rcpts[i];

		if (r->state != SPOOL_RCPT_FAILED)
			continue;
		rcpt_status(r->reply, status);
		if ((st = buf_printf(&b, ei, "\r\n"
		    "Final-Recipient: %s; %s\r\n"
		    "Action: failed\r\n"
		    "Status: %s\r\n",
		    has_8bit(r->addr, strlen(r->addr)) ? "utf-8" : "rfc822",
		    r->addr, status)))
			goto fail;
		why = r->reply != NULL ? r->reply : orig->last_error;
		if (why != NULL && (st = buf_printf(&b, ei,
		    "Diagnostic-Code: %s; %s\r\n",
		    reply_is_smtp(why) ? "smtp" : "X-bearmail", why)))
			goto fail;
	}
	if ((st = buf_printf(&b, ei, "\r\n--%s\r\n"
	    "Content-Description: %s\r\n"
	    "Content-Type: %s\r\n"
	    "\r\n", bnd, full ? "Undelivered Message" :
	    "Undelivered Message Headers", ctype)) ||
	    (st = buf_add(&b, part, partlen, ei)))
		goto fail;
	if (partlen > 0 && part[partlen - 1] != '\n' &&
	    (st = buf_adds(&b, "\r\n", ei)))
		goto fail;
	if ((st = buf_printf(&b, ei, "\r\n--%s--\r\n", bnd)))
		goto fail;

	if ((st = spool_env_set(nenv, orig->account, "", ei)) ||
	    (st = spool_env_add_rcpt(nenv, to, ei)))
		goto fail;
	nenv->body = eight ? SPOOL_BODY_8BITMIME : SPOOL_BODY_7BIT;
	nenv->smtputf8 = orig->smtputf8 || has_8bit(to, strlen(to));
	if ((st = buf_add(out, b.data, b.len, ei)))
		goto fail;
	nenv->size = (off_t)b.len;
	*none = false;
	buf_free(&b);
	return ST_OK;
fail:
	buf_free(&b);
	spool_env_free(nenv);
	return st;
}

/* ------------------------------------------------------------------ */
/* The maildrop                                                         */

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
spool_drop(int dropfd, int in, int timeout, char id[SPOOL_ID_SIZE],
    struct errinfo *ei)
{
	struct spool_env env;
	struct buf b, hdr;
	char tmp[SPOOL_ID_SIZE + 1], *chunk = NULL;
	enum status st;
	size_t hdrlen, got, want;
	off_t have;
	time_t now;
	long usec;
	int fd = -1, tries;

	id[0] = '\0';
	tmp[0] = '\0';
	spool_env_init(&env);
	buf_init(&b, SPOOL_HDR_MAX);
	buf_init(&hdr, SPOOL_HDR_MAX);
	if ((chunk = malloc(COPY_CHUNK)) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto done;
	}

	/* The envelope, whole and valid, before anything is written. */
	while (b.len < 2 || memmem(b.data, b.len, "\n\n", 2) == NULL) {
		if (b.len >= SPOOL_HDR_MAX) {
			st = st_error(ei, ST_LIMIT, "envelope larger than %d "
			    "octets", SPOOL_HDR_MAX);
			goto done;
		}
		want = SPOOL_HDR_MAX - b.len;
		if (want > 16384)
			want = 16384;
		if ((st = read_some(in, chunk, want, timeout, &got, ei)))
			goto done;
		if (got == 0)
			break;
		if ((st = buf_add(&b, chunk, got, ei)) != ST_OK)
			goto done;
	}
	if ((st = spool_env_parse(b.data != NULL ? b.data : "", b.len,
	    SPOOL_FMT_DROP, &env, &hdrlen, ei)) != ST_OK)
		goto done;
	have = (off_t)(b.len - hdrlen);
	if (have > env.size) {
		st = st_error(ei, ST_DATAERR, "more message than its size");
		goto done;
	}
	if ((st = spool_env_format(&env, SPOOL_FMT_DROP, &hdr, ei)) != ST_OK)
		goto done;

	for (tries = 0; fd < 0; tries++) {
		if (tries == 64) {
			st = st_error(ei, ST_CANTCREAT, "no free maildrop name");
			goto done;
		}
		now_us(&now, &usec);
		spool_id_make(id, now, usec);
		tmp[0] = '.';
		memcpy(tmp + 1, id, SPOOL_ID_SIZE);
		if ((fd = openat(dropfd, tmp, O_WRONLY | O_CREAT | O_EXCL |
		    O_NOFOLLOW | O_CLOEXEC, 0644)) < 0 && errno != EEXIST) {
			tmp[0] = '\0';
			st = st_errno(ei, ST_CANTCREAT, "create in the maildrop");
			goto done;
		}
	}
	if ((st = write_all(fd, hdr.data, hdr.len, ei)) ||
	    (st = write_all(fd, b.data + hdrlen, (size_t)have, ei)))
		goto done;
	while (have < env.size) {
		want = COPY_CHUNK;
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
		if ((st = write_all(fd, chunk, got, ei)) != ST_OK)
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
		if (rename_noreplace(dropfd, tmp, dropfd, id) == 0)
			break;
		if (errno != EEXIST || tries == 64) {
			st = st_errno(ei, ST_CANTCREAT, "rename in the maildrop");
			goto done;
		}
		now_us(&now, &usec);
		spool_id_make(id, now, usec);
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
	spool_env_free(&env);
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
already_imported(struct spool *sp, const struct spool_env *env)
{
	struct spool_env q;
	struct stat st;
	const char *why;
	size_t hdrlen;
	bool same = false;
	int fd;

	if (open_checked(sp->qfd, env->id, sp->owner, &fd, &st, &why,
	    NULL) != ST_OK || fd < 0)
		return false;
	spool_env_init(&q);
	if (read_env(fd, st.st_size, SPOOL_FMT_QUEUE, &q, &hdrlen, NULL) ==
	    ST_OK)
		same = q.uid == env->uid && q.created == env->created &&
		    q.size == env->size && q.nrcpts == env->nrcpts &&
		    strcmp(q.sender, env->sender) == 0 &&
		    strcmp(q.account, env->account) == 0;
	spool_env_free(&q);
	close(fd);
	return same;
}

static enum status
import_one(struct spool *sp, const char *name, time_t now, bool *done,
    struct errinfo *ei)
{
	char tmp[SPOOL_ID_SIZE + 8];
	struct spool_env env;
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
	spool_env_init(&env);
	st_clear(&sub);
	rc = open_checked(sp->dropfd, name, (uid_t)-1, &fd, &st, &why, &sub);
	if (rc == ST_DATAERR) {
		drop_reject(sp, name, why);
		return ST_OK;
	}
	if (rc != ST_OK)
		return st_error(ei, rc, "%s", sub.msg);
	if (fd < 0)
		return ST_OK;
	if (st.st_size > (off_t)SPOOL_HDR_MAX + SPOOL_MSG_MAX) {
		drop_reject(sp, name, "too large");
		goto out;
	}
	rc = read_env(fd, st.st_size, SPOOL_FMT_DROP, &env, &hdrlen, &sub);
	if (rc == ST_SYS) {
		rc = st_error(ei, rc, "maildrop/%s: %s", name, sub.msg);
		goto out;
	}
	if (rc != ST_OK) {
		drop_reject(sp, name, sub.msg);
		rc = ST_OK;
		goto out;
	}
	memcpy(env.id, name, SPOOL_ID_SIZE);
	env.uid = st.st_uid;
	env.created = st.st_mtime < now ? st.st_mtime : now;
	env.attempts = 0;
	env.next_try = env.created;

	for (tries = 0;; tries++) {
		snprintf(tmp, sizeof(tmp), "%s.imp", env.id);
		rc = write_file(sp, tmp, &env, fd, (off_t)hdrlen, NULL, false,
		    NULL, NULL, &exists, ei);
		if (rc != ST_OK) {
			if (!exists || tries > 64)
				goto out;
			/* A killed import left it: ours to replace. */
			unlinkat(sp->tmpfd, tmp, 0);
			continue;
		}
		if (rename_noreplace(sp->tmpfd, tmp, sp->qfd, env.id) == 0)
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
		now_us(&t, &usec);
		spool_id_make(env.id, t, usec);
	}
	if (!again) {
		if ((rc = sync_dir(sp->qfd, "q", ei)) != ST_OK)
			goto out;
		log_info("%s: uid=%lu from=<%s> nrcpt=%zu size=%lld (queued "
		    "from the maildrop)", env.id, (unsigned long)env.uid,
		    env.sender, env.nrcpts, (long long)env.size);
	}
	if (unlinkat(sp->dropfd, name, 0) != 0) {
		rc = st_errno(ei, ST_CANTCREAT, "remove maildrop/%s", name);
		goto out;
	}
	rc = sync_dir(sp->dropfd, "maildrop", ei);
	*done = rc == ST_OK && !again;
out:
	if (fd >= 0)
		close(fd);
	spool_env_free(&env);
	return rc;
}

/* The names in dirfd, read before anything in it changes. */
static enum status
dir_names(int dirfd, char ***names, size_t *n, struct errinfo *ei)
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

static void
names_free(char **v, size_t n)
{
	while (n > 0)
		free(v[--n]);
	free(v);
}

/* Remove entries of dirfd older than a day (with dots: dot-files only). */
static void
remove_stale(int dirfd, char **v, size_t n, time_t now, bool dots)
{
	struct stat st;
	size_t i;

	for (i = 0; i < n; i++) {
		if (dots && v[i][0] != '.')
			continue;
		if (fstatat(dirfd, v[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    !S_ISDIR(st.st_mode) && st.st_mtime < now - STALE_AGE)
			unlinkat(dirfd, v[i], 0);
	}
}

enum status
spool_import_maildrop(struct spool *sp, time_t now, size_t *imported,
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
	if ((rc = dir_names(sp->dropfd, &v, &n, ei)) != ST_OK)
		return rc;
	remove_stale(sp->dropfd, v, n, now, true);
	for (i = 0; i < n; i++) {
		if (v[i][0] == '.')
			continue;
		if (!spool_id_valid(v[i])) {
			log_warn("queue %s: ignoring maildrop/%s: not a queue "
			    "ID", sp->path, v[i]);
			continue;
		}
		if ((rc = import_one(sp, v[i], now, &done, ei)) != ST_OK)
			break;
		if (done)
			count++;
	}
	names_free(v, n);
	if (imported != NULL)
		*imported = count;
	return rc;
}

enum status
spool_cleanup(struct spool *sp, time_t now, struct errinfo *ei)
{
	enum status rc;
	char **v;
	size_t n;

	if (sp->rdonly || sp->tmpfd < 0)
		return st_error(ei, ST_CANTCREAT, "queue opened read-only");
	if ((rc = dir_names(sp->tmpfd, &v, &n, ei)) != ST_OK)
		return rc;
	remove_stale(sp->tmpfd, v, n, now, false);
	names_free(v, n);
	return ST_OK;
}

/* Milliseconds left until deadline (CLOCK_MONOTONIC seconds), >= 0. */
static int
ms_left(const struct timespec *deadline)
{
	struct timespec now;
	long long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(deadline->tv_sec - now.tv_sec) * 1000 +
	    (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms < 0 ? 0 : ms > 3600000 ? 3600000 : (int)ms;
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
		clock_gettime(CLOCK_MONOTONIC, &dl);
		dl.tv_sec += timeout;
		pfd.fd = s;
		pfd.events = POLLOUT;
		if ((pr = poll(&pfd, 1, ms_left(&dl))) < 0) {
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
spool_submit_drop(const char *prog, struct spool_env *env, int fd,
    int timeout, char id[SPOOL_ID_SIZE], struct errinfo *ei)
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
	buf_init(&hdr, SPOOL_HDR_MAX);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (off = lseek(fd, 0, SEEK_CUR)) < 0) {
		rc = st_error(ei, ST_SYS, "message to queue is not a regular "
		    "file");
		goto done;
	}
	end = st.st_size;
	env->size = end - off;
	if ((rc = spool_env_format(env, SPOOL_FMT_DROP, &hdr, ei)) != ST_OK)
		goto done;
	if ((chunk = malloc(COPY_CHUNK)) == NULL) {
		rc = st_errno(ei, ST_SYS, "out of memory");
		goto done;
	}
	envp[0] = envp[1] = NULL;
	if ((dirvar = getenv(SPOOL_DROP_DIR_ENV)) != NULL &&
	    (size_t)snprintf(envvar, sizeof(envvar), "%s=%s",
	    SPOOL_DROP_DIR_ENV, dirvar) < sizeof(envvar))
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
		if ((r = pread(fd, chunk, COPY_CHUNK, off)) < 0) {
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
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout;
	for (;;) {
		pfd.fd = po[0];
		pfd.events = POLLIN;
		if ((pr = poll(&pfd, 1, ms_left(&dl))) < 0 && errno == EINTR)
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
	    spool_id_valid(out)) {
		memcpy(id, out, SPOOL_ID_SIZE);
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
