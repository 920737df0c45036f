"""pytest fixtures of the interoperability tier (real Postfix and Dovecot).

Run with `make check-interop` (tests/interop/check.sh), or directly as root:
    BM_BUILDDIR=... BM_SRCDIR=... /usr/bin/python3 -m pytest -rs tests/interop

One stack is started per session (stack.py: Postfix 3.7 and Dovecot 2.3
from Debian in a private temp directory, plus a token endpoint) and
stopped at the end, also when tests fail or are interrupted (SIGTERM); a
later session stops the daemons of a session that was killed outright.

The token endpoint is the project's fake OAuth server,
tests/servers/tokenserver.py's TokenServer, started in this process (the
token_server fixture): Dovecot introspects at its introspect_url, so an
access token it issues to bearmail-auth (token_url, issue_refresh(),
issue_access()) is valid at Postfix and Dovecot, and its fail() makes the
introspection fail.  BM_INTEROP_ENDPOINT=own uses the minimal
tests/interop/introspect.py instead; BM_INTEROP_INTROSPECTION_URL=URL
any other endpoint (then add_token() is refused).
Where it cannot run (not root, packages or the test user missing) every
test is SKIPPED with the reason; set BM_INTEROP_REQUIRE=1 to make that an
error instead (CI, once install.sh is part of the setup).

Fixtures:
  token_server  the started TokenServer (session scope), or None when the
              stack uses another endpoint
  stack       the started stack.Stack (session scope):
                stack.host             "127.0.0.1"
                stack.ports[NAME]      NAME in "submission" (STARTTLS
                                       required, smtpd_tls_security_level=
                                       encrypt), "smtps" (implicit TLS),
                                       "imap" (143-style, STARTTLS),
                                       "imaps" (993-style), "pop3" (110-
                                       style, STLS), "pop3s" (995-style),
                                       "introspect" (HTTP token endpoint)
                stack.ca_file          CA that signed the servers'
                                       certificate (CN/SAN localhost and
                                       IP 127.0.0.1): give it to clients
                                       as their ca_file
                stack.maildir          the one Maildir every recipient of
                                       every domain is delivered to, and
                                       that IMAP/POP3 serve to every user
                stack.introspection_url  where Dovecot validates tokens
                stack.add_token(token, email)   token becomes valid for the
                                       user email (the SASL user must be
                                       exactly that address)
                stack.revoke_token(token)
                stack.introspections() endpoint requests (dicts with
                                       token_len, active, email)
                stack.messages()       raw bytes of delivered messages
                stack.wait_for_message(needle: bytes, timeout=20) -> bytes
                stack.wait_for_log(path, needle: str, timeout=10)
                stack.stop_postfix() / stack.start_postfix()
                                       to test queueing while the server is
                                       down (ports refuse while stopped)
                stack.postfix_log, stack.dovecot_log, stack.log_tail(path)
  account     a fresh Account (function scope): .user (a unique address
              @interop.test), .token (valid for .user), .revoke(), and the
              raw SASL strings .xoauth2(), .oauthbearer(port),
              .sasl(mech, port); a test may revoke its own token without
              touching other tests
  new_account factory: new_account(prefix="user") -> Account
  srcdir, builddir   pathlib.Path of the trees (BM_SRCDIR, BM_BUILDDIR)
  bm_bin      bm_bin("bearmail") -> str path of a built program (fails the
              test if it was not built)
  run         run(argv, input=None, timeout=60, env=None) ->
              subprocess.CompletedProcess (text mode, output captured)

On a failing test the tails of Postfix's and Dovecot's logs are attached
to the report.  The stack directory is removed at the end unless a test
failed or BM_INTEROP_KEEP=1 (its path is then printed).
"""

import itertools
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

_HERE = pathlib.Path(__file__).resolve().parent
SRCDIR = pathlib.Path(os.environ.get("BM_SRCDIR") or _HERE.parent.parent)
BUILDDIR = pathlib.Path(os.environ.get("BM_BUILDDIR") or SRCDIR)

if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import clients  # noqa: E402
import stack as stackmod  # noqa: E402

_STACK = {}


def _required():
    return os.environ.get("BM_INTEROP_REQUIRE", "") not in ("", "0", "no")


def pytest_report_header(config):
    why = stackmod.prerequisites()
    if why:
        return ["interop: CANNOT RUN, tests will %s: %s"
                % ("FAIL" if _required() else "be SKIPPED", "; ".join(why))]
    return ["interop: Postfix + Dovecot stack available"]


