"""The whole gateway scraped by a real Prometheus (issue 6): ravelin-iked
attached to ravelin-dataplane serves both processes' metrics; while a
counted UDP flow runs through the tunnel and the Child SA is rekeyed from
both sides, the per-tunnel rates Prometheus computes match the traffic
sent, and no counter resets across the rekeys."""
from __future__ import annotations

import time

from . import netns
from .flow import Flow, assert_lossless
from .prometheus import PrometheusServer
from .test_gateway import bring_up, pings_both_ways

METRICS = {"enabled": "yes", "listen": "127.0.0.1", "port": 9814}
TUNNEL = 'connection="gw",child="net"'


def test_prometheus_rates_match_the_traffic_and_survive_rekeys(dp_pair, charons, gateway, workdir):
    gw, sw, child = bring_up(dp_pair, charons, gateway, iked={"metrics": METRICS})
    prom = PrometheusServer(dp_pair.rav, workdir, targets=["127.0.0.1:9814"]).start()
    try:
        assert prom.wait_value('up{job="ravelin"}', 1) == 1, prom.logs()
        assert prom.wait_value("ravelin_dataplane_up", 1) == 1, gw.logs()
        pings_both_ways(dp_pair, 1)
        rate = 200
        with Flow(dp_pair.ha, dp_pair.hb, dp_pair.hb_addr, rate=rate, seconds=40) as fwd:
            time.sleep(12)
            # Prometheus's own rate over the last 10 s: the flow's, within 15 %.
            out = prom.value(f'rate(ravelin_tunnel_packets_total{{{TUNNEL},direction="out"}}[10s])')
            assert out is not None and abs(out - rate) < 0.15 * rate, out
            spi = child["spi_in"]
            for side in ("rav", "sw", "rav"):
                if side == "rav":
                    gw.iked.ctl("rekey", "--ike", "gw", "--child", "net")
                else:
                    sw.rekey(child="net")
                spi = gw.wait_child(exclude_spis=(spi,), timeout=20)["spi_in"]
                time.sleep(3)
            time.sleep(8)
            out = prom.value(f'rate(ravelin_tunnel_packets_total{{{TUNNEL},direction="out"}}[10s])')
            assert out is not None and abs(out - rate) < 0.15 * rate, f"after the rekeys: {out}"
            r = fwd.wait()
        assert_lossless(r, "ha -> hb while scraped")
        time.sleep(3)                                   # two more scrapes
        # Across three rekeys (three SAs each way came and went) no tunnel
        # series ever went down, and the total counts every packet sent.
        for d in ("in", "out"):
            resets = prom.value(f'resets(ravelin_tunnel_packets_total{{{TUNNEL},direction="{d}"}}[5m])')
            assert resets == 0, (d, resets)
        total = prom.value(f'ravelin_tunnel_packets_total{{{TUNNEL},direction="out"}}')
        assert total is not None and total >= r["sent"], (total, r["sent"])
        assert prom.value('ravelin_child_sa_rekeys_total') >= 3
        assert prom.value(f'ravelin_tunnel_up{{{TUNNEL}}}') == 1
        # The SA command and install latency histograms are fed by the gateway.
        assert prom.value("ravelin_sa_command_latency_seconds_count") > 0
        assert netns.wait_until(lambda: (prom.value("ravelin_sa_install_latency_seconds_count") or 0) >= 3, 10)
    finally:
        prom.stop()
