/*
 * notice.c: failure notices (delivery status notifications).
 *
 * RFC 3464 (message/delivery-status), RFC 6522 (multipart/report,
 * formerly RFC 3462), RFC 3463 (enhanced status codes), RFC 5322 (the
 * notice's header section), RFC 6533 (SMTPUTF8 addresses in a notice).
 *
 * NOTICES.  notice_compose() composes an RFC 3464 report (multipart/report
 * with text/plain, message/delivery-status and the original's headers,
 * or all of it with RET=FULL) as a pure function; the runner enqueues it
 * with the null sender to bounce_to or the sender, never about a message
 * whose sender is <>.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "msg.h"
#include "notice.h"

/* A Reporting-MTA domain: 1 to 255 printable octets, no space. */
static bool
domain_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 255)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static void
age_text(time_t age, char *out, size_t outsz)
{
	long long v = (long long)age;
	const char *unit = "second";

	if (v > 0 && v % 86400 == 0) {
		v /= 86400;
		unit = "day";
	} else if (v > 0 && v % 3600 == 0) {
		v /= 3600;
		unit = "hour";
	} else if (v > 0 && v % 60 == 0) {
		v /= 60;
		unit = "minute";
	}
	snprintf(out, outsz, "%lld %s%s", v, unit, v == 1 ? "" : "s");
}