def _load_token_server():
    """tests/servers/tokenserver.py's TokenServer class, or None."""
    if os.environ.get("BM_INTEROP_ENDPOINT") == "own":
        return None
    tests = str(SRCDIR / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    try:
        from servers.tokenserver import TokenServer
    except ImportError:
        return None
    return TokenServer


@pytest.fixture(scope="session")
def token_server():
    """A started TokenServer whose introspection the stack's Dovecot uses,
    or None (BM_INTEROP_ENDPOINT=own, or tokenserver.py missing: then
    tests/interop/introspect.py serves)."""
    if os.environ.get("BM_INTEROP_INTROSPECTION_URL"):
        yield None
        return
    cls = _load_token_server()
    if cls is None:
        yield None
        return
    ts = cls(user="user@interop.test").start()
    try:
        yield ts
    finally:
        ts.stop()


@pytest.fixture(scope="session")
def stack(token_server):
    why = stackmod.prerequisites()
    if why:
        msg = "interop stack cannot run here: " + "; ".join(why)
        if _required():
            pytest.fail(msg + " (BM_INTEROP_REQUIRE is set)", pytrace=False)
        pytest.skip(msg)
    # Daemons of a run that was killed before its teardown.
    for old in stackmod.reap_stale(tempfile.gettempdir()):
        sys.stderr.write("interop: stopped a stale stack in %s\n" % old)
    # Not pytest's tmp_path: its /tmp/pytest-of-root is mode 0700 and the
    # postfix, dovecot and test users must reach the files.  A second try
    # covers a port taken by someone else between choosing and binding.
    _stop_on_sigterm()
    for attempt in (1, 2):
        d = tempfile.mkdtemp(prefix="bm-interop-")
        os.chmod(d, 0o755)
        st = stackmod.Stack(os.path.join(d, "s"),
                            introspection_url=os.environ.get(
                                "BM_INTEROP_INTROSPECTION_URL") or None,
                            token_server=token_server)
        _STACK["stack"] = st
        _STACK["root"] = d
        try:
            st.start()
            break
        except stackmod.StackError as e:
            _STACK.pop("stack", None)
            if attempt == 2:
                pytest.fail("interop stack did not start (directory kept: "
                            "%s): %s" % (d, e), pytrace=False)
            sys.stderr.write("interop: stack did not start, retrying: %s\n"
                             % e)
    try:
        yield st
    finally:
        st.stop()
        _STACK.pop("stack", None)


def _stop_on_sigterm():
    """A TERM (make's or CI's timeout) would end Python without running
    fixture teardowns and leave Postfix and Dovecot running: stop the
    stack first, then die of the signal as before."""
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        st = _STACK.pop("stack", None)
        if st is not None:
            st.stop()
            sys.stderr.write("\ninterop: SIGTERM, stack stopped; directory "
                             "kept: %s\n" % _STACK.get("root"))
        signal.signal(signal.SIGTERM, previous if callable(previous)
                      else signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)


def pytest_sessionfinish(session, exitstatus):
    st = _STACK.pop("stack", None)
    if st is not None:
        # Normally stopped by the fixture; this covers an interrupted run.
        st.stop()
    root = _STACK.pop("root", None)
    if root is None:
        return
    keep = os.environ.get("BM_INTEROP_KEEP") or session.testsfailed
    if keep:
        sys.stderr.write("\ninterop: stack directory kept: %s\n" % root)
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    st = _STACK.get("stack")
    if rep.when == "call" and rep.failed and st is not None:
        rep.sections.append(("postfix.log (tail)",
                             st.log_tail(st.postfix_log, 25)))
        rep.sections.append(("dovecot.log (tail)",
                             st.log_tail(st.dovecot_log, 25)))


_serial = itertools.count(1)


@pytest.fixture
def new_account(stack):
    def make(prefix="user"):
        user = "%s%d@interop.test" % (prefix, next(_serial))
        token = "tok-" + secrets.token_urlsafe(24)
        stack.add_token(token, user)
        return clients.Account(stack, user, token)
    return make


@pytest.fixture
def account(new_account):
    return new_account()


@pytest.fixture(scope="session")
def srcdir():
    return SRCDIR


@pytest.fixture(scope="session")
def builddir():
    return BUILDDIR


@pytest.fixture(scope="session")
def bm_bin():
    def find(name):
        for d in ("src", "tests/tools", "."):
            p = BUILDDIR / d / name
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
        pytest.fail("%s not built (looked in %s/src and tests/tools; set "
                    "BM_BUILDDIR)" % (name, BUILDDIR))
    return find


@pytest.fixture(scope="session")
def run():
    def do(argv, input=None, timeout=60, env=None, cwd=None):
        text = not isinstance(input, bytes)
        return subprocess.run(argv, input=input, timeout=timeout, env=env,
                              cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=text)
    return do
