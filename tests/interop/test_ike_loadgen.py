"""ravelin-ike-loadgen (pktgen/ike_loadgen.cc) against real responders, briefly:
strongSwan 5.9.8 and ravelin-iked, set up as scripts/bench_ike.py sets them up
for the benchmark (docs/performance.md).

Needs $RAVELIN_BUILD/pktgen/ravelin-ike-loadgen and, for the Ravelin tests,
$RAVELIN_BUILD/controlplane/iked/ravelin-iked: a missing binary fails the test.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "bench_ike", Path(__file__).resolve().parents[2] / "scripts" / "bench_ike.py")
bench = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("bench_ike", bench)
_SPEC.loader.exec_module(bench)

KINDS = ["strongswan", "ravelin"]


def _started(kind, lab, workdir, psk=bench.PSK):
    bl = bench.BenchLab(lab)
    r = bench.make_responder(kind, bl.resp, workdir, psk)
    r.start()
    return bl, r


def _check_clean(doc: dict, n: int):
    assert doc["started"] == n, doc
    assert doc["completed"] == n, doc
    assert doc["failed"] == 0 and doc["failures"] == {}, doc
    assert doc["unfinished"] == 0, doc


@pytest.mark.parametrize("kind", KINDS)
def test_setups_complete_and_are_deleted(kind, lab, workdir):
    """200 setups with 8 sockets from 4 addresses, each a new identity, the
    responder's AUTH verified; each IKE SA deleted again afterwards."""
    bl, r = _started(kind, lab, workdir)
    try:
        doc = bench.run_loadgen(bl.lg, r.pid, label=f"smoke {kind}", window=32, count=200,
                                wall_timeout=120)
        left = r.ike_sa_count()
    finally:
        r.stop()
    _check_clean(doc, 200)
    assert doc["deleted"] == 200 and doc["delete_timeouts"] == 0, doc
    assert doc["setups_per_s"] > 0 and doc["responder_proc"]["sampled"], doc
    assert left == 0, f"{kind} still holds {left} IKE SAs after the deletes"


@pytest.mark.parametrize("kind", KINDS)
def test_kept_sas_stay_on_the_responder(kind, lab, workdir):
    """--keep: the responder reports exactly the established IKE SAs."""
    bl, r = _started(kind, lab, workdir)
    try:
        doc = bench.run_loadgen(bl.lg, r.pid, label=f"keep {kind}", window=16, count=40,
                                keep=True, wall_timeout=120)
        held = r.ike_sa_count()
    finally:
        r.stop()
    _check_clean(doc, 40)
    assert doc["deleted"] == 0, doc
    assert held == 40, f"{kind} reports {held} IKE SAs, expected 40"


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_psk_counts_failures_not_setups(kind, lab, workdir):
    """A responder with another PSK: nothing completes, every setup is a
    failure with AUTHENTICATION_FAILED (24) and the loadgen exits non-zero."""
    bl, r = _started(kind, lab, workdir, psk="not-the-loadgen-psk")
    try:
        doc = bench.run_loadgen(bl.lg, r.pid, label=f"bad psk {kind}", window=8, count=10,
                                timeout_ms=500, tries=2, wall_timeout=60)
    finally:
        r.stop()
    assert doc["completed"] == 0 and doc["exit_code"] == 1, doc
    assert doc["failed"] == 10, doc
    assert doc["failures"] == {"auth_notify": 10}, doc
    assert doc["failure_notifies"] == {"24": 10}, doc
