"""ESP-in-UDP (RFC 3948) packets built and opened with scapy, from SA records.

With ravelin-iked in standalone mode nothing on the Ravelin side does ESP;
these helpers stand in for its data plane: encrypt with the "out" SA and
send from ns rav, or capture what strongSwan sends and decrypt it with the
"in" SA.

    out = sa_records.find(recs, "out", "gw", "net")
    inner = inner_udp("198.19.10.1", "198.19.20.10", 40000, b"hello")
    send_esp(topo.rav, out, inner, seq=100)          # arrives at hb as UDP
    ...
    pkt = cap.first(lambda p: is_esp(p, in_sa.spi))  # Capture on rav out0
    decrypt(in_sa, pkt)                               # -> inner scapy IP

Algorithms: AES_GCM_16 (128/192/256, RFC 4106), AES_CBC + HMAC_SHA1_96 /
HMAC_SHA2_256_128 / _384_192 / _512_256 (RFC 3602, 4868) and
CHACHA20_POLY1305 (RFC 7634) - all three through scapy 2.5's
SecurityAssociation, whose ChaCha20-Poly1305 uses the RFC 7634 nonce
(salt || IV) and AAD (SPI || seq).
Tunnel mode only: that is all libipsec (the strongSwan peer) does. ESN is
refused for the same reason (strongSwan cannot install it here).
"""
from __future__ import annotations

import os

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.ipsec import ESP, IPSecIntegrityError, SecurityAssociation
from scapy.packet import Raw

from . import netns
from .netns import HarnessError
from .sa_records import SaRecord

SCAPY_ENCR = {"AES_GCM_16": "AES-GCM", "AES_CBC": "AES-CBC",
              "CHACHA20_POLY1305": "CHACHA20-POLY1305"}
SCAPY_INTEG = {"HMAC_SHA1_96": "HMAC-SHA1-96", "HMAC_SHA2_256_128": "SHA2-256-128",
               "HMAC_SHA2_384_192": "SHA2-384-192", "HMAC_SHA2_512_256": "SHA2-512-256"}


class EspError(RuntimeError):
    """A packet that is not what the SA says (wrong SPI, bad ICV, ...)."""


def scapy_sa(rec: SaRecord) -> SecurityAssociation:
    """A scapy SecurityAssociation for one SA record (tunnel mode; the outer
    header is added by encrypt() so that ports and addresses come from the
    record)."""
    if rec.mode != "tunnel":
        raise HarnessError(f"SA {rec.spi_hex}: mode {rec.mode}; only tunnel mode is supported")
    if rec.esn:
        raise HarnessError(f"SA {rec.spi_hex}: ESN is not supported by these helpers")
    if rec.encr not in SCAPY_ENCR:
        raise HarnessError(f"SA {rec.spi_hex}: no scapy mapping for {rec.encr}")
    if rec.integ is not None and rec.integ not in SCAPY_INTEG:
        raise HarnessError(f"SA {rec.spi_hex}: no scapy mapping for {rec.integ}")
    if ":" in rec.local or ":" in rec.remote:
        raise HarnessError("IPv6 outer addresses are not supported by these helpers yet")
    return SecurityAssociation(
        ESP, spi=rec.spi, crypt_algo=SCAPY_ENCR[rec.encr], crypt_key=rec.encr_key,
        auth_algo=SCAPY_INTEG.get(rec.integ) if rec.integ else None,
        auth_key=rec.integ_key,
        # tunnel mode in scapy = a tunnel_header; its addresses do not matter
        # here (encrypt() keeps only the ESP bytes, decrypt() returns the inner)
        tunnel_header=IP(src=rec.local, dst=rec.remote))


def inner_udp(src: str, dst: str, dport: int, payload: bytes, sport: int = 40000) -> IP:
    return IP(src=src, dst=dst, ttl=64) / UDP(sport=sport, dport=dport) / Raw(payload)


