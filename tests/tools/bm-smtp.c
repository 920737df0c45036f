/*
 * bm-smtp: drive the SMTP client module from the command line (tests).
 *
 *	bm-smtp [options] HOST PORT RCPT...
 *
 * Connects (--tls starttls|tls|none), authenticates when --auth is given
 * with the secret read from --secret-file (a file, or "-" for standard
 * input; never argv), sends the message file to the recipients and
 * prints, on standard output:
 *
 *	caps: FLAGS... [SIZE=N] [AUTH=MECH,...]
 *	auth: ok | auth: rejected, retrying ... | auth: failed
 *	rcpt <ADDR> STATUS TEXT           (one per recipient, when asked)
 *	final: CODE TEXT                  (when the server took the message)
 *	status: NAME [code N] [MSG]
 *	peak_rss_kib: N                   (with --peak-rss)
 *
 * and exits with st_exitcode() of the final status.  A second line in
 * the secret file stands for a refreshed token: it is used once, on the
 * same session, when the server rejects the first (the retry a real
 * caller does after refreshing).  -v prints the protocol transcript on
 * standard error, with credentials redacted.
 *
 * --peak-rss reports VmHWM from /proc/self/status: the high-water mark
 * of this program's own address space.  getrusage()/wait4() cannot give
 * it, because Linux carries the forking parent's peak (the test
 * runner's Python) across execve() into ru_maxrss.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "conn.h"
#include "log.h"
#include "smtp.h"
#include "status.h"
#include "tls.h"

static void
usage(void)
{
	fprintf(stderr,
	    "usage: bm-smtp [-v] [--tls starttls|tls|none] [--ca FILE]\n"
	    "    [--timeout S] [--ehlo NAME] [--auth MECH --user U\n"
	    "    --secret-file FILE|-] [--from ADDR] [--message FILE]\n"
	    "    [--size N|--no-size] [--8bit|--7bit] [--smtputf8]\n"
	    "    [--notify never|success,failure,delay] [--ret hdrs|full]\n"
	    "    [--envid ID] [--count N] [--peak-rss] HOST PORT RCPT...\n");
	exit(64);
}

/* Read up to two lines (token, refreshed token) from path or stdin. */
static enum status
read_secrets(const char *path, char **first, char **second,
    struct errinfo *ei)
{
	struct buf b;
	char tmp[4096], *nl;
	enum status st = ST_OK;
	ssize_t n;
	int fd;

	*first = *second = NULL;
	buf_init(&b, 1 << 20);
	fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return st_errno(ei, ST_SYS, "%s", path);
	while ((n = read(fd, tmp, sizeof(tmp))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			st = st_errno(ei, ST_SYS, "reading %s", path);
			goto done;
		}
		if ((st = buf_add(&b, tmp, (size_t)n, ei)) != ST_OK)
			goto done;
	}
	st_wipe(tmp, sizeof(tmp));
	if (b.data == NULL) {
		st = st_error(ei, ST_USAGE, "%s is empty", path);
		goto done;
	}
	if ((nl = strchr(b.data, '\n')) != NULL) {
		*nl++ = '\0';
		nl[strcspn(nl, "\r\n")] = '\0';
		if (*nl != '\0' && (*second = strdup(nl)) == NULL) {
			st = st_errno(ei, ST_SYS, "out of memory");
			goto done;
		}
	}
	b.data[strcspn(b.data, "\r")] = '\0';
	if ((*first = strdup(b.data)) == NULL)
		st = st_errno(ei, ST_SYS, "out of memory");
done:
	buf_wipe(&b);
	if (fd > 0)
		close(fd);
	return st;
}

static void
free_secret(char *s)
{
	if (s != NULL) {
		st_wipe(s, strlen(s));
		free(s);
	}
}

static void
print_caps(const struct smtp_caps *c)
{
	static const struct { unsigned f; const char *name; } names[] = {
		{ SMTP_CAP_STARTTLS, "STARTTLS" },
		{ SMTP_CAP_PIPELINING, "PIPELINING" },
		{ SMTP_CAP_8BITMIME, "8BITMIME" },
		{ SMTP_CAP_SMTPUTF8, "SMTPUTF8" },
		{ SMTP_CAP_DSN, "DSN" },
		{ SMTP_CAP_ENHANCED, "ENHANCEDSTATUSCODES" },
		{ SMTP_CAP_CHUNKING, "CHUNKING" },
	};
	size_t i;

	printf("caps:");
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (c->flags & names[i].f)
			printf(" %s", names[i].name);
	if (c->flags & SMTP_CAP_SIZE)
		printf(" SIZE=%llu", (unsigned long long)c->size_max);
	if (c->flags & SMTP_CAP_AUTH)
		printf(" AUTH=%s", c->auth_names);
	printf("\n");
}

