"""bearmail-fetch end to end, against small stateful IMAP and POP3 servers.

The servers below are built on tests/servers/fakeserver.py's sessions
(handler mode): they keep a mailbox (UIDs, flags, UIDVALIDITY), speak
enough IMAP4rev1 / POP3 for a retriever, check the XOAUTH2 and
OAUTHBEARER payloads and answer a bad token with the providers' error
challenge, and record every command and authentication.  Each test
writes a configuration and a token store, runs bearmail-fetch, and looks
at what was delivered, what the server saw, and the state file.
"""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from servers.fakeserver import FakeServer, Mismatch
from servers.tokenstore import write_token

# Memory must not grow with the mailbox; AddressSanitizer's shadow and
# quarantine add a constant of their own (tests/sanitize.sh sets ASAN_OPTIONS).
MEM_BOUND_KB = 16 * 1024 * (4 if "ASAN_OPTIONS" in os.environ else 1)

USER = "alice@example.com"
GOOD = "ya29.good-token"


def msg(n, body=b"hello"):
    return (b"From: bob@example.org\r\nTo: alice@example.com\r\n"
            b"Subject: message %d\r\n\r\n" % n) + body + b"\r\n"


# --- SASL, shared by both servers ---------------------------------------

def check_sasl(s, mech, raw, tokens, user, ask):
    """Decide an AUTH payload; on a bad token play the error challenge
    through ask(challenge_b64) -> client's answer.  Returns (ok, rec)."""
    rec = {"mech": mech, "ok": False}
    if mech == "XOAUTH2":
        m = re.fullmatch(rb"user=([^\x01]*)\x01auth=Bearer ([^\x01]+)"
                         rb"\x01\x01", raw)
        if not m:
            raise Mismatch("bad XOAUTH2 payload %r" % raw[:30])
        rec["user"] = m.group(1).decode()
        tok = m.group(2).decode()
        answer_ok = ""
        err = {"status": "401", "schemes": "bearer",
               "scope": "https://mail.google.com/"}
    elif mech == "OAUTHBEARER":
        m = re.fullmatch(rb"n,(?:a=([^,]*))?,\x01(.*)\x01\x01", raw, re.S)
        if not m:
            raise Mismatch("bad OAUTHBEARER payload %r" % raw[:30])
        rec["user"] = (m.group(1) or b"").decode()
        kv = dict(p.split(b"=", 1) for p in m.group(2).split(b"\x01")
                  if b"=" in p)
        rec["host"] = kv.get(b"host", b"").decode()
        rec["port"] = kv.get(b"port", b"").decode()
        a = kv.get(b"auth", b"").decode()
        tok = a[7:] if a.startswith("Bearer ") else ""
        answer_ok = "AQ=="
        err = {"status": "invalid_token",
               "scope": "https://mail.google.com/"}
    else:
        raise Mismatch("unexpected mechanism %s" % mech)
    rec["token_len"] = len(tok)
    ok = rec["user"] in (user, "recent:" + user) and tok in tokens
    if not ok:
        ans = ask(base64.b64encode(json.dumps(err).encode()).decode())
        if ans != answer_ok:
            s.error("%s error challenge answered with %r" % (mech, ans))
    rec["ok"] = ok
    return ok, rec


class Tokens:
    """Accepted tokens: a fixed set, or a callable's opinion."""

    def __init__(self, accept):
        self.accept = accept

    def __contains__(self, tok):
        if callable(self.accept):
            return self.accept(tok)
        return tok in self.accept


# --- IMAP ---------------------------------------------------------------

class Mailbox:
    def __init__(self, msgs=(), uidvalidity=1000, first_uid=1):
        self.uidvalidity = uidvalidity
        self.msgs = []          # [uid, bytes, set(flags)]
        self.next_uid = first_uid
        for m in msgs:
            self.add(m)

    def add(self, data, flags=()):
        self.msgs.append([self.next_uid, data, set(flags)])
        self.next_uid += 1

    def rebuild(self, uidvalidity, first_uid=500):
        """What a server does to a recreated folder: new UIDs."""
        self.uidvalidity = uidvalidity
        self.next_uid = first_uid
        for m in self.msgs:
            m[0] = self.next_uid
            self.next_uid += 1


def parse_set(text, maxv):
    out = set()
    for part in text.split(","):
        if ":" in part:
            a, b = part.split(":")
            a = maxv if a == "*" else int(a)
            b = maxv if b == "*" else int(b)
            out.update(range(min(a, b), max(a, b) + 1))
        else:
            out.add(int(part))
    return out


