// ESP encapsulation and decapsulation on one packet (RFC 4303, RFC 3948).
//
// These are the per-packet steps of the outbound and inbound paths; the
// worker (worker.cc) does classification, SA lookup, hand-off, routing and
// TX around them. Both are noexcept, allocate nothing and return the drop
// reason (DropReason::none on success); the caller counts and frees.
#pragma once

#include <cstdint>

#include <rte_mbuf.h>
#include <rte_ring.h>

#include "counters.hh"
#include "packet.hh"
#include "sa.hh"

namespace ravelin::dp {

// What a worker hands to the ESP steps.
struct EspContext {
    IMB_MGR* mgr = nullptr;
    rte_ring* events = nullptr;        // DataplaneEvent ring (multi-producer), may be null
    WorkerCounters* counters = nullptr;
    uint64_t now_tsc = 0;              // read once per burst
};

// Outbound. On entry the mbuf's data starts at the inner IP header (the
// Ethernet header already removed) and holds exactly the IP packet.
// On success the data starts at the outer IP header (tunnel mode) or the
// original, now ESP-protected IP header (transport mode), with at least 14
// bytes of headroom left for the Ethernet header; L3 length in pkt_len.
// Checks the MTU (DropReason::mtu_exceeded; the caller then sends the ICMP
// error), lifetimes and sequence exhaustion, raising events as needed.
DropReason esp_encap(EspContext& ctx, DpSa& sa, rte_mbuf* m) noexcept;

// The same for a burst's packets, each with its SA (sas[i] seals ms[i];
// each SA's packets in order): result[i] is what esp_encap() would have
// returned for ms[i] had the packets gone one by one. The body is chosen
// once per stretch of SAs of one kind, and an SA's counters are written
// once per stretch of its packets (lifetime thresholds are still checked
// packet by packet). While a packet is sealed, the keys of the packet two
// on are fetched if its SA is another (sa_prefetch_keys).
void esp_encap_burst(EspContext& ctx, DpSa* const* sas, rte_mbuf* const* ms, uint16_t n, DropReason* result) noexcept;

// Inbound. On entry the data starts at the outer IP header; `esp_offset` is
// the offset of the ESP header from there (after UDP for ESP-in-UDP).
// Verifies replay, ICV, padding; on success the data starts at the inner IP
// header (tunnel) or the restored IP header (transport) and holds exactly it,
// and `inner` holds its IpInfo (what validate_ip() would give, without a
// second parse). The inbound policy check is the caller's (it needs the SPD).
DropReason esp_decap(EspContext& ctx, DpSa& sa, rte_mbuf* m, uint32_t esp_offset, IpInfo& inner) noexcept;
inline DropReason esp_decap(EspContext& ctx, DpSa& sa, rte_mbuf* m, uint32_t esp_offset) noexcept
{
    IpInfo inner;
    return esp_decap(ctx, sa, m, esp_offset, inner);
}

// The bodies above for an SA whose kind is generic (sa.hh, EspKind):
// esp_encap()/esp_decap() take them unless the SA was given a specialised
// kind at install. Exposed so tests can check both give the same result.
DropReason esp_encap_generic(EspContext& ctx, DpSa& sa, rte_mbuf* m) noexcept;
DropReason esp_decap_generic(EspContext& ctx, DpSa& sa, rte_mbuf* m, uint32_t esp_offset, IpInfo& inner) noexcept;

// ECN on decapsulation per RFC 6040 §4.2 (normal mode). Returns false if the
// packet must be dropped (outer CE over a not-ECT inner). Exposed for tests.
bool ecn_decapsulate(uint8_t outer_tos, uint8_t& inner_tos) noexcept;

} // namespace ravelin::dp
