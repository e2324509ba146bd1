// Header parsing and small in-place edits on packets, shared by the worker
// stages. Everything reads through explicit length checks against the mbuf's
// data length; nothing casts packet memory to a header without one.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <rte_branch_prediction.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#include "byteorder.hh"
#include "counters.hh"
#include "spd.hh"
#include "ravelin/types.hh"

namespace ravelin::dp {

inline constexpr uint8_t proto_icmp = 1;
inline constexpr uint8_t proto_tcp = 6;
inline constexpr uint8_t proto_udp = 17;
inline constexpr uint8_t proto_esp = 50;
inline constexpr uint8_t proto_icmpv6 = 58;
inline constexpr uint8_t proto_sctp = 132;
inline constexpr uint16_t ike_port = 500;
inline constexpr uint16_t natt_port = 4500;

// Facts about an IP packet whose data starts at the IP header, after
// validate_ip() checked and trimmed it.
struct IpInfo {
    IpFamily family = IpFamily::v4;
    uint8_t proto = 0;        // IPv4 protocol / IPv6 next header
    uint16_t l3_len = 0;      // IP header length (IPv6: 40, no extension headers)
    bool fragment = false;    // any fragment (IPv4 MF or offset, IPv6 fragment header)
    // The L4 protocol and ports are not where we look: a non-initial IPv4
    // fragment, or an IPv6 extension header we do not walk. Such a packet
    // cannot be matched against port or protocol selectors (RFC 4301 §7).
    bool l4_hidden = false;
    uint8_t reserved[2]{};    // to 8 octets: see set_info()
};
static_assert(sizeof(IpInfo) == 8 && offsetof(IpInfo, proto) == 1 && offsetof(IpInfo, l3_len) == 2 &&
              offsetof(IpInfo, fragment) == 4 && offsetof(IpInfo, l4_hidden) == 5);

// IPv6 extension headers (RFC 8200 §4, IANA): their presence hides the
// upper-layer protocol from a look at the fixed header.
constexpr bool is_ipv6_extension(uint8_t nh)
{
    switch (nh) {
    case 0: case 43: case 44: case 60: case 135: case 139: case 140: case 253: case 254: return true;
    default: return false;
    }
}

// Turn the packet (data at its IP header) into an ICMP "fragmentation
// needed" (IPv4) or ICMPv6 "packet too big" error addressed to its source,
// in place: the original header and the start of its payload are kept as
// the error's body (RFC 792, RFC 4443 §3.2). `from` is our address to send
// it from. Returns false if the packet must not get an error (ICMP error
// itself, IPv4 without DF, not enough headroom).
bool make_too_big(rte_mbuf* m, const IpInfo& info, const IpAddress& from, uint16_t mtu) noexcept;


// Does the mbuf carry this many bytes contiguously from offset?
inline bool has_bytes(const rte_mbuf* m, uint32_t offset, uint32_t len) noexcept
{
    return uint32_t(m->data_len) >= offset && uint32_t(m->data_len) - offset >= len;
}

// The helpers below run for every packet, some twice; they are inline so
// the worker's stages do not pay a call into another translation unit.

namespace packet_detail {

// Write all of an IpInfo with one 8-octet store. The worker copies it into
// its bursts right after validate_ip(), and a load spanning several
// smaller stores still in the store buffer cannot be forwarded (a stall
// per packet).
[[gnu::always_inline]] inline void set_info(IpInfo& info, IpFamily family, uint8_t proto, uint16_t l3_len, bool fragment,
                     bool l4_hidden) noexcept
{
    const uint64_t v = uint64_t(family) | uint64_t(proto) << 8 | uint64_t(l3_len) << 16 |
                       uint64_t(fragment) << 32 | uint64_t(l4_hidden) << 40;
    static_assert(std::endian::native == std::endian::little, "IpInfo packing assumes little endian");
    std::memcpy(static_cast<void*>(&info), &v, sizeof(info));
}

// The IpInfo of a checked header (validate_v4/v6, and decapsulation, which
// checks the inner header itself: esp_in.cc).
[[gnu::always_inline]] inline void set_info_v4(IpInfo& info, const rte_ipv4_hdr* ip, unsigned ihl) noexcept
{
    // Flags and offset tested in network order against swapped constants:
    // no byte swap per packet.
    const uint16_t frag = ip->fragment_offset;
    // The first fragment (offset 0) still carries the L4 header.
    set_info(info, IpFamily::v4, ip->next_proto_id, uint16_t(ihl),
             (frag & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0,
             (frag & rte_cpu_to_be_16(RTE_IPV4_HDR_OFFSET_MASK)) != 0);
}
[[gnu::always_inline]] inline void set_info_v6(IpInfo& info, const rte_ipv6_hdr* ip) noexcept
{
    set_info(info, IpFamily::v6, ip->proto, sizeof(rte_ipv6_hdr), ip->proto == 44, is_ipv6_extension(ip->proto));
}

inline DropReason validate_v4(rte_mbuf* m, IpInfo& info) noexcept
{
    if (!has_bytes(m, 0, sizeof(rte_ipv4_hdr))) return DropReason::runt;
    auto* ip = rte_pktmbuf_mtod(m, rte_ipv4_hdr*);
    unsigned ihl = (ip->version_ihl & 0x0f) * 4u;
    unsigned total = net16(ip->total_length);
    if ((ip->version_ihl >> 4) != 4 || ihl < sizeof(rte_ipv4_hdr) || total < ihl)
        return DropReason::bad_ip_header;
    if (total > m->data_len) return DropReason::runt;
    if (total < m->data_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - total));
    set_info_v4(info, ip, ihl);
    return DropReason::none;
}

inline DropReason validate_v6(rte_mbuf* m, IpInfo& info) noexcept
{
    if (!has_bytes(m, 0, sizeof(rte_ipv6_hdr))) return DropReason::runt;
    auto* ip = rte_pktmbuf_mtod(m, rte_ipv6_hdr*);
    if ((net32(ip->vtc_flow) >> 28) != 6) return DropReason::bad_ip_header;
    unsigned total = sizeof(rte_ipv6_hdr) + net16(ip->payload_len);
    if (total > m->data_len) return DropReason::runt;
    if (total < m->data_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - total));
    set_info_v6(info, ip);
    return DropReason::none;
}

inline IpAddress address_at(const rte_mbuf* m, const IpInfo& info, bool dst) noexcept
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

} // namespace packet_detail

