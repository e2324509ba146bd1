#!/usr/bin/env bash
# SA install latency of the whole gateway against strongSwan (root; see
# tests/interop/bench_sa_install.py and docs/performance.md).
#   RAVELIN_BUILD=dir (default build)   arguments go to bench_sa_install.py
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${RAVELIN_BUILD:-build}
ninja -C "$BUILD" dataplane/ravelin-dataplane controlplane/iked/ravelin-iked controlplane/ravelinctl
RAVELIN_BUILD=$BUILD PYTHONDONTWRITEBYTECODE=1 exec /usr/bin/python3 tests/interop/bench_sa_install.py "$@"
