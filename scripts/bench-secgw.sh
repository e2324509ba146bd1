#!/usr/bin/env bash
# Ravelin next to DPDK's ipsec-secgw, in one run, on this 2-core machine
# (docs/performance.md, "ravelin-pktgen and ipsec-secgw").
#
#   CPU 0  ravelin-pktgen -l 0 (TX, and RX with --sink memif, in one loop)
#            net_memif client (zero-copy) ===> the device's input port
#   CPU 1  the device under test, one worker lcore:
#            input port  net_memif server
#            output port net_null,no-rx=1 (--sink null, the default), or a
#                        net_memif server back to the generator (--sink memif)
#            ravelin-dataplane  lcores 0,1 with main_cpu = 1: the worker and
#                               the main lcore (which sleeps between
#                               housekeeping passes) both on CPU 1
#            ipsec-secgw        -l 1 (main lcore = the only worker), legacy
#                               path, lookaside crypto_aesni_mb (IPsec-MB)
#            dpdk-testpmd       io forwarding, lcores 0@1,1@1: the I/O floor
#
# Same generator, same traffic, same SA keys for every device: one AES-256-GCM
# tunnel 198.18.0.1 <-> 198.18.0.2, SPI 0x1001 out, 0x2002 in; clear traffic
# 198.18.1.2+16 <-> 198.18.2.2+64, 1024 flows. Directions: out (clear in,
# ESP out: input port 0, output port 1) and in (ESP in, clear out: input
# port 1, output port 0). Ravelin inbound twice: replay window 1024 + ESN
# (its normal setting) and both off (like ipsec-secgw's default path);
# ipsec-secgw runs with both off. Outbound SAs have no ESN on either.
#
# The generator offers as much as the memif ring takes (rate "max"). The
# device's rate: with --sink null, the packets its output port sent
# (opackets, read from the device's DPDK telemetry socket) over the
# measured window, from 1 s into the run to 0.5 s before its end; with
# --sink memif, the rate at which its output comes back to the generator.
# "bp" is the share of the generator's tx_burst calls that the device's
# ring did not take whole: near 1 means the device, not the generator, set
# the pace; near 0 means the generator was the limit and the cell says
# nothing about the device (inbound: a pktgen that encrypts every packet
# tops out near 7.5 Mpps at 64 B, so against devices with anti-replay off
# it replays frames sealed once; Ravelin's window 1024 + ESN row cannot
# use that and stays a lower bound). Ravelin knows the next hops' MACs from
# [[neighbor]] sections (no ARP, so it can send into a sink that never
# answers). Every device gets the same ports.
#
# Options:
#   -r N        repetitions (default 3); the order of the devices rotates
#   -d SECONDS  measured seconds per cell (default 5), -w SECONDS warm-up (2)
#   -s "SIZES"  clear-text frame sizes incl. FCS (default "64 imix 1420";
#               imix = 7x64:4x570:1x1420)
#   --dirs "out in"   --no-floor   --no-secgw   --no-ravelin
#   -b DIR      Ravelin build directory (default build-bench, release)
#   -o FILE     results JSON (default /tmp/ravelin-bench-secgw/results.json);
#               scripts/plot-bench.py draws it
#   --sink null|memif  the device's output port (default null)
#   --no-esp-replay    inbound, seal every packet even for devices with
#               anti-replay off (by default the generator replays 4096
#               frames sealed once: ravelin-pktgen --esp-replay)
#   --nice N    nice value (of the process and of its scheduler autogroup) of
#               the generator and the device (default -20: on a machine where
#               others compile, the pollers keep ~97 % of their CPU instead of
#               a fair share; 0 to turn off)
#   --no-ceiling  skip the cipher measurement behind the "ceiling" column
#
# The ceiling column: before the cells, the run measures what AES-256-GCM
# alone costs per packet at each size on the device's CPU (IPsec-MB, the
# data-plane benchmark's raw_gcm256 cells, build-bench's dataplane_bench).
# No gateway can forward a packet for less than the I/O floor plus that, so
# ipsec-secgw's cycles over (floor + cipher), each device's fastest
# repetition, is the highest ratio any gateway could reach against it here.
# (An estimate: the core may overlap some I/O with the cipher.) A ratio
# floor above it cannot be met on this host by any data-plane code. When
# the floor's fastest repetition was held back by the generator (bp < 0.5),
# its cycles overstate the I/O cost and the ceiling is printed as "≥".
#
# Needs root, 300 free 2 MB hugepages, and no other DPDK app on the memif
# sockets. Run it with the machine as quiet as possible; the numbers are
# compared within one run (ratios), not with other runs.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
exec /usr/bin/python3 - "$here" "$@" <<'PY'
import argparse, json, os, re, shutil, signal, socket, statistics, subprocess, sys, threading, time
from pathlib import Path

