/*
 * token.c: the token store.
 *
 * On-disk format of STATE_DIR/tokens/ACCOUNT.token (mode 0600, owned by
 * the user whose programs use it, in a 0700 directory):
 *
 *	bearmail-token 1
 *	user alice@example.com
 *	access_token ya29.a0Af...
 *	expires 1764162000
 *	obtained 1764158401
 *	refresh_token 1//0gxyz...
 *	authorized 1764000000
 *	scope https://mail.google.com/
 *
 * - The first line is the magic and version, exactly as above.
 * - Every other line is KEY, one space, VALUE, LF.  No CR, no NUL, no
 *   line longer than TOKEN_VALUE_MAX plus the key.  A key appears at most
 *   once; every key is optional.  Unknown keys are ignored (and dropped
 *   when the file is rewritten), so a newer version may add some.
 * - Tokens are printable ASCII without spaces; the scope is printable
 *   ASCII where spaces separate scopes.
 * - expires, obtained and authorized are seconds since the Epoch (UTC),
 *   decimal.  expires is the local time the access token was received
 *   plus the endpoint's expires_in, so a skewed local clock does not
 *   matter; 0 or absent means unknown (treated as expired).
 * - The whole file is at most TOKEN_FILE_MAX bytes.
 *
 * Next to it: ACCOUNT.lock, an empty file locked with flock(2) by
 * writers, and ACCOUNT.tmp, the next version while it is written (a
 * leftover from a killed writer is harmless and replaced next time).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "token.h"
#include "xio.h"

#define TOKEN_MAGIC	"bearmail-token 1"

/* *out = "A/BSUFFIX", malloc'd. */
static enum status
token_join(char **out, const char *a, const char *b, const char *suffix,
    struct errinfo *ei)
{
	struct buf p;
	enum status st;

	if (strlen(a) + strlen(b) + strlen(suffix) + 2 > PATH_MAX)
		return st_error(ei, ST_CONFIG, "%.64s...: path too long", a);
	buf_init(&p, PATH_MAX);
	if ((st = buf_printf(&p, ei, "%s/%s%s", a, b, suffix)) == ST_OK &&
	    (*out = buf_steal(&p, ei)) == NULL)
		st = ST_SYS;	/* buf_steal() recorded why */
	buf_free(&p);
	return st;
}

/* mkdir -p with mode 0700 for what we create. */
static enum status
token_mkdirs(const char *path, struct errinfo *ei)
{
	char tmp[PATH_MAX];
	size_t n, i;

	n = strlen(path);
	if (n == 0 || n >= sizeof(tmp))
		return st_error(ei, ST_CONFIG, "bad state_dir \"%s\"", path);
	memcpy(tmp, path, n + 1);
	for (i = 1; i <= n; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, 0700) == -1 && errno != EEXIST)
			return st_errno(ei, ST_CANTCREAT, "mkdir %s", tmp);
		tmp[i] = path[i];
	}
	return ST_OK;
}

/* The tokens directory: ours, a directory, closed to group and others. */
static enum status
token_check_dir(const char *dir, struct errinfo *ei)
{
	struct stat sb;

	if (lstat(dir, &sb) == -1)
		return st_errno(ei, ST_CANTCREAT, "%s", dir);
	if (!S_ISDIR(sb.st_mode))
		return st_error(ei, ST_CONFIG, "%s is not a directory", dir);
	if (sb.st_uid != geteuid())
		return st_error(ei, ST_CONFIG,
		    "%s is owned by uid %u, not by uid %u: refused", dir,
		    (unsigned)sb.st_uid, (unsigned)geteuid());
	if ((sb.st_mode & 077) != 0)
		return st_error(ei, ST_CONFIG,
		    "%s is open to group or others: run chmod 700 %s", dir, dir);
	return ST_OK;
}

