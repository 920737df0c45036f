"""bearmail-drop, the maildrop writer, as a black box.

Run as the current user with BEARMAIL_DROP_DIR (honoured only because the
program is not set-group-ID here).  The runner's side of the maildrop
(import, hostile files) is covered by tests/unit/test_spool.c.
"""

import os
import pty
import re
import stat
import subprocess
import time

import pytest

ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{10}$")

SUBMISSION = (b"bearmail-drop 1\n"
              b"account gmail\n"
              b"sender alice@example.com\n"
              b"body 8bitmime\n"
              b"smtputf8 no\n"
              b"notify failure,delay\n"
              b"ret hdrs\n"
              b"envid QQ314159\n"
              b"size 24\n"
              b"rcpt pending bob@example.org\n"
              b"rcpt pending \"carol x\"@example.net\n"
              b"\n"
              b"Subject: hi\r\n\r\nbody \xc3\xa9\r\n")


@pytest.fixture
def queue(tmp_path):
    q = tmp_path / "queue"
    (q / "maildrop").mkdir(parents=True)
    os.chmod(q, 0o700)
    os.chmod(q / "maildrop", 0o700)
    return q


def drop_env(queue, **extra):
    env = {"PATH": "/usr/bin:/bin", "BEARMAIL_DROP_DIR": str(queue)}
    env.update(extra)
    return env


def visible(queue):
    return sorted(n for n in os.listdir(queue / "maildrop")
                  if not n.startswith("."))


def everything(queue):
    return sorted(os.listdir(queue / "maildrop"))


def test_drop_writes_one_whole_file(bm_bin, run, queue):
    r = run([bm_bin("bearmail-drop")], input=SUBMISSION, env=drop_env(queue))
    assert r.returncode == 0, r.stderr
    qid = r.stdout.decode().strip()
    assert ID_RE.match(qid), r.stdout
    assert everything(queue) == [qid]
    path = queue / "maildrop" / qid
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    assert stat.S_IMODE(st.st_mode) == 0o644
    assert st.st_uid == os.getuid()
    # Re-serialised from what was parsed: here, the very same bytes.
    assert path.read_bytes() == SUBMISSION


def test_two_drops_get_two_names(bm_bin, run, queue):
    ids = set()
    for _ in range(5):
        r = run([bm_bin("bearmail-drop")], input=SUBMISSION,
                env=drop_env(queue))
        assert r.returncode == 0, r.stderr
        ids.add(r.stdout.decode().strip())
    assert len(ids) == 5
    assert visible(queue) == sorted(ids)
    # Queue IDs sort by time: later submissions never sort first.
    assert sorted(ids)[0] == min(ids)


@pytest.mark.parametrize("args", [["-C", "/etc/passwd"], ["x"], ["--help"],
                                  ["-q"]])
def test_no_arguments_accepted(bm_bin, run, queue, args):
    r = run([bm_bin("bearmail-drop")] + args, input=SUBMISSION,
            env=drop_env(queue))
    assert r.returncode == 64
    assert "usage" in r.stderr.decode()
    assert everything(queue) == []


def test_refuses_a_terminal(bm_bin, queue):
    master, slave = pty.openpty()
    try:
        p = subprocess.run([bm_bin("bearmail-drop")], stdin=slave,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=drop_env(queue), timeout=30)
    finally:
        os.close(slave)
        os.close(master)
    assert p.returncode == 64
    assert b"terminal" in p.stderr
    assert everything(queue) == []


BAD = [
    (b"", "empty input"),
    (b"bearmail-queue 1\nid 0000000000\n\n", "a queue file, not a drop"),
    (SUBMISSION.replace(b"size 24\n", b"size 24\nattempts 0\n"),
     "runner-only field"),
    (SUBMISSION.replace(b"rcpt pending bob", b"rcpt done bob"),
     "recipient marked done"),
    (SUBMISSION.replace(b"account gmail\n", b""), "no account"),
    (SUBMISSION.replace(b"sender alice@example.com",
                        b"sender alice@example.com\r"), "CR in a value"),
    (SUBMISSION[:-1], "message one octet short"),
    (SUBMISSION + b"x", "message one octet long"),
    (SUBMISSION.replace(b"size 24", b"size 999999999999"), "size too large"),
    (b"bearmail-drop 1\naccount " + b"a" * (300 * 1024), "envelope too large"),
]


