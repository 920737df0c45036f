"""Hostile local input (issue 9): what a local caller, or another local
user, can throw at bearmail: control characters and dashes in arguments,
odd and oversized messages, NUL bytes, thousands of recipients, links
planted in the queue and the token store, lax token file modes; and
where secrets must never show (argv of every process, logs, -v output,
error messages, core files).

Already covered elsewhere (not repeated here): a line break in -F, -f and
a recipient, and a recipient "-oQ..." after -- (test_sendmail.py::
test_injection_refused); hostile files inside the maildrop and queue at
the spool level (tests/unit/test_spool.c); bearmail-auth and bm-cred
against a group-readable or symlinked token file
(test_auth.py::test_group_readable_token_file_refused,
test_symlinked_token_file_refused); the core limit of bearmail-drop,
bearmail-auth and bearmail-fetch (test_spool.py::
test_hardening_visible_in_proc, test_authtest.py::test_no_core_dumps,
test_fetch.py::test_no_core_dumps).
"""

import base64
import email
import email.policy
import os
import re
import resource
import shutil
import subprocess
import time

import pytest

from servers.tokenserver import TokenServer

from test_hostile import GOOD, USER, Prog, write_token

MSG = b"Subject: local\n\nbody\n"


@pytest.fixture
def bear(tmp_path, builddir, pki, bm_bin, smtp_sink):
    for p in ("bearmail", "bearmail-auth", "bearmail-drop"):
        bm_bin(p)

    def make(queue="never", sink_kw=None, **kw):
        skw = {"user": USER, "token": GOOD}
        skw.update(sink_kw or {})
        sink = smtp_sink(**skw)
        b = Prog(tmp_path, builddir, pki, sink.port, queue=queue, **kw)
        b.sink = sink
        return b
    return make


def sent(b):
    b.sink.wait()
    return b.sink.messages


def nothing_sent(b):
    b.sink.wait()
    assert b.sink.messages == []
    for s in b.sink.sessions:
        assert not any(l.upper().startswith(("MAIL", "RCPT", "DATA"))
                       for l in s.lines), s.lines


def parse(m):
    return email.message_from_bytes(m.data, policy=email.policy.compat32)


def head_body(m):
    h, _, body = m.data.partition(b"\r\n\r\n")
    return h, body


def canonical(m):
    for line in m.data.split(b"\r\n"):
        assert len(line) <= 998, len(line)
    assert b"\n" not in m.data.replace(b"\r\n", b"")


# ===== arguments ==========================================================

@pytest.mark.parametrize("argv", [
    ["-F", "Evil\rBcc: victim@example.org", "bob@example.org"],
    ["-F", "Evil\tName", "bob@example.org"],
    ["-F", "Evil\x7fName", "bob@example.org"],
    ["-FEvil\r\nBcc: victim@example.org", "bob@example.org"],
    ["-f", "alice@example.com\n", "bob@example.org"],
    ["-f", "-oi", "bob@example.org"],
    ["-f", "-", "bob@example.org"],
    ["-r", "a@example.com\r\nRCPT TO:<victim@example.org>",
     "bob@example.org"],
    ["-f", "a@example.com> NOTIFY=SUCCESS ORCPT=rfc822;x@y <b@example.com",
     "bob@example.org"],
    ["bob@example.org\r"],
    ["bob@example.org,\nvictim@example.org"],
    ["bob@example.org> NOTIFY=SUCCESS"],
    ["--", "-t"],
    ["--", "-fvictim@example.org", "bob@example.org"],
    ["-a", "gmail\n", "bob@example.org"],
    ["-F", "Evil\nBcc: victim@example.org", "-f", "alice@example.com",
     "bob@example.org"],
], ids=lambda a: repr(a)[:40])
def test_injection_refused_64(bear, argv):
    b = bear()
    p = b.sendmail(argv, b"Subject: x\n\nx\n")
    assert p.returncode == 64, (argv, p.err)
    assert p.err.startswith("bearmail: ") and p.err.count("\n") == 1, p.err
    nothing_sent(b)


