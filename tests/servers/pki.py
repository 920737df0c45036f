"""A throw-away PKI for the TLS tests, made at test time with the openssl CLI.

Nothing here is committed: every key is generated into a temporary
directory when a test session starts (EC P-256 keys, so it takes well under
a second).

    from servers.pki import PKI
    pki = PKI("/tmp/somedir")          # generates everything
    pki.ca.cert                        # trust anchor to give the client
    ctx = pki.server_context("server") # ssl.SSLContext for a fake server

Certificates (attributes of PKI, each a Cert with .cert and .key paths,
.name and .pem()):

  ca          the test CA (trust this one: pki.ca.cert)
  other_ca    a second, unrelated CA
  server      CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1; by ca
  dnsonly     CN=localhost, SAN DNS:localhost only (no IP SAN); by ca
  expired     like server, but expired in 2021; by ca
  notyet      like server, but valid only from 2049; by ca
  wrongname   CN=other.example, SAN DNS:other.example; by ca
  selfsigned  CN=localhost, SAN DNS:localhost, IP:127.0.0.1, self-signed
  untrusted   like server, but issued by other_ca
  nulname     CN="localhost\\0.evil.example" (a NUL inside), no SAN; by ca.
              None if it could not be made (then tests should skip).

Other helpers:

  pki.server_context(which="server", minimum=None, maximum=None)
      ssl.SSLContext(PROTOCOL_TLS_SERVER) loaded with that certificate
      (which is an attribute name above, or a Cert); minimum/maximum are
      ssl.TLSVersion values to pin the protocol range.
  pki.issue(name, cn, dns=(), ips=(), ca=None, start=None, end=None)
      make another certificate; start/end are "YYMMDDHHMMSSZ" strings.
  pki.client_context()
      ssl.SSLContext(PROTOCOL_TLS_CLIENT) trusting pki.ca (for tests that
      talk to a fake server from Python).

Command line (for demos and benchmarks):
  /usr/bin/python3 tests/servers/pki.py DIR     prints the CA path
"""

import os
import shutil
import ssl
import subprocess
import sys
import tempfile

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

_CA_CONF = """\
[ca]
default_ca = ca_default
[ca_default]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/new
serial = {dir}/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[policy_any]
commonName = supplied
[req]
distinguished_name = req_dn
prompt = no
utf8 = yes
string_mask = utf8only
[req_dn]
CN = unused
"""


class Cert:
    """One certificate and its key, as PEM files."""

    def __init__(self, name, cert, key):
        self.name = name
        self.cert = cert
        self.key = key

    def pem(self):
        with open(self.cert, "rb") as f:
            return f.read()

    def __repr__(self):
        return "Cert(%r, %r)" % (self.name, self.cert)


def _run(args, **kw):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       **kw)
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(args),
                                              r.stderr.decode(errors="replace")))
    return r.stdout


# --- a few lines of DER, enough to re-sign a patched certificate ---------

def _der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _der_tlv(der, off):
    """(start of value, end of value) of the TLV at off."""
    n = der[off + 1]
    off += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(der[off:off + k], "big")
        off += k
    return off, off + n


