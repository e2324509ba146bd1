"""Network namespaces, veths and the two interop topologies.

Every name this module creates starts with ``rvix-<owner>-``, where
``<owner>`` is ``<pid>.<start time of that process in clock ticks>`` of the
Python process that made it. So two runs side by side never share a name,
and a later run can tell leftovers (owner process gone) from namespaces of a
run that is still going (owner alive): only leftovers are removed.

Every process the harness starts carries ``RVIX_OWNER=<owner>`` in its
environment. That is how a leftover process is recognised as ours before it
is ended (by its PID); anything else found in a leftover namespace is only
reported.

Addresses come from 198.18.0.0/15 and 2001:db8::/32 only.

Topologies (interface names are the same in every run: they live inside the
namespaces, so they cannot clash)::

  gateway pair                    rav out0 198.18.10.1/24 == out0 198.18.10.2/24 sw
    rav: prot0 198.19.10.1/24 (the Ravelin side's protected subnet; a veth
          whose peer prot0p is also in rav: this kernel has no dummy driver)
    sw:  lan0 198.19.20.1/24 == eth0 198.19.20.10/24 hb (default via .1)

  NAT                 rav out0 198.18.11.2/24 == in0 198.18.11.1/24 nat
                      nat out0 198.18.10.3/24 == out0 198.18.10.2/24 sw
    nat masquerades everything leaving out0 (nftables); rav's default route
    is via 198.18.11.1; sw has no route to 198.18.11.0/24.

  data plane          ha eth0 198.19.10.10/24 == in0 [rav: ravelin-dataplane] out0 == out0 sw
    rav's veths have no kernel addresses: the data plane (net_af_packet)
    owns them and answers for 198.19.10.1 (inside) and 198.18.10.1
    (outside) itself. ha is the host behind the Ravelin gateway (default
    via 198.19.10.1); sw and hb as in the gateway pair.

The strongSwan side has no route to 198.19.10.0/24 except the one its
charon installs through the libipsec TUN device, so a packet that gets from
hb to the Ravelin side went through the tunnel.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import ipaddress
import os
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

PREFIX = "rvix"
OWNER_ENV = "RVIX_OWNER"
CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


class HarnessError(RuntimeError):
    """The test environment is broken (not the IKE daemon under test)."""


# --- processes -----------------------------------------------------------------

def run(cmd: list[str], ns: str | None = None, check: bool = True, timeout: float = 20,
        input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `cmd` (optionally inside namespace `ns`) to completion, bounded by
    `timeout` seconds; raise HarnessError on a non-zero exit when `check`."""
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                           env=env)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"{' '.join(cmd)}: no exit within {timeout} s") from e
    if check and p.returncode != 0:
        raise HarnessError(f"{' '.join(cmd)} -> exit {p.returncode}\n{p.stdout}{p.stderr}")
    return p


def die_with_parent():
    """preexec_fn: the child gets SIGTERM when the test process dies, even by
    SIGKILL, so nothing we start outlives a killed run."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # field 22 (starttime); the command name (field 2) may contain spaces
    return stat.rsplit(")", 1)[1].split()[19]


_OWNER: str | None = None


def owner() -> str:
    """This process's owner token: '<pid>.<start ticks>'."""
    global _OWNER
    if _OWNER is None:
        _OWNER = owner_token(os.getpid())
    return _OWNER


def owner_env(extra: dict | None = None) -> dict:
    """Environment for a process the harness starts (marks it as ours)."""
    env = dict(os.environ)
    env[OWNER_ENV] = owner()
    if extra:
        env.update(extra)
    return env


def owner_token(pid: int) -> str | None:
    """The owner token of a running process (None if it is gone)."""
    ticks = _start_ticks(pid)
    return f"{pid}.{ticks}" if ticks is not None else None


def owner_alive(token: str) -> bool:
    pid, _, ticks = token.partition(".")
    return pid.isdigit() and _start_ticks(int(pid)) == ticks


