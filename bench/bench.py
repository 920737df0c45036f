#!/usr/bin/python3
"""bearmail benchmarks: bearmail against msmtp and curl on one loopback sink.

Run through bench/run.sh (or "make bench"), which builds the tools and
sets BM_BUILDDIR and BM_SRCDIR.  Writes a markdown report to standard
output and to bench/results/latest.md (--out to change).  See bench/README
for the method.

Every measured command runs under bench/bm-run (a small C runner: wall time
from fork to reap, user+sys CPU and peak RSS from wait4()), against
bench/bm-sink (C, OpenSSL, discards at line rate) on 127.0.0.1, with
certificates made at start by the openssl CLI.  Every loop is bounded in
count and in time (bm-run -t).  Rows that cannot run yet print one line
"not available yet: ..." and the run goes on.

Options: --quick (fewer runs, for a smoke test), --rows 1,2,... (a
subset), --profile (callgrind of bearmail's row 1 run, top functions),
--out FILE, --keep (keep the work directory).

Environment: BM_BENCH_INTEROP=1 adds the Postfix/Dovecot stack of
tests/interop as a second target for rows 1 and 3, and as the server of
row 6 (needs root and tests/interop/install.sh); without it those rows say
how to enable it.  BM_BENCH_ALT_BEARMAIL and BM_BENCH_ALT_ENV add a second
bearmail (a patched build) to rows 1 and 3 (bench/README).
"""

import argparse
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("BM_SRCDIR") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BM_BUILDDIR") or os.getcwd()
sys.path.insert(0, os.path.join(SRC, "tests"))

BEARMAIL = os.path.join(BUILD, "src", "bearmail")
BEARMAIL_AUTH = os.path.join(BUILD, "src", "bearmail-auth")
BEARMAIL_FETCH = os.path.join(BUILD, "src", "bearmail-fetch")
BMRUN = os.path.join(BUILD, "bench", "bm-run")
NOTHING = os.path.join(BUILD, "bench", "bm-nothing")
RAWTLS = os.path.join(BUILD, "bench", "bm-rawtls")
SINK = os.path.join(BUILD, "bench", "bm-sink")
# Another bearmail to compare in rows 1 and 3 (a patched build), with
# extra environment "K=V K=V" ({dir} is the client's config directory).
ALT = os.environ.get("BM_BENCH_ALT_BEARMAIL")
ALT_ENV = os.environ.get("BM_BENCH_ALT_ENV", "")
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
MSMTP = shutil.which("msmtp")
CURL = shutil.which("curl")

USER = "alice@example.com"
RCPT = "bob@example.org"
WALL_LIMIT = 900            # seconds any one bm-run may take


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- measuring ------------------------------------------------------------

class Failed(Exception):
    pass


def bmrun(argv, n, warm=1, stdin=None, conc=1, expect=0, env=None,
          limit=WALL_LIMIT, out=None):
    """Run argv n times under bm-run; a dict of its key=value results."""
    cmd = [BMRUN, "-n", str(n), "-w", str(warm), "-c", str(conc),
           "-t", str(limit), "-e", str(expect)]
    if stdin:
        cmd += ["-i", stdin]
    if out:
        cmd += ["-o", out]
    cmd += ["--"] + list(argv)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       timeout=limit + 60)
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    r = {}
    for kv in line.split():
        k, _, v = kv.partition("=")
        r[k] = float(v) if re.fullmatch(r"[0-9.]+", v) else v
    r["ok"] = p.returncode == 0 and r.get("failed", 1) == 0
    if not r["ok"]:
        r["why"] = "exit %s in %d of %d runs%s" % (
            int(r.get("first_exit", -1)), int(r.get("failed", 0)),
            n * conc, (": " + p.stderr.strip()[:200]) if p.stderr else "")
    return r


def interleave(cases, runs, warm=1, target=None, limit=WALL_LIMIT):
    """Measure cases round-robin, one run of each per round, so that a
    change in the machine's background load hits every client alike.

    cases: list of (name, argv, stdin, env, expected exit status).
    Returns name -> dict like bmrun()'s: medians of wall, cpu, user, sys
    and rss over the runs, minimums of wall and cpu, ok/why.  With a
    target that counts deliveries, every run must deliver one message.
    """
    samples = {c[0]: [] for c in cases}
    bad = {}
    deadline = time.monotonic() + limit
    for i in range(warm + runs):
        for name, argv, stdin, env, code in cases:
            if name in bad:
                continue
            if time.monotonic() > deadline:
                bad.setdefault(name, "time limit of %d s reached" % limit)
                continue
            before = target.delivered() if target else None
            r = bmrun(argv, 1, 0, stdin=stdin, env=env, expect=code)
            if not r["ok"]:
                bad[name] = r["why"]
                continue
            if before is not None and code == 0:
                got = target.delivered() - before
                if got != 1:
                    bad[name] = "the sink took %d messages, not 1" % got
                    continue
            if i >= warm:
                samples[name].append(r)
    out = {}
    for name, rs in samples.items():
        if name in bad or not rs:
            out[name] = {"ok": False, "why": bad.get(name, "no runs")}
            continue
        med = lambda k: statistics.median(x[k] for x in rs)
        out[name] = {"ok": True, "runs": len(rs), "wall_ms": med("wall_ms"),
                     "cpu_ms": med("cpu_ms"), "user_ms": med("user_ms"),
                     "sys_ms": med("sys_ms"), "rss_kb": med("rss_kb"),
                     "rss_max_kb": max(x["rss_kb"] for x in rs),
                     "wall_min_ms": min(x["wall_ms"] for x in rs),
                     "cpu_min_ms": min(x["cpu_ms"] for x in rs)}
    return out


