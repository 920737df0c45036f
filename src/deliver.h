/*
 * deliver.h: where bearmail-fetch puts a message, and the one interface
 * its three targets share.
 *
 * A target receives one message at a time as a stream:
 *
 *	deliver_begin(d, ei);
 *	deliver_write(d, chunk, n, ei);    as often as needed
 *	deliver_commit(d, ei);             durable on ST_OK
 *   or deliver_abort(d);                  nothing left behind
 *
 * The protocol clients hand over the message as it is on the wire
 * (CRLF line ends, already dot-unstuffed for POP3).  deliver_write()
 * turns each CRLF into LF, as local mailboxes and MDAs expect; a bare CR
 * and NUL bytes are kept as they are.  The message is never held in
 * memory as a whole: each chunk goes straight to the target.
 *
 * deliver_commit() returns ST_OK only once the message is durable: the
 * Maildir file and its directory are fsynced, the mbox is fsynced, or
 * the MDA exited 0.  Only then may the caller record the message as
 * delivered and mark or delete it on the server.
 *
 * Statuses: ST_CANTCREAT when a file or directory cannot be written or
 * the MDA failed for good (any exit but 0 and 75), ST_TEMPFAIL when the
 * MDA exited 75 (EX_TEMPFAIL: "try later"), ST_TIMEOUT when the MDA ran
 * past its deadline (it is killed), ST_CONFIG for a target that cannot
 * be set up at all.
 */
#ifndef BEARMAIL_DELIVER_H
#define BEARMAIL_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"		/* enum deliver_kind */
#include "status.h"

/* What a target implements; ctx is the target's own state. */
struct deliver_ops {
	const char *name;	/* "maildir", "mbox", "mda" */
	enum status (*begin)(void *ctx, struct errinfo *ei);
	enum status (*write)(void *ctx, const void *p, size_t n,
	    struct errinfo *ei);
	enum status (*commit)(void *ctx, struct errinfo *ei);
	void (*abort)(void *ctx);
	void (*free)(void *ctx);
};

struct deliver {
	const struct deliver_ops *ops;
	void *ctx;
	bool open;		/* between begin and commit/abort */
	bool cr;		/* a CR is pending (CRLF -> LF) */
	uint64_t bytes;		/* bytes of the current message, as written */
};

/*
 * Set up a target: DELIVER_MAILDIR with a directory (created with cur,
 * new and tmp if missing), DELIVER_MBOX with a file (created 0600 if
 * missing), DELIVER_MDA with a shell command.  timeout bounds each MDA
 * run (seconds).  *out is freed with deliver_free().
 */
enum status deliver_open(struct deliver **out, enum deliver_kind kind,
    const char *arg, int timeout, struct errinfo *ei);

/* Start a message.  ST_USAGE if one is already open. */
enum status deliver_begin(struct deliver *d, struct errinfo *ei);

/* Add n bytes of the message (CRLF becomes LF). */
enum status deliver_write(struct deliver *d, const void *p, size_t n,
    struct errinfo *ei);

/* Finish the message and make it durable.  On failure it is aborted. */
enum status deliver_commit(struct deliver *d, struct errinfo *ei);

/* Throw the open message away (no-op if none is open). */
void deliver_abort(struct deliver *d);

/* Abort any open message and free the target.  NULL is a no-op. */
void deliver_free(struct deliver *d);

/* The target's name, for log lines. */
const char *deliver_name(const struct deliver *d);

#endif
