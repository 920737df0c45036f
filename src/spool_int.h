/*
 * spool_int.h: internals shared by the files of the spool module
 * (spool.c, spool_list.c, maildrop.c) and by nothing else.  Include it
 * after spool.h.
 */
#ifndef BEARMAIL_SPOOL_INT_H
#define BEARMAIL_SPOOL_INT_H

#include <sys/stat.h>
#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "envelope.h"
#include "spool.h"
#include "status.h"

/* One read or write of a message; the age of tmp/ and maildrop/. leftovers. */
#define SPOOL_COPY_CHUNK	65536
#define SPOOL_STALE_AGE		(24 * 60 * 60)

/* An open queue directory (spool_open()). */
struct spool {
	int dirfd;
	int tmpfd, qfd, failedfd, dropfd;	/* -1 when not opened */
	uid_t owner;
	gid_t group;
	bool rdonly;
	char *path;
};

/*
 * Open name in dirfd for reading without following anything: it must
 * be a regular file with one link, owned by owner unless owner is -1.
 * *why gets the reason of a refusal (ST_DATAERR; a static string);
 * ENOENT gives ST_OK with *fd -1.  *stp (if not NULL) gets its fstat().
 */
enum status spool_open_checked(int dirfd, const char *name, uid_t owner,
    int *fd, struct stat *stp, const char **why, struct errinfo *ei);

/*
 * Read and parse (in format fmt) the envelope at the start of fd, whose
 * size is fsize, into env (initialised by the caller); *hdrlen gets its
 * length.  ST_DATAERR unless the file is exactly as long as it says.
 */
enum status spool_read_env(int fd, off_t fsize, enum envelope_fmt fmt,
    struct envelope *env, size_t *hdrlen, struct errinfo *ei);

/*
 * Write a queue file tmp/name: env's envelope, then the message (size
 * octets from srcfd at srcoff, or mem).  fsynced, given to the queue
 * owner, locked when lock is set.  On success *fdp (if not NULL) is the
 * open file (read/write) and *hdrlen its envelope length; *exists says
 * that tmp/name was already there; on failure nothing is left in tmp/.
 */
enum status spool_write_file(struct spool *sp, const char *name,
    const struct envelope *env, int srcfd, off_t srcoff, const void *mem,
    bool lock, int *fdp, size_t *hdrlen, bool *exists, struct errinfo *ei);

/* rename(2) without replacing: -1 with errno EEXIST if newname exists. */
int spool_rename_noreplace(int olddir, const char *oldname, int newdir,
    const char *newname);

/* The wall clock in seconds and microseconds, for queue IDs. */
void spool_now_us(time_t *sec, long *usec);

/*
 * The names in dirfd but "." and "..", read before anything in it
 * changes: *names (*n of them) is freed with spool_names_free().
 */
enum status spool_dir_names(int dirfd, char ***names, size_t *n,
    struct errinfo *ei);
void spool_names_free(char **v, size_t n);

/*
 * Remove the entries v (n of them) of dirfd older than SPOOL_STALE_AGE
 * at now, but not directories; with dots, dot-files only.
 */
void spool_remove_stale(int dirfd, char **v, size_t n, time_t now,
    bool dots);

#endif
