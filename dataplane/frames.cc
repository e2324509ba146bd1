// IKE datagrams <-> channel Frames. Runs on the main lcore only.
//
//   punt:      | IPv4/IPv6 | UDP | payload |  ->  Frame{local = dst, remote = src, payload}
//   transmit:  Frame  ->  | IPv4/IPv6 | UDP | payload |  (Ethernet added by the caller)
//
// UDP header (RFC 768):
//    0      7 8     15 16    23 24    31
//   +--------+--------+--------+--------+
//   |   Source Port   | Destination Port|
//   +--------+--------+--------+--------+
//   |     Length      |    Checksum     |
//   +--------+--------+--------+--------+
#include "frames.hh"

#include <cstring>

#include <rte_ip.h>
#include <rte_udp.h>

#include "packet.hh"

namespace ravelin::dp {

namespace {

constexpr uint8_t ip_ttl = 64;
constexpr uint16_t eth_room = sizeof(rte_ether_hdr);

bool valid_family(IpFamily f) { return f == IpFamily::v4 || f == IpFamily::v6; }

} // namespace

FrameDrop frame_from_packet(rte_mbuf* m, channel::Frame& f) noexcept
{
    IpInfo info;
    if (m->nb_segs != 1 || validate_ip(m, info) != DropReason::none) return FrameDrop::malformed;
    if (info.proto != proto_udp || info.fragment || !has_bytes(m, info.l3_len, sizeof(rte_udp_hdr)))
        return FrameDrop::malformed;
    const auto* udp = rte_pktmbuf_mtod_offset(m, const rte_udp_hdr*, info.l3_len);
    uint32_t udp_len = rte_be_to_cpu_16(udp->dgram_len);
    if (udp_len < sizeof(rte_udp_hdr) || !has_bytes(m, info.l3_len, udp_len)) return FrameDrop::malformed;
    uint32_t payload = udp_len - uint32_t(sizeof(rte_udp_hdr));
    if (payload == 0 || payload > channel::max_frame_payload) return FrameDrop::malformed;
    f.version = channel::version;
    f.length = uint16_t(payload);
    f.local_port = rte_be_to_cpu_16(udp->dst_port);
    f.remote_port = rte_be_to_cpu_16(udp->src_port);
    f.local = ip_dst(m, info);
    f.remote = ip_src(m, info);
    std::memcpy(f.payload.data(), rte_pktmbuf_mtod_offset(m, const uint8_t*, info.l3_len + sizeof(rte_udp_hdr)),
                payload);
    return FrameDrop::none;
}

FrameDrop check_frame(const channel::Frame& f) noexcept
{
    if (f.version != channel::version || f.length == 0 || f.length > channel::max_frame_payload)
        return FrameDrop::malformed;
    if (!valid_family(f.local.family) || f.local.family != f.remote.family) return FrameDrop::malformed;
    if (f.local_port == 0 || f.remote_port == 0) return FrameDrop::malformed;
    return FrameDrop::none;
}

rte_mbuf* packet_from_frame(rte_mempool* pool, const channel::Frame& f, uint16_t mtu, uint16_t ip_id,
                            FrameDrop& why) noexcept
{
    const bool v4 = f.local.family == IpFamily::v4;
    const uint32_t ip_hdr = v4 ? sizeof(rte_ipv4_hdr) : sizeof(rte_ipv6_hdr);
    const uint32_t udp_len = sizeof(rte_udp_hdr) + f.length;
    const uint32_t total = ip_hdr + udp_len;
    if (total > mtu) {
        why = FrameDrop::too_big;
        return nullptr;
    }
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    if (!m) {
        why = FrameDrop::no_mbuf;
        return nullptr;
    }
    if (rte_pktmbuf_headroom(m) < eth_room || rte_pktmbuf_tailroom(m) < total) {
        rte_pktmbuf_free(m);
        why = FrameDrop::too_big;
        return nullptr;
    }
    auto* p = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(total)));
    auto* udp = reinterpret_cast<rte_udp_hdr*>(p + ip_hdr);
    udp->src_port = rte_cpu_to_be_16(f.local_port);
    udp->dst_port = rte_cpu_to_be_16(f.remote_port);
    udp->dgram_len = rte_cpu_to_be_16(uint16_t(udp_len));
    udp->dgram_cksum = 0;
    std::memcpy(udp + 1, f.payload.data(), f.length);
    if (v4) {
        auto* ip = reinterpret_cast<rte_ipv4_hdr*>(p);
        std::memset(ip, 0, sizeof *ip);
        ip->version_ihl = 0x45;
        ip->total_length = rte_cpu_to_be_16(uint16_t(total));
        ip->packet_id = rte_cpu_to_be_16(ip_id);
        ip->time_to_live = ip_ttl;   // DF clear: routers may fragment a large IKE message
        ip->next_proto_id = proto_udp;
        std::memcpy(&ip->src_addr, f.local.bytes.data(), 4);
        std::memcpy(&ip->dst_addr, f.remote.bytes.data(), 4);
        ip->hdr_checksum = rte_ipv4_cksum(ip);
        udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
    } else {
        auto* ip = reinterpret_cast<rte_ipv6_hdr*>(p);
        ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
        ip->payload_len = rte_cpu_to_be_16(uint16_t(udp_len));
        ip->proto = proto_udp;
        ip->hop_limits = ip_ttl;
        std::memcpy(ip->src_addr, f.local.bytes.data(), 16);
        std::memcpy(ip->dst_addr, f.remote.bytes.data(), 16);
        udp->dgram_cksum = rte_ipv6_udptcp_cksum(ip, udp);   // never 0: the function maps 0 to 0xffff
    }
    why = FrameDrop::none;
    return m;
}

} // namespace ravelin::dp
