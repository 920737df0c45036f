"""bearmail-auth and the token store against a fake OAuth provider.

Every test talks to tests/servers/tokenserver.py on 127.0.0.1 only.  The
token file format is the one documented at the top of src/token.c.
"""

import json
import os
import re
import stat
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from servers.tokenserver import TokenServer


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kw):
        return None


# The test plays the browser; a proxy from the environment must not.
_BROWSER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_BROWSER_NOREDIRECT = urllib.request.build_opener(
    urllib.request.ProxyHandler({}), _NoRedirect)


class Setup:
    """A configuration file, a state directory and a token server."""

    def __init__(self, tmp_path, bm_bin, ts):
        self.tmp = tmp_path
        self.ts = ts
        self.auth_bin = bm_bin("bearmail-auth")
        self.bm_bin = bm_bin
        self.state = tmp_path / "state"
        self.conf = tmp_path / "bearmail.conf"
        self.tokdir = self.state / "tokens"
        self.env = {k: v for k, v in os.environ.items()
                    if "proxy" not in k.lower()}
        self.env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path),
                        XDG_STATE_HOME=str(tmp_path / "xdg"),
                        BEARMAIL_AUTH=self.auth_bin, LC_ALL="C")
        self.env.pop("BEARMAIL_CONFIG", None)
        self.write_conf()

    def write_conf(self, provider="google", extra="", name="acct",
                   endpoints=True, timeout=5):
        ts = self.ts
        lines = ["[defaults]", "state_dir = %s" % self.state, "",
                 "[%s]" % name, "provider = %s" % provider,
                 "user = alice@example.com", "timeout = %d" % timeout]
        if endpoints:
            lines += ["client_id = %s" % ts.client_id,
                      "auth_endpoint = %s" % ts.auth_url,
                      "token_endpoint = %s" % ts.token_url,
                      "revoke_endpoint = %s" % ts.revoke_url]
            if ts.client_secret:
                lines.append("client_secret = %s" % ts.client_secret)
        lines += [l.strip() for l in extra.strip().splitlines()]
        self.conf.write_text("\n".join(lines) + "\n")

    def auth(self, *args, input=None, timeout=60):
        return subprocess.run([self.auth_bin, "-C", str(self.conf)] +
                              list(args), input=input, capture_output=True,
                              text=True, timeout=timeout, env=self.env)

    def popen(self, *args):
        return subprocess.Popen([self.auth_bin, "-C", str(self.conf)] +
                                list(args), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=self.env)

    def cred(self, *args, timeout=60):
        return subprocess.run([self.bm_bin("bm-cred"), "-C", str(self.conf)]
                              + list(args), capture_output=True, text=True,
                              timeout=timeout, env=self.env)

    @property
    def token_path(self):
        return self.tokdir / "acct.token"

    def write_token(self, access=None, refresh=None, expires_in=3600,
                    user="alice@example.com"):
        """Plant a token file as bearmail-auth would have written it."""
        now = int(time.time())
        self.tokdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.state, 0o700)
        os.chmod(self.tokdir, 0o700)
        text = "bearmail-token 1\nuser %s\n" % user
        if access:
            text += "access_token %s\nexpires %d\nobtained %d\n" % (
                access, now + expires_in, now - 60)
        if refresh:
            text += "refresh_token %s\nauthorized %d\n" % (refresh, now - 60)
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        os.write(fd, text.encode())
        os.close(fd)

    def read_token(self):
        out = {}
        lines = self.token_path.read_text().splitlines()
        assert lines[0] == "bearmail-token 1"
        for line in lines[1:]:
            k, _, v = line.partition(" ")
            out[k] = v
        return out


@pytest.fixture
def ts():
    with TokenServer() as srv:
        yield srv


@pytest.fixture
def s(tmp_path, bm_bin, ts):
    return Setup(tmp_path, bm_bin, ts)


def token_requests(ts):
    return ts.count("token")


# ---- command line ----

