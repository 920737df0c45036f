/*
 * base64.c: RFC 4648 base64 (section 4) and base64url (section 5).
 *
 * Decoding is strict on purpose (RFC 4648 section 3.3 and 3.5): what we
 * decode comes from servers and is later compared or parsed, so there is
 * exactly one accepted spelling of any byte string.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>

#include "base64.h"

static const char b64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t
b64_encoded_len(size_t n)
{
	if (n > (SIZE_MAX - 2) / 4 * 3)
		return 0;
	return (n + 2) / 3 * 4;
}

static enum status
b64_encode_with(struct buf *out, const unsigned char *in, size_t n,
    const char *alpha, bool pad, struct errinfo *ei)
{
	char q[4];
	size_t i, oldlen = out->len, need;
	unsigned v;
	enum status st;

	if ((need = b64_encoded_len(n)) == 0 && n != 0)
		return st_error(ei, ST_LIMIT, "base64 input too long");
	/* Check the limit first so a long input fails before any work. */
	if (need > out->max - out->len)
		return st_error(ei, ST_LIMIT,
		    "base64 output exceeds %zu bytes", out->max);
	/*
	 * One allocation for the whole output: growing step by step would
	 * leave a trail of partial copies (of a token, in a SASL response)
	 * in freed blocks, and costs time besides.
	 */
	if (need > 0 && (st = buf_reserve(out, need, ei)) != ST_OK)
		return st;
	for (i = 0; i + 3 <= n; i += 3) {
		v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 |
		    in[i + 2];
		q[0] = alpha[v >> 18 & 63];
		q[1] = alpha[v >> 12 & 63];
		q[2] = alpha[v >> 6 & 63];
		q[3] = alpha[v & 63];
		if ((st = buf_add(out, q, 4, ei)) != ST_OK)
			goto fail;
	}
	if (i < n) {
		v = (unsigned)in[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)in[i + 1] << 8;
		q[0] = alpha[v >> 18 & 63];
		q[1] = alpha[v >> 12 & 63];
		q[2] = i + 1 < n ? alpha[v >> 6 & 63] : '=';
		q[3] = '=';
		if (!pad)
			st = buf_add(out, q, i + 1 < n ? 3 : 2, ei);
		else
			st = buf_add(out, q, 4, ei);
		if (st != ST_OK)
			goto fail;
	}
	return ST_OK;
fail:
	out->len = oldlen;
	if (out->data != NULL)
		out->data[oldlen] = '\0';
	return st;
}

enum status
b64_encode(struct buf *out, const void *in, size_t n, struct errinfo *ei)
{
	return b64_encode_with(out, in, n, b64_std, true, ei);
}

enum status
b64url_encode(struct buf *out, const void *in, size_t n, struct errinfo *ei)
{
	return b64_encode_with(out, in, n, b64_url, false, ei);
}

static int
b64_value(unsigned char c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

static bool
b64_is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * One pass: collect sextets in groups of four, allow '=' only as the
 * final one or two characters of the last group, and check that the
 * bits a short final group leaves over are zero.
 */
static enum status
b64_decode_with(struct buf *out, const char *in, size_t n, enum b64_ws ws,
    bool url, struct errinfo *ei)
{
	unsigned char o[3];
	unsigned v = 0;
	size_t i, oldlen = out->len, nq = 0, npad = 0, want;
	int d;
	enum status st = ST_OK;

	/* Room for the most it can decode to, at once (see the encoder). */
	want = n / 4 * 3 + 3;
	if (want > out->max - out->len)
		want = out->max - out->len;
	if (n > 0 && (st = buf_reserve(out, want, ei)) != ST_OK)
		return st;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if (b64_is_ws(c)) {
			if (ws == B64_WS_SKIP)
				continue;
			st = st_error(ei, ST_PROTO,
			    "base64: whitespace at offset %zu", i);
			goto fail;
		}
		if (c == '=') {
			npad++;
			continue;
		}
		if (npad > 0) {
			st = st_error(ei, ST_PROTO,
			    "base64: data after padding at offset %zu", i);
			goto fail;
		}
		if ((d = b64_value(c, url)) < 0) {
			st = st_error(ei, ST_PROTO,
			    "base64: invalid character at offset %zu", i);
			goto fail;
		}
		v = v << 6 | (unsigned)d;
		if (++nq == 4) {
			o[0] = v >> 16 & 0xff;
			o[1] = v >> 8 & 0xff;
			o[2] = v & 0xff;
			if ((st = buf_add(out, o, 3, ei)) != ST_OK)
				goto fail;
			nq = 0;
			v = 0;
		}
	}
	/* nq is what the last group holds: 0, 2 or 3 are possible. */
	if (nq == 1) {
		st = st_error(ei, ST_PROTO, "base64: truncated input");
		goto fail;
	}
	if (npad > 0 && (nq == 0 || nq + npad != 4)) {
		st = st_error(ei, ST_PROTO, "base64: wrong padding");
		goto fail;
	}
	if (!url && nq != 0 && npad == 0) {
		st = st_error(ei, ST_PROTO, "base64: missing padding");
		goto fail;
	}
	if (nq == 2) {
		if ((v & 0xf) != 0) {
			st = st_error(ei, ST_PROTO,
			    "base64: non-canonical end");
			goto fail;
		}
		o[0] = v >> 4 & 0xff;
		st = buf_add(out, o, 1, ei);
	} else if (nq == 3) {
		if ((v & 0x3) != 0) {
			st = st_error(ei, ST_PROTO,
			    "base64: non-canonical end");
			goto fail;
		}
		o[0] = v >> 10 & 0xff;
		o[1] = v >> 2 & 0xff;
		st = buf_add(out, o, 2, ei);
	}
	if (st != ST_OK)
		goto fail;
	return ST_OK;
fail:
	/* Decoded bytes may be a secret: wipe what we added. */
	if (out->data != NULL && out->len > oldlen)
		st_wipe(out->data + oldlen, out->len - oldlen);
	out->len = oldlen;
	if (out->data != NULL)
		out->data[oldlen] = '\0';
	return st;
}

enum status
b64_decode(struct buf *out, const char *in, size_t n, enum b64_ws ws,
    struct errinfo *ei)
{
	return b64_decode_with(out, in, n, ws, false, ei);
}

enum status
b64url_decode(struct buf *out, const char *in, size_t n, enum b64_ws ws,
    struct errinfo *ei)
{
	return b64_decode_with(out, in, n, ws, true, ei);
}
