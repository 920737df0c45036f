/*
 * smtpd.h: the server side of SMTP for `bearmail -bs`, on a pair of
 * descriptors (standard input and output).
 *
 *   RFC 5321 (the subset a local submission pipe needs: EHLO/HELO, MAIL,
 *   RCPT, DATA, RSET, NOOP, VRFY, HELP, QUIT), RFC 1870 (SIZE offered),
 *   RFC 6152 (8BITMIME offered), RFC 2920 (PIPELINING: commands are read
 *   one at a time, replies written in order), RFC 2034/3463 codes.
 *
 * Each message is received into an unlinked temporary file (dot-unstuffed,
 * LF line ends) and handed to the caller's deliver function before the
 * reply to the final dot, so the reply says how the submission went: 250
 * when it was delivered or safely queued, 4xx when it may pass later, 5xx
 * when it never will.
 */
#ifndef BEARMAIL_SMTPD_H
#define BEARMAIL_SMTPD_H

#include <stddef.h>
#include <sys/types.h>

#include "status.h"

#define SMTPD_LINE_MAX	4096		/* longest command line */
#define SMTPD_ID_MAX	32		/* room for an ID in the 250 reply */

/*
 * Submit one received message: sender as given in MAIL FROM (without
 * <>, "" for the null sender), the RCPT TO addresses, and fd, the
 * message at offset 0.  On success, id (SMTPD_ID_MAX bytes) gets the
 * queue ID for the reply.  The failure's status picks the reply code.
 */
typedef enum status (*smtpd_deliver_fn)(void *arg, const char *sender,
    const char *const *rcpts, size_t nrcpts, int fd, char *id,
    struct errinfo *ei);

struct smtpd_opts {
	int in, out;			/* the dialogue's descriptors */
	const char *host;		/* our name in the greeting; NULL:
					   "localhost" */
	off_t size_max;			/* largest message taken */
	size_t rcpts_max;		/* recipients per message */
	smtpd_deliver_fn deliver;
	void *arg;			/* passed to deliver */
};

/*
 * Run the dialogue until QUIT or end of input.  A transaction cut by end
 * of input inside DATA is not submitted.  ST_OK at the end of the
 * dialogue; ST_SYS when the reply side cannot be written.
 */
enum status smtpd_run(const struct smtpd_opts *o, struct errinfo *ei);

/*
 * The reply code and enhanced code ("550 5.1.1") for a failed
 * submission's status: 4xx when it may pass later, else 5xx.
 */
const char *smtpd_reply_code(enum status st);

#endif
