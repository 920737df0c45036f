"""TLS (src/tls.c through src/conn.c), driven by tests/tools/bm-probe.

Certificates come from the session's test PKI (tests/servers/pki.py).
A refused certificate is status TLS, exit 75, and the message says what
was wrong with it.
"""

import hashlib
import socket
import ssl
import warnings

import pytest

from servers.fakeserver import (expect, reply, send, smtp, stall,
                                starttls)

EX_TEMPFAIL = 75

SIMPLE = [reply("220 ready"), expect("QUIT"), reply("221 bye")]


def refused(r, text):
    return (r.returncode == EX_TEMPFAIL and "error: TLS: " in r.stderr and
            text in r.stderr), (r.returncode, r.stderr)


def tls_server(fake_server, pki, cert, script=None, **kw):
    # The client hangs up mid-handshake: that is no script error.
    return fake_server(script or SIMPLE, tls=pki.server_context(cert),
                       strict=False, **kw)


def test_implicit_tls_works_and_reports_details(fake_server, pki, probe):
    srv = fake_server(SIMPLE, tls=pki.server_context("server"))
    r = probe(srv.port, "read", "info", "send QUIT", "read", tls=True,
              host="localhost")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "220 ready"
    info = dict(l.split(": ", 1) for l in out[1:7])
    assert info["version"] in ("TLSv1.2", "TLSv1.3")
    assert info["subject"] == "CN=localhost"
    assert "bearmail test CA" in info["issuer"]
    with open(pki.server.cert) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    want = ":".join("%02X" % b for b in hashlib.sha256(der).digest())
    assert info["sha256"] == want
    assert out[7] == "221 bye"
    srv.wait()
    assert srv.session.sni == "localhost"


def test_wrong_ca_is_refused(fake_server, pki, probe):
    srv = tls_server(fake_server, pki, "server")
    r = probe(srv.port, "read", tls=True, host="localhost",
              ca=pki.other_ca.cert)
    ok, why = refused(r, "certificate issuer is not trusted")
    assert ok, why
    srv.wait()
    assert srv.session.data == b""


def test_unknown_issuer_is_refused(fake_server, pki, probe):
    srv = tls_server(fake_server, pki, "untrusted")
    r = probe(srv.port, "read", tls=True, host="localhost")
    ok, why = refused(r, "certificate issuer is not trusted")
    assert ok, why
    assert "unrelated test CA" in r.stderr


def test_wrong_host_name_is_refused(fake_server, pki, probe):
    srv = tls_server(fake_server, pki, "wrongname")
    r = probe(srv.port, "read", tls=True, host="localhost")
    ok, why = refused(r, "certificate is for another host name")
    assert ok, why


def test_expired_certificate_is_refused(fake_server, pki, probe):
    srv = tls_server(fake_server, pki, "expired")
    r = probe(srv.port, "read", tls=True, host="localhost")
    ok, why = refused(r, "certificate has expired")
    assert ok, why
    assert "2021-01-01" in r.stderr


def test_not_yet_valid_certificate_is_refused(fake_server, pki, probe):
    srv = tls_server(fake_server, pki, "notyet")
    r = probe(srv.port, "read", tls=True, host="localhost")
    ok, why = refused(r, "certificate is not yet valid")
    assert ok, why


def test_self_signed_certificate_is_refused(fake_server, pki, probe):
    srv = tls_server(fake_server, pki, "selfsigned")
    r = probe(srv.port, "read", tls=True, host="localhost")
    ok, why = refused(r, "self-signed certificate")
    assert ok, why


def test_nul_in_common_name_is_refused(fake_server, pki, probe):
    if pki.nulname is None:
        pytest.skip("could not make a certificate with a NUL in its CN")
    srv = tls_server(fake_server, pki, "nulname")
    r = probe(srv.port, "read", tls=True, host="localhost")
    ok, why = refused(r, "certificate is for another host name")
    assert ok, why


def test_ip_literal_checked_against_ip_san(fake_server, pki, probe):
    srv = fake_server(SIMPLE, tls=pki.server_context("server"))
    r = probe(srv.port, "read", "send QUIT", "read", tls=True,
              host="127.0.0.1")
    assert r.returncode == 0, r.stderr
    srv.wait()
    assert srv.session.sni is None       # no SNI for an address


