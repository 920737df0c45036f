/*
 * fuzz_rfc5322_list.c: address lists and single mailboxes
 * (rfc5322_parse_list(), rfc5322_parse_one() in src/rfc5322.h).
 *
 * The first byte picks the flags, the entry point and max_addrs.
 *
 * Promises checked: no parsed string holds a control byte but TAB
 * (nothing can smuggle a header line or an SMTP command), is_utf8 is
 * right, addresses fit
 * RFC5322_ADDR_MAX, a failure leaves the list as it was, and a parsed
 * mailbox that rfc5322_format_addr() accepts parses back to the same
 * address.
 */
#include "config.h"

#include "buf.h"
#include "rfc5322.h"
#include "status.h"

#include "fuzz.h"

static void
check_addr(const struct rfc5322_addr *a, unsigned flags)
{
	struct errinfo ei;
	struct buf out;
	struct rfc5322_addr again;

	FZ_CHECK(a->addr != NULL);
	FZ_CHECK(strlen(a->addr) <= RFC5322_ADDR_MAX);
	/* TAB may stand in a quoted local part (RFC 5322 FWS); nothing else. */
	FZ_CHECK(!fz_has_ctl(a->addr, true));
	{
		const unsigned char *p;
		bool hi = false;

		for (p = (const unsigned char *)a->addr; *p != '\0'; p++)
			hi = hi || *p >= 0x80;
		FZ_CHECK(hi == a->is_utf8);
	}
	FZ_CHECK(a->addr[0] != '\0' || (flags & RFC5322_NULL_OK));
	FZ_CHECK(a->name == NULL || !fz_has_ctl(a->name, true));
	FZ_CHECK(a->comment == NULL || !fz_has_ctl(a->comment, true));
	FZ_CHECK(a->group == NULL || !fz_has_ctl(a->group, true));
	(void)rfc5322_addr_display(a);

	/* What we write about a parsed mailbox must read back the same
	 * (the null sender "<>" has no header form: skip it). */
	if (a->addr[0] == '\0')
		return;
	st_clear(&ei);
	buf_init(&out, 4 * RFC5322_INPUT_MAX);
	if (rfc5322_format_addr(&out, a->name, a->addr, &ei) == ST_OK) {
		memset(&again, 0, sizeof(again));
		st_clear(&ei);
		if (rfc5322_parse_one(out.data, out.len, RFC5322_NULL_OK,
		    &again, &ei) != ST_OK) {
			fprintf(stderr, "formatted <%s> does not parse: %s\n",
			    out.data, ei.msg);
			FZ_CHECK(!"format_addr output parses");
		}
		if (strcmp(again.addr, a->addr) != 0) {
			fprintf(stderr, "<%s> came back as <%s>\n", a->addr,
			    again.addr);
			FZ_CHECK(!"format_addr output parses to the same");
		}
		rfc5322_addr_free(&again);
	}
	buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errinfo ei;
	struct rfc5322_list l = { NULL, 0 };
	struct rfc5322_addr one;
	const char *in;
	size_t i, max, before;
	unsigned sel, flags;
	enum status st;

	sel = fz_byte(&data, &size);
	flags = (sel & 1) ? RFC5322_NULL_OK : 0;
	max = (sel & 0x80) ? ((sel >> 2) & 7) : RFC5322_MAX_ADDRS;
	in = (const char *)data;

	st_clear(&ei);
	if (sel & 2) {
		memset(&one, 0, sizeof(one));
		if (rfc5322_parse_one(in, size, flags, &one, &ei) == ST_OK)
			check_addr(&one, flags);
		else
			FZ_CHECK(ei.st != ST_OK);
		rfc5322_addr_free(&one);
		return 0;
	}

	/* Twice into the same list: the second appends. */
	for (i = 0; i < 2; i++) {
		before = l.n;
		st_clear(&ei);
		st = rfc5322_parse_list(in, size, max, flags, &l, &ei);
		if (st != ST_OK) {
			FZ_CHECK(ei.st == st);
			FZ_CHECK(l.n == before);
			break;
		}
		FZ_CHECK(l.n <= max);
	}
	for (i = 0; i < l.n; i++)
		check_addr(&l.v[i], flags);
	rfc5322_list_free(&l);
	FZ_CHECK(l.v == NULL && l.n == 0);
	return 0;
}