def process_owner(pid: int) -> str | None:
    """The RVIX_OWNER a process was started with, or None."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    key = OWNER_ENV.encode() + b"="
    for e in env:
        if e.startswith(key):
            return e[len(key):].decode(errors="replace")
    return None


def stop_pid(pid: int, timeout: float = 5.0) -> bool:
    """SIGTERM, wait up to `timeout` s, then SIGKILL. For processes this
    harness started only. True if it is gone."""
    return stop_pids([pid], timeout)


def stop_pids(pids: list[int], timeout: float = 5.0) -> bool:
    """stop_pid for several processes at once (their shutdowns overlap)."""
    live = [p for p in pids if _start_ticks(p) is not None]
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        live = [p for p in live if not _reaped(p)]
        if live:
            time.sleep(0.05)
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 2
    while live and time.monotonic() < deadline:
        live = [p for p in live if not _reaped(p)]
        if live:
            time.sleep(0.05)
    return not live


def _reaped(pid: int) -> bool:
    """True once `pid` has exited (reaping it if it is our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


# --- namespaces ----------------------------------------------------------------

def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


_NAME_RE = re.compile(rf"^{PREFIX}-(\d+\.\d+)-")


def cleanup_stale(log=print, only: set[str] | None = None) -> list[str]:
    """Delete the namespaces of harness runs whose process is gone, after
    ending (by PID) the processes that such a run started. Processes not
    started by this harness are reported and left alone. `only` limits it to
    these owner tokens. Returns the names deleted."""
    leftovers = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            tok = process_owner(int(d.name))
            if tok and not owner_alive(tok) and (only is None or tok in only):
                leftovers.append(int(d.name))
    if leftovers:
        log(f"interop: ending leftover processes of dead harness runs: {leftovers}")
        stop_pids(leftovers, timeout=3)
    removed = []
    for name in netns_list():
        m = _NAME_RE.match(name)
        if not m or owner_alive(m.group(1)) or (only is not None and m.group(1) not in only):
            continue
        pids = [int(p) for p in run(["ip", "netns", "pids", name], check=False).stdout.split()
                if p.isdigit()]
        ours = [p for p in pids if process_owner(p) == m.group(1)]
        foreign = [p for p in pids if p not in ours]
        if ours:
            log(f"interop: ending leftover processes {ours} in {name}")
            stop_pids(ours, timeout=3)
        if foreign:
            log(f"interop: WARNING: processes {foreign} in leftover {name} were not started "
                "by this harness; left running")
        run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    return removed


def _setns(fd: int):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


@contextlib.contextmanager
def in_netns(name: str):
    """The body runs (on this thread) inside namespace `name`. Sockets made in
    the body belong to that namespace for their whole life."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    except FileNotFoundError:
        os.close(home)
        raise HarnessError(f"namespace {name} does not exist") from None
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(target)


class Lab:
    """The namespaces of one test. Each is named rvix-<owner>-<n>-<role>;
    close() deletes all of them (the veths go with them)."""

    _serial = 0

    def __init__(self):
        Lab._serial += 1
        self.tag = f"{PREFIX}-{owner()}-{Lab._serial}"
        self.namespaces: dict[str, str] = {}

    def add_ns(self, role: str, ipv6: bool = False) -> str:
        if role in self.namespaces:
            raise HarnessError(f"namespace role {role} exists")
        name = f"{self.tag}-{role}"
        run(["ip", "netns", "add", name])
        self.namespaces[role] = name
        run(["ip", "link", "set", "lo", "up"], ns=name)
        sysctls = ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]
        if ipv6:
            sysctls += ["net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.router_solicitations=0",
                        "net.ipv6.conf.default.accept_ra=0"]
        else:
            # no ND/MLD chatter in captures
            sysctls += ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
        run(["sysctl", "-qw", *sysctls], ns=name)
        return name

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str, mtu: int = 1500):
        """A veth pair created directly inside the two namespaces, up, with TX
        checksum offload off (else UDP checksums on the wire are partial)."""
        run(["ip", "link", "add", if_a, "netns", ns_a, "mtu", str(mtu), "type", "veth",
             "peer", "name", if_b, "netns", ns_b, "mtu", str(mtu)])
        for ns, ifn in ((ns_a, if_a), (ns_b, if_b)):
            run(["ethtool", "-K", ifn, "tx", "off"], ns=ns)
            run(["ip", "link", "set", ifn, "up"], ns=ns)

    def stub(self, ns: str, ifname: str):
        """An interface that only holds addresses (like a dummy; this kernel
        has no dummy driver): a veth pair with both ends in `ns`, the peer
        named <ifname>p, both up."""
        self.veth(ns, ifname, ns, ifname + "p")

    def addr(self, ns: str, ifname: str, cidr: str):
        _check_test_address(cidr)
        extra = ["nodad"] if ":" in cidr else []
        run(["ip", "addr", "add", cidr, "dev", ifname, *extra], ns=ns)

    def route(self, ns: str, dst: str, via: str):
        run(["ip", "route", "add", dst, "via", via], ns=ns)

    def forwarding(self, ns: str, ipv6: bool = False):
        s = ["net.ipv4.ip_forward=1"] + (["net.ipv6.conf.all.forwarding=1"] if ipv6 else [])
        run(["sysctl", "-qw", *s], ns=ns)

    def nft(self, ns: str, ruleset: str):
        run(["nft", "-f", "-"], ns=ns, input=ruleset)

    def close(self):
        errors = []
        for name in reversed(list(self.namespaces.values())):
            p = run(["ip", "netns", "del", name], check=False)
            if p.returncode:
                errors.append(p.stderr.strip())
        self.namespaces.clear()
        if errors:
            raise HarnessError("; ".join(errors))


_TEST_NETS = [ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32")]


def _check_test_address(cidr: str):
    a = ipaddress.ip_interface(cidr).ip
    if not any(a in n for n in _TEST_NETS):
        raise HarnessError(f"{cidr}: tests use 198.18.0.0/15 and 2001:db8::/32 only")


@dataclasses.dataclass
class Topology:
    """Names and addresses of one topology (see the module docstring)."""
    lab: Lab
    rav: str                      # namespace of the Ravelin gateway (or its stand-in)
    sw: str                       # namespace of the strongSwan gateway
    hb: str                       # namespace of the host behind strongSwan
    nat: str | None = None        # NAT router (NAT topology only)
    ha: str | None = None         # host behind the Ravelin gateway (data-plane topology only)
    ha_if: str = "eth0"
    ha_addr: str = "198.19.10.10"
    rav_in_if: str = "in0"        # the data plane's protected port (data-plane topology)
    rav_outer: str = "198.18.10.1"    # the Ravelin side's own outer address
    rav_seen_as: str = "198.18.10.1"  # the address strongSwan sees it as
    sw_outer: str = "198.18.10.2"
    rav_if: str = "out0"
    sw_if: str = "out0"
    hb_if: str = "eth0"
    rav_net: str = "198.19.10.0/24"
    rav_inner: str = "198.19.10.1"
    sw_net: str = "198.19.20.0/24"
    sw_inner: str = "198.19.20.1"
    hb_addr: str = "198.19.20.10"
    ipv6: bool = False
    rav_outer6: str = "2001:db8:18:10::1"
    sw_outer6: str = "2001:db8:18:10::2"
    rav_net6: str = "2001:db8:19:10::/64"
    rav_inner6: str = "2001:db8:19:10::1"
    sw_net6: str = "2001:db8:19:20::/64"
    hb_addr6: str = "2001:db8:19:20::10"

    @property
    def behind_nat(self) -> bool:
        return self.nat is not None


def _strongswan_side(lab: Lab, topo: Topology, ipv6: bool):
    """sw's LAN and hb (common to both topologies)."""
    lab.veth(topo.sw, "lan0", topo.hb, topo.hb_if)
    lab.addr(topo.sw, "lan0", f"{topo.sw_inner}/24")
    lab.addr(topo.hb, topo.hb_if, f"{topo.hb_addr}/24")
    lab.route(topo.hb, "default", topo.sw_inner)
    lab.forwarding(topo.sw, ipv6)
    if ipv6:
        lab.addr(topo.sw, "lan0", "2001:db8:19:20::1/64")
        lab.addr(topo.hb, topo.hb_if, f"{topo.hb_addr6}/64")
        lab.route(topo.hb, "::/0", "2001:db8:19:20::1")


def gateway_pair(lab: Lab, ipv6: bool = False) -> Topology:
    """rav <-> sw <-> hb (module docstring). With ipv6, 2001:db8:18:10::/64
    outside, 2001:db8:19:10::/64 (rav) and 2001:db8:19:20::/64 (sw LAN) too."""
    topo = Topology(lab=lab, rav=lab.add_ns("rav", ipv6), sw=lab.add_ns("sw", ipv6),
                    hb=lab.add_ns("hb", ipv6), ipv6=ipv6)
    lab.veth(topo.rav, topo.rav_if, topo.sw, topo.sw_if)
    lab.addr(topo.rav, topo.rav_if, f"{topo.rav_outer}/24")
    lab.addr(topo.sw, topo.sw_if, f"{topo.sw_outer}/24")
    lab.stub(topo.rav, "prot0")
    lab.addr(topo.rav, "prot0", f"{topo.rav_inner}/24")
    if ipv6:
        lab.addr(topo.rav, topo.rav_if, f"{topo.rav_outer6}/64")
        lab.addr(topo.sw, topo.sw_if, f"{topo.sw_outer6}/64")
        lab.addr(topo.rav, "prot0", f"{topo.rav_inner6}/64")
    lab.forwarding(topo.rav, ipv6)
    _strongswan_side(lab, topo, ipv6)
    return topo


def dataplane_pair(lab: Lab, nat: bool = False) -> Topology:
    """ha <-> rav (the data plane owns both veths) <-> sw <-> hb (module
    docstring). With nat, a masquerading router sits between rav and sw as
    in nat_pair()."""
    if nat:
        topo = Topology(lab=lab, rav=lab.add_ns("rav"), sw=lab.add_ns("sw"), hb=lab.add_ns("hb"),
                        ha=lab.add_ns("ha"), nat=lab.add_ns("nat"), rav_outer="198.18.11.2",
                        rav_seen_as="198.18.10.3")
        lab.veth(topo.rav, topo.rav_if, topo.nat, "in0")
        lab.addr(topo.nat, "in0", "198.18.11.1/24")
        lab.veth(topo.nat, "out0", topo.sw, topo.sw_if)
        lab.addr(topo.nat, "out0", f"{topo.rav_seen_as}/24")
        lab.forwarding(topo.nat)
        lab.nft(topo.nat, (
            "table ip rvix_nat {\n"
            " chain post { type nat hook postrouting priority srcnat; policy accept;\n"
            "  oifname \"out0\" masquerade\n"
            " }\n"
            "}\n"))
    else:
        topo = Topology(lab=lab, rav=lab.add_ns("rav"), sw=lab.add_ns("sw"), hb=lab.add_ns("hb"),
                        ha=lab.add_ns("ha"))
        lab.veth(topo.rav, topo.rav_if, topo.sw, topo.sw_if)
    lab.addr(topo.sw, topo.sw_if, f"{topo.sw_outer}/24")
    lab.veth(topo.ha, topo.ha_if, topo.rav, topo.rav_in_if)
    lab.addr(topo.ha, topo.ha_if, f"{topo.ha_addr}/24")
    lab.route(topo.ha, "default", topo.rav_inner)
    _strongswan_side(lab, topo, False)
    return topo


def ravelin_pair(lab: Lab) -> tuple[Topology, Topology]:
    """ha <-> rav (data plane) <-> rav2 (data plane) <-> hb: two Ravelin
    gateways. Returns two views of it, one per gateway, each with that
    gateway as "rav" and the other one's addresses as the "sw" side (so
    RavelinGateway and peers.site_configs work for either)."""
    a = Topology(lab=lab, rav=lab.add_ns("rav"), sw=lab.add_ns("rav2"), hb=lab.add_ns("hb"),
                 ha=lab.add_ns("ha"))
    lab.veth(a.rav, a.rav_if, a.sw, a.sw_if)
    lab.veth(a.ha, a.ha_if, a.rav, a.rav_in_if)
    lab.addr(a.ha, a.ha_if, f"{a.ha_addr}/24")
    lab.route(a.ha, "default", a.rav_inner)
    lab.veth(a.sw, "in0", a.hb, a.hb_if)
    lab.addr(a.hb, a.hb_if, f"{a.hb_addr}/24")
    lab.route(a.hb, "default", a.sw_inner)
    b = dataclasses.replace(a, rav=a.sw, sw=a.rav, ha=a.hb, hb=a.ha, ha_addr=a.hb_addr, hb_addr=a.ha_addr,
                            rav_outer=a.sw_outer, rav_seen_as=a.sw_outer, sw_outer=a.rav_outer,
                            rav_net=a.sw_net, rav_inner=a.sw_inner, sw_net=a.rav_net, sw_inner=a.rav_inner)
    return a, b


def nat_pair(lab: Lab, random_ports: bool = False) -> Topology:
    """rav -> nat (masquerade) -> sw <-> hb (module docstring). With
    random_ports the NAT also rewrites source ports (500 and 4500 become
    random ports), otherwise it keeps them when it can."""
    topo = Topology(lab=lab, rav=lab.add_ns("rav"), sw=lab.add_ns("sw"), hb=lab.add_ns("hb"),
                    nat=lab.add_ns("nat"), rav_outer="198.18.11.2", rav_seen_as="198.18.10.3")
    lab.veth(topo.rav, topo.rav_if, topo.nat, "in0")
    lab.addr(topo.rav, topo.rav_if, f"{topo.rav_outer}/24")
    lab.addr(topo.nat, "in0", "198.18.11.1/24")
    lab.route(topo.rav, "default", "198.18.11.1")
    lab.veth(topo.nat, "out0", topo.sw, topo.sw_if)
    lab.addr(topo.nat, "out0", f"{topo.rav_seen_as}/24")
    lab.addr(topo.sw, topo.sw_if, f"{topo.sw_outer}/24")
    lab.forwarding(topo.nat)
    lab.nft(topo.nat, (
        "table ip rvix_nat {\n"
        " chain post { type nat hook postrouting priority srcnat; policy accept;\n"
        f"  oifname \"out0\" masquerade{' random' if random_ports else ''}\n"
        " }\n"
        "}\n"))
    lab.stub(topo.rav, "prot0")
    lab.addr(topo.rav, "prot0", f"{topo.rav_inner}/24")
    lab.forwarding(topo.rav)
    _strongswan_side(lab, topo, False)
    return topo


# --- traffic -------------------------------------------------------------------

def ping(ns: str, dst: str, count: int = 1, src: str | None = None, wait: float = 1.0,
         interval: float = 0.2) -> bool:
    """True if every one of `count` echo requests got its reply (each waits
    at most `wait` s; the whole run is bounded)."""
    cmd = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait)]
    if src:
        cmd += ["-I", src]
    cmd.append(dst)
    p = run(cmd, ns=ns, check=False, timeout=count * (interval + wait) + 5)
    return p.returncode == 0


