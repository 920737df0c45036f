/* Unit tests: Maildir, mbox and MDA targets, and the fetch state file. */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deliver.h"
#include "fetchstate.h"
#include "mbox.h"
#include "maildir.h"
#include "tap.h"

static char root[] = "/tmp/bm-test-deliver-XXXXXX";

static size_t
count_dir(const char *dir, char *first, size_t firstsz)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	if (d == NULL)
		return (size_t)-1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n++ == 0 && first != NULL)
			snprintf(first, firstsz, "%s/%s", dir, e->d_name);
	}
	closedir(d);
	return n;
}

static char *
slurp(const char *path, size_t *len)
{
	static char data[65536];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	*len = 0;
	if (fd < 0)
		return NULL;
	n = read(fd, data, sizeof(data) - 1);
	close(fd);
	if (n < 0)
		return NULL;
	data[n] = '\0';
	*len = (size_t)n;
	return data;
}

static enum status
one(struct deliver *d, const char *msg, size_t n, size_t chunk)
{
	struct errinfo ei;
	enum status st;
	size_t i, c;

	st_clear(&ei);
	if ((st = deliver_begin(d, &ei)) != ST_OK)
		return st;
	for (i = 0; i < n; i += c) {
		c = n - i < chunk ? n - i : chunk;
		if ((st = deliver_write(d, msg + i, c, &ei)) != ST_OK)
			return st;
	}
	return deliver_commit(d, &ei);
}

static const char *
quote_all(const char *in)
{
	static char out[1024];
	struct mbox_quote q;
	size_t o, i;

	/* One byte at a time: the hardest way to feed it. */
	mbox_quote_init(&q);
	for (i = 0, o = 0; in[i] != '\0'; i++)
		o += mbox_quote(&q, in + i, 1, out + o, sizeof(out) - o);
	o += mbox_quote_end(&q, out + o, sizeof(out) - o);
	out[o] = '\0';
	return out;
}

static void
test_maildir(void)
{
	static const char msg[] = "Subject: hi\r\n\r\nbody\0with NUL\r\nbare\rCR\r\n";
	static const char want[] = "Subject: hi\n\nbody\0with NUL\nbare\rCR\n";
	char dir[256], sub[300], path[600], n1[256], n2[256];
	struct deliver *d;
	struct errinfo ei;
	size_t len, i;
	char *data;
	bool distinct = true;

	snprintf(dir, sizeof(dir), "%s/Maildir", root);
	st_clear(&ei);
	ok(deliver_open(&d, DELIVER_MAILDIR, dir, 10, &ei) == ST_OK,
	    "maildir opened (created): %s", ei.msg);
	for (i = 0; i < 3; i++)
		is_int(one(d, msg, sizeof(msg) - 1, i + 1), ST_OK,
		    "maildir delivery %zu (chunks of %zu)", i, i + 1);
	snprintf(sub, sizeof(sub), "%s/new", dir);
	is_int(count_dir(sub, path, sizeof(path)), 3, "three in new/");
	snprintf(sub, sizeof(sub), "%s/tmp", dir);
	is_int(count_dir(sub, NULL, 0), 0, "tmp/ empty");
	data = slurp(path, &len);
	ok(data != NULL && len == sizeof(want) - 1 &&
	    memcmp(data, want, len) == 0,
	    "CRLF became LF, NUL and bare CR kept");

	st_clear(&ei);
	ok(deliver_begin(d, &ei) == ST_OK, "begin for abort");
	deliver_write(d, "x", 1, &ei);
	deliver_abort(d);
	snprintf(sub, sizeof(sub), "%s/tmp", dir);
	is_int(count_dir(sub, NULL, 0), 0, "abort leaves nothing in tmp/");
	snprintf(sub, sizeof(sub), "%s/new", dir);
	is_int(count_dir(sub, NULL, 0), 3, "abort adds nothing to new/");
	deliver_free(d);

	for (i = 0; i < 1000 && distinct; i++) {
		maildir_name(n1, sizeof(n1));
		maildir_name(n2, sizeof(n2));
		distinct = strcmp(n1, n2) != 0;
	}
	ok(distinct, "maildir names unique within a process: %s", n1);
	ok(strchr(n1, '/') == NULL && strchr(n1, ':') == NULL,
	    "no / or : in names");
}

