/* Unit tests: the message rewrite (msg.c). */
#include "config.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msg.h"
#include "tap.h"

/*
 * A watch on mkostemp(): the re-encode's scratch file must be made
 * close-on-exec, or a child started later (an MDA, bearmail-auth)
 * would inherit the message body.
 */
static int scratch_made, scratch_cloexec;

int
mkostemp(char *tmpl, int flags)
{
	static int (*real)(char *, int);
	int fd;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "mkostemp");
	if (real == NULL)
		return -1;
	fd = real(tmpl, flags);
	scratch_made++;
	if (fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC))
		scratch_cloexec++;
	return fd;
}

static const char *const locals[] = { "myhost.example.net", "myhost", NULL };

static struct msg_opts
defopts(void)
{
	struct msg_opts o;

	memset(&o, 0, sizeof(o));
	o.dot_ends = false;
	o.from_addr = "me@example.com";
	o.from_name = NULL;
	o.domain = "example.com";
	o.local_names = locals;
	o.rewrite = REWRITE_AUTO;
	o.now = 1700000000;
	return o;
}

static int
tmpfd(void)
{
	char path[] = "/tmp/test_msg.XXXXXX";
	int fd = mkstemp(path);

	if (fd >= 0)
		unlink(path);
	return fd;
}

/* Run the rewrite over in[0..len); returns the output (free it) or NULL. */
static char *
run(const char *in, size_t len, const struct msg_opts *o,
    struct msg_info *info, enum status *stp, struct errinfo *ei)
{
	int ifd = tmpfd(), ofd = tmpfd();
	char *out = NULL;
	off_t sz;

	memset(info, 0, sizeof(*info));
	st_clear(ei);
	if (ifd < 0 || ofd < 0 || write(ifd, in, len) != (ssize_t)len ||
	    lseek(ifd, 0, SEEK_SET) != 0)
		goto done;
	*stp = msg_rewrite(ifd, ofd, o, info, ei);
	sz = lseek(ofd, 0, SEEK_END);
	if (sz < 0 || (out = calloc(1, (size_t)sz + 1)) == NULL)
		goto done;
	if (pread(ofd, out, (size_t)sz, 0) != sz) {
		free(out);
		out = NULL;
	}
done:
	if (ifd >= 0)
		close(ifd);
	if (ofd >= 0)
		close(ofd);
	return out;
}

static char *
runs(const char *in, const struct msg_opts *o, struct msg_info *info,
    enum status *stp)
{
	struct errinfo ei;

	return run(in, strlen(in), o, info, stp, &ei);
}

/* The body after the first CRLF CRLF. */
static const char *
body_of(const char *m)
{
	const char *b = m != NULL ? strstr(m, "\r\n\r\n") : NULL;

	return b != NULL ? b + 4 : "";
}

/* Whether every line ends in CRLF, none is longer than max, no bare LF. */
static bool
lines_ok(const char *m, size_t max)
{
	const char *p = m, *nl;

	while (*p != '\0') {
		if ((nl = strchr(p, '\n')) == NULL)
			return false;
		if (nl == p || nl[-1] != '\r' || (size_t)(nl - 1 - p) > max)
			return false;
		p = nl + 1;
	}
	return true;
}

static bool
has_line(const char *m, const char *line)
{
	size_t n = strlen(line);
	const char *p = m;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, line, n) == 0 && p[n] == '\r' && p[n + 1] == '\n')
			return true;
		if ((p = strstr(p, "\r\n")) != NULL)
			p += 2;
	}
	return false;
}

/* Decode a quoted-printable body (CRLF lines) into a fresh string. */
static char *
qp_decode(const char *s)
{
	char *out = malloc(strlen(s) + 1), *o = out;

	while (out != NULL && *s != '\0') {
		if (s[0] == '=' && s[1] == '\r' && s[2] == '\n') {
			s += 3;
		} else if (s[0] == '=' && s[1] != '\0' && s[2] != '\0') {
			char h[3] = { s[1], s[2], 0 };
			*o++ = (char)strtol(h, NULL, 16);
			s += 3;
		} else if (s[0] == '\r' && s[1] == '\n') {
			*o++ = '\n';
			s += 2;
		} else
			*o++ = *s++;
	}
	if (out != NULL)
		*o = '\0';
	return out;
}