def test_help_version_usage(s):
    r = s.auth("--help")
    assert r.returncode == 0 and "login" in r.stdout and "token" in r.stdout
    assert " test " in r.stdout
    r = s.auth("--version")
    assert r.returncode == 0 and "bearmail" in r.stdout
    r = s.auth("frobnicate", "acct")
    assert r.returncode == 64 and "unknown command" in r.stderr
    r = s.auth("token", "--bogus", "acct")
    assert r.returncode == 64
    r = s.auth("logout")
    assert r.returncode == 64
    r = s.auth("token", "nosuchaccount")
    assert r.returncode in (64, 78) and "nosuchaccount" in r.stderr


# ---- the refresh grant and the store ----

def test_import_then_token(s, ts):
    rt = ts.issue_refresh()
    r = s.auth("import", "acct", input=rt + "\n")
    assert r.returncode == 0, r.stderr
    assert token_requests(ts) == 1           # the import proves the token
    tok = s.read_token()
    assert tok["refresh_token"] == rt
    assert tok["access_token"] in ts.access_tokens
    assert stat.S_IMODE(s.token_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(s.tokdir.stat().st_mode) == 0o700
    r = s.auth("token", "acct")
    assert r.returncode == 0 and r.stdout.strip() == tok["access_token"]
    assert token_requests(ts) == 1           # fresh: no request


def test_import_refused_token_stores_nothing(s, ts):
    r = s.auth("import", "acct", input="rt-not-known\n")
    assert r.returncode == 77, r.stderr
    assert "bearmail-auth login acct" in r.stderr
    assert not s.token_path.exists()


def test_import_temporary_failure_stores_anyway(s, ts):
    rt = ts.issue_refresh()
    ts.fail("token", "500")
    r = s.auth("import", "acct", input=rt + "\n")
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr
    assert s.read_token()["refresh_token"] == rt


def test_stale_token_is_refreshed(s, ts):
    rt = ts.issue_refresh()
    s.write_token("at-old", rt, expires_in=120)   # inside the 5 min margin
    r = s.auth("token", "acct")
    assert r.returncode == 0, r.stderr
    new = r.stdout.strip()
    assert new != "at-old" and new in ts.access_tokens
    assert token_requests(ts) == 1
    tok = s.read_token()
    assert tok["access_token"] == new
    # expiry = local receive time + expires_in
    assert abs(int(tok["expires"]) - (time.time() + ts.expires_in)) < 60
    assert tok["refresh_token"] == rt        # absent in reply: kept


def test_absent_refresh_token_keeps_stored(s, ts):
    rt = ts.issue_refresh()
    s.write_token("at-old", rt, expires_in=-10)
    for _ in range(3):
        r = s.auth("token", "--force", "acct")
        assert r.returncode == 0, r.stderr
        assert s.read_token()["refresh_token"] == rt
    assert token_requests(ts) == 3


def test_rotated_refresh_token_survives(s, ts):
    ts.rotate = True
    rt = ts.issue_refresh()
    s.write_token("at-old", rt, expires_in=-10)
    seen = {rt}
    for _ in range(3):
        r = s.auth("token", "--force", "acct")
        assert r.returncode == 0, r.stderr
        cur = s.read_token()["refresh_token"]
        assert cur not in seen                 # the rotated one was saved
        assert cur in ts.refresh_tokens        # and it is the live one
        seen.add(cur)
    assert rt not in ts.refresh_tokens         # the server retired it


def test_fifty_parallel_make_one_request(s, ts):
    rt = ts.issue_refresh()
    s.write_token("at-expired", rt, expires_in=-100)
    # Under valgrind (BM_WRAPPER) fifty would queue on the lock for longer
    # than its 15 s bound on two cores: ten still race for it.
    n = 10 if os.environ.get("BM_WRAPPER") else 50
    procs = [subprocess.Popen([s.auth_bin, "-C", str(s.conf), "token",
                               "acct"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=s.env)
             for _ in range(n)]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0] * n, [o[1] for o in outs if o[1]]
    tokens = {o[0].strip() for o in outs}
    assert len(tokens) == 1 and "at-expired" not in tokens
    assert token_requests(ts) == 1


@pytest.mark.parametrize("mode,code,words", [
    ("invalid_grant", 77, ["bearmail-auth login acct", "7 days",
                           "Testing"]),
    ("invalid_client", 77, ["client_id", "client_secret"]),
    ("500", 75, ["HTTP 500", "kept"]),
    ("503json", 75, ["temporarily_unavailable"]),
    ("close", 75, []),
    ("timeout", 75, ["timed out"]),
    ("garbage", 76, ["JSON"]),
    ("huge", 76, ["larger"]),
])
def test_refresh_failures_keep_tokens(s, ts, mode, code, words):
    rt = ts.issue_refresh()
    s.write_token("at-old", rt, expires_in=-10)
    before = s.token_path.read_bytes()
    if mode == "timeout":
        s.write_conf(timeout=1)
        ts.fail_sleep = 3
    ts.fail("token", mode)
    r = s.auth("token", "acct")
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1     # one line
    for w in words:
        assert w in r.stderr, r.stderr
    assert s.token_path.read_bytes() == before         # every token kept
    assert rt not in r.stderr and "at-old" not in r.stderr
    # and it recovers once the endpoint does
    r = s.auth("token", "acct")
    assert r.returncode == 0, r.stderr


def test_no_refresh_token_says_login(s, ts):
    r = s.auth("token", "acct")
    assert r.returncode == 77
    assert "bearmail-auth login acct" in r.stderr
    assert token_requests(ts) == 0


def test_group_readable_token_file_refused(s, ts):
    s.write_token("at-fresh", ts.issue_refresh())
    os.chmod(s.token_path, 0o640)
    r = s.auth("token", "acct")
    assert r.returncode == 78, r.stderr
    assert "group or others" in r.stderr and "at-fresh" not in r.stderr
    r = s.cred()
    assert r.returncode == 78 and r.stdout == ""


def test_symlinked_token_file_refused(s, ts):
    s.write_token("at-fresh", ts.issue_refresh())
    real = s.tmp / "elsewhere"
    os.rename(s.token_path, real)
    os.symlink(real, s.token_path)
    r = s.auth("token", "acct")
    assert r.returncode == 78, r.stderr
    assert "symbolic link" in r.stderr
    assert s.cred().returncode == 78


def test_open_tokens_directory_refused(s, ts):
    s.write_token("at-fresh", ts.issue_refresh())
    os.chmod(s.tokdir, 0o755)
    r = s.auth("token", "acct")
    assert r.returncode == 78 and "chmod 700" in r.stderr


def test_secrets_stay_in_the_token_file(s, ts):
    rt = ts.issue_refresh()
    s.write_token("at-old", rt, expires_in=-10)
    r = s.auth("-v", "token", "acct")
    assert r.returncode == 0, r.stderr
    at = r.stdout.strip()
    assert "POST " + ts.token_url in r.stderr          # -v shows the request
    assert "refresh_token=[redacted" in r.stderr
    assert "client_secret=[redacted" in r.stderr
    for secret in (at, rt, ts.client_secret):
        assert secret not in r.stderr
    # nothing next to the token file holds a token
    for p in s.state.rglob("*"):
        if p.is_file() and p != s.token_path:
            data = p.read_bytes()
            assert at.encode() not in data and rt.encode() not in data, p
    assert sorted(p.name for p in s.tokdir.iterdir()) == ["acct.lock",
                                                          "acct.token"]
    r = s.auth("status", "acct")
    assert r.returncode == 0
    assert at not in r.stdout and rt not in r.stdout
    assert "refresh token" in r.stdout and "min left" in r.stdout


def test_status_all_accounts(s, ts):
    r = s.auth("status")
    assert r.returncode == 0, r.stderr
    assert "account acct" in r.stdout and "none" in r.stdout


# ---- cred_get (what bearmail and bearmail-fetch call) ----

def test_cred_fresh_token_needs_no_request(s, ts):
    at = ts.issue_access()
    s.write_token(at, ts.issue_refresh())
    r = s.cred()
    assert r.returncode == 0 and r.stdout.strip() == at
    assert token_requests(ts) == 0


def test_cred_stale_token_refreshed_through_bearmail_auth(s, ts):
    s.write_token("at-old", ts.issue_refresh(), expires_in=10)
    r = s.cred()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ts.access_tokens
    assert token_requests(ts) == 1
    assert s.read_token()["access_token"] == r.stdout.strip()


def test_cred_rejected_forces_one_refresh(s, ts):
    at = ts.issue_access()
    s.write_token(at, ts.issue_refresh())
    r = s.cred("--rejected")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() != at
    assert token_requests(ts) == 1


@pytest.mark.parametrize("mode,code,word", [
    ("invalid_grant", 77, "bearmail-auth login acct"),
    ("500", 75, "HTTP 500"),
])
def test_cred_keeps_temporary_apart_from_permanent(s, ts, mode, code, word):
    s.write_token("at-old", ts.issue_refresh(), expires_in=-1)
    ts.fail("token", mode)
    r = s.cred()
    assert r.returncode == code, r.stderr
    assert word in r.stderr and "at-old" not in r.stderr


def test_cred_password_command(s, ts):
    s.write_conf(provider="password", endpoints=False,
                 extra="password_command = printf 'pw-1\\nsecond\\n'\n"
                       "smtp_host = 127.0.0.1")
    r = s.cred()
    assert r.returncode == 0, r.stderr
    assert r.stdout == "pw-1\n"
    r = s.auth("token", "acct")
    assert r.returncode == 78 and "password" in r.stderr


def _alive(pid):
    """True while pid runs (a zombie waiting for its reaper is dead)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _gone(pids):
    # A SIGKILLed process may linger briefly until its parent reaps it.
    for _ in range(200):
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("cmd", [
    # The shell waits while its children hold the pipe.
    "sleep 100 & echo $! > {d}/p1; sleep 100 & echo $! > {d}/p2; "
    "echo $$ > {d}/p0; wait",
    # The shell is gone; a child it left keeps standard output open.
    "sleep 100 & echo $! > {d}/p1; echo $$ > {d}/p0",
])
def test_cred_timeout_kills_the_whole_group(s, ts, tmp_path, cmd):
    s.write_conf(provider="password", endpoints=False, timeout=1,
                 extra="password_command = %s\nsmtp_host = 127.0.0.1"
                       % cmd.format(d=tmp_path))
    r = s.cred(timeout=60)
    assert r.returncode == 75, r.stderr
    assert "TIMEOUT" in r.stderr
    pids = [int((tmp_path / n).read_text())
            for n in ("p0", "p1", "p2") if (tmp_path / n).exists()]
    assert len(pids) >= 2
    assert _gone(pids), "left running: %s" % [p for p in pids if _alive(p)]


def test_cred_too_much_output_is_not_the_message_fault(s, ts):
    s.write_conf(provider="password", endpoints=False,
                 extra="password_command = head -c 20000 /dev/zero | "
                       "tr '\\0' a\nsmtp_host = 127.0.0.1")
    r = s.cred()
    # EX_PROTOCOL (retryable), not EX_DATAERR: the message is not at fault.
    assert r.returncode == 76, r.stderr
    assert "printed more than" in r.stderr


@pytest.mark.parametrize("body", ["exit 3", "kill -9 $$"])
def test_cred_crashed_bearmail_auth_is_temporary(s, ts, tmp_path, body):
    fake = tmp_path / "fake-auth"
    fake.write_text("#!/bin/sh\n%s\n" % body)
    fake.chmod(0o755)
    s.write_token("at-old", ts.issue_refresh(), expires_in=-1)
    s.env["BEARMAIL_AUTH"] = str(fake)
    r = s.cred()
    assert r.returncode == 75, r.stderr


# ---- login: authorization code + PKCE on a loopback listener ----

def _read_url(proc, ts):
    for line in proc.stdout:
        if line.startswith(ts.auth_url):
            return line.strip()
    raise AssertionError("no URL printed; stderr: " + proc.stderr.read())


def test_login_loopback(s, ts):
    p = s.popen("login", "acct")
    try:
        url = _read_url(p, ts)
        page = _BROWSER.open(url, timeout=30).read().decode()
        assert "authorization received" in page
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    q = ts.last_authorize
    assert q["access_type"] == "offline" and q["prompt"] == "consent"
    assert q["login_hint"] == "alice@example.com"
    assert q["code_challenge_method"] == "S256"
    assert q["scope"] == "https://mail.google.com/"
    assert re.match(r"^http://127\.0\.0\.1:\d+/$", q["redirect_uri"])
    assert len(q["state"]) >= 16
    tok = s.read_token()
    assert tok["refresh_token"] in ts.refresh_tokens
    assert tok["access_token"] in ts.access_tokens
    assert tok["refresh_token"] not in out + err
    assert tok["access_token"] not in out + err


def test_login_prints_ssh_hint(s, ts):
    p = s.popen("login", "acct")
    try:
        url = _read_url(p, ts)
        hint = ""
        while "ssh" not in hint:
            line = p.stdout.readline()
            assert line, "output ended without an ssh hint"
            hint += line
        _BROWSER.open(url, timeout=30).read()
        p.communicate(timeout=60)
    finally:
        p.kill()
    assert "ssh -N -L" in hint


def test_login_pasted_url(s, ts):
    p = s.popen("login", "acct")
    try:
        url = _read_url(p, ts)
        with pytest.raises(urllib.error.HTTPError) as e:
            _BROWSER_NOREDIRECT.open(url, timeout=30)
        location = e.value.headers["Location"]
        assert location.startswith("http://127.0.0.1:")
        p.stdin.write("not the address\n")
        p.stdin.write(location + "\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert "paste it again" in err
    assert s.read_token()["refresh_token"] in ts.refresh_tokens


def test_login_wrong_state_refused(s, ts):
    ts.fail("authorize", "wrong_state")
    p = s.popen("login", "acct")
    try:
        url = _read_url(p, ts)
        with pytest.raises(urllib.error.HTTPError) as e:
            _BROWSER.open(url, timeout=30)
        assert e.value.code == 400
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 77
    assert "state" in err
    assert not s.token_path.exists()
    assert token_requests(ts) == 0             # the code was never used


def test_login_wrong_state_pasted_refused(s, ts):
    ts.fail("authorize", "wrong_state")
    p = s.popen("login", "acct")
    try:
        url = _read_url(p, ts)
        with pytest.raises(urllib.error.HTTPError) as e:
            _BROWSER_NOREDIRECT.open(url, timeout=30)
        out, err = p.communicate(e.value.headers["Location"] + "\n",
                                 timeout=60)
    finally:
        p.kill()
    assert p.returncode == 77 and "state" in err
    assert not s.token_path.exists()


def test_login_access_denied(s, ts):
    ts.fail("authorize", "access_denied")
    p = s.popen("login", "acct")
    try:
        url = _read_url(p, ts)
        with pytest.raises(urllib.error.HTTPError):
            _BROWSER.open(url, timeout=30)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 77 and "access_denied" in err


def test_login_replaces_old_grant(s, ts):
    s.write_token("at-old", "rt-old")
    p = s.popen("login", "acct")
    try:
        _BROWSER.open(_read_url(p, ts), timeout=30).read()
        p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0
    assert s.read_token()["refresh_token"] != "rt-old"


# ---- device flow ----

def _microsoft(s, ts):
    s.write_conf(provider="microsoft",
                 extra="device_endpoint = %s\ntenant = organizations" %
                 ts.device_url)


def test_device_flow(s, ts):
    _microsoft(s, ts)
    ts.device_script = ["pending", "slow_down", "ok"]
    r = s.auth("login", "--device", "acct", timeout=120)
    assert r.returncode == 0, r.stderr
    assert ts.base + "/device" in r.stdout
    assert re.search(r"\d{4}-\d{4}", r.stdout)      # the user code
    assert len(ts.device_polls) == 3
    form = [f for e, f in ts.requests if e == "devicecode"][0]
    assert "offline_access" in form["scope"].split()
    tok = s.read_token()
    assert tok["refresh_token"] in ts.refresh_tokens
    assert tok["refresh_token"] not in r.stdout + r.stderr


def test_login_microsoft_localhost(s, ts):
    _microsoft(s, ts)
    p = s.popen("login", "acct")
    try:
        page = _BROWSER.open(_read_url(p, ts), timeout=30).read().decode()
        assert "authorization received" in page
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    q = ts.last_authorize
    assert re.match(r"^http://localhost:\d+$", q["redirect_uri"])
    assert "offline_access" in q["scope"].split()
    assert "access_type" not in q and "prompt" not in q
    assert s.read_token()["refresh_token"] in ts.refresh_tokens


def test_device_flow_expired(s, ts):
    _microsoft(s, ts)
    ts.device_script = ["pending", "expired"]
    r = s.auth("login", "--device", "acct", timeout=60)
    assert r.returncode == 77 and "expired" in r.stderr
    assert "login --device acct" in r.stderr
    assert not s.token_path.exists()


def test_device_flow_refused_for_google(s, ts):
    r = s.auth("login", "--device", "acct")
    assert r.returncode == 64
    assert "device flow" in r.stderr and "mail" in r.stderr
    assert ts.count("devicecode") == 0


# ---- service accounts ----

@pytest.fixture
def service(s, ts, tmp_path):
    key = tmp_path / "sa.pem"
    pub = tmp_path / "sa.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", str(key)], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out",
                    str(pub)], check=True, capture_output=True)
    email = "mailer@project.iam.gserviceaccount.com"
    keyfile = tmp_path / "sa.json"
    keyfile.write_text(json.dumps({"type": "service_account",
                                   "client_email": email,
                                   "private_key_id": "k1",
                                   "private_key": key.read_text()}))
    os.chmod(keyfile, 0o600)
    ts.set_public_key(pub.read_text(), email)
    s.write_conf(endpoints=False, extra="""
        token_endpoint = %s
        service_account_key = %s
        impersonate = boss@corp.example
    """ % (ts.token_url, keyfile))
    return keyfile


def test_service_account_jwt(s, ts, service):
    r = s.auth("token", "acct")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ts.access_tokens
    c = ts.jwt_claims
    assert c["sub"] == "boss@corp.example"
    assert c["aud"] == ts.token_url
    assert c["iss"] == "mailer@project.iam.gserviceaccount.com"
    assert c["scope"] == "https://mail.google.com/"
    assert c["exp"] - c["iat"] == 3600
    tok = s.read_token()
    assert "refresh_token" not in tok
    r = s.auth("token", "acct")                 # still fresh: no request
    assert r.returncode == 0 and token_requests(ts) == 1
    r = s.auth("login", "acct")
    assert r.returncode == 64 and "service account" in r.stderr


def test_service_account_clock_skew_explained(s, ts, service):
    ts.clock_skew = 7200
    r = s.auth("token", "acct")
    assert r.returncode == 77
    assert "Invalid JWT" in r.stderr and "clock" in r.stderr


def test_service_account_not_delegated(s, ts, service):
    ts.sa_scopes = {"https://www.googleapis.com/auth/gmail.send"}
    r = s.auth("token", "acct")
    assert r.returncode == 77
    assert "unauthorized_client" in r.stderr and "delegation" in r.stderr


def test_service_account_wrong_key(s, ts, service, tmp_path):
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", str(other)], check=True,
                   capture_output=True)
    data = json.loads(service.read_text())
    data["private_key"] = other.read_text()
    service.write_text(json.dumps(data))
    r = s.auth("token", "acct")
    assert r.returncode == 77 and "invalid_grant" in r.stderr


# ---- logout ----

def test_logout_revokes_and_deletes(s, ts):
    rt = ts.issue_refresh()
    s.write_token(ts.issue_access(), rt)
    r = s.auth("logout", "acct")
    assert r.returncode == 0, r.stderr
    assert rt in ts.revoked
    assert not s.token_path.exists()
    r = s.auth("token", "acct")
    assert r.returncode == 77


def test_logout_keeps_file_when_revocation_fails(s, ts):
    rt = ts.issue_refresh()
    s.write_token(ts.issue_access(), rt)
    ts.fail("revoke", "500")
    r = s.auth("logout", "acct")
    assert r.returncode == 75
    assert "logout --local acct" in r.stderr
    assert s.token_path.exists()
    r = s.auth("logout", "--local", "acct")
    assert r.returncode == 0 and not s.token_path.exists()
    assert ts.count("revoke") == 1


# ---- introspection, for the later Dovecot tests ----

def test_introspection(ts):
    at = ts.issue_access("bob@example.com")
    req = urllib.request.Request(ts.introspect_url,
                                 data=("token=" + at).encode())
    got = json.loads(_BROWSER.open(req, timeout=10).read())
    assert got == {"active": True, "email": "bob@example.com",
                   "username": "bob@example.com",
                   "scope": "https://mail.google.com/"}
    req = urllib.request.Request(ts.introspect_url,
                                 headers={"Authorization": "Bearer nope"})
    assert json.loads(_BROWSER.open(req, timeout=10).read()) == \
        {"active": False}
