"""`bearmail-auth test ACCOUNT` against fake mail servers and token server.

The SMTP sink (tests/servers/fakeserver.py SmtpSink) and the small IMAP
and POP3 login servers below (fakeserver handlers) serve the test PKI's
"server" certificate (CN=localhost) with implicit TLS or STARTTLS; the
token server (tests/servers/tokenserver.py) plays the OAuth provider when a
token must be refreshed.  Everything listens on 127.0.0.1.
"""

import base64
import hashlib
import os
import re
import ssl
import subprocess
import time

import pytest

from servers.fakeserver import FakeServer, Mismatch
from servers.pki import OPENSSL
from servers.tokenserver import TokenServer

USER = "alice@example.com"
GOOD = "ya29.good-access-token"


class Setup:
    """A configuration, a token store and the account's SMTP sink."""

    def __init__(self, tmp_path, bm_bin, pki, ts):
        self.tmp = tmp_path
        self.pki = pki
        self.ts = ts
        self.exe = bm_bin("bearmail-auth")
        self.state = tmp_path / "state"
        self.conf = tmp_path / "bearmail.conf"
        self.env = {k: v for k, v in os.environ.items()
                    if "proxy" not in k.lower()}
        self.env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path),
                        XDG_STATE_HOME=str(tmp_path / "xdg"), LC_ALL="C")
        self.env.pop("BEARMAIL_CONFIG", None)

    def write_conf(self, port, tls="tls", host="localhost", ca=None,
                   provider="google", imap=None, pop=None, extra=""):
        lines = ["[defaults]", "state_dir = %s" % self.state, "",
                 "[acct]", "provider = " + provider, "user = " + USER]
        if provider != "password":
            lines += ["client_id = %s" % self.ts.client_id,
                      "client_secret = %s" % self.ts.client_secret,
                      "token_endpoint = %s" % self.ts.token_url]
        lines += ["smtp_host = %s" % host, "smtp_port = %d" % port,
                  "smtp_tls = %s" % tls,
                  "ca_file = %s" % (ca or self.pki.ca.cert),
                  "domain = client.example", "timeout = 10"]
        for key, srv in (("imap", imap), ("pop", pop)):
            if srv is not None:
                lines += ["%s_host = localhost" % key,
                          "%s_port = %d" % (key, srv.port),
                          "%s_tls = %s" % (key, srv.mode)]
        lines += [l.strip() for l in extra.strip().splitlines()]
        self.conf.write_text("\n".join(lines) + "\n")

    def write_token(self, access, refresh=None, expires_in=3600):
        tokdir = self.state / "tokens"
        tokdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.state, 0o700)
        os.chmod(tokdir, 0o700)
        now = int(time.time())
        text = "bearmail-token 1\nuser %s\n" % USER
        if access:
            text += "access_token %s\nexpires %d\nobtained %d\n" % (
                access, now + expires_in, now - 60)
        if refresh:
            text += "refresh_token %s\nauthorized %d\n" % (refresh, now - 60)
        path = tokdir / "acct.token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, text.encode())
        os.close(fd)

    def test(self, *args):
        p = subprocess.run([self.exe, "-C", str(self.conf)] + list(args),
                           capture_output=True, text=True, timeout=60,
                           env=self.env)
        return p


@pytest.fixture
def ts():
    with TokenServer() as srv:
        yield srv


@pytest.fixture
def s(tmp_path, bm_bin, pki, ts):
    return Setup(tmp_path, bm_bin, pki, ts)


