#!/usr/bin/python3
"""Plots of the benchmark results (docs/performance.md).

    scripts/plot-bench.py [--secgw results.json] [--tunnels tunnels.json]
                          [--rfc2544 pktgen.json ...] -o bench.png

--secgw    scripts/bench-secgw.sh's JSON: Mpps and TSC cycles per packet per
           clear-text frame size, for each device and direction, with the
           spread of the repetitions as error bars.
--tunnels  scripts/bench-tunnels.sh's JSON: Mpps against the number of tunnels.
--rfc2544  ravelin-pktgen --rfc2544 JSON (one or more, labelled by file
           name): no-drop rate and latency (p50, p99 at that rate) against
           frame size.

One PNG with a row of panels per input given. Needs matplotlib.
"""
import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NAMES = {"floor_off": "I/O floor (testpmd io)", "secgw_off": "ipsec-secgw", "ravelin_off": "Ravelin",
         "ravelin_esn": "Ravelin, window 1024 + ESN"}
COLORS = {"floor_off": "#bbbbbb", "secgw_off": "#d62728", "ravelin_off": "#1f77b4", "ravelin_esn": "#17becf"}


def secgw_panels(axes, data):
    table = data["table"]
    for col, direction in enumerate(("out", "in")):
        rows = [r for r in table if r["dir"] == direction]
        if not rows:
            continue
        sizes = [r["size"] for r in rows]
        keys = [k for k in NAMES if any(k in r for r in rows)]
        width = 0.8 / max(len(keys), 1)
        for metric, ax in (("mpps", axes[0][col]), ("cycles", axes[1][col])):
            for i, k in enumerate(keys):
                xs = [j + (i - (len(keys) - 1) / 2) * width for j in range(len(rows))]
                ys = [r[k][metric] if k in r else 0 for r in rows]
                err = None
                if metric == "mpps":
                    lo = [r[k]["mpps"] - min(r[k]["runs"]) if k in r else 0 for r in rows]
                    hi = [max(r[k]["runs"]) - r[k]["mpps"] if k in r else 0 for r in rows]
                    err = [lo, hi]
                ax.bar(xs, ys, width, label=NAMES[k], color=COLORS[k], yerr=err, capsize=2)
            ax.set_xticks(range(len(rows)), [f"{s} B" if s != "imix" else "IMIX" for s in sizes])
            ax.set_xlabel("clear-text frame (incl. FCS)")
            what = "outbound (encrypt)" if direction == "out" else "inbound (decrypt)"
            ax.set_title(f"{what}: {'Mpps, one worker core' if metric == 'mpps' else 'TSC cycles per packet'}")
            ax.set_ylabel("Mpps" if metric == "mpps" else "cycles / packet")
            ax.grid(axis="y", alpha=0.3)
        axes[0][col].legend(fontsize=7)


def tunnels_panel(ax, data):
    table = data["tunnels_table"]
    counts = [int(x) for x in data["args"]["tunnels"].split()]
    for r in table:
        name = ("ipsec-secgw" if r["dut"] == "secgw" else "Ravelin") + (", w1024+ESN" if r["inbound"] == "esn" else "")
        ax.plot(counts, [r[str(n)] for n in counts], marker="o",
                linestyle="-" if r["dir"] == "out" else "--", label=f"{name}, {r['dir']}, {r['size']} B")
    ax.set_xscale("log")
    ax.set_xlabel("tunnels (SA pairs, one policy each)")
    ax.set_ylabel("Mpps, one worker core")
    ax.set_title("rate against the number of tunnels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def rfc2544_panels(ax_rate, ax_lat, files):
    for f in files:
        d = json.loads(Path(f).read_text())
        res = d.get("rfc2544")
        if not res:
            sys.exit(f"{f}: no 'rfc2544' results (run ravelin-pktgen with --rfc2544)")
        labels = [e["size"] for e in res]
        x = range(len(res))
        ax_rate.plot(x, [e["ndr"]["mpps"] for e in res], marker="o", label=f"{Path(f).stem} NDR")
        if all("pdr" in e for e in res):
            ax_rate.plot(x, [e["pdr"]["mpps"] for e in res], marker="x", linestyle="--", label=f"{Path(f).stem} PDR")
        for q, style in (("p50", "-"), ("p99", ":")):
            ys = [(e["ndr"].get("latency_ns") or {}).get(q, 0) / 1000 for e in res]
            ax_lat.plot(x, ys, marker="o", linestyle=style, label=f"{Path(f).stem} {q} at NDR")
        ax_rate.set_xticks(list(x), labels)
        ax_lat.set_xticks(list(x), labels)
    ax_rate.set_title("RFC 2544 throughput")
    ax_rate.set_ylabel("Mpps")
    ax_lat.set_title("latency at the no-drop rate")
    ax_lat.set_ylabel("microseconds")
    for ax in (ax_rate, ax_lat):
        ax.set_xlabel("frame size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secgw")
    ap.add_argument("--tunnels")
    ap.add_argument("--rfc2544", nargs="*", default=[])
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args()
    rows = (2 if a.secgw else 0) + (1 if a.tunnels or a.rfc2544 else 0)
    if rows == 0:
        ap.error("nothing to plot: give --secgw, --tunnels or --rfc2544")
    fig, axes = plt.subplots(rows, 2, figsize=(13, 4.2 * rows), squeeze=False)
    r = 0
    if a.secgw:
        data = json.loads(Path(a.secgw).read_text())
        secgw_panels(axes[r:r + 2], data)
        sink = data.get("args", {}).get("sink", "memif")
        fig.suptitle(f"ravelin-pktgen on CPU 0, device on one worker core (CPU 1), memif in, {sink} sink; "
                     f"{data.get('when', '')}", fontsize=9)
        r += 2
    if a.tunnels or a.rfc2544:
        if a.tunnels:
            tunnels_panel(axes[r][0], json.loads(Path(a.tunnels).read_text()))
        else:
            axes[r][0].axis("off")
        if a.rfc2544:
            inner = axes[r][1]
            inner.axis("off")
            sub = inner.inset_axes([0, 0, 0.46, 1]), inner.inset_axes([0.54, 0, 0.46, 1])
            rfc2544_panels(sub[0], sub[1], a.rfc2544)
        else:
            axes[r][1].axis("off")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(a.out)


if __name__ == "__main__":
    main()
