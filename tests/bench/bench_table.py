#!/usr/bin/python3
"""Table and floor verdicts from dataplane_bench's Google Benchmark JSON.

    bench_table.py RESULTS.json      (written by scripts/bench-dataplane.sh)

Prints the table of docs/performance.md and writes RESULTS.summary.json
(rows, floors with pass/fail, per-part costs). Numbers are the medians over
repetitions; "best" columns are the best repetition (the one the other
tenants of a shared host disturbed least).
"""
import json
import sys

SIZES = ["64", "512", "1420", "imix"]
PATHS = [("full_out", "out"), ("full_in_w1024esn", "in w1024+ESN"), ("full_in_w0", "in window off")]
# With --tunnels: one tunnel with 1024 flows, and one packet per tunnel in turn.
SCALE_PATHS = [("full_out_flows", "out 1 tun, 1k flows"), ("full_out_tunnels", "out, N tunnels")]


def load(path):
    data = json.load(open(path))
    agg = {"median": {}, "min": {}}
    single = {}
    for b in data["benchmarks"]:
        a = b.get("aggregate_name")
        name = b["run_name"].replace("/manual_time", "")
        if b.get("error_occurred"):
            continue
        if a in agg:
            agg[a][name] = b
        elif b.get("run_type") == "iteration":
            single[name] = b
    # One repetition: Google Benchmark writes no aggregates, the run is all there is.
    for name, b in single.items():
        for a in agg.values():
            a.setdefault(name, b)
    errors = sorted({b["run_name"] for b in data["benchmarks"] if b.get("error_occurred")})
    return data, agg["median"], agg["min"], errors