enum status
token_store_open(struct token_store *ts, const char *state_dir,
    const char *account, bool create, struct errinfo *ei)
{
	enum status st;
	struct stat sb;

	memset(ts, 0, sizeof(*ts));
	ts->lockfd = -1;
	if (state_dir == NULL || *state_dir == '\0')
		return st_error(ei, ST_CONFIG, "state_dir is not set");
	if (*account == '\0' || *account == '.' || strchr(account, '/') != NULL)
		return st_error(ei, ST_CONFIG,
		    "account name \"%s\" cannot name a token file", account);
	/* The status of the call that failed, not whatever ei held before. */
	if ((st = token_join(&ts->dir, state_dir, "tokens", "", ei)) !=
	    ST_OK ||
	    (st = token_join(&ts->path, ts->dir, account, ".token", ei)) !=
	    ST_OK ||
	    (st = token_join(&ts->lockpath, ts->dir, account, ".lock", ei)) !=
	    ST_OK ||
	    (st = token_join(&ts->tmppath, ts->dir, account, ".tmp", ei)) !=
	    ST_OK)
		goto fail;
	if (create && (st = token_mkdirs(ts->dir, ei)) != ST_OK)
		goto fail;
	if (!create && lstat(ts->dir, &sb) == -1 && errno == ENOENT)
		return ST_OK;
	if ((st = token_check_dir(ts->dir, ei)) != ST_OK)
		goto fail;
	return ST_OK;
fail:
	token_store_close(ts);
	return st;
}

void
token_store_close(struct token_store *ts)
{
	token_unlock(ts);
	free(ts->dir);
	free(ts->path);
	free(ts->lockpath);
	free(ts->tmppath);
	ts->dir = ts->path = ts->lockpath = ts->tmppath = NULL;
}

enum status
token_lock(struct token_store *ts, int timeout, struct errinfo *ei)
{
	struct timespec end;
	enum status st;
	int fd, delay = 2;

	if (ts->lockfd >= 0)
		return ST_OK;
	if ((st = token_mkdirs(ts->dir, ei)) != ST_OK ||
	    (st = token_check_dir(ts->dir, ei)) != ST_OK)
		return st;
	fd = open(ts->lockpath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
	    0600);
	if (fd == -1)
		return st_errno(ei, errno == ELOOP ? ST_CONFIG : ST_CANTCREAT,
		    "%s", ts->lockpath);
	end = xio_deadline_ms((timeout > 0 ? timeout : 1) * 1000L);
	/*
	 * flock(2) cannot wait with a deadline and we use no signals, so
	 * poll the lock with a short, growing pause.  The holder keeps it
	 * for one HTTP request, a few milliseconds on a good day.
	 */
	while (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			st_errno(ei, ST_SYS, "lock %s", ts->lockpath);
			close(fd);
			return ST_SYS;
		}
		if (xio_expired(&end)) {
			close(fd);
			return st_error(ei, ST_TIMEOUT,
			    "%s is still locked after %d seconds",
			    ts->lockpath, timeout);
		}
		poll(NULL, 0, delay);
		if (delay < 100)
			delay *= 2;
	}
	ts->lockfd = fd;
	return ST_OK;
}

void
token_unlock(struct token_store *ts)
{
	if (ts->lockfd < 0)
		return;
	/* Closing the descriptor releases the flock. */
	close(ts->lockfd);
	ts->lockfd = -1;
}

bool
token_valid_value(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
			return false;
	return n > 0 && n <= TOKEN_VALUE_MAX;
}

static bool
token_valid_scope(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] >= 0x7f)
			return false;
	return n > 0 && n <= TOKEN_VALUE_MAX;
}

static enum status
token_put(struct buf *out, const char *key, const char *val, bool scope,
    struct errinfo *ei)
{
	if (val == NULL)
		return ST_OK;
	if (!(scope ? token_valid_scope(val) : token_valid_value(val)))
		return st_error(ei, ST_PROTO,
		    "%s of %zu bytes holds bytes that cannot be stored", key,
		    strlen(val));
	return buf_printf(out, ei, "%s %s\n", key, val);
}

