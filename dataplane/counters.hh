// Drop reasons and per-worker counters.
//
// Every packet the data plane does not forward leaves through one drop path,
// which counts it under a named reason and frees it. Counters are written by
// one worker only; readers (telemetry thread, main lcore) use relaxed loads,
// so the worker pays a plain add, never a locked instruction.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace ravelin::dp {

enum class DropReason : uint8_t {
    none = 0,
    runt,
    bad_ip_header,
    unsupported,
    multi_segment,
    no_sa,
    replay,
    auth_failed,
    bad_padding,
    bad_next_header,
    policy_mismatch,
    policy_discard,
    no_policy,
    sa_expired,
    seq_exhausted,
    ttl_expired,
    no_route,
    neighbor_unresolved,
    mtu_exceeded,
    no_buffer_space,
    handoff_full,
    punt_full,
    tx_full,
    not_for_us,
    ecn_not_ect,
    l4_hidden,
    no_sa_acquire,
    count
};

inline constexpr std::size_t drop_reason_count = std::size_t(DropReason::count);

struct DropReasonInfo {
    DropReason reason;
    std::string_view name;
    std::string_view help;
};

// Indexed by DropReason; the static_assert below keeps it in step.
inline constexpr std::array<DropReasonInfo, drop_reason_count> drop_reasons{{
    {DropReason::none, "none", "not dropped"},
    {DropReason::runt, "runt", "packet shorter than its headers say"},
    {DropReason::bad_ip_header, "bad_ip_header", "IP version, header length or total length inconsistent"},
    {DropReason::unsupported, "unsupported", "not IPv4/IPv6/ARP, or a header we do not parse"},
    {DropReason::multi_segment, "multi_segment", "chained mbuf (jumbo or scattered RX) not supported"},
    {DropReason::no_sa, "no_sa", "inbound ESP whose SPI matches no SA"},
    {DropReason::replay, "replay", "sequence number already seen or left of the replay window"},
    {DropReason::auth_failed, "auth_failed", "ICV verification failed"},
    {DropReason::bad_padding, "bad_padding", "ESP padding bytes or pad length invalid"},
    {DropReason::bad_next_header, "bad_next_header", "ESP next header does not fit the SA mode"},
    {DropReason::policy_mismatch, "policy_mismatch", "decrypted packet does not match the SA's policy"},
    {DropReason::policy_discard, "policy_discard", "SPD entry says discard"},
    {DropReason::no_policy, "no_policy", "no SPD entry matches (default discard)"},
    {DropReason::sa_expired, "sa_expired", "SA reached its hard lifetime"},
    {DropReason::seq_exhausted, "seq_exhausted", "outbound sequence number space used up"},
    {DropReason::ttl_expired, "ttl_expired", "TTL or hop limit reached zero"},
    {DropReason::no_route, "no_route", "no route to the destination"},
    {DropReason::neighbor_unresolved, "neighbor_unresolved", "next-hop MAC not resolved yet (ARP/ND pending)"},
    {DropReason::mtu_exceeded, "mtu_exceeded", "ESP packet would exceed the outer MTU"},
    {DropReason::no_buffer_space, "no_buffer_space", "not enough headroom or tailroom for ESP"},
    {DropReason::handoff_full, "handoff_full", "ring to the SA's owner worker was full"},
    {DropReason::punt_full, "punt_full", "punt ring to the control plane was full"},
    {DropReason::tx_full, "tx_full", "port TX queue full"},
    {DropReason::not_for_us, "not_for_us", "addressed to the gateway but no handler (not ESP, IKE, ICMP echo)"},
    {DropReason::ecn_not_ect, "ecn_not_ect", "outer header says CE but the inner packet is not ECN-capable (RFC 6040)"},
    {DropReason::l4_hidden, "l4_hidden", "fragment or IPv6 extension header hides the ports a port/protocol policy needs (RFC 4301 7)"},
    {DropReason::no_sa_acquire, "no_sa_acquire", "protect policy whose Child SA is not negotiated yet (acquire raised to the control plane)"},
}};

constexpr bool drop_table_in_order()
{
    for (std::size_t i = 0; i < drop_reasons.size(); ++i)
        if (std::size_t(drop_reasons[i].reason) != i) return false;
    return true;
}
static_assert(drop_table_in_order(), "drop_reasons must be indexed by DropReason");

constexpr std::string_view drop_reason_name(DropReason r)
{
    return r < DropReason::count ? drop_reasons[std::size_t(r)].name : "unknown";
}

// Counter with one writer. inc() compiles to load + add + store without a
// lock prefix; the relaxed atomics only make concurrent reads well defined.
class Counter {
public:
    void inc(uint64_t n = 1) noexcept
    {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<uint64_t> v_{0};
};

// Things a worker counts that are not drops.
struct WorkerStats {
    Counter rx_packets;
    Counter tx_packets;
    Counter encrypted;
    Counter decrypted;
    Counter bypassed;
    Counter punted_ike;      // IKE (UDP 500/4500 non-ESP) for the control plane
    Counter punted_control;  // ARP, ND, ICMP echo for the main lcore
    Counter handoff_out;     // handed to the SA's owner worker
    Counter handoff_in;
    Counter events_raised;
    Counter events_lost;     // event ring full; raised again later
    Counter icmp_errors_sent;
    Counter acquires_raised; // trap policy hit: acquire queued for the main lcore
    Counter acquires_lost;   // acquire ring full
    // IPv4 lookups the flow cache did not answer, classified by rte_acl:
    // one per packet whose tuple differs from the packet before's (a tuple
    // twice in one burst before it is known counts twice). Only lookups
    // that have a cache (not clear packets from the unprotected side).
    Counter spd_cache_misses;
    // Busy-time accounting of the poll loop, in TSC cycles, added once per
    // loop iteration (not per packet): poll_cycles is every cycle of the
    // loop, busy_cycles those of iterations that received, handed over or
    // sent at least one packet. busy / poll is the worker's busy ratio.
    Counter busy_cycles;
    Counter poll_cycles;
};

struct alignas(64) WorkerCounters {
    std::array<Counter, drop_reason_count> drops;
    WorkerStats stats;

    void drop(DropReason r, uint64_t n = 1) noexcept { drops[std::size_t(r)].inc(n); }
};

} // namespace ravelin::dp
