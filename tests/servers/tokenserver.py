#!/usr/bin/python3
"""A fake OAuth 2.0 provider for bearmail's tests and demos.

Standard library only; listens on 127.0.0.1 only.  It plays Google's and
Microsoft's endpoints closely enough for bearmail-auth: authorization code
with PKCE (S256), refresh (optionally rotating the refresh token), the
device flow (RFC 8628), the jwt-bearer grant of service accounts (RS256
checked with the public key), revocation (RFC 7009) and introspection
(RFC 7662, for Dovecot-style checks).  It counts requests per endpoint
and can be told to fail in each of the ways real providers do.

In-process use (pytest)
-----------------------

    from servers.tokenserver import TokenServer

    with TokenServer(rotate=True) as ts:
        rt = ts.issue_refresh("alice@example.com")   # as if logged in
        ... run bearmail-auth with token_endpoint = ts.token_url ...
        assert ts.counts["token"] == 1
        ts.fail("token", "invalid_grant")            # next token request
        ts.fail("token", "500", times=3)

TokenServer(client_id="test-client", client_secret="test-secret",
            rotate=False, expires_in=3600, device_interval=1,
            user="alice@example.com", public_key=None, sa_email=None,
            host="127.0.0.1", port=0)
    client_secret  None: a public client (no secret expected)
    rotate         every refresh returns a new refresh token and retires
                   the old one (Microsoft)
    expires_in     lifetime given to access tokens
    public_key     PEM (SubjectPublicKeyInfo or PKCS#1) of the service
                   account; sa_email its client_email (iss)
  URLs: base, auth_url, token_url, device_url, revoke_url, introspect_url
  counts           dict endpoint -> requests ("authorize", "token",
                   "devicecode", "revoke", "introspect", "other")
  requests         list of (endpoint, dict of form/query fields)
  last_authorize   the query of the last authorize request (dict)
  fail(endpoint, mode, times=1)  queue failures; modes:
      "500"  "503json" (temporarily_unavailable)  "timeout" (sleeps
      fail_sleep seconds, default 5, then 500)  "close" (no reply)
      "garbage" (200, not JSON)  "huge" (200, 2 MB)  "invalid_grant"
      "invalid_client"  "unauthorized_client"  "invalid_scope"
      "access_denied" (authorize: redirect with error=)
      "wrong_state" (authorize: redirect with another state)
  device_script    list of poll answers for the next device code:
                   "pending", "slow_down", "expired", "denied", "ok"
                   (default ["pending", "ok"]); device_polls records the
                   time of each poll
  issue_refresh(user) -> str   a valid refresh token
  issue_access(user) -> str    a valid access token
  access_tokens, refresh_tokens  dict token -> user (live ones)
  revoked          set of revoked tokens
  jwt_claims       the claims of the last accepted assertion
  sa_scopes        None, or the set of scopes delegated to the service
                   account (others get unauthorized_client)
  clock_skew       seconds the server's clock is ahead (Invalid JWT)
  fail_sleep       seconds a "timeout" failure waits

Command line (README demo):

    python3 tests/servers/tokenserver.py [--port N] [--rotate]
        [--public-client] [--expires-in S]

prints its endpoints and a configuration snippet, then serves until
interrupted.
"""

import base64
import hashlib
import http.server
import json
import re
import secrets
import sys
import threading
import time
import urllib.parse

_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    s = s + "=" * (-len(s) % 4)
    return base64.urlsafe_b64decode(s.encode())


# ---- just enough DER to read an RSA public key ----

def _der(data, pos):
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    return tag, data[pos:pos + length], pos + length


def _der_seq(data):
    items, pos = [], 0
    while pos < len(data):
        tag, val, pos = _der(data, pos)
        items.append((tag, val))
    return items


def rsa_public_numbers(pem):
    """(n, e) from a PEM public key (SPKI or PKCS#1)."""
    body = "".join(l for l in pem.strip().splitlines()
                   if not l.startswith("-----"))
    der = base64.b64decode(body)
    tag, seq, _ = _der(der, 0)
    items = _der_seq(seq)
    if items[0][0] == 0x30:             # SPKI: AlgorithmIdentifier, BIT STRING
        bits = items[1][1][1:]           # skip the unused-bits byte
        _, seq, _ = _der(bits, 0)
        items = _der_seq(seq)
    n = int.from_bytes(items[0][1], "big")
    e = int.from_bytes(items[1][1], "big")
    return n, e