REPO = Path(sys.argv[1])
ap = argparse.ArgumentParser(prog="bench-secgw.sh")
ap.add_argument("-r", type=int, default=3)
ap.add_argument("-d", type=float, default=5)
ap.add_argument("-w", type=float, default=2)
ap.add_argument("-s", default="64 imix 1420")
ap.add_argument("--dirs", default="out in")
ap.add_argument("--no-floor", action="store_true")
ap.add_argument("--no-secgw", action="store_true")
ap.add_argument("--no-ravelin", action="store_true")
ap.add_argument("-b", default="build-bench")
ap.add_argument("-o", default="/tmp/ravelin-bench-secgw/results.json")
ap.add_argument("--nice", type=int, default=-20)
ap.add_argument("--sink", choices=["null", "memif"], default="null")
ap.add_argument("--no-esp-replay", action="store_true")
ap.add_argument("--no-ceiling", action="store_true")
ap.add_argument("--tunnels", default="", help="tunnel counts: the scaling benchmark (scripts/bench-tunnels.sh)")
a = ap.parse_args(sys.argv[2:])

WORK = Path("/tmp/ravelin-bench-secgw")
BUILD = REPO / a.b
PKTGEN = BUILD / "pktgen/ravelin-pktgen"
BENCH = BUILD / "tests/bench/dataplane_bench"
DATAPLANE = BUILD / "dataplane/ravelin-dataplane"
TESTPMD = shutil.which("dpdk-testpmd")
SOCK_P, SOCK_U = WORK / "protected.sock", WORK / "unprotected.sock"
MAC_P, MAC_U = "02:00:00:00:01:01", "02:00:00:00:00:01"
GEN_MAC_P, GEN_MAC_U = "02:00:00:00:01:02", "02:00:00:00:00:02"   # the generator's ports
# Test keys (AES-256 key + 4-byte salt); never use them for real traffic.
KEY_OUT = "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233"
KEY_IN = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3"
PREFIXES = ["rvb-gen", "rvb-dut"]


def die(msg):
    print(f"bench-secgw: {msg}", file=sys.stderr)
    sys.exit(1)


def preflight():
    if os.geteuid() != 0:
        die("needs root (hugepages, DPDK)")
    free = int(Path("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").read_text())
    if free < 300:
        die(f"only {free} free 2 MB hugepages, need 300 (stale /dev/hugepages files of dead runs?)")
    for b in (PKTGEN, DATAPLANE):
        if not os.access(b, os.X_OK):
            die(f"{b} missing: ninja -C {BUILD} pktgen/ravelin-pktgen dataplane/ravelin-dataplane")
    if not a.no_floor and not TESTPMD:
        die("dpdk-testpmd missing (apt-get install dpdk), or pass --no-floor")
    if not a.no_ceiling and not a.tunnels and not os.access(BENCH, os.X_OK):
        die(f"{BENCH} missing (meson configure {BUILD} -Dbenchmarks=true; "
            f"ninja -C {BUILD} tests/bench/dataplane_bench), or pass --no-ceiling")