class ImapServer(FakeServer):
    """A stateful IMAP4rev1 server.  caps: extra capabilities; mode
    "implicit", "starttls" or "none"; sasl_ir; uidplus; body_first (send
    BODY[] before UID in FETCH responses); on_idle(server, session, tag)
    runs when the client IDLEs and returns True to end the session."""

    def __init__(self, mailbox=None, *, tokens=(GOOD,), user=USER,
                 mode="none", context=None, sasl_ir=True, uidplus=True,
                 idle=True, body_first=False, on_idle=None,
                 on_fetch=None, folders=None, **kw):
        super().__init__(handler=self._imap,
                         tls=context if mode == "implicit" else None,
                         starttls_context=context, **kw)
        self.folders = folders or {"INBOX": mailbox or Mailbox()}
        self.tokens = tokens if isinstance(tokens, Tokens) else \
            Tokens(set(tokens))
        self.user = user
        self.mode = mode
        self.sasl_ir = sasl_ir
        self.uidplus = uidplus
        self.idle = idle
        self.body_first = body_first
        self.on_idle = on_idle
        self.on_fetch = on_fetch
        self.auths = []
        self.commands = []
        self.pid = None
        self.hwm_kb = 0
        self.lock = threading.Lock()

    @property
    def mailbox(self):
        return self.folders["INBOX"]

    def caps(self, s):
        c = ["IMAP4rev1"]
        if self.mode == "starttls" and not s.tls:
            c += ["STARTTLS", "LOGINDISABLED"]
        else:
            if self.sasl_ir:
                c.append("SASL-IR")
            c += ["AUTH=XOAUTH2", "AUTH=OAUTHBEARER"]
        if self.uidplus:
            c.append("UIDPLUS")
        if self.idle:
            c.append("IDLE")
        return " ".join(c)

    def measure(self):
        if self.pid is None:
            return
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.hwm_kb = max(self.hwm_kb, int(line.split()[1]))
        except OSError:
            pass

    def _auth(self, s, tag, args):
        parts = args.split()
        mech = parts[0].upper()
        inline = len(parts) > 1

        def ask(chal):
            s.send("+ %s\r\n" % chal)
            return s.readline().decode()
        if inline:
            resp = parts[1]
        else:
            resp = ask("")
        raw = base64.b64decode(resp) if resp != "=" else b""
        ok, rec = check_sasl(s, mech, raw, self.tokens, self.user, ask)
        rec["inline"] = inline
        rec["tls"] = s.tls
        self.auths.append(rec)
        if ok:
            s.send("%s OK [CAPABILITY %s] authenticated\r\n"
                   % (tag, self.caps(s)))
            return True
        s.send("%s NO [AUTHENTICATIONFAILED] Invalid credentials "
               "(Failure)\r\n" % tag)
        return False

    def _imap(self, s):
        sel = None
        authed = False
        greet = "* OK [CAPABILITY %s] fake IMAP ready\r\n" % self.caps(s)
        s.send(greet)
        while True:
            try:
                line = s.readline().decode("utf-8", "surrogateescape")
            except Mismatch:
                if s.eof:
                    return
                raise
            self.commands.append(line)
            tag, _, rest = line.partition(" ")
            cmd, _, args = rest.partition(" ")
            cmd = cmd.upper()
            if cmd == "UID":
                sub, _, args = args.partition(" ")
                cmd = "UID " + sub.upper()
            if cmd == "CAPABILITY":
                s.send("* CAPABILITY %s\r\n%s OK done\r\n"
                       % (self.caps(s), tag))
            elif cmd == "STARTTLS":
                s.send("%s OK begin TLS\r\n" % tag)
                s.starttls()
            elif cmd == "AUTHENTICATE":
                if self.mode == "starttls" and not s.tls:
                    raise Mismatch("AUTHENTICATE before STARTTLS")
                authed = self._auth(s, tag, args)
            elif cmd == "LOGOUT":
                self.measure()
                s.send("* BYE logging out\r\n%s OK done\r\n" % tag)
                return
            elif cmd == "NOOP":
                s.send("%s OK done\r\n" % tag)
            elif not authed:
                s.send("%s BAD authenticate first\r\n" % tag)
            elif cmd in ("SELECT", "EXAMINE"):
                name = args.strip('"')
                if name not in self.folders:
                    s.send("%s NO [NONEXISTENT] no such folder\r\n" % tag)
                    continue
                sel = self.folders[name]
                s.send("* FLAGS (\\Seen \\Deleted)\r\n* %d EXISTS\r\n"
                       "* OK [UIDVALIDITY %d] ok\r\n* OK [UIDNEXT %d] ok\r\n"
                       "%s OK [READ-%s] done\r\n"
                       % (len(sel.msgs), sel.uidvalidity, sel.next_uid, tag,
                          "ONLY" if cmd == "EXAMINE" else "WRITE"))
            elif cmd == "UID SEARCH":
                a = args.split()
                seqs = parse_set(a[0], len(sel.msgs))
                found = [m[0] for i, m in enumerate(sel.msgs, 1)
                         if i in seqs and
                         ("UNSEEN" not in a or "\\Seen" not in m[2])]
                s.send("* SEARCH%s\r\n%s OK done\r\n"
                       % ("".join(" %d" % u for u in found), tag))
            elif cmd == "UID FETCH":
                sset, _, what = args.partition(" ")
                if what != "(UID BODY.PEEK[])":
                    raise Mismatch("unexpected FETCH items %r" % what)
                uids = parse_set(sset, sel.next_uid)
                for i, m in enumerate(sel.msgs, 1):
                    if m[0] not in uids:
                        continue
                    if self.on_fetch and self.on_fetch(self, s, i, m):
                        if s.closed:
                            return
                        continue
                    if self.body_first:
                        s.send(b"* %d FETCH (BODY[] {%d}\r\n%s UID %d)\r\n"
                               % (i, len(m[1]), m[1], m[0]))
                    else:
                        s.send(b"* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n"
                               % (i, m[0], len(m[1]), m[1]))
                self.measure()
                s.send("%s OK done\r\n" % tag)
            elif cmd == "UID STORE":
                sset, item, flags = args.split(" ", 2)
                if item.upper() != "+FLAGS.SILENT":
                    raise Mismatch("unexpected STORE %r" % item)
                uids = parse_set(sset, sel.next_uid)
                for m in sel.msgs:
                    if m[0] in uids:
                        m[2].update(flags.strip("()").split())
                s.send("%s OK done\r\n" % tag)
            elif cmd in ("UID EXPUNGE", "EXPUNGE"):
                if cmd == "UID EXPUNGE" and not self.uidplus:
                    s.send("%s BAD no UIDPLUS\r\n" % tag)
                    continue
                uids = parse_set(args, sel.next_uid) if args else None
                keep = []
                for i, m in enumerate(list(sel.msgs), 1):
                    if "\\Deleted" in m[2] and (uids is None or
                                                m[0] in uids):
                        s.send("* %d EXPUNGE\r\n" % (len(keep) + 1))
                    else:
                        keep.append(m)
                sel.msgs[:] = keep
                s.send("%s OK done\r\n" % tag)
            elif cmd == "IDLE":
                s.send("+ idling\r\n")
                if self.on_idle is not None and \
                        self.on_idle(self, s, tag, sel):
                    return
                done = s.readline()
                if done != b"DONE":
                    raise Mismatch("expected DONE, got %r" % done)
                s.send("%s OK idle done\r\n" % tag)
            else:
                s.send("%s BAD unknown command\r\n" % tag)


