/*
 * msg.h: the message rewrite of the sendmail interface, as a stream.
 *
 *   RFC 5322 (header fields, line length: 998 octets plus CRLF)
 *   RFC 2045 section 6.7 (quoted-printable), RFC 2047 (encoded words for
 *            a display name bearmail adds)
 *   RFC 5321 section 4.5.3.1.6 (text line length)
 *
 * msg_rewrite() reads one message from a file descriptor (standard input,
 * or the DATA of a -bs dialogue), with LF, CRLF or mixed line endings, and
 * writes the message as it will be submitted to another descriptor: CRLF
 * line endings, NOT dot-stuffed (the SMTP client stuffs), no line longer
 * than 998 octets.  On the way it
 *   - takes any run of CRs before an LF as one line end, turns a bare
 *     CR (no LF after it) into a space in the header section and into a
 *     line end in the body, so no bare CR is ever written;
 *   - drops a leading mbox "From " line;
 *   - ends input at a line holding a single "." unless told otherwise (-i);
 *   - removes Bcc and Resent-Bcc, after reading their recipients;
 *   - adds Date, Message-ID and From where missing;
 *   - rewrites From addresses per rewrite_from (display names kept);
 *   - collects the recipients of To, Cc and Bcc, or of the first Resent-*
 *     block when it names any (-t);
 *   - folds header lines longer than 998 octets at whitespace (or, with
 *     none to fold at, breaks them with CRLF SP);
 *   - handles body lines longer than 998 octets: a single-part text body
 *     without a transfer encoding (or 7bit/8bit) is re-encoded as
 *     quoted-printable; any other body gets the long line broken with CRLF
 *     every 998 octets, as Postfix does.
 * Every other header and body byte passes through unchanged, raw 8-bit
 * included.  Memory use is bounded by the header section maximum and a
 * fixed read buffer whatever the message size.
 */
#ifndef BEARMAIL_MSG_H
#define BEARMAIL_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "conf.h"
#include "rfc5322.h"
#include "status.h"

#define MSG_LINE_MAX	998		/* octets, without CRLF */
#define MSG_HEADER_MAX	(1024 * 1024)	/* header section bound */
/* The message bound, after the rewrite. */
#define MSG_SIZE_MAX	((off_t)128 * 1024 * 1024)

struct msg_opts {
	bool dot_ends;		/* no -i: a line "." ends the input */
	bool want_rcpts;	/* -t: collect recipients from the header */
	const char *from_addr;	/* address for an added or rewritten From:
				   the account's `from` (or the envelope
				   sender); required */
	const char *from_name;	/* display name of an added From (-F, or
				   the user's full name), or NULL */
	const char *domain;	/* right-hand side of an added Message-ID;
				   NULL: "localhost" */
	const char *const *local_names;	/* NULL-terminated names of this
				   host, counted as "no real domain" by
				   rewrite_from auto; may be NULL */
	enum rewrite_from rewrite;
	size_t max_header;	/* header section bound; 0: MSG_HEADER_MAX */
	off_t max_size;		/* output bound; 0: MSG_SIZE_MAX */
	const char *tmpdir;	/* scratch file for a re-encode; NULL:
				   $TMPDIR, else /tmp */
	time_t now;		/* for Date; 0: time(NULL) */
};

struct msg_info {
	off_t size;		/* octets written, CRLFs counted (SIZE=) */
	bool hdr_8bit;		/* a header holds a byte >= 0x80 */
	bool body_8bit;		/* the body as written holds one */
	bool addr_utf8;		/* a From/To/Cc/Bcc address is UTF-8 */
	bool from_added, from_rewritten, date_added, msgid_added;
	bool qp_encoded;	/* the body was re-encoded for a long line */
	size_t lines_broken;	/* body lines broken at 998 octets */
	size_t headers_folded;	/* header lines folded */
	bool dot_seen;		/* input ended at a "." line */
	char *message_id;	/* Message-ID value as sent (ours or the
				   message's), or NULL; owned */
	struct rfc5322_list rcpts;	/* with want_rcpts: the header
				   recipients, in order, not deduplicated;
				   owned */
};

/*
 * Read the message from in until EOF (or a "." line) and write it to out,
 * which must be an empty regular file open for reading and writing (an
 * unlinked temporary file or a spool file): a rare re-encode reads back
 * what was written.  info must be zeroed; on success it describes what
 * was written, and the caller frees it with msg_info_free() in every
 * case.  Fails with ST_LIMIT when the header section or the message
 * exceeds its bound, ST_DATAERR for a recipient header that cannot be
 * parsed (with -t), ST_SYS on read/write/allocation errors.  On failure
 * the contents of out are unspecified.
 */
enum status msg_rewrite(int in, int out, const struct msg_opts *o,
    struct msg_info *info, struct errinfo *ei);

/* Free what msg_rewrite() stored in info; info is zeroed.  NULL is fine. */
void msg_info_free(struct msg_info *info);

/*
 * Whether rewrite_from replaces addr (a bare address, "" for <>):
 * always: yes, except the null sender; never: no; auto: when addr has no
 * domain, or its domain is "localhost" or one of local_names (ignoring
 * case).  Used for the From header and the envelope sender alike.
 */
bool msg_should_rewrite(enum rewrite_from how, const char *addr,
    const char *const *local_names);

/*
 * Append an RFC 5322 date-time for t in local time ("Thu, 26 Nov 2026
 * 11:13:58 +0000") to out.  Day and month names never depend on locale.
 */
enum status msg_date(struct buf *out, time_t t, struct errinfo *ei);

#endif