# The option is refused (64, nothing sent), but its error quotes the raw
# value, so the "one line" error of bearmail(8) EXIT STATUS becomes two:
# a caller's argument can forge lines in whatever collects stderr.
@pytest.mark.parametrize("argv", [
    ["-V", "env\nbearmail: forged line", "bob@example.org"],
    ["-N", "failure\nbearmail: forged line", "bob@example.org"],
    ["-R", "hdrs\nbearmail: forged line", "bob@example.org"],
    ["-B", "7BIT\nbearmail: forged line", "bob@example.org"],
    ["-b", "x\nbearmail: forged line", "bob@example.org"],
], ids=["-V", "-N", "-R", "-B", "-b"])
def test_option_value_errors_stay_one_line(bear, argv):
    b = bear()
    p = b.sendmail(argv, b"Subject: x\n\nx\n")
    assert p.returncode == 64, (argv, p.err)
    nothing_sent(b)
    assert p.err.startswith("bearmail: ") and p.err.count("\n") == 1, p.err


def test_F_value_starting_with_dash_is_only_a_name(bear):
    """-F takes the next argument whatever it looks like: "-i" is a name
    here, not the option (without -i a lone dot still ends the input)."""
    b = bear()
    p = b.sendmail(["-F", "-i", "bob@example.org"],
                   b"Subject: x\n\nbefore\n.\nafter\n")
    assert p.returncode == 0, p.err
    [m] = sent(b)
    assert "-i" in parse(m)["From"]
    assert b"before" in m.data and b"after" not in m.data
    assert m.rcpts == ["bob@example.org"]


def test_sender_and_recipients_reach_the_wire_clean(bear):
    b = bear()
    p = b.sendmail(["-f", "Alice <alice@example.com>",
                    "Bob <bob@example.org>, carol@example.org"], MSG)
    assert p.returncode == 0, p.err
    [m] = sent(b)
    assert m.sender == "alice@example.com"
    assert m.rcpts == ["bob@example.org", "carol@example.org"]
    for s in b.sink.sessions:
        for l in s.lines:
            if l.startswith(("MAIL", "RCPT")):
                assert re.fullmatch(r"(MAIL FROM|RCPT TO):<[^<>\s]+>"
                                    r"( [A-Z0-9]+=[^\s<>]+)*", l), l


# ===== message shapes ====================================================

def test_only_headers(bear):
    b = bear()
    p = b.sendmail(["-i", "bob@example.org"],
                   b"Subject: only headers\nX-Test: 1")
    assert p.returncode == 0, p.err
    [m] = sent(b)
    canonical(m)
    h = parse(m)
    assert h["Subject"] == "only headers" and h["X-Test"] == "1"
    assert h["Date"] and h["Message-ID"] and h["From"]


def test_no_headers_blank_first_line(bear):
    b = bear()
    p = b.sendmail(["-i", "bob@example.org"], b"\nbody only\nline two\n")
    assert p.returncode == 0, p.err
    [m] = sent(b)
    canonical(m)
    head, body = head_body(m)
    assert body == b"body only\r\nline two\r\n"
    h = parse(m)
    assert h["Date"] and h["Message-ID"] and h["From"]
    assert b"body only" not in head


@pytest.mark.parametrize("first", [
    b"hello, this first line is not a header\n",
    b"no colon at all\n",
    b" leading space: looks like a continuation\n",
    b"Bad Name: spaces are not allowed in a field name\n",
])
def test_first_line_not_a_header_stays_in_the_body(bear, first):
    """A message that starts with text, not a header: that text must
    stay in the body, never be sent as (or glued to) a header line."""
    b = bear()
    p = b.sendmail(["-i", "bob@example.org"], first + b"second line\n")
    assert p.returncode == 0, p.err
    [m] = sent(b)
    canonical(m)
    head, body = head_body(m)
    assert first.strip() not in head, head
    assert body.startswith(first.rstrip(b"\n") + b"\r\n"), body[:200]
    assert body.endswith(b"second line\r\n")
    h = parse(m)
    assert h["Date"] and h["Message-ID"] and h["From"]


def _unfold(value):
    return re.sub(r"\r?\n[ \t]", " ", value)


