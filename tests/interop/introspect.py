#!/usr/bin/python3
"""Minimal OAuth 2.0 token introspection endpoint (RFC 7662) for Dovecot.

Dovecot's oauth2 passdb (introspection_mode = post) sends
``POST /introspect`` with the form body ``token=TOKEN``; it also accepts
``GET /introspect?token=TOKEN`` and ``Authorization: Bearer TOKEN`` so the
other introspection modes work too.

Answers, always HTTP 200 (Dovecot takes any other status as a temporary
failure, not as a rejection):
  known active token    {"active": true, "email": USER}
  anything else         {"active": false}

The token table is a JSON file, read again on every request so that the
test harness (another process) can add and revoke tokens by rewriting it
atomically:  {"TOKEN": {"email": "user@example.test", "active": true}, ...}

Every request is appended as one JSON line to the log file (token length
and active flag only, never the token): tests use it to see that the
endpoint was consulted.

This is a stand-in until tests/servers/tokenserver.py (the project's fake
OAuth server) offers introspection; stack.py takes an introspection URL so
either can be used.

Usage: introspect.py --tokens FILE --log FILE --port-file FILE [--port N]
The bound port is written to --port-file once the socket listens.
"""

import argparse
import http.server
import json
import os
import sys
import threading
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "bearmail-interop-introspect/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        # Quiet: the JSON log below is the record.
        pass

    def _token(self, body):
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        query = urllib.parse.urlsplit(self.path).query
        for source in (body, query):
            fields = urllib.parse.parse_qs(source, keep_blank_values=True)
            if "token" in fields:
                return fields["token"][0]
            if "access_token" in fields:
                return fields["access_token"][0]
        return None

    def _answer(self, body):
        token = self._token(body)
        entry = None
        try:
            with open(self.server.tokens_path, encoding="utf-8") as f:
                table = json.load(f)
            if token is not None:
                entry = table.get(token)
        except (OSError, ValueError):
            table = {}
        if entry is not None and entry.get("active", True):
            reply = {"active": True, "email": entry["email"]}
            reply.update(entry.get("extra", {}))
        else:
            reply = {"active": False}
        with self.server.log_lock:
            with open(self.server.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({
                    "method": self.command,
                    "path": urllib.parse.urlsplit(self.path).path,
                    "token_len": len(token) if token else 0,
                    "active": reply["active"],
                    "email": reply.get("email"),
                }) + "\n")
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._answer("")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        self._answer(body)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.tokens_path = a.tokens
    srv.log_path = a.log
    srv.log_lock = threading.Lock()
    tmp = a.port_file + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write("%d\n" % srv.server_address[1])
    os.replace(tmp, a.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
