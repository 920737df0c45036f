/*
 * priv.h: the privilege model of a system install, as the programs apply
 * it.
 *
 * Only bearmail-drop is ever installed with privilege (set-group-ID
 * bearmail-drop, see cmd_drop.c).  bearmail, bearmail-auth and
 * bearmail-fetch run as whoever started them: the delivery side as the
 * `bearmail` user that owns the tokens and the queue, a local user's
 * submission as that user, who cannot read either.  These helpers make
 * that hold even when an administrator installs a program set-ID by
 * mistake, and keep secrets out of core files.
 */
#ifndef BEARMAIL_PRIV_H
#define BEARMAIL_PRIV_H

#include <stdbool.h>

#include "status.h"

/*
 * No core dumps from here on: RLIMIT_CORE 0 (hard and soft) and not
 * dumpable (so no other process of the same user can ptrace us or read
 * /proc/PID/mem either).  Call first thing in a program that will hold
 * a token, a refresh token or a password.  Failures are ignored: there
 * is nothing better to do, and the limits only ever tighten.
 */
void priv_no_core(void);

/*
 * True when the kernel started us with changed credentials (set-user-ID
 * or set-group-ID, or file capabilities): AT_SECURE.  The environment is
 * then the caller's and must not be trusted for paths or programs.
 */
bool priv_is_setid(void);

/*
 * Give up set-ID privilege for good: real IDs become effective and
 * saved too, and it is checked that they cannot be regained.  ST_SYS
 * if that fails (the program must exit).  A no-op when the real and
 * effective IDs are already the same.
 */
enum status priv_drop(struct errinfo *ei);

/*
 * Make sure descriptors 0, 1 and 2 are open (on /dev/null if not), so a
 * file we open later never lands on one of them and receives a stray
 * write meant for standard output or error.  false if that fails.
 */
bool priv_std_fds(void);

#endif
