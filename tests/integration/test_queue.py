"""The queue, end to end: bearmail queueing on failure, -odq, -odb, the
runner (-q, -qf, -qI, --queue-due, -q -a), mailq, kill -9 at each stage, two runners, one
session for many messages, token expiry and revoked grants in a run,
max_queue_age and failure notices, the maildrop for unprivileged users.

Each test writes its own configuration (BEARMAIL_CONFIG), a token store
and a queue directory under tmp_path, and starts the fake SMTP sink on
127.0.0.1.  Waiting for a background delivery polls with a generous
bound; nothing asserts on how long anything took.
"""

import email
import email.policy
import grp
import os
import pathlib
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from servers.tokenstore import write_token

USER = "alice@example.com"
GOOD = "ya29.good-token"
DOMAIN = "host.example"
ID_RE = r"[0-9A-HJKMNP-TV-Z]{10}"


def message(n, extra=""):
    return ("Subject: message %d\nFrom: alice@example.com\n%s\n"
            "body of message %d\n" % (n, extra, n)).encode()


class Q:
    """A configured bearmail with a queue, and its SMTP sink."""

    def __init__(self, root, sink, builddir, pki, port=None, queue="on-failure",
                 token_url=None, extra=""):
        self.root = root
        self.sink = sink
        self.exe = str(builddir / "src" / "bearmail")
        self.log = root / "bearmail.log"
        self.state = root / "state"
        self.qdir = root / "queue"
        self.conf = root / "bearmail.conf"
        self.state.mkdir(exist_ok=True)
        self.port = port if port is not None else sink.port
        self.token_url = token_url or "http://127.0.0.1:9/token"
        self.queue = queue
        self.extra = extra
        self.write_conf()
        self.env = dict(os.environ)
        self.env.update({
            "BEARMAIL_CONFIG": str(self.conf),
            "HOME": str(root),
            "XDG_CONFIG_HOME": str(root / "xdg"),
            "XDG_STATE_HOME": str(root / "xdgstate"),
            "TMPDIR": str(root),
            "BEARMAIL_AUTH": str(builddir / "src" / "bearmail-auth"),
        })
        write_token(str(self.state), "gmail", GOOD)

    def write_conf(self):
        self.conf.write_text("\n".join([
            "[defaults]",
            "log = %s" % self.log,
            "state_dir = %s" % self.state,
            "queue_dir = %s" % self.qdir,
            "queue = %s" % self.queue,
            self.extra,
            "",
            "[gmail]",
            "provider = google",
            "user = " + USER,
            "client_id = test-client",
            "client_secret = test-secret",
            "smtp_host = 127.0.0.1",
            "smtp_port = %d" % self.port,
            "smtp_tls = none",
            "domain = " + DOMAIN,
            "timeout = 10",
            "token_endpoint = %s" % self.token_url,
            ""]))

    def set_port(self, port):
        self.port = port
        self.write_conf()

    def run(self, argv, data=b"", timeout=120, env=None):
        p = subprocess.run([self.exe] + list(argv), input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env or self.env, timeout=timeout)
        p.err = p.stderr.decode("utf-8", "replace")
        p.out = p.stdout.decode("utf-8", "replace")
        return p

    def start(self, argv, data=b""):
        p = subprocess.Popen([self.exe] + list(argv), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=self.env)
        if data is not None:
            p.stdin.write(data)
            p.stdin.close()
        return p

    def queued(self):
        d = self.qdir / "q"
        return sorted(os.listdir(d)) if d.is_dir() else []

    def failed(self):
        d = self.qdir / "failed"
        return sorted(os.listdir(d)) if d.is_dir() else []

    def logtext(self):
        return self.log.read_text() if self.log.exists() else ""

    def subjects(self):
        out = []
        for m in self.sink.messages:
            h = email.message_from_bytes(m.data, policy=email.policy.compat32)
            out.append(h["Subject"])
        return out


