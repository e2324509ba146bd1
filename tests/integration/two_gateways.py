#!/usr/bin/python3
"""Two Ravelin gateways back to back, each with a host behind it.

    host A ---- [protected  gw A  unprotected] ---- [unprotected  gw B  protected] ---- host B

The gateways run config/examples/gateway-a.toml and gateway-b.toml with
per-run interface names and DPDK file prefixes substituted; hosts and the
link between the gateways are derived from those files (host = first free
address of the gateway's protected subnet; the two unprotected addresses
must share a subnet: they are joined by one veth pair).

Used by tests/integration/test_two_gateways.py and, as a program, by
scripts/demo.sh:  two_gateways.py demo [--ping N] [--iperf SECONDS]
"""
from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import re
import signal
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import topo  # noqa: E402

EXAMPLES = topo.REPO / "config/examples"
HOST_MTU = 1400   # leaves room for ESP-in-UDP overhead inside a 1500-byte outer MTU
# Drops a healthy two-gateway run may show: the first packets towards a next
# hop not yet resolved by ARP/ND are dropped (and counted) while it resolves.
EXPECTED_DROPS = {"neighbor_unresolved"}


def _iface(device: str) -> str:
    m = re.search(r"iface=([^,\"\s]+)", device)
    if not m:
        raise topo.HarnessError(f"device {device!r} is not net_af_packet with iface=")
    return m.group(1)


@dataclass
class Side:
    """One gateway and the host behind it, as read from its example config."""
    name: str                       # "a" or "b"
    text: str                       # the example config
    cfg: dict
    ns_gw: str = ""
    ns_host: str = ""
    ifaces: dict = field(default_factory=dict)   # old iface -> new iface
    host_addrs: list = field(default_factory=list)
    gateway: topo.Gateway | None = None

    @classmethod
    def load(cls, name: str, path: Path) -> "Side":
        if not path.exists():
            raise topo.HarnessError(f"{path} missing (written with the data plane)")
        text = path.read_text()
        return cls(name, text, tomllib.loads(text))

    def port(self, role: str) -> dict:
        ports = [p for p in self.cfg["port"] if p["role"] == role]
        if len(ports) != 1:
            raise topo.HarnessError(f"gateway {self.name}: need exactly one {role} port")
        return ports[0]

    def render(self, prefix: str) -> str:
        text = self.text
        for old, new in self.ifaces.items():
            text = re.sub(rf"iface={re.escape(old)}(?=[,\"])", f"iface={new}", text)
        text, n = re.subn(r'(?m)^(\s*file_prefix\s*=\s*)"[^"]*"', rf'\g<1>"{prefix}"', text)
        if n != 1:
            text = re.sub(r"(?m)^\[dataplane\]\s*$", f'[dataplane]\nfile_prefix = "{prefix}"',
                          text, count=1)
        return text


