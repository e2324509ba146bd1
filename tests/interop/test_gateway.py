"""The whole Ravelin gateway against strongSwan 5.9.8: ravelin-dataplane owns
the ports (net_af_packet), ravelin-iked is attached to it and negotiates
through them, and real traffic between ha (behind Ravelin) and hb (behind
strongSwan) goes through the tunnel.

    ha -- [rav: ravelin-dataplane + ravelin-iked] -- sw: charon (kernel-libipsec) -- hb
"""
from __future__ import annotations

import time

import pytest

from . import netns, peers
from .flood import Flood
from .flow import Flow, assert_lossless
from .gateway import wait_for
from .peers import ChildSpec

SUITES = [
    ("aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519"),
    ("aes128-sha256-modp2048", "aes128-sha256-modp2048"),
    ("chacha20poly1305-prfsha256-ecp384", "chacha20poly1305-ecp384"),
]


def configs(topo, proposals="aes256gcm16-prfsha256-x25519", esp="aes256gcm16-x25519",
            rav_child=None, sw_child=None, rav_extra=None, sw_extra=None):
    # Ravelin's protected side is ha's subnet (rav_net); strongSwan's is hb's.
    return peers.site_configs(topo, proposals=proposals,
                              children=[ChildSpec(esp_proposals=esp, rav_extra=rav_child,
                                                  sw_extra=sw_child)],
                              rav_extra=rav_extra, sw_extra=sw_extra)


def bring_up(topo, charons, gateway, rav_initiates=True, iked=None, **kw):
    rav_tree, sw_tree = configs(topo, **kw)
    sw = charons(topo.sw, "sw")
    sw.write_config(sw_tree)
    sw.load_all()
    gw = gateway(topo, rav_tree, iked=iked)
    if rav_initiates:
        gw.iked.ctl("initiate", "--ike", "gw", "--child", "net")
    else:
        sw.initiate("net", "gw")
    child = gw.wait_child()
    sw.wait_child("gw", "net")
    return gw, sw, child


def assert_lossless_both_ways(gw, fwd: dict, back: dict, across: str):
    """Both flows of a test complete, lossless; a failure names the data
    plane's drops (no_sa: a packet met no inbound SA on Ravelin; none: it
    was lost on the other side)."""
    drops = {k: v for k, v in gw.dataplane.stats()["drops"].items() if v}
    assert_lossless(fwd, f"ha -> hb across {across} (data plane drops {drops})")
    assert_lossless(back, f"hb -> ha across {across} (data plane drops {drops})")


def pings_both_ways(topo, count=3):
    # The first packet towards a next hop not yet resolved (ARP) may be
    # dropped, on either gateway: allow a few tries for the first reply.
    wait_for(lambda: netns.ping(topo.ha, topo.hb_addr, count=1, wait=1), 10, "a first ha -> hb ping")
    assert netns.ping(topo.ha, topo.hb_addr, count=count, wait=2), "ha -> hb through the tunnel"
    assert netns.ping(topo.hb, topo.ha_addr, count=count, wait=2), "hb -> ha through the tunnel"


def dp_sa(gw, spi_hex: str, direction: str) -> dict:
    for sa in gw.dp_sas():
        if sa["spi"] == int(spi_hex, 16) and sa["direction"] == direction:
            return sa
    raise AssertionError(f"SA {spi_hex} {direction} not in the data plane: {gw.dp_sas()}")


@pytest.mark.parametrize("proposals,esp", SUITES, ids=["gcm-x25519", "cbc-modp2048", "chacha-ecp384"])
@pytest.mark.parametrize("rav_initiates", [True, False], ids=["rav-init", "sw-init"])
def test_traffic_flows_through_the_gateway(dp_pair, charons, gateway, proposals, esp, rav_initiates):
    gw, sw, child = bring_up(dp_pair, charons, gateway, rav_initiates, proposals=proposals, esp=esp)
    pings_both_ways(dp_pair)
    # The data plane carried it, on the SAs ravelin-iked negotiated...
    out, inn = dp_sa(gw, child["spi_out"], "out"), dp_sa(gw, child["spi_in"], "in")
    assert out["packets"] >= 6 and inn["packets"] >= 6, (out, inn)
    # ...which strongSwan holds too, and list-sas shows the live counters.
    c = sw.child_sa("gw", "net")
    assert int(c["spi-in"], 16) == int(child["spi_out"], 16)
    assert int(c["spi-out"], 16) == int(child["spi_in"], 16)
    listed = gw.wait_child()
    assert listed["out"]["packets"] >= 6 and listed["in"]["packets"] >= 6, listed
    out_text = gw.iked.ctl("list-sas").stdout
    assert f"out {child['spi_out']}, " in out_text and " packets" in out_text, out_text
    # IKE went through the data plane's ports, not kernel sockets.
    st = gw.iked_stats()
    assert st["mode"] == "attached" and st["transport"]["rx_ike"] >= 2, st
    assert st["dataplane"]["frames_in"] >= 2 and st["dataplane"]["frames_out"] >= 2, st