def test_100k_folded_header(bear):
    b = bear()
    words = ["w%05d" % i for i in range(15000)]          # ~100 KB
    lines, cur = [], "X-Folded:"
    for w in words:
        if len(cur) > 70:
            lines.append(cur)
            cur = " "
        cur += " " + w
    lines.append(cur)
    hdr = "\n".join(lines).encode()
    assert len(hdr) > 100 * 1024
    p = b.sendmail(["-i", "bob@example.org"],
                   b"Subject: fold\n" + hdr + b"\n\nbody\n")
    assert p.returncode == 0, p.err
    [m] = sent(b)
    canonical(m)
    assert _unfold(parse(m)["X-Folded"]).split() == words


@pytest.mark.parametrize("spaces", [True, False])
def test_100k_unfolded_header_line(bear, spaces):
    b = bear()
    if spaces:
        value = " ".join("v%05d" % i for i in range(15000)).encode()
    else:
        value = b"x" * (100 * 1024)
    p = b.sendmail(["-i", "bob@example.org"],
                   b"Subject: long\nX-Long: " + value + b"\n\nbody\n")
    assert p.returncode == 0, p.err
    [m] = sent(b)
    canonical(m)
    head, body = head_body(m)
    assert body == b"body\r\n"
    got = re.search(rb"\r\nX-Long:(.*?)\r\n(?![ \t])", head, re.S).group(1)
    if spaces:
        assert got.replace(b"\r\n", b"").split() == value.split()
    else:
        # Broken with CRLF and one space (bearmail(8)): nothing lost.
        assert got.replace(b"\r\n ", b"").strip() == value


def test_header_section_over_1mb_refused_65(bear):
    b = bear()
    hdrs = b"".join(b"X-H%05d: %s\n" % (i, b"y" * 100) for i in range(11000))
    p = b.sendmail(["-i", "bob@example.org"], b"Subject: big\n" + hdrs +
                   b"\nbody\n")
    assert p.returncode == 65, p.err
    assert re.search(r"(?i)header", p.err), p.err
    nothing_sent(b)


# --- NUL bytes: delivered whole or refused with 65, never cut ----------------

def _nul_outcome(b, p, must_have):
    if p.returncode == 65:
        nothing_sent(b)
        return None
    assert p.returncode == 0, p.err
    [m] = sent(b)
    for piece in must_have:
        assert piece in m.data, (piece, m.data[:300])
    return m


def test_nul_in_body(bear):
    b = bear()
    p = b.sendmail(["-i", "bob@example.org"],
                   b"Subject: nul\n\nbefore\x00after\nnext line\n")
    m = _nul_outcome(b, p, [b"before\x00after\r\nnext line\r\n"])
    if m is not None:
        canonical(m)


def test_nul_in_header(bear):
    b = bear()
    p = b.sendmail(["-i", "bob@example.org"],
                   b"Subject: sub\x00ject tail\nX-After: kept\n\nbody\n")
    _nul_outcome(b, p, [b"sub\x00ject tail\r\n", b"X-After: kept\r\n",
                        b"\r\n\r\nbody\r\n"])


def test_nul_in_extracted_recipients(bear):
    """-t with a NUL inside To: either refused, or every address after
    the NUL still counted (nothing silently dropped at the NUL)."""
    b = bear()
    p = b.sendmail(["-i", "-t"], b"To: bob@example.org\x00, "
                   b"carol@example.org\nSubject: x\n\nbody\n")
    if p.returncode in (64, 65):
        nothing_sent(b)
        return
    assert p.returncode == 0, p.err
    [m] = sent(b)
    assert "carol@example.org" in m.rcpts, m.rcpts


# --- many recipients --------------------------------------------------

def _many_outcome(b, p, n):
    """Either all n in one transaction, or refused whole with a clear
    one-line error (bearmail(8) names no bound; the code has 1000)."""
    if p.returncode == 0:
        [m] = sent(b)
        assert len(m.rcpts) == n
        return
    assert p.returncode in (64, 65), p.err
    assert p.err.count("\n") == 1, p.err
    assert re.search(r"(?i)recipient|address", p.err), p.err
    nothing_sent(b)