static enum status
token_put_time(struct buf *out, const char *key, time_t t,
    struct errinfo *ei)
{
	if (t <= 0)
		return ST_OK;
	return buf_printf(out, ei, "%s %jd\n", key, (intmax_t)t);
}

enum status
token_format(const struct token *tok, struct buf *out, struct errinfo *ei)
{
	enum status st;

	buf_set_secret(out);
	if ((st = buf_adds(out, TOKEN_MAGIC "\n", ei)) != ST_OK ||
	    (st = token_put(out, "user", tok->user, false, ei)) != ST_OK ||
	    (st = token_put(out, "access_token", tok->access_token, false,
	    ei)) != ST_OK ||
	    (st = token_put_time(out, "expires", tok->expires, ei)) != ST_OK ||
	    (st = token_put_time(out, "obtained", tok->obtained, ei)) != ST_OK ||
	    (st = token_put(out, "refresh_token", tok->refresh_token, false,
	    ei)) != ST_OK ||
	    (st = token_put_time(out, "authorized", tok->authorized, ei)) !=
	    ST_OK ||
	    (st = token_put(out, "scope", tok->scope, true, ei)) != ST_OK)
		return st;
	return ST_OK;
}

static enum status
token_set_str(char **dst, const char *key, const char *val, bool scope,
    struct errinfo *ei)
{
	if (*dst != NULL)
		return st_error(ei, ST_CONFIG, "%s appears twice", key);
	if (!(scope ? token_valid_scope(val) : token_valid_value(val)))
		return st_error(ei, ST_CONFIG, "bad %s value", key);
	if ((*dst = strdup(val)) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	return ST_OK;
}

static enum status
token_set_time(time_t *dst, const char *key, const char *val,
    struct errinfo *ei)
{
	char *end;
	long long v;

	if (*dst != 0)
		return st_error(ei, ST_CONFIG, "%s appears twice", key);
	errno = 0;
	v = strtoll(val, &end, 10);
	if (errno != 0 || end == val || *end != '\0' || v <= 0 ||
	    *val < '0' || *val > '9')
		return st_error(ei, ST_CONFIG, "bad %s value", key);
	*dst = (time_t)v;
	return ST_OK;
}

/* One "KEY VALUE" line, NUL-terminated in place. */
static enum status
token_parse_line(char *line, struct token *tok, struct errinfo *ei)
{
	char *val;

	if ((val = strchr(line, ' ')) == NULL)
		return st_error(ei, ST_CONFIG, "line without a value");
	*val++ = '\0';
	if (strcmp(line, "user") == 0)
		return token_set_str(&tok->user, line, val, false, ei);
	if (strcmp(line, "access_token") == 0)
		return token_set_str(&tok->access_token, line, val, false, ei);
	if (strcmp(line, "refresh_token") == 0)
		return token_set_str(&tok->refresh_token, line, val, false, ei);
	if (strcmp(line, "scope") == 0)
		return token_set_str(&tok->scope, line, val, true, ei);
	if (strcmp(line, "expires") == 0)
		return token_set_time(&tok->expires, line, val, ei);
	if (strcmp(line, "obtained") == 0)
		return token_set_time(&tok->obtained, line, val, ei);
	if (strcmp(line, "authorized") == 0)
		return token_set_time(&tok->authorized, line, val, ei);
	return ST_OK;
}

enum status
token_parse(const char *data, size_t len, struct token *tok,
    struct errinfo *ei)
{
	enum status st = ST_OK;
	char *copy, *p, *nl;
	size_t n = 0;

