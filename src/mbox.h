/*
 * mbox.h: appending to an mbox file.
 *
 * The "mboxrd" variant (RFC 4155 describes the family): each message
 * starts with a "From SENDER DATE" line, any line of the message that
 * matches ">*From " gets one more '>' (so the quoting can be undone), and
 * the message is followed by an empty line.  SENDER is the address in
 * the message's Return-Path header when it has one in its first 8 KB,
 * else MAILER-DAEMON.
 *
 * Locking: an fcntl() write lock on the file and a dotlock (FILE.lock,
 * made with O_EXCL; one older than 5 minutes is taken as stale), both
 * held from begin to commit, so mutt, procmail and the MDAs that use
 * either kind of lock are kept out.  The message is appended with
 * write(2) and fsynced; a message that fails half way (or is aborted)
 * is cut off again with ftruncate() to the old length, so the mbox never
 * keeps half a message.
 */
#ifndef BEARMAIL_MBOX_H
#define BEARMAIL_MBOX_H

#include <stdbool.h>
#include <stddef.h>

#include "deliver.h"
#include "status.h"

extern const struct deliver_ops mbox_ops;

/* Prepare delivery to path (created 0600 on first use). */
enum status mbox_open(void **ctx, const char *path, int timeout,
    struct errinfo *ei);

/*
 * Streaming ">From " quoter.  Feed the message (LF line ends) in chunks
 * of any size; bytes come out in out, which must hold n + MBOX_QUOTE_SLACK
 * bytes.  Returns the bytes written.  mbox_quote_end() flushes what is
 * held back at the end (out: MBOX_QUOTE_SLACK bytes).
 */
#define MBOX_QUOTE_SLACK	16

struct mbox_quote {
	bool bol;		/* at the start of a line */
	size_t held;		/* bytes of a possible ">*From " prefix held */
	char hold[8];		/* the held bytes ('>' runs are counted) */
	size_t gts;		/* '>' bytes counted at this line's start */
};

void mbox_quote_init(struct mbox_quote *q);
size_t mbox_quote(struct mbox_quote *q, const char *in, size_t n, char *out,
    size_t outsz);
size_t mbox_quote_end(struct mbox_quote *q, char *out, size_t outsz);

#endif
