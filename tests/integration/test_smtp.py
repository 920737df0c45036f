"""The SMTP client module (src/smtp.c) through tests/tools/bm-smtp.

Each test starts the fake SMTP sink (or a scripted fake server) on
127.0.0.1 and runs bm-smtp against it; the server records what arrived.
Exit codes are sysexits: 0 sent, 65 DATAERR, 67 NOUSER, 69 PERMFAIL,
75 TEMPFAIL/NET/TLS, 76 PROTO, 77 AUTH, 78 CONFIG.
"""

import os
import re
import subprocess

import pytest

from servers.fakeserver import close, expect, read, reply, stall, starttls

USER = "alice@example.com"
GOOD = "ya29.good-token"
BAD = "ya29.expired-token"

MSG = (b"From: alice@example.com\r\nTo: bob@example.org\r\n"
       b"Subject: test\r\n\r\nhello\r\n")


@pytest.fixture
def smtp(bm_bin, pki, tmp_path):
    """smtp(port, *rcpts, tls=..., auth=..., secrets=[...], message=bytes,
    args=[...], verbose=False, host=None) -> CompletedProcess (text)."""
    exe = bm_bin("bm-smtp")
    counter = [0]

    def go(port, *rcpts, tls="none", auth=None, secrets=(GOOD,),
           message=MSG, args=(), verbose=False, host=None, sender=USER,
           timeout=10):
        counter[0] += 1
        msgfile = tmp_path / ("msg%d" % counter[0])
        msgfile.write_bytes(message)
        argv = [exe, "--tls", tls, "--timeout", str(timeout),
                "--message", str(msgfile), "--from", sender]
        if tls != "none":
            argv += ["--ca", pki.ca.cert]
        if auth:
            secfile = tmp_path / ("secret%d" % counter[0])
            secfile.write_text("\n".join(secrets) + "\n")
            os.chmod(secfile, 0o600)
            argv += ["--auth", auth, "--user", USER,
                     "--secret-file", str(secfile)]
        if verbose:
            argv.append("-v")
        argv += list(args)
        if host is None:
            host = "localhost" if tls != "none" else "127.0.0.1"
        argv += [host, str(port)] + list(rcpts or ["bob@example.org"])
        return subprocess.run(argv, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              timeout=timeout * 6 + 30)
    return go


def lines_of(srv, verb):
    return [l for s in srv.sessions for l in s.lines
            if l.upper().startswith(verb)]


# --- TLS modes and mechanisms -------------------------------------------

@pytest.mark.parametrize("mech", ["xoauth2", "oauthbearer"])
def test_starttls_port(smtp_sink, smtp, mech):
    srv = smtp_sink(tls_mode="starttls", user=USER, token=GOOD)
    r = smtp(srv.port, tls="starttls", auth=mech)
    assert r.returncode == 0, r.stdout + r.stderr
    srv.wait()
    s = srv.sessions[0]
    assert s.tls
    ehlos = [l for l in s.lines if l.startswith("EHLO")]
    assert len(ehlos) == 2, "EHLO again after STARTTLS"
    assert len(srv.messages) == 1
    m = srv.messages[0]
    assert m.auth == (mech.upper(), USER)
    assert m.data == MSG
    assert "final: 250" in r.stdout


@pytest.mark.parametrize("mech", ["xoauth2", "oauthbearer"])
def test_implicit_tls_port(smtp_sink, smtp, mech):
    srv = smtp_sink(tls_mode="implicit", user=USER, token=GOOD)
    r = smtp(srv.port, tls="tls", auth=mech)
    assert r.returncode == 0, r.stdout + r.stderr
    srv.wait()
    assert srv.sessions[0].tls
    assert not any(l.startswith("STARTTLS") for l in srv.sessions[0].lines)
    rec = srv.sessions[0].auth[0]
    assert rec["ok"] and rec["mech"] == mech.upper()
    if mech == "oauthbearer":
        assert rec["host"] == "localhost"
        assert rec["port"] == str(srv.port)
    assert len(srv.messages) == 1


