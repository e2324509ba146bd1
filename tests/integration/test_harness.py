"""Self-tests of the integration harness; they need no Ravelin binary.

- namespaces and veths come up as the gateway tests expect, and go away;
- scapy ESP between two namespaces (what test_scapy_esp.py relies on:
  EspSa, RawPort, ESN and UDP-encap handling) round-trips for every
  algorithm, family, encapsulation and ESN setting;
- the stats JSON parser accepts the documented shape and rejects others;
- generated configs are valid TOML with the documented keys.
"""
import json
import tomllib

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

import scenario
import topo
from esp import ALGOS, EspSa, SaParams


@pytest.fixture(scope="module")
def pair():
    """Two namespaces joined by a veth, set up like a gateway and a peer."""
    topo.require_root()
    t = topo.Topology("h")
    try:
        a, b = t.ns("ha"), t.ns("hb")
        ia, ib = t.ifname("hva"), t.ifname("hvb")
        t.veth(a, ia, b, ib)
        t.gateway_port(a, ia)
        t.host_port(b, ib, ["198.18.0.2/24", "2001:db8::2/64"])
        t.quiet_host(b, drop_esp=True)
        yield t, (a, ia), (b, ib)
    finally:
        t.close()
        for ns in [n for n in topo.run(["ip", "netns", "list"]).stdout.split() if t.suffix in n]:
            pytest.fail(f"namespace {ns} left behind")


def test_gateway_port_is_silent(pair):
    t, (a, ia), _ = pair
    info = json.loads(topo.run(["ip", "-j", "addr", "show", "dev", ia], ns=a).stdout)[0]
    assert info["addr_info"] == [], "gateway veth must have no kernel address"
    assert "UP" in info["flags"]
    v6 = topo.run(["sysctl", "-n", f"net.ipv6.conf.{ia}.disable_ipv6"], ns=a).stdout.strip()
    assert v6 == "1"
    k = topo.run(["ethtool", "-k", ia], ns=a).stdout
    for feat in ("tx-checksumming", "rx-checksumming", "tcp-segmentation-offload",
                 "generic-segmentation-offload", "generic-receive-offload"):
        assert f"{feat}: off" in k, f"{feat} still on\n{k}"


def test_in_netns_sockets_stay_in_their_namespace(pair):
    t, (a, ia), (b, ib) = pair
    pa, pb = topo.RawPort(a, ia), topo.RawPort(b, ib)
    try:
        mac_a, mac_b = topo.if_mac(a, ia), topo.if_mac(b, ib)
        probe = Ether(src=mac_a, dst=mac_b, type=0x88b5) / Raw(b"ravelin harness probe")
        pb.drain()
        pa.send(bytes(probe))
        got = pb.collect(lambda f: f[12:14] == b"\x88\xb5", 1, timeout=3)
        assert got and got[0][:len(bytes(probe))] == bytes(probe)
    finally:
        pa.close()
        pb.close()


CASES = [(a, fam, encap, esn) for a in ALGOS for fam in (4, 6) for encap in (False, True)
         for esn in (False, True)]


@pytest.mark.parametrize("algo,family,encap,esn", CASES,
                         ids=[f"{a.name}-v{f}-{'udp' if e else 'esp'}-{'esn' if n else 'sn'}"
                              for a, f, e, n in CASES])
def test_scapy_esp_between_namespaces(pair, algo, family, encap, esn):
    t, (a, ia), (b, ib) = pair
    src, dst = ("198.18.0.1", "198.18.0.2") if family == 4 else ("2001:db8::1", "2001:db8::2")
    ip = IP if family == 4 else IPv6
    params = SaParams(0x4000 + algo.key_len, algo, src, dst, encap, esn)
    tx, rx = EspSa(params), EspSa(params)   # two ends sharing keys
    pa, pb = topo.RawPort(a, ia), topo.RawPort(b, ib)
    try:
        mac_a, mac_b = topo.if_mac(a, ia), topo.if_mac(b, ib)
        inners = [ip(src="198.18.1.2" if family == 4 else "2001:db8:1::2",
                     dst="198.18.2.9" if family == 4 else "2001:db8:2::9") /
                  UDP(sport=40000, dport=9000) / Raw(bytes([n]) * (n * 37 % 300)) for n in range(8)]
        pb.drain()
        for inner in inners:
            pa.send(bytes(Ether(src=mac_a, dst=mac_b) / tx.encrypt(inner)))
        frames = pb.collect(lambda f: ESP in Ether(f), len(inners), timeout=3)
        assert len(frames) == len(inners)
        for n, (frame, inner) in enumerate(zip(frames, inners)):
            outer = Ether(frame).payload
            assert outer[ESP].seq == n + 1
            assert (UDP in outer and outer[UDP].dport == 4500) == encap
            if encap and family == 6:
                assert outer[UDP].chksum != 0
            assert bytes(rx.decrypt(outer)) == bytes(inner)
        # A flipped ICV byte must not decrypt.
        bad = tx.encrypt(inners[0])
        bad[ESP].data = bad[ESP].data[:-1] + bytes([bad[ESP].data[-1] ^ 1])
        with pytest.raises(Exception):
            rx.decrypt(bad.__class__(bytes(bad)))
    finally:
        pa.close()
        pb.close()


def test_parse_stats_accepts_documented_shape():
    fake = {
        "drops": {"no_sa": 1, "replay": 0, "auth_failed": 2, "runt": 0},
        "stats": {"rx_packets": 10, "tx_packets": 7, "encrypted": 3, "decrypted": 4,
                  "bypassed": 0, "punted_ike": 0},
        "workers": [{"worker": 0, "drops": {"no_sa": 1}, "stats": {"rx_packets": 10}}],
        "sas": [{"spi": 4097, "direction": "in", "packets": 4, "bytes": 400, "worker": 0},
                {"spi": 4098, "direction": "out", "packets": 3, "bytes": 300, "worker": 0}],
    }
    before = topo.parse_stats(json.dumps(fake))
    fake["drops"]["replay"] = 3
    fake["stats"]["decrypted"] = 9
    after = topo.parse_stats(json.dumps(fake))
    assert after["sa"][(4097, "in")]["packets"] == 4
    assert topo.drops_delta(before, after) == {"replay": 3}
    assert topo.stats_delta(before, after, "decrypted") == 5


@pytest.mark.parametrize("bad", ["not json", "{}", '{"drops": {}, "stats": {}, "workers": []}',
                                 '{"drops": {"x": -1}, "stats": {}, "workers": [], "sas": []}',
                                 '{"drops": {}, "stats": {}, "workers": [], "sas": [{"spi": 1}]}'])
def test_parse_stats_rejects_bad_shapes(bad):
    with pytest.raises(topo.StatsError):
        topo.parse_stats(bad)


@pytest.mark.parametrize("inst", scenario.instances(), ids=lambda i: i.id)
def test_generated_config_is_valid_toml(inst):
    d = tomllib.loads(inst.config({"protected": "vpa", "unprotected": "vpb"}, "rvtest"))
    assert d["dataplane"]["lcores"] == "0,1"
    assert {p["role"] for p in d["port"]} == {"protected", "unprotected"}
    spis = [s["spi"] for s in d["sa"]]
    assert len(spis) == len(set(spis)) == 2 * len(inst.tunnels)
    assert {p["sa"] for p in d["policy"]} == set(spis)
    for s in d["sa"]:
        assert s.get("key", "").startswith("0x") or s["encryption"] == "null"
        assert ("integrity" in s) == (s["encryption"] in ("aes128", "aes256", "3des", "null"))
