/*
 * cmd_fetch.c: bearmail-fetch, mail retrieval over IMAP or POP3 into a
 * Maildir, an mbox or an MDA.  Options and wiring only: the protocols
 * are in imap.c and pop3.c, the targets behind deliver.h, the record of
 * what was delivered in fetchstate.c.
 *
 * The order of things for every message, which is the whole promise:
 *   1. the message is streamed to the target and committed (durable);
 *   2. its UID or UIDL is appended to the state file and fsynced;
 *   3. only then is it marked \Seen, or \Deleted / DELE, on the server.
 * A crash between 1 and 2 delivers that one message again next time; a
 * crash between 2 and 3 leaves it unmarked, and the next run marks (or
 * deletes) it without delivering it again.  Nothing is ever lost.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "conn.h"
#include "cred.h"
#include "deliver.h"
#include "fetchstate.h"
#include "imap.h"
#include "log.h"
#include "login.h"
#include "pop3.h"
#include "priv.h"
#include "status.h"
#include "tls.h"
#include "version.h"

static const char *const progname = "bearmail-fetch";

#define IDLE_SECS	(28 * 60)	/* RFC 2177: re-IDLE before 29 minutes */
#define BACKOFF_MAX	300		/* seconds between reconnections */
#define FOLDERS_MAX	64

struct opts {
	bool pop;
	enum deliver_kind kind;
	const char *target;
	const char *folders[FOLDERS_MAX];
	size_t nfolders;
	bool all;
	bool delete;
	bool idle;
	bool recent;
	const char *config;
	bool verbose;
	bool quiet;
	char **accounts;
	size_t naccounts;
};

/* One account's run. */
struct run {
	const struct opts *o;
	const struct conf *conf;
	const struct account *a;
	struct deliver *d;
	struct tls_ctx *tls;
	char tlsdir[4096];		/* STATE_DIR/tls: TLS session cache */
	struct fstate *fs;
	const char *folder;
	/* messages delivered and awaiting their flag on the server */
	struct imap_uids done;
	/* totals for the progress line and the log */
	unsigned long msgs;
	unsigned long long bytes;
	struct timespec t0, last;
	bool progress;
	/* test hook: die after this many deliveries, before the state */
	long crash_after;
};

static void __attribute__((format(printf, 1, 2)))
say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
help(void)
{
	printf("Usage: %s [options] [ACCOUNT...]\n"
	    "Retrieves new mail over IMAP (default) or POP3 with OAuth 2.0 and\n"
	    "delivers it to a Maildir, an mbox or a command.\n\n"
	    "  --imap              IMAP (default)\n"
	    "  --pop               POP3\n"
	    "  --maildir DIR       deliver into the Maildir DIR\n"
	    "  --mbox FILE         append to the mbox FILE\n"
	    "  --mda 'COMMAND'     run COMMAND with each message on its input\n"
	    "                      (default: the account's deliver = key)\n"
	    "  --folder NAME       IMAP folder (repeatable; default INBOX)\n"
	    "  --all               IMAP: also messages already seen\n"
	    "  --keep              leave messages on the server (default)\n"
	    "  --delete            delete messages once delivered\n"
	    "  --idle              IMAP: stay connected and fetch as mail arrives\n"
	    "  --recent            POP3: Gmail's recent mode (recent: user prefix)\n"
	    "  -C FILE             configuration file\n"
	    "  -v                  protocol transcript on standard error\n"
	    "  -q, --quiet         no progress line, only errors\n"
	    "  --help, --version\n"
	    "See bearmail-fetch(1).\n", progname);
}

static void
version(void)
{
	version_print(progname, NULL);
}

static int __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	say("%s (try --help)", msg);
	return EX_USAGE;
}

enum {
	OPT_IMAP = 256, OPT_POP, OPT_MAILDIR, OPT_MBOX, OPT_MDA, OPT_FOLDER,
	OPT_ALL, OPT_KEEP, OPT_DELETE, OPT_IDLE, OPT_RECENT, OPT_HELP,
	OPT_VERSION
};

