/*
 * fuzz_aliases.c: the aliases file (aliases_parse(), aliases_expand() in
 * src/aliases.h).
 *
 * The input is the file; each alias name it seems to define (the text
 * before a colon at the start of a line), and a few usual ones, are
 * expanded, with and without a domain.
 *
 * Promises checked: an expansion has no duplicates (ignoring case), no
 * empty address, no control byte but TAB, and stays within ALIASES_RCPTS_MAX;
 * a failed parse leaves no table.
 */
#include "config.h"

#include <strings.h>

#include "aliases.h"
#include "status.h"

#include "fuzz.h"

#define NAMES_MAX	16

static void
expand(const struct aliases *a, const char *name, const char *domain)
{
	struct errinfo ei;
	struct aliases_rcpts r = { NULL, 0 };
	size_t i, j;

	st_clear(&ei);
	if (aliases_expand(a, name, domain, &r, &ei) == ST_OK) {
		FZ_CHECK(r.n <= ALIASES_RCPTS_MAX);
		for (i = 0; i < r.n; i++) {
			FZ_CHECK(r.v[i] != NULL && r.v[i][0] != '\0');
			FZ_CHECK(!fz_has_ctl(r.v[i], true));
			FZ_CHECK(aliases_rcpts_has(&r, r.v[i]));
			for (j = 0; j < i; j++)
				FZ_CHECK(strcasecmp(r.v[i], r.v[j]) != 0);
		}
	} else
		FZ_CHECK(ei.st != ST_OK);
	aliases_rcpts_free(&r);
	FZ_CHECK(r.v == NULL && r.n == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const usual[] = { "root", "postmaster", "ROOT",
	    "nobody", "default", "a@b.example" };
	struct errinfo ei;
	struct aliases *a = NULL;
	const char *line;
	char *names[NAMES_MAX];
	size_t n = 0, i, len, k;
	const uint8_t *p = data;
	size_t left = size;

	st_clear(&ei);
	if (aliases_parse((const char *)data, size, "fuzz", &a, &ei) !=
	    ST_OK) {
		FZ_CHECK(ei.st != ST_OK && a == NULL);
		return 0;
	}
	(void)aliases_count(a);
	while (n < NAMES_MAX && fz_line(&p, &left, &line, &len)) {
		for (k = 0; k < len && line[k] != ':'; k++)
			;
		if (k < len && k > 0 && k < 64) {
			/* What the sendmail side passes: a parsed local
			   part, which holds no control byte but TAB. */
			names[n] = fz_strndup(line, k);
			if (fz_has_ctl(names[n], true))
				free(names[n]);
			else
				n++;
		}
	}
	for (i = 0; i < n; i++) {
		expand(a, names[i], "example.com");
		expand(a, names[i], NULL);
		free(names[i]);
	}
	for (i = 0; i < sizeof(usual) / sizeof(usual[0]); i++) {
		expand(a, usual[i], "example.com");
		expand(a, usual[i], NULL);
	}
	expand(NULL, "root", "example.com");
	aliases_free(a);
	return 0;
}