def rs256_verify(n, e, msg, sig):
    k = (n.bit_length() + 7) // 8
    if len(sig) != k:
        return False
    em = pow(int.from_bytes(sig, "big"), e, n).to_bytes(k, "big")
    t = _SHA256_PREFIX + hashlib.sha256(msg).digest()
    want = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    return secrets.compare_digest(em, want)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tokenserver/1"

    def log_message(self, fmt, *args):     # quiet
        pass

    def _send(self, code, body=b"", ctype="application/json",
              headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _form(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode() if n else ""
        self.ts.raw_bodies.append(raw)
        return {k: v[0] for k, v in
                urllib.parse.parse_qs(raw, keep_blank_values=True).items()}

    def _endpoint(self):
        path = urllib.parse.urlsplit(self.path).path
        return {"/authorize": "authorize", "/token": "token",
                "/devicecode": "devicecode", "/revoke": "revoke",
                "/introspect": "introspect"}.get(path, "other")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method):
        ts = self.ts
        ep = self._endpoint()
        q = {k: v[0] for k, v in urllib.parse.parse_qs(
            urllib.parse.urlsplit(self.path).query,
            keep_blank_values=True).items()}
        form = self._form() if method == "POST" else {}
        with ts.lock:
            ts.counts[ep] = ts.counts.get(ep, 0) + 1
            ts.requests.append((ep, dict(q, **form)))
            mode = ts._take_failure(ep)
        if mode is not None and self._generic_failure(mode):
            return
        if ep == "authorize" and method == "GET":
            return self._authorize(q, mode)
        if ep == "token" and method == "POST":
            return self._token(form, mode)
        if ep == "devicecode" and method == "POST":
            return self._devicecode(form)
        if ep == "revoke" and method == "POST":
            return self._revoke(form)
        if ep == "introspect":
            return self._introspect(method, q, form)
        self._send(404, {"error": "not_found"})

    def _generic_failure(self, mode):
        if mode == "500":
            self._send(500, "internal error", ctype="text/plain")
        elif mode == "503json":
            self._send(503, {"error": "temporarily_unavailable"})
        elif mode == "timeout":
            time.sleep(self.ts.fail_sleep)
            self._send(500, "too late", ctype="text/plain")
        elif mode == "close":
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(2)
        elif mode == "garbage":
            self._send(200, "<html>this is not json", ctype="text/html")
        elif mode == "huge":
            self._send(200, "{\"x\":\"" + "A" * (2 << 20) + "\"}")
        elif mode in ("invalid_grant", "invalid_scope",
                      "unauthorized_client"):
            desc = {"invalid_grant": "Token has been expired or revoked.",
                    "invalid_scope": "scope not allowed",
                    "unauthorized_client": "Client is unauthorized to "
                    "retrieve access tokens using this method"}[mode]
            self._send(400, {"error": mode, "error_description": desc})
        elif mode == "invalid_client":
            self._send(401, {"error": "invalid_client",
                             "error_description": "The OAuth client was "
                             "not found."})
        else:
            return False
        return True

    # ---- endpoints ----

    def _authorize(self, q, mode):
        ts = self.ts
        with ts.lock:
            ts.last_authorize = q
        redirect = q.get("redirect_uri", "")
        if (q.get("client_id") != ts.client_id or
                q.get("response_type") != "code" or
                not re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\]):\d+(/|$)",
                             redirect)):
            return self._send(400, "bad authorization request",
                              ctype="text/plain")
        if q.get("code_challenge_method") != "S256" or \
                not q.get("code_challenge"):
            return self._send(400, "PKCE S256 required", ctype="text/plain")
        state = q.get("state", "")
        if mode == "access_denied":
            params = {"error": "access_denied", "state": state}
        else:
            code = "code-" + secrets.token_urlsafe(16)
            with ts.lock:
                ts.codes[code] = {"challenge": q["code_challenge"],
                                  "redirect_uri": redirect,
                                  "user": q.get("login_hint") or ts.user,
                                  "scope": q.get("scope", "")}
            if mode == "wrong_state":
                state = "forged-" + secrets.token_urlsafe(8)
            params = {"code": code, "state": state}
        sep = "&" if "?" in redirect else "?"
        self._send(302, "", ctype="text/plain", headers={
            "Location": redirect + sep + urllib.parse.urlencode(params)})

    def _client_ok(self, form):
        ts = self.ts
        if form.get("client_id") != ts.client_id:
            return False
        if ts.client_secret is not None:
            return form.get("client_secret") == ts.client_secret
        return True

    def _grant(self, user, scope, refresh=True):
        ts = self.ts
        body = {"access_token": ts.issue_access(user),
                "expires_in": ts.expires_in, "token_type": "Bearer",
                "scope": scope or "https://mail.google.com/"}
        if refresh:
            body["refresh_token"] = ts.issue_refresh(user)
        return body

    def _oauth_error(self, err, desc=None, code=400):
        body = {"error": err}
        if desc:
            body["error_description"] = desc
        self._send(code, body)

    def _token(self, form, mode):
        ts = self.ts
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt(form)
        if not self._client_ok(form):
            return self._oauth_error("invalid_client", code=401)
        if grant == "authorization_code":
            with ts.lock:
                c = ts.codes.pop(form.get("code", ""), None)
            if c is None:
                return self._oauth_error("invalid_grant", "Bad code.")
            verifier = form.get("code_verifier", "")
            if (c["redirect_uri"] != form.get("redirect_uri") or
                    b64url(hashlib.sha256(verifier.encode()).digest()) !=
                    c["challenge"]):
                return self._oauth_error("invalid_grant",
                                         "PKCE or redirect_uri mismatch")
            return self._send(200, self._grant(c["user"], c["scope"]))
        if grant == "refresh_token":
            rt = form.get("refresh_token", "")
            with ts.lock:
                user = ts.refresh_tokens.get(rt)
                if user is not None and ts.rotate:
                    del ts.refresh_tokens[rt]
            if user is None:
                return self._oauth_error("invalid_grant",
                                         "Token has been expired or "
                                         "revoked.")
            return self._send(200, self._grant(user, form.get("scope"),
                                               refresh=ts.rotate))
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            with ts.lock:
                ts.device_polls.append(time.monotonic())
                d = ts.device_codes.get(form.get("device_code", ""))
                step = d["script"].pop(0) if d and d["script"] else "ok"
            if d is None:
                return self._oauth_error("invalid_grant", "Bad device code")
            if step == "pending":
                return self._oauth_error("authorization_pending")
            if step == "slow_down":
                return self._oauth_error("slow_down")
            if step == "expired":
                return self._oauth_error("expired_token")
            if step == "denied":
                return self._oauth_error("access_denied")
            with ts.lock:
                ts.device_codes.pop(form.get("device_code", ""), None)
            return self._send(200, self._grant(d["user"], d["scope"]))
        return self._oauth_error("unsupported_grant_type")

    def _jwt(self, form):
        ts = self.ts
        parts = form.get("assertion", "").split(".")
        try:
            if len(parts) != 3 or ts.public_numbers is None:
                raise ValueError("malformed")
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
            n, e = ts.public_numbers
            if header.get("alg") != "RS256" or not rs256_verify(
                    n, e, (parts[0] + "." + parts[1]).encode(), sig):
                raise ValueError("signature")
        except (ValueError, KeyError, TypeError):
            return self._oauth_error("invalid_grant", "Invalid JWT "
                                     "Signature.")
        now = time.time() + ts.clock_skew
        if (claims.get("aud") != ts.token_url or
                claims.get("iss") != ts.sa_email or
                not isinstance(claims.get("iat"), int) or
                not isinstance(claims.get("exp"), int) or
                claims["exp"] - claims["iat"] > 3600 or
                abs(claims["iat"] - now) > 300 or claims["exp"] < now):
            return self._oauth_error("invalid_grant", "Invalid JWT: Token "
                                     "must be a short-lived token (60 "
                                     "minutes) and in a reasonable "
                                     "timeframe. Check your iat and exp "
                                     "values in the JWT claim.")
        if ts.sa_scopes is not None and claims.get("scope") not in \
                ts.sa_scopes:
            return self._oauth_error("unauthorized_client",
                                     "Client is unauthorized to retrieve "
                                     "access tokens using this method.")
        with ts.lock:
            ts.jwt_claims = claims
        self._send(200, self._grant(claims.get("sub") or ts.sa_email,
                                    claims.get("scope"), refresh=False))

    def _devicecode(self, form):
        ts = self.ts
        if form.get("client_id") != ts.client_id:
            return self._oauth_error("invalid_client", code=401)
        dc = "dc-" + secrets.token_urlsafe(16)
        uc = "%04d-%04d" % (secrets.randbelow(10000), secrets.randbelow(10000))
        with ts.lock:
            ts.device_codes[dc] = {"script": list(ts.device_script),
                                   "user": ts.user,
                                   "scope": form.get("scope", "")}
        self._send(200, {"device_code": dc, "user_code": uc,
                         "verification_uri": ts.base + "/device",
                         "expires_in": ts.device_expires_in,
                         "interval": ts.device_interval,
                         "message": "Open the page and enter " + uc})

    def _revoke(self, form):
        ts = self.ts
        tok = form.get("token", "")
        with ts.lock:
            known = (ts.refresh_tokens.pop(tok, None) is not None or
                     ts.access_tokens.pop(tok, None) is not None)
            if known:
                ts.revoked.add(tok)
        if not known:
            return self._oauth_error("invalid_token")
        self._send(200, {})

    def _introspect(self, method, q, form):
        ts = self.ts
        tok = form.get("token") or q.get("token")
        auth = self.headers.get("Authorization", "")
        if not tok and auth.lower().startswith("bearer "):
            tok = auth[7:].strip()
        with ts.lock:
            user = ts.access_tokens.get(tok or "")
        if user is None:
            return self._send(200, {"active": False})
        self._send(200, {"active": True, "email": user, "username": user,
                         "scope": "https://mail.google.com/"})


