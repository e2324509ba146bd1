// Tests for the rte_acl SPD: hand cases for priority, ties, protocol "any",
// port ranges, prefix edges and the inbound/outbound field mapping, then a
// differential test against a linear scan (the first rule by (priority,
// config order) whose selectors all match) over thousands of random policies
// and hundreds of thousands of keys, most of them aimed inside some rule.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "eal_env.hh"
#include "config.hh"
#include "spd.hh"

namespace ravelin::dp {
namespace {

constexpr uint8_t tcp = 6, udp = 17, sctp = 132, icmp = 1, esp = 50, icmpv6 = 58;

// "10.0.0.0/8" or "2001:db8::/32".
IpPrefix pfx(const std::string& text)
{
    const auto slash = text.find('/');
    const std::string addr = text.substr(0, slash);
    IpPrefix p;
    p.len = uint8_t(std::stoi(text.substr(slash + 1)));
    p.addr.family = addr.find(':') == std::string::npos ? IpFamily::v4 : IpFamily::v6;
    const int rc = inet_pton(p.addr.family == IpFamily::v4 ? AF_INET : AF_INET6, addr.c_str(), p.addr.bytes.data());
    EXPECT_EQ(rc, 1) << text;
    return p;
}

IpAddress ip(const std::string& text) { return pfx(text + (text.find(':') == std::string::npos ? "/32" : "/128")).addr; }

SpdRule rule(SaDirection dir, const std::string& local, const std::string& remote, uint32_t prio,
             uint8_t proto = 0, PortRange lports = {}, PortRange rports = {})
{
    SpdRule r;
    r.policy.direction = dir;
    r.policy.local = pfx(local);
    r.policy.remote = pfx(remote);
    r.policy.priority = prio;
    r.policy.protocol = proto;
    r.policy.local_ports = lports;
    r.policy.remote_ports = rports;
    r.policy.action = PolicyAction::protect;
    return r;
}

FlowKey key(const IpAddress& src, const IpAddress& dst, uint8_t proto, uint16_t sport = 0, uint16_t dport = 0)
{
    FlowKey k{};
    k.proto = proto;
    std::memcpy(k.src, src.bytes.data(), src.size());
    std::memcpy(k.dst, dst.bytes.data(), dst.size());
    k.sport = htons(sport);
    k.dport = htons(dport);
    return k;
}

std::unique_ptr<Spd> build(SaDirection dir, const std::vector<SpdRule>& rules, const std::string& name)
{
    std::string error;
    auto spd = Spd::build(dir, rules, name, error);
    EXPECT_TRUE(spd) << error;
    return spd;
}

// Input index of the matching rule, or -1.
int64_t match(const Spd& spd, const FlowKey& k, IpFamily family)
{
    const FlowKey* keys[1] = {&k};
    const SpdEntry* out[1] = {reinterpret_cast<const SpdEntry*>(1)};
    if (family == IpFamily::v4)
        spd.lookup_v4(keys, 1, out);
    else
        spd.lookup_v6(keys, 1, out);
    return out[0] ? int64_t(out[0]->rule) : -1;
}

int64_t match4(const Spd& spd, const std::string& src, const std::string& dst, uint8_t proto = tcp,
               uint16_t sport = 1234, uint16_t dport = 80)
{
    return match(spd, key(ip(src), ip(dst), proto, sport, dport), IpFamily::v4);
}

int64_t match6(const Spd& spd, const std::string& src, const std::string& dst, uint8_t proto = tcp,
               uint16_t sport = 1234, uint16_t dport = 80)
{
    return match(spd, key(ip(src), ip(dst), proto, sport, dport), IpFamily::v6);
}

constexpr auto out = SaDirection::outbound;
constexpr auto in = SaDirection::inbound;

// --- hand cases -----------------------------------------------------------

TEST(Spd, LowestPriorityValueWinsWhateverTheOrder)
{
    test::eal();
    std::vector<SpdRule> rules = {rule(out, "10.0.0.0/8", "0.0.0.0/0", 10),
                                  rule(out, "10.1.0.0/16", "0.0.0.0/0", 5)};
    auto spd = build(out, rules, "prio-a");
    EXPECT_EQ(match4(*spd, "10.1.2.3", "1.1.1.1"), 1);
    EXPECT_EQ(match4(*spd, "10.2.2.3", "1.1.1.1"), 0);
    EXPECT_EQ(match4(*spd, "11.1.2.3", "1.1.1.1"), -1);

    std::swap(rules[0], rules[1]);
    auto swapped = build(out, rules, "prio-b");
    EXPECT_EQ(match4(*swapped, "10.1.2.3", "1.1.1.1"), 0);
    EXPECT_EQ(match4(*swapped, "10.2.2.3", "1.1.1.1"), 1);
}

TEST(Spd, TiesGoToTheEarlierRule)
{
    test::eal();
    std::vector<SpdRule> rules = {rule(out, "10.0.0.0/8", "0.0.0.0/0", 7),
                                  rule(out, "10.1.0.0/16", "0.0.0.0/0", 7),
                                  rule(out, "10.1.0.0/16", "0.0.0.0/0", 7)};
    auto spd = build(out, rules, "tie-a");
    EXPECT_EQ(match4(*spd, "10.1.2.3", "1.1.1.1"), 0);
    std::reverse(rules.begin(), rules.end());
    auto rev = build(out, rules, "tie-b");
    EXPECT_EQ(match4(*rev, "10.1.2.3", "1.1.1.1"), 0);
    EXPECT_EQ(match4(*rev, "10.2.2.3", "1.1.1.1"), 2);
}

TEST(Spd, ProtocolAnyAndSpecific)
{
    test::eal();
    std::vector<SpdRule> rules = {rule(out, "0.0.0.0/0", "0.0.0.0/0", 1, udp, {}, {53, 53}),
                                  rule(out, "0.0.0.0/0", "0.0.0.0/0", 2, icmp),
                                  rule(out, "0.0.0.0/0", "0.0.0.0/0", 3)};
    auto spd = build(out, rules, "proto");
    EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", udp, 999, 53), 0);
    EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", udp, 999, 54), 2);
    EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", tcp, 999, 53), 2);
    EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", icmp, 0, 0), 1);
    EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", esp, 0, 0), 2);
    EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", 255, 0, 0), 2);
}

TEST(Spd, PortRangeEdges)
{
    test::eal();
    std::vector<SpdRule> rules = {rule(out, "0.0.0.0/0", "0.0.0.0/0", 1, tcp, {1000, 2000}, {}),
                                  rule(out, "0.0.0.0/0", "0.0.0.0/0", 2, sctp, {}, {65535, 65535}),
                                  rule(out, "0.0.0.0/0", "0.0.0.0/0", 3, udp, {0, 0}, {})};
    auto spd = build(out, rules, "ports");
    for (auto [port, want] : {std::pair{999, -1}, {1000, 0}, {1500, 0}, {2000, 0}, {2001, -1}})
        EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", tcp, uint16_t(port), 80), want) << port;
    // Outbound: local ports are the source port, remote ports the destination.
    EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", tcp, 80, 1500), -1);
    EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", sctp, 1, 65535), 1);
    EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", sctp, 65535, 65534), -1);
    EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", udp, 0, 9), 2);
    EXPECT_EQ(match4(*spd, "1.2.3.4", "5.6.7.8", udp, 1, 9), -1);
}

TEST(Spd, V4PrefixEdges)
{
    test::eal();
    std::vector<SpdRule> rules = {rule(out, "192.0.2.1/32", "198.51.100.0/23", 1),
                                  rule(out, "0.0.0.0/0", "203.0.113.128/25", 2),
                                  rule(out, "128.0.0.0/1", "0.0.0.0/0", 3)};
    auto spd = build(out, rules, "v4pfx");
    EXPECT_EQ(match4(*spd, "192.0.2.1", "198.51.100.0"), 0);
    EXPECT_EQ(match4(*spd, "192.0.2.1", "198.51.101.255"), 0);
    EXPECT_EQ(match4(*spd, "192.0.2.1", "198.51.102.0"), 2);   // out of the /23; 192 >= 128
    EXPECT_EQ(match4(*spd, "192.0.2.0", "198.51.100.7"), 2);   // not the /32 host
    EXPECT_EQ(match4(*spd, "1.2.3.4", "203.0.113.128"), 1);
    EXPECT_EQ(match4(*spd, "1.2.3.4", "203.0.113.255"), 1);
    EXPECT_EQ(match4(*spd, "1.2.3.4", "203.0.113.127"), -1);
    EXPECT_EQ(match4(*spd, "127.255.255.255", "9.9.9.9"), -1);
    EXPECT_EQ(match4(*spd, "128.0.0.0", "9.9.9.9"), 2);
    EXPECT_EQ(match6(*spd, "2001:db8::1", "2001:db8::2"), -1) << "a v4 rule never matches v6";
}

TEST(Spd, V6PrefixEdges)
{
    test::eal();
    std::vector<SpdRule> rules = {rule(out, "2001:db8::1/128", "2001:db8:7fff::/48", 1, udp, {500, 500}, {}),
                                  rule(out, "2001:db8:0:1::/65", "::/0", 2),
                                  rule(out, "::/0", "2001:db8:8000::/33", 3),
                                  rule(out, "::/0", "2001:db8::fffe/127", 4)};
    auto spd = build(out, rules, "v6pfx");
    EXPECT_EQ(match6(*spd, "2001:db8::1", "2001:db8:7fff:ffff::9", udp, 500, 4500), 0);
    EXPECT_EQ(match6(*spd, "2001:db8::2", "2001:db8:7fff::9", udp, 500, 4500), -1);
    EXPECT_EQ(match6(*spd, "2001:db8::1", "2001:db8:7ffe::9", udp, 500, 4500), -1);
    EXPECT_EQ(match6(*spd, "2001:db8::1", "2001:db8:7fff::9", udp, 501, 4500), -1);
    EXPECT_EQ(match6(*spd, "2001:db8:0:1:7fff:ffff:ffff:ffff", "::1"), 1);
    EXPECT_EQ(match6(*spd, "2001:db8:0:1:8000::", "::1"), -1);
    EXPECT_EQ(match6(*spd, "::", "2001:db8:8000::"), 2);
    EXPECT_EQ(match6(*spd, "::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), 2);
    EXPECT_EQ(match6(*spd, "::", "2001:db8:7fff:ffff:ffff:ffff:ffff:ffff"), -1);
    EXPECT_EQ(match6(*spd, "::", "2001:db8::ffff"), 3);
    EXPECT_EQ(match6(*spd, "::", "2001:db8::fffd"), -1);
    EXPECT_EQ(match4(*spd, "10.0.0.1", "10.0.0.2"), -1) << "no v4 rules: always a miss";
}

TEST(Spd, DirectionMapsLocalToSourceOrDestination)
{
    test::eal();
    std::vector<SpdRule> rules = {rule(out, "192.0.2.0/24", "198.51.100.0/24", 1, tcp, {443, 443}, {}),
                                  rule(in, "192.0.2.0/24", "198.51.100.0/24", 1, tcp, {443, 443}, {})};
    rules[0].sa_slot = 17;
    rules[1].reqid = 99;
    rules[1].policy.action = PolicyAction::bypass;
    auto o = build(out, rules, "dir-out");
    auto i = build(in, rules, "dir-in");
    EXPECT_EQ(o->size(), 1u);
    EXPECT_EQ(i->size(), 1u);
    EXPECT_EQ(match4(*o, "192.0.2.5", "198.51.100.7", tcp, 443, 5555), 0);
    EXPECT_EQ(match4(*o, "198.51.100.7", "192.0.2.5", tcp, 5555, 443), -1);
    EXPECT_EQ(match4(*i, "198.51.100.7", "192.0.2.5", tcp, 5555, 443), 1);
    EXPECT_EQ(match4(*i, "192.0.2.5", "198.51.100.7", tcp, 443, 5555), -1);

    const FlowKey k = key(ip("192.0.2.5"), ip("198.51.100.7"), tcp, 443, 5555);
    const FlowKey* keys[1] = {&k};
    const SpdEntry* e[1] = {};
    o->lookup_v4(keys, 1, e);
    ASSERT_NE(e[0], nullptr);
    EXPECT_EQ(e[0]->action, PolicyAction::protect);
    EXPECT_EQ(e[0]->sa_slot, 17u);
    const FlowKey ki = key(ip("198.51.100.7"), ip("192.0.2.5"), tcp, 5555, 443);
    keys[0] = &ki;
    i->lookup_v4(keys, 1, e);
    ASSERT_NE(e[0], nullptr);
    EXPECT_EQ(e[0]->action, PolicyAction::bypass);
    EXPECT_EQ(e[0]->reqid, 99u);
}

TEST(Spd, EmptySpdAlwaysMisses)
{
    test::eal();
    auto none = build(out, {}, "empty");
    ASSERT_TRUE(none);
    EXPECT_EQ(none->size(), 0u);
    EXPECT_EQ(match4(*none, "1.2.3.4", "5.6.7.8"), -1);
    EXPECT_EQ(match6(*none, "::1", "::2"), -1);
    // Only rules of the other direction: just as empty.
    auto other = build(in, {rule(out, "0.0.0.0/0", "0.0.0.0/0", 1)}, "other-dir");
    EXPECT_EQ(other->size(), 0u);
    EXPECT_EQ(match4(*other, "1.2.3.4", "5.6.7.8"), -1);
}

TEST(Spd, LargeBurstIsChunked)
{
    test::eal();
    auto spd = build(out, {rule(out, "10.0.0.0/8", "0.0.0.0/0", 1)}, "burst");
    std::vector<FlowKey> keys;
    for (uint32_t i = 0; i < 150; ++i) keys.push_back(key(IpAddress::v4((i % 2 ? 10u : 11u) << 24 | i), ip("1.1.1.1"), tcp));
    std::vector<const FlowKey*> ptrs;
    for (const auto& k : keys) ptrs.push_back(&k);
    std::vector<const SpdEntry*> res(150);
    spd->lookup_v4(ptrs.data(), 150, res.data());
    for (uint32_t i = 0; i < 150; ++i) EXPECT_EQ(res[i] != nullptr, i % 2 == 1) << i;
}

TEST(Spd, RefusesBadPoliciesAndNames)
{
    test::eal();
    std::string error;
    auto refused = [&](SpdRule r) {
        error.clear();
        std::vector<SpdRule> rules = {r};
        return !Spd::build(out, rules, "bad", error) && !error.empty();
    };
    EXPECT_TRUE(refused(rule(out, "0.0.0.0/0", "0.0.0.0/0", 1, 0, {80, 80}, {}))) << "ports with protocol any";
    EXPECT_TRUE(refused(rule(out, "0.0.0.0/0", "0.0.0.0/0", 1, icmp, {}, {8, 8}))) << "ports with icmp";
    EXPECT_TRUE(refused(rule(out, "0.0.0.0/0", "::/0", 1))) << "mixed families";
    EXPECT_TRUE(refused(rule(out, "0.0.0.0/0", "0.0.0.0/0", 1, tcp, {90, 80}, {}))) << "empty range";
    SpdRule long_prefix = rule(out, "10.0.0.0/8", "0.0.0.0/0", 1);
    long_prefix.policy.local.len = 33;
    EXPECT_TRUE(refused(long_prefix));
    // The other direction's rules are not looked at.
    std::vector<SpdRule> ignored = {rule(in, "0.0.0.0/0", "::/0", 1)};
    EXPECT_TRUE(Spd::build(out, ignored, "ignored", error));

    std::vector<SpdRule> ok = {rule(out, "10.0.0.0/8", "0.0.0.0/0", 1)};
    EXPECT_FALSE(Spd::build(out, ok, std::string(29, 'x'), error));
    EXPECT_TRUE(Spd::build(out, ok, std::string(28, 'x'), error)) << error;
    auto live = Spd::build(out, ok, "dup", error);
    ASSERT_TRUE(live);
    EXPECT_FALSE(Spd::build(out, ok, "dup", error)) << "a live context's name";
    live.reset();
    EXPECT_TRUE(Spd::build(out, ok, "dup", error)) << error;
}

// --- differential test ----------------------------------------------------

class Gen {
public:
    explicit Gen(uint64_t seed) : rng_(seed)
    {
        for (auto& s : sites4_) s = uint32_t(uni(0, 0xFFFFFFFF)) & 0xFFFF0000;
        for (auto& s : sites6_) s = uint32_t(uni(0, 0xFFFF));
    }

    uint64_t uni(uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_); }
    bool chance(unsigned percent) { return uni(0, 99) < percent; }

    // An address near one of a few "sites", so that prefixes overlap and
    // priorities decide.
    IpAddress address(IpFamily f)
    {
        IpAddress a;
        a.family = f;
        if (f == IpFamily::v4) return IpAddress::v4(sites4_[uni(0, 15)] | uint32_t(uni(0, 0xFFFF)));
        const uint16_t words[3] = {0x2001, 0x0db8, uint16_t(sites6_[uni(0, 15)])};
        for (unsigned i = 0; i < 3; ++i) {
            a.bytes[2 * i] = uint8_t(words[i] >> 8);
            a.bytes[2 * i + 1] = uint8_t(words[i]);
        }
        for (unsigned i = 6; i < 16; ++i) a.bytes[i] = uint8_t(chance(60) ? uni(0, 3) : uni(0, 255));
        return a;
    }

    uint8_t prefix_len(IpFamily f)
    {
        static constexpr uint8_t v4[] = {0, 8, 16, 20, 24, 24, 24, 28, 32, 32};
        static constexpr uint8_t v6[] = {0, 32, 48, 56, 64, 64, 64, 96, 112, 128, 128};
        if (chance(25)) return uint8_t(uni(0, f == IpFamily::v4 ? 32 : 128));
        return f == IpFamily::v4 ? v4[uni(0, std::size(v4) - 1)] : v6[uni(0, std::size(v6) - 1)];
    }

    IpPrefix prefix(IpFamily f)
    {
        IpPrefix p{address(f), prefix_len(f)};
        clear_host_bits(p);
        return p;
    }

    static void clear_host_bits(IpPrefix& p)
    {
        for (unsigned i = 0; i < p.addr.size(); ++i) {
            const int keep = std::clamp(int(p.len) - int(8 * i), 0, 8);
            p.addr.bytes[i] &= uint8_t(0xFF00 >> keep);
        }
    }

    uint16_t port()
    {
        static constexpr uint16_t common[] = {0, 22, 53, 80, 443, 500, 1024, 4500, 8080, 65535};
        return chance(50) ? common[uni(0, std::size(common) - 1)] : uint16_t(uni(0, 65535));
    }

    PortRange ports()
    {
        const unsigned k = unsigned(uni(0, 99));
        if (k < 50) return {};
        if (k < 75) {
            const uint16_t p = port();
            return {p, p};
        }
        const uint16_t lo = port();
        const uint16_t hi = k < 90 ? uint16_t(std::min<uint32_t>(65535, lo + uni(1, 100))) : uint16_t(uni(lo, 65535));
        return {lo, hi};
    }

    uint8_t protocol()
    {
        static constexpr uint8_t protos[] = {0, 0, 0, 0, tcp, tcp, tcp, udp, udp, sctp, icmp, esp, icmpv6};
        return protos[uni(0, std::size(protos) - 1)];
    }

    SpdRule policy(SaDirection dir, IpFamily f)
    {
        SpdRule r;
        PolicyDescriptor& p = r.policy;
        p.direction = dir;
        p.local = prefix(f);
        p.remote = prefix(f);
        p.protocol = protocol();
        if (p.protocol == tcp || p.protocol == udp || p.protocol == sctp) {
            p.local_ports = ports();
            p.remote_ports = ports();
        }
        p.action = PolicyAction(uni(0, 2));
        // Half the rules are ranked the way configs usually are, specific
        // before broad; the rest at random, so that broad rules also shadow.
        const unsigned bits = f == IpFamily::v4 ? 64 : 256;
        const unsigned broadness = 100 * (bits - p.local.len - p.remote.len) / bits;
        p.priority = uint32_t(chance(50) ? broadness + uni(0, 20) : uni(0, 120));
        r.sa_slot = uint32_t(uni(0, 1u << 20));
        r.reqid = uint32_t(uni(0, 1u << 20));
        return r;
    }

    // An address inside p; on `edge`, its first or last address or the one
    // just outside either end.
    IpAddress inside(const IpPrefix& p, bool edge)
    {
        IpAddress a = p.addr;
        const unsigned n = unsigned(a.size());
        const int mode = edge ? int(uni(0, 3)) : -1;   // first, last, before, after
        for (unsigned i = 0; i < n; ++i) {
            const int keep = std::clamp(int(p.len) - int(8 * i), 0, 8);
            const uint8_t host = uint8_t(0xFF >> keep);
            const uint8_t fill = mode < 0 ? uint8_t(uni(0, 255)) : (mode == 1 || mode == 3) ? 0xFF : 0;
            a.bytes[i] = uint8_t((a.bytes[i] & ~host) | (fill & host));
        }
        if (mode == 2) step(a, -1);
        if (mode == 3) step(a, +1);
        return a;
    }

    static void step(IpAddress& a, int dir)
    {
        for (int i = int(a.size()) - 1; i >= 0; --i) {
            const uint8_t before = a.bytes[i];
            a.bytes[i] = uint8_t(before + dir);
            if ((dir > 0 && before != 0xFF) || (dir < 0 && before != 0)) break;
        }
    }

    uint16_t port_in(PortRange r, bool edge)
    {
        if (!edge) return uint16_t(uni(r.lo, r.hi));
        switch (uni(0, 3)) {
        case 0: return r.lo;
        case 1: return r.hi;
        case 2: return uint16_t(r.lo - 1);
        default: return uint16_t(r.hi + 1);
        }
    }

    std::mt19937_64& rng() { return rng_; }

private:
    std::mt19937_64 rng_;
    uint32_t sites4_[16];
    uint32_t sites6_[16];
};

// The linear scan: rules of the direction and family, in (priority, input
// order); the first whose selectors all hold.
class LinearSpd {
public:
    LinearSpd(SaDirection dir, const std::vector<SpdRule>& rules) : rules_(rules), dir_(dir)
    {
        for (uint32_t i = 0; i < rules.size(); ++i)
            if (rules[i].policy.direction == dir) order_.push_back(i);
        std::stable_sort(order_.begin(), order_.end(),
                         [&](uint32_t a, uint32_t b) { return rules[a].policy.priority < rules[b].policy.priority; });
    }

    int64_t lookup(const FlowKey& k, IpFamily f) const
    {
        IpAddress src, dst;
        src.family = dst.family = f;
        std::memcpy(src.bytes.data(), k.src, src.size());
        std::memcpy(dst.bytes.data(), k.dst, dst.size());
        const uint16_t sport = ntohs(k.sport), dport = ntohs(k.dport);
        for (uint32_t i : order_) {
            const PolicyDescriptor& p = rules_[i].policy;
            const bool outbound = dir_ == SaDirection::outbound;
            const IpPrefix& ps = outbound ? p.local : p.remote;
            const IpPrefix& pd = outbound ? p.remote : p.local;
            const PortRange& rs = outbound ? p.local_ports : p.remote_ports;
            const PortRange& rd = outbound ? p.remote_ports : p.local_ports;
            if ((p.protocol == 0 || p.protocol == k.proto) && ps.contains(src) && pd.contains(dst) &&
                rs.contains(sport) && rd.contains(dport))
                return i;
        }
        return -1;
    }

private:
    const std::vector<SpdRule>& rules_;
    SaDirection dir_;
    std::vector<uint32_t> order_;
};

bool has_ports(uint8_t proto) { return proto == tcp || proto == udp || proto == sctp; }

// A key aimed at `r` (the packet side of it), sometimes at its edges, or
// when `r` is null a random one near the sites.
FlowKey aimed_key(Gen& g, SaDirection dir, const SpdRule* r, IpFamily f)
{
    if (!r) {
        static constexpr uint8_t protos[] = {tcp, udp, sctp, icmp, esp, icmpv6, 47};
        const uint8_t proto = protos[g.uni(0, std::size(protos) - 1)];
        const bool ports = has_ports(proto);
        // Near the sites or anywhere at all.
        auto addr = [&] {
            if (g.chance(50)) return g.address(f);
            IpAddress a;
            a.family = f;
            for (auto& b : a.bytes) b = uint8_t(g.uni(0, 255));
            if (f == IpFamily::v4) std::fill(a.bytes.begin() + 4, a.bytes.end(), 0);
            return a;
        };
        const IpAddress src = addr(), dst = addr();
        return key(src, dst, proto, ports ? g.port() : 0, ports ? g.port() : 0);
    }
    const PolicyDescriptor& p = r->policy;
    const bool outbound = dir == SaDirection::outbound;
    const bool edge = g.chance(20);
    uint8_t proto = p.protocol;
    if (proto == 0) proto = g.chance(50) ? tcp : g.chance(50) ? udp : icmp;
    uint16_t sport = 0, dport = 0;
    if (has_ports(proto)) {
        sport = g.port_in(outbound ? p.local_ports : p.remote_ports, edge && g.chance(50));
        dport = g.port_in(outbound ? p.remote_ports : p.local_ports, edge && g.chance(50));
    }
    const IpAddress src = g.inside(outbound ? p.local : p.remote, edge && g.chance(50));
    const IpAddress dst = g.inside(outbound ? p.remote : p.local, edge && g.chance(50));
    return key(src, dst, proto, sport, dport);
}

struct DiffStats {
    uint64_t keys = 0, hits = 0;
    uint64_t shadowed = 0;   // aimed at one rule, matched another that ranks first
};

void differential(SaDirection dir, uint32_t n4, uint32_t n6, uint32_t nkeys, uint64_t seed, DiffStats& st)
{
    Gen g(seed);
    const SaDirection other = dir == SaDirection::outbound ? SaDirection::inbound : SaDirection::outbound;
    std::vector<SpdRule> rules;
    // One in twenty of the other direction, which the Spd must ignore.
    for (uint32_t i = 0; i < n4 + n6; ++i)
        rules.push_back(g.policy(g.chance(5) ? other : dir, i < n4 ? IpFamily::v4 : IpFamily::v6));
    std::shuffle(rules.begin(), rules.end(), g.rng());
    std::vector<const SpdRule*> by_family[2];
    for (const auto& r : rules)
        if (r.policy.direction == dir) by_family[r.policy.local.addr.family == IpFamily::v6].push_back(&r);

    std::string error;
    auto spd = Spd::build(dir, rules, "diff-" + std::to_string(seed), error);
    ASSERT_TRUE(spd) << error;
    ASSERT_EQ(spd->size(), by_family[0].size() + by_family[1].size());
    const LinearSpd model(dir, rules);

    FlowKey keys[64];
    const FlowKey* ptrs[64];
    const SpdEntry* res[64];
    const SpdRule* aims[64];
    for (uint32_t done = 0; done < nkeys;) {
        const IpFamily f = g.chance(70) ? IpFamily::v4 : IpFamily::v6;
        const auto& pool = by_family[f == IpFamily::v6];
        const uint32_t n = uint32_t(std::min<uint64_t>(g.uni(1, 64), nkeys - done));
        for (uint32_t i = 0; i < n; ++i) {
            const SpdRule* aim = g.chance(85) && !pool.empty() ? pool[g.uni(0, pool.size() - 1)] : nullptr;
            keys[i] = aimed_key(g, dir, aim, f);
            aims[i] = aim;
            ptrs[i] = &keys[i];
        }
        if (f == IpFamily::v4)
            spd->lookup_v4(ptrs, n, res);
        else
            spd->lookup_v6(ptrs, n, res);
        for (uint32_t i = 0; i < n; ++i) {
            const int64_t want = model.lookup(keys[i], f);
            const int64_t got = res[i] ? int64_t(res[i]->rule) : -1;
            ASSERT_EQ(got, want) << "key " << done + i << " family " << int(f);
            if (res[i]) {
                const SpdRule& r = rules[size_t(got)];
                ASSERT_EQ(res[i]->action, r.policy.action);
                ASSERT_EQ(res[i]->sa_slot, r.sa_slot);
                ASSERT_EQ(res[i]->reqid, r.reqid);
            }
            st.hits += want >= 0;
            st.shadowed += aims[i] && want >= 0 && &rules[size_t(want)] != aims[i];
        }
        done += n;
    }
    st.keys += nkeys;
}

TEST(Spd, DifferentialAgainstLinearScan)
{
    test::eal();
    DiffStats st;
    differential(SaDirection::outbound, 5000, 2000, 250000, 4301, st);
    if (HasFatalFailure()) return;
    differential(SaDirection::inbound, 5000, 2000, 150000, 4302, st);
    if (HasFatalFailure()) return;
    // Small sets, where each rule matters more, with other seeds.
    for (uint64_t seed = 1; seed <= 20; ++seed) {
        differential(seed % 2 ? SaDirection::outbound : SaDirection::inbound, 40, 20, 5000, seed, st);
        if (HasFatalFailure()) return;
    }
    std::printf("spd differential: %llu keys, %llu hits (%llu on a rule other than the one aimed at), "
                "%llu misses\n",
                (unsigned long long)st.keys, (unsigned long long)st.hits, (unsigned long long)st.shadowed,
                (unsigned long long)(st.keys - st.hits));
    EXPECT_GT(st.hits, st.keys / 2);
    EXPECT_GT(st.keys - st.hits, st.keys / 100);
    EXPECT_GT(st.shadowed, st.keys / 100);
}

// SA selectors (the per-SA check of decrypted packets) agree with the
// policy they were made from: local = destination, remote = source.
TEST(SaSelector, MatchesLikeItsPolicy)
{
    PolicyDescriptor p;
    p.direction = SaDirection::inbound;
    p.local = *parse_prefix("198.18.1.0/24");
    p.remote = *parse_prefix("198.18.2.0/23");
    p.protocol = 17;
    p.local_ports = {5000, 5010};
    SaSelector s = make_selector(p);
    auto key = [](uint32_t src, uint32_t dst, uint8_t proto, uint16_t sport, uint16_t dport) {
        FlowKey k{};
        k.proto = proto;
        k.src[0] = rte_cpu_to_be_32(src);
        k.dst[0] = rte_cpu_to_be_32(dst);
        k.sport = rte_cpu_to_be_16(sport);
        k.dport = rte_cpu_to_be_16(dport);
        return k;
    };
    EXPECT_TRUE(selector_matches(s, key(0xc6120302, 0xc6120105, 17, 9, 5005), IpFamily::v4));
    EXPECT_FALSE(selector_matches(s, key(0xc6120402, 0xc6120105, 17, 9, 5005), IpFamily::v4)) << "source outside /23";
    EXPECT_FALSE(selector_matches(s, key(0xc6120302, 0xc6120205, 17, 9, 5005), IpFamily::v4)) << "destination outside";
    EXPECT_FALSE(selector_matches(s, key(0xc6120302, 0xc6120105, 6, 9, 5005), IpFamily::v4)) << "protocol";
    EXPECT_FALSE(selector_matches(s, key(0xc6120302, 0xc6120105, 17, 9, 5011), IpFamily::v4)) << "port";
    EXPECT_FALSE(selector_matches(s, key(0xc6120302, 0xc6120105, 17, 9, 5005), IpFamily::v6)) << "family";

    PolicyDescriptor v6;
    v6.direction = SaDirection::inbound;
    v6.local = *parse_prefix("2001:db8:1::/64");
    v6.remote = *parse_prefix("2001:db8:2::/48");
    SaSelector s6 = make_selector(v6);
    FlowKey k{};
    IpAddress src = *parse_ip("2001:db8:2:ff::1"), dst = *parse_ip("2001:db8:1::9");
    std::memcpy(k.src, src.bytes.data(), 16);
    std::memcpy(k.dst, dst.bytes.data(), 16);
    EXPECT_TRUE(selector_matches(s6, k, IpFamily::v6));
    k.dst[1] ^= rte_cpu_to_be_32(1);   // 2001:db8:1:1::9
    EXPECT_FALSE(selector_matches(s6, k, IpFamily::v6));
}

} // namespace
} // namespace ravelin::dp
