/*
 * bm-sink: a benchmark SMTP submission server that accepts and discards.
 *
 * RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 8314 (implicit TLS), RFC 2920
 * (PIPELINING), RFC 4954 (AUTH), RFC 7628 (OAUTHBEARER) and Google's
 * XOAUTH2.  Only what a client under measurement needs: EHLO, STARTTLS,
 * AUTH XOAUTH2/OAUTHBEARER/PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
 *
 * Its job is to cost the client nothing: one thread per connection,
 * replies queued and written only when the client has nothing more
 * pipelined, and DATA scanned for the terminator with memmem() over
 * 64 KB reads instead of line by line.  TLS is OpenSSL's (the fastest
 * server side on Debian, and what Postfix uses), so the sink does not
 * share a TLS stack with the client it measures.
 *
 *	bm-sink --cert PEM --key PEM [--token T] [--mechs LIST]
 *	    [--port-file F] [--log F] [--max-seconds S]
 *
 * Listens on 127.0.0.1 on two free ports: STARTTLS (required before
 * AUTH) and implicit TLS, and writes "starttls PORT\ntls PORT\n" to the
 * port file once both listen.  With --token only that bearer token is
 * accepted (the providers' error challenge otherwise, then 535).
 * --mechs is the AUTH list EHLO offers (default "XOAUTH2 OAUTHBEARER
 * PLAIN"); offering one mechanism pins clients that pick on their own
 * (curl prefers OAUTHBEARER).  It
 * stops when its standard input reaches EOF (the harness closes it, or
 * died) or after --max-seconds (default 3600), whichever comes first.
 * The log gets one line per accepted message: "msg BYTES MECH".
 *
 * Not part of bearmail: built by bench/run.sh against libssl.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define IOBUF		(64 * 1024)
#define LINE_MAX_	(16 * 1024)	/* RFC 4954 continuation lines */
#define IO_TIMEOUT	30		/* seconds per socket operation */

static SSL_CTX *ctx;
static const char *want_token;
static const char *auth_mechs = "XOAUTH2 OAUTHBEARER PLAIN";
static FILE *logf;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

struct sess {
	int fd;
	SSL *ssl;
	bool tls;
	bool authed;
	char mech[16];
	unsigned char in[IOBUF];
	size_t ipos, ilen;
	char out[8192];
	size_t olen;
};

