/*
 * Unit tests: the connection layer against a loopback socket held in the
 * same process (the kernel completes the connect from the backlog), and
 * the crypto primitives of tls.c.  RS256 is checked byte for byte against
 * the openssl command line (PKCS#1 v1.5 signatures are deterministic);
 * that part is skipped when openssl is not installed.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "tls.h"
#include "tap.h"

static int lfd = -1;
static char port[16];

static void
listen_loopback(void)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd == -1 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(lfd, 4) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl) == -1) {
		perror("listen");
		exit(1);
	}
	snprintf(port, sizeof(port), "%u", ntohs(sin.sin_port));
}

/* Open a conn to the listener; *srv gets the server's end. */
static struct conn *
pair(int *srv, size_t line_max)
{
	struct conn_opts o = { "127.0.0.1", port, 2, line_max, NULL, NULL };
	struct errinfo ei;
	struct conn *c = NULL;

	st_clear(&ei);
	if (conn_open(&c, &o, &ei) != ST_OK) {
		printf("# conn_open: %s\n", ei.msg);
		exit(1);
	}
	*srv = accept(lfd, NULL, NULL);
	return c;
}

static void
put(int fd, const char *s, size_t n)
{
	if (write(fd, s, n) != (ssize_t)n) {
		perror("write");
		exit(1);
	}
}

static void
test_lines(void)
{
	struct errinfo ei;
	struct conn *c;
	char *line, buf[16];
	size_t len;
	ssize_t n;
	int s;

	c = pair(&s, 10);
	ok(!conn_is_tls(c), "plain connection is not TLS");
	is_str(conn_peer(c), "127.0.0.1", "peer address");

	st_clear(&ei);
	put(s, "abc\r", 4);
	put(s, "\ndef\nxyz", 8);
	is_int(conn_readline(c, &line, &len, &ei), ST_OK, "CR and LF "
	    "from separate writes");
	is_str(line, "abc", "CRLF stripped");
	is_int(len, 3, "length");
	is_int(conn_readline(c, &line, &len, &ei), ST_OK, "bare LF line");
	is_str(line, "def", "LF stripped");
	is_int(conn_pending(c), 3, "partial line pending");
	put(s, "\r\n0123456789\r\n", 14);
	conn_readline(c, &line, &len, &ei);
	is_str(line, "xyz", "partial line completed");
	is_int(conn_readline(c, &line, &len, &ei), ST_OK,
	    "line of exactly line_max");
	is_int(len, 10, "its length");

	put(s, "hello", 5);
	is_int(conn_read_exact(c, buf, 5, &ei), ST_OK, "exact read");
	ok(memcmp(buf, "hello", 5) == 0, "exact bytes");

	st_clear(&ei);
	ok(conn_cmd(c, false, &ei, "A %s", "1") == ST_OK &&
	    conn_cmd(c, true, &ei, "B %d", 2) == ST_OK,
	    "two commands queued");
	ok(conn_cmd(c, false, &ei, "C%s", "\r\nD") == ST_DATAERR,
	    "CR/LF inside a command refused");
	st_clear(&ei);
	is_int(conn_flush(c, &ei), ST_OK, "flush");
	n = read(s, buf, sizeof(buf));
	ok(n == 10 && memcmp(buf, "A 1\r\nB 2\r\n", 10) == 0,
	    "both commands in one read");

	is_int(conn_tls_info(c, NULL, &ei), ST_TLS, "no TLS info on plain");

	/* Too long to send: a credential's or the configuration's fault. */
	{
		static char big[CONN_WBUF_FLUSH + 1];

		memset(big, 'A', sizeof(big) - 1);
		st_clear(&ei);
		is_int(conn_cmd(c, true, &ei, "AUTH XOAUTH2 %s", big), ST_AUTH,
		    "an AUTH line over 64 KB: authentication, not the message");
		ok(strstr(ei.msg, "AAAA") == NULL, "no secret in: %s", ei.msg);
		st_clear(&ei);
		is_int(conn_cmd(c, false, &ei, "SELECT %s", big), ST_CONFIG,
		    "another line over 64 KB: configuration");
	}

	st_clear(&ei);
	put(s, "01234567890\r\n", 13);
	is_int(conn_readline(c, &line, &len, &ei), ST_PROTO,
	    "line_max + 1 refused");
	conn_close(c);
	close(s);

	c = pair(&s, 0);
	st_clear(&ei);
	put(s, "a\0b\r\n", 5);
	is_int(conn_readline(c, &line, &len, &ei), ST_PROTO, "NUL refused");
	close(s);
	conn_close(c);

	c = pair(&s, 0);
	st_clear(&ei);
	close(s);
	is_int(conn_readline(c, &line, &len, &ei), ST_NET, "EOF is NET");
	conn_close(c);
	conn_close(NULL);

	/* A refused connect reports its own status, not an earlier one. */
	{
		struct sockaddr_in sin;
		socklen_t sl = sizeof(sin);
		struct conn_opts o = { "127.0.0.1", NULL, 2, 0, NULL, NULL };
		char dead[16];
		int d;

		d = socket(AF_INET, SOCK_STREAM, 0);
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		bind(d, (struct sockaddr *)&sin, sizeof(sin));
		getsockname(d, (struct sockaddr *)&sin, &sl);
		snprintf(dead, sizeof(dead), "%u", ntohs(sin.sin_port));
		close(d);	/* nobody listens there now */
		o.port = dead;
		st_clear(&ei);
		st_error(&ei, ST_AUTH, "an earlier failure");
		c = NULL;
		is_int(conn_open(&c, &o, &ei), ST_NET,
		    "refused: NET, though ei already held AUTH");
		ok(c == NULL, "no connection");
	}
}