def cipher_cycles(sizes, dirs) -> dict:
    """TSC cycles per packet of AES-256-GCM alone, {(dir, size): cycles}:
    IPsec-MB on the data plane's payload lengths, on the device's CPU
    (medians of 5 repetitions; outbound seals, inbound opens)."""
    names = {"out": "enc", "in": "dec"}
    filt = "raw_gcm256_(" + "|".join(names[d] for d in dirs) + ")/(" + "|".join(sizes) + ")/"
    p = subprocess.run(["taskset", "-c", "1", str(BENCH), "--hugepages", f"--benchmark_filter={filt}",
                        "--benchmark_repetitions=5", "--benchmark_report_aggregates_only=true",
                        "--benchmark_min_time=0.2", "--benchmark_format=json"],
                       capture_output=True, text=True)
    if p.returncode:
        die(f"{BENCH} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    got = {}
    for b in json.loads(p.stdout)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        kind, size = b["run_name"].split("/")[:2]
        got[("out" if kind.endswith("enc") else "in", size)] = b["cycles_per_pkt"]
    for d in dirs:
        for size in sizes:
            if (d, size) not in got:
                die(f"{BENCH} did not report raw_gcm256_{names[d]}/{size}")
    return got


def cleanup_prefix(p):
    shutil.rmtree(f"/var/run/dpdk/{p}", ignore_errors=True)
    for f in Path("/dev/hugepages").glob(f"{p}map_*"):
        f.unlink(missing_ok=True)


# The device's output port: the unprotected one outbound, the protected one inbound.
OUT_PORT = {"out": 1, "in": 0}


def device_ports(direction: str) -> list[str]:
    """The device's vdevs, port 0 (protected) and port 1 (unprotected): memif
    servers, except the output port with --sink null (net_null, no RX)."""
    ports = [f"net_memif0,role=server,socket={SOCK_P},id=0,mac={MAC_P}",
             f"net_memif1,role=server,socket={SOCK_U},id=0,mac={MAC_U}"]
    if a.sink == "null":
        ports[OUT_PORT[direction]] = f"net_null{OUT_PORT[direction]},no-rx=1"
    return ports


def gen_port(direction: str) -> int:
    """The generator's port for the device's input: with --sink null it has one."""
    return 0 if a.sink == "null" else 1 - OUT_PORT[direction]


def ravelin_config(inbound: str, direction: str) -> Path:
    """inbound: 'esn' (window 1024 + ESN) or 'off' (window 0, no ESN)."""
    dev_p, dev_u = device_ports(direction)
    esn, window = ("true", 1024) if inbound == "esn" else ("false", 0)
    # The generator's 16 hosts on the inside (198.18.1.2+16), by static MAC.
    hosts = "".join(f'\n[[neighbor]]\naddress = "198.18.1.{h}"\nmac = "{GEN_MAC_P}"\nport = "inside"\n'
                    for h in range(2, 18))
    text = f"""# generated by scripts/bench-secgw.sh
[dataplane]
lcores = "0,1"
main_cpu = 1
file_prefix = "rvb-dut"
hugepages = true
burst = 32

[[port]]
name = "inside"
role = "protected"
device = "{dev_p}"
address = ["198.18.1.1/24"]

[[port]]
name = "outside"
role = "unprotected"
device = "{dev_u}"
address = ["198.18.0.1/24"]

[[route]]
prefix = "198.18.2.0/24"
via = "198.18.0.2"
port = "outside"

[[neighbor]]
address = "198.18.0.2"
mac = "{GEN_MAC_U}"
port = "outside"
{hosts}
[[sa]]
spi = 0x1001
direction = "out"
encryption = "aes256gcm16"
key = "0x{KEY_OUT}"
local = "198.18.0.1"
remote = "198.18.0.2"
esn = false

[[sa]]
spi = 0x2002
direction = "in"
encryption = "aes256gcm16"
key = "0x{KEY_IN}"
local = "198.18.0.1"
remote = "198.18.0.2"
esn = {esn}
replay_window = {window}

[[policy]]
direction = "out"
local = "198.18.1.0/24"
remote = "198.18.2.0/24"
action = "protect"
sa = 0x1001

[[policy]]
direction = "in"
local = "198.18.1.0/24"
remote = "198.18.2.0/24"
action = "protect"
sa = 0x2002
"""
    p = WORK / f"ravelin-{inbound}-{direction}.toml"
    p.write_text(text)
    return p


def secgw_config() -> Path:
    colon = lambda k: ":".join(k[i:i + 2] for i in range(0, len(k), 2))
    text = f"""# generated by scripts/bench-secgw.sh: the same tunnel and keys as Ravelin's
sp ipv4 out esp protect 4097 pri 1 dst 198.18.2.0/24 sport 0:65535 dport 0:65535
sp ipv4 in esp protect 8194 pri 1 dst 198.18.1.0/24 sport 0:65535 dport 0:65535
sa out 4097 aead_algo aes-256-gcm aead_key {colon(KEY_OUT)} mode ipv4-tunnel src 198.18.0.1 dst 198.18.0.2
sa in 8194 aead_algo aes-256-gcm aead_key {colon(KEY_IN)} mode ipv4-tunnel src 198.18.0.2 dst 198.18.0.1
rt ipv4 dst 198.18.0.2/32 port 1
rt ipv4 dst 198.18.1.0/24 port 0
"""
    p = WORK / "secgw.cfg"
    p.write_text(text)
    return p


def streams(direction: str, size: str):
    g = gen_port(direction)
    if direction == "out":
        return [f"port={g} src=198.18.1.2+16 dst=198.18.2.2+64 sport=1024+16 dport=4791 flows=1024 size={size} dmac={MAC_P}"]
    return [f"port={g} src=198.18.2.2+64 dst=198.18.1.2+16 sport=1024+16 dport=4791 flows=1024 size={size} dmac={MAC_U} esp=0x2002"]


def tunnel_configs(n: int, inbound: str, direction: str):
    """n tunnels to one peer (198.18.0.2): tunnel i protects 198.18.1.0/24 <->
    198.19.0.0+i/32 with SPI 0x10000+i out and 0x20000+i in, each with its own
    policy; the same keys for all (the cost of a lookup does not depend on them)."""
    esn, window = ("true", 1024) if inbound == "esn" else ("false", 0)
    head = ravelin_config(inbound, direction).read_text().split("[[sa]]")[0]   # [dataplane], ports, route
    parts = [head.replace("# generated by scripts/bench-secgw.sh", f"# generated by scripts/bench-tunnels.sh: {n} tunnels")]
    sg = [f"# generated by scripts/bench-tunnels.sh: {n} tunnels, the same as Ravelin's"]
    colon = lambda k: ":".join(k[i:i + 2] for i in range(0, len(k), 2))
    for i in range(n):
        remote = f"198.19.{i >> 8}.{i & 255}"
        so, si = 0x10000 + i, 0x20000 + i
        parts.append(f"""[[sa]]
spi = {so:#x}
direction = "out"
encryption = "aes256gcm16"
key = "0x{KEY_OUT}"
local = "198.18.0.1"
remote = "198.18.0.2"
esn = false

[[sa]]
spi = {si:#x}
direction = "in"
encryption = "aes256gcm16"
key = "0x{KEY_IN}"
local = "198.18.0.1"
remote = "198.18.0.2"
esn = {esn}
replay_window = {window}

[[policy]]
direction = "out"
local = "198.18.1.0/24"
remote = "{remote}/32"
action = "protect"
sa = {so:#x}

[[policy]]
direction = "in"
local = "198.18.1.0/24"
remote = "{remote}/32"
action = "protect"
sa = {si:#x}
""")
        sg.append(f"sp ipv4 out esp protect {so} pri 1 dst {remote}/32 sport 0:65535 dport 0:65535")
        sg.append(f"sp ipv4 in esp protect {si} pri 1 src {remote}/32 dst 198.18.1.0/24 sport 0:65535 dport 0:65535")
        sg.append(f"sa out {so} aead_algo aes-256-gcm aead_key {colon(KEY_OUT)} mode ipv4-tunnel src 198.18.0.1 dst 198.18.0.2")
        sg.append(f"sa in {si} aead_algo aes-256-gcm aead_key {colon(KEY_IN)} mode ipv4-tunnel src 198.18.0.2 dst 198.18.0.1")
    sg += ["rt ipv4 dst 198.18.0.2/32 port 1", "rt ipv4 dst 198.18.1.0/24 port 0"]
    rp, sp = WORK / f"ravelin-{inbound}-{direction}-{n}.toml", WORK / f"secgw-{n}.cfg"
    rp.write_text("\n".join(parts))
    sp.write_text("\n".join(sg) + "\n")
    return rp, sp


def tunnel_streams(direction: str, size: str, n: int):
    flows, g = max(n, 1024), gen_port(direction)
    if direction == "out":
        return [f"port={g} src=198.18.1.2+16 dst=198.19.0.0+{n} sport=1024+16 dport=4791 flows={flows} size={size} dmac={MAC_P}"]
    return [f"port={g} src=198.19.0.0+{n} dst=198.18.1.2+16 sport=1024+16 dport=4791 flows={flows} size={size} dmac={MAC_U} esp=0x20000+{n}"]


class Proc:
    def __init__(self, cmd, log: Path, stdin=False):
        self.log = log
        self.f = open(log, "w")
        self.lines = []
        cmd = ["nice", "-n", str(a.nice), *map(str, cmd)]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, text=True,
                                  start_new_session=True)
        # Its own session is its own scheduler autogroup (kernel.sched_autogroup_enabled):
        # nice alone only ranks threads inside a group, the group's nice ranks it
        # against the other sessions' (compilers').
        if a.nice:
            try:
                Path(f"/proc/{self.p.pid}/autogroup").write_text(str(a.nice))
            except OSError:
                pass
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.f.write(line)
            self.f.flush()
            with self.cv:
                self.lines.append(line)
                self.cv.notify_all()
        with self.cv:
            self.cv.notify_all()

    def wait_for(self, text, timeout):
        end = time.monotonic() + timeout
        with self.cv:
            while not any(text in l for l in self.lines):
                if self.p.poll() is not None or time.monotonic() > end:
                    return False
                self.cv.wait(0.2)
        return True

    def stop(self, sig=signal.SIGINT, timeout=15):
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait(10)
        return self.p.returncode


