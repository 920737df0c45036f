"""TLS session resumption across bearmail runs (src/conn.c, src/tls.c).

bearmail keeps the session of a verified handshake in STATE_DIR/tls/,
one file per (host as configured, port), and offers it on the next run.
The sink's server side says whether a handshake resumed
(SSLSocket.session_reused); TLS 1.2 on the server keeps that to RFC 5077
tickets and session IDs.  Each test also checks that whatever is wrong
with the cache never stops a message and never weakens verification.
"""

import os
import ssl
import struct
import subprocess
import time

import pytest

USER = "alice@example.com"
TOKEN = "ya29.good-token"
MAGIC = b"BMTLSS\x00\x01"


def write_token(state):
    tokdir = os.path.join(state, "tokens")
    os.makedirs(tokdir, mode=0o700, exist_ok=True)
    os.chmod(state, 0o700)
    now = int(time.time())
    path = os.path.join(tokdir, "gmail.token")
    with open(path, "w") as f:
        f.write("bearmail-token 1\nuser %s\naccess_token %s\nexpires %d\n"
                "obtained %d\nscope https://mail.google.com/\n"
                % (USER, TOKEN, now + 3600, now))
    os.chmod(path, 0o600)


class Resumer:
    """A bearmail configuration for one sink, and a server that records
    for each delivered message whether its TLS session was resumed."""

    def __init__(self, tmp_path, bm_bin, pki, smtp_sink, cert="server",
                 host="localhost", tls_mode="starttls"):
        self.tmp = tmp_path
        self.pki = pki
        self.smtp_sink = smtp_sink
        self.tls_mode = tls_mode
        self.exe = bm_bin("bearmail")
        self.state = tmp_path / "state"
        self.state.mkdir(exist_ok=True)
        write_token(str(self.state))
        self.reused = []
        self.sink = self.start_sink(cert)
        self.configure(host)

    def start_sink(self, cert, port=0):
        ctx = self.pki.server_context(cert, maximum=ssl.TLSVersion.TLSv1_2)

        def on_mail(s, arg):
            self.reused.append(s.sock.session_reused)
            return None
        return self.smtp_sink(tls_mode=self.tls_mode, context=ctx,
                              user=USER, token=TOKEN, port=port,
                              hooks={"MAIL": on_mail},
                              # a refused handshake is no sink error
                              strict=(cert == "server"))

    def restart_sink(self, cert):
        """Stop the sink and serve cert on the same port (new ticket
        keys and session cache: the server cannot resume)."""
        port = self.sink.port
        self.sink.wait()
        self.sink.stop()
        self.sink = self.start_sink(cert, port)

    def configure(self, host):
        self.host = host
        conf = self.tmp / "bearmail.conf"
        conf.write_text("\n".join([
            "[defaults]",
            "log = %s" % (self.tmp / "bearmail.log"),
            "state_dir = %s" % self.state,
            "queue_dir = %s" % (self.tmp / "queue"),
            "queue = never",
            "",
            "[gmail]",
            "provider = google",
            "user = " + USER,
            "client_id = test-client",
            "client_secret = test-secret",
            "smtp_host = " + host,
            "smtp_port = %d" % self.sink.port,
            "smtp_tls = " + ("tls" if self.tls_mode == "implicit"
                             else "starttls"),
            "ca_file = %s" % self.pki.ca.cert,
            "domain = host.example",
            "timeout = 10",
            "token_endpoint = http://127.0.0.1:9/token",
            ""]))
        self.env = dict(os.environ)
        self.env.update({"BEARMAIL_CONFIG": str(conf),
                         "HOME": str(self.tmp),
                         "XDG_CONFIG_HOME": str(self.tmp / "xdg"),
                         "XDG_STATE_HOME": str(self.tmp / "xdgstate"),
                         "TMPDIR": str(self.tmp)})

    @property
    def tlsdir(self):
        return self.state / "tls"

    def entry(self, host=None):
        return self.tlsdir / ("%s_%d" % (host or self.host, self.sink.port))

    def send(self, verbose=False):
        n = len(self.sink.messages)
        argv = ["sendmail"] + (["-v"] if verbose else []) + \
            ["-i", "bob@example.org"]
        p = subprocess.run(argv, executable=self.exe,
                           input=b"Subject: hi\n\nhello\n",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=self.env, timeout=60)
        p.err = p.stderr.decode("utf-8", "replace")
        self.sink.wait(timeout=10)
        p.delivered = len(self.sink.messages) == n + 1
        return p


@pytest.fixture
def bear(tmp_path, bm_bin, pki, smtp_sink):
    return Resumer(tmp_path, bm_bin, pki, smtp_sink)


def sent_ok(p):
    return p.returncode == 0 and p.delivered, (p.returncode, p.err)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_second_run_resumes(tmp_path, bm_bin, pki, smtp_sink, mode):
    b = Resumer(tmp_path, bm_bin, pki, smtp_sink, tls_mode=mode)
    p = b.send()
    assert sent_ok(p)
    assert b.reused == [False]
    st = os.lstat(b.tlsdir)
    assert st.st_mode & 0o777 == 0o700
    st = os.lstat(b.entry())
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == os.geteuid()
    data = b.entry().read_bytes()
    assert data.startswith(MAGIC) and b"localhost" in data
    assert [f for f in os.listdir(b.tlsdir)] == [b.entry().name]
    p = b.send(verbose=True)
    assert sent_ok(p)
    assert b.reused == [False, True]
    assert "TLS session resumed" in p.err
    # A resumption does not rewrite the entry: it keeps its full
    # handshake's age.
    assert b.entry().read_bytes() == data