def test_10000_recipients_on_the_command_line(bear):
    b = bear()
    rcpts = ["u%05d@example.org" % i for i in range(10000)]
    p = b.sendmail(["-i"] + rcpts, MSG, timeout=120)
    _many_outcome(b, p, 10000)


def test_10000_recipients_with_t(bear):
    b = bear()
    to = b",\n ".join(b"u%05d@example.org" % i for i in range(10000))
    p = b.sendmail(["-i", "-t"], b"To: " + to + b"\nSubject: many\n\nx\n",
                   timeout=120)
    _many_outcome(b, p, 10000)


def test_5000_recipients_in_one_argument(bear):
    # One argument is at most 128 KiB (MAX_ARG_STRLEN): 5000 fit.
    b = bear()
    rcpts = ",".join("u%05d@example.org" % i for i in range(5000))
    p = b.sendmail(["-i", rcpts], MSG, timeout=120)
    _many_outcome(b, p, 5000)


# ===== links planted in the queue ===========================================

def _queue_one(b):
    p = b.sendmail(["-odq", "-i", "bob@example.org"], MSG)
    assert p.returncode == 0, p.err
    [qid] = b.queued()
    return qid


@pytest.mark.parametrize("sub", ["tmp", "q", "maildrop", "failed"])
def test_queue_subdirectory_symlink_refused(bear, tmp_path, sub):
    b = bear(queue="on-failure")
    _queue_one(b)                              # makes the layout
    for name in os.listdir(b.queue_dir / "q"):
        os.unlink(b.queue_dir / "q" / name)
    elsewhere = tmp_path / ("elsewhere-" + sub)
    elsewhere.mkdir(mode=0o700)
    shutil.rmtree(b.queue_dir / sub)
    os.symlink(elsewhere, b.queue_dir / sub)
    p = b.sendmail(["-odq", "-i", "bob@example.org"], MSG)
    assert p.returncode == 73, p.err
    assert sub in p.err, p.err
    assert os.listdir(elsewhere) == []
    p = b.run("bearmail", ["-q"])
    assert p.returncode != 0, p.err
    assert os.listdir(elsewhere) == []
    nothing_sent(b)


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_planted_link_in_q_never_followed(bear, tmp_path, kind):
    """A queue file reached through a link is not sent, and the file it
    points to is neither changed nor removed."""
    b = bear(queue="on-failure")
    qid = _queue_one(b)
    qfile = b.queue_dir / "q" / qid
    outside = tmp_path / "outside"
    os.rename(qfile, outside)
    before = outside.read_bytes()
    if kind == "symlink":
        os.symlink(outside, qfile)
    else:
        os.link(outside, qfile)
    p = b.run("bearmail", ["-qf"])
    nothing_sent(b)
    assert outside.read_bytes() == before
    assert re.search(r"refusing q/%s: a (symbolic link|file with more "
                     r"than one link)" % qid, b.logtext()), b.logtext()
    assert p.returncode == 0, p.err


