/*
 * Unit tests: login_run(), the one login with one forced refresh, driven
 * through a scripted fake protocol (no network).  Each case states what
 * each AUTH answers and checks which tokens went where, how often the
 * credential getter and reopen were called, and what the caller is told.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "login.h"
#include "status.h"
#include "tap.h"

#define AUTHS_MAX	4

/* One AUTH's scripted answer. */
struct answer {
	enum status st;
	bool rejected;		/* the token itself refused */
	bool hangup;		/* the session is unusable afterwards */
};

struct fake_sess {
	int id;
	bool usable;
};

struct script {
	struct answer answers[AUTHS_MAX];
	size_t nauth;
	char secrets[AUTHS_MAX][16];	/* secret given to each AUTH */
	int sess_ids[AUTHS_MAX];	/* session each AUTH went on */
	enum status cred_st[2];		/* first and refreshed getter */
	int ncred, nrefresh, nreopen, nrefused;
	enum status reopen_st;
	struct fake_sess sessions[4];
	int nsess;
	char refusal[64];
};

/* The case being run (AUTH gets only the session). */
static struct script *cur;

static enum status
f_auth(void *s, enum auth_mech mech, const char *user, const char *secret,
    bool *rejected, struct errinfo *ei)
{
	struct fake_sess *fs = s;
	struct script *sc = cur;
	struct answer *a;

	(void)mech;
	(void)user;
	if (sc->nauth == AUTHS_MAX)
		return st_error(ei, ST_PROTO, "too many AUTHs");
	a = &sc->answers[sc->nauth];
	snprintf(sc->secrets[sc->nauth], sizeof(sc->secrets[0]), "%s",
	    secret);
	sc->sess_ids[sc->nauth] = fs->id;
	sc->nauth++;
	if (rejected != NULL)
		*rejected = a->rejected;
	if (a->hangup)
		fs->usable = false;
	if (a->st != ST_OK)
		return st_error(ei, a->st, "auth %zu refused", sc->nauth);
	return ST_OK;
}

static bool
f_usable(void *s)
{
	return ((struct fake_sess *)s)->usable;
}

static enum status
f_reopen(void *arg, void **sess, struct errinfo *ei)
{
	struct script *sc = arg;

	sc->nreopen++;
	*sess = NULL;
	if (sc->reopen_st != ST_OK)
		return st_error(ei, sc->reopen_st, "reopen failed");
	sc->sessions[sc->nsess].id = sc->nsess;
	sc->sessions[sc->nsess].usable = true;
	*sess = &sc->sessions[sc->nsess++];
	return ST_OK;
}

static enum status
f_cred(void *arg, bool refresh, char **secret, struct errinfo *ei)
{
	struct script *sc = arg;
	enum status st = sc->cred_st[refresh ? 1 : 0];

	sc->ncred++;
	if (refresh)
		sc->nrefresh++;
	if (st != ST_OK)
		return st_error(ei, st, "no %s token", refresh ? "fresh" :
		    "stored");
	*secret = strdup(refresh ? "fresh" : "stale");
	return *secret != NULL ? ST_OK : ST_SYS;
}

static void
f_refused(void *arg, const struct errinfo *refusal)
{
	struct script *sc = arg;

	sc->nrefused++;
	snprintf(sc->refusal, sizeof(sc->refusal), "%s", refusal->msg);
}

static enum status
run(struct script *sc, struct login_info *info, struct errinfo *ei,
    void **sess)
{
	struct login l;

	memset(&l, 0, sizeof(l));
	l.mech = MECH_XOAUTH2;
	l.user = "alice@example.com";
	l.auth = f_auth;
	l.usable = f_usable;
	l.reopen = f_reopen;
	l.cred = f_cred;
	l.refused = f_refused;
	l.arg = sc;
	cur = sc;
	sc->sessions[0].id = 0;
	sc->sessions[0].usable = true;
	sc->nsess = 1;
	*sess = &sc->sessions[0];
	st_clear(ei);
	return login_run(&l, sess, info, ei);
}

