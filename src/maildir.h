/*
 * maildir.h: delivery into a Maildir.
 *
 * The Maildir convention (D. J. Bernstein, "Using maildir format",
 * cr.yp.to/proto/maildir.html): the message is written to tmp/ under a
 * name no other process can pick, fsynced, then linked into new/ (an
 * atomic step: readers see a whole message or none) and the directory
 * fsynced, after which the tmp/ name is removed.
 *
 * Names are "SECONDS.MmicrosPpidQcounterRrandom.HOST": the time with
 * microseconds, the process, a per-process counter and 64 random bits
 * make a name unique across processes and hosts sharing the directory;
 * '/' and ':' in the host name are written \057 and \072.
 */
#ifndef BEARMAIL_MAILDIR_H
#define BEARMAIL_MAILDIR_H

#include <stddef.h>

#include "deliver.h"
#include "status.h"

extern const struct deliver_ops maildir_ops;

/*
 * Prepare delivery into dir, creating dir, dir/tmp, dir/new and dir/cur
 * (0700) where missing.  *ctx is for maildir_ops.  ST_CANTCREAT if the
 * directories cannot be made.
 */
enum status maildir_open(void **ctx, const char *dir, struct errinfo *ei);

/*
 * A unique base name (see above) into out (outsz bytes, 256 is enough).
 * Pure but for the clock, the pid and the random source.  Returns false
 * if out is too small.
 */
bool maildir_name(char *out, size_t outsz);

#endif
