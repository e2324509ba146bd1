// Header parsing and small in-place edits on packets, shared by the worker
// stages. Everything reads through explicit length checks against the mbuf's
// data length; nothing casts packet memory to a header without one.
#pragma once

#include <cstdint>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

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
    bool fragment = false;    // IPv4 non-first fragment or with MF (ports unknown)
};

// Check the IP header at the start of the mbuf data: version, header length,
// total length within the data (Ethernet padding is trimmed off). Returns
// the drop reason or none.
DropReason validate_ip(rte_mbuf* m, IpInfo& info) noexcept;

// Fill a FlowKey (network byte order) from a validated packet. Ports are read
// for TCP, UDP and SCTP when the first 4 bytes of the L4 header are present
// and the packet is not a fragment; otherwise they are 0.
void flow_key(const rte_mbuf* m, const IpInfo& info, FlowKey& key) noexcept;

// Destination / source of a validated packet.
IpAddress ip_dst(const rte_mbuf* m, const IpInfo& info) noexcept;
IpAddress ip_src(const rte_mbuf* m, const IpInfo& info) noexcept;

// Decrement TTL / hop limit of a packet being forwarded; IPv4 checksum is
// updated incrementally (RFC 1624). Returns false if it reached zero.
bool decrement_ttl(rte_mbuf* m, IpFamily family) noexcept;

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

} // namespace ravelin::dp