int
main(void)
{
	struct login_info info;
	struct script sc;
	struct errinfo ei;
	void *sess;

	/* The stored token works: one getter call, one AUTH. */
	memset(&sc, 0, sizeof(sc));
	is_int(run(&sc, &info, &ei, &sess), ST_OK, "accepted at once");
	is_int(sc.nauth, 1, "one AUTH");
	is_int(sc.ncred, 1, "one credential");
	ok(!info.refreshed && sc.nrefused == 0, "no refresh");

	/* Refused token: fresh one on the same session. */
	memset(&sc, 0, sizeof(sc));
	sc.answers[0] = (struct answer){ ST_AUTH, true, false };
	is_int(run(&sc, &info, &ei, &sess), ST_OK, "fresh token accepted");
	is_int(sc.nauth, 2, "two AUTHs");
	is_str(sc.secrets[0], "stale", "first AUTH: stored token");
	is_str(sc.secrets[1], "fresh", "second AUTH: fresh token");
	is_int(sc.sess_ids[1], 0, "second AUTH on the same session");
	is_int(sc.nrefresh, 1, "refreshed once");
	is_int(sc.nreopen, 0, "no new session");
	ok(info.refreshed && sc.nrefused == 1, "caller told of the refusal");
	is_str(sc.refusal, "auth 1 refused", "with the server's words");

	/* Refused, and the server hung up on the refusal: a new session. */
	memset(&sc, 0, sizeof(sc));
	sc.answers[0] = (struct answer){ ST_AUTH, true, true };
	is_int(run(&sc, &info, &ei, &sess), ST_OK, "ok after a reopen");
	is_int(sc.nreopen, 1, "one new session");
	is_int(sc.sess_ids[1], 1, "fresh token on the new session");
	ok(sess == &sc.sessions[1], "caller gets the new session");

	/* Refused, then the second AUTH is cut off: one more session. */
	memset(&sc, 0, sizeof(sc));
	sc.answers[0] = (struct answer){ ST_AUTH, true, false };
	sc.answers[1] = (struct answer){ ST_NET, false, true };
	is_int(run(&sc, &info, &ei, &sess), ST_OK, "ok on a third try");
	is_int(sc.nauth, 3, "three AUTHs");
	is_str(sc.secrets[2], "fresh", "the same fresh token");
	is_int(sc.nrefresh, 1, "still one refresh");
	is_int(sc.sess_ids[2], 1, "on a new session");

	/* Refused twice: refused, no third token. */
	memset(&sc, 0, sizeof(sc));
	sc.answers[0] = (struct answer){ ST_AUTH, true, false };
	sc.answers[1] = (struct answer){ ST_AUTH, true, false };
	is_int(run(&sc, &info, &ei, &sess), ST_AUTH, "refused twice");
	is_int(sc.nauth, 2, "two AUTHs only");
	is_int(sc.nrefresh, 1, "one refresh only");
	is_int(info.step, LOGIN_RETRY, "failed at the retry");
	is_str(ei.msg, "auth 2 refused", "second refusal reported");

	/* A refusal that is not about the token: no refresh. */
	memset(&sc, 0, sizeof(sc));
	sc.answers[0] = (struct answer){ ST_AUTH, false, false };
	is_int(run(&sc, &info, &ei, &sess), ST_AUTH, "password refused");
	is_int(sc.nrefresh, 0, "no refresh for it");
	is_int(info.step, LOGIN_AUTH, "failed at the first AUTH");
	ok(!info.refreshed, "not refreshed");

	/* Temporary failure (454): reported as it is, no refresh. */
	memset(&sc, 0, sizeof(sc));
	sc.answers[0] = (struct answer){ ST_TEMPFAIL, false, false };
	is_int(run(&sc, &info, &ei, &sess), ST_TEMPFAIL, "4xx stays 4xx");
	is_int(sc.nauth, 1, "one AUTH");

	/* No stored credential: no AUTH at all. */
	memset(&sc, 0, sizeof(sc));
	sc.cred_st[0] = ST_AUTH;
	is_int(run(&sc, &info, &ei, &sess), ST_AUTH, "no credential");
	is_int(sc.nauth, 0, "nothing sent");
	is_int(info.step, LOGIN_CRED, "failed getting it");

	/* The refresh fails: the caller learns both. */
	memset(&sc, 0, sizeof(sc));
	sc.answers[0] = (struct answer){ ST_AUTH, true, false };
	sc.cred_st[1] = ST_TEMPFAIL;
	is_int(run(&sc, &info, &ei, &sess), ST_TEMPFAIL,
	    "refresh failure's status");
	is_int(info.step, LOGIN_REFRESH, "failed at the refresh");
	is_str(ei.msg, "no fresh token", "the getter's words");
	is_str(info.refusal.msg, "auth 1 refused", "and the server's");
	is_int(sc.nauth, 1, "no second AUTH");

	/* Reopen fails: its status, and no session left to the caller. */
	memset(&sc, 0, sizeof(sc));
	sc.answers[0] = (struct answer){ ST_AUTH, true, true };
	sc.reopen_st = ST_NET;
	is_int(run(&sc, &info, &ei, &sess), ST_NET, "reopen failure");
	is_int(info.step, LOGIN_REOPEN, "failed at the reopen");
	ok(sess == NULL, "no session");

	/* NULL info is accepted. */
	memset(&sc, 0, sizeof(sc));
	is_int(run(&sc, NULL, &ei, &sess), ST_OK, "info may be NULL");

	return tap_done();
}
