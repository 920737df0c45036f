/*
 * tls.c: the only door to mbedTLS (RFC 5246 and RFC 8446 through it;
 * RFC 6125 name checks; RFC 6066 SNI).
 *
 * Policy lives here, not in options: TLS 1.2 at least, verification
 * required, a name always checked.  For a DNS name mbedTLS sends SNI and
 * checks the name against the dNSName SANs (or the CN without SANs).  For
 * an IP literal no SNI is sent (RFC 6066 section 3 forbids literals there)
 * and this file checks the certificate's iPAddress SANs itself, from the
 * raw extension: mbedTLS 2.28 does not list iPAddress entries.
 *
 * The bio callbacks never block: the socket is non-blocking and each wait
 * is a poll() against the deadline in struct tls_io, so a peer that stalls
 * in the middle of a handshake or a record ends in ST_TIMEOUT.
 *
 * Speed: X25519 is offered first (the ECDHE is most of a handshake's
 * CPU), and a session saved by tls_session_export() can be offered again
 * by tls_start_resume() (RFC 5077 tickets, RFC 5246 session IDs), which
 * skips the key exchange and the certificate.  The serialized session
 * holds the MASTER SECRET; storing it safely is the caller's job (conn.c).
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef HAVE_GETRANDOM
#include <sys/random.h>
#endif

#include <mbedtls/version.h>
#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#include <psa/crypto.h>
#endif

#include "tls.h"

struct tls_ctx {
	mbedtls_x509_crt		 ca;
	mbedtls_entropy_context		 entropy;
	mbedtls_ctr_drbg_context	 drbg;
	mbedtls_ssl_config		 conf;
};

struct tls {
	mbedtls_ssl_context	 ssl;
	struct tls_io		*io;
	const char		*host;	/* valid during tls_start() only */
	bool			 ip_host;
	unsigned char		 ip[16];
	size_t			 iplen;
	/* Why the last bio call failed, for an exact status. */
	bool			 timed_out;
	int			 sys_errno;
	bool			 resumed;	/* an offered session was accepted */
	/*
	 * What the verify hook saw of the peer's leaf certificate: after a
	 * failed handshake mbedTLS no longer hands the certificate out.
	 */
	uint32_t		 vflags;
	bool			 leaf_seen;
	bool			 leaf_selfsigned;
	char			 leaf_issuer[160];
	char			 leaf_not_before[32];
	char			 leaf_not_after[32];
};

static const char tls_pers[] = "bearmail";

/*
 * Key exchange groups in order of preference (tls_ctx_new()).  Only when
 * the build says which curves it has (MBEDTLS_ECP_DP_*): otherwise the
 * library's own list stays, rather than a list that could come out empty.
 */
#if defined(MBEDTLS_ECP_DP_CURVE25519_ENABLED) && \
    defined(MBEDTLS_ECP_DP_SECP256R1_ENABLED)
