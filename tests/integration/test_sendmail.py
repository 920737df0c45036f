"""bearmail, the sendmail interface, end to end.

Each test writes a configuration (found through BEARMAIL_CONFIG, so the
callers' argv stay verbatim), a token store holding a fresh access token,
and starts the fake SMTP sink on 127.0.0.1; then it runs bearmail with the
argv a real caller uses (see FACTS.md "How callers run sendmail") and
asserts the exact envelope and headers the server received.
"""

import base64
import email
import email.policy
import email.utils
import os
import re
import subprocess

import pytest

from servers.tokenstore import write_token

USER = "alice@example.com"
GOOD = "ya29.good-token"
DOMAIN = "host.example"


class Bear:
    """One configured bearmail and its SMTP sink."""

    def __init__(self, tmp_path, sink, bm_bin, pki, builddir, token_url=None,
                 aliases=None, extra="", acct_extra="", tls="none"):
        self.tmp = tmp_path
        self.sink = sink
        self.exe = bm_bin("bearmail")
        self.log = tmp_path / "bearmail.log"
        self.state = tmp_path / "state"
        self.conf = tmp_path / "bearmail.conf"
        self.state.mkdir(exist_ok=True)
        lines = ["[defaults]",
                 "log = %s" % self.log,
                 "state_dir = %s" % self.state,
                 "queue_dir = %s" % (tmp_path / "queue"),
                 "queue = never"]
        if aliases is not None:
            af = tmp_path / "aliases"
            af.write_text(aliases)
            lines.append("aliases = %s" % af)
        lines += [extra, "", "[gmail]",
                  "provider = google",
                  "user = " + USER,
                  "client_id = test-client",
                  "client_secret = test-secret",
                  "smtp_host = %s" % ("127.0.0.1" if tls == "none"
                                      else "localhost"),
                  "smtp_port = %d" % sink.port,
                  "smtp_tls = %s" % tls,
                  "ca_file = %s" % pki.ca.cert,
                  "domain = " + DOMAIN,
                  "timeout = 10",
                  "token_endpoint = %s" % (token_url or
                                           "http://127.0.0.1:9/token"),
                  acct_extra, ""]
        self.conf.write_text("\n".join(lines))
        self.env = dict(os.environ)
        self.env.update({
            "BEARMAIL_CONFIG": str(self.conf),
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
            "XDG_STATE_HOME": str(tmp_path / "xdgstate"),
            "TMPDIR": str(tmp_path),
            "BEARMAIL_AUTH": str(builddir / "src" / "bearmail-auth"),
            "PATH": "%s:%s" % (tmp_path / "bin", os.environ.get("PATH", "")),
        })
        (tmp_path / "bin").mkdir(exist_ok=True)
        for name in ("sendmail", "mailq", "newaliases"):
            link = tmp_path / "bin" / name
            if not link.exists():
                os.symlink(self.exe, link)
        write_token(str(self.state), "gmail", GOOD)

    def run(self, argv, data=b"", argv0="sendmail", shell=False):
        """Run bearmail as argv0 with argv (list: the arguments after argv[0])."""
        if isinstance(data, str):
            data = data.encode()
        if shell:
            cmd = ["/bin/sh", "-c", argv]
            exe = None
        else:
            cmd = [argv0] + list(argv)
            exe = self.exe
        p = subprocess.run(cmd, executable=exe, input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=self.env, timeout=60)
        p.err = p.stderr.decode("utf-8", "replace")
        p.out = p.stdout.decode("utf-8", "replace")
        self.sink.wait(timeout=10)
        return p

    def only(self):
        assert len(self.sink.messages) == 1, self.sink.messages
        return self.sink.messages[0]

    def logtext(self):
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def bear(tmp_path, smtp_sink, bm_bin, pki, builddir):
    made = []

    def make(sink_kw=None, **kw):
        skw = {"user": USER, "token": GOOD}
        skw.update(sink_kw or {})
        sink = smtp_sink(**skw)
        b = Bear(tmp_path, sink, bm_bin, pki, builddir, **kw)
        made.append(b)
        return b
    return make


def parse(m):
    return email.message_from_bytes(m.data, policy=email.policy.compat32)


def header_block(m):
    return m.data.split(b"\r\n\r\n", 1)[0]


def body(m):
    return m.data.split(b"\r\n\r\n", 1)[1]


def assert_canonical(m):
    """CRLF everywhere, no line over 998 octets."""
    data = m.data
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF sent"
    for line in data.split(b"\r\n"):
        assert len(line) <= 998, "line of %d octets sent" % len(line)


