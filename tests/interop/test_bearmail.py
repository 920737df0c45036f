"""bearmail and bearmail-auth against real Postfix 3.7 and Dovecot 2.3.

Each test configures one account of provider oauth2 whose token endpoint
is the session's TokenServer (tests/servers/tokenserver.py), the endpoint
the stack's Dovecot also introspects: an access token that bearmail-auth
obtains there is valid at Postfix.  bearmail submits to the stack's
STARTTLS submission port or its implicit-TLS smtps port, and the test
reads what Postfix's virtual agent wrote into the Maildir.

What is covered: both SMTP ports with XOAUTH2 and OAUTHBEARER and the
message as it lands (envelope, Bcc removed, Date/Message-ID added, From
rewritten), SMTPUTF8, DSN, SIZE, -bs; a stale access token refreshed
through the endpoint (once for concurrent senders); a token the server
revokes (one forced refresh, then success, or exit 77 when the grant is
gone or the new token is refused too); the endpoint failing behind
Dovecot; tokens long enough that the response must follow the 334, the
longest that still goes on the AUTH line, and one over Postfix's SASL
response limit (no refresh for nothing); no AUTH without
TLS or with an untrusted certificate; git send-email and mutt driving
bearmail; bearmail-auth token, status, logout and test; the queue
(delivery after Postfix comes back; skipped while bearmail -q says the
queue is not available); bearmail-fetch over IMAP 143/993 and POP3
110/995 (skipped if it is not built).

bearmail cannot be bound to another source address (there is no setting
for it), so the STARTTLS rule is tested from 127.0.0.1 with smtp_tls =
none: Postfix, unlike Dovecot, makes no exception for loopback (see
README), so that is the same rule as from 127.0.0.2.
"""

import base64
import email
import email.policy
import email.utils
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid

import pytest

import clients

ACCOUNT = "interop"
CLIENT_DOMAIN = "client.interop.test"
MECHS = ("xoauth2", "oauthbearer")
# bearmail's limit for an AUTH line with its initial response (RFC 4954
# section 4: 512 octets with CRLF), src/sasl.h SASL_SMTP_LINE_MAX.
SMTP_LINE_MAX = 512


@pytest.fixture
def ts(token_server):
    if token_server is None:
        pytest.skip("needs the TokenServer endpoint (BM_INTEROP_ENDPOINT "
                    "or BM_INTEROP_INTROSPECTION_URL chose another)")
    return token_server


class Bear:
    """A configuration, token store and environment for one account of
    the stack, and ways to run bearmail and bearmail-auth with them."""

    def __init__(self, tmp, stack, ts, bm_bin, user, port="submission",
                 auth="xoauth2", tls=None, queue="never", host="localhost",
                 imap="imaps", pop="pop3s", ca_file=None, extra=()):
        self.tmp = tmp
        self.stack = stack
        self.ts = ts
        self.user = user
        self.exe = bm_bin("bearmail")
        self.auth_exe = bm_bin("bearmail-auth")
        self.state = tmp / "state"
        self.queue_dir = tmp / "queue"
        self.log = tmp / "bearmail.log"
        self.conf = tmp / "bearmail.conf"
        self.state.mkdir(mode=0o700, exist_ok=True)
        if tls is None:
            tls = "tls" if port == "smtps" else "starttls"
        lines = ["[defaults]",
                 "log = %s" % self.log,
                 "state_dir = %s" % self.state,
                 "queue_dir = %s" % self.queue_dir,
                 "queue = %s" % queue,
                 "",
                 "[%s]" % ACCOUNT,
                 "provider = oauth2",
                 "user = %s" % user,
                 "client_id = %s" % ts.client_id,
                 "client_secret = %s" % ts.client_secret,
                 "token_endpoint = %s" % ts.token_url,
                 "revoke_endpoint = %s" % ts.revoke_url,
                 "scope = mail",
                 "smtp_host = %s" % host,
                 "smtp_port = %d" % stack.ports[port],
                 "smtp_tls = %s" % tls,
                 "imap_host = localhost",
                 "imap_port = %d" % stack.ports[imap],
                 "imap_tls = %s" % ("tls" if imap == "imaps"
                                    else "starttls"),
                 "pop_host = localhost",
                 "pop_port = %d" % stack.ports[pop],
                 "pop_tls = %s" % ("tls" if pop == "pop3s" else "starttls"),
                 "auth = %s" % auth,
                 "ca_file = %s" % (ca_file or stack.ca_file),
                 "domain = %s" % CLIENT_DOMAIN,
                 "timeout = 20"]
        lines += list(extra)
        self.conf.write_text("\n".join(lines) + "\n")
        self.env = dict(os.environ)
        self.env.update({
            "BEARMAIL_CONFIG": str(self.conf),
            "BEARMAIL_AUTH": self.auth_exe,
            "HOME": str(tmp),
            "XDG_CONFIG_HOME": str(tmp / "xdg"),
            "XDG_STATE_HOME": str(tmp / "xdgstate"),
            "TMPDIR": str(tmp),
            "LC_ALL": "C.UTF-8",
        })

    # --- the token store ---------------------------------------------

    @property
    def token_file(self):
        return self.state / "tokens" / (ACCOUNT + ".token")

    def store(self, access, refresh=None, expires_in=3600):
        """Write the token file as bearmail-auth would (src/token.c)."""
        d = self.state / "tokens"
        d.mkdir(mode=0o700, exist_ok=True)
        now = int(time.time())
        lines = ["bearmail-token 1", "user " + self.user]
        if access:
            lines += ["access_token " + access,
                      "expires %d" % (now + expires_in),
                      "obtained %d" % now]
        if refresh:
            lines += ["refresh_token " + refresh, "authorized %d" % now]
        lines.append("scope mail")
        self.token_file.write_text("\n".join(lines) + "\n")
        os.chmod(self.token_file, 0o600)

    def stored(self):
        """The token file as a dict key -> value."""
        out = {}
        for line in self.token_file.read_text().splitlines()[1:]:
            k, _, v = line.partition(" ")
            out[k] = v
        return out

    # --- running the programs ----------------------------------------

    def _run(self, argv, data, timeout=90):
        if isinstance(data, str):
            data = data.encode()
        p = subprocess.run(argv, input=data, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=self.env,
                           timeout=timeout)
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        return p

    def send(self, args, data):
        return self._run([self.exe] + list(args), data)

    def fetch(self, exe, *args):
        return self._run([exe] + list(args), b"")

    def auth(self, *args, data=b""):
        return self._run([self.auth_exe] + list(args), data)

    def import_refresh(self, refresh):
        p = self.auth("import", ACCOUNT, data=refresh + "\n")
        assert p.returncode == 0, p.err
        return p

    def logtext(self):
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def bear(tmp_path, stack, ts, bm_bin):
    n = [0]

    def make(account, **kw):
        n[0] += 1
        d = tmp_path / ("b%d" % n[0])
        d.mkdir()
        return Bear(d, stack, ts, bm_bin, account.user, **kw)
    return make