static bool
has_8bit(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

/* A refusal for good: an SMTP reply "5xy ...". */
static bool
reply_permanent(const char *r)
{
	return r != NULL && r[0] == '5' && r[1] >= '0' && r[1] <= '9' &&
	    r[2] >= '0' && r[2] <= '9' && (r[3] == ' ' || r[3] == '\0');
}

static bool
reply_is_smtp(const char *r)
{
	return r != NULL && r[0] >= '2' && r[0] <= '5' && r[1] >= '0' &&
	    r[1] <= '9' && r[2] >= '0' && r[2] <= '9' &&
	    (r[3] == ' ' || r[3] == '\0');
}

/* RFC 3463 status for a failed recipient. */
static void
rcpt_status(const char *reply, char out[16])
{
	const char *p;
	size_t n = 0;

	if (!reply_permanent(reply)) {
		/* Given up on while it was only ever deferred. */
		snprintf(out, 16, "4.4.7");
		return;
	}
	p = reply[3] == ' ' ? reply + 4 : reply + 3;
	/* "5.d{1,3}.d{1,3}" after the code, as RFC 2034 puts it. */
	if (p[0] == '5' && p[1] == '.') {
		size_t i = 2, a = 0, b = 0;

		while (p[i] >= '0' && p[i] <= '9' && a < 4)
			i++, a++;
		if (a >= 1 && a <= 3 && p[i] == '.') {
			i++;
			while (p[i] >= '0' && p[i] <= '9' && b < 4)
				i++, b++;
			if (b >= 1 && b <= 3 && (p[i] == ' ' || p[i] == '\0'))
				n = i;
		}
	}
	if (n > 0 && n < 16)
		snprintf(out, 16, "%.*s", (int)n, p);
	else
		snprintf(out, 16, "5.0.0");
}

enum status
notice_compose(const struct envelope *orig, const char *msg, size_t len,
    bool complete, const struct notice_opts *o, struct envelope *nenv,
    struct buf *out, bool *none, struct errinfo *ei)
{
	const char *to, *domain, *part, *why, *ctype;
	char bnd[160], status[16], age[64];
	size_t partlen, i, k;
	const char *e;
	struct buf b;
	enum status st;
	bool full, expired = false, eight;

	*none = true;
	envelope_free(nenv);
	to = o->to != NULL && *o->to != '\0' ? o->to : orig->sender;
	if (envelope_failed(orig) == 0 || orig->sender == NULL ||
	    *orig->sender == '\0' || to == NULL || *to == '\0' ||
	    (orig->notify != 0 && !(orig->notify & ENVELOPE_NOTIFY_FAILURE)))
		return ST_OK;
	domain = o->domain != NULL && domain_ok(o->domain) ? o->domain :
	    "localhost";

	/* What goes back: the header section, or all with RET=FULL. */
	full = orig->ret == ENVELOPE_RET_FULL && complete;
	if (msg == NULL)
		len = 0;
	part = msg != NULL ? msg : "";
	partlen = len;
	if (!full) {
		if ((e = memmem(part, partlen, "\r\n\r\n", 4)) != NULL)
			partlen = (size_t)(e - part) + 2;
		else if (!complete) {
			/* Cut at the last whole line. */
			while (partlen > 0 && !(partlen >= 2 &&
			    part[partlen - 2] == '\r' &&
			    part[partlen - 1] == '\n'))
				partlen--;
		}
	}
	snprintf(bnd, sizeof(bnd), "%s.%lld/%s", orig->id,
	    (long long)o->now, domain);
	for (k = 1; memmem(part, partlen, bnd, strlen(bnd)) != NULL; k++)
		snprintf(bnd, sizeof(bnd), "%s.%lld.%zu/%s", orig->id,
		    (long long)o->now, k, domain);
	for (i = 0; i < orig->nrcpts; i++)
		if (orig->rcpts[i].state == ENVELOPE_RCPT_FAILED &&
		    !reply_permanent(orig->rcpts[i].reply))
			expired = true;
	age_text(o->max_age, age, sizeof(age));
	ctype = full ? "message/rfc822" : "text/rfc822-headers";
	/* 8-bit anywhere: say so in the header and in BODY=. */
	eight = has_8bit(part, partlen) || has_8bit(to, strlen(to)) ||
	    (orig->last_error != NULL &&
	    has_8bit(orig->last_error, strlen(orig->last_error)));
	for (i = 0; i < orig->nrcpts; i++)
		if (orig->rcpts[i].state == ENVELOPE_RCPT_FAILED &&
		    (has_8bit(orig->rcpts[i].addr,
		    strlen(orig->rcpts[i].addr)) ||
		    (orig->rcpts[i].reply != NULL &&
		    has_8bit(orig->rcpts[i].reply,
		    strlen(orig->rcpts[i].reply)))))
			eight = true;

	buf_init(&b, (size_t)ENVELOPE_MSG_MAX);
	if ((st = buf_printf(&b, ei,
	    "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n"
	    "To: <%s>\r\n"
	    "Subject: Undelivered Mail Returned to Sender\r\n"
	    "Date: ", domain, to)) ||
	    (st = msg_date(&b, o->now, ei)) ||
	    (st = buf_printf(&b, ei, "\r\n"
	    "Message-ID: <notice.%s.%lld@%s>\r\n"
	    "Auto-Submitted: auto-replied\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	    "\tboundary=\"%s\"\r\n"
	    "%s"
	    "\r\n"
	    "This is a MIME-encapsulated message.\r\n"
	    "\r\n"
	    "--%s\r\n"
	    "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "\r\n"
	    "This is bearmail at %s.\r\n"
	    "\r\n"
	    "Your message could not be delivered to one or more of its\r\n"
	    "recipients, listed below with the reason.\r\n",
	    orig->id, (long long)o->now, domain, bnd,
	    eight ? "Content-Transfer-Encoding: 8bit\r\n" : "", bnd, domain)))
		goto fail;
	if (expired && (st = buf_printf(&b, ei, "It stayed in the queue "
	    "for %s without being delivered.\r\n", age)))
		goto fail;
	if ((st = buf_adds(&b, "\r\n", ei)))
		goto fail;
	for (i = 0; i < orig->nrcpts; i++) {
		const struct envelope_rcpt *r = &orig->rcpts[i];

		if (r->state != ENVELOPE_RCPT_FAILED)
			continue;
		why = r->reply != NULL ? r->reply : orig->last_error;
		if ((st = buf_printf(&b, ei, "<%s>: %s\r\n", r->addr,
		    why != NULL ? why : "no reason recorded")))
			goto fail;
	}
	if ((st = buf_printf(&b, ei, "\r\n%s\r\n\r\n--%s\r\n"
	    "Content-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n"
	    "\r\n"
	    "Reporting-MTA: dns; %s\r\n"
	    "X-Bearmail-Queue-ID: %s\r\n",
	    full ? "Your message follows as the last part of this report." :
	    "The header of your message follows as the last part of this "
	    "report.", bnd, domain, orig->id)))
		goto fail;
	if (orig->envid != NULL &&
	    (st = buf_printf(&b, ei, "Original-Envelope-Id: %s\r\n",
	    orig->envid)))
		goto fail;
	if ((st = buf_adds(&b, "Arrival-Date: ", ei)) ||
	    (st = msg_date(&b, orig->created, ei)) ||
	    (st = buf_adds(&b, "\r\n", ei)))
		goto fail;
	for (i = 0; i < orig->nrcpts; i++) {
		const struct envelope_rcpt *r = &orig->rcpts[i];

		if (r->state != ENVELOPE_RCPT_FAILED)
			continue;
		rcpt_status(r->reply, status);
		if ((st = buf_printf(&b, ei, "\r\n"
		    "Final-Recipient: %s; %s\r\n"
		    "Action: failed\r\n"
		    "Status: %s\r\n",
		    has_8bit(r->addr, strlen(r->addr)) ? "utf-8" : "rfc822",
		    r->addr, status)))
			goto fail;
		why = r->reply != NULL ? r->reply : orig->last_error;
		if (why != NULL && (st = buf_printf(&b, ei,
		    "Diagnostic-Code: %s; %s\r\n",
		    reply_is_smtp(why) ? "smtp" : "X-bearmail", why)))
			goto fail;
	}
	if ((st = buf_printf(&b, ei, "\r\n--%s\r\n"
	    "Content-Description: %s\r\n"
	    "Content-Type: %s\r\n"
	    "\r\n", bnd, full ? "Undelivered Message" :
	    "Undelivered Message Headers", ctype)) ||
	    (st = buf_add(&b, part, partlen, ei)))
		goto fail;
	if (partlen > 0 && part[partlen - 1] != '\n' &&
	    (st = buf_adds(&b, "\r\n", ei)))
		goto fail;
	if ((st = buf_printf(&b, ei, "\r\n--%s--\r\n", bnd)))
		goto fail;

	if ((st = envelope_set(nenv, orig->account, "", ei)) ||
	    (st = envelope_add_rcpt(nenv, to, ei)))
		goto fail;
	nenv->body = eight ? ENVELOPE_BODY_8BITMIME : ENVELOPE_BODY_7BIT;
	nenv->smtputf8 = orig->smtputf8 || has_8bit(to, strlen(to));
	if ((st = buf_add(out, b.data, b.len, ei)))
		goto fail;
	nenv->size = (off_t)b.len;
	*none = false;
	buf_free(&b);
	return ST_OK;
fail:
	buf_free(&b);
	envelope_free(nenv);
	return st;
}