// Check the IP header at the start of the mbuf data: version, header length,
// total length within the data (Ethernet padding is trimmed off). Returns
// the drop reason or none.
inline DropReason validate_ip(rte_mbuf* m, IpInfo& info) noexcept
{
    if (m->data_len < 1) return DropReason::runt;
    uint8_t version = *rte_pktmbuf_mtod(m, uint8_t*) >> 4;
    if (version == 4) return packet_detail::validate_v4(m, info);
    if (version == 6) return packet_detail::validate_v6(m, info);
    return DropReason::bad_ip_header;
}

// What the worker does with a received Ethernet frame (check_frame).
enum class FrameAction : uint8_t {
    route,     // an IP packet to route or deliver: Ethernet header off, IpInfo filled
    control,   // ARP or IPv6 neighbour discovery for the main lcore: the whole frame
    drop,      // for `reason`
};
struct FrameCheck {
    FrameAction action;
    DropReason reason = DropReason::none;
};

// Every check on a frame received on a port with address `mac`: one
// segment, IPv4 or IPv6 (ARP and neighbour discovery go to the main lcore),
// sent to us or to a group (only neighbour discovery may be), a valid IP
// header (validate_ip), a unicast destination. On `route` the Ethernet
// header is off and `info` is the packet's. Out of line: the worker asks
// it only about the frames check_frame_fast() passes on.
FrameCheck check_frame(rte_mbuf* m, const rte_ether_addr& mac, IpInfo& info) noexcept;

// A port's MAC address as check_frame_fast() compares it: the six octets
// in a word's low 48 bits, in memory order.
inline uint64_t mac_word(const rte_ether_addr& mac) noexcept
{
    uint64_t w = 0;
    std::memcpy(&w, mac.addr_bytes, sizeof mac.addr_bytes);
    return w;
}