#define TLS_GROUPS
#endif
#if defined(TLS_GROUPS) && MBEDTLS_VERSION_NUMBER >= 0x03010000
static const uint16_t tls_groups[] = {
#if defined(MBEDTLS_ECP_DP_CURVE25519_ENABLED)
	MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
#endif
#if defined(MBEDTLS_ECP_DP_SECP256R1_ENABLED)
	MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
#endif
#if defined(MBEDTLS_ECP_DP_SECP384R1_ENABLED)
	MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1,
#endif
#if defined(MBEDTLS_ECP_DP_SECP521R1_ENABLED)
	MBEDTLS_SSL_IANA_TLS_GROUP_SECP521R1,
#endif
#if defined(MBEDTLS_ECP_DP_CURVE448_ENABLED)
	MBEDTLS_SSL_IANA_TLS_GROUP_X448,
#endif
#if defined(MBEDTLS_ECP_DP_BP256R1_ENABLED)
	MBEDTLS_SSL_IANA_TLS_GROUP_BP256R1,
#endif
#if defined(MBEDTLS_ECP_DP_BP384R1_ENABLED)
	MBEDTLS_SSL_IANA_TLS_GROUP_BP384R1,
#endif
#if defined(MBEDTLS_ECP_DP_BP512R1_ENABLED)
	MBEDTLS_SSL_IANA_TLS_GROUP_BP512R1,
#endif
	MBEDTLS_SSL_IANA_TLS_GROUP_NONE
};
#elif defined(TLS_GROUPS)
static const mbedtls_ecp_group_id tls_groups[] = {
#if defined(MBEDTLS_ECP_DP_CURVE25519_ENABLED)
	MBEDTLS_ECP_DP_CURVE25519,
#endif
#if defined(MBEDTLS_ECP_DP_SECP256R1_ENABLED)
	MBEDTLS_ECP_DP_SECP256R1,
#endif
#if defined(MBEDTLS_ECP_DP_SECP384R1_ENABLED)
	MBEDTLS_ECP_DP_SECP384R1,
#endif
#if defined(MBEDTLS_ECP_DP_SECP521R1_ENABLED)
	MBEDTLS_ECP_DP_SECP521R1,
#endif
#if defined(MBEDTLS_ECP_DP_CURVE448_ENABLED)
	MBEDTLS_ECP_DP_CURVE448,
#endif
#if defined(MBEDTLS_ECP_DP_BP256R1_ENABLED)
	MBEDTLS_ECP_DP_BP256R1,
#endif
#if defined(MBEDTLS_ECP_DP_BP384R1_ENABLED)
	MBEDTLS_ECP_DP_BP384R1,
#endif
#if defined(MBEDTLS_ECP_DP_BP512R1_ENABLED)
	MBEDTLS_ECP_DP_BP512R1,
#endif
	MBEDTLS_ECP_DP_NONE
};
#endif

/* --- errors ----------------------------------------------------------- */

static const char *
tls_strerror(int ret, char *buf, size_t len)
{
	mbedtls_strerror(ret, buf, len);
	return buf;
}

/* Map a failed mbedTLS call, using what the bio callbacks saw. */
static enum status
tls_fail(struct tls *t, int ret, const char *what, struct errinfo *ei)
{
	char b[160];

	if (t->timed_out)
		return st_error(ei, ST_TIMEOUT, "%s timed out", what);
	if (t->sys_errno != 0) {
		errno = t->sys_errno;
		return st_errno(ei, ST_NET, "%s", what);
	}
	if (ret == MBEDTLS_ERR_SSL_CONN_EOF || ret == 0)
		return st_error(ei, ST_NET, "%s: connection closed by the peer",
		    what);
	if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
		return st_error(ei, ST_NET, "%s: the peer closed the TLS "
		    "session", what);
#if defined(MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION)
	if (ret == MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION)
#else
	if (ret == MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION)
#endif
		return st_error(ei, ST_TLS, "%s: the server offers no TLS "
		    "version of 1.2 or newer", what);
	return st_error(ei, ST_TLS, "%s: %s", what,
	    tls_strerror(ret, b, sizeof(b)));
}

/* --- bio -------------------------------------------------------------- */

static int
tls_wait(struct tls *t, short events)
{
	struct timespec now;
	struct pollfd pfd;
	long long ms;
	int n;

	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		ms = (long long)(t->io->deadline.tv_sec - now.tv_sec) * 1000 +
		    (t->io->deadline.tv_nsec - now.tv_nsec + 999999) / 1000000;
		if (ms <= 0) {
			t->timed_out = true;
			return -1;
		}
		pfd.fd = t->io->fd;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, ms > 86400000 ? 86400000 : (int)ms);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR) {
			t->sys_errno = errno;
			return -1;
		}
	}
}

static int
tls_bio_send(void *ctx, const unsigned char *p, size_t n)
{
	struct tls *t = ctx;
	ssize_t r;

	for (;;) {
		r = send(t->io->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r >= 0)
			return (int)r;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (tls_wait(t, POLLOUT) == -1)
				return MBEDTLS_ERR_SSL_TIMEOUT;
		} else if (errno != EINTR) {
			t->sys_errno = errno;
			return MBEDTLS_ERR_NET_SEND_FAILED;
		}
	}
}

