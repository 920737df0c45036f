#!/usr/bin/python3
"""A scripted fake mail server, and an SMTP sink, for bearmail's tests.

Standard library only.  Listens on 127.0.0.1 (or ::1) on a free port and
serves each accepted connection in its own thread, either by playing a
script (a list of steps) or through a handler (SmtpSink).  It records
everything the client sent, so tests can assert on it, and collects every
script mismatch as an error instead of hanging.

In-process use (pytest)
-----------------------

    from servers.fakeserver import FakeServer, expect, reply, starttls

    script = [reply("220 fake ESMTP"),
              expect(r"EHLO \\S+"), reply("250-fake", "250 STARTTLS"),
              expect("STARTTLS"), reply("220 go ahead"),
              starttls(),
              expect(r"EHLO \\S+"), reply("250 fake"),
              expect("QUIT"), reply("221 bye")]
    with FakeServer(script, starttls_context=pki.server_context()) as srv:
        run_client(srv.host, srv.port)
        srv.wait()                 # let the session thread finish
        assert srv.session.lines[0].startswith("EHLO")
    # leaving the block raises AssertionError if the script did not match
    # (unless strict=False)

FakeServer(script=None, *, scripts=None, handler=None, tls=None,
           starttls_context=None, host="127.0.0.1", port=0,
           timeout=PATIENCE, strict=True, repeat=False)
    script     list of steps for the first (only) connection
    scripts    list of scripts, one per successive connection; a
               connection past the last is an error (or, with repeat=True,
               plays the last script again)
    handler    callable(session) instead of a script (see SmtpSink)
    tls        ssl.SSLContext: implicit TLS, handshake right after accept
    starttls_context  ssl.SSLContext used by starttls() steps (default tls)
    timeout    seconds a step waits for the client before it fails
               (PATIENCE: 10, or 60 under BM_WRAPPER)
    strict     raise AssertionError from __exit__ if anything mismatched
  attributes and methods:
    host, port       where it listens ("127.0.0.1", int)
    start(), stop()  (the with statement calls them)
    wait(timeout=PATIENCE) wait until every scripted session has ended
                     (EOF, end of script, or error); returns self
    sessions         list of Session, in accept order
    session          sessions[0] (after wait())
    errors           every error of every session, as strings
    check()          raise AssertionError listing the errors

Session (one connection; everything recorded):
    data      bytes the client sent (after TLS decryption), all of it
    recvs     list of (tls: bool, bytes), one entry per recv() call: lets a
              test see how the client's writes were coalesced
    lines     data split into lines (str, CRLF/LF stripped, undecodable
              bytes kept as surrogate escapes)
    commands  the lines the script consumed (expect/read steps)
    sent      bytes we sent
    transcript list of ("C"|"S"|"*", str), for error messages
    tls       True once TLS is up; tls_version, cipher, sni
    errors    this session's errors
    eof       True once the client closed its side
    messages  SMTP messages received (SmtpSink and expect_data())
    readline(), read_exact(n), send(b), send_raw(b), starttls(ctx), close()
              for call() steps and handlers

Steps (each returns a step object; a script is a list of them):
    expect(regex)        read one line; it must fullmatch regex (str, or a
                         compiled pattern for flags)
    expect_line(text)    read one line; must equal text exactly
    expect_bytes(x)      read exactly x bytes (int), or exactly the bytes x
    expect_data()        read an SMTP DATA body up to "."; un-dot-stuffed,
                         appended to session.messages as a Message
    expect_eof()         the client must close (no more data)
    read(n=1)            read n lines, whatever they are
    send(data)           send str/bytes as is (no CRLF added)
    reply(*lines)        send each line + CRLF, all in one write
    smtp(code, *texts)   reply "code-text" ... "code text" (multi-line SMTP)
    inject(data)         write raw bytes on the TCP socket, bypassing TLS
    starttls(ctx=None)   server side of a TLS handshake; an error if the
                         client already sent bytes after its STARTTLS line
    delay(seconds)       sleep
    stall(seconds=None)  read and record until the client closes, the time
                         passes or the server stops; never an error
    close()              close the connection now
    call(fn)             fn(session), for anything else

SmtpSink(**options): a minimal submission server (subclass of FakeServer)
    tls_mode="none"|"starttls"|"implicit", context=ssl ctx (required for
    TLS), hostname, capabilities (EHLO keywords besides AUTH and STARTTLS;
    default DEFAULT_CAPS), auth_mechs (default XOAUTH2 OAUTHBEARER PLAIN
    LOGIN), user, token (str or list of accepted tokens), password,
    require_auth=True, require_tls (default: tls_mode == "starttls"),
    hooks {VERB: "reply" | callable(session, arg) -> reply or None}, where
    VERB is GREETING, EHLO, HELO, AUTH, MAIL, RCPT, DATA, DATA_END, BDAT,
    RSET, NOOP, QUIT; a reply may hold several lines joined by "\\r\\n".
    save_dir: write each message to save_dir/NNNN.eml.
    Serves any number of connections.  sink.messages lists Message objects:
    sender, sender_params, rcpts, rcpt_params, data (bytes, unstuffed),
    raw (bytes as on the wire), via ("DATA"|"BDAT"), auth (mech, user),
    session (index).  session.auth is a list of dicts with mech, user,
    ok, inline (initial response on the AUTH line), line_len, and for
    OAUTHBEARER host and port.
    Bad credentials get the providers' error challenge (XOAUTH2: base64
    JSON status 401; OAUTHBEARER: status invalid_token) and the client's
    answer is checked (empty line; "AQ==" = %x01); then 535 5.7.8.

Command line (README demo, benchmarks)
--------------------------------------
    fakeserver.py --script FILE [--port-file F] [--port N] [--tls MODE]
                  [--pki DIR | --cert F --key F] [--repeat] [--connections N]
    fakeserver.py --sink [--tls MODE] [--pki DIR] [--user U] [--token T]
                  [--password P] [--save-dir D] [--port-file F] ...
  MODE is none, implicit or starttls (the context for starttls steps).
  --pki DIR makes (or reuses) a test PKI in DIR and serves DIR/server.pem;
  trust DIR/ca.pem on the client side.  Runs until SIGTERM/SIGINT, or
  until --connections sessions have ended; exits 1 if any had an error.
  Script file: one step per line, "#" comments, blank lines ignored:
    expect REGEX | line TEXT (= reply TEXT) | send ESCAPED | inject ESCAPED
    | starttls | delay SECONDS | stall [SECONDS] | close | data | eof
    | read [N]
  ESCAPED takes Python escapes (\\r\\n, \\x00).  "line" adds CRLF.
"""

