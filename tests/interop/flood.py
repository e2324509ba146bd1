"""A hostile flood towards the gateway's IKE ports, from spoofed sources:
structurally valid IKE_SA_INIT requests (each would cost the responder a
Diffie-Hellman computation) mixed with garbage on UDP 500 and 4500, with
and without the non-ESP marker.

    with Flood(ns, dst="198.18.10.1", sources="198.18.10.0/24", seconds=10) as f:
        ...
    f.sent   # packets sent

The flooder is a small Python program using a raw socket (IP_HDRINCL) so
the source addresses can be anything in `sources`; it stops by itself.
"""
from __future__ import annotations

import subprocess

from . import netns
from .netns import HarnessError

PYTHON = "/usr/bin/python3"

_FLOODER = r"""
import ipaddress, os, random, socket, struct, sys, time
dst, net, seconds = sys.argv[1], ipaddress.ip_network(sys.argv[2]), float(sys.argv[3])
hosts = [str(h) for h in net.hosts()][10:]   # leave the real gateways' addresses alone
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rnd = random.Random(7)

def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff

def ike_sa_init():
    # IKE_SA_INIT: SA (AES-GCM-16-256, PRF-HMAC-SHA256, X25519), KE, Ni
    tf = lambda last, ttype, tid, attr=b"": struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attr), ttype, 0, tid) + attr
    transforms = tf(0, 1, 20, struct.pack("!HH", 0x800e, 256)) + tf(0, 2, 5) + tf(1, 4, 31)
    prop = struct.pack("!BBHBBBB", 0, 0, 8 + len(transforms), 1, 1, 0, 3) + transforms
    sa = struct.pack("!BBH", 34, 0, 4 + len(prop)) + prop
    ke = struct.pack("!BBHHH", 40, 0, 8 + 32, 31, 0) + os.urandom(32)
    nonce = struct.pack("!BBH", 0, 0, 4 + 32) + os.urandom(32)
    body = sa + ke + nonce
    hdr = os.urandom(8) + b"\0" * 8 + struct.pack("!BBBBII", 33, 0x20, 34, 0x08, 0, 28 + len(body))
    return hdr + body

def packet(src, sport, dport, payload):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, len(udp))
    c = csum(pseudo + udp) or 0xffff
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), rnd.randrange(65536), 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + udp

sent, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    src = rnd.choice(hosts)
    k = sent % 4
    if k == 0:   payload, dport = ike_sa_init(), 500
    elif k == 1: payload, dport = b"\0\0\0\0" + ike_sa_init(), 4500
    elif k == 2: payload, dport = os.urandom(rnd.randrange(1, 300)), 500
    else:        payload, dport = os.urandom(rnd.randrange(1, 300)), 4500
    try:
        s.sendto(packet(src, rnd.randrange(1024, 65535), dport, payload), (dst, 0))
        sent += 1
    except OSError:
        time.sleep(0.001)
print(sent, flush=True)
"""


class Flood:
    def __init__(self, ns: str, dst: str, sources: str, seconds: float = 10):
        self.ns, self.dst, self.sources, self.seconds = ns, dst, sources, seconds
        self.proc: subprocess.Popen | None = None
        self.sent = 0

    def __enter__(self) -> "Flood":
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, PYTHON, "-c", _FLOODER, self.dst, self.sources,
             str(self.seconds)], stdout=subprocess.PIPE, text=True, env=netns.owner_env(),
            preexec_fn=netns.die_with_parent)
        return self

    def wait(self) -> int:
        try:
            out, _ = self.proc.communicate(timeout=self.seconds + 20)
        except subprocess.TimeoutExpired:
            netns.stop_pids([self.proc.pid], 2)
            raise HarnessError("flooder did not stop") from None
        self.sent = int(out.strip() or 0)
        return self.sent

    def __exit__(self, *exc):
        if exc[0] is not None and self.proc and self.proc.poll() is None:
            netns.stop_pids([self.proc.pid], 2)
        elif self.proc:
            self.wait()
        return False