def test_trap_policy_negotiates_on_the_first_packet(dp_pair, charons, gateway):
    rav_tree, sw_tree = configs(dp_pair, rav_child={"start_action": "trap"})
    sw = charons(dp_pair.sw, "sw")
    sw.write_config(sw_tree)
    sw.load_all()
    gw = gateway(dp_pair, rav_tree)
    assert sw.ike_sa("gw", state=None) is None          # nothing until traffic
    # The first packets hit the trap: dropped (counted), negotiation starts.
    netns.ping(dp_pair.ha, dp_pair.hb_addr, count=1, wait=1)
    gw.wait_child(timeout=15)
    sw.wait_child("gw", "net")
    assert netns.ping(dp_pair.ha, dp_pair.hb_addr, count=3, wait=2)
    drops = gw.dataplane.stats()["drops"]
    assert drops.get("no_sa_acquire", 0) >= 1, drops


def test_dead_peer_detection_removes_the_sas_from_the_data_plane(dp_pair, charons, gateway):
    gw, sw, child = bring_up(dp_pair, charons, gateway, rav_extra={"dpd_delay": "1s"},
                             iked={"retransmit_timeout": "1s", "retransmit_tries": 3})
    pings_both_ways(dp_pair, 1)
    spis = {int(child["spi_in"], 16), int(child["spi_out"], 16)}
    sw.stop()                                          # the peer goes silent
    wait_for(lambda: not any(sa["spi"] in spis for sa in gw.dp_sas()), 30,
             "the data plane to drop the dead peer's SAs")
    assert not gw.iked.list_sas()["sas"]


def test_sigkill_of_iked_loses_no_packet_and_the_tunnel_is_adopted(dp_pair, charons, gateway):
    gw, sw, child = bring_up(dp_pair, charons, gateway)
    pings_both_ways(dp_pair, 1)
    with Flow(dp_pair.ha, dp_pair.hb, dp_pair.hb_addr, rate=100, seconds=20) as fwd, \
            Flow(dp_pair.hb, dp_pair.ha, dp_pair.ha_addr, rate=100, seconds=20, port=5556) as back:
        time.sleep(3)
        gw.kill_iked()
        time.sleep(3)                                  # the data plane forwards on its own
        gw.start_iked()
        # The new ravelin-iked adopts the SAs and negotiates new ones.
        new = gw.wait_child(timeout=15, exclude_spis=(child["spi_in"],))
        assert new["reqid"] == child["reqid"]
        r1, r2 = fwd.wait(), back.wait()
    assert_lossless_both_ways(gw, r1, r2, "the iked restart")
    st = gw.iked_stats()
    assert st["sa_sink"]["adopted"] == 2, st


def test_reauthentication_under_traffic_loses_nothing(dp_pair, charons, gateway):
    """Ravelin reauthenticates every ~5 s: a new IKE SA with full
    authentication and the Child SA inside IKE_AUTH, then the old IKE SA
    goes. strongSwan sends on the new child as soon as it has answered, half
    a round trip before ravelin-iked reads the answer: the inbound SA must
    be in before the request leaves (docs/architecture.md)."""
    gw, sw, child = bring_up(dp_pair, charons, gateway, rav_extra={"reauth_time": "6s", "rand_time": "1s"})
    pings_both_ways(dp_pair, 1)
    seen = _ike_spis(gw)
    with Flow(dp_pair.ha, dp_pair.hb, dp_pair.hb_addr, rate=200, seconds=18) as fwd, \
            Flow(dp_pair.hb, dp_pair.ha, dp_pair.ha_addr, rate=200, seconds=18, port=5556) as back:
        while fwd.running():
            seen |= _ike_spis(gw)
            time.sleep(0.2)
        r1, r2 = fwd.wait(), back.wait()
    assert len(seen) >= 3, f"expected at least two reauthentications, saw IKE SAs {seen}"
    assert_lossless_both_ways(gw, r1, r2, "reauthentications")


