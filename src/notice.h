/*
 * notice.h: failure notices (RFC 3464 delivery status notifications)
 * about the failed recipients of a queued message.  Pure: composing the
 * message and its envelope; the runner (submit.c) enqueues it.
 */
#ifndef BEARMAIL_NOTICE_H
#define BEARMAIL_NOTICE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "envelope.h"
#include "status.h"

struct notice_opts {
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
enum status notice_compose(const struct envelope *orig, const char *msg,
    size_t len, bool complete, const struct notice_opts *o,
    struct envelope *nenv, struct buf *out, bool *none, struct errinfo *ei);

#endif
