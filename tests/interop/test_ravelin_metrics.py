"""ravelin-iked's metrics endpoint scraped by a real Prometheus server
(Debian's prometheus 2.42, tests/interop/prometheus.py) while a tunnel with
strongSwan 5.9.8 comes up and is rekeyed from both sides: the IKE SA and
tunnel gauges, the rekey counters and the message counters per exchange,
direction and result, read back through Prometheus's HTTP API, are what
happened; no counter ever reset. And a wrong PSK shows up as a Phase 1
(ike_auth) failure with its notify.

Not here (needs the integrated gateway, ravelin-iked attached to
ravelin-dataplane): traffic rates per tunnel matching the traffic sent, and
per-tunnel counters across a rekey under load. Standalone ravelin-iked has
no data plane, so ravelin_dataplane_up is 0 and the data-plane families are
absent, which is checked.
"""
from __future__ import annotations

import copy

import pytest

from . import netns, peers
from .prometheus import PrometheusServer
from .ravelin import iked_conf
from .test_ravelin_psk import check_same_sas, rav_sas, start_pair

METRICS = {"enabled": "yes", "listen": "127.0.0.1", "port": 9814, "dataplane": "rvix-no-dataplane"}


@pytest.fixture
def prometheus(request, workdir):
    made: list[PrometheusServer] = []

    def make(ns: str) -> PrometheusServer:
        p = PrometheusServer(ns, workdir, targets=["127.0.0.1:9814"])
        made.append(p)
        return p.start()

    yield make
    for p in made:
        p.stop()


def msgs(exchange: str, direction: str, result: str) -> str:
    return (f'ravelin_ike_messages_total{{exchange="{exchange}",direction="{direction}",'
            f'result="{result}"}}')


