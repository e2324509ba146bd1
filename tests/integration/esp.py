"""ESP with scapy 2.5 as the independent implementation.

Maps Ravelin's config algorithm names to scapy's SecurityAssociation and
fixes what scapy 2.5 gets wrong or lacks:

- ESN with a separate integrity algorithm (CBC/null + HMAC): scapy signs
  and verifies without the implicit high 32 bits of the sequence number
  (RFC 4303 §2.2.1). EspSa recomputes and checks that ICV itself. (scapy
  does handle ESN for AEAD: the 12-byte AAD of RFC 4106 §5.)
- ESP-in-UDP: scapy writes a UDP length of 8 (the header alone) and
  leaves the checksum 0, which RFC 3948 allows for IPv4 but IPv6 does not;
  EspSa fixes the length and fills in the IPv6 checksum.
- scapy has no AES-GMAC (ENCR_NULL_AUTH_AES_GMAC, RFC 4543), so Ravelin's
  aes128gmac/aes256gmac cannot be cross-checked here.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation


@dataclass(frozen=True)
class Algo:
    name: str                 # test id
    encryption: str           # Ravelin config value
    integrity: str | None     # Ravelin config value
    scapy_crypt: str
    scapy_auth: str | None
    key_len: int              # cipher key bytes, without the AEAD salt
    integ_key_len: int = 0
    legacy: bool = False

    @property
    def aead(self) -> bool:
        return self.integrity is None and self.encryption != "null"

    @property
    def icv_len(self) -> int:
        if self.aead:
            return 16
        return {"sha1": 12, "sha256": 16, "sha384": 24, "sha512": 32}[self.integrity]


# Everything both scapy 2.5 and Ravelin implement (not GMAC: see above).
ALGOS = [
    Algo("aes128gcm16", "aes128gcm16", None, "AES-GCM", None, 16),
    Algo("aes256gcm16", "aes256gcm16", None, "AES-GCM", None, 32),
    Algo("chacha20poly1305", "chacha20poly1305", None, "CHACHA20-POLY1305", None, 32),
    Algo("aes128-sha256", "aes128", "sha256", "AES-CBC", "SHA2-256-128", 16, 32),
    Algo("aes256-sha384", "aes256", "sha384", "AES-CBC", "SHA2-384-192", 32, 48),
    Algo("aes256-sha512", "aes256", "sha512", "AES-CBC", "SHA2-512-256", 32, 64),
    Algo("null-sha256", "null", "sha256", "NULL", "SHA2-256-128", 0, 32),
    Algo("3des-sha1", "3des", "sha1", "3DES", "HMAC-SHA1-96", 24, 20, legacy=True),
]
ALGO_BY_NAME = {a.name: a for a in ALGOS}

_HASH = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
         "sha512": hashlib.sha512}


@dataclass
class SaParams:
    """One unidirectional SA as both sides must configure it."""
    spi: int
    algo: Algo
    local: str                # outer source of the sender
    remote: str               # outer destination of the sender
    encap: bool = False
    esn: bool = False
    key: bytes = field(default=b"")        # cipher key || salt (AEAD)
    integ_key: bytes = field(default=b"")

    def __post_init__(self):
        if not self.key and (self.algo.key_len or self.algo.aead):
            self.key = os.urandom(self.algo.key_len + (4 if self.algo.aead else 0))
        if not self.integ_key and self.algo.integ_key_len:
            self.integ_key = os.urandom(self.algo.integ_key_len)

    @property
    def v6(self) -> bool:
        return ":" in self.local

    def toml(self, direction: str, gw_local: str, gw_remote: str, worker=None,
             replay_window=None) -> str:
        """[[sa]] entry for Ravelin; gw_local/gw_remote are the tunnel
        endpoints as seen from the gateway."""
        a = self.algo
        lines = ["[[sa]]", f"spi = {self.spi}", f'direction = "{direction}"', 'mode = "tunnel"',
                 f'encryption = "{a.encryption}"']
        if self.key:
            lines.append(f'key = "0x{self.key.hex()}"')
        if a.integrity:
            lines += [f'integrity = "{a.integrity}"', f'integrity_key = "0x{self.integ_key.hex()}"']
        lines += [f'local = "{gw_local}"', f'remote = "{gw_remote}"',
                  f"encap = {str(self.encap).lower()}", f"esn = {str(self.esn).lower()}"]
        if self.encap:
            lines += ["encap_local_port = 4500", "encap_remote_port = 4500"]
        if worker is not None:
            lines.append(f"worker = {worker}")
        if replay_window is not None:
            lines.append(f"replay_window = {replay_window}")
        return "\n".join(lines) + "\n"


class EspSa:
    """scapy's SecurityAssociation for one SA, tunnel mode, as a peer sees it."""

    def __init__(self, p: SaParams):
        self.p = p
        ip = IPv6 if p.v6 else IP
        a = p.algo
        self._esn_hmac = p.esn and not a.aead
        self.sa = SecurityAssociation(
            ESP, spi=p.spi, crypt_algo=a.scapy_crypt, crypt_key=p.key or None,
            auth_algo=a.scapy_auth, auth_key=p.integ_key or None,
            tunnel_header=ip(src=p.local, dst=p.remote),
            nat_t_header=UDP(sport=4500, dport=4500) if p.encap else None,
            esn_en=p.esn and a.aead, esn=0)

    @property
    def next_seq(self) -> int:
        return self.sa.seq_num

    def encrypt(self, inner, seq: int | None = None):
        """Outer IP packet (with UDP if encap) carrying `inner`."""
        pkt = self.sa.encrypt(inner, seq_num=seq)
        if self._esn_hmac:
            esp = pkt[ESP]
            body = bytes(esp)[:-self.p.algo.icv_len]
            esp.data = esp.data[:-self.p.algo.icv_len] + self._icv(body)
        if self.p.encap:
            # scapy 2.5 freezes the UDP length at 8 (it builds the header
            # before appending ESP): recompute it, and the checksum for IPv6.
            del pkt[UDP].len
            if self.p.v6:
                del pkt[UDP].chksum
        return pkt.__class__(bytes(pkt))

    def _icv(self, esp_without_icv: bytes) -> bytes:
        a = self.p.algo
        seq_hi = struct.pack("!L", 0)   # sequence numbers here stay below 2^32
        return hmac.new(self.p.integ_key, esp_without_icv + seq_hi,
                        _HASH[a.integrity]).digest()[:a.icv_len]

    def decrypt(self, outer):
        """Inner packet of a received outer IP(v6) packet; raises on a bad
        ICV (scapy's IPSecIntegrityError, or ValueError for ESN HMAC)."""
        if self._esn_hmac:
            raw = bytes(outer[ESP])
            n = self.p.algo.icv_len
            if not hmac.compare_digest(self._icv(raw[:-n]), raw[-n:]):
                raise ValueError("ESN HMAC ICV mismatch")
            return self.sa.decrypt(outer, verify=False)
        return self.sa.decrypt(outer)
