"""ravelin-iked under test, in standalone mode (kernel UDP sockets, no data
plane): the SAs it negotiates go to a JSON-lines SA sink (sa_records.py),
and esp.py plays its data plane.

Ready for use once the daemon exists; not exercised by the self-test yet
(only its refusal to start without a binary is).

    rav_tree, sw_tree = peers.site_configs(topo)
    iked = RavelinIked(topo.rav, iked_conf(rav_tree), workdir)   # conf: tree or text
    iked.start()
    sw.load_all(); sw.initiate("net")              # or iked.ctl("initiate", ...)
    out = iked.wait_sa("out", "gw", "net")         # SaRecord from the sink
    iked.list_sas()                                # ravelinctl list-sas --json
    iked.stop()

The binaries come from $RAVELIN_BUILD (relative to the repository, default
"build"): <build>/controlplane/iked/ravelin-iked and <build>/controlplane/ravelinctl.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from . import netns, sa_records
from .netns import HarnessError
from .strongswan import deep_merge, render_conf

REPO = Path(__file__).resolve().parents[2]


def build_dir() -> Path:
    b = Path(os.environ.get("RAVELIN_BUILD", "build"))
    return b if b.is_absolute() else REPO / b


def iked_conf(tree: dict, **iked: object) -> dict:
    """A swanctl-shaped tree plus an iked { } section (keys of
    controlplane/ike/config.hh's DaemonConfig, e.g. fragment_size=1280).
    RavelinIked fills in control_socket."""
    return deep_merge(tree, {"iked": dict(iked)})


class RavelinIked:
    """ravelin-iked -c <conf> --standalone --sa-sink <file> --foreground in
    namespace `ns` (foreground: the PID we hold is the daemon's)."""

    def __init__(self, ns: str, conf: dict | str, workdir: Path, name: str = "iked",
                 dataplane: str | None = None):
        """dataplane: attach to the data plane with this DPDK file prefix
        (the gateway) instead of running standalone with an SA sink."""
        self.ns, self.name, self.dataplane = ns, name, dataplane
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.binary = build_dir() / "controlplane" / "iked" / "ravelin-iked"
        self.ctl_binary = build_dir() / "controlplane" / "ravelinctl"
        self.conf_path = self.dir / "iked.conf"
        self.control_socket = self.dir / "iked.sock"
        self.sa_sink = self.dir / "sa-sink.jsonl"
        self.stdout_path = self.dir / "iked.out"
        self.proc: subprocess.Popen | None = None
        if isinstance(conf, dict):
            conf = render_conf(deep_merge(conf, {"iked": {"control_socket":
                                                          str(self.control_socket)}}))
        elif str(self.control_socket) not in conf:
            raise HarnessError(f"config text must set iked {{ control_socket = "
                               f"{self.control_socket} }} (RavelinIked.control_socket)")
        self.conf_text = conf

    def start(self, timeout: float = 5.0) -> "RavelinIked":
        for b in (self.binary, self.ctl_binary):
            if not os.access(b, os.X_OK):
                raise HarnessError(f"{b} missing: build it first (ninja -C {build_dir()}) "
                                   "or set RAVELIN_BUILD")
        self.conf_path.write_text(self.conf_text + "\n")
        self.control_socket.unlink(missing_ok=True)
        out = open(self.stdout_path, "ab")
        mode = (["--dataplane", self.dataplane, "--attach-timeout", str(int(timeout))]
                if self.dataplane else ["--standalone", "--sa-sink", str(self.sa_sink)])
        cmd = ["ip", "netns", "exec", self.ns, str(self.binary), "-c", str(self.conf_path),
               *mode, "--foreground"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, env=netns.owner_env(),
                                     preexec_fn=netns.die_with_parent)
        out.close()
        deadline = time.monotonic() + timeout
        while not self.control_socket.exists():
            if self.proc.poll() is not None:
                raise HarnessError(f"ravelin-iked exited with {self.proc.returncode}\n"
                                   + self.logs())
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"ravelin-iked: no control socket within {timeout} s\n"
                                   + self.logs())
            time.sleep(0.02)
        return self

    def kill(self):
        """SIGKILL: no cleanup at all (the data plane must not notice)."""
        if self.proc is None:
            return
        os.kill(self.proc.pid, 9)
        self.proc.wait(timeout=5)
        self.proc = None

    def stop(self, timeout: float = 5.0):
        if self.proc is None:
            return
        netns.stop_pids([self.proc.pid], timeout)
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"ravelin-iked pid {self.proc.pid} did not exit") from None
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ctl(self, *args: str, check: bool = True, timeout: float = 10
            ) -> subprocess.CompletedProcess:
        """ravelinctl --iked-socket <ours> args..."""
        return netns.run([str(self.ctl_binary), "--iked-socket", str(self.control_socket),
                          *args], check=check, timeout=timeout)

    def list_sas(self) -> dict:
        out = self.ctl("list-sas", "--json").stdout
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            raise HarnessError(f"ravelinctl list-sas --json: not JSON ({e}): {out[:500]}") \
                from None

    def sa_records(self) -> list[sa_records.SaRecord]:
        return sa_records.read_sa_file(self.sa_sink)

    def wait_sa(self, direction: str, connection: str | None = None, child: str | None = None,
                timeout: float = 10, exclude_spis=()) -> sa_records.SaRecord:
        """The newest installed SA in the sink matching the filters (and not
        one of exclude_spis, for waiting on a rekey)."""
        def probe():
            for r in reversed(sa_records.installed(self.sa_records())):
                if r.direction == direction and r.spi not in exclude_spis \
                        and (connection is None or r.connection == connection) \
                        and (child is None or r.child == child):
                    return r
            return None
        r = netns.wait_until(probe, timeout)
        if r is None:
            raise HarnessError(f"no {direction} SA for {connection}/{child} in {self.sa_sink} "
                               f"within {timeout} s\n" + self.logs())
        return r

    def logs(self, tail: int = 200) -> str:
        try:
            lines = self.stdout_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"----- {self.name}: no output -----"
        return "\n".join([f"----- {self.name}: {self.stdout_path} (last {tail} lines) -----",
                          *lines[-tail:]])