class LoginServer:
    """Just enough IMAP4rev1 or POP3 to be tested: greeting, CAPABILITY /
    CAPA, STARTTLS / STLS, AUTHENTICATE / AUTH with XOAUTH2 (bad tokens get
    Google's error challenge), LOGOUT / QUIT.  Records each login in
    .auths as (mech, user, ok).  greeting replaces the greeting's text;
    caps replaces the capabilities offered once TLS is up (IMAP: the
    atoms as one string; POP3: the CAPA lines, or None for a server
    that answers CAPA with -ERR)."""

    DEFAULT = object()

    def __init__(self, proto, pki, tokens, mode="tls", greeting=None,
                 caps=DEFAULT):
        self.proto = proto
        self.mode = mode
        self.tokens = tokens
        self.greeting = greeting or "fake %s ready" % (
            "IMAP" if proto == "imap" else "POP3")
        self.caps = caps
        self.auths = []
        ctx = pki.server_context("server")
        self.srv = FakeServer(handler=self.serve,
                              tls=ctx if mode == "tls" else None,
                              starttls_context=ctx).start()
        self.port = self.srv.port

    def stop(self):
        self.srv.wait()
        self.srv.stop()
        self.srv.check()

    def check_xoauth2(self, s, raw, ask):
        m = re.fullmatch(rb"user=([^\x01]*)\x01auth=Bearer ([^\x01]+)"
                         rb"\x01\x01", raw)
        if not m:
            raise Mismatch("bad XOAUTH2 payload")
        ok = m.group(1).decode() == USER and m.group(2).decode() in \
            self.tokens
        if not ok:
            err = base64.b64encode(b'{"status":"401","schemes":"bearer",'
                                   b'"scope":"https://mail.google.com/"}')
            if ask(err.decode()) != b"":
                s.error("XOAUTH2 error challenge not answered with an "
                        "empty line")
        self.auths.append(("XOAUTH2", m.group(1).decode(), ok))
        return ok

    def serve(self, s):
        try:
            (self.imap if self.proto == "imap" else self.pop)(s)
        except Mismatch:
            if not s.eof:
                raise

    def imap(self, s):
        def caps():
            c = "IMAP4rev1 SASL-IR IDLE UIDPLUS ID"
            if self.mode == "starttls" and not s.tls:
                return c + " STARTTLS LOGINDISABLED"
            if self.caps is not self.DEFAULT:
                return self.caps
            return c + " AUTH=XOAUTH2 AUTH=OAUTHBEARER"
        s.send("* OK [CAPABILITY %s] %s\r\n" % (caps(), self.greeting))
        while True:
            tag, _, rest = s.readline().decode().partition(" ")
            cmd, _, arg = rest.partition(" ")
            cmd = cmd.upper()
            if cmd == "CAPABILITY":
                s.send("* CAPABILITY %s\r\n%s OK done\r\n" % (caps(), tag))
            elif cmd == "STARTTLS":
                s.send("%s OK begin TLS\r\n" % tag)
                s.starttls()
            elif cmd == "AUTHENTICATE":
                mech, _, ir = arg.partition(" ")
                if not ir:
                    s.send("+ \r\n")
                    ir = s.readline().decode()

                def ask(ch):
                    s.send("+ %s\r\n" % ch)
                    return s.readline()
                if self.check_xoauth2(s, base64.b64decode(ir), ask):
                    s.send("%s OK authenticated\r\n" % tag)
                else:
                    s.send("%s NO [AUTHENTICATIONFAILED] Invalid "
                           "credentials (Failure)\r\n" % tag)
            elif cmd == "LOGOUT":
                s.send("* BYE bye\r\n%s OK done\r\n" % tag)
                return
            else:
                s.send("%s BAD unexpected\r\n" % tag)

    def pop(self, s):
        s.send("+OK %s\r\n" % self.greeting)
        while True:
            cmd, _, arg = s.readline().decode().partition(" ")
            cmd = cmd.upper()
            if cmd == "CAPA":
                c = ["USER", "UIDL", "TOP", "RESP-CODES"]
                if self.mode == "starttls" and not s.tls:
                    c.append("STLS")
                elif self.caps is not self.DEFAULT:
                    c = self.caps
                else:
                    c.append("SASL XOAUTH2 OAUTHBEARER")
                if c is None:
                    s.send("-ERR unknown command\r\n")
                    continue
                s.send("+OK\r\n" + "".join(x + "\r\n" for x in c) + ".\r\n")
            elif cmd == "STLS":
                s.send("+OK begin TLS\r\n")
                s.starttls()
            elif cmd == "AUTH":
                mech, _, ir = arg.partition(" ")
                if not ir:
                    s.send("+ \r\n")
                    ir = s.readline().decode()

                def ask(ch):
                    s.send("+ %s\r\n" % ch)
                    return s.readline()
                if self.check_xoauth2(s, base64.b64decode(ir), ask):
                    s.send("+OK welcome\r\n")
                else:
                    s.send("-ERR [AUTH] Authentication failed.\r\n")
            elif cmd == "QUIT":
                s.send("+OK bye\r\n")
                return
            else:
                s.send("-ERR unexpected\r\n")


