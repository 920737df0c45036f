/*
 * maildrop.h: the maildrop, how a local user who cannot write q/ queues
 * a message: maildrop_submit() runs bearmail-drop, which writes the
 * submission with maildrop_write(); the runner moves it into q/ with
 * maildrop_import().  The privilege model is described at the top
 * of maildrop.c.
 */
#ifndef BEARMAIL_MAILDROP_H
#define BEARMAIL_MAILDROP_H

#include <stddef.h>
#include <time.h>

#include "envelope.h"
#include "spool.h"
#include "status.h"

/*
 * The body of bearmail-drop: read one submission (a ENVELOPE_FMT_DROP
 * envelope, its empty line, then exactly size octets of message, then
 * EOF) from in, waiting at most timeout seconds for each read, and write
 * it into the directory dropfd as a new file named by a fresh queue ID
 * (a dot-file first, fsynced, renamed without replacing, the directory
 * fsynced).  The envelope is written as re-serialised from what was
 * parsed.  id receives the name.  ST_DATAERR for a bad envelope or a
 * message that is not exactly size octets, ST_LIMIT past ENVELOPE_HDR_MAX
 * or ENVELOPE_MSG_MAX, ST_TIMEOUT, ST_CANTCREAT.  Nothing is left behind on
 * failure.
 */
enum status maildrop_write(int dropfd, int in, int timeout,
    char id[ENVELOPE_ID_SIZE], struct errinfo *ei);

/* The one variable maildrop_submit() passes on, for tests. */
#define MAILDROP_DIR_ENV	"BEARMAIL_DROP_DIR"

/*
 * The submitting side of the maildrop, for a user who cannot write q/:
 * run prog (BINDIR "/bearmail-drop"; the caller picks) with an empty
 * environment (BEARMAIL_DROP_DIR excepted, which bearmail-drop honours
 * only when it is not privileged), feed it env in the maildrop format
 * and the message read from fd (a regular file, from its current offset
 * to EOF; env->size is set here), and collect the queue ID it prints
 * into id.  Each wait is bounded by timeout seconds (the child is killed
 * past it: ST_TIMEOUT).  Its failure maps back: exit 65 ST_DATAERR, 73
 * ST_CANTCREAT, 75 ST_TEMPFAIL, anything else ST_CANTCREAT, with its
 * message as the text.  Success means the message is durable in the
 * maildrop.
 */
enum status maildrop_submit(const char *prog, struct envelope *env,
    int fd, int timeout, char id[ENVELOPE_ID_SIZE], struct errinfo *ei);

/*
 * Move every well-formed maildrop file into q/ as a queue file with the
 * same ID (uid: the file's owner; created: its mtime).  Its contents are
 * untrusted: it is parsed with the limits of ENVELOPE_FMT_DROP and a file
 * that is not a regular file with one link, is too large or does not
 * parse is moved to failed/ID.drop (the log says why) without being
 * followed.  Dot-files older than a day (left by a killed bearmail-drop)
 * are removed.  *imported counts the messages moved (may be NULL).
 */
enum status maildrop_import(struct spool *sp, time_t now,
    size_t *imported, struct errinfo *ei);

#endif