def wait_for(pred, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.fixture
def q(tmp_path, smtp_sink, builddir, pki):
    def make(sink_kw=None, **kw):
        skw = {"user": USER, "token": GOOD}
        skw.update(sink_kw or {})
        sink = smtp_sink(**skw)
        return Q(tmp_path, sink, builddir, pki, **kw)
    return make


# ---- queueing on failure, -q, mailq ----------------------------------------

def test_relay_down_queued_then_delivered_once(q, free_port):
    b = q(port=free_port())
    p = b.run(["-i", "bob@example.org"], message(1))
    assert p.returncode == 0, p.err
    lines = p.err.splitlines()
    assert len(lines) == 1, p.err
    m = re.fullmatch(r"bearmail: queued as (%s): (.+); run `bearmail -q` "
                     r"to retry now .*" % ID_RE, lines[0])
    assert m, lines[0]
    qid = m.group(1)
    assert b.queued() == [qid]
    # mailq lists it, with the reason, in Postfix's layout.
    p = b.run(["-bp"])
    assert p.returncode == 0, p.err
    assert qid in p.out and "bob@example.org" in p.out, p.out
    assert "alice@example.com" in p.out
    # The relay is back: plain -q sends it now, although its backoff
    # says later (as Postfix's sendmail -q does), and only once.
    b.set_port(b.sink.port)
    p = b.run(["-q"])
    assert p.returncode == 0, p.err
    b.sink.wait()
    assert b.subjects() == ["message 1"]
    assert b.sink.messages[0].rcpts == ["bob@example.org"]
    assert b.queued() == [] and b.failed() == []
    p = b.run(["-q"])
    assert p.returncode == 0, p.err
    b.sink.wait()
    assert len(b.sink.messages) == 1
    assert re.search(r"%s: to=<bob@example\.org>, relay=127\.0\.0\.1"
                     r"\[127\.0\.0\.1\]:%d, delay=[\d.]+, status=sent "
                     r"\(250 " % (qid, b.sink.port), b.logtext()), b.logtext()
    p = b.run(["-bp"])
    assert p.out == "Mail queue is empty\n"


def test_queue_due_leaves_not_due_alone(q, free_port):
    # --queue-due (the timer's) honours backoff; -qf, like -q, does not.
    b = q(port=free_port())
    p = b.run(["-i", "bob@example.org"], message(1))
    assert p.returncode == 0, p.err
    [later] = b.queued()
    b.set_port(b.sink.port)
    p = b.run(["-odq", "-i", "bob@example.org"], message(2))
    assert p.returncode == 0, p.err
    due = [i for i in b.queued() if i != later]
    assert len(due) == 1
    p = b.run(["--queue-due"])
    assert p.returncode == 0, p.err
    b.sink.wait()
    assert b.subjects() == ["message 2"]
    assert b.queued() == [later]
    p = b.run(["--queue-due"])
    assert p.returncode == 0, p.err
    b.sink.wait()
    assert b.subjects() == ["message 2"] and b.queued() == [later]
    p = b.run(["-qf"])
    assert p.returncode == 0, p.err
    b.sink.wait()
    assert b.subjects() == ["message 2", "message 1"]
    assert b.queued() == []


def other_account(b, port):
    """Append a second account, [other], whose relay is 127.0.0.1:port."""
    text = b.conf.read_text()
    if "[other]" not in text:
        section = text[text.index("[gmail]"):].replace("[gmail]", "[other]")
        section = re.sub(r"smtp_port = \d+", "smtp_port = %d" % port, section)
        b.conf.write_text(text + "\n" + section)
    write_token(str(b.state), "other", GOOD)


def test_q_with_account_sends_that_accounts_mail_only(q, free_port):
    b = q(extra="account = gmail")
    other_account(b, free_port())
    p = b.run(["-odq", "-a", "other", "-i", "bob@example.org"], message(1))
    assert p.returncode == 0, p.err
    p = b.run(["-odq", "-i", "bob@example.org"], message(2))
    assert p.returncode == 0, p.err
    assert len(b.queued()) == 2
    p = b.run(["-q", "-a", "gmail"])
    assert p.returncode == 0, p.err
    b.sink.wait()
    assert b.subjects() == ["message 2"] and len(b.queued()) == 1
    assert "to=<bob@example.org>" in b.logtext()
    assert "status=deferred" not in b.logtext()
    p = b.run(["-q", "--account=nosuch"])
    assert p.returncode != 0 and "nosuch" in p.err, p.err
    assert len(b.queued()) == 1


def flushes_running(b):
    """Background runs (bearmail -q --account=...) of this test's bearmail."""
    mine = ("BEARMAIL_CONFIG=%s" % b.conf).encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if mine in env and b"-q" in argv:
            found.append(argv)
    return found


def test_success_flush_leaves_other_accounts_backoff_alone(q, free_port):
    # After a message goes through gmail, gmail's queued mail is sent at
    # once; [other]'s relay may still be down: its mail keeps its backoff
    # and its relay is not tried again.
    b = q(port=free_port(), extra="account = gmail")
    dead = free_port()
    other_account(b, dead)
    p = b.run(["-i", "bob@example.org"], message(1))
    assert p.returncode == 0 and len(b.queued()) == 1, p.err
    [mine] = b.queued()
    p = b.run(["-a", "other", "-i", "carol@example.org"], message(2))
    assert p.returncode == 0 and len(b.queued()) == 2, p.err
    [theirs] = [i for i in b.queued() if i != mine]
    # What the log says from here on: the first try's line may already
    # carry the queue ID (the two IDs are made apart and can coincide).
    mark = len(b.logtext())
    b.set_port(b.sink.port)
    other_account(b, dead)
    p = b.run(["-i", "bob@example.org"], message(3))
    assert p.returncode == 0 and p.err == "", p.err
    assert wait_for(lambda: b.queued() == [theirs])
    assert wait_for(lambda: flushes_running(b) == [])
    b.sink.wait()
    assert sorted(b.subjects()) == ["message 1", "message 3"]
    assert "%s: to=" % theirs not in b.logtext()[mark:], b.logtext()


def test_qI_sends_one_message_due_or_not(q, free_port):
    b = q(port=free_port())
    ids = []
    for n in (1, 2):
        p = b.run(["-i", "bob@example.org"], message(n))
        assert p.returncode == 0, p.err
        ids.append(re.search(ID_RE, p.err).group(0))
    b.set_port(b.sink.port)
    p = b.run(["-qI" + ids[1]])
    assert p.returncode == 0, p.err
    b.sink.wait()
    assert b.subjects() == ["message 2"]
    assert b.queued() == [ids[0]]


def test_queue_never_exit_75(q, free_port):
    b = q(port=free_port(), queue="never")
    p = b.run(["-i", "bob@example.org"], message(1))
    assert p.returncode == 75, p.err
    assert b.queued() == []


def test_queue_unwritable_exit_73(q, free_port):
    b = q(port=free_port())
    b.qdir.write_text("not a directory\n")
    p = b.run(["-i", "bob@example.org"], message(1))
    assert p.returncode == 73, p.err
    assert "queue cannot be written" in p.err


def test_own_fault_not_queued(q):
    b = q(sink_kw={"hooks": {"RCPT": "550 5.1.1 no such user"}})
    p = b.run(["-i", "nobody@example.org"], message(1))
    assert p.returncode == 67, p.err
    assert b.queued() == []


def test_temporary_reply_queued(q):
    b = q(sink_kw={"hooks": {"MAIL": "451 4.3.0 try again later"}})
    p = b.run(["-i", "bob@example.org"], message(1))
    assert p.returncode == 0, p.err
    assert "451 4.3.0 try again later" in p.err
    assert len(b.queued()) == 1


def test_odq_queues_only(q):
    b = q()
    p = b.run(["-odq", "-i", "bob@example.org"], message(1))
    assert p.returncode == 0, p.err
    assert p.err == ""
    assert len(b.queued()) == 1
    b.sink.wait()
    assert b.sink.messages == []
    # Due at once: a plain -q sends it.
    p = b.run(["-q"])
    assert p.returncode == 0, p.err
    b.sink.wait()
    assert b.subjects() == ["message 1"] and b.queued() == []


def test_queue_always_and_odb_deliver_in_background(q):
    b = q(queue="always")
    p = b.run(["-i", "bob@example.org"], message(1))
    assert p.returncode == 0, p.err
    p = b.run(["-odb", "-i", "carol@example.org"], message(2))
    assert p.returncode == 0, p.err
    assert wait_for(lambda: len(b.sink.messages) == 2)
    assert wait_for(lambda: b.queued() == [])
    assert sorted(b.subjects()) == ["message 1", "message 2"]


def test_success_flushes_older_queue(q, free_port):
    b = q(port=free_port())
    p = b.run(["-i", "bob@example.org"], message(1))
    assert p.returncode == 0 and len(b.queued()) == 1, p.err
    b.set_port(b.sink.port)
    p = b.run(["-i", "bob@example.org"], message(2))
    assert p.returncode == 0 and p.err == "", p.err
    assert wait_for(lambda: len(b.sink.messages) == 2)
    assert wait_for(lambda: b.queued() == [])
    assert sorted(b.subjects()) == ["message 1", "message 2"]


# ---- the runner ---------------------------------------------------------------

def test_thousand_messages_one_session(q):
    # Under valgrind (BM_WRAPPER) a thousand runs to fill the queue would
    # take a quarter of an hour; a hundred still need one session.
    total = 100 if os.environ.get("BM_WRAPPER") else 1000
    b = q()
    for n in range(total):
        p = b.run(["-odq", "-i", "bob@example.org"], message(n))
        assert p.returncode == 0, p.err
    assert len(b.queued()) == total
    p = b.run(["-q"], timeout=600)
    assert p.returncode == 0, p.err
    b.sink.wait()
    assert len(b.sink.messages) == total
    assert len(b.sink.sessions) == 1
    assert len(b.sink.sessions[0].auth) == 1
    assert sorted(b.subjects()) == sorted("message %d" % n
                                          for n in range(total))
    assert b.queued() == []


def test_two_runners_send_each_message_once(q):
    b = q()
    for n in range(60):
        assert b.run(["-odq", "-i", "bob@example.org"],
                     message(n)).returncode == 0
    runners = [b.start(["-qf"], None) for _ in range(2)]
    for r in runners:
        r.communicate(timeout=300)
        assert r.returncode == 0
    b.sink.wait()
    assert sorted(b.subjects()) == sorted("message %d" % n for n in range(60))
    assert b.queued() == []


def test_partial_recipient_failure(q):
    def rcpt(session, arg):
        return "550 5.1.1 no such user" if "nobody" in arg else None
    b = q(sink_kw={"hooks": {"RCPT": rcpt}})
    p = b.run(["-odq", "-i", "bob@example.org", "nobody@example.org"],
              message(1))
    assert p.returncode == 0, p.err
    qid = b.queued()[0]
    p = b.run(["-q"])
    assert p.returncode == 0, p.err
    b.sink.wait()
    got = b.sink.messages
    assert [m.rcpts for m in got] == [["bob@example.org"], [USER]], got
    assert got[0].sender == USER
    notice = got[1]
    assert notice.sender == ""
    assert b"multipart/report" in notice.data
    assert b"nobody@example.org" in notice.data
    assert b.failed() == [qid] and b.queued() == []
    log = b.logtext()
    assert "%s: to=<nobody@example.org>" % qid in log
    assert "status=bounced" in log


def test_max_age_fails_and_notifies_sender(q):
    def rcpt(session, arg):
        return "451 4.2.1 mailbox busy" if "bob" in arg else None
    b = q(sink_kw={"hooks": {"RCPT": rcpt}}, extra="max_queue_age = 1s")
    p = b.run(["-odq", "-i", "bob@example.org"], message(1))
    assert p.returncode == 0, p.err
    qid = b.queued()[0]
    time.sleep(2.1)          # let the message age past max_queue_age
    p = b.run(["-qf"])
    assert p.returncode == 0, p.err
    b.sink.wait()
    assert b.failed() == [qid] and b.queued() == []
    assert len(b.sink.messages) == 1
    n = b.sink.messages[0]
    assert n.sender == "" and n.rcpts == [USER]
    assert b"bob@example.org" in n.data and b"multipart/report" in n.data
    failed = (b.qdir / "failed" / qid).read_bytes()
    assert b"expired" in failed
    assert "expired" in b.logtext()


def test_temporary_failure_backs_off(q):
    b = q(sink_kw={"hooks": {"MAIL": "421 4.7.0 try later"}})
    p = b.run(["-odq", "-i", "bob@example.org"], message(1))
    qid = b.queued()[0]
    p = b.run(["-q"])
    assert p.returncode == 0, p.err
    env = (b.qdir / "q" / qid).read_bytes().split(b"\n\n")[0].decode()
    assert "attempts 1" in env and "421 4.7.0 try later" in env, env
    assert "status=deferred" in b.logtext()


def test_unknown_account_stays_queued(q):
    b = q()
    assert b.run(["-odq", "-i", "bob@example.org"],
                 message(1)).returncode == 0
    b.conf.write_text(b.conf.read_text().replace("[gmail]", "[other]"))
    p = b.run(["-q"])
    assert p.returncode == 0, p.err
    assert len(b.queued()) == 1
    assert "account gmail: not in the configuration" in b.logtext()
    b.sink.wait()
    assert b.sink.messages == []


def test_revoked_grant_keeps_mail_queued(q):
    from servers.tokenserver import TokenServer
    with TokenServer() as ts:
        b = q(sink_kw={"token": "ya29.never"}, token_url=ts.token_url)
        write_token(str(b.state), "gmail", "ya29.stale",
                    refresh=ts.issue_refresh(USER))
        ts.fail("token", "invalid_grant", times=5)
        for n in (1, 2):
            assert b.run(["-odq", "-i", "bob@example.org"],
                         message(n)).returncode == 0
        p = b.run(["-q"])
        assert p.returncode == 0, p.err
        assert len(b.queued()) == 2 and b.failed() == []
        b.sink.wait()
        assert b.sink.messages == []
        log = b.logtext()
        assert re.search(r"account gmail: cannot authenticate: .*; its mail "
                         r"stays queued .*bearmail-auth login gmail", log), log
        assert log.count("status=deferred") == 2
        # One refresh attempt for the run, not one per message.
        assert ts.count("token") == 1


def test_token_expiry_mid_run(q):
    from servers.tokenserver import TokenServer
    with TokenServer() as ts:
        first = ts.issue_access(USER)
        state = {"mails": 0, "expired": False}

        class Live:
            def __contains__(self, tok):
                return tok in ts.access_tokens

        def mail(session, arg):
            state["mails"] += 1
            if state["mails"] == 6 and not state["expired"]:
                state["expired"] = True
                del ts.access_tokens[first]
                return "421 4.7.0 session expired, log in again"
            return None
        b = q(sink_kw={"token": Live(), "hooks": {"MAIL": mail}},
              token_url=ts.token_url)
        write_token(str(b.state), "gmail", first,
                    refresh=ts.issue_refresh(USER))
        for n in range(10):
            assert b.run(["-odq", "-i", "bob@example.org"],
                         message(n)).returncode == 0
        p = b.run(["-q"])
        assert p.returncode == 0, p.err
        b.sink.wait()
        assert sorted(b.subjects()) == sorted("message %d" % n
                                              for n in range(10))
        assert ts.count("token") == 1
        auths = [a["ok"] for s in b.sink.sessions for a in s.auth]
        assert auths == [True, False, True], auths
        assert len(b.sink.sessions) == 2
        assert b.queued() == []


def test_drop_after_final_dot_is_logged(q):
    state = {"n": 0}

    def data_end(session, arg):
        state["n"] += 1
        if state["n"] == 1:
            session.close()
            return ""
        return None
    b = q(sink_kw={"hooks": {"DATA_END": data_end}, "strict": False})
    assert b.run(["-odq", "-i", "bob@example.org"],
                 message(1)).returncode == 0
    p = b.run(["-q"])
    assert p.returncode == 0, p.err
    assert len(b.queued()) == 1
    assert "may arrive twice" in b.logtext()
    p = b.run(["-qf"])
    assert b.queued() == []


# ---- kill -9 ------------------------------------------------------------------

def check_whole(b, expected):
    """Deliver what is queued and check every message arrived whole."""
    b.set_port(b.sink.port)
    p = b.run(["-qf"])
    assert p.returncode == 0, p.err
    b.sink.wait()
    for m in b.sink.messages:
        subj = email.message_from_bytes(m.data)["Subject"]
        n = int(subj.split()[-1])
        assert m.data.endswith(("body of message %d\r\n" % n).encode()), m.data
        assert n in expected
    assert b.queued() == []
    # Nothing half-written was ever made visible.
    for name in os.listdir(b.qdir / "tmp") if (b.qdir / "tmp").is_dir() else []:
        assert not (b.qdir / "q" / name).exists()


@pytest.mark.parametrize("when", [0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1])
def test_kill_during_submission(q, free_port, when):
    # The relay is down, so the message goes through the whole on-failure
    # path: rewrite, connect, queue.  Killed at some instant of it.
    b = q(port=free_port())
    big = b"x" * 200 + b"\n"
    data = message(7).replace(b"body of", big * 2000 + b"body of")
    p = b.start(["-i", "bob@example.org"], None)
    p.stdin.write(data)
    p.stdin.close()
    time.sleep(when)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert len(b.queued()) <= 1
    check_whole(b, {7})
    assert len(b.sink.messages) <= 1


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_kill_during_queue_run(q, stage):
    gate = threading.Event()
    hit = threading.Event()
    state = {"n": 0}

    def hook(session, arg):
        state["n"] += 1
        if state["n"] == 3:
            hit.set()
            gate.wait(30)
        return None
    b = q(sink_kw={"hooks": {stage: hook}, "strict": False})
    for n in range(5):
        assert b.run(["-odq", "-i", "bob@example.org"],
                     message(n)).returncode == 0
    r = b.start(["-q"], None)
    assert hit.wait(30)
    r.send_signal(signal.SIGKILL)
    r.wait()
    gate.set()
    b.sink.wait()
    before = sorted(b.subjects())
    assert before == ["message 0", "message 1"], before
    p = b.run(["-qf"])
    assert p.returncode == 0, p.err
    b.sink.wait()
    assert sorted(b.subjects()) == sorted("message %d" % n for n in range(5))
    assert b.queued() == []


# ---- -bs ------------------------------------------------------------------------

def test_bs_queues_on_failure(q, free_port):
    b = q(port=free_port())
    p = b.run(["-bs"], b"HELO x\r\nMAIL FROM:<alice@example.com>\r\n"
              b"RCPT TO:<bob@example.org>\r\nDATA\r\nSubject: x\r\n\r\nx\r\n"
              b".\r\nQUIT\r\n")
    assert p.returncode == 0
    m = re.search(r"\r\n250 2\.0\.0 Ok: queued as (%s)\r\n221 " % ID_RE, p.out)
    assert m, p.out
    assert b.queued() == [m.group(1)]


def test_bs_write_failure_is_451(q):
    # The received message cannot be written (file size limit): a local
    # trouble, so 451, never "message too large".
    import resource
    b = q()

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    data = (b"HELO x\r\nMAIL FROM:<alice@example.com>\r\n"
            b"RCPT TO:<bob@example.org>\r\nDATA\r\nSubject: x\r\n\r\n" +
            (b"y" * 100 + b"\r\n") * 200 + b".\r\nQUIT\r\n")
    p = subprocess.run([b.exe, "-bs"], input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=b.env, timeout=60,
                       preexec_fn=limit)
    out = p.stdout.decode()
    assert re.search(r"\r\n451 4\.3\.0 [^\r]*received message[^\r]*\r\n221 ",
                     out), out
    assert "552" not in out
    assert b.sink.messages == []


def test_no_wait_for_quit_reply(q):
    # A server that never answers QUIT must not hold the caller: with a
    # 60 s timeout configured, waiting for 221 would exceed the 30 s the
    # test allows the run.
    gate = threading.Event()

    def quit_hook(session, arg):
        gate.wait(60)
        return None
    b = q(sink_kw={"hooks": {"QUIT": quit_hook}, "strict": False})
    b.conf.write_text(b.conf.read_text().replace("timeout = 10",
                                                 "timeout = 60"))
    try:
        p = b.run(["-i", "bob@example.org"], message(1), timeout=30)
        assert p.returncode == 0, p.err
        assert b.subjects() == ["message 1"]
    finally:
        gate.set()


# ---- the privilege model ----------------------------------------------------------

def test_unprivileged_submission_through_maildrop(q, builddir):
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: needs root to create a throwaway user")
    if shutil.which("useradd") is None:
        pytest.skip("SKIPPED LOUDLY: no useradd")
    name = "bmq%d" % (os.getpid() % 100000)
    group = name + "d"
    base = tempfile.mkdtemp(prefix="bmqueue-", dir="/tmp")
    try:
        subprocess.run(["groupadd", group], check=True)
        subprocess.run(["useradd", "-M", "-N", "-G", group, "-s",
                        "/bin/sh", name], check=True)
        pw = pwd.getpwnam(name)
        gid = grp.getgrnam(group).gr_gid
        os.chmod(base, 0o755)
        root = pathlib.Path(base)
        # The user runs copies: the build directory may sit below one
        # that only root may enter (a clone in a mktemp -d directory).
        (root / "bin").mkdir(mode=0o755)
        for prog in ("bearmail", "bearmail-drop"):
            shutil.copy2(builddir / "src" / prog, root / "bin" / prog)
        exe = str(root / "bin" / "bearmail")
        assert subprocess.run(["su", "-s", "/bin/sh", name, "-c",
                               "test -x %s" % exe]).returncode == 0
        (root / "state").mkdir()
        sink_q = q(sink_kw={})
        b = Q(root, sink_q.sink, builddir, None)
        # The system layout: queue 0711, q/ 0700, maildrop 1730 root:group.
        for d in ("", "tmp", "q", "failed", "maildrop"):
            (b.qdir / d).mkdir(exist_ok=True)
            os.chmod(b.qdir / d, 0o700)
        os.chmod(b.qdir, 0o711)
        os.chown(b.qdir / "maildrop", 0, gid)
        os.chmod(b.qdir / "maildrop", 0o1730)
        # The OAuth client secret is for the delivery side only: the
        # submitter cannot read it and must not need to.
        client_secret = root / "client_secret"
        client_secret.write_text("test-secret\n")
        os.chmod(client_secret, 0o600)
        b.conf.write_text(b.conf.read_text().replace(
            "client_secret = test-secret",
            "client_secret_file = %s" % client_secret))
        os.chmod(b.conf, 0o644)
        os.chmod(base, 0o755)
        secret = root / "secretfile"
        secret.write_text("[defaults]\nTOPSECRET-CONTENT = 1\n")
        os.chmod(secret, 0o600)
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
               "BEARMAIL_CONFIG": str(b.conf),
               "BEARMAIL_DROP": str(root / "bin" / "bearmail-drop"),
               "BEARMAIL_DROP_DIR": str(b.qdir), "TMPDIR": "/tmp"}

        def as_user(argv, data=b""):
            def demote():
                os.setgroups([gid])
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
            p = subprocess.run(argv, input=data, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env,
                               preexec_fn=demote, timeout=60)
            p.err = p.stderr.decode("utf-8", "replace")
            p.out = p.stdout.decode("utf-8", "replace")
            return p
        p = as_user([exe, "-i", "bob@example.org"], message(1))
        assert p.returncode == 0, p.err
        drops = [n for n in os.listdir(b.qdir / "maildrop")
                 if not n.startswith(".")]
        assert len(drops) == 1 and re.fullmatch(ID_RE, drops[0])
        assert b.queued() == []
        assert b.sink.messages == []
        # The user can neither list the queue nor read the tokens.
        p = as_user([exe, "-bp"])
        assert p.returncode == 77 and "another user" in p.err, p.err
        p = as_user(["cat", str(b.state / "tokens" / "gmail.token")])
        assert p.returncode != 0
        p = as_user(["ls", str(b.qdir / "maildrop")])
        assert p.returncode != 0
        p = as_user(["ls", str(b.qdir / "q")])
        assert p.returncode != 0
        p = as_user([exe, "-q"])
        assert p.returncode == 77, p.err
        # -C cannot read a file the user may not read; nothing of it shows.
        p = as_user([exe, "-C", str(secret), "-i", "bob@example.org"],
                    message(2))
        assert p.returncode != 0
        assert "TOPSECRET" not in p.err and "TOPSECRET" not in p.out
        # The runner (root here) imports and sends it.
        p = b.run(["-q"])
        assert p.returncode == 0, p.err
        b.sink.wait()
        assert [m.rcpts for m in b.sink.messages] == [["bob@example.org"]]
        assert os.listdir(b.qdir / "maildrop") == []
    finally:
        subprocess.run(["userdel", name], stderr=subprocess.DEVNULL)
        subprocess.run(["groupdel", group], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)