def _drop_one(b, tmp_path):
    """A real maildrop submission, made by bearmail-drop."""
    sub = (b"bearmail-drop 1\naccount gmail\nsender alice@example.com\n"
           b"body 7bit\nsmtputf8 no\nsize 14\n"
           b"rcpt pending bob@example.org\n\nSubject: x\r\n\r\n")
    sub = sub.replace(b"size 14", b"size %d" % len(b"Subject: x\r\n\r\n"))
    env = {"PATH": "/usr/bin:/bin", "BEARMAIL_DROP_DIR": str(b.queue_dir)}
    p = subprocess.run([str(b.bin / "bearmail-drop")], input=sub, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode().strip()


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_planted_link_in_maildrop_never_followed(bear, tmp_path, kind):
    b = bear(queue="on-failure")
    _queue_one(b)
    for name in os.listdir(b.queue_dir / "q"):
        os.unlink(b.queue_dir / "q" / name)
    did = _drop_one(b, tmp_path)
    dfile = b.queue_dir / "maildrop" / did
    assert dfile.exists()
    outside = tmp_path / "outside-drop"
    os.rename(dfile, outside)
    before = outside.read_bytes()
    if kind == "symlink":
        os.symlink(outside, dfile)
    else:
        os.link(outside, dfile)
    p = b.run("bearmail", ["-qf"])
    nothing_sent(b)
    assert outside.read_bytes() == before
    assert re.search(r"refusing maildrop/%s \(a (symbolic link|file with "
                     r"more than one link)\)" % did, b.logtext()), \
        b.logtext()
    assert p.returncode == 0, p.err


# ===== the token store ======================================================

def test_group_readable_token_file_refused_by_bearmail(bear):
    b = bear(queue="on-failure")
    os.chmod(b.token_path, 0o640)
    p = b.sendmail()
    assert p.returncode == 78, p.err
    assert "group or others" in p.err and "chmod 600" in p.err, p.err
    assert GOOD not in p.err
    nothing_sent(b)
    assert b.queued() == []


@pytest.mark.parametrize("where", ["file", "directory"])
def test_symlinked_token_store_refused_by_bearmail(bear, tmp_path, where):
    """A link to a valid token: if bearmail followed it, the mail would
    go out with that token."""
    b = bear(queue="on-failure")
    if where == "file":
        real = tmp_path / "real.token"
        os.rename(b.token_path, real)
        os.symlink(real, b.token_path)
    else:
        real = tmp_path / "realtokens"
        os.rename(b.state / "tokens", real)
        os.symlink(real, b.state / "tokens")
    p = b.sendmail()
    assert p.returncode == 78, p.err
    assert GOOD not in p.err
    nothing_sent(b)


def _stale_store(b, refresh):
    write_token(b.state, "gmail", "at-stale-local", refresh=refresh,
                expires_in=-30)


@pytest.mark.parametrize("planted", ["gmail.lock", "gmail.tmp"])
def test_symlink_next_to_the_token_never_written_through(bear, tmp_path,
                                                         planted):
    with TokenServer(client_secret="test-secret-hostile") as ts:
        b = bear(token_url=ts.token_url)
        rt = ts.issue_refresh(USER)
        _stale_store(b, rt)
        victim = tmp_path / "victim"
        victim.write_bytes(b"precious\n")
        os.chmod(victim, 0o600)
        os.symlink(victim, b.state / "tokens" / planted)
        p = b.run("bearmail-auth", ["-C", b.conf, "token", "gmail"])
        assert victim.read_bytes() == b"precious\n"
        if planted == "gmail.lock":
            # The lock is opened with O_NOFOLLOW: refused, said so.
            assert p.returncode == 78, p.err
            assert "symbolic link" in p.err, p.err
            assert os.path.islink(b.state / "tokens" / planted)
        else:
            # A leftover .tmp is unlinked and made anew (O_EXCL).
            assert p.returncode == 0, p.err
            assert p.out.strip() in ts.access_tokens
            assert not os.path.lexists(b.state / "tokens" / planted)


def test_hard_linked_token_file_not_written_through(bear, tmp_path):
    """The token file is replaced by rename(2), never rewritten in place:
    another name for the old file keeps the old content."""
    with TokenServer(client_secret="test-secret-hostile") as ts:
        class Live:
            def __contains__(self, tok):
                return tok in ts.access_tokens
        b = bear(token_url=ts.token_url, sink_kw={"token": Live()})
        rt = ts.issue_refresh(USER)
        _stale_store(b, rt)
        other = tmp_path / "other-name"
        os.link(b.token_path, other)
        before = other.read_bytes()
        p = b.sendmail()
        assert p.returncode == 0, p.err
        assert len(sent(b)) == 1
        assert other.read_bytes() == before
        assert os.stat(other).st_nlink == 1
        for tok in ts.access_tokens:
            assert tok.encode() in b.token_path.read_bytes()


# ===== secrets: argv, logs, -v, errors, cores ===============================

def _procs():
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        out[int(pid)] = (cmd, ppid)
    return out


def _environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _core_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max core file size"):
                return line.split()[4:6]
    return None


def _cores_allowed():
    """preexec_fn: start the program with core dumps as allowed as they
    can be (soft limit = hard limit), so what /proc shows afterwards is
    the program's own doing, not the test environment's."""
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))