def main(path):
    data, med, best, errors = load(path)
    ctx = data["context"]
    reps = next((b.get("repetitions") for b in data["benchmarks"]), "?")
    print(f"\nhost {ctx.get('host_name')}, {ctx.get('num_cpus')} CPUs, tsc_hz {ctx.get('tsc_hz')}, "
          f"load avg {[round(x, 1) for x in ctx.get('load_avg', [])]}, {reps} repetitions, "
          f"hugepages {ctx.get('hugepages', 'none (4 KiB pages)')}")
    print("sizes: clear-text Ethernet frame incl. FCS; cycles: TSC cycles per packet for process_rx() on a")
    print("burst of 32; median over repetitions of each repetition's median burst ('best' = best repetition)\n")
    hdr = (f"{'size':>5} {'direction':<18} {'Mpps':>6} {'cyc/pkt':>8} {'raw GCM':>8} {'overhead':>9} {'ratio':>6} "
           f"{'Gbit/s':>7} {'best cyc':>9} {'best ovh':>9}")
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for s in SIZES:
        for name, label in PATHS + SCALE_PATHS:
            b = med.get(f"{name}/{s}")
            if not b:
                continue
            c, raw = b["cycles_per_pkt"], b["raw_cycles_per_pkt"]
            gbps = b["mpps"] * b["mean_wire_bytes"] * 8 / 1e3
            bb = best.get(f"{name}/{s}", b)
            rows.append({"size": s, "path": name, "mpps": b["mpps"], "cycles_per_pkt": c, "raw_gcm_cycles": raw,
                         "overhead_cycles": c - raw, "ratio": c / raw, "gbps_clear_l2": gbps,
                         "best_cycles_per_pkt": bb["cycles_per_pkt"], "best_overhead_cycles": bb["cycles_above_raw"],
                         "restore_cycles": b["restore_cycles_per_pkt"], "io_cycles": b["io_cycles_per_pkt"]})
            print(f"{s:>5} {label:<18} {b['mpps']:6.2f} {c:8.1f} {raw:8.1f} {c - raw:9.1f} {c / raw:6.2f} "
                  f"{gbps:7.2f} {bb['cycles_per_pkt']:9.1f} {bb['cycles_above_raw']:9.1f}")
        for rawname, label in (("raw_gcm256_enc", "raw GCM enc alone"), ("raw_gcm256_dec", "raw GCM dec alone")):
            b = med.get(f"{rawname}/{s}")
            if b:
                bb = best.get(f"{rawname}/{s}", b)
                print(f"{s:>5} {label:<18} {b['mpps']:6.2f} {b['cycles_per_pkt']:8.1f} {'':>8} {'':>9} {'':>6} "
                      f"{'':>7} {bb['cycles_per_pkt']:9.1f}")

    print("\nharness, not in the numbers above (per packet, medians): restore = load the frames into the")
    print("mbufs; io = flush_tx() into net_ring + ring dequeue")
    for s in SIZES:
        line = []
        for name, label in PATHS:
            b = med.get(f"{name}/{s}")
            if b:
                line.append(f"{label}: restore {b['restore_cycles_per_pkt']:.0f}, io {b['io_cycles_per_pkt']:.0f}")
        if line:
            print(f"{s:>5}  " + "; ".join(line))
    if "tsc_bracket" in med:
        t = med["tsc_bracket"]
        print(f"timing bracket (lfence; rdtsc; lfence, twice): {t['cycles_per_bracket']:.0f} cycles per burst = "
              f"{t['cycles_per_pkt_at_32']:.1f} per packet, inside every number, cancels in 'overhead'")

    parts = sorted(k for k in med if k.startswith("part/"))
    if parts:
        print("\nparts of the path on their own (cycles per operation, median):")
        print("  " + ", ".join(f"{k[5:]} {med[k]['cycles_per_op']:.0f}" for k in parts))

    print("\nfloors (on the medians)")
    floors = []

    def floor(desc, value, limit, extra, at_least=False):
        ok = value >= limit if at_least else value <= limit
        floors.append({"floor": desc, "value": value, "limit": limit, "pass": ok})
        bound = "at least" if at_least else "limit"
        print(f"  {desc:<56} {value:7.2f} ({bound} {limit:5.2f}) {extra:<22} {'PASS' if ok else 'FAIL'}")

    for name, label in PATHS:
        b = med.get(f"{name}/64")
        if b:
            floor(f"64 B {label}: full - raw GCM, cycles", b["cycles_per_pkt"] - b["raw_cycles_per_pkt"], 80,
                  f"[{b['cycles_per_pkt']:.0f} vs {b['raw_cycles_per_pkt']:.0f}]")
    for name, label in PATHS:
        b = med.get(f"{name}/1420")
        if b:
            floor(f"1420 B {label}: full / raw GCM", b["cycles_per_pkt"] / b["raw_cycles_per_pkt"], 1.15,
                  f"[{b['cycles_per_pkt']:.0f} vs {b['raw_cycles_per_pkt']:.0f}]")
    for s in SIZES:
        one, many = med.get(f"full_out_flows/{s}"), med.get(f"full_out_tunnels/{s}")
        if one and many:
            floor(f"{s} outbound: N tunnels / 1 tunnel (1k flows), rate",
                  one["cycles_per_pkt"] / many["cycles_per_pkt"], 0.85,
                  f"[{many['cycles_per_pkt']:.0f} vs {one['cycles_per_pkt']:.0f}]", at_least=True)
    for s in SIZES:
        b = med.get(f"window_ab/{s}")
        if b:
            floor(f"{s} inbound: window 1024+ESN over window off, %", b["window_cost_pct"], 5.0,
                  f"[{b['cycles_w1024_esn']:.0f} vs {b['cycles_w0']:.0f}]")
    if errors:
        print("\nbenchmarks that reported an error: " + ", ".join(errors))

    summary = path[:-5] + ".summary.json" if path.endswith(".json") else path + ".summary.json"
    with open(summary, "w") as f:
        json.dump({"context": ctx, "rows": rows, "floors": floors,
                   "parts": {k[5:]: med[k]["cycles_per_op"] for k in parts}, "errors": errors}, f, indent=1)
    print(f"\nGoogle Benchmark JSON: {path}; summary: {summary}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
