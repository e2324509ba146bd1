#!/usr/bin/env bash
# Build DPDK's examples/ipsec-secgw (the version of the installed libdpdk,
# 22.11) for scripts/bench-secgw.sh, from the sources Debian's dpdk-doc
# package installs under /usr/share/dpdk/examples. Nothing is downloaded and
# nothing of ipsec-secgw is committed: the sources are copied to
# build-secgw/src (ignored by git as /build*/) and built there with the
# example's own Makefile (pkg-config libdpdk).
#
#   scripts/build-secgw.sh [OUT_DIR]      # default build-secgw; prints the binary's path
#
# One change is made to the copy, marked "ravelin-bench": ipsec-secgw 22.11
# always asks for RX checksum offload and exits on ports without it, which
# are all virtual ports (net_memif, net_null, net_ring, net_pcap). The change
# leaves the request out when the port cannot do it. The lookaside-crypto
# path the benchmark uses does not look at RX checksum flags, so nothing on
# the packet path changes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/build-secgw}
src=/usr/share/dpdk/examples

[ -f "$src/ipsec-secgw/ipsec-secgw.c" ] || { echo "no $src/ipsec-secgw: apt-get install dpdk-doc" >&2; exit 1; }
pkg-config --exists libdpdk || { echo "libdpdk not found by pkg-config: apt-get install libdpdk-dev" >&2; exit 1; }
have=$(pkg-config --modversion libdpdk)
case "$have" in 22.11*) ;; *) echo "warning: libdpdk $have, the example sources are for 22.11" >&2 ;; esac

mkdir -p "$out/src"
if [ ! -f "$out/src/ipsec-secgw/ipsec-secgw.c" ]; then
    cp -r "$src/ipsec-secgw" "$src/common" "$out/src/"
fi
app=$out/src/ipsec-secgw/ipsec-secgw.c
if ! grep -q 'ravelin-bench' "$app"; then
    python3 - "$app" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
anchor = "\tlocal_port_conf.txmode.offloads |= req_tx_offloads;\n"
if s.count(anchor) != 1:
    sys.exit("ipsec-secgw.c: port_init() no longer looks as expected; not patched")
s = s.replace(anchor, anchor +
    "\n\t/* ravelin-bench: virtual ports have no RX checksum offload; only ask\n"
    "\t * for it where the port has it (the lookaside path does not use it). */\n"
    "\tlocal_port_conf.rxmode.offloads &= ~(RTE_ETH_RX_OFFLOAD_CHECKSUM &\n"
    "\t\t~dev_info.rx_offload_capa & ~req_rx_offloads);\n")
open(p, "w").write(s)
PY
fi
make -s -C "$out/src/ipsec-secgw" -j"$(nproc)" >/dev/null
bin=$out/src/ipsec-secgw/build/ipsec-secgw
[ -x "$bin" ] || { echo "build failed: no $bin" >&2; exit 1; }
echo "$bin"
