/*
 * xio.c: whole writes, directory syncs and monotonic deadlines.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "xio.h"

#define XIO_MS_MAX	86400000	/* one day: more than any timeout */

enum status
xio_write_all(int fd, const void *p, size_t n, enum status fail,
    const char *what, struct errinfo *ei)
{
	const char *c = p;
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, c, n)) < 0) {
			if (errno == EINTR)
				continue;
			return st_errno(ei, fail, "write %s", what);
		}
		c += w;
		n -= (size_t)w;
	}
	return ST_OK;
}

enum status
xio_fsync_dirfd(int dirfd, const char *what, struct errinfo *ei)
{
	if (fsync(dirfd) == -1 && errno != EINVAL)
		return st_errno(ei, ST_CANTCREAT, "fsync %s", what);
	return ST_OK;
}

enum status
xio_fsync_dir(const char *dir, struct errinfo *ei)
{
	enum status st;
	int fd;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return st_errno(ei, ST_CANTCREAT, "open %s", dir);
	st = xio_fsync_dirfd(fd, dir, ei);
	close(fd);
	return st;
}

struct timespec
xio_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts;
}

struct timespec
xio_ts_add_ms(struct timespec t, long ms)
{
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

struct timespec
xio_deadline_ms(long ms)
{
	return xio_ts_add_ms(xio_now(), ms);
}

int
xio_ms_left(const struct timespec *deadline)
{
	struct timespec now = xio_now();
	long long ns;

	ns = (long long)(deadline->tv_sec - now.tv_sec) * 1000000000LL +
	    (deadline->tv_nsec - now.tv_nsec);
	if (ns <= 0)
		return 0;
	/* Round up: poll() for the rounded-down time would wake too early. */
	if (ns >= (long long)XIO_MS_MAX * 1000000LL)
		return XIO_MS_MAX;
	return (int)((ns + 999999) / 1000000);
}

bool
xio_expired(const struct timespec *deadline)
{
	return xio_ms_left(deadline) == 0;
}
