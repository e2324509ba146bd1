#!/usr/bin/env bash
# The two-gateway demo, as root on Debian 12:
#
#   host A -- Ravelin gw A ==ESP-in-UDP== Ravelin gw B -- host B
#
# installs what is missing, builds the binaries, brings the topology up in
# network namespaces with config/examples/gateway-{a,b}.toml, pings host B
# from host A, runs a 5 s iperf3 TCP transfer, prints `ravelinctl stats`
# of both gateways side by side and tears everything down (also on Ctrl-C).
#
#   RAVELIN_BUILD=dir   build directory (default: build)
#   extra arguments go to the demo: --ping N --iperf SECONDS
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh: must run as root (namespaces, hugepages): sudo $0" >&2
    exit 1
fi

BUILD=${RAVELIN_BUILD:-build}
scripts/install-deps.sh
if [[ ! -f $BUILD/build.ninja ]]; then
    meson setup "$BUILD"
fi
ninja -C "$BUILD" dataplane/ravelin-dataplane controlplane/ravelinctl

export RAVELIN_BUILD=$BUILD PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 tests/integration/two_gateways.py demo "$@"