import argparse
import base64
import binascii
import json
import os
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time

# A program run under a checker (BM_WRAPPER="valgrind ...", see
# tests/integration/conftest.py) starts and shakes hands many times more
# slowly: the servers' default patience grows with it.  Timeouts a test
# sets itself, to provoke one, are left as they are.
PATIENCE_FACTOR = 6 if os.environ.get("BM_WRAPPER") else 1
PATIENCE = 10 * PATIENCE_FACTOR

LINE_MAX = 1 << 20


class Mismatch(Exception):
    """The client did not do what the script expected."""


class Message:
    def __init__(self):
        self.sender = None
        self.sender_params = ""
        self.rcpts = []
        self.rcpt_params = []
        self.data = b""
        self.raw = b""
        self.via = None
        self.auth = None
        self.session = None

    def __repr__(self):
        return "Message(from=%r, to=%r, %d bytes)" % (self.sender, self.rcpts,
                                                      len(self.data))


def _text(b):
    return b.decode("utf-8", "surrogateescape")


def _bytes(x):
    return x.encode("utf-8", "surrogateescape") if isinstance(x, str) else x


class Session:
    def __init__(self, server, sock, index):
        self.server = server
        self.sock = sock
        self.index = index
        self.buf = bytearray()
        self.data = bytearray()
        self.recvs = []
        self.commands = []
        self.sent = bytearray()
        self.transcript = []
        self.tls = False
        self.tls_version = None
        self.cipher = None
        self.sni = None
        self.errors = []
        self.eof = False
        self.closed = False
        self.messages = []
        self.auth = []
        self.done = threading.Event()
        sock.settimeout(server.timeout)

    # -- recording -------------------------------------------------------

    @property
    def lines(self):
        out = [l[:-1] if l.endswith(b"\r") else l
               for l in bytes(self.data).split(b"\n")]
        if out and out[-1] == b"":
            out.pop()
        return [_text(l) for l in out]

    def note(self, text):
        self.transcript.append(("*", text))

    def error(self, text):
        tail = "\n".join("    %s: %s" % (d, t[:200])
                         for d, t in self.transcript[-8:])
        msg = "session %d: %s" % (self.index, text)
        if tail:
            msg += "\n  last exchanges:\n" + tail
        self.errors.append(msg)
        self.server._log(msg)

    # -- I/O -------------------------------------------------------------

    def _recv(self):
        if self.eof:
            raise Mismatch("client closed the connection")
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise Mismatch("client sent nothing for %gs" % self.server.timeout)
        except (ConnectionError, ssl.SSLError, OSError) as e:
            self.eof = True
            raise Mismatch("receive failed: %s" % e)
        if not chunk:
            self.eof = True
            raise Mismatch("client closed the connection")
        self.recvs.append((self.tls, chunk))
        self.data += chunk
        self.buf += chunk

    def readline(self, limit=LINE_MAX):
        """One line without its CRLF or LF, as bytes."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                self.commands.append(_text(line))
                self.transcript.append(("C", _text(line)))
                return line
            if len(self.buf) > limit:
                raise Mismatch("client line longer than %d bytes" % limit)
            self._recv()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._recv()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.transcript.append(("C", "[%d bytes]" % n))
        return out

    def send(self, data):
        data = _bytes(data)
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError) as e:
            raise Mismatch("send failed: %s" % e)
        self.sent += data
        for l in _text(data).splitlines() or [""]:
            self.transcript.append(("S", l))

    def send_raw(self, data):
        """Bytes straight onto the TCP socket, under any TLS layer."""
        data = _bytes(data)
        fd = self.sock.fileno()
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                select.select([], [fd], [], self.server.timeout)
        self.sent += data
        self.transcript.append(("S", "[raw] " + repr(data)[:120]))

    def starttls(self, ctx=None):
        ctx = ctx or self.server.starttls_context or self.server.tls
        if ctx is None:
            raise Mismatch("starttls step but no TLS context given")
        if self.buf:
            self.error("client sent %d bytes after STARTTLS before the "
                       "handshake: %r" % (len(self.buf), bytes(self.buf[:60])))
            self.buf.clear()
        self._handshake(ctx)

    def _handshake(self, ctx):
        self.server._prepare(ctx)
        try:
            s = ctx.wrap_socket(self.sock, server_side=True,
                                do_handshake_on_connect=False)
            self.sock = s
            s.do_handshake()
        except (OSError, ssl.SSLError) as e:
            self.eof = True
            raise Mismatch("TLS handshake failed: %s" % e)
        self.tls = True
        self.tls_version = s.version()
        self.cipher = s.cipher()[0] if s.cipher() else None
        self.sni = getattr(s, "bm_sni", None)
        self.note("TLS up: %s %s sni=%s" % (self.tls_version, self.cipher,
                                           self.sni))

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def stall(self, seconds=None):
        end = None if seconds is None else time.monotonic() + seconds
        self.sock.settimeout(0.1)
        try:
            while not self.server._stopping.is_set():
                if end is not None and time.monotonic() >= end:
                    break
                try:
                    self._recv()
                except Mismatch:
                    if self.eof:
                        break
        finally:
            self.sock.settimeout(self.server.timeout)


# --- steps -------------------------------------------------------------

class Step:
    def __init__(self, desc, fn):
        self.desc = desc
        self.fn = fn

    def __call__(self, session):
        return self.fn(session)

    def __repr__(self):
        return self.desc


def expect(pattern):
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern

    def run(s):
        line = _text(s.readline())
        if not rx.fullmatch(line):
            raise Mismatch("expected %r, client sent %r" % (rx.pattern, line))
    return Step("expect(%r)" % rx.pattern, run)


def expect_line(text):
    return expect(re.compile(re.escape(text)))


def expect_bytes(what):
    def run(s):
        n = what if isinstance(what, int) else len(what)
        got = s.read_exact(n)
        if not isinstance(what, int) and got != _bytes(what):
            raise Mismatch("expected bytes %r, client sent %r" % (what, got))
    return Step("expect_bytes(%r)" % (what,), run)


def _read_data(s):
    """An SMTP DATA body up to the lone dot: (unstuffed, raw)."""
    body = bytearray()
    raw = bytearray()
    while True:
        line = s.readline()
        raw += line + b"\r\n"
        if line == b".":
            return bytes(body), bytes(raw)
        if line.startswith(b"."):
            line = line[1:]
        body += line + b"\r\n"


def expect_data():
    def run(s):
        m = Message()
        m.data, m.raw = _read_data(s)
        m.via = "DATA"
        m.session = s.index
        s.messages.append(m)
    return Step("expect_data()", run)


def expect_eof():
    def run(s):
        try:
            s._recv()
        except Mismatch:
            if s.eof:
                return
            raise
        raise Mismatch("expected the client to close, it sent %r"
                       % bytes(s.buf[:80]))
    return Step("expect_eof()", run)


def read(n=1):
    def run(s):
        for _ in range(n):
            s.readline()
    return Step("read(%d)" % n, run)


def send(data):
    return Step("send(%r)" % (data,), lambda s: s.send(data))


def reply(*lines):
    data = b"".join(_bytes(l) + b"\r\n" for l in lines)
    return Step("reply(%s)" % ", ".join(repr(l) for l in lines),
                lambda s: s.send(data))


def smtp(code, *texts):
    texts = texts or ("",)
    lines = ["%s-%s" % (code, t) for t in texts[:-1]]
    lines.append(("%s %s" % (code, texts[-1])).rstrip())
    return reply(*lines)


def inject(data):
    return Step("inject(%r)" % (data,), lambda s: s.send_raw(data))


def starttls(ctx=None):
    return Step("starttls()", lambda s: s.starttls(ctx))


def delay(seconds):
    return Step("delay(%g)" % seconds, lambda s: time.sleep(seconds))


def stall(seconds=None):
    return Step("stall(%r)" % (seconds,), lambda s: s.stall(seconds))


def close():
    return Step("close()", lambda s: s.close())


def call(fn):
    return Step("call(%s)" % getattr(fn, "__name__", "fn"), fn)


# --- the server --------------------------------------------------------

class FakeServer:
    def __init__(self, script=None, *, scripts=None, handler=None, tls=None,
                 starttls_context=None, host="127.0.0.1", port=0,
                 timeout=PATIENCE, strict=True, repeat=False, quiet=True):
        if script is not None:
            scripts = [script]
        self.scripts = scripts
        self.handler = handler
        self.tls = tls
        self.starttls_context = starttls_context
        self.host = host
        self.port = port
        self.timeout = timeout
        self.strict = strict
        self.repeat = repeat
        self.quiet = quiet
        self.sessions = []
        self._threads = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._listener = None
        self._acceptor = None
        self.errors_extra = []

    # -- life ------------------------------------------------------------

    def start(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, self.port))
        ls.listen(16)
        self.port = ls.getsockname()[1]
        self._listener = ls
        self._acceptor = threading.Thread(target=self._accept_loop,
                                          daemon=True)
        self._acceptor.start()
        return self

    def stop(self):
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        for s in list(self.sessions):
            if not s.done.wait(0.5):
                s.close()
        for t in self._threads:
            t.join(self.timeout)
        if self._acceptor is not None:
            self._acceptor.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, etype, exc, tb):
        if etype is None:
            self.wait()
        self.stop()
        if etype is None and self.strict:
            self.check()
        return False

    def wait(self, timeout=PATIENCE):
        """Wait until the scripted sessions (or all started ones) ended."""
        end = time.monotonic() + timeout
        want = len(self.scripts) if self.scripts and not self.repeat else 0
        while len(self.sessions) < want and time.monotonic() < end:
            time.sleep(0.01)
        if len(self.sessions) < want:
            self.errors_extra.append("expected %d connection(s), got %d"
                                     % (want, len(self.sessions)))
        for s in list(self.sessions):
            s.done.wait(max(0, end - time.monotonic()))
        return self

    @property
    def session(self):
        if not self.sessions:
            raise AssertionError("no client connected")
        return self.sessions[0]

    @property
    def errors(self):
        out = list(self.errors_extra)
        for s in self.sessions:
            out += s.errors
        return out

    def check(self):
        if self.errors:
            raise AssertionError("fake server:\n" + "\n".join(self.errors))

    # -- internals -------------------------------------------------------

    def _log(self, msg):
        if not self.quiet:
            print("fakeserver: " + msg, file=sys.stderr, flush=True)

    def _prepare(self, ctx):
        # Record the name the client asked for (SNI) on the socket.
        if getattr(ctx, "_bm_sni", False):
            return

        def cb(sslsock, name, _ctx):
            sslsock.bm_sni = name
        ctx.sni_callback = cb
        ctx._bm_sni = True

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                s = Session(self, sock, len(self.sessions))
                self.sessions.append(s)
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, s):
        try:
            if self.tls is not None:
                s._handshake(self.tls)
            if self.handler is not None:
                self.handler(s)
            else:
                self._play(s)
        except Mismatch as e:
            s.error(str(e))
        except Exception as e:  # noqa: BLE001 - report, never hang
            s.error("fake server bug: %r" % e)
        finally:
            s.close()
            s.done.set()

    def _play(self, s):
        if not self.scripts:
            raise Mismatch("no script")
        if s.index >= len(self.scripts) and not self.repeat:
            raise Mismatch("unexpected connection #%d" % (s.index + 1))
        script = self.scripts[min(s.index, len(self.scripts) - 1)]
        for i, step in enumerate(script):
            try:
                step(s)
            except Mismatch as e:
                raise Mismatch("step %d %r: %s" % (i + 1, step, e))
            if s.closed:
                return
        if s.buf:
            s.error("client sent %d bytes the script did not read: %r"
                    % (len(s.buf), bytes(s.buf[:80])))


# --- SMTP sink ---------------------------------------------------------

DEFAULT_CAPS = ["PIPELINING", "SIZE 35882577", "8BITMIME",
                "ENHANCEDSTATUSCODES", "CHUNKING", "SMTPUTF8"]
DEFAULT_MECHS = ["XOAUTH2", "OAUTHBEARER", "PLAIN", "LOGIN"]


class SmtpSink(FakeServer):
    def __init__(self, *, tls_mode="none", context=None,
                 hostname="fake.example", capabilities=None,
                 auth_mechs=None, user=None, token=None, password=None,
                 require_auth=True, require_tls=None, hooks=None,
                 save_dir=None, **kw):
        if tls_mode not in ("none", "starttls", "implicit"):
            raise ValueError("tls_mode: none, starttls or implicit")
        if tls_mode != "none" and context is None:
            raise ValueError("TLS needs context=")
        super().__init__(handler=self._smtp,
                         tls=context if tls_mode == "implicit" else None,
                         starttls_context=context, **kw)
        self.tls_mode = tls_mode
        self.hostname = hostname
        self.capabilities = (DEFAULT_CAPS if capabilities is None
                             else list(capabilities))
        self.auth_mechs = (DEFAULT_MECHS if auth_mechs is None
                           else list(auth_mechs))
        self.user = user
        if isinstance(token, str):
            token = [token]
        self.tokens = token
        self.password = password
        self.require_auth = require_auth
        self.require_tls = (tls_mode == "starttls" if require_tls is None
                            else require_tls)
        self.hooks = hooks or {}
        self.save_dir = save_dir
        self.messages = []

    def wait(self, timeout=PATIENCE):
        end = time.monotonic() + timeout
        for s in list(self.sessions):
            s.done.wait(max(0, end - time.monotonic()))
        return self

    # -- helpers ---------------------------------------------------------

    def _hook(self, s, verb, arg, default):
        h = self.hooks.get(verb)
        r = h(s, arg) if callable(h) else h
        s.send((r if r is not None else default).rstrip("\r\n") + "\r\n")
        return r is None or r[:1] in ("2", "3")

    def _ehlo_lines(self, s):
        lines = [self.hostname]
        caps = list(self.capabilities)
        if self.tls_mode == "starttls" and not s.tls:
            caps.append("STARTTLS")
        if self.auth_mechs and (s.tls or not self.require_tls):
            caps.append("AUTH " + " ".join(self.auth_mechs))
        lines += caps
        return "\r\n".join(("250-" if i < len(lines) - 1 else "250 ") + l
                           for i, l in enumerate(lines))

    def _deliver(self, s, st, m):
        m.auth = st["authed"]
        m.session = s.index
        with self._lock:
            self.messages.append(m)
            n = len(self.messages)
        s.messages.append(m)
        if self.save_dir:
            with open(os.path.join(self.save_dir, "%04d.eml" % n), "wb") as f:
                f.write(m.data)

    # -- AUTH ------------------------------------------------------------

    def _b64(self, s, text):
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise Mismatch("AUTH: bad base64 %r" % text[:40])

    def _challenge(self, s, prompt=""):
        s.send("334 " + prompt + "\r\n")
        line = _text(s.readline())
        if line == "*":
            return None
        return line

    def _token_ok(self, tok):
        return self.tokens is None or tok in self.tokens

    def _auth(self, s, st, arg):
        parts = arg.split()
        if not parts:
            return s.send("501 5.5.4 AUTH needs a mechanism\r\n")
        mech = parts[0].upper()
        rec = {"mech": mech, "user": None, "ok": False,
               "inline": len(parts) > 1, "line_len": len(arg) + 5}
        s.auth.append(rec)
        if st["authed"]:
            return s.send("503 5.5.1 Already authenticated\r\n")
        if mech not in self.auth_mechs:
            return s.send("504 5.5.4 Unrecognized authentication type\r\n")
        if self.hooks.get("AUTH") is not None:
            r = self.hooks["AUTH"]
            r = r(s, arg) if callable(r) else r
            if r is not None:
                return s.send(r + "\r\n")
        if mech == "LOGIN":
            u = parts[1] if len(parts) > 1 else self._challenge(s, "VXNlcm5hbWU6")
            if u is None:
                return s.send("501 5.7.0 Cancelled\r\n")
            p = self._challenge(s, "UGFzc3dvcmQ6")
            if p is None:
                return s.send("501 5.7.0 Cancelled\r\n")
            user, pw = _text(self._b64(s, u)), _text(self._b64(s, p))
            rec["user"] = user
            ok = ((self.user is None or user == self.user) and
                  (self.password is None or pw == self.password))
            return self._auth_end(s, st, rec, ok)
        resp = parts[1] if len(parts) > 1 else self._challenge(s)
        if resp is None:
            return s.send("501 5.7.0 Cancelled\r\n")
        raw = self._b64(s, resp) if resp != "=" else b""
        if mech == "PLAIN":
            f = raw.split(b"\0")
            if len(f) != 3:
                raise Mismatch("AUTH PLAIN: not authzid NUL authcid NUL pw")
            user, pw = _text(f[1]), _text(f[2])
            rec["user"] = user
            ok = ((self.user is None or user == self.user) and
                  (self.password is None or pw == self.password))
            return self._auth_end(s, st, rec, ok)
        if mech == "XOAUTH2":
            m = re.fullmatch(rb"user=([^\x01]*)\x01auth=Bearer ([^\x01]+)"
                             rb"\x01\x01", raw)
            if not m:
                raise Mismatch("AUTH XOAUTH2: malformed response %r"
                               % raw[:30])
            rec["user"] = _text(m.group(1))
            ok = ((self.user is None or rec["user"] == self.user) and
                  self._token_ok(_text(m.group(2))))
            if not ok:
                err = {"status": "401", "schemes": "bearer",
                       "scope": "https://mail.google.com/"}
                ans = self._challenge(s, base64.b64encode(
                    json.dumps(err).encode()).decode())
                if ans != "":
                    s.error("XOAUTH2 error challenge must be answered with "
                            "an empty line, client sent %r" % ans)
            return self._auth_end(s, st, rec, ok)
        if mech == "OAUTHBEARER":
            m = re.fullmatch(rb"n,(?:a=([^,]*))?,\x01(.*)\x01\x01", raw,
                             re.S)
            if not m:
                raise Mismatch("AUTH OAUTHBEARER: malformed response %r"
                               % raw[:30])
            authz = _text(m.group(1) or b"")
            rec["user"] = authz.replace("=2C", ",").replace("=3D", "=")
            kv = dict(p.split(b"=", 1) for p in m.group(2).split(b"\x01")
                      if b"=" in p)
            rec["host"] = _text(kv.get(b"host", b""))
            rec["port"] = _text(kv.get(b"port", b""))
            a = _text(kv.get(b"auth", b""))
            ok = (a.startswith("Bearer ") and
                  (self.user is None or rec["user"] == self.user) and
                  self._token_ok(a[7:]))
            if not ok:
                err = {"status": "invalid_token",
                       "scope": "https://mail.google.com/"}
                ans = self._challenge(s, base64.b64encode(
                    json.dumps(err).encode()).decode())
                if ans != "AQ==":
                    s.error("OAUTHBEARER error challenge must be answered "
                            "with AQ== (%%x01), client sent %r" % ans)
            return self._auth_end(s, st, rec, ok)
        return s.send("504 5.5.4 Unrecognized authentication type\r\n")

    def _auth_end(self, s, st, rec, ok):
        rec["ok"] = ok
        if ok:
            st["authed"] = (rec["mech"], rec["user"])
            return s.send("235 2.7.0 Accepted\r\n")
        return s.send("535 5.7.8 Username and Password not accepted\r\n")

    # -- the dialogue ----------------------------------------------------

    def _smtp(self, s):
        st = {"helo": False, "authed": None, "msg": None, "bdat": None}
        self._hook(s, "GREETING", None, "220 %s ESMTP bearmail fake sink"
                   % self.hostname)
        while True:
            try:
                line = _text(s.readline())
            except Mismatch:
                if s.eof:
                    return
                raise
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            m = st["msg"]
            if st["bdat"] is not None and verb != "BDAT":
                st["bdat"] = None
                st["msg"] = None
                s.send("503 5.5.1 BDAT expected\r\n")
                continue
            if verb in ("EHLO", "HELO"):
                st["helo"] = True
                st["msg"] = None
                self._hook(s, verb, arg, self._ehlo_lines(s) if verb == "EHLO"
                           else "250 " + self.hostname)
            elif verb == "STARTTLS":
                if self.tls_mode != "starttls" or s.tls:
                    s.send("502 5.5.1 Not available\r\n")
                    continue
                s.send("220 2.0.0 Ready to start TLS\r\n")
                s.starttls()
                st = {"helo": False, "authed": None, "msg": None,
                      "bdat": None}
            elif verb == "QUIT":
                self._hook(s, "QUIT", arg, "221 2.0.0 Bye")
                return
            elif verb == "NOOP":
                self._hook(s, "NOOP", arg, "250 2.0.0 OK")
            elif verb == "RSET":
                st["msg"] = None
                self._hook(s, "RSET", arg, "250 2.0.0 OK")
            elif not st["helo"]:
                s.send("503 5.5.1 EHLO first\r\n")
            elif self.require_tls and not s.tls:
                s.send("530 5.7.0 Must issue a STARTTLS command first\r\n")
            elif verb == "AUTH":
                self._auth(s, st, arg)
            elif self.require_auth and not st["authed"]:
                s.send("530 5.7.0 Authentication Required\r\n")
            elif verb == "MAIL":
                mm = re.fullmatch(r"(?i)FROM:\s*<([^>]*)>\s*(.*)", arg)
                if m is not None or not mm:
                    s.send("503 5.5.1 Bad MAIL\r\n" if mm else
                           "501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
                elif self._hook(s, "MAIL", arg, "250 2.1.0 OK"):
                    m = st["msg"] = Message()
                    m.sender, m.sender_params = mm.group(1), mm.group(2)
            elif verb == "RCPT":
                mm = re.fullmatch(r"(?i)TO:\s*<([^>]+)>\s*(.*)", arg)
                if m is None or not mm:
                    s.send("503 5.5.1 MAIL first\r\n" if mm else
                           "501 5.5.4 Syntax: RCPT TO:<address>\r\n")
                elif self._hook(s, "RCPT", arg, "250 2.1.5 OK"):
                    m.rcpts.append(mm.group(1))
                    m.rcpt_params.append(mm.group(2))
            elif verb == "DATA":
                if m is None or not m.rcpts:
                    s.send("503 5.5.1 No valid recipients\r\n")
                elif self._hook(s, "DATA", arg, "354 Go ahead"):
                    m.data, m.raw = _read_data(s)
                    m.via = "DATA"
                    st["msg"] = None
                    if self._hook(s, "DATA_END", None, "250 2.0.0 OK queued"):
                        self._deliver(s, st, m)
            elif verb == "BDAT":
                mm = re.fullmatch(r"(\d+)(?: +(LAST))?", arg, re.I)
                if not mm:
                    s.send("501 5.5.4 Syntax: BDAT size [LAST]\r\n")
                    continue
                chunk = s.read_exact(int(mm.group(1)))
                if m is None or not m.rcpts:
                    s.send("503 5.5.1 No valid recipients\r\n")
                    continue
                st["bdat"] = True
                m.raw += chunk
                m.data += chunk
                m.via = "BDAT"
                if mm.group(2):
                    st["bdat"] = None
                    st["msg"] = None
                    if self._hook(s, "DATA_END", None, "250 2.0.0 OK queued"):
                        self._deliver(s, st, m)
                else:
                    self._hook(s, "BDAT", arg, "250 2.0.0 %d octets received"
                               % len(chunk))
            else:
                s.send("502 5.5.2 Command not recognized\r\n")


# --- command line ------------------------------------------------------

def _unescape(text):
    return text.encode("latin-1", "backslashreplace").decode(
        "unicode_escape").encode("latin-1")


def parse_script(text):
    """The script file language described in the module docstring."""
    steps = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        verb, _, arg = line.partition(" ")
        if verb == "expect":
            steps.append(expect(arg))
        elif verb in ("line", "reply"):
            steps.append(reply(arg))
        elif verb == "send":
            steps.append(send(_unescape(arg)))
        elif verb == "inject":
            steps.append(inject(_unescape(arg)))
        elif verb == "starttls":
            steps.append(starttls())
        elif verb == "delay":
            steps.append(delay(float(arg)))
        elif verb == "stall":
            steps.append(stall(float(arg) if arg else None))
        elif verb == "close":
            steps.append(close())
        elif verb == "data":
            steps.append(expect_data())
        elif verb == "eof":
            steps.append(expect_eof())
        elif verb == "read":
            steps.append(read(int(arg) if arg else 1))
        else:
            raise ValueError("script line %d: unknown step %r" % (n, verb))
    return steps


def main(argv=None):
    ap = argparse.ArgumentParser(description="bearmail fake server")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--script", help="script file")
    g.add_argument("--sink", action="store_true", help="SMTP sink")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the port number here")
    ap.add_argument("--tls", choices=["none", "implicit", "starttls"],
                    default="none")
    ap.add_argument("--pki", help="make or reuse a test PKI in this dir")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--repeat", action="store_true",
                    help="play the script for every connection")
    ap.add_argument("--connections", type=int, default=0,
                    help="exit after this many sessions ended")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--user")
    ap.add_argument("--token", action="append")
    ap.add_argument("--password")
    ap.add_argument("--save-dir")
    ap.add_argument("--no-auth", action="store_true",
                    help="sink: do not require AUTH")
    a = ap.parse_args(argv)

    ctx = None
    if a.pki:
        cert = os.path.join(a.pki, "server.pem")
        key = os.path.join(a.pki, "server.key")
        if not os.path.exists(cert):
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import pki as pkimod
            pkimod.PKI(a.pki)
        a.cert, a.key = cert, key
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    if a.tls != "none" and ctx is None:
        ap.error("--tls needs --pki or --cert/--key")

    common = dict(host=a.host, port=a.port, timeout=a.timeout, quiet=False)
    if a.sink:
        srv = SmtpSink(tls_mode=a.tls, context=ctx, user=a.user,
                       token=a.token, password=a.password,
                       require_auth=not a.no_auth, save_dir=a.save_dir,
                       **common)
    else:
        with open(a.script) as f:
            steps = parse_script(f.read())
        srv = FakeServer(steps, tls=ctx if a.tls == "implicit" else None,
                         starttls_context=ctx, repeat=True, **common)
    srv.start()
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.port)
        os.replace(tmp, a.port_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        if a.connections and len(srv.sessions) >= a.connections and \
                all(s.done.is_set() for s in srv.sessions):
            break
        stop.wait(0.05)
    srv.stop()
    for m in getattr(srv, "messages", []):
        print("message from=<%s> to=%s %d bytes" % (m.sender, m.rcpts,
                                                     len(m.data)))
    return 1 if srv.errors else 0


if __name__ == "__main__":
    sys.exit(main())
