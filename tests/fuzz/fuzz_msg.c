/*
 * fuzz_msg.c: the message rewrite stream and the -t recipient extractor
 * (msg_rewrite() in src/msg.h).
 *
 * The first byte picks the options (-i or not, -t or not, rewrite_from,
 * a display name, a small header bound); the rest is the message on
 * standard input.  Input and output are memory files, as msg_rewrite()
 * needs a regular file to write to.
 *
 * Promises checked, on success: every LF in the output follows a CR;
 * no line is longer than MSG_LINE_MAX octets; the output ends with CRLF
 * (or is empty); info.size is the output's length; no Bcc or Resent-Bcc
 * field is left in the header section, which holds no bare CR (the SMTP
 * client would send it as a line break, making a field out of it); a Date, Message-ID and From
 * field are present; recipients collected with -t are free of control
 * bytes but TAB.
 */
#include "config.h"

#include <sys/mman.h>

#include <fcntl.h>
#include <unistd.h>

#include "msg.h"
#include "rfc5322.h"
#include "status.h"

#include "fuzz.h"

static int
memfile(const char *name)
{
	int fd;

	FZ_CHECK((fd = memfd_create(name, MFD_CLOEXEC)) != -1);
	return fd;
}

/* Whether the header section of out[0..n) has a field called want. */
static bool
has_field(const char *out, size_t n, const char *want)
{
	size_t i = 0, e;

	while (i < n) {
		const char *nl = memchr(out + i, '\n', n - i);

		e = nl ? (size_t)(nl - out) + 1 : n;
		if (e - i <= 2)		/* the empty line: end of header */
			break;
		if (rfc5322_field_is(out + i, e - i, want))
			return true;
		i = e;
	}
	return false;
}

/*
 * Whether the header section of out[0..n) holds a CR not followed by LF.
 * smtp_send() turns a bare CR into CRLF on the wire, so such a CR would
 * start a header line that msg_rewrite() never looked at (a Bcc it did
 * not remove, a To it did not collect).
 */
static bool
header_bare_cr(const char *out, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (i + 3 < n && memcmp(out + i, "\r\n\r\n", 4) == 0)
			return false;
		if (i == 0 && n >= 2 && memcmp(out, "\r\n", 2) == 0)
			return false;	/* no header at all */
		if (out[i] == '\r' && (i + 1 == n || out[i + 1] != '\n'))
			return true;
	}
	return false;
}

static void
check_output(int fd, const struct msg_info *info, bool want_rcpts)
{
	char *out;
	size_t n, i, col;
	off_t end;

	FZ_CHECK((end = lseek(fd, 0, SEEK_END)) >= 0);
	FZ_CHECK(end == info->size);
	n = (size_t)end;
	if ((out = malloc(n ? n : 1)) == NULL)
		abort();
	FZ_CHECK(pread(fd, out, n, 0) == (ssize_t)n);
	for (i = 0, col = 0; i < n; i++) {
		if (out[i] == '\n') {
			FZ_CHECK(i > 0 && out[i - 1] == '\r');
			col = 0;
			continue;
		}
		if (out[i] != '\r' || i + 1 >= n || out[i + 1] != '\n')
			col++;
		FZ_CHECK(col <= MSG_LINE_MAX);
	}
	FZ_CHECK(n == 0 || (n >= 2 && out[n - 2] == '\r' &&
	    out[n - 1] == '\n'));
	FZ_CHECK(!has_field(out, n, "Bcc"));
	FZ_CHECK(!has_field(out, n, "Resent-Bcc"));
	FZ_CHECK(!header_bare_cr(out, n));
	FZ_CHECK(has_field(out, n, "Date"));
	FZ_CHECK(has_field(out, n, "Message-ID"));
	FZ_CHECK(has_field(out, n, "From"));
	if (want_rcpts)
		for (i = 0; i < info->rcpts.n; i++)
			FZ_CHECK(!fz_has_ctl(info->rcpts.v[i].addr, true));
	else
		FZ_CHECK(info->rcpts.n == 0);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const local[] = { "myhost", "myhost.local", NULL };
	static const enum rewrite_from rw[] = { REWRITE_AUTO, REWRITE_NEVER,
	    REWRITE_ALWAYS, REWRITE_AUTO };
	struct errinfo ei;
	struct msg_opts o;
	struct msg_info info;
	unsigned flags;
	int in, out;
	enum status st;

	flags = fz_byte(&data, &size);
	memset(&o, 0, sizeof(o));
	o.dot_ends = (flags & 1) != 0;
	o.want_rcpts = (flags & 2) != 0;
	o.rewrite = rw[(flags >> 2) & 3];
	o.from_addr = "sender@example.com";
	o.from_name = (flags & 0x10) ? "Fuzz \"Q\" Tester" : NULL;
	o.domain = (flags & 0x20) ? "example.com" : NULL;
	o.local_names = local;
	o.max_header = (flags & 0x40) ? 512 : 0;
	o.max_size = (flags & 0x80) ? 4096 : 0;
	o.tmpdir = getenv("TMPDIR");
	o.now = 1764155719;

	in = memfile("fuzz-in");
	out = memfile("fuzz-out");
	FZ_CHECK(write(in, data, size) == (ssize_t)size);
	FZ_CHECK(lseek(in, 0, SEEK_SET) == 0);

	memset(&info, 0, sizeof(info));
	st_clear(&ei);
	st = msg_rewrite(in, out, &o, &info, &ei);
	if (st == ST_OK)
		check_output(out, &info, o.want_rcpts);
	else
		FZ_CHECK(ei.st == st && (st == ST_LIMIT || st == ST_DATAERR ||
		    st == ST_SYS));
	msg_info_free(&info);
	close(in);
	close(out);
	return 0;
}
