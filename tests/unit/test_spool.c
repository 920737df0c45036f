/*
 * Unit tests: the queue (src/spool.c).  Envelope round trips and
 * refusals, atomic enqueue under kill -9, two runners claiming at once,
 * backoff, expiry to failed/, the failure notice and the mailq listing
 * (exact text), planted links, and the maildrop both ways.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "maildrop.h"
#include "notice.h"
#include "spool.h"
#include "tap.h"

/* A string literal and its length. */
#define S(lit)	lit, sizeof(lit) - 1

static char base[256];

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void
rm_rf(const char *p)
{
	nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh queue directory under base. */
static struct spool *
mkqueue(const char *name, char *path, size_t pathsz)
{
	struct errinfo ei;
	struct spool *sp = NULL;

	snprintf(path, pathsz, "%s/%s", base, name);
	st_clear(&ei);
	if (spool_open(&sp, path, SPOOL_CREATE, &ei) != ST_OK)
		printf("# spool_open %s: %s\n", path, ei.msg);
	return sp;
}

static void
env_basic(struct envelope *env, const char *rcpt1, const char *rcpt2)
{
	struct errinfo ei;

	envelope_init(env);
	st_clear(&ei);
	envelope_set(env, "gmail", "alice@example.com", &ei);
	envelope_add_rcpt(env, rcpt1, &ei);
	if (rcpt2 != NULL)
		envelope_add_rcpt(env, rcpt2, &ei);
	env->body = ENVELOPE_BODY_7BIT;
}

static int
count_dir(const char *path, const char *sub)
{
	char p[512];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(p, sizeof(p), "%s/%s", path, sub);
	if ((d = opendir(p)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static bool
exists(const char *path, const char *sub, const char *name)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s/%s", path, sub, name);
	return lstat(p, &st) == 0;
}

static void
write_file(const char *p, const char *data, size_t n)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, data, n) != (ssize_t)n)
		printf("# cannot write %s\n", p);
	if (fd >= 0)
		close(fd);
}

/* ------------------------------------------------------------------ */

static void
test_ids(void)
{
	char a[ENVELOPE_ID_SIZE], b[ENVELOPE_ID_SIZE], c[ENVELOPE_ID_SIZE];

	envelope_id_make(a, 1764155719, 5000);
	envelope_id_make(b, 1764155719, 6000);
	envelope_id_make(c, 1764155720, 0);
	ok(envelope_id_valid(a) && envelope_id_valid(b) && envelope_id_valid(c),
	    "made IDs are valid: %s %s %s", a, b, c);
	ok(strlen(a) == 10, "IDs have 10 characters");
	ok(strcmp(a, b) < 0 && strcmp(b, c) < 0, "IDs sort by time");
	ok(!envelope_id_valid("1KQ3V7H0D") &&
	    !envelope_id_valid("1KQ3V7H0D2X") &&
	    !envelope_id_valid("1KQ3V7H0DI") &&
	    !envelope_id_valid("../etc/pas") &&
	    !envelope_id_valid("1kq3v7h0d2") && !envelope_id_valid(""),
	    "wrong length, letters I/lower case, slashes refused");
}

static void
test_backoff(void)
{
	is_int(spool_backoff(1), 300, "1st retry after 5 minutes");
	is_int(spool_backoff(2), 600, "2nd after 10");
	is_int(spool_backoff(3), 1200, "3rd after 20");
	is_int(spool_backoff(4), 2400, "4th after 40");
	is_int(spool_backoff(5), 4800, "5th after 80");
	is_int(spool_backoff(6), 9600, "6th after 160");
	is_int(spool_backoff(7), 14400, "7th capped at 4 hours");
	is_int(spool_backoff(1000), 14400, "stays at the cap");
}

static const char full_env[] =
    "bearmail-queue 1\n"
    "id 1KQ3V7H0D2\n"
    "account gmail\n"
    "uid 1000\n"
    "created 1764155719\n"
    "attempts 2\n"
    "next-try 1764156319\n"
    "last-error 421 4.7.0 Try again later\n"
    "sender alice@example.com\n"
    "body 8bitmime\n"
    "smtputf8 yes\n"
    "notify failure,delay\n"
    "ret hdrs\n"
    "envid QQ314159\n"
    "size 5\n"
    "rcpt pending bob@example.org\n"
    "reply 421 4.7.0 Try again later\n"
    "rcpt done \"carol x\"@example.net\n"
    "reply 250 2.1.5 OK\n"
    "rcpt failed d\xc3\xa9@example.com\n"
    "\n"
    "hello";

static void
test_format(void)
{
	struct envelope env, env2;
	struct errinfo ei;
	struct buf b;
	size_t hdrlen;

	envelope_init(&env);
	envelope_init(&env2);
	buf_init(&b, 1 << 20);
	st_clear(&ei);
	is_int(envelope_parse(full_env, sizeof(full_env) - 1,
	    ENVELOPE_FMT_QUEUE, &env, &hdrlen, &ei), ST_OK, "full envelope "
	    "parses %s", ei.msg);
	is_int(hdrlen, sizeof(full_env) - 1 - 5, "message starts after the "
	    "empty line");
	is_str(env.id, "1KQ3V7H0D2", "id");
	is_str(env.account, "gmail", "account");
	is_int(env.uid, 1000, "uid");
	is_int(env.created, 1764155719, "created");
	is_int(env.attempts, 2, "attempts");
	is_int(env.next_try, 1764156319, "next-try");
	is_str(env.last_error, "421 4.7.0 Try again later", "last-error");
	is_str(env.sender, "alice@example.com", "sender");
	is_int(env.body, ENVELOPE_BODY_8BITMIME, "body");
	ok(env.smtputf8, "smtputf8");
	is_int(env.notify, ENVELOPE_NOTIFY_FAILURE | ENVELOPE_NOTIFY_DELAY,
	    "notify");
	is_int(env.ret, ENVELOPE_RET_HDRS, "ret");
	is_str(env.envid, "QQ314159", "envid");
	is_int(env.size, 5, "size");
	is_int(env.nrcpts, 3, "three recipients");
	is_str(env.rcpts[1].addr, "\"carol x\"@example.net",
	    "quoted local part with a space survives");
	is_int(env.rcpts[1].state, ENVELOPE_RCPT_DONE, "state done");
	is_str(env.rcpts[1].reply, "250 2.1.5 OK", "reply attached");
	ok(env.rcpts[2].reply == NULL, "no reply on the third");
	is_int(envelope_pending(&env), 1, "one pending");
	is_int(envelope_failed(&env), 1, "one failed");

	is_int(envelope_format(&env, ENVELOPE_FMT_QUEUE, &b, &ei), ST_OK,
	    "formats");
	ok(b.len == hdrlen && memcmp(b.data, full_env, hdrlen) == 0,
	    "format(parse(x)) == x, byte for byte");
	is_int(envelope_copy(&env2, &env, &ei), ST_OK, "copies");
	buf_reset(&b);
	envelope_format(&env2, ENVELOPE_FMT_QUEUE, &b, &ei);
	ok(b.len == hdrlen && memcmp(b.data, full_env, hdrlen) == 0,
	    "the copy formats the same");
	buf_reset(&b);
	is_int(envelope_format(&env, ENVELOPE_FMT_DROP, &b, &ei), ST_DATAERR,
	    "a done recipient cannot go into a drop file");

	/* Null sender, NOTIFY=NEVER, drop format round trip. */
	envelope_free(&env);
	envelope_free(&env2);
	env_basic(&env, "bob@example.org", NULL);
	envelope_set(&env, "work", "<>", &ei);
	env.notify = ENVELOPE_NOTIFY_NEVER;
	env.size = 0;
	buf_reset(&b);
	is_int(envelope_format(&env, ENVELOPE_FMT_DROP, &b, &ei), ST_OK,
	    "drop format");
	is_str(b.data, "bearmail-drop 1\naccount work\nsender <>\n"
	    "body 7bit\nsmtputf8 no\nnotify never\nsize 0\n"
	    "rcpt pending bob@example.org\n\n", "drop envelope text");
	is_int(envelope_parse(b.data, b.len, ENVELOPE_FMT_DROP, &env2, &hdrlen,
	    &ei), ST_OK, "parses back");
	is_str(env2.sender, "", "<> is the null sender");
	is_int(env2.notify, ENVELOPE_NOTIFY_NEVER, "never");
	is_int(envelope_parse(b.data, b.len, ENVELOPE_FMT_QUEUE, &env2, &hdrlen,
	    &ei), ST_DATAERR, "a drop file is not a queue file");

	/* Setters refuse what the format cannot carry. */
	st_clear(&ei);
	is_int(envelope_add_rcpt(&env, "bob@x\nrcpt pending evil@x", &ei),
	    ST_DATAERR, "newline in an address refused");
	is_int(envelope_add_rcpt(&env, "<>", NULL), ST_DATAERR,
	    "<> is no recipient");
	is_int(envelope_set(&env, "", "a@b", NULL), ST_DATAERR,
	    "empty account refused");
	is_int(envelope_set_envid(&env, "has space", NULL), ST_DATAERR,
	    "ENVID with a space refused");
	/* Fields set by hand are checked when written. */
	memcpy(env.id, "1KQ3V7H0D2", ENVELOPE_ID_SIZE);
	env.last_error = strdup("421 x\nrcpt pending evil@example.com");
	buf_reset(&b);
	is_int(envelope_format(&env, ENVELOPE_FMT_QUEUE, &b, &ei), ST_DATAERR,
	    "a newline set by hand is not written");
	free(env.last_error);
	env.last_error = NULL;
	env.created = -1;
	is_int(envelope_format(&env, ENVELOPE_FMT_QUEUE, &b, &ei), ST_DATAERR,
	    "a negative time is not written");
	envelope_free(&env);
	envelope_free(&env2);
	buf_free(&b);
}