def start_dut(kind: str, direction: str, inbound: str, n: int = 0):
    cleanup_prefix("rvb-dut")
    log = WORK / f"dut-{kind}.log"
    if n:
        rcfg, scfg = tunnel_configs(n, inbound, direction)
    else:
        rcfg, scfg = ravelin_config(inbound, direction), None
    if kind == "ravelin":
        cfg = rcfg
        d = Proc([str(DATAPLANE), "--config", str(cfg), "--log-level", "warn"], log)
        if not d.wait_for("ravelin-dataplane: ready", 300):
            d.stop()
            die(f"ravelin-dataplane did not start:\n{log.read_text()[-2000:]}")
        return d, cfg
    dev_p, dev_u = device_ports(direction)
    ports = ["--vdev", dev_p, "--vdev", dev_u]
    # Telemetry stays on: with --sink null the harness reads the output port's counters through it.
    eal = ["-n", "1", "--no-pci", "--file-prefix", "rvb-dut", "--log-level=lib.eal:error"]
    if kind == "secgw":
        cmd = [SECGW, "-l", "1", *eal, "--vdev", "crypto_aesni_mb0", *ports, "--",
               "-p", "0x3", "-u", "0x2", "--config", "(0,0,1),(1,0,1)", "-f", str(scfg or secgw_config())]
    else:  # floor
        cmd = [TESTPMD, "--lcores", "0@1,1@1", *eal, *ports, "--", "--forward-mode=io", "--port-topology=paired",
               "--nb-cores=1", "--rxq=1", "--txq=1", "--burst=32", "--rxd=1024", "--txd=1024",
               "--total-num-mbufs=32768", "--no-lsc-interrupt", "--stats-period=1"]
    d = Proc(cmd, log)
    # memif sockets are abstract (no file): wait for the app to say it polls.
    if not d.wait_for("entering main loop" if kind == "secgw" else "forwards packets on", 300):
        d.stop()
        die(f"{kind} did not start:\n{log.read_text()[-2000:]}")
    time.sleep(0.3)
    # The generator takes the SA keys from Ravelin's file (without ESN: ipsec-secgw's SAs have none).
    return d, tunnel_configs(n, "off", direction)[0] if n else ravelin_config("off", direction)


