// Header parsing and in-place packet edits for the worker stages.
#include "packet.hh"

#include <cstring>

#include <rte_icmp.h>

namespace ravelin::dp {

namespace {

DropReason validate_v4(rte_mbuf* m, IpInfo& info) noexcept
{
    if (!has_bytes(m, 0, sizeof(rte_ipv4_hdr))) return DropReason::runt;
    auto* ip = rte_pktmbuf_mtod(m, rte_ipv4_hdr*);
    unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
    unsigned total = rte_be_to_cpu_16(ip->total_length);
    if ((ip->version_ihl >> 4) != 4 || ihl < sizeof(rte_ipv4_hdr) || total < ihl)
        return DropReason::bad_ip_header;
    if (total > m->data_len) return DropReason::runt;
    if (total < m->data_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - total));
    uint16_t frag = rte_be_to_cpu_16(ip->fragment_offset);
    info.family = IpFamily::v4;
    info.proto = ip->next_proto_id;
    info.l3_len = uint16_t(ihl);
    info.fragment = (frag & (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0;
    return DropReason::none;
}

DropReason validate_v6(rte_mbuf* m, IpInfo& info) noexcept
{
    if (!has_bytes(m, 0, sizeof(rte_ipv6_hdr))) return DropReason::runt;
    auto* ip = rte_pktmbuf_mtod(m, rte_ipv6_hdr*);
    if ((rte_be_to_cpu_32(ip->vtc_flow) >> 28) != 6) return DropReason::bad_ip_header;
    unsigned total = sizeof(rte_ipv6_hdr) + rte_be_to_cpu_16(ip->payload_len);
    if (total > m->data_len) return DropReason::runt;
    if (total < m->data_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - total));
    info.family = IpFamily::v6;
    info.proto = ip->proto;
    info.l3_len = sizeof(rte_ipv6_hdr);
    // Extension headers are classified by their own next-header value; a
    // fragment header (44) means the ports are not where we would look.
    info.fragment = ip->proto == 44;
    return DropReason::none;
}

} // namespace

DropReason validate_ip(rte_mbuf* m, IpInfo& info) noexcept
{
    if (m->data_len < 1) return DropReason::runt;
    uint8_t version = *rte_pktmbuf_mtod(m, uint8_t*) >> 4;
    if (version == 4) return validate_v4(m, info);
    if (version == 6) return validate_v6(m, info);
    return DropReason::bad_ip_header;
}

void flow_key(const rte_mbuf* m, const IpInfo& info, FlowKey& key) noexcept
{
    std::memset(&key, 0, sizeof(key));
    key.proto = info.proto;
    if (info.family == IpFamily::v4) {
        auto* ip = rte_pktmbuf_mtod(m, const rte_ipv4_hdr*);
        key.src[0] = ip->src_addr;
        key.dst[0] = ip->dst_addr;
    } else {
        auto* ip = rte_pktmbuf_mtod(m, const rte_ipv6_hdr*);
        std::memcpy(key.src, ip->src_addr, 16);
        std::memcpy(key.dst, ip->dst_addr, 16);
    }
    bool has_ports = info.proto == proto_tcp || info.proto == proto_udp || info.proto == proto_sctp;
    if (has_ports && !info.fragment && has_bytes(m, info.l3_len, 4)) {
        auto* l4 = rte_pktmbuf_mtod_offset(m, const uint16_t*, info.l3_len);
        key.sport = l4[0];
        key.dport = l4[1];
    }
}

static IpAddress address_at(const rte_mbuf* m, const IpInfo& info, bool dst) noexcept
{
    IpAddress a;
    a.family = info.family;
    if (info.family == IpFamily::v4) {
        auto* ip = rte_pktmbuf_mtod(m, const rte_ipv4_hdr*);
        std::memcpy(a.bytes.data(), dst ? &ip->dst_addr : &ip->src_addr, 4);
    } else {
        auto* ip = rte_pktmbuf_mtod(m, const rte_ipv6_hdr*);
        std::memcpy(a.bytes.data(), dst ? ip->dst_addr : ip->src_addr, 16);
    }
    return a;
}

IpAddress ip_dst(const rte_mbuf* m, const IpInfo& info) noexcept { return address_at(m, info, true); }
IpAddress ip_src(const rte_mbuf* m, const IpInfo& info) noexcept { return address_at(m, info, false); }

bool decrement_ttl(rte_mbuf* m, IpFamily family) noexcept
{
    if (family == IpFamily::v6) {
        auto* ip = rte_pktmbuf_mtod(m, rte_ipv6_hdr*);
        if (ip->hop_limits <= 1) return false;
        ip->hop_limits--;
        return true;
    }
    auto* ip = rte_pktmbuf_mtod(m, rte_ipv4_hdr*);
    if (ip->time_to_live <= 1) return false;
    ip->time_to_live--;
    // RFC 1624 incremental update: TTL is the high byte of its 16-bit word,
    // so the header sum drops by 0x0100.
    uint32_t sum = uint32_t(rte_be_to_cpu_16(ip->hdr_checksum)) + 0x0100;
    sum = (sum & 0xffff) + (sum >> 16);
    ip->hdr_checksum = rte_cpu_to_be_16(uint16_t(sum));
    return true;
}

namespace {

bool is_icmp_error(const rte_mbuf* m, const IpInfo& info) noexcept
{
    if (!has_bytes(m, info.l3_len, 1)) return false;
    uint8_t type = *rte_pktmbuf_mtod_offset(m, const uint8_t*, info.l3_len);
    if (info.proto == proto_icmp) return type != 0 && type != 8 && type < 128;   // not echo
    if (info.proto == proto_icmpv6) return type < 128;
    return false;
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
    std::memcpy(&ip->src_addr, from.bytes.data(), 4);
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

bool make_too_big(rte_mbuf* m, const IpInfo& info, const IpAddress& from, uint16_t mtu) noexcept
{
    if (is_icmp_error(m, info) || from.family != info.family) return false;
    return info.family == IpFamily::v4 ? too_big_v4(m, info, from, mtu)
                                       : too_big_v6(m, info, from, mtu);
}

} // namespace ravelin::dp
