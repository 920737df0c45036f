/*
 * submit.h: outbound delivery through an account's submission server,
 * shared by the synchronous path of bearmail, its -bs server and the
 * queue runner (bearmail -q).
 *
 * A process keeps at most one SMTP session per account (and one TLS
 * context per ca_file), opened on first use and authenticated with
 * cred_get(): one forced refresh and one retry when the server refuses
 * the token.  The session carries message after message (RSET between);
 * when it dies or the server asks for authentication again (the access
 * token expired mid-run), it is opened and authenticated again once,
 * before anything of the message was committed.  submit_close_all()
 * says QUIT without waiting for the reply.
 *
 * The runner (submit_run()) follows the loop described in spool.h: one
 * session per account for many messages, a claim per message, results
 * per recipient, backoff, max_queue_age, failure notices.  Every
 * delivery is logged in SPEC's Postfix-like format with its queue ID.
 */
#ifndef BEARMAIL_SUBMIT_H
#define BEARMAIL_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "conf.h"
#include "smtp.h"
#include "spool.h"
#include "status.h"

struct submit_sess;

/*
 * The process's session for acct, connected and authenticated, opened
 * now if there is none (or the one there died).  ehlo_name may be NULL.
 * conf and acct must outlive the session.  *out stays owned by this
 * module: valid until submit_close_all().  Fails with the status of the
 * step that failed (ST_NET, ST_TLS, ST_AUTH, ST_CONFIG...), ei saying
 * why; for ST_AUTH from the token store the text says what to run.
 */
enum status submit_session(struct submit_sess **out, const struct conf *conf,
    const struct account *acct, const char *ehlo_name, struct errinfo *ei);

/*
 * One mail transaction on ss: env and the message read from fd, from its
 * current offset to EOF (canonical CRLF, not dot-stuffed).  All or
 * nothing, as smtp_send().  A session used before is RSET first; if that
 * fails, or the transaction fails before its final dot because the
 * session died or the server wants a new AUTH, the session is opened
 * again and the transaction tried once more (fd is put back to its
 * starting offset).  res is always initialised; free it with
 * smtp_result_free().  The status is that of the call that failed.
 */
enum status submit_send(struct submit_sess *ss,
    const struct smtp_envelope *env, int fd, struct smtp_result *res,
    struct errinfo *ei);

/*
 * "host[address]:port" of the session's server (or "host:port" before a
 * connection), for log lines.  Valid until the session is closed.
 */
const char *submit_relay(const struct submit_sess *ss);

/*
 * Close every session: QUIT is sent but its reply not waited for (a
 * server that never answers it must not hold the caller), then the
 * connections are closed.  TLS contexts are freed too.
 */
void submit_close_all(void);

/*
 * A new unlinked temporary file in $TMPDIR (else /tmp), open for reading
 * and writing, close-on-exec (it holds a message: children such as
 * bearmail-auth or a password_command must not inherit it).  Returns
 * the descriptor, or -1 with ST_SYS in ei.
 */
int submit_tmpfile(struct errinfo *ei);

/* Seconds since an arbitrary start, for delay= in log lines. */
double submit_clock(void);

/*
 * One log line per recipient: "ID: to=<rcpt>, relay=R, delay=D,
 * status=S (text)".  text may be NULL.
 */
void submit_log(const char *id, const char *rcpt, const char *relay,
    double t0, const char *status, const char *text);

/* ------------------------------------------------------------------ */
/* One submitted message: now, into the queue, or into the maildrop    */

/* A message as the sendmail interface submits it.  Nothing is owned. */
struct submit_msg {
	char *id;			/* ENVELOPE_ID_SIZE bytes: the log ID,
					   replaced by the queue ID when the
					   message is queued */
	const struct account *acct;
	const char *ehlo_name;		/* may be NULL */
	const char *sender;		/* "" for <> */
	const char *const *rcpts;
	size_t nrcpts;
	off_t size;
	enum smtp_body body;
	bool smtputf8;
	unsigned notify;		/* SMTP_NOTIFY_* */
	enum smtp_ret ret;
	const char *envid;		/* or NULL */
};