@pytest.mark.parametrize("data,what", BAD, ids=[w for _, w in BAD])
def test_bad_submissions_leave_nothing(bm_bin, run, queue, data, what):
    r = run([bm_bin("bearmail-drop")], input=data, env=drop_env(queue))
    assert r.returncode == 65, (what, r.returncode, r.stderr)
    assert r.stdout == b""
    assert r.stderr.decode().startswith("bearmail-drop: ")
    assert everything(queue) == [], what


def test_missing_maildrop(bm_bin, run, tmp_path):
    r = run([bm_bin("bearmail-drop")], input=SUBMISSION,
            env=drop_env(tmp_path / "nowhere"))
    assert r.returncode == 73
    assert "maildrop" in r.stderr.decode()


def test_world_writable_maildrop_refused(bm_bin, run, queue):
    os.chmod(queue / "maildrop", 0o777)
    r = run([bm_bin("bearmail-drop")], input=SUBMISSION, env=drop_env(queue))
    assert r.returncode == 73
    assert everything(queue) == []


def test_relative_override_ignored(bm_bin, run, queue, tmp_path):
    # Only an absolute BEARMAIL_DROP_DIR counts; a relative one falls back
    # to the compiled-in directory, which does not exist in the test tree.
    os.chdir(tmp_path)
    r = run([bm_bin("bearmail-drop")], input=SUBMISSION,
            env=drop_env(queue, BEARMAIL_DROP_DIR="queue"))
    assert r.returncode != 0
    assert everything(queue) == []


def wait_for(cond, what):
    for _ in range(500):
        if cond():
            return
        time.sleep(0.01)
    pytest.fail("gave up waiting for " + what)


def test_kill9_mid_submission_leaves_no_message(bm_bin, queue):
    header, body = SUBMISSION.split(b"\n\n", 1)
    for cut in (10, len(header) + 2, len(header) + 2 + 5):
        p = subprocess.Popen([bm_bin("bearmail-drop")], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=drop_env(queue))
        p.stdin.write(SUBMISSION[:cut])
        p.stdin.flush()
        if cut > len(header) + 2:
            # The temporary dot-file appears once the envelope is valid.
            wait_for(lambda: any(n.startswith(".")
                                 for n in everything(queue)),
                     "the temporary file")
        p.kill()
        p.wait()
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()
        assert visible(queue) == [], cut
    # What a killed drop leaves is a dot-file, which the runner ignores
    # (and removes after a day).
    assert all(n.startswith(".") for n in everything(queue))


@pytest.mark.unwrapped  # looks at the program's own descriptors
def test_hardening_visible_in_proc(bm_bin, queue):
    """While it waits on stdin: no inherited descriptors, no core dumps."""
    r, w = os.pipe()
    extra = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(extra, True)
    p = subprocess.Popen([bm_bin("bearmail-drop")], stdin=r,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=drop_env(queue, BEARMAIL_CONFIG="/etc/shadow"),
                         pass_fds=(extra,))
    os.close(r)
    try:
        fddir = "/proc/%d/fd" % p.pid
        maildrop = str(queue / "maildrop")

        def links():
            out = {}
            for fd in os.listdir(fddir):
                try:
                    out[int(fd)] = os.readlink(os.path.join(fddir, fd))
                except OSError:
                    pass
            return out
        try:
            # Ready once it holds the maildrop: it closed the rest before.
            wait_for(lambda: maildrop in links().values(), "the maildrop fd")
            fds = links()
            limits = open("/proc/%d/limits" % p.pid).read()
        except PermissionError:
            pytest.skip("cannot look into a non-dumpable process")
        assert fds.get(extra) != "/dev/null", fds
        assert sorted(fds) == [0, 1, 2, 3], fds
        core = [ln for ln in limits.splitlines()
                if ln.startswith("Max core file size")]
        assert core and core[0].split()[4:6] == ["0", "0"], core
    finally:
        os.write(w, SUBMISSION)
        os.close(w)
        os.close(extra)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert visible(queue) == [out.decode().strip()]
