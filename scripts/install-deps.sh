#!/usr/bin/env bash
# Install everything Ravelin needs to build and test on Debian 12, and make
# sure hugepages are available for DPDK. Idempotent: packages already
# installed are skipped (and apt-get is not run at all when nothing is
# missing); hugepages are only touched when fewer than needed are free.
#
# Usage (as root): scripts/install-deps.sh
#   HUGEPAGES=N   minimum number of free 2 MB hugepages (default 512)
set -euo pipefail

HUGEPAGES=${HUGEPAGES:-512}

die() { echo "install-deps: error: $*" >&2; exit 1; }
log() { echo "install-deps: $*"; }

[[ $(id -u) -eq 0 ]] || die "must run as root (try: sudo $0)"

packages=(
    # build
    meson ninja-build pkg-config g++ clang libclang-rt-14-dev
    # libraries
    libdpdk-dev dpdk dpdk-dev libipsec-mb-dev libssl-dev
    libtomlplusplus-dev libspdlog-dev libfmt-dev libcli11-dev
    nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
    prometheus-cpp-dev
    # test tools
    python3-scapy python3-cryptography python3-pytest
    iperf3 iproute2 iputils-ping procps nftables ethtool tcpdump valgrind
    # a real Prometheus server scrapes ravelin-iked in the interop tests;
    # systemd-analyze checks the unit files
    prometheus systemd
    # the IKE interop peer: strongSwan 5.9.8 with user-space ESP
    # (kernel-libipsec, in libcharon-extra-plugins), x25519, openssl and gcm
    strongswan-charon strongswan-swanctl strongswan-pki
    libcharon-extra-plugins libstrongswan-extra-plugins
    libstrongswan-standard-plugins
    # the benchmark against ipsec-secgw builds it from dpdk-doc's sources;
    # its plot needs matplotlib
    dpdk-doc python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    log "all ${#packages[@]} packages already installed"
fi

# --- hugepages ---------------------------------------------------------------
hp_dir=/sys/kernel/mm/hugepages/hugepages-2048kB
[[ -d $hp_dir ]] || die "kernel has no 2 MB hugepage support ($hp_dir missing)"

mkdir -p /dev/hugepages
if ! mountpoint -q /dev/hugepages; then
    mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages ||
        die "cannot mount hugetlbfs on /dev/hugepages"
    log "mounted hugetlbfs on /dev/hugepages"
fi

free=$(cat "$hp_dir/free_hugepages")
if ((free < HUGEPAGES)); then
    total=$(cat "$hp_dir/nr_hugepages")
    want=$((total + HUGEPAGES - free))
    log "free 2 MB hugepages: $free, raising nr_hugepages $total -> $want"
    echo "$want" > "$hp_dir/nr_hugepages" || die "cannot set nr_hugepages"
    free=$(cat "$hp_dir/free_hugepages")
fi
((free >= HUGEPAGES)) ||
    die "only $free free 2 MB hugepages, need $HUGEPAGES (memory too fragmented? stale DPDK files in /dev/hugepages?)"
log "hugepages ok: $free free 2 MB pages on /dev/hugepages"