# --- POP3 ---------------------------------------------------------------

class PopServer(FakeServer):
    """A stateful POP3 server: msgs is a list of [uidl, bytes]."""

    def __init__(self, msgs=(), *, tokens=(GOOD,), user=USER, mode="none",
                 context=None, uidl=True, sasl=("XOAUTH2", "OAUTHBEARER"),
                 **kw):
        super().__init__(handler=self._pop,
                         tls=context if mode == "implicit" else None,
                         starttls_context=context, **kw)
        self.msgs = [list(m) for m in msgs]
        self.tokens = tokens if isinstance(tokens, Tokens) else \
            Tokens(set(tokens))
        self.user = user
        self.mode = mode
        self.uidl = uidl
        self.sasl = sasl
        self.auths = []
        self.commands = []
        self.quits = 0

    def capa(self, s):
        c = ["TOP", "USER", "RESP-CODES", "PIPELINING"]
        if self.uidl:
            c.append("UIDL")
        if self.mode == "starttls" and not s.tls:
            c.append("STLS")
        else:
            c.append("SASL " + " ".join(self.sasl))
        return c

    def _pop(self, s):
        authed = False
        dele = set()
        s.send("+OK fake POP3 ready\r\n")
        while True:
            try:
                line = s.readline().decode("utf-8", "surrogateescape")
            except Mismatch:
                if s.eof:
                    return
                raise
            self.commands.append(line)
            cmd, _, args = line.partition(" ")
            cmd = cmd.upper()
            if cmd == "CAPA":
                s.send("+OK\r\n" + "".join(c + "\r\n" for c in self.capa(s))
                       + ".\r\n")
            elif cmd == "STLS":
                s.send("+OK begin TLS\r\n")
                s.starttls()
            elif cmd == "AUTH":
                parts = args.split()
                inline = len(parts) > 1

                def ask(chal):
                    s.send("+ %s\r\n" % chal)
                    return s.readline().decode()
                resp = parts[1] if inline else ask("")
                ok, rec = check_sasl(s, parts[0].upper(),
                                     base64.b64decode(resp), self.tokens,
                                     self.user, ask)
                rec["inline"] = inline
                rec["line_len"] = len(line) + 2
                self.auths.append(rec)
                authed = ok
                s.send("+OK welcome\r\n" if ok else
                       "-ERR [AUTH] Username and password not accepted.\r\n")
            elif cmd == "QUIT":
                self.quits += 1
                if authed:
                    self.msgs = [m for i, m in enumerate(self.msgs, 1)
                                 if i not in dele]
                s.send("+OK bye\r\n")
                return
            elif not authed:
                s.send("-ERR authenticate first\r\n")
            elif cmd == "LIST":
                s.send("+OK\r\n" + "".join(
                    "%d %d\r\n" % (i, len(m[1]))
                    for i, m in enumerate(self.msgs, 1)) + ".\r\n")
            elif cmd == "UIDL" and self.uidl:
                s.send("+OK\r\n" + "".join(
                    "%d %s\r\n" % (i, m[0])
                    for i, m in enumerate(self.msgs, 1)) + ".\r\n")
            elif cmd == "RETR":
                data = self.msgs[int(args) - 1][1]
                lines = data.split(b"\r\n")
                if lines and lines[-1] == b"":
                    lines.pop()
                body = b"".join((b"." + l if l.startswith(b".") else l)
                                + b"\r\n" for l in lines)
                s.send(b"+OK message follows\r\n" + body + b".\r\n")
            elif cmd == "DELE":
                dele.add(int(args))
                s.send("+OK deleted\r\n")
            else:
                s.send("-ERR unknown command\r\n")


# --- the program under test ---------------------------------------------

