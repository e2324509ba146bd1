// SPD lookup on DPDK rte_acl (RFC 4301 §4.4.1).
//
// Built on the main lcore: the policies of one direction are checked, ranked
// by (priority, config order) and turned into one rte_acl context per
// address family over the FlowKey layout. rte_acl returns the matching rule
// with the highest priority value, so rank r becomes RTE_ACL_MAX_PRIORITY - r:
// every rule gets a distinct value and ties never reach rte_acl (which does
// not define how it breaks them). A rule's userdata is 1 + its index in
// entries_; 0 is rte_acl's "no match".
//
// Ports are selectors only for TCP, UDP and SCTP, the protocols flow_key()
// reads ports for; every other packet, ICMP included, carries ports 0. A
// policy that names ports for any other protocol (or for "any") is refused
// rather than silently matching port-less packets through port 0.
//
// On a worker: one rte_acl_classify per burst and family, results on the
// stack, no allocation. A family without rules has no context and misses.
#include "spd.hh"

#include <atomic>
#include <rte_acl.h>
#include <rte_errno.h>
#include <rte_memory.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <numeric>

namespace ravelin::dp {

namespace {

// rte_acl reads the first field as one byte, then each input_index as a
// group of 4 bytes: proto | src (1 or 4 groups) | dst (1 or 4) | ports.
static_assert(offsetof(FlowKey, proto) == 0);
static_assert(offsetof(FlowKey, src) == 4);
static_assert(offsetof(FlowKey, dst) == 20);
static_assert(offsetof(FlowKey, sport) == 36);
static_assert(offsetof(FlowKey, dport) == 38);
static_assert(sizeof(FlowKey) == 40);

enum V4Field : uint8_t { v4_proto, v4_src, v4_dst, v4_sport, v4_dport, v4_fields };
enum V6Field : uint8_t { v6_proto, v6_src, v6_dst = v6_src + 4, v6_sport = v6_dst + 4, v6_dport, v6_fields };

RTE_ACL_RULE_DEF(AclRule4, v4_fields);
RTE_ACL_RULE_DEF(AclRule6, v6_fields);

constexpr rte_acl_field_def field(uint8_t type, uint8_t size, uint8_t index, uint8_t input, std::size_t offset)
{
    return rte_acl_field_def{type, size, index, input, uint32_t(offset)};
}

constexpr std::array<rte_acl_field_def, v4_fields> v4_defs = {
    field(RTE_ACL_FIELD_TYPE_BITMASK, 1, v4_proto, 0, offsetof(FlowKey, proto)),
    field(RTE_ACL_FIELD_TYPE_MASK, 4, v4_src, 1, offsetof(FlowKey, src)),
    field(RTE_ACL_FIELD_TYPE_MASK, 4, v4_dst, 2, offsetof(FlowKey, dst)),
    field(RTE_ACL_FIELD_TYPE_RANGE, 2, v4_sport, 3, offsetof(FlowKey, sport)),
    field(RTE_ACL_FIELD_TYPE_RANGE, 2, v4_dport, 3, offsetof(FlowKey, dport)),
};

constexpr std::array<rte_acl_field_def, v6_fields> make_v6_defs()
{
    std::array<rte_acl_field_def, v6_fields> d{};
    d[v6_proto] = field(RTE_ACL_FIELD_TYPE_BITMASK, 1, v6_proto, 0, offsetof(FlowKey, proto));
    for (uint8_t i = 0; i < 4; ++i) {
        d[v6_src + i] = field(RTE_ACL_FIELD_TYPE_MASK, 4, uint8_t(v6_src + i), uint8_t(1 + i),
                              offsetof(FlowKey, src) + 4 * i);
        d[v6_dst + i] = field(RTE_ACL_FIELD_TYPE_MASK, 4, uint8_t(v6_dst + i), uint8_t(5 + i),
                              offsetof(FlowKey, dst) + 4 * i);
    }
    d[v6_sport] = field(RTE_ACL_FIELD_TYPE_RANGE, 2, v6_sport, 9, offsetof(FlowKey, sport));
    d[v6_dport] = field(RTE_ACL_FIELD_TYPE_RANGE, 2, v6_dport, 9, offsetof(FlowKey, dport));
    return d;
}
constexpr std::array<rte_acl_field_def, v6_fields> v6_defs = make_v6_defs();

// Must match the protocols flow_key() reads ports for.
constexpr bool has_ports(uint8_t proto)
{
    return proto == 6 || proto == 17 || proto == 132;   // TCP, UDP, SCTP
}

// The packet-side view of a policy: which prefix and ports meet the
// packet's source and which its destination.
struct Sides {
    const IpPrefix& src;
    const IpPrefix& dst;
    PortRange sport;
    PortRange dport;
};

Sides sides(const PolicyDescriptor& p)
{
    if (p.direction == SaDirection::outbound) return {p.local, p.remote, p.local_ports, p.remote_ports};
    return {p.remote, p.local, p.remote_ports, p.local_ports};
}

const char* invalid(const PolicyDescriptor& p)
{
    if (p.local.addr.family != p.remote.addr.family) return "local and remote prefixes differ in family";
    const unsigned bits = p.local.addr.family == IpFamily::v4 ? 32 : 128;
    if (p.local.len > bits || p.remote.len > bits) return "prefix longer than the address";
    if (p.local_ports.lo > p.local_ports.hi || p.remote_ports.lo > p.remote_ports.hi)
        return "empty port range";
    if (!has_ports(p.protocol) && !(p.local_ports.any() && p.remote_ports.any()))
        return "port selectors need protocol tcp, udp or sctp";
    return nullptr;
}

// Host-order 32-bit word `word` of an address and the prefix bits that fall
// in it, as an rte_acl MASK field.
rte_acl_field mask_field(const IpPrefix& p, unsigned word)
{
    const unsigned first = 32 * word;
    const unsigned bits = p.len <= first ? 0 : std::min(32u, p.len - first);
    const uint8_t* b = &p.addr.bytes[4 * word];
    uint32_t v = uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3];
    v &= bits == 0 ? 0 : ~uint32_t(0) << (32 - bits);
    rte_acl_field f{};
    f.value.u32 = v;
    f.mask_range.u32 = bits;
    return f;
}

void common_fields(rte_acl_field* f, const PolicyDescriptor& p, uint8_t sport, uint8_t dport)
{
    const Sides s = sides(p);
    f[0].value.u8 = p.protocol;
    f[0].mask_range.u8 = p.protocol ? 0xff : 0;   // 0 = any protocol
    f[sport].value.u16 = s.sport.lo;
    f[sport].mask_range.u16 = s.sport.hi;
    f[dport].value.u16 = s.dport.lo;
    f[dport].mask_range.u16 = s.dport.hi;
}

AclRule4 make_rule4(const PolicyDescriptor& p, rte_acl_rule_data data)
{
    AclRule4 r{};
    r.data = data;
    const Sides s = sides(p);
    common_fields(r.field, p, v4_sport, v4_dport);
    r.field[v4_src] = mask_field(s.src, 0);
    r.field[v4_dst] = mask_field(s.dst, 0);
    return r;
}

AclRule6 make_rule6(const PolicyDescriptor& p, rte_acl_rule_data data)
{
    AclRule6 r{};
    r.data = data;
    const Sides s = sides(p);
    common_fields(r.field, p, v6_sport, v6_dport);
    for (unsigned i = 0; i < 4; ++i) {
        r.field[v6_src + i] = mask_field(s.src, i);
        r.field[v6_dst + i] = mask_field(s.dst, i);
    }
    return r;
}

// Create, fill and build one context. Returns nullptr with `error` set.
template <typename Rule, std::size_t Fields>
rte_acl_ctx* make_ctx(const std::string& name, const std::vector<Rule>& rules,
                      const std::array<rte_acl_field_def, Fields>& defs, std::string& error)
{
    // rte_acl_create() hands back an existing context of the same name, which
    // would mix our rules into another live Spd: refuse instead.
    if (rte_acl_find_existing(name.c_str()) != nullptr) {
        error = "ACL context " + name + " already exists";
        return nullptr;
    }
    rte_acl_param prm{};
    prm.name = name.c_str();
    prm.socket_id = SOCKET_ID_ANY;
    prm.rule_size = RTE_ACL_RULE_SZ(Fields);
    prm.max_rule_num = uint32_t(rules.size());
    rte_acl_ctx* ctx = rte_acl_create(&prm);
    if (ctx == nullptr) {
        error = "rte_acl_create(" + name + ") failed: " + rte_strerror(rte_errno);
        return nullptr;
    }
    rte_acl_config cfg{};
    cfg.num_categories = 1;
    cfg.num_fields = Fields;
    std::copy(defs.begin(), defs.end(), cfg.defs);
    int rc = rte_acl_add_rules(ctx, reinterpret_cast<const rte_acl_rule*>(rules.data()), uint32_t(rules.size()));
    const char* what = "rte_acl_add_rules";
    if (rc == 0) {
        rc = rte_acl_build(ctx, &cfg);
        what = "rte_acl_build";
    }
    if (rc != 0) {
        error = std::string(what) + "(" + name + ") failed: " + rte_strerror(-rc);
        rte_acl_free(ctx);
        return nullptr;
    }
    return ctx;
}

// Classify in chunks of the documented burst size, so a larger n is still
// safe. A missing context (no rules of that family) misses everything.
void classify(const rte_acl_ctx* ctx, const SpdEntry* entries, const FlowKey* const* keys, uint32_t n,
              const SpdEntry** out) noexcept
{
    constexpr uint32_t chunk = 64;
    const uint8_t* data[chunk];
    uint32_t results[chunk];
    while (n != 0) {
        const uint32_t m = n < chunk ? n : chunk;
        int rc = -1;
        if (ctx != nullptr) {
            for (uint32_t i = 0; i < m; ++i) data[i] = reinterpret_cast<const uint8_t*>(keys[i]);
            rc = rte_acl_classify(ctx, data, results, m, 1);
        }
        for (uint32_t i = 0; i < m; ++i)
            out[i] = rc == 0 && results[i] != 0 ? &entries[results[i] - 1] : nullptr;
        keys += m;
        out += m;
        n -= m;
    }
}

} // namespace