def test_group_readable_entry_is_ignored_and_replaced(bear):
    assert sent_ok(bear.send())
    os.chmod(bear.entry(), 0o640)
    p = bear.send(verbose=True)
    assert sent_ok(p)
    assert bear.reused == [False, False]
    assert "open to group or others" in p.err
    assert os.lstat(bear.entry()).st_mode & 0o777 == 0o600
    assert sent_ok(bear.send())
    assert bear.reused[-1] is True


def test_open_directory_is_ignored(bear):
    assert sent_ok(bear.send())
    os.chmod(bear.tlsdir, 0o755)
    p = bear.send()
    assert sent_ok(p)
    assert bear.reused == [False, False]


def test_symlinked_entry_is_not_followed(bear, tmp_path):
    assert sent_ok(bear.send())
    target = tmp_path / "elsewhere"
    os.rename(bear.entry(), target)
    good = target.read_bytes()
    os.symlink(target, bear.entry())
    p = bear.send(verbose=True)
    assert sent_ok(p)
    assert bear.reused == [False, False]
    # Neither read through nor written through: replaced by a file.
    assert target.read_bytes() == good
    assert not os.path.islink(bear.entry())
    assert os.lstat(bear.entry()).st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_entry_of_another_owner_is_ignored(bear):
    assert sent_ok(bear.send())
    os.chown(bear.entry(), 65534, 65534)
    p = bear.send(verbose=True)
    assert sent_ok(p)
    assert bear.reused == [False, False]
    assert "is not ours" in p.err


def test_entry_for_another_host_is_not_used(bear):
    assert sent_ok(bear.send())
    # The entry made for "localhost", planted under 127.0.0.1's name:
    # the host inside it does not match, so it is not offered.
    other = bear.entry("127.0.0.1")
    other.write_bytes(bear.entry().read_bytes())
    os.chmod(other, 0o600)
    bear.configure("127.0.0.1")
    p = bear.send(verbose=True)
    assert sent_ok(p)
    assert bear.reused == [False, False]
    assert "stale or malformed" in p.err
    assert b"127.0.0.1" in other.read_bytes()
    assert sent_ok(bear.send())
    assert bear.reused[-1] is True


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped",
                                    "old", "empty"])
def test_damaged_or_old_entry_is_ignored_and_replaced(bear, damage):
    assert sent_ok(bear.send())
    data = bear.entry().read_bytes()
    if damage == "garbage":
        bad = os.urandom(len(data))
    elif damage == "truncated":
        bad = data[:-7]
    elif damage == "flipped":
        # Corrupt the mbedTLS session itself; framing stays valid.
        i = len(data) - 40
        bad = data[:i] + bytes([data[i] ^ 0xff]) + data[i + 1:]
    elif damage == "old":
        bad = (data[:8] + struct.pack(">Q", int(time.time()) - 2 * 86400) +
               data[16:])
    else:
        bad = b""
    with open(bear.entry(), "wb") as f:
        f.write(bad)
    p = bear.send()
    assert sent_ok(p)
    if damage != "flipped":
        # A flipped byte may land in a field mbedTLS does not check (a
        # timestamp, the ticket the server then rejects): either way it
        # must deliver; only the clear cases must not resume.
        assert bear.reused == [False, False]
    fresh = bear.entry().read_bytes()
    assert fresh.startswith(MAGIC) and fresh != bad
    assert sent_ok(bear.send())
    assert bear.reused[-1] is True


def test_untrusted_certificate_refused_despite_cached_session(bear):
    """The server changes its certificate to one we do not trust.  Its
    new context cannot resume our session (it lacks the old ticket key and
    master secret), so the full handshake's verification must refuse."""
    assert sent_ok(bear.send())
    assert bear.entry().exists()
    bear.restart_sink("untrusted")
    p = bear.send()
    assert p.returncode == 75, (p.returncode, p.err)
    assert not p.delivered
    assert "certificate issuer is not trusted" in p.err
    assert bear.reused == [False]
    # The good entry is left as it was; a trusted server resumes later.
    bear.restart_sink("server")
    assert sent_ok(bear.send())


def test_wrong_name_refused_despite_cached_session(bear):
    assert sent_ok(bear.send())
    bear.restart_sink("wrongname")
    p = bear.send()
    assert p.returncode == 75, (p.returncode, p.err)
    assert not p.delivered
    assert "certificate is for another host name" in p.err


def test_no_state_dir_tls_without_tls(tmp_path, bm_bin, pki, smtp_sink):
    """No cache directory appears for a session that never resumed a
    handshake because none was verified (the failure case)."""
    b = Resumer(tmp_path, bm_bin, pki, smtp_sink, cert="untrusted")
    p = b.send()
    assert p.returncode == 75 and not p.delivered, p.err
    assert not b.entry().exists()