	memset(tok, 0, sizeof(*tok));
	if (len > TOKEN_FILE_MAX)
		return st_error(ei, ST_CONFIG, "longer than %d bytes",
		    TOKEN_FILE_MAX);
	if (memchr(data, '\0', len) != NULL)
		return st_error(ei, ST_CONFIG, "holds a NUL byte");
	if (len == 0 || data[len - 1] != '\n')
		return st_error(ei, ST_CONFIG, "truncated (no final newline)");
	if ((copy = malloc(len + 1)) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	memcpy(copy, data, len);
	copy[len] = '\0';
	for (p = copy; *p != '\0'; p = nl + 1) {
		nl = strchr(p, '\n');
		*nl = '\0';
		n++;
		if (n == 1) {
			if (strcmp(p, TOKEN_MAGIC) != 0) {
				st = st_error(ei, ST_CONFIG,
				    "not a bearmail token file (version?)");
				break;
			}
			continue;
		}
		if ((st = token_parse_line(p, tok, ei)) != ST_OK) {
			st_context(ei, "line %zu", n);
			break;
		}
	}
	st_wipe(copy, len);
	free(copy);
	if (st != ST_OK)
		token_free(tok);
	return st;
}

/* Refuse what another user could have planted or can read. */
static enum status
token_check_file(int fd, const char *path, struct errinfo *ei)
{
	struct stat sb;

	if (fstat(fd, &sb) == -1)
		return st_errno(ei, ST_SYS, "stat %s", path);
	if (!S_ISREG(sb.st_mode))
		return st_error(ei, ST_CONFIG, "%s is not a regular file: refused",
		    path);
	if (sb.st_uid != geteuid())
		return st_error(ei, ST_CONFIG,
		    "%s is owned by uid %u, not by uid %u: refused", path,
		    (unsigned)sb.st_uid, (unsigned)geteuid());
	if ((sb.st_mode & 077) != 0)
		return st_error(ei, ST_CONFIG,
		    "%s is readable by group or others: refused (run chmod 600 %s"
		    ", and consider its tokens leaked)", path, path);
	return ST_OK;
}

enum status
token_load(struct token_store *ts, struct token *tok, bool *found,
    struct errinfo *ei)
{
	enum status st;
	struct buf b;
	char chunk[4096];
	ssize_t n;
	int fd;

	*found = false;
	memset(tok, 0, sizeof(*tok));
	/* O_NONBLOCK: a FIFO planted here must not hang us before fstat. */
	fd = open(ts->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd == -1) {
		if (errno == ENOENT)
			return ST_OK;
		if (errno == ELOOP)
			return st_error(ei, ST_CONFIG,
			    "%s is a symbolic link: refused", ts->path);
		return st_errno(ei, ST_SYS, "open %s", ts->path);
	}
	buf_init_secret(&b, TOKEN_FILE_MAX);
	if ((st = token_check_file(fd, ts->path, ei)) != ST_OK)
		goto done;
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			st = st_errno(ei, ST_SYS, "read %s", ts->path);
			goto done;
		}
		if (n == 0)
			break;
		if (buf_add(&b, chunk, (size_t)n, NULL) != ST_OK) {
			st = st_error(ei, ST_CONFIG, "%s: longer than %d bytes",
			    ts->path, TOKEN_FILE_MAX);
			goto done;
		}
	}
	if ((st = token_parse(b.data != NULL ? b.data : "", b.len, tok, ei)) !=
	    ST_OK) {
		st_context(ei, "%s", ts->path);
		goto done;
	}
	*found = true;
done:
	st_wipe(chunk, sizeof(chunk));
	buf_wipe(&b);
	close(fd);
	return st;
}

#ifdef TOKEN_TEST_HOOKS
/*
 * Test builds only: with BM_TOKEN_TEST_PAUSE_FD=N, tell descriptor N that
 * the new file is written and synced but not yet renamed, then wait to be
 * killed.  Lets a test SIGKILL a writer at the worst moment.
 */
static void
token_test_pause(void)
{
	const char *s;
	int fd;

	if ((s = getenv("BM_TOKEN_TEST_PAUSE_FD")) == NULL)
		return;
	fd = (int)strtol(s, NULL, 10);
	(void)!write(fd, "P", 1);
	for (;;)
		poll(NULL, 0, 1000);
}
#endif

