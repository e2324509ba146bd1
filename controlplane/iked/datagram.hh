// What arrived in a UDP datagram on the IKE or NAT-T port (RFC 3948 §2),
// shared by the kernel-socket transport and the data-plane transport:
//
//   NAT-T port, first four bytes zero  -> IKE after the non-ESP marker
//   NAT-T port, exactly one byte 0xff  -> NAT-keepalive
//   NAT-T port, anything else          -> ESP in UDP (the data plane's business)
//   shorter than the 28-byte IKE header -> malformed
#pragma once

#include <cstdint>

#include "message.hh"

namespace ravelin::iked {

inline constexpr std::size_t marker_len = 4;

enum class DatagramKind : uint8_t { ike, keepalive, esp, malformed };

// Classifies `data`; for `ike`, `data` is narrowed to the IKE message.
DatagramKind classify_datagram(bool nat_t_port, ike::ByteView& data);

} // namespace ravelin::iked
