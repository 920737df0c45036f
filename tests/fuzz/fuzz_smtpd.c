/*
 * fuzz_smtpd.c: the server side of `bearmail -bs` (smtpd_run() in
 * src/smtpd.h), reading a whole client dialogue from a memory file.
 *
 * The first byte picks the limits (recipients, message size) and what
 * the deliver function answers (delivered, try later, refused), in turn
 * for each message.
 *
 * Promises checked: deliver is called with a sender and 1..rcpts_max
 * recipients free of control characters, and a message no larger than
 * size_max, at offset 0; every reply line is "DDD" or "DDD text" or
 * "DDD-text" with a code in 200..599, ended by CRLF.
 */
#include "config.h"

#include <sys/mman.h>

#include <fcntl.h>
#include <unistd.h>

#include "smtpd.h"
#include "status.h"

#include "fuzz.h"

struct ctx {
	size_t calls;
	size_t rcpts_max;
	off_t size_max;
	unsigned answers;
};

static enum status
deliver(void *arg, const char *sender, const char *const *rcpts,
    size_t nrcpts, int fd, char *id, struct errinfo *ei)
{
	static const enum status answer[] = { ST_OK, ST_TEMPFAIL,
	    ST_PERMFAIL, ST_NOUSER };
	struct ctx *c = arg;
	char buf[4096];
	off_t total = 0;
	ssize_t got;
	size_t i;
	enum status st;

	FZ_CHECK(sender != NULL && !fz_has_ctl(sender, false));
	FZ_CHECK(nrcpts >= 1 && nrcpts <= c->rcpts_max);
	for (i = 0; i < nrcpts; i++)
		FZ_CHECK(rcpts[i] != NULL && !fz_has_ctl(rcpts[i], false));
	FZ_CHECK(lseek(fd, 0, SEEK_CUR) == 0);
	while ((got = read(fd, buf, sizeof(buf))) > 0)
		total += got;
	FZ_CHECK(got == 0);
	FZ_CHECK(total <= c->size_max);

	st = answer[(c->answers >> (2 * (c->calls % 4))) & 3];
	c->calls++;
	if (st == ST_OK) {
		snprintf(id, SMTPD_ID_MAX, "FUZZ%zu", c->calls);
		return ST_OK;
	}
	return st_error(ei, st, "fuzz says no");
}

static void
check_replies(int fd)
{
	char *out;
	off_t end;
	size_t n, i, start;

	FZ_CHECK((end = lseek(fd, 0, SEEK_END)) >= 0);
	n = (size_t)end;
	if ((out = malloc(n ? n : 1)) == NULL)
		abort();
	FZ_CHECK(pread(fd, out, n, 0) == (ssize_t)n);
	FZ_CHECK(n == 0 || (n >= 2 && out[n - 2] == '\r' &&
	    out[n - 1] == '\n'));
	for (start = 0, i = 0; i < n; i++) {
		if (out[i] != '\n')
			continue;
		/* out[start..i] is one reply line with its CRLF. */
		FZ_CHECK(i >= start + 4 && out[i - 1] == '\r');
		FZ_CHECK(out[start] >= '2' && out[start] <= '5');
		FZ_CHECK(out[start + 1] >= '0' && out[start + 1] <= '9');
		FZ_CHECK(out[start + 2] >= '0' && out[start + 2] <= '9');
		FZ_CHECK(i == start + 4 || out[start + 3] == ' ' ||
		    out[start + 3] == '-');
		FZ_CHECK(memchr(out + start, '\r', i - 1 - start) == NULL);
		FZ_CHECK(memchr(out + start, '\0', i - start) == NULL);
		start = i + 1;
	}
	FZ_CHECK(start == n);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t rmax[] = { 1, 3, 100, 1000 };
	static const off_t smax[] = { 0, 100, 4096, 1024 * 1024 };
	struct errinfo ei;
	struct smtpd_opts o;
	struct ctx c;
	unsigned flags;
	int in, out;

	flags = fz_byte(&data, &size);
	memset(&c, 0, sizeof(c));
	c.rcpts_max = rmax[flags & 3];
	c.size_max = smax[(flags >> 2) & 3];
	c.answers = (flags >> 4) ? (flags >> 4) * 0x11u : 0;

	FZ_CHECK((in = memfd_create("fuzz-in", MFD_CLOEXEC)) != -1);
	FZ_CHECK((out = memfd_create("fuzz-out", MFD_CLOEXEC)) != -1);
	FZ_CHECK(write(in, data, size) == (ssize_t)size);
	FZ_CHECK(lseek(in, 0, SEEK_SET) == 0);

	memset(&o, 0, sizeof(o));
	o.in = in;
	o.out = out;
	o.host = (flags & 0x80) ? "fuzz.example" : NULL;
	o.size_max = c.size_max;
	o.rcpts_max = c.rcpts_max;
	o.deliver = deliver;
	o.arg = &c;
	st_clear(&ei);
	FZ_CHECK(smtpd_run(&o, &ei) == ST_OK);
	check_replies(out);
	close(in);
	close(out);
	return 0;
}
