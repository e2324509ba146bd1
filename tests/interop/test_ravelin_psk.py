"""ravelin-iked (standalone, SA sink) against strongSwan 5.9.8 with PSK:
both roles, the three proposal sets of issue 3, PFS on and off, rekeys
from either side, delete from either side, DPD, NAT. The Child SA keys are
proved by scapy ESP: a packet encrypted with Ravelin's outbound SA reaches
the host behind strongSwan, and one strongSwan sends decrypts with
Ravelin's inbound SA."""
from __future__ import annotations

import copy

import pytest
from scapy.layers.inet import ICMP, IP, UDP

from . import esp, netns, peers
from .peers import ChildSpec
from .ravelin import iked_conf


def start_pair(pair, charons, ravelin, *, proposals="aes256gcm16-prfsha256-x25519",
               esp_proposals="aes256gcm16-x25519", rav_extra=None, sw_extra=None,
               rav_child_extra=None, sw_child_extra=None, iked=None):
    rav_tree, sw_tree = peers.site_configs(
        pair, proposals=proposals,
        children=[ChildSpec(esp_proposals=esp_proposals, rav_extra=rav_child_extra,
                            sw_extra=sw_child_extra)],
        rav_extra=rav_extra, sw_extra=sw_extra)
    sw = charons(pair.sw, "sw")
    sw.write_config(sw_tree)
    sw.load_all()
    rav = ravelin(pair.rav, iked_conf(rav_tree, **(iked or {})))
    return rav, sw


def rav_sas(rav):
    """The IKE SAs of ravelinctl list-sas --json."""
    return rav.list_sas()["sas"]


def check_same_sas(rav, sw, conn="gw", child="net"):
    """ravelinctl list-sas and swanctl --list-sas agree on SPIs and algorithms."""
    ours = rav_sas(rav)
    ike = [s for s in ours if s["name"] == conn and s["state"] == "ESTABLISHED"]
    assert len(ike) == 1, ours
    theirs = sw.ike_sa(conn)
    assert theirs is not None
    assert int(theirs["initiator-spi"], 16) == int(ike[0]["spi_i"], 16)
    assert int(theirs["responder-spi"], 16) == int(ike[0]["spi_r"], 16)
    kids = [c for c in ike[0]["children"] if c["name"] == child and c["state"] == "INSTALLED"]
    assert len(kids) == 1, ike[0]["children"]
    c = sw.child_sa(conn, child)
    assert c is not None
    assert int(c["spi-in"], 16) == int(kids[0]["spi_out"], 16)
    assert int(c["spi-out"], 16) == int(kids[0]["spi_in"], 16)
    # The same algorithms on both sides, by swanctl's names.
    ours_ike, ours_child = ike[0]["suite"], kids[0]["suite"]
    assert (theirs["encr-alg"], theirs.get("encr-keysize", 0), theirs["prf-alg"], theirs["dh-group"]) == \
        (ours_ike["encr"], ours_ike["encr_key_bits"], ours_ike["prf"], ours_ike["dh"]), (theirs, ours_ike)
    assert theirs.get("integ-alg") == ours_ike["integ"], (theirs, ours_ike)
    assert (c["encr-alg"], c.get("encr-keysize", 0), c.get("integ-alg"), c.get("dh-group")) == \
        (ours_child["encr"], ours_child["encr_key_bits"], ours_child["integ"], ours_child["dh"]), \
        (c, ours_child)
    return ike[0], kids[0], theirs, c


