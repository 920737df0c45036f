"""Python standard-library clients for the interop stack.

SASL strings (FACTS.md: XOAUTH2 as Google documents it, OAUTHBEARER as
RFC 7628 section 3.1), TLS contexts that trust the stack's test CA, and
imaplib/poplib/smtplib helpers that the standard library lacks: binding
the client to a source address (Dovecot counts 127.0.0.1 -> 127.0.0.1 as
secure, so tests that want the real STARTTLS rules come from 127.0.0.2),
IMAP AUTHENTICATE with an initial response (RFC 4959 SASL-IR) and POP3
AUTH (RFC 5034), inline or after the server's "+" continuation.
"""

import base64
import imaplib
import poplib
import smtplib
import socket
import ssl

OTHER_SOURCE = "127.0.0.2"


def xoauth2(user, token):
    return "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)


def oauthbearer(user, token, host="127.0.0.1", port=None):
    gs2user = user.replace("=", "=3D").replace(",", "=2C")
    fields = "n,a=%s,\x01host=%s\x01" % (gs2user, host)
    if port is not None:
        fields += "port=%d\x01" % port
    return fields + "auth=Bearer %s\x01\x01" % token


def sasl(mech, user, token, port=None):
    if mech == "XOAUTH2":
        return xoauth2(user, token)
    if mech == "OAUTHBEARER":
        return oauthbearer(user, token, port=port)
    raise ValueError(mech)


def b64(text):
    return base64.b64encode(text.encode()).decode("ascii")


def failure_answer(mech):
    """What a client sends after the server's error challenge: an empty
    response for XOAUTH2, a single 0x01 for OAUTHBEARER (RFC 7628 3.2.3)."""
    return "\x01" if mech == "OAUTHBEARER" else ""


def tls_context(ca_file):
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = True
    return ctx


class SaslRecorder:
    """An smtplib/imaplib authobject: the initial response first, then the
    failure answer to any challenge; records every challenge it saw."""

    def __init__(self, mech, response):
        self.mech = mech
        self.response = response
        self.challenges = []

    # True once the response went out (inline, or after the first empty
    # challenge of a two-step exchange).
    _sent_initial = False

    def smtp(self, challenge=None):
        if challenge is None:
            return self.response
        self.challenges.append(challenge)
        if not self._sent_initial:
            self._sent_initial = True
            return self.response
        return failure_answer(self.mech)

    def imap(self, challenge):
        # imaplib wants bytes; challenge is already base64-decoded.
        return self.smtp(challenge).encode()


# --- SMTP ----------------------------------------------------------------

def smtp_auth(conn, mech, response, inline=True):
    """AUTH mech with response (raw, not base64) through smtplib.

    inline: send it on the AUTH line (RFC 4954 initial response);
    otherwise send "AUTH mech" and the response after the empty 334.
    Returns (code, text, challenges): challenges are the decoded 334 texts
    after the first exchange (the error JSON on failure)."""
    rec = SaslRecorder(mech, response)
    if inline:
        rec._sent_initial = True
    conn.ehlo_or_helo_if_needed()
    try:
        code, text = conn.auth(mech, rec.smtp, initial_response_ok=inline)
    except smtplib.SMTPAuthenticationError as e:
        code, text = e.smtp_code, e.smtp_error
    chal = [c for c in rec.challenges if c]
    return code, text.decode("utf-8", "replace") if isinstance(text, bytes) \
        else text, chal


def smtp_connect(stack, port_name, source=None, starttls=True, timeout=20):
    """An smtplib connection to the stack, TLS already up (STARTTLS on the
    submission port, implicit TLS on smtps), EHLO done."""
    ctx = tls_context(stack.ca_file)
    src = (source, 0) if source else None
    port = stack.ports[port_name]
    if port_name == "smtps":
        conn = smtplib.SMTP_SSL("localhost", port, context=ctx,
                                source_address=src, timeout=timeout)
    else:
        conn = smtplib.SMTP("localhost", port, source_address=src,
                            timeout=timeout)
        if starttls:
            conn.starttls(context=ctx)
    conn.ehlo("client.interop.test")
    return conn


# --- IMAP ----------------------------------------------------------------

class _FromMixin:
    source = None

    def _plain_socket(self, timeout):
        src = (self.source, 0) if self.source else None
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=src)


