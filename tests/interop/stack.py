#!/usr/bin/python3
"""The interoperability stack: real Postfix and Dovecot on loopback.

One Stack is one private directory holding everything: a test CA and the
server certificate, Postfix's config, queue and data directories, Dovecot's
base_dir, state_dir and log, the Maildir that both share, the token table
of the introspection endpoint, and stack.json describing the ports.  No
file outside it is written and nothing listens anywhere but 127.0.0.1.

    st = Stack(dir)          # dir must not exist yet, or be empty
    st.start()               # certificates, configs, endpoint, Dovecot, Postfix
    st.add_token("tok", "alice@interop.test")
    ...                      # talk to st.ports["submission"] etc.
    st.stop()                # always; kills whatever did not stop

Command line, for poking at the stack by hand:
    stack.py start DIR       # prints stack.json; leaves it running
    stack.py stop DIR
    stack.py check           # why it cannot run here, or nothing

Needs root (Postfix's master must start as root), the Debian packages
postfix, dovecot-core, dovecot-imapd, dovecot-pop3d and openssl, and the
system user TEST_USER; tests/interop/install.sh provides all of them.
"""

import errno
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_USER = "bearmail-interop"
POSTFIX = "/usr/sbin/postfix"
DOVECOT = "/usr/sbin/dovecot"
OPENSSL = "/usr/bin/openssl"
PORT_NAMES = ("submission", "smtps", "imap", "imaps", "pop3", "pop3s")
START_TIMEOUT = 30.0


class StackError(Exception):
    pass


def prerequisites():
    """Return a list of reasons why the stack cannot run here (empty: it can)."""
    why = []
    if os.geteuid() != 0:
        why.append("not root (Postfix's master must start as root)")
    for path, pkg in ((POSTFIX, "postfix"), (DOVECOT, "dovecot-core"),
                      ("/usr/lib/dovecot/imap", "dovecot-imapd"),
                      ("/usr/lib/dovecot/pop3", "dovecot-pop3d"),
                      (OPENSSL, "openssl")):
        if not os.access(path, os.X_OK):
            why.append("%s missing (package %s)" % (path, pkg))
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        why.append("system user %s missing" % TEST_USER)
    if len(why) > (os.geteuid() != 0):
        why.append("fix: run tests/interop/install.sh as root")
    if os.geteuid() != 0:
        why.append("fix: run the tier as root")
    return why