# --- reading what arrived -------------------------------------------------

def copies(stack, marker, n=1, timeout=20):
    """The n delivered messages that contain marker (bytes), waiting for
    all of them; fails if fewer arrive."""
    end = time.monotonic() + timeout
    while True:
        found = [m for m in stack.messages() if marker in m]
        if len(found) >= n or time.monotonic() > end:
            break
        time.sleep(0.1)
    assert len(found) >= n, ("%d of %d copies of %r arrived; postfix log:\n%s"
                             % (len(found), n, marker,
                                stack.log_tail(stack.postfix_log)))
    return found


def none_arrived(stack, marker):
    return not [m for m in stack.messages() if marker in m]


def assert_not_sent(stack, p, marker):
    """Nothing of the message left bearmail: no transaction in its -v
    transcript (a delivery would only show in the Maildir a moment after
    bearmail exits), and nothing with marker in the Maildir."""
    assert "*** " in p.err, "run bearmail with -v"
    sent = [t for d, t in transcript(p) if d == "C"]
    assert not [t for t in sent if t.startswith(("MAIL", "DATA", "BDAT"))], \
        sent
    assert none_arrived(stack, marker.encode())


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def body_of(raw):
    return raw.split(b"\n\n", 1)[1]


def transcript(p):
    """The -v transcript of bearmail: (direction, text) pairs, direction
    "C" for what bearmail sent and "S" for what it read."""
    out = []
    for line in p.err.splitlines():
        if line.startswith("--> "):
            out.append(("C", line[4:]))
        elif line.startswith("<-- "):
            out.append(("S", line[4:]))
    return out


def complaint(p):
    """bearmail's own message: the last stderr line that starts with the
    program's name (with -v it may come before the closing QUIT)."""
    mine = [l for l in p.err.splitlines()
            if l.startswith(("bearmail:", "bearmail-fetch:"))]
    assert mine, p.err
    return mine[-1]


def auth_lines(p):
    return [t for d, t in transcript(p) if d == "C" and t.startswith("AUTH")]


def token_requests(ts):
    with ts.lock:
        return [f for ep, f in ts.requests if ep == "token"]


def issue_tokens_of_length(monkeypatch, ts, length):
    """Make the token server issue access tokens of exactly length
    characters from now on (tokenserver.py has no option for it); undone
    after the test."""
    def issue(user=None):
        tok = "at-%d-" % length
        tok += secrets.token_urlsafe(length)[:length - len(tok)]
        assert len(tok) == length
        with ts.lock:
            ts.access_tokens[tok] = user or ts.user
        return tok
    monkeypatch.setattr(ts, "issue_access", issue)


def secrets_absent(text, *secret_values):
    for s in secret_values:
        assert s not in text, "a secret leaked"


def message(marker, body_lines=("hello",)):
    return ("From: root (Cron Daemon)\n"
            "To: To Person <to-%s@example.org>\n"
            "Cc: cc-%s@example.net\n"
            "Bcc: bcc-%s@example.com\n"
            "Subject: interop %s\n"
            "\n"
            "%s\n" % (marker, marker, marker, marker, "\n".join(body_lines)))


# --- submission on both ports, both mechanisms -----------------------------

@pytest.mark.parametrize("mech", MECHS)
@pytest.mark.parametrize("port", ["submission", "smtps"])
def test_submit(stack, bear, account, port, mech):
    b = bear(account, port=port, auth=mech)
    b.store(account.token)
    marker = "submit-%s-%s-%s" % (port, mech, uuid.uuid4().hex[:8])
    p = b.send(["-t", "-i", "-v"],
               message(marker, body_lines=("first", ".", "..", "last")))
    assert p.returncode == 0, p.err
    got = copies(stack, marker.encode(), 3)
    rcpts = {"to-%s@example.org" % marker, "cc-%s@example.net" % marker,
             "bcc-%s@example.com" % marker}
    delivered_to = set()
    for raw in got:
        h = parse(raw)
        delivered_to.add(h["Delivered-To"])
        # The envelope sender: the account, since rewrite_from = auto
        # turned the local "root" into it.
        assert h["Return-Path"] == "<%s>" % account.user
        assert h["From"] == '"Cron Daemon" <%s>' % account.user
        assert h["Bcc"] is None
        # Only the lines Postfix adds per recipient name the Bcc one.
        assert not [l for l in raw.split(b"\n\n", 1)[0].split(b"\n")
                    if b"bcc-" in l and not l.startswith(
                        (b"X-Original-To: ", b"Delivered-To: "))]
        assert email.utils.parsedate_tz(h["Date"])
        assert re.fullmatch(r"<[^@<>\s]+@%s>" % re.escape(CLIENT_DOMAIN),
                            h["Message-ID"]), h["Message-ID"]
        # Authenticated over TLS, as Postfix records it.
        assert "with ESMTPSA" in h["Received"]
        # -i: the lone dot is part of the body; dot-stuffing undone.
        assert body_of(raw) == b"first\n.\n..\nlast\n"
    assert delivered_to == rcpts
    # One Message-ID for the three copies: one transaction.
    assert len({parse(r)["Message-ID"] for r in got}) == 1
    mech_word = mech.upper()
    assert [l.split()[:2] for l in auth_lines(p)] == [["AUTH", mech_word]]
    secrets_absent(p.err + b.logtext(), account.token)
    assert "status=sent" in b.logtext()


def test_submit_from_as_configured(stack, bear, account):
    """rewrite_from = always replaces even a full address; -f picks the
    envelope sender, which is rewritten the same way.  (Also: smtp_host
    given as an address, checked against the certificate's IP SAN.)"""
    b = bear(account, host="127.0.0.1", extra=["rewrite_from = always"])
    b.store(account.token)
    marker = "rewrite-" + uuid.uuid4().hex[:8]
    p = b.send(["-f", "someone@elsewhere.example", "rcpt-%s@example.org"
                % marker],
               "From: Some One <someone@elsewhere.example>\n"
               "Subject: %s\n\nbody\n" % marker)
    assert p.returncode == 0, p.err
    h = parse(copies(stack, marker.encode())[0])
    assert h["Return-Path"] == "<%s>" % account.user
    assert email.utils.parseaddr(h["From"]) == ("Some One", account.user)