@pytest.fixture
def login_server(pki):
    made = []

    def make(proto, tokens, mode="tls", **kw):
        srv = LoginServer(proto, pki, tokens, mode, **kw)
        made.append(srv)
        return srv
    yield make
    for srv in made:
        srv.stop()


def block(out, proto):
    """The report's block for one server ("SMTP", "IMAP", "POP3")."""
    for b in out.split("\n\n"):
        if b.startswith(proto + " "):
            return b
    raise AssertionError("no %s block in:\n%s" % (proto, out))


def field(out, label):
    """The value of the report line "  label   value" (the first one)."""
    m = re.search(r"^  %s +(.*)$" % re.escape(label), out, re.M)
    assert m, "no %r line in:\n%s" % (label, out)
    return m.group(1)


def fingerprint(pem_path):
    der = ssl.PEM_cert_to_DER_cert(open(pem_path).read())
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, 64, 2))


def not_after(pem_path):
    """The certificate's expiry as the report shows it."""
    out = subprocess.run([OPENSSL, "x509", "-noout", "-enddate", "-in",
                          pem_path], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out.startswith("notAfter="), out
    t = ssl.cert_time_to_seconds(out[len("notAfter="):])
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def assert_tls(out, pki):
    """The TLS lines of one block (or of a report with one server)."""
    assert field(out, "TLS").startswith(("TLSv1.2, ", "TLSv1.3, "))
    assert field(out, "certificate") == "CN=localhost"
    assert field(out, "issuer").endswith("CN=bearmail test CA")
    assert field(out, "expires") == not_after(pki.server.cert)
    fp = field(out, "SHA-256")
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", fp)
    assert fp == fingerprint(pki.server.cert)
    # The facts in the order the session learnt them.
    labels = re.findall(r"^  (\S+)", out, re.M)
    i = labels.index("connected")
    assert labels[i:i + 7] == ["connected", "greeting", "TLS", "certificate",
                               "issuer", "expires", "SHA-256"], labels


def assert_good_report(p, pki, sink):
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert out.startswith("account acct (%s, provider google, XOAUTH2)"
                          % USER)
    assert_tls(out, pki)
    assert field(out, "connected") == "localhost[127.0.0.1]:%d" % sink.port
    assert "fake.example" in field(out, "greeting")
    assert field(out, "server name") == "fake.example"
    caps = field(out, "capabilities").split()
    for c in ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
              "CHUNKING"):
        assert c in caps, caps
    assert "SIZE 35882577" in field(out, "capabilities")
    assert field(out, "AUTH").split() == ["XOAUTH2", "OAUTHBEARER", "PLAIN",
                                          "LOGIN"]
    assert field(out, "login") == "XOAUTH2 as %s: authenticated" % USER
    assert p.stderr == ""


# ---- a good server ----------------------------------------------------------