/* VmHWM in KiB, or -1. */
static long
peak_rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f;

	if ((f = fopen("/proc/self/status", "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmHWM:", 6) == 0) {
			kib = strtol(line + 6, NULL, 10);
			break;
		}
	fclose(f);
	return kib;
}

static bool
parse_mech(const char *s, enum auth_mech *m)
{
	static const char *const n[] = { "xoauth2", "oauthbearer", "plain",
	    "login" };
	static const enum auth_mech v[] = { MECH_XOAUTH2, MECH_OAUTHBEARER,
	    MECH_PLAIN, MECH_LOGIN };
	size_t i;

	for (i = 0; i < 4; i++)
		if (strcasecmp(s, n[i]) == 0) {
			*m = v[i];
			return true;
		}
	return false;
}

static bool
parse_notify(const char *s, unsigned *out)
{
	char tmp[128], *p, *w;

	*out = 0;
	if (strlen(s) >= sizeof(tmp))
		return false;
	memcpy(tmp, s, strlen(s) + 1);
	for (p = tmp; (w = strsep(&p, ",")) != NULL; ) {
		if (strcasecmp(w, "never") == 0)
			*out |= SMTP_NOTIFY_NEVER;
		else if (strcasecmp(w, "success") == 0)
			*out |= SMTP_NOTIFY_SUCCESS;
		else if (strcasecmp(w, "failure") == 0)
			*out |= SMTP_NOTIFY_FAILURE;
		else if (strcasecmp(w, "delay") == 0)
			*out |= SMTP_NOTIFY_DELAY;
		else
			return false;
	}
	return true;
}

static bool
parse_num(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && *out <= max &&
	    s[0] != '-';
}

