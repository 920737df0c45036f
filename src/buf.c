/*
 * buf.c: bounded growable buffers.
 *
 * A secret buffer grows by malloc + copy + wipe + free instead of
 * realloc(): realloc() may move the data and free the old block with
 * the secret still in it, where the next allocation (or a core file)
 * finds it.
 */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void
buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	/* Halving SIZE_MAX keeps len + n + 1 from ever overflowing. */
	b->max = max > SIZE_MAX / 2 ? SIZE_MAX / 2 : max;
	b->secret = false;
}

void
buf_init_secret(struct buf *b, size_t max)
{
	buf_init(b, max);
	b->secret = true;
}

void
buf_set_secret(struct buf *b)
{
	b->secret = true;
}

/* Make room for n more bytes plus the NUL. */
enum status
buf_reserve(struct buf *b, size_t n, struct errinfo *ei)
{
	size_t need, cap;
	char *p;

	if (n > b->max || b->len > b->max - n)
		return st_error(ei, ST_LIMIT, "buffer limit of %zu bytes reached",
		    b->max);
	need = b->len + n + 1;
	if (need <= b->cap)
		return ST_OK;
	cap = b->cap != 0 ? b->cap : 64;
	while (cap < need)
		cap = cap > (size_t)-1 / 2 ? need : cap * 2;
	if (cap > b->max + 1)
		cap = b->max + 1;
	if (b->secret) {
		if ((p = malloc(cap)) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
		if (b->data != NULL) {
			memcpy(p, b->data, b->len + 1);
			st_wipe(b->data, b->cap);
			free(b->data);
		}
	} else if ((p = realloc(b->data, cap)) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	b->data = p;
	b->cap = cap;
	return ST_OK;
}

enum status
buf_add(struct buf *b, const void *p, size_t n, struct errinfo *ei)
{
	enum status st;

	if ((st = buf_reserve(b, n, ei)) != ST_OK)
		return st;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return ST_OK;
}

enum status
buf_adds(struct buf *b, const char *s, struct errinfo *ei)
{
	return buf_add(b, s, strlen(s), ei);
}

enum status
buf_printf(struct buf *b, struct errinfo *ei, const char *fmt, ...)
{
	va_list ap;
	enum status st;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return st_error(ei, ST_SYS, "bad format");
	if ((st = buf_reserve(b, (size_t)n, ei)) != ST_OK)
		return st;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return ST_OK;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	/* The moved tail leaves a copy of its last n bytes behind. */
	if (b->secret)
		st_wipe(b->data + b->len, n);
	b->data[b->len] = '\0';
}

void
buf_reset(struct buf *b)
{
	if (b->secret && b->data != NULL)
		st_wipe(b->data, b->len);
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
buf_free(struct buf *b)
{
	if (b->secret)
		st_wipe(b->data, b->cap);
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
buf_wipe(struct buf *b)
{
	st_wipe(b->data, b->cap);
	buf_free(b);
}

char *
buf_steal(struct buf *b, struct errinfo *ei)
{
	char *s;

	if (b->data == NULL) {
		if (buf_reserve(b, 0, ei) != ST_OK)
			return NULL;
		b->data[0] = '\0';
	}
	s = b->data;
	b->data = NULL;
	b->len = b->cap = 0;
	return s;
}
