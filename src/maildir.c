/*
 * maildir.c: delivery into a Maildir (see maildir.h for the convention
 * and the names).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "maildir.h"
#include "tls.h"
#include "xio.h"

struct maildir {
	char *dir;
	int fd;			/* the tmp/ file being written, or -1 */
	char name[256];		/* its base name */
};

static unsigned maildir_counter;

static enum status
mkdir_if(const char *path, struct errinfo *ei)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return ST_OK;
	return st_errno(ei, ST_CANTCREAT, "maildir: mkdir %s", path);
}

bool
maildir_name(char *out, size_t outsz)
{
	char host[256], safe[256 * 4 + 1];
	struct timespec ts;
	uint64_t rnd = 0;
	size_t i, o = 0;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (tls_random(&rnd, sizeof(rnd), NULL) != ST_OK)
		rnd = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	for (i = 0; host[i] != '\0' && o + 5 < sizeof(safe); i++) {
		if (host[i] == '/')
			o += (size_t)snprintf(safe + o, sizeof(safe) - o, "\\057");
		else if (host[i] == ':')
			o += (size_t)snprintf(safe + o, sizeof(safe) - o, "\\072");
		else
			safe[o++] = host[i];
	}
	safe[o] = '\0';
	n = snprintf(out, outsz, "%lld.M%06ldP%ldQ%uR%016llx.%s",
	    (long long)ts.tv_sec, ts.tv_nsec / 1000, (long)getpid(),
	    ++maildir_counter, (unsigned long long)rnd, safe);
	return n > 0 && (size_t)n < outsz;
}

static void
path_join(char *out, size_t outsz, const char *dir, const char *sub,
    const char *name)
{
	snprintf(out, outsz, "%s/%s%s%s", dir, sub, name != NULL ? "/" : "",
	    name != NULL ? name : "");
}

enum status
maildir_open(void **ctx, const char *dir, struct errinfo *ei)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	struct maildir *m;
	char path[4096];
	enum status st;
	size_t i;

	*ctx = NULL;
	if (strlen(dir) > 3000)
		return st_error(ei, ST_CONFIG, "maildir: path too long");
	if ((st = mkdir_if(dir, ei)) != ST_OK)
		return st;
	for (i = 0; i < 3; i++) {
		path_join(path, sizeof(path), dir, subs[i], NULL);
		if ((st = mkdir_if(path, ei)) != ST_OK)
			return st;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->dir = strdup(dir)) == NULL) {
		free(m);
		return st_errno(ei, ST_SYS, "out of memory");
	}
	m->fd = -1;
	*ctx = m;
	return ST_OK;
}

static enum status
md_begin(void *ctx, struct errinfo *ei)
{
	struct maildir *m = ctx;
	char path[4096];
	int tries;

	for (tries = 0; tries < 5; tries++) {
		if (!maildir_name(m->name, sizeof(m->name)))
			return st_error(ei, ST_CANTCREAT, "maildir: name too long");
		path_join(path, sizeof(path), m->dir, "tmp", m->name);
		m->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0600);
		if (m->fd >= 0)
			return ST_OK;
		if (errno != EEXIST)
			break;
	}
	return st_errno(ei, ST_CANTCREAT, "maildir: create %s", path);
}

static enum status
md_write(void *ctx, const void *p, size_t n, struct errinfo *ei)
{
	struct maildir *m = ctx;

	return xio_write_all(m->fd, p, n, ST_CANTCREAT, "maildir tmp/ file",
	    ei);
}

static void
md_abort(void *ctx)
{
	struct maildir *m = ctx;
	char path[4096];

	if (m->fd >= 0) {
		close(m->fd);
		m->fd = -1;
	}
	path_join(path, sizeof(path), m->dir, "tmp", m->name);
	(void)unlink(path);
}

static enum status
md_commit(void *ctx, struct errinfo *ei)
{
	struct maildir *m = ctx;
	char tmp[4096], new[4096], dir[4096];
	enum status st;

	path_join(tmp, sizeof(tmp), m->dir, "tmp", m->name);
	path_join(new, sizeof(new), m->dir, "new", m->name);
	path_join(dir, sizeof(dir), m->dir, "new", NULL);
	if (fsync(m->fd) != 0) {
		st = st_errno(ei, ST_CANTCREAT, "maildir: fsync tmp/%s", m->name);
		goto fail;
	}
	if (close(m->fd) != 0) {
		m->fd = -1;
		st = st_errno(ei, ST_CANTCREAT, "maildir: close tmp/%s", m->name);
		goto fail;
	}
	m->fd = -1;
	/* link() never replaces: a clash is an error, never a lost message. */
	if (link(tmp, new) != 0) {
		st = st_errno(ei, ST_CANTCREAT, "maildir: link into new/");
		goto fail;
	}
	if ((st = xio_fsync_dir(dir, ei)) != ST_OK) {
		(void)unlink(new);
		goto fail;
	}
	(void)unlink(tmp);
	return ST_OK;
fail:
	md_abort(m);
	return st;
}

static void
md_free(void *ctx)
{
	struct maildir *m = ctx;

	if (m == NULL)
		return;
	if (m->fd >= 0)
		md_abort(m);
	free(m->dir);
	free(m);
}

const struct deliver_ops maildir_ops = {
	.name = "maildir",
	.begin = md_begin,
	.write = md_write,
	.commit = md_commit,
	.abort = md_abort,
	.free = md_free,
};
