/* Unit tests: transcript redaction. */
#include "config.h"

#include "log.h"
#include "tap.h"

static const char *
red(const char *line, bool secret)
{
	static char out[256];

	return log_redact(line, strlen(line), secret, out, sizeof(out));
}

int
main(void)
{
	is_str(red("EHLO host.example", false), "EHLO host.example",
	    "ordinary command untouched");
	is_str(red("MAIL FROM:<a@b> SIZE=10", false), "MAIL FROM:<a@b> SIZE=10",
	    "MAIL untouched");
	is_str(red("AUTH XOAUTH2 dXNlcj1hQGIBYXV0aD1CZWFyZXIgeHgBAQ==", false),
	    "AUTH XOAUTH2 [redacted 36 bytes]", "SMTP inline AUTH payload");
	is_str(red("AUTH PLAIN", false), "AUTH PLAIN",
	    "AUTH without payload shown");
	is_str(red("a1 AUTHENTICATE XOAUTH2 dXNlcj1h", false),
	    "a1 AUTHENTICATE XOAUTH2 [redacted 8 bytes]", "IMAP AUTHENTICATE");
	is_str(red("a2 LOGIN alice s3cret", false), "a2 LOGIN [redacted 12 bytes]",
	    "IMAP LOGIN");
	is_str(red("PASS s3cret", false), "PASS [redacted 6 bytes]", "POP3 PASS");
	is_str(red("dXNlcj1hQGIBYXV0aA==", true), "[redacted 20 bytes]",
	    "secret continuation line");
	is_str(red("", true), "", "empty secret line (XOAUTH2 error answer)");
	is_str(red("X-Note: Bearer ya29.abc", false), "X-Note: [redacted]",
	    "stray bearer token");
	is_str(red("leak ya29.abcdef", false), "leak [redacted]",
	    "stray Google access token");
	is_str(red("A\x01" "B", false), "A?B", "control bytes made printable");
	{
		char t1[] = "535 5.7.8 cannot use AUTH XOAUTH2 "
		    "dXNlcj1hQGIBYXV0aD1CZWFyZXIgeHgBAQ==";
		char t2[] = "535 5.7.8 Username and Password not accepted. "
		    "Learn more at https://support.google.com/mail/?p=Bad";
		char t3[] = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln-x_y end";
		is_str(log_redact_tokens(t1),
		    "535 5.7.8 cannot use AUTH XOAUTH2 [redacted]",
		    "echoed AUTH payload redacted");
		is_str(log_redact_tokens(t2), "535 5.7.8 Username and Password "
		    "not accepted. Learn more at https://support.google.com/"
		    "mail/?p=Bad", "ordinary reply text kept");
		is_str(log_redact_tokens(t3), "[redacted] end",
		    "a JWT is one token");
	}
	return tap_done();
}