def test_implicit_tls(s, smtp_sink, pki):
    sink = smtp_sink(tls_mode="implicit", user=USER, token=GOOD)
    s.write_conf(sink.port, tls="tls")
    s.write_token(GOOD)
    p = s.test("test", "acct")
    assert_good_report(p, pki, sink)
    assert "SMTP localhost:%d, implicit TLS" % sink.port in p.stdout
    sink.wait()
    sess = sink.sessions[0]
    assert sess.tls and sess.sni == "localhost"
    assert [(a["mech"], a["ok"]) for a in sess.auth] == [("XOAUTH2", True)]
    # A test logs in and leaves: no mail transaction, a proper QUIT.
    assert [l.split()[0] for l in sess.lines] == ["EHLO", "AUTH", "QUIT"]
    assert sink.messages == []
    assert s.ts.count("token") == 0


def test_starttls(s, smtp_sink, pki):
    sink = smtp_sink(tls_mode="starttls", user=USER, token=GOOD)
    s.write_conf(sink.port, tls="starttls")
    s.write_token(GOOD)
    p = s.test("test", "--smtp", "acct")
    assert_good_report(p, pki, sink)
    assert "SMTP localhost:%d, STARTTLS" % sink.port in p.stdout
    sink.wait()
    assert [l.split()[0] for l in sink.sessions[0].lines] == [
        "EHLO", "STARTTLS", "EHLO", "AUTH", "QUIT"]


def test_oauthbearer_and_few_caps(s, smtp_sink):
    sink = smtp_sink(tls_mode="implicit", user=USER, token=GOOD,
                     capabilities=[], auth_mechs=["OAUTHBEARER"])
    s.write_conf(sink.port, extra="auth = oauthbearer")
    s.write_token(GOOD)
    p = s.test("test", "acct")
    assert p.returncode == 0, p.stderr
    assert field(p.stdout, "capabilities") == "none that bearmail uses"
    assert field(p.stdout, "AUTH") == "OAUTHBEARER"
    assert field(p.stdout, "login") == \
        "OAUTHBEARER as %s: authenticated" % USER


def test_plain_text_loopback_with_password(s, smtp_sink):
    sink = smtp_sink(tls_mode="none", user=USER, password="pw-secret-1")
    s.write_conf(sink.port, tls="none", host="127.0.0.1",
                 provider="password",
                 extra="password_command = echo pw-secret-1")
    p = s.test("-v", "test", "acct")
    assert p.returncode == 0, p.stderr
    assert field(p.stdout, "TLS").startswith("none")
    assert field(p.stdout, "login") == "PLAIN as %s: authenticated" % USER
    assert "pw-secret-1" not in p.stdout + p.stderr
    plain = base64.b64encode(("\0%s\0pw-secret-1" % USER).encode()).decode()
    assert plain not in p.stderr


# ---- failures and their exit codes ------------------------------------------

def test_wrong_ca_is_a_tls_failure(s, smtp_sink, pki):
    sink = smtp_sink(tls_mode="implicit", user=USER, token=GOOD,
                     strict=False)
    s.write_conf(sink.port, ca=pki.other_ca.cert)
    s.write_token(GOOD)
    p = s.test("test", "acct")
    assert p.returncode == 75, p.stdout + p.stderr
    assert "SMTP localhost:%d" % sink.port in p.stderr
    assert re.search(r"issuer is not trusted|unknown issuer|not trusted",
                     p.stderr), p.stderr
    assert "authenticated" not in p.stdout
    assert "SHA-256" not in p.stdout
    sink.wait()
    assert all(not sess.auth for sess in sink.sessions)


def test_starttls_wrong_ca_sends_no_credentials(s, smtp_sink, pki):
    sink = smtp_sink(tls_mode="starttls", user=USER, token=GOOD,
                     strict=False)
    s.write_conf(sink.port, tls="starttls", ca=pki.other_ca.cert)
    s.write_token(GOOD)
    p = s.test("test", "acct")
    assert p.returncode == 75, p.stderr
    assert "not trusted" in p.stderr
    sink.wait()
    assert "AUTH" not in [l.split()[0] for l in sink.sessions[0].lines]