/* 0 to go on, -1 for --help/--version done, else an exit code. */
static int
parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{ "imap", no_argument, NULL, OPT_IMAP },
		{ "pop", no_argument, NULL, OPT_POP },
		{ "pop3", no_argument, NULL, OPT_POP },
		{ "maildir", required_argument, NULL, OPT_MAILDIR },
		{ "mbox", required_argument, NULL, OPT_MBOX },
		{ "mda", required_argument, NULL, OPT_MDA },
		{ "folder", required_argument, NULL, OPT_FOLDER },
		{ "all", no_argument, NULL, OPT_ALL },
		{ "keep", no_argument, NULL, OPT_KEEP },
		{ "delete", no_argument, NULL, OPT_DELETE },
		{ "idle", no_argument, NULL, OPT_IDLE },
		{ "recent", no_argument, NULL, OPT_RECENT },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "config", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 }
	};
	int c, ntargets = 0;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+C:vq", lopts, NULL)) != -1) {
		switch (c) {
		case OPT_IMAP: o->pop = false; break;
		case OPT_POP: o->pop = true; break;
		case OPT_MAILDIR:
		case OPT_MBOX:
		case OPT_MDA:
			ntargets++;
			o->kind = c == OPT_MAILDIR ? DELIVER_MAILDIR :
			    c == OPT_MBOX ? DELIVER_MBOX : DELIVER_MDA;
			o->target = optarg;
			if (*optarg == '\0')
				return usage_error("empty delivery target");
			break;
		case OPT_FOLDER:
			if (o->nfolders >= FOLDERS_MAX)
				return usage_error("at most %d folders",
				    FOLDERS_MAX);
			if (*optarg == '\0' || strpbrk(optarg, "\r\n") != NULL)
				return usage_error("bad folder name");
			/* INBOX is case-insensitive (RFC 3501 5.1): one
			 * state file for it, whatever the spelling. */
			o->folders[o->nfolders++] = strcasecmp(optarg,
			    "INBOX") == 0 ? "INBOX" : optarg;
			break;
		case OPT_ALL: o->all = true; break;
		case OPT_KEEP: o->delete = false; break;
		case OPT_DELETE: o->delete = true; break;
		case OPT_IDLE: o->idle = true; break;
		case OPT_RECENT: o->recent = true; break;
		case 'q': o->quiet = true; break;
		case 'v': o->verbose = true; break;
		case 'C': o->config = optarg; break;
		case OPT_HELP: help(); return -1;
		case OPT_VERSION: version(); return -1;
		default:
			if (optopt != 0 && optopt < 256)
				return usage_error("unknown option -%c", optopt);
			return usage_error("unknown or incomplete option %s",
			    argv[optind - 1]);
		}
	}
	if (ntargets > 1)
		return usage_error("give one of --maildir, --mbox and --mda");
	if (o->pop && o->idle)
		return usage_error("--idle is for IMAP only");
	if (o->pop && o->nfolders > 0)
		return usage_error("--folder is for IMAP only");
	if (!o->pop && o->recent)
		return usage_error("--recent is for POP3 only");
	if (o->nfolders == 0)
		o->folders[o->nfolders++] = "INBOX";
	o->accounts = argv + optind;
	o->naccounts = (size_t)(argc - optind);
	/* --idle never returns to fetch the next account. */
	if (o->idle && o->naccounts > 1)
		return usage_error("--idle takes one account (run one "
		    "bearmail-fetch per account)");
	return 0;
}

/* ---- progress --------------------------------------------------------- */

static double
elapsed(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) +
	    (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void
progress(struct run *r, bool final)
{
	struct timespec now;
	double t;

	if (!r->progress)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!final && elapsed(&r->last, &now) < 0.2)
		return;
	r->last = now;
	t = elapsed(&r->t0, &now);
	fprintf(stderr, "\r%s: %lu message%s, %.1f MB, %.1f MB/s   ",
	    r->a->name, r->msgs, r->msgs == 1 ? "" : "s",
	    (double)r->bytes / 1e6,
	    t > 0 ? (double)r->bytes / 1e6 / t : 0.0);
	if (final)
		fputc('\n', stderr);
	fflush(stderr);
}

