"""pytest fixtures for the strongSwan interop tests.

Run as root: /usr/bin/python3 -m pytest tests/interop

Nothing is skipped: a missing tool or missing root fails every test with
the reason. At session start, namespaces and processes left by harness
runs that died are removed (see netns.cleanup_stale). Each test's files
(configs, logs, SA sinks) are under $RVIX_WORKDIR (default
/tmp/ravelin-interop)/<run>/<test>; they are deleted when the test passes
and kept, with the path and the daemons' log tails printed, when it fails.

Fixtures:
  lab            netns.Lab of this test (namespaces deleted afterwards)
  pair, nat      netns.Topology: gateway pair / rav behind a NAT router
  workdir        this test's directory
  charons        factory: charons(ns, name, log_level=2, options=None) -> started Charon
  pki            session-wide pki.Pki (certificates are made on demand)
  ravelin        factory: ravelin(ns, conf, name="iked") -> started RavelinIked
  dp_pair        netns.Topology with the data plane owning rav's veths (netns.dataplane_pair)
  gateway        factory: gateway(topo, conf, **kw) -> started gateway.RavelinGateway
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from . import gateway as gateway_mod, netns, pki as pki_mod, ravelin as ravelin_mod, strongswan
from .netns import HarnessError

WORK_ROOT = Path(os.environ.get("RVIX_WORKDIR", "/tmp/ravelin-interop"))
TOOLS = ["ip", "ethtool", "nft", "ping", strongswan.CHARON, strongswan.SWANCTL, pki_mod.PKI]


def _terminate(signum, frame):
    # SIGTERM (e.g. from `timeout`): unwind like Ctrl-C so the fixtures stop
    # the daemons and delete the namespaces
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _terminate)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def _failed(node) -> bool:
    return any(getattr(getattr(node, f"rep_{w}", None), "failed", False)
               for w in ("setup", "call"))


def _prune_old_runs():
    """Work directories of dead runs older than a day (kept for post-mortem
    until then), and the key cache once it is a day old."""
    if not WORK_ROOT.is_dir():
        return
    for d in WORK_ROOT.iterdir():
        if d.is_dir() and not netns.owner_alive(d.name) \
                and time.time() - d.stat().st_mtime > 86400:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def run_dir():
    if os.geteuid() != 0:
        raise HarnessError("the interop tests need root (network namespaces)")
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        raise HarnessError(f"missing tools: {', '.join(missing)} (scripts/install-deps.sh)")
    if not os.path.exists("/dev/net/tun"):
        raise HarnessError("/dev/net/tun missing (kernel-libipsec needs TUN)")
    netns.cleanup_stale(log=lambda m: print(m, file=sys.stderr))
    _prune_old_runs()
    d = WORK_ROOT / netns.owner()
    d.mkdir(parents=True, exist_ok=True)
    yield d
    shutil.rmtree(d / "pki", ignore_errors=True)    # private keys
    try:
        d.rmdir()                                    # only if no failed test left files
    except OSError:
        pass


_counter = 0


@pytest.fixture
def workdir(request, run_dir):
    global _counter
    _counter += 1
    # short: the vici socket path inside must stay under 108 bytes
    # and strongswan.conf paths must not contain glob characters ([, *, ?)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:28]
    d = run_dir / f"{_counter:02d}-{safe}"
    d.mkdir()
    yield d
    if _failed(request.node):
        print(f"\ninterop: files of {request.node.name} kept in {d}", file=sys.stderr)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lab(run_dir):
    lab = netns.Lab()
    yield lab
    lab.close()


@pytest.fixture
def pair(lab):
    return netns.gateway_pair(lab)


@pytest.fixture
def nat(lab):
    return netns.nat_pair(lab)


@pytest.fixture
def charons(request, lab, workdir):
    """charons(ns, name, log_level=2, options=None, start=True) -> Charon.
    All are stopped (by PID) after the test, before the namespaces go."""
    made: list[strongswan.Charon] = []

    def make(ns: str, name: str, log_level: int = 2, options: dict | None = None,
             start: bool = True) -> strongswan.Charon:
        c = strongswan.Charon(ns, workdir, name, log_level=log_level, options=options)
        made.append(c)
        return c.start() if start else c

    yield make
    if _failed(request.node):
        for c in made:
            print("\n" + c.logs(150), file=sys.stderr)
    strongswan.stop_all(made)


@pytest.fixture(scope="session")
def pki(run_dir):
    # slow RSA keys are reused between runs (refreshed daily by _prune_old_runs)
    return pki_mod.Pki(run_dir / "pki", key_cache=WORK_ROOT / "keycache")


@pytest.fixture
def ravelin(request, lab, workdir):
    """ravelin(ns, conf, name="iked") -> started RavelinIked; stopped after."""
    made: list[ravelin_mod.RavelinIked] = []

    def make(ns: str, conf, name: str = "iked") -> ravelin_mod.RavelinIked:
        r = ravelin_mod.RavelinIked(ns, conf, workdir, name)
        made.append(r)
        return r.start()

    yield make
    if _failed(request.node):
        for r in made:
            print("\n" + r.logs(150), file=sys.stderr)
    for r in made:
        r.stop()


@pytest.fixture
def dp_pair(lab):
    return netns.dataplane_pair(lab)


@pytest.fixture
def gateway(request, lab, workdir):
    """gateway(topo, conf, **kw) -> started RavelinGateway (data plane +
    attached ravelin-iked); stopped after the test, before the namespaces go."""
    made: list[gateway_mod.RavelinGateway] = []

    def make(topo, conf, **kw) -> gateway_mod.RavelinGateway:
        g = gateway_mod.RavelinGateway(topo, conf=conf, workdir=workdir, **kw)
        made.append(g)
        return g.start()

    yield make
    if _failed(request.node):
        for g in made:
            print("\n" + g.logs(), file=sys.stderr)
    errors = []
    for g in made:
        try:
            g.stop()
        except HarnessError as e:
            errors.append(str(e))
    if errors and not _failed(request.node):
        raise HarnessError("\n".join(errors))


def pytest_report_header(config):
    return [f"interop: work files under {WORK_ROOT}, ravelin build dir "
            f"{ravelin_mod.build_dir()} (RAVELIN_BUILD)"]