def test_connection_refused_75(s, free_port):
    port = free_port()
    s.write_conf(port, host="127.0.0.1", tls="tls")
    s.write_token(GOOD)
    p = s.test("test", "acct")
    assert p.returncode == 75, p.stderr
    assert "SMTP 127.0.0.1:%d" % port in p.stderr
    assert "refused" in p.stderr.lower()
    assert "connected" not in p.stdout


def test_refused_token_refreshed_once_then_ok(s, smtp_sink):
    ts = s.ts

    class Live:
        def __contains__(self, tok):
            return tok in ts.access_tokens
    sink = smtp_sink(tls_mode="implicit", user=USER, token=Live())
    s.write_conf(sink.port)
    rt = ts.issue_refresh(USER)
    # Looks fresh to the store, but the server does not know it.
    s.write_token("ya29.revoked-token", refresh=rt)
    p = s.test("-v", "test", "acct")
    assert p.returncode == 0, p.stdout + p.stderr
    assert ts.count("token") == 1
    logins = re.findall(r"^  login +(.*)$", p.stdout, re.M)
    assert len(logins) == 2
    assert "token refused" in logins[0] and "refreshing it once" in logins[0]
    assert logins[1] == "XOAUTH2 as %s: authenticated" % USER
    sink.wait()
    auths = [a["ok"] for sess in sink.sessions for a in sess.auth]
    assert auths == [False, True]
    secrets = ["ya29.revoked-token", rt] + list(ts.access_tokens)
    for tok in secrets:
        assert tok not in p.stdout and tok not in p.stderr
    # The refreshed token was stored for everyone else.
    stored = (s.state / "tokens" / "acct.token").read_text()
    assert any(t in stored for t in ts.access_tokens)


def test_refused_after_one_refresh_77(s, smtp_sink):
    ts = s.ts
    sink = smtp_sink(tls_mode="implicit", user=USER,
                     token="ya29.only-this-one")
    s.write_conf(sink.port)
    rt = ts.issue_refresh(USER)
    s.write_token("ya29.revoked-token", refresh=rt)
    p = s.test("test", "acct")
    assert p.returncode == 77, p.stdout + p.stderr
    assert ts.count("token") == 1
    sink.wait()
    auths = [a["ok"] for sess in sink.sessions for a in sess.auth]
    assert auths == [False, False]
    assert "SMTP localhost:%d" % sink.port in p.stderr
    assert "refused again" in p.stderr
    assert "authenticated" not in p.stdout
    for tok in ["ya29.revoked-token", rt] + list(ts.access_tokens):
        assert tok not in p.stdout and tok not in p.stderr


def test_no_token_stored_77(s, smtp_sink):
    sink = smtp_sink(tls_mode="implicit", user=USER, token=GOOD)
    s.write_conf(sink.port)
    p = s.test("test", "acct")
    assert p.returncode == 77, p.stderr
    assert "bearmail-auth login acct" in p.stderr
    sink.wait()
    assert all(not sess.auth for sess in sink.sessions)


def test_mechanism_not_offered_78(s, smtp_sink):
    sink = smtp_sink(tls_mode="implicit", user=USER, token=GOOD,
                     auth_mechs=["PLAIN", "LOGIN"])
    s.write_conf(sink.port)
    s.write_token(GOOD)
    p = s.test("test", "acct")
    assert p.returncode == 78, p.stderr
    assert field(p.stdout, "AUTH") == "PLAIN LOGIN"
    assert "XOAUTH2" in p.stderr


def test_temporary_auth_failure_75(s, smtp_sink):
    sink = smtp_sink(tls_mode="implicit", user=USER, token=GOOD,
                     hooks={"AUTH": "454 4.7.0 Too many login attempts, "
                                    "please try again later."})
    s.write_conf(sink.port)
    s.write_token(GOOD)
    p = s.test("test", "acct")
    assert p.returncode == 75, p.stderr
    assert "454" in p.stderr
    assert s.ts.count("token") == 0