enum status
token_save(struct token_store *ts, const struct token *tok,
    struct errinfo *ei)
{
	enum status st;
	struct buf b;
	int fd = -1;

	if (ts->lockfd < 0)
		return st_error(ei, ST_SYS, "token_save without the lock");
	buf_init_secret(&b, TOKEN_FILE_MAX);
	if ((st = token_format(tok, &b, ei)) != ST_OK)
		goto done;
	/* A leftover from a killed writer; we hold the lock, so it is dead. */
	if (unlink(ts->tmppath) == -1 && errno != ENOENT) {
		st = st_errno(ei, ST_CANTCREAT, "unlink %s", ts->tmppath);
		goto done;
	}
	fd = open(ts->tmppath, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	if (fd == -1) {
		st = st_errno(ei, ST_CANTCREAT, "create %s", ts->tmppath);
		goto done;
	}
	if ((st = xio_write_all(fd, b.data, b.len, ST_CANTCREAT, ts->tmppath,
	    ei)) != ST_OK)
		goto done;
	if (fsync(fd) == -1) {
		st = st_errno(ei, ST_CANTCREAT, "fsync %s", ts->tmppath);
		goto done;
	}
	if (close(fd) == -1) {
		fd = -1;
		st = st_errno(ei, ST_CANTCREAT, "close %s", ts->tmppath);
		goto done;
	}
	fd = -1;
#ifdef TOKEN_TEST_HOOKS
	token_test_pause();
#endif
	if (rename(ts->tmppath, ts->path) == -1) {
		st = st_errno(ei, ST_CANTCREAT, "rename %s", ts->tmppath);
		goto done;
	}
	st = xio_fsync_dir(ts->dir, ei);
done:
	if (fd != -1)
		close(fd);
	if (st != ST_OK)
		unlink(ts->tmppath);
	buf_wipe(&b);
	return st;
}

enum status
token_remove(struct token_store *ts, struct errinfo *ei)
{
	if (ts->lockfd < 0)
		return st_error(ei, ST_SYS, "token_remove without the lock");
	if (unlink(ts->path) == -1 && errno != ENOENT)
		return st_errno(ei, ST_CANTCREAT, "unlink %s", ts->path);
	(void)unlink(ts->tmppath);
	return xio_fsync_dir(ts->dir, ei);
}

bool
token_stale(const struct token *tok, time_t now, time_t margin)
{
	if (tok->access_token == NULL || tok->expires <= 0)
		return true;
	return tok->expires - now < margin;
}

static void
token_wipe_str(char **s)
{
	if (*s == NULL)
		return;
	st_wipe(*s, strlen(*s));
	free(*s);
	*s = NULL;
}

/* Move *src into *dst (wiping what dst held), leaving src NULL. */
static void
token_move(char **dst, char **src)
{
	token_wipe_str(dst);
	*dst = *src;
	*src = NULL;
}

void
token_merge(struct token *stored, struct token *fresh)
{
	token_move(&stored->access_token, &fresh->access_token);
	stored->expires = fresh->expires;
	stored->obtained = fresh->obtained;
	if (fresh->scope != NULL)
		token_move(&stored->scope, &fresh->scope);
	if (fresh->user != NULL)
		token_move(&stored->user, &fresh->user);
	/* Rotation: keep the new one.  Absence: keep the old one. */
	if (fresh->refresh_token != NULL) {
		token_move(&stored->refresh_token, &fresh->refresh_token);
		if (fresh->authorized != 0)
			stored->authorized = fresh->authorized;
	}
	if (stored->authorized == 0 && stored->refresh_token != NULL)
		stored->authorized = stored->obtained;
	token_free(fresh);
}

void
token_free(struct token *tok)
{
	token_wipe_str(&tok->access_token);
	token_wipe_str(&tok->refresh_token);
	token_wipe_str(&tok->scope);
	token_wipe_str(&tok->user);
	memset(tok, 0, sizeof(*tok));
}
