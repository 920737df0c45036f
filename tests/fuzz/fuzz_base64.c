/*
 * fuzz_base64.c: the base64 and base64url decoders (src/base64.h).
 *
 * Promises checked: a strict decode (no whitespace) is canonical, so
 * encoding its result gives the input back; a failed decode leaves the
 * output buffer as it was; encoding any bytes and decoding them gives
 * the bytes back; b64_encoded_len() is the encoder's length.
 */
#include "config.h"

#include "base64.h"
#include "buf.h"
#include "status.h"

#include "fuzz.h"

typedef enum status (*decoder)(struct buf *, const char *, size_t,
    enum b64_ws, struct errinfo *);

static void
decode(decoder dec, bool url, const char *in, size_t n, enum b64_ws ws,
    size_t max)
{
	struct errinfo ei;
	struct buf out, back;
	size_t canon;
	enum status st;

	st_clear(&ei);
	buf_init(&out, max + 1);
	/* Something already there, which a failure must leave alone. */
	FZ_CHECK(buf_add(&out, "x", 1, &ei) == ST_OK);
	st = dec(&out, in, n, ws, &ei);
	if (st != ST_OK) {
		FZ_CHECK(ei.st == st);
		FZ_CHECK(st == ST_PROTO || st == ST_LIMIT);
		FZ_CHECK(out.len == 1 && out.data[0] == 'x' &&
		    out.data[1] == '\0');
		buf_free(&out);
		return;
	}
	FZ_CHECK(out.len >= 1 && out.len - 1 <= n / 4 * 3 + 2);
	FZ_CHECK(out.data[out.len] == '\0');
	if (ws == B64_WS_REFUSE) {
		/* Canonical: the encoding of what came out is the input. */
		buf_init(&back, 2 * n + 8);
		st_clear(&ei);
		if (url)
			FZ_CHECK(b64url_encode(&back, out.data + 1,
			    out.len - 1, &ei) == ST_OK);
		else
			FZ_CHECK(b64_encode(&back, out.data + 1, out.len - 1,
			    &ei) == ST_OK);
		canon = n;
		if (url)	/* padding is optional, and we never write it */
			while (canon > 0 && in[canon - 1] == '=')
				canon--;
		FZ_CHECK(back.len == canon);
		FZ_CHECK(canon == 0 || memcmp(back.data, in, canon) == 0);
		buf_free(&back);
	}
	buf_free(&out);
}

static void
roundtrip(const uint8_t *data, size_t size, bool url)
{
	struct errinfo ei;
	struct buf enc, dec;

	st_clear(&ei);
	buf_init(&enc, 2 * size + 8);
	buf_init(&dec, size + 1);
	if (url)
		FZ_CHECK(b64url_encode(&enc, data, size, &ei) == ST_OK);
	else {
		FZ_CHECK(b64_encode(&enc, data, size, &ei) == ST_OK);
		FZ_CHECK(enc.len == b64_encoded_len(size));
	}
	if (url)
		FZ_CHECK(b64url_decode(&dec, enc.data ? enc.data : "", enc.len,
		    B64_WS_REFUSE, &ei) == ST_OK);
	else
		FZ_CHECK(b64_decode(&dec, enc.data ? enc.data : "", enc.len,
		    B64_WS_REFUSE, &ei) == ST_OK);
	FZ_CHECK(dec.len == size);
	FZ_CHECK(size == 0 || memcmp(dec.data, data, size) == 0);
	buf_free(&enc);
	buf_free(&dec);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in;
	size_t max;
	unsigned flags;

	flags = fz_byte(&data, &size);
	in = (const char *)data;
	/* Mostly room enough; sometimes a small maximum to hit ST_LIMIT. */
	max = (flags & 0x80) ? (flags & 0x3f) : size;

	decode(b64_decode, false, in, size, B64_WS_REFUSE, max);
	decode(b64_decode, false, in, size, B64_WS_SKIP, max);
	decode(b64url_decode, true, in, size, B64_WS_REFUSE, max);
	decode(b64url_decode, true, in, size, B64_WS_SKIP, max);
	roundtrip(data, size, false);
	roundtrip(data, size, true);
	return 0;
}