def test_ip_literal_without_ip_san_is_refused(fake_server, pki, probe):
    srv = tls_server(fake_server, pki, "dnsonly")
    r = probe(srv.port, "read", tls=True, host="127.0.0.1")
    ok, why = refused(r, "certificate is for another host name")
    assert ok, why


def test_tls_below_1_2_is_refused(fake_server, pki, probe):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = pki.server_context("server", maximum=ssl.TLSVersion.TLSv1_1)
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    # First make sure this server really speaks TLS 1.1 to a client that
    # accepts it, or the test would prove nothing.
    check = fake_server([reply("220 old")], tls=ctx, strict=False)
    cctx = pki.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            cctx.minimum_version = ssl.TLSVersion.TLSv1_1
            cctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            with socket.create_connection(("127.0.0.1", check.port)) as s, \
                    cctx.wrap_socket(s, server_hostname="localhost") as t:
                old = t.version()
        except (ssl.SSLError, OSError, ValueError) as e:
            pytest.skip("this OpenSSL cannot serve TLS 1.1: %s" % e)
    assert old == "TLSv1.1"
    srv = fake_server(SIMPLE, tls=ctx, strict=False)
    r = probe(srv.port, "read", tls=True, host="localhost")
    assert r.returncode == EX_TEMPFAIL and "error: TLS: " in r.stderr, \
        r.stderr
    assert "no TLS version of 1.2 or newer" in r.stderr
    srv.wait()
    assert not srv.session.tls


def test_plain_text_instead_of_tls_is_refused(fake_server, probe):
    srv = fake_server([reply("220 plain text here"), stall(5)],
                      strict=False)
    r = probe(srv.port, "read", tls=True, host="localhost")
    assert r.returncode == EX_TEMPFAIL and "error: TLS: " in r.stderr, \
        r.stderr


def test_handshake_stall_hits_the_deadline(fake_server, probe):
    srv = fake_server([stall()], strict=False)
    r = probe(srv.port, "read", tls=True, host="localhost", timeout=1)
    assert r.returncode == EX_TEMPFAIL, r.stderr
    assert "error: TIMEOUT: " in r.stderr


def test_stall_inside_tls_hits_the_deadline(fake_server, pki, probe):
    srv = fake_server([stall()], tls=pki.server_context("server"))
    r = probe(srv.port, "read", tls=True, host="localhost", timeout=1)
    assert r.returncode == EX_TEMPFAIL, r.stderr
    assert "error: TIMEOUT: " in r.stderr


STARTTLS_HEAD = [reply("220 fake ESMTP"),
                 expect(r"EHLO \S+"), smtp(250, "fake", "STARTTLS"),
                 expect("STARTTLS")]


def test_starttls_upgrade(fake_server, probe):
    srv = fake_server(STARTTLS_HEAD + [
        reply("220 go ahead"), starttls(),
        expect(r"EHLO \S+"), smtp(250, "fake", "AUTH XOAUTH2"),
        expect("QUIT"), reply("221 bye")])
    r = probe(srv.port, "send EHLO again", "reply", "send QUIT", "read",
              starttls=True, host="localhost")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "250-fake\n250 AUTH XOAUTH2\n221 bye\n"
    srv.wait()
    assert srv.session.tls
    assert srv.session.lines[:2] == ["EHLO bm-probe.invalid", "STARTTLS"]


def test_starttls_injection_is_discarded(fake_server, probe):
    """CVE-2011-0411 class: replies sent with the 220, before the
    handshake, must not be taken as answers after it."""
    srv = fake_server(STARTTLS_HEAD + [
        send(b"220 go ahead\r\n250-INJECTED\r\n250 INJECTED\r\n"),
        starttls(),
        expect(r"EHLO \S+"), reply("250 real"),
        expect("QUIT"), reply("221 bye")])
    r = probe(srv.port, "send EHLO again", "reply", "send QUIT", "read",
              starttls=True, host="localhost", verbose=True)
    assert r.returncode == 0, r.stderr
    assert "INJECTED" not in r.stdout
    assert r.stdout == "250 real\n221 bye\n"
    assert "discarding" in r.stderr and "before the TLS handshake" in r.stderr


def test_starttls_refused_certificate(fake_server, pki, probe):
    srv = fake_server(STARTTLS_HEAD + [reply("220 go ahead"), starttls()],
                      starttls_context=pki.server_context("expired"),
                      strict=False)
    r = probe(srv.port, starttls=True, host="localhost")
    ok, why = refused(r, "certificate has expired")
    assert ok, why