def loadavg():
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return "%.*f" % (digits, v)


def ratio(peer, mine):
    if not peer or not mine:
        return "-"
    return "%.1f×" % (peer / mine)


# ---- fixtures -------------------------------------------------------------

def run_quiet(argv, cwd=None):
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)


def make_chain(d, kind):
    """A test CA and a localhost server certificate (EC P-256 or RSA-2048)."""
    os.makedirs(d)
    key = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
           if kind == "ec" else ["-newkey", "rsa:2048"])
    run_quiet([OPENSSL, "req", "-x509"] + key + [
        "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=bearmail bench CA (%s)" % kind,
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign"], cwd=d)
    run_quiet([OPENSSL, "req"] + key + [
        "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost"], cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints = CA:FALSE\n"
                "keyUsage = critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage = serverAuth\n"
                "subjectAltName = DNS:localhost,IP:127.0.0.1\n")
    run_quiet([OPENSSL, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem",
               "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
               "-extfile", "server.ext", "-out", "server.pem"], cwd=d)
    return os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"), \
        os.path.join(d, "server.key")


class Target:
    """Where clients send: host, STARTTLS and implicit-TLS ports, CA, token."""

    def __init__(self, name, host, starttls, tls, ca, token, user=USER):
        self.name, self.host = name, host
        self.ports = {"starttls": starttls, "tls": tls}
        self.ca, self.token, self.user = ca, token, user

    def delivered(self):
        return None         # unknown: not a bm-sink


class Sink(Target):
    def __init__(self, work, name, kind, token, mechs="XOAUTH2"):
        d = os.path.join(work, name)
        ca, cert, key = make_chain(d, kind)
        self.log = os.path.join(d, "sink.log")
        portfile = os.path.join(d, "ports")
        argv = [SINK, "--cert", cert, "--key", key, "--port-file", portfile,
                "--log", self.log, "--max-seconds", "3600", "--mechs", mechs]
        if token:
            argv += ["--token", token]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(d, "sink.err"),
                                                 "w"))
        deadline = time.monotonic() + 10
        while not os.path.exists(portfile):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise Failed("bm-sink did not start (see %s/sink.err)" % d)
            time.sleep(0.02)
        ports = dict(l.split() for l in open(portfile).read().splitlines())
        Target.__init__(self, name, "localhost", int(ports["starttls"]),
                        int(ports["tls"]), ca, token)

    def delivered(self):
        try:
            with open(self.log) as f:
                return sum(1 for l in f if l.startswith("msg "))
        except OSError:
            return 0

    def mechs(self):
        with open(self.log) as f:
            return [l.split()[2] for l in f if l.startswith("msg ")]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def write_token(state, account, access, expires, refresh="1//bench-refresh",
                user=USER):
    tokdir = os.path.join(state, "tokens")
    os.makedirs(tokdir, mode=0o700, exist_ok=True)
    os.chmod(state, 0o700)
    now = int(time.time())
    text = ("bearmail-token 1\nuser %s\naccess_token %s\nexpires %d\n"
            "obtained %d\nrefresh_token %s\nauthorized %d\n"
            "scope https://mail.google.com/\n" % (
                user, access, expires, now - 60, refresh, now - 60))
    path = os.path.join(tokdir, account + ".token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, text.encode())
    os.close(fd)


class Clients:
    """Configuration files and argv of each client for one target + mode."""

    def __init__(self, work, env, target, mode, token_endpoint=None,
                 account="bench"):
        self.t, self.mode, self.env = target, mode, env
        d = os.path.join(work, "c-%s-%s-%s" % (target.name, mode, account))
        os.makedirs(d)
        self.dir = d
        self.state = os.path.join(d, "state")
        write_token(self.state, account, target.token or "ya29.none",
                    int(time.time()) + 86400, user=target.user)
        port = target.ports[mode]
        self.bm_conf = os.path.join(d, "bearmail.conf")
        with open(self.bm_conf, "w") as f:
            f.write("\n".join([
                "[defaults]", "log = %s" % os.path.join(d, "bearmail.log"),
                "state_dir = %s" % self.state,
                "queue_dir = %s" % os.path.join(d, "queue"),
                "queue = never", "",
                "[%s]" % account, "provider = google", "user = %s" % target.user,
                "client_id = test-client", "client_secret = test-secret",
                "smtp_host = %s" % target.host, "smtp_port = %d" % port,
                "smtp_tls = %s" % mode, "ca_file = %s" % target.ca,
                "domain = bench.example", "timeout = 60",
                "token_endpoint = %s" % (token_endpoint or
                                         "http://127.0.0.1:9/token"), ""]))
        self.tokfile = os.path.join(d, "token")
        with open(self.tokfile, "w") as f:
            f.write((target.token or "") + "\n")
        self.msmtprc = os.path.join(d, "msmtprc")
        with open(self.msmtprc, "w") as f:
            f.write("\n".join([
                "defaults", "tls on",
                "tls_starttls %s" % ("on" if mode == "starttls" else "off"),
                "tls_trust_file %s" % target.ca, "logfile", "syslog off", "",
                "account bench", "host %s" % target.host, "port %d" % port,
                "from %s" % target.user, "auth xoauth2",
                "user %s" % target.user,
                'passwordeval "cat %s"' % self.tokfile, "",
                "account default : bench", ""]))
        os.chmod(self.msmtprc, 0o600)
        self.curlcfg = os.path.join(d, "curl.cfg")
        with open(self.curlcfg, "w") as f:
            f.write('oauth2-bearer = "%s"\nuser = "%s:"\n' % (
                target.token or "", target.user))
        os.chmod(self.curlcfg, 0o600)
        self.benv = dict(env, BEARMAIL_CONFIG=self.bm_conf,
                         BEARMAIL_AUTH=BEARMAIL_AUTH)

    def bearmail(self):
        return [BEARMAIL, "-i", RCPT]

    def alt_env(self):
        e = dict(self.benv)
        for kv in ALT_ENV.split():
            k, _, v = kv.partition("=")
            e[k] = v.replace("{dir}", self.dir)
        return e

    def msmtp(self):
        return [MSMTP, "-C", self.msmtprc, "-i", RCPT]

    def curl(self):
        scheme = "smtp" if self.mode == "starttls" else "smtps"
        argv = [CURL, "-sS", "-K", self.curlcfg, "--url", "%s://%s:%d" % (
            scheme, self.t.host, self.t.ports[self.mode])]
        if self.mode == "starttls":
            argv.append("--ssl-reqd")
        return argv + ["--cacert", self.t.ca, "--mail-from", self.t.user,
                       "--mail-rcpt", RCPT, "--upload-file", "-"]

    def rawtls(self, nbytes):
        return [RAWTLS, "--ca", self.t.ca, "--secret-file", self.tokfile,
                "--user", self.t.user, "--bytes", str(nbytes), "--tls",
                self.mode, self.t.host, str(self.t.ports[self.mode])]

    def env_for(self, client):
        return self.benv if client == "bearmail" else self.env


def make_message(path, size):
    """A message of exactly about size octets, LF line ends, 76-column body."""
    hdr = ("From: %s\nTo: %s\nSubject: bench %d octets\n"
           "Date: Thu, 26 Nov 2026 12:00:00 +0000\n"
           "Message-ID: <bench-%d@bench.example>\nMIME-Version: 1.0\n"
           "Content-Type: text/plain; charset=us-ascii\n\n" % (
               USER, RCPT, size, size)).encode()
    line = b"The quick brown fox jumps over the lazy dog; bearmail bench 0123456789\n"
    nlines = max(1, (size - len(hdr)) // len(line))
    with open(path, "wb") as f:
        f.write(hdr)
        left = nlines
        while left > 0:
            k = min(left, 8192)
            f.write(line * k)
            left -= k
    return path


# ---- the report -----------------------------------------------------------

class Report:
    def __init__(self):
        self.parts = []

    def add(self, text=""):
        self.parts.append(text)
        print(text, flush=True)

    def table(self, head, rows):
        self.add("| " + " | ".join(head) + " |")
        self.add("|" + "|".join("---" for _ in head) + "|")
        for r in rows:
            self.add("| " + " | ".join(str(c) for c in r) + " |")
        self.add()

    def text(self):
        return "\n".join(self.parts) + "\n"


def version_of(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (p.stdout or p.stderr).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not installed"


def dpkg_version(pkg):
    try:
        p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                           capture_output=True, text=True, timeout=10)
        return p.stdout.strip() or "?"
    except OSError:
        return "?"


def machine():
    cpu = "?"
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                cpu = l.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(open("/proc/meminfo").readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        mem = 0
    osname = "?"
    try:
        for l in open("/etc/os-release"):
            if l.startswith("PRETTY_NAME="):
                osname = l.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "%s, %d CPUs, %d MB RAM; %s, Linux %s" % (
        cpu, os.cpu_count() or 0, mem, osname, platform.release())


def not_yet(rep, what):
    rep.add("not available yet: %s" % what)
    rep.add()


# ---- rows -----------------------------------------------------------------

def check_delivered(target, before, expected, what):
    got = target.delivered()
    if got is not None and got - before != expected:
        raise Failed("%s: the sink took %d messages, expected %d" % (
            what, got - before, expected))


def measure(target, clients, name, argv, n, warm, stdin, env):
    before = target.delivered()
    r = bmrun(argv, n, warm, stdin=stdin, env=env)
    if r["ok"]:
        try:
            check_delivered(target, before, n + warm, name)
        except Failed as e:
            r["ok"], r["why"] = False, str(e)
    return r


def row1(rep, work, env, targets, runs, msg2k):
    rep.add("## Row 1: one 2 KB message, cached token, XOAUTH2")
    rep.add()
    rep.add("Median of %d runs per client (1 warm-up round), clients "
            "interleaved run by run.  CPU is user+sys of the client and its "
            "children (msmtp's passwordeval shell and cat included).  "
            "Ratios are peer ÷ bearmail: above 1× bearmail wins." % runs)
    rep.add()
    verdicts = []
    for target, mode in targets:
        c = Clients(work, env, target, mode)
        rows = []
        cases = []
        for name in ("bearmail", "msmtp", "curl"):
            if name != "bearmail" and not (MSMTP if name == "msmtp" else CURL):
                rows.append([name, "not installed"] + ["-"] * 8)
                continue
            cases.append((name, getattr(c, name)(), msg2k, c.env_for(name),
                          0))
            if name == "bearmail" and ALT:
                cases.append(("bearmail-alt", [ALT, "-i", RCPT], msg2k,
                              c.alt_env(), 0))
        res = interleave(cases, runs, 1, target)
        b = res.get("bearmail", {})
        for name, r in res.items():
            if not r["ok"]:
                rows.append([name, "FAILED: " + r["why"]] + ["-"] * 8)
                continue
            mine = name.startswith("bearmail")
            rows.append([name, fmt(r["wall_ms"]), fmt(r["cpu_ms"]),
                         fmt(r["user_ms"]), fmt(r["sys_ms"]),
                         "%d" % r["rss_kb"],
                         "" if mine else
                         ratio(r["wall_ms"], b.get("wall_ms")),
                         "" if mine else
                         ratio(r["cpu_ms"], b.get("cpu_ms")),
                         fmt(r["wall_min_ms"]), fmt(r["cpu_min_ms"])])
        rep.add("### %s, %s" % (target.name, "STARTTLS (587-style)"
                                if mode == "starttls" else
                                "implicit TLS (465-style)"))
        rep.add()
        rep.table(["client", "wall ms", "CPU ms", "user", "sys",
                   "peak RSS KB", "wall peer÷bm", "CPU peer÷bm",
                   "wall min ms", "CPU min ms"], rows)
        if isinstance(target, Sink) and target.delivered():
            mechs = sorted(set(target.mechs()))
            rep.add("SASL mechanisms the sink saw on this target: %s" %
                    ", ".join(mechs))
            rep.add()
        peers = [r for k, r in res.items()
                 if not k.startswith("bearmail") and r["ok"]]
        if b.get("ok") and peers:
            cpu_ok = all(b["cpu_ms"] * 2 < p["cpu_ms"] for p in peers)
            wall_ok = all(b["wall_ms"] < p["wall_ms"] for p in peers)
            verdicts.append("%s/%s: CPU under half of each peer: %s; wall "
                            "below each peer: %s" % (
                                target.name, mode,
                                "met" if cpu_ok else "MISSED",
                                "met" if wall_ok else "MISSED"))
    if verdicts:
        rep.add("Targets (issue 8): " + "; ".join(verdicts) + ".")
        rep.add()


def row2(rep, env, runs):
    rep.add("## Row 2: start-up alone")
    rep.add()
    rep.add("Median of %d runs (5 warm-up rounds), interleaved.  Target: "
            "bearmail within 2 ms (wall) of a C program that does nothing."
            % runs)
    rep.add()
    cases = [("bm-nothing (C, libc only)", [NOTHING], 0),
             ("bearmail --version", [BEARMAIL, "--version"], 0),
             ("bearmail -Z (usage error, exit 64)", [BEARMAIL, "-Z"], 64)]
    if MSMTP:
        cases.append(("msmtp --version", [MSMTP, "--version"], 0))
    if CURL:
        cases.append(("curl --version", [CURL, "--version"], 0))
    rows = []
    base = None
    res = interleave([(n, a, None, env, c) for n, a, c in cases], runs, 5)
    for name, argv, code in cases:
        r = res[name]
        if not r["ok"]:
            rows.append([name, "FAILED: " + r["why"], "-", "-", "-", "-"])
            continue
        if base is None:
            base = r
        rows.append([name, fmt(r["wall_ms"], 2), fmt(r["wall_min_ms"], 2),
                     fmt(r["cpu_ms"], 2), "%d" % r["rss_kb"],
                     "%+.2f" % (r["wall_ms"] - base["wall_ms"])])
    rep.table(["program", "wall ms", "wall min ms", "CPU ms",
               "peak RSS KB", "wall − nothing, ms"], rows)


def row3(rep, work, env, targets, runs):
    rep.add("## Row 3: one large message against the TLS limit")
    rep.add()
    rep.add("The limit is bench/bm-rawtls: the same core conn/tls code, the "
            "same sink, the same SMTP dialogue, writing the same number of "
            "octets from memory.  Median of %d runs (1 warm-up round), "
            "interleaved.  Peak RSS is the largest of the runs; target: "
            "under 8 MB and flat in the size." % runs)
    rep.add()
    for target, mode, sizes in targets:
        c = Clients(work, env, target, mode, account="big")
        rows = []
        for size in sizes:
            path = os.path.join(work, "msg-%d.eml" % size)
            if not os.path.exists(path):
                make_message(path, size)
            octets = os.path.getsize(path)
            mb = octets / 1e6
            label = "%.0f MB" % (size / 2**20)
            cases = [("bearmail", [BEARMAIL, "-a", "big", "-i", RCPT], path,
                      c.benv, 0)]
            if ALT:
                cases.append(("bearmail-alt", [ALT, "-a", "big", "-i", RCPT],
                              path, c.alt_env(), 0))
            cases.append(("limit (bm-rawtls)", c.rawtls(octets), None, env,
                          0))
            if size == max(sizes):
                if MSMTP:
                    cases.append(("msmtp", c.msmtp(), path, env, 0))
                if CURL:
                    cases.append(("curl", c.curl(), path, env, 0))
            res = interleave(cases, runs, 1, target)
            b, lim = res["bearmail"], res["limit (bm-rawtls)"]
            for name, _, _, _, _ in cases:
                r = res[name]
                if not r["ok"]:
                    rows.append([label, name, "FAILED: " + r["why"]] +
                                ["-"] * 6)
                    continue
                note = ""
                if name.startswith("bearmail") and lim["ok"]:
                    note = "%.2f×" % (r["wall_ms"] / lim["wall_ms"])
                rows.append([label, name, fmt(r["wall_ms"]),
                             fmt(r["wall_min_ms"]), fmt(r["cpu_ms"]),
                             "%d" % r["rss_max_kb"],
                             fmt(mb / (r["wall_ms"] / 1e3)), note])
        rep.add("### %s, %s" % (target.name, mode))
        rep.add()
        rep.table(["size", "client", "wall ms", "wall min ms", "CPU ms",
                   "peak RSS KB (max)", "MB/s", "bearmail ÷ limit (wall)"],
                  rows)


def queue_runner_available():
    """bearmail -q exists once its --help stops saying it does not."""
    try:
        p = subprocess.run([BEARMAIL, "--help"], capture_output=True,
                           text=True, timeout=10)
    except OSError:
        return False, "src/bearmail is not built"
    for l in (p.stdout + p.stderr).splitlines():
        if "-q" in l and "not available" in l:
            return False, "bearmail -q (bearmail --help: %s)" % l.strip()
    return True, ""


def row4(rep, work, env, target, count, msg):
    rep.add("## Row 4: a queue of %d small messages" % count)
    rep.add()
    c = Clients(work, env, target, "starttls", account="q")
    rows = []
    ok, why = queue_runner_available()
    if ok:
        # Fill the queue (not timed), then one timed queue run.
        qenv = dict(c.benv)
        fill = bmrun([BEARMAIL, "-a", "q", "-odq", "-i", RCPT], count, 0,
                     stdin=msg, env=qenv)
        if not fill["ok"]:
            rows.append(["bearmail -q", "FAILED to queue: " + fill["why"],
                         "-", "-", "-", "-"])
        else:
            before = target.delivered()
            r = bmrun([BEARMAIL, "-a", "q", "-q"], 1, 0, env=qenv)
            got = target.delivered() - before
            if not r["ok"] or got != count:
                rows.append(["bearmail -q", "FAILED: %s (%d delivered)" % (
                    r.get("why", ""), got), "-", "-", "-", "-"])
            else:
                rows.append(["bearmail -q (one run)", fmt(r["total_ms"]),
                             fmt(count / (r["total_ms"] / 1e3)),
                             fmt(r["cpu_ms"]), "%d" % r["rss_kb"], ""])
    else:
        rows.append(["bearmail -q", "not available yet: %s" % why,
                     "-", "-", "-", "-"])
    res = {}
    for name, argv, e in (("bearmail × %d (one run each)" % count,
                           [BEARMAIL, "-a", "q", "-i", RCPT], c.benv),
                          ("msmtp × %d" % count, c.msmtp(), env)):
        if argv[0] is None:
            continue
        r = measure(target, c, name, argv, count, 0, msg, e)
        res[name] = r
        if not r["ok"]:
            rows.append([name, "FAILED: " + r["why"], "-", "-", "-", "-"])
            continue
        rows.append([name, fmt(r["total_ms"]),
                     fmt(count / (r["total_ms"] / 1e3)),
                     fmt(r["cpu_ms"] * count), "%d" % r["rss_max_kb"], ""])
    rep.table(["how", "total wall ms", "messages/s", "CPU ms (all)",
               "peak RSS KB", "note"], rows)
    rep.add("Target (issue 8): bearmail -q at least 20× msmtp's "
            "messages per second.")
    rep.add()


def row5(rep, work, env, sink_any, conc, reps):
    rep.add("## Row 5: %d concurrent submissions, expired access token" %
            conc)
    rep.add()
    try:
        from servers.tokenserver import TokenServer
    except ImportError as e:
        not_yet(rep, "tests/servers/tokenserver.py (%s)" % e)
        return
    if not os.access(BEARMAIL_AUTH, os.X_OK):
        not_yet(rep, "src/bearmail-auth is not built")
        return
    rows = []
    with TokenServer() as ts:
        c = Clients(work, env, sink_any, "starttls",
                    token_endpoint=ts.token_url, account="conc")
        refresh = ts.issue_refresh(USER)
        for i in range(reps):
            write_token(c.state, "conc", "ya29.expired-%d" % i,
                        int(time.time()) - 60, refresh=refresh)
            before_req = ts.counts.get("token", 0)
            before = sink_any.delivered()
            r = bmrun([BEARMAIL, "-a", "conc", "-i", RCPT], 1, 0,
                      stdin=c.msg, conc=conc, env=c.benv)
            reqs = ts.counts.get("token", 0) - before_req
            got = sink_any.delivered() - before
            if not r["ok"]:
                rows.append([i + 1, "FAILED: " + r["why"], reqs, got, "-",
                             "-"])
                continue
            rows.append([i + 1, fmt(r["total_ms"]), reqs, got,
                         fmt(r["wall_ms"]), fmt(r["wall_max_ms"])])
    rep.table(["round", "total wall ms", "token endpoint requests "
               "(must be 1)", "delivered", "median wall per process ms",
               "slowest process ms"], rows)


MAILDIR_MDA = os.path.join(BUILD, "bench", "bm-maildir")
FETCHMAIL = shutil.which("fetchmail")
GETMAIL = shutil.which("getmail")


def fill_maildir(maildir, count):
    """count 2 KB messages straight into the server's Maildir/cur."""
    st = os.stat(maildir)
    body = "".join("line %04d of a fetched benchmark message, plain ascii.\n"
                   % i for i in range(36))
    cur = os.path.join(maildir, "cur")
    base = int(time.time())
    for i in range(count):
        name = os.path.join(cur, "%d.M%dP%d.bench:2," % (base, i, os.getpid()))
        with open(name, "w") as f:
            f.write("From: sender%d@example.org\nTo: alice@interop.test\n"
                    "Subject: fetch bench %d\nMessage-ID: <fetch-%d@bench."
                    "example>\nDate: Thu, 26 Nov 2026 12:00:00 +0000\n\n%s"
                    % (i, i, i, body))
        os.chown(name, st.st_uid, st.st_gid)


def count_maildir(d):
    n = 0
    for sub in ("new", "cur"):
        try:
            n += len(os.listdir(os.path.join(d, sub)))
        except OSError:
            pass
    return n


def fresh_maildir(d):
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(d, sub))
    return d


def fetch_clients(work, env, it, proto):
    """name -> function(run_dir) returning (argv, env) for one fresh run."""
    port = it.stack.ports["imaps" if proto == "imap" else "pop3s"]
    out = {}

    def bearmail_fetch(d):
        state = os.path.join(d, "state")
        write_token(state, "fetch", it.token, int(time.time()) + 86400,
                    user=it.user)
        conf = os.path.join(d, "bearmail.conf")
        with open(conf, "w") as f:
            f.write("\n".join([
                "[defaults]", "state_dir = %s" % state,
                "log = %s" % os.path.join(d, "fetch.log"), "",
                "[fetch]", "provider = google", "user = %s" % it.user,
                "client_id = test-client", "client_secret = test-secret",
                "%s_host = localhost" % ("imap" if proto == "imap" else "pop"),
                "%s_port = %d" % ("imap" if proto == "imap" else "pop", port),
                "%s_tls = tls" % ("imap" if proto == "imap" else "pop"),
                "ca_file = %s" % it.ca, "timeout = 120",
                "token_endpoint = http://127.0.0.1:9/token", ""]))
        argv = [BEARMAIL_FETCH, "-C", conf, "--%s" % ("imap" if proto == "imap"
                                                     else "pop"),
                "--keep", "--maildir", fresh_maildir(os.path.join(d, "md")),
                "-q"]
        if proto == "imap":
            argv.append("--all")
        return argv + ["fetch"], dict(env, BEARMAIL_AUTH=BEARMAIL_AUTH)
    if os.access(BEARMAIL_FETCH, os.X_OK):
        out["bearmail-fetch"] = bearmail_fetch

    def fetchmail(d):
        rc = os.path.join(d, "fetchmailrc")
        with open(rc, "w") as f:
            f.write('set no bouncemail\n'
                    'poll localhost protocol %s port %d auth password\n'
                    '  user "%s" password "%s" is "root" here\n'
                    '  ssl sslcertck sslcertfile "%s"\n'
                    '  keep fetchall\n  mda "%s %s"\n' % (
                        "IMAP" if proto == "imap" else "POP3", port, it.user,
                        it.token, it.ca, MAILDIR_MDA,
                        fresh_maildir(os.path.join(d, "md"))))
        os.chmod(rc, 0o600)
        return [FETCHMAIL, "-f", rc, "--nosyslog", "-s", "--idfile",
                os.path.join(d, "fetchids"), "--pidfile",
                os.path.join(d, "fetchmail.pid")], dict(env, HOME=d)
    if FETCHMAIL and os.access(MAILDIR_MDA, os.X_OK):
        out["fetchmail (token as password)"] = fetchmail

    def getmail(d):
        tok = os.path.join(d, "token")
        with open(tok, "w") as f:
            f.write(it.token + "\n")
        rc = os.path.join(d, "getmailrc")
        lines = ["[retriever]"]
        if proto == "imap":
            lines += ["type = SimpleIMAPSSLRetriever", "use_xoauth2 = True",
                      'mailboxes = ("INBOX",)']
        else:
            # getmail6 has XOAUTH2 for IMAP only: USER/PASS with the token.
            lines += ["type = SimplePOP3SSLRetriever"]
        lines += ["server = localhost", "port = %d" % port,
                  "username = %s" % it.user,
                  'password_command = ("/bin/cat", "%s")' % tok,
                  "ca_certs = %s" % it.ca,
                  # Also how long getmail waits for its delivery child,
                  # which it can miss (see bench/README): fail fast.
                  "timeout = 10", "",
                  "[destination]", "type = Maildir",
                  "path = %s/" % fresh_maildir(os.path.join(d, "md")), "",
                  "[options]", "read_all = true", "delete = false",
                  "verbose = 0", "message_log_syslog = false", ""]
        with open(rc, "w") as f:
            f.write("\n".join(lines))
        return [GETMAIL, "--rcfile", rc, "--getmaildir", d], dict(env, HOME=d)
    if GETMAIL:
        name = "getmail6" if proto == "imap" else \
            "getmail6 (token as password)"
        out[name] = getmail
    return out


def row6(rep, work, env, it, count, runs):
    rep.add("## Row 6: fetch %d messages (IMAP, POP3) into a Maildir" %
            count)
    rep.add()
    if not os.access(BEARMAIL_FETCH, os.X_OK):
        not_yet(rep, "bearmail-fetch is not built (src/bearmail-fetch)")
        return
    if it is None or getattr(it, "stack", None) is None:
        not_yet(rep, "no IMAP/POP3 server: bm-sink speaks SMTP only, and "
                "the Dovecot of tests/interop needs BM_BENCH_INTEROP=1 "
                "(root, tests/interop/install.sh)")
        return
    rep.add("Against the Dovecot of the tests/interop stack (implicit TLS), "
            "%d messages of about 2 KB written into its Maildir.  Median of "
            "%d runs after one warm-up run (Dovecot builds its index), each "
            "into a fresh Maildir on tmpfs (/dev/shm: fsync on this disk "
            "would be what is measured) with fresh state, messages kept on "
            "the server.  fetchmail 6.4 has no OAuth: it logs in with the token "
            "as password (Dovecot's oauth2 passdb accepts that), and "
            "delivers through bench/bm-maildir, one process per message "
            "(fetchmail has no Maildir delivery).  getmail6 has XOAUTH2 "
            "for IMAP only." % (count, runs))
    rep.add()
    # Rows 1 and 3 delivered into the same Maildir through Postfix: let
    # its queue drain (bounded), then start from an empty Maildir.
    md = it.stack.maildir
    last, stable, deadline = -1, 0, time.monotonic() + 60
    while stable < 3 and time.monotonic() < deadline:
        n = count_maildir(md)
        stable = stable + 1 if n == last else 0
        last = n
        time.sleep(1)
    for sub in ("new", "cur"):
        for name in os.listdir(os.path.join(md, sub)):
            os.unlink(os.path.join(md, sub, name))
    fill_maildir(md, count)
    # Deliveries go to tmpfs where there is one: fsync() on this VM's disk
    # costs milliseconds per message and would measure the disk.
    dest_top = tempfile.mkdtemp(prefix="bm-bench-fetch-",
                                dir="/dev/shm" if os.access("/dev/shm", os.W_OK)
                                else work)
    rows = []
    for proto in ("imap", "pop3"):
        clients = fetch_clients(work, env, it, proto)
        samples = {n: [] for n in clients}
        bad = {}
        for i in range(runs + 1):
            for name, make in clients.items():
                if name in bad:
                    continue
                d = os.path.join(dest_top, "fetch-%s-%d-%s" % (
                    proto, i, re.sub(r"\W+", "_", name)))
                os.makedirs(d)
                argv, e = make(d)
                outf = os.path.join(work, "fetch-%s-%d.out" % (proto, i))
                r = bmrun(argv, 1, 0, env=e, limit=900, out=outf)
                got = count_maildir(os.path.join(d, "md"))
                shutil.rmtree(d, ignore_errors=True)
                if not r["ok"] or got != count:
                    try:
                        tail = open(outf, errors="replace").read().strip()
                        tail = tail.splitlines()[-1][:160] if tail else ""
                    except OSError:
                        tail = ""
                    bad[name] = "%s; %d of %d delivered%s" % (
                        r.get("why", "exit 0"), got, count,
                        (": " + tail) if tail else "")
                    continue
                if i > 0:
                    samples[name].append(r)
        for name in clients:
            rs = samples[name]
            if name in bad or not rs:
                rows.append([proto.upper(), name,
                             "FAILED: " + bad.get(name, "no runs")] +
                            ["-"] * 3)
                continue
            wall = statistics.median(x["wall_ms"] for x in rs)
            rows.append([proto.upper(), name, fmt(wall),
                         fmt(count / (wall / 1e3)),
                         fmt(statistics.median(x["cpu_ms"] for x in rs)),
                         "%d" % max(x["rss_kb"] for x in rs)])
    shutil.rmtree(dest_top, ignore_errors=True)
    rep.table(["protocol", "client", "wall ms", "messages/s", "CPU ms",
               "peak RSS KB"], rows)


def interop_target(work, token):
    """Hook: the Postfix + Dovecot stack of tests/interop as a target.

    Enabled with BM_BENCH_INTEROP=1.  Returns (Target, stop function) or
    (None, reason).
    """
    if os.environ.get("BM_BENCH_INTEROP") != "1":
        return None, ("set BM_BENCH_INTEROP=1 (as root, after "
                      "tests/interop/install.sh) to add the real Postfix "
                      "stack as a target for rows 1 and 3")
    try:
        sys.path.insert(0, os.path.join(SRC, "tests", "interop"))
        import stack as interop
        why = interop.prerequisites()
        if why:
            return None, "; ".join(why)
        # Its daemons run as other users: the directory must be reachable.
        top = tempfile.mkdtemp(prefix="bm-bench-interop-")
        os.chmod(top, 0o755)
        st = interop.Stack(os.path.join(top, "s"))
        st.start()
        user = getattr(interop, "TEST_EMAIL", "alice@interop.test")
        st.add_token(token, user)
    except Exception as e:          # the stack is someone else's moving part
        return None, "tests/interop stack did not start: %s" % e
    t = Target("postfix", "localhost", st.ports["submission"],
               st.ports["smtps"], st.ca_file, token, user=user)
    t.stack = st

    def stop():
        st.stop()
        shutil.rmtree(top, ignore_errors=True)
    return t, stop


def profile(rep, work, env, target):
    """Callgrind of one bearmail row-1 run: where the instructions go."""
    if not shutil.which("valgrind"):
        rep.add("(profile skipped: valgrind not installed)")
        return
    c = Clients(work, env, target, "starttls", account="prof")
    out = os.path.join(work, "callgrind.out")
    with open(c.msg2k) as stdin:
        subprocess.run(["valgrind", "--tool=callgrind",
                        "--callgrind-out-file=" + out,
                        BEARMAIL, "-a", "prof", "-i", RCPT],
                       stdin=stdin, env=c.benv, capture_output=True,
                       timeout=300)
    p = subprocess.run(["callgrind_annotate", "--inclusive=yes", out],
                       capture_output=True, text=True, timeout=60)
    lines = [l for l in p.stdout.splitlines() if "(" in l and "%)" in l]
    picked = []
    for l in lines:
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S+)", l)
        if not m:
            continue
        fn = m.group(3).split(":")[-1]
        if fn.startswith(("0x", "(", "PROGRAM", "__libc_start")):
            continue
        picked.append((m.group(2), fn, m.group(1)))
        if len(picked) >= 25:
            break
    rep.add("## Profile: bearmail, row 1 (%s, STARTTLS), callgrind "
            "inclusive instructions" % target.name)
    rep.add()
    rep.table(["% of instructions", "function", "instructions"],
              [[a, "`%s`" % b, c_] for a, b, c_ in picked])


# ---- main -----------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", default="1,2,3,4,5,6")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=os.path.join(SRC, "bench", "results",
                                                  "latest.md"))
    a = ap.parse_args()
    rows = {int(x) for x in a.rows.split(",") if x.strip()}
    q = a.quick
    for path, what in ((BEARMAIL, "src/bearmail"), (BMRUN, "bench/bm-run"),
                       (NOTHING, "bench/bm-nothing"),
                       (RAWTLS, "bench/bm-rawtls"), (SINK, "bench/bm-sink")):
        if not os.access(path, os.X_OK):
            log("bench: %s is not built in %s (run bench/run.sh)" % (what,
                                                                      BUILD))
            return 2
    work = tempfile.mkdtemp(prefix="bm-bench-")
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith("BEARMAIL")}
    env.update(HOME=work, XDG_CONFIG_HOME=os.path.join(work, "xdg"),
               XDG_STATE_HOME=os.path.join(work, "xdgstate"),
               TMPDIR=os.path.join(work, "tmp"), LC_ALL="C")
    os.makedirs(env["TMPDIR"])
    token = "ya29.bench-" + secrets.token_urlsafe(24)
    sinks, stops = [], []
    rep = Report()
    started = time.time()
    try:
        rep.add("# bearmail benchmark results")
        rep.add()
        rep.add("- date: %s" % time.strftime("%Y-%m-%d %H:%M UTC",
                                             time.gmtime()))
        rep.add("- machine: %s" % machine())
        rep.add("- bearmail: %s (%s)" % (version_of([BEARMAIL, "--version"]),
                                         BUILD))
        rep.add("- peers: msmtp %s, curl %s; libmbedtls %s, OpenSSL %s "
                "(sink)" % (dpkg_version("msmtp"), dpkg_version("curl"),
                            dpkg_version("libmbedtls-dev"),
                            dpkg_version("openssl")))
        rep.add("- targets: bench/bm-sink (EC P-256 and RSA-2048 chains)%s" %
                ("; the tests/interop Postfix stack"
                 if os.environ.get("BM_BENCH_INTEROP") == "1" else ""))
        rep.add("- load average (1 min) at start: %s" % loadavg())
        if ALT:
            rep.add("- bearmail-alt: %s %s (BM_BENCH_ALT_BEARMAIL, "
                    "BM_BENCH_ALT_ENV)" % (ALT, ALT_ENV))
        rep.add("- run: bench/run.sh%s" % (" " + " ".join(sys.argv[1:])
                                           if sys.argv[1:] else ""))
        rep.add()
        ec = Sink(work, "sink-ec", "ec", token)
        sinks.append(ec)
        rsa = Sink(work, "sink-rsa", "rsa", token)
        sinks.append(rsa)
        msg2k = make_message(os.path.join(work, "msg-2k.eml"), 2048)
        Clients.msg = msg2k
        Clients.msg2k = msg2k
        it, why = interop_target(work, token)
        if it is None:
            interop_note = "Postfix target (interop tier): " + why + "."
        else:
            stops.append(why)
            interop_note = "Postfix target: tests/interop stack, started."
        r1_targets = [(ec, "starttls"), (ec, "tls"), (rsa, "starttls")]
        big = [2**20, 10 * 2**20, 30 * 2**20]
        r3_targets = [(ec, "starttls", big)]
        if it is not None:
            r1_targets.append((it, "starttls"))
            # Postfix's message_size_limit is 10,240,000 octets by default.
            r3_targets.append((it, "starttls", [2**20, 8 * 2**20]))
        if 1 in rows:
            log("bench: row 1")
            row1(rep, work, env, r1_targets, 10 if q else 40, msg2k)
            rep.add(interop_note)
            rep.add()
        if 2 in rows:
            log("bench: row 2")
            row2(rep, env, 50 if q else 300)
        if 3 in rows:
            log("bench: row 3")
            row3(rep, work, env, r3_targets, 3 if q else 7)
        if 4 in rows:
            log("bench: row 4")
            row4(rep, work, env, ec, 100 if q else 1000, msg2k)
        if 5 in rows:
            log("bench: row 5")
            anysink = Sink(work, "sink-any", "ec", None)
            sinks.append(anysink)
            row5(rep, work, env, anysink, 100, 2 if q else 5)
        if 6 in rows:
            log("bench: row 6")
            row6(rep, work, env, it, 1000 if q else 10000, 1)
        if a.profile:
            log("bench: profile")
            profile(rep, work, env, ec)
        rep.add("Total benchmark time: %.0f s; load average (1 min) at the "
                "end: %s." % (time.time() - started, loadavg()))
    finally:
        for s in sinks:
            s.stop()
        for stop in stops:
            try:
                stop()
            except Exception as e:
                log("bench: stopping the interop stack: %s" % e)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log("bench: work directory kept: %s" % work)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out + ".tmp", "w") as f:
            f.write(rep.text())
        os.replace(a.out + ".tmp", a.out)
        log("bench: wrote %s" % a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