std::unique_ptr<Spd> Spd::build(SaDirection direction, std::span<const SpdRule> rules,
                                const std::string& name, std::string& error)
{
    if (name.size() + 3 >= RTE_ACL_NAMESIZE) {
        error = "SPD name '" + name + "' too long for an ACL context";
        return nullptr;
    }
    std::unique_ptr<Spd> spd(new Spd());
    static std::atomic<uint64_t> generations{1};
    spd->generation_ = generations.fetch_add(1, std::memory_order_relaxed);
    std::vector<uint32_t> chosen;   // input indexes of this direction's rules
    for (uint32_t i = 0; i < rules.size(); ++i) {
        const PolicyDescriptor& p = rules[i].policy;
        if (p.direction != direction) continue;
        if (const char* why = invalid(p)) {
            error = "policy " + std::to_string(i) + ": " + why;
            return nullptr;
        }
        chosen.push_back(i);
        spd->entries_.push_back({p.action, rules[i].sa_slot, rules[i].reqid, i});
        spd->needs_l4_ |= p.protocol != 0 || !p.local_ports.any() || !p.remote_ports.any();
    }
    if (chosen.size() >= uint32_t(RTE_ACL_MAX_PRIORITY)) {
        error = "too many policies";
        return nullptr;
    }
    // rank[e]: position of entry e in (priority, config order).
    std::vector<uint32_t> order(chosen.size()), rank(chosen.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
        return rules[chosen[a]].policy.priority < rules[chosen[b]].policy.priority;
    });
    for (uint32_t r = 0; r < order.size(); ++r) rank[order[r]] = r;

    std::vector<AclRule4> v4;
    std::vector<AclRule6> v6;
    for (uint32_t e = 0; e < chosen.size(); ++e) {
        const PolicyDescriptor& p = rules[chosen[e]].policy;
        const rte_acl_rule_data data{1u, int32_t(RTE_ACL_MAX_PRIORITY - rank[e]), e + 1};
        if (p.local.addr.family == IpFamily::v4)
            v4.push_back(make_rule4(p, data));
        else
            v6.push_back(make_rule6(p, data));
    }
    if (!v4.empty() && !(spd->v4_ = make_ctx(name + "-v4", v4, v4_defs, error))) return nullptr;
    if (!v6.empty() && !(spd->v6_ = make_ctx(name + "-v6", v6, v6_defs, error))) return nullptr;
    return spd;
}

