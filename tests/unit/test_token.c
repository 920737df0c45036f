/*
 * Unit tests: the token store.  Built with its own copy of token.c
 * compiled with TOKEN_TEST_HOOKS, so a writer can be killed between
 * writing the new file and renaming it over the old one.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cred.h"
#include "token.h"
#include "tap.h"

static char root[256];

static void
fill(struct token *t, const char *at, const char *rt, time_t exp)
{
	memset(t, 0, sizeof(*t));
	t->access_token = at != NULL ? strdup(at) : NULL;
	t->refresh_token = rt != NULL ? strdup(rt) : NULL;
	t->expires = exp;
	t->obtained = exp > 0 ? exp - 3600 : 0;
}

static void
test_format(void)
{
	struct token t, u;
	struct errinfo ei;
	struct buf b;
	const char *s;

	fill(&t, "ya29.abc", "1//xyz", 1700003600);
	t.scope = strdup("https://mail.google.com/ openid");
	t.user = strdup("alice@example.com");
	t.authorized = 1690000000;
	buf_init(&b, TOKEN_FILE_MAX);
	st_clear(&ei);
	is_int(token_format(&t, &b, &ei), ST_OK, "format");
	is_str(b.data, "bearmail-token 1\nuser alice@example.com\n"
	    "access_token ya29.abc\nexpires 1700003600\nobtained 1700000000\n"
	    "refresh_token 1//xyz\nauthorized 1690000000\n"
	    "scope https://mail.google.com/ openid\n", "the documented format");
	is_int(token_parse(b.data, b.len, &u, &ei), ST_OK, "parse back");
	is_str(u.access_token, "ya29.abc", "access token");
	is_str(u.refresh_token, "1//xyz", "refresh token");
	is_str(u.scope, "https://mail.google.com/ openid", "scope with space");
	is_int(u.expires, 1700003600, "expires");
	is_int(u.authorized, 1690000000, "authorized");
	token_free(&u);
	buf_free(&b);

	/* A token with a space or newline must never reach the file. */
	free(t.access_token);
	t.access_token = strdup("bad token");
	buf_init(&b, TOKEN_FILE_MAX);
	st_clear(&ei);
	is_int(token_format(&t, &b, &ei), ST_PROTO, "space in token refused");
	ok(strstr(ei.msg, "bad") == NULL, "text does not quote the token");
	buf_free(&b);
	token_free(&t);

	s = "bearmail-token 1\nfuture_key whatever\naccess_token a\n";
	st_clear(&ei);
	is_int(token_parse(s, strlen(s), &u, &ei), ST_OK, "unknown key ignored");
	is_str(u.access_token, "a", "known key kept");
	ok(u.refresh_token == NULL && u.expires == 0, "absent keys empty");
	token_free(&u);

	s = "bearmail-token 2\naccess_token a\n";
	st_clear(&ei);
	is_int(token_parse(s, strlen(s), &u, &ei), ST_CONFIG, "bad magic");
	s = "bearmail-token 1\naccess_token a";
	st_clear(&ei);
	is_int(token_parse(s, strlen(s), &u, &ei), ST_CONFIG, "truncated");
	s = "bearmail-token 1\naccess_token a\naccess_token b\n";
	st_clear(&ei);
	is_int(token_parse(s, strlen(s), &u, &ei), ST_CONFIG, "duplicate");
	s = "bearmail-token 1\nexpires 12x\n";
	st_clear(&ei);
	is_int(token_parse(s, strlen(s), &u, &ei), ST_CONFIG, "bad time");
	s = "bearmail-token 1\nrefresh_token a b\n";
	st_clear(&ei);
	is_int(token_parse(s, strlen(s), &u, &ei), ST_CONFIG,
	    "space in a token");
	s = "bearmail-token 1\naccess_token \n";
	st_clear(&ei);
	is_int(token_parse(s, strlen(s), &u, &ei), ST_CONFIG, "empty value");
	st_clear(&ei);
	is_int(token_parse("bearmail-token 1\n\0x\n", 19, &u, &ei), ST_CONFIG,
	    "NUL refused");
}

