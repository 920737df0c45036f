"""The interop stack itself, proven with Python's own clients.

Before bearmail is tested against Postfix 3.7 and Dovecot 2.3 these tests
show that the stack behaves as the tier assumes: SASL XOAUTH2 and
OAUTHBEARER (tokens validated by introspection at the test endpoint) on
every port, delivery into the Maildir, IMAP and POP3 reading it, the
STARTTLS rules, and the line limits that a client's long tokens meet.
They also pin down the servers' quirks (see the README in this directory),
so a Debian update that changes one shows up here first.
"""

import base64
import os
import poplib
import smtplib
import uuid

import pytest

import clients
from clients import OTHER_SOURCE

MECHS = ("XOAUTH2", "OAUTHBEARER")
SMTP_PORTS = ("submission", "smtps")


def _send(conn, account, marker):
    msg = ("From: <%s>\r\nTo: <rcpt@example.org>\r\nSubject: %s\r\n"
           "Message-ID: <%s@interop.test>\r\n\r\nbody %s\r\n"
           % (account.user, marker, marker, marker))
    refused = conn.sendmail(account.user, ["rcpt@example.org"], msg)
    assert refused == {}


def _token_of_b64_len(account, mech, b64_len, port=None):
    """A token, valid for account, whose SASL response is exactly b64_len
    base64 characters (b64_len a multiple of 4)."""
    raw_len = b64_len // 4 * 3
    tag = "long%d-" % b64_len
    base = len(clients.sasl(mech, account.user, "", port))
    token = tag + "x" * (raw_len - base - len(tag))
    account.stack.add_token(token, account.user)
    assert len(clients.b64(clients.sasl(mech, account.user, token, port))) \
        == b64_len
    return token


# --- SMTP: Postfix submission with Dovecot SASL ------------------------------

@pytest.mark.parametrize("mech", MECHS)
@pytest.mark.parametrize("port", SMTP_PORTS)
def test_smtp_auth_and_delivery(stack, account, port, mech):
    conn = clients.smtp_connect(stack, port)
    try:
        assert set(MECHS) <= set(conn.esmtp_features["auth"].split())
        code, text, chal = clients.smtp_auth(
            conn, mech, account.sasl(mech, stack.ports[port]))
        assert (code, chal) == (235, []), text
        marker = "deliver-%s-%s-%s" % (port, mech, uuid.uuid4().hex)
        _send(conn, account, marker)
    finally:
        conn.quit()
    msg = stack.wait_for_message(marker.encode())
    # Authenticated submission over TLS: ESMTPSA in Postfix's Received.
    assert b"with ESMTPSA" in msg
    assert [r for r in stack.introspections()
            if r["email"] == account.user and r["active"]]


@pytest.mark.parametrize("mech", MECHS)
@pytest.mark.parametrize("port", SMTP_PORTS)
def test_smtp_bad_token_gets_challenge_then_535(stack, account, port, mech):
    conn = clients.smtp_connect(stack, port)
    try:
        code, text, chal = clients.smtp_auth(
            conn, mech, account.sasl(mech, stack.ports[port], token="wrong"))
        assert code == 535, text
        assert text.startswith("5.7.8 ")
        # One 334 carrying the error JSON, answered by the client (empty
        # line or 0x01), then the 535.
        assert len(chal) == 1
        if mech == "XOAUTH2":
            assert b'"status":"401"' in chal[0]
        else:
            assert b'"status":"invalid_token"' in chal[0]
        # Still usable: a good token on the same connection works.
        code, text, _ = clients.smtp_auth(
            conn, mech, account.sasl(mech, stack.ports[port]))
        assert code == 235, text
    finally:
        conn.quit()
    assert any(r["active"] is False and r["token_len"] == len("wrong")
               for r in stack.introspections())


