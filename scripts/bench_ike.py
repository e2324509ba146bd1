#!/usr/bin/python3
"""IKE SA + first Child SA setups per second and memory per SA:
ravelin-iked against strongSwan 5.9.8 (charon) as responder, driven by
ravelin-ike-loadgen, in network namespaces (run as root; scripts/bench-ike.sh
is the front door).

    lg   out0 198.18.30.1-4/24  ==  out0 198.18.30.254/24  resp
         ravelin-ike-loadgen           charon or ravelin-iked
         taskset CPU 0                 taskset CPU 1 (all threads)

Both responders get the same connection: proposals
aes256gcm16-prfsha256-x25519, PSK for any identity (one secret with no
ids), remote id %any, one child with local_ts 0.0.0.0/0,
esp_proposals aes256gcm16 (each client's TSi is its own /32 in
198.19.0.0/16, remote_ts 198.19.0.0/16 narrows to it); cookies and half-open limits set high enough not
to start; logging at the audit level (charon 0, ravelin-iked warning).

strongSwan installs its Child SAs with kernel-libipsec (user-space ESP):
this kernel has XFRM but no ESP (adding an ESP state fails with "Requested
AEAD algorithm not found"), so kernel-netlink alone fails every child.
libipsec makes charon fake NAT detection, so the loadgen floats IKE_AUTH to
4500 against charon; routes are not installed (charon.install_routes = no)
because neither responder has traffic to route. A remote_ts of "dynamic"
(the client's outer address) does not work with libipsec: charon refuses
the policy ("can't install route ... conflicts with IKE traffic").

Subcommands (each prints one JSON document on stdout):
    rate    --reps 3 --duration 10 --warmup 2 --window 64    interleaved runs
    memory  --sas 10000                                      RSS before/after N kept SAs
    all     both of the above
    smoke   --responder strongswan|ravelin --count 200       used by the pytest smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.interop import netns, strongswan, vici  # noqa: E402
from tests.interop.netns import HarnessError  # noqa: E402
from tests.interop.strongswan import render_conf  # noqa: E402

RESP_ADDR = "198.18.30.254"
LG_ADDRS = ["198.18.30.1", "198.18.30.2", "198.18.30.3", "198.18.30.4"]
PSK = "ravelin-bench-psk-0123456789"
RESPONDER_ID = "responder.bench"
# each client asks for its own /32 in here as TSi (--tsi-per-client); the
# responder narrows remote_ts to it
CLIENT_NET = "198.19.0.0/16"
LOADGEN_CPU = os.environ.get("BENCH_LOADGEN_CPU", "0")
RESPONDER_CPU = os.environ.get("BENCH_RESPONDER_CPU", "1")


def build_dir() -> Path:
    b = Path(os.environ.get("RAVELIN_BUILD", "build"))
    return b if b.is_absolute() else REPO / b


def binary(*candidates: str) -> Path:
    for c in candidates:
        p = build_dir() / c
        if os.access(p, os.X_OK):
            return p
    raise HarnessError(f"none of {candidates} built under {build_dir()} (RAVELIN_BUILD)")


def loadgen_binary() -> Path:
    return binary("pktgen/ravelin-ike-loadgen")


def iked_binary() -> Path:
    return binary("controlplane/iked/ravelin-iked", "controlplane/ravelin-iked")


# --- topology --------------------------------------------------------------------

class BenchLab:
    """Two namespaces joined by a veth: lg (the load generator) and resp."""

    def __init__(self, lab: netns.Lab | None = None):
        """With `lab` (e.g. the interop tests' fixture) the namespaces are
        made in it and left to its owner to delete."""
        self.owned = lab is None
        self.lab = lab or netns.Lab()
        try:
            self.lg = self.lab.add_ns("lg")
            self.resp = self.lab.add_ns("resp")
            self.lab.veth(self.lg, "out0", self.resp, "out0")
            for a in LG_ADDRS:
                self.lab.addr(self.lg, "out0", f"{a}/24")
            self.lab.addr(self.resp, "out0", f"{RESP_ADDR}/24")
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.owned:
            self.lab.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def pin(pid: int, cpu: str):
    """All threads of pid onto `cpu` (new threads inherit it)."""
    netns.run(["taskset", "-a", "-p", "-c", cpu, str(pid)])


# --- responders ------------------------------------------------------------------

def strongswan_conf_tree(psk: str = PSK) -> dict:
    child = strongswan.child("0.0.0.0/0", CLIENT_NET, esp_proposals="aes256gcm16")
    conn = strongswan.connection(RESP_ADDR, "%any", RESPONDER_ID, "%any", {"bench": child})
    return strongswan.swanctl_conf({"bench": conn}, {"ike-any": {"secret": psk}})


CHARON_OPTIONS = {
    # charon.threads stays at its default 16: long-running jobs (receiver,
    # kernel-netlink, kernel-libipsec, vici) hold threads, and with 8 vici
    # never got one here
    # strongSwan's own advice for many SAs: a hashed IKE_SA table, not one bucket
    "ikesa_table_size": 4096,
    "ikesa_table_segments": 16,
    # no cookies, no per-IP half-open blocking (the loadgen comes from 4 addresses)
    "cookie_threshold": 1000000,
    "cookie_threshold_ip": 1000000,
    "block_threshold": 1000000,
    "install_routes": False,
    "filelog": {"harness": {"default": 0, "ike": 0, "chd": 0, "cfg": 0, "knl": 0, "net": 0,
                            "enc": 0, "esp": 0, "lib": 0}},
}


class StrongswanResponder:
    kind = "strongswan"

    def __init__(self, ns: str, workdir: Path, psk: str = PSK):
        self.charon = strongswan.Charon(ns, workdir, "charon", log_level=0, options=CHARON_OPTIONS)
        self.psk = psk

    def start(self):
        try:
            self.charon.start(timeout=30)
        except TimeoutError:
            # Charon.start gives vici 2 s per request; on a busy machine the
            # first answer can take longer: wait for it here.
            deadline = time.monotonic() + 30
            while True:
                try:
                    with vici.Session(str(self.charon.vici_path), timeout=10) as s:
                        s.request("version")
                    break
                except (TimeoutError, vici.ViciError, OSError):
                    if time.monotonic() > deadline or not self.charon.running():
                        self.charon.stop()
                        raise HarnessError("charon: vici does not answer\n"
                                           + self.charon.logs(40)) from None
                    time.sleep(0.2)
        self.charon.write_config(strongswan_conf_tree(self.psk))
        self.charon.load_all()
        pin(self.pid, RESPONDER_CPU)
        return self

    @property
    def pid(self) -> int:
        return self.charon.pid

    def ike_sa_count(self) -> int | None:
        out = self.charon.swanctl("--stats", timeout=60).stdout
        m = re.search(r"IKE_SAs:\s*(\d+) total", out)
        return int(m.group(1)) if m else None

    def stop(self):
        self.charon.stop()

    def logs(self) -> str:
        return self.charon.logs(60)


def ravelin_conf_text(control_socket: Path, psk: str = PSK) -> str:
    tree = strongswan_conf_tree(psk)
    conn = tree["connections"]["bench"]
    # keys strongSwan knows that ravelin-iked's schema has no use for here
    for k in ("version", "over_time", "rand_time"):
        conn.pop(k, None)
    tree["iked"] = {
        "listen": RESP_ADDR,
        "control_socket": str(control_socket),
        "cookie_threshold": 1000000,
        "half_open_limit": 1000000,
        "log": {"default": "warning"},
    }
    return render_conf({"iked": tree.pop("iked"), **tree})


class RavelinResponder:
    kind = "ravelin"

    def __init__(self, ns: str, workdir: Path, psk: str = PSK, sa_sink: bool = False,
                 wrapper: list[str] | None = None):
        self.ns, self.psk = ns, psk
        self.wrapper = wrapper or []      # e.g. valgrind --tool=callgrind (profile)
        self.dir = Path(workdir) / "iked"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "iked.conf"
        self.sock = self.dir / "iked.sock"
        self.out = self.dir / "iked.out"
        self.sa_sink = self.dir / "sa-sink.jsonl" if sa_sink else None
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10):
        self.conf.write_text(ravelin_conf_text(self.sock, self.psk) + "\n")
        self.sock.unlink(missing_ok=True)
        cmd = ["ip", "netns", "exec", self.ns, *self.wrapper, str(iked_binary()), "-c", str(self.conf),
               "--standalone", "--foreground"]
        if self.sa_sink:
            cmd += ["--sa-sink", str(self.sa_sink)]
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=netns.owner_env(),
                                         preexec_fn=netns.die_with_parent)
        deadline = time.monotonic() + timeout
        while "ravelin-iked: ready" not in self.out.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise HarnessError(f"ravelin-iked exited with {self.proc.returncode}\n"
                                   + self.logs())
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"ravelin-iked: not ready within {timeout} s\n" + self.logs())
            time.sleep(0.02)
        pin(self.pid, RESPONDER_CPU)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ike_sa_count(self) -> int | None:
        ctl = binary("controlplane/ravelinctl")
        for _ in range(3):      # ravelinctl waits 10 s for the reply; a busy daemon may miss that
            p = netns.run([str(ctl), "--iked-socket", str(self.sock), "list-sas", "--json"],
                          check=False, timeout=120)
            if p.returncode == 0:
                break
        if p.returncode != 0:
            print(f"ravelinctl list-sas: exit {p.returncode}: {p.stderr.strip()[:300]}",
                  file=sys.stderr)
            return None
        try:
            doc = json.loads(p.stdout)
        except json.JSONDecodeError:
            return None
        sas = doc.get("sas", doc) if isinstance(doc, dict) else doc
        if isinstance(sas, dict):
            sas = sas.get("ike_sas", list(sas.values()))
        return len(sas) if isinstance(sas, list) else None

    def stop(self, timeout: float = 5):
        if self.proc is None:
            return
        netns.stop_pids([self.proc.pid], timeout)
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"ravelin-iked pid {self.proc.pid} did not exit") from None
        self.proc = None

    def logs(self) -> str:
        try:
            lines = self.out.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(["----- ravelin-iked -----", *lines[-60:]])


class CallgrindCharon(strongswan.Charon):
    """charon under valgrind --tool=callgrind (all threads in one profile),
    for instruction counts per setup that do not depend on the machine's load."""

    def __init__(self, *args, out: Path, **kw):
        super().__init__(*args, **kw)
        self.out = out

    def start(self, timeout: float = 120.0) -> "CallgrindCharon":
        timeout = max(timeout, 120.0)
        self.conf.write_text(render_conf(self.strongswan_conf_tree()) + "\n")
        self.vici_path.unlink(missing_ok=True)
        (self.run_dir / "charon.pid").unlink(missing_ok=True)
        with open(self.stdout_path, "ab") as out:
            cmd = ["ip", "netns", "exec", self.ns, "sh", "-c",
                   'mount --bind "$1" /run && exec valgrind --tool=callgrind '
                   '--callgrind-out-file="$3" "$2"', "charon-start", str(self.run_dir),
                   strongswan.CHARON, str(self.out)]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         env=netns.owner_env({"STRONGSWAN_CONF": str(self.conf)}),
                                         preexec_fn=netns.die_with_parent)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"charon under callgrind exited with {self.proc.returncode}\n"
                                   + self.logs(40))
            try:
                with vici.Session(str(self.vici_path), timeout=20) as s:
                    s.request("version")
                return self
            except (TimeoutError, vici.ViciError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise HarnessError("charon under callgrind: no vici\n" + self.logs(40)) from None
                time.sleep(0.5)


def make_responder(kind: str, ns: str, workdir: Path, psk: str = PSK):
    if kind == "strongswan":
        return StrongswanResponder(ns, workdir, psk)
    if kind == "ravelin":
        return RavelinResponder(ns, workdir, psk)
    raise ValueError(kind)


# --- the load generator ----------------------------------------------------------

def run_loadgen(lg_ns: str, responder_pid: int | None, *, label: str, window: int = 256,
                count: int | None = None, duration: float | None = None, warmup: float = 0,
                keep: bool = False, first_id: int = 0, timeout_ms: int = 2000,
                tries: int = 3, extra: list[str] | None = None, wall_timeout: float = 300
                ) -> dict:
    cmd = ["ip", "netns", "exec", lg_ns, "taskset", "-c", LOADGEN_CPU, str(loadgen_binary()),
           "--dst", RESP_ADDR, "--psk", PSK, "--window", str(window), "--label", label,
           "--first-id", str(first_id), "--timeout-ms", str(timeout_ms), "--tries", str(tries),
           "--tsi-per-client"]
    for a in LG_ADDRS:
        cmd += ["--src", a]
    if count is not None:
        cmd += ["--count", str(count)]
    else:
        cmd += ["--duration", str(duration), "--warmup", str(warmup)]
    if keep:
        cmd.append("--keep")
    if responder_pid:
        cmd += ["--responder-pid", str(responder_pid)]
    cmd += extra or []
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=wall_timeout,
                           env=netns.owner_env())
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"loadgen did not finish within {wall_timeout} s") from e
    try:
        doc = json.loads(p.stdout)
    except json.JSONDecodeError:
        raise HarnessError(f"loadgen exit {p.returncode}, no JSON:\n{p.stdout}\n{p.stderr}") from None
    doc["exit_code"] = p.returncode
    doc["command"] = " ".join(cmd)
    return doc