def inner_icmp(src: str, dst: str, payload: bytes = b"", ident: int | None = None,
               seq: int = 1) -> IP:
    """An ICMP echo request (the peer's host answers it through the tunnel)."""
    ident = ident if ident is not None else int.from_bytes(os.urandom(2), "big")
    return IP(src=src, dst=dst, ttl=64) / ICMP(type=8, id=ident, seq=seq) / Raw(payload)


def encrypt(rec: SaRecord, inner: IP, seq: int) -> IP:
    """outer IP / UDP(local_port -> remote_port) / ESP(rec) carrying `inner`.
    Without udp_encap the ESP goes straight in IP (protocol 50)."""
    if rec.direction != "out":
        raise HarnessError(f"SA {rec.spi_hex} is an inbound SA; encrypt with the out SA")
    if not 0 < seq <= 0xFFFFFFFF:
        raise HarnessError(f"sequence number {seq} out of range")
    sa = scapy_sa(rec)
    # scapy's tunnel mode: tunnel_header / inner, then ESP over the inner packet
    wrapped = sa.encrypt(IP(bytes(inner)), seq_num=seq)
    esp_bytes = bytes(wrapped[ESP])
    if rec.udp_encap:
        return IP(src=rec.local, dst=rec.remote, ttl=64, flags="DF") / \
            UDP(sport=rec.local_port, dport=rec.remote_port) / Raw(esp_bytes)
    return IP(src=rec.local, dst=rec.remote, ttl=64, flags="DF", proto=50) / Raw(esp_bytes)


def send_esp(ns: str, rec: SaRecord, inner: IP, seq: int) -> IP:
    """encrypt() and send it from namespace `ns` (the kernel routes it by the
    outer destination). Returns the packet sent."""
    pkt = IP(bytes(encrypt(rec, inner, seq)))
    netns.send_ip(ns, bytes(pkt))
    return pkt


def esp_payload(pkt) -> bytes | None:
    """The ESP bytes of an ESP-in-UDP (non-zero SPI, RFC 3948) or raw ESP
    packet (scapy IP or Ether/IP), else None (IKE on 4500 carries a zero
    non-ESP marker where the SPI would be)."""
    ip = pkt[IP] if IP in pkt else None
    if ip is None:
        return None
    if ip.proto == 17:
        udp = ip[UDP]
        if 4500 not in (udp.sport, udp.dport):
            return None
        data = bytes(udp.payload)
        if len(data) == 1 and data == b"\xff":
            return None                  # NAT keepalive
        if len(data) < 8 or data[:4] == b"\0\0\0\0":
            return None
        return data
    if ip.proto == 50:
        return bytes(ip.payload)
    return None


def is_esp(pkt, spi: int | None = None) -> bool:
    data = esp_payload(pkt)
    return data is not None and (spi is None or int.from_bytes(data[:4], "big") == spi)


def spi_seq(pkt) -> tuple[int, int]:
    data = esp_payload(pkt)
    if data is None:
        raise EspError("not an ESP packet")
    return int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big")


def decrypt(rec: SaRecord, pkt) -> IP:
    """Check and decrypt an ESP packet received on SA `rec` (direction "in");
    returns the inner IP packet. EspError on a wrong SPI or a bad ICV."""
    if rec.direction != "in":
        raise HarnessError(f"SA {rec.spi_hex} is an outbound SA; decrypt with the in SA")
    data = esp_payload(pkt)
    if data is None:
        raise EspError("not an ESP packet")
    spi = int.from_bytes(data[:4], "big")
    if spi != rec.spi:
        raise EspError(f"SPI 0x{spi:08x} is not the SA's {rec.spi_hex}")
    sa = scapy_sa(rec)
    try:
        inner = sa.decrypt(IP(src=rec.remote, dst=rec.local, proto=50) / ESP(data))
    except IPSecIntegrityError as e:
        raise EspError(f"ICV check failed on SA {rec.spi_hex}: {e}") from None
    return IP(bytes(inner))