/* Send what is queued.  Replies go out only when input runs dry. */
static int
s_flush(struct sess *s)
{
	size_t off = 0;

	while (off < s->olen) {
		ssize_t n;

		if (s->ssl != NULL) {
			int r = SSL_write(s->ssl, s->out + off,
			    (int)(s->olen - off));
			if (r <= 0)
				return -1;
			n = r;
		} else {
			n = send(s->fd, s->out + off, s->olen - off,
			    MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return -1;
		}
		off += (size_t)n;
	}
	s->olen = 0;
	return 0;
}

static int
s_reply(struct sess *s, const char *text)
{
	size_t n = strlen(text);

	if (s->olen + n + 2 > sizeof(s->out) && s_flush(s) == -1)
		return -1;
	if (n + 2 > sizeof(s->out))
		return -1;
	memcpy(s->out + s->olen, text, n);
	memcpy(s->out + s->olen + n, "\r\n", 2);
	s->olen += n + 2;
	return 0;
}

/* Refill the input buffer (after moving unread bytes to the front). */
static int
s_fill(struct sess *s)
{
	ssize_t n;

	if (s_flush(s) == -1)
		return -1;
	if (s->ipos > 0) {
		memmove(s->in, s->in + s->ipos, s->ilen - s->ipos);
		s->ilen -= s->ipos;
		s->ipos = 0;
	}
	if (s->ilen == sizeof(s->in))
		return -1;
	for (;;) {
		if (s->ssl != NULL) {
			int r = SSL_read(s->ssl, s->in + s->ilen,
			    (int)(sizeof(s->in) - s->ilen));
			if (r <= 0)
				return -1;
			n = r;
		} else {
			n = recv(s->fd, s->in + s->ilen,
			    sizeof(s->in) - s->ilen, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return -1;
		}
		break;
	}
	s->ilen += (size_t)n;
	return 0;
}

/* One line without its CRLF, NUL-terminated in place; NULL on EOF/error. */
static char *
s_line(struct sess *s)
{
	for (;;) {
		unsigned char *p = s->in + s->ipos;
		unsigned char *nl = memchr(p, '\n', s->ilen - s->ipos);

		if (nl != NULL) {
			size_t len = (size_t)(nl - p);

			if (len > 0 && p[len - 1] == '\r')
				len--;
			p[len] = '\0';
			s->ipos += (size_t)(nl - p) + 1;
			return (char *)p;
		}
		if (s->ilen - s->ipos > LINE_MAX_ || s_fill(s) == -1)
			return NULL;
	}
}

/*
 * Discard a DATA body up to CRLF.CRLF.  The body starts at a line start,
 * which the carried "\r\n" stands for.  Returns the octets consumed.
 */
static long long
s_data(struct sess *s)
{
	static const char end[] = "\r\n.\r\n";
	char carry[8] = "\r\n";
	size_t ncarry = 2;
	long long total = 0;

	for (;;) {
		unsigned char *p = s->in + s->ipos;
		size_t avail = s->ilen - s->ipos;
		char joint[16];
		size_t nj, take;
		unsigned char *hit;

		/* A terminator straddling the previous read and this one. */
		take = avail < 4 ? avail : 4;
		memcpy(joint, carry, ncarry);
		memcpy(joint + ncarry, p, take);
		nj = ncarry + take;
		hit = memmem(joint, nj, end, 5);
		if (hit != NULL) {
			size_t used = (size_t)(hit - (unsigned char *)joint) +
			    5 - ncarry;
			s->ipos += used;
			return total + (long long)used;
		}
		hit = memmem(p, avail, end, 5);
		if (hit != NULL) {
			size_t used = (size_t)(hit - p) + 5;
			s->ipos += used;
			return total + (long long)used;
		}
		/* Keep the last 4 octets seen, for the next joint. */
		if (avail >= 4) {
			memcpy(carry, p + avail - 4, 4);
			ncarry = 4;
		} else {
			size_t keep = ncarry + avail > 4 ? 4 - avail : ncarry;

			memmove(carry, carry + ncarry - keep, keep);
			memcpy(carry + keep, p, avail);
			ncarry = keep + avail;
		}
		total += (long long)avail;
		s->ipos = s->ilen = 0;
		if (s_fill(s) == -1)
			return -1;
	}
}

static int
b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode base64 into out (NUL-terminated); -1 if malformed or too long. */
static long
b64dec(const char *in, char *out, size_t max)
{
	size_t n = 0;
	unsigned acc = 0;
	int bits = 0;

	for (; *in != '\0' && *in != '='; in++) {
		int v = b64val((unsigned char)*in);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n + 1 >= max)
				return -1;
			out[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[n] = '\0';
	return (long)n;
}

/* Does a decoded XOAUTH2/OAUTHBEARER response carry the right token? */
static bool
bearer_ok(const char *dec, size_t n)
{
	const char *p;
	size_t tl;

	p = memmem(dec, n, "auth=Bearer ", 12);
	if (p == NULL)
		return false;
	if (want_token == NULL)
		return true;
	p += 12;
	tl = strlen(want_token);
	return (size_t)(dec + n - p) > tl && memcmp(p, want_token, tl) == 0 &&
	    p[tl] == '\x01';
}

/* Is mech one of the words of --mechs? */
static bool
offered(const char *mech)
{
	const char *p = auth_mechs;
	size_t n = strlen(mech);

	while ((p = strcasestr(p, mech)) != NULL) {
		if ((p == auth_mechs || p[-1] == ' ') &&
		    (p[n] == '\0' || p[n] == ' '))
			return true;
		p += n;
	}
	return false;
}

static int
s_auth(struct sess *s, char *arg)
{
	char dec[LINE_MAX_];
	char *mech = arg, *ir, *line;
	long n;
	bool ok;

	if ((ir = strchr(arg, ' ')) != NULL)
		*ir++ = '\0';
	/* The line buffer moves when a continuation is read: copy now. */
	snprintf(s->mech, sizeof(s->mech), "%s", mech);
	mech = s->mech;
	if ((strcasecmp(mech, "XOAUTH2") != 0 &&
	    strcasecmp(mech, "OAUTHBEARER") != 0 &&
	    strcasecmp(mech, "PLAIN") != 0) || !offered(mech))
		return s_reply(s, "504 5.5.4 mechanism not supported");
	if (ir == NULL || *ir == '\0') {
		if (s_reply(s, "334 ") == -1 || (line = s_line(s)) == NULL)
			return -1;
		ir = line;
	}
	if (strcmp(ir, "*") == 0)
		return s_reply(s, "501 5.7.0 cancelled");
	if ((n = b64dec(ir, dec, sizeof(dec))) < 0)
		return s_reply(s, "501 5.5.2 bad base64");
	if (strcasecmp(mech, "PLAIN") == 0)
		ok = true;	/* the sink measures clients, not passwords */
	else
		ok = bearer_ok(dec, (size_t)n);
	if (!ok) {
		/* The providers' error challenge, then the final failure. */
		if (strcasecmp(mech, "XOAUTH2") == 0)
			line = "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=";
		else
			line = "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=";
		if (s_reply(s, line) == -1 || s_line(s) == NULL)
			return -1;
		return s_reply(s, "535 5.7.8 Username and Password not accepted");
	}
	s->authed = true;
	return s_reply(s, "235 2.7.0 Accepted");
}

static int
s_ehlo(struct sess *s)
{
	s_reply(s, "250-bm-sink");
	s_reply(s, "250-PIPELINING");
	s_reply(s, "250-SIZE 104857600");
	s_reply(s, "250-8BITMIME");
	s_reply(s, "250-ENHANCEDSTATUSCODES");
	if (!s->tls)
		s_reply(s, "250-STARTTLS");
	else {
		char line[256];

		snprintf(line, sizeof(line), "250-AUTH %s", auth_mechs);
		s_reply(s, line);
	}
	return s_reply(s, "250 SMTPUTF8");
}

static int
s_starttls(struct sess *s)
{
	if (s->tls)
		return s_reply(s, "503 5.5.1 already TLS");
	if (s_reply(s, "220 2.0.0 go ahead") == -1 || s_flush(s) == -1)
		return -1;
	s->ipos = s->ilen = 0;	/* RFC 3207: drop anything pipelined */
	if ((s->ssl = SSL_new(ctx)) == NULL ||
	    SSL_set_fd(s->ssl, s->fd) != 1 || SSL_accept(s->ssl) != 1)
		return -1;
	s->tls = true;
	s->authed = false;
	return 0;
}

static void
s_log(long long bytes, const char *mech)
{
	if (logf == NULL)
		return;
	pthread_mutex_lock(&log_mu);
	fprintf(logf, "msg %lld %s\n", bytes, mech[0] ? mech : "none");
	fflush(logf);
	pthread_mutex_unlock(&log_mu);
}

static void
s_serve(struct sess *s)
{
	char *line;
	bool mail = false;
	int rcpts = 0;

	if (s_reply(s, "220 bm-sink ESMTP") == -1)
		return;
	while ((line = s_line(s)) != NULL) {
		char *arg = strchr(line, ' ');
		int r;

		if (arg != NULL)
			*arg++ = '\0';
		else
			arg = line + strlen(line);
		if (strcasecmp(line, "EHLO") == 0) {
			mail = false;
			rcpts = 0;
			r = s_ehlo(s);
		} else if (strcasecmp(line, "HELO") == 0)
			r = s_reply(s, "250 bm-sink");
		else if (strcasecmp(line, "STARTTLS") == 0)
			r = s_starttls(s);
		else if (strcasecmp(line, "AUTH") == 0)
			r = s->tls ? s_auth(s, arg) :
			    s_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
		else if (strcasecmp(line, "MAIL") == 0) {
			if (!s->authed)
				r = s_reply(s, "530 5.7.0 Authentication required");
			else {
				mail = true;
				rcpts = 0;
				r = s_reply(s, "250 2.1.0 OK");
			}
		} else if (strcasecmp(line, "RCPT") == 0) {
			if (!mail)
				r = s_reply(s, "503 5.5.1 MAIL first");
			else {
				rcpts++;
				r = s_reply(s, "250 2.1.5 OK");
			}
		} else if (strcasecmp(line, "DATA") == 0) {
			long long n;

			if (rcpts == 0) {
				r = s_reply(s, "554 5.5.1 no valid recipients");
				continue;
			}
			if (s_reply(s, "354 go ahead") == -1 ||
			    (n = s_data(s)) < 0)
				return;
			s_log(n, s->mech);
			mail = false;
			rcpts = 0;
			r = s_reply(s, "250 2.0.0 OK queued as bm-sink");
		} else if (strcasecmp(line, "RSET") == 0) {
			mail = false;
			rcpts = 0;
			r = s_reply(s, "250 2.0.0 OK");
		} else if (strcasecmp(line, "NOOP") == 0)
			r = s_reply(s, "250 2.0.0 OK");
		else if (strcasecmp(line, "QUIT") == 0) {
			s_reply(s, "221 2.0.0 bye");
			s_flush(s);
			return;
		} else
			r = s_reply(s, "502 5.5.2 not implemented");
		if (r == -1)
			return;
	}
}

static void *
conn_thread(void *arg)
{
	struct sess *s = arg;

	s_serve(s);
	if (s->ssl != NULL) {
		SSL_shutdown(s->ssl);
		SSL_free(s->ssl);
	}
	close(s->fd);
	free(s);
	return NULL;
}

static void
start_conn(int lfd, bool implicit)
{
	pthread_attr_t attr;
	pthread_t th;
	struct timeval tv = { IO_TIMEOUT, 0 };
	struct sess *s;
	int fd, one = 1;

	if ((fd = accept(lfd, NULL, NULL)) == -1)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		close(fd);
		return;
	}
	s->fd = fd;
	if (implicit) {
		/* The handshake runs in the thread, not in the accept loop. */
		if ((s->ssl = SSL_new(ctx)) == NULL ||
		    SSL_set_fd(s->ssl, fd) != 1) {
			close(fd);
			free(s);
			return;
		}
		SSL_set_accept_state(s->ssl);
		s->tls = true;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	if (pthread_create(&th, &attr, conn_thread, s) != 0) {
		if (s->ssl != NULL)
			SSL_free(s->ssl);
		close(fd);
		free(s);
	}
	pthread_attr_destroy(&attr);
}

static int
listen_any(int *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, one = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(fd, 512) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1) {
		close(fd);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

static void
usage(void)
{
	fprintf(stderr, "usage: bm-sink --cert PEM --key PEM [--token T] "
	    "[--mechs LIST] [--port-file F] [--log F] [--max-seconds S]\n");
	exit(64);
}

int
main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL, *portfile = NULL, *logpath = NULL;
	long maxsec = 3600;
	struct pollfd pfd[3];
	struct timespec t0, now;
	int pstart, ptls, i;
	FILE *f;

	for (i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--cert") == 0)
			cert = argv[++i];
		else if (strcmp(argv[i], "--key") == 0)
			key = argv[++i];
		else if (strcmp(argv[i], "--token") == 0)
			want_token = argv[++i];
		else if (strcmp(argv[i], "--mechs") == 0)
			auth_mechs = argv[++i];
		else if (strcmp(argv[i], "--port-file") == 0)
			portfile = argv[++i];
		else if (strcmp(argv[i], "--log") == 0)
			logpath = argv[++i];
		else if (strcmp(argv[i], "--max-seconds") == 0)
			maxsec = strtol(argv[++i], NULL, 10);
		else
			usage();
	}
	if (cert == NULL || key == NULL || maxsec <= 0)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	/* Clients measured here never resume; tickets would only cost. */
	SSL_CTX_set_num_tickets(ctx, 0);
	if (logpath != NULL && (logf = fopen(logpath, "a")) == NULL) {
		perror(logpath);
		return 1;
	}
	if ((pfd[0].fd = listen_any(&pstart)) == -1 ||
	    (pfd[1].fd = listen_any(&ptls)) == -1) {
		perror("listen");
		return 1;
	}
	if (portfile != NULL) {
		char tmp[4096];

		snprintf(tmp, sizeof(tmp), "%s.tmp", portfile);
		if ((f = fopen(tmp, "w")) == NULL) {
			perror(tmp);
			return 1;
		}
		fprintf(f, "starttls %d\ntls %d\n", pstart, ptls);
		if (fclose(f) != 0 || rename(tmp, portfile) == -1) {
			perror(portfile);
			return 1;
		}
	} else
		printf("starttls %d\ntls %d\n", pstart, ptls);
	fflush(stdout);
	pfd[0].events = pfd[1].events = POLLIN;
	pfd[2].fd = 0;
	pfd[2].events = POLLIN;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		char junk[256];

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec >= maxsec)
			break;
		if (poll(pfd, 3, 1000) == -1 && errno != EINTR)
			break;
		if (pfd[0].revents & POLLIN)
			start_conn(pfd[0].fd, false);
		if (pfd[1].revents & POLLIN)
			start_conn(pfd[1].fd, true);
		if (pfd[2].revents & (POLLIN | POLLHUP)) {
			if (read(0, junk, sizeof(junk)) <= 0)
				break;
		}
	}
	return 0;
}
