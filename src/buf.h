/*
 * buf.h: a growable byte buffer that always has a maximum.
 *
 * Every buffer that holds peer or user input is given the largest size it
 * may reach; growing past it fails with ST_LIMIT instead of eating memory.
 * The data is always NUL-terminated (the NUL is not counted in len), so a
 * buffer of text can be passed to string functions, but it may hold NULs.
 *
 * A buffer that will hold a secret (a token, a password, an AUTH payload,
 * a form carrying a refresh token) is made with buf_init_secret(), or
 * marked with buf_set_secret() before the secret goes in.  Such a buffer
 * never leaves a copy behind: growing it allocates a new block, copies,
 * then wipes and frees the old one (realloc() would free it unwiped), and
 * buf_free(), buf_reset() and buf_consume() wipe what they drop.
 */
#ifndef BEARMAIL_BUF_H
#define BEARMAIL_BUF_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

struct buf {
	char *data;	/* NULL until the first append; owned by the buf */
	size_t len;	/* bytes in use, not counting the trailing NUL */
	size_t cap;	/* bytes allocated */
	size_t max;	/* len may never exceed this */
	bool secret;	/* wipe every byte that is dropped or moved */
};

/* Empty buffer that may grow to max bytes.  Allocates nothing. */
void buf_init(struct buf *b, size_t max);

/* The same for a buffer that will hold a secret (see above). */
void buf_init_secret(struct buf *b, size_t max);

/*
 * Treat b as holding a secret from now on, for a buffer a caller made
 * with buf_init() (a function that writes a secret into a caller's
 * buffer calls this first).  Stays set until the next buf_init().
 */
void buf_set_secret(struct buf *b);

/*
 * Make room for n more bytes (plus the NUL) in one allocation, so that
 * a writer that knows its output size does not grow the buffer step by
 * step.  ST_LIMIT past the maximum (b unchanged), ST_SYS on ENOMEM.
 */
enum status buf_reserve(struct buf *b, size_t n, struct errinfo *ei);

/* Append n bytes.  ST_LIMIT past the maximum (b unchanged), ST_SYS on ENOMEM. */
enum status buf_add(struct buf *b, const void *p, size_t n, struct errinfo *ei);

/* Append a NUL-terminated string. */
enum status buf_adds(struct buf *b, const char *s, struct errinfo *ei);

/* Append formatted text. */
enum status buf_printf(struct buf *b, struct errinfo *ei, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Drop the first n bytes (n <= len), keeping the rest. */
void buf_consume(struct buf *b, size_t n);

/* Forget the contents, keep the memory (wiped first if secret). */
void buf_reset(struct buf *b);

/*
 * Free the memory (wiped first if secret); the buffer may be used again
 * after buf_init().
 */
void buf_free(struct buf *b);

/* Wipe, then free, whatever the mode: for buffers that held a secret. */
void buf_wipe(struct buf *b);

/*
 * Take ownership of the contents as a NUL-terminated string (never NULL:
 * an empty buffer gives ""), leaving b empty.  Free the result with free()
 * (after st_wipe() when the buffer was secret).
 */
char *buf_steal(struct buf *b, struct errinfo *ei);

#endif
