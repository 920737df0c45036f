/*
 * deliver.c: the delivery targets' common door; line ends for local
 * mailboxes.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "maildir.h"
#include "mbox.h"
#include "mda.h"

/* Converted bytes handed to a target per call. */
#define DELIVER_CHUNK	(32 * 1024)

enum status
deliver_open(struct deliver **out, enum deliver_kind kind, const char *arg,
    int timeout, struct errinfo *ei)
{
	struct deliver *d;
	enum status st;

	*out = NULL;
	if (arg == NULL || *arg == '\0')
		return st_error(ei, ST_CONFIG, "no delivery target given");
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	switch (kind) {
	case DELIVER_MAILDIR:
		d->ops = &maildir_ops;
		st = maildir_open(&d->ctx, arg, ei);
		break;
	case DELIVER_MBOX:
		d->ops = &mbox_ops;
		st = mbox_open(&d->ctx, arg, timeout, ei);
		break;
	case DELIVER_MDA:
		d->ops = &mda_ops;
		st = mda_open(&d->ctx, arg, timeout, ei);
		break;
	default:
		st = st_error(ei, ST_CONFIG, "no delivery target given");
		break;
	}
	if (st != ST_OK) {
		free(d);
		return st;
	}
	*out = d;
	return ST_OK;
}

enum status
deliver_begin(struct deliver *d, struct errinfo *ei)
{
	enum status st;

	if (d->open)
		return st_error(ei, ST_USAGE, "a message is already open");
	d->cr = false;
	d->bytes = 0;
	if ((st = d->ops->begin(d->ctx, ei)) != ST_OK)
		return st;
	d->open = true;
	return ST_OK;
}

enum status
deliver_write(struct deliver *d, const void *p, size_t n, struct errinfo *ei)
{
	char out[DELIVER_CHUNK + 1];
	const char *in = p;
	enum status st;
	size_t i, o = 0;

	if (!d->open)
		return st_error(ei, ST_USAGE, "no message open");
	for (i = 0; i < n; i++) {
		char c = in[i];

		if (d->cr) {
			/* CR LF becomes LF; a lone CR stays. */
			if (c != '\n')
				out[o++] = '\r';
			d->cr = false;
		}
		if (c == '\r')
			d->cr = true;
		else
			out[o++] = c;
		if (o >= DELIVER_CHUNK) {
			if ((st = d->ops->write(d->ctx, out, o, ei)) != ST_OK)
				goto fail;
			d->bytes += o;
			o = 0;
		}
	}
	if (o > 0) {
		if ((st = d->ops->write(d->ctx, out, o, ei)) != ST_OK)
			goto fail;
		d->bytes += o;
	}
	return ST_OK;
fail:
	deliver_abort(d);
	return st;
}

enum status
deliver_commit(struct deliver *d, struct errinfo *ei)
{
	enum status st;

	if (!d->open)
		return st_error(ei, ST_USAGE, "no message open");
	if (d->cr) {
		d->cr = false;
		if ((st = d->ops->write(d->ctx, "\r", 1, ei)) != ST_OK) {
			deliver_abort(d);
			return st;
		}
	}
	d->open = false;
	/* A failed commit cleans up after itself. */
	return d->ops->commit(d->ctx, ei);
}

void
deliver_abort(struct deliver *d)
{
	if (d == NULL || !d->open)
		return;
	d->open = false;
	d->ops->abort(d->ctx);
}

void
deliver_free(struct deliver *d)
{
	if (d == NULL)
		return;
	deliver_abort(d);
	d->ops->free(d->ctx);
	free(d);
}

const char *
deliver_name(const struct deliver *d)
{
	return d->ops->name;
}