def udp_counters(ns: str) -> dict:
    """Udp: counters of /proc/net/snmp in namespace ns (RcvbufErrors: datagrams
    dropped because a socket's receive buffer was full)."""
    lines = [l.split() for l in netns.run(["cat", "/proc/net/snmp"], ns=ns).stdout.splitlines()
             if l.startswith("Udp:")]
    return dict(zip(lines[0][1:], (int(x) for x in lines[1][1:])))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise HarnessError(f"no VmRSS for pid {pid}")


# --- measurements ----------------------------------------------------------------

def rate_runs(workdir: Path, reps: int, duration: float, warmup: float, window: int,
              kinds=("strongswan", "ravelin"), log=print) -> list[dict]:
    """Interleaved: each repetition runs every responder once (the order
    alternates), each on a fresh responder and fresh namespaces."""
    runs = []
    for rep in range(reps):
        order = list(kinds) if rep % 2 == 0 else list(reversed(kinds))
        for kind in order:
            with BenchLab() as bl:
                r = make_responder(kind, bl.resp, workdir / f"rate-{rep}-{kind}")
                r.start()
                try:
                    doc = run_loadgen(bl.lg, r.pid, label=f"{kind}#{rep}", window=window,
                                      duration=duration, warmup=warmup)
                    udp = udp_counters(bl.resp)
                finally:
                    r.stop()
            proc = doc.get("responder_proc", {})
            doc.update(responder_kind=kind, rep=rep, loadavg=os.getloadavg()[0],
                       responder_udp_rcvbuf_errors=udp.get("RcvbufErrors"),
                       setups_per_responder_cpu_s=(doc["completed_in_interval"] / proc["cpu_s"]
                                                   if proc.get("cpu_s") else None))
            log(f"rate {kind} rep {rep}: {doc['setups_per_s']:.0f}/s, failed {doc['failed']}, "
                f"responder cpu {doc.get('responder_proc', {}).get('cpu_util', 0):.2f}, "
                f"loadgen cpu {doc['loadgen_cpu_util']:.2f}, per responder CPU-s "
                f"{doc['setups_per_responder_cpu_s'] or 0:.0f}, retransmits {doc['retransmits']}, "
                f"responder rcvbuf drops {doc['responder_udp_rcvbuf_errors']}")
            runs.append(doc)
    return runs


