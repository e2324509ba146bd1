"""Network-namespace topologies and data-plane processes for integration tests.

Everything here runs as root and touches only what it created itself:
namespaces and veths named with a per-run suffix (the PID), DPDK file
prefixes unique to the run, and processes it started (ended by PID).

Gateway-side veth ends carry no kernel address and have IPv6 disabled, so
the kernel in a gateway namespace never answers ARP/ND or sends router
solicitations: only ravelin-dataplane (net_af_packet on the veth) talks
there. Offloads are off on every veth end, otherwise the kernel hands
af_packet partial checksums and 64 KB TSO/GSO super-frames.

Addresses: 198.18.0.0/15 and 2001:db8::/32 only.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23

_libc = ctypes.CDLL(None, use_errno=True)


PR_SET_PDEATHSIG = 1


def die_with_parent():
    """preexec_fn: the child gets SIGTERM when the harness dies, even by
    SIGKILL, so no busy-polling gateway outlives a killed test run."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class HarnessError(RuntimeError):
    """The test environment itself is broken (not the system under test)."""


def run(cmd, ns: str | None = None, check=True, timeout=30, capture=True):
    """Run a command (list), optionally inside network namespace `ns`."""
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    p = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise HarnessError(f"{' '.join(cmd)} -> exit {p.returncode}\n{p.stdout}{p.stderr}")
    return p


def require_root():
    if os.geteuid() != 0:
        raise HarnessError("integration tests need root (network namespaces, hugepages)")


def build_dir() -> Path:
    """Where the binaries are: $RAVELIN_BUILD (relative to the repo) or build/."""
    return REPO / os.environ.get("RAVELIN_BUILD", "build")


def binaries() -> tuple[Path, Path]:
    b = build_dir()
    dp, ctl = b / "dataplane/ravelin-dataplane", b / "controlplane/ravelinctl"
    for f in (dp, ctl):
        if not os.access(f, os.X_OK):
            raise HarnessError(f"{f} missing: build first (ninja -C {b})")
    return dp, ctl


def require_hugepages(pages=128):
    base = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")
    free = int((base / "free_hugepages").read_text())
    mounted = any(l.split()[1] == "/dev/hugepages" and l.split()[2] == "hugetlbfs"
                  for l in Path("/proc/mounts").read_text().splitlines())
    if not mounted or free < pages:
        raise HarnessError(f"hugepages: mounted={mounted} free={free}, need {pages}; "
                           "run scripts/install-deps.sh")


# --- entering namespaces from this process -----------------------------------

def _setns(fd: int):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


