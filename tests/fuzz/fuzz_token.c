/*
 * fuzz_token.c: the token file (token_parse(), token_format() in
 * src/token.h).
 *
 * Promises checked: a file that parses formats again (token_parse()
 * refuses whatever token_format() would), and the formatted file parses
 * back to the same token; every value held is a printable string; a
 * failure leaves the token empty.
 */
#include "config.h"

#include "buf.h"
#include "status.h"
#include "token.h"

#include "fuzz.h"

static bool
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errinfo ei;
	struct token tok, again;
	struct buf out;
	char *s;

	s = fz_strndup(data, size < 256 ? size : 256);
	(void)token_valid_value(s);
	free(s);

	st_clear(&ei);
	if (token_parse((const char *)data, size, &tok, &ei) != ST_OK) {
		FZ_CHECK(ei.st != ST_OK);
		FZ_CHECK(tok.access_token == NULL && tok.refresh_token == NULL &&
		    tok.scope == NULL && tok.user == NULL);
		token_free(&tok);
		return 0;
	}
	FZ_CHECK(tok.access_token == NULL ||
	    token_valid_value(tok.access_token));
	FZ_CHECK(tok.refresh_token == NULL ||
	    token_valid_value(tok.refresh_token));
	FZ_CHECK(tok.scope == NULL || !fz_has_ctl(tok.scope, false));
	FZ_CHECK(tok.user == NULL || !fz_has_ctl(tok.user, false));
	(void)token_stale(&tok, 1764155719, TOKEN_MARGIN);

	buf_init(&out, TOKEN_FILE_MAX);
	st_clear(&ei);
	if (token_format(&tok, &out, &ei) != ST_OK) {
		fprintf(stderr, "parsed token does not format: %s\n", ei.msg);
		FZ_CHECK(!"a parsed token formats");
	}
	st_clear(&ei);
	if (token_parse(out.data ? out.data : "", out.len, &again, &ei) !=
	    ST_OK) {
		fprintf(stderr, "formatted token does not parse: %s\n",
		    ei.msg);
		FZ_CHECK(!"a formatted token parses");
	}
	FZ_CHECK(same_str(tok.access_token, again.access_token));
	FZ_CHECK(same_str(tok.refresh_token, again.refresh_token));
	FZ_CHECK(same_str(tok.scope, again.scope));
	FZ_CHECK(same_str(tok.user, again.user));
	FZ_CHECK(tok.expires == again.expires);
	FZ_CHECK(tok.obtained == again.obtained);
	FZ_CHECK(tok.authorized == again.authorized);
	buf_wipe(&out);
	token_free(&again);
	token_free(&tok);
	return 0;
}
