"""pytest fixtures shared by bearmail's integration tests.

Environment: BM_BUILDDIR (where `make` ran; programs in src/, test tools
in tests/tools/) and BM_SRCDIR (the source tree).  Both default to the
source tree this file sits in, so a plain in-tree build works too.  The
srcdir's tests/ is put on sys.path, so tests can `from servers.fakeserver
import ...` and `from servers.pki import PKI`.

Fixtures:
  srcdir, builddir   pathlib.Path of the trees (session scope)
  bm_bin             bm_bin("bearmail") -> str path of a built program,
                     looked up in builddir/src then builddir/tests/tools;
                     fails the test if it was not built
  pki                servers.pki.PKI made once per session in a temp dir
  fake_server        factory: fake_server(script, **kw) -> a started
                     FakeServer (starttls_context defaults to the pki's
                     "server" certificate).  Stopped at teardown, and its
                     errors raised there unless strict=False was given.
  smtp_sink          factory: smtp_sink(**kw) -> a started SmtpSink
                     (context defaults to the pki's "server" certificate)
  run                run(argv, input=None, timeout=60, env=None, cwd=None)
                     -> subprocess.CompletedProcess, text mode, stdout and
                     stderr captured; input may be str or bytes (then
                     output is bytes too)
  probe              probe(port, *steps, host="127.0.0.1", tls=False,
                     starttls=False, ca=None (default pki CA), timeout=5,
                     line_max=None, verbose=False, args=()) -> the run()
                     result of tests/tools/bm-probe (see bm-probe --help)
  free_port          free_port() -> an int port on 127.0.0.1 with no
                     listener (as far as anyone can know)
  silent_port        an int port on 127.0.0.1 that accepts connections
                     and never speaks (closed at teardown)
  no_core_while_waiting
                     check(argv, env): start the program with a core
                     limit it must lower, and fail unless /proc shows
                     RLIMIT_CORE 0 while it still runs (skips where the
                     hard limit is 0 already: it could not fail there)

BM_WRAPPER: a command (split like a shell would, e.g. "valgrind -q ...")
put in front of every program this build made, however a test starts it;
the servers' patience and the tests' bounds on a program's run grow six
times; see "Running under a checker" below.  A test that cannot work under it
(it reads the program's own /proc entry, its core file or its set-id
bits) carries @pytest.mark.unwrapped and is skipped, loudly, then.
"""

import atexit
import os
import pathlib
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

_HERE = pathlib.Path(__file__).resolve().parent
SRCDIR = pathlib.Path(os.environ.get("BM_SRCDIR") or _HERE.parent.parent)
BUILDDIR = pathlib.Path(os.environ.get("BM_BUILDDIR") or SRCDIR)

# The source tree may be read-only (make distcheck) and stays clean.
sys.dont_write_bytecode = True
if str(SRCDIR / "tests") not in sys.path:
    sys.path.insert(0, str(SRCDIR / "tests"))

from servers.fakeserver import (FakeServer, SmtpSink,  # noqa: E402
                                PATIENCE_FACTOR)
from servers.pki import PKI  # noqa: E402


# --- Running under a checker ---------------------------------------------
# tests/valgrind.sh -i (make check-valgrind) sets BM_WRAPPER.  Popen is
# hooked here, once, because tests start programs in many ways: run(),
# helpers of their own, subprocess directly; a hook at the one door all
# of those go through also covers tests written later.  Only the
# programs of this build are wrapped (src/ and tests/tools/): a copy
# installed elsewhere, such as a setgid bearmail-drop in a temporary
# prefix, runs plainly, since valgrind cannot give a set-id program its
# privileges.  A program started under another name (executable= with
# argv[0] "sendmail" or "mailq") is reached through a symlink of that
# name, so it still sees the name it dispatches on.  And the bearmail-auth
# that bearmail and bearmail-fetch run for a refresh ($BEARMAIL_AUTH in
# the environment a test gives) becomes a script that runs it wrapped too.
WRAPPER = shlex.split(os.environ.get("BM_WRAPPER", ""))
_OURS = {str(BUILDDIR / d) for d in ("src", "tests/tools")}
_links = None


def _ours(path):
    return os.path.dirname(os.path.abspath(path)) in _OURS


def _links_dir(sub):
    global _links
    if _links is None:
        _links = tempfile.mkdtemp(prefix="bm-wrap-")
        atexit.register(shutil.rmtree, _links, True)
    d = os.path.join(_links, sub)
    os.makedirs(d, exist_ok=True)
    return d


def _as_named(exe, name):
    """A path to exe whose last component is name."""
    link = os.path.join(_links_dir("named"), name)
    if not os.path.lexists(link):
        os.symlink(exe, link)
    return link


def _wrapped_script(exe):
    """An executable that runs exe under the wrapper, with its arguments."""
    path = os.path.join(_links_dir("scripts"), os.path.basename(exe))
    if not os.path.exists(path):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("#!/bin/sh\nexec %s \"$@\"\n"
                    % shlex.join(WRAPPER + [exe]))
        os.chmod(tmp, 0o755)
        os.rename(tmp, path)
    return path


def _wrap(args, executable):
    if isinstance(args, (str, bytes)) or not args:
        return args, executable
    argv = [os.fsdecode(a) for a in args]
    exe = os.fsdecode(executable) if executable is not None else argv[0]
    if not _ours(exe):
        return args, executable
    name = os.path.basename(argv[0])
    path = exe if name == os.path.basename(exe) else _as_named(exe, name)
    return WRAPPER + [path] + argv[1:], None