class IMAP(_FromMixin, imaplib.IMAP4):
    def __init__(self, host, port, source=None, timeout=20):
        self.source = source
        imaplib.IMAP4.__init__(self, host, port, timeout)

    def _create_socket(self, timeout):
        return self._plain_socket(timeout)


class IMAPS(_FromMixin, imaplib.IMAP4_SSL):
    def __init__(self, host, port, ssl_context, source=None, timeout=20):
        self.source = source
        imaplib.IMAP4_SSL.__init__(self, host, port, ssl_context=ssl_context,
                                   timeout=timeout)

    def _create_socket(self, timeout):
        return self.ssl_context.wrap_socket(self._plain_socket(timeout),
                                            server_hostname=self.host)


def imap_connect(stack, port_name, source=None, starttls=True):
    ctx = tls_context(stack.ca_file)
    if port_name == "imaps":
        return IMAPS("localhost", stack.ports["imaps"], ctx, source)
    conn = IMAP("localhost", stack.ports["imap"], source)
    if starttls:
        conn.starttls(ssl_context=ctx)
    return conn


def imap_auth(conn, mech, response, initial=True):
    """AUTHENTICATE mech; initial=True puts the response on the command
    line (SASL-IR), else it goes after the first "+".  Returns (typ, text,
    challenges) without raising on NO."""
    rec = SaslRecorder(mech, response)
    args = ["AUTHENTICATE", mech]
    if initial:
        rec._sent_initial = True
        args.append(b64(response))
    conn.literal = imaplib._Authenticator(rec.imap).process
    try:
        typ, dat = conn._simple_command(*args)
    except conn.error as e:
        return "NO", str(e), [c for c in rec.challenges if c]
    if typ == "OK":
        conn.state = "AUTH"
    text = dat[-1].decode("utf-8", "replace") if dat and dat[-1] else ""
    return typ, text, [c for c in rec.challenges if c]


# --- POP3 ----------------------------------------------------------------

class POP3(_FromMixin, poplib.POP3):
    def __init__(self, host, port, source=None, timeout=20):
        self.source = source
        poplib.POP3.__init__(self, host, port, timeout)

    def _create_socket(self, timeout):
        return self._plain_socket(timeout)


class POP3S(_FromMixin, poplib.POP3_SSL):
    def __init__(self, host, port, context, source=None, timeout=20):
        self.source = source
        poplib.POP3_SSL.__init__(self, host, port, context=context,
                                 timeout=timeout)

    def _create_socket(self, timeout):
        return self.context.wrap_socket(self._plain_socket(timeout),
                                        server_hostname=self.host)


def pop_connect(stack, port_name, source=None, starttls=True):
    ctx = tls_context(stack.ca_file)
    if port_name == "pop3s":
        return POP3S("localhost", stack.ports["pop3s"], ctx, source)
    conn = POP3("localhost", stack.ports["pop3"], source)
    if starttls:
        conn.stls(context=ctx)
    return conn


def pop_auth(conn, mech, response, initial=True):
    """AUTH mech (RFC 5034), inline or after "+".  Returns (ok, last line
    as text, challenges)."""
    challenges = []
    if initial:
        conn._putcmd("AUTH %s %s" % (mech, b64(response)))
    else:
        conn._putcmd("AUTH %s" % mech)
    sent_initial = initial
    while True:
        line, _ = conn._getline()
        if line == b"+" or line.startswith(b"+ "):
            data = line[1:].strip()
            if not sent_initial:
                sent_initial = True
                conn._putcmd(b64(response))
                continue
            challenges.append(base64.b64decode(data))
            conn._putcmd(b64(failure_answer(mech)))
            continue
        text = line.decode("utf-8", "replace")
        return line.startswith(b"+OK"), text, challenges


class Account:
    """A test user with a token the stack's endpoint takes as valid."""

    def __init__(self, stack, user, token):
        self.stack = stack
        self.user = user
        self.token = token

    def xoauth2(self, token=None):
        return xoauth2(self.user, token or self.token)

    def oauthbearer(self, port=None, token=None):
        return oauthbearer(self.user, token or self.token, port=port)

    def sasl(self, mech, port=None, token=None):
        return sasl(mech, self.user, token or self.token, port)

    def revoke(self):
        self.stack.revoke_token(self.token)
