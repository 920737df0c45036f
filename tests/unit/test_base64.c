/* Unit tests: base64 and base64url (RFC 4648 vectors, strict decoding). */
#include "config.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "tap.h"

static const struct {
	const char *plain, *b64, *url;
} vec[] = {
	/* RFC 4648 section 10 */
	{ "", "", "" },
	{ "f", "Zg==", "Zg" },
	{ "fo", "Zm8=", "Zm8" },
	{ "foo", "Zm9v", "Zm9v" },
	{ "foob", "Zm9vYg==", "Zm9vYg" },
	{ "fooba", "Zm9vYmE=", "Zm9vYmE" },
	{ "foobar", "Zm9vYmFy", "Zm9vYmFy" },
	/* the two characters where the alphabets differ */
	{ "\xfb\xff\xbf", "+/+/", "-_-_" },
	{ "\x00\x01\x02", "AAEC", "AAEC" },
};

/*
 * Count the blocks given back to free() while `watching`: a secret
 * buffer gives its old block to free() each time it grows, so this
 * counts growth steps.  Skipped under AddressSanitizer, whose own
 * free() this would shadow.
 */
#ifndef __SANITIZE_ADDRESS__
static int watching, frees_seen;

void
free(void *p)
{
	static void (*real_free)(void *);
	static int resolving;

	if (p == NULL)
		return;
	if (real_free == NULL) {
		if (resolving)
			return;
		resolving = 1;
		*(void **)&real_free = dlsym(RTLD_NEXT, "free");
		resolving = 0;
		if (real_free == NULL)
			return;
	}
	if (watching)
		frees_seen++;
	real_free(p);
}
#endif

static void
test_one_allocation(void)
{
#ifndef __SANITIZE_ADDRESS__
	static char in[6000];
	struct errinfo ei;
	struct buf b, d;

	memset(in, 'k', sizeof(in));
	st_clear(&ei);
	buf_init_secret(&b, 64 * 1024);
	buf_init_secret(&d, 64 * 1024);
	frees_seen = 0;
	watching = 1;
	is_int(b64_encode(&b, in, sizeof(in), &ei), ST_OK, "encode 6000 bytes");
	is_int(b64_decode(&d, b.data, b.len, B64_WS_REFUSE, &ei), ST_OK,
	    "decode them back");
	watching = 0;
	is_int(frees_seen, 0, "each output was allocated once, not grown");
	ok(d.len == sizeof(in) && memcmp(d.data, in, sizeof(in)) == 0,
	    "round trip");
	buf_free(&b);
	buf_free(&d);
#else
	ok(1, "# SKIP free() watch under AddressSanitizer");
#endif
}

static const char *
enc(int url, const char *s, size_t n)
{
	static struct buf b;
	struct errinfo ei;

	buf_free(&b);
	buf_init(&b, 4096);
	st_clear(&ei);
	if ((url ? b64url_encode : b64_encode)(&b, s, n, &ei) != ST_OK)
		return NULL;
	return b.data != NULL ? b.data : "";
}

/* Decode; returns the status, result in *out (freed by the next call). */
static enum status
dec(int url, const char *s, enum b64_ws ws, struct buf *out)
{
	struct errinfo ei;

	buf_free(out);
	buf_init(out, 4096);
	st_clear(&ei);
	return (url ? b64url_decode : b64_decode)(out, s, strlen(s), ws, &ei);
}

static int
dec_is(int url, const char *s, enum b64_ws ws, const char *want, size_t wantlen)
{
	struct buf b = { 0 };
	int r;

	r = dec(url, s, ws, &b) == ST_OK && b.len == wantlen &&
	    (wantlen == 0 || memcmp(b.data, want, wantlen) == 0);
	buf_free(&b);
	return r;
}

static int
dec_fails(int url, const char *s, enum b64_ws ws)
{
	struct buf b = { 0 };
	enum status st;

	buf_init(&b, 4096);
	buf_adds(&b, "keep", NULL);
	st = (url ? b64url_decode : b64_decode)(&b, s, strlen(s), ws, NULL);
	/* A failure leaves what was in the buffer alone. */
	st = st == ST_PROTO && b.len == 4 && strcmp(b.data, "keep") == 0;
	buf_free(&b);
	return st;
}