def test_smtp_revoked_token_is_refused(stack, account):
    conn = clients.smtp_connect(stack, "submission")
    try:
        assert clients.smtp_auth(conn, "XOAUTH2", account.xoauth2())[0] == 235
    finally:
        conn.quit()
    account.revoke()
    conn = clients.smtp_connect(stack, "submission")
    try:
        code, text, chal = clients.smtp_auth(conn, "XOAUTH2",
                                             account.xoauth2())
        assert code == 535 and len(chal) == 1, text
    finally:
        conn.quit()


@pytest.mark.parametrize("mech", MECHS)
def test_endpoint_failure(stack, token_server, account, mech):
    """An endpoint that does not answer 200 with JSON (here: 500) is a
    temporary failure for Dovecot: IMAP "NO [UNAVAILABLE] Temporary
    authentication failure", POP3 "-ERR [SYS/TEMP]".  Postfix 3.7 turns
    it into a plain "535 5.7.8" though: what tells it from a bad token is
    that no 334 error challenge came first."""
    if token_server is None:
        pytest.skip("needs the TokenServer endpoint (fail())")
    port = stack.ports["submission"]
    token_server.fail("introspect", "500")
    conn = clients.smtp_connect(stack, "submission")
    try:
        code, text, chal = clients.smtp_auth(conn, mech,
                                             account.sasl(mech, port))
        assert (code, chal) == (535, []), text
        # The endpoint is back: the same token works.
        code, text, _ = clients.smtp_auth(conn, mech,
                                          account.sasl(mech, port))
        assert code == 235, text
    finally:
        conn.quit()
    token_server.fail("introspect", "500")
    conn = clients.imap_connect(stack, "imaps")
    try:
        typ, text, chal = clients.imap_auth(conn, mech, account.sasl(mech))
        assert typ == "NO" and "[UNAVAILABLE]" in text, text
        assert chal == []
    finally:
        conn.logout()
    token_server.fail("introspect", "500")
    conn = clients.pop_connect(stack, "pop3s")
    try:
        ok, text, chal = clients.pop_auth(conn, mech, account.sasl(mech))
        assert not ok and text.startswith("-ERR [SYS/TEMP]"), text
        assert chal == []
    finally:
        conn.quit()
    stack.wait_for_log(stack.dovecot_log,
                       "Introspection failed: 500 Internal Server Error")


def test_token_issued_by_token_server_is_valid(stack, token_server):
    # What bearmail-auth will be given after a refresh at token_url.
    if token_server is None:
        pytest.skip("needs the TokenServer endpoint")
    user = "issued@interop.test"
    token = token_server.issue_access(user)
    conn = clients.smtp_connect(stack, "smtps")
    try:
        code, text, _ = clients.smtp_auth(conn, "OAUTHBEARER",
                                          clients.oauthbearer(user, token))
        assert code == 235, text
    finally:
        conn.quit()


def test_smtp_token_of_another_user_is_refused(stack, new_account):
    alice, bob = new_account("alice"), new_account("bob")
    conn = clients.smtp_connect(stack, "submission")
    try:
        # Introspection says the token is active but belongs to alice.
        code, text, _ = clients.smtp_auth(
            conn, "XOAUTH2", clients.xoauth2(bob.user, alice.token))
        assert code == 535, text
    finally:
        conn.quit()


@pytest.mark.parametrize("source", ["127.0.0.1", OTHER_SOURCE])
def test_smtp_no_auth_before_starttls(stack, account, source):
    # Postfix has no "loopback is secure" exception: from either address
    # the submission port hides AUTH and wants STARTTLS first.
    conn = clients.smtp_connect(stack, "submission", source=source,
                                starttls=False)
    try:
        assert "starttls" in conn.esmtp_features
        assert "auth" not in conn.esmtp_features
        code, text = conn.docmd("AUTH XOAUTH2 "
                                + clients.b64(account.xoauth2()))
        assert (code, text) == (530, b"5.7.0 Must issue a STARTTLS command "
                                      b"first")
        assert conn.docmd("MAIL FROM:<%s>" % account.user)[0] == 530
        conn.starttls(context=clients.tls_context(stack.ca_file))
        conn.ehlo("client.interop.test")
        assert "XOAUTH2" in conn.esmtp_features["auth"].split()
    finally:
        conn.close()