@contextlib.contextmanager
def in_netns(name: str):
    """Run the body (on this thread) inside namespace `name`.

    Sockets created inside stay in that namespace after the block, so a test
    can hold sockets in several namespaces at once.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


class RawPort:
    """An AF_PACKET socket on one interface of one namespace: send frames,
    receive frames (incoming only), with bounded waits."""

    def __init__(self, ns: str, ifname: str):
        with in_netns(ns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            s.bind((ifname, 0))
        self.sock, self.ns, self.ifname = s, ns, ifname

    def send(self, frame: bytes):
        self.sock.send(bytes(frame))

    def drain(self):
        while select.select([self.sock], [], [], 0)[0]:
            self.sock.recv(65535)

    def collect(self, match, count: int, timeout: float, quiet: float = 0.0):
        """Frames (bytes) for which match(frame) is true, until `count` of them
        or `timeout` seconds; then keep listening `quiet` seconds for extras."""
        got, deadline = [], time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if len(got) >= count:
                if quiet <= 0:
                    break
                deadline = min(deadline, now + quiet)
                quiet = 0
            if now >= deadline:
                break
            if select.select([self.sock], [], [], deadline - now)[0]:
                f = self.sock.recv(65535)
                if match(f):
                    got.append(f)
        return got

    def close(self):
        self.sock.close()


# --- topology -----------------------------------------------------------------

def if_mac(ns: str, ifname: str) -> str:
    out = run(["ip", "-j", "link", "show", "dev", ifname], ns=ns).stdout
    return json.loads(out)[0]["address"]


class Topology:
    """Namespaces and veth pairs; deletes all of them on close(), also when a
    test failed half-way. Names carry the PID so parallel runs do not clash."""

    def __init__(self, tag: str = ""):
        self.suffix = f"{tag}{os.getpid()}"
        self.namespaces: list[str] = []

    def ns(self, role: str) -> str:
        name = f"rv-{role}-{self.suffix}"
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "link", "set", "lo", "up"], ns=name)
        return name

    def ifname(self, short: str) -> str:
        name = f"{short}{self.suffix}"
        if len(name) > 15:
            raise HarnessError(f"interface name {name} too long")
        return name

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str):
        run(["ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b,
             "netns", ns_b])
        for ns, ifn in ((ns_a, if_a), (ns_b, if_b)):
            # One queue each way, no offloads: af_packet must see real frames.
            run(["ethtool", "-K", ifn, "tx", "off", "rx", "off", "tso", "off", "gso", "off",
                 "gro", "off"], ns=ns)

    def gateway_port(self, ns: str, ifname: str, mtu: int = 1500):
        """A veth end owned by the data plane: no address, no IPv6, up."""
        run(["sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1"], ns=ns)
        run(["ip", "link", "set", ifname, "mtu", str(mtu), "up"], ns=ns)

    def host_port(self, ns: str, ifname: str, addrs: list[str], mtu: int = 1500,
                  routes: list[tuple[str, str]] = ()):
        """A kernel-owned veth end with addresses (no DAD) and routes."""
        for key, val in (("accept_ra", 0), ("router_solicitations", 0), ("accept_dad", 0)):
            run(["sysctl", "-qw", f"net.ipv6.conf.{ifname}.{key}={val}"], ns=ns)
        run(["ip", "link", "set", ifname, "mtu", str(mtu), "up"], ns=ns)
        for a in addrs:
            extra = ["nodad"] if ":" in a else []
            run(["ip", "addr", "add", a, "dev", ifname, *extra], ns=ns)
        for prefix, via in routes:
            run(["ip", "route", "add", prefix, "via", via, "dev", ifname], ns=ns)

    def quiet_host(self, ns: str, drop_udp_ports=(), drop_esp=False):
        """nftables in a host namespace: no MLD/RS chatter towards the
        gateway (it would show up in its counters), and no ICMP errors for
        test traffic we only capture (they would be tunnelled back)."""
        rules = [
            "table inet rvtest {",
            " chain out { type filter hook output priority 0; policy accept;",
            "  icmpv6 type { nd-router-solicit, mld-listener-report, mld2-listener-report,"
            " mld-listener-done } drop",
            " }",
            " chain in { type filter hook input priority 0; policy accept;",
        ]
        for p in drop_udp_ports:
            rules.append(f"  udp dport {p} drop")
        if drop_esp:
            rules.append("  meta l4proto esp drop")
            rules.append("  udp dport 4500 drop")
        rules += [" }", "}"]
        p = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input="\n".join(rules),
                           capture_output=True, text=True, timeout=30)
        if p.returncode:
            raise HarnessError(f"nft in {ns}: {p.stderr}")

    def close(self):
        errors = []
        for name in reversed(self.namespaces):
            p = run(["ip", "netns", "del", name], check=False)
            if p.returncode:
                errors.append(p.stderr.strip())
        self.namespaces.clear()
        if errors:
            raise HarnessError("; ".join(errors))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_until(pred, timeout: float, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


# --- the data plane -----------------------------------------------------------

class StatsError(HarnessError):
    pass


def parse_stats(text: str) -> dict:
    """Validate the shape of `ravelinctl stats --json` and return it with
    the SAs indexed: {"drops", "stats", "workers", "sas", "sa": {(spi, dir): sa}}."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise StatsError(f"ravelinctl stats --json is not JSON: {e}: {text[:200]!r}")
    for key, typ in (("drops", dict), ("stats", dict), ("workers", list), ("sas", list)):
        if not isinstance(d.get(key), typ):
            raise StatsError(f"stats JSON: '{key}' missing or not a {typ.__name__}")
    for k, v in (*d["drops"].items(), *d["stats"].items()):
        if not isinstance(v, int) or v < 0:
            raise StatsError(f"stats JSON: counter {k}={v!r} is not a count")
    index = {}
    for sa in d["sas"]:
        for key in ("spi", "direction", "packets", "bytes"):
            if key not in sa:
                raise StatsError(f"stats JSON: SA entry without '{key}': {sa}")
        if sa["direction"] not in ("in", "out"):
            raise StatsError(f"stats JSON: SA direction {sa['direction']!r}")
        index[(int(sa["spi"]), sa["direction"])] = sa
    d["sa"] = index
    return d