def cpu_neighbours(cpu: str) -> list[str]:
    """Other busy processes last seen on `cpu` (shared machine: a DPDK
    poll-mode process at nice -20 there leaves the responder ~1 % of it)."""
    p = netns.run(["ps", "-eo", "pid,ni,pcpu,psr,comm", "--sort=-pcpu"], check=False)
    out = []
    for line in p.stdout.splitlines()[1:]:
        f = line.split(None, 4)
        if len(f) == 5 and f[3] == cpu and float(f[2]) >= 5.0:
            out.append(f"{f[4]} (pid {f[0]}, nice {f[1]}, {f[2]}% CPU)")
    return out[:6]


def memory_run(workdir: Path, kind: str, sas: int, window: int = 16, log=print) -> dict:
    """RSS after a warm-up (500 setups, deleted), then after `sas` kept SAs.
    A small window and a long retransmission timeout, so that no setup is
    given up while the responder is busy (a given-up setup may still be
    established, or stay half-open, on the responder: it would skew the
    per-SA figure). Divided by the IKE SAs the responder itself reports."""
    with BenchLab() as bl:
        r = make_responder(kind, bl.resp, workdir / f"mem-{kind}")
        r.start()
        try:
            warm = run_loadgen(bl.lg, r.pid, label=f"{kind} warm-up", window=window, count=500,
                               first_id=10_000_000)
            time.sleep(2)
            before = rss_kb(r.pid)
            keep = run_loadgen(bl.lg, r.pid, label=f"{kind} keep", window=window, count=sas,
                               keep=True, timeout_ms=8000, tries=4, wall_timeout=1200)
            time.sleep(3)
            after = rss_kb(r.pid)
            count = r.ike_sa_count()
        finally:
            r.stop()
    established = count if count else keep["completed"]
    doc = {"responder_kind": kind, "sas_requested": sas, "established": established,
           "loadgen_completed": keep["completed"],
           "responder_reports_ike_sas": count, "rss_kb_before": before, "rss_kb_after": after,
           "bytes_per_sa": (after - before) * 1024 / established if established else None,
           "warmup": warm, "keep": keep}
    log(f"memory {kind}: {established} SAs ({count} per responder), RSS {before} -> {after} kB, "
        f"{doc['bytes_per_sa'] or 0:.0f} B/SA")
    return doc