def test_smtp_mail_needs_auth(stack):
    # mynetworks is empty: even 127.0.0.1 must authenticate to send.
    conn = clients.smtp_connect(stack, "submission")
    try:
        assert conn.docmd("MAIL FROM:<someone@interop.test>")[0] == 250
        code, text = conn.docmd("RCPT TO:<rcpt@example.org>")
        assert code == 554 and b"Access denied" in text
    finally:
        conn.close()


# --- SMTP: long tokens ---------------------------------------------------

def test_smtp_inline_response_limited_by_line_length(stack, account):
    """Postfix reads at most line_length_limit = 2048 octets of a command
    line: "AUTH XOAUTH2 <b64>" of 2045 octets works, 2049 is cut and the
    truncated base64 is refused.  For a user like ours that is a token
    of about 1,490 characters."""
    ok = _token_of_b64_len(account, "XOAUTH2", 2032)
    too_long = _token_of_b64_len(account, "XOAUTH2", 2036)
    assert len("AUTH XOAUTH2 ") + 2032 == 2045
    for token, want in ((ok, 235), (too_long, 535)):
        conn = clients.smtp_connect(stack, "submission")
        try:
            code, text, _ = clients.smtp_auth(
                conn, "XOAUTH2", clients.xoauth2(account.user, token),
                inline=True)
        finally:
            conn.close()
        assert code == want, (len(token), text)
    assert "Invalid base64 data in initial response" in text
    stack.wait_for_log(stack.postfix_log, "request longer than 2048")


def test_smtp_two_step_carries_long_tokens(stack, account):
    """After "AUTH XOAUTH2" and the empty 334, Postfix accepts a response
    line up to smtpd_sasl_response_limit = 12288 octets (12284 base64
    characters work, 12288 get "500 5.5.6"); Dovecot's auth socket takes
    that too."""
    for b64_len, want in ((2036, 235), (8192, 235), (12284, 235),
                          (12288, 500)):
        token = _token_of_b64_len(account, "XOAUTH2", b64_len)
        conn = clients.smtp_connect(stack, "submission")
        try:
            code, text, _ = clients.smtp_auth(
                conn, "XOAUTH2", clients.xoauth2(account.user, token),
                inline=False)
        finally:
            conn.close()
        assert code == want, (b64_len, text)
    assert text == "5.5.6 SASL response limit exceeded"


def test_smtp_two_step_oauthbearer_long_token(stack, account):
    port = stack.ports["smtps"]
    token = _token_of_b64_len(account, "OAUTHBEARER", 6000, port)
    conn = clients.smtp_connect(stack, "smtps")
    try:
        code, text, _ = clients.smtp_auth(
            conn, "OAUTHBEARER", account.oauthbearer(port, token),
            inline=False)
        assert code == 235, text
    finally:
        conn.quit()


# --- IMAP ----------------------------------------------------------------

@pytest.fixture(scope="module")
def delivered(stack):
    """One message in the Maildir, sent through Postfix; its marker."""
    st = stack
    acct = clients.Account(st, "sender@interop.test", "tok-delivered")
    st.add_token(acct.token, acct.user)
    marker = "fetch-me-%s" % uuid.uuid4().hex
    conn = clients.smtp_connect(st, "submission")
    try:
        assert clients.smtp_auth(conn, "XOAUTH2", acct.xoauth2())[0] == 235
        _send(conn, acct, marker)
    finally:
        conn.quit()
    st.wait_for_message(marker.encode())
    return marker.encode()


