/*
 * spool.h: the durable queue (queue_dir): spool.c (the directory,
 * enqueueing, claims) and spool_list.c (scanning, mailq), which share
 * the internals in spool_int.h.  Built on envelope.h (the envelope and
 * queue IDs, pure); beside it maildrop.h (bearmail-drop and its import)
 * and notice.h (failure notices, pure).
 *
 * The on-disk format, the crash-safety argument and the privilege model
 * are described at the tops of spool.c, envelope.c and maildrop.c.  In
 * short: one message is one file, q/ID, holding a text envelope, an
 * empty line and the message exactly as src/msg.c wrote it (CRLF, not
 * dot-stuffed).  A file appears in q/ only whole (tmp/, fsync, rename,
 * fsync of the directory); a runner owns a message while it holds
 * flock(LOCK_EX) on its file; every envelope change is a new file
 * renamed over the old one.
 *
 * Submission (bearmail queueing a message): a caller who owns queue_dir
 * (or root) uses spool_open(..., SPOOL_CREATE) and spool_enqueue_fd();
 * any other local user (spool_open() says ST_CANTCREAT) hands the
 * message to bearmail-drop with maildrop_submit(), and the runner
 * imports it with maildrop_import().
 *
 * A typical runner (bearmail -q):
 *
 *	spool_open(&sp, conf->queue_dir, SPOOL_CREATE, ei);
 *	maildrop_import(sp, now, &n, ei);
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
 *			if (envelope_pending(spool_msg_env(m)) > 0)
 *				spool_defer(m, now, reason, ei);
 *			else {
 *				spool_commit(m, ei);	// done/failed now durable
 *				if (envelope_failed(spool_msg_env(m)) > 0)
 *					notice_compose(...), spool_enqueue_mem(...);
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
#include "envelope.h"

/* Backoff: 5 minutes, doubling per attempt, at most 4 hours. */
#define SPOOL_BACKOFF_MIN	(5 * 60)
#define SPOOL_BACKOFF_MAX	(4 * 60 * 60)

/*
 * Seconds to wait after the attempts-th failed attempt (attempts >= 1):
 * SPOOL_BACKOFF_MIN doubled per attempt, at most SPOOL_BACKOFF_MAX.
 */
time_t spool_backoff(unsigned attempts);

/* True when env arrived max_age or more seconds before now. */
bool spool_expired(const struct envelope *env, time_t now, time_t max_age);

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
 * when the queue cannot be written, ST_LIMIT past ENVELOPE_MSG_MAX.
 */
enum status spool_enqueue_fd(struct spool *sp, struct envelope *env, int fd,
    struct errinfo *ei);
enum status spool_enqueue_mem(struct spool *sp, struct envelope *env,
    const void *mem, size_t len, struct errinfo *ei);

/* One message found by spool_scan(). */
struct spool_entry {
	struct envelope env;		/* its envelope (id set) */
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
struct envelope *spool_msg_env(struct spool_msg *m);

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
    enum envelope_rcpt_state state, const char *reply, struct errinfo *ei);

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

/* Remove tmp/ files older than a day (left by killed writers). */
enum status spool_cleanup(struct spool *sp, time_t now, struct errinfo *ei);

#endif
