/*
 * token.h: the OAuth token store, one file per account.
 *
 * Files live in STATE_DIR/tokens/ (mode 0700): ACCOUNT.token (0600) holds
 * the tokens, ACCOUNT.lock is an empty file whose flock(2) serialises
 * writers, ACCOUNT.tmp is the next version while it is being written.
 * The format is described at the top of token.c.
 *
 * Readers need no lock: a file is only ever replaced whole, by rename(2)
 * after fsync(2), so a reader sees the old version or the new one, never
 * half of either.  Writers follow the refresh protocol:
 *
 *	token_lock();  token_load();  if still stale: refresh, token_save();
 *	token_unlock();
 *
 * so N processes that find the same expired token make one request to the
 * token endpoint between them: the first refreshes, the others find a
 * fresh token when they get the lock.
 *
 * This module never talks to the network and does not include libcurl:
 * it is linked into every program.
 */
#ifndef BEARMAIL_TOKEN_H
#define BEARMAIL_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "status.h"

/*
 * Refresh an access token when less than this many seconds are left.
 * Ten minutes, for every provider: some Microsoft endpoints refuse a
 * token with less than that left, and an hour-long token refreshed at 50
 * instead of 55 minutes costs one request an hour at most.
 */
#define TOKEN_MARGIN		600

/* Bounds: a token file, and one value in it (Microsoft JWTs are a few KB). */
#define TOKEN_FILE_MAX		(64 * 1024)
#define TOKEN_VALUE_MAX		(16 * 1024)

struct token {
	char *access_token;	/* NULL: none */
	time_t expires;		/* access token's end, local clock; 0: unknown */
	char *refresh_token;	/* NULL: none (service accounts) */
	char *scope;		/* scope granted, or NULL */
	char *user;		/* the user it was authorized for, or NULL */
	time_t obtained;	/* when the access token was received, or 0 */
	time_t authorized;	/* when the refresh token was first stored, or 0 */
};

/* One account's place in the store.  Plain struct: no hidden state. */
struct token_store {
	char *dir;		/* STATE_DIR/tokens */
	char *path;		/* .../ACCOUNT.token */
	char *lockpath;		/* .../ACCOUNT.lock */
	char *tmppath;		/* .../ACCOUNT.tmp */
	int lockfd;		/* >= 0 while locked */
};

/*
 * Prepare ts for account in state_dir.  With create, STATE_DIR and
 * STATE_DIR/tokens are created (0700) when missing; without it nothing
 * is touched on disk.  An existing tokens directory must be a directory
 * owned by the caller that group and others cannot enter (ST_CONFIG
 * otherwise, with the command that fixes it).  Account names holding
 * "/" or starting with "." are refused.  Free with token_store_close().
 */
enum status token_store_open(struct token_store *ts, const char *state_dir,
    const char *account, bool create, struct errinfo *ei);

/* Unlock if locked and free the paths.  Safe on a zeroed struct. */
void token_store_close(struct token_store *ts);

/*
 * Take the account's exclusive lock, waiting at most timeout seconds
 * (ST_TIMEOUT then).  The lock dies with the process, so a crashed writer
 * never leaves it held.
 */
enum status token_lock(struct token_store *ts, int timeout,
    struct errinfo *ei);

/* Release the lock (no-op when not held). */
void token_unlock(struct token_store *ts);

/*
 * Read the account's token file into tok (which the caller zeroes or
 * token_free()s first).  *found is false, and tok left empty, when there
 * is no file.  The file is opened with O_NOFOLLOW and refused (ST_CONFIG)
 * if it is a symbolic link, not a regular file, not owned by the caller
 * or accessible to group or others.  A malformed file is ST_CONFIG.
 */
enum status token_load(struct token_store *ts, struct token *tok, bool *found,
    struct errinfo *ei);

/*
 * Replace the token file with tok: ACCOUNT.tmp is written (0600),
 * fsynced, renamed over ACCOUNT.token, and the directory fsynced.  The
 * lock must be held (ST_SYS otherwise).  ST_CANTCREAT when the store
 * cannot be written.
 */
enum status token_save(struct token_store *ts, const struct token *tok,
    struct errinfo *ei);

/* Delete the token file (the lock must be held).  No file is not an error. */
enum status token_remove(struct token_store *ts, struct errinfo *ei);

/*
 * True when tok has no access token, or it expires in less than margin
 * seconds from now (an unknown expiry counts as stale).
 */
bool token_stale(const struct token *tok, time_t now, time_t margin);

/*
 * Fold a fresh endpoint reply into the stored token.  The access token,
 * its expiry, obtained time and scope come from fresh; a refresh token in
 * fresh replaces the stored one (rotation: Microsoft returns a new one on
 * every refresh), an absent one never does.  Strings move from fresh to
 * stored (fresh is left empty); replaced strings are wiped and freed.
 */
void token_merge(struct token *stored, struct token *fresh);

/* Wipe and free every string, and zero tok.  Safe on a zeroed token. */
void token_free(struct token *tok);

/*
 * Pure halves of load and save, for tests: render tok in the file
 * format into out (whose max should be TOKEN_FILE_MAX), or parse data.
 * A value that is empty, too long, or holds bytes outside printable
 * ASCII (space allowed only in the scope) is refused: ST_PROTO from
 * token_format() (it came from a token endpoint), ST_CONFIG from
 * token_parse().
 */
enum status token_format(const struct token *tok, struct buf *out,
    struct errinfo *ei);
enum status token_parse(const char *data, size_t len, struct token *tok,
    struct errinfo *ei);

/*
 * True when s may be stored as a token value: 1..TOKEN_VALUE_MAX bytes
 * of printable ASCII without space.
 */
bool token_valid_value(const char *s);

#endif
