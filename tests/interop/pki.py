"""Test certificates made with strongSwan's `pki` (strongswan-pki).

    pki = Pki(tmpdir)
    root = pki.ca("root", "ecdsa256")
    inter = pki.issue(root, "inter", "ecdsa256", ca=True)
    gw = pki.issue(inter, "gw-rav", "rsa3072", sans=["198.18.10.1", "gw.rav.test"])
    gw.cert, gw.key, gw.dn, gw.chain     # PEM paths, subject, [gw, inter] (root left out)

Key kinds: ecdsa256 (P-256), ecdsa384, rsa2048, rsa3072, rsa4096, ed25519.
Subjects are "C=XX, O=Ravelin interop, CN=<cn>". End-entity certificates
carry serverAuth and clientAuth; SANs are IPs or DNS names (pki tells them
apart). Everything lives in one directory; nothing is read from /etc.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

from . import netns
from .netns import HarnessError

PKI = "/usr/bin/pki"
KINDS = {
    "ecdsa256": ("ecdsa", 256), "ecdsa384": ("ecdsa", 384),
    "rsa2048": ("rsa", 2048), "rsa3072": ("rsa", 3072), "rsa4096": ("rsa", 4096),
    "ed25519": ("ed25519", 256),
}


@dataclasses.dataclass
class Cert:
    name: str
    kind: str
    cert: Path                      # PEM certificate
    key: Path                       # PEM private key
    dn: str
    issuer: "Cert | None" = None
    sans: tuple[str, ...] = ()
    is_ca: bool = False

    @property
    def chain(self) -> list["Cert"]:
        """This certificate and its intermediates (not the self-signed root):
        what a peer sends in IKE_AUTH."""
        out, c = [], self
        while c is not None and c.issuer is not None:
            out.append(c)
            c = c.issuer
        return out or [self]

    @property
    def root(self) -> "Cert":
        c = self
        while c.issuer is not None:
            c = c.issuer
        return c

    def der(self) -> bytes:
        """The certificate in DER (for size checks)."""
        import base64
        body = "".join(l for l in self.cert.read_text().splitlines() if not l.startswith("-----"))
        return base64.b64decode(body)


# RSA keys this size or larger take seconds each on a loaded 2-core machine
SLOW_KINDS = ("rsa3072", "rsa4096")


class Pki:
    """key_cache: a directory where slow (RSA >= 3072) keys are kept between
    runs and handed out again, the n-th key of a kind in this Pki getting
    the n-th cached one (so no two certificates share a key). Certificates
    are always new."""

    def __init__(self, directory: Path, org: str = "Ravelin interop",
                 key_cache: Path | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.org = org
        self.key_cache = Path(key_cache) if key_cache else None
        self._slots: dict[str, int] = {}
        self.conf = self.dir / "strongswan.conf"
        self.conf.write_text("pki {\n\tload = random nonce openssl sha1 sha2 mgf1 pem pkcs1 "
                             "pkcs8 x509 pubkey\n}\n")
        self.certs: dict[str, Cert] = {}

    def _env(self):
        return netns.owner_env({"STRONGSWAN_CONF": str(self.conf)})

    def _pki(self, *args: str, timeout: float = 60) -> bytes:
        p = subprocess.run([PKI, *args], capture_output=True, env=self._env(), timeout=timeout)
        if p.returncode != 0:
            raise HarnessError(f"pki {' '.join(args)} -> {p.returncode}: "
                               f"{p.stderr.decode(errors='replace')}")
        return p.stdout

    def keys(self, specs: list[tuple[str, str]]) -> list[Path]:
        """Private keys [(name, kind)], generated in parallel (RSA-4096 takes
        1-10 s each here) unless the key cache has them."""
        procs, cached = [], {}
        for name, kind in specs:
            if kind not in KINDS:
                raise HarnessError(f"unknown key kind {kind} (one of {', '.join(KINDS)})")
            typ, size = KINDS[kind]
            path = self.dir / f"{name}.key.pem"
            if self.key_cache and kind in SLOW_KINDS:
                slot = self._slots.get(kind, 0)
                self._slots[kind] = slot + 1
                hit = self.key_cache / f"{kind}-{slot}.key.pem"
                cached[path] = hit
                if self._usable(hit):
                    shutil.copyfile(hit, path)
                    continue
            args = [PKI, "--gen", "--type", typ, "--outform", "pem"]
            if typ != "ed25519":
                args += ["--size", str(size)]
            with open(path, "wb") as f:
                procs.append((path, subprocess.Popen(args, stdout=f, stderr=subprocess.PIPE,
                                                     env=self._env())))
        for path, p in procs:
            try:
                _, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                raise HarnessError(f"pki --gen {path.name}: no result within 60 s") from None
            if p.returncode != 0:
                raise HarnessError(f"pki --gen {path.name}: {err.decode(errors='replace')}")
            if path in cached:
                self.key_cache.mkdir(parents=True, exist_ok=True)
                tmp = cached[path].with_suffix(f".tmp{os.getpid()}")
                shutil.copyfile(path, tmp)
                os.chmod(tmp, 0o600)
                os.replace(tmp, cached[path])
        return [self.dir / f"{name}.key.pem" for name, _ in specs]

    def _usable(self, key: Path) -> bool:
        """A cached key that pki can read (a torn or foreign file is replaced)."""
        if not key.is_file():
            return False
        p = subprocess.run([PKI, "--print", "--type", "priv", "--in", str(key)],
                           capture_output=True, env=self._env(), timeout=30)
        return p.returncode == 0

    def dn(self, cn: str) -> str:
        return f"C=XX, O={self.org}, CN={cn}"

    def ca(self, name: str, kind: str = "ecdsa256", cn: str | None = None,
           key: Path | None = None) -> Cert:
        """A self-signed root CA."""
        key = key or self.keys([(name, kind)])[0]
        dn = self.dn(cn or f"{name} CA")
        path = self.dir / f"{name}.crt.pem"
        path.write_bytes(self._pki("--self", "--ca", "--in", str(key), "--type", "priv",
                                   "--dn", dn, "--lifetime", "30", "--outform", "pem"))
        c = Cert(name, kind, path, key, dn, None, (), True)
        self.certs[name] = c
        return c

    def issue(self, issuer: Cert, name: str, kind: str = "ecdsa256", sans=(),
              cn: str | None = None, ca: bool = False, key: Path | None = None) -> Cert:
        """A certificate signed by `issuer`: an intermediate CA (ca=True) or
        an end entity with SANs (IP addresses and/or DNS names)."""
        if not issuer.is_ca:
            raise HarnessError(f"{issuer.name} is not a CA")
        key = key or self.keys([(name, kind)])[0]
        dn = self.dn(cn or (f"{name} CA" if ca else (sans[0] if sans else name)))
        args = ["--issue", "--cacert", str(issuer.cert), "--cakey", str(issuer.key),
                "--type", "priv", "--in", str(key), "--dn", dn, "--lifetime", "30",
                "--outform", "pem"]
        if ca:
            args.append("--ca")
        else:
            args += ["--flag", "serverAuth", "--flag", "clientAuth"]
        for san in sans:
            args += ["--san", san]
        path = self.dir / f"{name}.crt.pem"
        path.write_bytes(self._pki(*args))
        c = Cert(name, kind, path, key, dn, issuer, tuple(sans), ca)
        self.certs[name] = c
        return c

    def chain(self, prefix: str, kind: str, sans, intermediates: int = 1,
              root_kind: str | None = None) -> Cert:
        """root CA -> `intermediates` intermediate CAs -> end entity, all
        keys made in one parallel batch. Returns the end-entity Cert
        (.chain/.root lead to the rest)."""
        specs = [(f"{prefix}-root", root_kind or kind)]
        specs += [(f"{prefix}-int{i}", kind) for i in range(1, intermediates + 1)]
        specs.append((f"{prefix}-ee", kind))
        keys = self.keys(specs)
        c = self.ca(specs[0][0], root_kind or kind, key=keys[0])
        for (name, k), key in zip(specs[1:-1], keys[1:-1]):
            c = self.issue(c, name, k, ca=True, key=key)
        return self.issue(c, specs[-1][0], kind, sans=sans, key=keys[-1])

    def large_rsa_chain(self, prefix: str, sans, intermediates: int = 1) -> Cert:
        """RSA-4096 root, intermediate(s) and end entity: the end entity plus
        intermediates come to well over 1280 bytes (IKE fragmentation test)."""
        ee = self.chain(prefix, "rsa4096", sans, intermediates)
        size = sum(len(c.der()) for c in ee.chain)
        if size <= 1280:
            raise HarnessError(f"large chain is only {size} bytes")
        return ee


def install(charon, ee: Cert, trust: list[Cert]) -> tuple[list[str], list[str]]:
    """Put `ee` (certificate, key, intermediates) and the CAs in `trust` into
    a charon's swanctl folders. Returns (local.certs, remote.cacerts) names
    for strongswan.connection()."""
    certs = [charon.install_cert(ee.cert)]
    charon.install_key(ee.key)
    for inter in ee.chain[1:]:
        charon.install_ca(inter.cert)        # strongSwan sends loaded intermediates
    cacerts = [charon.install_ca(t.cert) for t in trust]
    return certs, cacerts

