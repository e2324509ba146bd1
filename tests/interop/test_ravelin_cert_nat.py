"""ravelin-iked against strongSwan 5.9.8: certificate authentication (ECDSA
and RSA, through an intermediate CA, both roles), IKE fragmentation of a
certificate chain larger than the MTU, and the initiator behind an
nftables masquerade NAT."""
from __future__ import annotations

import subprocess

from scapy.layers.inet import IP, UDP

from . import esp, netns, peers
from .pki import install
from .ravelin import iked_conf
from .test_ravelin_psk import check_same_sas, esp_both_ways, rav_sas


def ravelin_pubkey(tree: dict, ee, roots, passphrase: str | None = None) -> dict:
    """Ravelin's side of a pubkey connection: absolute certificate and key
    paths (strongSwan's tree names files in its swanctl folders). With a
    passphrase, the key file is an encrypted copy opened by the secret."""
    conn = tree["connections"]["gw"]
    conn["local"]["certs"] = [str(c.cert) for c in ee.chain]
    conn["remote"]["cacerts"] = [str(r.cert) for r in roots]
    key = {"file": str(ee.key)}
    if passphrase:
        enc = ee.key.with_suffix(".enc.pem")
        subprocess.run(["openssl", "pkey", "-in", str(ee.key), "-aes256", "-passout",
                        f"pass:{passphrase}", "-out", str(enc)], check=True)
        assert b"ENCRYPTED" in enc.read_bytes()
        key = {"file": str(enc), "secret": passphrase}
    tree["secrets"] = {"private-gw": key}
    return tree


def cert_pair(pair, charons, ravelin, pki, rav_kind, sw_kind, *, rav_ee=None, iked=None,
              sw_options=None, passphrase=None):
    root = pki.certs.get("root") or pki.ca("root", "ecdsa256")
    inter = pki.certs.get("inter") or pki.issue(root, "inter", "ecdsa256", ca=True)
    rav_ee = rav_ee or pki.issue(inter, f"gw-rav-{rav_kind}", rav_kind,
                                 sans=["gw.rav.test", pair.rav_outer])
    sw_ee = pki.issue(inter, f"gw-sw-{sw_kind}", sw_kind, sans=[pair.sw_outer, "gw.sw.test"])
    sw = charons(pair.sw, "sw", options=sw_options)
    sw_certs, sw_ca = install(sw, sw_ee, [root, rav_ee.root])
    rav_tree, sw_tree = peers.site_configs(pair, auth="pubkey", rav_id="gw.rav.test",
                                           sw_id=sw_ee.dn, sw_certs=sw_certs, sw_cacerts=sw_ca)
    sw.write_config(sw_tree)
    sw.load_all()
    rav = ravelin(pair.rav, iked_conf(ravelin_pubkey(rav_tree, rav_ee, [root], passphrase),
                                      **(iked or {})))
    return rav, sw, sw_ee


def test_rsa_ravelin_initiates_to_ecdsa(pair, charons, ravelin, pki):
    rav, sw, sw_ee = cert_pair(pair, charons, ravelin, pki, "rsa3072", "ecdsa256")
    rav.ctl("initiate", "--ike", "gw", "--child", "net")
    sw.wait_child("gw", "net")
    sw.wait_log(r"authentication of 'gw\.rav\.test' with RSA\S* successful", 3)
    ike = check_same_sas(rav, sw)[0]
    assert ike["remote_id"] == sw_ee.dn or "CN=" in ike["remote_id"], ike
    esp_both_ways(pair, rav)


def test_ecdsa_ravelin_responds_to_rsa(pair, charons, ravelin, pki):
    # Ravelin's key is an encrypted PEM opened by secrets.private-gw.secret.
    rav, sw, _ = cert_pair(pair, charons, ravelin, pki, "ecdsa384", "rsa3072",
                           passphrase="key-passphrase-0123")
    sw.initiate("net", "gw")
    rav.wait_sa("in", "gw", "net")
    sw.wait_log(r"authentication of 'gw\.rav\.test' with ECDSA\S* successful", 3)
    check_same_sas(rav, sw)
    esp_both_ways(pair, rav)


def test_ike_fragmentation_with_a_large_chain(pair, charons, ravelin, pki):
    big = pki.large_rsa_chain("big", sans=["gw.rav.test", pair.rav_outer])
    assert sum(len(c.der()) for c in big.chain) > 1280
    rav, sw, _ = cert_pair(pair, charons, ravelin, pki, "rsa4096", "ecdsa256", rav_ee=big,
                           iked={"fragment_size": 1280}, sw_options={"fragment_size": 1280})
    with netns.Capture(pair.sw, pair.sw_if, "in") as cap:
        rav.ctl("initiate", "--ike", "gw", "--child", "net")
        sw.wait_child("gw", "net")
        frames = cap.collect(lambda p: UDP in p and p[UDP].dport == 4500, count=20, timeout=1)
    assert len(frames) >= 3, "IKE_AUTH was not fragmented"
    assert max(len(p[IP]) for p in frames) <= 1280
    sw.wait_log(r"reassembled fragmented IKE message", 3)
    check_same_sas(rav, sw)


def test_initiator_behind_nat(nat, charons, ravelin):
    rav_tree, sw_tree = peers.site_configs(nat, rav_extra={})
    sw = charons(nat.sw, "sw")
    sw.write_config(sw_tree)
    sw.load_all()
    rav = ravelin(nat.rav, iked_conf(rav_tree, keepalive="1s"))
    rav.ctl("initiate", "--ike", "gw", "--child", "net")
    sw.wait_child("gw", "net")
    ike = [s for s in rav_sas(rav) if s["state"] == "ESTABLISHED"][0]
    assert ike["nat_local"] is True, ike
    theirs = sw.ike_sa("gw")
    assert theirs["remote-host"] == nat.rav_seen_as
    out = rav.wait_sa("out", "gw", "net")
    assert out.udp_encap and out.local == nat.rav_outer and out.remote == nat.sw_outer
    marker = b"ravelin-through-nat"
    with netns.Capture(nat.hb, nat.hb_if, "in") as cap:
        esp.send_esp(nat.rav, out, esp.inner_udp(nat.rav_inner, nat.hb_addr, 33333, marker), seq=1)
        assert cap.first(lambda p: UDP in p and bytes(p[UDP].payload) == marker, 3)
    # NAT-T keepalives (one 0xff byte to 4500) keep the mapping alive.
    with netns.Capture(nat.sw, nat.sw_if, "in") as cap:
        ka = cap.first(lambda p: UDP in p and p[UDP].dport == 4500 and bytes(p[UDP].payload) == b"\xff", 4)
    assert ka is not None, "no NAT-T keepalive"
    # A rekey through the NAT.
    old = rav.wait_sa("in", "gw", "net")
    rav.ctl("rekey", "--ike", "gw", "--child", "net")
    rav.wait_sa("in", "gw", "net", exclude_spis={old.spi})
