#!/usr/bin/python3
"""The Ravelin gateway demo (scripts/demo.sh runs it), in network namespaces:

  strongswan (default):
    ha -- [Ravelin gateway: ravelin-dataplane + ravelin-iked] -- [strongSwan 5.9.8] -- hb
  ravelin:
    ha -- [Ravelin gateway] -- [Ravelin gateway] -- hb

The tunnel is negotiated (IKEv2, PSK, AES-256-GCM, X25519), ha pings hb,
iperf3 runs through the tunnel, `ravelinctl list-sas` and the peer's
`swanctl --list-sas` (or its ravelinctl) are printed side by side, and
everything is torn down, also on Ctrl-C.

    demo.py [--peer strongswan|ravelin] [--ping N] [--iperf SECONDS]
"""
from __future__ import annotations

import argparse
import itertools
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop import netns, peers, strongswan  # noqa: E402
from interop.gateway import RavelinGateway, scratch_lab, wait_for  # noqa: E402


def side_by_side(left_title: str, left: str, right_title: str, right: str, width: int = 78):
    ll, rl = left.rstrip().splitlines(), right.rstrip().splitlines()
    print(f"{left_title:<{width}} | {right_title}")
    print(f"{'-' * width}-+-{'-' * width}")
    for a, b in itertools.zip_longest(ll, rl, fillvalue=""):
        print(f"{a[:width]:<{width}} | {b}")


def banner(text: str):
    print(f"\n=== {text} ===", flush=True)


def run(args) -> int:
    with scratch_lab("demo") as (lab, work, started):
        if args.peer == "ravelin":
            topo, other = netns.ravelin_pair(lab)
        else:
            topo, other = netns.dataplane_pair(lab), None
        rav_tree, peer_tree = peers.site_configs(topo)
        banner("starting the Ravelin gateway (ravelin-dataplane on net_af_packet, ravelin-iked attached)")
        gw = RavelinGateway(topo, work, rav_tree, name="gw-a")
        started.append(gw)
        gw.start()
        if other is not None:
            banner("starting the second Ravelin gateway")
            peer = RavelinGateway(other, work, peer_tree, name="gw-b")
            started.append(peer)
            peer.start()
        else:
            banner("starting strongSwan 5.9.8 (charon, kernel-libipsec)")
            peer = strongswan.Charon(topo.sw, work, "sw")
            started.append(peer)
            peer.start()
            peer.write_config(peer_tree)
            peer.load_all()
        banner("negotiating the tunnel (initiated by Ravelin)")
        print(gw.iked.ctl("initiate", "--ike", "gw", "--child", "net").stdout.strip())
        gw.wait_child()
        banner(f"ping {topo.hb_addr} from {topo.ha_addr} (ha) through the tunnel")
        wait_for(lambda: netns.ping(topo.ha, topo.hb_addr, count=1, wait=1), 10, "a first reply")
        p = netns.run(["ping", "-n", "-c", str(args.ping), "-i", "0.2", topo.hb_addr], ns=topo.ha,
                      check=False, timeout=args.ping + 10)
        print(p.stdout.strip())
        if p.returncode:
            raise netns.HarnessError("ping through the tunnel failed")
        banner(f"iperf3 TCP, {args.iperf} s, ha -> hb through the tunnel")
        server = netns.run(["iperf3", "-s", "-1", "-D", "-B", topo.hb_addr], ns=topo.hb, check=False)
        if server.returncode:
            raise netns.HarnessError(f"iperf3 server: {server.stderr}")
        # MSS 1300: room for ESP-in-UDP inside the 1500-byte outer MTU
        client = netns.run(["iperf3", "-c", topo.hb_addr, "-t", str(args.iperf), "-M", "1300"],
                           ns=topo.ha, check=False, timeout=args.iperf + 30)
        print(client.stdout.strip() or client.stderr.strip())
        if client.returncode:
            raise netns.HarnessError("iperf3 through the tunnel failed")
        banner("the tunnel, as each side sees it")
        ours = gw.iked.ctl("list-sas").stdout
        if other is not None:
            theirs, title = peer.iked.ctl("list-sas").stdout, "ravelinctl list-sas (gateway B)"
        else:
            theirs, title = peer.swanctl("--list-sas").stdout, "swanctl --list-sas (strongSwan)"
        side_by_side("ravelinctl list-sas (Ravelin gateway A)", ours, title, theirs)
        banner("data-plane counters of gateway A (ravelinctl stats)")
        print(netns.run([str(gw.dataplane.ctl), "--file-prefix", gw.prefix, "stats"], check=False).stdout)
        banner("tearing down")
    print("done", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", choices=["strongswan", "ravelin"], default="strongswan")
    ap.add_argument("--ping", type=int, default=5)
    ap.add_argument("--iperf", type=int, default=5)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return run(args)
    except netns.HarnessError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
