"""Host A <-> Ravelin gw A <-> Ravelin gw B <-> host B, with the example
configs (config/examples/gateway-{a,b}.toml): ping, iperf3 TCP, and the two
gateways' counters agree.

Both gateways use lcores "0,1" on a 2-core machine: two busy-polling DPDK
processes share the cores, so rates are functional only, not performance.
"""
import pytest

import topo
from two_gateways import TwoGateways

results = {}


@pytest.fixture(scope="module")
def gws(tmp_path_factory):
    tg = TwoGateways(tmp_path_factory.mktemp("two-gw"))
    try:
        tg.up()
        results["warmup_pings"] = tg.warm_up()
        yield tg
    except topo.HarnessError:
        for s in (tg.a, tg.b):
            if s.gateway is not None:
                print(f"-- gateway {s.name} output:\n{s.gateway.output()}")
        raise
    finally:
        results["exit_codes"] = tg.down()


def test_ping_through_tunnel(gws):
    """20 echo requests, 20 replies; at this low rate every ESP packet one
    gateway sends, the other receives: the SA counters move by exactly 20."""
    before = gws.stats()
    sent, received, out = gws.ping(20)
    after = gws.stats()
    print(f"warm-up needed {results['warmup_pings']} ping(s); then:\n{out}")
    assert (sent, received) == (20, 20), out
    da, db = (gws.sa_deltas(b, a) for b, a in zip(before, after))
    moved = {"A": da, "B": db}
    assert all(n == 20 for d in (da, db) for n in d.values()), \
        f"SA packet deltas during ping (expected 20 each): {moved}"
    for b, a, name in zip(before, after, "AB"):
        assert not topo.drops_delta(b, a), f"gw {name} drops during ping: {topo.drops_delta(b, a)}"


def test_iperf3_tcp_through_tunnel(gws):
    r = gws.iperf3(5)
    assert "error" not in r, f"iperf3: {r.get('error')}"
    print(f"iperf3 TCP host A -> host B: {r['bytes']} bytes, "
          f"{r['bits_per_second'] / 1e6:.1f} Mbit/s, retransmits {r.get('retransmits')}")
    assert r["bytes"] > 0


def test_counters_agree(gws):
    sa, sb = gws.stats()
    problems, notes = gws.check_counters(sa, sb, gws.ring_losses(sa, sb))
    print("\n".join(notes))
    assert not problems, "\n".join(problems + ["--- gw A:", gws.a.gateway.stats_text(),
                                                "--- gw B:", gws.b.gateway.stats_text()])
    for s, name in ((sa, "A"), (sb, "B")):
        assert s["stats"].get("encrypted", 0) > 0 and s["stats"].get("decrypted", 0) > 0, \
            f"gw {name}: {s['stats']}"


def test_gateways_still_running(gws):
    for s in (gws.a, gws.b):
        assert s.gateway.alive(), f"gw {s.name} died:\n{s.gateway.output()}"


def test_clean_shutdown(gws):
    """Last test: SIGTERM both gateways, they must exit 0."""
    codes = {s.name: s.gateway.stop() for s in (gws.a, gws.b)}
    assert codes == {"a": 0, "b": 0}, \
        f"exit codes {codes}\n{gws.a.gateway.output()}\n{gws.b.gateway.output()}"
