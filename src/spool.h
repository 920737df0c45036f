/*
 * spool.h: the durable queue (queue_dir) and the maildrop.
 *
 * The on-disk format, the crash-safety argument and the privilege model
 * are described at the top of spool.c.  In short: one message is one
 * file, q/ID, holding a text envelope, an empty line and the message
 * exactly as src/msg.c wrote it (CRLF, not dot-stuffed).  A file appears
 * in q/ only whole (tmp/, fsync, rename, fsync of the directory); a
 * runner owns a message while it holds flock(LOCK_EX) on its file; every
 * envelope change is a new file renamed over the old one.
 *
 * Submission (bearmail queueing a message): a caller who owns queue_dir
 * (or root) uses spool_open(..., SPOOL_CREATE) and spool_enqueue_fd();
 * any other local user (spool_open() says ST_CANTCREAT) hands the
 * message to bearmail-drop with spool_submit_drop(), and the runner
 * imports it with spool_import_maildrop().
 *
 * A typical runner (bearmail -q):
 *
 *	spool_open(&sp, conf->queue_dir, SPOOL_CREATE, ei);
 *	spool_import_maildrop(sp, now, &n, ei);
 *	spool_scan(sp, now, SPOOL_SCAN_DUE, &list, ei);
 *	for each run of list.v[] with the same env.account:
 *		open one authenticated SMTP session;
 *		for each entry:
 *			spool_claim(sp, id, &m, ei);	// m NULL: skip it
 *			if (spool_expired(spool_msg_env(m), now, max_age))
 *				spool_fail_pending(m, "...", ei);
 *			else
 *				spool_body_open(m, &fd, ei), smtp_send(...),
 *				spool_rcpt_set(m, i, ...) per recipient;
 *			if (spool_pending(spool_msg_env(m)) > 0)
 *				spool_defer(m, now, reason, ei);
 *			else {
 *				spool_commit(m, ei);	// done/failed now durable
 *				if (spool_failed(spool_msg_env(m)) > 0)
 *					spool_notice(...), spool_enqueue_mem(...);
 *				spool_retire(m, ei);	// unlink, or to failed/
 *			}
 *			spool_release(m);
 *	spool_list_free(&list); spool_close(sp);
 *
 * A message with no pending recipient that is still in q/ (a runner died
 * between spool_commit() and spool_retire()) is listed as due: claim it
 * and carry on from "else" above.  The one duplicate left is a failure
 * notice when a runner dies between its enqueue and spool_retire().
 */
#ifndef BEARMAIL_SPOOL_H
#define BEARMAIL_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"
#include "status.h"

/* Queue IDs: 10 characters, see spool.c; the array size with its NUL. */
#define SPOOL_ID_LEN		10
#define SPOOL_ID_SIZE		(SPOOL_ID_LEN + 1)

#define SPOOL_HDR_MAX		(256 * 1024)	/* envelope block */
#define SPOOL_MSG_MAX		((off_t)128 * 1024 * 1024) /* message */
#define SPOOL_RCPT_MAX		1000		/* recipients per message */
#define SPOOL_ADDR_MAX		512		/* octets of one address */
#define SPOOL_TEXT_MAX		1024		/* a reply or an error */
#define SPOOL_ACCOUNT_MAX	128
#define SPOOL_ENVID_MAX		100		/* RFC 3461 */

/* Backoff: 5 minutes, doubling per attempt, at most 4 hours. */
#define SPOOL_BACKOFF_MIN	(5 * 60)
#define SPOOL_BACKOFF_MAX	(4 * 60 * 60)

/* Same bit values as SMTP_NOTIFY_* in smtp.h; 0: no NOTIFY given. */
#define SPOOL_NOTIFY_NEVER	0x1u
#define SPOOL_NOTIFY_SUCCESS	0x2u
#define SPOOL_NOTIFY_FAILURE	0x4u
#define SPOOL_NOTIFY_DELAY	0x8u

/* Same order as enum smtp_body and enum smtp_ret in smtp.h. */
enum spool_body { SPOOL_BODY_NONE, SPOOL_BODY_7BIT, SPOOL_BODY_8BITMIME };
enum spool_ret { SPOOL_RET_NONE, SPOOL_RET_HDRS, SPOOL_RET_FULL };

enum spool_rcpt_state {
	SPOOL_RCPT_PENDING,	/* still to be sent */
	SPOOL_RCPT_DONE,	/* the server took the message for it */
	SPOOL_RCPT_FAILED	/* given up: 5xx, or the message expired */
};

struct spool_rcpt {
	char *addr;			/* without <>; owned */
	enum spool_rcpt_state state;
	char *reply;			/* last reply or reason, or NULL; owned */
};

