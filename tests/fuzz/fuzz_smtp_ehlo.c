/*
 * fuzz_smtp_ehlo.c: the EHLO capability parser (smtp_caps_line() in
 * src/smtp.h), fed as the client feeds it: each reply line goes through
 * smtp_reply_feed() and the text of every line but the first goes to
 * smtp_caps_line().
 *
 * Promises checked: auth_names and domain stay NUL-terminated within
 * their arrays and hold no control characters; auth holds only bits of
 * mechanisms we know; a known mechanism listed in auth_names has its
 * bit, and while the list has room, a bit implies its name is listed.
 */
#include "config.h"

#include "conf.h"
#include "sasl.h"
#include "smtp.h"
#include "status.h"

#include "fuzz.h"

static bool
listed(const char *names, const char *name)
{
	size_t n = strlen(name);
	const char *p = names;

	while ((p = strstr(p, name)) != NULL) {
		if ((p == names || p[-1] == ' ') &&
		    (p[n] == ' ' || p[n] == '\0'))
			return true;
		p += n;
	}
	return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errinfo ei;
	struct smtp_reply r;
	struct smtp_caps c;
	const char *line, *text;
	char *copy;
	size_t len;
	int m;

	smtp_reply_init(&r);
	smtp_caps_reset(&c);
	while (fz_line(&data, &size, &line, &len)) {
		if (len > 0 && line[len - 1] == '\r')
			len--;
		copy = fz_strndup(line, len);
		st_clear(&ei);
		if (smtp_reply_feed(&r, copy, len, &text, &ei) != ST_OK) {
			free(copy);
			break;
		}
		if (r.nlines > 1)
			smtp_caps_line(&c, text);
		free(copy);
		if (r.done)
			break;
	}
	FZ_CHECK(fz_terminated(c.auth_names, sizeof(c.auth_names)));
	FZ_CHECK(!fz_has_ctl(c.auth_names, false));
	FZ_CHECK(fz_terminated(c.domain, sizeof(c.domain)));
	FZ_CHECK(!fz_has_ctl(c.domain, false));
	FZ_CHECK((c.auth & ~0xfu) == 0);
	/* auth_names is a bounded list for messages: once it is nearly
	   full, a bit may stand without its name, never the reverse. */
	for (m = MECH_XOAUTH2; m <= MECH_LOGIN; m++) {
		bool named = listed(c.auth_names,
		    sasl_mech_name((enum auth_mech)m));

		if (named)
			FZ_CHECK(c.auth & (1u << m));
		if (strlen(c.auth_names) + 64 < sizeof(c.auth_names) &&
		    (c.auth & (1u << m)))
			FZ_CHECK(named);
	}
	return 0;
}