def send_ip(ns: str, packet: bytes):
    """Send one complete IPv4 packet (header included) from namespace `ns`;
    the kernel routes it by its destination."""
    dst = socket.inet_ntoa(bytes(packet)[16:20])
    with in_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    with s:
        s.sendto(bytes(packet), (dst, 0))


def send_udp(ns: str, src: str, dst: str, dport: int, payload: bytes, sport: int = 0):
    """One UDP datagram from a plain socket in `ns` bound to `src`."""
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with in_netns(ns):
        s = socket.socket(fam, socket.SOCK_DGRAM)
    with s:
        s.bind((src, sport))
        s.sendto(payload, (dst, dport))


class Capture:
    """An AF_PACKET socket on one interface in one namespace. Frames are
    queued by the kernel from construction on, so open it before the traffic
    you want to see. Reads are bounded by a deadline."""

    PKTTYPE_OUTGOING = 4

    def __init__(self, ns: str, ifname: str, direction: str = "any"):
        if direction not in ("any", "in", "out"):
            raise HarnessError(f"capture direction {direction!r}")
        with in_netns(ns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((ifname, 0))
        self.sock, self.ns, self.ifname, self.direction = s, ns, ifname, direction

    def _wanted(self, pkttype: int) -> bool:
        if self.direction == "any":
            return True
        return (pkttype == self.PKTTYPE_OUTGOING) == (self.direction == "out")

    def collect(self, match, count: int = 1, timeout: float = 3.0) -> list:
        """Up to `count` frames for which match(scapy Ether) is true, waiting
        at most `timeout` s. Returns scapy Ether packets."""
        from scapy.layers.l2 import Ether
        got, deadline = [], time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                break
            frame, addr = self.sock.recvfrom(65535)
            if not self._wanted(addr[2]):
                continue
            pkt = Ether(frame)
            if match(pkt):
                got.append(pkt)
        return got

    def first(self, match, timeout: float = 3.0):
        got = self.collect(match, 1, timeout)
        return got[0] if got else None

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_until(pred, timeout: float, step: float = 0.1):
    """Poll pred() until it returns something true or `timeout` s pass;
    returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)
