/*
 * bm-rawtls: the limit for bench row 3, the raw TLS throughput of the
 * connection bearmail would use to the same sink.
 *
 *	bm-rawtls --ca FILE --secret-file FILE --user U --bytes N
 *	    [--tls starttls|tls] HOST PORT
 *
 * Opens the connection with the core's conn/tls (the same code, the same
 * cipher suite and the same write coalescing as bearmail), says EHLO,
 * STARTTLS, AUTH XOAUTH2, MAIL, RCPT and DATA, then writes N octets of
 * ready-made CRLF lines from one 64 KB block in memory: no reading of
 * standard input, no line handling, no dot-stuffing.  What bearmail
 * takes beyond this for the same N is its own cost.  Exits 0 when the
 * sink answered 250 to the message, else st_exitcode().
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base64.h"
#include "buf.h"
#include "conn.h"
#include "status.h"
#include "tls.h"

#define BLOCK_LINES	819	/* 819 lines of 80 octets: just under 64 KB */
#define LINE_LEN	80

/* Read one (possibly multi-line) reply; fail unless it starts with want. */
static enum status
reply(struct conn *c, char want, struct errinfo *ei)
{
	enum status st;
	char *line;
	size_t len;

	do {
		if ((st = conn_readline(c, &line, &len, ei)) != ST_OK)
			return st;
		if (len < 3)
			return st_error(ei, ST_PROTO, "short reply");
	} while (len > 3 && line[3] == '-');
	if (line[0] != want)
		return st_error(ei, ST_PROTO, "unexpected reply: %.60s", line);
	return ST_OK;
}

static enum status
read_secret(const char *path, char *out, size_t max, struct errinfo *ei)
{
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY)) == -1)
		return st_errno(ei, ST_CONFIG, "%s", path);
	n = read(fd, out, max - 1);
	close(fd);
	if (n <= 0)
		return st_error(ei, ST_CONFIG, "%s: empty", path);
	out[n] = '\0';
	out[strcspn(out, "\r\n")] = '\0';
	return ST_OK;
}

static enum status
run(const struct conn_opts *o, const char *ca, const char *secret_file,
    const char *user, const char *mode, long long bytes, struct errinfo *ei)
{
	struct tls_ctx *tctx = NULL;
	struct conn *c = NULL;
	struct buf ir, raw;
	char token[8192], *block = NULL;
	long long left;
	enum status st;
	int i;

	buf_init(&ir, 32 * 1024);
	buf_init(&raw, 16 * 1024);
	if ((st = read_secret(secret_file, token, sizeof(token), ei)) != ST_OK)
		goto out;
	if ((st = tls_ctx_new(&tctx, ca, ei)) != ST_OK ||
	    (st = conn_open(&c, o, ei)) != ST_OK)
		goto out;
	if (strcmp(mode, "tls") == 0 &&
	    (st = conn_starttls(c, tctx, ei)) != ST_OK)
		goto out;
	if ((st = reply(c, '2', ei)) != ST_OK ||
	    (st = conn_cmd(c, false, ei, "EHLO bench.example")) != ST_OK ||
	    (st = reply(c, '2', ei)) != ST_OK)
		goto out;
	if (strcmp(mode, "starttls") == 0) {
		if ((st = conn_cmd(c, false, ei, "STARTTLS")) != ST_OK ||
		    (st = reply(c, '2', ei)) != ST_OK ||
		    (st = conn_starttls(c, tctx, ei)) != ST_OK ||
		    (st = conn_cmd(c, false, ei, "EHLO bench.example")) != ST_OK ||
		    (st = reply(c, '2', ei)) != ST_OK)
			goto out;
	}
	if ((st = buf_printf(&raw, ei, "user=%s\001auth=Bearer %s\001\001",
	    user, token)) != ST_OK ||
	    (st = b64_encode(&ir, raw.data, raw.len, ei)) != ST_OK)
		goto out;
	if ((st = conn_cmd(c, true, ei, "AUTH XOAUTH2 %s", ir.data)) != ST_OK ||
	    (st = reply(c, '2', ei)) != ST_OK)
		goto out;
	if ((st = conn_cmd(c, false, ei, "MAIL FROM:<%s>", user)) != ST_OK ||
	    (st = conn_cmd(c, false, ei, "RCPT TO:<sink@example.org>")) != ST_OK ||
	    (st = conn_cmd(c, false, ei, "DATA")) != ST_OK ||
	    (st = reply(c, '2', ei)) != ST_OK ||
	    (st = reply(c, '2', ei)) != ST_OK ||
	    (st = reply(c, '3', ei)) != ST_OK)
		goto out;
	if ((block = malloc(BLOCK_LINES * LINE_LEN)) == NULL) {
		st = st_errno(ei, ST_SYS, "malloc");
		goto out;
	}
	for (i = 0; i < BLOCK_LINES; i++) {
		memset(block + i * LINE_LEN, 'x', LINE_LEN - 2);
		memcpy(block + i * LINE_LEN + LINE_LEN - 2, "\r\n", 2);
	}
	for (left = bytes; left > 0; ) {
		size_t n = BLOCK_LINES * LINE_LEN;

		if ((long long)n > left)
			n = (size_t)(left / LINE_LEN + 1) * LINE_LEN;
		if ((st = conn_write(c, block, n, ei)) != ST_OK)
			goto out;
		left -= (long long)n;
	}
	if ((st = conn_write(c, ".\r\n", 3, ei)) != ST_OK ||
	    (st = conn_flush(c, ei)) != ST_OK ||
	    (st = reply(c, '2', ei)) != ST_OK ||
	    (st = conn_cmd(c, false, ei, "QUIT")) != ST_OK ||
	    (st = reply(c, '2', ei)) != ST_OK)
		goto out;
out:
	st_wipe(token, sizeof(token));
	buf_wipe(&raw);
	buf_wipe(&ir);
	free(block);
	conn_close(c);
	tls_ctx_free(tctx);
	return st;
}

int
main(int argc, char **argv)
{
	struct conn_opts o = { .timeout = 60 };
	struct errinfo ei;
	const char *ca = NULL, *secret = NULL, *user = NULL, *mode = "starttls";
	long long bytes = -1;
	enum status st;
	int i;

	st_clear(&ei);
	for (i = 1; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--ca") == 0)
			ca = argv[i + 1];
		else if (strcmp(argv[i], "--secret-file") == 0)
			secret = argv[i + 1];
		else if (strcmp(argv[i], "--user") == 0)
			user = argv[i + 1];
		else if (strcmp(argv[i], "--tls") == 0)
			mode = argv[i + 1];
		else if (strcmp(argv[i], "--bytes") == 0)
			bytes = strtoll(argv[i + 1], NULL, 10);
		else
			break;
	}
	if (argc - i != 2 || ca == NULL || secret == NULL || user == NULL ||
	    bytes < 0 || (strcmp(mode, "starttls") != 0 &&
	    strcmp(mode, "tls") != 0)) {
		fprintf(stderr, "usage: bm-rawtls --ca FILE --secret-file FILE "
		    "--user U --bytes N [--tls starttls|tls] HOST PORT\n");
		return 64;
	}
	o.host = argv[i];
	o.port = argv[i + 1];
	if ((st = run(&o, ca, secret, user, mode, bytes, &ei)) != ST_OK) {
		fprintf(stderr, "bm-rawtls: %s\n", ei.msg);
		return st_exitcode(st);
	}
	return 0;
}
