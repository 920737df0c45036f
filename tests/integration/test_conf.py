"""Configuration errors end to end: every program refuses a bad file
with "file:line: ..." on standard error and exit status 78 (EX_CONFIG),
and a secret never shows in the message.  The value checks themselves
are covered by tests/unit/test_conf.c.
"""

import os

import pytest

PROGRAMS = [
    ("bearmail", ["root"], "Subject: x\n\nbody\n"),
    ("bearmail-auth", ["status"], None),
]


def clean_env(tmp_path, config):
    env = dict(os.environ)
    env["HOME"] = str(tmp_path / "home")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["BEARMAIL_CONFIG"] = str(config)
    return env


@pytest.mark.parametrize("prog,args,stdin", PROGRAMS)
@pytest.mark.parametrize("text,line,want", [
    ("[a]\nuser = a@example.com\nclient_id = c\nsmtp_hots = x\n", 4,
     "unknown key 'smtp_hots' in [a] (did you mean 'smtp_host'?)"),
    ("[defaults]\nqueue = soon\n", 2,
     "queue: 'soon' is not one of on-failure, always, never"),
    ("[a]\nclient_id = c\n", 1, "account a: user is required"),
    ("[a]\nuser = a@example.com\nclient_secret = hunter2 x\n", 3,
     "client_secret: spaces or control characters in the secret"),
])
def test_bad_config_exits_78(tmp_path, bm_bin, run, prog, args, stdin,
                             text, line, want):
    conf = tmp_path / "bearmail.conf"
    conf.write_text(text)
    r = run([bm_bin(prog)] + args, input=stdin,
            env=clean_env(tmp_path, conf))
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert "%s:%d: %s" % (conf, line, want) in r.stderr
    assert "hunter2" not in r.stderr + r.stdout


@pytest.mark.parametrize("prog,args,stdin", PROGRAMS)
def test_missing_explicit_file(tmp_path, bm_bin, run, prog, args, stdin):
    missing = tmp_path / "nowhere.conf"
    r = run([bm_bin(prog), "-C", str(missing)] + args, input=stdin,
            env=clean_env(tmp_path, tmp_path / "unused.conf"))
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert str(missing) in r.stderr
