"""ravelin-pktgen against ravelin-dataplane over net_memif: both sides count
the same packets.

    pktgen port 0 ==memif== inside  [ravelin-dataplane]  outside ==memif== pktgen port 1

Stream 0: clear IMIX from 16 hosts to 16 remote hosts on port 0; the gateway
encrypts with SA 0x1001 and sends ESP to port 1, where pktgen decrypts it
with the same SA read from the gateway's TOML.
Stream 1: ESP sealed by pktgen with SA 0x2002 (ESN, sequence numbers
crossing 2^32) on port 1; the gateway decrypts, checks replay and policy,
and routes the clear packets to port 0.

Run as root: /usr/bin/python3 -m pytest tests/integration/test_pktgen.py
(RAVELIN_BUILD selects the build directory; hugepages must be free).
"""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import topo
from pktgen_harness import (GATEWAY_MAC_INSIDE, GATEWAY_MAC_OUTSIDE, Pktgen, gateway_config, pktgen_binary,
                            stream_line)

OUT_STREAM = stream_line(0, "198.18.1.2+16", "198.18.2.2+16", GATEWAY_MAC_INSIDE, "size=imix sport=1000+4")
IN_STREAM = stream_line(1, "198.18.2.2+16", "198.18.1.2+16", GATEWAY_MAC_OUTSIDE, "size=imix esp=0x2002")


@pytest.fixture
def setup():
    topo.require_root()
    topo.require_hugepages(256)
    topo.binaries()
    pktgen_binary()
    tag = f"pg{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix="ravelin-pktgen-"))
    with topo.Topology("pg") as t:
        ns = t.ns("pktgen")
        cfg = gateway_config(workdir, f"rvgw-{tag}")
        gw = topo.Gateway(ns, cfg, f"rvgw-{tag}", name="gateway")
        pg = Pktgen(ns, workdir, f"rvpg-{tag}", cfg)
        try:
            gw.start()
            yield gw, pg
        finally:
            # The gateway first: a memif client leaving under a polling
            # server can crash the server (DPDK 22.11).
            rc = gw.stop()
            pg_rc = pg.finish()
            shutil.rmtree(workdir, ignore_errors=True)
        assert rc == 0, f"ravelin-dataplane exit code {rc}\n{gw.output()}"
        assert pg_rc == 0, f"ravelin-pktgen exit code {pg_rc}"


def sa_packets(stats: dict, spi: int, direction: str) -> int:
    return stats["sa"][(spi, direction)]["packets"]


