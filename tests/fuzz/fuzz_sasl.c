/*
 * fuzz_sasl.c: what a server can send a SASL client (src/sasl.h).
 *
 * The first byte picks the mechanism and whether the challenges are
 * given raw (then they are base64-encoded here, so the fuzzer reaches
 * the JSON error parser quickly) or as the wire's base64.  The rest is
 * one challenge per line, answered with sasl_step() until it refuses.
 * The same text is also an EHLO/CAPABILITY mechanism list.
 *
 * Promises checked: the error fields are NUL-terminated, within their
 * arrays and printable; a response is base64 text; the classification
 * is one of the enum's values.
 */
#include "config.h"

#include "base64.h"
#include "buf.h"
#include "sasl.h"
#include "status.h"

#include "fuzz.h"

#define CHALLENGES_MAX	8

static void
check_field(const char *f, size_t size)
{
	FZ_CHECK(fz_terminated(f, size));
	FZ_CHECK(!fz_has_ctl(f, false));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum auth_mech mechs[] = {
		MECH_XOAUTH2, MECH_OAUTHBEARER, MECH_PLAIN, MECH_LOGIN
	};
	struct errinfo ei;
	struct sasl s;
	struct buf ir, resp, enc;
	enum auth_mech mech;
	const char *line;
	char *list;
	size_t len, i, n;
	unsigned flags;
	bool raw;

	flags = fz_byte(&data, &size);
	mech = mechs[flags & 3];
	raw = (flags & 4) != 0;

	list = fz_strndup(data, size);
	for (i = 0; i < 4; i++)
		(void)sasl_mech_offered(list, mechs[i]);
	free(list);

	memset(&s, 0, sizeof(s));
	st_clear(&ei);
	FZ_CHECK(sasl_init(&s, mech, "user@example.com", "ya29.not-a-secret",
	    (flags & 8) ? NULL : "smtp.example.com", (flags & 8) ? 0 : 587,
	    &ei) == ST_OK);
	buf_init(&ir, 4096);
	FZ_CHECK(sasl_initial(&s, &ir, &ei) == ST_OK);
	(void)sasl_inline(SASL_FRAME_SMTP, mech, ir.len);
	(void)sasl_inline(SASL_FRAME_POP3, mech, ir.len);
	buf_wipe(&ir);

	for (n = 0; n < CHALLENGES_MAX && fz_line(&data, &size, &line, &len);
	    n++) {
		buf_init(&enc, 4 * len + 8);
		if (raw) {
			FZ_CHECK(b64_encode(&enc, line, len, &ei) == ST_OK);
			line = enc.data ? enc.data : "";
			len = enc.len;
		}
		buf_init(&resp, 4096);
		st_clear(&ei);
		if (sasl_step(&s, line, len, &resp, &ei) != ST_OK) {
			FZ_CHECK(ei.st != ST_OK && fz_terminated(ei.msg,
			    sizeof(ei.msg)));
			buf_wipe(&resp);
			buf_free(&enc);
			break;
		}
		for (i = 0; i < resp.len; i++)
			FZ_CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			    "abcdefghijklmnopqrstuvwxyz0123456789+/=",
			    resp.data[i]) != NULL && resp.data[i] != '\0');
		FZ_CHECK(s.fail >= SASL_FAIL_NONE && s.fail <= SASL_FAIL_OTHER);
		check_field(s.fail_status, sizeof(s.fail_status));
		check_field(s.fail_scope, sizeof(s.fail_scope));
		check_field(s.fail_schemes, sizeof(s.fail_schemes));
		check_field(s.fail_msg, sizeof(s.fail_msg));
		buf_wipe(&resp);
		buf_free(&enc);
	}
	sasl_free(&s);
	return 0;
}
