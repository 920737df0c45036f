/*
 * envelope.h: the envelope of a queued message (account, sender,
 * recipients and their states, DSN parameters, times) and queue IDs.
 * Pure: building, checking, serialising and parsing, no I/O.  The
 * format is described at the top of envelope.c; the queue that stores
 * envelopes is spool.h.
 */
#ifndef BEARMAIL_ENVELOPE_H
#define BEARMAIL_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"
#include "status.h"

/* Queue IDs: 10 characters, see envelope.c; the array size with its NUL. */
#define ENVELOPE_ID_LEN		10
#define ENVELOPE_ID_SIZE	(ENVELOPE_ID_LEN + 1)

#define ENVELOPE_HDR_MAX	(256 * 1024)	/* the envelope block */
#define ENVELOPE_MSG_MAX	((off_t)128 * 1024 * 1024) /* the message */
#define ENVELOPE_RCPT_MAX	1000		/* recipients per message */
#define ENVELOPE_ADDR_MAX	512		/* octets of one address */
#define ENVELOPE_TEXT_MAX	1024		/* a reply or an error */
#define ENVELOPE_ACCOUNT_MAX	128
#define ENVELOPE_ENVID_MAX	100		/* RFC 3461 */

/* Same bit values as SMTP_NOTIFY_* in smtp.h; 0: no NOTIFY given. */
#define ENVELOPE_NOTIFY_NEVER	0x1u
#define ENVELOPE_NOTIFY_SUCCESS	0x2u
#define ENVELOPE_NOTIFY_FAILURE	0x4u
#define ENVELOPE_NOTIFY_DELAY	0x8u

/* Same order as enum smtp_body and enum smtp_ret in smtp.h. */
enum envelope_body {
	ENVELOPE_BODY_NONE, ENVELOPE_BODY_7BIT, ENVELOPE_BODY_8BITMIME
};
enum envelope_ret { ENVELOPE_RET_NONE, ENVELOPE_RET_HDRS, ENVELOPE_RET_FULL };

enum envelope_rcpt_state {
	ENVELOPE_RCPT_PENDING,	/* still to be sent */
	ENVELOPE_RCPT_DONE,	/* the server took the message for it */
	ENVELOPE_RCPT_FAILED	/* given up: 5xx, or the message expired */
};

struct envelope_rcpt {
	char *addr;		/* without <>; owned */
	enum envelope_rcpt_state state;
	char *reply;		/* last reply or reason, or NULL; owned */
};

/*
 * The envelope of one message.  Every string is owned by the envelope
 * and freed by envelope_free().
 */
struct envelope {
	char id[ENVELOPE_ID_SIZE];	/* "" until enqueued */
	char *account;		/* account (config section) name */
	char *sender;		/* "" for the null sender <> */
	struct envelope_rcpt *rcpts;
	size_t nrcpts;
	enum envelope_body body;
	bool smtputf8;
	unsigned notify;	/* ENVELOPE_NOTIFY_* or 0 */
	enum envelope_ret ret;
	char *envid;		/* DSN ENVID (raw, not xtext), or NULL */
	uid_t uid;		/* submitter; (uid_t)-1 unknown */
	time_t created;		/* arrival */
	unsigned attempts;	/* delivery attempts so far */
	time_t next_try;	/* not before this time */
	char *last_error;	/* why the last attempt failed, or NULL */
	off_t size;		/* octets of the message */
};

/* The two serialisations of an envelope (see envelope.c). */
enum envelope_fmt {
	ENVELOPE_FMT_QUEUE,	/* q/ and failed/ files: everything */
	ENVELOPE_FMT_DROP	/* maildrop submissions: no id, uid, times,
				   attempts, errors; every recipient pending */
};

/* ------------------------------------------------------------------ */
/* Envelopes (pure, no I/O)                                             */

/* An empty envelope: no strings, uid -1, body NONE. */
void envelope_init(struct envelope *env);

/* Free every string and the recipients; env is left as by init. */
void envelope_free(struct envelope *env);

/*
 * Set account and sender ("" or "<>" for the null sender), copying.
 * ST_DATAERR when either is not acceptable in an envelope (control
 * characters, too long, empty account).
 */
enum status envelope_set(struct envelope *env, const char *account,
    const char *sender, struct errinfo *ei);

/* Set (copy) the DSN ENVID; NULL removes it.  ST_DATAERR if invalid. */
enum status envelope_set_envid(struct envelope *env, const char *envid,
    struct errinfo *ei);

/* Append a pending recipient (copied).  ST_DATAERR/ST_LIMIT if refused. */
enum status envelope_add_rcpt(struct envelope *env, const char *addr,
    struct errinfo *ei);

/*
 * Append the serialised envelope, ending with its empty line, to out.
 * ST_DATAERR if env holds something the format cannot carry.
 */
enum status envelope_format(const struct envelope *env, enum envelope_fmt fmt,
    struct buf *out, struct errinfo *ei);

/*
 * Parse an envelope from data (len bytes, which may go on into the
 * message).  Strict: a magic first line, known keys only, each once,
 * values checked, bounded by ENVELOPE_HDR_MAX.  On success *hdrlen is the
 * offset of the message (just past the empty line) and env (which must
 * be initialised; it is freed first) holds the envelope.  ST_DATAERR
 * with a reason naming the line otherwise; ST_LIMIT when no empty line
 * comes within ENVELOPE_HDR_MAX.  Safe on hostile input.
 */
enum status envelope_parse(const char *data, size_t len, enum envelope_fmt fmt,
    struct envelope *env, size_t *hdrlen, struct errinfo *ei);

/* Deep copy of src into dst (initialised or not; overwritten). */
enum status envelope_copy(struct envelope *dst, const struct envelope *src,
    struct errinfo *ei);

/* Recipients still pending, and recipients failed. */
size_t envelope_pending(const struct envelope *env);
size_t envelope_failed(const struct envelope *env);

/* A fresh queue ID for time t (seconds) and usec; random last char. */
void envelope_id_make(char id[ENVELOPE_ID_SIZE], time_t t, long usec);

/* True when s is a well-formed queue ID (the filename test). */
bool envelope_id_valid(const char *s);

#endif