/*
 * Deliver m (message in fd, canonical, from offset 0) now, to every
 * recipient or to none, through the process's session for m->acct.  One
 * log line per recipient.  The status and ei are those of the failing
 * step (smtp_send()'s: ST_NOUSER, ST_TEMPFAIL...).
 */
enum status submit_now(const struct conf *conf, const struct submit_msg *m,
    int fd, struct errinfo *ei);

/*
 * Queue m (message in fd, from offset 0): into sp when it is not NULL
 * (why, if not NULL, is the attempt that just failed: attempts 1,
 * next_try after the first backoff, last_error its text), else through
 * bearmail-drop (submit_drop_program()) into the maildrop.  On success
 * m->id is the queue ID and the message is durable.
 */
enum status submit_enqueue(struct spool *sp, struct submit_msg *m, int fd,
    const struct errinfo *why, struct errinfo *ei);

/*
 * bearmail-drop: BINDIR/bearmail-drop, or $BEARMAIL_DROP (absolute)
 * when the process is not set-ID (tests).
 */
const char *submit_drop_program(void);

/*
 * Whether queue_dir belongs to another user (and we are not root): the
 * case where a submission goes through the maildrop.
 */
bool submit_queue_is_others(const char *queue_dir);

/* Whether queue_dir/q holds any file: one directory read, cheap. */
bool submit_queue_has_mail(const char *queue_dir);

/*
 * Run this program again (/proc/self/exe) as a detached background
 * process in its own session, with standard descriptors on /dev/null:
 * "bearmail [-C config] arg [arg2]" (arg2 may be NULL).  Returns at
 * once; failures are silent (the queue is durable, a later run will do
 * the work).
 */
void submit_spawn(const char *config, const char *arg, const char *arg2);

/* ------------------------------------------------------------------ */
/* The queue runner                                                     */

struct submit_run_opts {
	const struct conf *conf;
	const char *only_id;	/* -qI: this message only, due or not */
	const char *only_account; /* -q -a NAME: this account's messages
				   only; NULL: every account */
	bool due_only;		/* --queue-due: only messages whose next
				   try has come (backoff); else all */
	time_t now;		/* 0: time(NULL) */
};

struct submit_run_stats {
	size_t imported;	/* maildrop files moved into q/ */
	size_t tried;		/* messages claimed and tried */
	size_t sent;		/* messages finished with every recipient done */
	size_t deferred;	/* messages left queued */
	size_t failed;		/* messages moved to failed/ */
	size_t notices;		/* failure notices queued */
	size_t skipped;		/* claimed by another runner, or gone */
};

/*
 * Deliver the queue sp (opened with SPOOL_CREATE): import the maildrop,
 * clean tmp/, then every message (o->due_only: only those due;
 * o->only_id: that one; o->only_account: that account's) account by
 * account, one session per account; then the
 * failure notices this run queued.  Per message: a claim (a message
 * another runner holds is skipped), a transaction for the pending
 * recipients (when some recipients are refused, the accepted ones get
 * the message in a second transaction), the outcome recorded per
 * recipient, spool_defer() with backoff while any is pending, else
 * failed/ with a notice for the failed ones.  A message older than
 * max_queue_age fails its pending recipients.  When an account cannot
 * be reached or authenticated, its remaining messages are deferred
 * with that reason without trying each.  A message already given to
 * the server when the connection broke after the final dot is kept and
 * logged: the one case where it may arrive twice.
 *
 * Returns ST_OK when the queue could be processed, whatever became of
 * the messages (see stats, may be NULL, and the log); only a queue that
 * cannot be read or written fails.  o->only_id not in the queue is
 * ST_USAGE.
 */
enum status submit_run(struct spool *sp, const struct submit_run_opts *o,
    struct submit_run_stats *stats, struct errinfo *ei);

#endif
