#!/usr/bin/env bash
# Per-packet cost of the data plane without packet I/O, next to raw
# IPsec-MB AES-256-GCM measured in the same run (docs/performance.md).
#
#   scripts/bench-dataplane.sh [options] [JSON_OUT]
#
#   -r N          repetitions per benchmark (default 5; medians are reported)
#   -t SECONDS    --benchmark_min_time per repetition (default 0.3)
#   -f REGEX      --benchmark_filter (default: everything)
#   -c CPU        pin to this CPU (default 1)
#   -b DIR        build directory (default build-bench, release)
#   --no-build    use the binary as it is
#   --callgrind   also count instructions per packet under callgrind
#                 (stable on a shared machine); files go to JSON_OUT's
#                 directory as ravelin-cg-*.out, with callgrind_annotate
#                 listings beside them
#   --callgrind-only  only the callgrind part (no timing run)
#   --table-only  only print the table of an existing JSON_OUT
#   --ab BIN      A/B: time BIN (e.g. a copy of the benchmark built from the
#                 tree before a change) and this build's binary alternately
#                 in one session, order flipped each round, -r repetitions
#                 each; tests/bench/bench_ab.py prints both side by side.
#                 Files: JSON_OUT's directory, ab-{before,after}-N.json
#   --rounds N    A/B rounds (default 4)
#   --no-hugepages  run the benchmark's EAL on 4 KiB pages (--no-huge), as
#                 the unit tests do. By default it takes 512 MiB of 2 MiB
#                 hugepages (needs 256 free), as ravelin-dataplane runs: on
#                 4 KiB pages the path pays TLB misses the gateway does not
#                 (~10 cycles a packet with one tunnel, more with many).
#                 The callgrind part always runs on 4 KiB pages. With
#                 --ab, both binaries get the same set-up: one built before
#                 --hugepages existed (3d63bc5) refuses the flag, so pass
#                 --no-hugepages for it.
#   --tunnels N   add N outbound tunnels (one SA and policy each) and the
#                 full_out_flows / full_out_tunnels benchmarks: one tunnel
#                 with 1024 flows against one packet per tunnel in turn, in
#                 the same SPD (the in-process side of bench-tunnels.sh)
#
# JSON_OUT defaults to /tmp/ravelin-bench.json (Google Benchmark's JSON,
# aggregates only); tests/bench/bench_table.py prints the table from it and
# writes the rows and floor verdicts to JSON_OUT's .summary.json.
# One run of the full set takes about 2 minutes with the defaults; split it
# with -f to stay under a time limit, e.g. -f '/64/|/1420/' then
# -f '/512/|/imix/'.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
reps=5
min_time=0.3
filter=
cpu=1
build=build-bench
do_build=1
do_callgrind=0
table_only=0
timing=1
ab_bin=
rounds=4
out=/tmp/ravelin-bench.json
extra=()
hugepages=1

while [ $# -gt 0 ]; do
    case "$1" in
    -r) reps=$2; shift 2 ;;
    -t) min_time=$2; shift 2 ;;
    -f) filter=$2; shift 2 ;;
    -c) cpu=$2; shift 2 ;;
    -b) build=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --callgrind) do_callgrind=1; shift ;;
    --callgrind-only) do_callgrind=1; timing=0; shift ;;
    --table-only) table_only=1; do_build=0; shift ;;
    --ab) ab_bin=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --tunnels) extra+=(--tunnels="$2"); shift 2 ;;
    --no-hugepages) hugepages=0; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) out=$1; shift ;;
    esac
done

cd "$here"
bin=$build/tests/bench/dataplane_bench

if [ "$do_build" = 1 ]; then
    [ -d "$build" ] || meson setup "$build" --buildtype=release -Dbenchmarks=true >/dev/null
    ninja -C "$build" tests/bench/dataplane_bench >/dev/null
fi

if [ "$hugepages" = 1 ] && [ "$timing" = 1 ] && [ "$table_only" = 0 ]; then
    free=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages 2>/dev/null || echo 0)
    if [ "$free" -lt 256 ]; then
        echo "needs 256 free 2 MiB hugepages, $free free: run scripts/install-deps.sh, or pass --no-hugepages" >&2
        exit 2
    fi
    extra+=(--hugepages)