@pytest.fixture
def cores_possible():
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        pytest.skip("core dumps are off for every process here (hard "
                    "limit 0): nothing to observe")


def _wait_child(parent, name, deadline=20):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for pid, (cmd, ppid) in _procs().items():
            if ppid == parent and name.encode() in cmd.split(b"\0")[0]:
                return pid
        time.sleep(0.02)
    return None


@pytest.mark.unwrapped  # finds bearmail-auth by its argv[0]; reads core limits
def test_secrets_absent_while_a_refresh_is_in_flight(bear, cores_possible):
    """While bearmail waits on bearmail-auth (the endpoint is slow): no
    process's argv (nor any environment we can read) holds the refresh
    token, the access token or the client secret; bearmail has core
    dumps off.  Then none of them shows in -v, the log or the error."""
    with TokenServer(client_secret="test-secret-hostile") as ts:
        class Live:
            def __contains__(self, tok):
                return tok in ts.access_tokens
        b = bear(token_url=ts.token_url, timeout=10,
                 sink_kw={"token": Live()})
        rt = ts.issue_refresh(USER)
        _stale_store(b, rt)
        ts.fail_sleep = 4
        ts.fail("token", "timeout")
        secrets = [rt.encode(), b"at-stale-local", b"test-secret-hostile"]
        proc = b.popen("bearmail", ["-v", "-i", "bob@example.org"],
                       preexec_fn=_cores_allowed)
        try:
            proc.stdin.write(b"Subject: x\n\nbody\n")
            proc.stdin.close()
            proc.stdin = None
            child = _wait_child(proc.pid, "bearmail-auth")
            assert child is not None, "bearmail-auth never started"
            for pid, (cmd, _) in _procs().items():
                for s in secrets:
                    assert s not in cmd, (pid, cmd)
                    assert s not in _environ(pid), pid
            assert _core_limit(proc.pid) == ["0", "0"]
            assert _core_limit(child) == ["0", "0"]
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 75, err
        for s in secrets:
            assert s not in err and s not in out
            assert s.decode() not in b.logtext()
        # And a refresh that works: the new token stays out as well.
        p = b.sendmail(["-v", "-i", "bob@example.org"])
        assert p.returncode == 0, p.err
        assert len(sent(b)) == 1
        for tok in list(ts.access_tokens) + [rt, "test-secret-hostile"]:
            assert tok not in p.err and tok not in p.out
            assert tok not in b.logtext()
        payload = base64.b64encode(
            ("user=%s\x01auth=Bearer " % USER).encode())[:20].decode()
        assert payload not in p.err


def test_bearmail_core_dumps_off(bear, cores_possible):
    """bearmail holds tokens and messages: RLIMIT_CORE 0 while it runs
    (here while it waits for its message on standard input)."""
    b = bear()
    proc = b.popen("bearmail", ["-i", "bob@example.org"],
                   preexec_fn=_cores_allowed)
    try:
        # Poll: until bearmail's main() has run, /proc shows what the
        # test set up; if it never turns to 0 the test fails.
        end = time.monotonic() + 10
        limit = _core_limit(proc.pid)
        while limit != ["0", "0"] and time.monotonic() < end:
            time.sleep(0.02)
            limit = _core_limit(proc.pid)
    finally:
        proc.stdin.write(MSG)
        proc.stdin.close()
        proc.stdin = None
        proc.communicate(timeout=60)
    assert limit == ["0", "0"], limit
    assert proc.returncode == 0


def test_secrets_absent_from_errors_and_log(bear):
    """A refused token: the one-line error and the log say what to do,
    never the token nor the AUTH payload."""
    b = bear(sink_kw={"token": "ya29.some-other"})
    p = b.sendmail(["-v", "-i", "bob@example.org"])
    assert p.returncode == 77, p.err
    payload = base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01"
                                % (USER, GOOD)).encode()).decode()
    for s in (GOOD, payload, payload[:30], payload[-30:]):
        assert s not in p.err and s not in p.out and s not in b.logtext()