static void
test_stale_merge(void)
{
	struct token t, f;

	fill(&t, "at", "rt", 1000 + 3600);
	ok(TOKEN_MARGIN >= 600, "margin is at least 10 minutes (Microsoft)");
	ok(token_stale(&t, 1000 + 3600 - 599, TOKEN_MARGIN),
	    "9 minutes 59 s left: stale");
	ok(!token_stale(&t, 1000 + 3600 - 600, TOKEN_MARGIN),
	    "10 minutes left: fresh");
	ok(!token_stale(&t, 1000, TOKEN_MARGIN), "an hour left: fresh");
	ok(!token_stale(&t, 1000 + 3600 - TOKEN_MARGIN, TOKEN_MARGIN),
	    "exactly the margin left: fresh");
	ok(token_stale(&t, 1000 + 3600 - TOKEN_MARGIN + 1, TOKEN_MARGIN),
	    "less than the margin left: stale");
	ok(token_stale(&t, 1000 + 4000, TOKEN_MARGIN), "expired: stale");
	t.expires = 0;
	ok(token_stale(&t, 1000, TOKEN_MARGIN), "unknown expiry: stale");
	token_free(&t);
	fill(&t, NULL, "rt", 99999);
	ok(token_stale(&t, 1000, TOKEN_MARGIN), "no access token: stale");

	/* Absent refresh token in the reply keeps the stored one. */
	fill(&f, "at2", NULL, 5000);
	token_merge(&t, &f);
	is_str(t.access_token, "at2", "merge takes the new access token");
	is_str(t.refresh_token, "rt", "absent refresh token keeps the old");
	is_int(t.expires, 5000, "merge takes the expiry");
	ok(f.access_token == NULL, "fresh emptied");

	/* Rotation: the new one replaces the old. */
	fill(&f, "at3", "rt-new", 6000);
	token_merge(&t, &f);
	is_str(t.refresh_token, "rt-new", "rotated refresh token kept");
	is_str(t.access_token, "at3", "and the access token");
	token_free(&t);
}

static void
path_of(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/tokens/%s", root, name);
}

static bool
store_has(struct token_store *ts, const char *at)
{
	struct token t;
	struct errinfo ei;
	bool found = false, r;

	st_clear(&ei);
	if (token_load(ts, &t, &found, &ei) != ST_OK || !found)
		return false;
	r = t.access_token != NULL && strcmp(t.access_token, at) == 0;
	token_free(&t);
	return r;
}

static void
save_one(struct token_store *ts, const char *at)
{
	struct token t;
	struct errinfo ei;

	fill(&t, at, "rt", time(NULL) + 3600);
	st_clear(&ei);
	if (token_save(ts, &t, &ei) != ST_OK)
		fprintf(stderr, "save: %s\n", ei.msg);
	token_free(&t);
}