class TokenServer:
    def __init__(self, client_id="test-client", client_secret="test-secret",
                 rotate=False, expires_in=3600, device_interval=1,
                 user="alice@example.com", public_key=None, sa_email=None,
                 host="127.0.0.1", port=0):
        self.client_id = client_id
        self.client_secret = client_secret
        self.rotate = rotate
        self.expires_in = expires_in
        self.device_interval = device_interval
        self.device_expires_in = 600
        self.device_script = ["pending", "ok"]
        self.user = user
        self.public_numbers = (rsa_public_numbers(public_key)
                               if public_key else None)
        self.sa_email = sa_email
        self.sa_scopes = None          # None: any scope is delegated
        self.fail_sleep = 5
        self.clock_skew = 0            # seconds added to the server's clock
        self.lock = threading.Lock()
        self.counts = {}
        self.requests = []
        self.raw_bodies = []
        self.last_authorize = None
        self.codes = {}
        self.device_codes = {}
        self.device_polls = []
        self.access_tokens = {}
        self.refresh_tokens = {}
        self.revoked = set()
        self.jwt_claims = None
        self._failures = {}
        handler = type("H", (_Handler,), {"ts": self})
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self.base = "http://%s:%d" % (self.host, self.port)
        self.auth_url = self.base + "/authorize"
        self.token_url = self.base + "/token"
        self.device_url = self.base + "/devicecode"
        self.revoke_url = self.base + "/revoke"
        self.introspect_url = self.base + "/introspect"
        self._thread = None

    def set_public_key(self, pem, sa_email):
        self.public_numbers = rsa_public_numbers(pem)
        self.sa_email = sa_email

    def start(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def fail(self, endpoint, mode, times=1):
        with self.lock:
            self._failures.setdefault(endpoint, []).extend([mode] * times)

    def _take_failure(self, endpoint):
        q = self._failures.get(endpoint)
        return q.pop(0) if q else None

    def issue_refresh(self, user=None):
        tok = "rt-" + secrets.token_urlsafe(24)
        with self.lock:
            self.refresh_tokens[tok] = user or self.user
        return tok

    def issue_access(self, user=None):
        tok = "at-" + secrets.token_urlsafe(32)
        with self.lock:
            self.access_tokens[tok] = user or self.user
        return tok

    def count(self, endpoint):
        with self.lock:
            return self.counts.get(endpoint, 0)


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="fake OAuth provider")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rotate", action="store_true")
    ap.add_argument("--public-client", action="store_true")
    ap.add_argument("--expires-in", type=int, default=3600)
    a = ap.parse_args(argv)
    ts = TokenServer(port=a.port, rotate=a.rotate, expires_in=a.expires_in,
                     client_secret=None if a.public_client else "test-secret")
    ts.start()
    print("fake OAuth provider on %s" % ts.base)
    print("\n[demo]\nprovider = oauth2\nuser = %s\nclient_id = %s" %
          (ts.user, ts.client_id))
    if ts.client_secret:
        print("client_secret = %s" % ts.client_secret)
    print("auth_endpoint = %s\ntoken_endpoint = %s\ndevice_endpoint = %s\n"
          "revoke_endpoint = %s\nscope = https://mail.google.com/\n" %
          (ts.auth_url, ts.token_url, ts.device_url, ts.revoke_url))
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        ts.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