class Fetch:
    def __init__(self, tmp, bm_bin, builddir, pki, port, proto="imap",
                 tls="none", token_url=None, extra="", state=None):
        self.tmp = tmp
        self.exe = bm_bin("bearmail-fetch")
        self.state = state or str(tmp / "state")
        os.makedirs(self.state, exist_ok=True)
        self.log = tmp / "fetch.log"
        self.conf = tmp / "bearmail.conf"
        host = "127.0.0.1" if tls == "none" else "localhost"
        lines = ["[defaults]", "log = %s" % self.log,
                 "state_dir = %s" % self.state,
                 "queue_dir = %s" % (tmp / "queue"), "",
                 "[gmail]", "provider = google", "user = " + USER,
                 "client_id = test-client", "client_secret = test-secret",
                 "%s_host = %s" % (proto, host),
                 "%s_port = %d" % (proto, port),
                 "%s_tls = %s" % (proto, tls),
                 "ca_file = %s" % pki.ca.cert,
                 "timeout = 10",
                 "token_endpoint = %s" % (token_url or
                                          "http://127.0.0.1:9/token"),
                 extra, ""]
        self.conf.write_text("\n".join(lines))
        self.env = dict(os.environ)
        self.env.update({
            "BEARMAIL_CONFIG": str(self.conf),
            "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "xdg"),
            "XDG_STATE_HOME": str(tmp / "xdgstate"), "TMPDIR": str(tmp),
            "BEARMAIL_AUTH": str(builddir / "src" / "bearmail-auth"),
        })
        self.env.pop("BEARMAIL_FETCH_TEST_CRASH", None)
        write_token(self.state, "gmail", GOOD)

    def argv(self, *args):
        return [self.exe] + list(args)

    def run(self, *args, env=None, timeout=120):
        e = dict(self.env)
        e.update(env or {})
        p = subprocess.run(self.argv(*args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=e, timeout=timeout)
        p.err = p.stderr.decode("utf-8", "replace")
        return p

    def popen(self, *args, env=None):
        e = dict(self.env)
        e.update(env or {})
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=e)

    def logtext(self):
        return self.log.read_text() if self.log.exists() else ""


def maildir_msgs(d):
    new = os.path.join(str(d), "new")
    if not os.path.isdir(new):
        return []
    out = []
    for name in sorted(os.listdir(new), key=lambda n: os.stat(
            os.path.join(new, n)).st_mtime_ns):
        with open(os.path.join(new, name), "rb") as f:
            out.append(f.read())
    return out


def lf(b):
    return b.replace(b"\r\n", b"\n")


@pytest.fixture
def imap_server(pki):
    made = []

    def make(*a, **kw):
        if kw.get("mode", "none") != "none":
            kw.setdefault("context", pki.server_context("server"))
        srv = ImapServer(*a, **kw).start()
        made.append(srv)
        return srv
    yield make
    errs = []
    for srv in made:
        srv.stop()
        errs += srv.errors
    if errs:
        pytest.fail("fake IMAP server:\n" + "\n".join(errs), pytrace=False)


@pytest.fixture
def pop_server(pki):
    made = []

    def make(*a, **kw):
        if kw.get("mode", "none") != "none":
            kw.setdefault("context", pki.server_context("server"))
        srv = PopServer(*a, **kw).start()
        made.append(srv)
        return srv
    yield make
    errs = []
    for srv in made:
        srv.stop()
        errs += srv.errors
    if errs:
        pytest.fail("fake POP3 server:\n" + "\n".join(errs), pytrace=False)


@pytest.fixture
def fetch(tmp_path, bm_bin, builddir, pki):
    def make(srv, **kw):
        return Fetch(tmp_path, bm_bin, builddir, pki, srv.port, **kw)
    return make


# --- IMAP ---------------------------------------------------------------

@pytest.mark.parametrize("mode,tls", [("implicit", "tls"),
                                      ("starttls", "starttls")])
def test_imap_tls_modes_maildir(imap_server, fetch, tmp_path, mode, tls):
    body = b"line one\r\nNUL here:\x00:end\r\nbare\rCR\r\n"
    mb = Mailbox([msg(1), msg(2, body), msg(3)])
    mb.msgs[2][2].add("\\Seen")           # already read: not fetched
    srv = imap_server(mb, mode=mode)
    f = fetch(srv, tls=tls)
    md = tmp_path / "Maildir"
    p = f.run("--maildir", str(md))
    assert p.returncode == 0, p.err
    got = maildir_msgs(md)
    assert sorted(got) == sorted([lf(msg(1)), lf(msg(2, body))])
    assert all("\\Seen" in m[2] for m in mb.msgs)
    assert srv.auths[-1]["ok"] and srv.auths[-1]["tls"]
    assert srv.auths[-1]["mech"] == "XOAUTH2" and srv.auths[-1]["inline"]
    if mode == "starttls":
        assert "STARTTLS" in [c.split(" ", 1)[1] for c in srv.commands
                              if " " in c]
    # The state file holds what was delivered.
    st = (tmp_path / "state" / "fetch" / "gmail" /
          "imap.INBOX.state").read_text()
    assert "uidvalidity 1000" in st and "uid 1-2" in st
    # A second run finds nothing new.
    p = f.run("--maildir", str(md))
    assert p.returncode == 0, p.err
    assert len(maildir_msgs(md)) == 2


def test_imap_oauthbearer_without_sasl_ir(imap_server, fetch, tmp_path):
    srv = imap_server(Mailbox([msg(1)]), sasl_ir=False, body_first=True)
    f = fetch(srv, extra="auth = oauthbearer")
    md = tmp_path / "md"
    p = f.run("--maildir", str(md))
    assert p.returncode == 0, p.err
    a = srv.auths[-1]
    assert a["mech"] == "OAUTHBEARER" and not a["inline"] and a["ok"]
    assert a["host"] == "127.0.0.1" and a["port"] == str(srv.port)
    # BODY[] came before UID in the response: still delivered, once.
    assert maildir_msgs(md) == [lf(msg(1))]


@pytest.mark.parametrize("mech", ["xoauth2", "oauthbearer"])
def test_imap_rejected_token_refreshed_once(imap_server, fetch, tmp_path,
                                            mech):
    from servers.tokenserver import TokenServer
    with TokenServer() as ts:
        srv = imap_server(Mailbox([msg(1)]),
                          tokens=Tokens(lambda t: t in ts.access_tokens))
        f = fetch(srv, token_url=ts.token_url, extra="auth = " + mech)
        rt = ts.issue_refresh(USER)
        write_token(f.state, "gmail", "ya29.revoked", refresh=rt)
        p = f.run("-v", "--maildir", str(tmp_path / "md"))
        assert p.returncode == 0, p.err
        assert ts.count("token") == 1
        assert [a["ok"] for a in srv.auths] == [False, True]
        assert len(maildir_msgs(tmp_path / "md")) == 1
        assert "ya29.revoked" not in p.err and rt not in p.err
        for tok in ts.access_tokens:
            assert tok not in p.err


