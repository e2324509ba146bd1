// Header parsing and in-place packet edits for the worker stages.
#include "packet.hh"

#include <algorithm>
#include <cstring>

#include <rte_icmp.h>

namespace ravelin::dp {

namespace {

bool is_icmp_error(const rte_mbuf* m, const IpInfo& info) noexcept
{
    if (!has_bytes(m, info.l3_len, 1)) return false;
    uint8_t type = *rte_pktmbuf_mtod_offset(m, const uint8_t*, info.l3_len);
    if (info.proto == proto_icmp) return type != 0 && type != 8 && type < 128;   // not echo
    if (info.proto == proto_icmpv6) return type < 128;
    return false;
}

// RFC 1812 §4.3.2.7 / RFC 4443 §2.4(e): no error to a source that cannot be
// one host (unspecified, loopback, multicast, broadcast, class E), about a
// packet sent to a group, or about a later fragment.
bool may_get_error(const rte_mbuf* m, const IpInfo& info) noexcept
{
    if (info.family == IpFamily::v4) {
        auto* ip = rte_pktmbuf_mtod(m, const rte_ipv4_hdr*);
        uint32_t src = rte_be_to_cpu_32(ip->src_addr), dst = rte_be_to_cpu_32(ip->dst_addr);
        uint8_t first = uint8_t(src >> 24);
        return first != 0 && first != 127 && src < 0xe0000000u && dst < 0xe0000000u && !info.l4_hidden;
    }
    auto* ip = rte_pktmbuf_mtod(m, const rte_ipv6_hdr*);
    static constexpr uint8_t unspecified[16] = {}, loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return ip->src_addr[0] != 0xff && std::memcmp(ip->src_addr, unspecified, 16) != 0 &&
           std::memcmp(ip->src_addr, loopback, 16) != 0;
}

bool too_big_v4(rte_mbuf* m, const IpInfo& info, const IpAddress& from, uint16_t mtu) noexcept
{
    auto* orig = rte_pktmbuf_mtod(m, rte_ipv4_hdr*);
    if (!(orig->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG))) return false;
    uint32_t body = std::min<uint32_t>(m->data_len, info.l3_len + 8u);
    rte_pktmbuf_trim(m, uint16_t(m->data_len - body));
    uint32_t orig_src = orig->src_addr;
    constexpr uint16_t hdr = sizeof(rte_ipv4_hdr) + sizeof(rte_icmp_hdr);
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(rte_pktmbuf_prepend(m, hdr));
    if (!ip) return false;
    auto* icmp = reinterpret_cast<rte_icmp_hdr*>(ip + 1);
    std::memset(ip, 0, hdr);
    ip->version_ihl = 0x45;
    ip->time_to_live = 64;
    ip->next_proto_id = proto_icmp;
    ip->total_length = rte_cpu_to_be_16(uint16_t(m->data_len));
    ip->src_addr = rte_cpu_to_be_32(from.v4_host());
    ip->dst_addr = orig_src;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    icmp->icmp_type = 3;     // destination unreachable
    icmp->icmp_code = 4;     // fragmentation needed and DF set
    icmp->icmp_seq_nb = rte_cpu_to_be_16(mtu);   // "next-hop MTU" (RFC 1191)
    uint16_t ck = rte_raw_cksum(icmp, m->data_len - sizeof(rte_ipv4_hdr));
    icmp->icmp_cksum = ck == 0xffff ? ck : uint16_t(~ck);
    return true;
}

bool too_big_v6(rte_mbuf* m, const IpInfo&, const IpAddress& from, uint16_t mtu) noexcept
{
    constexpr uint16_t hdr = sizeof(rte_ipv6_hdr) + 8;
    constexpr uint16_t min_mtu = 1280;
    if (m->data_len + hdr > min_mtu) rte_pktmbuf_trim(m, uint16_t(m->data_len + hdr - min_mtu));
    uint8_t orig_src[16];
    std::memcpy(orig_src, rte_pktmbuf_mtod(m, rte_ipv6_hdr*)->src_addr, 16);
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(rte_pktmbuf_prepend(m, hdr));
    if (!ip) return false;
    auto* icmp = reinterpret_cast<uint8_t*>(ip + 1);
    std::memset(ip, 0, hdr);
    ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
    ip->payload_len = rte_cpu_to_be_16(uint16_t(m->data_len - sizeof(rte_ipv6_hdr)));
    ip->proto = proto_icmpv6;
    ip->hop_limits = 64;
    std::memcpy(ip->src_addr, from.bytes.data(), 16);
    std::memcpy(ip->dst_addr, orig_src, 16);
    icmp[0] = 2;             // packet too big
    uint32_t be_mtu = rte_cpu_to_be_32(mtu);
    std::memcpy(icmp + 4, &be_mtu, 4);
    uint16_t ck = rte_ipv6_udptcp_cksum(ip, icmp);
    std::memcpy(icmp + 2, &ck, 2);
    return true;
}

} // namespace

FrameCheck check_frame(rte_mbuf* m, const rte_ether_addr& mac, IpInfo& info) noexcept
{
    if (m->nb_segs != 1) return {FrameAction::drop, DropReason::multi_segment};
    if (m->data_len < sizeof(rte_ether_hdr)) return {FrameAction::drop, DropReason::runt};
    const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
    const uint16_t type = eth->ether_type;
    if (type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) return {FrameAction::control};
    if (type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) && type != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6))
        return {FrameAction::drop, DropReason::unsupported};
    // Route only what was sent to us: a port may be promiscuous (some PMDs
    // have no all-multicast mode), and a gateway must not forward frames
    // between other hosts. Group MACs are only for neighbour discovery.
    const bool group = rte_is_multicast_ether_addr(&eth->dst_addr);
    if (!group && !rte_is_same_ether_addr(&eth->dst_addr, &mac)) return {FrameAction::drop, DropReason::not_for_us};
    rte_pktmbuf_adj(m, sizeof(rte_ether_hdr));
    if (DropReason r = validate_ip(m, info); r != DropReason::none) return {FrameAction::drop, r};
    if (info.family == IpFamily::v4) {
        // Neither link broadcast nor IPv4 multicast/broadcast is routed.
        const uint32_t dst = net32(rte_pktmbuf_mtod(m, const rte_ipv4_hdr*)->dst_addr);
        if (group || dst >= 0xe0000000u) return {FrameAction::drop, DropReason::not_for_us};
    } else if (rte_pktmbuf_mtod(m, const rte_ipv6_hdr*)->dst_addr[0] == 0xff) {
        // Neighbour discovery: the main lcore wants the whole frame.
        if (info.proto != proto_icmpv6) return {FrameAction::drop, DropReason::not_for_us};
        rte_pktmbuf_prepend(m, sizeof(rte_ether_hdr));
        return {FrameAction::control};
    } else if (group) {
        return {FrameAction::drop, DropReason::not_for_us};
    }
    return {FrameAction::route};
}

bool make_too_big(rte_mbuf* m, const IpInfo& info, const IpAddress& from, uint16_t mtu) noexcept
{
    if (is_icmp_error(m, info) || from.family != info.family || !may_get_error(m, info)) return false;
    // An IPv6 link's MTU is never below 1280 (RFC 8200 §5).
    if (info.family == IpFamily::v6) mtu = std::max<uint16_t>(mtu, 1280);
    return info.family == IpFamily::v4 ? too_big_v4(m, info, from, mtu)
                                       : too_big_v6(m, info, from, mtu);
}

} // namespace ravelin::dp
