"""The main paths of bearmail, bearmail-auth and bearmail-fetch under
valgrind's memcheck.

Each run is a real one through the fake servers: a refresh through the
token endpoint (bearmail runs bearmail-auth: valgrind follows the child),
a delivery, a refused recipient, a queued message and the queue run that
delivers it.  Any invalid read or write, use of uninitialised memory,
definite or indirect leak, or unclosed descriptor makes valgrind exit 99,
which fails the test; the program's own exit code must be the expected
one.  Skipped, loudly, where valgrind is missing or the build uses
AddressSanitizer (the two cannot run together).
"""

import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

from servers.tokenserver import TokenServer

USER = "alice@example.com"
VG_ERROR = 99

pytestmark = pytest.mark.skipif(
    shutil.which("valgrind") is None or "ASAN_OPTIONS" in os.environ,
    reason="SKIPPED LOUDLY: valgrind is not installed, or this is an "
    "AddressSanitizer build")

VALGRIND = ["valgrind", "-q", "--error-exitcode=%d" % VG_ERROR,
            "--leak-check=full", "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            "--track-fds=yes", "--trace-children=yes",
            "--child-silent-after-fork=yes"]


class Setup:
    def __init__(self, tmp_path, bm_bin, pki, sink, ts):
        self.tmp = tmp_path
        self.bearmail = bm_bin("bearmail")
        self.auth = bm_bin("bearmail-auth")
        self.sink = sink
        self.conf = tmp_path / "bearmail.conf"
        self.conf.write_text("\n".join([
            "[defaults]",
            "queue = on-failure",
            "log = %s" % (tmp_path / "log"),
            "state_dir = %s" % (tmp_path / "state"),
            "queue_dir = %s" % (tmp_path / "queue"),
            "",
            "[acct]",
            "provider = oauth2",
            "user = " + USER,
            "client_id = %s" % ts.client_id,
            "client_secret = %s" % ts.client_secret,
            "token_endpoint = %s" % ts.token_url,
            "scope = https://mail.google.com/",
            "smtp_host = localhost",
            "smtp_port = %d" % sink.port,
            "smtp_tls = starttls",
            "ca_file = %s" % pki.ca.cert,
            "domain = example.com",
            "timeout = 20",
            ""]))
        self.env = dict(os.environ, BEARMAIL_AUTH=self.auth,
                        HOME=str(tmp_path), TMPDIR=str(tmp_path))

    def vg(self, run, argv, data=b"", valgrind=True):
        cmd = (VALGRIND if valgrind else []) + list(argv)
        p = run(cmd, input=data, env=self.env, timeout=300)
        err = p.stderr.decode("utf-8", "replace")
        assert p.returncode != VG_ERROR, "valgrind found errors:\n" + err
        return p, err


@pytest.fixture
def setup(tmp_path, bm_bin, pki, smtp_sink):
    # Access tokens live 60 s: under the refresh margin, so every token
    # bearmail meets is stale and it must refresh through bearmail-auth.
    with TokenServer(user=USER, expires_in=60) as ts:
        class Issued:
            def __contains__(self, token):
                return token in ts.access_tokens

        sink = smtp_sink(tls_mode="starttls", user=USER, token=Issued())
        s = Setup(tmp_path, bm_bin, pki, sink, ts)
        s.ts = ts
        yield s


def test_import_refresh_and_send(setup, run):
    s = setup
    p, err = s.vg(run, [s.auth, "-C", s.conf, "import", "acct"],
                  s.ts.issue_refresh(USER).encode())
    assert p.returncode == 0, err
    before = s.ts.count("token")
    p, err = s.vg(run, [s.bearmail, "-C", s.conf, "-i", "-v", "bob@x.org"],
                  b"Subject: valgrind\n\nbody\n")
    assert p.returncode == 0, err
    s.sink.wait()
    assert [m.rcpts for m in s.sink.messages] == [["bob@x.org"]]
    assert s.ts.count("token") == before + 1


def test_refused_recipient(setup, run):
    s = setup
    s.sink.hooks["RCPT"] = "550 5.1.1 no such user"
    p, err = s.vg(run, [s.auth, "-C", s.conf, "import", "acct"],
                  s.ts.issue_refresh(USER).encode())
    assert p.returncode == 0, err
    p, err = s.vg(run, [s.bearmail, "-C", s.conf, "-i", "nobody@x.org"],
                  b"Subject: x\n\nx\n")
    assert p.returncode == 67, err
    assert s.sink.messages == []


def test_queue_then_deliver(setup, run):
    s = setup
    p, err = s.vg(run, [s.auth, "-C", s.conf, "import", "acct"],
                  s.ts.issue_refresh(USER).encode())
    assert p.returncode == 0, err
    s.sink.hooks["MAIL"] = "421 4.7.0 try again later"
    p, err = s.vg(run, [s.bearmail, "-C", s.conf, "-i", "bob@x.org"],
                  b"Subject: later\n\nx\n")
    assert p.returncode == 0 and "queued as" in err, err
    p, err = s.vg(run, [s.bearmail, "-C", s.conf, "-bp"])
    assert p.returncode == 0 and b"bob@x.org" in p.stdout, err
    del s.sink.hooks["MAIL"]
    p, err = s.vg(run, [s.bearmail, "-C", s.conf, "-q"])
    assert p.returncode == 0, err
    s.sink.wait()
    assert [m.rcpts for m in s.sink.messages] == [["bob@x.org"]]
    p, err = s.vg(run, [s.auth, "-C", s.conf, "status", "acct"])
    assert p.returncode == 0, err


def test_fetch_under_valgrind(builddir, srcdir):
    """bearmail-fetch's IMAP and POP3 paths (both TLS modes, a refused
    then refreshed token, delete) through test_fetch.py's own servers,
    with the program run under memcheck (conftest.py's BM_WRAPPER hook)."""
    # conftest.py's hook wraps the bearmail-auth it runs for a refresh
    # too: tracing children as well would run valgrind under itself.
    wrapper = [a for a in VALGRIND if a != "--trace-children=yes"]
    env = dict(os.environ, BM_WRAPPER=shlex.join(wrapper),
               BM_BUILDDIR=str(builddir), BM_SRCDIR=str(srcdir))
    here = pathlib.Path(__file__).resolve().parent
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(here / "test_fetch.py"), "-k",
         "test_imap_tls_modes_maildir or test_imap_rejected_token_refreshed"
         " or test_imap_delete or test_pop_keep_and_uidl or test_pop_delete"
         " or test_pop_rejected_token_refreshed"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=900)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out[-4000:]
    assert " passed" in out and " deselected" in out, out[-2000:]
