"""Self-test of the interop harness with strongSwan on both sides: a second
charon in ns rav stands in for ravelin-iked. If these pass, a failure of a
later Ravelin test is Ravelin's, not the harness's."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from scapy.layers.inet import IP, UDP

from . import charon_keys, esp, netns, peers, ravelin, sa_records, strongswan as ss, vici
from .netns import HarnessError
from .peers import ChildSpec
from .sa_records import SaRecord, SaRecordError


def _record(**over) -> dict:
    d = dict(event="install", connection="gw", child="net", reqid=1, direction="out",
             spi="0x11223344", mode="tunnel", encr="AES_GCM_16", encr_key_bits=256,
             encr_key=os.urandom(36).hex(), integ=None, integ_key=None, esn=False,
             local="198.18.10.1", remote="198.18.10.2", udp_encap=True, local_port=4500,
             remote_port=4500, local_ts=["198.19.10.0/24"], remote_ts=["198.19.20.0/24"])
    d.update(over)
    return d


def _pair_of_records(encr: str, bits: int, integ: str | None) -> tuple[SaRecord, SaRecord]:
    """An out SA and the in SA the peer would use for the same traffic."""
    salt = sa_records.ENCR[encr][1]
    key = os.urandom(bits // 8 + salt).hex()
    ikey = os.urandom(sa_records.INTEG[integ]).hex() if integ else None
    out = SaRecord.from_dict(_record(encr=encr, encr_key_bits=bits, encr_key=key, integ=integ,
                                     integ_key=ikey))
    inn = SaRecord.from_dict(_record(encr=encr, encr_key_bits=bits, encr_key=key, integ=integ,
                                     integ_key=ikey, direction="in", local="198.18.10.2",
                                     remote="198.18.10.1"))
    return out, inn


ALGS = [("AES_GCM_16", 128, None), ("AES_GCM_16", 256, None),
        ("AES_CBC", 256, "HMAC_SHA2_256_128"), ("AES_CBC", 128, "HMAC_SHA2_512_256"),
        ("CHACHA20_POLY1305", 256, None)]


# --- offline: formats and codecs ---------------------------------------------------

def test_sa_record_parse_write_and_reject(tmp_path):
    rec = SaRecord.from_dict(_record())
    assert rec.spi == 0x11223344 and rec.spi_hex == "0x11223344" and len(rec.salt) == 4
    again = SaRecord.from_dict(json.loads(rec.to_json()))
    assert again == rec

    bad = [
        (_record(spi="11223344"), "spi"),
        (_record(spi="0x0"), "spi"),
        (_record(spi="0x1ffffffff"), "spi"),
        (_record(encr_key=os.urandom(32).hex()), "salt"),          # GCM key without salt
        (_record(integ="HMAC_SHA2_256_128", integ_key="00" * 32), "AEAD"),
        (_record(encr="AES_CBC", encr_key=os.urandom(32).hex()), "integ"),
        (_record(encr="AES_CBC", encr_key=os.urandom(32).hex(), integ="HMAC_SHA2_256_128",
                 integ_key="00" * 16), "integ_key"),
        (_record(encr="DES"), "encr"),
        (_record(direction="both"), "direction"),
        (_record(local="gw-a"), "local"),
        (_record(remote_port=0), "remote_port"),
        (_record(reqid=True), "reqid"),
        (_record(esn="no"), "esn"),
        (_record(extra=1), "unknown"),
        ({k: v for k, v in _record().items() if k != "mode"}, "missing"),
    ]
    for d, why in bad:
        with pytest.raises(SaRecordError, match=why):
            SaRecord.from_dict(d)

    path = tmp_path / "sink.jsonl"
    r1 = SaRecord.from_dict(_record(spi="0x00000101"))
    r2 = SaRecord.from_dict(_record(spi="0x00000102"))
    r1_gone = SaRecord.from_dict(dict(json.loads(r1.to_json()), event="remove"))
    sa_records.write_sa_file(path, [r1, r2, r1_gone])
    with open(path, "a") as f:
        f.write(r1.to_json()[:40])                 # a line still being written
    recs = sa_records.read_sa_file(path)
    assert [r.spi for r in recs] == [0x101, 0x102, 0x101]
    assert [r.spi for r in sa_records.installed(recs)] == [0x102]
    assert sa_records.find(recs, "out", "gw", "net").spi == 0x102
    assert sa_records.find(recs, "in") is None

    with pytest.raises(SaRecordError, match=r"sink:2: not JSON"):
        sa_records.parse_sa_lines(r1.to_json() + "\n{oops\n", "sink")
    with pytest.raises(SaRecordError, match=r"sink:1: encr_key_bits"):
        sa_records.parse_sa_lines(json.dumps(_record(encr_key_bits=255)), "sink")


@pytest.mark.parametrize("encr,bits,integ", ALGS)
def test_esp_roundtrip_offline(encr, bits, integ):
    out, inn = _pair_of_records(encr, bits, integ)
    inner = esp.inner_udp("198.19.10.1", "198.19.20.10", 5000, b"offline-check")
    pkt = IP(bytes(esp.encrypt(out, inner, seq=7)))
    assert pkt[UDP].sport == 4500 and pkt[UDP].dport == 4500 and pkt.flags.DF
    assert esp.spi_seq(pkt) == (0x11223344, 7)
    got = esp.decrypt(inn, pkt)
    assert bytes(got) == bytes(IP(bytes(inner)))

    data = bytearray(bytes(pkt))
    data[-3] ^= 0x01                               # inside the ICV (or the AEAD tag)
    with pytest.raises(esp.EspError, match="ICV"):
        esp.decrypt(inn, IP(bytes(data)))
    other = SaRecord.from_dict(dict(json.loads(inn.to_json()), spi="0x99999999"))
    with pytest.raises(esp.EspError, match="SPI"):
        esp.decrypt(other, pkt)
    with pytest.raises(HarnessError, match="inbound"):
        esp.encrypt(inn, inner, 1)


def test_esp_ignores_ike_and_keepalives():
    ike = IP(src="198.18.10.1", dst="198.18.10.2") / UDP(sport=4500, dport=4500) / \
        (b"\0\0\0\0" + b"\x11" * 28)
    keepalive = IP(src="198.18.10.1", dst="198.18.10.2") / UDP(sport=4500, dport=4500) / b"\xff"
    other = IP(src="198.18.10.1", dst="198.18.10.2") / UDP(sport=500, dport=500) / (b"\1" * 40)
    for p in (ike, keepalive, other):
        assert not esp.is_esp(IP(bytes(p)))


def test_vici_codec_and_conf_rendering():
    msg = {"a": "1", "sec": {"k": "v w", "inner": {"x": "y"}}, "lst": ["p", "q"], "b": True}
    back = vici.decode_message(vici.encode_message(msg))
    assert back == {"a": "1", "sec": {"k": "v w", "inner": {"x": "y"}}, "lst": ["p", "q"],
                    "b": "yes"}
    with pytest.raises(vici.ViciError):
        vici.decode_message(bytes([vici.SECTION_START, 3]) + b"ab")       # truncated
    with pytest.raises(vici.ViciError):
        vici.decode_message(bytes([vici.SECTION_END]))                  # unbalanced
    text = ss.render_conf({"c": {"id": "C=XX, O=Ravelin interop, CN=gw", "ts": ["a/8", "b/9"],
                                 "on": True, "skip": None, "s": 'q"uote'}})
    assert 'id = "C=XX, O=Ravelin interop, CN=gw"' in text
    assert "ts = a/8, b/9" in text and "on = yes" in text and "skip" not in text
    assert 's = "q\\"uote"' in text


# --- namespaces and topologies ------------------------------------------------------

def test_gateway_pair_topology(lab):
    topo = netns.gateway_pair(lab, ipv6=True)
    for ns in (topo.rav, topo.sw, topo.hb):
        assert ns.startswith(f"rvix-{netns.owner()}-") and ns in netns.netns_list()
    assert netns.ping(topo.rav, topo.sw_outer)
    assert netns.ping(topo.hb, topo.sw_inner)
    assert netns.ping(topo.rav, topo.sw_outer6)
    assert netns.ping(topo.hb, "2001:db8:19:20::1")
    # no path between the protected networks except a tunnel
    assert not netns.ping(topo.rav, topo.hb_addr, src=topo.rav_inner, wait=0.5)
    assert not netns.ping(topo.hb, topo.rav_inner, wait=0.5)
    with pytest.raises(HarnessError, match="198.18.0.0/15"):
        lab.addr(topo.rav, "out0", "10.1.2.3/24")
    names = list(lab.namespaces.values())
    lab.close()
    left = netns.netns_list()
    assert not [n for n in names if n in left]


def test_cleanup_stale_removes_only_dead_runs(lab):
    # a "run" of our own that dies: a process whose token names a namespace
    # and marks a process started in it
    fake_run = subprocess.Popen(["sleep", "30"], preexec_fn=netns.die_with_parent)
    dead = netns.owner_token(fake_run.pid)
    name = f"{netns.PREFIX}-{dead}-1-stale"
    netns.run(["ip", "netns", "add", name])
    marked = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "30"],
                              env=dict(os.environ, RVIX_OWNER=dead),
                              preexec_fn=netns.die_with_parent)
    try:
        assert netns.wait_until(lambda: str(marked.pid) in
                                netns.run(["ip", "netns", "pids", name]).stdout.split(), 3)
        live = lab.add_ns("live")
        fake_run.kill()
        fake_run.wait()
        assert not netns.owner_alive(dead) and netns.owner_alive(netns.owner())
        removed = netns.cleanup_stale(log=lambda m: None, only={dead, netns.owner()})
        assert removed == [name]
        assert name not in netns.netns_list() and live in netns.netns_list()
        assert marked.wait(timeout=3) is not None       # ended by its PID
    finally:
        for p in (fake_run, marked):
            if p.poll() is None:
                p.kill()
                p.wait()
        netns.run(["ip", "netns", "del", name], check=False)


# --- two charons ----------------------------------------------------------------------

def _start_pair(topo, charons, rav_level=2, rav_options=None, sw_options=None, **conf):
    rav_tree, sw_tree = peers.site_configs(topo, **conf)
    rav = charons(topo.rav, "rav", log_level=rav_level, options=rav_options)
    sw = charons(topo.sw, "sw", options=sw_options)
    rav.write_config(rav_tree)
    sw.write_config(sw_tree)
    rav.load_all()
    sw.load_all()
    return rav, sw


def _child(ike: dict, name: str = "net") -> dict:
    found = [c for c in ike["child-sas"] if c["name"] == name and c["state"] == "INSTALLED"]
    assert len(found) == 1, ike["child-sas"]
    return found[0]


def test_psk_tunnel_ping_rekey_terminate(pair, charons):
    rav, sw = _start_pair(pair, charons)
    t0 = time.monotonic()
    rav.initiate("net")
    assert time.monotonic() - t0 < 5

    ike_r, ike_s = rav.wait_ike("gw"), sw.wait_ike("gw")
    assert (ike_r["encr-alg"], ike_r["encr-keysize"], ike_r["prf-alg"], ike_r["dh-group"]) == \
        ("AES_GCM_16", 256, "PRF_HMAC_SHA2_256", "CURVE_25519")
    assert ike_r["initiator"] == "yes" and ike_s.get("initiator") != "yes"
    assert ike_r["initiator-spi"] == ike_s["initiator-spi"]
    assert ike_r["local-port"] == 4500 and ike_r["remote-host"] == pair.sw_outer
    cr, cs = _child(ike_r), _child(ike_s)
    assert (cr["mode"], cr["protocol"], cr["encap"], cr["encr-alg"], cr["encr-keysize"]) == \
        ("TUNNEL", "ESP", "yes", "AES_GCM_16", 256)
    assert cr["spi-out"] == cs["spi-in"] and cr["spi-in"] == cs["spi-out"]
    assert cr["local-ts"] == [pair.rav_net] and cr["remote-ts"] == [pair.sw_net]

    assert netns.ping(pair.rav, pair.hb_addr, count=3, src=pair.rav_inner)
    assert netns.ping(pair.hb, pair.rav_inner, count=2)
    after = _child(rav.ike_sa("gw"))
    assert after["packets-out"] >= 3 and after["packets-in"] >= 5
    assert after["bytes-in"] > 0 and after["bytes-out"] > 0

    rav.rekey(child="net")
    new = rav.wait_child("gw", "net", exclude_spis=(cr["spi-in"],))
    assert new["spi-in"] != cr["spi-in"] and new["dh-group"] == "CURVE_25519"   # PFS on rekey
    assert netns.ping(pair.rav, pair.hb_addr, count=2, src=pair.rav_inner)

    rav.terminate(ike="gw")
    rav.wait_gone("gw")
    sw.wait_gone("gw")
    assert not netns.ping(pair.rav, pair.hb_addr, src=pair.rav_inner, wait=0.5)


def test_wrong_psk_fails_in_phase_one(pair, charons):
    rav_tree, _ = peers.site_configs(pair, psk="not-the-same-secret-0123456789")
    _, sw_tree = peers.site_configs(pair)
    rav = charons(pair.rav, "rav")
    sw = charons(pair.sw, "sw")
    rav.write_config(rav_tree)
    sw.write_config(sw_tree)
    rav.load_all()
    sw.load_all()
    p = rav.initiate("net", timeout=5, check=False)
    assert p.returncode != 0
    assert "AUTHENTICATION_FAILED" in p.stdout + rav.log_text()
    assert rav.ike_sa("gw", None) is None


def test_cert_auth_ecdsa_and_rsa(pair, charons, pki):
    root = pki.certs.get("root") or pki.ca("root", "ecdsa256")
    inter = pki.certs.get("inter") or pki.issue(root, "inter", "ecdsa256", ca=True)
    rav_ee = pki.issue(inter, "gw-rav-rsa", "rsa3072", sans=["gw.rav.test", pair.rav_outer])
    sw_ee = pki.issue(inter, "gw-sw-ecdsa", "ecdsa256", sans=[pair.sw_outer, "gw.sw.test"])
    rav = charons(pair.rav, "rav")
    sw = charons(pair.sw, "sw")
    from .pki import install
    rav_certs, rav_ca = install(rav, rav_ee, [root])
    sw_certs, sw_ca = install(sw, sw_ee, [root])
    rav_tree, sw_tree = peers.site_configs(
        pair, auth="pubkey", rav_id="gw.rav.test", sw_id=sw_ee.dn,
        rav_certs=rav_certs, rav_cacerts=rav_ca, sw_certs=sw_certs, sw_cacerts=sw_ca)
    rav.write_config(rav_tree)
    sw.write_config(sw_tree)
    rav.load_all()
    sw.load_all()
    rav.initiate("net")
    ike = sw.wait_ike("gw")
    assert ike["remote-id"] == "gw.rav.test" and ike["local-id"] == sw_ee.dn
    sw.wait_log(r"authentication of 'gw\.rav\.test' with RSA\S* successful", 2)
    rav.wait_log(r"authentication of '.*CN=198\.18\.10\.2' with ECDSA\S* successful", 2)
    rav.wait_log(r'received issuer cert "C=XX, O=Ravelin interop, CN=inter CA"', 2)
    assert netns.ping(pair.rav, pair.hb_addr, count=2, src=pair.rav_inner)


def test_ike_fragmentation_with_large_rsa_chain(pair, charons, pki):
    big = pki.large_rsa_chain("big", sans=["gw.rav.test", pair.rav_outer])
    assert sum(len(c.der()) for c in big.chain) > 1280
    root = pki.certs.get("root") or pki.ca("root", "ecdsa256")
    sw_ee = pki.issue(root, "gw-sw-frag", "ecdsa256", sans=[pair.sw_outer])
    rav = charons(pair.rav, "rav", options={"fragment_size": 1280})
    sw = charons(pair.sw, "sw", options={"fragment_size": 1280})
    from .pki import install
    rav_certs, rav_ca = install(rav, big, [root])
    sw_certs, sw_ca = install(sw, sw_ee, [big.root])
    rav_tree, sw_tree = peers.site_configs(
        pair, auth="pubkey", rav_certs=rav_certs, rav_cacerts=rav_ca, sw_certs=sw_certs,
        sw_cacerts=sw_ca)
    rav.write_config(rav_tree)
    sw.write_config(sw_tree)
    rav.load_all()
    sw.load_all()
    rav.initiate("net")
    m = rav.wait_log(r"splitting IKE message \((\d+) bytes\) into (\d+) fragments", 2)
    assert int(m.group(1)) > 2 * 1280 - 200 and int(m.group(2)) >= 3
    sw.wait_log(r"reassembled fragmented IKE message", 2)
    sw.wait_log(r"authentication of '198\.18\.10\.1' with RSA\S* successful", 2)
    assert netns.ping(pair.rav, pair.hb_addr, count=1, src=pair.rav_inner)


@pytest.mark.parametrize("random_ports", [False, True], ids=["nat", "nat-random-ports"])
def test_nat_topology(lab, charons, random_ports):
    topo = netns.nat_pair(lab, random_ports=random_ports)
    rav, sw = _start_pair(topo, charons, rav_level=4)
    rav.initiate("net")
    ike_s = sw.wait_ike("gw")
    ike_r = rav.wait_ike("gw")
    assert ike_s["remote-host"] == topo.rav_seen_as and ike_s["remote-id"] == topo.rav_outer
    assert ike_r["local-host"] == topo.rav_outer and ike_r.get("nat-local") == "yes"
    if random_ports:
        assert ike_s["remote-port"] != 4500
    assert netns.ping(topo.rav, topo.hb_addr, count=2, src=topo.rav_inner)

    # the ESP helpers through the NAT, with the stand-in's keys
    recs = charon_keys.sa_records(rav, "gw", "net")
    assert recs["out"].local == topo.rav_outer and recs["out"].remote == topo.sw_outer
    marker = b"rvix-through-nat-%d" % random_ports
    with netns.Capture(topo.hb, topo.hb_if, "in") as cap:
        esp.send_esp(topo.rav, recs["out"],
                     esp.inner_udp(topo.rav_inner, topo.hb_addr, 33333, marker), seq=5000)
        assert cap.first(lambda p: UDP in p and bytes(p[UDP].payload) == marker, 3)


def test_esp_helpers_against_charon(pair, charons, workdir):
    """Keys of the stand-in charon (level-4 log) -> SA records in a sink file
    -> scapy ESP that strongSwan accepts and delivers to hb, and ESP from
    strongSwan that the in SA decrypts. One child per algorithm. sw starts
    the IKE SA (rav is IKE_AUTH responder for "gcm256"), rav creates the
    other children (CREATE_CHILD_SA initiator), and sw then rekeys one
    (rav is CREATE_CHILD_SA responder): every key-direction case."""
    algs = {"gcm256": "aes256gcm16", "gcm128": "aes128gcm16", "cbc": "aes256-sha256",
            "chacha": "chacha20poly1305"}
    specs, inner_addr = [], {}
    for n, (name, prop) in enumerate(algs.items(), 1):
        inner_addr[name] = f"198.19.10.{n}"
        specs.append(ChildSpec(name=name, rav_ts=f"198.19.10.{n}/32", esp_proposals=prop))
        if n > 1:
            # charon routes each child with the first local TS address as
            # source: it must exist on rav
            pair.lab.addr(pair.rav, "prot0", f"198.19.10.{n}/32")
    rav, sw = _start_pair(pair, charons, rav_level=4, children=specs)
    sw.initiate("gcm256")
    for name in list(algs)[1:]:
        rav.initiate(name)

    sink = workdir / "standin-sink.jsonl"

    def check_child(name: str, seq: int):
        recs = charon_keys.sa_records(rav, "gw", name)
        sa_records.write_sa_file(sink, [recs["in"], recs["out"]])
        out = sa_records.find(sa_records.read_sa_file(sink), "out", "gw", name)
        inn = sa_records.find(sa_records.read_sa_file(sink), "in", "gw", name)
        assert out == recs["out"] and inn == recs["in"]
        assert out.encr == {"gcm256": "AES_GCM_16", "gcm128": "AES_GCM_16", "cbc": "AES_CBC",
                            "chacha": "CHACHA20_POLY1305"}[name]
        before = sw.child_sa("gw", name)

        marker = f"rvix-to-hb-{name}-{seq}".encode()
        with netns.Capture(pair.hb, pair.hb_if, "in") as cap:
            sent = esp.send_esp(pair.rav, out, esp.inner_udp(inner_addr[name], pair.hb_addr,
                                                             33333, marker), seq=seq)
            got = cap.first(lambda p: UDP in p and bytes(p[UDP].payload) == marker, 3)
        assert esp.spi_seq(sent) == (out.spi, seq)
        assert got is not None, f"{name}: scapy ESP did not reach hb"
        assert got[IP].src == inner_addr[name]
        assert sw.child_sa("gw", name)["packets-in"] == before["packets-in"] + 1

        marker = f"rvix-to-rav-{name}-{seq}".encode()
        with netns.Capture(pair.rav, pair.rav_if, "in") as cap:
            netns.send_udp(pair.hb, pair.hb_addr, inner_addr[name], 44444, marker)
            pkt = cap.first(lambda p: esp.is_esp(p, inn.spi), 3)
        assert pkt is not None, f"{name}: no ESP from strongSwan on SPI {inn.spi_hex}"
        inner = esp.decrypt(inn, pkt)
        assert inner.src == pair.hb_addr and inner.dst == inner_addr[name]
        assert bytes(inner[UDP].payload) == marker
        return recs

    first = {name: check_child(name, 1000 + i) for i, name in enumerate(algs)}
    assert {k.role for k in charon_keys.parse_child_keys(rav.log_text())} == \
        {"initiator", "responder"}

    old = first["cbc"]["in"].spi
    sw.rekey(child="cbc")
    rav.wait_child("gw", "cbc", exclude_spis=(f"{old:08x}",))
    rekeyed = check_child("cbc", 1)
    assert rekeyed["in"].spi != old
    assert [k.role for k in charon_keys.parse_child_keys(rav.log_text())
            if k.spi_in == rekeyed["in"].spi] == ["responder"]


# --- the ravelin-iked fixture (its daemon does not exist yet) ------------------------

def test_ravelin_fixture_config_and_missing_binary(pair, workdir, monkeypatch):
    rav_tree, _ = peers.site_configs(pair)
    iked = ravelin.RavelinIked(pair.rav, ravelin.iked_conf(rav_tree, fragment_size=1280),
                               workdir)
    assert f"control_socket = {iked.control_socket}" in iked.conf_text
    assert "fragment_size = 1280" in iked.conf_text and "connections {" in iked.conf_text
    with pytest.raises(HarnessError, match="control_socket"):
        ravelin.RavelinIked(pair.rav, "iked { }", workdir)
    monkeypatch.setenv("RAVELIN_BUILD", str(workdir / "no-such-build"))
    missing = ravelin.RavelinIked(pair.rav, rav_tree, workdir, name="iked2")
    with pytest.raises(HarnessError, match="ravelin-iked missing"):
        missing.start()
    assert not missing.running()