def test_imap_refused_for_good(imap_server, fetch, tmp_path):
    srv = imap_server(Mailbox([msg(1)]), tokens=("ya29.other",))
    f = fetch(srv)
    p = f.run("--maildir", str(tmp_path / "md"))
    assert p.returncode == 77, p.err
    assert "AUTHENTICATIONFAILED" in p.err
    assert GOOD not in p.err
    assert maildir_msgs(tmp_path / "md") == []


@pytest.mark.parametrize("uidplus", [True, False])
def test_imap_delete(imap_server, fetch, tmp_path, uidplus):
    mb = Mailbox([msg(1), msg(2), msg(3)])
    srv = imap_server(mb, uidplus=uidplus)
    f = fetch(srv)
    p = f.run("--delete", "--maildir", str(tmp_path / "md"))
    assert p.returncode == 0, p.err
    assert len(maildir_msgs(tmp_path / "md")) == 3
    assert mb.msgs == []
    cmds = [c.split(" ", 1)[1] for c in srv.commands if " " in c]
    if uidplus:
        assert any(c.startswith("UID EXPUNGE 1:3") for c in cmds)
    else:
        assert "EXPUNGE" in cmds


def test_imap_all_keep_changes_nothing(imap_server, fetch, tmp_path):
    mb = Mailbox([msg(1), msg(2)])
    mb.msgs[0][2].add("\\Seen")
    srv = imap_server(mb)
    f = fetch(srv)
    p = f.run("--all", "--keep", "--maildir", str(tmp_path / "md"))
    assert p.returncode == 0, p.err
    assert len(maildir_msgs(tmp_path / "md")) == 2
    cmds = [c.split(" ", 1)[1] for c in srv.commands if " " in c]
    assert any(c.startswith("EXAMINE") for c in cmds)
    assert not any(c.startswith("UID STORE") for c in cmds)
    assert mb.msgs[1][2] == set()


def test_imap_uidvalidity_change(imap_server, fetch, tmp_path):
    mb = Mailbox([msg(1), msg(2)])
    srv = imap_server(mb)
    f = fetch(srv)
    md = tmp_path / "md"
    assert f.run("--maildir", str(md)).returncode == 0
    # Default mode: after a rebuild only unseen mail counts as new.
    mb.rebuild(2000)
    mb.add(msg(3))
    p = f.run("--maildir", str(md))
    assert p.returncode == 0, p.err
    assert len(maildir_msgs(md)) == 3
    assert "UIDVALIDITY changed" in f.logtext()
    # --all takes what the state does not hold: the two seen messages
    # under their new UIDs; then nothing; then, after another rebuild,
    # the whole folder again (the documented policy).
    md2 = tmp_path / "md2"
    assert f.run("--all", "--maildir", str(md2)).returncode == 0
    assert sorted(maildir_msgs(md2)) == [lf(msg(1)), lf(msg(2))]
    assert f.run("--all", "--maildir", str(md2)).returncode == 0
    assert len(maildir_msgs(md2)) == 2
    mb.rebuild(3000)
    assert f.run("--all", "--maildir", str(md2)).returncode == 0
    assert len(maildir_msgs(md2)) == 5


def test_imap_missing_folder(imap_server, fetch, tmp_path):
    srv = imap_server(Mailbox([msg(1)]))
    f = fetch(srv)
    p = f.run("--folder", "Nope", "--maildir", str(tmp_path / "md"))
    assert p.returncode == 78, p.err
    assert "NONEXISTENT" in p.err


def test_imap_labels_as_folders(imap_server, fetch, tmp_path):
    srv = imap_server(folders={"INBOX": Mailbox([msg(1)]),
                               "[Gmail]/All Mail": Mailbox([msg(2)])})
    f = fetch(srv)
    p = f.run("--folder", "INBOX", "--folder", "[Gmail]/All Mail",
              "--maildir", str(tmp_path / "md"))
    assert p.returncode == 0, p.err
    assert sorted(maildir_msgs(tmp_path / "md")) == [lf(msg(1)), lf(msg(2))]
    assert (tmp_path / "state" / "fetch" / "gmail" /
            "imap.%5BGmail%5D%2FAll%20Mail.state").exists()


def test_mda_exit_codes(imap_server, fetch, tmp_path):
    mb = Mailbox([msg(1), msg(2)])
    srv = imap_server(mb)
    f = fetch(srv)
    out = tmp_path / "mda-out"
    # 75: try later; nothing marked, nothing recorded.
    p = f.run("--mda", "cat >/dev/null; exit 75")
    assert p.returncode == 75, p.err
    assert all(m[2] == set() for m in mb.msgs)
    # Any other failure stops the run, nothing marked either.
    p = f.run("--mda", "cat >/dev/null; exit 3")
    assert p.returncode == 73, p.err
    assert "exited 3" in p.err
    assert all(m[2] == set() for m in mb.msgs)
    # 0: delivered, then marked.
    p = f.run("--mda", "cat >> '%s'" % out)
    assert p.returncode == 0, p.err
    assert out.read_bytes() == lf(msg(1)) + lf(msg(2))
    assert all("\\Seen" in m[2] for m in mb.msgs)


