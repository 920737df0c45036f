/*
 * bm-probe: drive the connection layer from tests, without any protocol.
 *
 * usage: bm-probe [options] HOST PORT [STEP...]
 *
 *   --tls              implicit TLS right after connecting
 *   --starttls-smtp    read the greeting, EHLO, STARTTLS, handshake
 *   --ca FILE          trust anchors (default: the system bundle)
 *   --timeout N        seconds per operation (default 10)
 *   --line-max N       longest line accepted (default CONN_LINE_MAX)
 *   --bind ADDR        local source address
 *   -v                 protocol transcript on standard error
 *
 * Steps come from the arguments after PORT, or one per line on standard
 * input when there are none:
 *
 *   send TEXT          queue TEXT and CRLF (conn_cmd)
 *   secret TEXT        the same, redacted in the transcript
 *   raw TEXT           queue TEXT as is; \r \n \t \\ \xHH are escapes
 *   flush              send the queue now (reads also do)
 *   read [N]           read N lines (default 1) and print each
 *   reply              read one SMTP reply (through "NNN ") and print it
 *   bytes N            read exactly N bytes and print them
 *   starttls           run the TLS handshake now
 *   info               print the TLS details, one "key: value" a line
 *   pending            print how many bytes are buffered
 *   eof                the peer must close the connection now
 *
 * What is read goes to standard output.  On failure bm-probe prints
 * "error: STATUS: text" on standard error and exits with st_exitcode().
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "status.h"
#include "tls.h"

struct probe {
	struct conn	*c;
	struct tls_ctx	*tls;
	const char	*ca_file;
};

static void
usage(void)
{
	fprintf(stderr, "usage: bm-probe [--tls] [--starttls-smtp] [--ca FILE] "
	    "[--timeout N] [--line-max N] [--bind ADDR] [-v] HOST PORT "
	    "[STEP...]\n");
	exit(64);
}

static long
number(const char *s, long min, long max, struct errinfo *ei)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		st_error(ei, ST_USAGE, "bad number '%s'", s);
		return -1;
	}
	return v;
}

static enum status
probe_starttls(struct probe *p, struct errinfo *ei)
{
	if (p->tls == NULL &&
	    tls_ctx_new(&p->tls, p->ca_file, ei) != ST_OK)
		return ei->st;
	return conn_starttls(p->c, p->tls, ei);
}

/* One SMTP reply; print its lines when print is set. */
static enum status
probe_reply(struct probe *p, bool print, int *code, struct errinfo *ei)
{
	char *line;
	size_t len;

	*code = 0;
	for (;;) {
		if (conn_readline(p->c, &line, &len, ei) != ST_OK)
			return ei->st;
		if (print)
			printf("%s\n", line);
		if (len < 3 || !isdigit((unsigned char)line[0]) ||
		    !isdigit((unsigned char)line[1]) ||
		    !isdigit((unsigned char)line[2]) ||
		    (len > 3 && line[3] != ' ' && line[3] != '-'))
			return st_error(ei, ST_PROTO, "not an SMTP reply: %.60s",
			    line);
		if (len == 3 || line[3] == ' ') {
			*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 +
			    (line[2] - '0');
			return ST_OK;
		}
	}
}

static enum status
probe_smtp_starttls(struct probe *p, struct errinfo *ei)
{
	int code;

	if (probe_reply(p, false, &code, ei) != ST_OK)
		return ei->st;
	if (code != 220)
		return st_error(ei, ST_PROTO, "greeting %d", code);
	if (conn_cmd(p->c, false, ei, "EHLO bm-probe.invalid") != ST_OK ||
	    probe_reply(p, false, &code, ei) != ST_OK)
		return ei->st;
	if (code != 250)
		return st_error(ei, ST_PROTO, "EHLO answered %d", code);
	if (conn_cmd(p->c, false, ei, "STARTTLS") != ST_OK ||
	    probe_reply(p, false, &code, ei) != ST_OK)
		return ei->st;
	if (code != 220)
		return st_error(ei, ST_PROTO, "STARTTLS answered %d", code);
	return probe_starttls(p, ei);
}