def run_cell(kind, direction, size, inbound, n=0):
    dut, sa_cfg = start_dut(kind, direction, inbound, n)
    cleanup_prefix("rvb-gen")
    out = WORK / "pktgen.json"
    out.unlink(missing_ok=True)
    gen_p = ["--vdev", f"net_memif0,role=client,socket={SOCK_P},id=0,zero-copy=yes,mac={GEN_MAC_P}"]
    gen_u = ["--vdev", f"net_memif1,role=client,socket={SOCK_U},id=0,zero-copy=yes,mac={GEN_MAC_U}"]
    if a.sink == "null":   # one port: the device's input
        gen_ports = gen_u if direction == "in" else gen_p
        arp = []
    else:
        gen_ports = gen_p + gen_u
        arp = ["--arp", "0=198.18.1.0/24", "--arp", "1=198.18.0.2/32"]
    # Inbound against a device with anti-replay off, the generator replays
    # frames it sealed once instead of sealing each one (it tops out near
    # 7.5 Mpps at 64 B when it must encrypt); with the window on it cannot.
    replay = ["--esp-replay", "4096"] if direction == "in" and inbound == "off" and not a.no_esp_replay else []
    cmd = [str(PKTGEN), "-l", "0", "--no-pci", "--no-telemetry", "--file-prefix", "rvb-gen",
           "--single-file-segments", "--log-level=lib.eal:error", *gen_ports, "--",
           "--sa-config", str(sa_cfg), *arp, *replay,
           "--rx-count-only", "--no-progress", "--wait-stdin", "--json", str(out), "--mbufs", "32767",
           "--warmup", str(a.w), "--warmup-rate", "max", "-r", "max", "-d", str(a.d), "--drain", "0.1"]
    for s in (tunnel_streams(direction, size, n) if n else streams(direction, size)):
        cmd += ["-s", s]
    g = Proc(cmd, WORK / "pktgen.log", stdin=True)
    res = stats = None
    try:
        if not g.wait_for("waiting (run)", a.w + 120):
            raise RuntimeError(f"pktgen did not finish its warm-up:\n{(WORK / 'pktgen.log').read_text()[-2000:]}")
        tid = worker_tid(dut.p.pid, kind)
        cpu0, wall0 = cpu_ns(dut.p.pid, tid), time.monotonic_ns()
        g.p.stdin.write("\n")
        g.p.stdin.flush()
        sink = None
        if a.sink == "null":
            # The device's own count of what it sent into the sink, from 1 s into
            # the run to 0.5 s before its end (the same window as pktgen's timeline).
            time.sleep(1.0)
            o0, t0 = tx_packets(OUT_PORT[direction]), time.monotonic()
            time.sleep(max(a.d - 1.5, 0.5))
            o1, t1 = tx_packets(OUT_PORT[direction]), time.monotonic()
            sink = (o1 - o0, t1 - t0)
        if not g.wait_for("waiting (exit)", a.d + 40):
            raise RuntimeError(f"pktgen did not finish:\n{(WORK / 'pktgen.log').read_text()[-2000:]}")
        cpu = (cpu_ns(dut.p.pid, tid) - cpu0, time.monotonic_ns() - wall0)
        res = json.loads(out.read_text())
        if kind == "ravelin":
            p = subprocess.run([str(BUILD / "controlplane/ravelinctl"), "--file-prefix", "rvb-dut", "stats", "--json"],
                               capture_output=True, text=True, timeout=20)
            stats = json.loads(p.stdout) if p.returncode == 0 else None
    finally:
        # The device first: a memif client leaving under a polling server can crash it.
        rc = dut.stop()
        try:
            g.p.stdin.close()
        except BrokenPipeError:
            pass
        try:
            g.p.wait(20)
        except subprocess.TimeoutExpired:
            g.stop(signal.SIGTERM)
        cleanup_prefix("rvb-gen")
        cleanup_prefix("rvb-dut")
    return summarize(res, stats, rc, cpu, sink)