def drops_delta(before: dict, after: dict) -> dict:
    keys = set(before["drops"]) | set(after["drops"])
    d = {k: after["drops"].get(k, 0) - before["drops"].get(k, 0) for k in keys}
    return {k: v for k, v in d.items() if v}


def stats_delta(before: dict, after: dict, key: str) -> int:
    return after["stats"].get(key, 0) - before["stats"].get(key, 0)


class Gateway:
    """ravelin-dataplane in a namespace, in the foreground, ended by PID.

    start() waits for the 'ravelin-dataplane: ready' line; stop() sends
    SIGTERM and returns the exit code (0 expected: clean shutdown)."""

    READY = "ravelin-dataplane: ready"

    def __init__(self, ns: str, config: Path, file_prefix: str, name: str = "gw"):
        self.dp, self.ctl = binaries()
        self.ns, self.config, self.prefix, self.name = ns, Path(config), file_prefix, name
        self.log = self.config.with_suffix(".log")
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.exit_code: int | None = None

    def start(self, timeout: float = 90):
        self._cleanup_dpdk_files()
        errf = open(self.log, "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, str(self.dp), "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=errf, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True,  # Ctrl-C in a terminal goes to us, we stop it
            preexec_fn=die_with_parent)
        errf.close()
        threading.Thread(target=self._reader, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.2):
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader drain stdout
                raise HarnessError(f"{self.name}: ravelin-dataplane exited with "
                                   f"{self.proc.returncode} before ready\n{self.output()}")
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"{self.name}: no '{self.READY}' within {timeout}s\n"
                                   f"{self.output()}")
        return self

    def _reader(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if self.READY in line:
                self._ready.set()

    def output(self, tail: int = 40) -> str:
        err = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return ("--- stdout ---\n" + "\n".join(self.lines[-tail:]) +
                "\n--- stderr ---\n" + "\n".join(err[-tail:]))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats_text(self, json_output=True) -> str:
        cmd = [str(self.ctl), "--file-prefix", self.prefix, "stats"] + (["--json"] if json_output else [])
        p = run(cmd, check=False, timeout=20)
        if p.returncode:
            raise StatsError(f"{self.name}: {' '.join(cmd)} -> {p.returncode}: {p.stderr.strip()}")
        return p.stdout

    def stats(self) -> dict:
        return parse_stats(self.stats_text())

    def settled_stats(self, timeout: float = 5.0) -> dict:
        """Stats once two reads 0.3 s apart agree on the packet counters and
        drops (traffic stopped). The workers' cycle counters (busy_cycles,
        poll_cycles) move all the time and are not compared."""
        def packets(st: dict) -> dict:
            return {k: v for k, v in st["stats"].items() if not k.endswith("_cycles")}
        prev = self.stats()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.3)
            cur = self.stats()
            if packets(cur) == packets(prev) and cur["drops"] == prev["drops"]:
                return cur
            prev = cur
        raise StatsError(f"{self.name}: counters still moving after {timeout} s: {packets(prev)}")

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                self.lines.append(f"[harness] no exit {timeout}s after SIGTERM: killed")
        self.exit_code = self.proc.returncode
        self.proc = None
        self._cleanup_dpdk_files()
        return self.exit_code

    def _cleanup_dpdk_files(self):
        # Only this run's prefix: leftover hugepage files would leak memory.
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.prefix):
            raise HarnessError(f"unsafe file prefix {self.prefix!r}")
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)
        Path(f"/run/ravelin/{self.prefix}.dataplane.sock").unlink(missing_ok=True)
        for f in Path("/dev/hugepages").glob(f"{self.prefix}map_*"):
            f.unlink(missing_ok=True)
