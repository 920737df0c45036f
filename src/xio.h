/*
 * xio.h: the small system-call helpers every module needs, in one place.
 *
 * Writing a whole buffer to a descriptor, making a rename durable by
 * syncing its directory, and deadline arithmetic on CLOCK_MONOTONIC (the
 * clock that never jumps when the wall clock is set), in the form poll()
 * wants.  Nothing here allocates, logs or keeps state.
 */
#ifndef BEARMAIL_XIO_H
#define BEARMAIL_XIO_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "status.h"

/*
 * Write all n bytes of p to the blocking descriptor fd, going on after
 * EINTR and short writes.  On failure records `fail` (ST_SYS,
 * ST_CANTCREAT...) with the text "write WHAT: strerror(errno)" and
 * returns it.  what names the file for the user, never a secret.
 */
enum status xio_write_all(int fd, const void *p, size_t n, enum status fail,
    const char *what, struct errinfo *ei);

/*
 * fsync(2) the directory dir, so that a rename(2) or unlink(2) in it
 * survives a crash.  File systems that cannot sync a directory (EINVAL)
 * count as success.  ST_CANTCREAT on failure, naming dir.
 */
enum status xio_fsync_dir(const char *dir, struct errinfo *ei);

/* The same for a directory already open as dirfd; what names it. */
enum status xio_fsync_dirfd(int dirfd, const char *what, struct errinfo *ei);

/* Now on CLOCK_MONOTONIC. */
struct timespec xio_now(void);

/* t plus ms milliseconds (ms >= 0). */
struct timespec xio_ts_add_ms(struct timespec t, long ms);

/* A deadline ms milliseconds from now on CLOCK_MONOTONIC. */
struct timespec xio_deadline_ms(long ms);

/*
 * Milliseconds from now until deadline, rounded up, for poll(): 0 once
 * the deadline has passed (and only then), at most one day.
 */
int xio_ms_left(const struct timespec *deadline);

/* True once the deadline has passed. */
bool xio_expired(const struct timespec *deadline);

#endif
