#!/usr/bin/python3
"""Before/after table from the alternating runs of scripts/bench-dataplane.sh --ab.

    bench_ab.py DIR     (DIR holds ab-before-N.json and ab-after-N.json)

For each full-path benchmark: the median over rounds of each round's median
(over repetitions) cycles per packet, raw GCM, overhead (full - raw) and
ratio (full / raw), before and after; and window_ab's cost of a 1024 window
with ESN over the window off. Both binaries ran in the same session,
alternating, so the host's load hits both alike: compare the columns, not
these numbers with another session's.
"""
import glob
import json
import statistics
import sys


def medians(path):
    out = {}
    for b in json.load(open(path))["benchmarks"]:
        if b.get("error_occurred"):
            continue
        if b.get("aggregate_name") == "median" or (b.get("run_type") == "iteration" and "repetitions" not in b):
            out[b["run_name"].replace("/manual_time", "")] = b
    return out


def collect(files):
    rounds = [medians(f) for f in files]
    names = sorted({n for r in rounds for n in r})
    res = {}
    for n in names:
        rs = [r[n] for r in rounds if n in r]
        res[n] = {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
        res[n]["rounds"] = len(rs)
    return res


def main(d):
    before = collect(sorted(glob.glob(f"{d}/ab-before-*.json")))
    after = collect(sorted(glob.glob(f"{d}/ab-after-*.json")))
    print(f"\nA/B in one session, median over rounds of the per-round medians (TSC cycles per packet)")
    hdr = f"{'benchmark':<26} {'raw':>6} {'before':>7} {'after':>7} {'ovh before':>10} {'ovh after':>9} {'ratio before':>12} {'ratio after':>11}"
    print(hdr)
    print("-" * len(hdr))
    for n in sorted(after):
        if not n.startswith("full_") or n not in before:
            continue
        b, a = before[n], after[n]
        print(f"{n:<26} {a['raw_cycles_per_pkt']:6.1f} {b['cycles_per_pkt']:7.1f} {a['cycles_per_pkt']:7.1f} "
              f"{b['cycles_above_raw']:10.1f} {a['cycles_above_raw']:9.1f} {b['ratio_to_raw']:12.3f} {a['ratio_to_raw']:11.3f}")
    for n in sorted(after):
        if n.startswith("window_ab") and n in before:
            print(f"{n:<26} window 1024+ESN over off: before {before[n]['window_cost_pct']:+.1f} %, "
                  f"after {after[n]['window_cost_pct']:+.1f} %")


if __name__ == "__main__":
    main(sys.argv[1])