@pytest.mark.parametrize("initial", [True, False], ids=["sasl-ir", "two-step"])
@pytest.mark.parametrize("mech", MECHS)
@pytest.mark.parametrize("port", ["imap", "imaps"])
def test_imap_authenticate_and_list(stack, account, delivered, port, mech,
                                    initial):
    conn = clients.imap_connect(stack, port, source=OTHER_SOURCE)
    try:
        assert "SASL-IR" in conn.capabilities
        for m in MECHS:
            assert "AUTH=" + m in conn.capabilities
        typ, text, chal = clients.imap_auth(
            conn, mech, account.sasl(mech, stack.ports[port]), initial)
        assert (typ, chal) == ("OK", []), text
        typ, data = conn.select("INBOX", readonly=True)
        assert typ == "OK" and int(data[0]) >= 1
        typ, data = conn.search(None, "SUBJECT", '"%s"' % delivered.decode())
        assert typ == "OK" and data[0], "delivered message not listed"
        num = data[0].split()[0]
        typ, data = conn.fetch(num, "(BODY.PEEK[])")
        assert typ == "OK" and delivered in data[0][1]
    finally:
        conn.logout()


@pytest.mark.parametrize("mech", MECHS)
def test_imap_bad_token(stack, account, mech):
    conn = clients.imap_connect(stack, "imaps")
    try:
        typ, text, chal = clients.imap_auth(
            conn, mech, account.sasl(mech, stack.ports["imaps"], "wrong"))
        assert typ == "NO" and "[AUTHENTICATIONFAILED]" in text
        assert len(chal) == 1 and b'"status"' in chal[0]
    finally:
        conn.logout()


def test_imap_loopback_counts_as_secure(stack, account):
    """Dovecot's quirk: remote address == local address (127.0.0.1 to
    127.0.0.1) is "secured", so AUTH is offered and works in plaintext."""
    conn = clients.imap_connect(stack, "imap", source="127.0.0.1",
                                starttls=False)
    try:
        assert "LOGINDISABLED" not in conn.capabilities
        assert "AUTH=XOAUTH2" in conn.capabilities
        typ, text, _ = clients.imap_auth(conn, "XOAUTH2", account.xoauth2())
        assert typ == "OK", text
    finally:
        conn.logout()


def test_imap_starttls_required_from_other_address(stack, account):
    conn = clients.imap_connect(stack, "imap", source=OTHER_SOURCE,
                                starttls=False)
    try:
        assert "LOGINDISABLED" in conn.capabilities
        assert not [c for c in conn.capabilities if c.startswith("AUTH=")]
        typ, text, _ = clients.imap_auth(conn, "XOAUTH2", account.xoauth2())
        assert typ == "NO" and "[PRIVACYREQUIRED]" in text
        conn.starttls(ssl_context=clients.tls_context(stack.ca_file))
        assert "AUTH=XOAUTH2" in conn.capabilities
        typ, text, _ = clients.imap_auth(conn, "XOAUTH2", account.xoauth2())
        assert typ == "OK", text
    finally:
        conn.logout()


def test_imap_plain_login_with_token_as_password(stack, account):
    # The oauth2 passdb also serves PLAIN/LOGIN: the password is a token.
    conn = clients.imap_connect(stack, "imaps")
    try:
        assert conn.login(account.user, account.token)[0] == "OK"
    finally:
        conn.logout()


# --- POP3 ----------------------------------------------------------------

@pytest.mark.parametrize("initial", [True, False], ids=["inline", "two-step"])
@pytest.mark.parametrize("mech", MECHS)
@pytest.mark.parametrize("port", ["pop3", "pop3s"])
def test_pop3_auth_and_retr(stack, account, delivered, port, mech, initial):
    conn = clients.pop_connect(stack, port, source=OTHER_SOURCE)
    try:
        assert set(MECHS) <= set(conn.capa()["SASL"])
        ok, text, chal = clients.pop_auth(
            conn, mech, account.sasl(mech, stack.ports[port]), initial)
        assert ok and chal == [], text
        count, _ = conn.stat()
        assert count >= 1
        found = False
        for i in range(1, count + 1):
            _, lines, _ = conn.retr(i)
            if delivered in b"\n".join(lines):
                found = True
        assert found, "delivered message not in POP3 mailbox"
    finally:
        conn.quit()