static int
unhex(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Undo the escapes of a raw step in place (it only shrinks); the length. */
static size_t
unescape(char *s)
{
	char *o = s, *start = s;
	int h, l;

	while (*s != '\0') {
		if (*s != '\\' || s[1] == '\0') {
			*o++ = *s++;
			continue;
		}
		s++;
		if (*s == 'r' || *s == 'n' || *s == 't') {
			*o++ = *s == 'r' ? '\r' : *s == 'n' ? '\n' : '\t';
			s++;
		} else if (*s == 'x' && (h = unhex(s[1])) >= 0 &&
		    (l = unhex(s[2])) >= 0) {
			*o++ = (char)(h * 16 + l);
			s += 3;
		} else
			*o++ = *s++;
	}
	*o = '\0';
	return (size_t)(o - start);
}

static enum status
probe_step(struct probe *p, char *step, struct errinfo *ei)
{
	char *verb = step, *arg, *line, *data;
	struct tls_info info;
	size_t len;
	long n, i;
	int code;

	arg = strchr(step, ' ');
	if (arg != NULL)
		*arg++ = '\0';
	else
		arg = step + strlen(step);

	if (strcmp(verb, "send") == 0 || strcmp(verb, "secret") == 0)
		return conn_cmd(p->c, verb[1] == 'e' && verb[2] == 'c', ei,
		    "%s", arg);
	if (strcmp(verb, "raw") == 0) {
		len = unescape(arg);
		return conn_write(p->c, arg, len, ei);
	}
	if (strcmp(verb, "flush") == 0)
		return conn_flush(p->c, ei);
	if (strcmp(verb, "read") == 0) {
		n = *arg != '\0' ? number(arg, 1, 1000000, ei) : 1;
		if (n < 0)
			return ei->st;
		for (i = 0; i < n; i++) {
			if (conn_readline(p->c, &line, &len, ei) != ST_OK)
				return ei->st;
			printf("%s\n", line);
		}
		return ST_OK;
	}
	if (strcmp(verb, "reply") == 0)
		return probe_reply(p, true, &code, ei);
	if (strcmp(verb, "bytes") == 0) {
		if ((n = number(arg, 0, 64 * 1024 * 1024, ei)) < 0)
			return ei->st;
		if ((data = malloc((size_t)n + 1)) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
		if (conn_read_exact(p->c, data, (size_t)n, ei) == ST_OK)
			fwrite(data, 1, (size_t)n, stdout);
		free(data);
		return ei->st;
	}
	if (strcmp(verb, "starttls") == 0)
		return probe_starttls(p, ei);
	if (strcmp(verb, "info") == 0) {
		if (conn_tls_info(p->c, &info, ei) != ST_OK)
			return ei->st;
		printf("version: %s\ncipher: %s\nsubject: %s\nissuer: %s\n"
		    "not_after: %s\nsha256: %s\n", info.version, info.cipher,
		    info.subject, info.issuer, info.not_after, info.sha256);
		return ST_OK;
	}
	if (strcmp(verb, "pending") == 0) {
		printf("%zu\n", conn_pending(p->c));
		return ST_OK;
	}
	if (strcmp(verb, "eof") == 0) {
		struct errinfo e2;

		st_clear(&e2);
		if (conn_readline(p->c, &line, &len, &e2) == ST_OK)
			return st_error(ei, ST_PROTO, "expected EOF, got: %.60s",
			    line);
		if (e2.st != ST_NET) {
			*ei = e2;
			return ei->st;
		}
		return ST_OK;
	}
	return st_error(ei, ST_USAGE, "unknown step '%s'", verb);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "tls",		no_argument,	   NULL, 'T' },
		{ "starttls-smtp",	no_argument,	   NULL, 'S' },
		{ "ca",			required_argument, NULL, 'c' },
		{ "timeout",		required_argument, NULL, 't' },
		{ "line-max",		required_argument, NULL, 'l' },
		{ "bind",		required_argument, NULL, 'b' },
		{ "help",		no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct probe p = { NULL, NULL, NULL };
	struct conn_opts o;
	struct errinfo ei;
	bool tls = false, starttls = false;
	char buf[70000];
	long n;
	int ch, i;

	st_clear(&ei);
	memset(&o, 0, sizeof(o));
	o.timeout = 10;
	while ((ch = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (ch) {
		case 'T':
			tls = true;
			break;
		case 'S':
			starttls = true;
			break;
		case 'c':
			p.ca_file = optarg;
			break;
		case 't':
			if ((n = number(optarg, 1, 86400, &ei)) < 0)
				goto out;
			o.timeout = (int)n;
			break;
		case 'l':
			if ((n = number(optarg, 1, 16 * 1024 * 1024, &ei)) < 0)
				goto out;
			o.line_max = (size_t)n;
			break;
		case 'b':
			o.bind_addr = optarg;
			break;
		case 'v':
			log_set_verbose(true);
			break;
		default:
			usage();
		}
	}
	if (argc - optind < 2)
		usage();
	o.host = argv[optind];
	o.port = argv[optind + 1];
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (conn_open(&p.c, &o, &ei) != ST_OK)
		goto out;
	if (tls && probe_starttls(&p, &ei) != ST_OK)
		goto out;
	if (starttls && probe_smtp_starttls(&p, &ei) != ST_OK)
		goto out;
	if (argc - optind > 2) {
		for (i = optind + 2; i < argc; i++) {
			snprintf(buf, sizeof(buf), "%s", argv[i]);
			if (probe_step(&p, buf, &ei) != ST_OK)
				goto out;
		}
	} else {
		while (fgets(buf, sizeof(buf), stdin) != NULL) {
			buf[strcspn(buf, "\r\n")] = '\0';
			if (buf[0] == '\0' || buf[0] == '#')
				continue;
			if (probe_step(&p, buf, &ei) != ST_OK)
				goto out;
		}
	}
	conn_flush(p.c, &ei);
 out:
	conn_close(p.c);
	tls_ctx_free(p.tls);
	fflush(stdout);
	if (ei.st != ST_OK) {
		fprintf(stderr, "error: %s: %s\n", st_name(ei.st), ei.msg);
		return st_exitcode(ei.st);
	}
	return 0;
}