/* ---- delivery, shared by both protocols ------------------------------- */

static enum status
cb_begin(void *arg, struct errinfo *ei)
{
	struct run *r = arg;

	return deliver_begin(r->d, ei);
}

static enum status
cb_write(void *arg, const void *p, size_t n, struct errinfo *ei)
{
	struct run *r = arg;

	r->bytes += n;
	progress(r, false);
	return deliver_write(r->d, p, n, ei);
}

static void
cb_abort(void *arg)
{
	struct run *r = arg;

	deliver_abort(r->d);
}

/* The message is durable: count it, and honour the crash test hook. */
static void
delivered(struct run *r)
{
	r->msgs++;
	progress(r, false);
	if (r->crash_after > 0 && (long)r->msgs >= r->crash_after) {
		/* Between delivery and state: the worst moment to die. */
		kill(getpid(), SIGKILL);
	}
}

static enum status
cb_imap_end(void *arg, uint32_t uid, uint64_t size, struct errinfo *ei)
{
	struct run *r = arg;
	enum status st;

	(void)size;
	if (fstate_has_uid(r->fs, uid)) {
		/* Sent twice by the server: delivered already. */
		deliver_abort(r->d);
		return ST_OK;
	}
	if ((st = deliver_commit(r->d, ei)) != ST_OK)
		return st;
	delivered(r);
	if ((st = fstate_add_uid(r->fs, uid, ei)) != ST_OK)
		return st;
	return imap_uids_add(&r->done, uid, ei);
}

/* ---- sessions, whatever the protocol ---------------------------------- */

static const char *
login_name(const struct run *r)
{
	return r->a->impersonate != NULL ? r->a->impersonate : r->a->user;
}

/* A session's settings, for login.h's callbacks (reopen, credentials). */
struct fetch_sess {
	struct run *r;
	bool pop;			/* POP3, else IMAP */
	struct conn_target t;
};

/* login.h's credential getter: the token store, or bearmail-auth. */
static enum status
fetch_cred(void *arg, bool refresh, char **secret, struct errinfo *ei)
{
	const struct fetch_sess *fs = arg;

	return cred_get(fs->r->conf, fs->r->a, refresh, secret, ei);
}

static void
fetch_close(const struct fetch_sess *fs, void *sess)
{
	if (fs->pop)
		pop3_close(sess);
	else
		imap_close(sess);
}

/* Close *sess (NULL: none) and put a new session to fs->t in its place. */
static enum status
fetch_reopen(void *arg, void **sess, struct errinfo *ei)
{
	const struct fetch_sess *fs = arg;
	struct imap *im = NULL;
	struct pop3 *p = NULL;
	enum status st;

	fetch_close(fs, *sess);
	if (fs->pop) {
		st = pop3_open(&p, &fs->t, ei);
		*sess = p;
	} else {
		st = imap_open(&im, &fs->t, ei);
		*sess = im;
	}
	return st;
}

static enum status
fetch_imap_auth(void *s, enum auth_mech mech, const char *user,
    const char *secret, bool *rejected, struct errinfo *ei)
{
	return imap_auth(s, mech, user, secret, rejected, ei);
}

static bool
fetch_imap_usable(void *s)
{
	return imap_usable(s);
}

static enum status
fetch_pop_auth(void *s, enum auth_mech mech, const char *user,
    const char *secret, bool *rejected, struct errinfo *ei)
{
	return pop3_auth(s, mech, user, secret, rejected, ei);
}

static bool
fetch_pop_usable(void *s)
{
	return pop3_usable(s);
}

/*
 * Connect to the account's POP3 (pop) or IMAP server and log in as
 * user, with login.h's one forced refresh; when getting the fresh token
 * fails, say both what the server said and why.  *out is the session,
 * or NULL on failure.
 */
static enum status
fetch_connect(struct run *r, bool pop, const char *user, void **out,
    struct errinfo *ei)
{
	const struct endpoint *ep = pop ? &r->a->pop : &r->a->imap;
	struct fetch_sess fs;
	struct login_info info;
	struct login l;
	enum status st;

