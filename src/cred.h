/*
 * cred.h: the secret an account authenticates with, for bearmail and
 * bearmail-fetch.
 *
 * For OAuth accounts the access token comes straight from the token
 * store while it is fresh (no lock, no network, no libcurl: the common
 * case costs one small file read).  When it is stale, or the mail server
 * has just refused it, bearmail-auth is run to refresh it under the
 * store's lock and hands the token back through a pipe, never through
 * argv or the environment.  For provider = password, password_command
 * is run and its first line is the password.
 */
#ifndef BEARMAIL_CRED_H
#define BEARMAIL_CRED_H

#include <stdbool.h>

#include "conf.h"
#include "status.h"

/* The environment variable naming another bearmail-auth (tests). */
#define CRED_AUTH_ENV	"BEARMAIL_AUTH"

/* Largest secret accepted from a child (Microsoft JWTs are a few KB). */
#define CRED_SECRET_MAX	(16 * 1024)

/*
 * Put into *secret (malloc'd, NUL-terminated; release with cred_free())
 * what acct authenticates with.  rejected says the server just refused
 * the token this returned before: the token is then refreshed even if it
 * looks fresh (bearmail-auth token --force), once; the caller retries
 * once, no more.
 *
 * bearmail-auth is BINDIR/bearmail-auth, or $BEARMAIL_AUTH (an absolute
 * path) when the process is not set-user-ID or set-group-ID.  It gets -C with
 * conf->explicit_path when there is one.  Its exit code maps back to a
 * status (75 ST_TEMPFAIL, 77 ST_AUTH, 78 ST_CONFIG, 76 ST_PROTO, 73
 * ST_CANTCREAT, 71 ST_SYS; a signal or any other code ST_TEMPFAIL) and
 * its one-line message becomes the error text, so "try later" and "log
 * in again" survive the trip.  Both children run in a process group of
 * their own and are bounded by a deadline derived from acct->timeout
 * (ST_TIMEOUT, and the whole group is killed).  A child that prints more
 * than CRED_SECRET_MAX bytes is ST_PROTO.
 */
enum status cred_get(const struct conf *conf, const struct account *acct,
    bool rejected, char **secret, struct errinfo *ei);

/* Wipe and free a secret from cred_get().  NULL is a no-op. */
void cred_free(char *secret);

/*
 * The status for a child's wait(2) status: 0 ST_OK, the sysexits codes
 * as above, a signal or anything else ST_TEMPFAIL (a crashed helper is
 * no reason to refuse the message: it is queued and tried again).
 */
enum status cred_exit_status(int wstatus);

#endif