int
main(void)
{
	struct buf b;
	struct errinfo ei;
	size_t i, n;
	char *big;

	test_one_allocation();

	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		n = i < 7 ? strlen(vec[i].plain) : 3;
		is_str(enc(0, vec[i].plain, n), vec[i].b64, "encode '%s'",
		    vec[i].b64);
		is_str(enc(1, vec[i].plain, n), vec[i].url, "url encode '%s'",
		    vec[i].url);
		ok(dec_is(0, vec[i].b64, B64_WS_REFUSE, vec[i].plain, n),
		    "decode '%s'", vec[i].b64);
		ok(dec_is(1, vec[i].url, B64_WS_REFUSE, vec[i].plain, n),
		    "url decode '%s'", vec[i].url);
		is_int(b64_encoded_len(n), strlen(vec[i].b64),
		    "encoded length of %zu bytes", n);
	}
	ok(dec_is(1, "Zg==", B64_WS_REFUSE, "f", 1), "url: padding optional");
	ok(dec_is(1, "Zm8=", B64_WS_REFUSE, "fo", 2), "url: padding accepted");

	/* Strictness. */
	ok(dec_fails(0, "Zg", B64_WS_REFUSE), "std: missing padding refused");
	ok(dec_fails(0, "Zg=", B64_WS_REFUSE), "std: short padding refused");
	ok(dec_fails(0, "Zg===", B64_WS_REFUSE), "std: long padding refused");
	ok(dec_fails(0, "Zm9v=", B64_WS_REFUSE), "std: padding after full group");
	ok(dec_fails(0, "Z===", B64_WS_REFUSE), "std: one char and pads");
	ok(dec_fails(0, "Z", B64_WS_REFUSE), "std: one char");
	ok(dec_fails(0, "Zm9vY", B64_WS_REFUSE), "std: 5 chars");
	ok(dec_fails(0, "Zg==Zg==", B64_WS_REFUSE), "std: data after padding");
	ok(dec_fails(0, "=", B64_WS_REFUSE), "std: lone pad");
	ok(dec_fails(0, "Zh==", B64_WS_REFUSE), "non-zero spare bits (1 byte)");
	ok(dec_fails(0, "Zm9=", B64_WS_REFUSE), "non-zero spare bits (2 bytes)");
	ok(dec_fails(0, "Zm9v!A==", B64_WS_REFUSE), "garbage character");
	ok(dec_fails(0, "-_-_", B64_WS_REFUSE), "url alphabet in std");
	ok(dec_fails(1, "+/+/", B64_WS_REFUSE), "std alphabet in url");
	ok(dec_fails(1, "Zg=", B64_WS_REFUSE), "url: wrong padding");
	ok(dec_fails(0, "Zm9v\n", B64_WS_REFUSE), "newline refused");
	ok(dec_fails(0, "Zm 9v", B64_WS_REFUSE), "space refused");
	ok(dec_is(0, " Zm9v\r\nYmFy\t", B64_WS_SKIP, "foobar", 6),
	    "whitespace skipped on request");
	ok(dec_fails(0, "Zm9v\x01", B64_WS_SKIP), "control byte refused");
	{
		struct buf d = { 0 };
		buf_init(&d, 10);
		ok(b64_decode(&d, "Zm9v\0Zm9v", 9, B64_WS_SKIP, NULL) ==
		    ST_PROTO, "embedded NUL refused");
		buf_free(&d);
	}
	ok(dec_is(0, "AGEAYg==", B64_WS_REFUSE, "\0a\0b", 4),
	    "decoded NULs kept");

	/* Limits. */
	buf_init(&b, 8);
	st_clear(&ei);
	is_int(b64_encode(&b, "foobar", 6, &ei), ST_OK, "8 chars fit max 8");
	buf_free(&b);
	buf_init(&b, 7);
	st_clear(&ei);
	is_int(b64_encode(&b, "foobar", 6, &ei), ST_LIMIT,
	    "encode past the maximum is ST_LIMIT");
	is_int(b.len, 0, "buffer unchanged");
	buf_free(&b);
	buf_init(&b, 5);
	st_clear(&ei);
	is_int(b64_decode(&b, "Zm9vYmFy", 8, B64_WS_REFUSE, &ei), ST_LIMIT,
	    "decode past the maximum is ST_LIMIT");
	is_int(b.len, 0, "buffer unchanged");
	buf_free(&b);

	/* Appends; round trip of every byte value, long input. */
	n = 3 * 1000 + 2;
	big = malloc(n);
	for (i = 0; i < n; i++)
		big[i] = (char)(i * 7 + 3);
	buf_init(&b, 100000);
	st_clear(&ei);
	buf_adds(&b, ">", &ei);
	ok(b64_encode(&b, big, n, &ei) == ST_OK && b.len == 1 +
	    b64_encoded_len(n), "long encode");
	{
		struct buf d;
		buf_init(&d, n);
		ok(b64_decode(&d, b.data + 1, b.len - 1, B64_WS_REFUSE, &ei) ==
		    ST_OK && d.len == n && memcmp(d.data, big, n) == 0,
		    "long round trip");
		buf_free(&d);
	}
	buf_free(&b);
	buf_init(&b, 100000);
	ok(b64url_encode(&b, big, n, &ei) == ST_OK && strchr(b.data, '=') ==
	    NULL && strchr(b.data, '+') == NULL && strchr(b.data, '/') == NULL,
	    "url encoding has no '=', '+', '/'");
	{
		struct buf d;
		buf_init(&d, n);
		ok(b64url_decode(&d, b.data, b.len, B64_WS_REFUSE, &ei) ==
		    ST_OK && d.len == n && memcmp(d.data, big, n) == 0,
		    "long url round trip");
		buf_free(&d);
	}
	buf_free(&b);
	free(big);
	enc(0, "", 0);
	return tap_done();
}