def test_prometheus_sees_the_tunnel_its_rekeys_and_messages(pair, charons, ravelin, prometheus):
    rav, sw = start_pair(pair, charons, ravelin, iked={"metrics": METRICS})
    prom = prometheus(pair.rav)
    assert prom.wait_value('up{job="ravelin"}', 1) == 1, prom.logs()
    assert prom.value('ravelin_build_info') == 1
    assert prom.value('ravelin_ike_sas{state="ESTABLISHED"}') == 0
    assert prom.value('ravelin_tunnel_up{connection="gw",child="net"}') == 0
    assert prom.value('ravelin_dataplane_up') == 0
    assert prom.query('ravelin_dataplane_drops_total') == []

    rav.ctl("initiate", "--ike", "gw", "--child", "net")
    sw.wait_child("gw", "net")
    check_same_sas(rav, sw)
    assert prom.wait_value('ravelin_ike_sas{state="ESTABLISHED"}', 1) == 1
    assert prom.wait_value('ravelin_tunnel_up{connection="gw",child="net"}', 1) == 1
    assert prom.value('ravelin_child_sas{state="INSTALLED"}') == 1
    assert prom.value('ravelin_ike_sa_established_total') == 1

    # Rekeys: the Child SA from our side, then from strongSwan's, then the IKE SA from ours.
    seen = {rav.wait_sa("in", "gw", "net").spi}
    rav.ctl("rekey", "--ike", "gw", "--child", "net")
    seen.add(rav.wait_sa("in", "gw", "net", exclude_spis=seen).spi)
    assert netns.wait_until(lambda: len(rav_sas(rav)[0]["children"]) == 1, 10), rav_sas(rav)
    sw.rekey(child="net")
    rav.wait_sa("in", "gw", "net", exclude_spis=seen)
    assert netns.wait_until(lambda: len(rav_sas(rav)[0]["children"]) == 1, 10), rav_sas(rav)
    first = check_same_sas(rav, sw)[0]
    rav.ctl("rekey", "--ike", "gw")
    assert netns.wait_until(lambda: (s := sw.ike_sa("gw")) and
                            int(s["initiator-spi"], 16) != int(first["spi_i"], 16), 10)
    assert netns.wait_until(lambda: len(rav_sas(rav)) == 1 and len(sw.list_sas()) == 1, 10)
    check_same_sas(rav, sw)

    assert prom.wait_value('ravelin_child_sa_rekeys_total', 2) == 2
    assert prom.wait_value('ravelin_ike_sa_rekeys_total', 1) == 1
    assert prom.value('ravelin_child_sa_installed_total') == 3
    assert prom.wait_value('ravelin_ike_sas{state="ESTABLISHED"}', 1) == 1
    assert prom.value('ravelin_tunnel_up{connection="gw",child="net"}') == 1

    # Every datagram, by exchange: we initiated IKE_SA_INIT, IKE_AUTH, two
    # CREATE_CHILD_SA (Child and IKE rekey) and two deletes (old Child SA,
    # old IKE SA); strongSwan one CREATE_CHILD_SA and its old Child SA's delete.
    expected = {
        ("IKE_SA_INIT", "out", "sent"): 1, ("IKE_SA_INIT", "in", "processed"): 1,
        ("IKE_AUTH", "out", "sent"): 1, ("IKE_AUTH", "in", "processed"): 1,
        ("CREATE_CHILD_SA", "out", "sent"): 3, ("CREATE_CHILD_SA", "in", "processed"): 3,
        ("INFORMATIONAL", "out", "sent"): 3, ("INFORMATIONAL", "in", "processed"): 3,
    }
    for (x, d, r), n in expected.items():
        assert prom.wait_value(msgs(x, d, r), n) == n, (x, d, r, prom.query("ravelin_ike_messages_total > 0"))
    assert prom.value('sum(ravelin_ike_messages_total{result=~"invalid|retransmit"})') == 0
    assert prom.value('sum(ravelin_ike_negotiation_failures_total)') == 0
    # Over the whole run no counter went backwards (Prometheus counts resets).
    for counter in ("ravelin_ike_messages_total", "ravelin_child_sa_rekeys_total", "ravelin_ike_sa_rekeys_total",
                    "ravelin_child_sa_installed_total", "ravelin_ike_sa_established_total"):
        assert prom.value(f"sum(resets({counter}[10m]))") == 0, counter
    # ... and Prometheus saw them move: the rekeys happened between scrapes.
    assert prom.value("increase(ravelin_child_sa_rekeys_total[10m])") > 0
    # One scrape target, one endpoint: every series carries one instance.
    assert {r["metric"]["instance"] for r in prom.query('ravelin_build_info')} == {"127.0.0.1:9814"}


def test_prometheus_sees_a_phase_1_authentication_failure(pair, charons, ravelin, prometheus):
    rav_tree, sw_tree = peers.site_configs(pair)
    sw_tree = copy.deepcopy(sw_tree)
    sw_tree["secrets"]["ike-gw"]["secret"] = "not-the-same-secret-at-all"
    sw = charons(pair.sw, "sw")
    sw.write_config(sw_tree)
    sw.load_all()
    rav = ravelin(pair.rav, iked_conf(rav_tree, metrics=METRICS))
    prom = prometheus(pair.rav)
    assert prom.wait_value('up{job="ravelin"}', 1) == 1, prom.logs()
    rav.ctl("initiate", "--ike", "gw", "--child", "net", check=False)
    failed = 'ravelin_ike_negotiation_failures_total{phase="ike_auth",reason="AUTHENTICATION_FAILED"}'
    assert prom.wait_value(failed, 1) == 1, prom.query("ravelin_ike_negotiation_failures_total")
    assert prom.wait_value('ravelin_ike_auth_failures_total', 1) == 1
    assert prom.value('sum(ravelin_ike_negotiation_failures_total{phase!="ike_auth"})') == 0
    assert prom.value('ravelin_ike_sas{state="ESTABLISHED"}') == 0
    assert not rav_sas(rav)