	*out = NULL;
	memset(&fs, 0, sizeof(fs));
	fs.r = r;
	fs.pop = pop;
	fs.t.host = ep->host;
	fs.t.port = ep->port;
	fs.t.tls = ep->tls;
	fs.t.timeout = r->a->timeout;
	fs.t.tls_ctx = r->tls;
	fs.t.tls_cache_dir = r->tlsdir;
	if ((st = fetch_reopen(&fs, out, ei)) != ST_OK)
		return st;
	memset(&l, 0, sizeof(l));
	l.mech = r->a->auth;
	l.user = user;
	l.auth = pop ? fetch_pop_auth : fetch_imap_auth;
	l.usable = pop ? fetch_pop_usable : fetch_imap_usable;
	l.reopen = fetch_reopen;
	l.cred = fetch_cred;
	l.arg = &fs;
	if ((st = login_run(&l, out, &info, ei)) != ST_OK) {
		if (info.step == LOGIN_REFRESH)
			st_context(ei, "%s; getting a fresh token",
			    info.refusal.msg);
		fetch_close(&fs, *out);
		*out = NULL;
	}
	return st;
}

/* ---- IMAP ------------------------------------------------------------- */

static enum status
imap_connect(struct run *r, struct imap **out, struct errinfo *ei)
{
	enum status st;
	void *s;

	st = fetch_connect(r, false, login_name(r), &s, ei);
	*out = s;
	return st;
}

/* Flag (or delete) what was delivered since the last call. */
static enum status
imap_flush_done(struct run *r, struct imap *im, struct errinfo *ei)
{
	enum status st = ST_OK;
	size_t i, n;

	for (i = 0; i < r->done.n && st == ST_OK; i += n) {
		n = r->done.n - i > 1000 ? 1000 : r->done.n - i;
		if (r->o->delete)
			st = imap_store(im, r->done.v + i, n, "\\Deleted", ei);
		else if (!r->o->all)
			st = imap_store(im, r->done.v + i, n, "\\Seen", ei);
	}
	return st;
}

/* Keep what was just delivered for the EXPUNGE at the folder's end. */
static enum status
imap_del_add(struct run *r, struct imap_uids *del, struct errinfo *ei)
{
	enum status st = ST_OK;
	size_t j;

	for (j = 0; j < r->done.n && st == ST_OK; j++)
		st = imap_uids_add(del, r->done.v[j], ei);
	return st;
}

static const struct imap_fetch_cb imap_cbs = {
	.begin = cb_begin,
	.write = cb_write,
	.end = cb_imap_end,
	.abort = cb_abort,
};

static enum status
imap_folder(struct run *r, struct imap *im, const char *folder,
    struct errinfo *ei)
{
	struct imap_mailbox mb;
	struct imap_uids found, del;
	uint32_t *todo = NULL;
	size_t ntodo, i, n;
	uint32_t lo;
	unsigned long before = r->msgs;
	bool reset, readonly = !r->o->delete && r->o->all;
	enum status st;

	memset(&found, 0, sizeof(found));
	memset(&del, 0, sizeof(del));
	r->folder = folder;
	if ((st = imap_select(im, folder, readonly, &mb, ei)) != ST_OK)
		return st;
	if ((st = fstate_open(&r->fs, r->conf->state_dir, r->a->name, "imap",
	    folder, ei)) != ST_OK)
		return st;
	if (mb.uidvalidity == 0) {
		st = st_error(ei, ST_PROTO, "%s: no UIDVALIDITY for %s",
		    r->a->imap.host, folder);
		goto out;
	}
	if ((st = fstate_set_uidvalidity(r->fs, mb.uidvalidity, &reset,
	    ei)) != ST_OK)
		goto out;
	if (reset)
		log_warn("%s: %s: UIDVALIDITY changed to %u: the folder was "
		    "rebuilt on the server; its messages count as new%s",
		    r->a->name, folder, (unsigned)mb.uidvalidity,
		    r->o->all ? " (all of them are fetched again)" :
		    " (the unseen ones are fetched again)");