def free_ports(n):
    """Return n distinct TCP ports that were free on 127.0.0.1 just now."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def wait_port(port, deadline, proc=None, what="service"):
    """Wait until 127.0.0.1:port accepts a connection."""
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise StackError("%s exited with status %s before listening on %d"
                             % (what, proc.returncode, port))
        if time.monotonic() > deadline:
            raise StackError("%s not listening on 127.0.0.1:%d after %.0f s"
                             % (what, port, START_TIMEOUT))
        time.sleep(0.05)


def _run(argv, **kw):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        raise StackError("%s failed (%d):\n%s"
                         % (" ".join(argv), r.returncode, r.stdout))
    return r.stdout


def _render(template, dest, values):
    with open(os.path.join(HERE, template), encoding="utf-8") as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    left = re.search(r"@[A-Z0-9_]+@", text)
    if left:
        raise StackError("%s: %s not replaced" % (template, left.group(0)))
    with open(dest, "w", encoding="utf-8") as f:
        f.write(text)


def _pids_with_env(key, value):
    """Pids whose environment holds key=value (Postfix children carry
    MAIL_CONFIG=DIR: how leftovers of this stack are found)."""
    want = ("%s=%s" % (key, value)).encode()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if want in env:
            pids.append(int(name))
    return pids


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise


class Stack:
    """A private Postfix + Dovecot + introspection endpoint.

    Attributes after start():
      dir            the private directory (absolute)
      ports          {"submission", "smtps", "imap", "imaps", "pop3",
                      "pop3s", "introspect"} -> port on 127.0.0.1
      host           "127.0.0.1"
      ca_file        PEM of the test CA that signed the server certificate
                     (subject CN=localhost, SAN DNS:localhost, IP:127.0.0.1)
      maildir        the Maildir every recipient is delivered to
      introspection_url  where Dovecot checks tokens
      token_server   the TokenServer given, or None
      postfix_log, dovecot_log, introspect_log

    The token endpoint is one of:
      token_server=TS   a started tests/servers/tokenserver.TokenServer
                        (in the caller's process): Dovecot introspects at
                        TS.introspect_url, add_token()/revoke_token() edit
                        TS's live access tokens, and tokens that TS issues
                        to bearmail-auth are valid at the mail servers too;
      introspection_url=URL  any other endpoint (add_token() refused);
      neither           introspect.py, started here as a child process
                        with its token table in DIR/tokens.json.
    """

    def __init__(self, directory, introspection_url=None, token_server=None,
                 oauth2_debug=False):
        self.dir = os.path.abspath(directory)
        self.host = "127.0.0.1"
        self.ca_file = os.path.join(self.dir, "ca", "ca.pem")
        self.maildir = os.path.join(self.dir, "Maildir")
        self.tokens_file = os.path.join(self.dir, "tokens.json")
        self.postfix_dir = os.path.join(self.dir, "postfix")
        self.dovecot_conf = os.path.join(self.dir, "dovecot", "dovecot.conf")
        self.postfix_log = os.path.join(self.dir, "postfix.log")
        self.dovecot_log = os.path.join(self.dir, "dovecot.log")
        self.introspect_log = os.path.join(self.dir, "introspect.log")
        self.token_server = token_server
        if token_server is not None:
            introspection_url = token_server.introspect_url
        self.external_introspection = introspection_url
        self.introspection_url = introspection_url
        self.oauth2_debug = oauth2_debug
        self.ports = {}
        # The process that stops this stack; reap_stale() cleans up after
        # it if it died without doing so (SIGKILL, a CI timeout).
        self.owner_pid = os.getpid()
        self._dovecot = None
        self._introspect = None
        self._tokens = {}

    # --- setup --------------------------------------------------------

    def _certs(self):
        ca = os.path.join(self.dir, "ca")
        os.makedirs(ca)
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-nodes"]
        _run([OPENSSL, "req", "-x509"] + key + [
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "7",
            "-subj", "/CN=bearmail interop test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign"], cwd=ca)
        _run([OPENSSL, "req"] + key + [
            "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost"], cwd=ca)
        with open(os.path.join(ca, "server.ext"), "w") as f:
            f.write("basicConstraints = CA:FALSE\n"
                    "keyUsage = critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage = serverAuth\n"
                    "subjectAltName = DNS:localhost,IP:127.0.0.1\n")
        _run([OPENSSL, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem",
              "-CAkey", "ca.key", "-CAcreateserial", "-days", "7",
              "-extfile", "server.ext", "-out", "server.pem"], cwd=ca)
        os.chmod(os.path.join(ca, "server.key"), 0o600)
        os.chmod(os.path.join(ca, "ca.key"), 0o600)

    def _write_tokens(self):
        tmp = self.tokens_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self._tokens, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.tokens_file)

    def _start_introspect(self, deadline):
        port_file = os.path.join(self.dir, "introspect.port")
        out = open(os.path.join(self.dir, "introspect.stderr"), "w")
        try:
            self._introspect = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "introspect.py"),
                 "--tokens", self.tokens_file, "--log", self.introspect_log,
                 "--port-file", port_file],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True)
        finally:
            out.close()
        while not os.path.exists(port_file):
            if self._introspect.poll() is not None:
                raise StackError("introspect.py exited: see %s/introspect.stderr"
                                 % self.dir)
            if time.monotonic() > deadline:
                raise StackError("introspect.py did not start")
            time.sleep(0.02)
        with open(port_file) as f:
            self.ports["introspect"] = int(f.read())
        self.introspection_url = ("http://127.0.0.1:%d/introspect"
                                  % self.ports["introspect"])

    def start(self):
        """Create everything and start the three servers; on any failure
        stop what was started and raise StackError."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        deadline = time.monotonic() + START_TIMEOUT
        if os.path.isdir(self.dir) and os.listdir(self.dir):
            raise StackError("%s is not empty" % self.dir)
        os.makedirs(self.dir, exist_ok=True)
        parent = os.path.dirname(self.dir)
        while True:
            if not os.stat(parent).st_mode & 0o001:
                raise StackError("%s is not searchable by others: the "
                                 "postfix and dovecot users could not reach "
                                 "%s" % (parent, self.dir))
            if parent == "/":
                break
            parent = os.path.dirname(parent)
        # Postfix (user postfix) and Dovecot (users dovecot, dovenull and
        # the test user) must reach their files below this directory.
        os.chmod(self.dir, 0o755)
        pw = pwd.getpwnam(TEST_USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self._certs()
        # Postfix's queue and data directories stay outside its config
        # directory: "postfix check" wants everything there owned by root.
        for sub in ("postfix", "postfix-queue", "postfix-data", "dovecot",
                    "dovecot/state"):
            os.makedirs(os.path.join(self.dir, sub), 0o755, exist_ok=True)
        os.chown(os.path.join(self.dir, "postfix-data"),
                 pwd.getpwnam("postfix").pw_uid, -1)
        for sub in ("Maildir", "Maildir/new", "Maildir/cur", "Maildir/tmp",
                    "home"):
            path = os.path.join(self.dir, sub)
            os.makedirs(path, 0o700, exist_ok=True)
            os.chown(path, self.uid, self.gid)
        self._write_tokens()
        with open(self.introspect_log, "w"):
            pass

        if self.token_server is not None:
            self.ports["introspect"] = self.token_server.port
        elif self.external_introspection is None:
            self._start_introspect(deadline)
        names = list(PORT_NAMES)
        for name, port in zip(names, free_ports(len(names))):
            self.ports[name] = port

        values = {
            "DIR": self.dir, "UID": self.uid, "GID": self.gid,
            "SUBMISSION_PORT": self.ports["submission"],
            "SMTPS_PORT": self.ports["smtps"],
            "IMAP_PORT": self.ports["imap"],
            "IMAPS_PORT": self.ports["imaps"],
            "POP3_PORT": self.ports["pop3"],
            "POP3S_PORT": self.ports["pop3s"],
            "PORTTAG": self.ports["imap"],
            "INTROSPECTION_URL": self.introspection_url,
            "OAUTH2_DEBUG": "yes" if self.oauth2_debug else "no",
        }
        _render("main.cf.in", os.path.join(self.postfix_dir, "main.cf"), values)
        _render("master.cf.in", os.path.join(self.postfix_dir, "master.cf"),
                values)
        _render("dovecot.conf.in", self.dovecot_conf, values)
        _render("dovecot-oauth2.conf.ext.in",
                os.path.join(self.dir, "dovecot", "oauth2.conf.ext"), values)
        self._save_info()

        # Dovecot first: Postfix's smtpd needs its auth socket.  -F keeps
        # the master in the foreground as our child, in its own process
        # group; its stdio goes to a file, never to a pipe of the caller
        # (a daemon holding the pipe open would hang whoever reads it).
        err = open(os.path.join(self.dir, "dovecot.stderr"), "w")
        try:
            self._dovecot = subprocess.Popen(
                [DOVECOT, "-F", "-c", self.dovecot_conf],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True)
        finally:
            err.close()
        for name in ("imap", "imaps", "pop3", "pop3s"):
            wait_port(self.ports[name], deadline, self._dovecot, "dovecot")
        self.start_postfix(deadline)
        self._save_info()

    def start_postfix(self, deadline=None):
        """(Re)start Postfix; tests stop and start it to exercise queueing."""
        if deadline is None:
            deadline = time.monotonic() + START_TIMEOUT
        try:
            _run([POSTFIX, "-c", self.postfix_dir, "start"])
        except StackError as e:
            raise StackError("%s\n%s" % (e, self.log_tail(self.postfix_log)))
        for name in ("submission", "smtps"):
            wait_port(self.ports[name], deadline, None, "postfix")

    def stop_postfix(self):
        """Stop Postfix (queue kept); afterwards its ports refuse connections."""
        master_pid = self._postfix_master_pid()
        subprocess.run([POSTFIX, "-c", self.postfix_dir, "stop"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if not _pids_with_env("MAIL_CONFIG", self.postfix_dir):
                break
            time.sleep(0.05)
        if master_pid:
            _kill_group(master_pid)
        for pid in _pids_with_env("MAIL_CONFIG", self.postfix_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        # A process seen too late above may still hold a listening socket
        # for a moment: the promise is that the ports refuse, so wait for it.
        end = time.monotonic() + 10
        for name in ("submission", "smtps"):
            while name in self.ports and time.monotonic() < end:
                try:
                    socket.create_connection(
                        (self.host, self.ports[name]), timeout=1).close()
                except ConnectionRefusedError:
                    break
                except OSError:
                    pass
                time.sleep(0.05)

    def _postfix_master_pid(self):
        try:
            with open(os.path.join(self.dir, "postfix-queue", "pid",
                                   "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _save_info(self):
        info = {
            "dir": self.dir, "host": self.host, "ports": self.ports,
            "ca_file": self.ca_file, "maildir": self.maildir,
            "introspection_url": self.introspection_url,
            "tokens_file": self.tokens_file,
            "postfix_config": self.postfix_dir,
            "dovecot_config": self.dovecot_conf,
            "dovecot_pid": self._dovecot.pid if self._dovecot else None,
            "introspect_pid": self._introspect.pid if self._introspect else None,
            "owner_pid": self.owner_pid,
        }
        with open(os.path.join(self.dir, "stack.json"), "w") as f:
            json.dump(info, f, indent=1)
        return info

    # --- teardown -----------------------------------------------------

    def stop(self):
        """Stop everything this stack started; safe to call twice."""
        if os.path.exists(os.path.join(self.postfix_dir, "main.cf")):
            self.stop_postfix()
        for attr in ("_dovecot", "_introspect"):
            proc = getattr(self, attr)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            # The whole process group: login and auth processes too.
            _kill_group(proc.pid)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            setattr(self, attr, None)

    # --- tokens -------------------------------------------------------

    def add_token(self, token, email, **extra):
        """Make the endpoint answer {"active": true, "email": email, **extra}
        for token (only with the built-in endpoint)."""
        ts = self.token_server
        if ts is not None:
            with ts.lock:
                ts.access_tokens[token] = email
            return
        self._need_own_endpoint()
        self._tokens[token] = {"email": email, "active": True, "extra": extra}
        self._write_tokens()

    def revoke_token(self, token):
        """Make the endpoint answer {"active": false} for token."""
        ts = self.token_server
        if ts is not None:
            with ts.lock:
                if ts.access_tokens.pop(token, None) is not None:
                    ts.revoked.add(token)
            return
        self._need_own_endpoint()
        if token in self._tokens:
            self._tokens[token]["active"] = False
            self._write_tokens()

    def _need_own_endpoint(self):
        if self.external_introspection is not None:
            raise StackError("tokens live in the external endpoint %s"
                             % self.external_introspection)

    def introspections(self):
        """The endpoint's introspection requests, oldest first: dicts with
        token_len, active and email (what the endpoint answered; with a
        TokenServer, what it would answer now)."""
        ts = self.token_server
        if ts is not None:
            out = []
            with ts.lock:
                for ep, fields in ts.requests:
                    if ep != "introspect":
                        continue
                    tok = fields.get("token", "")
                    email = ts.access_tokens.get(tok)
                    out.append({"token_len": len(tok),
                                "active": email is not None,
                                "email": email})
            return out
        with open(self.introspect_log, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    # --- the Maildir --------------------------------------------------

    def messages(self):
        """Raw bytes of every message in the Maildir (new/ and cur/),
        in delivery order."""
        files = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir, sub)
            for name in os.listdir(d):
                p = os.path.join(d, name)
                files.append((os.stat(p).st_mtime_ns, name, p))
        out = []
        for _, _, p in sorted(files):
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    def wait_for_message(self, needle, timeout=20.0):
        """Return the first delivered message containing needle (bytes),
        waiting up to timeout seconds; raise AssertionError if none came."""
        end = time.monotonic() + timeout
        while True:
            for m in self.messages():
                if needle in m:
                    return m
            if time.monotonic() > end:
                raise AssertionError("no message containing %r in %s after "
                                     "%.0f s; postfix log tail:\n%s"
                                     % (needle, self.maildir, timeout,
                                        self.log_tail(self.postfix_log)))
            time.sleep(0.1)

    def wait_for_log(self, path, needle, timeout=10.0):
        """Wait until the log at path contains needle (str); both servers
        write their logs through a separate process, so a line may land
        after the reply that the client already has.  Raise AssertionError
        after timeout seconds."""
        end = time.monotonic() + timeout
        while True:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    if needle in f.read():
                        return
            except OSError:
                pass
            if time.monotonic() > end:
                raise AssertionError("%r not in %s after %.0f s; tail:\n%s"
                                     % (needle, path, timeout,
                                        self.log_tail(path)))
            time.sleep(0.05)

    @staticmethod
    def log_tail(path, n=30):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError as e:
            return "(%s)" % e


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _alive(pid):
    """True if pid runs; a zombie (killed, not yet reaped) is dead."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_recorded(directory):
    """Stop the servers of the stack in directory from its stack.json,
    whoever started them: Postfix through its config directory, Dovecot's
    and the endpoint's process groups if their leaders still run the
    commands recorded there (so a reused pid is never killed)."""
    directory = os.path.abspath(directory)
    with open(os.path.join(directory, "stack.json")) as f:
        info = json.load(f)
    st = Stack(directory)
    if os.path.exists(os.path.join(st.postfix_dir, "main.cf")):
        st.stop_postfix()
    marks = {"dovecot_pid": info.get("dovecot_config") or st.dovecot_conf,
             "introspect_pid": info.get("tokens_file") or st.tokens_file}
    for key, mark in marks.items():
        pid = info.get(key)
        if not pid:
            continue
        if mark in _cmdline(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
            end = time.monotonic() + 5
            while _alive(pid) and mark in _cmdline(pid) \
                    and time.monotonic() < end:
                time.sleep(0.05)
        # Members of the group outlive a killed leader; kill them only
        # while they still look like ours.
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.getpgid(int(name)) != pid:
                    continue
            except OSError:
                continue
            cmd = _cmdline(int(name))
            if mark in cmd or "dovecot" in cmd:
                try:
                    os.kill(int(name), signal.SIGKILL)
                except OSError:
                    pass


def reap_stale(pattern_dir, prefix="bm-interop-"):
    """Stop stacks under pattern_dir/PREFIX*/s whose owner process is
    gone (a test run killed before its teardown).  Their directories stay
    for a post-mortem, with stack.json renamed stack.json.reaped.
    Returns the directories reaped."""
    reaped = []
    try:
        names = os.listdir(pattern_dir)
    except OSError:
        return reaped
    for name in names:
        if not name.startswith(prefix):
            continue
        root = os.path.join(pattern_dir, name)
        info_path = os.path.join(root, "s", "stack.json")
        try:
            with open(info_path) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        owner = info.get("owner_pid")
        if not owner or _alive(owner):
            continue    # running, or started by "stack.py start"
        try:
            stop_recorded(os.path.join(root, "s"))
        except (OSError, ValueError, StackError):
            continue
        os.rename(info_path, info_path + ".reaped")
        reaped.append(root)
    return reaped


def _cli(argv):
    if len(argv) >= 1 and argv[0] == "check":
        why = prerequisites()
        for w in why:
            print(w)
        return 1 if why else 0
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        sys.stderr.write("usage: stack.py start DIR | stop DIR | check\n")
        return 64
    cmd, d = argv
    if cmd == "start":
        why = prerequisites()
        if why:
            sys.stderr.write("stack.py: cannot run: %s\n" % "; ".join(why))
            return 69
        st = Stack(d)
        st.owner_pid = None     # nobody: "stop DIR" is the owner
        st.start()
        # Leave the servers running; "stop" finds them through stack.json.
        st._dovecot = st._introspect = None
        with open(os.path.join(st.dir, "stack.json")) as f:
            sys.stdout.write(f.read() + "\n")
        return 0
    stop_recorded(d)
    return 0


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