def assert_added(m):
    h = parse(m)
    assert h["Date"] and email.utils.parsedate_tz(h["Date"])
    assert re.fullmatch(r"<[^@<>\s]+@%s>" % re.escape(DOMAIN),
                        h["Message-ID"]), h["Message-ID"]


ALIASES = """# test aliases
root: admin@example.org
postmaster: root
"""


# ---- the callers, argv verbatim ---------------------------------------

def test_debian_cron(bear):
    b = bear(aliases=ALIASES)
    msg = ("From: root (Cron Daemon)\n"
           "To: root\n"
           "Subject: Cron <root@vm> run-parts /etc/cron.daily\n"
           "MIME-Version: 1.0\n"
           "Content-Type: text/plain; charset=UTF-8\n"
           "Content-Transfer-Encoding: 8bit\n"
           "X-Cron-Env: <SHELL=/bin/sh>\n"
           "\n"
           "caf\u00e9 r\u00e9sum\u00e9\n"
           ".\n"
           "after the dot\n").encode()
    p = b.run(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], msg)
    assert p.returncode == 0, p.err
    assert p.err == ""
    m = b.only()
    assert m.sender == USER
    assert m.rcpts == ["admin@example.org"]
    assert "BODY=8BITMIME" in m.sender_params
    assert re.search(r"SIZE=\d+", m.sender_params)
    h = parse(m)
    assert h["From"] == '"Cron Daemon" <%s>' % USER
    assert h["To"] == "root"          # no other header changed
    assert_added(m)
    assert_canonical(m)
    assert body(m) == ("caf\u00e9 r\u00e9sum\u00e9\r\n.\r\n"
                       "after the dot\r\n").encode()
    # One Postfix-like log line per recipient.
    log = b.logtext()
    assert re.search(r"bearmail\[\d+\]: [0-9A-HJKMNP-TV-Z]{10}: to=<admin@example\.org>, "
                     r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, delay=[\d.]+, "
                     r"status=sent \(250 2\.0\.0 OK queued\)" % b.sink.port,
                     log), log


def test_cronie(bear):
    b = bear(aliases=ALIASES)
    msg = (b"From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@vm> job\n"
           b"Content-Type: text/plain; charset=UTF-8\n\noutput\n")
    p = b.run(["-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f",
               "root"], msg)
    assert p.returncode == 0, p.err
    m = b.only()
    assert m.sender == USER             # -f root rewritten (auto)
    assert m.rcpts == ["admin@example.org"]
    assert parse(m)["From"] == '"Cron Daemon" <%s>' % USER
    assert_added(m)


def test_bsd_mailx(bear):
    b = bear()
    msg = (b"To: bob@example.org\nCc: carol@example.net\n"
           b"Bcc: secret@example.com\nSubject: mailx\n\nhello\n")
    p = b.run(["-i", "-t"], msg)
    assert p.returncode == 0, p.err
    m = b.only()
    assert m.sender == USER
    assert m.rcpts == ["bob@example.org", "carol@example.net",
                       "secret@example.com"]
    assert b"Bcc" not in header_block(m)
    assert b"secret@" not in m.data
    h = parse(m)
    assert email.utils.parseaddr(h["From"])[1] == USER   # From added
    assert_added(m)


def test_mutt(bear):
    b = bear()
    msg = (b"Date: Thu, 26 Nov 2026 10:00:00 +0000\n"
           b"From: Alice <alice@example.com>\n"
           b"To: Bob <bob@example.org>, carol@example.net\n"
           b"Message-ID: <mutt.1@example.com>\n"
           b"Subject: mutt\n\n"
           b"From the start of a line\n.\n..\nend\n")
    p = b.run(["-oem", "-oi", "-f", "alice@example.com", "--",
               "bob@example.org", "carol@example.net"], msg)
    assert p.returncode == 0, p.err
    m = b.only()
    assert m.sender == "alice@example.com"
    assert m.rcpts == ["bob@example.org", "carol@example.net"]
    # A complete message passes unchanged apart from line endings.
    assert m.data == msg.replace(b"\n", b"\r\n")