static void
test_parse_refusals(void)
{
	static const struct {
		const char *text;
		enum envelope_fmt fmt;
		const char *what;
	} bad[] = {
	{ "bearmail-queue 2\n\n", ENVELOPE_FMT_QUEUE, "unknown version" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 1\n\n", ENVELOPE_FMT_DROP, "no recipient" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 1\nrcpt pending b@c\nattempts 0\n\n", ENVELOPE_FMT_DROP,
	  "runner field in a drop file" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 1\nrcpt done b@c\n\n", ENVELOPE_FMT_DROP,
	  "done recipient in a drop file" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 1\nrcpt pending b@c\nreply 250 ok\n\n", ENVELOPE_FMT_DROP,
	  "reply in a drop file" },
	{ "bearmail-drop 1\naccount a\naccount b\nsender <>\nbody 7bit\n"
	  "smtputf8 no\nsize 1\nrcpt pending b@c\n\n", ENVELOPE_FMT_DROP,
	  "duplicate field" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 01\nrcpt pending b@c\n\n", ENVELOPE_FMT_DROP, "leading zero" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size -1\nrcpt pending b@c\n\n", ENVELOPE_FMT_DROP, "negative size" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 999999999999\nrcpt pending b@c\n\n", ENVELOPE_FMT_DROP,
	  "size past the maximum" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 9bit\nsmtputf8 no\n"
	  "size 1\nrcpt pending b@c\n\n", ENVELOPE_FMT_DROP, "bad body" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "notify never,success\nsize 1\nrcpt pending b@c\n\n",
	  ENVELOPE_FMT_DROP, "never with others" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 1\nrcpt pending b@c\r\n\n", ENVELOPE_FMT_DROP,
	  "CR in a value" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 1\nrcpt pending \n\n", ENVELOPE_FMT_DROP, "empty address" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 1\nbogus x\nrcpt pending b@c\n\n", ENVELOPE_FMT_DROP,
	  "unknown field" },
	{ "bearmail-drop 1\naccount a\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 1\nrcpt pending b@c\n", ENVELOPE_FMT_DROP, "no empty line" },
	{ "bearmail-queue 1\nid 1KQ3V7H0D2\naccount a\ncreated 1\n"
	  "attempts 0\nnext-try 1\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 1\nreply 250 x\nrcpt pending b@c\n\n", ENVELOPE_FMT_QUEUE,
	  "reply before any rcpt" },
	{ "bearmail-queue 1\nid ../../etc/\naccount a\ncreated 1\n"
	  "attempts 0\nnext-try 1\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 1\nrcpt pending b@c\n\n", ENVELOPE_FMT_QUEUE, "bad id" },
	{ "bearmail-queue 1\naccount a\ncreated 1\n"
	  "attempts 0\nnext-try 1\nsender <>\nbody 7bit\nsmtputf8 no\n"
	  "size 1\nrcpt pending b@c\n\n", ENVELOPE_FMT_QUEUE, "no id" },
	};
	struct envelope env;
	struct errinfo ei;
	size_t i, hdrlen;
	char *big;

	envelope_init(&env);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		st_clear(&ei);
		is_int(envelope_parse(bad[i].text, strlen(bad[i].text),
		    bad[i].fmt, &env, &hdrlen, &ei), ST_DATAERR,
		    "refused: %s (%s)", bad[i].what, ei.msg);
		ok(env.nrcpts == 0 && env.account == NULL,
		    "nothing left in the envelope");
	}
	/* No empty line within the bound: a limit, not a hang or a read. */
	big = malloc(ENVELOPE_HDR_MAX + 100);
	memset(big, 'x', ENVELOPE_HDR_MAX + 100);
	memcpy(big, "bearmail-drop 1\naccount ", 24);
	st_clear(&ei);
	is_int(envelope_parse(big, ENVELOPE_HDR_MAX + 100, ENVELOPE_FMT_DROP,
	    &env, &hdrlen, &ei), ST_LIMIT, "envelope without end: ST_LIMIT");
	free(big);
}

/* ------------------------------------------------------------------ */

