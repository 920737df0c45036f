/*
 * fuzz_smtp_reply.c: the SMTP reply reader (smtp_reply_feed(),
 * smtp_enhanced_parse(), smtp_status() in src/smtp.h).
 *
 * One reply line per input line, fed as the client feeds them: each is
 * NUL-terminated like the line buffer conn hands over.  A finished or
 * refused reply starts a new one.
 *
 * Promises checked: a finished reply has a code in 200..599 and the same
 * first digit as its enhanced code; its text is NUL-terminated and free
 * of control characters; smtp_status() gives ST_OK exactly for 2xx/3xx
 * and a valid status otherwise, in every phase.
 */
#include "config.h"

#include "smtp.h"
#include "status.h"

#include "fuzz.h"

static void
check_reply(const struct smtp_reply *r)
{
	enum status st;
	int ph;

	FZ_CHECK(r->code >= 200 && r->code <= 559);
	FZ_CHECK(r->nlines >= 1 && r->nlines <= SMTP_REPLY_LINES_MAX);
	FZ_CHECK(fz_terminated(r->enh, sizeof(r->enh)));
	FZ_CHECK(r->enh[0] == '\0' || r->enh[0] == '0' + r->code / 100);
	FZ_CHECK(fz_terminated(r->text, sizeof(r->text)));
	FZ_CHECK(!fz_has_ctl(r->text, false));
	for (ph = 0; ph < SMTP_PH__COUNT; ph++) {
		st = smtp_status((enum smtp_phase)ph, r);
		FZ_CHECK(st >= ST_OK && st < ST__COUNT);
		if (r->code < 400)
			FZ_CHECK(st == ST_OK);
		else
			FZ_CHECK(st != ST_OK);
		(void)smtp_phase_name((enum smtp_phase)ph);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errinfo ei;
	struct smtp_reply r;
	const char *line, *text;
	char *copy, enh[SMTP_ENH_MAX];
	size_t len, skip;

	smtp_reply_init(&r);
	while (fz_line(&data, &size, &line, &len)) {
		if (len > 0 && line[len - 1] == '\r')
			len--;
		copy = fz_strndup(line, len);
		st_clear(&ei);
		text = NULL;
		if (smtp_reply_feed(&r, copy, len, &text, &ei) != ST_OK) {
			FZ_CHECK(ei.st == ST_PROTO);
			smtp_reply_init(&r);
		} else {
			FZ_CHECK(text != NULL && text >= copy &&
			    text <= copy + len);
			skip = smtp_enhanced_parse(text, r.code, enh);
			FZ_CHECK(skip <= strlen(text));
			FZ_CHECK(fz_terminated(enh, sizeof(enh)));
			if (r.done) {
				check_reply(&r);
				smtp_reply_init(&r);
			}
		}
		free(copy);
	}
	return 0;
}
