/*
 * buf.h: a growable byte buffer that always has a maximum.
 *
 * Every buffer that holds peer or user input is given the largest size it
 * may reach; growing past it fails with ST_LIMIT instead of eating memory.
 * The data is always NUL-terminated (the NUL is not counted in len), so a
 * buffer of text can be passed to string functions, but it may hold NULs.
 */
#ifndef BEARMAIL_BUF_H
#define BEARMAIL_BUF_H

#include <stddef.h>

#include "status.h"

struct buf {
	char *data;	/* NULL until the first append; owned by the buf */
	size_t len;	/* bytes in use, not counting the trailing NUL */
	size_t cap;	/* bytes allocated */
	size_t max;	/* len may never exceed this */
};

/* Empty buffer that may grow to max bytes.  Allocates nothing. */
void buf_init(struct buf *b, size_t max);

/* Append n bytes.  ST_LIMIT past the maximum (b unchanged), ST_SYS on ENOMEM. */
enum status buf_add(struct buf *b, const void *p, size_t n, struct errinfo *ei);

/* Append a NUL-terminated string. */
enum status buf_adds(struct buf *b, const char *s, struct errinfo *ei);

/* Append formatted text. */
enum status buf_printf(struct buf *b, struct errinfo *ei, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Drop the first n bytes (n <= len), keeping the rest. */
void buf_consume(struct buf *b, size_t n);

/* Forget the contents, keep the memory. */
void buf_reset(struct buf *b);

/* Free the memory; the buffer may be used again after buf_init(). */
void buf_free(struct buf *b);

/* Wipe, then free: for buffers that held a secret. */
void buf_wipe(struct buf *b);

/*
 * Take ownership of the contents as a NUL-terminated string (never NULL:
 * an empty buffer gives ""), leaving b empty.  Free the result with free().
 */
char *buf_steal(struct buf *b, struct errinfo *ei);

#endif
