// IKE datagrams between packets and channel Frames (the main lcore's
// punt and transmit paths; shared/ravelin/channel.hh).
//
// A Frame carries the UDP payload and the addresses and ports; the data
// plane owns the IP and UDP headers in both directions, and the Ethernet
// header (route and next hop) on transmit.
#pragma once

#include <cstdint>
#include <string_view>

#include <rte_mbuf.h>

#include "ravelin/channel.hh"

namespace ravelin::dp {

// Why a frame was not delivered or not sent.
enum class FrameDrop : uint8_t {
    none = 0,
    no_control_plane,   // punt: nobody attached to read it
    ring_full,          // punt ring / control_tx ring full
    malformed,          // punt: not a whole IP/UDP datagram; transmit: bad version, length, family or port
    not_local,          // transmit: the source is not one of our addresses
    no_route,           // transmit: no route to the peer
    unresolved,         // transmit: the next hop did not answer within a second
    pending_full,       // transmit: too many frames already waiting for a next hop
    too_big,            // transmit: larger than the port MTU or an mbuf
    no_mbuf,            // transmit: mbuf pool empty
    count
};
inline constexpr unsigned frame_drop_count = unsigned(FrameDrop::count);

constexpr std::string_view frame_drop_name(FrameDrop d)
{
    switch (d) {
    case FrameDrop::none: return "none";
    case FrameDrop::no_control_plane: return "no_control_plane";
    case FrameDrop::ring_full: return "ring_full";
    case FrameDrop::malformed: return "malformed";
    case FrameDrop::not_local: return "not_local";
    case FrameDrop::no_route: return "no_route";
    case FrameDrop::unresolved: return "unresolved";
    case FrameDrop::pending_full: return "pending_full";
    case FrameDrop::too_big: return "too_big";
    case FrameDrop::no_mbuf: return "no_mbuf";
    case FrameDrop::count: break;
    }
    return "unknown";
}

// A punted IKE packet (data at its IP header, single segment) into `f`:
// payload, our address and port (the destination), the peer's (the
// source). Returns malformed if the IP or UDP lengths do not add up.
FrameDrop frame_from_packet(rte_mbuf* m, channel::Frame& f) noexcept;

// Check a Frame from the control plane (version, length, families, ports);
// whether `local` is ours is the caller's question.
FrameDrop check_frame(const channel::Frame& f) noexcept;

// Build the IPv4 or IPv6 + UDP datagram of a checked frame in a new mbuf
// (data at the IP header, room left for Ethernet in front). IPv4 header
// checksum and UDP checksum (mandatory over IPv6, RFC 8200 §8.1) filled
// in. `mtu` is the egress port's IP MTU. On failure returns nullptr and
// sets `why`.
rte_mbuf* packet_from_frame(rte_mempool* pool, const channel::Frame& f, uint16_t mtu, uint16_t ip_id,
                            FrameDrop& why) noexcept;

} // namespace ravelin::dp
