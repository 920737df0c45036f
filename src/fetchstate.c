/*
 * fetchstate.c: the record of delivered messages (format in fetchstate.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "fetchstate.h"
#include "xio.h"

#define FSTATE_MAGIC	"bearmail-fetch-state 1"
#define FSTATE_LINE_MAX	1024

struct range {
	uint32_t lo, hi;
};

struct uidl {
	char *s;
	bool listed;
};

struct fstate {
	char *dir;		/* STATE_DIR/fetch/ACCOUNT */
	char *path;
	char *folder;		/* IMAP, else NULL */
	bool imap;
	int fd;			/* append descriptor */
	uint32_t uidvalidity;
	struct range *r;
	size_t nr, rcap;
	size_t nuids;
	struct uidl *u;
	size_t nu, ucap;
};

/* ---- paths ------------------------------------------------------------ */

bool
fstate_folder_enc(const char *folder, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *folder != '\0'; folder++) {
		unsigned char c = (unsigned char)*folder;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		    (c == '.' && o > 0)) {
			if (o + 1 >= outsz)
				return false;
			out[o++] = (char)c;
		} else {
			if (o + 3 >= outsz)
				return false;
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (o >= outsz)
		return false;
	out[o] = '\0';
	return true;
}

static enum status
mkdirs(const char *state_dir, const char *account, char **out,
    struct errinfo *ei)
{
	struct buf b;
	enum status st;

	*out = NULL;
	buf_init(&b, 4096);
	if ((st = buf_adds(&b, state_dir, ei)) != ST_OK)
		goto fail;
	if (mkdir(b.data, 0700) != 0 && errno != EEXIST) {
		st = st_errno(ei, ST_CANTCREAT, "state: mkdir %s", b.data);
		goto fail;
	}
	if ((st = buf_adds(&b, "/fetch", ei)) != ST_OK)
		goto fail;
	if (mkdir(b.data, 0700) != 0 && errno != EEXIST) {
		st = st_errno(ei, ST_CANTCREAT, "state: mkdir %s", b.data);
		goto fail;
	}
	if ((st = buf_printf(&b, ei, "/%s", account)) != ST_OK)
		goto fail;
	if (mkdir(b.data, 0700) != 0 && errno != EEXIST) {
		st = st_errno(ei, ST_CANTCREAT, "state: mkdir %s", b.data);
		goto fail;
	}
	*out = buf_steal(&b, ei);
	return *out != NULL ? ST_OK : ST_SYS;
fail:
	buf_free(&b);
	return st;
}

enum status
fstate_lock(const char *state_dir, const char *account, int *fd,
    struct errinfo *ei)
{
	char *dir = NULL, path[4200];
	enum status st;