def test_git_send_email(bear):
    b = bear()
    patch = (b"From: Alice <alice@example.com>\n"
             b"To: dev@example.org\n"
             b"Subject: [PATCH] fix the thing\n"
             b"Date: Thu, 26 Nov 2026 10:00:00 +0000\n"
             b"Message-ID: <20261126.1-git@example.com>\n"
             b"MIME-Version: 1.0\n"
             b"Content-Transfer-Encoding: 8bit\n\n"
             b"---\n foo.c | 2 +-\n\n"
             b"diff --git a/foo.c b/foo.c\n@@ -1,3 +1,3 @@\n"
             b" int\n-.\n+..\n.\n \n-- \n2.39.2\n\n")
    p = b.run(["-i", "-f", "alice@example.com", "dev@example.org"], patch,
              argv0=b.exe)
    assert p.returncode == 0, p.err
    m = b.only()
    assert m.sender == "alice@example.com"
    assert m.rcpts == ["dev@example.org"]
    assert m.data == patch.replace(b"\n", b"\r\n")


def test_php_mail(bear):
    b = bear()
    msg = (b"To: bob@example.org\r\nSubject: php\r\n"
           b"X-PHP-Originating-Script: 0:index.php\r\n"
           b"From: Shop <shop@example.com>\r\nBcc: archive@example.com\r\n"
           b"\r\nThanks for your order.\r\n")
    p = b.run("sendmail -t -i -fbounce@example.com", msg, shell=True)
    assert p.returncode == 0, p.err
    m = b.only()
    assert m.sender == "bounce@example.com"
    assert m.rcpts == ["bob@example.org", "archive@example.com"]
    assert b"Bcc" not in header_block(m)
    assert parse(m)["From"] == "Shop <shop@example.com>"
    assert body(m) == b"Thanks for your order.\r\n"


def test_unattended_upgrades(bear):
    b = bear(aliases=ALIASES)
    msg = (b"Subject: unattended-upgrades result for vm: SUCCESS\n"
           b"From: root\nTo: root\n"
           b"Content-Type: text/plain; charset=\"utf-8\"\n\n"
           b"Packages that were upgraded:\n libc6\n")
    p = b.run(["-oi", "-t"], msg)
    assert p.returncode == 0, p.err
    m = b.only()
    assert m.rcpts == ["admin@example.org"]
    assert parse(m)["From"] == USER
    assert_added(m)


def test_fail2ban(bear):
    b = bear(aliases=ALIASES)
    msg = (b"Subject: [Fail2Ban] sshd: banned 192.0.2.7\n"
           b"Date: Thu, 26 Nov 2026 10:00:00 +0000\n"
           b"From: Fail2Ban <fail2ban>\nTo: root\n\n"
           b"Hi,\nThe IP 192.0.2.7 has just been banned.\n.\nignored\n")
    p = b.run(["-f", "fail2ban", "root"], msg)
    assert p.returncode == 0, p.err
    m = b.only()
    assert m.sender == USER
    assert m.rcpts == ["admin@example.org"]
    assert parse(m)["From"] == '"Fail2Ban" <%s>' % USER
    # No -i: the lone dot ended the message.
    assert body(m) == b"Hi,\r\nThe IP 192.0.2.7 has just been banned.\r\n"


def test_null_sender(bear):
    b = bear()
    for argv in (["-f", "<>"], ["-f<>"], ["-r", ""]):
        p = b.run(argv + ["-i", "bob@example.org"], b"Subject: x\n\nx\n")
        assert p.returncode == 0, (argv, p.err)
    assert [m.sender for m in b.sink.messages] == ["", "", ""]
    # The From a message lacks still names the account.
    assert email.utils.parseaddr(parse(b.sink.messages[0])["From"])[1] == USER


def test_f_selects_account(bear):
    b = bear(extra="account = gmail", sink_kw={"user": None})
    conf = b.conf.read_text() + "\n".join([
        "[work]", "provider = google", "user = bob@work.example",
        "from = *@work.example", "client_id = c", "token_endpoint = "
        "http://127.0.0.1:9/token",
        "smtp_host = 127.0.0.1", "smtp_port = %d" % b.sink.port,
        "smtp_tls = none", "domain = " + DOMAIN, ""])
    b.conf.write_text(conf)
    write_token(str(b.state), "work", GOOD, user="bob@work.example")
    p = b.run(["-i", "-f", "sales@work.example", "carol@example.net"],
              b"Subject: x\n\nx\n")
    assert p.returncode == 0, p.err
    m = b.only()
    assert m.sender == "sales@work.example"
    assert m.auth == ("XOAUTH2", "bob@work.example")
    assert email.utils.parseaddr(parse(m)["From"])[1] == "bob@work.example"


