#!/usr/bin/env bash
# How the rate changes with the number of tunnels: 1, 100 and 10 000 SA
# pairs, each with its own policy, and as many flows spread over them
# (docs/performance.md, "ravelin-pktgen and ipsec-secgw").
#
#   scripts/bench-tunnels.sh [-r N] [-d S] [-w S] [-s "64"] [--tunnels "1 100 10000"] [--no-secgw] [-o FILE]
#
# Same harness as scripts/bench-secgw.sh (generator on CPU 0, device on one
# worker on CPU 1, memif both ways), and the same options. Tunnel i protects
# 198.18.1.0/24 <-> 198.19.0.0+i/32 to one peer (198.18.0.2), SPIs 0x10000+i
# out and 0x20000+i in; ipsec-secgw gets the same SAs and policies in its own
# syntax. Outbound traffic walks the remote hosts (one flow per tunnel, at
# least 1024 flows); inbound ESP walks the SPIs. Ravelin inbound runs with
# its normal replay window (1024) and ESN; ipsec-secgw's default path has
# neither.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
args=(--tunnels "1 100 10000" -s 64 --no-floor -o /tmp/ravelin-bench-secgw/tunnels.json)
exec "$here/scripts/bench-secgw.sh" "${args[@]}" "$@"
