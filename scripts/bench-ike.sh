#!/usr/bin/env bash
# IKE SA + first Child SA setups per second, and memory per established SA:
# ravelin-iked against strongSwan 5.9.8 as responder, in one run, driven by
# ravelin-ike-loadgen (pktgen/ike_loadgen.cc). Results: docs/performance.md.
#
#   sudo scripts/bench-ike.sh                 # 3 interleaved reps x 10 s each, 10 000 SAs
#   REPS=5 DURATION=20 SAS=20000 sudo scripts/bench-ike.sh
#
# Builds (release) in $RAVELIN_BUILD (default build-ikebench), then runs
# scripts/bench_ike.py all: fresh namespaces and a fresh responder per run,
# responder pinned to CPU 1 (all threads), loadgen to CPU 0. Writes the JSON
# document and the markdown table to $OUT (default /tmp/ravelin-bench-ike/
# result-<time>.{json,md}).
#
#   RAVELIN_BUILD=dir  build directory (made with --buildtype=release if new)
#   REPS, DURATION, WARMUP, WINDOW   rate runs (default 3, 10 s, 2 s, 64)
#   SAS                SAs kept for the memory measurement (default 10000)
#   ONLY=ravelin|strongswan          one responder only
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${RAVELIN_BUILD:-build-ikebench}
export RAVELIN_BUILD=$BUILD
REPS=${REPS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
WINDOW=${WINDOW:-64}
SAS=${SAS:-10000}
OUT=${OUT:-/tmp/ravelin-bench-ike/result-$(date +%Y%m%d-%H%M%S)}

if [[ $(id -u) != 0 ]]; then
    echo "bench-ike.sh: needs root (network namespaces)" >&2
    exit 2
fi
if [[ ! -f $BUILD/build.ninja ]]; then
    meson setup "$BUILD" --buildtype=release -Dbenchmarks=false
fi
ninja -C "$BUILD" -j1 pktgen/ravelin-ike-loadgen controlplane/iked/ravelin-iked controlplane/ravelinctl

mkdir -p "$(dirname "$OUT")"
only=()
[[ -n ${ONLY:-} ]] && only=(--only "$ONLY")
echo "bench-ike: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)" >&2
/usr/bin/python3 scripts/bench_ike.py all --reps "$REPS" --duration "$DURATION" \
    --warmup "$WARMUP" --window "$WINDOW" --sas "$SAS" "${only[@]}" > "$OUT.json"
/usr/bin/python3 scripts/bench_ike.py report "$OUT.json" | tee "$OUT.md"
echo "bench-ike: $OUT.json, $OUT.md" >&2