	for (lo = 1; lo <= mb.exists; lo += IMAP_SEARCH_WINDOW) {
		uint32_t hi = mb.exists - lo < IMAP_SEARCH_WINDOW - 1 ?
		    mb.exists : lo + IMAP_SEARCH_WINDOW - 1;

		found.n = 0;
		if ((st = imap_search(im, lo, hi, !r->o->all, &found, ei)) !=
		    ST_OK)
			goto out;
		/* Split: new ones to fetch; delivered ones left unmarked
		 * by a crash get their flag now. */
		todo = found.v;
		ntodo = 0;
		r->done.n = 0;
		for (i = 0; i < found.n; i++) {
			if (!fstate_has_uid(r->fs, found.v[i]))
				todo[ntodo++] = found.v[i];
			else if ((r->o->delete || !r->o->all) &&
			    (st = imap_uids_add(&r->done, found.v[i], ei)) !=
			    ST_OK)
				goto out;
		}
		if ((st = imap_flush_done(r, im, ei)) != ST_OK ||
		    (r->o->delete && (st = imap_del_add(r, &del, ei)) != ST_OK))
			goto out;
		for (i = 0; i < ntodo; i += n) {
			n = ntodo - i > IMAP_FETCH_BATCH ? IMAP_FETCH_BATCH :
			    ntodo - i;
			r->done.n = 0;
			st = imap_fetch(im, todo + i, n, &imap_cbs, r, ei);
			/* Flag what did get delivered, even after a failure. */
			if (imap_usable(im))
				(void)imap_flush_done(r, im, st == ST_OK ? ei :
				    NULL);
			/* After a failure nothing is expunged: no need to
			 * keep its UIDs. */
			if (st == ST_OK && r->o->delete)
				st = imap_del_add(r, &del, ei);
			if (st != ST_OK)
				goto out;
		}
	}
	for (i = 0; i < del.n; i += n) {
		n = del.n - i > 1000 ? 1000 : del.n - i;
		if ((st = imap_expunge(im, del.v + i, n, ei)) != ST_OK)
			goto out;
	}
	st = fstate_compact(r->fs, false, ei);
out:
	if (r->msgs > before)
		log_info("%s: %lu message%s from %s folder %s delivered to %s",
		    r->a->name, r->msgs - before, r->msgs - before == 1 ? "" :
		    "s", r->a->imap.host, folder, deliver_name(r->d));
	if (del.n > 0 && st == ST_OK)
		log_info("%s: %zu message%s deleted from %s", r->a->name,
		    del.n, del.n == 1 ? "" : "s", folder);
	imap_uids_free(&found);
	imap_uids_free(&del);
	fstate_free(r->fs);
	r->fs = NULL;
	return st;
}