# ---- the transcript -----------------------------------------------------------

def test_verbose_transcript_redacted(s, smtp_sink):
    sink = smtp_sink(tls_mode="starttls", user=USER, token=GOOD)
    s.write_conf(sink.port, tls="starttls")
    s.write_token(GOOD)
    p = s.test("-v", "test", "acct")
    assert p.returncode == 0, p.stderr
    assert "STARTTLS" in p.stderr and "AUTH XOAUTH2" in p.stderr
    assert "EHLO client.example" in p.stderr
    payload = base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01"
                                % (USER, GOOD)).encode()).decode()
    for secret in (GOOD, payload, payload[:40]):
        assert secret not in p.stderr
        assert secret not in p.stdout


# ---- command line -------------------------------------------------------------

def test_usage(s):
    s.write_conf(1)
    p = s.test("test", "--nntp", "acct")
    assert p.returncode == 64 and "unknown option --nntp" in p.stderr
    p = s.test("test", "nosuch")
    assert p.returncode == 64, p.stderr
    p = s.test("--help")
    assert "test [--smtp] [--imap] [--pop]" in p.stdout


# ---- IMAP and POP3 ------------------------------------------------------------

def test_all_three_servers(s, smtp_sink, login_server, pki):
    sink = smtp_sink(tls_mode="implicit", user=USER, token=GOOD)
    imap = login_server("imap", [GOOD], mode="tls")
    pop = login_server("pop", [GOOD], mode="starttls")
    s.write_conf(sink.port, imap=imap, pop=pop)
    s.write_token(GOOD)
    p = s.test("test", "--smtp", "--imap", "--pop", "acct")
    assert p.returncode == 0, p.stdout + p.stderr
    sm, im, po = (block(p.stdout, x) for x in ("SMTP", "IMAP", "POP3"))
    assert p.stdout.index(sm) < p.stdout.index(im) < p.stdout.index(po)
    assert im.startswith("IMAP localhost:%d, implicit TLS" % imap.port)
    assert po.startswith("POP3 localhost:%d, STARTTLS" % pop.port)
    for b, srv in ((sm, sink), (im, imap), (po, pop)):
        # The same block for the three: where, greeting, TLS details.
        assert field(b, "connected") == "localhost[127.0.0.1]:%d" % srv.port
        assert_tls(b, pki)
        assert field(b, "login") == "XOAUTH2 as %s: authenticated" % USER
    assert field(im, "greeting") == "fake IMAP ready"
    assert field(po, "greeting") == "fake POP3 ready"
    # As the server sent them, AUTH=... on the AUTH line.
    assert field(im, "capabilities") == "IMAP4rev1 SASL-IR IDLE UIDPLUS ID"
    assert field(im, "AUTH") == "XOAUTH2 OAUTHBEARER"
    # After STLS: the capabilities asked again, STLS no longer listed;
    # the SASL line is the AUTH line.
    assert field(po, "capabilities") == "USER, UIDL, TOP, RESP-CODES"
    assert field(po, "AUTH") == "XOAUTH2 OAUTHBEARER"
    labels = re.findall(r"^  (\S+)", po, re.M)
    assert labels[-3:] == ["capabilities", "AUTH", "login"], labels
    assert imap.auths == [("XOAUTH2", USER, True)]
    assert pop.auths == [("XOAUTH2", USER, True)]
    assert s.ts.count("token") == 0


