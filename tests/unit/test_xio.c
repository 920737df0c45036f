/* Unit tests: whole writes, directory syncs, monotonic deadlines (xio.c). */
#include "config.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "xio.h"

static void
test_write(void)
{
	char dir[] = "/tmp/test_xio.XXXXXX", path[64], back[300000];
	static char big[300000];
	struct errinfo ei;
	int fd, p[2];
	size_t i;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	ok(mkdtemp(dir) != NULL, "scratch directory");
	snprintf(path, sizeof(path), "%s/f", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	st_clear(&ei);
	is_int(xio_write_all(fd, big, sizeof(big), ST_CANTCREAT, path, &ei),
	    ST_OK, "a large write goes out whole");
	ok(pread(fd, back, sizeof(back), 0) == (ssize_t)sizeof(back) &&
	    memcmp(back, big, sizeof(big)) == 0, "every byte, in order");
	close(fd);

	/* A pipe nobody reads: EPIPE, reported with the caller's status. */
	ok(pipe(p) == 0, "pipe");
	close(p[0]);
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, NULL);
	}
	st_clear(&ei);
	is_int(xio_write_all(p[1], "x", 1, ST_CANTCREAT, "the pipe", &ei),
	    ST_CANTCREAT, "a failed write gives the caller's status");
	ok(strncmp(ei.msg, "write the pipe: ", 16) == 0, "text: %s", ei.msg);
	close(p[1]);

	st_clear(&ei);
	is_int(xio_fsync_dir(dir, &ei), ST_OK, "fsync a directory");
	st_clear(&ei);
	is_int(xio_fsync_dir(path, &ei), ST_CANTCREAT,
	    "a file is not a directory");
	ok(strstr(ei.msg, path) != NULL, "the text names it: %s", ei.msg);
	unlink(path);
	rmdir(dir);
	st_clear(&ei);
	is_int(xio_fsync_dir(dir, &ei), ST_CANTCREAT, "missing directory");
}

static void
test_deadlines(void)
{
	struct timespec t, d;

	t.tv_sec = 10;
	t.tv_nsec = 999000000L;
	d = xio_ts_add_ms(t, 1500);
	ok(d.tv_sec == 12 && d.tv_nsec == 499000000L, "add carries the ns");
	d = xio_ts_add_ms(t, 0);
	ok(d.tv_sec == 10 && d.tv_nsec == 999000000L, "add 0");

	d = xio_deadline_ms(60000);
	ok(xio_ms_left(&d) > 59000 && xio_ms_left(&d) <= 60000,
	    "a minute ahead: about 60000 ms left (%d)", xio_ms_left(&d));
	ok(!xio_expired(&d), "not expired");
	d = xio_deadline_ms(0);
	d.tv_sec -= 1;
	is_int(xio_ms_left(&d), 0, "a past deadline: 0 ms");
	ok(xio_expired(&d), "expired");
	d = xio_now();
	d.tv_nsec += 1000;	/* a microsecond ahead */
	if (d.tv_nsec >= 1000000000L) {
		d.tv_sec++;
		d.tv_nsec -= 1000000000L;
	}
	ok(xio_ms_left(&d) <= 1, "under a millisecond rounds up to at most 1");
	d = xio_deadline_ms(0);
	d.tv_sec += 10 * 86400;
	is_int(xio_ms_left(&d), 86400000, "far deadlines are capped at a day");
}

int
main(void)
{
	test_write();
	test_deadlines();
	return tap_done();
}
