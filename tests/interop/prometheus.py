"""A real Prometheus server (Debian's `prometheus` 2.42) for the metrics
tests: started as a child process inside a test namespace, listening on
127.0.0.1 there on a port the test picks, with its TSDB in the test's work
directory; scraping every second. Queried through its HTTP API
(/api/v1/query) from this process, on a thread switched into the namespace.

    prom = PrometheusServer(ns, workdir, targets=["127.0.0.1:9814"]).start()
    prom.wait_value('ravelin_ike_sas{state="ESTABLISHED"}', 1)
    prom.stop()
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

from . import netns
from .netns import HarnessError

BINARY = "/usr/bin/prometheus"


class PrometheusServer:
    def __init__(self, ns: str, workdir: Path, targets: list[str], port: int = 19090,
                 job: str = "ravelin"):
        self.ns, self.port, self.job = ns, port, job
        self.dir = Path(workdir) / "prometheus"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "prometheus.yml"
        self.log_path = self.dir / "prometheus.log"
        self.config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {job}\n    static_configs:\n      - targets: {json.dumps(targets)}\n")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> "PrometheusServer":
        if not shutil.which(BINARY):
            raise HarnessError(f"{BINARY} missing: scripts/install-deps.sh installs Debian's prometheus")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, BINARY, f"--config.file={self.config}",
             f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=netns.owner_env(),
            preexec_fn=netns.die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"prometheus exited with {self.proc.returncode}\n{self.logs()}")
            try:
                if self._get("/-/ready").startswith("Prometheus Server is Ready"):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"prometheus not ready within {timeout} s\n{self.logs()}")
            time.sleep(0.2)

    def stop(self):
        if self.proc is None:
            return
        netns.stop_pids([self.proc.pid], 10)
        self.proc.wait(timeout=5)
        self.proc = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def _get(self, path: str) -> str:
        with netns.in_netns(self.ns):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.read().decode()

    def query(self, expr: str) -> list[dict]:
        """The result vector of an instant query: [{"metric": {...}, "value": float}, ...]."""
        answer = json.loads(self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
        if answer.get("status") != "success" or answer["data"]["resultType"] != "vector":
            raise HarnessError(f"query {expr!r}: {answer}")
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in answer["data"]["result"]]

    def value(self, expr: str) -> float | None:
        """The single value of `expr`, None if the result is empty."""
        r = self.query(expr)
        if len(r) > 1:
            raise HarnessError(f"query {expr!r}: {len(r)} series, expected one: {r}")
        return r[0]["value"] if r else None

    def wait_value(self, expr: str, want: float, timeout: float = 15) -> float | None:
        """Waits until `expr` is `want` (scrapes are a second apart); the last value."""
        last = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last == want:
                return last
            time.sleep(0.5)
        return last