def profile(workdir: Path, kind: str, count: int, keep: bool, log=print) -> str:
    """The responder under callgrind for `count` setups: instruction counts do
    not depend on what else runs on the machine. Returns a summary line and
    the inclusive top of callgrind_annotate. Start-up and shutdown are in
    the totals too: compare the per-setup figures of two counts."""
    out = workdir / f"callgrind-{kind}.out"
    with BenchLab() as bl:
        if kind == "ravelin":
            r = RavelinResponder(bl.resp, workdir / "profile",
                                 wrapper=["valgrind", "--tool=callgrind",
                                          f"--callgrind-out-file={out}"])
            r.start(timeout=120)
        else:
            r = StrongswanResponder(bl.resp, workdir / "profile")
            r.charon = CallgrindCharon(bl.resp, workdir / "profile", "charon", log_level=0,
                                       options=CHARON_OPTIONS, out=out)
            r.start()
        try:
            doc = run_loadgen(bl.lg, None, label="callgrind", window=8, count=count, keep=keep,
                              timeout_ms=30000, tries=2, wall_timeout=1800)
        finally:
            if kind == "ravelin":
                r.stop(timeout=60)
            else:
                r.charon.stop(timeout=60)
    p = netns.run(["callgrind_annotate", "--inclusive=yes", str(out)], timeout=300)
    m = re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", p.stdout)
    total = int(m.group(1).replace(",", "")) if m else 0
    line = (f"profile {kind}: {doc['completed']} setups completed, {doc['failed']} failed, "
            f"{total} instructions in all, {total / max(doc['completed'], 1):.0f} per setup")
    log(line)
    return line + "\n" + p.stdout


