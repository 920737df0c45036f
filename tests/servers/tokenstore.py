"""bearmail's token store as bearmail-auth leaves it, written by a test.

    from servers.tokenstore import write_token

    write_token(state_dir, "gmail", "ya29.access", refresh="1//rt",
                expires_in=3600, user="alice@example.com") -> path

STATE_DIR/tokens/ACCOUNT.token, mode 0600 from its creation, in
directories of mode 0700, as src/token.c wants them.  access None (or
"") leaves the access token out; refresh None leaves the refresh token
out; a negative expires_in makes the access token stale already.
"""

import os
import time

USER = "alice@example.com"


def write_token(state_dir, account, access, refresh=None, expires_in=3600,
                user=USER):
    state_dir = str(state_dir)
    tokdir = os.path.join(state_dir, "tokens")
    os.makedirs(tokdir, mode=0o700, exist_ok=True)
    os.chmod(state_dir, 0o700)
    os.chmod(tokdir, 0o700)
    now = int(time.time())
    lines = ["bearmail-token 1", "user " + user]
    if access:
        lines += ["access_token " + access,
                  "expires %d" % (now + expires_in),
                  "obtained %d" % (now - 60)]
    if refresh:
        lines += ["refresh_token " + refresh, "authorized %d" % (now - 60)]
    lines.append("scope https://mail.google.com/")
    path = os.path.join(tokdir, account + ".token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, ("\n".join(lines) + "\n").encode())
    finally:
        os.close(fd)
    return path