/* Remove the CR of every CRLF. */
static char *
unbreak(const char *s, bool join)
{
	char *out = malloc(strlen(s) + 1), *o = out;

	while (out != NULL && *s != '\0') {
		if (s[0] == '\r' && s[1] == '\n') {
			if (!join)
				*o++ = '\n';
			s += 2;
		} else
			*o++ = *s++;
	}
	if (out != NULL)
		*o = '\0';
	return out;
}

static void
test_basic(void)
{
	struct msg_opts o = defopts();
	struct msg_info info;
	enum status st = ST_SYS;
	char *m;

	m = runs("From root@host Thu Nov 26 11:00:00 2026\n"
	    "Subject: hi\nTo: bob@example.org\n\nline one\nline two\n",
	    &o, &info, &st);
	is_int(st, ST_OK, "plain LF message rewrites");
	ok(m != NULL && strncmp(m, "Subject: hi\r\n", 13) == 0,
	    "mbox From line dropped, CRLF out");
	ok(m != NULL && lines_ok(m, 998), "every line CRLF");
	ok(m != NULL && strstr(m, "\r\nDate: ") != NULL, "Date added");
	ok(info.date_added && info.msgid_added && info.from_added,
	    "info says Date, Message-ID, From added");
	ok(info.message_id != NULL &&
	    strstr(info.message_id, "@example.com>") != NULL &&
	    info.message_id[0] == '<', "Message-ID on the account's domain: %s",
	    info.message_id ? info.message_id : "(null)");
	ok(m != NULL && has_line(m, "From: me@example.com"), "From added");
	is_str(body_of(m), "line one\r\nline two\r\n", "body kept");
	is_int(info.size, m != NULL ? (long long)strlen(m) : -1, "size counted");
	ok(!info.body_8bit && !info.hdr_8bit, "7-bit message");
	free(m);
	msg_info_free(&info);

	o.from_name = "Cron Daemon";
	m = runs("Subject: x\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	    "Message-ID: <a@b>\n\r\nbody\r\nmore\n", &o, &info, &st);
	is_int(st, ST_OK, "mixed endings");
	ok(m != NULL && has_line(m, "From: \"Cron Daemon\" <me@example.com>"),
	    "-F name in added From");
	ok(!info.date_added && !info.msgid_added, "existing Date, Message-ID kept");
	is_str(info.message_id, "<a@b>", "existing Message-ID reported");
	is_str(body_of(m), "body\r\nmore\r\n", "mixed endings canonical");
	free(m);
	msg_info_free(&info);

	o.from_name = "J\xc3\xa9r\xc3\xb4me";
	m = runs("Subject: x\n\nb\n", &o, &info, &st);
	ok(m != NULL && has_line(m,
	    "From: =?UTF-8?B?SsOpcsO0bWU=?= <me@example.com>"),
	    "non-ASCII name encoded (RFC 2047)");
	free(m);
	msg_info_free(&info);

	{
		static char huge[6000];

		memset(huge, 'n', sizeof(huge) - 1);
		o.from_name = huge;
		m = runs("Subject: x\n\nb\n", &o, &info, &st);
		is_int(st, ST_OK, "a huge -F name is not fatal");
		ok(m != NULL && has_line(m, "From: me@example.com"),
		    "the address alone then");
		free(m);
		msg_info_free(&info);
	}

	o = defopts();
	m = runs("just a body line\nsecond\n", &o, &info, &st);
	is_int(st, ST_OK, "message without a header");
	is_str(body_of(m), "just a body line\r\nsecond\r\n",
	    "blank line supplied before a body without header");
	free(m);
	msg_info_free(&info);

	m = runs("", &o, &info, &st);
	is_int(st, ST_OK, "empty input");
	ok(m != NULL && strstr(m, "Date: ") != NULL && strcmp(body_of(m), "") == 0,
	    "empty input gets a header and an empty body");
	free(m);
	msg_info_free(&info);

	m = runs("Subject: no newline at end\n\nlast", &o, &info, &st);
	is_str(body_of(m), "last\r\n", "last line without newline ended");
	free(m);
	msg_info_free(&info);

	m = runs("Subject: x\n\nFrom here\n>From there\n", &o, &info, &st);
	is_str(body_of(m), "From here\r\n>From there\r\n",
	    "From lines in the body untouched");
	free(m);
	msg_info_free(&info);
}

static void
test_dots(void)
{
	struct msg_opts o = defopts();
	struct msg_info info;
	enum status st = ST_SYS;
	char *m;

	o.dot_ends = true;
	m = runs("Subject: x\n\na\n.\nb\n", &o, &info, &st);
	is_str(body_of(m), "a\r\n", "without -i a dot line ends input");
	ok(info.dot_seen, "dot seen");
	free(m);
	msg_info_free(&info);

	m = runs("Subject: x\n\na\r\n.\r\nb\n", &o, &info, &st);
	is_str(body_of(m), "a\r\n", "dot CRLF ends input too");
	free(m);
	msg_info_free(&info);

	m = runs("Subject: x\n\n..\n. \n.x\n", &o, &info, &st);
	is_str(body_of(m), "..\r\n. \r\n.x\r\n", "other dot lines are data");
	free(m);
	msg_info_free(&info);

	o.dot_ends = false;
	m = runs("Subject: x\n\na\n.\nb\n", &o, &info, &st);
	is_str(body_of(m), "a\r\n.\r\nb\r\n", "with -i a dot line is data, "
	    "not stuffed");
	ok(!info.dot_seen, "no dot end");
	free(m);
	msg_info_free(&info);
}

static void
test_headers(void)
{
	struct msg_opts o = defopts();
	struct msg_info info;
	enum status st = ST_SYS;
	char *m;

	o.want_rcpts = true;
	m = runs("To: a@x.org, \"B\" <b@y.org>\nCc: c@z.org\nBcc: hidden@w.org,\n"
	    " second@w.org\nSubject: s\n\nbody\n", &o, &info, &st);
	is_int(st, ST_OK, "-t message");
	ok(m != NULL && strstr(m, "Bcc") == NULL && strstr(m, "hidden") == NULL &&
	    strstr(m, "second") == NULL, "Bcc and its continuation removed");
	is_int(info.rcpts.n, 5, "five header recipients");
	if (info.rcpts.n == 5) {
		is_str(info.rcpts.v[0].addr, "a@x.org", "To 1");
		is_str(info.rcpts.v[1].addr, "b@y.org", "To 2");
		is_str(info.rcpts.v[2].addr, "c@z.org", "Cc");
		is_str(info.rcpts.v[3].addr, "hidden@w.org", "Bcc 1");
		is_str(info.rcpts.v[4].addr, "second@w.org", "Bcc 2 (folded)");
	}
	ok(m != NULL && has_line(m, "To: a@x.org, \"B\" <b@y.org>"),
	    "To kept verbatim");
	free(m);
	msg_info_free(&info);

	m = runs("Resent-From: r@x.org\nResent-To: new@x.org\nResent-Bcc: nb@x.org\n"
	    "Received: by x\nResent-To: old@x.org\nTo: orig@x.org\n\nb\n",
	    &o, &info, &st);
	is_int(info.rcpts.n, 2, "first Resent block used");
	if (info.rcpts.n == 2) {
		is_str(info.rcpts.v[0].addr, "new@x.org", "Resent-To");
		is_str(info.rcpts.v[1].addr, "nb@x.org", "Resent-Bcc");
	}
	ok(m != NULL && strstr(m, "Resent-Bcc") == NULL, "Resent-Bcc removed");
	ok(m != NULL && strstr(m, "Resent-To: old@x.org") != NULL,
	    "older Resent block kept");
	free(m);
	msg_info_free(&info);

	m = runs("To: undisclosed-recipients:;\nSubject: s\n\nb\n", &o, &info,
	    &st);
	is_int(st, ST_OK, "empty group");
	is_int(info.rcpts.n, 0, "no recipients from an empty group");
	free(m);
	msg_info_free(&info);

	m = runs("To: <<<broken\n\nb\n", &o, &info, &st);
	is_int(st, ST_DATAERR, "-t with an unparseable To fails");
	free(m);
	msg_info_free(&info);
	o.want_rcpts = false;
	m = runs("To: <<<broken\n\nb\n", &o, &info, &st);
	is_int(st, ST_OK, "without -t an unparseable To passes");
	free(m);
	msg_info_free(&info);

	m = runs("Subject: caf\xc3\xa9\nTo: j\xc3\xb6rg@example.de\n\nb\n", &o,
	    &info, &st);
	ok(info.hdr_8bit && !info.body_8bit, "raw 8-bit header detected");
	ok(info.addr_utf8, "non-ASCII address detected");
	ok(m != NULL && has_line(m, "Subject: caf\xc3\xa9"),
	    "raw 8-bit header passed through");
	free(m);
	msg_info_free(&info);

	m = runs("Subject: x\n\nna\xc3\xafve\n", &o, &info, &st);
	ok(info.body_8bit && !info.hdr_8bit, "8-bit body detected");
	free(m);
	msg_info_free(&info);
}

static void
test_from(void)
{
	struct msg_opts o = defopts();
	struct msg_info info;
	enum status st = ST_SYS;
	char *m;

	m = runs("From: root (Cron Daemon)\nSubject: cron\n\nb\n", &o, &info, &st);
	ok(m != NULL && has_line(m, "From: \"Cron Daemon\" <me@example.com>"),
	    "cron's From rewritten, display name kept");
	ok(info.from_rewritten && !info.from_added, "info: rewritten");
	free(m);
	msg_info_free(&info);

	m = runs("From: Logwatch\nSubject: x\n\nb\n", &o, &info, &st);
	ok(m != NULL && has_line(m, "From: me@example.com"),
	    "bare From rewritten");
	free(m);
	msg_info_free(&info);

	m = runs("From: \"Root\" <root@myhost.example.net>\n\nb\n", &o, &info, &st);
	ok(m != NULL && has_line(m, "From: \"Root\" <me@example.com>"),
	    "From on the host's own name rewritten");
	free(m);
	msg_info_free(&info);

	m = runs("From: Alice <alice@elsewhere.org>\n\nb\n", &o, &info, &st);
	ok(m != NULL && has_line(m, "From: Alice <alice@elsewhere.org>"),
	    "a real From left alone (auto)");
	ok(!info.from_rewritten, "not rewritten");
	free(m);
	msg_info_free(&info);

	o.rewrite = REWRITE_ALWAYS;
	m = runs("From: Alice <alice@elsewhere.org>\n\nb\n", &o, &info, &st);
	ok(m != NULL && has_line(m, "From: \"Alice\" <me@example.com>"),
	    "always rewrites, name kept");
	free(m);
	msg_info_free(&info);

	o.rewrite = REWRITE_NEVER;
	m = runs("From: root (Cron Daemon)\n\nb\n", &o, &info, &st);
	ok(m != NULL && has_line(m, "From: root (Cron Daemon)"),
	    "never leaves it");
	free(m);
	msg_info_free(&info);

	ok(msg_should_rewrite(REWRITE_AUTO, "root", locals), "auto: bare");
	ok(msg_should_rewrite(REWRITE_AUTO, "x@LOCALHOST", locals), "auto: localhost");
	ok(msg_should_rewrite(REWRITE_AUTO, "x@MyHost", locals), "auto: host name");
	ok(!msg_should_rewrite(REWRITE_AUTO, "x@example.org", locals), "auto: real");
	ok(!msg_should_rewrite(REWRITE_AUTO, "", locals), "auto: null sender");
	ok(!msg_should_rewrite(REWRITE_ALWAYS, "", locals), "always: null sender");
	ok(msg_should_rewrite(REWRITE_ALWAYS, "x@example.org", locals), "always");
	ok(!msg_should_rewrite(REWRITE_NEVER, "root", locals), "never");
}

static void
bufa(struct buf *b, const char *s)
{
	buf_adds(b, s, NULL);
}

static void
rep(struct buf *b, char c, size_t n)
{
	while (n-- > 0)
		buf_add(b, &c, 1, NULL);
}

static void
test_long(void)
{
	struct msg_opts o = defopts();
	struct msg_info info;
	enum status st = ST_SYS;
	struct errinfo ei;
	size_t big = 200000, i, hl;
	struct buf in, want;
	char *m, *dec;

	buf_init(&in, 1 << 20);
	buf_init(&want, 1 << 20);

	/* Plain text: quoted-printable, meaning intact. */
	bufa(&in, "Subject: long\nContent-Type: text/plain; charset=utf-8\n"
	    "Content-Transfer-Encoding: 8bit\n\nshort line =\n");
	bufa(&want, "short line =\n");
	for (i = 0; i < 3000; i++) {
		char c = (char)('a' + i % 26);
		buf_add(&in, &c, 1, NULL);
		buf_add(&want, &c, 1, NULL);
	}
	bufa(&in, " \xc3\xa9 tail \n.\nend\n");
	bufa(&want, " \xc3\xa9 tail \n.\nend\n");
	scratch_made = scratch_cloexec = 0;
	m = run(in.data, in.len, &o, &info, &st, &ei);
	is_int(st, ST_OK, "long text line: ok");
	ok(info.qp_encoded, "re-encoded as quoted-printable");
	ok(scratch_made == 1 && scratch_cloexec == 1,
	    "the scratch file is close-on-exec (%d of %d)", scratch_cloexec,
	    scratch_made);
	ok(m != NULL && lines_ok(m, 998), "no line over 998");
	ok(m != NULL && lines_ok(body_of(m), 76), "QP lines at most 76");
	ok(m != NULL && has_line(m, "Content-Transfer-Encoding: quoted-printable")
	    && strstr(m, "8bit") == NULL, "CTE replaced");
	ok(m != NULL && has_line(m, "MIME-Version: 1.0"), "MIME-Version added");
	ok(!info.body_8bit, "body now 7-bit");
	dec = qp_decode(body_of(m));
	is_str(dec, want.data, "decoded body equals the input body");
	is_int(info.size, m != NULL ? (long long)strlen(m) : -1, "size after rewind");
	free(dec);
	free(m);
	msg_info_free(&info);

	/* A line longer than the read buffer, at the very start. */
	buf_reset(&in);
	bufa(&in, "Subject: huge\n\n");
	hl = in.len;
	for (i = hl; i < big; i++) {
		char c = (char)('A' + i % 20);
		buf_add(&in, &c, 1, NULL);
	}
	bufa(&in, "\n");
	m = run(in.data, in.len, &o, &info, &st, &ei);
	is_int(st, ST_OK, "200 kB line");
	dec = qp_decode(body_of(m));
	ok(dec != NULL && strlen(dec) == big - hl + 1 &&
	    memcmp(dec, in.data + hl, big - hl + 1) == 0,
	    "200 kB line intact after QP");
	ok(m != NULL && lines_ok(m, 998), "no line over 998");
	free(dec);
	free(m);
	msg_info_free(&info);

	/* base64 (not ours to re-encode): broken every 998 octets. */
	buf_reset(&in);
	bufa(&in, "Subject: b\nContent-Type: application/pdf\n"
	    "Content-Transfer-Encoding: base64\n\n");
	hl = in.len;
	for (i = hl; i < big; i++) {
		char c = (char)('A' + i % 26);
		buf_add(&in, &c, 1, NULL);
	}
	m = run(in.data, in.len, &o, &info, &st, &ei);
	is_int(st, ST_OK, "base64 long line");
	ok(!info.qp_encoded && info.lines_broken == (big - hl - 1) / 998,
	    "broken, not encoded (%zu breaks)", info.lines_broken);
	ok(m != NULL && lines_ok(m, 998), "no line over 998");
	dec = unbreak(body_of(m), true);
	ok(dec != NULL && strlen(dec) == big - hl &&
	    memcmp(dec, in.data + hl, big - hl) == 0,
	    "joined again it is the input");
	free(dec);
	free(m);
	msg_info_free(&info);

	/* Multipart: broken too. */
	buf_reset(&in);
	bufa(&in, "Subject: b\nMIME-Version: 1.0\nContent-Type: "
	    "multipart/mixed; boundary=x\n\n--x\n\n");
	rep(&in, 'z', 2500);
	bufa(&in, "\n--x--\n");
	m = run(in.data, in.len, &o, &info, &st, &ei);
	ok(st == ST_OK && !info.qp_encoded && info.lines_broken == 2,
	    "multipart long line broken twice (%zu)", info.lines_broken);
	ok(m != NULL && lines_ok(m, 998), "no line over 998");
	free(m);
	msg_info_free(&info);

	/* Exactly 998 is fine. */
	buf_reset(&in);
	bufa(&in, "Subject: b\n\n");
	rep(&in, 'q', 998);
	bufa(&in, "\n");
	m = run(in.data, in.len, &o, &info, &st, &ei);
	ok(st == ST_OK && !info.qp_encoded && info.lines_broken == 0,
	    "998 octets pass as they are");
	free(m);
	msg_info_free(&info);

	/* Long header lines: folded at whitespace, or forced. */
	buf_reset(&in);
	bufa(&in, "Subject:");
	for (i = 0; i < 300; i++)
		bufa(&in, " word");
	bufa(&in, "\nX-Blob: ");
	rep(&in, 'k', 2100);
	bufa(&in, "\n\nbody\n");
	m = run(in.data, in.len, &o, &info, &st, &ei);
	is_int(st, ST_OK, "long header lines");
	ok(m != NULL && lines_ok(m, 998), "header lines folded to 998");
	ok(info.headers_folded == 4, "four folds (%zu)", info.headers_folded);
	dec = unbreak(m, true);
	ok(dec != NULL && strstr(dec, "Subject: word word") != NULL,
	    "folding at whitespace keeps words");
	free(dec);
	free(m);
	msg_info_free(&info);
	buf_free(&in);
	buf_free(&want);
}

static void
test_limits(void)
{
	struct msg_opts o = defopts();
	struct msg_info info;
	enum status st = ST_SYS;
	struct errinfo ei;
	struct buf b;
	const char *in;
	char *m;

	buf_init(&b, 8192);
	bufa(&b, "Subject: x\nX-A: ");
	rep(&b, 'a', 2000);
	bufa(&b, "\n\nb\n");
	in = b.data;
	o.max_header = 1000;
	m = run(in, strlen(in), &o, &info, &st, &ei);
	is_int(st, ST_LIMIT, "header section limit: %s", ei.msg);
	ok(strstr(ei.msg, "header") != NULL, "the text says header");
	free(m);
	msg_info_free(&info);

	o = defopts();
	o.max_size = 500;
	m = run(in, strlen(in), &o, &info, &st, &ei);
	is_int(st, ST_LIMIT, "message size limit: %s", ei.msg);
	is_int(st_exitcode(st), 65, "exit 65");
	free(m);
	msg_info_free(&info);
	buf_free(&b);
}

static void
test_date(void)
{
	struct buf b;
	struct errinfo ei;

	buf_init(&b, 100);
	setenv("TZ", "UTC", 1);
	tzset();
	msg_date(&b, 1700000000, &ei);
	is_str(b.data, "Tue, 14 Nov 2023 22:13:20 +0000", "date format");
	buf_reset(&b);
	setenv("TZ", "EST5", 1);
	tzset();
	msg_date(&b, 1700000000, &ei);
	is_str(b.data, "Tue, 14 Nov 2023 17:13:20 -0500", "negative offset");
	buf_free(&b);
}

/* Whether m holds a CR that is not part of CRLF. */
static bool
has_bare_cr(const char *m, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (m[i] == '\r' && (i + 1 >= len || m[i + 1] != '\n'))
			return true;
	return false;
}

static void
test_stray_cr(void)
{
	struct msg_opts o = defopts();
	struct msg_info info;
	enum status st = ST_SYS;
	char *m, *big;
	size_t i, n;

	/* The reviewer's input: every line ends in CR CR LF. */
	o.want_rcpts = true;
	m = runs("From: a@b.c\r\r\nTo: x@y.z\r\r\nBcc: secret@hidden.org\r\r\n"
	    "Subject: hi\r\r\n\r\r\nbody\r\r\n", &o, &info, &st);
	is_int(st, ST_OK, "CR CR LF message");
	ok(m != NULL && strstr(m, "Bcc") == NULL &&
	    strstr(m, "secret") == NULL, "CR CR LF: Bcc removed");
	is_int(info.rcpts.n, 2, "CR CR LF: -t finds To and Bcc");
	if (info.rcpts.n == 2) {
		is_str(info.rcpts.v[0].addr, "x@y.z", "CR CR LF: To");
		is_str(info.rcpts.v[1].addr, "secret@hidden.org",
		    "CR CR LF: Bcc");
	}
	ok(m != NULL && has_line(m, "Subject: hi") && has_line(m, "To: x@y.z"),
	    "CR CR LF: fields parsed and kept");
	is_str(body_of(m), "body\r\n", "CR CR LF: body intact");
	ok(m != NULL && !has_bare_cr(m, strlen(m)) && lines_ok(m, 998),
	    "CR CR LF: only CRLF goes out");
	free(m);
	msg_info_free(&info);

	/* Bare CRs inside header fields become spaces. */
	m = runs("To: x@y.z\nBcc: secret@hidden.org,\rother@hidden.org\n"
	    "Subject: a\rb\nBcc\r: third@hidden.org\n\nbody\n", &o, &info,
	    &st);
	is_int(st, ST_OK, "bare CR in header fields");
	ok(m != NULL && strstr(m, "hidden") == NULL && strstr(m, "Bcc") == NULL,
	    "bare CR: every Bcc removed");
	is_int(info.rcpts.n, 4, "bare CR: all recipients found");
	if (info.rcpts.n == 4) {
		is_str(info.rcpts.v[2].addr, "other@hidden.org",
		    "bare CR: the address after the CR");
		is_str(info.rcpts.v[3].addr, "third@hidden.org",
		    "bare CR: CR before the colon");
	}
	ok(m != NULL && has_line(m, "Subject: a b"), "bare CR: a space");
	ok(m != NULL && !has_bare_cr(m, strlen(m)), "bare CR: none sent");
	free(m);
	msg_info_free(&info);
	o.want_rcpts = false;

	/* In the body a bare CR ends the line, as SMTP would end it. */
	m = runs("Subject: s\n\none\rtwo\r\rthree\r\n.\rfour\n", &o, &info,
	    &st);
	is_int(st, ST_OK, "bare CR in the body");
	is_str(body_of(m), "one\r\ntwo\r\n\r\nthree\r\n.\r\nfour\r\n",
	    "body: a bare CR is a line end");
	ok(m != NULL && (off_t)strlen(m) == info.size,
	    "the size counts what is sent");
	free(m);
	msg_info_free(&info);
	o.dot_ends = true;
	m = runs("Subject: s\n\n.\rx\n.\nafter\n", &o, &info, &st);
	is_str(body_of(m), ".\r\nx\r\n", "\".\\r\" does not end input, "
	    "\".\\n\" does");
	free(m);
	msg_info_free(&info);
	o.dot_ends = false;

	/* A CR CR LF that straddles the 64 KB read buffer. */
	n = 64 * 1024 - 1;
	big = malloc(n + 64);
	if (big != NULL) {
		memcpy(big, "Content-Type: application/octet-stream\n\n", 40);
		for (i = 40; i < n; i++)
			big[i] = 'a';
		memcpy(big + n, "\r\r\nx\r\n", 7);
		m = run(big, n + 6, &o, &info, &st, &(struct errinfo){ 0 });
		is_int(st, ST_OK, "long line ending across reads");
		ok(m != NULL && !has_bare_cr(m, strlen(m)) && lines_ok(m, 998),
		    "no CR split from its LF");
		ok(m != NULL && strlen(m) > 6 &&
		    strcmp(m + strlen(m) - 6, "a\r\nx\r\n") == 0,
		    "the line ends once, then x");
		free(m);
		msg_info_free(&info);
		free(big);
	}
}

int
main(void)
{
	test_basic();
	test_stray_cr();
	test_dots();
	test_headers();
	test_from();
	test_long();
	test_limits();
	test_date();
	return tap_done();
}
