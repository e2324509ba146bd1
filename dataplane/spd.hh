// Security Policy Database lookup (RFC 4301 §4.4.1) for one direction.
//
// Built on the main lcore from the policy list with DPDK's rte_acl (one
// context for IPv4, one for IPv6), then published to workers as an immutable
// object through an RCU-protected pointer; a policy change builds a new Spd.
// Workers extract a FlowKey per packet (fixed layout, network byte order) and
// classify a whole burst in one call. Among matching rules the lowest
// `priority` wins, ties go to the earlier rule (the order in the config).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <rte_byteorder.h>

#include "ravelin/sa_descriptor.hh"

struct rte_acl_ctx;

namespace ravelin::dp {

// 5-tuple in network byte order, laid out for rte_acl. For IPv4 only
// src[0] / dst[0] are used. Ports are 0 for protocols without ports.
struct FlowKey {
    uint8_t proto;
    uint8_t pad[3];
    uint32_t src[4];
    uint32_t dst[4];
    uint16_t sport;
    uint16_t dport;
};

// What a matching policy says, as the worker needs it.
struct SpdEntry {
    PolicyAction action = PolicyAction::discard;
    uint32_t sa_slot = 0;   // outbound protect: index into the SA table
    uint32_t reqid = 0;     // inbound protect: the SA that must have carried it
    uint32_t rule = 0;      // index of the policy in the input list (diagnostics)
};

// A policy with the SA table slot and reqid it resolved to.
struct SpdRule {
    PolicyDescriptor policy;
    uint32_t sa_slot = 0;
    uint32_t reqid = 0;
};

// The selectors an inbound SA's traffic must match (RFC 4301 §5.2 step 4):
// checked on every decrypted packet. Built from the one inbound policy
// that protects with the SA; when there are several (or none), `exact` is
// false and the worker asks the inbound SPD instead.
struct SaSelector {
    bool exact = false;
    IpFamily family = IpFamily::v4;
    uint8_t proto = 0;                 // 0 = any
    uint32_t local[4]{}, local_mask[4]{};    // network order; "local" = destination
    uint32_t remote[4]{}, remote_mask[4]{};  // "remote" = source
    PortRange local_ports, remote_ports;     // host order
};

SaSelector make_selector(const PolicyDescriptor& inbound_policy) noexcept;

inline bool selector_matches(const SaSelector& s, const FlowKey& k, IpFamily family,
                             bool l4_hidden = false) noexcept
{
    if (family != s.family || (l4_hidden && s.proto != 0)) return false;
    unsigned words = family == IpFamily::v4 ? 1 : 4;
    for (unsigned i = 0; i < words; ++i)
        if (((k.dst[i] & s.local_mask[i]) != s.local[i]) | ((k.src[i] & s.remote_mask[i]) != s.remote[i]))
            return false;
    if (s.proto == 0) return true;
    return k.proto == s.proto && s.local_ports.contains(rte_be_to_cpu_16(k.dport)) &&
           s.remote_ports.contains(rte_be_to_cpu_16(k.sport));
}

class Spd {
public:
    // `direction` selects which packet field is "local": the source for
    // outbound, the destination for inbound. Rules of the other direction
    // are ignored. `name` must be unique among live Spd objects (rte_acl
    // contexts are named). Returns nullptr with `error` set on failure.
    static std::unique_ptr<Spd> build(SaDirection direction, std::span<const SpdRule> rules,
                                      const std::string& name, std::string& error);
    ~Spd();
    Spd(const Spd&) = delete;
    Spd& operator=(const Spd&) = delete;

    // Classify n keys of one family (n <= 64). out[i] is the matching entry
    // or nullptr when no policy matches.
    void lookup_v4(const FlowKey* const* keys, uint32_t n, const SpdEntry** out) const noexcept;
    void lookup_v6(const FlowKey* const* keys, uint32_t n, const SpdEntry** out) const noexcept;

    std::size_t size() const noexcept { return entries_.size(); }
    // Does any rule select on protocol or ports? Then a packet whose L4
    // header is hidden (IpInfo::l4_hidden) cannot be classified safely.
    bool needs_l4() const noexcept { return needs_l4_; }
    // Unique to this Spd among every Spd the process builds: an answer
    // remembered with it (a worker's last lookup) is valid exactly while
    // the Spd it came from is the one in use.
    uint64_t generation() const noexcept { return generation_; }

private:
    Spd() = default;
    rte_acl_ctx* v4_ = nullptr;
    rte_acl_ctx* v6_ = nullptr;
    std::vector<SpdEntry> entries_;   // userdata of ACL rule i is i + 1
    bool needs_l4_ = false;
    uint64_t generation_ = 0;
};

} // namespace ravelin::dp
