/*
 * tls.h: the only door to mbedTLS.
 *
 * Holds the trust anchors and the random generator (struct tls_ctx, one
 * per process, created when first needed: parsing the system bundle
 * costs milliseconds that runs without TLS should not pay), one TLS
 * session per connection (struct tls), and the few other primitives the
 * rest of bearmail needs from the crypto library: random bytes, SHA-256
 * and RS256 signatures (for PKCE and service-account JWTs).
 *
 * Policy, not options: TLS 1.2 or newer, the peer certificate always
 * verified, the host name always checked.
 *
 * Builds against mbedTLS 2.28 (Debian 12) and 3.x; version differences
 * stay inside tls.c.
 */
#ifndef BEARMAIL_TLS_H
#define BEARMAIL_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "status.h"

struct tls_ctx;
struct tls;

/* Where the trust anchors come from when ca_file is not set. */
#define TLS_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

/*
 * Trust anchors from ca_file (PEM, one or many), or the system bundle
 * when ca_file is NULL.  ST_CONFIG if the file cannot be read or holds no
 * certificate.
 */
enum status tls_ctx_new(struct tls_ctx **out, const char *ca_file,
    struct errinfo *ei);
void tls_ctx_free(struct tls_ctx *ctx);

/*
 * The I/O a session runs over: the connection's socket and the deadline
 * (CLOCK_MONOTONIC) of the current operation, which the caller moves
 * forward before each operation.
 */
struct tls_io {
	int fd;
	struct timespec deadline;
};

/*
 * Handshake as a client on io->fd, verifying the chain and that the
 * certificate is for host.  ST_TLS with the reason (expired, not yet
 * valid, wrong name, unknown issuer, self-signed, protocol alert), or
 * ST_NET / ST_TIMEOUT.  A DNS name is sent as SNI and checked against the
 * certificate's DNS names (CN without SANs); an IP literal is sent without
 * SNI and must match an iPAddress SAN.  io->fd must be non-blocking; io
 * and ctx must outlive the session (io is read at every operation).
 */
enum status tls_start(struct tls **out, struct tls_ctx *ctx, struct tls_io *io,
    const char *host, struct errinfo *ei);

/*
 * Longest serialized session tls_session_export() makes and callers need
 * to accept (the session holds the server's certificate).
 */
#define TLS_SESSION_MAX	(32 * 1024)

/*
 * tls_start(), offering the session saved[0..savedlen) from
 * tls_session_export() for resumption (RFC 5077 tickets or RFC 5246
 * session IDs).  saved may be NULL.  A session that does not load, or
 * that the server declines, only means a full handshake, verified as in
 * tls_start().  When the server accepts it, no certificate is sent: the
 * server proves it holds the master secret of the session verified
 * earlier, which is TLS's own guarantee for resumption.  The caller must
 * therefore offer a session only to the host name it was verified for.
 * saved is not kept; the caller wipes it.
 */
enum status tls_start_resume(struct tls **out, struct tls_ctx *ctx,
    struct tls_io *io, const char *host, const uint8_t *saved,
    size_t savedlen, struct errinfo *ei);

/* True if the handshake of t resumed an offered session. */
bool tls_resumed(const struct tls *t);

/*
 * The session of t, serialized for a later tls_start_resume(): *blob is
 * malloc'd, *len bytes (at most TLS_SESSION_MAX).  It holds the master
 * secret: the caller wipes it (st_wipe) and frees it.  ST_TLS if the
 * session was not verified or cannot be serialized.
 */
enum status tls_session_export(struct tls *t, uint8_t **blob, size_t *len,
    struct errinfo *ei);

/* Read up to n bytes (at least one; EOF and close_notify are ST_NET). */
enum status tls_read(struct tls *t, void *p, size_t n, size_t *got,
    struct errinfo *ei);

/* Write all n bytes. */
enum status tls_write(struct tls *t, const void *p, size_t n,
    struct errinfo *ei);

/* Bytes decrypted and buffered inside the TLS layer. */
size_t tls_pending(const struct tls *t);

/* Send close_notify (best effort, bounded by the deadline) and free. */
void tls_close(struct tls *t);

struct tls_info {
	char version[16];	/* "TLSv1.3" */
	char cipher[64];
	char subject[256];
	char issuer[256];
	char not_after[32];	/* "2027-01-31 12:00:00 UTC" */
	char sha256[96];	/* "AB:CD:..." of the DER certificate */
};

/* Describe the session's protocol and the peer certificate. */
enum status tls_get_info(const struct tls *t, struct tls_info *info,
    struct errinfo *ei);

/* n cryptographically random bytes (for PKCE verifiers, state, IDs). */
enum status tls_random(void *p, size_t n, struct errinfo *ei);

/* SHA-256 of p[0..n). */
void tls_sha256(const void *p, size_t n, uint8_t out[32]);

/*
 * RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of msg with the PEM
 * private key key_pem.  *sig is malloc'd (free it), *siglen its length.
 * ST_CONFIG if the key cannot be parsed or is not RSA.
 */
enum status tls_rs256_sign(const char *key_pem, size_t key_len,
    const void *msg, size_t n, uint8_t **sig, size_t *siglen,
    struct errinfo *ei);

/*
 * The mbedTLS version, for --version: "mbedTLS 2.28.3", from the library
 * loaded at run time when it can say (MBEDTLS_VERSION_C), else the one
 * compiled against.  A static string, valid for the life of the process.
 */
const char *tls_library_version(void);

#endif