static void
test_enqueue_claim(void)
{
	struct envelope env, *e;
	struct spool_list l;
	struct spool_msg *m, *m2;
	struct spool *sp;
	struct errinfo ei;
	char path[512], tmpf[512], buf[64];
	struct stat st;
	int fd, bfd;
	ssize_t r;

	if ((sp = mkqueue("enq", path, sizeof(path))) == NULL) {
		ok(0, "queue");
		return;
	}
	snprintf(tmpf, sizeof(tmpf), "%s/q", path);
	ok(stat(tmpf, &st) == 0 && (st.st_mode & 0777) == 0700,
	    "q/ created 0700");
	{
		struct spool *sp2;

		snprintf(tmpf, sizeof(tmpf), "%s/state/bearmail/queue", base);
		st_clear(&ei);
		is_int(spool_open(&sp2, tmpf, SPOOL_CREATE, &ei), ST_OK,
		    "missing parents created %s", ei.msg);
		spool_close(sp2);
		is_int(spool_open(&sp2, tmpf, SPOOL_RDONLY, &ei), ST_OK,
		    "and opened read-only");
		spool_close(sp2);
		snprintf(tmpf, sizeof(tmpf), "%s/absent", base);
		is_int(spool_open(&sp2, tmpf, 0, &ei), ST_CANTCREAT,
		    "no queue, no SPOOL_CREATE: CANTCREAT");
	}

	env_basic(&env, "bob@example.org", "carol@example.net");
	st_clear(&ei);
	is_int(spool_enqueue_mem(sp, &env, "Subject: x\r\n\r\nbody\r\n", 20,
	    &ei), ST_OK, "enqueue from memory %s", ei.msg);
	ok(envelope_id_valid(env.id), "got an ID %s", env.id);
	ok(env.created > 0 && env.next_try == env.created, "due at once");
	is_int(env.uid, getuid(), "uid recorded");
	ok(exists(path, "q", env.id), "q/ID exists");
	is_int(count_dir(path, "tmp"), 0, "tmp/ empty");

	is_int(spool_claim(sp, env.id, &m, &ei), ST_OK, "claim");
	ok(m != NULL, "claimed");
	is_int(spool_claim(sp, env.id, &m2, &ei), ST_OK, "second claim");
	ok(m2 == NULL, "second claim finds it busy");
	e = spool_msg_env(m);
	is_int(e->size, 20, "size");
	is_int(spool_body_open(m, &bfd, &ei), ST_OK, "body fd");
	r = read(bfd, buf, sizeof(buf));
	ok(r == 20 && memcmp(buf, "Subject: x\r\n\r\nbody\r\n", 20) == 0,
	    "body fd reads the message from its first octet to EOF");
	close(bfd);
	/* A rewrite keeps the claim: the new file is locked first. */
	spool_rcpt_set(m, 0, ENVELOPE_RCPT_DONE, "250 2.1.5 OK", &ei);
	is_int(spool_defer(m, 1000, "451 4.3.0 later\r\nX", &ei), ST_OK,
	    "defer");
	is_int(e->attempts, 1, "attempts 1");
	is_int(e->next_try, 1300, "next try after 5 minutes");
	is_str(e->last_error, "451 4.3.0 later??X", "control bytes replaced");
	is_int(spool_claim(sp, env.id, &m2, &ei), ST_OK, "claim after update");
	ok(m2 == NULL, "still busy after the update");
	is_int(spool_body_open(m, &bfd, &ei), ST_OK, "body fd after update");
	r = read(bfd, buf, sizeof(buf));
	ok(r == 20 && memcmp(buf, "Subject: x\r\n\r\nbody\r\n", 20) == 0,
	    "message copied intact");
	close(bfd);
	spool_release(m);

	/* Due or not. */
	is_int(spool_scan(sp, 1299, SPOOL_SCAN_DUE, &l, &ei), ST_OK, "scan");
	is_int(l.n, 0, "not due before next-try");
	spool_list_free(&l);
	spool_scan(sp, 1300, SPOOL_SCAN_DUE, &l, &ei);
	is_int(l.n, 1, "due at next-try");
	if (l.n == 1) {
		is_int(l.v[0].env.rcpts[0].state, ENVELOPE_RCPT_DONE,
		    "recipient state was written");
		is_int(l.v[0].env.attempts, 1, "attempts were written");
	}
	spool_list_free(&l);

	/* A second defer doubles. */
	spool_claim(sp, env.id, &m, &ei);
	spool_defer(m, 2000, NULL, &ei);
	is_int(spool_msg_env(m)->next_try, 2600, "second backoff 10 minutes");
	ok(spool_msg_env(m)->last_error == NULL, "no error: none kept");
	/* Deliver the rest: all done, so the file goes. */
	spool_rcpt_set(m, 1, ENVELOPE_RCPT_DONE, NULL, &ei);
	is_int(spool_retire(m, &ei), ST_OK, "retire delivered");
	spool_release(m);
	ok(!exists(path, "q", env.id), "delivered message removed");
	is_int(count_dir(path, "failed"), 0, "nothing in failed/");

	/* From a file descriptor, from its current offset. */
	snprintf(tmpf, sizeof(tmpf), "%s/src", base);
	write_file(tmpf, "JUNKHello\r\n", 11);
	fd = open(tmpf, O_RDONLY);
	lseek(fd, 4, SEEK_SET);
	envelope_free(&env);
	env_basic(&env, "bob@example.org", NULL);
	is_int(spool_enqueue_fd(sp, &env, fd, &ei), ST_OK, "enqueue from fd");
	close(fd);
	is_int(env.size, 7, "size from the offset");
	spool_claim(sp, env.id, &m, &ei);
	spool_body_open(m, &bfd, &ei);
	r = read(bfd, buf, sizeof(buf));
	ok(r == 7 && memcmp(buf, "Hello\r\n", 7) == 0, "content from offset");
	close(bfd);
	spool_release(m);
	envelope_free(&env);
	spool_close(sp);
}

/* ------------------------------------------------------------------ */

#define KILL_ROUNDS	60

/* The child: enqueue messages of a checkable shape until killed. */
static void
enqueue_forever(const char *path)
{
	struct envelope env;
	struct spool *sp;
	char *msg;
	size_t n, i;
	unsigned seed = (unsigned)getpid();

	if (spool_open(&sp, path, 0, NULL) != ST_OK)
		_exit(1);
	msg = malloc(600000);
	for (;;) {
		n = 1000 + (size_t)(rand_r(&seed) % 500000);
		for (i = 0; i < n - 5; i++)
			msg[i] = (char)('a' + i % 26);
		memcpy(msg + n - 5, "END\r\n", 5);
		env_basic(&env, "bob@example.org", NULL);
		spool_enqueue_mem(sp, &env, msg, n, NULL);
		envelope_free(&env);
	}
}