def test_imap_starttls_pop_implicit_tls_details(s, login_server, pki):
    imap = login_server("imap", [GOOD], mode="starttls")
    pop = login_server("pop", [GOOD], mode="tls")
    s.write_conf(1, imap=imap, pop=pop)
    s.write_token(GOOD)
    p = s.test("test", "--imap", "--pop", "acct")
    assert p.returncode == 0, p.stdout + p.stderr
    im, po = block(p.stdout, "IMAP"), block(p.stdout, "POP3")
    assert im.startswith("IMAP localhost:%d, STARTTLS" % imap.port)
    assert po.startswith("POP3 localhost:%d, implicit TLS" % pop.port)
    for b in (im, po):
        assert_tls(b, pki)
        assert field(b, "login") == "XOAUTH2 as %s: authenticated" % USER
    # What the server says once TLS is up, not before (no STARTTLS or
    # LOGINDISABLED any more).
    assert field(im, "capabilities") == "IMAP4rev1 SASL-IR IDLE UIDPLUS ID"
    assert field(im, "AUTH") == "XOAUTH2 OAUTHBEARER"
    assert field(po, "capabilities") == "USER, UIDL, TOP, RESP-CODES"
    assert field(po, "AUTH") == "XOAUTH2 OAUTHBEARER"


def test_capabilities_as_received_and_sanitised(s, login_server):
    imap = login_server(
        "imap", [GOOD], mode="none",
        greeting="Hello \x1b[2J there",
        caps="imap4rev1 Sasl-IR X-GM-EXT-1 APPENDLIMIT=35651584 "
             "auth=PLAIN AUTH=XOAUTH2 COMPRESS=DEFLATE")
    pop = login_server(
        "pop", [GOOD], mode="none", greeting="<1896.697170952@fake>",
        caps=["TOP", "EXPIRE NEVER", "IMPLEMENTATION fake \x1b]0;x\x07",
              "sasl PLAIN XOAUTH2", "UIDL"])
    s.write_conf(1, imap=imap, pop=pop)
    s.write_token(GOOD)
    p = s.test("test", "--imap", "--pop", "acct")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "\x1b" not in p.stdout and "\x07" not in p.stdout
    im, po = block(p.stdout, "IMAP"), block(p.stdout, "POP3")
    assert field(im, "TLS").startswith("none")
    assert "SHA-256" not in im and "certificate" not in im
    assert field(im, "greeting") == "Hello ?[2J there"
    assert field(im, "capabilities") == \
        "imap4rev1 Sasl-IR X-GM-EXT-1 APPENDLIMIT=35651584 COMPRESS=DEFLATE"
    assert field(im, "AUTH") == "PLAIN XOAUTH2"
    assert field(po, "greeting") == "<1896.697170952@fake>"
    assert field(po, "capabilities") == \
        "TOP, EXPIRE NEVER, IMPLEMENTATION fake ?]0;x?, UIDL"
    assert field(po, "AUTH") == "PLAIN XOAUTH2"
    assert imap.auths == [("XOAUTH2", USER, True)]
    assert pop.auths == [("XOAUTH2", USER, True)]


def test_pop_without_capa_and_imap_without_auth(s, login_server, pki):
    imap = login_server("imap", [GOOD], caps="IMAP4rev1 LOGINDISABLED")
    pop = login_server("pop", [GOOD], caps=None)
    s.write_conf(1, imap=imap, pop=pop)
    s.write_token(GOOD)
    p = s.test("test", "--imap", "--pop", "acct")
    # IMAP offers no XOAUTH2: a configuration matter (78), after the report.
    assert p.returncode == 78, p.stdout + p.stderr
    im, po = block(p.stdout, "IMAP"), block(p.stdout, "POP3")
    assert_tls(im, pki)
    assert field(im, "capabilities") == "IMAP4rev1 LOGINDISABLED"
    assert field(im, "AUTH") == "not offered"
    assert "authenticated" not in im and imap.auths == []
    assert "IMAP localhost:%d" % imap.port in p.stderr
    # An old POP3 server: nothing listed, AUTH tried all the same.
    assert_tls(po, pki)
    assert field(po, "capabilities").startswith("none listed")
    assert field(po, "AUTH").startswith("not listed")
    assert field(po, "login") == "XOAUTH2 as %s: authenticated" % USER
    assert pop.auths == [("XOAUTH2", USER, True)]