def test_logwatch_style(bear):
    b = bear()
    p = b.run(["-t"], b"From: Logwatch\nTo: ops@example.org\nSubject: lw\n\nx\n")
    assert p.returncode == 0, p.err
    assert parse(b.only())["From"] == USER


# ---- recipients ----------------------------------------------------------

def test_t_plus_argv_and_duplicates(bear):
    b = bear()
    msg = (b"To: bob@example.org, \"Carol\" <carol@example.net>\n"
           b"Cc: BOB@example.org\nSubject: dup\n\nx\n")
    p = b.run(["-t", "extra@example.org,bob@example.org",
               "Dave <dave@example.net>"], msg)
    assert p.returncode == 0, p.err
    assert b.only().rcpts == ["extra@example.org", "bob@example.org",
                              "dave@example.net", "carol@example.net"]


def test_aliases_default_and_unqualified(bear):
    b = bear(aliases="root: admin@example.org, ops\nops: ops@example.net\n"
                     "default: catchall@example.org\n")
    p = b.run(["-i", "root", "nosuchuser", "www-data@localhost",
               "x@" + DOMAIN], b"Subject: a\n\nx\n")
    assert p.returncode == 0, p.err
    # x@DOMAIN is a real address: `domain` qualifies names, it is not
    # this host's name.
    assert b.only().rcpts == ["admin@example.org", "ops@example.net",
                              "catchall@example.org", "x@" + DOMAIN]


def test_unqualified_gets_domain(bear):
    b = bear()
    p = b.run(["-i", "someone", "root"], b"Subject: a\n\nx\n")
    assert p.returncode == 0, p.err
    assert b.only().rcpts == ["someone@" + DOMAIN, "root@" + DOMAIN]


def test_newaliases_checks(bear):
    b = bear(aliases=ALIASES)
    p = b.run([], argv0="newaliases")
    assert p.returncode == 0, p.err
    assert "2 aliases" in p.out
    (b.tmp / "aliases").write_text("root: a@x\nbroken line\n")
    p = b.run(["-bi"])
    assert p.returncode == 78
    assert re.search(r"aliases:2: ", p.err), p.err


# ---- the message -----------------------------------------------------------

@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"mixed"])
def test_line_endings(bear, eol):
    b = bear()
    lines = [b"Subject: eol", b"To: bob@example.org", b"", b"one", b"two",
             b"three"]
    if eol == b"mixed":
        data = b"Subject: eol\r\nTo: bob@example.org\n\r\none\ntwo\r\nthree\n"
    else:
        data = eol.join(lines) + eol
    p = b.run(["-t", "-i"], data)
    assert p.returncode == 0, p.err
    m = b.only()
    assert_canonical(m)
    assert body(m) == b"one\r\ntwo\r\nthree\r\n"
    assert m.data.startswith(b"Subject: eol\r\nTo: bob@example.org\r\n")


def test_mbox_from_line_dropped(bear):
    b = bear()
    p = b.run(["-i", "bob@example.org"],
              b"From alice@example.com Thu Nov 26 10:00:00 2026\n"
              b"Subject: mbox\n\nbody\n")
    assert p.returncode == 0, p.err
    assert b.only().data.startswith(b"Subject: mbox\r\n")


def test_dot_with_and_without_i(bear):
    b = bear()
    msg = b"Subject: dots\n\nbefore\n.\nafter\n"
    p = b.run(["bob@example.org"], msg)
    assert p.returncode == 0, p.err
    p = b.run(["-i", "bob@example.org"], msg)
    assert p.returncode == 0, p.err
    p = b.run(["-oi", "bob@example.org"], msg)
    assert p.returncode == 0, p.err
    ms = b.sink.messages
    assert len(ms) == 3
    assert body(ms[0]) == b"before\r\n"
    assert body(ms[1]) == b"before\r\n.\r\nafter\r\n"
    assert body(ms[2]) == b"before\r\n.\r\nafter\r\n"
    # On the wire the dot line was stuffed.
    assert b"\r\n..\r\nafter" in ms[1].raw