def test_dataplane_restart_brings_the_tunnel_back(dp_pair, charons, gateway):
    gw, sw, child = bring_up(dp_pair, charons, gateway)
    pings_both_ways(dp_pair, 1)
    gw.restart_dataplane()
    # ravelin-iked notices, reinstalls and rekeys: traffic flows again.
    wait_for(lambda: netns.ping(dp_pair.ha, dp_pair.hb_addr, count=1, wait=1), 30,
             "traffic through the restarted data plane")
    pings_both_ways(dp_pair, 2)
    st = gw.iked_stats()
    assert st["dataplane"]["losses"] >= 1 and st["dataplane"]["reattaches"] >= 1, st


def _ike_spis(gw) -> set[str]:
    return {sa["spi_i"] + sa["spi_r"] for sa in gw.iked.list_sas()["sas"]
            if sa["name"] == "gw" and sa["state"] == "ESTABLISHED"}


def test_zero_loss_across_20_child_and_5_ike_rekeys(dp_pair, charons, gateway):
    """Counted UDP flows both ways while Child SAs are rekeyed 20 times and
    the IKE SA 5 times, from either side and from both at once
    (collisions, RFC 7296 §2.8.1): not one packet lost, none duplicated."""
    gw, sw, child = bring_up(dp_pair, charons, gateway)
    pings_both_ways(dp_pair, 1)
    # Who starts each rekey: Ravelin, strongSwan, or both at once.
    plan = ["rav", "sw", "both", "rav", "sw"]
    child_rekeys = ike_rekeys = collisions = 0
    with Flow(dp_pair.ha, dp_pair.hb, dp_pair.hb_addr, rate=200, seconds=60) as fwd, \
            Flow(dp_pair.hb, dp_pair.ha, dp_pair.ha_addr, rate=200, seconds=60, port=5556) as back:
        time.sleep(1)
        spi = child["spi_in"]
        for i in range(20):
            who = plan[i % len(plan)]
            if who in ("rav", "both"):
                gw.iked.ctl("rekey", "--ike", "gw", "--child", "net")
            if who in ("sw", "both"):
                sw.rekey(child="net")
            collisions += who == "both"
            spi = gw.wait_child(exclude_spis=(spi,), timeout=20)["spi_in"]
            child_rekeys += 1
            if i % 4 == 3:                       # 5 IKE rekeys among them
                before = _ike_spis(gw)
                who = plan[(i // 4) % len(plan)]
                if who in ("rav", "both"):
                    gw.iked.ctl("rekey", "--ike", "gw")
                if who in ("sw", "both"):
                    sw.rekey(ike="gw")
                wait_for(lambda: _ike_spis(gw) and not (_ike_spis(gw) & before), 20,
                         "the IKE SA rekey")
                ike_rekeys += 1
            time.sleep(0.5)
        assert fwd.running() and back.running(), "the rekeys outlasted the flows: make the flows longer"
        r1, r2 = fwd.wait(), back.wait()
    assert (child_rekeys, ike_rekeys) == (20, 5) and collisions >= 4
    assert_lossless_both_ways(gw, r1, r2, "the rekeys")
    # One tunnel at the end, the same on both sides.
    c = sw.child_sa("gw", "net")
    final = gw.wait_child()
    assert int(c["spi-in"], 16) == int(final["spi_out"], 16)
    assert int(c["spi-out"], 16) == int(final["spi_in"], 16)


def test_ike_flood_from_spoofed_sources_starves_nothing(dp_pair, charons, gateway):
    """IKE_SA_INIT requests and garbage on UDP 500/4500 from many spoofed
    sources: the tunnel that is up keeps forwarding without loss, and a new
    IKE SA (strongSwan re-initiates) still gets established."""
    gw, sw, child = bring_up(dp_pair, charons, gateway)
    pings_both_ways(dp_pair, 1)
    with Flood(dp_pair.sw, dp_pair.rav_outer, "198.18.10.0/24", seconds=15) as flood:
        # The tunnel that is up keeps forwarding, without loss, under the flood.
        with Flow(dp_pair.ha, dp_pair.hb, dp_pair.hb_addr, rate=200, seconds=5) as fwd:
            r = fwd.wait()
        # A legitimate negotiation in the middle of the flood.
        sw.terminate(ike="gw")
        wait_for(lambda: not gw.iked.list_sas()["sas"], 10, "the old IKE SA to go")
        sw.initiate("net", "gw", timeout=30)
        gw.wait_child(timeout=30)
        assert flood.proc.poll() is None, "the flood ended before the negotiation: not proven under flood"
    assert flood.sent > 1000, f"the flood was too weak to prove anything ({flood.sent} packets)"
    assert_lossless(r, "ha -> hb under the flood")
    assert netns.ping(dp_pair.ha, dp_pair.hb_addr, count=3, wait=2)
    # The flood reached the data plane in bulk and was punted or dropped,
    # counted. (What the veth's af_packet ring overflowed with never reached
    # it: the kernel counts those, not the data plane.)
    ch = gw.dataplane.stats()["channel"]
    handled = ch["punt_delivered"] + sum(ch["punt_dropped"].values())
    assert handled >= min(flood.sent * 0.1, 20000), (flood.sent, ch)
    st = gw.iked_stats()
    assert st["transport"]["rx_ike"] + st["transport"]["rx_malformed"] > 100, st


def test_nat_traversal_through_a_masquerade_carries_traffic(lab, charons, gateway):
    """The gateway behind an nftables masquerade: NAT detected, ESP in UDP
    through the NAT both ways, keepalives, and a rekey across it."""
    topo = netns.dataplane_pair(lab, nat=True)
    gw, sw, child = bring_up(topo, charons, gateway, rav_initiates=True)
    assert child["udp_encap"], child
    pings_both_ways(topo, 3)
    gw.iked.ctl("rekey", "--ike", "gw", "--child", "net")
    gw.wait_child(exclude_spis=(child["spi_in"],))
    with Flow(topo.hb, topo.ha, topo.ha_addr, rate=100, seconds=3, port=5556) as back:
        r = back.wait()
    assert_lossless(r, "hb -> ha through the NAT")
    ike = sw.ike_sa("gw")
    assert ike["remote-host"] == topo.rav_seen_as, ike


def test_packet_lifetime_in_the_data_plane_rekeys_the_child(dp_pair, charons, gateway):
    """rekey_packets is enforced by the data plane: its soft-lifetime event
    makes ravelin-iked rekey, with no loss on a counted flow."""
    gw, sw, child = bring_up(dp_pair, charons, gateway,
                             rav_child={"rekey_packets": 300, "life_packets": 100000, "rand_packets": 0})
    with Flow(dp_pair.ha, dp_pair.hb, dp_pair.hb_addr, rate=200, seconds=4) as fwd:
        new = gw.wait_child(exclude_spis=(child["spi_in"],), timeout=20)
        r = fwd.wait()
    assert_lossless(r, "ha -> hb across the lifetime rekey")
    events = gw.dataplane.stats()["events"]
    assert any(e["type"] == "soft-lifetime" and e["spi"] == int(child["spi_out"], 16) for e in events), events
    assert new["reqid"] == child["reqid"]


def test_reload_leaves_an_unchanged_tunnel_alone(dp_pair, charons, gateway):
    """ravelinctl reload and SIGHUP with a connection added: the unchanged
    tunnel keeps its SAs and carries a counted flow without loss."""
    import copy
    import json
    import os
    import signal

    from .strongswan import deep_merge, render_conf
    gw, sw, child = bring_up(dp_pair, charons, gateway)
    pings_both_ways(dp_pair, 1)
    extra = copy.deepcopy(gw.conf["connections"]["gw"])
    extra["remote_addrs"] = "198.18.10.99"
    new_conf = deep_merge(gw.conf, {"connections": {"gw2": extra},
                                    "iked": {"control_socket": str(gw.iked.control_socket)}})
    with Flow(dp_pair.ha, dp_pair.hb, dp_pair.hb_addr, rate=200, seconds=6) as fwd:
        time.sleep(1)
        gw.iked.conf_path.write_text(render_conf(new_conf) + "\n")
        out = gw.iked.ctl("reload").stdout
        assert "1 connection(s) changed: gw2" in out, out
        time.sleep(1)
        os.kill(gw.iked.proc.pid, signal.SIGHUP)        # the same through a signal: nothing changed
        r = fwd.wait()
    assert_lossless(r, "ha -> hb through two reloads")
    now = gw.wait_child()
    assert now["spi_in"] == child["spi_in"] and now["spi_out"] == child["spi_out"], (child, now)
    assert {c["name"] for c in json.loads(gw.iked.ctl("list-conns", "--json").stdout)["connections"]} == {"gw", "gw2"}


# Runs in strongSwan's namespace: waits for one ESP-in-UDP packet strongSwan
# sends to Ravelin, sends it twice more (two replays), then once with a
# sequence number never used and the ICV left as it was (an authentication
# failure). Prints the captured sequence number.
_REPLAYER = r"""
import socket, struct, sys, time
iface, dst = sys.argv[1], socket.inet_aton(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((iface, 0))
s.settimeout(0.5)
deadline = time.monotonic() + 15
frame = None
while frame is None and time.monotonic() < deadline:
    try:
        f, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[2] != socket.PACKET_OUTGOING or len(f) < 14 + 20 + 8 + 24 or f[12:14] != b"\x08\x00":
        continue
    udp = 14 + (f[14] & 15) * 4
    if f[23] != 17 or f[30:34] != dst or struct.unpack("!H", f[udp + 2:udp + 4])[0] != 4500:
        continue
    if f[udp + 8:udp + 12] == b"\0\0\0\0":
        continue   # IKE behind the non-ESP marker
    frame = f
if frame is None:
    sys.exit("no ESP packet from strongSwan seen")
s.send(frame)
s.send(frame)
forged = bytearray(frame)
esp = udp + 8
seq = struct.unpack("!I", forged[esp + 4:esp + 8])[0]
forged[esp + 4:esp + 8] = struct.pack("!I", seq + 1000)
forged[udp + 6:udp + 8] = b"\0\0"   # IPv4 UDP without a checksum
s.send(bytes(forged))
print(seq, flush=True)
"""


def test_diagnose_names_the_tunnels_drops_on_the_data_plane(dp_pair, charons, gateway):
    """Phase 2 up, traffic in trouble: replayed and forged ESP of the
    tunnel's inbound SA are counted for that SA, and `ravelinctl diagnose`
    reports them for the connection (replay 2, auth_failed 1) while good
    traffic keeps flowing."""
    import json
    import subprocess

    from .flood import PYTHON
    gw, sw, child = bring_up(dp_pair, charons, gateway)
    pings_both_ways(dp_pair, 1)
    before = json.loads(gw.iked.ctl("diagnose", "gw", "--json").stdout)["diagnoses"][0]
    assert before["dataplane_drops"] == {}, before
    replayer = subprocess.Popen(["ip", "netns", "exec", dp_pair.sw, PYTHON, "-c", _REPLAYER, dp_pair.sw_if,
                                 dp_pair.rav_outer], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=netns.owner_env(), preexec_fn=netns.die_with_parent)
    try:
        time.sleep(0.5)   # capture running
        assert netns.ping(dp_pair.hb, dp_pair.ha_addr, count=3, wait=2)
        out, err = replayer.communicate(timeout=20)
    finally:
        if replayer.poll() is None:
            netns.stop_pids([replayer.pid], 2)
    assert replayer.returncode == 0, err

    def drops():
        d = json.loads(gw.iked.ctl("diagnose", "gw", "--json").stdout)["diagnoses"][0]["dataplane_drops"]
        return d if d.get("replay") == 2 and d.get("auth_failed") == 1 else None
    got = wait_for(drops, 5, "replay 2 and auth_failed 1 in diagnose")
    assert set(got) == {"replay", "auth_failed"}, got
    inbound = dp_sa(gw, child["spi_in"], "in")
    assert inbound["drops"] == {"replay": 2, "auth_failed": 1}, inbound
    text = gw.iked.ctl("diagnose", "gw").stdout
    assert "data-plane drops:    auth_failed 1, replay 2" in text, text
    assert netns.ping(dp_pair.hb, dp_pair.ha_addr, count=3, wait=2), "good traffic after the forged packets"