static int
tls_bio_recv(void *ctx, unsigned char *p, size_t n)
{
	struct tls *t = ctx;
	ssize_t r;

	for (;;) {
		r = recv(t->io->fd, p, n, MSG_DONTWAIT);
		if (r >= 0)
			return (int)r;	/* 0: EOF, which mbedTLS reports */
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (tls_wait(t, POLLIN) == -1)
				return t->timed_out ? MBEDTLS_ERR_SSL_TIMEOUT :
				    MBEDTLS_ERR_NET_RECV_FAILED;
		} else if (errno != EINTR) {
			t->sys_errno = errno;
			return MBEDTLS_ERR_NET_RECV_FAILED;
		}
	}
}

/* --- context ---------------------------------------------------------- */

enum status
tls_ctx_new(struct tls_ctx **out, const char *ca_file, struct errinfo *ei)
{
	struct tls_ctx *ctx;
	enum status st = ST_OK;
	const char *path = ca_file != NULL ? ca_file : TLS_SYSTEM_CA_FILE;
	char b[160];
	int ret;

	*out = NULL;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	if (psa_crypto_init() != PSA_SUCCESS)
		return st_error(ei, ST_SYS, "cannot initialize PSA crypto");
#endif
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	mbedtls_x509_crt_init(&ctx->ca);
	mbedtls_entropy_init(&ctx->entropy);
	mbedtls_ctr_drbg_init(&ctx->drbg);
	mbedtls_ssl_config_init(&ctx->conf);

	if (access(path, R_OK) == -1) {
		st = st_errno(ei, ST_CONFIG, "cannot read CA file %s", path);
		goto fail;
	}
	/* A positive result counts certificates that did not parse: fine. */
	ret = mbedtls_x509_crt_parse_file(&ctx->ca, path);
	if (ret < 0 || ctx->ca.version == 0) {
		st = st_error(ei, ST_CONFIG, "no usable certificate in CA file "
		    "%s%s%s", path, ret < 0 ? ": " : "",
		    ret < 0 ? tls_strerror(ret, b, sizeof(b)) : "");
		goto fail;
	}
	if ((ret = mbedtls_ctr_drbg_seed(&ctx->drbg, mbedtls_entropy_func,
	    &ctx->entropy, (const unsigned char *)tls_pers,
	    sizeof(tls_pers) - 1)) != 0) {
		st = st_error(ei, ST_SYS, "cannot seed the random generator: %s",
		    tls_strerror(ret, b, sizeof(b)));
		goto fail;
	}
	if ((ret = mbedtls_ssl_config_defaults(&ctx->conf, MBEDTLS_SSL_IS_CLIENT,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
		st = st_error(ei, ST_SYS, "TLS configuration: %s",
		    tls_strerror(ret, b, sizeof(b)));
		goto fail;
	}
	mbedtls_ssl_conf_authmode(&ctx->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&ctx->conf, &ctx->ca, NULL);
	mbedtls_ssl_conf_rng(&ctx->conf, mbedtls_ctr_drbg_random, &ctx->drbg);
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
	mbedtls_ssl_conf_min_tls_version(&ctx->conf, MBEDTLS_SSL_VERSION_TLS1_2);
#else
	mbedtls_ssl_conf_min_version(&ctx->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
	    MBEDTLS_SSL_MINOR_VERSION_3);
#endif
	/*
	 * X25519 first: the ECDHE is most of a full handshake's CPU, and it
	 * costs a third less than P-256 (bench/results/experiment-tls.md).
	 * The list also bounds the curves accepted for the server's own EC
	 * key, so the NIST and Brainpool curves stay.
	 */
#if defined(TLS_GROUPS) && MBEDTLS_VERSION_NUMBER >= 0x03010000
	mbedtls_ssl_conf_groups(&ctx->conf, tls_groups);
#elif defined(TLS_GROUPS)
	mbedtls_ssl_conf_curves(&ctx->conf, tls_groups);
#endif
	*out = ctx;
	return ST_OK;
 fail:
	tls_ctx_free(ctx);
	return st;
}

void
tls_ctx_free(struct tls_ctx *ctx)
{
	if (ctx == NULL)
		return;
	mbedtls_ssl_config_free(&ctx->conf);
	mbedtls_ctr_drbg_free(&ctx->drbg);
	mbedtls_entropy_free(&ctx->entropy);
	mbedtls_x509_crt_free(&ctx->ca);
	free(ctx);
}

/* --- certificate checks ----------------------------------------------- */

/*
 * Does the certificate list ip among its iPAddress SANs?  Walks the raw
 * extensions: Extensions ::= SEQUENCE OF SEQUENCE { OID, [BOOLEAN],
 * OCTET STRING { GeneralNames } }, with iPAddress as [7] IMPLICIT OCTET
 * STRING (RFC 5280 section 4.2.1.6).
 */
static bool
tls_san_has_ip(const mbedtls_x509_crt *crt, const unsigned char *ip,
    size_t iplen)
{
	static const unsigned char san_oid[] = { 0x55, 0x1d, 0x11 };
	unsigned char *p = crt->v3_ext.p, *end, *ext_end, *names_end;
	size_t len;
	int crit;

	if (p == NULL || crt->v3_ext.len == 0)
		return false;
	end = p + crt->v3_ext.len;
	if (*p == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 3)
	    && mbedtls_asn1_get_tag(&p, end, &len,
	    MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 3) != 0)
		return false;
	if (mbedtls_asn1_get_tag(&p, end, &len,
	    MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
		return false;
	end = p + len;
	while (p < end) {
		if (mbedtls_asn1_get_tag(&p, end, &len,
		    MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
			return false;
		ext_end = p + len;
		if (mbedtls_asn1_get_tag(&p, ext_end, &len, MBEDTLS_ASN1_OID)
		    != 0)
			return false;
		if (len != sizeof(san_oid) || memcmp(p, san_oid, len) != 0) {
			p = ext_end;
			continue;
		}
		p += len;
		if (p < ext_end && *p == MBEDTLS_ASN1_BOOLEAN &&
		    mbedtls_asn1_get_bool(&p, ext_end, &crit) != 0)
			return false;
		if (mbedtls_asn1_get_tag(&p, ext_end, &len,
		    MBEDTLS_ASN1_OCTET_STRING) != 0)
			return false;
		if (mbedtls_asn1_get_tag(&p, ext_end, &len,
		    MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
			return false;
		names_end = p + len;
		while (p < names_end) {
			unsigned char tag = *p++;

			if (mbedtls_asn1_get_len(&p, names_end, &len) != 0)
				return false;
			if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) &&
			    len == iplen && memcmp(p, ip, iplen) == 0)
				return true;
			p += len;
		}
		return false;
	}
	return false;
}

static void
tls_time_text(const mbedtls_x509_time *tm, char *out, size_t outsz)
{
	snprintf(out, outsz, "%04d-%02d-%02d %02d:%02d:%02d UTC", tm->year,
	    tm->mon, tm->day, tm->hour, tm->min, tm->sec);
}

/*
 * Per-certificate hook: the IP literal check on the leaf, and notes on
 * the leaf for the error text.
 */
static int
tls_verify_cb(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct tls *t = arg;

	if (depth == 0) {
		if (t->ip_host && !tls_san_has_ip(crt, t->ip, t->iplen))
			*flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
		t->leaf_seen = true;
		t->leaf_selfsigned = crt->next == NULL &&
		    crt->issuer_raw.len == crt->subject_raw.len &&
		    memcmp(crt->issuer_raw.p, crt->subject_raw.p,
		    crt->subject_raw.len) == 0;
		if (mbedtls_x509_dn_gets(t->leaf_issuer,
		    sizeof(t->leaf_issuer), &crt->issuer) < 0)
			t->leaf_issuer[0] = '\0';
		tls_time_text(&crt->valid_from, t->leaf_not_before,
		    sizeof(t->leaf_not_before));
		tls_time_text(&crt->valid_to, t->leaf_not_after,
		    sizeof(t->leaf_not_after));
	}
	t->vflags |= *flags;
	return 0;
}

static void
tls_append(char *buf, size_t sz, const char *text)
{
	size_t l = strlen(buf);

	snprintf(buf + l, sz - l, "%s%s", l > 0 ? "; " : "", text);
}

/* Say in words why verification failed. */
static enum status
tls_verify_failed(struct tls *t, struct errinfo *ei)
{
	uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
	char why[384] = "", b[224];

	if (flags == (uint32_t)-1)
		flags = 0;
	flags |= t->vflags;
	if (flags & MBEDTLS_X509_BADCERT_EXPIRED) {
		snprintf(b, sizeof(b), "certificate has expired%s%s%s",
		    t->leaf_seen ? " (not after " : "",
		    t->leaf_seen ? t->leaf_not_after : "",
		    t->leaf_seen ? ")" : "");
		tls_append(why, sizeof(why), b);
	}
	if (flags & MBEDTLS_X509_BADCERT_FUTURE) {
		snprintf(b, sizeof(b), "certificate is not yet valid%s%s%s",
		    t->leaf_seen ? " (not before " : "",
		    t->leaf_seen ? t->leaf_not_before : "",
		    t->leaf_seen ? ")" : "");
		tls_append(why, sizeof(why), b);
	}
	if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
		snprintf(b, sizeof(b), "certificate is for another host name "
		    "than %s", t->host);
		tls_append(why, sizeof(why), b);
	}
	if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) {
		if (t->leaf_selfsigned)
			tls_append(why, sizeof(why), "self-signed certificate");
		else if (t->leaf_issuer[0] != '\0') {
			snprintf(b, sizeof(b), "certificate issuer is not "
			    "trusted (%s)", t->leaf_issuer);
			tls_append(why, sizeof(why), b);
		} else
			tls_append(why, sizeof(why),
			    "certificate issuer is not trusted");
	}
	if (flags & MBEDTLS_X509_BADCERT_REVOKED)
		tls_append(why, sizeof(why), "certificate has been revoked");
	if (flags & MBEDTLS_X509_BADCERT_MISSING)
		tls_append(why, sizeof(why), "no certificate was sent");
	if (flags & (MBEDTLS_X509_BADCERT_KEY_USAGE |
	    MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
	    MBEDTLS_X509_BADCERT_NS_CERT_TYPE))
		tls_append(why, sizeof(why),
		    "certificate is not meant for a TLS server");
	if (flags & (MBEDTLS_X509_BADCERT_BAD_MD | MBEDTLS_X509_BADCERT_BAD_PK |
	    MBEDTLS_X509_BADCERT_BAD_KEY))
		tls_append(why, sizeof(why),
		    "certificate uses a weak or unacceptable algorithm or key");
	if (why[0] == '\0') {
		if (mbedtls_x509_crt_verify_info(b, sizeof(b), "", flags) > 0) {
			b[strcspn(b, "\n")] = '\0';
			tls_append(why, sizeof(why), b);
		} else
			tls_append(why, sizeof(why), "verification failed");
	}
	return st_error(ei, ST_TLS, "TLS certificate of %s rejected: %s",
	    t->host, why);
}

/* --- sessions --------------------------------------------------------- */

enum status
tls_start(struct tls **out, struct tls_ctx *ctx, struct tls_io *io,
    const char *host, struct errinfo *ei)
{
	return tls_start_resume(out, ctx, io, host, NULL, 0, ei);
}

/*
 * Offer the saved session.  Anything wrong with it (another mbedTLS
 * version or build, truncated, garbage) only means a full handshake.
 */
static bool
tls_offer(struct tls *t, const uint8_t *saved, size_t savedlen)
{
	mbedtls_ssl_session ss;
	bool ok = false;

	mbedtls_ssl_session_init(&ss);
	if (mbedtls_ssl_session_load(&ss, saved, savedlen) == 0 &&
	    mbedtls_ssl_set_session(&t->ssl, &ss) == 0)
		ok = true;
	mbedtls_ssl_session_free(&ss);	/* zeroizes the master secret */
	return ok;
}

enum status
tls_start_resume(struct tls **out, struct tls_ctx *ctx, struct tls_io *io,
    const char *host, const uint8_t *saved, size_t savedlen,
    struct errinfo *ei)
{
	struct tls *t;
	struct in6_addr a6;
	bool offered = false;
	enum status st;
	char what[320], b[160];
	int ret;

	*out = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	mbedtls_ssl_init(&t->ssl);
	t->io = io;
	t->host = host;
	snprintf(what, sizeof(what), "TLS handshake with %s", host);
	if ((ret = mbedtls_ssl_setup(&t->ssl, &ctx->conf)) != 0) {
		st = st_error(ei, ST_SYS, "TLS setup: %s",
		    tls_strerror(ret, b, sizeof(b)));
		goto fail;
	}
	if (inet_pton(AF_INET, host, t->ip) == 1) {
		t->ip_host = true;
		t->iplen = 4;
	} else if (inet_pton(AF_INET6, host, &a6) == 1) {
		t->ip_host = true;
		t->iplen = 16;
		memcpy(t->ip, &a6, 16);
	}
	/* NULL, said explicitly: no SNI and no name check by mbedTLS. */
	ret = mbedtls_ssl_set_hostname(&t->ssl, t->ip_host ? NULL : host);
	if (ret != 0) {
		st = st_error(ei, ST_TLS, "TLS host name %s: %s", host,
		    tls_strerror(ret, b, sizeof(b)));
		goto fail;
	}
	mbedtls_ssl_set_verify(&t->ssl, tls_verify_cb, t);
	mbedtls_ssl_set_bio(&t->ssl, t, tls_bio_send, tls_bio_recv, NULL);
	if (saved != NULL && savedlen > 0)
		offered = tls_offer(t, saved, savedlen);
	while ((ret = mbedtls_ssl_handshake(&t->ssl)) != 0) {
		if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
		    ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED)
			st = tls_verify_failed(t, ei);
		else
			st = tls_fail(t, ret, what, ei);
		goto fail;
	}
	/*
	 * A full handshake always passes the server's certificate through
	 * tls_verify_cb(); an abbreviated one (the server accepted the
	 * offered session) has no Certificate message, so the hook never
	 * ran.  That is how resumption is told apart, the same way in
	 * mbedTLS 2 and 3, and why "no certificate" is no failure here.
	 */
	t->resumed = offered && !t->leaf_seen;
	t->host = NULL;
	*out = t;
	return ST_OK;
 fail:
	mbedtls_ssl_free(&t->ssl);
	free(t);
	return st;
}

enum status
tls_read(struct tls *t, void *p, size_t n, size_t *got, struct errinfo *ei)
{
	int ret;

	*got = 0;
	t->timed_out = false;
	t->sys_errno = 0;
	for (;;) {
		ret = mbedtls_ssl_read(&t->ssl, p, n);
		if (ret > 0) {
			*got = (size_t)ret;
			return ST_OK;
		}
		if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
		    ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
#ifdef MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET
		if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
			continue;
#endif
		return tls_fail(t, ret, "TLS read", ei);
	}
}

enum status
tls_write(struct tls *t, const void *p, size_t n, struct errinfo *ei)
{
	const unsigned char *s = p;
	int ret;

	t->timed_out = false;
	t->sys_errno = 0;
	while (n > 0) {
		ret = mbedtls_ssl_write(&t->ssl, s, n);
		if (ret > 0) {
			s += ret;
			n -= (size_t)ret;
			continue;
		}
		if (ret == MBEDTLS_ERR_SSL_WANT_READ ||
		    ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		return tls_fail(t, ret, "TLS write", ei);
	}
	return ST_OK;
}

bool
tls_resumed(const struct tls *t)
{
	return t->resumed;
}

enum status
tls_session_export(struct tls *t, uint8_t **blob, size_t *len,
    struct errinfo *ei)
{
	mbedtls_ssl_session ss;
	unsigned char *p = NULL;
	enum status st = ST_OK;
	size_t need = 0;
	char b[160];
	int ret;

	*blob = NULL;
	*len = 0;
	/* Belt and braces: VERIFY_REQUIRED already made anything else fail. */
	if (mbedtls_ssl_get_verify_result(&t->ssl) != 0)
		return st_error(ei, ST_TLS, "TLS session not verified");
	mbedtls_ssl_session_init(&ss);
	if ((ret = mbedtls_ssl_get_session(&t->ssl, &ss)) != 0) {
		st = st_error(ei, ST_TLS, "TLS session: %s",
		    tls_strerror(ret, b, sizeof(b)));
		goto done;
	}
	ret = mbedtls_ssl_session_save(&ss, NULL, 0, &need);
	if (ret != MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL || need == 0 ||
	    need > TLS_SESSION_MAX) {
		st = st_error(ei, ST_TLS, "TLS session cannot be saved");
		goto done;
	}
	if ((p = malloc(need)) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto done;
	}
	if ((ret = mbedtls_ssl_session_save(&ss, p, need, len)) != 0) {
		st = st_error(ei, ST_TLS, "TLS session: %s",
		    tls_strerror(ret, b, sizeof(b)));
		st_wipe(p, need);
		free(p);
		*len = 0;
		goto done;
	}
	*blob = p;
 done:
	mbedtls_ssl_session_free(&ss);
	return st;
}

size_t
tls_pending(const struct tls *t)
{
	return mbedtls_ssl_get_bytes_avail(&t->ssl);
}

void
tls_close(struct tls *t)
{
	int ret;

	if (t == NULL)
		return;
	do
		ret = mbedtls_ssl_close_notify(&t->ssl);
	while (ret == MBEDTLS_ERR_SSL_WANT_WRITE);
	mbedtls_ssl_free(&t->ssl);
	free(t);
}

static void
tls_hex_colon(const uint8_t *p, size_t n, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0;

	for (i = 0; i < n && o + 3 < outsz; i++) {
		if (i > 0)
			out[o++] = ':';
		out[o++] = hex[p[i] >> 4];
		out[o++] = hex[p[i] & 15];
	}
	out[o] = '\0';
}

enum status
tls_get_info(const struct tls *t, struct tls_info *info, struct errinfo *ei)
{
	const mbedtls_x509_crt *peer;
	uint8_t md[32];

	memset(info, 0, sizeof(*info));
	snprintf(info->version, sizeof(info->version), "%s",
	    mbedtls_ssl_get_version(&t->ssl));
	snprintf(info->cipher, sizeof(info->cipher), "%s",
	    mbedtls_ssl_get_ciphersuite(&t->ssl));
	if ((peer = mbedtls_ssl_get_peer_cert(&t->ssl)) == NULL)
		return st_error(ei, ST_TLS, "no peer certificate kept");
	if (mbedtls_x509_dn_gets(info->subject, sizeof(info->subject),
	    &peer->subject) < 0)
		info->subject[0] = '\0';
	if (mbedtls_x509_dn_gets(info->issuer, sizeof(info->issuer),
	    &peer->issuer) < 0)
		info->issuer[0] = '\0';
	tls_time_text(&peer->valid_to, info->not_after,
	    sizeof(info->not_after));
	tls_sha256(peer->raw.p, peer->raw.len, md);
	tls_hex_colon(md, sizeof(md), info->sha256, sizeof(info->sha256));
	return ST_OK;
}

/* --- primitives ------------------------------------------------------- */

enum status
tls_random(void *p, size_t n, struct errinfo *ei)
{
	unsigned char *s = p;
	ssize_t r;
	int fd = -1;

#ifdef HAVE_GETRANDOM
	while (n > 0) {
		r = getrandom(s, n, 0);
		if (r > 0) {
			s += r;
			n -= (size_t)r;
		} else if (r < 0 && errno != EINTR)
			break;
	}
	if (n == 0)
		return ST_OK;
#endif
	if ((fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) == -1)
		return st_errno(ei, ST_SYS, "/dev/urandom");
	while (n > 0) {
		r = read(fd, s, n);
		if (r > 0) {
			s += r;
			n -= (size_t)r;
		} else if (r == 0 || errno != EINTR) {
			close(fd);
			return st_errno(ei, ST_SYS, "reading /dev/urandom");
		}
	}
	close(fd);
	return ST_OK;
}

void
tls_sha256(const void *p, size_t n, uint8_t out[32])
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	(void)mbedtls_sha256(p, n, out, 0);
#else
	(void)mbedtls_sha256_ret(p, n, out, 0);
#endif
}

enum status
tls_rs256_sign(const char *key_pem, size_t key_len, const void *msg,
    size_t n, uint8_t **sig, size_t *siglen, struct errinfo *ei)
{
	mbedtls_pk_context pk;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	unsigned char *key = NULL, *out = NULL;
	uint8_t md[32];
	enum status st = ST_OK;
	size_t outlen = 0;
	char b[160];
	int ret;

	*sig = NULL;
	*siglen = 0;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	if (psa_crypto_init() != PSA_SUCCESS)
		return st_error(ei, ST_SYS, "cannot initialize PSA crypto");
#endif
	mbedtls_pk_init(&pk);
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
	    (const unsigned char *)tls_pers, sizeof(tls_pers) - 1)) != 0) {
		st = st_error(ei, ST_SYS, "cannot seed the random generator: %s",
		    tls_strerror(ret, b, sizeof(b)));
		goto done;
	}
	/* PEM parsing wants the terminating NUL inside the length. */
	if ((key = malloc(key_len + 1)) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto done;
	}
	memcpy(key, key_pem, key_len);
	key[key_len] = '\0';
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	ret = mbedtls_pk_parse_key(&pk, key, key_len + 1, NULL, 0,
	    mbedtls_ctr_drbg_random, &drbg);