def esp_both_ways(pair, rav, seq=1):
    """Scapy plays Ravelin's data plane with the keys the SA sink recorded."""
    out = rav.wait_sa("out", "gw", "net")
    inn = rav.wait_sa("in", "gw", "net")
    with netns.Capture(pair.hb, pair.hb_if, "in") as cap:
        esp.send_esp(pair.rav, out, esp.inner_icmp(pair.rav_inner, pair.hb_addr), seq=seq)
        got = cap.first(lambda p: ICMP in p and p[IP].src == pair.rav_inner, 5)
    assert got is not None, "ESP from Ravelin's outbound SA did not reach hb"
    # hb pings Ravelin's protected address: strongSwan encrypts to Ravelin.
    with netns.Capture(pair.rav, pair.rav_if, "in") as cap:
        netns.ping(pair.hb, pair.rav_inner, count=1, wait=1)
        pkt = cap.first(lambda p: esp.is_esp(p, inn.spi), 5)
    assert pkt is not None, "no ESP from strongSwan with Ravelin's inbound SPI"
    inner = esp.decrypt(inn, pkt)
    assert inner[IP].src == pair.hb_addr and inner[IP].dst == pair.rav_inner
    return out, inn


PROPOSALS = [
    ("aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519", "AES_GCM_16"),
    ("aes128-sha256-modp2048", "aes128-sha256-modp2048", "AES_CBC"),
    ("chacha20poly1305-prfsha256-ecp384", "chacha20poly1305-ecp384", "CHACHA20_POLY1305"),
]


@pytest.mark.parametrize("ike,espp,encr", PROPOSALS, ids=["gcm-x25519", "cbc-modp2048", "chacha-ecp384"])
def test_ravelin_initiates(pair, charons, ravelin, ike, espp, encr):
    rav, sw = start_pair(pair, charons, ravelin, proposals=ike, esp_proposals=espp)
    rav.ctl("initiate", "--ike", "gw", "--child", "net")
    sw.wait_child("gw", "net")
    ike_sa, kid, _, c = check_same_sas(rav, sw)
    assert ike_sa["initiator"] is True
    assert c["encr-alg"] == encr
    esp_both_ways(pair, rav)


@pytest.mark.parametrize("ike,espp,encr", PROPOSALS, ids=["gcm-x25519", "cbc-modp2048", "chacha-ecp384"])
def test_ravelin_responds(pair, charons, ravelin, ike, espp, encr):
    rav, sw = start_pair(pair, charons, ravelin, proposals=ike, esp_proposals=espp)
    sw.initiate("net", "gw")
    rav.wait_sa("in", "gw", "net")
    ike_sa, kid, _, c = check_same_sas(rav, sw)
    assert ike_sa["initiator"] is False
    esp_both_ways(pair, rav)


def test_esp_without_pfs(pair, charons, ravelin):
    rav, sw = start_pair(pair, charons, ravelin, esp_proposals="aes256gcm16")
    rav.ctl("initiate", "--ike", "gw", "--child", "net")
    sw.wait_child("gw", "net")
    check_same_sas(rav, sw)
    old = rav.wait_sa("in", "gw", "net")
    rav.ctl("rekey", "--ike", "gw", "--child", "net")
    new = rav.wait_sa("in", "gw", "net", exclude_spis={old.spi})
    assert new.spi != old.spi
    check_same_sas(rav, sw)
    esp_both_ways(pair, rav, seq=1)


def test_child_rekeys_from_both_sides(pair, charons, ravelin):
    rav, sw = start_pair(pair, charons, ravelin)
    rav.ctl("initiate", "--ike", "gw", "--child", "net")
    sw.wait_child("gw", "net")
    seen = {rav.wait_sa("in", "gw", "net").spi}
    for who in ("rav", "sw", "rav", "sw"):
        if who == "rav":
            rav.ctl("rekey", "--ike", "gw", "--child", "net")
        else:
            sw.rekey(child="net")
        new = rav.wait_sa("in", "gw", "net", exclude_spis=seen)
        seen.add(new.spi)
        assert netns.wait_until(lambda: len([c for c in sw.ike_sa("gw")["child-sas"]
                                             if c["state"] == "INSTALLED"]) == 1, 10), \
            sw.ike_sa("gw")
        assert netns.wait_until(lambda: len(rav_sas(rav)[0]["children"]) == 1, 10), rav_sas(rav)
        check_same_sas(rav, sw)
    esp_both_ways(pair, rav, seq=1)


