/*
 * bm-maildir: the smallest durable Maildir MDA, for fetchmail in bench
 * row 6 (fetchmail has no Maildir delivery of its own; its users run an
 * MDA such as procmail or maildrop once per message).
 *
 *	bm-maildir DIR < message
 *
 * Writes standard input to DIR/tmp/NAME, fsync()s it, renames it to
 * DIR/new/NAME and fsync()s DIR/new, the same durability bearmail-fetch
 * and getmail6 promise.  NAME is seconds.M<microseconds>P<pid>.bench
 * (the Maildir naming scheme).  Exits 0, or 75 on any failure.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
	char tmp[4096], dst[4096], dir[4096], b[65536];
	struct timeval tv;
	ssize_t n;
	int fd, dfd;

	if (argc != 2) {
		fprintf(stderr, "usage: bm-maildir DIR\n");
		return 64;
	}
	gettimeofday(&tv, NULL);
	if (snprintf(tmp, sizeof(tmp), "%s/tmp/%lld.M%ldP%ld.bench", argv[1],
	    (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid()) >=
	    (int)sizeof(tmp) ||
	    snprintf(dst, sizeof(dst), "%s/new/%lld.M%ldP%ld.bench", argv[1],
	    (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid()) >=
	    (int)sizeof(dst) ||
	    snprintf(dir, sizeof(dir), "%s/new", argv[1]) >= (int)sizeof(dir))
		return 75;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600)) == -1)
		return 75;
	while ((n = read(0, b, sizeof(b))) > 0)
		if (write(fd, b, (size_t)n) != n)
			return 75;
	if (n < 0 || fsync(fd) == -1 || close(fd) == -1 ||
	    rename(tmp, dst) == -1)
		return 75;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY)) == -1 || fsync(dfd) == -1)
		return 75;
	close(dfd);
	return 0;
}