@pytest.mark.parametrize("mech", MECHS)
def test_pop3_bad_token(stack, account, mech):
    conn = clients.pop_connect(stack, "pop3s")
    try:
        ok, text, chal = clients.pop_auth(
            conn, mech, account.sasl(mech, stack.ports["pop3s"], "wrong"))
        assert not ok and text.startswith("-ERR [AUTH]")
        assert len(chal) == 1 and b'"status"' in chal[0]
    finally:
        conn.quit()


def test_pop3_stls_required_from_other_address(stack, account):
    conn = clients.pop_connect(stack, "pop3", source=OTHER_SOURCE,
                               starttls=False)
    try:
        capa = conn.capa()
        assert "STLS" in capa and capa.get("SASL", []) == []
        ok, text, _ = clients.pop_auth(conn, "XOAUTH2", account.xoauth2())
        assert not ok, text
        assert "[AUTH] Plaintext authentication disabled" in text
        conn.stls(context=clients.tls_context(stack.ca_file))
        ok, text, _ = clients.pop_auth(conn, "XOAUTH2", account.xoauth2())
        assert ok, text
    finally:
        conn.close()


# --- IMAP and POP3: long tokens ------------------------------------------

@pytest.mark.parametrize("initial", [True, False], ids=["inline", "two-step"])
@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_dovecot_drops_sasl_responses_of_8k(stack, account, proto, initial):
    """Dovecot's login processes take a SASL response of fewer than 8192
    base64 characters, inline or after "+"; at 8192 they log
    "Authentication response too large" and close the connection
    without a reply."""
    ok_tok = _token_of_b64_len(account, "XOAUTH2", 8188)
    big_tok = _token_of_b64_len(account, "XOAUTH2", 8192)
    connect = clients.imap_connect if proto == "imap" else clients.pop_connect
    port = proto + "s"

    conn = connect(stack, port)
    if proto == "imap":
        typ, text, _ = clients.imap_auth(
            conn, "XOAUTH2", clients.xoauth2(account.user, ok_tok), initial)
        assert typ == "OK", text
        conn.logout()
    else:
        ok, text, _ = clients.pop_auth(
            conn, "XOAUTH2", clients.xoauth2(account.user, ok_tok), initial)
        assert ok, text
        conn.quit()

    conn = connect(stack, port)
    try:
        if proto == "imap":
            typ, text, _ = clients.imap_auth(
                conn, "XOAUTH2", clients.xoauth2(account.user, big_tok),
                initial)
            assert typ == "NO" and "socket error" in text, text
        else:
            with pytest.raises((poplib.error_proto, OSError)) as exc:
                clients.pop_auth(conn, "XOAUTH2",
                                 clients.xoauth2(account.user, big_tok),
                                 initial)
            assert "EOF" in str(exc.value)
    finally:
        conn.sock.close()
    stack.wait_for_log(stack.dovecot_log, "Authentication response too large")


# --- the harness ---------------------------------------------------------

def test_anvil_penalty_is_off(stack):
    # A mode-0 listener is not created; without the socket Dovecot's auth
    # process runs with no penalties (see dovecot.conf.in).
    run = os.path.join(stack.dir, "dovecot", "run")
    assert os.path.exists(os.path.join(run, "anvil"))
    assert not os.path.exists(os.path.join(run, "anvil-auth-penalty"))


def test_postfix_stop_and_start(stack, account):
    stack.stop_postfix()
    try:
        with pytest.raises(ConnectionRefusedError):
            smtplib.SMTP("127.0.0.1", stack.ports["submission"], timeout=5)
    finally:
        stack.start_postfix()
    conn = clients.smtp_connect(stack, "submission")
    try:
        assert clients.smtp_auth(conn, "XOAUTH2", account.xoauth2())[0] == 235
    finally:
        conn.quit()


def test_base64_helper_matches_facts():
    # FACTS.md's XOAUTH2 example, to keep clients.xoauth2() honest.
    raw = clients.xoauth2("someuser@example.com",
                          "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    assert base64.b64encode(raw.encode()) == (
        b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmd"
        b"DRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==")