int
main(int argc, char **argv)
{
	enum { O_TLS = 256, O_CA, O_TIMEOUT, O_EHLO, O_AUTH, O_USER,
	    O_SECRET, O_FROM, O_MESSAGE, O_SIZE, O_NOSIZE, O_8BIT, O_7BIT,
	    O_UTF8, O_NOTIFY, O_RET, O_ENVID, O_COUNT, O_PEAK };
	static const struct option lopts[] = {
		{ "tls", required_argument, NULL, O_TLS },
		{ "ca", required_argument, NULL, O_CA },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "ehlo", required_argument, NULL, O_EHLO },
		{ "auth", required_argument, NULL, O_AUTH },
		{ "user", required_argument, NULL, O_USER },
		{ "secret-file", required_argument, NULL, O_SECRET },
		{ "from", required_argument, NULL, O_FROM },
		{ "message", required_argument, NULL, O_MESSAGE },
		{ "size", required_argument, NULL, O_SIZE },
		{ "no-size", no_argument, NULL, O_NOSIZE },
		{ "8bit", no_argument, NULL, O_8BIT },
		{ "7bit", no_argument, NULL, O_7BIT },
		{ "smtputf8", no_argument, NULL, O_UTF8 },
		{ "notify", required_argument, NULL, O_NOTIFY },
		{ "ret", required_argument, NULL, O_RET },
		{ "envid", required_argument, NULL, O_ENVID },
		{ "count", required_argument, NULL, O_COUNT },
		{ "peak-rss", no_argument, NULL, O_PEAK },
		{ NULL, 0, NULL, 0 }
	};
	struct conn_target so;
	struct smtp_envelope env;
	struct smtp_result res;
	struct errinfo ei;
	struct tls_ctx *ctx = NULL;
	struct smtp *s = NULL;
	const char *ca = NULL, *secret_file = NULL, *user = NULL;
	const char *msgfile = NULL, *ehlo = "client.example";
	char *tok1 = NULL, *tok2 = NULL;
	bool have_auth = false, rejected, sized = true, have_size = false;
	bool peak = false;
	enum auth_mech mech = MECH_XOAUTH2;
	unsigned long long v, count = 1, i;
	enum status st = ST_OK;
	struct stat sb;
	int c, fd = 0;
	size_t k;

	memset(&so, 0, sizeof(so));
	memset(&env, 0, sizeof(env));
	memset(&res, 0, sizeof(res));
	st_clear(&ei);
	so.tls = TLSM_STARTTLS;
	so.timeout = 10;
	env.sender = "";
	while ((c = getopt_long(argc, argv, "v", lopts, NULL)) != -1) {
		switch (c) {
		case 'v':
			log_set_verbose(true);
			break;
		case O_TLS:
			if (strcmp(optarg, "starttls") == 0)
				so.tls = TLSM_STARTTLS;
			else if (strcmp(optarg, "tls") == 0)
				so.tls = TLSM_TLS;
			else if (strcmp(optarg, "none") == 0)
				so.tls = TLSM_NONE;
			else
				usage();
			break;
		case O_CA:
			ca = optarg;
			break;
		case O_TIMEOUT:
			if (!parse_num(optarg, 3600, &v) || v == 0)
				usage();
			so.timeout = (int)v;
			break;
		case O_EHLO:
			ehlo = optarg;
			break;
		case O_AUTH:
			if (!parse_mech(optarg, &mech))
				usage();
			have_auth = true;
			break;
		case O_USER:
			user = optarg;
			break;
		case O_SECRET:
			secret_file = optarg;
			break;
		case O_FROM:
			env.sender = optarg;
			break;
		case O_MESSAGE:
			msgfile = optarg;
			break;
		case O_SIZE:
			if (!parse_num(optarg, ~0ULL, &v))
				usage();
			env.size = v;
			have_size = true;
			break;
		case O_NOSIZE:
			sized = false;
			break;
		case O_8BIT:
			env.body = SMTP_BODY_8BITMIME;
			break;
		case O_7BIT:
			env.body = SMTP_BODY_7BIT;
			break;
		case O_UTF8:
			env.smtputf8 = true;
			break;
		case O_NOTIFY:
			if (!parse_notify(optarg, &env.notify))
				usage();
			break;
		case O_RET:
			if (strcasecmp(optarg, "hdrs") == 0)
				env.ret = SMTP_RET_HDRS;
			else if (strcasecmp(optarg, "full") == 0)
				env.ret = SMTP_RET_FULL;
			else
				usage();
			break;
		case O_ENVID:
			env.envid = optarg;
			break;
		case O_PEAK:
			peak = true;
			break;
		case O_COUNT:
			if (!parse_num(optarg, 1000, &count) || count == 0)
				usage();
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 3 || (have_auth && (user == NULL || secret_file == NULL)))
		usage();
	if (secret_file != NULL && strcmp(secret_file, "-") == 0 &&
	    (msgfile == NULL || strcmp(msgfile, "-") == 0)) {
		fprintf(stderr, "bm-smtp: the secret and the message cannot "
		    "both come from standard input\n");
		return 64;
	}
	so.host = argv[0];
	if (!parse_num(argv[1], 65535, &v) || v == 0)
		usage();
	so.port = (unsigned)v;
	env.rcpts = (const char *const *)(argv + 2);
	env.nrcpts = (size_t)argc - 2;

	if (have_auth &&
	    (st = read_secrets(secret_file, &tok1, &tok2, &ei)) != ST_OK)
		goto out;
	if (msgfile != NULL && strcmp(msgfile, "-") != 0 &&
	    (fd = open(msgfile, O_RDONLY | O_CLOEXEC)) < 0) {
		st = st_errno(&ei, ST_SYS, "%s", msgfile);
		goto out;
	}
	if (sized && !have_size && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode))
		env.size = (uint64_t)sb.st_size;
	if (!sized)
		env.size = 0;
	if (so.tls != TLSM_NONE && (st = tls_ctx_new(&ctx, ca, &ei)) != ST_OK)
		goto out;
	so.tls_ctx = ctx;

	if ((st = smtp_open(&s, &so, ehlo, &ei)) != ST_OK)
		goto out;
	print_caps(smtp_caps(s));
	if (have_auth) {
		st = smtp_auth(s, mech, user, tok1, &rejected, &ei);
		if (st != ST_OK && rejected && tok2 != NULL) {
			printf("auth: rejected (%s), retrying with the "
			    "refreshed token\n", ei.msg);
			st_clear(&ei);
			st = smtp_auth(s, mech, user, tok2, &rejected, &ei);
		}
		printf("auth: %s\n", st == ST_OK ? "ok" : "failed");
		if (st != ST_OK)
			goto out;
	}
	for (i = 0; i < count; i++) {
		if (i > 0 && fd != 0 && lseek(fd, 0, SEEK_SET) < 0) {
			st = st_errno(&ei, ST_SYS, "rewinding the message");
			goto out;
		}
		st = smtp_send(s, &env, fd, &res, &ei);
		for (k = 0; k < res.nrcpts; k++)
			if (res.rcpt[k].code != 0)
				printf("rcpt <%s> %s %s\n", env.rcpts[k],
				    st_name(res.rcpt[k].st), res.rcpt[k].text);
		if (res.delivered)
			printf("final: %s\n", res.text);
		smtp_result_free(&res);
		if (st != ST_OK)
			goto out;
	}
	st = smtp_quit(s, &ei);
out:
	if (st != ST_OK && smtp_usable(s)) {
		/* A refused AUTH or transaction leaves the session usable. */
		struct errinfo tmp;
		st_clear(&tmp);
		(void)smtp_quit(s, &tmp);
	}
	fflush(stdout);
	if (st == ST_OK)
		printf("status: OK\n");
	else if (ei.code != 0)
		printf("status: %s code %d %s\n", st_name(st), ei.code, ei.msg);
	else
		printf("status: %s %s\n", st_name(st), ei.msg);
	if (peak)
		printf("peak_rss_kib: %ld\n", peak_rss_kib());
	smtp_close(s);
	tls_ctx_free(ctx);
	free_secret(tok1);
	free_secret(tok2);
	if (fd > 0)
		close(fd);
	return st_exitcode(st);
}