class PKI:
    def __init__(self, directory=None):
        if directory is None:
            directory = tempfile.mkdtemp(prefix="bm-pki-")
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self._conf = os.path.join(self.dir, "openssl.cnf")
        with open(self._conf, "w") as f:
            f.write(_CA_CONF.format(dir=self.dir))
        self.ca = self._make_ca("ca", "bearmail test CA")
        self.other_ca = self._make_ca("other_ca", "unrelated test CA")
        self.server = self.issue("server", "localhost", dns=["localhost"],
                                 ips=["127.0.0.1", "::1"])
        self.dnsonly = self.issue("dnsonly", "localhost", dns=["localhost"])
        self.expired = self.issue("expired", "localhost", dns=["localhost"],
                                  ips=["127.0.0.1"], start="200101000000Z",
                                  end="210101000000Z")
        self.notyet = self.issue("notyet", "localhost", dns=["localhost"],
                                 ips=["127.0.0.1"], start="490101000000Z",
                                 end="491231000000Z")
        self.wrongname = self.issue("wrongname", "other.example",
                                    dns=["other.example"])
        self.untrusted = self.issue("untrusted", "localhost",
                                    dns=["localhost"], ips=["127.0.0.1"],
                                    ca=self.other_ca)
        self.selfsigned = self._make_selfsigned()
        try:
            self.nulname = self._make_nulname()
        except Exception:  # noqa: BLE001 - optional certificate
            self.nulname = None

    # -- generation ------------------------------------------------------

    def _path(self, name, ext):
        return os.path.join(self.dir, name + "." + ext)

    def _key(self, name):
        key = self._path(name, "key")
        _run([OPENSSL, "genpkey", "-algorithm", "EC", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-out", key])
        os.chmod(key, 0o600)
        return key

    def _make_ca(self, name, cn):
        key = self._key(name)
        cert = self._path(name, "pem")
        _run([OPENSSL, "req", "-config", self._conf, "-new", "-x509",
              "-key", key, "-out", cert, "-days", "3650", "-sha256",
              "-subj", "/O=bearmail tests/CN=" + cn,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-addext", "subjectKeyIdentifier=hash"])
        cadir = os.path.join(self.dir, name + ".d")
        os.makedirs(os.path.join(cadir, "new"), exist_ok=True)
        open(os.path.join(cadir, "index.txt"), "w").close()
        with open(os.path.join(cadir, "serial"), "w") as f:
            f.write("1000\n")
        return Cert(name, cert, key)

    def issue(self, name, cn, dns=(), ips=(), ca=None, start=None, end=None):
        """Make a leaf certificate signed by ca (default: self.ca)."""
        ca = ca or self.ca
        key = self._key(name)
        csr = self._path(name, "csr")
        cert = self._path(name, "pem")
        _run([OPENSSL, "req", "-config", self._conf, "-new", "-key", key,
              "-out", csr, "-subj", "/CN=" + cn])
        ext = self._path(name, "ext")
        san = ["DNS:" + d for d in dns] + ["IP:" + i for i in ips]
        with open(ext, "w") as f:
            f.write("[ext]\nbasicConstraints = CA:FALSE\n"
                    "keyUsage = critical,digitalSignature\n"
                    "extendedKeyUsage = serverAuth\n"
                    "authorityKeyIdentifier = keyid\n")
            if san:
                f.write("subjectAltName = " + ",".join(san) + "\n")
        cadir = os.path.join(self.dir, ca.name + ".d")
        cmd = [OPENSSL, "ca", "-batch", "-config", self._conf, "-notext",
               "-name", "ca_default", "-cert", ca.cert, "-keyfile", ca.key,
               "-in", csr, "-out", cert, "-extfile", ext, "-extensions",
               "ext", "-outdir", os.path.join(cadir, "new")]
        if start:
            cmd += ["-startdate", start]
        if end:
            cmd += ["-enddate", end]
        else:
            cmd += ["-days", "365"]
        # Each CA keeps its own database: a config per CA directory.
        caconf = os.path.join(cadir, "ca.cnf")
        with open(caconf, "w") as f:
            f.write(_CA_CONF.format(dir=cadir))
        cmd[cmd.index(self._conf)] = caconf
        _run(cmd)
        return Cert(name, cert, key)

    def _make_selfsigned(self):
        key = self._key("selfsigned")
        cert = self._path("selfsigned", "pem")
        _run([OPENSSL, "req", "-config", self._conf, "-new", "-x509",
              "-key", key, "-out", cert, "-days", "365", "-sha256",
              "-subj", "/CN=localhost",
              "-addext", "basicConstraints=CA:FALSE",
              "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        return Cert("selfsigned", cert, key)

    def _make_nulname(self):
        """CN=localhost<NUL>.evil.example: issue with '#', patch, re-sign."""
        c = self.issue("nulname", "localhost#.evil.example")
        with open(c.cert) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        tbs_off = _der_tlv(der, 0)[0]
        tbs_end = _der_tlv(der, tbs_off)[1]
        tbs = der[tbs_off:tbs_end]
        alg_end = _der_tlv(der, tbs_end)[1]
        alg = der[tbs_end:alg_end]
        marker = b"localhost#"
        if tbs.count(marker) != 1:
            raise RuntimeError("marker not found once")
        tbs = tbs.replace(marker, b"localhost\0")
        tbsfile = self._path("nulname", "tbs")
        with open(tbsfile, "wb") as f:
            f.write(tbs)
        sig = _run([OPENSSL, "dgst", "-sha256", "-sign", self.ca.key,
                    tbsfile])
        bits = b"\x00" + sig
        body = tbs + alg + b"\x03" + _der_len(len(bits)) + bits
        der = b"\x30" + _der_len(len(body)) + body
        with open(c.cert, "w") as f:
            f.write(ssl.DER_cert_to_PEM_cert(der))
        return c

    # -- use -------------------------------------------------------------

    def _cert(self, which):
        return which if isinstance(which, Cert) else getattr(self, which)

    def server_context(self, which="server", minimum=None, maximum=None):
        c = self._cert(which)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(c.cert, c.key)
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
        return ctx

    def client_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.ca.cert)
        return ctx


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: pki.py DIR")
    p = PKI(sys.argv[1])
    print(p.ca.cert)