def test_counts_agree_both_directions(setup):
    gw, pg = setup
    n = 10000
    # Warm-up (2.4 s at 1 kpps): the gateway resolves the peer and the 16
    # inside hosts (pktgen answers its ARP requests); those first packets
    # may be dropped as neighbor_unresolved and are not compared. It lasts
    # over a second because the gateway asks again at most once a second
    # and its first request (at start) went out before pktgen connected.
    # ESP sequence numbers start 4096 below 2^32 (not within a window of the
    # gateway's initial top 0, which would read as the epoch before) and the
    # run crosses 2^32: the gateway must infer ESN's high half.
    pg.start(["-s", OUT_STREAM, "-s", IN_STREAM, "--warmup", "2.4", "--warmup-rate", "1kpps",
              "-r", "40kpps", "-n", str(n), "--drain", "1", "--esp-seq-start", "0xfffff000"])
    pg.until_run()
    before = gw.settled_stats()
    neighbors = gw.stats_text(json_output=False)
    assert "198.18.0.2" in neighbors and "incomplete" not in neighbors, neighbors
    res = pg.run_and_collect()
    after = gw.settled_stats()
    assert sum(p["rx_arp_replied"] for p in res["warmup"]["ports"]) >= 17, res["warmup"]["ports"]

    run = res["run"]
    s_out, s_in = run["streams"]
    port_in, port_out = res["ports"]
    # pktgen's own view: every packet came back once, in order.
    for s in (s_out, s_in):
        assert s["tx_packets"] == n, s
        assert s["rx_distinct"] == n and s["rx_packets"] == n, s
        assert s["lost"] == 0 and s["duplicates"] == 0 and s["reordered"] == 0, s
        assert s["latency_ns"]["count"] == n and 0 < s["latency_ns"]["p50"] < 1e9, s["latency_ns"]
    assert port_out["rx_esp_ok"] == n and port_out["rx_esp_failed"] == 0 and port_out["rx_esp_no_sa"] == 0
    assert port_in["rx_stamped"] == n and port_in["rx_unstamped"] == 0
    assert res["setup"]["streams"][1]["esp_esn"] is True

    # The gateway's view of the same run.
    assert topo.drops_delta(before, after) == {}, topo.drops_delta(before, after)
    assert topo.stats_delta(before, after, "rx_packets") == port_in["tx_packets"] + port_out["tx_packets"]
    assert topo.stats_delta(before, after, "tx_packets") == port_in["rx_packets"] + port_out["rx_packets"]
    assert topo.stats_delta(before, after, "encrypted") == s_out["tx_packets"]
    assert topo.stats_delta(before, after, "decrypted") == s_in["tx_packets"]
    assert sa_packets(after, 0x1001, "out") - sa_packets(before, 0x1001, "out") == n
    assert sa_packets(after, 0x2002, "in") - sa_packets(before, 0x2002, "in") == n
    # Bytes: what pktgen put on each link is what the gateway took in.
    assert port_in["tx_bytes"] == s_out["tx_bytes"] and port_out["tx_bytes"] == s_in["tx_bytes"]
    # ESP frames are bigger than their clear IMIX frames (outer IPv4 20 + ESP 8 + IV 8 + >= 2 trailer + ICV 16).
    assert s_in["tx_bytes"] >= s_in["tx_clear_bytes"] + 54 * n


def test_replayed_sequence_numbers_are_dropped_and_counted(setup):
    """The run starts its ESP sequence numbers over (--esp-seq-restart):
    after the warm-up's ~1000 packets, every one of the run's 300 is a
    replay inside the 1024 window. The gateway must drop each as 'replay',
    and pktgen must see none come back."""
    gw, pg = setup
    pg.start(["-s", IN_STREAM, "--warmup", "1", "--warmup-rate", "1kpps", "--esp-seq-restart",
              "-r", "1kpps", "-n", "300", "--drain", "1"])
    pg.until_run()
    before = gw.settled_stats()
    res = pg.run_and_collect()
    after = gw.settled_stats()
    assert 800 <= res["warmup"]["tx_packets"] <= 1020, res["warmup"]["tx_packets"]
    s = res["run"]["streams"][0]
    assert s["tx_packets"] == 300 and s["rx_packets"] == 0 and s["lost"] == 300, s
    assert topo.drops_delta(before, after) == {"replay": 300}


def test_esp_replay_sends_the_same_sealed_frames_again(setup):
    """--esp-replay 64: the run seals 72 frames (64 rounded up to whole IMIX
    periods of 12) once and sends them again and again. The gateway's SA has
    a replay window, so it accepts each of the 72 once (the frames are
    valid ESP) and drops every later copy as a replay (they are the same
    frames, same sequence numbers)."""
    gw, pg = setup
    pg.start(["-s", IN_STREAM, "--esp-replay", "64", "--warmup", "1", "--warmup-rate", "1kpps",
              "-r", "1kpps", "-n", "300", "--drain", "1"])
    pg.until_run()
    before = gw.settled_stats()
    res = pg.run_and_collect()
    after = gw.settled_stats()
    s = res["run"]["streams"][0]
    assert s["tx_packets"] == 300, s
    assert topo.stats_delta(before, after, "decrypted") == 72, topo.drops_delta(before, after)
    assert topo.drops_delta(before, after) == {"replay": 300 - 72}
    assert sa_packets(after, 0x2002, "in") - sa_packets(before, 0x2002, "in") == 72
