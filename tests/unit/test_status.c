/* Unit tests: status codes, errinfo, the sysexits mapping. */
#include "config.h"

#include <errno.h>
#include <sysexits.h>

#include "status.h"
#include "tap.h"

int
main(void)
{
	struct errinfo ei;
	int s;

	st_clear(&ei);
	is_int(ei.st, ST_OK, "cleared errinfo is OK");
	is_int(st_error(&ei, ST_NET, "connect to %s", "mx"), ST_NET,
	    "st_error returns its status");
	is_str(ei.msg, "connect to mx", "text recorded");
	st_error(&ei, ST_PROTO, "later failure");
	is_int(ei.st, ST_NET, "first failure wins (status)");
	is_str(ei.msg, "connect to mx", "first failure wins (text)");
	st_context(&ei, "smtp %s", "relay");
	is_str(ei.msg, "smtp relay: connect to mx", "context prefixes");

	st_clear(&ei);
	errno = ENOENT;
	st_errno(&ei, ST_SYS, "open %s", "/x");
	ok(strstr(ei.msg, "open /x: ") == ei.msg && strlen(ei.msg) > 9,
	    "st_errno appends strerror: %s", ei.msg);

	st_clear(&ei);
	st_error(&ei, ST_PROTO, "bad reply \"%s\"", "a\r\nb\x1b");
	is_str(ei.msg, "bad reply \"a??b?\"", "control bytes neutralised");

	{
		struct errinfo inner;

		st_clear(&inner);
		st_error(&inner, ST_PERMFAIL, "550 no such user");
		inner.code = 550;
		st_clear(&ei);
		is_int(st_pass(&ei, &inner), ST_PERMFAIL, "st_pass returns "
		    "the passed status");
		is_str(ei.msg, "550 no such user", "st_pass copies the text");
		is_int(ei.code, 550, "st_pass copies the reply code");
		st_clear(&ei);
		st_error(&ei, ST_NET, "first");
		st_pass(&ei, &inner);
		ok(ei.st == ST_NET && ei.code == 0 &&
		    strcmp(ei.msg, "first") == 0, "st_pass: first failure wins");
		st_clear(&ei);
		st_clear(&inner);
		is_int(st_pass(&ei, &inner), ST_OK, "st_pass of a success");
		is_int(ei.st, ST_OK, "records nothing");
		ok(st_pass(NULL, &inner) == ST_OK, "st_pass: NULL errinfo");
	}

	st_clear(&ei);
	st_context(&ei, "nothing");
	is_str(ei.msg, "", "context without failure is a no-op");
	ok(st_error(NULL, ST_TLS, "x") == ST_TLS, "NULL errinfo accepted");

	is_int(st_exitcode(ST_OK), EX_OK, "OK -> 0");
	is_int(st_exitcode(ST_USAGE), EX_USAGE, "USAGE -> 64");
	is_int(st_exitcode(ST_DATAERR), EX_DATAERR, "DATAERR -> 65");
	is_int(st_exitcode(ST_NOUSER), EX_NOUSER, "NOUSER -> 67");
	is_int(st_exitcode(ST_PERMFAIL), EX_UNAVAILABLE, "PERMFAIL -> 69");
	is_int(st_exitcode(ST_CANTCREAT), EX_CANTCREAT, "CANTCREAT -> 73");
	is_int(st_exitcode(ST_TEMPFAIL), EX_TEMPFAIL, "TEMPFAIL -> 75");
	is_int(st_exitcode(ST_NET), EX_TEMPFAIL, "NET -> 75");
	is_int(st_exitcode(ST_TIMEOUT), EX_TEMPFAIL, "TIMEOUT -> 75");
	is_int(st_exitcode(ST_PROTO), EX_PROTOCOL, "PROTO -> 76");
	is_int(st_exitcode(ST_AUTH), EX_NOPERM, "AUTH -> 77");
	is_int(st_exitcode(ST_CONFIG), EX_CONFIG, "CONFIG -> 78");
	is_int(st_exitcode((enum status)999), EX_SOFTWARE, "unknown -> 70");

	/* Temporary never turns into permanent: retryable = worth queueing. */
	ok(st_retryable(ST_TEMPFAIL) && st_retryable(ST_NET) &&
	    st_retryable(ST_TIMEOUT) && st_retryable(ST_TLS) &&
	    st_retryable(ST_AUTH) && st_retryable(ST_PROTO),
	    "server-side trouble is retryable");
	ok(!st_retryable(ST_PERMFAIL) && !st_retryable(ST_NOUSER) &&
	    !st_retryable(ST_DATAERR) && !st_retryable(ST_USAGE),
	    "the message's own faults are not retryable");

	for (s = 0; s < ST__COUNT; s++)
		ok(strcmp(st_name((enum status)s), "UNKNOWN") != 0,
		    "status %d has a name (%s)", s, st_name((enum status)s));
	return tap_done();
}