static void
test_store(void)
{
	struct token_store ts, ts2;
	struct token t;
	struct errinfo ei;
	struct stat sb;
	char p[512], q[512];
	bool found;
	int fd;

	st_clear(&ei);
	is_int(token_store_open(&ts, root, "../x", true, &ei), ST_CONFIG,
	    "path in account name refused");
	/* An earlier failure in ei must not stand in for this one. */
	{
		static char longdir[PATH_MAX + 16];

		memset(longdir, 'd', sizeof(longdir) - 1);
		longdir[0] = '/';
		st_clear(&ei);
		st_error(&ei, ST_NET, "an earlier failure");
		is_int(token_store_open(&ts, longdir, "acct", false, &ei),
		    ST_CONFIG, "too long a state_dir: its own status, not "
		    "the earlier one");
		token_store_close(&ts);
	}
	st_clear(&ei);
	is_int(token_store_open(&ts, root, "acct", false, &ei), ST_OK,
	    "open without create");
	is_int(token_load(&ts, &t, &found, &ei), ST_OK, "load before any dir");
	ok(!found, "nothing found");
	snprintf(p, sizeof(p), "%s/tokens", root);
	ok(stat(p, &sb) == -1, "open without create made nothing");
	token_store_close(&ts);

	st_clear(&ei);
	is_int(token_store_open(&ts, root, "acct", true, &ei), ST_OK, "open");
	ok(stat(p, &sb) == 0 && (sb.st_mode & 0777) == 0700,
	    "tokens directory is 0700");
	fill(&t, "at1", "rt1", time(NULL) + 3600);
	st_clear(&ei);
	is_int(token_save(&ts, &t, &ei), ST_SYS, "save without the lock refused");
	st_clear(&ei);
	is_int(token_lock(&ts, 5, &ei), ST_OK, "lock");
	is_int(token_save(&ts, &t, &ei), ST_OK, "save");
	token_free(&t);
	path_of(q, sizeof(q), "acct.token");
	ok(stat(q, &sb) == 0 && (sb.st_mode & 0777) == 0600, "file is 0600");
	path_of(q, sizeof(q), "acct.tmp");
	ok(stat(q, &sb) == -1 && errno == ENOENT, "no temp file left");
	ok(store_has(&ts, "at1"), "saved token loads");

	/* Another process cannot take the lock while we hold it. */
	st_clear(&ei);
	is_int(token_store_open(&ts2, root, "acct", true, &ei), ST_OK,
	    "second handle");
	if (fork() == 0) {
		struct errinfo e2;

		st_clear(&e2);
		_exit(token_lock(&ts2, 1, &e2) == ST_TIMEOUT ? 0 : 1);
	} else {
		int ws = 0;

		wait(&ws);
		ok(WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
		    "a held lock times out in another process");
	}
	token_unlock(&ts);
	st_clear(&ei);
	is_int(token_lock(&ts2, 1, &ei), ST_OK, "free lock is taken");
	token_store_close(&ts2);

	/* Group-readable: refused. */
	path_of(q, sizeof(q), "acct.token");
	chmod(q, 0640);
	st_clear(&ei);
	is_int(token_load(&ts, &t, &found, &ei), ST_CONFIG,
	    "group-readable file refused");
	ok(strstr(ei.msg, "chmod 600") != NULL, "and says what to do: %s",
	    ei.msg);
	chmod(q, 0600);
	ok(store_has(&ts, "at1"), "accepted again at 0600");

	/* Symlink: refused, even to a good file. */
	token_store_close(&ts);
	st_clear(&ei);
	token_store_open(&ts, root, "link", true, &ei);
	path_of(p, sizeof(p), "link.token");
	ok(symlink(q, p) == 0, "symlink made");
	st_clear(&ei);
	is_int(token_load(&ts, &t, &found, &ei), ST_CONFIG, "symlink refused");
	ok(strstr(ei.msg, "symbolic link") != NULL, "says why: %s", ei.msg);
	unlink(p);

	/* Not a regular file (a FIFO would hang a plain open). */
	ok(mkfifo(p, 0600) == 0, "fifo made");
	st_clear(&ei);
	is_int(token_load(&ts, &t, &found, &ei), ST_CONFIG, "fifo refused");
	unlink(p);

	/* A temp file left by a killed writer does not block the next save. */
	path_of(p, sizeof(p), "link.tmp");
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	close(fd);
	st_clear(&ei);
	token_lock(&ts, 5, &ei);
	save_one(&ts, "after-leftover");
	ok(store_has(&ts, "after-leftover"), "save over a leftover temp file");
	st_clear(&ei);
	is_int(token_remove(&ts, &ei), ST_OK, "remove");
	st_clear(&ei);
	token_load(&ts, &t, &found, &ei);
	ok(!found, "removed");
	token_store_close(&ts);

	/* A tokens directory others can enter is refused. */
	snprintf(p, sizeof(p), "%s/tokens", root);
	chmod(p, 0755);
	st_clear(&ei);
	is_int(token_store_open(&ts, root, "acct", true, &ei), ST_CONFIG,
	    "0755 tokens directory refused");
	chmod(p, 0700);
}

/*
 * The writer is killed after the new version is complete and synced but
 * before the rename: the old version must be what a reader sees.
 */