/*
 * The envelope of one message.  Every string is owned by the envelope
 * and freed by spool_env_free().
 */
struct spool_env {
	char id[SPOOL_ID_SIZE];		/* "" until enqueued */
	char *account;			/* account (config section) name */
	char *sender;			/* "" for the null sender <> */
	struct spool_rcpt *rcpts;
	size_t nrcpts;
	enum spool_body body;
	bool smtputf8;
	unsigned notify;		/* SPOOL_NOTIFY_* or 0 */
	enum spool_ret ret;
	char *envid;			/* DSN ENVID (raw, not xtext), or NULL */
	uid_t uid;			/* submitter; (uid_t)-1 unknown */
	time_t created;			/* arrival */
	unsigned attempts;		/* delivery attempts so far */
	time_t next_try;		/* not before this time */
	char *last_error;		/* why the last attempt failed, or NULL */
	off_t size;			/* octets of the message */
};

/* The two serialisations of an envelope (see spool.c). */
enum spool_fmt {
	SPOOL_FMT_QUEUE,	/* q/ and failed/ files: everything */
	SPOOL_FMT_DROP		/* maildrop submissions: no id, uid, times,
				   attempts, errors; every recipient pending */
};

/* ------------------------------------------------------------------ */
/* Envelopes (pure, no I/O)                                             */

/* An empty envelope: no strings, uid -1, body NONE. */
void spool_env_init(struct spool_env *env);

/* Free every string and the recipients; env is left as by init. */
void spool_env_free(struct spool_env *env);

/*
 * Set account and sender ("" or "<>" for the null sender), copying.
 * ST_DATAERR when either is not acceptable in an envelope (control
 * characters, too long, empty account).
 */
enum status spool_env_set(struct spool_env *env, const char *account,
    const char *sender, struct errinfo *ei);

/* Set (copy) the DSN ENVID; NULL removes it.  ST_DATAERR if invalid. */
enum status spool_env_set_envid(struct spool_env *env, const char *envid,
    struct errinfo *ei);

/* Append a pending recipient (copied).  ST_DATAERR/ST_LIMIT if refused. */
enum status spool_env_add_rcpt(struct spool_env *env, const char *addr,
    struct errinfo *ei);

/*
 * Append the serialised envelope, ending with its empty line, to out.
 * ST_DATAERR if env holds something the format cannot carry.
 */
enum status spool_env_format(const struct spool_env *env, enum spool_fmt fmt,
    struct buf *out, struct errinfo *ei);

/*
 * Parse an envelope from data (len bytes, which may go on into the
 * message).  Strict: a magic first line, known keys only, each once,
 * values checked, bounded by SPOOL_HDR_MAX.  On success *hdrlen is the
 * offset of the message (just past the empty line) and env (which must
 * be initialised; it is freed first) holds the envelope.  ST_DATAERR
 * with a reason naming the line otherwise; ST_LIMIT when no empty line
 * comes within SPOOL_HDR_MAX.  Safe on hostile input.
 */
enum status spool_env_parse(const char *data, size_t len, enum spool_fmt fmt,
    struct spool_env *env, size_t *hdrlen, struct errinfo *ei);

/* Deep copy of src into dst (initialised or not; overwritten). */
enum status spool_env_copy(struct spool_env *dst, const struct spool_env *src,
    struct errinfo *ei);

/* Recipients still pending, and recipients failed. */
size_t spool_pending(const struct spool_env *env);
size_t spool_failed(const struct spool_env *env);

/*
 * Seconds to wait after the attempts-th failed attempt (attempts >= 1):
 * SPOOL_BACKOFF_MIN doubled per attempt, at most SPOOL_BACKOFF_MAX.
 */
time_t spool_backoff(unsigned attempts);

/* True when env arrived max_age or more seconds before now. */
bool spool_expired(const struct spool_env *env, time_t now, time_t max_age);

/* A fresh queue ID for time t (seconds) and usec; random last char. */
void spool_id_make(char id[SPOOL_ID_SIZE], time_t t, long usec);

/* True when s is a well-formed queue ID (the filename test). */
bool spool_id_valid(const char *s);

/* ------------------------------------------------------------------ */
/* The queue directory                                                  */

struct spool;

#define SPOOL_CREATE	0x1u	/* create missing directories (0700) */
#define SPOOL_RDONLY	0x2u	/* listing only: no tmp/ needed */

/*
 * Open queue directory path, with tmp/, q/, failed/ and maildrop/ in
 * it.  Every directory must be a real directory (not a symlink) owned by
 * the owner of path and not writable by group or others, except
 * maildrop/, which may be group-writable when it is sticky (mode 1730 on
 * a system install).  The caller must be that owner or root (root's new
 * files are given to the owner).  ST_CANTCREAT when the queue cannot be
 * used, with the reason.  Free with spool_close().
 */