def test_default_adds_imap_for_fetch_accounts(s, smtp_sink, login_server,
                                              tmp_path):
    sink = smtp_sink(tls_mode="implicit", user=USER, token=GOOD)
    imap = login_server("imap", [GOOD])
    pop = login_server("pop", [GOOD])
    s.write_conf(sink.port, imap=imap, pop=pop)
    s.write_token(GOOD)
    p = s.test("test", "acct")
    assert p.returncode == 0, p.stderr
    assert "IMAP " not in p.stdout and imap.auths == []
    s.write_conf(sink.port, imap=imap, pop=pop,
                 extra="deliver = maildir:%s" % (tmp_path / "Maildir"))
    p = s.test("test", "acct")
    assert p.returncode == 0, p.stderr
    assert field(block(p.stdout, "IMAP"), "login").endswith("authenticated")
    assert "POP3 " not in p.stdout and pop.auths == []
    p = s.test("test", "--pop", "acct")
    assert p.returncode == 0, p.stderr
    assert "SMTP " not in p.stdout and "IMAP " not in p.stdout
    assert pop.auths == [("XOAUTH2", USER, True)]


def test_imap_starttls_token_refreshed_once(s, smtp_sink, login_server):
    ts = s.ts

    class Live:
        def __contains__(self, tok):
            return tok in ts.access_tokens
    imap = login_server("imap", Live(), mode="starttls")
    s.write_conf(1, imap=imap)
    rt = ts.issue_refresh(USER)
    s.write_token("ya29.revoked-token", refresh=rt)
    p = s.test("-v", "test", "--imap", "acct")
    assert p.returncode == 0, p.stdout + p.stderr
    assert ts.count("token") == 1
    assert [a[2] for a in imap.auths] == [False, True]
    logins = re.findall(r"^  login +(.*)$", p.stdout, re.M)
    assert "token refused" in logins[0]
    assert logins[1].endswith("authenticated")
    assert "STARTTLS" in p.stderr and "AUTHENTICATE XOAUTH2" in p.stderr
    for tok in ["ya29.revoked-token", rt] + list(ts.access_tokens):
        assert tok not in p.stdout and tok not in p.stderr


def test_pop_refused_while_smtp_works_77(s, smtp_sink, login_server):
    ts = s.ts

    class Live:
        def __contains__(self, tok):
            return tok in ts.access_tokens
    sink = smtp_sink(tls_mode="implicit", user=USER, token=Live())
    pop = login_server("pop", ["ya29.only-this-one"])
    s.write_conf(sink.port, pop=pop)
    rt = ts.issue_refresh(USER)
    s.write_token(ts.issue_access(USER), refresh=rt)
    p = s.test("test", "--smtp", "--pop", "acct")
    assert p.returncode == 77, p.stdout + p.stderr
    # One server failing does not hide the others' results.
    assert field(block(p.stdout, "SMTP"), "login").endswith("authenticated")
    assert "authenticated" not in block(p.stdout, "POP3")
    assert "POP3 localhost:%d" % pop.port in p.stderr
    assert "SMTP" not in p.stderr
    assert ts.count("token") == 1
    assert [a[2] for a in pop.auths] == [False, False]


def test_missing_host_78(s, smtp_sink):
    sink = smtp_sink(tls_mode="implicit", user=USER, token=GOOD)
    s.write_conf(sink.port, provider="oauth2")
    s.write_token(GOOD)
    p = s.test("test", "--imap", "acct")
    assert p.returncode == 78, p.stdout + p.stderr
    assert "has no imap_host" in p.stderr


# ---- no core files ------------------------------------------------------------

def test_no_core_dumps(s, silent_port, no_core_while_waiting):
    # bearmail-auth holds refresh tokens: RLIMIT_CORE 0 from the start
    # (src/priv.c also makes it non-dumpable).
    s.write_conf(silent_port)
    s.write_token(GOOD)
    no_core_while_waiting([s.exe, "-C", str(s.conf), "test", "--smtp",
                           "acct"], s.env)