def test_submit_smtputf8_and_8bit(stack, bear, account):
    """A non-ASCII recipient: bearmail asks for SMTPUTF8 (Postfix 3.7
    offers it) and BODY=8BITMIME for the raw UTF-8 body."""
    b = bear(account)
    b.store(account.token)
    marker = "utf8-" + uuid.uuid4().hex[:8]
    rcpt = "j\u00f6rg-%s@example.org" % marker
    p = b.send(["-v", rcpt], "Subject: %s\nContent-Type: text/plain; "
               "charset=utf-8\n\nGr\u00fc\u00dfe\n" % marker)
    assert p.returncode == 0, p.err
    mail = [t for d, t in transcript(p) if d == "C" and
            t.startswith("MAIL FROM:")]
    assert len(mail) == 1 and "SMTPUTF8" in mail[0] and \
        "BODY=8BITMIME" in mail[0], mail
    raw = copies(stack, marker.encode())[0]
    assert ("Delivered-To: %s\n" % rcpt).encode() in raw
    assert body_of(raw) == "Gr\u00fc\u00dfe\n".encode()


def test_submit_dsn(stack, bear, account):
    """-N success -V ENVID -R hdrs reach Postfix: the success notice it
    sends back to the envelope sender carries the envelope id."""
    b = bear(account)
    b.store(account.token)
    marker = "dsn-" + uuid.uuid4().hex[:8]
    p = b.send(["-v", "-N", "success", "-V", "env-" + marker, "-R", "hdrs",
                "rcpt-%s@example.org" % marker],
               "Subject: %s\n\nx\n" % marker)
    assert p.returncode == 0, p.err
    sent = [t for d, t in transcript(p) if d == "C"]
    assert any(t.startswith("MAIL FROM:") and "ENVID=env-" + marker in t
               and "RET=HDRS" in t for t in sent), sent
    assert any(t.startswith("RCPT TO:") and "NOTIFY=SUCCESS" in t
               for t in sent), sent
    notice = copies(stack, ("Original-Envelope-Id: env-" + marker).encode())
    assert b"Action: delivered" in notice[0]
    assert ("Delivered-To: %s\n" % account.user).encode() in notice[0]