static void
test_primitives(void)
{
	static const char abc_sha256[] =
	    "\xba\x78\x16\xbf\x8f\x01\xcf\xea\x41\x41\x40\xde\x5d\xae\x22\x23"
	    "\xb0\x03\x61\xa3\x96\x17\x7a\x9c\xb4\x10\xff\x61\xf2\x00\x15\xad";
	uint8_t md[32], r1[32], r2[32];
	struct errinfo ei;

	tls_sha256("abc", 3, md);
	ok(memcmp(md, abc_sha256, 32) == 0, "SHA-256 of abc");
	st_clear(&ei);
	ok(tls_random(r1, sizeof(r1), &ei) == ST_OK &&
	    tls_random(r2, sizeof(r2), &ei) == ST_OK &&
	    memcmp(r1, r2, sizeof(r1)) != 0, "random bytes differ");
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	p = malloc((size_t)n + 1);
	if (p == NULL || fread(p, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(p);
		return NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return p;
}

static void
test_rs256(void)
{
	static const char msg[] = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0";
	char dir[] = "/tmp/bm-test-conn.XXXXXX", cmd[512], path[256];
	char *key, *want;
	uint8_t *sig = NULL;
	size_t keylen, wantlen, siglen;
	struct errinfo ei;

	if (system("openssl version >/dev/null 2>&1") != 0) {
		ok(1, "# SKIP openssl not installed");
		return;
	}
	if (mkdtemp(dir) == NULL) {
		ok(0, "mkdtemp: %s", strerror(errno));
		return;
	}
	snprintf(cmd, sizeof(cmd), "cd %s && "
	    "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
	    "-out rsa.pem 2>/dev/null && "
	    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
	    "-out ec.pem 2>/dev/null && "
	    "printf %%s '%s' > msg && "
	    "openssl dgst -sha256 -sign rsa.pem -out sig msg", dir, msg);
	if (system(cmd) != 0) {
		ok(0, "openssl could not make the test keys");
		return;
	}
	snprintf(path, sizeof(path), "%s/rsa.pem", dir);
	key = slurp(path, &keylen);
	snprintf(path, sizeof(path), "%s/sig", dir);
	want = slurp(path, &wantlen);
	st_clear(&ei);
	is_int(tls_rs256_sign(key, keylen, msg, strlen(msg), &sig, &siglen,
	    &ei), ST_OK, "RS256 signs: %s", ei.msg);
	ok(sig != NULL && want != NULL && siglen == wantlen &&
	    memcmp(sig, want, siglen) == 0, "RS256 equals openssl's signature");
	free(sig);
	free(key);
	free(want);

	snprintf(path, sizeof(path), "%s/ec.pem", dir);
	key = slurp(path, &keylen);
	st_clear(&ei);
	is_int(tls_rs256_sign(key, keylen, msg, strlen(msg), &sig, &siglen,
	    &ei), ST_CONFIG, "an EC key is refused: %s", ei.msg);
	free(key);
	st_clear(&ei);
	is_int(tls_rs256_sign("junk", 4, msg, strlen(msg), &sig, &siglen,
	    &ei), ST_CONFIG, "junk is refused");

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", dir);
}

static void
test_ctx(void)
{
	struct tls_ctx *ctx = NULL;
	struct errinfo ei;

	st_clear(&ei);
	is_int(tls_ctx_new(&ctx, "/nonexistent/ca.pem", &ei), ST_CONFIG,
	    "missing CA file is a config error");
	ok(ctx == NULL, "no context");
	st_clear(&ei);
	is_int(tls_ctx_new(&ctx, "/dev/null", &ei), ST_CONFIG,
	    "empty CA file is a config error");
	tls_ctx_free(NULL);
}

int
main(void)
{
	listen_loopback();
	test_lines();
	test_primitives();
	test_ctx();
	test_rs256();
	close(lfd);
	return tap_done();
}