Spd::~Spd()
{
    rte_acl_free(v4_);
    rte_acl_free(v6_);
}

void Spd::lookup_v4(const FlowKey* const* keys, uint32_t n, const SpdEntry** out) const noexcept
{
    classify(v4_, entries_.data(), keys, n, out);
}

void Spd::lookup_v6(const FlowKey* const* keys, uint32_t n, const SpdEntry** out) const noexcept
{
    classify(v6_, entries_.data(), keys, n, out);
}

namespace {

void prefix_words(const IpPrefix& p, uint32_t value[4], uint32_t mask[4]) noexcept
{
    for (unsigned w = 0; w < 4; ++w) {
        unsigned bits = p.len > w * 32 ? std::min(32u, p.len - w * 32u) : 0u;
        uint32_t m = bits == 0 ? 0 : ~uint32_t(0) << (32 - bits);
        uint32_t v = 0;
        if (w * 4 < p.addr.size())
            v = uint32_t(p.addr.bytes[w * 4]) << 24 | uint32_t(p.addr.bytes[w * 4 + 1]) << 16 |
                uint32_t(p.addr.bytes[w * 4 + 2]) << 8 | p.addr.bytes[w * 4 + 3];
        mask[w] = rte_cpu_to_be_32(m);
        value[w] = rte_cpu_to_be_32(v & m);
    }
}

} // namespace

SaSelector make_selector(const PolicyDescriptor& p) noexcept
{
    SaSelector s;
    s.exact = true;
    s.family = p.local.addr.family;
    s.proto = p.protocol;
    prefix_words(p.local, s.local, s.local_mask);
    prefix_words(p.remote, s.remote, s.remote_mask);
    s.local_ports = p.local_ports;
    s.remote_ports = p.remote_ports;
    return s;
}

} // namespace ravelin::dp
