#!/usr/bin/env bash
# Build and run every libFuzzer target for a bounded time.
#
#   scripts/run-fuzzers.sh                 # all targets, 60 s each
#   FUZZ_SECONDS=600 scripts/run-fuzzers.sh fuzz_config
#
# Environment:
#   FUZZ_SECONDS    run time per target (default 60)
#   FUZZ_RSS_MB     libFuzzer -rss_limit_mb (default 2048)
#   FUZZ_BUILD_DIR  build directory (default <repo>/build-fuzz; configured
#                   with clang and -Dfuzz=true if it does not exist)
#   FUZZ_ARTIFACTS  where crash/leak/timeout inputs are kept
#                   (default <build dir>/fuzz-artifacts)
#
# Targets are whatever tests/fuzz/meson.build defines. Each runs on a
# temporary copy of tests/fuzz/corpus/<name without fuzz_>/, so the seeds
# in the repository are never rewritten. Exits non-zero if any target
# crashed, leaked, hit UB or timed out; the input that did it is in
# FUZZ_ARTIFACTS and reproduces with `<build dir>/tests/fuzz/<target> <file>`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
rss_mb=${FUZZ_RSS_MB:-2048}
artifacts=${FUZZ_ARTIFACTS:-$build/fuzz-artifacts}

die() { echo "run-fuzzers: $*" >&2; exit 2; }

[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || die "FUZZ_SECONDS must be a positive integer, not '$seconds'"

if [[ ! -f $build/build.ninja ]]; then
    echo "run-fuzzers: configuring $build (clang, -Dfuzz=true)"
    CC=clang CXX=clang++ meson setup "$build" "$root" -Dfuzz=true -Dbenchmarks=false >/dev/null \
        || die "meson setup failed; rerun it by hand to see why"
fi

# The directory may exist from an earlier run: it must be clang's, and
# have -Dfuzz=true (--reconfigure so the targets appear at once).
read -r compiler fuzz_on < <(/usr/bin/python3 - "$build" <<'EOF'
import json, os, subprocess, sys
b = sys.argv[1]
intro = lambda what: json.loads(subprocess.check_output(['meson', 'introspect', b, what]))
cxx = next((os.path.basename(s['compiler'][0]) for t in intro('--targets') for s in t['target_sources']
            if s.get('language') == 'cpp' and s.get('compiler')), '?')
fuzz = any(o['name'] == 'fuzz' and o['value'] for o in intro('--buildoptions'))
print(cxx, 'true' if fuzz else 'false')
EOF
)
[[ $compiler == clang++* ]] \
    || die "$build is configured with $compiler; fuzzing needs clang (remove it or set FUZZ_BUILD_DIR)"
if [[ $fuzz_on != true ]]; then
    meson setup --reconfigure "$build" "$root" -Dfuzz=true >/dev/null || die "cannot enable -Dfuzz=true in $build"
fi

# All fuzz targets meson knows, as paths relative to the build dir.
mapfile -t all < <(/usr/bin/python3 - "$build" <<'EOF'
import json, os, subprocess, sys
b = sys.argv[1]
for t in json.loads(subprocess.check_output(['meson', 'introspect', b, '--targets'])):
    if t['type'] == 'executable' and t['defined_in'].endswith(os.path.join('tests', 'fuzz', 'meson.build')):
        print(os.path.relpath(t['filename'][0], b))
EOF
)
((${#all[@]})) || die "no fuzz targets in tests/fuzz/meson.build"

targets=()
if (($#)); then
    for want in "$@"; do
        match=""
        for t in "${all[@]}"; do [[ $(basename "$t") == "$want" ]] && match=$t; done
        [[ -n $match ]] || die "no fuzz target '$want' (have: $(printf '%s ' "${all[@]##*/}"))"
        targets+=("$match")
    done
else
    targets=("${all[@]}")
fi

ninja -C "$build" "${targets[@]}" || die "build failed"

mkdir -p "$artifacts"
work=$(mktemp -d "${TMPDIR:-/tmp}/ravelin-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=()
for t in "${targets[@]}"; do
    name=$(basename "$t")
    corpus=$work/$name
    mkdir -p "$corpus"
    seeds=$root/tests/fuzz/corpus/${name#fuzz_}
    [[ -d $seeds ]] && cp -r "$seeds"/. "$corpus"/
    args=(-max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=25
          -artifact_prefix="$artifacts/$name-" -print_final_stats=1)
    dict=$root/tests/fuzz/$name.dict
    [[ -f $dict ]] && args+=(-dict="$dict")

    echo "run-fuzzers: $name for ${seconds}s ($(ls "$corpus" | wc -l) seeds)"
    log=$artifacts/$name.log
    if "$build/$t" "${args[@]}" "$corpus" >"$log" 2>&1; then
        echo "run-fuzzers: $name ok: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs"
    else
        echo "run-fuzzers: $name FAILED (log $log):" >&2
        grep -E 'ERROR:|SUMMARY:|Test unit written to' "$log" | head -5 >&2 || tail -5 "$log" >&2
        failed+=("$name")
    fi
done

if ((${#failed[@]})); then
    echo "run-fuzzers: failed: ${failed[*]}" >&2
    exit 1
fi
echo "run-fuzzers: all ${#targets[@]} target(s) ok"