enum status spool_open(struct spool **out, const char *path, unsigned flags,
    struct errinfo *ei);

/* Close the directories and free sp.  NULL is a no-op. */
void spool_close(struct spool *sp);

/*
 * Enqueue a message: env (account, sender, recipients, flags, DSN; and,
 * for a message already tried once, attempts, next_try, last_error) plus
 * the message read from fd from its current offset to EOF (fd must be a
 * regular file), or from mem.  created, uid (if -1: getuid()), size and
 * id are set here and written back into env; next_try 0 means "now".
 * Returns ST_OK only once the message is durable in q/.  ST_CANTCREAT
 * when the queue cannot be written, ST_LIMIT past SPOOL_MSG_MAX.
 */
enum status spool_enqueue_fd(struct spool *sp, struct spool_env *env, int fd,
    struct errinfo *ei);
enum status spool_enqueue_mem(struct spool *sp, struct spool_env *env,
    const void *mem, size_t len, struct errinfo *ei);

/* One message found by spool_scan(). */
struct spool_entry {
	struct spool_env env;		/* its envelope (id set) */
	bool drop;			/* a maildrop file not yet imported:
					   only id, uid, created and size set */
};

struct spool_list {
	struct spool_entry *v;
	size_t n;
};

#define SPOOL_SCAN_DUE		0x1u	/* only next_try <= now */
#define SPOOL_SCAN_MAILDROP	0x2u	/* also list maildrop/ (for -bp) */

/*
 * Read the envelopes of q/ into out, sorted by account, then by ID
 * (which is arrival order).  A file that is not a regular file owned by
 * the queue owner with one link, or does not parse, is skipped and
 * reported with log_warn(), never opened through a link.  With
 * SPOOL_SCAN_MAILDROP the maildrop files come first, in ID order
 * (listed from their inode only: their contents are not trusted).
 * Free with spool_list_free().
 */
enum status spool_scan(struct spool *sp, time_t now, unsigned flags,
    struct spool_list *out, struct errinfo *ei);

void spool_list_free(struct spool_list *l);

/*
 * The mailq / bearmail -bp listing of l in Postfix's format (short
 * queue IDs), appended to out.  Times are shown in local time.
 */
enum status spool_list_format(const struct spool_list *l, struct buf *out,
    struct errinfo *ei);

/* spool_scan() with SPOOL_SCAN_MAILDROP, then spool_list_format(). */
enum status spool_listing(struct spool *sp, struct buf *out,
    struct errinfo *ei);

/* ------------------------------------------------------------------ */
/* Delivery of one message                                              */

struct spool_msg;

/*
 * Claim message id in q/ for delivery: open it (never through a link),
 * take a non-blocking exclusive lock and check that the name still leads
 * to the locked file.  *out is NULL with ST_OK when another runner holds
 * it or it is gone: skip it.  ST_DATAERR for a file that does not parse
 * or is refused (logged).  Release with spool_release().
 */
enum status spool_claim(struct spool *sp, const char *id,
    struct spool_msg **out, struct errinfo *ei);

/* The envelope of a claimed message.  Valid until spool_release(). */
struct spool_env *spool_msg_env(struct spool_msg *m);

/*
 * A new descriptor on the message (not the envelope), at its first
 * octet; spool_msg_env(m)->size octets follow up to EOF.  The caller
 * closes it.  Valid after spool_release() too (it is its own open file).
 */
enum status spool_body_open(struct spool_msg *m, int *fd, struct errinfo *ei);

/*
 * Append up to max octets of the message to out; *complete says whether
 * that was all of it.  For failure notices.
 */
enum status spool_body_read(struct spool_msg *m, size_t max, struct buf *out,
    bool *complete, struct errinfo *ei);

/* Record recipient i's outcome and reply (copied, may be NULL). */
enum status spool_rcpt_set(struct spool_msg *m, size_t i,
    enum spool_rcpt_state state, const char *reply, struct errinfo *ei);

/*
 * Mark every pending recipient failed with reason (also the message's
 * last_error).  For max_queue_age.  Not yet written: spool_commit().
 */
enum status spool_fail_pending(struct spool_msg *m, const char *reason,
    struct errinfo *ei);

/*
 * Write the in-memory envelope of m over its file, atomically (a new
 * file with the message copied, fsynced, renamed over the old one, the
 * directory fsynced).  m keeps its claim: the new file is locked before
 * it becomes visible.
 */
enum status spool_commit(struct spool_msg *m, struct errinfo *ei);

/*
 * After a failed attempt: attempts + 1, next_try = now + backoff,
 * last_error = reason (may be NULL), then spool_commit().
 */