static void
test_mbox(void)
{
	static const char m1[] = "Return-Path: <bob@example.org>\r\n"
	    "Subject: a\r\n\r\nFrom the start\r\n>From quoted\r\n"
	    "not From\r\nlast line without newline";
	char path[256], lock[300];
	struct deliver *d;
	struct errinfo ei;
	size_t len;
	char *data;
	struct stat sb;

	is_str(quote_all("From x\n>From y\n>>From z\nFrom\nFro\n"),
	    ">From x\n>>From y\n>>>From z\nFrom\nFro\n", "mboxrd quoting");
	is_str(quote_all("a From b\n\nFrom "), "a From b\n\n>From ",
	    "only at line start; at the very end too");
	is_str(quote_all(">>>x\n>Fr"), ">>>x\n>Fr", "partial prefix flushed");

	snprintf(path, sizeof(path), "%s/mbox", root);
	st_clear(&ei);
	ok(deliver_open(&d, DELIVER_MBOX, path, 5, &ei) == ST_OK, "mbox open");
	is_int(one(d, m1, sizeof(m1) - 1, 7), ST_OK, "mbox delivery");
	is_int(one(d, "Subject: b\r\n\r\nx\r\n", 17, 100), ST_OK,
	    "second mbox delivery");
	data = slurp(path, &len);
	ok(data != NULL && strncmp(data, "From bob@example.org ", 21) == 0,
	    "From line with the Return-Path sender");
	ok(data != NULL && strstr(data, "\n>From the start\n>>From quoted\n"
	    "not From\nlast line without newline\n\nFrom MAILER-DAEMON ") !=
	    NULL, "quoted, ended, separated");
	ok(data != NULL && len > 4 && strcmp(data + len - 4, "\nx\n\n") == 0,
	    "last message ends with an empty line");
	snprintf(lock, sizeof(lock), "%s.lock", path);
	ok(stat(lock, &sb) != 0, "dotlock removed");

	stat(path, &sb);
	st_clear(&ei);
	deliver_begin(d, &ei);
	deliver_write(d, "Subject: c\r\n\r\nhalf", 18, &ei);
	deliver_abort(d);
	{
		struct stat sb2;
		stat(path, &sb2);
		is_int(sb2.st_size, sb.st_size, "aborted append truncated away");
	}
	/* A held dotlock makes delivery wait, then give up (temporary). */
	close(open(lock, O_WRONLY | O_CREAT, 0600));
	deliver_free(d);
	st_clear(&ei);
	ok(deliver_open(&d, DELIVER_MBOX, path, 1, &ei) == ST_OK, "reopen");
	is_int(deliver_begin(d, &ei), ST_TEMPFAIL, "locked mbox: TEMPFAIL");
	unlink(lock);
	deliver_free(d);
}

static void
test_mda(void)
{
	char cmd[512], out[300];
	struct deliver *d;
	struct errinfo ei;
	size_t len;
	char *data;

	snprintf(out, sizeof(out), "%s/mda.out", root);
	snprintf(cmd, sizeof(cmd), "cat > '%s'", out);
	st_clear(&ei);
	ok(deliver_open(&d, DELIVER_MDA, cmd, 10, &ei) == ST_OK, "mda open");
	is_int(one(d, "A: b\r\n\r\nc\r\n", 11, 3), ST_OK, "mda exit 0");
	data = slurp(out, &len);
	ok(data != NULL && strcmp(data, "A: b\n\nc\n") == 0, "mda got it");
	deliver_free(d);

	ok(deliver_open(&d, DELIVER_MDA, "cat >/dev/null; exit 75", 10,
	    &ei) == ST_OK, "mda open");
	is_int(one(d, "x\r\n", 3, 3), ST_TEMPFAIL, "exit 75: TEMPFAIL");
	deliver_free(d);
	ok(deliver_open(&d, DELIVER_MDA, "exit 1", 10, &ei) == ST_OK, "open");
	is_int(one(d, "x\r\n", 3, 3), ST_CANTCREAT, "exit 1: CANTCREAT");
	deliver_free(d);
	ok(deliver_open(&d, DELIVER_MDA, "sleep 30", 1, &ei) == ST_OK, "open");
	is_int(one(d, "x\r\n", 3, 3), ST_TIMEOUT, "deadline: TIMEOUT");
	deliver_free(d);
}

