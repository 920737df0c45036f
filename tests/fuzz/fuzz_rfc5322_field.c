/*
 * fuzz_rfc5322_field.c: one raw header field, split and unfolded
 * (rfc5322_field_split() in src/rfc5322.h), then its value parsed as an
 * address list as the -t extractor does.
 *
 * Promises checked: the name points into the input and holds only bytes
 * 33..126; the unfolded value holds no CR or LF; rfc5322_field_is()
 * agrees with the split; a failure has a status.
 */
#include "config.h"

#include "buf.h"
#include "rfc5322.h"
#include "status.h"

#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "To", "Cc", "Bcc", "From",
	    "Resent-To", "Subject" };
	struct errinfo ei;
	struct buf value;
	struct rfc5322_list l = { NULL, 0 };
	const char *raw = (const char *)data, *name = NULL;
	size_t namelen = 0, i, max;
	unsigned sel;

	sel = fz_byte(&data, &size);
	raw = (const char *)data;
	max = (sel & 0x80) ? (sel & 0x7f) : size + 1;

	st_clear(&ei);
	buf_init(&value, max);
	if (rfc5322_field_split(raw, size, &name, &namelen, &value, &ei) !=
	    ST_OK) {
		FZ_CHECK(ei.st == ST_DATAERR || ei.st == ST_LIMIT);
		buf_free(&value);
		return 0;
	}
	FZ_CHECK(name >= raw && namelen > 0 && name + namelen <= raw + size);
	for (i = 0; i < namelen; i++)
		FZ_CHECK(name[i] >= 33 && name[i] <= 126 && name[i] != ':');
	FZ_CHECK(value.len == 0 || value.data[value.len] == '\0');
	FZ_CHECK(value.len == 0 || (memchr(value.data, '\r', value.len) ==
	    NULL && memchr(value.data, '\n', value.len) == NULL));
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		FZ_CHECK(rfc5322_field_is(raw, size, names[i]) ==
		    rfc5322_name_is(name, namelen, names[i]));

	st_clear(&ei);
	if (rfc5322_parse_list(value.data ? value.data : "", value.len,
	    RFC5322_MAX_ADDRS, 0, &l, &ei) == ST_OK)
		for (i = 0; i < l.n; i++)
			FZ_CHECK(!fz_has_ctl(l.v[i].addr, true));
	rfc5322_list_free(&l);
	buf_free(&value);
	return 0;
}