def first_host(iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> str:
    for h in itertools.islice(iface.network.hosts(), 4):
        if h != iface.ip:
            return f"{h}/{iface.network.prefixlen}"
    raise topo.HarnessError(f"no free host address in {iface.network}")


class TwoGateways:
    def __init__(self, workdir: Path, log=print):
        self.workdir = Path(workdir)
        self.log = log
        self.topo = topo.Topology("")
        self.a = Side.load("a", EXAMPLES / "gateway-a.toml")
        self.b = Side.load("b", EXAMPLES / "gateway-b.toml")
        self.neighbor_warmup_drops = 0

    # --- bring-up ---------------------------------------------------------
    def up(self):
        topo.require_root()
        topo.require_hugepages()
        topo.binaries()
        t, a, b = self.topo, self.a, self.b
        for s in (a, b):
            s.ns_gw, s.ns_host = t.ns(f"gw{s.name}"), t.ns(f"host{s.name}")
        # Gateway <-> host (protected side).
        for s in (a, b):
            gw_if, host_if = t.ifname(f"g{s.name}i"), t.ifname(f"h{s.name}")
            s.ifaces[_iface(s.port("protected")["device"])] = gw_if
            t.veth(s.ns_gw, gw_if, s.ns_host, host_if)
            t.gateway_port(s.ns_gw, gw_if, s.port("protected").get("mtu", 1500))
            gw_addrs = [ipaddress.ip_interface(x) for x in s.port("protected")["address"]]
            s.host_addrs = [first_host(x) for x in gw_addrs]
            routes = []
            for pol in s.cfg.get("policy", []):
                if pol["direction"] == "out":
                    remote = ipaddress.ip_network(pol["remote"])
                    via = next(str(x.ip) for x in gw_addrs if x.version == remote.version)
                    if (str(remote), via) not in routes:
                        routes.append((str(remote), via))
            t.host_port(s.ns_host, host_if, s.host_addrs, mtu=HOST_MTU, routes=routes)
            t.quiet_host(s.ns_host)
        # Gateway <-> gateway (unprotected side).
        ua = [ipaddress.ip_interface(x) for x in a.port("unprotected")["address"]]
        ub = [ipaddress.ip_interface(x) for x in b.port("unprotected")["address"]]
        if not any(x.network == y.network for x in ua for y in ub):
            raise topo.HarnessError(f"unprotected addresses {ua} and {ub} share no subnet: "
                                    "this harness joins the gateways with one link")
        ia, ib = t.ifname("gao"), t.ifname("gbo")
        a.ifaces[_iface(a.port("unprotected")["device"])] = ia
        b.ifaces[_iface(b.port("unprotected")["device"])] = ib
        t.veth(a.ns_gw, ia, b.ns_gw, ib)
        t.gateway_port(a.ns_gw, ia, a.port("unprotected").get("mtu", 1500))
        t.gateway_port(b.ns_gw, ib, b.port("unprotected").get("mtu", 1500))
        # Gateways.
        for s in (a, b):
            prefix = f"rv2gw{s.name}{t.suffix}"
            conf = self.workdir / f"gateway-{s.name}.toml"
            conf.write_text(s.render(prefix))
            s.gateway = topo.Gateway(s.ns_gw, conf, prefix, name=f"gw{s.name}")
            self.log(f"starting gateway {s.name.upper()} in {s.ns_gw} ({conf})")
            s.gateway.start()
        return self

    def down(self) -> dict:
        """Stop the gateways (SIGTERM, by PID), delete namespaces; returns
        {side: exit code}."""
        codes = {}
        for s in (self.a, self.b):
            if s.gateway is not None:
                codes[s.name] = s.gateway.stop()
        self.topo.close()
        return codes

    # --- traffic ------------------------------------------------------------
    def host_ip(self, side: Side, version: int = 4) -> str:
        for a in side.host_addrs:
            if ipaddress.ip_interface(a).version == version:
                return str(ipaddress.ip_interface(a).ip)
        raise topo.HarnessError(f"host {side.name} has no IPv{version} address")

    def warm_up(self, tries: int = 20) -> int:
        """Ping until the first reply: ARP/ND along the path resolves, the
        packets lost meanwhile are neighbor_unresolved drops. Returns tries used."""
        dst = self.host_ip(self.b)
        for n in range(1, tries + 1):
            p = topo.run(["ping", "-c", "1", "-W", "1", dst], ns=self.a.ns_host, check=False)
            if p.returncode == 0:
                return n
        raise topo.HarnessError(f"no ping reply from {dst} after {tries} tries; last ping:\n"
                                f"{p.stdout}{p.stderr}\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        """Both gateways' stats (or why not) and the hosts' neighbour tables."""
        out = []
        for s in (self.a, self.b):
            try:
                st = s.gateway.stats_text(False) if s.gateway else "(not started)"
            except topo.HarnessError as e:
                st = str(e)
            neigh = topo.run(["ip", "neigh"], ns=s.ns_host, check=False).stdout
            route = topo.run(["ip", "route"], ns=s.ns_host, check=False).stdout
            out.append(f"--- gateway {s.name.upper()} stats:\n{st}\n--- host {s.name.upper()} "
                       f"neighbours:\n{neigh}--- host {s.name.upper()} routes:\n{route}")
        return "\n".join(out)

    def ping(self, count: int = 20, interval: float = 0.2) -> tuple[int, int, str]:
        dst = self.host_ip(self.b)
        p = topo.run(["ping", "-c", str(count), "-i", str(interval), "-W", "2", dst],
                     ns=self.a.ns_host, check=False, timeout=count * (interval + 2) + 10)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", p.stdout)
        if not m:
            raise topo.HarnessError(f"ping output not understood:\n{p.stdout}{p.stderr}")
        return int(m.group(1)), int(m.group(2)), p.stdout

    def iperf3(self, seconds: int = 5) -> dict:
        dst = self.host_ip(self.b)
        server = subprocess.Popen(["ip", "netns", "exec", self.b.ns_host, "iperf3", "-s", "-1",
                                   "-B", dst, "-p", "5201"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  stdin=subprocess.DEVNULL, start_new_session=True,
                                  preexec_fn=topo.die_with_parent)
        try:
            listening = topo.wait_until(
                lambda: ":5201" in topo.run(["ss", "-ltn"], ns=self.b.ns_host).stdout, 10)
            if not listening:
                raise topo.HarnessError("iperf3 server did not start listening")
            p = topo.run(["iperf3", "-c", dst, "-p", "5201", "-t", str(seconds), "-J",
                          "--connect-timeout", "5000"], ns=self.a.ns_host, check=False,
                         timeout=seconds + 40)
            try:
                res = json.loads(p.stdout)
            except json.JSONDecodeError:
                raise topo.HarnessError(f"iperf3 gave no JSON (exit {p.returncode}): {p.stderr}")
            if "error" in res:
                return {"error": res["error"], "bytes": 0, "bits_per_second": 0.0}
            s = res["end"]["sum_received"]
            return {"bytes": s["bytes"], "bits_per_second": s["bits_per_second"],
                    "retransmits": res["end"]["sum_sent"].get("retransmits")}
        finally:
            if server.poll() is None:
                server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)

    # --- counters -----------------------------------------------------------
    def stats(self) -> tuple[dict, dict]:
        return self.a.gateway.settled_stats(), self.b.gateway.settled_stats()

    def ring_losses(self, sa: dict, sb: dict) -> dict:
        """Per side: frames the kernel delivered on the gateway's unprotected
        veth that the DPDK port never received (af_packet RX ring full; the
        af_packet PMD of DPDK 22.11 reports no imissed for them)."""
        out = {}
        for s, st in ((self.a, sa), (self.b, sb)):
            port = s.port("unprotected")
            ifname = s.ifaces[_iface(port["device"])]
            link = json.loads(topo.run(["ip", "-j", "-s", "link", "show", "dev", ifname],
                                       ns=s.ns_gw).stdout)[0]
            kernel_rx = link["stats64"]["rx"]["packets"]
            pmd = next((p for p in st.get("ports", []) if p.get("name") == port["name"]), None)
            if pmd is None:
                out[s.name] = None   # no port counters in the stats: cannot account
            else:
                out[s.name] = dict(kernel_rx=kernel_rx, pmd_rx=pmd["ipackets"],
                                   imissed=pmd.get("imissed", 0),
                                   lost=max(0, kernel_rx - pmd["ipackets"]))
        return out

    @staticmethod
    def check_counters(sa: dict, sb: dict, rings: dict | None = None) -> tuple[list[str], list[str]]:
        """(problems, notes). What one gateway's outbound SA sent, the other's
        inbound SA received: exactly, or short by no more than the frames
        its af_packet RX ring lost (rings, from ring_losses()). Nothing is
        dropped except EXPECTED_DROPS."""
        rings = rings or {}
        problems, notes = [], []
        for (mine, other, me, peer) in ((sa, sb, "A", "B"), (sb, sa, "B", "A")):
            outs = [k for k in mine["sa"] if k[1] == "out"]
            if not outs:
                problems.append(f"gw {me} reports no outbound SA")
            for spi, _ in outs:
                sent = mine["sa"][(spi, "out")]["packets"]
                recv = other["sa"].get((spi, "in"), {}).get("packets")
                ring = rings.get(peer.lower())
                if recv is None:
                    problems.append(f"SPI {spi:#x}: out on gw {me}, no inbound SA on gw {peer}")
                elif sent == 0:
                    problems.append(f"SPI {spi:#x}: no packets")
                elif sent == recv:
                    notes.append(f"SPI {spi:#x}: gw {me} -> gw {peer}: {sent} packets both sides")
                elif ring and 0 < sent - recv <= ring["lost"]:
                    notes.append(
                        f"SPI {spi:#x}: gw {me} sent {sent}, gw {peer} received {recv}: the "
                        f"{sent - recv} missing are within the {ring['lost']} frames gw {peer}'s "
                        f"af_packet RX ring lost (kernel rx {ring['kernel_rx']}, DPDK port rx "
                        f"{ring['pmd_rx']}, imissed {ring['imissed']}): CPU starvation on a "
                        "shared 2-core machine, below the data plane")
                else:
                    problems.append(f"SPI {spi:#x}: gw {me} sent {sent}, gw {peer} received {recv}"
                                    f" (af_packet ring loss at gw {peer}: {ring})")
            for reason, n in sorted(mine["drops"].items()):
                if not n:
                    continue
                if reason in EXPECTED_DROPS:
                    notes.append(f"gw {me}: {n} {reason} drops (first packets while ARP/ND resolves)")
                else:
                    problems.append(f"gw {me}: {n} unexpected {reason} drops")
        return problems, notes

    @staticmethod
    def sa_deltas(before: dict, after: dict) -> dict:
        return {k: after["sa"][k]["packets"] - before["sa"].get(k, {}).get("packets", 0)
                for k in after["sa"]}


def side_by_side(left: str, right: str, titles=("gateway A", "gateway B")) -> str:
    l, r = left.splitlines(), right.splitlines()
    w = max([len(x) for x in l] + [len(titles[0])]) + 4
    rows = [f"{titles[0]:<{w}}{titles[1]}", f"{'-' * len(titles[0]):<{w}}{'-' * len(titles[1])}"]
    rows += [f"{x:<{w}}{y}" for x, y in itertools.zip_longest(l, r, fillvalue="")]
    return "\n".join(rows)


def demo(args) -> int:
    def on_term(signum, frame):
        raise KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_term)   # SIGINT too: it may be inherited ignored
    status = 1
    with tempfile.TemporaryDirectory(prefix="ravelin-demo-") as tmp:
        tg = None
        try:
            tg = TwoGateways(Path(tmp))
            print("== topology: host A -- gw A == ESP == gw B -- host B (namespaces)")
            tg.up()
            dst = tg.host_ip(tg.b)
            print(f"== warm-up: {tg.warm_up()} ping(s) until ARP/ND resolved along the path")
            print(f"== ping host B ({dst}) from host A through the tunnel")
            sent, recv, out = tg.ping(args.ping)
            print(out.strip())
            print(f"== iperf3 TCP, host A -> host B, {args.iperf} s")
            r = tg.iperf3(args.iperf)
            if "error" in r:
                print(f"iperf3 failed: {r['error']}")
            else:
                print(f"{r['bytes']} bytes received, {r['bits_per_second'] / 1e6:.1f} Mbit/s "
                      f"(two busy-polling gateways share 2 cores: functional, not a benchmark)")
            print("== ravelinctl stats")
            print(side_by_side(tg.a.gateway.stats_text(False), tg.b.gateway.stats_text(False)))
            sa, sb = tg.stats()
            problems, notes = tg.check_counters(sa, sb, tg.ring_losses(sa, sb))
            for n in notes:
                print(f"   {n}")
            for p in problems:
                print(f"   PROBLEM: {p}")
            ok = recv == sent and r.get("bytes", 0) > 0 and not problems
            status = 0 if ok else 1
            print("== demo " + ("passed" if ok else "FAILED"))
        except KeyboardInterrupt:
            print("\n== interrupted: tearing down")
            status = 130
        except topo.HarnessError as e:
            print(f"== demo failed: {e}")
            for s in (tg.a, tg.b) if tg else ():
                if s.gateway is not None:
                    print(f"-- gateway {s.name.upper()} output:\n{s.gateway.output()}")
        finally:
            if tg is not None:
                # Ignore further Ctrl-C while cleaning up: teardown is bounded.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                codes = tg.down()
                print("== gateways stopped (exit codes: " +
                      ", ".join(f"{k.upper()}={v}" for k, v in codes.items()) + "), namespaces deleted")
                if any(v not in (0, None) for v in codes.values()) and status == 0:
                    status = 1
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="bring up, ping, iperf3, print stats, tear down")
    d.add_argument("--ping", type=int, default=20)
    d.add_argument("--iperf", type=int, default=5)
    args = ap.parse_args()
    sys.exit(demo(args))


if __name__ == "__main__":
    main()