static void
test_kill_during_write(void)
{
	struct token_store ts;
	struct errinfo ei;
	char env[32], c = 0;
	int pfd[2], ws;
	pid_t pid;

	st_clear(&ei);
	token_store_open(&ts, root, "kill", true, &ei);
	token_lock(&ts, 5, &ei);
	save_one(&ts, "old-version");
	token_unlock(&ts);

	if (pipe(pfd) == -1)
		return;
	if ((pid = fork()) == 0) {
		close(pfd[0]);
		snprintf(env, sizeof(env), "%d", pfd[1]);
		setenv("BM_TOKEN_TEST_PAUSE_FD", env, 1);
		token_lock(&ts, 5, &ei);
		save_one(&ts, "new-version");
		_exit(0);
	}
	close(pfd[1]);
	ok(read(pfd[0], &c, 1) == 1 && c == 'P',
	    "writer paused between write and rename");
	kill(pid, SIGKILL);
	waitpid(pid, &ws, 0);
	close(pfd[0]);
	ok(WIFSIGNALED(ws), "writer killed");
	ok(store_has(&ts, "old-version"), "old version intact after kill -9");
	st_clear(&ei);
	is_int(token_lock(&ts, 5, &ei), ST_OK, "dead writer's lock is free");
	save_one(&ts, "next-version");
	ok(store_has(&ts, "next-version"), "next save works");
	token_store_close(&ts);
}

/* Kill writers at random moments: a reader sees one version or the other. */
static void
test_kill_random(void)
{
	struct token_store ts;
	struct errinfo ei;
	char big[8000];
	int i, bad = 0, ws;
	pid_t pid;

	memset(big, 'x', sizeof(big) - 1);
	big[0] = 'B';
	big[sizeof(big) - 1] = '\0';
	st_clear(&ei);
	token_store_open(&ts, root, "random", true, &ei);
	token_lock(&ts, 5, &ei);
	save_one(&ts, "A");
	token_unlock(&ts);
	srand((unsigned)getpid());
	for (i = 0; i < 60; i++) {
		if ((pid = fork()) == 0) {
			unsetenv("BM_TOKEN_TEST_PAUSE_FD");
			token_lock(&ts, 5, &ei);
			for (;;) {
				save_one(&ts, big);
				save_one(&ts, "A");
			}
		}
		poll(NULL, 0, 1 + rand() % 15);
		kill(pid, SIGKILL);
		waitpid(pid, &ws, 0);
		if (!store_has(&ts, "A") && !store_has(&ts, big))
			bad++;
	}
	is_int(bad, 0, "60 random kill -9: every read gives a whole version");
	token_store_close(&ts);
}

/* bearmail-auth's exit code back to a status: temporary stays temporary. */
static void
test_exit_status(void)
{
	is_int(cred_exit_status(0), ST_OK, "exit 0");
	is_int(cred_exit_status(75 << 8), ST_TEMPFAIL, "exit 75: temporary");
	is_int(cred_exit_status(77 << 8), ST_AUTH, "exit 77: refused");
	is_int(cred_exit_status(78 << 8), ST_CONFIG, "exit 78: configuration");
	is_int(cred_exit_status(76 << 8), ST_PROTO, "exit 76: protocol");
	is_int(cred_exit_status(73 << 8), ST_CANTCREAT, "exit 73");
	is_int(cred_exit_status(71 << 8), ST_SYS, "exit 71: system");
	is_int(cred_exit_status(1 << 8), ST_TEMPFAIL, "other exit: try later");
	is_int(cred_exit_status(SIGKILL), ST_TEMPFAIL, "killed: try later");
	is_int(cred_exit_status(SIGSEGV | 0x80), ST_TEMPFAIL,
	    "crashed with a core: try later");
	ok(st_retryable(cred_exit_status(75 << 8)) &&
	    st_retryable(cred_exit_status(SIGKILL)), "both worth a retry");
}

int
main(void)
{
	char cmd[300];

	snprintf(root, sizeof(root), "/tmp/bm-test-token.%ld", (long)getpid());
	umask(022);
	test_format();
	test_exit_status();
	test_stale_merge();
	test_store();
	test_kill_during_write();
	test_kill_random();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", root);
	return tap_done();
}
