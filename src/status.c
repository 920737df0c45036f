/*
 * status.c: errinfo bookkeeping and the one mapping to sysexits.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "status.h"

static const struct {
	const char *name;
	int exitcode;
	bool retryable;
} st_table[ST__COUNT] = {
	[ST_OK]		= { "OK",	EX_OK,		false },
	[ST_SYS]	= { "SYS",	EX_OSERR,	true },
	[ST_NET]	= { "NET",	EX_TEMPFAIL,	true },
	[ST_TIMEOUT]	= { "TIMEOUT",	EX_TEMPFAIL,	true },
	[ST_TLS]	= { "TLS",	EX_TEMPFAIL,	true },
	[ST_PROTO]	= { "PROTO",	EX_PROTOCOL,	true },
	[ST_AUTH]	= { "AUTH",	EX_NOPERM,	true },
	[ST_TEMPFAIL]	= { "TEMPFAIL",	EX_TEMPFAIL,	true },
	[ST_PERMFAIL]	= { "PERMFAIL",	EX_UNAVAILABLE,	false },
	[ST_NOUSER]	= { "NOUSER",	EX_NOUSER,	false },
	[ST_DATAERR]	= { "DATAERR",	EX_DATAERR,	false },
	[ST_CONFIG]	= { "CONFIG",	EX_CONFIG,	false },
	[ST_LIMIT]	= { "LIMIT",	EX_DATAERR,	false },
	[ST_USAGE]	= { "USAGE",	EX_USAGE,	false },
	[ST_CANTCREAT]	= { "CANTCREAT", EX_CANTCREAT,	false },
};

static bool
st_valid(enum status st)
{
	return (unsigned)st < ST__COUNT;
}

void
st_clear(struct errinfo *ei)
{
	if (ei == NULL)
		return;
	ei->st = ST_OK;
	ei->code = 0;
	ei->msg[0] = '\0';
}

/* Keep the text to one printable line whatever a peer put into it. */
static void
st_sanitize(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static enum status
st_record(struct errinfo *ei, enum status st, int err, const char *fmt,
    va_list ap)
{
	int n;

	if (ei == NULL || ei->st != ST_OK)
		return st;
	ei->st = st;
	n = vsnprintf(ei->msg, sizeof(ei->msg), fmt, ap);
	if (n >= 0 && err != 0 && (size_t)n < sizeof(ei->msg))
		snprintf(ei->msg + n, sizeof(ei->msg) - (size_t)n, ": %s",
		    strerror(err));
	st_sanitize(ei->msg);
	return st;
}

enum status
st_error(struct errinfo *ei, enum status st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	st = st_record(ei, st, 0, fmt, ap);
	va_end(ap);
	return st;
}

enum status
st_errno(struct errinfo *ei, enum status st, const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	st = st_record(ei, st, err, fmt, ap);
	va_end(ap);
	return st;
}

enum status
st_pass(struct errinfo *ei, const struct errinfo *e)
{
	if (ei != NULL && ei->st == ST_OK && e->st != ST_OK) {
		st_error(ei, e->st, "%s", e->msg);
		ei->code = e->code;
	}
	return e->st;
}

void
st_context(struct errinfo *ei, const char *fmt, ...)
{
	char prefix[ERRINFO_MAX], old[ERRINFO_MAX];
	va_list ap;

	if (ei == NULL || ei->st == ST_OK)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, ei->msg, sizeof(old));
	snprintf(ei->msg, sizeof(ei->msg), "%s: %s", prefix, old);
	st_sanitize(ei->msg);
}

const char *
st_name(enum status st)
{
	return st_valid(st) ? st_table[st].name : "UNKNOWN";
}

bool
st_retryable(enum status st)
{
	return st_valid(st) && st_table[st].retryable;
}

int
st_exitcode(enum status st)
{
	return st_valid(st) ? st_table[st].exitcode : EX_SOFTWARE;
}

void
st_wipe(void *p, size_t n)
{
	if (p == NULL || n == 0)
		return;
#ifdef HAVE_EXPLICIT_BZERO
	explicit_bzero(p, n);
#else
	volatile unsigned char *v = p;
	while (n-- > 0)
		*v++ = 0;
#endif
}
