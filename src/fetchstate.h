/*
 * fetchstate.h: what bearmail-fetch has already delivered, per account
 * and folder, under state_dir.
 *
 * Files, in STATE_DIR/fetch/ACCOUNT/ (mode 0700; files 0600):
 *
 *   lock                      flock()ed by the one fetch of the account
 *   imap.FOLDER.state         one per IMAP folder; FOLDER keeps [A-Za-z0-9._-]
 *                             and writes every other byte as %XX
 *   pop3.state                the POP3 maildrop
 *
 * A state file is text, one record per line:
 *
 *   bearmail-fetch-state 1          first line, always
 *   proto imap|pop3                 second line, always
 *   folder NAME                     IMAP: the folder, as given
 *   uidvalidity N                   IMAP: the UIDVALIDITY the UIDs belong to
 *   uid N | uid LO-HI               IMAP: delivered UIDs (a range is inclusive)
 *   uidl STRING                     POP3: a delivered message's UIDL
 *
 * How it changes.  After each durable delivery one record ("uid N" or
 * "uidl X") is appended and fdatasync()ed before the message is marked
 * or deleted on the server.  A crash in the middle of an append leaves
 * a last line without its newline, which loading ignores: that message
 * may then be delivered again (once), but none is ever lost.  The file
 * is rewritten whole (temporary file, fsync, rename, directory fsync)
 * when it is created, when UIDVALIDITY changes, and by fstate_compact()
 * at the end of a session, which folds the appended records into ranges
 * and, for POP3, forgets the UIDLs the server no longer lists.
 *
 * Files that do not parse are ST_CONFIG (path:line): silently starting
 * afresh would deliver a whole mailbox again.
 */
#ifndef BEARMAIL_FETCHSTATE_H
#define BEARMAIL_FETCHSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define FSTATE_UIDL_MAX	70	/* RFC 1939: a UIDL is 1 to 70 octets */

struct fstate;

/*
 * Take the account's fetch lock (STATE_DIR/fetch/ACCOUNT/lock, created
 * with its directories).  ST_TEMPFAIL if another bearmail-fetch holds
 * it.  *fd is the lock; release it with fstate_unlock().
 */
enum status fstate_lock(const char *state_dir, const char *account, int *fd,
    struct errinfo *ei);
void fstate_unlock(int fd);

/*
 * Load (or create) the state of proto ("imap" or "pop3") and, for IMAP,
 * folder.  *out is freed with fstate_free().
 */
enum status fstate_open(struct fstate **out, const char *state_dir,
    const char *account, const char *proto, const char *folder,
    struct errinfo *ei);

/* Free the in-memory state (the file stays).  NULL is a no-op. */
void fstate_free(struct fstate *fs);

/* The file's path, for messages.  Valid as long as fs. */
const char *fstate_path(const struct fstate *fs);

/* IMAP: the recorded UIDVALIDITY, 0 if none yet. */
uint32_t fstate_uidvalidity(const struct fstate *fs);

/*
 * IMAP: record the mailbox's UIDVALIDITY.  When it differs from a
 * recorded non-zero one, every recorded UID is forgotten (they name
 * other messages now) and *reset is set.  Rewrites the file.
 */
enum status fstate_set_uidvalidity(struct fstate *fs, uint32_t v, bool *reset,
    struct errinfo *ei);

/* IMAP: was uid delivered? */
bool fstate_has_uid(const struct fstate *fs, uint32_t uid);

/* IMAP: record uid as delivered (append + fdatasync). */
enum status fstate_add_uid(struct fstate *fs, uint32_t uid,
    struct errinfo *ei);

/* POP3: was the message with this UIDL delivered?  Marks it as listed. */
bool fstate_has_uidl(struct fstate *fs, const char *uidl);

/* POP3: record uidl as delivered (append + fdatasync), listed. */
enum status fstate_add_uidl(struct fstate *fs, const char *uidl,
    struct errinfo *ei);

/* Number of UIDs (IMAP) or UIDLs (POP3) recorded. */
size_t fstate_count(const struct fstate *fs);

/*
 * Rewrite the file from memory.  With prune (POP3 only, after a complete
 * UIDL listing) the UIDLs not looked up with fstate_has_uidl() or added
 * since loading are dropped.
 */
enum status fstate_compact(struct fstate *fs, bool prune, struct errinfo *ei);

/* Pure: encode a folder name for a file name into out (outsz bytes). */
bool fstate_folder_enc(const char *folder, char *out, size_t outsz);

#endif
