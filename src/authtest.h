/*
 * authtest.h: `bearmail-auth test`, a check of one account from end to
 * end: connect to its servers, show how TLS went (protocol, cipher, the
 * certificate's subject, issuer, expiry and SHA-256 fingerprint) and
 * what each server offers, then log in for real.
 *
 * Part of the bearmail-auth program, not of the core: it only drives the
 * protocol clients (smtp.h, imap.h, pop3.h) and prints what they learnt.  Credentials
 * come through a callback, so this file never touches the token store
 * and never sees a secret it does not hand straight to a client.
 */
#ifndef BEARMAIL_AUTHTEST_H
#define BEARMAIL_AUTHTEST_H

#include <stdbool.h>

#include "conf.h"
#include "status.h"

/* Which servers to test (authtest_run's which). */
#define AUTHTEST_SMTP	0x1u
#define AUTHTEST_IMAP	0x2u
#define AUTHTEST_POP	0x4u

/*
 * Put the account's secret (OAuth access token, or password) in
 * *secret: malloc'd, NUL-terminated; authtest wipes and frees it.
 * refresh is true when the server has just refused the previous token:
 * get a new one even if the stored one looks valid.  It is asked for at
 * most once per server with refresh set.
 */
typedef enum status (*authtest_secret_fn)(void *arg, bool refresh,
    char **secret, struct errinfo *ei);

/*
 * Test acct's servers named in which (AUTHTEST_* bits, tested in the
 * order SMTP, IMAP, POP3; 0 means the default: SMTP, plus IMAP when the
 * account has a deliver target, i.e. is set up for bearmail-fetch,
 * whose default protocol IMAP is), printing a report on standard output and each
 * failure, as one line prefixed with prog, on standard error.  A
 * server's test stops at its first failure; the next server is still
 * tested.  Returns ST_OK when every server let us in, else the first
 * failure's status, with ei->st set and ei->msg empty (the text was
 * printed already).  With -v (log_set_verbose) the protocol transcript
 * goes to standard error, credentials redacted.
 */
enum status authtest_run(const char *prog, const struct account *acct,
    unsigned which, authtest_secret_fn secret_fn, void *arg,
    struct errinfo *ei);

#endif