#else
	ret = mbedtls_pk_parse_key(&pk, key, key_len + 1, NULL, 0);
#endif
	if (ret != 0) {
		st = st_error(ei, ST_CONFIG, "cannot parse the private key: %s",
		    tls_strerror(ret, b, sizeof(b)));
		goto done;
	}
	if (!mbedtls_pk_can_do(&pk, MBEDTLS_PK_RSA)) {
		st = st_error(ei, ST_CONFIG, "the private key is not an RSA key");
		goto done;
	}
	if ((out = malloc(MBEDTLS_PK_SIGNATURE_MAX_SIZE)) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto done;
	}
	tls_sha256(msg, n, md);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	ret = mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, md, sizeof(md), out,
	    MBEDTLS_PK_SIGNATURE_MAX_SIZE, &outlen, mbedtls_ctr_drbg_random,
	    &drbg);
#else
	ret = mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, md, sizeof(md), out,
	    &outlen, mbedtls_ctr_drbg_random, &drbg);
#endif
	if (ret != 0) {
		st = st_error(ei, ST_SYS, "RS256 signature failed: %s",
		    tls_strerror(ret, b, sizeof(b)));
		goto done;
	}
	*sig = out;
	*siglen = outlen;
	out = NULL;
 done:
	if (key != NULL) {
		st_wipe(key, key_len + 1);
		free(key);
	}
	free(out);
	mbedtls_pk_free(&pk);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&entropy);
	return st;
}

const char *
tls_library_version(void)
{
	/* The header asks for 9 bytes ("x.y.z"); a two-digit part would
	 * need more, so give it room.  Static: --version asks once. */
	static char v[32];
#if defined(MBEDTLS_VERSION_C)
	char num[18];

	memset(num, 0, sizeof(num));
	mbedtls_version_get_string(num);
	snprintf(v, sizeof(v), "mbedTLS %s", num);
#else
	snprintf(v, sizeof(v), "mbedTLS %s", MBEDTLS_VERSION_STRING);
#endif
	return v;
}