def test_submit_too_large(stack, bear, account):
    """Over the SIZE that Postfix announces (message_size_limit,
    10240000): bearmail refuses it itself, exit 65, before MAIL."""
    b = bear(account)
    b.store(account.token)
    marker = "big-" + uuid.uuid4().hex[:8]
    line = "x" * 76 + "\n"
    data = ("Subject: %s\n\n" % marker + line * (10300000 // len(line)))
    p = b.send(["-v", "rcpt-%s@example.org" % marker], data)
    assert p.returncode == 65, (p.returncode, p.err[-2000:])
    sent = [t for d, t in transcript(p) if d == "C"]
    assert not [t for t in sent if t.startswith(("MAIL", "DATA", "BDAT"))]
    assert "10240000" in complaint(p)
    assert_not_sent(stack, p, marker)


def test_server_down_tempfail(stack, ts, bear, account):
    """Postfix stopped, queue = never: exit 75, no token request (the
    stored token is fresh), the message stays with the caller."""
    b = bear(account)
    b.store(account.token)
    before = len(token_requests(ts))
    marker = "down-" + uuid.uuid4().hex[:8]
    stack.stop_postfix()
    try:
        p = b.send(["rcpt-%s@example.org" % marker],
                   "Subject: %s\n\nx\n" % marker)
    finally:
        stack.start_postfix()
    assert p.returncode == 75, (p.returncode, p.err)
    assert len(token_requests(ts)) == before
    assert none_arrived(stack, marker.encode())


def test_bs_session(stack, bear, account):
    """bearmail -bs (as Symfony Mailer runs it): an SMTP dialogue on
    stdin/stdout, each message relayed through Postfix before bearmail
    answers the final dot."""
    b = bear(account)
    b.store(account.token)
    marker = "bs-" + uuid.uuid4().hex[:8]
    proc = subprocess.Popen([b.exe, "-bs"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=b.env)

    def reply():
        lines = []
        while True:
            line = proc.stdout.readline().decode("utf-8", "replace")
            assert line, "bearmail -bs closed its output"
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return int(lines[-1][:3]), lines

    def cmd(text):
        proc.stdin.write(text.encode() + b"\r\n")
        proc.stdin.flush()
        return reply()

    try:
        assert reply()[0] == 220
        assert cmd("EHLO app.example")[0] == 250
        assert cmd("MAIL FROM:<%s>" % account.user)[0] == 250
        assert cmd("RCPT TO:<rcpt-%s@example.org>" % marker)[0] == 250
        assert cmd("DATA")[0] == 354
        code, lines = cmd("From: App <%s>\r\nTo: rcpt-%s@example.org\r\n"
                          "Subject: %s\r\n\r\nline one\r\n..dot\r\n."
                          % (account.user, marker, marker))
        assert code == 250, lines
        raw = copies(stack, marker.encode())[0]
        assert body_of(raw) == b"line one\n.dot\n"
        assert cmd("QUIT")[0] == 221
    finally:
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0


def test_concurrent_senders_refresh_once(stack, ts, bear, account,
                                         monkeypatch):
    """Four bearmail processes find the same stale token: one refresh at
    the endpoint between them, and all four messages arrive."""
    b = bear(account)
    monkeypatch.setattr(ts, "expires_in", 60)
    b.import_refresh(ts.issue_refresh(account.user))
    monkeypatch.setattr(ts, "expires_in", 3600)
    before = len(token_requests(ts))
    marker = "conc-" + uuid.uuid4().hex[:8]
    procs = []
    for i in range(4):
        procs.append(subprocess.Popen(
            [b.exe, "rcpt%d-%s@example.org" % (i, marker)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=b.env))
    for i, pr in enumerate(procs):
        out, err = pr.communicate(("Subject: %s %d\n\nx\n" % (marker, i))
                                  .encode(), timeout=90)
        assert pr.returncode == 0, err.decode("utf-8", "replace")
    assert len(token_requests(ts)) == before + 1
    copies(stack, marker.encode(), 4)


# --- refresh through the endpoint -----------------------------------------

def test_refresh_through_endpoint(stack, ts, bear, account, monkeypatch):
    """A refresh token imported with bearmail-auth; the access token it
    brought is stale (60 s left, less than the 5 min margin), so the first
    bearmail run refreshes it at the endpoint and the new token works at
    Postfix; the second run uses the stored token as it is."""
    b = bear(account)
    rt = ts.issue_refresh(account.user)
    before = len(token_requests(ts))
    monkeypatch.setattr(ts, "expires_in", 60)
    b.import_refresh(rt)
    monkeypatch.setattr(ts, "expires_in", 3600)
    assert len(token_requests(ts)) == before + 1
    imported = b.stored()["access_token"]

    marker = "refresh-" + uuid.uuid4().hex[:8]
    p = b.send(["rcpt-%s@example.org" % marker], "Subject: %s\n\nx\n"
               % marker)
    assert p.returncode == 0, p.err
    reqs = token_requests(ts)[before:]
    assert len(reqs) == 2
    assert reqs[1]["grant_type"] == "refresh_token"
    assert reqs[1]["refresh_token"] == rt
    fresh = b.stored()["access_token"]
    assert fresh != imported
    assert fresh in ts.access_tokens
    copies(stack, marker.encode())
    # The introspection that let bearmail in was of the fresh token.
    assert any(r["active"] and r["email"] == account.user and
               r["token_len"] == len(fresh) for r in stack.introspections())

    marker2 = "norefresh-" + uuid.uuid4().hex[:8]
    p = b.send(["rcpt-%s@example.org" % marker2], "Subject: %s\n\nx\n"
               % marker2)
    assert p.returncode == 0, p.err
    assert len(token_requests(ts)) == before + 2
    copies(stack, marker2.encode())
    secrets_absent(p.err + b.logtext(), rt, fresh)


# --- a token the server refuses -------------------------------------------

def _auth_exchanges(p):
    """The AUTH attempts in a -v transcript: for each, the list of the
    server's replies up to the final one."""
    out, cur = [], None
    for d, t in transcript(p):
        if d == "C" and t.startswith("AUTH "):
            cur = []
            out.append(cur)
        elif d == "S" and cur is not None:
            cur.append(t)
            if not t.startswith("334"):
                cur = None
    return out


@pytest.mark.parametrize("mech", MECHS)
def test_revoked_token_refreshed_once(stack, ts, bear, account, mech):
    """Postfix refuses the revoked token (334 error challenge, 535);
    bearmail forces one refresh and the new token gets in."""
    b = bear(account, auth=mech)
    rt = ts.issue_refresh(account.user)
    b.store(account.token, rt)
    account.revoke()
    before = len(token_requests(ts))
    marker = "revoked-ok-%s-%s" % (mech, uuid.uuid4().hex[:8])
    p = b.send(["-v", "rcpt-%s@example.org" % marker],
               "Subject: %s\n\nx\n" % marker)
    assert p.returncode == 0, p.err
    assert len(token_requests(ts)) == before + 1
    ex = _auth_exchanges(p)
    assert len(ex) == 2, ex
    # The first attempt: one challenge carrying the error, answered, 535.
    assert len(ex[0]) == 2 and ex[0][0].startswith("334 "), ex[0]
    # -v may hide what a 334 carries; where it shows it, it is the error.
    if "redacted" not in ex[0][0]:
        chal = base64.b64decode(ex[0][0][4:])
        assert (b'"status":"401"' if mech == "xoauth2"
                else b'"status":"invalid_token"') in chal
    assert ex[0][1].startswith("535 5.7.8"), ex[0]
    assert ex[1][-1].startswith("235 "), ex[1]
    copies(stack, marker.encode())
    assert b.stored()["access_token"] != account.token
    secrets_absent(p.err + b.logtext(), account.token, rt)


@pytest.mark.parametrize("mech", MECHS)
def test_revoked_grant_fails_77(stack, ts, bear, account, mech):
    """The access token and the refresh token are both revoked: one
    refresh answered invalid_grant, exit 77 (queue = never), nothing
    sent, and the message tells the user to log in again."""
    b = bear(account, auth=mech)
    rt = ts.issue_refresh(account.user)
    b.store(account.token, rt)
    account.revoke()
    with ts.lock:
        del ts.refresh_tokens[rt]
        ts.revoked.add(rt)
    before = len(token_requests(ts))
    marker = "revoked-grant-%s-%s" % (mech, uuid.uuid4().hex[:8])
    p = b.send(["-v", "rcpt-%s@example.org" % marker],
               "Subject: %s\n\nx\n" % marker)
    assert p.returncode == 77, (p.returncode, p.err)
    assert len(token_requests(ts)) == before + 1
    assert len(_auth_exchanges(p)) == 1
    assert "bearmail-auth login" in complaint(p), p.err
    assert_not_sent(stack, p, marker)
    secrets_absent(p.err + b.logtext(), account.token, rt)


def test_refreshed_token_refused_too(stack, ts, bear, account, monkeypatch):
    """The refresh succeeds but the endpoint hands out a token the mail
    server refuses as well: bearmail tries it once and gives up with 77,
    without a second refresh."""
    b = bear(account)
    rt = ts.issue_refresh(account.user)
    b.store(account.token, rt)
    account.revoke()
    bad = []

    def issue(user=None):
        tok = "at-dud-" + secrets.token_urlsafe(16)
        bad.append(tok)
        return tok                      # never made valid
    monkeypatch.setattr(ts, "issue_access", issue)
    before = len(token_requests(ts))
    marker = "dud-" + uuid.uuid4().hex[:8]
    p = b.send(["-v", "rcpt-%s@example.org" % marker],
               "Subject: %s\n\nx\n" % marker)
    assert p.returncode == 77, (p.returncode, p.err)
    assert len(token_requests(ts)) == before + 1
    ex = _auth_exchanges(p)
    assert len(ex) == 2, ex
    assert all(e[-1].startswith("535") for e in ex), ex
    assert_not_sent(stack, p, marker)
    secrets_absent(p.err + b.logtext(), account.token, rt, *bad)


def test_endpoint_down_at_server(stack, ts, bear, account):
    """Dovecot cannot reach the introspection endpoint: Postfix 3.7 says
    the same "535 5.7.8" as for a bad token but sends no error challenge
    first (README).  bearmail cannot tell it from a refused token; it must
    still refresh at most once, send nothing and fail (queue = never)."""
    b = bear(account)
    b.store(account.token, ts.issue_refresh(account.user))
    before = len(token_requests(ts))
    ts.fail("introspect", "500", times=4)
    marker = "introspect-down-" + uuid.uuid4().hex[:8]
    try:
        p = b.send(["-v", "rcpt-%s@example.org" % marker],
                   "Subject: %s\n\nx\n" % marker)
    finally:
        with ts.lock:
            ts._failures.pop("introspect", None)
    ex = _auth_exchanges(p)
    assert 1 <= len(ex) <= 2, ex
    assert all(e == [e[-1]] and e[-1].startswith("535") for e in ex), ex
    assert len(token_requests(ts)) - before == len(ex) - 1
    # 77 today (taken for a refused token); 75 would describe it better.
    assert p.returncode in (75, 77), (p.returncode, p.err)
    assert_not_sent(stack, p, marker)


# --- long tokens ------------------------------------------------------------

@pytest.mark.parametrize("mech", MECHS)
def test_long_token_after_334(stack, ts, bear, account, mech, monkeypatch):
    """A 3000-character token issued by the endpoint: inline it would
    exceed Postfix's 2048-octet line; bearmail sends "AUTH MECH" alone
    and the response after the empty 334, and Postfix takes it."""
    issue_tokens_of_length(monkeypatch, ts, 3000)
    b = bear(account, auth=mech)
    b.import_refresh(ts.issue_refresh(account.user))
    tok = b.stored()["access_token"]
    assert len(tok) == 3000
    marker = "long-%s-%s" % (mech, uuid.uuid4().hex[:8])
    p = b.send(["-v", "rcpt-%s@example.org" % marker],
               "Subject: %s\n\nx\n" % marker)
    assert p.returncode == 0, p.err
    t = transcript(p)
    i = t.index(("C", "AUTH " + mech.upper()))
    assert t[i + 1][0] == "S" and t[i + 1][1].startswith("334"), t[i:i + 3]
    assert t[i + 2][0] == "C" and "redacted" in t[i + 2][1]
    assert t[i + 3][0] == "S" and t[i + 3][1].startswith("235 "), t[i:]
    copies(stack, marker.encode())
    assert any(r["active"] and r["token_len"] == 3000
               for r in stack.introspections())
    secrets_absent(p.err + b.logtext(), tok)


def test_token_over_server_limit(stack, ts, bear, account, monkeypatch):
    """A 10000-character token makes a response over Postfix's
    smtpd_sasl_response_limit (12288): "500 5.5.6".  That is no verdict
    on the token: no refresh, one AUTH, failure, nothing sent."""
    issue_tokens_of_length(monkeypatch, ts, 10000)
    b = bear(account)
    b.import_refresh(ts.issue_refresh(account.user))
    before = len(token_requests(ts))
    marker = "huge-" + uuid.uuid4().hex[:8]
    p = b.send(["-v", "rcpt-%s@example.org" % marker],
               "Subject: %s\n\nx\n" % marker)
    assert p.returncode != 0
    assert_not_sent(stack, p, marker)
    assert "5.5.6" in complaint(p)
    assert len(token_requests(ts)) == before
    assert len(_auth_exchanges(p)) == 1


@pytest.mark.parametrize("extra,inline", [(0, True), (1, False)])
def test_token_at_inline_limit(stack, bear, account, extra, inline):
    """The longest XOAUTH2 token whose AUTH line stays within 512 octets
    goes inline; one character more and it follows the 334.  Postfix
    takes both."""
    fixed = len("AUTH XOAUTH2 ") + 2
    # Largest raw length whose base64 fits in SMTP_LINE_MAX - fixed.
    b64_max = (SMTP_LINE_MAX - fixed) // 4 * 4
    raw = b64_max // 4 * 3
    tlen = raw - len(clients.xoauth2(account.user, "")) + extra
    token = ("lim%d-" % tlen) + "y" * (tlen - len("lim%d-" % tlen))
    b64_len = len(clients.b64(clients.xoauth2(account.user, token)))
    assert (b64_len == b64_max) if inline else \
        (fixed + b64_len > SMTP_LINE_MAX)
    account.stack.add_token(token, account.user)
    b = bear(account)
    b.store(token)
    marker = "limit-%d-%s" % (extra, uuid.uuid4().hex[:8])
    p = b.send(["-v", "rcpt-%s@example.org" % marker],
               "Subject: %s\n\nx\n" % marker)
    assert p.returncode == 0, p.err
    lines = auth_lines(p)
    assert len(lines) == 1
    if inline:
        assert lines[0] == "AUTH XOAUTH2 [redacted %d bytes]" % b64_max
    else:
        assert lines[0] == "AUTH XOAUTH2"
    copies(stack, marker.encode())


# --- no credentials without TLS ---------------------------------------------

def test_no_auth_without_tls(stack, bear, account):
    """smtp_tls = none against the submission port: Postfix offers no
    AUTH before STARTTLS, and bearmail neither sends credentials nor the
    message."""
    b = bear(account, tls="none", host="127.0.0.1")
    b.store(account.token)
    marker = "notls-" + uuid.uuid4().hex[:8]
    p = b.send(["-v", "rcpt-%s@example.org" % marker],
               "Subject: %s\n\nx\n" % marker)
    assert p.returncode != 0, p.err
    assert p.returncode != 75, "a configuration problem, not temporary"
    assert auth_lines(p) == []
    assert not [t for d, t in transcript(p) if d == "C" and
                t.startswith(("MAIL", "STARTTLS"))]
    assert_not_sent(stack, p, marker)
    assert "AUTH" in complaint(p), p.err
    secrets_absent(p.err + b.logtext(), account.token)


@pytest.mark.parametrize("port", ["submission", "smtps"])
def test_untrusted_certificate(stack, bear, account, tmp_path, port):
    """A ca_file that did not sign Postfix's certificate: the handshake
    fails, and neither credentials nor the message leave bearmail."""
    other = tmp_path / "other-ca.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-subj", "/CN=Other Test CA", "-days", "2",
                        "-keyout", str(tmp_path / "other-ca.key"), "-out",
                        str(other)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout
    b = bear(account, port=port, ca_file=str(other))
    b.store(account.token)
    marker = "untrusted-%s-%s" % (port, uuid.uuid4().hex[:8])
    p = b.send(["-v", "rcpt-%s@example.org" % marker],
               "Subject: %s\n\nx\n" % marker)
    assert p.returncode not in (0, 64, 78), (p.returncode, p.err)
    assert auth_lines(p) == []
    assert "*** TLS " not in p.err
    assert_not_sent(stack, p, marker)
    assert "certificate" in complaint(p).lower(), p.err


# --- real clients driving bearmail -------------------------------------------

def _git(cwd, *args, env=None):
    p = subprocess.run(["git"] + list(args), cwd=cwd, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


def test_git_send_email(stack, bear, account, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git missing (package git)")
    execdir = subprocess.run(["git", "--exec-path"], stdout=subprocess.PIPE,
                             text=True).stdout.strip()
    if not os.access(os.path.join(execdir, "git-send-email"), os.X_OK):
        pytest.skip("git send-email missing (package git-email)")
    b = bear(account)
    b.store(account.token)
    env = dict(b.env, GIT_CONFIG_NOSYSTEM="1",
               GIT_AUTHOR_NAME="Interop Tester", GIT_AUTHOR_EMAIL=account.user,
               GIT_COMMITTER_NAME="Interop Tester",
               GIT_COMMITTER_EMAIL=account.user,
               GIT_AUTHOR_DATE="2026-01-02T03:04:05Z",
               GIT_COMMITTER_DATE="2026-01-02T03:04:05Z")
    marker = "gitse-" + uuid.uuid4().hex[:8]
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", env=env)
    _git(repo, "config", "sendemail.smtpServer", b.exe, env=env)
    (repo / "file.txt").write_text("one\n")
    _git(repo, "add", "file.txt", env=env)
    _git(repo, "commit", "-q", "-m", "base", env=env)
    (repo / "file.txt").write_text("one\n.\ntwo\n")
    msg = ("%s: add a dot\n\nThe next line is a single dot:\n.\nand the "
           "one after it too.\n.\n" % marker)
    (tmp_path / "msg").write_text(msg)
    _git(repo, "commit", "-q", "-a", "-F", str(tmp_path / "msg"), env=env)
    rcpt = "list-%s@example.org" % marker
    _git(repo, "send-email", "--confirm=never", "--suppress-cc=all",
         "--to=" + rcpt, "-1", env=env)
    raw = copies(stack, marker.encode())[0]
    h = parse(raw)
    assert h["Delivered-To"] == rcpt
    assert h["Return-Path"] == "<%s>" % account.user
    assert b"\n.\n" in body_of(raw)
    # The patch lands intact: git am recreates the same commit.
    mbox = tmp_path / "patch.mbox"
    mbox.write_bytes(b"From git@z Thu Jan  1 00:00:00 1970\n" + raw)
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repo), str(clone), env=env)
    _git(clone, "reset", "-q", "--hard", "HEAD~1", env=env)
    _git(clone, "am", "-q", str(mbox), env=env)
    assert _git(clone, "rev-parse", "HEAD^{tree}", env=env) == \
        _git(repo, "rev-parse", "HEAD^{tree}", env=env)
    assert _git(clone, "log", "-1", "--format=%B", env=env).rstrip("\n") \
        == msg.rstrip("\n")


@pytest.mark.parametrize("opts", ["", " -oem -oi"])
def test_mutt_batch(stack, bear, account, tmp_path, opts):
    """mutt -F muttrc -s SUBJECT -- RCPT < body, with $sendmail the bare
    path of bearmail, and as mutt's default has it ("-oem -oi"; mutt adds
    no -oi itself, so only then may the body hold a lone dot)."""
    mutt = shutil.which("mutt")
    if mutt is None:
        pytest.skip("mutt missing (package mutt)")
    b = bear(account)
    b.store(account.token)
    marker = "mutt-" + uuid.uuid4().hex[:8]
    rc = tmp_path / "muttrc"
    rc.write_text('set sendmail="%s%s"\n'
                  'set from="Mutt User <%s>"\n'
                  "set use_from=yes\n"
                  "set envelope_from=yes\n"
                  'set record=""\n'
                  "set copy=no\n"
                  'set charset="utf-8"\n'
                  'set send_charset="us-ascii:utf-8"\n'
                  'set tmpdir="%s"\n'
                  'set folder="%s"\n'
                  'set spoolfile="%s"\n'
                  % (b.exe, opts, account.user, tmp_path, tmp_path,
                     stack.maildir))
    rcpt = "mutt-rcpt-%s@example.org" % marker
    body = "Hello from mutt.\n%s\ncaf\u00e9\n" % (
        ".\nThe dot above stays." if "-oi" in opts else "..no lone dot")
    p = subprocess.run([mutt, "-n", "-F", str(rc), "-s", "subj " + marker,
                        "--", rcpt], input=body.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=b.env, timeout=60)
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")
    raw = copies(stack, marker.encode())[0]
    h = parse(raw)
    assert h["Delivered-To"] == rcpt
    assert h["Return-Path"] == "<%s>" % account.user
    assert email.utils.parseaddr(h["From"]) == ("Mutt User", account.user)
    m = parse(raw)
    text = m.get_payload(decode=True).decode(m.get_content_charset()
                                             or "us-ascii")
    assert text == body
    assert "status=sent" in b.logtext()


# --- bearmail-auth against the stack's endpoint ---------------------------

def test_bearmail_auth_token_and_status(stack, ts, bear, account):
    b = bear(account)
    rt = ts.issue_refresh(account.user)
    b.import_refresh(rt)
    before = len(token_requests(ts))
    p = b.auth("token", ACCOUNT)
    assert p.returncode == 0, p.err
    tok = p.out.strip()
    assert p.out == tok + "\n"
    assert len(token_requests(ts)) == before       # still fresh: no request
    # The token it prints is what another client can use at Postfix.
    conn = clients.smtp_connect(stack, "smtps")
    try:
        code, text, _ = clients.smtp_auth(conn, "XOAUTH2",
                                          clients.xoauth2(account.user, tok))
        assert code == 235, text
    finally:
        conn.quit()
    p = b.auth("token", "--force", ACCOUNT)
    assert p.returncode == 0, p.err
    forced = p.out.strip()
    assert forced != tok and forced in ts.access_tokens
    assert len(token_requests(ts)) == before + 1
    p = b.auth("status", ACCOUNT)
    assert p.returncode == 0, p.err
    assert ACCOUNT in p.out and account.user in p.out
    assert re.search(r"refresh token .*stored", p.out), p.out
    assert re.search(r"access token .*min left", p.out), p.out
    secrets_absent(p.out + p.err, rt, tok, forced)
    # logout revokes the grant at the endpoint and deletes the file;
    # bearmail then has nothing to log in with.
    p = b.auth("logout", ACCOUNT)
    assert p.returncode == 0, p.err
    assert rt in ts.revoked and not b.token_file.exists()
    marker = "loggedout-" + uuid.uuid4().hex[:8]
    p = b.send(["-v", "rcpt-%s@example.org" % marker],
               "Subject: %s\n\nx\n" % marker)
    assert p.returncode == 77, (p.returncode, p.err)
    assert "bearmail-auth login" in complaint(p)
    assert_not_sent(stack, p, marker)


def test_bearmail_auth_test(stack, ts, bear, account):
    """bearmail-auth test logs in at Postfix (STARTTLS), Dovecot IMAP
    (STARTTLS) and POP3 (TLS); with the token revoked it refreshes once
    and the three logins still succeed."""
    b = bear(account, port="submission", imap="imap", pop="pop3s",
             auth="oauthbearer")
    rt = ts.issue_refresh(account.user)
    b.store(account.token, rt)
    p = b.auth("test", "--smtp", "--imap", "--pop", ACCOUNT)
    assert p.returncode == 0, p.out + p.err
    blocks = p.out.split("\n\n")
    assert [x.split()[0] for x in blocks[1:]] == ["SMTP", "IMAP", "POP3"], \
        p.out
    assert "STARTTLS" in blocks[1].splitlines()[0]
    assert "ESMTP Postfix" in blocks[1]
    assert "bearmail interop test CA" in blocks[1]
    assert re.search(r"AUTH +XOAUTH2 OAUTHBEARER", blocks[1])
    assert "STARTTLS" in blocks[2].splitlines()[0]
    assert "implicit TLS" in blocks[3].splitlines()[0]
    ok = re.compile(r"^ +login +OAUTHBEARER as %s: authenticated$"
                    % re.escape(account.user), re.M)
    assert len(ok.findall(p.out)) == 3, p.out

    account.revoke()
    before = len(token_requests(ts))
    p = b.auth("test", "--smtp", "--imap", "--pop", ACCOUNT)
    assert p.returncode == 0, p.out + p.err
    assert len(token_requests(ts)) == before + 1
    assert "refreshing it once" in p.out.split("\n\n")[1]
    assert len(ok.findall(p.out)) == 3, p.out
    secrets_absent(p.out + p.err, account.token, rt,
                   b.stored()["access_token"])


# --- the queue ------------------------------------------------------------

def _queue_available(b):
    p = b.send(["-q"], b"")
    if p.returncode == 69 and "not available" in p.err:
        return False, p.err.strip()
    return True, ""


def _queued_id(p):
    """The queue ID of bearmail's one-line warning "queued as ID: ..."."""
    m = re.search(r"^bearmail: queued as ([0-9A-Za-z]+): .+$", p.err, re.M)
    assert m, p.err
    return m.group(1)


def test_queue_delivers_after_server_returns(stack, bear, account):
    """queue = on-failure with Postfix stopped: exit 0 and a warning
    naming the queue ID, mailq lists it; Postfix back, bearmail -q
    delivers it, once, and the queue is empty."""
    b = bear(account, queue="on-failure")
    b.store(account.token)
    ok, why = _queue_available(b)
    if not ok:
        pytest.skip("bearmail has no queue yet (bearmail -q: %s)" % why)
    marker = "queued-" + uuid.uuid4().hex[:8]
    rcpt = "rcpt-%s@example.org" % marker
    stack.stop_postfix()
    try:
        p = b.send([rcpt], "Subject: %s\n\nqueued while Postfix was down\n"
                   % marker)
        assert p.returncode == 0, p.err
        qid = _queued_id(p)
        assert len(p.err.splitlines()) == 1, p.err
        p = b.send(["-bp"], b"")
        assert p.returncode == 0, p.err
        assert qid in p.out and rcpt in p.out, p.out
    finally:
        stack.start_postfix()
    assert none_arrived(stack, marker.encode())
    p = b.send(["-q"], b"")
    assert p.returncode == 0, p.err
    raw = copies(stack, marker.encode())[0]
    assert parse(raw)["Delivered-To"] == rcpt
    assert re.search(r"%s: to=<%s>, .*status=sent" % (qid, re.escape(rcpt)),
                     b.logtext()), b.logtext()
    # Nothing left, and another run sends nothing twice.
    p = b.send(["-bp"], b"")
    assert p.returncode == 0 and qid not in p.out, p.out
    p = b.send(["-q"], b"")
    assert p.returncode == 0, p.err
    assert len([m for m in stack.messages() if marker.encode() in m]) == 1


def test_queue_keeps_message_of_revoked_grant(stack, ts, bear, account):
    """queue = on-failure: a grant revoked for good is trouble with
    authentication, not with the message, so it waits in the queue
    (exit 0 and a warning) instead of exit 77."""
    b = bear(account, queue="on-failure")
    rt = ts.issue_refresh(account.user)
    b.store(account.token, rt)
    ok, why = _queue_available(b)
    if not ok:
        pytest.skip("bearmail has no queue yet (bearmail -q: %s)" % why)
    account.revoke()
    with ts.lock:
        del ts.refresh_tokens[rt]
        ts.revoked.add(rt)
    marker = "queued-revoked-" + uuid.uuid4().hex[:8]
    p = b.send(["-v", "rcpt-%s@example.org" % marker],
               "Subject: %s\n\nx\n" % marker)
    assert p.returncode == 0, p.err
    qid = _queued_id(p)
    assert "bearmail-auth login" in complaint(p), p.err
    assert_not_sent(stack, p, marker)
    p = b.send(["-bp"], b"")
    assert p.returncode == 0, p.err
    assert qid in p.out and "rcpt-%s@example.org" % marker in p.out, p.out


# --- bearmail-fetch -------------------------------------------------------

def _fetch_bin(builddir):
    p = builddir / "src" / "bearmail-fetch"
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.skip("bearmail-fetch is not built (src/bearmail-fetch "
                    "missing): the IMAP 143/993 and POP3 110/995 fetch "
                    "tests need it")
    return str(p)


def _maildir_files(d):
    out = []
    for sub in ("new", "cur"):
        p = d / sub
        if p.is_dir():
            out += [p / n for n in sorted(os.listdir(p))]
    return out


def _fetched(d, marker):
    return [f.read_bytes() for f in _maildir_files(d)
            if marker in f.read_bytes()]


def _server_copy(stack, marker):
    return copies(stack, marker)[0]


def _fetch_setup(stack, bear, account, proto, port, mech):
    kw = {"imap": port} if proto == "imap" else {"pop": port}
    b = bear(account, auth=mech, **kw)
    b.store(account.token)
    marker = "fetch-%s-%s-%s" % (port, mech, uuid.uuid4().hex[:8])
    p = b.send(["rcpt-%s@example.org" % marker],
               "Subject: %s\n\nfetch me\n.\nFrom the start\n" % marker)
    assert p.returncode == 0, p.err
    return b, marker.encode()


@pytest.mark.parametrize("proto,port,mech", [
    ("imap", "imap", "xoauth2"), ("imap", "imaps", "oauthbearer"),
    ("pop", "pop3", "oauthbearer"), ("pop", "pop3s", "xoauth2")])
def test_fetch(stack, bear, account, builddir, proto, port, mech):
    """bearmail-fetch over IMAP (STARTTLS 143-style, TLS 993-style) and
    POP3 (STLS 110-style, TLS 995-style) into a Maildir: the message
    arrives as Dovecot holds it, and a second run fetches it no more."""
    exe = _fetch_bin(builddir)
    b, marker = _fetch_setup(stack, bear, account, proto, port, mech)
    server = _server_copy(stack, marker)
    target = b.tmp / "Fetched"
    p = b.fetch(exe, "-v", "--" + proto, "--maildir", str(target), ACCOUNT)
    assert p.returncode == 0, p.err
    got = _fetched(target, marker)
    assert got == [server]
    # TLS before the credentials, also where Dovecot would take them in
    # clear (it counts 127.0.0.1 -> 127.0.0.1 as secured, see README).
    sent = [t for d, t in transcript(p) if d == "C"]
    auth_at = [i for i, t in enumerate(sent)
               if re.match(r"(\S+ )?AUTH(ENTICATE)? ", t)]
    assert len(auth_at) == 1, sent
    if port in ("imap", "pop3"):
        assert [t for t in sent[:auth_at[0]]
                if re.fullmatch(r"(\S+ )?(STARTTLS|STLS)", t)], sent
    else:
        assert not [t for t in sent if t.endswith(("STARTTLS", "STLS"))]
    tls_note = p.err.find("*** TLS ")
    assert 0 <= tls_note < p.err.find("--> " + sent[auth_at[0]].split(
        " [redacted")[0]), p.err
    p = b.fetch(exe, "-q", "--" + proto, "--maildir", str(target), ACCOUNT)
    assert p.returncode == 0, p.err
    assert len(_fetched(target, marker)) == 1
    secrets_absent(p.err + b.logtext(), account.token)


@pytest.mark.parametrize("mech", MECHS)
@pytest.mark.parametrize("proto,port", [("imap", "imaps"), ("pop", "pop3s")])
def test_fetch_revoked_token_refreshed(stack, ts, bear, account, builddir,
                                       proto, port, mech):
    """Dovecot refuses the revoked token (error challenge, then NO
    [AUTHENTICATIONFAILED] / -ERR [AUTH]); bearmail-fetch refreshes once
    and fetches."""
    exe = _fetch_bin(builddir)
    b, marker = _fetch_setup(stack, bear, account, proto, port, mech)
    server = _server_copy(stack, marker)
    rt = ts.issue_refresh(account.user)
    b.store(account.token, rt)
    account.revoke()
    before = len(token_requests(ts))
    target = b.tmp / "Fetched"
    p = b.fetch(exe, "-q", "--" + proto, "--maildir", str(target), ACCOUNT)
    assert p.returncode == 0, p.err
    assert len(token_requests(ts)) == before + 1
    assert _fetched(target, marker) == [server]
    secrets_absent(p.err + b.logtext(), account.token, rt)


@pytest.mark.parametrize("proto,port", [("imap", "imaps"), ("pop", "pop3s")])
def test_fetch_revoked_grant(stack, ts, bear, account, builddir, proto,
                             port):
    """Access and refresh token both revoked: one refresh (invalid_grant),
    exit 77, nothing delivered and the state untouched, so the message
    is fetched once a new login works."""
    exe = _fetch_bin(builddir)
    b, marker = _fetch_setup(stack, bear, account, proto, port, "xoauth2")
    server = _server_copy(stack, marker)
    rt = ts.issue_refresh(account.user)
    b.store(account.token, rt)
    account.revoke()
    with ts.lock:
        del ts.refresh_tokens[rt]
        ts.revoked.add(rt)
    before = len(token_requests(ts))
    target = b.tmp / "Fetched"
    p = b.fetch(exe, "-q", "--" + proto, "--maildir", str(target), ACCOUNT)
    assert p.returncode == 77, (p.returncode, p.err)
    assert "bearmail-auth login" in p.err
    assert len(token_requests(ts)) == before + 1
    assert _fetched(target, marker) == []
    # Logged in again (a new grant): the message comes now.
    b.import_refresh(ts.issue_refresh(account.user))
    p = b.fetch(exe, "-q", "--" + proto, "--maildir", str(target), ACCOUNT)
    assert p.returncode == 0, p.err
    assert _fetched(target, marker) == [server]


@pytest.mark.parametrize("proto,port", [("imap", "imaps"), ("pop", "pop3s")])
def test_fetch_long_token(stack, ts, bear, account, builddir, monkeypatch,
                          proto, port):
    """A 3000-character token: over POP3's 255-octet AUTH line, so after
    the "+"; IMAP may send it with SASL-IR.  Dovecot takes both (under
    its 8 KiB limit)."""
    exe = _fetch_bin(builddir)
    b, marker = _fetch_setup(stack, bear, account, proto, port,
                             "oauthbearer")
    server = _server_copy(stack, marker)
    issue_tokens_of_length(monkeypatch, ts, 3000)
    b.import_refresh(ts.issue_refresh(account.user))
    assert len(b.stored()["access_token"]) == 3000
    target = b.tmp / "Fetched"
    p = b.fetch(exe, "-q", "--" + proto, "--maildir", str(target), ACCOUNT)
    assert p.returncode == 0, p.err
    assert _fetched(target, marker) == [server]
    assert any(r["active"] and r["token_len"] == 3000
               for r in stack.introspections())