// check_frame() for the frame nearly every packet is: one segment, sent to
// this port's address, IPv4 with a 20-octet header, not a fragment, no
// Ethernet padding, a unicast destination. Five word compares instead of
// the general path's walk; the answer and the mbuf afterwards are exactly
// check_frame()'s "route" (packet_test checks both on mutated frames).
// Any other frame returns false with the mbuf untouched: check_frame()
// then decides it.
[[gnu::always_inline]] inline bool check_frame_fast(rte_mbuf* m, uint64_t port_mac, IpInfo& info) noexcept
{
    constexpr uint32_t eth = sizeof(rte_ether_hdr);
    const uint32_t len = m->data_len;
    if (unlikely(m->nb_segs != 1 || len < eth + sizeof(rte_ipv4_hdr))) return false;
    const uint8_t* f = rte_pktmbuf_mtod(m, const uint8_t*);
    uint64_t dst_mac;          // and two octets of the source address
    uint32_t type_vihl;        // EtherType, version and IHL, TOS
    uint16_t total, frag;
    std::memcpy(&dst_mac, f, 8);
    std::memcpy(&type_vihl, f + 12, 4);
    std::memcpy(&total, f + eth + offsetof(rte_ipv4_hdr, total_length), 2);
    std::memcpy(&frag, f + eth + offsetof(rte_ipv4_hdr, fragment_offset), 2);
    // Ours: the low 48 bits equal and not a group address (bit 0 of the
    // first octet), whatever the port's own address is.
    const bool ours = (((dst_mac ^ port_mac) << 16) | (dst_mac & 1)) == 0;
    static_assert(std::endian::native == std::endian::little);
    const bool v4_plain = (type_vihl & 0x00ffffffu) == 0x00450008u;   // 08 00 45: IPv4, IHL 5
    const bool exact = net16(total) == len - eth;
    const bool whole = (frag & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) == 0;
    const bool unicast = f[eth + offsetof(rte_ipv4_hdr, dst_addr)] < 0xe0;   // not 224/3
    if (!(ours & v4_plain & exact & whole & unicast)) return false;
    packet_detail::set_info(info, IpFamily::v4, f[eth + offsetof(rte_ipv4_hdr, next_proto_id)],
                            sizeof(rte_ipv4_hdr), false, false);
    m->data_off = uint16_t(m->data_off + eth);
    m->data_len = uint16_t(len - eth);
    m->pkt_len -= eth;
    return true;
}

// Fill a FlowKey (network byte order) from a validated packet. Ports are read
// for TCP, UDP and SCTP when the first 4 bytes of the L4 header are present
// and visible (not l4_hidden); otherwise they are 0.
inline void flow_key(const rte_mbuf* m, const IpInfo& info, FlowKey& key) noexcept
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
    if (has_ports && !info.l4_hidden && has_bytes(m, info.l3_len, 4)) {
        auto* l4 = rte_pktmbuf_mtod_offset(m, const uint16_t*, info.l3_len);
        key.sport = l4[0];
        key.dport = l4[1];
    }
}

// Destination / source of a validated packet.
inline IpAddress ip_dst(const rte_mbuf* m, const IpInfo& info) noexcept
{
    return packet_detail::address_at(m, info, true);
}
inline IpAddress ip_src(const rte_mbuf* m, const IpInfo& info) noexcept
{
    return packet_detail::address_at(m, info, false);
}

// Decrement TTL / hop limit of a packet being forwarded; IPv4 checksum is
// updated incrementally (RFC 1624). Returns false if it reached zero.
inline bool decrement_ttl(rte_mbuf* m, IpFamily family) noexcept
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
    // so the header sum drops by 0x0100. Added to the field as it lies in
    // memory: a one's complement sum does not depend on byte order
    // (RFC 1071 §2(B)), so no swap per packet, only a swapped constant.
    uint32_t sum = uint32_t(ip->hdr_checksum) + rte_cpu_to_be_16(0x0100);
    sum = (sum & 0xffff) + (sum >> 16);
    ip->hdr_checksum = uint16_t(sum);
    return true;
}

} // namespace ravelin::dp
