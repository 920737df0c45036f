/*
 * base64.h: base64 and base64url (RFC 4648 sections 4 and 5).
 *
 * Encoders append to a struct buf, so the caller's maximum bounds the
 * output.  Decoders are strict: a byte outside the alphabet, misplaced or
 * missing padding, a length that cannot be base64, or non-zero bits left
 * over in the last character (RFC 4648 section 3.5) are all errors, so two
 * different strings never decode to the same bytes.  Whitespace is
 * refused unless the caller asks for it to be skipped.
 *
 * Decoding errors are ST_PROTO: the usual input is a server's challenge.
 * The error text never quotes the input (it may be a secret).
 */
#ifndef BEARMAIL_BASE64_H
#define BEARMAIL_BASE64_H

#include <stddef.h>

#include "buf.h"
#include "status.h"

enum b64_ws {
	B64_WS_REFUSE,	/* any whitespace is an error (protocol payloads) */
	B64_WS_SKIP	/* space, tab, CR and LF anywhere are ignored (files) */
};

/* Length of the padded base64 encoding of n bytes (0 if it would overflow). */
size_t b64_encoded_len(size_t n);

/*
 * Append the padded base64 encoding of in[0..n) to out (NUL-terminated
 * as every buf).  ST_LIMIT past out's maximum (out unchanged), ST_SYS on
 * ENOMEM.
 */
enum status b64_encode(struct buf *out, const void *in, size_t n,
    struct errinfo *ei);

/* Same with the URL-safe alphabet ('-', '_') and no padding (PKCE, JWT). */
enum status b64url_encode(struct buf *out, const void *in, size_t n,
    struct errinfo *ei);

/*
 * Append the bytes that in[0..n) encodes (standard alphabet, padding
 * required) to out.  The decoded bytes may contain NULs.  ST_PROTO for
 * malformed input, ST_LIMIT past out's maximum; on failure out is left
 * as it was.
 */
enum status b64_decode(struct buf *out, const char *in, size_t n,
    enum b64_ws ws, struct errinfo *ei);

/* Same for base64url; padding is optional but, if present, must be right. */
enum status b64url_decode(struct buf *out, const char *in, size_t n,
    enum b64_ws ws, struct errinfo *ei);

#endif