def tx_packets(port: int) -> int:
    """The device's opackets on `port`, from DPDK telemetry (every device is a
    DPDK app with the same file prefix; counted by the PMD, net_null included)."""
    path = f"/var/run/dpdk/rvb-dut/dpdk_telemetry.v2"
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(5)
        s.connect(path)
        s.recv(4096)   # the greeting
        s.send(f"/ethdev/stats,{port}".encode())
        return int(json.loads(s.recv(1 << 16))["/ethdev/stats"]["opackets"])


def worker_tid(pid: int, kind: str) -> int:
    """The thread that polls: ipsec-secgw's main lcore (-l 1) is its only
    worker; ravelin-dataplane's and testpmd's is the EAL thread of lcore 1."""
    if kind == "secgw":
        return pid
    for t in Path(f"/proc/{pid}/task").iterdir():
        if (t / "comm").read_text().strip() == "rte-worker-1":
            return int(t.name)
    raise RuntimeError(f"{kind}: no rte-worker-1 thread in process {pid}")


def cpu_ns(pid: int, tid: int) -> int:
    return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])


def summarize(res, stats, rc, cpu, sink=None):
    run = res["run"]
    tl = [s for s in run["timeline"] if s["t"] <= run["duration_s"] + 1e-3]
    # Measured window: from 1 s into the run to the last sample before TX stopped.
    win = [s for s in tl if s["t"] >= (0.999 if run["duration_s"] >= 3 else 0)]
    if len(win) < 2:
        win = [{"t": 0.0, "tx_packets": 0, "rx_packets": 0}] + win
    first, last = win[0], win[-1]
    dt = last["t"] - first["t"]
    rx_pps = (last["rx_packets"] - first["rx_packets"]) / dt
    if sink:   # --sink null: nothing comes back; the device counted what it sent
        rx_pps = sink[0] / sink[1]
    tx_pps = (last["tx_packets"] - first["tx_packets"]) / dt
    ports = res["ports"]
    tx = sum(p["tx_packets"] for p in ports)
    rx = sum(p["rx_packets"] for p in ports) - sum(p["rx_arp"] for p in ports)
    bursts = sum(p["tx_bursts"] for p in ports)
    short = sum(p["tx_bursts_short"] for p in ports)
    hz = res["setup"]["tsc_hz"]
    drops = {k: v for k, v in (stats or {}).get("drops", {}).items() if v}
    # The worker's own CPU time over the run (schedstat, ns) against the wall
    # clock: near 1 means nothing else ran on its core, so a slow cell is not
    # explained by preemption inside this guest.
    cpu_ns_used, wall_ns = cpu
    if sink:
        rx = round(rx_pps * wall_ns / 1e9)   # over the whole run, for the CPU-based figures
    cycles_cpu = cpu_ns_used * hz / 1e9 / rx if rx else None
    return {"mpps": rx_pps / 1e6, "tx_mpps": tx_pps / 1e6, "cycles": hz / rx_pps if rx_pps else None,
            "cpu_share": cpu_ns_used / wall_ns, "cycles_cpu": cycles_cpu,
            "mpps_cpu": hz / cycles_cpu / 1e6 if cycles_cpu else None,
            "tx": tx, "rx": rx, "in_flight_or_lost": None if sink else tx - rx, "backpressure": short / max(bursts, 1),
            "dut_exit": rc, "dut_drops": drops, "tsc_hz": hz}