static void
nap(int secs)
{
	struct timespec ts = { secs, 0 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static enum status
run_imap(struct run *r, struct errinfo *ei)
{
	const struct opts *o = r->o;
	struct imap *im = NULL;
	struct imap_mailbox mb;
	enum status st = ST_OK;
	size_t i;
	int backoff = 1;
	bool news;

	if (r->a->imap.host == NULL)
		return st_error(ei, ST_CONFIG, "%s:%d: account %s has no "
		    "imap_host", r->a->file ? r->a->file : "?", r->a->line,
		    r->a->name);
	for (;;) {
		if (im == NULL && (st = imap_connect(r, &im, ei)) != ST_OK)
			goto retry;
		for (i = 0; i < o->nfolders; i++)
			if ((st = imap_folder(r, im, o->folders[i], ei)) !=
			    ST_OK)
				goto retry;
		if (!o->idle)
			break;
		backoff = 1;
		/* Wait on the first folder; every wake-up checks them all. */
		if ((st = imap_select(im, o->folders[0], false, &mb, ei)) !=
		    ST_OK)
			goto retry;
		progress(r, true);
		if ((st = imap_idle(im, IDLE_SECS, &news, ei)) != ST_OK)
			goto retry;
		continue;
retry:
		/* Network trouble and "later" are worth waiting out; a
		 * refused login or a bad setting is not. */
		if (!o->idle || (st != ST_NET && st != ST_TIMEOUT &&
		    st != ST_TEMPFAIL && st != ST_TLS))
			break;
		/* The session ended (Gmail: with the token); come back. */
		log_warn("%s: %s; reconnecting in %d s", r->a->name, ei->msg,
		    backoff);
		imap_close(im);
		im = NULL;
		nap(backoff);
		backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
		st_clear(ei);
	}
	if (im != NULL) {
		if (st == ST_OK)
			st = imap_logout(im, ei);
		else
			(void)imap_logout(im, NULL);
	}
	imap_close(im);
	return st;
}

/* ---- POP3 ------------------------------------------------------------- */

static enum status
pop_connect(struct run *r, struct pop3 **out, struct errinfo *ei)
{
	char user[600];
	enum status st;
	void *s;

	snprintf(user, sizeof(user), "%s%s", r->o->recent ? "recent:" : "",
	    login_name(r));
	st = fetch_connect(r, true, user, &s, ei);
	*out = s;
	return st;
}

static const struct pop3_retr_cb pop_cbs = {
	.begin = cb_begin,
	.write = cb_write,
	.abort = cb_abort,
};

static enum status
run_pop(struct run *r, struct errinfo *ei)
{
	struct pop3 *p = NULL;
	struct pop3_msg *m = NULL;
	size_t n = 0, i;
	unsigned long ndel = 0;
	bool have_uidl, complete = false;
	enum status st;

	if (r->a->pop.host == NULL)
		return st_error(ei, ST_CONFIG, "%s:%d: account %s has no "
		    "pop_host", r->a->file ? r->a->file : "?", r->a->line,
		    r->a->name);
	if ((st = fstate_open(&r->fs, r->conf->state_dir, r->a->name, "pop3",
	    NULL, ei)) != ST_OK)
		return st;
	if ((st = pop_connect(r, &p, ei)) != ST_OK ||
	    (st = pop3_list(p, &m, &n, ei)) != ST_OK)
		goto out;
	have_uidl = n == 0 || m[0].uidl[0] != '\0';
	if (!have_uidl && !r->o->delete) {
		st = st_error(ei, ST_CONFIG, "%s offers no UIDL: without it "
		    "bearmail-fetch cannot tell new mail from old; use "
		    "--delete", r->a->pop.host);
		goto out;
	}
	for (i = 0; i < n; i++) {
		bool known;

		if (have_uidl && m[i].uidl[0] == '\0') {
			st = st_error(ei, ST_PROTO, "%s: message %u has no "
			    "UIDL", r->a->pop.host, (unsigned)m[i].num);
			goto out;
		}
		known = have_uidl && fstate_has_uidl(r->fs, m[i].uidl);
		if (!known) {
			if ((st = pop3_retr(p, m[i].num, &pop_cbs, r, ei)) !=
			    ST_OK)
				goto out;
			if ((st = deliver_commit(r->d, ei)) != ST_OK)
				goto out;
			delivered(r);
			if (have_uidl && (st = fstate_add_uidl(r->fs,
			    m[i].uidl, ei)) != ST_OK)
				goto out;
		}
		if (r->o->delete) {
			if ((st = pop3_dele(p, m[i].num, ei)) != ST_OK)
				goto out;
			ndel++;
		}
	}
	complete = true;
	/* QUIT commits the deletions; only then do they count. */
	st = pop3_quit(p, ei);
out:
	/* Every DELE sent so far follows a durable delivery: committing
	 * them with QUIT is right even after a failure. */
	if (!complete && p != NULL && pop3_usable(p))
		(void)pop3_quit(p, NULL);
	/* Fold the records; forget UIDLs the server no longer lists (only
	 * after a complete session). */
	if (r->fs != NULL)
		(void)fstate_compact(r->fs, complete && st == ST_OK, NULL);
	if (r->msgs > 0)
		log_info("%s: %lu message%s from %s delivered to %s",
		    r->a->name, r->msgs, r->msgs == 1 ? "" : "s",
		    r->a->pop.host, deliver_name(r->d));
	if (ndel > 0 && st == ST_OK)
		log_info("%s: %lu message%s deleted from %s", r->a->name, ndel,
		    ndel == 1 ? "" : "s", r->a->pop.host);
	free(m);
	pop3_close(p);
	fstate_free(r->fs);
	r->fs = NULL;
	return st;
}

/* ---- main ------------------------------------------------------------- */

/* The test hook, honoured only when nothing is privileged. */
static long
crash_hook(void)
{
	const char *v = getenv("BEARMAIL_FETCH_TEST_CRASH");
	char *end;
	long n;

	if (v == NULL || getuid() != geteuid() || getgid() != getegid())
		return 0;
	n = strtol(v, &end, 10);
	return *end == '\0' && n > 0 ? n : 0;
}

static enum status
run_account(const struct opts *o, const struct conf *conf, const char *name,
    struct errinfo *ei)
{
	struct run r;
	enum deliver_kind kind = o->kind;
	const char *target = o->target;
	enum tls_mode tm;
	enum status st;
	int lockfd = -1;

	memset(&r, 0, sizeof(r));
	r.o = o;
	r.conf = conf;
	r.crash_after = crash_hook();
	if ((st = conf_account(conf, name, &r.a, ei)) != ST_OK)
		return st;
	if (target == NULL) {
		kind = r.a->deliver_kind;
		target = r.a->deliver_arg;
	}
	if (kind == DELIVER_NONE || target == NULL)
		return st_error(ei, ST_USAGE, "account %s: no delivery target: "
		    "give --maildir, --mbox or --mda, or set deliver = in the "
		    "account", r.a->name);
	if (conf->state_dir == NULL)
		return st_error(ei, ST_CONFIG, "no state_dir");
	if ((st = fstate_lock(conf->state_dir, r.a->name, &lockfd, ei)) !=
	    ST_OK)
		return st;
	if ((st = deliver_open(&r.d, kind, target, r.a->timeout * 5,
	    ei)) != ST_OK)
		goto out;
	snprintf(r.tlsdir, sizeof(r.tlsdir), "%s/tls", conf->state_dir);
	tm = o->pop ? r.a->pop.tls : r.a->imap.tls;
	if (tm != TLSM_NONE &&
	    (st = tls_ctx_new(&r.tls, r.a->ca_file, ei)) != ST_OK)
		goto out;
	r.progress = !o->quiet && !o->verbose && isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &r.t0);
	r.last = r.t0;
	st = o->pop ? run_pop(&r, ei) : run_imap(&r, ei);
	if (r.msgs > 0 || st == ST_OK)
		progress(&r, true);
out:
	if (st != ST_OK)
		st_context(ei, "%s", r.a->name);
	deliver_free(r.d);
	tls_ctx_free(r.tls);
	imap_uids_free(&r.done);
	fstate_unlock(lockfd);
	return st;
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct conf conf;
	struct errinfo ei;
	enum status st, worst = ST_OK;
	size_t i;
	int rc;

	/* Access tokens and the mail itself pass through: no core files. */
	priv_no_core();
	memset(&o, 0, sizeof(o));
	memset(&conf, 0, sizeof(conf));
	st_clear(&ei);
	/* A peer or an MDA that goes away must give an error, not kill us. */
	signal(SIGPIPE, SIG_IGN);

	if ((rc = parse_args(argc, argv, &o)) != 0)
		return rc < 0 ? EX_OK : rc;
	log_set_verbose(o.verbose);
	if ((st = conf_load(&conf, o.config, &ei)) != ST_OK) {
		say("%s", ei.msg);
		rc = st_exitcode(st);
		goto done;
	}
	if (conf.log != NULL && log_open(progname, conf.log, &ei) != ST_OK) {
		say("%s (logging to standard error)", ei.msg);
		st_clear(&ei);
	}
	for (i = 0; i < (o.naccounts > 0 ? o.naccounts : 1); i++) {
		st_clear(&ei);
		st = run_account(&o, &conf, o.naccounts > 0 ? o.accounts[i] :
		    NULL, &ei);
		if (st != ST_OK) {
			say("%s", ei.msg);
			log_err("%s", ei.msg);
			if (worst == ST_OK)
				worst = st;
		}
	}
	rc = st_exitcode(worst);
done:
	conf_free(&conf);
	log_close();
	return rc;
}
