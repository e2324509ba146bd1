"""The Ravelin gateway under test: ravelin-dataplane on the two veths of the
rav namespace (net_af_packet; netns.dataplane_pair) and ravelin-iked
attached to it, so IKE and ESP both go through the data plane's ports.

    gw = RavelinGateway(topo, workdir, rav_tree)   # swanctl-shaped tree, like RavelinIked
    gw.start()                                      # data plane, then ravelin-iked
    gw.iked.ctl("initiate", "--ike", "gw")
    gw.dataplane.stats()                            # ravelinctl --file-prefix P stats --json
    gw.kill_iked(); gw.start_iked()                 # restart the control plane
    gw.restart_dataplane()
    gw.stop()

The data plane runs without hugepages (--no-huge: ravelin-iked maps the
channel file, not DPDK memory), one worker on lcore 1.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import netns
from .netns import HarnessError, Topology
from .ravelin import RavelinIked, iked_conf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import topo as dp_topo  # noqa: E402  (tests/integration/topo.py: the data-plane process)


def dataplane_toml(topo: Topology, prefix: str, extra: str = "") -> str:
    """Two ports, the data plane's own addresses, no manual SAs: every SA and
    policy comes from ravelin-iked. With NAT, the default route goes via the
    NAT router."""
    routes = ""
    if topo.behind_nat:
        routes = ('[[route]]\nprefix = "0.0.0.0/0"\nvia = "198.18.11.1"\nport = "outside"\n')
    return f"""# written by tests/interop/gateway.py
[dataplane]
lcores = "0,1"
main_rt_priority = 10
file_prefix = "{prefix}"
hugepages = false
memory_mb = 256
mbufs = 4095
{extra}
[[port]]
name = "inside"
role = "protected"
device = "net_af_packet0,iface={topo.rav_in_if}"
address = ["{topo.rav_inner}/24"]

[[port]]
name = "outside"
role = "unprotected"
device = "net_af_packet1,iface={topo.rav_if}"
address = ["{topo.rav_outer}/24"]

{routes}"""


class RavelinGateway:
    def __init__(self, topo: Topology, workdir: Path, conf: dict, name: str = "gw",
                 dataplane_extra: str = "", iked: dict | None = None):
        if topo.ha is None:
            raise HarnessError("RavelinGateway needs netns.dataplane_pair()")
        self.topo, self.name = topo, name
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        # unique per run and test: the owner token plus the directory
        self.prefix = f"rvix{abs(hash((netns.owner(), str(self.dir)))) % 10**8}"
        self.dp_conf = self.dir / "dataplane.toml"
        self.dp_conf.write_text(dataplane_toml(topo, self.prefix, dataplane_extra))
        self.conf = iked_conf(conf, **(iked or {}))
        self.dataplane: dp_topo.Gateway | None = None
        self.iked: RavelinIked | None = None
        self._iked_runs = 0

    def start(self) -> "RavelinGateway":
        self.start_dataplane()
        self.start_iked()
        return self

    def start_dataplane(self, timeout: float = 60):
        self.dataplane = dp_topo.Gateway(self.topo.rav, self.dp_conf, self.prefix,
                                         name=f"{self.name}-dataplane")
        self.dataplane.start(timeout=timeout)

    def start_iked(self, timeout: float = 10):
        self._iked_runs += 1
        # a fresh directory per run keeps each run's log apart
        self.iked = RavelinIked(self.topo.rav, self.conf, self.dir,
                                name=f"iked{self._iked_runs}", dataplane=self.prefix)
        self.iked.start(timeout=timeout)

    def kill_iked(self):
        self.iked.kill()

    def restart_dataplane(self, timeout: float = 60):
        rc = self.dataplane.stop()
        if rc != 0:
            raise HarnessError(f"ravelin-dataplane exited with {rc}\n{self.dataplane.output()}")
        self.start_dataplane(timeout)

    def dp_sas(self) -> list[dict]:
        return self.dataplane.stats()["sas"]

    def iked_stats(self) -> dict:
        import json
        return json.loads(self.iked.ctl("ike-stats", "--json").stdout)

    def wait_child(self, conn: str = "gw", child: str = "net", timeout: float = 15,
                   exclude_spis=()) -> dict:
        """The INSTALLED child of an ESTABLISHED IKE SA in ravelinctl list-sas,
        whose outbound SA the data plane holds."""
        def probe():
            for sa in self.iked.list_sas()["sas"]:
                if sa["name"] != conn or sa["state"] != "ESTABLISHED":
                    continue
                for c in sa["children"]:
                    if c["name"] == child and c["state"] == "INSTALLED" and "out" in c \
                            and c["spi_in"] not in exclude_spis:
                        return c
            return None
        c = netns.wait_until(probe, timeout, step=0.2)
        if c is None:
            raise HarnessError(f"{self.name}: no installed {conn}/{child} within {timeout} s\n"
                               + self.logs())
        return c

    def logs(self) -> str:
        parts = []
        if self.dataplane:
            parts.append(f"----- {self.name} data plane -----\n{self.dataplane.output()}")
        if self.iked:
            parts.append(self.iked.logs(120))
        return "\n".join(parts)

    def stop(self):
        errors = []
        if self.iked:
            self.iked.stop()
        if self.dataplane:
            rc = self.dataplane.stop()
            if rc not in (0, None):
                errors.append(f"ravelin-dataplane exited with {rc}")
        if errors:
            raise HarnessError("; ".join(errors) + "\n" + self.logs())


def wait_for(pred, timeout: float, what: str, step: float = 0.1):
    v = netns.wait_until(pred, timeout, step)
    if not v:
        raise HarnessError(f"timed out after {timeout} s waiting for {what}")
    return v


def sleep_until(deadline: float):
    time.sleep(max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def scratch_lab(name: str):
    """For programs outside pytest (the demo, benchmarks): a Lab, a work
    directory and a list to append started daemons to. On the way out, even
    on Ctrl-C, the daemons are stopped (last first), the namespaces deleted
    and the directory removed."""
    work = Path(tempfile.mkdtemp(prefix=f"ravelin-{name}-"))
    lab = netns.Lab()
    started: list = []
    try:
        yield lab, work, started
    finally:
        for s in reversed(started):
            try:
                s.stop()
            except HarnessError as e:
                print(f"{name}: {e}", file=sys.stderr)
        lab.close()
        shutil.rmtree(work, ignore_errors=True)