static void
test_kill9(void)
{
	struct spool_list l;
	struct spool_msg *m;
	struct spool *sp;
	struct errinfo ei;
	struct buf b;
	char path[512];
	size_t i, j, good = 0;
	bool complete, allok = true;
	unsigned seed = 42;
	pid_t pid;
	int round, inq;

	if ((sp = mkqueue("kill", path, sizeof(path))) == NULL) {
		ok(0, "queue");
		return;
	}
	for (round = 0; round < KILL_ROUNDS; round++) {
		if ((pid = fork()) == 0)
			enqueue_forever(path);
		usleep(200 + rand_r(&seed) % 20000);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	st_clear(&ei);
	inq = count_dir(path, "q");
	is_int(spool_scan(sp, 0, 0, &l, &ei), ST_OK, "scan after kills");
	is_int((int)l.n, inq, "every file in q/ parses (%d files)", inq);
	ok(inq > 0, "some messages made it");
	buf_init(&b, 1 << 20);
	for (i = 0; i < l.n; i++) {
		if (spool_claim(sp, l.v[i].env.id, &m, &ei) != ST_OK ||
		    m == NULL) {
			allok = false;
			continue;
		}
		buf_reset(&b);
		spool_body_read(m, 1 << 20, &b, &complete, &ei);
		if (!complete || (off_t)b.len != spool_msg_env(m)->size ||
		    b.len < 5 || memcmp(b.data + b.len - 5, "END\r\n", 5) != 0)
			allok = false;
		for (j = 0; allok && j + 5 < b.len; j++)
			if (b.data[j] != (char)('a' + j % 26))
				allok = false;
		if (allok)
			good++;
		spool_release(m);
	}
	ok(allok && good == l.n, "each queued message is whole (%zu)", good);
	spool_list_free(&l);
	buf_free(&b);
	printf("# tmp/ leftovers after %d kills: %d\n", KILL_ROUNDS,
	    count_dir(path, "tmp"));
	is_int(spool_cleanup(sp, time(NULL) + 2 * 86400, &ei), ST_OK,
	    "cleanup");
	is_int(count_dir(path, "tmp"), 0, "stale tmp/ files removed");
	spool_close(sp);
}

/* ------------------------------------------------------------------ */

#define RACE_MSGS	150
#define RACE_KIDS	4

static void
claimer(const char *path, int wfd)
{
	struct spool_list l;
	struct spool_msg *m;
	struct spool *sp;
	struct errinfo ei;
	char line[32];
	size_t i;
	int pass;

	if (spool_open(&sp, path, 0, NULL) != ST_OK)
		_exit(1);
	for (pass = 0; pass < 3; pass++) {
		if (spool_scan(sp, 0, 0, &l, NULL) != ST_OK)
			_exit(1);
		for (i = 0; i < l.n; i++) {
			st_clear(&ei);
			if (spool_claim(sp, l.v[i].env.id, &m, &ei) != ST_OK) {
				fprintf(stderr, "# claim %s: %s\n",
				    l.v[i].env.id, ei.msg);
				_exit(2);
			}
			if (m == NULL)
				continue;
			snprintf(line, sizeof(line), "%s\n", l.v[i].env.id);
			if (write(wfd, line, strlen(line)) < 0)
				_exit(3);
			/* Replace the file once, as a deferral would. */
			st_clear(&ei);
			if (spool_commit(m, &ei) != ST_OK) {
				fprintf(stderr, "# commit: %s\n", ei.msg);
				_exit(4);
			}
			spool_rcpt_set(m, 0, ENVELOPE_RCPT_DONE, "250 ok",
			    NULL);
			if (spool_retire(m, &ei) != ST_OK) {
				fprintf(stderr, "# retire: %s\n", ei.msg);
				_exit(5);
			}
			spool_release(m);
		}
		spool_list_free(&l);
	}
	_exit(0);
}

static void
test_race(void)
{
	struct envelope env;
	struct spool *sp;
	struct errinfo ei;
	char path[512], ids[RACE_MSGS][ENVELOPE_ID_SIZE], rd[65536];
	int counts[RACE_MSGS] = { 0 }, p[2], i, k, status, bad = 0, dups = 0;
	size_t len = 0;
	ssize_t r;
	pid_t kids[RACE_KIDS];
	char *line, *nl;

	if ((sp = mkqueue("race", path, sizeof(path))) == NULL) {
		ok(0, "queue");
		return;
	}
	st_clear(&ei);
	for (i = 0; i < RACE_MSGS; i++) {
		env_basic(&env, "bob@example.org", NULL);
		spool_enqueue_mem(sp, &env, "x\r\n", 3, &ei);
		memcpy(ids[i], env.id, ENVELOPE_ID_SIZE);
		envelope_free(&env);
	}
	is_int(count_dir(path, "q"), RACE_MSGS, "%d queued", RACE_MSGS);
	if (pipe(p) != 0)
		return;
	for (k = 0; k < RACE_KIDS; k++)
		if ((kids[k] = fork()) == 0) {
			close(p[0]);
			claimer(path, p[1]);
		}
	close(p[1]);
	while (len < sizeof(rd) - 1 &&
	    (r = read(p[0], rd + len, sizeof(rd) - 1 - len)) > 0)
		len += (size_t)r;
	rd[len] = '\0';
	close(p[0]);
	for (k = 0; k < RACE_KIDS; k++) {
		waitpid(kids[k], &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			printf("# runner %d: status 0x%x\n", k, status);
			bad++;
		}
	}
	is_int(bad, 0, "every runner finished cleanly");
	for (line = rd; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
		*nl = '\0';
		for (i = 0; i < RACE_MSGS; i++)
			if (strcmp(ids[i], line) == 0)
				counts[i]++;
	}
	for (i = 0; i < RACE_MSGS; i++)
		if (counts[i] != 1)
			dups++;
	is_int(dups, 0, "%d runners: each message claimed exactly once",
	    RACE_KIDS);
	is_int(count_dir(path, "q"), 0, "queue emptied");
	spool_close(sp);
}

/* ------------------------------------------------------------------ */

static void
test_expire_notice(void)
{
	static const char orig_msg[] =
	    "From: Alice <alice@example.com>\r\n"
	    "To: bob@example.org\r\n"
	    "Subject: hi\r\n"
	    "\r\n"
	    "body line\r\n";
	static const char want[] =
	    "From: MAILER-DAEMON@host.example.com (Mail Delivery System)\r\n"
	    "To: <alice@example.com>\r\n"
	    "Subject: Undelivered Mail Returned to Sender\r\n"
	    "Date: Wed, 2 Dec 2026 11:15:19 +0000\r\n"
	    "Message-ID: <notice.1KQ3V7H0D2.1796210119@host.example.com>\r\n"
	    "Auto-Submitted: auto-replied\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"1KQ3V7H0D2.1796210119/host.example.com\"\r\n"
	    "\r\n"
	    "This is a MIME-encapsulated message.\r\n"
	    "\r\n"
	    "--1KQ3V7H0D2.1796210119/host.example.com\r\n"
	    "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "\r\n"
	    "This is bearmail at host.example.com.\r\n"
	    "\r\n"
	    "Your message could not be delivered to one or more of its\r\n"
	    "recipients, listed below with the reason.\r\n"
	    "It stayed in the queue for 5 days without being delivered.\r\n"
	    "\r\n"
	    "<bob@example.org>: 550 5.1.1 no such user\r\n"
	    "<\"carol x\"@example.net>: 421 4.7.0 Try again later\r\n"
	    "\r\n"
	    "The header of your message follows as the last part of this "
	    "report.\r\n"
	    "\r\n"
	    "--1KQ3V7H0D2.1796210119/host.example.com\r\n"
	    "Content-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n"
	    "\r\n"
	    "Reporting-MTA: dns; host.example.com\r\n"
	    "X-Bearmail-Queue-ID: 1KQ3V7H0D2\r\n"
	    "Original-Envelope-Id: QQ314159\r\n"
	    "Arrival-Date: Thu, 26 Nov 2026 11:15:19 +0000\r\n"
	    "\r\n"
	    "Final-Recipient: rfc822; bob@example.org\r\n"
	    "Action: failed\r\n"
	    "Status: 5.1.1\r\n"
	    "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
	    "\r\n"
	    "Final-Recipient: rfc822; \"carol x\"@example.net\r\n"
	    "Action: failed\r\n"
	    "Status: 4.4.7\r\n"
	    "Diagnostic-Code: smtp; 421 4.7.0 Try again later\r\n"
	    "\r\n"
	    "--1KQ3V7H0D2.1796210119/host.example.com\r\n"
	    "Content-Description: Undelivered Message Headers\r\n"
	    "Content-Type: text/rfc822-headers\r\n"
	    "\r\n"
	    "From: Alice <alice@example.com>\r\n"
	    "To: bob@example.org\r\n"
	    "Subject: hi\r\n"
	    "\r\n"
	    "--1KQ3V7H0D2.1796210119/host.example.com--\r\n";
	struct notice_opts o = {
		.to = NULL, .domain = "host.example.com",
		.now = 1796210119, .max_age = 5 * 86400,
	};
	struct envelope orig, nenv, *e;
	struct spool_msg *m;
	struct spool *sp;
	struct errinfo ei;
	struct buf b, body;
	char path[512], id[ENVELOPE_ID_SIZE];
	bool none, complete;
	size_t hdrlen;

	/* Pure composition, exact text. */
	envelope_init(&orig);
	envelope_init(&nenv);
	buf_init(&b, 1 << 20);
	st_clear(&ei);
	envelope_parse(full_env, sizeof(full_env) - 1, ENVELOPE_FMT_QUEUE,
	    &orig, &hdrlen, &ei);
	/* bob refused for good, carol expired, the third delivered. */
	orig.created = 1795691719;
	orig.smtputf8 = false;
	free(orig.rcpts[0].reply);
	orig.rcpts[0].reply = strdup("550 5.1.1 no such user");
	orig.rcpts[0].state = ENVELOPE_RCPT_FAILED;
	orig.rcpts[1].state = ENVELOPE_RCPT_FAILED;
	free(orig.rcpts[1].reply);
	orig.rcpts[1].reply = strdup("421 4.7.0 Try again later");
	orig.rcpts[2].state = ENVELOPE_RCPT_DONE;
	is_int(notice_compose(&orig, orig_msg, sizeof(orig_msg) - 1, true, &o,
	    &nenv, &b, &none, &ei), ST_OK, "notice composed %s", ei.msg);
	ok(!none, "a notice is due");
	is_str(b.data, want, "notice text, exactly");
	is_str(nenv.sender, "", "notice sender <>");
	ok(nenv.nrcpts == 1 && strcmp(nenv.rcpts[0].addr,
	    "alice@example.com") == 0, "to the envelope sender");
	is_str(nenv.account, "gmail", "same account");
	is_int(nenv.body, ENVELOPE_BODY_7BIT, "7bit");
	envelope_free(&nenv);

	o.to = "postmaster@example.com";
	buf_reset(&b);
	notice_compose(&orig, orig_msg, sizeof(orig_msg) - 1, true, &o, &nenv,
	    &b, &none, &ei);
	ok(!none && strcmp(nenv.rcpts[0].addr, "postmaster@example.com") == 0 &&
	    strstr(b.data, "To: <postmaster@example.com>\r\n") != NULL,
	    "bounce_to wins");
	envelope_free(&nenv);

	orig.ret = ENVELOPE_RET_FULL;
	buf_reset(&b);
	notice_compose(&orig, orig_msg, sizeof(orig_msg) - 1, true, &o, &nenv,
	    &b, &none, &ei);
	ok(strstr(b.data, "Content-Type: message/rfc822\r\n\r\n"
	    "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\n"
	    "Subject: hi\r\n\r\nbody line\r\n\r\n--") != NULL,
	    "RET=FULL returns the whole message");
	envelope_free(&nenv);

	buf_reset(&b);
	notice_compose(&orig, "Subject: \xc3\xa9t\xc3\xa9\r\n\r\nx", 19, true,
	    &o, &nenv, &b, &none, &ei);
	ok(nenv.body == ENVELOPE_BODY_8BITMIME && strstr(b.data,
	    "MIME-Version: 1.0\r\nContent-Type: multipart/report; "
	    "report-type=delivery-status;\r\n\tboundary=") != NULL &&
	    strstr(b.data, "Content-Transfer-Encoding: 8bit\r\n\r\nThis is a")
	    != NULL, "8-bit content: 8BITMIME and a CTE header");
	envelope_free(&nenv);
	orig.ret = ENVELOPE_RET_NONE;

	/* When no notice is due. */
	buf_reset(&b);
	orig.notify = ENVELOPE_NOTIFY_NEVER;
	notice_compose(&orig, orig_msg, sizeof(orig_msg) - 1, true, &o, &nenv,
	    &b, &none, &ei);
	ok(none && b.len == 0, "NOTIFY=NEVER: no notice");
	orig.notify = ENVELOPE_NOTIFY_DELAY;
	notice_compose(&orig, orig_msg, sizeof(orig_msg) - 1, true, &o, &nenv,
	    &b, &none, &ei);
	ok(none, "NOTIFY without FAILURE: no notice");
	orig.notify = 0;
	free(orig.sender);
	orig.sender = strdup("");
	notice_compose(&orig, orig_msg, sizeof(orig_msg) - 1, true, &o, &nenv,
	    &b, &none, &ei);
	ok(none, "null sender: never a notice, not even to bounce_to");
	envelope_free(&orig);

	/* Expiry through the queue: to failed/ with the reason. */
	if ((sp = mkqueue("expire", path, sizeof(path))) == NULL) {
		ok(0, "queue");
		return;
	}
	env_basic(&orig, "bob@example.org", "carol@example.net");
	spool_enqueue_mem(sp, &orig, orig_msg, sizeof(orig_msg) - 1, &ei);
	memcpy(id, orig.id, sizeof(id));
	spool_claim(sp, id, &m, &ei);
	e = spool_msg_env(m);
	spool_rcpt_set(m, 1, ENVELOPE_RCPT_PENDING, "421 4.3.0 busy", &ei);
	ok(!spool_expired(e, e->created + 5 * 86400 - 1, 5 * 86400),
	    "not expired a second early");
	ok(spool_expired(e, e->created + 5 * 86400, 5 * 86400),
	    "expired at max_queue_age");
	is_int(spool_fail_pending(m, "message expired after 5 days in the "
	    "queue", &ei), ST_OK, "fail pending");
	is_int(envelope_pending(e), 0, "none pending");
	is_int(spool_commit(m, &ei), ST_OK, "commit");
	buf_init(&body, 1 << 20);
	spool_body_read(m, 1 << 20, &body, &complete, &ei);
	ok(complete && body.len == sizeof(orig_msg) - 1, "original read back");
	buf_reset(&b);
	o.to = NULL;
	notice_compose(e, body.data, body.len, complete, &o, &nenv, &b, &none,
	    &ei);
	ok(!none && strstr(b.data, "<bob@example.org>: message expired after "
	    "5 days in the queue\r\n") && strstr(b.data, "<carol@example.net>"
	    ": 421 4.3.0 busy\r\n") && strstr(b.data, "Status: 4.4.7\r\n"),
	    "expiry notice names both, keeps the server's last word");
	is_int(spool_enqueue_mem(sp, &nenv, b.data, b.len, &ei), ST_OK,
	    "notice enqueued");
	is_int(spool_retire(m, &ei), ST_OK, "retire to failed/");
	spool_release(m);
	ok(!exists(path, "q", id) && exists(path, "failed", id),
	    "moved from q/ to failed/");
	{
		char fp[600], *data;
		struct envelope fe;
		struct stat st;
		int fd;

		snprintf(fp, sizeof(fp), "%s/failed/%s", path, id);
		fd = open(fp, O_RDONLY);
		fstat(fd, &st);
		data = malloc((size_t)st.st_size + 1);
		ok(read(fd, data, (size_t)st.st_size) == st.st_size,
		    "failed/ID readable");
		close(fd);
		envelope_init(&fe);
		is_int(envelope_parse(data, (size_t)st.st_size,
		    ENVELOPE_FMT_QUEUE, &fe, &hdrlen, &ei), ST_OK,
		    "failed/ID parses");
		ok(fe.last_error != NULL && strcmp(fe.last_error, "message "
		    "expired after 5 days in the queue") == 0,
		    "failed/ID says why");
		ok(fe.nrcpts == 2 && fe.rcpts[0].state == ENVELOPE_RCPT_FAILED
		    && fe.rcpts[1].state == ENVELOPE_RCPT_FAILED, "both "
		    "recipients failed");
		envelope_free(&fe);
		free(data);
	}
	is_int(count_dir(path, "q"), 1, "only the notice is left in q/");
	envelope_free(&nenv);
	envelope_free(&orig);
	buf_free(&body);
	buf_free(&b);
	spool_close(sp);
}

/* ------------------------------------------------------------------ */

static void
test_listing(void)
{
	static const char want[] =
	    "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
	    "1NGG5SP1EJ     1234 Thu Nov 26 11:15:19  alice@example.com\n"
	    "%51s(421 4.7.0 Try again later)\n"
	    "%41sbob@example.org\n"
	    "%41sdave@example.org\n"
	    "%58s(reason unavailable)\n"
	    "%41serin@example.org\n"
	    "\n"
	    "1NGG5SP1EK      900 Tue Dec  1 09:05:00  MAILER-DAEMON\n"
	    "%41sroot@example.com\n"
	    "\n"
	    "1NGG5SP1EM   100000 Tue Dec  1 09:05:00  (maildrop queue, sender UID 33)\n"
	    "\n"
	    "-- 99 Kbytes in 3 Requests.\n";
	char wantbuf[2048];
	struct spool_entry v[3];
	struct spool_list l = { v, 3 };
	struct spool *sp;
	struct errinfo ei;
	struct buf b;
	char path[512];
	size_t i;

	memset(v, 0, sizeof(v));
	for (i = 0; i < 3; i++)
		envelope_init(&v[i].env);
	st_clear(&ei);
	memcpy(v[0].env.id, "1NGG5SP1EJ", ENVELOPE_ID_SIZE);
	envelope_set(&v[0].env, "gmail", "alice@example.com", &ei);
	envelope_add_rcpt(&v[0].env, "bob@example.org", &ei);
	envelope_add_rcpt(&v[0].env, "carol@example.org", &ei);
	envelope_add_rcpt(&v[0].env, "dave@example.org", &ei);
	envelope_add_rcpt(&v[0].env, "erin@example.org", &ei);
	v[0].env.rcpts[1].state = ENVELOPE_RCPT_DONE;
	/* Never tried as a whole: reasons only where a reply came. */
	v[0].env.rcpts[0].reply = strdup("421 4.7.0 Try again later");
	v[0].env.rcpts[2].reply = strdup("421 4.7.0 Try again later");
	v[0].env.created = 1795691719;
	v[0].env.size = 1234;
	memcpy(v[1].env.id, "1NGG5SP1EK", ENVELOPE_ID_SIZE);
	envelope_set(&v[1].env, "gmail", "<>", &ei);
	envelope_add_rcpt(&v[1].env, "root@example.com", &ei);
	v[1].env.created = 1796115900;
	v[1].env.size = 900;
	memcpy(v[2].env.id, "1NGG5SP1EM", ENVELOPE_ID_SIZE);
	v[2].drop = true;
	v[2].env.uid = 33;
	v[2].env.created = 1796115900;
	v[2].env.size = 100000;

	buf_init(&b, 1 << 20);
	is_int(spool_list_format(&l, &b, &ei), ST_OK, "listing formats");
	/* The widths spelled out, as Postfix's showq computes them. */
	snprintf(wantbuf, sizeof(wantbuf), want, "", "", "", "", "", "");
	is_str(b.data, wantbuf, "listing text, exactly (Postfix layout)");
	for (i = 0; i < 3; i++)
		envelope_free(&v[i].env);

	buf_reset(&b);
	l.n = 0;
	spool_list_format(&l, &b, &ei);
	is_str(b.data, "Mail queue is empty\n", "empty queue");

	/* From a real directory, with a maildrop file. */
	if ((sp = mkqueue("list", path, sizeof(path))) == NULL) {
		ok(0, "queue");
		return;
	}
	{
		struct envelope env;
		char p[600];

		env_basic(&env, "bob@example.org", NULL);
		spool_enqueue_mem(sp, &env, "x\r\n", 3, &ei);
		snprintf(p, sizeof(p), "%s/maildrop/1NGG5SP1EM", path);
		write_file(p, "whatever", 8);
		buf_reset(&b);
		is_int(spool_listing(sp, &b, &ei), ST_OK, "listing of a queue");
		ok(strstr(b.data, "1NGG5SP1EM        8 ") != NULL &&
		    strstr(b.data, "(maildrop queue, sender UID") != NULL,
		    "maildrop entry listed first, untrusted contents unread");
		ok(strstr(b.data, env.id) != NULL &&
		    strstr(b.data, "  alice@example.com\n") != NULL &&
		    strstr(b.data, "-- 0 Kbytes in 2 Requests.\n") != NULL,
		    "queued message and summary");
		envelope_free(&env);
	}
	buf_free(&b);
	spool_close(sp);
}

/* ------------------------------------------------------------------ */

static void
test_planted(void)
{
	struct envelope env;
	struct spool_list l;
	struct spool_msg *m;
	struct spool *sp, *sp2;
	struct errinfo ei;
	char path[512], p[600], p2[600], id[ENVELOPE_ID_SIZE];

	if ((sp = mkqueue("planted", path, sizeof(path))) == NULL) {
		ok(0, "queue");
		return;
	}
	st_clear(&ei);
	env_basic(&env, "bob@example.org", NULL);
	spool_enqueue_mem(sp, &env, "x\r\n", 3, &ei);
	memcpy(id, env.id, sizeof(id));
	envelope_free(&env);

	/* A symlink to a perfectly good queue file, kept outside q/. */
	snprintf(p, sizeof(p), "%s/q/%s", path, id);
	snprintf(p2, sizeof(p2), "%s/outside", base);
	link(p, p2);
	snprintf(p, sizeof(p), "%s/q/0000000001", path);
	ok(symlink(p2, p) == 0, "planted a symlink");
	/* The original now has two links: refused as well. */
	snprintf(p, sizeof(p), "%s/q/0000000002", path);
	ok(mkfifo(p, 0600) == 0, "planted a FIFO");
	snprintf(p, sizeof(p), "%s/q/not-an-id", path);
	write_file(p, "x", 1);
	is_int(spool_scan(sp, 0, 0, &l, &ei), ST_OK, "scan survives");
	is_int(l.n, 0, "symlink, FIFO, hard-linked file and stray name "
	    "all refused");
	spool_list_free(&l);
	is_int(spool_claim(sp, "0000000001", &m, &ei), ST_DATAERR,
	    "claim through a symlink refused");
	ok(m == NULL, "nothing claimed");
	st_clear(&ei);
	is_int(spool_claim(sp, id, &m, &ei), ST_DATAERR,
	    "claim of a hard-linked file refused: %s", ei.msg);
	unlink(p2);
	st_clear(&ei);
	is_int(spool_claim(sp, id, &m, &ei), ST_OK, "claimable again with one "
	    "link");
	ok(m != NULL, "claimed");
	spool_release(m);
	if (geteuid() == 0) {
		snprintf(p, sizeof(p), "%s/q/%s", path, id);
		chown(p, 65534, 65534);
		st_clear(&ei);
		is_int(spool_claim(sp, id, &m, &ei), ST_DATAERR,
		    "file of another owner refused");
		chown(p, 0, 0);
	} else
		ok(1, "# SKIP not root: cannot plant another owner's file");
	spool_close(sp);

	/* A queue subdirectory that is a symlink, and a lax top. */
	snprintf(p, sizeof(p), "%s/failed", path);
	rename(p, p2);
	symlink(p2, p);
	st_clear(&ei);
	is_int(spool_open(&sp2, path, 0, &ei), ST_CANTCREAT,
	    "symlinked failed/ refused: %s", ei.msg);
	unlink(p);
	rename(p2, p);
	chmod(path, 0777);
	st_clear(&ei);
	is_int(spool_open(&sp2, path, 0, &ei), ST_CANTCREAT,
	    "world-writable queue refused: %s", ei.msg);
	chmod(path, 0700);
	is_int(spool_open(&sp2, path, 0, &ei), ST_OK, "fixed: opens");
	spool_close(sp2);
}

/* ------------------------------------------------------------------ */

static const char drop_sub[] =
    "bearmail-drop 1\n"
    "account gmail\n"
    "sender alice@example.com\n"
    "body 7bit\n"
    "smtputf8 no\n"
    "size 7\n"
    "rcpt pending bob@example.org\n"
    "\n"
    "Hello\r\n";

/* Run maildrop_write() on text; returns its status, id set on success. */
static enum status
drop_text(int dropfd, const char *text, size_t n, char *id,
    struct errinfo *ei)
{
	char p[600];
	enum status st;
	int fd;

	snprintf(p, sizeof(p), "%s/input", base);
	write_file(p, text, n);
	fd = open(p, O_RDONLY);
	st_clear(ei);
	st = maildrop_write(dropfd, fd, 5, id, ei);
	close(fd);
	unlink(p);
	return st;
}

static void
test_maildrop(void)
{
	struct spool_list l;
	struct spool *sp;
	struct errinfo ei;
	struct stat st;
	struct timespec old[2];
	char path[512], p[600], p2[600], id[ENVELOPE_ID_SIZE],
	    id2[ENVELOPE_ID_SIZE];
	char *big;
	size_t n;
	int dropfd;

	if ((sp = mkqueue("drop", path, sizeof(path))) == NULL) {
		ok(0, "queue");
		return;
	}
	snprintf(p, sizeof(p), "%s/maildrop", path);
	dropfd = open(p, O_PATH | O_DIRECTORY);

	/* maildrop_write: what bearmail-drop does. */
	is_int(drop_text(dropfd, drop_sub, sizeof(drop_sub) - 1, id, &ei),
	    ST_OK, "drop %s", ei.msg);
	ok(envelope_id_valid(id) && exists(path, "maildrop", id),
	    "maildrop/ID written");
	snprintf(p, sizeof(p), "%s/maildrop/%s", path, id);
	ok(stat(p, &st) == 0 && (st.st_mode & 0777) == 0644 &&
	    st.st_size == (off_t)sizeof(drop_sub) - 1, "mode 0644, whole");
	is_int(drop_text(dropfd, drop_sub, sizeof(drop_sub) - 2, id2, &ei),
	    ST_DATAERR, "short message refused: %s", ei.msg);
	is_int(drop_text(dropfd, S("bearmail-drop 1\naccount gmail\n"
	    "sender <>\nbody 7bit\nsmtputf8 no\nsize 1\nrcpt pending b@c\n"
	    "\nxy"), id2, &ei), ST_DATAERR, "trailing data refused: %s", ei.msg);
	is_int(drop_text(dropfd, S("bearmail-drop 1\nid 0000000000\n\n"),
	    id2, &ei), ST_DATAERR, "forbidden field refused: %s", ei.msg);
	is_int(count_dir(path, "maildrop"), 1, "refusals left nothing");
	{
		char dp[600];
		DIR *d;
		struct dirent *de;
		int dots = 0;

		snprintf(dp, sizeof(dp), "%s/maildrop", path);
		d = opendir(dp);
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] == '.' && strlen(de->d_name) > 2)
				dots++;
		closedir(d);
		is_int(dots, 0, "no temporary dot-files left either");
	}

	/* Hostile entries next to it. */
	big = malloc(ENVELOPE_HDR_MAX + 10);
	memset(big, 'a', ENVELOPE_HDR_MAX + 10);
	memcpy(big, "bearmail-drop 1\naccount ", 24);
	snprintf(p, sizeof(p), "%s/maildrop/0000000010", path);
	write_file(p, big, ENVELOPE_HDR_MAX + 10);
	free(big);
	snprintf(p, sizeof(p), "%s/maildrop/0000000011", path);
	write_file(p, S("bearmail-drop 1\naccount a\nsender <>\nbody 7bit\n"
	    "smtputf8 no\nsize 1\nrcpt done b@c\n\nx"));
	snprintf(p, sizeof(p), "%s/maildrop/0000000012", path);
	write_file(p, S("bearmail-drop 1\naccount a\nsender <>\nbody 7bit\n"
	    "smtputf8 no\nsize 9\nrcpt pending b@c\n\nx"));
	snprintf(p, sizeof(p), "%s/maildrop/0000000013", path);
	snprintf(p2, sizeof(p2), "%s/secret", base);
	write_file(p2, drop_sub, sizeof(drop_sub) - 1);
	symlink(p2, p);
	snprintf(p, sizeof(p), "%s/maildrop/0000000014", path);
	link(p2, p);
	snprintf(p, sizeof(p), "%s/maildrop/0000000015", path);
	mkfifo(p, 0600);
	snprintf(p, sizeof(p), "%s/maildrop/stray", path);
	write_file(p, "x", 1);
	snprintf(p, sizeof(p), "%s/maildrop/.0000000016", path);
	write_file(p, "partial", 7);
	old[0].tv_sec = old[1].tv_sec = time(NULL) - 3 * 86400;
	old[0].tv_nsec = old[1].tv_nsec = 0;
	utimensat(AT_FDCWD, p, old, 0);
	snprintf(p, sizeof(p), "%s/maildrop/.0000000017", path);
	write_file(p, "in progress", 11);

	st_clear(&ei);
	is_int(maildrop_import(sp, time(NULL), &n, &ei), ST_OK,
	    "import %s", ei.msg);
	is_int(n, 1, "one message imported");
	ok(exists(path, "q", id) && !exists(path, "maildrop", id),
	    "moved to q/ under the same ID");
	ok(exists(path, "failed", "0000000010.drop") &&
	    exists(path, "failed", "0000000011.drop") &&
	    exists(path, "failed", "0000000012.drop") &&
	    exists(path, "failed", "0000000013.drop") &&
	    exists(path, "failed", "0000000014.drop") &&
	    exists(path, "failed", "0000000015.drop"),
	    "oversized, bad syntax, wrong size, symlink, hard link and FIFO "
	    "set aside in failed/");
	snprintf(p, sizeof(p), "%s/failed/0000000013.drop", path);
	ok(lstat(p, &st) == 0 && S_ISLNK(st.st_mode),
	    "the symlink was moved, not followed");
	ok(stat(p2, &st) == 0 && st.st_size == (off_t)sizeof(drop_sub) - 1,
	    "its target untouched");
	ok(exists(path, "maildrop", "stray"), "a stray name is left alone");
	ok(!exists(path, "maildrop", ".0000000016"), "stale dot-file removed");
	ok(exists(path, "maildrop", ".0000000017"), "fresh dot-file kept");

	is_int(spool_scan(sp, time(NULL), SPOOL_SCAN_DUE, &l, &ei), ST_OK,
	    "scan");
	is_int(l.n, 1, "the imported message is due");
	if (l.n == 1) {
		is_str(l.v[0].env.id, id, "same ID");
		is_int(l.v[0].env.uid, getuid(), "uid from the file's owner");
		is_str(l.v[0].env.sender, "alice@example.com", "sender");
		is_int(l.v[0].env.size, 7, "size");
	}
	spool_list_free(&l);

	/* A runner killed between its rename into q/ and the unlink. */
	{
		char qp[600], dp[600];
		struct stat qs;

		snprintf(qp, sizeof(qp), "%s/q/%s", path, id);
		snprintf(dp, sizeof(dp), "%s/maildrop/%s", path, id);
		stat(qp, &qs);
		write_file(dp, drop_sub, sizeof(drop_sub) - 1);
		/* Same arrival time as the first import recorded. */
		spool_scan(sp, 0, 0, &l, &ei);
		old[0].tv_sec = old[1].tv_sec = l.n ? l.v[0].env.created : 0;
		spool_list_free(&l);
		utimensat(AT_FDCWD, dp, old, 0);
		is_int(maildrop_import(sp, time(NULL), &n, &ei), ST_OK,
		    "import again");
		ok(!exists(path, "maildrop", id), "leftover drop removed");
		spool_scan(sp, 0, 0, &l, &ei);
		is_int(l.n, 1, "and not queued twice");
		spool_list_free(&l);
	}
	close(dropfd);
	spool_close(sp);
}

