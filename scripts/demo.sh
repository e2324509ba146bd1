#!/usr/bin/env bash
# The Ravelin gateway demo, as root on Debian 12 (tests/interop/demo.py):
#
#   host A -- Ravelin gateway (ravelin-dataplane + ravelin-iked) -- strongSwan 5.9.8 -- host B
#   host A -- Ravelin gateway -- Ravelin gateway -- host B
#
# installs what is missing, builds the binaries, and for each topology brings
# it up in network namespaces, negotiates the tunnel (IKEv2), pings host B
# from host A, runs an iperf3 TCP transfer through the tunnel, prints
# `ravelinctl list-sas` next to the peer's `swanctl --list-sas` (or its
# ravelinctl) and tears everything down (also on Ctrl-C).
#
#   RAVELIN_BUILD=dir   build directory (default: build)
#   --peer strongswan|ravelin   only one topology
#   --ping N --iperf SECONDS    passed to demo.py
#   --manual                    the manually keyed two-gateway demo instead (no IKE)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh: must run as root (namespaces, raw sockets): sudo $0" >&2
    exit 1
fi

BUILD=${RAVELIN_BUILD:-build}
scripts/install-deps.sh
if [[ ! -f $BUILD/build.ninja ]]; then
    meson setup "$BUILD"
fi
ninja -C "$BUILD" dataplane/ravelin-dataplane controlplane/iked/ravelin-iked controlplane/ravelinctl

export RAVELIN_BUILD=$BUILD PYTHONDONTWRITEBYTECODE=1
if [[ ${1:-} == --manual ]]; then
    shift
    exec /usr/bin/python3 tests/integration/two_gateways.py demo "$@"
fi
peers=(strongswan ravelin)
args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --peer) peers=("$2"); shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
for peer in "${peers[@]}"; do
    /usr/bin/python3 tests/interop/demo.py --peer "$peer" "${args[@]}"
done