def test_long_line_delivered_intact(bear):
    b = bear()
    long_line = ("x" * 1500 + " caf\u00e9 " + "y" * 2500 + " ").encode()
    msg = (b"Subject: long\nContent-Type: text/plain; charset=utf-8\n\n"
           b"short\n" + long_line + b"\nend\n")
    p = b.run(["-i", "bob@example.org"], msg)
    assert p.returncode == 0, p.err
    m = b.only()
    assert_canonical(m)
    h = parse(m)
    assert h["Content-Transfer-Encoding"] == "quoted-printable"
    decoded = h.get_payload(decode=True)
    assert decoded == b"short\r\n" + long_line + b"\r\nend\r\n" or \
        decoded.replace(b"\r\n", b"\n") == b"short\n" + long_line + b"\nend\n"
    # A base64 attachment line is broken instead, which base64 ignores.
    blob = base64.b64encode(os.urandom(3000))
    msg = (b"Subject: b64\nMIME-Version: 1.0\nContent-Type: application/"
           b"octet-stream\nContent-Transfer-Encoding: base64\n\n" + blob + b"\n")
    p = b.run(["-i", "bob@example.org"], msg)
    assert p.returncode == 0, p.err
    m = b.sink.messages[1]
    assert_canonical(m)
    assert body(m).replace(b"\r\n", b"") == blob


def test_long_header_folded(bear):
    b = bear()
    refs = b" ".join(b"<%d.ref@example.com>" % i for i in range(100))
    p = b.run(["-i", "bob@example.org"],
              b"Subject: fold\nReferences: " + refs + b"\n\nx\n")
    assert p.returncode == 0, p.err
    m = b.only()
    assert_canonical(m)
    assert parse(m)["References"].replace("\r\n", "").split() == \
        refs.decode().split()


def test_raw_8bit_headers(bear):
    b = bear()
    subj = "Subject: \u00dcbersicht f\u00fcr J\u00fcrgen".encode()
    p = b.run(["-i", "bob@example.org"], subj + b"\n\nplain ascii\n")
    assert p.returncode == 0, p.err
    m = b.only()
    assert m.data.startswith(subj + b"\r\n")
    assert "BODY=8BITMIME" in m.sender_params


def test_seven_bit_has_no_body_param(bear):
    b = bear()
    p = b.run(["-i", "bob@example.org"], b"Subject: x\n\nascii\n")
    assert p.returncode == 0, p.err
    assert "BODY=8BITMIME" not in b.only().sender_params


def test_dsn_parameters(bear):
    b = bear(sink_kw={"capabilities": ["PIPELINING", "SIZE 35882577",
                                       "8BITMIME", "DSN",
                                       "ENHANCEDSTATUSCODES"]})
    p = b.run(["-i", "-N", "failure,delay", "-R", "hdrs", "-V", "env+id",
               "bob@example.org"], b"Subject: dsn\n\nx\n")
    assert p.returncode == 0, p.err
    m = b.only()
    assert "RET=HDRS" in m.sender_params
    assert "ENVID=env+2Bid" in m.sender_params
    assert "NOTIFY=FAILURE,DELAY" in m.rcpt_params[0]


def test_starttls_with_ca_file(bear):
    b = bear(tls="starttls", sink_kw={"tls_mode": "starttls"})
    p = b.run(["-i", "bob@example.org"], b"Subject: tls\n\nx\n")
    assert p.returncode == 0, p.err
    assert b.only().rcpts == ["bob@example.org"]
    assert b.sink.sessions[0].tls


# ---- -bs -----------------------------------------------------------------

def test_bs_dialogue(bear):
    b = bear()
    dialogue = (b"EHLO client.example\r\n"
                b"VRFY root\r\n"
                b"MAIL FROM:<alice@example.com> SIZE=100\r\n"
                b"RCPT TO:<bob@example.org>\r\n"
                b"RCPT TO:<root>\r\n"
                b"DATA\r\n"
                b"Subject: from symfony\r\nTo: bob@example.org\r\n"
                b"Bcc: hidden@example.org\r\n\r\n"
                b"..leading dot\r\nline\r\n.\r\n"
                b"RSET\r\nNOOP\r\nQUIT\r\n")
    p = b.run(["-bs"], dialogue)
    assert p.returncode == 0, p.err
    codes = [l[:3] for l in p.out.split("\r\n") if l and l[3:4] == " "]
    assert codes == ["220", "250", "252", "250", "250", "250", "354", "250",
                     "250", "250", "221"], p.out
    m = b.only()
    assert m.sender == "alice@example.com"
    assert m.rcpts == ["bob@example.org", "root@" + DOMAIN]
    assert body(m) == b".leading dot\r\nline\r\n"
    assert b"Bcc" not in header_block(m)
    assert_added(m)