fi

mkdir -p "$(dirname "$out")"
if [ -n "$ab_bin" ]; then
    [ -x "$ab_bin" ] || { echo "--ab: $ab_bin is not an executable" >&2; exit 2; }
    dir=$(dirname "$out")
    rm -f "$dir"/ab-before-*.json "$dir"/ab-after-*.json "$dir"/ab.log
    args=(--benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true
          --benchmark_enable_random_interleaving=true --benchmark_min_time="$min_time"
          --benchmark_out_format=json --benchmark_format=console)
    [ -n "$filter" ] && args+=(--benchmark_filter="$filter")
    args+=("${extra[@]}")
    for ((r = 1; r <= rounds; r++)); do
        order=(before after)
        [ $((r % 2)) = 0 ] && order=(after before)
        for which in "${order[@]}"; do
            b=$bin
            [ "$which" = before ] && b=$ab_bin
            echo "== round $r/$rounds: $which ($b)" >&2
            taskset -c "$cpu" "$b" "${args[@]}" --benchmark_out="$dir/ab-$which-$r.json" >>"$dir/ab.log" 2>&1 \
                || { echo "$which failed, see $dir/ab.log" >&2; exit 1; }
        done
    done
    /usr/bin/python3 tests/bench/bench_ab.py "$dir"
    exit 0
fi
if [ "$table_only" = 0 ] && [ "$timing" = 1 ]; then
    args=(--benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true
          --benchmark_enable_random_interleaving=true --benchmark_min_time="$min_time"
          --benchmark_out="$out" --benchmark_out_format=json --benchmark_format=console)
    [ -n "$filter" ] && args+=(--benchmark_filter="$filter")
    args+=("${extra[@]}")
    echo "== taskset -c $cpu $bin ${args[*]}" >&2
    taskset -c "$cpu" "$bin" "${args[@]}" >&2
fi

if [ "$timing" = 1 ]; then
    /usr/bin/python3 tests/bench/bench_table.py "$out"
fi

if [ "$do_callgrind" = 1 ]; then
    command -v valgrind >/dev/null || { echo "valgrind not installed" >&2; exit 1; }
    dir=$(dirname "$out")
    bursts=200
    echo
    echo "callgrind: instructions per packet in process_rx() (or the 32 raw GCM calls), $bursts bursts of 32"
    echo "(valgrind hides AVX-512, so IPsec-MB runs its AVX2 code here: the GCM counts are not the"
    echo " AVX-512 ones; the difference full - raw is the data plane's own code)"
    declare -A ir
    for size in 64 1420; do
        for kind in raw_enc out raw_dec in_w1024esn in_w0; do
            f=$dir/ravelin-cg-$kind-$size.out
            valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$f" \
                "$bin" --callgrind="$kind:$size:$bursts" >/dev/null 2>&1
            total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
            ir[$kind-$size]=$((total / (bursts * 32)))
            callgrind_annotate --inclusive=yes "$f" 2>/dev/null |
                sed -n '/file:function/,$p' | sed 's/ \[\/[^]]*\]$//' | awk 'NR <= 40' >"$f.inclusive.txt"
            callgrind_annotate "$f" 2>/dev/null |
                sed -n '/file:function/,$p' | sed 's/ \[\/[^]]*\]$//' | awk 'NR <= 40' >"$f.self.txt"
        done
        printf '%5s out: %5d instr/pkt (raw enc %4d, ours %5d)   in w1024+ESN: %5d (raw dec %4d, ours %5d)   in off: %5d (ours %5d)\n' \
            "$size" "${ir[out-$size]}" "${ir[raw_enc-$size]}" $((ir[out-$size] - ir[raw_enc-$size])) \
            "${ir[in_w1024esn-$size]}" "${ir[raw_dec-$size]}" $((ir[in_w1024esn-$size] - ir[raw_dec-$size])) \
            "${ir[in_w0-$size]}" $((ir[in_w0-$size] - ir[raw_dec-$size]))
    done
    echo "top functions (inclusive) of 64 B outbound: $dir/ravelin-cg-out-64.out.inclusive.txt"
fi
