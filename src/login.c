/*
 * login.c: one login with one forced token refresh (see login.h).
 *
 * RFC 4954 section 4 (SMTP), RFC 3501 section 6.2.2 (IMAP) and RFC 5034
 * section 4 (POP3): after a failed AUTH the client may try again on the
 * same connection, which is why the fresh token goes on the session
 * that refused the stale one while it lasts.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "login.h"

static void
secret_free(char **secret)
{
	if (*secret == NULL)
		return;
	st_wipe(*secret, strlen(*secret));
	free(*secret);
	*secret = NULL;
}

enum status
login_run(const struct login *l, void **sess, struct login_info *info,
    struct errinfo *ei)
{
	static const char note[] = "token refused: refreshing it once";
	struct login_info dummy;
	struct errinfo e;
	char *secret = NULL;
	bool rejected = false;
	enum status st;

	if (info == NULL)
		info = &dummy;
	memset(info, 0, sizeof(*info));
	st_clear(&info->refusal);
	info->step = LOGIN_CRED;
	if ((st = l->cred(l->arg, false, &secret, ei)) != ST_OK)
		goto out;
	st_clear(&e);
	st = l->auth(*sess, l->mech, l->user, secret, &rejected, &e);
	secret_free(&secret);
	if (st == ST_OK)
		goto out;
	if (st != ST_AUTH || !rejected) {
		info->step = LOGIN_AUTH;
		st = st_pass(ei, &e);
		goto out;
	}

	info->refreshed = true;
	info->refusal = e;
	if (l->refused != NULL)
		l->refused(l->arg, &info->refusal);
	log_wire(LOG_NOTE, note, sizeof(note) - 1, false);
	info->step = LOGIN_REFRESH;
	if ((st = l->cred(l->arg, true, &secret, ei)) != ST_OK)
		goto out;
	st_clear(&e);
	if (!l->usable(*sess)) {
		info->step = LOGIN_REOPEN;
		if ((st = l->reopen(l->arg, sess, &e)) != ST_OK)
			goto fail;
	}
	info->step = LOGIN_RETRY;
	st = l->auth(*sess, l->mech, l->user, secret, NULL, &e);
	if ((st == ST_NET || st == ST_TEMPFAIL) && !l->usable(*sess)) {
		/* The server hung up after the refusal: a new session. */
		st_clear(&e);
		info->step = LOGIN_REOPEN;
		if ((st = l->reopen(l->arg, sess, &e)) != ST_OK)
			goto fail;
		info->step = LOGIN_RETRY;
		st = l->auth(*sess, l->mech, l->user, secret, NULL, &e);
	}
fail:
	if (st != ST_OK)
		st = st_pass(ei, &e);
out:
	secret_free(&secret);
	return st;
}