def test_bs_failure_is_reported_in_smtp(bear):
    b = bear(sink_kw={"hooks": {"RCPT": "550 5.1.1 no such user"}})
    p = b.run(["-bs"], b"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\n"
              b"DATA\r\nSubject: x\r\n\r\nx\r\n.\r\nQUIT\r\n")
    assert p.returncode == 0
    assert re.search(r"\r\n550 5\.1\.1 .*\r\n221 ", p.out), p.out
    assert b.sink.messages == []


# ---- failures and exit codes -----------------------------------------------

@pytest.mark.parametrize("argv", [
    ["-d", "root"], ["-bv", "root"], ["-qfoo"], ["--bogus", "root"],
    ["-N", "maybe", "root"], ["-B", "9BIT", "root"], ["-R", "all", "root"],
    ["-e", "root"], ["-f"],
])
def test_bad_flags_exit_64(bear, argv):
    b = bear()
    p = b.run(argv, b"Subject: x\n\nx\n")
    assert p.returncode == 64, (argv, p.err)
    assert p.err.count("\n") == 1 and p.err.startswith("bearmail: ")
    assert b.sink.messages == []


@pytest.mark.parametrize("argv", [
    ["-oem", "-oee", "-oep", "-oeq", "-oew", "-oQ/x", "-O", "a=b", "-A", "c",
     "-G", "-h", "17", "-L", "tag", "-m", "-n", "-x", "-q30m", "-X",
     "/tmp/nope", "-bm", "-U", "bob@example.org"],
])
def test_ignored_flags_accepted(bear, argv):
    b = bear()
    p = b.run(argv, b"Subject: x\n\nx\n")
    assert p.returncode == 0, p.err
    assert not os.path.exists("/tmp/nope")
    assert b.only().rcpts == ["bob@example.org"]


def test_injection_refused(bear):
    b = bear()
    for argv in (["-F", "Evil\nBcc: victim@example.org", "bob@example.org"],
                 ["-f", "a@x\r\nRCPT TO:<v@example.org>", "bob@example.org"],
                 ["bob@example.org\nBcc: v@example.org"],
                 ["--", "-oQ/tmp/evil"]):
        p = b.run(argv, b"Subject: x\n\nx\n")
        assert p.returncode == 64, (argv, p.err)
    assert b.sink.messages == []


def test_unknown_account(bear):
    b = bear()
    p = b.run(["-a", "nosuch", "bob@example.org"], b"Subject: x\n\nx\n")
    assert p.returncode == 64, p.err
    assert "nosuch" in p.err
    p = b.run(["--account=gmail", "bob@example.org"], b"Subject: x\n\nx\n")
    assert p.returncode == 0, p.err


def test_no_recipients_64(bear):
    b = bear()
    p = b.run([], b"Subject: x\n\nx\n")
    assert p.returncode == 64
    p = b.run(["-t"], b"Subject: no To\n\nx\n")
    assert p.returncode == 64
    assert "no recipients" in p.err
    assert b.sink.messages == []


def test_rcpt_5xx_exit_67_nothing_sent(bear):
    def rcpt(session, arg):
        return "550 5.1.1 <nobody@example.org>: no such user" \
            if "nobody" in arg else None
    b = bear(sink_kw={"hooks": {"RCPT": rcpt}})
    p = b.run(["-i", "bob@example.org", "nobody@example.org"],
              b"Subject: x\n\nx\n")
    assert p.returncode == 67, p.err
    assert p.err.startswith("bearmail: ") and p.err.count("\n") == 1
    assert b.sink.messages == []
    assert "status=bounced" in b.logtext()


def test_4xx_exit_75(bear):
    b = bear(sink_kw={"hooks": {"MAIL": "451 4.3.0 try again later"}})
    p = b.run(["-i", "bob@example.org"], b"Subject: x\n\nx\n")
    assert p.returncode == 75, p.err
    assert b.sink.messages == []
    assert "status=deferred" in b.logtext()


def test_rcpt_4xx_exit_75(bear):
    b = bear(sink_kw={"hooks": {"RCPT": "452 4.2.2 mailbox full"}})
    p = b.run(["-i", "bob@example.org"], b"Subject: x\n\nx\n")
    assert p.returncode == 75, p.err
    assert b.sink.messages == []


def test_connection_refused_75(bear, free_port):
    b = bear()
    conf = b.conf.read_text().replace("smtp_port = %d" % b.sink.port,
                                      "smtp_port = %d" % free_port())
    b.conf.write_text(conf)
    p = b.run(["-i", "bob@example.org"], b"Subject: x\n\nx\n")
    assert p.returncode == 75, p.err