static void
test_state(void)
{
	char sd[256], path[512], enc[64];
	struct fstate *fs;
	struct errinfo ei;
	bool reset;
	size_t len;
	char *data;
	int lk, lk2;
	FILE *f;

	snprintf(sd, sizeof(sd), "%s/state", root);
	st_clear(&ei);
	ok(fstate_lock(sd, "acct", &lk, &ei) == ST_OK, "lock taken");
	is_int(fstate_lock(sd, "acct", &lk2, &ei), ST_TEMPFAIL,
	    "second lock refused");
	fstate_unlock(lk);

	ok(fstate_folder_enc("[Gmail]/All Mail", enc, sizeof(enc)), "enc");
	is_str(enc, "%5BGmail%5D%2FAll%20Mail", "folder encoded");
	ok(fstate_folder_enc("..", enc, sizeof(enc)), "enc dots");
	is_str(enc, "%2E.", "no leading dot");

	st_clear(&ei);
	ok(fstate_open(&fs, sd, "acct", "imap", "INBOX", &ei) == ST_OK,
	    "imap state created: %s", ei.msg);
	ok(fstate_set_uidvalidity(fs, 7, &reset, &ei) == ST_OK && !reset,
	    "first uidvalidity");
	fstate_add_uid(fs, 3, &ei);
	fstate_add_uid(fs, 1, &ei);
	fstate_add_uid(fs, 2, &ei);
	fstate_add_uid(fs, 10, &ei);
	ok(fstate_has_uid(fs, 2) && !fstate_has_uid(fs, 4) &&
	    fstate_has_uid(fs, 10), "membership");
	is_int(fstate_count(fs), 4, "four uids");
	snprintf(path, sizeof(path), "%s", fstate_path(fs));
	fstate_free(fs);
	/* A torn append, as after a crash. */
	f = fopen(path, "a");
	fputs("uid 5", f);
	fclose(f);
	ok(fstate_open(&fs, sd, "acct", "imap", "INBOX", &ei) == ST_OK,
	    "reload with a torn last line: %s", ei.msg);
	ok(fstate_has_uid(fs, 3) && !fstate_has_uid(fs, 5),
	    "records kept, torn one ignored");
	fstate_add_uid(fs, 11, &ei);
	fstate_compact(fs, false, &ei);
	data = slurp(path, &len);
	is_str(data, "bearmail-fetch-state 1\nproto imap\nfolder INBOX\n"
	    "uidvalidity 7\nuid 1-3\nuid 10-11\n", "compacted into ranges");
	ok(fstate_set_uidvalidity(fs, 8, &reset, &ei) == ST_OK && reset,
	    "uidvalidity change resets");
	ok(!fstate_has_uid(fs, 1) && fstate_count(fs) == 0, "uids forgotten");
	fstate_free(fs);

	ok(fstate_open(&fs, sd, "acct", "pop3", NULL, &ei) == ST_OK, "pop3");
	fstate_add_uidl(fs, "b", &ei);
	fstate_add_uidl(fs, "a", &ei);
	is_int(fstate_add_uidl(fs, "bad uidl", &ei), ST_PROTO,
	    "uidl with a space refused");
	fstate_free(fs);
	ok(fstate_open(&fs, sd, "acct", "pop3", NULL, &ei) == ST_OK, "reload");
	ok(fstate_has_uidl(fs, "a") && !fstate_has_uidl(fs, "c"), "uidls kept");
	fstate_compact(fs, true, &ei);
	ok(!fstate_has_uidl(fs, "b") && fstate_count(fs) == 1,
	    "unlisted uidl pruned");
	fstate_free(fs);

	f = fopen(path, "w");
	fputs("garbage\n", f);
	fclose(f);
	st_clear(&ei);
	is_int(fstate_open(&fs, sd, "acct", "imap", "INBOX", &ei), ST_CONFIG,
	    "a corrupt file is an error, not a fresh start");
}

int
main(void)
{
	char cmd[300];

	/* As the programs do: an MDA that exits early gives EPIPE. */
	signal(SIGPIPE, SIG_IGN);
	if (mkdtemp(root) == NULL)
		return 1;
	test_maildir();
	test_mbox();
	test_mda();
	test_state();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		return 1;
	return tap_done();
}