/* The submitting side, through the real bearmail-drop when it is built. */
static void
test_submit_drop(void)
{
	struct envelope env;
	struct spool_msg *m;
	struct spool *sp;
	struct errinfo ei;
	struct buf b;
	char path[512], prog[512], src[600], id[ENVELOPE_ID_SIZE];
	const char *bd = getenv("BM_BUILDDIR");
	bool complete;
	size_t n;
	int fd;

	snprintf(prog, sizeof(prog), "%s/src/bearmail-drop",
	    bd != NULL ? bd : ".");
	if (access(prog, X_OK) != 0) {
		ok(1, "# SKIP %s not built", prog);
		return;
	}
	if ((sp = mkqueue("submit", path, sizeof(path))) == NULL) {
		ok(0, "queue");
		return;
	}
	setenv("BEARMAIL_DROP_DIR", path, 1);
	snprintf(src, sizeof(src), "%s/message", base);
	write_file(src, S("XXSubject: via the drop\r\n\r\nbody\r\n"));
	fd = open(src, O_RDONLY);
	lseek(fd, 2, SEEK_SET);
	env_basic(&env, "bob@example.org", "carol@example.net");
	env.notify = ENVELOPE_NOTIFY_FAILURE;
	st_clear(&ei);
	is_int(maildrop_submit(prog, &env, fd, 30, id, &ei), ST_OK,
	    "submitted through bearmail-drop %s", ei.msg);
	ok(envelope_id_valid(id) && exists(path, "maildrop", id),
	    "maildrop/%s written", id);
	is_int(env.size, 31, "size from the file's offset");
	is_int(maildrop_import(sp, time(NULL), &n, &ei), ST_OK,
	    "imported");
	is_int(n, 1, "one message");
	spool_claim(sp, id, &m, &ei);
	ok(m != NULL, "claimed under the drop's ID");
	buf_init(&b, 4096);
	if (m != NULL) {
		spool_body_read(m, 4096, &b, &complete, &ei);
		ok(complete && b.len == 31 && memcmp(b.data,
		    "Subject: via the drop\r\n\r\nbody\r\n", 31) == 0,
		    "message intact");
		ok(spool_msg_env(m)->nrcpts == 2 &&
		    spool_msg_env(m)->notify == ENVELOPE_NOTIFY_FAILURE,
		    "envelope intact");
		spool_release(m);
	}
	buf_free(&b);

	/* Failures come back with bearmail-drop's reason. */
	lseek(fd, 0, SEEK_SET);
	snprintf(src, sizeof(src), "%s/nowhere", base);
	setenv("BEARMAIL_DROP_DIR", src, 1);
	st_clear(&ei);
	is_int(maildrop_submit(prog, &env, fd, 30, id, &ei), ST_CANTCREAT,
	    "no maildrop: CANTCREAT");
	ok(strstr(ei.msg, "maildrop: ") == ei.msg &&
	    strstr(ei.msg, "No such file") != NULL, "its reason: %s", ei.msg);
	ok(id[0] == '\0', "no ID");
	st_clear(&ei);
	is_int(maildrop_submit("/nonexistent/bearmail-drop", &env, fd, 30,
	    id, &ei), ST_CANTCREAT, "missing program: %s", ei.msg);
	unsetenv("BEARMAIL_DROP_DIR");
	close(fd);
	envelope_free(&env);
	spool_close(sp);
}

int
main(void)
{
	const char *t = getenv("TMPDIR");

	setenv("TZ", "UTC", 1);
	tzset();
	snprintf(base, sizeof(base), "%s/test_spool.XXXXXX",
	    t != NULL && *t == '/' ? t : "/tmp");
	if (mkdtemp(base) == NULL) {
		printf("Bail out! mkdtemp\n");
		return 1;
	}
	test_ids();
	test_backoff();
	test_format();
	test_parse_refusals();
	test_enqueue_claim();
	test_kill9();
	test_race();
	test_expire_notice();
	test_listing();
	test_planted();
	test_maildrop();
	test_submit_drop();
	rm_rf(base);
	return tap_done();
}