def test_queue_empty(bear):
    b = bear()
    for argv, argv0 in ((["-bp"], "sendmail"), ([], "mailq")):
        p = b.run(argv, argv0=argv0)
        assert p.returncode == 0, (argv0, argv, p.err)
        assert p.out == "Mail queue is empty\n", p.out
    p = b.run(["-q"])
    assert p.returncode == 0, p.err
    p = b.run(["-bp"])
    assert p.out == "Mail queue is empty\n", p.out
    p = b.run(["-qI0000000000"])
    assert p.returncode == 64 and "no such message" in p.err, p.err


def test_help_and_version(bear):
    b = bear()
    p = b.run(["--help"])
    assert p.returncode == 0 and "-t" in p.out
    p = b.run(["--version"])
    assert p.returncode == 0 and p.out.startswith("bearmail ")


# ---- tokens ------------------------------------------------------------------

def test_rejected_token_refreshed_once(bear, tmp_path, builddir):
    from servers.tokenserver import TokenServer
    if not (builddir / "src" / "bearmail-auth").exists():
        pytest.skip("bearmail-auth not built yet")
    with TokenServer() as ts:
        class Live:
            def __contains__(self, tok):
                return tok in ts.access_tokens
        b = bear(sink_kw={"token": Live()}, token_url=ts.token_url)
        rt = ts.issue_refresh(USER)
        # The store holds a token that looks fresh but the server refuses.
        write_token(str(b.state), "gmail", "ya29.revoked", refresh=rt)
        p = b.run(["-i", "-v", "bob@example.org"], b"Subject: x\n\nx\n")
        assert p.returncode == 0, p.err
        assert ts.count("token") == 1
        auths = [a for s in b.sink.sessions for a in s.auth]
        assert [a["ok"] for a in auths] == [False, True]
        assert "ya29.revoked" not in p.err
        for tok in ts.access_tokens:
            assert tok not in p.err
        assert rt not in p.err
        assert b.only().rcpts == ["bob@example.org"]


def test_secrets_absent_from_verbose(bear):
    b = bear()
    p = b.run(["-v", "-i", "bob@example.org"], b"Subject: x\n\nx\n")
    assert p.returncode == 0, p.err
    assert "AUTH" in p.err                      # the transcript is there
    payload = base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01"
                                % (USER, GOOD)).encode()).decode()
    for secret in (GOOD, payload, payload[:40]):
        assert secret not in p.err
        assert secret not in p.out
        assert secret not in b.logtext()


def test_auth_refused_exit_77(bear):
    b = bear(sink_kw={"token": "ya29.other"})
    # No refresh token: refusing is final.
    p = b.run(["-i", "bob@example.org"], b"Subject: x\n\nx\n")
    assert p.returncode == 77, p.err
    assert "bearmail-auth login" in p.err
    assert GOOD not in p.err
    assert b.sink.messages == []


# ---- size and memory -------------------------------------------------------

@pytest.mark.unwrapped  # measures the program's own resident set
def test_30mb_message_constant_memory(bear):
    seen = {}

    def data_end(session, arg):
        # bearmail is waiting for this reply: its peak so far is the peak.
        with open("/proc/%d/status" % seen["pid"]) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    seen["hwm_kb"] = int(line.split()[1])
        return None
    b = bear(sink_kw={"hooks": {"DATA_END": data_end}})
    line = b"0123456789" * 7 + b"abcdef\n"
    n = 30 * 1024 * 1024 // len(line)
    proc = subprocess.Popen(["sendmail", "-t", "-i"], executable=b.exe,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=b.env)
    seen["pid"] = proc.pid
    out, err = proc.communicate(b"Subject: big\nTo: bob@example.org\n\n" +
                                line * n, timeout=300)
    assert proc.returncode == 0, err
    b.sink.wait()
    m = b.only()
    assert body(m) == line.replace(b"\n", b"\r\n") * n
    # The message is 30 MiB; bearmail's resident set stays a few MiB.
    assert 0 < seen["hwm_kb"] < 16 * 1024, seen


def test_size_declared_and_server_limit(bear):
    b = bear(sink_kw={"capabilities": ["SIZE 1000", "8BITMIME"]})
    p = b.run(["-i", "bob@example.org"],
              b"Subject: too big\n\n" + b"x" * 500 + b"\n" + b"y" * 600 + b"\n")
    assert p.returncode == 65, p.err
    assert b.sink.messages == []


