#!/usr/bin/python3
"""The README's demo: one message through bearmail, OAuth refresh included.

Starts, on 127.0.0.1 only, the bundled fake OAuth provider and an SMTP
submission server that wants STARTTLS and accepts only access tokens the
provider issued.  Stores a refresh token with `bearmail-auth import`, as
`bearmail-auth login` would after a browser consent, then pipes a cron-style
message into `bearmail -v`.  bearmail finds no access token, has
bearmail-auth refresh one, authenticates with XOAUTH2 and submits.  The
demo prints the redacted transcript, then what the server received.

Usage: demo.py BUILDDIR    (exits non-zero if anything went wrong)
"""
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True

from servers.fakeserver import SmtpSink          # noqa: E402
from servers.pki import PKI                      # noqa: E402
from servers.tokenserver import TokenServer      # noqa: E402

USER = "alice@example.com"
MESSAGE = b"""From: root (Cron Daemon)
To: root
Subject: Cron <root@host> /usr/local/bin/backup

backup finished: 42 files, 0 errors
"""


def say(text):
    print("demo: " + text, flush=True)


def main(builddir):
    builddir = pathlib.Path(builddir).resolve()
    bearmail = builddir / "src" / "bearmail"
    auth = builddir / "src" / "bearmail-auth"
    with tempfile.TemporaryDirectory(prefix="bearmail-demo-") as tmp, \
            TokenServer(user=USER, expires_in=60) as provider:
        tmp = pathlib.Path(tmp)
        pki = PKI(str(tmp / "pki"))

        class IssuedTokens:
            """The server accepts what the provider has issued, live."""
            def __contains__(self, token):
                return token in provider.access_tokens

        with SmtpSink(tls_mode="starttls", context=pki.server_context(),
                      user=USER, token=IssuedTokens()) as server:
            conf = tmp / "bearmail.conf"
            conf.write_text("\n".join([
                "[defaults]",
                "queue = never",
                "log = stderr",
                "state_dir = %s" % (tmp / "state"),
                "queue_dir = %s" % (tmp / "queue"),
                "",
                "[demo]",
                "provider = oauth2",
                "user = " + USER,
                "client_id = %s" % provider.client_id,
                "client_secret = %s" % provider.client_secret,
                "token_endpoint = %s" % provider.token_url,
                "scope = https://mail.google.com/",
                "smtp_host = localhost",
                "smtp_port = %d" % server.port,
                "smtp_tls = starttls",
                "ca_file = %s" % pki.ca.cert,
                "domain = example.com",
                ""]))
            env = dict(os.environ, BEARMAIL_AUTH=str(auth),
                       HOME=str(tmp), TMPDIR=str(tmp))

            say("fake OAuth provider at %s, SMTP server (STARTTLS) on "
                "127.0.0.1:%d" % (provider.base, server.port))
            # Access tokens live 60 s here: less than the refresh margin, so
            # bearmail must refresh before it sends.
            say("storing a refresh token: bearmail-auth import demo")
            refresh = provider.issue_refresh(USER)
            p = subprocess.run([str(auth), "-C", str(conf), "import", "demo"],
                               input=refresh.encode(), env=env,
                               capture_output=True)
            if p.returncode != 0:
                sys.stderr.write(p.stderr.decode())
                return 1
            requests_before = provider.count("token")

            say("sending: bearmail -C ... -v -i root < cron output")
            p = subprocess.run([str(bearmail), "-C", str(conf), "-v", "-i",
                                "-FCronDaemon", "root"],
                               input=MESSAGE, env=env, capture_output=True)
            sys.stdout.write(p.stderr.decode("utf-8", "replace"))
            if p.returncode != 0:
                say("bearmail exited %d" % p.returncode)
                return 1
            server.wait()
            refreshes = provider.count("token") - requests_before
            say("token endpoint requests during the send: %d (a refresh)"
                % refreshes)
            if refreshes != 1:
                return 1
            if len(server.messages) != 1:
                say("the server received %d messages" % len(server.messages))
                return 1
            m = server.messages[0]
            say("the server received, from <%s> to %s:" %
                (m.sender, ", ".join("<%s>" % r for r in m.rcpts)))
            for line in m.data.decode("utf-8", "replace").splitlines():
                print("    | " + line)
            for secret in [refresh] + list(provider.access_tokens):
                if secret in p.stderr.decode("utf-8", "replace"):
                    say("a token reached the transcript")
                    return 1
            say("done: delivered with a refreshed token, no secret shown")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