	*fd = -1;
	if ((st = mkdirs(state_dir, account, &dir, ei)) != ST_OK)
		return st;
	snprintf(path, sizeof(path), "%s/lock", dir);
	free(dir);
	if ((*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return st_errno(ei, ST_CANTCREAT, "state: open %s", path);
	if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
		st = errno == EWOULDBLOCK ?
		    st_error(ei, ST_TEMPFAIL, "another bearmail-fetch is "
		    "running for account %s (%s is locked)", account, path) :
		    st_errno(ei, ST_CANTCREAT, "state: lock %s", path);
		close(*fd);
		*fd = -1;
		return st;
	}
	return ST_OK;
}

void
fstate_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* ---- the sets --------------------------------------------------------- */

/* Index of the first range with hi >= uid. */
static size_t
range_find(const struct fstate *fs, uint32_t uid)
{
	size_t lo = 0, hi = fs->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (fs->r[mid].hi < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool
fstate_has_uid(const struct fstate *fs, uint32_t uid)
{
	size_t i = range_find(fs, uid);

	return i < fs->nr && fs->r[i].lo <= uid;
}

static enum status
range_add(struct fstate *fs, uint32_t lo, uint32_t hi, struct errinfo *ei)
{
	size_t i, j;
	uint32_t v;

	/* Ranges from a file are few; adding them one UID at a time is fine
	 * except for huge ones, which are merged whole below. */
	i = range_find(fs, lo == 0 ? 0 : lo - 1);
	if (i < fs->nr && fs->r[i].lo <= (hi == UINT32_MAX ? hi : hi + 1)) {
		/* Overlaps or touches range i: widen it, then swallow. */
		if (lo < fs->r[i].lo)
			fs->r[i].lo = lo;
		if (hi > fs->r[i].hi)
			fs->r[i].hi = hi;
		for (j = i + 1; j < fs->nr &&
		    fs->r[j].lo <= fs->r[i].hi + 1; j++)
			if (fs->r[j].hi > fs->r[i].hi)
				fs->r[i].hi = fs->r[j].hi;
		memmove(fs->r + i + 1, fs->r + j,
		    (fs->nr - j) * sizeof(*fs->r));
		fs->nr -= j - (i + 1);
	} else {
		if (fs->nr == fs->rcap) {
			size_t cap = fs->rcap ? fs->rcap * 2 : 16;
			struct range *r = realloc(fs->r, cap * sizeof(*r));
			if (r == NULL)
				return st_errno(ei, ST_SYS, "out of memory");
			fs->r = r;
			fs->rcap = cap;
		}
		memmove(fs->r + i + 1, fs->r + i, (fs->nr - i) * sizeof(*fs->r));
		fs->r[i].lo = lo;
		fs->r[i].hi = hi;
		fs->nr++;
	}
	fs->nuids = 0;
	for (i = 0; i < fs->nr; i++) {
		v = fs->r[i].hi - fs->r[i].lo;
		fs->nuids += (size_t)v + 1;
	}
	return ST_OK;
}

static size_t
uidl_find(const struct fstate *fs, const char *s, bool *found)
{
	size_t lo = 0, hi = fs->nu;
	int c;

	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		c = strcmp(fs->u[mid].s, s);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool
uidl_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > FSTATE_UIDL_MAX)
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

static enum status
uidl_insert(struct fstate *fs, const char *s, bool listed, struct errinfo *ei)
{
	bool found;
	size_t i = uidl_find(fs, s, &found);
	char *d;

	if (found) {
		fs->u[i].listed |= listed;
		return ST_OK;
	}
	if (fs->nu == fs->ucap) {
		size_t cap = fs->ucap ? fs->ucap * 2 : 64;
		struct uidl *u = realloc(fs->u, cap * sizeof(*u));
		if (u == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
		fs->u = u;
		fs->ucap = cap;
	}
	if ((d = strdup(s)) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	memmove(fs->u + i + 1, fs->u + i, (fs->nu - i) * sizeof(*fs->u));
	fs->u[i].s = d;
	fs->u[i].listed = listed;
	fs->nu++;
	return ST_OK;
}

bool
fstate_has_uidl(struct fstate *fs, const char *uidl)
{
	bool found;
	size_t i = uidl_find(fs, uidl, &found);

	if (found)
		fs->u[i].listed = true;
	return found;
}

size_t
fstate_count(const struct fstate *fs)
{
	return fs->imap ? fs->nuids : fs->nu;
}

uint32_t
fstate_uidvalidity(const struct fstate *fs)
{
	return fs->uidvalidity;
}

const char *
fstate_path(const struct fstate *fs)
{
	return fs->path;
}

/* ---- files ------------------------------------------------------------ */

static bool
parse_u32(const char *s, const char **end, uint32_t *out)
{
	uint64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*end = p;
	*out = (uint32_t)v;
	return true;
}

static enum status
fstate_load(struct fstate *fs, FILE *f, size_t *nlines, struct errinfo *ei)
{
	char line[FSTATE_LINE_MAX + 2];
	const char *end;
	uint32_t lo, hi;
	enum status st;
	size_t len;
	int n = 0;

	*nlines = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		n++;
		len = strlen(line);
		if (len == 0 || line[len - 1] != '\n') {
			/* A torn last append (rewrite the file before the
			 * next append lands on it), or an absurd line. */
			if (feof(f)) {
				*nlines = (size_t)-1 / 2;
				break;
			}
			return st_error(ei, ST_CONFIG, "%s:%d: line too long",
			    fs->path, n);
		}
		line[--len] = '\0';
		(*nlines)++;
		if (n == 1) {
			if (strcmp(line, FSTATE_MAGIC) != 0)
				return st_error(ei, ST_CONFIG, "%s:1: not a "
				    "bearmail-fetch state file", fs->path);
		} else if (n == 2) {
			if (strcmp(line, fs->imap ? "proto imap" :
			    "proto pop3") != 0)
				return st_error(ei, ST_CONFIG, "%s:2: wrong "
				    "protocol", fs->path);
		} else if (fs->imap && strncmp(line, "folder ", 7) == 0) {
			continue;
		} else if (fs->imap && strncmp(line, "uidvalidity ", 12) == 0) {
			if (!parse_u32(line + 12, &end, &lo) || *end != '\0')
				goto bad;
			fs->uidvalidity = lo;
		} else if (fs->imap && strncmp(line, "uid ", 4) == 0) {
			if (!parse_u32(line + 4, &end, &lo))
				goto bad;
			hi = lo;
			if (*end == '-' && !parse_u32(end + 1, &end, &hi))
				goto bad;
			if (*end != '\0' || hi < lo || lo == 0)
				goto bad;
			if ((st = range_add(fs, lo, hi, ei)) != ST_OK)
				return st;
		} else if (!fs->imap && strncmp(line, "uidl ", 5) == 0) {
			if (!uidl_ok(line + 5))
				goto bad;
			if ((st = uidl_insert(fs, line + 5, false, ei)) != ST_OK)
				return st;
		} else
			goto bad;
	}
	if (ferror(f))
		return st_errno(ei, ST_CANTCREAT, "state: read %s", fs->path);
	return ST_OK;
bad:
	return st_error(ei, ST_CONFIG, "%s:%d: malformed record", fs->path, n);
}

enum status
fstate_compact(struct fstate *fs, bool prune, struct errinfo *ei)
{
	struct buf b, tmp;
	enum status st;
	size_t i;
	int fd = -1;

	buf_init(&b, (size_t)1 << 30);
	buf_init(&tmp, 4200);
	if ((st = buf_printf(&b, ei, "%s\nproto %s\n", FSTATE_MAGIC,
	    fs->imap ? "imap" : "pop3")) != ST_OK)
		goto out;
	if (fs->imap) {
		if ((st = buf_printf(&b, ei, "folder %s\nuidvalidity %" PRIu32
		    "\n", fs->folder, fs->uidvalidity)) != ST_OK)
			goto out;
		for (i = 0; i < fs->nr; i++) {
			if (fs->r[i].lo == fs->r[i].hi)
				st = buf_printf(&b, ei, "uid %" PRIu32 "\n",
				    fs->r[i].lo);
			else
				st = buf_printf(&b, ei, "uid %" PRIu32 "-%"
				    PRIu32 "\n", fs->r[i].lo, fs->r[i].hi);
			if (st != ST_OK)
				goto out;
		}
	} else {
		size_t keep = 0;
		for (i = 0; i < fs->nu; i++) {
			if (prune && !fs->u[i].listed) {
				free(fs->u[i].s);
				continue;
			}
			fs->u[keep++] = fs->u[i];
			if ((st = buf_printf(&b, ei, "uidl %s\n",
			    fs->u[i].s)) != ST_OK)
				goto out;
		}
		fs->nu = keep;
	}
	if ((st = buf_printf(&tmp, ei, "%s.tmp", fs->path)) != ST_OK)
		goto out;
	fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		st = st_errno(ei, ST_CANTCREAT, "state: create %s", tmp.data);
		goto out;
	}
	if ((st = xio_write_all(fd, b.data, b.len, ST_CANTCREAT, tmp.data,
	    ei)) != ST_OK)
		goto out;
	if (fsync(fd) != 0) {
		st = st_errno(ei, ST_CANTCREAT, "state: fsync %s", tmp.data);
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(tmp.data, fs->path) != 0) {
		st = st_errno(ei, ST_CANTCREAT, "state: rename to %s", fs->path);
		goto out;
	}
	if ((st = xio_fsync_dir(fs->dir, ei)) != ST_OK)
		goto out;
	/* Appends go to the new file from now on. */
	if (fs->fd >= 0)
		close(fs->fd);
	fs->fd = open(fs->path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fs->fd < 0)
		st = st_errno(ei, ST_CANTCREAT, "state: open %s", fs->path);
out:
	if (fd >= 0) {
		close(fd);
		(void)unlink(tmp.data);
	}
	buf_free(&b);
	buf_free(&tmp);
	return st;
}

static enum status
fstate_append(struct fstate *fs, const char *line, size_t n,
    struct errinfo *ei)
{
	enum status st;

	if (fs->fd < 0)
		return fstate_compact(fs, false, ei);
	if ((st = xio_write_all(fs->fd, line, n, ST_CANTCREAT, fs->path,
	    ei)) != ST_OK)
		return st;
	if (fdatasync(fs->fd) != 0)
		return st_errno(ei, ST_CANTCREAT, "state: fsync %s", fs->path);
	return ST_OK;
}

enum status
fstate_add_uid(struct fstate *fs, uint32_t uid, struct errinfo *ei)
{
	char line[32];
	enum status st;
	int n;

	if (fstate_has_uid(fs, uid))
		return ST_OK;
	if ((st = range_add(fs, uid, uid, ei)) != ST_OK)
		return st;
	n = snprintf(line, sizeof(line), "uid %" PRIu32 "\n", uid);
	return fstate_append(fs, line, (size_t)n, ei);
}

enum status
fstate_add_uidl(struct fstate *fs, const char *uidl, struct errinfo *ei)
{
	char line[FSTATE_UIDL_MAX + 8];
	enum status st;
	int n;

	if (!uidl_ok(uidl))
		return st_error(ei, ST_PROTO, "malformed UIDL");
	if (fstate_has_uidl(fs, uidl))
		return ST_OK;
	if ((st = uidl_insert(fs, uidl, true, ei)) != ST_OK)
		return st;
	n = snprintf(line, sizeof(line), "uidl %s\n", uidl);
	return fstate_append(fs, line, (size_t)n, ei);
}

enum status
fstate_set_uidvalidity(struct fstate *fs, uint32_t v, bool *reset,
    struct errinfo *ei)
{
	*reset = false;
	if (fs->uidvalidity == v)
		return ST_OK;
	if (fs->uidvalidity != 0 && fs->nr > 0)
		*reset = true;
	fs->uidvalidity = v;
	fs->nr = 0;
	fs->nuids = 0;
	return fstate_compact(fs, false, ei);
}

enum status
fstate_open(struct fstate **out, const char *state_dir, const char *account,
    const char *proto, const char *folder, struct errinfo *ei)
{
	char enc[1024];
	struct fstate *fs;
	struct buf p;
	enum status st;
	size_t nlines = 0;
	FILE *f;

	*out = NULL;
	if ((fs = calloc(1, sizeof(*fs))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	fs->fd = -1;
	fs->imap = strcmp(proto, "imap") == 0;
	buf_init(&p, 4200);
	if ((st = mkdirs(state_dir, account, &fs->dir, ei)) != ST_OK)
		goto fail;
	if (fs->imap) {
		if (folder == NULL || strchr(folder, '\n') != NULL ||
		    !fstate_folder_enc(folder, enc, sizeof(enc))) {
			st = st_error(ei, ST_USAGE, "unusable folder name");
			goto fail;
		}
		if ((fs->folder = strdup(folder)) == NULL) {
			st = st_errno(ei, ST_SYS, "out of memory");
			goto fail;
		}
		st = buf_printf(&p, ei, "%s/imap.%s.state", fs->dir, enc);
	} else
		st = buf_printf(&p, ei, "%s/pop3.state", fs->dir);
	if (st != ST_OK || (fs->path = buf_steal(&p, ei)) == NULL) {
		st = st != ST_OK ? st : ST_SYS;
		goto fail;
	}
	if ((f = fopen(fs->path, "re")) == NULL) {
		if (errno != ENOENT) {
			st = st_errno(ei, ST_CANTCREAT, "state: open %s",
			    fs->path);
			goto fail;
		}
		/* First run: write the header now. */
		if ((st = fstate_compact(fs, false, ei)) != ST_OK)
			goto fail;
	} else {
		st = fstate_load(fs, f, &nlines, ei);
		fclose(f);
		if (st != ST_OK)
			goto fail;
		/* Fold the appended records now and then. */
		if (nlines > (fs->imap ? fs->nr : fs->nu) + 64)
			st = fstate_compact(fs, false, ei);
		else if ((fs->fd = open(fs->path, O_WRONLY | O_APPEND |
		    O_CLOEXEC)) < 0)
			st = st_errno(ei, ST_CANTCREAT, "state: open %s",
			    fs->path);
		if (st != ST_OK)
			goto fail;
	}
	*out = fs;
	return ST_OK;
fail:
	buf_free(&p);
	fstate_free(fs);
	return st;
}

void
fstate_free(struct fstate *fs)
{
	size_t i;

	if (fs == NULL)
		return;
	if (fs->fd >= 0)
		close(fs->fd);
	for (i = 0; i < fs->nu; i++)
		free(fs->u[i].s);
	free(fs->u);
	free(fs->r);
	free(fs->dir);
	free(fs->path);
	free(fs->folder);
	free(fs);
}
