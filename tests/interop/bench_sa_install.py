#!/usr/bin/python3
"""SA install latency of the whole gateway (scripts/bench-sa-install.sh):
ravelin-dataplane + ravelin-iked against strongSwan 5.9.8 in namespaces,
with UDP traffic from the host behind Ravelin running all along, while the
Child SA is rekeyed N times (alternating sides). Prints, from ravelinctl
ike-stats:

  install latency  outbound SA installed by ravelin-iked (the exchange
                   completed) -> the data plane's first packet on it
  command latency  SA command written to the ring -> visible to the
                   workers (applied_ns, stamped by the data plane)

The flow's packet interval bounds the install latency from below (half of
it on average): 10 000 packets/s adds 50 us. Its sender runs at SCHED_FIFO
priority 5 (--flow-priority; 0 = normal), so that a late wake-up of the
traffic source is not counted as the gateway's latency.

    bench_sa_install.py [--rekeys N] [--rate PPS] [--flow-priority N]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop import netns, peers, strongswan  # noqa: E402
from interop.flow import Flow  # noqa: E402
from interop.gateway import RavelinGateway, scratch_lab  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rekeys", type=int, default=40)
    ap.add_argument("--rate", type=float, default=10000, help="packets/s of the flow through the tunnel")
    ap.add_argument("--flow-priority", type=int, default=5, choices=range(0, 100), metavar="0..99",
                    help="SCHED_FIFO priority of the flow's sender (0: normal scheduling)")
    args = ap.parse_args()
    with scratch_lab("bench") as (lab, work, started):
        topo = netns.dataplane_pair(lab)
        rav_tree, sw_tree = peers.site_configs(topo)
        gw = RavelinGateway(topo, work, rav_tree)
        started.append(gw)
        gw.start()
        sw = strongswan.Charon(topo.sw, work, "sw", log_level=1)
        started.append(sw)
        sw.start()
        sw.write_config(sw_tree)
        sw.load_all()
        seconds = args.rekeys * 1.5 + 15
        # The flow runs from before the tunnel exists, so every SA, the first
        # one too, has traffic waiting for it the moment it is installed.
        with Flow(topo.ha, topo.hb, topo.hb_addr, rate=args.rate, seconds=seconds,
                  rt_priority=args.flow_priority) as flow:
            time.sleep(0.5)
            gw.iked.ctl("initiate", "--ike", "gw", "--child", "net")
            spi = gw.wait_child()["spi_in"]
            time.sleep(1)
            for i in range(args.rekeys):
                if i % 2:
                    sw.rekey(child="net")
                else:
                    gw.iked.ctl("rekey", "--ike", "gw", "--child", "net")
                spi = gw.wait_child(exclude_spis=(spi,), timeout=20)["spi_in"]
                time.sleep(0.5)
            time.sleep(1)       # the last SA's first packet, and its probe
            stats = json.loads(gw.iked.ctl("ike-stats", "--json").stdout)["dataplane"]
            flow.stop()
        inst, cmd = stats["install_latency"], stats["command_latency"]
        if inst["count"] < args.rekeys:
            raise netns.HarnessError(f"only {inst['count']} install latency samples for {args.rekeys + 1} SAs")
        print(json.dumps({"rekeys": args.rekeys, "flow_pps": args.rate, "flow_priority": args.flow_priority,
                          "install_latency_us": inst,
                          "command_latency_us": cmd}, indent=2))
        print(f"\nSA install latency (install -> first packet): p50 {inst.get('p50_us', 0):.0f} us, "
              f"p99 {inst.get('p99_us', 0):.0f} us, max {inst.get('max_us', 0):.0f} us over {inst['count']} SAs")
        print(f"SA command latency (ring -> visible to workers): p50 {cmd.get('p50_us', 0):.0f} us, "
              f"p99 {cmd.get('p99_us', 0):.0f} us over {cmd['count']} commands")
        return 0

if __name__ == "__main__":
    sys.exit(main())