def summarize(runs: list[dict], mem: list[dict]) -> dict:
    out: dict = {"rate": {}, "memory": {}}
    for kind in ("strongswan", "ravelin"):
        mine = [r for r in runs if r["responder_kind"] == kind]
        rs = sorted(r["setups_per_s"] for r in mine)
        eff = sorted(r["setups_per_responder_cpu_s"] or 0 for r in mine)
        if rs:
            out["rate"][kind] = {"runs": rs, "median": rs[len(rs) // 2],
                                 "per_cpu_s_runs": eff, "per_cpu_s_median": eff[len(eff) // 2],
                                 "responder_cpu_util": [r.get("responder_proc", {}).get("cpu_util")
                                                        for r in mine],
                                 "retransmits": sum(r["retransmits"] for r in mine),
                                 "failed": sum(r["failed"] for r in runs
                                               if r["responder_kind"] == kind)}
        for m in mem:
            if m["responder_kind"] == kind:
                out["memory"][kind] = {k: m[k] for k in ("established", "bytes_per_sa",
                                                         "rss_kb_before", "rss_kb_after",
                                                         "responder_reports_ike_sas")}
    rate = out["rate"]
    if "strongswan" in rate and "ravelin" in rate and rate["strongswan"]["median"]:
        out["rate_ratio"] = rate["ravelin"]["median"] / rate["strongswan"]["median"]
        if rate["strongswan"]["per_cpu_s_median"]:
            out["per_cpu_s_ratio"] = (rate["ravelin"]["per_cpu_s_median"]
                                      / rate["strongswan"]["per_cpu_s_median"])
    mm = out["memory"]
    if mm.get("strongswan", {}).get("bytes_per_sa") and mm.get("ravelin", {}).get("bytes_per_sa"):
        out["memory_ratio"] = mm["ravelin"]["bytes_per_sa"] / mm["strongswan"]["bytes_per_sa"]
    return out


def markdown(result: dict) -> str:
    """The results table of docs/performance.md from a result document."""
    s = result.get("summary", {})
    rate, mem = s.get("rate", {}), s.get("memory", {})
    names = {"strongswan": "strongSwan 5.9.8 (charon, kernel-libipsec)",
             "ravelin": "ravelin-iked (standalone)"}
    rows = ["| responder | setups/s (median; runs) | setups per responder CPU-second "
            "(median; runs) | responder CPU use | retransmits | failed | memory per IKE SA + "
            "Child SA |", "|---|---|---|---|---|---|---|"]
    for kind in ("strongswan", "ravelin"):
        r, m = rate.get(kind), mem.get(kind)
        if not r and not m:
            continue
        cells = [names[kind]]
        if r:
            cells += [f"{r['median']:.0f} ({', '.join(f'{x:.0f}' for x in r['runs'])})",
                      f"{r['per_cpu_s_median']:.0f} ({', '.join(f'{x:.0f}' for x in r['per_cpu_s_runs'])})",
                      ", ".join(f"{u:.0%}" for u in r["responder_cpu_util"] if u is not None),
                      str(r["retransmits"]), str(r["failed"])]
        else:
            cells += ["-"] * 5
        if m and m.get("bytes_per_sa"):
            cells.append(f"{m['bytes_per_sa'] / 1024:.1f} KiB ({m['established']} SAs, RSS "
                         f"{m['rss_kb_before']} -> {m['rss_kb_after']} kB)")
        else:
            cells.append("-")
        rows.append("| " + " | ".join(cells) + " |")
    ratios = []
    if "rate_ratio" in s:
        ratios.append(f"setups/s {s['rate_ratio']:.2f}x")
    if "per_cpu_s_ratio" in s:
        ratios.append(f"setups per responder CPU-second {s['per_cpu_s_ratio']:.2f}x")
    if "memory_ratio" in s:
        ratios.append(f"memory per SA {s['memory_ratio']:.2f}x")
    out = "\n".join(rows) + "\n"
    if ratios:
        out += "\nRavelin / strongSwan: " + ", ".join(ratios) + "\n"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("rate", "all"):
        s = sub.add_parser(name)
        s.add_argument("--reps", type=int, default=3)
        s.add_argument("--duration", type=float, default=10)
        s.add_argument("--warmup", type=float, default=2)
        s.add_argument("--window", type=int, default=64)
        s.add_argument("--sas", type=int, default=10000)
        s.add_argument("--only", choices=("strongswan", "ravelin"))
    s = sub.add_parser("memory")
    s.add_argument("--sas", type=int, default=10000)
    s.add_argument("--only", choices=("strongswan", "ravelin"))
    s = sub.add_parser("profile", help="a responder under callgrind (text on stdout)")
    s.add_argument("--responder", choices=("strongswan", "ravelin"), default="ravelin")
    s.add_argument("--count", type=int, default=300)
    s.add_argument("--keep", action="store_true")
    s = sub.add_parser("report", help="markdown table from a saved result document")
    s.add_argument("result")
    s = sub.add_parser("smoke")
    s.add_argument("--responder", choices=("strongswan", "ravelin"), required=True)
    s.add_argument("--count", type=int, default=200)
    s.add_argument("--keep", action="store_true")
    ap.add_argument("--workdir", default="/tmp/ravelin-bench-ike")
    a = ap.parse_args()
    if a.cmd == "report":
        print(markdown(json.loads(Path(a.result).read_text())), end="")
        return 0

    if os.geteuid() != 0:
        raise SystemExit("bench_ike.py needs root (network namespaces)")
    netns.cleanup_stale(log=lambda m: print(m, file=sys.stderr))
    workdir = Path(a.workdir) / netns.owner()
    workdir.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    kinds = (a.only,) if getattr(a, "only", None) else ("strongswan", "ravelin")

    if a.cmd == "profile":
        print(profile(workdir, a.responder, a.count, a.keep, log), end="")
        return 0
    result: dict = {"host": {"nproc": os.cpu_count(), "loadavg_start": os.getloadavg(),
                             "loadgen_cpu": LOADGEN_CPU, "responder_cpu": RESPONDER_CPU,
                             "busy_on_responder_cpu": cpu_neighbours(RESPONDER_CPU)}}
    if a.cmd == "smoke":
        with BenchLab() as bl:
            r = make_responder(a.responder, bl.resp, workdir / "smoke")
            r.start()
            try:
                result["loadgen"] = run_loadgen(bl.lg, r.pid, label=f"smoke {a.responder}",
                                                window=32, count=a.count, keep=a.keep,
                                                wall_timeout=120)
                result["responder_ike_sas"] = r.ike_sa_count()
            finally:
                r.stop()
    if a.cmd in ("rate", "all"):
        result["rate_runs"] = rate_runs(workdir, a.reps, a.duration, a.warmup, a.window, kinds, log)
    if a.cmd in ("memory", "all"):
        result["memory_runs"] = [memory_run(workdir, k, a.sas, log=log) for k in kinds]
    if a.cmd != "smoke":
        result["summary"] = summarize(result.get("rate_runs", []), result.get("memory_runs", []))
    result["host"]["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