def test_deliver_key_from_account(imap_server, fetch, tmp_path):
    srv = imap_server(Mailbox([msg(1)]))
    f = fetch(srv, extra="deliver = mbox:%s" % (tmp_path / "mbox"))
    p = f.run()
    assert p.returncode == 0, p.err
    assert (tmp_path / "mbox").read_bytes().startswith(b"From ")


def test_mbox_from_quoting(imap_server, fetch, tmp_path):
    body = b"From the start\r\n>From quoted\r\nok\r\n"
    srv = imap_server(Mailbox([b"Return-Path: <bob@example.org>\r\n"
                               b"Subject: q\r\n\r\n" + body]))
    f = fetch(srv)
    mbox = tmp_path / "mbox"
    p = f.run("--mbox", str(mbox))
    assert p.returncode == 0, p.err
    data = mbox.read_bytes()
    assert data.startswith(b"From bob@example.org ")
    assert b"\n>From the start\n>>From quoted\nok\n\n" in data
    assert data.endswith(b"ok\n\n")
    assert not (tmp_path / "mbox.lock").exists()


def test_crash_between_delivery_and_state(imap_server, fetch, tmp_path):
    mb = Mailbox([msg(i) for i in range(1, 6)])
    srv = imap_server(mb)
    f = fetch(srv)
    md = tmp_path / "md"
    p = f.run("--maildir", str(md), env={"BEARMAIL_FETCH_TEST_CRASH": "3"})
    assert p.returncode == -signal.SIGKILL, p.err
    assert len(maildir_msgs(md)) == 3
    p = f.run("--maildir", str(md))
    assert p.returncode == 0, p.err
    got = maildir_msgs(md)
    # Nothing lost; at most the one message in flight came twice.
    assert set(got) == {lf(msg(i)) for i in range(1, 6)}
    assert len(got) <= 6
    assert [got.count(lf(msg(i))) for i in range(1, 6)] in (
        [1, 1, 2, 1, 1], [1, 1, 1, 1, 1])
    assert all("\\Seen" in m[2] for m in mb.msgs)


@pytest.mark.unwrapped  # measures the program's own resident set
def test_huge_literal_streamed_in_bounded_memory(imap_server, fetch,
                                                 tmp_path):
    line = b"0123456789" * 7 + b"abcdef\r\n"
    big = b"Subject: big\r\n\r\n" + line * (30 * 1024 * 1024 // len(line))
    srv = imap_server(Mailbox([big]))
    f = fetch(srv)
    md = tmp_path / "md"
    proc = f.popen("--maildir", str(md))
    srv.pid = proc.pid
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    got = maildir_msgs(md)
    assert len(got) == 1 and len(got[0]) == len(lf(big))
    assert got[0] == lf(big)
    # 30 MiB went through; the resident set stayed a few MiB.
    assert 0 < srv.hwm_kb < MEM_BOUND_KB, srv.hwm_kb


@pytest.mark.unwrapped  # measures the program's own resident set
def test_4gb_literal_announcement(imap_server, fetch, tmp_path):
    def lie(server, s, i, m):
        s.send(b"* %d FETCH (UID %d BODY[] {4294967296}\r\n" % (i, m[0]))
        s.send(b"x" * (1024 * 1024))
        server.measure()
        s.close()
        return True
    srv = imap_server(Mailbox([msg(1)]), on_fetch=lie)
    f = fetch(srv)
    md = tmp_path / "md"
    proc = f.popen("--maildir", str(md))
    srv.pid = proc.pid
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert maildir_msgs(md) == []
    assert os.listdir(str(md / "tmp")) == []
    assert 0 < srv.hwm_kb < MEM_BOUND_KB, srv.hwm_kb


@pytest.mark.unwrapped  # measures the program's own resident set
def test_10000_messages_constant_memory(imap_server, fetch, tmp_path):
    # On tmpfs when there is one: 10,000 fsyncs on a disk are slow and
    # prove nothing more.
    base = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm")
                            else str(tmp_path))
    try:
        mb = Mailbox([b"Subject: %d\r\n\r\nx\r\n" % i
                      for i in range(10000)])
        srv = imap_server(mb)
        f = fetch(srv, state=os.path.join(base, "state"))
        mbox = os.path.join(base, "mbox")
        proc = f.popen("-q", "--mbox", mbox)
        srv.pid = proc.pid
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        with open(mbox, "rb") as fh:
            assert fh.read().count(b"\nFrom MAILER-DAEMON ") == 9999
        assert all("\\Seen" in m[2] for m in mb.msgs)
        assert 0 < srv.hwm_kb < MEM_BOUND_KB, srv.hwm_kb
        st = open(os.path.join(base, "state", "fetch", "gmail",
                               "imap.INBOX.state")).read()
        assert "uid 1-10000\n" in st
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_idle_bye_and_token_expiry(imap_server, fetch, tmp_path):
    from servers.tokenserver import TokenServer
    with TokenServer() as ts:
        state = {"n": 0, "expired": False}

        def accept(tok):
            # The first token dies with the first session (Gmail ends
            # OAuth sessions with the token).
            if tok == GOOD:
                return not state["expired"]
            return tok in ts.access_tokens

        def on_idle(server, s, tag, sel):
            state["n"] += 1
            if state["n"] == 1:
                state["expired"] = True
                s.send("* BYE Session expired, please login again.\r\n")
                return True
            if state["n"] == 2:
                sel.add(msg(2))
                s.send("* %d EXISTS\r\n" % len(sel.msgs))
                return False
            s.stall(30)
            return True
        mb = Mailbox([msg(1)])
        srv = imap_server(mb, tokens=Tokens(accept), on_idle=on_idle)
        f = fetch(srv, token_url=ts.token_url)
        write_token(f.state, "gmail", GOOD, refresh=ts.issue_refresh(USER))
        md = tmp_path / "md"
        proc = f.popen("--idle", "--maildir", str(md))
        try:
            end = time.monotonic() + 60
            while len(maildir_msgs(md)) < 2 and time.monotonic() < end \
                    and proc.poll() is None:
                time.sleep(0.1)
            got = maildir_msgs(md)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        assert sorted(got) == [lf(msg(1)), lf(msg(2))], err
        # Session 1 (GOOD), then after BYE: GOOD refused, one refresh,
        # accepted.
        assert [a["ok"] for a in srv.auths] == [True, False, True], \
            srv.auths
        assert ts.count("token") == 1
        assert len(srv.sessions) >= 2
        assert "Session expired" in f.logtext()