def test_bs_two_transactions(bear):
    b = bear()
    p = b.run(["-bs"], b"EHLO x\r\n"
              b"MAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"
              b"Subject: one\r\n\r\n1\r\n.\r\n"
              b"MAIL FROM:<root>\r\nRCPT TO:<carol@example.net>\r\nDATA\r\n"
              b"Subject: two\r\n\r\n2\r\n.\r\nQUIT\r\n")
    assert p.returncode == 0, p.err
    ms = b.sink.messages
    assert [(m.sender, m.rcpts) for m in ms] == [
        ("", ["bob@example.org"]), (USER, ["carol@example.net"])]
    assert [body(m) for m in ms] == [b"1\r\n", b"2\r\n"]


def test_oauthbearer(bear):
    b = bear(acct_extra="auth = oauthbearer")
    p = b.run(["-i", "bob@example.org"], b"Subject: x\n\nx\n")
    assert p.returncode == 0, p.err
    assert b.only().auth == ("OAUTHBEARER", USER)


def test_password_provider(bear, tmp_path, smtp_sink, bm_bin, pki, builddir):
    sink = smtp_sink(user=USER, password="s3cret pass")
    b = Bear(tmp_path, sink, bm_bin, pki, builddir)
    conf = b.conf.read_text()
    conf = re.sub(r"provider = google\n", "provider = password\n"
                  "password_command = printf 's3cret pass\\\\n'\n", conf)
    conf = re.sub(r"(client_id|client_secret|token_endpoint) = .*\n", "",
                  conf)
    b.conf.write_text(conf)
    p = b.run(["-v", "-i", "bob@example.org"], b"Subject: x\n\nx\n")
    assert p.returncode == 0, p.err
    assert b.only().auth == ("PLAIN", USER)
    assert "s3cret" not in p.err


def test_real_git_send_email(bear, tmp_path):
    probe = subprocess.run(["git", "send-email", "--help"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if b"not a git command" in probe.stderr + probe.stdout:
        pytest.skip("git send-email is not installed (Debian: git-email)")
    b = bear()
    repo = tmp_path / "repo"
    repo.mkdir()
    env = dict(b.env, GIT_AUTHOR_NAME="Alice", GIT_COMMITTER_NAME="Alice",
               GIT_AUTHOR_EMAIL=USER, GIT_COMMITTER_EMAIL=USER)

    def git(*args):
        r = subprocess.run(["git", "-C", str(repo)] + list(args), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert r.returncode == 0, r.stderr
        return r.stdout.decode()
    git("init", "-q")
    (repo / "f.txt").write_text("a\n.\nb\n")
    git("add", "f.txt")
    git("commit", "-q", "-m", "add f")
    patch = git("format-patch", "-1", "-o", str(tmp_path)).strip()
    git("send-email", "--smtp-server=" + b.exe, "--to=dev@example.org",
        "--from=Alice <%s>" % USER, "--confirm=never", "--no-validate",
        "--quiet", patch)
    b.sink.wait()
    m = b.only()
    # git send-email copies the patch's author (here the sender) by default.
    assert sorted(m.rcpts) == sorted(["dev@example.org", USER])
    assert b"\r\n+.\r\n" in m.data


def test_message_fd_not_inherited(bear, tmp_path, smtp_sink, bm_bin, pki,
                                  builddir):
    # The temporary copy of the message must not leak into the programs
    # bearmail runs (password_command, bearmail-auth): it is close-on-exec.
    sink = smtp_sink(user=USER, password="pw")
    b = Bear(tmp_path, sink, bm_bin, pki, builddir)
    fds = tmp_path / "fds.txt"
    script = tmp_path / "pw.sh"
    script.write_text("#!/bin/sh\nls -l /proc/$$/fd/ > %s 2>&1\n"
                      "echo pw\n" % fds)
    script.chmod(0o755)
    conf = b.conf.read_text()
    conf = re.sub(r"provider = google\n", "provider = password\n"
                  "password_command = %s\n" % script, conf)
    conf = re.sub(r"(client_id|client_secret|token_endpoint) = .*\n", "",
                  conf)
    b.conf.write_text(conf)
    p = b.run(["-i", "bob@example.org"], b"Subject: x\n\nx\n")
    assert p.returncode == 0, p.err
    listing = fds.read_text()
    assert " 0 -> " in listing, listing         # the listing worked
    assert "bearmail." not in listing, listing
    assert b.only().rcpts == ["bob@example.org"]