class _WrappedPopen(subprocess.Popen):
    def __init__(self, args, *a, **kw):
        if a:  # every caller here passes the rest by keyword
            raise TypeError("BM_WRAPPER: pass Popen options by keyword")
        args, kw["executable"] = _wrap(args, kw.get("executable"))
        env = kw.get("env")
        auth = env.get("BEARMAIL_AUTH") if env is not None else None
        if auth and _ours(auth):
            kw["env"] = dict(env, BEARMAIL_AUTH=_wrapped_script(auth))
        super().__init__(args, **kw)

    # A test's bound on how long a program may take is for the program
    # run plainly: under the checker it grows by the same factor as the
    # servers' patience (servers/fakeserver.py).
    def communicate(self, input=None, timeout=None):
        return super().communicate(input, _slower(timeout))

    def wait(self, timeout=None):
        return super().wait(_slower(timeout))


def _slower(timeout):
    return timeout * PATIENCE_FACTOR if timeout is not None else None


if WRAPPER:
    subprocess.Popen = _WrappedPopen


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "unwrapped: cannot run under BM_WRAPPER (it looks at "
        "the program's own process, core file or set-id bits)")


def pytest_collection_modifyitems(config, items):
    if not WRAPPER:
        return
    skip = pytest.mark.skip(reason="SKIPPED LOUDLY: not meaningful under "
                            "BM_WRAPPER (%s)" % WRAPPER[0])
    for item in items:
        if item.get_closest_marker("unwrapped"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def srcdir():
    return SRCDIR


@pytest.fixture(scope="session")
def builddir():
    return BUILDDIR


def _find_bin(name):
    for d in ("src", "tests/tools", "."):
        p = BUILDDIR / d / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    pytest.fail("%s not built (looked in %s/src and tests/tools; "
                "set BM_BUILDDIR)" % (name, BUILDDIR))


@pytest.fixture(scope="session")
def bm_bin():
    return _find_bin


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return PKI(str(tmp_path_factory.mktemp("pki")))


def _finish(servers):
    errors = []
    for srv in servers:
        if srv.scripts and not srv.repeat:
            srv.wait(timeout=srv.timeout)
        srv.stop()
        if srv.strict:
            errors += srv.errors
    if errors:
        pytest.fail("fake server:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture
def fake_server(pki):
    servers = []

    def make(script=None, **kw):
        kw.setdefault("starttls_context", pki.server_context("server"))
        srv = FakeServer(script, **kw).start()
        servers.append(srv)
        return srv
    yield make
    _finish(servers)


@pytest.fixture
def smtp_sink(pki):
    servers = []

    def make(**kw):
        if kw.get("tls_mode", "none") != "none":
            kw.setdefault("context", pki.server_context("server"))
        srv = SmtpSink(**kw).start()
        servers.append(srv)
        return srv
    yield make
    _finish(servers)


def _run(argv, input=None, timeout=60, env=None, cwd=None):
    text = not isinstance(input, bytes)
    return subprocess.run([str(a) for a in argv], input=input,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, env=env, cwd=cwd, text=text)


@pytest.fixture(scope="session")
def run():
    return _run


@pytest.fixture
def probe(pki):
    exe = _find_bin("bm-probe")

    def go(port, *steps, host="127.0.0.1", tls=False, starttls=False,
           ca=None, timeout=5, line_max=None, verbose=False, args=()):
        argv = [exe, "--ca", ca or pki.ca.cert, "--timeout", str(timeout)]
        if tls:
            argv.append("--tls")
        if starttls:
            argv.append("--starttls-smtp")
        if line_max is not None:
            argv += ["--line-max", str(line_max)]
        if verbose:
            argv.append("-v")
        argv += list(args)
        argv += [host, str(port)] + list(steps)
        return _run(argv, timeout=timeout * 6 + 30)
    return go


@pytest.fixture
def free_port():
    def get():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port
    return get


@pytest.fixture
def silent_port():
    # A client waits there for a greeting until its own timeout.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    yield ls.getsockname()[1]
    ls.close()


def _core_limit(pid):
    """(soft, hard) of RLIMIT_CORE as /proc/PID/limits shows them."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max core file size"):
                return tuple(line.split()[4:6])
    return None


def _allow_core():
    """preexec_fn: a core limit the program must lower to pass the test."""
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    want = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
    resource.setrlimit(resource.RLIMIT_CORE, (want, want))


def _no_core_while_waiting(argv, env):
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        pytest.skip("SKIPPED LOUDLY: hard core limit is 0 here, so the "
                    "test could not fail")
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=_allow_core)
    try:
        # It lowers the limit first thing; a silent server holds it for
        # its timeout, long after that.
        end = time.monotonic() + 5
        lim = _core_limit(p.pid)
        while lim != ("0", "0") and p.poll() is None and \
                time.monotonic() < end:
            time.sleep(0.02)
            lim = _core_limit(p.pid)
        assert lim == ("0", "0"), lim
        assert p.poll() is None, p.communicate()
    finally:
        p.kill()
        p.communicate()


@pytest.fixture
def no_core_while_waiting():
    return _no_core_while_waiting