def test_verbose_transcript_has_no_secrets(imap_server, fetch, tmp_path):
    srv = imap_server(Mailbox([msg(1)]))
    f = fetch(srv)
    p = f.run("-v", "--maildir", str(tmp_path / "md"))
    assert p.returncode == 0, p.err
    assert "AUTHENTICATE XOAUTH2" in p.err and "UID FETCH" in p.err
    payload = base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01"
                                % (USER, GOOD)).encode()).decode()
    for secret in (GOOD, payload, payload[:40]):
        assert secret not in p.err
        assert secret not in f.logtext()


# --- POP3 ---------------------------------------------------------------

@pytest.mark.parametrize("mode,tls", [("implicit", "tls"),
                                      ("starttls", "starttls")])
def test_pop_keep_and_uidl(pop_server, fetch, tmp_path, mode, tls):
    body = b".leading dot\r\n..two\r\nNUL:\x00\r\n.\r\nafter lone dot\r\n"
    srv = pop_server([["u1", msg(1)], ["u2", msg(2, body)]], mode=mode)
    f = fetch(srv, proto="pop", tls=tls)
    md = tmp_path / "md"
    p = f.run("--pop", "--maildir", str(md))
    assert p.returncode == 0, p.err
    assert sorted(maildir_msgs(md)) == sorted([lf(msg(1)), lf(msg(2, body))])
    assert len(srv.msgs) == 2                    # kept
    assert srv.auths[-1]["ok"] and srv.auths[-1]["inline"]
    if mode == "starttls":
        assert "STLS" in srv.commands
    srv.msgs.append(["u3", msg(3)])
    p = f.run("--pop", "--maildir", str(md))
    assert p.returncode == 0, p.err
    assert len(maildir_msgs(md)) == 3
    retrs = [c for c in srv.commands if c.startswith("RETR")]
    assert retrs == ["RETR 1", "RETR 2", "RETR 3"]
    st = (tmp_path / "state" / "fetch" / "gmail" / "pop3.state").read_text()
    assert "uidl u1\nuidl u2\nuidl u3\n" in st


def test_pop_delete(pop_server, fetch, tmp_path):
    srv = pop_server([["a", msg(1)], ["b", msg(2)]])
    f = fetch(srv, proto="pop")
    p = f.run("--pop", "--delete", "--maildir", str(tmp_path / "md"))
    assert p.returncode == 0, p.err
    assert srv.msgs == [] and srv.quits == 1
    assert [c for c in srv.commands if c.startswith("DELE")] == [
        "DELE 1", "DELE 2"]
    assert len(maildir_msgs(tmp_path / "md")) == 2
    # Pruned: the server no longer lists them.
    srv.msgs.append(["c", msg(3)])
    assert f.run("--pop", "--delete", "--maildir",
                 str(tmp_path / "md")).returncode == 0
    st = (tmp_path / "state" / "fetch" / "gmail" / "pop3.state").read_text()
    assert "uidl a" not in st


def test_pop_long_token_two_step_auth(pop_server, fetch, tmp_path):
    long_tok = "ya29." + "x" * 300
    srv = pop_server([["a", msg(1)]], tokens=(long_tok,))
    f = fetch(srv, proto="pop")
    write_token(f.state, "gmail", long_tok)
    p = f.run("--pop", "--recent", "--maildir", str(tmp_path / "md"))
    assert p.returncode == 0, p.err
    a = srv.auths[-1]
    assert a["ok"] and not a["inline"] and a["user"] == "recent:" + USER


def test_pop_rejected_token_refreshed(pop_server, fetch, tmp_path):
    from servers.tokenserver import TokenServer
    with TokenServer() as ts:
        srv = pop_server([["a", msg(1)]],
                         tokens=Tokens(lambda t: t in ts.access_tokens))
        f = fetch(srv, proto="pop", token_url=ts.token_url)
        write_token(f.state, "gmail", "ya29.revoked",
                    refresh=ts.issue_refresh(USER))
        p = f.run("--pop", "--maildir", str(tmp_path / "md"))
        assert p.returncode == 0, p.err
        assert [a["ok"] for a in srv.auths] == [False, True]
        assert ts.count("token") == 1


def test_pop_mda_tempfail_deletes_nothing(pop_server, fetch, tmp_path):
    srv = pop_server([["a", msg(1)], ["b", msg(2)]])
    f = fetch(srv, proto="pop")
    p = f.run("--pop", "--delete", "--mda", "cat >/dev/null; exit 75")
    assert p.returncode == 75, p.err
    assert len(srv.msgs) == 2
    assert not any(c.startswith("DELE") for c in srv.commands)


# --- the command line ---------------------------------------------------