@pytest.mark.parametrize("mech", ["plain", "login"])
def test_password_mechanisms(smtp_sink, smtp, mech):
    srv = smtp_sink(tls_mode="implicit", user=USER, password="s3cret pw")
    r = smtp(srv.port, tls="tls", auth=mech, secrets=["s3cret pw"],
             verbose=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "s3cret" not in r.stderr
    assert srv.messages[0].auth == (mech.upper(), USER)


@pytest.mark.parametrize("mech", ["xoauth2", "oauthbearer"])
@pytest.mark.parametrize("toklen,inline", [(40, True), (2000, False)])
def test_initial_response_framing(smtp_sink, smtp, mech, toklen, inline):
    token = "t" * toklen
    srv = smtp_sink(tls_mode="starttls", user=USER, token=token)
    r = smtp(srv.port, tls="starttls", auth=mech, secrets=[token],
             verbose=True)
    assert r.returncode == 0, r.stdout + r.stderr
    srv.wait()
    rec = srv.sessions[0].auth[0]
    assert rec["ok"]
    assert rec["inline"] is inline
    authline = [l for l in srv.sessions[0].lines if l.startswith("AUTH")][0]
    # RFC 4954: the command line, CRLF included, at most 512 octets.
    assert len(authline) + 2 <= 512
    assert token not in r.stderr and "redacted" in r.stderr


@pytest.mark.parametrize("mech", ["xoauth2", "oauthbearer"])
@pytest.mark.parametrize("toklen", [20, 2000])
def test_error_challenge_then_refreshed_token(smtp_sink, smtp, mech, toklen):
    # The sink checks the answer to its error challenge (empty line for
    # XOAUTH2, AQ== for OAUTHBEARER) and fails the test otherwise.  With
    # a long token the response went after a first, empty 334.
    good, bad = GOOD + "g" * toklen, BAD + "b" * toklen
    srv = smtp_sink(tls_mode="starttls", user=USER, token=good)
    r = smtp(srv.port, tls="starttls", auth=mech, secrets=[bad, good],
             verbose=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "retrying with the refreshed token" in r.stdout
    assert re.search(r"token rejected|invalid", r.stdout, re.I), r.stdout
    srv.wait()
    assert len(srv.sessions) == 1, "retried on the same connection"
    assert [a["ok"] for a in srv.sessions[0].auth] == [False, True]
    assert [a["inline"] for a in srv.sessions[0].auth] == [toklen < 100] * 2
    assert len(srv.messages) == 1
    assert BAD not in r.stderr and GOOD not in r.stderr


@pytest.mark.parametrize("mech", ["xoauth2", "oauthbearer"])
def test_rejected_token_is_auth_failure(smtp_sink, smtp, mech):
    srv = smtp_sink(tls_mode="starttls", user=USER, token=GOOD)
    r = smtp(srv.port, tls="starttls", auth=mech, secrets=[BAD])
    assert r.returncode == 77, r.stdout + r.stderr
    assert "status: AUTH code 535" in r.stdout
    assert re.search(r"token rejected|invalid_token", r.stdout), r.stdout
    srv.wait()
    assert not lines_of(srv, "MAIL")
    assert srv.messages == []


def test_mechanism_not_offered(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="implicit", auth_mechs=["PLAIN", "LOGIN"])
    r = smtp(srv.port, tls="tls", auth="xoauth2")
    assert r.returncode == 78, r.stdout + r.stderr
    assert "does not offer AUTH XOAUTH2" in r.stdout
    assert "PLAIN LOGIN" in r.stdout
    srv.wait()
    assert not lines_of(srv, "AUTH")


def test_capabilities_forgotten_after_starttls(fake_server, smtp):
    # Before TLS the server claims XOAUTH2; after TLS only PLAIN.  A
    # client that kept the first list would send AUTH XOAUTH2.
    srv = fake_server([
        reply("220 fake ESMTP"),
        expect(r"EHLO \S+"),
        reply("250-fake", "250-AUTH XOAUTH2", "250-PIPELINING",
              "250 STARTTLS"),
        expect("STARTTLS"), reply("220 go ahead"),
        starttls(),
        expect(r"EHLO \S+"), reply("250-fake", "250 AUTH PLAIN"),
        expect("QUIT"), reply("221 bye"),
    ])
    r = smtp(srv.port, tls="starttls", auth="xoauth2")
    assert r.returncode == 78, r.stdout + r.stderr
    assert "does not offer AUTH XOAUTH2" in r.stdout


# --- STARTTLS must happen ----------------------------------------------

def test_starttls_missing_fails_and_sends_nothing(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="none", require_tls=False, user=USER,
                    token=GOOD)
    r = smtp(srv.port, tls="starttls", auth="xoauth2")
    assert r.returncode == 75, r.stdout + r.stderr
    assert "status: TLS" in r.stdout
    assert "STARTTLS" in r.stdout
    srv.wait()
    data = b"".join(bytes(s.data) for s in srv.sessions)
    assert b"AUTH" not in data and b"MAIL" not in data
    assert srv.messages == []


@pytest.mark.parametrize("code,exitcode", [("454 4.7.0 TLS not available",
                                            75),
                                           ("502 5.5.1 Not implemented",
                                            75)])
def test_starttls_refused_fails_and_sends_nothing(fake_server, smtp, code,
                                                  exitcode):
    srv = fake_server([
        reply("220 fake ESMTP"),
        expect(r"EHLO \S+"),
        reply("250-fake", "250-AUTH XOAUTH2", "250 STARTTLS"),
        expect("STARTTLS"), reply(code),
        expect("QUIT"),             # said in clear: harmless, and polite
        stall(5),
    ])
    r = smtp(srv.port, tls="starttls", auth="xoauth2")
    assert r.returncode == exitcode, r.stdout + r.stderr
    srv.wait()
    data = bytes(srv.session.data)
    assert b"AUTH" not in data and b"MAIL" not in data
    assert code.split()[0] in r.stdout


def test_530_must_starttls_explained(smtp_sink, smtp):
    # --tls none against a server that insists on STARTTLS: its 530 to
    # MAIL is a configuration problem, and the message says what to set.
    srv = smtp_sink(tls_mode="starttls", require_auth=False)
    r = smtp(srv.port, tls="none")
    assert r.returncode == 78, r.stdout + r.stderr
    assert "smtp_tls = starttls" in r.stdout
    assert "code 530" in r.stdout
    srv.wait()
    assert srv.messages == []


# --- transactions -----------------------------------------------------

def _rcpt_hook(refuse):
    def hook(session, arg):
        for addr, text in refuse.items():
            if "<%s>" % addr in arg:
                return text
        return None
    return hook


@pytest.mark.parametrize("pipelining", [True, False])
def test_pipelining_on_and_off(smtp_sink, smtp, pipelining):
    caps = ["SIZE 35882577", "8BITMIME", "ENHANCEDSTATUSCODES"]
    if pipelining:
        caps.append("PIPELINING")
    seen = {}

    def mail_hook(session, arg):
        # What the client had already sent when MAIL was read.
        seen["buffered"] = bytes(session.buf)
        return None
    srv = smtp_sink(tls_mode="none", require_auth=False, capabilities=caps,
                    hooks={"MAIL": mail_hook})
    rcpts = ["a@example.org", "b@example.org", "c@example.org"]
    r = smtp(srv.port, *rcpts)
    assert r.returncode == 0, r.stdout + r.stderr
    srv.wait()
    assert srv.messages[0].rcpts == rcpts
    s = srv.sessions[0]
    if not pipelining:
        # The client waits for each reply: nothing after MAIL yet.
        assert seen["buffered"] == b""
    else:
        # One write for MAIL and all RCPTs: on loopback one recv.
        chunk = [c for _, c in s.recvs if b"MAIL FROM" in c][0]
        assert all(("RCPT TO:<%s>" % a).encode() in chunk for a in rcpts)
    # DATA is never pipelined with the RCPTs (all-or-nothing).
    chunk = [c for _, c in s.recvs if b"RCPT TO" in c][-1]
    assert b"DATA" not in chunk


def test_many_recipients_pipelined_in_windows(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="none", require_auth=False)
    rcpts = ["r%03d@example.org" % i for i in range(250)]
    r = smtp(srv.port, *rcpts)
    assert r.returncode == 0, r.stdout + r.stderr
    assert srv.messages[0].rcpts == rcpts


@pytest.mark.parametrize("pipelining", [True, False])
def test_partial_rcpt_rejection_sends_nothing(smtp_sink, smtp, pipelining):
    caps = ["ENHANCEDSTATUSCODES"] + (["PIPELINING"] if pipelining else [])
    srv = smtp_sink(tls_mode="none", require_auth=False, capabilities=caps,
                    hooks={"RCPT": _rcpt_hook(
                        {"nobody@example.org": "550 5.1.1 no such user"})})
    r = smtp(srv.port, "a@example.org", "nobody@example.org",
             "c@example.org")
    assert r.returncode == 67, r.stdout + r.stderr
    assert "rcpt <a@example.org> OK 250" in r.stdout
    assert "rcpt <nobody@example.org> NOUSER 550 5.1.1 no such user" \
        in r.stdout
    assert "rcpt <c@example.org> OK 250" in r.stdout
    assert "nothing sent" in r.stdout
    srv.wait()
    assert srv.messages == []
    assert not lines_of(srv, "DATA")
    assert lines_of(srv, "RSET")
    # The session survived the refusal: RSET, then a normal QUIT.
    assert lines_of(srv, "QUIT")


def test_rcpt_tempfail_is_75(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="none", require_auth=False,
                    hooks={"RCPT": _rcpt_hook(
                        {"busy@example.org": "450 4.2.1 mailbox busy"})})
    r = smtp(srv.port, "a@example.org", "busy@example.org")
    assert r.returncode == 75, r.stdout + r.stderr
    assert "status: TEMPFAIL code 450" in r.stdout
    srv.wait()
    assert srv.messages == []


@pytest.mark.parametrize("hook,reply_text,exitcode,words", [
    ("GREETING", "421 4.7.0 Try again later", 75, "try again later"),
    ("GREETING", "554 5.7.1 no service", 69, "554"),
    ("MAIL", "550 5.7.1 sender refused", 69, "MAIL FROM"),
    ("MAIL", "451 4.3.0 local trouble", 75, "451"),
    ("MAIL", "550 5.4.5 Daily user sending limit exceeded", 75, "quota"),
    ("MAIL", "421 4.7.0 closing", 75, "closing"),
    ("DATA", "554 5.5.1 no way", 65, "DATA"),
    ("DATA_END", "554 5.7.1 spam", 65, "refused"),
    ("DATA_END", "451 4.7.0 later", 75, "451"),
    ("DATA_END", "552 5.3.4 Message size exceeds fixed limit", 65,
     "message too large for the server (limit 35882577)"),
    ("DATA_END", "550 5.4.5 Daily user sending limit exceeded", 75,
     "quota"),
])
def test_reply_statuses(smtp_sink, smtp, hook, reply_text, exitcode, words):
    srv = smtp_sink(tls_mode="none", require_auth=False,
                    hooks={hook: reply_text})
    r = smtp(srv.port)
    assert r.returncode == exitcode, r.stdout + r.stderr
    assert words in r.stdout, r.stdout
    assert "code %s" % reply_text[:3] in r.stdout
    srv.wait()


def test_auth_throttled_is_temporary(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="implicit", hooks={
        "AUTH": "454 4.7.0 Too many login attempts, please try again later."})
    r = smtp(srv.port, tls="tls", auth="xoauth2")
    assert r.returncode == 75, r.stdout + r.stderr
    assert "throttles logins" in r.stdout
    srv.wait()


def test_size_limit_checked_before_sending(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="none", require_auth=False,
                    capabilities=["SIZE 100", "PIPELINING"])
    r = smtp(srv.port, message=MSG + b"x" * 200 + b"\r\n")
    assert r.returncode == 65, r.stdout + r.stderr
    assert "message too large for the server (limit 100" in r.stdout
    srv.wait()
    assert not lines_of(srv, "MAIL")


# --- MAIL and RCPT parameters -------------------------------------------

DSN_ARGS = ["--8bit", "--smtputf8", "--notify", "success,failure",
            "--ret", "hdrs", "--envid", "id+1=x y"]


def test_parameters_when_offered(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="none", require_auth=False, capabilities=[
        "PIPELINING", "SIZE 35882577", "8BITMIME", "SMTPUTF8", "DSN"])
    r = smtp(srv.port, "b@example.org", args=DSN_ARGS)
    assert r.returncode == 0, r.stdout + r.stderr
    m = srv.messages[0]
    p = m.sender_params.split()
    assert "SIZE=%d" % len(MSG) in p
    assert "BODY=8BITMIME" in p and "SMTPUTF8" in p
    assert "RET=HDRS" in p
    assert "ENVID=id+2B1+3Dx+20y" in p
    assert m.rcpt_params == ["NOTIFY=SUCCESS,FAILURE"]


def test_parameters_absent_when_not_offered(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="none", require_auth=False,
                    capabilities=["PIPELINING"])
    args = [a for a in DSN_ARGS if a != "--smtputf8"]
    r = smtp(srv.port, "b@example.org", args=args)
    assert r.returncode == 0, r.stdout + r.stderr
    m = srv.messages[0]
    assert m.sender_params == ""
    assert m.rcpt_params == [""]


def test_notify_never(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="none", require_auth=False,
                    capabilities=["DSN"])
    r = smtp(srv.port, args=["--notify", "never"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert srv.messages[0].rcpt_params == ["NOTIFY=NEVER"]


def test_smtputf8_needed_but_not_offered(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="none", require_auth=False,
                    capabilities=["PIPELINING", "8BITMIME"])
    r = smtp(srv.port, "j\u00fcrgen@example.org")
    assert r.returncode == 69, r.stdout + r.stderr
    assert "SMTPUTF8" in r.stdout
    srv.wait()
    assert not lines_of(srv, "MAIL")


def test_smtputf8_address_when_offered(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="none", require_auth=False)
    r = smtp(srv.port, "j\u00fcrgen@example.org")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SMTPUTF8" in srv.messages[0].sender_params.split()
    assert srv.messages[0].rcpts == ["j\u00fcrgen@example.org"]


def test_null_sender(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="none", require_auth=False)
    r = smtp(srv.port, sender="")
    assert r.returncode == 0, r.stdout + r.stderr
    assert srv.messages[0].sender == ""


# --- the message --------------------------------------------------------

def test_dot_stuffing_round_trip(smtp_sink, smtp):
    body = (b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\n...\r\nend.\r\n"
            b" .\r\n.\r\n")
    # Put a line-starting dot and a mid-line dot on the client's 64 KiB
    # read boundaries.
    pad = b"y" * (65536 - len(body) - 2) + b"\r\n"
    tail = b".at boundary\r\nmid" + b"z" * (65536 - 17) + b".mid\r\n.\r\n"
    msg = body + pad + tail
    assert msg[65536:65537] == b"."
    srv = smtp_sink(tls_mode="none", require_auth=False)
    r = smtp(srv.port, message=msg)
    assert r.returncode == 0, r.stdout + r.stderr
    m = srv.messages[0]
    assert m.data == msg
    assert b"\r\n...\r\n" in m.raw and b"\r\n..x\r\n" in m.raw


def test_lf_only_message_sent_as_crlf(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="none", require_auth=False)
    r = smtp(srv.port, message=b"Subject: lf\n\nline\n.\nlast")
    assert r.returncode == 0, r.stdout + r.stderr
    assert srv.messages[0].data == b"Subject: lf\r\n\r\nline\r\n.\r\nlast\r\n"
    assert b"\n" not in srv.messages[0].raw.replace(b"\r\n", b"")


@pytest.mark.unwrapped  # measures the program's own resident set
def test_30mb_message_in_bounded_memory(smtp_sink, bm_bin, tmp_path):
    line = b"0123456789" * 7 + b"\r\n"
    n = 30 * 1024 * 1024 // len(line) + 1
    path = tmp_path / "big.eml"
    with open(path, "wb") as f:
        f.write(b"Subject: big\r\n\r\n")
        chunk = line * 1000
        for _ in range(n // 1000):
            f.write(chunk)
    size = os.path.getsize(path)
    assert size > 30 * 1000 * 1000
    srv = smtp_sink(tls_mode="none", require_auth=False, timeout=60)
    argv = [bm_bin("bm-smtp"), "--tls", "none", "--timeout", "60",
            "--peak-rss", "--message", str(path), "--from", USER,
            "127.0.0.1", str(srv.port), "bob@example.org"]
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    srv.wait(timeout=60)
    assert len(srv.messages[0].data) == size
    assert "SIZE=%d" % size in srv.messages[0].sender_params
    # The program's own peak (VmHWM, see bm-smtp.c: wait4()'s ru_maxrss
    # would include this Python process, inherited across execve).  A
    # memory bound, not a timing one: the message is 30 MB.
    m = re.search(r"^peak_rss_kib: (\d+)$", r.stdout, re.M)
    assert m, r.stdout
    assert 0 < int(m.group(1)) < 16 * 1024, "peak RSS %s KiB" % m.group(1)


@pytest.mark.parametrize("size", [1000, 4 * 1024 * 1024])
def test_connection_dropped_mid_data(fake_server, smtp, size):
    srv = fake_server([
        reply("220 fake ESMTP"),
        expect(r"EHLO \S+"), reply("250-fake", "250 PIPELINING"),
        expect(r"MAIL FROM:<.*>.*"), expect(r"RCPT TO:<.*>.*"),
        reply("250 ok", "250 ok"),
        expect("DATA"), reply("354 go"),
        read(1), close(),
    ], strict=False)
    msg = b"Subject: x\r\n\r\n" + (b"a" * 78 + b"\r\n") * (size // 80)
    r = smtp(srv.port, message=msg)
    # 75 (NET) and not killed by SIGPIPE (-13).
    assert r.returncode == 75, (r.returncode, r.stdout, r.stderr)
    assert "status: NET" in r.stdout


def test_refused_mid_data_reports_the_reply(fake_server, smtp):
    # The server refuses in mid-stream and hangs up: the client's write
    # fails, and the reply it left behind is the diagnosis.
    srv = fake_server([
        reply("220 fake ESMTP"),
        expect(r"EHLO \S+"), reply("250-fake", "250 PIPELINING"),
        expect(r"MAIL FROM:<.*>.*"), expect(r"RCPT TO:<.*>.*"),
        reply("250 ok", "250 ok"),
        expect("DATA"), reply("354 go"),
        read(1), reply("552 5.3.4 Message too big for me"), close(),
    ], strict=False)
    msg = b"Subject: x\r\n\r\n" + (b"a" * 78 + b"\r\n") * 100000
    r = smtp(srv.port, message=msg)
    assert r.returncode == 65, (r.returncode, r.stdout, r.stderr)
    assert "552 5.3.4 Message too big for me" in r.stdout


def test_second_message_on_one_session(smtp_sink, smtp):
    srv = smtp_sink(tls_mode="implicit", user=USER, token=GOOD)
    r = smtp(srv.port, tls="tls", auth="xoauth2", args=["--count", "3"])
    assert r.returncode == 0, r.stdout + r.stderr
    srv.wait()
    assert len(srv.sessions) == 1 and len(srv.messages) == 3
    assert all(m.data == MSG for m in srv.messages)


# --- malformed replies ---------------------------------------------------

@pytest.mark.parametrize("bad", [
    ["250-fake", "251 mismatched"],
    ["2x0 garbage"],
    ["HTTP/1.1 400 Bad Request"],
    ["250-x"] * 200 + ["250 end"],
])
def test_malformed_ehlo_reply_is_proto(fake_server, smtp, bad):
    srv = fake_server([
        reply("220 fake ESMTP"),
        expect(r"EHLO \S+"), reply(*bad),
        stall(5),
    ], strict=False)
    r = smtp(srv.port)
    assert r.returncode == 76, r.stdout + r.stderr
    assert "status: PROTO" in r.stdout


def test_multiline_reply_text_reported(fake_server, smtp):
    srv = fake_server([
        reply("220 fake ESMTP"),
        expect(r"EHLO \S+"), reply("250 fake"),
        expect(r"MAIL FROM:<.*>.*"),
        reply("550-5.7.1 first line", "550 5.7.1 second line"),
        expect("QUIT"), reply("221 bye"),
    ], strict=False)
    r = smtp(srv.port)
    assert r.returncode == 69, r.stdout + r.stderr
    assert "550 5.7.1 first line second line" in r.stdout
