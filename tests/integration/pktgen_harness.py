"""ravelin-pktgen against ravelin-dataplane over net_memif, for the tests.

The gateway and the generator run inside one network namespace the test
creates (memif needs no network, only a Unix socket in a directory of the
test's own); DPDK file prefixes carry the PID; both processes are ended by
PID. The gateway's configuration is config/pktgen/gateway-memif.toml with
this run's socket paths and file prefix substituted.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import topo

GATEWAY_MAC_INSIDE = "02:00:00:00:01:01"
GATEWAY_MAC_OUTSIDE = "02:00:00:00:00:01"
TEMPLATE = topo.REPO / "config/pktgen/gateway-memif.toml"
# memif rings of 2^13 slots: a generator core that other work preempts for
# a few milliseconds must not make the gateway drop (tx_full) for it.
RING_LOG2 = 13


def pktgen_binary() -> Path:
    b = topo.build_dir() / "pktgen/ravelin-pktgen"
    if not os.access(b, os.X_OK):
        raise topo.HarnessError(f"{b} missing: build first (ninja -C {topo.build_dir()} pktgen/ravelin-pktgen)")
    return b


def gateway_config(workdir: Path, prefix: str) -> Path:
    """The template with this run's sockets, MACs kept, and file prefix."""
    text = TEMPLATE.read_text()
    text = text.replace("/tmp/ravelin-pktgen/", f"{workdir}/")
    text = text.replace('file_prefix = "ravelin-pg"', f'file_prefix = "{prefix}"')
    text = re.sub(r'(net_memif\d,role=server,[^"]*)"', lambda m: f'{m.group(1)},rsize={RING_LOG2}"', text)
    if text.count(str(workdir)) != 2 or prefix not in text:
        raise topo.HarnessError(f"{TEMPLATE} no longer has the expected socket paths / file_prefix")
    path = workdir / "gateway.toml"
    path.write_text(text)
    return path


class Pktgen:
    """One ravelin-pktgen process, stepped through its phases on stdin
    (--wait-stdin): warm-up, then it waits; the run, then it waits again
    with its JSON written. The gateway must be stopped before the generator
    exits: DPDK 22.11's memif server can crash (SIGSEGV in
    librte_net_memif) when a client disconnects while a worker polls."""

    def __init__(self, ns: str, workdir: Path, prefix: str, sa_config: Path):
        self.bin = pktgen_binary()
        self.ns, self.workdir, self.prefix, self.sa_config = ns, workdir, prefix, sa_config
        self.proc: subprocess.Popen | None = None
        self.out = workdir / "pktgen.json"
        self.lines: list[str] = []
        self._lock = threading.Condition()

    def eal(self) -> list[str]:
        return ["-l", "0", "--no-pci", "--no-telemetry", "--file-prefix", self.prefix, "--huge-unlink",
                "--log-level=lib.eal:error",
                "--vdev", f"net_memif0,role=client,socket={self.workdir}/inside.sock,id=0,rsize={RING_LOG2}",
                "--vdev", f"net_memif1,role=client,socket={self.workdir}/outside.sock,id=0,rsize={RING_LOG2}"]

    def start(self, args: list[str]):
        self.cmd = ["ip", "netns", "exec", self.ns, str(self.bin), *self.eal(), "--",
                    "--sa-config", str(self.sa_config), "--arp", "0=198.18.1.0/24", "--arp", "1=198.18.0.2/32",
                    "--no-progress", "--wait-stdin", "--json", str(self.out), *args]
        self.errf = open(self.workdir / "pktgen.err", "w")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errf,
                                     text=True, start_new_session=True, preexec_fn=topo.die_with_parent)
        threading.Thread(target=self._reader, daemon=True).start()
        return self

    def _reader(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def output(self) -> str:
        err = (self.workdir / "pktgen.err").read_text(errors="replace")
        return f"{' '.join(self.cmd)}\n--- stdout ---\n" + "\n".join(self.lines) + f"\n--- stderr ---\n{err}"

    def wait_for(self, text: str, timeout: float):
        deadline = time.monotonic() + timeout
        with self._lock:
            while not any(text in l for l in self.lines):
                if self.proc.poll() is not None and not any(text in l for l in self.lines):
                    raise AssertionError(f"ravelin-pktgen exited {self.proc.returncode} before '{text}'\n"
                                         f"{self.output()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no '{text}' from ravelin-pktgen in {timeout}s\n{self.output()}")
                self._lock.wait(min(left, 0.5))

    def step(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def until_run(self, timeout: float = 60):
        self.wait_for("ravelin-pktgen: waiting (run)", timeout)

    def run_and_collect(self, timeout: float = 120) -> dict:
        self.step()
        self.wait_for("ravelin-pktgen: waiting (exit)", timeout)
        return json.loads(self.out.read_text())

    def finish(self, timeout: float = 20) -> int:
        """Let it exit (after the gateway is stopped); returns its exit code."""
        if self.proc is None:
            return 0
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        rc = self.proc.returncode
        self.proc = None
        self.errf.close()
        self.cleanup()
        return rc

    def cleanup(self):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.prefix):
            raise topo.HarnessError(f"unsafe file prefix {self.prefix!r}")
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)
        for f in Path("/dev/hugepages").glob(f"{self.prefix}map_*"):
            f.unlink(missing_ok=True)


def stream_line(port: int, src: str, dst: str, dmac: str, extra: str = "") -> str:
    return f"port={port} src={src} dst={dst} dmac={dmac} {extra}".strip()