def test_usage(imap_server, fetch, tmp_path):
    srv = imap_server(Mailbox())
    f = fetch(srv)
    p = f.run()
    assert p.returncode == 64 and "delivery target" in p.err
    assert f.run("--pop", "--idle", "--maildir", "x").returncode == 64
    assert f.run("--bogus").returncode == 64
    assert f.run("--maildir", "a", "--mbox", "b").returncode == 64
    assert f.run("--idle", "--maildir", "a", "x", "y").returncode == 64
    p = f.run("--help")
    assert p.returncode == 0 and b"--maildir" in p.stdout
    p = f.run("--version")
    assert p.returncode == 0 and p.stdout.startswith(b"bearmail-fetch ")
    p = f.run("nosuch", "--maildir", str(tmp_path / "md"))
    assert p.returncode == 64, p.err


def test_no_libcurl(bm_bin):
    out = subprocess.run(["ldd", bm_bin("bearmail-fetch")],
                         stdout=subprocess.PIPE, text=True).stdout
    assert "libcurl" not in out


def test_one_fetch_per_account(imap_server, fetch, tmp_path):
    import fcntl
    srv = imap_server(Mailbox([msg(1)]))
    f = fetch(srv)
    d = tmp_path / "state" / "fetch" / "gmail"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        p = f.run("--maildir", str(tmp_path / "md"))
    assert p.returncode == 75 and "another bearmail-fetch" in p.err
    assert maildir_msgs(tmp_path / "md") == []


def test_progress_line_only_on_a_terminal(imap_server, fetch, tmp_path):
    import pty
    import select
    srv = imap_server(Mailbox([msg(1), msg(2)]))
    f = fetch(srv)
    master, slave = pty.openpty()
    try:
        p = subprocess.run(f.argv("--maildir", str(tmp_path / "md")),
                           stdout=subprocess.PIPE, stderr=slave,
                           env=f.env, timeout=60)
        os.close(slave)
        slave = None
        out = b""
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0
    assert b"gmail: 2 messages" in out and b"MB/s" in out, out
    # Not a terminal: nothing at all.
    srv.mailbox.add(msg(3))
    p = f.run("--maildir", str(tmp_path / "md"))
    assert p.returncode == 0 and p.err == "" and p.stdout == b""
    assert len(maildir_msgs(tmp_path / "md")) == 3


def test_imap_odd_but_valid_fetch_responses(imap_server, fetch, tmp_path):
    def odd(server, s, i, m):
        if i == 1:
            # A literal inside a nested list before the body, flags,
            # and an unsolicited FETCH and EXISTS in between.
            s.send(b"* 1 FETCH (FLAGS (\\Seen) UID %d ENVELOPE (\"d\" "
                   b"{5}\r\nhello NIL) BODY[] {%d}\r\n%s)\r\n"
                   b"* 3 EXISTS\r\n* 2 FETCH (FLAGS ())\r\n"
                   % (m[0], len(m[1]), m[1]))
        else:
            # The message went away meanwhile: no body.
            s.send(b"* %d FETCH (UID %d BODY[] NIL)\r\n" % (i, m[0]))
        return True
    mb = Mailbox([msg(1), msg(2)])
    srv = imap_server(mb, on_fetch=odd)
    f = fetch(srv)
    p = f.run("--maildir", str(tmp_path / "md"))
    assert p.returncode == 0, p.err
    assert maildir_msgs(tmp_path / "md") == [lf(msg(1))]
    st = (tmp_path / "state" / "fetch" / "gmail" /
          "imap.INBOX.state").read_text()
    assert "uid 1\n" in st and "uid 2" not in st


@pytest.mark.parametrize("resp,code", [
    (b"* 1 FETCH UID 1)\r\n", 76),                       # no list
    (b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n", 76),        # no UID
    (b"* 1 FETCH (UID 1 BODY[] {99999999999999999999}\r\n", 76),
    (b"* 1 FETCH (UID 1 BODY[] {50}\r\nshort", 75),      # then hang up
    (b"* 1 FETCH (UID 1 BODY[] {5}\r\nhello \"open)\r\n", 76),
])
def test_imap_broken_fetch_responses(imap_server, fetch, tmp_path, resp,
                                     code):
    def broken(server, s, i, m):
        s.send(resp)
        s.close()
        return True
    srv = imap_server(Mailbox([msg(1)]), on_fetch=broken)
    f = fetch(srv)
    md = tmp_path / "md"
    p = f.run("--maildir", str(md))
    assert p.returncode == code, p.err
    assert maildir_msgs(md) == []
    assert os.listdir(str(md / "tmp")) == []
    assert "\\Seen" not in srv.mailbox.msgs[0][2]


def test_pop_data_after_message_is_refused(pop_server, fetch, tmp_path):
    srv = pop_server([["a", msg(1)]])
    orig = srv._pop

    def pop(s):
        real = s.send

        def send(data):
            data = data if isinstance(data, bytes) else data.encode()
            if data.startswith(b"+OK message follows"):
                data += b"+OK unsolicited\r\n"
            return real(data)
        s.send = send
        return orig(s)
    srv.handler = pop
    f = fetch(srv, proto="pop")
    p = f.run("--pop", "--maildir", str(tmp_path / "md"))
    assert p.returncode == 76, p.err
    assert maildir_msgs(tmp_path / "md") == []


# ---- no core files ------------------------------------------------------------

def test_no_core_dumps(tmp_path, bm_bin, builddir, pki, silent_port,
                       no_core_while_waiting):
    # bearmail-fetch holds access tokens and mail: RLIMIT_CORE 0.
    f = Fetch(tmp_path, bm_bin, builddir, pki, silent_port)
    no_core_while_waiting(f.argv("--idle", "--maildir", str(tmp_path / "md")),
                          f.env)
