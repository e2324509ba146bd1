#!/usr/bin/env bash
# The whole Ravelin test suite, as root on Debian 12:
#   install dependencies and hugepages, build, unit tests (meson test),
#   integration tests (pytest, network namespaces), IKE interop tests against
#   strongSwan (pytest, network namespaces), fuzzers (if present).
# Every part runs even when an earlier one failed; the last line is
# "N passed, M failed" counting the parts, and the exit code is non-zero
# when any part failed.
#
#   RAVELIN_BUILD=dir   build directory (default: build)
#   PYTEST_ARGS=...     extra pytest arguments, e.g. "-k two_gateways"
#   FUZZ_SECONDS=N      per fuzz target (default 60)
#   FUZZ_BUILD_DIR=dir  fuzzer build directory (default: <build dir>-fuzz)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

BUILD=${RAVELIN_BUILD:-build}
export RAVELIN_BUILD=$BUILD
export PYTHONDONTWRITEBYTECODE=1
LOGDIR=$(mktemp -d /tmp/ravelin-test.XXXXXX)
passed=0
failed=0
summary=()

part() {  # part NAME COMMAND...: run one part, count it
    local name=$1 start=$SECONDS rc
    shift
    echo
    echo "=== [$name] $*"
    "$@"
    rc=$?
    if ((rc == 0)); then
        passed=$((passed + 1))
        summary+=("PASS  $name ($((SECONDS - start)) s)")
    else
        failed=$((failed + 1))
        summary+=("FAIL  $name (exit $rc, $((SECONDS - start)) s)")
    fi
}

build() {
    if [[ ! -f $BUILD/build.ninja ]]; then
        meson setup "$BUILD" || return
    fi
    ninja -C "$BUILD"
}

unit_tests() {
    timeout 1800 meson test -C "$BUILD" --print-errorlogs --suite unit
}

integration_tests() {
    local log=$LOGDIR/pytest.log rc
    # shellcheck disable=SC2086
    timeout 2700 /usr/bin/python3 -m pytest -v -p no:cacheprovider -rfE \
        tests/integration ${PYTEST_ARGS:-} 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    if ! grep -Eq '[0-9]+ passed' "$log"; then
        echo "integration: pytest reported no passed test" >&2
        return 1
    fi
    return "$rc"
}

interop_tests() {
    # ravelin-iked against strongSwan 5.9.8 in network namespaces
    # (tests/interop/README.md).
    local log=$LOGDIR/interop.log rc
    timeout 1200 /usr/bin/python3 -m pytest -v -p no:cacheprovider -rfE tests/interop \
        2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    if ! grep -Eq '[0-9]+ passed' "$log"; then
        echo "interop: pytest reported no passed test" >&2
        return 1
    fi
    return "$rc"
}

fuzzers() {
    # Fuzzers build with clang in their own directory, next to $BUILD.
    FUZZ_SECONDS=${FUZZ_SECONDS:-60} FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR:-$PWD/$BUILD-fuzz} \
        timeout 3000 scripts/run-fuzzers.sh
}

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: must run as root (namespaces, hugepages): sudo $0" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

part install-deps scripts/install-deps.sh
part build build
part unit-tests unit_tests
part integration-tests integration_tests
part interop-tests interop_tests
if [[ -f scripts/run-fuzzers.sh ]]; then
    part fuzzers fuzzers
fi

echo
echo "=== summary (logs: $LOGDIR)"
printf '  %s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
((failed == 0))