enum status spool_defer(struct spool_msg *m, time_t now, const char *reason,
    struct errinfo *ei);

/*
 * The message has no pending recipient (call spool_commit() first):
 * remove it when every recipient is done, else move it to failed/ (the
 * envelope says why).  m may only be released afterwards.
 */
enum status spool_retire(struct spool_msg *m, struct errinfo *ei);

/* Drop the claim (and the lock) and free m.  NULL is a no-op. */
void spool_release(struct spool_msg *m);

/* ------------------------------------------------------------------ */
/* Failure notices (pure)                                               */

struct spool_notice_opts {
	const char *to;		/* bounce_to, or NULL: the envelope sender */
	const char *domain;	/* Reporting-MTA, Message-ID and From domain */
	time_t now;
	time_t max_age;		/* for the text on expired recipients */
};

/*
 * Compose the failure notice for orig's failed recipients: an RFC 3464
 * multipart/report (a plain text part, message/delivery-status, then the
 * original's header section as text/rfc822-headers, or the whole message
 * as message/rfc822 when RET=FULL was asked and msg is complete).  msg
 * and len are the start of the original (from spool_body_read()).
 *
 * No notice is due (ST_OK, *none true, out untouched) when no recipient
 * failed, orig's sender is <> (a notice is never sent about a notice),
 * the destination is empty, or DSN NOTIFY was given without FAILURE.
 * Otherwise the message (CRLF, not dot-stuffed) is appended to out and
 * nenv (initialised by the caller, freed here first; the caller frees
 * it afterwards) is set up for spool_enqueue_mem(): same account, sender
 * <>, one recipient, BODY and SMTPUTF8 as the content needs.
 * Deterministic: same inputs, same bytes.
 */
enum status spool_notice(const struct spool_env *orig, const char *msg,
    size_t len, bool complete, const struct spool_notice_opts *o,
    struct spool_env *nenv, struct buf *out, bool *none, struct errinfo *ei);

/* ------------------------------------------------------------------ */
/* The maildrop                                                         */

/*
 * The body of bearmail-drop: read one submission (a SPOOL_FMT_DROP
 * envelope, its empty line, then exactly size octets of message, then
 * EOF) from in, waiting at most timeout seconds for each read, and write
 * it into the directory dropfd as a new file named by a fresh queue ID
 * (a dot-file first, fsynced, renamed without replacing, the directory
 * fsynced).  The envelope is written as re-serialised from what was
 * parsed.  id receives the name.  ST_DATAERR for a bad envelope or a
 * message that is not exactly size octets, ST_LIMIT past SPOOL_HDR_MAX
 * or SPOOL_MSG_MAX, ST_TIMEOUT, ST_CANTCREAT.  Nothing is left behind on
 * failure.
 */
enum status spool_drop(int dropfd, int in, int timeout,
    char id[SPOOL_ID_SIZE], struct errinfo *ei);

/* The one variable spool_submit_drop() passes on, for tests. */
#define SPOOL_DROP_DIR_ENV	"BEARMAIL_DROP_DIR"

/*
 * The submitting side of the maildrop, for a user who cannot write q/:
 * run prog (BINDIR "/bearmail-drop"; the caller picks) with an empty
 * environment (BEARMAIL_DROP_DIR excepted, which bearmail-drop honours
 * only when it is not privileged), feed it env in the maildrop format
 * and the message read from fd (a regular file, from its current offset
 * to EOF; env->size is set here), and collect the queue ID it prints
 * into id.  Each wait is bounded by timeout seconds (the child is killed
 * past it: ST_TIMEOUT).  Its failure maps back: exit 65 ST_DATAERR, 73
 * ST_CANTCREAT, 75 ST_TEMPFAIL, anything else ST_CANTCREAT, with its
 * message as the text.  Success means the message is durable in the
 * maildrop.
 */
enum status spool_submit_drop(const char *prog, struct spool_env *env,
    int fd, int timeout, char id[SPOOL_ID_SIZE], struct errinfo *ei);

/*
 * Move every well-formed maildrop file into q/ as a queue file with the
 * same ID (uid: the file's owner; created: its mtime).  Its contents are
 * untrusted: it is parsed with the limits of SPOOL_FMT_DROP and a file
 * that is not a regular file with one link, is too large or does not
 * parse is moved to failed/ID.drop (the log says why) without being
 * followed.  Dot-files older than a day (left by a killed bearmail-drop)
 * are removed.  *imported counts the messages moved (may be NULL).
 */
enum status spool_import_maildrop(struct spool *sp, time_t now,
    size_t *imported, struct errinfo *ei);

/* Remove tmp/ files older than a day (left by killed writers). */
enum status spool_cleanup(struct spool *sp, time_t now, struct errinfo *ei);

#endif