def test_ike_rekeys_from_both_sides(pair, charons, ravelin):
    rav, sw = start_pair(pair, charons, ravelin)
    rav.ctl("initiate", "--ike", "gw", "--child", "net")
    sw.wait_child("gw", "net")
    first = check_same_sas(rav, sw)[0]
    rav.ctl("rekey", "--ike", "gw")
    assert netns.wait_until(lambda: (s := sw.ike_sa("gw")) and
                            int(s["initiator-spi"], 16) != int(first["spi_i"], 16), 10)
    assert netns.wait_until(lambda: len(rav_sas(rav)) == 1 and len(sw.list_sas()) == 1, 10), \
        (rav_sas(rav), sw.list_sas())
    second = check_same_sas(rav, sw)[0]
    sw.rekey(ike="gw")
    assert netns.wait_until(lambda: (s := sw.ike_sa("gw")) and
                            int(s["initiator-spi"], 16) != int(second["spi_i"], 16), 10)
    assert netns.wait_until(lambda: len(rav_sas(rav)) == 1 and len(sw.list_sas()) == 1, 10), \
        (rav_sas(rav), sw.list_sas())
    check_same_sas(rav, sw)
    # The Child SA survived both IKE rekeys and still carries traffic.
    esp_both_ways(pair, rav, seq=1)
    # ... and the rekeyed IKE SA can still rekey it.
    old = rav.wait_sa("in", "gw", "net")
    rav.ctl("rekey", "--ike", "gw", "--child", "net")
    rav.wait_sa("in", "gw", "net", exclude_spis={old.spi})


@pytest.mark.parametrize("who", ["rav", "sw"])
def test_delete_from_either_side(pair, charons, ravelin, who):
    rav, sw = start_pair(pair, charons, ravelin)
    rav.ctl("initiate", "--ike", "gw", "--child", "net")
    sw.wait_child("gw", "net")
    if who == "rav":
        rav.ctl("terminate", "--ike", "gw")
    else:
        sw.terminate(ike="gw")
    assert netns.wait_until(lambda: not sw.list_sas() and not rav_sas(rav), 10), \
        (sw.list_sas(), rav_sas(rav))
    removed = [r for r in rav.sa_records() if r.event == "remove"]
    assert {r.direction for r in removed} == {"in", "out"}


def test_dpd_detects_a_stopped_peer(pair, charons, ravelin):
    rav, sw = start_pair(pair, charons, ravelin, rav_extra={"dpd_delay": "1s"},
                         iked={"retransmit_timeout": "0.5s", "retransmit_tries": 2,
                               "retransmit_base": 1.5})
    rav.ctl("initiate", "--ike", "gw", "--child", "net")
    sw.wait_child("gw", "net")
    # The peer vanishes without a word (a stopped charon would send a delete).
    netns.run(["ip", "-n", pair.sw, "link", "set", pair.sw_if, "down"])
    assert netns.wait_until(lambda: not rav_sas(rav), 15), rav_sas(rav)
    removed = [r for r in rav.sa_records() if r.event == "remove"]
    assert {r.direction for r in removed} == {"in", "out"}
    diag = rav.ctl("diagnose", "gw").stdout
    assert "DPD" in diag or "dead" in diag, diag


def test_wrong_psk_is_authentication_failed(pair, charons, ravelin):
    rav_tree, sw_tree = peers.site_configs(pair)
    sw_tree = copy.deepcopy(sw_tree)     # the two trees share their secrets section
    sw_tree["secrets"]["ike-gw"]["secret"] = "not-the-same-secret-at-all"
    sw = charons(pair.sw, "sw")
    sw.write_config(sw_tree)
    sw.load_all()
    rav = ravelin(pair.rav, iked_conf(rav_tree))
    rav.ctl("initiate", "--ike", "gw", "--child", "net", check=False)
    assert netns.wait_until(lambda: "AUTHENTICATION_FAILED" in rav.ctl("diagnose", "gw").stdout, 10), \
        rav.ctl("diagnose", "gw").stdout
    assert not rav_sas(rav)