def mean_frame(size):
    return (7 * 64 + 4 * 570 + 1420) / 12 if size == "imix" else float(size)


def main():
    global SECGW
    preflight()
    WORK.mkdir(parents=True, exist_ok=True)
    SECGW = None
    if not a.no_secgw:
        p = subprocess.run([str(REPO / "scripts/build-secgw.sh")], capture_output=True, text=True)
        if p.returncode:
            die(f"scripts/build-secgw.sh failed:\n{p.stderr}")
        SECGW = p.stdout.strip().splitlines()[-1]
    sizes, dirs = a.s.split(), a.dirs.split()
    if a.tunnels:
        return tunnels_main(sizes, dirs)
    devices = {"out": [], "in": []}
    for d in dirs:
        if not a.no_floor:
            devices[d].append(("floor", "off"))
        if not a.no_secgw:
            devices[d].append(("secgw", "off"))
        if not a.no_ravelin:
            devices[d] += [("ravelin", "off")] if d == "out" else [("ravelin", "esn"), ("ravelin", "off")]
    cipher = {} if a.no_ceiling or a.no_floor or a.no_secgw else cipher_cycles(sizes, dirs)
    cells = []
    started = time.time()
    for rep in range(a.r):
        for d in dirs:
            for size in sizes:
                devs = devices[d]
                k = rep % len(devs)
                for kind, inbound in devs[k:] + devs[:k]:   # rotate the order each repetition
                    r = run_cell(kind, d, size, inbound)
                    r.update(rep=rep, dir=d, size=size, dut=kind, inbound=inbound)
                    cells.append(r)
                    print(f"[{time.time() - started:6.0f}s] rep {rep} {d:3} {size:>5} {kind:7} {inbound:3}: "
                          f"{r['mpps']:6.3f} Mpps  {r['cycles'] or 0:6.0f} cyc/pkt  cpu {r['cpu_share']:.2f} -> {r['cycles_cpu'] or 0:5.0f} cyc/pkt  tx {r['tx_mpps']:6.3f}  "
                          f"bp {r['backpressure']:.2f}  not back {r['in_flight_or_lost']}  drops {r['dut_drops']}", flush=True)
    table = []
    for d in dirs:
        for size in sizes:
            row = {"dir": d, "size": size, "mean_frame": mean_frame(size)}
            for kind, inbound in devices[d]:
                v = [c for c in cells if (c["dir"], c["size"], c["dut"], c["inbound"]) == (d, size, kind, inbound)]
                med = statistics.median(c["mpps"] for c in v)
                row[f"{kind}_{inbound}"] = {"mpps": med, "runs": [c["mpps"] for c in v],
                                            "cycles": v[0]["tsc_hz"] / (med * 1e6),
                                            "gbps": med * 1e6 * mean_frame(size) * 8 / 1e9,
                                            "cpu_share": [round(c["cpu_share"], 3) for c in v],
                                            "backpressure": [round(c["backpressure"], 3) for c in v]}
                if kind == "ravelin" and not a.no_secgw:
                    # Ratio within each repetition (its cells ran a minute apart at most), then the median.
                    sg = [c for c in cells if (c["dir"], c["size"], c["dut"]) == (d, size, "secgw")]
                    runs = [x["mpps"] / y["mpps"] for x, y in zip(v, sg)]
                    row[f"{kind}_{inbound}"]["ratio_runs"] = runs
                    row[f"{kind}_{inbound}"]["ratio"] = statistics.median(runs)
                    # Best against best: on a shared host interference only ever slows a
                    # device down, so each one's fastest repetition is its least disturbed.
                    row[f"{kind}_{inbound}"]["best_ratio"] = max(c["mpps"] for c in v) / max(c["mpps"] for c in sg)
            if (d, size) in cipher:
                # Each device's fastest repetition, in cycles: the least disturbed.
                best = lambda k: min(c["tsc_hz"] / (c["mpps"] * 1e6) for c in cells
                                     if (c["dir"], c["size"], c["dut"]) == (d, size, k) and c["mpps"] > 0)
                row["cipher_cycles"] = cipher[(d, size)]
                row["ceiling"] = best("secgw") / (best("floor") + cipher[(d, size)])
                # A floor the generator held back (bp < 0.5) overstates the
                # I/O cost: the ceiling is then only a lower bound.
                fl = max((c for c in cells if (c["dir"], c["size"], c["dut"]) == (d, size, "floor")),
                         key=lambda c: c["mpps"])
                row["ceiling_exact"] = fl["backpressure"] >= 0.5
            table.append(row)
    out = Path(a.o)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "cells": cells, "table": table,
                               "cipher_cycles": {f"{d}/{size}": c for (d, size), c in cipher.items()},
                               "generator": "ravelin-pktgen -l 0 (CPU 0), memif zero-copy client",
                               "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2))
    print(f"\nmedians of {a.r} ({out}): Mpps / TSC cycles per packet / Gbit/s (clear-text L2 incl. FCS); "
          f"ratio = median over repetitions of Ravelin/ipsec-secgw within the repetition "
          f"(in brackets: the fastest repetition of each, one against the other); "
          f"ceiling = ipsec-secgw / (I/O floor + cipher alone), fastest repetitions, in cycles: "
          f"the best ratio any gateway could reach here")
    print("| dir | size | I/O floor | ipsec-secgw | Ravelin | ratio | Ravelin w1024+ESN | ratio | cipher | ceiling |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    f = lambda x: f"{x['mpps']:.2f} / {x['cycles']:.0f} / {x['gbps']:.1f}" if x else "-"
    for row in table:
        fl, sg = row.get("floor_off"), row.get("secgw_off")
        rv, re_ = row.get("ravelin_off"), row.get("ravelin_esn")
        ratio = lambda x: f"{x['ratio']:.2f} ({x['best_ratio']:.2f})" if x and "ratio" in x else "-"
        ceil = (f"{row['cipher_cycles']:.0f} | {'' if row['ceiling_exact'] else '≥ '}{row['ceiling']:.2f}"
                if "ceiling" in row else "- | -")
        print(f"| {row['dir']} | {row['size']} | {f(fl)} | {f(sg)} | {f(rv)} | {ratio(rv)} | {f(re_)} | {ratio(re_)} | {ceil} |")


def tunnels_main(sizes, dirs):
    counts = [int(x) for x in a.tunnels.split()]
    devs = {d: ([("secgw", "off")] if not a.no_secgw else []) +
               ([("ravelin", "off" if d == "out" else "esn")] if not a.no_ravelin else []) for d in dirs}
    cells, started = [], time.time()
    for rep in range(a.r):
        for d in dirs:
            for size in sizes:
                for n in counts:
                    k = rep % len(devs[d])
                    for kind, inbound in devs[d][k:] + devs[d][:k]:
                        r = run_cell(kind, d, size, inbound, n)
                        r.update(rep=rep, dir=d, size=size, dut=kind, inbound=inbound, tunnels=n)
                        cells.append(r)
                        print(f"[{time.time() - started:6.0f}s] rep {rep} {d:3} {size:>5} {n:6} tunnels {kind:7} {inbound:3}: "
                              f"{r['mpps']:6.3f} Mpps  cpu {r['cpu_share']:.2f} -> {r['mpps_cpu'] or 0:6.3f} Mpps on a core  bp {r['backpressure']:.2f}  "
                              f"drops {r['dut_drops']}", flush=True)
    table = []
    for d in dirs:
        for size in sizes:
            for kind, inbound in devs[d]:
                row = {"dir": d, "size": size, "dut": kind, "inbound": inbound}
                for n in counts:
                    v = [c["mpps"] for c in cells if (c["dir"], c["size"], c["dut"], c["tunnels"]) == (d, size, kind, n)]
                    row[str(n)] = statistics.median(v)
                    row[f"{n}_runs"] = v
                table.append(row)
    out = Path(a.o)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "cells": cells, "tunnels_table": table,
                               "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2))
    print(f"\nmedian Mpps of {a.r} ({out}); last column: most tunnels / 1")
    print("| dir | size | device | " + " | ".join(f"{n} tunnels" for n in counts) + " | ratio |")
    print("|---|---|---|" + "---|" * (len(counts) + 1))
    for row in table:
        ratio = row[str(counts[-1])] / row[str(counts[0])] if row[str(counts[0])] else 0
        name = "ipsec-secgw" if row["dut"] == "secgw" else "Ravelin" + (" w1024+ESN" if row["inbound"] == "esn" else "")
        print(f"| {row['dir']} | {row['size']} | {name} | " + " | ".join(f"{row[str(n)]:.2f}" for n in counts) +
              f" | {ratio:.2f} |")


main()
PY
